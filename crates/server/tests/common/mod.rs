//! What the server tests share: stores, requests through the router, event builders.
#![allow(dead_code)]

pub mod http;

/// One test per store for each `scenario(kind)` named (a module per scenario).
#[allow(unused_macros)] // not every test crate that shares this module runs scenarios
macro_rules! on_all_stores {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn memory() { super::$scenario(Kind::Memory).await }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() { super::$scenario(Kind::Sqlite).await }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() { super::$scenario(Kind::Postgres).await }
        }
    )*};
}

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use logfold_core::protocol::{PullResponse, PushBatch, PushEvent, PushRequest, PushResponse};
use logfold_core::{EventId, PROTOCOL_VERSION};
use logfold_server::{app, AppState, Config, Hub, Store};
use tower::ServiceExt;

/// The stores the behaviour suite runs on.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Memory,
    Sqlite,
    Postgres,
}

/// The PostgreSQL settings from `LOGFOLD_TEST_PG`; tests fail without it rather than skip.
pub fn pg_url() -> String {
    std::env::var("LOGFOLD_TEST_PG").unwrap_or_else(|_| {
        panic!(
            "LOGFOLD_TEST_PG is not set: the PostgreSQL tests need a server. Run scripts/test-server, \
             or set e.g. LOGFOLD_TEST_PG='host=/var/run/postgresql user=postgres dbname=postgres'"
        )
    })
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A name no other test (in this run or an earlier one) uses.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        nanos % 1_000_000_000_000,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A fresh, empty store of `kind`. The tempdir (for SQLite) lives as long as the test.
pub fn open_store(kind: Kind, hub: &Hub) -> (Store, Option<tempfile::TempDir>) {
    match kind {
        Kind::Memory => (Store::memory(), None),
        Kind::Sqlite => {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("log.sqlite3");
            let store = Store::open(path.to_str().unwrap(), "public", hub).unwrap();
            (store, Some(dir))
        }
        Kind::Postgres => {
            let store = Store::open(&pg_url(), &unique("t"), hub).unwrap();
            (store, None)
        }
    }
}

/// A router over a fresh store, and what keeps the store alive.
pub struct TestApp {
    pub router: Router,
    pub state: AppState,
    _dir: Option<tempfile::TempDir>,
}

pub fn test_app(kind: Kind, config: Config) -> TestApp {
    let hub = Hub::default();
    let (store, dir) = open_store(kind, &hub);
    let state = AppState::new(store, hub, config);
    TestApp {
        router: app(state.clone()),
        state,
        _dir: dir,
    }
}

/// An answer read whole.
pub struct Answer {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl TestApp {
    pub async fn request(&self, req: Request<Body>) -> Answer {
        let res = self.router.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let body = res.into_body().collect().await.unwrap().to_bytes().to_vec();
        Answer {
            status,
            headers,
            body,
        }
    }

    pub async fn post_raw(&self, log: &str, token: Option<&str>, body: Vec<u8>) -> Answer {
        let mut req = Request::post(format!("/v1/logs/{log}/push"))
            .header("content-type", "application/json");
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        self.request(req.body(Body::from(body)).unwrap()).await
    }

    /// Pushes batches; panics unless the answer is 200.
    pub async fn push(&self, log: &str, batches: Vec<PushBatch>) -> PushResponse {
        self.push_as(log, None, batches).await
    }

    pub async fn push_as(
        &self,
        log: &str,
        token: Option<&str>,
        batches: Vec<PushBatch>,
    ) -> PushResponse {
        let body = serde_json::to_vec(&PushRequest {
            protocol: PROTOCOL_VERSION,
            batches,
        })
        .unwrap();
        let a = self.post_raw(log, token, body).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text());
        serde_json::from_slice(&a.body).unwrap()
    }

    pub async fn get(&self, uri: &str, token: Option<&str>) -> Answer {
        let mut req = Request::get(uri);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        self.request(req.body(Body::empty()).unwrap()).await
    }

    /// The whole log as the server has it, read straight from the store.
    pub async fn all(&self, log: &str) -> Vec<logfold_core::Event> {
        let tail = self
            .state
            .store()
            .read(log, 0, 10_000, usize::MAX)
            .await
            .unwrap();
        let (events, head) = (tail.events, tail.head);
        assert_eq!(
            events.len() as u64,
            head,
            "a read returns the whole log up to its head"
        );
        events
    }

    pub async fn pull(&self, log: &str, after: u64, limit: usize) -> PullResponse {
        let a = self
            .get(
                &format!("/v1/logs/{log}/events?after={after}&limit={limit}"),
                None,
            )
            .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text());
        serde_json::from_slice(&a.body).unwrap()
    }
}

static IDS: AtomicU64 = AtomicU64::new(1);

/// A fresh event id, unique across the test binary.
pub fn new_id() -> EventId {
    EventId(
        ((std::process::id() as u128) << 64)
            | IDS.fetch_add(1, Ordering::Relaxed) as u128
            | (7 << 76),
    )
}

/// An event of ~200 bytes on `stream`.
pub fn event(stream: &str) -> PushEvent {
    let id = new_id();
    PushEvent {
        id,
        stream: stream.to_owned(),
        event_type: "ItemAdded".into(),
        data: format!(
            "{{\"item\":\"{id}\",\"title\":\"Buy milk and bread\",\"qty\":2,\"tags\":[\"home\",\"weekly\"],\"note\":\"{}\"}}",
            "x".repeat(40)
        ),
        meta: Some("{\"by\":\"test\"}".into()),
        time: 1_700_000_000_000,
        version: None,
    }
}

pub fn batch(client: &str, number: u64, events: Vec<PushEvent>) -> PushBatch {
    PushBatch {
        client: client.to_owned(),
        epoch: 1,
        batch: number,
        events,
        expected: BTreeMap::new(),
    }
}

pub fn events(stream: &str, n: usize) -> Vec<PushEvent> {
    (0..n).map(|_| event(stream)).collect()
}

pub async fn with_timeout<T>(secs: u64, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .expect("timed out")
}
