//! Connection events enabled on a listening socket (`SO_WSK_EVENT_CALLBACK`), inherited by
//! the sockets its `WskAcceptEvent` accepts, and by those only.

use std::io::Write;
use std::net::TcpStream;
use std::ptr;
use std::sync::atomic::Ordering;

use wsk_sys::*;

use super::probe::*;
use crate::support::*;

/// Microsoft (`SO_WSK_EVENT_CALLBACK`): connection events enabled on a listening socket are
/// enabled on each socket its `WskAcceptEvent` accepts, not on those `WskAccept` takes, and
/// cannot be disabled on the listening socket.
#[test]
fn a_listeners_connection_events_go_to_the_sockets_its_accept_event_takes() {
    clean_session(|client| {
        let probe = Probe::leaked();
        let child = Probe::leaked();
        probe.child.store(ptr::from_ref(child) as usize, Ordering::SeqCst);
        let listener = socket_with(client, WSK_FLAG_LISTEN_SOCKET, probe.context(), table(&LISTEN_EVENTS));
        assert_eq!(listener.bind(v4(0)), STATUS_SUCCESS);
        let local = listener.local_address().unwrap();

        // Taken by WskAccept (the accept event is not on yet): nothing inherited.
        assert_eq!(set_events(listener, WSK_EVENT_RECEIVE | WSK_EVENT_DISCONNECT), STATUS_SUCCESS);
        let irp_probe = Probe::leaked();
        let mut by_irp = TcpStream::connect(local).unwrap();
        let taken = accept_with(listener, irp_probe.context(), &raw const CONNECTION_EVENTS);
        by_irp.write_all(b"not indicated").unwrap();
        settle();
        assert_eq!(irp_probe.receive_calls.load(Ordering::SeqCst), 0, "WskAccept's socket inherits nothing");
        assert_eq!(set_events(taken, WSK_EVENT_RECEIVE), STATUS_SUCCESS);
        eventually("its data once enabled on it", || irp_probe.data() == b"not indicated");
        taken.close();

        // Taken by WskAcceptEvent: receive and disconnect on from acceptance.
        assert_eq!(set_events(listener, WSK_EVENT_ACCEPT), STATUS_SUCCESS);
        let mut peer = TcpStream::connect(local).unwrap();
        peer.write_all(b"inherited").unwrap();
        eventually("data on the accepted socket, no SO_WSK_EVENT_CALLBACK on it", || child.data() == b"inherited");
        peer.shutdown(std::net::Shutdown::Write).unwrap();
        eventually("its disconnect", || !child.disconnects.lock().unwrap().is_empty());
        let (accepted, ..) = probe.accepts.lock().unwrap()[0];
        let accepted = Sock(accepted as *mut WSK_SOCKET);
        // Not on the listening socket: they stay.
        assert_eq!(set_events(listener, WSK_EVENT_RECEIVE | WSK_EVENT_DISABLE), STATUS_INVALID_PARAMETER);
        assert!(probe.problems().is_empty() && child.problems().is_empty(), "{:?}", child.problems());
        accepted.close();
        listener.close();
    });
}
