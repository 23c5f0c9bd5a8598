//! Datagram events: `WskReceiveFromEvent` as the [`Datagrams`] stream.
//!
//! A callback retains the whole list WSK indicates (one or more datagrams) and the stream
//! hands it out as one [`DatagramBatch`]; dropping the batch releases the list. Over the
//! retention bound the callback refuses the datagrams (`STATUS_DATA_NOT_ACCEPTED`) and WSK
//! stops indicating; once the consumer dropped enough, the stream enables the callback again
//! and WSK indicates what it kept.

// The callback and the batch read provider structures through raw pointers; several unsafe
// operations per block keep each pointer step next to the reason it is valid.
#![allow(clippy::multiple_unsafe_ops_per_block)]

use core::mem::ManuallyDrop;
use core::net::SocketAddr;
use core::pin::Pin;
use core::ptr::NonNull;
use core::task::{Context, Poll};

use futures_core::Stream;
use wsk_sys::{
    NTSTATUS, PVOID, STATUS_DATA_NOT_ACCEPTED, STATUS_PENDING, STATUS_SUCCESS, ULONG, WSK_CLIENT_DATAGRAM_DISPATCH,
    WSK_DATAGRAM_INDICATION, WSK_EVENT_RECEIVE_FROM, WSK_PROVIDER_DATAGRAM_DISPATCH,
};

use super::pieces::BufPieces;
use super::ring::Ring;
use super::{
    CallbackExit, Detach, EventConfig, Header, allocate, callback_enter, callback_exit, deallocate, enable, install,
    state_of, stream_detach,
};
use crate::addr;
use crate::error::{Error, Result};
use crate::loom::{AtomicU32, AtomicUsize, Ordering};
use crate::socket::core::SocketCore;

/// The client dispatch table every datagram socket is created with.
pub(crate) static DATAGRAM_DISPATCH: WSK_CLIENT_DATAGRAM_DISPATCH =
    WSK_CLIENT_DATAGRAM_DISPATCH { WskReceiveFromEvent: Some(on_receive_from) };

/// Lists retained at most.
const RING_SLOTS: usize = 32;

/// A retained datagram list.
struct List {
    head: NonNull<WSK_DATAGRAM_INDICATION>,
    count: usize,
    bytes: usize,
}

// SAFETY: provider memory usable from any thread until released.
unsafe impl Send for List {}

/// Event state of a datagram socket.
#[repr(C)]
pub(crate) struct DgramState {
    header: Header,
    ring: Ring<List, RING_SLOTS>,
    retained: AtomicUsize,
    max_retained: usize,
    /// A callback refused datagrams: WSK indicates no more until the callback is enabled
    /// again.
    refused: AtomicU32,
    failed: AtomicU32,
}

impl DgramState {
    /// Drains the ring, releasing every list but `own` (the cleaning callback's, not yet
    /// retained in WSK's eyes: `true` when found, and the callback refuses it), then ends the
    /// stream's call.
    fn clean(&self, core: &SocketCore, own: Option<NonNull<WSK_DATAGRAM_INDICATION>>) -> bool {
        let mut found = false;
        // SAFETY: the cleaner is the only party left using the ring.
        while let Some(list) = unsafe { self.ring.pop() } {
            if Some(list.head) == own {
                found = true;
            } else {
                // SAFETY: the stream's call is held; the list is retained and ours.
                unsafe { release(core, list.head) };
            }
            self.retained.fetch_sub(list.bytes, Ordering::AcqRel);
        }
        core.leave();
        found
    }
}

/// Frees a [`DgramState`] (the header's `free`).
///
/// # Safety
/// See [`super::free`].
unsafe fn free_state(header: NonNull<Header>) {
    // SAFETY: the header is the first field of a DgramState allocated by `allocate`.
    unsafe { deallocate(header.cast::<DgramState>()) }
}

/// `WskRelease` of one retained list.
///
/// # Safety
/// A call on `core` is held and `head` was retained on it and not yet released.
unsafe fn release(core: &SocketCore, head: NonNull<WSK_DATAGRAM_INDICATION>) {
    // SAFETY: guaranteed by the caller; a datagram socket has the datagram table.
    let (socket, table) = unsafe { core.dispatch_held::<WSK_PROVIDER_DATAGRAM_DISPATCH>() };
    if let Some(release) = table.WskRelease {
        // SAFETY: as above.
        unsafe { release(socket, head.as_ptr()) };
    }
}

/// `WskReceiveFromEvent`. IRQL <= DISPATCH_LEVEL; never blocks or allocates.
unsafe extern "system" fn on_receive_from(
    context: PVOID,
    _flags: ULONG,
    indication: *mut WSK_DATAGRAM_INDICATION,
) -> NTSTATUS {
    // SAFETY: WSK passes the context we gave it, and calls only until the close completed.
    let Some(core) = (unsafe { SocketCore::from_context(context) }) else { return STATUS_DATA_NOT_ACCEPTED };
    // SAFETY: datagram sockets only ever get a DgramState.
    let Some(state) = (unsafe { state_of::<DgramState>(&core) }) else { return STATUS_DATA_NOT_ACCEPTED };
    let Some(head) = NonNull::new(indication) else {
        state.failed.store(1, Ordering::Release);
        state.header.waker.wake();
        return STATUS_SUCCESS;
    };
    let status = if callback_enter(&state.header.flags) && !core.is_closing() {
        // SAFETY: the list WSK indicates is valid during the call.
        let (count, bytes) = unsafe { measure(head) };
        let retained = state.retained.load(Ordering::Acquire);
        // One list larger than the bound is taken when nothing is held (else it never could).
        if (retained != 0 && retained + bytes > state.max_retained) || !state.ring.has_room() {
            state.refused.store(1, Ordering::Release);
            STATUS_DATA_NOT_ACCEPTED
        } else {
            state.retained.fetch_add(bytes, Ordering::AcqRel);
            // SAFETY: WSK calls a socket's receive callback serially: one producer.
            match unsafe { state.ring.push(List { head, count, bytes }) } {
                Ok(()) => STATUS_PENDING,
                Err(_) => {
                    state.retained.fetch_sub(bytes, Ordering::AcqRel);
                    STATUS_DATA_NOT_ACCEPTED
                }
            }
        }
    } else {
        STATUS_DATA_NOT_ACCEPTED
    };
    state.header.waker.wake();
    let mut status = status;
    if let CallbackExit::Clean { owner_gone } = callback_exit(&state.header.flags) {
        let own = (status == STATUS_PENDING).then_some(head);
        if state.clean(&core, own) {
            // The stream went away while we were handing it the datagrams: WSK keeps them.
            status = STATUS_DATA_NOT_ACCEPTED;
        }
        if owner_gone {
            drop(ManuallyDrop::into_inner(core));
        }
    }
    status
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
        unsafe {
            count += 1;
            bytes += (*at).Buffer.Length;
            at = (*at).Next;
        }
    }
    (count, bytes)
}

/// Received datagrams as a [`Stream`] of [`DatagramBatch`]es (`WskReceiveFromEvent`).
pub struct Datagrams {
    core: ManuallyDrop<SocketCore>,
    state: NonNull<DgramState>,
    ending: bool,
    done: bool,
}

// SAFETY: shared state is atomics and the SPSC ring; one task uses the stream at a time.
unsafe impl Send for Datagrams {}

impl Datagrams {
    /// Installs the event state on the datagram `core` and enables the callback.
    pub(crate) fn enable(core: SocketCore, config: EventConfig) -> Result<Self> {
        let state = allocate(DgramState {
            header: Header::new(free_state),
            ring: Ring::new(),
            retained: AtomicUsize::new(0),
            max_retained: config.max_retained_bytes,
            refused: AtomicU32::new(0),
            failed: AtomicU32::new(0),
        })?;
        install(&core, state, WSK_EVENT_RECEIVE_FROM)?;
        Ok(Datagrams { core: ManuallyDrop::new(core), state, ending: false, done: false })
    }

    fn state(&self) -> &DgramState {
        // SAFETY: the state lives as long as the core, on which the stream holds a reference.
        unsafe { self.state.as_ref() }
    }

    /// Bytes retained from WSK now. Any IRQL.
    pub fn retained_bytes(&self) -> usize {
        self.state().retained.load(Ordering::Acquire)
    }

    fn finish(&mut self) {
        if !self.done {
            self.done = true;
            if stream_detach(&self.state().header.flags, false) == Detach::CleanNow {
                self.state().clean(&self.core, None);
            }
        }
    }

    fn poll_batch(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<DatagramBatch>>> {
        if self.done {
            return Poll::Ready(None);
        }
        self.state().header.waker.register(cx.waker());
        loop {
            if self.ending || self.core.is_closing() {
                self.finish();
                return Poll::Ready(None);
            }
            // SAFETY: the stream is the ring's only consumer.
            if let Some(list) = unsafe { self.state().ring.pop() } {
                if self.core.enter_owned().is_err() {
                    // SAFETY: the stream's call is held; the list is retained and ours.
                    unsafe { release(&self.core, list.head) };
                    self.state().retained.fetch_sub(list.bytes, Ordering::AcqRel);
                    continue;
                }
                return Poll::Ready(Some(Ok(DatagramBatch {
                    core: self.core.clone_owner(),
                    state: self.state,
                    head: list.head,
                    count: list.count,
                    bytes: list.bytes,
                })));
            }
            if self.state().failed.load(Ordering::Acquire) != 0 {
                self.ending = true;
                return Poll::Ready(Some(Err(Error::Status(wsk_sys::STATUS_CONNECTION_ABORTED))));
            }
            let state = self.state();
            if state.refused.load(Ordering::Acquire) != 0
                && state.retained.load(Ordering::Acquire) <= state.max_retained / 2
            {
                // Caught up: ask WSK for what it kept.
                state.refused.store(0, Ordering::Release);
                if let Err(e) = enable(&self.core, WSK_EVENT_RECEIVE_FROM) {
                    self.ending = true;
                    return Poll::Ready(Some(Err(e)));
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
        let core = self.core.clone_owner();
        drop(self);
        core.close().await
    }
}

impl Stream for Datagrams {
    type Item = Result<DatagramBatch>;

    /// IRQL == PASSIVE_LEVEL (task context).
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_batch(cx)
    }
}

impl Drop for Datagrams {
    fn drop(&mut self) {
        let outcome = if self.done {
            Detach::AlreadyClean
        } else {
            self.done = true;
            stream_detach(&self.state().header.flags, true)
        };
        match outcome {
            Detach::CleanNow => {
                self.state().clean(&self.core, None);
                // SAFETY: dropped once, here.
                unsafe { ManuallyDrop::drop(&mut self.core) };
            }
            // SAFETY: as above.
            Detach::AlreadyClean => unsafe { ManuallyDrop::drop(&mut self.core) },
            Detach::LeftToCallback => {}
        }
    }
}

/// One or more datagrams WSK indicated together, held without copying until dropped
/// (`WskRelease`). Dropping is allowed at IRQL <= DISPATCH_LEVEL.
pub struct DatagramBatch {
    core: SocketCore,
    state: NonNull<DgramState>,
    head: NonNull<WSK_DATAGRAM_INDICATION>,
    count: usize,
    bytes: usize,
}

// SAFETY: provider memory usable from any thread until released; state through atomics.
unsafe impl Send for DatagramBatch {}

impl core::fmt::Debug for DatagramBatch {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DatagramBatch").field("datagrams", &self.count).field("bytes", &self.bytes).finish()
    }
}

impl DatagramBatch {
    /// Number of datagrams. Any IRQL.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the batch holds no datagram (never the case for a batch the stream yields).
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Payload bytes of all datagrams. Any IRQL.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The datagrams, in arrival order. IRQL <= DISPATCH_LEVEL.
    pub fn iter(&self) -> impl Iterator<Item = DatagramView<'_>> {
        let mut at = self.head.as_ptr();
        core::iter::from_fn(move || {
            let node = NonNull::new(at)?;
            // SAFETY: a node of the list this batch retains (valid until it is dropped).
            at = unsafe { node.as_ref().Next };
            Some(DatagramView { node, _batch: core::marker::PhantomData })
        })
    }
}

impl Drop for DatagramBatch {
    fn drop(&mut self) {
        // SAFETY: the batch holds a call on the core; the list is retained and ours.
        unsafe { release(&self.core, self.head) };
        // SAFETY: the state lives as long as the core.
        let state = unsafe { self.state.as_ref() };
        state.retained.fetch_sub(self.bytes, Ordering::AcqRel);
        if state.refused.load(Ordering::Acquire) != 0 {
            // The stream may enable the callback again now.
            state.header.waker.wake();
        }
        self.core.leave();
    }
}

// SAFETY: shared access only reads the retained (unchanging) provider memory.
unsafe impl Sync for DatagramBatch {}

/// One datagram of a [`DatagramBatch`].
pub struct DatagramView<'a> {
    node: NonNull<WSK_DATAGRAM_INDICATION>,
    _batch: core::marker::PhantomData<&'a DatagramBatch>,
}

impl DatagramView<'_> {
    fn node(&self) -> &WSK_DATAGRAM_INDICATION {
        // SAFETY: retained by the batch borrowed for 'a.
        unsafe { self.node.as_ref() }
    }

    /// Payload length. Any IRQL.
    pub fn len(&self) -> usize {
        self.node().Buffer.Length
    }

    /// Whether the payload is empty. Any IRQL.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The sender, if WSK gave an IPv4 or IPv6 address. IRQL <= DISPATCH_LEVEL.
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        // SAFETY: WSK's remote address of this datagram, valid while retained.
        unsafe { addr::from_sockaddr(self.node().RemoteAddress) }.ok()
    }

    /// The payload as contiguous pieces. IRQL <= DISPATCH_LEVEL.
    pub fn segments(&self) -> impl Iterator<Item = &[u8]> {
        // SAFETY: the buffer is retained (unchanged) while the batch is borrowed.
        unsafe { BufPieces::new(&self.node().Buffer) }
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
