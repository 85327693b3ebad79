//! A table's state and the fold step: one event in, its rows changed.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::def::{Op, Source, TableDef};
use super::scan;
use super::value::{Key, Value};
use crate::event::EventRef;

/// How many fold errors a table keeps (it counts them all).
const KEEP_ERRORS: usize = 100;

/// An event a table could not apply fully: its row was left as it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoldError {
    /// The event's position.
    pub seq: u64,
    /// The event's type.
    pub event_type: String,
    /// What went wrong, e.g. `data.amount is missing`.
    pub message: String,
}

/// A row: values by field index (see [`TableDef::fields`]); `None` for a field never set.
pub type Row = Vec<Option<Value>>;

/// The state of a declarative table: its rows by key, as of position `seq`.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    def: Arc<TableDef>,
    rows: BTreeMap<Key, Row>,
    seq: u64,
    errors: Vec<FoldError>,
    error_count: u64,
}

impl Table {
    /// An empty table.
    pub fn new(def: Arc<TableDef>) -> Self {
        Table {
            def,
            rows: BTreeMap::new(),
            seq: 0,
            errors: Vec::new(),
            error_count: 0,
        }
    }

    /// A table restored from a snapshot.
    pub(crate) fn from_parts(
        def: Arc<TableDef>,
        rows: BTreeMap<Key, Row>,
        seq: u64,
        error_count: u64,
    ) -> Self {
        Table {
            def,
            rows,
            seq,
            errors: Vec::new(),
            error_count,
        }
    }

    /// The definition.
    pub fn def(&self) -> &TableDef {
        &self.def
    }

    /// The position of the last event folded in.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The rows in key order.
    pub fn rows(&self) -> &BTreeMap<Key, Row> {
        &self.rows
    }

    /// A row by key.
    pub fn get(&self, key: &Key) -> Option<&Row> {
        self.rows.get(key)
    }

    /// The latest fold errors (up to 100) and how many there were in all.
    pub fn errors(&self) -> (&[FoldError], u64) {
        (&self.errors, self.error_count)
    }

    /// Folds one event in. `changed` is told each key whose row changed or went.
    pub fn apply(&mut self, e: &EventRef<'_>, changed: &mut impl FnMut(&Key)) {
        self.seq = e.seq;
        let def = Arc::clone(&self.def);
        let Some(ops) = def.on.get(e.event_type) else {
            return;
        };
        for op in ops {
            if let Err(message) = self.apply_op(op, e, changed) {
                self.error_count += 1;
                if self.errors.len() == KEEP_ERRORS {
                    self.errors.remove(0);
                }
                self.errors.push(FoldError {
                    seq: e.seq,
                    event_type: e.event_type.to_owned(),
                    message,
                });
            }
        }
    }

    /// Checks every change against the row before making any, so a failed operation leaves
    /// the row exactly as it was.
    fn apply_op(
        &mut self,
        op: &Op,
        e: &EventRef<'_>,
        changed: &mut impl FnMut(&Key),
    ) -> Result<(), String> {
        let key_source = op.row.as_ref().unwrap_or(&self.def.key);
        let key_value = eval(key_source, e)?;
        let key = Key::from_value(key_value).ok_or_else(|| {
            format!(
                "the row key from {} is not a string or number",
                name(key_source)
            )
        })?;
        if op.delete {
            if self.rows.remove(&key).is_some() {
                changed(&key);
            }
            return Ok(());
        }
        let current = self.rows.get(&key);
        let field = |i: usize| current.and_then(|r| r[i].as_ref());
        let fields = &self.def.fields;

        let sets = op
            .set
            .iter()
            .map(|(i, s)| Ok((*i, eval(s, e)?)))
            .collect::<Result<Vec<_>, String>>()?;
        let mut adds = Vec::with_capacity(op.add.len() + op.count.len());
        for (i, s, sign) in &op.add {
            let Value::Num(n) = eval(s, e)? else {
                return Err(format!("{} is not a number", name(s)));
            };
            adds.push((*i, sign * n));
        }
        adds.extend(op.count.iter().map(|i| (*i, 1.0)));
        for (i, _) in &adds {
            if !matches!(field(*i), None | Some(Value::Num(_)))
                && !op.set.iter().any(|(j, _)| j == i)
            {
                return Err(format!("field {} is not a number", fields[*i]));
            }
        }
        let appends = op
            .append
            .iter()
            .map(|(i, s)| Ok((*i, eval(s, e)?)))
            .collect::<Result<Vec<_>, String>>()?;
        for (i, _) in &appends {
            if !matches!(field(*i), None | Some(Value::List(_)))
                && !op.set.iter().any(|(j, _)| j == i)
            {
                return Err(format!("field {} is not a list", fields[*i]));
            }
        }

        let n = fields.len();
        let row = self
            .rows
            .entry(key.clone())
            .or_insert_with(|| vec![None; n]);
        row.resize(n, None);
        for (i, v) in sets {
            row[i] = Some(v);
        }
        for (i, d) in adds {
            match &mut row[i] {
                Some(Value::Num(x)) => *x += d,
                slot @ None => *slot = Some(Value::Num(d)),
                _ => return Err(format!("field {} is not a number", fields[i])),
            }
        }
        for (i, v) in appends {
            match &mut row[i] {
                Some(Value::List(items)) => items.push(v),
                slot @ None => *slot = Some(Value::List(vec![v])),
                _ => return Err(format!("field {} is not a list", fields[i])),
            }
        }
        changed(&key);
        Ok(())
    }

    /// Writes a row as a JSON object of its set fields.
    pub fn write_row(&self, row: &Row, out: &mut String) {
        out.push('{');
        let mut first = true;
        for (name, v) in self.def.fields.iter().zip(row) {
            let Some(v) = v else { continue };
            if !first {
                out.push(',');
            }
            first = false;
            crate::json::push_str(out, name);
            out.push(':');
            v.write_json(out);
        }
        out.push('}');
    }
}

fn eval(s: &Source, e: &EventRef<'_>) -> Result<Value, String> {
    Ok(match s {
        Source::Const(v) => v.clone(),
        Source::Stream => Value::Str(e.stream.to_owned()),
        Source::Type => Value::Str(e.event_type.to_owned()),
        Source::Id => Value::Str(e.id.to_string()),
        Source::Seq => Value::Num(e.seq as f64),
        Source::Version => Value::Num(e.version as f64),
        Source::Time => Value::Num(e.time as f64),
        Source::Origin => Value::Str(e.origin.to_owned()),
        Source::Data(path) => {
            from_json(e.data, path).ok_or_else(|| format!("{} is missing", name(s)))?
        }
        Source::Meta(path) => from_json(e.meta.unwrap_or("null"), path)
            .ok_or_else(|| format!("{} is missing", name(s)))?,
    })
}

fn from_json(json: &str, path: &[String]) -> Option<Value> {
    Value::from_json(if path.is_empty() {
        json
    } else {
        scan::field(json, path)?
    })
}

fn name(s: &Source) -> String {
    match s {
        Source::Const(_) => "a constant".into(),
        Source::Stream => "stream".into(),
        Source::Type => "type".into(),
        Source::Id => "id".into(),
        Source::Seq => "seq".into(),
        Source::Version => "version".into(),
        Source::Time => "time".into(),
        Source::Origin => "origin".into(),
        Source::Data(p) if p.is_empty() => "data".into(),
        Source::Data(p) => format!("data.{}", p.join(".")),
        Source::Meta(p) if p.is_empty() => "meta".into(),
        Source::Meta(p) => format!("meta.{}", p.join(".")),
    }
}
