//! Checking the log at open (folding it on the way), and the check `Logfold.repair` runs.

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
        if let Err(e) = check_segments(prev, &keys, &values, &mut |seg| visit(Some(seg), head)) {
            return Ok((head, Some(e)));
        }
        prev = *last;
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

/// Checks segments read in order after position `prev`, showing each intact one to `visit`:
/// each must be intact, begin right after the one before it, and end at its key. The error is
/// the first damage (`Corrupt` or `UnsupportedFormat`), or what `visit` failed with.
pub fn check_segments(
    mut prev: u64,
    keys: &[u64],
    values: &[Vec<u8>],
    visit: &mut dyn FnMut(&Segment<'_>) -> Result<(), Error>,
) -> Result<(), Error> {
    for (k, bytes) in keys.iter().zip(values) {
        let mut scratch = Vec::new();
        let seg =
            Segment::parse_in(bytes, &mut scratch).map_err(|e| Error::corrupt(prev + 1, *k, e))?;
        if seg.first_seq() != prev + 1 || seg.last_seq() != *k {
            return Err(wrong_span(&seg, prev + 1, *k));
        }
        visit(&seg)?;
        prev = *k;
    }
    Ok(())
}

impl Log {
    /// Checks the segments open did not read (see [`Log::open`]); damage is the `Corrupt`
    /// error open would have given. A log closed meanwhile gives `Closed`.
    pub async fn verify_rest(&self) -> Result<(), Error> {
        self.check_open()?;
        let through = self.0.unverified.get();
        if through > 0 {
            verify_prefix(&self.0.db, through, self.is_synced())
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
/// starts before the last one checked, but never after it. Another tab may also move a log
/// used without sync (`synced` false) to sync: its segments go to the outbox, and this tab
/// closes when it hears so, which may be after its next page.
pub(super) async fn verify_prefix(
    db: &IdbDatabase,
    through: u64,
    synced: bool,
) -> Result<(), Error> {
    let mut prev = 0u64;
    loop {
        let tx = idb::transaction(db, &["segments", "meta"], false, "default").map_err(storage)?;
        let store = tx.object_store("segments").map_err(storage)?;
        let meta = tx.object_store("meta").map_err(storage)?;
        let (truncated, moved) = (
            meta.get(&"truncated".into()).map_err(storage)?,
            meta.get(&"synced".into()).map_err(storage)?,
        );
        let truncated = as_u64(&idb::request(&truncated).await.map_err(storage)?);
        if !synced && idb::request(&moved).await.map_err(storage)?.is_truthy() {
            return Err(Error::Closed(CloseReason::Synced));
        }
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
