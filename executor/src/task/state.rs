//! The task state word: lifecycle bits, join-handle bits and the reference count.
//!
//! ```text
//!   bit 0  SCHEDULED      the task must be polled (again); whoever set it owns the push
//!   bit 1  RUNNING        the work item polls or cancels it; only the work item sets it
//!   bit 2  COMPLETE       the future is gone; the stage holds the output or is consumed
//!   bit 3  CANCELLED      abort() or shutdown asked for cancellation
//!   bit 4  JOIN_INTEREST  the JoinHandle is alive
//!   bit 5  JOIN_WAKER     the join waker slot is published to the work item
//!   bits 6.. references   each Waker, the JoinHandle, the run queue entry, the owned list
//! ```
//!
//! Every transition is one compare-and-swap (or one RMW) on this word, so a wake, an abort and
//! the work item always agree on who pushes the task and who drops its future.

use crate::loom::{AtomicUsize, Ordering::AcqRel, Ordering::Acquire, Ordering::Relaxed};

const SCHEDULED: usize = 1 << 0;
const RUNNING: usize = 1 << 1;
const COMPLETE: usize = 1 << 2;
const CANCELLED: usize = 1 << 3;
const JOIN_INTEREST: usize = 1 << 4;
const JOIN_WAKER: usize = 1 << 5;
const REF_SHIFT: usize = 6;
const REF_ONE: usize = 1 << REF_SHIFT;
const REF_MASK: usize = !(REF_ONE - 1);
/// Beyond this many references something leaks wakers in a loop; stop before wrapping.
const REF_LIMIT: usize = (usize::MAX >> REF_SHIFT) / 2;

/// A new task: scheduled, join handle alive; references held by the owned list, the run queue
/// and the join handle.
const INITIAL: usize = SCHEDULED | JOIN_INTEREST | (3 * REF_ONE);

/// The atomic state word of one task.
pub(crate) struct State {
    val: AtomicUsize,
}

/// A copy of the state word at one point in time.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Snapshot(usize);

impl core::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Snapshot")
            .field("scheduled", &self.is_scheduled())
            .field("running", &self.is_running())
            .field("complete", &self.is_complete())
            .field("cancelled", &self.is_cancelled())
            .field("join_interest", &self.is_join_interested())
            .field("join_waker", &self.is_join_waker_set())
            .field("refs", &self.ref_count())
            .finish()
    }
}

impl Snapshot {
    pub(crate) fn is_scheduled(self) -> bool {
        self.0 & SCHEDULED != 0
    }
    pub(crate) fn is_running(self) -> bool {
        self.0 & RUNNING != 0
    }
    pub(crate) fn is_complete(self) -> bool {
        self.0 & COMPLETE != 0
    }
    pub(crate) fn is_cancelled(self) -> bool {
        self.0 & CANCELLED != 0
    }
    pub(crate) fn is_join_interested(self) -> bool {
        self.0 & JOIN_INTEREST != 0
    }
    pub(crate) fn is_join_waker_set(self) -> bool {
        self.0 & JOIN_WAKER != 0
    }
    pub(crate) fn ref_count(self) -> usize {
        (self.0 & REF_MASK) >> REF_SHIFT
    }
    fn is_idle(self) -> bool {
        self.0 & (SCHEDULED | RUNNING | COMPLETE) == 0
    }
}

/// Result of [`State::transition_to_running`].
#[must_use]
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ToRunning {
    /// RUNNING is now set; poll the task, or cancel it when `cancelled`.
    Run { cancelled: bool },
    /// The task completed while queued (cancelled at shutdown): drop the queue's reference.
    AlreadyComplete,
}

/// Result of [`State::transition_to_idle`].
#[must_use]
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ToIdle {
    /// RUNNING cleared and the queue's reference dropped; nothing else to do.
    Idle,
    /// Woken while running: RUNNING cleared, SCHEDULED kept; push the task again, handing the
    /// queue's reference to the new entry.
    Reschedule,
    /// Cancelled while running: RUNNING kept; cancel the task now.
    Cancel,
}

/// Result of the wake and abort transitions.
#[must_use]
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ToNotified {
    /// Nothing to do (for `wake` by value: the waker's reference was dropped, not the last).
    DoNothing,
    /// SCHEDULED is now set and the caller holds a new reference for the run queue: push it.
    Submit,
    /// The waker's reference was the last one: free the task.
    Dealloc,
}

/// Result of [`State::transition_to_join_handle_dropped`].
#[must_use]
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct JoinDropped {
    /// The task completed: the join handle drops the output.
    pub(crate) drop_output: bool,
    /// The join handle owns the waker slot: it drops the waker.
    pub(crate) drop_waker: bool,
}

impl State {
    /// The state of a newly spawned task.
    pub(crate) fn new() -> Self {
        Self { val: AtomicUsize::new(INITIAL) }
    }

    /// The current state.
    pub(crate) fn load(&self) -> Snapshot {
        Snapshot(self.val.load(Acquire))
    }

    /// Applies `f` in a compare-and-swap loop. `f` returns the action and, if the word must
    /// change, its new value. A read-only outcome still writes the word back unchanged so
    /// that every transition is a read-modify-write: a wake therefore happens-before the poll
    /// it leads to even when it found the task already scheduled.
    fn update<R>(&self, mut f: impl FnMut(Snapshot) -> (R, Option<Snapshot>)) -> R {
        let mut cur = self.val.load(Acquire);
        loop {
            let (action, next) = f(Snapshot(cur));
            let next = next.map_or(cur, |s| s.0);
            match self.val.compare_exchange_weak(cur, next, AcqRel, Acquire) {
                Ok(_) => return action,
                Err(actual) => cur = actual,
            }
        }
    }

    /// Work item, on a task it popped from the run queue (holding the queue's reference).
    pub(crate) fn transition_to_running(&self) -> ToRunning {
        self.update(|s| {
            if s.is_complete() {
                return (ToRunning::AlreadyComplete, Some(Snapshot(s.0 & !SCHEDULED)));
            }
            debug_assert!(s.is_scheduled() && !s.is_running(), "{s:?}");
            let next = Snapshot((s.0 & !SCHEDULED) | RUNNING);
            (ToRunning::Run { cancelled: s.is_cancelled() }, Some(next))
        })
    }

    /// Work item, after a poll returned `Pending`.
    pub(crate) fn transition_to_idle(&self) -> ToIdle {
        self.update(|s| {
            debug_assert!(s.is_running() && !s.is_complete(), "{s:?}");
            if s.is_cancelled() {
                (ToIdle::Cancel, None)
            } else if s.is_scheduled() {
                (ToIdle::Reschedule, Some(Snapshot(s.0 & !RUNNING)))
            } else {
                debug_assert!(s.ref_count() >= 2, "{s:?}");
                (ToIdle::Idle, Some(Snapshot((s.0 & !RUNNING) - REF_ONE)))
            }
        })
    }

    /// Work item, after storing the output (RUNNING held): RUNNING -> COMPLETE.
    pub(crate) fn transition_to_complete(&self) -> Snapshot {
        let prev = Snapshot(self.val.fetch_xor(RUNNING | COMPLETE, AcqRel));
        debug_assert!(prev.is_running() && !prev.is_complete(), "{prev:?}");
        Snapshot(prev.0 ^ (RUNNING | COMPLETE))
    }

    /// Work item at shutdown, on a task in its owned list (never running): take RUNNING and
    /// CANCELLED so the caller can cancel it. `false` if it is already complete.
    pub(crate) fn transition_to_shutdown(&self) -> bool {
        self.update(|s| {
            if s.is_complete() {
                return (false, None);
            }
            debug_assert!(!s.is_running(), "{s:?}");
            (true, Some(Snapshot(s.0 | RUNNING | CANCELLED)))
        })
    }

    /// `Waker::wake`. On `Submit` the caller keeps the waker's reference across the push
    /// (it keeps the executor alive) and drops it afterwards; otherwise it is dropped here.
    pub(crate) fn transition_to_notified_by_val(&self) -> ToNotified {
        self.update(|s| {
            if s.is_idle() {
                check_ref_limit(s);
                (ToNotified::Submit, Some(Snapshot((s.0 | SCHEDULED) + REF_ONE)))
            } else {
                debug_assert!(s.ref_count() >= 1, "{s:?}");
                let next = Snapshot((s.0 | if s.is_running() { SCHEDULED } else { 0 }) - REF_ONE);
                let action = if next.ref_count() == 0 { ToNotified::Dealloc } else { ToNotified::DoNothing };
                (action, Some(next))
            }
        })
    }

    /// `Waker::wake_by_ref`.
    pub(crate) fn transition_to_notified_by_ref(&self) -> ToNotified {
        self.update(|s| {
            if s.is_idle() {
                check_ref_limit(s);
                (ToNotified::Submit, Some(Snapshot((s.0 | SCHEDULED) + REF_ONE)))
            } else if s.is_running() {
                (ToNotified::DoNothing, Some(Snapshot(s.0 | SCHEDULED)))
            } else {
                (ToNotified::DoNothing, None)
            }
        })
    }

    /// `JoinHandle::abort`: sets CANCELLED; schedules the task if it is idle.
    pub(crate) fn transition_to_cancelled(&self) -> ToNotified {
        self.update(|s| {
            if s.is_complete() || s.is_cancelled() {
                (ToNotified::DoNothing, None)
            } else if s.is_idle() {
                check_ref_limit(s);
                let next = Snapshot((s.0 | SCHEDULED | CANCELLED) + REF_ONE);
                (ToNotified::Submit, Some(next))
            } else {
                (ToNotified::DoNothing, Some(Snapshot(s.0 | CANCELLED)))
            }
        })
    }

    /// Join handle: publish the waker it just wrote. Fails (returning the state) if the task
    /// completed meanwhile; the join handle then still owns the slot.
    pub(crate) fn set_join_waker(&self) -> Result<Snapshot, Snapshot> {
        self.update(|s| {
            debug_assert!(s.is_join_interested() && !s.is_join_waker_set(), "{s:?}");
            if s.is_complete() {
                (Err(s), None)
            } else {
                let next = Snapshot(s.0 | JOIN_WAKER);
                (Ok(next), Some(next))
            }
        })
    }

    /// Join handle: take the waker slot back to replace the waker. Fails if the task
    /// completed (the work item may be reading the slot).
    pub(crate) fn unset_join_waker(&self) -> Result<Snapshot, Snapshot> {
        self.update(|s| {
            debug_assert!(s.is_join_interested() && s.is_join_waker_set(), "{s:?}");
            if s.is_complete() {
                (Err(s), None)
            } else {
                let next = Snapshot(s.0 & !JOIN_WAKER);
                (Ok(next), Some(next))
            }
        })
    }

    /// Work item, after waking the join waker of a completed task: hand the slot back.
    pub(crate) fn unset_join_waker_after_complete(&self) -> Snapshot {
        let prev = Snapshot(self.val.fetch_and(!JOIN_WAKER, AcqRel));
        debug_assert!(prev.is_complete() && prev.is_join_waker_set(), "{prev:?}");
        Snapshot(prev.0 & !JOIN_WAKER)
    }

    /// Join handle dropped. Its reference is dropped separately.
    pub(crate) fn transition_to_join_handle_dropped(&self) -> JoinDropped {
        self.update(|s| {
            debug_assert!(s.is_join_interested(), "{s:?}");
            let mut next = s.0 & !JOIN_INTEREST;
            if !s.is_complete() {
                // Not complete: the work item will not read the slot; take it back.
                next &= !JOIN_WAKER;
            }
            let next = Snapshot(next);
            let action = JoinDropped { drop_output: s.is_complete(), drop_waker: !next.is_join_waker_set() };
            (action, Some(next))
        })
    }

    /// Adds a reference (`Waker::clone`).
    pub(crate) fn ref_inc(&self) {
        let prev = Snapshot(self.val.fetch_add(REF_ONE, Relaxed));
        check_ref_limit(prev);
    }

    /// Drops `n` references; `true` if they were the last ones and the caller must free the
    /// task.
    #[must_use]
    pub(crate) fn ref_dec(&self, n: usize) -> bool {
        let prev = Snapshot(self.val.fetch_sub(n * REF_ONE, AcqRel));
        debug_assert!(prev.ref_count() >= n, "{prev:?}");
        prev.ref_count() == n
    }
}

/// Stops a runaway reference count before it can wrap around into a use after free.
fn check_ref_limit(s: Snapshot) {
    if s.ref_count() > REF_LIMIT {
        panic!("task reference count overflow");
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn spawn_poll_complete() {
        let s = State::new();
        assert_eq!(s.transition_to_running(), ToRunning::Run { cancelled: false });
        let snap = s.transition_to_complete();
        assert!(snap.is_complete() && !snap.is_running() && snap.is_join_interested());
        assert_eq!(snap.ref_count(), 3);
        assert!(!s.ref_dec(2));
        let d = s.transition_to_join_handle_dropped();
        assert_eq!(d, JoinDropped { drop_output: true, drop_waker: true });
        assert!(s.ref_dec(1));
    }

    #[test]
    fn wake_while_running_reschedules() {
        let s = State::new();
        assert!(matches!(s.transition_to_running(), ToRunning::Run { .. }));
        assert_eq!(s.transition_to_notified_by_ref(), ToNotified::DoNothing);
        assert_eq!(s.transition_to_idle(), ToIdle::Reschedule);
        assert!(s.load().is_scheduled());
        assert!(matches!(s.transition_to_running(), ToRunning::Run { .. }));
        assert_eq!(s.transition_to_idle(), ToIdle::Idle);
        assert_eq!(s.load().ref_count(), 2);
        assert_eq!(s.transition_to_notified_by_ref(), ToNotified::Submit);
        assert_eq!(s.load().ref_count(), 3);
        assert_eq!(s.transition_to_notified_by_ref(), ToNotified::DoNothing);
    }

    #[test]
    fn wake_by_val_last_reference() {
        let s = State::new();
        assert!(matches!(s.transition_to_running(), ToRunning::Run { .. }));
        let _ = s.transition_to_complete();
        let d = s.transition_to_join_handle_dropped();
        assert!(d.drop_output);
        assert!(!s.ref_dec(2));
        // One reference left, held by a waker.
        assert_eq!(s.transition_to_notified_by_val(), ToNotified::Dealloc);
    }

    #[test]
    fn abort_idle_and_running() {
        let s = State::new();
        // Scheduled: abort only marks.
        assert_eq!(s.transition_to_cancelled(), ToNotified::DoNothing);
        assert_eq!(s.transition_to_running(), ToRunning::Run { cancelled: true });
        let s = State::new();
        assert!(matches!(s.transition_to_running(), ToRunning::Run { .. }));
        assert_eq!(s.transition_to_idle(), ToIdle::Idle);
        assert_eq!(s.transition_to_cancelled(), ToNotified::Submit);
        assert_eq!(s.transition_to_cancelled(), ToNotified::DoNothing);
        assert_eq!(s.transition_to_running(), ToRunning::Run { cancelled: true });
        assert_eq!(s.transition_to_idle(), ToIdle::Cancel);
    }

    #[test]
    fn join_waker_protocol() {
        let s = State::new();
        assert!(s.set_join_waker().is_ok());
        assert!(s.unset_join_waker().is_ok());
        assert!(s.set_join_waker().is_ok());
        assert!(matches!(s.transition_to_running(), ToRunning::Run { .. }));
        let snap = s.transition_to_complete();
        assert!(snap.is_join_waker_set());
        assert!(s.unset_join_waker().is_err());
        let snap = s.unset_join_waker_after_complete();
        assert!(!snap.is_join_waker_set());
    }

    #[test]
    fn shutdown_of_scheduled_task() {
        let s = State::new();
        assert!(s.transition_to_shutdown());
        let _ = s.transition_to_complete();
        assert!(!s.transition_to_shutdown());
        assert_eq!(s.transition_to_running(), ToRunning::AlreadyComplete);
    }
}
