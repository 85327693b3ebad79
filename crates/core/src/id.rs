//! Event ids: 128-bit, time-ordered, made by the client (UUIDv7 layout).
//!
//! The id is an event's identity across retries and devices, so it must be unique without
//! coordination. The core stays pure: the caller supplies the clock and a random seed.

use std::fmt;
use std::str::FromStr;

/// A 128-bit event id in the UUIDv7 layout: 48 bits of Unix milliseconds, then random bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventId(pub u128);

impl EventId {
    /// The id as 16 big-endian bytes (its order is time order).
    pub fn to_bytes(self) -> [u8; 16] {
        self.0.to_be_bytes()
    }

    /// The id from 16 big-endian bytes.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        EventId(u128::from_be_bytes(bytes))
    }

    /// Milliseconds since the Unix epoch when the id was made.
    pub fn millis(self) -> u64 {
        (self.0 >> 80) as u64
    }

    /// Writes the canonical 36-character form (`xxxxxxxx-xxxx-7xxx-xxxx-xxxxxxxxxxxx`).
    pub fn write_to(self, out: &mut String) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let bytes = self.to_bytes();
        for (i, b) in bytes.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                out.push('-');
            }
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 15) as usize] as char);
        }
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::with_capacity(36);
        self.write_to(&mut s);
        f.write_str(&s)
    }
}

/// The text was not a 36-character hyphenated hex id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an event id: {0:?}")]
pub struct ParseIdError(pub String);

impl FromStr for EventId {
    type Err = ParseIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseIdError(s.to_owned());
        let b = s.as_bytes();
        if b.len() != 36 || [8, 13, 18, 23].iter().any(|&i| b[i] != b'-') {
            return Err(err());
        }
        let mut v: u128 = 0;
        for (i, &c) in b.iter().enumerate() {
            if matches!(i, 8 | 13 | 18 | 23) {
                continue;
            }
            let d = (c as char).to_digit(16).ok_or_else(err)?;
            v = (v << 4) | d as u128;
        }
        Ok(EventId(v))
    }
}

/// Makes ids that increase strictly within one generator, even when the clock stands still or
/// steps back, and differ across generators through a random seed.
#[derive(Debug, Clone)]
pub struct IdGenerator {
    rng: SplitMix64,
    last_ms: u64,
    counter: u128,
}

/// 74 random bits sit under the timestamp; a fresh millisecond starts the counter in the lower
/// half so increments never overflow into the timestamp.
const COUNTER_BITS: u32 = 74;

impl IdGenerator {
    /// A generator seeded with random bits (from `crypto.getRandomValues` in the browser).
    pub fn new(seed: u64) -> Self {
        IdGenerator {
            rng: SplitMix64(seed),
            last_ms: 0,
            counter: 0,
        }
    }

    /// The next id at wall-clock time `now_ms`.
    pub fn next_id(&mut self, now_ms: u64) -> EventId {
        if now_ms > self.last_ms {
            self.last_ms = now_ms;
            let r = ((self.rng.next() as u128) << 64) | self.rng.next() as u128;
            self.counter = r & ((1u128 << (COUNTER_BITS - 1)) - 1);
        } else {
            self.counter += 1 + (self.rng.next() & 0xff) as u128;
            if self.counter >> COUNTER_BITS != 0 {
                // Exhausted this millisecond (never in practice): borrow the next one.
                self.last_ms += 1;
                self.counter = 0;
            }
        }
        let ms = (self.last_ms & ((1 << 48) - 1)) as u128;
        let rand_a = (self.counter >> 62) & 0xfff;
        let rand_b = self.counter & ((1u128 << 62) - 1);
        EventId((ms << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b)
    }
}

/// A small, fast generator: ids need uniqueness, not secrecy.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_increase_within_a_millisecond_and_when_the_clock_steps_back() {
        let mut g = IdGenerator::new(7);
        let a = g.next_id(1_000);
        let b = g.next_id(1_000);
        let c = g.next_id(999);
        let d = g.next_id(1_001);
        assert!(a < b && b < c && c < d);
        assert_eq!(a.millis(), 1_000);
        assert_eq!(d.millis(), 1_001);
    }

    #[test]
    fn ids_have_the_uuid_v7_layout_and_round_trip_through_text() {
        let id = IdGenerator::new(1).next_id(1_700_000_000_000);
        let text = id.to_string();
        assert_eq!(text.len(), 36);
        assert_eq!(&text[14..15], "7");
        assert!(matches!(&text[19..20], "8" | "9" | "a" | "b"));
        assert_eq!(text.parse::<EventId>().unwrap(), id);
        assert!("not-an-id".parse::<EventId>().is_err());
    }

    #[test]
    fn generators_with_different_seeds_differ() {
        let a = IdGenerator::new(1).next_id(5);
        let b = IdGenerator::new(2).next_id(5);
        assert_ne!(a, b);
    }
}
