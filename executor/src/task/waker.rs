//! The `Waker` of a task: a pointer to its header and one reference.
//!
//! Every function here is callable at IRQL <= DISPATCH_LEVEL on any processor, concurrently:
//! each is a few atomic operations on the state word plus, when the task must run, a
//! lock-free push onto the run queue and at most one `Platform::request_run`. None allocates,
//! blocks or takes a lock.

use core::marker::PhantomData;
use core::mem::ManuallyDrop;
use core::ops::Deref;
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

/// A task's waker that borrows a reference to the task instead of owning one: making it and
/// dropping it leave the reference count alone, and it hands out only `&Waker`, so it cannot
/// be woken by value. Its clones own a reference each, as any task waker does. The work item
/// polls a task with one.
///
/// # Invariants
///
/// `waker` is a task waker (this module's `VTABLE`) for a task that stays allocated for `'a`;
/// it is never dropped, so it never gives up the reference it does not own.
pub(crate) struct WakerRef<'a> {
    waker: ManuallyDrop<Waker>,
    _task: PhantomData<&'a Header>,
}

impl<'a> WakerRef<'a> {
    /// A waker for `task`, borrowing a reference to it for `'a`. Any IRQL.
    ///
    /// The waker's data pointer is `task` itself, which reaches the whole task allocation (a
    /// pointer derived from a `&Header` would reach the header only, and the clones and wakes
    /// of the waker need the rest).
    ///
    /// # Safety
    ///
    /// `task` is a task (made by `allocate`) and the caller holds a reference to it for `'a`.
    pub(crate) unsafe fn new(task: NonNull<Header>) -> Self {
        let raw = RawWaker::new(task.as_ptr().cast_const().cast(), &VTABLE);
        // SAFETY: `VTABLE` implements the `RawWaker` contract for task pointers; the caller's
        // reference keeps the task allocated for as long as the waker (never dropped) lives.
        let waker = unsafe { Waker::from_raw(raw) };
        // INVARIANT: a task waker, alive for `'a` (caller); wrapped so it is never dropped.
        Self { waker: ManuallyDrop::new(waker), _task: PhantomData }
    }
}

impl Deref for WakerRef<'_> {
    type Target = Waker;

    fn deref(&self) -> &Waker {
        &self.waker
    }
}

/// The header of the task whose waker `waker` is, if it is one of this crate's task wakers
/// (of any executor); `None` for any other waker. Any IRQL.
pub(crate) fn task_of(waker: &Waker) -> Option<&Header> {
    if !core::ptr::eq(waker.vtable(), &raw const VTABLE) {
        return None;
    }
    // SAFETY: a task waker holds (or borrows) a reference to its task, so the task is live
    // for as long as `waker` is borrowed.
    Some(unsafe { task(waker.data()).as_ref() })
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
