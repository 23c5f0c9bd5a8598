//! Reading the bytes a `WSK_BUF` describes (an MDL chain, an offset and a length) as
//! contiguous pieces, for retained indications.

use core::marker::PhantomData;

use wsk_sys::{MDL, WSK_BUF};

/// Maps every MDL holding `buf`'s bytes into system space; `false` if one cannot be mapped
/// (`MmGetSystemAddressForMdlSafe` returned NULL). A mapping, once made, stays with the MDL
/// (`MDL_MAPPED_TO_SYSTEM_VA`), so [`BufPieces`] over a buffer this accepted never meets an
/// unmapped MDL. The receive callbacks call it before they retain an indication, and refuse
/// one that fails: a mapping failure never turns into fewer bytes.
///
/// Microsoft documents no promise that a provider's indication MDLs are already mapped
/// (non-paged pool MDLs are; others need a system PTE, which can run out), so the worst
/// case is assumed.
///
/// # Safety
/// As [`BufPieces::new`]. IRQL <= DISPATCH_LEVEL.
pub(crate) unsafe fn map_all(buf: &WSK_BUF) -> bool {
    let (mut mdl, mut offset, mut left) = (buf.Mdl, buf.Offset as usize, buf.Length);
    while left > 0 && !mdl.is_null() {
        // SAFETY: the MDL is part of the chain the caller vouched for.
        let count = unsafe { wsk_sys::MmGetMdlByteCount(mdl) } as usize;
        if offset < count {
            // SAFETY: as above; the pages are locked (provider memory), any IRQL <= DISPATCH.
            let base = unsafe {
                wsk_sys::MmGetSystemAddressForMdlSafe(mdl, wsk_sys::NormalPagePriority | wsk_sys::MdlMappingNoExecute)
            };
            if base.is_null() {
                return false;
            }
            left -= (count - offset).min(left);
            offset = 0;
        } else {
            offset -= count;
        }
        // SAFETY: as above.
        mdl = unsafe { (*mdl).Next };
    }
    true
}

/// An entry of an indication list: its buffer and the next entry.
pub(crate) trait Indication {
    /// The entry's buffer and the next entry (null at the end).
    ///
    /// # Safety
    /// `this` is a live entry of a list WSK indicated.
    unsafe fn parts(this: *mut Self) -> (*const WSK_BUF, *mut Self);
}

impl Indication for wsk_sys::WSK_DATA_INDICATION {
    unsafe fn parts(this: *mut Self) -> (*const WSK_BUF, *mut Self) {
        // SAFETY: live entry (caller).
        let next = unsafe { (*this).Next };
        // SAFETY: as above; only the field's address is taken.
        (unsafe { &raw const (*this).Buffer }, next)
    }
}

impl Indication for wsk_sys::WSK_DATAGRAM_INDICATION {
    unsafe fn parts(this: *mut Self) -> (*const WSK_BUF, *mut Self) {
        // SAFETY: live entry (caller).
        let next = unsafe { (*this).Next };
        // SAFETY: as above; only the field's address is taken.
        (unsafe { &raw const (*this).Buffer }, next)
    }
}

/// Maps every buffer of an indication list ([`map_all`]); `false` if one cannot be mapped.
///
/// # Safety
/// `head` is a list WSK indicated and has not been given back. IRQL <= DISPATCH_LEVEL.
pub(crate) unsafe fn list_mapped<H: Indication>(head: core::ptr::NonNull<H>) -> bool {
    let mut at = head.as_ptr();
    while !at.is_null() {
        // SAFETY: an entry of the caller's list.
        let (buf, next) = unsafe { H::parts(at) };
        // SAFETY: its buffer is provider memory, valid while the list is held.
        let buf = unsafe { &*buf };
        // SAFETY: as above.
        if !unsafe { map_all(buf) } {
            return false;
        }
        at = next;
    }
    true
}

/// The contiguous pieces of one `WSK_BUF`, in order.
pub(crate) struct BufPieces<'a> {
    mdl: *mut MDL,
    offset: usize,
    left: usize,
    _memory: PhantomData<&'a [u8]>,
}

// SAFETY: reads memory the borrowed retained indication keeps valid and unchanged.
unsafe impl Send for BufPieces<'_> {}

impl BufPieces<'_> {
    /// An iterator that yields nothing.
    pub(crate) fn empty() -> Self {
        Self { mdl: core::ptr::null_mut(), offset: 0, left: 0, _memory: PhantomData }
    }

    /// The pieces of `buf`.
    ///
    /// # Safety
    /// `buf`'s MDL chain describes non-paged memory that stays valid (and is not written)
    /// for the returned lifetime.
    pub(crate) unsafe fn new(buf: &WSK_BUF) -> Self {
        Self { mdl: buf.Mdl, offset: buf.Offset as usize, left: buf.Length, _memory: PhantomData }
    }
}

impl<'a> Iterator for BufPieces<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        while self.left > 0 && !self.mdl.is_null() {
            let mdl = self.mdl;
            // SAFETY: the MDL is part of the chain the constructor's caller vouched for.
            let count = unsafe { wsk_sys::MmGetMdlByteCount(mdl) } as usize;
            // SAFETY: as above.
            let next = unsafe { (*mdl).Next };
            self.mdl = next;
            if self.offset >= count {
                self.offset -= count;
                continue;
            }
            // SAFETY: as above; non-paged memory can be mapped at DISPATCH_LEVEL.
            let base = unsafe {
                wsk_sys::MmGetSystemAddressForMdlSafe(mdl, wsk_sys::NormalPagePriority | wsk_sys::MdlMappingNoExecute)
            };
            if base.is_null() {
                // Not reached for an accepted indication: `map_all` mapped every MDL before
                // it was retained, and the mapping stays. Ending the pieces is the only
                // answer left without a bugcheck.
                debug_assert!(false, "an accepted indication's MDL lost its mapping");
                self.left = 0;
                return None;
            }
            let len = (count - self.offset).min(self.left);
            // SAFETY: `offset < count`: within the MDL's mapped range.
            let start = unsafe { base.cast::<u8>().add(self.offset) };
            // SAFETY: the piece lies in the MDL's mapped range, valid for 'a.
            let piece = unsafe { core::slice::from_raw_parts(start, len) };
            self.offset = 0;
            self.left -= len;
            return Some(piece);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use std::vec::Vec;

    use wsk_sys::{MDL, MDL_MAPPED_TO_SYSTEM_VA, WSK_BUF, WSK_DATA_INDICATION};

    use super::*;
    use crate::tests::kernel::{chain, mdl_over};

    fn pieces(buf: &WSK_BUF) -> Vec<Vec<u8>> {
        // SAFETY: the test's MDLs describe its own arrays, alive and unwritten meanwhile.
        unsafe { BufPieces::new(buf) }.map(<[u8]>::to_vec).collect()
    }

    /// The pieces start `Offset` bytes into the chain (skipping whole MDLs), end after
    /// `Length` bytes (inside an MDL), and never run past the chain's end.
    #[test]
    fn pieces_honour_offset_and_length_across_mdls() {
        let (mut a, mut b, mut c) = (*b"abc", *b"defg", *b"hi");
        let mut mdls = [mdl_over(&mut a, true), mdl_over(&mut b, true), mdl_over(&mut c, true)];
        let head = chain(&mut mdls);
        let buf = |offset, length| WSK_BUF { Mdl: head, Offset: offset, Length: length };
        assert_eq!(pieces(&buf(0, 9)), [&b"abc"[..], b"defg", b"hi"]);
        assert_eq!(pieces(&buf(4, 4)), [&b"efg"[..], b"h"]);
        assert_eq!(pieces(&buf(3, 2)), [&b"de"[..]]);
        assert_eq!(pieces(&buf(1, 100)), [&b"bc"[..], b"defg", b"hi"], "stops at the chain's end");
        assert!(pieces(&buf(2, 0)).is_empty());
        assert!(pieces(&buf(9, 5)).is_empty(), "an offset past the chain yields nothing");
        assert_eq!(BufPieces::empty().next(), None);
        // SAFETY: as in `pieces`.
        assert!(unsafe { map_all(&buf(0, 9)) });
    }

    /// An MDL mapped earlier (`MDL_MAPPED_TO_SYSTEM_VA`, not non-paged pool) needs no new
    /// mapping; one neither mapped nor non-paged cannot be mapped here (the stand-in's
    /// `MmMapLockedPagesSpecifyCache` fails), and `map_all` says so, but only if the
    /// buffer's bytes reach into it.
    #[test]
    fn map_all_fails_exactly_when_a_described_mdl_cannot_be_mapped() {
        let (mut a, mut b) = (*b"abcd", *b"efgh");
        let mut first = mdl_over(&mut a, true);
        first.MdlFlags = MDL_MAPPED_TO_SYSTEM_VA;
        let mut mdls: [MDL; 2] = [first, mdl_over(&mut b, false)];
        let head = chain(&mut mdls);
        let mapped = |offset, length| {
            // SAFETY: the test's MDL chain over its own arrays.
            unsafe { map_all(&WSK_BUF { Mdl: head, Offset: offset, Length: length }) }
        };
        assert!(mapped(1, 3), "only the mapped MDL is described");
        assert!(!mapped(1, 4), "the unmappable MDL is described");
        assert!(!mapped(5, 1));
        assert_eq!(pieces(&WSK_BUF { Mdl: head, Offset: 1, Length: 3 }), [&b"bcd"[..]]);
    }

    /// `list_mapped` walks every entry of an indication list and fails on any entry with an
    /// unmappable buffer.
    #[test]
    fn list_mapped_checks_every_entry() {
        let (mut a, mut b) = (*b"one", *b"two");
        let mut mapped = mdl_over(&mut a, true);
        let mut unmapped = mdl_over(&mut b, false);
        let (mapped, unmapped): (*mut MDL, *mut MDL) = (&raw mut mapped, &raw mut unmapped);
        let buf = |mdl| WSK_BUF { Mdl: mdl, Offset: 0, Length: 3 };
        let mut second = WSK_DATA_INDICATION { Next: core::ptr::null_mut(), Buffer: buf(mapped) };
        let mut first = WSK_DATA_INDICATION { Next: &raw mut second, Buffer: buf(mapped) };
        let head = core::ptr::NonNull::from(&mut first);
        // SAFETY: the test's list, over its own MDLs and arrays.
        assert!(unsafe { list_mapped(head) });
        // SAFETY: `second` is only reached through the list (its address was taken above).
        unsafe { (*first.Next).Buffer.Mdl = unmapped };
        // SAFETY: as above.
        assert!(!unsafe { list_mapped(head) }, "the second entry cannot be mapped");
    }
}
