//! Writes events as JSON text, splicing each event's stored data in without re-parsing it.
//!
//! Reads hand the browser one JSON array to `JSON.parse`, which is far cheaper than building
//! objects field by field across the wasm boundary.

use crate::event::EventRef;
use crate::segment::{Segment, SegmentError};

mod float;
pub mod read;

pub use read::{Json, JsonError, Reader};

/// Appends `s` as a JSON string literal.
pub fn push_str(out: &mut String, s: &str) {
    out.push('"');
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let esc = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if esc.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.push_str("\\u00");
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 15) as usize] as char);
        } else {
            out.push_str(esc);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// Appends `v` in decimal.
pub fn push_i64(out: &mut String, v: i64) {
    if v < 0 {
        out.push('-');
    }
    push_u64(out, v.unsigned_abs());
}

/// Appends `v` in decimal, without the formatting machinery.
pub fn push_u64(out: &mut String, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.push_str(std::str::from_utf8(&buf[i..]).expect("ascii digits"));
}

/// Appends a finite `v` as JSON writes it (integers without a fraction, others in their
/// shortest round-trip form); `null` if it is not finite, as `JSON.stringify` does.
pub fn push_f64(out: &mut String, v: f64) {
    if v.fract() == 0.0 && v.abs() < 9.0e15 {
        push_i64(out, v as i64);
    } else if v.is_finite() {
        // Not core's f64 Display, which would add ~14 KB of formatting code to the wasm.
        out.push_str(zmij::Buffer::new().format_finite(v));
    } else {
        out.push_str("null");
    }
}

/// Writes one event object; `stream`, `event_type` and `origin` come already escaped, so a
/// segment's names are escaped once, not per event.
fn push_event(out: &mut String, e: &EventRef<'_>, stream: &str, event_type: &str, origin: &str) {
    out.push_str("{\"id\":\"");
    e.id.write_to(out);
    out.push_str("\",\"stream\":");
    out.push_str(stream);
    out.push_str(",\"version\":");
    push_u64(out, e.version);
    out.push_str(",\"type\":");
    out.push_str(event_type);
    out.push_str(",\"data\":");
    out.push_str(e.data);
    out.push_str(",\"meta\":");
    out.push_str(e.meta.unwrap_or("null"));
    out.push_str(",\"time\":");
    push_u64(out, e.time);
    out.push_str(",\"origin\":");
    out.push_str(origin);
    out.push_str(",\"seq\":");
    push_u64(out, e.seq);
    out.push_str(",\"offset\":");
    match e.offset {
        Some(o) => push_u64(out, o),
        None => out.push_str("null"),
    }
    out.push('}');
}

/// Writes one event as a JSON object.
pub fn write_event(out: &mut String, e: &EventRef<'_>) {
    let mut names = String::new();
    push_str(&mut names, e.stream);
    let s = names.len();
    push_str(&mut names, e.event_type);
    let t = names.len();
    push_str(&mut names, e.origin);
    push_event(out, e, &names[..s], &names[s..t], &names[t..]);
}

/// Writes the events of `segment` with `seq` in `(after, upto]` as comma-separated JSON objects,
/// preceded by a comma when `out` already holds some. Returns how many it wrote.
pub fn write_segment(
    out: &mut String,
    segment: &Segment<'_>,
    after: u64,
    upto: u64,
) -> Result<usize, SegmentError> {
    let names: Vec<String> = segment
        .strings()
        .iter()
        .map(|s| {
            let mut q = String::with_capacity(s.len() + 2);
            push_str(&mut q, s);
            q
        })
        .collect();
    let mut n = 0;
    let mut it = segment.events();
    while let Some(item) = it.next_indexed() {
        let ie = item?;
        let seq = ie.event.seq;
        if seq <= after {
            continue;
        }
        if seq > upto {
            break;
        }
        if out.len() > 1 {
            out.push(',');
        }
        push_event(
            out,
            &ie.event,
            &names[ie.stream_ix],
            &names[ie.type_ix],
            &names[ie.origin_ix],
        );
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;
    use crate::id::EventId;
    use crate::segment::encode;

    fn ev(seq: u64, stream: &str) -> Event {
        Event {
            id: EventId(0x0123_4567_89ab_7def_8123_4567_89ab_cdef),
            stream: stream.into(),
            version: 1,
            event_type: "T".into(),
            data: "{\"x\":[1,\"é\"]}".into(),
            meta: None,
            time: 5,
            origin: "o".into(),
            seq,
            offset: None,
        }
    }

    #[test]
    fn writes_numbers_in_decimal() {
        for v in [0, 7, 10, 12_345, u64::MAX] {
            let mut out = String::new();
            push_u64(&mut out, v);
            assert_eq!(out, v.to_string());
        }
    }

    #[test]
    fn escapes_strings_as_json_does() {
        let mut out = String::new();
        push_str(&mut out, "a\"b\\c\nd\u{1}é");
        assert_eq!(out, "\"a\\\"b\\\\c\\nd\\u0001é\"");
        let back: String = serde_json::from_str(&out).unwrap();
        assert_eq!(back, "a\"b\\c\nd\u{1}é");
    }

    #[test]
    fn writes_a_segment_range_that_parses_back_as_the_events() {
        let events: Vec<Event> = (1..=4)
            .map(|s| ev(s, if s % 2 == 0 { "quote\"d" } else { "a" }))
            .collect();
        let bytes = encode(events.iter().map(Event::as_ref));
        let seg = Segment::parse(&bytes).unwrap();
        let mut out = String::from("[");
        assert_eq!(write_segment(&mut out, &seg, 1, 3).unwrap(), 2);
        out.push(']');
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v[0]["seq"], 2);
        assert_eq!(v[0]["stream"], "quote\"d");
        assert_eq!(v[1]["data"]["x"][1], "é");
        assert_eq!(v[1]["id"], "01234567-89ab-7def-8123-456789abcdef");
        assert!(v[1]["offset"].is_null() && v[1]["meta"].is_null());
        let mut single = String::new();
        write_event(&mut single, &events[0].as_ref());
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&single).unwrap()["seq"],
            1
        );
    }
}
