//! A blocking echo server, written the way synchronous WSK wrappers work (KSOCKET, libwsk and
//! the other "Berkeley sockets for the kernel" layers): one thread per connection, and every
//! WSK call is
//!
//! ```text
//!   KeClearEvent(event); IoReuseIrp(irp); IoSetCompletionRoutine(irp, SetEvent, event)
//!   status = provider->WskXxx(socket, ..., irp)
//!   if status == STATUS_PENDING: KeWaitForSingleObject(event)   // the thread sleeps here
//!   status = irp->IoStatus.Status
//! ```
//!
//! It is the baseline of the echo benchmark (`cargo xtask bench`): the same service as
//! [`crate::server`] (receive up to [`CHUNK`] bytes, send them back, graceful disconnect at the
//! peer's end of stream), calling the same provider routines, without the executor. It is the
//! favourable form of the pattern: each socket keeps one IRP and one `KEVENT`, and each
//! connection one non-paged buffer with its MDL, all reused, so the steady state allocates
//! nothing, as the async server.
//!
//! # Threads
//!
//! The pattern needs a thread per connection that may block for as long as the peer is idle.
//! A driver gets one from `PsCreateSystemThread`, which our kernel ABI does not declare; the
//! thread source is therefore pluggable ([`set_thread_starter`]). The default runs each
//! "thread" as a system work item, which is legal but occupies one of the system's worker
//! threads for the connection's lifetime (four on the host emulator: the accept loop and at
//! most three connections). The host binary (`echo-driver --blocking`) installs a starter
//! that gives each routine a host thread of its own, which is what `PsCreateSystemThread`
//! would do.
//!
//! # Unload
//!
//! Only the thread that owns a socket calls into it or closes it, so the WSK close contract
//! holds without reference counting. Each wait is sliced ([`WAIT_SLICE_100NS`]): after a
//! slice, a thread that sees the driver stopping cancels its own pending IRP (`IoCancelIrp`),
//! which completes with `STATUS_CANCELLED`; it then closes its socket, frees what it owns and
//! leaves. DriverUnload waits until every thread has left, then deregisters.

use core::ffi::c_void;
use core::net::SocketAddr;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, Ordering};
use core::time::Duration;

use wsk::pool::{self, PoolBox};
use wsk::{DriverGlobal, Error, log};
use wsk_sys::{
    DEVICE_OBJECT, DISPATCHER_HEADER, DRIVER_OBJECT, IPPROTO_TCP, IRP, KEVENT, LARGE_INTEGER, LIST_ENTRY,
    MAKE_WSK_VERSION, MDL, NT_SUCCESS, NTSTATUS, PIO_WORKITEM, PVOID, SOCK_STREAM, SOCKADDR, SOCKADDR_STORAGE,
    STATUS_MORE_PROCESSING_REQUIRED, STATUS_NOT_IMPLEMENTED, STATUS_PENDING, STATUS_SUCCESS, STATUS_UNSUCCESSFUL,
    UNICODE_STRING, WSK_BUF, WSK_CLIENT_DISPATCH, WSK_CLIENT_NPI, WSK_FLAG_LISTEN_SOCKET, WSK_PROVIDER_BASIC_DISPATCH,
    WSK_PROVIDER_CONNECTION_DISPATCH, WSK_PROVIDER_LISTEN_DISPATCH, WSK_PROVIDER_NPI, WSK_REGISTRATION, WSK_SOCKET,
};

use crate::server::{CHUNK, STATS};

/// Pool tag of this driver's own allocations ("EchB").
const TAG: u32 = u32::from_le_bytes(*b"EchB");
/// How long DriverEntry waits for the WSK provider.
const PROVIDER_WAIT_MS: u32 = 1_000;
/// Longest single wait: a blocked thread looks at the stop flag this often (100 ms).
pub const WAIT_SLICE_100NS: i64 = 1_000_000;
/// How long DriverUnload waits for the threads to leave.
const THREAD_EXIT_WAIT: Duration = Duration::from_secs(10);

/// A routine run on a thread of its own at PASSIVE_LEVEL (`KSTART_ROUTINE`).
pub type ThreadRoutine = unsafe extern "system" fn(context: PVOID);

/// Starts `routine(context)` on a thread of its own at PASSIVE_LEVEL and returns whether it
/// started; if it did not, the routine never runs and `context` is still the caller's.
///
/// # Safety
/// `context` must stay valid until `routine` has used it.
pub type StartThread = unsafe fn(routine: ThreadRoutine, context: PVOID) -> bool;

/// Set by DriverUnload: every thread cancels what it waits for and leaves.
static STOPPING: AtomicBool = AtomicBool::new(false);
/// Accept and connection threads that have not yet left.
static LIVE_THREADS: AtomicU32 = AtomicU32::new(0);
/// WSK sockets created and not yet closed.
static OPEN_SOCKETS: AtomicU32 = AtomicU32::new(0);
/// A [`StartThread`] installed by [`set_thread_starter`], or null for work items.
static START_THREAD: AtomicPtr<()> = AtomicPtr::new(core::ptr::null_mut());
/// The driver object, for work items.
static DRIVER: AtomicPtr<DRIVER_OBJECT> = AtomicPtr::new(core::ptr::null_mut());
/// The WSK registration, from DriverEntry to DriverUnload.
static REGISTRATION: DriverGlobal<Registration> = DriverGlobal::new();

/// WSK 1.0 client dispatch: no client-level event callback.
static CLIENT_DISPATCH: WSK_CLIENT_DISPATCH =
    WSK_CLIENT_DISPATCH { Version: MAKE_WSK_VERSION(1, 0), Reserved: 0, WskClientEvent: None };

/// Installs the thread source for later [`blocking_driver_entry`] calls (see the module docs).
/// Without one, each thread is a system work item.
pub fn set_thread_starter(start: StartThread) {
    START_THREAD.store(start as *mut (), Ordering::Release);
}

/// Runs `routine(context)` on a thread from the installed source.
///
/// # Safety
/// As [`StartThread`].
unsafe fn start_thread(routine: ThreadRoutine, context: PVOID) -> bool {
    let start = START_THREAD.load(Ordering::Acquire);
    if start.is_null() {
        // SAFETY: forwarded contract.
        return unsafe { start_work_item(routine, context) };
    }
    // SAFETY: every non-null value was stored from a `StartThread` by `set_thread_starter`.
    let start = unsafe { core::mem::transmute::<*mut (), StartThread>(start) };
    // SAFETY: forwarded contract.
    unsafe { start(routine, context) }
}

/// What a work item "thread" runs.
struct WorkThread {
    item: PIO_WORKITEM,
    routine: ThreadRoutine,
    context: PVOID,
}

/// The default thread source: one system work item per routine.
///
/// # Safety
/// As [`StartThread`].
unsafe fn start_work_item(routine: ThreadRoutine, context: PVOID) -> bool {
    let driver = DRIVER.load(Ordering::Acquire);
    if driver.is_null() {
        return false;
    }
    // SAFETY: the driver object is valid while the driver is loaded; IRQL PASSIVE_LEVEL.
    let item = unsafe { wsk_sys::IoAllocateWorkItem(driver.cast::<DEVICE_OBJECT>()) };
    if item.is_null() {
        return false;
    }
    let Ok(block) = PoolBox::try_new(WorkThread { item, routine, context }) else {
        // SAFETY: allocated above, never queued.
        unsafe { wsk_sys::IoFreeWorkItem(item) };
        return false;
    };
    let block = PoolBox::into_raw(block);
    // SAFETY: a fresh work item; the block stays valid until the routine takes it back.
    unsafe { wsk_sys::IoQueueWorkItem(item, work_item_routine, wsk_sys::DelayedWorkQueue, block.as_ptr().cast()) };
    true
}

/// The work item routine behind [`start_work_item`]. PASSIVE_LEVEL.
unsafe extern "system" fn work_item_routine(_device: *mut DEVICE_OBJECT, context: *mut c_void) {
    let Some(block) = NonNull::new(context.cast::<WorkThread>()) else { return };
    // SAFETY: queued by `start_work_item` with a block from `PoolBox::into_raw`, taken back once.
    let block = unsafe { PoolBox::from_raw(block) };
    let WorkThread { item, routine, context } = *block;
    drop(block);
    // SAFETY: the item's own routine may free it; it is not queued again.
    unsafe { wsk_sys::IoFreeWorkItem(item) };
    // SAFETY: `start_work_item`'s caller guarantees `context` for `routine`.
    unsafe { routine(context) };
}

/// Registration state in non-paged pool (WSK keeps pointers to it until deregistration).
struct Registration {
    client_npi: WSK_CLIENT_NPI,
    block: WSK_REGISTRATION,
    provider: WSK_PROVIDER_NPI,
    registered: bool,
    captured: bool,
}

// SAFETY: the registration block and provider NPI are designed for use from any thread; the
// value moves from DriverEntry to DriverUnload and is only read in between.
unsafe impl Send for Registration {}

impl Registration {
    /// `WskRegister` + `WskCaptureProviderNPI`. PASSIVE_LEVEL.
    fn register() -> Result<PoolBox<Registration>, Error> {
        let reg = Registration {
            client_npi: WSK_CLIENT_NPI { ClientContext: core::ptr::null_mut(), Dispatch: &raw const CLIENT_DISPATCH },
            block: WSK_REGISTRATION::zeroed(),
            provider: WSK_PROVIDER_NPI::zeroed(),
            registered: false,
            captured: false,
        };
        let mut reg = PoolBox::try_new(reg).map_err(|_| Error::NoMemory)?;
        let r = &mut *reg;
        // SAFETY: both blocks live in pool memory that stays in place until `Drop`
        // deregisters; PASSIVE_LEVEL (DriverEntry).
        let status = unsafe { wsk_sys::WskRegister(&raw mut r.client_npi, &raw mut r.block) };
        if !NT_SUCCESS(status) {
            return Err(Error::from_status(status));
        }
        r.registered = true;
        // SAFETY: the block is registered; PASSIVE_LEVEL, so waiting is allowed.
        let status = unsafe { wsk_sys::WskCaptureProviderNPI(&raw mut r.block, PROVIDER_WAIT_MS, &raw mut r.provider) };
        if !NT_SUCCESS(status) {
            return Err(Error::from_status(status));
        }
        r.captured = true;
        if r.provider.Dispatch.is_null() {
            return Err(Error::NotReady);
        }
        Ok(reg)
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if self.captured {
            // SAFETY: exactly one release for the successful capture.
            unsafe { wsk_sys::WskReleaseProviderNPI(&raw mut self.block) };
        }
        if self.registered {
            // SAFETY: registered by `register`; dropped at PASSIVE_LEVEL (DriverEntry or
            // DriverUnload). Waits until every socket is closed.
            unsafe { wsk_sys::WskDeregister(&raw mut self.block) };
        }
    }
}

/// One IRP and the event its completion routine sets: what a synchronous wrapper keeps per
/// socket.
///
/// # Invariants
/// `irp` is an IRP with one stack location from `IoAllocateIrp`, owned by this value and not
/// in flight between calls; `event` was initialized in place and the value never moves (it
/// lives in a `PoolBox`).
struct SyncIrp {
    irp: NonNull<IRP>,
    event: KEVENT,
}

// SAFETY: the IRP and event are used by one thread at a time (the socket's owner) and by the
// provider's completion, which the owner waits for.
unsafe impl Send for SyncIrp {}

/// A finished call: the IRP's final status and information.
#[derive(Clone, Copy)]
struct Done {
    status: NTSTATUS,
    information: usize,
}

impl Done {
    fn result(self) -> Result<usize, Error> {
        if NT_SUCCESS(self.status) { Ok(self.information) } else { Err(Error::from_status(self.status)) }
    }
}

impl SyncIrp {
    /// Allocates the IRP and initializes the event. IRQL <= DISPATCH_LEVEL.
    fn new() -> Result<PoolBox<SyncIrp>, Error> {
        // SAFETY: plain IRP allocation.
        let irp = NonNull::new(unsafe { wsk_sys::IoAllocateIrp(1, 0) }).ok_or(Error::NoMemory)?;
        let empty = LIST_ENTRY { Flink: core::ptr::null_mut(), Blink: core::ptr::null_mut() };
        let header =
            DISPATCHER_HEADER { Type: 0, Signalling: 0, Size: 0, Reserved1: 0, SignalState: 0, WaitListHead: empty };
        let Ok(mut this) = PoolBox::try_new(SyncIrp { irp, event: KEVENT { Header: header } }) else {
            // SAFETY: allocated above, never submitted.
            unsafe { wsk_sys::IoFreeIrp(irp.as_ptr()) };
            return Err(Error::NoMemory);
        };
        // SAFETY: the event is in non-paged pool at its final address.
        unsafe { wsk_sys::KeInitializeEvent(&raw mut this.event, wsk_sys::NotificationEvent, 0) };
        Ok(this)
    }

    /// One synchronous WSK call: arms the IRP, lets `issue` pass it to one provider routine,
    /// and blocks until the provider has completed it. With `cancellable`, a wait that
    /// outlasts a slice while the driver is stopping cancels the IRP. PASSIVE_LEVEL.
    fn call(&mut self, cancellable: bool, issue: impl FnOnce(*mut IRP) -> NTSTATUS) -> Done {
        let irp = self.irp.as_ptr();
        let event: *mut KEVENT = &raw mut self.event;
        // SAFETY: the event was initialized in place (invariant).
        unsafe { wsk_sys::KeClearEvent(event) };
        // SAFETY: the IRP is ours between calls (invariant).
        unsafe { wsk_sys::IoReuseIrp(irp, STATUS_UNSUCCESSFUL) };
        // SAFETY: as above; the IRP's one stack location is the next one; the event outlives
        // the call because this function waits for the completion.
        unsafe { wsk_sys::IoSetCompletionRoutine(irp, Some(set_event), event.cast(), true, true, true) };
        let status = issue(irp);
        if status == STATUS_PENDING {
            self.wait(cancellable);
        } else {
            // SAFETY: the event is live; reading its state is allowed at any IRQL <= DISPATCH.
            let completed = unsafe { wsk_sys::KeReadStateEvent(event) } != 0;
            if !completed {
                // A stub that returned without taking the IRP (Wine's WskDisconnect): the
                // IRP is still ours and its status is the returned one.
                return Done { status, information: 0 };
            }
        }
        // SAFETY: the completion routine ran (the event is set): the IRP is ours again.
        let io = unsafe { (*irp).IoStatus };
        Done { status: io.Status, information: io.Information }
    }

    /// Blocks until the completion routine sets the event.
    fn wait(&mut self, cancellable: bool) {
        let event: *mut KEVENT = &raw mut self.event;
        let mut cancelled = false;
        loop {
            let mut timeout: LARGE_INTEGER = -WAIT_SLICE_100NS;
            // SAFETY: PASSIVE_LEVEL; the event is live; a relative timeout.
            let waited = unsafe {
                wsk_sys::KeWaitForSingleObject(
                    event.cast(),
                    wsk_sys::Executive,
                    wsk_sys::KernelMode,
                    0,
                    &raw mut timeout,
                )
            };
            if waited == STATUS_SUCCESS {
                return;
            }
            if cancellable && !cancelled && STOPPING.load(Ordering::Acquire) {
                // SAFETY: the IRP is in flight and stays allocated until its completion,
                // which this thread waits for.
                unsafe { wsk_sys::IoCancelIrp(self.irp.as_ptr()) };
                cancelled = true;
            }
        }
    }
}

impl Drop for SyncIrp {
    fn drop(&mut self) {
        // SAFETY: not in flight between calls (invariant); freed once.
        unsafe { wsk_sys::IoFreeIrp(self.irp.as_ptr()) };
    }
}

/// Completion routine of every call: wakes the waiting thread. IRQL <= DISPATCH_LEVEL.
unsafe extern "system" fn set_event(_device: *mut DEVICE_OBJECT, _irp: *mut IRP, context: *mut c_void) -> NTSTATUS {
    // SAFETY: `context` is the event of the `SyncIrp` whose owner waits for this completion.
    unsafe { wsk_sys::KeSetEvent(context.cast::<KEVENT>(), wsk_sys::IO_NO_INCREMENT, 0) };
    STATUS_MORE_PROCESSING_REQUIRED
}

/// The listen, connection and basic dispatch tables of a WSK socket.
///
/// # Safety
/// `socket` is a live socket of the kind whose table `T` is.
unsafe fn dispatch<'a, T>(socket: *mut WSK_SOCKET) -> &'a T {
    // SAFETY: a live socket's `Dispatch` points to its provider table (caller's contract).
    let table = unsafe { (*socket).Dispatch };
    // SAFETY: as above; the table is static in the provider.
    unsafe { &*table.cast::<T>() }
}

/// `WskCloseSocket`, waited for. Not cancellable. PASSIVE_LEVEL.
///
/// # Safety
/// `socket` is live, owned by the caller, with no call in progress; not used afterwards.
unsafe fn close_socket(io: &mut SyncIrp, socket: *mut WSK_SOCKET) {
    // SAFETY: caller's contract; every socket kind starts with the basic table.
    let basic = unsafe { dispatch::<WSK_PROVIDER_BASIC_DISPATCH>(socket) };
    let done = io.call(false, |irp| match basic.WskCloseSocket {
        // SAFETY: a live socket and an armed IRP.
        Some(close) => unsafe { close(socket, irp) },
        None => STATUS_NOT_IMPLEMENTED,
    });
    if let Err(e) = done.result() {
        log!(error, "echo-blocking: WskCloseSocket: {}", e);
    }
    OPEN_SOCKETS.fetch_sub(1, Ordering::AcqRel);
}

/// A non-paged buffer and its MDL, built once.
///
/// # Invariants
/// `data` is a pool allocation of `len` bytes with [`TAG`]; `mdl` describes exactly it; both
/// are owned by this value.
struct Buffer {
    data: NonNull<u8>,
    len: usize,
    mdl: NonNull<MDL>,
}

impl Buffer {
    fn new(len: usize) -> Result<Buffer, Error> {
        let data = pool::allocate(len, TAG).ok_or(Error::NoMemory)?;
        // SAFETY: a live non-paged allocation of `len` (<= 4 GiB) bytes; no IRP.
        let mdl = unsafe { wsk_sys::IoAllocateMdl(data.as_ptr().cast(), len as u32, 0, 0, core::ptr::null_mut()) };
        let Some(mdl) = NonNull::new(mdl) else {
            // SAFETY: allocated above with TAG, not shared.
            unsafe { pool::free(data, TAG) };
            return Err(Error::NoMemory);
        };
        // SAFETY: the MDL describes non-paged pool that outlives it.
        unsafe { wsk_sys::MmBuildMdlForNonPagedPool(mdl.as_ptr()) };
        Ok(Buffer { data, len, mdl })
    }

    fn wsk_buf(&self, offset: usize, length: usize) -> WSK_BUF {
        debug_assert!(offset + length <= self.len);
        WSK_BUF { Mdl: self.mdl.as_ptr(), Offset: offset as u32, Length: length }
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        // SAFETY: owned (invariant); no call uses the buffer once its owner drops it.
        unsafe { wsk_sys::IoFreeMdl(self.mdl.as_ptr()) };
        // SAFETY: as above; freed once.
        unsafe { pool::free(self.data, TAG) };
    }
}

/// What the accept thread owns.
struct Listener {
    socket: *mut WSK_SOCKET,
    io: PoolBox<SyncIrp>,
    remote: SOCKADDR_STORAGE,
}

// SAFETY: handed from DriverEntry to the accept thread, then used by that thread only.
unsafe impl Send for Listener {}

/// What a connection thread owns.
struct Connection {
    socket: *mut WSK_SOCKET,
    io: PoolBox<SyncIrp>,
    buffer: Buffer,
    /// The `WSK_BUF` of the call in progress.
    wsk_buf: WSK_BUF,
}

// SAFETY: handed from the accept thread to the connection thread, then used by it only.
unsafe impl Send for Connection {}

/// DriverEntry of the blocking echo driver. IRQL == PASSIVE_LEVEL.
///
/// # Safety
/// `driver_object` and `registry_path` are the valid arguments the I/O manager (or the
/// emulator) passes.
pub unsafe extern "system" fn blocking_driver_entry(
    driver_object: *mut DRIVER_OBJECT,
    registry_path: *mut UNICODE_STRING,
) -> NTSTATUS {
    log!(always, "echo-blocking: DriverEntry");
    // SAFETY: forwarded contract.
    match unsafe { start(driver_object, registry_path) } {
        Ok(addr) => {
            // SAFETY: valid driver object; DriverEntry may set DriverUnload.
            unsafe { (*driver_object).DriverUnload = Some(blocking_driver_unload) };
            log!(always, "echo-blocking: listening on {}", addr);
            STATUS_SUCCESS
        }
        Err(e) => {
            log!(error, "echo-blocking: DriverEntry failed: {}", e);
            e.to_status()
        }
    }
}

/// # Safety
/// As [`blocking_driver_entry`].
unsafe fn start(driver_object: *mut DRIVER_OBJECT, registry_path: *mut UNICODE_STRING) -> Result<SocketAddr, Error> {
    pool::init();
    // SAFETY: forwarded contract.
    let addr = unsafe { wsk::parameters::listen_address(registry_path, crate::driver::DEFAULT_PORT)? };
    STOPPING.store(false, Ordering::Release);
    DRIVER.store(driver_object, Ordering::Release);
    let reg = Registration::register()?;
    let mut io = SyncIrp::new()?;
    // SAFETY: captured in `register` and not released before `reg` is dropped.
    let provider = unsafe { &*reg.provider.Dispatch };
    let client = reg.provider.Client;
    let family = wsk::addr::family(&addr);
    let done = io.call(false, |irp| match provider.WskSocket {
        // SAFETY: a captured client and an armed IRP; no context, callbacks or security.
        Some(socket) => unsafe {
            socket(
                client,
                family,
                SOCK_STREAM,
                IPPROTO_TCP,
                WSK_FLAG_LISTEN_SOCKET,
                core::ptr::null_mut(),
                core::ptr::null(),
                core::ptr::null_mut(),
                core::ptr::null_mut(),
                core::ptr::null_mut(),
                irp,
            )
        },
        None => STATUS_NOT_IMPLEMENTED,
    });
    let socket = done.result()? as *mut WSK_SOCKET;
    if socket.is_null() {
        return Err(Error::Status(STATUS_UNSUCCESSFUL));
    }
    OPEN_SOCKETS.fetch_add(1, Ordering::AcqRel);
    let mut local = wsk::addr::to_storage(&addr);
    // SAFETY: a live listen socket.
    let table = unsafe { dispatch::<WSK_PROVIDER_LISTEN_DISPATCH>(socket) };
    let bound = io.call(false, |irp| match table.WskBind {
        // SAFETY: live socket, armed IRP, an address that outlives the call.
        Some(bind) => unsafe { bind(socket, (&raw mut local).cast::<SOCKADDR>(), 0, irp) },
        None => STATUS_NOT_IMPLEMENTED,
    });
    if let Err(e) = bound.result() {
        log!(error, "echo-blocking: cannot listen on {}: {}", addr, e);
        // SAFETY: our socket, no call in progress.
        unsafe { close_socket(&mut io, socket) };
        return Err(e);
    }
    let listener = PoolBox::try_new(Listener { socket, io, remote: SOCKADDR_STORAGE::zeroed() });
    let listener = match listener {
        Ok(listener) => PoolBox::into_raw(listener),
        Err(mut listener) => {
            // SAFETY: our socket, no call in progress.
            unsafe { close_socket(&mut listener.io, socket) };
            return Err(Error::NoMemory);
        }
    };
    LIVE_THREADS.fetch_add(1, Ordering::AcqRel);
    // SAFETY: the listener block is handed to the accept thread, which takes it back.
    if !unsafe { start_thread(accept_thread, listener.as_ptr().cast()) } {
        LIVE_THREADS.fetch_sub(1, Ordering::AcqRel);
        // SAFETY: the thread did not start: the block is still ours.
        let mut listener = unsafe { PoolBox::from_raw(listener) };
        // SAFETY: our socket, no call in progress.
        unsafe { close_socket(&mut listener.io, socket) };
        return Err(Error::NoMemory);
    }
    if !REGISTRATION.set(reg) {
        log!(error, "echo-blocking: the registration of an earlier load was still there and is leaked");
    }
    Ok(addr)
}

/// DriverUnload: tells the threads to stop, waits until they have left (each closes its own
/// socket), deregisters. IRQL == PASSIVE_LEVEL.
///
/// # Safety
/// Called once by the I/O manager after a successful DriverEntry.
pub unsafe extern "system" fn blocking_driver_unload(_driver_object: *mut DRIVER_OBJECT) {
    log!(always, "echo-blocking: DriverUnload");
    STOPPING.store(true, Ordering::Release);
    let step = Duration::from_millis(5);
    let mut waited = Duration::ZERO;
    while LIVE_THREADS.load(Ordering::Acquire) != 0 && waited < THREAD_EXIT_WAIT {
        let mut interval = -((step.as_nanos() / 100) as i64);
        // SAFETY: PASSIVE_LEVEL; a relative kernel-mode delay.
        unsafe { wsk_sys::KeDelayExecutionThread(wsk_sys::KernelMode, 0, &raw mut interval) };
        waited += step;
    }
    let threads = LIVE_THREADS.load(Ordering::Acquire);
    if threads == 0 {
        drop(REGISTRATION.take());
    } else {
        // Deregistering would wait for their sockets forever; leak the registration instead.
        log!(error, "echo-blocking: {} threads still running after {:?}", threads, THREAD_EXIT_WAIT);
    }
    log!(
        always,
        "echo-blocking: DriverUnload done: {} connections, {} bytes echoed, {} sockets open",
        STATS.connections.load(Ordering::Relaxed),
        STATS.bytes.load(Ordering::Relaxed),
        OPEN_SOCKETS.load(Ordering::Acquire)
    );
}

/// The accept thread: accepts until the driver stops, starting one thread per connection.
unsafe extern "system" fn accept_thread(context: PVOID) {
    let Some(listener) = NonNull::new(context.cast::<Listener>()) else { return };
    // SAFETY: handed over by `start` from `PoolBox::into_raw`, taken back once.
    let mut listener = unsafe { PoolBox::from_raw(listener) };
    while !STOPPING.load(Ordering::Acquire) {
        match accept(&mut listener) {
            Ok(socket) => {
                OPEN_SOCKETS.fetch_add(1, Ordering::AcqRel);
                STATS.connections.fetch_add(1, Ordering::Relaxed);
                STATS.open.fetch_add(1, Ordering::Relaxed);
                if let Err(e) = serve(socket) {
                    STATS.open.fetch_sub(1, Ordering::Relaxed);
                    STATS.errors.fetch_add(1, Ordering::Relaxed);
                    log!(error, "echo-blocking: cannot serve a connection: {}", e);
                    // SAFETY: the accepted socket is ours and nothing else uses it.
                    unsafe { close_socket(&mut listener.io, socket) };
                }
            }
            Err(Error::Cancelled) if STOPPING.load(Ordering::Acquire) => break,
            Err(e) => {
                // Low resources or a connection that failed before it was accepted: back off.
                STATS.errors.fetch_add(1, Ordering::Relaxed);
                log!(info, "echo-blocking: accept failed: {}", e);
                let mut interval: LARGE_INTEGER = -100_000;
                // SAFETY: PASSIVE_LEVEL; a relative kernel-mode delay (10 ms).
                unsafe { wsk_sys::KeDelayExecutionThread(wsk_sys::KernelMode, 0, &raw mut interval) };
            }
        }
    }
    let socket = listener.socket;
    // SAFETY: the listen socket is this thread's; no call is in progress.
    unsafe { close_socket(&mut listener.io, socket) };
    drop(listener);
    LIVE_THREADS.fetch_sub(1, Ordering::AcqRel);
}

/// `WskAccept`, blocking.
fn accept(listener: &mut Listener) -> Result<*mut WSK_SOCKET, Error> {
    let socket = listener.socket;
    let remote = (&raw mut listener.remote).cast::<SOCKADDR>();
    // SAFETY: a live listen socket.
    let table = unsafe { dispatch::<WSK_PROVIDER_LISTEN_DISPATCH>(socket) };
    let done = listener.io.call(true, |irp| match table.WskAccept {
        // SAFETY: live socket, armed IRP; `remote` lives in the listener beyond the call.
        Some(accept) => unsafe {
            accept(socket, 0, core::ptr::null_mut(), core::ptr::null(), core::ptr::null_mut(), remote, irp)
        },
        None => STATUS_NOT_IMPLEMENTED,
    });
    let accepted = done.result()? as *mut WSK_SOCKET;
    if accepted.is_null() {
        return Err(Error::Status(STATUS_UNSUCCESSFUL));
    }
    Ok(accepted)
}

/// Starts a connection thread for `socket`. On failure the socket is still the caller's.
fn serve(socket: *mut WSK_SOCKET) -> Result<(), Error> {
    let io = SyncIrp::new()?;
    let buffer = Buffer::new(CHUNK)?;
    let wsk_buf = buffer.wsk_buf(0, 0);
    let connection = PoolBox::try_new(Connection { socket, io, buffer, wsk_buf }).map_err(|_| Error::NoMemory)?;
    let connection = PoolBox::into_raw(connection);
    LIVE_THREADS.fetch_add(1, Ordering::AcqRel);
    // SAFETY: the block is handed to the connection thread, which takes it back.
    if unsafe { start_thread(connection_thread, connection.as_ptr().cast()) } {
        return Ok(());
    }
    LIVE_THREADS.fetch_sub(1, Ordering::AcqRel);
    // SAFETY: the thread did not start: the block is still ours (its socket goes back to the
    // caller, so only the block is freed).
    drop(unsafe { PoolBox::from_raw(connection) });
    Err(Error::NoMemory)
}

/// A connection thread: echoes until the peer finishes sending, disconnects, closes.
unsafe extern "system" fn connection_thread(context: PVOID) {
    let Some(connection) = NonNull::new(context.cast::<Connection>()) else { return };
    // SAFETY: handed over by `serve` from `PoolBox::into_raw`, taken back once.
    let mut connection = unsafe { PoolBox::from_raw(connection) };
    let mut echoed = 0u64;
    match echo(&mut connection, &mut echoed) {
        Ok(()) => match disconnect(&mut connection) {
            // Wine's netio has no WskDisconnect: close alone ends the connection.
            Ok(()) | Err(Error::Status(STATUS_NOT_IMPLEMENTED)) => {}
            Err(e) => log!(info, "echo-blocking: disconnect failed: {}", e),
        },
        Err(Error::Cancelled) if STOPPING.load(Ordering::Acquire) => {}
        Err(e) => {
            STATS.errors.fetch_add(1, Ordering::Relaxed);
            log!(info, "echo-blocking: connection failed after {} bytes: {}", echoed, e);
        }
    }
    let socket = connection.socket;
    // SAFETY: the socket is this thread's; no call is in progress.
    unsafe { close_socket(&mut connection.io, socket) };
    drop(connection);
    STATS.open.fetch_sub(1, Ordering::Relaxed);
    LIVE_THREADS.fetch_sub(1, Ordering::AcqRel);
}

/// Receive up to [`CHUNK`] bytes, send them all back, until the peer's end of stream.
fn echo(connection: &mut Connection, echoed: &mut u64) -> Result<(), Error> {
    loop {
        let n = transfer(connection, false, 0, CHUNK)?;
        if n == 0 {
            return Ok(());
        }
        let mut sent = 0;
        while sent < n {
            match transfer(connection, true, sent, n - sent)? {
                0 => return Err(Error::Status(wsk_sys::STATUS_CONNECTION_ABORTED)),
                m => sent += m,
            }
        }
        *echoed += n as u64;
        STATS.bytes.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// One blocking `WskSend` (`send`) or `WskReceive` of `length` bytes at `offset` of the
/// connection's buffer; returns the bytes transferred.
fn transfer(connection: &mut Connection, send: bool, offset: usize, length: usize) -> Result<usize, Error> {
    let socket = connection.socket;
    connection.wsk_buf = connection.buffer.wsk_buf(offset, length);
    let wsk_buf: *mut WSK_BUF = &raw mut connection.wsk_buf;
    // SAFETY: a live connection socket.
    let table = unsafe { dispatch::<WSK_PROVIDER_CONNECTION_DISPATCH>(socket) };
    let routine = if send { table.WskSend } else { table.WskReceive };
    let done = connection.io.call(true, |irp| match routine {
        // SAFETY: live socket, armed IRP; the WSK_BUF and the memory it describes live in
        // the connection beyond the call.
        Some(transfer) => unsafe { transfer(socket, wsk_buf, 0, irp) },
        None => STATUS_NOT_IMPLEMENTED,
    });
    done.result()
}

/// Graceful `WskDisconnect` (FIN after the queued sends).
fn disconnect(connection: &mut Connection) -> Result<(), Error> {
    let socket = connection.socket;
    // SAFETY: a live connection socket.
    let table = unsafe { dispatch::<WSK_PROVIDER_CONNECTION_DISPATCH>(socket) };
    let done = connection.io.call(true, |irp| match table.WskDisconnect {
        // SAFETY: live socket, armed IRP, no final buffer.
        Some(disconnect) => unsafe { disconnect(socket, core::ptr::null_mut(), 0, irp) },
        None => STATUS_NOT_IMPLEMENTED,
    });
    done.result().map(drop)
}
