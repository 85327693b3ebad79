//! The `logfold-server` binary: flags, the loopback rule for anonymous access, and serving.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use logfold_server::{
    AppState, Config, Hub, Store, Tokens, DEFAULT_MAX_BODY, DEFAULT_MAX_TAILS,
    DEFAULT_MAX_TAILS_PER_LOG, DEFAULT_PAGE_BYTES, DEFAULT_QUEUE_BYTES,
};

/// The logfold sync server: gives pushed events global offsets and serves log tails.
#[derive(Debug, Parser)]
#[command(name = "logfold-server", version)]
struct Args {
    /// Address and port to listen on.
    #[arg(long, default_value = "127.0.0.1:8787")]
    listen: SocketAddr,
    /// A SQLite file path, `postgres://user@host/db` (or `host=... user=...`) for PostgreSQL,
    /// or `:memory:` for a throwaway in-memory store.
    #[arg(long, default_value = "logfold.sqlite3")]
    database: String,
    /// The PostgreSQL schema holding the tables; instances sharing logs use the same one.
    #[arg(long, default_value = "public")]
    pg_schema: String,
    /// File of bearer tokens and their scopes (see README). Without it, only anonymous access
    /// on a loopback address is allowed.
    #[arg(long)]
    tokens: Option<PathBuf>,
    /// An origin allowed to call the API from a browser (repeatable), e.g. http://localhost:5173.
    #[arg(long = "cors-origin")]
    cors_origins: Vec<String>,
    /// Serve this directory at / (e.g. the demo page), from the API's origin.
    #[arg(long = "static")]
    static_dir: Option<PathBuf>,
    /// The largest request body (a push, a snapshot set) in bytes; larger ones get 413.
    #[arg(long, default_value_t = DEFAULT_MAX_BODY)]
    max_body: usize,
    /// The byte budget of a pull page or a live message: a page stops before it, whatever
    /// its `limit` (it holds at least one event).
    #[arg(long, default_value_t = DEFAULT_PAGE_BYTES)]
    page_bytes: usize,
    /// Seconds a request body (a push, a snapshot set) may take to arrive whole; past it 408.
    #[arg(long, default_value_t = 30)]
    body_timeout: u64,
    /// Bytes of pushes that may wait for one log's next commit; past it a push gets 503.
    #[arg(long, default_value_t = DEFAULT_QUEUE_BYTES)]
    queue_bytes: usize,
    /// Seconds a request's line and headers may take to arrive; past it the connection is
    /// closed (an idle keep-alive connection too).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    header_timeout: u64,
    /// Seconds a client may take none of the bytes sent to it (a live tail that stopped
    /// reading); past it the connection is closed.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    stall_timeout: u64,
    /// Seconds between keep-alive comments on a quiet live tail; clients that hear nothing
    /// for three of them open another (see README).
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..))]
    keepalive: u64,
    /// The most live tails open at once over all logs; past it a tail gets 503.
    #[arg(long, default_value_t = DEFAULT_MAX_TAILS)]
    max_tails: usize,
    /// The most live tails open at once on one log; past it a tail gets 503.
    #[arg(long, default_value_t = DEFAULT_MAX_TAILS_PER_LOG)]
    max_tails_per_log: usize,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let tokens = match &args.tokens {
        Some(path) => match Tokens::load(path) {
            Ok(t) => Some(t),
            Err(e) => {
                eprintln!("logfold-server: token file: {e}");
                return ExitCode::from(2);
            }
        },
        None => None,
    };
    if tokens.is_none() && !args.listen.ip().is_loopback() {
        eprintln!(
            "logfold-server: refusing to listen on {} without --tokens: anonymous access is only allowed on a loopback address",
            args.listen
        );
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("logfold-server: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(args, tokens)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("logfold-server: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: Args, tokens: Option<Tokens>) -> Result<(), Box<dyn std::error::Error>> {
    let hub = Hub::default();
    let store = Store::open(&args.database, &args.pg_schema, &hub)?.queue_limit(args.queue_bytes);
    let anonymous = tokens.is_none();
    let token_count = tokens.as_ref().map_or(0, Tokens::len);
    let config = Config {
        tokens,
        max_body: args.max_body,
        page_bytes: args.page_bytes,
        body_timeout: std::time::Duration::from_secs(args.body_timeout),
        header_timeout: std::time::Duration::from_secs(args.header_timeout),
        stall_timeout: std::time::Duration::from_secs(args.stall_timeout),
        keepalive: std::time::Duration::from_secs(args.keepalive),
        max_tails: args.max_tails,
        max_tails_per_log: args.max_tails_per_log,
        cors_origins: args.cors_origins,
        static_dir: args.static_dir,
        ..Config::default()
    };
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let addr = listener.local_addr()?;
    println!(
        "logfold-server listening on http://{addr} ({} store)",
        store.kind()
    );
    if anonymous {
        println!("logfold-server: no --tokens given: anonymous read and write access for loopback clients only");
    } else {
        println!("logfold-server: {token_count} bearer tokens loaded");
    }
    let state = AppState::new(store, hub, config);
    let stop = std::sync::Arc::new(tokio::sync::Notify::new());
    let stopped = stop.clone();
    let serving = logfold_server::serve(listener, state, async move { stopped.notified().await });
    tokio::pin!(serving);
    tokio::select! {
        done = &mut serving => return Ok(done?),
        _ = shutdown() => {}
    }
    // Live tails never end by themselves: give requests in flight a moment, then stop.
    stop.notify_one();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), serving).await;
    Ok(())
}

/// Ctrl-C or SIGTERM: stop accepting, finish the requests in flight.
async fn shutdown() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
