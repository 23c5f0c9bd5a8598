//! The socket-level dispatch tables (basic, listen, connection, datagram) and their routines.
//!
//! Every routine is callable at IRQL <= DISPATCH_LEVEL. A routine with an IRP takes it first
//! ([`provider::accept`]: an IRP with no stack location left is refused and reported), then
//! looks the socket up and counts the call ([`socket::enter`]), then either completes the IRP
//! before returning its status, or returns `STATUS_PENDING` and completes it later from the
//! reactor thread. Every failure completes the IRP with the failure status, as WSK does.

use std::ffi::c_void;
use std::sync::Arc;

use socket2::SockAddr;
use wsk_sys::{
    CMSGHDR, DISPATCH_LEVEL, IRP, NTSTATUS, PVOID, SIZE_T, SO_WSK_EVENT_CALLBACK, SOCKADDR, SOL_SOCKET,
    STATUS_CONNECTION_ABORTED, STATUS_CONNECTION_ACTIVE, STATUS_INSUFFICIENT_RESOURCES, STATUS_INVALID_ADDRESS,
    STATUS_INVALID_ADDRESS_COMPONENT, STATUS_INVALID_CONNECTION, STATUS_INVALID_DEVICE_STATE, STATUS_INVALID_PARAMETER,
    STATUS_NOT_SUPPORTED, STATUS_SUCCESS, ULONG, WSK_BUF, WSK_BUF_LIST, WSK_CLIENT_CONNECTION_DISPATCH,
    WSK_CONTROL_SOCKET_TYPE, WSK_DATA_INDICATION, WSK_DATAGRAM_INDICATION, WSK_FLAG_ABORTIVE, WSK_FLAG_DRAIN,
    WSK_FLAG_OOB, WSK_FLAG_WAITALL, WSK_INSPECT_ACTION, WSK_INSPECT_ID, WSK_PROVIDER_BASIC_DISPATCH,
    WSK_PROVIDER_CONNECTION_DISPATCH, WSK_PROVIDER_DATAGRAM_DISPATCH, WSK_PROVIDER_LISTEN_DISPATCH, WSK_SOCKET,
    WskSetOption,
};

use super::addr::{self, Family};
use super::buf;
use super::model::{Actions, Client, Irp, Kind, Memory, OpKind, Out, Phase, Queue, Segments};
use super::queue::{self, complete_now};
use super::socket::{self, Call, Socket};
use super::status;
use super::{events, indication, io, loopback, options};
use crate::irp::provider;
use crate::irql;
use crate::sync::lock;

/// Listen backlog of host listen sockets.
const LISTEN_BACKLOG: i32 = 4096;

/// A dispatch table in a `static` (the connection table holds raw reserved pointers).
struct Table<T>(T);

// SAFETY: the tables are immutable; their reserved pointer fields are null.
unsafe impl<T> Sync for Table<T> {}

static BASIC: Table<WSK_PROVIDER_BASIC_DISPATCH> =
    Table(WSK_PROVIDER_BASIC_DISPATCH { WskControlSocket: Some(control_socket), WskCloseSocket: Some(close_socket) });

static LISTEN: Table<WSK_PROVIDER_LISTEN_DISPATCH> = Table(WSK_PROVIDER_LISTEN_DISPATCH {
    Basic: WSK_PROVIDER_BASIC_DISPATCH { WskControlSocket: Some(control_socket), WskCloseSocket: Some(close_socket) },
    WskBind: Some(bind),
    WskAccept: Some(accept),
    WskInspectComplete: Some(inspect_complete),
    WskGetLocalAddress: Some(get_local_address),
});

static CONNECTION: Table<WSK_PROVIDER_CONNECTION_DISPATCH> = Table(WSK_PROVIDER_CONNECTION_DISPATCH {
    Basic: WSK_PROVIDER_BASIC_DISPATCH { WskControlSocket: Some(control_socket), WskCloseSocket: Some(close_socket) },
    WskBind: Some(bind),
    WskConnect: Some(connect),
    WskGetLocalAddress: Some(get_local_address),
    WskGetRemoteAddress: Some(get_remote_address),
    WskSend: Some(send),
    WskReceive: Some(receive),
    WskDisconnect: Some(disconnect),
    WskRelease: Some(release_data),
    WskConnectEx: Some(connect_ex),
    WskSendEx: std::ptr::null_mut(),
    WskReceiveEx: std::ptr::null_mut(),
});

static DATAGRAM: Table<WSK_PROVIDER_DATAGRAM_DISPATCH> = Table(DATAGRAM_ROUTINES);

const DATAGRAM_ROUTINES: WSK_PROVIDER_DATAGRAM_DISPATCH = WSK_PROVIDER_DATAGRAM_DISPATCH {
    Basic: WSK_PROVIDER_BASIC_DISPATCH { WskControlSocket: Some(control_socket), WskCloseSocket: Some(close_socket) },
    WskBind: Some(bind),
    WskSendTo: Some(send_to),
    WskReceiveFrom: Some(receive_from),
    WskRelease: Some(release_datagrams),
    WskGetLocalAddress: Some(get_local_address),
    WskSendMessages: Some(send_messages),
};

/// The datagram table of a provider without `WskSendMessages` (the `no-send-messages`
/// quirk): the routine is null, as in a provider that lacks it.
static DATAGRAM_WITHOUT_SEND_MESSAGES: Table<WSK_PROVIDER_DATAGRAM_DISPATCH> =
    Table(WSK_PROVIDER_DATAGRAM_DISPATCH { WskSendMessages: None, ..DATAGRAM_ROUTINES });

/// The `Dispatch` pointer of a socket of `kind`.
pub(crate) fn dispatch_for(kind: Kind) -> *const c_void {
    match kind {
        Kind::Basic => socket::table_pointer(&BASIC.0),
        Kind::Listen => socket::table_pointer(&LISTEN.0),
        Kind::Connection => socket::table_pointer(&CONNECTION.0),
        Kind::Datagram if crate::quirks::get().no_send_messages => {
            socket::table_pointer(&DATAGRAM_WITHOUT_SEND_MESSAGES.0)
        }
        Kind::Datagram => socket::table_pointer(&DATAGRAM.0),
    }
}

const ALL: &[Kind] = &[Kind::Basic, Kind::Listen, Kind::Connection, Kind::Datagram];
const BOUND_KINDS: &[Kind] = &[Kind::Listen, Kind::Connection, Kind::Datagram];

/// The common start of a routine with an IRP: IRQL check, IRP taken, socket entered. On
/// `Err` the routine returns the status (the IRP, if it was taken, is completed with it).
///
/// # Safety
/// `irp` must be null or a live IRP the client passes to the provider.
unsafe fn begin(routine: &str, socket: *mut WSK_SOCKET, kinds: &[Kind], irp: *mut IRP) -> Result<Call, NTSTATUS> {
    irql::check_max(routine, DISPATCH_LEVEL);
    if irp.is_null() {
        return Err(STATUS_INVALID_PARAMETER);
    }
    // SAFETY: forwarded contract.
    unsafe { provider::accept(irp) }?;
    // SAFETY: the provider accepted the IRP just above.
    let call = socket::enter(routine, socket, kinds).map_err(|status| unsafe { complete_now(irp, status, 0) })?;
    if crate::fault::should_fail(crate::fault::AllocationKind::ProviderCall) {
        // Low resources (fault injection): the provider has no memory for the call.
        // SAFETY: accepted above, not completed.
        return Err(unsafe { complete_now(irp, STATUS_INSUFFICIENT_RESOURCES, 0) });
    }
    Ok(call)
}

/// Completes an accepted IRP with the outcome of a synchronous step.
///
/// # Safety
/// The provider accepted `irp` and has not completed it.
unsafe fn finish(irp: *mut IRP, outcome: Result<usize, NTSTATUS>) -> NTSTATUS {
    match outcome {
        // SAFETY: forwarded contract.
        Ok(info) => unsafe { complete_now(irp, STATUS_SUCCESS, info) },
        // SAFETY: forwarded contract.
        Err(status) => unsafe { complete_now(irp, status, 0) },
    }
}

/// Where a datagram send goes: `remote`, or with a null `remote` the fixed remote address
/// (SIO_WSK_SET_REMOTE_ADDRESS); without either it is refused (fixed destinations set with
/// SIO_WSK_SET_SENDTO_ADDRESS are not emulated). The error is the status to complete with.
///
/// # Safety
/// `remote` must be null or valid for its family's size.
unsafe fn send_destination(socket: &Socket, remote: *mut SOCKADDR) -> Result<std::net::SocketAddr, NTSTATUS> {
    let fixed = if remote.is_null() { options::fixed_remote(&lock(&socket.state)) } else { None };
    // SAFETY: forwarded contract.
    let to = fixed.map_or_else(|| unsafe { address_of(socket, remote) }, Ok)?;
    if addr::valid_remote(&to) { Ok(to) } else { Err(STATUS_INVALID_ADDRESS_COMPONENT) }
}

/// Reads an address the call passes and checks it against the socket's family.
///
/// # Safety
/// `address` must be null or valid for its family's size.
unsafe fn address_of(socket: &Socket, address: *const SOCKADDR) -> Result<std::net::SocketAddr, NTSTATUS> {
    // SAFETY: forwarded contract.
    let address = unsafe { addr::read(address) }?;
    if Family::of(&address) != socket.family {
        return Err(STATUS_INVALID_ADDRESS);
    }
    Ok(address)
}

/// Binds (and, for a listen socket, starts listening).
fn bind_host(socket: &Socket, address: std::net::SocketAddr) -> Result<usize, NTSTATUS> {
    let mut state = lock(&socket.state);
    if state.phase != Phase::Created {
        return Err(STATUS_INVALID_DEVICE_STATE);
    }
    if socket.kind == Kind::Listen && loopback::is_memory(&address) {
        return loopback::listen(socket, &mut state, address);
    }
    let host = state.host.as_ref().ok_or(STATUS_INVALID_DEVICE_STATE)?;
    host.bind(&SockAddr::from(address)).map_err(|e| status::from_io(&e))?;
    if socket.kind == Kind::Listen {
        let listening = host.listen(LISTEN_BACKLOG);
        state.phase = Phase::Bound;
        listening.map_err(|e| status::from_io(&e))?;
        state.phase = Phase::Listening;
    } else {
        state.phase = Phase::Bound;
    }
    Ok(0)
}

unsafe extern "system" fn bind(
    socket: *mut WSK_SOCKET,
    local: *mut SOCKADDR,
    _flags: ULONG,
    irp: *mut IRP,
) -> NTSTATUS {
    // SAFETY: the client passes a live IRP.
    let call = match unsafe { begin("WskBind", socket, BOUND_KINDS, irp) } {
        Ok(call) => call,
        Err(status) => return status,
    };
    // SAFETY: the client passes a valid address (or null, refused).
    let outcome = unsafe { address_of(&call.socket, local) }.and_then(|a| bind_host(&call.socket, a));
    // SAFETY: accepted by `begin`.
    unsafe { finish(irp, outcome) }
}

unsafe extern "system" fn accept(
    socket: *mut WSK_SOCKET,
    _flags: ULONG,
    context: PVOID,
    dispatch: *const WSK_CLIENT_CONNECTION_DISPATCH,
    local: *mut SOCKADDR,
    remote: *mut SOCKADDR,
    irp: *mut IRP,
) -> NTSTATUS {
    // SAFETY: the client passes a live IRP.
    let call = match unsafe { begin("WskAccept", socket, &[Kind::Listen], irp) } {
        Ok(call) => call,
        Err(status) => return status,
    };
    queue::submit(
        &call.socket,
        Irp(irp),
        Queue::Accept,
        OpKind::Accept {
            local: Out(local),
            remote: Out(remote),
            client: Client { context: context as usize, dispatch: dispatch as usize },
        },
    )
}

/// `WskInspectComplete`: completes inside the call (see `inspect`).
unsafe extern "system" fn inspect_complete(
    socket: *mut WSK_SOCKET,
    inspect: *mut WSK_INSPECT_ID,
    action: WSK_INSPECT_ACTION,
    irp: *mut IRP,
) -> NTSTATUS {
    // SAFETY: the client passes a live IRP.
    match unsafe { begin("WskInspectComplete", socket, &[Kind::Listen], irp) } {
        Ok(call) => {
            // SAFETY: the client's inspect ID (its own copy), read during the call only; null
            // is refused.
            let id = (!inspect.is_null()).then(|| unsafe { inspect.read_unaligned() });
            let status = super::inspect::complete(&call.socket, id, action);
            // SAFETY: accepted by `begin`, not completed.
            unsafe { complete_now(irp, status, 0) }
        }
        Err(status) => status,
    }
}

/// Connects a bound connection socket (WskConnect, WskConnectEx without data).
///
/// # Safety
/// `irp` is accepted; `remote` is null or valid.
unsafe fn connect_socket(call: &Call, remote: *const SOCKADDR, irp: *mut IRP) -> NTSTATUS {
    let socket = &call.socket;
    // SAFETY: forwarded contract.
    let remote = match unsafe { address_of(socket, remote) } {
        Ok(remote) if addr::valid_remote(&remote) => remote,
        // SAFETY: accepted.
        Ok(_) => return unsafe { complete_now(irp, STATUS_INVALID_ADDRESS_COMPONENT, 0) },
        // SAFETY: accepted.
        Err(status) => return unsafe { complete_now(irp, status, 0) },
    };
    if loopback::is_memory(&remote) {
        let phase = lock(&socket.state).phase;
        let outcome = match phase {
            Phase::Bound => loopback::connect(socket, remote).map(|()| 0),
            Phase::Connected => Err(STATUS_CONNECTION_ACTIVE),
            _ => Err(STATUS_INVALID_DEVICE_STATE),
        };
        // SAFETY: accepted.
        return unsafe { finish(irp, outcome) };
    }
    let started = {
        let mut state = lock(&socket.state);
        match state.phase {
            Phase::Created => Err(STATUS_INVALID_DEVICE_STATE),
            Phase::Connecting => Err(STATUS_INVALID_DEVICE_STATE),
            Phase::Connected => Err(STATUS_CONNECTION_ACTIVE),
            Phase::Listening => Err(STATUS_INVALID_DEVICE_STATE),
            Phase::Bound => match state.host.as_ref().map(|h| h.connect(&SockAddr::from(remote))) {
                None => Err(STATUS_CONNECTION_ABORTED),
                Some(Ok(())) => {
                    state.phase = Phase::Connected;
                    Ok(false)
                }
                Some(Err(error)) if status::in_progress(&error) => {
                    state.phase = Phase::Connecting;
                    Ok(true)
                }
                Some(Err(error)) => Err(status::from_io(&error)),
            },
        }
    };
    match started {
        Ok(true) => queue::submit(socket, Irp(irp), Queue::Connect, OpKind::Connect { create: false }),
        // SAFETY: accepted.
        Ok(false) => unsafe { complete_now(irp, STATUS_SUCCESS, 0) },
        // SAFETY: accepted.
        Err(status) => unsafe { complete_now(irp, status, 0) },
    }
}

unsafe extern "system" fn connect(
    socket: *mut WSK_SOCKET,
    remote: *mut SOCKADDR,
    _flags: ULONG,
    irp: *mut IRP,
) -> NTSTATUS {
    // SAFETY: the client passes a live IRP.
    let call = match unsafe { begin("WskConnect", socket, &[Kind::Connection], irp) } {
        Ok(call) => call,
        Err(status) => return status,
    };
    // SAFETY: accepted by `begin`; the client passes a valid address.
    unsafe { connect_socket(&call, remote, irp) }
}

unsafe extern "system" fn connect_ex(
    socket: *mut WSK_SOCKET,
    remote: *mut SOCKADDR,
    buffer: *mut WSK_BUF,
    _flags: ULONG,
    irp: *mut IRP,
) -> NTSTATUS {
    // SAFETY: the client passes a live IRP.
    let call = match unsafe { begin("WskConnectEx", socket, &[Kind::Connection], irp) } {
        Ok(call) => call,
        Err(status) => return status,
    };
    // SAFETY: a non-null buffer is a valid WSK_BUF.
    if !buffer.is_null() && unsafe { (*buffer).Length } != 0 {
        // Sending data with the connect is not emulated.
        // SAFETY: accepted by `begin`.
        return unsafe { complete_now(irp, STATUS_NOT_SUPPORTED, 0) };
    }
    // SAFETY: accepted by `begin`; the client passes a valid address.
    unsafe { connect_socket(&call, remote, irp) }
}

unsafe extern "system" fn get_local_address(socket: *mut WSK_SOCKET, local: *mut SOCKADDR, irp: *mut IRP) -> NTSTATUS {
    // SAFETY: the client passes a live IRP.
    let call = match unsafe { begin("WskGetLocalAddress", socket, BOUND_KINDS, irp) } {
        Ok(call) => call,
        Err(status) => return status,
    };
    let outcome = if local.is_null() {
        Err(STATUS_INVALID_PARAMETER)
    } else {
        let state = lock(&call.socket.state);
        match (state.phase, state.host.as_ref()) {
            (Phase::Created, _) => Err(STATUS_INVALID_DEVICE_STATE),
            (_, None) => match state.memory.as_ref() {
                Some(Memory::End(end)) => Ok(end.local),
                Some(Memory::Listener(backlog)) => Ok(backlog.address),
                None => Err(STATUS_INVALID_DEVICE_STATE),
            },
            (_, Some(host)) => host
                .local_addr()
                .map_err(|e| status::from_io(&e))
                .and_then(|a| addr::from_host(&a).ok_or(STATUS_INVALID_DEVICE_STATE)),
        }
        .map(|address| {
            // SAFETY: the client passes room for an address of the socket's family.
            unsafe { addr::write(local, &address) };
            0
        })
    };
    // SAFETY: accepted by `begin`.
    unsafe { finish(irp, outcome) }
}

unsafe extern "system" fn get_remote_address(
    socket: *mut WSK_SOCKET,
    remote: *mut SOCKADDR,
    irp: *mut IRP,
) -> NTSTATUS {
    // SAFETY: the client passes a live IRP.
    let call = match unsafe { begin("WskGetRemoteAddress", socket, &[Kind::Connection], irp) } {
        Ok(call) => call,
        Err(status) => return status,
    };
    let outcome = if remote.is_null() {
        Err(STATUS_INVALID_PARAMETER)
    } else {
        let state = lock(&call.socket.state);
        match (state.phase, state.host.as_ref()) {
            (Phase::Connected, None) => io::memory_end(&state).map(|end| end.remote).ok_or(STATUS_INVALID_CONNECTION),
            (Phase::Connected, Some(host)) => host
                .peer_addr()
                .map_err(|e| status::from_io(&e))
                .and_then(|a| addr::from_host(&a).ok_or(STATUS_INVALID_CONNECTION)),
            _ => Err(STATUS_INVALID_CONNECTION),
        }
        .map(|address| {
            // SAFETY: the client passes room for an address of the socket's family.
            unsafe { addr::write(remote, &address) };
            0
        })
    };
    // SAFETY: accepted by `begin`.
    unsafe { finish(irp, outcome) }
}

/// Resolves the call's buffer, completing the IRP on failure.
///
/// # Safety
/// `irp` is accepted; `buffer` is null or a valid `WSK_BUF`.
unsafe fn segments(routine: &str, buffer: *const WSK_BUF, irp: *mut IRP) -> Result<Segments, NTSTATUS> {
    // SAFETY: forwarded contract.
    unsafe { buf::resolve(routine, buffer) }.map_err(|status| unsafe { complete_now(irp, status, 0) })
}

unsafe extern "system" fn send(socket: *mut WSK_SOCKET, buffer: *mut WSK_BUF, flags: ULONG, irp: *mut IRP) -> NTSTATUS {
    // SAFETY: the client passes a live IRP.
    let call = match unsafe { begin("WskSend", socket, &[Kind::Connection], irp) } {
        Ok(call) => call,
        Err(status) => return status,
    };
    // SAFETY: accepted by `begin`; the client passes a valid buffer.
    let buf = match unsafe { segments("WskSend", buffer, irp) } {
        Ok(buf) => buf,
        Err(status) => return status,
    };
    if flags & WSK_FLAG_OOB != 0 {
        // SAFETY: accepted.
        return unsafe { complete_now(irp, STATUS_NOT_SUPPORTED, 0) };
    }
    if buf.total() == 0 {
        // SAFETY: accepted.
        return unsafe { complete_now(irp, STATUS_SUCCESS, 0) };
    }
    queue::submit(&call.socket, Irp(irp), Queue::Send, OpKind::Send { buf, done: 0 })
}

unsafe extern "system" fn receive(
    socket: *mut WSK_SOCKET,
    buffer: *mut WSK_BUF,
    flags: ULONG,
    irp: *mut IRP,
) -> NTSTATUS {
    // SAFETY: the client passes a live IRP.
    let call = match unsafe { begin("WskReceive", socket, &[Kind::Connection], irp) } {
        Ok(call) => call,
        Err(status) => return status,
    };
    // SAFETY: accepted by `begin`; the client passes a valid buffer.
    let buf = match unsafe { segments("WskReceive", buffer, irp) } {
        Ok(buf) => buf,
        Err(status) => return status,
    };
    if flags & (WSK_FLAG_OOB | WSK_FLAG_DRAIN) != 0 {
        // SAFETY: accepted.
        return unsafe { complete_now(irp, STATUS_NOT_SUPPORTED, 0) };
    }
    if buf.total() == 0 {
        if crate::adversary::cancels_at_once() {
            // The provider cancels it on its own (`provider_cancel_ppm`): indications stay
            // suppressed.
            // SAFETY: accepted.
            return unsafe { complete_now(irp, wsk_sys::STATUS_CANCELLED, 0) };
        }
        // SAFETY: accepted.
        let status = unsafe { complete_now(irp, STATUS_SUCCESS, 0) };
        // Microsoft documents a zero-length WskReceive as the way to resume receive
        // indications after refused data: once it completed, they resume.
        events::resume_receive(&call.socket);
        return status;
    }
    let wait_all = flags & WSK_FLAG_WAITALL != 0;
    queue::submit(&call.socket, Irp(irp), Queue::Receive, OpKind::Receive { buf, done: 0, wait_all })
}

/// Abortive disconnect: resets the connection now and fails pending transfers.
fn abort(socket: &Arc<Socket>) -> Result<usize, NTSTATUS> {
    let mut actions = Actions::new();
    {
        let mut state = lock(&socket.state);
        if state.phase != Phase::Connected || (state.host.is_none() && state.memory.is_none()) {
            return Err(STATUS_INVALID_CONNECTION);
        }
        state.close_host(true);
        state.error = Some(STATUS_CONNECTION_ABORTED);
        // A local abort is no disconnect by the peer: no WskDisconnectEvent.
        state.events.disconnect_done = true;
        queue::fail_transfers(&mut state, STATUS_CONNECTION_ABORTED, &mut actions);
    }
    queue::run(socket, actions);
    Ok(0)
}

unsafe extern "system" fn disconnect(
    socket: *mut WSK_SOCKET,
    buffer: *mut WSK_BUF,
    flags: ULONG,
    irp: *mut IRP,
) -> NTSTATUS {
    // SAFETY: the client passes a live IRP.
    let call = match unsafe { begin("WskDisconnect", socket, &[Kind::Connection], irp) } {
        Ok(call) => call,
        Err(status) => return status,
    };
    if flags & WSK_FLAG_ABORTIVE != 0 {
        // SAFETY: accepted by `begin`.
        return unsafe { finish(irp, abort(&call.socket)) };
    }
    let buf = if buffer.is_null() {
        Segments::default()
    } else {
        // SAFETY: accepted by `begin`; the client passes a valid buffer.
        match unsafe { segments("WskDisconnect", buffer, irp) } {
            Ok(buf) => buf,
            Err(status) => return status,
        }
    };
    let connected = lock(&call.socket.state).phase == Phase::Connected;
    if !connected {
        // SAFETY: accepted.
        return unsafe { complete_now(irp, STATUS_INVALID_CONNECTION, 0) };
    }
    queue::submit(&call.socket, Irp(irp), Queue::Send, OpKind::Disconnect { buf, done: 0 })
}

unsafe extern "system" fn release_data(socket: *mut WSK_SOCKET, list: *mut WSK_DATA_INDICATION) -> NTSTATUS {
    irql::check_max("WskRelease", DISPATCH_LEVEL);
    match socket::enter("WskRelease", socket, &[Kind::Connection]) {
        Ok(call) => indication::release(&call.socket, list as usize),
        Err(status) => status,
    }
}

unsafe extern "system" fn release_datagrams(socket: *mut WSK_SOCKET, list: *mut WSK_DATAGRAM_INDICATION) -> NTSTATUS {
    irql::check_max("WskRelease", DISPATCH_LEVEL);
    match socket::enter("WskRelease", socket, &[Kind::Datagram]) {
        Ok(call) => indication::release(&call.socket, list as usize),
        Err(status) => status,
    }
}

unsafe extern "system" fn send_to(
    socket: *mut WSK_SOCKET,
    buffer: *mut WSK_BUF,
    _flags: ULONG,
    remote: *mut SOCKADDR,
    control_length: ULONG,
    _control: *mut CMSGHDR,
    irp: *mut IRP,
) -> NTSTATUS {
    // SAFETY: the client passes a live IRP.
    let call = match unsafe { begin("WskSendTo", socket, &[Kind::Datagram], irp) } {
        Ok(call) => call,
        Err(status) => return status,
    };
    // SAFETY: the client passes a valid address or none.
    let to = match unsafe { send_destination(&call.socket, remote) } {
        Ok(to) => to,
        // SAFETY: accepted.
        Err(status) => return unsafe { complete_now(irp, status, 0) },
    };
    if control_length != 0 {
        // SAFETY: accepted.
        return unsafe { complete_now(irp, STATUS_NOT_SUPPORTED, 0) };
    }
    // SAFETY: accepted by `begin`; the client passes a valid buffer.
    let buf = match unsafe { segments("WskSendTo", buffer, irp) } {
        Ok(buf) => buf,
        Err(status) => return status,
    };
    queue::submit(&call.socket, Irp(irp), Queue::Send, OpKind::SendTo { buf, to })
}

unsafe extern "system" fn receive_from(
    socket: *mut WSK_SOCKET,
    buffer: *mut WSK_BUF,
    _flags: ULONG,
    remote: *mut SOCKADDR,
    control_length: *mut ULONG,
    control: *mut CMSGHDR,
    control_flags: *mut ULONG,
    irp: *mut IRP,
) -> NTSTATUS {
    // SAFETY: the client passes a live IRP.
    let call = match unsafe { begin("WskReceiveFrom", socket, &[Kind::Datagram], irp) } {
        Ok(call) => call,
        Err(status) => return status,
    };
    // SAFETY: the client's out-parameters are null or valid until the IRP completes.
    let control = match unsafe { io::control_out(control_length, control.cast()) } {
        Ok(control) => control,
        // SAFETY: accepted.
        Err(status) => return unsafe { complete_now(irp, status, 0) },
    };
    // SAFETY: accepted by `begin`; the client passes a valid buffer.
    let buf = match unsafe { segments("WskReceiveFrom", buffer, irp) } {
        Ok(buf) => buf,
        Err(status) => return status,
    };
    if buf.total() == 0 {
        // SAFETY: accepted.
        return unsafe { complete_now(irp, STATUS_SUCCESS, 0) };
    }
    let kind = OpKind::ReceiveFrom { buf, from: Out(remote), control, control_flags: Out(control_flags) };
    queue::submit(&call.socket, Irp(irp), Queue::Receive, kind)
}

/// Datagrams of one `WskSendMessages` at most (a longer list is taken for a cycle).
const MAX_MESSAGES: usize = 1 << 16;

/// `WskSendMessages`: every buffer of the list is one datagram to the same address, as
/// `WskSendTo` sends it (the address rules are `WskSendTo`'s); `Information` is the bytes of
/// all of them. Hidden (a null routine in the table) under the `no-send-messages` quirk.
unsafe extern "system" fn send_messages(
    socket: *mut WSK_SOCKET,
    list: *mut WSK_BUF_LIST,
    _flags: ULONG,
    remote: *mut SOCKADDR,
    control_length: ULONG,
    _control: *mut CMSGHDR,
    irp: *mut IRP,
) -> NTSTATUS {
    // SAFETY: the client passes a live IRP.
    let call = match unsafe { begin("WskSendMessages", socket, &[Kind::Datagram], irp) } {
        Ok(call) => call,
        Err(status) => return status,
    };
    // SAFETY: the client passes a valid address or none.
    let to = match unsafe { send_destination(&call.socket, remote) } {
        Ok(to) => to,
        // SAFETY: accepted.
        Err(status) => return unsafe { complete_now(irp, status, 0) },
    };
    if control_length != 0 || list.is_null() {
        let status = if list.is_null() { STATUS_INVALID_PARAMETER } else { STATUS_NOT_SUPPORTED };
        // SAFETY: accepted.
        return unsafe { complete_now(irp, status, 0) };
    }
    let mut bufs = Vec::new();
    let mut at = list;
    while !at.is_null() {
        if bufs.len() == MAX_MESSAGES {
            // SAFETY: accepted.
            return unsafe { complete_now(irp, STATUS_INVALID_PARAMETER, 0) };
        }
        // SAFETY: an entry of the client's list, valid until the IRP completes; only the
        // buffer's address is taken.
        let buffer = unsafe { &raw const (*at).Buffer };
        // SAFETY: accepted by `begin`; the client passes valid buffers.
        match unsafe { segments("WskSendMessages", buffer, irp) } {
            Ok(buf) => bufs.push(buf),
            Err(status) => return status,
        }
        // SAFETY: as above.
        at = unsafe { (*at).Next };
    }
    queue::submit(&call.socket, Irp(irp), Queue::Send, OpKind::SendMessages { bufs, to, done: 0, bytes: 0 })
}

unsafe extern "system" fn control_socket(
    socket: *mut WSK_SOCKET,
    request: WSK_CONTROL_SOCKET_TYPE,
    code: ULONG,
    level: ULONG,
    input_size: SIZE_T,
    input: PVOID,
    output_size: SIZE_T,
    output: PVOID,
    output_returned: *mut SIZE_T,
    irp: *mut IRP,
) -> NTSTATUS {
    irql::check_max("WskControlSocket", DISPATCH_LEVEL);
    if !irp.is_null() {
        // SAFETY: the client passes a live IRP.
        if let Err(status) = unsafe { provider::accept(irp) } {
            return status;
        }
    }
    if request == WskSetOption && code == SO_WSK_EVENT_CALLBACK && level == SOL_SOCKET {
        return match socket::enter("WskControlSocket", socket, ALL) {
            // SAFETY: the client passes an input buffer valid for its size; the IRP is null
            // or accepted above.
            Ok(call) => unsafe { events::control(&call.socket, input.cast_const().cast(), input_size, irp) },
            Err(status) if irp.is_null() => status,
            // SAFETY: accepted above.
            Err(status) => unsafe { complete_now(irp, status, 0) },
        };
    }
    let outcome = socket::enter("WskControlSocket", socket, ALL).and_then(|call| {
        let request = options::Request {
            kind: request,
            code,
            level,
            input: input.cast_const().cast(),
            input_size,
            output: output.cast(),
            output_size,
        };
        // SAFETY: the client passes buffers valid for their sizes.
        unsafe { options::control(&call.socket, &request) }
    });
    if irp.is_null() {
        if let (Ok(returned), false) = (&outcome, output_returned.is_null()) {
            // SAFETY: the client passes a writable size when it passes no IRP.
            unsafe { output_returned.write_unaligned(*returned) };
        }
        return outcome.map_or_else(|status| status, |_| STATUS_SUCCESS);
    }
    // SAFETY: accepted above.
    unsafe { finish(irp, outcome) }
}

unsafe extern "system" fn close_socket(socket: *mut WSK_SOCKET, irp: *mut IRP) -> NTSTATUS {
    irql::check_max("WskCloseSocket", DISPATCH_LEVEL);
    if irp.is_null() {
        return STATUS_INVALID_PARAMETER;
    }
    // SAFETY: the client passes a live IRP.
    if let Err(status) = unsafe { provider::accept(irp) } {
        return status;
    }
    match socket::begin_close(socket) {
        Ok(socket) => queue::close(&socket, Irp(irp)),
        // SAFETY: accepted above.
        Err(status) => unsafe { complete_now(irp, status, 0) },
    }
}
