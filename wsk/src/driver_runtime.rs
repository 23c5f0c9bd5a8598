//! What a kernel driver image needs exactly once (feature `driver-runtime`, Windows targets):
//! a panic handler that bugchecks, a global allocator over non-paged pool, `_fltused`, and a
//! stub for the C++ exception personality routine that the precompiled `core` references
//! (never called: drivers build with `panic = "abort"`).

use core::alloc::{GlobalAlloc, Layout};

/// Bugcheck code used for a Rust panic in a driver (`MANUALLY_INITIATED_CRASH`-style user
/// code range is not used; this is the documented "driver bug" style `0xE2`-free value).
pub const PANIC_BUGCHECK_CODE: u32 = 0x5253_5450; // "RSTP"

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    crate::log!(error, "wsk: driver panic: {}", info);
    let line = info.location().map_or(0, |l| l.line() as usize);
    // SAFETY: bugchecking is the documented way for a driver to stop the system on an
    // unrecoverable internal error; the parameters are plain integers.
    unsafe { wsk_sys::KeBugCheckEx(PANIC_BUGCHECK_CODE, line, 0, 0, 0) }
}

/// Global allocator over tagged non-paged pool (for `alloc` users; the library itself
/// allocates through [`crate::pool`] so that failures are errors, not panics).
struct PoolAllocator;

// SAFETY: pool allocations are 16-byte aligned; larger alignments are refused (null).
unsafe impl GlobalAlloc for PoolAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.align() > crate::pool::POOL_ALIGN {
            return core::ptr::null_mut();
        }
        crate::pool::allocate(layout.size().max(1), crate::pool::TAG)
            .map_or(core::ptr::null_mut(), core::ptr::NonNull::as_ptr)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        if let Some(p) = core::ptr::NonNull::new(ptr) {
            // SAFETY: `ptr` came from `alloc` above with the same tag.
            unsafe { crate::pool::free(p, crate::pool::TAG) }
        }
    }
}

#[global_allocator]
static ALLOCATOR: PoolAllocator = PoolAllocator;

/// Marks the image as using floating point (the MSVC linker convention).
#[unsafe(no_mangle)]
#[used]
pub static _fltused: i32 = 0;

/// The precompiled `core` for `x86_64-pc-windows-msvc` names this personality routine in its
/// unwind tables. With `panic = "abort"` nothing unwinds, so it never runs.
#[unsafe(no_mangle)]
pub extern "C" fn __CxxFrameHandler3() -> i32 {
    // EXCEPTION_CONTINUE_SEARCH
    1
}
