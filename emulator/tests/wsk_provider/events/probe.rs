//! A raw event-callback client for the tests: `extern "system"` callbacks whose state is a
//! leaked [`Probe`] passed as `SocketContext`, the client dispatch tables that point to them,
//! and helpers to create sockets with a context and to enable or disable events.

use std::ffi::c_void;
use std::mem::size_of;
use std::net::{SocketAddr, TcpStream};
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wsk_sys::*;

use crate::support::*;

/// What the receive callbacks return.
pub const ACCEPT_ALL: u32 = 0;
/// Return STATUS_PENDING (retain the chain; its head is recorded in `held`).
pub const RETAIN: u32 = 1;
/// Return STATUS_DATA_NOT_ACCEPTED (accept callback: STATUS_REQUEST_NOT_ACCEPTED).
pub const REFUSE: u32 = 2;
/// Accept `partial` bytes and return STATUS_SUCCESS.
pub const PARTIAL: u32 = 3;

/// A callback blocked until the test lets it go: `entered` is passed when the callback is
/// inside, `release` when the test lets it return.
/// The callback waits by spinning, as code at DISPATCH_LEVEL must.
pub struct Gate {
    pub entered: Rendezvous,
    pub release: Rendezvous,
}

impl Gate {
    pub fn new() -> Arc<Gate> {
        Arc::new(Gate { entered: Rendezvous::new(), release: Rendezvous::new() })
    }
}

/// Client code run inside a callback (after the checks, before the mode decides the status);
/// `Some(status)` overrides the status.
pub type CallbackHook = Box<dyn FnMut(&Probe) -> Option<NTSTATUS> + Send>;

/// What an accept callback was given: the accept socket, the local and remote addresses.
pub type AcceptSeen = (usize, Option<SocketAddr>, Option<SocketAddr>);

/// What the callbacks of one socket saw.
#[derive(Default)]
pub struct Probe {
    /// The socket (`PWSK_SOCKET`), for callbacks that call back into the provider.
    pub socket: AtomicUsize,
    pub mode: AtomicU32,
    pub partial: AtomicUsize,
    /// Callbacks executing now, and the most ever at once.
    pub inside: AtomicUsize,
    pub max_inside: AtomicUsize,
    pub receive_calls: AtomicUsize,
    pub datagram_calls: AtomicUsize,
    pub accept_calls: AtomicUsize,
    /// Set when a callback is about to return.
    pub returned: AtomicBool,
    /// Anything a callback found wrong (IRQL, thread, flags, chain shape).
    pub problems: Mutex<Vec<String>>,
    /// Bytes the receive callback accepted, in order.
    pub data: Mutex<Vec<u8>>,
    /// (indications, bytes) of each receive callback.
    pub chains: Mutex<Vec<(usize, usize)>>,
    /// Retained heads (data or datagram chains).
    pub held: Mutex<Vec<usize>>,
    /// The head of the data chain the receive callback is handling now.
    pub current_head: AtomicUsize,
    pub disconnects: Mutex<Vec<ULONG>>,
    pub backlogs: Mutex<Vec<usize>>,
    /// Datagrams seen (accepted or not), in order.
    pub datagrams: Mutex<Vec<(Vec<u8>, SocketAddr)>>,
    /// The control information of each datagram seen (`ControlInfo`, `ControlInfoLength`
    /// bytes; empty for none), in order.
    pub datagram_controls: Mutex<Vec<Vec<u8>>>,
    /// (accept socket, local, remote) of each accept callback.
    pub accepts: Mutex<Vec<AcceptSeen>>,
    /// The probe given to sockets the accept callback takes.
    pub child: AtomicUsize,
    pub gate: Mutex<Option<Arc<Gate>>>,
    pub hook: Mutex<Option<CallbackHook>>,
    /// Callbacks that ran inside a zero-length `WskReceive` of [`resume_here`], on its thread.
    pub resumed_here: AtomicUsize,
}

thread_local! {
    /// This thread is inside [`resume_here`]'s `WskReceive`.
    static RESUMING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Resumes the receive indications of `socket` with a zero-length `WskReceive` from this
/// thread; callbacks the call runs on this thread before it returns are counted in the
/// probe's `resumed_here` (anywhere else but the I/O thread, they are a problem). Returns the
/// receive's status.
pub fn resume_here(socket: &Sock) -> NTSTATUS {
    let mut empty = Buf::zeroed(0);
    RESUMING.set(true);
    let req = socket.receive_start(&mut empty, 0);
    RESUMING.set(false);
    let done = req.wait();
    assert_eq!(done.info, 0, "a zero-length receive");
    done.status
}

impl Probe {
    /// A probe that lives for the rest of the process.
    pub fn leaked() -> &'static Probe {
        Box::leak(Box::default())
    }

    pub fn context(&'static self) -> PVOID {
        ptr::from_ref(self).cast_mut().cast()
    }

    pub fn set_mode(&self, mode: u32) {
        self.mode.store(mode, Ordering::SeqCst);
    }

    pub fn problems(&self) -> Vec<String> {
        self.problems.lock().unwrap().clone()
    }

    pub fn data(&self) -> Vec<u8> {
        self.data.lock().unwrap().clone()
    }

    fn problem(&self, what: String) {
        self.problems.lock().unwrap().push(what);
    }

    /// Common checks at the start of every callback.
    fn enter(&self, name: &str, flags: Option<ULONG>) {
        let now = self.inside.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_inside.fetch_max(now, Ordering::SeqCst);
        self.returned.store(false, Ordering::SeqCst);
        if KeGetCurrentIrql() != DISPATCH_LEVEL {
            self.problem(format!("{name} at IRQL {}", KeGetCurrentIrql()));
        }
        if RESUMING.get() {
            // Inside this thread's own zero-length `WskReceive` (see `resume_here`).
            self.resumed_here.fetch_add(1, Ordering::SeqCst);
        } else if std::thread::current().name() != Some("wsk-emu-net") {
            self.problem(format!("{name} on thread {:?}", std::thread::current().name()));
        }
        if let Some(flags) = flags
            && flags & WSK_FLAG_AT_DISPATCH_LEVEL == 0
        {
            self.problem(format!("{name} without WSK_FLAG_AT_DISPATCH_LEVEL: 0x{flags:x}"));
        }
    }

    /// Lets a gate (set by the test) block the callback, then runs the hook.
    fn middle(&self) -> Option<NTSTATUS> {
        let gate = self.gate.lock().unwrap().take();
        if let Some(gate) = gate {
            gate.entered.wait();
            gate.release.wait();
        }
        self.hook.lock().unwrap().as_mut().and_then(|hook| hook(self))
    }

    fn leave(&self) {
        self.returned.store(true, Ordering::SeqCst);
        self.inside.fetch_sub(1, Ordering::SeqCst);
    }
}

fn probe<'a>(context: PVOID) -> &'a Probe {
    unsafe { &*context.cast::<Probe>() }
}

/// The bytes an MDL-described buffer holds (through its system address).
pub unsafe fn buffer_bytes(buffer: &WSK_BUF) -> Vec<u8> {
    if buffer.Length == 0 {
        return Vec::new();
    }
    let va = unsafe { MmGetSystemAddressForMdlSafe(buffer.Mdl, NormalPagePriority) };
    assert!(!va.is_null(), "MmGetSystemAddressForMdlSafe failed");
    unsafe { std::slice::from_raw_parts(va.cast::<u8>().add(buffer.Offset as usize), buffer.Length) }.to_vec()
}

/// Every indication of a data chain: (bytes, length) each.
pub unsafe fn data_chain(head: *mut WSK_DATA_INDICATION) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut at = head;
    while !at.is_null() {
        out.push(unsafe { buffer_bytes(&(*at).Buffer) });
        at = unsafe { (*at).Next };
    }
    out
}

/// Every datagram of a chain.
/// The datagrams of a chain: payload, sender, and control information (`None` when
/// `ControlInfo` and `ControlInfoLength` disagree: one null or 0 and not the other).
pub unsafe fn datagram_chain(head: *mut WSK_DATAGRAM_INDICATION) -> Vec<(Vec<u8>, SocketAddr, Option<Vec<u8>>)> {
    let mut out = Vec::new();
    let mut at = head;
    while !at.is_null() {
        let indication = unsafe { &*at };
        let from = unsafe { address(&*indication.RemoteAddress.cast::<SOCKADDR_STORAGE>()) }.unwrap();
        let control = match (indication.ControlInfo.is_null(), indication.ControlInfoLength) {
            (true, 0) => Some(Vec::new()),
            (false, n) if n > 0 => {
                Some(unsafe { std::slice::from_raw_parts(indication.ControlInfo.cast::<u8>(), n as usize) }.to_vec())
            }
            _ => None,
        };
        out.push((unsafe { buffer_bytes(&indication.Buffer) }, from, control));
        at = indication.Next;
    }
    out
}

pub unsafe extern "system" fn on_receive(
    context: PVOID,
    flags: ULONG,
    head: *mut WSK_DATA_INDICATION,
    indicated: SIZE_T,
    accepted: *mut SIZE_T,
) -> NTSTATUS {
    let probe = probe(context);
    probe.enter("WskReceiveEvent", Some(flags));
    probe.receive_calls.fetch_add(1, Ordering::SeqCst);
    if flags != WSK_FLAG_AT_DISPATCH_LEVEL | WSK_FLAG_ENTIRE_MESSAGE {
        probe.problem(format!("WskReceiveEvent flags 0x{flags:x}"));
    }
    if unsafe { *accepted } != indicated {
        probe.problem(format!("BytesAccepted starts at {} for {indicated} indicated", unsafe { *accepted }));
    }
    let parts = unsafe { data_chain(head) };
    let mut cursor = head;
    while !cursor.is_null() {
        if unsafe { (*cursor).Buffer.Offset } != 0 {
            probe.problem("an indication with a non-zero Buffer.Offset".to_owned());
        }
        cursor = unsafe { (*cursor).Next };
    }
    let bytes: Vec<u8> = parts.concat();
    if bytes.len() != indicated || indicated == 0 || indicated > 64 * 1024 || parts.iter().any(|p| p.len() > 16 * 1024)
    {
        let lengths: Vec<usize> = parts.iter().map(Vec::len).collect();
        probe.problem(format!("chain of {lengths:?} for {indicated} indicated"));
    }
    probe.chains.lock().unwrap().push((parts.len(), indicated));
    probe.current_head.store(head as usize, Ordering::SeqCst);
    let status = probe.middle().unwrap_or_else(|| match probe.mode.load(Ordering::SeqCst) {
        RETAIN => {
            probe.held.lock().unwrap().push(head as usize);
            STATUS_PENDING
        }
        REFUSE => STATUS_DATA_NOT_ACCEPTED,
        PARTIAL => {
            let n = probe.partial.load(Ordering::SeqCst).min(bytes.len());
            probe.data.lock().unwrap().extend_from_slice(&bytes[..n]);
            unsafe { *accepted = n };
            STATUS_SUCCESS
        }
        _ => {
            probe.data.lock().unwrap().extend_from_slice(&bytes);
            STATUS_SUCCESS
        }
    });
    probe.leave();
    status
}

pub unsafe extern "system" fn on_disconnect(context: PVOID, flags: ULONG) -> NTSTATUS {
    let probe = probe(context);
    probe.enter("WskDisconnectEvent", None);
    probe.disconnects.lock().unwrap().push(flags);
    let status = probe.middle().unwrap_or(STATUS_SUCCESS);
    probe.leave();
    status
}

pub unsafe extern "system" fn on_send_backlog(context: PVOID, ideal: SIZE_T) -> NTSTATUS {
    let probe = probe(context);
    probe.enter("WskSendBacklogEvent", None);
    probe.backlogs.lock().unwrap().push(ideal);
    let status = probe.middle().unwrap_or(STATUS_SUCCESS);
    probe.leave();
    status
}

pub unsafe extern "system" fn on_receive_from(
    context: PVOID,
    flags: ULONG,
    head: *mut WSK_DATAGRAM_INDICATION,
) -> NTSTATUS {
    let probe = probe(context);
    probe.enter("WskReceiveFromEvent", Some(flags));
    probe.datagram_calls.fetch_add(1, Ordering::SeqCst);
    let datagrams = unsafe { datagram_chain(head) };
    if datagrams.is_empty() || datagrams.len() > 16 || datagrams.iter().any(|(_, _, control)| control.is_none()) {
        probe.problem(format!(
            "a datagram chain of {} with ControlInfo and its length at odds, or empty",
            datagrams.len()
        ));
    }
    probe
        .datagram_controls
        .lock()
        .unwrap()
        .extend(datagrams.iter().map(|(_, _, control)| control.clone().unwrap_or_default()));
    probe.datagrams.lock().unwrap().extend(datagrams.into_iter().map(|(data, from, _)| (data, from)));
    let status = probe.middle().unwrap_or_else(|| match probe.mode.load(Ordering::SeqCst) {
        RETAIN => {
            probe.held.lock().unwrap().push(head as usize);
            STATUS_PENDING
        }
        REFUSE => STATUS_DATA_NOT_ACCEPTED,
        _ => STATUS_SUCCESS,
    });
    probe.leave();
    status
}

pub unsafe extern "system" fn on_accept(
    context: PVOID,
    flags: ULONG,
    local: *mut SOCKADDR,
    remote: *mut SOCKADDR,
    socket: *mut WSK_SOCKET,
    accept_context: *mut PVOID,
    accept_dispatch: *mut *const WSK_CLIENT_CONNECTION_DISPATCH,
) -> NTSTATUS {
    let probe = probe(context);
    probe.enter("WskAcceptEvent", Some(flags));
    probe.accept_calls.fetch_add(1, Ordering::SeqCst);
    if unsafe { !(*accept_context).is_null() || !(*accept_dispatch).is_null() } {
        probe.problem("the accept out-parameters are not initialized to NULL".to_owned());
    }
    let read =
        |sa: *mut SOCKADDR| (!sa.is_null()).then(|| unsafe { address(&*sa.cast::<SOCKADDR_STORAGE>()) }).flatten();
    probe.accepts.lock().unwrap().push((socket as usize, read(local), read(remote)));
    let status = probe.middle().unwrap_or_else(|| {
        if probe.mode.load(Ordering::SeqCst) == REFUSE {
            STATUS_REQUEST_NOT_ACCEPTED
        } else {
            let child = probe.child.load(Ordering::SeqCst);
            if child != 0 {
                unsafe { &*(child as *const Probe) }.socket.store(socket as usize, Ordering::SeqCst);
            }
            unsafe {
                *accept_context = child as PVOID;
                *accept_dispatch = &raw const CONNECTION_EVENTS;
            }
            STATUS_SUCCESS
        }
    });
    probe.leave();
    status
}

pub static CONNECTION_EVENTS: WSK_CLIENT_CONNECTION_DISPATCH = WSK_CLIENT_CONNECTION_DISPATCH {
    WskReceiveEvent: Some(on_receive),
    WskDisconnectEvent: Some(on_disconnect),
    WskSendBacklogEvent: Some(on_send_backlog),
};

/// A connection table without a receive callback.
pub static DISCONNECT_ONLY: WSK_CLIENT_CONNECTION_DISPATCH = WSK_CLIENT_CONNECTION_DISPATCH {
    WskReceiveEvent: None,
    WskDisconnectEvent: Some(on_disconnect),
    WskSendBacklogEvent: None,
};

pub static LISTEN_EVENTS: WSK_CLIENT_LISTEN_DISPATCH =
    WSK_CLIENT_LISTEN_DISPATCH { WskAcceptEvent: Some(on_accept), WskInspectEvent: None, WskAbortEvent: None };

pub static DATAGRAM_EVENTS: WSK_CLIENT_DATAGRAM_DISPATCH =
    WSK_CLIENT_DATAGRAM_DISPATCH { WskReceiveFromEvent: Some(on_receive_from) };

pub fn table<T>(table: &'static T) -> *const c_void {
    ptr::from_ref(table).cast()
}

/// `WskSocket` with a context and a client dispatch table (IPv4; TCP unless datagram).
pub fn socket_with(client: &Client, flags: ULONG, context: PVOID, dispatch: *const c_void) -> Sock {
    let (socket_type, protocol) =
        if flags == WSK_FLAG_DATAGRAM_SOCKET { (SOCK_DGRAM, IPPROTO_UDP) } else { (SOCK_STREAM, IPPROTO_TCP) };
    let req = Req::new();
    let returned = client.socket_call(AF_INET, socket_type, protocol, flags, context, dispatch, req.irp);
    let done = req.wait_returned(returned);
    assert_eq!(done.status, STATUS_SUCCESS, "WskSocket");
    Sock(done.info as *mut WSK_SOCKET)
}

/// `WskAccept` with an accept socket context and dispatch table.
pub fn accept_with(listener: Sock, context: PVOID, dispatch: *const WSK_CLIENT_CONNECTION_DISPATCH) -> Sock {
    let req = Req::new();
    let mut addresses = Box::new([SOCKADDR_STORAGE::zeroed(); 2]);
    let [local, remote] = &mut *addresses;
    unsafe {
        (listener.listen_table().WskAccept.unwrap())(listener.0, 0, context, dispatch, sa(local), sa(remote), req.irp)
    };
    let done = req.wait();
    assert_eq!(done.status, STATUS_SUCCESS, "WskAccept");
    Sock(done.info as *mut WSK_SOCKET)
}

/// A WSK connection (accepted, with `probe` as context and the full connection table) and
/// its host peer, plus the listener.
pub fn connection(client: &Client, probe: &'static Probe) -> (Sock, Sock, TcpStream) {
    connection_with(client, probe, &CONNECTION_EVENTS)
}

pub fn connection_with(
    client: &Client,
    probe: &'static Probe,
    dispatch: &'static WSK_CLIENT_CONNECTION_DISPATCH,
) -> (Sock, Sock, TcpStream) {
    let (listener, local) = client.listener(v4(0));
    let peer = TcpStream::connect(local).unwrap();
    peer.set_nodelay(true).unwrap();
    let socket = accept_with(listener, probe.context(), dispatch);
    probe.socket.store(socket.0 as usize, Ordering::SeqCst);
    (listener, socket, peer)
}

/// `WskControlSocket(WskSetOption, SO_WSK_EVENT_CALLBACK)` with raw arguments.
pub fn control_raw(socket: Sock, input: *mut c_void, size: usize, irp: *mut IRP) -> NTSTATUS {
    unsafe {
        (socket.basic().WskControlSocket.unwrap())(
            socket.0,
            WskSetOption,
            SO_WSK_EVENT_CALLBACK,
            SOL_SOCKET,
            size,
            input,
            0,
            ptr::null_mut(),
            ptr::null_mut(),
            irp,
        )
    }
}

/// Enables (or, with `WSK_EVENT_DISABLE`, disables) events without an IRP.
pub fn set_events(socket: Sock, mask: ULONG) -> NTSTATUS {
    let mut control = WSK_EVENT_CALLBACK_CONTROL { NpiId: &raw const NPI_WSK_INTERFACE_ID, EventMask: mask };
    control_raw(socket, (&raw mut control).cast(), size_of::<WSK_EVENT_CALLBACK_CONTROL>(), ptr::null_mut())
}

/// As [`set_events`] with an IRP; returns what the call returned and the request.
pub fn set_events_with_irp(socket: Sock, mask: ULONG) -> (NTSTATUS, Req) {
    let req = Req::new();
    let mut control = WSK_EVENT_CALLBACK_CONTROL { NpiId: &raw const NPI_WSK_INTERFACE_ID, EventMask: mask };
    let returned = control_raw(socket, (&raw mut control).cast(), size_of::<WSK_EVENT_CALLBACK_CONTROL>(), req.irp);
    (returned, req)
}

/// `WskRelease` of a data chain.
pub fn release_data(socket: Sock, head: usize) -> NTSTATUS {
    unsafe { (socket.connection().WskRelease.unwrap())(socket.0, head as *mut WSK_DATA_INDICATION) }
}

/// `WskRelease` of a datagram chain.
pub fn release_datagrams(socket: Sock, head: usize) -> NTSTATUS {
    unsafe { (socket.datagram().WskRelease.unwrap())(socket.0, head as *mut WSK_DATAGRAM_INDICATION) }
}

/// Waits (at most [`PATIENCE`]) until `condition` holds.
pub fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Lets the provider run for a while (to show that something does *not* happen).
pub fn settle() {
    std::thread::sleep(Duration::from_millis(100));
}
