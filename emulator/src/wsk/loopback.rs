//! In-memory connections: the provider's loopback, for measuring the client's own cost with a
//! provider whose work is negligible.
//!
//! A listen socket bound to an address of `198.18.0.0/15` (the range RFC 2544 sets aside for
//! benchmarks) listens in memory: its host socket is dropped and it is recorded in a table of
//! in-memory listeners. A connection
//! socket connected to such an address (`WskSocketConnect`, or `WskConnect` after a bind) is
//! paired with a new connection socket queued on that listener, which `WskAccept` or
//! `WskAcceptEvent` hands out as it hands out host connections. The two ends exchange bytes
//! through two pipes of 256 KiB each (`model::End`).
//!
//! No host socket and no provider thread take part. What one end's call makes ready on the
//! other end (data to receive or indicate, room to send, a FIN, a reset, a connection to
//! accept) is done on the calling thread once the provider holds no lock: at the end of the
//! WSK call, of the completion pass, or of the delivery pass that caused it
//! ([`run_pending`]); so a `WskSend` completes the peer's pending `WskReceive` (its
//! completion routine runs on the sender's thread, at DISPATCH_LEVEL) or calls the peer's
//! `WskReceiveEvent` before it returns, as a loopback fast path of a real stack may.
//! Callbacks and completions a callback causes run after it returned, on the same thread; so
//! does the delivery pass a kick of an in-memory socket asks for (`reactor::kick`).
//!
//! What is emulated: connect, accept (IRP and callback), send, receive (IRP, `WSK_FLAG_WAITALL`,
//! indications chained as for host connections), graceful disconnect, abortive disconnect and
//! close (the peer's transfers fail with `STATUS_CONNECTION_RESET`), local and remote
//! addresses, cancellation. What is not: socket options that reach the host socket
//! (`TCP_NODELAY`, `SO_KEEPALIVE`, ...: `STATUS_INVALID_DEVICE_STATE`), conditional accept,
//! IPv6, datagrams, the adversary's random shapes and short sends, retries of a connect nobody
//! listens for (refused at once), and any timing of a real network.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

use wsk_sys::{NTSTATUS, STATUS_ADDRESS_ALREADY_EXISTS, STATUS_CONNECTION_REFUSED};

use super::model::{Backlog, End, Found, Kind, Memory, Phase, State};
use super::socket::{self, Socket};
use super::{deliver, queue};
use crate::sync::lock;

/// Makes a listen socket listen in memory at `address` (its host socket is dropped).
pub(crate) fn listen(socket: &Socket, state: &mut State, address: SocketAddr) -> Result<usize, NTSTATUS> {
    let address = ephemeral(address);
    if !record_listener(address, socket.key) {
        return Err(STATUS_ADDRESS_ALREADY_EXISTS);
    }
    state.close_host(false);
    socket.in_memory.store(true, Ordering::SeqCst);
    state.memory = Some(Memory::Listener(Backlog { address, waiting: Default::default() }));
    state.phase = Phase::Listening;
    Ok(0)
}

/// Connects `socket` (not locked by the caller) to the in-memory listener at `remote`: creates
/// the other end, queues it on the listener and wakes the listener. Refused when nobody
/// listens there.
pub(crate) fn connect(socket: &Arc<Socket>, remote: SocketAddr) -> Result<(), NTSTATUS> {
    let listener = listener_at(&remote).and_then(socket::open_socket).ok_or(STATUS_CONNECTION_REFUSED)?;
    let accepted = socket::create(Kind::Connection, listener.family, listener.client, None, Phase::Connected, false)?;
    let local = ephemeral(SocketAddr::new(remote.ip(), 0));
    let (near, far) = End::pair((socket.key, local), (accepted.key, remote));
    accepted.in_memory.store(true, Ordering::SeqCst);
    socket.in_memory.store(true, Ordering::SeqCst);
    lock(&accepted.state).memory = Some(Memory::End(far));
    let queued = {
        let mut state = lock(&listener.state);
        let closing = state.closing;
        match state.memory.as_mut() {
            Some(Memory::Listener(backlog)) if !closing => {
                backlog.waiting.push_back((accepted.key, remote, local));
                true
            }
            _ => false,
        }
    };
    if !queued {
        queue::discard(&accepted);
        return Err(STATUS_CONNECTION_REFUSED);
    }
    {
        let mut state = lock(&socket.state);
        state.close_host(false);
        state.memory = Some(Memory::End(near));
        state.phase = Phase::Connected;
    }
    wake_later(listener.key);
    Ok(())
}

/// Whether the socket `key` is an in-memory socket: a kick of it ([`super::reactor::kick`]) is
/// work for the kicking thread, not for the I/O thread. Any thread, any lock held but the
/// socket table's.
pub(crate) fn owns(key: usize) -> bool {
    socket::open_socket(key).is_some_and(|socket| socket.in_memory.load(Ordering::SeqCst))
}

/// Runs what in-memory connections left for the current thread (see the module doc), unless
/// a run is already under way further up this thread's stack, which takes it. The caller
/// holds no provider lock.
pub(crate) fn run_pending() {
    if !begin_run() {
        return;
    }
    while let Some(work) = next_later() {
        match work {
            Later::Wake(key) => {
                if let Some(socket) = socket::open_socket(key) {
                    queue::progress(&socket);
                    deliver::deliver(&socket);
                }
            }
            Later::Discard(key) => {
                if let Some(socket) = socket::open_socket(key) {
                    queue::discard(&socket);
                }
            }
        }
    }
    end_run();
}

/// Writes to the peer's pipe ([`End::write`]) and wakes the peer when bytes went in.
pub(crate) fn write(end: &End, bytes: &[u8]) -> Result<usize, ()> {
    let written = end.write(bytes);
    if let Ok(1..) = written {
        wake_later(end.peer);
    }
    written
}

/// Reads from this end's pipe ([`End::read`]) and wakes a peer that waited for room.
pub(crate) fn read(end: &End, max: usize, sink: impl FnMut(&[u8])) -> Found {
    let (found, wake) = end.read(max, sink);
    if wake {
        wake_later(end.peer);
    }
    found
}

/// Shuts this end down ([`End::shutdown`]) and wakes the peer.
pub(crate) fn shutdown(end: &End) {
    end.shutdown();
    wake_later(end.peer);
}

/// Resets the connection ([`End::reset`]) and wakes the peer.
pub(crate) fn reset(end: &End) {
    end.reset();
    wake_later(end.peer);
}

/// Whether `address` is an in-memory address (`198.18.0.0/15`).
pub(crate) fn is_memory(address: &SocketAddr) -> bool {
    matches!(address.ip(), IpAddr::V4(ip) if ip.octets()[0] == 198 && ip.octets()[1] & 0xfe == 18)
}

/// In-memory listeners by address: the listening socket's key.
static LISTENERS: Mutex<Option<HashMap<SocketAddr, usize>>> = Mutex::new(None);

/// Ports handed to in-memory sockets bound to port 0 and to connecting sockets.
static NEXT_PORT: AtomicU16 = AtomicU16::new(49152);

/// A port for an in-memory address given with port 0.
fn ephemeral(mut address: SocketAddr) -> SocketAddr {
    if address.port() == 0 {
        address.set_port(NEXT_PORT.fetch_add(1, Ordering::Relaxed).max(49152));
    }
    address
}

/// Records the listener `key` at `address`; `false` when another one listens there.
fn record_listener(address: SocketAddr, key: usize) -> bool {
    let mut listeners = lock(&LISTENERS);
    let listeners = listeners.get_or_insert_with(HashMap::new);
    if listeners.contains_key(&address) {
        return false;
    }
    listeners.insert(address, key);
    true
}

/// The listener at `address`.
fn listener_at(address: &SocketAddr) -> Option<usize> {
    lock(&LISTENERS).as_ref().and_then(|listeners| listeners.get(address).copied())
}

/// Forgets the listener at `address`.
pub(crate) fn forget_listener(address: &SocketAddr) {
    if let Some(listeners) = lock(&LISTENERS).as_mut() {
        listeners.remove(address);
    }
}

/// Work for the current thread once it holds no lock (see [`run_pending`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Later {
    /// Move the socket's queues forward and deliver its due callbacks.
    Wake(usize),
    /// Drop a connection nobody accepted (its listener closed).
    Discard(usize),
}

thread_local! {
    static LATER: RefCell<VecDeque<Later>> = const { RefCell::new(VecDeque::new()) };
    static RUNNING: Cell<bool> = const { Cell::new(false) };
}

/// Asks the current thread to wake the socket `key` once it holds no lock.
pub(crate) fn wake_later(key: usize) {
    push(Later::Wake(key));
}

/// Asks the current thread to discard the never-accepted socket `key` once it holds no lock.
pub(crate) fn discard_later(key: usize) {
    push(Later::Discard(key));
}

fn push(work: Later) {
    LATER.with(|later| {
        let mut later = later.borrow_mut();
        if !later.contains(&work) {
            later.push_back(work);
        }
    });
}

/// The next piece of work for this thread.
fn next_later() -> Option<Later> {
    LATER.with(|later| later.borrow_mut().pop_front())
}

/// Marks the start of a run of pending work on this thread; `false` when one is under way
/// further up the stack.
fn begin_run() -> bool {
    !RUNNING.with(|running| running.replace(true))
}

/// Marks the end of the run [`begin_run`] started.
fn end_run() {
    RUNNING.with(|running| running.set(false));
}
