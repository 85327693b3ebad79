//! Appending: checking a batch and giving its events ids, stream versions and positions.
//!
//! Every store (in memory, IndexedDB, the server's databases) loads the current head and the
//! versions of the batch's streams, then calls [`assign`]; so the rules live in one place.

use std::collections::HashMap;

use crate::event::{Event, EventRef, NewEvent};
use crate::id::IdGenerator;
use crate::validate::{check_event, InvalidEvent, Limits};
use crate::version::{ConflictError, ExpectedVersion};

/// One atomic append: all of its events are written, or none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    /// The events in order.
    pub events: Vec<NewEvent>,
    /// Expected versions, per stream of the batch.
    pub expected: Vec<(String, ExpectedVersion)>,
}

/// Why an append wrote nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    /// An event broke a validation rule.
    #[error(transparent)]
    Invalid(#[from] InvalidEvent),
    /// A stream was not at the expected version.
    #[error(transparent)]
    Conflict(#[from] ConflictError),
    /// The options do not fit the batch (e.g. an expected version for a stream not in it).
    #[error("{0}")]
    InvalidArgument(String),
}

impl Batch {
    /// A batch of events with no version checks.
    pub fn new(events: Vec<NewEvent>) -> Self {
        Batch {
            events,
            expected: Vec::new(),
        }
    }

    /// Adds an expected version for `stream`.
    pub fn expect(mut self, stream: impl Into<String>, version: ExpectedVersion) -> Self {
        self.expected.push((stream.into(), version));
        self
    }

    /// Checks every event and that each expectation names a stream of the batch.
    pub fn validate(&self, limits: &Limits) -> Result<(), AppendError> {
        for (i, e) in self.events.iter().enumerate() {
            check_event(e, i, limits)?;
        }
        for (stream, _) in &self.expected {
            if !self.events.iter().any(|e| &e.stream == stream) {
                return Err(AppendError::InvalidArgument(format!(
                    "an expected version is given for stream {stream:?}, which has no event in the batch"
                )));
            }
        }
        Ok(())
    }

    /// The distinct streams of the batch, in first-seen order.
    pub fn streams(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for e in &self.events {
            if !out.contains(&e.stream.as_str()) {
                out.push(&e.stream);
            }
        }
        out
    }
}

/// What an event gets from the appender besides its position: time, origin and a fresh id.
#[derive(Debug)]
pub struct Stamp<'a> {
    /// Milliseconds since the Unix epoch.
    pub time: u64,
    /// The appending client.
    pub origin: &'a str,
    /// Where ids come from.
    pub ids: &'a mut IdGenerator,
}

/// The id, stream version and position an appended event was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placed {
    /// The event's new id.
    pub id: crate::id::EventId,
    /// Its version in its stream.
    pub version: u64,
    /// Its position in the log.
    pub seq: u64,
}

/// Checks `batch`'s expected versions against `versions` (absent = 0) and, if they hold, gives
/// its events ids, positions after `head` and their streams' next versions, updating both.
/// On a conflict nothing changes.
pub fn place(
    batch: &Batch,
    head: &mut u64,
    versions: &mut HashMap<String, u64>,
    ids: &mut IdGenerator,
    time: u64,
) -> Result<Vec<Placed>, ConflictError> {
    for (stream, expected) in &batch.expected {
        let actual = versions.get(stream).copied().unwrap_or(0);
        expected.check(stream, actual)?;
    }
    let mut out = Vec::with_capacity(batch.events.len());
    for e in &batch.events {
        let version = match versions.get_mut(&e.stream) {
            Some(v) => v,
            None => versions.entry(e.stream.clone()).or_insert(0),
        };
        *version += 1;
        *head += 1;
        out.push(Placed {
            id: ids.next_id(time),
            version: *version,
            seq: *head,
        });
    }
    Ok(out)
}

impl NewEvent {
    /// This event as stored once placed.
    pub fn placed<'a>(&'a self, p: &Placed, time: u64, origin: &'a str) -> EventRef<'a> {
        EventRef {
            id: p.id,
            stream: &self.stream,
            version: p.version,
            event_type: &self.event_type,
            data: &self.data,
            meta: self.meta.as_deref(),
            time,
            origin,
            seq: p.seq,
            offset: None,
        }
    }
}

/// [`place`], returning owned events.
pub fn assign(
    batch: &Batch,
    head: &mut u64,
    versions: &mut HashMap<String, u64>,
    stamp: &mut Stamp<'_>,
) -> Result<Vec<Event>, ConflictError> {
    let placed = place(batch, head, versions, stamp.ids, stamp.time)?;
    Ok(batch
        .events
        .iter()
        .zip(&placed)
        .map(|(e, p)| e.placed(p, stamp.time, stamp.origin).to_owned())
        .collect())
}
