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
        members(cur, &[key.as_ref()], &mut found);
        cur = found[0]?;
    }
    Some(cur)
}

/// Fills `out[i]` with the raw text (no surrounding white space) of top-level member `keys[i]`
/// of the object `json`, in one pass that stops once every key is found. Keys not there (or a
/// `json` that is not an object) leave their slot as it was, so pass `None`s. `keys` should be
/// distinct. With duplicate keys the first one wins (serde_json would take the last); stored
/// data comes from `JSON.stringify` or serde, which never repeat a key.
pub fn members<'a, K: AsRef<str>>(json: &'a str, keys: &[K], out: &mut [Option<&'a str>]) {
    debug_assert_eq!(keys.len(), out.len());
    let b = json.as_bytes();
    let mut missing = out.iter().filter(|s| s.is_none()).count();
    let mut i = skip_ws(b, 0);
    if missing == 0 || b.get(i) != Some(&b'{') {
        return;
    }
    i += 1;
    loop {
        i = skip_ws(b, i);
        if b.get(i) != Some(&b'"') {
            return; // `}` ends the object
        }
        let Some((key_end, escaped)) = string_end(b, i) else {
            return;
        };
        let raw_key = &b[i + 1..key_end - 1];
        i = skip_ws(b, key_end);
        if b.get(i) != Some(&b':') {
            return;
        }
        i = skip_ws(b, i + 1);
        let Some(end) = value_end(b, i) else {
            return;
        };
        let slot = if escaped {
            unescape(raw_key).and_then(|k| wanted(k.as_bytes(), keys, out))
        } else {
            wanted(raw_key, keys, out)
        };
        if let Some(slot) = slot {
            // Both ends sit next to ASCII bytes, so they are char boundaries.
            out[slot] = sub(json, i, end);
            missing -= 1;
            if missing == 0 {
                return;
            }
        }
        i = skip_ws(b, end);
        match b.get(i) {
            Some(b',') => i += 1,
            _ => return,
        }
    }
}

/// The index of `key` among the keys still unfound.
#[inline(always)]
fn wanted<K: AsRef<str>>(key: &[u8], keys: &[K], out: &[Option<&str>]) -> Option<usize> {
    for (i, k) in keys.iter().enumerate() {
        let k = k.as_ref().as_bytes();
        // Lengths first: most keys differ in length, and that needs no call to memcmp.
        if k.len() == key.len() && out[i].is_none() && k == key {
            return Some(i);
        }
    }
    None
}

fn unescape(raw: &[u8]) -> Option<String> {
    let raw = std::str::from_utf8(raw).ok()?;
    serde_json::from_str::<String>(&format!("\"{raw}\"")).ok()
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
    let rest = b.get(i..)?;
    let w = rest
        .iter()
        .rev()
        .fold(0u64, |w, &c| (w << 8) | u64::from(c));
    match hits(w) {
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

/// Index just past the value starting at `b[i]`.
#[inline(always)]
fn value_end(b: &[u8], i: usize) -> Option<usize> {
    match b.get(i)? {
        b'"' => string_end(b, i).map(|(end, _)| end),
        b'{' | b'[' => nested_end(b, i),
        _ => {
            let mut j = i;
            while let Some(&c) = b.get(j) {
                if ENDS_SCALAR[c as usize] {
                    break;
                }
                j += 1;
            }
            Some(j)
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
    use super::{field, members, plain_str, string_end};
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
    fn the_first_of_duplicate_keys_wins() {
        let doc = r#"{"a":1,"b":{"a":2},"a":3,"\u0062":4}"#;
        assert_eq!(field(doc, &["a"]), Some("1"));
        assert_eq!(field(doc, &["b", "a"]), Some("2"));
        let mut out = [None, None, Some("kept")];
        members(doc, &["b", "a", "c"], &mut out);
        assert_eq!(out, [Some(r#"{"a":2}"#), Some("1"), Some("kept")]);
    }

    /// A small deterministic generator, so failures reproduce.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((self.0 >> 33) % n as u64) as usize
        }

        fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
            items[self.below(items.len())]
        }
    }

    const KEYS: &[&str] = &[
        "a",
        "amount",
        "k\"q",
        "é",
        "x\\y",
        "a key longer than eight bytes",
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
            let mut out = vec![None; keys.len()];
            members(&text, &keys, &mut out);
            for (k, got) in keys.iter().zip(&out) {
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
