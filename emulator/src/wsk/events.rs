//! Event callbacks, the per-socket side: the client's socket context and dispatch table,
//! which events are enabled (`SO_WSK_EVENT_CALLBACK`), the callback running now, the data the
//! client refused (kept for later receives), the indications it retains, and the hooks the IRP
//! paths call so that delivery resumes when it may.
//!
//! ```text
//!   enable (WskControlSocket)  --kick-->  deliverer (reactor thread): running = event
//!        ^                                     | callback at DISPATCH_LEVEL, no lock held
//!        |                                     v
//!   disable: no new call starts;         settle: running = None, complete the disables and
//!   one running on another thread              the close that waited for it
//!   -> STATUS_PENDING / STATUS_EVENT_PENDING
//! ```
//!
//! Everything here is under the socket's lock (`State::events`). Delivery itself is in
//! `deliver`; the indication memory in `indication` and `blocks`.

use std::mem::size_of;
use std::sync::Arc;

use wsk_sys::{
    IRP, NPI_WSK_INTERFACE_ID, NTSTATUS, PFN_WSK_ACCEPT_EVENT, PFN_WSK_DISCONNECT_EVENT, PFN_WSK_RECEIVE_EVENT,
    PFN_WSK_RECEIVE_FROM_EVENT, PFN_WSK_SEND_BACKLOG_EVENT, STATUS_EVENT_PENDING, STATUS_INVALID_DEVICE_STATE,
    STATUS_INVALID_PARAMETER, STATUS_PENDING, STATUS_SUCCESS, WSK_CLIENT_CONNECTION_DISPATCH,
    WSK_CLIENT_DATAGRAM_DISPATCH, WSK_CLIENT_LISTEN_DISPATCH, WSK_EVENT_ACCEPT, WSK_EVENT_CALLBACK_CONTROL,
    WSK_EVENT_DISABLE, WSK_EVENT_DISCONNECT, WSK_EVENT_RECEIVE, WSK_EVENT_RECEIVE_FROM, WSK_EVENT_SEND_BACKLOG,
};

use super::blocks::{self, Block, Release};
use super::indication::Chain;
use super::model::{Client, Events, Irp, KeptDatagram, Kind, Phase, Queue, Segments, State};
use super::queue::complete_now;
use super::reactor;
use super::socket::Socket;
use crate::irp::provider;
use crate::sync::lock;
use crate::verifier::{Rule, bugcheck};

impl State {
    /// Lifts the suppression of `event` (`WSK_EVENT_RECEIVE` or `WSK_EVENT_RECEIVE_FROM`) now,
    /// or, while a callback of that event runs, once its answer is settled: requests are
    /// taken in order with the callback that may have refused data.
    pub(crate) fn resume_indications(&mut self, event: u32) {
        let mut running_now = false;
        for running in self.events.running.iter_mut().filter(|running| running.event == event) {
            running.resume_after = true;
            running_now = true;
        }
        if running_now {
            return;
        }
        if event == WSK_EVENT_RECEIVE {
            self.events.receive_suppressed = false;
        } else {
            self.events.datagrams_suppressed = false;
        }
    }
}

impl Events {
    /// Whether the callback of `event` runs now on another thread than the caller's.
    fn running_elsewhere(&self, event: u32) -> bool {
        let me = std::thread::current().id();
        self.running.iter().any(|r| r.event == event && r.thread != me)
    }
}

/// The events of a connection socket, which a listening socket also takes, for the sockets
/// it accepts (see [`Events::inherit`](super::model::Events)).
const CONNECTION_EVENTS: u32 = WSK_EVENT_RECEIVE | WSK_EVENT_DISCONNECT | WSK_EVENT_SEND_BACKLOG;

/// The `WSK_EVENT_*` bits a socket of `kind` accepts.
fn valid_events(kind: Kind) -> u32 {
    match kind {
        Kind::Listen => WSK_EVENT_ACCEPT | CONNECTION_EVENTS,
        Kind::Connection => WSK_EVENT_RECEIVE | WSK_EVENT_DISCONNECT | WSK_EVENT_SEND_BACKLOG,
        Kind::Datagram => WSK_EVENT_RECEIVE_FROM,
        Kind::Basic => 0,
    }
}

/// The client's callbacks, read from its dispatch table when they are needed (the table must
/// stay valid while the socket is open, as on Windows). Each function is used only with the
/// `Client` of a socket of the kind its table belongs to.
pub(crate) mod callbacks {
    use super::*;

    fn table<T>(client: Client) -> Option<&'static T> {
        // SAFETY: the client passed this table for the socket's kind and keeps it valid while
        // the socket is open (module contract); the callers pick `T` by the socket's kind.
        (client.dispatch != 0).then(|| unsafe { &*(client.dispatch as *const T) })
    }

    pub(crate) fn accept(client: Client) -> Option<PFN_WSK_ACCEPT_EVENT> {
        table::<WSK_CLIENT_LISTEN_DISPATCH>(client).and_then(|t| t.WskAcceptEvent)
    }
    pub(crate) fn inspect(client: Client) -> Option<wsk_sys::PFN_WSK_INSPECT_EVENT> {
        table::<WSK_CLIENT_LISTEN_DISPATCH>(client).and_then(|t| t.WskInspectEvent)
    }
    pub(crate) fn abort(client: Client) -> Option<wsk_sys::PFN_WSK_ABORT_EVENT> {
        table::<WSK_CLIENT_LISTEN_DISPATCH>(client).and_then(|t| t.WskAbortEvent)
    }
    pub(crate) fn receive(client: Client) -> Option<PFN_WSK_RECEIVE_EVENT> {
        table::<WSK_CLIENT_CONNECTION_DISPATCH>(client).and_then(|t| t.WskReceiveEvent)
    }
    pub(crate) fn disconnect(client: Client) -> Option<PFN_WSK_DISCONNECT_EVENT> {
        table::<WSK_CLIENT_CONNECTION_DISPATCH>(client).and_then(|t| t.WskDisconnectEvent)
    }
    pub(crate) fn send_backlog(client: Client) -> Option<PFN_WSK_SEND_BACKLOG_EVENT> {
        table::<WSK_CLIENT_CONNECTION_DISPATCH>(client).and_then(|t| t.WskSendBacklogEvent)
    }
    pub(crate) fn receive_from(client: Client) -> Option<PFN_WSK_RECEIVE_FROM_EVENT> {
        table::<WSK_CLIENT_DATAGRAM_DISPATCH>(client).and_then(|t| t.WskReceiveFromEvent)
    }

    /// Whether the client has a callback for `event` (one valid bit of the socket's kind).
    pub(super) fn present(kind: Kind, client: Client, event: u32) -> bool {
        match (kind, event) {
            (Kind::Listen, WSK_EVENT_ACCEPT) => accept(client).is_some(),
            (Kind::Connection, WSK_EVENT_RECEIVE) => receive(client).is_some(),
            (Kind::Connection, WSK_EVENT_DISCONNECT) => disconnect(client).is_some(),
            (Kind::Connection, WSK_EVENT_SEND_BACKLOG) => send_backlog(client).is_some(),
            (Kind::Datagram, WSK_EVENT_RECEIVE_FROM) => receive_from(client).is_some(),
            _ => false,
        }
    }
}

/// Records the client's context and dispatch table of `socket` (before the client can use it),
/// and turns on the client's static event callbacks that apply to the socket's kind.
pub(crate) fn record_client(socket: &Socket, client: Client) {
    let statics = super::registration::static_events(socket.client);
    let on = {
        let mut state = lock(&socket.state);
        apply_client(socket, &mut state, client, statics);
        state.events.enabled != 0
    };
    if on {
        // An accepted socket may hold data already, with no new readiness edge to find it.
        reactor::kick(socket.key);
    }
}

/// [`record_client`] for a socket an accept callback took (its lock held), which also gets the
/// connection events enabled on the listening socket (`inherited`). Microsoft
/// (`SO_WSK_EVENT_CALLBACK`): they are "automatically enabled on an accepted
/// connection-oriented socket only if the socket is accepted by the listening socket's
/// WskAcceptEvent event callback function", not by `WskAccept`.
///
/// Returns whether events are on: the caller kicks the socket once its lock is released, since
/// data may have come before they were (with no new readiness edge to find it).
#[must_use = "true: the socket is to be kicked"]
pub(crate) fn record_accepted(socket: &Socket, state: &mut State, client: Client, inherited: u32) -> bool {
    let statics = super::registration::static_events(socket.client);
    apply_client(socket, state, client, statics);
    let on = bits(inherited & valid_events(socket.kind))
        .filter(|&event| callbacks::present(socket.kind, client, event))
        .fold(0, |mask, event| mask | event);
    state.events.enabled |= on;
    if on & WSK_EVENT_SEND_BACKLOG != 0 {
        state.events.backlog_due = true;
    }
    state.events.enabled != 0
}

/// Static event callbacks (`WSK_SET_STATIC_EVENT_CALLBACKS`): Microsoft documents that the
/// subsystem enables "the appropriate event callback functions for the specific category" of
/// each new socket, and the control code as enabling them "on all sockets": the emulator
/// enables them on every socket of the client, accepted ones included (whether by `WskAccept`
/// or by `WskAcceptEvent`), from the moment the client gets it, for the events of the socket's
/// kind the client's dispatch table has a callback for. They deliver as soon as the socket can
/// (a datagram socket once bound, a listening socket once listening, a connection once
/// connected).
fn apply_client(socket: &Socket, state: &mut State, client: Client, statics: u32) {
    state.events.client = client;
    let on = bits(statics & valid_events(socket.kind))
        .filter(|&event| callbacks::present(socket.kind, client, event))
        .fold(0, |mask, event| mask | event);
    state.events.static_events = on;
    state.events.enabled |= on;
    if on & WSK_EVENT_SEND_BACKLOG != 0 {
        state.events.backlog_due = true;
    }
}

/// A receive-from callback refused `datagrams` (not `STATUS_SUCCESS`/`STATUS_PENDING`).
/// Enabled with `SO_WSK_EVENT_CALLBACK`, the provider keeps them (served to receives first)
/// and disables the callback until it is enabled again or a `WskReceiveFrom` completes. As a
/// static callback, Microsoft documents that the subsystem "will not disable" it and "will
/// continue calling" it "when new datagrams are received": the emulator drops the refused
/// datagrams (re-indicating them at once would only meet the same refusal) and goes on.
pub(crate) fn refused_datagrams(state: &mut State, datagrams: Vec<KeptDatagram>) {
    if state.events.static_events & WSK_EVENT_RECEIVE_FROM != 0 {
        drop(datagrams);
        return;
    }
    keep_datagrams_in_front(state, datagrams);
    state.events.datagrams_suppressed = true;
}

/// What an accepted control request leads to.
enum Control {
    Done,
    /// A disable waits for a callback on another thread; its IRP completes afterwards.
    Pending,
    /// As `Pending`, without an IRP.
    EventPending,
}

/// `WskControlSocket(WskSetOption, SO_WSK_EVENT_CALLBACK)`: enables or disables events. `irp`
/// (null or accepted by the provider) is completed with the returned status, unless that is
/// `STATUS_PENDING` (it completes once the running callback returned).
///
/// # Safety
/// `input` must be null or readable for `input_size` bytes; a non-null `NpiId` in it must be
/// readable. `irp` must be null or an IRP the provider accepted and has not completed.
pub(crate) unsafe fn control(socket: &Arc<Socket>, input: *const u8, input_size: usize, irp: *mut IRP) -> NTSTATUS {
    // SAFETY: forwarded contract.
    let outcome = unsafe { change(socket, input, input_size, irp) };
    let status = match outcome {
        Ok(Control::Done) => STATUS_SUCCESS,
        Ok(Control::Pending) => return STATUS_PENDING,
        Ok(Control::EventPending) => STATUS_EVENT_PENDING,
        Err(status) => status,
    };
    if irp.is_null() {
        status
    } else {
        // SAFETY: accepted and not completed (caller's contract; `Pending` returned above).
        unsafe { complete_now(irp, status, 0) }
    }
}

/// # Safety
/// As [`control`].
unsafe fn change(
    socket: &Arc<Socket>,
    input: *const u8,
    input_size: usize,
    irp: *mut IRP,
) -> Result<Control, NTSTATUS> {
    if input.is_null() || input_size < size_of::<WSK_EVENT_CALLBACK_CONTROL>() {
        return Err(STATUS_INVALID_PARAMETER);
    }
    // SAFETY: readable for the structure's size (checked above, caller's contract).
    let request = unsafe { input.cast::<WSK_EVENT_CALLBACK_CONTROL>().read_unaligned() };
    // SAFETY: a non-null NpiId is readable (caller's contract).
    if request.NpiId.is_null() || unsafe { request.NpiId.read_unaligned() } != NPI_WSK_INTERFACE_ID {
        return Err(STATUS_INVALID_PARAMETER);
    }
    let disable = request.EventMask & WSK_EVENT_DISABLE != 0;
    let events = request.EventMask & !WSK_EVENT_DISABLE;
    if events == 0 || events & !valid_events(socket.kind) != 0 || (disable && events.count_ones() != 1) {
        return Err(STATUS_INVALID_PARAMETER);
    }
    // A listening socket's connection events are for the sockets it accepts: "After any
    // connection-oriented event callback functions are enabled on a listening socket, they
    // cannot be disabled on the listening socket" (Microsoft, SO_WSK_EVENT_CALLBACK; the
    // status is the emulator's choice). The client's table for them comes with each accepted
    // socket, so it is checked then.
    let inherit = if socket.kind == Kind::Listen { events & CONNECTION_EVENTS } else { 0 };
    if disable && inherit != 0 {
        return Err(STATUS_INVALID_PARAMETER);
    }
    let events = events & !inherit;
    let mut state = lock(&socket.state);
    if events & state.events.static_events != 0 {
        // "The event callback functions that are enabled in this manner are always enabled
        // and cannot be disabled or re-enabled later by the WSK application" (Microsoft,
        // WSK_SET_STATIC_EVENT_CALLBACKS). The status is the emulator's choice.
        return Err(STATUS_INVALID_DEVICE_STATE);
    }
    let client = state.events.client;
    if !disable && !bits(events).all(|event| callbacks::present(socket.kind, client, event)) {
        return Err(STATUS_INVALID_PARAMETER);
    }
    let ready = match socket.kind {
        Kind::Listen => state.phase == Phase::Listening,
        Kind::Connection => state.phase == Phase::Connected,
        Kind::Datagram => state.phase != Phase::Created,
        Kind::Basic => false,
    };
    if !ready {
        return Err(STATUS_INVALID_DEVICE_STATE);
    }
    if disable {
        state.events.enabled &= !events;
        if !state.events.running_elsewhere(events) {
            return Ok(Control::Done);
        }
        if irp.is_null() {
            return Ok(Control::EventPending);
        }
        // SAFETY: accepted and not completed (caller's contract); marked pending before the
        // deliverer can see it (under the socket's lock).
        unsafe { provider::mark_pending(irp) };
        state.events.disable_waiters.push((events, Irp(irp)));
        return Ok(Control::Pending);
    }
    state.events.enabled |= events;
    state.events.inherit |= inherit;
    if events & WSK_EVENT_SEND_BACKLOG != 0 {
        state.events.backlog_due = true;
    }
    if events & WSK_EVENT_RECEIVE_FROM != 0 {
        state.resume_indications(WSK_EVENT_RECEIVE_FROM);
    }
    drop(state);
    // Work may be waiting already (buffered data, a connection in the backlog).
    reactor::kick(socket.key);
    Ok(Control::Done)
}

/// The single bits of `mask`.
fn bits(mask: u32) -> impl Iterator<Item = u32> {
    (0..32).map(|n| 1u32 << n).filter(move |bit| mask & bit != 0)
}

/// What an IRP that just finished means for delivery (called under the socket's lock by the
/// IRP paths, before its completion routine runs): a receive lifts the suppression
/// that refused data set, and delivery is resumed where the IRP may have left work behind
/// (edge-triggered readiness does not repeat). Both take effect in [`after_completions`],
/// once the IRP's completion routine has run: no indication overtakes the completion.
pub(crate) fn after_irp(socket: &Socket, state: &mut State, queue: Queue) {
    let events = &mut state.events;
    let resume = match (socket.kind, queue) {
        (Kind::Connection, Queue::Receive) => {
            // Any WskReceive lifts the suppression, a zero-length one included: Microsoft
            // documents that as the way to resume indications without receiving.
            events.resume |= RESUME_RECEIVE;
            events.enabled & (WSK_EVENT_RECEIVE | WSK_EVENT_DISCONNECT) != 0
        }
        (Kind::Connection, Queue::Send) => events.enabled & WSK_EVENT_DISCONNECT != 0 && state.error.is_some(),
        (Kind::Datagram, Queue::Receive) => {
            events.resume |= RESUME_RECEIVE_FROM;
            events.enabled & WSK_EVENT_RECEIVE_FROM != 0
        }
        (Kind::Listen, Queue::Accept) => events.enabled & WSK_EVENT_ACCEPT != 0,
        _ => false,
    };
    if resume {
        events.resume |= RESUME_KICK;
    }
}

/// A zero-length `WskReceive` completed: receive indications suppressed after refused data
/// resume (kept data first), on the calling thread at the end of its `WskReceive` call
/// ([`reactor::kick_here`]): its receive callback may run before that call returns.
pub(crate) fn resume_receive(socket: &Socket) {
    let kick = {
        let mut state = lock(&socket.state);
        state.resume_indications(WSK_EVENT_RECEIVE);
        state.events.enabled & WSK_EVENT_RECEIVE != 0
    };
    if kick {
        reactor::kick_here(socket.key);
    }
}

/// [`after_irp`] found that a served receive lifts the receive suppression.
const RESUME_RECEIVE: u8 = 1;
/// ... lifts the datagram suppression.
const RESUME_RECEIVE_FROM: u8 = 2;
/// ... left work for a delivery pass.
const RESUME_KICK: u8 = 4;

/// Applies what [`after_irp`] recorded, after the completion routines ran (the caller holds
/// the socket's lock and kicks the socket when this returns true).
#[must_use = "true: the socket is to be kicked"]
pub(crate) fn after_completions(state: &mut State) -> bool {
    let events = &mut state.events;
    let resume = std::mem::take(&mut events.resume);
    if resume & RESUME_RECEIVE != 0 {
        state.resume_indications(WSK_EVENT_RECEIVE);
    }
    if resume & RESUME_RECEIVE_FROM != 0 {
        state.resume_indications(WSK_EVENT_RECEIVE_FROM);
    }
    resume & RESUME_KICK != 0
}

/// Whether a receive (`WskReceive`, `WskReceiveFrom`) must wait: data is being indicated and
/// may come back refused, to be served before anything newer.
pub(crate) fn receive_must_wait(state: &State) -> bool {
    state.events.running.iter().any(|r| r.event & (WSK_EVENT_RECEIVE | WSK_EVENT_RECEIVE_FROM) != 0)
}

/// Copies refused bytes into a receive's buffer from byte `*done` on; returns how many.
///
/// # Safety
/// The memory `buf` describes must be live and writable.
pub(crate) unsafe fn serve_kept(state: &mut State, buf: &Segments, done: &mut usize) -> usize {
    let mut served = 0;
    if let Some((block, start, end)) = state.events.kept.block.as_mut() {
        while *start < *end {
            let Some((address, length)) = buf.chunk(*done) else { break };
            let n = (*end - *start).min(length);
            // SAFETY: `address..address + n` lies in the client's buffer (caller's contract) and
            // does not overlap the provider's block.
            unsafe { std::ptr::copy_nonoverlapping(block.bytes(*end)[*start..].as_ptr(), address, n) };
            *start += n;
            *done += n;
            served += n;
        }
        if *start < *end {
            return served;
        }
        if let Some((block, ..)) = state.events.kept.block.take() {
            blocks::unused(block);
        }
    }
    let kept = &mut state.events.kept.bytes;
    while !kept.is_empty() {
        let Some((address, length)) = buf.chunk(*done) else { break };
        let (front, _) = kept.as_slices();
        let n = front.len().min(length);
        // SAFETY: `address..address + n` lies in the client's buffer (caller's contract) and
        // does not overlap the provider's `kept`.
        unsafe { std::ptr::copy_nonoverlapping(front.as_ptr(), address, n) };
        kept.drain(..n);
        *done += n;
        served += n;
    }
    served
}

/// Puts refused bytes back in front of the kept ones (into the kept buffer as it is when it
/// holds none: its memory is reused).
pub(crate) fn keep_in_front(state: &mut State, bytes: &[u8]) {
    if bytes.is_empty() {
        return;
    }
    crate::counters::bump::refused_bytes_copied(bytes.len() as u64);
    state.events.kept.put_in_front(bytes);
}

/// Keeps refused bytes where they are, in the block they were indicated from (its data
/// `start..end`), in front of the kept ones: without a copy when nothing else is kept.
pub(crate) fn keep_block_in_front(state: &mut State, block: Block, start: usize, end: usize) {
    if start == end {
        blocks::unused(block);
    } else if state.events.kept.is_empty() {
        state.events.kept.block = Some((block, start, end));
    } else {
        keep_in_front(state, &block.bytes(end)[start..]);
        blocks::unused(block);
    }
}

/// Puts refused datagrams back in front of the kept ones, in order.
pub(crate) fn keep_datagrams_in_front(state: &mut State, datagrams: Vec<KeptDatagram>) {
    for datagram in datagrams.into_iter().rev() {
        state.events.kept_datagrams.push_front(datagram);
    }
}

/// What the client holds of a socket's indications, behind a lock of its own (a leaf): so that
/// `WskRelease`, called by the client's consumer for every indication, does not wait for the
/// I/O thread, which holds the socket's state lock while it reads from the host socket.
#[derive(Default)]
pub(crate) struct Retention {
    /// Chains the client retained (`STATUS_PENDING`), until `WskRelease`.
    pub chains: Vec<Chain>,
    /// The chains receive callbacks are handling now (their heads), and whether `WskRelease`
    /// of each came meanwhile (from the client's consumer on another thread, typically):
    /// right if the callback then retains it (`STATUS_PENDING`).
    pub current: Vec<(usize, bool)>,
}

/// The socket's close is completing: indications the client still retains are a violation;
/// the provider takes them back (quarantined with the verifier on), and drops refused data.
pub(crate) fn reclaim_at_close(socket: &Socket) {
    super::inspect::reclaim_at_close(socket);
    {
        let mut state = lock(&socket.state);
        state.events.kept.clear();
        state.events.kept_datagrams.clear();
    }
    let retained = std::mem::take(&mut lock(&socket.retention).chains);
    if retained.is_empty() {
        return;
    }
    if crate::kernel::verifier() {
        let indications: usize = retained.iter().map(Chain::count).sum();
        let bytes: usize = retained.iter().map(Chain::bytes).sum();
        bugcheck(
            Rule::WskIndicationHeldAtClose,
            format!(
                "WskCloseSocket(0x{:x}) completed while the driver still retained {} indication chain(s) ({indications} \
                 indication(s), {bytes} bytes) it never released with WskRelease",
                socket.key,
                retained.len()
            ),
        );
    }
    for chain in retained {
        chain.give_back(socket.key, Release::Reclaimed);
    }
}

/// Drops the event state of a socket at teardown (the driver is gone).
pub(crate) fn forget(socket: &Socket, state: &mut State) {
    state.events.kept.clear();
    state.events.kept_datagrams.clear();
    state.events.disable_waiters.clear();
    for chain in std::mem::take(&mut lock(&socket.retention).chains) {
        chain.drop_now();
    }
}
