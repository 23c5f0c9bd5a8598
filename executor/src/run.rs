//! One run of the work item: poll tasks within the budget, cancel everything at shutdown,
//! then either re-queue or clear the queued flag (see [`crate::run_state`]).
//!
//! Runs happen one at a time: a run starts only after the `request_run` that a
//! [`Notify::Queue`](crate::run_state::Notify::Queue) allowed, and the next `Queue` can be
//! given only after this run's [`Finish::Idle`] (a release) or by this run itself. So the run
//! queue's consumer end and [`Local`] are touched by one thread at a time, each run
//! happening-after the previous one.

use core::ptr::NonNull;

/// Polls between two reads of the clock for the time budget.
const CLOCK_EVERY: u32 = 16;

use crate::platform::Platform;
use crate::run_state::Finish;
use crate::scheduler::{Local, Shared};
use crate::task::RunCtx;

/// What a run does when it stops polling.
enum Exit {
    /// Budget spent with work left: queue the work item again, keeping QUEUED and the unit.
    Requeue,
    /// Nothing left: QUEUED cleared; release the run's unit.
    Idle,
}

/// The work item's body. PASSIVE_LEVEL.
///
/// Returns the shutdown waiter's event when this run released the executor's last unit: the
/// caller sets it as its last act (see [`crate::platform::run`]).
///
/// # Safety
///
/// `context` is the `Shared<P>` that requested this run, and this is the one run it asked for.
pub(crate) unsafe fn run<P: Platform>(context: NonNull<()>) -> Option<NonNull<P::Event>> {
    debug_assert!(P::can_block(), "the executor runs at PASSIVE_LEVEL only");
    let this = context.cast::<Shared<P>>();
    // SAFETY: the run's unit keeps the executor alive until `release_unit`.
    let shared = unsafe { this.as_ref() };
    let config = shared.config;
    let start = P::now_nanos();
    let mut polls: u32 = 0;
    let mut after_high = false;
    let exit = loop {
        shared.run_state.begin_pass();
        let exhausted = shared.local.with_mut(|local| {
            // SAFETY: this run is the only one (see the module docs).
            let local = unsafe { &mut *local };
            if !local.shutdown_seen && shared.is_shutting_down() {
                local.shutdown_seen = true;
                // SAFETY: we are the work item.
                unsafe { cancel_all(local) };
            }
            loop {
                // SAFETY: we are the single consumer.
                let Some(task) = (unsafe { shared.pop(&mut after_high) }) else {
                    return false;
                };
                let mut ctx = RunCtx {
                    owned: &mut local.owned,
                    shutting_down: local.shutdown_seen,
                    ready_per_poll: config.ready_per_poll,
                };
                // SAFETY: popped from the run queue with the queue's reference.
                let vtable = unsafe { task.as_ref() }.vtable;
                // SAFETY: as above; the vtable was made for this task's type.
                unsafe { (vtable.run)(task, &mut ctx) };
                polls = polls.saturating_add(1);
                // The clock is read after the first poll and then every CLOCK_EVERY polls: reading it
                // costs more than a poll on some platforms, and the budget needs no finer grain.
                if polls >= config.max_polls
                    || ((polls == 1 || polls.is_multiple_of(CLOCK_EVERY))
                        && P::now_nanos().wrapping_sub(start) >= config.max_run_nanos)
                {
                    return true;
                }
            }
        });
        // SAFETY: we are the single consumer.
        if exhausted && unsafe { shared.has_ready() } {
            break Exit::Requeue;
        }
        if shared.run_state.finish() == Finish::Idle {
            break Exit::Idle;
        }
        // `Finish::Notified`: something was pushed after the pass began.
        if exhausted {
            break Exit::Requeue;
        }
    };
    match exit {
        Exit::Requeue => {
            let platform = NonNull::from(&shared.platform);
            // SAFETY: QUEUED is still ours and the previous request has started (this run);
            // the run's unit passes to the next run.
            unsafe { P::request_run(platform, context) };
            None
        }
        // SAFETY: the run's unit; nothing of the executor is touched afterwards but the
        // event, which the caller sets.
        Exit::Idle => unsafe { Shared::release_unit_deferred(this) },
    }
}

/// Cancels every task in the owned list: drops their futures here, at PASSIVE_LEVEL.
///
/// # Safety
///
/// Called by the work item.
unsafe fn cancel_all(local: &mut Local) {
    // SAFETY: we are the work item.
    while let Some(task) = unsafe { local.owned.pop_front() } {
        let mut ctx = RunCtx { owned: &mut local.owned, shutting_down: true, ready_per_poll: 0 };
        // SAFETY: taken from the owned list with its reference.
        let vtable = unsafe { task.as_ref() }.vtable;
        // SAFETY: as above; the vtable matches the task.
        unsafe { (vtable.shutdown)(task, &mut ctx) };
    }
    debug_assert_eq!(local.owned.len(), 0);
}
