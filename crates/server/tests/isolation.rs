//! Isolation and limits: a token for one log never reads or writes another through any
//! endpoint, and hostile requests (deep JSON, odd queries, slow bodies, thousands of live
//! tails) each get a clear answer and write nothing. Every "writes nothing" reads the store.

#[macro_use]
mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;
use logfold_core::protocol::snapshots::{SnapshotSet, SNAPSHOTS_CONTENT_TYPE};
use logfold_core::protocol::{PushRequest, SEGMENT_CONTENT_TYPE};
use logfold_core::EventId;
use logfold_server::{AppState, Config, Hub, Tokens};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

on_all_stores!(
    a_token_for_one_log_never_reaches_another,
    odd_queries_get_400_or_are_clamped_and_write_nothing,
    deep_json_gets_400_and_writes_nothing,
);

const TOKENS: &str = "
writer-a-token   log-a:write
reader-a-token   log-a:read
writer-b-token   log-b:write
";

fn push_body(client: &str, n: usize) -> Vec<u8> {
    serde_json::to_vec(&PushRequest {
        protocol: 1,
        batches: vec![batch(client, 1, events("s", n))],
    })
    .unwrap()
}

fn ids(events: &[logfold_core::Event]) -> Vec<EventId> {
    events.iter().map(|e| e.id).collect()
}

fn auth_failures(metrics: &str, status: u16) -> u64 {
    let key = format!("logfold_auth_failures_total{{status=\"{status}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&key))
        .unwrap_or_else(|| panic!("no {key} in\n{metrics}"))
        .parse()
        .unwrap()
}

async fn a_token_for_one_log_never_reaches_another(kind: Kind) {
    let app = test_app(
        kind,
        Config {
            tokens: Some(Tokens::parse(TOKENS).unwrap()),
            ..Config::default()
        },
    );
    let b = app
        .post_raw("log-b", Some("writer-b-token"), push_body("cb", 3))
        .await;
    assert_eq!(b.status, StatusCode::OK, "{}", b.text());
    let a = app
        .post_raw("log-a", Some("writer-a-token"), push_body("ca", 2))
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let (before_a, before_b) = (ids(&app.all("log-a").await), ids(&app.all("log-b").await));
    // log-b has a snapshot set, which an upload from log-a's tokens would replace.
    let b_set = SnapshotSet {
        offset: 2,
        salt: "b".into(),
        entries: vec![("reducer:n:1".into(), b"3".to_vec())],
        streams: Vec::new(),
    };
    let stored = app
        .request(
            Request::put(format!("/v1/logs/log-b/snapshots/{}", b_set.id()))
                .header("authorization", "Bearer writer-b-token")
                .body(Body::from(b_set.encode()))
                .unwrap(),
        )
        .await;
    assert_eq!(stored.status, StatusCode::OK, "{}", stored.text());
    // The intruders' upload is newer (log-b's head is 3).
    let b_set = SnapshotSet { offset: 3, ..b_set };
    let b_stored = app
        .state
        .store()
        .snapshots("log-b", &b_set.id())
        .await
        .unwrap()
        .expect("log-b's set");

    // Every route that names a log, each way of naming log-b.
    let requests = |token: &str| -> Vec<(String, Request<Body>)> {
        let auth = format!("Bearer {token}");
        let get = |uri: &str, extra: Option<(&str, &str)>| {
            let mut r = Request::get(uri).header("authorization", &auth);
            if let Some((k, v)) = extra {
                r = r.header(k, v);
            }
            r.body(Body::empty()).unwrap()
        };
        vec![
            (
                "push".into(),
                Request::post("/v1/logs/log-b/push")
                    .header("authorization", &auth)
                    .header("content-type", "application/json")
                    .body(Body::from(push_body("intruder", 1)))
                    .unwrap(),
            ),
            (
                "pull json".into(),
                get("/v1/logs/log-b/events?after=0", None),
            ),
            (
                "pull segment".into(),
                get(
                    "/v1/logs/log-b/events?after=0",
                    Some(("accept", SEGMENT_CONTENT_TYPE)),
                ),
            ),
            ("live".into(), get("/v1/logs/log-b/live?after=0", None)),
            (
                "live resumed".into(),
                get("/v1/logs/log-b/live", Some(("last-event-id", "1"))),
            ),
            (
                "percent-encoded name".into(),
                get("/v1/logs/log%2Db/events", None),
            ),
            (
                "snapshot upload".into(),
                Request::put(format!("/v1/logs/log-b/snapshots/{}", b_set.id()))
                    .header("authorization", &auth)
                    .header("content-type", SNAPSHOTS_CONTENT_TYPE)
                    .body(Body::from(b_set.encode()))
                    .unwrap(),
            ),
            (
                "snapshot download".into(),
                get(&format!("/v1/logs/log-b/snapshots/{}", b_set.id()), None),
            ),
        ]
    };
    let mut refused = (0u64, 0u64);
    for token in ["writer-a-token", "reader-a-token", "unknown-token-123"] {
        for (what, req) in requests(token) {
            let answer = app.request(req).await;
            let expected = if token.starts_with("unknown") {
                refused.0 += 1;
                StatusCode::UNAUTHORIZED
            } else {
                refused.1 += 1;
                StatusCode::FORBIDDEN
            };
            assert_eq!(answer.status, expected, "{token} {what}: {}", answer.text());
            // The refusal tells nothing about log-b: no head, no identity, no events.
            assert!(answer.headers.get("logfold-head").is_none(), "{what}");
            assert!(answer.headers.get("logfold-log-id").is_none(), "{what}");
            assert!(!answer.text().contains("\"offset\""), "{what}");
        }
    }
    // A read-only token of log-a cannot write log-a either.
    let r = app
        .post_raw("log-a", Some("reader-a-token"), push_body("ra", 1))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    refused.1 += 1;

    assert_eq!(ids(&app.all("log-a").await), before_a, "log-a changed");
    assert_eq!(ids(&app.all("log-b").await), before_b, "log-b changed");
    let b_now = app.state.store().snapshots("log-b", &b_set.id()).await;
    assert_eq!(
        b_now.unwrap(),
        Some(b_stored),
        "log-b's snapshot set changed"
    );
    assert_eq!((before_a.len(), before_b.len()), (2, 3));

    // /metrics and /healthz need no token and name no log.
    let m = app.get("/metrics", None).await;
    assert_eq!(m.status, StatusCode::OK);
    assert!(!m.text().contains("log-b"), "{}", m.text());
    assert_eq!(auth_failures(&m.text(), 401), refused.0);
    assert_eq!(auth_failures(&m.text(), 403), refused.1);
    assert_eq!(app.get("/healthz", None).await.status, StatusCode::OK);
}

async fn odd_queries_get_400_or_are_clamped_and_write_nothing(kind: Kind) {
    let app = test_app(kind, Config::default());
    // Past the largest limit: two batches of 6,000 (a batch holds at most 10,000).
    app.push(
        "big",
        vec![
            batch("c", 1, events("s", 6_000)),
            batch("c", 2, events("s", 6_000)),
        ],
    )
    .await;
    let whole = |app: &TestApp| {
        let store = app.state.store().clone();
        async move {
            let mut all = store
                .read("big", 0, 10_000, usize::MAX)
                .await
                .unwrap()
                .events;
            let next = store.read("big", 10_000, 10_000, usize::MAX).await.unwrap();
            assert_eq!(next.head, 12_000);
            all.extend(next.events);
            ids(&all)
        }
    };
    let before = whole(&app).await;
    assert_eq!(before.len(), 12_000);

    // A huge limit is clamped to 10,000; zero to 1.
    for (limit, got) in [("1000000000000", 10_000), ("10001", 10_000), ("0", 1)] {
        let page = app
            .get(&format!("/v1/logs/big/events?limit={limit}"), None)
            .await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text());
        assert_eq!(
            page.json()["events"].as_array().unwrap().len(),
            got,
            "limit={limit}"
        );
    }
    // The last offset there can be: nothing after it.
    let end = app
        .get("/v1/logs/big/events?after=18446744073709551615", None)
        .await;
    assert_eq!(end.status, StatusCode::OK);
    assert_eq!(end.json()["events"].as_array().unwrap().len(), 0);

    let bad = [
        "events?after=-1",
        "events?after=abc",
        "events?after=18446744073709551616",
        "events?after=1.5",
        "events?limit=-1",
        "events?limit=many",
        "events?limit=99999999999999999999999",
        "live?after=-1",
        "live?after=abc",
        "live?after=18446744073709551616",
    ];
    for q in bad {
        let a = app.get(&format!("/v1/logs/big/{q}"), None).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{q}: {}", a.text());
        let field = if q.contains("limit") {
            "limit"
        } else {
            "after"
        };
        let message = a.json()["message"].as_str().unwrap().to_owned();
        assert!(
            message.contains(field),
            "{q}: {message:?} should name {field}"
        );
    }
    for id in ["-1", "abc", "18446744073709551616"] {
        let req = Request::get("/v1/logs/big/live")
            .header("last-event-id", id)
            .body(Body::empty())
            .unwrap();
        let a = app.request(req).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "Last-Event-ID {id}");
        assert!(a.text().contains("Last-Event-ID"), "{}", a.text());
    }
    assert_eq!(whole(&app).await, before);
}

async fn deep_json_gets_400_and_writes_nothing(kind: Kind) {
    let app = test_app(kind, Config::default());
    const DEPTH: usize = 100_000;
    let array = format!("{}1{}", "[".repeat(DEPTH), "]".repeat(DEPTH));
    let object = format!("{}1{}", "{\"a\":".repeat(DEPTH), "}".repeat(DEPTH));
    // The whole body nested, one event's data nested, and an unknown field nested.
    let whole = format!("{{\"protocol\":1,\"batches\":{array}}}");
    let in_data = format!(
        "{{\"protocol\":1,\"batches\":[{{\"client\":\"c\",\"epoch\":1,\"batch\":1,\"events\":[{{\"id\":\"{}\",\"stream\":\"s\",\"type\":\"T\",\"data\":{object},\"time\":1}}]}}]}}",
        new_id()
    );
    let objects = format!(
        "{{\"protocol\":1,\"batches\":[{{\"client\":\"c\",\"epoch\":1,\"batch\":1,\"events\":[],\"x\":{object}}}]}}"
    );
    for (what, body) in [("body", whole), ("data", in_data), ("objects", objects)] {
        let a = app.post_raw("deep", None, body.into_bytes()).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{what}: {}", a.text());
        let message = a.json()["message"].as_str().unwrap().to_owned();
        println!("{what}: {message}");
        assert!(
            message.starts_with("the push body is not valid: "),
            "{what}: {message}"
        );
    }
    assert!(app.all("deep").await.is_empty());
    // The server still works.
    assert_eq!(
        app.push("deep", vec![batch("c", 1, events("s", 1))])
            .await
            .head,
        1
    );
}

/// The server on a real loopback socket (port 0), for what only a socket shows.
async fn serve(config: Config) -> (String, AppState, Hub, Option<tempfile::TempDir>) {
    let hub = Hub::default();
    let (store, dir) = open_store(Kind::Sqlite, &hub);
    let state = AppState::new(store, hub.clone(), config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(logfold_server::serve(
        listener,
        state.clone(),
        std::future::pending(),
    ));
    (addr.to_string(), state, hub, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_push_body_gets_408_and_writes_nothing() {
    let (addr, state, _hub, _dir) = serve(Config {
        body_timeout: Duration::from_millis(300),
        ..Config::default()
    })
    .await;
    let body = push_body("slow", 2);
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /v1/logs/slow/push HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&body[..10]).await.unwrap(); // and never the rest
    let mut answer = Vec::new();
    let read = with_timeout(20, async {
        let mut buf = [0u8; 4096];
        loop {
            let n = s.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&buf[..n]);
            if answer.windows(4).any(|w| w == b"\r\n\r\n") && answer.ends_with(b"}") {
                break;
            }
        }
        String::from_utf8_lossy(&answer).into_owned()
    })
    .await;
    assert!(read.starts_with("HTTP/1.1 408"), "{read}");
    assert!(read.contains("REQUEST_TIMEOUT"), "{read}");
    let tail = state.store().read("slow", 0, 10, usize::MAX).await.unwrap();
    assert_eq!((tail.head, tail.events.len()), (0, 0));
}

fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

const TAILS: usize = 2_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_live_tails_are_served_and_freed() {
    let (addr, state, hub, _dir) = serve(Config::default()).await;
    let before = rss_kb();
    let mut tails = Vec::with_capacity(TAILS);
    for _ in 0..TAILS {
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let req = format!("GET /v1/logs/many/live?after=0 HTTP/1.1\r\nHost: {addr}\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        tails.push(s);
    }
    // Each tail has its answer's head before the push, so only the push can wake them.
    let mut buf = vec![0u8; 4096];
    for s in &mut tails {
        let n = with_timeout(30, s.read(&mut buf)).await.unwrap();
        assert!(
            buf[..n].starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&buf[..n])
        );
    }
    let open_kb = rss_kb();
    // Still answering while they are open.
    let http = common::http::client();
    let base = format!("http://{addr}");
    let (status, _, _) = common::http::send(&http, "GET", &format!("{base}/healthz"), &[], vec![])
        .await
        .unwrap();
    assert_eq!(status, 200);
    let pushed = push_body("wake", 1);
    let (status, _, body) = common::http::send(
        &http,
        "POST",
        &format!("{base}/v1/logs/many/push"),
        &[("content-type", "application/json")],
        pushed,
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    // Every tail gets the event.
    for (i, s) in tails.iter_mut().enumerate() {
        let mut got = String::new();
        with_timeout(30, async {
            while !got.contains("\nid: 1\n") && !got.contains("\nid:1\n") {
                let n = s.read(&mut buf).await.unwrap();
                assert!(n > 0, "tail {i} closed");
                got.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        })
        .await;
    }
    let per_tail = (open_kb.saturating_sub(before)) as f64 / TAILS as f64;
    println!("{TAILS} live tails: rss {before} kB before, {open_kb} kB open ({per_tail:.1} kB a tail, client sockets included)");
    assert!(per_tail < 64.0, "{per_tail} kB a tail");

    // Closing them frees their channel: the hub sweeps it at the next new log.
    drop(tails);
    let mut probes = 0;
    with_timeout(60, async {
        loop {
            probes += 1;
            drop(hub.watch(&format!("probe-{probes}")));
            if hub.channels() <= 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert_eq!(
        state
            .store()
            .read("many", 0, 10, usize::MAX)
            .await
            .unwrap()
            .head,
        1
    );
}
