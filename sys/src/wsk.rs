//! The Winsock Kernel ABI (`wsk.h`): client and provider NPIs, dispatch tables, socket
//! objects, buffers, indications, flags and control codes.
//!
//! Binds `wsk.h` under its C names: the registration and NPI structures, the provider and
//! client dispatch tables and their routine types, `WSK_SOCKET`, `WSK_BUF`,
//! `WSK_DATA_INDICATION`, `WSK_DATAGRAM_INDICATION`, `WSK_EVENT_CALLBACK_CONTROL`, the
//! `WSK_FLAG_*` flags and the `SO_WSK_*`/`WSK_*` control codes.
//!
//! Every routine of a provider dispatch table is called at IRQL <= DISPATCH_LEVEL and takes
//! an IRP that the provider completes (possibly before it returns). Event callbacks of the
//! client dispatch tables are called by the provider at IRQL <= DISPATCH_LEVEL.

use core::ffi::c_void;

use crate::basic::*;
use crate::irp::IRP;
use crate::mdl::MDL;
use crate::sockaddr::{ADDRESS_FAMILY, ADDRINFOEXW, CMSGHDR, SOCKADDR};

/// A socket object. `Dispatch` points to the provider dispatch table of the socket's kind
/// (basic, listen, connection, datagram or stream).
#[repr(C)]
#[derive(Debug)]
pub struct WSK_SOCKET {
    pub Dispatch: *const c_void,
}

/// Opaque client object handed out in [`WSK_PROVIDER_NPI::Client`].
pub type PWSK_CLIENT = *mut c_void;

/// Network programming interface identifier (a GUID).
pub type NPIID = GUID;

/// `NPI_WSK_INTERFACE_ID` {2227E803-8D8B-11D4-ABAD-009027719E09}.
pub static NPI_WSK_INTERFACE_ID: NPIID =
    GUID { Data1: 0x2227_E803, Data2: 0x8D8B, Data3: 0x11D4, Data4: [0xAB, 0xAD, 0x00, 0x90, 0x27, 0x71, 0x9E, 0x09] };

/// `MAKE_WSK_VERSION`.
pub const fn MAKE_WSK_VERSION(major: u8, minor: u8) -> USHORT {
    ((major as USHORT) << 8) | minor as USHORT
}

pub const WSK_NO_WAIT: ULONG = 0;
pub const WSK_INFINITE_WAIT: ULONG = 0xffff_ffff;

/// Socket kinds for `WskSocket`.
pub const WSK_FLAG_BASIC_SOCKET: ULONG = 0x0000_0000;
pub const WSK_FLAG_LISTEN_SOCKET: ULONG = 0x0000_0001;
pub const WSK_FLAG_CONNECTION_SOCKET: ULONG = 0x0000_0002;
pub const WSK_FLAG_DATAGRAM_SOCKET: ULONG = 0x0000_0004;
pub const WSK_FLAG_STREAM_SOCKET: ULONG = 0x0000_0008;

/// Callback and request flags.
pub const WSK_FLAG_AT_DISPATCH_LEVEL: ULONG = 0x0000_0008;
pub const WSK_FLAG_RELEASE_ASAP: ULONG = 0x0000_0002;
pub const WSK_FLAG_ENTIRE_MESSAGE: ULONG = 0x0000_0004;
pub const WSK_FLAG_ABORTIVE: ULONG = 0x0000_0001;
pub const WSK_FLAG_OOB: ULONG = 0x0000_0001;
pub const WSK_FLAG_NODELAY: ULONG = 0x0000_0002;
pub const WSK_FLAG_WAITALL: ULONG = 0x0000_0002;
pub const WSK_FLAG_DRAIN: ULONG = 0x0000_0004;

/// WSK-specific socket options (level `SOL_SOCKET`).
pub const WSK_SO_BASE: ULONG = 0x4000;
pub const SO_WSK_SECURITY: ULONG = WSK_SO_BASE + 1;
pub const SO_WSK_EVENT_CALLBACK: ULONG = WSK_SO_BASE + 2;

/// Client control codes of `WskControlClient` (wsk.h).
pub const WSK_TRANSPORT_LIST_QUERY: ULONG = 2;
pub const WSK_TRANSPORT_LIST_CHANGE: ULONG = 3;
pub const WSK_CACHE_SD: ULONG = 4;
pub const WSK_RELEASE_SD: ULONG = 5;
pub const WSK_TDI_DEVICENAME_MAPPING: ULONG = 6;
pub const WSK_SET_STATIC_EVENT_CALLBACKS: ULONG = 7;
pub const WSK_TDI_BEHAVIOR: ULONG = 8;

/// Event masks for `SO_WSK_EVENT_CALLBACK`.
pub const WSK_EVENT_RECEIVE_FROM: ULONG = 0x0000_0100;
pub const WSK_EVENT_ACCEPT: ULONG = 0x0000_0200;
pub const WSK_EVENT_SEND_BACKLOG: ULONG = 0x0000_0010;
pub const WSK_EVENT_RECEIVE: ULONG = 0x0000_0040;
pub const WSK_EVENT_DISCONNECT: ULONG = 0x0000_0080;
pub const WSK_EVENT_DISABLE: ULONG = 0x8000_0000;

/// WSK socket IOCTLs: `_WSAIOW/_WSAIOR/_WSAIORW(IOC_WSK, n)` with `IOC_WSK = 0x0F000000`.
const IOC_WSK: ULONG = 0x0F00_0000;
const IOC_VOID: ULONG = 0x2000_0000;
const IOC_OUT: ULONG = 0x4000_0000;
const IOC_IN: ULONG = 0x8000_0000;
pub const SIO_WSK_SET_REMOTE_ADDRESS: ULONG = IOC_IN | IOC_WSK | 1;
pub const SIO_WSK_REGISTER_EXTENSION: ULONG = IOC_IN | IOC_OUT | IOC_WSK | 2;
pub const SIO_WSK_QUERY_IDEAL_SEND_BACKLOG: ULONG = IOC_OUT | IOC_WSK | 3;
pub const SIO_WSK_QUERY_RECEIVE_BACKLOG: ULONG = IOC_OUT | IOC_WSK | 4;
pub const SIO_WSK_QUERY_INSPECT_ID: ULONG = IOC_OUT | IOC_WSK | 5;
pub const SIO_WSK_SET_SENDTO_ADDRESS: ULONG = IOC_IN | IOC_WSK | 6;
pub const SIO_WSK_SET_TCP_SILENT_MODE: ULONG = IOC_VOID | IOC_WSK | 7;

/// `WSK_CONTROL_SOCKET_TYPE`.
pub type WSK_CONTROL_SOCKET_TYPE = i32;
pub const WskSetOption: WSK_CONTROL_SOCKET_TYPE = 0;
pub const WskGetOption: WSK_CONTROL_SOCKET_TYPE = 1;
pub const WskIoctl: WSK_CONTROL_SOCKET_TYPE = 2;

/// `WSK_INSPECT_ACTION`: what a conditional-accept listener's `WskInspectEvent` decides for
/// an incoming connection request (and what `WskInspectComplete` decides for a pended one,
/// which may only be `WskInspectAccept` or `WskInspectReject`).
pub type WSK_INSPECT_ACTION = i32;
/// The connection request is refused: no socket is ever created for it.
pub const WskInspectReject: WSK_INSPECT_ACTION = 0;
/// The connection request proceeds to `WskAccept` / `WskAcceptEvent`.
pub const WskInspectAccept: WSK_INSPECT_ACTION = 1;
/// Undecided: the client completes it later with `WskInspectComplete` (after copying the
/// `WSK_INSPECT_ID`, which is valid only during the callback).
pub const WskInspectPend: WSK_INSPECT_ACTION = 2;
/// One past the last action: not a valid action.
pub const WskInspectMax: WSK_INSPECT_ACTION = 3;

/// A buffer: `Length` bytes starting `Offset` bytes into the first MDL of the chain.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct WSK_BUF {
    pub Mdl: *mut MDL,
    pub Offset: ULONG,
    pub Length: SIZE_T,
}

/// A list of buffers for `WskSendMessages`.
#[repr(C)]
#[derive(Debug)]
pub struct WSK_BUF_LIST {
    pub Next: *mut WSK_BUF_LIST,
    pub Buffer: WSK_BUF,
}

/// Received data indicated by `WskReceiveEvent`.
#[repr(C)]
#[derive(Debug)]
pub struct WSK_DATA_INDICATION {
    pub Next: *mut WSK_DATA_INDICATION,
    pub Buffer: WSK_BUF,
}

/// A datagram indicated by `WskReceiveFromEvent`.
#[repr(C)]
#[derive(Debug)]
pub struct WSK_DATAGRAM_INDICATION {
    pub Next: *mut WSK_DATAGRAM_INDICATION,
    pub Buffer: WSK_BUF,
    pub ControlInfo: *mut CMSGHDR,
    pub ControlInfoLength: ULONG,
    pub RemoteAddress: *mut SOCKADDR,
}

/// Identifies a connection request on a conditional-accept listening socket.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct WSK_INSPECT_ID {
    pub Key: ULONG_PTR,
    pub SerialNumber: ULONG,
}

/// Input of `SO_WSK_EVENT_CALLBACK`.
#[repr(C)]
#[derive(Debug)]
pub struct WSK_EVENT_CALLBACK_CONTROL {
    pub NpiId: *const NPIID,
    pub EventMask: ULONG,
}

/// One entry of the `WSK_TRANSPORT_LIST_QUERY` output: a transport sockets can be created on.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WSK_TRANSPORT {
    pub Version: USHORT,
    pub SocketType: USHORT,
    pub Protocol: ULONG,
    pub AddressFamily: ADDRESS_FAMILY,
    pub ProviderId: GUID,
}

// ---- client callbacks -------------------------------------------------------------------

pub type PFN_WSK_CLIENT_EVENT = unsafe extern "system" fn(
    ClientContext: PVOID,
    EventType: ULONG,
    Information: PVOID,
    InformationLength: SIZE_T,
) -> NTSTATUS;
pub type PFN_WSK_RECEIVE_FROM_EVENT = unsafe extern "system" fn(
    SocketContext: PVOID,
    Flags: ULONG,
    DataIndication: *mut WSK_DATAGRAM_INDICATION,
) -> NTSTATUS;
pub type PFN_WSK_ACCEPT_EVENT = unsafe extern "system" fn(
    SocketContext: PVOID,
    Flags: ULONG,
    LocalAddress: *mut SOCKADDR,
    RemoteAddress: *mut SOCKADDR,
    AcceptSocket: *mut WSK_SOCKET,
    AcceptSocketContext: *mut PVOID,
    AcceptSocketDispatch: *mut *const WSK_CLIENT_CONNECTION_DISPATCH,
) -> NTSTATUS;
pub type PFN_WSK_INSPECT_EVENT = unsafe extern "system" fn(
    SocketContext: PVOID,
    LocalAddress: *mut SOCKADDR,
    RemoteAddress: *mut SOCKADDR,
    InspectID: *mut WSK_INSPECT_ID,
) -> WSK_INSPECT_ACTION;
pub type PFN_WSK_ABORT_EVENT =
    unsafe extern "system" fn(SocketContext: PVOID, InspectID: *mut WSK_INSPECT_ID) -> NTSTATUS;
pub type PFN_WSK_SEND_BACKLOG_EVENT =
    unsafe extern "system" fn(SocketContext: PVOID, IdealBacklogSize: SIZE_T) -> NTSTATUS;
pub type PFN_WSK_RECEIVE_EVENT = unsafe extern "system" fn(
    SocketContext: PVOID,
    Flags: ULONG,
    DataIndication: *mut WSK_DATA_INDICATION,
    BytesIndicated: SIZE_T,
    BytesAccepted: *mut SIZE_T,
) -> NTSTATUS;
pub type PFN_WSK_DISCONNECT_EVENT = unsafe extern "system" fn(SocketContext: PVOID, Flags: ULONG) -> NTSTATUS;

/// Client-level callback table passed to `WskRegister`.
#[repr(C)]
#[derive(Debug)]
pub struct WSK_CLIENT_DISPATCH {
    pub Version: USHORT,
    pub Reserved: USHORT,
    pub WskClientEvent: Option<PFN_WSK_CLIENT_EVENT>,
}

/// Event callbacks of a listening socket.
#[repr(C)]
#[derive(Debug)]
pub struct WSK_CLIENT_LISTEN_DISPATCH {
    pub WskAcceptEvent: Option<PFN_WSK_ACCEPT_EVENT>,
    pub WskInspectEvent: Option<PFN_WSK_INSPECT_EVENT>,
    pub WskAbortEvent: Option<PFN_WSK_ABORT_EVENT>,
}

/// Event callbacks of a datagram socket.
#[repr(C)]
#[derive(Debug)]
pub struct WSK_CLIENT_DATAGRAM_DISPATCH {
    pub WskReceiveFromEvent: Option<PFN_WSK_RECEIVE_FROM_EVENT>,
}

/// Event callbacks of a connection-oriented socket.
#[repr(C)]
#[derive(Debug)]
pub struct WSK_CLIENT_CONNECTION_DISPATCH {
    pub WskReceiveEvent: Option<PFN_WSK_RECEIVE_EVENT>,
    pub WskDisconnectEvent: Option<PFN_WSK_DISCONNECT_EVENT>,
    pub WskSendBacklogEvent: Option<PFN_WSK_SEND_BACKLOG_EVENT>,
}

/// Event callbacks of a stream socket (Windows 10 1703+).
#[repr(C)]
#[derive(Debug)]
pub struct WSK_CLIENT_STREAM_DISPATCH {
    pub Listen: *const WSK_CLIENT_LISTEN_DISPATCH,
    pub Connect: *const WSK_CLIENT_CONNECTION_DISPATCH,
}

/// The client NPI passed to `WskRegister`.
#[repr(C)]
#[derive(Debug)]
pub struct WSK_CLIENT_NPI {
    pub ClientContext: PVOID,
    pub Dispatch: *const WSK_CLIENT_DISPATCH,
}

/// Registration block; owned by WSK between `WskRegister` and `WskDeregister`, must stay in
/// place (non-paged) for that time.
#[repr(C)]
#[derive(Debug)]
pub struct WSK_REGISTRATION {
    pub ReservedRegistrationState: ULONGLONG,
    pub ReservedRegistrationContext: PVOID,
    pub ReservedRegistrationLock: KSPIN_LOCK,
}

impl WSK_REGISTRATION {
    /// An all-zero block, ready for `WskRegister`.
    pub const fn zeroed() -> Self {
        Self {
            ReservedRegistrationState: 0,
            ReservedRegistrationContext: core::ptr::null_mut(),
            ReservedRegistrationLock: 0,
        }
    }
}

// ---- provider routines ------------------------------------------------------------------

pub type PFN_WSK_SOCKET = unsafe extern "system" fn(
    Client: PWSK_CLIENT,
    AddressFamily: ADDRESS_FAMILY,
    SocketType: USHORT,
    Protocol: ULONG,
    Flags: ULONG,
    SocketContext: PVOID,
    Dispatch: *const c_void,
    OwningProcess: PEPROCESS,
    OwningThread: PETHREAD,
    SecurityDescriptor: PSECURITY_DESCRIPTOR,
    Irp: *mut IRP,
) -> NTSTATUS;
pub type PFN_WSK_SOCKET_CONNECT = unsafe extern "system" fn(
    Client: PWSK_CLIENT,
    SocketType: USHORT,
    Protocol: ULONG,
    LocalAddress: *mut SOCKADDR,
    RemoteAddress: *mut SOCKADDR,
    Flags: ULONG,
    SocketContext: PVOID,
    Dispatch: *const WSK_CLIENT_CONNECTION_DISPATCH,
    OwningProcess: PEPROCESS,
    OwningThread: PETHREAD,
    SecurityDescriptor: PSECURITY_DESCRIPTOR,
    Irp: *mut IRP,
) -> NTSTATUS;
pub type PFN_WSK_CONTROL_CLIENT = unsafe extern "system" fn(
    Client: PWSK_CLIENT,
    ControlCode: ULONG,
    InputSize: SIZE_T,
    InputBuffer: PVOID,
    OutputSize: SIZE_T,
    OutputBuffer: PVOID,
    OutputSizeReturned: *mut SIZE_T,
    Irp: *mut IRP,
) -> NTSTATUS;
pub type PFN_WSK_GET_ADDRESS_INFO = unsafe extern "system" fn(
    Client: PWSK_CLIENT,
    NodeName: *mut UNICODE_STRING,
    ServiceName: *mut UNICODE_STRING,
    NameSpace: ULONG,
    Provider: *mut GUID,
    Hints: *mut ADDRINFOEXW,
    Result: *mut *mut ADDRINFOEXW,
    OwningProcess: PEPROCESS,
    OwningThread: PETHREAD,
    Irp: *mut IRP,
) -> NTSTATUS;
pub type PFN_WSK_FREE_ADDRESS_INFO = unsafe extern "system" fn(Client: PWSK_CLIENT, AddrInfo: *mut ADDRINFOEXW);
pub type PFN_WSK_GET_NAME_INFO = unsafe extern "system" fn(
    Client: PWSK_CLIENT,
    SockAddr: *mut SOCKADDR,
    SockAddrLength: ULONG,
    NodeName: *mut UNICODE_STRING,
    ServiceName: *mut UNICODE_STRING,
    Flags: ULONG,
    OwningProcess: PEPROCESS,
    OwningThread: PETHREAD,
    Irp: *mut IRP,
) -> NTSTATUS;
pub type PFN_WSK_CONTROL_SOCKET = unsafe extern "system" fn(
    Socket: *mut WSK_SOCKET,
    RequestType: WSK_CONTROL_SOCKET_TYPE,
    ControlCode: ULONG,
    Level: ULONG,
    InputSize: SIZE_T,
    InputBuffer: PVOID,
    OutputSize: SIZE_T,
    OutputBuffer: PVOID,
    OutputSizeReturned: *mut SIZE_T,
    Irp: *mut IRP,
) -> NTSTATUS;
pub type PFN_WSK_CLOSE_SOCKET = unsafe extern "system" fn(Socket: *mut WSK_SOCKET, Irp: *mut IRP) -> NTSTATUS;
pub type PFN_WSK_BIND = unsafe extern "system" fn(
    Socket: *mut WSK_SOCKET,
    LocalAddress: *mut SOCKADDR,
    Flags: ULONG,
    Irp: *mut IRP,
) -> NTSTATUS;
pub type PFN_WSK_ACCEPT = unsafe extern "system" fn(
    ListenSocket: *mut WSK_SOCKET,
    Flags: ULONG,
    AcceptSocketContext: PVOID,
    AcceptSocketDispatch: *const WSK_CLIENT_CONNECTION_DISPATCH,
    LocalAddress: *mut SOCKADDR,
    RemoteAddress: *mut SOCKADDR,
    Irp: *mut IRP,
) -> NTSTATUS;
pub type PFN_WSK_INSPECT_COMPLETE = unsafe extern "system" fn(
    ListenSocket: *mut WSK_SOCKET,
    InspectID: *mut WSK_INSPECT_ID,
    Action: WSK_INSPECT_ACTION,
    Irp: *mut IRP,
) -> NTSTATUS;
pub type PFN_WSK_CONNECT = unsafe extern "system" fn(
    Socket: *mut WSK_SOCKET,
    RemoteAddress: *mut SOCKADDR,
    Flags: ULONG,
    Irp: *mut IRP,
) -> NTSTATUS;
pub type PFN_WSK_CONNECT_EX = unsafe extern "system" fn(
    Socket: *mut WSK_SOCKET,
    RemoteAddress: *mut SOCKADDR,
    Buffer: *mut WSK_BUF,
    Flags: ULONG,
    Irp: *mut IRP,
) -> NTSTATUS;
pub type PFN_WSK_LISTEN = unsafe extern "system" fn(Socket: *mut WSK_SOCKET, Irp: *mut IRP) -> NTSTATUS;
pub type PFN_WSK_SEND =
    unsafe extern "system" fn(Socket: *mut WSK_SOCKET, Buffer: *mut WSK_BUF, Flags: ULONG, Irp: *mut IRP) -> NTSTATUS;
pub type PFN_WSK_RECEIVE =
    unsafe extern "system" fn(Socket: *mut WSK_SOCKET, Buffer: *mut WSK_BUF, Flags: ULONG, Irp: *mut IRP) -> NTSTATUS;
pub type PFN_WSK_DISCONNECT =
    unsafe extern "system" fn(Socket: *mut WSK_SOCKET, Buffer: *mut WSK_BUF, Flags: ULONG, Irp: *mut IRP) -> NTSTATUS;
pub type PFN_WSK_RELEASE_DATA_INDICATION_LIST =
    unsafe extern "system" fn(Socket: *mut WSK_SOCKET, DataIndication: *mut WSK_DATA_INDICATION) -> NTSTATUS;
pub type PFN_WSK_GET_LOCAL_ADDRESS =
    unsafe extern "system" fn(Socket: *mut WSK_SOCKET, LocalAddress: *mut SOCKADDR, Irp: *mut IRP) -> NTSTATUS;
pub type PFN_WSK_GET_REMOTE_ADDRESS =
    unsafe extern "system" fn(Socket: *mut WSK_SOCKET, RemoteAddress: *mut SOCKADDR, Irp: *mut IRP) -> NTSTATUS;
pub type PFN_WSK_SEND_TO = unsafe extern "system" fn(
    Socket: *mut WSK_SOCKET,
    Buffer: *mut WSK_BUF,
    Flags: ULONG,
    RemoteAddress: *mut SOCKADDR,
    ControlInfoLength: ULONG,
    ControlInfo: *mut CMSGHDR,
    Irp: *mut IRP,
) -> NTSTATUS;
pub type PFN_WSK_SEND_MESSAGES = unsafe extern "system" fn(
    Socket: *mut WSK_SOCKET,
    BufferList: *mut WSK_BUF_LIST,
    Flags: ULONG,
    RemoteAddress: *mut SOCKADDR,
    ControlInfoLength: ULONG,
    ControlInfo: *mut CMSGHDR,
    Irp: *mut IRP,
) -> NTSTATUS;
pub type PFN_WSK_RECEIVE_FROM = unsafe extern "system" fn(
    Socket: *mut WSK_SOCKET,
    Buffer: *mut WSK_BUF,
    Flags: ULONG,
    RemoteAddress: *mut SOCKADDR,
    ControlLength: *mut ULONG,
    ControlInfo: *mut CMSGHDR,
    ControlFlags: *mut ULONG,
    Irp: *mut IRP,
) -> NTSTATUS;
pub type PFN_WSK_RELEASE_DATAGRAM_INDICATION_LIST =
    unsafe extern "system" fn(Socket: *mut WSK_SOCKET, DatagramIndication: *mut WSK_DATAGRAM_INDICATION) -> NTSTATUS;

/// Provider-level routines, from `WskCaptureProviderNPI`.
#[repr(C)]
#[derive(Debug)]
pub struct WSK_PROVIDER_DISPATCH {
    pub Version: USHORT,
    pub Reserved: USHORT,
    pub WskSocket: Option<PFN_WSK_SOCKET>,
    pub WskSocketConnect: Option<PFN_WSK_SOCKET_CONNECT>,
    pub WskControlClient: Option<PFN_WSK_CONTROL_CLIENT>,
    pub WskGetAddressInfo: Option<PFN_WSK_GET_ADDRESS_INFO>,
    pub WskFreeAddressInfo: Option<PFN_WSK_FREE_ADDRESS_INFO>,
    pub WskGetNameInfo: Option<PFN_WSK_GET_NAME_INFO>,
}

/// The provider NPI filled by `WskCaptureProviderNPI`.
#[repr(C)]
#[derive(Debug)]
pub struct WSK_PROVIDER_NPI {
    pub Client: PWSK_CLIENT,
    pub Dispatch: *const WSK_PROVIDER_DISPATCH,
}

impl WSK_PROVIDER_NPI {
    /// An empty NPI, to be filled by `WskCaptureProviderNPI`.
    pub const fn zeroed() -> Self {
        Self { Client: core::ptr::null_mut(), Dispatch: core::ptr::null() }
    }
}

/// Routines every socket supports.
#[repr(C)]
#[derive(Debug)]
pub struct WSK_PROVIDER_BASIC_DISPATCH {
    pub WskControlSocket: Option<PFN_WSK_CONTROL_SOCKET>,
    pub WskCloseSocket: Option<PFN_WSK_CLOSE_SOCKET>,
}

/// Routines of a listening socket.
#[repr(C)]
#[derive(Debug)]
pub struct WSK_PROVIDER_LISTEN_DISPATCH {
    pub Basic: WSK_PROVIDER_BASIC_DISPATCH,
    pub WskBind: Option<PFN_WSK_BIND>,
    pub WskAccept: Option<PFN_WSK_ACCEPT>,
    pub WskInspectComplete: Option<PFN_WSK_INSPECT_COMPLETE>,
    pub WskGetLocalAddress: Option<PFN_WSK_GET_LOCAL_ADDRESS>,
}

/// Routines of a datagram socket.
#[repr(C)]
#[derive(Debug)]
pub struct WSK_PROVIDER_DATAGRAM_DISPATCH {
    pub Basic: WSK_PROVIDER_BASIC_DISPATCH,
    pub WskBind: Option<PFN_WSK_BIND>,
    pub WskSendTo: Option<PFN_WSK_SEND_TO>,
    pub WskReceiveFrom: Option<PFN_WSK_RECEIVE_FROM>,
    pub WskRelease: Option<PFN_WSK_RELEASE_DATAGRAM_INDICATION_LIST>,
    pub WskGetLocalAddress: Option<PFN_WSK_GET_LOCAL_ADDRESS>,
    pub WskSendMessages: Option<PFN_WSK_SEND_MESSAGES>,
}

/// Routines of a connection-oriented socket. `WskSendEx` / `WskReceiveEx` are reserved for
/// the system.
#[repr(C)]
#[derive(Debug)]
pub struct WSK_PROVIDER_CONNECTION_DISPATCH {
    pub Basic: WSK_PROVIDER_BASIC_DISPATCH,
    pub WskBind: Option<PFN_WSK_BIND>,
    pub WskConnect: Option<PFN_WSK_CONNECT>,
    pub WskGetLocalAddress: Option<PFN_WSK_GET_LOCAL_ADDRESS>,
    pub WskGetRemoteAddress: Option<PFN_WSK_GET_REMOTE_ADDRESS>,
    pub WskSend: Option<PFN_WSK_SEND>,
    pub WskReceive: Option<PFN_WSK_RECEIVE>,
    pub WskDisconnect: Option<PFN_WSK_DISCONNECT>,
    pub WskRelease: Option<PFN_WSK_RELEASE_DATA_INDICATION_LIST>,
    pub WskConnectEx: Option<PFN_WSK_CONNECT_EX>,
    pub WskSendEx: PVOID,
    pub WskReceiveEx: PVOID,
}

/// Routines of a stream socket (Windows 10 1703+). `WskSendEx` / `WskReceiveEx` are reserved
/// for the system.
#[repr(C)]
#[derive(Debug)]
pub struct WSK_PROVIDER_STREAM_DISPATCH {
    pub Basic: WSK_PROVIDER_BASIC_DISPATCH,
    pub WskBind: Option<PFN_WSK_BIND>,
    pub WskAccept: Option<PFN_WSK_ACCEPT>,
    pub WskConnect: Option<PFN_WSK_CONNECT>,
    pub WskListen: Option<PFN_WSK_LISTEN>,
    pub WskSend: Option<PFN_WSK_SEND>,
    pub WskReceive: Option<PFN_WSK_RECEIVE>,
    pub WskDisconnect: Option<PFN_WSK_DISCONNECT>,
    pub WskRelease: Option<PFN_WSK_RELEASE_DATA_INDICATION_LIST>,
    pub WskGetLocalAddress: Option<PFN_WSK_GET_LOCAL_ADDRESS>,
    pub WskGetRemoteAddress: Option<PFN_WSK_GET_REMOTE_ADDRESS>,
    pub WskConnectEx: Option<PFN_WSK_CONNECT_EX>,
    pub WskSendEx: PVOID,
    pub WskReceiveEx: PVOID,
}
