//! Opening a log, in steps. Each step runs in one IndexedDB transaction: the driver reads what
//! the step names there, and the step decides from that and issues its writes in the same
//! transaction. JS drives the steps for the package (js/open.js), so the wasm carries no async
//! code for open; [`Log::open`] drives them for Rust callers and the browser tests.
//!
//! 1. [`Opening::init_meta`], readwrite over `meta`: the format, the client id, the marks.
//! 2. [`Opening::prepare`], once, when a log first opens with sync: a history written without
//!    sync moves to the outbox, or a new log starts from the server's snapshot set.
//! 3. [`Opening::load_snapshots`], readonly over `snapshots` and `meta`: where each projection
//!    starts.
//! 4. [`Opening::fold_page`] for each page of segments, then [`Opening::fold_end`], in one
//!    readonly transaction over `segments` and `meta`: the segments from the one holding
//!    [`Opening::start`] to the head are checked and folded on the way.
//! 5. [`Opening::streams_intact`], readwrite over `streams` and `meta`; if not,
//!    [`Opening::rebuild_streams`], readwrite over `segments`, `streams` and `meta`.
//! 6. [`Opening::finish`]: the open log.

use logfold_core::SetDigest;

use super::versions::{rewrite_streams, stored_digest, streams_digest};
use super::*;

/// The `meta` records step 1 reads, in the order [`Opening::init_meta`] takes them.
pub const META_KEYS: [&str; 6] = [
    "format",
    "streamsThrough",
    "head",
    "synced",
    "truncated",
    "clientId",
];

/// The stores of step 2's transaction.
pub const PREPARE_STORES: [&str; 5] = ["segments", "streams", "meta", "outbox", "snapshots"];

/// A log being opened: its options, and what the steps found so far.
pub struct Opening {
    name: String,
    durability: Durability,
    on_close: Option<Function>,
    projections: Projections,
    /// The largest push body, for a log opened with sync.
    sync: Option<usize>,
    boot: Option<Boot>,
    seed: u64,
    stats: Stats,
    client_id: String,
    streams_through: u64,
    synced: bool,
    truncated: u64,
    tables: Tables,
    /// Step 4 starts at the segment holding this position.
    start: u64,
    /// The last position step 4 checked.
    checked: u64,
    head: u64,
    /// Events folded by step 4.
    replayed: u64,
    /// The stream versions of the events after the `streams` store's checkpoint.
    versions: HashMap<String, u64>,
    known: StreamFilter,
}

impl Opening {
    /// Log `name` to open with `projections`; with `sync`, every push body is at most that
    /// many bytes, and a new log starts from `boot` when the set fits its projections.
    pub fn new(
        name: &str,
        durability: Durability,
        on_close: Option<Function>,
        projections: Projections,
        sync: Option<usize>,
        boot: Option<Boot>,
    ) -> Result<Opening, Error> {
        if name.is_empty() {
            return Err(Error::argument("name", "must be a non-empty string"));
        }
        let (seed, random) = random_seed();
        Ok(Opening {
            name: name.to_owned(),
            durability,
            on_close,
            projections,
            sync,
            boot,
            seed,
            stats: Stats::default(),
            // Written by step 1 if the log has none.
            client_id: new_client_id(random),
            streams_through: 0,
            synced: false,
            truncated: 0,
            tables: Tables::new(Vec::new(), u64::MAX),
            start: 0,
            checked: 0,
            head: 0,
            replayed: 0,
            versions: HashMap::new(),
            known: StreamFilter::with_capacity(0),
        })
    }

    /// The durability of the log's commits, as IndexedDB names it.
    pub fn durability(&self) -> &'static str {
        self.durability.as_str()
    }

    /// Step 1, in a readwrite transaction over `meta` that read `read`, the records named by
    /// [`META_KEYS`]. Writes what a new log, or one from before the stream versions'
    /// checkpoint, lacks. Returns the error to give once the transaction has committed: a log
    /// of a format this code cannot read.
    pub fn init_meta(
        &mut self,
        meta: &IdbObjectStore,
        read: &[JsValue; 6],
    ) -> Result<Option<Error>, Error> {
        let [format, through, head, synced, truncated, client] = read;
        self.synced = synced.is_truthy();
        self.truncated = as_u64(truncated);
        // Logs written before the checkpoint existed kept `streams` current at every commit.
        self.streams_through = match through.as_f64() {
            Some(t) => t as u64,
            None => {
                meta.put_with_key(&key(as_u64(head)), &"streamsThrough".into())
                    .map_err(storage)?;
                as_u64(head)
            }
        };
        match client.as_string() {
            Some(id) => self.client_id = id,
            None => {
                meta.put_with_key(&self.client_id.as_str().into(), &"clientId".into())
                    .map_err(storage)?;
            }
        }
        if format.is_undefined() && head.is_undefined() {
            // A new log: its `streams` store is empty as of position 0.
            let empty = SetDigest::empty().value();
            meta.put_with_key(&key(empty), &"streamsCheck".into())
                .map_err(storage)?;
        }
        if format.is_undefined() {
            meta.put_with_key(&FORMAT.into(), &"format".into())
                .map_err(storage)?;
        }
        Ok(match format.as_f64() {
            None if format.is_undefined() => None,
            Some(f) if f as u32 == FORMAT => None,
            other => Some(Error::UnsupportedFormat(other.unwrap_or(0.0) as u32)),
        })
    }

    /// Whether step 2 runs: the log opens with sync and is not synced yet.
    pub fn needs_prepare(&self) -> bool {
        self.sync.is_some() && !self.synced
    }

    /// Step 2, in a readwrite transaction over [`PREPARE_STORES`] that found `meta.synced`
    /// unset (else another tab did this step: the driver aborts it and runs step 1 again, for
    /// the marks that tab moved). It read every segment, the keys of the outbox batches
    /// already there (`kept`), and `meta` `head`, `nextBatch` and `outboxRev`. Marks the log
    /// synced: a new log starts from the server's snapshot set when it fits, else the history
    /// moves to the outbox. A failure leaves the driver to abort the transaction.
    pub fn prepare(
        &mut self,
        tx: &web_sys::IdbTransaction,
        segments: (&[u64], &[Vec<u8>]),
        kept: &[u64],
        [head, next, rev]: [u64; 3],
    ) -> Result<(), Error> {
        let meta = tx.object_store("meta").map_err(storage)?;
        let new = segments.0.is_empty() && kept.is_empty() && head == 0;
        if let (Some(boot), true) = (&self.boot, new) {
            if let Some(at) = boot::install(boot, &self.projections, tx)? {
                meta.put_with_key(&outbox_check(std::iter::empty()), &"outboxCheck".into())
                    .map_err(storage)?;
                meta.put_with_key(&JsValue::TRUE, &"synced".into())
                    .map_err(storage)?;
                self.stats.snapshot_set_at = at;
                (self.streams_through, self.truncated, self.synced) = (at, at, true);
                return Ok(());
            }
        }
        let max_push_bytes = self.sync.unwrap_or(DEFAULT_PUSH_BYTES);
        self.stats.events_migrated =
            sync::migrate(tx, segments, kept, (next, rev), max_push_bytes)?;
        (self.streams_through, self.synced) = (0, true);
        Ok(())
    }

    /// The `snapshots` keys step 3 reads: the tables', then the reducers' (none without
    /// projections: the step then reads nothing).
    pub fn snapshot_keys(&self) -> Vec<String> {
        let p = &self.projections;
        let mut keys = p.table_keys();
        keys.extend(p.reducers.iter().cloned());
        keys
    }

    /// Step 3, in a readonly transaction over `snapshots` and `meta` that read `meta.head` and
    /// the snapshots under [`Opening::snapshot_keys`]: each projection starts from its snapshot
    /// if it is intact and not past the head (JS hears which reducer snapshots it may use),
    /// else from the start. `Truncated` if one would need history that was dropped.
    pub fn load_snapshots(&mut self, head: u64, values: &[JsValue]) -> Result<(), Error> {
        let p = &self.projections;
        if !p.tables.is_empty() || !p.reducers.is_empty() {
            let stats = &mut self.stats;
            let (table_values, reducer_values) = values.split_at(p.tables.len().min(values.len()));
            let mut start = u64::MAX;
            let discard = |stats: &mut Stats, key: &str, why: String| {
                stats.snapshots_discarded += 1;
                p.warn(&format!(
                    "snapshot {key} not used: {why}; rebuilding from the log"
                ));
            };
            let mut entries = Vec::with_capacity(p.tables.len());
            let keys = p.table_keys();
            for (((name, def), value), k) in p.tables.iter().zip(table_values).zip(&keys) {
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
                    Some(seq) if has_state && seq >= 0.0 && seq as u64 > head => {
                        discard(stats, k, ahead(seq as u64, head))
                    }
                    Some(seq) if has_state && seq >= 0.0 && p.intact(value) => {
                        stats.snapshots_loaded += 1;
                        start = start.min(seq as u64);
                        usable.push(value);
                        continue;
                    }
                    Some(_) if has_state => {
                        discard(stats, k, "its checksum does not match it".into())
                    }
                    _ => discard(stats, k, "not a snapshot".into()),
                }
                stats.projections_rebuilt += 1;
                start = 0;
                usable.push(&JsValue::UNDEFINED);
            }
            p.call("start", &[usable.into()]);
            self.tables = Tables::new(entries, start);
            self.tables.set_schemas(p.schemas());
            // A projection without a snapshot after the dropped history cannot be folded.
            if self.tables.seq() < self.truncated {
                return Err(Error::Truncated {
                    start: self.truncated + 1,
                    needed: self.tables.seq() + 1,
                });
            }
        }
        // What the projections and the stream versions need; the rest is checked after open,
        // by `verify_rest`.
        self.start = self
            .tables
            .seq()
            .min(self.streams_through)
            .max(self.truncated);
        Ok(())
    }

    /// Step 4 starts at the segment holding this position.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// Step 4 begins, in a readonly transaction over `segments` and `meta`: `below` is the key
    /// of the last segment before the one holding [`Opening::start`] (a key cursor walking
    /// back one step; 0 if there is none or start is 1 or less), `truncated` is
    /// `meta.truncated`. Returns the key after which the first page is read.
    pub fn fold_from(&mut self, below: u64, truncated: u64) -> u64 {
        self.checked = below.max(truncated);
        self.checked
    }

    /// Step 4, for each page of segments read in order after the last one checked: each must
    /// be intact and begin right after the one before it. Folds them into the projections (the
    /// JS reducers get their events as JSON text) and collects the stream versions after the
    /// `streams` store's checkpoint. `head` is `meta.head`, read in the same transaction.
    pub fn fold_page(&mut self, keys: &[u64], values: &[Vec<u8>], head: u64) -> Result<(), Error> {
        let through = self.streams_through;
        let (tables, p, versions) = (&mut self.tables, &self.projections, &mut self.versions);
        let folding = tables.seq() != u64::MAX;
        let mut text = (folding && !p.reducers.is_empty()).then(|| String::from("["));
        let mut replayed = 0;
        check_segments(self.checked, keys, values, &mut |seg| {
            if seg.last_seq() > through {
                for e in seg.events() {
                    let e = e.map_err(|e| Error::corrupt(seg.first_seq(), seg.last_seq(), e))?;
                    if e.seq > through {
                        versions.insert(e.stream.to_owned(), e.version);
                    }
                }
            }
            if folding {
                let from = seg.first_seq();
                replayed += fold_segment(tables, seg, u64::MAX, text.as_mut())
                    .map_err(|e| Error::corrupt(from, seg.last_seq(), e))?;
            }
            Ok(())
        })?;
        self.checked = keys.last().copied().unwrap_or(self.checked);
        self.replayed += replayed;
        if let Some(mut events) = text.filter(|t| t.len() > 1) {
            events.push(']');
            p.fold(Some(events), None, tables.seq(), false);
        }
        p.call("progress", &[key(tables.seq().min(head)), key(head)]);
        Ok(())
    }

    /// Step 4 ends when a page comes back empty: the segments must end at the head.
    pub fn fold_end(&mut self, head: u64) -> Result<(), Error> {
        if self.checked != head {
            return Err(ends_off_head(self.checked, head));
        }
        self.stats.events_replayed += self.replayed;
        // Also when the log is empty, or nothing needed folding.
        self.tables.set_seq(head);
        self.head = head;
        // A checkpoint past the head (a repair dropped what it covered) leaves nothing past
        // the head for `verify_rest` to check; step 5 rebuilds the store.
        self.start = self.start.min(head);
        Ok(())
    }

    /// Step 5, in a readwrite transaction over `streams` and `meta` (relaxed: a digest lost to
    /// a crash is adopted again; readwrite, so no checkpoint of another tab falls between the
    /// reading and the writing) that read `meta` `streamsCheck`, `streamsThrough` and `head`
    /// and the `streams` store whole: whether the store matches its digest. A log from before
    /// the digest has none: its store is taken as it is, and its digest written. If it does
    /// not match, [`Opening::rebuild_streams`] follows.
    pub fn streams_intact(
        &mut self,
        meta: &IdbObjectStore,
        [check, through, head]: [&JsValue; 3],
        (keys, values): (&Array, &Array),
    ) -> Result<bool, Error> {
        let names = match (
            stored_digest(check),
            streams_digest(through, as_u64(head), keys, values),
        ) {
            (Some(stored), Some((actual, names))) if stored == actual => names,
            (None, Some((actual, names))) if check.is_undefined() => {
                meta.put_with_key(&key(actual.value()), &"streamsCheck".into())
                    .map_err(storage)?;
                names
            }
            _ => return Ok(false),
        };
        self.known = names;
        Ok(true)
    }

    /// Step 5 when the `streams` store does not match its digest, in a readwrite transaction
    /// over `segments`, `streams` and `meta` that read `meta` `head` and `truncated`, then the
    /// store whole (`stored`, needed only when `truncated` is above 0) and the segments after
    /// `truncated`: rewrites the store from them. It is derived data, so nothing is lost.
    pub fn rebuild_streams(
        &mut self,
        streams: &IdbObjectStore,
        meta: &IdbObjectStore,
        marks: (u64, u64),
        stored: (&Array, &Array),
        segments: (&[u64], &[Vec<u8>]),
    ) -> Result<(), Error> {
        self.known = rewrite_streams(streams, meta, marks, stored, segments)?;
        self.stats.streams_rebuilt += 1;
        Ok(())
    }

    /// Step 6: the open log, on connection `db`. A synced log then catches up with what other
    /// tabs put in its outbox ([`Log::catch_up`]).
    pub fn finish(self, db: IdbDatabase) -> Log {
        let mut known = self.known;
        // The streams of the segments after the store's checkpoint.
        for name in self.versions.keys() {
            known.insert(name);
        }
        let log = Log(Rc::new(Inner {
            name: self.name,
            db,
            durability: self.durability,
            client_id: self.client_id,
            ids: RefCell::new(IdGenerator::new(self.seed)),
            limits: Limits::default(),
            max_push_bytes: self.sync.unwrap_or(DEFAULT_PUSH_BYTES),
            head: Cell::new(self.head),
            truncated: Cell::new(self.truncated),
            // From position 1, open read everything.
            unverified: Cell::new(if self.start > 1 { self.start } else { 0 }),
            closed: Cell::new(None),
            queue: RefCell::new(Vec::new()),
            writing: Cell::new(false),
            idle: RefCell::new(Vec::new()),
            stats: Cell::new(self.stats),
            small_segments: Cell::new(0),
            cut_at: Cell::new(TARGET_BYTES),
            compaction_scheduled: Cell::new(false),
            dirty: RefCell::new(self.versions.keys().cloned().collect()),
            versions: RefCell::new(self.versions),
            versions_at: Cell::new(self.head),
            known: RefCell::new(known),
            known_whole: Cell::new(true),
            on_close: RefCell::new(self.on_close),
            on_versionchange: RefCell::new(None),
            projections: self.projections,
            tables: Rc::new(RefCell::new(self.tables)),
            outbox: RefCell::new(self.synced.then(sync::Mirror::unread)),
        }));
        log.watch_versionchange();
        log
    }
}

impl Log {
    /// Opens (creating if needed) log `name` and brings the projections up to date: each from
    /// its snapshot when one matches, else from the start. It reads and verifies the segments
    /// from the oldest position the projections and the stream versions need to the head;
    /// [`Log::verify_rest`] checks the ones before. The steps of [`Opening`], as js/open.js
    /// runs them.
    pub async fn open(
        name: &str,
        durability: Durability,
        on_close: Option<Function>,
        projections: Projections,
        sync: Option<usize>,
        boot: Option<Boot>,
    ) -> Result<Log, Error> {
        let mut opening = Opening::new(name, durability, on_close, projections, sync, boot)?;
        let db = connect(name).await?;
        if let Err(e) = opening.run(&db).await {
            db.close();
            return Err(e);
        }
        let log = opening.finish(db);
        if log.is_synced() {
            if let Err(e) = log.catch_up_synced().await {
                log.0.db.close();
                return Err(e);
            }
        }
        Ok(log)
    }
}

/// Awaits a request's result.
async fn got(req: Result<web_sys::IdbRequest, JsValue>) -> Result<JsValue, Error> {
    idb::request(&req.map_err(storage)?).await.map_err(storage)
}

impl Opening {
    /// Steps 1 to 5 on `db`.
    async fn run(&mut self, db: &IdbDatabase) -> Result<(), Error> {
        self.run_init_meta(db).await?;
        if self.needs_prepare() && !self.run_prepare(db).await? {
            self.run_init_meta(db).await?;
        }
        self.run_load_snapshots(db).await?;
        self.run_fold(db).await?;
        self.run_streams(db).await
    }

    async fn run_init_meta(&mut self, db: &IdbDatabase) -> Result<(), Error> {
        let tx = idb::transaction(db, &["meta"], true, self.durability()).map_err(storage)?;
        let done = idb::done(&tx);
        let meta = tx.object_store("meta").map_err(storage)?;
        let reqs = META_KEYS.map(|k| meta.get(&k.into()));
        let mut read: [JsValue; 6] = Default::default();
        for (value, req) in read.iter_mut().zip(reqs) {
            *value = got(req).await?;
        }
        let refused = self.init_meta(&meta, &read)?;
        done.await.map_err(storage)?;
        refused.map_or(Ok(()), Err)
    }

    /// False when another tab had done it.
    async fn run_prepare(&mut self, db: &IdbDatabase) -> Result<bool, Error> {
        let tx = idb::transaction(db, &PREPARE_STORES, true, self.durability()).map_err(storage)?;
        let done = idb::done(&tx);
        let meta = tx.object_store("meta").map_err(storage)?;
        if got(meta.get(&"synced".into())).await?.is_truthy() {
            tx.abort().ok();
            let _ = done.await;
            return Ok(false);
        }
        let segments = tx.object_store("segments").map_err(storage)?;
        let (keys, values) = read_segments(&segments, 0, u32::MAX).await?;
        let outbox = tx.object_store("outbox").map_err(storage)?;
        let kept: Vec<u64> = got(outbox.get_all_keys())
            .await?
            .unchecked_into::<Array>()
            .iter()
            .map(|k| as_u64(&k))
            .collect();
        let mut marks = [0; 3];
        for (mark, k) in marks.iter_mut().zip(["head", "nextBatch", "outboxRev"]) {
            *mark = as_u64(&got(meta.get(&k.into())).await?);
        }
        if let Err(e) = self.prepare(&tx, (&keys, &values), &kept, marks) {
            tx.abort().ok();
            let _ = done.await;
            return Err(e);
        }
        done.await.map_err(storage)?;
        Ok(true)
    }

    async fn run_load_snapshots(&mut self, db: &IdbDatabase) -> Result<(), Error> {
        let keys = self.snapshot_keys();
        if keys.is_empty() {
            return self.load_snapshots(0, &[]);
        }
        let tx = idb::transaction(db, &["snapshots", "meta"], false, "default").map_err(storage)?;
        let meta = tx.object_store("meta").map_err(storage)?;
        let store = tx.object_store("snapshots").map_err(storage)?;
        let head = got(meta.get(&"head".into()));
        let reqs: Vec<_> = keys.iter().map(|k| store.get(&k.as_str().into())).collect();
        let head = as_u64(&head.await?);
        let mut values = Vec::with_capacity(reqs.len());
        for req in reqs {
            values.push(got(req).await?);
        }
        self.load_snapshots(head, &values)
    }

    async fn run_fold(&mut self, db: &IdbDatabase) -> Result<(), Error> {
        let tx = idb::transaction(db, &["segments", "meta"], false, "default").map_err(storage)?;
        let meta = tx.object_store("meta").map_err(storage)?;
        let store = tx.object_store("segments").map_err(storage)?;
        let head = meta.get(&"head".into());
        let truncated = meta.get(&"truncated".into());
        let mut below = 0;
        if self.start > 1 {
            let key = idb::last_key_below(&store, self.start as f64).await;
            below = as_u64(&key.map_err(storage)?);
        }
        let truncated = as_u64(&got(truncated).await?);
        let mut next = request_segments(&store, self.fold_from(below, truncated), PAGE)?;
        let head = as_u64(&got(head).await?);
        loop {
            let (keys, values) = next.get().await?;
            let Some(last) = keys.last() else { break };
            // The next page is read while this one folds.
            next = request_segments(&store, *last, PAGE)?;
            self.fold_page(&keys, &values, head)?;
        }
        self.fold_end(head)
    }

    async fn run_streams(&mut self, db: &IdbDatabase) -> Result<(), Error> {
        let tx = idb::transaction(db, &["streams", "meta"], true, "relaxed").map_err(storage)?;
        let done = idb::done(&tx);
        let meta = tx.object_store("meta").map_err(storage)?;
        let streams = tx.object_store("streams").map_err(storage)?;
        let marks = ["streamsCheck", "streamsThrough", "head"].map(|k| meta.get(&k.into()));
        let (keys, values) = (streams.get_all_keys(), streams.get_all());
        let mut read: [JsValue; 3] = Default::default();
        for (value, req) in read.iter_mut().zip(marks) {
            *value = got(req).await?;
        }
        let store: (Array, Array) = (
            got(keys).await?.unchecked_into(),
            got(values).await?.unchecked_into(),
        );
        let [check, through, head] = &read;
        let intact = self.streams_intact(&meta, [check, through, head], (&store.0, &store.1))?;
        done.await.map_err(storage)?;
        if intact {
            return Ok(());
        }
        let tx = idb::transaction(db, &["segments", "streams", "meta"], true, "strict")
            .map_err(storage)?;
        let done = idb::done(&tx);
        let meta = tx.object_store("meta").map_err(storage)?;
        let streams = tx.object_store("streams").map_err(storage)?;
        let head = as_u64(&got(meta.get(&"head".into())).await?);
        let truncated = as_u64(&got(meta.get(&"truncated".into())).await?);
        let (stored_keys, stored_values): (Array, Array) = if truncated > 0 {
            let keys = got(streams.get_all_keys()).await?;
            (
                keys.unchecked_into(),
                got(streams.get_all()).await?.unchecked_into(),
            )
        } else {
            (Array::new(), Array::new())
        };
        let segments = tx.object_store("segments").map_err(storage)?;
        let (keys, values) = read_segments(&segments, truncated, u32::MAX).await?;
        self.rebuild_streams(
            &streams,
            &meta,
            (head, truncated),
            (&stored_keys, &stored_values),
            (&keys, &values),
        )?;
        done.await.map(drop).map_err(storage)
    }
}
