//! Checking the log at open (folding it on the way), and repair.

use super::*;

/// Verifies the log from the segment holding position `start` to the head (see
/// [`first_damage`]) and folds it into the projections on the way, so open reads that part
/// once. Also collects the stream versions of the events after the `streams` store's
/// checkpoint. Returns the head.
pub(super) async fn verify_and_fold(
    db: &IdbDatabase,
    start: u64,
    tables: &mut Tables,
    p: &Projections,
    stats: &mut Stats,
    (streams_through, versions): (u64, &mut HashMap<String, u64>),
) -> Result<u64, Error> {
    let mut text = None;
    let mut replayed = 0;
    let mut visit = |seg: Option<&Segment<'_>>, head: u64| -> Result<(), Error> {
        if let Some(seg) = seg.filter(|s| s.last_seq() > streams_through) {
            for e in seg.events() {
                let e = e.map_err(|e| Error::corrupt(seg.first_seq(), seg.last_seq(), e))?;
                if e.seq > streams_through {
                    versions.insert(e.stream.to_owned(), e.version);
                }
            }
        }
        let Some(seg) = seg else {
            // A page ended: hand its events to JS and report progress.
            let events = text.take().filter(|t: &String| t.len() > 1).map(|mut t| {
                t.push(']');
                t
            });
            if events.is_some() {
                p.fold(events, None, tables.seq(), false);
            }
            p.call("progress", &[key(tables.seq().min(head)), key(head)]);
            return Ok(());
        };
        if tables.seq() == u64::MAX {
            return Ok(()); // nothing to fold
        }
        if text.is_none() && !p.reducers.is_empty() {
            text = Some(String::from("["));
        }
        let from = seg.first_seq();
        replayed += fold_segment(tables, seg, u64::MAX, text.as_mut())
            .map_err(|e| Error::corrupt(from, seg.last_seq(), e))?;
        Ok(())
    };
    let result = first_damage(db, start, &mut visit).await?;
    stats.events_replayed += replayed;
    match result {
        (head, None) => {
            // Also when the log is empty, or nothing needed folding.
            tables.set_seq(head);
            Ok(head)
        }
        (_, Some(e)) => Err(e),
    }
}

/// Sees each intact segment, then `None` at the end of each page; the `u64` is the head.
pub(super) type Visit<'v> = dyn FnMut(Option<&Segment<'_>>, u64) -> Result<(), Error> + 'v;

/// The head, and the first damaged segment from the one holding position `start` on, as a
/// `Corrupt` (or `UnsupportedFormat`) error: each segment must be intact, begin right after
/// the one before it ends, and the last must end at the head. One readonly transaction, so
/// appends and compaction in other tabs cannot make an intact log look damaged halfway. `visit`
/// sees each intact segment in order, and `None` after each page; the next page is already
/// being read meanwhile.
pub(super) async fn first_damage(
    db: &IdbDatabase,
    start: u64,
    visit: &mut Visit<'_>,
) -> Result<(u64, Option<Error>), Error> {
    let tx = idb::transaction(db, &["segments", "meta"], false, "default").map_err(storage)?;
    let meta = tx.object_store("meta").map_err(storage)?;
    let store = tx.object_store("segments").map_err(storage)?;
    let head_req = meta.get(&"head".into()).map_err(storage)?;
    let truncated_req = meta.get(&"truncated".into()).map_err(storage)?;
    // From the segment holding `start`: the ones after the last that ends before it, and
    // never before what `truncate_before` dropped.
    let mut prev = 0;
    if start > 1 {
        let below = idb::last_key_below(&store, start as f64).await;
        prev = as_u64(&below.map_err(storage)?);
    }
    prev = prev.max(as_u64(
        &idb::request(&truncated_req).await.map_err(storage)?,
    ));
    let mut next = request_segments(&store, prev, PAGE)?;
    let head = as_u64(&idb::request(&head_req).await.map_err(storage)?);
    loop {
        let (keys, values) = next.get().await?;
        let Some(last) = keys.last() else { break };
        next = request_segments(&store, *last, PAGE)?;
        for (k, bytes) in keys.iter().zip(&values) {
            let mut scratch = Vec::new();
            let seg = match Segment::parse_in(bytes, &mut scratch) {
                Ok(seg) => seg,
                Err(e) => return Ok((head, Some(Error::corrupt(prev + 1, *k, e)))),
            };
            if seg.first_seq() != prev + 1 || seg.last_seq() != *k {
                return Ok((head, Some(wrong_span(&seg, prev + 1, *k))));
            }
            if let Err(e) = visit(Some(&seg), head) {
                return Ok((head, Some(e)));
            }
            prev = *k;
        }
        visit(None, head)?;
    }
    if prev != head {
        let reason = format!("the log's head is {head} but its segments end at {prev}");
        return Ok((
            head,
            Some(Error::Corrupt {
                from: prev + 1,
                to: head.max(prev + 1),
                reason,
            }),
        ));
    }
    Ok((head, None))
}

impl Log {
    /// Checks the segments open did not read (see [`Log::open`]); damage is the `Corrupt`
    /// error open would have given. A log closed meanwhile gives `Closed`.
    pub async fn verify_rest(&self) -> Result<(), Error> {
        self.check_open()?;
        let through = self.0.unverified.get();
        if through > 0 {
            verify_prefix(&self.0.db, through)
                .await
                .map_err(|e| match self.0.closed.get() {
                    Some(reason) => Error::Closed(reason),
                    None => e,
                })?;
            self.0.unverified.set(0);
        }
        Ok(())
    }
}

/// Checks the segments up to the one holding position `through` (those open did not read), a
/// page per readonly transaction, so appends here and in other tabs wait for a page at most.
/// Between pages another tab may compact: a page may then begin with a merged segment that
/// starts before the last one checked, but never after it.
pub(super) async fn verify_prefix(db: &IdbDatabase, through: u64) -> Result<(), Error> {
    let mut prev = 0u64;
    loop {
        let tx = idb::transaction(db, &["segments", "meta"], false, "default").map_err(storage)?;
        let store = tx.object_store("segments").map_err(storage)?;
        let meta = tx.object_store("meta").map_err(storage)?;
        let truncated = meta.get(&"truncated".into()).map_err(storage)?;
        let truncated = as_u64(&idb::request(&truncated).await.map_err(storage)?);
        // Never before what `truncate_before` dropped, here or in another tab meanwhile; a cut
        // at or past `through` leaves nothing to check.
        prev = prev.max(truncated);
        if prev >= through {
            return Ok(());
        }
        let (keys, values) = read_segments(&store, prev, PAGE).await?;
        if keys.is_empty() {
            return Err(Error::Corrupt {
                from: prev + 1,
                to: through.max(prev + 1),
                reason: format!("the segments end at {prev}, before position {through}"),
            });
        }
        for (i, (k, bytes)) in keys.iter().zip(&values).enumerate() {
            let mut scratch = Vec::new();
            let seg = Segment::parse_in(bytes, &mut scratch)
                .map_err(|e| Error::corrupt(prev + 1, *k, e))?;
            let joins = seg.first_seq() == prev + 1 || (i == 0 && seg.first_seq() <= prev + 1);
            if !joins || seg.last_seq() != *k {
                return Err(wrong_span(&seg, prev + 1, *k));
            }
            prev = *k;
            if prev >= through {
                return Ok(());
            }
        }
    }
}

/// What [`repair`] did: the new head and the positions it dropped.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RepairReport {
    /// The head after repair.
    pub head: u64,
    /// The positions dropped, if any were damaged.
    pub dropped: Option<(u64, u64)>,
    /// The sync records dropped or rewritten, e.g. `outbox 6`, `meta nextBatch`.
    pub records: Vec<String>,
}

/// Keeps the intact prefix of log `name`: drops the first damaged segment and all after it,
/// then rebuilds the stream versions from what is left.
pub async fn repair(name: &str) -> Result<RepairReport, Error> {
    let db = connect(name).await?;
    let result = repair_db(&db).await;
    db.close();
    result
}

pub(super) async fn repair_db(db: &IdbDatabase) -> Result<RepairReport, Error> {
    let (head, dropped) = repair_segments(db).await?;
    let records = repair_sync_records(db).await?;
    Ok(RepairReport {
        head,
        dropped,
        records,
    })
}

/// Drops the first damaged segment and all after it; returns the head and what was dropped.
async fn repair_segments(db: &IdbDatabase) -> Result<(u64, Option<(u64, u64)>), Error> {
    let (head, damage) = first_damage(db, 0, &mut |_, _| Ok(())).await?;
    let damage = match damage {
        None => return Ok((head, None)),
        Some(Error::Corrupt { from, .. }) => from,
        Some(e) => return Err(e),
    };
    let keep = damage - 1;

    let tx =
        idb::transaction(db, &["segments", "streams", "meta"], true, "strict").map_err(storage)?;
    let done = idb::done(&tx);
    let segments = tx.object_store("segments").map_err(storage)?;
    let streams = tx.object_store("streams").map_err(storage)?;
    let meta = tx.object_store("meta").map_err(storage)?;
    let range = IdbKeyRange::lower_bound_with_open(&key(keep), true).map_err(storage)?;
    segments.delete(&range).map_err(storage)?;
    rewrite_streams(&segments, &streams, &meta, keep).await?;
    meta.put_with_key(&key(keep), &"head".into())
        .map_err(storage)?;
    // Compaction starts again at the first segment kept.
    let truncated = meta.get(&"truncated".into()).map_err(storage)?;
    let truncated = idb::request(&truncated).await.map_err(storage)?;
    meta.put_with_key(&key(as_u64(&truncated)), &"compacted".into())
        .map_err(storage)?;
    done.await.map_err(storage)?;
    Ok((keep, Some((damage, head.max(damage)))))
}

/// Drops the outbox batches and rejections that cannot be read, and puts the next batch
/// number back above every stored one, so a synced log opens again. A dropped batch's events
/// are lost: its record no longer says what they were (and the server never had them whole).
async fn repair_sync_records(db: &IdbDatabase) -> Result<Vec<String>, Error> {
    let tx =
        idb::transaction(db, &["outbox", "rejections", "meta"], true, "strict").map_err(storage)?;
    let done = idb::done(&tx);
    let outbox = tx.object_store("outbox").map_err(storage)?;
    let rejections = tx.object_store("rejections").map_err(storage)?;
    let meta = tx.object_store("meta").map_err(storage)?;
    let reqs = [
        outbox.get_all_keys().map_err(storage)?,
        outbox.get_all().map_err(storage)?,
        rejections.get_all_keys().map_err(storage)?,
        rejections.get_all().map_err(storage)?,
    ];
    let synced_req = meta.get(&"synced".into()).map_err(storage)?;
    let next_req = meta.get(&"nextBatch".into()).map_err(storage)?;
    let acked_req = meta.get(&"ackedThrough".into()).map_err(storage)?;
    let rev_req = meta.get(&"outboxRev".into()).map_err(storage)?;
    let check_req = meta.get(&"outboxCheck".into()).map_err(storage)?;
    let mut got = Vec::with_capacity(reqs.len());
    for r in &reqs {
        got.push(Array::from(&idb::request(r).await.map_err(storage)?));
    }
    let synced = idb::request(&synced_req).await.map_err(storage)?;
    let next = idb::request(&next_req).await.map_err(storage)?;
    let acked = as_u64(&idb::request(&acked_req).await.map_err(storage)?);
    let rev = as_u64(&idb::request(&rev_req).await.map_err(storage)?);
    let check = idb::request(&check_req).await.map_err(storage)?;
    if !synced.is_truthy() {
        // A log without sync has no outbox, and no batch counter to put back.
        done.await.map_err(storage)?;
        return Ok(Vec::new());
    }
    let mut fixed = Vec::new();
    let present = sync::outbox_check(got[0].iter().map(|k| as_u64(&k)));
    if let Some(expected) = sync::outbox_mismatch(&check, &present) {
        let missing = expected.saturating_sub(u64::from(got[0].length()));
        fixed.push(format!("outbox: {missing} missing"));
    }
    let mut kept = Vec::new();
    let mut top = 0;
    for (k, v) in got[0].iter().zip(got[1].iter()) {
        let n = as_u64(&k);
        let bytes = match v.dyn_ref::<js_sys::ArrayBuffer>() {
            Some(b) => Uint8Array::new(b).to_vec(),
            None => Vec::new(),
        };
        if logfold_core::sync::OutboxBatch::decode(n, &bytes).is_ok_and(|b| !b.events.is_empty()) {
            top = top.max(n);
            kept.push(n);
        } else {
            outbox.delete(&k).map_err(storage)?;
            fixed.push(format!("outbox {n}"));
        }
    }
    for (k, v) in got[2].iter().zip(got[3].iter()) {
        let n = as_u64(&k);
        let json = v.as_string().unwrap_or_default();
        if logfold_core::sync::Rejection::ids_from_json(&json).is_ok() {
            top = top.max(n);
        } else {
            rejections.delete(&k).map_err(storage)?;
            fixed.push(format!("rejections {n}"));
        }
    }
    // The engine refuses a counter at or below a stored batch, and a number at or below the
    // acknowledged ones is taken for acknowledged (and the server has it): never reuse one.
    let top = top.max(acked);
    // A missing counter is read as 1, which is right while no batch number was ever used.
    let stored_next = next.as_f64().filter(|f| f.fract() == 0.0 && *f >= 1.0);
    if stored_next.map_or(top > 0, |f| (f as u64) <= top) {
        meta.put_with_key(&key(top + 1), &"nextBatch".into())
            .map_err(storage)?;
        fixed.push("meta nextBatch".to_owned());
    }
    if !fixed.is_empty() {
        // Other tabs read the outbox again.
        meta.put_with_key(&key(rev + 1), &"outboxRev".into())
            .map_err(storage)?;
        meta.put_with_key(&sync::outbox_check(kept.into_iter()), &"outboxCheck".into())
            .map_err(storage)?;
    }
    done.await.map_err(storage)?;
    Ok(fixed)
}
