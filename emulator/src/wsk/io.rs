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
    NTSTATUS, STATUS_CONNECTION_ABORTED, STATUS_INVALID_CONNECTION, STATUS_INVALID_DEVICE_STATE, STATUS_SUCCESS,
};

use super::addr::{self, Family};
use super::events;
use super::model::{Action, Client, Kind, Op, OpKind, Out, Phase, Queue, Segments, State};
use super::socket::{self, Socket};
use super::status::{self, would_block};

/// Windows' `MSG_TRUNC` (`ws2def.h`): the datagram was larger than the buffer.
pub(crate) const WSK_MSG_TRUNC: u32 = 0x0100;

/// The outcome of one attempt.
pub(crate) enum Step {
    /// Complete the IRP with this status and information.
    Done(NTSTATUS, usize),
    /// The host would block: keep the op queued.
    Blocked,
}

/// Moves `op` forward once.
pub(crate) fn attempt(socket: &Arc<Socket>, state: &mut State, op: &mut Op, actions: &mut Vec<Action>) -> Step {
    let step = attempt_once(socket, state, op, actions);
    if let Step::Done(..) = step {
        let queue = match op.kind {
            OpKind::Accept { .. } => Queue::Accept,
            OpKind::Receive { .. } | OpKind::ReceiveFrom { .. } => Queue::Receive,
            OpKind::Send { .. } | OpKind::Disconnect { .. } | OpKind::SendTo { .. } => Queue::Send,
            OpKind::Connect { .. } => Queue::Connect,
        };
        events::after_irp(socket, state, queue);
    }
    step
}

fn attempt_once(socket: &Arc<Socket>, state: &mut State, op: &mut Op, actions: &mut Vec<Action>) -> Step {
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
        OpKind::ReceiveFrom { buf, from, control_length, control_flags } => {
            receive_from(state, buf, *from, *control_length, *control_flags)
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
    let Some(host) = state.host.as_ref() else { return false };
    let mut probe = [MaybeUninit::<u8>::uninit(); 1];
    matches!(host.peek(&mut probe), Ok(0))
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
    let Some(host) = state.host.as_ref() else { return Step::Done(STATUS_INVALID_DEVICE_STATE, 0) };
    loop {
        let (connection, peer) = match status::retry(|| host.accept()) {
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
            connection,
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

fn connect(socket: &Arc<Socket>, state: &mut State, create: bool, actions: &mut Vec<Action>) -> Step {
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
    let Some(host) = state.host.as_ref() else { return Step::Done(STATUS_CONNECTION_ABORTED, 0) };
    let shapes = crate::adversary::get().random_shapes;
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

fn disconnect(state: &mut State, sent: usize) -> Step {
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
    let Some(host) = state.host.as_ref() else { return Step::Done(STATUS_CONNECTION_ABORTED, 0) };
    let shapes = crate::adversary::get().random_shapes;
    while let Some((address, length)) = buf.chunk(*done) {
        // The adversary's random shapes: part of what is there (a partial receive).
        let length = if shapes { crate::adversary::up_to(length) } else { length };
        // SAFETY: the client keeps the buffer valid until the IRP completes; the range lies in
        // the buffer; `MaybeUninit<u8>` has the layout of `u8` and the host only writes.
        let space = unsafe { std::slice::from_raw_parts_mut(address.cast::<MaybeUninit<u8>>(), length) };
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
            Ok(n) => *done += n,
            Err(error) if would_block(&error) => {
                return if *done > 0 && !wait_all { Step::Done(STATUS_SUCCESS, *done) } else { Step::Blocked };
            }
            Err(error) => {
                let status = status::from_io(&error);
                state.error = Some(status);
                return if *done > 0 && !wait_all { Step::Done(STATUS_SUCCESS, *done) } else { Step::Done(status, 0) };
            }
        }
    }
    Step::Done(STATUS_SUCCESS, *done)
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

fn receive_from(
    state: &mut State,
    buf: &Segments,
    from: Out<wsk_sys::SOCKADDR>,
    control_length: Out<u32>,
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
        // A datagram the client refused in its callback comes first.
        let copied = kept.data.len().min(buf.total());
        // SAFETY: the client keeps the buffer valid until the IRP completes.
        unsafe { buf.scatter(&kept.data[..copied]) };
        // SAFETY: the client keeps its out-parameters valid until the IRP completes; null
        // ones are skipped.
        unsafe { addr::write(from.0, &kept.from) };
        // SAFETY: as above.
        unsafe { write_control(control_length, control_flags, kept.data.len() > copied) };
        return Step::Done(STATUS_SUCCESS, copied);
    }
    let Some(host) = state.host.as_ref() else { return Step::Done(STATUS_INVALID_DEVICE_STATE, 0) };
    let mut staging = Vec::new();
    let result = match buf.chunk(0) {
        Some((address, length)) if buf.is_contiguous() => {
            // SAFETY: the client keeps the buffer valid until the IRP completes.
            let space = unsafe { std::slice::from_raw_parts_mut(address.cast::<MaybeUninit<u8>>(), length) };
            status::retry(|| host.recv_from_with_flags(&mut *space, libc::MSG_TRUNC))
        }
        _ => {
            staging.resize(buf.total(), MaybeUninit::<u8>::new(0));
            status::retry(|| host.recv_from_with_flags(&mut staging, libc::MSG_TRUNC))
        }
    };
    let (size, sender) = match result {
        Ok(received) => received,
        Err(error) if would_block(&error) => return Step::Blocked,
        Err(error) => return Step::Done(status::from_io(&error), 0),
    };
    let copied = size.min(buf.total());
    if !staging.is_empty() {
        // SAFETY: the host initialized the first `copied` bytes of the staging buffer.
        let bytes: Vec<u8> = staging[..copied].iter().map(|b| unsafe { b.assume_init() }).collect();
        // SAFETY: the client keeps the buffer valid until the IRP completes.
        unsafe { buf.scatter(&bytes) };
    }
    // SAFETY: the client keeps its out-parameters valid until the IRP completes; null ones
    // are skipped.
    unsafe {
        if let Some(address) = addr::from_host(&sender) {
            addr::write(from.0, &address);
        }
    }
    // SAFETY: as above.
    unsafe { write_control(control_length, control_flags, size > copied) };
    Step::Done(STATUS_SUCCESS, copied)
}

/// Writes a `WskReceiveFrom`'s control out-parameters: no control data, `MSG_TRUNC` when the
/// datagram was larger than the buffer.
///
/// # Safety
/// The out-parameters are null or writable (the client keeps them valid until completion).
unsafe fn write_control(control_length: Out<u32>, control_flags: Out<u32>, truncated: bool) {
    // SAFETY: forwarded contract; null ones are skipped.
    unsafe {
        if !control_length.0.is_null() {
            control_length.0.write_unaligned(0);
        }
    }
    // SAFETY: as above.
    unsafe {
        if !control_flags.0.is_null() {
            control_flags.0.write_unaligned(if truncated { WSK_MSG_TRUNC } else { 0 });
        }
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
