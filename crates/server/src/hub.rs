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
        if let Some(tx) = logs.get(log) {
            return tx.subscribe();
        }
        // A new entry: first drop those nobody tails any more, so a server whose clients
        // tailed many logs once does not keep a channel for each of them.
        logs.retain(|_, tx| tx.receiver_count() > 0);
        let (tx, rx) = watch::channel(0);
        logs.insert(log.to_owned(), tx);
        rx
    }

    /// How many logs have a channel (tailed now, or since the last sweep).
    pub fn channels(&self) -> usize {
        self.logs.lock().unwrap_or_else(|e| e.into_inner()).len()
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

#[cfg(test)]
mod tests {
    use super::Hub;

    #[test]
    fn logs_no_one_tails_any_more_lose_their_channel() {
        let hub = Hub::default();
        let kept = hub.watch("kept");
        for i in 0..1000 {
            drop(hub.watch(&format!("once-{i}")));
        }
        assert!(hub.channels() <= 2, "{} channels", hub.channels());
        let again = hub.watch("kept");
        hub.advance("kept", 7);
        assert_eq!((*kept.borrow(), *again.borrow()), (7, 7));
    }
}
