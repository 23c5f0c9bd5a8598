//! Event callbacks (`SO_WSK_EVENT_CALLBACK`): each callback's arguments, IRQL and thread;
//! enabling and disabling; serialization; IRPs taking precedence; retained, partially
//! accepted and refused indications; accept and datagram events.

mod close;
mod inherit;
mod inspect;
mod probe;
mod races;
mod static_callbacks;
mod verifier;

use std::io::{Read, Write};
use std::mem::size_of;
use std::net::{Shutdown, TcpStream, UdpSocket};
use std::ptr;
use std::sync::atomic::Ordering;

use wsk_sys::*;

use self::probe::*;
use crate::support::*;

#[test]
fn receive_event_indicates_chains_of_at_most_16_kib_at_dispatch_level() {
    clean_session(|client| {
        let probe = Probe::leaked();
        let (listener, socket, mut peer) = connection(client, probe);
        // Data buffered before the event is enabled is indicated once it is.
        let sent = pattern(200_000, 3);
        peer.write_all(&sent[..70_000]).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(set_events(socket, WSK_EVENT_RECEIVE), STATUS_SUCCESS);
        peer.write_all(&sent[70_000..]).unwrap();
        eventually("all data indicated", || probe.data().len() == sent.len());
        assert_eq!(probe.data(), sent);
        assert!(probe.problems().is_empty(), "{:?}", probe.problems());
        let chains = probe.chains.lock().unwrap().clone();
        assert!(chains.iter().any(|&(count, _)| count > 1), "some indication is a chain: {chains:?}");
        assert_eq!(probe.max_inside.load(Ordering::SeqCst), 1);
        socket.close();
        listener.close();
    });
}

#[test]
fn disconnect_event_graceful_after_the_data_and_abortive_on_reset() {
    clean_session(|client| {
        // Graceful: the FIN is indicated once, after every byte.
        let probe = Probe::leaked();
        let (listener, socket, mut peer) = connection(client, probe);
        assert_eq!(set_events(socket, WSK_EVENT_RECEIVE | WSK_EVENT_DISCONNECT), STATUS_SUCCESS);
        peer.write_all(b"last words").unwrap();
        peer.shutdown(Shutdown::Write).unwrap();
        eventually("the disconnect indication", || !probe.disconnects.lock().unwrap().is_empty());
        assert_eq!(probe.data(), b"last words");
        settle();
        assert_eq!(*probe.disconnects.lock().unwrap(), vec![0]);
        // A receive completes with 0 bytes, as after a FIN seen by a receive.
        let mut buf = Buf::zeroed(8);
        let done = socket.receive_start(&mut buf, 0).wait();
        assert_eq!((done.status, done.info), (STATUS_SUCCESS, 0));
        assert!(probe.problems().is_empty(), "{:?}", probe.problems());
        socket.close();

        // Abortive, with only the disconnect event (no receive callback in the table).
        let probe = Probe::leaked();
        let (other, socket, peer) = connection_with(client, probe, &DISCONNECT_ONLY);
        assert_eq!(set_events(socket, WSK_EVENT_RECEIVE), STATUS_INVALID_PARAMETER, "no receive callback");
        assert_eq!(set_events(socket, WSK_EVENT_DISCONNECT), STATUS_SUCCESS);
        socket2::SockRef::from(&peer).set_linger(Some(std::time::Duration::ZERO)).unwrap();
        drop(peer);
        eventually("the abortive disconnect", || !probe.disconnects.lock().unwrap().is_empty());
        settle();
        assert_eq!(*probe.disconnects.lock().unwrap(), vec![WSK_FLAG_ABORTIVE]);
        let mut buf = Buf::zeroed(8);
        assert_eq!(socket.receive_start(&mut buf, 0).wait().status, STATUS_CONNECTION_RESET);
        socket.close();

        // A graceful FIN with only the disconnect event enabled (found by peeking).
        let probe = Probe::leaked();
        let (third, socket, peer) = connection(client, probe);
        assert_eq!(set_events(socket, WSK_EVENT_DISCONNECT), STATUS_SUCCESS);
        peer.shutdown(Shutdown::Write).unwrap();
        eventually("the disconnect", || !probe.disconnects.lock().unwrap().is_empty());
        assert_eq!(*probe.disconnects.lock().unwrap(), vec![0]);
        assert_eq!(probe.receive_calls.load(Ordering::SeqCst), 0);
        socket.close();

        // A reset with the receive event enabled too: abortive, not taken for a FIN.
        let probe = Probe::leaked();
        let (fourth, socket, peer) = connection(client, probe);
        assert_eq!(set_events(socket, WSK_EVENT_RECEIVE | WSK_EVENT_DISCONNECT), STATUS_SUCCESS);
        socket2::SockRef::from(&peer).set_linger(Some(std::time::Duration::ZERO)).unwrap();
        drop(peer);
        eventually("the abortive disconnect", || !probe.disconnects.lock().unwrap().is_empty());
        settle();
        assert_eq!(*probe.disconnects.lock().unwrap(), vec![WSK_FLAG_ABORTIVE]);
        socket.close();
        for listener in [listener, other, third, fourth] {
            listener.close();
        }
    });
}

#[test]
fn send_backlog_event_reports_the_send_buffer_and_its_changes() {
    clean_session(|client| {
        let probe = Probe::leaked();
        let (listener, socket, _peer) = connection(client, probe);
        let size = socket.get_option(SOL_SOCKET, SO_SNDBUF).unwrap() as usize;
        assert_eq!(set_events(socket, WSK_EVENT_SEND_BACKLOG), STATUS_SUCCESS);
        eventually("the first backlog indication", || probe.backlogs.lock().unwrap().len() == 1);
        assert_eq!(probe.backlogs.lock().unwrap()[0], size);
        assert_eq!(socket.set_option(SOL_SOCKET, SO_SNDBUF, 32_768), STATUS_SUCCESS);
        eventually("the second backlog indication", || probe.backlogs.lock().unwrap().len() == 2);
        assert_eq!(probe.backlogs.lock().unwrap()[1], 32_768);
        settle();
        assert_eq!(probe.backlogs.lock().unwrap().len(), 2);
        assert!(probe.problems().is_empty(), "{:?}", probe.problems());
        socket.close();
        listener.close();
    });
}

#[test]
fn accept_event_takes_connections_and_refused_ones_are_reset_not_leaked() {
    clean_session(|client| {
        let probe = Probe::leaked();
        let child = Probe::leaked();
        probe.child.store(ptr::from_ref(child) as usize, Ordering::SeqCst);
        let listener = socket_with(client, WSK_FLAG_LISTEN_SOCKET, probe.context(), table(&LISTEN_EVENTS));
        assert_eq!(set_events(listener, WSK_EVENT_ACCEPT), STATUS_INVALID_DEVICE_STATE, "not bound yet");
        assert_eq!(listener.bind(v4(0)), STATUS_SUCCESS);
        let local = listener.local_address().unwrap();
        // Two connections wait in the backlog before the event is enabled: both are indicated.
        let first = TcpStream::connect(local).unwrap();
        let second = TcpStream::connect(local).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        probe.set_mode(REFUSE);
        assert_eq!(set_events(listener, WSK_EVENT_ACCEPT), STATUS_SUCCESS);
        eventually("two accept indications", || probe.accept_calls.load(Ordering::SeqCst) == 2);
        for mut refused in [first, second] {
            let mut byte = [0u8; 1];
            refused.set_read_timeout(Some(PATIENCE)).unwrap();
            assert!(matches!(refused.read(&mut byte), Ok(0) | Err(_)), "the refused connection is closed");
        }
        // Accepted: the socket is the client's, with the context and table it gave.
        probe.set_mode(ACCEPT_ALL);
        let mut peer = TcpStream::connect(local).unwrap();
        eventually("the third accept indication", || probe.accept_calls.load(Ordering::SeqCst) == 3);
        let (accepted, seen_local, seen_remote) = probe.accepts.lock().unwrap()[2];
        assert_eq!(seen_local, Some(local));
        assert_eq!(seen_remote, Some(peer.local_addr().unwrap()));
        let socket = Sock(accepted as *mut WSK_SOCKET);
        assert_eq!(socket.remote_address().unwrap(), peer.local_addr().unwrap());
        assert_eq!(set_events(socket, WSK_EVENT_RECEIVE), STATUS_SUCCESS);
        peer.write_all(b"to the accepted socket").unwrap();
        eventually("data on the accepted socket", || child.data() == b"to the accepted socket");
        assert!(probe.problems().is_empty() && child.problems().is_empty(), "{:?}", probe.problems());
        socket.close();
        listener.close();
    });
}

#[test]
fn a_pending_accept_irp_takes_precedence_over_the_accept_event() {
    clean_session(|client| {
        let probe = Probe::leaked();
        let listener = socket_with(client, WSK_FLAG_LISTEN_SOCKET, probe.context(), table(&LISTEN_EVENTS));
        assert_eq!(listener.bind(v4(0)), STATUS_SUCCESS);
        let local = listener.local_address().unwrap();
        assert_eq!(set_events(listener, WSK_EVENT_ACCEPT), STATUS_SUCCESS);
        let mut addresses = Box::new([SOCKADDR_STORAGE::zeroed(); 2]);
        let accept = listener.accept_start(&mut addresses);
        let _peer = TcpStream::connect(local).unwrap();
        let done = accept.wait();
        assert_eq!(done.status, STATUS_SUCCESS);
        settle();
        assert_eq!(probe.accept_calls.load(Ordering::SeqCst), 0);
        Sock(done.info as *mut WSK_SOCKET).close();
        listener.close();
    });
}

/// With `IP_PKTINFO` on, each indicated datagram carries its `IN_PKTINFO` control message
/// (`ControlInfo`, `ControlInfoLength`); a refused one keeps it for the `WskReceiveFrom` that
/// serves it.
#[test]
fn receive_from_event_carries_packet_info() {
    clean_session(|client| {
        let probe = Probe::leaked();
        let socket = socket_with(client, WSK_FLAG_DATAGRAM_SOCKET, probe.context(), table(&DATAGRAM_EVENTS));
        assert_eq!(socket.bind(v4(0)), STATUS_SUCCESS);
        assert_eq!(socket.set_option(IPPROTO_IP, IP_PKTINFO, 1), STATUS_SUCCESS);
        let local = socket.datagram_local_address().unwrap();
        let peer = UdpSocket::bind(v4(0)).unwrap();
        assert_eq!(set_events(socket, WSK_EVENT_RECEIVE_FROM), STATUS_SUCCESS);
        // (level, type, data) of the one control message in `control`, x64 layout.
        let message = |control: &[u8]| {
            assert_eq!(control.len(), 24, "one IN_PKTINFO message: {control:?}");
            assert_eq!(usize::from_ne_bytes(control[..8].try_into().unwrap()), 24, "cmsg_len");
            let level = u32::from_ne_bytes(control[8..12].try_into().unwrap());
            let kind = u32::from_ne_bytes(control[12..16].try_into().unwrap());
            (level, kind, control[16..20].to_vec())
        };
        peer.send_to(b"indicated", local).unwrap();
        eventually("the datagram", || probe.datagrams.lock().unwrap().len() == 1);
        let controls = std::mem::take(&mut *probe.datagram_controls.lock().unwrap());
        assert_eq!(message(&controls[0]), (IPPROTO_IP, IP_PKTINFO, vec![127, 0, 0, 1]));

        // Refused, then served to a WskReceiveFrom with its control information.
        probe.set_mode(REFUSE);
        peer.send_to(b"refused", local).unwrap();
        eventually("the refused datagram", || probe.datagrams.lock().unwrap().len() == 2);
        probe.set_mode(ACCEPT_ALL);
        let mut buf = Buf::zeroed(64);
        let mut remote = SOCKADDR_STORAGE::zeroed();
        let mut control = [0u64; 8];
        let mut control_length: ULONG = 64;
        let mut flags: ULONG = 99;
        let req = socket.receive_from_with(
            &mut buf,
            sa(&mut remote),
            &raw mut control_length,
            control.as_mut_ptr().cast(),
            &raw mut flags,
        );
        let done = req.wait();
        assert_eq!((done.status, done.info, flags), (STATUS_SUCCESS, 7, 0));
        let bytes: Vec<u8> = control.iter().flat_map(|word| word.to_ne_bytes()).collect();
        assert_eq!(control_length, 24);
        assert_eq!(message(&bytes[..24]), (IPPROTO_IP, IP_PKTINFO, vec![127, 0, 0, 1]));
        drop(req);
        assert!(probe.problems().is_empty(), "{:?}", probe.problems());
        socket.close();
    });
}

#[test]
fn receive_from_event_with_success_retain_release_and_refusal() {
    clean_session(|client| {
        let probe = Probe::leaked();
        let socket = socket_with(client, WSK_FLAG_DATAGRAM_SOCKET, probe.context(), table(&DATAGRAM_EVENTS));
        assert_eq!(set_events(socket, WSK_EVENT_RECEIVE_FROM), STATUS_INVALID_DEVICE_STATE, "not bound yet");
        assert_eq!(socket.bind(v4(0)), STATUS_SUCCESS);
        let local = socket.datagram_local_address().unwrap();
        let peer = UdpSocket::bind(v4(0)).unwrap();
        let from = peer.local_addr().unwrap();
        assert_eq!(set_events(socket, WSK_EVENT_RECEIVE_FROM), STATUS_SUCCESS);

        // Consumed.
        for text in [&b"one"[..], b"two", b"three"] {
            peer.send_to(text, local).unwrap();
        }
        eventually("three datagrams", || probe.datagrams.lock().unwrap().len() == 3);
        let seen = std::mem::take(&mut *probe.datagrams.lock().unwrap());
        assert_eq!(seen, vec![(b"one".to_vec(), from), (b"two".to_vec(), from), (b"three".to_vec(), from)]);
        let controls = std::mem::take(&mut *probe.datagram_controls.lock().unwrap());
        assert!(controls.iter().all(Vec::is_empty), "no control information unless asked for");

        // Retained: intact until released.
        probe.set_mode(RETAIN);
        peer.send_to(&pattern(30_000, 9), local).unwrap();
        eventually("a retained datagram", || probe.held.lock().unwrap().len() == 1);
        peer.send_to(b"more", local).unwrap();
        eventually("delivery continues while one is held", || probe.held.lock().unwrap().len() == 2);
        let held = std::mem::take(&mut *probe.held.lock().unwrap());
        let first = unsafe { datagram_chain(held[0] as *mut WSK_DATAGRAM_INDICATION) };
        assert_eq!(first[0].0, pattern(30_000, 9));
        assert_eq!(first[0].1, from);
        for head in held {
            assert_eq!(release_datagrams(socket, head), STATUS_SUCCESS);
        }

        // Refused: kept in order for WskReceiveFrom, no indication meanwhile, then resumed
        // (kept ones first).
        probe.datagrams.lock().unwrap().clear();
        probe.set_mode(REFUSE);
        let calls = probe.datagram_calls.load(Ordering::SeqCst);
        peer.send_to(b"refused", local).unwrap();
        eventually("the refused indication", || probe.datagram_calls.load(Ordering::SeqCst) == calls + 1);
        peer.send_to(b"later", local).unwrap();
        settle();
        assert_eq!(probe.datagram_calls.load(Ordering::SeqCst), calls + 1, "suppressed after a refusal");
        probe.set_mode(ACCEPT_ALL);
        let mut buf = Buf::zeroed(64);
        let mut remote = SOCKADDR_STORAGE::zeroed();
        let req =
            socket.receive_from_with(&mut buf, sa(&mut remote), ptr::null_mut(), ptr::null_mut(), ptr::null_mut());
        let done = req.wait();
        assert_eq!((done.status, done.info), (STATUS_SUCCESS, 7));
        assert_eq!(&buf.data[..7], b"refused");
        assert_eq!(address(&remote), Some(from));
        eventually("indications resume", || probe.datagrams.lock().unwrap().iter().any(|(d, _)| d == b"later"));
        assert_eq!(probe.datagrams.lock().unwrap().last().unwrap().0, b"later");
        assert!(probe.problems().is_empty(), "{:?}", probe.problems());
        socket.close();
    });
}

#[test]
fn refused_datagrams_are_indicated_again_when_the_event_is_enabled_again() {
    clean_session(|client| {
        let probe = Probe::leaked();
        let socket = socket_with(client, WSK_FLAG_DATAGRAM_SOCKET, probe.context(), table(&DATAGRAM_EVENTS));
        assert_eq!(socket.bind(v4(0)), STATUS_SUCCESS);
        let local = socket.datagram_local_address().unwrap();
        let peer = UdpSocket::bind(v4(0)).unwrap();
        probe.set_mode(REFUSE);
        assert_eq!(set_events(socket, WSK_EVENT_RECEIVE_FROM), STATUS_SUCCESS);
        peer.send_to(b"again", local).unwrap();
        eventually("the refused indication", || probe.datagram_calls.load(Ordering::SeqCst) == 1);
        probe.set_mode(ACCEPT_ALL);
        assert_eq!(set_events(socket, WSK_EVENT_RECEIVE_FROM), STATUS_SUCCESS);
        eventually("the datagram indicated again", || probe.datagram_calls.load(Ordering::SeqCst) == 2);
        let seen: Vec<Vec<u8>> = probe.datagrams.lock().unwrap().iter().map(|(d, _)| d.clone()).collect();
        assert_eq!(seen, vec![b"again".to_vec(), b"again".to_vec()]);
        socket.close();
    });
}

#[test]
fn enabling_checks_the_request_the_socket_kind_and_its_state() {
    clean_session(|client| {
        let probe = Probe::leaked();
        let (listener, socket, _peer) = connection(client, probe);
        // Bad input: null, short, wrong or missing NPI.
        assert_eq!(control_raw(socket, ptr::null_mut(), 16, ptr::null_mut()), STATUS_INVALID_PARAMETER);
        let mut control =
            WSK_EVENT_CALLBACK_CONTROL { NpiId: &raw const NPI_WSK_INTERFACE_ID, EventMask: WSK_EVENT_RECEIVE };
        let short = size_of::<WSK_EVENT_CALLBACK_CONTROL>() - 1;
        assert_eq!(control_raw(socket, (&raw mut control).cast(), short, ptr::null_mut()), STATUS_INVALID_PARAMETER);
        let other = GUID { Data1: 1, Data2: 2, Data3: 3, Data4: [4; 8] };
        for npi in [ptr::null(), &raw const other] {
            let mut control = WSK_EVENT_CALLBACK_CONTROL { NpiId: npi, EventMask: WSK_EVENT_RECEIVE };
            let size = size_of::<WSK_EVENT_CALLBACK_CONTROL>();
            assert_eq!(control_raw(socket, (&raw mut control).cast(), size, ptr::null_mut()), STATUS_INVALID_PARAMETER);
        }
        // Bad masks for a connection socket.
        for mask in [
            0,
            WSK_EVENT_DISABLE,
            WSK_EVENT_RECEIVE_FROM,
            WSK_EVENT_ACCEPT,
            WSK_EVENT_RECEIVE | WSK_EVENT_ACCEPT,
            WSK_EVENT_RECEIVE | WSK_EVENT_DISCONNECT | WSK_EVENT_DISABLE,
            0x1000,
        ] {
            assert_eq!(set_events(socket, mask), STATUS_INVALID_PARAMETER, "mask 0x{mask:x}");
        }
        // With an IRP: completed with the same status.
        let (returned, req) = set_events_with_irp(socket, WSK_EVENT_ACCEPT);
        assert_eq!((returned, req.wait().status), (STATUS_INVALID_PARAMETER, STATUS_INVALID_PARAMETER));
        let (returned, req) = set_events_with_irp(socket, WSK_EVENT_RECEIVE | WSK_EVENT_DISCONNECT);
        assert_eq!((returned, req.wait().status), (STATUS_SUCCESS, STATUS_SUCCESS));
        socket.close();

        // Not connected / not bound; no dispatch table; a basic socket.
        let lone = socket_with(client, WSK_FLAG_CONNECTION_SOCKET, probe.context(), table(&CONNECTION_EVENTS));
        assert_eq!(set_events(lone, WSK_EVENT_RECEIVE), STATUS_INVALID_DEVICE_STATE);
        assert_eq!(lone.bind(v4(0)), STATUS_SUCCESS);
        assert_eq!(set_events(lone, WSK_EVENT_RECEIVE), STATUS_INVALID_DEVICE_STATE, "bound, not connected");
        lone.close();
        let datagram = socket_with(client, WSK_FLAG_DATAGRAM_SOCKET, probe.context(), table(&DATAGRAM_EVENTS));
        assert_eq!(set_events(datagram, WSK_EVENT_RECEIVE_FROM), STATUS_INVALID_DEVICE_STATE);
        assert_eq!(set_events(datagram, WSK_EVENT_RECEIVE), STATUS_INVALID_PARAMETER);
        datagram.close();
        let bare = client.socket(AF_INET, SOCK_DGRAM, IPPROTO_UDP, WSK_FLAG_DATAGRAM_SOCKET).unwrap();
        assert_eq!(bare.bind(v4(0)), STATUS_SUCCESS);
        assert_eq!(set_events(bare, WSK_EVENT_RECEIVE_FROM), STATUS_INVALID_PARAMETER, "no dispatch table");
        bare.close();
        let basic = client.socket(AF_INET, SOCK_STREAM, IPPROTO_TCP, WSK_FLAG_BASIC_SOCKET).unwrap();
        assert_eq!(set_events(basic, WSK_EVENT_RECEIVE), STATUS_INVALID_PARAMETER);
        basic.close();
        let unbound = socket_with(client, WSK_FLAG_LISTEN_SOCKET, probe.context(), table(&LISTEN_EVENTS));
        assert_eq!(set_events(unbound, WSK_EVENT_ACCEPT), STATUS_INVALID_DEVICE_STATE);
        // Connection events are valid on a listening socket (for the sockets it accepts), once
        // it is bound like its own; datagram ones are not.
        assert_eq!(set_events(unbound, WSK_EVENT_RECEIVE), STATUS_INVALID_DEVICE_STATE);
        assert_eq!(set_events(unbound, WSK_EVENT_RECEIVE_FROM), STATUS_INVALID_PARAMETER);
        unbound.close();
        listener.close();
    });
}

#[test]
fn disable_while_idle_succeeds_and_no_callback_follows() {
    clean_session(|client| {
        let probe = Probe::leaked();
        let (listener, socket, mut peer) = connection(client, probe);
        assert_eq!(set_events(socket, WSK_EVENT_RECEIVE | WSK_EVENT_DISCONNECT), STATUS_SUCCESS);
        peer.write_all(b"before").unwrap();
        eventually("the first indication", || probe.data() == b"before");
        let (returned, req) = set_events_with_irp(socket, WSK_EVENT_RECEIVE | WSK_EVENT_DISABLE);
        assert_eq!((returned, req.wait().status), (STATUS_SUCCESS, STATUS_SUCCESS));
        assert_eq!(set_events(socket, WSK_EVENT_DISCONNECT | WSK_EVENT_DISABLE), STATUS_SUCCESS);
        assert_eq!(set_events(socket, WSK_EVENT_DISCONNECT | WSK_EVENT_DISABLE), STATUS_SUCCESS, "again");
        let calls = probe.receive_calls.load(Ordering::SeqCst);
        peer.write_all(b"after").unwrap();
        settle();
        assert_eq!(probe.receive_calls.load(Ordering::SeqCst), calls, "no callback after disable");
        assert_eq!(socket.receive_exact(5), b"after");
        socket.close();
        listener.close();
    });
}

#[test]
fn disable_while_the_callback_runs_on_another_thread_pends_until_it_returns() {
    clean_session(|client| {
        let probe = Probe::leaked();
        let (listener, socket, mut peer) = connection(client, probe);
        assert_eq!(set_events(socket, WSK_EVENT_RECEIVE), STATUS_SUCCESS);

        // With an IRP: STATUS_PENDING, completed once the callback returned.
        let gate = Gate::new();
        *probe.gate.lock().unwrap() = Some(gate.clone());
        peer.write_all(b"1").unwrap();
        gate.entered.wait();
        let (returned, req) = set_events_with_irp(socket, WSK_EVENT_RECEIVE | WSK_EVENT_DISABLE);
        assert_eq!(returned, STATUS_PENDING);
        let saw_returned = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        {
            let saw = saw_returned.clone();
            *req.slot.hook.lock().unwrap() =
                Some(Box::new(move |_| saw.store(probe.returned.load(Ordering::SeqCst), Ordering::SeqCst)));
        }
        assert!(req.wait_for(std::time::Duration::from_millis(100)).is_none(), "pends while the callback runs");
        gate.release.wait();
        assert_eq!(req.wait().status, STATUS_SUCCESS);
        assert!(saw_returned.load(Ordering::SeqCst), "completed after the callback returned");
        peer.write_all(b"2").unwrap();
        settle();
        assert_eq!(probe.receive_calls.load(Ordering::SeqCst), 1, "no call after the disable");

        // Without an IRP: STATUS_EVENT_PENDING.
        assert_eq!(socket.receive_exact(1), b"2");
        assert_eq!(set_events(socket, WSK_EVENT_RECEIVE), STATUS_SUCCESS);
        let gate = Gate::new();
        *probe.gate.lock().unwrap() = Some(gate.clone());
        peer.write_all(b"3").unwrap();
        gate.entered.wait();
        assert_eq!(set_events(socket, WSK_EVENT_RECEIVE | WSK_EVENT_DISABLE), STATUS_EVENT_PENDING);
        gate.release.wait();
        eventually("the callback returned", || probe.inside.load(Ordering::SeqCst) == 0);

        // From inside the callback itself: not in progress elsewhere, STATUS_SUCCESS.
        let statuses = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        {
            let statuses = statuses.clone();
            *probe.hook.lock().unwrap() = Some(Box::new(move |probe: &Probe| {
                let socket = Sock(probe.socket.load(Ordering::SeqCst) as *mut WSK_SOCKET);
                statuses.lock().unwrap().push(set_events(socket, WSK_EVENT_RECEIVE | WSK_EVENT_DISABLE));
                None
            }));
        }
        assert_eq!(set_events(socket, WSK_EVENT_RECEIVE), STATUS_SUCCESS);
        peer.write_all(b"4").unwrap();
        eventually("the self-disabling callback", || !statuses.lock().unwrap().is_empty());
        peer.write_all(b"5").unwrap();
        settle();
        assert_eq!(*statuses.lock().unwrap(), vec![STATUS_SUCCESS]);
        assert_eq!(socket.receive_exact(1), b"5");
        *probe.hook.lock().unwrap() = None;
        assert!(probe.problems().is_empty(), "{:?}", probe.problems());
        socket.close();
        listener.close();
    });
}

#[test]
fn callbacks_of_one_socket_never_overlap_under_load() {
    clean_session(|client| {
        let probe = Probe::leaked();
        let (listener, socket, mut peer) = connection(client, probe);
        assert_eq!(
            set_events(socket, WSK_EVENT_RECEIVE | WSK_EVENT_DISCONNECT | WSK_EVENT_SEND_BACKLOG),
            STATUS_SUCCESS
        );
        *probe.hook.lock().unwrap() = Some(Box::new(|_| {
            // Widen the window in which another call could overlap (spinning: a callback may
            // not sleep).
            spin_for(std::time::Duration::from_micros(200));
            None
        }));
        let sent = pattern(1_000_000, 5);
        let writer = {
            let sent = sent.clone();
            let mut peer = peer.try_clone().unwrap();
            std::thread::spawn(move || {
                for chunk in sent.chunks(7_777) {
                    peer.write_all(chunk).unwrap();
                }
            })
        };
        // Backlog indications from this thread meanwhile.
        for size in 0..50u32 {
            assert_eq!(socket.set_option(SOL_SOCKET, SO_SNDBUF, 16_384 + size * 1024), STATUS_SUCCESS);
        }
        writer.join().unwrap();
        peer.shutdown(Shutdown::Write).unwrap();
        eventually("the disconnect after all the data", || !probe.disconnects.lock().unwrap().is_empty());
        assert_eq!(probe.data(), sent);
        assert_eq!(probe.max_inside.load(Ordering::SeqCst), 1, "two callbacks of the socket overlapped");
        assert!(!probe.backlogs.lock().unwrap().is_empty());
        *probe.hook.lock().unwrap() = None;
        assert!(probe.problems().is_empty(), "{:?}", probe.problems());
        peer.flush().unwrap();
        socket.close();
        listener.close();
    });
}

#[test]
fn a_pending_receive_irp_takes_precedence_over_the_receive_event() {
    clean_session(|client| {
        let probe = Probe::leaked();
        let (listener, socket, mut peer) = connection(client, probe);
        assert_eq!(set_events(socket, WSK_EVENT_RECEIVE), STATUS_SUCCESS);
        let mut buf = Buf::zeroed(16);
        let receive = socket.receive_start(&mut buf, 0);
        settle();
        peer.write_all(b"for the irp").unwrap();
        let done = receive.wait();
        assert_eq!((done.status, done.info), (STATUS_SUCCESS, 11));
        assert_eq!(&buf.data[..11], b"for the irp");
        settle();
        assert_eq!(probe.receive_calls.load(Ordering::SeqCst), 0);
        peer.write_all(b"for the event").unwrap();
        eventually("the indication", || probe.data() == b"for the event");
        socket.close();
        listener.close();
    });
}

#[test]
fn retained_indications_stay_intact_until_released() {
    clean_session(|client| {
        let probe = Probe::leaked();
        let (listener, socket, mut peer) = connection(client, probe);
        probe.set_mode(RETAIN);
        assert_eq!(set_events(socket, WSK_EVENT_RECEIVE), STATUS_SUCCESS);
        let sent = pattern(150_000, 11);
        peer.write_all(&sent).unwrap();
        let total = || probe.chains.lock().unwrap().iter().map(|&(_, bytes)| bytes).sum::<usize>();
        eventually("every byte indicated while earlier chains are held", || total() == sent.len());
        settle();
        let held = probe.held.lock().unwrap().clone();
        assert!(held.len() >= 3, "150 KB take at least three indications: {}", held.len());
        let mut seen = Vec::new();
        for &head in &held {
            seen.extend(unsafe { data_chain(head as *mut WSK_DATA_INDICATION) }.concat());
        }
        assert_eq!(seen, sent, "held data intact");
        for head in held.into_iter().rev() {
            assert_eq!(release_data(socket, head), STATUS_SUCCESS);
        }
        assert!(probe.problems().is_empty(), "{:?}", probe.problems());
        socket.close();
        listener.close();
    });
}

#[test]
fn partial_acceptance_keeps_the_rest_for_the_next_receive_in_order() {
    clean_session(|client| {
        let probe = Probe::leaked();
        let (listener, socket, mut peer) = connection(client, probe);
        probe.partial.store(10, Ordering::SeqCst);
        probe.set_mode(PARTIAL);
        assert_eq!(set_events(socket, WSK_EVENT_RECEIVE), STATUS_SUCCESS);
        let sent = pattern(300, 1);
        peer.write_all(&sent[..100]).unwrap();
        eventually("the partial acceptance", || probe.data().len() == 10);
        peer.write_all(&sent[100..150]).unwrap();
        settle();
        assert_eq!(probe.receive_calls.load(Ordering::SeqCst), 1, "suppressed until a receive");
        let got = socket.receive_exact(140);
        assert_eq!(got, sent[10..150], "the rest first, then the host's data");
        probe.set_mode(ACCEPT_ALL);
        peer.write_all(&sent[150..]).unwrap();
        eventually("indications resumed", || probe.data().len() == 10 + 150);
        let mut all = probe.data()[..10].to_vec();
        all.extend_from_slice(&got);
        all.extend_from_slice(&probe.data()[10..]);
        assert_eq!(all, sent);
        socket.close();
        listener.close();
    });
}

#[test]
fn refused_data_goes_to_the_next_receive_then_indications_resume() {
    clean_session(|client| {
        let (probe, listener, socket, mut peer) = hello_refused(client);
        peer.write_all(b" world").unwrap();
        settle();
        assert_eq!(probe.receive_calls.load(Ordering::SeqCst), 1, "no indication until a receive");
        probe.set_mode(ACCEPT_ALL);
        // The kept bytes come first, before what is still in the host socket.
        assert_eq!(socket.receive_exact(3), b"hel");
        eventually("indications resume with the rest", || probe.data() == b"lo world");
        peer.write_all(b"!").unwrap();
        eventually("and continue", || probe.data() == b"lo world!");
        assert!(probe.problems().is_empty(), "{:?}", probe.problems());
        socket.close();
        listener.close();
    });
}

/// A zero-length `WskReceive` that resumes refused indications runs the receive callback
/// it makes due on the caller's thread before it returns (with no hand-over to the I/O
/// thread), at DISPATCH_LEVEL; the callbacks after it run on the I/O thread again.
#[test]
fn a_resume_indicates_on_the_resuming_thread_before_it_returns() {
    clean_session(|client| {
        let (probe, listener, socket, mut peer) = hello_refused(client);
        probe.set_mode(ACCEPT_ALL);
        assert_eq!(resume_here(&socket), STATUS_SUCCESS);
        assert_eq!(probe.resumed_here.load(Ordering::SeqCst), 1, "callbacks inside the resume");
        assert_eq!(probe.data(), b"hello", "indicated before the resume returned");
        peer.write_all(b" world").unwrap();
        eventually("the next data, from the I/O thread", || probe.data() == b"hello world");
        assert_eq!(probe.resumed_here.load(Ordering::SeqCst), 1, "callbacks inside the resume");
        assert!(probe.problems().is_empty(), "{:?}", probe.problems());
        socket.close();
        listener.close();
    });
}

/// A connection whose receive callback refused "hello" (its first indication): the probe
/// (still refusing), the listener, the socket and the peer.
fn hello_refused(client: &Client) -> (&'static Probe, Sock, Sock, TcpStream) {
    let probe = Probe::leaked();
    let (listener, socket, mut peer) = connection(client, probe);
    probe.set_mode(REFUSE);
    assert_eq!(set_events(socket, WSK_EVENT_RECEIVE), STATUS_SUCCESS);
    peer.write_all(b"hello").unwrap();
    eventually("the refused indication", || probe.receive_calls.load(Ordering::SeqCst) == 1);
    (probe, listener, socket, peer)
}

/// Refuses "hello", takes "he" of it again, then the rest; returns the refused and copied
/// byte counts of the session.
fn refuse_then_take_in_parts(client: &Client) -> (u64, u64) {
    let before = wsk_emulator::counters();
    let (probe, listener, socket, _peer) = hello_refused(client);
    probe.partial.store(2, Ordering::SeqCst);
    probe.set_mode(PARTIAL);
    // A zero-length receive resumes the indications: the refused bytes come again.
    assert_eq!(resume_here(&socket), STATUS_SUCCESS);
    eventually("the partly taken indication", || probe.data() == b"he");
    probe.set_mode(ACCEPT_ALL);
    assert_eq!(resume_here(&socket), STATUS_SUCCESS);
    eventually("the rest", || probe.data() == b"hello");
    assert!(probe.problems().is_empty(), "{:?}", probe.problems());
    socket.close();
    listener.close();
    let after = wsk_emulator::counters();
    (after.refused_bytes - before.refused_bytes, after.refused_bytes_copied - before.refused_bytes_copied)
}

/// Refused bytes stay in the block they were indicated from and are indicated again from
/// there (the part taken is skipped by moving the rest to the front of its block): nothing is
/// copied out to be kept. With the verifier on a refused chain's guarded block is quarantined,
/// so that a touch after the callback returned faults, and its bytes are copied instead.
#[test]
fn refused_data_is_kept_in_its_indication_block_unless_the_block_is_guarded() {
    let client = Client::with(wsk_emulator::Kernel::builder().verifier(false));
    let (refused, copied) = refuse_then_take_in_parts(&client);
    client.finish().assert_clean();
    assert_eq!((refused, copied), (5 + 3, 0), "verifier off: refused and copied bytes");
    clean_session(|client| {
        let (refused, copied) = refuse_then_take_in_parts(client);
        assert_eq!((refused, copied), (5 + 3, 5 + 3), "verifier on: refused and copied bytes");
    });
}
