//! Compaction: small segments merged into bigger ones, when the log is idle.

use super::*;

impl Log {
    /// Compacts and checkpoints stream versions once no append has come for `IDLE_MS`.
    pub(super) fn compact_when_idle(&self) {
        if self.0.compaction_scheduled.replace(true) {
            return;
        }
        let log = self.clone();
        wasm_bindgen_futures::spawn_local(async move {
            loop {
                let seen = log.0.stats.get().transactions;
                let _ = idb::sleep(IDLE_MS).await;
                if log.0.closed.get().is_some() {
                    break;
                }
                if !log.0.writing.get() && log.0.stats.get().transactions == seen {
                    log.0.writing.set(true);
                    if log.0.small_segments.replace(0) >= COMPACT_AFTER {
                        let _ = log.compact_once().await;
                    }
                    let _ = log.checkpoint_streams().await;
                    log.finish_writing();
                    log.start_writer_if_queued();
                    break;
                }
            }
            log.0.compaction_scheduled.set(false);
        });
    }

    /// Does now what otherwise waits for a pause in appends: merges runs of small adjacent
    /// segments and checkpoints stream versions.
    pub async fn compact(&self) -> Result<(), Error> {
        self.check_open()?;
        self.wait_idle().await;
        self.0.writing.set(true);
        let mut result = self.compact_once().await;
        if result.is_ok() {
            result = self.checkpoint_streams().await;
        }
        self.finish_writing();
        self.start_writer_if_queued();
        result
    }

    /// One compaction transaction over the segments after `meta.compacted`.
    pub(super) async fn compact_once(&self) -> Result<(), Error> {
        let inner = &self.0;
        let tx = idb::transaction(
            &inner.db,
            &["segments", "meta"],
            true,
            inner.durability.as_str(),
        )
        .map_err(|e| self.closed_or(e))?;
        let done = idb::done(&tx);
        let segments = tx.object_store("segments").map_err(storage)?;
        let meta = tx.object_store("meta").map_err(storage)?;
        let compacted = as_u64(
            &idb::request(&meta.get(&"compacted".into()).map_err(storage)?)
                .await
                .map_err(storage)?,
        );
        let (keys, values) = read_segments(&segments, compacted, COMPACT_BATCH).await?;

        let mut merged = 0u64;
        let mut done_through = compacted;
        let mut run: Vec<usize> = Vec::new();
        let mut run_bytes = 0usize;
        let mut prev = compacted;
        let mut flush = |run: &mut Vec<usize>, run_bytes: &mut usize| -> Result<(), Error> {
            if run.len() >= 2 {
                let mut w = SegmentWriter::new();
                for &i in run.iter() {
                    let lo = if i == 0 { compacted } else { keys[i - 1] };
                    let mut scratch = Vec::new();
                    // Damage or a gap stops the merge: it would seal them in a sound segment.
                    let seg = parse_holding(&values[i], &mut scratch, lo + 1, keys[i])?;
                    if seg.first_seq() != lo + 1 {
                        return Err(wrong_span(&seg, lo + 1, keys[i]));
                    }
                    for e in seg.events() {
                        w.push(&e.map_err(|e| Error::corrupt(lo + 1, keys[i], e))?);
                    }
                }
                let last = keys[*run.last().expect("non-empty run")];
                for &i in &run[..run.len() - 1] {
                    segments.delete(&key(keys[i])).map_err(storage)?;
                }
                segments
                    .put_with_key(
                        &Uint8Array::from(&w.finish_packed()[..]).buffer(),
                        &key(last),
                    )
                    .map_err(storage)?;
                merged += run.len() as u64;
            }
            run.clear();
            *run_bytes = 0;
            Ok(())
        };
        for (i, bytes) in values.iter().enumerate() {
            if bytes.len() >= TARGET_BYTES / 2 {
                flush(&mut run, &mut run_bytes)?;
                done_through = keys[i];
            } else {
                if run_bytes + bytes.len() > TARGET_BYTES {
                    flush(&mut run, &mut run_bytes)?;
                    done_through = prev;
                }
                run.push(i);
                run_bytes += bytes.len();
            }
            prev = keys[i];
        }
        flush(&mut run, &mut run_bytes)?;
        if done_through != compacted {
            meta.put_with_key(&key(done_through), &"compacted".into())
                .map_err(storage)?;
        }
        done.await.map_err(|e| self.closed_or(e))?;
        let mut s = inner.stats.get();
        s.transactions += 1;
        s.compactions += 1;
        s.segments_merged += merged;
        inner.stats.set(s);
        Ok(())
    }
}
