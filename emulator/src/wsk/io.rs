//! The host side of each operation: one nonblocking attempt to move it forward, run under the
//! socket's lock with the IRP owned by the provider (not cancelable).
//!
//! An attempt either finishes the operation (`Step::Done`) or reports that the host socket
//! would block (`Step::Blocked`); it returns `Blocked` only after the host said so, or while a
//! connect is under way (transfers wait for it), so a readiness event of the host socket
//! always follows.

use std::mem::MaybeUninit;
use std::net::Shutdown;
use std::sync::Arc;

use socket2::SockAddr;
use wsk_sys::{
    CMSGHDR, IN_PKTINFO, IN6_PKTINFO, IP_PKTINFO, IPPROTO_IP, IPPROTO_IPV6, IPV6_PKTINFO, MSG_CTRUNC, MSG_TRUNC,
    NTSTATUS, STATUS_CONNECTION_ABORTED, STATUS_CONNECTION_RESET, STATUS_INVALID_CONNECTION,
    STATUS_INVALID_DEVICE_STATE, STATUS_INVALID_PARAMETER, STATUS_SUCCESS,
};

use super::addr::{self, Family};
use super::model::{
    Action, Actions, Backlog, Client, ControlMessage, ControlOut, End, Found, Kind, Memory, Op, OpKind, Out, Phase,
    Queue, Segments, State,
};
use super::socket::{self, Socket};
use super::status::{self, would_block};
use super::{events, loopback};
use crate::sync::lock;
use crate::verifier::{Rule, bugcheck};

/// The outcome of one attempt.
pub(crate) enum Step {
    /// Complete the IRP with this status and information.
    Done(NTSTATUS, usize),
    /// The host would block: keep the op queued.
    Blocked,
}

/// Moves `op` forward once.
pub(crate) fn attempt(socket: &Arc<Socket>, state: &mut State, op: &mut Op, actions: &mut Actions) -> Step {
    let step = attempt_once(socket, state, op, actions);
    if let Step::Done(..) = step {
        let queue = match op.kind {
            OpKind::Accept { .. } => Queue::Accept,
            OpKind::Receive { .. } | OpKind::ReceiveFrom { .. } => Queue::Receive,
            OpKind::Send { .. } | OpKind::Disconnect { .. } | OpKind::SendTo { .. } | OpKind::SendMessages { .. } => {
                Queue::Send
            }
            OpKind::Connect { .. } => Queue::Connect,
        };
        events::after_irp(socket, state, queue);
    }
    step
}

fn attempt_once(socket: &Arc<Socket>, state: &mut State, op: &mut Op, actions: &mut Actions) -> Step {
    match &mut op.kind {
        OpKind::Accept { local, remote, client } => accept(socket, state, *local, *remote, *client),
        OpKind::Connect { create } => connect(socket, state, *create, actions),
        OpKind::Send { buf, done } => send(state, buf, done, true),
        // A disconnect's data goes whole before the FIN.
        OpKind::Disconnect { buf, done } => match send(state, buf, done, false) {
            Step::Done(STATUS_SUCCESS, sent) => disconnect(state, sent),
            other => other,
        },
        OpKind::Receive { buf, done, wait_all } => receive(state, buf, done, *wait_all),
        OpKind::SendTo { buf, to } => send_to(state, buf, to),
        OpKind::SendMessages { bufs, to, done, bytes } => send_messages(state, bufs, to, done, bytes),
        OpKind::ReceiveFrom { buf, from, control, control_flags } => {
            receive_from(state, buf, *from, *control, *control_flags)
        }
    }
}

/// Whether a connection was disconnected in both directions: a graceful disconnect was sent
/// and the peer's FIN arrived (seen by a receive, or found by peeking: nothing left to read).
pub(crate) fn disconnected_both_ways(state: &State) -> bool {
    if !state.fin_sent {
        return false;
    }
    if state.peer_fin {
        return true;
    }
    if let Some(end) = memory_end(state) {
        return end.peek() == Found::Fin;
    }
    let Some(host) = state.host.as_ref() else { return false };
    let mut probe = [MaybeUninit::<u8>::uninit(); 1];
    matches!(host.peek(&mut probe), Ok(0))
}

/// An in-memory connection's end (see `loopback`).
pub(crate) fn memory_end(state: &State) -> Option<&End> {
    match state.memory.as_ref() {
        Some(Memory::End(end)) => Some(end),
        _ => None,
    }
}

/// The status a transfer fails with on a connection that cannot carry one.
fn connection_failure(state: &State) -> Option<NTSTATUS> {
    if let Some(error) = state.error {
        return Some(error);
    }
    match state.phase {
        Phase::Connected | Phase::Connecting => None,
        _ => Some(STATUS_INVALID_CONNECTION),
    }
}

fn accept(
    listener: &Arc<Socket>,
    state: &mut State,
    local: Out<wsk_sys::SOCKADDR>,
    remote: Out<wsk_sys::SOCKADDR>,
    client: Client,
) -> Step {
    if state.phase != Phase::Listening {
        return Step::Done(STATUS_INVALID_DEVICE_STATE, 0);
    }
    if let Some(Memory::Listener(backlog)) = state.memory.as_mut() {
        let Some((accepted, local_address, peer_address)) = memory_accept(backlog) else { return Step::Blocked };
        lock(&accepted.state).handed_out = true;
        events::record_client(&accepted, client);
        // SAFETY: the client keeps the address buffers valid until the IRP completes (WSK's
        // contract for WskAccept).
        unsafe { addr::write(local.0, &local_address) };
        // SAFETY: as above.
        unsafe { addr::write(remote.0, &peer_address) };
        return Step::Done(STATUS_SUCCESS, accepted.handle());
    }
    let Some(host) = state.host.as_ref() else { return Step::Done(STATUS_INVALID_DEVICE_STATE, 0) };
    loop {
        let (connection, peer) = match super::inspect::take(listener.key, host, &mut state.inspect) {
            Ok(accepted) => accepted,
            Err(error) if would_block(&error) => return Step::Blocked,
            // A connection reset before it was accepted: take the next one.
            Err(error) if matches!(error.raw_os_error(), Some(libc::ECONNABORTED | libc::EPROTO)) => continue,
            Err(error) => return Step::Done(status::from_io(&error), 0),
        };
        if let Err(error) = connection.set_nonblocking(true) {
            return Step::Done(status::from_io(&error), 0);
        }
        let local_address = connection.local_addr().ok().and_then(|a| addr::from_host(&a));
        let peer_address = addr::from_host(&peer);
        let accepted = match socket::create(
            Kind::Connection,
            listener.family,
            listener.client,
            Some(connection),
            Phase::Connected,
            true,
        ) {
            Ok(accepted) => accepted,
            Err(status) => return Step::Done(status, 0),
        };
        events::record_client(&accepted, client);
        // SAFETY: the client keeps the address buffers valid until the IRP completes (WSK's
        // contract for WskAccept); null ones are skipped.
        unsafe {
            if let Some(address) = local_address {
                addr::write(local.0, &address);
            }
        }
        // SAFETY: as above.
        unsafe {
            if let Some(address) = peer_address {
                addr::write(remote.0, &address);
            }
        }
        return Step::Done(STATUS_SUCCESS, accepted.handle());
    }
}

/// The next connection queued on an in-memory listener that is still open: its socket, local
/// and remote address.
pub(crate) fn memory_accept(
    backlog: &mut Backlog,
) -> Option<(Arc<Socket>, std::net::SocketAddr, std::net::SocketAddr)> {
    while let Some((key, local, remote)) = backlog.waiting.pop_front() {
        if let Some(accepted) = socket::open_socket(key) {
            return Some((accepted, local, remote));
        }
    }
    None
}

fn connect(socket: &Arc<Socket>, state: &mut State, create: bool, actions: &mut Actions) -> Step {
    let outcome = match state.host.as_ref() {
        None => Err(STATUS_CONNECTION_ABORTED),
        Some(host) => match host.take_error() {
            Ok(Some(error)) | Err(error) => Err(status::from_io(&error)),
            Ok(None) => match host.peer_addr() {
                Ok(_) => Ok(()),
                Err(error) if error.raw_os_error() == Some(libc::ENOTCONN) => return Step::Blocked,
                Err(error) => Err(status::from_io(&error)),
            },
        },
    };
    match outcome {
        Ok(()) => {
            state.phase = Phase::Connected;
            if create {
                state.handed_out = true;
                Step::Done(STATUS_SUCCESS, socket.handle())
            } else {
                Step::Done(STATUS_SUCCESS, 0)
            }
        }
        Err(status) => {
            state.phase = Phase::Bound;
            if create {
                state.closing = true;
                state.close_host(false);
                actions.push(Action::Retire);
            }
            Step::Done(status, 0)
        }
    }
}

/// `may_be_short`: a `WskSend`, which may complete with part of its bytes sent.
fn send(state: &mut State, buf: &Segments, done: &mut usize, may_be_short: bool) -> Step {
    if buf.total() == 0 {
        return Step::Done(STATUS_SUCCESS, 0);
    }
    if let Some(status) = connection_failure(state) {
        return Step::Done(status, 0);
    }
    if state.phase == Phase::Connecting {
        // Sent once the connect completes (its readiness event drives every queue).
        return Step::Blocked;
    }
    if state.fin_sent {
        return Step::Done(STATUS_INVALID_CONNECTION, 0);
    }
    if let Some(end) = memory_end(state) {
        let step = memory_send(end, buf, done);
        if let Step::Done(status, _) = step
            && status != STATUS_SUCCESS
        {
            state.error = Some(status);
        }
        return step;
    }
    let Some(host) = state.host.as_ref() else { return Step::Done(STATUS_CONNECTION_ABORTED, 0) };
    let shapes = crate::adversary::get().random_shapes;
    if !shapes {
        return match send_gathered(host, buf, done) {
            Ok(step) => step,
            Err(status) => {
                state.error = Some(status);
                Step::Done(status, 0)
            }
        };
    }
    while let Some((address, length)) = buf.chunk(*done) {
        // The adversary's random shapes: part of the chunk, and maybe a short send.
        let length = if shapes { crate::adversary::up_to(length) } else { length };
        // SAFETY: the client keeps the buffer valid until the IRP completes; the range lies in
        // the buffer (checked against the MDL chain when the call was made).
        let bytes = unsafe { std::slice::from_raw_parts(address.cast_const(), length) };
        match status::retry(|| host.send_with_flags(bytes, libc::MSG_NOSIGNAL)) {
            Ok(0) => return Step::Blocked,
            Ok(n) if shapes && may_be_short && *done + n < buf.total() && crate::adversary::chance(250_000) => {
                crate::adversary::count(crate::adversary::Event::ShortSend);
                *done += n;
                return Step::Done(STATUS_SUCCESS, *done);
            }
            Ok(n) => *done += n,
            Err(error) if would_block(&error) => return Step::Blocked,
            Err(error) => {
                let status = status::from_io(&error);
                state.error = Some(status);
                return Step::Done(status, 0);
            }
        }
    }
    Step::Done(STATUS_SUCCESS, *done)
}

/// [`send`] on an in-memory connection: as many bytes as the peer's pipe has room for.
fn memory_send(end: &End, buf: &Segments, done: &mut usize) -> Step {
    while let Some((address, length)) = buf.chunk(*done) {
        // SAFETY: the client keeps the buffer valid until the IRP completes; the range lies in
        // the buffer (checked against the MDL chain when the call was made).
        let bytes = unsafe { std::slice::from_raw_parts(address.cast_const(), length) };
        match loopback::write(end, bytes) {
            Ok(n) => {
                *done += n;
                if n < length {
                    return Step::Blocked;
                }
            }
            Err(()) => return Step::Done(STATUS_CONNECTION_RESET, 0),
        }
    }
    Step::Done(STATUS_SUCCESS, *done)
}

/// Chunks of a send gathered into one host write at most.
const GATHER: usize = 16;

/// A send's bytes from `done` on, in as few host writes as can be: the chunks (one per MDL
/// piece) gathered into one vectored write (up to [`GATHER`] at a time). A stack sends an MDL
/// chain as one stream; a host write per piece would instead meet Nagle's algorithm between
/// the pieces (a piece smaller than a segment waits for the acknowledgement of the one
/// before, which a peer waiting for the whole message delays). `Err`: the host's error, sticky.
fn send_gathered(host: &socket2::Socket, buf: &Segments, done: &mut usize) -> Result<Step, NTSTATUS> {
    while *done < buf.total() {
        let mut slices = [std::io::IoSlice::new(&[]); GATHER];
        let (mut count, mut at) = (0, *done);
        while count < GATHER {
            let Some((address, length)) = buf.chunk(at) else { break };
            // SAFETY: the client keeps the buffer valid until the IRP completes; the range lies
            // in the buffer (checked against the MDL chain when the call was made).
            slices[count] = std::io::IoSlice::new(unsafe { std::slice::from_raw_parts(address.cast_const(), length) });
            count += 1;
            at += length;
        }
        match status::retry(|| host.send_vectored_with_flags(&slices[..count], libc::MSG_NOSIGNAL)) {
            Ok(0) => return Ok(Step::Blocked),
            Ok(n) => *done += n,
            Err(error) if would_block(&error) => return Ok(Step::Blocked),
            Err(error) => return Err(status::from_io(&error)),
        }
    }
    Ok(Step::Done(STATUS_SUCCESS, *done))
}

fn disconnect(state: &mut State, sent: usize) -> Step {
    if let Some(end) = memory_end(state) {
        loopback::shutdown(end);
        state.fin_sent = true;
        return Step::Done(STATUS_SUCCESS, sent);
    }
    let Some(host) = state.host.as_ref() else { return Step::Done(STATUS_CONNECTION_ABORTED, 0) };
    match host.shutdown(Shutdown::Write) {
        Ok(()) => {
            state.fin_sent = true;
            Step::Done(STATUS_SUCCESS, sent)
        }
        Err(error) => Step::Done(status::from_io(&error), 0),
    }
}

fn receive(state: &mut State, buf: &Segments, done: &mut usize, wait_all: bool) -> Step {
    if buf.total() == 0 {
        return Step::Done(STATUS_SUCCESS, 0);
    }
    if events::receive_must_wait(state) {
        // Data is being indicated; what the client refuses comes first (served after the
        // callback returns).
        return Step::Blocked;
    }
    // SAFETY: the client keeps the buffer valid until the IRP completes.
    unsafe { events::serve_kept(state, buf, done) };
    if *done == buf.total() {
        return Step::Done(STATUS_SUCCESS, *done);
    }
    if let Some(status) = connection_failure(state) {
        return if *done > 0 && !wait_all { Step::Done(STATUS_SUCCESS, *done) } else { Step::Done(status, 0) };
    }
    if state.phase == Phase::Connecting {
        // Received from once the connect completes (its readiness event drives every queue).
        return Step::Blocked;
    }
    if let Some(end) = memory_end(state) {
        let found = memory_receive(end, buf, done);
        return match found {
            Found::Data(_) => Step::Done(STATUS_SUCCESS, *done),
            Found::Empty if *done > 0 && !wait_all => Step::Done(STATUS_SUCCESS, *done),
            Found::Empty => Step::Blocked,
            Found::Fin => {
                state.peer_fin = true;
                Step::Done(STATUS_SUCCESS, *done)
            }
            Found::Reset => {
                state.error = Some(STATUS_CONNECTION_RESET);
                if *done > 0 && !wait_all {
                    Step::Done(STATUS_SUCCESS, *done)
                } else {
                    Step::Done(STATUS_CONNECTION_RESET, 0)
                }
            }
        };
    }
    let Some(host) = state.host.as_ref() else { return Step::Done(STATUS_CONNECTION_ABORTED, 0) };
    let shapes = crate::adversary::get().random_shapes;
    // Drained (see `State::host_drained`): the read would block; a short read drains it
    // (unless the host reported its read side closed: then it is read to the end).
    while let Some((address, length)) = buf.chunk(*done).filter(|_| !state.host_drained) {
        // The adversary's random shapes: part of what is there (a partial receive).
        let length = if shapes { crate::adversary::up_to(length) } else { length };
        // SAFETY: the client keeps the buffer valid until the IRP completes; the range lies in
        // the buffer; `MaybeUninit<u8>` has the layout of `u8` and the host only writes.
        let space = unsafe { std::slice::from_raw_parts_mut(address.cast::<MaybeUninit<u8>>(), length) };
        crate::counters::bump::host_reads(1);
        match status::retry(|| host.recv(&mut *space)) {
            Ok(0) => {
                state.peer_fin = true;
                return Step::Done(STATUS_SUCCESS, *done);
            }
            Ok(n) if shapes && !wait_all && *done + n < buf.total() && crate::adversary::chance(500_000) => {
                crate::adversary::count(crate::adversary::Event::PartialReceive);
                *done += n;
                return Step::Done(STATUS_SUCCESS, *done);
            }
            Ok(n) => {
                *done += n;
                state.host_drained = n < length && !state.host_closed;
            }
            Err(error) if would_block(&error) => {
                state.host_drained = !state.host_closed;
                return if *done > 0 && !wait_all { Step::Done(STATUS_SUCCESS, *done) } else { Step::Blocked };
            }
            Err(error) => {
                let status = status::from_io(&error);
                state.error = Some(status);
                return if *done > 0 && !wait_all { Step::Done(STATUS_SUCCESS, *done) } else { Step::Done(status, 0) };
            }
        }
    }
    if state.host_drained && (*done == 0 || wait_all) && *done < buf.total() {
        return Step::Blocked;
    }
    Step::Done(STATUS_SUCCESS, *done)
}

/// [`receive`] on an in-memory connection: takes what the pipe holds into the buffer's chunks
/// from `done` on. `Found::Data` when the buffer is full, else what stopped it.
fn memory_receive(end: &End, buf: &Segments, done: &mut usize) -> Found {
    while let Some((address, length)) = buf.chunk(*done) {
        let mut at = 0;
        let found = loopback::read(end, length, |bytes| {
            // SAFETY: the client keeps the buffer valid until the IRP completes; `at +
            // bytes.len()` stays within this chunk of it (the pipe gives at most `length`).
            unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), address.wrapping_add(at), bytes.len()) };
            at += bytes.len();
        });
        match found {
            Found::Data(n) => *done += n,
            other => return other,
        }
    }
    Found::Data(0)
}

fn send_to(state: &mut State, buf: &Segments, to: &std::net::SocketAddr) -> Step {
    if state.phase == Phase::Created {
        return Step::Done(STATUS_INVALID_DEVICE_STATE, 0);
    }
    let Some(host) = state.host.as_ref() else { return Step::Done(STATUS_INVALID_DEVICE_STATE, 0) };
    let target = SockAddr::from(*to);
    let gathered;
    let bytes: &[u8] = match buf.chunk(0) {
        None => &[],
        Some((address, length)) if buf.is_contiguous() => {
            // SAFETY: the client keeps the buffer valid until the IRP completes.
            unsafe { std::slice::from_raw_parts(address.cast_const(), length) }
        }
        Some(_) => {
            // SAFETY: as above.
            gathered = unsafe { buf.gather() };
            &gathered
        }
    };
    match status::retry(|| host.send_to_with_flags(bytes, &target, libc::MSG_NOSIGNAL)) {
        Ok(n) => Step::Done(STATUS_SUCCESS, n),
        Err(error) if would_block(&error) => Step::Blocked,
        Err(error) => Step::Done(status::from_io(&error), 0),
    }
}

/// `WskSendMessages`: the datagrams in order, each as `WskSendTo` sends one, resuming after
/// the last one sent when the host would block. The first failure completes the IRP with
/// its status and the bytes of the datagrams sent before it.
fn send_messages(
    state: &mut State,
    bufs: &[Segments],
    to: &std::net::SocketAddr,
    done: &mut usize,
    bytes: &mut usize,
) -> Step {
    while let Some(buf) = bufs.get(*done) {
        match send_to(state, buf, to) {
            Step::Done(STATUS_SUCCESS, n) => {
                *done += 1;
                *bytes += n;
            }
            Step::Done(status, _) => return Step::Done(status, *bytes),
            Step::Blocked => return Step::Blocked,
        }
    }
    Step::Done(STATUS_SUCCESS, *bytes)
}

fn receive_from(
    state: &mut State,
    buf: &Segments,
    from: Out<wsk_sys::SOCKADDR>,
    control: ControlOut,
    control_flags: Out<u32>,
) -> Step {
    if buf.total() == 0 {
        return Step::Done(STATUS_SUCCESS, 0);
    }
    if state.phase == Phase::Created {
        return Step::Done(STATUS_INVALID_DEVICE_STATE, 0);
    }
    if events::receive_must_wait(state) {
        return Step::Blocked;
    }
    if let Some(kept) = state.events.kept_datagrams.pop_front() {
        // A datagram the client refused in its callback comes first, with the control
        // information it was indicated with.
        let copied = kept.data.len().min(buf.total());
        // SAFETY: the client keeps the buffer valid until the IRP completes.
        unsafe { buf.scatter(&kept.data[..copied]) };
        // SAFETY: the client keeps its out-parameters valid until the IRP completes; null
        // ones are skipped.
        unsafe { addr::write(from.0, &kept.from) };
        // SAFETY: as above.
        let received = Received { control: kept.control, ..Received::default() };
        // SAFETY: as above.
        unsafe { write_control(control, control_flags, kept.data.len() > copied, &received) };
        return Step::Done(STATUS_SUCCESS, copied);
    }
    let Some(host) = state.host.as_ref() else { return Step::Done(STATUS_INVALID_DEVICE_STATE, 0) };
    let mut staging = Vec::new();
    let result = match buf.chunk(0) {
        Some((address, length)) if buf.is_contiguous() => {
            // SAFETY: the client keeps the buffer valid until the IRP completes.
            let space = unsafe { std::slice::from_raw_parts_mut(address.cast::<MaybeUninit<u8>>(), length) };
            status::retry(|| receive_message(host, &mut *space))
        }
        _ => {
            staging.resize(buf.total(), MaybeUninit::<u8>::new(0));
            status::retry(|| receive_message(host, &mut staging))
        }
    };
    let received = match result {
        Ok(received) => received,
        Err(error) if would_block(&error) => return Step::Blocked,
        Err(error) => return Step::Done(status::from_io(&error), 0),
    };
    let copied = received.size.min(buf.total());
    if !staging.is_empty() {
        // SAFETY: the host initialized the first `copied` bytes of the staging buffer.
        let bytes: Vec<u8> = staging[..copied].iter().map(|b| unsafe { b.assume_init() }).collect();
        // SAFETY: the client keeps the buffer valid until the IRP completes.
        unsafe { buf.scatter(&bytes) };
    }
    // SAFETY: the client keeps its out-parameters valid until the IRP completes; null ones
    // are skipped.
    unsafe {
        if let Some(address) = received.sender.as_ref().and_then(addr::from_host) {
            addr::write(from.0, &address);
        }
    }
    // SAFETY: as above.
    unsafe { write_control(control, control_flags, received.size > copied, &received) };
    Step::Done(STATUS_SUCCESS, copied)
}

/// A datagram read from the host socket by [`receive_message`].
#[derive(Default)]
pub(crate) struct Received {
    /// Its whole size (more than was read when it was truncated).
    pub size: usize,
    pub sender: Option<SockAddr>,
    /// Its control messages translated to Windows' form; those without one are left out.
    pub control: Vec<ControlMessage>,
    /// The host had more control messages than room for them.
    pub control_truncated: bool,
}

/// Host control buffer of one `recvmsg`: room for every message the emulator asks the host
/// for (packet information, IPv4 and IPv6).
const HOST_CONTROL: usize = 256;

/// Reads one datagram from `host` into `space` with `recvmsg` (`MSG_TRUNC`: its whole size is
/// reported), with its sender and its control messages.
pub(crate) fn receive_message(host: &socket2::Socket, space: &mut [MaybeUninit<u8>]) -> std::io::Result<Received> {
    use std::os::fd::AsRawFd;
    let mut storage = MaybeUninit::<libc::sockaddr_storage>::zeroed();
    let mut iov = libc::iovec { iov_base: space.as_mut_ptr().cast(), iov_len: space.len() };
    let mut control = [0u64; HOST_CONTROL / 8];
    // SAFETY: an all-zero `msghdr` is valid (null pointers, zero lengths).
    let mut message: libc::msghdr = unsafe { std::mem::zeroed() };
    message.msg_name = storage.as_mut_ptr().cast();
    message.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    message.msg_iov = &raw mut iov;
    message.msg_iovlen = 1;
    message.msg_control = control.as_mut_ptr().cast();
    message.msg_controllen = size_of_val(&control) as _;
    // SAFETY: every pointer of `message` leads to memory of the length it gives, live for the
    // call; the host only writes `space` (uninitialized bytes are fine).
    let size = unsafe { libc::recvmsg(host.as_raw_fd(), &raw mut message, libc::MSG_TRUNC) };
    if size < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: zeroed before the call, so initialized whatever the host wrote.
    let storage = unsafe { storage.assume_init() };
    // SAFETY: the host wrote a socket address of `msg_namelen` bytes into the storage.
    let sender = unsafe { SockAddr::new(storage, message.msg_namelen) };
    let mut received = Received {
        size: size as usize,
        sender: Some(sender),
        control: Vec::new(),
        control_truncated: message.msg_flags & libc::MSG_CTRUNC != 0,
    };
    // SAFETY: `message` describes the control buffer the host filled (its length updated).
    let mut at = unsafe { libc::CMSG_FIRSTHDR(&raw const message) };
    while !at.is_null() {
        // SAFETY: a header inside the control buffer (CMSG_FIRSTHDR / CMSG_NXTHDR checked it).
        let header = unsafe { at.read_unaligned() };
        // SAFETY: as above.
        let data = unsafe { libc::CMSG_DATA(at) };
        let length = header.cmsg_len as usize - (data as usize - at as usize);
        // SAFETY: the message's data, `length` bytes inside the control buffer.
        let data = unsafe { std::slice::from_raw_parts(data.cast_const(), length) };
        if let Some(translated) = windows_control(header.cmsg_level, header.cmsg_type, data) {
            received.control.push(translated);
        }
        // SAFETY: as for CMSG_FIRSTHDR.
        at = unsafe { libc::CMSG_NXTHDR(&raw const message, at) };
    }
    Ok(received)
}

/// A host control message in Windows' form: `IP_PKTINFO` (Linux `in_pktinfo` -> `IN_PKTINFO`:
/// the header's destination address and the interface index) and `IPV6_PKTINFO`
/// (`in6_pktinfo`, the same layout as `IN6_PKTINFO`); `None` for the others.
fn windows_control(level: libc::c_int, kind: libc::c_int, data: &[u8]) -> Option<ControlMessage> {
    match (level, kind) {
        (libc::IPPROTO_IP, libc::IP_PKTINFO) if data.len() >= size_of::<libc::in_pktinfo>() => {
            // SAFETY: `data` holds an `in_pktinfo` (length checked); read unaligned.
            let info = unsafe { data.as_ptr().cast::<libc::in_pktinfo>().read_unaligned() };
            let mut out = Vec::with_capacity(size_of::<IN_PKTINFO>());
            out.extend_from_slice(&info.ipi_addr.s_addr.to_ne_bytes());
            out.extend_from_slice(&(info.ipi_ifindex as u32).to_ne_bytes());
            Some((IPPROTO_IP, IP_PKTINFO, out))
        }
        (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO) if data.len() >= size_of::<IN6_PKTINFO>() => {
            Some((IPPROTO_IPV6, IPV6_PKTINFO, data[..size_of::<IN6_PKTINFO>()].to_vec()))
        }
        _ => None,
    }
}

/// Checks `WskReceiveFrom`'s control-information arguments at the call: the capacity of the
/// `ControlInfo` buffer is `*ControlLength`. A null `ControlLength` means no control
/// information (`ControlInfo` is ignored, as Microsoft documents); a nonzero length with a null
/// `ControlInfo` is `WSK_CONTROL_INFO_MISSING` and `STATUS_INVALID_PARAMETER`.
///
/// # Safety
/// `length` is null or readable.
pub(crate) unsafe fn control_out(length: *mut u32, info: *mut u8) -> Result<ControlOut, NTSTATUS> {
    if length.is_null() {
        return Ok(ControlOut { length: Out(length), info: Out(std::ptr::null_mut()), capacity: 0 });
    }
    // SAFETY: non-null, readable (caller's contract).
    let capacity = unsafe { length.read_unaligned() } as usize;
    if capacity > 0 && info.is_null() {
        if crate::kernel::verifier() {
            bugcheck(
                Rule::WskControlInfoMissing,
                format!("WskReceiveFrom: *ControlLength is {capacity} but ControlInfo is NULL"),
            );
        }
        return Err(STATUS_INVALID_PARAMETER);
    }
    Ok(ControlOut { length: Out(length), info: Out(info), capacity })
}

/// Writes a `WskReceiveFrom`'s control out-parameters: the control messages of `received`
/// that fit the client's `ControlInfo` buffer, in Windows' `CMSGHDR` layout (a header of
/// `cmsg_len`, `cmsg_level`, `cmsg_type`, the data at the header's size rounded up to the
/// natural alignment, each next header at `cmsg_len` rounded up to the header's alignment),
/// their length in `ControlLength` (0: none), and in `ControlFlags` `MSG_TRUNC` when the
/// datagram was larger than the buffer and `MSG_CTRUNC` when control messages were left out for
/// want of room (never without `ControlLength`: then none was asked for).
///
/// # Safety
/// The out-parameters are null or writable, the `ControlInfo` buffer for its capacity (the
/// client keeps them valid until completion).
unsafe fn write_control(control: ControlOut, control_flags: Out<u32>, truncated: bool, received: &Received) {
    // Without `ControlLength` the client asked for no control information at all.
    let wanted = !control.length.0.is_null();
    let (bytes, left_out) =
        if wanted { control_bytes(&received.control, control.capacity) } else { (Vec::new(), false) };
    let control_truncated = wanted && (received.control_truncated || left_out);
    if !bytes.is_empty() {
        // SAFETY: `bytes` fit the client's buffer (at most its capacity, so it is not null).
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), control.info.0, bytes.len()) };
    }
    let written = bytes.len();
    // SAFETY: forwarded contract; null ones are skipped.
    unsafe {
        if !control.length.0.is_null() {
            control.length.0.write_unaligned(written as u32);
        }
    }
    let flags = if truncated { MSG_TRUNC } else { 0 } | if control_truncated { MSG_CTRUNC } else { 0 };
    // SAFETY: as above.
    unsafe {
        if !control_flags.0.is_null() {
            control_flags.0.write_unaligned(flags);
        }
    }
}

/// `messages` laid out as Windows lays out control information (`CMSGHDR`s: a header of
/// `cmsg_len`, `cmsg_level`, `cmsg_type`, the data at the header's size rounded up to the
/// natural alignment, each next header at `cmsg_len` rounded up to the header's alignment), as
/// many whole messages as fit in `capacity` bytes; and whether some were left out.
pub(crate) fn control_bytes(messages: &[ControlMessage], capacity: usize) -> (Vec<u8>, bool) {
    let data_offset = size_of::<CMSGHDR>().next_multiple_of(size_of::<usize>());
    let mut out = Vec::new();
    for (level, kind, data) in messages {
        let at = out.len().next_multiple_of(align_of::<CMSGHDR>());
        let length = data_offset + data.len();
        if at + length > capacity {
            return (out, true);
        }
        out.resize(at + data_offset, 0);
        out[at..at + size_of::<usize>()].copy_from_slice(&length.to_ne_bytes());
        out[at + size_of::<usize>()..at + size_of::<usize>() + 4].copy_from_slice(&level.to_ne_bytes());
        out[at + size_of::<usize>() + 4..at + size_of::<usize>() + 8].copy_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(data);
    }
    (out, false)
}

/// Turns the host's packet information on or off for a datagram socket of `family`
/// (`IP_PKTINFO` for IPv4, `IPV6_RECVPKTINFO` for IPv6): what `WskSetOption(IP_PKTINFO)` /
/// `WskSetOption(IPV6_PKTINFO)` asks for.
pub(crate) fn set_packet_info(host: &socket2::Socket, family: Family, on: bool) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let (level, name) = packet_info_option(family);
    let value = libc::c_int::from(on);
    // SAFETY: a 4-byte option value, live for the call.
    let result = unsafe {
        libc::setsockopt(
            host.as_raw_fd(),
            level,
            name,
            (&raw const value).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if result == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}

/// Whether the host's packet information is on (see [`set_packet_info`]).
pub(crate) fn packet_info(host: &socket2::Socket, family: Family) -> std::io::Result<bool> {
    use std::os::fd::AsRawFd;
    let (level, name) = packet_info_option(family);
    let mut value: libc::c_int = 0;
    let mut length = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: a 4-byte value and its length, live for the call.
    let result = unsafe { libc::getsockopt(host.as_raw_fd(), level, name, (&raw mut value).cast(), &raw mut length) };
    if result == 0 { Ok(value != 0) } else { Err(std::io::Error::last_os_error()) }
}

/// The host's (level, option) asking for packet information on sockets of `family`.
fn packet_info_option(family: Family) -> (libc::c_int, libc::c_int) {
    match family {
        Family::V4 => (libc::IPPROTO_IP, libc::IP_PKTINFO),
        Family::V6 => (libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO),
    }
}

/// Creates a nonblocking host socket of `kind` (TCP for listen and connection sockets, UDP
/// for datagram sockets), with Windows' defaults: `IPV6_V6ONLY` on for IPv6, and for TCP
/// `SO_REUSEADDR` on the host so that a port with connections in TIME_WAIT can be bound
/// again, as on Windows.
pub(crate) fn new_host_socket(kind: Kind, family: Family, stream: bool) -> std::io::Result<socket2::Socket> {
    let (ty, protocol) = if stream {
        (socket2::Type::STREAM, socket2::Protocol::TCP)
    } else {
        (socket2::Type::DGRAM, socket2::Protocol::UDP)
    };
    let host = socket2::Socket::new(family.domain(), ty, Some(protocol))?;
    host.set_nonblocking(true)?;
    if family == Family::V6 {
        host.set_only_v6(true)?;
    }
    if stream && kind != Kind::Basic {
        host.set_reuse_address(true)?;
    }
    Ok(host)
}
