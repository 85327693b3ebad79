//! The sync server's commit rules, written once over a storage trait.
//!
//! A pushed batch is, in this order: checked by the validation rules; answered `duplicate` when
//! its `(client, batch number)` or all of its event ids are already stored, `partly_known` when
//! only some are; refused when its leader epoch is stale, when an expected version names a
//! stream an earlier refused batch of the same client in the same push touched (`depends`: the
//! client counted those events), or when an expected version does not hold; otherwise given
//! the next dense offsets and its streams' next versions and written. A batch's epoch is
//! recorded whatever becomes of it (unless it is stale), so no older leader gets a batch in
//! after a newer one was heard from.
//! The in-memory store here drives simulations; the server's SQLite and PostgreSQL stores run
//! the same [`commit`] inside one database transaction per push.

use std::collections::{HashMap, HashSet};

use serde_json::json;

use crate::append::{assign, AppendError, Batch, Stamp};
use crate::event::Event;
use crate::id::{EventId, IdGenerator};
use crate::protocol::{BatchResult, PushBatch, RejectReason};
use crate::validate::Limits;
use crate::version::ExpectedVersion;

/// The most events one batch may hold.
pub const MAX_BATCH_EVENTS: usize = 10_000;

/// Where an accepted batch went: its offsets are `first..first + count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchRecord {
    /// The offset of its first event.
    pub first: u64,
    /// How many events it has.
    pub count: u64,
}

/// A stored event's place: its offset and final stream version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placed {
    /// The event's log offset.
    pub offset: u64,
    /// The event's version in its stream.
    pub version: u64,
}

/// One accepted batch, ready to be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit<'a> {
    /// The appending client.
    pub client: &'a str,
    /// The batch's leader epoch, now the client's current one.
    pub epoch: u64,
    /// The client's batch number.
    pub batch: u64,
    /// The events with `offset` (and `seq`, equal to it) and final `version` set.
    pub events: Vec<Event>,
    /// The log's head after the batch.
    pub head: u64,
    /// The new version of each stream of the batch.
    pub versions: Vec<(String, u64)>,
}

/// One log's storage as seen from inside a write transaction. Every read sees the writes of
/// earlier calls to [`LogStore::write`] in the same transaction, and no one else appends to
/// the log until it ends.
pub trait LogStore {
    /// A storage failure: the whole push fails and nothing of it is kept.
    type Error;

    /// The last offset, 0 for an empty log.
    fn head(&mut self) -> Result<u64, Self::Error>;
    /// The highest leader epoch seen from `client`, 0 if none.
    fn client_epoch(&mut self, client: &str) -> Result<u64, Self::Error>;
    /// The credential the client id is bound to (see [`claim_clients`]), if any.
    fn client_owner(&mut self, client: &str) -> Result<Option<String>, Self::Error>;
    /// Records `epoch` as the client's, if it is higher than the one recorded.
    fn raise_epoch(&mut self, client: &str, epoch: u64) -> Result<(), Self::Error>;
    /// Binds an unbound client id to `owner`.
    fn bind_client(&mut self, client: &str, owner: &str) -> Result<(), Self::Error>;
    /// Where the client's batch `batch` went, if it was accepted.
    fn batch_record(
        &mut self,
        client: &str,
        batch: u64,
    ) -> Result<Option<BatchRecord>, Self::Error>;
    /// The ids and versions of the events at offsets `first..first + count`, in order.
    fn events_at(&mut self, first: u64, count: u64) -> Result<Vec<(EventId, u64)>, Self::Error>;
    /// For each id, where it is stored, if it is.
    fn find_ids(&mut self, ids: &[EventId]) -> Result<Vec<Option<Placed>>, Self::Error>;
    /// The stream's version, 0 if it has no events.
    fn stream_version(&mut self, stream: &str) -> Result<u64, Self::Error>;
    /// The versions of several streams, in order; stores override this to ask once.
    fn stream_versions(&mut self, streams: &[&str]) -> Result<Vec<u64>, Self::Error> {
        streams.iter().map(|s| self.stream_version(s)).collect()
    }
    /// Writes an accepted batch.
    fn write(&mut self, commit: &Commit<'_>) -> Result<(), Self::Error>;
}

fn rejected(
    reason: RejectReason,
    message: impl Into<String>,
    details: serde_json::Value,
) -> BatchResult {
    BatchResult::Rejected {
        reason,
        message: message.into(),
        details: details.to_string(),
    }
}

/// Checks what needs no storage: the validation rules, the batch's size and repeated ids.
fn check_shape(batch: &PushBatch, limits: &Limits) -> Result<Batch, BatchResult> {
    let invalid_batch = |m: String| rejected(RejectReason::InvalidBatch, m, json!({}));
    if batch.events.is_empty() {
        return Err(invalid_batch("the batch has no events".into()));
    }
    if batch.events.len() > MAX_BATCH_EVENTS {
        return Err(invalid_batch(format!(
            "the batch has {} events, over the limit of {MAX_BATCH_EVENTS}",
            batch.events.len()
        )));
    }
    let mut seen = HashSet::with_capacity(batch.events.len());
    if let Some(e) = batch.events.iter().find(|e| !seen.insert(e.id)) {
        return Err(invalid_batch(format!("event id {} appears twice", e.id)));
    }
    let core = Batch {
        events: batch.events.iter().map(|e| e.to_new_event()).collect(),
        expected: batch
            .expected
            .iter()
            .map(|(s, v)| (s.clone(), *v))
            .collect(),
    };
    match core.validate(limits) {
        Ok(()) => Ok(core),
        Err(AppendError::Invalid(e)) => Err(rejected(
            RejectReason::InvalidEvent,
            e.to_string(),
            json!({"index": e.index, "field": e.field, "reason": e.reason}),
        )),
        Err(e) => Err(invalid_batch(e.to_string())),
    }
}

/// Commits one push's batches into `store` in order, by the rules above; says what became of
/// each.
pub fn commit_all<S: LogStore>(
    store: &mut S,
    batches: &[PushBatch],
    limits: &Limits,
) -> Result<Vec<BatchResult>, S::Error> {
    // Per client: the streams its refused batches touched.
    let mut refused: HashMap<&str, HashSet<&str>> = HashMap::new();
    let mut out = Vec::with_capacity(batches.len());
    for b in batches {
        let streams = refused.entry(&b.client).or_default();
        let result = commit_after(store, b, limits, streams)?;
        if matches!(result, BatchResult::Rejected { .. })
            && !crate::mutants::on(crate::mutants::Mutant::ServerNoDepends)
        {
            streams.extend(b.events.iter().map(|e| e.stream.as_str()));
        }
        out.push(result);
    }
    Ok(out)
}

/// Commits one batch into `store` by the rules above and says what became of it.
pub fn commit<S: LogStore>(
    store: &mut S,
    batch: &PushBatch,
    limits: &Limits,
) -> Result<BatchResult, S::Error> {
    commit_after(store, batch, limits, &HashSet::new())
}

/// [`commit`] after earlier batches of the client in the same push touching `refused` were
/// refused.
fn commit_after<S: LogStore>(
    store: &mut S,
    batch: &PushBatch,
    limits: &Limits,
    refused: &HashSet<&str>,
) -> Result<BatchResult, S::Error> {
    let current = store.client_epoch(&batch.client)?;
    let result = judge(store, batch, limits, refused, current)?;
    let stale = matches!(
        result,
        BatchResult::Rejected {
            reason: RejectReason::StaleEpoch,
            ..
        }
    );
    if batch.epoch > current && !stale && !matches!(result, BatchResult::Accepted { .. }) {
        store.raise_epoch(&batch.client, batch.epoch)?;
    }
    Ok(result)
}

fn judge<S: LogStore>(
    store: &mut S,
    batch: &PushBatch,
    limits: &Limits,
    refused: &HashSet<&str>,
    current: u64,
) -> Result<BatchResult, S::Error> {
    let core = match check_shape(batch, limits) {
        Ok(core) => core,
        Err(result) => return Ok(result),
    };
    let ids: Vec<EventId> = batch.events.iter().map(|e| e.id).collect();

    if let Some(record) = store.batch_record(&batch.client, batch.batch)? {
        let stored = store.events_at(record.first, record.count)?;
        if stored.iter().map(|(id, _)| *id).eq(ids.iter().copied()) {
            return Ok(BatchResult::Duplicate {
                offsets: (record.first..record.first + record.count).collect(),
                versions: stored.iter().map(|(_, v)| *v).collect(),
            });
        }
        return Ok(rejected(
            RejectReason::PartlyKnown,
            format!(
                "batch {} of client {:?} is already stored with other events",
                batch.batch, batch.client
            ),
            json!({"first_offset": record.first, "count": record.count}),
        ));
    }

    let found = store.find_ids(&ids)?;
    let known = found.iter().filter(|p| p.is_some()).count();
    if known == ids.len() {
        let placed = found.into_iter().flatten();
        let (offsets, versions) = placed.map(|p| (p.offset, p.version)).unzip();
        return Ok(BatchResult::Duplicate { offsets, versions });
    }
    if known > 0 {
        let index = found.iter().position(Option::is_some).unwrap_or(0);
        return Ok(rejected(
            RejectReason::PartlyKnown,
            format!(
                "{known} of the batch's {} events are already stored (the first is event {index})",
                ids.len()
            ),
            json!({"known": known, "index": index}),
        ));
    }

    if batch.epoch < current {
        return Ok(rejected(
            RejectReason::StaleEpoch,
            format!(
                "epoch {} is older than epoch {current} already seen from client {:?}",
                batch.epoch, batch.client
            ),
            json!({"epoch": current}),
        ));
    }

    let counted = core.expected.iter().find(|(s, v)| {
        !matches!(v, ExpectedVersion::Any | ExpectedVersion::NoStream)
            && refused.contains(s.as_str())
    });
    if let Some((stream, _)) = counted {
        return Ok(rejected(
            RejectReason::Depends,
            format!(
                "the expected version of stream {stream:?} counted on an earlier batch of this push that was refused"
            ),
            json!({"stream": stream}),
        ));
    }

    let streams = core.streams();
    let current = store.stream_versions(&streams)?;
    let mut versions: HashMap<String, u64> =
        streams.iter().map(|s| s.to_string()).zip(current).collect();
    let mut head = store.head()?;
    // `assign` is the one place versions and positions are given; the ids it would make are
    // replaced by the client's, which are the events' identity.
    let mut unused_ids = IdGenerator::new(0);
    let mut stamp = Stamp {
        time: 0,
        origin: &batch.client,
        ids: &mut unused_ids,
    };
    let mut events = match assign(&core, &mut head, &mut versions, &mut stamp) {
        Ok(events) => events,
        Err(c) => {
            return Ok(rejected(
                RejectReason::Conflict,
                c.to_string(),
                json!({"stream": c.stream, "expected": c.expected, "actual": c.actual}),
            ))
        }
    };
    for (e, sent) in events.iter_mut().zip(&batch.events) {
        e.id = sent.id;
        e.time = sent.time;
        e.offset = Some(e.seq);
    }
    let new_versions = streams
        .iter()
        .map(|s| (s.to_string(), versions[*s]))
        .collect();
    let commit = Commit {
        client: &batch.client,
        epoch: batch.epoch,
        batch: batch.batch,
        events,
        head,
        versions: new_versions,
    };
    store.write(&commit)?;
    Ok(BatchResult::Accepted {
        offsets: commit.events.iter().map(|e| e.seq).collect(),
        versions: commit.events.iter().map(|e| e.version).collect(),
    })
}

/// Binds the client ids a push names to `owner`, the credential pushing it, unless one of them
/// is bound to another credential: then nothing is bound and that client id is returned, and
/// the push must be refused whole. A client id is public (it is every event's `origin`), so
/// without this a writer could push as another device: fence it with a huge epoch, or take its
/// batch numbers.
pub fn claim_clients<S: LogStore>(
    store: &mut S,
    batches: &[PushBatch],
    owner: &str,
) -> Result<Option<String>, S::Error> {
    let mut unbound: Vec<&str> = Vec::new();
    let mut seen = HashSet::new();
    for b in batches {
        if !seen.insert(b.client.as_str()) {
            continue;
        }
        match store.client_owner(&b.client)? {
            Some(o) if o == owner => {}
            Some(_) => return Ok(Some(b.client.clone())),
            None => unbound.push(&b.client),
        }
    }
    for client in unbound {
        store.bind_client(client, owner)?;
    }
    Ok(None)
}

/// A server log in memory: the same rules as the databases, deterministic and synchronous.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    events: Vec<Event>,
    ids: HashMap<EventId, u64>,
    batches: HashMap<(String, u64), BatchRecord>,
    epochs: HashMap<String, u64>,
    owners: HashMap<String, String>,
    versions: HashMap<String, u64>,
}

impl MemoryStore {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// Commits each batch in order, as one push does.
    pub fn push(&mut self, batches: &[PushBatch], limits: &Limits) -> Vec<BatchResult> {
        match commit_all(self, batches, limits) {
            Ok(r) => r,
            Err(never) => match never {},
        }
    }

    /// Up to `limit` events after offset `after`.
    pub fn read(&self, after: u64, limit: usize) -> &[Event] {
        let start = (after as usize).min(self.events.len());
        let end = start.saturating_add(limit).min(self.events.len());
        &self.events[start..end]
    }

    /// The last offset, 0 when empty.
    pub fn last_offset(&self) -> u64 {
        self.events.len() as u64
    }
}

impl LogStore for MemoryStore {
    type Error = std::convert::Infallible;

    fn head(&mut self) -> Result<u64, Self::Error> {
        Ok(self.events.len() as u64)
    }

    fn client_epoch(&mut self, client: &str) -> Result<u64, Self::Error> {
        Ok(self.epochs.get(client).copied().unwrap_or(0))
    }

    fn raise_epoch(&mut self, client: &str, epoch: u64) -> Result<(), Self::Error> {
        let e = self.epochs.entry(client.to_owned()).or_insert(0);
        *e = (*e).max(epoch);
        Ok(())
    }

    fn client_owner(&mut self, client: &str) -> Result<Option<String>, Self::Error> {
        Ok(self.owners.get(client).cloned())
    }

    fn bind_client(&mut self, client: &str, owner: &str) -> Result<(), Self::Error> {
        self.owners.insert(client.to_owned(), owner.to_owned());
        Ok(())
    }

    fn batch_record(
        &mut self,
        client: &str,
        batch: u64,
    ) -> Result<Option<BatchRecord>, Self::Error> {
        Ok(self.batches.get(&(client.to_owned(), batch)).copied())
    }

    fn events_at(&mut self, first: u64, count: u64) -> Result<Vec<(EventId, u64)>, Self::Error> {
        Ok(self
            .read(first.saturating_sub(1), count as usize)
            .iter()
            .map(|e| (e.id, e.version))
            .collect())
    }

    fn find_ids(&mut self, ids: &[EventId]) -> Result<Vec<Option<Placed>>, Self::Error> {
        Ok(ids
            .iter()
            .map(|id| {
                self.ids.get(id).map(|&offset| Placed {
                    offset,
                    version: self.events[offset as usize - 1].version,
                })
            })
            .collect())
    }

    fn stream_version(&mut self, stream: &str) -> Result<u64, Self::Error> {
        Ok(self.versions.get(stream).copied().unwrap_or(0))
    }

    fn write(&mut self, c: &Commit<'_>) -> Result<(), Self::Error> {
        for e in &c.events {
            self.ids.insert(e.id, e.seq);
        }
        self.events.extend(c.events.iter().cloned());
        if let (Some(first), count) = (c.events.first(), c.events.len() as u64) {
            self.batches.insert(
                (c.client.to_owned(), c.batch),
                BatchRecord {
                    first: first.seq,
                    count,
                },
            );
        }
        let epoch = self.epochs.entry(c.client.to_owned()).or_insert(0);
        *epoch = (*epoch).max(c.epoch);
        for (s, v) in &c.versions {
            self.versions.insert(s.clone(), *v);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    use crate::protocol::PushEvent;
    use crate::version::ExpectedVersion;

    fn json_of(text: &str) -> serde_json::Value {
        serde_json::from_str(text).unwrap()
    }

    fn event(n: u128, stream: &str) -> PushEvent {
        PushEvent {
            id: EventId(n),
            stream: stream.into(),
            event_type: "Deposited".into(),
            data: format!("{{\"n\":{n}}}"),
            meta: None,
            time: 1_000 + n as u64,
            version: None,
        }
    }

    fn batch(client: &str, number: u64, events: Vec<PushEvent>) -> PushBatch {
        PushBatch {
            client: client.into(),
            epoch: 1,
            batch: number,
            events,
            expected: BTreeMap::new(),
        }
    }

    fn push(log: &mut MemoryStore, b: PushBatch) -> BatchResult {
        log.push(&[b], &Limits::default()).remove(0)
    }

    fn reason(r: &BatchResult) -> Option<RejectReason> {
        match r {
            BatchResult::Rejected { reason, .. } => Some(*reason),
            _ => None,
        }
    }

    #[test]
    fn given_an_empty_log_when_batches_arrive_then_offsets_are_dense_and_versions_final() {
        let mut log = MemoryStore::new();
        let a = push(&mut log, batch("c1", 1, vec![event(1, "a"), event(2, "b")]));
        let b = push(&mut log, batch("c2", 1, vec![event(3, "a")]));
        assert_eq!(
            a,
            BatchResult::Accepted {
                offsets: vec![1, 2],
                versions: vec![1, 1]
            }
        );
        assert_eq!(
            b,
            BatchResult::Accepted {
                offsets: vec![3],
                versions: vec![2]
            }
        );
        let e = &log.read(2, 10)[0];
        assert_eq!(
            (e.origin.as_str(), e.time, e.offset, e.id),
            ("c2", 1_003, Some(3), EventId(3))
        );
    }

    #[test]
    fn a_retried_batch_is_a_duplicate_with_its_first_offsets() {
        let mut log = MemoryStore::new();
        push(&mut log, batch("c", 1, vec![event(1, "a"), event(2, "a")]));
        push(&mut log, batch("d", 1, vec![event(3, "a")]));
        let again = push(&mut log, batch("c", 1, vec![event(1, "a"), event(2, "a")]));
        assert_eq!(
            again,
            BatchResult::Duplicate {
                offsets: vec![1, 2],
                versions: vec![1, 2]
            }
        );
        // Known by ids under another batch number: still a duplicate, nothing written.
        let rebatched = push(&mut log, batch("c", 9, vec![event(3, "a")]));
        assert_eq!(rebatched.offsets(), [3]);
        assert_eq!(log.last_offset(), 3);
    }

    #[test]
    fn a_partly_known_batch_is_rejected_and_later_batches_still_commit() {
        let mut log = MemoryStore::new();
        push(&mut log, batch("c", 1, vec![event(1, "a")]));
        let results = log.push(
            &[
                batch("c", 1, vec![event(2, "a")]),
                batch("c", 2, vec![event(1, "a"), event(5, "a")]),
                batch("c", 3, vec![event(6, "a")]),
            ],
            &Limits::default(),
        );
        assert_eq!(reason(&results[0]), Some(RejectReason::PartlyKnown));
        assert_eq!(reason(&results[1]), Some(RejectReason::PartlyKnown));
        assert_eq!(results[2].offsets(), [2]);
        assert_eq!(log.last_offset(), 2);
    }

    #[test]
    fn an_expectation_on_a_stream_an_earlier_refused_batch_touched_is_refused() {
        let mut log = MemoryStore::new();
        push(&mut log, batch("other", 1, vec![event(1, "a")]));
        // c opened "a" offline (refused: it exists) and then counted that event.
        let mut first = batch("c", 1, vec![event(2, "a")]);
        first.expected.insert("a".into(), ExpectedVersion::NoStream);
        let mut second = batch("c", 2, vec![event(3, "a")]);
        second
            .expected
            .insert("a".into(), ExpectedVersion::Exact(1));
        let mut unrelated = batch("c", 3, vec![event(4, "b")]);
        unrelated
            .expected
            .insert("b".into(), ExpectedVersion::NoStream);
        let loose = batch("c", 4, vec![event(5, "a")]);
        let mut others = batch("d", 1, vec![event(6, "a")]);
        others
            .expected
            .insert("a".into(), ExpectedVersion::Exact(1));
        let results = log.push(
            &[first, second, unrelated, loose, others],
            &Limits::default(),
        );
        assert_eq!(reason(&results[0]), Some(RejectReason::Conflict));
        assert_eq!(reason(&results[1]), Some(RejectReason::Depends));
        assert_eq!(results[2].offsets(), [2], "another stream");
        assert_eq!(results[3].offsets(), [3], "no expectation");
        assert_eq!(
            reason(&results[4]),
            Some(RejectReason::Conflict),
            "another client is judged on its own"
        );
    }

    #[test]
    fn an_epoch_is_recorded_from_any_batch_that_carries_it() {
        let mut log = MemoryStore::new();
        push(&mut log, batch("c", 1, vec![event(1, "a")]));
        // The new leader's first batches: a duplicate, then a conflict.
        let mut dup = batch("c", 1, vec![event(1, "a")]);
        dup.epoch = 2;
        assert!(matches!(push(&mut log, dup), BatchResult::Duplicate { .. }));
        let mut conflict = batch("c", 2, vec![event(2, "a")]);
        conflict.epoch = 3;
        conflict
            .expected
            .insert("a".into(), ExpectedVersion::NoStream);
        assert_eq!(
            reason(&push(&mut log, conflict)),
            Some(RejectReason::Conflict)
        );
        assert_eq!(log.client_epoch("c"), Ok(3));
        let mut old = batch("c", 3, vec![event(3, "a")]);
        old.epoch = 2;
        assert_eq!(reason(&push(&mut log, old)), Some(RejectReason::StaleEpoch));
        assert_eq!(log.last_offset(), 1);
    }

    #[test]
    fn a_conflict_names_the_current_version_and_writes_nothing() {
        let mut log = MemoryStore::new();
        push(&mut log, batch("c", 1, vec![event(1, "a"), event(2, "a")]));
        let mut b = batch("c", 2, vec![event(3, "a"), event(4, "b")]);
        b.expected.insert("a".into(), ExpectedVersion::Exact(1));
        match push(&mut log, b) {
            BatchResult::Rejected {
                reason: RejectReason::Conflict,
                details,
                ..
            } => assert_eq!(json_of(&details)["actual"], 2),
            other => panic!("expected a conflict, got {other:?}"),
        }
        assert_eq!(log.last_offset(), 2);
        let mut b = batch("c", 3, vec![event(3, "a")]);
        b.expected.insert("a".into(), ExpectedVersion::Exact(2));
        assert_eq!(push(&mut log, b).offsets(), [3]);
    }

    #[test]
    fn invalid_events_and_malformed_batches_are_rejected_whole() {
        let mut log = MemoryStore::new();
        let mut bad = event(2, "a");
        bad.event_type = String::new();
        let r = push(&mut log, batch("c", 1, vec![event(1, "a"), bad]));
        match r {
            BatchResult::Rejected {
                reason: RejectReason::InvalidEvent,
                details,
                ..
            } => assert_eq!(
                (
                    json_of(&details)["index"].as_u64(),
                    json_of(&details)["field"].as_str()
                ),
                (Some(1), Some("type"))
            ),
            other => panic!("{other:?}"),
        }
        let r = push(&mut log, batch("c", 2, vec![event(1, "a"), event(1, "a")]));
        assert_eq!(reason(&r), Some(RejectReason::InvalidBatch));
        assert_eq!(
            reason(&push(&mut log, batch("c", 3, vec![]))),
            Some(RejectReason::InvalidBatch)
        );
        let mut big = event(3, "a");
        big.data = format!("\"{}\"", "x".repeat(1024 * 1024));
        assert_eq!(
            reason(&push(&mut log, batch("c", 4, vec![big]))),
            Some(RejectReason::InvalidEvent)
        );
        assert_eq!(log.last_offset(), 0);
    }

    #[test]
    fn a_client_id_belongs_to_the_credential_that_first_pushed_it() {
        let mut log = MemoryStore::new();
        let b = |client: &str| batch(client, 1, vec![event(1, "a")]);
        assert_eq!(claim_clients(&mut log, &[b("dev-a")], "alice"), Ok(None));
        assert_eq!(claim_clients(&mut log, &[b("dev-a")], "alice"), Ok(None));
        // Bob may not push as alice's device, and his own new id in the same push stays free.
        let both = [b("dev-b"), b("dev-a")];
        assert_eq!(
            claim_clients(&mut log, &both, "bob"),
            Ok(Some("dev-a".into()))
        );
        assert_eq!(log.client_owner("dev-b"), Ok(None));
        assert_eq!(claim_clients(&mut log, &[b("dev-b")], "bob"), Ok(None));
        assert_eq!(log.client_owner("dev-b"), Ok(Some("bob".into())));
    }

    #[test]
    fn a_stale_leader_epoch_is_refused() {
        let mut log = MemoryStore::new();
        let mut b = batch("c", 1, vec![event(1, "a")]);
        b.epoch = 3;
        push(&mut log, b);
        let mut old = batch("c", 2, vec![event(2, "a")]);
        old.epoch = 2;
        assert_eq!(reason(&push(&mut log, old)), Some(RejectReason::StaleEpoch));
        let mut other_client = batch("d", 1, vec![event(3, "a")]);
        other_client.epoch = 1;
        assert_eq!(push(&mut log, other_client).offsets(), [2]);
    }
}
