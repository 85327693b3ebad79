//! The behaviour suite: every scenario runs on the memory, SQLite and PostgreSQL stores, so
//! the simulated server cannot drift from the real ones.

#[macro_use]
mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;
use http_body_util::BodyExt;
use logfold_core::protocol::{BatchResult, RejectReason, SEGMENT_CONTENT_TYPE};
use logfold_core::segment::Segment;
use logfold_core::{ExpectedVersion, Limits};
use logfold_server::{Config, Tokens};

on_all_stores!(
    round_trip,
    duplicates,
    partly_known_batches,
    conflicts,
    rejections_never_block_later_batches,
    stale_epochs,
    body_over_the_limit_is_refused_whole,
    auth_statuses_write_nothing,
    malformed_requests_get_400_and_write_nothing,
    protocol_version_mismatch,
    live_tail_resumes_from_last_event_id,
    a_quiet_live_tail_hears_keepalives_and_the_header_names_their_interval,
    metrics_count_requests_and_events,
    a_client_id_belongs_to_the_token_that_first_pushed_it,
    pages_are_cut_by_bytes,
    every_answer_names_the_log_it_comes_from,
);

fn json_of(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap()
}

fn reason(r: &BatchResult) -> Option<RejectReason> {
    match r {
        BatchResult::Rejected { reason, .. } => Some(*reason),
        _ => None,
    }
}

async fn round_trip(kind: Kind) {
    let app = test_app(kind, Config::default());
    let first = events("list-1", 2);
    let mut second = events("list-2", 1);
    second.push(event("list-1"));
    let r = app
        .push(
            "demo",
            vec![
                batch("c1", 1, first.clone()),
                batch("c2", 1, second.clone()),
            ],
        )
        .await;
    assert_eq!(r.head, 4);
    assert_eq!(
        r.results,
        vec![
            BatchResult::Accepted {
                offsets: vec![1, 2],
                versions: vec![1, 2]
            },
            BatchResult::Accepted {
                offsets: vec![3, 4],
                versions: vec![1, 3]
            },
        ]
    );

    let pulled = app.pull("demo", 0, 100).await;
    assert_eq!(pulled.head, 4);
    let sent: Vec<_> = first.iter().chain(&second).collect();
    for (i, (got, sent)) in pulled.events.iter().zip(&sent).enumerate() {
        assert_eq!(got.offset, i as u64 + 1);
        assert_eq!(
            (got.id, &got.stream, &got.event_type),
            (sent.id, &sent.stream, &sent.event_type)
        );
        assert_eq!(
            (&got.data, &got.meta, got.time),
            (&sent.data, &sent.meta, sent.time)
        );
    }
    assert_eq!(pulled.events[3].origin, "c2");
    assert_eq!(pulled.events[3].version, 3);

    let page = app.pull("demo", 1, 2).await;
    let offsets: Vec<u64> = page.events.iter().map(|e| e.offset).collect();
    assert_eq!((offsets, page.head), (vec![2, 3], 4));
    assert!(app.pull("demo", 4, 10).await.events.is_empty());
    assert_eq!(app.pull("never-written", 0, 10).await.head, 0);

    // The binary encoding carries the same events, its head in a header.
    let req = Request::get("/v1/logs/demo/events?after=1")
        .header("accept", SEGMENT_CONTENT_TYPE)
        .body(Body::empty())
        .unwrap();
    let a = app.request(req).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.headers["content-type"], SEGMENT_CONTENT_TYPE);
    assert_eq!(a.headers["logfold-head"], "4");
    let seg = Segment::parse(&a.body).unwrap();
    let decoded = seg.decode().unwrap();
    assert_eq!(decoded.len(), 3);
    assert_eq!((decoded[0].offset, decoded[0].id), (Some(2), sent[1].id));
    assert_eq!(decoded[2].data, sent[3].data);
    let req = Request::get("/v1/logs/demo/events?after=4")
        .header("accept", SEGMENT_CONTENT_TYPE)
        .body(Body::empty())
        .unwrap();
    let a = app.request(req).await;
    assert_eq!(
        (a.status, a.body.len()),
        (StatusCode::OK, 0),
        "nothing new: an empty body"
    );
    assert_eq!(a.headers["logfold-head"], "4");
}

async fn duplicates(kind: Kind) {
    let app = test_app(kind, Config::default());
    let b = batch("c1", 7, events("s", 3));
    app.push("demo", vec![batch("c0", 1, events("s", 1))]).await;
    let first = app.push("demo", vec![b.clone()]).await;
    assert_eq!(first.results[0].offsets(), [2, 3, 4]);
    let again = app.push("demo", vec![b.clone()]).await;
    assert_eq!(
        again.results,
        vec![BatchResult::Duplicate {
            offsets: vec![2, 3, 4],
            versions: vec![2, 3, 4]
        }]
    );
    // The same events under a new batch number (a client that lost its counter).
    let renumbered = app
        .push("demo", vec![batch("c1", 8, b.events.clone())])
        .await;
    assert!(
        matches!(&renumbered.results[0], BatchResult::Duplicate { offsets, .. } if offsets == &[2, 3, 4])
    );
    assert_eq!(app.all("demo").await.len(), 4);
}

async fn partly_known_batches(kind: Kind) {
    let app = test_app(kind, Config::default());
    let known = events("s", 2);
    app.push("demo", vec![batch("c1", 1, known.clone())]).await;
    let mut mixed = known[..1].to_vec();
    mixed.push(event("s"));
    let r = app
        .push(
            "demo",
            vec![
                batch("c1", 1, events("s", 2)), // same number, other events
                batch("c1", 2, mixed),          // one event known, one new
                batch("c1", 3, events("s", 1)),
            ],
        )
        .await;
    assert_eq!(reason(&r.results[0]), Some(RejectReason::PartlyKnown));
    assert_eq!(reason(&r.results[1]), Some(RejectReason::PartlyKnown));
    assert_eq!(r.results[2].offsets(), [3]);
    assert_eq!(app.all("demo").await.len(), 3);
}

async fn conflicts(kind: Kind) {
    let app = test_app(kind, Config::default());
    app.push("demo", vec![batch("c1", 1, events("acct", 2))])
        .await;
    let mut stale = batch("c2", 1, vec![event("acct"), event("other")]);
    stale
        .expected
        .insert("acct".into(), ExpectedVersion::Exact(1));
    // Another client, judged on its own; then c2 again, whose expectation on "acct" counted
    // the refused batch's event (`depends`); then c2 on a stream the refused batch did not touch.
    let mut fresh = batch("c3", 1, vec![event("acct")]);
    fresh
        .expected
        .insert("acct".into(), ExpectedVersion::Exact(2));
    let mut counted = batch("c2", 2, vec![event("acct")]);
    counted
        .expected
        .insert("acct".into(), ExpectedVersion::Exact(3));
    let mut new_stream = batch("c2", 3, vec![event("acct-2")]);
    new_stream
        .expected
        .insert("acct-2".into(), ExpectedVersion::NoStream);
    let r = app
        .push("demo", vec![stale, fresh, counted, new_stream])
        .await;
    match &r.results[0] {
        BatchResult::Rejected {
            reason: RejectReason::Conflict,
            details,
            message,
        } => {
            assert_eq!(
                (
                    json_of(details)["stream"].as_str(),
                    json_of(details)["actual"].as_u64()
                ),
                (Some("acct"), Some(2))
            );
            assert_eq!(json_of(details)["expected"], 1);
            assert!(message.contains("version 2"), "{message}");
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert!(matches!(&r.results[1], BatchResult::Accepted { versions, .. } if versions == &[3]));
    assert_eq!(reason(&r.results[2]), Some(RejectReason::Depends));
    assert_eq!(r.results[3].offsets(), [4]);
    let all = app.all("demo").await;
    assert!(
        all.iter().all(|e| e.stream != "other"),
        "nothing of the rejected batch is stored"
    );
}

async fn rejections_never_block_later_batches(kind: Kind) {
    let config = Config {
        limits: Limits {
            max_event_bytes: 1000,
            ..Limits::default()
        },
        ..Config::default()
    };
    let app = test_app(kind, config);
    let mut big = event("s");
    big.data = format!("\"{}\"", "y".repeat(1000));
    let mut unnamed = event("s");
    unnamed.event_type = String::new();
    let twice = event("s");
    let mut stray = batch("c", 4, events("s", 1));
    stray
        .expected
        .insert("elsewhere".into(), ExpectedVersion::Any);
    let r = app
        .push(
            "demo",
            vec![
                batch("c", 1, vec![event("s"), big]),
                batch("c", 2, vec![unnamed]),
                batch("c", 3, vec![twice.clone(), twice]),
                stray,
                batch("c", 5, vec![]),
                batch("c", 6, events("s", 2)),
            ],
        )
        .await;
    let reasons: Vec<_> = r.results.iter().map(reason).collect();
    use RejectReason::*;
    assert_eq!(
        reasons,
        [
            Some(InvalidEvent),
            Some(InvalidEvent),
            Some(InvalidBatch),
            Some(InvalidBatch),
            Some(InvalidBatch),
            None
        ]
    );
    match &r.results[0] {
        BatchResult::Rejected { details, .. } => {
            assert_eq!(
                (
                    json_of(details)["index"].as_u64(),
                    json_of(details)["field"].as_str()
                ),
                (Some(1), Some("data"))
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(r.results[5].offsets(), [1, 2]);
    assert_eq!(app.all("demo").await.len(), 2);
}

async fn stale_epochs(kind: Kind) {
    let app = test_app(kind, Config::default());
    let mut new_leader = batch("dev", 1, events("s", 1));
    new_leader.epoch = 5;
    let mut old_leader = batch("dev", 2, events("s", 1));
    old_leader.epoch = 4;
    let r = app.push("demo", vec![new_leader, old_leader]).await;
    assert_eq!(r.results[0].offsets(), [1]);
    match &r.results[1] {
        BatchResult::Rejected {
            reason: RejectReason::StaleEpoch,
            details,
            ..
        } => assert_eq!(json_of(details)["epoch"], 5),
        other => panic!("{other:?}"),
    }
    assert_eq!(app.all("demo").await.len(), 1);
}

async fn body_over_the_limit_is_refused_whole(kind: Kind) {
    let app = test_app(
        kind,
        Config {
            max_body: 20_000,
            ..Config::default()
        },
    );
    let body = serde_json::to_vec(&logfold_core::protocol::PushRequest {
        protocol: 1,
        batches: vec![
            batch("c", 1, events("s", 10)),
            batch("c", 2, events("s", 100)),
        ],
    })
    .unwrap();
    assert!(body.len() > 20_000);
    let a = app.post_raw("demo", None, body).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(a.json()["code"], "PAYLOAD_TOO_LARGE");
    assert!(app.all("demo").await.is_empty());
    // Without a Content-Length the limit still holds while streaming.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        vec![Ok(vec![b' '; 15_000]), Ok(vec![b' '; 15_000])];
    let req = Request::post("/v1/logs/demo/push")
        .header("content-type", "application/json")
        .body(Body::from_stream(futures_util::stream::iter(chunks)))
        .unwrap();
    assert_eq!(app.request(req).await.status, StatusCode::PAYLOAD_TOO_LARGE);
    // Just under the limit is fine.
    let r = app.push("demo", vec![batch("c", 1, events("s", 10))]).await;
    assert_eq!(r.head, 10);
}

const TOKENS: &str = "
writer-token-1  demo:write
reader-token-1  demo:read
other-token-1   other:write
admin-token-1   *:write
";

async fn auth_statuses_write_nothing(kind: Kind) {
    let app = test_app(
        kind,
        Config {
            tokens: Some(Tokens::parse(TOKENS).unwrap()),
            ..Config::default()
        },
    );
    let body = || {
        serde_json::to_vec(&logfold_core::protocol::PushRequest {
            protocol: 1,
            batches: vec![batch("c", 1, events("s", 3))],
        })
        .unwrap()
    };
    let cases = [
        (None, StatusCode::UNAUTHORIZED),
        (Some("wrong-token-xyz"), StatusCode::UNAUTHORIZED),
        (Some("reader-token-1"), StatusCode::FORBIDDEN),
        (Some("other-token-1"), StatusCode::FORBIDDEN),
    ];
    for (token, status) in cases {
        let a = app.post_raw("demo", token, body()).await;
        assert_eq!(a.status, status, "token {token:?}: {}", a.text());
        let code = if status == StatusCode::UNAUTHORIZED {
            "UNAUTHORIZED"
        } else {
            "FORBIDDEN"
        };
        assert_eq!(a.json()["code"], code);
        assert!(
            app.all("demo").await.is_empty(),
            "token {token:?} wrote something"
        );
    }
    // Reads: none → 401, out of scope → 403, in scope → 200.
    assert_eq!(
        app.get("/v1/logs/demo/events", None).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.get("/v1/logs/demo/events", Some("other-token-1"))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.get("/v1/logs/demo/live", Some("other-token-1"))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.get("/v1/logs/demo/events", Some("reader-token-1"))
            .await
            .status,
        StatusCode::OK
    );
    // The right token writes.
    let a = app.post_raw("demo", Some("writer-token-1"), body()).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(app.all("demo").await.len(), 3);
    // Another token may write too, as a device of its own: client "c" is the writer's now.
    let as_c = app.post_raw("demo", Some("admin-token-1"), body()).await;
    assert_eq!(as_c.status, StatusCode::FORBIDDEN);
    let own = logfold_core::protocol::PushRequest {
        protocol: 1,
        batches: vec![batch("admin-device", 1, events("s", 1))],
    };
    let a = app
        .post_raw(
            "demo",
            Some("admin-token-1"),
            serde_json::to_vec(&own).unwrap(),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
}

async fn malformed_requests_get_400_and_write_nothing(kind: Kind) {
    let app = test_app(kind, Config::default());
    let cases: [(&[u8], &str); 5] = [
        (b"{\"protocol\":1,\"batches\":[", "EOF"),
        (b"not json", "expected"),
        (b"{\"protocol\":1,\"batches\":[{\"client\":\"c\",\"batch\":1,\"events\":[{\"id\":\"x\",\"stream\":\"s\",\"type\":\"T\",\"data\":1,\"time\":1}]}]}", "not an event id"),
        (b"{\"protocol\":1,\"batches\":[{\"client\":\"c\",\"batch\":1,\"events\":[]}],\"x\":NaN}", "expected value"),
        (b"{\"protocol\":1}", "missing field `batches`"),
    ];
    for (body, says) in cases {
        let a = app.post_raw("demo", None, body.to_vec()).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.text());
        let message = a.json()["message"].as_str().unwrap().to_owned();
        assert!(message.contains(says), "{message:?} should say {says:?}");
    }
    let a = app.post_raw("bad%20name", None, b"{}".to_vec()).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.json()["message"].as_str().unwrap().contains("log name"));
    let a = app.get("/v1/logs/demo/events?after=minus-one", None).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(app.all("demo").await.is_empty());
}

async fn protocol_version_mismatch(kind: Kind) {
    let app = test_app(kind, Config::default());
    let mut newer = serde_json::to_value(logfold_core::protocol::PushRequest {
        protocol: 1,
        batches: vec![batch("c", 1, events("s", 1))],
    })
    .unwrap();
    newer["protocol"] = 2.into();
    // A future client may also send a body of another shape: still an upgrade answer.
    let bodies = [
        serde_json::to_vec(&newer).unwrap(),
        br#"{"protocol":0,"outbox":{"frames":[1,2]}}"#.to_vec(),
    ];
    for body in bodies {
        let a = app.post_raw("demo", None, body).await;
        assert_eq!(a.status, StatusCode::UPGRADE_REQUIRED, "{}", a.text());
        let j = a.json();
        assert_eq!(
            (j["code"].as_str(), j["protocol"].as_u64()),
            (Some("UPGRADE_REQUIRED"), Some(1))
        );
    }
    assert!(app.all("demo").await.is_empty());
}

/// Reads SSE frames until one carries an `id:`; returns (id, data).
async fn next_sse(body: &mut axum::body::Body, buffer: &mut String) -> (u64, serde_json::Value) {
    loop {
        if let Some(end) = buffer.find("\n\n") {
            let frame: String = buffer.drain(..end + 2).collect();
            let mut id = None;
            let mut data = String::new();
            for line in frame.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = Some(v.trim().parse().unwrap());
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            if let Some(id) = id {
                return (id, serde_json::from_str(&data).unwrap());
            }
            continue;
        }
        let frame = with_timeout(10, body.frame())
            .await
            .expect("stream ended")
            .unwrap();
        if let Ok(bytes) = frame.into_data() {
            buffer.push_str(std::str::from_utf8(&bytes).unwrap());
        }
    }
}

async fn live_tail_resumes_from_last_event_id(kind: Kind) {
    let app = test_app(kind, Config::default());
    app.push("demo", vec![batch("c", 1, events("s", 3))]).await;
    // Last-Event-ID (2) wins over ?after=0.
    let req = Request::get("/v1/logs/demo/live?after=0")
        .header("last-event-id", "2")
        .body(Body::empty())
        .unwrap();
    let res = tower::ServiceExt::oneshot(app.router.clone(), req)
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    assert_eq!(res.headers()["logfold-keepalive"], "15");
    let mut body = res.into_body();
    let mut buf = String::new();
    let (id, data) = next_sse(&mut body, &mut buf).await;
    assert_eq!(id, 3);
    assert_eq!(data["events"][0]["offset"], 3);
    assert_eq!(data["events"].as_array().unwrap().len(), 1);
    // Events pushed later arrive on the open stream.
    app.push("demo", vec![batch("c", 2, events("s", 2))]).await;
    let (id, data) = next_sse(&mut body, &mut buf).await;
    assert_eq!(id, 5);
    let offsets: Vec<u64> = data["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(offsets, [4, 5]);
}

async fn a_quiet_live_tail_hears_keepalives_and_the_header_names_their_interval(kind: Kind) {
    let config = Config {
        keepalive: std::time::Duration::from_secs(1),
        ..Config::default()
    };
    let app = test_app(kind, config);
    app.push("demo", vec![batch("c", 1, events("s", 1))]).await;
    let req = Request::get("/v1/logs/demo/live?after=1")
        .body(Body::empty())
        .unwrap();
    let res = tower::ServiceExt::oneshot(app.router.clone(), req)
        .await
        .unwrap();
    assert_eq!(res.headers()["logfold-keepalive"], "1");
    // Nothing to send: within a few intervals, comments (lines starting with ':') and no event.
    let mut body = res.into_body();
    let mut text = String::new();
    while text.matches("\n\n").count() < 2 {
        let frame = with_timeout(5, body.frame()).await.expect("stream ended");
        if let Ok(bytes) = frame.unwrap().into_data() {
            text.push_str(std::str::from_utf8(&bytes).unwrap());
        }
    }
    assert!(
        text.split("\n\n")
            .filter(|f| !f.is_empty())
            .all(|f| f.starts_with(':')),
        "{text:?}"
    );
}

async fn metrics_count_requests_and_events(kind: Kind) {
    let app = test_app(kind, Config::default());
    app.push("demo", vec![batch("c", 1, events("s", 3))]).await;
    app.push("demo", vec![batch("c", 1, events("s", 3))]).await; // other events, same number: rejected
    assert_eq!(app.get("/healthz", None).await.status, StatusCode::OK);
    let text = app.get("/metrics", None).await.text();
    assert!(text.contains("logfold_events_appended_total 3"), "{text}");
    assert!(
        text.contains("logfold_requests_total{route=\"/v1/logs/{log}/push\",status=\"200\"} 2"),
        "{text}"
    );
    assert!(text.contains("logfold_push_seconds_count 2"), "{text}");
}

async fn a_client_id_belongs_to_the_token_that_first_pushed_it(kind: Kind) {
    let tokens = "alice-token-1 notes:write\nbob-token-22 notes:write\n";
    let app = test_app(
        kind,
        Config {
            tokens: Some(Tokens::parse(tokens).unwrap()),
            ..Config::default()
        },
    );
    let alice = Some("alice-token-1");
    let bob = Some("bob-token-22");
    app.push_as("notes", alice, vec![batch("alice-dev", 1, events("a", 2))])
        .await;
    // Bob pushes as Alice's device, with a huge epoch and her next batch number: refused
    // whole, even with a batch of his own device in front of it.
    let mut forged = batch("alice-dev", 2, events("a", 1));
    forged.epoch = u64::MAX / 2;
    let body = serde_json::to_vec(&logfold_core::protocol::PushRequest {
        protocol: 1,
        batches: vec![batch("bob-dev", 1, events("b", 1)), forged],
    })
    .unwrap();
    let a = app.post_raw("notes", bob, body).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.text());
    assert_eq!(a.json()["code"], "FORBIDDEN");
    assert!(a.json()["message"].as_str().unwrap().contains("alice-dev"));
    assert_eq!(app.all("notes").await.len(), 2, "nothing of bob's push");
    // Alice's real batch 2 is still hers: accepted at epoch 1, neither fenced nor a duplicate.
    let r = app
        .push_as("notes", alice, vec![batch("alice-dev", 2, events("a", 1))])
        .await;
    assert!(
        matches!(r.results[0], BatchResult::Accepted { .. }),
        "{:?}",
        r.results[0]
    );
    // Bob's own device was not bound by the refused push, and is his once he pushes it.
    app.push_as("notes", bob, vec![batch("bob-dev", 1, events("b", 1))])
        .await;
    let a = app
        .post_raw(
            "notes",
            alice,
            serde_json::to_vec(&logfold_core::protocol::PushRequest {
                protocol: 1,
                batches: vec![batch("bob-dev", 2, events("b", 1))],
            })
            .unwrap(),
        )
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    let origins: Vec<String> = app
        .all("notes")
        .await
        .into_iter()
        .map(|e| e.origin)
        .collect();
    assert_eq!(origins, ["alice-dev", "alice-dev", "alice-dev", "bob-dev"]);
}

async fn pages_are_cut_by_bytes(kind: Kind) {
    const BIG: usize = 256 * 1024;
    let app = test_app(
        kind,
        Config {
            page_bytes: 1024 * 1024,
            max_body: 64 * 1024 * 1024,
            ..Config::default()
        },
    );
    let big = |n: usize| {
        let mut e = event("s");
        e.data = format!("\"{}{n}\"", "x".repeat(BIG));
        e
    };
    app.push(
        "demo",
        vec![batch("c", 1, (0..20).map(big).collect::<Vec<_>>())],
    )
    .await;
    // Asked for 10,000, a page holds what fits in the budget: 3 events of ~256 KiB in 1 MiB.
    let mut after = 0;
    let mut pages = Vec::new();
    while after < 20 {
        let a = app
            .get(
                &format!("/v1/logs/demo/events?after={after}&limit=10000"),
                None,
            )
            .await;
        assert_eq!(a.status, StatusCode::OK);
        assert!(
            a.body.len() < 1024 * 1024 + 4096,
            "page of {} bytes",
            a.body.len()
        );
        let page: logfold_core::protocol::PullResponse = serde_json::from_slice(&a.body).unwrap();
        assert_eq!(page.head, 20);
        assert_eq!(page.events[0].offset, after + 1, "dense pages");
        after = page.events.last().unwrap().offset;
        pages.push(page.events.len());
    }
    assert_eq!(pages, [3, 3, 3, 3, 3, 3, 2]);
    let tight = test_app(
        kind,
        Config {
            page_bytes: 1000,
            ..Config::default()
        },
    );
    tight
        .push("demo", vec![batch("c", 1, events("s", 30))])
        .await;
    let page = tight.pull("demo", 0, 10_000).await;
    assert_eq!(page.events.len(), 3, "~300 bytes each in 1,000");
    let mut huge = event("s");
    huge.data = format!("\"{}\"", "z".repeat(5000));
    tight
        .push("demo", vec![batch("c", 2, vec![huge, event("s")])])
        .await;
    let page = tight.pull("demo", 30, 10_000).await;
    assert_eq!(page.events.len(), 1, "an event over the budget comes alone");
    assert_eq!(tight.pull("demo", 31, 10_000).await.events.len(), 1);
}

/// A page a developer visits must not reach the anonymous loopback server: it can POST with
/// `no-cors` (no preflight) or rebind its own host name to 127.0.0.1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_pages_cannot_write_to_an_anonymous_server() {
    let app = test_app(
        Kind::Memory,
        Config {
            cors_origins: vec!["http://localhost:5173".into()],
            ..Config::default()
        },
    );
    let body = || {
        serde_json::to_vec(&logfold_core::protocol::PushRequest {
            protocol: 1,
            batches: vec![batch("c", 1, events("s", 1))],
        })
        .unwrap()
    };
    let post = |content_type: &str, origin: Option<&str>, host: &str| {
        let mut req = Request::post("/v1/logs/demo/push")
            .header("content-type", content_type)
            .header("host", host);
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        req.body(Body::from(body())).unwrap()
    };
    let refused = [
        // The no-cors form post of a foreign page.
        (
            post("text/plain", Some("https://evil.example"), "127.0.0.1:8787"),
            StatusCode::FORBIDDEN,
        ),
        // The same from a page of this server's own origin: still not JSON.
        (
            post(
                "text/plain;charset=UTF-8",
                Some("http://127.0.0.1:8787"),
                "127.0.0.1:8787",
            ),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            post(
                "application/json",
                Some("https://evil.example"),
                "127.0.0.1:8787",
            ),
            StatusCode::FORBIDDEN,
        ),
        (
            post("application/json", Some("null"), "127.0.0.1:8787"),
            StatusCode::FORBIDDEN,
        ),
        // DNS rebinding: the page's own origin and host name, pointed at 127.0.0.1.
        (
            post(
                "application/json",
                Some("http://evil.example:8787"),
                "evil.example:8787",
            ),
            StatusCode::FORBIDDEN,
        ),
        (
            post("application/json", None, "evil.example:8787"),
            StatusCode::FORBIDDEN,
        ),
    ];
    for (req, status) in refused {
        let a = app.request(req).await;
        assert_eq!(a.status, status, "{}", a.text());
    }
    let read = Request::get("/v1/logs/demo/events")
        .header("host", "evil.example:8787")
        .body(Body::empty())
        .unwrap();
    assert_eq!(app.request(read).await.status, StatusCode::FORBIDDEN);
    assert!(app.all("demo").await.is_empty(), "nothing written");

    let allowed = [
        post(
            "application/json",
            Some("http://127.0.0.1:8787"),
            "127.0.0.1:8787",
        ),
        post(
            "application/json; charset=utf-8",
            Some("http://localhost:5173"),
            "localhost:8787",
        ),
        post("application/json", None, "localhost:8787"),
    ];
    for req in allowed {
        let a = app.request(req).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    }
    assert_eq!(
        app.all("demo").await.len(),
        1,
        "batch 1 once: the later two reuse its number"
    );
}

async fn every_answer_names_the_log_it_comes_from(kind: Kind) {
    const ID: &str = logfold_core::protocol::LOG_ID_HEADER;
    let app = test_app(kind, Config::default());
    let fresh = app.get("/v1/logs/demo/events", None).await;
    assert_eq!(fresh.status, StatusCode::OK);
    assert!(
        fresh.headers.get(ID).is_none(),
        "a log never written has no identity yet"
    );

    let body = serde_json::to_vec(&logfold_core::protocol::PushRequest {
        protocol: 1,
        batches: vec![batch("c", 1, events("s", 2))],
    })
    .unwrap();
    let pushed = app.post_raw("demo", None, body).await;
    let id = pushed.headers[ID].to_str().unwrap().to_owned();
    assert_eq!(id.len(), 32, "{id}");
    let pulled = app.get("/v1/logs/demo/events?after=2", None).await;
    assert_eq!(
        pulled.headers[ID],
        id.as_str(),
        "the same identity when nothing is new"
    );
    let req = Request::get("/v1/logs/demo/events")
        .header("accept", SEGMENT_CONTENT_TYPE)
        .body(Body::empty())
        .unwrap();
    assert_eq!(app.request(req).await.headers[ID], id.as_str());
    let live = tower::ServiceExt::oneshot(
        app.router.clone(),
        Request::get("/v1/logs/demo/live")
            .body(Body::empty())
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(live.headers()[ID], id.as_str());

    // Another log, and the same log name in another database, are other logs.
    app.push("other", vec![batch("c", 1, events("s", 1))]).await;
    let other = app.get("/v1/logs/other/events", None).await;
    assert_ne!(other.headers[ID], id.as_str());
    let elsewhere = test_app(kind, Config::default());
    elsewhere
        .push("demo", vec![batch("c", 1, events("s", 1))])
        .await;
    let there = elsewhere.get("/v1/logs/demo/events", None).await;
    assert_ne!(
        there.headers[ID],
        id.as_str(),
        "a wiped or other database is another log"
    );
}

/// A database made before log identities existed gets them at open, and keeps them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_from_before_log_identities_gets_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.sqlite3");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE logs (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, head INTEGER NOT NULL);
             CREATE TABLE clients (log_id INTEGER NOT NULL, client TEXT NOT NULL, epoch INTEGER NOT NULL,
                                   PRIMARY KEY (log_id, client)) WITHOUT ROWID;
             INSERT INTO logs (name, head) VALUES ('demo', 0);
             INSERT INTO clients VALUES (1, 'dev', 3);",
        )
        .unwrap();
    }
    let open = || {
        logfold_server::Store::open(
            path.to_str().unwrap(),
            "public",
            &logfold_server::Hub::default(),
        )
        .unwrap()
    };
    let first = open().read("demo", 0, 10, 1000).await.unwrap().log_id;
    assert!(first.is_some());
    let again = open().read("demo", 0, 10, 1000).await.unwrap().log_id;
    assert_eq!(first, again, "an identity is made once");
}
