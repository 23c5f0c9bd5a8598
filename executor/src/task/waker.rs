//! The `Waker` of a task: a pointer to its header and one reference.
//!
//! Every function here is callable at IRQL <= DISPATCH_LEVEL on any processor, concurrently:
//! each is a few atomic operations on the state word plus, when the task must run, a
//! lock-free push onto the run queue and at most one `Platform::request_run`. None allocates,
//! blocks or takes a lock.

use core::ptr::NonNull;
use core::task::{RawWaker, RawWakerVTable, Waker};

use super::cell::Header;
use super::state::ToNotified;

static VTABLE: RawWakerVTable = RawWakerVTable::new(clone, wake, wake_by_ref, drop);

/// The task behind a waker's data pointer.
fn task(data: *const ()) -> NonNull<Header> {
    // SAFETY: wakers are only made from task pointers, which are never null.
    unsafe { NonNull::new_unchecked(data.cast_mut().cast::<Header>()) }
}

/// A waker for `task` that borrows a reference instead of owning one; wrap it in
/// `ManuallyDrop` so that dropping it does not release anything.
///
/// # Safety
///
/// The caller holds a reference to the task for as long as the waker (not its clones) lives.
pub(super) unsafe fn waker_ref(task: NonNull<Header>) -> Waker {
    let raw = RawWaker::new(task.as_ptr().cast_const().cast(), &VTABLE);
    // SAFETY: `VTABLE` implements the `RawWaker` contract for task pointers.
    unsafe { Waker::from_raw(raw) }
}

/// The task whose waker `waker` is, if it is one of this crate's task wakers (of any
/// executor); `None` for any other waker. The task is live for as long as `waker` is.
pub(crate) fn task_of(waker: &Waker) -> Option<NonNull<Header>> {
    core::ptr::eq(waker.vtable(), &VTABLE).then(|| task(waker.data()))
}

unsafe fn clone(data: *const ()) -> RawWaker {
    let task = task(data);
    // SAFETY: the waker being cloned holds (or borrows) a reference.
    unsafe { task.as_ref() }.state.ref_inc();
    RawWaker::new(data, &VTABLE)
}

unsafe fn wake(data: *const ()) {
    let task = task(data);
    // SAFETY: the waker's reference keeps the task alive.
    let header = unsafe { task.as_ref() };
    let vtable = header.vtable;
    match header.state.transition_to_notified_by_val() {
        ToNotified::DoNothing => {}
        ToNotified::Submit => {
            // SAFETY: SCHEDULED set by us with a new reference for the run queue; the waker's
            // own reference keeps the executor alive meanwhile.
            unsafe { (vtable.schedule)(task) };
            // SAFETY: the waker's reference is still ours.
            unsafe { drop(data) };
        }
        // SAFETY: that was the last reference.
        ToNotified::Dealloc => unsafe { (vtable.dealloc)(task) },
    }
}

unsafe fn wake_by_ref(data: *const ()) {
    let task = task(data);
    // SAFETY: the waker's reference keeps the task alive.
    let header = unsafe { task.as_ref() };
    match header.state.transition_to_notified_by_ref() {
        ToNotified::DoNothing | ToNotified::Dealloc => {}
        // SAFETY: SCHEDULED set by us with a new reference for the run queue; the waker's
        // reference, held by our caller, keeps the executor alive meanwhile.
        ToNotified::Submit => unsafe { (header.vtable.schedule)(task) },
    }
}

unsafe fn drop(data: *const ()) {
    let task = task(data);
    // SAFETY: the waker's reference keeps the task alive until released.
    let header = unsafe { task.as_ref() };
    let vtable = header.vtable;
    if header.state.ref_dec(1) {
        // SAFETY: that was the last reference.
        unsafe { (vtable.dealloc)(task) };
    }
}
