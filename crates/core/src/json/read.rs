//! A small JSON reader: a cursor that reads values in place (strings unescaped only when they
//! hold escapes, anything skipped as its raw text) and, on top of it, an owned [`Json`] tree
//! for the few places that walk a whole document (table definitions).
//!
//! The browser build reads every JSON it is given through this instead of serde_json, whose
//! generic deserializers and error formatting were an eighth of the `.wasm`.

use std::borrow::Cow;
use std::fmt;

/// Nesting deeper than this is refused, so a hostile document cannot exhaust the stack.
pub const MAX_DEPTH: usize = 128;

/// Why a text is not the JSON expected, and the byte where that was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError {
    /// What is wrong.
    pub message: Cow<'static, str>,
    /// The byte offset in the text.
    pub at: usize,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        f.write_str(" at byte ")?;
        let mut at = String::new();
        super::push_u64(&mut at, self.at as u64);
        f.write_str(&at)
    }
}

impl std::error::Error for JsonError {}

/// A cursor over JSON text. Each read skips the whitespace before the value it reads.
pub struct Reader<'a> {
    text: &'a str,
    pos: usize,
    depth: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `text`.
    pub fn new(text: &'a str) -> Self {
        Reader {
            text,
            pos: 0,
            depth: 0,
        }
    }

    /// An error at the current position.
    pub fn error(&self, message: impl Into<Cow<'static, str>>) -> JsonError {
        JsonError {
            message: message.into(),
            at: self.pos,
        }
    }

    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    /// The next byte that is not whitespace, not consumed.
    pub fn peek(&mut self) -> Option<u8> {
        while let Some(&b) = self.bytes().get(self.pos) {
            if !matches!(b, b' ' | b'\n' | b'\r' | b'\t') {
                return Some(b);
            }
            self.pos += 1;
        }
        None
    }

    fn expect(&mut self, b: u8, what: &'static str) -> Result<(), JsonError> {
        if self.peek() == Some(b) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.error(what))
        }
    }

    fn literal(&mut self, word: &'static str) -> Result<(), JsonError> {
        if self.text[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(self.error("not a JSON value"))
        }
    }

    /// Checks that only whitespace is left.
    pub fn end(&mut self) -> Result<(), JsonError> {
        match self.peek() {
            None => Ok(()),
            Some(_) => Err(self.error("text after the JSON value")),
        }
    }

    /// Reads `null` if it comes next; returns whether it did.
    pub fn null(&mut self) -> Result<bool, JsonError> {
        if self.peek() == Some(b'n') {
            self.literal("null")?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Reads any value as its raw text, or `None` for `null` (an event's `meta`).
    pub fn raw_or_null(&mut self) -> Result<Option<&'a str>, JsonError> {
        if self.null()? {
            return Ok(None);
        }
        self.skip().map(Some)
    }

    /// Reads `true` or `false`.
    pub fn bool(&mut self) -> Result<bool, JsonError> {
        match self.peek() {
            Some(b't') => self.literal("true").map(|_| true),
            Some(b'f') => self.literal("false").map(|_| false),
            _ => Err(self.error("expected true or false")),
        }
    }

    /// Reads a string, borrowed from the text unless it holds escapes.
    pub fn string(&mut self) -> Result<Cow<'a, str>, JsonError> {
        self.expect(b'"', "expected a string")?;
        let start = self.pos;
        let bytes = self.bytes();
        loop {
            match bytes.get(self.pos) {
                None => return Err(self.error("unterminated string")),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(Cow::Borrowed(&self.text[start..self.pos - 1]));
                }
                Some(b'\\') => break,
                Some(0..=0x1f) => return Err(self.error("control character in a string")),
                Some(_) => self.pos += 1,
            }
        }
        let mut out = String::from(&self.text[start..self.pos]);
        loop {
            match bytes.get(self.pos) {
                None => return Err(self.error("unterminated string")),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(Cow::Owned(out));
                }
                Some(b'\\') => {
                    self.pos += 1;
                    self.escape(&mut out)?;
                }
                Some(0..=0x1f) => return Err(self.error("control character in a string")),
                Some(_) => {
                    // Copy up to the next quote or backslash at once.
                    let run = bytes[self.pos..]
                        .iter()
                        .position(|b| matches!(b, b'"' | b'\\' | 0..=0x1f))
                        .unwrap_or(bytes.len() - self.pos);
                    out.push_str(&self.text[self.pos..self.pos + run]);
                    self.pos += run;
                }
            }
        }
    }

    fn escape(&mut self, out: &mut String) -> Result<(), JsonError> {
        let b = *self
            .bytes()
            .get(self.pos)
            .ok_or_else(|| self.error("unterminated string"))?;
        self.pos += 1;
        let c = match b {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let hi = self.hex4()?;
                let code = if (0xd800..0xdc00).contains(&hi) {
                    if !self.text[self.pos..].starts_with("\\u") {
                        return Err(self.error("unpaired surrogate in a string"));
                    }
                    self.pos += 2;
                    let lo = self.hex4()?;
                    if !(0xdc00..0xe000).contains(&lo) {
                        return Err(self.error("unpaired surrogate in a string"));
                    }
                    0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00)
                } else {
                    hi
                };
                char::from_u32(code).ok_or_else(|| self.error("unpaired surrogate in a string"))?
            }
            _ => return Err(self.error("invalid escape in a string")),
        };
        out.push(c);
        Ok(())
    }

    fn hex4(&mut self) -> Result<u32, JsonError> {
        let digits = self
            .text
            .get(self.pos..self.pos + 4)
            .ok_or_else(|| self.error("invalid \\u escape"))?;
        let mut v = 0;
        for b in digits.bytes() {
            let d = (b as char)
                .to_digit(16)
                .ok_or_else(|| self.error("invalid \\u escape"))?;
            v = v * 16 + d;
        }
        self.pos += 4;
        Ok(v)
    }

    /// Reads a number and returns its text, checked against JSON's grammar.
    pub fn number_text(&mut self) -> Result<&'a str, JsonError> {
        self.peek();
        let start = self.pos;
        let bytes = self.bytes();
        let digits = |pos: &mut usize| {
            let from = *pos;
            while bytes.get(*pos).is_some_and(u8::is_ascii_digit) {
                *pos += 1;
            }
            *pos - from
        };
        let mut pos = self.pos;
        if bytes.get(pos) == Some(&b'-') {
            pos += 1;
        }
        let int_start = pos;
        let int = digits(&mut pos);
        if int == 0 || (int > 1 && bytes[int_start] == b'0') {
            return Err(self.error("not a JSON number"));
        }
        if bytes.get(pos) == Some(&b'.') {
            pos += 1;
            if digits(&mut pos) == 0 {
                return Err(self.error("not a JSON number"));
            }
        }
        if matches!(bytes.get(pos), Some(b'e' | b'E')) {
            pos += 1;
            if matches!(bytes.get(pos), Some(b'+' | b'-')) {
                pos += 1;
            }
            if digits(&mut pos) == 0 {
                return Err(self.error("not a JSON number"));
            }
        }
        self.pos = pos;
        Ok(&self.text[start..pos])
    }

    /// Reads a number as a float; it must be finite.
    pub fn f64(&mut self) -> Result<f64, JsonError> {
        let text = self.number_text()?;
        // Most numbers in events are small integers: skip the general float parser for them.
        let digits = text.strip_prefix('-').unwrap_or(text);
        if digits.len() <= 15 && digits.bytes().all(|b| b.is_ascii_digit()) {
            let v = digits.bytes().fold(0u64, |v, b| v * 10 + (b - b'0') as u64) as f64;
            return Ok(if digits.len() < text.len() { -v } else { v });
        }
        super::float::parse(text).ok_or_else(|| self.error("a number out of range"))
    }

    /// Reads a non-negative integer that fits in a u64.
    pub fn u64(&mut self) -> Result<u64, JsonError> {
        let text = self.number_text()?;
        let mut v: u64 = 0;
        for b in text.bytes() {
            let d = b.wrapping_sub(b'0');
            if d > 9 {
                return Err(self.error("expected a non-negative integer"));
            }
            v = v
                .checked_mul(10)
                .and_then(|v| v.checked_add(d as u64))
                .ok_or_else(|| self.error("an integer out of range"))?;
        }
        Ok(v)
    }

    /// Reads an array, calling `item` once per element with the reader at it.
    pub fn array(
        &mut self,
        mut item: impl FnMut(&mut Self) -> Result<(), JsonError>,
    ) -> Result<(), JsonError> {
        self.expect(b'[', "expected an array")?;
        self.nest()?;
        if self.peek() == Some(b']') {
            self.pos += 1;
        } else {
            loop {
                item(self)?;
                match self.peek() {
                    Some(b',') => self.pos += 1,
                    Some(b']') => {
                        self.pos += 1;
                        break;
                    }
                    _ => return Err(self.error("expected , or ] in an array")),
                }
            }
        }
        self.depth -= 1;
        Ok(())
    }

    /// Reads an object, calling `member` once per member with its key and the reader at its
    /// value, which `member` must read (or [`Reader::skip`]).
    pub fn object(
        &mut self,
        mut member: impl FnMut(&mut Self, Cow<'a, str>) -> Result<(), JsonError>,
    ) -> Result<(), JsonError> {
        self.expect(b'{', "expected an object")?;
        self.nest()?;
        if self.peek() == Some(b'}') {
            self.pos += 1;
        } else {
            loop {
                let key = self.string()?;
                self.expect(b':', "expected : after an object key")?;
                member(self, key)?;
                match self.peek() {
                    Some(b',') => self.pos += 1,
                    Some(b'}') => {
                        self.pos += 1;
                        break;
                    }
                    _ => return Err(self.error("expected , or } in an object")),
                }
            }
        }
        self.depth -= 1;
        Ok(())
    }

    fn nest(&mut self) -> Result<(), JsonError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error("nested too deeply"));
        }
        Ok(())
    }

    /// Reads any value, checking it, and returns its text (without surrounding whitespace).
    pub fn skip(&mut self) -> Result<&'a str, JsonError> {
        let start = match self.peek() {
            Some(_) => self.pos,
            None => return Err(self.error("expected a JSON value")),
        };
        match self.bytes()[start] {
            b'{' => self.object(|r, _| r.skip().map(drop))?,
            b'[' => self.array(|r| r.skip().map(drop))?,
            b'"' => {
                self.string()?;
            }
            b't' | b'f' => {
                self.bool()?;
            }
            b'n' => {
                self.literal("null")?;
            }
            b'-' | b'0'..=b'9' => {
                self.f64()?;
            }
            _ => return Err(self.error("not a JSON value")),
        }
        Ok(&self.text[start..self.pos])
    }

    /// Reads any value into a tree.
    pub fn value(&mut self) -> Result<Json, JsonError> {
        Ok(match self.peek() {
            Some(b'{') => {
                let mut members: Vec<(String, Json)> = Vec::new();
                self.object(|r, k| {
                    let v = r.value()?;
                    members.push((k.into_owned(), v));
                    Ok(())
                })?;
                // Keys in order, the last of repeated ones kept: one canonical form per object.
                members.reverse();
                members.sort_by(|a, b| a.0.cmp(&b.0));
                members.dedup_by(|a, b| a.0 == b.0);
                Json::Obj(members)
            }
            Some(b'[') => {
                let mut items = Vec::new();
                self.array(|r| {
                    items.push(r.value()?);
                    Ok(())
                })?;
                Json::Arr(items)
            }
            Some(b'"') => Json::Str(self.string()?.into_owned()),
            Some(b't' | b'f') => Json::Bool(self.bool()?),
            Some(b'n') => {
                self.literal("null")?;
                Json::Null
            }
            Some(b'-' | b'0'..=b'9') => Json::Num(self.f64()?),
            _ => return Err(self.error("not a JSON value")),
        })
    }
}

/// Checks that `text` is exactly one JSON value (finite numbers, nesting within [`MAX_DEPTH`]).
pub fn check(text: &str) -> Result<(), JsonError> {
    let mut r = Reader::new(text);
    r.skip()?;
    r.end()
}

/// Parses `text`, which must be exactly one JSON value, into a tree.
pub fn parse(text: &str) -> Result<Json, JsonError> {
    let mut r = Reader::new(text);
    let v = r.value()?;
    r.end()?;
    Ok(v)
}

/// A JSON document as a tree. Objects keep their members sorted by key, the last of repeated
/// keys winning, so equal documents are equal trees and write the same text.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A finite number.
    Num(f64),
    /// A string.
    Str(String),
    /// An array.
    Arr(Vec<Json>),
    /// An object, sorted by key.
    Obj(Vec<(String, Json)>),
}

impl Json {
    /// The member `key` of an object.
    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Obj(members) => members
                .binary_search_by(|(k, _)| k.as_str().cmp(key))
                .ok()
                .map(|i| &members[i].1),
            _ => None,
        }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Appends the compact JSON text (numbers as [`super::push_f64`] writes them).
    pub fn write(&self, out: &mut String) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Num(n) => super::push_f64(out, *n),
            Json::Str(s) => super::push_str(out, s),
            Json::Arr(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    v.write(out);
                }
                out.push(']');
            }
            Json::Obj(members) => {
                out.push('{');
                for (i, (k, v)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    super::push_str(out, k);
                    out.push(':');
                    v.write(out);
                }
                out.push('}');
            }
        }
    }

    /// The compact JSON text.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// serde_json's view of a document, in our tree's shape (numbers as f64, keys sorted).
    fn from_serde(v: &serde_json::Value) -> Json {
        match v {
            serde_json::Value::Null => Json::Null,
            serde_json::Value::Bool(b) => Json::Bool(*b),
            serde_json::Value::Number(n) => Json::Num(n.as_f64().unwrap()),
            serde_json::Value::String(s) => Json::Str(s.clone()),
            serde_json::Value::Array(a) => Json::Arr(a.iter().map(from_serde).collect()),
            serde_json::Value::Object(o) => {
                Json::Obj(o.iter().map(|(k, v)| (k.clone(), from_serde(v))).collect())
            }
        }
    }

    fn document() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::Bool),
            any::<i64>().prop_map(serde_json::Value::from),
            (-1e300f64..1e300).prop_map(serde_json::Value::from),
            "\\PC{0,12}".prop_map(serde_json::Value::from),
            "[\"\\\\\\n\\t\\u{0}-\\u{1f}é😀]{0,6}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
                prop::collection::btree_map("\\PC{0,6}", inner, 0..6)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn reads_what_serde_json_writes(doc in document(), pretty in any::<bool>()) {
            let text = if pretty {
                serde_json::to_string_pretty(&doc).unwrap()
            } else {
                serde_json::to_string(&doc).unwrap()
            };
            let tree = parse(&text).unwrap();
            prop_assert_eq!(&tree, &from_serde(&doc));
            prop_assert_eq!(check(&text), Ok(()));
            // The canonical text is JSON that serde_json reads back as the same document.
            let again: serde_json::Value = serde_json::from_str(&tree.to_text()).unwrap();
            prop_assert_eq!(from_serde(&again), tree);
            let mut r = Reader::new(&text);
            prop_assert_eq!(r.skip().unwrap(), text.trim());
        }

        #[test]
        fn refuses_what_serde_json_refuses(text in "[\\[\\]{}\",:0-9.eE+\\-tfnrulas \\\\]{0,16}") {
            let serde_ok = serde_json::from_str::<serde_json::Value>(&text).is_ok();
            prop_assert_eq!(check(&text).is_ok(), serde_ok, "{:?}", text);
            prop_assert_eq!(parse(&text).is_ok(), serde_ok, "{:?}", text);
        }
    }

    #[test]
    fn says_what_is_wrong_and_where() {
        let e = check(r#"{"a": [1, 2,]}"#).unwrap_err();
        assert_eq!(e.to_string(), "not a JSON value at byte 12");
        assert!(check("1 2").is_err());
        assert!(check("\"\\ud800\"").is_err(), "a lone surrogate");
        assert!(check("1e400").is_err(), "infinite");
        let deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        assert_eq!(check(&deep).unwrap_err().message, "nested too deeply");
        let ok = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert_eq!(check(&ok), Ok(()));
    }

    #[test]
    fn repeated_keys_keep_the_last_and_integers_stay_exact() {
        assert_eq!(
            parse(r#"{"b":1,"a":2,"b":3}"#).unwrap(),
            Json::Obj(vec![
                ("a".into(), Json::Num(2.0)),
                ("b".into(), Json::Num(3.0))
            ])
        );
        assert_eq!(Reader::new("9007199254740993").u64(), Ok(9007199254740993));
        assert!(Reader::new("18446744073709551616").u64().is_err());
        assert!(Reader::new("-1").u64().is_err());
        assert_eq!(
            Reader::new("-123456789012345").f64(),
            Ok(-123456789012345.0)
        );
    }
}
