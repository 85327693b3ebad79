//! The real binary: two instances over one PostgreSQL, and SIGKILLs during pushes.

mod common;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::http::{client, open, send, Http};
use common::*;
use http_body_util::BodyExt;
use logfold_core::protocol::{BatchResult, PullResponse, PushBatch, PushRequest, PushResponse};
use logfold_core::EventId;

/// A server process, SIGKILLed when dropped.
struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start(args: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_logfold-server"))
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start logfold-server");
        let mut line = String::new();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        out.read_line(&mut line).unwrap();
        // Keep reading so the server never writes into a closed pipe.
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        Server {
            child,
            base: format!("http://{addr}"),
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill(); // SIGKILL on Unix
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn push(
    http: &Http,
    base: &str,
    log: &str,
    batches: Vec<PushBatch>,
) -> Result<PushResponse, String> {
    let body = serde_json::to_vec(&PushRequest {
        protocol: 1,
        batches,
    })
    .unwrap();
    let url = format!("{base}/v1/logs/{log}/push");
    let (status, _, body) = send(
        http,
        "POST",
        &url,
        &[("content-type", "application/json")],
        body,
    )
    .await?;
    if status != 200 {
        return Err(format!(
            "status {status}: {}",
            String::from_utf8_lossy(&body)
        ));
    }
    serde_json::from_slice(&body).map_err(|e| e.to_string())
}

async fn pull_all(http: &Http, base: &str, log: &str) -> PullResponse {
    let mut all: Option<PullResponse> = None;
    let mut after = 0;
    loop {
        let url = format!("{base}/v1/logs/{log}/events?after={after}&limit=10000");
        let (status, _, body) = send(http, "GET", &url, &[], Vec::new()).await.unwrap();
        assert_eq!(status, 200);
        let page: PullResponse = serde_json::from_slice(&body).unwrap();
        let Some(last) = page.events.last() else {
            return all.unwrap_or(page);
        };
        after = last.offset;
        match &mut all {
            Some(a) => a.events.extend(page.events),
            None => all = Some(page),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_tail_on_one_instance_sees_pushes_through_another() {
    let url = pg_url();
    let schema = unique("two");
    let a = Server::start(&["--database", &url, "--pg-schema", &schema]);
    let b = Server::start(&["--database", &url, "--pg-schema", &schema]);
    let http = client();

    let res = open(
        &http,
        &format!("{}/v1/logs/shared/live?after=0", a.base),
        &[],
    )
    .await;
    assert_eq!(res.status(), 200);
    let mut body = res.into_body();
    // Let the tail reach its wait before pushing, so only NOTIFY can wake it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = events("s", 3);
    let r = push(
        &http,
        &b.base,
        "shared",
        vec![batch("via-b", 1, sent.clone())],
    )
    .await
    .unwrap();
    assert_eq!(r.results[0].offsets(), [1, 2, 3]);

    let mut text = String::new();
    let data = with_timeout(10, async {
        loop {
            let frame = body.frame().await.expect("stream ended").unwrap();
            if let Ok(bytes) = frame.into_data() {
                text.push_str(std::str::from_utf8(&bytes).unwrap());
            }
            if let Some(line) = text.lines().find(|l| l.starts_with("data:")) {
                if text.contains("\n\n") {
                    return line["data:".len()..].trim().to_owned();
                }
            }
        }
    })
    .await;
    assert!(text.contains("id: 3") || text.contains("id:3"), "{text}");
    let got: PullResponse = serde_json::from_str(&data).unwrap();
    let ids: Vec<EventId> = got.events.iter().map(|e| e.id).collect();
    assert_eq!(ids, sent.iter().map(|e| e.id).collect::<Vec<_>>());
    assert_eq!(got.events[0].origin, "via-b");
}

/// Cheap randomness for kill timing; the seed is printed so a failure can be replayed.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % below
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_acknowledged_batches_survive_sigkill_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("crash.sqlite3");
    acknowledged_batches_survive_sigkill(&["--database", db.to_str().unwrap()]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_acknowledged_batches_survive_sigkill_exactly_once() {
    let url = pg_url();
    let schema = unique("crash");
    acknowledged_batches_survive_sigkill(&["--database", &url, "--pg-schema", &schema]).await;
}

async fn acknowledged_batches_survive_sigkill(args: &[&str]) {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    println!("kill timing seed {seed}");
    let mut rng = Lcg(seed);
    let http = client();

    let mut sent: Vec<PushBatch> = Vec::new();
    let mut acked: HashMap<u64, Vec<u64>> = HashMap::new();
    let mut in_flight: Option<PushBatch> = None;
    for round in 0..6 {
        let server = Server::start(args);
        let base = server.base.clone();
        let kill_after = Duration::from_millis(50 + rng.next(400));
        let killer = tokio::spawn(async move {
            tokio::time::sleep(kill_after).await;
            let mut server = server;
            server.kill();
        });
        // Push until the server dies; a batch without an answer is retried next round.
        loop {
            let b = in_flight.take().unwrap_or_else(|| {
                let b = batch(
                    "crash-client",
                    sent.len() as u64,
                    events("s", 1 + rng.next(40) as usize),
                );
                sent.push(b.clone());
                b
            });
            match push(&http, &base, "crash", vec![b.clone()]).await {
                Ok(r) => {
                    let offsets = r.results[0].offsets().to_vec();
                    assert_eq!(
                        offsets.len(),
                        b.events.len(),
                        "round {round}: {:?}",
                        r.results[0]
                    );
                    if let Some(before) = acked.insert(b.batch, offsets.clone()) {
                        panic!(
                            "batch {} acknowledged twice: {before:?} then {offsets:?}",
                            b.batch
                        );
                    }
                    if round > 0 && matches!(r.results[0], BatchResult::Duplicate { .. }) {
                        // A retry of a batch committed just before the kill: fine, same offsets.
                    }
                }
                Err(_) => {
                    in_flight = Some(b);
                    break;
                }
            }
        }
        killer.await.unwrap();
    }
    let server = Server::start(args);
    let log = pull_all(&http, &server.base, "crash").await;
    assert!(
        acked.len() > 10,
        "the test should acknowledge a fair number of batches, got {}",
        acked.len()
    );

    let offsets: Vec<u64> = log.events.iter().map(|e| e.offset).collect();
    assert_eq!(
        offsets,
        (1..=log.head).collect::<Vec<_>>(),
        "offsets are dense"
    );
    let by_id: HashMap<EventId, u64> = log.events.iter().map(|e| (e.id, e.offset)).collect();
    assert_eq!(by_id.len(), log.events.len(), "no event is stored twice");
    for b in &sent {
        let stored: Vec<Option<u64>> = b.events.iter().map(|e| by_id.get(&e.id).copied()).collect();
        let present = stored.iter().filter(|o| o.is_some()).count();
        assert!(
            present == 0 || present == b.events.len(),
            "batch {} is partial: {present} of {}",
            b.batch,
            b.events.len()
        );
        if let Some(offsets) = acked.get(&b.batch) {
            let stored: Vec<u64> = stored.into_iter().flatten().collect();
            assert_eq!(
                &stored, offsets,
                "acknowledged batch {} is where its answer said",
                b.batch
            );
        }
    }
    let distinct: HashSet<u64> = acked.keys().copied().collect();
    println!(
        "{} batches sent, {} acknowledged, {} events stored",
        sent.len(),
        distinct.len(),
        log.events.len()
    );
}
