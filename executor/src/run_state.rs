//! Whether the executor's work item is queued, and whether work arrived since it last looked:
//! the protocol that queues the work item at most once at a time and never strands a push.
//!
//! Two bits: QUEUED (a run has been requested and has not finished) and NOTIFIED (something
//! was pushed since the running work item last cleared it).
//!
//! ```text
//!                         notify() -> Queue
//!     ┌────────┐ ──────────────────────────────────► ┌───────────────────┐ ──┐ notify() -> AlreadyQueued
//!     │  IDLE  │  (the caller queues the work item)  │ QUEUED | NOTIFIED │   │ finish() -> Notified
//!     └────────┘                                     └───────────────────┘ ◄─┘   (another pass)
//!         ▲                                            │               ▲
//!         │                               begin_pass() │               │ notify() -> AlreadyQueued
//!         │      finish() -> Idle      ┌────────┐ ◄────┘               │
//!         └─────────────────────────── │ QUEUED │ ─────────────────────┘
//!                                      └────────┘ ──┐ begin_pass(); or the run, out of budget,
//!                                          ▲        │ queues the next run itself and keeps
//!                                          └────────┘ QUEUED (no transition)
//! ```
//!
//! * A producer pushes first, then calls [`RunState::notify`]. `Queue` means QUEUED was clear:
//!   no run is pending, and the caller queues one (it now owns that request).
//! * The run calls [`RunState::begin_pass`] (clears NOTIFIED) before it pops, and
//!   [`RunState::finish`] (QUEUED -> IDLE only if NOTIFIED is still clear) when it found
//!   nothing more to do.
//!
//! A push is never stranded: its `notify` either found QUEUED clear and queued a run, or
//! came before the running work item's `finish`, which then fails on NOTIFIED and makes
//! another pass (or the pass that was under way already saw the node). And the work item is
//! queued at most once at a time: only the `notify` that flips QUEUED from clear to set
//! queues it, and QUEUED is cleared only by the run itself, at its very end.

use crate::loom::{AtomicUsize, Ordering::AcqRel, Ordering::Acquire};

/// A run has been requested and has not finished.
const QUEUED: usize = 1 << 0;
/// Something was pushed since the run last began a pass.
const NOTIFIED: usize = 1 << 1;

/// The QUEUED/NOTIFIED word of one executor.
pub(crate) struct RunState {
    word: AtomicUsize,
}

/// What [`RunState::notify`] asks of its caller.
#[must_use]
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Notify {
    /// QUEUED was clear and is now set: the caller queues the work item.
    Queue,
    /// A run is pending or under way, and will see the push.
    AlreadyQueued,
}

/// What [`RunState::finish`] found.
#[must_use]
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Finish {
    /// QUEUED cleared: the run is over; the next `notify` queues a new one.
    Idle,
    /// Pushed since the pass began: QUEUED stays, the run makes another pass.
    Notified,
}

impl RunState {
    /// No run requested.
    pub(crate) fn new() -> Self {
        Self { word: AtomicUsize::new(0) }
    }

    /// Producer, after its push: marks work as pending and says whether to queue the work
    /// item. Any IRQL.
    pub(crate) fn notify(&self) -> Notify {
        // AcqRel: the push happens-before the pass that sees NOTIFIED (release), and a `Queue`
        // result is ordered after the run that cleared QUEUED (acquire).
        let prev = self.word.fetch_or(QUEUED | NOTIFIED, AcqRel);
        if prev & QUEUED == 0 { Notify::Queue } else { Notify::AlreadyQueued }
    }

    /// The run, before each pass over the queue: clears NOTIFIED, so a push after this point
    /// makes [`finish`](Self::finish) fail. Only the running work item calls it.
    pub(crate) fn begin_pass(&self) {
        let prev = self.word.fetch_and(!NOTIFIED, AcqRel);
        debug_assert!(prev & QUEUED != 0, "a pass outside a run");
    }

    /// The run, when a pass found nothing more to do: ends the run (QUEUED cleared) unless
    /// something was pushed since [`begin_pass`](Self::begin_pass). Only the running work
    /// item calls it.
    pub(crate) fn finish(&self) -> Finish {
        match self.word.compare_exchange(QUEUED, 0, AcqRel, Acquire) {
            Ok(_) => Finish::Idle,
            Err(actual) => {
                debug_assert_eq!(actual, QUEUED | NOTIFIED, "finish outside a run");
                Finish::Notified
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn queued_once_until_finished() {
        let s = RunState::new();
        assert_eq!(s.notify(), Notify::Queue);
        assert_eq!(s.notify(), Notify::AlreadyQueued);
        s.begin_pass();
        assert_eq!(s.finish(), Finish::Idle);
        assert_eq!(s.notify(), Notify::Queue);
    }

    #[test]
    fn notify_during_a_pass_fails_finish() {
        let s = RunState::new();
        assert_eq!(s.notify(), Notify::Queue);
        s.begin_pass();
        assert_eq!(s.notify(), Notify::AlreadyQueued);
        assert_eq!(s.finish(), Finish::Notified);
        s.begin_pass();
        assert_eq!(s.finish(), Finish::Idle);
    }
}
