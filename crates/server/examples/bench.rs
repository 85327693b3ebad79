//! Load generator for the sync server: starts real `logfold-server` processes on loopback
//! (SQLite and PostgreSQL) and measures push, pull, single-event latency and concurrency, next
//! to a peer that inserts and selects the same rows straight through the database driver with
//! the same durability. Writes `bench/results/server.json` and prints a table.
//!
//! `cargo run --profile server -p logfold-server --example bench -- [--quick] [--pg URL]
//!  [--server PATH] [--out PATH] [--pg-only]` (scripts/bench-server does all of it).

#[path = "../tests/common/http.rs"]
mod http;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use http::{client, send, Http};
use logfold_core::protocol::{
    PullResponse, PushBatch, PushEvent, PushRequest, PushResponse, SEGMENT_CONTENT_TYPE,
};
use logfold_core::segment::Segment;
use logfold_core::EventId;
use serde_json::json;

struct Options {
    quick: bool,
    pg_only: bool,
    pg: String,
    server: String,
    out: String,
}

fn options() -> Options {
    let mut o = Options {
        quick: false,
        pg_only: false,
        pg: std::env::var("LOGFOLD_TEST_PG").unwrap_or_default(),
        server: "target/server/logfold-server".into(),
        out: "bench/results/server.json".into(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => o.quick = true,
            "--pg-only" => o.pg_only = true,
            "--pg" => o.pg = args.next().expect("--pg URL"),
            "--server" => o.server = args.next().expect("--server PATH"),
            "--out" => o.out = args.next().expect("--out PATH"),
            other => panic!("unknown argument {other}"),
        }
    }
    assert!(
        !o.pg.is_empty(),
        "set LOGFOLD_TEST_PG or pass --pg (scripts/bench-server does)"
    );
    o
}

/// One row of the results file.
#[derive(Default, Clone)]
struct Row {
    case: String,
    system: String,
    events_per_s: Option<f64>,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    metric: Option<(String, f64, String)>,
}

impl Row {
    fn new(case: &str, system: &str) -> Row {
        Row {
            case: case.into(),
            system: system.into(),
            ..Row::default()
        }
    }

    fn to_json(&self) -> serde_json::Value {
        let mut v = json!({"case": self.case, "system": self.system});
        let round = |x: f64| (x * 1000.0).round() / 1000.0;
        if let Some(e) = self.events_per_s {
            v["events_per_s"] = json!(e.round());
        }
        if let Some(p) = self.p50_ms {
            v["p50_ms"] = json!(round(p));
        }
        if let Some(p) = self.p99_ms {
            v["p99_ms"] = json!(round(p));
        }
        if let Some((m, val, unit)) = &self.metric {
            v["metric"] = json!(m);
            v["value"] = json!(round(*val));
            v["unit"] = json!(unit);
        }
        v
    }
}

fn percentile(sorted_ms: &[f64], p: f64) -> f64 {
    if sorted_ms.is_empty() {
        return 0.0;
    }
    let ix = ((sorted_ms.len() as f64 - 1.0) * p).round() as usize;
    sorted_ms[ix]
}

fn latencies(mut ms: Vec<f64>) -> (f64, f64) {
    ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (percentile(&ms, 0.5), percentile(&ms, 0.99))
}

/// ~200-byte events: the payload the budgets are stated for.
struct Events {
    nonce: u128,
    next: u128,
}

impl Events {
    fn new() -> Events {
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        Events {
            nonce: (nonce & 0xffff_ffff_ffff) << 64,
            next: 0,
        }
    }

    fn make(&mut self, n: usize) -> Vec<PushEvent> {
        (0..n)
            .map(|_| {
                self.next += 1;
                let id = EventId(self.nonce | (7 << 76) | self.next);
                let k = self.next % 1000;
                PushEvent {
                    id,
                    stream: format!("todo-{}", k % 50),
                    event_type: "ItemAdded".into(),
                    data: format!(
                        "{{\"item\":{k},\"title\":\"Buy oat milk, rye bread and coffee beans\",\"qty\":{},\"tags\":[\"home\",\"weekly\"],\"note\":\"nothing urgent here\"}}",
                        k % 7
                    ),
                    meta: Some("{\"by\":\"bench\"}".into()),
                    time: 1_700_000_000_000 + self.next as u64,
                    version: None,
                }
            })
            .collect()
    }

    fn body(&mut self, client: &str, number: u64, n: usize) -> Vec<u8> {
        let batch = PushBatch {
            client: client.into(),
            epoch: 1,
            batch: number,
            events: self.make(n),
            expected: Default::default(),
        };
        serde_json::to_vec(&PushRequest {
            protocol: 1,
            batches: vec![batch],
        })
        .unwrap()
    }
}

struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start(bin: &str, args: &[&str]) -> Server {
        let mut child = Command::new(bin)
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .expect("listen line");
        Server {
            child,
            base: format!("http://{addr}"),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn push(http: &Http, url: &str, body: Vec<u8>) -> f64 {
    let t = Instant::now();
    let (status, _, answer) = send(
        http,
        "POST",
        url,
        &[("content-type", "application/json")],
        body,
    )
    .await
    .unwrap();
    let ms = t.elapsed().as_secs_f64() * 1e3;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    let r: PushResponse = serde_json::from_slice(&answer).unwrap();
    assert!(
        r.results.iter().all(|r| !r.offsets().is_empty()),
        "a bench batch was rejected: {:?}",
        r.results
    );
    ms
}

struct Sizes {
    batch1000_requests: usize,
    single_clients: usize,
    single_requests: usize,
    scale_requests: usize,
}

async fn bench_server(system: &str, server: &Server, sizes: &Sizes, rows: &mut Vec<Row>) -> u64 {
    let http = client();
    let mut gen = Events::new();
    let url = format!("{}/v1/logs/bench/push", server.base);
    // Warm up connections and caches.
    for i in 0..3 {
        push(&http, &url, gen.body("warm", i, 100)).await;
    }

    // Batches of 1,000 events from one client, bodies prepared beforehand.
    let bodies: Vec<Vec<u8>> = (0..sizes.batch1000_requests)
        .map(|i| gen.body("b1000", i as u64, 1000))
        .collect();
    let t = Instant::now();
    let mut ms = Vec::new();
    for body in bodies {
        ms.push(push(&http, &url, body).await);
    }
    let secs = t.elapsed().as_secs_f64();
    let (p50, p99) = latencies(ms);
    rows.push(Row {
        events_per_s: Some((sizes.batch1000_requests * 1000) as f64 / secs),
        p50_ms: Some(p50),
        p99_ms: Some(p99),
        ..Row::new("server.push.batch1000", system)
    });

    // Pull the whole log, JSON and binary, decoding on the client as a reader must.
    for (case, segment) in [("server.pull.json", false), ("server.pull.segment", true)] {
        let t = Instant::now();
        let mut after = 0u64;
        let mut n = 0usize;
        loop {
            let page = format!(
                "{}/v1/logs/bench/events?after={after}&limit=10000",
                server.base
            );
            let accept = if segment {
                SEGMENT_CONTENT_TYPE
            } else {
                "application/json"
            };
            let (status, _, body) = send(&http, "GET", &page, &[("accept", accept)], Vec::new())
                .await
                .unwrap();
            assert_eq!(status, 200);
            let last = if segment && body.is_empty() {
                None
            } else if segment {
                let seg = Segment::parse(&body).unwrap();
                let events = seg.decode().unwrap();
                n += events.len();
                events.last().map(|e| e.seq)
            } else {
                let r: PullResponse = serde_json::from_slice(&body).unwrap();
                n += r.events.len();
                r.events.last().map(|e| e.offset)
            };
            match last {
                Some(o) => after = o,
                None => break,
            }
        }
        let secs = t.elapsed().as_secs_f64();
        rows.push(Row {
            events_per_s: Some(n as f64 / secs),
            metric: Some(("events pulled".into(), n as f64, "events".into())),
            ..Row::new(case, system)
        });
    }
    let head = after_push_head(&http, &server.base).await;

    // Single-event batches from several clients at once: latency under load.
    let http = Arc::new(http);
    let t = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..sizes.single_clients {
        let bodies: Vec<Vec<u8>> = (0..sizes.single_requests)
            .map(|i| gen.body(&format!("single-{c}"), i as u64, 1))
            .collect();
        let (http, url) = (http.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let mut ms = Vec::new();
            for body in bodies {
                ms.push(push(&http, &url, body).await);
            }
            ms
        }));
    }
    let mut ms = Vec::new();
    for t in tasks {
        ms.extend(t.await.unwrap());
    }
    let secs = t.elapsed().as_secs_f64();
    let count = ms.len();
    let (p50, p99) = latencies(ms);
    rows.push(Row {
        events_per_s: Some(count as f64 / secs),
        p50_ms: Some(p50),
        p99_ms: Some(p99),
        metric: Some((
            "concurrent clients".into(),
            sizes.single_clients as f64,
            "clients".into(),
        )),
        ..Row::new("server.push.single", system)
    });

    // Throughput with 1..16 clients, each pushing batches of 100 events, then of 1,000.
    for (per_batch, clients) in SCALE {
        let requests = scale_requests(sizes, per_batch);
        let mut tasks = Vec::new();
        let mut all_bodies = Vec::new();
        for c in 0..clients {
            let bodies: Vec<Vec<u8>> = (0..requests)
                .map(|i| {
                    gen.body(
                        &format!("scale{clients}x{per_batch}-{c}"),
                        i as u64,
                        per_batch,
                    )
                })
                .collect();
            all_bodies.push(bodies);
        }
        let t = Instant::now();
        for bodies in all_bodies {
            let (http, url) = (http.clone(), url.clone());
            tasks.push(tokio::spawn(async move {
                let mut ms = Vec::new();
                for body in bodies {
                    ms.push(push(&http, &url, body).await);
                }
                ms
            }));
        }
        let mut ms = Vec::new();
        for t in tasks {
            ms.extend(t.await.unwrap());
        }
        let secs = t.elapsed().as_secs_f64();
        rows.push(scale_row(clients, requests, per_batch, secs, ms, system));
    }
    head
}

/// The concurrency cases: (events a batch, clients).
const SCALE: [(usize, usize); 10] = [
    (100, 1),
    (100, 2),
    (100, 4),
    (100, 8),
    (100, 16),
    (1000, 1),
    (1000, 2),
    (1000, 4),
    (1000, 8),
    (1000, 16),
];

/// Requests each client sends in a concurrency case: a quarter as many of 1,000 events.
fn scale_requests(sizes: &Sizes, per_batch: usize) -> usize {
    if per_batch >= 1000 {
        (sizes.scale_requests / 4).max(4)
    } else {
        sizes.scale_requests
    }
}

fn scale_case(clients: usize, per_batch: usize) -> String {
    format!("server.push.clients{clients:02}.batch{per_batch}")
}

/// The row of a concurrency case: `clients` each sent `requests` pushes of `per_batch` events
/// in `secs`, with these latencies.
fn scale_row(
    clients: usize,
    requests: usize,
    per_batch: usize,
    secs: f64,
    ms: Vec<f64>,
    system: &str,
) -> Row {
    let (p50, p99) = latencies(ms);
    Row {
        events_per_s: Some((clients * requests * per_batch) as f64 / secs),
        p50_ms: Some(p50),
        p99_ms: Some(p99),
        metric: Some((
            "concurrent clients".into(),
            clients as f64,
            "clients".into(),
        )),
        ..Row::new(&scale_case(clients, per_batch), system)
    }
}

async fn after_push_head(http: &Http, base: &str) -> u64 {
    let (_, _, body) = send(
        http,
        "GET",
        &format!("{base}/v1/logs/bench/events?after=0&limit=1"),
        &[],
        Vec::new(),
    )
    .await
    .unwrap();
    serde_json::from_slice::<PullResponse>(&body).unwrap().head
}

const EVENTS_TABLE: &str = "CREATE TABLE events (
    log_id BIGINT NOT NULL, event_offset BIGINT NOT NULL, id BYTEA NOT NULL, stream TEXT NOT NULL,
    version BIGINT NOT NULL, type TEXT NOT NULL, data TEXT NOT NULL, meta TEXT, time BIGINT NOT NULL,
    origin TEXT NOT NULL, PRIMARY KEY (log_id, event_offset));
    CREATE UNIQUE INDEX events_by_id ON events (log_id, id);";

/// The same rows straight into SQLite: WAL, synchronous=FULL, one transaction per 1,000.
fn sqlite_direct(dir: &std::path::Path, sizes: &Sizes, rows: &mut Vec<Row>) {
    let path = dir.join("direct.sqlite3");
    let mut conn = rusqlite::Connection::open(&path).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.pragma_update(None, "synchronous", "FULL").unwrap();
    conn.execute_batch(
        &EVENTS_TABLE
            .replace("BYTEA", "BLOB")
            .replace("));", ")) WITHOUT ROWID;"),
    )
    .unwrap();
    let mut gen = Events::new();
    let mut offset = 0i64;
    let batches: Vec<Vec<PushEvent>> = (0..sizes.batch1000_requests)
        .map(|_| gen.make(1000))
        .collect();
    let t = Instant::now();
    let mut ms = Vec::new();
    for batch in &batches {
        let b = Instant::now();
        let tx = conn.transaction().unwrap();
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO events VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'direct')",
                )
                .unwrap();
            for e in batch {
                offset += 1;
                stmt.execute(rusqlite::params![
                    offset,
                    &e.id.to_bytes()[..],
                    e.stream,
                    offset,
                    e.event_type,
                    e.data,
                    e.meta,
                    e.time as i64
                ])
                .unwrap();
            }
        }
        tx.commit().unwrap();
        ms.push(b.elapsed().as_secs_f64() * 1e3);
    }
    let secs = t.elapsed().as_secs_f64();
    let (p50, p99) = latencies(ms);
    rows.push(Row {
        events_per_s: Some(offset as f64 / secs),
        p50_ms: Some(p50),
        p99_ms: Some(p99),
        ..Row::new("server.push.batch1000", "sqlite-direct")
    });
    let t = Instant::now();
    let mut after = 0i64;
    let mut n = 0usize;
    loop {
        let mut stmt = conn
            .prepare_cached("SELECT event_offset, id, stream, version, type, data, meta, time, origin FROM events WHERE log_id = 1 AND event_offset > ?1 ORDER BY event_offset LIMIT 10000")
            .unwrap();
        let page: Vec<logfold_core::Event> = stmt
            .query_map([after], |r| {
                let id: [u8; 16] = r.get(1)?;
                let o = r.get::<_, i64>(0)? as u64;
                Ok(logfold_core::Event {
                    id: EventId::from_bytes(id),
                    stream: r.get(2)?,
                    version: r.get::<_, i64>(3)? as u64,
                    event_type: r.get(4)?,
                    data: r.get(5)?,
                    meta: r.get(6)?,
                    time: r.get::<_, i64>(7)? as u64,
                    origin: r.get(8)?,
                    seq: o,
                    offset: Some(o),
                })
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        match page.last() {
            Some(e) => after = e.seq as i64,
            None => break,
        }
        n += page.len();
    }
    rows.push(Row {
        events_per_s: Some(n as f64 / t.elapsed().as_secs_f64()),
        metric: Some(("events pulled".into(), n as f64, "events".into())),
        ..Row::new("server.pull", "sqlite-direct")
    });
    let t = Instant::now();
    let mut ms = Vec::new();
    for e in gen.make(sizes.single_requests * 4) {
        let b = Instant::now();
        offset += 1;
        let tx = conn.transaction().unwrap();
        tx.execute(
            "INSERT INTO events VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'direct')",
            rusqlite::params![
                offset,
                &e.id.to_bytes()[..],
                e.stream,
                offset,
                e.event_type,
                e.data,
                e.meta,
                e.time as i64
            ],
        )
        .unwrap();
        tx.commit().unwrap();
        ms.push(b.elapsed().as_secs_f64() * 1e3);
    }
    let count = ms.len();
    let (p50, p99) = latencies(ms);
    rows.push(Row {
        events_per_s: Some(count as f64 / t.elapsed().as_secs_f64()),
        p50_ms: Some(p50),
        p99_ms: Some(p99),
        metric: Some(("concurrent clients".into(), 1.0, "clients".into())),
        ..Row::new("server.push.single", "sqlite-direct")
    });
}

/// The same rows straight into PostgreSQL with the server's UNNEST insert, synchronous_commit on.
fn postgres_direct(url: &str, schema: &str, sizes: &Sizes, rows: &mut Vec<Row>) {
    let mut c = postgres::Client::connect(url, postgres::NoTls).unwrap();
    c.batch_execute(&format!(
        "CREATE SCHEMA {schema}; SET search_path TO {schema}; {EVENTS_TABLE}"
    ))
    .unwrap();
    let insert = "INSERT INTO events SELECT 1, o, i, s, v, t, d, m, tm, 'direct'
        FROM UNNEST($1::bigint[], $2::bytea[], $3::text[], $4::bigint[], $5::text[], $6::text[], $7::text[], $8::bigint[])
        AS u(o, i, s, v, t, d, m, tm)";
    let mut gen = Events::new();
    let mut offset = 0i64;
    let write = |c: &mut postgres::Client, batch: &[PushEvent], offset: &mut i64| {
        let mut o = Vec::new();
        let ids: Vec<[u8; 16]> = batch.iter().map(|e| e.id.to_bytes()).collect();
        let ids: Vec<&[u8]> = ids.iter().map(|b| &b[..]).collect();
        for _ in batch {
            *offset += 1;
            o.push(*offset);
        }
        let s: Vec<&str> = batch.iter().map(|e| e.stream.as_str()).collect();
        let t: Vec<&str> = batch.iter().map(|e| e.event_type.as_str()).collect();
        let d: Vec<&str> = batch.iter().map(|e| e.data.as_str()).collect();
        let m: Vec<Option<&str>> = batch.iter().map(|e| e.meta.as_deref()).collect();
        let tm: Vec<i64> = batch.iter().map(|e| e.time as i64).collect();
        let mut tx = c.transaction().unwrap();
        tx.execute(insert, &[&o, &ids, &s, &o, &t, &d, &m, &tm])
            .unwrap();
        tx.commit().unwrap();
    };
    let batches: Vec<Vec<PushEvent>> = (0..sizes.batch1000_requests)
        .map(|_| gen.make(1000))
        .collect();
    let t = Instant::now();
    let mut ms = Vec::new();
    for batch in &batches {
        let b = Instant::now();
        write(&mut c, batch, &mut offset);
        ms.push(b.elapsed().as_secs_f64() * 1e3);
    }
    let secs = t.elapsed().as_secs_f64();
    let (p50, p99) = latencies(ms);
    rows.push(Row {
        events_per_s: Some(offset as f64 / secs),
        p50_ms: Some(p50),
        p99_ms: Some(p99),
        ..Row::new("server.push.batch1000", "postgres-direct")
    });
    let t = Instant::now();
    let mut after = 0i64;
    let mut n = 0usize;
    loop {
        let page = c
            .query("SELECT event_offset, id, stream, version, type, data, meta, time, origin FROM events WHERE log_id = 1 AND event_offset > $1 ORDER BY event_offset LIMIT 10000", &[&after])
            .unwrap();
        let events: Vec<logfold_core::Event> = page
            .iter()
            .map(|r| {
                let id: &[u8] = r.get(1);
                let o = r.get::<_, i64>(0) as u64;
                logfold_core::Event {
                    id: EventId::from_bytes(id.try_into().unwrap()),
                    stream: r.get(2),
                    version: r.get::<_, i64>(3) as u64,
                    event_type: r.get(4),
                    data: r.get(5),
                    meta: r.get(6),
                    time: r.get::<_, i64>(7) as u64,
                    origin: r.get(8),
                    seq: o,
                    offset: Some(o),
                }
            })
            .collect();
        match events.last() {
            Some(e) => after = e.seq as i64,
            None => break,
        }
        n += events.len();
    }
    rows.push(Row {
        events_per_s: Some(n as f64 / t.elapsed().as_secs_f64()),
        metric: Some(("events pulled".into(), n as f64, "events".into())),
        ..Row::new("server.pull", "postgres-direct")
    });
    let singles = gen.make(sizes.single_requests * 4);
    let t = Instant::now();
    let mut ms = Vec::new();
    for e in singles.chunks(1) {
        let b = Instant::now();
        write(&mut c, e, &mut offset);
        ms.push(b.elapsed().as_secs_f64() * 1e3);
    }
    let count = ms.len();
    let (p50, p99) = latencies(ms);
    rows.push(Row {
        events_per_s: Some(count as f64 / t.elapsed().as_secs_f64()),
        p50_ms: Some(p50),
        p99_ms: Some(p99),
        metric: Some(("concurrent clients".into(), 1.0, "clients".into())),
        ..Row::new("server.push.single", "postgres-direct")
    });
    // The same concurrency cases: each client its own connection and log id (so nothing
    // serializes them but the database itself), one transaction a batch.
    let mut next_log = 2i64;
    for (per_batch, clients) in SCALE {
        let requests = scale_requests(sizes, per_batch);
        let work: Vec<(i64, Vec<Vec<PushEvent>>)> = (0..clients)
            .map(|_| {
                next_log += 1;
                (
                    next_log,
                    (0..requests).map(|_| gen.make(per_batch)).collect(),
                )
            })
            .collect();
        let mut conns: Vec<postgres::Client> = (0..clients)
            .map(|_| {
                let mut c = postgres::Client::connect(url, postgres::NoTls).unwrap();
                c.batch_execute(&format!("SET search_path TO {schema}"))
                    .unwrap();
                c
            })
            .collect();
        let t = Instant::now();
        let ms: Vec<f64> = std::thread::scope(|scope| {
            let handles: Vec<_> = work
                .iter()
                .zip(conns.iter_mut())
                .map(|((log, batches), c)| {
                    scope.spawn(move || {
                        let mut offset = 0i64;
                        let mut ms = Vec::new();
                        for batch in batches {
                            let b = Instant::now();
                            write_as(c, *log, batch, &mut offset);
                            ms.push(b.elapsed().as_secs_f64() * 1e3);
                        }
                        ms
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect()
        });
        let secs = t.elapsed().as_secs_f64();
        rows.push(scale_row(
            clients,
            requests,
            per_batch,
            secs,
            ms,
            "postgres-direct",
        ));
    }
    let _ = c.batch_execute(&format!("DROP SCHEMA {schema} CASCADE"));
}

/// One batch into log `log` through the bare driver: the UNNEST insert, in a transaction.
fn write_as(c: &mut postgres::Client, log: i64, batch: &[PushEvent], offset: &mut i64) {
    let insert = "INSERT INTO events SELECT $1, o, i, s, v, t, d, m, tm, 'direct'
        FROM UNNEST($2::bigint[], $3::bytea[], $4::text[], $5::bigint[], $6::text[], $7::text[], $8::text[], $9::bigint[])
        AS u(o, i, s, v, t, d, m, tm)";
    let ids: Vec<[u8; 16]> = batch.iter().map(|e| e.id.to_bytes()).collect();
    let ids: Vec<&[u8]> = ids.iter().map(|b| &b[..]).collect();
    let o: Vec<i64> = batch
        .iter()
        .map(|_| {
            *offset += 1;
            *offset
        })
        .collect();
    let s: Vec<&str> = batch.iter().map(|e| e.stream.as_str()).collect();
    let t: Vec<&str> = batch.iter().map(|e| e.event_type.as_str()).collect();
    let d: Vec<&str> = batch.iter().map(|e| e.data.as_str()).collect();
    let m: Vec<Option<&str>> = batch.iter().map(|e| e.meta.as_deref()).collect();
    let tm: Vec<i64> = batch.iter().map(|e| e.time as i64).collect();
    let mut tx = c.transaction().unwrap();
    tx.execute(insert, &[&log, &o, &ids, &s, &o, &t, &d, &m, &tm])
        .unwrap();
    tx.commit().unwrap();
}

fn print_table(rows: &[Row]) {
    println!(
        "{:<34} {:<17} {:>12} {:>9} {:>9}  note",
        "case", "system", "events/s", "p50 ms", "p99 ms"
    );
    let f = |x: Option<f64>, d: usize| x.map_or("-".to_string(), |v| format!("{v:.d$}"));
    for r in rows {
        let note = r
            .metric
            .as_ref()
            .map_or(String::new(), |(m, v, u)| format!("{m} = {v} {u}"));
        println!(
            "{:<34} {:<17} {:>12} {:>9} {:>9}  {note}",
            r.case,
            r.system,
            f(r.events_per_s, 0),
            f(r.p50_ms, 2),
            f(r.p99_ms, 2)
        );
    }
}

#[tokio::main]
async fn main() {
    let o = options();
    let sizes = if o.quick {
        Sizes {
            batch1000_requests: 30,
            single_clients: 8,
            single_requests: 40,
            scale_requests: 8,
        }
    } else {
        Sizes {
            batch1000_requests: 200,
            single_clients: 8,
            single_requests: 200,
            scale_requests: 40,
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let mut rows = Vec::new();
    let started = Instant::now();

    if !o.pg_only {
        let sqlite_path = dir.path().join("server.sqlite3");
        let server = Server::start(&o.server, &["--database", sqlite_path.to_str().unwrap()]);
        bench_server("logfold-sqlite", &server, &sizes, &mut rows).await;
        drop(server);
        sqlite_direct(dir.path(), &sizes, &mut rows);
    }

    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let schema = format!("bench_{}", nanos % 1_000_000_000_000);
    let server = Server::start(&o.server, &["--database", &o.pg, "--pg-schema", &schema]);
    bench_server("logfold-postgres", &server, &sizes, &mut rows).await;
    drop(server);
    let (pg, direct_schema) = (o.pg.clone(), format!("{schema}_direct"));
    let mut pg_rows = Vec::new();
    let sizes_copy = Sizes { ..sizes };
    let pg_rows = tokio::task::spawn_blocking(move || {
        // The sync client must not run on an async thread.
        let mut c = postgres::Client::connect(&pg, postgres::NoTls).unwrap();
        let _ = c.batch_execute(&format!("DROP SCHEMA {schema} CASCADE"));
        postgres_direct(&pg, &direct_schema, &sizes_copy, &mut pg_rows);
        pg_rows
    })
    .await
    .unwrap();
    rows.extend(pg_rows);

    rows.sort_by(|a, b| a.case.cmp(&b.case));
    print_table(&rows);
    println!(
        "(took {:.1} s{})",
        started.elapsed().as_secs_f64(),
        if o.quick { ", --quick" } else { "" }
    );
    let out = json!({ "results": rows.iter().map(Row::to_json).collect::<Vec<_>>() });
    if let Some(parent) = std::path::Path::new(&o.out).parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(&o.out, serde_json::to_string_pretty(&out).unwrap() + "\n").unwrap();
    println!("wrote {}", o.out);
}
