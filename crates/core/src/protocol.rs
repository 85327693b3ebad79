//! The sync protocol's messages, shared by the browser client and the sync server.
//!
//! JSON over HTTP under `/v1/`; every push carries [`PROTOCOL_VERSION`] so a client that is too
//! old or too new gets a clear answer instead of a parse error. Event data and metadata travel as
//! raw JSON text and are stored as sent, never re-encoded.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::event::{Event, NewEvent};
use crate::id::EventId;
use crate::json::push_str;
use crate::version::ExpectedVersion;

mod read;
pub mod snapshots;

pub use read::{read_expected, write_expected};

/// The protocol version this code speaks; a push with any other is refused whole.
pub const PROTOCOL_VERSION: u32 = 1;

/// The content type of the compact binary pull encoding: one segment (see [`crate::segment`])
/// whose `seq` and `offset` are both the server offset.
pub const SEGMENT_CONTENT_TYPE: &str = "application/vnd.logfold.segment";

/// The response header that carries the log's head with a binary pull.
pub const HEAD_HEADER: &str = "logfold-head";
/// The response header naming the server log's identity: random, made when the server first
/// stores the log. A client that synced with one identity and meets another (a restored or
/// wiped database, another server) has diverged from it. Absent for a log with no events yet.
pub const LOG_ID_HEADER: &str = "logfold-log-id";
/// The live tail's response header: the seconds between the keep-alive comments the server
/// sends on a quiet tail. A client that hears nothing for a few of them takes the connection
/// for dead (a network that drops packets leaves it open) and opens another.
pub const KEEPALIVE_HEADER: &str = "logfold-keepalive";

/// `POST /v1/logs/{log}/push`: the client's outbox, in order, cut into batches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PushRequest {
    /// Must equal [`PROTOCOL_VERSION`].
    pub protocol: u32,
    /// Committed one by one, in this order; each is atomic.
    pub batches: Vec<PushBatch>,
}

/// One atomic client batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PushBatch {
    /// The client (device) that appended the events; stored as their origin.
    pub client: String,
    /// The sync leader's epoch: a batch from an epoch lower than one already seen is refused.
    #[serde(default)]
    pub epoch: u64,
    /// The client's batch number: with `client`, the batch's idempotency key.
    pub batch: u64,
    /// The events, in the client's order.
    pub events: Vec<PushEvent>,
    /// Expected stream versions, checked in the transaction that appends.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub expected: BTreeMap<String, ExpectedVersion>,
}

/// An event as the client appended it. The server keeps id, time and the JSON as sent; it gives
/// the offset and the final stream version (the client's `version` is provisional and ignored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PushEvent {
    /// The client-made id: the idempotency key across retries.
    pub id: EventId,
    /// The stream the event belongs to.
    pub stream: String,
    /// The event's type name.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The payload as JSON text.
    #[serde(with = "raw_json")]
    pub data: String,
    /// Optional metadata as JSON text.
    #[serde(default, with = "raw_json_opt")]
    pub meta: Option<String>,
    /// Milliseconds since the Unix epoch when the client appended it.
    pub time: u64,
    /// The client's provisional stream version; informative only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
}

impl PushEvent {
    /// The event as the validation rules see it.
    pub fn to_new_event(&self) -> NewEvent {
        NewEvent {
            stream: self.stream.clone(),
            event_type: self.event_type.clone(),
            data: self.data.clone(),
            meta: self.meta.clone(),
        }
    }
}

/// The answer to a push: one result per batch, in the request's order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PushResponse {
    /// The server's [`PROTOCOL_VERSION`].
    pub protocol: u32,
    /// The log's last offset after this push.
    pub head: u64,
    /// One per batch of the request.
    pub results: Vec<BatchResult>,
}

/// What became of one batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum BatchResult {
    /// Written now: the offsets and final stream versions of its events, in order.
    Accepted {
        /// Per event.
        offsets: Vec<u64>,
        /// Per event.
        versions: Vec<u64>,
    },
    /// Already written by an earlier push: the offsets and versions it got then.
    Duplicate {
        /// Per event.
        offsets: Vec<u64>,
        /// Per event.
        versions: Vec<u64>,
    },
    /// Not written, and never will be as it is; later batches are unaffected.
    Rejected {
        /// The stable reason code.
        reason: RejectReason,
        /// A sentence for people.
        message: String,
        /// What a client needs to act, e.g. the stream's current version: JSON text.
        #[serde(default = "null_text", with = "tagged_json")]
        details: String,
    },
}

impl BatchResult {
    /// The offsets of an accepted or duplicate batch; empty for a rejected one.
    pub fn offsets(&self) -> &[u64] {
        match self {
            BatchResult::Accepted { offsets, .. } | BatchResult::Duplicate { offsets, .. } => {
                offsets
            }
            BatchResult::Rejected { .. } => &[],
        }
    }
}

/// Why a batch was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// A stream was not at the expected version (`details`: stream, expected, actual).
    Conflict,
    /// An event broke a validation rule (`details`: index, field, reason).
    InvalidEvent,
    /// The batch as a whole is malformed (empty, too long, repeated ids, stray expectation).
    InvalidBatch,
    /// Some of its events, or its batch number with other events, are already stored.
    PartlyKnown,
    /// It comes from a sync leader older than one the server has already heard from.
    StaleEpoch,
    /// Its expected versions counted on events of an earlier batch of its client that was
    /// refused (`details.batch`, when the client refused it).
    Depends,
}

/// `GET /v1/logs/{log}/events` in JSON, and the payload of each live message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PullResponse {
    /// The server's [`PROTOCOL_VERSION`].
    pub protocol: u32,
    /// The log's last offset when read.
    pub head: u64,
    /// The events after the cursor, in offset order.
    pub events: Vec<PulledEvent>,
}

/// A stored event as readers receive it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PulledEvent {
    /// Its place in the log: dense, from 1, in commit order.
    pub offset: u64,
    /// The client-made id.
    pub id: EventId,
    /// Its stream.
    pub stream: String,
    /// Its final version in the stream.
    pub version: u64,
    /// Its type name.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The payload as JSON text.
    #[serde(with = "raw_json")]
    pub data: String,
    /// Metadata as JSON text.
    #[serde(default, with = "raw_json_opt")]
    pub meta: Option<String>,
    /// Client time in Unix milliseconds.
    pub time: u64,
    /// The client that appended it.
    pub origin: String,
}

impl From<PulledEvent> for Event {
    fn from(p: PulledEvent) -> Event {
        Event {
            id: p.id,
            stream: p.stream,
            version: p.version,
            event_type: p.event_type,
            data: p.data,
            meta: p.meta,
            time: p.time,
            origin: p.origin,
            seq: p.offset,
            offset: Some(p.offset),
        }
    }
}

/// The body of every non-2xx answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// A stable code: `UNAUTHORIZED`, `FORBIDDEN`, `BAD_REQUEST`, `UPGRADE_REQUIRED`, …
    pub code: String,
    /// What is wrong, for people.
    pub message: String,
    /// The server's [`PROTOCOL_VERSION`], so a client knows what to upgrade to.
    pub protocol: u32,
}

/// Writes a JSON pull body for `events` (each with its `offset` set) without re-parsing their
/// data: the hot path of every reader.
pub fn write_pull_json(out: &mut String, head: u64, events: &[Event]) {
    use std::fmt::Write;
    let _ = write!(
        out,
        "{{\"protocol\":{PROTOCOL_VERSION},\"head\":{head},\"events\":["
    );
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{{\"offset\":{},\"id\":\"", e.offset.unwrap_or(e.seq));
        e.id.write_to(out);
        out.push_str("\",\"stream\":");
        push_str(out, &e.stream);
        let _ = write!(out, ",\"version\":{},\"type\":", e.version);
        push_str(out, &e.event_type);
        out.push_str(",\"data\":");
        out.push_str(&e.data);
        out.push_str(",\"meta\":");
        out.push_str(e.meta.as_deref().unwrap_or("null"));
        let _ = write!(out, ",\"time\":{},\"origin\":", e.time);
        push_str(out, &e.origin);
        out.push('}');
    }
    out.push_str("]}");
}

impl Serialize for EventId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut text = String::with_capacity(36);
        self.write_to(&mut text);
        s.serialize_str(&text)
    }
}

impl<'de> Deserialize<'de> for EventId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct IdVisitor;
        impl Visitor<'_> for IdVisitor {
            type Value = EventId;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an event id like 0190c2a4-…-… (36 characters)")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<EventId, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_str(IdVisitor)
    }
}

/// On the wire: a JSON number is `Exact`, `"none"` is `NoStream`, `"any"` is `Any`.
impl Serialize for ExpectedVersion {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            ExpectedVersion::Any => s.serialize_str("any"),
            ExpectedVersion::NoStream => s.serialize_str("none"),
            ExpectedVersion::Exact(v) => s.serialize_u64(*v),
        }
    }
}

impl<'de> Deserialize<'de> for ExpectedVersion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ExpectedVisitor;
        impl Visitor<'_> for ExpectedVisitor {
            type Value = ExpectedVersion;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a stream version (a number), \"none\" or \"any\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ExpectedVersion, E> {
                Ok(ExpectedVersion::Exact(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ExpectedVersion, E> {
                match v {
                    "any" => Ok(ExpectedVersion::Any),
                    "none" => Ok(ExpectedVersion::NoStream),
                    _ => Err(E::invalid_value(de::Unexpected::Str(v), &self)),
                }
            }
        }
        d.deserialize_any(ExpectedVisitor)
    }
}

fn null_text() -> String {
    "null".to_owned()
}

/// JSON text carried as a JSON value: checked by the parser, kept byte for byte.
mod raw_json {
    use super::*;

    pub fn serialize<S: Serializer>(text: &str, s: S) -> Result<S::Ok, S::Error> {
        let raw: &RawValue = serde_json::from_str(text).map_err(serde::ser::Error::custom)?;
        raw.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        let raw: Box<RawValue> = Deserialize::deserialize(d)?;
        Ok(Box::<str>::from(raw).into_string())
    }
}

/// Like `raw_json`, for a field of an internally tagged enum, whose buffered content cannot
/// give a raw value: read as a tree and written back as compact text.
mod tagged_json {
    use super::*;

    pub use super::raw_json::serialize;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        let v: serde_json::Value = Deserialize::deserialize(d)?;
        Ok(v.to_string())
    }
}

/// Like `raw_json`, with JSON `null` (or absence) as `None`.
mod raw_json_opt {
    use super::*;

    pub fn serialize<S: Serializer>(text: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
        match text {
            Some(t) => raw_json::serialize(t, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        let raw: Option<Box<RawValue>> = Deserialize::deserialize(d)?;
        Ok(raw.map(|r| Box::<str>::from(r).into_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0190c2a4-1111-7222-8333-444455556666";

    #[test]
    fn a_push_parses_with_raw_data_and_wire_expectations() {
        let body = format!(
            r#"{{"protocol":1,"batches":[{{"client":"c","epoch":2,"batch":7,
            "events":[{{"id":"{ID}","stream":"a","type":"T","data":{{"x": [1, 2]}},"time":5}}],
            "expected":{{"a":3,"b":"none","c":"any"}}}}]}}"#
        );
        let req: PushRequest = serde_json::from_str(&body).unwrap();
        let b = &req.batches[0];
        assert_eq!(b.events[0].data, r#"{"x": [1, 2]}"#);
        assert_eq!(b.events[0].meta, None);
        assert_eq!(b.events[0].id.to_string(), ID);
        assert_eq!(b.expected["a"], ExpectedVersion::Exact(3));
        assert_eq!(b.expected["b"], ExpectedVersion::NoStream);
        assert_eq!(b.expected["c"], ExpectedVersion::Any);
        let back: PushRequest =
            serde_json::from_str(&serde_json::to_string(&req).unwrap()).unwrap();
        assert_eq!(back, req);
    }

    #[test]
    fn a_bad_id_or_expectation_is_a_parse_error_that_says_what() {
        let body = r#"{"id":"nope","stream":"a","type":"T","data":1,"time":5}"#;
        let err = serde_json::from_str::<PushEvent>(body).unwrap_err();
        assert!(err.to_string().contains("not an event id"), "{err}");
        let err = serde_json::from_str::<ExpectedVersion>("\"some\"").unwrap_err();
        assert!(err.to_string().contains("\"none\""), "{err}");
    }

    #[test]
    fn results_are_tagged_by_status() {
        let r = BatchResult::Rejected {
            reason: RejectReason::PartlyKnown,
            message: "m".into(),
            details: r#"{"known":1}"#.into(),
        };
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(
            text,
            r#"{"status":"rejected","reason":"partly_known","message":"m","details":{"known":1}}"#
        );
        let a: BatchResult =
            serde_json::from_str(r#"{"status":"accepted","offsets":[4,5],"versions":[1,2]}"#)
                .unwrap();
        assert_eq!(a.offsets(), [4, 5]);
    }

    #[test]
    fn the_fast_pull_writer_matches_the_serde_types() {
        let e = Event {
            id: ID.parse().unwrap(),
            stream: "s\"q".into(),
            version: 2,
            event_type: "T".into(),
            data: "{\"a\":\"é\"}".into(),
            meta: Some("{\"m\":1}".into()),
            time: 9,
            origin: "c".into(),
            seq: 3,
            offset: Some(3),
        };
        let mut out = String::new();
        write_pull_json(&mut out, 7, std::slice::from_ref(&e));
        let pulled: PullResponse = serde_json::from_str(&out).unwrap();
        assert_eq!(pulled.head, 7);
        assert_eq!(Event::from(pulled.events[0].clone()), e);
    }
}
