//! [`SendChain`]: several buffers sent by one call ([`TcpWriteHalf::send_chain`]), as MDL
//! chains the provider reads in place: our own [`IoBuf`]s and received items
//! ([`Received`]) sent as WSK indicated them.
//!
//! # How the pieces become `WskSend`s
//!
//! The whole chain goes in **one** `WskSend` when the shadow MDLs of the chain (partial MDLs
//! of ours over the items' pages, see `crate::shadow`: up to `CHAIN_SETS` sets of 8 pieces of
//! up to 64 KiB each, an item's pieces all in one set, taken from the library's cache of sets
//! for the send and given back once it completed) cover its items: our buffers' MDLs and the
//! shadow MDLs are linked in order. Otherwise:
//!
//! * Consecutive pieces whose MDLs are ours (`IoBuf`s, and items the event stream copied into
//!   a pool buffer) are linked into one MDL chain (`IoBuf::link`) and go in **one**
//!   `WskSend`; the links are undone when the send completed (`IoBuf::unlink`), before the
//!   buffers are handed back.
//! * An item holding WSK's own buffers is sent as its indication list describes it, **one
//!   `WskSend` per entry**, over WSK's MDLs untouched. The MDLs of an indication belong to
//!   the provider: Microsoft documents no permission to change them, so we never relink their
//!   `Next` to join them to anything (the shadow MDLs above join them without touching them).
//!   Between the sends of a chain split this way, Nagle's algorithm may hold a small piece
//!   until the one before is acknowledged.
//!
//! A chain is one pool block, which [`SendChain::new`] takes from the library's cache of
//! chain blocks (allocating one only when the cache is empty) and the chain's drop gives back
//! emptied: sending allocates nothing, and a chain taken for each send and dropped after it
//! allocates nothing in steady state either, so a connection holds none between sends. The
//! cache keeps up to 16 blocks and is freed when the WSK registration goes. While a send is
//! in flight the block is held by the writer's operation slot, so the MDLs the provider walks stay put even if the sending future is dropped; then the
//! completion path drops the block after the IRP completed, which unlinks the buffers, frees
//! them, and releases every item still in it, once.
//!
//! Each item is released to WSK (`WskRelease`) as soon as its last byte was sent, and on an
//! error the items not yet sent are released too: after [`TcpWriteHalf::send_chain`] the chain
//! holds only its `IoBuf`s, in their order.
//!
//! [`TcpWriteHalf::send_chain`]: crate::socket::tcp::TcpWriteHalf::send_chain

use core::mem::ManuallyDrop;

use wsk_sys::{MDL, WSK_BUF, WSK_BUF_LIST};

use crate::buf::IoBuf;
use crate::buf_pool::FreeCells;
use crate::error::{Error, Result};
use crate::pool::{AnyPoolBox, PoolBox, tag};
use crate::shadow::ShadowSet;
use crate::socket::call::Holding;
use crate::socket::events::Received;

/// Pieces a [`SendChain`] holds at most.
pub const SEND_CHAIN_MAX: usize = 16;

/// Pool tag of a chain's block: a request block the provider reads through pointers while
/// a send is in flight ("WskR").
pub(crate) const CHAIN_TAG: u32 = tag::REQUEST;

/// One piece of a [`SendChain`].
#[derive(Debug)]
pub enum Piece {
    /// A buffer of ours: its valid bytes are sent; it comes back after the send.
    Buf(IoBuf),
    /// A received item, sent as is and released to WSK when its send completed.
    Received(Received),
}

impl Piece {
    fn len(&self) -> usize {
        match self {
            Piece::Buf(buf) => buf.len(),
            Piece::Received(item) => item.len(),
        }
    }

    /// The pool buffer whose MDL is ours to link, if the piece has one.
    fn own_buf(&mut self) -> Option<&mut IoBuf> {
        match self {
            Piece::Buf(buf) => Some(buf),
            Piece::Received(item) => item.copied_mut(),
        }
    }
}

/// The block: the pieces in order.
///
/// # Invariants
/// `pieces[len..]` are `None`; a `None` before `len` is an item already released by a send
/// (behind the piece it is sending). Outside a send, no piece's MDL is linked.
pub(crate) struct Pieces {
    pieces: [Option<Piece>; SEND_CHAIN_MAX],
    len: usize,
    /// The `WSK_BUF_LIST` of a datagram batch (`WskSendMessages`), over the pieces' buffers:
    /// it lives in the block, so it stays put while the block is held by the send.
    lists: [WSK_BUF_LIST; SEND_CHAIN_MAX],
    /// Shadow MDLs over the items' pages, for the whole chain in one `WskSend`: sets taken
    /// from the library's cache (`crate::shadow::take`) as the items need them, for one send,
    /// and given back once it completed ([`Pieces::unlink_all`]).
    shadows: [Option<ShadowSet>; CHAIN_SETS],
}

/// Shadow sets one chain's send may take: [`SHADOWS`](crate::shadow::SHADOWS) MDLs each, so
/// a chain of up to `CHAIN_SETS * SHADOWS` indicated pieces goes in one `WskSend`.
pub(crate) const CHAIN_SETS: usize = 4;

// SAFETY: the pieces are `Send`; the lists only point into the block's own buffers.
unsafe impl Send for Pieces {}

const EMPTY_LIST: WSK_BUF_LIST =
    WSK_BUF_LIST { Next: core::ptr::null_mut(), Buffer: WSK_BUF { Mdl: core::ptr::null_mut(), Offset: 0, Length: 0 } };

impl Pieces {
    /// The pieces, in order.
    pub(crate) fn slice_mut(&mut self) -> &mut [Option<Piece>] {
        &mut self.pieces[..self.len]
    }

    /// The `WSK_BUF` over the valid bytes of piece `at`, one datagram of a batch: `None` past
    /// the end, [`Error::InvalidInput`] for a received item holding WSK's buffers (a stream's
    /// data is no datagram, and its MDLs cannot be joined into one).
    pub(crate) fn datagram(&self, at: usize) -> Option<Result<WSK_BUF>> {
        let piece = self.pieces[..self.len].get(at)?.as_ref()?;
        Some(match piece {
            Piece::Buf(buf) => Ok(buf.wsk_buf(0, buf.len())),
            Piece::Received(item) => match item.copied() {
                Some(buf) => Ok(buf.wsk_buf(0, buf.len())),
                None => Err(Error::InvalidInput("a batch of datagrams holds buffers only")),
            },
        })
    }

    /// Builds the block's `WSK_BUF_LIST`, one entry per piece (see [`Pieces::datagram`]), and
    /// returns its head (null for no piece).
    pub(crate) fn datagram_list(&mut self) -> Result<*mut WSK_BUF_LIST> {
        let mut next: *mut WSK_BUF_LIST = core::ptr::null_mut();
        for at in (0..self.len).rev() {
            let buffer = self.datagram(at).unwrap_or(Err(Error::InvalidInput("a released piece in a batch")))?;
            self.lists[at] = WSK_BUF_LIST { Next: next, Buffer: buffer };
            next = &raw mut self.lists[at];
        }
        Ok(next)
    }

    /// Undoes every link made for a send and gives the shadow sets back to the library's
    /// cache (reset), once no send uses them (idempotent).
    pub(crate) fn unlink_all(&mut self) {
        for shadows in &mut self.shadows {
            if let Some(set) = shadows.take() {
                crate::shadow::give(set);
            }
        }
        for piece in self.pieces[..self.len].iter_mut().flatten() {
            if let Some(buf) = piece.own_buf() {
                // SAFETY: called when no send uses the chain (its IRP completed, or it was
                // never submitted).
                unsafe { buf.unlink() };
            }
        }
    }

    /// Links every piece into one MDL chain for one `WskSend`: our buffers' MDLs
    /// (`IoBuf::link`), and shadow MDLs over each item's pages; returns the `WSK_BUF` over
    /// all, or `None` (nothing left linked) when the items need more shadow MDLs than the set
    /// has, or the set cannot be allocated, or there is no byte to send.
    ///
    /// # Safety
    /// No send uses the pieces' MDLs now, and [`Pieces::unlink_all`] is called before a buffer
    /// is used alone or handed out and before an item is released. IRQL <= DISPATCH_LEVEL.
    pub(crate) unsafe fn link_whole(&mut self) -> Option<WSK_BUF> {
        let (mut head, mut total) = (core::ptr::null_mut::<MDL>(), 0usize);
        // The shadow set items are appended to now.
        let mut set = 0;
        // The last MDL linked so far: a buffer of ours (its index) or a shadow MDL.
        let mut tail: Option<core::result::Result<usize, *mut MDL>> = None;
        for at in 0..self.len {
            let (first, last, bytes) = match self.pieces[at].as_mut() {
                None => continue,
                Some(Piece::Received(item)) if item.copied().is_none() => {
                    if item.is_empty() {
                        continue;
                    }
                    // SAFETY: the item lives in the block with the sets (caller's contract).
                    match unsafe { append_shadows(&mut self.shadows, &mut set, item) } {
                        Some((first, last, bytes)) => (first.as_ptr(), Err(last.as_ptr()), bytes),
                        None => return self.undo_whole(),
                    }
                }
                Some(piece) => match piece.own_buf() {
                    Some(buf) if !buf.is_empty() => {
                        // SAFETY: the caller's contract; linked to what follows below.
                        unsafe { buf.link(core::ptr::null_mut()) };
                        (buf.mdl(), Ok(at), buf.len())
                    }
                    _ => continue,
                },
            };
            match tail {
                None => head = first,
                Some(Ok(buffer)) => {
                    if let Some(buf) = self.pieces[buffer].as_mut().and_then(Piece::own_buf) {
                        // SAFETY: as above; `first` lives in the block as long as the chain.
                        unsafe { buf.link(first) };
                    }
                }
                // SAFETY: a shadow MDL of the set, built above and used by no send.
                Some(Err(mdl)) => unsafe { (*mdl).Next = first },
            }
            tail = Some(last);
            total += bytes;
        }
        if head.is_null() {
            return None;
        }
        Some(WSK_BUF { Mdl: head, Offset: 0, Length: total })
    }

    /// Undoes a [`Pieces::link_whole`] that cannot cover the chain.
    fn undo_whole(&mut self) -> Option<WSK_BUF> {
        self.unlink_all();
        None
    }

    /// Drops (releases) every received item, keeping the buffers in order.
    pub(crate) fn release_items(&mut self) {
        let mut kept = 0;
        for at in 0..self.len {
            match self.pieces[at].take() {
                Some(Piece::Buf(buf)) => {
                    self.pieces[kept] = Some(Piece::Buf(buf));
                    kept += 1;
                }
                item => drop(item),
            }
        }
        // INVARIANT: the kept buffers fill `..kept`, every slot after is `None`.
        self.len = kept;
    }
}

impl Drop for Pieces {
    fn drop(&mut self) {
        // The pieces' own drops free the buffers and release the items; their MDLs must not
        // point into each other when they go.
        self.unlink_all();
    }
}

/// Appends the shadow MDLs of `item` (not empty) to the set `*set`, or to the next one (taken
/// from the cache) when it has no room left: the first and last MDL and the bytes, or `None`
/// when the sets run out, the cache and the pool have none, or the item needs more than a set
/// or a piece longer than a shadow MDL spans.
///
/// # Safety
/// As [`Shadows::append`](crate::shadow::Shadows::append).
unsafe fn append_shadows(
    sets: &mut [Option<ShadowSet>; CHAIN_SETS],
    set: &mut usize,
    item: &Received,
) -> Option<(core::ptr::NonNull<MDL>, core::ptr::NonNull<MDL>, usize)> {
    while *set < CHAIN_SETS {
        if sets[*set].is_none() {
            sets[*set] = crate::shadow::take().ok();
        }
        let shadows = sets[*set].as_mut()?;
        // SAFETY: forwarded contract.
        if let Some(appended) = unsafe { shadows.append(item) } {
            return Some(appended);
        }
        if shadows.is_unused() {
            // Not for want of room: a fresh set cannot take it either.
            return None;
        }
        *set += 1;
    }
    None
}

/// Several buffers to send in one call, in order: [`IoBuf`]s and received items (see the
/// module documentation for how they become `WskSend`s). Holds at most [`SEND_CHAIN_MAX`]
/// pieces.
///
/// ```no_run
/// # async fn example(writer: &mut wsk::TcpWriteHalf, item: wsk::events::Received) -> wsk::Result<()> {
/// use wsk::send_chain::SendChain;
///
/// let mut chain = SendChain::new()?; // from the library's cache: no allocation in steady state
/// chain.push_buf(wsk::IoBuf::copy_from(b"header: ")?).map_err(|_| wsk::Error::NoMemory)?;
/// chain.push_received(item).map_err(|_| wsk::Error::NoMemory)?;
/// let (sent, back) = writer.send_chain(chain).await;
/// sent?; // the item was released to WSK; `back` holds the header buffer
/// # drop(back); Ok(()) }
/// ```
pub struct SendChain {
    /// Taken out only by [`SendChain::into_block`] (which consumes the chain) and by the
    /// drop, which gives it to the cache.
    block: ManuallyDrop<PoolBox<Pieces, CHAIN_TAG>>,
}

impl Drop for SendChain {
    /// Releases the items and frees the buffers the chain still holds, then keeps its
    /// emptied block in the library's cache for the next [`SendChain::new`] (or frees it when
    /// the cache is full).
    fn drop(&mut self) {
        // SAFETY: the block is not used again: this is the chain's drop.
        let block = unsafe { ManuallyDrop::take(&mut self.block) };
        give_to(chains(), block);
    }
}

impl core::fmt::Debug for SendChain {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SendChain").field("pieces", &self.len()).field("bytes", &self.bytes()).finish()
    }
}

impl SendChain {
    /// An empty chain: a block from the library's cache of chains, or one pool allocation
    /// when the cache is empty. Dropping the chain gives the block back, so a chain taken
    /// for each send allocates nothing in steady state, and a connection between sends
    /// holds none.
    ///
    /// IRQL <= DISPATCH_LEVEL.
    pub fn new() -> Result<Self> {
        let block = match take_from(chains()) {
            Some(block) => block,
            None => {
                let pieces = Pieces {
                    pieces: [const { None }; SEND_CHAIN_MAX],
                    len: 0,
                    lists: [EMPTY_LIST; SEND_CHAIN_MAX],
                    shadows: [const { None }; CHAIN_SETS],
                };
                PoolBox::try_new_tagged(pieces).map_err(|_| Error::NoMemory)?
            }
        };
        Ok(Self { block: ManuallyDrop::new(block) })
    }

    /// Appends a buffer; hands it back when the chain is full.
    ///
    /// Any IRQL.
    pub fn push_buf(&mut self, buf: IoBuf) -> core::result::Result<(), IoBuf> {
        if self.is_full() {
            return Err(buf);
        }
        let _ = self.push(Piece::Buf(buf));
        Ok(())
    }

    /// Appends a received item; hands it back (unreleased) when the chain is full.
    ///
    /// Any IRQL.
    pub fn push_received(&mut self, item: Received) -> core::result::Result<(), Received> {
        if self.is_full() {
            return Err(item);
        }
        let _ = self.push(Piece::Received(item));
        Ok(())
    }

    /// Whether the chain holds [`SEND_CHAIN_MAX`] pieces.
    ///
    /// Any IRQL.
    pub fn is_full(&self) -> bool {
        self.block.len == SEND_CHAIN_MAX
    }

    /// Appends a piece; hands it back when the chain is full.
    ///
    /// Any IRQL.
    pub fn push(&mut self, piece: Piece) -> core::result::Result<(), Piece> {
        let pieces = &mut **self.block;
        if pieces.len == SEND_CHAIN_MAX {
            return Err(piece);
        }
        pieces.pieces[pieces.len] = Some(piece);
        // INVARIANT: the new piece is `Some` at the old `len`.
        pieces.len += 1;
        Ok(())
    }

    /// Removes and returns the last piece.
    ///
    /// Any IRQL.
    pub fn pop(&mut self) -> Option<Piece> {
        let pieces = &mut **self.block;
        if pieces.len == 0 {
            return None;
        }
        // INVARIANT: the last `Some` becomes `None` and `len` drops by one.
        pieces.len -= 1;
        pieces.pieces[pieces.len].take()
    }

    /// Pieces in the chain.
    ///
    /// Any IRQL.
    pub fn len(&self) -> usize {
        self.block.len
    }

    /// Whether the chain holds no piece.
    ///
    /// Any IRQL.
    pub fn is_empty(&self) -> bool {
        self.block.len == 0
    }

    /// Bytes the chain sends (the valid bytes of its buffers and the items' bytes).
    ///
    /// Any IRQL.
    pub fn bytes(&self) -> usize {
        self.block.pieces[..self.block.len].iter().flatten().map(Piece::len).sum()
    }

    /// The block, for the send that holds it in its operation slot.
    pub(crate) fn into_block(self) -> PoolBox<Pieces, CHAIN_TAG> {
        let mut this = ManuallyDrop::new(self);
        // SAFETY: the chain is not dropped (`ManuallyDrop`) and not used again: the block
        // is taken out once.
        unsafe { ManuallyDrop::take(&mut this.block) }
    }

    /// The chain over a block a send handed back.
    pub(crate) fn from_block(block: PoolBox<Pieces, CHAIN_TAG>) -> Self {
        Self { block: ManuallyDrop::new(block) }
    }
}

/// Chain blocks the library's cache keeps at most (about 1.3 KiB each).
pub(crate) const CACHED_CHAINS: usize = 16;

crate::buf_pool::static_free_cells!(
    /// The chain blocks kept.
    fn chains() -> Pieces, CACHED_CHAINS
);

/// A block from `cells`, if they keep one.
fn take_from<const N: usize>(cells: &FreeCells<Pieces, N>) -> Option<PoolBox<Pieces, CHAIN_TAG>> {
    // SAFETY: the cells hold only blocks `give_to` took out of their `PoolBox` with this tag.
    cells.take().map(|block| unsafe { PoolBox::from_raw_tagged(block) })
}

/// Empties `block` (its shadow sets back in their cache, its items released, its buffers
/// freed) and keeps it in `cells` for the next [`SendChain::new`], or frees it when they are
/// full. IRQL <= DISPATCH_LEVEL.
fn give_to<const N: usize>(cells: &FreeCells<Pieces, N>, mut block: PoolBox<Pieces, CHAIN_TAG>) {
    block.unlink_all();
    for piece in &mut block.pieces {
        drop(piece.take());
    }
    // INVARIANT: every piece is `None`.
    block.len = 0;
    if let Err(block) = cells.give(PoolBox::into_raw(block)) {
        // SAFETY: taken out of its `PoolBox` just above, refused by the cells.
        drop(unsafe { PoolBox::<Pieces, CHAIN_TAG>::from_raw_tagged(block) });
    }
}

/// Frees every cached chain block; returns how many. IRQL <= DISPATCH_LEVEL.
pub(crate) fn drain() -> usize {
    let mut freed = 0;
    while let Some(block) = take_from(chains()) {
        drop(block);
        freed += 1;
    }
    freed
}

/// A `WSK_BUF` over memory held by the send that uses it (the slot's `Holding`), carried
/// across the send's awaits.
#[derive(Clone, Copy)]
pub(crate) struct HeldBuf(pub(crate) WSK_BUF);

// SAFETY: the MDLs it points to describe locked memory that any thread may pass to the
// provider while the holding keeps it alive; the pointers are only read.
unsafe impl Send for HeldBuf {}
// SAFETY: as above.
unsafe impl Sync for HeldBuf {}

impl HeldBuf {
    /// The `WSK_BUF` (a method, so a closure captures the whole `Send` wrapper).
    pub(crate) fn get(self) -> WSK_BUF {
        self.0
    }
}

impl Holding {
    /// Holding a chain's block.
    pub(crate) fn block(block: PoolBox<Pieces, CHAIN_TAG>) -> Self {
        Holding { block: Some(AnyPoolBox::new(block)), item: None }
    }

    /// The chain's block handed back by the slot (which returns what it was given).
    pub(crate) fn into_block(self) -> PoolBox<Pieces, CHAIN_TAG> {
        self.block.and_then(|block| block.downcast().ok()).expect("the slot hands back the block it held")
    }
}

/// Links the pool buffers `pieces[from..]` that are ours, as far as they go, into one MDL
/// chain: returns the `WSK_BUF` over their valid bytes (`None` if they hold none) and the
/// index of the first piece not taken. Buffers without valid bytes are skipped, not linked.
///
/// # Safety
/// No send uses the pieces' MDLs meanwhile, and every link is undone
/// ([`Pieces::unlink_all`]) before a buffer is used alone or handed out.
pub(crate) unsafe fn link_run(pieces: &mut [Option<Piece>], from: usize) -> (Option<WSK_BUF>, usize) {
    let mut end = from;
    while end < pieces.len() && pieces[end].as_mut().is_some_and(|piece| piece.own_buf().is_some()) {
        end += 1;
    }
    // Link back to front, so each buffer points to the next non-empty one.
    let mut next: *mut MDL = core::ptr::null_mut();
    let mut total = 0usize;
    for piece in pieces[from..end].iter_mut().rev().flatten() {
        let Some(buf) = piece.own_buf() else { continue };
        if buf.is_empty() {
            continue;
        }
        // SAFETY: the caller's contract; `next` is a buffer of the same chain, alive as long
        // as the chain.
        unsafe { buf.link(next) };
        next = buf.mdl();
        total += buf.len();
    }
    let run = (!next.is_null()).then_some(WSK_BUF { Mdl: next, Offset: 0, Length: total });
    (run, end)
}

/// `buf` without its first `n` bytes, with `Offset` inside the first MDL as WSK requires
/// (whole MDLs skipped by following `Next`; the MDLs are only read).
///
/// # Safety
/// `buf`'s MDL chain is live and describes at least `Offset + n` bytes.
pub(crate) unsafe fn advance(buf: WSK_BUF, n: usize) -> WSK_BUF {
    let (mut mdl, mut offset) = (buf.Mdl, buf.Offset as usize + n);
    while !mdl.is_null() {
        // SAFETY: a live MDL of the chain (caller).
        let count = unsafe { wsk_sys::MmGetMdlByteCount(mdl) } as usize;
        if offset < count {
            break;
        }
        offset -= count;
        // SAFETY: as above.
        mdl = unsafe { (*mdl).Next };
    }
    WSK_BUF { Mdl: mdl, Offset: offset as u32, Length: buf.Length - n.min(buf.Length) }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;

    /// The bytes a `WSK_BUF` describes, read MDL by MDL.
    fn described(buf: WSK_BUF) -> std::vec::Vec<u8> {
        let mut out = std::vec::Vec::new();
        let (mut mdl, mut skip, mut left) = (buf.Mdl, buf.Offset as usize, buf.Length);
        while left > 0 && !mdl.is_null() {
            // SAFETY: the test's MDLs over live pool buffers (`MmBuildMdlForNonPagedPool`).
            let count = unsafe { wsk_sys::MmGetMdlByteCount(mdl) } as usize;
            // SAFETY: as above.
            let va = unsafe { wsk_sys::MmGetMdlVirtualAddress(mdl) }.cast::<u8>();
            let n = (count - skip).min(left);
            // SAFETY: `skip < count`: within the MDL's buffer.
            let start = unsafe { va.add(skip) };
            // SAFETY: `skip + n <= count` bytes of the MDL's buffer.
            out.extend_from_slice(unsafe { core::slice::from_raw_parts(start, n) });
            (skip, left) = (0, left - n);
            // SAFETY: as above.
            mdl = unsafe { (*mdl).Next };
        }
        out
    }

    fn buf(bytes: &[u8]) -> IoBuf {
        IoBuf::copy_from(bytes).unwrap()
    }

    /// The run links the non-empty buffers in order, over their valid bytes only; unlinking
    /// restores each MDL to its whole capacity, alone (Miri checks the MDL accesses).
    #[test]
    fn a_run_links_the_valid_bytes_and_unlinking_restores() {
        let mut chain = SendChain::new().unwrap();
        let mut big = IoBuf::with_capacity(64).unwrap();
        big.extend_from_slice(b"abc");
        chain.push_buf(big).unwrap();
        chain.push_buf(IoBuf::with_capacity(8).unwrap()).unwrap();
        chain.push_buf(buf(b"defg")).unwrap();
        assert_eq!((chain.len(), chain.bytes()), (3, 7));
        let pieces = &mut **chain.block;
        // SAFETY: no send uses the chain; unlinked below.
        let (run, end) = unsafe { link_run(pieces.slice_mut(), 0) };
        let run = run.expect("valid bytes");
        assert_eq!((run.Offset, run.Length, end), (0, 7, 3));
        assert_eq!(described(run), b"abcdefg");
        // SAFETY: as above.
        let rest = unsafe { advance(run, 4) };
        assert_eq!((rest.Offset, rest.Length), (1, 3), "inside the second linked MDL");
        pieces.unlink_all();
        for piece in pieces.slice_mut().iter_mut().flatten() {
            let buf = piece.own_buf().unwrap();
            // SAFETY: the buffer's own MDL.
            let count = unsafe { wsk_sys::MmGetMdlByteCount(buf.mdl()) };
            // SAFETY: as above.
            let next = unsafe { (*buf.mdl()).Next };
            assert_eq!((count as usize, next), (buf.capacity(), core::ptr::null_mut()));
        }
    }

    /// Pushing past the bound hands the piece back; popping and `release_items` keep order.
    #[test]
    fn the_chain_is_bounded_and_keeps_order() {
        let mut chain = SendChain::new().unwrap();
        for i in 0..SEND_CHAIN_MAX {
            chain.push_buf(buf(&[i as u8])).unwrap();
        }
        let back = chain.push_buf(buf(b"x")).expect_err("full");
        assert_eq!(back.as_slice(), b"x");
        chain.block.release_items();
        assert_eq!(chain.len(), SEND_CHAIN_MAX);
        match chain.pop() {
            Some(Piece::Buf(last)) => assert_eq!(last.as_slice(), &[SEND_CHAIN_MAX as u8 - 1]),
            other => panic!("{other:?}"),
        }
        assert_eq!(chain.len(), SEND_CHAIN_MAX - 1);
    }

    /// Items past one shadow set go on in the next one, taken from the cache; an item that
    /// fails in a fresh set too (a piece longer than a shadow MDL spans) is refused after that
    /// one more set. Miri checks the MDL accesses and that nothing leaks.
    #[test]
    fn items_past_one_shadow_set_go_on_in_the_next() {
        use crate::shadow::{SHADOW_SPAN, SHADOWS};
        let items: std::vec::Vec<Received> = (0..=SHADOWS).map(|i| Received::from_buffer(buf(&[i as u8; 3]))).collect();
        let mut sets: [Option<ShadowSet>; CHAIN_SETS] = [const { None }; CHAIN_SETS];
        let mut set = 0;
        for (i, item) in items.iter().enumerate() {
            // SAFETY: the items outlive every use of the sets' MDLs; no send uses them.
            let (first, last, bytes) = unsafe { append_shadows(&mut sets, &mut set, item) }.expect("room");
            assert_eq!((first, bytes), (last, 3), "item {i}: one piece, one MDL");
            assert_eq!(set, i / SHADOWS, "item {i}: its set");
        }
        assert!(sets[1].is_some() && sets[2].is_none(), "a second set, no third");
        let mut long = IoBuf::with_capacity(SHADOW_SPAN + 1).unwrap();
        long.set_len(SHADOW_SPAN + 1);
        let long = Received::from_buffer(long);
        // SAFETY: as above.
        assert!(unsafe { append_shadows(&mut sets, &mut set, &long) }.is_none(), "too long a piece");
        assert!(set == 2 && sets[3].is_none(), "one more set tried, then refused");
        // Dropped, not given back: the library's cache is shared with the tests alongside.
        drop(sets);
    }

    /// A block given back is emptied (its buffers freed) and is the one the next take gets;
    /// a full cache frees what it cannot keep (Miri checks that nothing leaks).
    #[test]
    fn a_block_given_back_is_emptied_and_reused() {
        // A cache of its own: the library's is shared with the tests running alongside.
        let cells = FreeCells::<Pieces, 1>::new(1);
        let mut chain = SendChain::new().unwrap();
        chain.push_buf(buf(b"one")).unwrap();
        chain.push_buf(buf(b"two")).unwrap();
        let block = chain.into_block();
        let kept = core::ptr::from_ref::<Pieces>(&block);
        give_to(&cells, block);
        let again = take_from(&cells).expect("kept");
        assert!(core::ptr::eq(&raw const *again, kept), "the cached block comes back");
        assert_eq!(again.len, 0, "emptied");
        assert!(again.pieces.iter().all(Option::is_none), "its pieces gone");
        give_to(&cells, again);
        give_to(&cells, SendChain::new().unwrap().into_block());
        assert!(take_from(&cells).is_some() && take_from(&cells).is_none(), "one kept, the other freed");
    }

    /// A chain dropped while linked unlinks before its buffers go (nothing leaks under Miri).
    #[test]
    fn a_linked_chain_drops_cleanly() {
        let mut chain = SendChain::new().unwrap();
        chain.push_buf(buf(b"one")).unwrap();
        chain.push_buf(buf(b"two")).unwrap();
        // SAFETY: no send; the drop unlinks.
        let _ = unsafe { link_run(chain.block.slice_mut(), 0) };
        drop(chain);
    }
}
