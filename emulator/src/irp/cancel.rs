//! The cancel spin lock and `IoCancelIrp`.
//!
//! The cancel spin lock is one global lock that raises the IRQL to DISPATCH_LEVEL. It is
//! acquired and released by separate calls (a cancel routine releases the lock `IoCancelIrp`
//! acquired), so it is an owner word, not a host guard.

use std::cell::Cell;
use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};

use wsk_sys::{BOOLEAN, DISPATCH_LEVEL, FALSE, IRP, IoGetCurrentIrpStackLocation, IoSetCancelRoutine, KIRQL, TRUE};

use super::state::{self, Lookup};
use crate::counters::bump;
use crate::irql::{self, current_irql, set_irql};
use crate::spinlock::{spin_until_taken, token};
use crate::verifier::{Rule, bugcheck};

/// The holder's thread token, 0 when free.
static OWNER: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Recursive acquisitions (a violation) to unwind before the lock is really released.
    static RECURSION: Cell<u32> = const { Cell::new(0) };
}

/// Whether the current thread holds the cancel spin lock.
pub(crate) fn held_by_current_thread() -> bool {
    OWNER.load(Ordering::Acquire) == token()
}

/// Acquires the cancel spin lock, raising to DISPATCH_LEVEL; returns the previous IRQL.
fn acquire(routine: &str) -> KIRQL {
    irql::check_max(routine, DISPATCH_LEVEL);
    let previous = set_irql(current_irql().max(DISPATCH_LEVEL));
    let me = token();
    if OWNER.load(Ordering::Acquire) == me {
        bugcheck(Rule::SpinLockRecursion, format!("{routine}: this thread already holds the cancel spin lock"));
        RECURSION.with(|r| r.set(r.get() + 1));
        return previous;
    }
    spin_until_taken(&OWNER, me);
    previous
}

/// Releases the cancel spin lock and lowers the IRQL to `irql`.
fn release(routine: &str, irql: KIRQL) {
    if OWNER.load(Ordering::Acquire) != token() {
        bugcheck(Rule::SpinLockNotOwned, format!("{routine}: this thread does not hold the cancel spin lock"));
        return;
    }
    let recursive = RECURSION.with(|r| {
        let depth = r.get();
        r.set(depth.saturating_sub(1));
        depth > 0
    });
    if !recursive {
        OWNER.store(0, Ordering::Release);
    }
    set_irql(irql);
}

/// Checks that a callback did not return holding the cancel spin lock; releases it if so.
pub(crate) fn check_cancel_lock_released(what: &str) {
    if held_by_current_thread() {
        RECURSION.with(|r| r.set(0));
        OWNER.store(0, Ordering::Release);
        bugcheck(Rule::SpinLockHeldOnReturn, format!("{what} returned holding the cancel spin lock"));
    }
}

/// `IoAcquireCancelSpinLock`. IRQL <= DISPATCH_LEVEL; returns at DISPATCH_LEVEL.
///
/// # Safety
/// `Irql` must point to writable memory for the previous IRQL.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn IoAcquireCancelSpinLock(Irql: *mut KIRQL) {
    let previous = acquire("IoAcquireCancelSpinLock");
    // SAFETY: the caller guarantees `Irql` is writable.
    unsafe { Irql.write(previous) };
}

/// `IoReleaseCancelSpinLock`: releases the lock and returns to `Irql`. IRQL == DISPATCH_LEVEL.
///
/// # Safety
/// The caller must hold the cancel spin lock.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn IoReleaseCancelSpinLock(Irql: KIRQL) {
    release("IoReleaseCancelSpinLock", Irql);
}

/// `IoCancelIrp`: sets `Irp->Cancel` and, if a cancel routine is set, calls it with the cancel
/// spin lock held (the routine releases it); returns whether a routine was called.
/// IRQL <= DISPATCH_LEVEL.
///
/// # Safety
/// `Irp` must be a live IRP.
#[unsafe(no_mangle)]
#[expect(
    clippy::multiple_unsafe_ops_per_block,
    reason = "the cancel protocol's steps on one live IRP share one invariant (routine exchanged under the cancel spin lock)"
)]
pub unsafe extern "system" fn IoCancelIrp(Irp: *mut IRP) -> BOOLEAN {
    irql::check_max("IoCancelIrp", DISPATCH_LEVEL);
    if Irp.is_null() {
        bugcheck(Rule::IrpBadPointer, "IoCancelIrp(NULL)");
        return FALSE;
    }
    if let Lookup::Freed = state::lookup(Irp) {
        bugcheck(Rule::IrpUseAfterFree, format!("IoCancelIrp({Irp:p}) on an IRP already freed"));
        return FALSE;
    }
    bump::irps_cancelled(1);
    let previous = acquire("IoCancelIrp");
    // SAFETY: the caller guarantees a live IRP; `Cancel` is written under the cancel spin lock
    // as the real kernel does, and `IoSetCancelRoutine` exchanges the routine atomically.
    let routine = unsafe {
        (*Irp).Cancel = TRUE;
        IoSetCancelRoutine(Irp, None)
    };
    let Some(routine) = routine else {
        release("IoCancelIrp", previous);
        return FALSE;
    };
    // SAFETY: the IRP is live (its owner set a cancel routine and cannot complete it without
    // clearing the routine first, which it now cannot); the current location is read only when
    // it lies inside the IRP.
    unsafe {
        (*Irp).CancelIrql = previous;
        let device = if (*Irp).CurrentLocation >= 1 && (*Irp).CurrentLocation <= (*Irp).StackCount {
            (*IoGetCurrentIrpStackLocation(Irp)).DeviceObject
        } else {
            ptr::null_mut()
        };
        routine(device, Irp);
    }
    check_cancel_lock_released("a cancel routine");
    irql::check_restored("a cancel routine", previous);
    TRUE
}
