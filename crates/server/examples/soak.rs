//! Soak test for the sync server: N simulated clients push, pull (JSON and segments) and tail
//! live over loopback against a real `logfold-server` process for a while, one extra client
//! opens a live tail and never reads it, and the server is SIGKILLed and restarted mid-load.
//! Samples the server's RSS from /proc, then checks every log: offsets dense, every
//! acknowledged id stored exactly once at the offset its answer gave, nothing else stored,
//! every live tail caught up. Writes a JSON report and prints a summary; exits 1 on a failure.
//!
//! `cargo run --profile server -p logfold-server --example soak -- [--clients N]
//!  [--minutes M] [--pg URL] [--server PATH] [--out PATH]` (scripts/soak does all of it).

#[path = "../tests/common/http.rs"]
mod http;

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use http::{client, send, Http};
use http_body_util::BodyExt;
use logfold_core::protocol::{
    BatchResult, PullResponse, PushBatch, PushEvent, PushRequest, PushResponse,
    SEGMENT_CONTENT_TYPE,
};
use logfold_core::segment::Segment;
use logfold_core::EventId;
use serde_json::json;
use tokio::io::AsyncWriteExt;

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// The `logfold-server` binary.
    pub server: String,
    /// Simulated clients; every tenth also keeps a live tail open.
    pub clients: usize,
    /// Logs the clients share (client i writes log i % logs).
    pub logs: usize,
    /// How long the clients push.
    pub duration: Duration,
    /// PostgreSQL settings; SQLite in a temporary directory when `None`.
    pub pg: Option<String>,
    /// Mean pause between a client's pushes.
    pub think: Duration,
    /// When to SIGKILL and restart the server, as a fraction of `duration`; `None`: never.
    pub kill_at: Option<f64>,
    /// Where to write the report.
    pub out: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            server: "target/server/logfold-server".into(),
            clients: 100,
            logs: 10,
            duration: Duration::from_secs(600),
            pg: None,
            think: Duration::from_millis(100),
            kill_at: Some(0.75),
            out: None,
        }
    }
}

/// A server process, SIGKILLed when dropped.
struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start(bin: &str, args: &[String]) -> Server {
        let mut child = Command::new(bin)
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start {bin}: {e}"));
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        Server {
            child,
            base: format!("http://{addr}"),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn port(&self) -> u16 {
        self.base.rsplit(':').next().unwrap().parse().unwrap()
    }

    fn kill(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Counters every client task adds to.
#[derive(Default)]
struct Stats {
    batches: AtomicU64,
    events: AtomicU64,
    retried_duplicates: AtomicU64,
    busy: AtomicU64,
    pulls: AtomicU64,
    pulled_events: AtomicU64,
    tail_messages: AtomicU64,
    tail_events: AtomicU64,
    tail_reconnects: AtomicU64,
    /// Transport failures while the server was down for the restart (expected; retried).
    restart_failures: AtomicU64,
    errors: AtomicU64,
    error_samples: Mutex<Vec<String>>,
}

impl Stats {
    fn error(&self, what: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut s = self.error_samples.lock().unwrap();
        if s.len() < 20 {
            eprintln!("soak: error: {what}");
            s.push(what);
        }
    }
}

/// Where the clients find the server, and whether it is down on purpose.
struct Target {
    base: RwLock<String>,
    down: AtomicBool,
}

impl Target {
    fn base(&self) -> String {
        self.base.read().unwrap().clone()
    }

    /// A failed request: expected while the server restarts, an error otherwise.
    fn failed(&self, stats: &Stats, what: String) {
        if self.down.load(Ordering::SeqCst) {
            stats.restart_failures.fetch_add(1, Ordering::Relaxed);
        } else {
            stats.error(what);
        }
    }
}

/// Cheap randomness.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % below.max(1)
    }
}

/// What one client had acknowledged: its log and (id, offset) pairs.
struct Acked {
    log: String,
    events: Vec<(EventId, u64)>,
}

fn event_id(run: u32, client: usize, seq: u64) -> EventId {
    // The version nibble says 7 like the UUIDv7 text clients make.
    EventId((run as u128) << 96 | 7 << 76 | (client as u128) << 40 | seq as u128)
}

#[allow(clippy::too_many_arguments)]
async fn run_client(
    i: usize,
    run: u32,
    log: String,
    until: Instant,
    think: Duration,
    http: Http,
    target: Arc<Target>,
    stats: Arc<Stats>,
) -> Acked {
    let mut rng = Lcg(run as u64 ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let client_id = format!("soak-client-{i}");
    let mut acked = Vec::new();
    let mut seq = 0u64;
    let mut cursor = 0u64;
    let mut number = 0u64;
    let think_ms = think.as_millis() as u64;
    while Instant::now() < until {
        let n = 1 + rng.next(10) as usize;
        let events: Vec<PushEvent> = (0..n)
            .map(|k| {
                seq += 1;
                PushEvent {
                    id: event_id(run, i, seq),
                    stream: format!("{client_id}-s{}", k % 3),
                    event_type: "ItemAdded".into(),
                    data: format!(
                        "{{\"client\":{i},\"seq\":{seq},\"title\":\"Buy milk and bread\",\"note\":\"{}\"}}",
                        "x".repeat(60)
                    ),
                    meta: None,
                    time: 1_700_000_000_000 + seq,
                    version: None,
                }
            })
            .collect();
        let ids: Vec<EventId> = events.iter().map(|e| e.id).collect();
        let body = serde_json::to_vec(&PushRequest {
            protocol: 1,
            batches: vec![PushBatch {
                client: client_id.clone(),
                epoch: 1,
                batch: number,
                events,
                expected: BTreeMap::new(),
            }],
        })
        .unwrap();
        number += 1;
        // Retry until answered: a push the kill cut off comes back `duplicate` if it committed.
        let mut retried = false;
        loop {
            let url = format!("{}/v1/logs/{log}/push", target.base());
            match send(
                &http,
                "POST",
                &url,
                &[("content-type", "application/json")],
                body.clone(),
            )
            .await
            {
                Ok((200, _, answer)) => {
                    let r: PushResponse = match serde_json::from_slice(&answer) {
                        Ok(r) => r,
                        Err(e) => {
                            stats.error(format!("push answer is not JSON: {e}"));
                            break;
                        }
                    };
                    match &r.results[..] {
                        [res @ (BatchResult::Accepted { .. } | BatchResult::Duplicate { .. })]
                            if res.offsets().len() == n =>
                        {
                            if matches!(res, BatchResult::Duplicate { .. }) {
                                if !retried {
                                    stats.error(format!(
                                        "a first push came back duplicate: {res:?}"
                                    ));
                                }
                                stats.retried_duplicates.fetch_add(1, Ordering::Relaxed);
                            }
                            acked.extend(ids.iter().copied().zip(res.offsets().iter().copied()));
                            stats.batches.fetch_add(1, Ordering::Relaxed);
                            stats.events.fetch_add(n as u64, Ordering::Relaxed);
                        }
                        other => stats.error(format!("push result {other:?}")),
                    }
                    break;
                }
                Ok((503, _, _)) => {
                    stats.busy.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Ok((status, _, answer)) => {
                    stats.error(format!(
                        "push status {status}: {}",
                        String::from_utf8_lossy(&answer)
                    ));
                    break;
                }
                Err(e) => {
                    target.failed(&stats, format!("push: {e}"));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            retried = true;
        }
        // Every fifth push, catch up on the log, alternating JSON and binary segments.
        if number.is_multiple_of(5) {
            cursor = pull_page(
                &http,
                &target,
                &stats,
                &log,
                cursor,
                number.is_multiple_of(10),
            )
            .await;
        }
        tokio::time::sleep(Duration::from_millis(rng.next(2 * think_ms + 1))).await;
    }
    Acked { log, events: acked }
}

/// One pull after `cursor`; checks the page starts right after it with no gaps.
async fn pull_page(
    http: &Http,
    target: &Target,
    stats: &Stats,
    log: &str,
    cursor: u64,
    segment: bool,
) -> u64 {
    let url = format!(
        "{}/v1/logs/{log}/events?after={cursor}&limit=1000",
        target.base()
    );
    let accept: &[(&str, &str)] = if segment {
        &[("accept", SEGMENT_CONTENT_TYPE)]
    } else {
        &[]
    };
    let offsets: Vec<u64> = match send(http, "GET", &url, accept, Vec::new()).await {
        Ok((200, _, body)) if segment => {
            if body.is_empty() {
                Vec::new()
            } else {
                match Segment::parse(&body).and_then(|s| {
                    s.decode()
                        .map(|es| es.iter().map(|e| e.offset.unwrap_or(0)).collect())
                }) {
                    Ok(o) => o,
                    Err(e) => {
                        stats.error(format!("segment: {e:?}"));
                        return cursor;
                    }
                }
            }
        }
        Ok((200, _, body)) => match serde_json::from_slice::<PullResponse>(&body) {
            Ok(p) => p.events.iter().map(|e| e.offset).collect(),
            Err(e) => {
                stats.error(format!("pull answer: {e}"));
                return cursor;
            }
        },
        Ok((status, _, body)) => {
            stats.error(format!(
                "pull status {status}: {}",
                String::from_utf8_lossy(&body)
            ));
            return cursor;
        }
        Err(e) => {
            target.failed(stats, format!("pull: {e}"));
            return cursor;
        }
    };
    stats.pulls.fetch_add(1, Ordering::Relaxed);
    stats
        .pulled_events
        .fetch_add(offsets.len() as u64, Ordering::Relaxed);
    let mut at = cursor;
    for o in offsets {
        if o != at + 1 {
            stats.error(format!(
                "pull of {log} after {cursor}: offset {o} after {at}"
            ));
            return at;
        }
        at = o;
    }
    at
}

/// A live tail that reads everything and reconnects with `Last-Event-ID`; its cursor is
/// published so the end can wait for it to reach the head.
async fn run_tail(
    http: Http,
    log: String,
    target: Arc<Target>,
    stats: Arc<Stats>,
    cursor: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::SeqCst) {
        let at = cursor.load(Ordering::SeqCst);
        let url = format!("{}/v1/logs/{log}/live?after=0", target.base());
        let req = hyper::Request::get(&url)
            .header("last-event-id", at.to_string())
            .body(http_body_util::Full::new(hyper::body::Bytes::new()))
            .unwrap();
        let res = match tokio::time::timeout(Duration::from_secs(10), http.request(req)).await {
            Ok(Ok(r)) if r.status() == 200 => r,
            Ok(Ok(r)) => {
                stats.error(format!("live status {}", r.status()));
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            Ok(Err(e)) => {
                target.failed(&stats, format!("live: {e}"));
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            Err(_) => {
                target.failed(&stats, "live: no answer in 10 s".into());
                continue;
            }
        };
        let mut body = res.into_body();
        let mut text = String::new();
        loop {
            let frame = tokio::select! {
                f = body.frame() => f,
                _ = tokio::time::sleep(Duration::from_millis(500)) => {
                    if stop.load(Ordering::SeqCst) { return; }
                    continue;
                }
            };
            let bytes = match frame {
                Some(Ok(f)) => match f.into_data() {
                    Ok(b) => b,
                    Err(_) => continue,
                },
                Some(Err(e)) => {
                    target.failed(&stats, format!("live stream: {e}"));
                    break;
                }
                None => {
                    target.failed(&stats, "live stream ended".into());
                    break;
                }
            };
            text.push_str(&String::from_utf8_lossy(&bytes));
            while let Some(end) = text.find("\n\n") {
                let message: String = text.drain(..end + 2).collect();
                let Some(data) = message.lines().find_map(|l| l.strip_prefix("data:")) else {
                    continue; // a keep-alive comment
                };
                let page: PullResponse = match serde_json::from_str(data.trim()) {
                    Ok(p) => p,
                    Err(e) => {
                        stats.error(format!("live data: {e}"));
                        continue;
                    }
                };
                stats.tail_messages.fetch_add(1, Ordering::Relaxed);
                stats
                    .tail_events
                    .fetch_add(page.events.len() as u64, Ordering::Relaxed);
                let mut at = cursor.load(Ordering::SeqCst);
                for e in &page.events {
                    if e.offset != at + 1 {
                        stats.error(format!("live {log}: offset {} after {at}", e.offset));
                    }
                    at = e.offset;
                }
                cursor.store(at, Ordering::SeqCst);
            }
        }
        stats.tail_reconnects.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A live tail that sends its request and never reads a byte of the answer.
async fn open_slow_tail(base: &str, log: &str) -> tokio::net::TcpStream {
    let addr = base.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET /v1/logs/{log}/live?after=0 HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    s
}

/// Kernel queue bytes of a loopback connection from /proc/net/tcp: the receiver's unread
/// `rx_queue` on `client_port`, and the server's unsent `tx_queue` toward it.
fn socket_queues(client_port: u16, server_port: u16) -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let port = |addr: &str| u16::from_str_radix(addr.rsplit(':').next().unwrap_or(""), 16).ok();
    let (mut rx, mut tx) = (0, 0);
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 5 {
            continue;
        }
        let (local, remote) = (port(f[1]), port(f[2]));
        let (t, r) = f[4].split_once(':').unwrap_or(("0", "0"));
        let (t, r) = (
            u64::from_str_radix(t, 16).unwrap_or(0),
            u64::from_str_radix(r, 16).unwrap_or(0),
        );
        if local == Some(client_port) && remote == Some(server_port) {
            rx = r;
        }
        if local == Some(server_port) && remote == Some(client_port) {
            tx = t;
        }
    }
    (rx, tx)
}

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[derive(Clone, Copy)]
struct Sample {
    t: f64,
    process: u8,
    rss_kb: u64,
    events: u64,
    slow_rx: u64,
    slow_tx: u64,
}

/// Everything the soak found; `failures` empty means it passed.
#[derive(Debug)]
pub struct Report {
    /// The JSON written to `--out`.
    pub json: serde_json::Value,
    /// What went wrong, for the exit status and the test.
    pub failures: Vec<String>,
}

/// Runs the soak.
pub async fn run(o: Options) -> Report {
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as u32;
    let dir = tempfile::tempdir().unwrap();
    let (store, args): (&str, Vec<String>) = match &o.pg {
        Some(url) => (
            "postgres",
            vec![
                "--database".into(),
                url.clone(),
                "--pg-schema".into(),
                format!("soak_{run}"),
            ],
        ),
        None => (
            "sqlite",
            vec![
                "--database".into(),
                dir.path().join("soak.sqlite3").display().to_string(),
            ],
        ),
    };
    let mut server = Server::start(&o.server, &args);
    let target = Arc::new(Target {
        base: RwLock::new(server.base.clone()),
        down: AtomicBool::new(false),
    });
    let stats = Arc::new(Stats::default());
    let http = client();
    let started = Instant::now();
    let until = started + o.duration;
    let logs: Vec<String> = (0..o.logs).map(|l| format!("soak-{l}")).collect();

    let clients: Vec<_> = (0..o.clients)
        .map(|i| {
            tokio::spawn(run_client(
                i,
                run,
                logs[i % o.logs].clone(),
                until,
                o.think,
                http.clone(),
                target.clone(),
                stats.clone(),
            ))
        })
        .collect();
    let stop_tails = Arc::new(AtomicBool::new(false));
    let tails: Vec<_> = (0..o.clients)
        .step_by(10)
        .map(|i| {
            let cursor = Arc::new(AtomicU64::new(0));
            let task = tokio::spawn(run_tail(
                http.clone(),
                logs[i % o.logs].clone(),
                target.clone(),
                stats.clone(),
                cursor.clone(),
                stop_tails.clone(),
            ));
            (logs[i % o.logs].clone(), cursor, task)
        })
        .collect();

    // The slow reader tails the first log, which grows all the time, from offset 0.
    let mut slow = open_slow_tail(&server.base, &logs[0]).await;
    let mut slow_port = slow.local_addr().unwrap().port();
    let mut samples: Vec<Sample> = Vec::new();
    let mut process = 1u8;
    let kill_at = o.kill_at.map(|f| started + o.duration.mul_f64(f));
    let mut restart = json!(null);
    let mut failures = Vec::new();
    let tick = Duration::from_millis(1000);
    while Instant::now() < until {
        tokio::time::sleep(tick).await;
        let (slow_rx, slow_tx) = socket_queues(slow_port, server.port());
        samples.push(Sample {
            t: started.elapsed().as_secs_f64(),
            process,
            rss_kb: rss_kb(server.pid()),
            events: stats.events.load(Ordering::Relaxed),
            slow_rx,
            slow_tx,
        });
        if kill_at.is_some_and(|k| Instant::now() >= k) && process == 1 {
            let acked_before = stats.events.load(Ordering::SeqCst);
            target.down.store(true, Ordering::SeqCst);
            let killed_at = started.elapsed().as_secs_f64();
            server.kill();
            let down = Instant::now();
            server = Server::start(&o.server, &args);
            *target.base.write().unwrap() = server.base.clone();
            // Up once it answers; then failures count as errors again.
            let health = format!("{}/healthz", server.base);
            while !matches!(
                send(&http, "GET", &health, &[], Vec::new()).await,
                Ok((200, ..))
            ) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let down_ms = down.elapsed().as_secs_f64() * 1000.0;
            // Let requests cut off by the kill fail and retry before errors count again.
            tokio::time::sleep(Duration::from_millis(500)).await;
            target.down.store(false, Ordering::SeqCst);
            process = 2;
            slow = open_slow_tail(&server.base, &logs[0]).await;
            slow_port = slow.local_addr().unwrap().port();
            restart = json!({
                "killed_at_s": round(killed_at),
                "restart_ms": round(down_ms),
                "events_acknowledged_before_kill": acked_before,
            });
            println!("soak: SIGKILLed at {killed_at:.0} s with {acked_before} events acknowledged; up again in {down_ms:.0} ms");
        }
        if samples.len().is_multiple_of(30) {
            let s = samples.last().unwrap();
            println!(
                "soak: {:>5.0} s  {} events  rss {} kB  slow tail queued {} B  errors {}",
                s.t,
                s.events,
                s.rss_kb,
                s.slow_rx + s.slow_tx,
                stats.errors.load(Ordering::Relaxed)
            );
        }
    }
    let pushing = started.elapsed().as_secs_f64();
    let mut acked: HashMap<String, HashMap<EventId, u64>> = HashMap::new();
    for c in clients {
        let a = c.await.unwrap();
        let log = acked.entry(a.log).or_default();
        for (id, offset) in a.events {
            if log.insert(id, offset).is_some() {
                failures.push(format!("id {id} acknowledged twice"));
            }
        }
    }
    // The slow tail's server side must still hold, not have grown with the log.
    let slow_end = socket_queues(slow_port, server.port());
    let rss_before_check = rss_kb(server.pid());

    // Every tail catches up with its log's head.
    let mut heads = HashMap::new();
    for log in &logs {
        let url = format!("{}/v1/logs/{log}/events?after=0&limit=1", target.base());
        let (_, _, body) = send(&http, "GET", &url, &[], Vec::new()).await.unwrap();
        let p: PullResponse = serde_json::from_slice(&body).unwrap();
        heads.insert(log.clone(), p.head);
    }
    let wait = Instant::now();
    for (log, cursor, _) in &tails {
        while cursor.load(Ordering::SeqCst) < heads[log] && wait.elapsed() < Duration::from_secs(60)
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let at = cursor.load(Ordering::SeqCst);
        if at != heads[log] {
            failures.push(format!(
                "a live tail of {log} is at {at}, the head {}",
                heads[log]
            ));
        }
    }
    stop_tails.store(true, Ordering::SeqCst);
    for (_, _, t) in tails {
        let _ = t.await;
    }

    // Read every log back whole.
    let mut stored_total = 0u64;
    for log in &logs {
        let mine = acked.remove(log).unwrap_or_default();
        let mut after = 0u64;
        let mut seen: HashMap<EventId, u64> = HashMap::new();
        let mut head;
        loop {
            let url = format!(
                "{}/v1/logs/{log}/events?after={after}&limit=10000",
                target.base()
            );
            let (status, _, body) = send(&http, "GET", &url, &[], Vec::new()).await.unwrap();
            assert_eq!(status, 200);
            let p: PullResponse = serde_json::from_slice(&body).unwrap();
            head = p.head;
            if p.events.is_empty() {
                break;
            }
            for e in &p.events {
                if e.offset != after + 1 {
                    failures.push(format!("{log}: offset {} after {after}", e.offset));
                }
                after = e.offset;
                if seen.insert(e.id, e.offset).is_some() {
                    failures.push(format!("{log}: id {} stored twice", e.id));
                }
            }
        }
        if after != head {
            failures.push(format!("{log}: read to {after}, head {head}"));
        }
        stored_total += seen.len() as u64;
        let lost = mine.iter().filter(|(id, _)| !seen.contains_key(id)).count();
        let moved = mine
            .iter()
            .filter(|(id, o)| seen.get(id).is_some_and(|s| s != *o))
            .count();
        let unacked = seen.keys().filter(|id| !mine.contains_key(id)).count();
        if lost + moved + unacked > 0 {
            failures.push(format!(
                "{log}: {lost} acknowledged events lost, {moved} at another offset than acknowledged, {unacked} stored but never acknowledged"
            ));
        }
    }
    let errors = stats.errors.load(Ordering::Relaxed);
    if errors > 0 {
        failures.push(format!("{errors} request errors"));
    }
    let events = stats.events.load(Ordering::Relaxed);
    if events != stored_total {
        failures.push(format!(
            "{events} events acknowledged, {stored_total} stored"
        ));
    }

    let rss = |p: u8| {
        let s: Vec<u64> = samples
            .iter()
            .filter(|s| s.process == p)
            .map(|s| s.rss_kb)
            .collect();
        match (s.first(), s.last()) {
            (Some(first), Some(last)) => json!({
                "first_kb": first,
                "after_10_percent_kb": s[s.len() / 10],
                "peak_kb": s.iter().max(),
                "last_kb": last,
            }),
            _ => json!(null),
        }
    };
    let slow_max = samples
        .iter()
        .map(|s| s.slow_rx + s.slow_tx)
        .max()
        .unwrap_or(0);
    let json = json!({
        "store": store,
        "clients": o.clients,
        "live_tails": o.clients.div_ceil(10),
        "logs": o.logs,
        "seconds": round(pushing),
        "events_acknowledged": events,
        "batches_acknowledged": stats.batches.load(Ordering::Relaxed),
        "events_per_s": (events as f64 / pushing).round(),
        "events_stored": stored_total,
        "pulls": stats.pulls.load(Ordering::Relaxed),
        "pulled_events": stats.pulled_events.load(Ordering::Relaxed),
        "live_messages": stats.tail_messages.load(Ordering::Relaxed),
        "live_events": stats.tail_events.load(Ordering::Relaxed),
        "live_reconnects": stats.tail_reconnects.load(Ordering::Relaxed),
        "busy_503_retried": stats.busy.load(Ordering::Relaxed),
        "retried_pushes_answered_duplicate": stats.retried_duplicates.load(Ordering::Relaxed),
        "failures_while_restarting": stats.restart_failures.load(Ordering::Relaxed),
        "errors": errors,
        "error_samples": *stats.error_samples.lock().unwrap(),
        "restart": restart,
        "rss_first_process": rss(1),
        "rss_second_process": rss(2),
        "rss_after_load_kb": rss_before_check,
        "slow_tail": {
            "max_kernel_queued_bytes": slow_max,
            "end_client_unread_bytes": slow_end.0,
            "end_server_unsent_bytes": slow_end.1,
        },
        "failures": failures,
        "samples": samples.iter().step_by(5).map(|s| json!([round(s.t), s.process, s.rss_kb, s.events, s.slow_rx + s.slow_tx])).collect::<Vec<_>>(),
        "samples_columns": ["seconds", "process", "rss_kb", "events_acknowledged", "slow_tail_queued_bytes"],
    });
    drop(slow);
    drop(server);
    if let Some(out) = &o.out {
        if let Some(parent) = std::path::Path::new(out).parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        std::fs::write(out, serde_json::to_string_pretty(&json).unwrap()).unwrap();
    }
    Report { json, failures }
}

fn round(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// Prints the report's figures.
pub fn summary(r: &Report) {
    let j = &r.json;
    println!(
        "soak ({}): {} clients, {} live tails + 1 that never reads, {} logs, {} s",
        j["store"], j["clients"], j["live_tails"], j["logs"], j["seconds"]
    );
    println!(
        "  {} events in {} batches acknowledged ({} events/s), {} stored; {} pulls, {} live messages",
        j["events_acknowledged"], j["batches_acknowledged"], j["events_per_s"], j["events_stored"],
        j["pulls"], j["live_messages"]
    );
    println!(
        "  errors {}, 503 retried {}, failures while restarting {}, retries answered duplicate {}",
        j["errors"],
        j["busy_503_retried"],
        j["failures_while_restarting"],
        j["retried_pushes_answered_duplicate"]
    );
    println!("  restart: {}", j["restart"]);
    println!("  rss before the kill: {}", j["rss_first_process"]);
    println!("  rss after the restart: {}", j["rss_second_process"]);
    println!("  slow tail: {}", j["slow_tail"]);
    if r.failures.is_empty() {
        println!("  PASS: offsets dense, every acknowledged id stored once at its offset, tails caught up");
    } else {
        for f in &r.failures {
            println!("  FAIL: {f}");
        }
    }
}

#[allow(dead_code)]
#[tokio::main]
async fn main() {
    let mut o = Options::default();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .unwrap_or_else(|| panic!("{name} needs a value"))
        };
        match a.as_str() {
            "--clients" => o.clients = value("--clients").parse().expect("--clients N"),
            "--logs" => o.logs = value("--logs").parse().expect("--logs N"),
            "--minutes" => {
                o.duration = Duration::from_secs_f64(
                    value("--minutes").parse::<f64>().expect("--minutes M") * 60.0,
                )
            }
            "--think-ms" => {
                o.think = Duration::from_millis(value("--think-ms").parse().expect("--think-ms"))
            }
            "--no-kill" => o.kill_at = None,
            "--pg" => o.pg = Some(value("--pg")),
            "--server" => o.server = value("--server"),
            "--out" => o.out = Some(value("--out")),
            other => panic!("unknown argument {other}"),
        }
    }
    let report = run(o).await;
    summary(&report);
    if !report.failures.is_empty() {
        std::process::exit(1);
    }
}
