//! Declarative table definitions: plain JSON objects that say, per event type, which row an
//! event changes and how. Parsed once, with every problem reported at its path.
//!
//! ```json
//! { "key": "stream",
//!   "on": {
//!     "Opened":      [{ "set": { "owner": "data.owner", "balance": 0 } }],
//!     "Deposited":   [{ "add": { "balance": "data.amount" }, "count": "movements" }],
//!     "Transferred": [{ "row": "data.from", "subtract": { "balance": "data.amount" }, "count": "movements" },
//!                     { "row": "data.to", "add": { "balance": "data.amount" }, "count": "movements" }],
//!     "Closed":      [{ "delete": true }] } }
//! ```
//! A string naming an event field (`stream`, `type`, `id`, `seq`, `version`, `time`, `origin`,
//! `data`, `data.a.b`, `meta`, `meta.a`) reads that field; any other value is a constant, and
//! `{ "value": x }` makes any `x` a constant (e.g. the literal string `"stream"`).

use std::collections::HashMap;

use crate::json::{self, Json};

use super::value::Value;
use super::{Fnv, FxBuild};

/// Where an operation takes a value (or a row key) from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// A constant from the definition.
    Const(Value),
    /// The event's stream.
    Stream,
    /// The event's type.
    Type,
    /// The event's id (as text).
    Id,
    /// The event's position.
    Seq,
    /// The event's stream version.
    Version,
    /// The event's time.
    Time,
    /// The appending client.
    Origin,
    /// A field of `data` (the whole of it for an empty path).
    Data(Vec<String>),
    /// A field of `meta`.
    Meta(Vec<String>),
}

/// What one operation does to its row. `delete` excludes the others.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Op {
    /// The row's key.
    pub row: Option<Source>,
    /// Fields set from sources.
    pub set: Vec<(usize, Source)>,
    /// Numbers added to fields (`subtract` is stored as a negative sign).
    pub add: Vec<(usize, Source, f64)>,
    /// Values appended to list fields.
    pub append: Vec<(usize, Source)>,
    /// Fields increased by one.
    pub count: Vec<usize>,
    /// Removes the row.
    pub delete: bool,
}

/// A parsed table definition.
#[derive(Debug, Clone, PartialEq)]
pub struct TableDef {
    /// The row key when an operation names none.
    pub key: Source,
    /// Operations per event type, in order.
    pub on: HashMap<String, Vec<Op>, FxBuild>,
    /// Field names; rows store values by index into this list.
    pub fields: Vec<String>,
    /// A hash of the definition's canonical JSON: snapshots of another definition are not used.
    pub hash: String,
}

/// A definition was refused; `path` points at the problem (e.g. `on.Deposited[0].add.balance`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct DefinitionError {
    /// Where in the definition.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

fn fail<T>(path: &str, message: impl Into<String>) -> Result<T, DefinitionError> {
    Err(DefinitionError {
        path: path.to_owned(),
        message: message.into(),
    })
}

impl TableDef {
    /// Parses a definition given as JSON text.
    pub fn parse_text(text: &str) -> Result<TableDef, DefinitionError> {
        let def = json::read::parse(text).map_err(|e| DefinitionError {
            path: String::new(),
            message: e.to_string(),
        })?;
        TableDef::parse(&def)
    }

    /// Parses a definition given as a JSON tree.
    pub fn parse(def: &Json) -> Result<TableDef, DefinitionError> {
        let obj = object(def).map_or_else(|| fail("", "a table definition is an object"), Ok)?;
        for (k, _) in obj {
            if !matches!(k.as_str(), "key" | "on") {
                return fail(k, "unknown option (expected \"key\" or \"on\")");
            }
        }
        let key = match def.get("key") {
            None => Source::Stream,
            Some(v) => source(v, "key")?,
        };
        let on = def.get("on").and_then(object).map_or_else(
            || fail("on", "must be an object of event type → operations"),
            Ok,
        )?;
        let mut fields = Vec::new();
        let mut handlers = HashMap::default();
        for (ty, ops) in on {
            let path = format!("on.{ty}");
            let parsed = match ops {
                Json::Arr(list) => list
                    .iter()
                    .enumerate()
                    .map(|(i, op)| parse_op(op, &format!("{path}[{i}]"), &mut fields))
                    .collect::<Result<Vec<_>, _>>()?,
                Json::Obj(_) => vec![parse_op(ops, &path, &mut fields)?],
                _ => return fail(&path, "must be an operation or a list of them"),
            };
            handlers.insert(ty.clone(), parsed);
        }
        Ok(TableDef {
            key,
            on: handlers,
            fields,
            hash: hash_hex(&def.to_text()),
        })
    }
}

fn field_index(fields: &mut Vec<String>, name: &str, path: &str) -> Result<usize, DefinitionError> {
    if name.is_empty() {
        return fail(path, "a field name must not be empty");
    }
    Ok(fields.iter().position(|f| f == name).unwrap_or_else(|| {
        fields.push(name.to_owned());
        fields.len() - 1
    }))
}

fn parse_op(op: &Json, path: &str, fields: &mut Vec<String>) -> Result<Op, DefinitionError> {
    let obj = object(op).map_or_else(|| fail(path, "an operation is an object"), Ok)?;
    let mut out = Op::default();
    for (k, v) in obj {
        let p = format!("{path}.{k}");
        match k.as_str() {
            "row" => out.row = Some(source(v, &p)?),
            "set" => out.set = pairs(v, &p, fields)?,
            "append" => out.append = pairs(v, &p, fields)?,
            "add" | "subtract" => {
                let sign = if k == "add" { 1.0 } else { -1.0 };
                out.add
                    .extend(pairs(v, &p, fields)?.into_iter().map(|(f, s)| (f, s, sign)));
            }
            "count" => {
                let names: Vec<&Json> = match v {
                    Json::Arr(a) => a.iter().collect(),
                    other => vec![other],
                };
                for n in names {
                    let name = n.as_str().map_or_else(
                        || fail(&p, "names a field (a string) or a list of them"),
                        Ok,
                    )?;
                    out.count.push(field_index(fields, name, &p)?);
                }
            }
            "delete" => {
                if v != &Json::Bool(true) {
                    return fail(&p, "is `true` or absent");
                }
                out.delete = true;
            }
            _ => {
                return fail(
                    &p,
                    "unknown operation (expected row, set, add, subtract, append, count or delete)",
                )
            }
        }
    }
    let changes = !(out.set.is_empty()
        && out.add.is_empty()
        && out.append.is_empty()
        && out.count.is_empty());
    if out.delete && changes {
        return fail(
            path,
            "delete removes the row; it cannot be combined with other changes",
        );
    }
    if !out.delete && !changes {
        return fail(
            path,
            "does nothing: give set, add, subtract, append, count or delete",
        );
    }
    Ok(out)
}

fn pairs(
    v: &Json,
    path: &str,
    fields: &mut Vec<String>,
) -> Result<Vec<(usize, Source)>, DefinitionError> {
    let obj = object(v).map_or_else(|| fail(path, "must be an object of field → value"), Ok)?;
    obj.iter()
        .map(|(f, s)| {
            let p = format!("{path}.{f}");
            Ok((field_index(fields, f, &p)?, source(s, &p)?))
        })
        .collect()
}

fn source(v: &Json, path: &str) -> Result<Source, DefinitionError> {
    match v {
        Json::Str(s) => Ok(match s.as_str() {
            "stream" => Source::Stream,
            "type" => Source::Type,
            "id" => Source::Id,
            "seq" => Source::Seq,
            "version" => Source::Version,
            "time" => Source::Time,
            "origin" => Source::Origin,
            "data" => Source::Data(Vec::new()),
            "meta" => Source::Meta(Vec::new()),
            s if s.starts_with("data.") => Source::Data(field_path(&s[5..], path)?),
            s if s.starts_with("meta.") => Source::Meta(field_path(&s[5..], path)?),
            s => Source::Const(Value::Str(s.to_owned())),
        }),
        Json::Obj(o) if o.len() == 1 && o[0].0 == "value" => {
            Ok(Source::Const(Value::from_constant(&o[0].1)))
        }
        Json::Obj(_) | Json::Arr(_) => fail(
            path,
            "a value is an event field name or a constant; wrap objects as { \"value\": … }",
        ),
        other => Ok(Source::Const(Value::from_constant(other))),
    }
}

fn object(v: &Json) -> Option<&[(String, Json)]> {
    match v {
        Json::Obj(members) => Some(members),
        _ => None,
    }
}

fn field_path(p: &str, path: &str) -> Result<Vec<String>, DefinitionError> {
    let parts: Vec<String> = p.split('.').map(str::to_owned).collect();
    if parts.iter().any(String::is_empty) {
        let mut quoted = String::new();
        json::push_str(&mut quoted, p);
        return fail(path, format!("{quoted} is not a field path like \"a.b\""));
    }
    Ok(parts)
}

fn hash_hex(text: &str) -> String {
    use std::hash::Hasher;
    let mut h = Fnv::default();
    h.write(text.as_bytes());
    let hash = h.finish();
    (0..16)
        .map(|i| char::from_digit(((hash >> (60 - 4 * i)) & 15) as u32, 16).unwrap_or('0'))
        .collect()
}
