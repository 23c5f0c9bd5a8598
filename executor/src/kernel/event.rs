//! `KEVENT` as the platform's auto-reset event.

use core::cell::UnsafeCell;

use core::time::Duration;

use wsk_sys::{
    Executive, FALSE, IO_NO_INCREMENT, KEVENT, KeInitializeEvent, KeSetEvent, KeWaitForSingleObject, KernelMode,
    STATUS_SUCCESS, SynchronizationEvent,
};

/// A `SynchronizationEvent` (auto-reset) in nonpaged memory.
#[repr(transparent)]
pub struct Event {
    event: UnsafeCell<KEVENT>,
}

// SAFETY: a KEVENT is meant to be signalled and waited on from any processor; the kernel
// synchronizes every access.
unsafe impl Send for Event {}
// SAFETY: as above.
unsafe impl Sync for Event {}

pub(super) fn raw(event: *const Event) -> *mut KEVENT {
    // `Event` is a transparent wrapper of the `KEVENT` cell.
    event.cast_mut().cast()
}

/// `KeInitializeEvent(SynchronizationEvent, not signalled)`. IRQL <= DISPATCH_LEVEL.
///
/// # Safety
///
/// `event` is valid for writes, in nonpaged memory, and does not move while in use.
pub(super) unsafe fn init(event: *mut Event) {
    // SAFETY: forwarded contract.
    unsafe { KeInitializeEvent(raw(event), SynchronizationEvent, FALSE) };
}

/// `KeSetEvent(Wait = FALSE)`. IRQL <= DISPATCH_LEVEL.
///
/// # Safety
///
/// `event` was initialized.
pub(super) unsafe fn set(event: *const Event) {
    // SAFETY: forwarded contract; not followed by a wait, so any IRQL <= DISPATCH_LEVEL.
    unsafe { KeSetEvent(raw(event), IO_NO_INCREMENT, FALSE) };
}

/// `KeWaitForSingleObject(KernelMode, not alertable, no timeout)`. PASSIVE_LEVEL.
///
/// # Safety
///
/// `event` was initialized; IRQL <= APC_LEVEL.
pub(super) unsafe fn wait(event: *const Event) {
    // A kernel-mode, non-alertable wait without timeout only returns once signalled.
    // SAFETY: forwarded contract.
    let _status =
        unsafe { KeWaitForSingleObject(raw(event).cast(), Executive, KernelMode, FALSE, core::ptr::null_mut()) };
}

/// `KeWaitForSingleObject(KernelMode, not alertable)` with a relative timeout of `timeout`
/// (rounded up to the kernel's 100 ns unit). `true` if the event was signalled, `false` on
/// `STATUS_TIMEOUT`. PASSIVE_LEVEL.
///
/// # Safety
///
/// `event` was initialized; IRQL <= APC_LEVEL.
pub(super) unsafe fn wait_timeout(event: *const Event, timeout: Duration) -> bool {
    let units = timeout.as_nanos().div_ceil(100).min(i64::MAX as u128) as i64;
    // Negative: relative to now.
    let mut relative = -units;
    // A kernel-mode, non-alertable wait returns STATUS_SUCCESS when signalled and
    // STATUS_TIMEOUT otherwise.
    // SAFETY: forwarded contract; the timeout lives on this frame for the whole wait.
    let status = unsafe { KeWaitForSingleObject(raw(event).cast(), Executive, KernelMode, FALSE, &raw mut relative) };
    status == STATUS_SUCCESS
}
