//! A synced log: the confirmed log in `segments` (each `seq` is its server offset), the outbox
//! in `outbox` (one record per waiting batch) and refused batches in `rejections`. Tables show
//! confirmed ⊕ outbox: the outbox is an overlay rolled back and applied again when the base
//! moves.
//!
//! The rules are `logfold_core::sync::Engine`'s; this file only does I/O. Every step (an
//! append, a push answer, a pull page, a dismissal) reads what the engine needs in one
//! IndexedDB transaction, lets the engine decide, and writes its `Writes` in that same
//! transaction; if it fails, the engine is read again from storage.
//!
//! Every tab keeps its own engine; `meta.outboxRev` changes with every write to the outbox, so
//! a tab reads the stores again only when another tab changed them. Only the sync leader
//! pushes and pulls, and each of its transactions checks `meta.epoch` first, so a leader that
//! was replaced (a frozen tab, thawed) changes nothing.

use std::collections::{BTreeMap, HashMap, HashSet};

use logfold_core::protocol::PushResponse;
use logfold_core::sync::{
    push_event_bytes, BatchState, Engine, Known, OutboxBatch, Push, Rejection, Stored, SyncError,
    Writes,
};
use logfold_core::{Event, EventId};

use super::*;

/// Events per outbox batch when a log used without sync moves its history to the outbox.
const MIGRATE_BATCH: usize = 1000;
/// Room left in a migrated batch's push body for its client id, numbers and punctuation.
const MIGRATE_SLACK: usize = 4096;
/// The stores a sync step reads or writes.
const STEP_STORES: [&str; 5] = ["segments", "streams", "meta", "outbox", "rejections"];

/// A tab's engine, and how much of its outbox the tables show.
#[derive(Default)]
pub(super) struct Mirror {
    engine: Option<Engine>,
    /// The `meta.outboxRev` the engine reflects (`u64::MAX`: unknown, read again).
    rev: u64,
    /// The leader epoch this tab pushes with.
    epoch: u64,
    /// The push sent and not yet answered.
    in_flight: Option<Push>,
    /// Outbox events folded into the tables' overlay, from the front.
    shown: usize,
    /// Whether the overlay still matches the outbox's front `shown` events.
    shown_valid: bool,
    /// Confirmed events after the tables' base that the overlay still holds: this client's
    /// own, confirmed in the order they were shown, so the tables did not change.
    lag: u64,
}

impl Mirror {
    /// An engine not read yet.
    pub(super) fn unread() -> Self {
        Mirror {
            rev: u64::MAX,
            ..Mirror::default()
        }
    }

    fn engine(&self) -> &Engine {
        self.engine.as_ref().expect("read in this step")
    }

    fn engine_mut(&mut self) -> &mut Engine {
        self.engine.as_mut().expect("read in this step")
    }

    fn pending(&self) -> usize {
        self.engine.as_ref().map_or(0, Engine::outbox_len)
    }
}

fn corrupt_record(store: &'static str, key: u64, reason: impl std::fmt::Display) -> Error {
    Error::CorruptRecord {
        store,
        key,
        reason: reason.to_string(),
    }
}

/// `meta.outboxCheck` for an outbox of these batch numbers: `[count, digest]`. Records are
/// decoded when read, so a damaged one shows; this makes a deleted one show too.
pub fn outbox_check(numbers: impl Iterator<Item = u64>) -> JsValue {
    let (mut count, mut digest) = (0u64, logfold_core::SetDigest::default());
    for n in numbers {
        count += 1;
        digest.toggle("", n);
    }
    Array::of2(&key(count), &key(digest.value())).into()
}

/// How many records the stored check says the outbox has, if it differs from `actual` (the
/// check made of the records there); `None` when they agree or no check was stored (a log
/// from before it).
pub(super) fn outbox_mismatch(stored: &JsValue, actual: &JsValue) -> Option<u64> {
    let stored = stored.dyn_ref::<Array>()?;
    let actual: &Array = actual.unchecked_ref();
    let same = (0..2).all(|i| stored.get(i).as_f64() == actual.get(i).as_f64());
    (!same).then(|| as_u64(&stored.get(0)))
}

fn protocol_error(message: impl Into<String>) -> Error {
    Error::Sync {
        code: "SYNC_PROTOCOL",
        message: message.into(),
    }
}

/// What the engine refused of a server message.
fn sync_error(e: SyncError) -> Error {
    match e {
        SyncError::Diverged { .. } => Error::Sync {
            code: "DIVERGED",
            message: e.to_string(),
        },
        SyncError::Inconsistent(reason) => Error::CorruptRecord {
            store: "outbox",
            key: 0,
            reason,
        },
        e => protocol_error(e.to_string()),
    }
}

fn fenced(epoch: u64, current: u64) -> Error {
    Error::Sync {
        code: "FENCED",
        message: format!(
            "this tab led sync as epoch {epoch}, but another tab has taken over (epoch {current}); it changes nothing"
        ),
    }
}

async fn get(store: &IdbObjectStore, k: &str) -> Result<JsValue, Error> {
    idb::request(&store.get(&k.into()).map_err(storage)?)
        .await
        .map_err(storage)
}

fn put(store: &IdbObjectStore, k: &str, v: u64) -> Result<(), Error> {
    store.put_with_key(&key(v), &k.into()).map_err(storage)?;
    Ok(())
}

fn bytes_value(bytes: &[u8]) -> JsValue {
    Uint8Array::from(bytes).buffer().into()
}

/// What a pull did, for the sync loop.
pub struct Pulled {
    /// Events added to the confirmed log.
    pub confirmed: u64,
    /// Of those, how many were this client's, moved from the outbox.
    pub ours: u64,
    /// The confirmed head now.
    pub head: u64,
    /// Rejections retracted: the server has their batches after all.
    pub retracted: Vec<u64>,
}

/// What a push answer did, for the sync loop.
pub struct Pushed {
    /// Batch numbers the server has.
    pub acknowledged: Vec<u64>,
    /// The rejections recorded, as JSON objects.
    pub rejected: Vec<String>,
    /// Rejections retracted by events confirmed from the answer.
    pub retracted: Vec<u64>,
    /// The server said a newer leader has pushed: this one must stop.
    pub fenced: bool,
}

/// A step's readwrite transaction, its completion, and its stores.
type Step = (
    web_sys::IdbTransaction,
    wasm_bindgen_futures::JsFuture,
    Stores,
);

/// The writer's turn, held by a sync step (see `Log::turn`).
struct Turn(Log);

impl Drop for Turn {
    fn drop(&mut self) {
        self.0.finish_writing();
        self.0.start_writer_if_queued();
    }
}

/// One step's object stores.
struct Stores {
    meta: IdbObjectStore,
    segments: IdbObjectStore,
    streams: IdbObjectStore,
    outbox: IdbObjectStore,
    rejections: IdbObjectStore,
}

impl Stores {
    fn of(tx: &web_sys::IdbTransaction) -> Result<Stores, Error> {
        let store = |name| tx.object_store(name).map_err(storage);
        Ok(Stores {
            meta: store("meta")?,
            segments: store("segments")?,
            streams: store("streams")?,
            outbox: store("outbox")?,
            rejections: store("rejections")?,
        })
    }
}

/// What a step wrote besides the records, for the bookkeeping after it commits.
#[derive(Default)]
struct Written {
    segments: u64,
    small: u32,
    rev: Option<u64>,
}

/// Moves a history written without sync to the outbox (step 2 of opening a log, see `open`),
/// in the caller's readwrite transaction over [`super::open::PREPARE_STORES`]: `segments` are
/// all of them, `kept` the keys of outbox batches already there (a log whose `synced` mark was
/// lost keeps them, and they count in the check), `next` and `rev` the stored `nextBatch` and
/// `outboxRev`. The confirmed log starts again, empty. Returns how many events moved.
pub(super) fn migrate(
    tx: &web_sys::IdbTransaction,
    (keys, values): (&[u64], &[Vec<u8>]),
    kept: &[u64],
    (next, rev): (u64, u64),
    max_push_bytes: usize,
) -> Result<u64, Error> {
    let meta = tx.object_store("meta").map_err(storage)?;
    let outbox = tx.object_store("outbox").map_err(storage)?;
    let mut next = next.max(1);
    let first = next;
    let mut moved = 0u64;
    let mut batch = Vec::new();
    let mut batch_bytes = 0;
    let room = max_push_bytes.saturating_sub(MIGRATE_SLACK);
    let flush = |events: &mut Vec<Event>, next: &mut u64| -> Result<(), Error> {
        if events.is_empty() {
            return Ok(());
        }
        let p = OutboxBatch {
            batch: *next,
            place: *next,
            events: std::mem::take(events),
            expected: BTreeMap::new(),
            state: BatchState::Waiting,
        };
        outbox
            .put_with_key(&bytes_value(&p.encode()), &key(p.batch))
            .map_err(storage)?;
        *next += 1;
        Ok(())
    };
    for (k, bytes) in keys.iter().zip(values) {
        let mut scratch = Vec::new();
        let seg = Segment::parse_in(bytes, &mut scratch).map_err(|e| Error::corrupt(0, *k, e))?;
        for e in seg.events() {
            let e = e
                .map_err(|e| Error::corrupt(seg.first_seq(), *k, e))?
                .to_owned();
            // Cut by count and by push size, so every migrated batch can be pushed.
            let size = push_event_bytes(&e);
            if batch.len() == MIGRATE_BATCH || (!batch.is_empty() && batch_bytes + size > room) {
                flush(&mut batch, &mut next)?;
                batch_bytes = 0;
            }
            batch_bytes += size;
            batch.push(e);
            moved += 1;
        }
    }
    flush(&mut batch, &mut next)?;
    for store in ["segments", "streams", "snapshots"] {
        tx.object_store(store)
            .map_err(storage)?
            .clear()
            .map_err(storage)?;
    }
    for k in ["head", "streamsThrough", "compacted", "ackedThrough"] {
        put(&meta, k, 0)?;
    }
    put(
        &meta,
        "streamsCheck",
        logfold_core::SetDigest::empty().value(),
    )?;
    let batches = kept.iter().copied().chain(first..next);
    meta.put_with_key(&outbox_check(batches), &"outboxCheck".into())
        .map_err(storage)?;
    put(&meta, "nextBatch", next)?;
    put(&meta, "outboxRev", rev + 1)?;
    meta.put_with_key(&JsValue::TRUE, &"synced".into())
        .map_err(storage)?;
    Ok(moved)
}

impl Log {
    /// Whether appends go to the outbox (the log is synced with a server).
    pub fn is_synced(&self) -> bool {
        self.0.outbox.borrow().is_some()
    }

    /// Events waiting in the outbox, as this tab last read it.
    pub fn pending(&self) -> u64 {
        self.0
            .outbox
            .borrow()
            .as_ref()
            .map_or(0, |o| o.pending() as u64)
    }

    /// Reads the engine again if another tab changed the outbox; returns whether it did.
    async fn load_engine(&self, s: &Stores) -> Result<bool, Error> {
        if !self.is_synced() {
            return Ok(false);
        }
        let rev = as_u64(&get(&s.meta, "outboxRev").await?);
        if self.0.outbox.borrow().as_ref().map(|o| o.rev) == Some(rev) {
            return Ok(false);
        }
        let next = s.meta.get(&"nextBatch".into()).map_err(storage)?;
        let acked = s.meta.get(&"ackedThrough".into()).map_err(storage)?;
        let check = s.meta.get(&"outboxCheck".into()).map_err(storage)?;
        let keys = s.outbox.get_all_keys().map_err(storage)?;
        let values = s.outbox.get_all().map_err(storage)?;
        let rejection_keys = s.rejections.get_all_keys().map_err(storage)?;
        let rejections = s.rejections.get_all().map_err(storage)?;
        let next = as_u64(&idb::request(&next).await.map_err(storage)?);
        let acked = as_u64(&idb::request(&acked).await.map_err(storage)?);
        let check = idb::request(&check).await.map_err(storage)?;
        let keys: Array = idb::request(&keys).await.map_err(storage)?.unchecked_into();
        let values: Array = idb::request(&values)
            .await
            .map_err(storage)?
            .unchecked_into();
        let actual = outbox_check(keys.iter().map(|k| as_u64(&k)));
        if let Some(expected) = outbox_mismatch(&check, &actual) {
            let reason = format!(
                "the outbox holds {} records, {expected} expected (meta.outboxCheck): a batch is missing",
                keys.length()
            );
            return Err(corrupt_record("outbox", 0, reason));
        }
        let rejection_keys: Array = idb::request(&rejection_keys)
            .await
            .map_err(storage)?
            .unchecked_into();
        let rejections: Array = idb::request(&rejections)
            .await
            .map_err(storage)?
            .unchecked_into();
        let mut outbox = Vec::with_capacity(keys.length() as usize);
        for (k, v) in keys.iter().zip(values.iter()) {
            let n = as_u64(&k);
            let bytes = Uint8Array::new(&v).to_vec();
            outbox
                .push(OutboxBatch::decode(n, &bytes).map_err(|e| corrupt_record("outbox", n, e))?);
        }
        let mut rejected = Vec::with_capacity(rejections.length() as usize);
        for (k, v) in rejection_keys.iter().zip(rejections.iter()) {
            let json = v.as_string().unwrap_or_default();
            rejected.push(
                Rejection::ids_from_json(&json)
                    .map_err(|e| corrupt_record("rejections", as_u64(&k), e))?,
            );
        }
        let stored = Stored {
            client: self.0.client_id.clone(),
            next_batch: next,
            acked_through: acked,
            outbox,
            rejections: rejected,
        };
        let mut engine = Engine::restore(stored, self.0.max_push_bytes).map_err(sync_error)?;
        let mut mirror = self.0.outbox.borrow_mut();
        let o = mirror.as_mut().expect("synced");
        engine.set_epoch(o.epoch);
        o.engine = Some(engine);
        o.rev = rev;
        o.shown_valid = false;
        Ok(true)
    }

    /// Forgets the engine after a failed transaction, so the next step reads it again.
    fn outbox_unknown(&self) {
        if let Some(o) = self.0.outbox.borrow_mut().as_mut() {
            o.rev = u64::MAX;
            o.shown_valid = false;
        }
    }

    /// What the next step needs of the confirmed log: the head, the versions of the outbox's
    /// streams (unless stamped at this head) and of `also`, and the ids at offsets `ids`.
    async fn known(
        &self,
        s: &Stores,
        also: &[&str],
        ids: Option<(u64, u64)>,
    ) -> Result<Known, Error> {
        let head = as_u64(&get(&s.meta, "head").await?);
        let names: HashSet<String> = {
            let mirror = self.0.outbox.borrow();
            let engine = mirror.as_ref().expect("synced").engine();
            let names = engine.streams_to_read(head, also);
            names.into_iter().map(str::to_owned).collect()
        };
        let names: HashSet<&str> = names.iter().map(String::as_str).collect();
        let (head, versions) = self
            .stored_versions(&s.meta, &s.segments, &s.streams, &names, Some(head))
            .await?;
        let ids = match ids {
            Some((first, last)) => self.ids_at(&s.segments, first, last.min(head)).await?,
            None => HashMap::new(),
        };
        Ok(Known {
            head,
            versions,
            ids,
        })
    }

    /// The ids of the confirmed events at offsets `first..=last`.
    async fn ids_at(
        &self,
        segments: &IdbObjectStore,
        first: u64,
        last: u64,
    ) -> Result<HashMap<u64, EventId>, Error> {
        let mut out = HashMap::new();
        let mut after = first.saturating_sub(1);
        while after < last {
            let (keys, values) = read_segments(segments, after, 16).await?;
            if keys.is_empty() {
                break;
            }
            for (k, bytes) in keys.iter().zip(&values) {
                let mut scratch = Vec::new();
                let seg = Segment::parse_in(bytes, &mut scratch)
                    .map_err(|e| Error::corrupt(after + 1, *k, e))?;
                for e in seg.events() {
                    let e = e.map_err(|e| Error::corrupt(seg.first_seq(), *k, e))?;
                    if (first..=last).contains(&e.seq) {
                        out.insert(e.seq, e.id);
                    }
                }
                after = *k;
            }
        }
        Ok(out)
    }

    /// Opens a step's transaction and brings the engine up to what is stored. A leader's
    /// step (`epoch`) is refused once another tab leads.
    async fn begin(&self, epoch: Option<u64>, durability: &str) -> Result<Step, Error> {
        let (tx, done, s) = self.open_step(durability)?;
        if let Some(epoch) = epoch {
            self.check_epoch(&s.meta, epoch).await?;
        }
        self.load_engine(&s).await?;
        Ok((tx, done, s))
    }

    /// A step's readwrite transaction over its stores, and its completion.
    fn open_step(&self, durability: &str) -> Result<Step, Error> {
        let tx = idb::transaction(&self.0.db, &STEP_STORES, true, durability)
            .map_err(|e| self.closed_or(e))?;
        let done = idb::done(&tx);
        let s = Stores::of(&tx)?;
        Ok((tx, done, s))
    }

    /// Issues a step's writes in its transaction: confirmed events as segments (cut like a
    /// commit's), the outbox and rejection records, the marks. A failed write aborts it all.
    fn persist(&self, s: &Stores, head: u64, w: &Writes) -> Result<Written, Error> {
        let inner = &self.0;
        let mut out = Written::default();
        if !w.confirmed.is_empty() {
            let mut seg = SegmentWriter::new();
            let mut put_segment = |seg: SegmentWriter| -> Result<(), Error> {
                let (last, bytes) = self.pack(seg);
                if bytes.len() < TARGET_BYTES / 2 {
                    out.small += 1;
                }
                out.segments += 1;
                s.segments
                    .put_with_key(&bytes_value(&bytes), &key(last))
                    .map_err(storage)?;
                Ok(())
            };
            for e in &w.confirmed {
                let size = e.data.len() + e.meta.as_ref().map_or(0, String::len) + 64;
                if seg.count() > 0 && seg.size() + size > inner.cut_at.get() {
                    put_segment(std::mem::take(&mut seg))?;
                }
                seg.push(&e.as_ref());
            }
            put_segment(seg)?;
            put(&s.meta, "head", head + w.confirmed.len() as u64)?;
        }
        for (n, bytes) in &w.outbox_put {
            s.outbox
                .put_with_key(&bytes_value(bytes), &key(*n))
                .map_err(storage)?;
        }
        for n in &w.outbox_delete {
            s.outbox.delete(&key(*n)).map_err(storage)?;
        }
        for (n, json) in &w.rejections_put {
            s.rejections
                .put_with_key(&json.as_str().into(), &key(*n))
                .map_err(storage)?;
        }
        for n in &w.rejections_delete {
            s.rejections.delete(&key(*n)).map_err(storage)?;
        }
        if let Some(n) = w.next_batch {
            put(&s.meta, "nextBatch", n)?;
        }
        if w.outbox_changed() {
            let rev = inner.outbox.borrow().as_ref().map_or(0, |o| o.rev) + 1;
            put(&s.meta, "outboxRev", rev)?;
            out.rev = Some(rev);
            // The engine holds the outbox these writes leave.
            let check = self.with_engine(|e| outbox_check(e.outbox().iter().map(|b| b.batch)));
            s.meta
                .put_with_key(&check, &"outboxCheck".into())
                .map_err(storage)?;
        }
        Ok(out)
    }

    /// Writes a step and waits for its transaction; on failure the engine is read again.
    async fn commit_step(
        &self,
        tx: &web_sys::IdbTransaction,
        done: wasm_bindgen_futures::JsFuture,
        s: &Stores,
        head: u64,
        w: &Writes,
    ) -> Result<Written, Error> {
        let written = self.issue_step(tx, s, head, w)?;
        self.finish_step(done.await, written)
    }

    /// Issues a step's writes; if one fails, aborts the step and forgets the engine.
    fn issue_step(
        &self,
        tx: &web_sys::IdbTransaction,
        s: &Stores,
        head: u64,
        w: &Writes,
    ) -> Result<Written, Error> {
        self.persist(s, head, w).inspect_err(|_| {
            let _ = tx.abort();
            self.outbox_unknown();
        })
    }

    /// After a step's transaction ended (`done`): the engine's revision, or on failure the
    /// engine forgotten. Not async, so it adds no state machine to its callers'.
    fn finish_step(
        &self,
        done: Result<JsValue, JsValue>,
        written: Written,
    ) -> Result<Written, Error> {
        if let Err(e) = done {
            self.outbox_unknown();
            return Err(self.closed_or(e));
        }
        if let (Some(rev), Some(o)) = (written.rev, self.0.outbox.borrow_mut().as_mut()) {
            o.rev = rev;
        }
        Ok(written)
    }

    /// After a step that confirmed `events` after `head` committed: the head, the version
    /// cache and the counters.
    fn confirmed_now(&self, head: u64, events: &[Event], written: &Written) {
        let inner = &self.0;
        let last = head + events.len() as u64;
        let mut latest: HashMap<&str, u64> = HashMap::new();
        for e in events {
            latest.insert(e.stream.as_str(), e.version);
        }
        self.remember(latest.into_iter(), last);
        inner.head.set(inner.head.get().max(last));
        inner
            .small_segments
            .set(inner.small_segments.get() + written.small);
        let mut s = inner.stats.get();
        s.transactions += 1;
        s.segments_written += written.segments;
        s.events_pulled += events.len() as u64;
        inner.stats.set(s);
        if inner.small_segments.get() >= COMPACT_AFTER {
            self.compact_when_idle();
        }
    }

    /// Runs `f` on the engine.
    fn with_engine<T>(&self, f: impl FnOnce(&mut Engine) -> T) -> T {
        let mut mirror = self.0.outbox.borrow_mut();
        f(mirror.as_mut().expect("synced").engine_mut())
    }

    /// A commit of a synced log: each batch becomes an outbox record, its events placed after
    /// the confirmed log and the outbox (provisional `seq`s and versions).
    pub(super) async fn commit_outbox(
        &self,
        batches: &[&Batch],
    ) -> Result<Vec<Result<Appended, Error>>, Error> {
        let inner = &self.0;
        let mut names: Vec<&str> = Vec::new();
        for b in batches {
            names.extend(b.events.iter().map(|e| e.stream.as_str()));
        }
        // As a plain commit (see `commit`): when memory knows what the step needs, the writes
        // go out with the reads that check it is still what is stored, saving a round trip.
        let mut cached = self.cached_known(&names);
        loop {
            let optimistic = cached.take();
            let (tx, done, s) = match optimistic {
                Some(_) => self.open_step(inner.durability.as_str())?,
                None => self.begin(None, inner.durability.as_str()).await?,
            };
            let (known, check) = match optimistic {
                Some((known, rev)) => {
                    let stored_rev = s.meta.get(&"outboxRev".into()).map_err(storage)?;
                    let stored_head = s.meta.get(&"head".into()).map_err(storage)?;
                    (known, Some((rev, stored_rev, stored_head)))
                }
                None => (self.known(&s, &names, None).await?, None),
            };
            let (results, writes, count) = self.place_outbox(&known, batches);
            let written = self.issue_step(&tx, &s, known.head, &writes)?;
            if let Some((rev, stored_rev, stored_head)) = check {
                let stored = async {
                    let rev = idb::request(&stored_rev).await.map_err(storage)?;
                    let head = idb::request(&stored_head).await.map_err(storage)?;
                    Ok::<_, Error>((as_u64(&rev), as_u64(&head)))
                };
                let (stored_rev, stored_head) = match stored.await {
                    Ok(v) => v,
                    Err(e) => {
                        // The engine holds batches that were not stored.
                        let _ = tx.abort();
                        self.outbox_unknown();
                        return Err(e);
                    }
                };
                if stored_rev != rev || stored_head != known.head {
                    // Another tab changed the outbox or the confirmed log: the engine placed
                    // these from an old state. Nothing is written; read it all and place again.
                    let _ = tx.abort();
                    let _ = done.await;
                    self.outbox_unknown();
                    continue;
                }
            }
            self.finish_step(done.await, written)?;
            inner.head.set(inner.head.get().max(known.head));
            let mut st = inner.stats.get();
            st.transactions += 1;
            st.events_appended += count;
            inner.stats.set(st);
            if count > 0 {
                // The commit stands either way; a failed read leaves the tables for the next one.
                let _ = self.show(None).await;
            }
            return Ok(results);
        }
    }

    /// What an outbox commit needs when memory has it all: the engine as of `meta.outboxRev`
    /// (returned), stamped at the confirmed head, and the cached versions of the streams it
    /// lacks.
    fn cached_known(&self, names: &[&str]) -> Option<(Known, u64)> {
        let inner = &self.0;
        let head = inner.head.get();
        if inner.versions_at.get() != head {
            return None;
        }
        let mirror = inner.outbox.borrow();
        let o = mirror.as_ref()?;
        let engine = o.engine.as_ref().filter(|_| o.rev != u64::MAX)?;
        let mut versions = HashMap::new();
        for name in engine.streams_to_read(head, names) {
            versions.insert(name.to_owned(), self.cached_version(name)?);
        }
        Some((
            Known {
                head,
                versions,
                ids: HashMap::new(),
            },
            o.rev,
        ))
    }

    /// Places `batches` in the outbox after `known`: each call's result, the writes, and how
    /// many events were placed.
    fn place_outbox(
        &self,
        known: &Known,
        batches: &[&Batch],
    ) -> (Vec<Result<Appended, Error>>, Writes, u64) {
        let inner = &self.0;
        let time = js_sys::Date::now() as u64;
        let mut writes = Writes::default();
        let mut results = Vec::with_capacity(batches.len());
        let mut count = 0u64;
        for b in batches {
            let appended = {
                let mut ids = inner.ids.borrow_mut();
                self.with_engine(|e| e.append_checked(known, b, time, &mut ids))
            };
            match appended {
                Ok((events, w)) => {
                    writes.merge(w);
                    count += events.len() as u64;
                    let events = events
                        .iter()
                        .map(|e| Placed {
                            id: e.id,
                            version: e.version,
                            seq: e.seq,
                        })
                        .collect();
                    results.push(Ok(Appended { time, events }));
                }
                Err(e) => results.push(Err(Error::from(e))),
            }
        }
        (results, writes, count)
    }

    /// What other tabs did: their outbox appends, and the leader's pulls and push answers.
    pub(super) async fn catch_up_synced(&self) -> Result<u64, Error> {
        // Under the writer: the tables must not be rebased by a commit or a pull meanwhile.
        let _turn = self.turn().await;
        let head = self.read_engine(&[]).await?.head;
        self.0.head.set(self.0.head.get().max(head));
        self.show(None).await?;
        Ok(self.0.head.get() + self.pending())
    }

    /// Brings the engine up to what is stored, its outbox stamped after the stored head, in a
    /// read transaction of its own; returns what it read of the confirmed log (with `also`).
    async fn read_engine(&self, also: &[&str]) -> Result<Known, Error> {
        let tx = idb::transaction(&self.0.db, &STEP_STORES, false, "default")
            .map_err(|e| self.closed_or(e))?;
        let s = Stores::of(&tx)?;
        self.load_engine(&s).await?;
        let known = self.known(&s, also, None).await?;
        self.with_engine(|e| e.version(&known, ""));
        Ok(known)
    }

    /// The outbox events after position `after`, as JSON, after the confirmed ones.
    pub(super) async fn outbox_json(
        &self,
        out: &mut String,
        after: u64,
        upto: u64,
    ) -> Result<u64, Error> {
        let _turn = self.turn().await;
        self.read_engine(&[]).await?;
        let mirror = self.0.outbox.borrow();
        let mut last = after;
        for e in mirror.as_ref().expect("synced").engine().outbox_events() {
            if e.seq <= after || e.seq > upto {
                continue;
            }
            if out.len() > 1 {
                out.push(',');
            }
            logfold_core::json::write_event(out, &e.as_ref());
            last = e.seq;
        }
        Ok(last)
    }

    /// A stream's version in confirmed ⊕ outbox.
    pub(super) async fn synced_version(&self, stream: &str) -> Result<u64, Error> {
        let _turn = self.turn().await;
        let known = self.read_engine(&[stream]).await?;
        Ok(self.with_engine(|e| e.version(&known, stream)))
    }

    /// The next push request: the oldest waiting batches, in at most the log's push size, as
    /// JSON, with their batch numbers. `None` when there is nothing to push.
    pub async fn push_request(&self, epoch: u64) -> Result<Option<(String, Vec<u64>)>, Error> {
        self.check_open()?;
        // Under the writer, as every step that reads the engine: a commit places its batches
        // in the engine before it knows they are stored (its check may abort it), and a push
        // built meanwhile would send events that are then placed again under other ids.
        let _turn = self.turn().await;
        let tx = idb::transaction(&self.0.db, &STEP_STORES, false, "default")
            .map_err(|e| self.closed_or(e))?;
        let s = Stores::of(&tx)?;
        self.load_engine(&s).await?;
        let mut mirror = self.0.outbox.borrow_mut();
        let Some(o) = mirror.as_mut() else {
            return Ok(None);
        };
        o.epoch = epoch;
        let push = {
            let engine = o.engine_mut();
            engine.set_epoch(epoch);
            engine.next_push()
        };
        o.in_flight = push.clone();
        Ok(push.map(|p| (p.body, p.batches)))
    }

    /// Applies the server's answer to the push of batches `numbers` (the one in flight):
    /// acknowledged batches wait for the pull (or are confirmed now when they continue the
    /// head); rejected ones leave the outbox, and the tables, for the `rejections` store.
    pub async fn apply_push(
        &self,
        epoch: u64,
        numbers: &[u64],
        response: PushResponse,
    ) -> Result<Pushed, Error> {
        self.check_open()?;
        let push = self
            .0
            .outbox
            .borrow()
            .as_ref()
            .and_then(|o| o.in_flight.clone())
            .filter(|p| p.batches == numbers)
            .ok_or_else(|| protocol_error("a push answer for batches not in flight"))?;
        let _turn = self.turn().await;
        self.apply_push_now(epoch, push, response).await
    }

    async fn apply_push_now(
        &self,
        epoch: u64,
        push: Push,
        response: PushResponse,
    ) -> Result<Pushed, Error> {
        let inner = &self.0;
        let (tx, done, s) = self.begin(Some(epoch), inner.durability.as_str()).await?;
        let known = self.known(&s, &[], None).await?;
        let time = js_sys::Date::now() as u64;
        let (outcome, w) = self
            .with_engine(|e| e.on_push_answer(&known, &push, &response, time))
            .map_err(sync_error)?;
        let written = self.commit_step(&tx, done, &s, known.head, &w).await?;
        if let Some(o) = inner.outbox.borrow_mut().as_mut() {
            o.in_flight = None;
        }
        let events = &w.confirmed;
        self.confirmed_now(known.head, events, &written);
        // Outbox events left or were confirmed: the tables change.
        if !events.is_empty() || !w.rejections_put.is_empty() {
            self.after_confirmed(known.head, events, outcome.confirmed.front)
                .await;
        }
        let rejected = w
            .rejections_put
            .iter()
            .map(|(_, json)| json.clone())
            .collect();
        Ok(Pushed {
            acknowledged: outcome.acknowledged,
            rejected,
            retracted: outcome.confirmed.retracted,
            fenced: outcome.fenced,
        })
    }

    /// The tables after a committed step moved the outbox or confirmed `events` after `head`:
    /// when they were all ours and the outbox's front, as shown, the tables already show them
    /// (`lag`); otherwise the overlay is rebuilt. The step stands whatever happens here, and
    /// its outcome must reach the sync loop (rejections to tell), so a failure only warns and
    /// leaves the tables to be rebuilt from IndexedDB.
    async fn after_confirmed(&self, head: u64, events: &[Event], front: bool) {
        if let Err(e) = self.show_confirmed(head, events, front).await {
            self.0.projections.warn(&format!(
                "the tables could not show a sync step: {e}; rebuilding them"
            ));
            self.outbox_unknown();
            if let Err(e) = self.show(None).await {
                self.0
                    .projections
                    .warn(&format!("the tables could not be rebuilt: {e}"));
            }
        }
    }

    async fn show_confirmed(&self, head: u64, events: &[Event], front: bool) -> Result<(), Error> {
        if let Some(o) = self.0.outbox.borrow_mut().as_mut() {
            if front && !events.is_empty() && o.shown_valid && o.shown >= events.len() {
                o.shown -= events.len();
                o.lag += events.len() as u64;
            } else {
                o.shown_valid = false;
            }
        }
        let confirmed = (!events.is_empty() && events[0].seq == head + 1).then_some(events);
        self.show(confirmed).await
    }

    /// Adds pulled events (each with its server offset) to the confirmed log, moving this
    /// client's own from the outbox. Events at or below the confirmed head must be the ones
    /// confirmed there; a gap after it is refused.
    pub async fn apply_pull(
        &self,
        epoch: u64,
        events: Vec<Event>,
        server_head: u64,
    ) -> Result<Pulled, Error> {
        self.check_open()?;
        let _turn = self.turn().await;
        self.apply_pull_now(epoch, events, server_head).await
    }

    async fn apply_pull_now(
        &self,
        epoch: u64,
        events: Vec<Event>,
        server_head: u64,
    ) -> Result<Pulled, Error> {
        let inner = &self.0;
        let (tx, done, s) = self.begin(Some(epoch), inner.durability.as_str()).await?;
        let overlap = events.first().map(|e| (e.seq, e.seq + events.len() as u64));
        // Also brings the version cache to the head, before it takes the pulled versions.
        let known = self.known(&s, &[], overlap).await?;
        let (outcome, w) = self
            .with_engine(|e| e.on_events(&known, events, server_head))
            .map_err(sync_error)?;
        if w.is_empty() {
            done.await.map_err(|e| self.closed_or(e))?;
            return Ok(Pulled {
                confirmed: 0,
                ours: 0,
                head: known.head,
                retracted: Vec::new(),
            });
        }
        let written = self.commit_step(&tx, done, &s, known.head, &w).await?;
        self.confirmed_now(known.head, &w.confirmed, &written);
        self.after_confirmed(known.head, &w.confirmed, outcome.front)
            .await;
        Ok(Pulled {
            confirmed: outcome.confirmed as u64,
            ours: outcome.ours as u64,
            head: outcome.head,
            retracted: outcome.retracted,
        })
    }

    /// Forgets a rejection; returns whether there was one.
    pub async fn dismiss_rejection(&self, id: u64) -> Result<bool, Error> {
        self.check_open()?;
        let _turn = self.turn().await;
        let (tx, done, s) = self.begin(None, "default").await?;
        let found = !idb::request(&s.rejections.get(&key(id)).map_err(storage)?)
            .await
            .map_err(storage)?
            .is_undefined();
        // A log that is not synced has no engine; its rejections are only records.
        let mut w = if self.is_synced() {
            self.with_engine(|e| e.dismiss(id))
        } else {
            Writes::default()
        };
        if found && w.rejections_delete.is_empty() {
            w.rejections_delete.push(id);
        }
        self.commit_step(&tx, done, &s, 0, &w).await?;
        Ok(found)
    }

    /// Brings the tables to confirmed ⊕ outbox: extends the overlay with new outbox events
    /// when that is all that changed; otherwise rolls it back, folds the new confirmed events
    /// into the base (`confirmed`, if given, or read from IndexedDB) and applies the outbox
    /// again.
    async fn show(&self, confirmed: Option<&[Event]>) -> Result<(), Error> {
        let inner = &self.0;
        let head = inner.head.get();
        if !self.has_projections() {
            let pending = self.pending();
            inner.tables.borrow_mut().set_seq(head + pending);
            return Ok(());
        }
        let (base, in_overlay) = {
            let t = inner.tables.borrow();
            (t.base_seq(), t.in_overlay())
        };
        let (valid, lag) = {
            let outbox = inner.outbox.borrow();
            let o = outbox.as_ref().expect("synced");
            (o.shown_valid, o.lag)
        };
        if head != base + lag || !valid {
            // What the base lacks is read before the overlay is taken back: across an await,
            // a render would show the base alone, without the outbox (a pending transfer
            // undone for a frame).
            let given = confirmed.filter(|c| c.first().is_some_and(|e| e.seq == base + 1));
            let segments = match given {
                None if head > base => match self.segments_after(base, u32::MAX).await {
                    // Another tab cut past what this one folded: it cannot catch up.
                    Err(Error::Truncated { .. }) => {
                        self.close_for(CloseReason::Truncated);
                        return Err(Error::Closed(CloseReason::Truncated));
                    }
                    r => r?,
                },
                _ => Default::default(),
            };
            if inner.tables.borrow_mut().rollback() {
                inner.projections.call("rebase", &[]);
            }
            if head > base {
                self.fold_base(head, given, &segments)?;
            }
            let mut outbox = inner.outbox.borrow_mut();
            let o = outbox.as_mut().expect("synced");
            o.shown = 0;
            o.lag = 0;
            o.shown_valid = true;
            if in_overlay || o.pending() > 0 {
                let mut s = inner.stats.get();
                s.overlay_rebuilds += 1;
                inner.stats.set(s);
            }
        }
        let mut text = self.events_text();
        let folded = {
            let outbox = inner.outbox.borrow();
            let o = outbox.as_ref().expect("synced");
            let mut tables = inner.tables.borrow_mut();
            let new: Vec<&Event> = o.engine().outbox_events().skip(o.shown).collect();
            if !new.is_empty() {
                tables.begin_overlay();
            }
            for e in &new {
                tables.fold(&e.as_ref());
                if let Some(text) = text.as_mut() {
                    if text.len() > 1 {
                        text.push(',');
                    }
                    logfold_core::json::write_event(text, &e.as_ref());
                }
            }
            new.len()
        };
        let settled = {
            let mut outbox = inner.outbox.borrow_mut();
            let o = outbox.as_mut().expect("synced");
            o.shown += folded;
            // Everything the overlay holds is confirmed: it becomes the base.
            let settled = o.lag > 0 && o.pending() == 0;
            if settled {
                o.lag = 0;
            }
            settled
        };
        if settled {
            inner.tables.borrow_mut().commit_overlay();
            inner.projections.call("settle", &[]);
        }
        let mut s = inner.stats.get();
        s.overlay_events += folded as u64;
        inner.stats.set(s);
        self.emit_as(text, true);
        Ok(())
    }

    /// Folds confirmed events from the tables' base up to `head` into the base: `confirmed`
    /// when given (it starts right after the base), else the events of the stored segments
    /// after the base (`keys`, `values`).
    fn fold_base(
        &self,
        head: u64,
        confirmed: Option<&[Event]>,
        (keys, values): &(Vec<u64>, Vec<Vec<u8>>),
    ) -> Result<(), Error> {
        let inner = &self.0;
        let mut text = self.events_text();
        let mut folded = 0u64;
        if let Some(events) = confirmed {
            let mut tables = inner.tables.borrow_mut();
            for e in events.iter().filter(|e| e.seq <= head) {
                tables.fold(&e.as_ref());
                if let Some(text) = text.as_mut() {
                    if text.len() > 1 {
                        text.push(',');
                    }
                    logfold_core::json::write_event(text, &e.as_ref());
                }
                folded += 1;
            }
        }
        for (k, bytes) in keys.iter().zip(values) {
            let after = inner.tables.borrow().seq();
            if after >= head {
                break;
            }
            let mut scratch = Vec::new();
            let seg = Segment::parse_in(bytes, &mut scratch)
                .map_err(|e| Error::corrupt(after + 1, *k, e))?;
            folded += fold_segment(&mut inner.tables.borrow_mut(), &seg, head, text.as_mut())
                .map_err(|e| Error::corrupt(after + 1, *k, e))?;
        }
        let mut s = inner.stats.get();
        s.base_events += folded;
        inner.stats.set(s);
        // Reducers fold the base; table changes wait for the overlay, so subscribers see the
        // rows once, as they end up.
        let text = text.filter(|t| t.len() > 1).map(|mut t| {
            t.push(']');
            t
        });
        let seq = inner.tables.borrow().seq();
        inner.projections.fold(text, None, seq, false);
        Ok(())
    }

    /// Takes the writer (see `wait_idle`) for a sync step, so it never interleaves with a
    /// commit or a compaction of this tab; given back when the turn is dropped.
    async fn turn(&self) -> Turn {
        self.wait_idle().await;
        self.0.writing.set(true);
        Turn(self.clone())
    }

    async fn check_epoch(&self, meta: &IdbObjectStore, epoch: u64) -> Result<(), Error> {
        let current = as_u64(&get(meta, "epoch").await?);
        if current == epoch {
            Ok(())
        } else {
            Err(fenced(epoch, current))
        }
    }
}
