//! A small LZ77 byte compressor for segments.
//!
//! IndexedDB in Chromium reads about 60–80 MB/s whatever the values hold, so reading the log is
//! bound by its size; events repeat their JSON keys and names, which LZ77 removes cheaply.
//!
//! Format: a run of sequences, each `token | [literal length…] | literals | offset: u16 LE |
//! [match length…]`. The token's high nibble is the literal count, its low nibble the match
//! length minus [`MIN_MATCH`]; a nibble of 15 continues in bytes of 255 until one below. The
//! last sequence ends after its literals. Matches may overlap their own output.

const MIN_MATCH: usize = 4;
const HASH_BITS: u32 = 12;
const MAX_OFFSET: usize = u16::MAX as usize;

/// Why compressed bytes could not be expanded. Segments are checksummed first, so this means a
/// bug or a checksum collision, never silently wrong output.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad compressed data: {0}")]
pub struct LzError(&'static str);

fn hash(word: u32) -> usize {
    (word.wrapping_mul(0x9E37_79B1) >> (32 - HASH_BITS)) as usize
}

fn word_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

fn put_length(out: &mut Vec<u8>, mut n: usize) {
    while n >= 255 {
        out.push(255);
        n -= 255;
    }
    out.push(n as u8);
}

fn put_sequence(out: &mut Vec<u8>, literals: &[u8], matched: Option<(usize, usize)>) {
    let lit = literals.len();
    let m = matched.map_or(0, |(_, len)| len - MIN_MATCH);
    out.push(((lit.min(15) as u8) << 4) | m.min(15) as u8);
    if lit >= 15 {
        put_length(out, lit - 15);
    }
    out.extend_from_slice(literals);
    if let Some((offset, _)) = matched {
        out.extend_from_slice(&(offset as u16).to_le_bytes());
        if m >= 15 {
            put_length(out, m - 15);
        }
    }
}

/// Compresses `input`, appending to `out`.
pub fn compress(input: &[u8], out: &mut Vec<u8>) {
    let mut table = vec![0u32; 1 << HASH_BITS]; // position + 1; 0 = empty
    let mut anchor = 0;
    let mut i = 0;
    let mut misses = 0usize;
    while i + MIN_MATCH <= input.len() {
        let w = word_at(input, i);
        let h = hash(w);
        let candidate = table[h] as usize;
        table[h] = (i + 1) as u32;
        if candidate > 0 && i - (candidate - 1) <= MAX_OFFSET && word_at(input, candidate - 1) == w
        {
            let from = candidate - 1;
            let mut len = MIN_MATCH;
            while i + len < input.len() && input[from + len] == input[i + len] {
                len += 1;
            }
            put_sequence(out, &input[anchor..i], Some((i - from, len)));
            // Index a position inside the match, so the next lookups find recent text.
            if i + len >= 2 && i + len - 2 + MIN_MATCH <= input.len() {
                table[hash(word_at(input, i + len - 2))] = (i + len - 1) as u32;
            }
            i += len;
            anchor = i;
            misses = 0;
        } else {
            // Skip faster through text that does not compress (ids, random data).
            misses += 1;
            i += 1 + (misses >> 5);
        }
    }
    put_sequence(out, &input[anchor..], None);
}

fn length(input: &[u8], pos: &mut usize, nibble: usize) -> Result<usize, LzError> {
    let mut n = nibble;
    if nibble == 15 {
        loop {
            let b = *input.get(*pos).ok_or(LzError("length runs past the end"))?;
            *pos += 1;
            n += b as usize;
            if b != 255 {
                break;
            }
        }
    }
    Ok(n)
}

/// Expands `input` into `out` (cleared first), which must come to exactly `size` bytes.
pub fn decompress(input: &[u8], size: usize, out: &mut Vec<u8>) -> Result<(), LzError> {
    out.clear();
    out.reserve(size);
    let mut pos = 0;
    while pos < input.len() {
        let token = input[pos];
        pos += 1;
        let lit = length(input, &mut pos, (token >> 4) as usize)?;
        let literals = input
            .get(pos..pos + lit)
            .ok_or(LzError("literals run past the end"))?;
        if out.len() + lit > size {
            return Err(LzError("output larger than declared"));
        }
        out.extend_from_slice(literals);
        pos += lit;
        if pos == input.len() {
            break;
        }
        let offset = match input.get(pos..pos + 2) {
            Some(b) => u16::from_le_bytes([b[0], b[1]]) as usize,
            None => return Err(LzError("offset runs past the end")),
        };
        pos += 2;
        let len = length(input, &mut pos, (token & 15) as usize)? + MIN_MATCH;
        if offset == 0 || offset > out.len() {
            return Err(LzError("offset before the start"));
        }
        if out.len() + len > size {
            return Err(LzError("output larger than declared"));
        }
        let start = out.len() - offset;
        if offset >= len {
            out.extend_from_within(start..start + len);
        } else {
            // Overlapping: each byte may be one this copy just wrote.
            for k in 0..len {
                let b = out[start + k];
                out.push(b);
            }
        }
    }
    if out.len() != size {
        return Err(LzError("output smaller than declared"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(input: &[u8]) -> usize {
        let mut packed = Vec::new();
        compress(input, &mut packed);
        let mut out = Vec::new();
        decompress(&packed, input.len(), &mut out).unwrap();
        assert_eq!(out, input);
        packed.len()
    }

    #[test]
    fn round_trips_edge_cases() {
        for input in [
            &b""[..],
            b"a",
            b"abc",
            b"abcd",
            b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            b"abcabcabcabcabcabcabcabcabcabcabcabc",
        ] {
            round_trip(input);
        }
        let long_literal: Vec<u8> = (0..1000u32).map(|i| (i * 7919 % 251) as u8).collect();
        round_trip(&long_literal);
        let long_match = vec![b'x'; 100_000];
        assert!(round_trip(&long_match) < 1000);
    }

    #[test]
    fn json_events_shrink() {
        let text: String = (0..500)
            .map(|i| format!(r#"{{"account":"acct-{}","amount":{}}}"#, i % 97, i * 31))
            .collect();
        let packed = round_trip(text.as_bytes());
        assert!(packed * 2 < text.len(), "{packed} of {}", text.len());
    }

    #[test]
    fn damaged_input_is_an_error_not_a_panic() {
        let text =
            b"the quick brown fox jumps over the quick brown dog and the quick cat".repeat(20);
        let mut packed = Vec::new();
        compress(&text, &mut packed);
        let mut out = Vec::new();
        for i in 0..packed.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut bad = packed.clone();
                bad[i] ^= flip;
                let _ = decompress(&bad, text.len(), &mut out);
            }
            let _ = decompress(&packed[..i], text.len(), &mut out);
        }
        assert!(decompress(&packed, text.len() + 1, &mut out).is_err());
        assert!(decompress(&packed, text.len() - 1, &mut out).is_err());
    }
}
