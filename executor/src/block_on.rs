//! `block_on`: run a future to completion on the calling PASSIVE_LEVEL thread.

use core::future::Future;
use core::mem::MaybeUninit;
use core::pin::pin;
use core::ptr::{self, NonNull};
use core::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};

use crate::error::BlockOnError;
use crate::loom::{AtomicUsize, Ordering::AcqRel, Ordering::Relaxed};
use crate::platform::Platform;

/// Runs `future` to completion on the current thread, sleeping on an event between polls.
///
/// For PASSIVE_LEVEL code outside the executor, such as `DriverEntry` and `DriverUnload`.
/// The future is polled and dropped on this thread; it need not be `Send` or `'static`. Its
/// waker may be used from any IRQL <= DISPATCH_LEVEL and may outlive the call.
///
/// Must not be called from a task: it would block the executor's work item.
///
/// Errors: [`BlockOnError::NotPassive`] above PASSIVE_LEVEL (nothing is polled),
/// [`BlockOnError::NoMemory`] if the waker's event cannot be allocated. The future is dropped
/// in both cases.
pub fn block_on_with<P: Platform, F: Future>(future: F) -> Result<F::Output, BlockOnError> {
    if !P::can_block() {
        return Err(BlockOnError::NotPassive);
    }
    let signal = SignalRef::<P>::new().ok_or(BlockOnError::NoMemory)?;
    let waker = signal.waker();
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return Ok(output);
        }
        signal.wait();
    }
}

/// The waker's allocation: a reference count and an auto-reset event.
#[repr(C)]
struct Signal<P: Platform> {
    refs: AtomicUsize,
    event: MaybeUninit<P::Event>,
}

/// One reference to a [`Signal`].
struct SignalRef<P: Platform> {
    ptr: NonNull<Signal<P>>,
}

impl<P: Platform> Signal<P> {
    const LAYOUT: core::alloc::Layout = core::alloc::Layout::new::<Self>();
    const VTABLE: RawWakerVTable = RawWakerVTable::new(clone::<P>, wake::<P>, wake_by_ref::<P>, drop::<P>);

    fn event(ptr: NonNull<Self>) -> *mut P::Event {
        // SAFETY: in bounds of the live allocation; no reference is created.
        unsafe { ptr::addr_of_mut!((*ptr.as_ptr()).event) }.cast()
    }

    /// Signals the event. IRQL <= DISPATCH_LEVEL.
    ///
    /// # Safety
    ///
    /// The caller holds a reference.
    unsafe fn set(ptr: NonNull<Self>) {
        // SAFETY: initialized in `SignalRef::new`, alive while referenced.
        unsafe { P::event_set(Self::event(ptr)) };
    }

    /// Drops a reference, freeing the signal with the last one. IRQL <= DISPATCH_LEVEL.
    ///
    /// # Safety
    ///
    /// The caller gives up a reference and does not touch the signal afterwards.
    unsafe fn release(ptr: NonNull<Self>) {
        // SAFETY: our reference keeps it alive.
        if unsafe { ptr.as_ref() }.refs.fetch_sub(1, AcqRel) != 1 {
            return;
        }
        // SAFETY: last reference: nobody sets or waits on the event any more.
        unsafe { P::event_drop(Self::event(ptr)) };
        // SAFETY: initialized in `SignalRef::new`; dropped once.
        unsafe { ptr::drop_in_place(ptr.as_ptr()) };
        // SAFETY: allocated with this layout.
        unsafe { P::dealloc(ptr.cast(), Self::LAYOUT) };
    }
}

impl<P: Platform> SignalRef<P> {
    fn new() -> Option<Self> {
        let ptr = P::alloc(Signal::<P>::LAYOUT)?.cast::<Signal<P>>();
        let value = Signal::<P> { refs: AtomicUsize::new(1), event: MaybeUninit::uninit() };
        // SAFETY: fresh memory of this layout.
        unsafe { ptr.as_ptr().write(value) };
        // SAFETY: the event stays at this address until `release` drops it.
        unsafe { P::event_init(Signal::event(ptr)) };
        Some(Self { ptr })
    }

    /// A waker with its own reference.
    fn waker(&self) -> Waker {
        // SAFETY: we hold a reference.
        unsafe { self.ptr.as_ref() }.refs.fetch_add(1, Relaxed);
        let raw = RawWaker::new(self.ptr.as_ptr().cast_const().cast(), &Signal::<P>::VTABLE);
        // SAFETY: the vtable implements the waker contract for signal pointers.
        unsafe { Waker::from_raw(raw) }
    }

    /// Sleeps until the event is set. PASSIVE_LEVEL.
    fn wait(&self) {
        // SAFETY: we hold a reference; `block_on_with` checked the IRQL.
        unsafe { P::event_wait(Signal::event(self.ptr)) };
    }
}

impl<P: Platform> Drop for SignalRef<P> {
    fn drop(&mut self) {
        // SAFETY: our reference.
        unsafe { Signal::release(self.ptr) };
    }
}

fn signal<P: Platform>(data: *const ()) -> NonNull<Signal<P>> {
    // SAFETY: these wakers are only made from signal pointers, never null.
    unsafe { NonNull::new_unchecked(data.cast_mut().cast()) }
}

unsafe fn clone<P: Platform>(data: *const ()) -> RawWaker {
    // SAFETY: the waker being cloned holds a reference.
    unsafe { signal::<P>(data).as_ref() }.refs.fetch_add(1, Relaxed);
    RawWaker::new(data, &Signal::<P>::VTABLE)
}

unsafe fn wake<P: Platform>(data: *const ()) {
    // SAFETY: the waker's reference.
    unsafe { Signal::set(signal::<P>(data)) };
    // SAFETY: the waker's reference, given up.
    unsafe { Signal::release(signal::<P>(data)) };
}

unsafe fn wake_by_ref<P: Platform>(data: *const ()) {
    // SAFETY: the waker's reference.
    unsafe { Signal::set(signal::<P>(data)) };
}

unsafe fn drop<P: Platform>(data: *const ()) {
    // SAFETY: the waker's reference, given up.
    unsafe { Signal::release(signal::<P>(data)) };
}
