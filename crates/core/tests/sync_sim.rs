//! Convergence, simulated: a few devices and one in-memory server, driven by a seeded random
//! schedule. Each device is the engine the browser runs (`logfold_core::sync::Engine`) over the
//! in-memory twin of its IndexedDB ([`MemoryClientStore`]), with two tabs that each hold their
//! own engine and re-read storage when another tab changed it, as the browser does.
//!
//! Faults: requests lost or reaching the server late; answers lost, reordered and repeated;
//! devices offline; a tab crashing between any two steps (its step written or not); leadership
//! moving to the other tab while the old leader keeps acting (its steps fenced by storage, its
//! pushes by the server); server restarts (every connection cut); a device that loses what it
//! knew of acknowledged batches or of its batch numbers (an older layout, a damaged mark).
//!
//! Along the way every tab's confirmed log is a prefix of the server's and its table equals a
//! fold of confirmed ⊕ outbox; once everyone syncs to quiescence every device holds exactly the
//! server's log and table, each batch is wholly in the log or wholly rejected (known to its own
//! device only), and no accepted batch counted on one of its device's rejected batches.
//!
//! With `--features mutants`, `planted_bugs_are_caught` plants each bug of
//! `logfold_core::mutants` and checks the simulation fails.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use common::{deposited, ledger, opened, pull, rows, transferred, withdrawn};
use logfold_core::protocol::{PullResponse, PushRequest, PushResponse};
use logfold_core::sync::{
    ConfirmedLog, Engine, MemoryClientStore, Push, Rejection, SyncedProjection, Writes,
};
use logfold_core::table::{fold, TableDef};
use logfold_core::{
    AppendError, Batch, Event, EventId, ExpectedVersion, IdGenerator, Limits, MemoryStore,
    PROTOCOL_VERSION,
};

const SEEDS: u64 = 300;
const STEPS: usize = 400;
const ACCOUNTS: usize = 4;
const TABS: usize = 2;
const PUSH_BYTES: usize = 2048;

/// xorshift64*: small, seedable, and the same on every platform.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn percent(&mut self, p: u64) -> bool {
        self.next() % 100 < p
    }
}

/// A message on its way: a push to the server, or an answer back to a device's tab.
#[derive(Clone)]
enum Msg {
    Request(Addr, Push),
    Push(Addr, Push, PushResponse),
    Pull(Addr, PullResponse),
}

/// A device and one of its tabs.
#[derive(Clone, Copy)]
struct Addr {
    node: usize,
    tab: usize,
}

struct Tab {
    engine: Engine,
    /// The store's revision the engine reflects.
    rev: u64,
    /// The leader epoch this tab claimed (0: never led).
    epoch: u64,
    view: SyncedProjection<Arc<TableDef>>,
}

/// A batch as its device appended it, by its event ids (a resent batch changes its number).
struct Appended {
    ids: Vec<EventId>,
    /// The device's earlier batches (first event id) its expectations counted on.
    counted: Vec<EventId>,
}

struct Node {
    store: MemoryClientStore,
    /// Bumped at every write: tabs re-read the store when it moved.
    rev: u64,
    tabs: Vec<Tab>,
    ids: IdGenerator,
    online: bool,
    appended: Vec<Appended>,
    dismissed: HashSet<EventId>,
}

/// What the schedules exercised, summed over all seeds.
#[derive(Debug, Default)]
struct Tally {
    appends: u64,
    local_conflicts: u64,
    lost_requests: u64,
    delayed_requests: u64,
    lost_answers: u64,
    delivered: u64,
    repeated: u64,
    crashes_before_write: u64,
    crashes_after_write: u64,
    takeovers: u64,
    fenced_steps: u64,
    server_restarts: u64,
    forgotten_acks: u64,
    reused_numbers: u64,
    rejected: u64,
    depends: u64,
    retracted: u64,
    reconciled: u64,
    resent: u64,
    stale_results: u64,
    confirmed_from_answers: u64,
    overlay_rebuilds: u64,
    overlay_extends: u64,
    events: u64,
}

impl Tally {
    fn count(&mut self, tab: &Tab) {
        let (e, v) = (tab.engine.stats(), tab.view.stats());
        self.rejected += e.rejected;
        self.depends += e.depends;
        self.retracted += e.retracted;
        self.reconciled += e.reconciled;
        self.resent += e.resent;
        self.stale_results += e.stale_results;
        self.confirmed_from_answers += e.confirmed_from_answers;
        self.overlay_rebuilds += v.overlay_rebuilds;
        self.overlay_extends += v.overlay_extends;
    }

    fn add(&mut self, t: &Tally) {
        macro_rules! sum {
            ($($f:ident),*) => { $(self.$f += t.$f;)* };
        }
        sum!(
            appends,
            local_conflicts,
            lost_requests,
            delayed_requests,
            lost_answers,
            delivered,
            repeated,
            crashes_before_write,
            crashes_after_write,
            takeovers,
            fenced_steps,
            server_restarts,
            forgotten_acks,
            reused_numbers,
            rejected,
            depends,
            retracted,
            reconciled,
            resent,
            stale_results,
            confirmed_from_answers,
            overlay_rebuilds,
            overlay_extends,
            events
        );
    }
}

fn new_tab(store: &MemoryClientStore, rev: u64) -> Tab {
    Tab {
        engine: store.engine(PUSH_BYTES).expect("the store restores"),
        rev,
        epoch: 0,
        view: SyncedProjection::new(ledger()),
    }
}

struct World {
    rng: Rng,
    server: MemoryStore,
    nodes: Vec<Node>,
    in_flight: Vec<Msg>,
    history: Vec<Msg>,
    tally: Tally,
    now: u64,
}

impl World {
    fn new(seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let n = 2 + rng.below(3);
        let nodes = (0..n)
            .map(|i| {
                let mut store = MemoryClientStore::new(format!("client-{i}"));
                let epoch = store.claim_leadership();
                let mut tabs: Vec<Tab> = (0..TABS).map(|_| new_tab(&store, 0)).collect();
                tabs[0].epoch = epoch;
                tabs[0].engine.set_epoch(epoch);
                Node {
                    store,
                    rev: 0,
                    tabs,
                    ids: IdGenerator::new(rng.next()),
                    online: true,
                    appended: Vec::new(),
                    dismissed: HashSet::new(),
                }
            })
            .collect();
        World {
            rng,
            server: MemoryStore::new(),
            nodes,
            in_flight: Vec::new(),
            history: Vec::new(),
            tally: Tally::default(),
            now: 1_000,
        }
    }

    fn step(&mut self) {
        self.now += 1;
        let node = self.rng.below(self.nodes.len());
        let tab = self.rng.below(TABS);
        let at = Addr { node, tab };
        match self.rng.below(100) {
            0..=27 => self.append(at),
            28..=31 => self.nodes[node].online = !self.nodes[node].online,
            32..=45 => self.push(at),
            46..=59 => self.pull(at),
            60..=84 => self.deliver(),
            85..=89 => self.repeat(),
            90..=91 => self.dismiss(at),
            92 => self.take_over(at),
            93..=94 => {
                // A tab reloads between steps.
                self.tally.crashes_after_write += 1;
                self.reload(at);
            }
            95 => self.server_restart(),
            96 => self.forget(node),
            _ => self.check_view(at),
        }
        self.check_logs(node);
    }

    /// The tab's engine, re-read from storage if another tab wrote since.
    fn tab(&mut self, at: Addr) -> &mut Tab {
        let node = &mut self.nodes[at.node];
        let tab = &mut node.tabs[at.tab];
        if tab.rev != node.rev {
            let epoch = tab.epoch;
            let mut view = std::mem::replace(&mut tab.view, SyncedProjection::new(ledger()));
            view.forget_overlay();
            *tab = new_tab(&node.store, node.rev);
            tab.view = view;
            tab.epoch = epoch;
            tab.engine.set_epoch(epoch);
        }
        &mut node.tabs[at.tab]
    }

    /// Writes a step's changes (a leader's step with its epoch); a fenced step is dropped,
    /// and the tab re-reads storage.
    fn write(&mut self, at: Addr, w: &Writes, leader: bool) -> bool {
        let node = &mut self.nodes[at.node];
        let epoch = node.tabs[at.tab].epoch;
        match node.store.apply(w, leader.then_some(epoch)) {
            Ok(()) => {
                if !w.is_empty() {
                    node.rev += 1;
                }
                node.tabs[at.tab].rev = node.rev;
                true
            }
            Err(_) => {
                self.tally.fenced_steps += 1;
                node.tabs[at.tab].rev = u64::MAX;
                false
            }
        }
    }

    fn account(&mut self) -> String {
        format!("acct-{}", self.rng.below(ACCOUNTS))
    }

    /// A random batch, often with an expectation read from the tab's own view, which other
    /// devices' appends may have made stale by the time it reaches the server.
    fn batch(&mut self, at: Addr) -> Batch {
        let (a, b) = (self.account(), self.account());
        let amount = 1 + self.rng.below(100) as u32;
        let kind = self.rng.below(6);
        let node = &mut self.nodes[at.node];
        let store = &node.store;
        let engine = &mut node.tabs[at.tab].engine;
        let (va, vb) = (engine.version(store, &a), engine.version(store, &b));
        let exact = ExpectedVersion::Exact;
        match kind {
            0 => Batch::new(vec![opened(&a, &format!("owner-{}", at.node))])
                .expect(a, ExpectedVersion::NoStream),
            1 | 2 => Batch::new(vec![deposited(&a, amount)]),
            3 => Batch::new(vec![withdrawn(&a, amount)]).expect(a, exact(va)),
            4 if a != b => Batch::new(vec![withdrawn(&a, amount), deposited(&b, amount)])
                .expect(a, exact(va))
                .expect(b, exact(vb)),
            // Sometimes a version read long ago: refused here or by the server.
            _ => {
                Batch::new(vec![transferred(&a, &b, amount)]).expect(a, exact(va.saturating_sub(1)))
            }
        }
    }

    fn append(&mut self, at: Addr) {
        let batch = self.batch(at);
        let now = self.now;
        self.tab(at);
        let node = &mut self.nodes[at.node];
        // The own batches its expectations count on: those still in the outbox on its streams.
        let expected: HashSet<&str> = batch
            .expected
            .iter()
            .filter(|(_, v)| !matches!(v, ExpectedVersion::Any | ExpectedVersion::NoStream))
            .map(|(s, _)| s.as_str())
            .collect();
        let counted: Vec<EventId> = node.tabs[at.tab]
            .engine
            .outbox()
            .iter()
            .filter(|b| {
                b.events
                    .iter()
                    .any(|e| expected.contains(e.stream.as_str()))
            })
            .map(|b| b.events[0].id)
            .collect();
        let tab = &mut node.tabs[at.tab];
        match tab.engine.append(&node.store, &batch, now, &mut node.ids) {
            Ok((events, w)) => {
                let ids = events.iter().map(|e| e.id).collect();
                if self.crash_point(at, &w) {
                    return;
                }
                self.nodes[at.node].appended.push(Appended { ids, counted });
                self.tally.appends += 1;
            }
            Err(AppendError::Conflict(_)) => self.tally.local_conflicts += 1,
            Err(e) => panic!("unexpected append error: {e}"),
        }
    }

    /// Writes a step, or (sometimes) crashes the tab before or after writing it. Returns
    /// whether the step was lost.
    fn crash_point(&mut self, at: Addr, w: &Writes) -> bool {
        self.crash_or_write(at, w, false)
    }

    fn crash_or_write(&mut self, at: Addr, w: &Writes, leader: bool) -> bool {
        if self.rng.percent(3) {
            self.tally.crashes_before_write += 1;
            self.reload(at);
            return true;
        }
        let written = self.write(at, w, leader);
        if self.rng.percent(3) {
            self.tally.crashes_after_write += 1;
            self.reload(at);
        }
        !written
    }

    /// The tab reloads: a new engine from storage, its table from scratch.
    fn reload(&mut self, at: Addr) {
        let node = &mut self.nodes[at.node];
        let old = &node.tabs[at.tab];
        self.tally.count(old);
        let epoch = old.epoch;
        let mut tab = new_tab(&node.store, node.rev);
        // A reloaded leader claims leadership again: it holds the lock.
        if epoch != 0 && epoch == node.store.epoch() {
            tab.epoch = node.store.claim_leadership();
            tab.engine.set_epoch(tab.epoch);
        }
        node.tabs[at.tab] = tab;
    }

    /// The tab becomes the leader; the old one keeps acting until storage or the server
    /// fences it.
    fn take_over(&mut self, at: Addr) {
        let epoch = self.nodes[at.node].store.claim_leadership();
        let tab = self.tab(at);
        tab.epoch = epoch;
        tab.engine.set_epoch(epoch);
        self.tally.takeovers += 1;
    }

    fn push(&mut self, at: Addr) {
        if !self.nodes[at.node].online || self.nodes[at.node].tabs[at.tab].epoch == 0 {
            return;
        }
        let Some(push) = self.tab(at).engine.next_push() else {
            return;
        };
        if self.rng.percent(10) {
            self.tally.lost_requests += 1;
        } else if self.rng.percent(15) {
            self.tally.delayed_requests += 1;
            self.in_flight.push(Msg::Request(at, push));
        } else {
            self.serve(at, push);
        }
    }

    fn serve(&mut self, at: Addr, push: Push) {
        let resp = answer(&mut self.server, &push);
        self.send(Msg::Push(at, push, resp));
    }

    fn pull(&mut self, at: Addr) {
        if !self.nodes[at.node].online || self.nodes[at.node].tabs[at.tab].epoch == 0 {
            return;
        }
        let limit = 1 + self.rng.below(8);
        // A page from an older cursor sometimes: it overlaps what is confirmed.
        let head = self.nodes[at.node].store.head();
        let after = head.saturating_sub(self.rng.below(3) as u64);
        let resp = pull(&self.server, after, limit);
        self.send(Msg::Pull(at, resp));
    }

    fn send(&mut self, m: Msg) {
        if self.rng.percent(20) {
            self.tally.lost_answers += 1;
        } else {
            self.in_flight.push(m);
        }
    }

    /// Delivers a random message in flight: they overtake each other.
    fn deliver(&mut self) {
        if self.in_flight.is_empty() {
            return;
        }
        let m = self
            .in_flight
            .swap_remove(self.rng.below(self.in_flight.len()));
        if let Msg::Request(at, push) = m {
            return self.serve(at, push);
        }
        if self.apply(&m) {
            self.tally.delivered += 1;
            self.history.push(m);
        }
    }

    /// Delivers an answer that was delivered already, again.
    fn repeat(&mut self) {
        if self.history.is_empty() {
            return;
        }
        let m = self.history[self.rng.below(self.history.len())].clone();
        if self.apply(&m) {
            self.tally.repeated += 1;
        }
    }

    /// Applies an answer in its tab; one to an offline device is lost.
    fn apply(&mut self, m: &Msg) -> bool {
        let (Msg::Request(at, _) | Msg::Push(at, ..) | Msg::Pull(at, _)) = m;
        let at = *at;
        if !self.nodes[at.node].online {
            return false;
        }
        let now = self.now;
        self.tab(at);
        let node = &mut self.nodes[at.node];
        let tab = &mut node.tabs[at.tab];
        // What a step calls the front must be the outbox's first events as the step found it,
        // and the rest of the outbox must be as it was (the browser's tables then keep their
        // overlay as it is).
        let before: Vec<EventId> = tab.engine.outbox_events().map(|e| e.id).collect();
        let check_front = |front: bool, confirmed: &[Event], engine: &Engine| {
            if front {
                let ids: Vec<EventId> = confirmed.iter().map(|e| e.id).collect();
                let after: Vec<EventId> = engine.outbox_events().map(|e| e.id).collect();
                assert!(
                    before.starts_with(&ids),
                    "a front that was not the outbox's front"
                );
                assert_eq!(
                    after,
                    before[ids.len()..],
                    "the outbox after the front moved"
                );
            }
        };
        let w = match m {
            Msg::Push(_, push, resp) => {
                let waiting = waiting(&tab.engine);
                let (out, w) = tab
                    .engine
                    .on_push_answer(&node.store, push, resp, now)
                    .expect("push answer");
                for n in &out.rejected {
                    assert!(waiting.contains(n), "batch {n} was not waiting");
                }
                check_front(out.confirmed.front, &w.confirmed, &tab.engine);
                w
            }
            Msg::Request(..) => unreachable!("requests go to the server"),
            Msg::Pull(_, resp) => {
                let (out, w) = tab.engine.on_pull(&node.store, resp).expect("pull");
                check_front(out.front, &w.confirmed, &tab.engine);
                w
            }
        };
        self.crash_or_write(at, &w, true);
        true
    }

    fn dismiss(&mut self, at: Addr) {
        self.tab(at);
        let node = &mut self.nodes[at.node];
        let Some(n) = node.tabs[at.tab].engine.rejections().next() else {
            return;
        };
        let json = node
            .store
            .rejections()
            .find(|j| Rejection::ids_from_json(j).unwrap().0 == n)
            .expect("a rejection is stored")
            .to_owned();
        let w = node.tabs[at.tab].engine.dismiss(n);
        if !self.crash_point(at, &w) {
            let ids = Rejection::ids_from_json(&json).unwrap().1;
            self.nodes[at.node].dismissed.extend(ids);
        }
    }

    /// Every connection is cut: requests and answers in flight are lost.
    fn server_restart(&mut self) {
        self.tally.server_restarts += 1;
        self.tally.lost_answers += self.in_flight.len() as u64;
        self.in_flight.clear();
    }

    /// The device loses what it knew (an older layout, or a damaged mark): either which batches
    /// were acknowledged, or its batch numbers back to just above what it holds. Every tab
    /// reloads.
    fn forget(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        if self.rng.percent(50) {
            node.store.forget_acknowledged();
            self.tally.forgotten_acks += 1;
        } else {
            node.store.reuse_numbers();
            self.tally.reused_numbers += 1;
        }
        node.rev += 1;
    }

    /// The table shows confirmed ⊕ outbox, however the view got there.
    fn check_view(&mut self, at: Addr) {
        self.tab(at);
        let node = &mut self.nodes[at.node];
        let tab = &mut node.tabs[at.tab];
        tab.view.refresh(node.store.confirmed(), &tab.engine);
        let all = node
            .store
            .confirmed()
            .iter()
            .chain(tab.engine.outbox_events());
        let expected = fold(&ledger(), all.map(Event::as_ref));
        assert_eq!(rows(tab.view.state()), rows(&expected));
        assert_eq!(tab.view.stats().full_rebuilds, 0);
    }

    /// The confirmed log is a prefix of the server's; each tab's outbox sits right after it.
    fn check_logs(&mut self, i: usize) {
        let head = self.nodes[i].store.head();
        assert_eq!(
            self.nodes[i].store.confirmed(),
            self.server.read(0, head as usize)
        );
        for tab in 0..TABS {
            let at = Addr { node: i, tab };
            self.tab(at);
            let node = &mut self.nodes[i];
            let engine = &mut node.tabs[tab].engine;
            if engine.outbox().is_empty() {
                continue;
            }
            // Stamps are given at the next step; take one that reads the log.
            engine.version(&node.store, "");
            for (k, e) in engine.outbox_events().enumerate() {
                assert_eq!((e.seq, e.offset), (head + 1 + k as u64, None));
                assert!(node.store.id_at(e.seq).is_none_or(|id| id != e.id));
            }
        }
    }

    /// Everyone online, everything in flight delivered, one leader per device, then push and
    /// pull until nothing changes.
    fn quiesce(&mut self) {
        for node in &mut self.nodes {
            node.online = true;
        }
        while !self.in_flight.is_empty() {
            self.deliver();
        }
        for i in 0..self.nodes.len() {
            self.take_over(Addr { node: i, tab: 0 });
        }
        for round in 0.. {
            assert!(round < 100, "no quiescence after 100 rounds");
            let mut changed = false;
            for i in 0..self.nodes.len() {
                changed |= self.sync(Addr { node: i, tab: 0 });
            }
            if !changed {
                break;
            }
        }
    }

    fn sync(&mut self, at: Addr) -> bool {
        let mut changed = false;
        let now = self.now;
        while let Some(push) = self.tab(at).engine.next_push() {
            let resp = answer(&mut self.server, &push);
            let node = &mut self.nodes[at.node];
            let (_, w) = node.tabs[at.tab]
                .engine
                .on_push_answer(&node.store, &push, &resp, now)
                .expect("push answer");
            assert!(self.write(at, &w, true), "the leader is not fenced");
            changed = true;
        }
        while self.nodes[at.node].store.head() < self.server.last_offset() {
            let limit = 1 + self.rng.below(16);
            let resp = pull(&self.server, self.nodes[at.node].store.head(), limit);
            self.tab(at);
            let node = &mut self.nodes[at.node];
            let (_, w) = node.tabs[at.tab]
                .engine
                .on_pull(&node.store, &resp)
                .expect("pull");
            assert!(self.write(at, &w, true), "the leader is not fenced");
            changed = true;
        }
        changed
    }

    fn check_converged(&mut self) {
        let log = self.server.read(0, usize::MAX).to_vec();
        let table = rows(&fold(&ledger(), log.iter().map(Event::as_ref)));
        let stored: HashMap<EventId, &Event> = log.iter().map(|e| (e.id, e)).collect();
        assert_eq!(stored.len(), log.len(), "an event is stored twice");
        let mut accounted = 0;
        for i in 0..self.nodes.len() {
            for tab in 0..TABS {
                let at = Addr { node: i, tab };
                self.tab(at);
                let node = &mut self.nodes[i];
                let t = &mut node.tabs[tab];
                assert_eq!(node.store.confirmed(), &log[..]);
                assert_eq!(
                    t.engine.outbox_len(),
                    0,
                    "{} kept events",
                    t.engine.client()
                );
                t.view.refresh(node.store.confirmed(), &t.engine);
                assert_eq!(rows(t.view.state()), table);
                self.tally.count(&self.nodes[i].tabs[tab]);
            }
            accounted += check_batches(&self.nodes[i], &stored);
        }
        assert_eq!(
            accounted,
            log.len(),
            "the log holds events no device appended"
        );
        self.tally.events += log.len() as u64;
    }
}

fn waiting(e: &Engine) -> HashSet<u64> {
    e.outbox()
        .iter()
        .filter(|b| b.state == logfold_core::sync::BatchState::Waiting)
        .map(|b| b.batch)
        .collect()
}

/// Each batch a device appended is wholly in the log, or rejected (kept by its device or
/// dismissed there) and nowhere in the log; an accepted batch's expectations never counted
/// on a rejected one. Returns how many of its events are stored.
fn check_batches(node: &Node, stored: &HashMap<EventId, &Event>) -> usize {
    let mut rejected: HashMap<EventId, u64> = HashMap::new();
    for json in node.store.rejections() {
        let record: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_ne!(
            record["reason"], "partly_known",
            "partly_known is not a rejection"
        );
        let (n, ids) = Rejection::ids_from_json(json).unwrap();
        for id in ids {
            assert!(rejected.insert(id, n).is_none(), "{id} rejected twice");
        }
    }
    let client = node.tabs[0].engine.client();
    let mut count = 0;
    for b in &node.appended {
        let in_log = b.ids.iter().filter(|id| stored.contains_key(id)).count();
        if in_log == b.ids.len() {
            assert!(
                !b.ids.iter().any(|id| rejected.contains_key(id)),
                "a batch of {client} is accepted and rejected"
            );
            assert!(b.ids.iter().all(|id| stored[id].origin == client));
            for first in &b.counted {
                assert!(
                    stored.contains_key(first),
                    "a batch of {client} passed an expectation that counted on a rejected batch"
                );
            }
            count += in_log;
        } else {
            assert_eq!(in_log, 0, "a batch of {client} is partly stored");
            let kept = b.ids.iter().all(|id| rejected.contains_key(id));
            let gone = b.ids.iter().all(|id| node.dismissed.contains(id));
            assert!(kept || gone, "a batch of {client} is lost");
        }
    }
    count
}

fn answer(server: &mut MemoryStore, push: &Push) -> PushResponse {
    let req: PushRequest = serde_json::from_str(&push.body).expect("the body is a push request");
    assert_eq!(
        req.batches.iter().map(|b| b.batch).collect::<Vec<_>>(),
        push.batches
    );
    assert!(push.body.len() <= PUSH_BYTES || push.batches.len() == 1);
    let results = server.push(&req.batches, &Limits::default());
    PushResponse {
        protocol: PROTOCOL_VERSION,
        head: server.last_offset(),
        results,
    }
}

fn run(seed: u64, tally: &mut Tally) {
    let mut world = World::new(seed);
    for _ in 0..STEPS {
        world.step();
    }
    for i in 0..world.nodes.len() {
        for tab in 0..TABS {
            world.check_view(Addr { node: i, tab });
        }
    }
    world.quiesce();
    world.check_converged();
    tally.add(&world.tally);
}

#[test]
fn devices_converge_on_the_servers_log_and_tables_under_faults() {
    let mut tally = Tally::default();
    for seed in 0..SEEDS {
        run(seed, &mut tally);
    }
    println!("{SEEDS} seeds of {STEPS} steps: {tally:#?}");
    // The schedules must have exercised what they are for.
    let t = &tally;
    for (name, n) in [
        ("rejected", t.rejected),
        ("depends", t.depends),
        ("local conflicts", t.local_conflicts),
        ("lost requests", t.lost_requests),
        ("lost answers", t.lost_answers),
        ("repeated", t.repeated),
        ("stale results", t.stale_results),
        ("delayed requests", t.delayed_requests),
        ("crashes before a write", t.crashes_before_write),
        ("crashes after a write", t.crashes_after_write),
        ("fenced steps", t.fenced_steps),
        ("server restarts", t.server_restarts),
        ("reconciled", t.reconciled),
        ("resent", t.resent),
        ("retracted", t.retracted),
        ("confirmed from answers", t.confirmed_from_answers),
        ("overlay rebuilds", t.overlay_rebuilds),
        ("overlay extends", t.overlay_extends),
    ] {
        assert!(n > 0, "no {name} in {SEEDS} seeds");
    }
}

/// Each planted bug makes some seed fail.
#[cfg(feature = "mutants")]
#[test]
fn planted_bugs_are_caught() {
    use logfold_core::mutants::{plant, Mutant};
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut missed = Vec::new();
    for m in [
        Mutant::AckThrough,
        Mutant::NoRetract,
        Mutant::NoDependents,
        Mutant::ServerNoDepends,
        Mutant::RejectStale,
        Mutant::PartlyKnownRejects,
        Mutant::NoRestamp,
    ] {
        plant(Some(m));
        let caught = (0..SEEDS)
            .find(|seed| std::panic::catch_unwind(|| run(*seed, &mut Tally::default())).is_err());
        plant(None);
        match caught {
            Some(seed) => println!("{m:?}: caught at seed {seed}"),
            None => missed.push(m),
        }
    }
    std::panic::set_hook(hook);
    assert!(missed.is_empty(), "not caught: {missed:?}");
}
