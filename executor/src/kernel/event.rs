//! `KEVENT` as the platform's auto-reset event.

use core::cell::UnsafeCell;

use wsk_sys::{
    Executive, FALSE, IO_NO_INCREMENT, KEVENT, KeInitializeEvent, KeSetEvent, KeWaitForSingleObject, KernelMode,
    SynchronizationEvent,
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

fn raw(event: *const Event) -> *mut KEVENT {
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
