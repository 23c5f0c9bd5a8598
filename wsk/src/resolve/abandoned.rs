//! Resolutions given up while pending, collected at PASSIVE_LEVEL.
//!
//! A resolution whose future is dropped while its IRP is pending may still succeed: the
//! provider then hands an `ADDRINFOEXW` list to nobody, and `WskFreeAddressInfo` may be called
//! at PASSIVE_LEVEL only, while completion routines run at up to DISPATCH_LEVEL. So a dropped
//! resolution is not abandoned to its completion routine; the future's drop cancels the IRP
//! and hands the operation slot, still owning the request block, to its registration:
//!
//! * before the request is issued, [`Abandoned::node`] allocates the stack node the slot would
//!   be handed over in, so the hand-over allocates nothing and never fails;
//! * [`Abandoned::push`] (the future's drop) puts the slot on the registration's stack:
//!   lock-free, any IRQL;
//! * [`Abandoned::drain`], at PASSIVE_LEVEL, collects every slot on the stack whose IRP has
//!   completed, frees a result list the provider returned, and frees the slot and its IRP;
//!   slots still pending go back on the stack. Each resolution through the registration
//!   drains it first, and the registration's drop drains it until it is empty
//!   ([`Abandoned::wait_idle`]), before `WskDeregister`: no IRP, slot or list outlives it.
//!
//! A work item was the other choice for the free; it needs a device or driver object, which
//! the library does not have, and would still have to be waited for before deregistration.

use core::ptr::NonNull;
use core::task::{Context, Poll, Waker};

use wsk_sys::{PFN_WSK_FREE_ADDRESS_INFO, PWSK_CLIENT};

use super::Request;
use crate::error::{Error, Result};
use crate::loom::{AtomicPtr, Ordering};
use crate::op::OpSlot;
use crate::pool::PoolBox;
use crate::pool::tag::REQUEST;

/// A stack node, in pool: one given-up resolution's slot.
pub(crate) struct Grave {
    next: *mut Grave,
    slot: Option<OpSlot>,
}

// SAFETY: the link is only followed by the one thread that took the node off the stack; the
// slot is `Send`.
unsafe impl Send for Grave {}

/// The resolutions of one registration that were given up while pending (lives in the
/// registration block).
pub(crate) struct Abandoned {
    /// Nodes whose slot is not collected yet, linked through `Grave::next`.
    stack: AtomicPtr<Grave>,
}

impl Abandoned {
    /// An empty stack.
    pub(crate) fn new() -> Self {
        Self { stack: AtomicPtr::new(core::ptr::null_mut()) }
    }

    /// The node a resolution's slot is handed over in if its future is dropped while pending.
    ///
    /// IRQL <= DISPATCH_LEVEL.
    pub(crate) fn node() -> Result<PoolBox<Grave, REQUEST>> {
        PoolBox::try_new_tagged(Grave { next: core::ptr::null_mut(), slot: None }).map_err(|_| Error::NoMemory)
    }

    /// Takes over `slot`, whose operation is pending or completed and not collected.
    ///
    /// Any IRQL.
    pub(crate) fn push(&self, mut node: PoolBox<Grave, REQUEST>, slot: OpSlot) {
        node.slot = Some(slot);
        let raw = PoolBox::into_raw(node).as_ptr();
        let mut head = self.stack.load(Ordering::Relaxed);
        loop {
            // SAFETY: `raw` is ours until the exchange below publishes it.
            unsafe { (*raw).next = head };
            match self.stack.compare_exchange_weak(head, raw, Ordering::Release, Ordering::Relaxed) {
                Ok(_) => break,
                Err(now) => head = now,
            }
        }
    }

    /// Collects the slots whose IRP completed: frees the list of a resolution that succeeded
    /// with `free` of `client`, then the slot. Returns whether slots are still pending.
    ///
    /// IRQL == PASSIVE_LEVEL.
    pub(crate) fn drain(&self, client: PWSK_CLIENT, free: Option<PFN_WSK_FREE_ADDRESS_INFO>) -> bool {
        let mut node = self.stack.swap(core::ptr::null_mut(), Ordering::Acquire);
        let mut pending = false;
        while let Some(ptr) = NonNull::new(node) {
            // SAFETY: every node on the stack came from `PoolBox::into_raw` in `push` and is
            // taken off it once (by the swap above).
            let mut grave = unsafe { PoolBox::<Grave, REQUEST>::from_raw_tagged(ptr) };
            node = grave.next;
            let Some(slot) = grave.slot.as_mut() else { continue };
            let Poll::Ready(done) = slot.poll_submitted(&mut Context::from_waker(Waker::noop())) else {
                pending = true;
                let slot = grave.slot.take();
                if let Some(slot) = slot {
                    self.push(grave, slot);
                }
                continue;
            };
            let succeeded = done.result().is_ok();
            let block = done.block.map(crate::pool::AnyPoolBox::downcast::<Request, REQUEST>);
            if let (Some(Ok(block)), Some(free), true) = (block, free, succeeded)
                && !block.result.is_null()
            {
                // SAFETY: a list this client's `WskGetAddressInfo` returned and nobody took;
                // freed once, at PASSIVE_LEVEL (the caller's contract).
                unsafe { free(client, block.result) };
            }
        }
        pending
    }

    /// Drains the stack until no given-up resolution is left (they were cancelled when their
    /// futures were dropped; the wait is for their IRPs' completions).
    ///
    /// IRQL == PASSIVE_LEVEL.
    pub(crate) fn wait_idle(&self, client: PWSK_CLIENT, free: Option<PFN_WSK_FREE_ADDRESS_INFO>) {
        while self.drain(client, free) {
            let mut interval: i64 = -10_000;
            // SAFETY: PASSIVE_LEVEL (the caller's contract); a relative kernel-mode delay of 1 ms.
            unsafe { wsk_sys::KeDelayExecutionThread(wsk_sys::KernelMode, 0, &raw mut interval) };
        }
    }
}
