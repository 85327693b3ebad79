//! A definition compiled for the fold. Per event type it lists the top-level `data` and `meta`
//! members the operations read, so the fold scans each event's JSON once for all of them; per
//! operation it settles what needs no row (e.g. whether a field is also set, which lets an add
//! replace a non-number).

use std::collections::HashMap;

use super::def::{Op, Source, TableDef};
use super::scan::{self, Name};
use super::FxBuild;

/// How a source's value is found.
#[derive(Debug, Clone)]
pub(super) enum Read {
    /// From the event's envelope, or a constant: nothing to scan.
    Envelope,
    /// All of `data` (or of `meta`).
    Whole { meta: bool },
    /// Top-level member `at` of the handler's `data_keys` (or `meta_keys`), then `rest` below it.
    Member {
        meta: bool,
        at: usize,
        rest: Vec<String>,
    },
}

/// A source and how to read it.
#[derive(Debug, Clone)]
pub(super) struct Input {
    pub source: Source,
    pub read: Read,
}

/// A change to a field. `also_set`: the same operation sets the field, so the row's current
/// value need not have the right type.
#[derive(Debug, Clone)]
pub(super) struct Change<T> {
    pub field: usize,
    pub what: T,
    pub also_set: bool,
}

/// An [`Op`] ready to run.
#[derive(Debug, Clone)]
pub(super) struct Step {
    pub row: Input,
    pub set: Vec<(usize, Input)>,
    /// The source and its sign (-1 for `subtract`).
    pub add: Vec<Change<(Input, f64)>>,
    pub count: Vec<Change<()>>,
    pub append: Vec<Change<Input>>,
    pub delete: bool,
    /// Set when the step has the commonest shape, which the fold runs on a fast path.
    pub tally: Option<Tally>,
}

/// Most adds a [`Tally`] takes (its numbers are kept on the stack).
pub(super) const TALLY_ADDS: usize = 2;

/// A step that only adds top-level members and counts, on the row of the stream or of a
/// top-level member: e.g. `{ "add": { "balance": "data.amount" }, "count": "movements" }`.
#[derive(Debug, Clone)]
pub(super) struct Tally {
    /// `(meta, at)` of the key's member; `None` for the stream.
    pub key: Option<(bool, usize)>,
    /// `(field, meta, at, sign)` per add, in order.
    pub adds: Vec<(usize, bool, usize, f64)>,
}

/// The member a source reads, if it is a whole top-level one.
fn top_member(input: &Input) -> Option<(bool, usize)> {
    match &input.read {
        Read::Member { meta, at, rest } if rest.is_empty() => Some((*meta, *at)),
        _ => None,
    }
}

fn tally(step: &Step) -> Option<Tally> {
    if step.delete || !step.set.is_empty() || !step.append.is_empty() {
        return None;
    }
    if step.add.len() > TALLY_ADDS {
        return None;
    }
    let key = match step.row.source {
        Source::Stream => None,
        _ => Some(top_member(&step.row)?),
    };
    let adds = step
        .add
        .iter()
        .map(|c| {
            let (meta, at) = top_member(&c.what.0)?;
            Some((c.field, meta, at, c.what.1))
        })
        .collect::<Option<_>>()?;
    Some(Tally { key, adds })
}

/// The steps for one event type, and the members its scan looks for.
#[derive(Debug, Clone)]
pub(super) struct Handler {
    pub steps: Vec<Step>,
    /// The distinct top-level members of `data` that the steps read.
    pub data_keys: Vec<Name>,
    /// The same for `meta`.
    pub meta_keys: Vec<Name>,
}

/// Handlers by event type.
#[derive(Debug, Clone, Default)]
pub(super) struct Plan {
    types: HashMap<String, usize, FxBuild>,
    handlers: Vec<(String, Handler)>,
}

impl Plan {
    pub fn new(def: &TableDef) -> Plan {
        let mut plan = Plan::default();
        for (ty, ops) in &def.on {
            plan.types.insert(ty.clone(), plan.handlers.len());
            plan.handlers.push((ty.clone(), handler(&def.key, ops)));
        }
        plan
    }

    /// The same plan with its fast paths off, to check them against the general path.
    #[cfg(test)]
    pub fn without_fast_paths(mut self) -> Plan {
        for (_, h) in &mut self.handlers {
            for step in &mut h.steps {
                step.tally = None;
            }
        }
        self
    }

    /// The handler of `ty`; `last` remembers the previous hit, as runs of one type are common.
    #[inline]
    pub fn handler(&self, ty: &str, last: &mut usize) -> Option<&Handler> {
        if let Some((name, h)) = self.handlers.get(*last) {
            if scan::same(name.as_bytes(), ty.as_bytes()) {
                return Some(h);
            }
        }
        let i = *self.types.get(ty)?;
        *last = i;
        Some(&self.handlers[i].1)
    }
}

fn handler(key: &Source, ops: &[Op]) -> Handler {
    let mut data_keys = Vec::new();
    let mut meta_keys = Vec::new();
    let mut input = |source: &Source| {
        let read = match source {
            Source::Data(p) | Source::Meta(p) => {
                let meta = matches!(source, Source::Meta(_));
                match p.split_first() {
                    None => Read::Whole { meta },
                    Some((first, rest)) => {
                        let keys: &mut Vec<Name> =
                            if meta { &mut meta_keys } else { &mut data_keys };
                        let at = keys
                            .iter()
                            .position(|k| k.as_str() == first)
                            .unwrap_or_else(|| {
                                keys.push(Name::new(first.clone()));
                                keys.len() - 1
                            });
                        Read::Member {
                            meta,
                            at,
                            rest: rest.to_vec(),
                        }
                    }
                }
            }
            _ => Read::Envelope,
        };
        Input {
            source: source.clone(),
            read,
        }
    };
    let steps = ops
        .iter()
        .map(|op| {
            let also_set = |f: usize| op.set.iter().any(|(g, _)| *g == f);
            Step {
                row: input(op.row.as_ref().unwrap_or(key)),
                set: op.set.iter().map(|(f, s)| (*f, input(s))).collect(),
                add: op
                    .add
                    .iter()
                    .map(|(f, s, sign)| Change {
                        field: *f,
                        what: (input(s), *sign),
                        also_set: also_set(*f),
                    })
                    .collect(),
                count: op
                    .count
                    .iter()
                    .map(|f| Change {
                        field: *f,
                        what: (),
                        also_set: also_set(*f),
                    })
                    .collect(),
                append: op
                    .append
                    .iter()
                    .map(|(f, s)| Change {
                        field: *f,
                        what: input(s),
                        also_set: also_set(*f),
                    })
                    .collect(),
                delete: op.delete,
                tally: None,
            }
        })
        .map(|mut step: Step| {
            step.tally = tally(&step);
            step
        })
        .collect();
    Handler {
        steps,
        data_keys,
        meta_keys,
    }
}
