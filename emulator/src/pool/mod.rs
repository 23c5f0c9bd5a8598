//! Pool: `ExAllocatePool2`, `ExAllocatePoolWithTag`, `ExFreePool`, `ExFreePoolWithTag`.
//!
//! Every block is tracked (address, size, tag, pool type, owning session, allocation site).
//! IRPs, MDLs and work items are pool blocks of their own kind, so that one table answers
//! "what is at this address?" for every check.
//!
//! With the verifier on, the pool behaves like Driver Verifier's special pool:
//! * fresh memory from `ExAllocatePoolWithTag` is filled with [`FRESH_BYTE`] (never zero by luck);
//! * [`GUARD_BYTES`] bytes of [`GUARD_BYTE`] follow each block and are checked at free
//!   (buffer overrun);
//! * freed memory is filled with [`FREED_BYTE`] and kept in a quarantine (its reuse delayed)
//!   before it goes back to the host allocator; the fill is checked when it leaves the
//!   quarantine and at unload (write after free).

mod exports;

pub use exports::{ExAllocatePool2, ExAllocatePoolWithTag, ExFreePool, ExFreePoolWithTag};

use std::alloc::{Layout, alloc, alloc_zeroed, dealloc};
use std::collections::{BTreeMap, VecDeque};
use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use wsk_sys::PAGE_SIZE;

use crate::counters::{self, bump};
use crate::fault::{self, AllocationKind};
use crate::kernel;
use crate::site::Site;
use crate::sync::lock;
use crate::verifier::{Leak, LeakKind, Rule, bugcheck, tag_text};

/// Fill of fresh, uninitialized special-pool memory.
pub const FRESH_BYTE: u8 = 0xA5;
/// Fill of freed special-pool memory.
pub const FREED_BYTE: u8 = 0xDD;
/// Fill of the guard bytes after each special-pool block.
pub const GUARD_BYTE: u8 = 0xFD;
/// Guard bytes after each special-pool block.
pub const GUARD_BYTES: usize = 16;
/// Alignment of pool blocks smaller than a page (x64 pool granularity).
const POOL_ALIGNMENT: usize = 16;
/// Freed blocks kept at most (count).
const QUARANTINE_BLOCKS: usize = 4096;
/// Freed blocks kept at most (bytes).
const QUARANTINE_BYTES: usize = 32 << 20;
/// Larger requests fail as the real pool would for lack of memory.
const MAX_ALLOCATION: usize = 1 << 30;

/// What a block holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BlockKind {
    Pool,
    Irp,
    Mdl,
    WorkItem,
}

impl BlockKind {
    fn allocation_kind(self) -> AllocationKind {
        match self {
            BlockKind::Pool => AllocationKind::Pool,
            BlockKind::Irp => AllocationKind::Irp,
            BlockKind::Mdl => AllocationKind::Mdl,
            BlockKind::WorkItem => AllocationKind::WorkItem,
        }
    }

    fn leak_kind(self) -> LeakKind {
        match self {
            BlockKind::Pool => LeakKind::Pool,
            BlockKind::Irp => LeakKind::Irp,
            BlockKind::Mdl => LeakKind::Mdl,
            BlockKind::WorkItem => LeakKind::WorkItem,
        }
    }

    pub(crate) fn describe(self) -> &'static str {
        match self {
            BlockKind::Pool => "a pool block",
            BlockKind::Irp => "an IRP",
            BlockKind::Mdl => "an MDL",
            BlockKind::WorkItem => "a work item",
        }
    }
}

struct Block {
    /// Requested size.
    size: usize,
    /// Host layout (size plus guard).
    layout: Layout,
    /// Guard bytes after `size` (0 when allocated with the verifier off).
    guard: usize,
    tag: u32,
    paged: bool,
    kind: BlockKind,
    session: u64,
    site: Option<Arc<Site>>,
    freed: bool,
}

impl Block {
    fn special(&self) -> bool {
        self.guard != 0
    }
}

struct PoolState {
    blocks: BTreeMap<usize, Block>,
    quarantine: VecDeque<usize>,
    quarantine_bytes: usize,
}

impl PoolState {
    /// The block whose host allocation contains `addr`.
    fn containing(&self, addr: usize) -> Option<(usize, &Block)> {
        let (&base, block) = self.blocks.range(..=addr).next_back()?;
        (addr < base + block.layout.size()).then_some((base, block))
    }
}

static POOL: Mutex<PoolState> =
    Mutex::new(PoolState { blocks: BTreeMap::new(), quarantine: VecDeque::new(), quarantine_bytes: 0 });

/// Blocks in the quarantine (`PoolState::quarantine.len()`, written under the pool lock):
/// while it is 0 no address is in freed pool, which [`in_freed_block`] answers without the
/// lock or the walk of the block table. With the verifier off no block is special and the
/// quarantine stays empty, so the checks every MDL and `WSK_BUF` passes (several per send of
/// a received item, one per piece) cost an atomic load.
static QUARANTINED: AtomicUsize = AtomicUsize::new(0);

/// An allocation request.
pub(crate) struct Request {
    pub kind: BlockKind,
    pub size: usize,
    pub tag: u32,
    pub paged: bool,
    pub zeroed: bool,
}

/// Fills `len` bytes at `start` with `byte`.
///
/// # Safety
/// `start..start + len` must be writable memory of one live host allocation.
unsafe fn fill(start: *mut u8, len: usize, byte: u8) {
    // SAFETY: guaranteed by the caller.
    unsafe { ptr::write_bytes(start, byte, len) }
}

/// Whether `len` bytes at `start` all equal `byte`.
///
/// # Safety
/// `start..start + len` must be readable memory of one live host allocation.
unsafe fn all_equal(start: *const u8, len: usize, byte: u8) -> bool {
    // SAFETY: guaranteed by the caller.
    let bytes = unsafe { std::slice::from_raw_parts(start, len) };
    bytes.iter().all(|&b| b == byte)
}

/// Allocates a tracked block. Returns null when fault injection fails it or the host is out
/// of memory. Counts the allocation for fault injection.
pub(crate) fn allocate(request: Request) -> *mut u8 {
    if fault::should_fail(request.kind.allocation_kind()) || request.size > MAX_ALLOCATION {
        return ptr::null_mut();
    }
    let guard = if kernel::verifier() { GUARD_BYTES } else { 0 };
    let align = if request.size >= PAGE_SIZE { PAGE_SIZE } else { POOL_ALIGNMENT };
    let Ok(layout) = Layout::from_size_align(request.size.max(1) + guard, align) else {
        return ptr::null_mut();
    };
    let block = if request.zeroed {
        // SAFETY: `layout` has a non-zero size.
        unsafe { alloc_zeroed(layout) }
    } else {
        // SAFETY: `layout` has a non-zero size.
        unsafe { alloc(layout) }
    };
    if block.is_null() {
        return block;
    }
    if guard != 0 {
        if !request.zeroed {
            // SAFETY: the first `size` bytes belong to the fresh allocation.
            unsafe { fill(block, request.size, FRESH_BYTE) };
        }
        // SAFETY: bytes `size..layout.size()` belong to the fresh allocation.
        unsafe { fill(block.wrapping_add(request.size), layout.size() - request.size, GUARD_BYTE) };
    }
    let site = kernel::capture_sites().then(|| Arc::new(Site::capture()));
    let entry = Block {
        size: request.size,
        layout,
        guard: if guard != 0 { layout.size() - request.size } else { 0 },
        tag: request.tag,
        paged: request.paged,
        kind: request.kind,
        session: kernel::session(),
        site,
        freed: false,
    };
    lock(&POOL).blocks.insert(block as usize, entry);
    match request.kind {
        BlockKind::Pool => bump::pool_allocations(1),
        BlockKind::Irp => bump::irp_allocations(1),
        BlockKind::Mdl => bump::mdl_allocations(1),
        BlockKind::WorkItem => bump::work_item_allocations(1),
    }
    counters::add_live(request.paged, request.size as u64);
    block
}

/// Why a free was refused.
#[derive(Debug)]
pub(crate) enum FreeError {
    Null,
    /// Not the start of any block (`Some(base)` when inside one).
    NotAllocated(Option<(usize, BlockKind)>),
    AlreadyFreed {
        kind: BlockKind,
        tag: u32,
        size: usize,
    },
    WrongKind(BlockKind),
}

/// A successful free.
#[derive(Debug)]
pub(crate) struct Freed {
    pub size: usize,
    pub tag: u32,
    pub paged: bool,
    /// The guard bytes after the block were overwritten.
    pub overrun: bool,
}

/// A quarantined block whose poison was damaged.
struct Damaged {
    address: usize,
    size: usize,
    tag: u32,
    session: u64,
}

/// Frees a tracked block of `kind`.
pub(crate) fn free(block: *mut u8, kind: BlockKind) -> Result<Freed, FreeError> {
    if block.is_null() {
        return Err(FreeError::Null);
    }
    let addr = block as usize;
    let mut release: Vec<(usize, Layout)> = Vec::new();
    let mut damaged: Vec<Damaged> = Vec::new();
    let freed = {
        let mut state = lock(&POOL);
        let Some(entry) = state.blocks.get_mut(&addr) else {
            let inside = state.containing(addr).map(|(base, b)| (base, b.kind));
            return Err(FreeError::NotAllocated(inside));
        };
        if entry.freed {
            return Err(FreeError::AlreadyFreed { kind: entry.kind, tag: entry.tag, size: entry.size });
        }
        if entry.kind != kind {
            return Err(FreeError::WrongKind(entry.kind));
        }
        let freed = Freed { size: entry.size, tag: entry.tag, paged: entry.paged, overrun: false };
        if entry.special() {
            // SAFETY: the guard bytes lie inside the live host allocation of this block.
            let intact = unsafe { all_equal(block.wrapping_add(entry.size), entry.guard, GUARD_BYTE) };
            // SAFETY: the whole host allocation is live until it leaves the quarantine.
            unsafe { fill(block, entry.layout.size(), FREED_BYTE) };
            entry.freed = true;
            entry.site = None;
            let bytes = entry.layout.size();
            state.quarantine.push_back(addr);
            state.quarantine_bytes += bytes;
            while state.quarantine.len() > QUARANTINE_BLOCKS || state.quarantine_bytes > QUARANTINE_BYTES {
                let Some(old) = state.quarantine.pop_front() else { break };
                let Some(old_block) = state.blocks.remove(&old) else { continue };
                state.quarantine_bytes -= old_block.layout.size();
                // SAFETY: quarantined blocks stay allocated until released below.
                if !unsafe { all_equal(old as *const u8, old_block.layout.size(), FREED_BYTE) } {
                    damaged.push(Damaged {
                        address: old,
                        size: old_block.size,
                        tag: old_block.tag,
                        session: old_block.session,
                    });
                }
                release.push((old, old_block.layout));
            }
            QUARANTINED.store(state.quarantine.len(), Ordering::SeqCst);
            Freed { overrun: !intact, ..freed }
        } else {
            let layout = entry.layout;
            state.blocks.remove(&addr);
            release.push((addr, layout));
            freed
        }
    };
    for (address, layout) in release {
        // SAFETY: `address` was returned by `alloc`/`alloc_zeroed` with `layout`, and its
        // table entry is gone, so nothing frees it again.
        unsafe { dealloc(address as *mut u8, layout) };
    }
    report_damaged(damaged);
    match kind {
        BlockKind::Pool => bump::pool_frees(1),
        BlockKind::Irp => bump::irp_frees(1),
        BlockKind::Mdl => bump::mdl_frees(1),
        BlockKind::WorkItem => bump::work_item_frees(1),
    }
    counters::sub_live(freed.paged, freed.size as u64);
    Ok(freed)
}

fn report_damaged(damaged: Vec<Damaged>) {
    let session = kernel::session();
    for block in damaged {
        let message = format!(
            "freed pool block at 0x{:x} (tag '{}', {} bytes) was written after it was freed",
            block.address,
            tag_text(block.tag),
            block.size
        );
        if block.session == session && session != 0 {
            bugcheck(Rule::PoolWriteAfterFree, message);
        } else {
            eprintln!("*** wsk-emulator: {message} (by an earlier driver)");
        }
    }
}

/// What an address range is, for checks on memory the driver hands to the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RangeClass {
    /// Not pool memory (stack, static or host heap).
    Unknown,
    /// Inside a live block; `fits` tells whether the whole range is inside it.
    Live { base: usize, size: usize, paged: bool, fits: bool },
    /// Inside a freed (quarantined) block.
    Freed { base: usize, size: usize, tag: u32 },
}

/// Classifies `addr..addr + len`.
pub(crate) fn classify(addr: usize, len: usize) -> RangeClass {
    let state = lock(&POOL);
    match state.containing(addr) {
        None => RangeClass::Unknown,
        Some((base, block)) if block.freed => RangeClass::Freed { base, size: block.size, tag: block.tag },
        Some((base, block)) => RangeClass::Live {
            base,
            size: block.size,
            paged: block.paged,
            fits: addr.saturating_add(len) <= base + block.size,
        },
    }
}

/// Whether `addr` lies in a freed (quarantined) block: [`classify`]'s `Freed`, for the
/// checks that ask nothing else.
pub(crate) fn in_freed_block(addr: usize) -> bool {
    if QUARANTINED.load(Ordering::SeqCst) == 0 {
        return false;
    }
    matches!(classify(addr, 1), RangeClass::Freed { .. })
}

/// The kind of the freed block starting exactly at `addr`, if it is in the quarantine.
pub(crate) fn freed_kind(addr: usize) -> Option<BlockKind> {
    let state = lock(&POOL);
    state.blocks.get(&addr).filter(|b| b.freed).map(|b| b.kind)
}

/// Live blocks of `session`, as leaks.
pub(crate) fn leaks(session: u64) -> Vec<Leak> {
    let state = lock(&POOL);
    state
        .blocks
        .iter()
        .filter(|(_, b)| !b.freed && b.session == session)
        .map(|(&address, b)| {
            let detail = if b.paged { "paged" } else { "non-paged" }.to_owned();
            Leak::new(b.kind.leak_kind(), b.tag, b.size, address, detail).with_site(b.site.clone())
        })
        .collect()
}

/// Checks the poison of every quarantined block of `session` (write after free).
pub(crate) fn check_quarantine(session: u64) {
    let damaged: Vec<Damaged> = {
        let state = lock(&POOL);
        state
            .blocks
            .iter()
            .filter(|(_, b)| b.freed && b.session == session)
            // SAFETY: quarantined blocks stay allocated while the pool lock is held.
            .filter(|&(&address, b)| !unsafe { all_equal(address as *const u8, b.layout.size(), FREED_BYTE) })
            .map(|(&address, b)| Damaged { address, size: b.size, tag: b.tag, session: b.session })
            .collect()
    };
    report_damaged(damaged);
}
