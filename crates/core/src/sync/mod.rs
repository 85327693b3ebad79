//! The sync rules of a client, once: a state machine with no I/O, no clocks and no browser
//! types. The browser runs [`Engine`] over IndexedDB (`src/log/sync.rs` in the `logfold`
//! crate); the simulation (`tests/sync_sim.rs`) runs the same engine over
//! [`MemoryClientStore`].
//!
//! # Words
//! - **confirmed log**: a dense prefix of the server's log; each event's `seq` is its offset.
//! - **outbox**: this client's appends the server has not shown back, as [`OutboxBatch`]es in
//!   local order, each with its batch number (with the client id, its idempotency key).
//! - **rejection**: a batch the server (or the `depends` rule) refused, kept until dismissed.
//! - **step**: one engine call (append, push answer, pull page, dismiss). It changes the
//!   engine and returns [`Writes`] for one storage transaction; if they are not written, the
//!   engine is dropped and restored from storage, so a reload can fall between any two steps.
//! - **epoch**: the sync leader's number. Leader steps carry it and storage refuses a stale
//!   one; pushes carry it and the server refuses a stale one.
//!
//! # Invariants
//! 1. The confirmed log only grows, in offset order, by pulled events or accepted ones that
//!    continue it; a page with a gap changes nothing, and a page whose event at a confirmed
//!    offset has another id is [`SyncError::Diverged`].
//! 2. Outbox events sit right after the confirmed log: provisional `seq`s and versions,
//!    restamped whenever the log grows or a batch leaves; the event id is the identity.
//! 3. A waiting batch never changes, and its push is the same bytes every time (provisional
//!    versions are not sent), so the server's idempotency makes a retry a `duplicate`.
//! 4. Once the server has a batch (an `accepted`/`duplicate` answer, or one of its events
//!    pulled) it is acknowledged: never pushed again; it leaves event by event as the pull
//!    confirms them. Batches are acknowledged one by one, never "up to a number": an earlier
//!    batch whose answer was lost is still pushed.
//! 5. A rejection takes a waiting batch out of the outbox (and the tables). A result about a
//!    batch no longer waiting is stale and ignored. If a rejected batch's events are ever
//!    pulled (a late attempt was accepted after all), the rejection is **retracted**: the
//!    record goes, the app is told, the events count as confirmed.
//! 6. `partly_known` is not a rejection: the batch is held back (and pushing stops at it)
//!    until the confirmed log reaches the server's head of that answer; its events the server
//!    has are confirmed by then, and what is left is resent as a new batch, last, without
//!    expectations. Nothing is lost or doubled.
//! 7. `stale_epoch` is about the leader, not the batch: the batch stays, pushing stops until a
//!    newer epoch. The server records an epoch from any batch that carries it, accepted or not.
//! 8. An expectation that counted events of one's own batch cannot pass once that batch is
//!    refused: the server refuses (`depends`) a batch whose expected stream an earlier refused
//!    batch of the same push touched, and the engine refuses the waiting batches that counted
//!    on a rejected one before they are pushed alone.
//! 9. Appends check what the server would refuse whole ([`check_batch`]) and expected versions
//!    against confirmed ⊕ outbox, the versions the app sees.
//!
//! # Tables
//! [`SyncedProjection`] keeps a projection's state at the confirmed head (the base) and shows
//! the outbox as an overlay on a copy of it; remote events fold into the base once and the
//! overlay is re-applied, never the whole log.

mod engine;
mod push;
mod record;
mod store;
mod view;

pub use engine::{
    ConfirmedLog, Engine, EngineStats, Known, PullOutcome, Push, PushOutcome, Stored, SyncError,
    Writes,
};
pub use push::{check_batch, push_event_bytes, DEFAULT_PUSH_BYTES};
pub use record::{BatchState, OutboxBatch, Rejection};
pub use store::{Fenced, MemoryClientStore};
pub use view::{Refresh, SyncedProjection, ViewStats};
