//! The event envelope: what an app appends, and what the log stores and returns.

use crate::id::EventId;

/// An event as the app appends it, before the log gives it an id, version and position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// The stream (aggregate) the event belongs to.
    pub stream: String,
    /// The event's type name, e.g. `Deposited`.
    pub event_type: String,
    /// The app's payload as JSON text.
    pub data: String,
    /// Optional app metadata as JSON text.
    pub meta: Option<String>,
}

impl NewEvent {
    /// An event with `data` given as JSON text and no metadata.
    pub fn new(
        stream: impl Into<String>,
        event_type: impl Into<String>,
        data: impl Into<String>,
    ) -> Self {
        NewEvent {
            stream: stream.into(),
            event_type: event_type.into(),
            data: data.into(),
            meta: None,
        }
    }

    /// The bytes this event counts against the size limit: names, data and metadata.
    pub fn size(&self) -> usize {
        self.stream.len()
            + self.event_type.len()
            + self.data.len()
            + self.meta.as_ref().map_or(0, String::len)
    }
}

/// A stored event: the envelope every reader sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Made by the client; the idempotency key across retries.
    pub id: EventId,
    /// The stream (aggregate) the event belongs to.
    pub stream: String,
    /// The event's 1-based position in its stream.
    pub version: u64,
    /// The event's type name.
    pub event_type: String,
    /// The payload as JSON text.
    pub data: String,
    /// Optional metadata as JSON text.
    pub meta: Option<String>,
    /// Milliseconds since the Unix epoch when it was appended.
    pub time: u64,
    /// The client that appended it.
    pub origin: String,
    /// Its position in the log as this client sees it: the order tables fold in.
    pub seq: u64,
    /// Its server offset once confirmed by a sync server; `None` before (or without one).
    pub offset: Option<u64>,
}

impl Event {
    /// A borrowed view of this event.
    pub fn as_ref(&self) -> EventRef<'_> {
        EventRef {
            id: self.id,
            stream: &self.stream,
            version: self.version,
            event_type: &self.event_type,
            data: &self.data,
            meta: self.meta.as_deref(),
            time: self.time,
            origin: &self.origin,
            seq: self.seq,
            offset: self.offset,
        }
    }
}

/// A borrowed event, as decoded from a segment without copying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)] // the fields are those of `Event`
pub struct EventRef<'a> {
    pub id: EventId,
    pub stream: &'a str,
    pub version: u64,
    pub event_type: &'a str,
    pub data: &'a str,
    pub meta: Option<&'a str>,
    pub time: u64,
    pub origin: &'a str,
    pub seq: u64,
    pub offset: Option<u64>,
}

impl EventRef<'_> {
    /// An owned copy.
    pub fn to_owned(&self) -> Event {
        Event {
            id: self.id,
            stream: self.stream.to_owned(),
            version: self.version,
            event_type: self.event_type.to_owned(),
            data: self.data.to_owned(),
            meta: self.meta.map(str::to_owned),
            time: self.time,
            origin: self.origin.to_owned(),
            seq: self.seq,
            offset: self.offset,
        }
    }
}
