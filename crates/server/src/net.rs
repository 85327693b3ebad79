//! Serving the API on a socket: our own accept loop over hyper's HTTP/1 connection, because
//! `axum::serve` sets no header read timeout (a client trickling its request line would hold a
//! connection for ever) and no limit on how long a client may leave our writes unread.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::{app, AppState};

/// Serves `state`'s API on `listener` until `shutdown` completes, then stops accepting, lets
/// each connection finish the request it is in (idle ones close at once) and returns when all
/// have closed. Live tails never finish by themselves: bound the wait after `shutdown` with a
/// timeout of your own (the binary gives them 5 s).
///
/// A connection is closed without an answer when a request's head (request line and headers)
/// has not arrived within [`Config::header_timeout`](crate::Config::header_timeout) (this
/// includes an idle keep-alive connection waiting for its next request), or when the client
/// has taken none of the bytes sent to it for [`Config::stall_timeout`](crate::Config::stall_timeout).
///
/// A failed accept (out of file descriptors, say) is retried after a pause, so this returns
/// `Ok` once shut down; the `io::Result` leaves room for errors that end serving.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let router = app(state.clone());
    let config = state.config();
    let (header_timeout, stall_timeout) = (config.header_timeout, config.stall_timeout);
    // `stop` tells connections to finish; each holds a `closed` receiver, so the sender sees
    // when the last one is gone.
    let (stop_tx, stop_rx) = watch::channel(false);
    let (closed_tx, closed_rx) = watch::channel(());
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin; a failed
                    // handshake of one client is not the listener's failure.
                    if !connection_error(&e) {
                        eprintln!("logfold-server: accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let io = TokioIo::new(Guarded::new(stream, stall_timeout));
        let service = TowerToHyperService::new(router.clone());
        let (mut stop, closed, state) = (stop_rx.clone(), closed_rx.clone(), state.clone());
        tokio::spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout);
            let conn = builder.serve_connection(io, service);
            tokio::pin!(conn);
            let mut stopping = false;
            let outcome = loop {
                tokio::select! {
                    outcome = conn.as_mut() => break outcome,
                    changed = stop.changed(), if !stopping => {
                        stopping = true;
                        if changed.is_ok() {
                            conn.as_mut().graceful_shutdown();
                        }
                    }
                }
            };
            if let Err(e) = outcome {
                if e.is_timeout() {
                    state.metrics().connection_closed("header_timeout");
                } else if stalled(&e) {
                    state.metrics().connection_closed("stalled");
                }
            }
            drop(closed);
        });
    }
    drop(listener);
    drop(closed_rx);
    let _ = stop_tx.send(true);
    closed_tx.closed().await;
    Ok(())
}

/// Accept errors that concern one connection only.
fn connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// The message a stalled write fails with, to tell it apart from other I/O errors.
const STALLED: &str = "the client took none of the bytes sent to it within the stall timeout";

fn stalled(e: &hyper::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<io::Error>() {
            return io.kind() == io::ErrorKind::TimedOut && io.to_string() == STALLED;
        }
        source = s.source();
    }
    false
}

/// A TCP stream whose writes fail once the peer has accepted nothing for `stall`: a client
/// that stops reading (a live tail in a background tab of a frozen machine, or on purpose)
/// would otherwise keep its connection, its task and the message waiting for it for ever.
struct Guarded {
    inner: TcpStream,
    stall: Duration,
    /// Armed at the first write that could not proceed; disarmed by any progress.
    blocked: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Guarded {
    fn new(inner: TcpStream, stall: Duration) -> Guarded {
        Guarded {
            inner,
            stall,
            blocked: None,
        }
    }

    /// `inner`'s answer, or a `TimedOut` error once writes have been blocked for `stall`.
    fn watch<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match polled {
            Poll::Ready(r) => {
                self.blocked = None;
                Poll::Ready(r)
            }
            Poll::Pending => {
                let stall = self.stall;
                let timer = self
                    .blocked
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(stall)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, STALLED)))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
