//! The projections: folding committed events, catching up with other tabs, snapshots, and
//! the tables as of a position.

use super::*;

impl Log {
    pub(super) fn has_projections(&self) -> bool {
        !self.0.tables.borrow().is_empty() || !self.0.projections.reducers.is_empty()
    }

    /// Folds a commit's events into the projections before its appends resolve: from memory
    /// when the projections were at the position it started from, else (another tab appended
    /// in between) by catching up from IndexedDB.
    pub(super) async fn fold_committed(
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
    pub(super) fn events_text(&self) -> Option<String> {
        (!self.0.projections.reducers.is_empty()).then(|| String::from("["))
    }

    /// Tells JS what the last fold step did: the events (for reducers) and the changed rows.
    /// No borrow of the tables is held, so JS may read them.
    pub(super) fn emit(&self, events: Option<String>) {
        self.emit_as(events, false);
    }

    pub(super) fn emit_as(&self, events: Option<String>, overlay: bool) {
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

    /// The tables' snapshots to store, and the position they (and the reducers' bases) are
    /// of. A synced log snapshots its base only: none while the tables show outbox events,
    /// which may yet be rejected.
    pub fn table_snapshots(&self) -> (u64, Vec<(String, Vec<u8>)>) {
        let t = self.0.tables.borrow();
        let tables = if t.in_overlay() {
            Vec::new()
        } else {
            t.snapshots()
        };
        (t.base_seq(), tables)
    }

    /// Counts `n` snapshots written (by JS).
    pub fn snapshots_written(&self, n: u64) {
        let mut s = self.0.stats.get();
        s.snapshots_written += n;
        self.0.stats.set(s);
    }

    /// The tables' snapshot keys, then `reducers`; with `base`, the keys of their base
    /// snapshots.
    pub fn snapshot_keys(&self, reducers: Vec<String>, base: bool) -> Vec<String> {
        let mut keys = self.0.projections.table_keys();
        keys.extend(reducers);
        if base {
            keys = keys.iter().map(|k| base_key(k)).collect();
        }
        keys
    }

    /// Tables to fold up to a past position `seq`, each from its stored snapshot (`stored`, in
    /// the order of [`Log::snapshot_keys`]) when that is not past `seq`, else from its base
    /// snapshot (`bases`), else empty; set at the lowest position of them and `reducers_from`.
    pub fn past_tables(
        &self,
        seq: u64,
        reducers_from: u64,
        stored: &[JsValue],
        bases: &[JsValue],
    ) -> Tables {
        let tables = &self.0.projections.tables;
        let mut start = reducers_from;
        let mut entries = Vec::with_capacity(tables.len());
        for (((name, def), value), base) in tables.iter().zip(stored).zip(bases) {
            let usable = |v: &JsValue| decode_snapshot(v, def).ok().filter(|t| t.seq() <= seq);
            let table = usable(value)
                .or_else(|| usable(base))
                .unwrap_or_else(|| Table::new(Arc::clone(def)));
            start = start.min(table.seq());
            entries.push((name.clone(), table));
        }
        let mut past = Tables::new(entries, start);
        past.set_schemas(self.0.projections.schemas());
        past
    }
}

/// Folds segments read after the position of past tables into them, up to `upto`; returns
/// the events folded as JSON text for the JS reducers when `text`.
pub fn fold_past(
    tables: &mut Tables,
    keys: &[u64],
    values: &[Vec<u8>],
    upto: u64,
    text: bool,
) -> Result<Option<String>, Error> {
    let mut text = text.then(|| String::from("["));
    for (k, bytes) in keys.iter().zip(values) {
        let from = tables.seq() + 1;
        let mut scratch = Vec::new();
        let seg = parse_holding(bytes, &mut scratch, from, *k)?;
        fold_segment(tables, &seg, upto, text.as_mut()).map_err(|e| Error::corrupt(from, *k, e))?;
        if tables.seq() >= upto {
            break;
        }
    }
    Ok(text.filter(|t| t.len() > 1).map(|mut t| {
        t.push(']');
        t
    }))
}

/// Where a projection's base snapshot is kept: its state at the first position kept after
/// history was dropped (by a cut or a start from the server's set), so time travel works from
/// there even once the projection's own snapshot has moved on.
pub fn base_key(key: &str) -> String {
    format!("base:{key}")
}

/// A table from a stored snapshot value, or why it cannot be used.
pub(super) fn decode_snapshot(value: &JsValue, def: &Arc<TableDef>) -> Result<Table, String> {
    let bytes = value
        .dyn_ref::<js_sys::ArrayBuffer>()
        .ok_or("not a snapshot")?;
    snapshot::decode(&Uint8Array::new(bytes).to_vec(), Arc::clone(def)).map_err(|e| e.to_string())
}

pub(super) fn ahead(seq: u64, head: u64) -> String {
    format!("it is of position {seq}, past the log's head {head} (the log was repaired or reset)")
}

/// Folds the events of `seg` after the tables' position and up to `upto`, writing them as
/// JSON to `text` for the JS reducers. Returns how many it folded.
pub(super) fn fold_segment(
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
