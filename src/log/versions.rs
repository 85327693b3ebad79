//! Stream versions: the cache in memory, the `streams` store and its checkpoint.

use logfold_core::{SetDigest, StreamFilter};

use super::*;

impl Log {
    /// The stored head and the versions of `names`, inside the caller's transaction. They come
    /// from the cache, brought up to the stored head first (another tab's appends move it), and
    /// for streams it lacks from the `streams` store, which is current for every stream the
    /// cache lacks. Those reads go out with the head's, unless the caller read it (`head`).
    pub(super) async fn stored_versions(
        &self,
        meta: &IdbObjectStore,
        segments: &IdbObjectStore,
        streams: &IdbObjectStore,
        names: &HashSet<&str>,
        head: Option<u64>,
    ) -> Result<(u64, HashMap<String, u64>), Error> {
        let head_req = match head {
            Some(_) => None,
            None => Some(meta.get(&"head".into()).map_err(storage)?),
        };
        let missing: Vec<&str> = {
            let cache = self.0.versions.borrow();
            names
                .iter()
                .copied()
                .filter(|s| !cache.contains_key(*s))
                .collect()
        };
        let reqs = get_versions(streams, &missing)?;
        let head = match head_req {
            Some(req) => as_u64(&idb::request(&req).await.map_err(storage)?),
            None => head.unwrap_or(0),
        };
        self.versions_through(meta, segments, head).await?;
        let mut versions: HashMap<String, u64> = HashMap::with_capacity(names.len());
        for (name, req) in reqs {
            versions.insert(
                name.to_owned(),
                as_u64(&idb::request(&req).await.map_err(storage)?),
            );
        }
        // Streams the cache held before versions_through cleared it (after another tab's cut)
        // and did not read again: the store has them now.
        let lost: Vec<&str> = {
            let cache = self.0.versions.borrow();
            names
                .iter()
                .copied()
                .filter(|s| !versions.contains_key(*s) && !cache.contains_key(*s))
                .collect()
        };
        for (name, req) in get_versions(streams, &lost)? {
            versions.insert(
                name.to_owned(),
                as_u64(&idb::request(&req).await.map_err(storage)?),
            );
        }
        let cache = self.0.versions.borrow();
        for name in names {
            if let Some(v) = cache.get(*name) {
                versions.insert((*name).to_owned(), *v);
            }
        }
        Ok((head, versions))
    }

    /// Brings the version cache from `versions_at` up to the stored `head` by reading the
    /// segments other tabs wrote in between (inside the caller's transaction).
    pub(super) async fn versions_through(
        &self,
        meta: &IdbObjectStore,
        segments: &IdbObjectStore,
        head: u64,
    ) -> Result<(), Error> {
        let mut at = self.0.versions_at.get();
        if head <= at {
            return Ok(());
        }
        // Another tab may have dropped segments after `at` (truncate_before). It checkpointed
        // every version up to at least its cut first, so the cache starts again from there.
        let truncated = meta.get(&"truncated".into()).map_err(storage)?;
        let through = meta.get(&"streamsThrough".into()).map_err(storage)?;
        let truncated = as_u64(&idb::request(&truncated).await.map_err(storage)?);
        let through = as_u64(&idb::request(&through).await.map_err(storage)?);
        if at < truncated {
            self.0.versions.borrow_mut().clear();
            self.0.dirty.borrow_mut().clear();
            // The streams of the segments skipped are in the store, not in the filter: from
            // now on a stream memory lacks is read (a reopen reads the names again).
            self.0.known_whole.set(false);
            at = through;
            self.0.versions_at.set(at);
            if head <= at {
                return Ok(());
            }
        }
        let (keys, values) = read_segments(segments, at, u32::MAX).await?;
        let mut seen = Vec::new();
        for (k, bytes) in keys.iter().zip(&values) {
            let mut scratch = Vec::new();
            let seg = Segment::parse_in(bytes, &mut scratch)
                .map_err(|e| Error::corrupt(at + 1, *k, e))?;
            for e in seg.events() {
                let e = e.map_err(|e| Error::corrupt(seg.first_seq(), *k, e))?;
                if e.seq > at && e.seq <= head {
                    seen.push((e.stream.to_owned(), e.version));
                }
            }
        }
        self.remember(seen.iter().map(|(s, v)| (s.as_str(), *v)), head);
        Ok(())
    }

    /// Records committed stream versions as of stored head `head`; they are newer than the
    /// `streams` store's until a checkpoint writes them.
    pub(super) fn remember<'a>(&self, versions: impl Iterator<Item = (&'a str, u64)>, head: u64) {
        let mut cache = self.0.versions.borrow_mut();
        let mut dirty = self.0.dirty.borrow_mut();
        let mut known = self.0.known.borrow_mut();
        for (stream, v) in versions {
            if let Some(old) = cache.get_mut(stream) {
                *old = v;
            } else {
                cache.insert(stream.to_owned(), v);
                known.insert(stream);
            }
            if !dirty.contains(stream) {
                dirty.insert(stream.to_owned());
            }
        }
        if cache.len() > VERSION_CACHE {
            // What the store already has can be read again; what it lacks must stay.
            cache.retain(|s, _| dirty.contains(s));
        }
        self.0.versions_at.set(self.0.versions_at.get().max(head));
    }

    /// A stream's version from memory, if memory knows it: the cache's, or 0 for a stream the
    /// log does not have (the filter of its streams says so). `None`: it must be read.
    pub(super) fn cached_version(&self, stream: &str) -> Option<u64> {
        let inner = &self.0;
        if let Some(v) = inner.versions.borrow().get(stream) {
            return Some(*v);
        }
        (inner.known_whole.get() && !inner.known.borrow().may_contain(stream)).then_some(0)
    }

    /// Writes the versions the `streams` store lacks and moves its checkpoint to the head, so
    /// the next open folds only the segments after it. Relaxed: a lost checkpoint is redone.
    pub(super) async fn checkpoint_streams(&self) -> Result<(), Error> {
        let inner = &self.0;
        if inner.dirty.borrow().is_empty() {
            return Ok(());
        }
        let tx = idb::transaction(&inner.db, &["segments", "streams", "meta"], true, "relaxed")
            .map_err(|e| self.closed_or(e))?;
        let done = idb::done(&tx);
        let streams = tx.object_store("streams").map_err(storage)?;
        let meta = tx.object_store("meta").map_err(storage)?;
        let segments = tx.object_store("segments").map_err(storage)?;
        let synced = meta.get(&"synced".into()).map_err(storage)?;
        let check = meta.get(&"streamsCheck".into()).map_err(storage)?;
        let through = meta.get(&"streamsThrough".into()).map_err(storage)?;
        let head = as_u64(
            &idb::request(&meta.get(&"head".into()).map_err(storage)?)
                .await
                .map_err(storage)?,
        );
        // Versions of a history another tab has since moved to the outbox: not to be written.
        if !self.is_synced() && idb::request(&synced).await.map_err(storage)?.is_truthy() {
            tx.abort().ok();
            let _ = done.await;
            self.close_for(CloseReason::Synced);
            return Err(Error::Closed(CloseReason::Synced));
        }
        // Other tabs' appends since are folded in first, so the checkpoint is of the head.
        self.versions_through(&meta, &segments, head).await?;
        let at = inner.versions_at.get();
        let written: Vec<(String, u64)> = {
            let cache = inner.versions.borrow();
            let dirty = inner.dirty.borrow();
            dirty
                .iter()
                .map(|s| (s.clone(), cache[s.as_str()]))
                .collect()
        };
        // The digest moves from the records replaced to the ones written. A wrong stored
        // digest stays wrong, and the next open rebuilds the store.
        let names: Vec<&str> = written.iter().map(|(s, _)| s.as_str()).collect();
        let old = get_versions(&streams, &names)?;
        let mut digest =
            stored_digest(&idb::request(&check).await.map_err(storage)?).unwrap_or_default();
        digest.toggle_through(as_u64(&idb::request(&through).await.map_err(storage)?));
        digest.toggle_through(at);
        for ((name, req), (_, v)) in old.into_iter().zip(&written) {
            if let Some(old) = stored_version(&idb::request(&req).await.map_err(storage)?) {
                digest.toggle(name, old);
            }
            digest.toggle(name, *v);
        }
        for (s, v) in &written {
            streams
                .put_with_key(&key(*v), &JsValue::from_str(s))
                .map_err(storage)?;
        }
        put_streams_mark(&meta, at, digest)?;
        done.await.map_err(|e| self.closed_or(e))?;
        let cache = inner.versions.borrow();
        let mut dirty = inner.dirty.borrow_mut();
        for (s, v) in &written {
            if cache.get(s.as_str()) == Some(v) {
                dirty.remove(s);
            }
        }
        let mut st = inner.stats.get();
        st.transactions += 1;
        inner.stats.set(st);
        Ok(())
    }

    /// The stream's current version, read from IndexedDB (other tabs may have appended).
    pub async fn version(&self, stream: &str) -> Result<u64, Error> {
        self.check_open()?;
        if self.is_synced() {
            return self.synced_version(stream).await;
        }
        let tx = idb::transaction(
            &self.0.db,
            &["segments", "streams", "meta"],
            false,
            "default",
        )
        .map_err(|e| self.closed_or(e))?;
        let meta = tx.object_store("meta").map_err(storage)?;
        let store = tx.object_store("streams").map_err(storage)?;
        let head_req = meta.get(&"head".into()).map_err(storage)?;
        let stored = store.get(&JsValue::from_str(stream)).map_err(storage)?;
        let head = as_u64(&idb::request(&head_req).await.map_err(storage)?);
        let segments = tx.object_store("segments").map_err(storage)?;
        self.versions_through(&meta, &segments, head).await?;
        let stored = as_u64(&idb::request(&stored).await.map_err(storage)?);
        let cached = self.0.versions.borrow().get(stream).copied();
        Ok(cached.unwrap_or(stored))
    }
}

/// A `streams` record's version: a whole number from 1 up, else damage.
pub(super) fn stored_version(v: &JsValue) -> Option<u64> {
    let f = v.as_f64()?;
    (f >= 1.0 && f.fract() == 0.0 && f <= MAX_SAFE).then_some(f as u64)
}

pub(super) fn stored_digest(v: &JsValue) -> Option<SetDigest> {
    let f = v.as_f64()?;
    (f >= 0.0 && f.fract() == 0.0 && f <= MAX_SAFE)
        .then(|| SetDigest::from_stored(f as u64))
        .flatten()
}

const MAX_SAFE: f64 = 9_007_199_254_740_991.0;

/// The digest and names of the `streams` store read whole (`keys`, `values`) with its
/// checkpoint `meta.streamsThrough` (`through`); `None` if a record or the checkpoint is
/// malformed, or the checkpoint passes the head.
pub(super) fn streams_digest(
    through: &JsValue,
    head: u64,
    keys: &Array,
    values: &Array,
) -> Option<(SetDigest, StreamFilter)> {
    let through = through
        .as_f64()
        .filter(|t| *t >= 0.0 && t.fract() == 0.0 && *t as u64 <= head)?;
    let mut digest = SetDigest::default();
    let mut names = StreamFilter::with_capacity(2 * keys.length() as usize);
    digest.toggle_through(through as u64);
    for (k, v) in keys.iter().zip(values.iter()) {
        let (name, version) = (k.as_string()?, stored_version(&v)?);
        digest.toggle(&name, version);
        names.insert(&name);
    }
    Some((digest, names))
}

/// Rewrites the `streams` store, its checkpoint and its digest from the segments up to `head`,
/// in the caller's readwrite transaction; returns the filter of the names written. `truncated`
/// is the last position dropped; the store's records (`stored`) are then the base the
/// segments after it (`segments`, read from there) bring up to date.
pub(super) fn rewrite_streams(
    streams: &IdbObjectStore,
    meta: &IdbObjectStore,
    (head, truncated): (u64, u64),
    (stored_keys, stored_values): (&Array, &Array),
    (keys, values): (&[u64], &[Vec<u8>]),
) -> Result<StreamFilter, Error> {
    let mut versions: HashMap<String, u64> = HashMap::new();
    if truncated > 0 {
        // The versions of streams whose events were all dropped live only in the store: the
        // readable records are the base the segments then bring up to date.
        for (k, v) in stored_keys.iter().zip(stored_values.iter()) {
            if let (Some(name), Some(version)) = (k.as_string(), stored_version(&v)) {
                versions.insert(name, version);
            }
        }
    }
    // Open may not have checked these segments yet: a gap or damage fails the rebuild, which
    // must not write the versions of a log with events missing.
    let mut prev = truncated;
    for (k, bytes) in keys.iter().zip(values).take_while(|(k, _)| **k <= head) {
        let mut scratch = Vec::new();
        let seg = parse_holding(bytes, &mut scratch, prev + 1, *k)?;
        if seg.first_seq() != prev + 1 {
            return Err(wrong_span(&seg, prev + 1, *k));
        }
        for e in seg.events() {
            let e = e.map_err(|e| Error::corrupt(seg.first_seq(), *k, e))?;
            versions.insert(e.stream.to_owned(), e.version);
        }
        prev = *k;
    }
    if prev != head {
        return Err(ends_off_head(prev, head));
    }
    streams.clear().map_err(storage)?;
    let mut digest = SetDigest::default();
    let mut names = StreamFilter::with_capacity(2 * versions.len());
    digest.toggle_through(head);
    for (name, v) in &versions {
        digest.toggle(name, *v);
        names.insert(name);
        streams
            .put_with_key(&key(*v), &JsValue::from_str(name))
            .map_err(storage)?;
    }
    put_streams_mark(meta, head, digest)?;
    Ok(names)
}

/// Writes the `streams` store's checkpoint and its digest.
fn put_streams_mark(meta: &IdbObjectStore, through: u64, digest: SetDigest) -> Result<(), Error> {
    meta.put_with_key(&key(through), &"streamsThrough".into())
        .map_err(storage)?;
    meta.put_with_key(&key(digest.value()), &"streamsCheck".into())
        .map_err(storage)?;
    Ok(())
}

/// Issues a `get` per stream name in the `streams` store.
pub(super) fn get_versions<'a>(
    store: &IdbObjectStore,
    names: &[&'a str],
) -> Result<Vec<(&'a str, web_sys::IdbRequest)>, Error> {
    names
        .iter()
        .map(|s| Ok((*s, store.get(&JsValue::from_str(s)).map_err(storage)?)))
        .collect()
}
