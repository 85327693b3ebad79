//! An in-memory log with the same rules as the browser's: for host tests and Rust apps.

use std::collections::HashMap;

use crate::append::{assign, AppendError, Batch, Stamp};
use crate::event::Event;
use crate::id::IdGenerator;
use crate::validate::Limits;

/// A log kept in a `Vec`, confirmed at once (no sync server).
#[derive(Debug)]
pub struct MemoryLog {
    events: Vec<Event>,
    versions: HashMap<String, u64>,
    ids: IdGenerator,
    origin: String,
    limits: Limits,
}

impl MemoryLog {
    /// An empty log appending as `origin`, with ids seeded by `seed`.
    pub fn new(origin: impl Into<String>, seed: u64) -> Self {
        MemoryLog {
            events: Vec::new(),
            versions: HashMap::new(),
            ids: IdGenerator::new(seed),
            origin: origin.into(),
            limits: Limits::default(),
        }
    }

    /// Appends a batch atomically at time `now_ms`.
    pub fn append(&mut self, batch: &Batch, now_ms: u64) -> Result<Vec<Event>, AppendError> {
        batch.validate(&self.limits)?;
        let mut head = self.head();
        let mut stamp = Stamp {
            time: now_ms,
            origin: &self.origin,
            ids: &mut self.ids,
        };
        let events = assign(batch, &mut head, &mut self.versions, &mut stamp)?;
        self.events.extend(events.iter().cloned());
        Ok(events)
    }

    /// Up to `limit` events after position `after`.
    pub fn read(&self, after: u64, limit: usize) -> &[Event] {
        let start = (after as usize).min(self.events.len());
        let end = start.saturating_add(limit).min(self.events.len());
        &self.events[start..end]
    }

    /// The stream's version, 0 if it has no events.
    pub fn version(&self, stream: &str) -> u64 {
        self.versions.get(stream).copied().unwrap_or(0)
    }

    /// The position of the last event, 0 when empty.
    pub fn head(&self) -> u64 {
        self.events.len() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::NewEvent;
    use crate::version::ExpectedVersion;

    fn deposit(account: &str, amount: i64) -> NewEvent {
        NewEvent::new(account, "Deposited", format!("{{\"amount\":{amount}}}"))
    }

    #[test]
    fn given_an_empty_log_when_a_batch_is_appended_then_it_gets_positions_and_versions() {
        let mut log = MemoryLog::new("client-a", 1);
        let out = log
            .append(
                &Batch::new(vec![deposit("a", 1), deposit("b", 2), deposit("a", 3)]),
                10,
            )
            .unwrap();
        let got: Vec<_> = out
            .iter()
            .map(|e| (e.stream.as_str(), e.version, e.seq))
            .collect();
        assert_eq!(got, [("a", 1, 1), ("b", 1, 2), ("a", 2, 3)]);
        assert_eq!((log.version("a"), log.version("b"), log.head()), (2, 1, 3));
        assert!(out
            .iter()
            .all(|e| e.origin == "client-a" && e.time == 10 && e.offset.is_none()));
        assert_eq!(log.read(1, 10).len(), 2);
    }

    #[test]
    fn given_a_stream_at_version_two_when_an_append_expects_one_then_nothing_is_written() {
        let mut log = MemoryLog::new("c", 1);
        log.append(&Batch::new(vec![deposit("a", 1), deposit("a", 1)]), 1)
            .unwrap();
        let batch = Batch::new(vec![deposit("a", 5), deposit("b", 5)])
            .expect("a", ExpectedVersion::Exact(1));
        match log.append(&batch, 2) {
            Err(AppendError::Conflict(c)) => assert_eq!((c.stream.as_str(), c.actual), ("a", 2)),
            other => panic!("expected a conflict, got {other:?}"),
        }
        assert_eq!((log.head(), log.version("b")), (2, 0));
        let batch = Batch::new(vec![deposit("b", 5)]).expect("b", ExpectedVersion::NoStream);
        assert!(log.append(&batch, 3).is_ok());
    }

    #[test]
    fn an_invalid_event_anywhere_in_a_batch_writes_nothing() {
        let mut log = MemoryLog::new("c", 1);
        let batch = Batch::new(vec![deposit("a", 1), NewEvent::new("a", "", "{}")]);
        match log.append(&batch, 1) {
            Err(AppendError::Invalid(e)) => assert_eq!((e.index, e.field.as_str()), (1, "type")),
            other => panic!("expected invalid, got {other:?}"),
        }
        assert_eq!(log.head(), 0);
    }

    #[test]
    fn an_expectation_for_a_stream_outside_the_batch_is_refused() {
        let mut log = MemoryLog::new("c", 1);
        let batch = Batch::new(vec![deposit("a", 1)]).expect("b", ExpectedVersion::Any);
        assert!(matches!(
            log.append(&batch, 1),
            Err(AppendError::InvalidArgument(_))
        ));
    }
}
