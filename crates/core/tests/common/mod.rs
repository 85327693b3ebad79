//! Helpers shared by the sync tests: the ledger table, a pull from the in-memory server, and
//! a table's rows in a comparable form.

// Each test crate uses its own subset.
#![allow(dead_code)]

use std::sync::Arc;

use logfold_core::protocol::{PullResponse, PulledEvent};
use logfold_core::table::{Key, Row, Table, TableDef};
use logfold_core::{Event, MemoryStore, NewEvent, PROTOCOL_VERSION};

/// Accounts keyed by `data.account`, as in the table tests.
pub fn ledger() -> Arc<TableDef> {
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
    Arc::new(TableDef::parse_text(&def.to_string()).unwrap())
}

pub fn opened(account: &str, owner: &str) -> NewEvent {
    let data = format!(r#"{{"account":"{account}","owner":"{owner}"}}"#);
    NewEvent::new(account, "Opened", data)
}

pub fn deposited(account: &str, amount: u32) -> NewEvent {
    let data = format!(r#"{{"account":"{account}","amount":{amount}}}"#);
    NewEvent::new(account, "Deposited", data)
}

pub fn withdrawn(account: &str, amount: u32) -> NewEvent {
    let data = format!(r#"{{"account":"{account}","amount":{amount}}}"#);
    NewEvent::new(account, "Withdrawn", data)
}

/// A transfer is one event in the `from` stream that moves two rows.
pub fn transferred(from: &str, to: &str, amount: u32) -> NewEvent {
    let data = format!(r#"{{"from":"{from}","to":"{to}","amount":{amount}}}"#);
    NewEvent::new(from, "Transferred", data)
}

/// What `GET /events?after=…&limit=…` answers.
pub fn pull(server: &MemoryStore, after: u64, limit: usize) -> PullResponse {
    PullResponse {
        protocol: PROTOCOL_VERSION,
        head: server.last_offset(),
        events: server.read(after, limit).iter().map(pulled).collect(),
    }
}

pub fn pulled(e: &Event) -> PulledEvent {
    PulledEvent {
        offset: e.offset.expect("server events have offsets"),
        id: e.id,
        stream: e.stream.clone(),
        version: e.version,
        event_type: e.event_type.clone(),
        data: e.data.clone(),
        meta: e.meta.clone(),
        time: e.time,
        origin: e.origin.clone(),
    }
}

/// The rows in key order, owned, with the fold error count.
pub fn rows(t: &Table) -> (Vec<(Key, Row)>, u64) {
    let rows = t
        .sorted()
        .into_iter()
        .map(|(k, r)| (k, r.clone()))
        .collect();
    (rows, t.errors().1)
}

/// One row's `balance`, if the row and field exist.
pub fn balance(t: &Table, account: &str) -> Option<f64> {
    let i = t.def().fields.iter().position(|f| f == "balance")?;
    match t.get(&Key::Str(account.into()))?.get(i)? {
        Some(logfold_core::table::Value::Num(n)) => Some(*n),
        _ => None,
    }
}
