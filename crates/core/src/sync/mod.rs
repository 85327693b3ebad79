//! The browser's sync client as a pure state machine: no I/O, no clocks, no browser types.
//!
//! The browser code (IndexedDB, `fetch`, tabs) persists what [`Client`] holds and carries its
//! messages; everything that decides what the log and the tables show lives here, so it can be
//! tested on the host and driven by a deterministic simulation (`tests/sync_sim.rs`).
//!
//! # The client log
//! Two parts:
//! - the **confirmed** log: a dense prefix of the server's log; each event's `seq` is its server
//!   offset and never changes;
//! - the **outbox**: local appends the server has not yet shown back, in local order, cut into
//!   the batches they were appended as, each with its batch number and expected versions.
//!
//! # Invariants
//! 1. `confirmed()[i]` has `seq == i + 1` and `offset == Some(i + 1)`, and equals the server's
//!    event at that offset. It only grows, by [`Client::on_pull`], in offset order; a pull that
//!    would leave a gap changes nothing.
//! 2. Outbox events have `offset == None`, are not in the confirmed log, and sit right after it:
//!    provisional `seq`s `head + 1 ..` in outbox order, provisional versions continuing each
//!    stream's confirmed version. Both move (are restamped) whenever the confirmed log grows or a
//!    batch leaves the outbox; the event id is the identity.
//! 3. A waiting batch never changes: same number, events and expectations. So every retry sends
//!    the same batch, and the server's idempotency (by `(client, batch)` and by event ids) makes a
//!    retry after a lost answer a `duplicate`, never a second copy.
//! 4. Once the server has a batch (an `accepted`/`duplicate` answer, or one of its events pulled)
//!    it is *acknowledged*: never pushed again, and it leaves the outbox event by event only as
//!    the pull brings its events into the confirmed log, so that log stays a dense prefix.
//! 5. A `rejected` answer for an unacknowledged batch takes it out of the outbox (and so out of
//!    the tables) into a [`Rejection`] kept until dismissed. An answer for an acknowledged batch
//!    is stale and ignored. If a rejected batch's events are ever pulled (an old rejection raced
//!    a retry that the server accepted), the record is retracted: the server's log wins.
//! 6. A `stale_epoch` rejection is not about the batch but about this leader: the batch stays,
//!    and the client stops pushing until it is given a newer epoch.
//! 7. Appends check expected versions against confirmed ⊕ outbox, the versions the app sees.
//!
//! # Persistence
//! [`ClientParts`] is what the browser must keep (in its `outbox`, `rejections` and `meta`
//! stores and the log); [`Client::restore`] derives the rest, so a reloaded client resends
//! exactly the batches it would have.
//!
//! # What the server cannot tell us
//! The server remembers accepted batches only. A rejected attempt of a batch whose answer is
//! late can be overtaken by a retry (or a late first attempt) that is accepted: the client then
//! shows a rejection until the pull brings the batch in and retracts it (invariant 5). And an
//! expectation counted on our own earlier batch can, if that batch is rejected, still hold on
//! the server against someone else's event at that version.
//!
//! # Tables
//! [`SyncedProjection`] keeps a projection's state at the confirmed head (the base) and shows the
//! outbox as an overlay on a copy of it; remote events fold into the base once and the overlay
//! is re-applied, never the whole log. Its [`ViewStats`] say which happened.

mod client;
pub mod outbox;
mod view;

pub use client::{
    Client, ClientParts, ClientStats, OutboxBatch, PullOutcome, PushOutcome, Rejection, SyncError,
};
pub use outbox::{
    check_push_batch, push_event_bytes, Answer, Confirmation, Outbox, Pending, Rejected,
    DEFAULT_PUSH_BYTES,
};
pub use view::{Refresh, SyncedProjection, ViewStats};
