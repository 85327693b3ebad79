//! Checking segments: at open (see `open`), after it (`verify_rest`), and for `Logfold.repair`.

use super::*;

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
