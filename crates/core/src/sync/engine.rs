//! [`Engine`]: the sync rules of one client, as steps over its stored state.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::append::{assign, AppendError, Batch, Stamp};
use crate::event::Event;
use crate::id::{EventId, IdGenerator};
use crate::json::push_u64;
use crate::mutants::{on, Mutant};
use crate::protocol::{BatchResult, PullResponse, PushResponse, RejectReason, PROTOCOL_VERSION};
use crate::validate::Limits;
use crate::version::ExpectedVersion;

use super::push::{check_batch, close_body, open_body, write_batch};
use super::record::{BatchState, OutboxBatch, Rejection};

/// What a step reads of the confirmed log: the engine never holds it.
pub trait ConfirmedLog {
    /// The last confirmed offset.
    fn head(&self) -> u64;
    /// A stream's confirmed version; asked only for [`Engine::streams_to_read`].
    fn version(&self, stream: &str) -> u64;
    /// The id confirmed at `offset` (at most the head); asked only for the offsets a pull
    /// repeats.
    fn id_at(&self, offset: u64) -> Option<EventId>;
}

/// The part of a confirmed log one step needs, read beforehand (the browser reads it from
/// IndexedDB in the step's transaction).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Known {
    /// The confirmed head.
    pub head: u64,
    /// The confirmed versions of [`Engine::streams_to_read`] (absent: no event).
    pub versions: HashMap<String, u64>,
    /// The ids at the offsets a pull repeats.
    pub ids: HashMap<u64, EventId>,
}

impl ConfirmedLog for Known {
    fn head(&self) -> u64 {
        self.head
    }

    fn version(&self, stream: &str) -> u64 {
        self.versions.get(stream).copied().unwrap_or(0)
    }

    fn id_at(&self, offset: u64) -> Option<EventId> {
        self.ids.get(&offset).copied()
    }
}

/// A message the engine could not use; nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyncError {
    /// The server speaks another protocol version.
    #[error("the server speaks sync protocol {0}, this client {PROTOCOL_VERSION}")]
    Protocol(u32),
    /// A push answer that does not fit the push it answers.
    #[error("the push answer does not fit its request: {0}")]
    Mismatch(String),
    /// Pulled events that would leave a hole after the confirmed head.
    #[error("pulled events start at offset {first}, but the confirmed log ends at {head}")]
    Gap {
        /// The confirmed head.
        head: u64,
        /// The first new offset received.
        first: u64,
    },
    /// Pulled events out of offset order.
    #[error("pulled events are not in dense offset order at offset {0}")]
    Disordered(u64),
    /// Stored parts that break the engine's invariants.
    #[error("the stored sync state is inconsistent: {0}")]
    Inconsistent(String),
    /// The server has another event at an offset already confirmed here.
    #[error("the server has event {theirs} at offset {offset}, but {ours} is confirmed there: it is not the log this one synced with")]
    Diverged {
        /// The offset.
        offset: u64,
        /// The id confirmed here.
        ours: EventId,
        /// The id the server sent.
        theirs: EventId,
    },
}

/// What the engine keeps: read back from storage by [`Engine::restore`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stored {
    /// The client id.
    pub client: String,
    /// The number the next appended batch gets.
    pub next_batch: u64,
    /// Batches up to this number are acknowledged (kept by an older layout; 0 otherwise).
    pub acked_through: u64,
    /// The outbox records, oldest first.
    pub outbox: Vec<OutboxBatch>,
    /// Each rejection not dismissed: its batch number and event ids.
    pub rejections: Vec<(u64, Vec<EventId>)>,
}

/// What a step asks storage to write, all in one transaction. Applying it to the state the
/// step started from gives the state the engine now holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Writes {
    /// Events to add to the confirmed log, dense after its head, each with its offset.
    pub confirmed: Vec<Event>,
    /// Outbox records to (re)write, encoded, by batch number.
    pub outbox_put: Vec<(u64, Vec<u8>)>,
    /// Outbox records to delete.
    pub outbox_delete: Vec<u64>,
    /// Rejection records to write, as JSON, by batch number.
    pub rejections_put: Vec<(u64, String)>,
    /// Rejection records to delete.
    pub rejections_delete: Vec<u64>,
    /// The next batch number, when it changed.
    pub next_batch: Option<u64>,
}

impl Writes {
    /// Whether the outbox store changes.
    pub fn outbox_changed(&self) -> bool {
        !self.outbox_put.is_empty() || !self.outbox_delete.is_empty()
    }

    /// Whether nothing is to be written.
    pub fn is_empty(&self) -> bool {
        self.confirmed.is_empty()
            && !self.outbox_changed()
            && self.rejections_put.is_empty()
            && self.rejections_delete.is_empty()
            && self.next_batch.is_none()
    }

    /// Adds a later step's writes (e.g. several appends in one transaction).
    pub fn merge(&mut self, later: Writes) {
        self.confirmed.extend(later.confirmed);
        merge_records(
            &mut self.outbox_put,
            &mut self.outbox_delete,
            later.outbox_put,
            later.outbox_delete,
        );
        merge_records(
            &mut self.rejections_put,
            &mut self.rejections_delete,
            later.rejections_put,
            later.rejections_delete,
        );
        self.next_batch = later.next_batch.or(self.next_batch);
    }
}

/// Puts and deletes of records by key, a later step's over an earlier one's: the last word on
/// a key wins.
fn merge_records<T>(
    puts: &mut Vec<(u64, T)>,
    deletes: &mut Vec<u64>,
    later_puts: Vec<(u64, T)>,
    later_deletes: Vec<u64>,
) {
    for (n, record) in later_puts {
        deletes.retain(|d| *d != n);
        puts.retain(|(p, _)| *p != n);
        puts.push((n, record));
    }
    for n in later_deletes {
        puts.retain(|(p, _)| *p != n);
        if !deletes.contains(&n) {
            deletes.push(n);
        }
    }
}

/// A push to send: its body, and what the answer is to be applied with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Push {
    /// The request body (a `PushRequest` as JSON).
    pub body: String,
    /// Its batch numbers, in order.
    pub batches: Vec<u64>,
    /// Each batch's first event: an answer is about the batch pushed, not another given its
    /// number since.
    pub firsts: Vec<EventId>,
    /// The leader epoch it carries.
    pub epoch: u64,
}

/// What a push answer did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushOutcome {
    /// Batches the server has (accepted now or before).
    pub acknowledged: Vec<u64>,
    /// Batches rejected, by the server or (`depends`) here, now in the rejections.
    pub rejected: Vec<u64>,
    /// Batches the server holds in part: the pull settles them.
    pub reconciling: Vec<u64>,
    /// Results about batches no longer waiting (late or repeated answers).
    pub ignored: usize,
    /// The server has heard from a newer leader of this client: pushing stops.
    pub fenced: bool,
    /// Acknowledged events confirmed from the answer itself: they continued the head.
    pub confirmed: PullOutcome,
}

/// What confirmed events did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PullOutcome {
    /// Events added to the confirmed log.
    pub confirmed: usize,
    /// Of those, how many were this client's, out of the outbox.
    pub ours: usize,
    /// Events already confirmed here (overlapping or repeated pulls).
    pub overlapping: usize,
    /// Rejections retracted: the server has their events after all.
    pub retracted: Vec<u64>,
    /// Batches resent under a new number (old, new): what the server lacked of a batch it
    /// held in part.
    pub resent: Vec<(u64, u64)>,
    /// The new events were all ours and the first ones of the outbox as the step found it,
    /// in order: the outbox after them kept its places and versions.
    pub front: bool,
    /// The confirmed head after the step.
    pub head: u64,
}

/// Counters for tests and the app's sync status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Batches appended.
    pub appended: u64,
    /// Batches put into pushes (retries count again).
    pub pushed: u64,
    /// Batches acknowledged by an answer.
    pub acknowledged: u64,
    /// Batches rejected by the server.
    pub rejected: u64,
    /// Batches rejected here because they counted on a rejected one.
    pub depends: u64,
    /// Results ignored as late or repeated.
    pub stale_results: u64,
    /// Events confirmed.
    pub confirmed: u64,
    /// Of those, confirmed from push answers.
    pub confirmed_from_answers: u64,
    /// Pulled events that were confirmed already.
    pub overlapping: u64,
    /// Rejections retracted.
    pub retracted: u64,
    /// `partly_known` answers, and batches resent after one.
    pub reconciled: u64,
    /// Batches resent under a new number.
    pub resent: u64,
}

/// What one step changes, collected before it becomes [`Writes`].
#[derive(Default)]
struct Step {
    confirmed: Vec<Event>,
    /// Confirmed versions of the streams the step's events moved.
    versions: HashMap<String, u64>,
    batches: BTreeMap<u64, ()>,
    new_rejections: BTreeMap<u64, Rejection>,
    gone_rejections: Vec<u64>,
    next_batch: bool,
}

/// The sync state machine of one client (one client id): the outbox, the rejections and the
/// marks, over a confirmed log it reads through [`ConfirmedLog`]. Every step changes the
/// engine and returns the [`Writes`] that make storage match; if they cannot be written, drop
/// the engine and [`Engine::restore`] it. See the module docs for the rules.
#[derive(Debug, Clone)]
pub struct Engine {
    client: String,
    epoch: u64,
    fenced: bool,
    next_batch: u64,
    limits: Limits,
    max_push_bytes: usize,
    /// Oldest first.
    outbox: Vec<OutboxBatch>,
    /// Outbox event id → its batch number.
    pending: HashMap<EventId, u64>,
    /// Rejection batch number → its event ids, and event id → batch.
    rejections: BTreeMap<u64, Vec<EventId>>,
    rejected_ids: HashMap<EventId, u64>,
    /// The confirmed head the outbox's stamps are for, and the confirmed ⊕ outbox versions of
    /// the outbox's streams at it.
    stamped: Option<u64>,
    tip: HashMap<String, u64>,
    /// The confirmed versions the stamps start from, for the outbox's streams.
    base: HashMap<String, u64>,
    known_head: u64,
    rebases: u64,
    stats: EngineStats,
}

impl Engine {
    /// The engine of a client with nothing stored yet.
    pub fn new(client: impl Into<String>, max_push_bytes: usize) -> Self {
        Engine::restore(
            Stored {
                client: client.into(),
                next_batch: 1,
                ..Stored::default()
            },
            max_push_bytes,
        )
        .expect("an empty state is consistent")
    }

    /// The engine of what storage holds (the outbox in any order: it is put in local order).
    /// Outbox batches must be non-empty, with distinct numbers below `next_batch`.
    pub fn restore(mut stored: Stored, max_push_bytes: usize) -> Result<Self, SyncError> {
        stored.outbox.sort_by_key(|b| b.place);
        let mut numbers = HashSet::new();
        for b in &stored.outbox {
            if !numbers.insert(b.batch)
                || b.batch >= stored.next_batch.max(1)
                || b.events.is_empty()
            {
                return Err(SyncError::Inconsistent(format!(
                    "outbox batch {} is repeated, too new or empty",
                    b.batch
                )));
            }
        }
        let mut e = Engine {
            client: stored.client,
            epoch: 0,
            fenced: false,
            next_batch: stored.next_batch.max(1),
            limits: Limits::default(),
            max_push_bytes,
            outbox: stored.outbox,
            pending: HashMap::new(),
            rejections: BTreeMap::new(),
            rejected_ids: HashMap::new(),
            stamped: None,
            tip: HashMap::new(),
            base: HashMap::new(),
            known_head: 0,
            rebases: 0,
            stats: EngineStats::default(),
        };
        for b in &mut e.outbox {
            if b.batch <= stored.acked_through && b.state == BatchState::Waiting {
                b.state = BatchState::Acknowledged;
            }
            e.pending.extend(b.events.iter().map(|x| (x.id, b.batch)));
        }
        for (n, ids) in stored.rejections {
            e.rejected_ids.extend(ids.iter().map(|id| (*id, n)));
            e.rejections.insert(n, ids);
        }
        Ok(e)
    }

    /// The client id.
    pub fn client(&self) -> &str {
        &self.client
    }

    /// The outbox, oldest batch first.
    pub fn outbox(&self) -> &[OutboxBatch] {
        &self.outbox
    }

    /// A batch of the outbox.
    pub fn batch(&self, number: u64) -> Option<&OutboxBatch> {
        self.outbox.iter().find(|b| b.batch == number)
    }

    /// The outbox's events in local order, as the tables show them.
    pub fn outbox_events(&self) -> impl Iterator<Item = &Event> {
        self.outbox.iter().flat_map(|b| &b.events)
    }

    /// How many events wait.
    pub fn outbox_len(&self) -> usize {
        self.outbox.iter().map(|b| b.events.len()).sum()
    }

    /// The batch numbers of the rejections not dismissed.
    pub fn rejections(&self) -> impl Iterator<Item = u64> + '_ {
        self.rejections.keys().copied()
    }

    /// The number the next batch gets.
    pub fn next_batch(&self) -> u64 {
        self.next_batch
    }

    /// The leader epoch pushes carry.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Whether the server refused this leader's epoch: pushing waits for a newer one.
    pub fn is_fenced(&self) -> bool {
        self.fenced
    }

    /// Leads sync with `epoch`; one above the current lifts a fence.
    pub fn set_epoch(&mut self, epoch: u64) {
        if epoch > self.epoch {
            self.fenced = false;
            self.epoch = epoch;
        }
    }

    /// The highest server head any answer has shown.
    pub fn known_head(&self) -> u64 {
        self.known_head
    }

    /// Bumped whenever outbox events move or leave other than from the front: an overlay on
    /// the confirmed state must then be recomputed.
    pub fn rebases(&self) -> u64 {
        self.rebases
    }

    /// The counters.
    pub fn stats(&self) -> EngineStats {
        self.stats
    }

    /// The streams whose confirmed versions the next step needs, besides `also`, when the
    /// confirmed head is `head`: none of the outbox's when its stamps are for that head.
    pub fn streams_to_read<'a>(&'a self, head: u64, also: &[&'a str]) -> HashSet<&'a str> {
        let mut out: HashSet<&str> = also.iter().copied().collect();
        if self.stamped == Some(head) {
            out.retain(|s| !self.tip.contains_key(*s));
        } else {
            out.extend(self.outbox_events().map(|e| e.stream.as_str()));
        }
        out
    }

    /// A stream's version as the app sees it: confirmed ⊕ outbox.
    pub fn version(&mut self, log: &impl ConfirmedLog, stream: &str) -> u64 {
        self.stamp(log);
        self.tip
            .get(stream)
            .copied()
            .unwrap_or_else(|| log.version(stream))
    }

    /// Gives the outbox its places after the confirmed head, unless it has them.
    fn stamp(&mut self, log: &impl ConfirmedLog) {
        if self.stamped != Some(log.head()) {
            self.restamp(log.head(), |s| log.version(s));
        }
    }

    fn restamp(&mut self, head: u64, confirmed: impl Fn(&str) -> u64) {
        self.tip.clear();
        self.base.clear();
        let mut seq = head;
        for e in self.outbox.iter_mut().flat_map(|b| b.events.iter_mut()) {
            seq += 1;
            e.seq = seq;
            e.offset = None;
            let v = match self.tip.get_mut(&e.stream) {
                Some(v) => v,
                None => {
                    let v = confirmed(&e.stream);
                    self.base.insert(e.stream.clone(), v);
                    self.tip.entry(e.stream.clone()).or_insert(v)
                }
            };
            *v += 1;
            e.version = *v;
        }
        self.stamped = Some(head);
    }

    /// Appends a batch to the outbox at `time`, its expectations checked against confirmed ⊕
    /// outbox; returns its events with their provisional places and versions. Nothing changes
    /// on an error.
    pub fn append(
        &mut self,
        log: &impl ConfirmedLog,
        batch: &Batch,
        time: u64,
        ids: &mut IdGenerator,
    ) -> Result<(Vec<Event>, Writes), AppendError> {
        batch.validate(&self.limits)?;
        check_batch(batch, &self.client, self.max_push_bytes)?;
        self.append_checked(log, batch, time, ids)
    }

    /// [`Engine::append`] for a batch that passed [`Batch::validate`] and [`check_batch`].
    pub fn append_checked(
        &mut self,
        log: &impl ConfirmedLog,
        batch: &Batch,
        time: u64,
        ids: &mut IdGenerator,
    ) -> Result<(Vec<Event>, Writes), AppendError> {
        self.stamp(log);
        let mut versions: HashMap<String, u64> = batch
            .streams()
            .into_iter()
            .map(|s| (s.to_owned(), self.version(log, s)))
            .collect();
        let mut head = log.head() + self.outbox_len() as u64;
        let mut stamp = Stamp {
            time,
            origin: &self.client,
            ids,
        };
        let events = assign(batch, &mut head, &mut versions, &mut stamp)?;
        let number = self.next_batch;
        self.next_batch += 1;
        for s in batch.streams() {
            if !self.base.contains_key(s) {
                self.base.insert(s.to_owned(), log.version(s));
            }
        }
        self.tip.extend(versions);
        self.pending.extend(events.iter().map(|e| (e.id, number)));
        let b = OutboxBatch {
            batch: number,
            place: number,
            events: events.clone(),
            expected: batch.expected.iter().cloned().collect(),
            state: BatchState::Waiting,
        };
        let writes = Writes {
            outbox_put: vec![(number, b.encode())],
            next_batch: Some(self.next_batch),
            ..Writes::default()
        };
        self.outbox.push(b);
        self.stats.appended += 1;
        Ok((events, writes))
    }

    /// The next push: the oldest waiting batches, as many as fit in the push size (at least
    /// one), stopping at a batch being reconciled. `None` when nothing is to be pushed or this
    /// leader is fenced. Until an answer, the same batches come back byte for byte.
    pub fn next_push(&mut self) -> Option<Push> {
        if self.fenced {
            return None;
        }
        let mut body = String::new();
        open_body(&mut body);
        let mut batches = Vec::new();
        let mut firsts = Vec::new();
        for b in &self.outbox {
            match b.state {
                BatchState::Acknowledged => continue,
                // What follows it may count on it; it settles at the next pull.
                BatchState::Reconcile { .. } => break,
                BatchState::Waiting => {}
            }
            let before = body.len();
            if !batches.is_empty() {
                body.push(',');
            }
            write_batch(&mut body, &self.client, self.epoch, b);
            if !batches.is_empty() && body.len() + 2 > self.max_push_bytes {
                body.truncate(before);
                break;
            }
            batches.push(b.batch);
            firsts.push(b.events[0].id);
        }
        if batches.is_empty() {
            return None;
        }
        close_body(&mut body);
        self.stats.pushed += batches.len() as u64;
        Some(Push {
            body,
            batches,
            firsts,
            epoch: self.epoch,
        })
    }

    /// Applies the server's answer to `push` at time `now` (ms). Answers may be late or
    /// repeated: a result about a batch no longer waiting is ignored. Accepted events that
    /// continue the confirmed head are confirmed at once, without pulling them back.
    pub fn on_push_answer(
        &mut self,
        log: &impl ConfirmedLog,
        push: &Push,
        answer: &PushResponse,
        now: u64,
    ) -> Result<(PushOutcome, Writes), SyncError> {
        if answer.protocol != PROTOCOL_VERSION {
            return Err(SyncError::Protocol(answer.protocol));
        }
        if answer.results.len() != push.batches.len() || push.firsts.len() != push.batches.len() {
            return Err(SyncError::Mismatch(format!(
                "{} results for {} batches",
                answer.results.len(),
                push.batches.len()
            )));
        }
        for ((n, first), r) in push.batches.iter().zip(&push.firsts).zip(&answer.results) {
            let count = self.batch(*n).map_or(0, |b| b.events.len());
            let stale = self.waiting(*n, *first).is_none();
            if !stale && !matches!(r, BatchResult::Rejected { .. }) && r.offsets().len() != count {
                return Err(SyncError::Mismatch(format!(
                    "batch {n} has {count} events but {} offsets",
                    r.offsets().len()
                )));
            }
        }
        self.stamp(log);
        self.known_head = self.known_head.max(answer.head);
        let mut out = PushOutcome::default();
        let mut step = Step::default();
        let mut refused: HashSet<String> = HashSet::new();
        for ((n, first), result) in push.batches.iter().zip(&push.firsts).zip(&answer.results) {
            let Some(i) = self.waiting(*n, *first) else {
                let late = self.outbox.iter().position(|b| b.batch == *n);
                if let (
                    true,
                    Some(i),
                    BatchResult::Rejected {
                        reason,
                        message,
                        details,
                    },
                ) = (on(Mutant::RejectStale), late, result)
                {
                    self.reject(i, *reason, message.clone(), details.clone(), now, &mut step);
                    out.rejected.push(*n);
                    continue;
                }
                out.ignored += 1;
                continue;
            };
            match result {
                BatchResult::Accepted { .. } | BatchResult::Duplicate { .. } => {
                    self.outbox[i].state = BatchState::Acknowledged;
                    step.batches.insert(*n, ());
                    out.acknowledged.push(*n);
                    if on(Mutant::AckThrough) {
                        for b in &mut self.outbox[..i] {
                            b.state = BatchState::Acknowledged;
                            step.batches.insert(b.batch, ());
                        }
                    }
                }
                BatchResult::Rejected {
                    reason: RejectReason::StaleEpoch,
                    ..
                } => {
                    // About this leader, not the batch: it stays ours to send.
                    if push.epoch >= self.epoch {
                        self.fenced = true;
                        out.fenced = true;
                    } else {
                        out.ignored += 1;
                    }
                }
                BatchResult::Rejected {
                    reason: RejectReason::PartlyKnown,
                    ..
                } if !on(Mutant::PartlyKnownRejects) => {
                    self.outbox[i].state = BatchState::Reconcile {
                        through: answer.head,
                    };
                    step.batches.insert(*n, ());
                    out.reconciling.push(*n);
                    self.stats.reconciled += 1;
                }
                BatchResult::Rejected {
                    reason,
                    message,
                    details,
                } => {
                    refused.extend(self.outbox[i].events.iter().map(|e| e.stream.clone()));
                    self.reject(i, *reason, message.clone(), details.clone(), now, &mut step);
                    out.rejected.push(*n);
                    self.stats.rejected += 1;
                }
            }
        }
        if on(Mutant::NoDependents) {
            refused.clear();
        }
        let local = self.reject_dependents(refused, now, &mut step);
        out.rejected.extend(&local);
        self.stats.acknowledged += out.acknowledged.len() as u64;
        self.stats.stale_results += out.ignored as u64;

        let head = log.head();
        let events = self.accepted_after(head, &push.batches, &answer.results);
        if !events.is_empty() {
            self.stats.confirmed_from_answers += events.len() as u64;
        }
        out.confirmed = self.confirm(log, head, events, &mut step)?;
        // `front` is about the outbox as the step found it, and batches left it before.
        out.confirmed.front &= out.rejected.is_empty();
        if !out.rejected.is_empty() && out.confirmed.confirmed == 0 {
            self.rebases += 1;
        }
        Ok((out, self.finish(log, step)))
    }

    /// The outbox index of batch `number` if it waits for an answer and begins with `first`.
    fn waiting(&self, number: u64, first: EventId) -> Option<usize> {
        self.outbox.iter().position(|b| {
            b.batch == number && b.state == BatchState::Waiting && b.events[0].id == first
        })
    }

    /// Moves outbox batch `i` to the rejections.
    fn reject(
        &mut self,
        i: usize,
        reason: RejectReason,
        message: String,
        details: String,
        now: u64,
        step: &mut Step,
    ) {
        let b = self.outbox.remove(i);
        let ids: Vec<EventId> = b.events.iter().map(|e| e.id).collect();
        for id in &ids {
            self.pending.remove(id);
            self.rejected_ids.insert(*id, b.batch);
        }
        self.rejections.insert(b.batch, ids);
        step.batches.insert(b.batch, ());
        step.gone_rejections.retain(|n| *n != b.batch);
        step.new_rejections.insert(
            b.batch,
            Rejection {
                batch: b,
                reason,
                message,
                details,
                time: now,
            },
        );
    }

    /// Rejects the batches not yet on the server whose expectations counted on events of a rejected batch
    /// (its streams are `refused`), and theirs in turn: pushed alone later, such an
    /// expectation could hold on the server against someone else's events. Returns them.
    fn reject_dependents(
        &mut self,
        mut refused: HashSet<String>,
        now: u64,
        step: &mut Step,
    ) -> Vec<u64> {
        let mut out = Vec::new();
        let mut i = 0;
        while !refused.is_empty() && i < self.outbox.len() {
            let b = &self.outbox[i];
            // A batch held back by `partly_known` keeps its expectations only while none of
            // its events is confirmed: then the server has not judged them either.
            let counted = b.state != BatchState::Acknowledged
                && b.expected.iter().any(|(s, v)| {
                    !matches!(v, ExpectedVersion::Any | ExpectedVersion::NoStream)
                        && refused.contains(s)
                });
            if !counted {
                i += 1;
                continue;
            }
            refused.extend(b.events.iter().map(|e| e.stream.clone()));
            let n = b.batch;
            let message = format!(
                "batch {n} expected versions that counted on events of a batch the server refused"
            );
            let mut details = String::from("{\"batch\":");
            push_u64(&mut details, n);
            details.push('}');
            self.reject(i, RejectReason::Depends, message, details, now, step);
            self.stats.depends += 1;
            out.push(n);
        }
        out
    }

    /// The events of acknowledged batches whose offsets continue `head` without a gap, as the
    /// server stored them: whole batches only.
    fn accepted_after(&self, head: u64, numbers: &[u64], results: &[BatchResult]) -> Vec<Event> {
        let mut next = head + 1;
        let mut out = Vec::new();
        for (n, result) in numbers.iter().zip(results) {
            let (BatchResult::Accepted { offsets, versions }
            | BatchResult::Duplicate { offsets, versions }) = result
            else {
                break;
            };
            let Some(b) = self.batch(*n) else { break };
            if b.state != BatchState::Acknowledged
                || b.events.len() != offsets.len()
                || versions.len() != offsets.len()
            {
                break;
            }
            let whole = out.len();
            for ((e, offset), version) in b.events.iter().zip(offsets).zip(versions) {
                if *offset != next {
                    out.truncate(whole);
                    return out;
                }
                let mut e = e.clone();
                e.seq = *offset;
                e.offset = Some(*offset);
                e.version = *version;
                out.push(e);
                next += 1;
            }
        }
        out
    }

    /// Applies a pull page: events after the cursor join the confirmed log in offset order,
    /// ours leave the outbox, rejections whose events arrive are retracted. Events already
    /// confirmed must be the very ones ([`SyncError::Diverged`]); a gap changes nothing.
    pub fn on_pull(
        &mut self,
        log: &impl ConfirmedLog,
        pull: &PullResponse,
    ) -> Result<(PullOutcome, Writes), SyncError> {
        if pull.protocol != PROTOCOL_VERSION {
            return Err(SyncError::Protocol(pull.protocol));
        }
        let events = pull.events.iter().map(|p| Event::from(p.clone())).collect();
        self.on_events(log, events, pull.head)
    }

    /// [`Engine::on_pull`] for events already decoded (each `seq` its offset), with the
    /// server head the page was read at.
    pub fn on_events(
        &mut self,
        log: &impl ConfirmedLog,
        events: Vec<Event>,
        server_head: u64,
    ) -> Result<(PullOutcome, Writes), SyncError> {
        self.stamp(log);
        let mut step = Step::default();
        let out = self.confirm(log, log.head(), events, &mut step)?;
        self.known_head = self.known_head.max(server_head).max(out.head);
        Ok((out, self.finish(log, step)))
    }

    /// Checks `events` against the confirmed log at `head` and confirms the new ones.
    fn confirm(
        &mut self,
        log: &impl ConfirmedLog,
        head: u64,
        events: Vec<Event>,
        step: &mut Step,
    ) -> Result<PullOutcome, SyncError> {
        let head = head + step.confirmed.len() as u64;
        for pair in events.windows(2) {
            if pair[1].seq != pair[0].seq + 1 {
                return Err(SyncError::Disordered(pair[1].seq));
            }
        }
        let mut out = PullOutcome {
            head,
            ..PullOutcome::default()
        };
        let mut new = Vec::with_capacity(events.len());
        for e in events {
            if e.seq == 0 {
                return Err(SyncError::Disordered(0));
            }
            if e.seq > head {
                new.push(e);
                continue;
            }
            match log.id_at(e.seq) {
                Some(ours) if ours == e.id => out.overlapping += 1,
                Some(ours) => {
                    return Err(SyncError::Diverged {
                        offset: e.seq,
                        ours,
                        theirs: e.id,
                    })
                }
                None => {
                    return Err(SyncError::Inconsistent(format!(
                        "no confirmed id was read at offset {}",
                        e.seq
                    )))
                }
            }
        }
        if let Some(first) = new.first() {
            if first.seq != head + 1 {
                return Err(SyncError::Gap {
                    head,
                    first: first.seq,
                });
            }
        }
        self.stats.overlapping += out.overlapping as u64;
        if new.is_empty() {
            self.resend_reconciled(head, step, &mut out);
            return Ok(out);
        }
        out.front = {
            let mut mine = self.outbox_events();
            new.iter()
                .all(|e| mine.next().is_some_and(|m| m.id == e.id))
        };
        for e in new {
            out.head = e.seq;
            out.confirmed += 1;
            if let Some(n) = self.pending.remove(&e.id) {
                if let Some(b) = self.outbox.iter_mut().find(|b| b.batch == n) {
                    b.events.retain(|x| x.id != e.id);
                    match b.state {
                        // The server stores batches whole: the rest of it is there too.
                        BatchState::Waiting => b.state = BatchState::Acknowledged,
                        // The server judged these expectations with the part it has.
                        BatchState::Reconcile { .. } => b.expected.clear(),
                        BatchState::Acknowledged => {}
                    }
                }
                step.batches.insert(n, ());
                out.ours += 1;
            } else if let Some(n) = self
                .rejected_ids
                .get(&e.id)
                .copied()
                .filter(|_| !on(Mutant::NoRetract))
            {
                self.retract(n, step);
                out.retracted.push(n);
            }
            step.versions.insert(e.stream.clone(), e.version);
            step.confirmed.push(e);
        }
        self.outbox.retain(|b| !b.events.is_empty());
        self.resend_reconciled(out.head, step, &mut out);
        self.stats.confirmed += out.confirmed as u64;
        self.stats.retracted += out.retracted.len() as u64;
        if !out.front {
            self.rebases += 1;
        }
        Ok(out)
    }

    /// Forgets rejection `n`: the log has its events.
    fn retract(&mut self, n: u64, step: &mut Step) {
        for id in self.rejections.remove(&n).unwrap_or_default() {
            self.rejected_ids.remove(&id);
        }
        step.new_rejections.remove(&n);
        step.gone_rejections.push(n);
    }

    /// Batches held in part by the server, once the confirmed log reaches the head it had
    /// then: whatever of them is still here the server lacks, and is resent under a new number,
    /// in its place (without its expectations if part of it was confirmed: the server judged
    /// them already).
    fn resend_reconciled(&mut self, head: u64, step: &mut Step, out: &mut PullOutcome) {
        for b in &mut self.outbox {
            if !matches!(b.state, BatchState::Reconcile { through } if through <= head) {
                continue;
            }
            let old = b.batch;
            b.batch = self.next_batch;
            self.next_batch += 1;
            b.state = BatchState::Waiting;
            for e in &b.events {
                self.pending.insert(e.id, b.batch);
            }
            step.batches.insert(old, ());
            step.batches.insert(b.batch, ());
            step.next_batch = true;
            out.resent.push((old, b.batch));
            self.stats.resent += 1;
        }
    }

    /// Forgets the rejection of batch `number`; the writes are empty if there is none.
    pub fn dismiss(&mut self, number: u64) -> Writes {
        let mut step = Step::default();
        if self.rejections.contains_key(&number) {
            self.retract(number, &mut step);
        }
        Writes {
            rejections_delete: step.gone_rejections,
            ..Writes::default()
        }
    }

    /// Restamps after the step's confirmed events and turns what it touched into writes.
    fn finish(&mut self, log: &impl ConfirmedLog, step: Step) -> Writes {
        let head = log.head() + step.confirmed.len() as u64;
        if (self.stamped != Some(head) || !step.batches.is_empty()) && !on(Mutant::NoRestamp) {
            // The outbox's streams were read for the stamps, or are among the step's events.
            let (versions, base) = (step.versions, std::mem::take(&mut self.base));
            self.restamp(head, |s| {
                versions
                    .get(s)
                    .or_else(|| base.get(s))
                    .copied()
                    .unwrap_or_else(|| log.version(s))
            });
        }
        let mut w = Writes {
            confirmed: step.confirmed,
            next_batch: step.next_batch.then_some(self.next_batch),
            ..Writes::default()
        };
        for n in step.batches.keys() {
            match self.batch(*n) {
                Some(b) => w.outbox_put.push((*n, b.encode())),
                None => w.outbox_delete.push(*n),
            }
        }
        for (n, r) in &step.new_rejections {
            w.rejections_put.push((*n, r.to_json()));
        }
        w.rejections_delete = step.gone_rejections;
        w
    }
}
