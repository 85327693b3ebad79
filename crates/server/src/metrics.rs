//! Counters for `GET /metrics`, in the Prometheus text format.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the push latency histogram, in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// The server's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    auth_failures: Mutex<BTreeMap<u16, u64>>,
    events_appended: AtomicU64,
    push_buckets: [AtomicU64; BUCKETS.len()],
    push_count: AtomicU64,
    push_micros: AtomicU64,
    tails_open: AtomicU64,
    tails_refused: Mutex<BTreeMap<&'static str, u64>>,
    live_bytes: AtomicU64,
    connections_closed: Mutex<BTreeMap<&'static str, u64>>,
    snapshot_uploads: Mutex<BTreeMap<&'static str, u64>>,
    snapshot_downloads: Mutex<BTreeMap<&'static str, u64>>,
}

/// The scopes a live tail can be refused at: the server's limit or the log's.
const TAIL_SCOPES: [&str; 2] = ["server", "log"];

/// Why the server closed a connection on its own.
const CLOSE_REASONS: [&str; 2] = ["header_timeout", "stalled"];

/// What became of a snapshot set upload: stored, the stored one kept, or refused (400, 409,
/// 408, 413; not counted when authorization refused it).
const UPLOAD_RESULTS: [&str; 3] = ["stored", "kept", "refused"];

/// What a snapshot set download found.
const DOWNLOAD_RESULTS: [&str; 2] = ["found", "missing"];

impl Metrics {
    /// Counts a finished request by route pattern and status.
    pub fn request(&self, route: &str, status: u16) {
        let mut map = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        *map.entry((route.to_owned(), status)).or_insert(0) += 1;
    }

    /// Counts a request refused by authorization (401 no or unknown token, 403 out of scope
    /// or a foreign origin), so guessing tokens shows as a rate.
    pub fn auth_failure(&self, status: u16) {
        let mut map = self.auth_failures.lock().unwrap_or_else(|e| e.into_inner());
        *map.entry(status).or_insert(0) += 1;
    }

    /// Counts a committed push: how long it took and how many events it appended.
    pub fn push(&self, took: Duration, appended: u64) {
        self.events_appended.fetch_add(appended, Ordering::Relaxed);
        let secs = took.as_secs_f64();
        for (bound, count) in BUCKETS.iter().zip(&self.push_buckets) {
            if secs <= *bound {
                count.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.push_count.fetch_add(1, Ordering::Relaxed);
        self.push_micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    /// Sets how many live tails are open now.
    pub fn tails_open(&self, open: usize) {
        self.tails_open.store(open as u64, Ordering::Relaxed);
    }

    /// Counts a live tail refused because `scope` (`server` or `log`) has as many as it may.
    pub fn tail_refused(&self, scope: &'static str) {
        let mut map = self.tails_refused.lock().unwrap_or_else(|e| e.into_inner());
        *map.entry(scope).or_insert(0) += 1;
    }

    /// Counts the bytes of a live message handed to its connection.
    pub fn live_bytes(&self, bytes: usize) {
        self.live_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Counts a connection the server closed: `header_timeout` (its request head did not
    /// arrive in time) or `stalled` (it took nothing sent to it in time).
    pub fn connection_closed(&self, reason: &'static str) {
        let mut map = self
            .connections_closed
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        *map.entry(reason).or_insert(0) += 1;
    }

    /// Counts a snapshot set upload by result: `stored`, `kept` or `refused`.
    pub fn snapshot_upload(&self, result: &'static str) {
        let mut map = self
            .snapshot_uploads
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        *map.entry(result).or_insert(0) += 1;
    }

    /// Counts a snapshot set download by result: `found` or `missing`.
    pub fn snapshot_download(&self, result: &'static str) {
        let mut map = self
            .snapshot_downloads
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        *map.entry(result).or_insert(0) += 1;
    }

    /// Live tails open now.
    pub fn live_tails(&self) -> u64 {
        self.tails_open.load(Ordering::Relaxed)
    }

    /// Bytes of live messages handed to connections since start.
    pub fn live_bytes_sent(&self) -> u64 {
        self.live_bytes.load(Ordering::Relaxed)
    }

    /// Events appended since start.
    pub fn events_appended(&self) -> u64 {
        self.events_appended.load(Ordering::Relaxed)
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP logfold_requests_total HTTP requests by route and status.\n");
        out.push_str("# TYPE logfold_requests_total counter\n");
        for ((route, status), n) in self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "logfold_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        out.push_str(
            "# HELP logfold_auth_failures_total Requests refused by authorization, by status.\n",
        );
        out.push_str("# TYPE logfold_auth_failures_total counter\n");
        for status in [401, 403] {
            let n = self
                .auth_failures
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&status)
                .copied()
                .unwrap_or(0);
            let _ = writeln!(
                out,
                "logfold_auth_failures_total{{status=\"{status}\"}} {n}"
            );
        }
        out.push_str("# HELP logfold_events_appended_total Events written by accepted batches.\n");
        out.push_str("# TYPE logfold_events_appended_total counter\n");
        let _ = writeln!(
            out,
            "logfold_events_appended_total {}",
            self.events_appended()
        );
        out.push_str("# HELP logfold_live_tails Live tails open now.\n");
        out.push_str("# TYPE logfold_live_tails gauge\n");
        let _ = writeln!(out, "logfold_live_tails {}", self.live_tails());
        out.push_str("# HELP logfold_live_tails_refused_total Live tails refused with 503 at the server's or the log's limit.\n");
        out.push_str("# TYPE logfold_live_tails_refused_total counter\n");
        let refused = self.tails_refused.lock().unwrap_or_else(|e| e.into_inner());
        for scope in TAIL_SCOPES {
            let n = refused.get(scope).copied().unwrap_or(0);
            let _ = writeln!(
                out,
                "logfold_live_tails_refused_total{{scope=\"{scope}\"}} {n}"
            );
        }
        drop(refused);
        out.push_str(
            "# HELP logfold_live_bytes_total Bytes of live messages handed to connections.\n",
        );
        out.push_str("# TYPE logfold_live_bytes_total counter\n");
        let _ = writeln!(out, "logfold_live_bytes_total {}", self.live_bytes_sent());
        out.push_str("# HELP logfold_connections_closed_total Connections the server closed: request head not in time, or the client took nothing sent to it in time.\n");
        out.push_str("# TYPE logfold_connections_closed_total counter\n");
        let closed = self
            .connections_closed
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for reason in CLOSE_REASONS {
            let n = closed.get(reason).copied().unwrap_or(0);
            let _ = writeln!(
                out,
                "logfold_connections_closed_total{{reason=\"{reason}\"}} {n}"
            );
        }
        drop(closed);
        out.push_str("# HELP logfold_snapshot_uploads_total Snapshot set uploads: stored, the stored set kept (it is as new or newer), or refused.\n");
        out.push_str("# TYPE logfold_snapshot_uploads_total counter\n");
        let uploads = self
            .snapshot_uploads
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for result in UPLOAD_RESULTS {
            let n = uploads.get(result).copied().unwrap_or(0);
            let _ = writeln!(
                out,
                "logfold_snapshot_uploads_total{{result=\"{result}\"}} {n}"
            );
        }
        drop(uploads);
        out.push_str("# HELP logfold_snapshot_downloads_total Snapshot set downloads: found, or none stored.\n");
        out.push_str("# TYPE logfold_snapshot_downloads_total counter\n");
        let downloads = self
            .snapshot_downloads
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for result in DOWNLOAD_RESULTS {
            let n = downloads.get(result).copied().unwrap_or(0);
            let _ = writeln!(
                out,
                "logfold_snapshot_downloads_total{{result=\"{result}\"}} {n}"
            );
        }
        drop(downloads);
        out.push_str("# HELP logfold_push_seconds Time to commit a push request.\n");
        out.push_str("# TYPE logfold_push_seconds histogram\n");
        for (bound, count) in BUCKETS.iter().zip(&self.push_buckets) {
            let _ = writeln!(
                out,
                "logfold_push_seconds_bucket{{le=\"{bound}\"}} {}",
                count.load(Ordering::Relaxed)
            );
        }
        let count = self.push_count.load(Ordering::Relaxed);
        let _ = writeln!(out, "logfold_push_seconds_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.push_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "logfold_push_seconds_sum {sum}");
        let _ = writeln!(out, "logfold_push_seconds_count {count}");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counts_and_cumulative_buckets() {
        let m = Metrics::default();
        m.request("/v1/logs/{log}/push", 200);
        m.request("/v1/logs/{log}/push", 200);
        m.push(Duration::from_millis(3), 10);
        let text = m.render();
        assert!(
            text.contains("logfold_requests_total{route=\"/v1/logs/{log}/push\",status=\"200\"} 2")
        );
        assert!(text.contains("logfold_events_appended_total 10"));
        assert!(text.contains("logfold_push_seconds_bucket{le=\"0.0025\"} 0"));
        assert!(text.contains("logfold_push_seconds_bucket{le=\"0.005\"} 1"));
        assert!(text.contains("logfold_push_seconds_count 1"));
    }
}
