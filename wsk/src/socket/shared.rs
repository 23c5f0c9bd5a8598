//! The shared core of a socket: the `WSK_SOCKET`, the reserved close IRP, and the close
//! rundown that keeps the WSK close contract.
//!
//! # The close contract, rule by rule
//!
//! 1-2. Every call into the socket's dispatch table runs inside a `CallGuard` from
//!      `SocketCore::enter`: an atomic test-and-increment of the call count that fails once
//!      close has begun. `WskCloseSocket` is issued only when the count is zero; `close()`
//!      waits for that asynchronously (no thread blocks). Pending IRPs of earlier calls are
//!      allowed and do not hold the count.
//! 3.   `WskCloseSocket` cancels the socket's pending IRPs (their operations resolve
//!      `Err(Cancelled)`) and completes only after in-flight event callbacks returned;
//!      `close()` resolves only when the close IRP completes.
//! 4.   After close begins, `SocketCore::enter` fails with [`Error::Closed`]; `close(self)`
//!      consumes the handle.
//! 5.   A connection not disconnected in both directions is aborted by the provider.
//! 6.   The close IRP is allocated with the socket (close cannot fail for lack of memory); its
//!      completion routine returns `STATUS_MORE_PROCESSING_REQUIRED` and the IRP is freed
//!      with the core.
//!
//! # Rundown word
//!
//! ```text
//!  bit 0  CLOSING       no new calls (set once, never cleared)
//!  bit 1  CLOSE_ISSUED  WskCloseSocket was called (exactly once)
//!  bit 2  CLOSE_DONE    the close IRP completed
//!  bit 3  BACKGROUND    the last owner went away while calls were in progress: the call
//!                       that leaves last issues the close
//!  bits 4.. calls in progress (count << 4)
//! ```
//!
//! "Calls" are calls into the socket's dispatch table, and also the references that event
//! streams and retained data indications hold (see `socket::events`): each must end before
//! `WskCloseSocket`, because each may still call `WskRelease`.
//!
//! The core is reference counted: one reference per owner handle (stream, listener, halves)
//! plus one while the close IRP is in flight. The last reference frees the close IRP and the
//! core. When the last owner goes away without `close()`, it issues the close itself
//! (background close). Calls that borrow an owner cannot be in progress then; references
//! held by event machinery can (an event callback cleaning up after its stream was dropped),
//! so the last owner then marks the close `BACKGROUND` and the last call out issues it.

use core::any::TypeId;
use core::ffi::c_void;
use core::marker::PhantomData;
use core::mem::ManuallyDrop;
use core::ptr::NonNull;
use core::task::Poll;

use wsk_executor::AtomicWaker;
use wsk_sys::{DEVICE_OBJECT, IRP, NTSTATUS, STATUS_MORE_PROCESSING_REQUIRED, WSK_PROVIDER_BASIC_DISPATCH, WSK_SOCKET};

use crate::error::{Error, Result};
use crate::loom::{AtomicU32, AtomicUsize, Ordering};
use crate::pool::PoolBox;
use crate::socket::admission::Admission;
use crate::socket::events::{EventBox, Header};
use crate::socket::inspection::Inspections;
use crate::socket::kind::SocketKind;
use crate::socket::registry::{Linked, Links, Registry};

const CLOSING: usize = 1 << 0;
const CLOSE_ISSUED: usize = 1 << 1;
const CLOSE_DONE: usize = 1 << 2;
const BACKGROUND: usize = 1 << 3;
const CALL_ONE: usize = 1 << 4;
const FLAGS: usize = CALL_ONE - 1;

/// Begins a call: test-and-increment, failing once `CLOSING` is set (rules 1, 2, 4).
pub(crate) fn rundown_enter(rundown: &AtomicUsize) -> Result<()> {
    let mut v = rundown.load(Ordering::Acquire);
    loop {
        if v & CLOSING != 0 {
            return Err(Error::Closed);
        }
        match rundown.compare_exchange_weak(v, v + CALL_ONE, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return Ok(()),
            Err(actual) => v = actual,
        }
    }
}

/// What the call that just ended must do.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
    /// Nothing: other calls remain, or no close waits.
    Nothing,
    /// Last call out while `close()` waits: wake the closer.
    WakeCloser,
    /// Last call out after the last owner went away: issue the background close (the
    /// `CLOSE_ISSUED` bit is already claimed for the caller).
    IssueBackground,
}

/// Ends a call.
pub(crate) fn rundown_exit(rundown: &AtomicUsize) -> Exit {
    let prev = rundown.fetch_sub(CALL_ONE, Ordering::AcqRel);
    if prev & CLOSING == 0 || prev & !FLAGS != CALL_ONE {
        return Exit::Nothing;
    }
    if prev & BACKGROUND == 0 {
        return Exit::WakeCloser;
    }
    match rundown_claim_close(rundown) {
        Claim::Issue => Exit::IssueBackground,
        Claim::AlreadyIssued | Claim::Busy(_) => Exit::Nothing,
    }
}

/// The closer's attempt to issue the close.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Claim {
    /// No call in progress: this closer issues `WskCloseSocket`.
    Issue,
    /// Another closer issued it already.
    AlreadyIssued,
    /// Calls are in progress (the observed word): wait and try again.
    Busy(usize),
}

/// Sets `CLOSING` (idempotent) and tries to claim `CLOSE_ISSUED` with no call in progress.
pub(crate) fn rundown_claim_close(rundown: &AtomicUsize) -> Claim {
    rundown.fetch_or(CLOSING, Ordering::AcqRel);
    loop {
        let v = rundown.load(Ordering::Acquire);
        if v & CLOSE_ISSUED != 0 {
            return Claim::AlreadyIssued;
        }
        if v >= CALL_ONE {
            return Claim::Busy(v);
        }
        if rundown.compare_exchange(v, v | CLOSE_ISSUED, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            return Claim::Issue;
        }
    }
}

/// The last owner went away without `close()`: marks the close `BACKGROUND` and claims it
/// if no call is in progress (`Claim::Busy`: the last call out issues it, see
/// [`rundown_exit`]).
pub(crate) fn rundown_last_owner(rundown: &AtomicUsize) -> Claim {
    rundown.fetch_or(CLOSING | BACKGROUND, Ordering::AcqRel);
    rundown_claim_close(rundown)
}

/// An abort of a socket nobody closes (`abort_all_sockets`): marks the close `BACKGROUND`,
/// as a last owner's drop does, but only if close has not begun; then tries to claim it (on
/// `Claim::Busy` the last call out issues it, see [`rundown_exit`]). `None`: close had begun,
/// nothing was changed.
pub(crate) fn rundown_abort(rundown: &AtomicUsize) -> Option<Claim> {
    let mut v = rundown.load(Ordering::Acquire);
    loop {
        if v & CLOSING != 0 {
            return None;
        }
        match rundown.compare_exchange_weak(v, v | CLOSING | BACKGROUND, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return Some(rundown_claim_close(rundown)),
            Err(actual) => v = actual,
        }
    }
}

/// Pool tag of socket cores ("WskS"; the table is [`crate::pool::tag`]).
pub const SOCKET_TAG: u32 = crate::pool::tag::SOCKET;

/// Live socket cores (for diagnostics and unload checks). The host's atomic, not the loom
/// shim's: a static is never part of a loom model (and loom's atomics cannot be statics).
#[cfg_attr(
    not(loom),
    expect(unused_qualifications, reason = "without loom the shim's `AtomicUsize` is this same type")
)]
static LIVE_SOCKETS: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

/// Number of sockets whose memory is not yet freed (open, or closing in the background).
/// Any IRQL.
pub fn live_sockets() -> usize {
    LIVE_SOCKETS.load(Ordering::Acquire)
}

/// WSK sockets created for the driver whose `WskCloseSocket` has not completed. The host's
/// atomic, as [`LIVE_SOCKETS`].
#[cfg_attr(
    not(loom),
    expect(unused_qualifications, reason = "without loom the shim's `AtomicUsize` is this same type")
)]
static OPEN_SOCKETS: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

/// Number of WSK sockets the provider created (or accepted) for the driver whose close has
/// not completed: what `WskDeregister` waits for. Lower than [`live_sockets`] by the sockets
/// that are closed but whose handles (or memory) the driver still holds, and by those whose
/// creation is still in flight. Any IRQL.
pub fn open_sockets() -> usize {
    OPEN_SOCKETS.load(Ordering::Acquire)
}

/// The pool block of a core.
type CoreBox = PoolBox<CoreInner, SOCKET_TAG>;

struct CoreInner {
    refs: AtomicU32,
    rundown: AtomicUsize,
    socket: core::sync::atomic::AtomicPtr<WSK_SOCKET>,
    close_irp: NonNull<IRP>,
    close_status: core::sync::atomic::AtomicI32,
    waker: AtomicWaker,
    /// Event callback state (`socket::events`), installed once; freed with the core.
    events: core::sync::atomic::AtomicPtr<Header>,
    /// The `WSK_EVENT_*` callbacks WSK enables on the socket from its creation (the client's
    /// static event callbacks, `socket::events::static_events`); set before the socket exists.
    static_events: AtomicU32,
    /// The connection events WSK turns on for a socket a listening socket's accept callback
    /// took, when it records the callback's answer: those enabled on the listening socket
    /// (`socket::events::listen`); set before the accept callback can take the socket.
    inherited_events: AtomicU32,
    /// What event callbacks met before a stream installed its state (`socket::events`).
    early: AtomicU32,
    /// A conditional-accept listener's decision (`socket::admission`); set at creation,
    /// never changed.
    admission: Option<&'static dyn Admission>,
    /// Links in [`CORES`], from allocation until freed.
    links: Links<CoreInner>,
    /// The pended-inspection table of a listener whose admission pends
    /// (`socket::inspection`); one reference held by the core, released in `free`.
    inspections: Option<NonNull<Inspections>>,
}

// SAFETY: `links` is a field of the core, the same one every time.
unsafe impl Linked for CoreInner {
    fn links(&self) -> &Links<Self> {
        &self.links
    }
}

/// Every core from allocation until freed (`socket::registry`), for [`abort_all_sockets`].
static CORES: Registry<CoreInner> = Registry::new();

// SAFETY: shared fields are atomics; `close_irp` is touched only by the single closer (and the
// provider), `socket` is a provider object usable from any thread.
unsafe impl Sync for CoreInner {}
// SAFETY: as above.
unsafe impl Send for CoreInner {}

/// An owner handle to the core of a socket of kind `K` (one reference).
///
/// # Invariants
/// `inner` points to a live `CoreInner` on which this handle holds one reference. A core
/// has one kind for its whole life: every handle to it is a `SocketCore<K>` of that kind, or
/// an [`AnyCore`] that records it. The socket recorded in the core, once set, is a WSK socket
/// of that kind whose context is the core; an event state installed on it is a `K::State`.
pub(crate) struct SocketCore<K> {
    inner: NonNull<CoreInner>,
    kind: PhantomData<fn() -> K>,
}

// SAFETY: all shared state is atomic; the WSK socket may be used from any thread.
unsafe impl<K> Send for SocketCore<K> {}
// SAFETY: as above.
unsafe impl<K> Sync for SocketCore<K> {}

/// Proof that a call into the socket is in progress; dropping it ends the call.
pub(crate) struct CallGuard<'a, K> {
    core: &'a SocketCore<K>,
    /// The socket (not null: checked when the call began).
    socket: *mut WSK_SOCKET,
}

impl<K: SocketKind> SocketCore<K> {
    /// Allocates a core with its reserved close IRP, before the socket exists.
    /// IRQL <= DISPATCH_LEVEL.
    pub fn new() -> Result<Self> {
        Self::new_admitting(None)
    }

    /// [`SocketCore::new`] for a conditional-accept listener whose connection requests
    /// `admission` decides (`socket::events::inspect`). IRQL <= DISPATCH_LEVEL.
    pub fn new_admitting(admission: Option<&'static dyn Admission>) -> Result<Self> {
        let inspections = match admission {
            Some(admission) if admission.pends() => Some(Inspections::new()?),
            _ => None,
        };
        let release_inspections = || {
            if let Some(table) = inspections {
                // SAFETY: the table's only reference, never shared.
                unsafe { Inspections::release(table) };
            }
        };
        // SAFETY: plain IRP allocation.
        let Some(irp) = NonNull::new(unsafe { wsk_sys::IoAllocateIrp(1, 0) }) else {
            release_inspections();
            return Err(Error::NoMemory);
        };
        let inner = CoreBox::try_new_tagged(CoreInner {
            refs: AtomicU32::new(1),
            rundown: AtomicUsize::new(0),
            socket: core::sync::atomic::AtomicPtr::new(core::ptr::null_mut()),
            close_irp: irp,
            close_status: core::sync::atomic::AtomicI32::new(0),
            waker: AtomicWaker::new(),
            events: core::sync::atomic::AtomicPtr::new(core::ptr::null_mut()),
            static_events: AtomicU32::new(0),
            inherited_events: AtomicU32::new(0),
            early: AtomicU32::new(0),
            admission,
            links: Links::new(),
            inspections,
        });
        let Ok(inner) = inner else {
            // SAFETY: allocated above, never used.
            unsafe { wsk_sys::IoFreeIrp(irp.as_ptr()) };
            release_inspections();
            return Err(Error::NoMemory);
        };
        LIVE_SOCKETS.fetch_add(1, Ordering::AcqRel);
        let inner = CoreBox::into_raw(inner);
        // SAFETY: a fresh core, not linked; it stays at this address until `free` unlinks it.
        unsafe { CORES.link(inner) };
        if let Some(table) = inspections {
            // SAFETY: the core's reference keeps the table live; not shared yet.
            unsafe { table.as_ref() }.attach(inner.as_ptr().cast());
        }
        // INVARIANT: one reference, held by the returned handle; no socket yet.
        Ok(Self { inner, kind: PhantomData })
    }

    /// Runs `f` with a view of the core behind a `SocketContext` (in an event callback).
    /// `None` (and `f` does not run) when `context` is null.
    ///
    /// # Safety
    /// `context` came from [`SocketCore::context`] of a core of kind `K` that stays live
    /// while `f` runs: WSK calls a socket's callbacks, from the client dispatch table of its
    /// kind, only until its close completes, and the close IRP holds a reference until then.
    ///
    /// Any IRQL.
    pub unsafe fn with_context<R>(context: *mut c_void, f: impl FnOnce(CoreRef<'_, K>) -> R) -> Option<R> {
        let inner = NonNull::new(context.cast::<CoreInner>())?;
        // INVARIANT (of the view): not an owner handle: wrapped in ManuallyDrop and never
        // taken out, so no reference is released; the caller guarantees liveness while `f`
        // runs, which the view cannot outlive.
        let view = CoreRef { core: ManuallyDrop::new(SocketCore { inner, kind: PhantomData }), life: PhantomData };
        Some(f(view))
    }

    /// Installs the event state (once), which then lives as long as the core; returns its
    /// address. Hands it back if one is installed already.
    ///
    /// Any IRQL.
    pub fn install_events(
        &self,
        state: EventBox<K::State>,
    ) -> core::result::Result<NonNull<K::State>, EventBox<K::State>> {
        let ptr = EventBox::into_raw(state);
        let installed = self.inner().events.compare_exchange(
            core::ptr::null_mut(),
            ptr.cast::<Header>().as_ptr(),
            Ordering::AcqRel,
            Ordering::Acquire,
        );
        if installed.is_err() {
            // SAFETY: not installed: ownership comes back from `into_raw` above.
            return Err(unsafe { EventBox::from_raw_tagged(ptr) });
        }
        Ok(ptr)
    }

    /// Records the event callbacks WSK turns on for the socket at its creation (the client's
    /// static event callbacks that apply to kind `K`). Before the socket is created (or the
    /// accepted socket handed over). Any IRQL.
    pub fn set_static_events(&self, mask: u32) {
        self.inner().static_events.store(mask, Ordering::Release);
    }

    /// The event callbacks on from the socket's creation (see
    /// [`SocketCore::set_static_events`]). Any IRQL.
    pub fn static_events(&self) -> u32 {
        self.inner().static_events.load(Ordering::Acquire)
    }

    /// Records the connection events the socket inherits from the listening socket whose
    /// accept callback takes it (see `socket::events::listen`). Before the callback can take
    /// it. Any IRQL.
    pub fn set_inherited_events(&self, mask: u32) {
        self.inner().inherited_events.store(mask, Ordering::Release);
    }

    /// The event callbacks WSK turns on for the socket without a `SO_WSK_EVENT_CALLBACK` on
    /// it: the static ones and the inherited ones. The library never disables them (a
    /// static one cannot be; an inherited one may be on or not yet, see
    /// `socket::events::listen`). Any IRQL.
    pub fn preset_events(&self) -> u32 {
        self.static_events() | self.inner().inherited_events.load(Ordering::Acquire)
    }

    /// The word through which callbacks hand events they met before a stream installed its
    /// state over to the stream (the handshake is `socket::events::early_note` and
    /// `early_take`). Any IRQL.
    pub fn early(&self) -> &AtomicU32 {
        &self.inner().early
    }

    /// The decision for connection requests given at creation
    /// ([`SocketCore::new_admitting`]). Any IRQL.
    pub fn admission(&self) -> Option<&'static dyn Admission> {
        self.inner().admission
    }

    /// The pended-inspection table, for a listener whose admission pends. Any IRQL.
    pub fn inspections(&self) -> Option<NonNull<Inspections>> {
        self.inner().inspections
    }

    /// The installed event state, if any, for as long as the handle (or view) is borrowed.
    ///
    /// Any IRQL.
    pub fn events(&self) -> Option<&K::State> {
        // The state's own pointer (a reference to its header would cover the header only).
        let header = NonNull::new(self.inner().events.load(Ordering::Acquire))?;
        // SAFETY: by the invariant the installed state is a `K::State`, whose first field is
        // its header (`EventState`); it is freed with the core, which `&self` keeps alive.
        Some(unsafe { header.cast::<K::State>().as_ref() })
    }

    /// Begins a call into the socket: fails with [`Error::Closed`] once close has begun (and
    /// with [`Error::InvalidInput`] before the socket exists).
    /// IRQL <= DISPATCH_LEVEL.
    pub fn enter(&self) -> Result<CallGuard<'_, K>> {
        rundown_enter(&self.inner().rundown)?;
        let guard = CallGuard { core: self, socket: self.socket() };
        if guard.socket.is_null() {
            return Err(Error::InvalidInput("the socket was not created"));
        }
        Ok(guard)
    }

    /// The WSK socket and its dispatch table for a call begun with
    /// [`SocketCore::enter_owned`].
    ///
    /// # Safety
    /// The socket was created, and a call begun with [`SocketCore::enter_owned`] on this core
    /// is held (not yet left) while the table is used.
    ///
    /// Any IRQL.
    pub unsafe fn dispatch_held(&self) -> (*mut WSK_SOCKET, &K::Dispatch) {
        let socket = self.socket();
        // SAFETY: the socket was created and a call is held, so it is open and its provider
        // table valid (caller); by the invariant the table is a `K::Dispatch`.
        (socket, unsafe { dispatch_of::<K>(socket) })
    }
}

/// The provider dispatch table of `socket`, of kind `K`.
///
/// # Safety
/// `socket` is an open socket of kind `K`, open while the table is used.
unsafe fn dispatch_of<'t, K: SocketKind>(socket: *mut WSK_SOCKET) -> &'t K::Dispatch {
    // SAFETY: guaranteed by the caller.
    let dispatch = unsafe { (*socket).Dispatch };
    // SAFETY: the provider's table of a socket of kind `K` is a `K::Dispatch`.
    unsafe { &*dispatch.cast::<K::Dispatch>() }
}

impl<K> SocketCore<K> {
    fn inner(&self) -> &CoreInner {
        // SAFETY: by the invariant the core is live while this handle exists.
        unsafe { self.inner.as_ref() }
    }

    /// This handle's reference, as a handle of kind `J` (no reference is taken or released).
    fn retype<J>(self) -> SocketCore<J> {
        let this = ManuallyDrop::new(self);
        SocketCore { inner: this.inner, kind: PhantomData }
    }

    /// Records the socket WSK created. Called once, before the core is shared.
    ///
    /// # Safety
    /// `socket` is a WSK socket of this core's kind, created (or accepted) with this core as
    /// its context and with the kind's client dispatch table.
    ///
    /// Any IRQL.
    pub unsafe fn set_socket(&self, socket: *mut WSK_SOCKET) {
        // INVARIANT: the socket is of this core's kind (caller).
        let previous = self.inner().socket.swap(socket, Ordering::AcqRel);
        if previous.is_null() && !socket.is_null() {
            OPEN_SOCKETS.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// The pointer WSK gets as this socket's `SocketContext`: event callbacks view the core
    /// through it with [`SocketCore::with_context`].
    ///
    /// Any IRQL.
    pub fn context(&self) -> *mut c_void {
        self.inner.as_ptr().cast()
    }

    /// The socket WSK created (null before creation). Any IRQL.
    pub fn socket(&self) -> *mut WSK_SOCKET {
        self.inner().socket.load(Ordering::Acquire)
    }

    /// The header of the installed event state, if any. Any IRQL.
    fn events_header(&self) -> Option<&Header> {
        let header = NonNull::new(self.inner().events.load(Ordering::Acquire))?;
        // SAFETY: an installed state lives as long as the core, which `&self` keeps alive.
        Some(unsafe { header.as_ref() })
    }

    /// Whether close has begun (no new call is accepted). Any IRQL.
    pub fn is_closing(&self) -> bool {
        self.inner().rundown.load(Ordering::Acquire) & CLOSING != 0
    }

    /// Begins a call that is not tied to a borrow (held by an event stream or a retained
    /// indication); end it with [`SocketCore::leave`]. Fails once close has begun.
    ///
    /// Any IRQL.
    pub fn enter_owned(&self) -> Result<()> {
        rundown_enter(&self.inner().rundown)
    }

    /// Ends a call begun with [`SocketCore::enter_owned`]: wakes a waiting closer, or issues
    /// the background close, when it is the last.
    ///
    /// IRQL <= DISPATCH_LEVEL.
    pub fn leave(&self) {
        leave(self.inner);
    }

    /// A second owner handle (for split halves).
    ///
    /// Any IRQL.
    pub fn clone_owner(&self) -> Self {
        self.inner().refs.fetch_add(1, Ordering::Relaxed);
        // INVARIANT: the reference just taken belongs to the new handle, of the same kind.
        Self { inner: self.inner, kind: PhantomData }
    }

    /// `close()`: stops new calls, waits for calls in progress, issues `WskCloseSocket` with
    /// the reserved IRP and waits for it. Resolves with the close status. Only the first
    /// closer issues the close; a later closer waits for the same completion.
    /// IRQL == PASSIVE_LEVEL (task context).
    pub async fn close(&self) -> Result<()> {
        let inner = self.inner();
        // Stop new calls, and tell an event stream, which holds a call while it may still
        // release indications, to wind down.
        inner.rundown.fetch_or(CLOSING, Ordering::AcqRel);
        if let Some(events) = self.events_header() {
            events.waker.wake();
        }
        // Pended inspections hold calls: the listener rejects those no handle decided yet,
        // rather than wait for the driver's handles.
        close_inspections(inner);
        // Wait until no call is in progress, then claim the right to issue the close.
        let issue = core::future::poll_fn(|cx| {
            loop {
                match rundown_claim_close(&inner.rundown) {
                    Claim::Issue => return Poll::Ready(true),
                    Claim::AlreadyIssued => return Poll::Ready(false),
                    Claim::Busy(v) => {
                        inner.waker.register(cx.waker());
                        if inner.rundown.load(Ordering::Acquire) == v {
                            return Poll::Pending;
                        }
                    }
                }
            }
        })
        .await;
        if issue {
            // SAFETY: CLOSE_ISSUED was claimed by us with no call in progress.
            unsafe { self.issue_close() };
        }
        core::future::poll_fn(|cx| {
            if inner.rundown.load(Ordering::Acquire) & CLOSE_DONE != 0 {
                return Poll::Ready(());
            }
            inner.waker.register(cx.waker());
            if inner.rundown.load(Ordering::Acquire) & CLOSE_DONE != 0 { Poll::Ready(()) } else { Poll::Pending }
        })
        .await;
        crate::error::check(inner.close_status.load(Ordering::Acquire))
    }

    /// Calls `WskCloseSocket` with the reserved IRP; the IRP holds a core reference until it
    /// completes. With no socket (creation failed) the close completes at once.
    ///
    /// # Safety
    /// The caller set `CLOSE_ISSUED` (exactly once) while no call was in progress.
    unsafe fn issue_close(&self) {
        // SAFETY: forwarded contract.
        unsafe { issue_close(self.inner) }
    }
}

/// See [`SocketCore::issue_close`]. Takes a core reference for the close IRP, released when
/// the close completes (at once when there is no socket to close).
///
/// # Safety
/// The core is live; the caller set `CLOSE_ISSUED` (exactly once) while no call was in
/// progress.
unsafe fn issue_close(ptr: NonNull<CoreInner>) {
    // SAFETY: guaranteed by the caller.
    let inner = unsafe { ptr.as_ref() };
    inner.refs.fetch_add(1, Ordering::AcqRel);
    let socket = inner.socket.load(Ordering::Acquire);
    let close = if socket.is_null() {
        None
    } else {
        // SAFETY: no call is in progress (rule 1) and none can start (CLOSING); the basic
        // dispatch table is the prefix of every socket kind's table.
        let dispatch = unsafe { (*socket).Dispatch };
        // SAFETY: as above.
        let basic = unsafe { &*dispatch.cast::<WSK_PROVIDER_BASIC_DISPATCH>() };
        basic.WskCloseSocket
    };
    let Some(close) = close else {
        // Never created (or a provider without close): nothing to close.
        let status = if socket.is_null() { wsk_sys::STATUS_SUCCESS } else { wsk_sys::STATUS_NOT_IMPLEMENTED };
        inner.close_status.store(status, Ordering::Release);
        inner.rundown.fetch_or(CLOSE_DONE, Ordering::AcqRel);
        inner.waker.wake();
        // SAFETY: the reference taken above.
        unsafe { release(ptr) };
        return;
    };
    let irp = inner.close_irp.as_ptr();
    // SAFETY: the close IRP is used exactly once, never reused; it has one stack location.
    unsafe { wsk_sys::IoSetCompletionRoutine(irp, Some(close_complete), ptr.as_ptr().cast(), true, true, true) };
    // SAFETY: valid socket and IRP; the completion routine handles every outcome and
    // releases the reference taken above.
    unsafe {
        close(socket, irp);
    }
}

impl<K: SocketKind> CallGuard<'_, K> {
    /// The WSK socket and its dispatch table, usable while the guard is held.
    ///
    /// Any IRQL.
    pub fn dispatch(&self) -> (*mut WSK_SOCKET, &K::Dispatch) {
        // SAFETY: while a call is in progress the socket is open (close waits for the count to
        // drain); it is not null (checked when the call began) and of kind `K` (invariant).
        (self.socket, unsafe { dispatch_of::<K>(self.socket) })
    }
}

impl<K> Drop for CallGuard<'_, K> {
    fn drop(&mut self) {
        leave(self.core.inner);
    }
}

/// A view of a core in an event callback ([`SocketCore::with_context`]): it borrows the
/// core for the callback's duration and holds no reference, so it cannot release one.
///
/// # Invariants
/// `core` is never dropped (nor taken out): it stands for no reference.
pub(crate) struct CoreRef<'a, K> {
    core: ManuallyDrop<SocketCore<K>>,
    life: PhantomData<&'a CoreInner>,
}

impl<K> core::ops::Deref for CoreRef<'_, K> {
    type Target = SocketCore<K>;

    fn deref(&self) -> &SocketCore<K> {
        &self.core
    }
}

impl<K> CoreRef<'_, K> {
    /// Takes over an owner reference on the viewed core that no handle holds: the one an
    /// event stream dropped while a callback was inside left to that callback.
    ///
    /// # Safety
    /// The caller owns such a reference, and hands it over here once.
    ///
    /// Any IRQL.
    pub unsafe fn adopt_owner(&self) -> SocketCore<K> {
        // INVARIANT: the reference the caller owns belongs to the new handle.
        SocketCore { inner: self.core.inner, kind: PhantomData }
    }
}

/// The kind marker of an [`AnyCore`]'s handle (no socket kind: it gives no dispatch table).
pub(crate) enum Erased {}

/// An owner handle whose kind is known at run time only: what an operation that creates or
/// accepts a socket holds while it is in flight (`op::SocketOwner`), and what a
/// [`Closer`](crate::Closer) holds. Turns back into a typed handle with
/// [`AnyCore::downcast`], which checks the kind.
pub(crate) struct AnyCore {
    core: SocketCore<Erased>,
    kind: TypeId,
}

impl<K: SocketKind> From<SocketCore<K>> for AnyCore {
    fn from(core: SocketCore<K>) -> Self {
        AnyCore { core: core.retype(), kind: TypeId::of::<K>() }
    }
}

impl AnyCore {
    /// The handle as a core of kind `K`, or itself back if the core is of another kind.
    ///
    /// Any IRQL.
    pub fn downcast<K: SocketKind>(self) -> core::result::Result<SocketCore<K>, Self> {
        if self.kind == TypeId::of::<K>() { Ok(self.core.retype()) } else { Err(self) }
    }

    /// See [`SocketCore::set_socket`].
    ///
    /// # Safety
    /// `socket` is a WSK socket of the kind this handle was made from, created (or accepted)
    /// with this core as its context and that kind's client dispatch table.
    ///
    /// Any IRQL.
    pub unsafe fn set_socket(&self, socket: *mut WSK_SOCKET) {
        // SAFETY: forwarded contract.
        unsafe { self.core.set_socket(socket) }
    }

    /// See [`SocketCore::close`]. IRQL == PASSIVE_LEVEL (task context).
    pub async fn close(&self) -> Result<()> {
        self.core.close().await
    }
}

/// Ends one call on the live core `ptr` (see [`rundown_exit`]).
fn leave(ptr: NonNull<CoreInner>) {
    // SAFETY: the call being ended keeps the core live: the close cannot be issued (and so
    // cannot complete) while the call count is non-zero, and a background close keeps a
    // reference until it is issued below.
    let inner = unsafe { ptr.as_ref() };
    match rundown_exit(&inner.rundown) {
        Exit::Nothing => {}
        // Last call out while a close waits: let it proceed.
        Exit::WakeCloser => inner.waker.wake(),
        Exit::IssueBackground => {
            // SAFETY: CLOSE_ISSUED was claimed for us with no call in progress.
            unsafe { issue_close(ptr) };
            // SAFETY: the background reference (taken by the last owner), released after
            // the close IRP took its own.
            unsafe { release(ptr) };
        }
    }
}

impl<K> Drop for SocketCore<K> {
    fn drop(&mut self) {
        let inner = self.inner();
        if inner.refs.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        // Last reference. If the socket was never closed, close it in the background. Calls
        // that borrow an owner cannot be in progress, but event machinery may still hold
        // calls (see the module docs): then the last of them issues the close. Either way a
        // "background" reference keeps the core alive until the close IRP took its own.
        if inner.rundown.load(Ordering::Acquire) & CLOSE_ISSUED != 0 {
            // The close was issued earlier and, since no reference is left, has completed.
            // SAFETY: zero references: nothing else reaches the core.
            unsafe { free(self.inner) };
            return;
        }
        inner.refs.store(1, Ordering::Release);
        // Pended inspections hold calls: rejected by the listener first (with CLOSING set
        // so none is pended after; their completions, as calls, order the close after them).
        inner.rundown.fetch_or(CLOSING, Ordering::AcqRel);
        close_inspections(inner);
        match rundown_last_owner(&inner.rundown) {
            Claim::Issue => {
                // SAFETY: we claimed CLOSE_ISSUED with no call in progress.
                unsafe { issue_close(self.inner) };
                // SAFETY: the background reference goes (the close IRP holds its own).
                unsafe { release(self.inner) };
            }
            // The last call out issues it (and releases the background reference).
            Claim::Busy(_) => {}
            // CLOSE_ISSUED was clear above and no other owner is left, so the last call out
            // claimed it between our marking and our claim: it issued the close and released
            // the background reference; releasing it here too would free the core under the
            // close IRP.
            Claim::AlreadyIssued => {}
        }
    }
}

/// Drops one reference; the last frees the close IRP and the core.
///
/// # Safety
/// The caller owns one reference to the live core and does not use it afterwards.
unsafe fn release(inner: NonNull<CoreInner>) {
    // SAFETY: the caller's reference keeps the core live until the decrement.
    let refs = unsafe { &inner.as_ref().refs };
    if refs.fetch_sub(1, Ordering::AcqRel) != 1 {
        return;
    }
    // SAFETY: that was the last reference.
    unsafe { free(inner) }
}

/// Frees the close IRP and the core.
///
/// # Safety
/// No reference to the core is left.
unsafe fn free(inner: NonNull<CoreInner>) {
    // SAFETY: linked since `SocketCore::new`; no reference is left, so no walker stands on it
    // (a walker holds one) and none can take one (never raised from zero).
    unsafe { CORES.unlink(inner) };
    // SAFETY: guaranteed by the caller; the core came from `CoreBox::into_raw`.
    let core = unsafe { CoreBox::from_raw_tagged(inner) };
    // SAFETY: the close IRP is not in flight (its reference is gone) and is ours.
    unsafe { wsk_sys::IoFreeIrp(core.close_irp.as_ptr()) };
    if let Some(table) = core.inspections {
        // SAFETY: the core's reference; the close completed, so no slot holds a call.
        unsafe { Inspections::release(table) };
    }
    if let Some(events) = NonNull::new(core.events.load(Ordering::Acquire)) {
        // SAFETY: the close completed (or the socket never existed), so WSK makes no more
        // callbacks, and no stream or indication is left (each holds a core reference).
        unsafe { crate::socket::events::free(events) };
    }
    drop(core);
    LIVE_SOCKETS.fetch_sub(1, Ordering::AcqRel);
}

/// The close began (`CLOSING` set): pended inspections are rejected and their slots closed
/// (`socket::inspection`). IRQL <= DISPATCH_LEVEL.
fn close_inspections(inner: &CoreInner) {
    if let Some(table) = inner.inspections {
        // SAFETY: the core's reference keeps the table live while the core is.
        unsafe { table.as_ref() }.close();
    }
}

/// Completion routine of the close IRP (rule 6). IRQL <= DISPATCH_LEVEL.
unsafe extern "system" fn close_complete(_device: *mut DEVICE_OBJECT, irp: *mut IRP, context: *mut c_void) -> NTSTATUS {
    let Some(inner) = NonNull::new(context.cast::<CoreInner>()) else {
        return STATUS_MORE_PROCESSING_REQUIRED;
    };
    // SAFETY: the close IRP's reference keeps the core live until released below.
    let core = unsafe { inner.as_ref() };
    // SAFETY: the provider completed the IRP; it is ours again.
    let status = unsafe { (*irp).IoStatus.Status };
    core.close_status.store(status, Ordering::Release);
    core.rundown.fetch_or(CLOSE_DONE, Ordering::AcqRel);
    core.waker.wake();
    // SAFETY: releases the reference taken in `issue_close`.
    unsafe { release(inner) };
    // Counted closed only now, after the close's own reference is gone: once no socket is
    // open, no close completion is still about to free a core.
    OPEN_SOCKETS.fetch_sub(1, Ordering::AcqRel);
    STATUS_MORE_PROCESSING_REQUIRED
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;

    /// A call from another half racing close: the close is issued only with no call in
    /// progress, and a call that starts after the close began fails with `Closed`.
    #[test]
    fn loom_close_waits_for_calls_and_blocks_new_ones() {
        loom::model(|| {
            let rundown = Arc::new(AtomicUsize::new(0));
            let issued = Arc::new(AtomicUsize::new(0));
            let (r2, i2) = (rundown.clone(), issued.clone());
            let caller = loom::thread::spawn(move || {
                if rundown_enter(&r2).is_ok() {
                    // Inside the provider routine: the close must not have been issued.
                    assert_eq!(i2.load(Ordering::SeqCst), 0, "close issued during a call");
                    assert_ne!(rundown_exit(&r2), Exit::IssueBackground);
                }
            });
            // The closer: retry until it may issue (the real one waits on a waker).
            loop {
                match rundown_claim_close(&rundown) {
                    Claim::Issue => {
                        issued.fetch_add(1, Ordering::SeqCst);
                        break;
                    }
                    Claim::AlreadyIssued => unreachable!("single closer"),
                    Claim::Busy(_) => loom::thread::yield_now(),
                }
            }
            caller.join().unwrap();
            assert_eq!(issued.load(Ordering::SeqCst), 1);
            assert_eq!(rundown_enter(&rundown), Err(Error::Closed));
        });
    }

    /// The last owner goes away while an event stream's call is still held by another
    /// thread: the close is issued exactly once, and only after the call left.
    #[test]
    fn loom_background_close_waits_for_held_call() {
        loom::model(|| {
            let rundown = Arc::new(AtomicUsize::new(0));
            let inside = Arc::new(AtomicUsize::new(0));
            let issued = Arc::new(AtomicUsize::new(0));
            rundown_enter(&rundown).unwrap();
            inside.store(1, Ordering::SeqCst);
            let (r2, in2, i2) = (rundown.clone(), inside.clone(), issued.clone());
            let holder = loom::thread::spawn(move || {
                // ... the held call ends (an event callback cleaning up) ...
                in2.store(0, Ordering::SeqCst);
                if rundown_exit(&r2) == Exit::IssueBackground {
                    i2.fetch_add(1, Ordering::SeqCst);
                }
            });
            if rundown_last_owner(&rundown) == Claim::Issue {
                assert_eq!(inside.load(Ordering::SeqCst), 0, "close issued while a call was held");
                issued.fetch_add(1, Ordering::SeqCst);
            }
            holder.join().unwrap();
            assert_eq!(issued.load(Ordering::SeqCst), 1);
        });
    }

    /// An abort at unload racing the last call of an owner that is not closing (an event
    /// stream's held call ending): the close is issued exactly once, never while the call is
    /// in progress, and the background reference is released exactly once (by whoever issued).
    #[test]
    fn loom_abort_vs_last_call_out() {
        loom::model(|| {
            let rundown = Arc::new(AtomicUsize::new(0));
            let inside = Arc::new(AtomicUsize::new(0));
            let issued = Arc::new(AtomicUsize::new(0));
            rundown_enter(&rundown).unwrap();
            inside.store(1, Ordering::SeqCst);
            let (r2, in2, i2) = (rundown.clone(), inside.clone(), issued.clone());
            let holder = loom::thread::spawn(move || {
                in2.store(0, Ordering::SeqCst);
                if rundown_exit(&r2) == Exit::IssueBackground {
                    i2.fetch_add(1, Ordering::SeqCst);
                }
            });
            match rundown_abort(&rundown) {
                Some(Claim::Issue) => {
                    assert_eq!(inside.load(Ordering::SeqCst), 0, "close issued while a call was held");
                    issued.fetch_add(1, Ordering::SeqCst);
                }
                Some(Claim::Busy(_) | Claim::AlreadyIssued) => {}
                None => unreachable!("nobody else closes"),
            }
            holder.join().unwrap();
            assert_eq!(issued.load(Ordering::SeqCst), 1);
            // A second abort finds the close begun and changes nothing.
            let before = rundown.load(Ordering::SeqCst);
            assert_eq!(rundown_abort(&rundown), None);
            assert_eq!(rundown.load(Ordering::SeqCst), before);
        });
    }

    /// Two closers (close() on both halves): exactly one issues `WskCloseSocket`.
    #[test]
    fn loom_two_closers_issue_once() {
        loom::model(|| {
            let rundown = Arc::new(AtomicUsize::new(0));
            let r2 = rundown.clone();
            let other = loom::thread::spawn(move || rundown_claim_close(&r2));
            let mine = rundown_claim_close(&rundown);
            let theirs = other.join().unwrap();
            let issues = [mine, theirs].iter().filter(|c| **c == Claim::Issue).count();
            assert_eq!(issues, 1);
        });
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::socket::kind::{Connection, Datagram, Listen};

    /// A core whose socket was never created gives no call (so no dispatch table is read
    /// through a null socket), and the failed call leaves no count behind: dropping the core
    /// closes and frees it at once (Miri checks that nothing leaks).
    #[test]
    fn a_core_without_a_socket_takes_no_call() {
        let core = SocketCore::<Datagram>::new().unwrap();
        assert!(matches!(core.enter().err(), Some(Error::InvalidInput(_))));
        assert_eq!(core.inner().rundown.load(Ordering::Acquire), 0, "the refused call left a count");
        assert!(!core.is_closing());
    }

    /// A handle of run-time kind turns back into a typed handle only for the kind it was made
    /// from; a refused conversion hands the same reference back.
    #[test]
    fn a_core_turns_back_only_into_its_own_kind() {
        let core = SocketCore::<Connection>::new().unwrap();
        let context = core.context();
        let any = AnyCore::from(core);
        let Err(any) = any.downcast::<Datagram>() else { panic!("a connection core became a datagram core") };
        let Err(any) = any.downcast::<Listen>() else { panic!("a connection core became a listen core") };
        let Ok(core) = any.downcast::<Connection>() else { panic!("a connection core was refused as one") };
        assert_eq!(core.context(), context);
        assert_eq!(core.inner().refs.load(Ordering::Acquire), 1, "a conversion took or dropped a reference");
    }

    /// A callback's view holds no reference, and sees the core behind the context; a null
    /// context gives none. An owner reference left to the view is taken over exactly once
    /// (Miri reports a leak or a double free otherwise).
    #[test]
    fn a_view_holds_no_reference_and_adopts_one_left_to_it() {
        let core = SocketCore::<Listen>::new().unwrap();
        // SAFETY: null: `f` does not run.
        assert!(unsafe { SocketCore::<Listen>::with_context(core::ptr::null_mut(), |_| ()) }.is_none());
        // A stream's owner reference, dropped while a callback is inside: left to it.
        core::mem::forget(core.clone_owner());
        let callback = |view: CoreRef<'_, Listen>| {
            assert_eq!(view.inner().refs.load(Ordering::Acquire), 2, "the view took a reference");
            // SAFETY: the reference forgotten above is ours, handed over once.
            drop(unsafe { view.adopt_owner() });
            view.context()
        };
        // SAFETY: the context of a live listen core.
        let seen = unsafe { SocketCore::<Listen>::with_context(core.context(), callback) };
        assert_eq!(seen, Some(core.context()));
        assert_eq!(core.inner().refs.load(Ordering::Acquire), 1);
    }
}

/// Makes every socket of the driver end: for each socket that was created and is not closing
/// yet (no owner called `close()` or went away), begins a close as a dropped owner would. Its
/// connection is aborted (WSK aborts what was not disconnected in both directions), its
/// pending operations are cancelled, new calls on it fail with [`Error::Closed`], and its
/// memory is freed once the close completes and its owners are gone. Returns how many sockets
/// this call began to close. See `socket::registry` for the protocol and what it assumes of
/// the provider.
///
/// For DriverUnload, after the executor's shutdown: sockets that outlived their tasks (kept
/// in a driver global, or whose tasks are still alive) would otherwise keep `WskDeregister`
/// waiting. Follow it with [`wait_for_sockets_closed`].
///
/// IRQL == PASSIVE_LEVEL (it may issue `WskCloseSocket` for many sockets in a row).
pub fn abort_all_sockets() -> usize {
    let mut aborted = 0;
    let mut current: Option<SocketCore<Erased>> = None;
    loop {
        let after = current.as_ref().map(|core| core.inner);
        // SAFETY: `current`'s reference keeps it from being freed, so it is still linked.
        let next = unsafe {
            CORES.next_where(after, |inner| {
                let open = inner.rundown.load(Ordering::Acquire) & CLOSING == 0;
                let created = !inner.socket.load(Ordering::Acquire).is_null();
                (open && created && take_reference(&inner.refs)).then(|| NonNull::from(inner))
            })
        };
        // Outside the lock: dropping our reference may free (and unlink) that core.
        drop(current.take());
        let Some(inner) = next else { break };
        // INVARIANT: the reference taken under the lock belongs to this handle; every handle
        // of a core may be viewed as `Erased` (no dispatch table is reached through it).
        let core = SocketCore::<Erased> { inner, kind: PhantomData };
        if abort(inner) {
            aborted += 1;
        }
        current = Some(core);
    }
    aborted
}

/// Takes a reference on a core unless it has none left (it is being freed).
fn take_reference(refs: &AtomicU32) -> bool {
    let mut n = refs.load(Ordering::Acquire);
    loop {
        if n == 0 {
            return false;
        }
        match refs.compare_exchange_weak(n, n + 1, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return true,
            Err(actual) => n = actual,
        }
    }
}

/// Begins the close of a core nobody is closing, as a last owner's drop would
/// (`BACKGROUND`). Returns `false` if close had begun already.
fn abort(ptr: NonNull<CoreInner>) -> bool {
    // SAFETY: the caller's reference keeps the core live.
    let inner = unsafe { ptr.as_ref() };
    // The background reference, released by whoever issues the close (taken before the
    // marking, which lets the last call out release it).
    inner.refs.fetch_add(1, Ordering::AcqRel);
    let Some(claim) = rundown_abort(&inner.rundown) else {
        // Another closer began meanwhile: it issues the close.
        // SAFETY: the background reference taken above; the caller's keeps the core.
        unsafe { release(ptr) };
        return false;
    };
    // An event stream holds a call while it may still release indications: let it wind down.
    if let Some(header) = NonNull::new(inner.events.load(Ordering::Acquire)) {
        // SAFETY: an installed state lives as long as the core.
        unsafe { header.as_ref() }.waker.wake();
    }
    match claim {
        Claim::Issue => {
            // SAFETY: we claimed CLOSE_ISSUED with no call in progress.
            unsafe { issue_close(ptr) };
            // SAFETY: the background reference (the close IRP holds its own).
            unsafe { release(ptr) };
        }
        // The last call out issues the close and releases the background reference; or it
        // already did, between our marking and our claim (CLOSING was clear before us, so no
        // other closer can have).
        Claim::Busy(_) | Claim::AlreadyIssued => {}
    }
    true
}

/// Waits (PASSIVE_LEVEL, sleeping in 5 ms steps) until every socket's memory is freed or
/// `limit` passes; returns whether all are gone. For DriverUnload, after the executor was shut
/// down: sockets dropped by cancelled tasks close in the background, and their close IRPs
/// complete shortly after.
///
/// IRQL == PASSIVE_LEVEL to wait; above it, only reports.
pub fn wait_for_sockets_closed(limit: core::time::Duration) -> bool {
    if wsk_sys::KeGetCurrentIrql() != wsk_sys::PASSIVE_LEVEL {
        return live_sockets() == 0;
    }
    let step = core::time::Duration::from_millis(5);
    let mut waited = core::time::Duration::ZERO;
    while live_sockets() != 0 && waited < limit {
        let mut interval = -((step.as_nanos() / 100) as i64);
        // SAFETY: PASSIVE_LEVEL (checked); a relative kernel-mode delay.
        unsafe { wsk_sys::KeDelayExecutionThread(wsk_sys::KernelMode, 0, &raw mut interval) };
        waited += step;
    }
    live_sockets() == 0
}
