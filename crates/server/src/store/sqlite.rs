//! SQLite: one writer connection (appends are serialized anyway), a few reader connections.
//!
//! WAL with `synchronous=FULL`: a push is acknowledged only after its commit is fsynced, so an
//! acknowledged batch survives a SIGKILL of the server and also a power loss. (`NORMAL` would
//! survive the process crash but could lose the last commits on power loss.)

use std::sync::Mutex;

use logfold_core::commit::{BatchRecord, Commit, LogStore, Placed};
use logfold_core::{Event, EventId, Limits};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use logfold_core::protocol::snapshots::SnapshotSet;

use super::{Answer, PushJob, StoreError, StoredSet, Tail, Upload};

/// The offset of `log_id`'s stored snapshot set `id`, if any.
fn stored_offset(conn: &Connection, log_id: i64, id: &str) -> rusqlite::Result<Option<u64>> {
    conn.query_row(
        "SELECT event_offset FROM snapshot_sets WHERE log_id = ?1 AND set_id = ?2",
        params![log_id, id],
        |r| r.get::<_, i64>(0),
    )
    .optional()
    .map(|o| o.map(|o| o as u64))
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS logs (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    head INTEGER NOT NULL,
    uid TEXT
);
CREATE TABLE IF NOT EXISTS events (
    log_id INTEGER NOT NULL,
    event_offset INTEGER NOT NULL,
    id BLOB NOT NULL,
    stream TEXT NOT NULL,
    version INTEGER NOT NULL,
    type TEXT NOT NULL,
    data TEXT NOT NULL,
    meta TEXT,
    time INTEGER NOT NULL,
    origin TEXT NOT NULL,
    PRIMARY KEY (log_id, event_offset)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS events_by_id ON events (log_id, id);
CREATE TABLE IF NOT EXISTS streams (
    log_id INTEGER NOT NULL,
    stream TEXT NOT NULL,
    version INTEGER NOT NULL,
    PRIMARY KEY (log_id, stream)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS batches (
    log_id INTEGER NOT NULL,
    client TEXT NOT NULL,
    batch INTEGER NOT NULL,
    first_offset INTEGER NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (log_id, client, batch)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS clients (
    log_id INTEGER NOT NULL,
    client TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    owner TEXT,
    PRIMARY KEY (log_id, client)
) WITHOUT ROWID;
-- A rowid table: its rows are large, which WITHOUT ROWID tables are not made for.
CREATE TABLE IF NOT EXISTS snapshot_sets (
    log_id INTEGER NOT NULL,
    set_id TEXT NOT NULL,
    event_offset INTEGER NOT NULL,
    stored_at INTEGER NOT NULL,
    bytes BLOB NOT NULL,
    PRIMARY KEY (log_id, set_id)
);
";

/// Every stream's version at offset `?2` of log `?1`: its version now, or one below its first
/// event after the offset (0 for a stream begun after it). Reads only the tail past the offset.
const VERSIONS_AT: &str = "
SELECT s.stream, coalesce(t.first - 1, s.version)
FROM streams s LEFT JOIN (
    SELECT stream, min(version) AS first FROM events
    WHERE log_id = ?1 AND event_offset > ?2 GROUP BY stream) t ON t.stream = s.stream
WHERE s.log_id = ?1";

/// Columns added after the first release, for databases created before them; logs stored
/// before identities existed get one now.
fn migrate(conn: &Connection) -> Result<(), rusqlite::Error> {
    let has = |table: &str, column: &str| -> Result<bool, rusqlite::Error> {
        conn.query_row(
            "SELECT count(*) > 0 FROM pragma_table_info(?1) WHERE name = ?2",
            [table, column],
            |r| r.get(0),
        )
    };
    if !has("clients", "owner")? {
        conn.execute_batch("ALTER TABLE clients ADD COLUMN owner TEXT")?;
    }
    if !has("logs", "uid")? {
        conn.execute_batch("ALTER TABLE logs ADD COLUMN uid TEXT")?;
    }
    let unnamed: Vec<i64> = conn
        .prepare("SELECT id FROM logs WHERE uid IS NULL")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for id in unnamed {
        conn.execute(
            "UPDATE logs SET uid = ?2 WHERE id = ?1",
            params![id, super::new_log_id()],
        )?;
    }
    Ok(())
}

/// A SQLite database file holding any number of logs.
#[derive(Debug)]
pub struct SqliteStore {
    path: String,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
}

fn connect(path: &str) -> Result<Connection, rusqlite::Error> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(conn)
}

/// Offsets past `i64::MAX` cannot exist; saturating keeps `after=u64::MAX` meaning "nothing
/// after", where a plain cast would wrap to -1 and read the log from its start.
fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn id_bytes(row: &rusqlite::Row<'_>, ix: usize) -> Result<EventId, rusqlite::Error> {
    let bytes: [u8; 16] = row.get(ix)?;
    Ok(EventId::from_bytes(bytes))
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &str) -> Result<SqliteStore, StoreError> {
        let writer = connect(path)?;
        writer.execute_batch(SCHEMA)?;
        migrate(&writer)?;
        Ok(SqliteStore {
            path: path.to_owned(),
            writer: Mutex::new(writer),
            readers: Mutex::new(Vec::new()),
        })
    }

    /// Commits the batches of several push requests into `log`, in order, in one
    /// `BEGIN IMMEDIATE` transaction; one answer per request.
    pub fn push(
        &self,
        log: &str,
        requests: &[PushJob],
        limits: &Limits,
    ) -> Result<Vec<Answer>, StoreError> {
        let mut conn = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let found: Option<(i64, i64, String)> = tx
            .query_row(
                "SELECT id, head, uid FROM logs WHERE name = ?1",
                [log],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let (log_id, head, uid) = match found {
            Some(f) => f,
            None => {
                let uid = super::new_log_id();
                tx.execute(
                    "INSERT INTO logs (name, head, uid) VALUES (?1, 0, ?2)",
                    params![log, uid],
                )?;
                (tx.last_insert_rowid(), 0, uid)
            }
        };
        let start = head as u64;
        let mut store = SqliteLog {
            tx: &tx,
            log_id,
            head: start,
        };
        let answers = super::commit_pushes(&mut store, requests, limits, &uid)?;
        let head = store.head;
        if head != start {
            tx.execute(
                "UPDATE logs SET head = ?2 WHERE id = ?1",
                params![log_id, to_i64(head)],
            )?;
        }
        tx.commit()?;
        Ok(answers)
    }

    /// Up to `limit` events after `after`, with the head, from one snapshot.
    pub fn read(
        &self,
        log: &str,
        after: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Tail, StoreError> {
        self.with_reader(|conn| read_in(conn, log, after, limit, max_bytes))
    }

    /// See [`super::Store::put_snapshots`]; in one `BEGIN IMMEDIATE` transaction on the
    /// writer, so no push moves the head or the streams meanwhile.
    pub fn put_snapshots(&self, log: &str, set: SnapshotSet) -> Result<Upload, StoreError> {
        let id = set.id();
        let offset = set.offset;
        // The checks and the versions on a reader, from one snapshot, so the one writer that
        // every push waits for is held only to store: versions at an offset at or below the
        // head never change, so they stay true whatever is pushed meanwhile.
        let checked = self.with_reader(|conn| {
            let tx = conn.transaction()?;
            let found: Option<(i64, i64)> = tx
                .query_row("SELECT id, head FROM logs WHERE name = ?1", [log], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()?;
            let (log_id, head) = found.unwrap_or((0, 0));
            if found.is_none() || (head as u64) < offset {
                return Ok(Err(Upload::Ahead(head as u64)));
            }
            if let Some(kept) = stored_offset(&tx, log_id, &id)?.filter(|o| *o >= offset) {
                return Ok(Err(Upload::Kept(kept)));
            }
            let streams = tx
                .prepare(VERSIONS_AT)?
                .query_map(params![log_id, to_i64(offset)], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?.max(0) as u64))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Ok((log_id, streams)))
        })?;
        let (log_id, streams) = match checked {
            Ok(v) => v,
            Err(answer) => return Ok(answer),
        };
        let bytes = super::sealed(set, streams);
        let mut conn = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Another upload of this set may have stored a newer one meanwhile.
        if let Some(kept) = stored_offset(&tx, log_id, &id)?.filter(|o| *o >= offset) {
            return Ok(Upload::Kept(kept));
        }
        let latest: Option<i64> = tx.query_row(
            "SELECT max(stored_at) FROM snapshot_sets WHERE log_id = ?1",
            [log_id],
            |r| r.get(0),
        )?;
        let at = super::stored_at(latest.map(|t| t as u64));
        tx.execute(
            "INSERT INTO snapshot_sets (log_id, set_id, event_offset, stored_at, bytes)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (log_id, set_id) DO UPDATE SET event_offset = excluded.event_offset,
                 stored_at = excluded.stored_at, bytes = excluded.bytes",
            params![log_id, id, to_i64(offset), to_i64(at), bytes],
        )?;
        tx.execute(
            "DELETE FROM snapshot_sets WHERE log_id = ?1 AND set_id NOT IN (
                SELECT set_id FROM snapshot_sets WHERE log_id = ?1
                ORDER BY stored_at DESC LIMIT ?2)",
            params![log_id, super::MAX_SNAPSHOT_SETS as i64],
        )?;
        tx.commit()?;
        Ok(Upload::Stored)
    }

    /// `log`'s snapshot set `set_id` with the head and identity, from one snapshot.
    pub fn snapshots(&self, log: &str, set_id: &str) -> Result<Option<StoredSet>, StoreError> {
        self.with_reader(|conn| {
            let found = conn
                .query_row(
                    "SELECT l.head, l.uid, s.bytes FROM logs l JOIN snapshot_sets s
                     ON s.log_id = l.id AND s.set_id = ?2 WHERE l.name = ?1",
                    params![log, set_id],
                    |r| {
                        Ok(StoredSet {
                            head: r.get::<_, i64>(0)? as u64,
                            log_id: r.get(1)?,
                            bytes: r.get(2)?,
                        })
                    },
                )
                .optional()?;
            Ok(found)
        })
    }

    /// Runs `f` on a pooled reader connection (a new one when none is idle).
    fn with_reader<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let pooled = self.readers.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut conn = match pooled {
            Some(c) => c,
            None => connect(&self.path)?,
        };
        let out = f(&mut conn);
        if out.is_ok() {
            let mut pool = self.readers.lock().unwrap_or_else(|e| e.into_inner());
            if pool.len() < 8 {
                pool.push(conn);
            }
        }
        out
    }
}

fn read_in(
    conn: &mut Connection,
    log: &str,
    after: u64,
    limit: usize,
    max_bytes: usize,
) -> Result<Tail, StoreError> {
    let tx = conn.transaction()?;
    let found: Option<(i64, i64, String)> = tx
        .query_row(
            "SELECT id, head, uid FROM logs WHERE name = ?1",
            [log],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let Some((log_id, head, uid)) = found else {
        return Ok(Tail::none());
    };
    let mut events = Vec::with_capacity(limit.min(10_000));
    {
        let mut stmt = tx.prepare_cached(
            "SELECT event_offset, id, stream, version, type, data, meta, time, origin
             FROM events WHERE log_id = ?1 AND event_offset > ?2
             ORDER BY event_offset LIMIT ?3",
        )?;
        let mut rows = stmt.query(params![log_id, to_i64(after), limit as i64])?;
        // Rows are read one at a time, so stopping at the budget bounds memory.
        let mut page = super::Page::new(max_bytes);
        while let Some(r) = rows.next()? {
            let offset = r.get::<_, i64>(0)? as u64;
            let event = Event {
                id: id_bytes(r, 1)?,
                stream: r.get(2)?,
                version: r.get::<_, i64>(3)? as u64,
                event_type: r.get(4)?,
                data: r.get(5)?,
                meta: r.get(6)?,
                time: r.get::<_, i64>(7)? as u64,
                origin: r.get(8)?,
                seq: offset,
                offset: Some(offset),
            };
            if !page.fits(&event) {
                break;
            }
            events.push(event);
        }
    }
    tx.commit()?;
    Ok(Tail {
        events,
        head: head as u64,
        log_id: Some(uid),
    })
}

/// One log inside an open write transaction.
struct SqliteLog<'a> {
    tx: &'a rusqlite::Transaction<'a>,
    log_id: i64,
    head: u64,
}

impl LogStore for SqliteLog<'_> {
    type Error = rusqlite::Error;

    fn head(&mut self) -> Result<u64, Self::Error> {
        Ok(self.head)
    }

    fn client_epoch(&mut self, client: &str) -> Result<u64, Self::Error> {
        let mut stmt = self
            .tx
            .prepare_cached("SELECT epoch FROM clients WHERE log_id = ?1 AND client = ?2")?;
        let epoch: Option<i64> = stmt
            .query_row(params![self.log_id, client], |r| r.get(0))
            .optional()?;
        Ok(epoch.unwrap_or(0) as u64)
    }

    fn client_owner(&mut self, client: &str) -> Result<Option<String>, Self::Error> {
        let mut stmt = self
            .tx
            .prepare_cached("SELECT owner FROM clients WHERE log_id = ?1 AND client = ?2")?;
        let owner: Option<Option<String>> = stmt
            .query_row(params![self.log_id, client], |r| r.get(0))
            .optional()?;
        Ok(owner.flatten())
    }

    fn raise_epoch(&mut self, client: &str, epoch: u64) -> Result<(), Self::Error> {
        self.tx
            .prepare_cached(
                "INSERT INTO clients (log_id, client, epoch) VALUES (?1, ?2, ?3)
                 ON CONFLICT (log_id, client) DO UPDATE SET epoch = max(epoch, excluded.epoch)",
            )?
            .execute(params![self.log_id, client, to_i64(epoch)])?;
        Ok(())
    }

    fn bind_client(&mut self, client: &str, owner: &str) -> Result<(), Self::Error> {
        self.tx
            .prepare_cached(
                "INSERT INTO clients (log_id, client, epoch, owner) VALUES (?1, ?2, 0, ?3)
                 ON CONFLICT (log_id, client) DO UPDATE SET owner = excluded.owner",
            )?
            .execute(params![self.log_id, client, owner])?;
        Ok(())
    }

    fn batch_record(
        &mut self,
        client: &str,
        batch: u64,
    ) -> Result<Option<BatchRecord>, Self::Error> {
        let mut stmt = self.tx.prepare_cached(
            "SELECT first_offset, count FROM batches WHERE log_id = ?1 AND client = ?2 AND batch = ?3",
        )?;
        stmt.query_row(params![self.log_id, client, to_i64(batch)], |r| {
            Ok(BatchRecord {
                first: r.get::<_, i64>(0)? as u64,
                count: r.get::<_, i64>(1)? as u64,
            })
        })
        .optional()
    }

    fn events_at(&mut self, first: u64, count: u64) -> Result<Vec<(EventId, u64)>, Self::Error> {
        let mut stmt = self.tx.prepare_cached(
            "SELECT id, version FROM events WHERE log_id = ?1 AND event_offset >= ?2
             AND event_offset < ?3 ORDER BY event_offset",
        )?;
        let rows = stmt.query_map(
            params![self.log_id, to_i64(first), to_i64(first + count)],
            |r| Ok((id_bytes(r, 0)?, r.get::<_, i64>(1)? as u64)),
        )?;
        rows.collect()
    }

    fn find_ids(&mut self, ids: &[EventId]) -> Result<Vec<Option<Placed>>, Self::Error> {
        let mut stmt = self.tx.prepare_cached(
            "SELECT event_offset, version FROM events WHERE log_id = ?1 AND id = ?2",
        )?;
        ids.iter()
            .map(|id| {
                stmt.query_row(params![self.log_id, &id.to_bytes()[..]], |r| {
                    Ok(Placed {
                        offset: r.get::<_, i64>(0)? as u64,
                        version: r.get::<_, i64>(1)? as u64,
                    })
                })
                .optional()
            })
            .collect()
    }

    fn stream_version(&mut self, stream: &str) -> Result<u64, Self::Error> {
        let mut stmt = self
            .tx
            .prepare_cached("SELECT version FROM streams WHERE log_id = ?1 AND stream = ?2")?;
        let v: Option<i64> = stmt
            .query_row(params![self.log_id, stream], |r| r.get(0))
            .optional()?;
        Ok(v.unwrap_or(0) as u64)
    }

    fn write(&mut self, c: &Commit<'_>) -> Result<(), Self::Error> {
        let mut insert = self.tx.prepare_cached(
            "INSERT INTO events (log_id, event_offset, id, stream, version, type, data, meta, time, origin)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?;
        for e in &c.events {
            insert.execute(params![
                self.log_id,
                to_i64(e.seq),
                &e.id.to_bytes()[..],
                e.stream,
                to_i64(e.version),
                e.event_type,
                e.data,
                e.meta,
                to_i64(e.time),
                e.origin,
            ])?;
        }
        if let Some(first) = c.events.first() {
            self.tx
                .prepare_cached(
                    "INSERT INTO batches (log_id, client, batch, first_offset, count)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![
                    self.log_id,
                    c.client,
                    to_i64(c.batch),
                    to_i64(first.seq),
                    c.events.len() as i64
                ])?;
        }
        self.tx
            .prepare_cached(
                "INSERT INTO clients (log_id, client, epoch) VALUES (?1, ?2, ?3)
                 ON CONFLICT (log_id, client) DO UPDATE SET epoch = max(epoch, excluded.epoch)",
            )?
            .execute(params![self.log_id, c.client, to_i64(c.epoch)])?;
        let mut upsert = self.tx.prepare_cached(
            "INSERT INTO streams (log_id, stream, version) VALUES (?1, ?2, ?3)
             ON CONFLICT (log_id, stream) DO UPDATE SET version = excluded.version",
        )?;
        for (stream, version) in &c.versions {
            upsert.execute(params![self.log_id, stream, to_i64(*version)])?;
        }
        self.head = c.head;
        Ok(())
    }
}
