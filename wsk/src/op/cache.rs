//! Idle operation slots kept for reuse, so that a connection need not keep one while it is
//! idle: a slot (its IRP and argument block, about 900 bytes) given back with [`give`] is
//! taken again by the next [`take`], anywhere in the driver, with no allocation.
//!
//! The cache is a fixed array of cells ([`crate::buf_pool`]'s free cells): taking and giving
//! are one atomic each, never wait and never allocate, usable at DISPATCH_LEVEL. Only a slot
//! nobody else refers to is kept: idle, no timer set, no IRP in flight (its only reference is
//! the owner's), holding no buffer, block, socket owner or kept data; its waker is dropped,
//! so a cached slot refers to no task. Anything else is dropped as usual. What the cache
//! keeps is bounded by [`CACHED`] slots and freed by [`drain`] at deregistration.

use super::{OpSlot, SlotInner};
use crate::error::Result;

/// Slots the cache keeps at most.
pub(crate) const CACHED: usize = 64;

crate::buf_pool::static_free_cells!(
    /// The slots kept.
    fn cells() -> SlotInner, CACHED
);

/// An idle slot: a cached one, or a new one. IRQL <= DISPATCH_LEVEL.
pub(crate) fn take() -> Result<OpSlot> {
    match cells().take() {
        // INVARIANT: a cell holds the one reference of a slot given up by `give`, which made
        // sure nobody else refers to it; the swap made it ours alone.
        Some(inner) => Ok(OpSlot { inner }),
        None => OpSlot::new(),
    }
}

/// Keeps `slot` for the next [`take`] if nobody else refers to it and it holds nothing, else
/// drops it. IRQL <= DISPATCH_LEVEL.
pub(crate) fn give(slot: OpSlot) {
    if !slot.is_reusable() {
        return;
    }
    let _ = slot.inner().waker.take();
    let inner = slot.inner;
    core::mem::forget(slot);
    if let Err(inner) = cells().give(inner) {
        // INVARIANT: refused by every cell: the reference is still ours.
        drop(OpSlot { inner });
    }
}

/// Frees every cached slot; returns how many. IRQL <= DISPATCH_LEVEL.
pub(crate) fn drain() -> usize {
    let mut freed = 0;
    while let Some(inner) = cells().take() {
        // INVARIANT: as in `take`.
        drop(OpSlot { inner });
        freed += 1;
    }
    freed
}

/// Whether `inner` is held by the cache now (tests).
#[cfg(all(test, not(loom)))]
fn cached(inner: core::ptr::NonNull<SlotInner>) -> bool {
    let mut found = false;
    let mut taken = [None; CACHED];
    for held in &mut taken {
        *held = cells().take();
        found |= *held == Some(inner);
    }
    for held in taken.into_iter().flatten() {
        let _ = cells().give(held);
    }
    found
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// A slot given back idle is the one the next take gets (no allocation); one holding
    /// kept data is not kept. Miri checks that nothing leaks after the drain.
    #[test]
    fn an_idle_slot_is_reused_and_a_busy_one_is_not_kept() {
        let slot = take().unwrap();
        let inner = slot.inner;
        give(slot);
        assert!(cached(inner));
        let again = take().unwrap();
        assert_eq!(again.inner, inner, "the cached slot comes back");
        // Data an abandoned stream receive brought in, kept for its socket's next receive:
        // such a slot must not serve another socket.
        let kept = Some((crate::IoBuf::with_capacity(8).unwrap(), 0));
        // SAFETY: idle, and this handle is the only reference: nobody else touches `kept`.
        unsafe { *again.inner().kept.get() = kept };
        give(again);
        assert!(!cached(inner), "a slot holding a buffer is not kept");
        assert_eq!(drain(), 0);
    }
}
