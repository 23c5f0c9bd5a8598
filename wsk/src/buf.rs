//! `IoBuf`: an owned buffer in non-paged pool with its MDL built once.
//!
//! Operations take an `IoBuf` by value and hand it back with their result (owned-buffer
//! API): while the provider may touch the memory, nobody else can. Because the MDL is built
//! when the buffer is created, sending and receiving allocate nothing.

use core::ptr::NonNull;

use wsk_sys::{MDL, WSK_BUF};

use crate::error::{Error, Result};
use crate::pool;

/// Pool tag of I/O buffers ("WskB").
pub const BUF_TAG: u32 = pool::tag::BUFFER;

/// Largest buffer one MDL describes: an MDL's 16-bit `Size` bounds its page array to
/// (65535 - 48) / 8 = 8185 pages; one page is kept for a buffer that does not start on a page
/// boundary (8184 pages, 32 MiB less 32 KiB).
pub const MAX_BUF: usize = 8184 * 4096;

/// An owned, non-paged I/O buffer with a valid length `len <= capacity`.
///
/// # Invariants
/// `data` is a pool allocation of `capacity` bytes (all initialized: pool memory is zeroed at
/// allocation) with tag [`BUF_TAG`]; `mdl` describes exactly those bytes and was built with
/// `MmBuildMdlForNonPagedPool`; both are owned by this value. The one exception is a buffer
/// linked into a chained send (`IoBuf::link`): its MDL then describes only the `len` valid
/// bytes and points to the next MDL of the send, until `IoBuf::unlink` restores it; a linked
/// buffer is owned by the send's chain, which unlinks it before anyone else sees it.
pub struct IoBuf {
    data: NonNull<u8>,
    capacity: usize,
    len: usize,
    mdl: NonNull<MDL>,
}

// SAFETY: `IoBuf` exclusively owns its memory and MDL, like `Box<[u8]>`.
unsafe impl Send for IoBuf {}
// SAFETY: shared access only reads.
unsafe impl Sync for IoBuf {}

impl IoBuf {
    /// Allocates a zeroed buffer of `capacity` bytes (at least 1) and its MDL.
    /// IRQL <= DISPATCH_LEVEL.
    pub fn with_capacity(capacity: usize) -> Result<Self> {
        if capacity > MAX_BUF {
            return Err(Error::InvalidInput("buffer larger than one MDL can describe (32 MiB - 32 KiB)"));
        }
        let capacity = capacity.max(1);
        let data = pool::allocate(capacity, BUF_TAG).ok_or(Error::NoMemory)?;
        // SAFETY: `data` is a live non-paged allocation of `capacity` bytes (<= MAX_BUF, so
        // the length fits a ULONG); no IRP is associated.
        let mdl = unsafe { wsk_sys::IoAllocateMdl(data.as_ptr().cast(), capacity as u32, 0, 0, core::ptr::null_mut()) };
        let Some(mdl) = NonNull::new(mdl) else {
            // SAFETY: allocated above with BUF_TAG, not shared.
            unsafe { pool::free(data, BUF_TAG) };
            return Err(Error::NoMemory);
        };
        // SAFETY: the MDL describes non-paged pool memory that outlives it.
        unsafe { wsk_sys::MmBuildMdlForNonPagedPool(mdl.as_ptr()) };
        // INVARIANT: all fields set as documented.
        Ok(Self { data, capacity, len: 0, mdl })
    }

    /// A buffer holding a copy of `bytes`. IRQL <= DISPATCH_LEVEL.
    pub fn copy_from(bytes: &[u8]) -> Result<Self> {
        let mut buf = Self::with_capacity(bytes.len())?;
        buf.as_mut_capacity()[..bytes.len()].copy_from_slice(bytes);
        buf.len = bytes.len();
        Ok(buf)
    }

    /// Bytes the buffer can hold.
    ///
    /// Any IRQL.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Bytes of valid data.
    ///
    /// Any IRQL.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there is no valid data.
    ///
    /// Any IRQL.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Sets the valid length (clamped to the capacity).
    ///
    /// Any IRQL.
    pub fn set_len(&mut self, len: usize) {
        self.len = len.min(self.capacity);
    }

    /// Clears the valid data.
    ///
    /// Any IRQL.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// The valid data.
    ///
    /// Any IRQL.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: by the invariant, `capacity >= len` initialized bytes are owned by `self`.
        unsafe { core::slice::from_raw_parts(self.data.as_ptr(), self.len) }
    }

    /// The whole capacity, for filling before a send.
    ///
    /// Any IRQL.
    pub fn as_mut_capacity(&mut self) -> &mut [u8] {
        // SAFETY: by the invariant all `capacity` bytes are initialized and owned by `self`;
        // `&mut self` gives exclusive access.
        unsafe { core::slice::from_raw_parts_mut(self.data.as_ptr(), self.capacity) }
    }

    /// Appends as much of `bytes` as fits; returns how many bytes were taken.
    ///
    /// Any IRQL.
    pub fn extend_from_slice(&mut self, bytes: &[u8]) -> usize {
        let n = bytes.len().min(self.capacity - self.len);
        let at = self.len;
        self.as_mut_capacity()[at..at + n].copy_from_slice(&bytes[..n]);
        self.len += n;
        n
    }

    /// Gives up the buffer as its MDL, which still describes it (for [`crate::buf_pool`]'s
    /// free lists). Any IRQL.
    pub(crate) fn into_mdl(self) -> NonNull<MDL> {
        let mdl = self.mdl;
        core::mem::forget(self);
        mdl
    }

    /// The buffer an earlier [`IoBuf::into_mdl`] gave up, empty (`len` 0).
    ///
    /// # Safety
    /// `mdl` came from [`IoBuf::into_mdl`] and is used once: the buffer is owned again.
    pub(crate) unsafe fn from_mdl(mdl: NonNull<MDL>) -> Self {
        // SAFETY: the MDL was built by `MmBuildMdlForNonPagedPool` over the buffer's whole
        // allocation (invariant), which set `MappedSystemVa` to its start and kept `ByteCount`;
        // it is ours (caller).
        let header = unsafe { mdl.as_ref() };
        let (data, capacity) = (header.MappedSystemVa, header.ByteCount as usize);
        // INVARIANT: the fields of the buffer that gave the MDL up (caller).
        Self { data: NonNull::new(data.cast()).expect("a built MDL maps its buffer"), capacity, len: 0, mdl }
    }

    /// Links the buffer into an MDL chain for one send of several buffers: its MDL describes
    /// the `len` valid bytes only and is followed by `next` (null at the end of the chain).
    /// The MDL is ours, so changing it is ours to do; shortening `ByteCount` over pages that
    /// stay locked and mapped is what `NdisAdjustMdlLength` does for the same purpose. Only a
    /// buffer with valid bytes is linked (an MDL of zero bytes is not a valid chain element).
    ///
    /// # Safety
    /// No operation uses the buffer's MDL meanwhile, and [`IoBuf::unlink`] is called before
    /// the buffer is used on its own again or handed to anyone; `next` is null or an MDL that
    /// outlives every use of the chain.
    pub(crate) unsafe fn link(&mut self, next: *mut MDL) {
        debug_assert!(self.len > 0);
        let mdl = self.mdl.as_ptr();
        // SAFETY: the MDL is owned by `self` and not in use (caller).
        unsafe { (*mdl).ByteCount = self.len as u32 };
        // SAFETY: as above.
        unsafe { (*mdl).Next = next };
    }

    /// Restores the MDL after [`IoBuf::link`]: all `capacity` bytes, no next MDL. Idempotent.
    ///
    /// # Safety
    /// No operation uses the buffer's MDL (the send that used the chain completed).
    pub(crate) unsafe fn unlink(&mut self) {
        let mdl = self.mdl.as_ptr();
        // INVARIANT: the MDL describes all `capacity` bytes again, alone.
        // SAFETY: the MDL is owned by `self` and not in use (caller).
        unsafe { (*mdl).ByteCount = self.capacity as u32 };
        // SAFETY: as above.
        unsafe { (*mdl).Next = core::ptr::null_mut() };
    }

    /// The buffer's MDL (for a chain's head or a `link`'s `next`).
    pub(crate) fn mdl(&self) -> *mut MDL {
        self.mdl.as_ptr()
    }

    /// A `WSK_BUF` over `offset..offset + length` of the buffer.
    pub(crate) fn wsk_buf(&self, offset: usize, length: usize) -> WSK_BUF {
        debug_assert!(offset + length <= self.capacity);
        WSK_BUF { Mdl: self.mdl.as_ptr(), Offset: offset as u32, Length: length }
    }
}

impl core::fmt::Debug for IoBuf {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("IoBuf").field("len", &self.len).field("capacity", &self.capacity).finish()
    }
}

impl Drop for IoBuf {
    fn drop(&mut self) {
        // SAFETY: by the invariant the MDL is owned by `self` and no operation holds the
        // buffer (operations own the `IoBuf` while the provider may use it).
        unsafe { wsk_sys::IoFreeMdl(self.mdl.as_ptr()) };
        // SAFETY: as above, the allocation is owned by `self` and freed once.
        unsafe { pool::free(self.data, BUF_TAG) };
    }
}
