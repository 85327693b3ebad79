//! Stream versions and the optimistic-concurrency check (KurrentDB's expected version).

use std::fmt;
use std::hash::Hasher;

use crate::table::Fnv;

/// What the appender believes the stream's version to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExpectedVersion {
    /// No check.
    #[default]
    Any,
    /// The stream must not exist yet (version 0).
    NoStream,
    /// The stream must be at exactly this version.
    Exact(u64),
}

impl ExpectedVersion {
    /// Checks `actual` (0 for a stream that does not exist) against this expectation.
    pub fn check(self, stream: &str, actual: u64) -> Result<(), ConflictError> {
        let ok = match self {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => actual == 0,
            ExpectedVersion::Exact(v) => actual == v,
        };
        if ok {
            Ok(())
        } else {
            Err(ConflictError {
                stream: stream.to_owned(),
                expected: self,
                actual,
            })
        }
    }
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any"),
            ExpectedVersion::NoStream => f.write_str("none"),
            ExpectedVersion::Exact(v) => write!(f, "{v}"),
        }
    }
}

/// The stream was not at the expected version; nothing was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stream {stream:?} is at version {actual}, expected {expected}")]
pub struct ConflictError {
    /// The stream whose version did not match.
    pub stream: String,
    /// What the appender expected.
    pub expected: ExpectedVersion,
    /// The stream's version at the time of the check.
    pub actual: u64,
}

/// An order-free digest of a set of (name, number) records, such as stream versions or outbox
/// batch numbers: each record's hash XORed in. A writer updates it from the records it
/// replaces (or computes it whole), and a reader of the whole set compares it, so a deleted,
/// changed or mistyped record shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SetDigest(u64);

impl SetDigest {
    /// Digests stay below 2^53, so a JS number holds them exactly.
    const MASK: u64 = (1 << 53) - 1;

    /// The digest of no versions as of position 0: a new log's.
    pub fn empty() -> SetDigest {
        let mut d = SetDigest::default();
        d.toggle_through(0);
        d
    }

    /// A digest as stored; `None` if `value` is not one.
    pub fn from_stored(value: u64) -> Option<SetDigest> {
        (value <= Self::MASK).then_some(SetDigest(value))
    }

    /// Adds the record if absent from the set, removes it if present.
    pub fn toggle(&mut self, stream: &str, version: u64) {
        let mut h = Fnv::default();
        h.write(stream.as_bytes());
        // The separator keeps ("a1", 2) and ("a", 12)-like pairs apart.
        h.write_u8(0xff);
        h.write_u64(version);
        self.0 ^= h.finish() & Self::MASK;
    }

    /// Adds or removes the checkpoint position the versions are as of, as the stream "",
    /// which no stream is named.
    pub fn toggle_through(&mut self, seq: u64) {
        self.toggle("", seq);
    }

    /// The value to store.
    pub fn value(self) -> u64 {
        self.0
    }
}

/// The stream names a log has, for telling a new stream (version 0, nothing to read) from one
/// whose version must be read: it may say "maybe" of a name never added (under 1 in 100), never
/// "no" of one that was. A scalable Bloom filter: when a layer holds what it was sized for, a
/// layer twice its size, with more bits a name, takes the next names, so it grows without
/// reading them again and its "maybe"s stay under about 1.5 in 100 in all.
#[derive(Debug, Clone)]
pub struct StreamFilter {
    layers: Vec<Layer>,
}

#[derive(Debug, Clone)]
struct Layer {
    /// A power of two of bits, so a probe is a mask.
    bits: Vec<u64>,
    capacity: usize,
    len: usize,
}

impl StreamFilter {
    /// Under 1% "maybe" for names never added, with 7 probes; each later layer has 2 bits a
    /// name more, which about halves its share.
    const BITS_PER_NAME: usize = 10;
    const PROBES: u64 = 7;
    const MIN_CAPACITY: usize = 1024;

    /// A filter sized for `names` names (it grows past them).
    pub fn with_capacity(names: usize) -> StreamFilter {
        StreamFilter {
            layers: vec![Layer::new(
                names.max(Self::MIN_CAPACITY),
                Self::BITS_PER_NAME,
            )],
        }
    }

    /// Adds `name`.
    pub fn insert(&mut self, name: &str) {
        let h = Self::hash(name);
        if self.layers.iter().any(|l| l.has(h)) {
            return;
        }
        let last = self.layers.last().expect("a layer");
        if last.len >= last.capacity {
            let bits_per_name = Self::BITS_PER_NAME + 2 * self.layers.len();
            self.layers
                .push(Layer::new(last.capacity * 2, bits_per_name));
        }
        self.layers.last_mut().expect("a layer").set(h);
    }

    /// `false` only if `name` was never added.
    pub fn may_contain(&self, name: &str) -> bool {
        let h = Self::hash(name);
        self.layers.iter().any(|l| l.has(h))
    }

    /// Bytes of memory the bits take.
    pub fn bytes(&self) -> usize {
        self.layers.iter().map(|l| l.bits.len() * 8).sum()
    }

    /// FNV-1a, then a 64-bit finalizer (splitmix64's): FNV alone leaves names that differ in
    /// their last character with close hashes, and the probes need every bit mixed.
    fn hash(name: &str) -> u64 {
        let mut h = Fnv::default();
        h.write(name.as_bytes());
        let mut z = h.finish();
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

impl Layer {
    fn new(capacity: usize, bits_per_name: usize) -> Layer {
        let bits = (capacity * bits_per_name).next_power_of_two();
        Layer {
            bits: vec![0; bits / 64],
            capacity,
            len: 0,
        }
    }

    /// The bits hash `h` probes: double hashing, `h1 + i * h2` for i in 0..7.
    fn probes(&self, h: u64) -> impl Iterator<Item = usize> {
        let mask = (self.bits.len() * 64 - 1) as u64;
        let (h1, h2) = (h & 0xffff_ffff, (h >> 32) | 1);
        (0..StreamFilter::PROBES).map(move |i| (h1.wrapping_add(i * h2) & mask) as usize)
    }

    fn has(&self, h: u64) -> bool {
        self.probes(h)
            .all(|b| self.bits[b / 64] & (1 << (b % 64)) != 0)
    }

    fn set(&mut self, h: u64) {
        for b in self.probes(h) {
            self.bits[b / 64] |= 1 << (b % 64);
        }
        self.len += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(prefix: &str, n: usize) -> Vec<String> {
        (0..n).map(|i| format!("{prefix}-{i}")).collect()
    }

    /// How many of `names` the filter calls "maybe".
    fn maybes(f: &StreamFilter, names: &[String]) -> usize {
        names.iter().filter(|n| f.may_contain(n)).count()
    }

    #[test]
    fn a_stream_filter_never_says_no_to_a_name_it_holds() {
        let mut f = StreamFilter::with_capacity(0);
        assert!(!f.may_contain("acct-1"), "an empty filter holds nothing");
        // Ten times what it was sized for: it grows a layer at a time.
        let held = names("acct", 10 * StreamFilter::MIN_CAPACITY);
        for n in &held {
            f.insert(n);
        }
        assert_eq!(maybes(&f, &held), held.len());
        assert!(f.layers.len() >= 4, "{} layers", f.layers.len());
        // Names never added: "maybe" for under 2 in 100, however many layers it grew.
        let others = names("order", 20_000);
        let wrong = maybes(&f, &others);
        assert!(
            wrong < others.len() / 50,
            "{wrong} of {} never added said maybe",
            others.len()
        );
    }

    #[test]
    fn a_stream_filter_sized_for_its_names_says_maybe_about_once_in_a_hundred() {
        let held = names("todo", 50_000);
        let mut f = StreamFilter::with_capacity(held.len());
        for n in &held {
            f.insert(n);
        }
        assert_eq!(f.layers.len(), 1);
        assert_eq!(maybes(&f, &held), held.len());
        let others = names("note", 50_000);
        let wrong = maybes(&f, &others);
        assert!(
            wrong < others.len() / 50,
            "{wrong} of {} never added said maybe",
            others.len()
        );
        assert!(f.bytes() <= 128 << 10, "{} bytes", f.bytes());
    }

    fn digest(records: &[(&str, u64)]) -> SetDigest {
        let mut d = SetDigest::default();
        for (s, v) in records {
            d.toggle(s, *v);
        }
        d
    }

    #[test]
    fn a_set_digest_is_of_the_set_not_its_order() {
        let all = [("acct-0", 8), ("acct-1", 3), ("b", 1)];
        let d = digest(&all);
        assert_eq!(d, digest(&[all[2], all[0], all[1]]));
        assert_eq!(SetDigest::from_stored(d.value()), Some(d));
        assert!(d.value() < 1 << 53);
        // A record deleted, changed or added shows.
        assert_ne!(d, digest(&all[..2]));
        assert_ne!(d, digest(&[("acct-0", 9), all[1], all[2]]));
        assert_ne!(d, digest(&[all[0], all[1], all[2], ("c", 1)]));
        // Replacing a record by toggling the old out and the new in is the same as a fresh set.
        let mut moved = d;
        moved.toggle("acct-0", 8);
        moved.toggle("acct-0", 9);
        assert_eq!(moved, digest(&[("acct-0", 9), all[1], all[2]]));
        assert_eq!(SetDigest::from_stored(1 << 53), None);
    }

    #[test]
    fn checks_each_kind_of_expectation() {
        assert!(ExpectedVersion::Any.check("s", 9).is_ok());
        assert!(ExpectedVersion::NoStream.check("s", 0).is_ok());
        assert!(ExpectedVersion::Exact(3).check("s", 3).is_ok());
        let e = ExpectedVersion::NoStream.check("s", 2).unwrap_err();
        assert_eq!((e.expected, e.actual), (ExpectedVersion::NoStream, 2));
        let e = ExpectedVersion::Exact(1).check("s", 2).unwrap_err();
        assert_eq!(e.to_string(), "stream \"s\" is at version 2, expected 1");
    }
}
