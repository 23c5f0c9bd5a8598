//! IRP-backed operations: one reusable IRP per operation slot, a completion routine that
//! records the result and wakes the task, and cancel-on-drop that never blocks.
//!
//! # Lifecycle of a slot
//!
//! ```text
//!          arm()               submit()                completion routine
//!   IDLE ────────> Armed guard ─────────> SUBMITTED ─────────────────────> SUBMITTED|COMPLETE
//!    ^ ^               │                      │                                     │
//!    │ └───────────────┘ guard dropped or     │ future dropped                      │ future polls:
//!    │   withdrawn: not taken, IRP untouched  v                                     │ take result
//!    │                      SUBMITTED|ABANDONED|CANCELLING                          │
//!    │                          (IoCancelIrp runs)                                  v
//!    └──── finalize (exactly once: by the completion routine, or ───────────────── IDLE
//!          by the dropper if completion ran during IoCancelIrp)
//! ```
//!
//! [`OpSlot::arm`] is refused on a slot that is not idle (in every build). The [`Armed`] guard
//! it returns borrows the slot exclusively; it is the only way to fill the argument block and
//! to reach the IRP, and [`Armed::submit`] is the only place an IRP is prepared and handed to
//! a provider (and completed as "not taken" when no routine took it).
//!
//! # Who touches what
//!
//! | field                 | IDLE                         | SUBMITTED (not COMPLETE)     | COMPLETE            |
//! |-----------------------|------------------------------|------------------------------|---------------------|
//! | `irp`                 | `Armed::submit` (prepare)    | provider, then completion    | owner / finalizer   |
//! | `status`, `info`      | —                            | completion routine (write)   | owner or finalizer  |
//! | `buffer`, `block`,    | `Armed` (give, take back)    | provider, through pointers   | owner or finalizer  |
//! | `socket_owner`,       |                              |                              | (take)              |
//! | `item`                |                              |                              |                     |
//! | `keep_data`           | `arm` (reset), `Armed` (set) | —                            | finalizer (read)    |
//! | `args`                | `Armed` (fill), owner (read) | provider, through pointers   | —                   |
//! | `kept`                | owner (`take_kept`)          | —                            | finalizer (store)   |
//! | `waker`               | owner                        | owner registers, completion wakes | —              |
//!
//! The `COMPLETE` bit is set with release ordering after `status`/`info` are written, and read
//! with acquire ordering before they are read.
//!
//! A slot is reference counted: one reference for its owner (a socket half) and one while an
//! IRP is in flight, so an abandoned operation's completion still finds its slot after the
//! socket is gone. The last reference frees the IRP, any buffer or block, and the slot.
//!
//! A timed operation ([`Armed::submit_with_deadline`]) also arms the slot's own timer, which
//! cancels the IRP at the deadline; while that timer is set or its DPC may run, the timer
//! holds a reference and the slot is not idle (see [`deadline`] for that protocol).

pub(crate) mod cache;
mod deadline;

use core::cell::UnsafeCell;
use core::ffi::c_void;
use core::future::Future;
use core::mem::MaybeUninit;
use core::pin::Pin;
use core::ptr::NonNull;
use core::task::{Context, Poll};
use core::time::Duration;

use wsk_executor::AtomicWaker;
use wsk_sys::{DEVICE_OBJECT, IRP, NTSTATUS, SOCKADDR_STORAGE, STATUS_MORE_PROCESSING_REQUIRED, WSK_BUF};

use crate::buf::IoBuf;
use crate::error::{Error, Result};
use crate::loom::{AtomicU32, Ordering};
use crate::pool::{self, AnyPoolBox, PoolBox};
use crate::socket::events::Received;
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
pub const OP_TAG: u32 = pool::tag::OP_SLOT;

/// Arguments the provider reads through pointers while the IRP is pending; they live in the
/// slot so they stay put.
pub(crate) struct OpArgs {
    pub wsk_buf: WSK_BUF,
    /// An address the call reads (connect, bind, send-to) or writes (accept, receive-from).
    pub addr: SOCKADDR_STORAGE,
    /// Option value for `WskControlSocket`.
    pub option: [u8; crate::socket::options::OPTION_VALUE_MAX],
    /// `WskReceiveFrom`'s `ControlLength`: the size of `control` going in, the bytes of control
    /// information written coming out.
    pub control_length: u32,
    /// `WskReceiveFrom`'s `ControlFlags` (`MSG_TRUNC`, `MSG_CTRUNC`, ...), written by the provider.
    pub control_flags: u32,
    /// `WskReceiveFrom`'s `ControlInfo`: the control messages of the received datagram.
    pub control: crate::socket::control::ControlBuf,
}

impl OpArgs {
    const fn new() -> Self {
        Self {
            wsk_buf: WSK_BUF { Mdl: core::ptr::null_mut(), Offset: 0, Length: 0 },
            addr: SOCKADDR_STORAGE::zeroed(),
            option: [0; crate::socket::options::OPTION_VALUE_MAX],
            control_length: 0,
            control_flags: 0,
            control: crate::socket::control::ControlBuf::new(),
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
    /// A request block the provider reads or writes through pointers (no MDL), kept until
    /// the IRP completes.
    block: UnsafeCell<Option<AnyPoolBox>>,
    /// The owner of a socket the operation may return (accept, socket creation), held while
    /// the IRP is in flight: if the operation is abandoned and still succeeds, the returned
    /// socket is handed to it and closed in the background instead of leaking.
    socket_owner: UnsafeCell<Option<SocketOwner>>,
    /// A received item whose buffers (WSK's own memory) the provider reads through the
    /// argument block's `WSK_BUF` (a send of the item): held until the IRP completes, so the
    /// item is released (`WskRelease`) only after the provider is done with its memory, and
    /// exactly once (by whoever drops it: the collector or the finalizer).
    item: UnsafeCell<Option<Received>>,
    args: UnsafeCell<OpArgs>,
    /// Whether the operation in flight is a stream receive whose data must survive the drop
    /// of its future (see [`Armed::keep_data`]).
    keep_data: UnsafeCell<bool>,
    /// Data an abandoned stream receive brought in, and how much of it was handed out: kept
    /// for the next receive on the slot ([`OpSlot::take_kept`]).
    kept: UnsafeCell<Option<(IoBuf, usize)>>,
    /// The state of the slot's timer ([`deadline`]: `INIT`, `ARMED`, `EXPIRED`).
    deadline: AtomicU32,
    /// The timer of timed operations (`KTIMER` + `KDPC`), initialized at the first one
    /// ([`deadline`]).
    timer: UnsafeCell<MaybeUninit<wsk_executor::kernel::Timer>>,
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
    /// The request block given to [`Armed::hold_block`], handed back.
    pub block: Option<AnyPoolBox>,
    /// The socket owner given to [`Armed::hold_owner`], handed back.
    pub socket_owner: Option<SocketOwner>,
    /// The received item given to [`Armed::hold_item`], handed back.
    pub item: Option<Received>,
    /// The deadline of a timed operation ([`Armed::submit_with_deadline`]) passed before
    /// the operation was collected (its timer's DPC ran and asked for the cancel).
    pub timed_out: bool,
}

impl Completion {
    /// `Ok(info)` for a success status, else the mapped error: [`Error::TimedOut`] for an
    /// operation cancelled because its deadline passed.
    ///
    /// Any IRQL.
    pub fn result(&self) -> Result<usize> {
        if self.timed_out && self.status == wsk_sys::STATUS_CANCELLED {
            return Err(Error::TimedOut);
        }
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
            block: UnsafeCell::new(None),
            socket_owner: UnsafeCell::new(None),
            item: UnsafeCell::new(None),
            args: UnsafeCell::new(OpArgs::new()),
            keep_data: UnsafeCell::new(false),
            kept: UnsafeCell::new(None),
            deadline: AtomicU32::new(0),
            timer: UnsafeCell::new(MaybeUninit::uninit()),
        };
        let inner = match PoolBox::<SlotInner, OP_TAG>::try_new_tagged(inner) {
            Ok(inner) => inner,
            Err(inner) => {
                // SAFETY: the IRP was allocated above and never submitted.
                unsafe { wsk_sys::IoFreeIrp(inner.irp.as_ptr()) };
                return Err(Error::NoMemory);
            }
        };
        // INVARIANT: one reference, owned by the new handle; `release` rebuilds the box.
        Ok(Self { inner: PoolBox::into_raw(inner) })
    }

    fn inner(&self) -> &SlotInner {
        // SAFETY: by the invariant the slot is live while this handle exists.
        unsafe { self.inner.as_ref() }
    }

    /// Whether no IRP is in flight and the timer of an earlier timed operation is done with
    /// the slot (neither set nor running its DPC). Only the owner leaves this state.
    fn is_idle(&self) -> bool {
        let inner = self.inner();
        inner.state.load(Ordering::Acquire) == 0 && !deadline::is_armed(&inner.deadline)
    }

    /// Whether only this handle refers to the slot and it holds nothing (see [`cache`]).
    fn is_reusable(&self) -> bool {
        let inner = self.inner();
        if !self.is_idle() || inner.refs.load(Ordering::Acquire) != 1 {
            return false;
        }
        // SAFETY: idle with no other reference (no IRP in flight, no timer): the cells are
        // touched by nobody but this handle's owner, who is here.
        let holds_buffer = unsafe { (*inner.buffer.get()).is_some() };
        // SAFETY: as above.
        let holds_block = unsafe { (*inner.block.get()).is_some() };
        // SAFETY: as above.
        let holds_owner = unsafe { (*inner.socket_owner.get()).is_some() };
        // SAFETY: as above.
        let holds_kept = unsafe { (*inner.kept.get()).is_some() };
        !(holds_buffer || holds_block || holds_owner || holds_kept)
    }

    /// Waits until no IRP of an earlier (abandoned) operation is in flight, and the timer of
    /// an earlier timed operation is done with the slot.
    ///
    /// IRQL == PASSIVE_LEVEL (task context).
    pub async fn idle(&mut self) {
        core::future::poll_fn(|cx| self.poll_idle(cx)).await;
    }

    /// Poll form of [`OpSlot::idle`].
    ///
    /// Any IRQL.
    pub fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.is_idle() {
            return Poll::Ready(());
        }
        self.inner().waker.register(cx.waker());
        if self.is_idle() { Poll::Ready(()) } else { Poll::Pending }
    }

    /// Arms the slot for one provider call: returns the guard through which the call is
    /// filled in and submitted, or `Err(Busy)` when an IRP of an earlier operation is still in
    /// flight, or the timer of an earlier timed operation may still run its DPC (await
    /// [`OpSlot::idle`] first). The check holds in every build: re-arming a busy slot would
    /// reinitialize an IRP the provider owns, or one the DPC may still cancel.
    ///
    /// IRQL <= DISPATCH_LEVEL.
    pub fn arm(&mut self) -> Result<Armed<'_>, Busy> {
        if !self.is_idle() {
            return Err(Busy);
        }
        // SAFETY: idle, observed with acquire ordering after the collector's or finalizer's
        // release store; `&mut self`: nobody else touches the flag.
        unsafe { *self.inner().keep_data.get() = false };
        deadline::deadline_reset(&self.inner().deadline);
        // INVARIANT: the slot is idle and only `Armed::submit` (through the borrow the guard
        // holds) makes it busy again.
        Ok(Armed { slot: self })
    }

    /// The argument block, only while the slot is idle (`None` while an IRP is in flight):
    /// to read what the provider wrote there once the operation was collected. The block is
    /// filled through [`Armed::args`].
    ///
    /// Any IRQL.
    pub fn args(&self) -> Option<&OpArgs> {
        let inner = self.inner();
        if inner.state.load(Ordering::Acquire) != 0 {
            return None;
        }
        // SAFETY: idle: no IRP is in flight, so no provider writes the block, and it stays
        // idle while `&self` is borrowed (only `arm`, through `&mut self`, leaves idle).
        Some(unsafe { &*inner.args.get() })
    }

    /// The address the last collected call wrote to the argument block (a query of the
    /// local or remote address, an accept, a receive-from); [`Busy::error`] while an IRP is in
    /// flight.
    ///
    /// Any IRQL.
    pub fn result_addr(&self) -> Result<core::net::SocketAddr> {
        let args = self.args().ok_or(Busy.error())?;
        crate::addr::from_storage(&args.addr)
    }

    /// Copies data kept from an abandoned receive ([`Armed::keep_data`]) into `buf` (up to
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

    /// Whether the submitted IRP has completed (its completion routine ran).
    fn is_complete(&self) -> bool {
        self.inner().state.load(Ordering::Acquire) & COMPLETE != 0
    }
}

/// [`OpSlot::arm`] on a slot whose IRP is still in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Busy;

impl Busy {
    /// The error a call refused for a busy slot reports (`STATUS_INVALID_DEVICE_STATE`).
    ///
    /// Any IRQL.
    pub fn error(self) -> Error {
        Error::Status(wsk_sys::STATUS_INVALID_DEVICE_STATE)
    }
}

/// An armed slot: the one way to issue a provider call on its IRP.
///
/// The guard borrows an idle slot exclusively. Through it the caller gives the slot what must
/// outlive the call (the buffer, the owner of a socket the call may return, whether a stream
/// receive keeps its data) and fills the argument block; [`Armed::submit`] then prepares the
/// IRP, hands it to the provider and yields the operation in flight.
///
/// A guard dropped without submitting is an operation that was not taken: the IRP was never
/// prepared nor given to anyone, what the guard was given is dropped, and the slot stays idle.
/// [`Armed::withdraw`] does the same and hands all of it back in a [`Completion`] with
/// `STATUS_NOT_IMPLEMENTED`, the status of a call no provider took.
///
/// # Invariants
/// The slot is idle (no IRP in flight, state 0) while the guard exists.
pub(crate) struct Armed<'a> {
    slot: &'a mut OpSlot,
}

impl<'a> Armed<'a> {
    /// The slot's shared part, exclusively ours while the guard lives.
    fn inner(&self) -> &SlotInner {
        self.slot.inner()
    }

    /// Gives the slot `buffer` (dropping any buffer given before) until the operation is
    /// collected; it comes back in the [`Completion`].
    ///
    /// Any IRQL.
    pub fn hold_buffer(&mut self, buffer: Option<IoBuf>) {
        // SAFETY: idle slot (type invariant), borrowed exclusively: nobody else touches `buffer`.
        unsafe { *self.inner().buffer.get() = buffer };
    }

    /// Gives the slot a request block the provider call reads or writes through pointers
    /// (dropping any block given before): it stays put until the operation is collected, and
    /// comes back in the [`Completion`].
    ///
    /// Any IRQL.
    pub fn hold_block<T: Send + 'static, const TAG: u32>(&mut self, block: PoolBox<T, TAG>) {
        // SAFETY: as in `hold_buffer`.
        unsafe { *self.inner().block.get() = Some(AnyPoolBox::new(block)) };
    }

    /// [`Armed::hold_block`] for a block already type-erased (or none: dropping any block
    /// given before).
    ///
    /// Any IRQL.
    pub fn hold_any_block(&mut self, block: Option<AnyPoolBox>) {
        // SAFETY: as in `hold_buffer`.
        unsafe { *self.inner().block.get() = block };
    }

    /// Gives the slot the owner of a socket the operation returns in `Information` (accept,
    /// creation): it comes back in the [`Completion`]; if the operation is abandoned and
    /// succeeds anyway, the socket is given to `owner`, whose drop closes it.
    ///
    /// Any IRQL.
    pub fn hold_owner(&mut self, owner: Option<SocketOwner>) {
        // SAFETY: as in `hold_buffer`.
        unsafe { *self.inner().socket_owner.get() = owner };
    }

    /// Gives the slot a received item (dropping any item given before) whose buffers the call
    /// reads: it stays alive, unreleased, until the operation is collected, and comes back in
    /// the [`Completion`]; if the operation is abandoned, the finalizer drops it (releasing it
    /// to WSK) after the IRP completed.
    ///
    /// Any IRQL.
    pub fn hold_item(&mut self, item: Option<Received>) {
        // SAFETY: as in `hold_buffer`.
        unsafe { *self.inner().item.get() = item };
    }

    /// Marks the operation a stream (TCP) receive whose data must survive the drop of its
    /// future: if the future is dropped and the IRP still completes with data (the cancel lost
    /// a race with arriving data, or the provider cannot cancel, as Wine's netio cannot), the
    /// data is kept in the slot and the next receive on it returns that data first
    /// ([`OpSlot::take_kept`]), so the stream loses no byte.
    ///
    /// Any IRQL.
    pub fn keep_data(&mut self) {
        // SAFETY: as in `hold_buffer`.
        unsafe { *self.inner().keep_data.get() = true };
    }

    /// The argument block to fill for the call, and the buffer the slot holds.
    ///
    /// Any IRQL.
    pub fn args(&mut self) -> (&mut OpArgs, Option<&IoBuf>) {
        let inner = self.inner();
        // SAFETY: idle slot borrowed exclusively (type invariant): no provider reads or writes
        // the block, and `&mut self` keeps this the only reference until submission.
        let args = unsafe { &mut *inner.args.get() };
        // SAFETY: as above, and nothing writes `buffer` while this shared borrow lives.
        let buffer = unsafe { (*inner.buffer.get()).as_ref() };
        (args, buffer)
    }

    /// Gives up the operation before submitting it: the slot stays idle, and what it was
    /// given comes back in a [`Completion`] with `STATUS_NOT_IMPLEMENTED`.
    ///
    /// Any IRQL.
    pub fn withdraw(self) -> Completion {
        let slot = self.into_slot();
        let inner = slot.inner();
        // SAFETY: idle slot (the guard's invariant), borrowed exclusively through the consumed
        // guard: nobody else touches these fields.
        let buffer = unsafe { (*inner.buffer.get()).take() };
        // SAFETY: as above.
        let block = unsafe { (*inner.block.get()).take() };
        // SAFETY: as above.
        let socket_owner = unsafe { (*inner.socket_owner.get()).take() };
        // SAFETY: as above.
        let item = unsafe { (*inner.item.get()).take() };
        Completion {
            status: wsk_sys::STATUS_NOT_IMPLEMENTED,
            info: 0,
            buffer,
            block,
            socket_owner,
            item,
            timed_out: false,
        }
    }

    /// Prepares the IRP, marks the slot busy and hands the IRP to the provider through `call`,
    /// which receives the IRP and the argument block and returns the provider routine's status
    /// (informational: the result comes from the IRP, which the provider always completes), or
    /// `None` when the provider lacks the routine. An IRP no routine took is completed here with
    /// `STATUS_NOT_IMPLEMENTED`, as the provider would have: for `None`, and for a routine that
    /// returned `STATUS_NOT_IMPLEMENTED` without having completed the IRP (a stub, as in Wine's
    /// netio; WSK providers complete failed requests before returning, so an IRP still pending
    /// after that return was never taken).
    ///
    /// Returns the operation in flight: await it, or [`InFlight::detach`] it and collect the
    /// result with [`OpSlot::poll_submitted`].
    ///
    /// # Safety
    /// `call` passes the IRP to at most one provider routine and, when it passes it, returns
    /// `Some` with that routine's status. The pointers it gives the routine lead into the
    /// argument block, into what the slot holds, or into memory that outlives the IRP.
    ///
    /// IRQL <= DISPATCH_LEVEL (as the provider routine allows).
    pub unsafe fn submit(self, call: impl FnOnce(*mut IRP, *mut OpArgs) -> Option<NTSTATUS>) -> InFlight<'a> {
        let slot = self.into_slot();
        let ptr = slot.inner;
        let inner = slot.inner();
        let irp = inner.irp.as_ptr();
        // SAFETY: the slot is idle, so the IRP is owned by the slot's owner (us).
        unsafe { wsk_sys::IoReuseIrp(irp, wsk_sys::STATUS_UNSUCCESSFUL) };
        // SAFETY: as above; the IRP has one stack location, which is the next one.
        unsafe {
            wsk_sys::IoSetCompletionRoutine(irp, Some(complete), ptr.as_ptr().cast::<c_void>(), true, true, true);
        };
        inner.refs.fetch_add(1, Ordering::Relaxed);
        inner.state.store(SUBMITTED, Ordering::Release);
        match call(irp, inner.args.get()) {
            None => complete_not_taken(irp),
            Some(wsk_sys::STATUS_NOT_IMPLEMENTED) if !slot.is_complete() => complete_not_taken(irp),
            Some(_) => {}
        }
        InFlight { slot, done: false }
    }

    /// [`Armed::submit`] with a deadline: unless the operation completed inside the provider
    /// call, the slot's timer is set to cancel its IRP `after` from now. The operation then
    /// completes as usual: cancelled (its [`Completion::result`] is [`Error::TimedOut`]), or,
    /// if the cancel lost the race or the provider cannot cancel, with its result. Either way
    /// the buffer and what else the slot held come back in the [`Completion`]. Allocates
    /// nothing: the timer lives in the slot (see [`deadline`]).
    ///
    /// # Safety
    /// As [`Armed::submit`].
    ///
    /// IRQL <= DISPATCH_LEVEL (as the provider routine allows).
    pub unsafe fn submit_with_deadline(
        self,
        after: Duration,
        call: impl FnOnce(*mut IRP, *mut OpArgs) -> Option<NTSTATUS>,
    ) -> InFlight<'a> {
        // SAFETY: forwarded contract.
        let in_flight = unsafe { self.submit(call) };
        // SAFETY: the owner, right after submitting; the slot was idle at arming, so not ARMED.
        unsafe { deadline::start(in_flight.slot.inner, after) };
        in_flight
    }

    /// Ends the guard without its drop, handing out the slot borrow.
    fn into_slot(self) -> &'a mut OpSlot {
        let this = core::mem::ManuallyDrop::new(self);
        // SAFETY: `this` is never used or dropped again, so the borrow is moved out once.
        unsafe { core::ptr::read(&raw const this.slot) }
    }
}

impl Drop for Armed<'_> {
    fn drop(&mut self) {
        let inner = self.inner();
        // SAFETY: idle slot borrowed exclusively (type invariant): the operation was never
        // submitted, so what it was given is dropped here.
        let buffer = unsafe { (*inner.buffer.get()).take() };
        // SAFETY: as above.
        let block = unsafe { (*inner.block.get()).take() };
        // SAFETY: as above.
        let owner = unsafe { (*inner.socket_owner.get()).take() };
        // SAFETY: as above.
        let item = unsafe { (*inner.item.get()).take() };
        drop((buffer, block, owner, item));
    }
}

/// Completes a submitted IRP that no provider routine took, as the provider would have.
fn complete_not_taken(irp: *mut IRP) {
    // SAFETY: the IRP is prepared (completion routine in the next location) and was not
    // passed to any provider routine: we play the provider, make the next location current and
    // complete it.
    unsafe {
        (*irp).IoStatus.Status = wsk_sys::STATUS_NOT_IMPLEMENTED;
    }
    // SAFETY: as above.
    unsafe {
        (*irp).IoStatus.Information = 0;
    }
    // SAFETY: as above; the IRP has the one stack location the completion routine lives in.
    unsafe { wsk_sys::IoSetNextIrpStackLocation(irp) };
    // SAFETY: as above.
    unsafe { wsk_sys::IoCompleteRequest(irp, 0) };
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
    // SAFETY: last reference: the timer is not ARMED (an armed timer holds a reference), so
    // it is neither set nor running its DPC.
    unsafe { deadline::drop_timer(inner) };
    // SAFETY: last reference: nothing else can reach the slot, which `OpSlot::new` made
    // with `PoolBox::into_raw`.
    let slot = unsafe { PoolBox::<SlotInner, OP_TAG>::from_raw_tagged(inner) };
    // SAFETY: no IRP is in flight (its reference was released), so the IRP is ours to free.
    unsafe { wsk_sys::IoFreeIrp(slot.irp.as_ptr()) };
    drop(slot);
}

/// Resets an abandoned slot to idle, drops its buffer and block, wakes a waiter, and releases the
/// in-flight reference. Runs exactly once per abandoned operation.
///
/// # Safety
/// The slot is live with its in-flight reference still held; the completion has run.
unsafe fn finalize_abandoned(inner: NonNull<SlotInner>) {
    // SAFETY: guaranteed by the caller.
    let slot = unsafe { inner.as_ref() };
    // SAFETY: completion ran and the future is gone: only the finalizer touches `buffer`.
    let buffer = unsafe { (*slot.buffer.get()).take() };
    // SAFETY: as above; `keep_data` was written while the slot was armed, before submission.
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
    drop(unsafe { (*slot.block.get()).take() });
    // The provider is done with an item's buffers (the IRP completed): release it, once.
    // SAFETY: as above.
    drop(unsafe { (*slot.item.get()).take() });
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
    // SAFETY: releases the in-flight reference taken in `Armed::submit`.
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
    /// Polls the operation submitted with [`Armed::submit`] (and then detached) for its
    /// completion: the poll-based form of [`InFlight`], for state machines that keep
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
        let block = unsafe { (*inner.block.get()).take() };
        // SAFETY: as above.
        let socket_owner = unsafe { (*inner.socket_owner.get()).take() };
        // SAFETY: as above.
        let item = unsafe { (*inner.item.get()).take() };
        // Read after COMPLETE: a DPC whose cancel completed the IRP set EXPIRED before.
        let timed_out = deadline::is_expired(&inner.deadline);
        let completion = Completion { status, info, buffer, block, socket_owner, item, timed_out };
        inner.state.store(0, Ordering::Release);
        // SAFETY: releases the in-flight reference taken in `Armed::submit`.
        unsafe { release_in_flight(self.inner) };
        // SAFETY: the owner, holding its reference.
        unsafe { deadline::disarm(self.inner) };
        Poll::Ready(completion)
    }

    /// Gives up on the operation in flight (armed, submitted, not yet collected by
    /// [`OpSlot::poll_submitted`]): cancels its IRP; the completion path frees what it owns.
    /// Never blocks.
    ///
    /// IRQL <= DISPATCH_LEVEL.
    pub fn abandon(&mut self) {
        let ptr = self.inner;
        // The IRP is cancelled below; the deadline has nothing left to do.
        // SAFETY: the owner, holding its reference.
        unsafe { deadline::disarm(ptr) };
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

impl OpSlot {
    /// Asks the provider to cancel the operation in flight without giving it up (unlike
    /// [`OpSlot::abandon`]): the owner still collects its completion with
    /// [`OpSlot::poll_submitted`], whatever its status. Does nothing when no IRP is pending.
    /// Never blocks.
    ///
    /// IRQL <= DISPATCH_LEVEL.
    pub fn cancel(&self) {
        let inner = self.inner();
        if inner.state.load(Ordering::Acquire) & (SUBMITTED | COMPLETE) == SUBMITTED {
            // SAFETY: the IRP stays allocated while this handle exists, and only the owner
            // reuses it, after collecting the completion: if the provider completes it meanwhile,
            // `IoCancelIrp` finds no cancel routine and only marks it.
            unsafe { wsk_sys::IoCancelIrp(inner.irp.as_ptr()) };
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

impl InFlight<'_> {
    /// Lets the operation go on without this future: the caller collects it with
    /// [`OpSlot::poll_submitted`] or gives it up with [`OpSlot::abandon`].
    ///
    /// Any IRQL.
    pub fn detach(mut self) {
        self.done = true;
    }
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
