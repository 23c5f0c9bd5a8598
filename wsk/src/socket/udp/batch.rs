//! Batches of datagrams: [`UdpSendHalf::send_batch_to`] sends every buffer of a
//! [`SendChain`] as one datagram to one address, with one `WskSendMessages` where the provider
//! has it, else with one `WskSendTo` per datagram.
//!
//! # When `WskSendMessages` is there
//!
//! `WskSendMessages` came with Windows 8, as the last member of
//! `WSK_PROVIDER_DATAGRAM_DISPATCH`: the table of an older provider ends before it, and
//! reading the member there would read past the table. So the member is read only where the
//! kernel says it is Windows 8 or later (`RtlIsNtDdiVersionAvailable(NTDDI_WIN8)`, asked once).
//! Then a null routine, or a call that completes with `STATUS_NOT_IMPLEMENTED` (a stub, as
//! `Armed::submit` reports one), means the same: the batch goes out one `WskSendTo` per
//! datagram, in order, over the same buffers.
//!
//! The `WSK_BUF_LIST` lives in the chain's block, which the operation slot holds while the
//! IRP is in flight, with the buffers it describes: a batch allocates nothing.
//!
//! If a datagram of a batch fails, the provider completes the whole `WskSendMessages` with the
//! failure; Microsoft's page does not say which datagrams went out before it. A failed
//! batch is therefore reported as failed, whatever part of it was sent (datagrams may be lost
//! anyway).

use core::net::SocketAddr;

use wsk_sys::{NTDDI_WIN8, STATUS_NOT_IMPLEMENTED, WSK_BUF_LIST};

use super::{UdpSendHalf, UdpSocket};
use crate::addr;
use crate::error::{Error, Result};
use crate::pool::PoolBox;
use crate::send_chain::{CHAIN_TAG, HeldBuf, Pieces, SendChain};
use crate::socket::call::{Holding, NotIssued, socket_call_holding};

/// What [`table_has_send_messages`] found: not asked yet, or the answer.
const UNKNOWN: u8 = 0;
const PRESENT: u8 = 1;
const ABSENT: u8 = 2;

/// The host's atomic, not the loom shim's: a static is never part of a loom model (and loom's
/// atomics cannot be statics); a race of two first askers only asks twice.
static SEND_MESSAGES_IN_TABLE: core::sync::atomic::AtomicU8 = core::sync::atomic::AtomicU8::new(UNKNOWN);

/// Whether the provider's datagram table has the `WskSendMessages` member at all (Windows 8 or
/// later; see the module documentation). IRQL == PASSIVE_LEVEL.
fn table_has_send_messages() -> bool {
    match SEND_MESSAGES_IN_TABLE.load(core::sync::atomic::Ordering::Acquire) {
        PRESENT => true,
        ABSENT => false,
        _ => {
            // SAFETY: a kernel query without arguments to vouch for; PASSIVE_LEVEL (task).
            let present = unsafe { wsk_sys::RtlIsNtDdiVersionAvailable(NTDDI_WIN8) } != 0;
            SEND_MESSAGES_IN_TABLE.store(if present { PRESENT } else { ABSENT }, core::sync::atomic::Ordering::Release);
            present
        }
    }
}

/// The head of a `WSK_BUF_LIST` in a chain's block, carried across the send's awaits.
#[derive(Clone, Copy)]
struct ListHead(*mut WSK_BUF_LIST);

// SAFETY: the list lives in the block the send holds; any thread may hand it to the provider.
unsafe impl Send for ListHead {}
// SAFETY: as above.
unsafe impl Sync for ListHead {}

impl ListHead {
    /// The pointer (a method, so a closure captures the whole `Send` wrapper).
    fn get(self) -> *mut WSK_BUF_LIST {
        self.0
    }
}

/// The byte count of a send holding a chain's block, and the block back.
fn collect(
    done: core::result::Result<crate::op::Completion, NotIssued>,
) -> (Result<usize>, PoolBox<Pieces, CHAIN_TAG>) {
    match done {
        Ok(done) => {
            let result = done.result();
            (result, Holding { block: done.block, item: done.item }.into_block())
        }
        Err(NotIssued { error, block, item, .. }) => (Err(error), Holding { block, item }.into_block()),
    }
}

impl UdpSendHalf {
    /// Sends every buffer of `batch` as one datagram to `to`, in order: with one
    /// `WskSendMessages` where the provider has it, else one `WskSendTo` per datagram (see
    /// the module documentation). Returns the bytes sent and the chain, unchanged. A batch
    /// may hold `IoBuf`s (and items a connection's event stream copied); an item holding
    /// WSK's buffers is refused with [`Error::InvalidInput`]. Allocates nothing.
    ///
    /// Dropping the future cancels the send in flight; the chain is dropped when its IRP
    /// came back.
    ///
    /// IRQL == PASSIVE_LEVEL (task context).
    #[expect(
        clippy::multiple_unsafe_ops_per_block,
        reason = "one provider call: reaching its arguments in the slot's argument block is part of it"
    )]
    pub async fn send_batch_to(&mut self, batch: SendChain, to: SocketAddr) -> (Result<usize>, SendChain) {
        let mut block = batch.into_block();
        let head = match block.datagram_list() {
            Ok(head) => ListHead(head),
            Err(e) => return (Err(e), SendChain::from_block(block)),
        };
        if head.0.is_null() {
            return (Ok(0), SendChain::from_block(block));
        }
        if table_has_send_messages() {
            // SAFETY: datagram dispatch table, read only on Windows 8 or later (where the member
            // exists); the list and the buffers it describes live in the block the slot holds,
            // the address in the slot's argument block.
            let done = unsafe {
                socket_call_holding(
                    &self.core,
                    &mut self.send,
                    Holding::block(block),
                    |args, _| args.addr = addr::to_storage(&to),
                    |socket, table, irp, args| {
                        let remote = addr::as_sockaddr(&mut (*args).addr);
                        table
                            .WskSendMessages
                            .map(|send| send(socket, head.get(), 0, remote, 0, core::ptr::null_mut(), irp))
                    },
                )
            }
            .await;
            let (result, back) = collect(done);
            block = back;
            match result {
                Err(Error::Status(STATUS_NOT_IMPLEMENTED)) => {}
                result => return (result, SendChain::from_block(block)),
            }
        }
        self.send_each_to(block, to).await
    }

    /// The fallback: one `WskSendTo` per datagram of the block, in order; stops at the first
    /// failure.
    #[expect(
        clippy::multiple_unsafe_ops_per_block,
        reason = "one provider call: reaching its arguments in the slot's argument block is part of it"
    )]
    async fn send_each_to(
        &mut self,
        mut block: PoolBox<Pieces, CHAIN_TAG>,
        to: SocketAddr,
    ) -> (Result<usize>, SendChain) {
        let mut total = 0;
        let mut at = 0;
        while let Some(datagram) = block.datagram(at) {
            let datagram = match datagram {
                Ok(buf) => HeldBuf(buf),
                Err(e) => return (Err(e), SendChain::from_block(block)),
            };
            // SAFETY: datagram dispatch table; the WSK_BUF and the address in the slot's
            // argument block, the buffer it describes in the block the slot holds.
            let done = unsafe {
                socket_call_holding(
                    &self.core,
                    &mut self.send,
                    Holding::block(block),
                    move |args, _| {
                        args.wsk_buf = datagram.get();
                        args.addr = addr::to_storage(&to);
                    },
                    |socket, table, irp, args| {
                        let remote = addr::as_sockaddr(&mut (*args).addr);
                        table.WskSendTo.map(|send_to| {
                            send_to(socket, &raw mut (*args).wsk_buf, 0, remote, 0, core::ptr::null_mut(), irp)
                        })
                    },
                )
            }
            .await;
            let (result, back) = collect(done);
            block = back;
            match result {
                Ok(n) => total += n,
                Err(e) => return (Err(e), SendChain::from_block(block)),
            }
            at += 1;
        }
        (Ok(total), SendChain::from_block(block))
    }
}

impl UdpSocket {
    /// See [`UdpSendHalf::send_batch_to`].
    ///
    /// IRQL == PASSIVE_LEVEL (task context).
    pub async fn send_batch_to(&mut self, batch: SendChain, to: SocketAddr) -> (Result<usize>, SendChain) {
        self.send.send_batch_to(batch, to).await
    }
}
