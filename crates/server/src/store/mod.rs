//! The server's storage: the same commit rules (`logfold_core::commit`) over memory, SQLite or
//! PostgreSQL, each push in one transaction.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use logfold_core::protocol::{BatchResult, PushBatch};
use logfold_core::{Event, Limits, MemoryStore};

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
}

/// One of the three stores.
#[derive(Clone)]
pub enum Store {
    /// Logs in memory: for tests and simulations, lost on exit.
    Memory(Arc<Mutex<HashMap<String, MemoryStore>>>),
    /// A SQLite file.
    Sqlite(Arc<SqliteStore>),
    /// A PostgreSQL database, shareable by several server instances.
    Postgres(Arc<PgStore>),
}

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
            Ok(Store::Postgres(Arc::new(PgStore::open(
                database,
                pg_schema,
                hub.clone(),
            )?)))
        } else if database == ":memory:" {
            Ok(Store::memory())
        } else {
            Ok(Store::Sqlite(Arc::new(SqliteStore::open(database)?)))
        }
    }

    /// An empty in-memory store.
    pub fn memory() -> Store {
        Store::Memory(Arc::default())
    }

    /// `memory`, `sqlite` or `postgres`.
    pub fn kind(&self) -> &'static str {
        match self {
            Store::Memory(_) => "memory",
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgres",
        }
    }

    /// Commits `batches` in order into `log`, in one transaction.
    pub async fn push(
        &self,
        log: &str,
        batches: Vec<PushBatch>,
        limits: Limits,
    ) -> Result<Pushed, StoreError> {
        match self {
            Store::Memory(logs) => {
                let mut logs = logs.lock().unwrap_or_else(|e| e.into_inner());
                let store = logs.entry(log.to_owned()).or_default();
                let before = store.last_offset();
                let results = store.push(&batches, &limits);
                let head = store.last_offset();
                Ok(Pushed {
                    results,
                    head,
                    appended: head - before,
                })
            }
            Store::Sqlite(s) => {
                let (s, log) = (s.clone(), log.to_owned());
                blocking(move || s.push(&log, &batches, &limits)).await
            }
            Store::Postgres(s) => {
                let (s, log) = (s.clone(), log.to_owned());
                blocking(move || s.push(&log, &batches, &limits)).await
            }
        }
    }

    /// Up to `limit` events after offset `after`, and the head they were read at.
    pub async fn read(
        &self,
        log: &str,
        after: u64,
        limit: usize,
    ) -> Result<(Vec<Event>, u64), StoreError> {
        match self {
            Store::Memory(logs) => {
                let logs = logs.lock().unwrap_or_else(|e| e.into_inner());
                Ok(logs.get(log).map_or((Vec::new(), 0), |s| {
                    (s.read(after, limit).to_vec(), s.last_offset())
                }))
            }
            Store::Sqlite(s) => {
                let (s, log) = (s.clone(), log.to_owned());
                blocking(move || s.read(&log, after, limit)).await
            }
            Store::Postgres(s) => {
                let (s, log) = (s.clone(), log.to_owned());
                blocking(move || s.read(&log, after, limit)).await
            }
        }
    }
}
