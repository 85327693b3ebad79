//! The browser log: an append-only event log in IndexedDB, with group commit and compaction.
//!
//! Stores (all created with the first format so later features need no schema change):
//! `segments` (key: the segment's last position; value: an encoded segment), `streams`
//! (stream → version as of `meta.streamsThrough`), `meta` (format, clientId, head, compacted,
//! streamsThrough), `outbox`, `snapshots`, `rejections`. Keying a segment by its *last*
//! position lets a read "after n" start with one ranged `getAll` over keys `> n`.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::sync::Arc;

use futures_channel::oneshot;
use js_sys::{Array, Function, Uint8Array};
use logfold_core::segment::{Segment, SegmentError, SegmentWriter, TARGET_BYTES};
use logfold_core::sync::{check_batch, DEFAULT_PUSH_BYTES};
use logfold_core::table::{snapshot, Table, TableDef};
use logfold_core::{place, Batch, EventRef, IdGenerator, Limits, Placed};
use rexie::{ObjectStore, Rexie};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{IdbDatabase, IdbKeyRange, IdbObjectStore};

use crate::error::{CloseReason, Error};
use crate::idb;
use crate::tables::{table_snapshot_key, Tables};

mod sync;
pub use sync::{Pulled, Pushed, SyncMark};

/// The log format this code writes; stored in `meta` and in every segment.
pub const FORMAT: u32 = 1;
const SCHEMA_VERSION: u32 = 1;
const STORES: [&str; 6] = [
    "segments",
    "streams",
    "meta",
    "outbox",
    "snapshots",
    "rejections",
];
/// Small segments written since the last compaction before this handle compacts on its own.
const COMPACT_AFTER: u32 = 64;
/// Small segments after which compaction runs between appends rather than waiting for a pause.
const COMPACT_NOW: u32 = 4096;
/// How long appends must pause before a scheduled compaction runs, in milliseconds.
const IDLE_MS: i32 = 250;
/// The most segments one compaction transaction reads, so it never holds the store for long.
const COMPACT_BATCH: u32 = 1024;
/// Stream versions kept in memory; past this many the ones already in `streams` are dropped.
const VERSION_CACHE: usize = 100_000;
/// Streams changed since the last checkpoint after which one runs between appends.
const CHECKPOINT_NOW: usize = 20_000;
/// Segments per `getAll` when reading the log through (about 6 MiB when compacted).
const PAGE: u32 = 128;

/// Counters since this handle opened.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    /// Readwrite transactions committed (appends and compactions).
    pub transactions: u64,
    /// Segments written by appends.
    pub segments_written: u64,
    /// Segments merged away by compaction.
    pub segments_merged: u64,
    /// Compaction transactions.
    pub compactions: u64,
    /// Events appended through this handle.
    pub events_appended: u64,
    /// Events folded into the projections from IndexedDB (at open, and from other tabs).
    pub events_replayed: u64,
    /// Projection snapshots used at open.
    pub snapshots_loaded: u64,
    /// Snapshots found damaged or ahead of the log, and not used.
    pub snapshots_discarded: u64,
    /// Snapshots written.
    pub snapshots_written: u64,
    /// Projections that had no usable snapshot at open and were folded from the start.
    pub projections_rebuilt: u64,
    /// Sync: times the outbox overlay was rolled back and applied again on a new base.
    pub overlay_rebuilds: u64,
    /// Sync: outbox events folded into the overlay.
    pub overlay_events: u64,
    /// Sync: confirmed events folded into the base after open.
    pub base_events: u64,
    /// Sync: events pulled into the confirmed log by this tab.
    pub events_pulled: u64,
    /// Sync: events that moved from a log used without sync to the outbox at this open.
    pub events_migrated: u64,
}

/// How hard a commit works before it is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Flushed to disk before the append resolves: survives an OS crash or power loss.
    Strict,
    /// Handed to the OS before the append resolves: survives a browser crash, not an OS crash.
    Relaxed,
}

impl Durability {
    fn as_str(self) -> &'static str {
        match self {
            Durability::Strict => "strict",
            Durability::Relaxed => "relaxed",
        }
    }
}

/// What an append gave its events: one commit time, and per event its id, version and position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// Milliseconds since the Unix epoch, the same for the whole commit.
    pub time: u64,
    /// Per event, in batch order.
    pub events: Vec<Placed>,
}

type Reply = oneshot::Sender<Result<Appended, Error>>;

/// What `Logfold.open({ projections })` asks the log to keep up to date.
#[derive(Default)]
pub struct Projections {
    /// Declarative tables, folded here.
    pub tables: Vec<(String, Arc<TableDef>)>,
    /// The snapshot keys of the JS reducers, which JS folds from the events it is given.
    pub reducers: Vec<String>,
    /// The JS side: `start(reducerSnapshots)`, `fold(eventsJson, changesJson, seq, overlay)`,
    /// `rebase()` (back to the base: the outbox overlay is rolled back), `progress(done,
    /// total)` and `warn(message)`.
    pub hooks: Option<JsValue>,
}

impl Projections {
    fn call(&self, method: &str, args: &[JsValue]) {
        let Some(hooks) = &self.hooks else { return };
        let Ok(f) = js_sys::Reflect::get(hooks, &method.into()) else {
            return;
        };
        let Some(f) = f.dyn_ref::<Function>() else {
            return;
        };
        // The JS side catches its own failures; a throw here would only lose the message.
        let _ = f.apply(hooks, &args.iter().collect::<Array>());
    }

    /// `overlay`: the events are outbox events, folded on top of the base (see `sync`).
    fn fold(&self, events: Option<String>, changes: Option<String>, seq: u64, overlay: bool) {
        let text = |t: Option<String>| t.map_or(JsValue::NULL, |t| t.into());
        self.call(
            "fold",
            &[text(events), text(changes), key(seq), overlay.into()],
        );
    }

    /// The snapshot keys of the declarative tables.
    fn table_keys(&self) -> Vec<String> {
        self.tables
            .iter()
            .map(|(name, def)| table_snapshot_key(name, def))
            .collect()
    }

    fn warn(&self, message: &str) {
        self.call("warn", &[message.into()]);
    }
}

/// An open log. Cheap to clone (shared handle).
#[derive(Clone)]
pub struct Log(Rc<Inner>);

struct Inner {
    name: String,
    db: IdbDatabase,
    durability: Durability,
    client_id: String,
    ids: RefCell<IdGenerator>,
    limits: Limits,
    /// The largest push body a synced batch must fit in (checked at append).
    max_push_bytes: usize,
    head: Cell<u64>,
    closed: Cell<Option<CloseReason>>,
    queue: RefCell<Vec<(Batch, Reply)>>,
    writing: Cell<bool>,
    idle: RefCell<Vec<oneshot::Sender<()>>>,
    stats: Cell<Stats>,
    small_segments: Cell<u32>,
    /// Uncompressed bytes at which a commit cuts a segment (see `commit`).
    cut_at: Cell<usize>,
    compaction_scheduled: Cell<bool>,
    /// Stream versions as of stored head `versions_at`: every stream changed after the
    /// `streams` store's checkpoint, and any others read since (see `commit`).
    versions: RefCell<HashMap<String, u64>>,
    versions_at: Cell<u64>,
    /// Streams whose version is newer than the `streams` store's (see `checkpoint_streams`).
    dirty: RefCell<HashSet<String>>,
    on_close: RefCell<Option<Function>>,
    on_versionchange: RefCell<Option<Closure<dyn FnMut()>>>,
    projections: Projections,
    tables: Rc<RefCell<Tables>>,
    /// The outbox, for a synced log (see `sync`); `None` when the log confirms its own appends.
    outbox: RefCell<Option<sync::Mirror>>,
}

/// The IndexedDB database name of log `name`.
pub fn database_name(name: &str) -> String {
    format!("logfold:{name}")
}

fn storage(e: JsValue) -> Error {
    Error::from_dom(&e)
}

fn key(n: u64) -> JsValue {
    JsValue::from_f64(n as f64)
}

fn as_u64(v: &JsValue) -> u64 {
    v.as_f64().map_or(0, |f| f as u64)
}

/// Creates the schema if the database is new (rexie's builder), then opens the live
/// connection that handles `versionchange`.
async fn connect(name: &str) -> Result<IdbDatabase, Error> {
    let db_name = database_name(name);
    let mut builder = Rexie::builder(&db_name).version(SCHEMA_VERSION);
    for store in STORES {
        builder = builder.add_object_store(ObjectStore::new(store));
    }
    match builder.build().await {
        Ok(db) => db.close(),
        // rexie surfaces the DOMException only in its Debug text.
        Err(e) if format!("{e:?}").contains("VersionError") => {
            return Err(Error::UnsupportedFormat(0))
        }
        Err(e) => {
            return Err(Error::Storage {
                name: "OpenError".into(),
                message: format!("{e:?}"),
            })
        }
    }
    let req = idb::factory()
        .map_err(storage)?
        .open_with_u32(&db_name, SCHEMA_VERSION)
        .map_err(storage)?;
    let db: IdbDatabase = idb::request(&req).await.map_err(storage)?.unchecked_into();
    let names = db.object_store_names();
    if STORES.iter().any(|s| !names.contains(s)) {
        db.close();
        return Err(Error::Storage {
            name: "InvalidStateError".into(),
            message: "the database was deleted while it opened; open again".into(),
        });
    }
    Ok(db)
}

fn random_seed() -> (u64, [u8; 16]) {
    let mut bytes = [0u8; 24];
    let crypto: web_sys::Crypto = js_sys::Reflect::get(&js_sys::global(), &"crypto".into())
        .expect("crypto")
        .unchecked_into();
    crypto
        .get_random_values_with_u8_array(&mut bytes)
        .expect("getRandomValues");
    let seed = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
    (seed, bytes[8..].try_into().expect("16 bytes"))
}

fn new_client_id(random: [u8; 16]) -> String {
    // A UUIDv4: the client id needs no order, only uniqueness.
    let mut b = random;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    logfold_core::EventId::from_bytes(b).to_string()
}

impl Log {
    /// Opens (creating if needed) log `name`, verifies every stored segment, and brings the
    /// projections up to date: each from its snapshot when one matches, else from the start.
    pub async fn open(
        name: &str,
        durability: Durability,
        on_close: Option<Function>,
        projections: Projections,
        sync: Option<usize>,
    ) -> Result<Log, Error> {
        if name.is_empty() {
            return Err(Error::argument("name", "must be a non-empty string"));
        }
        let db = connect(name).await?;
        let (seed, random) = random_seed();
        let mut stats = Stats::default();
        let opened = async {
            let (client_id, streams_through, synced) =
                Self::init_meta(&db, durability, new_client_id(random)).await?;
            // Only the first open with sync has anything to move.
            let (synced, migrated) = match sync {
                Some(max_push_bytes) if !synced => {
                    sync::prepare(&db, durability, max_push_bytes).await?
                }
                _ => (synced, 0),
            };
            stats.events_migrated = migrated;
            let mut tables = load_snapshots(&db, &projections, &mut stats).await?;
            let mut versions = HashMap::new();
            let head = verify_and_fold(
                &db,
                &mut tables,
                &projections,
                &mut stats,
                (streams_through, &mut versions),
            )
            .await?;
            Ok::<_, Error>((client_id, head, tables, versions, synced))
        };
        let (client_id, head, tables, versions, synced) = match opened.await {
            Ok(v) => v,
            Err(e) => {
                db.close();
                return Err(e);
            }
        };
        let log = Log(Rc::new(Inner {
            name: name.to_owned(),
            db,
            durability,
            client_id,
            ids: RefCell::new(IdGenerator::new(seed)),
            limits: Limits::default(),
            max_push_bytes: sync.unwrap_or(DEFAULT_PUSH_BYTES),
            head: Cell::new(head),
            closed: Cell::new(None),
            queue: RefCell::new(Vec::new()),
            writing: Cell::new(false),
            idle: RefCell::new(Vec::new()),
            stats: Cell::new(stats),
            small_segments: Cell::new(0),
            cut_at: Cell::new(TARGET_BYTES),
            compaction_scheduled: Cell::new(false),
            dirty: RefCell::new(versions.keys().cloned().collect()),
            versions: RefCell::new(versions),
            versions_at: Cell::new(head),
            on_close: RefCell::new(on_close),
            on_versionchange: RefCell::new(None),
            projections,
            tables: Rc::new(RefCell::new(tables)),
            outbox: RefCell::new(synced.then(sync::Mirror::unread)),
        }));
        log.watch_versionchange();
        if synced {
            if let Err(e) = log.catch_up_synced().await {
                log.0.db.close();
                return Err(e);
            }
        }
        Ok(log)
    }

    /// Reads (and on first open writes) the format and client id; returns the client id, the
    /// stream versions' checkpoint and whether the log is synced.
    async fn init_meta(
        db: &IdbDatabase,
        durability: Durability,
        fresh_id: String,
    ) -> Result<(String, u64, bool), Error> {
        let tx = idb::transaction(db, &["meta"], true, durability.as_str()).map_err(storage)?;
        let done = idb::done(&tx);
        let meta = tx.object_store("meta").map_err(storage)?;
        let get = |k: &str| meta.get(&k.into()).map_err(storage);
        let (format, through, head) = (get("format")?, get("streamsThrough")?, get("head")?);
        let synced = get("synced")?;
        let format = idb::request(&format).await.map_err(storage)?;
        let through = idb::request(&through).await.map_err(storage)?;
        let head = idb::request(&head).await.map_err(storage)?;
        let synced = idb::request(&synced).await.map_err(storage)?.is_truthy();
        // Logs written before the checkpoint existed kept `streams` current at every commit.
        let streams_through = match through.as_f64() {
            Some(t) => t as u64,
            None => {
                meta.put_with_key(&key(as_u64(&head)), &"streamsThrough".into())
                    .map_err(storage)?;
                as_u64(&head)
            }
        };
        let client = idb::request(&meta.get(&"clientId".into()).map_err(storage)?)
            .await
            .map_err(storage)?;
        let client_id = match client.as_string() {
            Some(id) => id,
            None => {
                meta.put_with_key(&fresh_id.as_str().into(), &"clientId".into())
                    .map_err(storage)?;
                fresh_id
            }
        };
        if format.is_undefined() {
            meta.put_with_key(&FORMAT.into(), &"format".into())
                .map_err(storage)?;
        }
        done.await.map_err(storage)?;
        match format.as_f64() {
            None if format.is_undefined() => {}
            Some(f) if f as u32 == FORMAT => {}
            other => return Err(Error::UnsupportedFormat(other.unwrap_or(0.0) as u32)),
        }
        Ok((client_id, streams_through, synced))
    }

    fn watch_versionchange(&self) {
        let weak = Rc::downgrade(&self.0);
        let handler = Closure::<dyn FnMut()>::new(move || {
            if let Some(inner) = weak.upgrade() {
                // Close at once so the other tab's upgrade or delete is not blocked.
                Log(inner).close_for(CloseReason::VersionChange);
            }
        });
        self.0
            .db
            .set_onversionchange(Some(handler.as_ref().unchecked_ref()));
        *self.0.on_versionchange.borrow_mut() = Some(handler);
    }

    /// Closes the connection at once for `reason`, tells `onClose`, and fails what waits.
    fn close_for(&self, reason: CloseReason) {
        let inner = &self.0;
        inner.db.close();
        if inner.closed.get().is_none() {
            inner.closed.set(Some(reason));
            if let Some(cb) = inner.on_close.borrow().as_ref() {
                let _ = cb.call1(&JsValue::NULL, &reason.as_str().into());
            }
        }
        for (_, reply) in inner.queue.borrow_mut().drain(..) {
            let _ = reply.send(Err(Error::Closed(reason)));
        }
    }

    fn check_open(&self) -> Result<(), Error> {
        match self.0.closed.get() {
            Some(reason) => Err(Error::Closed(reason)),
            None => Ok(()),
        }
    }

    /// The log's name.
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// This client's id, the `origin` of its events.
    pub fn client_id(&self) -> &str {
        &self.0.client_id
    }

    /// The highest position this handle has seen.
    pub fn head(&self) -> u64 {
        self.0.head.get()
    }

    /// Whether the log is closed.
    pub fn is_closed(&self) -> bool {
        self.0.closed.get().is_some()
    }

    /// Counters since open.
    pub fn stats(&self) -> Stats {
        self.0.stats.get()
    }

    /// Appends a batch atomically. Calls that arrive while a commit is in flight are written
    /// together in the next transaction (group commit); each keeps its own atomicity.
    pub async fn append(&self, batch: Batch) -> Result<Appended, Error> {
        self.submit(batch).await
    }

    /// Queues a batch at once and returns the future of its outcome, so a caller can queue
    /// several before awaiting any and have them share one transaction.
    pub fn submit(
        &self,
        batch: Batch,
    ) -> impl std::future::Future<Output = Result<Appended, Error>> {
        let queued = self.enqueue(batch);
        async move {
            match queued? {
                Some(rx) => rx.await.unwrap_or(Err(Error::Closed(CloseReason::Closed))),
                None => Ok(Appended {
                    time: js_sys::Date::now() as u64,
                    events: Vec::new(),
                }),
            }
        }
    }

    /// The reply channel of a queued batch; `None` for an empty one, which writes nothing.
    fn enqueue(
        &self,
        batch: Batch,
    ) -> Result<Option<oneshot::Receiver<Result<Appended, Error>>>, Error> {
        self.check_open()?;
        batch.validate(&self.0.limits)?;
        if batch.events.is_empty() {
            return Ok(None);
        }
        if self.is_synced() {
            // What the server would refuse must not reach the outbox and the tables.
            check_batch(&batch, &self.0.client_id, self.0.max_push_bytes)
                .map_err(|e| Error::argument("events", e.to_string()))?;
        }
        let (tx, rx) = oneshot::channel();
        self.0.queue.borrow_mut().push((batch, tx));
        self.start_writer();
        Ok(Some(rx))
    }

    fn start_writer(&self) {
        if self.0.writing.replace(true) {
            return;
        }
        let log = self.clone();
        wasm_bindgen_futures::spawn_local(async move {
            loop {
                let group = std::mem::take(&mut *log.0.queue.borrow_mut());
                if !group.is_empty() {
                    log.commit_group(group).await;
                    continue;
                }
                // A backlog this large is merged now, between appends; a smaller one waits for
                // a quiet moment so it never delays an append that is waiting.
                if log.0.small_segments.get() >= COMPACT_NOW && log.0.closed.get().is_none() {
                    log.0.small_segments.set(0);
                    // Best effort: a failed compaction leaves the segments as they were.
                    let _ = log.compact_once().await;
                    continue;
                }
                if log.0.dirty.borrow().len() >= CHECKPOINT_NOW && log.0.closed.get().is_none() {
                    // Best effort too: the versions stay in memory until a checkpoint succeeds.
                    if log.checkpoint_streams().await.is_ok() {
                        continue;
                    }
                }
                break;
            }
            log.finish_writing();
            if log.0.small_segments.get() >= COMPACT_AFTER || !log.0.dirty.borrow().is_empty() {
                log.compact_when_idle();
            }
        });
    }

    /// Marks the store free and wakes whoever waits for that (`close`, `compact`).
    fn finish_writing(&self) {
        self.0.writing.set(false);
        for waiter in self.0.idle.borrow_mut().drain(..) {
            let _ = waiter.send(());
        }
    }

    /// Compacts and checkpoints stream versions once no append has come for `IDLE_MS`.
    fn compact_when_idle(&self) {
        if self.0.compaction_scheduled.replace(true) {
            return;
        }
        let log = self.clone();
        wasm_bindgen_futures::spawn_local(async move {
            loop {
                let seen = log.0.stats.get().transactions;
                let _ = idb::sleep(IDLE_MS).await;
                if log.0.closed.get().is_some() {
                    break;
                }
                if !log.0.writing.get() && log.0.stats.get().transactions == seen {
                    log.0.writing.set(true);
                    if log.0.small_segments.replace(0) >= COMPACT_AFTER {
                        let _ = log.compact_once().await;
                    }
                    let _ = log.checkpoint_streams().await;
                    log.finish_writing();
                    log.start_writer_if_queued();
                    break;
                }
            }
            log.0.compaction_scheduled.set(false);
        });
    }

    async fn commit_group(&self, group: Vec<(Batch, Reply)>) {
        if let Err(e) = self.check_open() {
            for (_, reply) in group {
                let _ = reply.send(Err(e.clone()));
            }
            return;
        }
        let batches: Vec<&Batch> = group.iter().map(|(b, _)| b).collect();
        match self.commit(&batches).await {
            Ok(results) => {
                for ((_, reply), result) in group.into_iter().zip(results) {
                    let _ = reply.send(result);
                }
            }
            // One call's quota failure must not fail the small calls that joined it.
            Err(Error::QuotaExceeded) if group.len() > 1 => {
                for (batch, reply) in group {
                    let result = match self.commit(&[&batch]).await {
                        Ok(mut r) => r.pop().expect("one result per batch"),
                        Err(e) => Err(e),
                    };
                    let _ = reply.send(result);
                }
            }
            Err(e) => {
                for (_, reply) in group {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }

    /// One transaction: read the head and stream versions, assign positions, write segments.
    /// The outer error means the transaction failed and nothing was written.
    async fn commit(&self, batches: &[&Batch]) -> Result<Vec<Result<Appended, Error>>, Error> {
        if self.is_synced() {
            return self.commit_outbox(batches).await;
        }
        let inner = &self.0;
        let tx = idb::transaction(
            &inner.db,
            &["segments", "streams", "meta"],
            true,
            inner.durability.as_str(),
        )
        .map_err(|e| self.closed_or(e))?;
        let done = idb::done(&tx);
        let segments = tx.object_store("segments").map_err(storage)?;
        let streams = tx.object_store("streams").map_err(storage)?;
        let meta = tx.object_store("meta").map_err(storage)?;

        // Another tab may have made the log synced since this one opened: its history is the
        // outbox now, and a write here would land in the confirmed log.
        let synced = meta.get(&"synced".into()).map_err(storage)?;
        let mut names: HashSet<&str> = HashSet::new();
        for b in batches {
            names.extend(b.events.iter().map(|e| e.stream.as_str()));
        }
        let (mut head, mut versions) = self
            .stored_versions(&meta, &segments, &streams, &names)
            .await?;
        if idb::request(&synced).await.map_err(storage)?.is_truthy() {
            tx.abort().ok();
            let _ = done.await;
            self.close_for(CloseReason::Synced);
            return Err(Error::Closed(CloseReason::Synced));
        }
        let head_before = head;

        let time = js_sys::Date::now() as u64;
        let results: Vec<Result<Appended, Error>> = {
            let mut ids = inner.ids.borrow_mut();
            batches
                .iter()
                .map(|b| {
                    let events = place(b, &mut head, &mut versions, &mut ids, time)
                        .map_err(Error::Conflict)?;
                    Ok(Appended { time, events })
                })
                .collect()
        };

        let mut written = 0u64;
        let mut small = 0u32;
        let mut count = 0u64;
        let mut put = |w: SegmentWriter| -> Result<(), Error> {
            let (last, bytes) = self.pack(w);
            if bytes.len() < TARGET_BYTES / 2 {
                small += 1;
            }
            written += 1;
            segments
                .put_with_key(&Uint8Array::from(&bytes[..]).buffer(), &key(last))
                .map_err(storage)?;
            Ok(())
        };
        let mut w = SegmentWriter::new();
        for (batch, result) in batches.iter().zip(&results) {
            let Ok(appended) = result else { continue };
            for (e, p) in batch.events.iter().zip(&appended.events) {
                let size = e.data.len() + e.meta.as_ref().map_or(0, String::len) + 64;
                if w.count() > 0 && w.size() + size > inner.cut_at.get() {
                    put(std::mem::take(&mut w))?;
                }
                w.push(&e.placed(p, time, &inner.client_id));
                count += 1;
            }
        }
        if w.count() > 0 {
            put(w)?;
        }
        // No `streams` records here: the cache holds the new versions until a checkpoint
        // writes them, which keeps a commit to one segment put and the head's.
        if count > 0 {
            meta.put_with_key(&key(head), &"head".into())
                .map_err(storage)?;
        }
        done.await.map_err(|e| self.closed_or(e))?;
        if count > 0 {
            // Once per stream, not per event. A stream whose batch failed keeps the version it
            // was read at, which is still its version; one with no events stays unrecorded.
            let known = versions.iter().filter(|(_, v)| **v > 0);
            self.remember(known.map(|(s, v)| (s.as_str(), *v)), head);
        }

        inner.head.set(inner.head.get().max(head));
        inner.small_segments.set(inner.small_segments.get() + small);
        let mut s = inner.stats.get();
        s.transactions += 1;
        s.segments_written += written;
        s.events_appended += count;
        inner.stats.set(s);
        if count > 0 {
            self.fold_committed(head_before, head, batches, &results, time)
                .await;
        }
        Ok(results)
    }

    /// The stored head and the versions of `names`, inside the caller's transaction. They come
    /// from the cache, brought up to the stored head first (another tab's appends move it), and
    /// for streams it lacks from the `streams` store, which is current for every stream the
    /// cache lacks. Those reads go out with the head's.
    async fn stored_versions(
        &self,
        meta: &IdbObjectStore,
        segments: &IdbObjectStore,
        streams: &IdbObjectStore,
        names: &HashSet<&str>,
    ) -> Result<(u64, HashMap<String, u64>), Error> {
        let head_req = meta.get(&"head".into()).map_err(storage)?;
        let missing: Vec<&str> = {
            let cache = self.0.versions.borrow();
            names
                .iter()
                .copied()
                .filter(|s| !cache.contains_key(*s))
                .collect()
        };
        let reqs = get_versions(streams, &missing)?;
        let head = as_u64(&idb::request(&head_req).await.map_err(storage)?);
        self.versions_through(segments, head).await?;
        let mut versions: HashMap<String, u64> = HashMap::with_capacity(names.len());
        for (name, req) in reqs {
            versions.insert(
                name.to_owned(),
                as_u64(&idb::request(&req).await.map_err(storage)?),
            );
        }
        let cache = self.0.versions.borrow();
        for name in names {
            if let Some(v) = cache.get(*name) {
                versions.insert((*name).to_owned(), *v);
            }
        }
        Ok((head, versions))
    }

    /// Compresses a segment; returns its key (its last position) and bytes. Segments are cut
    /// before they are compressed: this aims the next cut so that it compresses to about the
    /// target, as this one did (at most twice the target, so a sudden run of incompressible
    /// data stays near Chromium's 64 KiB blob threshold).
    fn pack(&self, w: SegmentWriter) -> (u64, Vec<u8>) {
        let last = w.first_seq() + w.count() - 1;
        let raw = w.size();
        let bytes = w.finish_packed();
        let aim = TARGET_BYTES as f64 * 0.9 * raw as f64 / bytes.len() as f64;
        self.0
            .cut_at
            .set((aim as usize).clamp(TARGET_BYTES, 2 * TARGET_BYTES));
        (last, bytes)
    }

    /// Brings the version cache from `versions_at` up to the stored `head` by reading the
    /// segments other tabs wrote in between (inside the caller's transaction).
    async fn versions_through(&self, segments: &IdbObjectStore, head: u64) -> Result<(), Error> {
        let at = self.0.versions_at.get();
        if head <= at {
            return Ok(());
        }
        let (keys, values) = read_segments(segments, at, u32::MAX).await?;
        let mut seen = Vec::new();
        for (k, bytes) in keys.iter().zip(&values) {
            let mut scratch = Vec::new();
            let seg = Segment::parse_in(bytes, &mut scratch)
                .map_err(|e| Error::corrupt(at + 1, *k, e))?;
            for e in seg.events() {
                let e = e.map_err(|e| Error::corrupt(seg.first_seq(), *k, e))?;
                if e.seq > at && e.seq <= head {
                    seen.push((e.stream.to_owned(), e.version));
                }
            }
        }
        self.remember(seen.iter().map(|(s, v)| (s.as_str(), *v)), head);
        Ok(())
    }

    /// Records committed stream versions as of stored head `head`; they are newer than the
    /// `streams` store's until a checkpoint writes them.
    fn remember<'a>(&self, versions: impl Iterator<Item = (&'a str, u64)>, head: u64) {
        let mut cache = self.0.versions.borrow_mut();
        let mut dirty = self.0.dirty.borrow_mut();
        for (stream, v) in versions {
            if let Some(old) = cache.get_mut(stream) {
                *old = v;
            } else {
                cache.insert(stream.to_owned(), v);
            }
            if !dirty.contains(stream) {
                dirty.insert(stream.to_owned());
            }
        }
        if cache.len() > VERSION_CACHE {
            // What the store already has can be read again; what it lacks must stay.
            cache.retain(|s, _| dirty.contains(s));
        }
        self.0.versions_at.set(self.0.versions_at.get().max(head));
    }

    /// Writes the versions the `streams` store lacks and moves its checkpoint to the head, so
    /// the next open folds only the segments after it. Relaxed: a lost checkpoint is redone.
    async fn checkpoint_streams(&self) -> Result<(), Error> {
        let inner = &self.0;
        if inner.dirty.borrow().is_empty() {
            return Ok(());
        }
        let tx = idb::transaction(&inner.db, &["segments", "streams", "meta"], true, "relaxed")
            .map_err(|e| self.closed_or(e))?;
        let done = idb::done(&tx);
        let streams = tx.object_store("streams").map_err(storage)?;
        let meta = tx.object_store("meta").map_err(storage)?;
        let segments = tx.object_store("segments").map_err(storage)?;
        let synced = meta.get(&"synced".into()).map_err(storage)?;
        let head = as_u64(
            &idb::request(&meta.get(&"head".into()).map_err(storage)?)
                .await
                .map_err(storage)?,
        );
        // Versions of a history another tab has since moved to the outbox: not to be written.
        if !self.is_synced() && idb::request(&synced).await.map_err(storage)?.is_truthy() {
            tx.abort().ok();
            let _ = done.await;
            self.close_for(CloseReason::Synced);
            return Err(Error::Closed(CloseReason::Synced));
        }
        // Other tabs' appends since are folded in first, so the checkpoint is of the head.
        self.versions_through(&segments, head).await?;
        let at = inner.versions_at.get();
        let written: Vec<(String, u64)> = {
            let cache = inner.versions.borrow();
            let dirty = inner.dirty.borrow();
            dirty
                .iter()
                .map(|s| (s.clone(), cache[s.as_str()]))
                .collect()
        };
        for (s, v) in &written {
            streams
                .put_with_key(&key(*v), &JsValue::from_str(s))
                .map_err(storage)?;
        }
        meta.put_with_key(&key(at), &"streamsThrough".into())
            .map_err(storage)?;
        done.await.map_err(|e| self.closed_or(e))?;
        let cache = inner.versions.borrow();
        let mut dirty = inner.dirty.borrow_mut();
        for (s, v) in &written {
            if cache.get(s.as_str()) == Some(v) {
                dirty.remove(s);
            }
        }
        let mut st = inner.stats.get();
        st.transactions += 1;
        inner.stats.set(st);
        Ok(())
    }

    fn has_projections(&self) -> bool {
        !self.0.tables.borrow().is_empty() || !self.0.projections.reducers.is_empty()
    }

    /// Folds a commit's events into the projections before its appends resolve: from memory
    /// when the projections were at the position it started from, else (another tab appended
    /// in between) by catching up from IndexedDB.
    async fn fold_committed(
        &self,
        head_before: u64,
        head: u64,
        batches: &[&Batch],
        results: &[Result<Appended, Error>],
        time: u64,
    ) {
        if !self.has_projections() {
            self.0.tables.borrow_mut().set_seq(head);
            return;
        }
        if self.0.tables.borrow().seq() != head_before {
            // The commit stands either way; a failed read leaves the tables for the next one.
            let _ = self.catch_up().await;
            return;
        }
        let mut text = self.events_text();
        {
            let mut tables = self.0.tables.borrow_mut();
            for (batch, result) in batches.iter().zip(results) {
                let Ok(appended) = result else { continue };
                for (e, p) in batch.events.iter().zip(&appended.events) {
                    let e = e.placed(p, time, &self.0.client_id);
                    tables.fold(&e);
                    if let Some(text) = text.as_mut() {
                        if text.len() > 1 {
                            text.push(',');
                        }
                        logfold_core::json::write_event(text, &e);
                    }
                }
            }
        }
        self.emit(text);
    }

    /// A JSON list to collect events in for the JS reducers, if there are any.
    fn events_text(&self) -> Option<String> {
        (!self.0.projections.reducers.is_empty()).then(|| String::from("["))
    }

    /// Tells JS what the last fold step did: the events (for reducers) and the changed rows.
    /// No borrow of the tables is held, so JS may read them.
    fn emit(&self, events: Option<String>) {
        self.emit_as(events, false);
    }

    fn emit_as(&self, events: Option<String>, overlay: bool) {
        let (changes, seq) = {
            let mut t = self.0.tables.borrow_mut();
            (t.take_changes(), t.seq())
        };
        let events = events.filter(|t| t.len() > 1).map(|mut t| {
            t.push(']');
            t
        });
        self.0.projections.fold(events, changes, seq, overlay);
    }

    /// Folds what other tabs appended since the projections' position (and moves the head).
    /// Returns the new position.
    pub async fn catch_up(&self) -> Result<u64, Error> {
        self.check_open()?;
        if self.is_synced() {
            return self.catch_up_synced().await;
        }
        if !self.has_projections() {
            let tx = idb::transaction(&self.0.db, &["meta"], false, "default")
                .map_err(|e| self.closed_or(e))?;
            let meta = tx.object_store("meta").map_err(storage)?;
            let head = as_u64(
                &idb::request(&meta.get(&"head".into()).map_err(storage)?)
                    .await
                    .map_err(storage)?,
            );
            self.0.head.set(self.0.head.get().max(head));
            self.0.tables.borrow_mut().set_seq(self.0.head.get());
            return Ok(head);
        }
        loop {
            let after = self.0.tables.borrow().seq();
            let (keys, values) = self.segments_after(after, PAGE).await?;
            if keys.is_empty() {
                break;
            }
            let mut text = self.events_text();
            let mut folded = 0;
            for (k, bytes) in keys.iter().zip(&values) {
                let from = self.0.tables.borrow().seq() + 1;
                let mut scratch = Vec::new();
                let seg = Segment::parse_in(bytes, &mut scratch)
                    .map_err(|e| Error::corrupt(from, *k, e))?;
                folded += fold_segment(
                    &mut self.0.tables.borrow_mut(),
                    &seg,
                    u64::MAX,
                    text.as_mut(),
                )
                .map_err(|e| Error::corrupt(from, *k, e))?;
            }
            let seq = self.0.tables.borrow().seq();
            self.0.head.set(self.0.head.get().max(seq));
            let mut s = self.0.stats.get();
            s.events_replayed += folded;
            self.0.stats.set(s);
            self.emit(text);
        }
        Ok(self.0.tables.borrow().seq())
    }

    /// The live tables, shared with JS readers.
    pub fn tables(&self) -> Rc<RefCell<Tables>> {
        Rc::clone(&self.0.tables)
    }

    /// Writes a snapshot of every table, and the given reducer snapshots, in one transaction.
    /// Returns the position they are of. Snapshots can be rebuilt, so the write is relaxed.
    pub async fn write_snapshots(&self, reducers: Vec<(String, JsValue)>) -> Result<u64, Error> {
        self.check_open()?;
        // A synced log snapshots its base only: the outbox may yet be rejected.
        let (tables, seq) = {
            let t = self.0.tables.borrow();
            let tables = if t.in_overlay() {
                Vec::new()
            } else {
                t.snapshots()
            };
            (tables, t.base_seq())
        };
        let tx = idb::transaction(&self.0.db, &["snapshots"], true, "relaxed")
            .map_err(|e| self.closed_or(e))?;
        let done = idb::done(&tx);
        let store = tx.object_store("snapshots").map_err(storage)?;
        let mut written = 0;
        for (k, bytes) in &tables {
            store
                .put_with_key(&Uint8Array::from(&bytes[..]).buffer(), &k.as_str().into())
                .map_err(storage)?;
            written += 1;
        }
        for (k, value) in &reducers {
            // A state the browser cannot clone is left without a snapshot, not an error.
            match store.put_with_key(value, &k.as_str().into()) {
                Ok(_) => written += 1,
                Err(e) => self
                    .0
                    .projections
                    .warn(&format!("no snapshot of {k}: {}", Error::from_dom(&e))),
            }
        }
        done.await.map_err(|e| self.closed_or(e))?;
        let mut s = self.0.stats.get();
        s.snapshots_written += written;
        self.0.stats.set(s);
        Ok(seq)
    }

    /// The stored values of the given snapshot keys (`undefined` where none).
    pub async fn read_snapshots(&self, keys: &[String]) -> Result<Vec<JsValue>, Error> {
        self.check_open()?;
        let tx = idb::transaction(&self.0.db, &["snapshots"], false, "default")
            .map_err(|e| self.closed_or(e))?;
        let store = tx.object_store("snapshots").map_err(storage)?;
        let reqs = keys
            .iter()
            .map(|k| store.get(&k.as_str().into()).map_err(storage))
            .collect::<Result<Vec<_>, _>>()?;
        let mut out = Vec::with_capacity(reqs.len());
        for r in reqs {
            out.push(idb::request(&r).await.map_err(storage)?);
        }
        Ok(out)
    }

    /// Read-only tables as of position `seq`: each from its snapshot when that is not past
    /// `seq`, then folded up to `seq`. `on_events` gets the events after `reducers_from` (for
    /// the JS reducers) as JSON text, a page at a time.
    pub async fn tables_at(
        &self,
        seq: u64,
        reducers_from: u64,
        on_events: Option<&Function>,
    ) -> Result<Tables, Error> {
        self.check_open()?;
        let stored = self
            .read_snapshots(&self.0.projections.table_keys())
            .await?;
        let mut start = reducers_from;
        let mut entries = Vec::new();
        for ((name, def), value) in self.0.projections.tables.iter().zip(stored) {
            let table = decode_snapshot(&value, def)
                .ok()
                .filter(|t| t.seq() <= seq)
                .unwrap_or_else(|| Table::new(Arc::clone(def)));
            start = start.min(table.seq());
            entries.push((name.clone(), table));
        }
        let mut tables = Tables::new(entries, start);
        while tables.seq() < seq {
            let after = tables.seq();
            let (keys, values) = self.segments_after(after, PAGE).await?;
            if keys.is_empty() {
                return Err(Error::argument(
                    "seq",
                    format!("position {seq} is past the log's head {after}"),
                ));
            }
            let mut text = on_events.map(|_| String::from("["));
            for (k, bytes) in keys.iter().zip(&values) {
                let from = tables.seq() + 1;
                let mut scratch = Vec::new();
                let seg = Segment::parse_in(bytes, &mut scratch)
                    .map_err(|e| Error::corrupt(from, *k, e))?;
                fold_segment(&mut tables, &seg, seq, text.as_mut())
                    .map_err(|e| Error::corrupt(from, *k, e))?;
                if tables.seq() >= seq {
                    break;
                }
            }
            if let (Some(f), Some(mut t)) = (on_events, text.filter(|t| t.len() > 1)) {
                t.push(']');
                // The JS side catches its own failures (a reducer that throws).
                let _ = f.call1(&JsValue::NULL, &t.into());
            }
        }
        Ok(tables)
    }

    /// A failure after `versionchange` closed the connection reads as `CLOSED`.
    fn closed_or(&self, e: JsValue) -> Error {
        match self.0.closed.get() {
            Some(reason) => Error::Closed(reason),
            None => storage(e),
        }
    }

    /// Up to `limit` events after position `after`, as a JSON array.
    pub async fn read_json(&self, after: u64, limit: u64) -> Result<String, Error> {
        self.check_open()?;
        let mut out = String::from("[");
        let upto = after.saturating_add(limit);
        // The log is dense, so the next position to write is always `pos + 1`. Each page is
        // its own transaction; compaction in between only changes how positions are grouped.
        let mut pos = after;
        while pos < upto {
            let want = ((upto - pos) / 128 + 2).min(64) as u32;
            let (keys, values) = self.segments_after(pos, want).await?;
            if keys.is_empty() {
                break;
            }
            // JSON runs ~1.6× the encoded size; growing the string by doubling costs more.
            out.reserve(values.iter().map(Vec::len).sum::<usize>() * 8 / 5);
            for (k, bytes) in keys.iter().zip(&values) {
                let mut scratch = Vec::new();
                let seg = Segment::parse_in(bytes, &mut scratch)
                    .map_err(|e| Error::corrupt(pos + 1, *k, e))?;
                pos += logfold_core::json::write_segment(&mut out, &seg, pos, upto)
                    .map_err(|e| Error::corrupt(seg.first_seq(), *k, e))?
                    as u64;
                if pos >= upto {
                    break;
                }
            }
        }
        if self.is_synced() && pos < upto {
            pos = self.outbox_json(&mut out, pos, upto).await?;
        }
        out.push(']');
        if !self.is_synced() {
            self.0.head.set(self.0.head.get().max(pos));
        }
        Ok(out)
    }

    /// Up to `count` segments with keys above `after`, as (keys, bytes).
    async fn segments_after(
        &self,
        after: u64,
        count: u32,
    ) -> Result<(Vec<u64>, Vec<Vec<u8>>), Error> {
        let tx = idb::transaction(&self.0.db, &["segments"], false, "default")
            .map_err(|e| self.closed_or(e))?;
        let store = tx.object_store("segments").map_err(storage)?;
        read_segments(&store, after, count).await
    }

    /// The stream's current version, read from IndexedDB (other tabs may have appended).
    pub async fn version(&self, stream: &str) -> Result<u64, Error> {
        self.check_open()?;
        if self.is_synced() {
            return self.synced_version(stream).await;
        }
        let tx = idb::transaction(
            &self.0.db,
            &["segments", "streams", "meta"],
            false,
            "default",
        )
        .map_err(|e| self.closed_or(e))?;
        let meta = tx.object_store("meta").map_err(storage)?;
        let store = tx.object_store("streams").map_err(storage)?;
        let head_req = meta.get(&"head".into()).map_err(storage)?;
        let stored = store.get(&JsValue::from_str(stream)).map_err(storage)?;
        let head = as_u64(&idb::request(&head_req).await.map_err(storage)?);
        let segments = tx.object_store("segments").map_err(storage)?;
        self.versions_through(&segments, head).await?;
        let stored = as_u64(&idb::request(&stored).await.map_err(storage)?);
        let cached = self.0.versions.borrow().get(stream).copied();
        Ok(cached.unwrap_or(stored))
    }

    /// Does now what otherwise waits for a pause in appends: merges runs of small adjacent
    /// segments and checkpoints stream versions.
    pub async fn compact(&self) -> Result<(), Error> {
        self.check_open()?;
        self.wait_idle().await;
        self.0.writing.set(true);
        let mut result = self.compact_once().await;
        if result.is_ok() {
            result = self.checkpoint_streams().await;
        }
        self.finish_writing();
        self.start_writer_if_queued();
        result
    }

    fn start_writer_if_queued(&self) {
        if !self.0.queue.borrow().is_empty() {
            self.start_writer();
        }
    }

    async fn wait_idle(&self) {
        while self.0.writing.get() {
            let (tx, rx) = oneshot::channel();
            self.0.idle.borrow_mut().push(tx);
            let _ = rx.await;
        }
    }

    /// One compaction transaction over the segments after `meta.compacted`.
    async fn compact_once(&self) -> Result<(), Error> {
        let inner = &self.0;
        let tx = idb::transaction(
            &inner.db,
            &["segments", "meta"],
            true,
            inner.durability.as_str(),
        )
        .map_err(|e| self.closed_or(e))?;
        let done = idb::done(&tx);
        let segments = tx.object_store("segments").map_err(storage)?;
        let meta = tx.object_store("meta").map_err(storage)?;
        let compacted = as_u64(
            &idb::request(&meta.get(&"compacted".into()).map_err(storage)?)
                .await
                .map_err(storage)?,
        );
        let (keys, values) = read_segments(&segments, compacted, COMPACT_BATCH).await?;

        let mut merged = 0u64;
        let mut done_through = compacted;
        let mut run: Vec<usize> = Vec::new();
        let mut run_bytes = 0usize;
        let mut prev = compacted;
        let mut flush = |run: &mut Vec<usize>, run_bytes: &mut usize| -> Result<(), Error> {
            if run.len() >= 2 {
                let mut w = SegmentWriter::new();
                for &i in run.iter() {
                    let lo = if i == 0 { compacted } else { keys[i - 1] };
                    let mut scratch = Vec::new();
                    let seg = Segment::parse_in(&values[i], &mut scratch)
                        .map_err(|e| Error::corrupt(lo + 1, keys[i], e))?;
                    for e in seg.events() {
                        w.push(&e.map_err(|e| Error::corrupt(lo + 1, keys[i], e))?);
                    }
                }
                let last = keys[*run.last().expect("non-empty run")];
                for &i in &run[..run.len() - 1] {
                    segments.delete(&key(keys[i])).map_err(storage)?;
                }
                segments
                    .put_with_key(
                        &Uint8Array::from(&w.finish_packed()[..]).buffer(),
                        &key(last),
                    )
                    .map_err(storage)?;
                merged += run.len() as u64;
            }
            run.clear();
            *run_bytes = 0;
            Ok(())
        };
        for (i, bytes) in values.iter().enumerate() {
            if bytes.len() >= TARGET_BYTES / 2 {
                flush(&mut run, &mut run_bytes)?;
                done_through = keys[i];
            } else {
                if run_bytes + bytes.len() > TARGET_BYTES {
                    flush(&mut run, &mut run_bytes)?;
                    done_through = prev;
                }
                run.push(i);
                run_bytes += bytes.len();
            }
            prev = keys[i];
        }
        flush(&mut run, &mut run_bytes)?;
        if done_through != compacted {
            meta.put_with_key(&key(done_through), &"compacted".into())
                .map_err(storage)?;
        }
        done.await.map_err(|e| self.closed_or(e))?;
        let mut s = inner.stats.get();
        s.transactions += 1;
        s.compactions += 1;
        s.segments_merged += merged;
        inner.stats.set(s);
        Ok(())
    }

    /// Waits for pending appends, then closes the connection.
    pub async fn close(&self) {
        if self.0.closed.get().is_some() {
            return;
        }
        loop {
            self.wait_idle().await;
            self.0.writing.set(true);
            let _ = self.checkpoint_streams().await;
            self.finish_writing();
            // Appends that came during the checkpoint go first; close waits for them too.
            if self.0.queue.borrow().is_empty() {
                break;
            }
            self.start_writer();
        }
        self.0.closed.set(Some(CloseReason::Closed));
        self.0.db.close();
        self.0.db.set_onversionchange(None);
        self.0.on_versionchange.borrow_mut().take();
    }
}

/// Issues a `get` per stream name in the `streams` store.
fn get_versions<'a>(
    store: &IdbObjectStore,
    names: &[&'a str],
) -> Result<Vec<(&'a str, web_sys::IdbRequest)>, Error> {
    names
        .iter()
        .map(|s| Ok((*s, store.get(&JsValue::from_str(s)).map_err(storage)?)))
        .collect()
}

/// A pending read of segments: their keys and their bytes.
struct SegmentsRequest {
    keys: web_sys::IdbRequest,
    values: web_sys::IdbRequest,
}

/// Asks for up to `count` segments with keys above `after`.
fn request_segments(
    store: &IdbObjectStore,
    after: u64,
    count: u32,
) -> Result<SegmentsRequest, Error> {
    let range = IdbKeyRange::lower_bound_with_open(&key(after), true).map_err(storage)?;
    let (keys, values) = if count == u32::MAX {
        (
            store.get_all_keys_with_key(&range),
            store.get_all_with_key(&range),
        )
    } else {
        (
            store.get_all_keys_with_key_and_limit(&range, count),
            store.get_all_with_key_and_limit(&range, count),
        )
    };
    Ok(SegmentsRequest {
        keys: keys.map_err(storage)?,
        values: values.map_err(storage)?,
    })
}

impl SegmentsRequest {
    async fn get(self) -> Result<(Vec<u64>, Vec<Vec<u8>>), Error> {
        let keys: Array = idb::request(&self.keys)
            .await
            .map_err(storage)?
            .unchecked_into();
        let values: Array = idb::request(&self.values)
            .await
            .map_err(storage)?
            .unchecked_into();
        let keys: Vec<u64> = keys.iter().map(|k| as_u64(&k)).collect();
        let values = values
            .iter()
            .map(|v| Uint8Array::new(&v).to_vec())
            .collect();
        Ok((keys, values))
    }
}

/// Reads up to `count` segments with keys above `after`.
async fn read_segments(
    store: &IdbObjectStore,
    after: u64,
    count: u32,
) -> Result<(Vec<u64>, Vec<Vec<u8>>), Error> {
    request_segments(store, after, count)?.get().await
}

/// Reads the snapshots the projections can start from (those that are intact and not past the
/// stored head), tells JS which reducer snapshots it may use, and returns the tables, set to
/// fold on from the lowest position any projection is at.
async fn load_snapshots(
    db: &IdbDatabase,
    p: &Projections,
    stats: &mut Stats,
) -> Result<Tables, Error> {
    if p.tables.is_empty() && p.reducers.is_empty() {
        return Ok(Tables::new(Vec::new(), u64::MAX));
    }
    let tx = idb::transaction(db, &["snapshots", "meta"], false, "default").map_err(storage)?;
    let meta = tx.object_store("meta").map_err(storage)?;
    let store = tx.object_store("snapshots").map_err(storage)?;
    let head_req = meta.get(&"head".into()).map_err(storage)?;
    let table_keys = p.table_keys();
    let reqs = table_keys
        .iter()
        .chain(&p.reducers)
        .map(|k| store.get(&k.as_str().into()).map_err(storage))
        .collect::<Result<Vec<_>, _>>()?;
    let head = as_u64(&idb::request(&head_req).await.map_err(storage)?);
    let mut values = Vec::with_capacity(reqs.len());
    for r in &reqs {
        values.push(idb::request(r).await.map_err(storage)?);
    }
    let (table_values, reducer_values) = values.split_at(p.tables.len());

    let mut start = u64::MAX;
    let discard = |stats: &mut Stats, key: &str, why: String| {
        stats.snapshots_discarded += 1;
        p.warn(&format!(
            "snapshot {key} not used: {why}; rebuilding from the log"
        ));
    };
    let mut entries = Vec::with_capacity(p.tables.len());
    for (((name, def), value), k) in p.tables.iter().zip(table_values).zip(&table_keys) {
        let mut table = None;
        if !value.is_undefined() {
            match decode_snapshot(value, def) {
                Ok(t) if t.seq() <= head => table = Some(t),
                Ok(t) => discard(stats, k, ahead(t.seq(), head)),
                Err(why) => discard(stats, k, why),
            }
        }
        let table = match table {
            Some(t) => {
                stats.snapshots_loaded += 1;
                t
            }
            None => {
                stats.projections_rebuilt += 1;
                Table::new(Arc::clone(def))
            }
        };
        start = start.min(table.seq());
        entries.push((name.clone(), table));
    }
    let usable = Array::new();
    for (value, k) in reducer_values.iter().zip(&p.reducers) {
        let seq = js_sys::Reflect::get(value, &"seq".into())
            .ok()
            .and_then(|s| s.as_f64());
        let has_state = js_sys::Reflect::has(value, &"state".into()).unwrap_or(false);
        match seq {
            _ if value.is_undefined() => {}
            Some(seq) if has_state && seq >= 0.0 && seq as u64 <= head => {
                stats.snapshots_loaded += 1;
                start = start.min(seq as u64);
                usable.push(value);
                continue;
            }
            Some(seq) if has_state && seq >= 0.0 => discard(stats, k, ahead(seq as u64, head)),
            _ => discard(stats, k, "not a snapshot".into()),
        }
        stats.projections_rebuilt += 1;
        start = 0;
        usable.push(&JsValue::UNDEFINED);
    }
    p.call("start", &[usable.into()]);
    Ok(Tables::new(entries, start))
}

/// A table from a stored snapshot value, or why it cannot be used.
fn decode_snapshot(value: &JsValue, def: &Arc<TableDef>) -> Result<Table, String> {
    let bytes = value
        .dyn_ref::<js_sys::ArrayBuffer>()
        .ok_or("not a snapshot")?;
    snapshot::decode(&Uint8Array::new(bytes).to_vec(), Arc::clone(def)).map_err(|e| e.to_string())
}

fn ahead(seq: u64, head: u64) -> String {
    format!("it is of position {seq}, past the log's head {head} (the log was repaired or reset)")
}

/// Folds the events of `seg` after the tables' position and up to `upto`, writing them as
/// JSON to `text` for the JS reducers. Returns how many it folded.
fn fold_segment(
    tables: &mut Tables,
    seg: &Segment<'_>,
    upto: u64,
    text: Option<&mut String>,
) -> Result<u64, SegmentError> {
    let after = tables.seq();
    let last = seg.last_seq().min(upto);
    if last <= after {
        return Ok(0);
    }
    if let Some(text) = text {
        logfold_core::json::write_segment(text, seg, after, upto)?;
    }
    if tables.is_empty() {
        tables.set_seq(last);
    } else {
        for e in seg.events() {
            let e = e?;
            if e.seq > upto {
                break;
            }
            if e.seq > after {
                tables.fold(&e);
            }
        }
    }
    Ok(last - after)
}

/// Verifies the log (see [`first_damage`]) and folds it into the projections on the way, so
/// open reads the log once. Also collects the stream versions of the events after the
/// `streams` store's checkpoint. Returns the head.
async fn verify_and_fold(
    db: &IdbDatabase,
    tables: &mut Tables,
    p: &Projections,
    stats: &mut Stats,
    (streams_through, versions): (u64, &mut HashMap<String, u64>),
) -> Result<u64, Error> {
    let mut text = None;
    let mut replayed = 0;
    let mut visit = |seg: Option<&Segment<'_>>, head: u64| -> Result<(), Error> {
        if let Some(seg) = seg.filter(|s| s.last_seq() > streams_through) {
            for e in seg.events() {
                let e = e.map_err(|e| Error::corrupt(seg.first_seq(), seg.last_seq(), e))?;
                if e.seq > streams_through {
                    versions.insert(e.stream.to_owned(), e.version);
                }
            }
        }
        let Some(seg) = seg else {
            // A page ended: hand its events to JS and report progress.
            let events = text.take().filter(|t: &String| t.len() > 1).map(|mut t| {
                t.push(']');
                t
            });
            if events.is_some() {
                p.fold(events, None, tables.seq(), false);
            }
            p.call("progress", &[key(tables.seq().min(head)), key(head)]);
            return Ok(());
        };
        if tables.seq() == u64::MAX {
            return Ok(()); // nothing to fold
        }
        if text.is_none() && !p.reducers.is_empty() {
            text = Some(String::from("["));
        }
        let from = seg.first_seq();
        replayed += fold_segment(tables, seg, u64::MAX, text.as_mut())
            .map_err(|e| Error::corrupt(from, seg.last_seq(), e))?;
        Ok(())
    };
    let result = first_damage(db, &mut visit).await?;
    stats.events_replayed += replayed;
    match result {
        (head, None) => {
            // Also when the log is empty, or nothing needed folding.
            tables.set_seq(head);
            Ok(head)
        }
        (_, Some(e)) => Err(e),
    }
}

/// Sees each intact segment, then `None` at the end of each page; the `u64` is the head.
type Visit<'v> = dyn FnMut(Option<&Segment<'_>>, u64) -> Result<(), Error> + 'v;

/// The head, and the first damaged segment as a `Corrupt` (or `UnsupportedFormat`) error.
/// One readonly transaction, so appends and compaction in other tabs cannot make an intact
/// log look damaged halfway through. `visit` sees each intact segment in order, and `None`
/// after each page; the next page is already being read meanwhile.
async fn first_damage(
    db: &IdbDatabase,
    visit: &mut Visit<'_>,
) -> Result<(u64, Option<Error>), Error> {
    let tx = idb::transaction(db, &["segments", "meta"], false, "default").map_err(storage)?;
    let meta = tx.object_store("meta").map_err(storage)?;
    let store = tx.object_store("segments").map_err(storage)?;
    let head_req = meta.get(&"head".into()).map_err(storage)?;
    let mut next = request_segments(&store, 0, PAGE)?;
    let head = as_u64(&idb::request(&head_req).await.map_err(storage)?);
    let mut prev = 0u64;
    loop {
        let (keys, values) = next.get().await?;
        let Some(last) = keys.last() else { break };
        next = request_segments(&store, *last, PAGE)?;
        for (k, bytes) in keys.iter().zip(&values) {
            let mut scratch = Vec::new();
            let seg = match Segment::parse_in(bytes, &mut scratch) {
                Ok(seg) => seg,
                Err(e) => return Ok((head, Some(Error::corrupt(prev + 1, *k, e)))),
            };
            if seg.first_seq() != prev + 1 || seg.last_seq() != *k {
                let reason = format!(
                    "segment holds positions {}..={}, not {}..={k}",
                    seg.first_seq(),
                    seg.last_seq(),
                    prev + 1
                );
                return Ok((
                    head,
                    Some(Error::Corrupt {
                        from: prev + 1,
                        to: *k,
                        reason,
                    }),
                ));
            }
            if let Err(e) = visit(Some(&seg), head) {
                return Ok((head, Some(e)));
            }
            prev = *k;
        }
        visit(None, head)?;
    }
    if prev != head {
        let reason = format!("the log's head is {head} but its segments end at {prev}");
        return Ok((
            head,
            Some(Error::Corrupt {
                from: prev + 1,
                to: head.max(prev + 1),
                reason,
            }),
        ));
    }
    Ok((head, None))
}

/// What [`repair`] did: the new head and the positions it dropped.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct RepairReport {
    /// The head after repair.
    pub head: u64,
    /// The positions dropped, if any were damaged.
    pub dropped: Option<(u64, u64)>,
}

/// Keeps the intact prefix of log `name`: drops the first damaged segment and all after it,
/// then rebuilds the stream versions from what is left.
pub async fn repair(name: &str) -> Result<RepairReport, Error> {
    let db = connect(name).await?;
    let result = repair_db(&db).await;
    db.close();
    result
}

async fn repair_db(db: &IdbDatabase) -> Result<RepairReport, Error> {
    let (head, damage) = first_damage(db, &mut |_, _| Ok(())).await?;
    let damage = match damage {
        None => {
            return Ok(RepairReport {
                head,
                dropped: None,
            })
        }
        Some(Error::Corrupt { from, .. }) => from,
        Some(e) => return Err(e),
    };
    let keep = damage - 1;

    let tx =
        idb::transaction(db, &["segments", "streams", "meta"], true, "strict").map_err(storage)?;
    let done = idb::done(&tx);
    let segments = tx.object_store("segments").map_err(storage)?;
    let streams = tx.object_store("streams").map_err(storage)?;
    let meta = tx.object_store("meta").map_err(storage)?;
    let range = IdbKeyRange::lower_bound_with_open(&key(keep), true).map_err(storage)?;
    segments.delete(&range).map_err(storage)?;
    let (_, values) = read_segments(&segments, 0, u32::MAX).await?;
    let mut versions: HashMap<String, u64> = HashMap::new();
    for bytes in &values {
        let mut scratch = Vec::new();
        let seg = Segment::parse_in(bytes, &mut scratch).map_err(|e| Error::corrupt(0, keep, e))?;
        for e in seg.events() {
            let e: EventRef<'_> =
                e.map_err(|e| Error::corrupt(seg.first_seq(), seg.last_seq(), e))?;
            versions.insert(e.stream.to_owned(), e.version);
        }
    }
    streams.clear().map_err(storage)?;
    for (name, v) in &versions {
        streams
            .put_with_key(&key(*v), &JsValue::from_str(name))
            .map_err(storage)?;
    }
    meta.put_with_key(&key(keep), &"head".into())
        .map_err(storage)?;
    meta.put_with_key(&key(keep), &"streamsThrough".into())
        .map_err(storage)?;
    meta.put_with_key(&key(0), &"compacted".into())
        .map_err(storage)?;
    done.await.map_err(storage)?;
    Ok(RepairReport {
        head: keep,
        dropped: Some((damage, head.max(damage))),
    })
}

/// Deletes log `name`'s database; waits until every connection has closed.
pub async fn destroy(name: &str) -> Result<(), Error> {
    Rexie::delete(&database_name(name))
        .await
        .map_err(|e| Error::Storage {
            name: "DeleteError".into(),
            message: format!("{e:?}"),
        })
}
