//! `WskCaptureProviderNPI` and the provider-level dispatch table it hands out: socket creation
//! (`WskSocket`, `WskSocketConnect`), `WskControlClient` (static event callbacks, the transport
//! list), and name resolution (`WskGetAddressInfo`, `WskFreeAddressInfo`, `WskGetNameInfo`).

use std::ffi::c_void;

use wsk_sys::{
    ADDRESS_FAMILY, ADDRINFOEXW, AF_INET, AF_INET6, DISPATCH_LEVEL, GUID, IPPROTO_IP, IPPROTO_TCP, IPPROTO_UDP, IRP,
    MAKE_WSK_VERSION, NPI_WSK_INTERFACE_ID, NTSTATUS, PASSIVE_LEVEL, PEPROCESS, PETHREAD, PSECURITY_DESCRIPTOR, PVOID,
    PWSK_CLIENT, SIZE_T, SOCK_DGRAM, SOCK_STREAM, SOCKADDR, STATUS_BUFFER_OVERFLOW, STATUS_INSUFFICIENT_RESOURCES,
    STATUS_INVALID_ADDRESS, STATUS_INVALID_ADDRESS_COMPONENT, STATUS_INVALID_PARAMETER, STATUS_NOT_SUPPORTED,
    STATUS_SUCCESS, ULONG, UNICODE_STRING, USHORT, WSK_CLIENT_CONNECTION_DISPATCH, WSK_EVENT_ACCEPT,
    WSK_EVENT_CALLBACK_CONTROL, WSK_EVENT_DISCONNECT, WSK_EVENT_RECEIVE, WSK_EVENT_RECEIVE_FROM,
    WSK_EVENT_SEND_BACKLOG, WSK_FLAG_BASIC_SOCKET, WSK_FLAG_CONNECTION_SOCKET, WSK_FLAG_DATAGRAM_SOCKET,
    WSK_FLAG_LISTEN_SOCKET, WSK_FLAG_STREAM_SOCKET, WSK_NO_WAIT, WSK_PROVIDER_DISPATCH, WSK_PROVIDER_NPI,
    WSK_REGISTRATION, WSK_SET_STATIC_EVENT_CALLBACKS, WSK_TRANSPORT, WSK_TRANSPORT_LIST_QUERY,
};

use super::addr::{self, Family};
use super::model::{Client, Irp, Kind, OpKind, Phase, Queue};
use super::queue::{self, complete_now};
use super::socket;
use super::{events, io, loopback, registration, resolve, status};
use crate::irp::provider;
use crate::irql;

/// The provider-level dispatch table handed out by `WskCaptureProviderNPI`.
pub(crate) static PROVIDER_DISPATCH: WSK_PROVIDER_DISPATCH = WSK_PROVIDER_DISPATCH {
    Version: MAKE_WSK_VERSION(1, 0),
    Reserved: 0,
    WskSocket: Some(wsk_socket),
    WskSocketConnect: Some(wsk_socket_connect),
    WskControlClient: Some(wsk_control_client),
    WskGetAddressInfo: Some(wsk_get_address_info),
    WskFreeAddressInfo: Some(wsk_free_address_info),
    WskGetNameInfo: Some(wsk_get_name_info),
};

/// `WskCaptureProviderNPI`: hands out the provider NPI, whose dispatch table is
/// `PROVIDER_DISPATCH` (the provider is always attached, so the call never waits). IRQL ==
/// PASSIVE_LEVEL, or <= DISPATCH_LEVEL with `WSK_NO_WAIT`.
///
/// # Safety
/// `WskRegistration` must be registered and `WskProviderNpi` writable.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn WskCaptureProviderNPI(
    WskRegistration: *mut WSK_REGISTRATION,
    WaitTimeout: ULONG,
    WskProviderNpi: *mut WSK_PROVIDER_NPI,
) -> NTSTATUS {
    let max = if WaitTimeout == WSK_NO_WAIT { DISPATCH_LEVEL } else { PASSIVE_LEVEL };
    irql::check_max("WskCaptureProviderNPI", max);
    if !registration::check_client("WskCaptureProviderNPI", WskRegistration.cast()) || WskProviderNpi.is_null() {
        return STATUS_INVALID_PARAMETER;
    }
    if let Err(status) = registration::count_capture(WskRegistration) {
        return status;
    }
    // SAFETY: the caller guarantees `WskProviderNpi` is writable.
    unsafe {
        WskProviderNpi
            .write(WSK_PROVIDER_NPI { Client: WskRegistration.cast(), Dispatch: &raw const PROVIDER_DISPATCH });
    }
    STATUS_SUCCESS
}

/// Checks the IRQL, requires an IRP and takes it; under fault injection the provider may be
/// out of resources (the IRP is completed with `STATUS_INSUFFICIENT_RESOURCES`). On `Err` the
/// routine returns the status and completes nothing more.
///
/// # Safety
/// `irp` must be null or a live IRP the client passes to the provider.
unsafe fn take(routine: &str, max_irql: u8, irp: *mut IRP) -> Result<(), NTSTATUS> {
    irql::check_max(routine, max_irql);
    if irp.is_null() {
        return Err(STATUS_INVALID_PARAMETER);
    }
    // SAFETY: forwarded contract.
    unsafe { provider::accept(irp) }?;
    if crate::fault::should_fail(crate::fault::AllocationKind::ProviderCall) {
        // Low resources (fault injection), as in the socket routines.
        // SAFETY: accepted above, not completed.
        return Err(unsafe { complete_now(irp, STATUS_INSUFFICIENT_RESOURCES, 0) });
    }
    Ok(())
}

/// Whether `(socket_type, protocol)` is TCP (`Some(true)`), UDP (`Some(false)`) or neither.
fn transport(socket_type: USHORT, protocol: ULONG) -> Option<bool> {
    match (socket_type, protocol) {
        (SOCK_STREAM, IPPROTO_TCP | IPPROTO_IP) => Some(true),
        (SOCK_DGRAM, IPPROTO_UDP | IPPROTO_IP) => Some(false),
        _ => None,
    }
}

fn create_socket(
    client: PWSK_CLIENT,
    family: ADDRESS_FAMILY,
    socket_type: USHORT,
    protocol: ULONG,
    flags: ULONG,
    callbacks: Client,
) -> Result<usize, NTSTATUS> {
    if !registration::check_client("WskSocket", client) {
        return Err(STATUS_INVALID_PARAMETER);
    }
    let kind = match flags {
        WSK_FLAG_BASIC_SOCKET => Kind::Basic,
        WSK_FLAG_LISTEN_SOCKET => Kind::Listen,
        WSK_FLAG_CONNECTION_SOCKET => Kind::Connection,
        WSK_FLAG_DATAGRAM_SOCKET => Kind::Datagram,
        // Stream sockets (Windows 10 1703+) are not emulated.
        WSK_FLAG_STREAM_SOCKET => return Err(STATUS_NOT_SUPPORTED),
        _ => return Err(STATUS_INVALID_PARAMETER),
    };
    let family = Family::from_wsk(family).ok_or(STATUS_INVALID_PARAMETER)?;
    let stream = transport(socket_type, protocol).ok_or(STATUS_INVALID_PARAMETER)?;
    match (kind, stream) {
        (Kind::Listen | Kind::Connection, false) | (Kind::Datagram, true) => return Err(STATUS_INVALID_PARAMETER),
        _ => {}
    }
    let host = io::new_host_socket(kind, family, stream).map_err(|e| status::from_io(&e))?;
    let socket = socket::create(kind, family, client as usize, Some(host), Phase::Created, true)?;
    events::record_client(&socket, callbacks);
    Ok(socket.handle())
}

unsafe extern "system" fn wsk_socket(
    client: PWSK_CLIENT,
    family: ADDRESS_FAMILY,
    socket_type: USHORT,
    protocol: ULONG,
    flags: ULONG,
    socket_context: PVOID,
    dispatch: *const c_void,
    _owning_process: PEPROCESS,
    _owning_thread: PETHREAD,
    _security_descriptor: PSECURITY_DESCRIPTOR,
    irp: *mut IRP,
) -> NTSTATUS {
    // SAFETY: the client passes a live IRP.
    if let Err(status) = unsafe { take("WskSocket", DISPATCH_LEVEL, irp) } {
        return status;
    }
    let callbacks = Client { context: socket_context as usize, dispatch: dispatch as usize };
    let outcome = create_socket(client, family, socket_type, protocol, flags, callbacks);
    let (status, handle) = match outcome {
        Ok(handle) => (STATUS_SUCCESS, handle),
        Err(status) => (status, 0),
    };
    // SAFETY: accepted above.
    unsafe { complete_now(irp, status, handle) }
}

/// `WskSocketConnect` on an accepted IRP.
///
/// # Safety
/// `irp` is accepted; the addresses are null or valid for their families.
unsafe fn socket_connect(
    client: PWSK_CLIENT,
    socket_type: USHORT,
    protocol: ULONG,
    local: *const SOCKADDR,
    remote: *const SOCKADDR,
    callbacks: Client,
    irp: *mut IRP,
) -> Result<NTSTATUS, NTSTATUS> {
    if !registration::check_client("WskSocketConnect", client) {
        return Err(STATUS_INVALID_PARAMETER);
    }
    if transport(socket_type, protocol) != Some(true) {
        return Err(STATUS_INVALID_PARAMETER);
    }
    // SAFETY: forwarded contract.
    let local = unsafe { addr::read(local) }?;
    // SAFETY: forwarded contract.
    let remote = unsafe { addr::read(remote) }?;
    if Family::of(&local) != Family::of(&remote) {
        return Err(STATUS_INVALID_ADDRESS);
    }
    if !addr::valid_remote(&remote) {
        return Err(STATUS_INVALID_ADDRESS_COMPONENT);
    }
    let family = Family::of(&remote);
    if loopback::is_memory(&remote) {
        // An in-memory connection (see `loopback`): connected at once, or refused.
        let socket = socket::create(Kind::Connection, family, client as usize, None, Phase::Bound, true)?;
        if let Err(status) = loopback::connect(&socket, remote) {
            socket::retire(&socket);
            return Err(status);
        }
        events::record_client(&socket, callbacks);
        // SAFETY: accepted (caller's contract).
        let status = unsafe { complete_now(irp, STATUS_SUCCESS, socket.handle()) };
        // The listener's pending accept (or accept callback) takes the connection now.
        loopback::run_pending();
        return Ok(status);
    }
    let io_error = |e: std::io::Error| status::from_io(&e);
    let host = io::new_host_socket(Kind::Connection, family, true).map_err(io_error)?;
    host.bind(&local.into()).map_err(io_error)?;
    let connected = match host.connect(&remote.into()) {
        Ok(()) => true,
        Err(error) if status::in_progress(&error) => false,
        Err(error) => return Err(status::from_io(&error)),
    };
    let phase = if connected { Phase::Connected } else { Phase::Connecting };
    let socket = socket::create(Kind::Connection, family, client as usize, Some(host), phase, connected)?;
    events::record_client(&socket, callbacks);
    if connected {
        // SAFETY: accepted (caller's contract).
        return Ok(unsafe { complete_now(irp, STATUS_SUCCESS, socket.handle()) });
    }
    Ok(queue::submit(&socket, Irp(irp), Queue::Connect, OpKind::Connect { create: true }))
}

unsafe extern "system" fn wsk_socket_connect(
    client: PWSK_CLIENT,
    socket_type: USHORT,
    protocol: ULONG,
    local: *mut SOCKADDR,
    remote: *mut SOCKADDR,
    _flags: ULONG,
    socket_context: PVOID,
    dispatch: *const WSK_CLIENT_CONNECTION_DISPATCH,
    _owning_process: PEPROCESS,
    _owning_thread: PETHREAD,
    _security_descriptor: PSECURITY_DESCRIPTOR,
    irp: *mut IRP,
) -> NTSTATUS {
    // SAFETY: the client passes a live IRP.
    if let Err(status) = unsafe { take("WskSocketConnect", DISPATCH_LEVEL, irp) } {
        return status;
    }
    let callbacks = Client { context: socket_context as usize, dispatch: dispatch as usize };
    // SAFETY: accepted above; the client passes valid addresses (read during the call only).
    match unsafe { socket_connect(client, socket_type, protocol, local, remote, callbacks, irp) } {
        Ok(status) => status,
        // SAFETY: accepted above, not completed on the error path.
        Err(status) => unsafe { complete_now(irp, status, 0) },
    }
}

/// `WskControlClient`. IRQL <= DISPATCH_LEVEL. Emulated control codes (Microsoft's "WSK
/// Client Control Operations"; each of these takes no IRP, and one given is completed with
/// the status returned):
///
/// * `WSK_SET_STATIC_EVENT_CALLBACKS`: input a `WSK_EVENT_CALLBACK_CONTROL` naming
///   `NPI_WSK_INTERFACE_ID` and the events; "must do so before it creates any sockets":
///   refused (`STATUS_INVALID_DEVICE_STATE`) once the client created or accepted a socket, or
///   set static callbacks before (see `registration::set_static_events`, `events::record_client`).
/// * `WSK_TRANSPORT_LIST_QUERY`: the `WSK_TRANSPORT` entries of TCP and UDP over IPv4 and IPv6;
///   an output buffer too small for all of them (zero-sized included) gets
///   `STATUS_BUFFER_OVERFLOW` and the size needed in `OutputSizeReturned`.
///
/// Other codes (transport list change notification, security descriptor caching, TDI
/// mappings and behaviour) answer `STATUS_NOT_SUPPORTED`.
unsafe extern "system" fn wsk_control_client(
    client: PWSK_CLIENT,
    control_code: ULONG,
    input_size: SIZE_T,
    input: PVOID,
    output_size: SIZE_T,
    output: PVOID,
    output_returned: *mut SIZE_T,
    irp: *mut IRP,
) -> NTSTATUS {
    irql::check_max("WskControlClient", DISPATCH_LEVEL);
    if !irp.is_null() {
        // SAFETY: the client passes a live IRP.
        if let Err(status) = unsafe { provider::accept(irp) } {
            return status;
        }
    }
    let status = if registration::check_client("WskControlClient", client) {
        match control_code {
            // SAFETY: the client passes buffers valid for the sizes it gives (WskControlClient's
            // contract), read and written during the call only.
            WSK_SET_STATIC_EVENT_CALLBACKS => unsafe { set_static_callbacks(client, input_size, input) },
            // SAFETY: as above.
            WSK_TRANSPORT_LIST_QUERY => unsafe { transport_list(output_size, output, output_returned) },
            _ => STATUS_NOT_SUPPORTED,
        }
    } else {
        STATUS_INVALID_PARAMETER
    };
    if irp.is_null() {
        status
    } else {
        // SAFETY: accepted above.
        unsafe { complete_now(irp, status, 0) }
    }
}

/// `WSK_SET_STATIC_EVENT_CALLBACKS` for `client`.
///
/// # Safety
/// `input` is null or readable for `input_size` bytes; a non-null `NpiId` in it is readable.
unsafe fn set_static_callbacks(client: PWSK_CLIENT, input_size: SIZE_T, input: PVOID) -> NTSTATUS {
    if input.is_null() || input_size < size_of::<WSK_EVENT_CALLBACK_CONTROL>() {
        return STATUS_INVALID_PARAMETER;
    }
    // SAFETY: readable for the structure's size (checked above, caller's contract).
    let request = unsafe { input.cast::<WSK_EVENT_CALLBACK_CONTROL>().read_unaligned() };
    // SAFETY: a non-null NpiId is readable (caller's contract).
    if request.NpiId.is_null() || unsafe { request.NpiId.read_unaligned() } != NPI_WSK_INTERFACE_ID {
        return STATUS_INVALID_PARAMETER;
    }
    const ANY: u32 =
        WSK_EVENT_ACCEPT | WSK_EVENT_RECEIVE_FROM | WSK_EVENT_RECEIVE | WSK_EVENT_DISCONNECT | WSK_EVENT_SEND_BACKLOG;
    let events = request.EventMask;
    if events == 0 || events & !ANY != 0 {
        // No events, WSK_EVENT_DISABLE, or bits no socket category has.
        return STATUS_INVALID_PARAMETER;
    }
    match registration::set_static_events(client as usize, events) {
        Ok(()) => STATUS_SUCCESS,
        Err(status) => status,
    }
}

/// The transports the emulator's provider has: TCP and UDP over IPv4 and IPv6.
fn transports() -> [WSK_TRANSPORT; 4] {
    let entry = |socket_type, protocol, family| WSK_TRANSPORT {
        Version: 0,
        SocketType: socket_type,
        Protocol: protocol,
        AddressFamily: family,
        ProviderId: GUID { Data1: 0, Data2: 0, Data3: 0, Data4: [0; 8] },
    };
    [
        entry(SOCK_STREAM, IPPROTO_TCP, AF_INET),
        entry(SOCK_STREAM, IPPROTO_TCP, AF_INET6),
        entry(SOCK_DGRAM, IPPROTO_UDP, AF_INET),
        entry(SOCK_DGRAM, IPPROTO_UDP, AF_INET6),
    ]
}

/// `WSK_TRANSPORT_LIST_QUERY`.
///
/// # Safety
/// `output` is null or writable for `output_size` bytes; `output_returned` null or writable.
unsafe fn transport_list(output_size: SIZE_T, output: PVOID, output_returned: *mut SIZE_T) -> NTSTATUS {
    let list = transports();
    let needed = size_of_val(&list);
    let fits = !output.is_null() && output_size >= needed;
    let written = if fits { needed } else { 0 };
    if fits {
        // SAFETY: writable for `needed` bytes (checked above, caller's contract); any alignment.
        unsafe { std::ptr::copy_nonoverlapping(list.as_ptr().cast::<u8>(), output.cast::<u8>(), needed) };
    }
    if !output_returned.is_null() {
        // SAFETY: writable (caller's contract).
        unsafe { output_returned.write_unaligned(if fits { written } else { needed }) };
    }
    if fits { STATUS_SUCCESS } else { STATUS_BUFFER_OVERFLOW }
}

unsafe extern "system" fn wsk_get_address_info(
    client: PWSK_CLIENT,
    node: *mut UNICODE_STRING,
    service: *mut UNICODE_STRING,
    namespace: ULONG,
    provider_guid: *mut GUID,
    hints: *mut ADDRINFOEXW,
    result: *mut *mut ADDRINFOEXW,
    _owning_process: PEPROCESS,
    _owning_thread: PETHREAD,
    irp: *mut IRP,
) -> NTSTATUS {
    // SAFETY: the client passes a live IRP.
    if let Err(status) = unsafe { take("WskGetAddressInfo", PASSIVE_LEVEL, irp) } {
        return status;
    }
    if !registration::check_client("WskGetAddressInfo", client) || result.is_null() {
        // SAFETY: accepted above.
        return unsafe { complete_now(irp, STATUS_INVALID_PARAMETER, 0) };
    }
    // SAFETY: the client passes valid strings and hints (or null).
    match unsafe { resolve::query(node, service, namespace, provider_guid, hints) } {
        // SAFETY: accepted above; `result` stays valid until the IRP completes.
        Ok(query) => unsafe { resolve::resolve(irp, query, result) },
        // SAFETY: accepted above.
        Err(status) => unsafe { complete_now(irp, status, 0) },
    }
}

unsafe extern "system" fn wsk_free_address_info(client: PWSK_CLIENT, info: *mut ADDRINFOEXW) {
    irql::check_max("WskFreeAddressInfo", PASSIVE_LEVEL);
    if registration::check_client("WskFreeAddressInfo", client) {
        resolve::free(info);
    }
}

unsafe extern "system" fn wsk_get_name_info(
    client: PWSK_CLIENT,
    address: *mut SOCKADDR,
    address_length: ULONG,
    node: *mut UNICODE_STRING,
    service: *mut UNICODE_STRING,
    flags: ULONG,
    _owning_process: PEPROCESS,
    _owning_thread: PETHREAD,
    irp: *mut IRP,
) -> NTSTATUS {
    // SAFETY: the client passes a live IRP.
    if let Err(status) = unsafe { take("WskGetNameInfo", PASSIVE_LEVEL, irp) } {
        return status;
    }
    if !registration::check_client("WskGetNameInfo", client) {
        // SAFETY: accepted above.
        return unsafe { complete_now(irp, STATUS_INVALID_PARAMETER, 0) };
    }
    // SAFETY: the client passes an address readable for its length and valid strings (or null).
    let status = match unsafe { resolve::name_info(address, address_length, node, service, flags) } {
        Ok(()) => STATUS_SUCCESS,
        Err(status) => status,
    };
    // SAFETY: accepted above.
    unsafe { complete_now(irp, status, 0) }
}
