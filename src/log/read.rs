//! Reading the log: pages of segments, and events as JSON.

use super::*;

impl Log {
    /// Up to `limit` events after position `after` (by default, from the first position the
    /// log keeps), as a JSON array. Positions `truncate_before` dropped are `Truncated`.
    pub async fn read_json(&self, after: Option<u64>, limit: u64) -> Result<String, Error> {
        self.check_open()?;
        loop {
            let from = after.unwrap_or(self.0.truncated.get());
            match self.read_from(from, limit).await {
                // Another tab dropped more meanwhile: the default start moved.
                Err(Error::Truncated { .. }) if after.is_none() => continue,
                result => return result,
            }
        }
    }

    async fn read_from(&self, after: u64, limit: u64) -> Result<String, Error> {
        let mut out = String::from("[");
        let upto = after.saturating_add(limit);
        // The log is dense, so the next position to write is always `pos + 1`. Each page is
        // its own transaction; compaction in between only changes how positions are grouped.
        let mut pos = after;
        while pos < upto {
            let want = ((upto - pos) / 128 + 2).min(64) as u32;
            let (keys, values) = self.segments_after(pos, want).await?;
            if keys.is_empty() {
                break;
            }
            // JSON runs ~1.6× the encoded size; growing the string by doubling costs more.
            out.reserve(values.iter().map(Vec::len).sum::<usize>() * 8 / 5);
            for (k, bytes) in keys.iter().zip(&values) {
                let mut scratch = Vec::new();
                let seg = parse_holding(bytes, &mut scratch, pos + 1, *k)?;
                pos += logfold_core::json::write_segment(&mut out, &seg, pos, upto)
                    .map_err(|e| Error::corrupt(seg.first_seq(), *k, e))?
                    as u64;
                if pos >= upto {
                    break;
                }
            }
        }
        if self.is_synced() && pos < upto {
            pos = self.outbox_json(&mut out, pos, upto).await?;
        }
        out.push(']');
        if !self.is_synced() {
            self.0.head.set(self.0.head.get().max(pos));
        }
        Ok(out)
    }

    /// The first position the log keeps (1 unless `truncate_before` dropped some), as last seen.
    pub fn start(&self) -> u64 {
        self.0.truncated.get() + 1
    }

    /// Up to `count` segments with keys above `after`, as (keys, bytes); `Truncated` if
    /// positions after `after` were dropped.
    pub(super) async fn segments_after(
        &self,
        after: u64,
        count: u32,
    ) -> Result<(Vec<u64>, Vec<Vec<u8>>), Error> {
        let tx = idb::transaction(&self.0.db, &["segments", "meta"], false, "default")
            .map_err(|e| self.closed_or(e))?;
        let store = tx.object_store("segments").map_err(storage)?;
        let meta = tx.object_store("meta").map_err(storage)?;
        let truncated = meta.get(&"truncated".into()).map_err(storage)?;
        let segments = read_segments(&store, after, count).await?;
        let truncated = as_u64(&idb::request(&truncated).await.map_err(storage)?);
        self.check_kept(after, truncated)?;
        Ok(segments)
    }

    /// Notes `truncated`, the last position dropped as just read, and checks that the
    /// positions after `after` are kept (`Truncated` if not).
    pub fn check_kept(&self, after: u64, truncated: u64) -> Result<(), Error> {
        self.0.truncated.set(truncated);
        if after < truncated {
            return Err(Error::Truncated {
                start: truncated + 1,
                needed: after + 1,
            });
        }
        Ok(())
    }
}

/// Parses the segment stored under key `k` as one that holds position `from` and ends at `k`.
/// Damage, or a gap before it (a segment lost), is `Corrupt` over `from..=k`: reads must not
/// skip positions, and open may not have checked this segment yet.
pub(super) fn parse_holding<'a>(
    bytes: &'a [u8],
    scratch: &'a mut Vec<u8>,
    from: u64,
    k: u64,
) -> Result<Segment<'a>, Error> {
    let seg = Segment::parse_in(bytes, scratch).map_err(|e| Error::corrupt(from, k, e))?;
    if seg.first_seq() > from || seg.last_seq() != k {
        return Err(wrong_span(&seg, from, k));
    }
    Ok(seg)
}

/// The error for a segment under key `k` that does not hold positions `from..=k`.
pub(super) fn wrong_span(seg: &Segment<'_>, from: u64, k: u64) -> Error {
    let reason = format!(
        "segment holds positions {}..={}, not {from}..={k}",
        seg.first_seq(),
        seg.last_seq()
    );
    Error::Corrupt {
        from,
        to: k,
        reason,
    }
}

/// The error for segments that end at `end`, not at the log's head `head`.
pub(super) fn ends_off_head(end: u64, head: u64) -> Error {
    Error::Corrupt {
        from: end + 1,
        to: head.max(end + 1),
        reason: format!("the log's head is {head} but its segments end at {end}"),
    }
}

/// A pending read of segments: their keys and their bytes.
pub(super) struct SegmentsRequest {
    keys: web_sys::IdbRequest,
    values: web_sys::IdbRequest,
}

/// Asks for up to `count` segments with keys above `after`.
pub(super) fn request_segments(
    store: &IdbObjectStore,
    after: u64,
    count: u32,
) -> Result<SegmentsRequest, Error> {
    let range = IdbKeyRange::lower_bound_with_open(&key(after), true).map_err(storage)?;
    let (keys, values) = if count == u32::MAX {
        (
            store.get_all_keys_with_key(&range),
            store.get_all_with_key(&range),
        )
    } else {
        (
            store.get_all_keys_with_key_and_limit(&range, count),
            store.get_all_with_key_and_limit(&range, count),
        )
    };
    Ok(SegmentsRequest {
        keys: keys.map_err(storage)?,
        values: values.map_err(storage)?,
    })
}

impl SegmentsRequest {
    pub(super) async fn get(self) -> Result<(Vec<u64>, Vec<Vec<u8>>), Error> {
        let keys: Array = idb::request(&self.keys)
            .await
            .map_err(storage)?
            .unchecked_into();
        let values: Array = idb::request(&self.values)
            .await
            .map_err(storage)?
            .unchecked_into();
        let keys: Vec<u64> = keys.iter().map(|k| as_u64(&k)).collect();
        let values = values
            .iter()
            .map(|v| Uint8Array::new(&v).to_vec())
            .collect();
        Ok((keys, values))
    }
}

/// Reads up to `count` segments with keys above `after`.
pub(super) async fn read_segments(
    store: &IdbObjectStore,
    after: u64,
    count: u32,
) -> Result<(Vec<u64>, Vec<Vec<u8>>), Error> {
    request_segments(store, after, count)?.get().await
}
