//! Executive spin locks: `KeAcquireSpinLockRaiseToDpc` and `KeReleaseSpinLock`.
//!
//! The lock word (`KSPIN_LOCK`, pointer sized, zeroed by the driver) holds the holder thread's
//! token while held. Acquiring raises the thread to DISPATCH_LEVEL and spins (yielding the
//! host thread after a while); the verifier reports an acquisition above DISPATCH_LEVEL, a
//! recursive acquisition and a release by a thread that does not hold the lock.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use wsk_sys::{DISPATCH_LEVEL, KIRQL, KSPIN_LOCK};

use crate::irql::{self, current_irql, set_irql};
use crate::verifier::{Rule, bugcheck};

static NEXT_TOKEN: AtomicU64 = AtomicU64::new(1);

thread_local! {
    static TOKEN: usize = NEXT_TOKEN.fetch_add(1, Ordering::Relaxed) as usize;
}

/// The current host thread's token: nonzero and distinct per thread, what the emulator's spin
/// locks (these and the cancel spin lock) hold in their word while held.
pub(crate) fn token() -> usize {
    TOKEN.with(|t| *t)
}

/// Spins until `word` goes from 0 (free) to `me` (yielding the host thread after a while).
pub(crate) fn spin_until_taken(word: &AtomicUsize, me: usize) {
    let mut spins = 0u32;
    while word.compare_exchange_weak(0, me, Ordering::Acquire, Ordering::Relaxed).is_err() {
        spins += 1;
        if spins < 64 {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
}

/// The lock word as an atomic.
///
/// # Safety
/// `lock` points to a live, aligned `KSPIN_LOCK` used only through these routines.
unsafe fn word<'a>(lock: *mut KSPIN_LOCK) -> &'a AtomicUsize {
    // SAFETY: `KSPIN_LOCK` is a `usize`, with the layout and alignment of `AtomicUsize`
    // (caller: live and aligned).
    unsafe { AtomicUsize::from_ptr(lock) }
}

/// `KeAcquireSpinLockRaiseToDpc`. IRQL <= DISPATCH_LEVEL; returns the previous IRQL.
///
/// # Safety
/// `SpinLock` must point to an initialized (zeroed) spin lock in nonpaged memory.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn KeAcquireSpinLockRaiseToDpc(SpinLock: *mut KSPIN_LOCK) -> KIRQL {
    irql::check_max("KeAcquireSpinLockRaiseToDpc", DISPATCH_LEVEL);
    let previous = set_irql(current_irql().max(DISPATCH_LEVEL));
    // SAFETY: the caller's contract.
    let word = unsafe { word(SpinLock) };
    let me = token();
    if word.load(Ordering::Acquire) == me {
        bugcheck(Rule::SpinLockRecursion, format!("KeAcquireSpinLockRaiseToDpc: lock {SpinLock:p} already held"));
        return previous;
    }
    spin_until_taken(word, me);
    previous
}

/// `KeReleaseSpinLock`: releases the lock and lowers the IRQL to `NewIrql`. IRQL ==
/// DISPATCH_LEVEL.
///
/// # Safety
/// `SpinLock` must point to a spin lock the current thread holds.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn KeReleaseSpinLock(SpinLock: *mut KSPIN_LOCK, NewIrql: KIRQL) {
    // SAFETY: the caller's contract.
    let word = unsafe { word(SpinLock) };
    if word.compare_exchange(token(), 0, Ordering::Release, Ordering::Relaxed).is_err() {
        bugcheck(Rule::SpinLockNotOwned, format!("KeReleaseSpinLock: lock {SpinLock:p} not held by this thread"));
        return;
    }
    set_irql(NewIrql);
}
