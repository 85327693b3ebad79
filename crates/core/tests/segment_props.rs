//! Property tests for the segment codec: what goes in comes out, and damage never decodes.

use logfold_core::segment::{encode, Segment, SegmentError, SegmentWriter, PACKED};
use logfold_core::{Event, EventId, EventRef};
use proptest::prelude::*;

fn json_text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("null".to_owned()),
        any::<i64>().prop_map(|n| n.to_string()),
        "\\PC{0,40}".prop_map(|s| serde_json::to_string(&s).unwrap()),
        ("[a-z]{1,8}", any::<u32>()).prop_map(|(k, v)| format!("{{\"{k}\":{v}}}")),
    ]
}

fn events() -> impl Strategy<Value = Vec<Event>> {
    let one = (
        any::<u128>(),
        "\\PC{1,12}",
        1u64..u64::MAX / 2,
        "[A-Za-z]{1,10}",
        json_text(),
        proptest::option::of(json_text()),
        any::<u64>(),
        "[a-z0-9-]{1,36}",
        proptest::option::of(any::<u64>()),
    );
    (1u64..1 << 40, proptest::collection::vec(one, 1..40)).prop_map(|(first, raw)| {
        raw.into_iter()
            .enumerate()
            .map(
                |(i, (id, stream, version, ty, data, meta, time, origin, offset))| Event {
                    id: EventId(id),
                    stream,
                    version,
                    event_type: ty,
                    data,
                    meta,
                    time,
                    origin,
                    seq: first + i as u64,
                    offset,
                },
            )
            .collect()
    })
}

proptest! {
    #[test]
    fn round_trip(events in events()) {
        let bytes = encode(events.iter().map(Event::as_ref));
        let seg = Segment::parse(&bytes).unwrap();
        let back: Vec<Event> = seg.decode().unwrap().iter().map(EventRef::to_owned).collect();
        prop_assert_eq!(back, events);
    }

    #[test]
    fn any_flipped_byte_is_detected(events in events(), at in any::<prop::sample::Index>(), mask in 1u8..=255) {
        let mut bytes = encode(events.iter().map(Event::as_ref));
        let i = at.index(bytes.len());
        bytes[i] ^= mask;
        prop_assert!(matches!(Segment::parse(&bytes), Err(SegmentError::Corrupt(_))));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(seg) = Segment::parse(&bytes) {
            let _ = seg.decode();
        }
    }

    #[test]
    fn packed_round_trip(events in events(), repeat in 1usize..6) {
        // Repeated runs give the compressor something to find, as real logs do.
        let mut w = SegmentWriter::new();
        let mut want = Vec::new();
        let mut seq = events[0].seq;
        for _ in 0..repeat {
            for e in &events {
                let e = Event { seq, ..e.clone() };
                seq += 1;
                w.push(&e.as_ref());
                want.push(e);
            }
        }
        let bytes = w.finish_packed();
        let mut scratch = Vec::new();
        let seg = Segment::parse_in(&bytes, &mut scratch).unwrap();
        let back: Vec<Event> = seg.decode().unwrap().iter().map(EventRef::to_owned).collect();
        prop_assert_eq!(back, want);
        if bytes[4] == PACKED {
            prop_assert!(matches!(Segment::parse(&bytes), Err(SegmentError::UnsupportedFormat(2))));
        }
    }

    #[test]
    fn any_flipped_byte_of_a_packed_segment_is_detected(events in events(), at in any::<prop::sample::Index>(), mask in 1u8..=255) {
        let mut w = SegmentWriter::new();
        for (i, e) in events.iter().chain(&events).enumerate() {
            w.push(&Event { seq: events[0].seq + i as u64, ..e.clone() }.as_ref());
        }
        let mut bytes = w.finish_packed();
        let i = at.index(bytes.len());
        bytes[i] ^= mask;
        let mut scratch = Vec::new();
        prop_assert!(matches!(Segment::parse_in(&bytes, &mut scratch), Err(SegmentError::Corrupt(_))));
    }

    #[test]
    fn arbitrary_packed_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..200)) {
        // A valid frame and checksum around arbitrary content: only the decoders stand guard.
        let mut bytes = b"LFSG".to_vec();
        bytes.push(PACKED);
        bytes.extend_from_slice(&body);
        let crc = crc32fast::hash(&bytes);
        bytes.extend_from_slice(&crc.to_le_bytes());
        let mut scratch = Vec::new();
        if let Ok(seg) = Segment::parse_in(&bytes, &mut scratch) {
            let _ = seg.decode();
        }
    }
}
