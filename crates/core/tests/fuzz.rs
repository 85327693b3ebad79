//! Fuzzing on stable Rust: every decoder that reads stored or received bytes is fed arbitrary
//! bytes and mutations of valid inputs (bytes flipped, set, inserted, removed, spans repeated,
//! JSON tokens dropped in, checksums recomputed so the damage reaches past them). Each must
//! return a value or an error: a panic fails the test, and so does an input that makes one call
//! allocate more than [`ALLOC_LIMIT`].
//!
//! `LOGFOLD_FUZZ_CASES` sets the inputs per decoder (default 2,000, what `npm test` runs);
//! `scripts/fuzz` runs long passes and prints the executions. proptest shrinks a failure to a
//! small input and keeps it in `tests/fuzz.regressions`, which is then replayed first.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use logfold_core::crc32::crc32;
use logfold_core::json::{self, Reader};
use logfold_core::protocol::snapshots::SnapshotSet;
use logfold_core::protocol::{PullResponse, PushRequest, PushResponse};
use logfold_core::segment::{Segment, SegmentWriter};
use logfold_core::sync::{OutboxBatch, Rejection};
use logfold_core::table::{snapshot, Table, TableDef};
use logfold_core::{Event, EventId, ExpectedVersion, IdGenerator};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// The most one decoder call may allocate at once: the largest segment content a packed
/// segment may declare (64 MiB) and some room.
const ALLOC_LIMIT: usize = 80 << 20;

/// Counts this thread's live heap bytes and their peak, so a call's growth can be checked.
struct Counting;

thread_local! {
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

fn track(grow: usize, shrink: usize) {
    let _ = LIVE.try_with(|live| {
        let now = live.get().saturating_add(grow).saturating_sub(shrink);
        live.set(now);
        let _ = PEAK.try_with(|p| p.set(p.get().max(now)));
    });
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        track(layout.size(), 0);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        track(0, layout.size());
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        track(new_size, layout.size());
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f` and returns the most it had allocated at once beyond what was live before.
fn peak_of(f: impl FnOnce()) -> usize {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    f();
    PEAK.with(Cell::get) - base
}

/// A change to a valid input.
#[derive(Debug, Clone)]
enum Edit {
    Flip(usize, u8),
    Set(usize, u8),
    Insert(usize, u8),
    Remove(usize),
    Truncate(usize),
    Repeat(usize, usize),
    Token(usize, usize),
    /// Recomputes a trailing CRC-32 over the rest, as a segment's frame has.
    Reseal,
}

const TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    "\"",
    ",",
    ":",
    "\\",
    "\\u",
    "\\ud800",
    "null",
    "true",
    "-",
    "0",
    "1e999",
    "18446744073709551616",
    "\"status\":",
    "\"events\":[",
    "{\"reconcile\":{}}",
    "\u{0}",
    "é",
];

fn edit() -> impl Strategy<Value = Edit> {
    let at = any::<usize>();
    prop_oneof![
        (at, 1u8..=255).prop_map(|(i, b)| Edit::Flip(i, b)),
        (at, any::<u8>()).prop_map(|(i, b)| Edit::Set(i, b)),
        (at, any::<u8>()).prop_map(|(i, b)| Edit::Insert(i, b)),
        at.prop_map(Edit::Remove),
        at.prop_map(Edit::Truncate),
        (at, 1usize..64).prop_map(|(i, n)| Edit::Repeat(i, n)),
        (at, 0..TOKENS.len()).prop_map(|(i, t)| Edit::Token(i, t)),
        Just(Edit::Reseal),
    ]
}

fn apply(seed: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for e in edits {
        let pos = |i: usize, v: &Vec<u8>| if v.is_empty() { 0 } else { i % (v.len() + 1) };
        match *e {
            Edit::Flip(i, b) if !v.is_empty() => {
                let n = v.len();
                v[i % n] ^= b
            }
            Edit::Set(i, b) if !v.is_empty() => {
                let n = v.len();
                v[i % n] = b
            }
            Edit::Insert(i, b) => {
                let p = pos(i, &v);
                v.insert(p, b)
            }
            Edit::Remove(i) if !v.is_empty() => {
                let n = v.len();
                v.remove(i % n);
            }
            Edit::Truncate(i) => {
                let p = pos(i, &v);
                v.truncate(p)
            }
            Edit::Repeat(i, n) => {
                let p = pos(i, &v);
                let end = (p + n).min(v.len());
                let span = v[p..end].to_vec();
                v.splice(p..p, span);
            }
            Edit::Token(i, t) => {
                let p = pos(i, &v);
                v.splice(p..p, TOKENS[t].bytes());
            }
            Edit::Reseal if v.len() >= 4 => {
                let n = v.len() - 4;
                let crc = crc32(&v[..n]).to_le_bytes();
                v[n..].copy_from_slice(&crc);
            }
            _ => {}
        }
    }
    v
}

fn events(n: u64) -> Vec<Event> {
    let mut ids = IdGenerator::new(11);
    (1..=n)
        .map(|seq| Event {
            id: ids.next_id(1_700_000_000_000 + seq),
            stream: format!("acct-{}", seq % 3),
            version: seq.div_ceil(3),
            event_type: ["Opened", "Deposited", "Withdrawn"][(seq % 3) as usize].into(),
            data: format!(
                r#"{{"account":"acct-{}","amount":{},"note":"é\n\"{seq}\""}}"#,
                seq % 3,
                seq * 7
            ),
            meta: (seq % 2 == 0).then(|| r#"{"by":"fuzz"}"#.into()),
            time: 1_700_000_000_000 + seq,
            origin: "client-1".into(),
            seq,
            offset: (seq % 2 == 1).then_some(seq),
        })
        .collect()
}

fn segment(events: &[Event], packed: bool) -> Vec<u8> {
    let mut w = SegmentWriter::new();
    for e in events {
        w.push(&e.as_ref());
    }
    if packed {
        w.finish_packed()
    } else {
        w.finish()
    }
}

fn ledger() -> Arc<TableDef> {
    let def = r#"{"key":"data.account","on":{
        "Opened":{"set":{"owner":"data.note","balance":0}},
        "Deposited":[{"add":{"balance":"data.amount"},"count":"n"},{"append":{"log":"meta"}}],
        "Withdrawn":{"subtract":{"balance":"data.amount"}}}}"#;
    Arc::new(TableDef::parse_text(def).unwrap())
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A decoder call that must return, whatever the bytes.
type Decode = Box<dyn Fn(&[u8])>;

/// One decoder under fuzzing: valid inputs to mutate, and the call that must not fail badly.
struct Target {
    name: &'static str,
    seeds: Vec<Vec<u8>>,
    run: Decode,
}

fn targets() -> Vec<Target> {
    let evs = events(40);
    let mut table = Table::new(ledger());
    for e in &evs {
        table.apply(&e.as_ref(), None);
    }
    let outbox = OutboxBatch {
        batch: 3,
        place: 2,
        events: evs[..5].to_vec(),
        expected: [
            ("acct-1".to_owned(), ExpectedVersion::Exact(4)),
            ("acct-2".to_owned(), ExpectedVersion::NoStream),
        ]
        .into(),
        state: logfold_core::sync::BatchState::Reconcile { through: 9 },
    };
    let rejection = Rejection {
        batch: outbox.clone(),
        reason: logfold_core::protocol::RejectReason::Conflict,
        message: "stream acct-1 is at 5".into(),
        details: r#"{"stream":"acct-1","expected":4,"actual":5}"#.into(),
        time: 5,
    };
    let push_answer = r#"{"protocol":1,"head":42,"results":[{"status":"accepted","offsets":[41,42],"versions":[3,4]},{"status":"duplicate","offsets":[7],"versions":[1]},{"status":"rejected","reason":"conflict","message":"m","details":{"actual":5}}]}"#;
    let mut pull_answer = String::new();
    logfold_core::protocol::write_pull_json(&mut pull_answer, 40, &evs[..6]);
    let push_request = {
        let mut body = String::from(
            r#"{"protocol":1,"batches":[{"client":"c","epoch":2,"batch":1,"expected":{"acct-1":3,"acct-2":"none"},"events":["#,
        );
        for (i, e) in evs[..3].iter().enumerate() {
            if i > 0 {
                body.push(',');
            }
            let mut id = String::new();
            e.id.write_to(&mut id);
            body.push_str(&format!(
                r#"{{"id":"{id}","stream":"{}","type":"{}","data":{},"meta":null,"time":{}}}"#,
                e.stream, e.event_type, e.data, e.time
            ));
        }
        body.push_str("]}]}");
        body
    };
    let snapshot_set = SnapshotSet {
        offset: table.seq(),
        salt: r#"{"schemas":{"Opened":2}}"#.into(),
        entries: vec![
            (
                "reducer:total:1".into(),
                br#"{"n":40,"by":["a","b"]}"#.to_vec(),
            ),
            (
                format!("table:ledger:{}", ledger().hash),
                snapshot::encode(&table),
            ),
        ],
        streams: vec![
            ("acct-0".into(), 13),
            ("acct-1".into(), 14),
            ("acct-2".into(), 14),
        ],
    };
    let def = ledger();
    let mut seeds_json: Vec<Vec<u8>> = vec![
        br#"{"a":[1,-2.5e3,"x\u00e9\ud83d\ude00",true,false,null,{"b":{}}],"c":""}"#.to_vec(),
        push_answer.as_bytes().to_vec(),
        pull_answer.as_bytes().to_vec(),
    ];
    seeds_json.push(rejection.to_json().into_bytes());
    vec![
        Target {
            name: "segment",
            seeds: vec![segment(&evs, false), segment(&evs, true), segment(&evs[..1], true)],
            run: Box::new(|b| {
                let mut scratch = Vec::new();
                if let Ok(seg) = Segment::parse_in(b, &mut scratch) {
                    let _ = seg.decode();
                    let mut it = seg.events();
                    while let Some(Ok(_)) = it.next_indexed() {}
                    let mut out = String::from("[");
                    let _ = json::write_segment(&mut out, &seg, 0, u64::MAX);
                }
            }),
        },
        Target {
            name: "lz",
            seeds: vec![{
                let mut content = Vec::new();
                logfold_core::lz::compress(evs[0].data.repeat(20).as_bytes(), &mut content);
                content
            }],
            run: Box::new(|b| {
                let mut out = Vec::new();
                for size in [0, b.len(), b.len() * 4, 1 << 16] {
                    let _ = logfold_core::lz::decompress(b, size, &mut out);
                }
            }),
        },
        Target {
            name: "json",
            seeds: seeds_json.clone(),
            run: Box::new(|b| {
                let t = text(b);
                let _ = json::read::check(&t);
                if let Ok(v) = json::read::parse(&t) {
                    let again = json::read::parse(&v.to_text()).expect("canonical text reads back");
                    assert_eq!(again, v);
                }
                let mut r = Reader::new(&t);
                let _ = r.skip();
            }),
        },
        Target {
            name: "push-answer",
            seeds: seeds_json.clone(),
            run: Box::new(|b| drop(PushResponse::from_json(&text(b)))),
        },
        Target {
            name: "pull-answer",
            seeds: seeds_json.clone(),
            run: Box::new(|b| drop(PullResponse::from_json(&text(b)))),
        },
        Target {
            name: "push-request (server)",
            seeds: vec![push_request.into_bytes()],
            run: Box::new(|b| drop(serde_json::from_slice::<PushRequest>(b))),
        },
        Target {
            name: "outbox-record",
            seeds: vec![outbox.encode()],
            run: Box::new(|b| drop(OutboxBatch::decode(3, b))),
        },
        Target {
            name: "rejection-record",
            seeds: vec![rejection.to_json().into_bytes()],
            run: Box::new(|b| drop(Rejection::ids_from_json(&text(b)))),
        },
        Target {
            name: "table-definition",
            seeds: vec![br#"{"key":"data.account","on":{"A":{"set":{"x":"data.a.b","y":{"value":[1]}},"count":["n","m"]},"B":[{"row":"meta.r","delete":true}],"C":{"append":{"l":"seq"},"subtract":{"z":"data"}}}}"#.to_vec()],
            run: Box::new(|b| drop(TableDef::parse_text(&text(b)))),
        },
        Target {
            name: "snapshot",
            seeds: vec![snapshot::encode(&table), snapshot::encode(&Table::new(ledger()))],
            run: Box::new(move |b| drop(snapshot::decode(b, def.clone()))),
        },
        Target {
            name: "snapshot-set",
            seeds: vec![
                snapshot_set.encode(),
                SnapshotSet {
                    streams: Vec::new(),
                    ..snapshot_set.clone()
                }
                .encode(),
            ],
            run: Box::new(|b| {
                if let Ok(set) = SnapshotSet::decode(b) {
                    let _ = set.check();
                    let _ = set.id();
                }
            }),
        },
        Target {
            name: "event-id",
            seeds: vec![{
                let mut s = String::new();
                EventId::from_bytes([7; 16]).write_to(&mut s);
                s.into_bytes()
            }],
            run: Box::new(|b| drop(text(b).parse::<EventId>())),
        },
    ]
}

fn cases() -> u32 {
    std::env::var("LOGFOLD_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000)
}

#[test]
fn every_decoder_survives_arbitrary_and_damaged_input() {
    let total = AtomicU64::new(0);
    for t in targets() {
        let started = Instant::now();
        let runs = AtomicU64::new(0);
        let mut runner = TestRunner::new(Config {
            cases: cases(),
            failure_persistence: Some(Box::new(
                proptest::test_runner::FileFailurePersistence::Direct("tests/fuzz.regressions"),
            )),
            ..Config::default()
        });
        let seeds = t.seeds.clone();
        let input = prop_oneof![
            1 => prop::collection::vec(any::<u8>(), 0..400),
            4 => (0..seeds.len(), prop::collection::vec(edit(), 1..10))
                .prop_map(move |(i, edits)| apply(&seeds[i], &edits)),
        ];
        let result = runner.run(&input, |bytes| {
            runs.fetch_add(1, Ordering::Relaxed);
            let peak = peak_of(|| (t.run)(&bytes));
            prop_assert!(
                peak <= ALLOC_LIMIT,
                "{}: {} bytes allocated for a {}-byte input",
                t.name,
                peak,
                bytes.len()
            );
            Ok(())
        });
        if let Err(e) = result {
            panic!("fuzz {}: {e}", t.name);
        }
        let n = runs.load(Ordering::Relaxed);
        total.fetch_add(n, Ordering::Relaxed);
        eprintln!(
            "fuzz {:<22} {:>9} executions in {:>6.2} s, no failure",
            t.name,
            n,
            started.elapsed().as_secs_f64()
        );
    }
    eprintln!("fuzz total: {} executions", total.load(Ordering::Relaxed));
}

#[test]
fn the_seeds_are_valid_so_mutations_start_from_real_inputs() {
    let t = targets();
    let mut scratch = Vec::new();
    for s in &t[0].seeds {
        assert!(Segment::parse_in(s, &mut scratch).unwrap().decode().is_ok());
    }
    assert!(PushResponse::from_json(std::str::from_utf8(&t[3].seeds[1]).unwrap()).is_ok());
    assert!(PullResponse::from_json(std::str::from_utf8(&t[4].seeds[2]).unwrap()).is_ok());
    assert!(serde_json::from_slice::<PushRequest>(&t[5].seeds[0]).is_ok());
    assert!(OutboxBatch::decode(3, &t[6].seeds[0]).is_ok());
    assert!(Rejection::ids_from_json(std::str::from_utf8(&t[7].seeds[0]).unwrap()).is_ok());
    assert!(TableDef::parse_text(std::str::from_utf8(&t[8].seeds[0]).unwrap()).is_ok());
    assert!(snapshot::decode(&t[9].seeds[0], ledger()).is_ok());
    for s in &t[10].seeds {
        assert_eq!(SnapshotSet::decode(s).unwrap().check(), Ok(()));
    }
    assert!(std::str::from_utf8(&t[11].seeds[0])
        .unwrap()
        .parse::<EventId>()
        .is_ok());
}
