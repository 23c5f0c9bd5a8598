//! Reading the bytes a `WSK_BUF` describes (an MDL chain, an offset and a length) as
//! contiguous pieces, for retained indications.

use core::marker::PhantomData;

use wsk_sys::{MDL, WSK_BUF};

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
                // Not mappable (never the case for provider buffers): no more bytes.
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
