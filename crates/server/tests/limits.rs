//! Limits of the socket and of live tails: a request head that trickles is cut off while
//! others are served, shutdown lets requests in flight finish, live tails past the server's or
//! a log's limit get 503, and a tail whose client stops reading is closed and frees its
//! place rather than holding what was pushed. Every one of them shows in `/metrics`.

#[macro_use]
mod common;

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;
use logfold_core::protocol::{PushEvent, PushRequest};
use logfold_server::{app, AppState, Config, Hub};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;

/// `logfold_server::serve` on a loopback socket (port 0), stopped when `stop` is notified.
struct Served {
    addr: String,
    state: AppState,
    stop: std::sync::Arc<tokio::sync::Notify>,
    serving: tokio::task::JoinHandle<std::io::Result<()>>,
    _dir: Option<tempfile::TempDir>,
}

async fn serve(config: Config) -> Served {
    let hub = Hub::default();
    let (store, dir) = open_store(Kind::Sqlite, &hub);
    let state = AppState::new(store, hub, config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let stop = std::sync::Arc::new(tokio::sync::Notify::new());
    let stopped = stop.clone();
    let serving = tokio::spawn(logfold_server::serve(listener, state.clone(), async move {
        stopped.notified().await
    }));
    Served {
        addr,
        state,
        stop,
        serving,
        _dir: dir,
    }
}

/// A metric's value from the text exposition (`name` with its labels, if any).
fn metric(state: &AppState, name: &str) -> u64 {
    let text = state.metrics().render();
    let key = format!("{name} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&key))
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
        .parse()
        .unwrap()
}

/// Reads until the peer closes the connection (or resets it); what arrived before.
async fn read_to_close(s: &mut tokio::net::TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}

async fn healthz(addr: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    String::from_utf8_lossy(&with_timeout(10, read_to_close(&mut s)).await).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickling_request_head_is_cut_off_while_others_are_served() {
    let timeout = Duration::from_millis(1500);
    let served = serve(Config {
        header_timeout: timeout,
        ..Config::default()
    })
    .await;
    let addr = served.addr.clone();
    // Half a request line, and never the rest. (The server's clock starts after the connect.)
    let started = Instant::now();
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"GET /v1/logs/x/ev").await.unwrap();
    // A request head sent in two parts, well within the timeout, is answered.
    let mut patient = tokio::net::TcpStream::connect(&addr).await.unwrap();
    patient.write_all(b"GET /heal").await.unwrap();
    tokio::time::sleep(timeout / 5).await;
    let rest = format!("thz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    patient.write_all(rest.as_bytes()).await.unwrap();
    let answer =
        String::from_utf8_lossy(&with_timeout(10, read_to_close(&mut patient)).await).into_owned();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // Other clients keep being served while the slow one waits.
    assert!(healthz(&addr).await.starts_with("HTTP/1.1 200"));
    // The server closes the slow connection once the timeout has passed, answering nothing.
    let got = with_timeout(20, read_to_close(&mut slow)).await;
    assert!(
        started.elapsed() >= timeout,
        "closed after {:?}",
        started.elapsed()
    );
    assert!(got.is_empty(), "{}", String::from_utf8_lossy(&got));
    assert_eq!(
        metric(
            &served.state,
            "logfold_connections_closed_total{reason=\"header_timeout\"}"
        ),
        1
    );
    assert!(healthz(&addr).await.starts_with("HTTP/1.1 200"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_the_request_in_flight_then_stops() {
    let served = serve(Config::default()).await;
    let addr = served.addr.clone();
    let body = serde_json::to_vec(&PushRequest {
        protocol: 1,
        batches: vec![batch("c", 1, events("s", 3))],
    })
    .unwrap();
    // An idle keep-alive connection, and a push whose body is half sent.
    let mut idle = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let mut pushing = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /v1/logs/down/push HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    pushing.write_all(head.as_bytes()).await.unwrap();
    pushing.write_all(&body[..20]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    served.stop.notify_one();
    // New connections are refused once the listener is closed; the idle one is closed.
    with_timeout(10, async {
        while tokio::net::TcpStream::connect(&addr).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(with_timeout(10, read_to_close(&mut idle)).await.is_empty());
    assert!(!served.serving.is_finished(), "a push was still in flight");
    // The push in flight is still answered, and then the server is done.
    pushing.write_all(&body[20..]).await.unwrap();
    let answer =
        String::from_utf8_lossy(&with_timeout(10, read_to_close(&mut pushing)).await).into_owned();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    with_timeout(10, served.serving).await.unwrap().unwrap();
    let tail = served.state.store().read("down", 0, 10, usize::MAX).await;
    assert_eq!(tail.unwrap().head, 3);
}

fn live(log: &str) -> Request<Body> {
    Request::get(format!("/v1/logs/{log}/live?after=0"))
        .body(Body::empty())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_tails_past_the_limits_get_503_and_closed_ones_free_their_place() {
    let app = test_app(
        Kind::Sqlite,
        Config {
            max_tails: 3,
            max_tails_per_log: 2,
            ..Config::default()
        },
    );
    let open = |log: &'static str| {
        let router = app.router.clone();
        async move { router.oneshot(live(log)).await.unwrap() }
    };
    let a1 = open("a").await;
    let a2 = open("a").await;
    assert_eq!((a1.status(), a2.status()), (StatusCode::OK, StatusCode::OK));
    // The log's limit.
    let refused = app.request(live("a")).await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        refused.json()["code"],
        "TOO_MANY_TAILS",
        "{}",
        refused.text()
    );
    assert!(refused.json()["message"]
        .as_str()
        .unwrap()
        .contains("--max-tails-per-log"));
    assert_eq!(refused.json()["protocol"], 1);
    assert!(refused.headers.contains_key("retry-after"));
    // Another log may open one more; then the server's limit.
    let b1 = open("b").await;
    assert_eq!(b1.status(), StatusCode::OK);
    let refused = app.request(live("c")).await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(refused.json()["message"]
        .as_str()
        .unwrap()
        .contains("--max-tails)"));
    let s = &app.state;
    assert_eq!(metric(s, "logfold_live_tails"), 3);
    assert_eq!(
        metric(s, "logfold_live_tails_refused_total{scope=\"log\"}"),
        1
    );
    assert_eq!(
        metric(s, "logfold_live_tails_refused_total{scope=\"server\"}"),
        1
    );
    assert!(s
        .metrics()
        .render()
        .contains("logfold_requests_total{route=\"/v1/logs/{log}/live\",status=\"503\"} 2"));
    // A tail that ends gives its place back, to its own log and to the server.
    drop(a1);
    assert_eq!(metric(s, "logfold_live_tails"), 2);
    let a3 = open("a").await;
    assert_eq!(a3.status(), StatusCode::OK);
    drop((a2, a3, b1));
    assert_eq!(metric(s, "logfold_live_tails"), 0);
    let again: Vec<_> = [open("c").await, open("c").await, open("d").await].into();
    assert!(again.iter().all(|r| r.status() == StatusCode::OK));
    // A refused tail wrote nothing and read nothing.
    assert_eq!(
        s.store().read("a", 0, 10, usize::MAX).await.unwrap().head,
        0
    );
}

/// `n` events of about `bytes` each.
fn big_events(n: usize, bytes: usize) -> Vec<PushEvent> {
    (0..n)
        .map(|_| {
            let mut e = event("big");
            e.data = format!("\"{}\"", "x".repeat(bytes));
            e
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tail_that_stops_reading_holds_its_buffers_only_and_is_closed() {
    const PAGE: usize = 64 * 1024;
    let served = serve(Config {
        page_bytes: PAGE,
        stall_timeout: Duration::from_secs(2),
        ..Config::default()
    })
    .await;
    let addr: std::net::SocketAddr = served.addr.parse().unwrap();
    // A client with a small receive window, which reads the answer's head and then nothing.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stuck = socket.connect(addr).await.unwrap();
    let req = format!("GET /v1/logs/big/live?after=0 HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    stuck.write_all(req.as_bytes()).await.unwrap();
    let mut buf = [0u8; 1024];
    let n = with_timeout(10, stuck.read(&mut buf)).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    // And a client that reads everything, on the same log.
    let mut reader = tokio::net::TcpStream::connect(addr).await.unwrap();
    reader.write_all(req.as_bytes()).await.unwrap();
    let n = with_timeout(10, reader.read(&mut buf)).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    assert_eq!(metric(&served.state, "logfold_live_tails"), 2);

    // 24 MiB pushed in three requests, straight through the router.
    let router = app(served.state.clone());
    let (pushes, per_push, size) = (3u64, 128u64, 64 * 1024);
    for i in 0..pushes {
        let body = serde_json::to_vec(&PushRequest {
            protocol: 1,
            batches: vec![batch("c", i + 1, big_events(per_push as usize, size))],
        })
        .unwrap();
        let req = Request::post("/v1/logs/big/push")
            .header("content-type", "application/json")
            .body(Body::from(body))
            .unwrap();
        let res = router.clone().oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
    let total = pushes * per_push;
    // The reading client gets every event, in order, while the other one is stuck.
    let mut got = String::new();
    with_timeout(60, async {
        let mut buf = vec![0u8; 64 * 1024];
        let last = format!("\nid: {total}\n");
        loop {
            let n = reader.read(&mut buf).await.unwrap();
            assert!(n > 0, "the reading tail was closed");
            got.push_str(&String::from_utf8_lossy(&buf[..n]));
            if got.contains(&last) {
                break;
            }
            // Keep only the end of the text: enough for an id line split across reads.
            if got.len() > 1 << 20 {
                got.drain(..got.len() - 4096);
            }
        }
    })
    .await;
    // The stuck tail is closed once it has taken nothing for the stall timeout, and frees
    // its place; the reader's stays.
    with_timeout(30, async {
        while metric(&served.state, "logfold_live_tails") > 1 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert_eq!(
        metric(
            &served.state,
            "logfold_connections_closed_total{reason=\"stalled\"}"
        ),
        1
    );
    // What the server made for the stuck tail is what the socket buffers (at most a few MiB on
    // Linux), hyper's write buffer and a page held, far from the 24 MiB pushed: the reader
    // alone took 24 MiB of the bytes counted.
    let pushed = total * size as u64;
    let sent = served.state.metrics().live_bytes_sent();
    let for_stuck = sent.saturating_sub(pushed);
    assert!(sent >= pushed, "{sent} < {pushed}");
    assert!(for_stuck < 8 << 20, "{for_stuck} bytes for the stuck tail");
    // What the stuck client finds is the start of the stream, then the end of the connection.
    let rest = with_timeout(30, read_to_close(&mut stuck)).await;
    assert!(rest.len() < pushed as usize / 2, "{}", rest.len());
    drop(reader);
}
