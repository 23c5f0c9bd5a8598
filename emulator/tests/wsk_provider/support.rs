//! A small synchronous WSK client for the tests: registration, IRPs whose completion is
//! recorded, buffers with MDLs, addresses in WSK's layout, and one helper per routine.
//!
//! Every routine is called through `wsk_sys` types and the dispatch tables the provider hands
//! out, exactly as driver code calls them.

use std::ffi::c_void;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::ptr;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use wsk_emulator::{Kernel, LoadedDriver, VerifierReport};
use wsk_sys::*;

/// A bound on waits that only exists to turn a hang into a failure.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A two-party, single-use rendezvous that never sleeps, for a callback held at
/// DISPATCH_LEVEL (where a `std::sync::Barrier` would put the thread to sleep: a
/// `BLOCKED_AT_DISPATCH_LEVEL` violation). Each side spins, yielding the CPU, until both have
/// arrived; panics after [`PATIENCE`].
#[derive(Default)]
pub struct Rendezvous {
    arrived: std::sync::atomic::AtomicUsize,
}

impl Rendezvous {
    pub const fn new() -> Self {
        Self { arrived: std::sync::atomic::AtomicUsize::new(0) }
    }

    /// Arrives, then waits for the other side. Any IRQL <= DISPATCH_LEVEL.
    pub fn wait(&self) {
        use std::sync::atomic::Ordering::SeqCst;
        self.arrived.fetch_add(1, SeqCst);
        let deadline = Instant::now() + PATIENCE;
        while self.arrived.load(SeqCst) < 2 {
            assert!(Instant::now() < deadline, "rendezvous: the other side did not arrive within {PATIENCE:?}");
            std::thread::yield_now();
        }
    }
}

/// Spins (never sleeping, as code at DISPATCH_LEVEL must) for `duration`.
pub fn spin_for(duration: Duration) {
    let start = Instant::now();
    while start.elapsed() < duration {
        std::hint::spin_loop();
    }
}

static CLIENT_DISPATCH: WSK_CLIENT_DISPATCH =
    WSK_CLIENT_DISPATCH { Version: MAKE_WSK_VERSION(1, 0), Reserved: 0, WskClientEvent: None };

/// What a completion routine saw.
#[derive(Debug, Clone, Copy)]
pub struct Completed {
    pub status: NTSTATUS,
    pub info: usize,
    pub thread: ThreadId,
    pub irql: KIRQL,
    /// Global completion order (see [`sequence`]).
    pub sequence: u64,
}

static SEQUENCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// The next value of the global completion counter.
pub fn sequence() -> u64 {
    SEQUENCE.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
}

/// Client code run inside a completion routine.
pub type Hook = Box<dyn FnMut(*mut IRP) + Send>;

/// Shared between a request and its completion routine.
#[derive(Default)]
pub struct Slot {
    done: Mutex<Option<Completed>>,
    signal: Condvar,
    /// Run inside the completion routine (at DISPATCH_LEVEL), before it records the result.
    pub hook: Mutex<Option<Hook>>,
}

unsafe extern "system" fn on_complete(_device: *mut DEVICE_OBJECT, irp: *mut IRP, context: PVOID) -> NTSTATUS {
    let slot = unsafe { &*context.cast::<Slot>() };
    if let Some(hook) = slot.hook.lock().unwrap().as_mut() {
        hook(irp);
    }
    let completed = Completed {
        status: unsafe { (*irp).IoStatus.Status },
        info: unsafe { (*irp).IoStatus.Information },
        thread: std::thread::current().id(),
        irql: KeGetCurrentIrql(),
        sequence: sequence(),
    };
    *slot.done.lock().unwrap() = Some(completed);
    slot.signal.notify_all();
    STATUS_MORE_PROCESSING_REQUIRED
}

/// A driver-allocated IRP (one stack location) whose completion is recorded.
pub struct Req {
    pub irp: *mut IRP,
    pub slot: Arc<Slot>,
}

// SAFETY: the IRP is used by one test thread at a time; completion is synchronized by `slot`.
unsafe impl Send for Req {}

impl Req {
    /// A fresh IRP, armed.
    pub fn new() -> Req {
        let irp = unsafe { IoAllocateIrp(1, FALSE) };
        assert!(!irp.is_null());
        let mut req = Req { irp, slot: Arc::new(Slot::default()) };
        req.arm();
        req
    }

    /// Reuses the IRP for another call (after it completed).
    pub fn arm(&mut self) {
        unsafe { IoReuseIrp(self.irp, STATUS_UNSUCCESSFUL) };
        *self.slot.done.lock().unwrap() = None;
        let context = Arc::as_ptr(&self.slot).cast_mut().cast();
        unsafe { IoSetCompletionRoutine(self.irp, Some(on_complete), context, true, true, true) };
    }

    /// Whether the completion routine ran.
    pub fn done(&self) -> Option<Completed> {
        *self.slot.done.lock().unwrap()
    }

    /// Waits (at most [`PATIENCE`]) for the completion.
    pub fn wait(&self) -> Completed {
        self.wait_for(PATIENCE).unwrap_or_else(|| panic!("IRP {:p} did not complete within {PATIENCE:?}", self.irp))
    }

    /// Waits for the completion of a call that returned `returned`: a status other than
    /// `STATUS_PENDING` must be the one the IRP completed with.
    pub fn wait_returned(&self, returned: NTSTATUS) -> Completed {
        let done = self.wait();
        if returned != STATUS_PENDING {
            assert_eq!(returned, done.status, "the routine returned another status than the IRP's");
        }
        done
    }

    /// Waits at most `timeout` for the completion.
    pub fn wait_for(&self, timeout: Duration) -> Option<Completed> {
        let deadline = Instant::now() + timeout;
        let mut done = self.slot.done.lock().unwrap();
        while done.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            done = self.slot.signal.wait_timeout(done, left).unwrap().0;
        }
        *done
    }

    /// Cancels the IRP (`IoCancelIrp`).
    pub fn cancel(&self) -> bool {
        unsafe { IoCancelIrp(self.irp) != 0 }
    }
}

impl Drop for Req {
    fn drop(&mut self) {
        if self.done().is_some() || std::thread::panicking() {
            if self.done().is_some() {
                unsafe { IoFreeIrp(self.irp) };
            }
        } else {
            panic!("Req dropped while its IRP is still pending");
        }
    }
}

/// A buffer of host memory with an MDL (as the emulator's MDLs describe host memory).
pub struct Buf {
    pub data: Vec<u8>,
    pub mdl: *mut MDL,
    pub wsk: WSK_BUF,
}

// SAFETY: the buffer is owned by one test thread at a time.
unsafe impl Send for Buf {}

impl Buf {
    /// `len` zero bytes (an MDL over at least one byte).
    pub fn zeroed(len: usize) -> Buf {
        Buf::from_vec(vec![0; len])
    }

    /// A buffer holding `bytes`.
    pub fn from_vec(data: Vec<u8>) -> Buf {
        let mut data = data;
        if data.capacity() == 0 {
            data.reserve(1);
        }
        let len = data.len();
        let mdl = unsafe { IoAllocateMdl(data.as_mut_ptr().cast(), len.max(1) as u32, FALSE, FALSE, ptr::null_mut()) };
        assert!(!mdl.is_null());
        unsafe { MmBuildMdlForNonPagedPool(mdl) };
        Buf { data, mdl, wsk: WSK_BUF { Mdl: mdl, Offset: 0, Length: len } }
    }

    /// A buffer of `len` bytes of a repeating pattern starting at `seed`.
    pub fn pattern(len: usize, seed: u8) -> Buf {
        Buf::from_vec(pattern(len, seed))
    }

    pub fn wsk_buf(&mut self) -> *mut WSK_BUF {
        &raw mut self.wsk
    }
}

impl Drop for Buf {
    fn drop(&mut self) {
        unsafe { IoFreeMdl(self.mdl) };
    }
}

/// `len` bytes of a pattern that does not repeat with a short period.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[1] ^ seed).collect()
}

/// An address in WSK's layout.
pub fn storage(address: SocketAddr) -> SOCKADDR_STORAGE {
    let mut storage = SOCKADDR_STORAGE::zeroed();
    match address {
        SocketAddr::V4(v4) => unsafe {
            (&raw mut storage).cast::<SOCKADDR_IN>().write(SOCKADDR_IN {
                sin_family: AF_INET,
                sin_port: v4.port().to_be(),
                sin_addr: IN_ADDR { s_addr: v4.ip().octets() },
                sin_zero: [0; 8],
            });
        },
        SocketAddr::V6(v6) => unsafe {
            (&raw mut storage).cast::<SOCKADDR_IN6>().write(SOCKADDR_IN6 {
                sin6_family: AF_INET6,
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: 0,
                sin6_addr: IN6_ADDR { s6_addr: v6.ip().octets() },
                sin6_scope_id: v6.scope_id(),
            });
        },
    }
    storage
}

/// Reads an address in WSK's layout.
pub fn address(storage: &SOCKADDR_STORAGE) -> Option<SocketAddr> {
    match storage.ss_family {
        AF_INET => {
            let v4 = unsafe { &*ptr::from_ref::<SOCKADDR_STORAGE>(storage).cast::<SOCKADDR_IN>() };
            Some(SocketAddr::from((v4.sin_addr.s_addr, u16::from_be(v4.sin_port))))
        }
        AF_INET6 => {
            let v6 = unsafe { &*ptr::from_ref::<SOCKADDR_STORAGE>(storage).cast::<SOCKADDR_IN6>() };
            Some(SocketAddr::from((v6.sin6_addr.s6_addr, u16::from_be(v6.sin6_port))))
        }
        _ => None,
    }
}

pub fn sa(storage: &mut SOCKADDR_STORAGE) -> *mut SOCKADDR {
    ptr::from_mut::<SOCKADDR_STORAGE>(storage).cast()
}

pub fn v4(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

pub fn v6(port: u16) -> SocketAddr {
    SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port))
}

/// A loopback port nothing listens on (bound and released at once).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind(v4(0)).unwrap();
    listener.local_addr().unwrap().port()
}

/// A registered WSK client with its provider NPI captured, in a fresh driver session.
pub struct Client {
    pub driver: Option<LoadedDriver>,
    registration: Box<WSK_REGISTRATION>,
    _npi: Box<WSK_CLIENT_NPI>,
    pub provider: WSK_PROVIDER_NPI,
}

impl Client {
    /// Attaches a driver session (verifier on) and registers.
    pub fn new() -> Client {
        Client::with(Kernel::builder())
    }

    pub fn with(builder: wsk_emulator::KernelBuilder) -> Client {
        let driver = builder.attach("wsk-test");
        let mut npi = Box::new(WSK_CLIENT_NPI { ClientContext: ptr::null_mut(), Dispatch: &raw const CLIENT_DISPATCH });
        let mut registration = Box::new(WSK_REGISTRATION::zeroed());
        let mut provider = WSK_PROVIDER_NPI::zeroed();
        unsafe {
            assert_eq!(WskRegister(&raw mut *npi, &raw mut *registration), STATUS_SUCCESS);
            assert_eq!(
                WskCaptureProviderNPI(&raw mut *registration, WSK_INFINITE_WAIT, &raw mut provider),
                STATUS_SUCCESS
            );
        }
        Client { driver: Some(driver), registration, _npi: npi, provider }
    }

    pub fn dispatch(&self) -> &WSK_PROVIDER_DISPATCH {
        unsafe { &*self.provider.Dispatch }
    }

    /// Releases the NPI and deregisters (waits for every socket to be closed).
    pub fn deregister(&mut self) {
        unsafe {
            WskReleaseProviderNPI(&raw mut *self.registration);
            WskDeregister(&raw mut *self.registration);
        }
    }

    /// Deregisters and unloads; returns the report.
    pub fn finish(mut self) -> VerifierReport {
        self.deregister();
        self.driver.take().unwrap().unload()
    }

    /// Unloads without deregistering (after a deliberate violation).
    pub fn unload(mut self) -> VerifierReport {
        self.driver.take().unwrap().unload()
    }

    /// Calls `WskSocket` with `irp` (null: refused), no socket context and no client
    /// dispatch table unless given; returns what the routine returned.
    #[expect(
        clippy::too_many_arguments,
        reason = "WskSocket's own parameters, minus the unused process, thread and security descriptor"
    )]
    pub fn socket_call(
        &self,
        family: ADDRESS_FAMILY,
        socket_type: USHORT,
        protocol: ULONG,
        flags: ULONG,
        context: PVOID,
        dispatch: *const c_void,
        irp: *mut IRP,
    ) -> NTSTATUS {
        unsafe {
            (self.dispatch().WskSocket.unwrap())(
                self.provider.Client,
                family,
                socket_type,
                protocol,
                flags,
                context,
                dispatch,
                ptr::null_mut(),
                ptr::null_mut(),
                ptr::null_mut(),
                irp,
            )
        }
    }

    /// [`socket_call`](Self::socket_call) for an IPv4 TCP listen socket with `irp`, no context
    /// and no client table.
    pub fn listen_socket_call(&self, irp: *mut IRP) -> NTSTATUS {
        self.socket_call(AF_INET, SOCK_STREAM, IPPROTO_TCP, WSK_FLAG_LISTEN_SOCKET, ptr::null_mut(), ptr::null(), irp)
    }

    /// `WskSocket`; returns the status the IRP completed with and the socket.
    pub fn socket(
        &self,
        family: ADDRESS_FAMILY,
        socket_type: USHORT,
        protocol: ULONG,
        flags: ULONG,
    ) -> Result<Sock, NTSTATUS> {
        let req = Req::new();
        let returned = self.socket_call(family, socket_type, protocol, flags, ptr::null_mut(), ptr::null(), req.irp);
        let done = req.wait_returned(returned);
        if NT_SUCCESS(done.status) {
            assert_ne!(done.info, 0);
            Ok(Sock(done.info as *mut WSK_SOCKET))
        } else {
            Err(done.status)
        }
    }

    /// A TCP listen socket bound to `at` (port 0: any); returns it and its bound address.
    pub fn listener(&self, at: SocketAddr) -> (Sock, SocketAddr) {
        let family = if at.is_ipv4() { AF_INET } else { AF_INET6 };
        let listener = self.socket(family, SOCK_STREAM, IPPROTO_TCP, WSK_FLAG_LISTEN_SOCKET).unwrap();
        assert_eq!(listener.bind(at), STATUS_SUCCESS);
        let local = listener.local_address().unwrap();
        (listener, local)
    }

    /// `WskSocketConnect` from the unspecified address to `remote`.
    pub fn socket_connect(&self, remote: SocketAddr) -> Result<Sock, NTSTATUS> {
        let local = if remote.is_ipv4() { v4(0) } else { v6(0) };
        let local = SocketAddr::new(
            if remote.is_ipv4() {
                std::net::Ipv4Addr::UNSPECIFIED.into()
            } else {
                std::net::Ipv6Addr::UNSPECIFIED.into()
            },
            local.port(),
        );
        let req = self.socket_connect_start(local, remote);
        let done = req.wait();
        if NT_SUCCESS(done.status) { Ok(Sock(done.info as *mut WSK_SOCKET)) } else { Err(done.status) }
    }

    /// Issues `WskSocketConnect` and returns its request (pending or completed).
    pub fn socket_connect_start(&self, local: SocketAddr, remote: SocketAddr) -> Req {
        let req = Req::new();
        let mut local = storage(local);
        let mut remote = storage(remote);
        unsafe {
            (self.dispatch().WskSocketConnect.unwrap())(
                self.provider.Client,
                SOCK_STREAM,
                IPPROTO_TCP,
                sa(&mut local),
                sa(&mut remote),
                0,
                ptr::null_mut(),
                ptr::null(),
                ptr::null_mut(),
                ptr::null_mut(),
                ptr::null_mut(),
                req.irp,
            );
        }
        req
    }
}

/// A socket the provider created.
#[derive(Debug, Clone, Copy)]
pub struct Sock(pub *mut WSK_SOCKET);

// SAFETY: WSK sockets may be used from any thread.
unsafe impl Send for Sock {}

impl Sock {
    pub fn basic(&self) -> &'static WSK_PROVIDER_BASIC_DISPATCH {
        unsafe { &*(*self.0).Dispatch.cast() }
    }
    pub fn listen_table(&self) -> &'static WSK_PROVIDER_LISTEN_DISPATCH {
        unsafe { &*(*self.0).Dispatch.cast() }
    }
    pub fn connection(&self) -> &'static WSK_PROVIDER_CONNECTION_DISPATCH {
        unsafe { &*(*self.0).Dispatch.cast() }
    }
    pub fn datagram(&self) -> &'static WSK_PROVIDER_DATAGRAM_DISPATCH {
        unsafe { &*(*self.0).Dispatch.cast() }
    }

    /// `WskReceiveFrom` into `buf` with the out-parameters given (null where a test passes
    /// none), on a fresh IRP; returns the request.
    pub fn receive_from_with(
        &self,
        buf: &mut Buf,
        remote: *mut SOCKADDR,
        control_length: *mut ULONG,
        control: *mut CMSGHDR,
        control_flags: *mut ULONG,
    ) -> Req {
        let req = Req::new();
        unsafe {
            (self.datagram().WskReceiveFrom.unwrap())(
                self.0,
                buf.wsk_buf(),
                0,
                remote,
                control_length,
                control,
                control_flags,
                req.irp,
            )
        };
        req
    }

    /// Which table the socket's `Dispatch` points to, by its `WskBind` position.
    fn bind_routine(&self) -> PFN_WSK_BIND {
        // Every kind but basic has WskBind right after the basic part.
        self.listen_table().WskBind.unwrap()
    }

    /// `WskBind`, synchronously; returns the completion status.
    pub fn bind(&self, at: SocketAddr) -> NTSTATUS {
        let req = Req::new();
        let mut address = storage(at);
        let returned = unsafe { (self.bind_routine())(self.0, sa(&mut address), 0, req.irp) };
        let done = req.wait();
        assert_eq!(returned, done.status, "a synchronous bind returns its completion status");
        done.status
    }

    /// `WskGetLocalAddress` of a listen socket.
    pub fn local_address(&self) -> Result<SocketAddr, NTSTATUS> {
        self.query_address(self.listen_table().WskGetLocalAddress.unwrap())
    }

    /// `WskGetLocalAddress` of a connection socket (its position in the table differs).
    pub fn connection_local_address(&self) -> Result<SocketAddr, NTSTATUS> {
        self.query_address(self.connection().WskGetLocalAddress.unwrap())
    }

    /// `WskGetLocalAddress` of a datagram socket.
    pub fn datagram_local_address(&self) -> Result<SocketAddr, NTSTATUS> {
        self.query_address(self.datagram().WskGetLocalAddress.unwrap())
    }

    fn query_address(&self, routine: PFN_WSK_GET_LOCAL_ADDRESS) -> Result<SocketAddr, NTSTATUS> {
        let req = Req::new();
        let mut address = SOCKADDR_STORAGE::zeroed();
        unsafe { routine(self.0, sa(&mut address), req.irp) };
        let done = req.wait();
        if NT_SUCCESS(done.status) { Ok(crate::support::address(&address).unwrap()) } else { Err(done.status) }
    }

    /// `WskGetRemoteAddress`.
    pub fn remote_address(&self) -> Result<SocketAddr, NTSTATUS> {
        self.query_address(self.connection().WskGetRemoteAddress.unwrap())
    }

    /// `WskConnect`, started.
    pub fn connect_start(&self, remote: SocketAddr) -> Req {
        let req = Req::new();
        let mut address = storage(remote);
        unsafe { (self.connection().WskConnect.unwrap())(self.0, sa(&mut address), 0, req.irp) };
        req
    }

    /// `WskAccept`, started; the addresses are written into `addresses` at completion.
    pub fn accept_start(&self, addresses: &mut Box<[SOCKADDR_STORAGE; 2]>) -> Req {
        let req = Req::new();
        let [local, remote] = &mut **addresses;
        unsafe {
            (self.listen_table().WskAccept.unwrap())(
                self.0,
                0,
                ptr::null_mut(),
                ptr::null(),
                sa(local),
                sa(remote),
                req.irp,
            )
        };
        req
    }

    /// Accepts one connection (waits); returns the socket and the peer's address.
    pub fn accept(&self) -> (Sock, SocketAddr) {
        let mut addresses = Box::new([SOCKADDR_STORAGE::zeroed(); 2]);
        let req = self.accept_start(&mut addresses);
        let done = req.wait();
        assert_eq!(done.status, STATUS_SUCCESS, "accept");
        (Sock(done.info as *mut WSK_SOCKET), address(&addresses[1]).unwrap())
    }

    /// `WskSend` of `buf` (its WSK_BUF), started.
    pub fn send_start(&self, buf: &mut Buf, flags: ULONG) -> Req {
        let req = Req::new();
        unsafe { (self.connection().WskSend.unwrap())(self.0, buf.wsk_buf(), flags, req.irp) };
        req
    }

    /// `WskReceive` into `buf`, started.
    pub fn receive_start(&self, buf: &mut Buf, flags: ULONG) -> Req {
        let req = Req::new();
        unsafe { (self.connection().WskReceive.unwrap())(self.0, buf.wsk_buf(), flags, req.irp) };
        req
    }

    /// Sends all of `bytes` (waits).
    pub fn send_all(&self, bytes: &[u8]) {
        let mut buf = Buf::from_vec(bytes.to_vec());
        let done = self.send_start(&mut buf, 0).wait();
        assert_eq!((done.status, done.info), (STATUS_SUCCESS, bytes.len()), "send");
    }

    /// Receives exactly `len` bytes (waits, WSK_FLAG_WAITALL).
    pub fn receive_exact(&self, len: usize) -> Vec<u8> {
        let mut buf = Buf::zeroed(len);
        let done = self.receive_start(&mut buf, WSK_FLAG_WAITALL).wait();
        assert_eq!((done.status, done.info), (STATUS_SUCCESS, len), "receive");
        buf.data.clone()
    }

    /// `WskDisconnect` (graceful, or abortive with WSK_FLAG_ABORTIVE), synchronously.
    pub fn disconnect(&self, flags: ULONG) -> NTSTATUS {
        let req = Req::new();
        unsafe { (self.connection().WskDisconnect.unwrap())(self.0, ptr::null_mut(), flags, req.irp) };
        req.wait().status
    }

    /// `WskCloseSocket`, started.
    pub fn close_start(&self) -> Req {
        let req = Req::new();
        self.close_with(req.irp);
        req
    }

    /// `WskCloseSocket` with the caller's armed IRP; returns what the routine returned.
    pub fn close_with(&self, irp: *mut IRP) -> NTSTATUS {
        unsafe { (self.basic().WskCloseSocket.unwrap())(self.0, irp) }
    }

    /// `WskCloseSocket`, waited for; returns the completion.
    pub fn close(&self) -> Completed {
        let done = self.close_start().wait();
        assert_eq!(done.status, STATUS_SUCCESS, "close");
        done
    }

    /// `WskControlSocket` with an IRP: set a 4-byte option.
    pub fn set_option(&self, level: ULONG, code: ULONG, value: u32) -> NTSTATUS {
        let req = Req::new();
        let mut value = value;
        let returned = unsafe {
            (self.basic().WskControlSocket.unwrap())(
                self.0,
                WskSetOption,
                code,
                level,
                4,
                (&raw mut value).cast(),
                0,
                ptr::null_mut(),
                ptr::null_mut(),
                req.irp,
            )
        };
        let done = req.wait();
        assert_eq!(returned, done.status);
        done.status
    }

    /// `WskControlSocket` with an IRP: get a 4-byte option.
    pub fn get_option(&self, level: ULONG, code: ULONG) -> Result<u32, NTSTATUS> {
        let req = Req::new();
        let mut value = 0u32;
        unsafe {
            (self.basic().WskControlSocket.unwrap())(
                self.0,
                WskGetOption,
                code,
                level,
                0,
                ptr::null_mut(),
                4,
                (&raw mut value).cast(),
                ptr::null_mut(),
                req.irp,
            )
        };
        let done = req.wait();
        if NT_SUCCESS(done.status) {
            assert_eq!(done.info, 4);
            Ok(value)
        } else {
            Err(done.status)
        }
    }
}

/// A WSK listener on the loopback, a WSK socket it accepted, and the host end connected to it.
pub fn connected(client: &Client) -> (Sock, Sock, TcpStream) {
    let (listener, local) = client.listener(v4(0));
    let peer = TcpStream::connect(local).unwrap();
    let (socket, _) = listener.accept();
    (listener, socket, peer)
}

/// Runs `body` as the driver of a fresh session with a registered client, then deregisters,
/// unloads and asserts that the verifier report is clean. Everything `body` allocated is
/// dropped before the unload.
pub fn clean_session(body: impl FnOnce(&Client)) {
    let client = Client::new();
    body(&client);
    client.finish().assert_clean();
}

/// Runs `body` in a fresh session, deregisters, unloads and returns the report.
pub fn session_report(body: impl FnOnce(&Client)) -> VerifierReport {
    let client = Client::new();
    body(&client);
    client.finish()
}

/// Runs `body` in a fresh session and returns the report of the unload (no deregistration:
/// for deliberately broken clients).
pub fn broken_session(body: impl FnOnce(&Client)) -> VerifierReport {
    let client = Client::new();
    body(&client);
    client.unload()
}
