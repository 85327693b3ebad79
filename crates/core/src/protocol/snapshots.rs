//! Snapshot sets: every projection of an app at one server offset, with the stream versions at
//! that offset, so a new device starts from them and pulls only the tail after it.
//!
//! Layout: `"LFSS" | format: u8 | offset | salt | n × (key, bytes) | n × (stream, version)` then
//! a CRC-32 of all before it. Keys are sorted and unique. A set is named by [`set_id`] of its
//! salt and keys: the projections' snapshot keys carry their definitions' hashes, and the salt
//! what else their state depends on (the app's event schemas), so a set is only ever used by an
//! app that folds exactly as the one that made it.

use crate::codec::{put_bytes, put_varint, Reader};
use crate::crc32::crc32;
use crate::json::Reader as JsonReader;
use crate::table::snapshot;
use crate::table::snapshot::SnapshotError;

const MAGIC: &[u8; 4] = b"LFSS";
/// The snapshot set format this code writes.
pub const FORMAT: u8 = 1;
/// The content type of a snapshot set on the wire.
pub const SNAPSHOTS_CONTENT_TYPE: &str = "application/vnd.logfold.snapshots";

/// The projections of one app at one offset.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SnapshotSet {
    /// The server offset every snapshot is of.
    pub offset: u64,
    /// What the state depends on besides the definitions (the client's schemas, as text).
    pub salt: String,
    /// Snapshot key → bytes: a table snapshot (`table:…`) or a reducer's state as JSON
    /// (`reducer:…`); sorted by key once decoded.
    pub entries: Vec<(String, Vec<u8>)>,
    /// Every stream's version at `offset` (streams with none left out), sorted by name. The
    /// server fills these from its own log; an upload sends none.
    pub streams: Vec<(String, u64)>,
}

/// The name of the set of these snapshot keys (in any order) under `salt`: 16 hex digits of
/// FNV-1a 64 over the salt and the sorted keys.
pub fn set_id<'a>(salt: &str, keys: impl IntoIterator<Item = &'a str>) -> String {
    let keys: Vec<&str> = keys.into_iter().collect();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes.iter().chain(b"\n") {
            h ^= *b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    eat(salt.as_bytes());
    for i in sorted(&keys) {
        eat(keys[i].as_bytes());
    }
    let mut out = String::with_capacity(16);
    for i in (0..16).rev() {
        out.push(char::from_digit(((h >> (i * 4)) & 0xf) as u32, 16).expect("a hex digit"));
    }
    out
}

/// The indices of `keys` in sorted order. An insertion sort: a set holds a few keys, and the
/// standard sorts would add kilobytes to the browser's `.wasm` for them.
fn sorted(keys: &[&str]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..keys.len()).collect();
    for i in 1..order.len() {
        let mut j = i;
        while j > 0 && keys[order[j - 1]] > keys[order[j]] {
            order.swap(j - 1, j);
            j -= 1;
        }
    }
    order
}

/// Whether `id` has the shape [`set_id`] gives.
pub fn valid_set_id(id: &str) -> bool {
    id.len() == 16 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl SnapshotSet {
    /// This set's name (see [`set_id`]).
    pub fn id(&self) -> String {
        set_id(&self.salt, self.entries.iter().map(|(k, _)| k.as_str()))
    }

    /// The wire bytes, entries in key order.
    pub fn encode(&self) -> Vec<u8> {
        let keys: Vec<&str> = self.entries.iter().map(|(k, _)| k.as_str()).collect();
        self.encode_in(sorted(&keys))
    }

    fn encode_in(&self, order: Vec<usize>) -> Vec<u8> {
        let body: usize = self
            .entries
            .iter()
            .map(|(k, v)| k.len() + v.len() + 8)
            .sum();
        let mut out = Vec::with_capacity(body + 32);
        out.extend_from_slice(MAGIC);
        out.push(FORMAT);
        put_varint(&mut out, self.offset);
        put_bytes(&mut out, self.salt.as_bytes());
        put_varint(&mut out, self.entries.len() as u64);
        for i in order {
            let (k, v) = &self.entries[i];
            put_bytes(&mut out, k.as_bytes());
            put_bytes(&mut out, v);
        }
        put_varint(&mut out, self.streams.len() as u64);
        for (s, v) in &self.streams {
            put_bytes(&mut out, s.as_bytes());
            put_varint(&mut out, *v);
        }
        let crc = crc32(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Reads wire bytes: the frame, the checksum, sorted unique keys and stream names.
    pub fn decode(bytes: &[u8]) -> Result<SnapshotSet, SnapshotError> {
        let bad = |m: &str| SnapshotError::Corrupt(m.to_owned());
        let mut r = Reader {
            buf: snapshot::framed(bytes, MAGIC, FORMAT, "not a snapshot set")?,
        };
        let offset = r.varint()?;
        let salt = r.str()?.to_owned();
        let n = r.varint()?;
        let mut entries: Vec<(String, Vec<u8>)> = Vec::with_capacity(n.min(1024) as usize);
        for _ in 0..n {
            let k = r.str()?;
            let len = r.varint()?;
            let v = r.take(usize::try_from(len).map_err(|_| bad("entry too long"))?)?;
            if entries.last().is_some_and(|(last, _)| last.as_str() >= k) {
                return Err(bad("keys out of order"));
            }
            entries.push((k.to_owned(), v.to_vec()));
        }
        let n = r.varint()?;
        let mut streams: Vec<(String, u64)> = Vec::with_capacity(n.min(65_536) as usize);
        for _ in 0..n {
            let s = r.str()?;
            let v = r.varint()?;
            if streams.last().is_some_and(|(last, _)| last.as_str() >= s) {
                return Err(bad("streams out of order"));
            }
            if v == 0 {
                return Err(bad("a stream at version 0"));
            }
            streams.push((s.to_owned(), v));
        }
        if !r.buf.is_empty() {
            return Err(bad("trailing bytes"));
        }
        Ok(SnapshotSet {
            offset,
            salt,
            entries,
            streams,
        })
    }

    /// What the server checks before it keeps an upload: at least one entry; every table
    /// snapshot intact, of the definition its key names and of `offset`; every reducer state
    /// JSON; no other keys.
    pub fn check(&self) -> Result<(), String> {
        if self.offset == 0 {
            return Err("a snapshot set is of an offset ≥ 1".into());
        }
        if self.entries.is_empty() {
            return Err("a snapshot set holds at least one snapshot".into());
        }
        for (k, v) in &self.entries {
            if let Some(rest) = k.strip_prefix("table:") {
                let (hash, seq) = snapshot::check(v).map_err(|e| format!("{k}: {e}"))?;
                if rest.rsplit_once(':').map(|(_, h)| h) != Some(hash) {
                    return Err(format!("{k}: the snapshot is of definition {hash}"));
                }
                if seq != self.offset {
                    return Err(format!(
                        "{k}: the snapshot is of position {seq}, the set of {}",
                        self.offset
                    ));
                }
            } else if k.starts_with("reducer:") {
                let text = std::str::from_utf8(v).map_err(|_| format!("{k}: not UTF-8"))?;
                let mut json = JsonReader::new(text);
                json.skip()
                    .and_then(|_| json.end())
                    .map_err(|e| format!("{k}: {e}"))?;
            } else {
                return Err(format!("{k}: not a table or reducer snapshot key"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::table::{Table, TableDef};

    fn table_at(seq: u64) -> (String, Vec<u8>) {
        let def = Arc::new(
            TableDef::parse_text(r#"{"key":"data.id","on":{"Opened":{"set":{"n":"data.n"}}}}"#)
                .expect("a definition"),
        );
        let key = format!("table:accounts:{}", def.hash);
        let t = Table::from_parts(def, Vec::new(), seq, 0);
        (key, snapshot::encode(&t))
    }

    fn set() -> SnapshotSet {
        SnapshotSet {
            offset: 7,
            salt: "{}".into(),
            entries: vec![
                ("reducer:count:1".into(), b"{\"n\":3}".to_vec()),
                table_at(7),
            ],
            streams: vec![("a".into(), 2), ("b".into(), 5)],
        }
    }

    #[test]
    fn given_a_set_when_encoded_then_it_decodes_to_itself_and_passes_the_check() {
        let mut s = set();
        s.entries.sort();
        let back = SnapshotSet::decode(&s.encode()).expect("decodes");
        assert_eq!(back, s);
        assert_eq!(back.check(), Ok(()));
        assert_eq!(
            back.id(),
            set_id("{}", ["reducer:count:1", s.entries[1].0.as_str()])
        );
        assert!(valid_set_id(&back.id()));
    }

    #[test]
    fn given_a_damaged_or_unsorted_set_when_decoded_then_it_is_refused() {
        let mut s = set();
        s.entries.sort();
        let mut bytes = s.encode();
        bytes[9] ^= 1;
        assert!(SnapshotSet::decode(&bytes).is_err());
        // Encoded in key order whatever the order given, and refused out of it.
        s.entries.reverse();
        let bytes = s.encode();
        assert_eq!(SnapshotSet::decode(&bytes).map(|d| d.entries.len()), Ok(2));
        let swapped = s.encode_in(vec![0, 1]);
        assert_eq!(
            SnapshotSet::decode(&swapped),
            Err(SnapshotError::Corrupt("keys out of order".into()))
        );
    }

    #[test]
    fn given_a_table_of_another_position_or_definition_when_checked_then_it_is_refused() {
        let mut s = set();
        s.entries = vec![table_at(6)];
        assert!(s.check().unwrap_err().contains("position 6"));
        let (key, bytes) = table_at(7);
        s.entries = vec![(key.replace(":accounts:", ":acc:ounts:"), bytes.clone())];
        assert_eq!(
            s.check(),
            Ok(()),
            "only the hash after the last colon counts"
        );
        s.entries = vec![(format!("{key}0"), bytes)];
        assert!(s.check().unwrap_err().contains("of definition"));
        s.entries = vec![("reducer:count:1".into(), b"{\"n\":".to_vec())];
        assert!(s.check().is_err());
        s.entries = vec![("other".into(), Vec::new())];
        assert!(s.check().is_err());
        s.entries.clear();
        assert!(s.check().is_err());
    }
}
