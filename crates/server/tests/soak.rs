//! A short soak (examples/soak.rs, which scripts/soak runs for minutes): 20 clients push, pull
//! and tail a real server process on SQLite for 20 s, one tail never reads, and the server is
//! SIGKILLed and restarted at 15 s. Offsets dense, every acknowledged id stored once where its
//! answer said, nothing else stored, every tail caught up.

#[path = "../examples/soak.rs"]
#[allow(dead_code)]
mod soak;

use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_clients_for_twenty_seconds_with_a_sigkill() {
    let report = soak::run(soak::Options {
        server: env!("CARGO_BIN_EXE_logfold-server").into(),
        clients: 20,
        logs: 4,
        duration: Duration::from_secs(20),
        kill_at: Some(0.75),
        ..soak::Options::default()
    })
    .await;
    soak::summary(&report);
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    let j = &report.json;
    assert!(j["events_acknowledged"].as_u64().unwrap() > 0);
    assert_eq!(
        j["events_acknowledged"], j["events_stored"],
        "every acknowledged event is stored, nothing more"
    );
    assert!(
        j["restart"]["events_acknowledged_before_kill"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert_eq!(j["errors"], 0);
}
