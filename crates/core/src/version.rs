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

#[cfg(test)]
mod tests {
    use super::*;

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
