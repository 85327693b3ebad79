//! logfold-core: the pure-Rust heart of logfold.
//!
//! An append-only event log is the source of truth; tables are folds of it. This crate holds what
//! needs no browser: the event envelope, validation, stream versions, the segment codec that the
//! browser stores in IndexedDB, and an in-memory log with the same rules.

#![warn(missing_docs)]

pub mod append;
mod codec;
pub mod commit;
pub mod crc32;
pub mod event;
pub mod id;
pub mod json;
pub mod lz;
pub mod memory;
#[doc(hidden)]
pub mod mutants;
pub mod protocol;
pub mod segment;
pub mod sync;
pub mod table;
pub mod validate;
pub mod version;

pub use append::{assign, place, AppendError, Batch, Placed, Stamp};
pub use commit::{commit, LogStore, MemoryStore};
pub use event::{Event, EventRef, NewEvent};
pub use id::{EventId, IdGenerator};
pub use memory::MemoryLog;
pub use protocol::PROTOCOL_VERSION;
pub use segment::{Segment, SegmentError, SegmentWriter};
pub use validate::{InvalidEvent, Limits};
pub use version::{ConflictError, ExpectedVersion, SetDigest, StreamFilter};
