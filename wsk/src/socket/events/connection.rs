//! Connection events: `WskReceiveEvent`, `WskDisconnectEvent`, `WskSendBacklogEvent`, as the
//! [`ConnectionEvents`] stream.

use core::pin::Pin;
use core::ptr::NonNull;
use core::task::{Context, Poll};

use futures_core::Stream;
use wsk_sys::{
    NTSTATUS, PVOID, SIZE_T, STATUS_DATA_NOT_ACCEPTED, STATUS_SUCCESS, ULONG, WSK_CLIENT_CONNECTION_DISPATCH,
    WSK_DATA_INDICATION, WSK_EVENT_DISABLE, WSK_EVENT_DISCONNECT, WSK_EVENT_RECEIVE, WSK_EVENT_SEND_BACKLOG,
    WSK_FLAG_ABORTIVE, WSK_PROVIDER_CONNECTION_DISPATCH, WSK_SOCKET,
};

use super::attached::{Attached, take_early, with_state, with_state_or_note};
use super::borrowed::{Borrowed, BudgetWait};
use super::pieces::BufPieces;
use super::reflect::Reflecting;
use super::retention::{Held, Indicating, Retained, Retention, retain_or_divert};
use super::{
    EARLY_ABORTIVE, EARLY_FAILED, EARLY_GRACEFUL, EARLY_REFUSED, EventBox, EventConfig, EventState, Header, allocate,
    control_events, enable,
};
use crate::buf::IoBuf;
use crate::buf_pool;
use crate::error::{Error, Result};
use crate::loom::{AtomicU32, AtomicUsize, Ordering};
use crate::op::OpSlot;
use crate::socket::call::issue_call;
use crate::socket::kind::Connection;
use crate::socket::shared::{CoreRef, SocketCore};

/// The client dispatch table every connection socket is created with.
pub(crate) static CONNECTION_DISPATCH: WSK_CLIENT_CONNECTION_DISPATCH = WSK_CLIENT_CONNECTION_DISPATCH {
    WskReceiveEvent: Some(on_receive),
    WskDisconnectEvent: Some(on_disconnect),
    WskSendBacklogEvent: Some(on_send_backlog),
};

const NO_DISCONNECT: u32 = 0;
const GRACEFUL: u32 = 1;
const ABORTIVE: u32 = 2;
/// WSK indicated a null list: the socket no longer works.
const FAILED: u32 = 3;

/// The stream's own `WskReceive`, if one is in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Receiving {
    Idle,
    /// Zero-length: resumes indications after a refusal.
    Resume,
    /// Into a pool buffer: the copy path.
    Copy,
}

/// Event state of a connection socket.
#[repr(C)]
pub(crate) struct ConnState {
    header: Header,
    /// Retained indications; a refusal means WSK holds data and indicates no more until a
    /// `WskReceive`.
    rx: Retention<WSK_DATA_INDICATION>,
    disconnect: AtomicU32,
    /// The ideal send backlog last indicated, plus one (0: none yet).
    backlog: AtomicUsize,
    /// The stream's place on the budget's wait list: its copy path waits for budget.
    budget: BudgetWait<Connection>,
    /// [`EventConfig::reflect`]: the callback's way of sending data straight back.
    pub(crate) reflecting: Reflecting,
}

impl ConnState {
    fn allocate(config: &EventConfig) -> Result<EventBox<ConnState>> {
        allocate(ConnState {
            header: Header::new::<ConnState>(),
            rx: Retention::new(config.max_retained_bytes),
            disconnect: AtomicU32::new(NO_DISCONNECT),
            backlog: AtomicUsize::new(0),
            budget: BudgetWait::new(),
            reflecting: Reflecting::new(config.reflect),
        })
    }

    /// The receive callback's offer of its list to the reflector (see `reflect`).
    ///
    /// # Safety
    /// Inside the receive callback, entered; `head` is the list it indicates.
    unsafe fn divert(
        &self,
        core: &SocketCore<Connection>,
        head: NonNull<WSK_DATA_INDICATION>,
        bytes: u32,
    ) -> Option<NTSTATUS> {
        // After a refusal WSK still holds older data: it goes first, through the stream.
        if bytes == 0 || !self.reflecting.may_start() || self.rx.refused() || !self.rx.keep_alone(bytes as usize) {
            return None;
        }
        // SAFETY: forwarded contract; `bytes` are charged.
        unsafe { self.reflecting.start(core, self, head, bytes) }
    }
}

// SAFETY: `repr(C)` with its header, made by `Header::new::<ConnState>()`, first.
unsafe impl EventState for ConnState {
    type Kind = Connection;

    fn header(&self) -> &Header {
        &self.header
    }

    fn clean(&self, core: &SocketCore<Connection>) {
        Connection::cleaning(self);
        self.rx.drain(core, None);
    }
}

impl Indicating for Connection {
    type Indication = WSK_DATA_INDICATION;

    fn release_routine(
        table: &WSK_PROVIDER_CONNECTION_DISPATCH,
    ) -> Option<unsafe extern "system" fn(*mut WSK_SOCKET, *mut WSK_DATA_INDICATION) -> NTSTATUS> {
        table.WskRelease
    }

    fn retention(state: &ConnState) -> &Retention<WSK_DATA_INDICATION> {
        &state.rx
    }

    fn cleaning(state: &ConnState) {
        state.reflecting.cancel();
    }

    fn wake_after_divert(state: &ConnState) -> bool {
        state.reflecting.wake_after()
    }
}

/// `WskReceiveEvent`. IRQL <= DISPATCH_LEVEL; never blocks or allocates.
unsafe extern "system" fn on_receive(
    context: PVOID,
    _flags: ULONG,
    indication: *mut WSK_DATA_INDICATION,
    bytes: SIZE_T,
    accepted: *mut SIZE_T,
) -> NTSTATUS {
    let Some(head) = NonNull::new(indication) else {
        // The socket no longer works: the stream reports it (also if it comes later).
        let failed = |_: &CoreRef<'_, Connection>, state: &ConnState| {
            state.disconnect.store(FAILED, Ordering::Release);
            state.header.waker.wake();
        };
        // SAFETY: as below.
        let _ = unsafe { with_state_or_note(context, EARLY_FAILED, failed) };
        return STATUS_SUCCESS;
    };
    let receive = |core: &CoreRef<'_, Connection>, state: &ConnState| {
        // SAFETY: WSK's indication list of this call, of `bytes` bytes in all.
        let divert = |core: &CoreRef<'_, Connection>, bytes| unsafe { state.divert(core, head, bytes) };
        // SAFETY: as above.
        let status = unsafe { retain_or_divert(core, state, head, || (1, bytes), divert) };
        if status == STATUS_SUCCESS && !accepted.is_null() {
            // A reflection completed inside: the callback took all of it.
            // SAFETY: WSK passes a valid out-parameter with the list.
            unsafe { *accepted = bytes };
        }
        status
    };
    // SAFETY: WSK passes the context we created the connection socket with (or gave it when
    // accepting it) along with this table, and calls only until the close completed.
    // Without a stream (a preset receive callback: static, see `client_control`, or inherited,
    // see `listen`) the data is refused: WSK keeps it for IRP receives or for the stream, and
    // the note tells a stream to come that it must resume the indications. Only a refusal
    // that happened is noted: a stream that resumed (or copied) on a guess could wait in a
    // copying receive for data WSK never kept while the indication it did make sat in the
    // ring (the stress sweep hung so, about 1 run in 100 under CPU contention).
    unsafe { with_state_or_note(context, EARLY_REFUSED, receive) }.unwrap_or(STATUS_DATA_NOT_ACCEPTED)
}

/// `WskDisconnectEvent`. IRQL <= DISPATCH_LEVEL.
unsafe extern "system" fn on_disconnect(context: PVOID, flags: ULONG) -> NTSTATUS {
    let abortive = flags & WSK_FLAG_ABORTIVE != 0;
    let disconnect = |_: &CoreRef<'_, Connection>, state: &ConnState| {
        let kind = if abortive { ABORTIVE } else { GRACEFUL };
        let _ = state.disconnect.compare_exchange(NO_DISCONNECT, kind, Ordering::AcqRel, Ordering::Acquire);
        state.header.waker.wake();
    };
    let early = if abortive { EARLY_ABORTIVE } else { EARLY_GRACEFUL };
    // SAFETY: as in `on_receive`. Before a stream exists (a static disconnect callback) the
    // event is recorded in the core for the stream to come.
    let _ = unsafe { with_state_or_note(context, early, disconnect) };
    STATUS_SUCCESS
}

/// `WskSendBacklogEvent`. IRQL <= DISPATCH_LEVEL.
unsafe extern "system" fn on_send_backlog(context: PVOID, ideal: SIZE_T) -> NTSTATUS {
    let backlog = |_: &CoreRef<'_, Connection>, state: &ConnState| {
        state.backlog.store(ideal.saturating_add(1), Ordering::Release);
        state.header.waker.wake();
    };
    // SAFETY: as in `on_receive`.
    let _ = unsafe { with_state(context, backlog) };
    STATUS_SUCCESS
}

/// One event of a connection.
#[derive(Debug)]
pub enum ConnectionEvent {
    /// Received bytes, in order.
    Data(Received),
    /// The peer disconnected: gracefully (all its data was delivered before this event) or
    /// abortively (reset). The stream ends after it.
    Disconnected {
        /// A reset, not a graceful FIN.
        abortive: bool,
    },
    /// WSK's ideal send backlog changed (`WskSendBacklogEvent`): keep about this many bytes
    /// of sends in flight for full throughput.
    SendBacklog(usize),
}

/// The events of a connection socket as a [`Stream`] (`WskReceiveEvent`,
/// `WskDisconnectEvent`, `WskSendBacklogEvent`).
///
/// Received data comes as [`Received`] items that hold WSK's buffers without copying them;
/// dropping an item returns them (`WskRelease`). The stream ends after
/// [`ConnectionEvent::Disconnected`], or when the socket's close begins.
///
/// ```no_run
/// # async fn example(wsk: &wsk::Wsk, addr: core::net::SocketAddr) -> wsk::Result<()> {
/// use futures_core::Stream;
/// use wsk::events::{ConnectionEvent, EventConfig};
///
/// let stream = wsk::TcpStream::connect(wsk, addr).await?;
/// let (mut events, mut writer) = stream.into_events(EventConfig::default())?;
/// let mut echo = wsk::IoBuf::with_capacity(64 * 1024)?;
/// while let Some(event) = core::future::poll_fn(|cx| core::pin::Pin::new(&mut events).poll_next(cx)).await {
///     match event? {
///         ConnectionEvent::Data(data) => {
///             echo.clear();
///             data.copy_into(&mut echo);
///             drop(data); // back to WSK
///             let (sent, back) = writer.send_all(echo).await;
///             echo = back;
///             sent?;
///         }
///         ConnectionEvent::Disconnected { .. } => break,
///         ConnectionEvent::SendBacklog(_) => {}
///     }
/// }
/// # Ok(()) }
/// ```
pub struct ConnectionEvents {
    /// The core and the state (see the module docs).
    attached: Attached<Connection>,
    /// The stream's own slot: zero-length resumes and copy-path receives; taken from the
    /// library's cache of idle slots for each one and given back when it completed, so an
    /// idle connection holds none.
    slot: Option<OpSlot>,
    /// [`EventConfig::fallback_receive_size`] (the rest of the configuration is the state's:
    /// an idle connection's stream keeps no copy of it).
    fallback_receive_size: usize,
    /// Bytes of the budget charged for the next copy-path receive (0: none yet).
    charged: usize,
    /// A `WskReceive` of the stream is in flight.
    receiving: Receiving,
    /// Receive events are disabled: data comes through IRP receives only.
    irp_only: bool,
    /// The last event was the end (disconnect or error): the next poll ends the stream.
    ending: bool,
    /// The copy path received the FIN: the graceful end comes next (once no reflection is in
    /// flight, as everything else).
    fin_copied: bool,
    backlog_seen: usize,
}

impl ConnectionEvents {
    /// Installs the event state on `core` and enables the receive, disconnect and send
    /// backlog callbacks.
    pub(crate) fn enable(core: &SocketCore<Connection>, config: EventConfig) -> Result<Self> {
        let state = ConnState::allocate(&config)?;
        // The stream's call: it may release indications until it detaches.
        let mask = WSK_EVENT_RECEIVE | WSK_EVENT_DISCONNECT | WSK_EVENT_SEND_BACKLOG;
        let events = ConnectionEvents {
            attached: Attached::install(core, state, mask)?,
            slot: None,
            fallback_receive_size: config.fallback_receive_size,
            charged: 0,
            receiving: Receiving::Idle,
            irp_only: false,
            ending: false,
            fin_copied: false,
            backlog_seen: 0,
        };
        events.take_over_early();
        Ok(events)
    }

    /// What preset event callbacks (static ones, see `client_control`, or ones inherited from
    /// the listening socket, see `listen`) met before the state existed, handed over through
    /// the core (see `attached::with_state_or_note`): a receive callback that refused data
    /// (WSK keeps it and indicates no more until a `WskReceive`) makes the stream start as
    /// after a refusal, so its first poll resumes the indications (or copies, if the peer
    /// finished meanwhile); a disconnect or a failure is the stream's disconnect state.
    fn take_over_early(&self) {
        let core = self.attached.core();
        let state = self.state();
        let early = take_early(core);
        if early & EARLY_REFUSED != 0 {
            state.rx.refused_before();
        }
        let kind = if early & EARLY_FAILED != 0 {
            FAILED
        } else if early & EARLY_ABORTIVE != 0 {
            ABORTIVE
        } else if early & EARLY_GRACEFUL != 0 {
            GRACEFUL
        } else {
            return;
        };
        if kind == FAILED {
            state.disconnect.store(FAILED, Ordering::Release);
        } else {
            let _ = state.disconnect.compare_exchange(NO_DISCONNECT, kind, Ordering::AcqRel, Ordering::Acquire);
        }
    }

    /// Whether the receive callback is preset ([`SocketCore::preset_events`]): one of the
    /// client's static event callbacks (on from the socket's creation, never disabled), or
    /// inherited from the listening socket (on once WSK recorded the accept callback's answer,
    /// a moment the library cannot see: a disable could come before it and be undone by it).
    /// The library never disables a preset receive callback.
    fn preset_receive(&self) -> bool {
        self.attached.core().preset_events() & WSK_EVENT_RECEIVE != 0
    }

    fn state(&self) -> &ConnState {
        self.attached.state()
    }

    /// Disables the receive callback (`SO_WSK_EVENT_CALLBACK` with `WSK_EVENT_DISABLE`):
    /// indications already retained are still delivered, then data comes through IRP
    /// receives (copied into pool buffers). Disconnect and send-backlog events stay on.
    ///
    /// Fails with [`Error::InvalidInput`] when the receive callback is static
    /// ([`Wsk::set_static_event_callbacks`](crate::Wsk::set_static_event_callbacks)): WSK
    /// does not let those be disabled; and on a connection from
    /// [`TcpListener::into_incoming`](crate::TcpListener::into_incoming), whose receive
    /// callback is inherited from the listening socket and turned on at a moment the library
    /// cannot see (a disable before it would be undone).
    ///
    /// IRQL <= DISPATCH_LEVEL.
    pub fn disable_receive(&mut self) -> Result<()> {
        if self.preset_receive() {
            return Err(Error::InvalidInput("the receive callback is static or inherited and cannot be disabled"));
        }
        let status = control_events(self.attached.core(), WSK_EVENT_RECEIVE | WSK_EVENT_DISABLE)?;
        // STATUS_EVENT_PENDING: a callback is running; WSK disables it when it returns, and
        // whatever it retains still reaches the ring.
        if status != wsk_sys::STATUS_EVENT_PENDING {
            crate::error::check(status)?;
        }
        self.irp_only = true;
        Ok(())
    }

    /// Enables the receive callback again after [`ConnectionEvents::disable_receive`].
    ///
    /// IRQL <= DISPATCH_LEVEL.
    pub fn enable_receive(&mut self) -> Result<()> {
        if self.preset_receive() {
            return Err(Error::InvalidInput("the receive callback is static or inherited and cannot be re-enabled"));
        }
        enable(self.attached.core(), WSK_EVENT_RECEIVE)?;
        self.irp_only = false;
        Ok(())
    }

    /// Bytes retained from WSK now (in the stream, in items alive, and in a reflection in
    /// flight). Any IRQL.
    pub fn retained_bytes(&self) -> usize {
        self.state().rx.retained()
    }

    /// Whether a reflection ([`EventConfig::reflect`]) is in flight now: its send waits for
    /// the provider (a peer that does not read, for one). Any IRQL.
    pub fn reflection_in_flight(&self) -> bool {
        self.state().reflecting.busy()
    }

    /// Reflections ([`EventConfig::reflect`]) completed since the stream was made, wrapping
    /// (the idle limit's [`Activity`](crate::idle::Activity)). Any IRQL.
    pub fn reflections(&self) -> u32 {
        self.state().reflecting.count()
    }

    /// Bytes the receive callback sent straight back ([`EventConfig::reflect`]) and whose
    /// send completed, since the stream was made: data that never reached the stream. Any
    /// IRQL.
    pub fn reflected_bytes(&self) -> u64 {
        self.state().reflecting.bytes()
    }

    /// The copy path's budget: `Ready` once the next fallback receive's buffer is charged
    /// to the driver-wide budget; else the stream is queued on the budget's wait list and
    /// woken when budget is given back ([`crate::budget`]).
    fn poll_budget(&mut self) -> Poll<()> {
        let bytes = buf_pool::capacity_for(self.fallback_receive_size);
        let state = self.attached.state();
        state.budget.poll_charge(self.attached.core(), &state.header.waker, &mut self.charged, bytes)
    }

    /// Issues a `WskReceive` with the stream's slot: into a buffer borrowed from the buffer
    /// pool (`copy`; its budget is charged: see [`ConnectionEvents::poll_budget`]), or of
    /// zero length, which asks WSK to resume indications after a refusal.
    ///
    /// Microsoft does not say on which thread resumed indications come. Assumed: the worst,
    /// the receive callback runs on this thread inside the `WskReceive` call, before it
    /// returns (the emulator does that). Nothing here holds a lock or a ring slot across the
    /// call: the callback pushes to the ring and wakes this task, and the stream pops what it
    /// pushed once the call returned.
    #[expect(
        clippy::multiple_unsafe_ops_per_block,
        reason = "one call into a provider routine whose pointer arguments lead into the operation slot"
    )]
    fn issue_receive(&mut self, copy: bool) -> Result<()> {
        if copy {
            // Its bytes come before anything indicated after it (see `reflect`).
            self.state().reflecting.copy_pending();
        }
        let buffer = if copy { Some(buf_pool::global().take(self.fallback_receive_size)?) } else { None };
        if self.slot.is_none() {
            self.slot = Some(crate::op::cache::take()?);
        }
        let Some(slot) = self.slot.as_mut() else { return Err(Error::NoMemory) };
        // SAFETY: the slot is idle (checked by the caller); the WSK_BUF lives in the slot's
        // argument block and the buffer in the slot until the IRP completes.
        unsafe {
            issue_call(
                self.attached.core(),
                slot,
                buffer,
                None,
                |args, buffer| {
                    args.wsk_buf = match buffer {
                        Some(buffer) => buffer.wsk_buf(0, buffer.capacity()),
                        None => wsk_sys::WSK_BUF { Mdl: core::ptr::null_mut(), Offset: 0, Length: 0 },
                    };
                },
                |socket, table, irp, args| {
                    table.WskReceive.map(|receive| receive(socket, &raw mut (*args).wsk_buf, 0, irp))
                },
            )
        }
        .map_err(|not_issued| not_issued.error)?;
        self.receiving = if copy { Receiving::Copy } else { Receiving::Resume };
        Ok(())
    }

    /// The stream's own receive (a resume or a copy) completed with `STATUS_CANCELLED`
    /// although neither the stream's drop nor the close cancelled it: the provider's doing
    /// (see `socket::provider_cancel`). It received nothing, and WSK still holds what it held:
    /// the refusal stands again, so that the stream issues another receive. Not at once: the
    /// stream yields to the executor first (woken at once), so that a provider cancelling
    /// every receive cannot keep the work item in this poll. IRQL <= DISPATCH_LEVEL.
    fn cancelled_by_provider(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<ConnectionEvent>>> {
        crate::log!(info, "wsk: the provider cancelled an event stream's receive; receiving again");
        self.state().rx.refused_before();
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Switches to the copy path: receive events off, no callback inside the library code,
    /// nothing left in the ring. `Pending` until a callback in progress has left (it wakes the
    /// stream then, see `retention::retain`).
    /// A preset receive callback is not disabled: indications may go on between the copy
    /// path's receives, which keeps the order since a pending IRP takes precedence over them
    /// and the stream hands out what the ring holds before issuing the next one.
    fn quiesce(&mut self) -> Poll<Result<()>> {
        if !self.irp_only && self.preset_receive() {
            self.irp_only = true;
        }
        if !self.irp_only {
            let status = control_events(self.attached.core(), WSK_EVENT_RECEIVE | WSK_EVENT_DISABLE)?;
            if status != wsk_sys::STATUS_EVENT_PENDING {
                crate::error::check(status)?;
            }
            self.irp_only = true;
        }
        if self.state().header.flags.load(Ordering::Acquire) >= super::CALLBACK_ONE {
            // A callback (on another CPU) is finishing; it may still push. It wakes the
            // stream (its waker registered by `poll_event`) once it left.
            return Poll::Pending;
        }
        Poll::Ready(Ok(()))
    }

    /// Ends the stream: detaches from the ring (see the module docs).
    fn finish(&mut self) {
        if self.attached.is_done() {
            return;
        }
        self.abandon_receive();
        self.attached.detach();
    }

    /// Abandons the stream's receive in flight, if any (its completion frees the buffer),
    /// and gives back the copy path's charge: the buffer is gone as far as the budget is
    /// concerned, though the IRP may still hold it until it completes.
    fn abandon_receive(&mut self) {
        if self.receiving != Receiving::Idle {
            self.receiving = Receiving::Idle;
            if let Some(slot) = self.slot.as_mut() {
                slot.abandon();
            }
        }
        self.attached.state().budget.give_up(&mut self.charged);
    }

    /// Gives the stream's slot back to the cache (see `slot`). Its result was collected.
    fn release_slot(&mut self) {
        if let Some(slot) = self.slot.take() {
            crate::op::cache::give(slot);
        }
    }

    /// The stream's slot, of the receive in flight.
    fn busy_slot(&mut self) -> &mut OpSlot {
        self.slot.as_mut().expect("a receive in flight was issued on the slot")
    }

    /// `Ready` when the stream's slot (if any) is idle.
    fn poll_slot_idle(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match self.slot.as_mut() {
            Some(slot) => slot.poll_idle(cx),
            None => Poll::Ready(()),
        }
    }

    /// Turns a retained indication into an item, or releases it if close has begun.
    fn hand_out(&mut self, indication: Held<WSK_DATA_INDICATION>) -> Option<Received> {
        let retained = Retained::hand_out(self.attached.core(), self.attached.state_ptr(), indication)?;
        Some(Received { inner: Inner::Indication(retained) })
    }

    /// The next data WSK already indicated, if some waits in the stream: no wait, no
    /// `WskReceive` issued, nothing but data taken (a disconnect, an error or a send
    /// backlog stays for the stream's next poll). For gathering what arrived together into
    /// one send ([`SendChain`](crate::SendChain)): the stream hands these items out in the
    /// same order as its own.
    ///
    /// ```no_run
    /// # async fn example(
    /// #     events: &mut wsk::events::ConnectionEvents,
    /// #     writer: &mut wsk::TcpWriteHalf,
    /// # ) -> wsk::Result<()> {
    /// use wsk::events::{self, ConnectionEvent};
    ///
    /// let mut chain = wsk::SendChain::new()?; // once, reused for every send
    /// while let Some(event) = events::next(events).await {
    ///     let ConnectionEvent::Data(first) = event? else { continue };
    ///     let mut next = Some(first);
    ///     // Everything already there goes back in one WskSend, without a copy.
    ///     while let Some(item) = next.take() {
    ///         // Cannot fail: the chain is empty after each send (it hands back only
    ///         // buffers), and an item is taken only while it has room.
    ///         let _ = chain.push_received(item);
    ///         if !chain.is_full() {
    ///             next = events.try_next_data();
    ///         }
    ///     }
    ///     let (sent, back) = writer.send_chain(chain).await;
    ///     chain = back;
    ///     sent?;
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// IRQL == PASSIVE_LEVEL (task context).
    pub fn try_next_data(&mut self) -> Option<Received> {
        if self.attached.is_done()
            || self.ending
            || !matches!(self.receiving, Receiving::Idle)
            || self.state().reflecting.busy()
        {
            return None;
        }
        loop {
            if self.attached.core().is_closing() {
                return None;
            }
            // SAFETY: the stream is the ring's only consumer.
            let indication = unsafe { self.state().rx.pop() }?;
            if let Some(received) = self.hand_out(indication) {
                return Some(received);
            }
        }
    }

    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<ConnectionEvent>>> {
        if self.attached.is_done() {
            return Poll::Ready(None);
        }
        self.state().header.waker.register(cx.waker());
        self.state().reflecting.unpark();
        loop {
            if self.ending || self.attached.core().is_closing() {
                self.finish();
                return Poll::Ready(None);
            }
            if let Some(status) = self.state().reflecting.failure() {
                self.ending = true;
                return Poll::Ready(Some(Err(Error::Status(status))));
            }
            // Nothing is handed out while a reflection is in flight: it may still send in
            // parts (an entry at a time, or the rest after a short send), and what the user
            // sends of a later item must not come between them. Woken when it ended.
            if self.state().reflecting.wait_idle() {
                return Poll::Pending;
            }
            if self.fin_copied {
                // The copy path met the FIN: the end (no reflection is in flight).
                self.ending = true;
                return Poll::Ready(Some(Ok(ConnectionEvent::Disconnected { abortive: false })));
            }
            match self.receiving {
                Receiving::Idle => {}
                Receiving::Resume => {
                    let done = core::task::ready!(self.busy_slot().poll_submitted(cx));
                    self.receiving = Receiving::Idle;
                    self.release_slot();
                    match done.result() {
                        Ok(_) => {}
                        Err(Error::Cancelled) if self.attached.core().is_closing() => {}
                        Err(Error::Cancelled) => return self.cancelled_by_provider(cx),
                        Err(e) => {
                            self.ending = true;
                            return Poll::Ready(Some(Err(e)));
                        }
                    }
                    continue;
                }
                Receiving::Copy => {
                    let done = core::task::ready!(self.busy_slot().poll_submitted(cx));
                    self.receiving = Receiving::Idle;
                    self.release_slot();
                    let result = done.result();
                    let mut buffer = Borrowed { buf: done.buffer, charged: core::mem::take(&mut self.charged) };
                    return Poll::Ready(Some(match result {
                        Ok(0) => {
                            self.fin_copied = true;
                            continue;
                        }
                        Ok(n) => {
                            buffer.set_len(n);
                            Ok(ConnectionEvent::Data(Received { inner: Inner::Copied(buffer) }))
                        }
                        Err(Error::Cancelled) if self.attached.core().is_closing() => continue,
                        Err(Error::Cancelled) => {
                            drop(buffer);
                            return self.cancelled_by_provider(cx);
                        }
                        Err(e) => {
                            self.ending = true;
                            Err(e)
                        }
                    }));
                }
            }
            // SAFETY: the stream is the ring's only consumer.
            if let Some(indication) = unsafe { self.state().rx.pop() } {
                match self.hand_out(indication) {
                    Some(received) => return Poll::Ready(Some(Ok(ConnectionEvent::Data(received)))),
                    None => continue,
                }
            }
            let state = self.state();
            let disconnect = state.disconnect.load(Ordering::Acquire);
            let refused = state.rx.refused();
            if disconnect == ABORTIVE {
                // Whatever WSK still buffered is lost with the reset.
                self.ending = true;
                return Poll::Ready(Some(Ok(ConnectionEvent::Disconnected { abortive: true })));
            }
            if disconnect == FAILED {
                self.ending = true;
                return Poll::Ready(Some(Err(Error::Status(wsk_sys::STATUS_CONNECTION_ABORTED))));
            }
            if self.irp_only || (refused && disconnect == GRACEFUL) {
                // The copy path: receive events disabled by the user, or the peer finished
                // while WSK still holds refused data (read it, in order, until the end).
                if let Err(e) = core::task::ready!(self.quiesce()) {
                    self.ending = true;
                    return Poll::Ready(Some(Err(e)));
                }
                // SAFETY: as above.
                if let Some(indication) = unsafe { self.state().rx.pop() } {
                    match self.hand_out(indication) {
                        Some(received) => return Poll::Ready(Some(Ok(ConnectionEvent::Data(received)))),
                        None => continue,
                    }
                }
                core::task::ready!(self.poll_slot_idle(cx));
                core::task::ready!(self.poll_budget());
                if let Err(e) = self.issue_receive(true) {
                    self.ending = true;
                    return Poll::Ready(Some(Err(e)));
                }
                continue;
            }
            if refused {
                // WSK holds refused data and indicates nothing until a WskReceive (so nothing
                // reaches the ring meanwhile). If the consumer holds nothing, a zero-length
                // receive resumes the indications (WSK's documented way) and the next one is
                // taken whatever its size: the data stays zero-copy. If it still holds some
                // while asking for more, an IRP receive copies the oldest buffered data out
                // (resuming would only see the next indication refused again); the IRP takes
                // precedence over indications, and this stream yields it before looking at the
                // ring again, so order is kept.
                // Unmappable data is copied too: resuming would see it refused again.
                let copy = state.rx.retained() != 0 || state.rx.refused_unmappable();
                if state.header.flags.load(Ordering::Acquire) >= super::CALLBACK_ONE {
                    // The refusing callback has not left yet: resume after its answer. It
                    // wakes the stream once it left (`retention::retain`).
                    return Poll::Pending;
                }
                core::task::ready!(self.poll_slot_idle(cx));
                if copy {
                    core::task::ready!(self.poll_budget());
                }
                self.state().rx.clear_refused();
                if let Err(e) = self.issue_receive(copy) {
                    self.ending = true;
                    return Poll::Ready(Some(Err(e)));
                }
                continue;
            }
            if disconnect == GRACEFUL {
                // Every byte before the FIN was indicated before the disconnect event. A
                // receive callback may still be pushing the last of it on another CPU
                // (Microsoft documents no serialization of one socket's callbacks): end only
                // once none is inside and the ring is still empty.
                if state.header.flags.load(Ordering::Acquire) >= super::CALLBACK_ONE {
                    // Woken by that callback once it left (`retention::retain`).
                    return Poll::Pending;
                }
                // SAFETY: as above.
                if let Some(indication) = unsafe { self.state().rx.pop() } {
                    match self.hand_out(indication) {
                        Some(received) => return Poll::Ready(Some(Ok(ConnectionEvent::Data(received)))),
                        None => continue,
                    }
                }
                self.ending = true;
                return Poll::Ready(Some(Ok(ConnectionEvent::Disconnected { abortive: false })));
            }
            let backlog = state.backlog.load(Ordering::Acquire);
            if backlog != self.backlog_seen {
                self.backlog_seen = backlog;
                return Poll::Ready(Some(Ok(ConnectionEvent::SendBacklog(backlog - 1))));
            }
            // Waiting for data (or a disconnect, or a backlog change) only: a reflection
            // does not concern the stream, and does not wake it.
            self.state().reflecting.park();
            return Poll::Pending;
        }
    }
}

impl Stream for ConnectionEvents {
    type Item = Result<ConnectionEvent>;

    /// IRQL == PASSIVE_LEVEL (task context).
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        // A stream whose items are always there spends the task's budget like any ready
        // operation (see `wsk_executor::coop`).
        core::task::ready!(wsk_executor::coop::poll_proceed(cx));
        self.get_mut().poll_event(cx)
    }
}

impl Drop for ConnectionEvents {
    fn drop(&mut self) {
        self.abandon_receive();
        // Then `attached` detaches (see `Attached`'s drop).
    }
}

/// Received bytes: WSK's own buffers, held without copying until dropped (then
/// `WskRelease`), or, during backpressure, a pool buffer an IRP receive filled.
///
/// Holding items holds WSK memory: the socket's `close().await` resolves only after every
/// item was dropped. Items may be dropped at IRQL <= DISPATCH_LEVEL.
pub struct Received {
    inner: Inner,
}

enum Inner {
    /// Released (`WskRelease`) when dropped.
    Indication(Retained<Connection>),
    Copied(Borrowed),
}

// SAFETY: shared access only reads the retained (unchanging) provider memory.
unsafe impl Sync for Received {}

impl core::fmt::Debug for Received {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Received").field("len", &self.len()).field("zero_copy", &self.is_zero_copy()).finish()
    }
}

impl Received {
    /// Number of bytes. Any IRQL.
    pub fn len(&self) -> usize {
        match &self.inner {
            Inner::Indication(retained) => retained.held.bytes as usize,
            Inner::Copied(buffer) => buffer.as_slice().len(),
        }
    }

    /// Whether there are no bytes. Any IRQL.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the bytes are WSK's retained buffers (not a copy). Any IRQL.
    pub fn is_zero_copy(&self) -> bool {
        matches!(self.inner, Inner::Indication(_))
    }

    /// The bytes as contiguous pieces, in order. IRQL <= DISPATCH_LEVEL.
    pub fn segments(&self) -> Segments<'_> {
        match &self.inner {
            Inner::Indication(retained) => {
                Segments { next_indication: retained.held.head.as_ptr(), current: BufPieces::empty(), copied: None }
            }
            Inner::Copied(buffer) => Segments {
                next_indication: core::ptr::null_mut(),
                current: BufPieces::empty(),
                copied: Some(buffer.as_slice()),
            },
        }
    }

    /// Copies the bytes into `dst` (as many as fit); returns how many. IRQL <= DISPATCH_LEVEL.
    pub fn copy_to_slice(&self, dst: &mut [u8]) -> usize {
        let mut at = 0;
        for piece in self.segments() {
            let n = piece.len().min(dst.len() - at);
            dst[at..at + n].copy_from_slice(&piece[..n]);
            at += n;
            if at == dst.len() {
                break;
            }
        }
        at
    }

    /// Appends the bytes to `buf` (as many as its capacity allows); returns how many.
    /// IRQL <= DISPATCH_LEVEL.
    pub fn copy_into(&self, buf: &mut IoBuf) -> usize {
        self.segments().map(|piece| buf.extend_from_slice(piece)).sum()
    }
}

impl Received {
    /// An item over a list a callback took outside the ring (a reflection).
    pub(crate) fn from_retained(retained: Retained<Connection>) -> Self {
        Received { inner: Inner::Indication(retained) }
    }

    /// The retained list of an item of WSK's buffers.
    pub(crate) fn retained(&self) -> Option<&Retained<Connection>> {
        match &self.inner {
            Inner::Indication(retained) => Some(retained),
            Inner::Copied(_) => None,
        }
    }

    /// [`Received::retained`], by value.
    pub(crate) fn into_retained(self) -> Option<Retained<Connection>> {
        match self.inner {
            Inner::Indication(retained) => Some(retained),
            Inner::Copied(_) => None,
        }
    }

    /// An item over `buffer`, charged to no budget (for unit tests of what holds items).
    #[cfg(test)]
    pub(crate) fn from_buffer(buffer: IoBuf) -> Self {
        Received { inner: Inner::Copied(Borrowed { buf: Some(buffer), charged: 0 }) }
    }

    /// The buffers of the item as `WSK_BUF`s, in order, for sending it as is: one per entry
    /// of WSK's indication list (their MDL chains are WSK's, and stay untouched), or the one
    /// over a copied item's pool buffer.
    pub(crate) fn wsk_bufs(&self) -> WskBufs {
        match &self.inner {
            Inner::Indication(retained) => WskBufs { next_indication: retained.held.head.as_ptr(), copied: None },
            Inner::Copied(buffer) => WskBufs {
                next_indication: core::ptr::null_mut(),
                copied: buffer.buf.as_ref().map(|buf| buf.wsk_buf(0, buf.len())),
            },
        }
    }

    /// A copied item's pool buffer.
    pub(crate) fn copied(&self) -> Option<&IoBuf> {
        match &self.inner {
            Inner::Copied(buffer) => buffer.buf.as_ref(),
            Inner::Indication(_) => None,
        }
    }

    /// A copied item's pool buffer (ours: its MDL may be linked into a chained send).
    pub(crate) fn copied_mut(&mut self) -> Option<&mut IoBuf> {
        match &mut self.inner {
            Inner::Copied(buffer) => buffer.buf.as_mut(),
            Inner::Indication(_) => None,
        }
    }
}

/// A cursor over the `WSK_BUF`s of a [`Received`] (see [`Received::wsk_bufs`]). It holds
/// raw pointers into the item's list: no borrow, so the item can be handed to a send
/// operation (which keeps it alive) while the cursor walks on.
pub(crate) struct WskBufs {
    next_indication: *mut WSK_DATA_INDICATION,
    copied: Option<wsk_sys::WSK_BUF>,
}

// SAFETY: raw pointers into provider memory usable from any thread while the item lives
// (the contract of `next`).
unsafe impl Send for WskBufs {}

impl WskBufs {
    /// The next non-empty buffer, `None` after the last.
    ///
    /// # Safety
    /// The item the cursor came from is alive (not released) and unchanged.
    pub(crate) unsafe fn next(&mut self) -> Option<wsk_sys::WSK_BUF> {
        if let Some(buf) = self.copied.take() {
            return (buf.Length != 0).then_some(buf);
        }
        while let Some(entry) = NonNull::new(self.next_indication) {
            // SAFETY: an entry of the list the live item retains (caller).
            let entry = unsafe { entry.as_ref() };
            self.next_indication = entry.Next;
            if entry.Buffer.Length != 0 {
                return Some(entry.Buffer);
            }
        }
        None
    }
}

/// The contiguous pieces of a [`Received`] (see [`Received::segments`]).
pub struct Segments<'a> {
    next_indication: *mut WSK_DATA_INDICATION,
    current: BufPieces<'a>,
    copied: Option<&'a [u8]>,
}

// SAFETY: reads memory retained by the `Received` it borrows (which is `Sync`).
unsafe impl Send for Segments<'_> {}

impl<'a> Iterator for Segments<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if let Some(bytes) = self.copied.take() {
            return (!bytes.is_empty()).then_some(bytes);
        }
        loop {
            if let Some(piece) = self.current.next() {
                return Some(piece);
            }
            let indication = NonNull::new(self.next_indication)?;
            // SAFETY: the list is retained by the item this iterator borrows: provider
            // memory that stays valid (and unchanged) until the item releases it.
            let indication = unsafe { indication.as_ref() };
            // SAFETY: as above: the buffer and its MDLs are retained with the list.
            self.current = unsafe { BufPieces::new(&indication.Buffer) };
            self.next_indication = indication.Next;
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use std::vec::Vec;

    use super::*;
    use crate::tests::kernel::{chain, mdl_over};

    fn indication(mdl: *mut wsk_sys::MDL, offset: u32, length: usize) -> WSK_DATA_INDICATION {
        WSK_DATA_INDICATION {
            Next: core::ptr::null_mut(),
            Buffer: wsk_sys::WSK_BUF { Mdl: mdl, Offset: offset, Length: length },
        }
    }

    /// A retained list's segments: every entry's pieces in list order, an empty entry
    /// contributing nothing, across MDL boundaries within an entry.
    #[test]
    fn segments_walk_the_whole_list_in_order() {
        let (mut a, mut b, mut c) = (*b"hello ", *b"wor", *b"ld!");
        let mut first_mdls = [mdl_over(&mut a, true), mdl_over(&mut b, true)];
        let first_chain = chain(&mut first_mdls);
        let mut last_mdl = mdl_over(&mut c, true);
        let last_chain: *mut wsk_sys::MDL = &raw mut last_mdl;
        let mut third = indication(last_chain, 0, 3);
        let mut second = indication(last_chain, 0, 0);
        second.Next = &raw mut third;
        // "lo " from the first MDL, "wor" from the second.
        let mut first = indication(first_chain, 3, 6);
        first.Next = &raw mut second;
        let segments = Segments { next_indication: &raw mut first, current: BufPieces::empty(), copied: None };
        let pieces: Vec<&[u8]> = segments.collect();
        assert_eq!(pieces, [&b"lo "[..], b"wor", b"ld!"]);
    }

    /// A copied item (the backpressure path) yields its buffer as the one segment, copies out
    /// in pieces as large as the destination allows, and releases nothing when dropped.
    #[test]
    fn a_copied_item_reads_as_its_buffer() {
        let copied = Borrowed { buf: Some(IoBuf::copy_from(b"copied bytes").unwrap()), charged: 0 };
        let received = Received { inner: Inner::Copied(copied) };
        assert!(!received.is_zero_copy());
        assert_eq!(received.len(), 12);
        assert_eq!(received.segments().collect::<Vec<_>>(), [&b"copied bytes"[..]]);
        let mut small = [0u8; 6];
        assert_eq!(received.copy_to_slice(&mut small), 6);
        assert_eq!(&small, b"copied");
        let mut buf = IoBuf::with_capacity(32).unwrap();
        assert_eq!(received.copy_into(&mut buf), 12);
        assert_eq!(buf.as_slice(), b"copied bytes");
        let empty = Received { inner: Inner::Copied(Borrowed { buf: IoBuf::with_capacity(1).ok(), charged: 0 }) };
        assert!(empty.is_empty());
        assert_eq!(empty.segments().count(), 0, "an empty copy yields no segment");
    }

    /// A core keeps the first event state installed on it, hands a second one back, sees the
    /// first through its typed accessor and frees it with itself (Miri checks the casts and
    /// that nothing leaks).
    #[test]
    fn a_core_keeps_its_first_event_state() {
        let core = SocketCore::<Connection>::new().unwrap();
        assert!(core.events().is_none());
        let first = ConnState::allocate(&EventConfig { max_retained_bytes: 7, ..EventConfig::default() }).unwrap();
        assert!(core.install_events(first).is_ok(), "the first state is installed");
        let installed = core.events().expect("installed");
        assert!(installed.rx.keep(Held { head: NonNull::dangling(), bytes: 3, count: 1 }));
        let second = ConnState::allocate(&EventConfig::default()).unwrap();
        let second = core.install_events(second).expect_err("a second state is handed back");
        assert_eq!(second.rx.retained(), 0);
        assert_eq!(core.events().map(|state| state.rx.retained()), Some(3), "the first state stays");
    }

    /// The event state is one pool block whose header frees it by its kind: a connection
    /// state allocated, given a retained list, and freed through its header drops and frees
    /// it all (Miri checks the casts and that nothing leaks).
    #[test]
    fn an_event_state_is_freed_through_its_header() {
        let state = ConnState::allocate(&EventConfig::default()).unwrap();
        let mut list = indication(core::ptr::null_mut(), 0, 0);
        assert!(state.rx.keep(Held { head: NonNull::from(&mut list), bytes: 10, count: 1 }));
        assert_eq!(state.rx.retained(), 10);
        let header = EventBox::into_raw(state).cast::<Header>();
        // SAFETY: never installed: no core, callback or stream refers to it.
        unsafe { super::super::free(header) };
    }
}
