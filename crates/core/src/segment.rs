//! The segment codec: one stored record holds an encoded run of consecutive events.
//!
//! Layout (all integers LEB128 varints unless said):
//! ```text
//! "LFSG" | format: u8 | count | first_seq | n_strings | n × (len, utf-8)      header
//! count × ( flags: u8 | id: 16 bytes BE | stream ix | version | type ix | origin ix
//!           | time | [offset] | data len, data | [meta len, meta] )       events
//! crc32 of everything before it: u32 LE                                    trailer
//! ```
//! Stream, type and origin names go in a per-segment string table, so a run of events on few
//! streams stores each name once. Positions are implicit (`first_seq + i`): a segment is dense.
//! The magic and the trailing checksum frame every format version, so a damaged segment is
//! always `Corrupt`, and an intact one with an unknown format is `UnsupportedFormat`.
//!
//! Format 2 ([`SegmentWriter::finish_packed`]) is format 1's content after the format byte,
//! compressed ([`crate::lz`]): `"LFSG" | 2 | content length | compressed content | crc32`.
//! Reading the log is bound by its bytes, and events repeat their JSON keys.

use std::collections::HashMap;

use crate::codec::{put_bytes, put_varint, Reader};
use crate::crc32::crc32;
use crate::event::EventRef;
use crate::id::EventId;

/// The plain format.
pub const FORMAT: u8 = 1;
/// The compressed format.
pub const PACKED: u8 = 2;
/// Commits and compaction cut segments near this size: under Chromium's 64 KiB threshold, above
/// which IndexedDB stores a value as a separate blob file.
pub const TARGET_BYTES: usize = 48 * 1024;

const MAGIC: &[u8; 4] = b"LFSG";
const FLAG_META: u8 = 1;
const FLAG_OFFSET: u8 = 2;

/// A segment could not be read. Never turned into wrong events.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SegmentError {
    /// The bytes are damaged (checksum, framing or structure).
    #[error("corrupt segment: {0}")]
    Corrupt(String),
    /// The bytes are intact but written by a newer (or unknown) format.
    #[error("unsupported segment format {0}")]
    UnsupportedFormat(u8),
}

fn corrupt(what: &str) -> SegmentError {
    SegmentError::Corrupt(what.to_owned())
}

/// Builds one segment from consecutive events.
#[derive(Debug, Default)]
pub struct SegmentWriter {
    strings: Vec<String>,
    string_bytes: usize,
    index: HashMap<String, u32>,
    body: Vec<u8>,
    count: u64,
    first_seq: u64,
}

impl SegmentWriter {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the next event. Its `seq` must follow the previous event's.
    pub fn push(&mut self, e: &EventRef<'_>) {
        if self.count == 0 {
            self.first_seq = e.seq;
        }
        assert_eq!(
            e.seq,
            self.first_seq + self.count,
            "segment events must be consecutive"
        );
        let flags = if e.meta.is_some() { FLAG_META } else { 0 }
            | if e.offset.is_some() { FLAG_OFFSET } else { 0 };
        self.body.push(flags);
        self.body.extend_from_slice(&e.id.to_bytes());
        let stream = self.intern(e.stream);
        put_varint(&mut self.body, stream);
        put_varint(&mut self.body, e.version);
        let ty = self.intern(e.event_type);
        put_varint(&mut self.body, ty);
        let origin = self.intern(e.origin);
        put_varint(&mut self.body, origin);
        put_varint(&mut self.body, e.time);
        if let Some(offset) = e.offset {
            put_varint(&mut self.body, offset);
        }
        put_bytes(&mut self.body, e.data.as_bytes());
        if let Some(meta) = e.meta {
            put_bytes(&mut self.body, meta.as_bytes());
        }
        self.count += 1;
    }

    fn intern(&mut self, s: &str) -> u64 {
        if let Some(&i) = self.index.get(s) {
            return i as u64;
        }
        let i = self.strings.len() as u32;
        self.strings.push(s.to_owned());
        self.string_bytes += s.len() + 2;
        self.index.insert(s.to_owned(), i);
        i as u64
    }

    /// Position of the first event pushed (0 before any).
    pub fn first_seq(&self) -> u64 {
        self.first_seq
    }

    /// Events pushed so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// About how many bytes [`finish`](Self::finish) will return.
    pub fn size(&self) -> usize {
        self.body.len() + self.string_bytes + 24
    }

    /// The encoded segment (format 1).
    pub fn finish(self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.size() + 8);
        out.extend_from_slice(MAGIC);
        out.push(FORMAT);
        self.content(&mut out);
        seal(out)
    }

    /// The encoded segment, compressed (format 2) unless that saves less than an eighth.
    pub fn finish_packed(self) -> Vec<u8> {
        let mut content = Vec::with_capacity(self.size());
        self.content(&mut content);
        let mut out = Vec::with_capacity(content.len() / 2 + 16);
        out.extend_from_slice(MAGIC);
        out.push(PACKED);
        put_varint(&mut out, content.len() as u64);
        crate::lz::compress(&content, &mut out);
        if out.len() + 4 > content.len() - content.len() / 8 {
            out.clear();
            out.extend_from_slice(MAGIC);
            out.push(FORMAT);
            out.extend_from_slice(&content);
        }
        seal(out)
    }

    fn content(&self, out: &mut Vec<u8>) {
        put_varint(out, self.count);
        put_varint(out, self.first_seq);
        put_varint(out, self.strings.len() as u64);
        for s in &self.strings {
            put_bytes(out, s.as_bytes());
        }
        out.extend_from_slice(&self.body);
    }
}

/// Appends the checksum of everything before it.
fn seal(mut out: Vec<u8>) -> Vec<u8> {
    let crc = crc32(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// The format byte and what follows it, once the frame and checksum are checked.
fn frame(bytes: &[u8]) -> Result<(u8, &[u8]), SegmentError> {
    if bytes.len() < MAGIC.len() + 1 + 4 || &bytes[..4] != MAGIC {
        return Err(corrupt("bad frame"));
    }
    let (content, trailer) = bytes.split_at(bytes.len() - 4);
    let stored = u32::from_le_bytes(trailer.try_into().expect("4 bytes"));
    if crc32(content) != stored {
        return Err(corrupt("checksum mismatch"));
    }
    Ok((content[4], &content[5..]))
}

/// The largest content a packed segment may declare: far above any segment logfold writes,
/// low enough that a damaged length cannot ask for gigabytes.
const MAX_CONTENT: u64 = 64 << 20;

impl SegmentWriter {}

/// Encodes consecutive events as one segment.
pub fn encode<'a>(events: impl IntoIterator<Item = EventRef<'a>>) -> Vec<u8> {
    let mut w = SegmentWriter::new();
    for e in events {
        w.push(&e);
    }
    w.finish()
}

/// A verified segment, read without copying.
#[derive(Debug, Clone)]
pub struct Segment<'a> {
    count: u64,
    first_seq: u64,
    strings: Vec<&'a str>,
    body: &'a [u8],
}

impl<'a> Segment<'a> {
    /// Checks the frame and checksum of a plain (format 1) segment, then reads the header.
    /// A packed one needs room to expand: see [`Segment::parse_in`].
    pub fn parse(bytes: &'a [u8]) -> Result<Self, SegmentError> {
        match frame(bytes)? {
            (FORMAT, content) => Self::read(content),
            (format, _) => Err(SegmentError::UnsupportedFormat(format)),
        }
    }

    /// Like [`Segment::parse`] for any format: a packed segment is expanded into `scratch`.
    pub fn parse_in(bytes: &'a [u8], scratch: &'a mut Vec<u8>) -> Result<Self, SegmentError> {
        match frame(bytes)? {
            (FORMAT, content) => Self::read(content),
            (PACKED, content) => {
                let mut r = Reader { buf: content };
                let size = r.varint()?;
                if size > MAX_CONTENT {
                    return Err(corrupt("declared size too large"));
                }
                crate::lz::decompress(r.buf, size as usize, scratch)
                    .map_err(|e| SegmentError::Corrupt(e.to_string()))?;
                Self::read(scratch)
            }
            (format, _) => Err(SegmentError::UnsupportedFormat(format)),
        }
    }

    /// Reads the header of format 1 content (what follows the format byte).
    fn read(content: &'a [u8]) -> Result<Self, SegmentError> {
        let mut r = Reader { buf: content };
        let count = r.varint()?;
        let first_seq = r.varint()?;
        if count == 0 || first_seq == 0 || first_seq.checked_add(count).is_none() {
            return Err(corrupt("bad header"));
        }
        let n = r.varint()?;
        let mut strings = Vec::with_capacity(n.min(4096) as usize);
        for _ in 0..n {
            strings.push(r.str()?);
        }
        Ok(Segment {
            count,
            first_seq,
            strings,
            body: r.buf,
        })
    }

    /// Number of events.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Position of the first event.
    pub fn first_seq(&self) -> u64 {
        self.first_seq
    }

    /// Position of the last event.
    pub fn last_seq(&self) -> u64 {
        self.first_seq + self.count - 1
    }

    /// The stream, type and origin names of this segment, in table order.
    pub fn strings(&self) -> &[&'a str] {
        &self.strings
    }

    /// The events in order.
    pub fn events(&self) -> Events<'_, 'a> {
        Events {
            segment: self,
            r: Reader { buf: self.body },
            i: 0,
        }
    }

    /// All events, or the first structural error.
    pub fn decode(&self) -> Result<Vec<EventRef<'a>>, SegmentError> {
        self.events().collect()
    }
}

/// Iterator over a segment's events; see [`Segment::events`].
#[derive(Debug)]
pub struct Events<'s, 'a> {
    segment: &'s Segment<'a>,
    r: Reader<'a>,
    i: u64,
}

/// An event with its string-table indexes, for writers that pre-render the table.
#[derive(Debug, Clone, Copy)]
pub struct IndexedEvent<'a> {
    /// The event.
    pub event: EventRef<'a>,
    /// Index of `stream` in [`Segment::strings`].
    pub stream_ix: usize,
    /// Index of `event_type`.
    pub type_ix: usize,
    /// Index of `origin`.
    pub origin_ix: usize,
}

impl<'a> Events<'_, 'a> {
    /// The next event with its string indexes.
    pub fn next_indexed(&mut self) -> Option<Result<IndexedEvent<'a>, SegmentError>> {
        if self.i == self.segment.count {
            return if self.r.buf.is_empty() {
                None
            } else {
                self.r.buf = &[];
                Some(Err(corrupt("trailing bytes")))
            };
        }
        let out = self.read_one();
        if out.is_err() {
            self.i = self.segment.count;
            self.r.buf = &[];
        } else {
            self.i += 1;
        }
        Some(out)
    }

    fn read_one(&mut self) -> Result<IndexedEvent<'a>, SegmentError> {
        let strings = &self.segment.strings;
        let name = |ix: u64| -> Result<(usize, &'a str), SegmentError> {
            strings
                .get(ix as usize)
                .map(|s| (ix as usize, *s))
                .ok_or_else(|| corrupt("string index out of range"))
        };
        let r = &mut self.r;
        let flags = r.byte()?;
        if flags & !(FLAG_META | FLAG_OFFSET) != 0 {
            return Err(corrupt("unknown event flags"));
        }
        let id = EventId::from_bytes(r.take(16)?.try_into().expect("16 bytes"));
        let (stream_ix, stream) = name(r.varint()?)?;
        let version = r.varint()?;
        let (type_ix, event_type) = name(r.varint()?)?;
        let (origin_ix, origin) = name(r.varint()?)?;
        let time = r.varint()?;
        let offset = if flags & FLAG_OFFSET != 0 {
            Some(r.varint()?)
        } else {
            None
        };
        let data = r.str()?;
        let meta = if flags & FLAG_META != 0 {
            Some(r.str()?)
        } else {
            None
        };
        Ok(IndexedEvent {
            event: EventRef {
                id,
                stream,
                version,
                event_type,
                data,
                meta,
                time,
                origin,
                seq: self.segment.first_seq + self.i,
                offset,
            },
            stream_ix,
            type_ix,
            origin_ix,
        })
    }
}

impl<'a> Iterator for Events<'_, 'a> {
    type Item = Result<EventRef<'a>, SegmentError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_indexed().map(|r| r.map(|e| e.event))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;

    fn event(seq: u64, stream: &str, meta: Option<&str>, offset: Option<u64>) -> Event {
        Event {
            id: EventId(seq as u128 * 7919),
            stream: stream.into(),
            version: seq,
            event_type: "Deposited".into(),
            data: format!("{{\"amount\":{seq}}}"),
            meta: meta.map(Into::into),
            time: 1_700_000_000_000 + seq,
            origin: "client".into(),
            seq,
            offset,
        }
    }

    #[test]
    fn round_trips_events_with_and_without_meta_and_offset() {
        let events = vec![
            event(5, "a", None, None),
            event(6, "b", Some("{\"by\":\"x\"}"), None),
            event(7, "a", None, Some(70)),
        ];
        let bytes = encode(events.iter().map(Event::as_ref));
        let seg = Segment::parse(&bytes).unwrap();
        assert_eq!((seg.first_seq(), seg.last_seq(), seg.count()), (5, 7, 3));
        let back: Vec<Event> = seg
            .decode()
            .unwrap()
            .iter()
            .map(EventRef::to_owned)
            .collect();
        assert_eq!(back, events);
        assert_eq!(
            seg.strings().len(),
            4,
            "a, Deposited, client, b are stored once each"
        );
    }

    #[test]
    fn an_unknown_format_with_a_valid_checksum_is_unsupported_not_corrupt() {
        let mut bytes = encode([event(1, "a", None, None).as_ref()]);
        bytes[4] = 9;
        let n = bytes.len() - 4;
        let crc = crc32(&bytes[..n]);
        bytes[n..].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(
            Segment::parse(&bytes).unwrap_err(),
            SegmentError::UnsupportedFormat(9)
        );
    }

    #[test]
    fn truncated_and_empty_input_is_corrupt() {
        let bytes = encode([event(1, "a", None, None).as_ref()]);
        for n in 0..bytes.len() {
            assert!(
                matches!(Segment::parse(&bytes[..n]), Err(SegmentError::Corrupt(_))),
                "len {n}"
            );
        }
    }

    #[test]
    fn a_checksummed_segment_with_bad_structure_is_corrupt_not_a_panic() {
        // Valid frame and checksum around a body that lies about its event count.
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&[FORMAT, 3, 1, 0, 0]);
        let crc = crc32(&bytes);
        bytes.extend_from_slice(&crc.to_le_bytes());
        let seg = Segment::parse(&bytes).unwrap();
        assert!(matches!(seg.decode(), Err(SegmentError::Corrupt(_))));
    }
}
