//! Convergence, simulated: a few clients and one in-memory server, driven by a seeded random
//! schedule of appends, pushes, pulls and faults (requests lost or reaching the server late;
//! answers lost, reordered and repeated; clients going offline, reloading from their persisted
//! parts, changing leader epoch). Along the way every client's confirmed log stays a prefix of
//! the server's and its table equals a fold of confirmed ⊕ outbox; once everyone syncs to
//! quiescence, every client holds exactly the server's log and table, and each rejected batch is
//! known to the client that made it and to no one else.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use common::{deposited, ledger, opened, pull, rows, transferred, withdrawn};
use logfold_core::protocol::{PullResponse, PushRequest, PushResponse, RejectReason};
use logfold_core::sync::{Client, SyncedProjection};
use logfold_core::table::{fold, TableDef};
use logfold_core::{
    AppendError, Batch, Event, EventId, ExpectedVersion, Limits, MemoryStore, PROTOCOL_VERSION,
};

const SEEDS: u64 = 200;
const STEPS: usize = 400;
const ACCOUNTS: usize = 4;

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

/// A message on its way: a push request to the server, or an answer back to a client.
#[derive(Clone)]
enum Msg {
    Request(usize, PushRequest),
    Push(usize, PushRequest, PushResponse),
    Pull(usize, PullResponse),
}

struct Node {
    client: Client,
    view: SyncedProjection<Arc<TableDef>>,
    online: bool,
    /// Every batch this client appended: (batch number, event ids).
    appended: Vec<(u64, Vec<EventId>)>,
    dismissed: HashSet<u64>,
}

/// What the schedules exercised, summed over all seeds.
#[derive(Debug, Default)]
struct Tally {
    appends: u64,
    local_conflicts: u64,
    lost_requests: u64,
    delayed_requests: u64,
    restarts: u64,
    lost_answers: u64,
    delivered: u64,
    repeated: u64,
    rejected: u64,
    retracted: u64,
    stale_results: u64,
    overlay_rebuilds: u64,
    overlay_extends: u64,
    partial_batches: u64,
    events: u64,
}

impl Tally {
    /// Adds a client's and its table's counters (before a restart resets them, or at the end).
    fn count(&mut self, node: &Node) {
        let (c, v) = (node.client.stats(), node.view.stats());
        self.rejected += c.rejected;
        self.retracted += c.retracted;
        self.stale_results += c.stale_results;
        self.overlay_rebuilds += v.overlay_rebuilds;
        self.overlay_extends += v.overlay_extends;
    }
}

struct World {
    rng: Rng,
    server: MemoryStore,
    nodes: Vec<Node>,
    in_flight: Vec<Msg>,
    history: Vec<Msg>,
    now: u64,
    tally: Tally,
}

impl World {
    fn new(seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let n = 2 + rng.below(4);
        let nodes = (0..n)
            .map(|i| Node {
                client: Client::new(format!("client-{i}"), 1, rng.next()),
                view: SyncedProjection::new(ledger()),
                online: true,
                appended: Vec::new(),
                dismissed: HashSet::new(),
            })
            .collect();
        World {
            rng,
            server: MemoryStore::new(),
            nodes,
            in_flight: Vec::new(),
            history: Vec::new(),
            now: 1_000,
            tally: Tally::default(),
        }
    }

    fn step(&mut self) {
        self.now += 1;
        let i = self.rng.below(self.nodes.len());
        match self.rng.below(100) {
            0..=29 => self.append(i),
            30..=34 => self.nodes[i].online = !self.nodes[i].online,
            35..=49 => self.push(i),
            50..=64 => self.pull(i),
            65..=89 => self.deliver(),
            90..=94 => self.repeat(),
            95..=96 => self.dismiss(i),
            97 => {
                // Another tab takes over sync leadership.
                let c = &mut self.nodes[i].client;
                c.set_epoch(c.epoch() + 1);
            }
            98 => self.restart(i),
            _ => self.check_view(i),
        }
        self.check_logs(i);
    }

    fn account(&mut self) -> String {
        format!("acct-{}", self.rng.below(ACCOUNTS))
    }

    /// A random batch, often with an expectation read from the client's own view, which
    /// other clients' appends may have made stale by the time it reaches the server.
    fn batch(&mut self, i: usize) -> Batch {
        let (a, b) = (self.account(), self.account());
        let amount = 1 + self.rng.below(100) as u32;
        let kind = self.rng.below(6);
        let client = &self.nodes[i].client;
        let (va, vb) = (client.version(&a), client.version(&b));
        let exact = ExpectedVersion::Exact;
        match kind {
            0 => Batch::new(vec![opened(&a, &format!("owner-{i}"))])
                .expect(a, ExpectedVersion::NoStream),
            1 | 2 => Batch::new(vec![deposited(&a, amount)]),
            3 => Batch::new(vec![withdrawn(&a, amount)]).expect(a, exact(va)),
            4 if a != b => Batch::new(vec![withdrawn(&a, amount), deposited(&b, amount)])
                .expect(a, exact(va))
                .expect(b, exact(vb)),
            // Sometimes a version read long ago: refused locally or by the server.
            _ => {
                Batch::new(vec![transferred(&a, &b, amount)]).expect(a, exact(va.saturating_sub(1)))
            }
        }
    }

    fn append(&mut self, i: usize) {
        let batch = self.batch(i);
        let node = &mut self.nodes[i];
        match node.client.append(&batch, self.now) {
            Ok(events) => {
                let number = node.client.outbox().last().expect("just appended").batch;
                node.appended
                    .push((number, events.iter().map(|e| e.id).collect()));
                self.tally.appends += 1;
            }
            Err(AppendError::Conflict(_)) => self.tally.local_conflicts += 1,
            Err(e) => panic!("unexpected append error: {e}"),
        }
    }

    fn push(&mut self, i: usize) {
        if !self.nodes[i].online {
            return;
        }
        let max = 1 + self.rng.below(3);
        let Some(req) = self.nodes[i].client.next_push(max) else {
            return;
        };
        if self.rng.percent(10) {
            self.tally.lost_requests += 1;
        } else if self.rng.percent(15) {
            // Reaches the server later, maybe after a retry did.
            self.tally.delayed_requests += 1;
            self.in_flight.push(Msg::Request(i, req));
        } else {
            self.serve(i, req);
        }
    }

    fn serve(&mut self, i: usize, req: PushRequest) {
        let resp = answer(&mut self.server, &req);
        self.send(Msg::Push(i, req, resp));
    }

    /// A reload: the client resumes from what it persisted, its table from scratch.
    fn restart(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        self.tally.count(node);
        node.client = Client::restore(node.client.to_parts(), self.rng.next()).expect("restore");
        node.view = SyncedProjection::new(ledger());
        self.tally.restarts += 1;
    }

    fn pull(&mut self, i: usize) {
        if !self.nodes[i].online {
            return;
        }
        let limit = 1 + self.rng.below(8);
        let resp = pull(&self.server, self.nodes[i].client.cursor(), limit);
        self.send(Msg::Pull(i, resp));
    }

    fn send(&mut self, a: Msg) {
        if self.rng.percent(20) {
            self.tally.lost_answers += 1;
        } else {
            self.in_flight.push(a);
        }
    }

    /// Delivers a random answer in flight: answers overtake each other.
    fn deliver(&mut self) {
        if self.in_flight.is_empty() {
            return;
        }
        let a = self
            .in_flight
            .swap_remove(self.rng.below(self.in_flight.len()));
        if let Msg::Request(i, req) = a {
            return self.serve(i, req);
        }
        if self.apply(&a) {
            self.tally.delivered += 1;
            self.history.push(a);
        }
    }

    /// Delivers an answer that was already delivered, again.
    fn repeat(&mut self) {
        if self.history.is_empty() {
            return;
        }
        let a = self.history[self.rng.below(self.history.len())].clone();
        if self.apply(&a) {
            self.tally.repeated += 1;
        }
    }

    /// An answer to an offline client is lost.
    fn apply(&mut self, a: &Msg) -> bool {
        let (Msg::Request(i, _) | Msg::Push(i, ..) | Msg::Pull(i, _)) = a;
        let node = &mut self.nodes[*i];
        if !node.online {
            return false;
        }
        match a {
            Msg::Push(_, req, resp) => {
                on_push(&mut node.client, req, resp);
            }
            Msg::Request(..) => unreachable!("requests go to the server"),
            Msg::Pull(_, resp) => {
                node.client.on_pull(resp).expect("pull answer");
                self.tally.partial_batches += split_batches(node);
            }
        }
        true
    }

    fn dismiss(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        if let Some(r) = node.client.rejections().first() {
            let batch = r.batch;
            assert!(node.client.dismiss_rejection(batch));
            node.dismissed.insert(batch);
        }
    }

    /// The table shows confirmed ⊕ outbox, however the view got there.
    fn check_view(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        node.view.refresh(&node.client);
        let all = node
            .client
            .confirmed()
            .iter()
            .chain(node.client.outbox_events());
        let expected = fold(&ledger(), all.map(Event::as_ref));
        assert_eq!(rows(node.view.state()), rows(&expected));
        let stats = node.view.stats();
        assert_eq!(stats.full_rebuilds, 0);
        assert_eq!(stats.base_events, node.client.cursor());
    }

    /// The confirmed log is a prefix of the server's; the outbox sits right after it.
    fn check_logs(&self, i: usize) {
        let c = &self.nodes[i].client;
        assert_eq!(c.confirmed(), self.server.read(0, c.confirmed().len()));
        for (k, e) in c.outbox_events().enumerate() {
            assert_eq!((e.seq, e.offset), (c.cursor() + 1 + k as u64, None));
            assert!(!c.confirmed().iter().any(|x| x.id == e.id));
        }
    }

    /// Everyone online, every answer in flight delivered, then push and pull until nothing
    /// changes.
    fn quiesce(&mut self) {
        for node in &mut self.nodes {
            node.online = true;
        }
        while !self.in_flight.is_empty() {
            self.deliver();
        }
        for round in 0.. {
            assert!(round < 100, "no quiescence after 100 rounds");
            let mut changed = false;
            for i in 0..self.nodes.len() {
                changed |= self.sync(i);
            }
            if !changed {
                break;
            }
        }
    }

    fn sync(&mut self, i: usize) -> bool {
        let mut changed = false;
        let client = &mut self.nodes[i].client;
        while let Some(req) = client.next_push(4) {
            let resp = answer(&mut self.server, &req);
            on_push(client, &req, &resp);
            changed = true;
        }
        while client.cursor() < self.server.last_offset() {
            let limit = 1 + self.rng.below(16);
            client
                .on_pull(&pull(&self.server, client.cursor(), limit))
                .expect("pull answer");
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
        for node in &mut self.nodes {
            let c = &node.client;
            assert_eq!(c.confirmed(), &log[..]);
            assert_eq!(c.outbox_len(), 0);
            node.view.refresh(c);
            assert_eq!(rows(node.view.state()), table);
            accounted += check_batches(node, &stored);
            self.tally.count(node);
        }
        assert_eq!(
            accounted,
            log.len(),
            "the log holds events no client appended"
        );
        self.tally.events += log.len() as u64;
    }
}

/// Each batch a client appended is either wholly in the log, or rejected (kept by this client
/// or dismissed by it) and nowhere in the log. Returns how many of its events are stored.
fn check_batches(node: &Node, stored: &HashMap<EventId, &Event>) -> usize {
    let c = &node.client;
    let rejected: HashMap<u64, Vec<EventId>> = c
        .rejections()
        .iter()
        .map(|r| (r.batch, r.events.iter().map(|e| e.id).collect()))
        .collect();
    let mut count = 0;
    for (number, ids) in &node.appended {
        let in_log = ids.iter().filter(|id| stored.contains_key(id)).count();
        if in_log == ids.len() {
            assert!(
                !rejected.contains_key(number),
                "batch {number} accepted and rejected"
            );
            assert!(ids.iter().all(|id| stored[id].origin == c.id()));
            count += in_log;
        } else {
            assert_eq!(in_log, 0, "batch {number} of {} partly stored", c.id());
            let kept = rejected.get(number) == Some(ids);
            assert!(
                kept || node.dismissed.contains(number),
                "batch {number} lost"
            );
        }
    }
    for r in c.rejections() {
        assert!(node.appended.iter().any(|(n, _)| *n == r.batch));
        assert!(r.events.iter().all(|e| e.origin == c.id()));
    }
    count
}

/// How many of the client's waiting batches a pull has confirmed only in part.
fn split_batches(node: &Node) -> u64 {
    let appended = |n: u64| {
        node.appended
            .iter()
            .find(|(b, _)| *b == n)
            .map(|(_, ids)| ids.len())
    };
    node.client
        .outbox()
        .filter(|b| appended(b.batch) != Some(b.events.len()))
        .count() as u64
}

/// Applies a push answer. Batches are never re-cut and local checks match the server's, so the
/// only possible rejection is a version conflict: anything else means the client resent a
/// batch it should not have.
/// And an answer about a batch the client already knows the server has (a late or repeated one)
/// must not reject it.
fn on_push(client: &mut Client, req: &PushRequest, resp: &PushResponse) {
    let waiting: HashSet<u64> = client
        .outbox()
        .filter(|b| !b.acknowledged)
        .map(|b| b.batch)
        .collect();
    let out = client.on_push_response(req, resp).expect("push answer");
    for number in out.rejected {
        assert!(waiting.contains(&number), "batch {number} was not waiting");
        let r = client.rejections().iter().find(|r| r.batch == number);
        assert_eq!(r.map(|r| r.reason), Some(RejectReason::Conflict));
    }
}

fn answer(server: &mut MemoryStore, req: &PushRequest) -> PushResponse {
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
        world.check_view(i);
    }
    world.quiesce();
    world.check_converged();
    let t = world.tally;
    tally.appends += t.appends;
    tally.local_conflicts += t.local_conflicts;
    tally.lost_requests += t.lost_requests;
    tally.delayed_requests += t.delayed_requests;
    tally.restarts += t.restarts;
    tally.lost_answers += t.lost_answers;
    tally.delivered += t.delivered;
    tally.repeated += t.repeated;
    tally.rejected += t.rejected;
    tally.retracted += t.retracted;
    tally.stale_results += t.stale_results;
    tally.overlay_rebuilds += t.overlay_rebuilds;
    tally.overlay_extends += t.overlay_extends;
    tally.partial_batches += t.partial_batches;
    tally.events += t.events;
}

#[test]
fn clients_converge_on_the_servers_log_and_tables_under_faults() {
    let mut tally = Tally::default();
    for seed in 0..SEEDS {
        run(seed, &mut tally);
    }
    println!("{tally:#?}");
    // The schedules must have exercised what they are for.
    assert!(tally.rejected > 0 && tally.local_conflicts > 0);
    assert!(tally.lost_requests > 0 && tally.lost_answers > 0 && tally.repeated > 0);
    assert!(tally.stale_results > 0 && tally.delayed_requests > 0 && tally.restarts > 0);
    assert!(tally.overlay_rebuilds > 0 && tally.overlay_extends > 0);
    assert!(tally.partial_batches > 0);
}
