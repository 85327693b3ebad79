//! The push body, written by hand (the data is JSON checked at append, copied as it is), and
//! the limits a batch must meet to be pushed at all.

use std::collections::{BTreeMap, HashSet};

use crate::append::{AppendError, Batch};
use crate::commit::MAX_BATCH_EVENTS;
use crate::event::Event;
use crate::id::EventId;
use crate::json::{push_str, push_u64};
use crate::protocol::PROTOCOL_VERSION;
use crate::version::ExpectedVersion;

use super::record::OutboxBatch;

/// The most bytes a push body holds by default ([`check_batch`]); the server's default
/// `--max-body` is four times this.
pub const DEFAULT_PUSH_BYTES: usize = 4 * 1024 * 1024;

/// What a push body carries of one event.
struct PushFields<'a> {
    id: EventId,
    stream: &'a str,
    event_type: &'a str,
    data: &'a str,
    meta: Option<&'a str>,
    time: u64,
    version: Option<u64>,
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
            version: Some(e.version),
        }
    }
}

/// Opens a push body: `{"protocol":N,"batches":[`.
pub(super) fn open_body(out: &mut String) {
    out.push_str("{\"protocol\":");
    push_u64(out, u64::from(PROTOCOL_VERSION));
    out.push_str(",\"batches\":[");
}

/// Closes a push body opened by [`open_body`].
pub(super) fn close_body(out: &mut String) {
    out.push_str("]}");
}

/// Writes one outbox batch of a push body. Provisional versions are left out: they move
/// between retries, and without them every retry is byte for byte the same batch.
pub(super) fn write_batch(out: &mut String, client: &str, epoch: u64, b: &OutboxBatch) {
    let events = b.events.iter().map(|e| PushFields {
        version: None,
        ..PushFields::from(e)
    });
    write_fields(out, client, epoch, b.batch, &b.expected, events);
}

fn write_fields<'a>(
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
    crate::protocol::write_expected(out, expected);
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
    if let Some(v) = e.version {
        out.push_str(",\"version\":");
        push_u64(out, v);
    }
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
            version: Some(u64::MAX),
            ..PushFields::from(e)
        },
    );
    out.len() + 1
}

/// What the server would refuse whole beyond [`Batch::validate`], refused at append so the
/// tables never show it: an empty batch, more than [`MAX_BATCH_EVENTS`] events, two
/// expectations for one stream, and a push body over `max_push_bytes` holding the batch alone
/// (a request over the server's body limit would block the outbox behind it).
pub fn check_batch(batch: &Batch, client: &str, max_push_bytes: usize) -> Result<(), AppendError> {
    let invalid = |m: String| Err(AppendError::InvalidArgument(m));
    if batch.events.is_empty() {
        return invalid("a batch needs at least one event".into());
    }
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
        version: Some(u64::MAX),
    });
    let mut body = String::from("{\"protocol\":4294967295,\"batches\":[");
    write_fields(&mut body, client, u64::MAX, u64::MAX, &expected, events);
    close_body(&mut body);
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
    use crate::event::NewEvent;
    use crate::id::IdGenerator;
    use crate::protocol::PushRequest;
    use crate::sync::record::BatchState;

    fn event(stream: &str, data: String) -> NewEvent {
        NewEvent {
            stream: stream.into(),
            event_type: "T".into(),
            data,
            meta: Some("{\"m\":1}".into()),
        }
    }

    #[test]
    fn a_batch_the_server_would_refuse_is_refused_at_append() {
        let check = |b: &Batch, max| check_batch(b, "c", max);
        let small = Batch::new(vec![event("s", "1".into()); 3]);
        assert_eq!(check(&small, DEFAULT_PUSH_BYTES), Ok(()));
        assert!(check(&Batch::new(vec![]), DEFAULT_PUSH_BYTES).is_err());
        let many = Batch::new(vec![event("s", "1".into()); MAX_BATCH_EVENTS + 1]);
        assert!(matches!(
            check(&many, usize::MAX),
            Err(AppendError::InvalidArgument(m)) if m.contains("10000")
        ));
        let twice = small
            .clone()
            .expect("s", ExpectedVersion::Any)
            .expect("s", ExpectedVersion::Exact(1));
        assert!(check(&twice, usize::MAX).is_err());
        let big = Batch::new(vec![event("s", format!("\"{}\"", "x".repeat(900_000))); 5]);
        let Err(AppendError::InvalidArgument(m)) = check(&big, DEFAULT_PUSH_BYTES) else {
            panic!("a 4.5 MB batch passed")
        };
        assert!(m.contains("bytes to push"), "{m}");
    }

    #[test]
    fn the_bound_covers_the_body_the_batch_is_pushed_in() {
        let small = Batch::new(vec![event("s", r#"{"a":"\"q\""}"#.into()); 3]);
        let mut ids = IdGenerator::new(1);
        let b = OutboxBatch {
            batch: 7,
            place: 7,
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
            state: BatchState::Waiting,
        };
        let mut body = String::new();
        open_body(&mut body);
        write_batch(&mut body, "c", 1, &b);
        close_body(&mut body);
        let req: PushRequest = serde_json::from_str(&body).unwrap();
        assert_eq!(req.batches[0].events[2].data, b.events[2].data);
        assert_eq!(req.batches[0].events[0].version, None);
        let bound = (0..body.len() + 400)
            .find(|max| check_batch(&small, "c", *max).is_ok())
            .unwrap();
        assert!(
            bound >= body.len(),
            "bound {bound} under the real {}",
            body.len()
        );
        let per_event: usize = b.events.iter().map(push_event_bytes).sum();
        assert!(
            per_event >= body.len() - 120,
            "{per_event} for a {} body",
            body.len()
        );
    }
}
