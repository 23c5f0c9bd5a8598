//! The deadline of a timed operation: a `KTIMER` + `KDPC` (the executor's kernel timer,
//! [`wsk_executor::kernel::Timer`]) that lives in the slot, initialized at the slot's first
//! timed operation and armed once per timed operation, so a timed call allocates nothing.
//! At expiry its DPC cancels the operation's IRP; the operation then completes as any
//! cancelled one does (or with its data, if the cancel lost the race), and its owner collects
//! the result, buffer included.
//!
//! # Protocol
//!
//! ```text
//!   owner (task)                            timer DPC (DISPATCH_LEVEL)        completion routine
//!   ─────────────────────────────────────   ───────────────────────────────   ──────────────────
//!   Armed::submit_with_deadline:
//!     IRP handed to the provider
//!     still pending: refs += 1 (timer's),
//!       deadline = INIT|ARMED, timer set
//!                                           expiry: EXPIRED
//!                                           IRP in flight: IoCancelIrp ────>  COMPLETE
//!                                           ARMED cleared, wake,              (STATUS_CANCELLED,
//!                                           refs -= 1 (the last frees)         or the data)
//!   OpSlot::poll_submitted (COMPLETE seen):
//!     timed_out = EXPIRED
//!     disarm: timer_cancel() == true  -> the DPC will not run: ARMED cleared, refs -= 1
//!             timer_cancel() == false -> the DPC runs or ran: it clears ARMED
//!   OpSlot::abandon: disarm as above, then cancel as before
//!   OpSlot::arm / idle: refused / wait while ARMED (EXPIRED cleared at arm)
//! ```
//!
//! # Who touches what
//!
//! | what                      | owner                                   | timer DPC                       |
//! |---------------------------|-----------------------------------------|---------------------------------|
//! | `timer` (`KTIMER`+`KDPC`) | initializes (idle, once), sets, cancels | runs once per expiry            |
//! | `deadline` `INIT`         | sets (before the first set)             | —                               |
//! | `deadline` `ARMED`        | sets; clears when the cancel won        | clears (its last use of the IRP)|
//! | `deadline` `EXPIRED`      | reads at collection, clears at arm      | sets                            |
//! | the IRP                   | reuses it only while not `ARMED`        | `IoCancelIrp` only while `ARMED`|
//! | `refs`                    | +1 when it sets the timer; -1 if the cancel won | -1 at its end           |
//!
//! So the DPC cancels an IRP that is neither reused nor freed (while `ARMED` the slot is not
//! idle, and the timer's reference keeps it allocated): at worst one already completed, on
//! which `IoCancelIrp` only sets `Irp->Cancel` (and `IoReuseIrp` clears it at the next
//! arming). The slot is freed only by the last reference, so never while the timer is set
//! or its DPC queued or running; a DPC that drops the last reference frees the slot from
//! inside its own routine (as the executor's timers do), touching nothing afterwards.
//!
//! `KeCancelTimer` that answers TRUE for an expired timer (Wine's) is the timer wrapper's
//! concern: its `timer_cancel` says `true` only if the DPC has not run and will not run
//! (see the executor's `kernel::timer`).

use core::ptr::NonNull;
use core::time::Duration;

use wsk_executor::Kernel;
use wsk_executor::kernel::Timer;
use wsk_executor::platform::Platform;

use super::{SlotInner, release};
use crate::loom::{AtomicU32, Ordering};

/// The slot's timer was initialized (once; it is dropped with the slot).
pub(super) const INIT: u32 = 1 << 0;
/// The timer is set, or its DPC is queued or running: the timer holds a slot reference, may
/// still cancel the IRP, and the slot is not idle.
pub(super) const ARMED: u32 = 1 << 1;
/// The DPC of the current arming ran: the deadline passed.
pub(super) const EXPIRED: u32 = 1 << 2;

/// Owner, before setting the timer: `ARMED`, `EXPIRED` cleared.
pub(super) fn deadline_set(deadline: &AtomicU32) {
    deadline.store(INIT | ARMED, Ordering::Release);
}

/// DPC, first step: the deadline passed.
pub(super) fn deadline_expire(deadline: &AtomicU32) {
    deadline.fetch_or(EXPIRED, Ordering::AcqRel);
}

/// DPC after its last use of the IRP, or owner after a cancel that won: not `ARMED` any more.
pub(super) fn deadline_disarmed(deadline: &AtomicU32) {
    deadline.fetch_and(!ARMED, Ordering::AcqRel);
}

/// Owner, at arming (the slot is idle, so not `ARMED`): forgets the last expiry.
pub(super) fn deadline_reset(deadline: &AtomicU32) {
    deadline.fetch_and(!EXPIRED, Ordering::AcqRel);
}

/// Whether the timer (or its DPC) is still busy with the slot.
pub(super) fn is_armed(deadline: &AtomicU32) -> bool {
    deadline.load(Ordering::Acquire) & ARMED != 0
}

/// Whether the deadline of the current (or last collected) operation passed.
pub(super) fn is_expired(deadline: &AtomicU32) -> bool {
    deadline.load(Ordering::Acquire) & EXPIRED != 0
}

/// The slot's timer.
fn timer(inner: NonNull<SlotInner>) -> *mut Timer {
    // SAFETY: in bounds of the live slot; no reference is created (the kernel and the DPC use
    // the timer concurrently).
    let cell = unsafe { &raw const (*inner.as_ptr()).timer };
    // `UnsafeCell<MaybeUninit<Timer>>` has the layout of a `Timer`.
    cell.cast::<Timer>().cast_mut()
}

/// Sets the slot's deadline `after` from now for the operation just submitted, unless it has
/// already completed.
///
/// # Safety
/// Called by the owner right after submitting, with the slot's IRP in flight (or completed and
/// not collected); the slot is not `ARMED` (it was idle at arming).
pub(super) unsafe fn start(inner: NonNull<SlotInner>, after: Duration) {
    // SAFETY: the owner's reference keeps the slot live.
    let slot = unsafe { inner.as_ref() };
    if slot.state.load(Ordering::Acquire) & super::COMPLETE != 0 {
        return;
    }
    if slot.deadline.load(Ordering::Acquire) & INIT == 0 {
        // SAFETY: the timer stays at this address until the slot is freed, which drops it
        // (`drop_timer`); `expired` is sound to call from its expiry with the slot as context
        // (the timer's reference, taken below before each set, keeps the slot live).
        unsafe { Kernel::timer_init(timer(inner), expired, inner.cast()) };
    }
    slot.refs.fetch_add(1, Ordering::Relaxed);
    deadline_set(&slot.deadline);
    // SAFETY: initialized; not armed (not `ARMED`: the last DPC finished, or its cancel won).
    unsafe { Kernel::timer_arm(timer(inner), after) };
}

/// Disarms the slot's deadline, if set: when the cancel wins, the DPC will not run and its
/// reference is released here; otherwise the DPC runs (or ran) and does that itself.
/// Never blocks.
///
/// # Safety
/// Called by the owner, holding its reference.
pub(super) unsafe fn disarm(inner: NonNull<SlotInner>) {
    // SAFETY: the owner's reference keeps the slot live.
    let slot = unsafe { inner.as_ref() };
    if !is_armed(&slot.deadline) {
        return;
    }
    // SAFETY: `ARMED` implies `INIT`; the timer is live while the slot is.
    if unsafe { Kernel::timer_cancel(timer(inner)) } {
        deadline_disarmed(&slot.deadline);
        // SAFETY: the timer's reference, which its DPC can no longer release; the owner's
        // reference remains, so this does not free.
        unsafe { release(inner) };
    }
}

/// Releases what the timer's initialization acquired, at the slot's free.
///
/// # Safety
/// The slot is being freed (last reference): not `ARMED`, so the timer is not set and its
/// DPC not queued or running any more.
pub(super) unsafe fn drop_timer(inner: NonNull<SlotInner>) {
    // SAFETY: the slot is live until the caller frees it.
    let slot = unsafe { inner.as_ref() };
    if slot.deadline.load(Ordering::Acquire) & INIT != 0 {
        // SAFETY: initialized, not armed, DPC not running (caller).
        unsafe { Kernel::timer_drop(timer(inner)) };
    }
}

/// The timer's callback, from its DPC at DISPATCH_LEVEL: the deadline passed. Cancels the IRP
/// if it is still in flight, then gives up the timer's hold on the slot.
///
/// # Safety
/// `context` is the slot whose timer expired, kept live by the timer's reference.
unsafe fn expired(context: NonNull<()>) {
    let inner = context.cast::<SlotInner>();
    // SAFETY: the timer's reference keeps the slot live until the release below.
    let slot = unsafe { inner.as_ref() };
    deadline_expire(&slot.deadline);
    let state = slot.state.load(Ordering::Acquire);
    if state & super::SUBMITTED != 0 && state & super::COMPLETE == 0 {
        // SAFETY: while `ARMED` the IRP is neither reused (the slot is not idle) nor freed
        // (the timer's reference); IoCancelIrp is callable at DISPATCH_LEVEL, and on an IRP
        // that completed meanwhile it only sets `Irp->Cancel`.
        unsafe { wsk_sys::IoCancelIrp(slot.irp.as_ptr()) };
    }
    deadline_disarmed(&slot.deadline);
    // After clearing ARMED: an `idle` waiter that saw ARMED is woken (a spurious wake of a
    // newer operation's waiter is harmless).
    slot.waker.wake();
    // SAFETY: the timer's reference, given up; nothing is touched afterwards (it may free the
    // slot, timer and DPC included, from inside this DPC).
    unsafe { release(inner) };
}

#[cfg(all(test, loom))]
mod loom_tests {
    use loom::sync::Arc;
    use loom::sync::atomic::AtomicUsize;

    use super::*;
    use crate::loom::RaceCell;
    use crate::op::{COMPLETE, OnComplete, SUBMITTED, state_complete};

    /// The timer as the kernel keeps it: set, then either dequeued by the expiry (which runs
    /// the DPC) or by a cancel that wins (`KeCancelTimer` TRUE).
    const QUEUED: u32 = 1;
    const FIRED: u32 = 2;
    const CANCELLED: u32 = 3;

    /// What the model's slot holds: its state words, references, and the IRP as a cell the
    /// DPC reads (`IoCancelIrp`) and the owner writes (`IoReuseIrp` at the next arming).
    struct Model {
        state: AtomicU32,
        deadline: AtomicU32,
        refs: AtomicUsize,
        timer: AtomicU32,
        irp: RaceCell<u32>,
        freed: AtomicUsize,
    }

    impl Model {
        fn release(&self) {
            if self.refs.fetch_sub(1, Ordering::AcqRel) == 1 {
                // The free: exclusive access to everything, IRP included.
                self.irp.with_mut(|irp| unsafe { *irp = 0 });
                self.freed.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    /// A timed operation submitted and still pending: owner, in-flight and timer references.
    fn submitted() -> Arc<Model> {
        let model = Model {
            state: AtomicU32::new(SUBMITTED),
            deadline: AtomicU32::new(0),
            refs: AtomicUsize::new(3),
            timer: AtomicU32::new(QUEUED),
            irp: RaceCell::new(1),
            freed: AtomicUsize::new(0),
        };
        deadline_set(&model.deadline);
        Arc::new(model)
    }

    /// The expiry and DPC: runs only if the expiry dequeued the timer.
    fn dpc(m: &Model) {
        if m.timer.compare_exchange(QUEUED, FIRED, Ordering::AcqRel, Ordering::Acquire).is_err() {
            return;
        }
        deadline_expire(&m.deadline);
        let state = m.state.load(Ordering::Acquire);
        if state & SUBMITTED != 0 && state & COMPLETE == 0 {
            // IoCancelIrp reads the IRP.
            m.irp.with(|irp| assert_eq!(unsafe { *irp }, 1, "the DPC cancels the operation's own IRP"));
        }
        deadline_disarmed(&m.deadline);
        m.release();
    }

    /// The owner collects the completion, disarms, waits for the slot to be idle and re-arms
    /// it (reusing the IRP), then drops its reference.
    fn owner(m: &Model) {
        while m.state.load(Ordering::Acquire) & COMPLETE == 0 {
            loom::thread::yield_now();
        }
        m.state.store(0, Ordering::Release);
        m.release(); // the in-flight reference
        if is_armed(&m.deadline)
            && m.timer.compare_exchange(QUEUED, CANCELLED, Ordering::AcqRel, Ordering::Acquire).is_ok()
        {
            deadline_disarmed(&m.deadline);
            m.release();
        }
        while is_armed(&m.deadline) {
            loom::thread::yield_now();
        }
        // Idle: the next arming reuses the IRP.
        m.irp.with_mut(|irp| unsafe { *irp = 1 });
        m.release();
    }

    /// The DPC, the completion and the owner's collection, disarm and reuse race: the DPC
    /// never touches a reused IRP, and the slot is freed exactly once, after everyone.
    #[test]
    fn loom_deadline_expiry_vs_completion_vs_reuse() {
        loom::model(|| {
            let m = submitted();
            let (m1, m2) = (m.clone(), m.clone());
            let timer = loom::thread::spawn(move || dpc(&m1));
            let completer = loom::thread::spawn(move || {
                assert_eq!(state_complete(&m2.state), OnComplete::Wake);
            });
            owner(&m);
            timer.join().unwrap();
            completer.join().unwrap();
            assert_eq!(m.freed.load(Ordering::SeqCst), 1);
            assert_eq!(m.refs.load(Ordering::SeqCst), 0);
        });
    }

    /// The owner lets go of the slot right after collecting (the socket is dropped) while the
    /// DPC may be running: the slot is freed once, by whoever is last.
    #[test]
    fn loom_deadline_owner_drop_vs_dpc_frees_once() {
        loom::model(|| {
            let m = submitted();
            m.state.fetch_or(COMPLETE, Ordering::Release);
            let m1 = m.clone();
            let timer = loom::thread::spawn(move || dpc(&m1));
            m.state.store(0, Ordering::Release);
            m.release();
            if is_armed(&m.deadline)
                && m.timer.compare_exchange(QUEUED, CANCELLED, Ordering::AcqRel, Ordering::Acquire).is_ok()
            {
                deadline_disarmed(&m.deadline);
                m.release();
            }
            m.release(); // the owner's reference: the socket is gone
            timer.join().unwrap();
            assert_eq!(m.freed.load(Ordering::SeqCst), 1);
        });
    }
}
