//! Conditional accept (`SO_CONDITIONAL_ACCEPT`): a listening socket with the option on asks
//! the client's `WskInspectEvent` about each connection before the connection is given to an
//! accept IRP or to `WskAcceptEvent`.
//!
//! ```text
//!   host backlog --accept--> inspecting --WskInspectEvent--> Accept  -> approved -> WskAccept IRP
//!                                                           |                      or WskAcceptEvent
//!                                                           Reject  -> reset (SO_LINGER 0, close)
//!                                                           Pend    -> pended --WskInspectComplete-->
//!                                                                        |      Accept / Reject as above
//!                                                                        peer left: WskAbortEvent
//! ```
//!
//! What Microsoft documents, and what this provider does:
//! * The option applies to listening sockets only and must be set before the bind (a later set
//!   is the verifier's `WSK_CONDITIONAL_ACCEPT_AFTER_BIND` and `STATUS_INVALID_DEVICE_STATE`;
//!   Microsoft names no status for it).
//! * `WskInspectEvent` (IRQL <= DISPATCH_LEVEL; here DISPATCH_LEVEL, on the deliverer, with no
//!   lock held) gets the local and remote addresses and an inspect ID valid during the call
//!   (`Key` the listening socket, `SerialNumber` counting from 1). Accept: the connection goes
//!   on to the next `WskAccept` IRP or, without one, to `WskAcceptEvent` if enabled. Reject:
//!   the connection is dropped and never accepted. Pend: held until `WskInspectComplete` with
//!   an inspect ID of the same contents (the client copies it) and Accept or Reject.
//! * `WskAbortEvent` (IRQL <= DISPATCH_LEVEL) tells the client that a connection request it
//!   pended was dropped (here: the peer closed or reset it); it must return `STATUS_SUCCESS`.
//!   `WskInspectComplete` of an aborted request afterwards is allowed and establishes nothing
//!   (it completes with `STATUS_SUCCESS` here: Microsoft names no status for it).
//! * No `WSK_EVENT_*` bit enables `WskInspectEvent` or `WskAbortEvent`: this provider calls
//!   them whenever the option is on and the listening socket's client table has them. A
//!   conditional listener whose table has no `WskInspectEvent` accepts every connection.
//!
//! Where the documentation is silent this provider assumes the following, and clients must cope:
//! * The host's TCP has completed the three-way handshake before anything is inspected (a
//!   Linux listening socket queues only established connections): a rejected peer sees its
//!   connection reset after it was established, where Windows may refuse the SYN itself. A
//!   connection accepted by the inspection is established from the provider's view; a peer
//!   leaving after that is seen by the accepted socket, not with `WskAbortEvent`.
//! * At most [`MAX_PENDED`] inspections stay pended per listening socket, and none is started
//!   while a connection the client accepted waits for its accept IRP or callback: further
//!   connections wait in the host's backlog (which pushes back on the peers as it fills).
//! * A listening socket closed with pended inspections refuses those connections; the
//!   verifier reports them (`WSK_INSPECTION_PENDING_AT_CLOSE`): a driver ends its
//!   inspections before it closes the socket.
//! * `WskInspectComplete` may come while the inspection's `WskInspectEvent` still runs (the
//!   client handed the copied ID to another CPU, which was quicker than the callback's
//!   return): it completes at once and its decision applies when the callback returns
//!   `WskInspectPend`; if the callback returns anything else the completion was of an
//!   inspection never pended (`WSK_INSPECT_ID_UNKNOWN`). Microsoft's documentation does not
//!   speak of this race.
//! * An action out of range from `WskInspectEvent` or in `WskInspectComplete` is reported
//!   (`WSK_INVALID_INSPECT_ACTION`); the connection is refused, the call fails with
//!   `STATUS_INVALID_PARAMETER`. So is an inspect ID with no pended inspection
//!   (`WSK_INSPECT_ID_UNKNOWN`).

use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::sync::Arc;

use wsk_sys::{
    NTSTATUS, PFN_WSK_ABORT_EVENT, PFN_WSK_INSPECT_EVENT, STATUS_INVALID_DEVICE_STATE, STATUS_INVALID_PARAMETER,
    STATUS_SUCCESS, WSK_INSPECT_ACTION, WSK_INSPECT_ID, WskInspectAccept, WskInspectPend, WskInspectReject,
};

use super::events::callbacks;
use super::model::{Inspected, Inspections, Phase, Queue, State};
use super::socket::Socket;
use super::{addr, queue, reactor, status};
use crate::sync::lock;
use crate::verifier::{Rule, bugcheck};

/// Inspections pended at most per listening socket (see the module documentation).
pub(crate) const MAX_PENDED: usize = 64;

/// A conditional-accept callback due on a listening socket.
pub(crate) enum Due {
    /// `WskInspectEvent` for the connection with inspect ID serial `serial`.
    Inspect { callback: PFN_WSK_INSPECT_EVENT, serial: u32, local: Option<SocketAddr>, remote: Option<SocketAddr> },
    /// `WskAbortEvent` for the pended inspection `serial`.
    Abort { callback: PFN_WSK_ABORT_EVENT, serial: u32 },
}

/// The inspect ID of `serial` on the listening socket `key`.
pub(crate) fn inspect_id(key: usize, serial: u32) -> WSK_INSPECT_ID {
    WSK_INSPECT_ID { Key: key, SerialNumber: serial }
}

/// The next connection for an accept IRP or `WskAcceptEvent` of the listener `key`: from the
/// host's backlog, or on a conditional-accept listener only one the client accepted
/// (`WouldBlock` when none). Taking one lets the next connection of the backlog be inspected:
/// the listener is kicked for it (its readiness edge may be gone).
pub(crate) fn take(
    key: usize,
    host: &socket2::Socket,
    inspect: &mut Inspections,
) -> std::io::Result<(socket2::Socket, socket2::SockAddr)> {
    if !inspect.on {
        return status::retry(|| host.accept());
    }
    match inspect.approved.pop_front() {
        Some(Inspected { connection, peer, .. }) => {
            reactor::kick(key);
            Ok((connection, peer))
        }
        None => Err(std::io::Error::from(std::io::ErrorKind::WouldBlock)),
    }
}

/// The next conditional-accept callback due on `listener` (its state locked): an abort for a
/// pended inspection whose peer left, or the inspection of the next connection of the host's
/// backlog. A connection the table has no `WskInspectEvent` for is accepted at once.
pub(crate) fn next(listener: &Socket, state: &mut State) -> Option<Due> {
    let client = state.events.client;
    find_departed(state);
    while let Some(serial) = state.inspect.aborts_due.pop_front() {
        if let Some(callback) = callbacks::abort(client) {
            return Some(Due::Abort { callback, serial });
        }
    }
    if state.phase != Phase::Listening || !state.inspect.approved.is_empty() || state.inspect.pended.len() >= MAX_PENDED
    {
        return None;
    }
    let host = state.host.as_ref()?;
    loop {
        let (connection, peer) = match status::retry(|| host.accept()) {
            Ok(accepted) => accepted,
            // Reset before it was accepted: take the next one.
            Err(error) if matches!(error.raw_os_error(), Some(libc::ECONNABORTED | libc::EPROTO)) => continue,
            Err(_) => return None,
        };
        if connection.set_nonblocking(true).is_err() {
            continue;
        }
        state.inspect.serial = state.inspect.serial.wrapping_add(1).max(1);
        let serial = state.inspect.serial;
        let local = connection.local_addr().ok().and_then(|a| addr::from_host(&a));
        let remote = addr::from_host(&peer);
        let inspected = Inspected { serial, connection, peer, early: None };
        let Some(callback) = callbacks::inspect(client) else {
            state.inspect.approved.push_back(inspected);
            // An accept IRP or callback takes it on the next pass.
            reactor::kick(listener.key);
            return None;
        };
        state.inspect.inspecting.push(inspected);
        return Some(Due::Inspect { callback, serial, local, remote });
    }
}

/// Pended connections whose peer closed or reset them: dropped, their aborts due.
fn find_departed(state: &mut State) {
    let inspect = &mut state.inspect;
    let mut at = 0;
    while at < inspect.pended.len() {
        let mut probe = [MaybeUninit::<u8>::uninit(); 1];
        let gone = match status::retry(|| inspect.pended[at].connection.peek(&mut probe)) {
            Ok(0) => true,
            Ok(_) => false,
            Err(error) => !status::would_block(&error),
        };
        if gone {
            let departed = inspect.pended.swap_remove(at);
            reactor::deregister(&departed.connection);
            inspect.aborts_due.push_back(departed.serial);
            inspect.aborted.push(departed.serial);
        } else {
            at += 1;
        }
    }
}

/// Settles what `WskInspectEvent` answered for `serial` (the listener's state locked).
/// Returns whether a connection was accepted (an accept IRP or callback may take it now).
pub(crate) fn settle(listener: &Socket, state: &mut State, serial: u32, action: WSK_INSPECT_ACTION) -> bool {
    let Some(at) = state.inspect.inspecting.iter().position(|inspected| inspected.serial == serial) else {
        return false;
    };
    let inspected = state.inspect.inspecting.swap_remove(at);
    if state.closing {
        refuse(inspected);
        return false;
    }
    let action = match inspected.early {
        // Completed while the callback ran (another CPU was quicker than its return): right
        // if the callback pends, and then that decision applies now.
        Some(early) if action == WskInspectPend => early,
        Some(_) => {
            if crate::kernel::verifier() {
                bugcheck(
                    Rule::WskInspectIdUnknown,
                    format!(
                        "WskInspectComplete(0x{:x}, serial {serial}) came while WskInspectEvent ran, and the \
                         callback did not pend the inspection (returned {action})",
                        listener.key
                    ),
                );
            }
            action
        }
        None => action,
    };
    match action {
        accept if accept == WskInspectAccept => {
            state.inspect.approved.push_back(inspected);
            true
        }
        reject if reject == WskInspectReject => {
            refuse(inspected);
            false
        }
        pend if pend == WskInspectPend => {
            // Readiness of the held connection (the peer's FIN or reset) wakes the listener,
            // whose next pass finds the departure. Registering reports a present one at once.
            if reactor::register(&inspected.connection, listener.key).is_err() {
                refuse(inspected);
                return false;
            }
            state.inspect.pended.push(inspected);
            false
        }
        other => {
            if crate::kernel::verifier() {
                bugcheck(
                    Rule::WskInvalidInspectAction,
                    format!(
                        "WskInspectEvent of listening socket 0x{:x} returned {other}, not WskInspectAccept, \
                         WskInspectReject or WskInspectPend; the connection is refused",
                        listener.key
                    ),
                );
            }
            refuse(inspected);
            false
        }
    }
}

/// `WskInspectComplete(listener, id, action)`: finishes a pended inspection.
pub(crate) fn complete(listener: &Arc<Socket>, id: Option<WSK_INSPECT_ID>, action: WSK_INSPECT_ACTION) -> NTSTATUS {
    let Some(id) = id else { return STATUS_INVALID_PARAMETER };
    if action != WskInspectAccept && action != WskInspectReject {
        if crate::kernel::verifier() {
            bugcheck(
                Rule::WskInvalidInspectAction,
                format!(
                    "WskInspectComplete(0x{:x}, serial {}) with action {action}: only WskInspectAccept and \
                     WskInspectReject complete an inspection",
                    listener.key, id.SerialNumber
                ),
            );
        }
        return STATUS_INVALID_PARAMETER;
    }
    {
        let mut state = lock(&listener.state);
        if !state.inspect.on {
            return STATUS_INVALID_DEVICE_STATE;
        }
        let inspect = &mut state.inspect;
        let ours = |serial: u32| id.Key == listener.key && serial == id.SerialNumber;
        let pended = inspect.pended.iter().position(|held| ours(held.serial));
        let aborted = inspect.aborted.iter().position(|&serial| ours(serial));
        if pended.is_none()
            && aborted.is_none()
            && let Some(running) = inspect.inspecting.iter_mut().find(|held| ours(held.serial) && held.early.is_none())
        {
            // Its WskInspectEvent has not returned yet: the decision applies when it returns
            // WskInspectPend (as a WskRelease during a receive callback, see `deliver`).
            running.early = Some(action);
            return STATUS_SUCCESS;
        }
        match (pended, aborted) {
            (Some(at), _) => {
                let held = inspect.pended.swap_remove(at);
                reactor::deregister(&held.connection);
                if action == WskInspectAccept {
                    inspect.approved.push_back(held);
                } else {
                    refuse(held);
                }
            }
            (None, Some(at)) => {
                // Dropped before the client decided: nothing is established (as documented).
                inspect.aborted.swap_remove(at);
            }
            (None, None) => {
                if crate::kernel::verifier() {
                    bugcheck(
                        Rule::WskInspectIdUnknown,
                        format!(
                            "WskInspectComplete(0x{:x}) with inspect ID {{Key 0x{:x}, SerialNumber {}}}: no pended \
                             inspection of this listening socket has it (never pended, completed already, or of \
                             another socket)",
                            listener.key, id.Key, id.SerialNumber
                        ),
                    );
                }
                return STATUS_INVALID_PARAMETER;
            }
        }
    }
    // An accepted connection waits for its accept; a slot for one more pended inspection is free.
    reactor::kick(listener.key);
    STATUS_SUCCESS
}

/// Whether a connection the client accepted waits while an accept IRP is queued (the
/// deliverer then moves the accept queue forward).
pub(crate) fn approved_for_irp(listener: &Socket) -> bool {
    let mut state = lock(&listener.state);
    state.inspect.on && !state.inspect.approved.is_empty() && queue::busy(&mut state, Queue::Accept)
}

/// The listening socket's close completes: connections held for inspection or acceptance are
/// refused; pended inspections never completed are a violation.
pub(crate) fn reclaim_at_close(listener: &Socket) {
    let (pended, rest) = {
        let mut state = lock(&listener.state);
        let inspect = &mut state.inspect;
        let pended = std::mem::take(&mut inspect.pended);
        let mut rest: Vec<Inspected> = inspect.approved.drain(..).collect();
        rest.append(&mut inspect.inspecting);
        inspect.aborts_due.clear();
        inspect.aborted.clear();
        (pended, rest)
    };
    if !pended.is_empty() && crate::kernel::verifier() {
        let serials: Vec<u32> = pended.iter().map(|held| held.serial).collect();
        bugcheck(
            Rule::WskInspectionPendingAtClose,
            format!(
                "WskCloseSocket(0x{:x}) completed with {} pended inspection(s) never completed with \
                 WskInspectComplete (serial numbers {serials:?}); the provider refused those connections",
                listener.key,
                pended.len()
            ),
        );
    }
    for held in pended {
        reactor::deregister(&held.connection);
        refuse(held);
    }
    for held in rest {
        refuse(held);
    }
}

/// Refuses a connection: reset (`SO_LINGER` 0 and close), never accepted.
fn refuse(inspected: Inspected) {
    let _ = inspected.connection.set_linger(Some(std::time::Duration::ZERO));
    drop(inspected);
}
