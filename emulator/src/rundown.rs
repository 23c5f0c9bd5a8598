//! Rundown protection: `ExInitializeRundownProtection`, `ExReInitializeRundownProtection`,
//! `ExAcquireRundownProtection`, `ExReleaseRundownProtection`,
//! `ExWaitForRundownProtectionRelease`, `ExRundownCompleted`.
//!
//! The `EX_RUNDOWN_REF` word is used in place, atomically, with the kernel's encoding: bit 0
//! (`EX_RUNDOWN_ACTIVE`) is set once rundown has started, and references count in units of 2.
//! The waiter sleeps on the dispatcher's condition variable; a release that drops the last
//! reference of an active rundown wakes it. (The real kernel stores a pointer to the waiter's
//! wait block in the word while waiting; the emulator keeps the count there instead.)

use std::sync::atomic::{AtomicUsize, Ordering};

use wsk_sys::{APC_LEVEL, BOOLEAN, DISPATCH_LEVEL, EX_RUNDOWN_REF, FALSE, TRUE};

use crate::event;
use crate::irql;
use crate::verifier::{Rule, bugcheck};

/// `EX_RUNDOWN_ACTIVE`.
const ACTIVE: usize = 1;
/// `EX_RUNDOWN_COUNT_INC`.
const INCREMENT: usize = 2;

/// The rundown word.
///
/// # Safety
/// `run_ref` must point to a live `EX_RUNDOWN_REF` that stays live while the reference is used.
unsafe fn word<'a>(run_ref: *mut EX_RUNDOWN_REF) -> &'a AtomicUsize {
    // SAFETY: the reference is live (caller's contract); only a place is computed.
    let field = unsafe { &raw mut (*run_ref).Count };
    // SAFETY: `Count` is an aligned pointer-sized word (caller's contract), accessed only
    // atomically.
    unsafe { AtomicUsize::from_ptr(field) }
}

/// `ExInitializeRundownProtection`. Any IRQL.
///
/// # Safety
/// `RunRef` must point to writable, non-paged memory for an `EX_RUNDOWN_REF`.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn ExInitializeRundownProtection(RunRef: *mut EX_RUNDOWN_REF) {
    // SAFETY: forwarded contract.
    unsafe { word(RunRef) }.store(0, Ordering::Release);
}

/// `ExReInitializeRundownProtection`: makes a run-down reference usable again.
/// IRQL <= DISPATCH_LEVEL.
///
/// # Safety
/// `RunRef` must be a run-down `EX_RUNDOWN_REF` with no waiter.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn ExReInitializeRundownProtection(RunRef: *mut EX_RUNDOWN_REF) {
    irql::check_max("ExReInitializeRundownProtection", DISPATCH_LEVEL);
    // SAFETY: forwarded contract.
    unsafe { word(RunRef) }.store(0, Ordering::Release);
}

/// `ExAcquireRundownProtection`: takes a reference unless rundown has started.
/// IRQL <= DISPATCH_LEVEL.
///
/// # Safety
/// `RunRef` must be an initialized `EX_RUNDOWN_REF`.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn ExAcquireRundownProtection(RunRef: *mut EX_RUNDOWN_REF) -> BOOLEAN {
    irql::check_max("ExAcquireRundownProtection", DISPATCH_LEVEL);
    // SAFETY: forwarded contract.
    let word = unsafe { word(RunRef) };
    let acquired = word
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |value| {
            (value & ACTIVE == 0).then(|| value.checked_add(INCREMENT)).flatten()
        })
        .is_ok();
    if acquired { TRUE } else { FALSE }
}

/// `ExReleaseRundownProtection`: drops a reference, waking the rundown waiter on the last.
/// IRQL <= DISPATCH_LEVEL.
///
/// # Safety
/// `RunRef` must be an initialized `EX_RUNDOWN_REF` the caller holds a reference on.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn ExReleaseRundownProtection(RunRef: *mut EX_RUNDOWN_REF) {
    irql::check_max("ExReleaseRundownProtection", DISPATCH_LEVEL);
    // SAFETY: forwarded contract.
    let word = unsafe { word(RunRef) };
    match word.fetch_update(Ordering::AcqRel, Ordering::Acquire, |value| value.checked_sub(INCREMENT)) {
        Ok(previous) => {
            if previous - INCREMENT == ACTIVE {
                event::notify_changed();
            }
        }
        Err(_) => bugcheck(
            Rule::RundownReleaseWithoutAcquire,
            format!("ExReleaseRundownProtection({RunRef:p}) with no reference held"),
        ),
    }
}

/// `ExWaitForRundownProtectionRelease`: starts rundown (later acquires fail) and waits until
/// every reference is released. IRQL <= APC_LEVEL.
///
/// # Safety
/// `RunRef` must be an initialized `EX_RUNDOWN_REF`.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn ExWaitForRundownProtectionRelease(RunRef: *mut EX_RUNDOWN_REF) {
    irql::check_max("ExWaitForRundownProtectionRelease", APC_LEVEL);
    // SAFETY: forwarded contract.
    let word = unsafe { word(RunRef) };
    word.fetch_or(ACTIVE, Ordering::AcqRel);
    event::wait_for_condition(|| word.load(Ordering::Acquire) == ACTIVE, None);
}

/// `ExRundownCompleted`: marks rundown complete (acquires keep failing until reinitialized).
/// IRQL <= DISPATCH_LEVEL.
///
/// # Safety
/// `RunRef` must be a run-down `EX_RUNDOWN_REF`.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn ExRundownCompleted(RunRef: *mut EX_RUNDOWN_REF) {
    irql::check_max("ExRundownCompleted", DISPATCH_LEVEL);
    // SAFETY: forwarded contract.
    unsafe { word(RunRef) }.store(ACTIVE, Ordering::Release);
}
