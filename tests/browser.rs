//! The browser log in real headless browsers: Chromium, Firefox and WebKit
//! (`wasm-pack test --headless --chrome`, `--firefox`, and `--safari` driving WebKitGTK's
//! WebKitWebDriver under Xvfb; see scripts/test).
//! Each test uses its own log name and deletes it first.
#![cfg(target_arch = "wasm32")]

use futures::future::join_all;
use js_sys::{Function, Reflect, Uint8Array};
use logfold::error::{CloseReason, Error};
use logfold::log::{database_name, fold_past, Durability, Log, Projections};
use logfold::tables::parse_definitions;
use logfold_core::table::Key;
use logfold_core::{Batch, ExpectedVersion, NewEvent};
use rexie::{Rexie, TransactionMode};
use wasm_bindgen::JsValue;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

/// Opens `name` strictly, without projections, and checks what open did not read.
async fn open(name: &str) -> Result<Log, Error> {
    let log = Log::open(
        name,
        Durability::Strict,
        None,
        Projections::default(),
        None,
        None,
    )
    .await?;
    if let Err(e) = log.verify_rest().await {
        log.close().await;
        return Err(e);
    }
    Ok(log)
}

/// Deletes log `name`'s database, as `Logfold.destroy` does in JS.
async fn destroy(name: &str) -> Result<(), rexie::Error> {
    Rexie::delete(&database_name(name)).await
}

async fn fresh(name: &str) -> Log {
    destroy(name).await.unwrap();
    open(name).await.unwrap()
}

fn deposit(account: &str, amount: u32) -> NewEvent {
    NewEvent::new(account, "Deposited", format!("{{\"amount\":{amount}}}"))
}

async fn all(log: &Log) -> Vec<serde_json::Value> {
    serde_json::from_str(&log.read_json(Some(0), u64::MAX).await.unwrap()).unwrap()
}

/// The record under `key` in `store` of log `name`, read raw.
async fn raw_get(name: &str, store: &str, key: &str) -> Option<JsValue> {
    let db = raw(name).await;
    let tx = db.transaction(&[store], TransactionMode::ReadOnly).unwrap();
    let value = tx.store(store).unwrap().get(key.into()).await.unwrap();
    drop(tx);
    db.close();
    value
}

/// Every segment of log `name`, read raw: their keys and bytes.
async fn raw_segments(name: &str) -> (Vec<u64>, Vec<Vec<u8>>) {
    let db = raw(name).await;
    let tx = db
        .transaction(&["segments"], TransactionMode::ReadOnly)
        .unwrap();
    let store = tx.store("segments").unwrap();
    let keys = store.get_all_keys(None, None).await.unwrap();
    let values = store.get_all(None, None).await.unwrap();
    drop(tx);
    db.close();
    (
        keys.iter().map(|k| k.as_f64().unwrap() as u64).collect(),
        values.iter().map(|v| Uint8Array::new(v).to_vec()).collect(),
    )
}

/// Opens the raw database with rexie, as another program (or a bad disk) would see it.
async fn raw(name: &str) -> Rexie {
    Rexie::builder(&database_name(name))
        .version(1)
        .build()
        .await
        .unwrap()
}

#[wasm_bindgen_test]
async fn given_an_empty_log_when_batches_are_appended_then_they_read_back_in_order() {
    let log = fresh("t-append").await;
    log.append(Batch::new(vec![deposit("a", 1), deposit("b", 2)]))
        .await
        .unwrap();
    let out = log.append(Batch::new(vec![deposit("a", 3)])).await.unwrap();
    assert_eq!((out.events[0].seq, out.events[0].version), (3, 2));
    let events = all(&log).await;
    let got: Vec<(String, u64, u64)> = events
        .iter()
        .map(|e| {
            (
                e["stream"].as_str().unwrap().to_owned(),
                e["version"].as_u64().unwrap(),
                e["seq"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [("a".into(), 1, 1), ("b".into(), 1, 2), ("a".into(), 2, 3)]
    );
    assert_eq!(events[2]["data"]["amount"], 3);
    assert_eq!(log.version("a").await.unwrap(), 2);
    assert_eq!(log.head(), 3);
    let page: Vec<serde_json::Value> =
        serde_json::from_str(&log.read_json(Some(1), 1).await.unwrap()).unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0]["seq"], 2);
    log.close().await;
}

#[wasm_bindgen_test]
async fn a_conflicting_append_writes_nothing() {
    let log = fresh("t-conflict").await;
    log.append(Batch::new(vec![deposit("a", 1)])).await.unwrap();
    let batch =
        Batch::new(vec![deposit("a", 2), deposit("b", 2)]).expect("a", ExpectedVersion::NoStream);
    match log.append(batch).await {
        Err(Error::Conflict(c)) => assert_eq!((c.stream.as_str(), c.actual), ("a", 1)),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(all(&log).await.len(), 1);
    assert_eq!(log.version("b").await.unwrap(), 0);
    let ok = Batch::new(vec![deposit("a", 2)]).expect("a", ExpectedVersion::Exact(1));
    assert_eq!(log.append(ok).await.unwrap().events[0].version, 2);
    log.close().await;
}

#[wasm_bindgen_test]
async fn concurrent_appends_share_transactions_and_get_distinct_positions() {
    let log = fresh("t-group").await;
    let calls = (0..100).map(|i| log.append(Batch::new(vec![deposit(&format!("s{}", i % 7), i)])));
    let results = join_all(calls).await;
    let mut seqs: Vec<u64> = results
        .into_iter()
        .map(|r| r.unwrap().events[0].seq)
        .collect();
    seqs.sort();
    assert_eq!(seqs, (1..=100).collect::<Vec<_>>());
    assert!(log.stats().transactions < 100, "{:?}", log.stats());
    assert_eq!(log.version("s0").await.unwrap(), 15);
    log.close().await;
}

#[wasm_bindgen_test]
async fn a_large_event_gets_its_own_segment_and_an_oversized_one_is_refused() {
    let log = fresh("t-large").await;
    let big = format!("\"{}\"", "x".repeat(100_000));
    log.append(Batch::new(vec![
        deposit("a", 1),
        NewEvent::new("a", "Big", big.clone()),
        deposit("a", 2),
    ]))
    .await
    .unwrap();
    assert_eq!(log.stats().segments_written, 3);
    let events = all(&log).await;
    assert_eq!(events[1]["data"].as_str().unwrap().len(), 100_000);
    let huge = format!("\"{}\"", "x".repeat(1024 * 1024));
    match log
        .append(Batch::new(vec![NewEvent::new("a", "Huge", huge)]))
        .await
    {
        Err(Error::Invalid(e)) => assert_eq!((e.index, e.field.as_str()), (0, "data")),
        other => panic!("expected invalid, got {other:?}"),
    }
    assert_eq!(log.head(), 3);
    log.close().await;
}

#[wasm_bindgen_test]
async fn compaction_merges_small_segments_and_keeps_every_event() {
    let log = fresh("t-compact").await;
    for i in 0..40 {
        log.append(Batch::new(vec![deposit("a", i)])).await.unwrap();
    }
    let before = all(&log).await;
    log.compact().await.unwrap();
    assert_eq!(log.stats().segments_merged, 40);
    assert_eq!(all(&log).await, before);
    let db = raw("t-compact").await;
    let tx = db
        .transaction(&["segments"], TransactionMode::ReadOnly)
        .unwrap();
    assert_eq!(tx.store("segments").unwrap().count(None).await.unwrap(), 1);
    drop(tx);
    db.close();
    log.close().await;
    let reopened = open("t-compact").await.unwrap();
    assert_eq!(all(&reopened).await, before);
    reopened.close().await;
}

/// `Logfold.repair` is JS (js/store.js): tests/e2e/damage.test.mjs repairs such logs.
#[wasm_bindgen_test]
async fn a_damaged_segment_fails_open_with_its_positions() {
    let log = fresh("t-corrupt").await;
    log.append(Batch::new(vec![deposit("a", 1), deposit("a", 2)]))
        .await
        .unwrap();
    log.append(Batch::new(vec![deposit("b", 3), deposit("a", 4)]))
        .await
        .unwrap();
    log.append(Batch::new(vec![deposit("c", 5)])).await.unwrap();
    log.close().await;

    // Flip one byte of the segment holding positions 3..=4 (keyed by its last position).
    let db = raw("t-corrupt").await;
    let tx = db
        .transaction(&["segments"], TransactionMode::ReadWrite)
        .unwrap();
    let store = tx.store("segments").unwrap();
    let value = store.get(JsValue::from(4)).await.unwrap().unwrap();
    let bytes = Uint8Array::new(&value);
    bytes.set_index(20, bytes.get_index(20) ^ 0x40);
    store
        .put(&bytes.buffer(), Some(&JsValue::from(4)))
        .await
        .unwrap();
    tx.done().await.unwrap();
    db.close();

    match open("t-corrupt").await {
        Err(Error::Corrupt { from, to, .. }) => assert_eq!((from, to), (3, 4)),
        Err(other) => panic!("expected corrupt, got {other:?}"),
        Ok(_) => panic!("a damaged log opened"),
    }
}

/// Another tab moving a log used without sync to sync takes its segments to the outbox, and
/// this tab may hear of it only after its check of what open did not read finds them gone:
/// that check says `Closed(Synced)`, not `Corrupt`.
#[wasm_bindgen_test]
async fn the_check_after_open_is_closed_not_corrupt_when_another_tab_moved_the_log_to_sync() {
    let log = fresh("t-moved").await;
    for amount in 1..=3 {
        log.append(Batch::new(vec![deposit("a", amount)]))
            .await
            .unwrap();
    }
    log.close().await;
    // Without projections, open reads from the stream versions' checkpoint, at the head.
    let log = Log::open(
        "t-moved",
        Durability::Strict,
        None,
        Projections::default(),
        None,
        None,
    )
    .await
    .unwrap();
    // What the other tab's move leaves before its message arrives.
    let db = raw("t-moved").await;
    let tx = db
        .transaction(&["segments", "meta"], TransactionMode::ReadWrite)
        .unwrap();
    tx.store("segments").unwrap().clear().await.unwrap();
    tx.store("meta")
        .unwrap()
        .put(&JsValue::TRUE, Some(&"synced".into()))
        .await
        .unwrap();
    tx.done().await.unwrap();
    db.close();
    match log.verify_rest().await {
        Err(Error::Closed(CloseReason::Synced)) => {}
        other => panic!("expected closed (synced), got {other:?}"),
    }
    log.close().await;
}

#[wasm_bindgen_test]
async fn a_log_written_by_an_unknown_format_is_unsupported_not_corrupt() {
    fresh("t-format").await.close().await;
    let db = raw("t-format").await;
    let tx = db
        .transaction(&["meta"], TransactionMode::ReadWrite)
        .unwrap();
    tx.store("meta")
        .unwrap()
        .put(&JsValue::from(99), Some(&JsValue::from_str("format")))
        .await
        .unwrap();
    tx.done().await.unwrap();
    db.close();
    match open("t-format").await {
        Err(Error::UnsupportedFormat(v)) => assert_eq!(v, 99),
        Err(other) => panic!("expected unsupported format, got {other:?}"),
        Ok(_) => panic!("an unknown format opened"),
    }
}

#[wasm_bindgen_test]
async fn destroying_an_open_log_closes_it_instead_of_hanging() {
    destroy("t-versionchange").await.unwrap();
    let on_close = Function::new_with_args("reason", "globalThis.__logfoldClosed = reason");
    let log = Log::open(
        "t-versionchange",
        Durability::Relaxed,
        Some(on_close),
        Projections::default(),
        None,
        None,
    )
    .await
    .unwrap();
    log.append(Batch::new(vec![deposit("a", 1)])).await.unwrap();
    destroy("t-versionchange").await.unwrap();
    assert!(log.is_closed());
    let reason = Reflect::get(&js_sys::global(), &"__logfoldClosed".into()).unwrap();
    assert_eq!(reason.as_string().as_deref(), Some("versionchange"));
    match log.append(Batch::new(vec![deposit("a", 2)])).await {
        Err(Error::Closed(r)) => assert_eq!(r, CloseReason::VersionChange),
        other => panic!("expected closed, got {other:?}"),
    }
}

#[wasm_bindgen_test]
async fn a_closed_log_refuses_calls() {
    let log = fresh("t-closed").await;
    log.close().await;
    assert!(matches!(
        log.append(Batch::new(vec![deposit("a", 1)])).await,
        Err(Error::Closed(CloseReason::Closed))
    ));
    assert!(matches!(
        log.read_json(Some(0), 10).await,
        Err(Error::Closed(_))
    ));
}

fn ledger() -> Projections {
    let defs = r#"{"accounts": {"key": "stream", "on": {
        "Deposited": {"add": {"balance": "data.amount"}, "count": "movements"},
        "Closed": {"delete": true}}}}"#;
    Projections {
        tables: parse_definitions(defs).unwrap(),
        ..Projections::default()
    }
}

fn balance(log: &Log, account: &str) -> Option<String> {
    log.tables()
        .borrow_mut()
        .get("accounts", &Key::Str(account.into()))
        .unwrap()
}

#[wasm_bindgen_test]
async fn tables_fold_appends_and_reopen_from_their_snapshot() {
    destroy("t-tables").await.unwrap();
    let log = Log::open("t-tables", Durability::Strict, None, ledger(), None, None)
        .await
        .unwrap();
    log.append(Batch::new(vec![
        deposit("a", 5),
        deposit("b", 7),
        deposit("a", 10),
    ]))
    .await
    .unwrap();
    assert_eq!(
        balance(&log, "a").as_deref(),
        Some(r#"{"balance":15,"movements":2}"#)
    );
    // What `log.snapshot()` writes (js/store.js): the tables' snapshots, of position 3.
    let (seq, snapshots) = log.table_snapshots();
    assert_eq!(seq, 3);
    let db = raw("t-tables").await;
    let tx = db
        .transaction(&["snapshots"], TransactionMode::ReadWrite)
        .unwrap();
    for (k, bytes) in &snapshots {
        let value = Uint8Array::from(&bytes[..]).buffer();
        let key = JsValue::from_str(k);
        tx.store("snapshots")
            .unwrap()
            .put(&value, Some(&key))
            .await
            .unwrap();
    }
    tx.done().await.unwrap();
    db.close();
    log.append(Batch::new(vec![NewEvent::new("b", "Closed", "{}")]))
        .await
        .unwrap();
    log.close().await;

    let reopened = Log::open("t-tables", Durability::Strict, None, ledger(), None, None)
        .await
        .unwrap();
    let s = reopened.stats();
    assert_eq!((s.snapshots_loaded, s.events_replayed), (1, 1));
    assert_eq!(
        balance(&reopened, "b"),
        None,
        "the tail after the snapshot was folded"
    );
    // What `log.tablesAt(2)` does (js/store.js): the snapshot is past 2 and there is no base
    // snapshot, so the table folds from the start.
    let mut stored = Vec::new();
    for base in [false, true] {
        let key = &reopened.snapshot_keys(Vec::new(), base)[0];
        stored.push(
            raw_get("t-tables", "snapshots", key)
                .await
                .unwrap_or_default(),
        );
    }
    let mut past = reopened.past_tables(2, 2, &stored[..1], &stored[1..]);
    assert_eq!(past.seq(), 0);
    let (keys, values) = raw_segments("t-tables").await;
    assert_eq!(
        fold_past(&mut past, &keys, &values, 2, true)
            .unwrap()
            .map(|t| t.matches("\"seq\"").count()),
        Some(2)
    );
    assert_eq!(past.seq(), 2);
    assert_eq!(
        past.get("accounts", &Key::Str("b".into()))
            .unwrap()
            .as_deref(),
        Some(r#"{"balance":7,"movements":1}"#)
    );
    assert_eq!(past.count("accounts").unwrap(), 2);
}

#[wasm_bindgen_test]
async fn an_invalid_definition_is_refused_with_its_path() {
    match parse_definitions(r#"{"t": {"on": {"A": {"add": {"n": [1]}}}}}"#) {
        Err(Error::InvalidProjection { path, .. }) => assert_eq!(path, "projections.t.on.A.add.n"),
        other => panic!(
            "expected INVALID_PROJECTION, got {:?}",
            other.map(|v| v.len())
        ),
    }
}

#[wasm_bindgen_test]
async fn stream_versions_hold_across_handles_without_streams_records_per_commit() {
    destroy("t-versions").await.unwrap();
    let a = open("t-versions").await.unwrap();
    let b = open("t-versions").await.unwrap();
    a.append(Batch::new(vec![
        deposit("s", 1),
        deposit("s", 2),
        deposit("s", 3),
    ]))
    .await
    .unwrap();
    // The `streams` store has no record until a checkpoint (one runs when appends pause, so it
    // may have run already on a slow machine); either way the other handle must see 3.
    let stored = raw_get("t-versions", "streams", "s").await;
    assert!(
        stored.is_none() || stored.as_ref().and_then(JsValue::as_f64) == Some(3.0),
        "{stored:?}"
    );
    assert_eq!(b.version("s").await.unwrap(), 3);
    let stale = b
        .append(Batch::new(vec![deposit("s", 4)]).expect("s", ExpectedVersion::Exact(2)))
        .await;
    assert!(matches!(stale, Err(Error::Conflict(_))), "{stale:?}");
    let ok = b
        .append(Batch::new(vec![deposit("s", 4)]).expect("s", ExpectedVersion::Exact(3)))
        .await
        .unwrap();
    assert_eq!(ok.events[0].version, 4);
    let next = a.append(Batch::new(vec![deposit("s", 5)])).await.unwrap();
    assert_eq!(
        next.events[0].version, 5,
        "a folds b's append before placing its own"
    );

    // Close checkpoints the versions; a reopen (with or without one) knows them.
    a.close().await;
    b.close().await;
    let c = open("t-versions").await.unwrap();
    assert_eq!(c.version("s").await.unwrap(), 5);
    let more = c.append(Batch::new(vec![deposit("s", 6)])).await.unwrap();
    assert_eq!(more.events[0].version, 6);
    let d = open("t-versions").await.unwrap();
    assert_eq!(
        d.version("s").await.unwrap(),
        6,
        "from the tail after the checkpoint"
    );
}

#[wasm_bindgen_test]
async fn a_new_synced_log_starts_from_a_snapshot_set_that_fits_and_ignores_one_that_does_not() {
    use logfold::log::Boot;
    use logfold_core::protocol::snapshots::SnapshotSet;
    for name in ["t-boot-src", "t-boot", "t-boot-bad", "t-boot-other"] {
        destroy(name).await.unwrap();
    }
    // The set a server would serve: the tables at 3, and the stream versions there.
    let src = Log::open("t-boot-src", Durability::Strict, None, ledger(), None, None)
        .await
        .unwrap();
    src.append(Batch::new(vec![
        deposit("a", 5),
        deposit("b", 7),
        deposit("a", 10),
    ]))
    .await
    .unwrap();
    let mut set =
        SnapshotSet::decode(&src.snapshot_set(String::new(), Vec::new(), 0).unwrap()).unwrap();
    src.close().await;
    assert_eq!((set.offset, set.entries.len()), (3, 1));
    set.streams = vec![("a".into(), 2), ("b".into(), 1)];
    let boot = |set: Vec<u8>| {
        Some(Boot {
            set,
            server_log: "log-1".into(),
        })
    };

    let log = Log::open(
        "t-boot",
        Durability::Strict,
        None,
        ledger(),
        Some(1 << 20),
        boot(set.encode()),
    )
    .await
    .unwrap();
    let s = log.stats();
    assert_eq!(
        (s.snapshot_set_at, s.snapshots_loaded, s.events_replayed),
        (3, 1, 0)
    );
    assert_eq!((log.start(), log.head()), (4, 3));
    assert_eq!(
        balance(&log, "a").as_deref(),
        Some(r#"{"balance":15,"movements":2}"#)
    );
    assert_eq!(log.version("a").await.unwrap(), 2);
    assert!(matches!(
        log.read_json(Some(1), 10).await,
        Err(Error::Truncated {
            start: 4,
            needed: 2
        })
    ));
    log.close().await;
    // Reopened with a set again: the log exists, the set is not looked at.
    let again = Log::open(
        "t-boot",
        Durability::Strict,
        None,
        ledger(),
        Some(1 << 20),
        boot(vec![1, 2, 3]),
    )
    .await
    .unwrap();
    assert_eq!(
        (again.stats().snapshot_set_at, again.start(), again.head()),
        (0, 4, 3)
    );
    assert_eq!(
        again.stats().streams_rebuilt,
        0,
        "the set's stream versions match their digest"
    );
    // The server log's identity came with the set (meeting another one is divergence).
    let id = raw_get("t-boot", "meta", "serverLog").await;
    assert_eq!(id.and_then(|v| v.as_string()).as_deref(), Some("log-1"));
    assert_eq!(again.version("b").await.unwrap(), 1);
    again.close().await;

    // Damaged bytes, and a set of other projections: the log starts empty.
    let mut damaged = set.encode();
    damaged[8] ^= 1;
    let bad = Log::open(
        "t-boot-bad",
        Durability::Strict,
        None,
        ledger(),
        Some(1 << 20),
        boot(damaged),
    )
    .await
    .unwrap();
    assert_eq!(
        (bad.stats().snapshot_set_at, bad.start(), bad.head()),
        (0, 1, 0)
    );
    bad.close().await;
    let other = Log::open(
        "t-boot-other",
        Durability::Strict,
        None,
        Projections::default(),
        Some(1 << 20),
        boot(set.encode()),
    )
    .await
    .unwrap();
    assert_eq!((other.stats().snapshot_set_at, other.head()), (0, 0));
    other.close().await;
}
