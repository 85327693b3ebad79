//! Wakes live tails when a log may have grown: by this process's pushes, or (PostgreSQL) by a
//! NOTIFY from another server instance.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

/// One watch channel per log that someone is tailing.
#[derive(Debug, Clone, Default)]
pub struct Hub {
    logs: Arc<Mutex<HashMap<String, watch::Sender<u64>>>>,
}

impl Hub {
    /// A receiver that changes whenever `log` may have new events (the value is a head hint).
    pub fn watch(&self, log: &str) -> watch::Receiver<u64> {
        let mut logs = self.logs.lock().unwrap_or_else(|e| e.into_inner());
        logs.entry(log.to_owned())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    /// Says `log` now reaches `head`.
    pub fn advance(&self, log: &str, head: u64) {
        let mut logs = self.logs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = logs.get(log) {
            if tx.receiver_count() == 0 {
                logs.remove(log);
            } else {
                tx.send_modify(|h| *h = (*h).max(head));
            }
        }
    }

    /// Wakes every tail, e.g. after a lost notification connection, so each re-reads.
    pub fn wake_all(&self) {
        let logs = self.logs.lock().unwrap_or_else(|e| e.into_inner());
        for tx in logs.values() {
            tx.send_modify(|_| {});
        }
    }
}
