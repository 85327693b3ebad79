//! PostgreSQL: appends to one log are serialized by a row lock on its `logs` row, held until
//! commit, so offsets are dense and become visible in order; `pg_notify` in the same transaction
//! wakes live tails on every server instance once the commit is durable.

use std::sync::Mutex;
use std::time::Duration;

use logfold_core::commit::{commit, BatchRecord, Commit, LogStore, Placed};
use logfold_core::protocol::PushBatch;
use logfold_core::{Event, EventId, Limits};
use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, NoTls, Transaction};

use super::{Pushed, StoreError};
use crate::hub::Hub;

/// The most idle connections kept for reuse.
const POOL_SIZE: usize = 16;

fn schema_sql(schema: &str) -> String {
    format!(
        "CREATE SCHEMA IF NOT EXISTS \"{schema}\";
SET search_path TO \"{schema}\";
CREATE TABLE IF NOT EXISTS logs (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    head BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    log_id BIGINT NOT NULL,
    event_offset BIGINT NOT NULL,
    id BYTEA NOT NULL,
    stream TEXT NOT NULL,
    version BIGINT NOT NULL,
    type TEXT NOT NULL,
    data TEXT NOT NULL,
    meta TEXT,
    time BIGINT NOT NULL,
    origin TEXT NOT NULL,
    PRIMARY KEY (log_id, event_offset)
);
CREATE UNIQUE INDEX IF NOT EXISTS events_by_id ON events (log_id, id);
CREATE TABLE IF NOT EXISTS streams (
    log_id BIGINT NOT NULL,
    stream TEXT NOT NULL,
    version BIGINT NOT NULL,
    PRIMARY KEY (log_id, stream)
);
CREATE TABLE IF NOT EXISTS batches (
    log_id BIGINT NOT NULL,
    client TEXT NOT NULL,
    batch BIGINT NOT NULL,
    first_offset BIGINT NOT NULL,
    count BIGINT NOT NULL,
    PRIMARY KEY (log_id, client, batch)
);
CREATE TABLE IF NOT EXISTS clients (
    log_id BIGINT NOT NULL,
    client TEXT NOT NULL,
    epoch BIGINT NOT NULL,
    PRIMARY KEY (log_id, client)
);"
    )
}

/// A PostgreSQL database (one schema of it) holding any number of logs.
pub struct PgStore {
    config: postgres::Config,
    schema: String,
    idle: Mutex<Vec<Client>>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PgStore({})", self.schema)
    }
}

/// The NOTIFY channel of a schema: each schema is its own set of logs.
fn channel(schema: &str) -> String {
    format!("logfold_{schema}")
}

/// Schema names go into SQL text, so only plain identifiers are allowed.
pub fn valid_schema(schema: &str) -> bool {
    !schema.is_empty()
        && schema.len() <= 48
        && schema.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && schema
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

impl Drop for PgStore {
    fn drop(&mut self) {
        // A sync client blocks on its own runtime when closed, which panics on an async
        // thread; close the idle ones on a plain thread instead.
        let idle = std::mem::take(self.idle.get_mut().unwrap_or_else(|e| e.into_inner()));
        if !idle.is_empty() {
            std::thread::spawn(move || drop(idle));
        }
    }
}

impl PgStore {
    /// Connects, creates the schema's tables if needed and starts listening for other
    /// instances' appends, which wake `hub`.
    /// Safe to call from async code: the blocking work runs on its own thread.
    pub fn open(url: &str, schema: &str, hub: Hub) -> Result<PgStore, StoreError> {
        let (url, schema) = (url.to_owned(), schema.to_owned());
        std::thread::spawn(move || PgStore::open_blocking(&url, &schema, hub))
            .join()
            .map_err(|_| StoreError::Task("opening the PostgreSQL store panicked".into()))?
    }

    fn open_blocking(url: &str, schema: &str, hub: Hub) -> Result<PgStore, StoreError> {
        if !valid_schema(schema) {
            return Err(StoreError::Corrupt(format!(
                "schema {schema:?} must be lowercase letters, digits and _"
            )));
        }
        let config: postgres::Config = url.parse()?;
        let store = PgStore {
            config,
            schema: schema.to_owned(),
            idle: Mutex::new(Vec::new()),
        };
        let mut client = store.connect()?;
        // Two instances starting together must not race on CREATE ... IF NOT EXISTS.
        let mut tx = client.transaction()?;
        tx.execute("SELECT pg_advisory_xact_lock(727274)", &[])?;
        tx.batch_execute(&schema_sql(schema))?;
        tx.commit()?;
        store.give_back(client);
        store.listen(hub);
        Ok(store)
    }

    fn connect(&self) -> Result<Client, StoreError> {
        let mut client = self.config.connect(NoTls)?;
        client.batch_execute(&format!("SET search_path TO \"{}\"", self.schema))?;
        Ok(client)
    }

    fn take(&self) -> Result<Client, StoreError> {
        let pooled = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        match pooled {
            Some(c) if !c.is_closed() => Ok(c),
            _ => self.connect(),
        }
    }

    fn give_back(&self, client: Client) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < POOL_SIZE && !client.is_closed() {
            idle.push(client);
        }
    }

    /// A thread holding one connection in LISTEN; it reconnects after failures and then wakes
    /// every tail, since notifications may have been missed meanwhile.
    fn listen(&self, hub: Hub) {
        let config = self.config.clone();
        let channel = channel(&self.schema);
        std::thread::spawn(move || loop {
            let run = || -> Result<(), postgres::Error> {
                let mut client = config.connect(NoTls)?;
                client.batch_execute(&format!("LISTEN \"{channel}\""))?;
                hub.wake_all();
                let mut notes = client.notifications();
                let mut it = notes.blocking_iter();
                while let Some(n) = it.next()? {
                    if let Some((head, log)) = n.payload().split_once(' ') {
                        hub.advance(log, head.parse().unwrap_or(0));
                    }
                }
                Ok(())
            };
            if let Err(e) = run() {
                eprintln!("logfold-server: postgres LISTEN connection lost: {e}");
            }
            std::thread::sleep(Duration::from_millis(500));
        });
    }

    /// Commits the batches of several push requests into `log`, in order, in one transaction
    /// holding the log's row lock; one answer per request.
    pub fn push(
        &self,
        log: &str,
        requests: &[Vec<PushBatch>],
        limits: &Limits,
    ) -> Result<Vec<Pushed>, StoreError> {
        let mut client = self.take()?;
        let out = self.push_with(&mut client, log, requests, limits);
        self.give_back(client);
        out
    }

    fn push_with(
        &self,
        client: &mut Client,
        log: &str,
        requests: &[Vec<PushBatch>],
        limits: &Limits,
    ) -> Result<Vec<Pushed>, StoreError> {
        let mut tx = client.transaction()?;
        let lock = "SELECT id, head FROM logs WHERE name = $1 FOR UPDATE";
        let row = match tx.query_opt(lock, &[&log])? {
            Some(row) => row,
            None => {
                tx.execute(
                    "INSERT INTO logs (name, head) VALUES ($1, 0) ON CONFLICT (name) DO NOTHING",
                    &[&log],
                )?;
                tx.query_one(lock, &[&log])?
            }
        };
        let (log_id, start): (i64, i64) = (row.get(0), row.get(1));
        let start = start as u64;
        let mut store = PgLog {
            tx,
            log_id,
            head: start,
        };
        let mut answers = Vec::with_capacity(requests.len());
        for batches in requests {
            let before = store.head;
            let results = batches
                .iter()
                .map(|b| commit(&mut store, b, limits))
                .collect::<Result<Vec<_>, _>>()?;
            answers.push(Pushed {
                results,
                head: store.head,
                appended: store.head - before,
            });
        }
        let PgLog { mut tx, head, .. } = store;
        if head != start {
            tx.execute(
                "UPDATE logs SET head = $2 WHERE id = $1",
                &[&log_id, &(head as i64)],
            )?;
            tx.execute(
                "SELECT pg_notify($1, $2)",
                &[&channel(&self.schema), &format!("{head} {log}")],
            )?;
        }
        tx.commit()?;
        Ok(answers)
    }

    /// Up to `limit` events after `after`, with the head, from one snapshot (one statement).
    pub fn read(
        &self,
        log: &str,
        after: u64,
        limit: usize,
    ) -> Result<(Vec<Event>, u64), StoreError> {
        let mut client = self.take()?;
        let rows = client.query(
            "SELECT l.head, e.event_offset, e.id, e.stream, e.version, e.type, e.data, e.meta,
                    e.time, e.origin
             FROM logs l LEFT JOIN LATERAL (
                SELECT * FROM events WHERE log_id = l.id AND event_offset > $2
                ORDER BY event_offset LIMIT $3) e ON true
             WHERE l.name = $1",
            &[&log, &(after as i64), &(limit as i64)],
        );
        self.give_back(client);
        let rows = rows?;
        let mut head = 0;
        let mut events = Vec::with_capacity(rows.len());
        for r in &rows {
            head = r.get::<_, i64>(0) as u64;
            let Some(offset) = r.get::<_, Option<i64>>(1) else {
                continue;
            };
            let id: &[u8] = r.get(2);
            let id: [u8; 16] = id
                .try_into()
                .map_err(|_| StoreError::Corrupt("an event id is not 16 bytes".into()))?;
            events.push(Event {
                id: EventId::from_bytes(id),
                stream: r.get(3),
                version: r.get::<_, i64>(4) as u64,
                event_type: r.get(5),
                data: r.get(6),
                meta: r.get(7),
                time: r.get::<_, i64>(8) as u64,
                origin: r.get(9),
                seq: offset as u64,
                offset: Some(offset as u64),
            });
        }
        Ok((events, head))
    }
}

/// One log inside an open transaction that holds its row lock.
struct PgLog<'a> {
    tx: Transaction<'a>,
    log_id: i64,
    head: u64,
}

impl LogStore for PgLog<'_> {
    type Error = StoreError;

    fn head(&mut self) -> Result<u64, StoreError> {
        Ok(self.head)
    }

    fn client_epoch(&mut self, client: &str) -> Result<u64, StoreError> {
        let row = self.tx.query_opt(
            "SELECT epoch FROM clients WHERE log_id = $1 AND client = $2",
            &[&self.log_id, &client],
        )?;
        Ok(row.map_or(0, |r| r.get::<_, i64>(0) as u64))
    }

    fn batch_record(
        &mut self,
        client: &str,
        batch: u64,
    ) -> Result<Option<BatchRecord>, StoreError> {
        let row = self.tx.query_opt(
            "SELECT first_offset, count FROM batches WHERE log_id = $1 AND client = $2 AND batch = $3",
            &[&self.log_id, &client, &(batch as i64)],
        )?;
        Ok(row.map(|r| BatchRecord {
            first: r.get::<_, i64>(0) as u64,
            count: r.get::<_, i64>(1) as u64,
        }))
    }

    fn events_at(&mut self, first: u64, count: u64) -> Result<Vec<(EventId, u64)>, StoreError> {
        let rows = self.tx.query(
            "SELECT id, version FROM events WHERE log_id = $1 AND event_offset >= $2
             AND event_offset < $3 ORDER BY event_offset",
            &[&self.log_id, &(first as i64), &((first + count) as i64)],
        )?;
        rows.iter()
            .map(|r| {
                let id: &[u8] = r.get(0);
                let id: [u8; 16] = id
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("an event id is not 16 bytes".into()))?;
                Ok((EventId::from_bytes(id), r.get::<_, i64>(1) as u64))
            })
            .collect()
    }

    fn find_ids(&mut self, ids: &[EventId]) -> Result<Vec<Option<Placed>>, StoreError> {
        let keys: Vec<Vec<u8>> = ids.iter().map(|id| id.to_bytes().to_vec()).collect();
        let rows = self.tx.query(
            "SELECT id, event_offset, version FROM events WHERE log_id = $1 AND id = ANY($2)",
            &[&self.log_id, &keys],
        )?;
        let mut found = vec![None; ids.len()];
        if rows.is_empty() {
            return Ok(found);
        }
        let index: std::collections::HashMap<&[u8], usize> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| (k.as_slice(), i))
            .collect();
        for r in &rows {
            let id: &[u8] = r.get(0);
            if let Some(&i) = index.get(id) {
                found[i] = Some(Placed {
                    offset: r.get::<_, i64>(1) as u64,
                    version: r.get::<_, i64>(2) as u64,
                });
            }
        }
        Ok(found)
    }

    fn stream_version(&mut self, stream: &str) -> Result<u64, StoreError> {
        let row = self.tx.query_opt(
            "SELECT version FROM streams WHERE log_id = $1 AND stream = $2",
            &[&self.log_id, &stream],
        )?;
        Ok(row.map_or(0, |r| r.get::<_, i64>(0) as u64))
    }

    fn stream_versions(&mut self, streams: &[&str]) -> Result<Vec<u64>, StoreError> {
        let rows = self.tx.query(
            "SELECT stream, version FROM streams WHERE log_id = $1 AND stream = ANY($2)",
            &[&self.log_id, &streams],
        )?;
        let found: std::collections::HashMap<&str, i64> =
            rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        Ok(streams
            .iter()
            .map(|s| found.get(s).map_or(0, |v| *v as u64))
            .collect())
    }

    fn write(&mut self, c: &Commit<'_>) -> Result<(), StoreError> {
        let n = c.events.len();
        let mut offsets = Vec::with_capacity(n);
        let mut streams = Vec::with_capacity(n);
        let mut versions = Vec::with_capacity(n);
        let mut types = Vec::with_capacity(n);
        let mut data = Vec::with_capacity(n);
        let mut metas = Vec::with_capacity(n);
        let mut times = Vec::with_capacity(n);
        for e in &c.events {
            offsets.push(e.seq as i64);
            streams.push(e.stream.as_str());
            versions.push(e.version as i64);
            types.push(e.event_type.as_str());
            data.push(e.data.as_str());
            metas.push(e.meta.as_deref());
            times.push(e.time as i64);
        }
        let id_bytes: Vec<[u8; 16]> = c.events.iter().map(|e| e.id.to_bytes()).collect();
        let ids: Vec<&[u8]> = id_bytes.iter().map(|b| &b[..]).collect();
        self.tx.execute(
            "INSERT INTO events (log_id, event_offset, id, stream, version, type, data, meta, time, origin)
             SELECT $1, o, i, s, v, t, d, m, tm, $10
             FROM UNNEST($2::bigint[], $3::bytea[], $4::text[], $5::bigint[], $6::text[],
                         $7::text[], $8::text[], $9::bigint[]) AS u(o, i, s, v, t, d, m, tm)",
            &[
                &self.log_id,
                &offsets,
                &ids,
                &streams,
                &versions,
                &types,
                &data,
                &metas,
                &times,
                &c.client,
            ],
        )?;
        if let Some(first) = c.events.first() {
            self.tx.execute(
                "INSERT INTO batches (log_id, client, batch, first_offset, count)
                 VALUES ($1, $2, $3, $4, $5)",
                &[
                    &self.log_id,
                    &c.client,
                    &(c.batch as i64),
                    &(first.seq as i64),
                    &(n as i64),
                ],
            )?;
        }
        self.tx.execute(
            "INSERT INTO clients (log_id, client, epoch) VALUES ($1, $2, $3)
             ON CONFLICT (log_id, client) DO UPDATE SET epoch = GREATEST(clients.epoch, EXCLUDED.epoch)",
            &[&self.log_id, &c.client, &(c.epoch as i64)],
        )?;
        let names: Vec<&str> = c.versions.iter().map(|(s, _)| s.as_str()).collect();
        let stream_versions: Vec<i64> = c.versions.iter().map(|(_, v)| *v as i64).collect();
        self.tx.execute(
            "INSERT INTO streams (log_id, stream, version)
             SELECT $1, s, v FROM UNNEST($2::text[], $3::bigint[]) AS u(s, v)
             ON CONFLICT (log_id, stream) DO UPDATE SET version = EXCLUDED.version",
            &[&self.log_id, &names, &stream_versions],
        )?;
        self.head = c.head;
        Ok(())
    }
}
