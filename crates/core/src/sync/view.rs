//! A projection over a client's sync state: a base folded from the confirmed log, the outbox on
//! top.

use crate::event::Event;
use crate::id::EventId;
use crate::table::Projection;

use super::engine::Engine;

/// What a [`SyncedProjection::refresh`] had to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresh {
    /// Nothing changed.
    Unchanged,
    /// Only new outbox events: they were applied to the overlay as it was.
    Extended,
    /// The base moved, or outbox events moved or left: the overlay was recomputed on the base
    /// (or dropped, when the outbox is empty).
    Overlay,
    /// The confirmed log no longer extends the base: everything was folded again from scratch.
    Full,
}

/// Counters that tell an overlay from a full rebuild.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ViewStats {
    /// Times the base was thrown away and the whole confirmed log folded again.
    pub full_rebuilds: u64,
    /// Times the overlay was recomputed: a copy of the base plus the whole outbox.
    pub overlay_rebuilds: u64,
    /// Times new outbox events were applied to the overlay as it was.
    pub overlay_extends: u64,
    /// Confirmed events folded into the base.
    pub base_events: u64,
    /// Outbox events applied to overlays.
    pub overlay_events: u64,
}

/// A projection's state at the client's confirmed head (the base), and the state the app sees:
/// the base with the outbox applied on top (the overlay).
///
/// Confirmed events are folded into the base exactly once; when remote events arrive under a
/// pending outbox, only the outbox is re-applied, on a fresh copy of the base. With an empty
/// outbox there is no copy at all. (A row-level overlay copying only the rows the outbox
/// touches needs the table's internals; a copy of the state works for any projection.)
#[derive(Debug, Clone)]
pub struct SyncedProjection<P: Projection> {
    projection: P,
    base: P::State,
    /// How many confirmed events the base holds, and the id of the last one.
    base_head: usize,
    base_last: Option<EventId>,
    overlay: Option<P::State>,
    /// How many outbox events the overlay holds, as of the client's rebase count.
    overlay_len: usize,
    rebases_seen: u64,
    stats: ViewStats,
}

impl<P: Projection> SyncedProjection<P>
where
    P::State: Clone,
{
    /// A projection with nothing folded yet; call [`SyncedProjection::refresh`].
    pub fn new(projection: P) -> Self {
        let base = projection.init();
        SyncedProjection {
            projection,
            base,
            base_head: 0,
            base_last: None,
            overlay: None,
            overlay_len: 0,
            rebases_seen: 0,
            stats: ViewStats::default(),
        }
    }

    /// The state the app sees: confirmed ⊕ outbox, as of the last refresh.
    pub fn state(&self) -> &P::State {
        self.overlay.as_ref().unwrap_or(&self.base)
    }

    /// The state at the confirmed head, as of the last refresh.
    pub fn base(&self) -> &P::State {
        &self.base
    }

    /// The outbox was read again (another engine): the next refresh recomputes the overlay.
    pub fn forget_overlay(&mut self) {
        self.rebases_seen = u64::MAX;
    }

    /// The counters.
    pub fn stats(&self) -> ViewStats {
        self.stats
    }

    /// Brings the state up to the confirmed log and the engine's outbox, doing as little as it
    /// can.
    pub fn refresh(&mut self, confirmed: &[Event], client: &Engine) -> Refresh {
        let full = !self.extends_base(confirmed);
        if full {
            self.base = self.projection.init();
            self.base_head = 0;
            self.stats.full_rebuilds += 1;
        }
        let base_moved = self.fold_base(confirmed);
        let outbox_len = client.outbox_len();
        let rebased = client.rebases() != self.rebases_seen || outbox_len < self.overlay_len;
        let refresh = if full || base_moved || rebased {
            self.rebuild_overlay(client);
            if full {
                Refresh::Full
            } else {
                Refresh::Overlay
            }
        } else if outbox_len > self.overlay_len {
            self.extend_overlay(client);
            Refresh::Extended
        } else {
            Refresh::Unchanged
        };
        self.rebases_seen = client.rebases();
        self.overlay_len = outbox_len;
        refresh
    }

    /// Whether `confirmed` still begins with the events the base holds.
    fn extends_base(&self, confirmed: &[Event]) -> bool {
        match self.base_head {
            0 => true,
            n => confirmed.get(n - 1).map(|e| e.id) == self.base_last,
        }
    }

    fn fold_base(&mut self, confirmed: &[Event]) -> bool {
        let new = &confirmed[self.base_head.min(confirmed.len())..];
        for e in new {
            self.projection.apply(&mut self.base, &e.as_ref());
        }
        self.stats.base_events += new.len() as u64;
        self.base_head = confirmed.len();
        self.base_last = confirmed.last().map(|e| e.id);
        !new.is_empty()
    }

    fn rebuild_overlay(&mut self, client: &Engine) {
        if client.outbox_len() == 0 {
            self.overlay = None;
            return;
        }
        let mut overlay = self.base.clone();
        let n = self.apply_all(&mut overlay, client.outbox_events());
        self.overlay = Some(overlay);
        self.stats.overlay_rebuilds += 1;
        self.stats.overlay_events += n;
    }

    fn extend_overlay(&mut self, client: &Engine) {
        let mut overlay = match self.overlay.take() {
            Some(o) => o,
            None => self.base.clone(),
        };
        let n = self.apply_all(&mut overlay, client.outbox_events().skip(self.overlay_len));
        self.overlay = Some(overlay);
        self.stats.overlay_extends += 1;
        self.stats.overlay_events += n;
    }

    fn apply_all<'a>(&self, state: &mut P::State, events: impl Iterator<Item = &'a Event>) -> u64 {
        let mut n = 0;
        for e in events {
            self.projection.apply(state, &e.as_ref());
            n += 1;
        }
        n
    }
}
