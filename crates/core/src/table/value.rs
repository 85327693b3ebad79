//! Row values and row keys of declarative tables.

use std::cmp::Ordering;

use crate::json::{push_str, Json, Reader};

/// A value in a row. Objects and arrays taken from events are kept as their JSON text.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// JSON `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number: f64, exact for integers up to 2^53 (so amounts are kept in cents).
    Num(f64),
    /// A string.
    Str(String),
    /// A list built by `append`.
    List(Vec<Value>),
    /// An object or array copied from an event, as JSON text.
    Raw(String),
}

impl Value {
    /// The value of a raw JSON slice (valid JSON, as stored data is).
    pub fn from_json(raw: &str) -> Option<Value> {
        let raw = raw.trim();
        Some(match raw.as_bytes().first()? {
            b'"' if !raw.contains('\\') => Value::Str(raw[1..raw.len() - 1].to_owned()),
            b'"' => Value::Str(Reader::new(raw).string().ok()?.into_owned()),
            b't' => Value::Bool(true),
            b'f' => Value::Bool(false),
            b'n' => Value::Null,
            b'{' | b'[' => Value::Raw(raw.to_owned()),
            _ => Value::Num(parse_f64(raw)?),
        })
    }

    /// The value of a JSON constant from a definition.
    pub fn from_constant(v: &Json) -> Value {
        match v {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Bool(*b),
            Json::Num(n) => Value::Num(*n),
            Json::Str(s) => Value::Str(s.clone()),
            other => Value::Raw(other.to_text()),
        }
    }

    /// Appends this value as JSON.
    pub fn write_json(&self, out: &mut String) {
        match self {
            Value::Null => out.push_str("null"),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Num(n) => write_number(out, *n),
            Value::Str(s) => push_str(out, s),
            Value::Raw(r) => out.push_str(r),
            Value::List(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    v.write_json(out);
                }
                out.push(']');
            }
        }
    }
}

fn write_number(out: &mut String, n: f64) {
    crate::json::push_f64(out, n);
}

/// A JSON number's value.
pub fn parse_f64(text: &str) -> Option<f64> {
    Reader::new(text).f64().ok()
}

/// A row key: a number or a string; numbers order before strings, as in IndexedDB.
#[derive(Debug, Clone)]
pub enum Key {
    /// A numeric key.
    Num(f64),
    /// A string key.
    Str(String),
}

impl Key {
    /// The key a value makes, if it can be one (a string or a finite number).
    pub fn from_value(v: Value) -> Option<Key> {
        match v {
            Value::Str(s) => Some(Key::Str(s)),
            Value::Num(n) if n.is_finite() => Some(Key::Num(n)),
            _ => None,
        }
    }

    /// Appends this key as JSON.
    pub fn write_json(&self, out: &mut String) {
        match self {
            Key::Num(n) => write_number(out, *n),
            Key::Str(s) => push_str(out, s),
        }
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Key {}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Key {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Key::Num(a), Key::Num(b)) => a.total_cmp(b),
            (Key::Num(_), Key::Str(_)) => Ordering::Less,
            (Key::Str(_), Key::Num(_)) => Ordering::Greater,
            (Key::Str(a), Key::Str(b)) => a.cmp(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_order_before_strings() {
        let mut keys = vec![
            Key::Str("b".into()),
            Key::Num(10.0),
            Key::Str("a".into()),
            Key::Num(-1.5),
        ];
        keys.sort();
        let mut out = String::new();
        for k in &keys {
            k.write_json(&mut out);
            out.push(' ');
        }
        assert_eq!(out, "-1.5 10 \"a\" \"b\" ");
    }

    #[test]
    fn reads_json_values_and_writes_them_back() {
        for raw in [
            "null",
            "true",
            "false",
            "12",
            "-0.25",
            "\"x\"",
            "\"a\\\"b\"",
            "{\"k\":[1]}",
            "[1,2]",
        ] {
            let v = Value::from_json(raw).unwrap();
            let mut out = String::new();
            v.write_json(&mut out);
            let a: serde_json::Value = serde_json::from_str(raw).unwrap();
            let b: serde_json::Value = serde_json::from_str(&out).unwrap();
            assert_eq!(a, b, "{raw} → {out}");
        }
        assert_eq!(Key::from_value(Value::Bool(true)), None);
    }
}
