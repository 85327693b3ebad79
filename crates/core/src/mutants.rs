//! Bugs planted on purpose, to show the simulation catches them: built only with the
//! `mutants` feature, off everywhere else (and then every check is the constant `false`).

/// A planted bug.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutant {
    /// An acknowledgement also acknowledges every earlier batch ("acked through n").
    AckThrough,
    /// Pulled events of a rejected batch do not retract its rejection.
    NoRetract,
    /// Batches that counted on a rejected one are pushed anyway.
    NoDependents,
    /// The server judges each batch of a push alone.
    ServerNoDepends,
    /// A rejection of a batch no longer waiting is applied.
    RejectStale,
    /// `partly_known` is taken as a rejection.
    PartlyKnownRejects,
    /// The outbox is not restamped after a batch leaves it.
    NoRestamp,
}

#[cfg(feature = "mutants")]
thread_local! {
    static ACTIVE: std::cell::Cell<Option<Mutant>> = const { std::cell::Cell::new(None) };
}

/// Plants `m` (or none) for this thread.
#[cfg(feature = "mutants")]
pub fn plant(m: Option<Mutant>) {
    ACTIVE.with(|a| a.set(m));
}

/// Whether `m` is planted.
#[inline]
pub fn on(m: Mutant) -> bool {
    #[cfg(feature = "mutants")]
    {
        ACTIVE.with(|a| a.get()) == Some(m)
    }
    #[cfg(not(feature = "mutants"))]
    {
        let _ = m;
        false
    }
}
