//! Replay equivalence: folding the whole log equals restoring a snapshot taken anywhere and
//! folding the rest; and a damaged snapshot is refused, never half-used.

use std::sync::Arc;

use logfold_core::table::snapshot::{self, SnapshotError};
use logfold_core::table::{fold, Projection, Table, TableDef};
use logfold_core::{Batch, Event, MemoryLog, NewEvent};
use proptest::prelude::*;

fn ledger() -> Arc<TableDef> {
    let def = serde_json::json!({
        "key": "data.account",
        "on": {
            "Opened": { "set": { "owner": "data.owner", "balance": 0 } },
            "Deposited": { "add": { "balance": "data.amount" }, "count": "movements" },
            "Withdrawn": { "subtract": { "balance": "data.amount" }, "count": "movements" },
            "Transferred": [
                { "row": "data.from", "subtract": { "balance": "data.amount" }, "count": "movements" },
                { "row": "data.to", "add": { "balance": "data.amount" }, "count": "movements" }
            ],
            "Tagged": { "append": { "tags": "data" } },
            "Closed": { "delete": true }
        }
    });
    Arc::new(TableDef::parse_text(&def.to_string()).unwrap())
}

#[derive(Debug, Clone)]
enum Op {
    Open(u8),
    Deposit(u8, u32),
    Withdraw(u8, u32),
    Transfer(u8, u8, u32),
    Tag(u8),
    Close(u8),
    Bad(u8),
}

fn op() -> impl Strategy<Value = Op> {
    let acct = 0u8..6;
    prop_oneof![
        acct.clone().prop_map(Op::Open),
        (acct.clone(), 1u32..100_000).prop_map(|(a, n)| Op::Deposit(a, n)),
        (acct.clone(), 1u32..100_000).prop_map(|(a, n)| Op::Withdraw(a, n)),
        (acct.clone(), acct.clone(), 1u32..100_000).prop_map(|(a, b, n)| Op::Transfer(a, b, n)),
        acct.clone().prop_map(Op::Tag),
        acct.clone().prop_map(Op::Close),
        acct.prop_map(Op::Bad),
    ]
}

fn event(op: &Op) -> NewEvent {
    let (ty, data) = match op {
        Op::Open(a) => ("Opened", format!(r#"{{"account":"a{a}","owner":"o{a}"}}"#)),
        Op::Deposit(a, n) => ("Deposited", format!(r#"{{"account":"a{a}","amount":{n}}}"#)),
        Op::Withdraw(a, n) => ("Withdrawn", format!(r#"{{"account":"a{a}","amount":{n}}}"#)),
        Op::Transfer(a, b, n) => (
            "Transferred",
            format!(r#"{{"from":"a{a}","to":"a{b}","amount":{n}}}"#),
        ),
        Op::Tag(a) => ("Tagged", format!(r#"{{"account":"a{a}","note":"t"}}"#)),
        Op::Close(a) => ("Closed", format!(r#"{{"account":"a{a}"}}"#)),
        Op::Bad(a) => (
            "Deposited",
            format!(r#"{{"account":"a{a}","amount":"lots"}}"#),
        ),
    };
    NewEvent::new("ledger", ty, data)
}

fn log_of(ops: &[Op]) -> Vec<Event> {
    let mut log = MemoryLog::new("c", 3);
    for op in ops {
        log.append(&Batch::new(vec![event(op)]), 1).unwrap();
    }
    log.read(0, usize::MAX).to_vec()
}

fn same(a: &Table, b: &Table) -> bool {
    a.sorted() == b.sorted() && a.seq() == b.seq() && a.errors().1 == b.errors().1
}

proptest! {
    #[test]
    fn snapshot_plus_tail_equals_a_full_fold(ops in proptest::collection::vec(op(), 0..120), cut in any::<prop::sample::Index>()) {
        let events = log_of(&ops);
        let def = ledger();
        let full = fold(&def, events.iter().map(Event::as_ref));
        let k = cut.index(events.len() + 1);
        let head = fold(&def, events[..k].iter().map(Event::as_ref));
        let bytes = snapshot::encode(&head);
        prop_assert_eq!(snapshot::position(&bytes), Some(head.seq()));
        let mut restored = snapshot::decode(&bytes, Arc::clone(&def)).unwrap();
        for e in &events[k..] {
            def.apply(&mut restored, &e.as_ref());
        }
        prop_assert!(same(&full, &restored), "cut at {k}");
    }

    #[test]
    fn any_flipped_byte_of_a_snapshot_is_refused(ops in proptest::collection::vec(op(), 1..40), at in any::<prop::sample::Index>(), mask in 1u8..=255) {
        let table = fold(&ledger(), log_of(&ops).iter().map(Event::as_ref));
        let mut bytes = snapshot::encode(&table);
        let i = at.index(bytes.len());
        bytes[i] ^= mask;
        prop_assert!(matches!(snapshot::decode(&bytes, ledger()), Err(SnapshotError::Corrupt(_))));
        prop_assert_eq!(snapshot::position(&bytes), None);
    }
}

#[test]
fn a_snapshot_of_another_definition_is_not_used() {
    let table = fold(&ledger(), log_of(&[Op::Open(1)]).iter().map(Event::as_ref));
    let other = Arc::new(
        TableDef::parse_text(
            &serde_json::json!({ "on": { "Opened": { "count": "n" } } }).to_string(),
        )
        .unwrap(),
    );
    assert_eq!(
        snapshot::decode(&snapshot::encode(&table), other).unwrap_err(),
        SnapshotError::OtherDefinition
    );
}
