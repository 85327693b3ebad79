//! Snapshot sets: a new synced log starts from the server's newest set of its projections
//! (plus the tail after it), and the sync leader uploads its own as the log grows.
//!
//! A log started from a set at offset `o` is a log truncated before `o + 1`: its snapshots and
//! stream versions are as of `o`, `meta.truncated` is `o`, and the sync loop pulls after it.

use logfold_core::protocol::snapshots::SnapshotSet;
use logfold_core::SetDigest;

use super::*;

/// A snapshot set from the server and the server log's identity it came with.
pub struct Boot {
    /// The set's bytes as served.
    pub set: Vec<u8>,
    /// The `logfold-log-id` it was served with.
    pub server_log: String,
}

/// The set's snapshots as the `snapshots` store keeps them, or why the set does not fit these
/// projections (then the log starts empty and pulls it all).
fn stored_values(set: &SnapshotSet, p: &Projections) -> Result<Vec<(String, JsValue)>, String> {
    let mut keys: Vec<String> = p.table_keys();
    keys.extend(p.reducers.iter().cloned());
    // Decoded entries have unique keys.
    let has = |k: &String| set.entries.iter().any(|(e, _)| e == k);
    if keys.is_empty() || keys.len() != set.entries.len() || !keys.iter().all(has) {
        return Err("its projections are not this app's".into());
    }
    let mut out = Vec::with_capacity(keys.len());
    for (k, bytes) in &set.entries {
        let value = if let Some((_, def)) = p
            .tables
            .iter()
            .find(|(name, def)| &table_snapshot_key(name, def) == k)
        {
            // Decoded whole now: a table that failed to load later would leave the log unable
            // to open (its history before the set is not here).
            let t = snapshot::decode(bytes, Arc::clone(def)).map_err(|e| format!("{k}: {e}"))?;
            if t.seq() != set.offset {
                return Err(format!("{k} is of position {}", t.seq()));
            }
            Uint8Array::from(&bytes[..]).buffer().into()
        } else {
            let text = std::str::from_utf8(bytes).map_err(|_| format!("{k}: not UTF-8"))?;
            p.seal(set.offset, text)
                .ok_or_else(|| format!("{k}: not a reducer state"))?
        };
        out.push((k.clone(), value));
    }
    Ok(out)
}

/// Writes `boot` into a new log's stores (the caller checked it holds nothing) and returns the
/// offset it starts after, or `None` (with a warning) when the set does not fit.
pub(super) fn install(
    boot: &Boot,
    p: &Projections,
    tx: &web_sys::IdbTransaction,
) -> Result<Option<u64>, Error> {
    let fitted = SnapshotSet::decode(&boot.set)
        .map_err(|e| e.to_string())
        .and_then(|set| stored_values(&set, p).map(|values| (set, values)));
    let (set, values) = match fitted {
        Ok(v) => v,
        Err(why) => {
            p.warn(&format!(
                "the server's snapshot set was not used: {why}; pulling the whole log"
            ));
            return Ok(None);
        }
    };
    let at = set.offset;
    let store = |name| tx.object_store(name).map_err(storage);
    let snapshots = store("snapshots")?;
    for (k, v) in &values {
        for k in [k.clone(), base_key(k)] {
            snapshots
                .put_with_key(v, &k.as_str().into())
                .map_err(storage)?;
        }
    }
    let streams = store("streams")?;
    let mut digest = SetDigest::default();
    digest.toggle_through(at);
    for (name, v) in &set.streams {
        streams
            .put_with_key(&key(*v), &name.as_str().into())
            .map_err(storage)?;
        digest.toggle(name, *v);
    }
    let meta = store("meta")?;
    for k in ["head", "streamsThrough", "compacted", "truncated"] {
        meta.put_with_key(&key(at), &k.into()).map_err(storage)?;
    }
    meta.put_with_key(&key(digest.value()), &"streamsCheck".into())
        .map_err(storage)?;
    meta.put_with_key(&boot.server_log.as_str().into(), &"serverLog".into())
        .map_err(storage)?;
    Ok(Some(at))
}

impl Log {
    /// The set of every projection at the tables' base, for the server (see
    /// `protocol::snapshots`), with the reducers' states given as JSON text at `reducers_at`;
    /// `None` while the tables show outbox events or the reducers are at another position.
    pub fn snapshot_set(
        &self,
        salt: String,
        reducers: Vec<(String, String)>,
        reducers_at: u64,
    ) -> Option<Vec<u8>> {
        let t = self.0.tables.borrow();
        let offset = t.base_seq();
        if t.in_overlay() || offset == 0 || (!reducers.is_empty() && reducers_at != offset) {
            return None;
        }
        let mut entries: Vec<(String, Vec<u8>)> = t.snapshots();
        entries.extend(reducers.into_iter().map(|(k, json)| (k, json.into_bytes())));
        Some(
            SnapshotSet {
                offset,
                salt,
                entries,
                streams: Vec::new(),
            }
            .encode(),
        )
    }
}
