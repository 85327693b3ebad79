//! A synced log: the confirmed log in `segments` (each `seq` is its server offset) and the
//! outbox in `outbox`, one record per appended batch, kept until the pull brings its events
//! back confirmed. Tables show confirmed ⊕ outbox: the outbox is an overlay that is rolled
//! back and applied again when the base moves.
//!
//! Every tab keeps a mirror of the outbox; `meta.outboxRev` changes with every write to the
//! store, so a tab re-reads it only when another tab changed it. Only the sync leader pushes
//! and pulls, and each of its transactions checks `meta.epoch` first, so a leader that was
//! replaced (a frozen tab, thawed) changes nothing.

use std::collections::{BTreeMap, HashMap, HashSet};

use logfold_core::protocol::PushResponse;
use logfold_core::sync::{push_event_bytes, Confirmation, Outbox, Pending};
use logfold_core::{Event, EventId, PROTOCOL_VERSION};

use super::*;

/// Events per outbox batch when a log used without sync moves its history to the outbox.
const MIGRATE_BATCH: usize = 1000;
/// Room left in a migrated batch's push body for its client id, numbers and punctuation.
const MIGRATE_SLACK: usize = 4096;

/// A tab's copy of the `outbox` store, and how much of it the tables show.
#[derive(Default)]
pub(super) struct Mirror {
    outbox: Outbox,
    /// The `meta.outboxRev` the copy reflects (`u64::MAX`: unknown, read again).
    rev: u64,
    /// Outbox events folded into the tables' overlay, from the front.
    shown: usize,
    /// Whether the overlay still matches the copy's front `shown` events.
    shown_valid: bool,
    /// Confirmed events after the tables' base that the overlay still holds: this client's
    /// own, confirmed in the order they were shown, so the tables did not change.
    lag: u64,
    /// The stored head the events' stamps are for, and then confirmed ⊕ outbox versions of
    /// the outbox's streams.
    stamped: Option<u64>,
    tip: HashMap<String, u64>,
}

impl Mirror {
    /// A copy not read yet.
    pub(super) fn unread() -> Self {
        Mirror {
            rev: u64::MAX,
            ..Mirror::default()
        }
    }

    /// After the outbox changed other than at its end: stamps and overlay are stale.
    fn reshaped(&mut self) {
        self.shown_valid = false;
        self.stamped = None;
    }
}

fn decode_record(batch: u64, bytes: &[u8]) -> Result<Pending, Error> {
    Pending::decode(batch, bytes).map_err(|reason| Error::Corrupt {
        from: 0,
        to: 0,
        reason: format!("outbox batch {batch}: {reason}"),
    })
}

fn protocol_error(message: impl Into<String>) -> Error {
    Error::Sync {
        code: "SYNC_PROTOCOL",
        message: message.into(),
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

/// What a synced log records in `meta` about the server log it syncs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMark {
    /// The server log's name (`sync.log`): reopening with another is refused.
    Log,
    /// The server log's identity (`logfold-log-id`): meeting another is divergence.
    ServerLog,
}

impl SyncMark {
    fn key(self) -> &'static str {
        match self {
            SyncMark::Log => "syncLog",
            SyncMark::ServerLog => "serverLog",
        }
    }
}

/// What a pull did, for the sync loop.
pub struct Pulled {
    /// Events added to the confirmed log.
    pub confirmed: u64,
    /// Of those, how many were this client's, moved from the outbox.
    pub ours: u64,
    /// The confirmed head now.
    pub head: u64,
}

/// What a push answer did, for the sync loop: JSON `{ acknowledged, rejected, fenced }`.
pub struct Pushed {
    /// Batch numbers the server has.
    pub acknowledged: Vec<u64>,
    /// The rejections recorded, as JSON objects.
    pub rejected: Vec<String>,
    /// The server said a newer leader has pushed: this one must stop.
    pub fenced: bool,
}

/// Marks the log at `db` synced, moving a history written without sync to the outbox. Returns
/// (synced, migrated events); another tab may have done it first.
pub(super) async fn prepare(
    db: &IdbDatabase,
    durability: Durability,
    max_push_bytes: usize,
) -> Result<(bool, u64), Error> {
    let stores = ["segments", "streams", "meta", "outbox", "snapshots"];
    let tx = idb::transaction(db, &stores, true, durability.as_str()).map_err(storage)?;
    let done = idb::done(&tx);
    let meta = tx.object_store("meta").map_err(storage)?;
    if get(&meta, "synced").await?.is_truthy() {
        tx.abort().ok();
        let _ = done.await;
        return Ok((true, 0));
    }
    let segments = tx.object_store("segments").map_err(storage)?;
    let (keys, values) = read_segments(&segments, 0, u32::MAX).await?;
    let outbox = tx.object_store("outbox").map_err(storage)?;
    let mut next = as_u64(&get(&meta, "nextBatch").await?).max(1);
    let mut moved = 0u64;
    let mut batch = Vec::new();
    let mut batch_bytes = 0;
    let room = max_push_bytes.saturating_sub(MIGRATE_SLACK);
    let flush = |events: &mut Vec<Event>, next: &mut u64| -> Result<(), Error> {
        if events.is_empty() {
            return Ok(());
        }
        let p = Pending {
            batch: *next,
            events: std::mem::take(events),
            expected: BTreeMap::new(),
        };
        outbox
            .put_with_key(&bytes_value(&p.encode()), &key(p.batch))
            .map_err(storage)?;
        *next += 1;
        Ok(())
    };
    for (k, bytes) in keys.iter().zip(&values) {
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
    put(&meta, "nextBatch", next)?;
    let rev = as_u64(&get(&meta, "outboxRev").await?);
    put(&meta, "outboxRev", rev + 1)?;
    meta.put_with_key(&JsValue::TRUE, &"synced".into())
        .map_err(storage)?;
    done.await.map_err(storage)?;
    Ok((true, moved))
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
            .map_or(0, |o| o.outbox.len() as u64)
    }

    /// Reads the outbox again if another tab changed it; returns whether it did.
    async fn refresh_outbox(
        &self,
        meta: &IdbObjectStore,
        store: &IdbObjectStore,
    ) -> Result<bool, Error> {
        let rev = as_u64(&get(meta, "outboxRev").await?);
        if self.0.outbox.borrow().as_ref().map(|o| o.rev) == Some(rev) {
            return Ok(false);
        }
        let keys = store.get_all_keys().map_err(storage)?;
        let values = store.get_all().map_err(storage)?;
        let keys: Array = idb::request(&keys).await.map_err(storage)?.unchecked_into();
        let values: Array = idb::request(&values)
            .await
            .map_err(storage)?
            .unchecked_into();
        let mut batches = Vec::with_capacity(keys.length() as usize);
        for (k, v) in keys.iter().zip(values.iter()) {
            batches.push(decode_record(as_u64(&k), &Uint8Array::new(&v).to_vec())?);
        }
        let mut outbox = self.0.outbox.borrow_mut();
        let o = outbox.get_or_insert_with(Mirror::default);
        o.outbox.batches = batches;
        o.rev = rev;
        o.reshaped();
        Ok(true)
    }

    /// Forgets the outbox copy after a failed transaction, so the next one reads it again.
    fn outbox_unknown(&self) {
        if let Some(o) = self.0.outbox.borrow_mut().as_mut() {
            o.rev = u64::MAX;
            o.reshaped();
        }
    }

    /// Restamps the outbox after the stored head (unless it already is) and returns the head and
    /// the confirmed ⊕ outbox versions of the streams `also`.
    async fn restamp(
        &self,
        stores: (&IdbObjectStore, &IdbObjectStore, &IdbObjectStore),
        also: &HashSet<&str>,
    ) -> Result<(u64, HashMap<String, u64>), Error> {
        let (meta, segments, streams) = stores;
        let head = as_u64(&get(meta, "head").await?);
        let (fresh, names): (bool, HashSet<String>) = {
            let outbox = self.0.outbox.borrow();
            let o = outbox.as_ref().expect("synced");
            if o.stamped == Some(head) {
                let names = also.iter().filter(|s| !o.tip.contains_key(**s));
                (true, names.map(|s| (*s).to_owned()).collect())
            } else {
                let names = o.outbox.streams().into_iter().chain(also.iter().copied());
                (false, names.map(str::to_owned).collect())
            }
        };
        let names: HashSet<&str> = names.iter().map(String::as_str).collect();
        let (head, mut versions) = self
            .stored_versions(meta, segments, streams, &names)
            .await?;
        let mut outbox = self.0.outbox.borrow_mut();
        let o = outbox.as_mut().expect("synced");
        if !fresh {
            o.tip = o.outbox.restamp(head, versions.clone());
            o.stamped = Some(head);
        }
        for s in also {
            if let Some(v) = o.tip.get(*s) {
                versions.insert((*s).to_owned(), *v);
            }
        }
        Ok((head, versions))
    }

    /// Brings the outbox copy up to what is stored (read again if another tab changed it,
    /// restamped after the stored head), in a read transaction of its own; returns the head and
    /// the confirmed ⊕ outbox versions of the streams `also`.
    async fn read_outbox(
        &self,
        also: &HashSet<&str>,
    ) -> Result<(u64, HashMap<String, u64>), Error> {
        let tx = idb::transaction(
            &self.0.db,
            &["segments", "streams", "meta", "outbox"],
            false,
            "default",
        )
        .map_err(|e| self.closed_or(e))?;
        let meta = tx.object_store("meta").map_err(storage)?;
        let store = tx.object_store("outbox").map_err(storage)?;
        let segments = tx.object_store("segments").map_err(storage)?;
        let streams = tx.object_store("streams").map_err(storage)?;
        self.refresh_outbox(&meta, &store).await?;
        self.restamp((&meta, &segments, &streams), also).await
    }

    /// A commit of a synced log: each batch becomes an outbox record, its events placed after
    /// the confirmed log and the outbox (provisional `seq`s and versions).
    pub(super) async fn commit_outbox(
        &self,
        batches: &[&Batch],
    ) -> Result<Vec<Result<Appended, Error>>, Error> {
        let inner = &self.0;
        let tx = idb::transaction(
            &inner.db,
            &["segments", "streams", "meta", "outbox"],
            true,
            inner.durability.as_str(),
        )
        .map_err(|e| self.closed_or(e))?;
        let done = idb::done(&tx);
        let segments = tx.object_store("segments").map_err(storage)?;
        let streams = tx.object_store("streams").map_err(storage)?;
        let meta = tx.object_store("meta").map_err(storage)?;
        let store = tx.object_store("outbox").map_err(storage)?;
        let next_req = meta.get(&"nextBatch".into()).map_err(storage)?;
        self.refresh_outbox(&meta, &store).await?;
        let mut names: HashSet<&str> = HashSet::new();
        for b in batches {
            names.extend(b.events.iter().map(|e| e.stream.as_str()));
        }
        let (head, mut versions) = self.restamp((&meta, &segments, &streams), &names).await?;
        let mut next = as_u64(&idb::request(&next_req).await.map_err(storage)?).max(1);
        let mut seq = head + self.pending();

        let time = js_sys::Date::now() as u64;
        let mut added = Vec::new();
        let mut results = Vec::with_capacity(batches.len());
        // A failed write aborts the transaction: no batch of the group half-written.
        let mut writes = || -> Result<(), Error> {
            for b in batches {
                let placed = {
                    let mut ids = inner.ids.borrow_mut();
                    place(b, &mut seq, &mut versions, &mut ids, time)
                };
                match placed {
                    Ok(events) => {
                        let p = Pending {
                            batch: next,
                            events: b
                                .events
                                .iter()
                                .zip(&events)
                                .map(|(e, p)| e.placed(p, time, &inner.client_id).to_owned())
                                .collect(),
                            expected: b.expected.iter().cloned().collect(),
                        };
                        store
                            .put_with_key(&bytes_value(&p.encode()), &key(next))
                            .map_err(storage)?;
                        next += 1;
                        added.push(p);
                        results.push(Ok(Appended { time, events }));
                    }
                    Err(c) => results.push(Err(Error::Conflict(c))),
                }
            }
            if !added.is_empty() {
                let rev = inner.outbox.borrow().as_ref().map_or(0, |o| o.rev);
                put(&meta, "nextBatch", next)?;
                put(&meta, "outboxRev", rev + 1)?;
            }
            Ok(())
        };
        if let Err(e) = writes() {
            let _ = tx.abort();
            return Err(e);
        }
        let count: u64 = added.iter().map(|p| p.events.len() as u64).sum();
        if !added.is_empty() {
            let rev = inner.outbox.borrow().as_ref().map_or(0, |o| o.rev);
            if let Err(e) = done.await {
                self.outbox_unknown();
                return Err(self.closed_or(e));
            }
            let mut outbox = inner.outbox.borrow_mut();
            let o = outbox.as_mut().expect("synced");
            o.outbox.batches.extend(added);
            o.rev = rev + 1;
            for name in &names {
                if let Some(v) = versions.get(*name) {
                    o.tip.insert((*name).to_owned(), *v);
                }
            }
        } else {
            done.await.map_err(|e| self.closed_or(e))?;
        }
        inner.head.set(inner.head.get().max(head));
        let mut s = inner.stats.get();
        s.transactions += 1;
        s.events_appended += count;
        inner.stats.set(s);
        if count > 0 {
            // The commit stands either way; a failed read leaves the tables for the next one.
            let _ = self.show(None).await;
        }
        Ok(results)
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
            if inner.tables.borrow_mut().rollback() {
                inner.projections.call("rebase", &[]);
            }
            if head > base {
                self.fold_base(head, confirmed).await?;
            }
            let mut outbox = inner.outbox.borrow_mut();
            let o = outbox.as_mut().expect("synced");
            o.shown = 0;
            o.lag = 0;
            o.shown_valid = true;
            if in_overlay || !o.outbox.is_empty() {
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
            let new: Vec<&Event> = o.outbox.events().skip(o.shown).collect();
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
            let settled = o.lag > 0 && o.outbox.is_empty();
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

    /// Folds confirmed events from the tables' base up to `head` into the base.
    async fn fold_base(&self, head: u64, confirmed: Option<&[Event]>) -> Result<(), Error> {
        let inner = &self.0;
        let from = inner.tables.borrow().seq();
        let mut text = self.events_text();
        let mut folded = 0u64;
        match confirmed {
            Some(events) if events.first().is_some_and(|e| e.seq == from + 1) => {
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
            _ => loop {
                let after = inner.tables.borrow().seq();
                if after >= head {
                    break;
                }
                let (keys, values) = self.segments_after(after, PAGE).await?;
                if keys.is_empty() {
                    break;
                }
                for (k, bytes) in keys.iter().zip(&values) {
                    let mut scratch = Vec::new();
                    let seg = Segment::parse_in(bytes, &mut scratch)
                        .map_err(|e| Error::corrupt(after + 1, *k, e))?;
                    folded +=
                        fold_segment(&mut inner.tables.borrow_mut(), &seg, head, text.as_mut())
                            .map_err(|e| Error::corrupt(after + 1, *k, e))?;
                }
            },
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

    /// What other tabs did: their outbox appends, and the leader's pulls and push answers.
    pub(super) async fn catch_up_synced(&self) -> Result<u64, Error> {
        // Under the writer: the tables must not be rebased by a commit or a pull meanwhile.
        self.exclusive(self.catch_up_synced_now()).await
    }

    async fn catch_up_synced_now(&self) -> Result<u64, Error> {
        let (head, _) = self.read_outbox(&HashSet::new()).await?;
        self.0.head.set(self.0.head.get().max(head));
        self.show(None).await?;
        Ok(self.0.head.get() + self.pending())
    }

    /// The outbox events after position `after`, as JSON, after the confirmed ones.
    pub(super) async fn outbox_json(
        &self,
        out: &mut String,
        after: u64,
        upto: u64,
    ) -> Result<u64, Error> {
        self.read_outbox(&HashSet::new()).await?;
        let outbox = self.0.outbox.borrow();
        let mut last = after;
        for e in outbox.as_ref().expect("synced").outbox.events() {
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
        let (_, versions) = self.read_outbox(&HashSet::from([stream])).await?;
        Ok(versions.get(stream).copied().unwrap_or(0))
    }

    /// Takes the writer (see `wait_idle`) for a sync step, so it never interleaves with a
    /// commit or a compaction of this tab.
    async fn exclusive<T>(&self, step: impl std::future::Future<Output = T>) -> T {
        self.wait_idle().await;
        self.0.writing.set(true);
        let out = step.await;
        self.finish_writing();
        self.start_writer_if_queued();
        out
    }

    /// Becomes the sync leader: a new epoch, one above the stored one, and a heartbeat.
    pub async fn claim_leadership(&self) -> Result<u64, Error> {
        self.check_open()?;
        let tx = idb::transaction(&self.0.db, &["meta"], true, "strict")
            .map_err(|e| self.closed_or(e))?;
        let done = idb::done(&tx);
        let meta = tx.object_store("meta").map_err(storage)?;
        let epoch = as_u64(&get(&meta, "epoch").await?) + 1;
        put(&meta, "epoch", epoch)?;
        put(&meta, "heartbeat", js_sys::Date::now() as u64)?;
        done.await.map_err(|e| self.closed_or(e))?;
        Ok(epoch)
    }

    /// The leader's heartbeat: `false` (and nothing written) once another tab has a newer epoch.
    pub async fn heartbeat(&self, epoch: u64) -> Result<bool, Error> {
        self.check_open()?;
        let tx = idb::transaction(&self.0.db, &["meta"], true, "relaxed")
            .map_err(|e| self.closed_or(e))?;
        let done = idb::done(&tx);
        let meta = tx.object_store("meta").map_err(storage)?;
        let current = as_u64(&get(&meta, "epoch").await?);
        if current != epoch {
            tx.abort().ok();
            let _ = done.await;
            return Ok(false);
        }
        put(&meta, "heartbeat", js_sys::Date::now() as u64)?;
        done.await.map_err(|e| self.closed_or(e))?;
        Ok(true)
    }

    /// The stored leader epoch and its last heartbeat (ms since the Unix epoch).
    pub async fn leader(&self) -> Result<(u64, u64), Error> {
        self.check_open()?;
        let tx = idb::transaction(&self.0.db, &["meta"], false, "default")
            .map_err(|e| self.closed_or(e))?;
        let meta = tx.object_store("meta").map_err(storage)?;
        let epoch = as_u64(&get(&meta, "epoch").await?);
        let beat = as_u64(&get(&meta, "heartbeat").await?);
        Ok((epoch, beat))
    }

    async fn check_epoch(&self, meta: &IdbObjectStore, epoch: u64) -> Result<(), Error> {
        let current = as_u64(&get(meta, "epoch").await?);
        if current == epoch {
            Ok(())
        } else {
            Err(fenced(epoch, current))
        }
    }

    /// The next push request: the oldest batches the server has not acknowledged, in at most
    /// the log's push size, as JSON; with their batch numbers. `None` when there is nothing to push.
    pub async fn push_request(&self, epoch: u64) -> Result<Option<(String, Vec<u64>)>, Error> {
        self.check_open()?;
        let tx = idb::transaction(&self.0.db, &["meta", "outbox"], false, "default")
            .map_err(|e| self.closed_or(e))?;
        let meta = tx.object_store("meta").map_err(storage)?;
        let store = tx.object_store("outbox").map_err(storage)?;
        let acked = as_u64(&get(&meta, "ackedThrough").await?);
        self.refresh_outbox(&meta, &store).await?;
        let outbox = self.0.outbox.borrow();
        let Some(o) = outbox.as_ref() else {
            return Ok(None);
        };
        let mut body = String::new();
        let numbers = o.outbox.write_push(
            &mut body,
            &self.0.client_id,
            epoch,
            acked,
            self.0.max_push_bytes,
        );
        if numbers.is_empty() {
            return Ok(None);
        }
        Ok(Some((body, numbers)))
    }

    /// Applies the server's answer to a push of batches `numbers`: acknowledged batches wait for
    /// the pull; rejected ones leave the outbox (and the tables) for the `rejections` store.
    pub async fn apply_push(
        &self,
        epoch: u64,
        numbers: &[u64],
        response: PushResponse,
    ) -> Result<Pushed, Error> {
        self.check_open()?;
        if response.protocol != PROTOCOL_VERSION {
            return Err(protocol_error(format!(
                "the server speaks sync protocol {}, this client {PROTOCOL_VERSION}",
                response.protocol
            )));
        }
        if response.results.len() != numbers.len() {
            return Err(protocol_error(format!(
                "the push answer has {} results for {} batches",
                response.results.len(),
                numbers.len()
            )));
        }
        let results = response.results.clone();
        let pushed = self
            .exclusive(self.apply_push_now(epoch, numbers, response))
            .await?;
        // Accepted right after the confirmed head: the server holds exactly these events there,
        // so they are confirmed now instead of pulled back. The pull skips them later.
        let events = self.0.outbox.borrow().as_ref().map_or_else(Vec::new, |o| {
            o.outbox
                .accepted_after_head(self.0.head.get(), numbers, &results)
        });
        if !pushed.fenced && !events.is_empty() {
            // Best effort: a failure leaves them to the pull.
            let _ = self.exclusive(self.apply_pull_now(epoch, events)).await;
        }
        Ok(pushed)
    }

    async fn apply_push_now(
        &self,
        epoch: u64,
        numbers: &[u64],
        response: PushResponse,
    ) -> Result<Pushed, Error> {
        let inner = &self.0;
        let tx = idb::transaction(
            &inner.db,
            &["meta", "outbox", "rejections"],
            true,
            inner.durability.as_str(),
        )
        .map_err(|e| self.closed_or(e))?;
        let done = idb::done(&tx);
        let meta = tx.object_store("meta").map_err(storage)?;
        let store = tx.object_store("outbox").map_err(storage)?;
        let rejections = tx.object_store("rejections").map_err(storage)?;
        self.check_epoch(&meta, epoch).await?;
        let acked = as_u64(&get(&meta, "ackedThrough").await?);
        self.refresh_outbox(&meta, &store).await?;
        let answer = {
            let mut outbox = inner.outbox.borrow_mut();
            let o = outbox.as_mut().expect("synced");
            let answer = o.outbox.answer(acked, numbers, &response.results);
            if !answer.rejected.is_empty() {
                o.reshaped();
            }
            answer
        };
        let time = js_sys::Date::now() as u64;
        let mut out = Pushed {
            acknowledged: answer.acknowledged,
            rejected: Vec::new(),
            fenced: answer.fenced,
        };
        let gone = !answer.rejected.is_empty();
        let rev = inner.outbox.borrow().as_ref().map_or(0, |o| o.rev);
        // A failed write aborts the transaction, and the copy is read again.
        let mut writes = || -> Result<(), Error> {
            for r in &answer.rejected {
                let n = r.pending.batch;
                let record = r.to_json(time);
                rejections
                    .put_with_key(&record.as_str().into(), &key(n))
                    .map_err(storage)?;
                store.delete(&key(n)).map_err(storage)?;
                out.rejected.push(record);
            }
            put(&meta, "ackedThrough", answer.acked_through)?;
            if gone {
                put(&meta, "outboxRev", rev + 1)?;
            }
            Ok(())
        };
        if let Err(e) = writes() {
            let _ = tx.abort();
            self.outbox_unknown();
            return Err(e);
        }
        if let Err(e) = done.await {
            self.outbox_unknown();
            return Err(self.closed_or(e));
        }
        if gone {
            if let Some(o) = inner.outbox.borrow_mut().as_mut() {
                o.rev = rev + 1;
            }
            // The rejected events leave the tables; later outbox events are restamped.
            self.read_outbox(&HashSet::new()).await?;
            self.show(None).await?;
        }
        Ok(out)
    }

    /// Adds pulled events (each with its server offset) to the confirmed log, moving this
    /// client's own from the outbox. Events at or below the confirmed head are skipped; a gap
    /// after it is refused.
    pub async fn apply_pull(&self, epoch: u64, events: Vec<Event>) -> Result<Pulled, Error> {
        self.check_open()?;
        self.exclusive(self.apply_pull_now(epoch, events)).await
    }

    async fn apply_pull_now(&self, epoch: u64, mut events: Vec<Event>) -> Result<Pulled, Error> {
        let inner = &self.0;
        let tx = idb::transaction(
            &inner.db,
            &["segments", "meta", "outbox"],
            true,
            inner.durability.as_str(),
        )
        .map_err(|e| self.closed_or(e))?;
        let done = idb::done(&tx);
        let meta = tx.object_store("meta").map_err(storage)?;
        let store = tx.object_store("outbox").map_err(storage)?;
        let segments = tx.object_store("segments").map_err(storage)?;
        self.check_epoch(&meta, epoch).await?;
        self.refresh_outbox(&meta, &store).await?;
        let head = as_u64(&get(&meta, "head").await?);
        // Events already confirmed here must be the very ones: another event at a confirmed
        // offset means the server's log is not the one this log confirmed from.
        if events.first().is_some_and(|e| e.seq <= head) {
            let overlap: Vec<&Event> = events.iter().take_while(|e| e.seq <= head).collect();
            self.check_overlap(&segments, &overlap).await?;
        }
        events.retain(|e| e.seq > head);
        let Some(first) = events.first() else {
            done.await.map_err(|e| self.closed_or(e))?;
            return Ok(Pulled {
                confirmed: 0,
                ours: 0,
                head,
            });
        };
        if first.seq != head + 1 {
            return Err(protocol_error(format!(
                "pulled events start at offset {}, but the confirmed log ends at {head}",
                first.seq
            )));
        }
        for (i, e) in events.iter().enumerate() {
            if e.seq != head + 1 + i as u64 {
                return Err(protocol_error(format!(
                    "pulled events are not in dense offset order at offset {}",
                    e.seq
                )));
            }
        }
        let last = head + events.len() as u64;
        // The version cache must be at `head` before it takes the pulled events' versions.
        self.versions_through(&segments, head).await?;

        // From the first write on, a failure aborts the transaction: nothing half-written.
        let mut written = 0u64;
        let mut small = 0u32;
        let mut confirmation = Confirmation::default();
        let mut front = false;
        let rev = inner.outbox.borrow().as_ref().map_or(0, |o| o.rev);
        let writes = (|| -> Result<(), Error> {
            // The confirmed segments, cut like a commit's.
            let mut w = SegmentWriter::new();
            let mut put_segment = |w: SegmentWriter| -> Result<(), Error> {
                let (last, bytes) = self.pack(w);
                if bytes.len() < TARGET_BYTES / 2 {
                    small += 1;
                }
                written += 1;
                segments
                    .put_with_key(&bytes_value(&bytes), &key(last))
                    .map_err(storage)?;
                Ok(())
            };
            for e in &events {
                let size = e.data.len() + e.meta.as_ref().map_or(0, String::len) + 64;
                if w.count() > 0 && w.size() + size > inner.cut_at.get() {
                    put_segment(std::mem::take(&mut w))?;
                }
                w.push(&e.as_ref());
            }
            put_segment(w)?;
            put(&meta, "head", last)?;

            // Our own events come back in batch order: drop them from the outbox. When they
            // are all ours and the outbox's front, as shown, the tables show them (`lag`).
            {
                let mut outbox = inner.outbox.borrow_mut();
                let o = outbox.as_mut().expect("synced");
                confirmation = o.outbox.confirm(&events, o.shown);
                front = confirmation.front && o.shown_valid;
            }
            if !confirmation.changed.is_empty() {
                let outbox = inner.outbox.borrow();
                let o = outbox.as_ref().expect("synced");
                for n in &confirmation.changed {
                    match o.outbox.batch(*n) {
                        Some(p) => store.put_with_key(&bytes_value(&p.encode()), &key(*n)),
                        None => store.delete(&key(*n)),
                    }
                    .map_err(storage)?;
                }
                put(&meta, "outboxRev", rev + 1)?;
            }
            Ok(())
        })();
        if let Err(e) = writes {
            let _ = tx.abort();
            self.outbox_unknown();
            return Err(e);
        }
        let ours = confirmation.ours;
        if let Err(e) = done.await {
            self.outbox_unknown();
            return Err(self.closed_or(e));
        }
        if let Some(o) = inner.outbox.borrow_mut().as_mut() {
            if !confirmation.changed.is_empty() {
                o.rev = rev + 1;
            }
            if front {
                // The stamps after the new head stay what they were.
                o.shown -= events.len();
                o.lag += events.len() as u64;
                o.stamped = (o.stamped == Some(head)).then_some(last);
            } else {
                o.reshaped();
            }
        }
        let mut latest: HashMap<&str, u64> = HashMap::new();
        for e in &events {
            latest.insert(e.stream.as_str(), e.version);
        }
        self.remember(latest.into_iter(), last);
        inner.head.set(last);
        inner.small_segments.set(inner.small_segments.get() + small);
        let mut s = inner.stats.get();
        s.transactions += 1;
        s.segments_written += written;
        s.events_pulled += events.len() as u64;
        inner.stats.set(s);

        // Restamp the outbox after the new head, then show confirmed ⊕ outbox.
        self.read_outbox(&HashSet::new()).await?;
        self.show(Some(&events)).await?;
        if inner.small_segments.get() >= COMPACT_AFTER {
            self.compact_when_idle();
        }
        Ok(Pulled {
            confirmed: events.len() as u64,
            ours,
            head: last,
        })
    }

    /// Compares pulled events at offsets already confirmed (dense, in order) with the stored
    /// ones; a different id at any of them is `DIVERGED`.
    async fn check_overlap(
        &self,
        segments: &IdbObjectStore,
        overlap: &[&Event],
    ) -> Result<(), Error> {
        let (Some(first), Some(last)) = (overlap.first(), overlap.last()) else {
            return Ok(());
        };
        let mut stored: HashMap<u64, EventId> = HashMap::new();
        let mut after = first.seq - 1;
        while after < last.seq {
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
                    if (first.seq..=last.seq).contains(&e.seq) {
                        stored.insert(e.seq, e.id);
                    }
                }
                after = *k;
            }
        }
        for e in overlap {
            let ours = stored.get(&e.seq);
            if ours != Some(&e.id) {
                return Err(Error::Sync {
                    code: "DIVERGED",
                    message: format!(
                        "the server has event {} at offset {}, but {} is confirmed there: it is not the log this one synced with",
                        e.id,
                        e.seq,
                        ours.map_or_else(|| "nothing".to_owned(), ToString::to_string)
                    ),
                });
            }
        }
        Ok(())
    }

    /// The rejections not yet dismissed, as JSON text of a list.
    pub async fn rejections(&self) -> Result<String, Error> {
        self.check_open()?;
        let tx = idb::transaction(&self.0.db, &["rejections"], false, "default")
            .map_err(|e| self.closed_or(e))?;
        let store = tx.object_store("rejections").map_err(storage)?;
        let values: Array = idb::request(&store.get_all().map_err(storage)?)
            .await
            .map_err(storage)?
            .unchecked_into();
        let mut out = String::from("[");
        for (i, v) in values.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&v.as_string().unwrap_or_else(|| "null".into()));
        }
        out.push(']');
        Ok(out)
    }

    /// Records what this log syncs with, unless something is recorded already: `mark` is
    /// [`SyncMark::Log`] (the server log's name) or [`SyncMark::ServerLog`] (its identity
    /// there). Returns what is recorded now; one transaction, so the first tab wins.
    pub async fn claim_sync_mark(&self, mark: SyncMark, value: &str) -> Result<String, Error> {
        self.check_open()?;
        let tx = idb::transaction(&self.0.db, &["meta"], true, self.0.durability.as_str())
            .map_err(|e| self.closed_or(e))?;
        let done = idb::done(&tx);
        let meta = tx.object_store("meta").map_err(storage)?;
        let k = mark.key();
        if let Some(stored) = get(&meta, k).await?.as_string() {
            tx.abort().ok();
            let _ = done.await;
            return Ok(stored);
        }
        meta.put_with_key(&value.into(), &k.into())
            .map_err(storage)?;
        done.await.map_err(|e| self.closed_or(e))?;
        Ok(value.to_owned())
    }

    /// Forgets a rejection; returns whether there was one.
    pub async fn dismiss_rejection(&self, id: u64) -> Result<bool, Error> {
        self.check_open()?;
        let tx = idb::transaction(&self.0.db, &["rejections"], true, "default")
            .map_err(|e| self.closed_or(e))?;
        let done = idb::done(&tx);
        let store = tx.object_store("rejections").map_err(storage)?;
        let found = !idb::request(&store.get(&key(id)).map_err(storage)?)
            .await
            .map_err(storage)?
            .is_undefined();
        store.delete(&key(id)).map_err(storage)?;
        done.await.map_err(|e| self.closed_or(e))?;
        Ok(found)
    }
}
