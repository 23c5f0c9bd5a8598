//! Datagram events: `WskReceiveFromEvent` as the [`Datagrams`] stream.
//!
//! A callback retains the whole list WSK indicates (one or more datagrams) and the stream
//! hands it out as one [`DatagramBatch`]; dropping the batch releases the list. Over the
//! retention bound the callback refuses the datagrams (`STATUS_DATA_NOT_ACCEPTED`) and WSK
//! stops indicating (it disables the callback, as Microsoft documents). Once the consumer
//! dropped everything, the stream enables the callback again and WSK indicates what it kept;
//! while the consumer still holds some and asks for more, the stream copies one datagram at
//! a time out with `WskReceiveFrom` (which WSK serves from what it kept, oldest first).

use core::net::SocketAddr;
use core::pin::Pin;
use core::ptr::NonNull;
use core::task::{Context, Poll};

use futures_core::Stream;
use wsk_sys::{
    NTSTATUS, PVOID, STATUS_DATA_NOT_ACCEPTED, STATUS_SUCCESS, ULONG, WSK_CLIENT_DATAGRAM_DISPATCH,
    WSK_DATAGRAM_INDICATION, WSK_EVENT_RECEIVE_FROM, WSK_PROVIDER_DATAGRAM_DISPATCH, WSK_SOCKET,
};

use super::attached::{Attached, with_state};
use super::borrowed::{Borrowed, BudgetWait};
use super::pieces::BufPieces;
use super::retention::{Indicating, Retained, Retention, retain};
use super::{EventConfig, EventState, Header, allocate, enable};
use crate::addr;
use crate::buf_pool;
use crate::error::{Error, Result};
use crate::loom::{AtomicU32, Ordering};
use crate::op::OpSlot;
use crate::socket::call::issue_call;
use crate::socket::control::{ControlIter, ControlMessages};
use crate::socket::kind::Datagram;
use crate::socket::shared::{CoreRef, SocketCore};
use crate::socket::udp::{prepare_receive_from, receive_from_call, truncation_and_control};

/// The client dispatch table every datagram socket is created with.
pub(crate) static DATAGRAM_DISPATCH: WSK_CLIENT_DATAGRAM_DISPATCH =
    WSK_CLIENT_DATAGRAM_DISPATCH { WskReceiveFromEvent: Some(on_receive_from) };

/// Event state of a datagram socket.
#[repr(C)]
pub(crate) struct DgramState {
    header: Header,
    /// Retained lists; a refusal means WSK indicates no more until the callback is enabled
    /// again.
    rx: Retention<WSK_DATAGRAM_INDICATION>,
    failed: AtomicU32,
    /// The stream's place on the budget's wait list: its copy path waits for budget.
    budget: BudgetWait<Datagram>,
}

// SAFETY: `repr(C)` with its header, made by `Header::new::<DgramState>()`, first.
unsafe impl EventState for DgramState {
    type Kind = Datagram;

    fn header(&self) -> &Header {
        &self.header
    }

    fn clean(&self, core: &SocketCore<Datagram>) {
        self.rx.drain(core, None);
    }
}

impl Indicating for Datagram {
    type Indication = WSK_DATAGRAM_INDICATION;

    fn release_routine(
        table: &WSK_PROVIDER_DATAGRAM_DISPATCH,
    ) -> Option<unsafe extern "system" fn(*mut WSK_SOCKET, *mut WSK_DATAGRAM_INDICATION) -> NTSTATUS> {
        table.WskRelease
    }

    fn retention(state: &DgramState) -> &Retention<WSK_DATAGRAM_INDICATION> {
        &state.rx
    }
}

/// `WskReceiveFromEvent`. IRQL <= DISPATCH_LEVEL; never blocks or allocates.
unsafe extern "system" fn on_receive_from(
    context: PVOID,
    _flags: ULONG,
    indication: *mut WSK_DATAGRAM_INDICATION,
) -> NTSTATUS {
    let receive_from = |core: &CoreRef<'_, Datagram>, state: &DgramState| {
        let Some(head) = NonNull::new(indication) else {
            state.failed.store(1, Ordering::Release);
            state.header.waker.wake();
            return STATUS_SUCCESS;
        };
        // SAFETY: the list WSK indicates is valid during the call.
        let size = || unsafe { measure(head) };
        // SAFETY: WSK's indication list of this call.
        unsafe { retain(core, state, head, size) }
    };
    // SAFETY: WSK passes the context we created the datagram socket with along with this
    // table, and calls only until the close completed.
    unsafe { with_state(context, receive_from) }.unwrap_or(STATUS_DATA_NOT_ACCEPTED)
}

/// Number of datagrams and payload bytes of a list.
///
/// # Safety
/// `head` is a valid indication list.
unsafe fn measure(head: NonNull<WSK_DATAGRAM_INDICATION>) -> (usize, usize) {
    let (mut count, mut bytes) = (0, 0);
    let mut at = head.as_ptr();
    while !at.is_null() {
        // SAFETY: a node of the valid list.
        let node = unsafe { &*at };
        count += 1;
        bytes += node.Buffer.Length;
        at = node.Next;
    }
    (count, bytes)
}

/// Received datagrams as a [`Stream`] of [`DatagramBatch`]es (`WskReceiveFromEvent`).
pub struct Datagrams {
    /// The core and the state (see the module docs).
    attached: Attached<Datagram>,
    /// For the copy path's `WskReceiveFrom`.
    slot: OpSlot,
    receiving: bool,
    fallback_size: usize,
    /// Bytes of the budget charged for the next copy-path receive (0: none yet).
    charged: usize,
    ending: bool,
}

impl Datagrams {
    /// Installs the event state on the datagram `core` and enables the callback.
    pub(crate) fn enable(core: SocketCore<Datagram>, config: EventConfig) -> Result<Self> {
        let slot = OpSlot::new()?;
        let state = allocate(DgramState {
            header: Header::new::<DgramState>(),
            rx: Retention::new(config.max_retained_bytes),
            failed: AtomicU32::new(0),
            budget: BudgetWait::new(),
        })?;
        Ok(Datagrams {
            attached: Attached::install(&core, state, WSK_EVENT_RECEIVE_FROM)?,
            slot,
            receiving: false,
            fallback_size: config.fallback_receive_size,
            charged: 0,
            ending: false,
        })
    }

    fn state(&self) -> &DgramState {
        self.attached.state()
    }

    /// Bytes retained from WSK now. Any IRQL.
    pub fn retained_bytes(&self) -> usize {
        self.state().rx.retained()
    }

    /// The copy path's budget: `Ready` once the next receive's buffer is charged to the
    /// driver-wide budget; else the stream waits on the budget's wait list
    /// ([`crate::budget`]).
    fn poll_budget(&mut self) -> Poll<()> {
        let bytes = buf_pool::capacity_for(self.fallback_size);
        let state = self.attached.state();
        state.budget.poll_charge(self.attached.core(), &state.header.waker, &mut self.charged, bytes)
    }

    /// Issues a `WskReceiveFrom` into a buffer borrowed from the buffer pool (the copy path;
    /// its budget is charged, see [`Datagrams::poll_budget`]), of at most `fallback_size`
    /// bytes whatever the pool buffer's size (a longer datagram is truncated, `MSG_TRUNC`).
    #[expect(
        clippy::multiple_unsafe_ops_per_block,
        reason = "one call into a provider routine whose pointer arguments lead into the operation slot"
    )]
    fn issue_receive_from(&mut self) -> Result<()> {
        let buffer = buf_pool::global().take(self.fallback_size)?;
        let length = self.fallback_size.max(1);
        // SAFETY: the slot is idle (checked by the caller); the WSK_BUF and the address live
        // in the slot's argument block, the buffer in the slot, until the IRP completes.
        unsafe {
            issue_call(
                self.attached.core(),
                &mut self.slot,
                Some(buffer),
                None,
                |args, buffer| {
                    let buffer = buffer.expect("receive buffer");
                    prepare_receive_from(args, buffer);
                    args.wsk_buf = buffer.wsk_buf(0, length.min(buffer.capacity()));
                },
                |socket, table, irp, args| receive_from_call(socket, table, irp, args),
            )
        }
        .map_err(|not_issued| not_issued.error)?;
        self.receiving = true;
        Ok(())
    }

    fn finish(&mut self) {
        if self.receiving {
            self.receiving = false;
            self.slot.abandon();
        }
        self.attached.state().budget.give_up(&mut self.charged);
        self.attached.detach();
    }

    /// The oldest list the callbacks retained, as a batch; `None` when the ring is empty.
    /// Lists popped after close began are released instead of handed out (the next turn of
    /// [`Datagrams::poll_batch`] then ends the stream).
    fn next_retained(&mut self) -> Option<DatagramBatch> {
        loop {
            // SAFETY: the stream is the ring's only consumer.
            let list = unsafe { self.state().rx.pop() }?;
            if let Some(retained) = Retained::hand_out(self.attached.core(), self.attached.state_ptr(), list) {
                return Some(DatagramBatch { inner: BatchInner::Retained(retained) });
            }
        }
    }

    fn poll_batch(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<DatagramBatch>>> {
        if self.attached.is_done() {
            return Poll::Ready(None);
        }
        self.state().header.waker.register(cx.waker());
        loop {
            if self.ending || self.attached.core().is_closing() {
                self.finish();
                return Poll::Ready(None);
            }
            if self.receiving {
                let Poll::Ready(done) = self.slot.poll_submitted(cx) else {
                    // The copy waits for a datagram. Callbacks that were in progress when it
                    // was issued, or indications the provider resumed meanwhile (the emulator
                    // resumes them once a `WskReceiveFrom` completed; Microsoft's
                    // documentation does not say that a provider keeps them off), may have
                    // retained lists: hand those out now. The copy's datagram may never come
                    // (the peer sent everything, and it is in the ring).
                    return match self.next_retained() {
                        Some(batch) => Poll::Ready(Some(Ok(batch))),
                        None => Poll::Pending,
                    };
                };
                self.receiving = false;
                let result = done.result();
                let mut buffer = Borrowed { buf: done.buffer, charged: core::mem::take(&mut self.charged) };
                match result {
                    Ok(n) => {
                        buffer.set_len(n);
                        let from = self.slot.result_addr().ok();
                        let (truncated, control) =
                            self.slot.args().map_or((false, ControlMessages::none()), truncation_and_control);
                        let copied = Copied { buffer, from, truncated, control };
                        return Poll::Ready(Some(Ok(DatagramBatch { inner: BatchInner::Copied(copied) })));
                    }
                    Err(Error::Cancelled) if self.attached.core().is_closing() => continue,
                    Err(Error::Cancelled) => {
                        // The provider's own cancel (see `socket::provider_cancel`): nothing
                        // was received and WSK still keeps what it kept, so the refusal stands
                        // again. Yield to the executor (woken at once) before the next copy.
                        crate::log!(info, "wsk: the provider cancelled a datagram stream's receive; receiving again");
                        drop(buffer);
                        self.state().rx.refused_before();
                        cx.waker().wake_by_ref();
                        return Poll::Pending;
                    }
                    Err(e) => {
                        self.ending = true;
                        return Poll::Ready(Some(Err(e)));
                    }
                }
            }
            if let Some(batch) = self.next_retained() {
                return Poll::Ready(Some(Ok(batch)));
            }
            if self.attached.core().is_closing() {
                continue;
            }
            if self.state().failed.load(Ordering::Acquire) != 0 {
                self.ending = true;
                return Poll::Ready(Some(Err(Error::Status(wsk_sys::STATUS_CONNECTION_ABORTED))));
            }
            let state = self.state();
            if state.rx.refused() {
                if state.header.flags.load(Ordering::Acquire) >= super::CALLBACK_ONE {
                    // The refusing callback has not left yet: resume after its answer. It
                    // wakes the stream once it left (`retention::retain`).
                    return Poll::Pending;
                }
                if self.attached.core().static_events() & WSK_EVENT_RECEIVE_FROM != 0 {
                    // A static callback is not disabled by a refusal, and WSK does not offer
                    // the refused datagrams again (see `client_control`): nothing to resume
                    // and nothing kept to copy. New datagrams keep coming.
                    state.rx.clear_refused();
                } else if state.rx.retained() == 0 && !state.rx.refused_unmappable() {
                    // Caught up: ask WSK for what it kept (the next list is taken whatever
                    // its size, so this cannot bounce).
                    state.rx.clear_refused();
                    if let Err(e) = enable(self.attached.core(), WSK_EVENT_RECEIVE_FROM) {
                        self.ending = true;
                        return Poll::Ready(Some(Err(e)));
                    }
                } else {
                    // The consumer holds some and asks for more: copy the oldest kept datagram
                    // out (WSK serves a `WskReceiveFrom` from what it kept, oldest first).
                    // (Also when the refused data could not be mapped: indicated again, it
                    // would be refused again.)
                    core::task::ready!(self.slot.poll_idle(cx));
                    core::task::ready!(self.poll_budget());
                    if let Err(e) = self.issue_receive_from() {
                        self.ending = true;
                        return Poll::Ready(Some(Err(e)));
                    }
                    self.state().rx.copied_unmappable();
                }
                continue;
            }
            return Poll::Pending;
        }
    }

    /// Closes the socket; resolves when the close IRP completes (after every batch was
    /// dropped). IRQL == PASSIVE_LEVEL (task context).
    pub async fn close(mut self) -> Result<()> {
        self.finish();
        let core = self.attached.core().clone_owner();
        drop(self);
        core.close().await
    }
}

impl Stream for Datagrams {
    type Item = Result<DatagramBatch>;

    /// IRQL == PASSIVE_LEVEL (task context).
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        // A stream whose items are always there spends the task's budget like any ready
        // operation (see `wsk_executor::coop`).
        core::task::ready!(wsk_executor::coop::poll_proceed(cx));
        self.get_mut().poll_batch(cx)
    }
}

impl Drop for Datagrams {
    fn drop(&mut self) {
        if self.receiving {
            self.receiving = false;
            self.slot.abandon();
        }
        self.attached.state().budget.give_up(&mut self.charged);
        // Then `attached` detaches (see `Attached`'s drop).
    }
}

/// One or more datagrams WSK indicated together, held without copying until dropped
/// (`WskRelease`); or, on the copy path, one datagram in a pool buffer. Dropping is allowed at
/// IRQL <= DISPATCH_LEVEL.
pub struct DatagramBatch {
    inner: BatchInner,
}

enum BatchInner {
    /// Released (`WskRelease`) when dropped.
    Retained(Retained<Datagram>),
    Copied(Copied),
}

/// A datagram the copy path received with `WskReceiveFrom`.
struct Copied {
    buffer: Borrowed,
    from: Option<SocketAddr>,
    /// The datagram was larger than the fallback buffer (`MSG_TRUNC`).
    truncated: bool,
    control: ControlMessages,
}

impl core::fmt::Debug for DatagramBatch {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DatagramBatch")
            .field("datagrams", &self.len())
            .field("bytes", &self.bytes())
            .field("zero_copy", &self.is_zero_copy())
            .finish()
    }
}

impl DatagramBatch {
    /// Number of datagrams. Any IRQL.
    pub fn len(&self) -> usize {
        match &self.inner {
            BatchInner::Retained(retained) => retained.held.count as usize,
            BatchInner::Copied(_) => 1,
        }
    }

    /// Whether the batch holds no datagram (never the case for a batch the stream yields).
    /// Any IRQL.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Payload bytes of all datagrams. Any IRQL.
    pub fn bytes(&self) -> usize {
        match &self.inner {
            BatchInner::Retained(retained) => retained.held.bytes as usize,
            BatchInner::Copied(copied) => copied.buffer.as_slice().len(),
        }
    }

    /// Whether the datagrams are WSK's retained buffers (not a copy). Any IRQL.
    pub fn is_zero_copy(&self) -> bool {
        matches!(self.inner, BatchInner::Retained(_))
    }

    /// The datagrams, in arrival order. IRQL <= DISPATCH_LEVEL.
    pub fn iter(&self) -> impl Iterator<Item = DatagramView<'_>> {
        let (mut at, mut copied) = match &self.inner {
            BatchInner::Retained(retained) => (retained.held.head.as_ptr(), None),
            BatchInner::Copied(copied) => {
                (core::ptr::null_mut(), Some(DatagramView { inner: ViewInner::Copied(copied) }))
            }
        };
        core::iter::from_fn(move || {
            if let Some(view) = copied.take() {
                return Some(view);
            }
            let node = NonNull::new(at)?;
            // SAFETY: a node of the list this batch retains (valid until it is dropped).
            at = unsafe { node.as_ref().Next };
            Some(DatagramView { inner: ViewInner::Node(node, core::marker::PhantomData) })
        })
    }
}

/// One datagram of a [`DatagramBatch`].
pub struct DatagramView<'a> {
    inner: ViewInner<'a>,
}

enum ViewInner<'a> {
    Node(NonNull<WSK_DATAGRAM_INDICATION>, core::marker::PhantomData<&'a DatagramBatch>),
    Copied(&'a Copied),
}

impl DatagramView<'_> {
    /// Payload length. Any IRQL.
    pub fn len(&self) -> usize {
        match &self.inner {
            // SAFETY: retained by the batch borrowed for 'a.
            ViewInner::Node(node, _) => unsafe { node.as_ref().Buffer.Length },
            ViewInner::Copied(copied) => copied.buffer.as_slice().len(),
        }
    }

    /// Whether the payload is empty. Any IRQL.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The sender, if WSK gave an IPv4 or IPv6 address. IRQL <= DISPATCH_LEVEL.
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        match &self.inner {
            ViewInner::Node(node, _) => {
                // SAFETY: a node retained by the batch borrowed for 'a.
                let node = unsafe { node.as_ref() };
                // SAFETY: WSK's remote address of this datagram, valid while retained.
                unsafe { addr::from_sockaddr(node.RemoteAddress) }.ok()
            }
            ViewInner::Copied(copied) => copied.from,
        }
    }

    /// The payload as contiguous pieces. IRQL <= DISPATCH_LEVEL.
    pub fn segments(&self) -> impl Iterator<Item = &[u8]> {
        let (pieces, copied) = match &self.inner {
            ViewInner::Node(node, _) => {
                // SAFETY: a node retained by the batch borrowed for 'a.
                let node = unsafe { node.as_ref() };
                // SAFETY: the buffer is retained (unchanged) while the batch is borrowed.
                (unsafe { BufPieces::new(&node.Buffer) }, None)
            }
            ViewInner::Copied(copied) => (BufPieces::empty(), Some(copied.buffer.as_slice())),
        };
        copied.into_iter().chain(pieces)
    }

    /// Whether the datagram was cut to fit the buffer it was received into (`MSG_TRUNC`): the
    /// view holds its first bytes, the rest is lost. Never for a datagram WSK indicated (an
    /// indication carries the whole datagram); on the copy path, when the datagram was larger
    /// than [`EventConfig::fallback_receive_size`]. Any IRQL.
    pub fn is_truncated(&self) -> bool {
        match &self.inner {
            ViewInner::Node(..) => false,
            ViewInner::Copied(copied) => copied.truncated,
        }
    }

    /// The datagram's control messages (for example `IP_PKTINFO`'s packet information, when
    /// that option is on): for an indicated datagram, those of its indication
    /// (`ControlInfo`, `ControlInfoLength`); for a copied one, those `WskReceiveFrom` wrote.
    /// Whether the copy path had to drop some (`MSG_CTRUNC`) is
    /// [`DatagramView::control_truncated`]. IRQL <= DISPATCH_LEVEL.
    pub fn control_messages(&self) -> ControlIter<'_> {
        match &self.inner {
            ViewInner::Node(node, _) => {
                // SAFETY: a node retained by the batch borrowed for 'a.
                let node = unsafe { node.as_ref() };
                if node.ControlInfo.is_null() || node.ControlInfoLength == 0 {
                    return ControlIter::new(&[]);
                }
                // SAFETY: WSK's control information of this datagram: `ControlInfoLength`
                // bytes, valid and unchanged while the indication is retained.
                let bytes = unsafe {
                    core::slice::from_raw_parts(
                        node.ControlInfo.cast::<u8>().cast_const(),
                        node.ControlInfoLength as usize,
                    )
                };
                ControlIter::new(bytes)
            }
            ViewInner::Copied(copied) => copied.control.iter(),
        }
    }

    /// Whether control information of a copied datagram did not fit the control buffer
    /// (`MSG_CTRUNC`); never for an indicated datagram (its indication carries all of it).
    /// Any IRQL.
    pub fn control_truncated(&self) -> bool {
        match &self.inner {
            ViewInner::Node(..) => false,
            ViewInner::Copied(copied) => copied.control.is_truncated(),
        }
    }

    /// Copies the payload into `dst` (as much as fits); returns how many bytes.
    /// IRQL <= DISPATCH_LEVEL.
    pub fn copy_to_slice(&self, dst: &mut [u8]) -> usize {
        let mut at = 0;
        for piece in self.segments() {
            let n = piece.len().min(dst.len() - at);
            dst[at..at + n].copy_from_slice(&piece[..n]);
            at += n;
        }
        at
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use std::vec::Vec;

    use crate::buf::IoBuf;

    use core::net::{Ipv6Addr, SocketAddrV6};
    use wsk_sys::{SOCKADDR, WSK_BUF};

    use super::*;
    use crate::tests::kernel::{chain, mdl_over};

    fn datagram(mdl: *mut wsk_sys::MDL, length: usize, from: *mut SOCKADDR) -> WSK_DATAGRAM_INDICATION {
        WSK_DATAGRAM_INDICATION {
            Next: core::ptr::null_mut(),
            Buffer: WSK_BUF { Mdl: mdl, Offset: 0, Length: length },
            ControlInfo: core::ptr::null_mut(),
            ControlInfoLength: 0,
            RemoteAddress: from,
        }
    }

    /// `measure` counts every datagram of a list and their payload bytes; each view reads its
    /// own datagram's payload (across MDLs) and sender, the sender from memory as the
    /// provider laid it out (no alignment assumed).
    #[test]
    fn a_list_is_measured_and_each_datagram_read() {
        let sender = SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::LOCALHOST, 5353, 0, 0));
        let storage = addr::to_storage(&sender);
        let mut address = [0u8; 1 + 28];
        // SAFETY: the storage's first 28 bytes (a SOCKADDR_IN6) are initialized.
        address[1..].copy_from_slice(unsafe { core::slice::from_raw_parts((&raw const storage).cast::<u8>(), 28) });
        let from = address[1..].as_mut_ptr().cast::<SOCKADDR>();
        let (mut a, mut b, mut c) = (*b"ping", *b"po", *b"ng");
        let mut first_mdl = mdl_over(&mut a, true);
        let mut second_mdls = [mdl_over(&mut b, true), mdl_over(&mut c, true)];
        let second_chain = chain(&mut second_mdls);
        let mut second = datagram(second_chain, 4, core::ptr::null_mut());
        let mut first = datagram(&raw mut first_mdl, 4, from);
        first.Next = &raw mut second;
        // The first comes with an `IP_PKTINFO` message (x64 layout: 16-byte header, 8 data bytes).
        let mut control = [0u64; 3];
        let mut control_bytes = [0u8; 24];
        control_bytes[..8].copy_from_slice(&24usize.to_ne_bytes());
        control_bytes[8..12].copy_from_slice(&wsk_sys::IPPROTO_IP.to_ne_bytes());
        control_bytes[12..16].copy_from_slice(&wsk_sys::IP_PKTINFO.to_ne_bytes());
        control_bytes[16..20].copy_from_slice(&[10, 0, 0, 1]);
        control_bytes[20..24].copy_from_slice(&7u32.to_ne_bytes());
        for (word, bytes) in control.iter_mut().zip(control_bytes.chunks(8)) {
            *word = u64::from_ne_bytes(bytes.try_into().unwrap());
        }
        first.ControlInfo = control.as_mut_ptr().cast();
        first.ControlInfoLength = 24;
        let head = NonNull::from(&mut first);
        // SAFETY: the test's valid list.
        assert_eq!(unsafe { measure(head) }, (2, 8));
        // SAFETY: `first.Next` is the second entry, alive.
        let second = NonNull::new(unsafe { head.as_ref().Next }).unwrap();
        let views = [
            DatagramView { inner: ViewInner::Node(head, core::marker::PhantomData) },
            DatagramView { inner: ViewInner::Node(second, core::marker::PhantomData) },
        ];
        assert_eq!(views[0].len(), 4);
        assert_eq!(views[0].remote_addr(), Some(sender));
        assert_eq!(views[1].remote_addr(), None, "no address given");
        let messages: Vec<_> = views[0].control_messages().collect();
        assert_eq!(messages.len(), 1, "the indication's control information");
        let info = messages[0].packet_info().expect("IP_PKTINFO");
        assert_eq!((info.destination, info.interface), (core::net::IpAddr::from([10, 0, 0, 1]), 7));
        assert_eq!(views[1].control_messages().count(), 0, "none given");
        assert!(!views[0].is_truncated() && !views[0].control_truncated(), "an indication is whole");
        assert_eq!(views[1].segments().collect::<Vec<_>>(), [&b"po"[..], b"ng"]);
        let mut out = [0u8; 3];
        assert_eq!(views[1].copy_to_slice(&mut out), 3, "as much as fits");
        assert_eq!(&out, b"pon");
    }

    #[test]
    fn a_copied_batch_is_one_datagram() {
        let from = Some(SocketAddr::from(([127, 0, 0, 1], 9)));
        let copied = Copied {
            buffer: Borrowed { buf: Some(IoBuf::copy_from(b"dgram").unwrap()), charged: 0 },
            from,
            truncated: true,
            control: ControlMessages::none(),
        };
        let batch = DatagramBatch { inner: BatchInner::Copied(copied) };
        assert!(!batch.is_zero_copy());
        assert_eq!((batch.len(), batch.bytes()), (1, 5));
        let views: Vec<_> = batch.iter().collect();
        assert_eq!(views.len(), 1);
        assert_eq!(views[0].remote_addr(), from);
        assert_eq!(views[0].segments().collect::<Vec<_>>(), [&b"dgram"[..]]);
        assert!(views[0].is_truncated(), "the copy's truncation flag");
        assert_eq!(views[0].control_messages().count(), 0);
    }
}
