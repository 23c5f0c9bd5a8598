//! Listen events: `WskAcceptEvent` as the [`Incoming`] stream of connections.
//!
//! WSK wants the accepted socket's context and dispatch table from inside the callback, at
//! DISPATCH_LEVEL, where we do not allocate. So the stream keeps a stock of pre-allocated
//! socket cores (each with its reserved close IRP) on a ring the callback takes from; the
//! callback gives the new socket one of them and queues it for the stream. With no core in
//! stock or no room in the queue, the callback refuses the connection
//! (`STATUS_REQUEST_NOT_ACCEPTED`) and WSK closes it: that is the listener's backpressure.
//!
//! Microsoft documents no serialization of one socket's accept callbacks; we assume they may
//! run concurrently and refuse on contention: a callback takes the stock's consumer claim and
//! the queue's producer claim ([`Ring::try_consume`], [`Ring::try_produce`]) before it
//! touches either ring, and refuses the connection when either is taken, as when the stock
//! is empty. Nothing waits (callbacks run at DISPATCH_LEVEL). The stream restocks as the
//! stock's only producer and takes from the queue as its only consumer; the counters are
//! read-modify-write atomics.
//!
//! Before it enables the accept callback, the stream enables the connection events
//! (receive, disconnect, send backlog) on the listening socket. Microsoft documents that such
//! events are "automatically enabled on an accepted connection-oriented socket only if the
//! socket is accepted by the listening socket's WskAcceptEvent event callback function": WSK
//! turns them on for every socket the callback takes, when it records the callback's answer.
//! That is the only moment the library knows of at which WSK has the answer: Microsoft does
//! not say when an accepted socket starts taking calls that need it (a `WskControlSocket`
//! enabling its callbacks needs the client dispatch table the answer gives), and a provider
//! may record the answer some time after the callback returned (the emulator's adversary
//! does: `accept_answer_delay_us`). So a connection from this stream does not enable its own
//! events: [`TcpStream::into_events`] finds them preset (`SocketCore::preset_events`) and
//! makes no provider call. Until it is called, the library's receive callback refuses the data
//! (no stream to give it to: WSK keeps it for the stream or for IRP receives) and the
//! disconnect callback leaves a note for the stream. A provider that refuses connection events
//! on a listening socket gets none: its connections enable their own, as those of
//! [`TcpListener::accept`](crate::TcpListener::accept) do. Assumed: a provider that accepts
//! them on a listening socket passes them on, as Microsoft documents; one that took them and
//! did not would leave such a connection's event stream without callbacks (it would wait).

use core::net::SocketAddr;
use core::pin::Pin;
use core::task::{Context, Poll};

use futures_core::Stream;
use wsk_sys::{
    NTSTATUS, PVOID, SOCKADDR, STATUS_REQUEST_NOT_ACCEPTED, STATUS_SUCCESS, ULONG, WSK_CLIENT_CONNECTION_DISPATCH,
    WSK_CLIENT_LISTEN_DISPATCH, WSK_EVENT_ACCEPT, WSK_EVENT_DISCONNECT, WSK_EVENT_RECEIVE, WSK_EVENT_SEND_BACKLOG,
    WSK_SOCKET,
};

use super::attached::{Attached, leave_callback, with_state};
use super::ring::Ring;
use super::{EventConfig, EventState, Header, allocate, callback_enter};
use crate::addr;
use crate::error::{Error, Result};
use crate::loom::{AtomicU32, AtomicUsize, Ordering};
use crate::socket::kind::{Connection, Listen, SocketKind};
use crate::socket::shared::{CoreRef, SocketCore};
use crate::socket::tcp::TcpStream;

/// The client dispatch table every listen socket is created with.
pub(crate) static LISTEN_DISPATCH: WSK_CLIENT_LISTEN_DISPATCH = WSK_CLIENT_LISTEN_DISPATCH {
    WskAcceptEvent: Some(on_accept),
    WskInspectEvent: Some(super::inspect::on_inspect),
    WskAbortEvent: Some(super::inspect::on_abort),
};

/// The connection events a stream enables on the listening socket for the sockets its accept
/// callback takes to inherit (see the module docs): those a connection's event stream enables.
const INHERITED: u32 = WSK_EVENT_RECEIVE | WSK_EVENT_DISCONNECT | WSK_EVENT_SEND_BACKLOG;

/// Connections queued (and cores in stock) at most.
const RING_SLOTS: usize = 32;

/// A connection accepted by the callback, waiting for the stream.
struct Accepted {
    core: SocketCore<Connection>,
    peer: Option<SocketAddr>,
}

/// Event state of a listen socket.
#[repr(C)]
pub(crate) struct ListenState {
    header: Header,
    /// Stream -> callback: cores for the next connections.
    stock: Ring<SocketCore<Connection>, RING_SLOTS>,
    /// Callback -> stream.
    accepted: Ring<Accepted, RING_SLOTS>,
    /// Connections refused for want of stock or room, or on contention.
    refused: AtomicUsize,
    /// WSK reported the listener broken (null accept socket).
    failed: AtomicU32,
}

// SAFETY: `repr(C)` with its header, made by `Header::new::<ListenState>()`, first.
unsafe impl EventState for ListenState {
    type Kind = Listen;

    fn header(&self) -> &Header {
        &self.header
    }

    /// Closes every queued connection and frees the stock, then ends the stream's call.
    /// Runs once (detach protocol).
    fn clean(&self, core: &SocketCore<Listen>) {
        // SAFETY: the cleaner is the only party left using both rings.
        while let Some(accepted) = unsafe { self.accepted.pop() } {
            // Dropping the only owner closes the connection in the background.
            drop(accepted);
        }
        // SAFETY: as above.
        while let Some(spare) = unsafe { self.stock.pop() } {
            drop(spare);
        }
        core.leave();
    }
}

/// `WskAcceptEvent`. IRQL <= DISPATCH_LEVEL; never blocks or allocates.
unsafe extern "system" fn on_accept(
    context: PVOID,
    _flags: ULONG,
    _local: *mut SOCKADDR,
    remote: *mut SOCKADDR,
    socket: *mut WSK_SOCKET,
    accept_context: *mut PVOID,
    accept_dispatch: *mut *const WSK_CLIENT_CONNECTION_DISPATCH,
) -> NTSTATUS {
    let accept = |core: &CoreRef<'_, Listen>, state: &ListenState| {
        if socket.is_null() {
            // The listener no longer works.
            state.failed.store(1, Ordering::Release);
            state.header.waker.wake();
            return STATUS_SUCCESS;
        }
        let status = if callback_enter(&state.header.flags) && !core.is_closing() {
            // SAFETY: WSK's arguments for this call.
            unsafe { take(state, remote, socket, accept_context, accept_dispatch) }
        } else {
            STATUS_REQUEST_NOT_ACCEPTED
        };
        if status != STATUS_SUCCESS {
            state.refused.fetch_add(1, Ordering::Relaxed);
        }
        let cleaned = leave_callback(core, &state.header, |core| {
            state.clean(core);
            true
        });
        if !cleaned {
            // The stream takes a queued connection only once no accept callback is inside
            // (`take_settled`), so every callback wakes it after leaving: this one's connection,
            // or one an earlier callback queued while this one was inside, is now there to
            // take. The state lives as long as the core, which WSK keeps until its callbacks
            // returned (close contract). A cleaning callback has no stream left to wake.
            state.header.waker.wake();
        }
        status
    };
    // SAFETY: WSK passes the context we created the listen socket with along with this table,
    // and calls only until the close completed.
    unsafe { with_state(context, accept) }.unwrap_or(STATUS_REQUEST_NOT_ACCEPTED)
}

/// What the stream may take from the accepted queue now.
#[derive(Debug)]
enum Take<A> {
    /// The oldest queued connection.
    Taken(A),
    /// Connections are queued, but an accept callback is inside: the stream waits for the
    /// wake that callback gives after it left.
    Wait,
    /// Nothing is queued.
    Empty,
}

/// The stream's take from the accepted queue: a connection is handed out only while no accept
/// callback is inside, so the callback that queued it has returned. WSK learns the accepted
/// socket's context and client dispatch table from that return (`AcceptSocketContext`,
/// `AcceptSocketDispatch`), and Microsoft does not document whether the socket takes calls
/// (a `WskControlSocket` enabling its event callbacks, the first thing a stream does) before
/// it; we assume it may not. What this cannot cover is the provider's own step between the
/// callback's return and its recording of the answer: a connection taken in that instant and
/// turned into an event stream at once would find its callbacks refused. The inherited
/// connection events (module docs) are what covers it: such a connection makes no call that
/// needs the answer. Only where the provider refused those does the window stay, and a
/// connection taken in it can fail to become an event stream (an error the stream reports,
/// with the socket handed back to go on with IRPs). The queue is
/// looked at first: a connection queued then was queued by a callback that entered before,
/// and is still counted in `flags` unless it left. IRQL <= DISPATCH_LEVEL; never waits.
///
/// The caller registered its waker before: a callback inside wakes it after leaving (the
/// waker's state is a read-modify-write atomic both sides go through, so either the wake finds
/// the waker or the registration saw the wake and this load sees the callback gone).
///
/// # Safety
/// The caller is the queue's only consumer.
unsafe fn take_settled<A, const N: usize>(flags: &AtomicU32, accepted: &Ring<A, N>) -> Take<A> {
    if accepted.len() == 0 {
        return Take::Empty;
    }
    if flags.load(Ordering::Acquire) >= super::CALLBACK_ONE {
        return Take::Wait;
    }
    // SAFETY: the only consumer (caller).
    match unsafe { accepted.pop() } {
        Some(entry) => Take::Taken(entry),
        None => Take::Empty,
    }
}

/// Why [`hand_over`] did not take a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NotTaken {
    /// Another accept callback holds a claim: refused on contention.
    Busy,
    /// The queue is full: the stream fell behind.
    Full,
    /// No core in stock: the stream must restock.
    NoStock,
}

/// The accept callback's ring step: under the stock's consumer claim and the queue's
/// producer claim, turns a spare from `stock` into an entry of `accepted` with `accept`
/// (which runs only when there is both a spare and room, so the entry is always queued).
/// Never waits. IRQL <= DISPATCH_LEVEL.
fn hand_over<S, A, const N: usize>(
    stock: &Ring<S, N>,
    accepted: &Ring<A, N>,
    accept: impl FnOnce(S) -> A,
) -> core::result::Result<(), NotTaken> {
    let (Some(queue), Some(spares)) = (accepted.try_produce(), stock.try_consume()) else {
        return Err(NotTaken::Busy);
    };
    if !queue.has_room() {
        return Err(NotTaken::Full);
    }
    let spare = spares.pop().ok_or(NotTaken::NoStock)?;
    if let Err(lost) = queue.push(accept(spare)) {
        // Not reachable: room was checked under the claim, and only the consumer changes it
        // (by making room). Dropping the entry closes its socket rather than leak it.
        drop(lost);
    }
    Ok(())
}

/// Takes the new connection with a core from stock.
///
/// # Safety
/// WSK's arguments of one `WskAcceptEvent` call; the stream is attached.
unsafe fn take(
    state: &ListenState,
    remote: *mut SOCKADDR,
    socket: *mut WSK_SOCKET,
    accept_context: *mut PVOID,
    accept_dispatch: *mut *const WSK_CLIENT_CONNECTION_DISPATCH,
) -> NTSTATUS {
    let taken = hand_over(&state.stock, &state.accepted, |core| {
        // SAFETY: WSK accepted a connection socket, whose context and client dispatch table
        // are set just below to this core and the connection table.
        unsafe { core.set_socket(socket) };
        // SAFETY: WSK's out-parameters, valid during the call.
        unsafe { *accept_context = core.context() };
        // SAFETY: as above.
        unsafe { *accept_dispatch = Connection::client() };
        // SAFETY: the remote address is valid during the call (or null).
        let peer = unsafe { addr::from_sockaddr(remote) }.ok();
        Accepted { core, peer }
    });
    match taken {
        // The stream is woken once the callback left (`on_accept`).
        Ok(()) => STATUS_SUCCESS,
        Err(NotTaken::NoStock) => {
            state.header.waker.wake();
            STATUS_REQUEST_NOT_ACCEPTED
        }
        Err(NotTaken::Busy | NotTaken::Full) => STATUS_REQUEST_NOT_ACCEPTED,
    }
}

/// Incoming connections of a listener as a [`Stream`] (`WskAcceptEvent`).
///
/// ```no_run
/// # async fn example(wsk: &wsk::Wsk, addr: core::net::SocketAddr) -> wsk::Result<()> {
/// use futures_core::Stream;
/// use wsk::events::EventConfig;
///
/// let listener = wsk::TcpListener::bind(wsk, addr).await?;
/// let mut incoming = listener.into_incoming(EventConfig::default())?;
/// while let Some(accepted) = core::future::poll_fn(|cx| core::pin::Pin::new(&mut incoming).poll_next(cx)).await {
///     let (stream, peer) = accepted?;
///     // spawn a task serving `stream` ...
/// #   drop((stream, peer));
/// }
/// # Ok(()) }
/// ```
pub struct Incoming {
    /// The core and the state (see the module docs of `socket::events`).
    attached: Attached<Listen>,
    backlog: usize,
    /// The connection events WSK turns on for the accepted sockets (`INHERITED`, or 0 where
    /// the provider refused them on the listening socket).
    inherited: u32,
    ending: bool,
}

impl Incoming {
    /// Installs the event state on the listener `core`, stocks cores and enables the accept
    /// callback.
    pub(crate) fn enable(core: &SocketCore<Listen>, config: EventConfig) -> Result<Self> {
        let state = allocate(ListenState {
            header: Header::new::<ListenState>(),
            stock: Ring::new(),
            accepted: Ring::new(),
            refused: AtomicUsize::new(0),
            failed: AtomicU32::new(0),
        })?;
        let backlog = config.accept_backlog.clamp(1, RING_SLOTS);
        // The connection events for the accepted sockets to inherit (module docs), before the
        // accept callback can take one. The static ones are on anyway (and cannot be enabled).
        // Refused (a provider without them on listening sockets): the connections enable their
        // own. Once enabled they stay: Microsoft documents that they cannot be disabled on
        // the listening socket, and they reach only sockets an accept callback takes.
        let wanted = INHERITED & !core.static_events();
        let inherited = if wanted != 0 && super::enable(core, wanted).is_ok() { wanted } else { 0 };
        // Stock before enabling: the first connection may come at once. On failure the state,
        // never installed nor shared, is dropped and its ring drops the cores.
        while state.stock.len() < backlog {
            let spare = Self::spare(core, inherited)?;
            // SAFETY: the only producer (the state is not shared yet).
            drop(unsafe { state.stock.push(spare) });
        }
        Ok(Incoming { attached: Attached::install(core, state, WSK_EVENT_ACCEPT)?, backlog, inherited, ending: false })
    }

    /// A core for the accept callback to give a new connection: it may have the client's
    /// static event callbacks on at once, and has the `inherited` ones on once WSK recorded
    /// the callback's answer.
    fn spare(listener: &SocketCore<Listen>, inherited: u32) -> Result<SocketCore<Connection>> {
        let spare = SocketCore::new()?;
        spare.set_static_events(listener.static_events());
        spare.set_inherited_events(inherited);
        Ok(spare)
    }

    fn state(&self) -> &ListenState {
        self.attached.state()
    }

    /// Connections refused so far because the stream fell behind (or because another accept
    /// callback of the listener was taking one at the same moment). Any IRQL.
    pub fn refused(&self) -> usize {
        self.state().refused.load(Ordering::Relaxed)
    }

    /// Tops the stock up to the backlog.
    fn restock(&mut self) -> Result<()> {
        while self.state().stock.len() < self.backlog {
            let spare = Self::spare(self.attached.core(), self.inherited)?;
            // SAFETY: the stream is the stock's only producer.
            if unsafe { self.state().stock.push(spare) }.is_err() {
                break;
            }
        }
        Ok(())
    }

    /// Ends the stream: detaches (see the module docs of `socket::events`).
    fn finish(&mut self) {
        self.attached.detach();
    }

    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<(TcpStream, SocketAddr)>>> {
        if self.attached.is_done() {
            return Poll::Ready(None);
        }
        self.state().header.waker.register(cx.waker());
        if self.ending || self.attached.core().is_closing() {
            self.finish();
            return Poll::Ready(None);
        }
        // A failed restock leaves fewer cores in stock: more refusals, no error here.
        let _ = self.restock();
        let state = self.state();
        // SAFETY: the stream is the queue's only consumer.
        let taken = unsafe { take_settled(&state.header.flags, &state.accepted) };
        if let Take::Wait = taken {
            // The accept callback that queued the connection has not returned yet; it wakes
            // the stream (registered above) once it left.
            return Poll::Pending;
        }
        if let Take::Taken(Accepted { core, peer }) = taken {
            let Some(peer) = peer else {
                drop(core);
                return Poll::Ready(Some(Err(Error::InvalidInput("accepted connection has no usable address"))));
            };
            return Poll::Ready(Some(TcpStream::from_accepted(core, peer).map(|stream| (stream, peer))));
        }
        if self.state().failed.load(Ordering::Acquire) != 0 {
            self.ending = true;
            return Poll::Ready(Some(Err(Error::Status(wsk_sys::STATUS_CONNECTION_ABORTED))));
        }
        Poll::Pending
    }

    /// Closes the listen socket: connections not yet taken are closed; resolves when the
    /// close IRP completes. IRQL == PASSIVE_LEVEL (task context).
    pub async fn close(mut self) -> Result<()> {
        self.finish();
        let core = self.attached.core().clone_owner();
        drop(self);
        core.close().await
    }
}

impl Stream for Incoming {
    type Item = Result<(TcpStream, SocketAddr)>;

    /// IRQL == PASSIVE_LEVEL (task context).
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        // A stream whose items are always there spends the task's budget like any ready
        // operation (see `wsk_executor::coop`).
        core::task::ready!(wsk_executor::coop::poll_proceed(cx));
        self.get_mut().poll_accept(cx)
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;

    use crate::socket::events::loom_tests::CountWakes;

    /// One accept callback queuing a connection and a second one refusing its own while the
    /// stream polls once (registers its waker, then takes): the stream never takes a connection
    /// while a callback is inside, and a poll that took nothing is woken after the callbacks
    /// left, after which the connection is there to take. The callbacks run `on_accept`'s
    /// order: enter, queue or refuse, leave, wake. Waking only from a callback that queued
    /// loses the wake (the stream waits on the refusing one, which never wakes it); taking
    /// without looking at the count takes the connection before its callback left.
    #[test]
    fn loom_the_stream_takes_only_settled_connections_and_is_woken_for_them() {
        // Three threads and two wakers' worth of atomics: unbounded, the model takes over ten
        // minutes; two preemptions cover both failures named above.
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound = Some(2);
        builder.check(|| {
            let flags = Arc::new(AtomicU32::new(0));
            let waker = Arc::new(wsk_executor::AtomicWaker::new());
            let accepted: Arc<Ring<usize, 2>> = Arc::new(Ring::new());
            let left = Arc::new(loom::sync::atomic::AtomicBool::new(false));
            let spawn_callback = |queues: bool| {
                let (flags, waker, accepted, left) = (flags.clone(), waker.clone(), accepted.clone(), left.clone());
                loom::thread::spawn(move || {
                    assert!(callback_enter(&flags));
                    if queues {
                        let queue = accepted.try_produce().expect("the only producer");
                        assert!(queue.push(1).is_ok());
                        drop(queue);
                        left.store(true, Ordering::Relaxed);
                    }
                    let _ = crate::socket::events::callback_exit(&flags);
                    waker.wake();
                })
            };
            let (a, b) = (spawn_callback(true), spawn_callback(false));
            let (wakes, stream_waker) = CountWakes::waker();
            waker.register(&stream_waker);
            // SAFETY: this thread is the queue's only consumer.
            let first = unsafe { take_settled(&flags, &accepted) };
            let left_at_take = left.load(Ordering::Relaxed);
            a.join().unwrap();
            b.join().unwrap();
            match first {
                Take::Taken(entry) => {
                    assert_eq!(entry, 1);
                    assert!(left_at_take, "taken while the callback that queued it was inside");
                }
                Take::Wait | Take::Empty => {
                    assert!(wakes.count() >= 1, "a waiting stream was never woken");
                    // SAFETY: as above.
                    let again = unsafe { take_settled(&flags, &accepted) };
                    assert!(matches!(again, Take::Taken(1)), "{again:?}");
                }
            }
        });
    }

    /// Two accept callbacks of one listener at the same time, the stream taking from the queue:
    /// every connection a callback took is queued exactly once with a spare of its own, every
    /// spare is either still in stock or used by exactly one connection, and a callback that
    /// did not take one was refused (on contention, or for want of stock: one spare only).
    /// Without the claims both callbacks can pop the same spare and push into the same slot.
    #[test]
    fn loom_two_accept_callbacks_share_no_spare() {
        loom::model(|| {
            let stock: Arc<Ring<usize, 2>> = Arc::new(Ring::new());
            let accepted: Arc<Ring<(usize, usize), 2>> = Arc::new(Ring::new());
            // SAFETY: the stream is the stock's only producer.
            assert!(unsafe { stock.push(7) }.is_ok());
            let spawn_callback = |connection: usize| {
                let (stock, accepted) = (stock.clone(), accepted.clone());
                loom::thread::spawn(move || hand_over(&stock, &accepted, |spare| (spare, connection)))
            };
            let (a, b) = (spawn_callback(1), spawn_callback(2));
            let mut queued = [0usize; 3];
            let mut spares_used = 0;
            let mut take = |(spare, connection): (usize, usize)| {
                assert_eq!(spare, 7);
                spares_used += 1;
                queued[connection] += 1;
            };
            // SAFETY: this thread is the queue's only consumer.
            if let Some(entry) = unsafe { accepted.pop() } {
                take(entry);
            }
            let results = [a.join().unwrap(), b.join().unwrap()];
            // SAFETY: as above.
            while let Some(entry) = unsafe { accepted.pop() } {
                take(entry);
            }
            for (i, result) in results.iter().enumerate() {
                match result {
                    Ok(()) => assert_eq!(queued[i + 1], 1, "callback {i}'s connection not queued once"),
                    Err(why) => {
                        assert_eq!(queued[i + 1], 0);
                        assert!(matches!(why, NotTaken::Busy | NotTaken::NoStock), "{why:?}");
                    }
                }
            }
            // SAFETY: the callbacks have finished; this thread is the only consumer now.
            let left = usize::from(unsafe { stock.pop() }.is_some());
            assert_eq!(spares_used + left, 1, "a spare was used twice or lost");
        });
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// Each way the accept callback's ring step can end: taken (the spare becomes the queued
    /// entry), no stock, a full queue, and contention on either claim (refused at once).
    #[test]
    #[expect(
        clippy::multiple_unsafe_ops_per_block,
        reason = "a single-threaded test acting as the rings' only producer and consumer in turn"
    )]
    fn hand_over_takes_a_spare_or_says_why_not() {
        let stock: Ring<u32, 2> = Ring::new();
        let accepted: Ring<(u32, u32), 2> = Ring::new();
        assert_eq!(hand_over(&stock, &accepted, |s| (s, 0)), Err(NotTaken::NoStock));
        // SAFETY: single-threaded test: the stream's sides in turn.
        unsafe {
            assert!(stock.push(10).is_ok());
            assert!(stock.push(11).is_ok());
        }
        let spares = stock.try_consume().unwrap();
        assert_eq!(hand_over(&stock, &accepted, |s| (s, 1)), Err(NotTaken::Busy), "stock claimed");
        drop(spares);
        let queue = accepted.try_produce().unwrap();
        assert_eq!(hand_over(&stock, &accepted, |s| (s, 1)), Err(NotTaken::Busy), "queue claimed");
        drop(queue);
        assert_eq!(hand_over(&stock, &accepted, |s| (s, 1)), Ok(()));
        assert_eq!(hand_over(&stock, &accepted, |s| (s, 2)), Ok(()));
        // SAFETY: as above.
        unsafe { assert!(stock.push(12).is_ok()) };
        let mut called = false;
        let full = hand_over(&stock, &accepted, |s| {
            called = true;
            (s, 3)
        });
        assert_eq!(full, Err(NotTaken::Full));
        assert!(!called, "no connection is taken without room to queue it");
        // SAFETY: as above.
        unsafe {
            assert_eq!(accepted.pop(), Some((10, 1)));
            assert_eq!(accepted.pop(), Some((11, 2)));
            assert_eq!(stock.pop(), Some(12), "the refused connection left the spare in stock");
        }
    }
}
