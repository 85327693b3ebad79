//! PostgreSQL: appends to one log are serialized by a row lock on its `logs` row, held until
//! commit, so offsets are dense and become visible in order; `pg_notify` in the same transaction
//! wakes live tails on every server instance once the commit is durable.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use logfold_core::commit::{BatchRecord, Commit, LogStore, Placed};
use logfold_core::{Event, EventId, Limits};
use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, GenericClient, NoTls, Statement, Transaction};

use logfold_core::protocol::snapshots::SnapshotSet;

use super::{Answer, PushJob, StoreError, StoredSet, Tail, Upload};
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
ALTER TABLE logs ADD COLUMN IF NOT EXISTS uid TEXT;
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
);
ALTER TABLE clients ADD COLUMN IF NOT EXISTS owner TEXT;
CREATE TABLE IF NOT EXISTS snapshot_sets (
    log_id BIGINT NOT NULL,
    set_id TEXT NOT NULL,
    event_offset BIGINT NOT NULL,
    stored_at BIGINT NOT NULL,
    bytes BYTEA NOT NULL,
    PRIMARY KEY (log_id, set_id)
);"
    )
}

/// A connection and the statements prepared on it: each query is then one round trip.
struct Conn {
    client: Client,
    statements: HashMap<&'static str, Statement>,
}

/// `sql` prepared on this connection, once.
fn prepared<C: GenericClient>(
    client: &mut C,
    cache: &mut HashMap<&'static str, Statement>,
    sql: &'static str,
) -> Result<Statement, postgres::Error> {
    if let Some(s) = cache.get(sql) {
        return Ok(s.clone());
    }
    let s = client.prepare(sql)?;
    cache.insert(sql, s.clone());
    Ok(s)
}

fn query(
    tx: &mut Transaction<'_>,
    cache: &mut HashMap<&'static str, Statement>,
    sql: &'static str,
    params: &[&(dyn postgres::types::ToSql + Sync)],
) -> Result<Vec<postgres::Row>, postgres::Error> {
    let statement = prepared(tx, cache, sql)?;
    tx.query(&statement, params)
}

fn execute(
    tx: &mut Transaction<'_>,
    cache: &mut HashMap<&'static str, Statement>,
    sql: &'static str,
    params: &[&(dyn postgres::types::ToSql + Sync)],
) -> Result<u64, postgres::Error> {
    let statement = prepared(tx, cache, sql)?;
    tx.execute(&statement, params)
}

/// A PostgreSQL database (one schema of it) holding any number of logs.
pub struct PgStore {
    config: postgres::Config,
    schema: String,
    idle: Mutex<Vec<Conn>>,
    /// Tells the LISTEN thread to end when the store is dropped.
    stop: Arc<AtomicBool>,
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
        self.stop.store(true, Ordering::Relaxed);
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
            stop: Arc::default(),
        };
        let mut conn = store.connect()?;
        // Two instances starting together must not race on CREATE ... IF NOT EXISTS.
        let mut tx = conn.client.transaction()?;
        tx.execute("SELECT pg_advisory_xact_lock(727274)", &[])?;
        tx.batch_execute(&schema_sql(schema))?;
        // Logs stored before identities existed get one now.
        for row in tx.query("SELECT id FROM logs WHERE uid IS NULL", &[])? {
            let id: i64 = row.get(0);
            tx.execute(
                "UPDATE logs SET uid = $2 WHERE id = $1",
                &[&id, &super::new_log_id()],
            )?;
        }
        tx.commit()?;
        store.give_back(conn);
        store.listen(hub);
        Ok(store)
    }

    fn connect(&self) -> Result<Conn, StoreError> {
        let mut client = self.config.connect(NoTls)?;
        // The default plan_cache_mode: after five executions a statement keeps a generic plan
        // when it costs no more than the custom ones. No statement's plan depends on its values
        // (the lookup probes key by key), and planning each execution of the lookup, the write
        // and the read anew cost a fifth of the database's CPU in the bench.
        client.batch_execute(&format!("SET search_path TO \"{}\"", self.schema))?;
        Ok(Conn {
            client,
            statements: HashMap::new(),
        })
    }

    fn take(&self) -> Result<Conn, StoreError> {
        let pooled = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        match pooled {
            Some(c) if !c.client.is_closed() => Ok(c),
            _ => self.connect(),
        }
    }

    fn give_back(&self, conn: Conn) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < POOL_SIZE && !conn.client.is_closed() {
            idle.push(conn);
        }
    }

    /// A thread holding one connection in LISTEN; it reconnects after failures and then wakes
    /// every tail, since notifications may have been missed meanwhile.
    fn listen(&self, hub: Hub) {
        let config = self.config.clone();
        let channel = channel(&self.schema);
        let stop = self.stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let run = || -> Result<(), postgres::Error> {
                    let mut client = config.connect(NoTls)?;
                    client.batch_execute(&format!("LISTEN \"{channel}\""))?;
                    hub.wake_all();
                    // Wake up now and then to notice that the store is gone.
                    while !stop.load(Ordering::Relaxed) {
                        let mut notes = client.notifications();
                        let mut it = notes.timeout_iter(Duration::from_millis(500));
                        while let Some(n) = it.next()? {
                            if let Some((head, log)) = n.payload().split_once(' ') {
                                hub.advance(log, head.parse().unwrap_or(0));
                            }
                        }
                    }
                    Ok(())
                };
                if let Err(e) = run() {
                    eprintln!("logfold-server: postgres LISTEN connection lost: {e}");
                    std::thread::sleep(Duration::from_millis(500));
                }
            }
        });
    }

    /// Commits the batches of several push requests into `log`, in order, in one transaction
    /// holding the log's row lock; one answer per request.
    pub fn push(
        &self,
        log: &str,
        requests: &[PushJob],
        limits: &Limits,
    ) -> Result<Vec<Answer>, StoreError> {
        let mut conn = self.take()?;
        let out = self.push_with(&mut conn, log, requests, limits);
        self.give_back(conn);
        out
    }

    fn push_with(
        &self,
        conn: &mut Conn,
        log: &str,
        requests: &[PushJob],
        limits: &Limits,
    ) -> Result<Vec<Answer>, StoreError> {
        let Conn { client, statements } = conn;
        let mut tx = client.transaction()?;
        let lock = prepared(
            &mut tx,
            statements,
            "SELECT id, head, uid FROM logs WHERE name = $1 FOR UPDATE",
        )?;
        let row = match tx.query_opt(&lock, &[&log])? {
            Some(row) => row,
            None => {
                execute(
                    &mut tx,
                    statements,
                    "INSERT INTO logs (name, head, uid) VALUES ($1, 0, $2) ON CONFLICT (name) DO NOTHING",
                    &[&log, &super::new_log_id()],
                )?;
                tx.query_one(&lock, &[&log])?
            }
        };
        let (log_id, start, uid): (i64, i64, String) = (row.get(0), row.get(1), row.get(2));
        let start = start as u64;
        let mut store = PgLog::load(tx, statements, log_id, start, requests)?;
        let answers = super::commit_pushes(&mut store, requests, limits, &uid)?;
        let note = format!("{} {log}", store.head);
        store.flush((&channel(&self.schema), &note))?;
        let PgLog { tx, .. } = store;
        tx.commit()?;
        Ok(answers)
    }

    /// Up to `limit` events after `after`, with the head, from one snapshot (one statement).
    pub fn read(
        &self,
        log: &str,
        after: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Tail, StoreError> {
        let mut conn = self.take()?;
        let rows = self.read_with(&mut conn, log, after, limit, max_bytes);
        self.give_back(conn);
        let rows = rows?;
        let mut head = 0;
        let mut log_id = None;
        let mut events = Vec::with_capacity(rows.len());
        for r in &rows {
            head = r.get::<_, i64>(0) as u64;
            log_id = r.get(10);
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
        Ok(Tail {
            events,
            head,
            log_id,
        })
    }

    fn read_with(
        &self,
        conn: &mut Conn,
        log: &str,
        after: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<postgres::Row>, postgres::Error> {
        // The running size (`store::page_bytes` in SQL) cuts the page at the byte budget
        // inside the database, so a page of large events never reaches this process whole.
        let read = prepared(
            &mut conn.client,
            &mut conn.statements,
            "SELECT l.head, e.event_offset, e.id, e.stream, e.version, e.type, e.data, e.meta,
                    e.time, e.origin, l.uid
             FROM logs l LEFT JOIN LATERAL (
                SELECT * FROM (
                  SELECT ev.*,
                         sum(octet_length(ev.data) + coalesce(octet_length(ev.meta), 0) + $5)
                           OVER w AS run,
                         row_number() OVER w AS n
                  FROM events ev WHERE ev.log_id = l.id AND ev.event_offset > $2
                  WINDOW w AS (ORDER BY ev.event_offset)
                  ORDER BY ev.event_offset LIMIT $3) p
                WHERE p.run <= $4 OR p.n = 1) e ON true
             WHERE l.name = $1
             ORDER BY e.event_offset",
        )?;
        let budget = i64::try_from(max_bytes).unwrap_or(i64::MAX);
        let overhead = super::PAGE_EVENT_OVERHEAD as i32;
        conn.client.query(
            &read,
            &[
                &log,
                &i64::try_from(after).unwrap_or(i64::MAX),
                &(limit as i64),
                &budget,
                &overhead,
            ],
        )
    }
}

impl PgStore {
    /// See [`super::Store::put_snapshots`]. It takes no lock on the log: the versions at an
    /// offset at or below the head never change (events are never rewritten), and one
    /// statement reads the streams and the events after the offset from one snapshot.
    /// A racing upload of the same set is settled by the upsert's condition.
    pub fn put_snapshots(&self, log: &str, set: SnapshotSet) -> Result<Upload, StoreError> {
        let mut conn = self.take()?;
        let out = put_snapshots_with(&mut conn, log, set);
        self.give_back(conn);
        out
    }

    /// `log`'s snapshot set `set_id` with the head and identity, from one statement.
    pub fn snapshots(&self, log: &str, set_id: &str) -> Result<Option<StoredSet>, StoreError> {
        let mut conn = self.take()?;
        let found = (|| {
            let Conn { client, statements } = &mut conn;
            let get = prepared(
                client,
                statements,
                "SELECT l.head, l.uid, s.bytes FROM logs l JOIN snapshot_sets s
                 ON s.log_id = l.id AND s.set_id = $2 WHERE l.name = $1",
            )?;
            client.query_opt(&get, &[&log, &set_id])
        })();
        self.give_back(conn);
        Ok(found?.map(|r| StoredSet {
            head: r.get::<_, i64>(0) as u64,
            log_id: r.get(1),
            bytes: r.get(2),
        }))
    }
}

fn put_snapshots_with(conn: &mut Conn, log: &str, set: SnapshotSet) -> Result<Upload, StoreError> {
    let Conn { client, statements } = conn;
    let mut tx = client.transaction()?;
    let found = query(
        &mut tx,
        statements,
        "SELECT id, head FROM logs WHERE name = $1",
        &[&log],
    )?;
    let Some((log_id, head)) = found
        .first()
        .map(|r| (r.get::<_, i64>(0), r.get::<_, i64>(1)))
    else {
        return Ok(Upload::Ahead(0));
    };
    if (head as u64) < set.offset {
        return Ok(Upload::Ahead(head as u64));
    }
    // One upload per log at a time, so two trimming at once cannot both miss the other's row
    // and keep more than the cap (pushes lock the log's row, not this).
    query(
        &mut tx,
        statements,
        "SELECT pg_advisory_xact_lock(hashtextextended('logfold snapshot sets ' || ($1::bigint)::text, 0))",
        &[&log_id],
    )?;
    let id = set.id();
    let offset = i64::try_from(set.offset).unwrap_or(i64::MAX);
    let stored = query(
        &mut tx,
        statements,
        "SELECT event_offset FROM snapshot_sets WHERE log_id = $1 AND set_id = $2",
        &[&log_id, &id],
    )?;
    if let Some(o) = stored
        .first()
        .map(|r| r.get::<_, i64>(0))
        .filter(|o| *o >= offset)
    {
        return Ok(Upload::Kept(o as u64));
    }
    // Each stream's version now, or one below its first event after the offset.
    let streams = query(
        &mut tx,
        statements,
        "SELECT s.stream, coalesce(t.first - 1, s.version)
         FROM streams s LEFT JOIN (
             SELECT stream, min(version) AS first FROM events
             WHERE log_id = $1 AND event_offset > $2 GROUP BY stream) t ON t.stream = s.stream
         WHERE s.log_id = $1",
        &[&log_id, &offset],
    )?;
    let streams = streams
        .iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1).max(0) as u64))
        .collect();
    let bytes = super::sealed(set, streams);
    let latest = query(
        &mut tx,
        statements,
        "SELECT max(stored_at) FROM snapshot_sets WHERE log_id = $1",
        &[&log_id],
    )?;
    let latest: Option<i64> = latest.first().and_then(|r| r.get(0));
    let at = super::stored_at(latest.map(|t| t as u64)) as i64;
    let written = execute(
        &mut tx,
        statements,
        "INSERT INTO snapshot_sets (log_id, set_id, event_offset, stored_at, bytes)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (log_id, set_id) DO UPDATE SET event_offset = EXCLUDED.event_offset,
             stored_at = EXCLUDED.stored_at, bytes = EXCLUDED.bytes
         WHERE snapshot_sets.event_offset < EXCLUDED.event_offset",
        &[&log_id, &id, &offset, &at, &bytes],
    )?;
    if written == 0 {
        // Another upload of this set, at this offset or later, committed meanwhile.
        let stored = query(
            &mut tx,
            statements,
            "SELECT event_offset FROM snapshot_sets WHERE log_id = $1 AND set_id = $2",
            &[&log_id, &id],
        )?;
        let o = stored.first().map_or(offset, |r| r.get::<_, i64>(0));
        return Ok(Upload::Kept(o as u64));
    }
    execute(
        &mut tx,
        statements,
        "DELETE FROM snapshot_sets WHERE log_id = $1 AND set_id NOT IN (
             SELECT set_id FROM snapshot_sets WHERE log_id = $1
             ORDER BY stored_at DESC LIMIT $2)",
        &[&log_id, &(super::MAX_SNAPSHOT_SETS as i64)],
    )?;
    tx.commit()?;
    Ok(Upload::Stored)
}

fn id_of(bytes: &[u8]) -> Result<[u8; 16], StoreError> {
    bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt("an event id is not 16 bytes".into()))
}

/// Everything the commit rules may ask about a group, in one round trip; `k` says which of
/// the four lookups a row answers: batch records by (client, batch), stored events by id,
/// clients, stream versions. Each key is looked up on its own (a LATERAL subquery with LIMIT 1
/// cannot be flattened into a join), so the cost follows the keys a group brings, never the
/// log's size. Written as `id = ANY($4)` and joins, the planner, led by statistics that lag a
/// growing table, read the log's whole `events_pkey` range and filtered it, once per commit
/// (178 ms for 1,000 ids over 600,000 events; 18.8 ms a group on average over the bench).
const LOOKUP: &str =
    "SELECT 1 AS k, b.client AS name, b.batch AS x, b.first_offset AS y, b.count AS z,
            NULL::bytea AS id, NULL::text AS owner
       FROM UNNEST($2::text[], $3::bigint[]) AS q(client, batch)
       CROSS JOIN LATERAL (SELECT * FROM batches b
         WHERE b.log_id = $1 AND b.client = q.client AND b.batch = q.batch LIMIT 1) b
     UNION ALL
     SELECT 2, NULL, e.event_offset, e.version, NULL, e.id, NULL
       FROM UNNEST($4::bytea[]) AS q(id)
       CROSS JOIN LATERAL (SELECT event_offset, version, id FROM events e
         WHERE e.log_id = $1 AND e.id = q.id LIMIT 1) e
     UNION ALL
     SELECT 3, c.client, c.epoch, NULL, NULL, NULL, c.owner
       FROM UNNEST($6::text[]) AS q(client)
       CROSS JOIN LATERAL (SELECT * FROM clients c
         WHERE c.log_id = $1 AND c.client = q.client LIMIT 1) c
     UNION ALL
     SELECT 4, s.stream, s.version, NULL, NULL, NULL, NULL
       FROM UNNEST($5::text[]) AS q(stream)
       CROSS JOIN LATERAL (SELECT * FROM streams s
         WHERE s.log_id = $1 AND s.stream = q.stream LIMIT 1) s";

/// One log inside an open transaction that holds its row lock.
///
/// Round trips dominate small pushes, so everything the commit rules may ask about a group of
/// requests is loaded in four queries up front, and accepted batches are written in four
/// statements at the end; in between these maps answer, kept current by each write.
struct PgLog<'a> {
    tx: Transaction<'a>,
    statements: &'a mut HashMap<&'static str, Statement>,
    log_id: i64,
    head: u64,
    /// The head when the transaction began: offsets above it are in `events`, not yet written.
    start: u64,
    batches: HashMap<(String, u64), BatchRecord>,
    ids: HashMap<[u8; 16], Placed>,
    epochs: HashMap<String, u64>,
    owners: HashMap<String, String>,
    versions: HashMap<String, u64>,
    events: Vec<Event>,
    new_batches: Vec<(String, u64, u64, u64)>,
}

impl<'a> PgLog<'a> {
    fn load(
        mut tx: Transaction<'a>,
        statements: &'a mut HashMap<&'static str, Statement>,
        log_id: i64,
        head: u64,
        requests: &[PushJob],
    ) -> Result<PgLog<'a>, StoreError> {
        let all = || requests.iter().flat_map(|j| &j.batches);
        let clients: Vec<&str> = all().map(|b| b.client.as_str()).collect();
        let numbers: Vec<i64> = all().map(|b| b.batch as i64).collect();
        let id_bytes: Vec<[u8; 16]> = all()
            .flat_map(|b| b.events.iter().map(|e| e.id.to_bytes()))
            .collect();
        let ids: Vec<&[u8]> = id_bytes.iter().map(|b| &b[..]).collect();
        let streams: BTreeSet<&str> = all()
            .flat_map(|b| b.events.iter().map(|e| e.stream.as_str()))
            .collect();
        let streams: Vec<&str> = streams.into_iter().collect();

        let distinct: BTreeSet<&str> = clients.iter().copied().collect();
        let distinct: Vec<&str> = distinct.into_iter().collect();

        let rows = query(
            &mut tx,
            statements,
            LOOKUP,
            &[&log_id, &clients, &numbers, &ids, &streams, &distinct],
        )?;
        let mut batches = HashMap::new();
        let mut found = HashMap::new();
        let mut epochs = HashMap::new();
        let mut owners = HashMap::new();
        let mut versions = HashMap::new();
        for r in &rows {
            let x = r.get::<_, i64>(2) as u64;
            match r.get::<_, i32>(0) {
                1 => {
                    let record = BatchRecord {
                        first: r.get::<_, i64>(3) as u64,
                        count: r.get::<_, i64>(4) as u64,
                    };
                    batches.insert((r.get(1), x), record);
                }
                2 => {
                    let placed = Placed {
                        offset: x,
                        version: r.get::<_, i64>(3) as u64,
                    };
                    found.insert(id_of(r.get(5))?, placed);
                }
                3 => {
                    let client: String = r.get(1);
                    if let Some(owner) = r.get::<_, Option<String>>(6) {
                        owners.insert(client.clone(), owner);
                    }
                    epochs.insert(client, x);
                }
                _ => {
                    versions.insert(r.get(1), x);
                }
            }
        }
        Ok(PgLog {
            tx,
            statements,
            log_id,
            head,
            start: head,
            batches,
            ids: found,
            epochs,
            owners,
            versions,
            events: Vec::new(),
            new_batches: Vec::new(),
        })
    }

    /// Writes the accepted batches of the whole group, the new head and the notification for
    /// other instances, in one statement.
    fn flush(&mut self, note: (&str, &str)) -> Result<(), StoreError> {
        if self.events.is_empty() {
            return Ok(());
        }
        let ev = &self.events;
        let offsets: Vec<i64> = ev.iter().map(|e| e.seq as i64).collect();
        let id_bytes: Vec<[u8; 16]> = ev.iter().map(|e| e.id.to_bytes()).collect();
        let ids: Vec<&[u8]> = id_bytes.iter().map(|b| &b[..]).collect();
        let streams: Vec<&str> = ev.iter().map(|e| e.stream.as_str()).collect();
        let versions: Vec<i64> = ev.iter().map(|e| e.version as i64).collect();
        let types: Vec<&str> = ev.iter().map(|e| e.event_type.as_str()).collect();
        let data: Vec<&str> = ev.iter().map(|e| e.data.as_str()).collect();
        let metas: Vec<Option<&str>> = ev.iter().map(|e| e.meta.as_deref()).collect();
        let times: Vec<i64> = ev.iter().map(|e| e.time as i64).collect();
        let origins: Vec<&str> = ev.iter().map(|e| e.origin.as_str()).collect();
        let nb = &self.new_batches;
        let clients: Vec<&str> = nb.iter().map(|b| b.0.as_str()).collect();
        let numbers: Vec<i64> = nb.iter().map(|b| b.1 as i64).collect();
        let firsts: Vec<i64> = nb.iter().map(|b| b.2 as i64).collect();
        let counts: Vec<i64> = nb.iter().map(|b| b.3 as i64).collect();
        // One row per key: an upsert may not touch the same row twice in one statement.
        let epochs: BTreeMap<&str, i64> = self
            .epochs
            .iter()
            .filter(|(c, _)| clients.contains(&c.as_str()))
            .map(|(c, e)| (c.as_str(), *e as i64))
            .collect();
        let (epoch_clients, epoch_values): (Vec<&str>, Vec<i64>) = epochs.into_iter().unzip();
        let touched: BTreeSet<&str> = streams.iter().copied().collect();
        let (stream_names, stream_versions): (Vec<&str>, Vec<i64>) = touched
            .into_iter()
            .map(|s| (s, self.versions[s] as i64))
            .unzip();
        let head = self.head as i64;
        execute(
            &mut self.tx,
            self.statements,
            "WITH e AS (
               INSERT INTO events (log_id, event_offset, id, stream, version, type, data, meta, time, origin)
               SELECT $1, o, i, s, v, t, d, m, tm, og
                 FROM UNNEST($2::bigint[], $3::bytea[], $4::text[], $5::bigint[], $6::text[],
                             $7::text[], $8::text[], $9::bigint[], $10::text[])
                      AS u(o, i, s, v, t, d, m, tm, og)),
             b AS (
               INSERT INTO batches (log_id, client, batch, first_offset, count)
               SELECT $1, c, n, f, k FROM UNNEST($11::text[], $12::bigint[], $13::bigint[], $14::bigint[])
                      AS u(c, n, f, k)),
             c AS (
               INSERT INTO clients (log_id, client, epoch)
               SELECT $1, c, e FROM UNNEST($15::text[], $16::bigint[]) AS u(c, e)
               ON CONFLICT (log_id, client) DO UPDATE SET epoch = GREATEST(clients.epoch, EXCLUDED.epoch)),
             s AS (
               INSERT INTO streams (log_id, stream, version)
               SELECT $1, s, v FROM UNNEST($17::text[], $18::bigint[]) AS u(s, v)
               ON CONFLICT (log_id, stream) DO UPDATE SET version = EXCLUDED.version),
             h AS (UPDATE logs SET head = $19 WHERE id = $1)
             SELECT pg_notify($20, $21)",
            &[
                &self.log_id, &offsets, &ids, &streams, &versions, &types, &data, &metas, &times,
                &origins, &clients, &numbers, &firsts, &counts, &epoch_clients, &epoch_values,
                &stream_names, &stream_versions, &head, &note.0, &note.1,
            ],
        )?;
        self.events.clear();
        self.new_batches.clear();
        Ok(())
    }
}

impl LogStore for PgLog<'_> {
    type Error = StoreError;

    fn head(&mut self) -> Result<u64, StoreError> {
        Ok(self.head)
    }

    fn client_epoch(&mut self, client: &str) -> Result<u64, StoreError> {
        Ok(self.epochs.get(client).copied().unwrap_or(0))
    }

    fn client_owner(&mut self, client: &str) -> Result<Option<String>, StoreError> {
        Ok(self.owners.get(client).cloned())
    }

    fn raise_epoch(&mut self, client: &str, epoch: u64) -> Result<(), StoreError> {
        // Rare (a new leader's first batch was not accepted): a round trip of its own.
        execute(
            &mut self.tx,
            self.statements,
            "INSERT INTO clients (log_id, client, epoch) VALUES ($1, $2, $3)
             ON CONFLICT (log_id, client) DO UPDATE SET epoch = GREATEST(clients.epoch, EXCLUDED.epoch)",
            &[&self.log_id, &client, &(epoch as i64)],
        )?;
        let e = self.epochs.entry(client.to_owned()).or_insert(0);
        *e = (*e).max(epoch);
        Ok(())
    }

    fn bind_client(&mut self, client: &str, owner: &str) -> Result<(), StoreError> {
        // Rare (a device's first push), so a round trip of its own; the row lock on the log
        // keeps two first pushes from racing.
        execute(
            &mut self.tx,
            self.statements,
            "INSERT INTO clients (log_id, client, epoch, owner) VALUES ($1, $2, 0, $3)
             ON CONFLICT (log_id, client) DO UPDATE SET owner = EXCLUDED.owner",
            &[&self.log_id, &client, &owner],
        )?;
        self.owners.insert(client.to_owned(), owner.to_owned());
        Ok(())
    }

    fn batch_record(
        &mut self,
        client: &str,
        batch: u64,
    ) -> Result<Option<BatchRecord>, StoreError> {
        Ok(self.batches.get(&(client.to_owned(), batch)).copied())
    }

    fn events_at(&mut self, first: u64, count: u64) -> Result<Vec<(EventId, u64)>, StoreError> {
        if first > self.start {
            // Written by this transaction, still in memory.
            let from = (first - self.start - 1) as usize;
            let to = (from + count as usize).min(self.events.len());
            return Ok(self.events[from..to]
                .iter()
                .map(|e| (e.id, e.version))
                .collect());
        }
        let rows = query(
            &mut self.tx,
            self.statements,
            "SELECT id, version FROM events WHERE log_id = $1 AND event_offset >= $2
             AND event_offset < $3 ORDER BY event_offset",
            &[&self.log_id, &(first as i64), &((first + count) as i64)],
        )?;
        rows.iter()
            .map(|r| {
                Ok((
                    EventId::from_bytes(id_of(r.get(0))?),
                    r.get::<_, i64>(1) as u64,
                ))
            })
            .collect()
    }

    fn find_ids(&mut self, ids: &[EventId]) -> Result<Vec<Option<Placed>>, StoreError> {
        Ok(ids
            .iter()
            .map(|id| self.ids.get(&id.to_bytes()).copied())
            .collect())
    }

    fn stream_version(&mut self, stream: &str) -> Result<u64, StoreError> {
        Ok(self.versions.get(stream).copied().unwrap_or(0))
    }

    fn write(&mut self, c: &Commit<'_>) -> Result<(), StoreError> {
        for e in &c.events {
            let placed = Placed {
                offset: e.seq,
                version: e.version,
            };
            self.ids.insert(e.id.to_bytes(), placed);
        }
        if let Some(first) = c.events.first() {
            let record = BatchRecord {
                first: first.seq,
                count: c.events.len() as u64,
            };
            self.batches.insert((c.client.to_owned(), c.batch), record);
            self.new_batches
                .push((c.client.to_owned(), c.batch, record.first, record.count));
        }
        let epoch = self.epochs.entry(c.client.to_owned()).or_insert(0);
        *epoch = (*epoch).max(c.epoch);
        for (s, v) in &c.versions {
            self.versions.insert(s.clone(), *v);
        }
        self.events.extend(c.events.iter().cloned());
        self.head = c.head;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// EXPLAIN's JSON answer as text (the `json` type's binary form is its text).
    struct JsonText(String);

    impl<'a> postgres::types::FromSql<'a> for JsonText {
        fn from_sql(
            _: &postgres::types::Type,
            raw: &'a [u8],
        ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
            Ok(JsonText(std::str::from_utf8(raw)?.to_owned()))
        }

        fn accepts(ty: &postgres::types::Type) -> bool {
            *ty == postgres::types::Type::JSON
        }
    }

    /// Every scan of `node`'s plan tree (EXPLAIN's JSON) on a table, as (table, node type,
    /// index condition).
    fn scans(node: &serde_json::Value, out: &mut Vec<(String, String, String)>) {
        if let Some(table) = node["Relation Name"].as_str() {
            out.push((
                table.to_owned(),
                node["Node Type"].as_str().unwrap_or_default().to_owned(),
                node["Index Cond"].as_str().unwrap_or_default().to_owned(),
            ));
        }
        for child in node["Plans"].as_array().into_iter().flatten() {
            scans(child, out);
        }
    }

    /// A log of 100,000 events the planner has no statistics for yet (as when a table grows
    /// faster than autovacuum analyzes it), asked about a group of 1,000 new ids: every table
    /// is reached through its key, one key at a time, never by reading the log's whole range.
    #[test]
    fn the_lookup_reads_keys_never_the_log() {
        let url = std::env::var("LOGFOLD_TEST_PG").expect("LOGFOLD_TEST_PG is not set");
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let schema = format!("plan_{}_{}", std::process::id(), nanos % 1_000_000_000_000);
        // The sync client blocks on a runtime of its own: fine in a plain test thread.
        let mut c = Client::connect(&url, NoTls).unwrap();
        c.batch_execute(&schema_sql(&schema)).unwrap();
        c.batch_execute(
            "ALTER TABLE events SET (autovacuum_enabled = false);
             ALTER TABLE batches SET (autovacuum_enabled = false);
             ALTER TABLE clients SET (autovacuum_enabled = false);
             INSERT INTO logs (name, head, uid) VALUES ('l', 100000, 'x');
             INSERT INTO events SELECT 1, i, decode(md5(i::text), 'hex'), 's' || (i % 50), i,
                    't', '{}', NULL, 0, 'c' || (i / 100) FROM generate_series(1, 100000) i;
             INSERT INTO batches SELECT 1, 'c' || (i / 10), i, i * 10, 10
               FROM generate_series(1, 10000) i;
             INSERT INTO clients SELECT 1, 'c' || i, 1, NULL FROM generate_series(0, 1000) i;
             INSERT INTO streams SELECT 1, 's' || i, 1 FROM generate_series(0, 49) i;",
        )
        .unwrap();
        let ids: Vec<Vec<u8>> = (0..1000u32)
            .map(|i| {
                let mut id = vec![0xee; 16];
                id[..4].copy_from_slice(&i.to_be_bytes());
                id
            })
            .collect();
        let ids: Vec<&[u8]> = ids.iter().map(|b| &b[..]).collect();
        let clients: Vec<String> = (0..10).map(|i| format!("new-{i}")).collect();
        let numbers: Vec<i64> = (1..=10).collect();
        let streams: Vec<String> = (0..50).map(|i| format!("s{i}")).collect();
        let explain = format!("EXPLAIN (FORMAT JSON) {LOOKUP}");
        // Planned for these values (the first executions), and generic (the later ones).
        let mut plans = Vec::new();
        for mode in ["force_custom_plan", "force_generic_plan"] {
            c.batch_execute(&format!("SET plan_cache_mode = {mode}"))
                .unwrap();
            let row = c
                .query_one(
                    explain.as_str(),
                    &[&1i64, &clients, &numbers, &ids, &streams, &clients],
                )
                .unwrap();
            let JsonText(text) = row.get(0);
            plans.push(text);
        }
        c.batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
            .unwrap();
        for text in &plans {
            check_plan(text);
        }
    }

    fn check_plan(text: &str) {
        let plan: serde_json::Value = serde_json::from_str(text).unwrap();
        let mut found = Vec::new();
        scans(&plan[0]["Plan"], &mut found);
        let tables: BTreeSet<&str> = found.iter().map(|(t, _, _)| t.as_str()).collect();
        assert_eq!(
            tables,
            ["batches", "clients", "events", "streams"].into(),
            "{text}"
        );
        for (table, node, cond) in &found {
            assert!(
                node == "Index Scan" || node == "Index Only Scan",
                "{table} is read by a {node}, not key by key:\n{text}"
            );
            assert!(
                cond.contains("= q"),
                "{table}'s index is searched for {cond:?}, not for each key:\n{text}"
            );
        }
    }
}
