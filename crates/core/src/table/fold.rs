//! A table's state and the fold step: one event in, its rows changed.
//!
//! Replay folds millions of events, so the step avoids allocating: rows live in hash maps
//! looked up by borrowed keys, numbers are read straight from the JSON text, and the
//! per-operation lists are reused. Key order is produced only when a reader asks for it.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use super::def::{Op, Source, TableDef};
use super::scan;
use super::value::{Key, Value};
use super::FxBuild;
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
#[derive(Debug, Clone)]
pub struct Table {
    def: Arc<TableDef>,
    state: State,
}

/// Everything of a table but its definition, so the fold can borrow both at once.
#[derive(Debug, Clone, Default)]
struct State {
    by_str: HashMap<String, Row, FxBuild>,
    /// Keyed by the f64's bits (with -0 folded into 0).
    by_num: HashMap<u64, Row, FxBuild>,
    seq: u64,
    /// Bumped whenever a row is inserted or removed, so ordered key caches know when to rebuild.
    shape: u64,
    errors: Vec<FoldError>,
    error_count: u64,
    scratch: Scratch,
}

/// Lists reused by every operation so the fold does not allocate per event.
#[derive(Debug, Clone, Default)]
struct Scratch {
    sets: Vec<(usize, Value)>,
    adds: Vec<(usize, f64)>,
    appends: Vec<(usize, Value)>,
}

/// A row key borrowed from the event where it can be.
enum KeyRef<'a> {
    Num(f64),
    Str(Cow<'a, str>),
}

fn num_bits(n: f64) -> u64 {
    if n == 0.0 {
        0
    } else {
        n.to_bits()
    }
}

impl Table {
    /// An empty table.
    pub fn new(def: Arc<TableDef>) -> Self {
        Table {
            def,
            state: State::default(),
        }
    }

    /// A table restored from a snapshot.
    pub(crate) fn from_parts(
        def: Arc<TableDef>,
        rows: Vec<(Key, Row)>,
        seq: u64,
        error_count: u64,
    ) -> Self {
        let mut t = Table::new(def);
        for (k, row) in rows {
            match k {
                Key::Num(n) => t.state.by_num.insert(num_bits(n), row),
                Key::Str(s) => t.state.by_str.insert(s, row),
            };
        }
        t.state.seq = seq;
        t.state.error_count = error_count;
        t
    }

    /// The definition.
    pub fn def(&self) -> &TableDef {
        &self.def
    }

    /// The position of the last event folded in.
    pub fn seq(&self) -> u64 {
        self.state.seq
    }

    /// A counter that changes whenever a row is inserted or removed (not when one is updated).
    pub fn shape(&self) -> u64 {
        self.state.shape
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.state.by_str.len() + self.state.by_num.len()
    }

    /// Whether the table has no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A row by key.
    pub fn get(&self, key: &Key) -> Option<&Row> {
        match key {
            Key::Num(n) => self.state.by_num.get(&num_bits(*n)),
            Key::Str(s) => self.state.by_str.get(s.as_str()),
        }
    }

    /// The rows in key order: numbers first, then strings.
    pub fn sorted(&self) -> Vec<(Key, &Row)> {
        let mut nums: Vec<(f64, &Row)> = self
            .state
            .by_num
            .iter()
            .map(|(b, r)| (f64::from_bits(*b), r))
            .collect();
        nums.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut strs: Vec<(&String, &Row)> = self.state.by_str.iter().collect();
        strs.sort_by(|a, b| a.0.cmp(b.0));
        nums.into_iter()
            .map(|(n, r)| (Key::Num(n), r))
            .chain(strs.into_iter().map(|(s, r)| (Key::Str(s.clone()), r)))
            .collect()
    }

    /// The latest fold errors (up to 100) and how many there were in all.
    pub fn errors(&self) -> (&[FoldError], u64) {
        (&self.state.errors, self.state.error_count)
    }

    /// Folds one event in. With `changes`, each key whose row changed or went is pushed to it.
    pub fn apply(&mut self, e: &EventRef<'_>, mut changes: Option<&mut Vec<Key>>) {
        let Table { def, state } = self;
        state.seq = e.seq;
        let Some(ops) = def.on.get(e.event_type) else {
            return;
        };
        for op in ops {
            if let Err(message) = state.apply_op(def, op, e, changes.as_deref_mut()) {
                state.error_count += 1;
                if state.errors.len() == KEEP_ERRORS {
                    state.errors.remove(0);
                }
                state.errors.push(FoldError {
                    seq: e.seq,
                    event_type: e.event_type.to_owned(),
                    message,
                });
            }
        }
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

impl State {
    /// Checks every change against the row before making any, so a failed operation leaves
    /// the row exactly as it was.
    fn apply_op(
        &mut self,
        def: &TableDef,
        op: &Op,
        e: &EventRef<'_>,
        changes: Option<&mut Vec<Key>>,
    ) -> Result<(), String> {
        let key_source = op.row.as_ref().unwrap_or(&def.key);
        let key = eval_key(key_source, e)?;
        if op.delete {
            let gone = match &key {
                KeyRef::Num(n) => self.by_num.remove(&num_bits(*n)).is_some(),
                KeyRef::Str(s) => self.by_str.remove(s.as_ref()).is_some(),
            };
            if gone {
                self.shape += 1;
                if let Some(changes) = changes {
                    changes.push(owned(key));
                }
            }
            return Ok(());
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        let result = self.change(def, op, e, &key, &mut scratch);
        scratch.sets.clear();
        scratch.adds.clear();
        scratch.appends.clear();
        self.scratch = scratch;
        if let (Ok(()), Some(changes)) = (&result, changes) {
            changes.push(owned(key));
        }
        result
    }

    fn change(
        &mut self,
        def: &TableDef,
        op: &Op,
        e: &EventRef<'_>,
        key: &KeyRef<'_>,
        s: &mut Scratch,
    ) -> Result<(), String> {
        for (i, src) in &op.set {
            s.sets.push((*i, eval(src, e)?));
        }
        for (i, src, sign) in &op.add {
            s.adds.push((*i, sign * eval_num(src, e)?));
        }
        s.adds.extend(op.count.iter().map(|i| (*i, 1.0)));
        for (i, src) in &op.append {
            s.appends.push((*i, eval(src, e)?));
        }

        let n = def.fields.len();
        let existing = match key {
            KeyRef::Num(x) => self.by_num.get_mut(&num_bits(*x)),
            KeyRef::Str(k) => self.by_str.get_mut(k.as_ref()),
        };
        check(def, op, s, existing.as_deref())?;
        let row = match existing {
            Some(row) => row,
            None => {
                self.shape += 1;
                match key {
                    KeyRef::Num(x) => self
                        .by_num
                        .entry(num_bits(*x))
                        .or_insert_with(|| vec![None; n]),
                    KeyRef::Str(k) => self
                        .by_str
                        .entry(k.to_string())
                        .or_insert_with(|| vec![None; n]),
                }
            }
        };
        row.resize(n, None);
        for (i, v) in s.sets.drain(..) {
            row[i] = Some(v);
        }
        for &(i, d) in &s.adds {
            match &mut row[i] {
                Some(Value::Num(x)) => *x += d,
                slot => *slot = Some(Value::Num(d)),
            }
        }
        for (i, v) in s.appends.drain(..) {
            match &mut row[i] {
                Some(Value::List(items)) => items.push(v),
                slot => *slot = Some(Value::List(vec![v])),
            }
        }
        Ok(())
    }
}

/// Whether the operation's adds and appends fit the row's current fields.
fn check(def: &TableDef, op: &Op, s: &Scratch, row: Option<&Row>) -> Result<(), String> {
    let field = |i: usize| row.and_then(|r| r.get(i)).and_then(Option::as_ref);
    let is_set = |i: usize| op.set.iter().any(|(j, _)| *j == i);
    for (i, _) in &s.adds {
        if !matches!(field(*i), None | Some(Value::Num(_))) && !is_set(*i) {
            return Err(format!("field {} is not a number", def.fields[*i]));
        }
    }
    for (i, _) in &s.appends {
        if !matches!(field(*i), None | Some(Value::List(_))) && !is_set(*i) {
            return Err(format!("field {} is not a list", def.fields[*i]));
        }
    }
    Ok(())
}

fn owned(k: KeyRef<'_>) -> Key {
    match k {
        KeyRef::Num(n) => Key::Num(n),
        KeyRef::Str(s) => Key::Str(s.into_owned()),
    }
}

fn raw<'a>(s: &Source, e: &EventRef<'a>) -> Result<Option<&'a str>, String> {
    let (json, path) = match s {
        Source::Data(p) => (e.data, p),
        Source::Meta(p) => (e.meta.unwrap_or("null"), p),
        _ => return Ok(None),
    };
    let found = if path.is_empty() {
        Some(json.trim())
    } else {
        scan::field(json, path)
    };
    found
        .map(Some)
        .ok_or_else(|| format!("{} is missing", name(s)))
}

fn eval_key<'a>(s: &Source, e: &EventRef<'a>) -> Result<KeyRef<'a>, String> {
    let not_a_key = || format!("the row key from {} is not a string or number", name(s));
    if let Source::Stream = s {
        return Ok(KeyRef::Str(Cow::Borrowed(e.stream)));
    }
    if let Some(text) = raw(s, e)? {
        if text.len() >= 2 && text.starts_with('"') && !text.contains('\\') {
            return Ok(KeyRef::Str(Cow::Borrowed(&text[1..text.len() - 1])));
        }
        return match Value::from_json(text) {
            Some(Value::Str(s)) => Ok(KeyRef::Str(Cow::Owned(s))),
            Some(Value::Num(n)) if n.is_finite() => Ok(KeyRef::Num(n)),
            _ => Err(not_a_key()),
        };
    }
    match Key::from_value(eval(s, e)?) {
        Some(Key::Num(n)) => Ok(KeyRef::Num(n)),
        Some(Key::Str(s)) => Ok(KeyRef::Str(Cow::Owned(s))),
        None => Err(not_a_key()),
    }
}

fn eval_num(s: &Source, e: &EventRef<'_>) -> Result<f64, String> {
    let n = match raw(s, e)? {
        Some(text) => parse_num(text),
        None => match eval(s, e)? {
            Value::Num(n) => Some(n),
            _ => None,
        },
    };
    n.ok_or_else(|| format!("{} is not a number", name(s)))
}

/// A JSON number; plain integers (the usual amounts in cents) skip the float parser.
fn parse_num(text: &str) -> Option<f64> {
    let b = text.as_bytes();
    let (neg, digits) = match b.first()? {
        b'-' => (true, &b[1..]),
        _ => (false, b),
    };
    if !digits.is_empty() && digits.len() <= 15 && digits.iter().all(u8::is_ascii_digit) {
        let v = digits.iter().fold(0i64, |v, d| v * 10 + (d - b'0') as i64) as f64;
        return Some(if neg { -v } else { v });
    }
    match b[0] {
        b'-' | b'0'..=b'9' => super::value::parse_f64(text),
        _ => None,
    }
}

fn eval(s: &Source, e: &EventRef<'_>) -> Result<Value, String> {
    if let Some(text) = raw(s, e)? {
        return Value::from_json(text).ok_or_else(|| format!("{} is not valid JSON", name(s)));
    }
    Ok(match s {
        Source::Const(v) => v.clone(),
        Source::Stream => Value::Str(e.stream.to_owned()),
        Source::Type => Value::Str(e.event_type.to_owned()),
        Source::Id => Value::Str(e.id.to_string()),
        Source::Seq => Value::Num(e.seq as f64),
        Source::Version => Value::Num(e.version as f64),
        Source::Time => Value::Num(e.time as f64),
        Source::Origin => Value::Str(e.origin.to_owned()),
        Source::Data(_) | Source::Meta(_) => unreachable!("read by raw()"),
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

#[cfg(test)]
mod tests {
    use super::parse_num;

    #[test]
    fn parses_json_numbers() {
        for (text, want) in [
            ("0", 0.0),
            ("-12", -12.0),
            ("123456789012345", 123_456_789_012_345.0),
            ("1.5", 1.5),
            ("-2e3", -2000.0),
        ] {
            assert_eq!(parse_num(text), Some(want), "{text}");
        }
        assert_eq!(
            parse_num("1234567890123456789"),
            Some(1_234_567_890_123_456_789.0)
        );
        assert_eq!(parse_num("\"1\""), None);
        assert_eq!(parse_num("true"), None);
    }
}
