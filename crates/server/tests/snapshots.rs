//! Snapshot sets on the server: a client uploads every projection at one offset, the server
//! checks it, fills in its own stream versions at that offset and keeps the newest set of
//! each name; a new device downloads it and pulls only the tail. On memory, SQLite and
//! PostgreSQL.

#[macro_use]
mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;
use logfold_core::protocol::snapshots::{set_id, SnapshotSet, SNAPSHOTS_CONTENT_TYPE};
use logfold_core::table::{snapshot, Table, TableDef};
use logfold_server::{Config, Tokens, MAX_SNAPSHOT_SETS};

on_all_stores!(
    a_set_comes_back_with_the_stream_versions_at_its_offset,
    an_older_or_equal_upload_keeps_the_stored_set_and_a_newer_one_replaces_it,
    invalid_uploads_get_400_and_store_nothing,
    a_set_past_the_head_or_of_an_unknown_log_gets_409,
    a_token_reaches_only_its_own_logs_sets_and_a_reader_cannot_upload,
    at_most_eight_sets_are_kept_per_log_the_oldest_stored_goes,
);

fn items() -> Arc<TableDef> {
    Arc::new(
        TableDef::parse_text(
            r#"{"key":"data.item","on":{"ItemAdded":{"set":{"qty":"data.qty"}}}}"#,
        )
        .unwrap(),
    )
}

/// The set an app would upload at `offset`: a table folded from the log up to it, and a
/// reducer's state.
async fn set_at(app: &TestApp, log: &str, offset: u64, count: u64) -> SnapshotSet {
    let def = items();
    let key = format!("table:items:{}", def.hash);
    let mut table = Table::new(def);
    for e in app.all(log).await.iter().filter(|e| e.seq <= offset) {
        table.apply(&e.as_ref(), None);
    }
    assert_eq!(table.seq(), offset);
    SnapshotSet {
        offset,
        salt: "{\"schemas\":1}".into(),
        entries: vec![
            (
                "reducer:count:1".into(),
                format!("{{\"n\":{count}}}").into_bytes(),
            ),
            (key, snapshot::encode(&table)),
        ],
        streams: Vec::new(),
    }
}

/// A set of one reducer state, which fits any offset.
fn reducer_set(salt: &str, offset: u64) -> SnapshotSet {
    SnapshotSet {
        offset,
        salt: salt.into(),
        entries: vec![("reducer:total:1".into(), b"[1,2]".to_vec())],
        streams: Vec::new(),
    }
}

fn uri(log: &str, set: &str) -> String {
    format!("/v1/logs/{log}/snapshots/{set}")
}

async fn put(app: &TestApp, log: &str, set: &str, bytes: Vec<u8>, token: Option<&str>) -> Answer {
    let mut req = Request::put(uri(log, set)).header("content-type", SNAPSHOTS_CONTENT_TYPE);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    app.request(req.body(Body::from(bytes)).unwrap()).await
}

/// Uploads `set` under its own name; the JSON answer, asserting 200.
async fn upload(app: &TestApp, log: &str, set: &SnapshotSet) -> serde_json::Value {
    let a = put(app, log, &set.id(), set.encode(), None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    a.json()
}

/// The stored set of that name, decoded, asserting 200 and the content type.
async fn download(app: &TestApp, log: &str, set: &str) -> (SnapshotSet, Answer) {
    let a = app.get(&uri(log, set), None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(a.headers["content-type"], SNAPSHOTS_CONTENT_TYPE);
    (SnapshotSet::decode(&a.body).unwrap(), a)
}

fn counter(metrics: &str, name: &str, result: &str) -> u64 {
    let key = format!("{name}{{result=\"{result}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&key))
        .unwrap_or_else(|| panic!("no {key} in\n{metrics}"))
        .parse()
        .unwrap()
}

async fn metrics(app: &TestApp) -> String {
    app.get("/metrics", None).await.text()
}

async fn a_set_comes_back_with_the_stream_versions_at_its_offset(kind: Kind) {
    let app = test_app(kind, Config::default());
    // Offsets 1–4: a a b e. 5–7: c a b. 8: d.
    let mut first = events("a", 2);
    first.push(event("b"));
    first.push(event("e"));
    let second = vec![event("c"), event("a"), event("b")];
    let r = app
        .push(
            "demo",
            vec![
                batch("c1", 1, first),
                batch("c1", 2, second),
                batch("c2", 1, events("d", 1)),
            ],
        )
        .await;
    assert_eq!(r.head, 8);

    let set = set_at(&app, "demo", 5, 3).await;
    assert_eq!(
        upload(&app, "demo", &set).await,
        serde_json::json!({ "offset": 5, "stored": true })
    );
    let (got, answer) = download(&app, "demo", &set.id()).await;
    assert_eq!(got.offset, 5);
    assert_eq!(got.salt, set.salt);
    assert_eq!(got.entries, set.entries);
    // a and b at their versions then (each has events after), c at its first event, e with
    // none after; d begins after the offset and is left out.
    let at = |s: &str, v: u64| (s.to_owned(), v);
    assert_eq!(
        got.streams,
        vec![at("a", 2), at("b", 1), at("c", 1), at("e", 1)]
    );
    assert_eq!(got.check(), Ok(()));
    assert_eq!(answer.headers["logfold-head"], "8");
    let pulled = app.get("/v1/logs/demo/events", None).await;
    assert_eq!(
        answer.headers["logfold-log-id"],
        pulled.headers["logfold-log-id"]
    );

    // No set of another name; the counters.
    let other = reducer_set("other", 5).id();
    let missing = app.get(&uri("demo", &other), None).await;
    assert_eq!(missing.status, StatusCode::NO_CONTENT, "{}", missing.text());
    assert!(missing.body.is_empty());
    let m = metrics(&app).await;
    assert_eq!(counter(&m, "logfold_snapshot_uploads_total", "stored"), 1);
    assert_eq!(counter(&m, "logfold_snapshot_uploads_total", "kept"), 0);
    assert_eq!(counter(&m, "logfold_snapshot_downloads_total", "found"), 1);
    assert_eq!(
        counter(&m, "logfold_snapshot_downloads_total", "missing"),
        1
    );
}

async fn an_older_or_equal_upload_keeps_the_stored_set_and_a_newer_one_replaces_it(kind: Kind) {
    let app = test_app(kind, Config::default());
    app.push("demo", vec![batch("c", 1, events("s", 6))]).await;
    let at4 = set_at(&app, "demo", 4, 1).await;
    let id = at4.id();
    assert_eq!(
        upload(&app, "demo", &at4).await,
        serde_json::json!({ "offset": 4, "stored": true })
    );
    let (_, stored) = download(&app, "demo", &id).await;

    // The same offset with other contents, and an older offset: the stored set stays.
    let again = set_at(&app, "demo", 4, 99).await;
    let older = set_at(&app, "demo", 3, 0).await;
    assert_eq!((again.id(), older.id()), (id.clone(), id.clone()));
    for set in [&again, &older] {
        assert_eq!(
            upload(&app, "demo", set).await,
            serde_json::json!({ "offset": 4, "stored": false })
        );
        let (_, now) = download(&app, "demo", &id).await;
        assert_eq!(now.body, stored.body, "the stored set is unchanged");
    }

    let newer = set_at(&app, "demo", 6, 2).await;
    assert_eq!(
        upload(&app, "demo", &newer).await,
        serde_json::json!({ "offset": 6, "stored": true })
    );
    let (got, _) = download(&app, "demo", &id).await;
    assert_eq!((got.offset, &got.entries), (6, &newer.entries));
    assert_eq!(got.streams, vec![("s".to_owned(), 6)]);
    let m = metrics(&app).await;
    assert_eq!(counter(&m, "logfold_snapshot_uploads_total", "stored"), 2);
    assert_eq!(counter(&m, "logfold_snapshot_uploads_total", "kept"), 2);
}

async fn invalid_uploads_get_400_and_store_nothing(kind: Kind) {
    let app = test_app(kind, Config::default());
    app.push("demo", vec![batch("c", 1, events("s", 4))]).await;
    let good = set_at(&app, "demo", 4, 1).await;
    let id = good.id();
    let mut damaged = good.encode();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0x40;
    let mut truncated = good.encode();
    truncated.truncate(truncated.len() - 1);
    // A table of offset 3 in a set of offset 4: the same name, refused by the check.
    let mut stale_table = set_at(&app, "demo", 3, 1).await;
    stale_table.offset = 4;
    let mut with_streams = good.clone();
    with_streams.streams = vec![("s".into(), 4)];
    let mut unknown_key = good.clone();
    unknown_key.entries.push(("view:x".into(), b"{}".to_vec()));
    let cases: Vec<(&str, String, Vec<u8>, &str)> = vec![
        (
            "uppercase name",
            id.to_uppercase(),
            good.encode(),
            "snapshot set name",
        ),
        (
            "short name",
            id[..15].to_owned(),
            good.encode(),
            "snapshot set name",
        ),
        ("damaged bytes", id.clone(), damaged, "checksum"),
        ("truncated bytes", id.clone(), truncated, "not valid"),
        ("empty body", id.clone(), Vec::new(), "not a snapshot set"),
        (
            "another set's name",
            set_id("another", ["reducer:x:1"]),
            good.encode(),
            "the request names",
        ),
        (
            "failing check",
            id.clone(),
            stale_table.encode(),
            "position 3",
        ),
        (
            "unknown key",
            unknown_key.id(),
            unknown_key.encode(),
            "not a table or reducer",
        ),
        (
            "stream versions sent",
            id.clone(),
            with_streams.encode(),
            "stream versions",
        ),
    ];
    let n = cases.len() as u64;
    for (what, name, bytes, says) in cases {
        let a = put(&app, "demo", &name, bytes, None).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{what}: {}", a.text());
        let body = a.json();
        assert_eq!(body["code"], "BAD_REQUEST", "{what}");
        let message = body["message"].as_str().unwrap();
        assert!(
            message.contains(says),
            "{what}: {message:?} should say {says:?}"
        );
        if valid_name(&name) {
            let stored = app.get(&uri("demo", &name), None).await;
            assert_eq!(stored.status, StatusCode::NO_CONTENT, "{what}: stored");
        }
    }
    let m = metrics(&app).await;
    assert_eq!(counter(&m, "logfold_snapshot_uploads_total", "refused"), n);
    assert_eq!(counter(&m, "logfold_snapshot_uploads_total", "stored"), 0);
    // The same upload, whole, is stored.
    assert_eq!(upload(&app, "demo", &good).await["stored"], true);
}

fn valid_name(name: &str) -> bool {
    logfold_core::protocol::snapshots::valid_set_id(name)
}

async fn a_set_past_the_head_or_of_an_unknown_log_gets_409(kind: Kind) {
    let app = test_app(kind, Config::default());
    app.push("demo", vec![batch("c", 1, events("s", 3))]).await;
    let ahead = reducer_set("r", 4);
    let a = put(&app, "demo", &ahead.id(), ahead.encode(), None).await;
    assert_eq!(a.status, StatusCode::CONFLICT, "{}", a.text());
    assert_eq!(a.json()["code"], "SNAPSHOT_AHEAD");
    assert!(
        a.json()["message"].as_str().unwrap().contains("head 3"),
        "{}",
        a.text()
    );
    let nowhere = reducer_set("r", 1);
    let a = put(&app, "never-written", &nowhere.id(), nowhere.encode(), None).await;
    assert_eq!(a.status, StatusCode::CONFLICT, "{}", a.text());
    assert_eq!(a.json()["code"], "SNAPSHOT_AHEAD");
    for log in ["demo", "never-written"] {
        let stored = app.get(&uri(log, &ahead.id()), None).await;
        assert_eq!(stored.status, StatusCode::NO_CONTENT, "{log}");
    }
    assert!(app.all("never-written").await.is_empty());
    // At the head exactly, it is stored.
    assert_eq!(
        upload(&app, "demo", &reducer_set("r", 3)).await,
        serde_json::json!({ "offset": 3, "stored": true })
    );
    let m = metrics(&app).await;
    assert_eq!(counter(&m, "logfold_snapshot_uploads_total", "refused"), 2);
}

const TOKENS: &str = "
writer-a-token   log-a:write
reader-a-token   log-a:read
writer-b-token   log-b:write
";

async fn a_token_reaches_only_its_own_logs_sets_and_a_reader_cannot_upload(kind: Kind) {
    let app = test_app(
        kind,
        Config {
            tokens: Some(Tokens::parse(TOKENS).unwrap()),
            ..Config::default()
        },
    );
    app.push_as(
        "log-a",
        Some("writer-a-token"),
        vec![batch("ca", 1, events("s", 3))],
    )
    .await;
    app.push_as(
        "log-b",
        Some("writer-b-token"),
        vec![batch("cb", 1, events("s", 3))],
    )
    .await;
    let first = reducer_set("r", 2);
    let id = first.id();
    let a = put(&app, "log-a", &id, first.encode(), Some("writer-a-token")).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());

    let newer = reducer_set("r", 3).encode();
    for (what, token, status) in [
        ("reader", Some("reader-a-token"), StatusCode::FORBIDDEN),
        (
            "other log's writer",
            Some("writer-b-token"),
            StatusCode::FORBIDDEN,
        ),
        (
            "unknown token",
            Some("unknown-token-123"),
            StatusCode::UNAUTHORIZED,
        ),
        ("no token", None, StatusCode::UNAUTHORIZED),
    ] {
        let a = put(&app, "log-a", &id, newer.clone(), token).await;
        assert_eq!(a.status, status, "PUT by {what}: {}", a.text());
        if what != "reader" {
            let a = app.get(&uri("log-a", &id), token).await;
            assert_eq!(a.status, status, "GET by {what}: {}", a.text());
            assert!(a.headers.get("logfold-head").is_none(), "{what}");
            assert!(a.headers.get("logfold-log-id").is_none(), "{what}");
        }
    }
    let a = app.get(&uri("log-a", &id), Some("reader-a-token")).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(SnapshotSet::decode(&a.body).unwrap().offset, 2, "unchanged");
    // Sets are per log: log-b has none of that name until its own writer uploads one.
    let b = app.get(&uri("log-b", &id), Some("writer-b-token")).await;
    assert_eq!(b.status, StatusCode::NO_CONTENT, "{}", b.text());
    let m = metrics(&app).await;
    assert_eq!(counter(&m, "logfold_snapshot_uploads_total", "refused"), 0);
}

async fn at_most_eight_sets_are_kept_per_log_the_oldest_stored_goes(kind: Kind) {
    let app = test_app(kind, Config::default());
    app.push("demo", vec![batch("c", 1, events("s", 12))]).await;
    app.push("other", vec![batch("c", 1, events("s", 10))])
        .await;
    let salt = |i: usize| format!("app-{i}");
    for i in 0..10 {
        assert_eq!(
            upload(&app, "demo", &reducer_set(&salt(i), 10)).await["stored"],
            true
        );
    }
    // Another log's sets are counted apart.
    upload(&app, "other", &reducer_set(&salt(0), 10)).await;
    // Set 2 stored anew, set 4's equal upload kept (not stored again), then sets 10 and 11.
    assert_eq!(
        upload(&app, "demo", &reducer_set(&salt(2), 12)).await["stored"],
        true
    );
    assert_eq!(
        upload(&app, "demo", &reducer_set(&salt(4), 10)).await["stored"],
        false
    );
    upload(&app, "demo", &reducer_set(&salt(10), 10)).await;
    upload(&app, "demo", &reducer_set(&salt(11), 10)).await;
    let mut kept = Vec::new();
    for i in 0..12 {
        let a = app
            .get(&uri("demo", &reducer_set(&salt(i), 1).id()), None)
            .await;
        match a.status {
            StatusCode::OK => kept.push(i),
            StatusCode::NO_CONTENT => {}
            s => panic!("set {i}: {s} {}", a.text()),
        }
    }
    assert_eq!(kept, vec![2, 5, 6, 7, 8, 9, 10, 11]);
    assert_eq!(kept.len(), MAX_SNAPSHOT_SETS);
    let a = app
        .get(&uri("other", &reducer_set(&salt(0), 1).id()), None)
        .await;
    assert_eq!(a.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_over_the_body_limit_gets_413_and_stores_nothing() {
    let app = test_app(
        Kind::Memory,
        Config {
            max_body: 64,
            ..Config::default()
        },
    );
    // Any push is over 64 bytes too: the body limit comes before the log is looked at.
    let mut set = reducer_set("r", 1);
    set.entries[0].1 = format!("\"{}\"", "x".repeat(100)).into_bytes();
    let a = put(&app, "demo", &set.id(), set.encode(), None).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", a.text());
    assert_eq!(a.json()["code"], "PAYLOAD_TOO_LARGE");
    let stored = app.get(&uri("demo", &set.id()), None).await;
    assert_eq!(stored.status, StatusCode::NO_CONTENT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cors_page_may_put_sets_and_read_the_download_headers() {
    const PAGE: &str = "http://localhost:5173";
    let app = test_app(
        Kind::Memory,
        Config {
            cors_origins: vec![PAGE.into()],
            ..Config::default()
        },
    );
    app.push("demo", vec![batch("c", 1, events("s", 2))]).await;
    let set = reducer_set("r", 2);
    let preflight = Request::options(uri("demo", &set.id()))
        .header("origin", PAGE)
        .header("access-control-request-method", "PUT")
        .header(
            "access-control-request-headers",
            "authorization,content-type",
        )
        .body(Body::empty())
        .unwrap();
    let a = app.request(preflight).await;
    assert_eq!(a.headers["access-control-allow-origin"], PAGE);
    let methods = a.headers["access-control-allow-methods"].to_str().unwrap();
    assert!(methods.contains("PUT"), "{methods}");
    let headers = a.headers["access-control-allow-headers"].to_str().unwrap();
    assert!(headers.contains("content-type"), "{headers}");

    let req = Request::put(uri("demo", &set.id()))
        .header("origin", PAGE)
        .header("content-type", SNAPSHOTS_CONTENT_TYPE)
        .body(Body::from(set.encode()))
        .unwrap();
    let a = app.request(req).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let req = Request::get(uri("demo", &set.id()))
        .header("origin", PAGE)
        .body(Body::empty())
        .unwrap();
    let a = app.request(req).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let exposed = a.headers["access-control-expose-headers"].to_str().unwrap();
    assert!(
        exposed.contains("logfold-head") && exposed.contains("logfold-log-id"),
        "{exposed}"
    );
}

/// Opens the store, writes three events, drops `snapshot_sets` as a database made before it
/// would lack it, and opens it again: the table is made and a set is stored.
async fn a_database_from_before_snapshot_sets_gets_the_table(
    open: impl Fn() -> logfold_server::Store,
    drop_table: impl FnOnce() + Send + 'static,
) {
    let store = open();
    let job = logfold_server::PushJob {
        batches: vec![batch("c", 1, events("s", 3))],
        owner: None,
        bytes: 0,
    };
    let pushed = store
        .push("demo", job, logfold_core::Limits::default())
        .await
        .unwrap();
    assert_eq!(pushed.head, 3);
    drop(store);
    // The blocking clients must not run on the runtime's threads.
    std::thread::spawn(drop_table).join().unwrap();
    let store = open();
    let set = reducer_set("r", 3);
    let upload = store.put_snapshots("demo", set.clone()).await.unwrap();
    assert_eq!(upload, logfold_server::Upload::Stored);
    let got = store.snapshots("demo", &set.id()).await.unwrap().unwrap();
    let got = SnapshotSet::decode(&got.bytes).unwrap();
    assert_eq!(got.streams, vec![("s".to_owned(), 3)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_sqlite_database_gets_the_snapshot_table() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.sqlite3");
    let path = path.to_str().unwrap().to_owned();
    let p = path.clone();
    a_database_from_before_snapshot_sets_gets_the_table(
        || logfold_server::Store::open(&path, "public", &logfold_server::Hub::default()).unwrap(),
        move || {
            let conn = rusqlite::Connection::open(&p).unwrap();
            conn.execute_batch("DROP TABLE snapshot_sets").unwrap();
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_postgres_schema_gets_the_snapshot_table() {
    let schema = unique("old");
    let (url, s) = (pg_url(), schema.clone());
    a_database_from_before_snapshot_sets_gets_the_table(
        || {
            logfold_server::Store::open(&pg_url(), &schema, &logfold_server::Hub::default())
                .unwrap()
        },
        move || {
            let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
            c.batch_execute(&format!("DROP TABLE \"{s}\".snapshot_sets"))
                .unwrap();
        },
    )
    .await;
}
