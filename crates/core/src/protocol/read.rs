//! The protocol's JSON as the browser client reads and writes it, through [`crate::json`]
//! rather than serde (which the server uses): the same wire format, a much smaller `.wasm`.
//! Unknown fields are skipped, as serde does, so a newer server can add some.

use std::borrow::Cow;
use std::collections::BTreeMap;

use super::{BatchResult, PullResponse, PulledEvent, PushResponse, RejectReason};
use crate::id::EventId;
use crate::json::{push_str, push_u64, JsonError, Reader};
use crate::version::ExpectedVersion;

/// A field the answer must have.
fn need<T>(r: &Reader<'_>, v: Option<T>, field: &'static str) -> Result<T, JsonError> {
    v.ok_or_else(|| r.error(Cow::Owned(format!("missing field {field}"))))
}

fn u64_list(r: &mut Reader<'_>) -> Result<Vec<u64>, JsonError> {
    let mut out = Vec::new();
    r.array(|r| {
        out.push(r.u64()?);
        Ok(())
    })?;
    Ok(out)
}

fn id(r: &mut Reader<'_>) -> Result<EventId, JsonError> {
    let text = r.string()?;
    text.parse().map_err(|_| r.error("not an event id"))
}

impl RejectReason {
    /// The reason's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::Conflict => "conflict",
            RejectReason::InvalidEvent => "invalid_event",
            RejectReason::InvalidBatch => "invalid_batch",
            RejectReason::PartlyKnown => "partly_known",
            RejectReason::StaleEpoch => "stale_epoch",
            RejectReason::Depends => "depends",
        }
    }

    /// The reason a wire name stands for.
    pub fn from_name(name: &str) -> Option<RejectReason> {
        [
            RejectReason::Conflict,
            RejectReason::InvalidEvent,
            RejectReason::InvalidBatch,
            RejectReason::PartlyKnown,
            RejectReason::StaleEpoch,
            RejectReason::Depends,
        ]
        .into_iter()
        .find(|r| r.as_str() == name)
    }
}

impl PushResponse {
    /// Reads a push answer.
    pub fn from_json(text: &str) -> Result<PushResponse, JsonError> {
        let mut r = Reader::new(text);
        let (mut protocol, mut head, mut results) = (None, None, None);
        r.object(|r, key| {
            match &*key {
                "protocol" => protocol = Some(r.u64()? as u32),
                "head" => head = Some(r.u64()?),
                "results" => {
                    let mut list = Vec::new();
                    r.array(|r| {
                        list.push(batch_result(r)?);
                        Ok(())
                    })?;
                    results = Some(list);
                }
                _ => drop(r.skip()?),
            }
            Ok(())
        })?;
        r.end()?;
        Ok(PushResponse {
            protocol: need(&r, protocol, "protocol")?,
            head: need(&r, head, "head")?,
            results: need(&r, results, "results")?,
        })
    }
}

fn batch_result(r: &mut Reader<'_>) -> Result<BatchResult, JsonError> {
    let (mut status, mut offsets, mut versions) = (None, None, None);
    let (mut reason, mut message, mut details) = (None, None, None);
    r.object(|r, key| {
        match &*key {
            "status" => status = Some(r.string()?),
            "offsets" => offsets = Some(u64_list(r)?),
            "versions" => versions = Some(u64_list(r)?),
            "reason" => {
                let name = r.string()?;
                reason =
                    Some(RejectReason::from_name(&name).ok_or_else(|| {
                        r.error(Cow::Owned(format!("unknown reject reason {name}")))
                    })?);
            }
            "message" => message = Some(r.string()?.into_owned()),
            "details" => details = Some(r.skip()?.to_owned()),
            _ => drop(r.skip()?),
        }
        Ok(())
    })?;
    let status = need(r, status, "status")?;
    Ok(match &*status {
        "accepted" | "duplicate" => {
            let offsets = need(r, offsets, "offsets")?;
            let versions = need(r, versions, "versions")?;
            if status == "accepted" {
                BatchResult::Accepted { offsets, versions }
            } else {
                BatchResult::Duplicate { offsets, versions }
            }
        }
        "rejected" => BatchResult::Rejected {
            reason: need(r, reason, "reason")?,
            message: need(r, message, "message")?,
            details: details.unwrap_or_else(|| "null".to_owned()),
        },
        other => return Err(r.error(Cow::Owned(format!("unknown batch status {other}")))),
    })
}

impl PullResponse {
    /// Reads a JSON pull answer (or a live message).
    pub fn from_json(text: &str) -> Result<PullResponse, JsonError> {
        let mut r = Reader::new(text);
        let (mut protocol, mut head, mut events) = (None, None, None);
        r.object(|r, key| {
            match &*key {
                "protocol" => protocol = Some(r.u64()? as u32),
                "head" => head = Some(r.u64()?),
                "events" => {
                    let mut list = Vec::new();
                    r.array(|r| {
                        list.push(pulled_event(r)?);
                        Ok(())
                    })?;
                    events = Some(list);
                }
                _ => drop(r.skip()?),
            }
            Ok(())
        })?;
        r.end()?;
        Ok(PullResponse {
            protocol: need(&r, protocol, "protocol")?,
            head: need(&r, head, "head")?,
            events: need(&r, events, "events")?,
        })
    }
}

fn pulled_event(r: &mut Reader<'_>) -> Result<PulledEvent, JsonError> {
    let (mut offset, mut event_id, mut stream, mut version) = (None, None, None, None);
    let (mut event_type, mut data, mut meta, mut time, mut origin) = (None, None, None, None, None);
    r.object(|r, key| {
        match &*key {
            "offset" => offset = Some(r.u64()?),
            "id" => event_id = Some(id(r)?),
            "stream" => stream = Some(r.string()?.into_owned()),
            "version" => version = Some(r.u64()?),
            "type" => event_type = Some(r.string()?.into_owned()),
            "data" => data = Some(r.skip()?.to_owned()),
            "meta" => meta = r.raw_or_null()?.map(str::to_owned),
            "time" => time = Some(r.u64()?),
            "origin" => origin = Some(r.string()?.into_owned()),
            _ => drop(r.skip()?),
        }
        Ok(())
    })?;
    Ok(PulledEvent {
        offset: need(r, offset, "offset")?,
        id: need(r, event_id, "id")?,
        stream: need(r, stream, "stream")?,
        version: need(r, version, "version")?,
        event_type: need(r, event_type, "type")?,
        data: need(r, data, "data")?,
        meta,
        time: need(r, time, "time")?,
        origin: need(r, origin, "origin")?,
    })
}

/// Appends expectations as the wire has them: `{"stream": 3, "other": "none"}`.
pub fn write_expected(out: &mut String, expected: &BTreeMap<String, ExpectedVersion>) {
    out.push('{');
    for (i, (stream, v)) in expected.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_str(out, stream);
        out.push(':');
        match v {
            ExpectedVersion::Any => out.push_str("\"any\""),
            ExpectedVersion::NoStream => out.push_str("\"none\""),
            ExpectedVersion::Exact(n) => push_u64(out, *n),
        }
    }
    out.push('}');
}

/// Reads expectations written by [`write_expected`] (or by serde).
pub fn read_expected(r: &mut Reader<'_>) -> Result<BTreeMap<String, ExpectedVersion>, JsonError> {
    let mut out = BTreeMap::new();
    r.object(|r, stream| {
        let v = if r.peek() == Some(b'"') {
            match &*r.string()? {
                "any" => ExpectedVersion::Any,
                "none" => ExpectedVersion::NoStream,
                _ => return Err(r.error("an expected version is a number, \"none\" or \"any\"")),
            }
        } else {
            ExpectedVersion::Exact(r.u64()?)
        };
        out.insert(stream.into_owned(), v);
        Ok(())
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::IdGenerator;
    use proptest::prelude::*;

    fn results() -> impl Strategy<Value = Vec<BatchResult>> {
        let offsets = prop::collection::vec(any::<u64>(), 0..4);
        let one = prop_oneof![
            (offsets.clone(), offsets.clone())
                .prop_map(|(offsets, versions)| BatchResult::Accepted { offsets, versions }),
            (offsets.clone(), offsets)
                .prop_map(|(offsets, versions)| BatchResult::Duplicate { offsets, versions }),
            (0..6usize, "\\PC{0,10}", any::<u64>()).prop_map(|(r, message, actual)| {
                BatchResult::Rejected {
                    reason: RejectReason::from_name(
                        [
                            "conflict",
                            "invalid_event",
                            "invalid_batch",
                            "partly_known",
                            "stale_epoch",
                            "depends",
                        ][r],
                    )
                    .unwrap(),
                    message,
                    details: format!("{{\"actual\":{actual},\"stream\":\"s\"}}"),
                }
            }),
        ];
        prop::collection::vec(one, 0..5)
    }

    proptest! {
        #[test]
        fn a_push_answer_reads_as_serde_reads_it(head in any::<u64>(), results in results()) {
            let answer = PushResponse { protocol: 1, head, results };
            let text = serde_json::to_string(&answer).unwrap();
            prop_assert_eq!(PushResponse::from_json(&text).unwrap(), answer);
        }

        #[test]
        fn a_pull_answer_reads_as_serde_reads_it(
            head in any::<u64>(),
            events in prop::collection::vec(("\\PC{0,8}", any::<u64>(), "\\PC{0,8}", any::<bool>()), 0..5),
        ) {
            let mut ids = IdGenerator::new(7);
            let events: Vec<PulledEvent> = events
                .into_iter()
                .enumerate()
                .map(|(i, (stream, version, event_type, meta))| PulledEvent {
                    offset: i as u64 + 1,
                    id: ids.next_id(i as u64),
                    stream,
                    version,
                    event_type,
                    data: r#"{"a":[1,"x"]}"#.into(),
                    meta: meta.then(|| r#"{"m":true}"#.into()),
                    time: 5,
                    origin: "c".into(),
                })
                .collect();
            let answer = PullResponse { protocol: 1, head, events };
            let text = serde_json::to_string(&answer).unwrap();
            prop_assert_eq!(PullResponse::from_json(&text).unwrap(), answer);
        }

        #[test]
        fn expectations_write_as_serde_writes_them(
            expected in prop::collection::btree_map("\\PC{0,6}", prop_oneof![
                Just(ExpectedVersion::Any),
                Just(ExpectedVersion::NoStream),
                any::<u64>().prop_map(ExpectedVersion::Exact),
            ], 0..5),
        ) {
            let mut text = String::new();
            write_expected(&mut text, &expected);
            prop_assert_eq!(&text, &serde_json::to_string(&expected).unwrap());
            prop_assert_eq!(read_expected(&mut Reader::new(&text)).unwrap(), expected);
        }
    }

    #[test]
    fn a_bad_answer_says_what_is_missing_or_unknown() {
        let e = PushResponse::from_json(r#"{"protocol":1,"results":[]}"#).unwrap_err();
        assert!(e.message.contains("missing field head"), "{e}");
        let e = PushResponse::from_json(
            r#"{"protocol":1,"head":1,"results":[{"status":"rejected","reason":"nope","message":""}]}"#,
        )
        .unwrap_err();
        assert!(e.message.contains("unknown reject reason nope"), "{e}");
        let ok = PushResponse::from_json(
            r#"{"protocol":1,"head":1,"later":{"x":[1]},"results":[{"status":"rejected","reason":"conflict","message":"m"}]}"#,
        )
        .unwrap();
        assert!(
            matches!(&ok.results[0], BatchResult::Rejected { details, .. } if details == "null")
        );
    }
}
