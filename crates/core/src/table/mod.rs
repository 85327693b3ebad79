//! Projections: tables folded from the log ("a table is the fold of a log").
//!
//! Declarative tables ([`TableDef`] → [`Table`]) are evaluated entirely here, which is what
//! makes replay fast in the browser; Rust apps can also write their own [`Projection`].

pub mod def;
pub mod fold;
mod plan;
pub mod scan;
pub mod snapshot;
#[cfg(test)]
mod testing;
pub mod value;

pub use def::{DefinitionError, Op, Source, TableDef};
pub use fold::{FoldError, Row, Table};
pub use value::{Key, Value};

use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use crate::event::EventRef;

/// FNV-1a: fast on the short keys tables use, and stable across builds and platforms.
#[derive(Debug, Clone, Copy)]
pub struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= *b as u64;
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// Builds [`Fnv`] hashers for `HashMap`s.
pub type FnvBuild = BuildHasherDefault<Fnv>;

/// A word-at-a-time multiplicative hash for the row maps, which the fold hits once or twice
/// per event: several times fewer instructions than FNV's byte loop on keys of a few words.
/// Only for in-memory maps (it is not stable across platforms' word handling).
#[derive(Debug, Clone, Copy, Default)]
pub struct Fx(u64);

impl Fx {
    #[inline(always)]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for Fx {
    fn finish(&self) -> u64 {
        self.0
    }

    #[inline]
    fn write(&mut self, mut bytes: &[u8]) {
        while let Some((word, rest)) = bytes.split_first_chunk::<8>() {
            self.add(u64::from_le_bytes(*word));
            bytes = rest;
        }
        if !bytes.is_empty() {
            // The tail as a little-endian word padded with zeros, without a memcpy call.
            let last = bytes
                .iter()
                .rev()
                .fold(0u64, |w, &b| (w << 8) | u64::from(b));
            self.add(last);
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(i as u64);
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
}

/// Builds [`Fx`] hashers for `HashMap`s.
pub type FxBuild = BuildHasherDefault<Fx>;

/// A fold of the log into some state: for Rust apps using the crate directly.
pub trait Projection {
    /// What the fold builds.
    type State;
    /// The state before any event.
    fn init(&self) -> Self::State;
    /// Folds one event into the state.
    fn apply(&self, state: &mut Self::State, event: &EventRef<'_>);
}

impl Projection for Arc<TableDef> {
    type State = Table;

    fn init(&self) -> Table {
        Table::new(Arc::clone(self))
    }

    fn apply(&self, state: &mut Table, event: &EventRef<'_>) {
        state.apply(event, None);
    }
}

/// Folds `events` from the projection's initial state.
pub fn fold<'a, P: Projection>(p: &P, events: impl IntoIterator<Item = EventRef<'a>>) -> P::State {
    let mut state = p.init();
    for e in events {
        p.apply(&mut state, &e);
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::append::Batch;
    use crate::event::{Event, NewEvent};
    use crate::memory::MemoryLog;

    fn ledger() -> Arc<TableDef> {
        let def = serde_json::json!({
            "key": "data.account",
            "on": {
                "Opened": { "set": { "owner": "data.owner", "balance": 0, "movements": 0 } },
                "Deposited": { "add": { "balance": "data.amount" }, "count": "movements" },
                "Withdrawn": { "subtract": { "balance": "data.amount" }, "count": "movements" },
                "Transferred": [
                    { "row": "data.from", "subtract": { "balance": "data.amount" }, "count": "movements" },
                    { "row": "data.to", "add": { "balance": "data.amount" }, "count": "movements" }
                ],
                "Tagged": { "append": { "tags": "data.tag" } },
                "Closed": { "delete": true }
            }
        });
        Arc::new(TableDef::parse_text(&def.to_string()).unwrap())
    }

    fn run(events: &[(&str, &str)]) -> Table {
        let mut log = MemoryLog::new("c", 1);
        for (ty, data) in events {
            log.append(&Batch::new(vec![NewEvent::new("ledger", *ty, *data)]), 1)
                .unwrap();
        }
        fold(&ledger(), log.read(0, usize::MAX).iter().map(Event::as_ref))
    }

    /// The row as canonical JSON text (fields sorted), to compare with a literal.
    fn row(t: &Table, key: &str) -> String {
        let mut out = String::new();
        t.write_row(t.get(&Key::Str(key.into())).expect("row exists"), &mut out);
        serde_json::from_str::<serde_json::Value>(&out)
            .unwrap()
            .to_string()
    }

    #[test]
    fn given_opened_accounts_when_money_moves_then_balances_and_counts_follow() {
        let t = run(&[
            ("Opened", r#"{"account":"a","owner":"Ada"}"#),
            ("Opened", r#"{"account":"b","owner":"Bob"}"#),
            ("Deposited", r#"{"account":"a","amount":1000}"#),
            ("Withdrawn", r#"{"account":"a","amount":250}"#),
            ("Transferred", r#"{"from":"a","to":"b","amount":500}"#),
        ]);
        assert_eq!(
            row(&t, "a"),
            r#"{"balance":250,"movements":3,"owner":"Ada"}"#
        );
        assert_eq!(
            row(&t, "b"),
            r#"{"balance":500,"movements":1,"owner":"Bob"}"#
        );
        assert_eq!(t.seq(), 5);
        assert_eq!(t.errors().1, 0);
    }

    #[test]
    fn add_on_a_missing_row_starts_from_zero_and_append_builds_a_list() {
        let t = run(&[
            ("Deposited", r#"{"account":"x","amount":7}"#),
            ("Tagged", r#"{"account":"x","tag":"vip"}"#),
            ("Tagged", r#"{"account":"x","tag":{"k":1}}"#),
        ]);
        assert_eq!(
            row(&t, "x"),
            r#"{"balance":7,"movements":1,"tags":["vip",{"k":1}]}"#
        );
    }

    fn dump(t: &Table) -> String {
        let mut out = String::new();
        for (k, r) in t.sorted() {
            out.push_str(&format!("{k:?}="));
            t.write_row(r, &mut out);
            out.push(';');
        }
        format!("{out} seq={} errors={}", t.seq(), t.errors().1)
    }

    #[test]
    fn an_overlay_rolls_back_to_the_base_and_copies_only_what_it_touched() {
        let base = [
            ("Opened", r#"{"account":"a","owner":"A"}"#),
            ("Opened", r#"{"account":"b","owner":"B"}"#),
            ("Deposited", r#"{"account":"a","amount":10}"#),
        ];
        let outbox = [
            ("Deposited", r#"{"account":"a","amount":5}"#), // the fast path
            ("Deposited", r#"{"account":"new","amount":1}"#),
            ("Closed", r#"{"account":"b"}"#),
            ("Deposited", r#"{"account":"a"}"#), // an error
            ("Tagged", r#"{"account":"a","tag":"x"}"#),
        ];
        let mut log = MemoryLog::new("c", 1);
        for (ty, data) in base.iter().chain(&outbox) {
            log.append(&Batch::new(vec![NewEvent::new("ledger", *ty, *data)]), 1)
                .unwrap();
        }
        let events = log.read(0, usize::MAX);
        let (confirmed, pending) = events.split_at(base.len());
        let mut t = fold(&ledger(), confirmed.iter().map(Event::as_ref));
        let want_base = dump(&t);
        t.begin_overlay();
        for e in pending {
            t.apply(&e.as_ref(), None);
        }
        let whole = fold(&ledger(), events.iter().map(Event::as_ref));
        assert_eq!(dump(&t), dump(&whole));
        let mut restored = Vec::new();
        t.rollback(Some(&mut restored));
        assert_eq!(dump(&t), want_base);
        restored.sort_unstable();
        let names: Vec<String> = restored.iter().map(|k| format!("{k:?}")).collect();
        assert_eq!(names.len(), 3, "a, b and new: {names:?}");
        assert!(!t.in_overlay());
        // A second overlay on the same base gives the same result again.
        t.begin_overlay();
        for e in pending {
            t.apply(&e.as_ref(), None);
        }
        assert_eq!(dump(&t), dump(&whole));
    }

    #[test]
    fn delete_removes_the_row() {
        let t = run(&[
            ("Opened", r#"{"account":"a","owner":"A"}"#),
            ("Closed", r#"{"account":"a"}"#),
        ]);
        assert!(t.is_empty());
    }

    #[test]
    fn a_missing_field_or_a_type_mismatch_leaves_the_row_unchanged_and_is_recorded() {
        let t = run(&[
            ("Opened", r#"{"account":"a","owner":"A"}"#),
            ("Deposited", r#"{"account":"a"}"#),
            ("Deposited", r#"{"account":"a","amount":"ten"}"#),
            ("Tagged", r#"{"account":"a","tag":"t"}"#),
            ("Deposited", r#"{"account":{"nested":1},"amount":1}"#),
        ]);
        assert_eq!(
            row(&t, "a"),
            r#"{"balance":0,"movements":0,"owner":"A","tags":["t"]}"#
        );
        let (errors, count) = t.errors();
        assert_eq!(count, 3);
        assert_eq!(
            (errors[0].seq, errors[0].message.as_str()),
            (2, "data.amount is missing")
        );
        assert_eq!(errors[1].message, "data.amount is not a number");
        assert!(
            errors[2].message.contains("not a string or number"),
            "{}",
            errors[2].message
        );
    }

    #[test]
    fn counting_into_a_list_fails_and_leaves_the_row_as_it_was() {
        let def = serde_json::json!({ "key": "data.account", "on": {
            "Tagged": { "append": { "tags": "data.tag" } },
            "Bumped": { "set": { "note": "bumped" }, "count": "tags" } } });
        let def = Arc::new(TableDef::parse_text(&def.to_string()).unwrap());
        let mut log = MemoryLog::new("c", 1);
        for (ty, data) in [
            ("Tagged", r#"{"account":"b","tag":"x"}"#),
            ("Bumped", r#"{"account":"b"}"#),
        ] {
            log.append(&Batch::new(vec![NewEvent::new("s", ty, data)]), 1)
                .unwrap();
        }
        let t = fold(&def, log.read(0, 10).iter().map(Event::as_ref));
        assert_eq!(row(&t, "b"), r#"{"tags":["x"]}"#);
        assert_eq!(t.errors().0[0].message, "field tags is not a number");
    }

    #[test]
    fn definitions_are_refused_with_the_path_of_the_problem() {
        let bad = |def: serde_json::Value| TableDef::parse_text(&def.to_string()).unwrap_err();
        assert_eq!(
            bad(serde_json::json!({ "on": { "A": { "ad": { "x": 1 } } } })).path,
            "on.A.ad"
        );
        assert_eq!(
            bad(serde_json::json!({ "on": { "A": [{ "set": {"x": 1} }, {}] } })).path,
            "on.A[1]"
        );
        assert_eq!(
            bad(serde_json::json!({ "on": { "A": { "delete": true, "count": "n" } } })).path,
            "on.A"
        );
        assert_eq!(
            bad(serde_json::json!({ "on": { "A": { "add": { "x": [1] } } } })).path,
            "on.A.add.x"
        );
        assert_eq!(
            bad(serde_json::json!({ "on": { "A": { "set": { "x": "data..b" } } } })).path,
            "on.A.set.x"
        );
        assert_eq!(
            bad(serde_json::json!({ "keys": "stream", "on": {} })).path,
            "keys"
        );
        assert_eq!(bad(serde_json::json!({})).path, "on");
    }

    #[test]
    fn the_hash_tells_definitions_apart() {
        let a = TableDef::parse_text(
            &serde_json::json!({ "on": { "A": { "count": "n" } } }).to_string(),
        )
        .unwrap();
        let b = TableDef::parse_text(
            &serde_json::json!({ "on": { "A": { "count": "m" } } }).to_string(),
        )
        .unwrap();
        assert_ne!(a.hash, b.hash);
        assert_eq!(
            a.hash,
            TableDef::parse_text(
                &serde_json::json!({ "on": { "A": { "count": "n" } } }).to_string()
            )
            .unwrap()
            .hash
        );
    }
}
