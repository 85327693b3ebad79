//! The browser log: an append-only event log in IndexedDB, with group commit and compaction.
//!
//! Stores (all created with the first format so later features need no schema change):
//! `segments` (key: the segment's last position; value: an encoded segment), `streams`
//! (stream → version as of `meta.streamsThrough`), `meta` (format, clientId, head, compacted,
//! streamsThrough), `outbox`, `snapshots`, `rejections`. Keying a segment by its *last*
//! position lets a read "after n" start with one ranged `getAll` over keys `> n`.
//!
//! Here: connecting, closing and the shared state. Beside it, one job each: `open` (the steps
//! of opening a log), `writer` (the append queue, group commit, the commit of an unsynced
//! log), `versions` (stream versions: cache, store, checkpoint), `compact`, `read`, `fold`
//! (projections: folding, other tabs, snapshots, past tables), `verify` (checking segments),
//! `retain` (dropping history) and `sync` (a synced log: the sync engine's steps over
//! IndexedDB).

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::sync::Arc;

use futures_channel::oneshot;
use js_sys::{Array, Function, Uint8Array};
use logfold_core::segment::{Segment, SegmentError, SegmentWriter, TARGET_BYTES};
use logfold_core::sync::{check_batch, DEFAULT_PUSH_BYTES};
use logfold_core::table::{snapshot, Table, TableDef};
use logfold_core::{place, Batch, IdGenerator, Limits, Placed, StreamFilter};
use rexie::{ObjectStore, Rexie};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{IdbDatabase, IdbKeyRange, IdbObjectStore};

use crate::error::{CloseReason, Error};
use crate::idb;
use crate::tables::{table_snapshot_key, Tables};

mod boot;
mod compact;
mod fold;
mod open;
mod read;
mod retain;
mod sync;
mod verify;
mod versions;
mod writer;

use fold::*;
use read::*;

pub use boot::Boot;
pub use fold::{base_key, fold_past};
pub use open::{Opening, META_KEYS, PREPARE_STORES};
pub use retain::{backfill_segments, Base};
pub use sync::{outbox_check, Pulled, Pushed};
pub use verify::check_segments;

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
    /// `streams` stores found not to match their digest at open and rebuilt from the segments.
    pub streams_rebuilt: u64,
    /// The server offset this open started a new log from, with the server's snapshot set
    /// (0: it did not).
    pub snapshot_set_at: u64,
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

    /// The app's event schemas from the JS side (`hooks.schemas`, `hooks.upcast`), if it
    /// names any, or if it must decide about events of schemas it does not know.
    fn schemas(&self) -> Option<Rc<crate::tables::Schemas>> {
        let hooks = self.hooks.as_ref()?;
        let upcast = js_sys::Reflect::get(hooks, &"upcast".into()).ok()?;
        let upcast = upcast.dyn_into::<Function>().ok()?;
        let named = js_sys::Reflect::get(hooks, &"schemas".into()).ok()?;
        let mut current = HashMap::new();
        for entry in js_sys::Object::entries(named.dyn_ref::<js_sys::Object>()?).iter() {
            let pair: Array = entry.unchecked_into();
            if let (Some(t), Some(n)) = (pair.get(0).as_string(), pair.get(1).as_f64()) {
                current.insert(t, n as u64);
            }
        }
        Some(Rc::new(crate::tables::Schemas { current, upcast }))
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

    /// A reducer's snapshot as the `snapshots` store keeps it, from its state as JSON text
    /// (JS seals it with its checksum); `None` if JS cannot read it.
    fn seal(&self, seq: u64, json: &str) -> Option<JsValue> {
        let hooks = self.hooks.as_ref()?;
        let f = js_sys::Reflect::get(hooks, &"seal".into()).ok()?;
        f.dyn_ref::<Function>()?
            .call2(hooks, &key(seq), &json.into())
            .ok()
            .filter(|v| v.is_object())
    }

    /// Whether JS finds a reducer snapshot intact: its checksum matches its state.
    fn intact(&self, snapshot: &JsValue) -> bool {
        let Some(hooks) = &self.hooks else {
            return true;
        };
        match js_sys::Reflect::get(hooks, &"intact".into()) {
            Ok(f) => match f.dyn_ref::<Function>() {
                Some(f) => f.call1(hooks, snapshot).is_ok_and(|v| v.is_truthy()),
                None => true,
            },
            Err(_) => true,
        }
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
    /// Segments up to the one holding this position were not checked at open (0: none left).
    unverified: Cell<u64>,
    /// The last position dropped by `truncate_before` (0: none), as last seen.
    truncated: Cell<u64>,
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
    /// Every stream name the log has, while `known_whole`, so that an append to a new stream
    /// needs no read (see `cached_version`).
    known: RefCell<StreamFilter>,
    known_whole: Cell<bool>,
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
pub async fn connect(name: &str) -> Result<IdbDatabase, Error> {
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

    /// The connection, for the steps JS runs itself.
    pub fn db(&self) -> &IdbDatabase {
        &self.0.db
    }

    /// A failure after `versionchange` closed the connection reads as `CLOSED`.
    pub fn closed_or(&self, e: JsValue) -> Error {
        match self.0.closed.get() {
            Some(reason) => Error::Closed(reason),
            None => storage(e),
        }
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
