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
