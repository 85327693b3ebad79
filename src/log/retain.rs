//! Dropping confirmed history a synced log no longer needs locally: the server keeps it all.

use logfold_core::Event;

use super::*;

/// The projections' states at the position a cut ends at, stored as their base snapshots in
/// the cut's transaction: time travel after the cut starts from them.
pub struct Base {
    /// The last position the cut drops, which the states are of.
    pub cut: u64,
    /// Table snapshot key → encoded snapshot.
    pub tables: Vec<(String, Vec<u8>)>,
    /// Reducer snapshot key → stored snapshot.
    pub reducers: Vec<(String, JsValue)>,
}

impl Log {
    /// Deletes the segments that hold only positions before `before` (never past the stream
    /// versions' checkpoint, which it writes first), and returns the first position kept and
    /// how many were dropped. With `base`, it cuts only if the cut ends at `base.cut` (else it
    /// drops nothing: segments were merged meanwhile) and stores the base in the same
    /// transaction. The caller makes sure every projection has a snapshot at or after the cut
    /// (see the JS `truncateBefore`); the outbox is not touched.
    pub async fn truncate_before(
        &self,
        before: u64,
        base: Option<Base>,
    ) -> Result<(u64, u64), Error> {
        self.check_open()?;
        if !self.is_synced() {
            return Err(Error::argument(
                "truncateBefore",
                "only a synced log drops history (the server keeps it); this log has no other copy",
            ));
        }
        // Alone, like compaction: no append or merge of this tab in between.
        self.wait_idle().await;
        self.0.writing.set(true);
        let mut result = self.checkpoint_streams().await.map(|()| (0, 0));
        if result.is_ok() {
            result = self.drop_before(before, base.as_ref()).await;
        }
        self.finish_writing();
        self.start_writer_if_queued();
        result
    }

    /// The lowest position of this log's projections' stored snapshots (`u64::MAX - 1` with no
    /// projections); a projection without a readable one gives 0, which stops any cut.
    async fn snapshots_at(&self, store: &IdbObjectStore) -> Result<u64, Error> {
        let p = &self.0.projections;
        let keys: Vec<String> = p
            .table_keys()
            .into_iter()
            .chain(p.reducers.iter().cloned())
            .collect();
        let reqs = keys
            .iter()
            .map(|k| store.get(&k.as_str().into()).map_err(storage))
            .collect::<Result<Vec<_>, _>>()?;
        let mut at = u64::MAX - 1;
        for (i, req) in reqs.iter().enumerate() {
            let value = idb::request(req).await.map_err(storage)?;
            let seq = if i < p.tables.len() {
                value
                    .dyn_ref::<js_sys::ArrayBuffer>()
                    .and_then(|b| snapshot::position(&Uint8Array::new(b).to_vec()))
            } else {
                js_sys::Reflect::get(&value, &"seq".into())
                    .ok()
                    .and_then(|s| s.as_f64())
                    .map(|s| s as u64)
            };
            at = at.min(seq.unwrap_or(0));
        }
        Ok(at)
    }

    /// The last position a cut before `before` would drop (the last one dropped so far when it
    /// would drop none): JS folds the projections' states there first, as their base snapshots.
    pub async fn cut_point(&self, before: u64) -> Result<u64, Error> {
        self.check_open()?;
        // The checkpoint bounds the cut: it is moved to the head first, as the cut itself does.
        self.wait_idle().await;
        self.0.writing.set(true);
        let mut result = self.checkpoint_streams().await;
        let mut cut = 0;
        if result.is_ok() {
            result = async {
                let tx = idb::transaction(
                    &self.0.db,
                    &["segments", "meta", "snapshots"],
                    false,
                    "default",
                )
                .map_err(|e| self.closed_or(e))?;
                let (at, truncated, _) = self.plan_cut(&tx, before).await?;
                cut = at.max(truncated);
                Ok(())
            }
            .await;
        }
        self.finish_writing();
        self.start_writer_if_queued();
        result.map(|()| cut)
    }

    /// (the cut, the last position dropped so far, `meta.compacted`) for a cut before `before`:
    /// whole segments, never past a projection's stored snapshot (open folds each on from its
    /// own) or the stream versions' checkpoint (open takes the versions after it from the
    /// segments).
    async fn plan_cut(
        &self,
        tx: &web_sys::IdbTransaction,
        before: u64,
    ) -> Result<(u64, u64, u64), Error> {
        let segments = tx.object_store("segments").map_err(storage)?;
        let meta = tx.object_store("meta").map_err(storage)?;
        let snapshots = tx.object_store("snapshots").map_err(storage)?;
        let before = before.min(self.snapshots_at(&snapshots).await? + 1);
        let get = |k: &str| meta.get(&k.into()).map_err(storage);
        let (truncated, through, compacted) =
            (get("truncated")?, get("streamsThrough")?, get("compacted")?);
        let truncated = as_u64(&idb::request(&truncated).await.map_err(storage)?);
        let through = as_u64(&idb::request(&through).await.map_err(storage)?);
        let compacted = as_u64(&idb::request(&compacted).await.map_err(storage)?);
        let before = before.min(through + 1);
        let cut = as_u64(
            &idb::last_key_below(&segments, before as f64)
                .await
                .map_err(storage)?,
        );
        Ok((cut, truncated, compacted))
    }

    async fn drop_before(&self, before: u64, base: Option<&Base>) -> Result<(u64, u64), Error> {
        let inner = &self.0;
        let tx = idb::transaction(
            &inner.db,
            &["segments", "meta", "snapshots"],
            true,
            inner.durability.as_str(),
        )
        .map_err(|e| self.closed_or(e))?;
        let done = idb::done(&tx);
        let (cut, truncated, compacted) = self.plan_cut(&tx, before).await?;
        if cut <= truncated || base.is_some_and(|b| b.cut != cut) {
            done.await.map_err(|e| self.closed_or(e))?;
            inner.truncated.set(truncated);
            return Ok((truncated + 1, 0));
        }
        let write = || -> Result<(), Error> {
            let segments = tx.object_store("segments").map_err(storage)?;
            let meta = tx.object_store("meta").map_err(storage)?;
            let dropped = IdbKeyRange::upper_bound(&key(cut)).map_err(storage)?;
            segments.delete(&dropped).map_err(storage)?;
            if let Some(base) = base {
                let snapshots = tx.object_store("snapshots").map_err(storage)?;
                let tables = base
                    .tables
                    .iter()
                    .map(|(k, bytes)| (k, Uint8Array::from(&bytes[..]).buffer().into()));
                for (k, value) in tables.chain(base.reducers.iter().map(|(k, v)| (k, v.clone()))) {
                    snapshots
                        .put_with_key(&value, &base_key(k).into())
                        .map_err(storage)?;
                }
            }
            meta.put_with_key(&key(cut), &"truncated".into())
                .map_err(storage)?;
            if compacted < cut {
                meta.put_with_key(&key(cut), &"compacted".into())
                    .map_err(storage)?;
            }
            Ok(())
        };
        // A put that throws (a reducer state the store cannot clone) must not leave the delete
        // to commit without the mark that says where the log starts.
        if let Err(e) = write() {
            tx.abort().ok();
            let _ = done.await;
            return Err(e);
        }
        done.await.map_err(|e| self.closed_or(e))?;
        inner.truncated.set(cut);
        Ok((cut + 1, cut - truncated))
    }
}

/// The segments that write the server's `events` back into a log, below what it keeps (see
/// the JS `backfill`, which checks they end right before its first position kept): each
/// segment's key (its last position) and bytes, cut at twice a commit's target size. `None`
/// unless the events are dense positions (and there are some).
pub fn backfill_segments(events: &[Event]) -> Option<Vec<(u64, Vec<u8>)>> {
    let first = events.first()?.seq;
    if !events.iter().zip(first..).all(|(e, seq)| e.seq == seq) {
        return None;
    }
    let mut out = Vec::new();
    let mut w = SegmentWriter::new();
    let mut cut = |w: SegmentWriter| out.push((w.first_seq() + w.count() - 1, w.finish_packed()));
    for e in events {
        if w.count() > 0 && w.size() + e.data.len() > 2 * TARGET_BYTES {
            cut(std::mem::take(&mut w));
        }
        w.push(&e.as_ref());
    }
    cut(w);
    Some(out)
}
