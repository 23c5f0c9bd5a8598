//! Stand-ins for the timer and DPC routines the operation slots' deadlines use
//! (`KeInitializeTimerEx`, `KeInitializeDpc`, `KeSetTimerEx`, `KeCancelTimer`), for the unit
//! test binary only (`#[no_mangle]`, as [`super::kernel`]'s). Time does not pass by itself:
//! the test expires a timer ([`expire`]), which queues its DPC, and runs the queued DPCs
//! ([`run_dpcs`]) when it chooses, so every interleaving of expiry, DPC, completion and
//! cancel can be played in order. Per test thread, so tests do not see each other's timers.
//!
//! `KeCancelTimer` answers as Windows' does (TRUE: the timer was still set, its DPC never
//! queued; a queued DPC stays queued), or, after [`wine_cancel`], as Wine's does (TRUE for
//! any timer set since it was last cancelled, expired or not; a queued DPC is removed).

#![allow(non_snake_case, reason = "the kernel's routine and parameter names")]

extern crate std;

use core::cell::{Cell, RefCell};
use core::ptr;
use std::vec::Vec;

use wsk_sys::{BOOLEAN, KDEFERRED_ROUTINE, KDPC, KTIMER, LARGE_INTEGER, LONG, PVOID, TIMER_TYPE};

/// `Header.Reserved1` bits of a stand-in timer.
const SET: u8 = 1;
/// Set since the last cancel, expired or not (Wine's `Header.Inserted`).
const INSERTED: u8 = 2;

std::thread_local! {
    /// DPCs queued by expired timers, not run yet.
    static QUEUED: RefCell<Vec<*mut KDPC>> = const { RefCell::new(Vec::new()) };
    /// The timer set last.
    static LAST_SET: Cell<*mut KTIMER> = const { Cell::new(ptr::null_mut()) };
    /// `KeCancelTimer` answers as Wine's.
    static WINE: Cell<bool> = const { Cell::new(false) };
}

/// Makes `KeCancelTimer` answer as Wine's on this thread.
pub(crate) fn wine_cancel() {
    WINE.set(true);
}

/// The timer set last on this thread.
pub(crate) fn last_set() -> *mut KTIMER {
    LAST_SET.get()
}

/// Whether `timer` is set (not expired, not cancelled).
///
/// # Safety
/// `timer` is an initialized, live timer.
pub(crate) unsafe fn is_set(timer: *mut KTIMER) -> bool {
    // SAFETY: a live timer (caller).
    unsafe { (*timer).Header.Reserved1 & SET != 0 }
}

/// Expires `timer`: it is no longer set, and its DPC is queued.
///
/// # Safety
/// `timer` is an initialized, live timer that is set.
pub(crate) unsafe fn expire(timer: *mut KTIMER) {
    // SAFETY: a live timer (caller).
    let timer = unsafe { &mut *timer };
    assert!(timer.Header.Reserved1 & SET != 0, "only a set timer expires");
    timer.Header.Reserved1 &= !SET;
    let dpc = timer.Dpc;
    QUEUED.with_borrow_mut(|queued| queued.push(dpc));
}

/// How many DPCs are queued.
pub(crate) fn queued_dpcs() -> usize {
    QUEUED.with_borrow(Vec::len)
}

/// Runs the queued DPCs, in order, as the kernel does at DISPATCH_LEVEL.
pub(crate) fn run_dpcs() {
    while let Some(dpc) = QUEUED.with_borrow_mut(|queued| (!queued.is_empty()).then(|| queued.remove(0))) {
        // SAFETY: a queued DPC is live: the code under test frees no memory holding a set
        // timer or a queued DPC (what these tests check).
        let dpc_ref = unsafe { &*dpc };
        let (routine, context) = (dpc_ref.DeferredRoutine, dpc_ref.DeferredContext);
        let routine = routine.expect("an initialized DPC");
        // SAFETY: the routine and context its owner gave `KeInitializeDpc`.
        unsafe { routine(dpc, context, ptr::null_mut(), ptr::null_mut()) };
    }
}

/// `KeInitializeTimerEx`: not set.
///
/// # Safety
/// `Timer` is writable memory for a `KTIMER`.
#[unsafe(no_mangle)]
unsafe extern "system" fn KeInitializeTimerEx(Timer: *mut KTIMER, _Type: TIMER_TYPE) {
    // SAFETY: writable (caller); every field is plain data, zero is a valid image.
    unsafe { ptr::write_bytes(Timer, 0, 1) };
}

/// `KeInitializeDpc`.
///
/// # Safety
/// `Dpc` is writable memory for a `KDPC`.
#[unsafe(no_mangle)]
unsafe extern "system" fn KeInitializeDpc(Dpc: *mut KDPC, DeferredRoutine: KDEFERRED_ROUTINE, DeferredContext: PVOID) {
    // SAFETY: writable (caller); every field is plain data or a nullable pointer.
    unsafe { ptr::write_bytes(Dpc, 0, 1) };
    // SAFETY: as above.
    let dpc = unsafe { &mut *Dpc };
    dpc.DeferredRoutine = Some(DeferredRoutine);
    dpc.DeferredContext = DeferredContext;
}

/// `KeSetTimerEx`: set (until [`expire`] or a cancel); returns whether it was set.
///
/// # Safety
/// `Timer` is an initialized timer, `Dpc` an initialized DPC.
#[unsafe(no_mangle)]
unsafe extern "system" fn KeSetTimerEx(
    Timer: *mut KTIMER,
    _DueTime: LARGE_INTEGER,
    _Period: LONG,
    Dpc: *mut KDPC,
) -> BOOLEAN {
    // SAFETY: a live timer (caller).
    let timer = unsafe { &mut *Timer };
    let was_set = timer.Header.Reserved1 & SET != 0;
    timer.Header.Reserved1 |= SET | INSERTED;
    timer.Dpc = Dpc;
    LAST_SET.set(Timer);
    BOOLEAN::from(was_set)
}

/// `KeCancelTimer` (see the module documentation for its two answers).
///
/// # Safety
/// `Timer` is an initialized timer.
#[unsafe(no_mangle)]
unsafe extern "system" fn KeCancelTimer(Timer: *mut KTIMER) -> BOOLEAN {
    // SAFETY: a live timer (caller).
    let timer = unsafe { &mut *Timer };
    let flags = timer.Header.Reserved1;
    timer.Header.Reserved1 = 0;
    if !WINE.get() {
        return BOOLEAN::from(flags & SET != 0);
    }
    let dpc = timer.Dpc;
    QUEUED.with_borrow_mut(|queued| queued.retain(|&queued| queued != dpc));
    BOOLEAN::from(flags & INSERTED != 0)
}
