//! A table's state and the fold step: one event in, its rows changed.
//!
//! Replay folds millions of events, so the step avoids allocating: rows live in hash maps
//! looked up by borrowed keys, each event's JSON is scanned once for the members its handler
//! reads (see [`Plan`]), numbers are read straight from the JSON text, and the per-operation
//! lists are reused. Key order is produced only when a reader asks for it.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use super::def::{Source, TableDef};
use super::plan::{Handler, Input, Plan, Read, Step, Tally, TALLY_ADDS};
use super::scan;
use super::value::{Key, Value};
use super::FxBuild;
use crate::event::EventRef;

/// How many fold errors a table keeps (it counts them all).
const KEEP_ERRORS: usize = 100;

/// Scanned members an event handler can hold without allocating: a few are common, and
/// the slots are cleared per event.
const FEW_SLOTS: usize = 4;
const MANY_SLOTS: usize = 16;

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
    plan: Arc<Plan>,
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
    /// The plan's index of the last event type seen.
    last_type: usize,
    scratch: Scratch,
    /// While an overlay is on: the base's version of every row it touched (see
    /// [`Table::begin_overlay`]).
    undo: Option<Box<Undo>>,
}

/// What [`Table::rollback`] needs to return to the base: each touched row as it was (`None`
/// for a row the overlay created), and the base's position and errors.
#[derive(Debug, Clone, Default)]
struct Undo {
    by_str: HashMap<String, Option<Row>, FxBuild>,
    by_num: HashMap<u64, Option<Row>, FxBuild>,
    seq: u64,
    errors: Vec<FoldError>,
    error_count: u64,
}

/// Values of one operation, checked before any is applied; reused so the fold does not
/// allocate per event. `adds` and `appends` follow the step's lists.
#[derive(Debug, Clone, Default)]
struct Scratch {
    sets: Vec<(usize, Value)>,
    adds: Vec<f64>,
    appends: Vec<Value>,
}

/// An event and the members of its `data` and `meta` that its handler reads, with masks of
/// those that are strings without escapes (see [`scan::members`]).
struct Found<'e, 'a> {
    e: &'e EventRef<'a>,
    data: &'e [Option<&'a str>],
    meta: &'e [Option<&'a str>],
    data_plain: u64,
    meta_plain: u64,
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
            plan: Arc::new(Plan::new(&def)),
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

    /// The keys in order: numbers first, then strings.
    pub fn keys(&self) -> Vec<Key> {
        let nums = self
            .state
            .by_num
            .keys()
            .map(|b| Key::Num(f64::from_bits(*b)));
        let strs = self.state.by_str.keys().map(|s| Key::Str(s.clone()));
        let mut keys: Vec<Key> = nums.chain(strs).collect();
        // Unstable and on `Key` alone: one sort in the wasm build instead of one per caller.
        keys.sort_unstable();
        keys
    }

    /// The rows in key order: numbers first, then strings.
    pub fn sorted(&self) -> Vec<(Key, &Row)> {
        self.keys()
            .into_iter()
            .filter_map(|k| self.get(&k).map(|r| (k, r)))
            .collect()
    }

    /// The latest fold errors (up to 100) and how many there were in all.
    pub fn errors(&self) -> (&[FoldError], u64) {
        (&self.state.errors, self.state.error_count)
    }

    /// Moves past an event without folding it (one the app cannot read, say), recording
    /// `error` among the fold errors when given.
    pub fn pass(&mut self, e: &EventRef<'_>, error: Option<&str>) {
        self.state.seq = e.seq;
        if let Some(message) = error {
            self.state.record(e, message.to_owned());
        }
    }

    /// Folds one event in. With `changes`, each key whose row changed or went is pushed to it.
    pub fn apply(&mut self, e: &EventRef<'_>, changes: Option<&mut Vec<Key>>) {
        let Table { def, plan, state } = self;
        state.seq = e.seq;
        let Some(h) = plan.handler(e.event_type, &mut state.last_type) else {
            return;
        };
        let n = h.data_keys.len() + h.meta_keys.len();
        if n <= FEW_SLOTS {
            state.run(def, h, e, &mut [None; FEW_SLOTS][..n], changes);
        } else if n <= MANY_SLOTS {
            state.run(def, h, e, &mut [None; MANY_SLOTS][..n], changes);
        } else {
            state.run(def, h, e, &mut vec![None; n], changes);
        }
    }

    /// Starts an overlay: what is folded from now on can be taken back by [`Table::rollback`],
    /// which copies only the rows it touches. The sync client folds the outbox this way over
    /// the confirmed base. Does nothing if an overlay is already on.
    pub fn begin_overlay(&mut self) {
        let s = &mut self.state;
        if s.undo.is_none() {
            s.undo = Some(Box::new(Undo {
                seq: s.seq,
                errors: s.errors.clone(),
                error_count: s.error_count,
                ..Undo::default()
            }));
        }
    }

    /// Whether an overlay is on.
    pub fn in_overlay(&self) -> bool {
        self.state.undo.is_some()
    }

    /// Keeps what the overlay folded, as the new base (its events were all confirmed).
    pub fn commit_overlay(&mut self) {
        self.state.undo = None;
    }

    /// Takes back everything folded since [`Table::begin_overlay`] and ends the overlay. With
    /// `changes`, each key whose row it restored is pushed to it.
    pub fn rollback(&mut self, mut changes: Option<&mut Vec<Key>>) {
        let s = &mut self.state;
        let Some(undo) = s.undo.take() else { return };
        let Undo {
            by_str,
            by_num,
            seq,
            errors,
            error_count,
        } = *undo;
        let touched = !by_str.is_empty() || !by_num.is_empty();
        for (k, row) in by_str {
            if let Some(c) = changes.as_deref_mut() {
                c.push(Key::Str(k.clone()));
            }
            match row {
                Some(row) => s.by_str.insert(k, row),
                None => s.by_str.remove(&k),
            };
        }
        for (bits, row) in by_num {
            if let Some(c) = changes.as_deref_mut() {
                c.push(Key::Num(f64::from_bits(bits)));
            }
            match row {
                Some(row) => s.by_num.insert(bits, row),
                None => s.by_num.remove(&bits),
            };
        }
        if touched {
            s.shape += 1;
        }
        s.seq = seq;
        s.errors = errors;
        s.error_count = error_count;
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
    /// Before a row changes under an overlay: keeps the base's version of it, once.
    #[inline(always)]
    fn save(&mut self, key: &KeyRef<'_>) {
        let Some(undo) = self.undo.as_deref_mut() else {
            return;
        };
        match key {
            KeyRef::Num(n) => {
                let bits = num_bits(*n);
                undo.by_num
                    .entry(bits)
                    .or_insert_with(|| self.by_num.get(&bits).cloned());
            }
            KeyRef::Str(k) => {
                if !undo.by_str.contains_key(k.as_ref()) {
                    undo.by_str
                        .insert(k.to_string(), self.by_str.get(k.as_ref()).cloned());
                }
            }
        }
    }

    /// Runs a handler's steps, with `slots` (all `None`, one per member the handler reads)
    /// to hold the members its scan finds.
    fn run<'a>(
        &mut self,
        def: &TableDef,
        h: &Handler,
        e: &EventRef<'a>,
        slots: &mut [Option<&'a str>],
        mut changes: Option<&mut Vec<Key>>,
    ) {
        let (data, meta) = slots.split_at_mut(h.data_keys.len());
        let mut data_plain = 0;
        let mut meta_plain = 0;
        if !data.is_empty() {
            data_plain = scan::members(e.data, &h.data_keys, data);
        }
        if !meta.is_empty() {
            meta_plain = scan::members(e.meta.unwrap_or("null"), &h.meta_keys, meta);
        }
        let found = Found {
            e,
            data,
            meta,
            data_plain,
            meta_plain,
        };
        for step in &h.steps {
            if let Err(message) = self.apply_step(def, step, &found, changes.as_deref_mut()) {
                self.record(e, message);
            }
        }
    }

    fn record(&mut self, e: &EventRef<'_>, message: String) {
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

    /// Checks every change against the row before making any, so a failed operation leaves
    /// the row exactly as it was.
    fn apply_step(
        &mut self,
        def: &TableDef,
        step: &Step,
        f: &Found<'_, '_>,
        mut changes: Option<&mut Vec<Key>>,
    ) -> Result<(), String> {
        if let Some(t) = &step.tally {
            if self.tally(def, step, t, f, changes.as_deref_mut()) {
                return Ok(());
            }
        }
        let key = eval_key(&step.row, f)?;
        self.save(&key);
        if step.delete {
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
        // Leftovers of a failed step are dropped here (clearing empty lists is not free).
        let s = &mut self.scratch;
        if !s.sets.is_empty() {
            s.sets.clear();
        }
        if !s.appends.is_empty() {
            s.appends.clear();
        }
        s.adds.clear();
        for (i, input) in &step.set {
            s.sets.push((*i, eval(input, f)?));
        }
        for c in &step.add {
            let (input, sign) = &c.what;
            s.adds.push(sign * eval_num(input, f)?);
        }
        for c in &step.append {
            s.appends.push(eval(&c.what, f)?);
        }

        let n = def.fields.len();
        let existing = match &key {
            KeyRef::Num(x) => self.by_num.get_mut(&num_bits(*x)),
            KeyRef::Str(k) => self.by_str.get_mut(k.as_ref()),
        };
        if let Some(row) = &existing {
            check(def, step, row)?;
        }
        let row = match existing {
            Some(row) => row,
            None => {
                self.shape += 1;
                match &key {
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
        if row.len() != n {
            row.resize(n, None); // resize always makes a drop call, even when it does nothing
        }
        let row = row.as_mut_slice();
        for (i, v) in s.sets.drain(..) {
            row[i] = Some(v);
        }
        for (c, d) in step.add.iter().zip(&s.adds) {
            add_to(&mut row[c.field], *d);
        }
        for c in &step.count {
            add_to(&mut row[c.field], 1.0);
        }
        for (c, v) in step.append.iter().zip(s.appends.drain(..)) {
            match &mut row[c.field] {
                Some(Value::List(items)) => items.push(v),
                slot => *slot = Some(Value::List(vec![v])),
            }
        }
        if let Some(changes) = changes {
            changes.push(owned(key));
        }
        Ok(())
    }
}

impl State {
    /// Runs a [`Tally`] step the fast way: a borrowed key, numbers on the stack, one lookup.
    /// Returns `false`, having changed nothing, when anything is unusual (a missing or escaped
    /// key, a new row, a value that is not a number, ...): then [`State::apply_step`] runs it
    /// the general way, with the same result or error.
    #[inline(always)]
    fn tally(
        &mut self,
        def: &TableDef,
        step: &Step,
        t: &Tally,
        f: &Found<'_, '_>,
        changes: Option<&mut Vec<Key>>,
    ) -> bool {
        let key = match t.key {
            None => f.e.stream,
            Some((meta, at)) => match f.plain_str(meta, at) {
                Some(k) => k,
                None => return false,
            },
        };
        let mut deltas = [0.0; TALLY_ADDS];
        for (d, &(_, meta, at, sign)) in deltas.iter_mut().zip(&t.adds) {
            match f.member(meta, at).and_then(parse_num) {
                Some(n) => *d = sign * n,
                None => return false,
            }
        }
        if self.undo.is_some() {
            if !self.by_str.contains_key(key) {
                return false;
            }
            self.save(&KeyRef::Str(Cow::Borrowed(key)));
        }
        let Some(row) = self.by_str.get_mut(key) else {
            return false;
        };
        if row.len() != def.fields.len() {
            return false;
        }
        // Plain loops: iterator adapters are calls at opt-level "z", and cloning one copies it.
        let row = row.as_mut_slice();
        let is_num = |v: &Option<Value>| matches!(v, None | Some(Value::Num(_)));
        for a in &t.adds {
            if !is_num(&row[a.0]) {
                return false;
            }
        }
        for c in &step.count {
            if !is_num(&row[c.field]) {
                return false;
            }
        }
        for k in 0..t.adds.len() {
            add_to(&mut row[t.adds[k].0], deltas[k]);
        }
        for c in &step.count {
            add_to(&mut row[c.field], 1.0);
        }
        if let Some(changes) = changes {
            changes.push(Key::Str(key.to_owned()));
        }
        true
    }
}

/// Adds `d` to a number field; a field not set yet starts from 0.
#[inline(always)]
fn add_to(slot: &mut Option<Value>, d: f64) {
    match slot {
        Some(Value::Num(x)) => *x += d,
        slot => *slot = Some(Value::Num(d)),
    }
}

impl<'a> Found<'_, 'a> {
    /// The text of top-level member `at` of `data` (or `meta`), if there.
    #[inline(always)]
    fn member(&self, meta: bool, at: usize) -> Option<&'a str> {
        if meta {
            self.meta[at]
        } else {
            self.data[at]
        }
    }

    /// The text inside member `at` if it is a string without escapes.
    #[inline(always)]
    fn plain_str(&self, meta: bool, at: usize) -> Option<&'a str> {
        let plain = if meta {
            self.meta_plain
        } else {
            self.data_plain
        };
        if at < 64 && plain & (1 << at) != 0 {
            scan::inner(self.member(meta, at)?)
        } else {
            None
        }
    }
}

/// Whether the step's adds, counts and appends fit the row's current fields.
fn check(def: &TableDef, step: &Step, row: &Row) -> Result<(), String> {
    let field = |i: usize| row.get(i).and_then(Option::as_ref);
    let adds = step.add.iter().map(|c| (c.field, c.also_set));
    let counts = step.count.iter().map(|c| (c.field, c.also_set));
    for (i, also_set) in adds.chain(counts) {
        if !also_set && !matches!(field(i), None | Some(Value::Num(_))) {
            return Err(format!("field {} is not a number", def.fields[i]));
        }
    }
    for c in &step.append {
        if !c.also_set && !matches!(field(c.field), None | Some(Value::List(_))) {
            return Err(format!("field {} is not a list", def.fields[c.field]));
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

/// A source's JSON text, if it reads `data` or `meta`.
enum Raw<'a> {
    /// The text, and whether it is known to be a string without escapes.
    Text(&'a str, bool),
    Missing,
    Envelope,
}

#[inline(always)]
fn raw<'a>(input: &Input, f: &Found<'_, 'a>) -> Raw<'a> {
    let (found, plain) = match &input.read {
        Read::Envelope => return Raw::Envelope,
        Read::Whole { meta: false } => (Some(f.e.data.trim()), false),
        Read::Whole { meta: true } => (Some(f.e.meta.unwrap_or("null").trim()), false),
        Read::Member { meta, at, rest } => {
            let (slots, plain) = if *meta {
                (f.meta, f.meta_plain)
            } else {
                (f.data, f.data_plain)
            };
            match slots[*at] {
                Some(text) if !rest.is_empty() => (scan::field(text, rest), false),
                top => (top, *at < 64 && plain & (1 << *at) != 0),
            }
        }
    };
    found.map_or(Raw::Missing, |text| Raw::Text(text, plain))
}

fn missing(input: &Input) -> String {
    format!("{} is missing", name(&input.source))
}

fn eval_key<'a>(input: &Input, f: &Found<'_, 'a>) -> Result<KeyRef<'a>, String> {
    let not_a_key = || {
        format!(
            "the row key from {} is not a string or number",
            name(&input.source)
        )
    };
    if let Source::Stream = input.source {
        return Ok(KeyRef::Str(Cow::Borrowed(f.e.stream)));
    }
    match raw(input, f) {
        Raw::Text(text, plain) => {
            let borrowed = if plain {
                scan::inner(text)
            } else {
                scan::plain_str(text)
            };
            if let Some(s) = borrowed {
                return Ok(KeyRef::Str(Cow::Borrowed(s)));
            }
            return match Value::from_json(text) {
                Some(Value::Str(s)) => Ok(KeyRef::Str(Cow::Owned(s))),
                Some(Value::Num(n)) if n.is_finite() => Ok(KeyRef::Num(n)),
                _ => Err(not_a_key()),
            };
        }
        Raw::Missing => return Err(missing(input)),
        Raw::Envelope => {}
    }
    match Key::from_value(eval(input, f)?) {
        Some(Key::Num(n)) => Ok(KeyRef::Num(n)),
        Some(Key::Str(s)) => Ok(KeyRef::Str(Cow::Owned(s))),
        None => Err(not_a_key()),
    }
}

fn eval_num(input: &Input, f: &Found<'_, '_>) -> Result<f64, String> {
    let n = match raw(input, f) {
        Raw::Text(text, _) => parse_num(text),
        Raw::Missing => return Err(missing(input)),
        Raw::Envelope => match eval(input, f)? {
            Value::Num(n) => Some(n),
            _ => None,
        },
    };
    n.ok_or_else(|| format!("{} is not a number", name(&input.source)))
}

/// A JSON number; plain integers (the usual amounts in cents) skip the float parser.
#[inline(always)]
fn parse_num(text: &str) -> Option<f64> {
    let b = text.as_bytes();
    let (neg, digits) = match b.first()? {
        b'-' => (true, &b[1..]),
        _ => (false, b),
    };
    if let Some(v) = small_int(digits) {
        return Some(if neg { -v } else { v });
    }
    parse_float(text)
}

fn parse_float(text: &str) -> Option<f64> {
    match text.as_bytes().first()? {
        b'-' | b'0'..=b'9' => super::value::parse_f64(text),
        _ => None,
    }
}

/// Up to 15 decimal digits (exact in an f64), read in one pass.
#[inline(always)]
fn small_int(digits: &[u8]) -> Option<f64> {
    if digits.is_empty() || digits.len() > 15 {
        return None;
    }
    let mut v = 0i64;
    for &d in digits {
        let x = d.wrapping_sub(b'0');
        if x > 9 {
            return None;
        }
        v = v * 10 + i64::from(x);
    }
    Some(v as f64)
}

fn eval(input: &Input, f: &Found<'_, '_>) -> Result<Value, String> {
    match raw(input, f) {
        Raw::Text(text, _) => {
            return Value::from_json(text)
                .ok_or_else(|| format!("{} is not valid JSON", name(&input.source)))
        }
        Raw::Missing => return Err(missing(input)),
        Raw::Envelope => {}
    }
    let e = f.e;
    Ok(match &input.source {
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
    use super::*;
    use crate::event::Event;
    use crate::id::EventId;
    use crate::table::testing::Rng;

    /// Events that take the fast path and every way out of it: new rows, escaped, numeric,
    /// missing and nested keys, amounts that are not numbers (or not integers), fields that
    /// turned into lists, deletes, stream and meta keys.
    fn events(r: &mut Rng, n: u64) -> Vec<Event> {
        let keys = [
            r#""a1""#,
            r#""a2""#,
            r#""a\u0031""#,
            r#""b\"q""#,
            "7",
            "-0",
            "1.5",
            r#"{"k":1}"#,
            "true",
        ];
        let amounts = [
            "5",
            "-12",
            "0",
            "2.5",
            "1e3",
            r#""ten""#,
            "null",
            "123456789012345678",
        ];
        (1..=n)
            .map(|seq| {
                let ty = r.pick(&[
                    "Deposited",
                    "Withdrawn",
                    "Transferred",
                    "Tagged",
                    "Closed",
                    "Reset",
                    "ByStream",
                    "ByUser",
                    "Other",
                ]);
                let mut members = Vec::new();
                for name in ["account", "from", "to", "amount", "tag"] {
                    if r.below(8) > 0 {
                        let v = match name {
                            "amount" => r.pick(&amounts),
                            "tag" => r.pick(&[r#""x""#, "1", "[1,2]"]),
                            _ => r.pick(&keys),
                        };
                        members.push(format!(r#""{name}": {v}"#));
                    }
                }
                if r.below(10) == 0 {
                    members.push(r#""account": "dup""#.into()); // first one wins
                }
                Event {
                    id: EventId(u128::from(seq)),
                    stream: r.pick(&["s1", "s2", "a1"]).into(),
                    version: seq,
                    event_type: ty.into(),
                    data: format!("{{{}}}", members.join(", ")),
                    meta: Some(format!(r#"{{"user": {}}}"#, r.pick(&keys)))
                        .filter(|_| r.below(4) > 0),
                    time: 1_700_000_000_000,
                    origin: "test".into(),
                    seq,
                    offset: None,
                }
            })
            .collect()
    }

    #[test]
    fn nested_and_meta_sources_read_their_members() {
        let def = serde_json::json!({
            "key": "data.who.id",
            "on": { "Scored": [
                { "add": { "points": "data.score.value" }, "set": { "by": "meta.user", "at": "data.score" } },
                { "row": "meta.team", "count": "scores" }
            ] }
        });
        let mut t = Table::new(Arc::new(TableDef::parse_text(&def.to_string()).unwrap()));
        let data = [
            r#"{"score": {"value": 3, "why": "x"}, "who": {"id": "p1"}}"#,
            r#"{"who": {"name": "n", "id": "p1"}, "score": {"value": 4}}"#,
            r#"{"who": {"id": 5}, "score": {"value": "none"}}"#,
        ];
        for (seq, d) in (1..).zip(data) {
            let e = Event {
                id: EventId(seq),
                stream: "s".into(),
                version: 1,
                event_type: "Scored".into(),
                data: d.into(),
                meta: Some(r#"{"team": "t", "user": "u"}"#.into()),
                time: 0,
                origin: "o".into(),
                seq: seq as u64,
                offset: None,
            };
            t.apply(&e.as_ref(), None);
        }
        let mut out = String::new();
        t.write_row(t.get(&Key::Str("p1".into())).unwrap(), &mut out);
        assert_eq!(out, r#"{"points":7,"at":{"value": 4},"by":"u"}"#);
        t.write_row(t.get(&Key::Str("t".into())).unwrap(), &mut out);
        assert!(out.ends_with(r#"{"scores":3}"#), "{out}");
        assert!(t.get(&Key::Num(5.0)).is_none());
        assert_eq!(t.errors().0[0].message, "data.score.value is not a number");
    }

    #[test]
    fn the_fast_path_agrees_with_the_general_one() {
        let def = serde_json::json!({
            "key": "data.account",
            "on": {
                "Deposited": { "add": { "balance": "data.amount" }, "count": "movements" },
                "Withdrawn": { "subtract": { "balance": "data.amount" }, "count": ["movements", "withdrawals"] },
                "Transferred": [
                    { "row": "data.from", "subtract": { "balance": "data.amount" }, "count": "movements" },
                    { "row": "data.to", "add": { "balance": "data.amount", "in": "data.amount" } }
                ],
                "Tagged": { "append": { "movements": "data.tag" } },
                "Reset": { "set": { "balance": "data.tag" }, "count": "movements" },
                "Closed": { "delete": true },
                "ByStream": { "row": "stream", "add": { "balance": "data.amount" } },
                "ByUser": { "row": "meta.user", "count": "movements" }
            }
        });
        let def = Arc::new(TableDef::parse_text(&def.to_string()).unwrap());
        let mut r = Rng(3);
        for round in 0..40 {
            let events = events(&mut r, 300);
            let mut fast = Table::new(Arc::clone(&def));
            let mut general = Table::new(Arc::clone(&def));
            general.plan = Arc::new(Plan::new(&def).without_fast_paths());
            for e in &events {
                let (mut a, mut b) = (Vec::new(), Vec::new());
                fast.apply(&e.as_ref(), Some(&mut a));
                general.apply(&e.as_ref(), Some(&mut b));
                assert_eq!(a, b, "round {round}, event {e:?}");
            }
            assert_eq!(fast.sorted(), general.sorted(), "round {round}");
            assert_eq!(fast.errors(), general.errors(), "round {round}");
            assert_eq!((fast.seq(), fast.shape()), (general.seq(), general.shape()));
            assert!(
                fast.errors().1 > 0 && fast.len() > 2,
                "the events should reach the slow paths"
            );
        }
    }

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
