//! Reads single fields out of stored JSON text without parsing the rest.
//!
//! Folding a table touches one or two fields of each event; building a whole JSON tree per
//! event would cost more than everything else in the fold together.

/// The raw JSON text of the value at `path` (object keys, outermost first) in `json`, if there.
/// `json` must be valid JSON (stored data always is).
pub fn field<'a, K: AsRef<str>>(json: &'a str, path: &[K]) -> Option<&'a str> {
    let mut cur = json;
    for key in path {
        cur = member(cur, key.as_ref())?;
    }
    Some(cur)
}

/// The value of top-level member `key` of the object `json`, without surrounding white space.
fn member<'a>(json: &'a str, key: &str) -> Option<&'a str> {
    let b = json.as_bytes();
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i += 1;
    loop {
        i = skip_ws(b, i);
        if *b.get(i)? != b'"' {
            return None; // `}` of an object without the key
        }
        let key_start = i + 1;
        let (key_end, escaped) = string_end(b, i)?;
        let raw_key = &b[key_start..key_end - 1];
        i = skip_ws(b, key_end);
        if *b.get(i)? != b':' {
            return None;
        }
        i = skip_ws(b, i + 1);
        let value_end = value_end(b, i)?;
        let hit = if escaped {
            unescaped_eq(json.get(key_start..key_end - 1)?, key)
        } else {
            raw_key == key.as_bytes()
        };
        if hit {
            // Both ends sit next to ASCII bytes, so they are char boundaries.
            return json.get(i..value_end);
        }
        i = skip_ws(b, value_end);
        match b.get(i)? {
            b',' => i += 1,
            _ => return None,
        }
    }
}

fn unescaped_eq(raw: &str, key: &str) -> bool {
    serde_json::from_str::<String>(&format!("\"{raw}\"")).is_ok_and(|k| k == key)
}

fn skip_ws(b: &[u8], i: usize) -> usize {
    i + b.get(i..).map_or(0, |rest| {
        rest.iter()
            .take_while(|c| matches!(c, b' ' | b'\n' | b'\r' | b'\t'))
            .count()
    })
}

/// Index just past the string starting at `b[i] == '"'`, and whether it holds an escape.
fn string_end(b: &[u8], start: usize) -> Option<(usize, bool)> {
    let mut i = start + 1;
    let mut escaped = false;
    loop {
        i += b.get(i..)?.iter().position(|&c| c == b'"' || c == b'\\')?;
        if b[i] == b'"' {
            return Some((i + 1, escaped));
        }
        escaped = true;
        i += 2;
    }
}

/// Index just past the value starting at `b[i]`.
fn value_end(b: &[u8], i: usize) -> Option<usize> {
    match b.get(i)? {
        b'"' => string_end(b, i).map(|(end, _)| end),
        b'{' | b'[' => {
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
        _ => Some(
            i + b[i..]
                .iter()
                .position(|c| matches!(c, b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t'))
                .unwrap_or(b.len() - i),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::field;

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
}
