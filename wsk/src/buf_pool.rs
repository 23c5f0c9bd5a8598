//! A pool of I/O buffers that connections borrow only while data is in flight.
//!
//! A connection that keeps its own receive buffer costs that buffer for as long as it lives,
//! idle or not. Borrowing one from [`BufPool`] when data arrives and giving it back when it has
//! been sent makes the memory scale with the data in flight instead of the connections open.
//!
//! The pool keeps freed buffers of three sizes ([`SMALL`], [`MEDIUM`], [`LARGE`]) on free
//! lists of its own: fixed arrays of cells, each holding one buffer (as its MDL, which still
//! describes it) or nothing. [`BufPool::take`] empties the first full cell it finds with one
//! atomic swap; [`BufPool::give`] fills the first empty one with one compare-exchange. A cell
//! changes hands whole, so a buffer is owned by exactly one party at a time (the loom model
//! `loom_take_and_give_hand_each_buffer_to_one_owner`), nothing waits and nothing allocates:
//! both are usable at DISPATCH_LEVEL. In steady state (no more buffers of a size in use at once
//! than its list holds) taking and giving allocate nothing; beyond that a take allocates and a
//! give frees, so what the lists keep is bounded: [`BufPool::MAX_CACHED_BYTES`].
//!
//! The library's receive paths that copy (a connection event stream's fallback receives) take
//! from [`global`]; drivers may use it for their own buffers. Buffers left on its lists are
//! freed by [`BufPool::drain`], which deregistration ([`crate::Wsk`]'s drop) calls.

use core::ptr::NonNull;

use wsk_sys::MDL;

use crate::buf::IoBuf;
use crate::error::Result;
use crate::loom::{AtomicPtr, AtomicUsize, Ordering};

/// The small size class: 4 KiB.
pub const SMALL: usize = 4 * 1024;
/// The medium size class: 16 KiB.
pub const MEDIUM: usize = 16 * 1024;
/// The large size class: 64 KiB.
pub const LARGE: usize = 64 * 1024;

/// Free cells of each class: small, medium, large.
const CELLS: [usize; 3] = [32, 16, 8];
/// The most cells of any class (the arrays' length).
const MAX_CELLS: usize = 32;
/// The classes' sizes.
const SIZES: [usize; 3] = [SMALL, MEDIUM, LARGE];

/// Defines `fn $name() -> &'static FreeCells<$t, $n>`: a process-wide cache of `$n` free
/// cells (a `static`); under loom, a fresh one per call (no model uses these caches).
macro_rules! static_free_cells {
    ($(#[$doc:meta])* fn $name:ident() -> $t:ty, $n:expr) => {
        $(#[$doc])*
        #[cfg(not(loom))]
        fn $name() -> &'static $crate::buf_pool::FreeCells<$t, { $n }> {
            static CELLS: $crate::buf_pool::FreeCells<$t, { $n }> = $crate::buf_pool::FreeCells::new($n);
            &CELLS
        }

        $(#[$doc])*
        #[cfg(loom)]
        fn $name() -> &'static $crate::buf_pool::FreeCells<$t, { $n }> {
            extern crate std;
            std::boxed::Box::leak(std::boxed::Box::new($crate::buf_pool::FreeCells::new($n)))
        }
    };
}
pub(crate) use static_free_cells;

/// Fixed cells holding owned pointers: the free list of one class (see the module docs).
pub(crate) struct FreeCells<T, const N: usize> {
    cells: [AtomicPtr<T>; N],
    /// Cells in use (at most `N`).
    used: usize,
}

impl<T, const N: usize> FreeCells<T, N> {
    #[cfg(not(loom))]
    pub(crate) const fn new(used: usize) -> Self {
        Self { cells: [const { AtomicPtr::new(core::ptr::null_mut()) }; N], used }
    }

    #[cfg(loom)]
    pub(crate) fn new(used: usize) -> Self {
        Self { cells: core::array::from_fn(|_| AtomicPtr::new(core::ptr::null_mut())), used }
    }

    /// Takes a pointer out of the first full cell: ownership passes to the caller.
    /// Any IRQL; never waits.
    pub(crate) fn take(&self) -> Option<NonNull<T>> {
        self.cells[..self.used].iter().find_map(|cell| {
            if cell.load(Ordering::Relaxed).is_null() {
                return None;
            }
            // Acquire: the giver's writes to what the pointer owns happen before our use.
            NonNull::new(cell.swap(core::ptr::null_mut(), Ordering::Acquire))
        })
    }

    /// Puts `item` into the first empty cell: ownership passes to the cells. Hands it back
    /// when every cell is full. Any IRQL; never waits.
    pub(crate) fn give(&self, item: NonNull<T>) -> core::result::Result<(), NonNull<T>> {
        for cell in &self.cells[..self.used] {
            // Release: our writes to what the pointer owns happen before the taker's use.
            if cell.compare_exchange(core::ptr::null_mut(), item.as_ptr(), Ordering::Release, Ordering::Relaxed).is_ok()
            {
                return Ok(());
            }
        }
        Err(item)
    }
}

/// The capacity of the buffer [`BufPool::take`] gives for `size` bytes: the size of the
/// smallest class that holds them, or `size` beyond the classes. Any IRQL.
pub fn capacity_for(size: usize) -> usize {
    SIZES.iter().copied().find(|&class| size <= class).unwrap_or(size.max(1))
}

/// Buffers of three sizes kept for reuse (see the module docs).
pub struct BufPool {
    classes: [FreeCells<MDL, MAX_CELLS>; 3],
    /// Buffers taken from the lists (not allocated) since load.
    reused: AtomicUsize,
    /// Buffers allocated by takes that found their list empty.
    allocated: AtomicUsize,
}

// SAFETY: the cells hold MDLs of buffers the pool owns (an `IoBuf` is `Send`); cells are
// handed over only through atomics.
unsafe impl Sync for BufPool {}
// SAFETY: as above.
unsafe impl Send for BufPool {}

impl BufPool {
    /// The most bytes the lists keep (every cell full): 32 x 4 KiB + 16 x 16 KiB + 8 x 64 KiB
    /// = 896 KiB, plus an MDL per buffer.
    pub const MAX_CACHED_BYTES: usize = CELLS[0] * SMALL + CELLS[1] * MEDIUM + CELLS[2] * LARGE;

    /// An empty pool. Any IRQL.
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        Self {
            classes: [FreeCells::new(CELLS[0]), FreeCells::new(CELLS[1]), FreeCells::new(CELLS[2])],
            reused: AtomicUsize::new(0),
            allocated: AtomicUsize::new(0),
        }
    }

    /// An empty pool. Any IRQL.
    #[cfg(loom)]
    pub fn new() -> Self {
        Self {
            classes: [FreeCells::new(CELLS[0]), FreeCells::new(CELLS[1]), FreeCells::new(CELLS[2])],
            reused: AtomicUsize::new(0),
            allocated: AtomicUsize::new(0),
        }
    }

    /// The class of buffers of at least `size` bytes: the smallest that holds them.
    fn class_for(size: usize) -> Option<usize> {
        SIZES.iter().position(|&class| size <= class)
    }

    /// An empty buffer of at least `size` bytes: one of the class that holds `size` from its
    /// list, or a new one of the class's size when the list is empty (or of `size` bytes,
    /// beyond [`LARGE`]). Fails with [`crate::Error::NoMemory`] only when a new one cannot be
    /// allocated. IRQL <= DISPATCH_LEVEL; never waits.
    pub fn take(&self, size: usize) -> Result<IoBuf> {
        let Some(class) = Self::class_for(size) else { return IoBuf::with_capacity(size) };
        if let Some(mdl) = self.classes[class].take() {
            self.reused.fetch_add(1, Ordering::Relaxed);
            // SAFETY: the cell held an MDL from `IoBuf::into_mdl` (only `give` fills cells),
            // and the swap made it ours alone.
            return Ok(unsafe { IoBuf::from_mdl(mdl) });
        }
        self.allocated.fetch_add(1, Ordering::Relaxed);
        IoBuf::with_capacity(SIZES[class])
    }

    /// Gives `buf` back: onto the list of its class when its capacity is exactly a class's
    /// size and the list has room, else it is freed. IRQL <= DISPATCH_LEVEL; never waits.
    pub fn give(&self, buf: IoBuf) {
        let Some(class) = SIZES.iter().position(|&class| class == buf.capacity()) else { return };
        if let Err(mdl) = self.classes[class].give(buf.into_mdl()) {
            // SAFETY: just given up by `into_mdl` and refused by every cell: still ours.
            drop(unsafe { IoBuf::from_mdl(mdl) });
        }
    }

    /// Frees every buffer on the lists; returns how many. Buffers given back later are kept
    /// again. IRQL <= DISPATCH_LEVEL.
    pub fn drain(&self) -> usize {
        let mut freed = 0;
        for class in &self.classes {
            while let Some(mdl) = class.take() {
                // SAFETY: as in `take`.
                drop(unsafe { IoBuf::from_mdl(mdl) });
                freed += 1;
            }
        }
        freed
    }

    /// Buffers taken from the lists, and buffers newly allocated by takes, since load.
    /// Any IRQL.
    pub fn stats(&self) -> (usize, usize) {
        (self.reused.load(Ordering::Relaxed), self.allocated.load(Ordering::Relaxed))
    }
}

#[cfg(not(loom))]
impl Default for BufPool {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(not(loom))]
static GLOBAL: BufPool = BufPool::new();

/// The library's buffer pool (see the module docs). Any IRQL.
#[cfg(not(loom))]
pub fn global() -> &'static BufPool {
    &GLOBAL
}

/// The library's buffer pool (a fresh one per call under loom, whose models do not use it).
#[cfg(loom)]
pub fn global() -> &'static BufPool {
    extern crate std;
    std::boxed::Box::leak(std::boxed::Box::new(BufPool::new()))
}

#[cfg(all(test, not(loom)))]
mod tests {
    extern crate std;

    use super::*;

    /// A buffer given back comes out again for the next take of its class (no allocation),
    /// empty; a size between classes gets the class above; a full list frees what it refuses.
    #[test]
    fn buffers_are_reused_by_class_and_the_lists_are_bounded() {
        let pool = BufPool::new();
        let mut buf = pool.take(100).unwrap();
        assert_eq!(buf.capacity(), SMALL);
        buf.extend_from_slice(b"data");
        let first = buf.as_slice().as_ptr();
        pool.give(buf);
        let again = pool.take(SMALL).unwrap();
        assert_eq!(again.as_slice().as_ptr(), first, "the same buffer comes back");
        assert!(again.is_empty(), "a reused buffer is empty");
        assert_eq!(pool.stats(), (1, 1));
        assert_eq!(pool.take(SMALL + 1).unwrap().capacity(), MEDIUM);
        assert_eq!(pool.take(LARGE + 1).unwrap().capacity(), LARGE + 1, "beyond the classes: exact size");
        pool.give(again);
        // More large buffers than the list holds: the surplus is freed (Miri sees no leak
        // after the drain, and no double free).
        let many: std::vec::Vec<IoBuf> = (0..CELLS[2] + 3).map(|_| pool.take(LARGE).unwrap()).collect();
        for buf in many {
            pool.give(buf);
        }
        // An odd capacity is never kept.
        pool.give(IoBuf::with_capacity(1000).unwrap());
        assert_eq!(pool.drain(), CELLS[2] + 1, "the large list full, and the small buffer");
        assert_eq!(pool.drain(), 0);
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;

    static ITEMS: [u8; 3] = [0; 3];

    fn item(i: usize) -> NonNull<u8> {
        NonNull::from(&ITEMS[i])
    }

    /// Two parties giving and taking on cells of two: each item is owned by exactly one
    /// party at a time (never taken twice, never lost): at the end, the items held plus the
    /// items in the cells are exactly the items there were.
    #[test]
    fn loom_take_and_give_hand_each_buffer_to_one_owner() {
        loom::model(|| {
            let cells: Arc<FreeCells<u8, 2>> = Arc::new(FreeCells::new(2));
            cells.give(item(0)).unwrap();
            let other = {
                let cells = cells.clone();
                loom::thread::spawn(move || {
                    let taken = cells.take();
                    let given = cells.give(item(1)).is_ok();
                    (taken, given)
                })
            };
            let mine = cells.take();
            let given = cells.give(item(2)).is_ok();
            let (theirs, their_given) = other.join().unwrap();
            let mut seen = [0u32; 3];
            for held in [mine, theirs].into_iter().flatten() {
                seen[ITEMS.iter().position(|b| core::ptr::eq(b, held.as_ptr())).unwrap()] += 1;
            }
            while let Some(left) = cells.take() {
                seen[ITEMS.iter().position(|b| core::ptr::eq(b, left.as_ptr())).unwrap()] += 1;
            }
            assert_eq!(seen[0], 1, "item 0 lost or duplicated");
            assert_eq!(seen[1], u32::from(their_given), "item 1 lost or duplicated");
            assert_eq!(seen[2], u32::from(given), "item 2 lost or duplicated");
        });
    }
}
