//! Stream versions and the optimistic-concurrency check (KurrentDB's expected version).

use std::fmt;

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

#[cfg(test)]
mod tests {
    use super::*;

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
