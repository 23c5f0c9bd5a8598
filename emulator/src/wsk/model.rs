//! The provider's shared model: the records every part of the provider reads and writes
//! (sockets' kinds, phases and mutable state, pending operations, the client's side of a
//! socket, event-callback state) and the IRP and out-parameter pointers they hold.
//!
//! This module is the bottom of the provider's layering (see the parent module): it holds
//! data and the accessors that only touch that data (the host memory of a `WSK_BUF` included:
//! [`Segments`]; `buf` resolves one), and imports no other module of the provider. Behaviour
//! lives above it: a socket's life in `socket`, its queues in `queue`, event callbacks in
//! `events` and `deliver`.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;

use wsk_sys::{IRP, NTSTATUS, SOCKADDR, ULONG};

use super::blocks::{self, Block};
use crate::sync::lock;

/// An IRP pointer that may cross threads (the provider owns the IRP while it holds one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Irp(pub *mut IRP);

// SAFETY: an IRP is designed to be completed from any thread; ownership is tracked by the
// protocol above, not by the pointer's thread.
unsafe impl Send for Irp {}

/// A client pointer the provider writes at completion (an out-parameter of the call).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Out<T>(pub *mut T);

// SAFETY: the client guarantees the memory stays valid until the IRP completes, from any
// thread (WSK's contract for out-parameters of IRP-based calls).
unsafe impl<T> Send for Out<T> {}

/// The host memory ranges of a `WSK_BUF`, in order.
#[derive(Debug, Clone, Default)]
pub(crate) struct Segments {
    parts: Vec<(usize, usize)>,
    total: usize,
}

impl Segments {
    /// The buffer made of `parts` (address, length), in order.
    pub(crate) fn new(parts: Vec<(usize, usize)>) -> Segments {
        let total = parts.iter().map(|&(_, length)| length).sum();
        Segments { parts, total }
    }

    /// Total bytes.
    pub(crate) fn total(&self) -> usize {
        self.total
    }

    /// The contiguous range starting at byte `at` of the buffer, up to the end of its
    /// segment; `None` at the end.
    pub(crate) fn chunk(&self, at: usize) -> Option<(*mut u8, usize)> {
        let mut start = 0;
        for &(address, length) in &self.parts {
            if at < start + length {
                let skip = at - start;
                return Some(((address + skip) as *mut u8, length - skip));
            }
            start += length;
        }
        None
    }

    /// Whether the buffer is one contiguous range.
    pub(crate) fn is_contiguous(&self) -> bool {
        self.parts.len() <= 1
    }

    /// Copies `bytes` into the buffer from its start (at most `total` bytes).
    ///
    /// # Safety
    /// The memory the buffer describes must be live and writable.
    pub(crate) unsafe fn scatter(&self, bytes: &[u8]) {
        let mut at = 0;
        while at < bytes.len() {
            let Some((address, length)) = self.chunk(at) else { return };
            let n = length.min(bytes.len() - at);
            // SAFETY: `address..address + n` lies in the buffer (caller's contract) and does
            // not overlap `bytes`, which the provider owns.
            unsafe { std::ptr::copy_nonoverlapping(bytes[at..].as_ptr(), address, n) };
            at += n;
        }
    }

    /// Copies the whole buffer into a vector.
    ///
    /// # Safety
    /// The memory the buffer describes must be live and readable.
    pub(crate) unsafe fn gather(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.total);
        for &(address, length) in &self.parts {
            // SAFETY: the range lies in the buffer (caller's contract).
            out.extend_from_slice(unsafe { std::slice::from_raw_parts(address as *const u8, length) });
        }
        out
    }
}

/// What a pending operation does.
pub(crate) enum OpKind {
    /// `WskAccept`: the addresses of the new connection are written at completion; `client`
    /// is the accept socket's context and dispatch table.
    Accept { local: Out<SOCKADDR>, remote: Out<SOCKADDR>, client: Client },
    /// `WskConnect`, or `WskSocketConnect` (`create`: the socket is handed out on success).
    Connect { create: bool },
    /// `WskSend`: `done` bytes handed to the host so far.
    Send { buf: Segments, done: usize },
    /// Graceful `WskDisconnect`, after sending `buf`.
    Disconnect { buf: Segments, done: usize },
    /// `WskReceive`: `done` bytes received so far.
    Receive { buf: Segments, done: usize, wait_all: bool },
    /// `WskSendTo`: one datagram.
    SendTo { buf: Segments, to: SocketAddr },
    /// `WskSendMessages`: one datagram per buffer, all to `to`; `done` datagrams and `bytes`
    /// bytes handed to the host so far.
    SendMessages { bufs: Vec<Segments>, to: SocketAddr, done: usize, bytes: usize },
    /// `WskReceiveFrom`: one datagram.
    ReceiveFrom { buf: Segments, from: Out<SOCKADDR>, control: ControlOut, control_flags: Out<ULONG> },
}

/// The control-information out-parameters of a `WskReceiveFrom`: `ControlLength` (written
/// at completion) and the `ControlInfo` buffer of `capacity` bytes (`*ControlLength` at the
/// call; 0 when either pointer is null, and then only the length is written).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ControlOut {
    pub length: Out<ULONG>,
    pub info: Out<u8>,
    pub capacity: usize,
}

/// A pending operation.
pub(crate) struct Op {
    pub irp: Irp,
    pub kind: OpKind,
    /// The cancel routine took the IRP; it removes the op and completes it.
    pub cancel_owned: bool,
}

/// The actions one call collects (inline up to a few: one call rarely completes more than a
/// couple of IRPs, and a heap list per call was an allocation per operation).
pub(crate) type Actions = smallvec::SmallVec<[Action; 4]>;

/// Work to do once the socket's lock is released, in order.
pub(crate) enum Action {
    /// Complete an IRP (`queued`: it holds a socket reference in `DriverContext[0]`).
    Complete { irp: Irp, status: NTSTATUS, info: usize, queued: bool },
    /// The socket ends without a close (a failed or cancelled `WskSocketConnect`).
    Retire,
}

/// What kind of socket, and so which provider dispatch table its `Dispatch` points to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Basic,
    Listen,
    Connection,
    Datagram,
}

impl Kind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Basic => "basic",
            Kind::Listen => "listen",
            Kind::Connection => "connection",
            Kind::Datagram => "datagram",
        }
    }
}

/// Where the host socket is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Created, not bound.
    Created,
    /// Bound (connection and datagram sockets).
    Bound,
    /// Bound and listening (listen sockets listen as soon as they are bound).
    Listening,
    /// A connect is under way.
    Connecting,
    /// Connected (accepted sockets start here).
    Connected,
}

/// Socket options that Windows keeps and the host does not express the same way.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Recorded {
    pub reuse_address: bool,
    pub exclusive_address_use: bool,
    pub send_buffer: Option<u32>,
    pub receive_buffer: Option<u32>,
    /// `SO_LINGER` as set (recorded only, see `options`).
    pub linger: wsk_sys::LINGER,
    /// The fixed remote address of a datagram socket (`SIO_WSK_SET_REMOTE_ADDRESS`).
    pub remote: Option<SocketAddr>,
}

/// The queues of pending operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Queue {
    Connect,
    Accept,
    Send,
    Receive,
}

impl Queue {
    pub(crate) const ALL: [Queue; 4] = [Queue::Connect, Queue::Accept, Queue::Send, Queue::Receive];
}

/// The mutable part of a socket, behind its lock.
pub(crate) struct State {
    /// The host socket (nonblocking); `None` once closed or aborted, and for in-memory sockets.
    pub host: Option<socket2::Socket>,
    /// An in-memory socket's listener backlog or connection end (see `loopback`); `None` for
    /// host sockets and once closed or aborted.
    pub memory: Option<Memory>,
    pub phase: Phase,
    /// A graceful disconnect (FIN) was sent.
    pub fin_sent: bool,
    /// The peer's FIN was seen (a receive returned 0).
    pub peer_fin: bool,
    /// A sticky connection error (reset, abort): every later send or receive fails with it.
    pub error: Option<NTSTATUS>,
    /// The host socket had nothing more to read when it was last read (a read came back short
    /// or would block) and no readiness event came since: reading it again now would only
    /// return `EWOULDBLOCK`, so receives and indications skip the system call
    /// (the reads set it). The I/O thread clears it on each readiness event of the
    /// socket ([`State::host_ready`]). Sound because the host's readiness is edge-triggered and
    /// Linux reports an edge for every arrival (data, FIN, reset) on a stream socket: a short
    /// read or `EWOULDBLOCK` under this lock means no data was queued then, and whatever
    /// arrives after it raises an event that clears the flag before anything is read again.
    /// Not after the host reported its read side closed or an error (`host_closed`): a read
    /// that returns the last bytes stops short of the FIN queued behind them, and no edge
    /// follows, so such a socket is read until the read returns 0 or fails.
    pub host_drained: bool,
    /// A readiness event reported the host socket's read side closed or an error.
    pub host_closed: bool,
    /// The client knows the socket (false while `WskSocketConnect` is pending).
    pub handed_out: bool,
    /// `WskCloseSocket` was called: no new operation is queued.
    pub closing: bool,
    pub recorded: Recorded,
    pub connects: VecDeque<Op>,
    pub accepts: VecDeque<Op>,
    pub sends: VecDeque<Op>,
    pub receives: VecDeque<Op>,
    /// IRPs taken out of the queues and being completed (outside the lock).
    pub inflight: usize,
    /// The close IRP, pending until `inflight` is zero, the queues are empty and no event
    /// callback runs.
    pub close_irp: Option<Irp>,
    /// Event callbacks: the client's context and table, enabled events, indications.
    pub events: Events,
    /// Conditional accept (`SO_CONDITIONAL_ACCEPT`) of a listening socket.
    pub inspect: Inspections,
}

impl State {
    /// A readiness event of the host socket came: it may have something to read again;
    /// `closed`: the event reported the read side closed or an error.
    pub(crate) fn host_ready(&mut self, closed: bool) {
        self.host_drained = false;
        self.host_closed |= closed;
    }

    pub(crate) fn queue(&mut self, queue: Queue) -> &mut VecDeque<Op> {
        match queue {
            Queue::Connect => &mut self.connects,
            Queue::Accept => &mut self.accepts,
            Queue::Send => &mut self.sends,
            Queue::Receive => &mut self.receives,
        }
    }

    fn queues_empty(&self) -> bool {
        self.connects.is_empty() && self.accepts.is_empty() && self.sends.is_empty() && self.receives.is_empty()
    }

    /// The close IRP, if the close may complete now.
    pub(crate) fn take_close_if_ready(&mut self) -> Option<Irp> {
        if self.closing && self.inflight == 0 && self.queues_empty() && self.events.running.is_empty() {
            self.close_irp.take()
        } else {
            None
        }
    }
}

/// The client's side of a socket: what `WskSocket`, `WskSocketConnect`, `WskAccept` or the
/// accept callback's out-parameters gave.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Client {
    /// `SocketContext`, passed back to every callback.
    pub context: usize,
    /// The client dispatch table of the socket's kind (0: none, no event can be enabled).
    pub dispatch: usize,
}

/// A callback executing now.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Running {
    pub thread: ThreadId,
    /// Its `WSK_EVENT_*` bit.
    pub event: u32,
    /// A request that resumes indications (a receive, enabling the event again) came while
    /// the callback ran: it applies after the callback's own answer (which may refuse).
    pub resume_after: bool,
}

/// Data bytes the client refused, in order, served before the host socket's: still in the
/// block they were indicated from (no copy; only a refusal that found nothing kept), then
/// copied ones.
#[derive(Default)]
pub(crate) struct Kept {
    /// Refused bytes in place: the block's data `start..end`.
    pub block: Option<(Block, usize, usize)>,
    /// Refused bytes copied out of their blocks (after `block`'s).
    pub bytes: VecDeque<u8>,
}

impl Kept {
    pub(crate) fn is_empty(&self) -> bool {
        self.block.is_none() && self.bytes.is_empty()
    }

    /// Drops what is kept (the block goes back to the free list).
    pub(crate) fn clear(&mut self) {
        if let Some((block, ..)) = self.block.take() {
            blocks::unused(block);
        }
        self.bytes.clear();
    }

    /// Puts copied `bytes` in front of everything kept (the kept block's bytes are copied
    /// first, so that they stay in order behind them).
    pub(crate) fn put_in_front(&mut self, bytes: &[u8]) {
        if let Some((block, start, end)) = self.block.take() {
            self.prepend(&block.bytes(end)[start..]);
            blocks::unused(block);
        }
        self.prepend(bytes);
    }

    /// Puts `bytes` in front of `self.bytes` (into its memory as it is when it holds none).
    fn prepend(&mut self, bytes: &[u8]) {
        if self.bytes.is_empty() {
            self.bytes.extend(bytes);
            return;
        }
        let mut front = VecDeque::with_capacity(bytes.len() + self.bytes.len());
        front.extend(bytes);
        front.append(&mut self.bytes);
        self.bytes = front;
    }
}

/// A datagram the client refused, kept for the next `WskReceiveFrom` or indication.
pub(crate) struct KeptDatagram {
    pub data: Vec<u8>,
    pub from: SocketAddr,
    /// Its control messages in Windows' form: (level, type, data).
    pub control: Vec<ControlMessage>,
}

/// A control message in Windows' form: level, type and data.
pub(crate) type ControlMessage = (u32, u32, Vec<u8>);

/// The event state of one socket (behind its lock).
#[derive(Default)]
pub(crate) struct Events {
    pub client: Client,
    /// Enabled `WSK_EVENT_*` bits.
    pub enabled: u32,
    /// The enabled bits that are the client's static event callbacks
    /// (`WSK_SET_STATIC_EVENT_CALLBACKS`): on from creation, never disabled or re-enabled.
    pub static_events: u32,
    /// A listening socket's connection events (`SO_WSK_EVENT_CALLBACK` with
    /// `WSK_EVENT_RECEIVE`, `WSK_EVENT_DISCONNECT`, `WSK_EVENT_SEND_BACKLOG`), enabled on each
    /// socket its `WskAcceptEvent` accepts; never disabled.
    pub inherit: u32,
    /// The callbacks in progress: at most one, except on datagram and listening sockets with
    /// the adversary's `concurrent_callbacks` (see `deliver`).
    pub running: Vec<Running>,
    /// Disable requests (event bit, IRP) waiting for the running callbacks to return.
    pub disable_waiters: Vec<(u32, Irp)>,
    /// `WskSendBacklogEvent` is to be called.
    pub backlog_due: bool,
    /// No `WskReceiveEvent` until a `WskReceive` IRP is served (the client refused data).
    pub receive_suppressed: bool,
    /// Bytes the client refused, in order; served before the host socket's.
    pub kept: Kept,
    /// No `WskReceiveFromEvent` until a `WskReceiveFrom` completes or the event is enabled
    /// again (the client refused datagrams).
    pub datagrams_suppressed: bool,
    pub kept_datagrams: VecDeque<KeptDatagram>,
    /// `WskDisconnectEvent` was called (or the connection was aborted locally): never again.
    pub disconnect_done: bool,
    /// What finished IRPs change once their completion routines ran (`RESUME_*` bits).
    pub(super) resume: u8,
}

// In-memory connections (see `loopback`): their records.

/// Bytes one direction holds before its writer waits (a socket buffer's worth).
pub(crate) const CAPACITY: usize = 256 * 1024;

/// One direction of an in-memory connection.
#[derive(Default)]
pub(crate) struct Pipe {
    data: VecDeque<u8>,
    /// The writer shut its side down (a FIN): after the data, the reader sees the end.
    fin: bool,
    /// The connection was reset: the data is dropped, both sides fail.
    reset: bool,
    /// The writer found the pipe full: the reader wakes it when it takes bytes.
    writer_waits: bool,
}

/// What a reader finds in its pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Found {
    /// This many bytes (taken by [`End::read`], counted by [`End::peek`]).
    Data(usize),
    /// No data and the writer shut down.
    Fin,
    /// The connection was reset.
    Reset,
    /// Nothing yet.
    Empty,
}

/// A connection socket's side of an in-memory connection.
pub(crate) struct End {
    rx: Arc<Mutex<Pipe>>,
    tx: Arc<Mutex<Pipe>>,
    /// The other end's socket key.
    pub peer: usize,
    pub local: SocketAddr,
    pub remote: SocketAddr,
}

impl End {
    /// The two ends of a new connection between the sockets `a` and `b` at these addresses.
    pub(crate) fn pair(a: (usize, SocketAddr), b: (usize, SocketAddr)) -> (End, End) {
        let (ab, ba) = (Arc::new(Mutex::new(Pipe::default())), Arc::new(Mutex::new(Pipe::default())));
        let end_a = End { rx: Arc::clone(&ba), tx: Arc::clone(&ab), peer: b.0, local: a.1, remote: b.1 };
        let end_b = End { rx: ab, tx: ba, peer: a.0, local: b.1, remote: a.1 };
        (end_a, end_b)
    }

    /// Appends as much of `bytes` as the pipe has room for: `Ok(n)`, 0 when the pipe is full
    /// (the peer is to wake this side when it takes bytes); `Err` after a reset. The caller
    /// wakes the peer when `n > 0`.
    pub(crate) fn write(&self, bytes: &[u8]) -> Result<usize, ()> {
        let mut tx = lock(&self.tx);
        if tx.reset {
            return Err(());
        }
        let n = bytes.len().min(CAPACITY - tx.data.len());
        tx.data.extend(&bytes[..n]);
        if n < bytes.len() {
            tx.writer_waits = true;
        }
        Ok(n)
    }

    /// Takes up to `max` bytes, handing them to `sink` in order (one or two slices); and
    /// whether the peer waited for room (the caller wakes it).
    pub(crate) fn read(&self, max: usize, mut sink: impl FnMut(&[u8])) -> (Found, bool) {
        let mut rx = lock(&self.rx);
        if rx.reset {
            return (Found::Reset, false);
        }
        if rx.data.is_empty() {
            return (if rx.fin { Found::Fin } else { Found::Empty }, false);
        }
        let n = rx.data.len().min(max);
        let (front, back) = rx.data.as_slices();
        let first = front.len().min(n);
        sink(&front[..first]);
        if first < n {
            sink(&back[..n - first]);
        }
        rx.data.drain(..n);
        (Found::Data(n), std::mem::take(&mut rx.writer_waits))
    }

    /// What a read would find, taking nothing.
    pub(crate) fn peek(&self) -> Found {
        let rx = lock(&self.rx);
        if rx.reset {
            Found::Reset
        } else if !rx.data.is_empty() {
            Found::Data(rx.data.len())
        } else if rx.fin {
            Found::Fin
        } else {
            Found::Empty
        }
    }

    /// Shuts this side down (a FIN after the data sent); the caller wakes the peer.
    pub(crate) fn shutdown(&self) {
        lock(&self.tx).fin = true;
    }

    /// Resets the connection: both directions fail, their data dropped; the caller wakes the
    /// peer.
    pub(crate) fn reset(&self) {
        for pipe in [&self.tx, &self.rx] {
            let mut pipe = lock(pipe);
            pipe.reset = true;
            pipe.data = VecDeque::new();
        }
    }
}

/// Connections that arrived at an in-memory listener and wait to be accepted: the accepted
/// socket's key, its local and its remote address.
pub(crate) struct Backlog {
    pub address: SocketAddr,
    pub waiting: VecDeque<(usize, SocketAddr, SocketAddr)>,
}

/// What an in-memory socket holds (in its state, instead of a host socket; see `loopback`).
pub(crate) enum Memory {
    Listener(Backlog),
    End(End),
}

/// A host connection taken from a conditional-accept listener's backlog, with its peer.
pub(crate) struct Inspected {
    /// The inspect ID's serial number (its key is the listener's).
    pub serial: u32,
    pub connection: socket2::Socket,
    pub peer: socket2::SockAddr,
    /// The action of a `WskInspectComplete` that came while the inspection's callback still
    /// ran (applied if the callback pends).
    pub early: Option<i32>,
}

/// Conditional accept of a listening socket (`SO_CONDITIONAL_ACCEPT`, see `inspect`).
#[derive(Default)]
pub(crate) struct Inspections {
    /// The option is on (set before bind).
    pub on: bool,
    /// The serial number of the last inspect ID handed out.
    pub serial: u32,
    /// Connections whose `WskInspectEvent` runs now.
    pub inspecting: Vec<Inspected>,
    /// Connections whose inspection the client pended (`WskInspectPend`).
    pub pended: Vec<Inspected>,
    /// Connections the client accepted, for the next accept IRP or `WskAcceptEvent`.
    pub approved: VecDeque<Inspected>,
    /// Pended inspections whose peer went away: `WskAbortEvent` is due for these serials.
    pub aborts_due: VecDeque<u32>,
    /// Serials aborted and not yet completed: `WskInspectComplete` of one is allowed (the
    /// connection is not established whatever the action).
    pub aborted: Vec<u32>,
}
