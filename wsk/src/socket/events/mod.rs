//! WSK event callbacks as `futures_core::Stream`s: received data and disconnects on a
//! connection ([`ConnectionEvents`]), incoming connections on a listener ([`Incoming`]),
//! datagrams on a UDP socket ([`Datagrams`]).
//!
//! Event callbacks are WSK's fast path: the provider calls the client with data it already
//! holds instead of completing an IRP per receive. Our callbacks run at DISPATCH_LEVEL on any
//! CPU, never block and never allocate: a receive callback *retains* the indication (returns
//! `STATUS_PENDING`), pushes it on a fixed ring and wakes the consuming task; the task hands
//! it to the user as an item whose drop calls `WskRelease`. No copy is made.
//!
//! # Backpressure
//!
//! What is retained is bounded (ring slots and [`EventConfig::max_retained_bytes`]). When a
//! callback would exceed the bound it returns `STATUS_DATA_NOT_ACCEPTED`: WSK keeps the data
//! and stops indicating. The stream then reads what WSK buffered with ordinary IRP receives
//! (connections) or re-enables the callback (datagrams) once its consumer caught up, and
//! indications resume.
//!
//! # Lifetime: who may touch the event state
//!
//! The state (one pool allocation per socket) hangs off the socket's core and is freed with
//! it, after the close IRP completed: WSK makes no callback after that, so a callback never
//! sees freed memory. Every socket is created with the core as its `SocketContext` and the
//! library's static client dispatch table for its kind, so events can be enabled later.
//!
//! The stream is the ring's consumer, the callbacks its producers. Microsoft documents no
//! serialization of one socket's receive/accept callbacks; we assume they may run
//! concurrently and refuse on contention: a callback pushes only under the ring's producer
//! claim (see `ring`), and one that finds it taken refuses its indication or connection, as
//! when the ring is full. The stream holds one call reference on the core (see
//! `socket::shared`): the close is not issued while the stream may still call `WskRelease`.
//! When the stream ends (close began) or is dropped it *detaches*; whoever is last out of
//! the ring, the stream or an in-progress callback, drains it (releasing every indication),
//! then drops the stream's call reference. The flags word:
//!
//! ```text
//!  bit 0  DETACHED    the stream is done with the ring; callbacks retain nothing more
//!  bit 1  CLEANED     the ring was drained and the stream's call reference dropped (once)
//!  bit 2  OWNER_GONE  the stream was dropped: the cleaner also drops its owner reference
//!  bits 3..           callbacks inside the library code now (count << 3)
//!
//!  stream detach:  no callback inside  -> DETACHED|CLEANED, the stream cleans now
//!                  callbacks inside    -> DETACHED (|OWNER_GONE), the last callback out cleans
//! ```
//!
//! A retained indication handed to the user holds its own call reference and an owner
//! reference, so `close().await` resolves only after the user released it, and the socket
//! cannot be closed in the background under it.

mod attached;
mod borrowed;
mod connection;
mod datagram;
mod inspect;
mod listen;
mod pieces;
#[cfg(feature = "embedded-io")]
mod reader;
mod reflect;
mod retention;
mod ring;

use core::ffi::c_void;
use core::ptr::NonNull;

use wsk_executor::AtomicWaker;
use wsk_sys::{NTSTATUS, SO_WSK_EVENT_CALLBACK, SOL_SOCKET, WSK_EVENT_CALLBACK_CONTROL, WskSetOption};

pub use connection::{ConnectionEvent, ConnectionEvents, Received, Segments};
pub use datagram::{DatagramBatch, DatagramView, Datagrams};
pub use listen::Incoming;
#[cfg(feature = "embedded-io")]
pub use reader::EventReader;

pub(crate) use connection::{CONNECTION_DISPATCH, ConnState};
pub(crate) use datagram::{DATAGRAM_DISPATCH, DgramState};
pub(crate) use listen::{LISTEN_DISPATCH, ListenState};
pub(crate) use reflect::drain as drain_reflectors;

use crate::error::{Error, Result};
use crate::loom::{AtomicU32, Ordering};
use crate::pool::PoolBox;
use crate::socket::kind::SocketKind;
use crate::socket::shared::SocketCore;

pub use futures_core::Stream;

/// The next item of `stream` (for drivers without a futures utility crate).
///
/// IRQL == PASSIVE_LEVEL (task context).
pub fn next<S: Stream + Unpin>(stream: &mut S) -> impl Future<Output = Option<S::Item>> + '_ {
    core::future::poll_fn(move |cx| core::pin::Pin::new(&mut *stream).poll_next(cx))
}

/// Pool tag of event state ("WskV"; the table is [`crate::pool::tag`]).
pub const EVENT_TAG: u32 = crate::pool::tag::EVENT;

/// Limits of what an event stream holds on to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventConfig {
    /// Bytes of received data retained from WSK at most (in the ring and in items the user
    /// holds). Past it, callbacks refuse data and WSK buffers it, and the stream drains what
    /// WSK buffered with copying IRP receives ([`Self::fallback_receive_size`]). Default
    /// 256 KiB: a few indication chains ahead of a consumer that sends each item back, so a
    /// busy stream stays on the zero-copy path (at 64 KiB a streaming echo was refused behind
    /// every item it held). An idle connection retains nothing, whatever the bound; what
    /// many connections retain together is bounded by the driver-wide budget
    /// ([`crate::budget`]).
    pub max_retained_bytes: usize,
    /// Incoming connections kept ready for an accept callback (each one a pre-allocated
    /// socket core); more arriving at once are refused. Default 16, at most 32.
    pub accept_backlog: usize,
    /// Buffer size of the IRP receives that drain what WSK buffered during backpressure.
    /// A connection stream borrows the buffer from the buffer pool ([`crate::buf_pool`],
    /// rounded up to its size class) only while the receive and its item live, and charges
    /// it to the driver-wide budget ([`crate::budget`]). Default 16 KiB.
    pub fallback_receive_size: usize,
    /// A connection stream sends what it receives straight back from its receive callback
    /// (at DISPATCH_LEVEL, with `WskSend` over WSK's own buffers, no task woken) whenever its
    /// task waits for data and it holds nothing else; what arrives meanwhile reaches the
    /// stream as usual, once the reflection in flight completed. For echo-like services that
    /// send back only what they received: the bytes then go out in the order they came.
    /// Meant for request and response: on a connection where the stream had to hold items
    /// back behind a reflection whose send waited on the provider, or used its copy path,
    /// reflection stops for good. A failed reflection ends the stream with its error; the
    /// graceful [`ConnectionEvent::Disconnected`] comes once every reflection completed;
    /// dropping the stream cancels the one in flight. [`ConnectionEvents::reflected_bytes`]
    /// counts what went back this way. A connection keeps 32 bytes for it; the IRP and MDLs
    /// of a reflection come from a cache of the library's and go back after it. Ignored by
    /// datagram and listening sockets. Default `false`.
    ///
    /// ```no_run
    /// # async fn example(stream: wsk::TcpStream) -> wsk::Result<()> {
    /// use wsk::events::{self, ConnectionEvent, EventConfig};
    ///
    /// let config = EventConfig { reflect: true, ..EventConfig::default() };
    /// let (mut events, mut writer) = stream.into_events(config)?;
    /// // What the callback did not reflect comes here, in order; send it back the same way.
    /// while let Some(event) = events::next(&mut events).await {
    ///     match event? {
    ///         ConnectionEvent::Data(data) => writer.send_received(data).await?,
    ///         ConnectionEvent::Disconnected { .. } => break,
    ///         ConnectionEvent::SendBacklog(_) => {}
    ///     }
    /// }
    /// let echoed_by_the_callback = events.reflected_bytes();
    /// # let _ = echoed_by_the_callback;
    /// # Ok(()) }
    /// ```
    pub reflect: bool,
}

impl Default for EventConfig {
    fn default() -> Self {
        Self { max_retained_bytes: 256 * 1024, accept_backlog: 16, fallback_receive_size: 16 * 1024, reflect: false }
    }
}

/// Events a callback met before a stream installed its state (static event callbacks are on
/// from the socket's creation, inherited ones from the recording of the accept callback's
/// answer), handed over through the core's early word
/// (`SocketCore::early`): the peer disconnected gracefully, ...
pub(crate) const EARLY_GRACEFUL: u32 = 1 << 0;
/// ... abortively, ...
pub(crate) const EARLY_ABORTIVE: u32 = 1 << 1;
/// ... or WSK reported the socket no longer works (a null indication).
pub(crate) const EARLY_FAILED: u32 = 1 << 2;
/// A receive callback refused data (WSK keeps it and indicates nothing more until a
/// `WskReceive`).
pub(crate) const EARLY_REFUSED: u32 = 1 << 3;
/// Set in the early word by the stream once its state is installed: from then on callbacks
/// deliver to the state.
const EARLY_STREAM: u32 = 1 << 31;

/// A callback that found no state records `event` in the early word. Returns `true` when a
/// stream installed its state meanwhile (it set [`EARLY_STREAM`] first): the callback then
/// delivers to the state itself, which it now sees (the stream installed it before setting
/// the bit, and this read-modify-write reads that one). Otherwise the stream's
/// [`early_take`] will find the event. Both are read-modify-writes of one word, so exactly one
/// of the two sees the event (loom model `loom_early_event_is_handed_over_once`).
/// IRQL <= DISPATCH_LEVEL.
pub(crate) fn early_note(word: &AtomicU32, event: u32) -> bool {
    word.fetch_or(event, Ordering::AcqRel) & EARLY_STREAM != 0
}

/// The stream, after installing its state: takes the events callbacks recorded before.
/// Any IRQL.
pub(crate) fn early_take(word: &AtomicU32) -> u32 {
    word.fetch_or(EARLY_STREAM, Ordering::AcqRel) & !EARLY_STREAM
}

const DETACHED: u32 = 1 << 0;
const CLEANED: u32 = 1 << 1;
const OWNER_GONE: u32 = 1 << 2;
pub(crate) const CALLBACK_ONE: u32 = 1 << 3;

/// A callback's entry: `true` when it may use the ring (the stream is attached).
pub(crate) fn callback_enter(flags: &AtomicU32) -> bool {
    flags.fetch_add(CALLBACK_ONE, Ordering::AcqRel) & DETACHED == 0
}

/// What the callback leaving must do.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CallbackExit {
    /// Nothing.
    Nothing,
    /// Clean up for the detached stream; `owner_gone`: also drop its owner reference.
    Clean { owner_gone: bool },
}

/// A callback's exit: the last one out after the stream detached cleans up (exactly once).
pub(crate) fn callback_exit(flags: &AtomicU32) -> CallbackExit {
    let prev = flags.fetch_sub(CALLBACK_ONE, Ordering::AcqRel);
    if prev & DETACHED == 0 || prev & CLEANED != 0 {
        return CallbackExit::Nothing;
    }
    let mut v = prev - CALLBACK_ONE;
    loop {
        if v & CLEANED != 0 || v >= CALLBACK_ONE {
            return CallbackExit::Nothing;
        }
        match flags.compare_exchange(v, v | CLEANED, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return CallbackExit::Clean { owner_gone: v & OWNER_GONE != 0 },
            Err(actual) => v = actual,
        }
    }
}

/// The outcome of a stream detaching.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Detach {
    /// No callback inside: the stream cleans up now.
    CleanNow,
    /// A callback is inside and will clean up; when `dropping`, it also drops the stream's
    /// owner reference, which the stream must therefore not drop.
    LeftToCallback,
    /// Detached and cleaned earlier.
    AlreadyClean,
}

/// The stream detaches from the ring (`dropping`: because it is being dropped).
pub(crate) fn stream_detach(flags: &AtomicU32, dropping: bool) -> Detach {
    let mut v = flags.load(Ordering::Acquire);
    loop {
        if v & CLEANED != 0 {
            return Detach::AlreadyClean;
        }
        let (next, outcome) = if v < CALLBACK_ONE {
            (v | DETACHED | CLEANED, Detach::CleanNow)
        } else {
            (v | DETACHED | if dropping { OWNER_GONE } else { 0 }, Detach::LeftToCallback)
        };
        match flags.compare_exchange(v, next, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return outcome,
            Err(actual) => v = actual,
        }
    }
}

/// A stream being dropped: detaches (unless done), cleans up through `clean` when no
/// callback is inside. Returns whether the stream must drop its owner reference itself
/// (`false`: a callback inside took it over, with the clean-up).
pub(crate) fn detach_on_drop(flags: &AtomicU32, done: bool, clean: impl FnOnce()) -> bool {
    let outcome = if done { Detach::AlreadyClean } else { stream_detach(flags, true) };
    match outcome {
        Detach::CleanNow => {
            clean();
            true
        }
        Detach::AlreadyClean => true,
        Detach::LeftToCallback => false,
    }
}

/// The common head of every kind's event state: how to free it, the detach protocol word
/// and the consumer's waker.
#[repr(C)]
pub(crate) struct Header {
    free: unsafe fn(NonNull<Header>),
    pub(crate) flags: AtomicU32,
    pub(crate) waker: AtomicWaker,
}

impl Header {
    fn new<S: EventState>() -> Self {
        Self { free: free_state::<S>, flags: AtomicU32::new(0), waker: AtomicWaker::new() }
    }
}

/// The event state of one socket kind.
///
/// # Safety
/// The type is `repr(C)` with its [`Header`] as first field, made by `Header::new::<Self>()`:
/// a pointer to the header of an installed state is a pointer to the state, and the header
/// frees it as its own type.
pub(crate) unsafe trait EventState: Sized {
    /// The kind of socket the state belongs to.
    type Kind: SocketKind;

    /// The common head.
    fn header(&self) -> &Header;

    /// The stream's clean-up once it detached with no callback inside (or the last callback
    /// out's, see the module docs): gives back what the state holds and ends the stream's
    /// call on `core`. Runs once.
    fn clean(&self, core: &SocketCore<Self::Kind>);
}

/// An event state in non-paged pool.
pub(crate) type EventBox<S> = PoolBox<S, EVENT_TAG>;

/// Allocates `state` in non-paged pool.
fn allocate<S: EventState>(state: S) -> Result<EventBox<S>> {
    EventBox::try_new_tagged(state).map_err(|_| Error::NoMemory)
}

/// Frees an installed event state.
///
/// # Safety
/// `header` was installed on a core whose close completed (no more callbacks) and no stream
/// or item refers to it.
pub(crate) unsafe fn free(header: NonNull<Header>) {
    // SAFETY: the header is live until freed here.
    let free = unsafe { header.as_ref().free };
    // SAFETY: forwarded contract; `free` matches the state's kind.
    unsafe { free(header) }
}

/// Frees a state of type `S` (the header's `free`).
///
/// # Safety
/// See [`free`]; `header` is the header of an `S` from [`EventBox::into_raw`].
unsafe fn free_state<S: EventState>(header: NonNull<Header>) {
    // SAFETY: the header is the first field of an `S` (`EventState`) whose box gave it up.
    drop(unsafe { EventBox::<S>::from_raw_tagged(header.cast::<S>()) });
}

/// `SO_WSK_EVENT_CALLBACK` without an IRP (enabling, or disabling when no callback of the
/// event runs): the provider answers at once. Returns the status.
fn control_events<K: SocketKind>(core: &SocketCore<K>, mask: u32) -> Result<NTSTATUS> {
    let guard = core.enter()?;
    let (socket, table) = guard.dispatch();
    let Some(control) = K::basic(table).WskControlSocket else {
        return Err(Error::Status(wsk_sys::STATUS_NOT_SUPPORTED));
    };
    let mut request = WSK_EVENT_CALLBACK_CONTROL { NpiId: &raw const wsk_sys::NPI_WSK_INTERFACE_ID, EventMask: mask };
    // SAFETY: valid socket; the control block lives across the call, which reads it only
    // during the call (no IRP).
    let status = unsafe {
        control(
            socket,
            WskSetOption,
            SO_WSK_EVENT_CALLBACK,
            SOL_SOCKET,
            size_of::<WSK_EVENT_CALLBACK_CONTROL>(),
            (&raw mut request).cast::<c_void>(),
            0,
            core::ptr::null_mut(),
            core::ptr::null_mut(),
            core::ptr::null_mut(),
        )
    };
    drop(guard);
    Ok(status)
}

/// Enables the events in `mask` on `core`'s socket (IRQL <= DISPATCH_LEVEL).
fn enable<K: SocketKind>(core: &SocketCore<K>, mask: u32) -> Result<()> {
    crate::error::check(control_events(core, mask)?)
}

/// Installs `state` on `core`, takes the stream's call and enables the events of `mask` that
/// are not preset ([`SocketCore::preset_events`]: the static ones, which WSK enabled at the
/// socket's creation and takes no `SO_WSK_EVENT_CALLBACK` for (see [`crate::client_control`]),
/// and those a socket an accept callback took inherits from its listening socket, which WSK
/// turns on when it records the callback's answer (see `listen`)). On failure nothing is enabled and the
/// socket is as before, except that a state installed stays (detached, freed with the core):
/// events cannot be tried twice.
fn install<K: SocketKind>(core: &SocketCore<K>, state: EventBox<K::State>, mask: u32) -> Result<NonNull<K::State>> {
    let Ok(state) = core.install_events(state) else {
        // The state handed back is dropped (freed): never installed nor shared.
        return Err(Error::InvalidInput("event callbacks were enabled on this socket before"));
    };
    // SAFETY: installed: lives as long as the core, which the caller's handle keeps alive.
    let flags = unsafe { &state.as_ref().header().flags };
    if let Err(e) = core.enter_owned() {
        flags.store(DETACHED | CLEANED, Ordering::Release);
        return Err(e);
    }
    let dynamic = mask & !core.preset_events();
    if dynamic == 0 {
        return Ok(state);
    }
    if let Err(e) = enable(core, dynamic) {
        // Nothing was enabled: no callback comes; the stream never existed.
        flags.store(DETACHED | CLEANED, Ordering::Release);
        core.leave();
        return Err(e);
    }
    Ok(state)
}

/// Event callbacks could not be enabled: why, and the socket, unchanged, to go on with IRPs
/// (for example on a provider without event callbacks).
pub struct Refused<T> {
    /// Why (`STATUS_NOT_SUPPORTED` from a provider without event callbacks, for example).
    pub error: Error,
    /// The socket, usable as before.
    pub socket: T,
}

/// For `?` in code that gives up on the socket when events are refused (it is then dropped,
/// and so closed in the background).
impl<T> From<Refused<T>> for Error {
    fn from(refused: Refused<T>) -> Error {
        refused.error
    }
}

impl<T> core::fmt::Debug for Refused<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Refused").field("error", &self.error).finish_non_exhaustive()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// The early word's two orders: the callback first (the stream takes the event), the
    /// stream first (the callback delivers it itself).
    #[test]
    fn an_early_event_goes_to_whoever_comes_second() {
        let word = AtomicU32::new(0);
        assert!(!early_note(&word, EARLY_GRACEFUL));
        assert_eq!(early_take(&word), EARLY_GRACEFUL);
        let word = AtomicU32::new(0);
        assert_eq!(early_take(&word), 0);
        assert!(early_note(&word, EARLY_ABORTIVE));
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;
    use loom::sync::atomic::AtomicUsize;

    /// A waker that counts its wakes, for the models of a stream waiting on its callbacks
    /// (here and in the kinds' modules).
    pub(super) struct CountWakes(std::sync::atomic::AtomicUsize);

    impl CountWakes {
        /// A new counter and a waker of it.
        pub(super) fn waker() -> (std::sync::Arc<Self>, std::task::Waker) {
            let count = std::sync::Arc::new(Self(std::sync::atomic::AtomicUsize::new(0)));
            (count.clone(), std::task::Waker::from(count))
        }

        /// Wakes so far.
        pub(super) fn count(&self) -> usize {
            self.0.load(Ordering::SeqCst)
        }
    }

    impl std::task::Wake for CountWakes {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// A stream that finds a callback inside (a refusing receive callback it must resume
    /// after, see `retention::retain`) registers its waker, sees the count, and waits: the
    /// callback, which wakes after leaving, always wakes it. Waking before leaving (as the
    /// receive callback once did, with the stream polling itself again instead) strands it: the
    /// wake can come before the registration and the leave after the stream's look.
    #[test]
    fn loom_a_stream_waiting_for_a_callback_to_leave_is_woken() {
        loom::model(|| {
            let flags = Arc::new(AtomicU32::new(0));
            let waker = Arc::new(AtomicWaker::new());
            let callback = {
                let (flags, waker) = (flags.clone(), waker.clone());
                loom::thread::spawn(move || {
                    assert!(callback_enter(&flags));
                    let _ = callback_exit(&flags);
                    waker.wake();
                })
            };
            let (wakes, stream_waker) = CountWakes::waker();
            waker.register(&stream_waker);
            let inside = flags.load(Ordering::Acquire) >= CALLBACK_ONE;
            callback.join().unwrap();
            if inside {
                assert!(wakes.count() >= 1, "the stream waits for a wake that never comes");
            }
        });
    }

    /// A callback racing the stream's drop: the ring is cleaned exactly once, by whoever is
    /// last out, and a callback that saw the stream attached is finished before cleaning.
    #[test]
    fn loom_detach_vs_callback_cleans_once() {
        loom::model(|| {
            let flags = Arc::new(AtomicU32::new(0));
            let cleaned = Arc::new(AtomicUsize::new(0));
            let using = Arc::new(AtomicUsize::new(0));
            let (f2, c2, u2) = (flags.clone(), cleaned.clone(), using.clone());
            let callback = loom::thread::spawn(move || {
                if callback_enter(&f2) {
                    u2.fetch_add(1, Ordering::SeqCst);
                    // ... uses the ring ...
                    u2.fetch_sub(1, Ordering::SeqCst);
                }
                if let CallbackExit::Clean { owner_gone } = callback_exit(&f2) {
                    assert!(owner_gone);
                    assert_eq!(u2.load(Ordering::SeqCst), 0);
                    c2.fetch_add(1, Ordering::SeqCst);
                }
            });
            match stream_detach(&flags, true) {
                Detach::CleanNow => {
                    assert_eq!(using.load(Ordering::SeqCst), 0, "cleaning while a callback uses the ring");
                    cleaned.fetch_add(1, Ordering::SeqCst);
                }
                Detach::LeftToCallback | Detach::AlreadyClean => {}
            }
            callback.join().unwrap();
            assert_eq!(cleaned.load(Ordering::SeqCst), 1);
        });
    }

    /// A disconnect met by a callback while the stream installs its state: handed over
    /// exactly once, to the state by the callback or through the early word to the stream.
    #[test]
    fn loom_early_event_is_handed_over_once() {
        loom::model(|| {
            // The core's event state pointer (installed: 1) and its early word.
            let installed = Arc::new(AtomicU32::new(0));
            let word = Arc::new(AtomicU32::new(0));
            let (i2, w2) = (installed.clone(), word.clone());
            let callback = loom::thread::spawn(move || {
                // `attached::with_state_or_note`.
                if i2.load(Ordering::Acquire) != 0 {
                    return true;
                }
                if early_note(&w2, EARLY_GRACEFUL) {
                    assert_eq!(i2.load(Ordering::Acquire), 1, "the state is visible to the callback");
                    return true;
                }
                false
            });
            installed.store(1, Ordering::Release);
            let taken = early_take(&word) & EARLY_GRACEFUL != 0;
            let delivered = callback.join().unwrap();
            assert!(delivered != taken, "delivered {delivered}, taken {taken}: not exactly once");
        });
    }

    /// Two callbacks (say receive and disconnect) and the stream detaching: one cleaner.
    #[test]
    fn loom_two_callbacks_and_detach_clean_once() {
        loom::model(|| {
            let flags = Arc::new(AtomicU32::new(0));
            let cleaned = Arc::new(AtomicUsize::new(0));
            let spawn_callback = |flags: Arc<AtomicU32>, cleaned: Arc<AtomicUsize>| {
                loom::thread::spawn(move || {
                    let _ = callback_enter(&flags);
                    if let CallbackExit::Clean { .. } = callback_exit(&flags) {
                        cleaned.fetch_add(1, Ordering::SeqCst);
                    }
                })
            };
            let a = spawn_callback(flags.clone(), cleaned.clone());
            let b = spawn_callback(flags.clone(), cleaned.clone());
            if stream_detach(&flags, false) == Detach::CleanNow {
                cleaned.fetch_add(1, Ordering::SeqCst);
            }
            a.join().unwrap();
            b.join().unwrap();
            assert_eq!(cleaned.load(Ordering::SeqCst), 1);
        });
    }
}
