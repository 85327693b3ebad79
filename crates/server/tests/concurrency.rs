//! Many writers into one log: offsets stay dense and gapless in commit order.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::*;
use logfold_server::Config;

const WRITERS: usize = 8;
const PER_WRITER: usize = 1_000;
const BATCH: usize = 10;

async fn eight_writers_and_a_poller(kind: Kind) {
    let app = Arc::new(test_app(kind, Config::default()));
    let done = Arc::new(AtomicBool::new(false));

    // The poller never may see an offset above one it has not seen: each page starts right
    // after its cursor and has no holes, so a gap filled later would fail here.
    let poller = {
        let (app, done) = (app.clone(), done.clone());
        tokio::spawn(async move {
            let mut cursor = 0u64;
            let mut polls = 0;
            loop {
                let finished = done.load(Ordering::SeqCst);
                let page = app.pull("shared", cursor, 500).await;
                for e in &page.events {
                    assert_eq!(e.offset, cursor + 1, "gap after offset {cursor}");
                    cursor = e.offset;
                }
                assert!(page.head >= cursor);
                polls += 1;
                if finished && page.events.is_empty() {
                    return (cursor, polls);
                }
            }
        })
    };

    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let app = app.clone();
            tokio::spawn(async move {
                let client = format!("writer-{w}");
                let mut offsets = Vec::new();
                for n in 0..PER_WRITER / BATCH {
                    let r = app
                        .push(
                            "shared",
                            vec![batch(&client, n as u64, events(&format!("s{w}"), BATCH))],
                        )
                        .await;
                    let got = r.results[0].offsets().to_vec();
                    assert_eq!(got.len(), BATCH, "{:?}", r.results[0]);
                    assert!(
                        got.windows(2).all(|p| p[1] == p[0] + 1),
                        "a batch's offsets are consecutive"
                    );
                    offsets.extend(got);
                }
                offsets
            })
        })
        .collect();
    let mut all = Vec::new();
    for w in writers {
        all.extend(w.await.unwrap());
    }
    done.store(true, Ordering::SeqCst);
    let (seen, polls) = with_timeout(60, poller).await.unwrap();

    all.sort_unstable();
    let total = (WRITERS * PER_WRITER) as u64;
    assert_eq!(
        all,
        (1..=total).collect::<Vec<_>>(),
        "offsets are exactly 1..{total}"
    );
    assert_eq!(seen, total);
    assert!(polls > 1);
    let stored = app.all("shared").await;
    let ids: HashSet<_> = stored.iter().map(|e| e.id).collect();
    assert_eq!(ids.len(), stored.len(), "no event is stored twice");
    // Each writer's stream got versions 1..=PER_WRITER in its own order.
    for w in 0..WRITERS {
        let versions: Vec<u64> = stored
            .iter()
            .filter(|e| e.stream == format!("s{w}"))
            .map(|e| e.version)
            .collect();
        assert_eq!(versions, (1..=PER_WRITER as u64).collect::<Vec<_>>());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_eight_concurrent_writers() {
    eight_writers_and_a_poller(Kind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_eight_concurrent_writers() {
    eight_writers_and_a_poller(Kind::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_eight_concurrent_writers() {
    eight_writers_and_a_poller(Kind::Memory).await;
}
