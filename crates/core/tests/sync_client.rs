//! The sync engine against the in-memory server, one situation at a time.

mod common;

use std::sync::Arc;

use common::{balance, deposited, ledger, opened, pull, transferred, withdrawn};
use logfold_core::protocol::{BatchResult, PullResponse, PushRequest, PushResponse, RejectReason};
use logfold_core::sync::{
    ConfirmedLog, Engine, MemoryClientStore, PullOutcome, Push, PushOutcome, Refresh, Stored,
    SyncError, SyncedProjection, DEFAULT_PUSH_BYTES,
};
use logfold_core::table::TableDef;
use logfold_core::{
    AppendError, Batch, Event, ExpectedVersion, IdGenerator, Limits, MemoryStore, PROTOCOL_VERSION,
};

/// A device: its engine over its stored state, every step written at once.
#[derive(Clone)]
struct Client {
    store: MemoryClientStore,
    engine: Engine,
    ids: IdGenerator,
    epoch: u64,
}

impl Client {
    fn new(id: &str, epoch: u64, seed: u64) -> Self {
        let mut store = MemoryClientStore::new(id);
        while store.epoch() < epoch {
            store.claim_leadership();
        }
        let mut engine = store.engine(DEFAULT_PUSH_BYTES).unwrap();
        engine.set_epoch(epoch);
        Client {
            store,
            engine,
            ids: IdGenerator::new(seed),
            epoch,
        }
    }

    /// A reload: a new engine from what is stored, new ids.
    fn restore(&self, seed: u64) -> Self {
        let mut engine = self.store.engine(DEFAULT_PUSH_BYTES).unwrap();
        engine.set_epoch(self.epoch);
        Client {
            store: self.store.clone(),
            engine,
            ids: IdGenerator::new(seed),
            epoch: self.epoch,
        }
    }

    fn set_epoch(&mut self, epoch: u64) {
        while self.store.epoch() < epoch {
            self.store.claim_leadership();
        }
        self.epoch = epoch;
        self.engine.set_epoch(epoch);
    }

    fn append(&mut self, batch: &Batch, time: u64) -> Result<Vec<Event>, AppendError> {
        let (events, w) = self
            .engine
            .append(&self.store, batch, time, &mut self.ids)?;
        self.store.apply(&w, None).unwrap();
        Ok(events)
    }

    fn next_push(&mut self) -> Option<Push> {
        self.engine.next_push()
    }

    fn on_push_response(
        &mut self,
        push: &Push,
        resp: &PushResponse,
    ) -> Result<PushOutcome, SyncError> {
        let (out, w) = self.engine.on_push_answer(&self.store, push, resp, 99)?;
        self.store.apply(&w, Some(self.epoch)).unwrap();
        Ok(out)
    }

    fn on_push_answer_now(
        &mut self,
        push: &Push,
        server: &mut MemoryStore,
    ) -> Result<PushOutcome, SyncError> {
        let resp = send(server, push);
        self.on_push_response(push, &resp)
    }

    fn on_pull(&mut self, resp: &PullResponse) -> Result<PullOutcome, SyncError> {
        let (out, w) = self.engine.on_pull(&self.store, resp)?;
        self.store.apply(&w, Some(self.epoch)).unwrap();
        Ok(out)
    }

    fn cursor(&self) -> u64 {
        self.store.head()
    }

    fn confirmed(&self) -> &[Event] {
        self.store.confirmed()
    }

    fn version(&mut self, stream: &str) -> u64 {
        self.engine.version(&self.store, stream)
    }

    fn rejections(&self) -> Vec<serde_json::Value> {
        self.store
            .rejections()
            .map(|j| serde_json::from_str(j).unwrap())
            .collect()
    }

    fn dismiss_rejection(&mut self, n: u64) -> bool {
        let w = self.engine.dismiss(n);
        let found = !w.rejections_delete.is_empty();
        self.store.apply(&w, None).unwrap();
        found
    }

    fn outbox_len(&self) -> usize {
        self.engine.outbox_len()
    }

    fn needs_pull(&self) -> bool {
        self.engine.known_head() > self.cursor()
    }

    fn numbers(&self) -> Vec<u64> {
        self.engine.outbox().iter().map(|b| b.batch).collect()
    }
}

fn send(server: &mut MemoryStore, push: &Push) -> PushResponse {
    let req: PushRequest = serde_json::from_str(&push.body).unwrap();
    let results = server.push(&req.batches, &Limits::default());
    PushResponse {
        protocol: PROTOCOL_VERSION,
        head: server.last_offset(),
        results,
    }
}

/// Pushes everything and pulls everything, answers delivered at once.
fn sync(client: &mut Client, server: &mut MemoryStore) {
    while let Some(push) = client.next_push() {
        let resp = send(server, &push);
        client.on_push_response(&push, &resp).unwrap();
    }
    client
        .on_pull(&pull(server, client.cursor(), 1000))
        .unwrap();
}

fn view(client: &Client) -> SyncedProjection<Arc<TableDef>> {
    let mut v = SyncedProjection::new(ledger());
    v.refresh(client.confirmed(), &client.engine);
    v
}

#[test]
fn a_lost_answer_is_retried_as_the_same_batch_and_stored_once() {
    let mut server = MemoryStore::new();
    let mut c = Client::new("c", 1, 7);
    c.append(&Batch::new(vec![opened("a", "Ada"), deposited("a", 5)]), 10)
        .unwrap();

    let first = c.next_push().unwrap();
    let _lost = send(&mut server, &first);
    let retry = c.next_push().unwrap();
    assert_eq!(
        retry, first,
        "a retry resends the same batch, number and all"
    );

    let answer = send(&mut server, &retry);
    assert!(matches!(answer.results[0], BatchResult::Duplicate { .. }));
    let out = c.on_push_response(&retry, &answer).unwrap();
    assert_eq!(out.acknowledged, [1]);
    assert_eq!(server.last_offset(), 2);
    // Its offsets continue the confirmed head: confirmed from the answer, no pull needed.
    assert_eq!(out.confirmed.confirmed, 2);
    assert_eq!(c.outbox_len(), 0);
    assert_eq!(c.confirmed(), server.read(0, 10));
    assert!(c.next_push().is_none());
    assert!(!c.needs_pull());
}

#[test]
fn a_restored_client_resends_the_same_batches_and_numbers_on() {
    let mut server = MemoryStore::new();
    let mut c = Client::new("c", 1, 7);
    c.append(&Batch::new(vec![opened("a", "Ada")]), 1).unwrap();
    c.append(&Batch::new(vec![deposited("a", 5), deposited("b", 1)]), 2)
        .unwrap();
    let before = c.next_push().unwrap();
    let _lost = send(&mut server, &before);

    // A reload: a new generator seed, the same stored state.
    let mut c = c.restore(8);
    assert_eq!(c.next_push().unwrap(), before);
    assert_eq!(c.version("a"), 2);
    let next = c.append(&Batch::new(vec![deposited("a", 1)]), 3).unwrap();
    assert_eq!(next[0].seq, 4);
    assert_eq!(c.numbers(), [1, 2, 3]);

    sync(&mut c, &mut server);
    assert_eq!(server.last_offset(), 4);
    assert_eq!(c.confirmed(), server.read(0, 10));

    // Stored batches numbered at or past the next number are refused.
    let broken = Stored {
        client: "c".into(),
        next_batch: 1,
        outbox: c.store.outbox(),
        ..Stored::default()
    };
    c.append(&Batch::new(vec![deposited("a", 2)]), 4).unwrap();
    let broken = Stored {
        outbox: c.store.outbox(),
        ..broken
    };
    assert!(matches!(
        Engine::restore(broken, DEFAULT_PUSH_BYTES),
        Err(SyncError::Inconsistent(_))
    ));
}

#[test]
fn a_pull_that_confirms_part_of_a_batch_acknowledges_all_of_it() {
    let mut server = MemoryStore::new();
    let mut c = Client::new("c", 1, 7);
    c.append(&Batch::new(vec![opened("a", "Ada"), deposited("a", 5)]), 10)
        .unwrap();
    let req = c.next_push().unwrap();
    let _lost = send(&mut server, &req);

    c.on_pull(&pull(&server, 0, 1)).unwrap();
    assert_eq!((c.cursor(), c.outbox_len()), (1, 1));
    // Resending the rest alone would be refused as partly known: it is not resent.
    assert!(c.next_push().is_none());
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

    let req = c.next_push().unwrap();
    let out = c.on_push_response(&req, &send(&mut server, &req)).unwrap();
    assert_eq!((out.acknowledged, out.rejected), (vec![1], vec![2]));
    let r = &c.rejections()[0];
    assert_eq!((&r["batch"], &r["reason"]), (&2.into(), &"conflict".into()));
    assert_eq!(r["currentVersion"], 1);
    assert_eq!(r["events"].as_array().unwrap().len(), 2);
    assert_eq!(c.numbers(), [1]);

    assert_eq!(v.refresh(c.confirmed(), &c.engine), Refresh::Overlay);
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
    a.version("x");
    let moved: Vec<_> = a
        .engine
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
    assert_eq!(v.refresh(a.confirmed(), &a.engine), Refresh::Extended);
    a.append(&Batch::new(vec![deposited("x", 7)]), 2).unwrap();
    assert_eq!(v.refresh(a.confirmed(), &a.engine), Refresh::Extended);
    assert_eq!(v.refresh(a.confirmed(), &a.engine), Refresh::Unchanged);
    assert_eq!(balance(v.state(), "x"), Some(10.0));

    b.append(
        &Batch::new(vec![opened("y", "B"), transferred("y", "x", 4)]),
        3,
    )
    .unwrap();
    sync(&mut b, &mut server);
    a.on_pull(&pull(&server, 0, 1000)).unwrap();
    assert_eq!(v.refresh(a.confirmed(), &a.engine), Refresh::Overlay);
    assert_eq!(balance(v.state(), "x"), Some(14.0));
    assert_eq!(balance(v.base(), "x"), Some(4.0));

    sync(&mut a, &mut server);
    v.refresh(a.confirmed(), &a.engine);
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
    assert_eq!(v.refresh(fresh.confirmed(), &fresh.engine), Refresh::Full);
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
    assert_eq!(c.numbers().len(), 2);
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
    let req = c.next_push().unwrap();
    let accepted = send(&mut server, &req);
    // An earlier attempt's answer, arriving late: it was refused then.
    let refused = PushResponse {
        protocol: PROTOCOL_VERSION,
        head: 0,
        results: vec![BatchResult::Rejected {
            reason: RejectReason::Conflict,
            message: "earlier".into(),
            details: "{}".into(),
        }],
    };
    assert_eq!(c.on_push_response(&req, &refused).unwrap().rejected, [1]);
    assert_eq!(c.on_push_response(&req, &accepted).unwrap().ignored, 1);
    assert_eq!(c.rejections().len(), 1);

    let out = c.on_pull(&pull(&server, 0, 10)).unwrap();
    assert_eq!(out.retracted, [1]);
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

    let req = old.next_push().unwrap();
    let out = old
        .on_push_response(&req, &send(&mut server, &req))
        .unwrap();
    assert_eq!(
        out.acknowledged,
        [1],
        "idempotency is checked before the epoch"
    );
    assert!(out.fenced && old.engine.is_fenced());
    assert!(old.next_push().is_none());
    assert!(old.rejections().is_empty());
    // Batch 1 was a duplicate continuing the head (confirmed from the answer); batch 2 stays.
    assert_eq!(
        old.numbers(),
        [2],
        "the batch is not rejected, only this leader is"
    );

    old.set_epoch(3);
    let req = old.next_push().unwrap();
    assert_eq!(req.batches.len(), 1);
    old.on_push_response(&req, &send(&mut server, &req))
        .unwrap();
    sync(&mut old, &mut server);
    assert_eq!(old.confirmed(), server.read(0, 10));
    assert_eq!(server.last_offset(), 2);
}

#[test]
fn the_server_records_an_epoch_from_any_batch_so_the_old_leader_is_fenced() {
    // A new leader whose first push is a duplicate (or rejected) has still been heard from:
    // the old leader cannot get a batch in after it.
    let mut server = MemoryStore::new();
    let mut old = Client::new("c", 1, 1);
    old.append(&Batch::new(vec![opened("a", "A")]), 1).unwrap();
    let req = old.next_push().unwrap();
    let _lost = send(&mut server, &req);

    let mut new_leader = old.clone();
    new_leader.set_epoch(2);
    let retry = new_leader.next_push().unwrap();
    let out = new_leader.on_push_answer_now(&retry, &mut server).unwrap();
    assert_eq!(out.acknowledged, [1], "a duplicate under the new epoch");

    old.append(&Batch::new(vec![deposited("a", 1)]), 2).unwrap();
    let req = old.next_push().unwrap();
    let out = old.on_push_answer_now(&req, &mut server).unwrap();
    assert!(out.fenced, "epoch 2 was recorded from the duplicate");
    assert_eq!(server.last_offset(), 1);
}

#[test]
fn a_batch_that_counted_on_a_refused_one_is_refused_with_it() {
    let mut server = MemoryStore::new();
    let mut other = Client::new("other", 1, 1);
    other
        .append(&Batch::new(vec![opened("a", "Bob")]), 1)
        .unwrap();
    sync(&mut other, &mut server);

    // Offline, c opens "a" and then withdraws at the version its own opening gave it.
    let mut c = Client::new("c", 1, 2);
    c.append(
        &Batch::new(vec![opened("a", "Ada")]).expect("a", ExpectedVersion::NoStream),
        2,
    )
    .unwrap();
    let v = c.version("a");
    let counted = Batch::new(vec![withdrawn("a", 5)]).expect("a", ExpectedVersion::Exact(v));
    c.append(&counted, 3).unwrap();
    // Someone else's event makes that version hold on the server without c's opening.
    other
        .append(&Batch::new(vec![deposited("a", 9)]), 4)
        .unwrap();
    sync(&mut other, &mut server);

    // Pushed together: the server refuses the second because the first was refused.
    let mut both = c.clone();
    let push = both.next_push().unwrap();
    let out = both.on_push_answer_now(&push, &mut server.clone()).unwrap();
    assert_eq!(out.rejected, [1, 2]);
    let reasons: Vec<_> = both
        .rejections()
        .iter()
        .map(|r| r["reason"].clone())
        .collect();
    assert_eq!(reasons, ["conflict", "depends"]);

    // Pushed apart: the engine refuses the second itself, before it is pushed alone.
    let mut first = c.next_push().unwrap();
    first.batches.truncate(1);
    first.firsts.truncate(1);
    let req: PushRequest = serde_json::from_str(&first.body).unwrap();
    let body = serde_json::json!({"protocol": PROTOCOL_VERSION, "batches": [&req.batches[0]]});
    first.body = body.to_string();
    let out = c.on_push_answer_now(&first, &mut server).unwrap();
    assert_eq!(out.rejected, [1, 2]);
    assert!(c.next_push().is_none());
    assert_eq!(server.last_offset(), 2);
    assert_eq!(c.rejections()[1]["reason"], "depends");
}

#[test]
fn partly_known_is_reconciled_not_rejected() {
    let mut server = MemoryStore::new();
    let mut c = Client::new("c", 1, 1);
    c.append(&Batch::new(vec![opened("a", "A"), deposited("a", 1)]), 1)
        .unwrap();
    let push = c.next_push().unwrap();
    let _lost = send(&mut server, &push);
    c.on_pull(&pull(&server, 0, 1)).unwrap();
    // The device forgets the batch was acknowledged, and pushes what is left of it.
    c.store.forget_acknowledged();
    let mut c = c.restore(2);
    let rest = c.next_push().unwrap();
    let out = c.on_push_answer_now(&rest, &mut server).unwrap();
    assert_eq!((out.reconciling, out.rejected), (vec![1], vec![]));
    assert!(
        c.next_push().is_none(),
        "held back until the pull settles it"
    );
    c.on_pull(&pull(&server, 1, 10)).unwrap();
    assert_eq!(c.confirmed(), server.read(0, 10));
    assert_eq!((c.outbox_len(), c.rejections().len()), (0, 0));

    // A batch number the server holds with other events: what it lacks is resent.
    c.append(&Batch::new(vec![deposited("a", 2)]), 3).unwrap();
    sync(&mut c, &mut server);
    c.store.reuse_numbers();
    let mut c = c.restore(3);
    let ours = c.append(&Batch::new(vec![deposited("a", 3)]), 4).unwrap();
    assert_eq!(c.numbers(), [1], "numbers 1 and 2 are the server's already");
    for _ in 0..3 {
        sync(&mut c, &mut server);
    }
    assert_eq!(c.engine.stats().resent, 2, "resent as 2, then as 3");
    assert_eq!(c.confirmed(), server.read(0, 10));
    assert_eq!(server.read(3, 1)[0].id, ours[0].id);
    assert_eq!(c.rejections().len(), 0);
}
