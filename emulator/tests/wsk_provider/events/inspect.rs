//! Conditional accept (`SO_CONDITIONAL_ACCEPT`): `WskInspectEvent` before a connection is
//! accepted, its three answers, `WskInspectComplete`, `WskAbortEvent`, and the verifier's rules
//! on them.

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::ptr;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};

use wsk_emulator::Rule;
use wsk_sys::*;

use super::probe::*;
use crate::support::*;

/// What the test's inspect callback saw of one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    key: usize,
    serial: u32,
    local: Option<SocketAddr>,
    remote: Option<SocketAddr>,
    irql: KIRQL,
}

/// The listening socket's context: what the inspect callback answers and what it saw.
struct Inspector {
    answer: AtomicI32,
    seen: Mutex<Vec<Seen>>,
    aborts: Mutex<Vec<(usize, u32)>>,
    accepted: Mutex<Vec<usize>>,
    /// Holds the next inspect callback (after it recorded what it saw) until the test lets it go.
    gate: Mutex<Option<Arc<Gate>>>,
}

impl Inspector {
    fn leaked(answer: WSK_INSPECT_ACTION) -> &'static Inspector {
        Box::leak(Box::new(Inspector {
            answer: AtomicI32::new(answer),
            seen: Mutex::new(Vec::new()),
            aborts: Mutex::new(Vec::new()),
            accepted: Mutex::new(Vec::new()),
            gate: Mutex::new(None),
        }))
    }

    fn context(&'static self) -> PVOID {
        ptr::from_ref(self).cast_mut().cast()
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn wait_seen(&self, count: usize) -> Vec<Seen> {
        eventually("inspections", || self.seen.lock().unwrap().len() >= count);
        self.seen()
    }
}

fn sockaddr_of(at: *mut SOCKADDR) -> Option<SocketAddr> {
    if at.is_null() {
        return None;
    }
    let mut storage = SOCKADDR_STORAGE::zeroed();
    let size = if unsafe { (*at).sa_family } == AF_INET { 16 } else { 28 };
    unsafe { ptr::copy_nonoverlapping(at.cast::<u8>(), ptr::from_mut(&mut storage).cast::<u8>(), size) };
    address(&storage)
}

unsafe extern "system" fn on_inspect(
    context: PVOID,
    local: *mut SOCKADDR,
    remote: *mut SOCKADDR,
    id: *mut WSK_INSPECT_ID,
) -> WSK_INSPECT_ACTION {
    let inspector = unsafe { &*context.cast::<Inspector>() };
    let id = unsafe { *id };
    inspector.seen.lock().unwrap().push(Seen {
        key: id.Key,
        serial: id.SerialNumber,
        local: sockaddr_of(local),
        remote: sockaddr_of(remote),
        irql: KeGetCurrentIrql(),
    });
    let gate = inspector.gate.lock().unwrap().take();
    if let Some(gate) = gate {
        gate.entered.wait();
        gate.release.wait();
    }
    inspector.answer.load(Ordering::SeqCst)
}

unsafe extern "system" fn on_abort(context: PVOID, id: *mut WSK_INSPECT_ID) -> NTSTATUS {
    let inspector = unsafe { &*context.cast::<Inspector>() };
    let id = unsafe { *id };
    inspector.aborts.lock().unwrap().push((id.Key, id.SerialNumber));
    STATUS_SUCCESS
}

unsafe extern "system" fn on_accept(
    context: PVOID,
    _flags: ULONG,
    _local: *mut SOCKADDR,
    _remote: *mut SOCKADDR,
    socket: *mut WSK_SOCKET,
    _accept_context: *mut PVOID,
    _accept_dispatch: *mut *const WSK_CLIENT_CONNECTION_DISPATCH,
) -> NTSTATUS {
    let inspector = unsafe { &*context.cast::<Inspector>() };
    if !socket.is_null() {
        inspector.accepted.lock().unwrap().push(socket as usize);
    }
    STATUS_SUCCESS
}

static INSPECT: WSK_CLIENT_LISTEN_DISPATCH = WSK_CLIENT_LISTEN_DISPATCH {
    WskAcceptEvent: None,
    WskInspectEvent: Some(on_inspect),
    WskAbortEvent: Some(on_abort),
};

static INSPECT_AND_ACCEPT: WSK_CLIENT_LISTEN_DISPATCH = WSK_CLIENT_LISTEN_DISPATCH {
    WskAcceptEvent: Some(on_accept),
    WskInspectEvent: Some(on_inspect),
    WskAbortEvent: Some(on_abort),
};

/// A conditional-accept listener on the loopback with `inspector` as its context.
fn conditional(
    client: &Client,
    inspector: &'static Inspector,
    dispatch: &'static WSK_CLIENT_LISTEN_DISPATCH,
) -> (Sock, SocketAddr) {
    let listener = socket_with(client, WSK_FLAG_LISTEN_SOCKET, inspector.context(), table(dispatch));
    assert_eq!(listener.set_option(SOL_SOCKET, SO_CONDITIONAL_ACCEPT, 1), STATUS_SUCCESS);
    assert_eq!(listener.bind(v4(0)), STATUS_SUCCESS);
    let local = listener.local_address().unwrap();
    (listener, local)
}

/// `WskInspectComplete` with an IRP; the status it completed with.
fn inspect_complete(listener: Sock, key: usize, serial: u32, action: WSK_INSPECT_ACTION) -> NTSTATUS {
    let req = Req::new();
    let mut id = WSK_INSPECT_ID { Key: key, SerialNumber: serial };
    let returned =
        unsafe { (listener.listen_table().WskInspectComplete.unwrap())(listener.0, &raw mut id, action, req.irp) };
    req.wait_returned(returned).status
}

/// The host peer's connection was refused: it reads EOF or a reset, never data.
fn assert_refused(mut peer: TcpStream) {
    peer.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut byte = [0u8; 1];
    assert!(matches!(peer.read(&mut byte), Ok(0) | Err(_)), "the refused connection is closed");
}

#[test]
fn conditional_accept_is_an_option_of_listening_sockets() {
    clean_session(|client| {
        let listener = client.socket(AF_INET, SOCK_STREAM, IPPROTO_TCP, WSK_FLAG_LISTEN_SOCKET).unwrap();
        assert_eq!(listener.get_option(SOL_SOCKET, SO_CONDITIONAL_ACCEPT), Ok(0), "off by default");
        assert_eq!(listener.set_option(SOL_SOCKET, SO_CONDITIONAL_ACCEPT, 1), STATUS_SUCCESS);
        assert_eq!(listener.get_option(SOL_SOCKET, SO_CONDITIONAL_ACCEPT), Ok(1));
        let connection = client.socket(AF_INET, SOCK_STREAM, IPPROTO_TCP, WSK_FLAG_CONNECTION_SOCKET).unwrap();
        assert_eq!(connection.set_option(SOL_SOCKET, SO_CONDITIONAL_ACCEPT, 1), STATUS_NOT_SUPPORTED);
        connection.close();
        listener.close();
    });
}

/// Accept: the inspection sees the listening socket's inspect ID and both addresses at
/// DISPATCH_LEVEL, then the accept IRP gets the connection.
#[test]
fn an_accepted_inspection_goes_to_the_accept_irp() {
    clean_session(|client| {
        let inspector = Inspector::leaked(WskInspectAccept);
        let (listener, local) = conditional(client, inspector, &INSPECT);
        let peer = TcpStream::connect(local).unwrap();
        let (socket, remote) = listener.accept();
        assert_eq!(remote, peer.local_addr().unwrap());
        let seen = inspector.wait_seen(1);
        assert_eq!(
            seen,
            vec![Seen {
                key: listener.0 as usize,
                serial: 1,
                local: Some(local),
                remote: Some(peer.local_addr().unwrap()),
                irql: DISPATCH_LEVEL
            }]
        );
        socket.close();
        listener.close();
    });
}

/// Accept with the accept event enabled and no IRP: `WskAcceptEvent` gets the connection.
#[test]
fn an_accepted_inspection_goes_to_the_accept_event() {
    clean_session(|client| {
        let inspector = Inspector::leaked(WskInspectAccept);
        let (listener, local) = conditional(client, inspector, &INSPECT_AND_ACCEPT);
        assert_eq!(set_events(listener, WSK_EVENT_ACCEPT), STATUS_SUCCESS);
        let peer = TcpStream::connect(local).unwrap();
        eventually("the accept event", || inspector.accepted.lock().unwrap().len() == 1);
        let socket = Sock(inspector.accepted.lock().unwrap()[0] as *mut WSK_SOCKET);
        assert_eq!(socket.remote_address().unwrap(), peer.local_addr().unwrap());
        assert_eq!(inspector.seen().len(), 1, "inspected before it was accepted");
        socket.close();
        listener.close();
    });
}

/// Reject: the peer's connection is reset and no accept IRP ever gets it; the next one,
/// accepted, goes to the waiting IRP.
#[test]
fn a_rejected_inspection_is_refused_and_never_accepted() {
    clean_session(|client| {
        let inspector = Inspector::leaked(WskInspectReject);
        let (listener, local) = conditional(client, inspector, &INSPECT);
        let mut addresses = Box::new([SOCKADDR_STORAGE::zeroed(); 2]);
        let accept = listener.accept_start(&mut addresses);
        let rejected = TcpStream::connect(local).unwrap();
        inspector.wait_seen(1);
        assert_refused(rejected);
        settle();
        assert!(accept.done().is_none(), "a rejected connection is never accepted");
        inspector.answer.store(WskInspectAccept, Ordering::SeqCst);
        let admitted = TcpStream::connect(local).unwrap();
        let done = accept.wait();
        assert_eq!(done.status, STATUS_SUCCESS);
        assert_eq!(address(&addresses[1]), Some(admitted.local_addr().unwrap()));
        assert_eq!(inspector.seen().len(), 2);
        Sock(done.info as *mut WSK_SOCKET).close();
        listener.close();
    });
}

/// Pend: the connection waits for `WskInspectComplete`; Accept gives it to the accept IRP,
/// Reject refuses it.
#[test]
fn a_pended_inspection_waits_for_inspect_complete() {
    clean_session(|client| {
        let inspector = Inspector::leaked(WskInspectPend);
        let (listener, local) = conditional(client, inspector, &INSPECT);
        let first = TcpStream::connect(local).unwrap();
        inspector.wait_seen(1);
        let second = TcpStream::connect(local).unwrap();
        let seen = inspector.wait_seen(2);
        let mut addresses = Box::new([SOCKADDR_STORAGE::zeroed(); 2]);
        let accept = listener.accept_start(&mut addresses);
        settle();
        assert!(accept.done().is_none(), "nothing is accepted while the inspections are pended");
        let key = listener.0 as usize;
        assert_eq!(inspect_complete(listener, key, seen[1].serial, WskInspectReject), STATUS_SUCCESS);
        assert_refused(second);
        assert!(accept.done().is_none());
        assert_eq!(inspect_complete(listener, key, seen[0].serial, WskInspectAccept), STATUS_SUCCESS);
        let done = accept.wait();
        assert_eq!(done.status, STATUS_SUCCESS);
        assert_eq!(address(&addresses[1]), Some(first.local_addr().unwrap()));
        assert!(inspector.aborts.lock().unwrap().is_empty());
        Sock(done.info as *mut WSK_SOCKET).close();
        listener.close();
    });
}

/// A peer that leaves while its inspection is pended: `WskAbortEvent` with its inspect ID;
/// completing the aborted inspection afterwards is allowed and establishes nothing.
#[test]
fn abort_event_when_the_peer_leaves_a_pended_inspection() {
    clean_session(|client| {
        let inspector = Inspector::leaked(WskInspectPend);
        let (listener, local) = conditional(client, inspector, &INSPECT);
        let peer = TcpStream::connect(local).unwrap();
        let seen = inspector.wait_seen(1);
        drop(peer);
        let key = listener.0 as usize;
        eventually("the abort event", || !inspector.aborts.lock().unwrap().is_empty());
        assert_eq!(*inspector.aborts.lock().unwrap(), vec![(key, seen[0].serial)]);
        let mut addresses = Box::new([SOCKADDR_STORAGE::zeroed(); 2]);
        let accept = listener.accept_start(&mut addresses);
        assert_eq!(inspect_complete(listener, key, seen[0].serial, WskInspectAccept), STATUS_SUCCESS);
        settle();
        assert!(accept.done().is_none(), "an aborted connection is not accepted");
        listener.close();
        assert_eq!(accept.wait().status, STATUS_CANCELLED);
    });
}

/// `WskInspectComplete` from another thread while the inspect callback still runs (it will
/// pend): it completes, and its Accept applies when the callback returns `WskInspectPend`.
#[test]
fn inspect_complete_while_the_callback_runs_applies_when_it_pends() {
    clean_session(|client| {
        let inspector = Inspector::leaked(WskInspectPend);
        let gate = Gate::new();
        *inspector.gate.lock().unwrap() = Some(Arc::clone(&gate));
        let (listener, local) = conditional(client, inspector, &INSPECT);
        let mut addresses = Box::new([SOCKADDR_STORAGE::zeroed(); 2]);
        let accept = listener.accept_start(&mut addresses);
        let peer = TcpStream::connect(local).unwrap();
        gate.entered.wait();
        let seen = inspector.seen();
        let key = listener.0 as usize;
        assert_eq!(inspect_complete(listener, key, seen[0].serial, WskInspectAccept), STATUS_SUCCESS);
        assert!(accept.done().is_none(), "not accepted before the callback returned");
        gate.release.wait();
        let done = accept.wait();
        assert_eq!(done.status, STATUS_SUCCESS);
        assert_eq!(address(&addresses[1]), Some(peer.local_addr().unwrap()));
        Sock(done.info as *mut WSK_SOCKET).close();
        listener.close();
    });
}

/// The same race, but the callback does not pend: the completion was of an inspection never
/// pended.
#[test]
fn inspect_complete_while_the_callback_runs_and_does_not_pend_is_reported() {
    let report = broken_session(|client| {
        let inspector = Inspector::leaked(WskInspectReject);
        let gate = Gate::new();
        *inspector.gate.lock().unwrap() = Some(Arc::clone(&gate));
        let (listener, local) = conditional(client, inspector, &INSPECT);
        let peer = TcpStream::connect(local).unwrap();
        gate.entered.wait();
        let serial = inspector.seen()[0].serial;
        // BUG: completes an inspection its callback is about to reject.
        assert_eq!(inspect_complete(listener, listener.0 as usize, serial, WskInspectAccept), STATUS_SUCCESS);
        gate.release.wait();
        assert_refused(peer);
    });
    report.assert_first(Rule::WskInspectIdUnknown);
}

/// A connection the client accepted waits for an accept IRP; meanwhile the next one stays in
/// the host's backlog, uninspected.
#[test]
fn no_inspection_starts_while_an_accepted_connection_waits() {
    clean_session(|client| {
        let inspector = Inspector::leaked(WskInspectAccept);
        let (listener, local) = conditional(client, inspector, &INSPECT);
        let first = TcpStream::connect(local).unwrap();
        inspector.wait_seen(1);
        let second = TcpStream::connect(local).unwrap();
        settle();
        assert_eq!(inspector.seen().len(), 1, "inspected while an accepted connection waited");
        let (socket, remote) = listener.accept();
        assert_eq!(remote, first.local_addr().unwrap());
        inspector.wait_seen(2);
        let (other, remote) = listener.accept();
        assert_eq!(remote, second.local_addr().unwrap());
        socket.close();
        other.close();
        listener.close();
    });
}

/// At most `MAX_PENDED` (64) inspections are pended at once; the next connection is
/// inspected once one of them is completed.
#[test]
fn at_most_64_inspections_are_pended_at_once() {
    clean_session(|client| {
        let inspector = Inspector::leaked(WskInspectPend);
        let (listener, local) = conditional(client, inspector, &INSPECT);
        let peers: Vec<TcpStream> = (0..65).map(|_| TcpStream::connect(local).unwrap()).collect();
        let seen = inspector.wait_seen(64);
        settle();
        assert_eq!(inspector.seen().len(), 64, "a 65th inspection was pended");
        let key = listener.0 as usize;
        assert_eq!(inspect_complete(listener, key, seen[0].serial, WskInspectReject), STATUS_SUCCESS);
        let seen = inspector.wait_seen(65);
        for inspection in &seen[1..] {
            assert_eq!(inspect_complete(listener, key, inspection.serial, WskInspectReject), STATUS_SUCCESS);
        }
        for peer in peers {
            assert_refused(peer);
        }
        listener.close();
    });
}

/// A conditional listener whose client table has no `WskInspectEvent` accepts every
/// connection.
#[test]
fn a_conditional_listener_without_an_inspect_callback_accepts() {
    clean_session(|client| {
        let listener = client.socket(AF_INET, SOCK_STREAM, IPPROTO_TCP, WSK_FLAG_LISTEN_SOCKET).unwrap();
        assert_eq!(listener.set_option(SOL_SOCKET, SO_CONDITIONAL_ACCEPT, 1), STATUS_SUCCESS);
        assert_eq!(listener.bind(v4(0)), STATUS_SUCCESS);
        let local = listener.local_address().unwrap();
        let peer = TcpStream::connect(local).unwrap();
        let (socket, remote) = listener.accept();
        assert_eq!(remote, peer.local_addr().unwrap());
        socket.close();
        listener.close();
    });
}

#[test]
fn inspect_complete_of_a_completed_inspection_is_reported() {
    let report = broken_session(|client| {
        let inspector = Inspector::leaked(WskInspectPend);
        let (listener, local) = conditional(client, inspector, &INSPECT);
        let peer = TcpStream::connect(local).unwrap();
        let seen = inspector.wait_seen(1);
        let key = listener.0 as usize;
        assert_eq!(inspect_complete(listener, key, seen[0].serial, WskInspectReject), STATUS_SUCCESS);
        assert_refused(peer);
        // BUG: the inspection was completed already.
        assert_eq!(inspect_complete(listener, key, seen[0].serial, WskInspectReject), STATUS_INVALID_PARAMETER);
    });
    report.assert_first(Rule::WskInspectIdUnknown);
}

#[test]
fn inspect_complete_of_an_id_never_handed_out_is_reported() {
    let report = broken_session(|client| {
        let inspector = Inspector::leaked(WskInspectPend);
        let (listener, _) = conditional(client, inspector, &INSPECT);
        // BUG: no connection was ever inspected.
        assert_eq!(inspect_complete(listener, listener.0 as usize, 7, WskInspectAccept), STATUS_INVALID_PARAMETER);
    });
    report.assert_first(Rule::WskInspectIdUnknown);
}

#[test]
fn an_inspect_callback_answering_no_action_is_reported_and_the_connection_refused() {
    let report = broken_session(|client| {
        // BUG: not a WSK_INSPECT_ACTION the callback may return.
        let inspector = Inspector::leaked(WskInspectMax);
        let (_listener, local) = conditional(client, inspector, &INSPECT);
        let peer = TcpStream::connect(local).unwrap();
        inspector.wait_seen(1);
        assert_refused(peer);
    });
    report.assert_first(Rule::WskInvalidInspectAction);
}

#[test]
fn inspect_complete_with_pend_is_reported() {
    let report = broken_session(|client| {
        let inspector = Inspector::leaked(WskInspectPend);
        let (listener, local) = conditional(client, inspector, &INSPECT);
        let _peer = TcpStream::connect(local).unwrap();
        let seen = inspector.wait_seen(1);
        // BUG: WskInspectComplete takes Accept or Reject only.
        let status = inspect_complete(listener, listener.0 as usize, seen[0].serial, WskInspectPend);
        assert_eq!(status, STATUS_INVALID_PARAMETER);
    });
    report.assert_first(Rule::WskInvalidInspectAction);
}

/// The close of a listening socket with a pended inspection completes (nothing hangs), the
/// connection is refused, and the verifier reports the inspection never completed.
#[test]
fn closing_with_a_pended_inspection_is_reported() {
    let report = broken_session(|client| {
        let inspector = Inspector::leaked(WskInspectPend);
        let (listener, local) = conditional(client, inspector, &INSPECT);
        let peer = TcpStream::connect(local).unwrap();
        inspector.wait_seen(1);
        // BUG: the pended inspection is never completed.
        assert_eq!(listener.close().status, STATUS_SUCCESS);
        assert_refused(peer);
    });
    report.assert_first(Rule::WskInspectionPendingAtClose);
}

#[test]
fn conditional_accept_after_bind_is_reported() {
    let report = broken_session(|client| {
        let (listener, _) = client.listener(v4(0));
        // BUG: SO_CONDITIONAL_ACCEPT must be set before the bind.
        assert_eq!(listener.set_option(SOL_SOCKET, SO_CONDITIONAL_ACCEPT, 1), STATUS_INVALID_DEVICE_STATE);
    });
    report.assert_first(Rule::WskConditionalAcceptAfterBind);
}
