//! The decoders under AFL++, by name, and a few valid inputs for each to start its corpus.
//! `src/main.rs` runs one of them under `afl::fuzz!`; `src/bin/seeds.rs` writes the seeds.
//! The calls match crates/core/tests/fuzz.rs, so a finding there and here means the same.

use std::sync::Arc;

use logfold_core::crc32::crc32;
use logfold_core::json::{self, Reader};
use logfold_core::protocol::{PullResponse, PushRequest, PushResponse, RejectReason};
use logfold_core::segment::{Segment, SegmentWriter};
use logfold_core::sync::{BatchState, OutboxBatch, Rejection};
use logfold_core::table::{snapshot, Table, TableDef};
use logfold_core::{Event, EventId, ExpectedVersion, IdGenerator};

/// Every target, in the order scripts/fuzz-afl runs them.
pub const TARGETS: &[&str] = &[
    "segment",
    "lz",
    "json",
    "push-answer",
    "pull-answer",
    "push-request",
    "outbox-record",
    "rejection-record",
    "table-definition",
    "snapshot",
    "event-id",
    "segment-sealed",
    "snapshot-sealed",
];

/// `bytes` with its CRC-32 appended, as a segment's and a snapshot's trailer has: the
/// `-sealed` targets fuzz the framed content, since AFL++ alone almost never mutates a
/// checksummed input into one whose checksum still matches.
fn sealed(bytes: &[u8]) -> Vec<u8> {
    let mut framed = bytes.to_vec();
    framed.extend_from_slice(&crc32(bytes).to_le_bytes());
    framed
}

/// `bytes` without its 4-byte trailer: the seed of a `-sealed` target.
fn unsealed(mut bytes: Vec<u8>) -> Vec<u8> {
    bytes.truncate(bytes.len().saturating_sub(4));
    bytes
}

/// The table definition that snapshots are decoded against.
pub fn ledger() -> Arc<TableDef> {
    let text = concat!(
        r#"{"key":"data.account","on":{"#,
        r#""Opened":{"set":{"owner":"data.note","balance":0}},"#,
        r#""Deposited":[{"add":{"balance":"data.amount"},"count":"n"},{"append":{"log":"meta"}}],"#,
        r#""Withdrawn":{"subtract":{"balance":"data.amount"}}}}"#
    );
    Arc::new(TableDef::parse_text(text).expect("the ledger definition is valid"))
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn read_segment(bytes: &[u8]) {
    let mut scratch = Vec::new();
    if let Ok(seg) = Segment::parse_in(bytes, &mut scratch) {
        let _ = seg.decode();
        let mut events = seg.events();
        while let Some(Ok(_)) = events.next_indexed() {}
        let mut out = String::from("[");
        let _ = json::write_segment(&mut out, &seg, 0, u64::MAX);
    }
}

/// Feeds `bytes` to the decoder `name`. It must return whatever the bytes are: a panic here is
/// a finding. Returns false for an unknown name.
pub fn run(name: &str, bytes: &[u8], def: &Arc<TableDef>) -> bool {
    match name {
        "segment" => read_segment(bytes),
        "segment-sealed" => read_segment(&sealed(bytes)),
        "snapshot-sealed" => drop(snapshot::decode(&sealed(bytes), def.clone())),
        "lz" => {
            let mut out = Vec::new();
            for size in [0, bytes.len(), bytes.len() * 4, 1 << 16] {
                let _ = logfold_core::lz::decompress(bytes, size, &mut out);
            }
        }
        "json" => {
            let text = lossy(bytes);
            let _ = json::read::check(&text);
            if let Ok(value) = json::read::parse(&text) {
                let canonical = value.to_text();
                let back = json::read::parse(&canonical).expect("canonical text reads back");
                assert_eq!(back, value, "canonical text reads back the same");
            }
            let _ = Reader::new(&text).skip();
        }
        "push-answer" => drop(PushResponse::from_json(&lossy(bytes))),
        "pull-answer" => drop(PullResponse::from_json(&lossy(bytes))),
        "push-request" => drop(serde_json::from_slice::<PushRequest>(bytes)),
        "outbox-record" => drop(OutboxBatch::decode(3, bytes)),
        "rejection-record" => drop(Rejection::ids_from_json(&lossy(bytes))),
        "table-definition" => drop(TableDef::parse_text(&lossy(bytes))),
        "snapshot" => drop(snapshot::decode(bytes, def.clone())),
        "event-id" => drop(lossy(bytes).parse::<EventId>()),
        _ => return false,
    }
    true
}

/// Whether `bytes` is an input the decoder `name` accepts, so a seed is known to start AFL++
/// from a real input (a rejected one would only exercise the first check).
pub fn accepts(name: &str, bytes: &[u8], def: &Arc<TableDef>) -> bool {
    let text = || std::str::from_utf8(bytes).ok();
    let mut scratch = Vec::new();
    match name {
        "segment" => Segment::parse_in(bytes, &mut scratch).is_ok_and(|s| s.decode().is_ok()),
        // Compressed content carries no size: seeds() checks its own round trip instead.
        "lz" => !bytes.is_empty(),
        "json" => text().is_some_and(|t| json::read::parse(t).is_ok()),
        // Their seeds are all the JSON texts, each valid as JSON if not as that answer.
        "push-answer" | "pull-answer" => text().is_some_and(|t| json::read::check(t).is_ok()),
        "push-request" => serde_json::from_slice::<PushRequest>(bytes).is_ok(),
        "outbox-record" => OutboxBatch::decode(3, bytes).is_ok(),
        "rejection-record" => text().is_some_and(|t| Rejection::ids_from_json(t).is_ok()),
        "table-definition" => text().is_some_and(|t| TableDef::parse_text(t).is_ok()),
        "snapshot" => snapshot::decode(bytes, def.clone()).is_ok(),
        "segment-sealed" => accepts("segment", &sealed(bytes), def),
        "snapshot-sealed" => accepts("snapshot", &sealed(bytes), def),
        "event-id" => text().is_some_and(|t| t.parse::<EventId>().is_ok()),
        _ => false,
    }
}

fn sample_events(count: u64) -> Vec<Event> {
    let mut ids = IdGenerator::new(29);
    let kinds = ["Opened", "Deposited", "Withdrawn"];
    (1..=count)
        .map(|n| {
            let account = format!("acct-{}", n % 3);
            Event {
                id: ids.next_id(1_710_000_000_000 + n),
                data: format!(
                    r#"{{"account":"{account}","amount":{},"note":"ü\t\"{n}\""}}"#,
                    n * 5
                ),
                stream: account,
                version: n.div_ceil(3),
                event_type: kinds[(n % 3) as usize].into(),
                meta: (n % 2 == 0).then(|| r#"{"by":"afl"}"#.into()),
                time: 1_710_000_000_000 + n,
                origin: "client-a".into(),
                seq: n,
                offset: (n % 2 == 1).then_some(n),
            }
        })
        .collect()
}

fn write_segment(events: &[Event], packed: bool) -> Vec<u8> {
    let mut writer = SegmentWriter::new();
    for e in events {
        writer.push(&e.as_ref());
    }
    if packed {
        writer.finish_packed()
    } else {
        writer.finish()
    }
}

fn push_request_body(events: &[Event]) -> Vec<u8> {
    let mut list = Vec::new();
    for e in events {
        let mut id = String::new();
        e.id.write_to(&mut id);
        list.push(format!(
            r#"{{"id":"{id}","stream":"{}","type":"{}","data":{},"meta":null,"time":{}}}"#,
            e.stream, e.event_type, e.data, e.time
        ));
    }
    format!(
        r#"{{"protocol":1,"batches":[{{"client":"c","epoch":1,"batch":2,"expected":{{"acct-1":2,"acct-0":"none"}},"events":[{}]}}]}}"#,
        list.join(",")
    )
    .into_bytes()
}

/// Valid inputs for the decoder `name`, for AFL++ to start mutating from.
pub fn seeds(name: &str) -> Vec<Vec<u8>> {
    let events = sample_events(24);
    let outbox = OutboxBatch {
        batch: 3,
        place: 1,
        events: events[..4].to_vec(),
        expected: [
            ("acct-1".to_owned(), ExpectedVersion::Exact(2)),
            ("acct-0".to_owned(), ExpectedVersion::NoStream),
        ]
        .into(),
        state: BatchState::Reconcile { through: 7 },
    };
    let rejection = Rejection {
        batch: outbox.clone(),
        reason: RejectReason::Conflict,
        message: "stream acct-1 is at 3".into(),
        details: r#"{"stream":"acct-1","expected":2,"actual":3}"#.into(),
        time: 9,
    };
    let push_answer = concat!(
        r#"{"protocol":1,"head":30,"results":[{"status":"accepted","offsets":[29,30],"versions":[2,3]},"#,
        r#"{"status":"duplicate","offsets":[4],"versions":[1]},"#,
        r#"{"status":"rejected","reason":"conflict","message":"no","details":{"actual":3}}]}"#
    );
    let mut pull_answer = String::new();
    logfold_core::protocol::write_pull_json(&mut pull_answer, 24, &events[..4]);
    let json_texts = vec![
        br#"{"k":[0,-1.5e2,"\u00fc\ud83d\ude00",true,false,null,{"n":{}}],"s":""}"#.to_vec(),
        push_answer.as_bytes().to_vec(),
        pull_answer.clone().into_bytes(),
        rejection.to_json().into_bytes(),
    ];
    match name {
        "segment" => vec![
            write_segment(&events, false),
            write_segment(&events, true),
            write_segment(&events[..1], true),
        ],
        "lz" => {
            let plain = events[1].data.repeat(16).into_bytes();
            let (mut packed, mut back) = (Vec::new(), Vec::new());
            logfold_core::lz::compress(&plain, &mut packed);
            logfold_core::lz::decompress(&packed, plain.len(), &mut back).expect("the seed expands");
            assert_eq!(back, plain, "the lz seed round-trips");
            vec![packed]
        }
        "json" | "push-answer" | "pull-answer" => json_texts,
        "push-request" => vec![push_request_body(&events[..3])],
        "outbox-record" => vec![outbox.encode()],
        "rejection-record" => vec![rejection.to_json().into_bytes()],
        "table-definition" => vec![concat!(
            r#"{"key":"data.account","on":{"A":{"set":{"x":"data.a.b","y":{"value":[1]}},"count":["n","m"]},"#,
            r#""B":[{"row":"meta.r","delete":true}],"C":{"append":{"l":"seq"},"subtract":{"z":"data"}}}}"#
        )
        .as_bytes()
        .to_vec()],
        "snapshot" => {
            let mut table = Table::new(ledger());
            for e in &events {
                table.apply(&e.as_ref(), None);
            }
            vec![snapshot::encode(&table), snapshot::encode(&Table::new(ledger()))]
        }
        "event-id" => {
            let mut id = String::new();
            EventId::from_bytes([0x5a; 16]).write_to(&mut id);
            vec![id.into_bytes()]
        }
        "segment-sealed" => seeds("segment").into_iter().map(unsealed).collect(),
        "snapshot-sealed" => seeds("snapshot").into_iter().map(unsealed).collect(),
        _ => Vec::new(),
    }
}
