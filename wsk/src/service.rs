//! What a driver keeps between DriverEntry and DriverUnload: the WSK registration and an
//! executor on the driver object ([`Service`]), and a TCP server on top of them
//! ([`TcpService`]: a listener whose accept loop spawns one task per connection).
//!
//! Both own their parts in drop order (the accept task, then the executor with every task,
//! then the registration) and stop with one protocol ([`TcpService::stop`],
//! [`Service::stop`]): stop accepting, shut the executor down (every task is cancelled and its
//! sockets close in the background), abort the sockets nobody closes, wait until every socket
//! is closed, deregister.
//!
//! # What unload guarantees
//!
//! `stop(deadline)` returns, whatever the driver's peers do (never read, never send, never
//! close, half-open connections, a full send window), within about three times `deadline`
//! plus the time the provider takes to complete the `WskCloseSocket` calls it issues: every
//! wait in it has `deadline` as its bound, and the step that would otherwise wait forever,
//! for sockets that nothing closes, is replaced by aborting them (their pending operations
//! are cancelled and their connections reset). It then reports 0 sockets open and every task
//! freed ([`StopOutcome::is_clean`]), unless the driver itself keeps a task's waker or join
//! handle outside the library's operations: such tasks are counted in
//! [`StopOutcome::tasks_leaked`] and the executor is leaked with them (never freed under
//! them), so that unload still ends. The steps and the bound are detailed in
//! [`crate::unload`].
//!
//! # Examples
//!
//! A driver serving TCP connections, one task each:
//!
//! ```no_run
//! use core::net::{Ipv4Addr, SocketAddr};
//! use core::sync::atomic::AtomicU64;
//! use core::time::Duration;
//!
//! use wsk::pool::PoolBox;
//! use wsk::service::{ConnectionCounters, TcpService};
//! use wsk::{DriverGlobal, Error, TcpStream, log};
//! use wsk_sys::{DRIVER_OBJECT, NTSTATUS, STATUS_SUCCESS, UNICODE_STRING};
//!
//! static ACCEPTED: AtomicU64 = AtomicU64::new(0);
//! static OPEN: AtomicU64 = AtomicU64::new(0);
//! static ERRORS: AtomicU64 = AtomicU64::new(0);
//! static COUNTERS: ConnectionCounters =
//!     ConnectionCounters { accepted: &ACCEPTED, open: &OPEN, errors: &ERRORS };
//! static SERVICE: DriverGlobal<TcpService> = DriverGlobal::new();
//!
//! async fn serve(mut stream: TcpStream, _peer: SocketAddr) {
//!     // ... read and write ...
//!     let _ = stream.close().await;
//! }
//!
//! unsafe extern "system" fn driver_entry(driver: *mut DRIVER_OBJECT, _path: *mut UNICODE_STRING) -> NTSTATUS {
//!     let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 7007));
//!     // SAFETY: DriverEntry's own driver object.
//!     let started = unsafe { TcpService::start(driver, "demo", addr, &[], COUNTERS, serve) };
//!     let service = match started.and_then(|s| PoolBox::try_new(s).map_err(|mut s| s.stop_with(Error::NoMemory))) {
//!         Ok(service) => service,
//!         Err(e) => return e.to_status(),
//!     };
//!     let _ = SERVICE.set(service);
//!     // SAFETY: DriverEntry may set DriverUnload.
//!     unsafe { (*driver).DriverUnload = Some(driver_unload) };
//!     STATUS_SUCCESS
//! }
//!
//! unsafe extern "system" fn driver_unload(_driver: *mut DRIVER_OBJECT) {
//!     if let Some(mut service) = SERVICE.take() {
//!         let outcome = service.stop(Duration::from_secs(10));
//!         log!(always, "demo: unload: {}", outcome);
//!     }
//! }
//! ```

use core::future::Future;
use core::net::{IpAddr, SocketAddr};
use core::pin::Pin;
use core::sync::atomic::{AtomicU64, Ordering};
use core::task::{Context, Poll, ready};
use core::time::Duration;

use wsk_executor::{Executor, Importance, IoObject, JoinHandle, Spawner};
use wsk_sys::{DRIVER_OBJECT, DRIVER_UNLOAD, NTSTATUS, STATUS_SUCCESS};

use crate::socket::admission::PeerLimit;
use crate::{Error, Result, SocketOption, TcpListener, TcpStream, Wsk, log};

pub use crate::unload::StopOutcome;

/// How long [`Service::start`] waits for the WSK provider.
pub const PROVIDER_WAIT: Duration = Duration::from_secs(1);

/// The deadline [`Service::stop_with`] and [`TcpService::stop_with`] (DriverEntry's failure
/// paths) give each wait of the unload protocol.
pub const DEFAULT_CLOSE_WAIT: Duration = Duration::from_secs(10);

/// How long a [`TcpService`]'s accept loop waits before accepting again after an accept
/// failed for lack of memory.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(10);

/// DriverEntry's frame around a driver's `start`: logs `<name>: DriverEntry`, runs `start`;
/// if it succeeds, installs `unload` as the driver's DriverUnload and returns
/// `STATUS_SUCCESS`, otherwise logs `<name>: DriverEntry failed: <error>` and returns the
/// error's status (DriverUnload is not installed: the I/O manager does not call it after a
/// failed DriverEntry, so `start` undoes its own work on failure).
///
/// IRQL == PASSIVE_LEVEL (DriverEntry).
///
/// # Safety
///
/// `driver_object` is the driver object DriverEntry received.
pub unsafe fn driver_entry(
    driver_object: *mut DRIVER_OBJECT,
    name: &str,
    unload: DRIVER_UNLOAD,
    start: impl FnOnce() -> Result<()>,
) -> NTSTATUS {
    log!(always, "{}: DriverEntry", name);
    match start() {
        Ok(()) => {
            // SAFETY: the caller's contract: DriverEntry's valid driver object, whose
            // DriverUnload DriverEntry sets.
            unsafe { (*driver_object).DriverUnload = Some(unload) };
            STATUS_SUCCESS
        }
        Err(e) => {
            log!(error, "{}: DriverEntry failed: {}", name, e);
            e.to_status()
        }
    }
}

/// A WSK registration and an executor on the driver object, owned together: the executor
/// (and every task) goes before the registration. Dropped without [`stop`](Self::stop), the
/// parts drop in that order, without the wait for the sockets.
///
/// # Invariants
///
/// Until [`stop`](Self::stop), both parts are present; after it, neither.
pub struct Service {
    /// The driver's name, the prefix of every line this service logs.
    name: &'static str,
    // Field order is drop order: the tasks may use the registration.
    executor: Option<Executor>,
    wsk: Option<Wsk>,
}

impl Service {
    /// Registers with WSK (waiting up to [`PROVIDER_WAIT`] for the provider, which must then
    /// be ready) and starts an executor on `driver_object`. Logs `<name>: WskRegister ok` and
    /// `<name>: WskCaptureProviderNPI ok` as each step succeeds.
    ///
    /// Errors: the registration's, [`Error::NotReady`] if the provider is not ready in time,
    /// the executor's.
    ///
    /// IRQL == PASSIVE_LEVEL (DriverEntry).
    ///
    /// # Safety
    ///
    /// `driver_object` is the driver's own driver object (DriverEntry's argument), valid until
    /// the driver unloads.
    pub unsafe fn start(driver_object: *mut DRIVER_OBJECT, name: &'static str) -> Result<Self> {
        let wsk = Wsk::register(PROVIDER_WAIT)?;
        log!(always, "{}: WskRegister ok", name);
        if !wsk.is_ready() {
            log!(error, "{}: WSK provider not ready after {:?}", name, PROVIDER_WAIT);
            return Err(Error::NotReady);
        }
        log!(always, "{}: WskCaptureProviderNPI ok", name);
        // SAFETY: the caller's contract: the driver's own driver object, valid until unload.
        let io = unsafe { IoObject::from_driver(driver_object) };
        let executor = Executor::new(io)?;
        // INVARIANT: both parts are present.
        Ok(Self { name, executor: Some(executor), wsk: Some(wsk) })
    }

    /// The registration; [`Error::NotReady`] once stopped. Any IRQL.
    pub fn wsk(&self) -> Result<&Wsk> {
        self.wsk.as_ref().ok_or(Error::NotReady)
    }

    /// The executor; [`Error::NotReady`] once stopped. Any IRQL.
    pub fn executor(&self) -> Result<&Executor> {
        self.executor.as_ref().ok_or(Error::NotReady)
    }

    /// The unload protocol, bounded by `deadline` (see the [module docs](self)): shuts the
    /// executor down (every task is cancelled) waiting at most `deadline`, aborts every socket
    /// of the driver that nobody is closing, waits again at most `deadline` for tasks still
    /// alive (then leaks the executor with them) and for the sockets to close, and
    /// deregisters. Returns what it did; [`StopOutcome::is_clean`] when every task was freed
    /// and every socket closed.
    ///
    /// Above PASSIVE_LEVEL the executor cannot be shut down: it is leaked (with a log line),
    /// nothing is aborted, the wait only reports, and the registration is leaked too (see
    /// [`Wsk`]'s drop). Called again, it has nothing left to stop and only aborts and waits for
    /// the sockets.
    ///
    /// IRQL == PASSIVE_LEVEL (DriverUnload; never from one of the executor's tasks).
    pub fn stop(&mut self, deadline: Duration) -> StopOutcome {
        // The registration stays in place until the executor's shutdown is over (tasks may
        // refer to it there); `unload::stop` takes it then.
        // INVARIANT: neither part is left.
        crate::unload::stop(self.name, self.executor.take(), &mut self.wsk, deadline)
    }

    /// [`stop`](Self::stop) with [`DEFAULT_CLOSE_WAIT`], then `error`: for DriverEntry's
    /// failure paths. IRQL == PASSIVE_LEVEL.
    pub fn stop_with(&mut self, error: Error) -> Error {
        self.stop(DEFAULT_CLOSE_WAIT);
        error
    }
}

/// Where a [`TcpService`] counts connections: counters the driver owns (statics it also
/// prints or serves), so that they outlive the service.
#[derive(Clone, Copy)]
pub struct ConnectionCounters {
    /// Connections accepted since the service started.
    pub accepted: &'static AtomicU64,
    /// Connections accepted whose handler has not returned (a handler cancelled at unload
    /// stays counted).
    pub open: &'static AtomicU64,
    /// Accepts that failed (low resources included) and connections that could not be given a
    /// task. The handler adds its own failures.
    pub errors: &'static AtomicU64,
}

/// The admission limits of a [`TcpService`] ([`TcpService::start_limited`]), and the policy
/// when one is reached.
///
/// * `max_connections` (0: unlimited): connections served at once (counted in
///   [`ConnectionCounters::open`]) at most. When the limit is reached, the accept loop stops
///   accepting: it issues no `WskAccept` until a served connection ends (it checks again every
///   [`ACCEPT_BACKOFF`]). Connection requests meanwhile wait in the TCP stack's listen backlog,
///   established but unserved (their data is buffered by the stack, not by the driver), and
///   are served in order as connections end: none is refused by the driver and none costs it
///   memory. When the stack's backlog is full, further requests overflow it: the stack drops
///   or resets them (Windows' and Linux' TCP differ; a peer sees a connect that times out, is
///   retried, or is reset), which is the push back on a flood. The driver holds at most
///   `max_connections` connections, whatever the flood's size.
/// * `per_peer` (`None`: no limit): connections at once from one IP address at most, with
///   conditional accept: the listener is bound with
///   [`TcpListener::bind_conditional`] and `per_peer` as its admission, so a request from an
///   address at its limit is refused before a socket exists (the peer sees a reset). Requests
///   from one address that pass the inspection together (a burst) are counted by the accept
///   loop ([`PeerLimit::try_acquire`]); one beyond the limit is closed at once (its peer sees
///   a reset too). The count drops when the connection's task ends, or is dropped at unload.
///   `per_peer` is `'static` (a driver's `static`, e.g. a
///   [`PerPeerLimit`](crate::socket::admission::PerPeerLimit)): the listener consults it until
///   its close completes, connection tasks until they end.
#[derive(Clone, Copy, Default)]
pub struct Limits {
    /// Connections served at once at most (0: unlimited).
    pub max_connections: u32,
    /// Connections at once per peer address, enforced with conditional accept (`None`: none).
    pub per_peer: Option<&'static dyn PeerLimit>,
}

impl Limits {
    /// No limit (what [`TcpService::start`] uses).
    pub const NONE: Limits = Limits { max_connections: 0, per_peer: None };
}

/// What serves one connection: called with the accepted stream and the peer's address, its
/// future runs as a task of its own. Implemented by every `Send + 'static` closure or function
/// `Fn(TcpStream, SocketAddr) -> impl Future<Output = ()> + Send + 'static`.
pub trait Handler: Send + 'static {
    /// The connection's task.
    type Future: Future<Output = ()> + Send + 'static;

    /// Starts serving `stream`, connected to `peer`. Called in the accept loop's task
    /// (PASSIVE_LEVEL).
    fn serve(&self, stream: TcpStream, peer: SocketAddr) -> Self::Future;
}

impl<H, F> Handler for H
where
    H: Fn(TcpStream, SocketAddr) -> F + Send + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    type Future = F;

    fn serve(&self, stream: TcpStream, peer: SocketAddr) -> F {
        self(stream, peer)
    }
}

/// A [`Service`] with a TCP listener and an accept loop that serves each connection with a
/// task of its own.
///
/// The accept loop runs at [`Importance::High`] (under load the next accept is issued after at
/// most one connection's turn). It counts each connection in [`ConnectionCounters`], logs
/// `<name>: connection from <peer> opened` (info level), spawns the handler's future, backs off
/// [`ACCEPT_BACKOFF`] when an accept fails for lack of memory, logs and counts any other failed
/// accept (it concerns that connection only), and ends when the listener is closed or the
/// task cancelled. With [`Limits`] ([`TcpService::start_limited`]) it also stops accepting at
/// `max_connections` and refuses peers at their `per_peer` limit.
pub struct TcpService {
    // Field order is drop order: the accept task, then the service.
    accept: Option<JoinHandle<()>>,
    service: Service,
}

impl TcpService {
    /// [`Service::start`], then [`listen`](Self::listen).
    ///
    /// IRQL == PASSIVE_LEVEL (DriverEntry).
    ///
    /// # Safety
    ///
    /// As [`Service::start`].
    pub unsafe fn start(
        driver_object: *mut DRIVER_OBJECT,
        name: &'static str,
        addr: SocketAddr,
        options: &[SocketOption],
        counters: ConnectionCounters,
        handler: impl Handler,
    ) -> Result<Self> {
        // SAFETY: forwarded contract.
        unsafe { Self::start_limited(driver_object, name, addr, options, counters, Limits::NONE, handler) }
    }

    /// [`Service::start`], then [`listen_limited`](Self::listen_limited) with `limits`.
    ///
    /// IRQL == PASSIVE_LEVEL (DriverEntry).
    ///
    /// # Safety
    ///
    /// As [`Service::start`].
    pub unsafe fn start_limited(
        driver_object: *mut DRIVER_OBJECT,
        name: &'static str,
        addr: SocketAddr,
        options: &[SocketOption],
        counters: ConnectionCounters,
        limits: Limits,
        handler: impl Handler,
    ) -> Result<Self> {
        // SAFETY: forwarded contract.
        let service = unsafe { Service::start(driver_object, name)? };
        Self::listen_limited(service, addr, options, counters, limits, handler)
    }

    /// Binds a listener on `addr` with `options` (set before the bind) and spawns the accept
    /// loop, which serves each connection with `handler` in a task of its own. Logs
    /// `<name>: listening on <addr>`. On failure the service is stopped (with
    /// [`DEFAULT_CLOSE_WAIT`]) and the error returned; a failed bind is logged.
    ///
    /// IRQL == PASSIVE_LEVEL (DriverEntry).
    pub fn listen(
        service: Service,
        addr: SocketAddr,
        options: &[SocketOption],
        counters: ConnectionCounters,
        handler: impl Handler,
    ) -> Result<Self> {
        Self::listen_limited(service, addr, options, counters, Limits::NONE, handler)
    }

    /// [`listen`](Self::listen) with admission [`Limits`]: with a `per_peer` limit the
    /// listener is bound with conditional accept.
    ///
    /// IRQL == PASSIVE_LEVEL (DriverEntry).
    pub fn listen_limited(
        service: Service,
        addr: SocketAddr,
        options: &[SocketOption],
        counters: ConnectionCounters,
        limits: Limits,
        handler: impl Handler,
    ) -> Result<Self> {
        let mut this = Self { accept: None, service };
        let name = this.service.name;
        let spawned = bind(&this.service, addr, options, limits).and_then(|listener| {
            let executor = this.service.executor()?;
            let accept = accept_loop(listener, executor.spawner(), name, counters, limits, handler);
            Ok(executor.spawn_with(Importance::High, accept)?)
        });
        match spawned {
            Ok(accept) => this.accept = Some(accept),
            Err(e) => return Err(this.stop_with(e)),
        }
        log!(always, "{}: listening on {}", name, addr);
        Ok(this)
    }

    /// The registration and the executor. Any IRQL.
    pub fn service(&self) -> &Service {
        &self.service
    }

    /// The unload protocol: aborts the accept task (no connection is accepted afterwards),
    /// then [`Service::stop`] with `deadline`, whose outcome it returns.
    ///
    /// IRQL == PASSIVE_LEVEL (DriverUnload).
    pub fn stop(&mut self, deadline: Duration) -> StopOutcome {
        if let Some(accept) = self.accept.take() {
            accept.abort();
        }
        self.service.stop(deadline)
    }

    /// [`stop`](Self::stop) with [`DEFAULT_CLOSE_WAIT`], then `error`: for DriverEntry's
    /// failure paths. IRQL == PASSIVE_LEVEL.
    pub fn stop_with(&mut self, error: Error) -> Error {
        self.stop(DEFAULT_CLOSE_WAIT);
        error
    }
}

/// Binds `service`'s listener on `addr` with `options` (with conditional accept for a
/// per-peer limit); a failure is logged.
fn bind(service: &Service, addr: SocketAddr, options: &[SocketOption], limits: Limits) -> Result<TcpListener> {
    let wsk = service.wsk()?;
    let bound = match limits.per_peer {
        Some(per_peer) => wsk_executor::block_on(TcpListener::bind_conditional(wsk, addr, options, per_peer)),
        None => wsk_executor::block_on(TcpListener::bind_with(wsk, addr, options)),
    };
    bound.map_err(Error::from).and_then(|bound| bound).inspect_err(|e| {
        log!(error, "{}: cannot listen on {}: {}", service.name, addr, e);
    })
}

/// Accepts until the listener is closed or the task is cancelled, spawning `handler`'s future
/// for each connection (see [`TcpService`]).
async fn accept_loop(
    mut listener: TcpListener,
    spawner: Spawner,
    name: &'static str,
    counters: ConnectionCounters,
    limits: Limits,
    handler: impl Handler,
) {
    loop {
        // At the connection limit: no accept until a served connection ends (see `Limits`).
        while limits.max_connections != 0 && counters.open.load(Ordering::Acquire) >= u64::from(limits.max_connections)
        {
            wsk_executor::sleep(ACCEPT_BACKOFF).await;
        }
        match listener.accept().await {
            Ok((stream, peer)) => {
                let peer_slot = match limits.per_peer {
                    Some(table) if !table.try_acquire(peer.ip()) => {
                        // Past the peer's limit (a burst that passed the inspection together):
                        // dropping the stream closes it in the background, a reset for the peer.
                        log!(info, "{}: connection from {} refused: per-peer limit", name, peer);
                        drop(stream);
                        continue;
                    }
                    Some(table) => Some(PeerSlot { table, ip: peer.ip() }),
                    None => None,
                };
                counters.accepted.fetch_add(1, Ordering::Relaxed);
                counters.open.fetch_add(1, Ordering::AcqRel);
                log!(info, "{}: connection from {} opened", name, peer);
                let served = Counted { served: handler.serve(stream, peer), open: counters.open, peer_slot };
                if let Err(e) = spawner.spawn(served) {
                    // The stream was dropped with the future: it is closed in the background.
                    counters.open.fetch_sub(1, Ordering::Relaxed);
                    counters.errors.fetch_add(1, Ordering::Relaxed);
                    log!(error, "{}: cannot serve {}: {:?}", name, peer, e);
                }
            }
            Err(Error::NoMemory) => {
                // Low resources: back off and keep serving.
                counters.errors.fetch_add(1, Ordering::Relaxed);
                wsk_executor::sleep(ACCEPT_BACKOFF).await;
            }
            Err(Error::Closed | Error::Cancelled) => return,
            Err(e) => {
                // A connection that failed between its arrival and the accept (reset by the
                // peer, for example): it concerns that connection only.
                counters.errors.fetch_add(1, Ordering::Relaxed);
                log!(info, "{}: accept failed: {}", name, e);
            }
        }
    }
}

/// A connection's task: the handler's future, after which the connection is no longer counted
/// open. Not an `async` block around the handler's future: that keeps room for the future
/// twice (as captured and as awaited), and spawning moves the task through a stack frame,
/// which above a page needs a stack probe (`__chkstk`) that a driver image does not link.
struct Counted<F> {
    served: F,
    open: &'static AtomicU64,
    /// The connection's count in the per-peer limit, released when the task ends or is
    /// dropped (not pinned: only dropped).
    peer_slot: Option<PeerSlot>,
}

/// One connection counted in a per-peer limit; dropping it releases the count.
struct PeerSlot {
    table: &'static dyn PeerLimit,
    ip: IpAddr,
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        self.table.release(self.ip);
    }
}

impl<F: Future<Output = ()>> Future for Counted<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // SAFETY: `served` is never moved out of a pinned `Counted` (structural pinning; the
        // type has no `Drop` and no `Unpin` impl of its own).
        let this = unsafe { self.get_unchecked_mut() };
        // SAFETY: as above.
        let served = unsafe { Pin::new_unchecked(&mut this.served) };
        ready!(served.poll(cx));
        this.open.fetch_sub(1, Ordering::AcqRel);
        // The peer's count goes with the connection (the task's future stays until dropped).
        drop(this.peer_slot.take());
        Poll::Ready(())
    }
}
