//! In-memory connections (addresses of `198.18.0.0/15`), called through the raw tables: no
//! host socket and no provider thread take part.

use std::net::SocketAddr;

use wsk_sys::*;

use crate::support::*;

fn memory(port: u16) -> SocketAddr {
    SocketAddr::from(([198, 18, 0, 7], port))
}

/// A `WskSocketConnect` completes the listener's pending `WskAccept` before it returns, and a
/// `WskSend` on one end completes the other end's pending `WskReceive` before it returns: on
/// the calling thread, at DISPATCH_LEVEL, with the bytes sent. The listener reports the
/// in-memory address it was bound to.
#[test]
fn a_send_completes_the_peers_pending_receive_on_the_sending_thread() {
    clean_session(|client| {
        let (listener, local) = client.listener(memory(7200));
        assert_eq!(local, memory(7200));
        let mut addresses = Box::new([SOCKADDR_STORAGE::zeroed(), SOCKADDR_STORAGE::zeroed()]);
        let accept = listener.accept_start(&mut addresses);
        assert!(accept.done().is_none(), "an accept completed with nobody connecting");
        let connection = client.socket_connect(memory(7200)).expect("in-memory connect");
        let accepted = accept.done().expect("the pending accept completed inside the WskSocketConnect call");
        assert_eq!(accepted.status, STATUS_SUCCESS);
        assert_eq!(accepted.thread, std::thread::current().id());
        let accepted = Sock(accepted.info as *mut WSK_SOCKET);
        assert_eq!(address(&addresses[0]), Some(memory(7200)));
        let mut into = Buf::zeroed(16);
        let receive = accepted.receive_start(&mut into, 0);
        assert!(receive.done().is_none(), "the receive completed with nothing sent");
        let mut data = Buf::from_vec(b"hello".to_vec());
        let send = connection.send_start(&mut data, 0);
        let received = receive.done().expect("the receive completed inside the WskSend call");
        assert_eq!((received.status, received.info), (STATUS_SUCCESS, 5));
        assert_eq!(received.thread, std::thread::current().id());
        assert_eq!(received.irql, DISPATCH_LEVEL);
        assert_eq!(&into.data[..5], b"hello");
        assert_eq!(send.wait().info, 5);
        connection.close();
        accepted.close();
        listener.close();
    });
}
