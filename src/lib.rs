//! logfold: an offline-first event store for the web.
//!
//! The append-only event log lives in IndexedDB and is the source of truth. This crate is the
//! WebAssembly half of the npm package: thin bindings over [`log::Log`] (IndexedDB storage) and
//! `logfold-core` (events, validation, the segment codec). The JS wrapper (`js/index.js`) adds
//! input checks that need JS types, the async iterator and the `LogfoldError` class.

#![warn(missing_docs)]

pub mod error;
mod idb;
pub mod log;
pub mod tables;

use js_sys::{Function, Promise};
use logfold_core::json::{push_u64, JsonError, Reader};
use logfold_core::{Batch, ExpectedVersion, NewEvent};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use crate::error::Error;
use crate::log::{Appended, Base, Boot, Durability, Log, Projections};
use crate::tables::{parse_definitions, reducer_snapshot_key, table_snapshot_key, TablesView};

pub use error::set_error_class;

/// The wrapper's event list, `[{stream, type, data, meta?}]`, with `data` and `meta` kept as
/// their JSON text (`meta: null` is no meta).
fn wire_events(text: &str) -> Result<Vec<NewEvent>, JsonError> {
    let mut r = Reader::new(text);
    let mut events = Vec::new();
    r.array(|r| {
        let (mut stream, mut event_type, mut data, mut meta) = (None, None, None, None);
        r.object(|r, key| {
            match &*key {
                "stream" => stream = Some(r.string()?.into_owned()),
                "type" => event_type = Some(r.string()?.into_owned()),
                "data" => data = Some(r.skip()?.to_owned()),
                "meta" => meta = r.raw_or_null()?.map(str::to_owned),
                _ => drop(r.skip()?),
            }
            Ok(())
        })?;
        match (stream, event_type, data) {
            (Some(stream), Some(event_type), Some(data)) => events.push(NewEvent {
                stream,
                event_type,
                data,
                meta,
            }),
            _ => return Err(r.error("an event needs stream, type and data")),
        }
        Ok(())
    })?;
    r.end()?;
    Ok(events)
}

/// Splits the wrapper's event list into batches with their expected versions (`streams[i]`
/// must be at `versions[i]`; a negative version means "none": the stream must not exist).
fn split_batches(
    events_json: &str,
    sizes: &[u32],
    streams: Vec<String>,
    versions: Vec<f64>,
    counts: &[u32],
) -> Result<Vec<Batch>, Error> {
    let wire = wire_events(events_json)
        .map_err(|e| Error::argument("events", format!("not an event list: {e}")))?;
    let total: usize = sizes.iter().map(|n| *n as usize).sum();
    if total != wire.len() || sizes.len() != counts.len() || streams.len() != versions.len() {
        return Err(Error::argument(
            "events",
            "batch sizes do not match the events",
        ));
    }
    let mut events = wire.into_iter();
    let mut expected = streams.into_iter().zip(versions);
    Ok(sizes
        .iter()
        .zip(counts)
        .map(|(size, count)| {
            let mut batch = Batch::new(events.by_ref().take(*size as usize).collect());
            for (stream, v) in expected.by_ref().take(*count as usize) {
                let v = if v < 0.0 {
                    ExpectedVersion::NoStream
                } else {
                    ExpectedVersion::Exact(v as u64)
                };
                batch = batch.expect(stream, v);
            }
            batch
        })
        .collect())
}

/// The snapshot keys of reducers `names[i]` at `versions[i]`.
fn reducer_keys(names: &[String], versions: &[u32]) -> Vec<String> {
    names
        .iter()
        .zip(versions)
        .map(|(n, v)| reducer_snapshot_key(n, *v))
        .collect()
}

/// Appends `{"time", "events": [[id, version, seq], …]}`.
fn answer(a: &Appended, out: &mut String) {
    out.reserve(32 + a.events.len() * 64);
    out.push_str("{\"time\":");
    push_u64(out, a.time);
    out.push_str(",\"events\":[");
    for (i, e) in a.events.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("[\"");
        e.id.write_to(out);
        out.push_str("\",");
        push_u64(out, e.version);
        out.push(',');
        push_u64(out, e.seq);
        out.push(']');
    }
    out.push_str("]}");
}

/// The name of the server's snapshot set for these projections (see
/// `logfold_core::protocol::snapshots`): the same tables, reducers and `salt` give the same.
#[wasm_bindgen(js_name = snapshotSetId)]
pub fn snapshot_set_id(
    tables: &str,
    reducers: Vec<String>,
    reducer_versions: Vec<u32>,
    salt: &str,
) -> Result<String, JsValue> {
    let mut keys: Vec<String> = parse_definitions(tables)?
        .iter()
        .map(|(name, def)| table_snapshot_key(name, def))
        .collect();
    keys.extend(reducer_keys(&reducers, &reducer_versions));
    Ok(logfold_core::protocol::snapshots::set_id(
        salt,
        keys.iter().map(String::as_str),
    ))
}

/// A log being opened, step by step (see `log::Opening`); js/open.js runs each step's
/// transaction.
#[wasm_bindgen(js_name = Opening)]
pub struct OpeningCore(log::Opening);

#[wasm_bindgen(js_class = Opening)]
impl OpeningCore {
    /// Log `name` to open. `durability` is `"strict"` or `"relaxed"`. `tables` is JSON text of
    /// the declarative tables (`{name: definition}`); `reducers` and `reducer_versions` name
    /// the JS reducers, which `hooks` folds (see [`Projections`]). With `sync`, every push
    /// body is at most `max_push_bytes`, and so is every batch appended. A new synced log
    /// starts from `boot_set` (a snapshot set the server served with identity `boot_log`) when
    /// the set fits its projections.
    #[wasm_bindgen(constructor)]
    #[allow(clippy::too_many_arguments)] // one flat call from the JS wrapper
    pub fn new(
        name: String,
        durability: String,
        on_close: Option<Function>,
        tables: &str,
        reducers: Vec<String>,
        reducer_versions: Vec<u32>,
        hooks: JsValue,
        sync: bool,
        max_push_bytes: f64,
        boot_set: Option<Vec<u8>>,
        boot_log: Option<String>,
    ) -> Result<OpeningCore, JsValue> {
        let durability = match durability.as_str() {
            "strict" => Durability::Strict,
            "relaxed" => Durability::Relaxed,
            other => {
                return Err(Error::argument(
                    "durability",
                    format!("\"{other}\" is not \"strict\" or \"relaxed\""),
                )
                .into())
            }
        };
        let projections = Projections {
            tables: parse_definitions(tables)?,
            reducers: reducer_keys(&reducers, &reducer_versions),
            hooks: (!hooks.is_undefined()).then_some(hooks),
        };
        let boot = boot_set
            .zip(boot_log)
            .map(|(set, server_log)| Boot { set, server_log });
        let sync = sync.then_some(max_push_bytes as usize);
        let opening = log::Opening::new(&name, durability, on_close, projections, sync, boot)?;
        Ok(OpeningCore(opening))
    }

    /// The `meta` records step 1 reads, in the order `initMeta` takes them.
    #[wasm_bindgen(js_name = metaKeys)]
    pub fn meta_keys() -> Vec<String> {
        log::META_KEYS.iter().map(|k| (*k).to_owned()).collect()
    }

    /// The stores of step 2's transaction.
    #[wasm_bindgen(js_name = prepareStores)]
    pub fn prepare_stores() -> Vec<String> {
        log::PREPARE_STORES
            .iter()
            .map(|k| (*k).to_owned())
            .collect()
    }

    /// `"strict"` or `"relaxed"`.
    #[wasm_bindgen(getter)]
    pub fn durability(&self) -> String {
        self.0.durability().to_owned()
    }

    /// Step 1 (see `Opening::init_meta`): `read` holds the records of `metaKeys`. Returns the
    /// error to throw once the transaction has committed, if any.
    #[wasm_bindgen(js_name = initMeta, unchecked_return_type = "Error | undefined")]
    pub fn init_meta(
        &mut self,
        meta: &web_sys::IdbObjectStore,
        read: Vec<JsValue>,
    ) -> Result<JsValue, JsValue> {
        let read: [JsValue; 6] = read
            .try_into()
            .map_err(|_| Error::argument("read", "must hold the records of metaKeys"))?;
        Ok(self
            .0
            .init_meta(meta, &read)?
            .map_or(JsValue::UNDEFINED, |e| e.to_js()))
    }

    /// Whether step 2 runs.
    #[wasm_bindgen(getter, js_name = needsPrepare)]
    pub fn needs_prepare(&self) -> bool {
        self.0.needs_prepare()
    }

    /// Step 2 (see `Opening::prepare`): the segments, the outbox's keys, and `meta` `head`,
    /// `nextBatch` and `outboxRev`.
    #[allow(clippy::too_many_arguments)] // one flat call from js/open.js
    pub fn prepare(
        &mut self,
        tx: &web_sys::IdbTransaction,
        keys: Vec<f64>,
        values: Vec<JsValue>,
        kept: Vec<f64>,
        head: f64,
        next: f64,
        rev: f64,
    ) -> Result<(), JsValue> {
        let (keys, values) = segments(&keys, &values);
        let kept: Vec<u64> = kept.iter().map(|k| *k as u64).collect();
        let marks = [head as u64, next as u64, rev as u64];
        Ok(self.0.prepare(tx, (&keys, &values), &kept, marks)?)
    }

    /// The `snapshots` keys step 3 reads.
    #[wasm_bindgen(js_name = snapshotKeys)]
    pub fn snapshot_keys(&self) -> Vec<String> {
        self.0.snapshot_keys()
    }

    /// Step 3 (see `Opening::load_snapshots`).
    #[wasm_bindgen(js_name = loadSnapshots)]
    pub fn load_snapshots(&mut self, head: f64, values: Vec<JsValue>) -> Result<(), JsValue> {
        Ok(self.0.load_snapshots(head as u64, &values)?)
    }

    /// Step 4 starts at the segment holding this position.
    #[wasm_bindgen(getter)]
    pub fn start(&self) -> f64 {
        self.0.start() as f64
    }

    /// Step 4 begins (see `Opening::fold_from`); returns the key the first page is read after.
    #[wasm_bindgen(js_name = foldFrom)]
    pub fn fold_from(&mut self, below: f64, truncated: f64) -> f64 {
        self.0.fold_from(below as u64, truncated as u64) as f64
    }

    /// Step 4, a page of segments (see `Opening::fold_page`).
    #[wasm_bindgen(js_name = foldPage)]
    pub fn fold_page(
        &mut self,
        keys: Vec<f64>,
        values: Vec<JsValue>,
        head: f64,
    ) -> Result<(), JsValue> {
        let (keys, values) = segments(&keys, &values);
        Ok(self.0.fold_page(&keys, &values, head as u64)?)
    }

    /// Step 4 ends (see `Opening::fold_end`).
    #[wasm_bindgen(js_name = foldEnd)]
    pub fn fold_end(&mut self, head: f64) -> Result<(), JsValue> {
        Ok(self.0.fold_end(head as u64)?)
    }

    /// Step 5 (see `Opening::streams_intact`).
    #[wasm_bindgen(js_name = streamsIntact)]
    #[allow(clippy::too_many_arguments)] // one flat call from js/open.js
    pub fn streams_intact(
        &mut self,
        meta: &web_sys::IdbObjectStore,
        check: JsValue,
        through: JsValue,
        head: JsValue,
        keys: js_sys::Array,
        values: js_sys::Array,
    ) -> Result<bool, JsValue> {
        Ok(self
            .0
            .streams_intact(meta, [&check, &through, &head], (&keys, &values))?)
    }

    /// Step 5 when the `streams` store must be rebuilt (see `Opening::rebuild_streams`).
    #[wasm_bindgen(js_name = rebuildStreams)]
    #[allow(clippy::too_many_arguments)] // one flat call from js/open.js
    pub fn rebuild_streams(
        &mut self,
        streams: &web_sys::IdbObjectStore,
        meta: &web_sys::IdbObjectStore,
        head: f64,
        truncated: f64,
        stored_keys: js_sys::Array,
        stored_values: js_sys::Array,
        keys: Vec<f64>,
        values: Vec<JsValue>,
    ) -> Result<(), JsValue> {
        let (keys, values) = segments(&keys, &values);
        Ok(self.0.rebuild_streams(
            streams,
            meta,
            (head as u64, truncated as u64),
            (&stored_keys, &stored_values),
            (&keys, &values),
        )?)
    }

    /// Step 6: the open log on connection `db`.
    pub fn finish(self, db: web_sys::IdbDatabase) -> LogCore {
        LogCore(self.0.finish(db))
    }
}

/// The wasm side of an open log; the JS `Log` class wraps it.
#[wasm_bindgen]
pub struct LogCore(Log);

#[wasm_bindgen]
impl LogCore {
    /// The log's name.
    #[wasm_bindgen(getter)]
    pub fn name(&self) -> String {
        self.0.name().to_owned()
    }

    /// This client's id.
    #[wasm_bindgen(getter, js_name = clientId)]
    pub fn client_id(&self) -> String {
        self.0.client_id().to_owned()
    }

    /// The highest position this handle has seen.
    #[wasm_bindgen(getter)]
    pub fn head(&self) -> f64 {
        self.0.head() as f64
    }

    /// Whether the log is closed.
    #[wasm_bindgen(getter)]
    pub fn closed(&self) -> bool {
        self.0.is_closed()
    }

    /// The IndexedDB connection, for the steps JS runs itself (sync leadership and marks,
    /// rejections): they touch only `meta` and `rejections`.
    #[wasm_bindgen(getter)]
    pub fn db(&self) -> web_sys::IdbDatabase {
        self.0.db().clone()
    }

    /// The error an IndexedDB failure `e` of such a step is: `CLOSED` once the log has closed
    /// (also when `e` is undefined), else `STORAGE` or `QUOTA_EXCEEDED`.
    pub fn failure(&self, e: JsValue) -> JsValue {
        self.0.closed_or(e).to_js()
    }

    /// Appends batches given as one JSON list of events (`[{stream, type, data, meta?}]`):
    /// `sizes[i]` consecutive events form batch `i`, each atomic on its own, and
    /// `expected_counts[i]` consecutive entries of the expected-version lists belong to it
    /// (see `split_batches`). The wrapper gathers the appends made in one tick into one call,
    /// so they cross into wasm once and share one transaction. Resolves to `[answers, errors]`:
    /// JSON text of a list with, per batch, `{"time", "events": [[id, version, seq], …]}` or
    /// `null`, and a list with, per batch, its error or `undefined`. The wrapper joins the
    /// answers with the events it already holds rather than have them sent back.
    #[wasm_bindgen(js_name = appendBatches, unchecked_return_type = "Promise<[string, Array<Error | undefined>]>")]
    pub fn append_batches(
        &self,
        events_json: &str,
        sizes: Vec<u32>,
        expected_streams: Vec<String>,
        expected_versions: Vec<f64>,
        expected_counts: Vec<u32>,
    ) -> Promise {
        let batches = split_batches(
            events_json,
            &sizes,
            expected_streams,
            expected_versions,
            &expected_counts,
        );
        let log = self.0.clone();
        future_to_promise(async move {
            // Queue every batch before awaiting any, so they share a transaction.
            let pending: Vec<_> = batches?.into_iter().map(|b| log.submit(b)).collect();
            let mut answers = String::from("[");
            let errors = js_sys::Array::new();
            for (i, appended) in pending.into_iter().enumerate() {
                if i > 0 {
                    answers.push(',');
                }
                match appended.await {
                    Ok(a) => {
                        answer(&a, &mut answers);
                        errors.push(&JsValue::UNDEFINED);
                    }
                    Err(e) => {
                        answers.push_str("null");
                        errors.push(&e.to_js());
                    }
                }
            }
            answers.push(']');
            Ok(js_sys::Array::of2(&answers.into(), &errors).into())
        })
    }

    /// Up to `limit` events after position `after` (negative: from the first position kept),
    /// as JSON text of an array.
    #[wasm_bindgen(unchecked_return_type = "Promise<string>")]
    pub fn read(&self, after: f64, limit: f64) -> Promise {
        let log = self.0.clone();
        let after = (after >= 0.0).then_some(after as u64);
        future_to_promise(async move { Ok(log.read_json(after, limit as u64).await?.into()) })
    }

    /// The first position the log keeps (1 unless `truncateBefore` dropped some).
    #[wasm_bindgen(getter)]
    pub fn start(&self) -> f64 {
        self.0.start() as f64
    }

    /// The stream's current version.
    #[wasm_bindgen(unchecked_return_type = "Promise<number>")]
    pub fn version(&self, stream: String) -> Promise {
        let log = self.0.clone();
        future_to_promise(async move { Ok((log.version(&stream).await? as f64).into()) })
    }

    /// The live tables (shared: they change as the log grows).
    pub fn tables(&self) -> TablesView {
        TablesView(self.0.tables())
    }

    /// Folds what other tabs appended; resolves to the new position.
    #[wasm_bindgen(js_name = catchUp, unchecked_return_type = "Promise<number>")]
    pub fn catch_up(&self) -> Promise {
        let log = self.0.clone();
        future_to_promise(async move { Ok((log.catch_up().await? as f64).into()) })
    }

    /// What `Log.snapshot()` stores of the tables: `[seq, key, bytes, key, bytes, …]`, the
    /// position they (and the reducers' bases) are of, then each snapshot under its key (see
    /// `Log::table_snapshots`).
    #[wasm_bindgen(js_name = tableSnapshots, unchecked_return_type = "[number, ...Array<string | ArrayBuffer>]")]
    pub fn table_snapshots(&self) -> js_sys::Array {
        let (seq, tables) = self.0.table_snapshots();
        let out = js_sys::Array::of1(&(seq as f64).into());
        for (k, bytes) in &tables {
            out.push(&k.into());
            out.push(&js_sys::Uint8Array::from(&bytes[..]).buffer());
        }
        out
    }

    /// Counts `n` snapshots JS wrote (`stats().snapshotsWritten`).
    #[wasm_bindgen(js_name = snapshotsWritten)]
    pub fn snapshots_written(&self, n: f64) {
        self.0.snapshots_written(n as u64);
    }

    /// The snapshot keys of the tables, then of reducer `names[i]` at `versions[i]`; with
    /// `base`, of their base snapshots (kept where history was dropped).
    #[wasm_bindgen(js_name = snapshotKeys)]
    pub fn snapshot_keys(&self, names: Vec<String>, versions: Vec<u32>, base: bool) -> Vec<String> {
        self.0.snapshot_keys(reducer_keys(&names, &versions), base)
    }

    /// Tables to fold up to past position `seq` from their stored snapshots and base snapshots
    /// (`stored` and `bases`, under `snapshotKeys`), and down to `reducers_from`; with `text`,
    /// each fold also gives the events as JSON text for the JS reducers.
    #[wasm_bindgen(js_name = pastTables)]
    pub fn past_tables(
        &self,
        seq: f64,
        reducers_from: f64,
        stored: Vec<JsValue>,
        bases: Vec<JsValue>,
        text: bool,
    ) -> PastTables {
        PastTables {
            tables: self
                .0
                .past_tables(seq as u64, reducers_from as u64, &stored, &bases),
            upto: seq as u64,
            text,
        }
    }

    /// Notes the last position dropped as just read; throws `TRUNCATED` unless the
    /// positions after `after` are kept.
    #[wasm_bindgen(js_name = checkKept)]
    pub fn check_kept(&self, after: f64, truncated: f64) -> Result<(), JsValue> {
        Ok(self.0.check_kept(after as u64, truncated as u64)?)
    }

    /// The snapshot set of every projection for the server, with reducer `names[i]` at
    /// `versions[i]` in state `states[i]` (JSON text) as of `reducers_at`; `undefined` when the
    /// tables show outbox events or the reducers are elsewhere (see `Log::snapshot_set`).
    #[wasm_bindgen(js_name = snapshotSet, unchecked_return_type = "Uint8Array | undefined")]
    pub fn snapshot_set(
        &self,
        salt: String,
        names: Vec<String>,
        versions: Vec<u32>,
        states: Vec<String>,
        reducers_at: f64,
    ) -> Option<Vec<u8>> {
        let reducers = reducer_keys(&names, &versions)
            .into_iter()
            .zip(states)
            .collect();
        self.0.snapshot_set(salt, reducers, reducers_at as u64)
    }

    /// Drops the confirmed segments wholly before `before` (see `Log::truncate_before`);
    /// resolves to `{ start, dropped }`. With `view` (a past view as of `cut`), the cut is made
    /// only if it ends at `cut`, and the tables of `view` and reducer `names[i]` at
    /// `versions[i]` with snapshot `values[i]` are stored as the base snapshots in its
    /// transaction.
    #[wasm_bindgen(js_name = truncateBefore, unchecked_return_type = "Promise<{ start: number, dropped: number }>")]
    pub fn truncate_before(
        &self,
        before: f64,
        cut: f64,
        view: Option<TablesView>,
        names: Vec<String>,
        versions: Vec<u32>,
        values: Vec<JsValue>,
    ) -> Promise {
        let log = self.0.clone();
        let base = view.map(|view| Base {
            cut: cut as u64,
            tables: view.0.borrow().snapshots(),
            reducers: reducer_keys(&names, &versions)
                .into_iter()
                .zip(values)
                .collect(),
        });
        future_to_promise(async move {
            let (start, dropped) = log.truncate_before(before as u64, base).await?;
            Ok(object(&[
                ("start", start as f64),
                ("dropped", dropped as f64),
            ]))
        })
    }

    /// The last position `truncateBefore(before)` would drop now (the last one dropped so far
    /// when it would drop none).
    #[wasm_bindgen(js_name = cutPoint, unchecked_return_type = "Promise<number>")]
    pub fn cut_point(&self, before: f64) -> Promise {
        let log = self.0.clone();
        future_to_promise(async move { Ok((log.cut_point(before as u64).await? as f64).into()) })
    }

    /// Checks the segments open did not need to read; rejects with `CORRUPT` on damage.
    #[wasm_bindgen(js_name = verifyRest, unchecked_return_type = "Promise<void>")]
    pub fn verify_rest(&self) -> Promise {
        let log = self.0.clone();
        future_to_promise(async move {
            log.verify_rest().await?;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// Merges small segments and checkpoints stream versions now.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn compact(&self) -> Promise {
        let log = self.0.clone();
        future_to_promise(async move {
            log.compact().await?;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// Counters since open.
    #[wasm_bindgen(
        unchecked_return_type = "{ transactions: number, segmentsWritten: number, segmentsMerged: number, compactions: number, eventsAppended: number, eventsReplayed: number, snapshotsLoaded: number, snapshotsDiscarded: number, snapshotsWritten: number, projectionsRebuilt: number, overlayRebuilds: number, overlayEvents: number, baseEvents: number, eventsPulled: number, eventsMigrated: number, streamsRebuilt: number, snapshotSetAt: number }"
    )]
    pub fn stats(&self) -> JsValue {
        let ser = serde_wasm_bindgen::Serializer::json_compatible();
        serde::Serialize::serialize(&self.0.stats(), &ser).unwrap_or(JsValue::NULL)
    }

    /// Whether appends go to the outbox (the log is synced with a server).
    #[wasm_bindgen(getter)]
    pub fn synced(&self) -> bool {
        self.0.is_synced()
    }

    /// Events waiting in the outbox, as this tab last read it.
    #[wasm_bindgen(getter)]
    pub fn pending(&self) -> f64 {
        self.0.pending() as f64
    }

    /// The next push request body (UTF-8 JSON) and its batch numbers, or `undefined` when
    /// nothing waits. Bytes, not text: fetch sends them as they are, and their length is what
    /// the upload takes.
    #[wasm_bindgen(js_name = pushRequest, unchecked_return_type = "Promise<[Uint8Array, Float64Array] | undefined>")]
    pub fn push_request(&self, epoch: f64) -> Promise {
        let log = self.0.clone();
        future_to_promise(async move {
            Ok(match log.push_request(epoch as u64).await? {
                None => JsValue::UNDEFINED,
                Some((body, numbers)) => {
                    let numbers: Vec<f64> = numbers.iter().map(|n| *n as f64).collect();
                    let body = js_sys::Uint8Array::from(body.as_bytes());
                    js_sys::Array::of2(&body, &js_sys::Float64Array::from(&numbers[..])).into()
                }
            })
        })
    }

    /// Applies a push answer (JSON text) to batches `numbers`. Resolves to JSON text of
    /// `{ acknowledged, rejected: [rejection], retracted: [batch], fenced, serverHead }`.
    #[wasm_bindgen(js_name = applyPush, unchecked_return_type = "Promise<string>")]
    pub fn apply_push(&self, epoch: f64, numbers: Vec<f64>, response: String) -> Promise {
        let log = self.0.clone();
        future_to_promise(async move {
            let response =
                logfold_core::protocol::PushResponse::from_json(&response).map_err(|e| {
                    Error::Sync {
                        code: "SYNC_PROTOCOL",
                        message: format!("the push answer is not valid: {e}"),
                    }
                })?;
            let numbers: Vec<u64> = numbers.iter().map(|n| *n as u64).collect();
            let head = response.head;
            let pushed = log.apply_push(epoch as u64, &numbers, response).await?;
            let mut out = String::from("{\"acknowledged\":[");
            for (i, n) in pushed.acknowledged.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_u64(&mut out, *n);
            }
            out.push_str("],\"rejected\":[");
            out.push_str(&pushed.rejected.join(","));
            out.push_str("],\"retracted\":[");
            for (i, n) in pushed.retracted.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_u64(&mut out, *n);
            }
            out.push_str("],\"fenced\":");
            out.push_str(if pushed.fenced { "true" } else { "false" });
            out.push_str(",\"serverHead\":");
            push_u64(&mut out, head);
            out.push('}');
            Ok(out.into())
        })
    }

    /// Adds pulled events to the confirmed log: `body` is a JSON pull answer (text) or a
    /// binary segment (bytes). Resolves to `{ confirmed, ours, head, serverHead, retracted }`.
    #[wasm_bindgen(js_name = applyPull, unchecked_return_type = "Promise<{ confirmed: number, ours: number, head: number, serverHead: number, retracted: number[] }>")]
    pub fn apply_pull(&self, epoch: f64, body: JsValue, server_head: f64) -> Promise {
        let log = self.0.clone();
        future_to_promise(async move {
            let (events, server_head) = pulled_events(&body, server_head as u64)?;
            let pulled = log.apply_pull(epoch as u64, events, server_head).await?;
            let out = object(&[
                ("confirmed", pulled.confirmed as f64),
                ("ours", pulled.ours as f64),
                ("head", pulled.head as f64),
                ("serverHead", server_head as f64),
            ]);
            let retracted: js_sys::Array = pulled
                .retracted
                .iter()
                .map(|n| JsValue::from(*n as f64))
                .collect();
            js_sys::Reflect::set(&out, &"retracted".into(), &retracted)?;
            Ok(out)
        })
    }

    /// Forgets a rejection; resolves to whether there was one.
    #[wasm_bindgen(js_name = dismissRejection, unchecked_return_type = "Promise<boolean>")]
    pub fn dismiss_rejection(&self, id: f64) -> Promise {
        let log = self.0.clone();
        future_to_promise(async move { Ok(log.dismiss_rejection(id as u64).await?.into()) })
    }

    /// Waits for pending appends, then closes.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn close(&self) -> Promise {
        let log = self.0.clone();
        future_to_promise(async move {
            log.close().await;
            Ok(JsValue::UNDEFINED)
        })
    }
}

/// Tables on their way to a past position (see `LogCore.pastTables`): JS reads the segments
/// after `seq` a page at a time and folds each in.
#[wasm_bindgen]
pub struct PastTables {
    tables: crate::tables::Tables,
    upto: u64,
    text: bool,
}

#[wasm_bindgen]
impl PastTables {
    /// The position the tables are at.
    #[wasm_bindgen(getter)]
    pub fn seq(&self) -> f64 {
        self.tables.seq() as f64
    }

    /// Folds a page of segments read after `seq`; returns their events as JSON text when
    /// asked for. Damage is `CORRUPT`.
    pub fn fold(
        &mut self,
        keys: Vec<f64>,
        values: Vec<JsValue>,
    ) -> Result<Option<String>, JsValue> {
        let (keys, values) = segments(&keys, &values);
        Ok(log::fold_past(
            &mut self.tables,
            &keys,
            &values,
            self.upto,
            self.text,
        )?)
    }

    /// The tables folded, as a read-only view.
    pub fn view(self) -> TablesView {
        TablesView(std::rc::Rc::new(std::cell::RefCell::new(self.tables)))
    }
}

/// The events of a pull answer with their offsets, and the server's head: a JSON answer
/// (text) carries its head; a binary segment's comes from the `logfold-head` header.
fn pulled_events(
    body: &JsValue,
    header_head: u64,
) -> Result<(Vec<logfold_core::Event>, u64), Error> {
    let bad = |what: String| Error::Sync {
        code: "SYNC_PROTOCOL",
        message: format!("the pull answer is not valid: {what}"),
    };
    if let Some(text) = body.as_string() {
        let r = logfold_core::protocol::PullResponse::from_json(&text)
            .map_err(|e| bad(e.to_string()))?;
        return Ok((r.events.into_iter().map(Into::into).collect(), r.head));
    }
    let bytes = js_sys::Uint8Array::new(body).to_vec();
    if bytes.is_empty() {
        return Ok((Vec::new(), header_head));
    }
    let mut scratch = Vec::new();
    let seg =
        logfold_core::Segment::parse_in(&bytes, &mut scratch).map_err(|e| bad(e.to_string()))?;
    let events = seg
        .decode()
        .map_err(|e| bad(e.to_string()))?
        .iter()
        .map(|e| {
            let mut e = e.to_owned();
            e.offset = Some(e.seq);
            e
        })
        .collect();
    Ok((events, header_head))
}

// --- for the steps JS runs on a log no handle has open (js/store.js) ---

/// Opens log `name`'s database, creating it with its stores if it is new.
#[wasm_bindgen(js_name = openDatabase, unchecked_return_type = "Promise<IDBDatabase>")]
pub fn open_database(name: String) -> Promise {
    future_to_promise(async move { Ok(log::connect(&name).await?.into()) })
}

/// The error an IndexedDB failure `e` is: `QUOTA_EXCEEDED`, else `STORAGE`.
#[wasm_bindgen(js_name = storageError)]
pub fn storage_error(e: JsValue) -> JsValue {
    Error::from_dom(&e).to_js()
}

/// The first damage in segments read in order after position `prev` (their keys and stored
/// values): its `CORRUPT` or `UNSUPPORTED_FORMAT` error, or `undefined` if they are intact.
#[wasm_bindgen(js_name = segmentDamage, unchecked_return_type = "Error | undefined")]
pub fn segment_damage(prev: f64, keys: Vec<f64>, values: Vec<JsValue>) -> JsValue {
    let (keys, values) = segments(&keys, &values);
    match log::check_segments(prev as u64, &keys, &values, &mut |_| Ok(())) {
        Ok(()) => JsValue::UNDEFINED,
        Err(e) => e.to_js(),
    }
}

/// Whether the stored outbox batch number `key` can be read, and has events.
#[wasm_bindgen(js_name = outboxIntact)]
pub fn outbox_intact(key: f64, value: JsValue) -> bool {
    let bytes = value
        .dyn_ref::<js_sys::ArrayBuffer>()
        .map_or_else(Vec::new, |b| js_sys::Uint8Array::new(b).to_vec());
    logfold_core::sync::OutboxBatch::decode(key as u64, &bytes).is_ok_and(|b| !b.events.is_empty())
}

/// Whether a stored rejection can be read.
#[wasm_bindgen(js_name = rejectionIntact)]
pub fn rejection_intact(value: JsValue) -> bool {
    let json = value.as_string().unwrap_or_default();
    logfold_core::sync::Rejection::ids_from_json(&json).is_ok()
}

/// `meta.outboxCheck` for an outbox of these batch numbers.
#[wasm_bindgen(js_name = outboxCheck, unchecked_return_type = "[number, number]")]
pub fn outbox_check(numbers: Vec<f64>) -> JsValue {
    log::outbox_check(numbers.iter().map(|n| *n as u64))
}

/// The segments that write the events of pull answers `pages` (in order) back into a log,
/// below what it keeps: `{ first, segments: [[key, bytes], …] }`, or `undefined` unless the
/// events are dense positions. A page that is not a pull answer is `SYNC_PROTOCOL`.
#[wasm_bindgen(js_name = backfillSegments, unchecked_return_type = "{ first: number, segments: Array<[number, ArrayBuffer]> } | undefined")]
pub fn backfill_segments(pages: Vec<JsValue>) -> Result<JsValue, JsValue> {
    let mut events = Vec::new();
    for page in &pages {
        events.extend(pulled_events(page, 0)?.0);
    }
    let Some(segments) = log::backfill_segments(&events) else {
        return Ok(JsValue::UNDEFINED);
    };
    let list: js_sys::Array = segments
        .iter()
        .map(|(k, bytes)| {
            js_sys::Array::of2(
                &(*k as f64).into(),
                &js_sys::Uint8Array::from(&bytes[..]).buffer(),
            )
        })
        .collect();
    let out = object(&[("first", events[0].seq as f64)]);
    js_sys::Reflect::set(&out, &"segments".into(), &list)?;
    Ok(out)
}

/// Segments as JS read them (`getAllKeys`, `getAll`): their keys and bytes.
fn segments(keys: &[f64], values: &[JsValue]) -> (Vec<u64>, Vec<Vec<u8>>) {
    let keys = keys.iter().map(|k| *k as u64).collect();
    let values = values
        .iter()
        .map(|v| js_sys::Uint8Array::new(v).to_vec())
        .collect();
    (keys, values)
}

fn object(fields: &[(&str, f64)]) -> JsValue {
    let o = js_sys::Object::new();
    for (k, v) in fields {
        let _ = js_sys::Reflect::set(&o, &(*k).into(), &(*v).into());
    }
    o.into()
}
