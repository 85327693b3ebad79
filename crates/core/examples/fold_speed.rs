//! How fast the declarative ledger table folds in memory, natively:
//! `cargo run --release -p logfold-core --example fold_speed [events]`.

use std::sync::Arc;
use std::time::Instant;

use logfold_core::table::{fold, TableDef};
use logfold_core::{Event, EventId};

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let def = serde_json::json!({
        "key": "data.account",
        "on": {
            "Opened": { "set": { "owner": "data.owner", "balance": 0 } },
            "Deposited": { "add": { "balance": "data.amount" }, "count": "movements" },
            "Transferred": [
                { "row": "data.from", "subtract": { "balance": "data.amount" }, "count": "movements" },
                { "row": "data.to", "add": { "balance": "data.amount" }, "count": "movements" }
            ]
        }
    });
    let def = Arc::new(TableDef::parse_text(&def.to_string()).unwrap());
    let events: Vec<Event> = (1..=n)
        .map(|seq| {
            let a = seq % 1000;
            let (ty, data) = match seq % 10 {
                0 => ("Transferred", format!(r#"{{"from":"acct-{a}","to":"acct-{}","amount":{seq},"note":"rent for the month"}}"#, (a + 7) % 1000)),
                _ => ("Deposited", format!(r#"{{"account":"acct-{a}","amount":{seq},"note":"a deposit into the account"}}"#)),
            };
            Event {
                id: EventId(seq as u128),
                stream: format!("acct-{a}"),
                version: seq / 1000 + 1,
                event_type: ty.into(),
                data,
                meta: None,
                time: 1_700_000_000_000,
                origin: "bench".into(),
                seq,
                offset: None,
            }
        })
        .collect();
    let start = Instant::now();
    let table = run_fold(&def, &events);
    let secs = start.elapsed().as_secs_f64();
    println!(
        "folded {n} events into {} rows in {:.1} ms: {:.0} events/s ({} errors)",
        table.len(),
        secs * 1e3,
        n as f64 / secs,
        table.errors().1
    );
}

/// Kept out of line so `valgrind --tool=callgrind --toggle-collect=*run_fold*` counts only the fold.
#[inline(never)]
fn run_fold(def: &Arc<TableDef>, events: &[Event]) -> logfold_core::table::Table {
    fold(def, events.iter().map(Event::as_ref))
}
