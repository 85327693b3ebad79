//! Reads fields out of stored JSON text without parsing the rest.
//!
//! Folding a table touches a few fields of each event; building a whole JSON tree per event
//! would cost more than everything else in the fold together. Strings are skipped eight bytes
//! at a time, since they are most of an event's text.

/// The raw JSON text of the value at `path` (object keys, outermost first) in `json`, if there.
/// `json` must be valid JSON (stored data always is). With duplicate keys the first one wins.
pub fn field<'a, K: AsRef<str>>(json: &'a str, path: &[K]) -> Option<&'a str> {
    let mut cur = json;
    for key in path {
        let mut found = [None];
        members(cur, &[Name::new(key.as_ref())], &mut found);
        cur = found[0]?;
    }
    Some(cur)
}

/// A member name prepared for [`members`]: its first bytes and closing quote packed in a
/// word, so one comparison matches it (or rules it out) at a key in the text.
#[derive(Debug, Clone, PartialEq)]
pub struct Name<S = String> {
    text: S,
    /// Whether the name appears in JSON as is (no `"`, `\` or control characters), which
    /// the word comparison needs; other names are matched after unescaping keys.
    plain: bool,
    /// The first 8 bytes of the name and its closing quote, little-endian, and which bytes
    /// of a word they fill.
    head: u64,
    mask: u64,
}

impl<S: AsRef<str>> Name<S> {
    /// Prepares `text`.
    pub fn new(text: S) -> Self {
        let t = text.as_ref().as_bytes();
        let plain = !t.iter().any(|&c| c == b'"' || c == b'\\' || c < b' ');
        // No allocation: `field` prepares names while folding nested paths.
        let (mut head, mut n) = (0u64, 0);
        for &c in t.iter().chain(b"\"").take(8) {
            head |= u64::from(c) << (8 * n);
            n += 1;
        }
        let mask = match n {
            8 => u64::MAX,
            n => (1 << (8 * n)) - 1,
        };
        Name {
            text,
            plain,
            head,
            mask,
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        self.text.as_ref()
    }

    /// Whether the key whose text starts at `b[i]` (past its opening quote) is this name
    /// written without escapes; `w` holds the 8 bytes from `i`.
    #[inline(always)]
    fn at(&self, b: &[u8], i: usize, w: u64) -> bool {
        if !self.plain || w & self.mask != self.head {
            return false;
        }
        let t = self.text.as_ref().as_bytes();
        // Names of up to 7 bytes were compared whole, closing quote included.
        t.len() < 8
            || (b.get(i + 8..i + t.len()) == t.get(8..) && b.get(i + t.len()) == Some(&b'"'))
    }
}

/// Fills `out[k]` with the raw text (no surrounding white space) of top-level member
/// `names[k]` of the object `json`, in one pass that stops once every name is found. Names not
/// there (or a `json` that is not an object) leave their slot as it was, so pass `None`s;
/// `names` should be distinct. With duplicate keys the first one wins (serde_json would take
/// the last); stored data comes from `JSON.stringify` or serde, which never repeat a key.
///
/// Returns a bit mask of the slots (below 64) it filled with a string without escapes, whose
/// text between the quotes can be used as is.
pub fn members<'a, S: AsRef<str>>(
    json: &'a str,
    names: &[Name<S>],
    out: &mut [Option<&'a str>],
) -> u64 {
    debug_assert_eq!(names.len(), out.len());
    let b = json.as_bytes();
    let mut plain = 0;
    let mut missing = out.iter().filter(|s| s.is_none()).count();
    let mut i = skip_ws(b, 0);
    if missing == 0 || b.get(i) != Some(&b'{') {
        return plain;
    }
    i += 1;
    loop {
        i = skip_ws(b, i);
        if b.get(i) != Some(&b'"') {
            return plain; // `}` ends the object
        }
        // A wanted key is usually matched by one word comparison; other keys are skipped
        // (and compared after unescaping if they hold escapes).
        let w = word_at(b, i + 1);
        let found = names
            .iter()
            .zip(out.iter())
            .position(|(n, o)| o.is_none() && n.at(b, i + 1, w));
        let (slot, key_end) = match found {
            Some(k) => (Some(k), i + 2 + names[k].as_str().len()),
            None => match string_end(b, i) {
                Some((end, true)) => (unescaped_slot(&b[i + 1..end - 1], names, out), end),
                Some((end, false)) => (None, end),
                None => return plain,
            },
        };
        i = skip_ws(b, key_end);
        if b.get(i) != Some(&b':') {
            return plain;
        }
        i = skip_ws(b, i + 1);
        let Some((end, plain_str)) = value_end(b, i) else {
            return plain;
        };
        if let Some(k) = slot {
            // Both ends sit next to ASCII bytes, so they are char boundaries.
            out[k] = sub(json, i, end);
            if plain_str && k < 64 {
                plain |= 1 << k;
            }
            missing -= 1;
            if missing == 0 {
                return plain;
            }
        }
        i = skip_ws(b, end);
        match b.get(i) {
            Some(b',') => i += 1,
            _ => return plain,
        }
    }
}

/// The slot of the still unfound name that the escaped key `raw` stands for.
fn unescaped_slot<S: AsRef<str>>(
    raw: &[u8],
    names: &[Name<S>],
    out: &[Option<&str>],
) -> Option<usize> {
    let raw = std::str::from_utf8(raw).ok()?;
    let quoted = format!("\"{raw}\"");
    let key = crate::json::Reader::new(&quoted).string().ok()?;
    names
        .iter()
        .zip(out)
        .position(|(n, o)| o.is_none() && n.as_str() == key)
}

/// `a == b`; strings of up to 16 bytes are compared as one or two (overlapping) words
/// rather than by a call to memcmp.
#[inline(always)]
pub(crate) fn same(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    match n {
        0..=7 => tail_word(a) == tail_word(b),
        8..=16 => word_at(a, 0) == word_at(b, 0) && word_at(a, n - 8) == word_at(b, n - 8),
        _ => a == b,
    }
}

/// The 8 bytes from `b[i]` as a little-endian word, padded with zeros past the end.
#[inline(always)]
fn word_at(b: &[u8], i: usize) -> u64 {
    match b.get(i..i + 8) {
        Some(w) => u64::from_le_bytes(w.try_into().expect("8 bytes")),
        None => tail_word(b.get(i..).unwrap_or_default()),
    }
}

/// Up to 8 bytes as a little-endian word padded with zeros (a loop: `fold` would be a call).
#[inline(always)]
fn tail_word(rest: &[u8]) -> u64 {
    let mut w = 0u64;
    let mut k = rest.len().min(8);
    while k > 0 {
        k -= 1;
        w = (w << 8) | u64::from(rest[k]);
    }
    w
}

/// The text inside `json` if it is a string without escapes (so it can be borrowed as is).
#[inline(always)]
pub(crate) fn plain_str(json: &str) -> Option<&str> {
    let b = json.as_bytes();
    match string_end(b, 0) {
        Some((end, false)) if b[0] == b'"' && end == b.len() => sub(json, 1, end - 1),
        _ => None,
    }
}

/// The text between the quotes of `json`, a string (see [`members`]'s plain strings).
#[inline(always)]
pub(crate) fn inner(json: &str) -> Option<&str> {
    sub(json, 1, json.len().checked_sub(1)?)
}

/// `s[start..end]`, if those are char boundaries. Unlike `str::get`, this is inlined at
/// opt-level "z", which saves a call per value found.
#[inline(always)]
fn sub(s: &str, start: usize, end: usize) -> Option<&str> {
    let (_, tail) = s.split_at_checked(start)?;
    Some(tail.split_at_checked(end.checked_sub(start)?)?.0)
}

/// Index of the first byte at or after `i` that is not white space.
#[inline(always)]
fn skip_ws(b: &[u8], i: usize) -> usize {
    // Stored JSON is mostly compact: one comparison says there is no white space.
    match b.get(i) {
        Some(&c) if c <= b' ' => skip_ws_slow(b, i),
        _ => i,
    }
}

fn skip_ws_slow(b: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\n' | b'\r' | b'\t') = b.get(i) {
        i += 1;
    }
    i
}

/// The bytes that end a number or `true`/`false`/`null`: white space, `,`, `}` and `]`.
static ENDS_SCALAR: [bool; 256] = {
    let mut t = [false; 256];
    let mut k = 0;
    while k < 7 {
        t[b" \n\r\t,}]"[k] as usize] = true;
        k += 1;
    }
    t
};

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// The high bit of each zero byte of `x`. Bits above the lowest zero byte may be false hits
/// (a borrow runs through), but the lowest set bit is always exact, which is all we read.
#[inline(always)]
fn zero_bytes(x: u64) -> u64 {
    x.wrapping_sub(ONES) & !x & HIGHS
}

/// The index of the first `"` or `\` at or after `i`, eight bytes at a time.
#[inline(always)]
fn quote_or_backslash(b: &[u8], mut i: usize) -> Option<usize> {
    while let Some(chunk) = b.get(i..i + 8) {
        let h = hits(u64::from_le_bytes(chunk.try_into().expect("8 bytes")));
        if h != 0 {
            return Some(i + (h.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    // The last few bytes as a word padded with zeros (neither `"` nor `\`).
    match hits(tail_word(b.get(i..)?)) {
        0 => None,
        h => Some(i + (h.trailing_zeros() / 8) as usize),
    }
}

/// The high bit of each byte of `w` that is `"` or `\` (exact up to the lowest one).
#[inline(always)]
fn hits(w: u64) -> u64 {
    zero_bytes(w ^ (ONES * b'"' as u64)) | zero_bytes(w ^ (ONES * b'\\' as u64))
}

/// Index just past the string starting at `b[start] == '"'`, and whether it holds an escape.
#[inline(always)]
fn string_end(b: &[u8], start: usize) -> Option<(usize, bool)> {
    let mut i = start + 1;
    let mut escaped = false;
    loop {
        i = quote_or_backslash(b, i)?;
        if b[i] == b'"' {
            return Some((i + 1, escaped));
        }
        escaped = true;
        i += 2;
    }
}

/// Index just past the value starting at `b[i]`, and whether it is a string without escapes.
#[inline(always)]
fn value_end(b: &[u8], i: usize) -> Option<(usize, bool)> {
    match b.get(i)? {
        b'"' => string_end(b, i).map(|(end, escaped)| (end, !escaped)),
        b'{' | b'[' => Some((nested_end(b, i)?, false)),
        _ => {
            let mut j = i;
            while let Some(&c) = b.get(j) {
                if ENDS_SCALAR[c as usize] {
                    break;
                }
                j += 1;
            }
            Some((j, false))
        }
    }
}

/// Index just past the object or array starting at `b[i]`.
fn nested_end(b: &[u8], i: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut j = i;
    loop {
        match b.get(j)? {
            b'"' => {
                j = string_end(b, j)?.0;
                continue;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth -= 1;
                if depth == 0 {
                    return Some(j + 1);
                }
            }
            _ => {}
        }
        j += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::{field, members, plain_str, same, string_end, Name};
    use crate::table::testing::Rng;
    use serde_json::Value as Json;

    const DOC: &str = r#" { "a" : 1, "s": "x,}\"y", "n": {"deep": [1, {"k": "}"}], "k": -2.5e3 }, "e\u0061sc": true, "z": null } "#;

    #[test]
    fn finds_top_level_and_nested_fields() {
        assert_eq!(field(DOC, &["a"]), Some("1"));
        assert_eq!(field(DOC, &["s"]), Some(r#""x,}\"y""#));
        assert_eq!(field(DOC, &["n", "k"]), Some("-2.5e3"));
        assert_eq!(field(DOC, &["n", "deep"]), Some(r#"[1, {"k": "}"}]"#));
        assert_eq!(field(DOC, &["easc"]), Some("true"));
        assert_eq!(field(DOC, &["z"]), Some("null"));
    }

    #[test]
    fn misses_are_none() {
        assert_eq!(field(DOC, &["missing"]), None);
        assert_eq!(field(DOC, &["a", "b"]), None);
        assert_eq!(field("[1,2]", &["a"]), None);
        assert_eq!(field("{}", &["a"]), None);
        assert_eq!(field("7", &["a"]), None);
    }

    #[test]
    fn agrees_with_serde_json_on_generated_documents() {
        for i in 0..200u32 {
            let doc = serde_json::json!({
                "id": i, "name": format!("n\"{i}"), "nested": {"v": [i, {"w": i * 2}], "x": f64::from(i) / 3.0},
                "flag": i % 2 == 0,
            });
            let text = doc.to_string();
            for path in [
                &["id"][..],
                &["name"],
                &["nested", "x"],
                &["nested", "v"],
                &["flag"],
            ] {
                let mut want = &doc;
                for k in path {
                    want = &want[*k];
                }
                let got: serde_json::Value =
                    serde_json::from_str(field(&text, path).unwrap()).unwrap();
                assert_eq!(&got, want, "{text} {path:?}");
            }
        }
    }

    #[test]
    fn string_ends_are_found_at_every_offset() {
        // Put the quote (or an escape) at every position around the 8-byte steps.
        for len in 0..40 {
            for pad in 0..9 {
                let body = "x".repeat(len);
                let doc = format!("{}\"{body}\"tail", " ".repeat(pad));
                assert_eq!(
                    string_end(doc.as_bytes(), pad),
                    Some((pad + len + 2, false))
                );
                for at in 0..len {
                    let mut body = body.clone();
                    body.replace_range(at..at + 1, "\\\"");
                    let doc = format!("{}\"{body}\"", " ".repeat(pad));
                    assert_eq!(
                        string_end(doc.as_bytes(), pad),
                        Some((doc.len(), true)),
                        "{doc}"
                    );
                }
            }
            let open = format!("\"{}", "y".repeat(len));
            assert_eq!(string_end(open.as_bytes(), 0), None);
        }
        assert_eq!(plain_str(r#""abc""#), Some("abc"));
        assert_eq!(plain_str(r#""""#), Some(""));
        assert_eq!(plain_str(r#""a\"b""#), None);
        assert_eq!(plain_str("12"), None);
        assert_eq!(plain_str(""), None);
    }

    #[test]
    fn same_compares_like_eq() {
        for len in 0..40usize {
            let a: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            assert!(same(&a, &a));
            assert!(!same(&a, &a[..len.saturating_sub(1)]) || len == 0);
            for at in 0..len {
                let mut b = a.clone();
                b[at] ^= 0x20;
                assert!(!same(&a, &b), "{len} {at}");
            }
        }
    }

    #[test]
    fn the_first_of_duplicate_keys_wins() {
        let doc = r#"{"a":1,"b":{"a":2},"a":3,"\u0062":4}"#;
        assert_eq!(field(doc, &["a"]), Some("1"));
        assert_eq!(field(doc, &["b", "a"]), Some("2"));
        let mut out = [None, None, Some("kept")];
        members(doc, &["b", "a", "c"].map(Name::new), &mut out);
        assert_eq!(out, [Some(r#"{"a":2}"#), Some("1"), Some("kept")]);
    }

    /// Names around the 8-byte word: shorter, exactly 7 and 8 bytes, longer, prefixes of one
    /// another, and names that JSON must escape.
    const KEYS: &[&str] = &[
        "a",
        "amount",
        "amounts",
        "seven_7",
        "eight__8",
        "eight__8x",
        "a key longer than eight bytes",
        "a key longer than eight bytes, too",
        "k\"q",
        "é",
        "x\\y",
        "tab\t",
        "",
    ];

    /// Writes a random JSON value (an object at depth 0) with random white space, escapes and
    /// duplicate keys.
    fn gen_value(r: &mut Rng, depth: usize, out: &mut String) {
        let ws =
            |r: &mut Rng, out: &mut String| out.push_str(r.pick(&["", "", " ", "\n\t ", "\r\n"]));
        let kind = if depth == 0 {
            5
        } else {
            r.below(if depth > 2 { 4 } else { 6 })
        };
        match kind {
            0 => {
                let n = r.pick(&[
                    "0",
                    "-1",
                    "12345",
                    "1.5e3",
                    "-0.25",
                    "1E-2",
                    "9007199254740993",
                ]);
                out.push_str(n);
            }
            1 => out.push_str(r.pick(&["true", "false", "null"])),
            2 | 3 => {
                let s: String = (0..r.below(20))
                    .map(|_| {
                        r.pick(&[
                            "a", "\"", "\\", "/", ",", "}", "]", "é", "😀", "\n", "\u{1}", " ",
                            "xxxxxxxx",
                        ])
                    })
                    .collect();
                out.push_str(&serde_json::to_string(&s).unwrap());
            }
            4 => {
                out.push('[');
                for i in 0..r.below(4) {
                    if i > 0 {
                        out.push(',');
                    }
                    ws(r, out);
                    gen_value(r, depth + 1, out);
                    ws(r, out);
                }
                out.push(']');
            }
            _ => {
                out.push('{');
                for i in 0..r.below(7) {
                    if i > 0 {
                        out.push(',');
                    }
                    ws(r, out);
                    let key = r.pick(KEYS);
                    if r.below(4) == 0 {
                        // Every character as a \\u escape (surrogate pairs where needed).
                        out.push('"');
                        for u in key.encode_utf16() {
                            out.push_str(&format!("\\u{u:04x}"));
                        }
                        out.push('"');
                    } else {
                        out.push_str(&serde_json::to_string(key).unwrap());
                    }
                    ws(r, out);
                    out.push(':');
                    ws(r, out);
                    gen_value(r, depth + 1, out);
                    ws(r, out);
                }
                out.push('}');
            }
        }
    }

    /// The members of an object's text in order, duplicates kept, as serde_json reads each value.
    fn ordered_members(text: &str) -> Vec<(String, Json)> {
        use serde::de::{Deserializer, MapAccess, Visitor};
        struct Members;
        impl<'de> Visitor<'de> for Members {
            type Value = Vec<(String, Json)>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(kv) = m.next_entry()? {
                    out.push(kv);
                }
                Ok(out)
            }
        }
        serde_json::Deserializer::from_str(text)
            .deserialize_map(Members)
            .unwrap()
    }

    #[test]
    fn members_agree_with_serde_json_on_generated_documents() {
        let mut r = Rng(7);
        for _ in 0..3000 {
            let mut text = String::new();
            if r.below(2) == 0 {
                text.push_str(" \n");
            }
            gen_value(&mut r, 0, &mut text);
            text.push_str(r.pick(&["", " ", "\n"]));
            let all = ordered_members(&text);
            let keys: Vec<&str> = KEYS.iter().copied().filter(|_| r.below(3) > 0).collect();
            let names: Vec<Name<&str>> = keys.iter().map(|k| Name::new(*k)).collect();
            let mut out = vec![None; keys.len()];
            let plain = members(&text, &names, &mut out);
            for (i, (k, got)) in keys.iter().zip(&out).enumerate() {
                let is_plain = got.is_some_and(|t| t.starts_with('"') && !t.contains('\\'));
                assert_eq!(plain & (1 << i) != 0, is_plain, "{text} {k:?}");
                let want = all.iter().find(|(name, _)| name == k).map(|(_, v)| v);
                let got: Option<Json> = got.map(|raw| {
                    assert_eq!(raw.trim(), raw, "{text}");
                    serde_json::from_str(raw).unwrap()
                });
                assert_eq!(got.as_ref(), want, "{text} {k:?}");
                // One level down, through `field`.
                if let Some(Json::Object(_)) = want {
                    let inner = ordered_members(field(&text, &[k]).unwrap());
                    for (name, _) in &inner {
                        let first = &inner.iter().find(|(n, _)| n == name).unwrap().1;
                        let raw = field(&text, &[*k, name.as_str()]).unwrap();
                        let got: Json = serde_json::from_str(raw).unwrap();
                        assert_eq!(&got, first, "{text} {k:?}.{name:?}");
                    }
                }
            }
        }
    }
}
