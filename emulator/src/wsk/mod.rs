//! The WSK provider (NETIO): registration, and sockets over real host sockets.
//!
//! Driver code calls the provider exactly as it calls Windows' WSK: through the
//! `WSK_PROVIDER_DISPATCH` that `WskCaptureProviderNPI` hands out and the dispatch table each
//! `WSK_SOCKET` points to, with one IRP per call. Behind each WSK socket is a nonblocking host
//! socket (`socket2`) registered with one `mio` poller; one I/O thread (`wsk-emu-net`)
//! serves every socket of the process. Connections to addresses of `198.18.0.0/15` stay in
//! memory instead, with no host socket and no I/O thread (see `loopback`).
//!
//! # How a call runs
//!
//! ```text
//!   WskXxx(socket, ..., irp)
//!     provider::accept(irp)         step to the provider's stack location (none left: reported)
//!     socket::enter                 look the socket up, count the call (contract checks)
//!     host attempt, nonblocking --- done ---> complete the IRP now, return its status
//!          | would block
//!          v
//!     IoMarkIrpPending, cancel routine set, queued on the socket     return STATUS_PENDING
//!          ...  host socket ready (epoll)  ->  I/O thread: claim the IRP (clear its cancel
//!               routine), attempt again, complete at DISPATCH_LEVEL  (or re-queue)
//!          ...  IoCancelIrp  ->  cancel routine: dequeue, complete STATUS_CANCELLED
//! ```
//!
//! Whoever clears a queued IRP's cancel routine owns the IRP and alone completes it (see
//! `queue`); the I/O thread copies data straight between the client's buffers (the memory its
//! MDLs describe) and the host socket, and never while it does not own the IRP. Operations of
//! one queue (sends, receives, accepts) are served in order. A routine returns the status it
//! completed the IRP with, or `STATUS_PENDING`; every failure completes the IRP (WSK style).
//!
//! # What is emulated
//!
//! | Routine | Fidelity |
//! | --- | --- |
//! | `WskSocket` | Listen, connection, datagram and basic sockets; `AF_INET` / `AF_INET6` (23); `SOCK_STREAM`+TCP, `SOCK_DGRAM`+UDP (protocol 0 means the type's default). Completes at once; the socket is in `Information`. Stream sockets (`WSK_FLAG_STREAM_SOCKET`): `STATUS_NOT_SUPPORTED`. The socket context and the client dispatch table of the socket's kind are recorded for event callbacks (a null table: no event can be enabled); process, thread and security descriptor are ignored. IPv6 sockets start with `IPV6_V6ONLY` on, as on Windows. |
//! | `WskSocketConnect` | Create, bind, connect in one call; the addresses are read during the call only; context and connection dispatch table recorded as for `WskSocket`. On failure or cancel no socket is left. |
//! | `WskBind` | Once per socket (`STATUS_INVALID_DEVICE_STATE` after). A listen socket listens as soon as it is bound (backlog 4096), as WSK and Wine do. |
//! | `WskAccept` | Pends until a connection arrives; `Information` is the new connection socket; `LocalAddress` / `RemoteAddress` written if non-null. The accept socket context and dispatch table are recorded for the new socket. |
//! | `WskConnect`, `WskConnectEx` | Needs a bound socket (`STATUS_INVALID_DEVICE_STATE` otherwise, as WSK). Nonblocking host connect, pending until established. The unspecified address and port 0 are refused (`STATUS_INVALID_ADDRESS_COMPONENT`) as Windows does. `WskConnectEx` with data to send: `STATUS_NOT_SUPPORTED`. |
//! | `WskSend` | Completes when every byte is handed to the host socket (under the adversary's `random_shapes`, possibly after part of them); `Information` = bytes. The pieces of an MDL chain go in one vectored host write (a write per piece would meet Nagle's algorithm between them, which a stack sending the chain as one stream does not). Zero bytes complete at once with 0. `WSK_FLAG_OOB`: not supported; `WSK_FLAG_NODELAY` ignored. |
//! | `WskReceive` | Completes as soon as at least one byte is there (`Information` = bytes), with 0 on the peer's graceful disconnect; `WSK_FLAG_WAITALL` waits for the whole buffer (or the peer's FIN). A zero-length buffer completes at once with 0 (and, like every receive, resumes receive indications suppressed after refused data, as Microsoft documents). `WSK_FLAG_OOB` / `WSK_FLAG_DRAIN`: not supported. |
//! | `WskDisconnect` | Graceful: after the queued sends (and the optional buffer), `shutdown(SHUT_WR)`. `WSK_FLAG_ABORTIVE`: `SO_LINGER` 0 and close of the host socket (the peer gets a reset); pending sends and receives complete with `STATUS_CONNECTION_ABORTED`, later ones fail the same way. |
//! | `WskSendTo`, `WskReceiveFrom` | One datagram per call on a bound socket; the sender's address is written to `RemoteAddress`; a datagram larger than the buffer is truncated and `MSG_TRUNC` (0x100) is set in `ControlFlags`. `*ControlLength` at the call is the size of the `ControlInfo` buffer (a null `ControlLength`: no control information, `ControlInfo` ignored, as Microsoft documents); at completion `ControlLength` holds the bytes of control information written in Windows' `CMSGHDR` layout, 0 for none. The host's control messages with a Windows form are passed on: `IN_PKTINFO` when `IP_PKTINFO` is on, `IN6_PKTINFO` when `IPV6_PKTINFO` is on; whole messages that do not fit are left out and `MSG_CTRUNC` (0x200) set. A datagram the client refused in its receive callback and later served to a `WskReceiveFrom` carries the control information it was indicated with. A `WskSendTo` without `RemoteAddress` goes to the fixed remote address (`SIO_WSK_SET_REMOTE_ADDRESS`); `WskSendTo` with control data, and a fixed destination (`SIO_WSK_SET_SENDTO_ADDRESS`), are not supported. |
//! | `WskGetLocalAddress`, `WskGetRemoteAddress` | From the host socket. |
//! | `WskControlSocket` | With or without an IRP. `WskSetOption` / `WskGetOption` of `SO_REUSEADDR`, `SO_EXCLUSIVEADDRUSE`, `SO_KEEPALIVE`, `SO_SNDBUF`, `SO_RCVBUF`, `SO_LINGER` (`LINGER`, recorded), `SO_BROADCAST`, `SO_CONDITIONAL_ACCEPT` (listening sockets, before bind; see `inspect`) (`SOL_SOCKET`), `TCP_NODELAY` (`IPPROTO_TCP`), `IP_TTL`, `IP_MULTICAST_TTL` (`IPPROTO_IP`), `IPV6_V6ONLY`, `IPV6_UNICAST_HOPS`, `IPV6_MULTICAST_HOPS` (`IPPROTO_IPV6`), and on datagram sockets `IP_PKTINFO` (IPv4) / `IPV6_PKTINFO` (IPv6); `WskSetOption` only of `IP_ADD_MEMBERSHIP` / `IP_DROP_MEMBERSHIP` (`IP_MREQ`) and `IPV6_ADD_MEMBERSHIP` / `IPV6_DROP_MEMBERSHIP` (`IPV6_MREQ`); which sockets take which, and the statuses of short buffers and unknown options, in `options`. `WskSetOption(SO_WSK_EVENT_CALLBACK)` enables and disables event callbacks (see below). `WskIoctl(SIO_WSK_SET_REMOTE_ADDRESS)` sets or clears a bound datagram socket's fixed remote address (the host socket is connected). `WskGetOption(SO_WSK_EVENT_CALLBACK)`, other options and other IOCTLs: `STATUS_NOT_SUPPORTED`. |
//! | `WskCloseSocket` | No event callback starts once it is called. Cancels every pending IRP of the socket (`STATUS_CANCELLED`) and completes the close IRP only after they completed and no event callback of the socket is in progress; a connection not disconnected in both directions (our FIN sent and the peer's seen) is reset. Pending connects, accepts and receives resolve at once. After the close IRP completes nothing touches the client's memory. |
//! | `WskRelease` (connection and datagram tables) | Gives back an indication chain the client retained (`STATUS_PENDING` from its callback) on that socket (or the chain a callback is handling, see below); anything else is `WSK_INDICATION_RELEASED_TWICE` and `STATUS_INVALID_PARAMETER`. IRQL <= DISPATCH_LEVEL, also from inside a callback. |
//! | `WskInspectComplete` | On a listening socket with `SO_CONDITIONAL_ACCEPT` on: completes a pended inspection inside the call with `WskInspectAccept` (the connection goes on to `WskAccept` / `WskAcceptEvent`) or `WskInspectReject` (it is reset); see `inspect` for the statuses and the verifier's rules. |
//! | `WskSendMessages` | Each buffer of the `WSK_BUF_LIST` is one datagram to the one address (the rules of `WskSendTo`'s address), sent in order, resuming where the host would block; `Information` is the bytes of all of them; the first failure completes the IRP with its status. Control data: `STATUS_NOT_SUPPORTED`. The `no-send-messages` quirk gives datagram sockets a table without it (null). |
//! | `WskControlClient` | `WSK_SET_STATIC_EVENT_CALLBACKS` (a `WSK_EVENT_CALLBACK_CONTROL` naming `NPI_WSK_INTERFACE_ID`): the events of each socket's kind that the client's dispatch table has a callback for are on from the socket's creation (or acceptance, by `WskAccept` or `WskAcceptEvent`), and `SO_WSK_EVENT_CALLBACK` enabling or disabling one of them is refused (`STATUS_INVALID_DEVICE_STATE`); refused once a socket of the client was created, or a second time (`STATUS_INVALID_DEVICE_STATE`). `WSK_TRANSPORT_LIST_QUERY`: TCP and UDP over IPv4 and IPv6 as `WSK_TRANSPORT` entries, `STATUS_BUFFER_OVERFLOW` and the size needed for a buffer too small. Other codes: `STATUS_NOT_SUPPORTED`. An IRP given is completed with the status returned. |
//! | `WskGetAddressInfo`, `WskFreeAddressInfo` | Numeric hosts and a missing host at once, names with the host resolver on a helper thread (pending and cancelable meanwhile, not cancelable with the `wine-uncancelable-irps` quirk; after the delay `set_resolution_delay` sets, if any); numeric or well-known service names; hints' family, socket type, protocol, `AI_PASSIVE`, `AI_NUMERICHOST`, `AI_CANONNAME` (the name as given). The `ADDRINFOEXW` chain is allocated by the provider and must be freed with `WskFreeAddressInfo`. IRQL PASSIVE_LEVEL. |
//! | `WskGetNameInfo` | Completes inside the call. The host's name is the first name the hosts file (`/etc/hosts`) gives the address; its numeric form with `NI_NUMERICHOST` or when it has none (`STATUS_NOT_FOUND` then with `NI_NAMEREQD`); `NI_NOFQDN` keeps the part before the first dot. The service is the port's well-known name (the table `WskGetAddressInfo` uses), its number with `NI_NUMERICSERV` or when it has none; `NI_DGRAM` is accepted and changes nothing. Each name is written with its terminating NUL and `Length` set without it; a buffer too small is `STATUS_BUFFER_TOO_SMALL`. `STATUS_INVALID_PARAMETER`: no address, a length shorter than its family's or longer than `SOCKADDR_STORAGE`, an unknown family, both strings null, a null buffer or one without room for a NUL, unknown flags. IRQL PASSIVE_LEVEL. |
//!
//! Host errors map to NTSTATUS: `ECONNREFUSED` -> `STATUS_CONNECTION_REFUSED`, `EADDRINUSE`
//! -> `STATUS_ADDRESS_ALREADY_EXISTS`, `ECONNRESET` / `EPIPE` -> `STATUS_CONNECTION_RESET`
//! (sticky: later sends and receives fail the same way), `ECONNABORTED` ->
//! `STATUS_CONNECTION_ABORTED`, `EADDRNOTAVAIL` -> `STATUS_INVALID_ADDRESS_COMPONENT`,
//! `ENETUNREACH` / `EHOSTUNREACH` -> `STATUS_NETWORK_UNREACHABLE` / `STATUS_HOST_UNREACHABLE`,
//! `ETIMEDOUT` -> `STATUS_IO_TIMEOUT`, `ENOTCONN` -> `STATUS_INVALID_CONNECTION`, others
//! `STATUS_UNSUCCESSFUL` (see `status`). Bad arguments complete with
//! `STATUS_INVALID_PARAMETER` (null pointers, bad flags, family or type) or
//! `STATUS_INVALID_ADDRESS` (unknown address family, or not the socket's).
//!
//! # Event callbacks
//!
//! `WskControlSocket(WskSetOption, SO_WSK_EVENT_CALLBACK, SOL_SOCKET)` with a
//! `WSK_EVENT_CALLBACK_CONTROL` (`NpiId` = `NPI_WSK_INTERFACE_ID`) enables any combination of
//! the socket kind's events (listen: `WSK_EVENT_ACCEPT`; connection: `WSK_EVENT_RECEIVE`,
//! `WSK_EVENT_DISCONNECT`, `WSK_EVENT_SEND_BACKLOG`; datagram: `WSK_EVENT_RECEIVE_FROM`), or
//! disables exactly one (`| WSK_EVENT_DISABLE`), with or without an IRP. A bad input size,
//! NPI or mask, or an event without a callback in the recorded table, is
//! `STATUS_INVALID_PARAMETER`; a listen or datagram socket not bound, or a connection socket
//! not connected, `STATUS_INVALID_DEVICE_STATE`.
//!
//! A listening socket also takes the connection events, for the sockets it accepts: as
//! Microsoft documents, they are enabled on each socket its `WskAcceptEvent` accepts (for
//! the callbacks of the table the client gives for it), not on sockets `WskAccept` takes, and
//! cannot be disabled on the listening socket (`STATUS_INVALID_PARAMETER`).
//!
//! As Microsoft documents it:
//! * each callback runs at IRQL <= DISPATCH_LEVEL (here: at DISPATCH_LEVEL) and gets
//!   `WSK_FLAG_AT_DISPATCH_LEVEL` where it has flags (`WskDisconnectEvent` gets 0 or
//!   `WSK_FLAG_ABORTIVE`);
//! * a receive callback returning `STATUS_PENDING` retains the indication until `WskRelease`;
//!   `STATUS_SUCCESS` consumes `*BytesAccepted` bytes (initialised to all of them);
//! * after a disable no new call of that callback starts; if one is in progress on another
//!   thread the disable returns `STATUS_PENDING` and completes its IRP once the call returned,
//!   or `STATUS_EVENT_PENDING` without an IRP (a disable from inside the callback succeeds);
//! * a close completes only after every callback in progress returned; pending IRPs take
//!   precedence over the callbacks (data, connections and datagrams go to them first);
//! * `WskAcceptEvent` gets addresses valid during the call and `*AcceptSocketContext`,
//!   `*AcceptSocketDispatch` set to NULL; `STATUS_SUCCESS` hands the socket to the client.
//!
//! This emulator's model where the documentation leaves a choice:
//! * Microsoft documents no serialization of one socket's callbacks (no page we could find
//!   says that `WskReceiveEvent`, `WskReceiveFromEvent` or `WskAcceptEvent` calls of one
//!   socket do not overlap). By default one socket's callbacks never overlap; under the
//!   adversary's `concurrent_callbacks` (`WSK_EMU_CHAOS`) those of datagram and listening
//!   sockets do (see [`crate::adversary`]), and clients must cope with it;
//! * callbacks run on the I/O thread (or, under the adversary's `processors`, on any of the
//!   provider's processor threads), which delivers after moving a socket's IRPs forward,
//!   at most 16 calls per socket before serving others; work left without a new readiness
//!   edge (data buffered before an enable, a backlog of connections) is found by *kicking*
//!   the socket (a queue of sockets and a waker of the poller); callbacks are never called
//!   with a lock held, and none after the driver bugchecked;
//! * a data indication is up to 64 KiB read at once, cut into a chain of
//!   `WSK_DATA_INDICATION`s of at most 16 KiB, each with its own MDL (`Buffer.Offset` 0,
//!   `MmGetSystemAddressForMdlSafe` works), flags `WSK_FLAG_AT_DISPATCH_LEVEL |
//!   WSK_FLAG_ENTIRE_MESSAGE`; datagrams come up to 16 per call, one
//!   `WSK_DATAGRAM_INDICATION` each, with its control information as `WskReceiveFrom` would
//!   return it (`ControlInfo` / `ControlInfoLength`; null and 0 without any);
//! * bytes a receive callback did not accept (all of them for `STATUS_DATA_NOT_ACCEPTED` or
//!   any other status) are kept in order and served first to later `WskReceive` IRPs;
//!   indications stop until a `WskReceive` completed (its completion routine has run; a
//!   zero-length one too, which Microsoft documents as the way to resume) and then resume
//!   with what is kept. Refused datagrams are kept likewise until a `WskReceiveFrom`
//!   completes or `WSK_EVENT_RECEIVE_FROM` is enabled again (Microsoft documents that a
//!   refusal disables the callback); refused by a static callback, which Microsoft documents
//!   stays enabled and is called again "when new datagrams are received", they are dropped.
//!   A resume that arrives while a callback of that event
//!   runs on another thread applies after the callback's answer, so a refusal on its way
//!   does not swallow it;
//! * `WskRelease` of the chain a callback is handling right now (its consumer on another CPU
//!   was quicker than the callback's return) takes effect when the callback returns
//!   `STATUS_PENDING`; if it returns anything else, that is `WSK_INDICATION_RELEASED_TWICE`.
//!   Microsoft's documentation does not speak of this race;
//! * `WskDisconnectEvent` is called once, when the provider sees the peer's FIN after every
//!   byte was indicated or received (flags 0) or a reset (`WSK_FLAG_ABORTIVE`); with no
//!   receive path reading, a one-byte peek finds them. A local abortive disconnect indicates
//!   nothing. `WskSendBacklogEvent` is called once after it is enabled, and after each
//!   `SO_SNDBUF` change, with the value `WskGetOption(SO_SNDBUF)` reports;
//! * an accept callback returning anything but `STATUS_SUCCESS` has the connection reset and
//!   the socket retired by the provider (no leak);
//! * indication memory is provider-owned: recycled blocks with the verifier off; with it on,
//!   one mapping per block, made inaccessible and quarantined (the last 1024) when given
//!   back, so that a later touch faults and is reported.
//!
//! # The verifier's WSK rules
//!
//! * `WSK_SOCKET_USED_AFTER_CLOSE`: a call into a socket (a second close included) after
//!   `WskCloseSocket` was issued. Socket headers stay allocated until the session ends, so
//!   the late call is caught instead of reading freed memory; the IRP is completed with
//!   `STATUS_INVALID_HANDLE`.
//! * `WSK_CLOSE_WITH_CALL_IN_PROGRESS`: `WskCloseSocket` while another thread is inside a
//!   call into the same socket (an in-call counter wraps every routine; a completion routine
//!   run inline that closes the socket on the same thread is allowed).
//! * `IRP_NO_MORE_STACK_LOCATIONS`: an IRP passed with no stack location left for the
//!   provider (`CurrentLocation <= 1`); refused, not completed.
//! * `WSK_BUF_BEYOND_MDL`: a `WSK_BUF` whose `Offset + Length` exceeds the byte count of its
//!   MDL chain (an MDL already freed in the chain is `MDL_INVALID_POINTER`).
//! * `WSK_INVALID_SOCKET`: a socket routine given something that is not a provider socket,
//!   or a socket of another kind than the routine's table.
//! * `WSK_SOCKET_LEAKED_AT_UNLOAD`, `WSK_ADDRESS_INFO_LEAKED_AT_UNLOAD`: sockets never
//!   closed and address-info chains never freed, listed in the report as leaks.
//! * `WSK_INVALID_ADDRESS_INFO`: `WskFreeAddressInfo` of something not returned (or freed
//!   twice). `WSK_DEREGISTER_WITH_OPEN_SOCKETS`: `WskDeregister`, which waits for the
//!   client's sockets to close as the real one does, gave up after the session's wait limit.
//! * `WSK_INDICATION_RELEASED_TWICE`: `WskRelease` of a chain released already, or never
//!   indicated (retained) on that socket; nothing is touched, `STATUS_INVALID_PARAMETER`.
//! * `WSK_INDICATION_HELD_AT_CLOSE`: indications still retained when the socket's close
//!   completes (how many and their bytes are reported); the provider reclaims them.
//! * Conditional accept (`inspect`): `WSK_INSPECT_ID_UNKNOWN` (`WskInspectComplete` of an
//!   inspection never pended or completed already), `WSK_INVALID_INSPECT_ACTION` (an action
//!   out of range from `WskInspectEvent`, or other than Accept / Reject in
//!   `WskInspectComplete`), `WSK_INSPECTION_PENDING_AT_CLOSE` (a listening socket closed with
//!   pended inspections: reported, the close completes, the connections are refused) and
//!   `WSK_CONDITIONAL_ACCEPT_AFTER_BIND`.
//! * `WSK_CONTROL_INFO_MISSING`: `WskReceiveFrom` with `*ControlLength` > 0 and a null
//!   `ControlInfo` (the provider would write control information through it); the IRP is
//!   completed with `STATUS_INVALID_PARAMETER`.
//! * `WSK_INDICATION_TOUCHED_AFTER_RELEASE`: the driver read or wrote an indication (its
//!   structures, MDLs or data) after giving it back. Found by the page fault on the
//!   quarantined block: a `SIGSEGV` handler prints the rule, the address and the chain, and
//!   stops the process (a bugcheck cannot be survived); other faults go to the handler that
//!   was there before.
//!
//! # What differs from the real WSK
//!
//! * The transport is the host's (Linux) TCP/IP: buffer sizes, timers, RST and TIME_WAIT
//!   behaviour are Linux's. Conditional accept inspects connections the host has already
//!   established (Linux queues only those): a rejected peer is reset after its handshake,
//!   where Windows may refuse the connection request itself (see `inspect`). Host TCP sockets get `SO_REUSEADDR` so that a port with
//!   connections in TIME_WAIT can be bound again, as Windows allows; the client's `SO_REUSEADDR` /
//!   `SO_EXCLUSIVEADDRUSE` are recorded (with Windows' rule that both cannot be on) but do
//!   not change the host's binding rules.
//! * A call that the host can satisfy at once completes inline, before the routine returns
//!   (WSK may do either); everything else completes from the I/O thread at DISPATCH_LEVEL.
//!   Inline completions run their completion routines at DISPATCH_LEVEL too, except under
//!   the adversary's `caller_irql_completions`, where they keep the caller's IRQL as
//!   `IoCompleteRequest` does on Windows.
//! * The adversarial mode (`crate::adversary`, `WSK_EMU_CHAOS=SEED`) is meaner than the
//!   default in the ways Microsoft's documentation allows: four processor threads, late
//!   completions in any order, overlapping datagram and accept callbacks, random
//!   indication shapes (1-byte pieces, `Buffer.Offset` > 0, MDL chains inside one
//!   indication), partial receives, short sends, unmapped indication MDLs.
//! * No other client control operations than static event callbacks and the transport
//!   list (`WskControlClient`), no stream
//!   sockets, no IOCTLs but `SIO_WSK_SET_REMOTE_ADDRESS`, no reverse lookup beyond the hosts
//!   file (`WskGetNameInfo`), no control data in sends (received
//!   datagrams have packet information); WSK's `STATUS_*` for some corner cases (e.g. a
//!   second bind, send after disconnect) are the emulator's best guess.
//! * Fault injection reaches the provider through its calls: under a fault plan each call
//!   that takes an IRP (close aside) is a fault point completed with
//!   `STATUS_INSUFFICIENT_RESOURCES`, and so is each `MmMapLockedPagesSpecifyCache`; the
//!   provider's internal memory (indication blocks) never runs out.
//! * Completion routines run on the `wsk-emu-net` thread (or on the caller's thread for
//!   inline completions), event callbacks on that thread too, except that a zero-length
//!   `WskReceive` resuming refused indications runs the receive callbacks it makes due on
//!   the caller's thread before it returns (and in-memory connections run their peer's on the
//!   caller's thread, see `loopback`); one that blocks stalls every socket. Under the
//!   adversary's `processors` both run on four processor threads.
//!
//! # Modules and their layering
//!
//! A module imports only from modules on its own row or the rows below it:
//!
//! ```text
//!   dispatch    WskCaptureProviderNPI and the provider table: WskSocket, WskSocketConnect,
//!               WskControlClient, name resolution
//!   -----------------------------------------------------------------------------------------
//!   sockets     tables (the socket routines) - socket (table, contract checks, close)
//!               queue (pending IRPs, cancel, completion) - io (host attempts)
//!               events (callback state, enable/disable) - deliver (callback calls)
//!               indication (chains, WskRelease) - inspect (conditional accept) - options
//!               reactor (the I/O thread) - processors (the adversary's provider threads)
//!               loopback (in-memory connections: listen, connect, the thread's pending work)
//!   -----------------------------------------------------------------------------------------
//!   helpers     buf (WSK_BUF to Segments) - resolve (address info)
//!   -----------------------------------------------------------------------------------------
//!   records     model (the shared records: Kind, Phase, Queue, State, Op, OpKind, Action,
//!               Segments, Irp, Out, Client, Events, Running, Kept, KeptDatagram; in-memory
//!               connections' End, Backlog, Memory)
//!   -----------------------------------------------------------------------------------------
//!   leaves      addr - status - blocks - registration
//! ```
//!
//! The leaves import no other module of the provider; `model` holds data and the accessors
//! that touch only that data (refused bytes kept in place own their indication `Block`). The
//! modules of the sockets row call each other both ways, by design: a socket routine
//! (`tables`) enters a `socket`, attempts the host I/O (`io`) and
//! queues what would block (`queue`); the I/O thread (`reactor`, or `processors`) calls back
//! into `queue` and `deliver` when a host socket is ready, and `deliver` and `io` create the
//! sockets of accepted connections, whose headers point at their `tables` dispatch table. The
//! records several of them share (a socket's state, its pending operations and buffers, the
//! client's side, event-callback state) are in `model`, below them; the `Socket` itself stays
//! with the socket table in `socket`.

mod addr;
mod blocks;
mod buf;
mod deliver;
mod dispatch;
mod events;
mod indication;
mod inspect;
mod io;
#[cfg(test)]
mod layering;
mod loopback;
mod model;
mod options;
mod processors;
mod queue;
mod reactor;
mod registration;

pub use registration::provider_unavailable_for;
pub use resolve::set_resolution_delay;
mod resolve;
mod socket;
mod status;
mod tables;

/// Completes every pending `WskAccept` IRP of the process with `STATUS_CANCELLED`, although
/// neither the driver nor a close cancelled it; the listening sockets keep listening. Returns
/// how many.
///
/// What Wine's netio did to the echo service: with one connection at a time, the accept
/// pending after the first connection ended completed with `STATUS_CANCELLED`, with no
/// cancel or close from the driver (its listener was still open). Its accept is an
/// overlapped `AcceptEx`, which Wine cancels when the thread that issued it exits, and
/// `winedevice.exe` runs work items on thread-pool threads, which exit when idle: the likely
/// path. Microsoft documents no promise that a provider completes an accept only with a
/// connection, an error, or a cancellation the client asked for. A test calls this to prove
/// that a driver goes on accepting.
pub fn cancel_pending_accepts() -> usize {
    let listeners = socket::open_sockets(|kind| kind == model::Kind::Listen);
    listeners.iter().map(|listener| queue::provider_cancels(listener, model::Queue::Accept)).sum()
}

/// Completes every pending `WskReceive` and `WskReceiveFrom` IRP of the process with
/// `STATUS_CANCELLED` and no data, although neither the driver nor a close cancelled it; the
/// sockets stay open and what arrives later is received as usual. Returns how many.
///
/// What Wine's netio did to an echo connection idle for a few seconds (`cargo xtask
/// wine-test`, its idle gap): the receive pending on it completed with `STATUS_CANCELLED`,
/// for the reason [`cancel_pending_accepts`] gives. A test calls this to prove that a
/// receive goes on waiting.
pub fn cancel_pending_receives() -> usize {
    let sockets = socket::open_sockets(|kind| kind != model::Kind::Listen);
    sockets.iter().map(|socket| queue::provider_cancels(socket, model::Queue::Receive)).sum()
}

pub use dispatch::WskCaptureProviderNPI;
pub use registration::{WskDeregister, WskRegister, WskReleaseProviderNPI};

use crate::verifier::Leak;

/// What the driver of `session` left behind in the WSK subsystem: registrations, sockets never
/// closed, address-info chains never freed. Records one violation per kind.
pub(crate) fn leaks(session: u64) -> Vec<Leak> {
    let mut leaks = registration::leaks(session);
    leaks.extend(socket::leaks(session));
    leaks.extend(resolve::leaks(session));
    leaks
}

/// Forgets everything of `session` (after unload).
pub(crate) fn teardown(session: u64) {
    socket::teardown(session);
    resolve::teardown(session);
    registration::teardown(session);
}
