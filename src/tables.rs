//! The declarative tables of an open log (or of a past position), and the queries JS makes of
//! them. Rows answer as JSON text, which JS parses in one call.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use logfold_core::json::{read::parse, Json, Reader};
use logfold_core::table::{snapshot, FoldError, Key, Table, TableDef, Value};
use logfold_core::EventRef;
use wasm_bindgen::prelude::*;

use crate::error::Error;

/// One named table and what readers need beside it.
struct Entry {
    name: String,
    table: Table,
    /// Whether JS subscribes to its changes; only then are changed keys collected.
    watched: bool,
    changed: Vec<Key>,
    /// Keys in order, rebuilt when the table's shape (its key set) changes.
    order: Option<(u64, Vec<Key>)>,
}

/// Declarative tables folded together, in log order.
pub struct Tables {
    entries: Vec<Entry>,
    /// The position every table (and the JS reducers) has folded through.
    seq: u64,
    /// While the sync outbox is folded on top: the base's position.
    base_seq: Option<u64>,
    /// The app's event schemas, when it has any (see [`Schemas`]).
    schemas: Option<Rc<Schemas>>,
}

/// The schema number this app writes per event type (1 when not named), and the JS function
/// that brings an event of another schema to it: `(type, schema, dataJson)` → the data as
/// JSON, `null` to skip the event, or a throw to record it as a fold error (see the JS
/// `upcast` and `unknownEvents` options). An event's schema is `meta.$schema` (1 without).
pub struct Schemas {
    /// The schema this app writes, by event type.
    pub current: HashMap<String, u64>,
    /// The JS function that reads an event of another schema.
    pub upcast: js_sys::Function,
}

/// What to fold of an event (see [`Schemas::read`]).
enum Read {
    AsIs,
    Data(String),
    Skip(Option<String>),
}

impl Schemas {
    fn read(&self, e: &EventRef<'_>) -> Read {
        let schema = schema_of(e.meta);
        let current = self.current.get(e.event_type).copied().unwrap_or(1);
        if schema == current {
            return Read::AsIs;
        }
        let args = [
            JsValue::from_str(e.event_type),
            JsValue::from_f64(schema as f64),
            JsValue::from_str(e.data),
        ];
        match self.upcast.apply(&JsValue::NULL, &args.iter().collect()) {
            Ok(v) => v.as_string().map_or(Read::Skip(None), Read::Data),
            Err(err) => Read::Skip(Some(
                js_sys::Reflect::get(&err, &"message".into())
                    .ok()
                    .and_then(|m| m.as_string())
                    .unwrap_or_else(|| "the event could not be read".to_owned()),
            )),
        }
    }
}

/// An event's schema: `$schema` of its meta object, 1 without one.
fn schema_of(meta: Option<&str>) -> u64 {
    let Some(meta) = meta.filter(|m| m.contains("\"$schema\"")) else {
        return 1;
    };
    let mut schema = 1;
    let mut r = Reader::new(meta);
    let _ = r.object(|r, key| {
        if key == "$schema" {
            schema = r.u64()?;
        } else {
            r.skip()?;
        }
        Ok(())
    });
    schema
}

/// What a scan asks for (see `TablesView::scan`).
pub struct Query {
    /// The first key (inclusive).
    pub from: Option<Key>,
    /// The key to stop before (exclusive).
    pub to: Option<Key>,
    /// Only string keys that start with this.
    pub prefix: Option<String>,
    /// At most this many rows.
    pub limit: usize,
    /// Highest key first.
    pub reverse: bool,
    /// Fields that must equal these values.
    pub filter: Vec<(String, Json)>,
}

impl Tables {
    /// Tables that start from the given states; `seq` is where the fold goes on from.
    pub fn new(tables: Vec<(String, Table)>, seq: u64) -> Self {
        Tables {
            entries: tables
                .into_iter()
                .map(|(name, table)| Entry {
                    name,
                    table,
                    watched: false,
                    changed: Vec::new(),
                    order: None,
                })
                .collect(),
            seq,
            base_seq: None,
            schemas: None,
        }
    }

    /// Reads events through the app's schemas from now on.
    pub fn set_schemas(&mut self, schemas: Option<Rc<Schemas>>) {
        self.schemas = schemas;
    }

    /// Folds from now on into an overlay that [`Tables::rollback`] takes back (the outbox).
    pub fn begin_overlay(&mut self) {
        if self.base_seq.is_none() {
            self.base_seq = Some(self.seq);
            for entry in &mut self.entries {
                entry.table.begin_overlay();
            }
        }
    }

    /// Whether an overlay is on.
    pub fn in_overlay(&self) -> bool {
        self.base_seq.is_some()
    }

    /// Makes the overlay the base: every event it folded is confirmed.
    pub fn commit_overlay(&mut self) {
        if self.base_seq.take().is_some() {
            for entry in &mut self.entries {
                entry.table.commit_overlay();
            }
        }
    }

    /// The base's position: below the overlay, if there is one.
    pub fn base_seq(&self) -> u64 {
        self.base_seq.unwrap_or(self.seq)
    }

    /// Returns every table to its base, recording the restored rows as changes. Returns
    /// whether there was an overlay.
    pub fn rollback(&mut self) -> bool {
        let Some(seq) = self.base_seq.take() else {
            return false;
        };
        for entry in &mut self.entries {
            let changes = entry.watched.then_some(&mut entry.changed);
            entry.table.rollback(changes);
        }
        self.seq = seq;
        true
    }

    /// The position the tables are at.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Moves the position on without folding (when there is nothing to fold).
    pub fn set_seq(&mut self, seq: u64) {
        self.seq = seq;
    }

    /// Whether there are no tables.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Folds the next event, brought to the app's schema first. Each table skips events it
    /// already holds (from its snapshot).
    pub fn fold(&mut self, e: &EventRef<'_>) {
        let read = match &self.schemas {
            Some(s) if !self.entries.is_empty() => s.read(e),
            _ => Read::AsIs,
        };
        let upcast;
        let e = match &read {
            Read::AsIs => e,
            Read::Data(data) => {
                upcast = EventRef { data, ..*e };
                &upcast
            }
            Read::Skip(error) => {
                for entry in &mut self.entries {
                    if e.seq > entry.table.seq() {
                        entry.table.pass(e, error.as_deref());
                    }
                }
                self.seq = e.seq;
                return;
            }
        };
        for entry in &mut self.entries {
            if e.seq > entry.table.seq() {
                let changes = entry.watched.then_some(&mut entry.changed);
                entry.table.apply(e, changes);
            }
        }
        self.seq = e.seq;
    }

    /// The changed rows since the last call, as JSON `{"table": [[key, row | null], …]}`, or
    /// `None` when no watched table changed.
    pub fn take_changes(&mut self) -> Option<String> {
        let mut out = String::from("{");
        for entry in &mut self.entries {
            if entry.changed.is_empty() {
                continue;
            }
            let mut keys = std::mem::take(&mut entry.changed);
            keys.sort_unstable();
            keys.dedup();
            if out.len() > 1 {
                out.push(',');
            }
            logfold_core::json::push_str(&mut out, &entry.name);
            out.push_str(":[");
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push('[');
                k.write_json(&mut out);
                out.push(',');
                match entry.table.get(k) {
                    Some(row) => entry.table.write_row(row, &mut out),
                    None => out.push_str("null"),
                }
                out.push(']');
            }
            out.push(']');
        }
        out.push('}');
        (out.len() > 2).then_some(out)
    }

    /// Each table's snapshot key and encoded state.
    pub fn snapshots(&self) -> Vec<(String, Vec<u8>)> {
        self.entries
            .iter()
            .map(|e| {
                (
                    table_snapshot_key(&e.name, e.table.def()),
                    snapshot::encode(&e.table),
                )
            })
            .collect()
    }

    fn entry(&mut self, name: &str) -> Result<&mut Entry, Error> {
        self.entries
            .iter_mut()
            .find(|e| e.name == name)
            .ok_or_else(|| Error::argument("table", format!("there is no table {name:?}")))
    }

    /// Whether to collect the table's changed keys (for subscribers).
    pub fn watch(&mut self, name: &str, on: bool) -> Result<(), Error> {
        let entry = self.entry(name)?;
        entry.watched = on;
        if !on {
            entry.changed.clear();
        }
        Ok(())
    }

    /// The row with `key` as JSON.
    pub fn get(&mut self, name: &str, key: &Key) -> Result<Option<String>, Error> {
        let entry = self.entry(name)?;
        Ok(entry.table.get(key).map(|row| {
            let mut out = String::new();
            entry.table.write_row(row, &mut out);
            out
        }))
    }

    /// The number of rows.
    pub fn count(&mut self, name: &str) -> Result<usize, Error> {
        Ok(self.entry(name)?.table.len())
    }

    /// Rows in key order (numbers first, then strings) as JSON `[[key, row], …]`.
    pub fn scan(&mut self, name: &str, q: &Query) -> Result<String, Error> {
        let entry = self.entry(name)?;
        let filter = q
            .filter
            .iter()
            .map(|(field, want)| {
                let i = entry.table.def().fields.iter().position(|f| f == field);
                i.map(|i| (i, want)).ok_or_else(|| {
                    Error::argument("where", format!("the table has no field {field:?}"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let shape = entry.table.shape();
        if entry.order.as_ref().map(|(s, _)| *s) != Some(shape) {
            let keys = entry.table.keys();
            entry.order = Some((shape, keys));
        }
        let keys = &entry.order.as_ref().expect("just built").1;
        let mut lo = q
            .from
            .as_ref()
            .map_or(0, |f| keys.partition_point(|k| k < f));
        let hi =
            q.to.as_ref()
                .map_or(keys.len(), |t| keys.partition_point(|k| k < t));
        if let Some(p) = &q.prefix {
            let start = Key::Str(p.clone());
            lo = lo.max(keys.partition_point(|k| k < &start));
        }
        let in_range = keys.get(lo..hi.max(lo)).unwrap_or_default();
        let mut out = String::from("[");
        let mut n = 0;
        let mut visit = |k: &Key| -> bool {
            if let Some(p) = &q.prefix {
                if !matches!(k, Key::Str(s) if s.starts_with(p.as_str())) {
                    // Keys with the prefix are contiguous; going forward, none follow.
                    return q.reverse;
                }
            }
            let Some(row) = entry.table.get(k) else {
                return true;
            };
            let matches = filter.iter().all(|(i, want)| {
                row.get(*i)
                    .and_then(Option::as_ref)
                    .is_some_and(|v| same(v, want))
            });
            if matches {
                if n > 0 {
                    out.push(',');
                }
                out.push('[');
                k.write_json(&mut out);
                out.push(',');
                entry.table.write_row(row, &mut out);
                out.push(']');
                n += 1;
            }
            n < q.limit
        };
        if q.reverse {
            for k in in_range.iter().rev() {
                if !visit(k) {
                    break;
                }
            }
        } else {
            for k in in_range {
                if !visit(k) {
                    break;
                }
            }
        }
        out.push(']');
        Ok(out)
    }

    /// The table's fold errors as JSON `{"count", "errors": [{seq, type, message}]}`.
    pub fn errors(&mut self, name: &str) -> Result<String, Error> {
        let entry = self.entry(name)?;
        let (errors, count) = entry.table.errors();
        let mut out = String::from("{\"count\":");
        logfold_core::json::push_u64(&mut out, count);
        out.push_str(",\"errors\":[");
        for (
            i,
            FoldError {
                seq,
                event_type,
                message,
            },
        ) in errors.iter().enumerate()
        {
            if i > 0 {
                out.push(',');
            }
            out.push_str("{\"seq\":");
            logfold_core::json::push_u64(&mut out, *seq);
            out.push_str(",\"type\":");
            logfold_core::json::push_str(&mut out, event_type);
            out.push_str(",\"message\":");
            logfold_core::json::push_str(&mut out, message);
            out.push('}');
        }
        out.push_str("]}");
        Ok(out)
    }
}

/// Where a declarative table's snapshot is stored: another definition has another key, so two
/// app versions open at once never overwrite each other's.
pub fn table_snapshot_key(name: &str, def: &TableDef) -> String {
    format!("table:{name}:{}", def.hash)
}

/// Where a JS reducer's snapshot is stored (by its app-given version).
pub fn reducer_snapshot_key(name: &str, version: u32) -> String {
    format!("reducer:{name}:{version}")
}

/// Whether a row value equals a JSON value from a filter.
fn same(v: &Value, want: &Json) -> bool {
    match (v, want) {
        (Value::Null, Json::Null) => true,
        (Value::Bool(a), Json::Bool(b)) => a == b,
        (Value::Num(a), Json::Num(b)) => a == b,
        (Value::Str(a), Json::Str(b)) => a == b,
        (Value::List(items), Json::Arr(wants)) => {
            items.len() == wants.len() && items.iter().zip(wants).all(|(a, b)| same(a, b))
        }
        (Value::Raw(raw), _) => parse(raw).is_ok_and(|j| &j == want),
        _ => false,
    }
}

/// A key from JS: a string or a finite number.
pub fn key_from_js(v: &JsValue, argument: &str) -> Result<Key, Error> {
    if let Some(s) = v.as_string() {
        return Ok(Key::Str(s));
    }
    match v.as_f64() {
        Some(n) if n.is_finite() => Ok(Key::Num(if n == 0.0 { 0.0 } else { n })),
        _ => Err(Error::argument(
            argument,
            "a key is a string or a finite number",
        )),
    }
}

/// Read access to a set of tables, shared with the log that folds them (or a past view).
#[wasm_bindgen]
pub struct TablesView(pub(crate) Rc<RefCell<Tables>>);

#[wasm_bindgen]
impl TablesView {
    /// The position the tables are at.
    #[wasm_bindgen(getter)]
    pub fn seq(&self) -> f64 {
        self.0.borrow().seq as f64
    }

    /// The row with `key` as JSON text, or `undefined`.
    pub fn get(&self, table: &str, key: JsValue) -> Result<Option<String>, JsValue> {
        let key = key_from_js(&key, "key")?;
        Ok(self.0.borrow_mut().get(table, &key)?)
    }

    /// The number of rows.
    pub fn count(&self, table: &str) -> Result<u32, JsValue> {
        Ok(self.0.borrow_mut().count(table)? as u32)
    }

    /// Rows in key order as JSON text of `[[key, row], …]`: keys in `[from, to)` starting with
    /// `prefix`, whose fields equal those of `filter` (JSON text of an object), up to `limit`.
    #[allow(clippy::too_many_arguments)]
    pub fn scan(
        &self,
        table: &str,
        from: JsValue,
        to: JsValue,
        prefix: Option<String>,
        limit: f64,
        reverse: bool,
        filter: Option<String>,
    ) -> Result<String, JsValue> {
        let bound = |v: &JsValue, name: &str| {
            if v.is_undefined() {
                Ok(None)
            } else {
                key_from_js(v, name).map(Some)
            }
        };
        let filter = match filter {
            None => Vec::new(),
            Some(text) => match parse(&text) {
                Ok(Json::Obj(o)) => o,
                _ => {
                    return Err(
                        Error::argument("where", "must be an object of field → value").into(),
                    )
                }
            },
        };
        let q = Query {
            from: bound(&from, "from")?,
            to: bound(&to, "to")?,
            prefix,
            limit: if limit >= 0.0 {
                limit as usize
            } else {
                usize::MAX
            },
            reverse,
            filter,
        };
        Ok(self.0.borrow_mut().scan(table, &q)?)
    }

    /// The table's fold errors as JSON text of `{count, errors}`.
    pub fn errors(&self, table: &str) -> Result<String, JsValue> {
        Ok(self.0.borrow_mut().errors(table)?)
    }

    /// Whether to collect the table's changed keys for subscribers.
    pub fn watch(&self, table: &str, on: bool) -> Result<(), JsValue> {
        Ok(self.0.borrow_mut().watch(table, on)?)
    }
}

/// Parses the tables of `Logfold.open({ projections })`, given as JSON text of
/// `{name: definition}`; a fault is `INVALID_PROJECTION` with its path.
pub fn parse_definitions(json: &str) -> Result<Vec<(String, std::sync::Arc<TableDef>)>, Error> {
    let not_object = |e| Error::argument("projections", format!("not a JSON object: {e}"));
    let mut defs = Vec::new();
    let mut r = Reader::new(json);
    r.object(|r, name| {
        defs.push((name.into_owned(), r.value()?));
        Ok(())
    })
    .and_then(|_| r.end())
    .map_err(not_object)?;
    defs.into_iter()
        .map(|(name, def)| {
            TableDef::parse(&def)
                .map(|d| (name.clone(), std::sync::Arc::new(d)))
                .map_err(|e| Error::InvalidProjection {
                    path: if e.path.is_empty() {
                        format!("projections.{name}")
                    } else {
                        format!("projections.{name}.{}", e.path)
                    },
                    projection: name,
                    message: e.message,
                })
        })
        .collect()
}
