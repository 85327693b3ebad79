//! What a client stores of its sync state, record by record: an [`OutboxBatch`] per waiting
//! batch and a [`Rejection`] per refused one. The browser keeps them in IndexedDB, the
//! simulation in memory; both go through these encodings.

use std::collections::BTreeMap;

use crate::event::Event;
use crate::id::EventId;
use crate::json::{push_str, push_u64, write_event, JsonError, Reader};
use crate::protocol::{read_expected, write_expected, RejectReason};
use crate::segment::{Segment, SegmentWriter};
use crate::version::ExpectedVersion;

/// Where an outbox batch stands with the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchState {
    /// Not known to be on the server: pushed (again) until an answer says what became of it.
    Waiting,
    /// The server has it: never pushed again; its events leave as the pull confirms them.
    Acknowledged,
    /// The server has some of its events (`partly_known`): not pushed; once the confirmed log
    /// reaches `through` (the server's head when it said so) what is left is resent as a new
    /// batch.
    Reconcile {
        /// The server's head when it answered.
        through: u64,
    },
}

/// One appended batch the server has not shown back in full.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxBatch {
    /// Its batch number: with the client id, its idempotency key on the server.
    pub batch: u64,
    /// Its place in local order: the number it was appended as (a batch resent under a new
    /// number keeps its place).
    pub place: u64,
    /// Its events not yet confirmed, with provisional `seq`s and versions.
    pub events: Vec<Event>,
    /// The expected versions given at append, checked again by the server.
    pub expected: BTreeMap<String, ExpectedVersion>,
    /// Where it stands.
    pub state: BatchState,
}

/// The header of a stored batch, before its events, as JSON:
/// `{"expected":{…},"state":"waiting"|"acknowledged"|{"reconcile":{"through":n}},"place":n}`
/// (`place` absent when it is the batch number).
struct Header {
    expected: BTreeMap<String, ExpectedVersion>,
    state: BatchState,
    place: Option<u64>,
}

impl Header {
    fn write(&self) -> String {
        let mut out = String::from("{\"expected\":");
        write_expected(&mut out, &self.expected);
        out.push_str(",\"state\":");
        match self.state {
            BatchState::Waiting => out.push_str("\"waiting\""),
            BatchState::Acknowledged => out.push_str("\"acknowledged\""),
            BatchState::Reconcile { through } => {
                out.push_str("{\"reconcile\":{\"through\":");
                push_u64(&mut out, through);
                out.push_str("}}");
            }
        }
        if let Some(place) = self.place {
            out.push_str(",\"place\":");
            push_u64(&mut out, place);
        }
        out.push('}');
        out
    }

    fn read(text: &str) -> Result<Header, JsonError> {
        let mut r = Reader::new(text);
        let (mut expected, mut state, mut place) = (None, None, None);
        r.object(|r, key| {
            match &*key {
                "expected" => expected = Some(read_expected(r)?),
                "state" => state = Some(read_state(r)?),
                "place" => place = (!r.null()?).then(|| r.u64()).transpose()?,
                _ => drop(r.skip()?),
            }
            Ok(())
        })?;
        r.end()?;
        Ok(Header {
            expected: expected.ok_or_else(|| r.error("missing field expected"))?,
            state: state.ok_or_else(|| r.error("missing field state"))?,
            place,
        })
    }
}

fn read_state(r: &mut Reader<'_>) -> Result<BatchState, JsonError> {
    if r.peek() == Some(b'"') {
        return match &*r.string()? {
            "waiting" => Ok(BatchState::Waiting),
            "acknowledged" => Ok(BatchState::Acknowledged),
            _ => Err(r.error("unknown batch state")),
        };
    }
    let mut through = None;
    r.object(|r, key| {
        if key != "reconcile" {
            return Err(r.error("unknown batch state"));
        }
        r.object(|r, key| {
            match &*key {
                "through" => through = Some(r.u64()?),
                _ => drop(r.skip()?),
            }
            Ok(())
        })
    })?;
    let through = through.ok_or_else(|| r.error("missing field through"))?;
    Ok(BatchState::Reconcile { through })
}

fn utf8(bytes: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(bytes).map_err(|_| "not UTF-8".to_owned())
}

/// Marks the record layout with a header; the first layout began with the expectations'
/// length, which is never this.
const HEADED: [u8; 4] = [0xff; 4];

impl OutboxBatch {
    /// The stored record: a mark, the header as JSON (length-prefixed), then the events as a
    /// compressed segment (a big batch is written once and read at every open).
    pub fn encode(&self) -> Vec<u8> {
        let header = Header {
            expected: self.expected.clone(),
            state: self.state,
            place: (self.place != self.batch).then_some(self.place),
        };
        let header = header.write().into_bytes();
        let mut w = SegmentWriter::new();
        for e in &self.events {
            w.push(&e.as_ref());
        }
        let segment = w.finish_packed();
        let mut out = Vec::with_capacity(8 + header.len() + segment.len());
        out.extend_from_slice(&HEADED);
        out.extend_from_slice(&(header.len() as u32).to_le_bytes());
        out.extend_from_slice(&header);
        out.extend_from_slice(&segment);
        out
    }

    /// Reads a record written by [`OutboxBatch::encode`] or by the first layout (expectations
    /// only, a waiting batch); the error says what is damaged.
    pub fn decode(batch: u64, bytes: &[u8]) -> Result<OutboxBatch, String> {
        let (headed, rest) = match bytes.strip_prefix(&HEADED) {
            Some(rest) => (true, rest),
            None => (false, bytes),
        };
        let (len, rest) = rest
            .split_first_chunk::<4>()
            .ok_or_else(|| "too short".to_owned())?;
        let len = u32::from_le_bytes(*len) as usize;
        if rest.len() < len {
            return Err("too short".into());
        }
        let text = utf8(&rest[..len])?;
        let header = if headed {
            Header::read(text).map_err(|e| format!("header: {e}"))?
        } else {
            let mut r = Reader::new(text);
            let expected = read_expected(&mut r)
                .and_then(|e| r.end().map(|_| e))
                .map_err(|e| format!("expectations: {e}"))?;
            Header {
                expected,
                state: BatchState::Waiting,
                place: None,
            }
        };
        let mut scratch = Vec::new();
        let seg = Segment::parse_in(&rest[len..], &mut scratch).map_err(|e| e.to_string())?;
        let events = seg
            .decode()
            .map_err(|e| e.to_string())?
            .iter()
            .map(|e| e.to_owned())
            .collect();
        Ok(OutboxBatch {
            batch,
            place: header.place.unwrap_or(batch),
            events,
            expected: header.expected,
            state: header.state,
        })
    }
}

/// A batch the server refused, out of the outbox, kept until the app dismisses it.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    /// The batch as it was last shown.
    pub batch: OutboxBatch,
    /// Why.
    pub reason: RejectReason,
    /// The server's sentence for people.
    pub message: String,
    /// What the app needs to act, e.g. the stream's current version: JSON text.
    pub details: String,
    /// When it was rejected (ms since the Unix epoch).
    pub time: u64,
}

impl Rejection {
    /// The stored record, which is also what the app sees: `{ id, batch, reason, message,
    /// details, currentVersion, time, events }`, the events as they were last shown.
    pub fn to_json(&self) -> String {
        let current = match crate::json::read::parse(&self.details) {
            Ok(d) => match d.get("actual") {
                Some(crate::json::Json::Num(n)) => {
                    let mut out = String::new();
                    crate::json::push_f64(&mut out, *n);
                    out
                }
                _ => "null".to_owned(),
            },
            Err(_) => "null".to_owned(),
        };
        let mut out = String::from("{\"id\":");
        push_u64(&mut out, self.batch.batch);
        out.push_str(",\"batch\":");
        push_u64(&mut out, self.batch.batch);
        out.push_str(",\"reason\":");
        push_str(&mut out, self.reason.as_str());
        out.push_str(",\"message\":");
        push_str(&mut out, &self.message);
        out.push_str(",\"details\":");
        out.push_str(if self.details.is_empty() {
            "null"
        } else {
            &self.details
        });
        out.push_str(",\"currentVersion\":");
        out.push_str(&current);
        out.push_str(",\"time\":");
        push_u64(&mut out, self.time);
        out.push_str(",\"events\":[");
        for (i, e) in self.batch.events.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_event(&mut out, &e.as_ref());
        }
        out.push_str("]}");
        out
    }

    /// The batch number and event ids of a stored record: what a client needs to retract it.
    pub fn ids_from_json(json: &str) -> Result<(u64, Vec<EventId>), String> {
        let mut r = Reader::new(json);
        let (mut batch, mut ids) = (None, Vec::new());
        r.object(|r, key| {
            match &*key {
                "batch" => batch = Some(r.u64()?),
                "events" => r.array(|r| {
                    r.object(|r, key| {
                        if key == "id" {
                            let text = r.string()?;
                            ids.push(text.parse().map_err(|_| r.error("not an event id"))?);
                        } else {
                            r.skip()?;
                        }
                        Ok(())
                    })
                })?,
                _ => drop(r.skip()?),
            }
            Ok(())
        })
        .map_err(|e| e.to_string())?;
        let batch = batch.ok_or_else(|| "missing field batch".to_owned())?;
        Ok((batch, ids))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::IdGenerator;

    fn batch(state: BatchState, place: u64) -> OutboxBatch {
        let mut ids = IdGenerator::new(3);
        let events = (0..3)
            .map(|i| Event {
                id: ids.next_id(1_700_000_000_000),
                stream: format!("s{}", i % 2),
                version: i + 1,
                event_type: "Deposited".into(),
                data: format!(r#"{{"amount":{i},"note":"a \"quoted\" word"}}"#),
                meta: (i == 1).then(|| r#"{"by":"test"}"#.to_owned()),
                time: 1_700_000_000_000 + i,
                origin: "c".into(),
                seq: 10 + i,
                offset: None,
            })
            .collect();
        OutboxBatch {
            batch: 7,
            place,
            events,
            expected: BTreeMap::from([("s0".into(), ExpectedVersion::Exact(4))]),
            state,
        }
    }

    #[test]
    fn a_record_round_trips_and_damage_is_an_error() {
        for (state, place) in [
            (BatchState::Waiting, 7),
            (BatchState::Acknowledged, 7),
            (BatchState::Reconcile { through: 42 }, 3),
        ] {
            let b = batch(state, place);
            let bytes = b.encode();
            assert_eq!(OutboxBatch::decode(7, &bytes).unwrap(), b);
            assert!(OutboxBatch::decode(7, &bytes[..6]).is_err());
            assert!(OutboxBatch::decode(7, &bytes[..bytes.len() - 1]).is_err());
        }
    }

    #[test]
    fn a_record_of_the_first_layout_reads_as_waiting() {
        let b = batch(BatchState::Waiting, 7);
        let expected = serde_json::to_vec(&b.expected).unwrap();
        let mut w = SegmentWriter::new();
        for e in &b.events {
            w.push(&e.as_ref());
        }
        let mut old = (expected.len() as u32).to_le_bytes().to_vec();
        old.extend_from_slice(&expected);
        old.extend_from_slice(&w.finish_packed());
        assert_eq!(OutboxBatch::decode(7, &old).unwrap(), b);
    }

    #[test]
    fn a_rejection_is_what_the_app_sees_and_gives_back_its_ids() {
        let r = Rejection {
            batch: batch(BatchState::Waiting, 7),
            reason: RejectReason::Conflict,
            message: "stream \"s0\" is at version 5".into(),
            details: serde_json::json!({ "stream": "s0", "expected": 4, "actual": 5 }).to_string(),
            time: 42,
        };
        let json: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(json["id"], 7);
        assert_eq!(json["reason"], "conflict");
        assert_eq!(json["currentVersion"], 5);
        assert_eq!(json["time"], 42);
        assert_eq!(json["events"][1]["meta"]["by"], "test");
        let (n, ids) = Rejection::ids_from_json(&r.to_json()).unwrap();
        assert_eq!(n, 7);
        assert_eq!(ids, r.batch.events.iter().map(|e| e.id).collect::<Vec<_>>());
    }
}
