//! IRP-backed operations: one reusable IRP per operation slot, a completion routine that
//! records the result and wakes the task, and cancel-on-drop that never blocks.
//!
//! # Lifecycle of a slot
//!
//! ```text
//!            arm()+submit                 completion routine
//!   IDLE ───────────────────> SUBMITTED ─────────────────────> SUBMITTED|COMPLETE
//!    ^                            │                                     │
//!    │                            │ future dropped                     │ future polls:
//!    │                            v                                     │ take result
//!    │                 SUBMITTED|ABANDONED|CANCELLING                   │
//!    │                     (IoCancelIrp runs)                          v
//!    └──── finalize (exactly once: by the completion routine, or ─── IDLE
//!          by the dropper if completion ran during IoCancelIrp)
//! ```
//!
//! # Who touches what
//!
//! | field                 | IDLE            | SUBMITTED (not COMPLETE)       | COMPLETE                 |
//! |-----------------------|-----------------|--------------------------------|--------------------------|
//! | `irp`                 | owner (arm)     | provider, then completion      | owner (reuse) / finalize |
//! | `status`, `info`      | —               | completion routine (write)     | owner or finalizer (read)|
//! | `buffer`, `args`      | owner (fill)    | provider reads through pointers| owner or finalizer (take)|
//! | `waker`               | owner           | owner registers, completion wakes | —                     |
//!
//! The `COMPLETE` bit is set with release ordering after `status`/`info` are written, and read
//! with acquire ordering before they are read.
//!
//! A slot is reference counted: one reference for its owner (a socket half) and one while an
//! IRP is in flight, so an abandoned operation's completion still finds its slot after the
//! socket is gone. The last reference frees the IRP, any buffer, and the slot.

use core::cell::UnsafeCell;
use core::ffi::c_void;
use core::future::Future;
use core::pin::Pin;
use core::ptr::NonNull;
use core::task::{Context, Poll};

use wsk_executor::AtomicWaker;
use wsk_sys::{DEVICE_OBJECT, IRP, NTSTATUS, SOCKADDR_STORAGE, STATUS_MORE_PROCESSING_REQUIRED, WSK_BUF};

use crate::buf::IoBuf;
use crate::error::{Error, Result};
use crate::loom::{AtomicU32, Ordering};
use crate::pool;
use crate::socket::shared::AnyCore;

/// An IRP is in flight (owned by the provider until `COMPLETE`).
const SUBMITTED: u32 = 1 << 0;
/// The completion routine has recorded the result.
const COMPLETE: u32 = 1 << 1;
/// The future that submitted the IRP is gone; the result is discarded.
const ABANDONED: u32 = 1 << 2;
/// The dropping future is inside `IoCancelIrp`; finalization is left to it.
const CANCELLING: u32 = 1 << 3;

/// What the completion routine must do after publishing the result.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnComplete {
    /// Wake the waiting future.
    Wake,
    /// The future is gone and nobody is cancelling: finalize the slot.
    Finalize,
    /// The future is gone and its dropper is inside `IoCancelIrp`: it finalizes.
    LeaveToCanceller,
}

/// What a dropped, still pending future must do.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnAbandon {
    /// The result is already there: finalize now, no cancel needed.
    FinalizeNow,
    /// Call `IoCancelIrp`, then [`state_cancel_done`].
    Cancel,
}

/// Completion side: publishes COMPLETE (release) and says who finalizes.
pub(crate) fn state_complete(state: &AtomicU32) -> OnComplete {
    let prev = state.fetch_or(COMPLETE, Ordering::AcqRel);
    if prev & ABANDONED == 0 {
        OnComplete::Wake
    } else if prev & CANCELLING == 0 {
        OnComplete::Finalize
    } else {
        OnComplete::LeaveToCanceller
    }
}

/// Drop side, step 1: marks the operation abandoned and cancelling.
pub(crate) fn state_abandon(state: &AtomicU32) -> OnAbandon {
    let prev = state.fetch_or(ABANDONED | CANCELLING, Ordering::AcqRel);
    if prev & COMPLETE != 0 {
        state.fetch_and(!CANCELLING, Ordering::AcqRel);
        OnAbandon::FinalizeNow
    } else {
        OnAbandon::Cancel
    }
}

/// Drop side, step 2 (after `IoCancelIrp` returned): `true` if the completion ran meanwhile
/// and left finalization to us.
#[must_use]
pub(crate) fn state_cancel_done(state: &AtomicU32) -> bool {
    let prev = state.fetch_and(!CANCELLING, Ordering::AcqRel);
    prev & COMPLETE != 0
}

/// Pool tag of operation slots ("WskO").
pub const OP_TAG: u32 = u32::from_le_bytes(*b"WskO");

/// Arguments the provider reads through pointers while the IRP is pending; they live in the
/// slot so they stay put.
pub(crate) struct OpArgs {
    pub wsk_buf: WSK_BUF,
    /// An address the call reads (connect, bind, send-to) or writes (accept, receive-from).
    pub addr: SOCKADDR_STORAGE,
    /// Option value for `WskControlSocket`.
    pub option: [u8; 16],
}

impl OpArgs {
    const fn new() -> Self {
        Self {
            wsk_buf: WSK_BUF { Mdl: core::ptr::null_mut(), Offset: 0, Length: 0 },
            addr: SOCKADDR_STORAGE::zeroed(),
            option: [0; 16],
        }
    }
}

/// The shared part of a slot (in non-paged pool).
struct SlotInner {
    state: AtomicU32,
    refs: AtomicU32,
    irp: NonNull<IRP>,
    status: UnsafeCell<NTSTATUS>,
    info: UnsafeCell<usize>,
    waker: AtomicWaker,
    buffer: UnsafeCell<Option<IoBuf>>,
    /// The owner of a socket the operation may return (accept, socket creation), held while
    /// the IRP is in flight: if the operation is abandoned and still succeeds, the returned
    /// socket is handed to it and closed in the background instead of leaking.
    socket_owner: UnsafeCell<Option<SocketOwner>>,
    args: UnsafeCell<OpArgs>,
    /// Whether the operation in flight is a stream receive whose data must survive the drop
    /// of its future (see [`OpSlot::arm_with`]).
    keep_data: UnsafeCell<bool>,
    /// Data an abandoned stream receive brought in, and how much of it was handed out: kept
    /// for the next receive on the slot ([`OpSlot::take_kept`]).
    kept: UnsafeCell<Option<(IoBuf, usize)>>,
}

/// What owns a socket that an operation in flight may return: the socket state with its
/// reserved close IRP, and the slot that goes with it (an accepted connection's receive slot).
pub(crate) struct SocketOwner {
    pub core: AnyCore,
    pub slot: Option<OpSlot>,
}

// SAFETY: the cells are accessed under the state protocol documented in the module table;
// everything else is atomic or immutable.
unsafe impl Sync for SlotInner {}
// SAFETY: as above.
unsafe impl Send for SlotInner {}

/// The result of a completed operation.
pub(crate) struct Completion {
    pub status: NTSTATUS,
    pub info: usize,
    pub buffer: Option<IoBuf>,
    /// The socket owner given to [`OpSlot::arm_with_owner`], handed back.
    pub socket_owner: Option<SocketOwner>,
}

impl Completion {
    /// `Ok(info)` for a success status, else the mapped error.
    ///
    /// Any IRQL.
    pub fn result(&self) -> Result<usize> {
        crate::error::check(self.status).map(|()| self.info)
    }
}

/// The owner's handle to a slot. Not `Clone`: exactly one owner.
///
/// # Invariants
/// `inner` points to a live `SlotInner` on which this handle holds one reference.
pub(crate) struct OpSlot {
    inner: NonNull<SlotInner>,
}

// SAFETY: the slot is designed for completion on any CPU; the owner handle is used by one
// task at a time (`&mut` for operations).
unsafe impl Send for OpSlot {}
// SAFETY: shared references only read immutable fields or use atomics.
unsafe impl Sync for OpSlot {}

impl OpSlot {
    /// Allocates a slot and its IRP (one stack location). IRQL <= DISPATCH_LEVEL.
    pub fn new() -> Result<Self> {
        // SAFETY: plain IRP allocation at IRQL <= DISPATCH_LEVEL.
        let irp = NonNull::new(unsafe { wsk_sys::IoAllocateIrp(1, 0) }).ok_or(Error::NoMemory)?;
        let inner = SlotInner {
            state: AtomicU32::new(0),
            refs: AtomicU32::new(1),
            irp,
            status: UnsafeCell::new(0),
            info: UnsafeCell::new(0),
            waker: AtomicWaker::new(),
            buffer: UnsafeCell::new(None),
            socket_owner: UnsafeCell::new(None),
            args: UnsafeCell::new(OpArgs::new()),
            keep_data: UnsafeCell::new(false),
            kept: UnsafeCell::new(None),
        };
        let Some(mem) = pool::allocate(core::mem::size_of::<SlotInner>(), OP_TAG) else {
            // SAFETY: the IRP was allocated above and never submitted.
            unsafe { wsk_sys::IoFreeIrp(irp.as_ptr()) };
            return Err(Error::NoMemory);
        };
        let ptr = mem.cast::<SlotInner>();
        // SAFETY: fresh pool memory, 16-byte aligned, large enough for SlotInner.
        unsafe { ptr.as_ptr().write(inner) };
        // INVARIANT: one reference, owned by the new handle.
        Ok(Self { inner: ptr })
    }

    fn inner(&self) -> &SlotInner {
        // SAFETY: by the invariant the slot is live while this handle exists.
        unsafe { self.inner.as_ref() }
    }

    /// Waits until no IRP of an earlier (abandoned) operation is in flight.
    ///
    /// IRQL == PASSIVE_LEVEL (task context).
    pub async fn idle(&mut self) {
        core::future::poll_fn(|cx| {
            let inner = self.inner();
            if inner.state.load(Ordering::Acquire) == 0 {
                return Poll::Ready(());
            }
            inner.waker.register(cx.waker());
            if inner.state.load(Ordering::Acquire) == 0 { Poll::Ready(()) } else { Poll::Pending }
        })
        .await
    }

    /// Poll form of [`OpSlot::idle`].
    ///
    /// Any IRQL.
    pub fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let inner = self.inner();
        if inner.state.load(Ordering::Acquire) == 0 {
            return Poll::Ready(());
        }
        inner.waker.register(cx.waker());
        if inner.state.load(Ordering::Acquire) == 0 { Poll::Ready(()) } else { Poll::Pending }
    }

    /// Prepares the IRP for a new call and stores `buffer` in the slot. Returns the IRP to
    /// pass to the provider and the argument block. The caller must then call the provider
    /// routine and [`OpSlot::submitted`] — in that order, with nothing in between that can
    /// fail.
    ///
    /// # Panics
    /// In debug builds, if the slot is not idle (the caller must await [`OpSlot::idle`]).
    ///
    /// IRQL <= DISPATCH_LEVEL.
    pub fn arm(&mut self, buffer: Option<IoBuf>) -> (*mut IRP, *mut OpArgs) {
        self.arm_with_owner(buffer, None)
    }

    /// [`OpSlot::arm`] for an operation that returns a socket in `Information` (accept,
    /// creation): `owner` is kept with the IRP and comes back in the [`Completion`]; if the
    /// operation is abandoned and succeeds anyway, the socket is given to `owner` and closed.
    ///
    /// IRQL <= DISPATCH_LEVEL.
    pub fn arm_with_owner(&mut self, buffer: Option<IoBuf>, owner: Option<SocketOwner>) -> (*mut IRP, *mut OpArgs) {
        self.arm_with(buffer, owner, false)
    }

    /// [`OpSlot::arm_with_owner`], and for a stream (TCP) receive `keep_data`: if its future
    /// is dropped and the IRP still completes with data (the cancel lost a race with arriving
    /// data, or the provider cannot cancel, as Wine's netio cannot), the data is kept in the
    /// slot and the next receive on it returns that data first ([`OpSlot::take_kept`]), so the
    /// stream loses no byte.
    ///
    /// IRQL <= DISPATCH_LEVEL.
    pub fn arm_with(
        &mut self,
        buffer: Option<IoBuf>,
        owner: Option<SocketOwner>,
        keep_data: bool,
    ) -> (*mut IRP, *mut OpArgs) {
        let inner = self.inner();
        debug_assert_eq!(inner.state.load(Ordering::Acquire), 0, "slot armed while busy");
        let irp = inner.irp.as_ptr();
        // SAFETY: the slot is idle, so the IRP is owned by the slot's owner (us).
        unsafe { wsk_sys::IoReuseIrp(irp, wsk_sys::STATUS_UNSUCCESSFUL) };
        // SAFETY: as above; the IRP has one stack location, which is the next one.
        unsafe {
            wsk_sys::IoSetCompletionRoutine(irp, Some(complete), self.inner.as_ptr().cast::<c_void>(), true, true, true)
        };
        // SAFETY: idle slot: nobody else reads or writes `buffer`.
        unsafe { *inner.buffer.get() = buffer };
        // SAFETY: as above.
        unsafe { *inner.socket_owner.get() = owner };
        // SAFETY: as above.
        unsafe { *inner.keep_data.get() = keep_data };
        inner.refs.fetch_add(1, Ordering::Relaxed);
        inner.state.store(SUBMITTED, Ordering::Release);
        (irp, inner.args.get())
    }

    /// The argument block (to read results after completion, or fill before `arm`).
    ///
    /// Any IRQL.
    pub fn args(&mut self) -> &mut OpArgs {
        // SAFETY: `&mut self` and an idle or completed slot: nobody else touches the block
        // (callers only use it before `arm` or after `wait` returned).
        unsafe { &mut *self.inner().args.get() }
    }

    /// Copies data kept from an abandoned receive ([`OpSlot::arm_with`]) into `buf` (up to
    /// its capacity; the rest stays kept) and returns how many bytes; `None` when nothing is
    /// kept. The slot must be idle (await [`OpSlot::idle`] first): while an abandoned receive
    /// is in flight, its data is not there yet.
    ///
    /// IRQL <= DISPATCH_LEVEL.
    pub fn take_kept(&mut self, buf: &mut IoBuf) -> Option<usize> {
        let inner = self.inner();
        if inner.state.load(Ordering::Acquire) != 0 {
            return None;
        }
        // SAFETY: idle (observed with acquire ordering, after the finalizer's release store):
        // only the owner, `&mut self`, touches `kept` now.
        let kept = unsafe { &mut *inner.kept.get() };
        let (data, used) = kept.as_mut()?;
        buf.clear();
        let n = buf.extend_from_slice(&data.as_slice()[*used..]);
        *used += n;
        if *used == data.len() {
            *kept = None;
        }
        Some(n)
    }

    /// Whether the armed IRP has completed (its completion routine ran).
    ///
    /// Any IRQL.
    pub fn is_complete(&self) -> bool {
        self.inner().state.load(Ordering::Acquire) & COMPLETE != 0
    }

    /// Returns a future that resolves when the IRP armed by [`OpSlot::arm`] completes. If it
    /// is dropped before, the IRP is cancelled and the completion path cleans up.
    ///
    /// Any IRQL.
    pub fn submitted(&mut self) -> InFlight<'_> {
        InFlight { slot: self, done: false }
    }
}

impl Drop for OpSlot {
    fn drop(&mut self) {
        // SAFETY: this handle's reference is released exactly once.
        unsafe { release(self.inner) };
    }
}

/// Drops one reference; the last frees the IRP, any buffer and the slot.
///
/// # Safety
/// The caller owns one reference to the live slot and does not use it afterwards.
unsafe fn release(inner: NonNull<SlotInner>) {
    // SAFETY: the caller's reference keeps the slot live until the decrement.
    let refs = unsafe { &inner.as_ref().refs };
    if refs.fetch_sub(1, Ordering::AcqRel) != 1 {
        return;
    }
    // SAFETY: last reference: nothing else can reach the slot.
    let slot = unsafe { inner.as_ptr().read() };
    // SAFETY: no IRP is in flight (its reference was released), so the IRP is ours to free.
    unsafe { wsk_sys::IoFreeIrp(slot.irp.as_ptr()) };
    drop(slot);
    // SAFETY: allocated by `OpSlot::new` with OP_TAG; the value was moved out above.
    unsafe { pool::free(inner.cast(), OP_TAG) };
}

/// Resets an abandoned slot to idle, drops its buffer, wakes a waiter, and releases the
/// in-flight reference. Runs exactly once per abandoned operation.
///
/// # Safety
/// The slot is live with its in-flight reference still held; the completion has run.
unsafe fn finalize_abandoned(inner: NonNull<SlotInner>) {
    // SAFETY: guaranteed by the caller.
    let slot = unsafe { inner.as_ref() };
    // SAFETY: completion ran and the future is gone: only the finalizer touches `buffer`.
    let buffer = unsafe { (*slot.buffer.get()).take() };
    // SAFETY: as above; `keep_data` was written at arming, before the IRP was submitted.
    if unsafe { *slot.keep_data.get() } {
        // SAFETY: the completion routine wrote the result before COMPLETE was published.
        let status = unsafe { *slot.status.get() };
        // SAFETY: as above.
        let info = unsafe { *slot.info.get() };
        if let Some(mut data) = buffer.filter(|b| wsk_sys::NT_SUCCESS(status) && info > 0 && info <= b.capacity()) {
            data.set_len(info);
            // SAFETY: the slot is not idle until the store below, and the owner reads `kept`
            // only on an idle slot; `kept` is empty, since a stream receive hands kept data out
            // instead of arming while any is left.
            unsafe { *slot.kept.get() = Some((data, 0)) };
        }
    } else {
        drop(buffer);
    }
    // SAFETY: as above.
    let owner = unsafe { (*slot.socket_owner.get()).take() };
    if let Some(owner) = owner {
        // SAFETY: the completion routine wrote the result before COMPLETE was published.
        let status = unsafe { *slot.status.get() };
        // SAFETY: as above.
        let info = unsafe { *slot.info.get() };
        if wsk_sys::NT_SUCCESS(status) && info != 0 {
            // The operation succeeded after its future was dropped: the new socket belongs
            // to `owner`, whose drop closes it in the background (reserved close IRP).
            // SAFETY: the operation (`WskSocket`, `WskSocketConnect` or `WskAccept`) created a
            // socket of the owner's kind with the owner as its context.
            unsafe { owner.core.set_socket(info as *mut wsk_sys::WSK_SOCKET) };
        }
        drop(owner);
    }
    slot.state.store(0, Ordering::Release);
    slot.waker.wake();
    // SAFETY: releases the in-flight reference taken in `arm`.
    unsafe { release(inner) };
}

/// The completion routine of every operation IRP. Runs at IRQL <= DISPATCH_LEVEL on any
/// CPU; never blocks or allocates.
unsafe extern "system" fn complete(_device: *mut DEVICE_OBJECT, irp: *mut IRP, context: *mut c_void) -> NTSTATUS {
    let Some(inner) = NonNull::new(context.cast::<SlotInner>()) else {
        return STATUS_MORE_PROCESSING_REQUIRED;
    };
    // SAFETY: the in-flight reference keeps the slot live until it is released below.
    let slot = unsafe { inner.as_ref() };
    // SAFETY: the provider completed `irp`, which now belongs to us again.
    let io = unsafe { (*irp).IoStatus };
    // SAFETY: while SUBMITTED and not COMPLETE only this routine writes the result.
    unsafe {
        *slot.status.get() = io.Status;
    }
    // SAFETY: as above.
    unsafe {
        *slot.info.get() = io.Information;
    }
    match state_complete(&slot.state) {
        OnComplete::Wake => slot.waker.wake(),
        // SAFETY: abandoned and nobody cancelling: this routine finalizes.
        OnComplete::Finalize => unsafe { finalize_abandoned(inner) },
        // The dropper finalizes after its IoCancelIrp returns.
        OnComplete::LeaveToCanceller => {}
    }
    STATUS_MORE_PROCESSING_REQUIRED
}

/// A pending operation. Resolves to its [`Completion`]; dropping it cancels the IRP.
pub(crate) struct InFlight<'a> {
    slot: &'a mut OpSlot,
    done: bool,
}

impl Future for InFlight<'_> {
    type Output = Completion;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Completion> {
        let this = &mut *self;
        assert!(!this.done, "InFlight polled after completion");
        let completion = core::task::ready!(this.slot.poll_submitted(cx));
        this.done = true;
        Poll::Ready(completion)
    }
}

impl OpSlot {
    /// Polls the operation armed by [`OpSlot::arm`] (and handed to the provider) for its
    /// completion: the poll-based form of [`OpSlot::submitted`], for state machines that keep
    /// the slot across polls. Once it returned `Ready` the slot is idle again. A caller that
    /// gives up on a pending operation must call [`OpSlot::abandon`].
    ///
    /// A completed operation spends one unit of the polling task's budget
    /// ([`wsk_executor::coop`]); when the budget is spent this returns `Pending` with the task
    /// woken, and the completion waits in the slot for the next poll. An IRP the provider
    /// completes inside the call (the data was already there) is ready at the first poll, and
    /// a task on a busy connection would otherwise never let the executor's other tasks run.
    ///
    /// Any IRQL.
    pub fn poll_submitted(&mut self, cx: &mut Context<'_>) -> Poll<Completion> {
        let inner = self.inner();
        if inner.state.load(Ordering::Acquire) & COMPLETE == 0 {
            inner.waker.register(cx.waker());
            if inner.state.load(Ordering::Acquire) & COMPLETE == 0 {
                return Poll::Pending;
            }
        }
        core::task::ready!(wsk_executor::coop::poll_proceed(cx));
        // SAFETY: COMPLETE was observed with acquire ordering: the result is written and the
        // completion routine no longer touches the fields.
        let status = unsafe { *inner.status.get() };
        // SAFETY: as above.
        let info = unsafe { *inner.info.get() };
        // SAFETY: as above; the completion routine never touches `buffer` of a live operation.
        let buffer = unsafe { (*inner.buffer.get()).take() };
        // SAFETY: as above.
        let socket_owner = unsafe { (*inner.socket_owner.get()).take() };
        let completion = Completion { status, info, buffer, socket_owner };
        inner.state.store(0, Ordering::Release);
        // SAFETY: releases the in-flight reference taken in `arm`.
        unsafe { release_in_flight(self.inner) };
        Poll::Ready(completion)
    }

    /// Gives up on the operation in flight (armed, submitted, not yet collected by
    /// [`OpSlot::poll_submitted`]): cancels its IRP; the completion path frees what it owns.
    /// Never blocks.
    ///
    /// IRQL <= DISPATCH_LEVEL.
    pub fn abandon(&mut self) {
        let ptr = self.inner;
        let inner = self.inner();
        if state_abandon(&inner.state) == OnAbandon::FinalizeNow {
            // SAFETY: completion ran and will not finalize (it saw no ABANDONED).
            unsafe { finalize_abandoned(ptr) };
            return;
        }
        // SAFETY: CANCELLING keeps the completion path from finalizing, so the IRP and slot
        // stay live (the IRP is not reused) until we clear the bit.
        unsafe { wsk_sys::IoCancelIrp(inner.irp.as_ptr()) };
        if state_cancel_done(&inner.state) {
            // SAFETY: completion ran while we were cancelling and left finalization to us.
            unsafe { finalize_abandoned(ptr) };
        }
    }
}

/// Releases the in-flight reference of a completed, collected operation.
///
/// # Safety
/// As [`release`]; the owner handle still holds its own reference, so this never frees.
unsafe fn release_in_flight(inner: NonNull<SlotInner>) {
    // SAFETY: forwarded.
    unsafe { release(inner) }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.slot.abandon();
        }
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;
    use loom::sync::atomic::AtomicUsize;

    /// Completion racing the drop of a pending operation: exactly one side finalizes.
    #[test]
    fn loom_complete_vs_abandon_finalizes_once() {
        loom::model(|| {
            let state = Arc::new(AtomicU32::new(SUBMITTED));
            let finalized = Arc::new(AtomicUsize::new(0));
            let (s2, f2) = (state.clone(), finalized.clone());
            let completer = loom::thread::spawn(move || match state_complete(&s2) {
                OnComplete::Finalize => {
                    f2.fetch_add(1, Ordering::SeqCst);
                }
                // Wake: the completion ran before the drop, while the future still existed.
                OnComplete::LeaveToCanceller | OnComplete::Wake => {}
            });
            // The dropper: the future is dropped while pending.
            match state_abandon(&state) {
                OnAbandon::FinalizeNow => {
                    finalized.fetch_add(1, Ordering::SeqCst);
                }
                OnAbandon::Cancel => {
                    // IoCancelIrp would run here.
                    if state_cancel_done(&state) {
                        finalized.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
            completer.join().unwrap();
            assert_eq!(finalized.load(Ordering::SeqCst), 1);
        });
    }

    /// Without a drop, the completion always wakes.
    #[test]
    fn loom_complete_without_abandon_wakes() {
        loom::model(|| {
            let state = AtomicU32::new(SUBMITTED);
            assert_eq!(state_complete(&state), OnComplete::Wake);
            assert!(state.load(Ordering::SeqCst) & COMPLETE != 0);
        });
    }
}
