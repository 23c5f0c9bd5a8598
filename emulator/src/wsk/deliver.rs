//! Event delivery: the deliverer (the reactor thread) finds the work a socket has for its
//! enabled callbacks, calls them one at a time at DISPATCH_LEVEL with no lock held, and
//! settles what they returned.
//!
//! ```text
//!   deliver(socket):  repeat (at most BUDGET calls, then the socket is kicked again)
//!     lock: next work? (not closing, enabled, nothing running, no IRP of that kind pending)
//!           running = (this thread, event)                     unlock
//!     callback(SocketContext, ...)                 at DISPATCH_LEVEL, no lock held
//!     lock: running = None; keep / retain / give back what was indicated;
//!           disables and a close waiting for the callback are ready   unlock
//!     complete those IRPs; drive IRPs queued meanwhile
//! ```
//!
//! The deliverer is the reactor thread, the thread whose zero-length `WskReceive` resumed
//! indications (at the end of that call, `reactor::kick_here`), the thread of an in-memory
//! peer (`loopback`), or with the adversary's `processors` any of the provider's processors
//! (`processors`). Calls of one connection socket never overlap (a
//! pass starts no callback while one runs); with the adversary's `concurrent_callbacks`, a
//! datagram or listening socket's pass asks another processor for a pass before it calls, so
//! its callbacks overlap. `running` tells a disable or a close on another thread which
//! callbacks are in progress.

use std::net::SocketAddr;
use std::sync::Arc;

use wsk_sys::{
    DISPATCH_LEVEL, NTSTATUS, PFN_WSK_ACCEPT_EVENT, PFN_WSK_DISCONNECT_EVENT, PFN_WSK_RECEIVE_EVENT,
    PFN_WSK_RECEIVE_FROM_EVENT, PFN_WSK_SEND_BACKLOG_EVENT, PVOID, SIZE_T, SOCKADDR, SOCKADDR_STORAGE,
    STATUS_CONNECTION_RESET, STATUS_PENDING, STATUS_SUCCESS, ULONG, WSK_CLIENT_CONNECTION_DISPATCH,
    WSK_DATA_INDICATION, WSK_DATAGRAM_INDICATION, WSK_EVENT_ACCEPT, WSK_EVENT_DISCONNECT, WSK_EVENT_RECEIVE,
    WSK_EVENT_RECEIVE_FROM, WSK_EVENT_SEND_BACKLOG, WSK_FLAG_ABORTIVE, WSK_FLAG_AT_DISPATCH_LEVEL,
    WSK_FLAG_ENTIRE_MESSAGE, WSK_INSPECT_ACTION, WSK_SOCKET,
};

use super::blocks::Release;
use super::events::{self, callbacks};
use super::indication::{self, Chain};
use super::inspect::{self, Due};
use super::model::{CAPACITY, Client, Found, Irp, Kind, Memory, Phase, Queue, Running, State};
use super::queue;
use super::socket::{self, Socket};
use super::{addr, io, loopback, reactor, status};
use crate::irp::provider;
use crate::irql;
use crate::sync::lock;
use crate::verifier::{Rule, bugcheck};

/// Callbacks of one socket per delivery pass before other sockets get their turn.
const BUDGET: usize = 16;

/// One callback to make.
enum Work {
    SendBacklog {
        callback: PFN_WSK_SEND_BACKLOG_EVENT,
        size: usize,
    },
    Accept {
        callback: PFN_WSK_ACCEPT_EVENT,
        accepted: Arc<Socket>,
        local: Option<SocketAddr>,
        remote: Option<SocketAddr>,
    },
    Receive {
        callback: PFN_WSK_RECEIVE_EVENT,
        chain: Chain,
    },
    ReceiveFrom {
        callback: PFN_WSK_RECEIVE_FROM_EVENT,
        chain: Chain,
    },
    Disconnect {
        callback: PFN_WSK_DISCONNECT_EVENT,
        flags: ULONG,
    },
    /// `WskInspectEvent` or `WskAbortEvent` of a conditional-accept listener (`inspect`).
    Inspect(Due),
}

impl Work {
    /// The head of the indication chain the callback is given (0: none).
    fn head(&self) -> usize {
        match self {
            Work::Receive { chain, .. } | Work::ReceiveFrom { chain, .. } => chain.head(),
            _ => 0,
        }
    }

    fn event(&self) -> u32 {
        match self {
            Work::SendBacklog { .. } => WSK_EVENT_SEND_BACKLOG,
            Work::Accept { .. } => WSK_EVENT_ACCEPT,
            Work::Receive { .. } => WSK_EVENT_RECEIVE,
            Work::ReceiveFrom { .. } => WSK_EVENT_RECEIVE_FROM,
            Work::Disconnect { .. } => WSK_EVENT_DISCONNECT,
            // No event bit: the inspection runs as part of accepting.
            Work::Inspect(_) => WSK_EVENT_ACCEPT,
        }
    }
}

impl Outcome {
    /// The head of the indication chain the callback was given (0: none).
    fn head(&self) -> usize {
        match self {
            Outcome::Receive { chain, .. } | Outcome::ReceiveFrom { chain, .. } => chain.head(),
            _ => 0,
        }
    }
}

/// What a callback returned, with what it was given.
enum Outcome {
    /// Nothing to settle (backlog, disconnect).
    Plain,
    Accept {
        accepted: Arc<Socket>,
        status: NTSTATUS,
        client: Client,
    },
    Receive {
        chain: Chain,
        status: NTSTATUS,
        accepted: usize,
    },
    ReceiveFrom {
        chain: Chain,
        status: NTSTATUS,
    },
    /// What `WskInspectEvent` answered for the inspection `serial`.
    Inspect {
        serial: u32,
        action: WSK_INSPECT_ACTION,
    },
}

/// Runs the socket's due callbacks (reactor thread, or the thread of an in-memory peer), then
/// what they made ready on in-memory peers.
pub(crate) fn deliver(socket: &Arc<Socket>) {
    deliver_pass(socket);
    loopback::run_pending();
}

fn deliver_pass(socket: &Arc<Socket>) {
    if socket.kind == Kind::Basic {
        return;
    }
    if socket.kind == Kind::Listen && inspect::approved_for_irp(socket) {
        // A connection the client accepted in an inspection, and an accept IRP waiting for it.
        queue::progress(socket);
    }
    for _ in 0..BUDGET {
        let (work, client) = {
            let mut state = lock(&socket.state);
            let Some(work) = next(socket, &mut state) else { return };
            if !state.events.running.is_empty() {
                crate::adversary::count(crate::adversary::Event::OverlappingCallback);
            }
            state.events.running.push(Running {
                thread: std::thread::current().id(),
                event: work.event(),
                resume_after: false,
            });
            let head = work.head();
            if head != 0 {
                lock(&socket.retention).current.push((head, false));
            }
            if overlapping(socket) {
                // Another processor may start the socket's next callback while this one runs.
                reactor::kick(socket.key);
            }
            (work, state.events.client)
        };
        let outcome = call(work, client, socket.key);
        settle(socket, outcome);
    }
    // More may be due: continue after the other sockets' turn.
    reactor::kick(socket.key);
}

/// Whether callbacks of `socket` may overlap: datagram and listening sockets with the
/// adversary's `concurrent_callbacks`. Microsoft documents no serialization of
/// `WskReceiveFromEvent` or `WskAcceptEvent` calls of one socket, so a client must cope with
/// overlapping ones; connection sockets stay serial here (their receive callback's bytes are
/// a stream, and a provider indicating one stream's data on two CPUs at once could not keep
/// it in order).
fn overlapping(socket: &Socket) -> bool {
    matches!(socket.kind, Kind::Datagram | Kind::Listen) && crate::adversary::get().concurrent_callbacks
}

/// The next callback due on `socket`, its memory prepared.
fn next(socket: &Arc<Socket>, state: &mut State) -> Option<Work> {
    let events = &state.events;
    if state.closing
        || socket.close_issued()
        || (events.enabled == 0 && !state.inspect.on)
        || (!events.running.is_empty() && !overlapping(socket))
        || crate::kernel::crashed()
        || socket.session != crate::kernel::session()
    {
        return None;
    }
    let client = events.client;
    let enabled = events.enabled;
    match socket.kind {
        Kind::Connection => {
            if state.events.backlog_due && enabled & WSK_EVENT_SEND_BACKLOG != 0 {
                state.events.backlog_due = false;
                if let Some(callback) = callbacks::send_backlog(client) {
                    return Some(Work::SendBacklog { callback, size: send_buffer(state) });
                }
            }
            if enabled & WSK_EVENT_RECEIVE != 0
                && !state.events.receive_suppressed
                && !queue::busy(state, Queue::Receive)
                && let Some(callback) = callbacks::receive(client)
                && let Some(chain) = indication::gather_data(state)
            {
                return Some(Work::Receive { callback, chain });
            }
            if enabled & WSK_EVENT_DISCONNECT != 0 && !state.events.disconnect_done {
                let flags = disconnect_seen(state)?;
                state.events.disconnect_done = true;
                let callback = callbacks::disconnect(client)?;
                return Some(Work::Disconnect { callback, flags });
            }
            None
        }
        Kind::Listen => {
            if state.inspect.on
                && let Some(due) = inspect::next(socket, state)
            {
                return Some(Work::Inspect(due));
            }
            if enabled & WSK_EVENT_ACCEPT == 0 || queue::busy(state, Queue::Accept) {
                return None;
            }
            let callback = callbacks::accept(client)?;
            let (accepted, local, remote) = accept_one(socket, state)?;
            Some(Work::Accept { callback, accepted, local, remote })
        }
        Kind::Datagram => {
            if enabled & WSK_EVENT_RECEIVE_FROM == 0
                || state.events.datagrams_suppressed
                || queue::busy(state, Queue::Receive)
            {
                return None;
            }
            let callback = callbacks::receive_from(client)?;
            let chain = indication::gather_datagrams(state)?;
            Some(Work::ReceiveFrom { callback, chain })
        }
        Kind::Basic => None,
    }
}

/// The send buffer size `WskSendBacklogEvent` reports: what `WskGetOption(SO_SNDBUF)` answers.
fn send_buffer(state: &State) -> usize {
    match (state.recorded.send_buffer, state.host.as_ref()) {
        (Some(size), _) => size as usize,
        (None, None) if io::memory_end(state).is_some() => CAPACITY,
        (None, Some(host)) => host.send_buffer_size().unwrap_or(0),
        (None, None) => 0,
    }
}

/// Whether the peer disconnected, as `WskDisconnectEvent` flags: a reset (sticky error) is
/// abortive; the FIN counts once every byte before it was indicated or received. When
/// nothing else reads the host socket, a zero-byte peek finds the FIN or the reset.
fn disconnect_seen(state: &mut State) -> Option<ULONG> {
    if state.error.is_none() && !state.peer_fin && state.events.kept.is_empty() && !queue::busy(state, Queue::Receive) {
        let reading = state.events.enabled & WSK_EVENT_RECEIVE != 0 && !state.events.receive_suppressed;
        if !reading
            && state.phase == Phase::Connected
            && let Some(end) = io::memory_end(state)
        {
            match end.peek() {
                Found::Fin => state.peer_fin = true,
                Found::Reset => state.error = Some(STATUS_CONNECTION_RESET),
                Found::Data(_) | Found::Empty => {}
            }
        } else if !reading
            && state.phase == Phase::Connected
            && !state.host_drained
            && let Some(host) = state.host.as_ref()
        {
            let mut probe = [std::mem::MaybeUninit::<u8>::uninit(); 1];
            match status::retry(|| host.peek(&mut probe)) {
                Ok(0) => state.peer_fin = true,
                Ok(_) => {}
                Err(error) if status::would_block(&error) => {}
                Err(error) => state.error = Some(status::from_io(&error)),
            }
        }
    }
    if state.error.is_some() {
        Some(WSK_FLAG_ABORTIVE)
    } else if state.peer_fin && state.events.kept.is_empty() {
        Some(0)
    } else {
        None
    }
}

/// Accepts one waiting connection for the accept callback: the provider socket is created
/// (not handed out until the callback takes it).
fn accept_one(
    listener: &Arc<Socket>,
    state: &mut State,
) -> Option<(Arc<Socket>, Option<SocketAddr>, Option<SocketAddr>)> {
    if state.phase != Phase::Listening {
        return None;
    }
    if let Some(Memory::Listener(backlog)) = state.memory.as_mut() {
        return io::memory_accept(backlog).map(|(accepted, local, remote)| (accepted, Some(local), Some(remote)));
    }
    let host = state.host.as_ref()?;
    loop {
        let (connection, peer) = match inspect::take(listener.key, host, &mut state.inspect) {
            Ok(accepted) => accepted,
            // Reset before it was accepted: take the next one.
            Err(error) if matches!(error.raw_os_error(), Some(libc::ECONNABORTED | libc::EPROTO)) => continue,
            Err(_) => return None,
        };
        if connection.set_nonblocking(true).is_err() {
            continue;
        }
        let local = connection.local_addr().ok().and_then(|a| addr::from_host(&a));
        let remote = addr::from_host(&peer);
        let accepted = socket::create(
            Kind::Connection,
            listener.family,
            listener.client,
            Some(connection),
            Phase::Connected,
            false,
        )
        .ok()?;
        return Some((accepted, local, remote));
    }
}

/// Makes the callback at DISPATCH_LEVEL.
fn call(work: Work, client: Client, socket_key: usize) -> Outcome {
    let context = client.context as PVOID;
    let _irql = irql::enter_irql(DISPATCH_LEVEL);
    let (outcome, name) = match work {
        Work::SendBacklog { callback, size } => {
            // SAFETY: the client's callback, called as its table declares it, with the
            // context it gave for the socket.
            unsafe { callback(context, size as SIZE_T) };
            (Outcome::Plain, "WskSendBacklogEvent")
        }
        Work::Disconnect { callback, flags } => {
            // SAFETY: as above.
            unsafe { callback(context, flags) };
            (Outcome::Plain, "WskDisconnectEvent")
        }
        Work::Receive { callback, chain } => {
            let mut accepted: SIZE_T = chain.bytes();
            let flags = WSK_FLAG_AT_DISPATCH_LEVEL | WSK_FLAG_ENTIRE_MESSAGE;
            let head = chain.head() as *mut WSK_DATA_INDICATION;
            // SAFETY: as above; the chain is provider memory that stays valid during the call
            // (and after it, if the client retains it); `accepted` lives across the call.
            let status = unsafe { callback(context, flags, head, chain.bytes(), &raw mut accepted) };
            (Outcome::Receive { chain, status, accepted }, "WskReceiveEvent")
        }
        Work::ReceiveFrom { callback, chain } => {
            let head = chain.head() as *mut WSK_DATAGRAM_INDICATION;
            // SAFETY: as above.
            let status = unsafe { callback(context, WSK_FLAG_AT_DISPATCH_LEVEL, head) };
            (Outcome::ReceiveFrom { chain, status }, "WskReceiveFromEvent")
        }
        Work::Inspect(Due::Inspect { callback, serial, local, remote }) => {
            let mut addresses = [SOCKADDR_STORAGE::zeroed(), SOCKADDR_STORAGE::zeroed()];
            let [local_storage, remote_storage] = &mut addresses;
            let local_address = storage_for(local_storage, local);
            let remote_address = storage_for(remote_storage, remote);
            // Valid during the call only: the client copies it to pend (as documented).
            let mut id = inspect::inspect_id(socket_key, serial);
            // SAFETY: as above; the addresses and the inspect ID live across the call.
            let action = unsafe { callback(context, local_address, remote_address, &raw mut id) };
            (Outcome::Inspect { serial, action }, "WskInspectEvent")
        }
        Work::Inspect(Due::Abort { callback, serial }) => {
            let mut id = inspect::inspect_id(socket_key, serial);
            // SAFETY: as above; the inspect ID lives across the call. Microsoft documents that
            // the callback must return STATUS_SUCCESS; nothing depends on it here.
            unsafe { callback(context, &raw mut id) };
            (Outcome::Plain, "WskAbortEvent")
        }
        Work::Accept { callback, accepted, local, remote } => {
            let mut addresses = [SOCKADDR_STORAGE::zeroed(), SOCKADDR_STORAGE::zeroed()];
            let [local_storage, remote_storage] = &mut addresses;
            let local_address = storage_for(local_storage, local);
            let remote_address = storage_for(remote_storage, remote);
            let mut accept_context: PVOID = std::ptr::null_mut();
            let mut accept_dispatch: *const WSK_CLIENT_CONNECTION_DISPATCH = std::ptr::null();
            // SAFETY: as above; the addresses and out-parameters live across the call.
            let status = unsafe {
                callback(
                    context,
                    WSK_FLAG_AT_DISPATCH_LEVEL,
                    local_address,
                    remote_address,
                    accepted.handle() as *mut WSK_SOCKET,
                    &raw mut accept_context,
                    &raw mut accept_dispatch,
                )
            };
            let client = Client { context: accept_context as usize, dispatch: accept_dispatch as usize };
            (Outcome::Accept { accepted, status, client }, "WskAcceptEvent")
        }
    };
    irql::check_restored(name, DISPATCH_LEVEL);
    outcome
}

/// A chain was released (`WskRelease`) while its callback ran: right only if the callback
/// retained it; then it is given back now, as its release asked.
fn early_release(socket: &Socket, status: NTSTATUS) {
    if status != STATUS_PENDING && crate::kernel::verifier() {
        bugcheck(
            Rule::WskIndicationReleasedTwice,
            format!(
                "socket 0x{:x}: an indication was released with WskRelease while its callback ran, and the callback \
                 did not retain it (returned 0x{status:08x}, not STATUS_PENDING)",
                socket.key
            ),
        );
    }
}

/// Writes `address` into `storage`; the pointer to pass (null when there is none).
fn storage_for(storage: &mut SOCKADDR_STORAGE, address: Option<SocketAddr>) -> *mut SOCKADDR {
    let Some(address) = address else { return std::ptr::null_mut() };
    let pointer = std::ptr::from_mut(storage).cast::<SOCKADDR>();
    // SAFETY: a SOCKADDR_STORAGE has room for any address.
    unsafe { addr::write(pointer, &address) };
    pointer
}

/// Settles a callback's return: what was indicated is given back, kept or retained; the
/// disables and the close that waited for the callback complete.
fn settle(socket: &Arc<Socket>, outcome: Outcome) {
    let mut give_back = None;
    let mut adopt = None;
    let mut discard = None;
    let mut kick_listener = false;
    let (waiters, close, drive) = {
        let mut state = lock(&socket.state);
        let me = std::thread::current().id();
        let (event, resume_after) = match state.events.running.iter().position(|running| running.thread == me) {
            Some(at) => {
                let running = state.events.running.swap_remove(at);
                (running.event, running.resume_after)
            }
            None => (0, false),
        };
        let mut retention = lock(&socket.retention);
        let head = outcome.head();
        let released_early = match retention.current.iter().position(|&(current, _)| current == head && head != 0) {
            Some(at) => retention.current.swap_remove(at).1,
            None => false,
        };
        match outcome {
            Outcome::Plain => {}
            Outcome::Receive { chain, status, .. } if released_early => {
                early_release(socket, status);
                give_back = Some(chain);
            }
            Outcome::ReceiveFrom { chain, status } if released_early => {
                early_release(socket, status);
                give_back = Some(chain);
            }
            Outcome::Receive { chain, status, accepted } => {
                if status == STATUS_PENDING {
                    retention.chains.push(chain);
                } else {
                    let taken = if status == STATUS_SUCCESS { accepted.min(chain.bytes()) } else { 0 };
                    if taken < chain.bytes() && !state.closing {
                        crate::counters::bump::refused_bytes((chain.bytes() - taken) as u64);
                        state.events.receive_suppressed = true;
                        match chain.keep_unread(taken) {
                            Ok((block, start, end)) => events::keep_block_in_front(&mut state, block, start, end),
                            Err(chain) => {
                                events::keep_in_front(&mut state, chain.data_from(taken));
                                give_back = Some(chain);
                            }
                        }
                    } else {
                        give_back = Some(chain);
                    }
                }
            }
            Outcome::ReceiveFrom { chain, status } => {
                if status == STATUS_PENDING {
                    retention.chains.push(chain);
                } else {
                    if status != STATUS_SUCCESS && !state.closing {
                        events::refused_datagrams(&mut state, chain.datagrams());
                    }
                    give_back = Some(chain);
                }
            }
            Outcome::Inspect { serial, action } => {
                kick_listener = inspect::settle(socket, &mut state, serial, action);
            }
            Outcome::Accept { accepted, status, client } => {
                if status == STATUS_SUCCESS {
                    adopt = Some((accepted, client, state.events.inherit));
                } else {
                    discard = Some(accepted);
                }
            }
        }
        // A pended inspection's peer may have left while the callback ran: a pass on another
        // processor then found the listener busy and skipped it, so look again.
        kick_listener |= !state.inspect.pended.is_empty();
        if resume_after {
            // A receive or a re-enable came while the callback ran: it applies now, after the
            // callback's answer.
            state.resume_indications(event);
        }
        // A disable waits for every callback of its event in progress.
        let still_running = state.events.running.iter().any(|running| running.event == event);
        let (waiters, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut state.events.disable_waiters)
            .into_iter()
            .partition(|&(bit, _)| bit == event && !still_running);
        state.events.disable_waiters = rest;
        let drive = !state.closing && !state.receives.is_empty();
        (waiters, state.take_close_if_ready(), drive)
    };
    if let Some(chain) = give_back {
        chain.give_back(socket.key, Release::Returned);
    }
    if let Some((accepted, client, inherited)) = adopt {
        // The adversary's late bookkeeping: until the answer is recorded, the accepted socket
        // has no client table (see `adversary`).
        crate::adversary::delay_accept_answer();
        let mut state = lock(&accepted.state);
        state.handed_out = true;
        if events::record_accepted(&accepted, &mut state, client, inherited) {
            drop(state);
            reactor::kick(accepted.key);
        }
    }
    if let Some(accepted) = discard {
        queue::discard(&accepted);
    }
    for (_, Irp(irp)) in waiters {
        // SAFETY: accepted and marked pending by the disable that queued it; completed once.
        unsafe { provider::complete(irp, STATUS_SUCCESS, 0) };
    }
    if drive {
        queue::progress(socket);
    }
    if kick_listener {
        // An accept IRP or the accept callback takes the connection on the next pass (and
        // departures from pended inspections are looked for).
        reactor::kick(socket.key);
    }
    if let Some(irp) = close {
        queue::complete_close(socket, irp);
    }
}
