//! Provider memory for indications: fixed-size blocks (one header page for the
//! `WSK_DATA_INDICATION` / `WSK_DATAGRAM_INDICATION` structures, their MDLs and addresses, then
//! [`DATA_CAPACITY`] bytes of data).
//!
//! Two ways to get and give back a block, behind one type:
//!
//! * verifier off: blocks come from the host allocator and go back to a small free list when
//!   the client is done with them, so a busy socket allocates nothing in steady state;
//! * verifier on (*guarded* blocks, in the spirit of Driver Verifier's special pool): each block
//!   is its own anonymous mapping. When the client gives it back it is made inaccessible
//!   (`PROT_NONE`, its pages left for the host to reclaim lazily: `MADV_FREE`) and kept in a
//!   quarantine of the most recent [`QUARANTINE`] blocks. A fault inside a quarantined block is
//!   the client touching an indication after it released it: the fault handler reports
//!   `WSK_INDICATION_TOUCHED_AFTER_RELEASE` and stops the process, as the machine would. A block
//!   leaving the quarantine (the oldest, when another enters) is made accessible again and
//!   reused for a later indication (up to [`RECYCLED`] of them wait; more are unmapped): a busy
//!   socket then maps nothing and, unless the host reclaimed the pages meanwhile, takes no
//!   page fault per indication.
//!
//! ```text
//!   Block::new --> filled by the provider --> indicated to the client
//!        |                                        | returned from the callback (not retained),
//!        |  nothing to indicate                   | WskRelease, or reclaimed at close
//!        v                                        v
//!   dropped (unmapped / freed)         give_back: guarded -> PROT_NONE, quarantined (fault = report)
//!                                                            -> out of quarantine: RW, free list
//!                                                 plain   -> free list (or freed)
//! ```

use std::alloc::{Layout, alloc, dealloc};
use std::ffi::c_void;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use crate::irql::host_work;
use crate::sync::lock;

/// Data bytes a block holds (the largest indication the provider makes: 64 KiB).
pub(crate) const DATA_CAPACITY: usize = 64 * 1024;
/// Quarantined guarded blocks kept at most (the oldest is unmapped first).
pub(crate) const QUARANTINE: usize = 1024;
/// Plain blocks, and guarded blocks out of quarantine, kept for reuse at most (each kind).
const RECYCLED: usize = 64;

/// The host page size (at least 4 KiB).
fn page_size() -> usize {
    static PAGE: OnceLock<usize> = OnceLock::new();
    *PAGE.get_or_init(|| {
        // SAFETY: sysconf has no preconditions.
        let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        usize::try_from(size).unwrap_or(4096).max(4096)
    })
}

/// Bytes of a block: one header page and the data area.
fn block_size() -> usize {
    page_size() + DATA_CAPACITY.next_multiple_of(page_size())
}

/// Bytes at the start of a block for structures (one page).
pub(crate) fn header_size() -> usize {
    page_size()
}

/// A block of provider memory for one indication (or one chain of them).
///
/// # Invariants
/// `base` points to [`block_size`] bytes, readable and writable while the block exists,
/// page-aligned; guarded blocks are a mapping of their own, plain ones come from `alloc` with
/// [`Block::layout`].
pub(crate) struct Block {
    base: NonNull<u8>,
    guarded: bool,
}

// SAFETY: a block is plain memory owned by whoever holds the `Block`.
unsafe impl Send for Block {}

/// Plain blocks ready for reuse.
static FREE: Mutex<Vec<Block>> = Mutex::new(Vec::new());

/// Guarded blocks out of quarantine, accessible again, ready for reuse.
static GUARDED_FREE: Mutex<Vec<Block>> = Mutex::new(Vec::new());

impl Block {
    fn layout() -> Layout {
        // The page size is a power of two and the size a multiple of it: always valid.
        Layout::from_size_align(block_size(), page_size()).expect("page-aligned block layout")
    }

    /// A block: guarded when the verifier is on, plain (recycled if possible) otherwise.
    /// `None` when the host is out of memory.
    pub(crate) fn new() -> Option<Block> {
        if crate::kernel::verifier() { Block::guarded() } else { Block::plain() }
    }

    fn plain() -> Option<Block> {
        if let Some(block) = lock(&FREE).pop() {
            return Some(block);
        }
        // SAFETY: the layout has a non-zero size.
        let base = NonNull::new(unsafe { alloc(Block::layout()) })?;
        // INVARIANT: a fresh allocation of the block layout.
        Some(Block { base, guarded: false })
    }

    fn guarded() -> Option<Block> {
        install_fault_handler();
        if let Some(block) = lock(&GUARDED_FREE).pop() {
            return Some(block);
        }
        // SAFETY: an anonymous private mapping at an address of the kernel's choice.
        let base = host_work(|| unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                block_size(),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        });
        if base == libc::MAP_FAILED {
            return None;
        }
        // INVARIANT: a fresh mapping of the block size (page-aligned by mmap).
        NonNull::new(base.cast::<u8>()).map(|base| Block { base, guarded: true })
    }

    /// The header area ([`header_size`] bytes, page-aligned).
    pub(crate) fn header(&self) -> *mut u8 {
        self.base.as_ptr()
    }

    /// The data area ([`DATA_CAPACITY`] bytes, page-aligned).
    pub(crate) fn data(&self) -> *mut u8 {
        self.base.as_ptr().wrapping_add(header_size())
    }

    /// Whether the block is guarded (its own mapping, quarantined when given back).
    pub(crate) fn is_guarded(&self) -> bool {
        self.guarded
    }

    /// The first `len` data bytes (at most [`DATA_CAPACITY`]).
    pub(crate) fn bytes(&self, len: usize) -> &[u8] {
        // SAFETY: the data area is readable (invariant) and `len` is clamped to it; the
        // provider holds the block, so nobody frees it meanwhile.
        unsafe { std::slice::from_raw_parts(self.data(), len.min(DATA_CAPACITY)) }
    }

    /// The whole data area, for the provider to fill.
    pub(crate) fn space(&mut self) -> &mut [u8] {
        // SAFETY: the data area is writable (invariant); `&mut self` makes the access unique.
        unsafe { std::slice::from_raw_parts_mut(self.data(), DATA_CAPACITY) }
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        if self.guarded {
            // SAFETY: the block's own mapping (invariant), unmapped once.
            host_work(|| unsafe { libc::munmap(self.base.as_ptr().cast(), block_size()) });
        } else {
            // SAFETY: allocated with this layout (invariant), freed once.
            unsafe { dealloc(self.base.as_ptr(), Block::layout()) };
        }
    }
}

/// How a block came back from the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Release {
    /// Its callback returned without retaining it.
    Returned = 1,
    /// `WskRelease`.
    Released = 2,
    /// Reclaimed by the provider when the socket's close completed.
    Reclaimed = 3,
}

/// What the fault handler says about a quarantined block.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Origin {
    /// The chain's first indication (what the client was given).
    pub head: usize,
    /// The socket (`PWSK_SOCKET`) it was indicated on.
    pub socket: usize,
    pub how: Release,
}

/// Gives a block back after the client is done with it: a guarded block is made inaccessible
/// and quarantined, a plain one recycled.
pub(crate) fn give_back(block: Block, origin: Origin) {
    if block.guarded {
        quarantine(block, origin);
    } else {
        let mut free = lock(&FREE);
        if free.len() < RECYCLED {
            free.push(block);
        }
    }
}

/// Disposes of a block the client never saw (nothing to indicate): recycled (a guarded one
/// is still accessible and was never indicated, so it needs no quarantine), or unmapped or
/// freed when enough wait.
pub(crate) fn unused(block: Block) {
    let mut free = lock(if block.guarded { &GUARDED_FREE } else { &FREE });
    if free.len() < RECYCLED {
        free.push(block);
    }
}

/// One quarantined block, readable from the fault handler without locks. `base` is written
/// last when a slot is filled and cleared first when it is emptied.
struct Slot {
    base: AtomicUsize,
    end: AtomicUsize,
    head: AtomicUsize,
    socket: AtomicUsize,
    how: AtomicUsize,
}

static SLOTS: [Slot; QUARANTINE] = [const {
    Slot {
        base: AtomicUsize::new(0),
        end: AtomicUsize::new(0),
        head: AtomicUsize::new(0),
        socket: AtomicUsize::new(0),
        how: AtomicUsize::new(0),
    }
}; QUARANTINE];

/// The quarantined blocks (owners of the mappings) and the next slot to fill.
struct Ring {
    blocks: Vec<Option<Block>>,
    next: usize,
}

static RING: Mutex<Ring> = Mutex::new(Ring { blocks: Vec::new(), next: 0 });

fn quarantine(block: Block, origin: Origin) {
    let base = block.base.as_ptr();
    host_work(|| {
        // SAFETY: the block's own mapping; its content may be dropped (the host reclaims the
        // pages when it needs them) and it becomes inaccessible. Nothing in the provider
        // touches a block once it is given back.
        unsafe { libc::madvise(base.cast::<c_void>(), block_size(), libc::MADV_FREE) };
        // SAFETY: as above.
        unsafe { libc::mprotect(base.cast::<c_void>(), block_size(), libc::PROT_NONE) };
    });
    let mut ring = lock(&RING);
    if ring.blocks.is_empty() {
        ring.blocks.resize_with(QUARANTINE, || None);
    }
    let at = ring.next;
    ring.next = (at + 1) % QUARANTINE;
    let slot = &SLOTS[at];
    slot.base.store(0, Ordering::SeqCst);
    // The evicted block is reused (or unmapped) only after its slot no longer names it.
    if let Some(evicted) = ring.blocks[at].take() {
        recycle_guarded(evicted);
    }
    slot.end.store(base as usize + block_size(), Ordering::SeqCst);
    slot.head.store(origin.head, Ordering::SeqCst);
    slot.socket.store(origin.socket, Ordering::SeqCst);
    slot.how.store(origin.how as usize, Ordering::SeqCst);
    slot.base.store(base as usize, Ordering::SeqCst);
    ring.blocks[at] = Some(block);
}

/// A guarded block leaving the quarantine: accessible again and kept for reuse, or unmapped
/// when enough wait already (or it cannot be made accessible).
fn recycle_guarded(block: Block) {
    let mut free = lock(&GUARDED_FREE);
    if free.len() >= RECYCLED {
        return;
    }
    // SAFETY: the block's own mapping, out of quarantine (no slot names it): nothing else
    // touches it.
    let writable = host_work(|| unsafe {
        libc::mprotect(block.base.as_ptr().cast::<c_void>(), block_size(), libc::PROT_READ | libc::PROT_WRITE)
    });
    if writable == 0 {
        // INVARIANT: readable and writable again.
        free.push(block);
    }
}

/// The quarantined block containing `address`, if any (lock-free: callable from the fault
/// handler).
fn quarantined(address: usize) -> Option<(usize, Origin)> {
    SLOTS.iter().find_map(|slot| {
        let base = slot.base.load(Ordering::SeqCst);
        if base == 0 || address < base || address >= slot.end.load(Ordering::SeqCst) {
            return None;
        }
        let how = match slot.how.load(Ordering::SeqCst) {
            1 => Release::Returned,
            2 => Release::Released,
            _ => Release::Reclaimed,
        };
        let origin = Origin { head: slot.head.load(Ordering::SeqCst), socket: slot.socket.load(Ordering::SeqCst), how };
        Some((base, origin))
    })
}

/// Whether `address` lies in a quarantined block (an indication given back already).
pub(crate) fn released_already(address: usize) -> bool {
    quarantined(address).is_some()
}

mod fault {
    //! The `SIGSEGV` handler behind `WSK_INDICATION_TOUCHED_AFTER_RELEASE`.

    use std::ffi::c_void;
    use std::sync::OnceLock;

    use super::{Release, quarantined};
    use crate::verifier::{Rule, codes};

    /// The handler that was installed before ours (faults that are not ours go there).
    struct Previous(libc::sigaction);

    // SAFETY: a plain C structure, written once before the handler is installed and only
    // read afterwards.
    unsafe impl Sync for Previous {}
    // SAFETY: as above.
    unsafe impl Send for Previous {}

    static PREVIOUS: OnceLock<Previous> = OnceLock::new();

    /// Installs the handler once per process.
    pub(super) fn install() {
        PREVIOUS.get_or_init(|| {
            // SAFETY: an all-zero `sigaction` is a valid value (no handler, empty mask).
            let mut previous: libc::sigaction = unsafe { std::mem::zeroed() };
            // SAFETY: an all-zero `sigaction` is a valid value.
            let mut ours: libc::sigaction = unsafe { std::mem::zeroed() };
            ours.sa_sigaction = on_fault as *const () as libc::sighandler_t;
            ours.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            // SAFETY: a valid signal set to clear.
            unsafe { libc::sigemptyset(&raw mut ours.sa_mask) };
            // SAFETY: valid `sigaction` structures; the handler only does async-signal-safe
            // work. `previous` is filled before any fault can reach `on_fault`, which reads
            // it only after `PREVIOUS` is set: a fault in the window goes to the default.
            unsafe { libc::sigaction(libc::SIGSEGV, &raw const ours, &raw mut previous) };
            Previous(previous)
        });
    }

    /// A small fixed buffer for the report (no allocation in a signal handler).
    struct Line {
        bytes: [u8; 512],
        len: usize,
    }

    impl Line {
        fn text(&mut self, text: &str) {
            for &b in text.as_bytes() {
                if self.len < self.bytes.len() {
                    self.bytes[self.len] = b;
                    self.len += 1;
                }
            }
        }

        fn hex(&mut self, value: usize) {
            self.text("0x");
            let mut digits = [0u8; 16];
            let mut n = value;
            let mut count = 0;
            loop {
                digits[count] = b"0123456789abcdef"[n & 0xF];
                count += 1;
                n >>= 4;
                if n == 0 {
                    break;
                }
            }
            for &d in digits[..count].iter().rev() {
                if self.len < self.bytes.len() {
                    self.bytes[self.len] = d;
                    self.len += 1;
                }
            }
        }
    }

    extern "C" fn on_fault(signal: libc::c_int, info: *mut libc::siginfo_t, context: *mut c_void) {
        // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers.
        let info_ref = if info.is_null() { None } else { Some(unsafe { &*info }) };
        // SAFETY: for SIGSEGV the siginfo's union holds the fault address.
        let address = info_ref.map_or(0, |info| unsafe { info.si_addr() } as usize);
        if let Some((base, origin)) = quarantined(address) {
            let rule = Rule::WskIndicationTouchedAfterRelease;
            let mut line = Line { bytes: [0; 512], len: 0 };
            line.text("*** wsk-emulator: ");
            line.text(rule.name());
            line.text(" (BUGCHECK ");
            line.hex(rule.code() as usize);
            line.text(" ");
            line.text(codes::name(rule.code()));
            line.text(", ");
            line.hex(rule.parameter1() as usize);
            line.text("): the driver touched ");
            line.hex(address);
            line.text(" (offset ");
            line.hex(address - base);
            line.text(" of the block) of indication chain ");
            line.hex(origin.head);
            line.text(" of socket ");
            line.hex(origin.socket);
            line.text(match origin.how {
                Release::Returned => " after its callback returned without retaining it",
                Release::Released => " after WskRelease released it",
                Release::Reclaimed => " after the socket's close reclaimed it",
            });
            line.text("; the machine stops\n");
            // SAFETY: write(2) is async-signal-safe; the buffer is ours and `len` in it.
            unsafe { libc::write(2, line.bytes.as_ptr().cast(), line.len) };
            // SAFETY: abort(3) is async-signal-safe: the machine stops here.
            unsafe { libc::abort() };
        }
        forward(signal, info, context);
    }

    /// Hands a fault that is not ours to the previous handler (or the default action).
    fn forward(signal: libc::c_int, info: *mut libc::siginfo_t, context: *mut c_void) {
        let previous = PREVIOUS.get().map(|p| (p.0.sa_sigaction, p.0.sa_flags));
        match previous {
            Some((handler, flags)) if handler != libc::SIG_DFL && handler != libc::SIG_IGN => {
                if flags & libc::SA_SIGINFO != 0 {
                    // SAFETY: the previous handler was installed with SA_SIGINFO, so it has
                    // this signature; it gets the arguments the kernel gave us.
                    let handler: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut c_void) =
                        unsafe { std::mem::transmute(handler) };
                    handler(signal, info, context);
                } else {
                    // SAFETY: a plain handler takes the signal number only.
                    let handler: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(handler) };
                    handler(signal);
                }
            }
            _ => {
                // Default action: restore it; the faulting access runs again and stops the
                // process with SIGSEGV.
                // SAFETY: an all-zero `sigaction` is SIG_DFL with an empty mask.
                let mut default: libc::sigaction = unsafe { std::mem::zeroed() };
                default.sa_sigaction = libc::SIG_DFL;
                // SAFETY: sigaction is async-signal-safe; the structure is valid.
                unsafe { libc::sigaction(signal, &raw const default, std::ptr::null_mut()) };
            }
        }
    }
}

fn install_fault_handler() {
    fault::install();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_blocks_are_recycled_and_page_aligned() {
        let mut block = Block::plain().unwrap();
        assert_eq!(block.header() as usize % 4096, 0);
        assert_eq!(block.data() as usize % 4096, 0);
        block.space()[..3].copy_from_slice(b"abc");
        assert_eq!(block.bytes(3), b"abc");
        let address = block.header() as usize;
        give_back(block, Origin { head: address, socket: 1, how: Release::Returned });
        let again = Block::plain().unwrap();
        assert_eq!(again.header() as usize, address, "reused from the free list");
    }

    #[test]
    fn guarded_blocks_are_quarantined_after_release() {
        let mut block = Block::guarded().unwrap();
        block.space()[0] = 7;
        let address = block.data() as usize;
        assert!(!released_already(address));
        give_back(block, Origin { head: address, socket: 1, how: Release::Released });
        assert!(released_already(address));
        assert!(released_already(address + DATA_CAPACITY - 1));
    }

    /// A guarded block that leaves the quarantine (a full ring of later releases pushed it
    /// out) is no longer reported as released, and a later guarded block reuses its mapping,
    /// readable and writable again.
    #[test]
    fn guarded_blocks_out_of_quarantine_are_reused() {
        let first = Block::guarded().unwrap();
        let address = first.header() as usize;
        give_back(first, Origin { head: address, socket: 2, how: Release::Returned });
        for _ in 0..QUARANTINE {
            let block = Block::guarded().unwrap();
            let head = block.header() as usize;
            give_back(block, Origin { head, socket: 2, how: Release::Returned });
            if !released_already(address) {
                break;
            }
        }
        assert!(!released_already(address), "the first block is still quarantined");
        // Other tests of this process may take blocks meanwhile: look through what waits.
        let mut taken = Vec::new();
        let mut found = false;
        while let Some(mut block) = lock(&GUARDED_FREE).pop() {
            if block.header() as usize == address {
                block.space()[0] = 9;
                assert_eq!(block.bytes(1), [9]);
                found = true;
            }
            taken.push(block);
        }
        assert!(found, "the block out of quarantine was not kept for reuse");
        drop(taken);
    }
}
