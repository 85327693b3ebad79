//! [`MemoryClientStore`]: a client's storage in memory, for simulations and tests. It keeps what
//! the browser keeps in IndexedDB, in the same encodings, and applies an engine step's
//! [`Writes`] all or nothing, so dropping an engine and restoring it from here is a reload.

use std::collections::{BTreeMap, HashMap};

use crate::event::Event;
use crate::id::EventId;

use super::engine::{ConfirmedLog, Engine, Stored, SyncError, Writes};
use super::record::{BatchState, OutboxBatch, Rejection};

/// One client's stored state: the confirmed log, the outbox and rejection records, the marks.
#[derive(Debug, Clone, Default)]
pub struct MemoryClientStore {
    client: String,
    confirmed: Vec<Event>,
    versions: HashMap<String, u64>,
    outbox: BTreeMap<u64, Vec<u8>>,
    rejections: BTreeMap<u64, String>,
    next_batch: u64,
    /// The sync leader's epoch: a leader's step carrying another is refused (fenced).
    epoch: u64,
}

/// A leader's step carried an epoch other than the stored one: nothing was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the step is from leader epoch {step}, but epoch {stored} leads now")]
pub struct Fenced {
    /// The step's epoch.
    pub step: u64,
    /// The stored one.
    pub stored: u64,
}

impl MemoryClientStore {
    /// A client with nothing stored.
    pub fn new(client: impl Into<String>) -> Self {
        MemoryClientStore {
            client: client.into(),
            next_batch: 1,
            ..Self::default()
        }
    }

    /// The confirmed log.
    pub fn confirmed(&self) -> &[Event] {
        &self.confirmed
    }

    /// The stored rejection records (JSON), oldest first.
    pub fn rejections(&self) -> impl Iterator<Item = &str> {
        self.rejections.values().map(String::as_str)
    }

    /// The stored outbox records, decoded.
    pub fn outbox(&self) -> Vec<OutboxBatch> {
        self.outbox
            .iter()
            .map(|(n, bytes)| OutboxBatch::decode(*n, bytes).expect("records decode"))
            .collect()
    }

    /// The stored leader epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Takes sync leadership: the next epoch, which fences every older leader's steps.
    pub fn claim_leadership(&mut self) -> u64 {
        self.epoch += 1;
        self.epoch
    }

    /// An engine for what is stored: what a tab does at open.
    pub fn engine(&self, max_push_bytes: usize) -> Result<Engine, SyncError> {
        let mut rejections = Vec::new();
        for json in self.rejections.values() {
            rejections.push(Rejection::ids_from_json(json).map_err(SyncError::Inconsistent)?);
        }
        Engine::restore(
            Stored {
                client: self.client.clone(),
                next_batch: self.next_batch,
                acked_through: 0,
                outbox: self.outbox(),
                rejections,
            },
            max_push_bytes,
        )
    }

    /// A fault: forgets which batches were acknowledged, as a record of the first layout
    /// would (all waiting).
    pub fn forget_acknowledged(&mut self) {
        for (n, bytes) in &mut self.outbox {
            let mut b = OutboxBatch::decode(*n, bytes).expect("records decode");
            b.state = BatchState::Waiting;
            *bytes = b.encode();
        }
    }

    /// A fault: the next batch number falls back to just above the batches held here, so
    /// numbers the server has seen are given again.
    pub fn reuse_numbers(&mut self) {
        let held = self.outbox.keys().chain(self.rejections.keys()).max();
        self.next_batch = held.map_or(1, |n| n + 1);
    }

    /// Writes a step's changes, all or nothing. A leader's step (push answers, pulls) carries
    /// its epoch and is refused if another leader took over; appends carry none.
    pub fn apply(&mut self, w: &Writes, leader: Option<u64>) -> Result<(), Fenced> {
        if let Some(step) = leader.filter(|e| *e != self.epoch) {
            return Err(Fenced {
                step,
                stored: self.epoch,
            });
        }
        for (k, e) in w.confirmed.iter().enumerate() {
            let offset = self.confirmed.len() as u64 + 1 + k as u64;
            assert_eq!(
                (e.seq, e.offset),
                (offset, Some(offset)),
                "confirmed events must continue the log densely"
            );
        }
        for e in &w.confirmed {
            self.versions.insert(e.stream.clone(), e.version);
        }
        self.confirmed.extend(w.confirmed.iter().cloned());
        for (n, bytes) in &w.outbox_put {
            self.outbox.insert(*n, bytes.clone());
        }
        for n in &w.outbox_delete {
            self.outbox.remove(n);
        }
        for (n, json) in &w.rejections_put {
            self.rejections.insert(*n, json.clone());
        }
        for n in &w.rejections_delete {
            self.rejections.remove(n);
        }
        if let Some(n) = w.next_batch {
            self.next_batch = n;
        }
        Ok(())
    }
}

impl ConfirmedLog for MemoryClientStore {
    fn head(&self) -> u64 {
        self.confirmed.len() as u64
    }

    fn version(&self, stream: &str) -> u64 {
        self.versions.get(stream).copied().unwrap_or(0)
    }

    fn id_at(&self, offset: u64) -> Option<EventId> {
        let i = usize::try_from(offset).ok()?.checked_sub(1)?;
        self.confirmed.get(i).map(|e| e.id)
    }
}
