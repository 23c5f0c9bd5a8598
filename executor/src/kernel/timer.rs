//! `KTIMER` + `KDPC` as the platform's one-shot timer.

use core::ffi::c_void;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use core::time::Duration;

use wsk_sys::{
    KDPC, KTIMER, KeCancelTimer, KeInitializeDpc, KeInitializeTimerEx, KeSetTimerEx, LARGE_INTEGER, NotificationTimer,
};

use crate::platform::TimerCallback;

static LIVE_TIMERS: AtomicUsize = AtomicUsize::new(0);

/// Backend timers initialized and not yet dropped, across all executors. After every
/// executor shut down this is zero. Any IRQL.
pub fn live_timers() -> usize {
    LIVE_TIMERS.load(Ordering::Acquire)
}

/// A timer and the DPC its expiry queues, plus what the DPC calls.
#[repr(C)]
pub struct Timer {
    timer: KTIMER,
    dpc: KDPC,
    callback: TimerCallback,
    context: NonNull<()>,
    /// Set by the DPC before it calls back, cleared by `arm`. Wine's `KeCancelTimer` returns
    /// TRUE for a timer that already expired and ran its DPC (it reports "was set", not "was
    /// still queued"); `cancel` reads this flag after it, so that it reports TRUE only if the
    /// DPC did not run, which is what Windows' TRUE means.
    fired: AtomicBool,
}

// SAFETY: KTIMER and KDPC are made to be used from any processor; the callback and context
// are written before the timer is armed and only read by the DPC.
unsafe impl Send for Timer {}
// SAFETY: as above.
unsafe impl Sync for Timer {}

/// The DPC routine: calls the timer's callback. DISPATCH_LEVEL.
unsafe extern "system" fn dpc_routine(_dpc: *mut KDPC, context: *mut c_void, _arg1: *mut c_void, _arg2: *mut c_void) {
    let timer = context.cast::<Timer>();
    // SAFETY: `context` is the `Timer` that `init` gave `KeInitializeDpc`; it is alive while
    // armed.
    let fired = unsafe { &(*timer).fired };
    fired.store(true, Ordering::Release);
    // SAFETY: as above; the callback fields were written before arming.
    let callback = unsafe { (*timer).callback };
    // SAFETY: as above.
    let ctx = unsafe { (*timer).context };
    // SAFETY: the contract of `Platform::timer_init`: sound to call from the expiry.
    unsafe { callback(ctx) };
}

/// Converts a duration to a relative `KeSetTimerEx` due time (negative 100 ns units),
/// rounding up.
pub(super) fn relative_due_time(after: Duration) -> LARGE_INTEGER {
    let ticks = after.as_nanos().div_ceil(100);
    let ticks = i64::try_from(ticks).unwrap_or(i64::MAX);
    -ticks
}

/// The `KTIMER` inside `timer`.
fn ktimer(timer: *mut Timer) -> *mut KTIMER {
    // `timer` is the first field of the `#[repr(C)]` struct.
    timer.cast()
}

/// The `KDPC` inside `timer`.
fn kdpc(timer: *mut Timer) -> *mut KDPC {
    timer.wrapping_byte_add(core::mem::offset_of!(Timer, dpc)).cast()
}

/// # Safety
///
/// `timer` is valid for writes, nonpaged, and does not move until `drop`.
pub(super) unsafe fn init(timer: *mut Timer, callback: TimerCallback, context: NonNull<()>) {
    // SAFETY: valid for writes (caller).
    let callback_field = unsafe { ptr::addr_of_mut!((*timer).callback) };
    // SAFETY: as above.
    unsafe { callback_field.write(callback) };
    // SAFETY: as above.
    let context_field = unsafe { ptr::addr_of_mut!((*timer).context) };
    // SAFETY: as above.
    unsafe { context_field.write(context) };
    // SAFETY: as above; a notification timer never re-arms itself.
    unsafe { KeInitializeTimerEx(ktimer(timer), NotificationTimer) };
    // SAFETY: as above; the DPC's context is the `Timer`, which outlives every DPC run.
    unsafe { KeInitializeDpc(kdpc(timer), dpc_routine, timer.cast()) };
    LIVE_TIMERS.fetch_add(1, Ordering::Relaxed);
}

/// # Safety
///
/// `timer` was initialized and is not armed.
pub(super) unsafe fn arm(timer: *const Timer, after: Duration) {
    // SAFETY: initialized (caller); not armed, so the DPC cannot be running.
    unsafe { (*timer).fired.store(false, Ordering::Release) };
    let timer = timer.cast_mut();
    // SAFETY: initialized (caller); one-shot (period 0) with its DPC.
    unsafe { KeSetTimerEx(ktimer(timer), relative_due_time(after), 0, kdpc(timer)) };
}

/// Disarms the timer; `true` only if its DPC has not run and will not run.
///
/// `KeCancelTimer`'s TRUE means, on Windows, that the timer was still in the timer queue, so
/// its DPC was never queued. Wine's returns TRUE for any timer set since it was last
/// cancelled, expired or not, so TRUE alone would release the DPC's reference a second time
/// after the DPC released it. Wine's `KeCancelTimer` first cancels a DPC callback that has not
/// started and waits for one that is running; after it returns, `fired` (set by the DPC
/// before it calls back) tells whether the DPC ran. On Windows `fired` is never set when the
/// answer is TRUE, so the extra check changes nothing there.
///
/// Assumption, where no documentation speaks: a kernel whose `KeCancelTimer` answered TRUE
/// for an expired timer *without* waiting for the DPC in flight could not be served by any
/// non-blocking scheme; neither Windows nor Wine is such a kernel.
///
/// # Safety
///
/// `timer` was initialized.
pub(super) unsafe fn cancel(timer: *const Timer) -> bool {
    // SAFETY: initialized (caller).
    let dequeued = unsafe { KeCancelTimer(ktimer(timer.cast_mut())) } != 0;
    // SAFETY: initialized (caller); read after KeCancelTimer returned: the DPC is not running.
    dequeued && !unsafe { &(*timer).fired }.load(Ordering::Acquire)
}

/// # Safety
///
/// `timer` was initialized and is no longer armed.
pub(super) unsafe fn drop(_timer: *mut Timer) {
    LIVE_TIMERS.fetch_sub(1, Ordering::Release);
}
