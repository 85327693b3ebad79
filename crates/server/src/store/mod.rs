//! The server's storage: the same commit rules (`logfold_core::commit`) over memory, SQLite or
//! PostgreSQL, each push in one transaction.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use logfold_core::commit::{claim_clients, commit_all};
use logfold_core::protocol::snapshots::SnapshotSet;
use logfold_core::protocol::{BatchResult, PushBatch};
use logfold_core::{Event, Limits, LogStore, MemoryStore};

use crate::hub::Hub;

pub mod postgres;
pub mod sqlite;

pub use self::postgres::PgStore;
pub use self::sqlite::SqliteStore;

/// A storage failure; the push or read it happened in had no effect.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// From SQLite.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// From PostgreSQL.
    #[error("postgres: {0}")]
    Postgres(#[from] ::postgres::Error),
    /// A stored value is not what this server writes.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The blocking task running the query panicked or was cancelled.
    #[error("storage task failed: {0}")]
    Task(String),
    /// The shared transaction this push was part of failed; nothing of it was written.
    #[error("the commit failed: {0}")]
    Group(String),
    /// The push names a client id bound to another credential; nothing of it was written.
    #[error("client id {0:?} belongs to another credential: a device pushes only as itself")]
    ClientTaken(String),
    /// The log's queue of pushes waiting for a commit is full; nothing was written.
    #[error("{0} bytes of pushes already wait for this log: try again in a moment")]
    Busy(usize),
}

/// One push request: its batches, and the credential it came with (`None` when the server
/// runs without tokens, where client ids are not bound).
#[derive(Debug, Clone)]
pub struct PushJob {
    /// The batches, in order.
    pub batches: Vec<PushBatch>,
    /// Who pushes: an opaque, stable identity of the token.
    pub owner: Option<String>,
    /// The request body's size, counted against the log's queue (see [`Store::queue_limit`]).
    pub bytes: usize,
}

/// The log's state after a push.
#[derive(Debug, Clone, PartialEq)]
pub struct Pushed {
    /// One per batch.
    pub results: Vec<BatchResult>,
    /// The log's last offset.
    pub head: u64,
    /// Events written by this push.
    pub appended: u64,
    /// The log's identity (see [`new_log_id`]).
    pub log_id: String,
}

/// What a read found: events after a cursor, the head, and the log's identity (`None` when
/// the log has never been written).
#[derive(Debug, Clone, PartialEq)]
pub struct Tail {
    /// The events, in offset order.
    pub events: Vec<Event>,
    /// The log's last offset when read.
    pub head: u64,
    /// The log's identity.
    pub log_id: Option<String>,
}

/// The most snapshot sets kept for one log; storing one more drops the one stored longest ago.
pub const MAX_SNAPSHOT_SETS: usize = 8;

/// What became of an uploaded snapshot set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upload {
    /// Stored, with the server's stream versions at its offset.
    Stored,
    /// The set of that name stored before is of this offset, at or past the upload's; it stays.
    Kept(u64),
    /// The log's head is below the set's offset (0: the log was never written).
    Ahead(u64),
}

/// A stored snapshot set as served, with the log's head and identity read with it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSet {
    /// The set's wire bytes, stream versions included.
    pub bytes: Vec<u8>,
    /// The log's last offset when read.
    pub head: u64,
    /// The log's identity.
    pub log_id: String,
}

/// The bytes a set is stored as: the upload with the server's own stream versions at its
/// offset (any order; streams at version 0 are left out, as the format wants).
fn sealed(mut set: SnapshotSet, mut streams: Vec<(String, u64)>) -> Vec<u8> {
    streams.retain(|(_, v)| *v >= 1);
    // Byte order, as `SnapshotSet::decode` checks (a database's collation may differ).
    streams.sort();
    set.streams = streams;
    set.encode()
}

/// When a set is stored, in ms: the clock, but always after the log's latest stored set, so
/// the oldest is well defined even within one millisecond or after the clock steps back.
fn stored_at(latest: Option<u64>) -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    latest.map_or(now, |t| now.max(t + 1))
}

/// A fresh log identity: 128 random bits as 32 hex digits, from the standard library's
/// randomly keyed hasher (no extra dependency; it only has to differ between databases).
pub fn new_log_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut bits = [0u64; 2];
    for (i, b) in bits.iter_mut().enumerate() {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        h.write_usize(i);
        *b = h.finish();
    }
    format!("{:016x}{:016x}", bits[0], bits[1])
}

/// One push's answer inside a group: its results, or the client id that refused it whole.
pub type Answer = Result<Pushed, String>;

/// Commits each grouped push's batches in order into one open store transaction: the loop all
/// three stores share. A push naming another credential's client id is refused whole.
fn commit_pushes<S: LogStore>(
    store: &mut S,
    requests: &[PushJob],
    limits: &Limits,
    log_id: &str,
) -> Result<Vec<Answer>, S::Error> {
    let mut answers = Vec::with_capacity(requests.len());
    for job in requests {
        if let Some(owner) = &job.owner {
            if let Some(taken) = claim_clients(store, &job.batches, owner)? {
                answers.push(Err(taken));
                continue;
            }
        }
        let before = store.head()?;
        let results = commit_all(store, &job.batches, limits)?;
        let head = store.head()?;
        answers.push(Ok(Pushed {
            results,
            head,
            appended: head - before,
            log_id: log_id.to_owned(),
        }));
    }
    Ok(answers)
}

/// One of the three stores, with group commit in front of the databases.
#[derive(Clone)]
pub struct Store {
    backend: Backend,
    queues: Arc<Mutex<HashMap<String, LogQueue>>>,
    queue_limit: usize,
}

/// The default for [`Store::queue_limit`]: four of the largest default push bodies.
pub const DEFAULT_QUEUE_BYTES: usize = 64 * 1024 * 1024;

/// Where the logs are.
#[derive(Clone)]
enum Backend {
    /// Logs in memory: for tests and simulations, lost on exit.
    Memory(Arc<Mutex<HashMap<String, MemoryLog>>>),
    /// A SQLite file.
    Sqlite(Arc<SqliteStore>),
    /// A PostgreSQL database, shareable by several server instances.
    Postgres(Arc<PgStore>),
}

/// One log of the memory store.
#[derive(Default)]
struct MemoryLog {
    /// The log's identity.
    id: String,
    events: MemoryStore,
    /// Snapshot sets by name: offset, stored time, bytes.
    sets: HashMap<String, (u64, u64, Vec<u8>)>,
}

impl MemoryLog {
    fn put_snapshots(&mut self, set: SnapshotSet) -> Upload {
        let head = self.events.last_offset();
        if set.offset > head {
            return Upload::Ahead(head);
        }
        let id = set.id();
        if let Some(&(offset, _, _)) = self.sets.get(&id).filter(|s| s.0 >= set.offset) {
            return Upload::Kept(offset);
        }
        // The events up to the offset: as many as it is, from the first.
        let count = usize::try_from(set.offset).unwrap_or(usize::MAX);
        let mut versions = HashMap::new();
        for e in self.events.read(0, count) {
            versions.insert(e.stream.clone(), e.version);
        }
        let latest = self.sets.values().map(|s| s.1).max();
        let offset = set.offset;
        let bytes = sealed(set, versions.into_iter().collect());
        self.sets.insert(id, (offset, stored_at(latest), bytes));
        while self.sets.len() > MAX_SNAPSHOT_SETS {
            let oldest = self
                .sets
                .iter()
                .min_by_key(|(_, s)| s.1)
                .map(|(k, _)| k.clone());
            self.sets.remove(&oldest.expect("more than eight sets"));
        }
        Upload::Stored
    }
}

/// Pushes to one log waiting for the transaction after the one in progress.
#[derive(Default)]
struct LogQueue {
    pending: Vec<Pending>,
    committing: bool,
    /// The bodies' bytes of `pending`.
    bytes: usize,
}

struct Pending {
    job: PushJob,
    reply: tokio::sync::oneshot::Sender<Result<Pushed, StoreError>>,
}

/// At most this many pushes share one transaction, so one commit's latency stays bounded.
const MAX_GROUP: usize = 64;

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.kind())
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
}

impl Store {
    /// Opens what `--database` names: `postgres://…` (or `host=…` key-value settings) for
    /// PostgreSQL, `:memory:` for memory, otherwise a SQLite file path. `pg_schema` names the
    /// PostgreSQL schema to use; `hub` hears other instances' appends (PostgreSQL only).
    pub fn open(database: &str, pg_schema: &str, hub: &Hub) -> Result<Store, StoreError> {
        if database.starts_with("postgres://")
            || database.starts_with("postgresql://")
            || database.contains("host=")
        {
            Ok(Store::new(Backend::Postgres(Arc::new(PgStore::open(
                database,
                pg_schema,
                hub.clone(),
            )?))))
        } else if database == ":memory:" {
            Ok(Store::memory())
        } else {
            Ok(Store::new(Backend::Sqlite(Arc::new(SqliteStore::open(
                database,
            )?))))
        }
    }

    fn new(backend: Backend) -> Store {
        Store {
            backend,
            queues: Arc::default(),
            queue_limit: DEFAULT_QUEUE_BYTES,
        }
    }

    /// Sets how many bytes of parsed pushes may wait for one log's next commit; past it a push
    /// is refused (`Busy`, 503) until the queue drains. A push to an empty queue always waits.
    pub fn queue_limit(mut self, bytes: usize) -> Store {
        self.queue_limit = bytes;
        self
    }

    /// An empty in-memory store.
    pub fn memory() -> Store {
        Store::new(Backend::Memory(Arc::default()))
    }

    /// `memory`, `sqlite` or `postgres`.
    pub fn kind(&self) -> &'static str {
        match &self.backend {
            Backend::Memory(_) => "memory",
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// Commits `batches` in order into `log`, atomically per batch, and answers once the
    /// transaction holding them is durable. Pushes to one log that arrive while a transaction
    /// is in progress share the next one (group commit): one fsync for many pushes.
    pub async fn push(
        &self,
        log: &str,
        job: PushJob,
        limits: Limits,
    ) -> Result<Pushed, StoreError> {
        if let Backend::Memory(logs) = &self.backend {
            let mut logs = logs.lock().unwrap_or_else(|e| e.into_inner());
            let entry = logs.entry(log.to_owned()).or_insert_with(|| MemoryLog {
                id: new_log_id(),
                ..MemoryLog::default()
            });
            let Ok(mut answers) = commit_pushes(
                &mut entry.events,
                std::slice::from_ref(&job),
                &limits,
                &entry.id,
            );
            return answers.remove(0).map_err(StoreError::ClientTaken);
        }
        let (reply, answer) = tokio::sync::oneshot::channel();
        let lead = {
            let mut queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
            let queue = queues.entry(log.to_owned()).or_default();
            // Bounded by bytes, so clients pushing faster than commits cannot fill memory.
            if !queue.pending.is_empty() && queue.bytes + job.bytes > self.queue_limit {
                return Err(StoreError::Busy(queue.bytes));
            }
            queue.bytes += job.bytes;
            queue.pending.push(Pending { job, reply });
            !std::mem::replace(&mut queue.committing, true)
        };
        if lead {
            // A task of its own, so a client hanging up cannot stop others' commits.
            tokio::spawn(self.clone().commit_queue(log.to_owned(), limits));
        }
        answer
            .await
            .map_err(|_| StoreError::Task("the commit task ended".into()))?
    }

    /// Commits the log's queued pushes, a group per transaction, until none are left.
    async fn commit_queue(self, log: String, limits: Limits) {
        loop {
            let group: Vec<Pending> = {
                let mut queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
                let Some(queue) = queues.get_mut(&log) else {
                    return;
                };
                if queue.pending.is_empty() {
                    queues.remove(&log);
                    return;
                }
                let n = queue.pending.len().min(MAX_GROUP);
                let group: Vec<Pending> = queue.pending.drain(..n).collect();
                queue.bytes -= group.iter().map(|p| p.job.bytes).sum::<usize>();
                group
            };
            let (requests, replies): (Vec<_>, Vec<_>) =
                group.into_iter().map(|p| (p.job, p.reply)).unzip();
            let log_name = log.clone();
            let outcome = match &self.backend {
                Backend::Sqlite(s) => {
                    let s = s.clone();
                    blocking(move || s.push(&log_name, &requests, &limits)).await
                }
                Backend::Postgres(s) => {
                    let s = s.clone();
                    blocking(move || s.push(&log_name, &requests, &limits)).await
                }
                Backend::Memory(_) => unreachable!("memory pushes are not queued"),
            };
            match outcome {
                Ok(pushed) => {
                    for (reply, p) in replies.into_iter().zip(pushed) {
                        let _ = reply.send(p.map_err(StoreError::ClientTaken));
                    }
                }
                Err(e) => {
                    let message = e.to_string();
                    for reply in replies {
                        let _ = reply.send(Err(StoreError::Group(message.clone())));
                    }
                }
            }
        }
    }

    /// Up to `limit` events after offset `after`, about `max_bytes` of them (see
    /// [`page_bytes`]; at least one), and the head they were read at.
    pub async fn read(
        &self,
        log: &str,
        after: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Tail, StoreError> {
        match &self.backend {
            Backend::Memory(logs) => {
                let logs = logs.lock().unwrap_or_else(|e| e.into_inner());
                let Some(l) = logs.get(log) else {
                    return Ok(Tail::none());
                };
                let mut page = Page::new(max_bytes);
                let events = l
                    .events
                    .read(after, limit)
                    .iter()
                    .take_while(|e| page.fits(e));
                Ok(Tail {
                    events: events.cloned().collect(),
                    head: l.events.last_offset(),
                    log_id: Some(l.id.clone()),
                })
            }
            Backend::Sqlite(s) => {
                let (s, log) = (s.clone(), log.to_owned());
                blocking(move || s.read(&log, after, limit, max_bytes)).await
            }
            Backend::Postgres(s) => {
                let (s, log) = (s.clone(), log.to_owned());
                blocking(move || s.read(&log, after, limit, max_bytes)).await
            }
        }
    }

    /// Keeps `set` (checked by the caller: its offset is ≥ 1) as `log`'s set of its name, with
    /// the stream versions at its offset from this store's own events, unless the one stored
    /// is of that offset or later; at most [`MAX_SNAPSHOT_SETS`] per log. One transaction, apart
    /// from the push queue: an upload waits for no group commit, nor they for it (on SQLite
    /// it does wait for the one writer connection).
    pub async fn put_snapshots(&self, log: &str, set: SnapshotSet) -> Result<Upload, StoreError> {
        match &self.backend {
            Backend::Memory(logs) => {
                let mut logs = logs.lock().unwrap_or_else(|e| e.into_inner());
                Ok(match logs.get_mut(log) {
                    Some(l) => l.put_snapshots(set),
                    None => Upload::Ahead(0),
                })
            }
            Backend::Sqlite(s) => {
                let (s, log) = (s.clone(), log.to_owned());
                blocking(move || s.put_snapshots(&log, set)).await
            }
            Backend::Postgres(s) => {
                let (s, log) = (s.clone(), log.to_owned());
                blocking(move || s.put_snapshots(&log, set)).await
            }
        }
    }

    /// `log`'s stored snapshot set named `set_id`, if there is one.
    pub async fn snapshots(
        &self,
        log: &str,
        set_id: &str,
    ) -> Result<Option<StoredSet>, StoreError> {
        match &self.backend {
            Backend::Memory(logs) => {
                let logs = logs.lock().unwrap_or_else(|e| e.into_inner());
                Ok(logs.get(log).and_then(|l| {
                    let (_, _, bytes) = l.sets.get(set_id)?;
                    Some(StoredSet {
                        bytes: bytes.clone(),
                        head: l.events.last_offset(),
                        log_id: l.id.clone(),
                    })
                }))
            }
            Backend::Sqlite(s) => {
                let (s, log, set_id) = (s.clone(), log.to_owned(), set_id.to_owned());
                blocking(move || s.snapshots(&log, &set_id)).await
            }
            Backend::Postgres(s) => {
                let (s, log, set_id) = (s.clone(), log.to_owned(), set_id.to_owned());
                blocking(move || s.snapshots(&log, &set_id)).await
            }
        }
    }
}

impl Tail {
    /// A log never written: no events, head 0, no identity yet.
    pub fn none() -> Tail {
        Tail {
            events: Vec::new(),
            head: 0,
            log_id: None,
        }
    }
}

/// What an event costs in a page: its data and meta plus a fixed allowance for the rest. The
/// PostgreSQL read computes the same sum in SQL.
pub fn page_bytes(e: &Event) -> usize {
    e.data.len() + e.meta.as_ref().map_or(0, String::len) + PAGE_EVENT_OVERHEAD
}

/// The allowance per event for its id, stream, type, offsets and JSON punctuation.
pub const PAGE_EVENT_OVERHEAD: usize = 100;

/// A page being filled up to a byte budget: the first event always fits, so a page is never
/// empty while events remain, and never more than one event over the budget.
struct Page {
    left: usize,
    first: bool,
}

impl Page {
    fn new(max_bytes: usize) -> Page {
        Page {
            left: max_bytes,
            first: true,
        }
    }

    fn fits(&mut self, e: &Event) -> bool {
        let size = page_bytes(e);
        let fits = std::mem::take(&mut self.first) || size <= self.left;
        if fits {
            self.left = self.left.saturating_sub(size);
        }
        fits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(bytes: usize) -> PushJob {
        PushJob {
            batches: Vec::new(),
            owner: None,
            bytes,
        }
    }

    #[tokio::test]
    async fn a_full_queue_refuses_the_push_and_others_logs_go_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.sqlite3");
        let store = Store::open(path.to_str().unwrap(), "public", &Hub::default())
            .unwrap()
            .queue_limit(1000);
        // A commit in progress with 900 bytes waiting behind it.
        let (reply, _answer) = tokio::sync::oneshot::channel();
        store.queues.lock().unwrap().insert(
            "busy".into(),
            LogQueue {
                pending: vec![Pending {
                    job: job(900),
                    reply,
                }],
                committing: true,
                bytes: 900,
            },
        );
        let refused = store.push("busy", job(200), Limits::default()).await;
        assert!(matches!(refused, Err(StoreError::Busy(900))), "{refused:?}");
        assert_eq!(store.queues.lock().unwrap()["busy"].pending.len(), 1);
        // Another log, and a push bigger than the limit to an empty queue, go through.
        let pushed = store.push("idle", job(5000), Limits::default()).await;
        assert!(pushed.is_ok(), "{pushed:?}");
    }
}
