//! How fast the bench's ledger table folds in memory, natively (no wasm, no IndexedDB):
//! `cargo run --release -p logfold-core --example ledger_fold [events]`.
//! The table definition and the events are those of bench/bench.js (`LEDGER`, `ledgerEvents`),
//! same generator and seed, so the figure sits next to the browser's `tables.*` rows.
//! Prints one JSON line: `{"events":…,"ms":…,"events_per_s":…,"rows":…,"errors":…,"acct0_balance":…}`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use logfold_core::table::{fold, TableDef, Value};
use logfold_core::{Event, EventId};

const ACCOUNTS: u32 = 10_000;
const SEED: u32 = 1;

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let def = serde_json::json!({
        "key": "data.account",
        "on": {
            "Opened": { "set": { "owner": "data.owner", "balance": 0, "movements": 0 } },
            "Deposited": { "add": { "balance": "data.amount" }, "count": "movements" },
            "Withdrawn": { "subtract": { "balance": "data.amount" }, "count": "movements" },
            "Transferred": [
                { "row": "data.from", "subtract": { "balance": "data.amount" }, "count": "movements" },
                { "row": "data.to", "add": { "balance": "data.amount" }, "count": "movements" }
            ]
        }
    });
    let def = Arc::new(TableDef::parse_text(&def.to_string()).unwrap());
    let events = ledger_events(n);

    let start = Instant::now();
    let table = run_fold(&def, &events);
    let secs = start.elapsed().as_secs_f64();

    // Checked after the clock stops, against a plain fold of the same events.
    let mut model: HashMap<String, (f64, f64)> = HashMap::new();
    for e in &events {
        let d: serde_json::Value = serde_json::from_str(&e.data).unwrap();
        let amount = d["amount"].as_f64().unwrap_or(0.0);
        let mut touch = |k: &str, delta: f64, moved: f64| {
            let r = model.entry(k.to_owned()).or_default();
            r.0 += delta;
            r.1 += moved;
        };
        match e.event_type.as_str() {
            "Opened" => touch(d["account"].as_str().unwrap(), 0.0, 0.0),
            "Deposited" => touch(d["account"].as_str().unwrap(), amount, 1.0),
            "Withdrawn" => touch(d["account"].as_str().unwrap(), -amount, 1.0),
            _ => {
                touch(d["from"].as_str().unwrap(), -amount, 1.0);
                touch(d["to"].as_str().unwrap(), amount, 1.0);
            }
        }
    }
    let col = |name: &str| def.fields.iter().position(|f| f == name).unwrap();
    let (balance, movements) = (col("balance"), col("movements"));
    for (k, (b, m)) in &model {
        let row = table
            .get(&logfold_core::table::Key::Str(k.clone()))
            .expect("row");
        assert_eq!(row[balance], Some(Value::Num(*b)), "balance of {k}");
        assert_eq!(row[movements], Some(Value::Num(*m)), "movements of {k}");
    }
    assert_eq!(table.len(), model.len());

    // acct-0's balance lets the bench check that bench.js made the same events.
    let acct0 = model.get("acct-0").map_or(0.0, |r| r.0);
    println!(
        r#"{{"events":{n},"ms":{:.1},"events_per_s":{:.0},"rows":{},"errors":{},"acct0_balance":{acct0}}}"#,
        secs * 1e3,
        n as f64 / secs,
        table.len(),
        table.errors().1
    );
}

/// bench.js's `ledgerEvents`: every account opened first, then about 50% deposits, 40%
/// withdrawals and 10% transfers of 1..=100,000 cents, from a xorshift32 generator.
fn ledger_events(n: u64) -> Vec<Event> {
    let mut x = SEED;
    let mut rnd = |k: u32| {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x % k
    };
    let mut versions: HashMap<String, u64> = HashMap::new();
    let mut out = Vec::with_capacity(n as usize);
    for seq in 1..=n {
        let i = seq - 1;
        let (stream, ty, data) = if i < u64::from(ACCOUNTS) {
            let a = format!("acct-{i}");
            let data = format!(r#"{{"account":"{a}","owner":"owner {i}"}}"#);
            (a, "Opened", data)
        } else {
            let kind = rnd(10);
            let a = format!("acct-{}", rnd(ACCOUNTS));
            let amount = 1 + rnd(100_000);
            match kind {
                0 => {
                    let b = format!("acct-{}", rnd(ACCOUNTS));
                    let data = format!(r#"{{"from":"{a}","to":"{b}","amount":{amount}}}"#);
                    (a, "Transferred", data)
                }
                1..=5 => {
                    let data = format!(r#"{{"account":"{a}","amount":{amount}}}"#);
                    (a, "Deposited", data)
                }
                _ => {
                    let data = format!(r#"{{"account":"{a}","amount":{amount}}}"#);
                    (a, "Withdrawn", data)
                }
            }
        };
        let version = versions.entry(stream.clone()).or_default();
        *version += 1;
        out.push(Event {
            id: EventId(u128::from(seq)),
            stream,
            version: *version,
            event_type: ty.into(),
            data,
            meta: None,
            time: 1_700_000_000_000,
            origin: "bench".into(),
            seq,
            offset: None,
        });
    }
    out
}

/// Kept out of line so a profiler can count only the fold.
#[inline(never)]
fn run_fold(def: &Arc<TableDef>, events: &[Event]) -> logfold_core::table::Table {
    fold(def, events.iter().map(Event::as_ref))
}
