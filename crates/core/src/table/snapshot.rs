//! Table snapshots: a table's rows as of a position, checksummed, so opening a log need not
//! replay all of it. A snapshot names its definition's hash; another definition never uses it.
//!
//! Layout: `"LFTS" | format: u8 | hash | seq | errors | n_fields × name | n_rows × (key, row)`
//! then a CRC-32 of all before it, as in segments.

use std::sync::Arc;

use super::def::TableDef;
use super::fold::{Row, Table};
use super::value::{Key, Value};
use crate::codec::{put_bytes, put_varint, Reader};
use crate::crc32::crc32;
use crate::segment::SegmentError;

const MAGIC: &[u8; 4] = b"LFTS";
/// The snapshot format this code writes.
pub const FORMAT: u8 = 1;

/// Why a snapshot cannot be used. The caller rebuilds from the log instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// Damaged bytes.
    #[error("damaged snapshot: {0}")]
    Corrupt(String),
    /// Written by an unknown format.
    #[error("unsupported snapshot format {0}")]
    UnsupportedFormat(u8),
    /// Taken with another definition.
    #[error("the snapshot is of another definition")]
    OtherDefinition,
}

impl From<SegmentError> for SnapshotError {
    fn from(e: SegmentError) -> Self {
        match e {
            SegmentError::Corrupt(m) => SnapshotError::Corrupt(m),
            SegmentError::UnsupportedFormat(f) => SnapshotError::UnsupportedFormat(f),
        }
    }
}

/// Encodes a table's state.
pub fn encode(t: &Table) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.push(FORMAT);
    put_bytes(&mut out, t.def().hash.as_bytes());
    put_varint(&mut out, t.seq());
    put_varint(&mut out, t.errors().1);
    put_varint(&mut out, t.def().fields.len() as u64);
    for f in &t.def().fields {
        put_bytes(&mut out, f.as_bytes());
    }
    let rows = t.sorted();
    put_varint(&mut out, rows.len() as u64);
    for (key, row) in rows {
        match key {
            Key::Num(n) => {
                out.push(0);
                out.extend_from_slice(&n.to_le_bytes());
            }
            Key::Str(s) => {
                out.push(1);
                put_bytes(&mut out, s.as_bytes());
            }
        }
        put_varint(&mut out, row.iter().filter(|v| v.is_some()).count() as u64);
        for (i, v) in row.iter().enumerate() {
            if let Some(v) = v {
                put_varint(&mut out, i as u64);
                put_value(&mut out, v);
            }
        }
    }
    let crc = crc32(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

fn put_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => out.push(0),
        Value::Bool(false) => out.push(1),
        Value::Bool(true) => out.push(2),
        Value::Num(n) => {
            out.push(3);
            out.extend_from_slice(&n.to_le_bytes());
        }
        Value::Str(s) => {
            out.push(4);
            put_bytes(out, s.as_bytes());
        }
        Value::List(items) => {
            out.push(5);
            put_varint(out, items.len() as u64);
            for item in items {
                put_value(out, item);
            }
        }
        Value::Raw(r) => {
            out.push(6);
            put_bytes(out, r.as_bytes());
        }
    }
}

/// The position a snapshot is of, read from its header once its checksum holds.
pub fn position(bytes: &[u8]) -> Option<u64> {
    if bytes.len() < MAGIC.len() + 1 + 4 || &bytes[..4] != MAGIC {
        return None;
    }
    let (content, trailer) = bytes.split_at(bytes.len() - 4);
    if crc32(content) != u32::from_le_bytes(trailer.try_into().ok()?) || content[4] != FORMAT {
        return None;
    }
    let mut r = Reader { buf: &content[5..] };
    r.str().ok()?;
    r.varint().ok()
}

/// What follows the format byte of `bytes` framed as `magic | format | … | crc32`, once the
/// checksum holds and the format is `format`; `not_framed` says what the bytes are not.
pub(crate) fn framed<'a>(
    bytes: &'a [u8],
    magic: &[u8; 4],
    format: u8,
    not_framed: &str,
) -> Result<&'a [u8], SnapshotError> {
    if bytes.len() < magic.len() + 1 + 4 || &bytes[..4] != magic {
        return Err(SnapshotError::Corrupt(not_framed.to_owned()));
    }
    let (content, trailer) = bytes.split_at(bytes.len() - 4);
    if crc32(content) != u32::from_le_bytes(trailer.try_into().expect("4 bytes")) {
        return Err(SnapshotError::Corrupt("checksum mismatch".to_owned()));
    }
    if content[4] != format {
        return Err(SnapshotError::UnsupportedFormat(content[4]));
    }
    Ok(&content[5..])
}

/// Walks a snapshot without its definition (as the sync server does before keeping one):
/// frame, checksum, format and every row. Returns the definition hash and position it is of.
pub fn check(bytes: &[u8]) -> Result<(&str, u64), SnapshotError> {
    let bad = |m: &str| SnapshotError::Corrupt(m.to_owned());
    let mut r = Reader {
        buf: framed(bytes, MAGIC, FORMAT, "bad frame")?,
    };
    let hash = r.str()?;
    let seq = r.varint()?;
    r.varint()?;
    let n_fields = r.varint()?;
    for _ in 0..n_fields {
        r.str()?;
    }
    for _ in 0..r.varint()? {
        match r.byte()? {
            0 => drop(r.f64()?),
            1 => drop(r.str()?),
            _ => return Err(bad("bad key tag")),
        }
        for _ in 0..r.varint()? {
            if r.varint()? >= n_fields {
                return Err(bad("field index out of range"));
            }
            value(&mut r, 0)?;
        }
    }
    if !r.buf.is_empty() {
        return Err(bad("trailing bytes"));
    }
    Ok((hash, seq))
}

/// Decodes a snapshot taken with `def`.
pub fn decode(bytes: &[u8], def: Arc<TableDef>) -> Result<Table, SnapshotError> {
    let bad = |m: &str| SnapshotError::Corrupt(m.to_owned());
    let mut r = Reader {
        buf: framed(bytes, MAGIC, FORMAT, "bad frame")?,
    };
    if r.str()? != def.hash {
        return Err(SnapshotError::OtherDefinition);
    }
    let seq = r.varint()?;
    let error_count = r.varint()?;
    let n_fields = r.varint()? as usize;
    if n_fields != def.fields.len() {
        return Err(SnapshotError::OtherDefinition);
    }
    for f in &def.fields {
        if r.str()? != f {
            return Err(SnapshotError::OtherDefinition);
        }
    }
    let mut rows = Vec::new();
    for _ in 0..r.varint()? {
        let key = match r.byte()? {
            0 => Key::Num(r.f64()?),
            1 => Key::Str(r.str()?.to_owned()),
            _ => return Err(bad("bad key tag")),
        };
        let mut row: Row = vec![None; n_fields];
        for _ in 0..r.varint()? {
            let i = r.varint()? as usize;
            let slot = row
                .get_mut(i)
                .ok_or_else(|| bad("field index out of range"))?;
            *slot = Some(value(&mut r, 0)?);
        }
        rows.push((key, row));
    }
    if !r.buf.is_empty() {
        return Err(bad("trailing bytes"));
    }
    Ok(Table::from_parts(def, rows, seq, error_count))
}

fn value(r: &mut Reader<'_>, depth: usize) -> Result<Value, SnapshotError> {
    if depth > 64 {
        return Err(SnapshotError::Corrupt("values nested too deep".into()));
    }
    Ok(match r.byte()? {
        0 => Value::Null,
        1 => Value::Bool(false),
        2 => Value::Bool(true),
        3 => Value::Num(r.f64()?),
        4 => Value::Str(r.str()?.to_owned()),
        5 => {
            let n = r.varint()?;
            let mut items = Vec::with_capacity(n.min(1024) as usize);
            for _ in 0..n {
                items.push(value(r, depth + 1)?);
            }
            Value::List(items)
        }
        6 => Value::Raw(r.str()?.to_owned()),
        _ => return Err(SnapshotError::Corrupt("bad value tag".into())),
    })
}
