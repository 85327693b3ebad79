//! [`Outbox`]: the batches a browser client appended that the server has not shown back yet,
//! and the decisions about them. The browser keeps it in IndexedDB (one record per batch, see
//! [`Pending::encode`]) and a copy in memory; this module does no I/O, so the rules the browser
//! follows are tested here on the host. They are [`Client`](super::Client)'s rules, for a log
//! that is too large to hold in memory: only the outbox is.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::append::{AppendError, Batch};
use crate::commit::MAX_BATCH_EVENTS;
use crate::event::Event;
use crate::id::EventId;
use crate::json::{push_str, push_u64, write_event};
use crate::protocol::{BatchResult, RejectReason, PROTOCOL_VERSION};
use crate::segment::{Segment, SegmentWriter};
use crate::version::ExpectedVersion;

/// One appended batch waiting for the server: its events with provisional `seq`s and versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// Its batch number: with the client id, its idempotency key on the server.
    pub batch: u64,
    /// Its events not yet confirmed.
    pub events: Vec<Event>,
    /// The expected versions given at append, checked again by the server.
    pub expected: BTreeMap<String, ExpectedVersion>,
}

impl Pending {
    /// The stored record: the expectations as JSON (length-prefixed), then the events as a
    /// compressed segment.
    pub fn encode(&self) -> Vec<u8> {
        let expected = serde_json::to_string(&self.expected).unwrap_or_else(|_| "{}".into());
        let mut w = SegmentWriter::new();
        for e in &self.events {
            w.push(&e.as_ref());
        }
        // Compressed like the log's segments: an outbox of a big batch is written once and
        // read at every open, so fewer bytes pay.
        let segment = w.finish_packed();
        let mut out = Vec::with_capacity(4 + expected.len() + segment.len());
        out.extend_from_slice(&(expected.len() as u32).to_le_bytes());
        out.extend_from_slice(expected.as_bytes());
        out.extend_from_slice(&segment);
        out
    }

    /// Reads a record written by [`Pending::encode`]; the error says what is damaged.
    pub fn decode(batch: u64, bytes: &[u8]) -> Result<Pending, String> {
        let (len, rest) = bytes
            .split_first_chunk::<4>()
            .ok_or_else(|| "too short".to_owned())?;
        let len = u32::from_le_bytes(*len) as usize;
        if rest.len() < len {
            return Err("too short".into());
        }
        let expected =
            serde_json::from_slice(&rest[..len]).map_err(|e| format!("expectations: {e}"))?;
        let mut scratch = Vec::new();
        let seg = Segment::parse_in(&rest[len..], &mut scratch).map_err(|e| e.to_string())?;
        let events = seg
            .decode()
            .map_err(|e| e.to_string())?
            .iter()
            .map(|e| e.to_owned())
            .collect();
        Ok(Pending {
            batch,
            events,
            expected,
        })
    }
}

/// A batch the server rejected, taken out of the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    /// The batch as it was last shown.
    pub pending: Pending,
    /// Why.
    pub reason: RejectReason,
    /// The server's sentence for people.
    pub message: String,
    /// What the app needs to act, e.g. the stream's current version.
    pub details: serde_json::Value,
}

impl Rejected {
    /// The record the app sees: `{ id, batch, reason, message, details, currentVersion, time,
    /// events }`, the events as they were last shown; `time` is when it was rejected.
    pub fn to_json(&self, time: u64) -> String {
        let reason = serde_json::to_string(&self.reason).unwrap_or_else(|_| "\"unknown\"".into());
        let current = self
            .details
            .get("actual")
            .filter(|v| v.is_number())
            .map_or_else(|| "null".to_owned(), |v| v.to_string());
        let mut out = String::from("{\"id\":");
        push_u64(&mut out, self.pending.batch);
        out.push_str(",\"batch\":");
        push_u64(&mut out, self.pending.batch);
        out.push_str(",\"reason\":");
        out.push_str(&reason);
        out.push_str(",\"message\":");
        push_str(&mut out, &self.message);
        out.push_str(",\"details\":");
        out.push_str(&self.details.to_string());
        out.push_str(",\"currentVersion\":");
        out.push_str(&current);
        out.push_str(",\"time\":");
        push_u64(&mut out, time);
        out.push_str(",\"events\":[");
        for (i, e) in self.pending.events.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_event(&mut out, &e.as_ref());
        }
        out.push_str("]}");
        out
    }
}

/// What a push answer did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Answer {
    /// Batches the server has (accepted now or before).
    pub acknowledged: Vec<u64>,
    /// The highest acknowledged batch number: the batches up to it are never pushed again.
    pub acked_through: u64,
    /// Batches rejected, now out of the outbox.
    pub rejected: Vec<Rejected>,
    /// The server has heard from a newer leader of this client: stop pushing.
    pub fenced: bool,
}

/// What pulled events did to the outbox.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Confirmation {
    /// The events were all this client's, the outbox's first ones in order, and all shown:
    /// the tables already show them, and the outbox after them keeps its stamps.
    pub front: bool,
    /// Pulled events that were this client's.
    pub ours: u64,
    /// Batches that lost events: rewritten, or deleted when now empty.
    pub changed: Vec<u64>,
}

/// The outbox: batches in local order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outbox {
    /// Oldest first.
    pub batches: Vec<Pending>,
}

impl Outbox {
    /// Events waiting.
    pub fn len(&self) -> usize {
        self.batches.iter().map(|b| b.events.len()).sum()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.batches.iter().all(|b| b.events.is_empty())
    }

    /// The events in order.
    pub fn events(&self) -> impl Iterator<Item = &Event> {
        self.batches.iter().flat_map(|b| b.events.iter())
    }

    /// The streams the events belong to.
    pub fn streams(&self) -> HashSet<&str> {
        self.events().map(|e| e.stream.as_str()).collect()
    }

    /// A batch by number.
    pub fn batch(&self, n: u64) -> Option<&Pending> {
        self.batches.iter().find(|p| p.batch == n)
    }

    /// Gives the events `seq`s after the confirmed `head` and versions after the confirmed
    /// `versions`, in order; returns the versions of confirmed ⊕ outbox.
    pub fn restamp(
        &mut self,
        head: u64,
        mut versions: HashMap<String, u64>,
    ) -> HashMap<String, u64> {
        let mut seq = head;
        for e in self.batches.iter_mut().flat_map(|b| b.events.iter_mut()) {
            seq += 1;
            e.seq = seq;
            let v = match versions.get_mut(&e.stream) {
                Some(v) => v,
                None => versions.entry(e.stream.clone()).or_insert(0),
            };
            *v += 1;
            e.version = *v;
            e.offset = None;
        }
        versions
    }

    /// Writes the next push request body: the batches after `acked`, oldest first, as many as
    /// fit in `max_bytes` (measured as written; at least one). Returns their numbers; none when
    /// nothing waits. Written by hand: the data is JSON checked at append, copied as it is.
    pub fn write_push(
        &self,
        out: &mut String,
        client: &str,
        epoch: u64,
        acked: u64,
        max_bytes: usize,
    ) -> Vec<u64> {
        let begin = out.len();
        out.push_str("{\"protocol\":");
        push_u64(out, u64::from(PROTOCOL_VERSION));
        out.push_str(",\"batches\":[");
        let mut numbers = Vec::new();
        for p in self.batches.iter().filter(|p| p.batch > acked) {
            let before = out.len();
            if !numbers.is_empty() {
                out.push(',');
            }
            write_batch(
                out,
                client,
                epoch,
                p.batch,
                &p.expected,
                p.events.iter().map(PushFields::from),
            );
            if !numbers.is_empty() && out.len() - begin + 2 > max_bytes {
                out.truncate(before);
                break;
            }
            numbers.push(p.batch);
        }
        out.push_str("]}");
        numbers
    }

    /// Applies the answer to a push of batches `numbers` (`results` in the same order), with
    /// batches up to `acked` already acknowledged. Acknowledged batches stay until the pull
    /// brings them back; rejected ones leave. An answer about a batch no longer here, or a
    /// rejection of one the server has acknowledged before, is stale and ignored. A
    /// `stale_epoch` rejection stops the whole answer: it is about the leader, not the batch.
    pub fn answer(&mut self, acked: u64, numbers: &[u64], results: &[BatchResult]) -> Answer {
        let mut out = Answer {
            acked_through: acked,
            ..Answer::default()
        };
        for (n, result) in numbers.iter().zip(results) {
            if self.batch(*n).is_none() {
                continue;
            }
            match result {
                BatchResult::Accepted { .. } | BatchResult::Duplicate { .. } => {
                    out.acked_through = out.acked_through.max(*n);
                    out.acknowledged.push(*n);
                }
                BatchResult::Rejected {
                    reason: RejectReason::StaleEpoch,
                    ..
                } => {
                    out.fenced = true;
                    break;
                }
                BatchResult::Rejected { .. } if *n <= out.acked_through => {}
                BatchResult::Rejected {
                    reason,
                    message,
                    details,
                } => {
                    let at = self.batches.iter().position(|p| p.batch == *n);
                    let pending = self.batches.remove(at.expect("found above"));
                    out.rejected.push(Rejected {
                        pending,
                        reason: *reason,
                        message: message.clone(),
                        details: details.clone(),
                    });
                }
            }
        }
        out
    }

    /// The events of acknowledged batches whose offsets continue the confirmed `head` without
    /// a gap, as the server stored them (its offsets and versions; everything else as sent).
    /// Whole batches only; they can be confirmed without pulling them back.
    pub fn accepted_after_head(
        &self,
        head: u64,
        numbers: &[u64],
        results: &[BatchResult],
    ) -> Vec<Event> {
        let mut next = head + 1;
        let mut out = Vec::new();
        for (n, result) in numbers.iter().zip(results) {
            let (BatchResult::Accepted { offsets, versions }
            | BatchResult::Duplicate { offsets, versions }) = result
            else {
                break;
            };
            let Some(p) = self.batch(*n) else { break };
            if p.events.len() != offsets.len() || versions.len() != offsets.len() {
                break;
            }
            let whole = out.len();
            for ((e, offset), version) in p.events.iter().zip(offsets).zip(versions) {
                if *offset != next {
                    out.truncate(whole);
                    return out;
                }
                let mut e = e.clone();
                e.seq = *offset;
                e.offset = Some(*offset);
                e.version = *version;
                out.push(e);
                next += 1;
            }
        }
        out
    }

    /// Takes this client's events among newly confirmed `events` out of the outbox (the first
    /// `shown` outbox events are what the tables show).
    pub fn confirm(&mut self, events: &[Event], shown: usize) -> Confirmation {
        let ids: HashSet<EventId> = events.iter().map(|e| e.id).collect();
        let front = shown >= events.len() && {
            let mut mine = self.events();
            events
                .iter()
                .all(|e| mine.next().is_some_and(|m| m.id == e.id))
        };
        let mut out = Confirmation {
            front,
            ..Confirmation::default()
        };
        for p in &mut self.batches {
            let before = p.events.len();
            p.events.retain(|e| !ids.contains(&e.id));
            if p.events.len() < before {
                out.ours += (before - p.events.len()) as u64;
                out.changed.push(p.batch);
            }
        }
        self.batches.retain(|p| !p.events.is_empty());
        out
    }
}

/// What a push body carries of one event.
struct PushFields<'a> {
    id: EventId,
    stream: &'a str,
    event_type: &'a str,
    data: &'a str,
    meta: Option<&'a str>,
    time: u64,
    version: u64,
}

impl<'a> From<&'a Event> for PushFields<'a> {
    fn from(e: &'a Event) -> Self {
        PushFields {
            id: e.id,
            stream: &e.stream,
            event_type: &e.event_type,
            data: &e.data,
            meta: e.meta.as_deref(),
            time: e.time,
            version: e.version,
        }
    }
}

fn write_batch<'a>(
    out: &mut String,
    client: &str,
    epoch: u64,
    number: u64,
    expected: &BTreeMap<String, ExpectedVersion>,
    events: impl Iterator<Item = PushFields<'a>>,
) {
    out.push_str("{\"client\":");
    push_str(out, client);
    out.push_str(",\"epoch\":");
    push_u64(out, epoch);
    out.push_str(",\"batch\":");
    push_u64(out, number);
    out.push_str(",\"expected\":");
    out.push_str(&serde_json::to_string(expected).unwrap_or_else(|_| "{}".into()));
    out.push_str(",\"events\":[");
    for (i, e) in events.enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_event_fields(out, &e);
    }
    out.push_str("]}");
}

fn write_event_fields(out: &mut String, e: &PushFields<'_>) {
    out.push_str("{\"id\":\"");
    e.id.write_to(out);
    out.push_str("\",\"stream\":");
    push_str(out, e.stream);
    out.push_str(",\"type\":");
    push_str(out, e.event_type);
    out.push_str(",\"data\":");
    out.push_str(e.data);
    out.push_str(",\"meta\":");
    out.push_str(e.meta.unwrap_or("null"));
    out.push_str(",\"time\":");
    push_u64(out, e.time);
    out.push_str(",\"version\":");
    push_u64(out, e.version);
    out.push('}');
}

/// The most bytes an event takes in a push body (with its comma), whatever its id, time and
/// version: for cutting a run of events into batches that can each be pushed.
pub fn push_event_bytes(e: &Event) -> usize {
    let mut out = String::new();
    write_event_fields(
        &mut out,
        &PushFields {
            id: EventId(u128::MAX),
            time: u64::MAX,
            version: u64::MAX,
            ..PushFields::from(e)
        },
    );
    out.len() + 1
}

/// The most bytes a push body holds by default ([`check_push_batch`]); the server's default
/// `--max-body` is four times this.
pub const DEFAULT_PUSH_BYTES: usize = 4 * 1024 * 1024;

/// The limits the server enforces on a batch, checked at append so that a synced append the
/// tables show can be pushed: at most [`MAX_BATCH_EVENTS`] events, one expectation per stream,
/// and a push body of at most `max_push_bytes` holding it alone (so no request passes the
/// server's body limit and blocks the outbox behind it). Events are checked by
/// [`Batch::validate`].
pub fn check_push_batch(
    batch: &Batch,
    client: &str,
    max_push_bytes: usize,
) -> Result<(), AppendError> {
    let invalid = |m: String| Err(AppendError::InvalidArgument(m));
    if batch.events.len() > MAX_BATCH_EVENTS {
        return invalid(format!(
            "a synced batch holds at most {MAX_BATCH_EVENTS} events, this one {}: append it in parts",
            batch.events.len()
        ));
    }
    // The server keeps one expectation per stream; two here could disagree with it.
    let mut seen = HashSet::new();
    if let Some((stream, _)) = batch.expected.iter().find(|(s, _)| !seen.insert(s)) {
        return invalid(format!("stream {stream:?} has two expected versions"));
    }
    // The largest body it can be written in: the widest epoch, number, id, time and version.
    let expected: BTreeMap<String, ExpectedVersion> = batch.expected.iter().cloned().collect();
    let events = batch.events.iter().map(|e| PushFields {
        id: EventId(u128::MAX),
        stream: &e.stream,
        event_type: &e.event_type,
        data: &e.data,
        meta: e.meta.as_deref(),
        time: u64::MAX,
        version: u64::MAX,
    });
    let mut body = String::from("{\"protocol\":4294967295,\"batches\":[");
    write_batch(&mut body, client, u64::MAX, u64::MAX, &expected, events);
    body.push_str("]}");
    if body.len() > max_push_bytes {
        return invalid(format!(
            "the batch takes {} bytes to push, over the limit of {max_push_bytes}: append it in parts",
            body.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::IdGenerator;
    use crate::protocol::PushRequest;

    fn event(ids: &mut IdGenerator, stream: &str, amount: u32) -> Event {
        Event {
            id: ids.next_id(1_700_000_000_000),
            stream: stream.into(),
            version: 0,
            event_type: "Deposited".into(),
            data: format!(r#"{{"amount":{amount},"note":"a \"quoted\" word"}}"#),
            meta: amount
                .is_multiple_of(2)
                .then(|| r#"{"by":"test"}"#.to_owned()),
            time: 1_700_000_000_000 + u64::from(amount),
            origin: "client-1".into(),
            seq: 0,
            offset: None,
        }
    }

    /// Three batches: a (2 events on x), b (1 on y, expecting y at "none"), c (2 on x).
    fn outbox() -> Outbox {
        let mut ids = IdGenerator::new(7);
        let mut o = Outbox {
            batches: vec![
                Pending {
                    batch: 1,
                    events: vec![event(&mut ids, "x", 1), event(&mut ids, "x", 2)],
                    expected: BTreeMap::new(),
                },
                Pending {
                    batch: 2,
                    events: vec![event(&mut ids, "y", 3)],
                    expected: BTreeMap::from([("y".into(), ExpectedVersion::NoStream)]),
                },
                Pending {
                    batch: 3,
                    events: vec![event(&mut ids, "x", 4), event(&mut ids, "x", 5)],
                    expected: BTreeMap::from([("x".into(), ExpectedVersion::Exact(2))]),
                },
            ],
        };
        o.restamp(10, HashMap::from([("x".into(), 4)]));
        o
    }

    fn accepted(offsets: &[u64]) -> BatchResult {
        BatchResult::Accepted {
            offsets: offsets.to_vec(),
            versions: offsets.iter().map(|o| o + 100).collect(),
        }
    }

    fn conflict() -> BatchResult {
        BatchResult::Rejected {
            reason: RejectReason::Conflict,
            message: "stream \"y\" is at version 3, expected none".into(),
            details: serde_json::json!({ "stream": "y", "expected": "none", "actual": 3 }),
        }
    }

    #[test]
    fn restamp_places_events_after_the_head_and_each_stream_after_its_version() {
        let o = outbox();
        let stamps: Vec<(u64, &str, u64)> = o
            .events()
            .map(|e| (e.seq, e.stream.as_str(), e.version))
            .collect();
        assert_eq!(
            stamps,
            [
                (11, "x", 5),
                (12, "x", 6),
                (13, "y", 1),
                (14, "x", 7),
                (15, "x", 8)
            ]
        );
    }

    #[test]
    fn a_record_round_trips() {
        for p in outbox().batches {
            assert_eq!(Pending::decode(p.batch, &p.encode()).unwrap(), p);
        }
        let bytes = outbox().batches[0].encode();
        assert!(Pending::decode(1, &bytes[..3]).is_err());
        assert!(Pending::decode(1, &bytes[..bytes.len() - 1]).is_err());
    }

    #[test]
    fn the_push_body_is_a_push_request_and_respects_the_size_and_the_acknowledged() {
        let o = outbox();
        let mut body = String::new();
        let numbers = o.write_push(&mut body, "client-1", 3, 1, usize::MAX);
        assert_eq!(numbers, [2, 3]);
        let request: PushRequest = serde_json::from_str(&body).unwrap();
        assert_eq!(request.protocol, PROTOCOL_VERSION);
        let batches: Vec<(u64, u64, usize)> = request
            .batches
            .iter()
            .map(|b| (b.batch, b.epoch, b.events.len()))
            .collect();
        assert_eq!(batches, [(2, 3, 1), (3, 3, 2)]);
        let sent = &request.batches[1];
        assert_eq!(sent.expected, o.batches[2].expected);
        for (e, want) in sent.events.iter().zip(&o.batches[2].events) {
            assert_eq!(
                (e.id, &e.stream, &e.event_type, &e.data, &e.meta, e.time),
                (
                    want.id,
                    &want.stream,
                    &want.event_type,
                    &want.data,
                    &want.meta,
                    want.time
                )
            );
        }
        // A small limit still sends one batch, then stops.
        let mut small = String::new();
        assert_eq!(o.write_push(&mut small, "client-1", 3, 0, 1), [1]);
        serde_json::from_str::<PushRequest>(&small).unwrap();
        // The limit is the body as written (meta and escapes included), never passed.
        let mut whole = String::new();
        o.write_push(&mut whole, "client-1", 3, 0, usize::MAX);
        for limit in (small.len()..=whole.len() + 1).step_by(7) {
            let mut body = String::new();
            let n = o.write_push(&mut body, "client-1", 3, 0, limit).len();
            assert!(body.len() <= limit, "{} > {limit}", body.len());
            serde_json::from_str::<PushRequest>(&body).unwrap();
            let mut more = String::new();
            if n < 3 {
                o.write_push(&mut more, "client-1", 3, 0, usize::MAX);
                assert!(more.len() > limit, "a batch more would have fit in {limit}");
            }
        }
        let mut none = String::new();
        assert!(o
            .write_push(&mut none, "client-1", 3, 3, usize::MAX)
            .is_empty());
    }

    #[test]
    fn a_batch_the_server_would_refuse_is_refused_at_append() {
        use crate::event::NewEvent;
        let e = |data: String| NewEvent {
            stream: "s".into(),
            event_type: "T".into(),
            data,
            meta: Some("{\"m\":1}".into()),
        };
        let small = Batch::new(vec![e("1".into()); 3]);
        assert_eq!(check_push_batch(&small, "c", DEFAULT_PUSH_BYTES), Ok(()));
        let many = Batch::new(vec![e("1".into()); MAX_BATCH_EVENTS + 1]);
        assert!(matches!(
            check_push_batch(&many, "c", usize::MAX),
            Err(AppendError::InvalidArgument(m)) if m.contains("10000")
        ));
        let twice = Batch::new(vec![e("1".into())])
            .expect("s", ExpectedVersion::Any)
            .expect("s", ExpectedVersion::Exact(1));
        assert!(check_push_batch(&twice, "c", usize::MAX).is_err());
        // The bound is the body the batch is pushed in, whatever its place and stamps.
        let big = Batch::new(vec![e(format!("\"{}\"", "x".repeat(900_000))); 5]);
        let Err(AppendError::InvalidArgument(m)) = check_push_batch(&big, "c", DEFAULT_PUSH_BYTES)
        else {
            panic!("a 4.5 MB batch passed")
        };
        assert!(m.contains("bytes to push"), "{m}");
        let mut ids = IdGenerator::new(1);
        let outbox = Outbox {
            batches: vec![Pending {
                batch: 7,
                events: small
                    .events
                    .iter()
                    .map(|n| Event {
                        id: ids.next_id(1),
                        version: 1,
                        seq: 1,
                        time: 1,
                        origin: "c".into(),
                        offset: None,
                        stream: n.stream.clone(),
                        event_type: n.event_type.clone(),
                        data: n.data.clone(),
                        meta: n.meta.clone(),
                    })
                    .collect(),
                expected: BTreeMap::new(),
            }],
        };
        let mut body = String::new();
        outbox.write_push(&mut body, "c", 1, 0, usize::MAX);
        let mut bound = 0;
        for limit in 0..body.len() + 200 {
            if check_push_batch(&small, "c", limit).is_ok() {
                bound = limit;
                break;
            }
        }
        assert!(
            bound >= body.len(),
            "bound {bound} under the real {}",
            body.len()
        );
    }

    #[test]
    fn an_answer_acknowledges_rejects_and_ignores_what_is_stale() {
        let mut o = outbox();
        let a = o.answer(
            0,
            &[1, 2, 3, 9],
            &[accepted(&[1, 2]), conflict(), accepted(&[3, 4]), conflict()],
        );
        assert_eq!(a.acknowledged, [1, 3]);
        assert_eq!(a.acked_through, 3);
        assert!(!a.fenced);
        assert_eq!(a.rejected.len(), 1, "batch 9 is not here: stale");
        assert_eq!(a.rejected[0].pending.batch, 2);
        let json: serde_json::Value = serde_json::from_str(&a.rejected[0].to_json(42)).unwrap();
        assert_eq!(json["id"], 2);
        assert_eq!(json["reason"], "conflict");
        assert_eq!(json["currentVersion"], 3);
        assert_eq!(json["events"][0]["stream"], "y");
        assert_eq!(json["time"], 42);
        assert_eq!(
            o.batches.iter().map(|p| p.batch).collect::<Vec<_>>(),
            [1, 3]
        );

        // A late rejection of a batch acknowledged before changes nothing.
        let late = o.answer(3, &[1], &[conflict()]);
        assert!(late.rejected.is_empty());
        assert_eq!(o.len(), 4);
    }

    #[test]
    fn a_stale_epoch_stops_the_answer_and_keeps_the_batch() {
        let mut o = outbox();
        let stale = BatchResult::Rejected {
            reason: RejectReason::StaleEpoch,
            message: "old leader".into(),
            details: serde_json::Value::Null,
        };
        let a = o.answer(0, &[1, 2], &[stale, conflict()]);
        assert!(a.fenced);
        assert!(a.rejected.is_empty() && a.acknowledged.is_empty());
        assert_eq!(o.batches.len(), 3);
    }

    #[test]
    fn accepted_events_right_after_the_head_are_confirmed_whole_batches_only() {
        let o = outbox();
        let events = o.accepted_after_head(10, &[1, 2], &[accepted(&[11, 12]), accepted(&[13])]);
        let got: Vec<(u64, Option<u64>, u64)> = events
            .iter()
            .map(|e| (e.seq, e.offset, e.version))
            .collect();
        assert_eq!(
            got,
            [
                (11, Some(11), 111),
                (12, Some(12), 112),
                (13, Some(13), 113)
            ]
        );
        assert_eq!(events[0].data, o.batches[0].events[0].data);
        // Someone else's event came first: nothing can be confirmed without the pull.
        assert!(o
            .accepted_after_head(10, &[1], &[accepted(&[12, 13])])
            .is_empty());
        // A gap inside the second batch keeps only the first.
        let partial =
            o.accepted_after_head(10, &[1, 3], &[accepted(&[11, 12]), accepted(&[13, 15])]);
        assert_eq!(partial.len(), 2);
    }

    #[test]
    fn confirming_our_front_keeps_the_rest_and_says_so() {
        let mut o = outbox();
        let front: Vec<Event> = o.batches[0].events.clone();
        let c = o.confirm(&front, 5);
        assert_eq!(
            c,
            Confirmation {
                front: true,
                ours: 2,
                changed: vec![1]
            }
        );
        assert_eq!(
            o.batches.iter().map(|p| p.batch).collect::<Vec<_>>(),
            [2, 3]
        );

        // Not the front (the second batch's event first), or not all shown: not `front`.
        let mut o = outbox();
        let c = o.confirm(&o.batches[1].events.clone(), 5);
        assert!(!c.front && c.ours == 1);
        let mut o = outbox();
        assert!(!o.confirm(&o.batches[0].events.clone(), 1).front);

        // Someone else's events take nothing out.
        let mut o = outbox();
        let mut ids = IdGenerator::new(99);
        let c = o.confirm(&[event(&mut ids, "x", 9)], 5);
        assert_eq!(
            c,
            Confirmation {
                front: false,
                ours: 0,
                changed: vec![]
            }
        );
        assert_eq!(o.len(), 5);
    }
}
