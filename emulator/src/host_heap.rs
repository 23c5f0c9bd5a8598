//! The process's global allocator while the emulator is linked in: the host's system
//! allocator, each operation run as [`host_work`](crate::irql::host_work), so that the host
//! allocator's own sleeps (its arena lock, contended when a block allocated on one thread is
//! freed on another) are not reported as the driver blocking at DISPATCH_LEVEL. Kernel routines
//! that allocate or free (`ExAllocatePool2`, `IoFreeIrp`, `IoFreeMdl`, and the provider's own
//! bookkeeping) may be called at DISPATCH_LEVEL, and on Windows they never sleep there.
//!
//! Outside a watched DISPATCH section an operation costs one thread-local read more than the
//! system allocator's. A binary that links the emulator cannot install a global allocator of
//! its own.

use std::alloc::{GlobalAlloc, Layout, System};

use crate::irql::host_work;

/// See the module docs.
struct HostHeap;

// SAFETY: every operation is the system allocator's, with the caller's arguments unchanged.
unsafe impl GlobalAlloc for HostHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded contract.
        host_work(|| unsafe { System.alloc(layout) })
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded contract.
        host_work(|| unsafe { System.alloc_zeroed(layout) })
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded contract.
        host_work(|| unsafe { System.dealloc(ptr, layout) });
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded contract.
        host_work(|| unsafe { System.realloc(ptr, layout, new_size) })
    }
}

#[global_allocator]
static HOST_HEAP: HostHeap = HostHeap;
