//! The sync client against the in-memory server, one situation at a time.

mod common;

use std::sync::Arc;

use common::{balance, deposited, ledger, opened, pull, transferred, withdrawn};
use logfold_core::protocol::{BatchResult, PushRequest, PushResponse, RejectReason};
use logfold_core::sync::{Client, Refresh, SyncError, SyncedProjection};
use logfold_core::table::TableDef;
use logfold_core::{AppendError, Batch, ExpectedVersion, Limits, MemoryStore, PROTOCOL_VERSION};

fn send(server: &mut MemoryStore, req: &PushRequest) -> PushResponse {
    let results = server.push(&req.batches, &Limits::default());
    PushResponse {
        protocol: PROTOCOL_VERSION,
        head: server.last_offset(),
        results,
    }
}

/// Pushes everything and pulls everything, answers delivered at once.
fn sync(client: &mut Client, server: &mut MemoryStore) {
    while let Some(req) = client.next_push(10) {
        let resp = send(server, &req);
        client.on_push_response(&req, &resp).unwrap();
    }
    client
        .on_pull(&pull(server, client.cursor(), 1000))
        .unwrap();
}

fn view(client: &Client) -> SyncedProjection<Arc<TableDef>> {
    let mut v = SyncedProjection::new(ledger());
    v.refresh(client);
    v
}

#[test]
fn a_lost_answer_is_retried_as_the_same_batch_and_stored_once() {
    let mut server = MemoryStore::new();
    let mut c = Client::new("c", 1, 7);
    c.append(&Batch::new(vec![opened("a", "Ada"), deposited("a", 5)]), 10)
        .unwrap();

    let first = c.next_push(10).unwrap();
    let _lost = send(&mut server, &first);
    let retry = c.next_push(10).unwrap();
    assert_eq!(
        retry, first,
        "a retry resends the same batch, number and all"
    );

    let answer = send(&mut server, &retry);
    assert!(matches!(answer.results[0], BatchResult::Duplicate { .. }));
    let out = c.on_push_response(&retry, &answer).unwrap();
    assert_eq!(out.acknowledged, [1]);
    assert_eq!(server.last_offset(), 2);

    // Acknowledged but not yet pulled: it waits in the outbox and is not pushed again.
    assert!(c.next_push(10).is_none());
    assert!(c.needs_pull());
    assert_eq!(c.outbox_len(), 2);

    c.on_pull(&pull(&server, c.cursor(), 1000)).unwrap();
    assert_eq!(c.outbox_len(), 0);
    assert_eq!(c.confirmed(), server.read(0, 10));
    assert!(!c.needs_pull());
}

#[test]
fn a_restored_client_resends_the_same_batches_and_numbers_on() {
    let mut server = MemoryStore::new();
    let mut c = Client::new("c", 1, 7);
    c.append(&Batch::new(vec![opened("a", "Ada")]), 1).unwrap();
    c.append(&Batch::new(vec![deposited("a", 5), deposited("b", 1)]), 2)
        .unwrap();
    let before = c.next_push(10).unwrap();
    let _lost = send(&mut server, &before);

    // A reload: a new generator seed, the same persisted parts.
    let mut c = Client::restore(c.to_parts(), 8).unwrap();
    assert_eq!(c.next_push(10).unwrap(), before);
    assert_eq!(c.version("a"), 2);
    let next = c.append(&Batch::new(vec![deposited("a", 1)]), 3).unwrap();
    assert_eq!(next[0].seq, 4);
    assert_eq!(c.outbox().last().unwrap().batch, 3);

    sync(&mut c, &mut server);
    assert_eq!(server.last_offset(), 4);
    assert_eq!(c.confirmed(), server.read(0, 10));

    let mut broken = c.to_parts();
    broken.confirmed.remove(0);
    assert!(matches!(
        Client::restore(broken, 9),
        Err(SyncError::Inconsistent(_))
    ));
}

#[test]
fn a_pull_that_confirms_part_of_a_batch_acknowledges_all_of_it() {
    let mut server = MemoryStore::new();
    let mut c = Client::new("c", 1, 7);
    c.append(&Batch::new(vec![opened("a", "Ada"), deposited("a", 5)]), 10)
        .unwrap();
    let req = c.next_push(10).unwrap();
    let _lost = send(&mut server, &req);

    c.on_pull(&pull(&server, 0, 1)).unwrap();
    assert_eq!((c.cursor(), c.outbox_len()), (1, 1));
    // Resending the rest alone would be refused as partly known: it is not resent.
    assert!(c.next_push(10).is_none());
    c.on_pull(&pull(&server, 1, 1)).unwrap();
    assert_eq!(c.confirmed(), server.read(0, 10));
}

#[test]
fn a_rejected_batch_leaves_the_outbox_and_the_table_and_waits_to_be_dismissed() {
    let mut server = MemoryStore::new();
    let mut other = Client::new("other", 1, 1);
    other
        .append(&Batch::new(vec![opened("a", "Bob")]), 1)
        .unwrap();
    sync(&mut other, &mut server);

    let mut c = Client::new("c", 1, 2);
    c.append(&Batch::new(vec![opened("b", "Cy")]), 5).unwrap();
    let claim = Batch::new(vec![opened("a", "Ada"), deposited("a", 3)])
        .expect("a", ExpectedVersion::NoStream);
    c.append(&claim, 6).unwrap();
    let mut v = view(&c);
    assert_eq!(balance(v.state(), "a"), Some(3.0));

    let req = c.next_push(10).unwrap();
    let out = c.on_push_response(&req, &send(&mut server, &req)).unwrap();
    assert_eq!((out.acknowledged, out.rejected), (vec![1], vec![2]));
    let r = &c.rejections()[0];
    assert_eq!((r.batch, r.reason), (2, RejectReason::Conflict));
    assert_eq!(r.details["actual"], 1);
    assert_eq!(r.events.len(), 2);
    assert_eq!(c.outbox().map(|b| b.batch).collect::<Vec<_>>(), [1]);

    assert_eq!(v.refresh(&c), Refresh::Overlay);
    assert_eq!(balance(v.state(), "a"), None);
    assert!(v
        .state()
        .get(&logfold_core::table::Key::Str("b".into()))
        .is_some());

    sync(&mut c, &mut server);
    assert_eq!(c.confirmed(), server.read(0, 10));
    assert_eq!(c.rejections().len(), 1, "kept until dismissed");
    assert!(c.dismiss_rejection(2));
    assert!(!c.dismiss_rejection(2));
    assert!(c.rejections().is_empty());
}

#[test]
fn remote_events_that_arrive_first_move_our_provisional_places() {
    let mut server = MemoryStore::new();
    let mut a = Client::new("a", 1, 1);
    let mut b = Client::new("b", 1, 2);
    let ours = a
        .append(&Batch::new(vec![deposited("x", 1), deposited("y", 2)]), 1)
        .unwrap();
    assert_eq!(
        ours.iter().map(|e| (e.seq, e.version)).collect::<Vec<_>>(),
        [(1, 1), (2, 1)]
    );
    b.append(&Batch::new(vec![opened("x", "B"), withdrawn("z", 1)]), 2)
        .unwrap();
    b.append(&Batch::new(vec![deposited("x", 4)]), 3).unwrap();
    sync(&mut b, &mut server);

    a.on_pull(&pull(&server, a.cursor(), 1000)).unwrap();
    let moved: Vec<_> = a
        .outbox_events()
        .map(|e| (e.id, e.seq, e.version))
        .collect();
    assert_eq!(moved, [(ours[0].id, 4, 3), (ours[1].id, 5, 1)]);
    assert_eq!(a.version("x"), 3);

    sync(&mut a, &mut server);
    assert_eq!(a.confirmed(), server.read(0, 10));
    assert_eq!(a.confirmed()[3].id, ours[0].id);
    assert_eq!(a.confirmed()[3].offset, Some(4));
}

#[test]
fn remote_events_rebuild_only_the_overlay_and_fold_into_the_base_once() {
    let mut server = MemoryStore::new();
    let mut a = Client::new("a", 1, 1);
    let mut b = Client::new("b", 1, 2);
    let mut v = SyncedProjection::new(ledger());

    a.append(&Batch::new(vec![deposited("x", 3)]), 1).unwrap();
    assert_eq!(v.refresh(&a), Refresh::Extended);
    a.append(&Batch::new(vec![deposited("x", 7)]), 2).unwrap();
    assert_eq!(v.refresh(&a), Refresh::Extended);
    assert_eq!(v.refresh(&a), Refresh::Unchanged);
    assert_eq!(balance(v.state(), "x"), Some(10.0));

    b.append(
        &Batch::new(vec![opened("y", "B"), transferred("y", "x", 4)]),
        3,
    )
    .unwrap();
    sync(&mut b, &mut server);
    a.on_pull(&pull(&server, 0, 1000)).unwrap();
    assert_eq!(v.refresh(&a), Refresh::Overlay);
    assert_eq!(balance(v.state(), "x"), Some(14.0));
    assert_eq!(balance(v.base(), "x"), Some(4.0));

    sync(&mut a, &mut server);
    v.refresh(&a);
    let s = v.stats();
    assert_eq!(s.full_rebuilds, 0);
    assert_eq!(
        s.base_events, 4,
        "each confirmed event folded into the base once"
    );
    assert_eq!((s.overlay_extends, s.overlay_rebuilds), (2, 1));
    assert_eq!(balance(v.state(), "x"), Some(14.0));

    // Handed a log that does not extend what it folded, it starts again.
    let mut fresh = Client::new("z", 1, 3);
    fresh
        .append(&Batch::new(vec![opened("q", "Q")]), 1)
        .unwrap();
    sync(&mut fresh, &mut MemoryStore::new());
    assert_eq!(v.refresh(&fresh), Refresh::Full);
    assert_eq!(v.stats().full_rebuilds, 1);
    assert_eq!(balance(v.state(), "x"), None);
}

#[test]
fn appends_check_expected_versions_against_confirmed_and_outbox() {
    let mut server = MemoryStore::new();
    let mut c = Client::new("c", 1, 1);
    c.append(&Batch::new(vec![opened("a", "A")]), 1).unwrap();
    sync(&mut c, &mut server);
    c.append(&Batch::new(vec![deposited("a", 1)]), 2).unwrap();

    let stale = Batch::new(vec![deposited("a", 1)]).expect("a", ExpectedVersion::Exact(1));
    match c.append(&stale, 3) {
        Err(AppendError::Conflict(e)) => assert_eq!(e.actual, 2),
        other => panic!("expected a conflict, got {other:?}"),
    }
    let fresh = Batch::new(vec![deposited("a", 1)]).expect("a", ExpectedVersion::Exact(2));
    assert_eq!(c.append(&fresh, 3).unwrap()[0].version, 3);
    assert!(matches!(
        c.append(&Batch::new(vec![]), 4),
        Err(AppendError::InvalidArgument(_))
    ));
    assert_eq!(c.outbox().count(), 2);
}

#[test]
fn pulls_skip_what_is_confirmed_and_refuse_gaps() {
    let mut server = MemoryStore::new();
    let mut w = Client::new("w", 1, 1);
    for i in 0..5 {
        w.append(&Batch::new(vec![deposited("a", i)]), 1).unwrap();
    }
    sync(&mut w, &mut server);

    let mut c = Client::new("c", 1, 2);
    c.on_pull(&pull(&server, 0, 2)).unwrap();
    let again = c.on_pull(&pull(&server, 0, 3)).unwrap();
    assert_eq!((again.overlapping, again.confirmed), (2, 1));
    assert_eq!(
        c.on_pull(&pull(&server, 4, 10)),
        Err(SyncError::Gap { head: 3, first: 5 })
    );
    assert_eq!(c.cursor(), 3);
    c.on_pull(&pull(&server, 3, 10)).unwrap();
    assert_eq!(c.confirmed(), server.read(0, 10));
}

#[test]
fn an_old_rejection_is_retracted_when_the_log_shows_the_batch_accepted() {
    let mut server = MemoryStore::new();
    let mut c = Client::new("c", 1, 1);
    c.append(&Batch::new(vec![opened("a", "A")]), 1).unwrap();
    let req = c.next_push(10).unwrap();
    let accepted = send(&mut server, &req);
    // An earlier attempt's answer, arriving late: it was refused then.
    let refused = PushResponse {
        protocol: PROTOCOL_VERSION,
        head: 0,
        results: vec![BatchResult::Rejected {
            reason: RejectReason::Conflict,
            message: "earlier".into(),
            details: serde_json::json!({}),
        }],
    };
    assert_eq!(c.on_push_response(&req, &refused).unwrap().rejected, [1]);
    assert_eq!(c.on_push_response(&req, &accepted).unwrap().ignored, 1);
    assert_eq!(c.rejections().len(), 1);

    let out = c.on_pull(&pull(&server, 0, 10)).unwrap();
    assert_eq!(out.retracted, 1);
    assert!(c.rejections().is_empty());
    assert_eq!(c.confirmed(), server.read(0, 10));
}

#[test]
fn a_stale_leader_is_fenced_and_keeps_its_batches() {
    let mut server = MemoryStore::new();
    let mut c = Client::new("c", 1, 1);
    c.append(&Batch::new(vec![opened("a", "A")]), 1).unwrap();
    // A frozen tab keeps leading with epoch 1 and appends; another takes over with epoch 2.
    let mut old = c.clone();
    old.append(&Batch::new(vec![deposited("a", 1)]), 2).unwrap();
    let mut new_leader = c;
    new_leader.set_epoch(2);
    sync(&mut new_leader, &mut server);

    let req = old.next_push(10).unwrap();
    let out = old
        .on_push_response(&req, &send(&mut server, &req))
        .unwrap();
    assert_eq!(
        out.acknowledged,
        [1],
        "idempotency is checked before the epoch"
    );
    assert!(out.fenced && old.is_fenced());
    assert!(old.next_push(10).is_none());
    assert!(old.rejections().is_empty());
    assert_eq!(
        old.outbox().count(),
        2,
        "the batch is not rejected, only this leader is"
    );

    old.set_epoch(3);
    let req = old.next_push(10).unwrap();
    assert_eq!(req.batches.len(), 1);
    old.on_push_response(&req, &send(&mut server, &req))
        .unwrap();
    sync(&mut old, &mut server);
    assert_eq!(old.confirmed(), server.read(0, 10));
    assert_eq!(server.last_offset(), 2);
}

#[test]
fn the_server_learns_an_epoch_only_from_an_accepted_batch() {
    // What the commit rules do: a new leader whose pushes so far were duplicates or rejected
    // has not fenced the old one yet.
    let mut server = MemoryStore::new();
    let mut old = Client::new("c", 1, 1);
    old.append(&Batch::new(vec![opened("a", "A")]), 1).unwrap();
    let req = old.next_push(10).unwrap();
    let _lost = send(&mut server, &req);

    let mut new_leader = old.clone();
    new_leader.set_epoch(2);
    let retry = new_leader.next_push(10).unwrap();
    let out = new_leader
        .on_push_response(&retry, &send(&mut server, &retry))
        .unwrap();
    assert_eq!(out.acknowledged, [1], "a duplicate under the new epoch");

    old.append(&Batch::new(vec![deposited("a", 1)]), 2).unwrap();
    let req = old.next_push(10).unwrap();
    let out = old
        .on_push_response(&req, &send(&mut server, &req))
        .unwrap();
    assert!(
        !out.fenced,
        "epoch 1 is still accepted: 2 was never recorded"
    );
    assert_eq!(out.acknowledged, [1, 2]);
}
