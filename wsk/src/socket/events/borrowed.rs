//! What the event streams' copy paths hold on the driver's behalf: buffers borrowed from the
//! buffer pool ([`crate::buf_pool`]) with their charge on the driver-wide budget
//! ([`crate::budget`]), and the stream's place on the budget's wait list.

use core::cell::UnsafeCell;
use core::ptr::NonNull;
use core::task::Poll;

use wsk_executor::AtomicWaker;

use crate::budget::{self, Budget, Waiter};
use crate::buf::IoBuf;
use crate::buf_pool;
use crate::socket::kind::SocketKind;
use crate::socket::shared::SocketCore;

/// A copy-path buffer, borrowed from the buffer pool with its charge on the driver-wide
/// budget: both given back when dropped (IRQL <= DISPATCH_LEVEL).
pub(crate) struct Borrowed {
    /// `None` only if the completion handed no buffer back (it always does).
    pub(crate) buf: Option<IoBuf>,
    pub(crate) charged: usize,
}

impl Borrowed {
    /// The valid bytes.
    pub(crate) fn as_slice(&self) -> &[u8] {
        self.buf.as_ref().map_or(&[], IoBuf::as_slice)
    }

    /// Sets the valid length.
    pub(crate) fn set_len(&mut self, len: usize) {
        if let Some(buf) = self.buf.as_mut() {
            buf.set_len(len);
        }
    }
}

impl Drop for Borrowed {
    fn drop(&mut self) {
        if let Some(buf) = self.buf.take() {
            buf_pool::global().give(buf);
        }
        budget::global().release(self.charged);
    }
}

/// An event stream's node on the budget's wait list (see [`crate::budget`]), in its event
/// state.
///
/// # Invariants
/// `owner` and `waker` are written only while the node is not queued, by the stream (through
/// [`BudgetWait::poll_until`]), and read only by the wake routine, once per queueing, before
/// it marks the node dequeued. While queued, `owner` holds an owner reference on the socket
/// whose event state holds this node, so the node stays valid until the wake routine ran.
#[repr(C)]
pub(crate) struct BudgetWait<K: SocketKind> {
    /// First: a pointer to the node is a pointer to the whole.
    node: Waiter,
    owner: UnsafeCell<Option<SocketCore<K>>>,
    /// The stream's waker (its event state's header waker), woken by the wake routine.
    waker: UnsafeCell<*const AtomicWaker>,
}

impl<K: SocketKind> BudgetWait<K> {
    /// A node that is not queued.
    pub(crate) fn new() -> Self {
        // INVARIANT: not queued; nothing held.
        Self { node: Waiter::new(wake::<K>), owner: UnsafeCell::new(None), waker: UnsafeCell::new(core::ptr::null()) }
    }

    /// Whether the node is on the wait list now. Any IRQL.
    pub(crate) fn is_queued(&self) -> bool {
        self.node.is_queued()
    }

    /// `Ready` once `ready` holds for the driver-wide budget; else the node is queued (with an
    /// owner reference on `core`, whose event state holds `self`, and `waker` to wake), `ready`
    /// is tried once more (a release between the failed try and the queueing woke nobody),
    /// and `Pending` if it still fails: the stream is woken when budget is given back.
    /// IRQL <= DISPATCH_LEVEL.
    pub(crate) fn poll_until(
        &self,
        core: &SocketCore<K>,
        waker: &AtomicWaker,
        ready: impl Fn(&Budget) -> bool,
    ) -> Poll<()> {
        let budget = budget::global();
        if ready(budget) {
            return Poll::Ready(());
        }
        let keep = || {
            // SAFETY: `keep` runs only when the node was not queued: the cells are ours
            // (invariant); the wake routine takes the reference back.
            unsafe { *self.owner.get() = Some(core.clone_owner()) };
            // SAFETY: as above.
            unsafe { *self.waker.get() = waker };
        };
        // SAFETY: `self` lives in the event state of `core`'s socket, which the owner reference
        // taken in `keep` keeps alive until the wake routine dropped it.
        unsafe { budget.wait(NonNull::from(&self.node), keep) };
        if ready(budget) { Poll::Ready(()) } else { Poll::Pending }
    }

    /// `Ready` once `*charged` bytes of the budget are charged for the next copy-path buffer of
    /// `bytes` (see [`BudgetWait::poll_until`]). IRQL <= DISPATCH_LEVEL.
    pub(crate) fn poll_charge(
        &self,
        core: &SocketCore<K>,
        waker: &AtomicWaker,
        charged: &mut usize,
        bytes: usize,
    ) -> Poll<()> {
        if *charged != 0 {
            return Poll::Ready(());
        }
        core::task::ready!(self.poll_until(core, waker, |budget| budget.try_charge(bytes, false)));
        *charged = bytes;
        Poll::Ready(())
    }

    /// For a stream going away: gives back `charged` and, if the node is queued, has the wait
    /// list woken now, so that its owner reference does not keep the socket's memory until the
    /// next release. IRQL <= DISPATCH_LEVEL.
    pub(crate) fn give_up(&self, charged: &mut usize) {
        budget::global().release(core::mem::take(charged));
        if self.is_queued() {
            budget::global().wake_waiters();
        }
    }
}

/// The wake routine of a [`BudgetWait`]: wakes the stream and drops the owner reference the
/// wait list held (last: the event state may be freed with it).
///
/// # Safety
/// `node` is the node of a live `BudgetWait<K>`, just taken off the wait list.
unsafe fn wake<K: SocketKind>(node: NonNull<Waiter>) {
    // SAFETY: the node is the first field of a `repr(C)` `BudgetWait<K>` (caller), kept
    // alive by the owner reference it holds while queued.
    let wait = unsafe { node.cast::<BudgetWait<K>>().as_ref() };
    // SAFETY: read once per queueing, before the node is marked dequeued (invariant).
    let owner = unsafe { (*wait.owner.get()).take() };
    // SAFETY: as above.
    let waker = unsafe { *wait.waker.get() };
    wait.node.dequeued();
    // SAFETY: the waker is the header waker of the event state that holds this node, alive
    // as long as `owner`'s reference, dropped below.
    if let Some(waker) = unsafe { waker.as_ref() } {
        waker.wake();
    }
    drop(owner);
}
