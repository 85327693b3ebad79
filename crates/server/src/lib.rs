//! logfold-server: the sync server. It gives every pushed event a global offset in its log and
//! serves the tail after any offset, over SQLite (one file) or PostgreSQL (several instances).
//!
//! [`app`] builds the whole HTTP API as an axum `Router`, so tests drive it without a socket.

#![warn(missing_docs)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{MatchedPath, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use futures_util::stream;
use logfold_core::protocol::snapshots::{valid_set_id, SnapshotSet, SNAPSHOTS_CONTENT_TYPE};
use logfold_core::protocol::{
    PushRequest, PushResponse, HEAD_HEADER, KEEPALIVE_HEADER, LOG_ID_HEADER, SEGMENT_CONTENT_TYPE,
};
use logfold_core::{Limits, PROTOCOL_VERSION};
use serde::Deserialize;

pub mod auth;
pub mod error;
pub mod hub;
pub mod metrics;
pub mod net;
pub mod store;

pub use auth::{Access, Tokens};
pub use error::AppError;
pub use hub::Hub;
pub use metrics::Metrics;
pub use net::serve;
pub use store::{PushJob, Store, Upload, DEFAULT_QUEUE_BYTES, MAX_SNAPSHOT_SETS};

/// The default largest push body: 16 MiB (a client splits bigger outboxes).
pub const DEFAULT_MAX_BODY: usize = 16 * 1024 * 1024;
/// The default and the largest `limit` of a pull.
pub const DEFAULT_PULL_LIMIT: usize = 1_000;
/// The largest `limit` of a pull.
pub const MAX_PULL_LIMIT: usize = 10_000;
/// The default byte budget of a pull page or a live message (see [`store::page_bytes`]): a
/// page stops before it, whatever `limit` asks, so the memory a pull holds is bounded by bytes.
pub const DEFAULT_PAGE_BYTES: usize = 4 * 1024 * 1024;
/// The deepest a push body may nest arrays and objects, an event's `data` and `meta` included
/// (serde_json's own limit for the typed fields; `data` is kept raw and would pass unchecked,
/// then hand every client that reads it a parser's worst case).
pub const MAX_JSON_DEPTH: usize = 128;

/// The default time a request body may take to arrive whole.
pub const DEFAULT_BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The default time a request's head (request line and headers) may take to arrive.
pub const DEFAULT_HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The default time a client may leave every byte sent to it unread before it is disconnected.
pub const DEFAULT_STALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// The default time between keep-alive comments on a quiet live tail.
pub const DEFAULT_KEEPALIVE: std::time::Duration = std::time::Duration::from_secs(15);

/// The default most live tails open at once, over all logs.
pub const DEFAULT_MAX_TAILS: usize = 10_000;

/// The default most live tails open at once on one log.
pub const DEFAULT_MAX_TAILS_PER_LOG: usize = 5_000;

/// How the server is set up.
#[derive(Debug, Clone)]
pub struct Config {
    /// `None`: anonymous requests may do anything (only allowed on loopback by the binary).
    pub tokens: Option<Tokens>,
    /// The largest request body in bytes.
    pub max_body: usize,
    /// The byte budget of a pull page or a live message.
    pub page_bytes: usize,
    /// How long a request body (a push, a snapshot set) may take to arrive; past it 408.
    pub body_timeout: std::time::Duration,
    /// How long a request's head may take to arrive on a socket served by [`serve`]; past it
    /// the connection is closed. An idle keep-alive connection is closed after it too.
    pub header_timeout: std::time::Duration,
    /// How long a client served by [`serve`] may take none of the bytes sent to it; past it
    /// the connection is closed (a live tail that stopped reading frees its message).
    pub stall_timeout: std::time::Duration,
    /// The time between keep-alive comments on a quiet live tail, announced to clients in
    /// [`KEEPALIVE_HEADER`] so that they can tell a dead connection from a quiet log; rounded
    /// up to whole seconds, at least one.
    pub keepalive: std::time::Duration,
    /// The most live tails open at once, over all logs; past it a tail gets 503.
    pub max_tails: usize,
    /// The most live tails open at once on one log; past it a tail gets 503.
    pub max_tails_per_log: usize,
    /// Event size and name limits.
    pub limits: Limits,
    /// Origins allowed by CORS; none means no CORS headers.
    pub cors_origins: Vec<String>,
    /// A directory served at `/` (e.g. the demo page), from the API's origin.
    pub static_dir: Option<std::path::PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            tokens: None,
            max_body: DEFAULT_MAX_BODY,
            page_bytes: DEFAULT_PAGE_BYTES,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            stall_timeout: DEFAULT_STALL_TIMEOUT,
            keepalive: DEFAULT_KEEPALIVE,
            max_tails: DEFAULT_MAX_TAILS,
            max_tails_per_log: DEFAULT_MAX_TAILS_PER_LOG,
            limits: Limits::default(),
            cors_origins: Vec::new(),
            static_dir: None,
        }
    }
}

/// Everything a request handler needs, cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Store,
    hub: Hub,
    config: Config,
    metrics: Metrics,
    /// Live tails open now: in all, and by log.
    tails: Mutex<Tails>,
}

#[derive(Debug, Default)]
struct Tails {
    open: usize,
    by_log: HashMap<String, usize>,
}

/// A live tail's place in the count of open tails, given back when the tail's stream is
/// dropped (the client went away, or the connection was closed).
#[derive(Debug)]
struct TailSlot {
    state: AppState,
    log: String,
}

impl Drop for TailSlot {
    fn drop(&mut self) {
        let mut tails = self.state.tails();
        tails.open -= 1;
        if let Some(n) = tails.by_log.get_mut(&self.log) {
            *n -= 1;
            if *n == 0 {
                tails.by_log.remove(&self.log);
            }
        }
        let open = tails.open;
        drop(tails);
        self.state.metrics().tails_open(open);
    }
}

impl AppState {
    /// State over `store`; `hub` must be the one the store was opened with.
    pub fn new(store: Store, hub: Hub, config: Config) -> AppState {
        AppState {
            inner: Arc::new(Inner {
                store,
                hub,
                config,
                metrics: Metrics::default(),
                tails: Mutex::default(),
            }),
        }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The counters behind `/metrics`.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// How the server is set up.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    fn tails(&self) -> std::sync::MutexGuard<'_, Tails> {
        self.inner.tails.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A place for one more live tail on `log`, or the limit it would pass.
    fn open_tail(&self, log: &str) -> Result<TailSlot, AppError> {
        let config = &self.inner.config;
        let mut tails = self.tails();
        let on_log = tails.by_log.get(log).copied().unwrap_or(0);
        let refused = if tails.open >= config.max_tails {
            Some((
                "server",
                format!(
                    "{} live tails are open, the most this server keeps (--max-tails)",
                    tails.open
                ),
            ))
        } else if on_log >= config.max_tails_per_log {
            Some(("log", format!("{on_log} live tails are open on log {log:?}, the most one log may have (--max-tails-per-log)")))
        } else {
            None
        };
        if let Some((scope, message)) = refused {
            drop(tails);
            self.metrics().tail_refused(scope);
            return Err(AppError::TooManyTails(format!(
                "{message}: try again later"
            )));
        }
        tails.open += 1;
        *tails.by_log.entry(log.to_owned()).or_insert(0) += 1;
        let open = tails.open;
        drop(tails);
        self.metrics().tails_open(open);
        Ok(TailSlot {
            state: self.clone(),
            log: log.to_owned(),
        })
    }

    /// Checks the request may `access` `log`; returns the credential's identity, `None` when
    /// the server runs without tokens.
    fn authorize(
        &self,
        headers: &HeaderMap,
        log: &str,
        access: Access,
    ) -> Result<Option<String>, AppError> {
        if !valid_log_name(log) {
            return Err(AppError::BadRequest(format!(
                "log name {log:?} is invalid: use 1 to 128 of A-Z a-z 0-9 _ . -, starting with a letter or digit"
            )));
        }
        let checked = self
            .check_caller(headers)
            .and_then(|()| match &self.inner.config.tokens {
                None => Ok(None),
                Some(tokens) => {
                    let auth = headers
                        .get(header::AUTHORIZATION)
                        .and_then(|v| v.to_str().ok());
                    tokens.authorize(auth, log, access).map(Some)
                }
            });
        if let Err(e) = &checked {
            self.metrics().auth_failure(e.status().as_u16());
        }
        checked
    }

    /// Refuses what a foreign web page can send a server on this machine: a request whose
    /// `Origin` is neither the server's own nor a `--cors-origin` (a `no-cors` POST needs no
    /// preflight, so CORS alone does not stop it), and, without tokens, a `Host` that is not
    /// a loopback name (DNS rebinding: a page's own host name pointed at 127.0.0.1).
    fn check_caller(&self, headers: &HeaderMap) -> Result<(), AppError> {
        let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
        if self.inner.config.tokens.is_none() {
            if let Some(host) = host.filter(|h| !loopback_host(h)) {
                return Err(AppError::Forbidden(format!(
                    "host {host:?} is not a loopback name: without tokens the server answers only localhost"
                )));
            }
        }
        let Some(origin) = headers.get(header::ORIGIN) else {
            return Ok(());
        };
        let origin = origin.to_str().unwrap_or_default();
        let own = host.is_some_and(|h| {
            origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"))
                == Some(h)
        });
        if own || self.inner.config.cors_origins.iter().any(|o| o == origin) {
            Ok(())
        } else {
            Err(AppError::Forbidden(format!(
                "origin {origin:?} may not call this server: allow it with --cors-origin"
            )))
        }
    }
}

/// Whether a `Host` header names this machine: `localhost` (or a name under it), an address
/// in 127.0.0.0/8, or `[::1]`; with or without a port.
fn loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => return v6.split(']').next() == Some("::1"),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    let name = name.to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Log names: 1–128 ASCII letters, digits, `_`, `.` or `-`, starting with a letter or digit.
pub fn valid_log_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// The HTTP API: push, pull, live, snapshot sets, health and metrics, plus CORS and static
/// files if configured.
pub fn app(state: AppState) -> Router {
    let config = state.inner.config.clone();
    let mut router = Router::new()
        .route("/v1/logs/{log}/push", post(push))
        .route("/v1/logs/{log}/events", get(pull))
        .route("/v1/logs/{log}/live", get(live))
        .route(
            "/v1/logs/{log}/snapshots/{set}",
            get(get_snapshots).put(put_snapshots),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .with_state(state);
    if let Some(dir) = &config.static_dir {
        router = router.fallback_service(tower_http::services::ServeDir::new(dir));
    }
    if !config.cors_origins.is_empty() {
        let origins: Vec<HeaderValue> = config
            .cors_origins
            .iter()
            .filter_map(|o| HeaderValue::from_str(o).ok())
            .collect();
        router = router.layer(
            tower_http::cors::CorsLayer::new()
                .allow_origin(origins)
                .allow_methods([Method::GET, Method::POST, Method::PUT])
                .allow_headers([
                    header::AUTHORIZATION,
                    header::CONTENT_TYPE,
                    header::ACCEPT,
                    header::HeaderName::from_static("last-event-id"),
                ])
                .expose_headers([
                    header::HeaderName::from_static(HEAD_HEADER),
                    header::HeaderName::from_static(LOG_ID_HEADER),
                    header::HeaderName::from_static(KEEPALIVE_HEADER),
                    // Clients wait this long after TOO_MANY_TAILS.
                    header::RETRY_AFTER,
                ]),
        );
    }
    router
}

async fn count_requests(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("other", |m| m.as_str())
        .to_owned();
    let response = next.run(req).await;
    state.metrics().request(&route, response.status().as_u16());
    response
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics().render(),
    )
}

/// Only the protocol field, read when a push does not parse, to tell a version mismatch apart.
#[derive(Deserialize)]
struct ProtocolOnly {
    protocol: u32,
}

fn upgrade_required(got: u32) -> AppError {
    AppError::UpgradeRequired(format!(
        "this server speaks sync protocol {PROTOCOL_VERSION}, the request uses {got}: upgrade the client or the server"
    ))
}

async fn push(
    State(state): State<AppState>,
    Path(log): Path<String>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, AppError> {
    let owner = state.authorize(&headers, &log, Access::Write)?;
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(AppError::UnsupportedMediaType(
            "a push body must be sent as Content-Type: application/json".into(),
        ));
    }
    let bytes = read_body(
        &state,
        &headers,
        body,
        "split the batches over several requests",
    )
    .await?;
    if nested_deeper_than(&bytes, MAX_JSON_DEPTH) {
        return Err(AppError::BadRequest(format!(
            "the push body is not valid: it nests arrays and objects deeper than {MAX_JSON_DEPTH} levels"
        )));
    }
    let request: PushRequest = match serde_json::from_slice(&bytes) {
        Ok(r) => r,
        Err(e) => {
            if let Ok(p) = serde_json::from_slice::<ProtocolOnly>(&bytes) {
                if p.protocol != PROTOCOL_VERSION {
                    return Err(upgrade_required(p.protocol));
                }
            }
            return Err(AppError::BadRequest(format!(
                "the push body is not valid: {e}"
            )));
        }
    };
    if request.protocol != PROTOCOL_VERSION {
        return Err(upgrade_required(request.protocol));
    }
    let started = Instant::now();
    let pushed = state
        .store()
        .push(
            &log,
            PushJob {
                batches: request.batches,
                owner,
                bytes: bytes.len(),
            },
            state.inner.config.limits,
        )
        .await?;
    state.metrics().push(started.elapsed(), pushed.appended);
    if pushed.appended > 0 {
        state.inner.hub.advance(&log, pushed.head);
    }
    let mut response = axum::Json(PushResponse {
        protocol: PROTOCOL_VERSION,
        head: pushed.head,
        results: pushed.results,
    })
    .into_response();
    name_log(&mut response, Some(&pushed.log_id));
    Ok(response)
}

/// A request body whole, within `--max-body` (past it 413, with `hint` on what to do) and
/// `--body-timeout` (past it 408).
async fn read_body(
    state: &AppState,
    headers: &HeaderMap,
    body: axum::body::Body,
    hint: &str,
) -> Result<axum::body::Bytes, AppError> {
    let max = state.inner.config.max_body;
    let too_large = || {
        AppError::PayloadTooLarge(format!(
            "the request body is over the limit of {max} bytes: {hint}"
        ))
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|n| n > max) {
        return Err(too_large());
    }
    // A client trickling its body would otherwise hold the connection and its buffer forever.
    let timeout = state.inner.config.body_timeout;
    tokio::time::timeout(timeout, axum::body::to_bytes(body, max))
        .await
        .map_err(|_| {
            AppError::RequestTimeout(format!(
                "the request body did not arrive within {} s",
                timeout.as_secs_f64()
            ))
        })?
        .map_err(|_| too_large())
}

/// Whether JSON text nests `[`/`{` deeper than `max`, outside strings; one pass, no parse.
fn nested_deeper_than(bytes: &[u8], max: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in bytes {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// Puts the log's identity in the answer's headers, when it has one (see [`LOG_ID_HEADER`]).
fn name_log(response: &mut Response, log_id: Option<&str>) {
    if let Some(v) = log_id.and_then(|id| HeaderValue::from_str(id).ok()) {
        response.headers_mut().insert(LOG_ID_HEADER, v);
    }
}

/// `?after=&limit=` of a pull.
#[derive(Debug, Deserialize)]
struct PullQuery {
    #[serde(default)]
    after: u64,
    limit: Option<usize>,
}

fn pull_limit(limit: Option<usize>) -> usize {
    limit.unwrap_or(DEFAULT_PULL_LIMIT).clamp(1, MAX_PULL_LIMIT)
}

fn wants_segment(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains(SEGMENT_CONTENT_TYPE))
}

async fn pull(
    State(state): State<AppState>,
    Path(log): Path<String>,
    headers: HeaderMap,
    query: Result<Query<PullQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, AppError> {
    state.authorize(&headers, &log, Access::Read)?;
    let Query(q) = query.map_err(|e| AppError::BadRequest(e.body_text()))?;
    let tail = state
        .store()
        .read(
            &log,
            q.after,
            pull_limit(q.limit),
            state.inner.config.page_bytes,
        )
        .await?;
    let (events, head) = (&tail.events, tail.head);
    let mut response = if wants_segment(&headers) {
        // A segment holds at least one event, so "nothing new" is an empty body.
        let body = if events.is_empty() {
            Vec::new()
        } else {
            logfold_core::segment::encode(events.iter().map(|e| e.as_ref()))
        };
        (
            [
                (header::CONTENT_TYPE, SEGMENT_CONTENT_TYPE.to_owned()),
                (
                    header::HeaderName::from_static(HEAD_HEADER),
                    head.to_string(),
                ),
            ],
            body,
        )
            .into_response()
    } else {
        let mut body =
            String::with_capacity(64 + events.iter().map(|e| e.data.len() + 160).sum::<usize>());
        logfold_core::protocol::write_pull_json(&mut body, head, events);
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response()
    };
    name_log(&mut response, tail.log_id.as_deref());
    Ok(response)
}

fn check_set_id(set: &str) -> Result<(), AppError> {
    if valid_set_id(set) {
        Ok(())
    } else {
        Err(AppError::BadRequest(format!(
            "snapshot set name {set:?} is invalid: it is 16 lowercase hex digits (set_id of the salt and keys)"
        )))
    }
}

/// `PUT /v1/logs/{log}/snapshots/{set}`: keeps an app's snapshot set with the server's own
/// stream versions at its offset, unless the one stored under that name is as new or newer.
async fn put_snapshots(
    State(state): State<AppState>,
    Path((log, set)): Path<(String, String)>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, AppError> {
    state.authorize(&headers, &log, Access::Write)?;
    let outcome = upload_snapshots(&state, &log, &set, &headers, body).await;
    let result = match &outcome {
        Ok((_, true)) => Some("stored"),
        Ok((_, false)) => Some("kept"),
        Err(AppError::Store(_)) => None,
        Err(_) => Some("refused"),
    };
    if let Some(r) = result {
        state.metrics().snapshot_upload(r);
    }
    let (offset, stored) = outcome?;
    Ok(axum::Json(serde_json::json!({ "offset": offset, "stored": stored })).into_response())
}

/// Checks and keeps an upload; the offset of the set kept now, and whether it is this one.
async fn upload_snapshots(
    state: &AppState,
    log: &str,
    set_id: &str,
    headers: &HeaderMap,
    body: axum::body::Body,
) -> Result<(u64, bool), AppError> {
    check_set_id(set_id)?;
    let bytes = read_body(
        state,
        headers,
        body,
        "a snapshot set is sent in one request",
    )
    .await?;
    let invalid =
        |why: String| AppError::BadRequest(format!("the snapshot set is not valid: {why}"));
    let set = SnapshotSet::decode(&bytes).map_err(|e| invalid(e.to_string()))?;
    let named = set.id();
    if named != set_id {
        return Err(invalid(format!(
            "its salt and keys name set {named}, the request names {set_id}"
        )));
    }
    set.check().map_err(invalid)?;
    if !set.streams.is_empty() {
        return Err(invalid(
            "it carries stream versions: the server fills them from its own log, send none".into(),
        ));
    }
    let offset = set.offset;
    match state.store().put_snapshots(log, set).await? {
        Upload::Stored => Ok((offset, true)),
        Upload::Kept(stored) => Ok((stored, false)),
        Upload::Ahead(0) => Err(AppError::SnapshotAhead(format!(
            "log {log:?} has no events: a snapshot set is of an offset the server has"
        ))),
        Upload::Ahead(head) => Err(AppError::SnapshotAhead(format!(
            "the snapshot set is of offset {offset}, past the log's head {head}: push the events first"
        ))),
    }
}

/// `GET /v1/logs/{log}/snapshots/{set}`: the stored set's bytes, with the head and the log's
/// identity in the headers as a pull has them.
async fn get_snapshots(
    State(state): State<AppState>,
    Path((log, set)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    state.authorize(&headers, &log, Access::Read)?;
    check_set_id(&set)?;
    // None is an ordinary answer for a new app or log: 204, which a browser does not log as
    // a failed request the way it does a 404.
    let Some(found) = state.store().snapshots(&log, &set).await? else {
        state.metrics().snapshot_download("missing");
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    state.metrics().snapshot_download("found");
    let mut response = (
        [
            (header::CONTENT_TYPE, SNAPSHOTS_CONTENT_TYPE.to_owned()),
            (
                header::HeaderName::from_static(HEAD_HEADER),
                found.head.to_string(),
            ),
        ],
        found.bytes,
    )
        .into_response();
    name_log(&mut response, Some(&found.log_id));
    Ok(response)
}

/// `?after=` of a live tail.
#[derive(Debug, Deserialize)]
struct LiveQuery {
    #[serde(default)]
    after: u64,
}

async fn live(
    State(state): State<AppState>,
    Path(log): Path<String>,
    headers: HeaderMap,
    query: Result<Query<LiveQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, AppError> {
    state.authorize(&headers, &log, Access::Read)?;
    let Query(q) = query.map_err(|e| AppError::BadRequest(e.body_text()))?;
    // On reconnect the browser sends the last SSE id it saw, which is an offset.
    let after = match headers.get("last-event-id") {
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .ok_or_else(|| AppError::BadRequest("Last-Event-ID must be an offset".into()))?,
        None => q.after,
    };
    let slot = state.open_tail(&log)?;
    // Whole seconds in the header, so rounded up; at least one.
    let seconds = state.inner.config.keepalive.as_secs_f64().ceil().max(1.0) as u64;
    let keepalive = std::time::Duration::from_secs(seconds);
    let rx = state.inner.hub.watch(&log);
    // The identity as of the start; a log not written yet has none until its first push.
    let log_id = state.store().read(&log, after, 1, 0).await?.log_id;
    // The stream is polled for its next message only once hyper's write buffer (about 400 KiB)
    // has room, so a tail holds that and one message, however slowly its client reads; the
    // watch channel holds a head hint, never events.
    let events = stream::unfold(
        (state, log, after, rx, false, slot),
        |(state, log, cursor, mut rx, failed, slot)| async move {
            if failed {
                return None;
            }
            loop {
                rx.borrow_and_update();
                let page = state.inner.config.page_bytes;
                let (events, head) = match state
                    .store()
                    .read(&log, cursor, DEFAULT_PULL_LIMIT, page)
                    .await
                {
                    Ok(t) => (t.events, t.head),
                    Err(e) => {
                        return Some((Err(AppError::from(e)), (state, log, cursor, rx, true, slot)))
                    }
                };
                if let Some(last) = events.last() {
                    let next = last.seq;
                    let mut data = String::new();
                    logfold_core::protocol::write_pull_json(&mut data, head, &events);
                    state.metrics().live_bytes(data.len());
                    let message = SseEvent::default()
                        .event("events")
                        .id(next.to_string())
                        .data(data);
                    return Some((Ok(message), (state, log, next, rx, false, slot)));
                }
                if rx.changed().await.is_err() {
                    return None;
                }
            }
        },
    );
    let mut response = Sse::new(events)
        .keep_alive(KeepAlive::new().interval(keepalive))
        .into_response();
    response
        .headers_mut()
        .insert(KEEPALIVE_HEADER, HeaderValue::from(seconds));
    name_log(&mut response, log_id.as_deref());
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::{loopback_host, nested_deeper_than};

    #[test]
    fn nesting_is_counted_outside_strings() {
        assert!(!nested_deeper_than(br#"{"a":[[1]]}"#, 3));
        assert!(nested_deeper_than(br#"{"a":[[[1]]]}"#, 3));
        assert!(!nested_deeper_than(br#"{"a":"[[[[{{\"[["}"#, 1));
        assert!(!nested_deeper_than(br#"[1],[2],[3]"#, 1));
    }

    #[test]
    fn loopback_hosts_are_localhost_127_and_ipv6_one() {
        for h in [
            "localhost",
            "localhost:8787",
            "LOCALHOST",
            "app.localhost:5173",
            "127.0.0.1",
            "127.0.0.1:8787",
            "127.9.9.9:1",
            "[::1]:8787",
            "[::1]",
        ] {
            assert!(loopback_host(h), "{h}");
        }
        for h in [
            "evil.example",
            "evil.example:8787",
            "localhost.evil.example",
            "128.0.0.1:8787",
            "10.0.0.1",
            "[::2]:8787",
            "",
        ] {
            assert!(!loopback_host(h), "{h}");
        }
    }
}
