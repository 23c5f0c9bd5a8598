//! Owned values in pool: [`PoolBox`], and [`AnyPoolBox`] for a holder that does not know the
//! value's type.

use core::any::TypeId;
use core::mem::{ManuallyDrop, align_of, size_of};
use core::ops::{Deref, DerefMut};
use core::ptr::NonNull;

use super::{POOL_ALIGNMENT, allocate, free, tag};

/// An owned value in nonpaged pool with tag `TAG`: a fallible `Box` with a stable address,
/// usable from completion routines and DPCs.
///
/// # Invariants
/// `ptr` points to a live, initialized `T` in a pool allocation with tag `TAG` that this box
/// owns.
pub struct PoolBox<T, const TAG: u32 = { tag::LIBRARY }> {
    ptr: NonNull<T>,
}

// SAFETY: `PoolBox<T>` owns its `T` exactly as `Box<T>` does.
unsafe impl<T: Send, const TAG: u32> Send for PoolBox<T, TAG> {}
// SAFETY: as above; shared access only hands out `&T`.
unsafe impl<T: Sync, const TAG: u32> Sync for PoolBox<T, TAG> {}

impl<T> PoolBox<T> {
    /// Moves `value` into pool with the library's general tag ([`tag::LIBRARY`]). On
    /// allocation failure the value is handed back.
    ///
    /// IRQL <= DISPATCH_LEVEL.
    pub fn try_new(value: T) -> Result<Self, T> {
        Self::try_new_tagged(value)
    }

    /// Re-takes ownership of a pointer from [`PoolBox::into_raw`] of a box with the
    /// library's general tag.
    ///
    /// # Safety
    /// As [`PoolBox::from_raw_tagged`].
    ///
    /// Any IRQL.
    pub unsafe fn from_raw(ptr: NonNull<T>) -> Self {
        // SAFETY: forwarded contract.
        unsafe { Self::from_raw_tagged(ptr) }
    }
}

impl<T, const TAG: u32> PoolBox<T, TAG> {
    const ALIGN_OK: () = assert!(align_of::<T>() <= POOL_ALIGNMENT, "PoolBox<T> needs align <= 16");

    /// Moves `value` into pool with tag `TAG` (one of [`tag`]'s). On allocation failure the
    /// value is handed back.
    ///
    /// IRQL <= DISPATCH_LEVEL.
    pub fn try_new_tagged(value: T) -> Result<Self, T> {
        let () = Self::ALIGN_OK;
        let Some(raw) = allocate(size_of::<T>(), TAG) else { return Err(value) };
        let ptr = raw.cast::<T>();
        // SAFETY: `raw` is a fresh allocation aligned to POOL_ALIGNMENT (>= align_of::<T>(),
        // checked at compile time) of at least size_of::<T>() bytes.
        unsafe { ptr.as_ptr().write(value) };
        // INVARIANT: initialized above, owned by the new box.
        Ok(Self { ptr })
    }

    /// The stable address of the value.
    ///
    /// Any IRQL.
    pub fn as_ptr(&self) -> *mut T {
        self.ptr.as_ptr()
    }

    /// Gives up ownership; rebuild with [`PoolBox::from_raw_tagged`] (or
    /// [`PoolBox::from_raw`] for the general tag).
    ///
    /// Any IRQL.
    pub fn into_raw(this: Self) -> NonNull<T> {
        ManuallyDrop::new(this).ptr
    }

    /// Re-takes ownership of a pointer from [`PoolBox::into_raw`].
    ///
    /// # Safety
    /// `ptr` came from `into_raw` of a `PoolBox<T, TAG>` and is not owned by anything else.
    ///
    /// Any IRQL.
    pub unsafe fn from_raw_tagged(ptr: NonNull<T>) -> Self {
        // INVARIANT: the caller hands back the ownership `into_raw` gave up.
        Self { ptr }
    }
}

impl<T, const TAG: u32> Deref for PoolBox<T, TAG> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: by the type invariant the value is live and owned by `self`.
        unsafe { self.ptr.as_ref() }
    }
}

impl<T, const TAG: u32> DerefMut for PoolBox<T, TAG> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: by the type invariant; `&mut self` gives exclusive access.
        unsafe { self.ptr.as_mut() }
    }
}

impl<T, const TAG: u32> Drop for PoolBox<T, TAG> {
    fn drop(&mut self) {
        // SAFETY: by the type invariant the value is live; it is dropped exactly once here.
        unsafe { core::ptr::drop_in_place(self.ptr.as_ptr()) };
        // SAFETY: the allocation came from `allocate` with TAG and is not used again.
        unsafe { free(self.ptr.cast(), TAG) };
    }
}

impl<T: core::fmt::Debug, const TAG: u32> core::fmt::Debug for PoolBox<T, TAG> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        (**self).fmt(f)
    }
}

/// A [`PoolBox`] whose value type is known at run time only: for a holder that keeps values
/// of several types alive for someone else (an operation slot keeping a request block until
/// its IRP completes). Dropping it drops the value and frees the block; [`AnyPoolBox::downcast`]
/// gives the typed box back.
///
/// # Invariants
/// `ptr` came from [`PoolBox::into_raw`] of a `PoolBox<T, TAG>` with
/// `TypeId::of::<PoolBox<T, TAG>>() == type_id`, `T: Send`, and is owned by this value;
/// `drop` is `drop_box::<T, TAG>`.
pub struct AnyPoolBox {
    ptr: NonNull<u8>,
    type_id: TypeId,
    drop: unsafe fn(NonNull<u8>),
}

// SAFETY: only built from boxes of `Send` values (type invariant), which it owns.
unsafe impl Send for AnyPoolBox {}

/// Drops a box taken apart by [`AnyPoolBox::new`].
///
/// # Safety
/// `ptr` came from `PoolBox::<T, TAG>::into_raw` and is owned by the caller.
unsafe fn drop_box<T, const TAG: u32>(ptr: NonNull<u8>) {
    // SAFETY: forwarded contract.
    drop(unsafe { PoolBox::<T, TAG>::from_raw_tagged(ptr.cast()) });
}

impl AnyPoolBox {
    /// Forgets the type of `value`'s box.
    ///
    /// Any IRQL.
    pub fn new<T: Send + 'static, const TAG: u32>(value: PoolBox<T, TAG>) -> Self {
        // INVARIANT: the pointer, type and drop function of one `PoolBox<T, TAG>`, T: Send.
        Self {
            ptr: PoolBox::into_raw(value).cast(),
            type_id: TypeId::of::<PoolBox<T, TAG>>(),
            drop: drop_box::<T, TAG>,
        }
    }

    /// The typed box back, or `Err(self)` when it holds another type (or tag).
    ///
    /// Any IRQL.
    pub fn downcast<T: 'static, const TAG: u32>(self) -> Result<PoolBox<T, TAG>, Self> {
        if self.type_id != TypeId::of::<PoolBox<T, TAG>>() {
            return Err(self);
        }
        let ptr = ManuallyDrop::new(self).ptr;
        // SAFETY: by the type invariant and the check above, `ptr` came from
        // `PoolBox::<T, TAG>::into_raw`; ownership moves from the forgotten `self` to the box.
        Ok(unsafe { PoolBox::from_raw_tagged(ptr.cast()) })
    }
}

impl Drop for AnyPoolBox {
    fn drop(&mut self) {
        // SAFETY: by the type invariant `drop` matches the box `ptr` came from, which `self`
        // owns and gives up here.
        unsafe { (self.drop)(self.ptr) };
    }
}

impl core::fmt::Debug for AnyPoolBox {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("AnyPoolBox").field("ptr", &self.ptr).finish()
    }
}
