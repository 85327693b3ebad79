//! The `Projection` trait as a Rust app uses it: its own state, folded from the log.

use std::collections::BTreeMap;

use logfold_core::table::{fold, Projection};
use logfold_core::{Batch, Event, EventRef, MemoryLog, NewEvent};

/// Money per owner: state no declarative table could hold as a plain sum by owner.
struct ByOwner;

impl Projection for ByOwner {
    type State = (BTreeMap<String, String>, BTreeMap<String, i64>);

    fn init(&self) -> Self::State {
        Default::default()
    }

    fn apply(&self, (owners, money): &mut Self::State, e: &EventRef<'_>) {
        let data: serde_json::Value = serde_json::from_str(e.data).unwrap();
        match e.event_type {
            "Opened" => {
                owners.insert(
                    e.stream.to_owned(),
                    data["owner"].as_str().unwrap().to_owned(),
                );
            }
            "Deposited" => {
                let owner = owners.get(e.stream).cloned().unwrap_or_default();
                *money.entry(owner).or_default() += data["amount"].as_i64().unwrap();
            }
            _ => {}
        }
    }
}

#[test]
fn a_rust_projection_folds_the_log_and_equals_folding_it_in_two_parts() {
    let mut log = MemoryLog::new("c", 1);
    let events = [
        ("a", "Opened", r#"{"owner":"Ada"}"#),
        ("b", "Opened", r#"{"owner":"Bob"}"#),
        ("c", "Opened", r#"{"owner":"Ada"}"#),
        ("a", "Deposited", r#"{"amount":10}"#),
        ("c", "Deposited", r#"{"amount":5}"#),
        ("b", "Deposited", r#"{"amount":7}"#),
    ];
    for (stream, ty, data) in events {
        log.append(&Batch::new(vec![NewEvent::new(stream, ty, data)]), 1)
            .unwrap();
    }
    let all = log.read(0, usize::MAX);
    let (_, money) = fold(&ByOwner, all.iter().map(Event::as_ref));
    assert_eq!(money.get("Ada"), Some(&15));
    assert_eq!(money.get("Bob"), Some(&7));

    // A fold can go on from any state: the first four, then the rest.
    let mut state = fold(&ByOwner, all[..4].iter().map(Event::as_ref));
    for e in &all[4..] {
        ByOwner.apply(&mut state, &e.as_ref());
    }
    assert_eq!(state.1, money);
}
