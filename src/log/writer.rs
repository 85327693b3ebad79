//! Appends: the queue, group commit (one transaction for the batches that wait), and the
//! commit of a log that confirms its own appends.

use super::*;

/// A commit's writes as issued: the outcome per batch and what the log becomes once the
/// transaction commits.
struct Placement {
    results: Vec<Result<Appended, Error>>,
    head: u64,
    versions: HashMap<String, u64>,
    time: u64,
    written: u64,
    small: u32,
    count: u64,
}

impl Log {
    /// Appends a batch atomically. Calls that arrive while a commit is in flight are written
    /// together in the next transaction (group commit); each keeps its own atomicity.
    pub async fn append(&self, batch: Batch) -> Result<Appended, Error> {
        self.submit(batch).await
    }

    /// Queues a batch at once and returns the future of its outcome, so a caller can queue
    /// several before awaiting any and have them share one transaction.
    pub fn submit(
        &self,
        batch: Batch,
    ) -> impl std::future::Future<Output = Result<Appended, Error>> {
        let queued = self.enqueue(batch);
        async move {
            match queued? {
                Some(rx) => rx.await.unwrap_or(Err(Error::Closed(CloseReason::Closed))),
                None => Ok(Appended {
                    time: js_sys::Date::now() as u64,
                    events: Vec::new(),
                }),
            }
        }
    }

    /// The reply channel of a queued batch; `None` for an empty one, which writes nothing.
    pub(super) fn enqueue(
        &self,
        batch: Batch,
    ) -> Result<Option<oneshot::Receiver<Result<Appended, Error>>>, Error> {
        self.check_open()?;
        batch.validate(&self.0.limits)?;
        if batch.events.is_empty() {
            return Ok(None);
        }
        if self.is_synced() {
            // What the server would refuse must not reach the outbox and the tables.
            check_batch(&batch, &self.0.client_id, self.0.max_push_bytes)
                .map_err(|e| Error::argument("events", e.to_string()))?;
        }
        let (tx, rx) = oneshot::channel();
        self.0.queue.borrow_mut().push((batch, tx));
        self.start_writer();
        Ok(Some(rx))
    }

    pub(super) fn start_writer(&self) {
        if self.0.writing.replace(true) {
            return;
        }
        let log = self.clone();
        wasm_bindgen_futures::spawn_local(async move {
            loop {
                let group = std::mem::take(&mut *log.0.queue.borrow_mut());
                if !group.is_empty() {
                    log.commit_group(group).await;
                    continue;
                }
                // A backlog this large is merged now, between appends; a smaller one waits for
                // a quiet moment so it never delays an append that is waiting.
                if log.0.small_segments.get() >= COMPACT_NOW && log.0.closed.get().is_none() {
                    log.0.small_segments.set(0);
                    // Best effort: a failed compaction leaves the segments as they were.
                    let _ = log.compact_once().await;
                    continue;
                }
                if log.0.dirty.borrow().len() >= CHECKPOINT_NOW && log.0.closed.get().is_none() {
                    // Best effort too: the versions stay in memory until a checkpoint succeeds.
                    if log.checkpoint_streams().await.is_ok() {
                        continue;
                    }
                }
                break;
            }
            log.finish_writing();
            if log.0.small_segments.get() >= COMPACT_AFTER || !log.0.dirty.borrow().is_empty() {
                log.compact_when_idle();
            }
        });
    }

    /// Marks the store free and wakes whoever waits for that (`close`, `compact`).
    pub(super) fn finish_writing(&self) {
        self.0.writing.set(false);
        for waiter in self.0.idle.borrow_mut().drain(..) {
            let _ = waiter.send(());
        }
    }

    pub(super) async fn commit_group(&self, group: Vec<(Batch, Reply)>) {
        if let Err(e) = self.check_open() {
            for (_, reply) in group {
                let _ = reply.send(Err(e.clone()));
            }
            return;
        }
        let batches: Vec<&Batch> = group.iter().map(|(b, _)| b).collect();
        match self.commit(&batches).await {
            Ok(results) => {
                for ((_, reply), result) in group.into_iter().zip(results) {
                    let _ = reply.send(result);
                }
            }
            // One call's quota failure must not fail the small calls that joined it.
            Err(Error::QuotaExceeded) if group.len() > 1 => {
                for (batch, reply) in group {
                    let result = match self.commit(&[&batch]).await {
                        Ok(mut r) => r.pop().expect("one result per batch"),
                        Err(e) => Err(e),
                    };
                    let _ = reply.send(result);
                }
            }
            Err(e) => {
                for (_, reply) in group {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }

    /// One transaction: read the head and stream versions, assign positions, write segments.
    /// The outer error means the transaction failed and nothing was written.
    ///
    /// When the version cache knows every stream of `batches`, the head and the versions come
    /// from memory and the writes go out together with the reads that check that the stored
    /// head is still the one the cache is current at, saving a round trip to IndexedDB. If the
    /// check fails (another tab appended, or made the log synced), the transaction is aborted,
    /// nothing is written, and the commit is redone reading first.
    pub(super) async fn commit(
        &self,
        batches: &[&Batch],
    ) -> Result<Vec<Result<Appended, Error>>, Error> {
        if self.is_synced() {
            return self.commit_outbox(batches).await;
        }
        let inner = &self.0;
        let mut cached = self.cached_versions(batches);
        loop {
            let tx = idb::transaction(
                &inner.db,
                &["segments", "streams", "meta"],
                true,
                inner.durability.as_str(),
            )
            .map_err(|e| self.closed_or(e))?;
            let done = idb::done(&tx);
            let segments = tx.object_store("segments").map_err(storage)?;
            let streams = tx.object_store("streams").map_err(storage)?;
            let meta = tx.object_store("meta").map_err(storage)?;
            // Another tab may have made the log synced since this one opened: its history is
            // the outbox now, and a write here would land in the confirmed log.
            let synced = meta.get(&"synced".into()).map_err(storage)?;
            let (head, placed) = match cached.take() {
                Some((head, versions)) => {
                    let stored_head = meta.get(&"head".into()).map_err(storage)?;
                    let placed = self.write_placed(&segments, &meta, batches, head, versions);
                    let stored = as_u64(&idb::request(&stored_head).await.map_err(storage)?);
                    let synced = idb::request(&synced).await.map_err(storage)?.is_truthy();
                    if stored != head || synced {
                        tx.abort().ok();
                        let _ = done.await;
                        continue;
                    }
                    (head, placed)
                }
                None => {
                    let mut names: HashSet<&str> = HashSet::new();
                    for b in batches {
                        names.extend(b.events.iter().map(|e| e.stream.as_str()));
                    }
                    let (head, versions) = self
                        .stored_versions(&meta, &segments, &streams, &names, None)
                        .await?;
                    if idb::request(&synced).await.map_err(storage)?.is_truthy() {
                        tx.abort().ok();
                        let _ = done.await;
                        self.close_for(CloseReason::Synced);
                        return Err(Error::Closed(CloseReason::Synced));
                    }
                    (
                        head,
                        self.write_placed(&segments, &meta, batches, head, versions),
                    )
                }
            };
            let placed = match placed {
                Ok(p) => p,
                Err(e) => {
                    tx.abort().ok();
                    let _ = done.await;
                    return Err(e);
                }
            };
            done.await.map_err(|e| self.closed_or(e))?;
            return Ok(self.committed(head, placed, batches).await);
        }
    }

    /// The head the version cache is current at and the versions of every stream of
    /// `batches`, if memory knows them all.
    fn cached_versions(&self, batches: &[&Batch]) -> Option<(u64, HashMap<String, u64>)> {
        let mut versions = HashMap::new();
        for e in batches.iter().flat_map(|b| &b.events) {
            if !versions.contains_key(&e.stream) {
                versions.insert(e.stream.clone(), self.cached_version(&e.stream)?);
            }
        }
        Some((self.0.versions_at.get(), versions))
    }

    /// Assigns positions after `head` and versions from `versions`, and issues the segment
    /// puts and the head's in the caller's transaction.
    fn write_placed(
        &self,
        segments: &IdbObjectStore,
        meta: &IdbObjectStore,
        batches: &[&Batch],
        mut head: u64,
        mut versions: HashMap<String, u64>,
    ) -> Result<Placement, Error> {
        let inner = &self.0;
        let time = js_sys::Date::now() as u64;
        let results: Vec<Result<Appended, Error>> = {
            let mut ids = inner.ids.borrow_mut();
            batches
                .iter()
                .map(|b| {
                    let events = place(b, &mut head, &mut versions, &mut ids, time)
                        .map_err(Error::Conflict)?;
                    Ok(Appended { time, events })
                })
                .collect()
        };

        let mut written = 0u64;
        let mut small = 0u32;
        let mut count = 0u64;
        let mut put = |w: SegmentWriter| -> Result<(), Error> {
            let (last, bytes) = self.pack(w);
            if bytes.len() < TARGET_BYTES / 2 {
                small += 1;
            }
            written += 1;
            segments
                .put_with_key(&Uint8Array::from(&bytes[..]).buffer(), &key(last))
                .map_err(storage)?;
            Ok(())
        };
        let mut w = SegmentWriter::new();
        for (batch, result) in batches.iter().zip(&results) {
            let Ok(appended) = result else { continue };
            for (e, p) in batch.events.iter().zip(&appended.events) {
                let size = e.data.len() + e.meta.as_ref().map_or(0, String::len) + 64;
                if w.count() > 0 && w.size() + size > inner.cut_at.get() {
                    put(std::mem::take(&mut w))?;
                }
                w.push(&e.placed(p, time, &inner.client_id));
                count += 1;
            }
        }
        if w.count() > 0 {
            put(w)?;
        }
        // No `streams` records here: the cache holds the new versions until a checkpoint
        // writes them, which keeps a commit to one segment put and the head's.
        if count > 0 {
            meta.put_with_key(&key(head), &"head".into())
                .map_err(storage)?;
        }
        Ok(Placement {
            results,
            head,
            versions,
            time,
            written,
            small,
            count,
        })
    }

    /// After the transaction committed: the cache, the counters and the projections.
    async fn committed(
        &self,
        head_before: u64,
        p: Placement,
        batches: &[&Batch],
    ) -> Vec<Result<Appended, Error>> {
        let inner = &self.0;
        if p.count > 0 {
            // Once per stream, not per event. A stream whose batch failed keeps the version it
            // was read at, which is still its version; one with no events stays unrecorded.
            let known = p.versions.iter().filter(|(_, v)| **v > 0);
            self.remember(known.map(|(s, v)| (s.as_str(), *v)), p.head);
        }
        inner.head.set(inner.head.get().max(p.head));
        inner
            .small_segments
            .set(inner.small_segments.get() + p.small);
        let mut s = inner.stats.get();
        s.transactions += 1;
        s.segments_written += p.written;
        s.events_appended += p.count;
        inner.stats.set(s);
        if p.count > 0 {
            self.fold_committed(head_before, p.head, batches, &p.results, p.time)
                .await;
        }
        p.results
    }

    /// Compresses a segment; returns its key (its last position) and bytes. Segments are cut
    /// before they are compressed: this aims the next cut so that it compresses to about the
    /// target, as this one did (at most twice the target, so a sudden run of incompressible
    /// data stays near Chromium's 64 KiB blob threshold).
    pub(super) fn pack(&self, w: SegmentWriter) -> (u64, Vec<u8>) {
        let last = w.first_seq() + w.count() - 1;
        let raw = w.size();
        let bytes = w.finish_packed();
        let aim = TARGET_BYTES as f64 * 0.9 * raw as f64 / bytes.len() as f64;
        self.0
            .cut_at
            .set((aim as usize).clamp(TARGET_BYTES, 2 * TARGET_BYTES));
        (last, bytes)
    }

    pub(super) fn start_writer_if_queued(&self) {
        if !self.0.queue.borrow().is_empty() {
            self.start_writer();
        }
    }

    pub(super) async fn wait_idle(&self) {
        while self.0.writing.get() {
            let (tx, rx) = oneshot::channel();
            self.0.idle.borrow_mut().push(tx);
            let _ = rx.await;
        }
    }
}
