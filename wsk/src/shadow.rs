//! Shadow MDLs: MDLs of our own over pages WSK indicated, so that a received item whose data
//! sits in several indications (or several MDLs) goes out in **one** `WskSend` without our
//! touching WSK's MDLs.
//!
//! WSK's MDLs belong to the provider: we never change their `Next` or `ByteCount`. To send
//! the pieces of an item as one buffer, each piece gets a partial MDL of ours
//! (`IoBuildPartialMdl` over the provider's MDL: same pages, no copy), and ours are linked.
//! One send instead of one per indication matters: a stream's sends that are smaller than the
//! segment size and follow each other while the first is unacknowledged are held back by
//! Nagle's algorithm until the peer acknowledges, and a peer waiting for the whole message
//! before it answers delays that acknowledgement (up to 40 ms on Linux, 200 ms on Windows).
//! The echo benchmark met exactly that with one send per indication.
//!
//! A set holds [`SHADOWS`] MDLs, each able to describe [`SHADOW_SPAN`] bytes at any page
//! offset: allocated once by a write half at its first send of an item (about 1.5 KiB of
//! non-paged pool), reused for every send, held by the operation slot while a send is in
//! flight (so a dropped send frees them only after its IRP completed). An item needing more
//! MDLs, or a longer piece, is sent one `WskSend` per indication instead. A write half gives
//! its set back to the library's cache of sets ([`take`], [`give`], up to [`CACHED_SETS`])
//! with its operation slot (`TcpWriteHalf::release_slot`), so an idle connection holds none
//! and the next send takes a cached one: no allocation in steady state.
//!
//! The receive callbacks map every indicated MDL into system space before they retain it
//! (`events::pieces::map_all`), and a partial MDL of a mapped source shares that mapping
//! (Microsoft's `IoBuildPartialMdl` page); should a provider map one of ours anyway,
//! `MmPrepareMdlForReuse` releases that mapping before the MDL is built again, and
//! `IoFreeMdl` at the end.

use core::ptr::NonNull;

use wsk_sys::{MDL, PAGE_SIZE, WSK_BUF};

use crate::buf_pool::FreeCells;
use crate::error::{Error, Result};
use crate::pool::{PoolBox, tag};
use crate::socket::events::Received;

/// MDLs in a set: the pieces one item may have to be sent in one `WskSend`.
pub(crate) const SHADOWS: usize = 8;
/// Bytes one shadow MDL describes at most (at any offset in its first page).
pub(crate) const SHADOW_SPAN: usize = 64 * 1024;
/// Pool tag of a set: a request block the provider reads through pointers while a send is
/// in flight ("WskR").
pub(crate) const SHADOW_TAG: u32 = tag::REQUEST;

/// A set of shadow MDLs in its pool block.
pub(crate) type ShadowSet = PoolBox<Shadows, SHADOW_TAG>;

/// A set of shadow MDLs.
///
/// # Invariants
/// `mdls` are MDLs from `IoAllocateMdl`, owned by the set, each with room for the pages of
/// [`SHADOW_SPAN`] bytes at any offset; `mdls[..used]` are built over some items' pages (each
/// item's linked in order), the rest are unbuilt and unlinked.
pub(crate) struct Shadows {
    mdls: [NonNull<MDL>; SHADOWS],
    used: usize,
}

// SAFETY: the MDLs are owned by the set and used from one thread at a time (the set is moved
// between the write half and the operation slot, never shared).
unsafe impl Send for Shadows {}

impl Shadows {
    /// A set of fresh MDLs in a pool block. IRQL <= DISPATCH_LEVEL.
    pub(crate) fn allocate() -> Result<ShadowSet> {
        let mut mdls = [NonNull::<MDL>::dangling(); SHADOWS];
        for at in 0..SHADOWS {
            // Sized for SHADOW_SPAN bytes starting at the last byte of a page: the most pages
            // such a piece can span. The address only sizes the MDL; nothing reads it.
            let start = core::ptr::without_provenance_mut(PAGE_SIZE - 1);
            // SAFETY: an allocation with no IRP; the address is not dereferenced.
            let mdl = unsafe { wsk_sys::IoAllocateMdl(start, SHADOW_SPAN as u32, 0, 0, core::ptr::null_mut()) };
            match NonNull::new(mdl) {
                Some(mdl) => mdls[at] = mdl,
                None => {
                    for allocated in &mdls[..at] {
                        // SAFETY: allocated above, never used.
                        unsafe { wsk_sys::IoFreeMdl(allocated.as_ptr()) };
                    }
                    return Err(Error::NoMemory);
                }
            }
        }
        // INVARIANT: every MDL allocated above, none built.
        PoolBox::try_new_tagged(Shadows { mdls, used: 0 }).map_err(|set| {
            drop(set);
            Error::NoMemory
        })
    }

    /// Builds one MDL chain of ours over every byte of `item` (its indications' MDLs, from
    /// each entry's `Offset` for its `Length`) and returns the `WSK_BUF` over it, or `None`
    /// when the item needs more than [`SHADOWS`] MDLs or a piece longer than
    /// [`SHADOW_SPAN`] (nothing is left built then).
    ///
    /// # Safety
    /// `item` stays alive (unreleased) as long as the chain is used, and no send uses the
    /// set's MDLs now. IRQL <= DISPATCH_LEVEL.
    pub(crate) unsafe fn cover(&mut self, item: &Received) -> Option<WSK_BUF> {
        self.reset();
        // SAFETY: forwarded contract.
        let (first, _, total) = unsafe { self.append(item) }?;
        Some(WSK_BUF { Mdl: first.as_ptr(), Offset: 0, Length: total })
    }

    /// Builds MDLs of ours over every byte of `item` after those already built, linked to
    /// one another (not to what was built before): returns the first and the last, and the
    /// bytes; `None` when the item has no byte, or needs more MDLs than are left or a piece
    /// longer than [`SHADOW_SPAN`] (what this call built is undone then).
    ///
    /// # Safety
    /// As [`Shadows::cover`].
    pub(crate) unsafe fn append(&mut self, item: &Received) -> Option<(NonNull<MDL>, NonNull<MDL>, usize)> {
        let start = self.used;
        let mut bufs = item.wsk_bufs();
        let mut total = 0usize;
        // SAFETY: the item is alive (caller).
        while let Some(buf) = unsafe { bufs.next() } {
            let (mut mdl, mut skip, mut left) = (buf.Mdl, buf.Offset as usize, buf.Length);
            while left > 0 {
                if mdl.is_null() || self.used == SHADOWS {
                    self.undo(start);
                    return None;
                }
                // SAFETY: an MDL of the item's chain, alive with the item.
                let count = unsafe { wsk_sys::MmGetMdlByteCount(mdl) } as usize;
                // SAFETY: as above.
                let next = unsafe { (*mdl).Next };
                if skip >= count {
                    skip -= count;
                    mdl = next;
                    continue;
                }
                let n = (count - skip).min(left);
                if n > SHADOW_SPAN {
                    self.undo(start);
                    return None;
                }
                // SAFETY: as above; the piece lies in the MDL's buffer.
                let va = unsafe { wsk_sys::MmGetMdlVirtualAddress(mdl) }.cast::<u8>().wrapping_add(skip);
                let target = self.mdls[self.used].as_ptr();
                // SAFETY: the source describes the item's locked pages; the target is ours,
                // unused (caller), with room for a piece of up to SHADOW_SPAN bytes.
                unsafe { wsk_sys::IoBuildPartialMdl(mdl, target, va.cast(), n as u32) };
                // SAFETY: our MDL.
                unsafe { (*target).Next = core::ptr::null_mut() };
                if self.used > start {
                    // SAFETY: our MDL, built just before by this call.
                    unsafe { (*self.mdls[self.used - 1].as_ptr()).Next = target };
                }
                // INVARIANT: `mdls[..used]` stay built; this call's are linked in order.
                self.used += 1;
                total += n;
                left -= n;
                skip = 0;
                mdl = next;
            }
        }
        if self.used == start {
            return None;
        }
        Some((self.mdls[start], self.mdls[self.used - 1], total))
    }

    /// Undoes what was built from `start` on.
    fn undo(&mut self, start: usize) {
        for mdl in &self.mdls[start..self.used] {
            // SAFETY: our MDL, built by the `append` being undone, used by no send.
            unsafe { wsk_sys::MmPrepareMdlForReuse(mdl.as_ptr()) };
            // SAFETY: as above.
            unsafe { (*mdl.as_ptr()).Next = core::ptr::null_mut() };
        }
        // INVARIANT: only the MDLs built before `start` stay built.
        self.used = start;
    }

    /// Whether no MDL of the set is built (a fresh or reset set).
    pub(crate) fn is_unused(&self) -> bool {
        self.used == 0
    }

    /// Unlinks the MDLs built by [`Shadows::cover`] or [`Shadows::append`] and releases any mapping of their own
    /// (`MmPrepareMdlForReuse`), once no send uses them. IRQL <= DISPATCH_LEVEL.
    pub(crate) fn reset(&mut self) {
        self.undo(0);
    }
}

impl Drop for Shadows {
    fn drop(&mut self) {
        self.reset();
        for mdl in &self.mdls {
            // SAFETY: owned by the set (type invariant), unused: a set is dropped by its owner
            // or by the completion path after the IRP that used it completed.
            unsafe { wsk_sys::IoFreeMdl(mdl.as_ptr()) };
        }
    }
}

/// Shadow sets the library's cache keeps at most (about 1.5 KiB each).
pub(crate) const CACHED_SETS: usize = 16;

crate::buf_pool::static_free_cells!(
    /// The sets kept.
    fn sets() -> Shadows, CACHED_SETS
);

/// A set from the cache, or a new one. IRQL <= DISPATCH_LEVEL.
pub(crate) fn take() -> Result<ShadowSet> {
    take_from(sets())
}

/// Keeps `set` (reset) for the next [`take`], or frees it when the cache is full. The set must
/// not be in use by a send (its owner gives it back). IRQL <= DISPATCH_LEVEL.
pub(crate) fn give(set: ShadowSet) {
    give_to(sets(), set);
}

/// [`take`] from `cells`.
fn take_from<const N: usize>(cells: &FreeCells<Shadows, N>) -> Result<ShadowSet> {
    match cells.take() {
        // SAFETY: the cells hold only sets `give_to` took out of their `PoolBox` with this tag.
        Some(set) => Ok(unsafe { PoolBox::from_raw_tagged(set) }),
        None => Shadows::allocate(),
    }
}

/// [`give`] to `cells`.
fn give_to<const N: usize>(cells: &FreeCells<Shadows, N>, mut set: ShadowSet) {
    set.reset();
    if let Err(set) = cells.give(PoolBox::into_raw(set)) {
        // SAFETY: taken out of its `PoolBox` just above, refused by the cells.
        drop(unsafe { PoolBox::<Shadows, SHADOW_TAG>::from_raw_tagged(set) });
    }
}

/// Frees every set `cells` keep; returns how many.
fn drain_from<const N: usize>(cells: &FreeCells<Shadows, N>) -> usize {
    let mut freed = 0;
    while let Some(set) = cells.take() {
        // SAFETY: as in `take_from`.
        drop(unsafe { PoolBox::<Shadows, SHADOW_TAG>::from_raw_tagged(set) });
        freed += 1;
    }
    freed
}

/// Frees every cached set; returns how many. IRQL <= DISPATCH_LEVEL.
pub(crate) fn drain() -> usize {
    drain_from(sets())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::IoBuf;

    /// The bytes a `WSK_BUF` over one of our MDLs describes, through its system address.
    fn bytes_of(buf: WSK_BUF) -> &'static [u8] {
        // SAFETY: a shadow MDL over a live test buffer, mapped like its source.
        let va = unsafe { wsk_sys::MmGetSystemAddressForMdlSafe(buf.Mdl, wsk_sys::NormalPagePriority) };
        // SAFETY: the MDL describes `Length` bytes there; the test keeps the item alive while
        // it reads.
        unsafe { core::slice::from_raw_parts(va.cast::<u8>().wrapping_add(buf.Offset as usize), buf.Length) }
    }

    /// A set covers an item with MDLs of its own over the item's memory; an append that does
    /// not fit (no MDL left, or a piece longer than a shadow MDL describes) undoes only
    /// itself; a reset leaves nothing built; the set frees its MDLs (Miri checks the accesses
    /// and that nothing leaks).
    #[test]
    fn a_set_covers_an_item_and_undoes_what_does_not_fit() {
        let mut set = Shadows::allocate().unwrap();
        let item = Received::from_buffer(IoBuf::copy_from(b"shadowed bytes").unwrap());
        // SAFETY: the item outlives every use of the set's MDLs below; no send uses them.
        let buf = unsafe { set.cover(&item) }.expect("one piece");
        assert_eq!((buf.Offset, buf.Length), (0, 14));
        assert_eq!(bytes_of(buf), b"shadowed bytes");
        assert!(!core::ptr::eq(buf.Mdl, item.copied().unwrap().mdl()), "our MDL, not the item's");
        for _ in 1..SHADOWS {
            // SAFETY: as above.
            assert!(unsafe { set.append(&item) }.is_some(), "room for one MDL per append");
        }
        // SAFETY: as above.
        assert!(unsafe { set.append(&item) }.is_none(), "no MDL left");
        assert_eq!(set.used, SHADOWS, "the failed append undid only itself");
        set.reset();
        assert_eq!(set.used, 0);
        let mut long = IoBuf::with_capacity(SHADOW_SPAN + 1).unwrap();
        long.set_len(SHADOW_SPAN + 1);
        let long = Received::from_buffer(long);
        // SAFETY: as above.
        assert!(unsafe { set.cover(&long) }.is_none(), "a piece longer than a shadow MDL");
        assert_eq!(set.used, 0);
        drop(set);
    }

    /// A set given back (built or not) is kept reset and is the one the next take gets: no
    /// allocation; the drain frees what the cache keeps (Miri checks nothing leaks).
    #[test]
    fn a_set_given_back_is_reset_and_reused() {
        // A cache of its own: the library's is shared with the tests running alongside.
        let cells = FreeCells::<Shadows, 2>::new(2);
        let mut set = take_from(&cells).unwrap();
        let item = Received::from_buffer(IoBuf::copy_from(b"cached").unwrap());
        // SAFETY: the item outlives the set's use; no send uses the set.
        assert!(unsafe { set.cover(&item) }.is_some());
        let kept = core::ptr::from_ref::<Shadows>(&set);
        give_to(&cells, set);
        let again = take_from(&cells).unwrap();
        assert!(core::ptr::eq(&raw const *again, kept), "the cached set comes back");
        assert_eq!(again.used, 0, "a cached set is reset");
        give_to(&cells, again);
        assert_eq!(drain_from(&cells), 1);
        assert_eq!(drain_from(&cells), 0);
    }
}
