//! Sends over memory that is not one `IoBuf`: a received item sent as WSK indicated it
//! ([`TcpWriteHalf::send_received`]) and several buffers at once
//! ([`TcpWriteHalf::send_chain`], see [`send_chain`]).
//!
//! # Sending what WSK indicated
//!
//! A [`Received`] item holds WSK's own buffers (an indication list it retained). Sending it
//! hands that memory to `WskSend`: the provider reads the indicated pages in place, no byte is
//! copied. An item of one indication goes with that entry's `WSK_BUF` as it is; an item of
//! several goes in one `WskSend` over partial MDLs of our own on the same pages
//! ([`crate::shadow`]), or, past what those cover, one `WskSend` per entry. What we rely on, from Microsoft's pages on
//! `WSK_DATA_INDICATION`, `WskReceiveEvent`, `WskRelease`, `WskSend` and `WSK_BUF`:
//!
//! * A retained indication's buffers stay valid until `WskRelease`, and its MDLs describe
//!   locked or non-paged memory, which is what `WskSend` takes. The pages say nothing of an
//!   indication being used by a send, on this socket or another: we assume only that the
//!   memory stays valid (and unchanged) until the release, which we issue after the send's IRP
//!   completed, never before.
//! * The MDLs belong to the provider: we never modify them (no relinking of `Next`, no
//!   changed `ByteCount`). Joining the entries takes MDLs of our own (`IoBuildPartialMdl` over
//!   the provider's, which only reads them); sending them one `WskSend` each would meet
//!   Nagle's algorithm between the pieces (see [`crate::shadow`]).
//! * `WSK_BUF::Offset` must lie within the first MDL: a resend after a partial send starts
//!   at the MDL that holds the next byte.
//! * `WskRelease` must come before `WskCloseSocket` of the receiving socket. The item holds a
//!   call and an owner reference on that socket (see [`events`](crate::events)): its close
//!   waits for the release, which comes when the send completed. A send that never completes
//!   (a peer that never reads) thus holds the receiving socket's close until the send is
//!   cancelled: drop the sending future, and the release follows the cancelled IRP.
//!
//! Ownership is in the types: the send takes the item by value, the operation slot holds it
//! while the IRP is in flight (nothing else can reach it), and its drop is the one
//! `WskRelease`: when the send completed, or, if the sending future was dropped, when the
//! cancelled IRP came back.

use crate::error::{Error, Result};
use crate::op::OpSlot;
use crate::pool::AnyPoolBox;
use crate::send_chain::{self, HeldBuf, Piece, SendChain};
use crate::shadow::{SHADOW_TAG, ShadowSet, Shadows};
use crate::socket::call::{Holding, NotIssued, socket_call_holding};
use crate::socket::events::Received;
use crate::socket::kind::Connection;
use crate::socket::shared::SocketCore;
use crate::socket::tcp::{TcpStream, TcpWriteHalf};

/// Sends all `buf.Length` bytes `buf` describes with one `WskSend` (more if the provider
/// completes one partially), what `holding` holds lent to the slot while each IRP is in flight
/// and put back in `holding` after it, whatever the outcome. The caller keeps the one place
/// for it: every send future nests this one, and each place would be part of its size. If
/// the future is dropped while an IRP is in flight, `holding` is left empty and the slot drops
/// what it held after the IRP came back.
///
/// # Safety
/// `buf` describes memory kept valid and unchanged by `holding` (or by memory that outlives
/// the call).
#[expect(
    clippy::multiple_unsafe_ops_per_block,
    reason = "one provider call: reaching its arguments in the slot's argument block is part of it"
)]
async unsafe fn send_whole(
    core: &SocketCore<Connection>,
    slot: &mut OpSlot,
    buf: HeldBuf,
    holding: &mut Holding,
) -> Result<()> {
    let total = buf.0.Length;
    let mut sent = 0;
    while sent < total {
        // SAFETY: `buf`'s chain is kept alive by `holding` (caller); `sent < Length`.
        let part = HeldBuf(unsafe { send_chain::advance(buf.0, sent) });
        let lent = core::mem::replace(holding, Holding { block: None, item: None });
        // SAFETY: connection dispatch table; the WSK_BUF lives in the slot's argument block,
        // the memory it describes is held by the slot through what `holding` lent (caller).
        let done = unsafe {
            socket_call_holding(
                core,
                slot,
                lent,
                move |args, _| args.wsk_buf = part.get(),
                |socket, table, irp, args| table.WskSend.map(|send| send(socket, &raw mut (*args).wsk_buf, 0, irp)),
            )
        }
        .await;
        let result = match done {
            Ok(done) => {
                let result = done.result();
                *holding = Holding { block: done.block, item: done.item };
                result
            }
            Err(NotIssued { error, block, item, .. }) => {
                *holding = Holding { block, item };
                Err(error)
            }
        };
        match result {
            Ok(0) => return Err(Error::Status(wsk_sys::STATUS_CONNECTION_ABORTED)),
            Ok(n) => sent += n,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// [`TcpWriteHalf::send_received`]'s body, sending the item `holding` holds: takes the shadow
/// set from `shadows` when the item needs one and puts it back after the send (it stays
/// `None` if it went with a dropped send). One loop for both ways of sending (one `WskSend`
/// over shadow MDLs, or one per indication), so the future has one place for the item and
/// one nested send; an `async` block over the arguments rather than an `async fn`, which
/// would keep them twice: this future is part of every task that echoes received items.
#[expect(
    clippy::manual_async_fn,
    reason = "an `async fn` keeps its arguments twice in the future (see the docs above)"
)]
fn send_item<'a>(
    core: &'a SocketCore<Connection>,
    slot: &'a mut OpSlot,
    mut holding: Holding,
    shadows: &'a mut Option<ShadowSet>,
) -> impl Future<Output = Result<()>> + 'a {
    async move {
        let Some(mut bufs) = holding.item.as_ref().map(Received::wsk_bufs) else { return Ok(()) };
        // SAFETY: the cursor walks the item, which `holding` owns.
        let first = unsafe { bufs.next() }.is_some();
        // SAFETY: as above.
        let several = first && unsafe { bufs.next() }.is_some();
        let mut whole = None;
        // The set is allocated at the first item that needs it (or taken from the library's
        // cache); without pool memory for it, the item goes one send per indication.
        if several && let Some(mut set) = shadows.take().or_else(|| crate::shadow::take().ok()) {
            // Several indications: one send over MDLs of ours, if they cover the item.
            // SAFETY: the item stays alive in `holding` (or the slot) until released below,
            // after the send; no send uses the set (it was with the write half).
            match holding.item.as_ref().and_then(|item| unsafe { set.cover(item) }) {
                Some(buf) => {
                    whole = Some(HeldBuf(buf));
                    holding.block = Some(AnyPoolBox::new(set));
                }
                None => *shadows = Some(set),
            }
        }
        let result = match whole {
            // SAFETY: `buf` is our MDL chain (in the set) over the item's pages; `holding` (or
            // the slot, while the IRP is in flight) keeps both until the release below.
            Some(buf) => unsafe { send_whole(core, slot, buf, &mut holding) }.await,
            None => {
                let mut bufs = holding.item.as_ref().map(Received::wsk_bufs);
                loop {
                    // SAFETY: the cursor walks the item `holding` keeps alive: it is only moved
                    // between `holding` and the slot, never released, until the loop ends.
                    let Some(buf) = bufs.as_mut().and_then(|bufs| unsafe { bufs.next() }) else { break Ok(()) };
                    // SAFETY: `buf` is WSK's memory, valid until the item in `holding` is
                    // released.
                    if let Err(e) = unsafe { send_whole(core, slot, HeldBuf(buf), &mut holding) }.await {
                        break Err(e);
                    }
                }
            }
        };
        // The set lets go of the item's pages first, then the item goes back to WSK.
        if let Some(block) = holding.block.take()
            && let Ok(mut set) = block.downcast::<Shadows, SHADOW_TAG>()
        {
            set.reset();
            *shadows = Some(set);
        }
        drop(holding);
        result
    }
}

impl TcpWriteHalf {
    /// Sends a received item as is (zero-copy: the provider reads WSK's indicated buffers in
    /// place; see the module documentation) and releases it to WSK once its last byte was
    /// sent. On an error the item is released too. An item of several indications goes in
    /// one `WskSend` over shadow MDLs of the write half (partial MDLs of ours over the
    /// indicated pages, up to 8 pieces of up to 64 KiB: about 1.5 KiB of non-paged pool, taken
    /// at the first such item from the library's cache of sets or allocated, kept until
    /// [`release_slot`](TcpWriteHalf::release_slot) gives it back), or, when it has more pieces than they
    /// cover, in one `WskSend` per indication.
    ///
    /// The item may come from this connection or any other. It holds its receiving socket's
    /// close until it is released: dropping this future while a send is pending cancels the
    /// send and releases the item once the IRP came back (exactly once, in every case).
    /// Allocates nothing but the shadow MDLs when the cache has no set (and again after a send
    /// of an item of several indications was dropped: the set went with it).
    ///
    /// IRQL == PASSIVE_LEVEL (task context).
    #[expect(
        clippy::manual_async_fn,
        reason = "an `async fn` keeps its arguments twice in the future, which is part of every task that echoes received items"
    )]
    pub fn send_received(&mut self, item: Received) -> impl Future<Output = Result<()>> + '_ {
        async move {
            let (core, slot, shadows) = self.parts_with_shadows()?;
            send_item(core, slot, Holding { block: None, item: Some(item) }, shadows).await
        }
    }

    /// Sends every piece of `chain`, in order (see [`send_chain`]: our
    /// buffers linked into one `WskSend`, received items over WSK's buffers in place). Each
    /// item is released to WSK when its send completed; the chain comes back holding its
    /// buffers only, unlinked. On an error the items not sent yet are released as well.
    ///
    /// Dropping the future while a send is pending cancels it; the chain's block, held by
    /// the operation, is dropped when the IRP came back (its buffers freed, its items released
    /// once). Allocates nothing.
    ///
    /// IRQL == PASSIVE_LEVEL (task context).
    pub async fn send_chain(&mut self, chain: SendChain) -> (Result<()>, SendChain) {
        let (core, slot) = match self.parts() {
            Ok(parts) => parts,
            Err(e) => return (Err(e), chain),
        };
        let mut block = chain.into_block();
        // The whole chain in one WskSend, where the shadow MDLs cover its items.
        // SAFETY: no send uses the chain now; the links are undone below, after the send
        // completed, or by the block's drop, before any item is released.
        if let Some(whole) = unsafe { block.link_whole() } {
            // SAFETY: the linked MDLs (buffers and shadow MDLs) and the items' pages live in the
            // block, which the slot holds.
            let mut holding = Holding::block(block);
            // SAFETY: as above.
            let result = unsafe { send_whole(core, slot, HeldBuf(whole), &mut holding) }.await;
            let mut block = holding.into_block();
            block.unlink_all();
            block.release_items();
            return (result, SendChain::from_block(block));
        }
        let mut at = 0;
        let result = loop {
            if at >= block.slice_mut().len() {
                break Ok(());
            }
            // SAFETY: no send uses the chain now; every link is undone below, after the send
            // completed, or by the block's drop.
            let (run, end) = unsafe { send_chain::link_run(block.slice_mut(), at) };
            if end > at {
                let Some(run) = run else {
                    at = end;
                    continue;
                };
                // SAFETY: the linked buffers live in the block, which the slot holds.
                let mut holding = Holding::block(block);
                // SAFETY: as above.
                let result = unsafe { send_whole(core, slot, HeldBuf(run), &mut holding) }.await;
                block = holding.into_block();
                block.unlink_all();
                if let Err(e) = result {
                    break Err(e);
                }
                at = end;
                continue;
            }
            // A received item over WSK's buffers: one send per entry, then its release.
            // Not ours to link, so a received item over WSK's buffers (`link_run` takes every
            // buffer of ours).
            let Some(Some(Piece::Received(item))) = block.slice_mut().get(at) else {
                break Err(Error::InvalidInput("a piece of the chain is neither a buffer nor an item"));
            };
            let mut bufs = item.wsk_bufs();
            let mut failed = None;
            // SAFETY: the item stays in the block, which this function or the slot holds,
            // until the release below.
            while let Some(buf) = unsafe { bufs.next() } {
                // SAFETY: `buf` is WSK's memory, kept by the item in the block.
                let mut holding = Holding::block(block);
                // SAFETY: as above.
                let result = unsafe { send_whole(core, slot, HeldBuf(buf), &mut holding) }.await;
                block = holding.into_block();
                if let Err(e) = result {
                    failed = Some(e);
                    break;
                }
            }
            if let Some(e) = failed {
                break Err(e);
            }
            // Sent: back to WSK now.
            drop(block.slice_mut()[at].take());
            at += 1;
        };
        block.release_items();
        (result, SendChain::from_block(block))
    }
}

impl TcpStream {
    /// See [`TcpWriteHalf::send_received`].
    ///
    /// IRQL == PASSIVE_LEVEL (task context).
    pub async fn send_received(&mut self, item: Received) -> Result<()> {
        self.write_half().send_received(item).await
    }

    /// See [`TcpWriteHalf::send_chain`].
    ///
    /// IRQL == PASSIVE_LEVEL (task context).
    pub async fn send_chain(&mut self, chain: SendChain) -> (Result<()>, SendChain) {
        self.write_half().send_chain(chain).await
    }
}
