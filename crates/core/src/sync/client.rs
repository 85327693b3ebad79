//! [`Client`]: the confirmed log, the outbox, and what push and pull answers do to them.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use crate::append::{assign, AppendError, Batch, Stamp};
use crate::event::Event;
use crate::id::{EventId, IdGenerator};
use crate::protocol::{
    BatchResult, PullResponse, PushBatch, PushEvent, PushRequest, PushResponse, RejectReason,
    PROTOCOL_VERSION,
};
use crate::validate::Limits;
use crate::version::ExpectedVersion;

use super::outbox::{check_push_batch, DEFAULT_PUSH_BYTES};

/// One local batch waiting in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxBatch {
    /// The client's batch number: with the client id, the batch's idempotency key.
    pub batch: u64,
    /// Its events not yet confirmed, with provisional `seq`s and versions.
    pub events: Vec<Event>,
    /// The expected versions given at append, checked again by the server.
    pub expected: BTreeMap<String, ExpectedVersion>,
    /// The server has it: it is not pushed again and waits for the pull to confirm it.
    pub acknowledged: bool,
}

/// A batch the server refused, kept until the app dismisses it.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    /// The batch number it was pushed as.
    pub batch: u64,
    /// Its events as they were last shown (provisional `seq`s and versions).
    pub events: Vec<Event>,
    /// The expected versions it carried.
    pub expected: BTreeMap<String, ExpectedVersion>,
    /// Why.
    pub reason: RejectReason,
    /// The server's sentence for people.
    pub message: String,
    /// What the app needs to act, e.g. the stream's current version.
    pub details: serde_json::Value,
}

/// A message the client could not use; nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyncError {
    /// The server speaks another protocol version.
    #[error("the server speaks protocol {0}, this client {PROTOCOL_VERSION}")]
    Protocol(u32),
    /// A push answer that does not fit the request it is given with.
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
    /// Persisted parts that break the client's invariants (see [`Client::restore`]).
    #[error("the persisted sync state is inconsistent: {0}")]
    Inconsistent(String),
    /// The server has another event at an offset already confirmed here.
    #[error("offset {offset} holds {theirs} on the server but {ours} here")]
    Diverged {
        /// The offset.
        offset: u64,
        /// The id confirmed here.
        ours: EventId,
        /// The id the server sent.
        theirs: EventId,
    },
}

/// What a push answer did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushOutcome {
    /// Batch numbers the server has now (accepted or duplicate).
    pub acknowledged: Vec<u64>,
    /// Batch numbers rejected and moved to the rejections.
    pub rejected: Vec<u64>,
    /// Results about batches no longer waiting for an answer (stale or repeated answers).
    pub ignored: usize,
    /// The answer said this leader's epoch is stale: pushing stops until a newer epoch.
    pub fenced: bool,
}

/// What a pull did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PullOutcome {
    /// Events added to the confirmed log.
    pub confirmed: usize,
    /// Of those, how many were ours, moved from the outbox.
    pub ours: usize,
    /// Events already confirmed here (overlapping or repeated pulls).
    pub overlapping: usize,
    /// Rejections retracted because the server has their events after all.
    pub retracted: usize,
}

/// Counters for tests, logs and the app's sync status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Batches appended locally.
    pub appended: u64,
    /// Batches put into push requests (retries count again).
    pub pushed: u64,
    /// Batches acknowledged by a push answer.
    pub acknowledged: u64,
    /// Batches rejected.
    pub rejected: u64,
    /// Push results ignored as stale.
    pub stale_results: u64,
    /// Events confirmed by pulls.
    pub confirmed: u64,
    /// Pulled events that were already confirmed.
    pub overlapping: u64,
    /// Rejections retracted by the log.
    pub retracted: u64,
}

/// What a client must persist to resume after a reload: the rest is derived from it. The outbox
/// batches, their numbers and the next number are what make a retry resend the same batches.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientParts {
    /// The client id.
    pub client: String,
    /// The leader epoch.
    pub epoch: u64,
    /// The number the next appended batch gets.
    pub next_batch: u64,
    /// The confirmed log, dense from offset 1.
    pub confirmed: Vec<Event>,
    /// The waiting batches, oldest first.
    pub outbox: Vec<OutboxBatch>,
    /// Rejections not yet dismissed.
    pub rejections: Vec<Rejection>,
}

/// The sync client of one device (one client id); see the module docs for its invariants.
#[derive(Debug, Clone)]
pub struct Client {
    client: String,
    epoch: u64,
    fenced: bool,
    ids: IdGenerator,
    limits: Limits,
    confirmed: Vec<Event>,
    confirmed_versions: HashMap<String, u64>,
    outbox: VecDeque<OutboxBatch>,
    /// Outbox event id → its batch number.
    pending: HashMap<EventId, u64>,
    /// Versions of confirmed ⊕ outbox, for the streams the outbox touches.
    outbox_versions: HashMap<String, u64>,
    next_batch: u64,
    known_head: u64,
    rejections: Vec<Rejection>,
    rebases: u64,
    stats: ClientStats,
}

impl Client {
    /// A client with an empty log: its id, its sync leader's epoch, and a random seed for ids.
    pub fn new(client: impl Into<String>, epoch: u64, seed: u64) -> Self {
        Client {
            client: client.into(),
            epoch,
            fenced: false,
            ids: IdGenerator::new(seed),
            limits: Limits::default(),
            confirmed: Vec::new(),
            confirmed_versions: HashMap::new(),
            outbox: VecDeque::new(),
            pending: HashMap::new(),
            outbox_versions: HashMap::new(),
            next_batch: 1,
            known_head: 0,
            rejections: Vec::new(),
            rebases: 0,
            stats: ClientStats::default(),
        }
    }

    /// A client resumed from persisted parts, with a fresh random `seed` for ids.
    pub fn restore(parts: ClientParts, seed: u64) -> Result<Self, SyncError> {
        check_parts(&parts)?;
        let mut c = Client::new(parts.client, parts.epoch, seed);
        c.next_batch = parts.next_batch;
        for e in &parts.confirmed {
            c.confirmed_versions.insert(e.stream.clone(), e.version);
        }
        c.confirmed = parts.confirmed;
        c.known_head = c.cursor();
        for b in &parts.outbox {
            c.pending.extend(b.events.iter().map(|e| (e.id, b.batch)));
        }
        c.outbox = parts.outbox.into();
        c.rejections = parts.rejections;
        c.restamp();
        Ok(c)
    }

    /// A copy of what must be persisted (the browser writes it as it changes, not whole).
    pub fn to_parts(&self) -> ClientParts {
        ClientParts {
            client: self.client.clone(),
            epoch: self.epoch,
            next_batch: self.next_batch,
            confirmed: self.confirmed.clone(),
            outbox: self.outbox.iter().cloned().collect(),
            rejections: self.rejections.clone(),
        }
    }

    /// The client id.
    pub fn id(&self) -> &str {
        &self.client
    }

    /// The confirmed log: the server's log up to [`Client::cursor`].
    pub fn confirmed(&self) -> &[Event] {
        &self.confirmed
    }

    /// The outbox, oldest batch first.
    pub fn outbox(&self) -> impl Iterator<Item = &OutboxBatch> {
        self.outbox.iter()
    }

    /// The outbox's events in local order, as the tables show them.
    pub fn outbox_events(&self) -> impl Iterator<Item = &Event> {
        self.outbox.iter().flat_map(|b| &b.events)
    }

    /// How many events wait in the outbox.
    pub fn outbox_len(&self) -> usize {
        self.outbox.iter().map(|b| b.events.len()).sum()
    }

    /// Rejected batches not yet dismissed, oldest first.
    pub fn rejections(&self) -> &[Rejection] {
        &self.rejections
    }

    /// Forgets the rejection of batch `batch`; false if there is none.
    pub fn dismiss_rejection(&mut self, batch: u64) -> bool {
        let before = self.rejections.len();
        self.rejections.retain(|r| r.batch != batch);
        self.rejections.len() != before
    }

    /// The last confirmed offset: pull after this.
    pub fn cursor(&self) -> u64 {
        self.confirmed.len() as u64
    }

    /// Whether the server is known to have events past the cursor (e.g. ours, acknowledged).
    pub fn needs_pull(&self) -> bool {
        self.known_head > self.cursor()
    }

    /// The highest server head any answer has shown.
    pub fn known_head(&self) -> u64 {
        self.known_head
    }

    /// The stream's version as the app sees it: confirmed ⊕ outbox.
    pub fn version(&self, stream: &str) -> u64 {
        self.outbox_versions
            .get(stream)
            .or_else(|| self.confirmed_versions.get(stream))
            .copied()
            .unwrap_or(0)
    }

    /// The leader epoch pushes carry.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Whether the server has refused this leader's epoch; pushing waits for a newer one.
    pub fn is_fenced(&self) -> bool {
        self.fenced
    }

    /// Takes over sync leadership with `epoch`; an epoch above the current one lifts a fence.
    pub fn set_epoch(&mut self, epoch: u64) {
        if epoch > self.epoch {
            self.fenced = false;
        }
        self.epoch = self.epoch.max(epoch);
    }

    /// Bumped whenever outbox events move or leave (not when one is appended): overlays on the
    /// confirmed state must then be recomputed.
    pub fn rebases(&self) -> u64 {
        self.rebases
    }

    /// The counters.
    pub fn stats(&self) -> ClientStats {
        self.stats
    }

    /// Appends a batch atomically to the outbox at time `now_ms`, checking its expected versions
    /// against confirmed ⊕ outbox. Returns the events with provisional `seq`s and versions.
    pub fn append(&mut self, batch: &Batch, now_ms: u64) -> Result<Vec<Event>, AppendError> {
        self.check_batch(batch)?;
        let mut versions: HashMap<String, u64> = batch
            .streams()
            .into_iter()
            .map(|s| (s.to_owned(), self.version(s)))
            .collect();
        let mut head = self.view_head();
        let mut stamp = Stamp {
            time: now_ms,
            origin: &self.client,
            ids: &mut self.ids,
        };
        let events = assign(batch, &mut head, &mut versions, &mut stamp)?;

        let number = self.next_batch;
        self.next_batch += 1;
        self.outbox_versions.extend(versions);
        self.pending.extend(events.iter().map(|e| (e.id, number)));
        self.outbox.push_back(OutboxBatch {
            batch: number,
            events: events.clone(),
            expected: batch.expected.iter().cloned().collect(),
            acknowledged: false,
        });
        self.stats.appended += 1;
        Ok(events)
    }

    /// The server refuses these whole; refusing them here keeps them out of the tables.
    fn check_batch(&self, batch: &Batch) -> Result<(), AppendError> {
        if batch.events.is_empty() {
            return Err(AppendError::InvalidArgument(
                "a batch needs at least one event".into(),
            ));
        }
        check_push_batch(batch, &self.client, DEFAULT_PUSH_BYTES)?;
        batch.validate(&self.limits)
    }

    /// The last position the app sees: the confirmed head plus the outbox.
    fn view_head(&self) -> u64 {
        self.outbox_events().last().map_or(self.cursor(), |e| e.seq)
    }

    /// The oldest batches the server has not acknowledged, up to `max_batches`, as a push.
    /// `None` when there is nothing to push or this leader is fenced. The same batches come
    /// back until an answer acknowledges or rejects them.
    pub fn next_push(&mut self, max_batches: usize) -> Option<PushRequest> {
        if self.fenced {
            return None;
        }
        let batches: Vec<PushBatch> = self
            .outbox
            .iter()
            .filter(|b| !b.acknowledged)
            .take(max_batches)
            .map(|b| self.push_batch(b))
            .collect();
        if batches.is_empty() {
            return None;
        }
        self.stats.pushed += batches.len() as u64;
        Some(PushRequest {
            protocol: PROTOCOL_VERSION,
            batches,
        })
    }

    fn push_batch(&self, b: &OutboxBatch) -> PushBatch {
        let events = b
            .events
            .iter()
            .map(|e| PushEvent {
                id: e.id,
                stream: e.stream.clone(),
                event_type: e.event_type.clone(),
                data: e.data.clone(),
                meta: e.meta.clone(),
                time: e.time,
                // Provisional versions move between retries; leaving them out keeps every
                // retry byte for byte the same batch (the server ignores them anyway).
                version: None,
            })
            .collect();
        PushBatch {
            client: self.client.clone(),
            epoch: self.epoch,
            batch: b.batch,
            events,
            expected: b.expected.clone(),
        }
    }

    /// Applies the server's answer to `request` (the push it answers, as sent). Answers may be
    /// late or repeated: one about a batch that is no longer waiting is ignored.
    pub fn on_push_response(
        &mut self,
        request: &PushRequest,
        response: &PushResponse,
    ) -> Result<PushOutcome, SyncError> {
        if response.protocol != PROTOCOL_VERSION {
            return Err(SyncError::Protocol(response.protocol));
        }
        check_fits(&self.client, request, response)?;
        self.known_head = self.known_head.max(response.head);
        let mut out = PushOutcome::default();
        for (sent, result) in request.batches.iter().zip(&response.results) {
            self.on_batch_result(sent, result, &mut out);
        }
        if !out.rejected.is_empty() {
            self.restamp();
        }
        self.stats.acknowledged += out.acknowledged.len() as u64;
        self.stats.rejected += out.rejected.len() as u64;
        self.stats.stale_results += out.ignored as u64;
        Ok(out)
    }

    fn on_batch_result(&mut self, sent: &PushBatch, result: &BatchResult, out: &mut PushOutcome) {
        let Some(i) = self.waiting(sent.batch) else {
            out.ignored += 1;
            return;
        };
        match result {
            BatchResult::Accepted { .. } | BatchResult::Duplicate { .. } => {
                self.outbox[i].acknowledged = true;
                out.acknowledged.push(sent.batch);
            }
            BatchResult::Rejected {
                reason: RejectReason::StaleEpoch,
                ..
            } => {
                // Only a leader with a newer epoch may push; the batch is still ours to send.
                if sent.epoch >= self.epoch {
                    self.fenced = true;
                    out.fenced = true;
                } else {
                    out.ignored += 1;
                }
            }
            BatchResult::Rejected {
                reason,
                message,
                details,
            } => {
                let b = self.outbox.remove(i).expect("index from waiting()");
                for e in &b.events {
                    self.pending.remove(&e.id);
                }
                self.rejections.push(Rejection {
                    batch: b.batch,
                    events: b.events,
                    expected: b.expected,
                    reason: *reason,
                    message: message.clone(),
                    details: details.clone(),
                });
                out.rejected.push(sent.batch);
            }
        }
    }

    /// The outbox index of batch `number` if it still waits for an answer.
    fn waiting(&self, number: u64) -> Option<usize> {
        self.outbox
            .iter()
            .position(|b| b.batch == number && !b.acknowledged)
    }

    /// Adds pulled events to the confirmed log in offset order. Events already confirmed are
    /// skipped; ours leave the outbox; a gap or a different event at a confirmed offset is
    /// refused with nothing changed.
    pub fn on_pull(&mut self, pull: &PullResponse) -> Result<PullOutcome, SyncError> {
        if pull.protocol != PROTOCOL_VERSION {
            return Err(SyncError::Protocol(pull.protocol));
        }
        let new = self.check_pull(pull)?;
        self.known_head = self.known_head.max(pull.head);
        let mut out = PullOutcome {
            overlapping: pull.events.len() - new,
            ..PullOutcome::default()
        };
        for pulled in &pull.events[pull.events.len() - new..] {
            self.confirm(Event::from(pulled.clone()), &mut out);
        }
        if new > 0 {
            self.outbox.retain(|b| !b.events.is_empty());
            self.restamp();
        }
        self.stats.confirmed += out.confirmed as u64;
        self.stats.overlapping += out.overlapping as u64;
        self.stats.retracted += out.retracted as u64;
        Ok(out)
    }

    /// Checks the pull fits after the confirmed log; returns how many of its events are new.
    fn check_pull(&self, pull: &PullResponse) -> Result<usize, SyncError> {
        let head = self.cursor();
        for pair in pull.events.windows(2) {
            if pair[1].offset != pair[0].offset + 1 {
                return Err(SyncError::Disordered(pair[1].offset));
            }
        }
        let mut new = 0;
        for p in &pull.events {
            if p.offset == 0 {
                return Err(SyncError::Disordered(0));
            }
            if p.offset > head {
                new += 1;
                continue;
            }
            let ours = self.confirmed[p.offset as usize - 1].id;
            if ours != p.id {
                return Err(SyncError::Diverged {
                    offset: p.offset,
                    ours,
                    theirs: p.id,
                });
            }
        }
        match pull.events.iter().find(|p| p.offset > head) {
            Some(p) if p.offset != head + 1 => Err(SyncError::Gap {
                head,
                first: p.offset,
            }),
            _ => Ok(new),
        }
    }

    /// Appends one server event to the confirmed log, taking it out of the outbox or the
    /// rejections if it is ours.
    fn confirm(&mut self, event: Event, out: &mut PullOutcome) {
        if let Some(number) = self.pending.remove(&event.id) {
            if let Some(b) = self.outbox.iter_mut().find(|b| b.batch == number) {
                b.events.retain(|e| e.id != event.id);
                // The server stores batches whole: the rest of it is there too.
                b.acknowledged = true;
            }
            out.ours += 1;
        } else if let Some(i) = self
            .rejections
            .iter()
            .position(|r| r.events.iter().any(|e| e.id == event.id))
        {
            self.rejections.remove(i);
            out.retracted += 1;
        }
        self.confirmed_versions
            .insert(event.stream.clone(), event.version);
        self.confirmed.push(event);
        out.confirmed += 1;
    }

    /// Gives outbox events their provisional places after the confirmed head again.
    fn restamp(&mut self) {
        let Client {
            outbox,
            confirmed,
            confirmed_versions,
            outbox_versions,
            ..
        } = self;
        outbox_versions.clear();
        let mut seq = confirmed.len() as u64;
        for e in outbox.iter_mut().flat_map(|b| b.events.iter_mut()) {
            seq += 1;
            e.seq = seq;
            let version = match outbox_versions.get_mut(&e.stream) {
                Some(v) => v,
                None => {
                    let base = confirmed_versions.get(&e.stream).copied().unwrap_or(0);
                    outbox_versions.entry(e.stream.clone()).or_insert(base)
                }
            };
            *version += 1;
            e.version = *version;
        }
        self.rebases += 1;
    }
}

/// The invariants [`Client::restore`] relies on: a dense confirmed log, and outbox batches that
/// are not empty, are numbered below `next_batch` in increasing order, and hold no confirmed event.
fn check_parts(p: &ClientParts) -> Result<(), SyncError> {
    let bad = |m: String| Err(SyncError::Inconsistent(m));
    for (i, e) in p.confirmed.iter().enumerate() {
        let offset = i as u64 + 1;
        if e.seq != offset || e.offset != Some(offset) {
            return bad(format!(
                "confirmed event {} is not at offset {offset}",
                e.id
            ));
        }
    }
    let confirmed: HashSet<EventId> = p.confirmed.iter().map(|e| e.id).collect();
    let mut last = 0;
    for b in &p.outbox {
        if b.batch <= last || b.batch >= p.next_batch || b.events.is_empty() {
            return bad(format!("outbox batch {} is out of order or empty", b.batch));
        }
        if let Some(e) = b.events.iter().find(|e| confirmed.contains(&e.id)) {
            return bad(format!(
                "event {} is both confirmed and in the outbox",
                e.id
            ));
        }
        last = b.batch;
    }
    Ok(())
}

/// A push answer must have one result per batch of the request it answers, all ours.
fn check_fits(
    client: &str,
    request: &PushRequest,
    response: &PushResponse,
) -> Result<(), SyncError> {
    if request.batches.len() != response.results.len() {
        return Err(SyncError::Mismatch(format!(
            "{} results for {} batches",
            response.results.len(),
            request.batches.len()
        )));
    }
    if let Some(b) = request.batches.iter().find(|b| b.client != client) {
        return Err(SyncError::Mismatch(format!(
            "batch {} was pushed by client {:?}",
            b.batch, b.client
        )));
    }
    for (b, r) in request.batches.iter().zip(&response.results) {
        if !matches!(r, BatchResult::Rejected { .. }) && r.offsets().len() != b.events.len() {
            return Err(SyncError::Mismatch(format!(
                "batch {} has {} events but {} offsets",
                b.batch,
                b.events.len(),
                r.offsets().len()
            )));
        }
    }
    Ok(())
}
