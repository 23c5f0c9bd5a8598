//! TCP: listen, accept, connect, send, receive, disconnect, addresses, host errors.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::Duration;

use wsk_sys::*;

use crate::support::*;

/// A host client connected to a WSK listener, and the accepted WSK socket.
fn accepted_pair(client: &Client) -> (Sock, Sock, TcpStream) {
    let (listener, local) = client.listener(v4(0));
    let peer = TcpStream::connect(local).unwrap();
    let (socket, remote) = listener.accept();
    assert_eq!(remote, peer.local_addr().unwrap());
    (listener, socket, peer)
}

#[test]
fn accept_pends_and_completes_on_the_io_thread_at_dispatch_level() {
    clean_session(|client| {
        let (listener, local) = client.listener(v4(0));
        assert_eq!(local.ip(), v4(0).ip());
        assert_ne!(local.port(), 0);
        let mut addresses = Box::new([SOCKADDR_STORAGE::zeroed(); 2]);
        let accept = listener.accept_start(&mut addresses);
        assert!(accept.wait_for(Duration::from_millis(50)).is_none(), "accept pends until a connection arrives");
        let peer = TcpStream::connect(local).unwrap();
        let done = accept.wait();
        assert_eq!(done.status, STATUS_SUCCESS);
        assert_ne!(done.thread, std::thread::current().id(), "completed from another thread");
        assert_eq!(done.irql, DISPATCH_LEVEL);
        let socket = Sock(done.info as *mut WSK_SOCKET);
        assert_eq!(address(&addresses[0]), Some(local), "local address out-parameter");
        assert_eq!(address(&addresses[1]), Some(peer.local_addr().unwrap()), "remote address out-parameter");
        assert_eq!(socket.remote_address().unwrap(), peer.local_addr().unwrap());
        assert_eq!(socket.connection_local_address().unwrap(), local);
        socket.close();
        listener.close();
    });
}

#[test]
fn send_receive_and_graceful_disconnect_with_a_host_peer() {
    clean_session(|client| {
        let (listener, socket, mut peer) = accepted_pair(client);

        // Receive pends, then completes with what arrived.
        let mut buf = Buf::zeroed(64);
        let receive = socket.receive_start(&mut buf, 0);
        assert!(receive.wait_for(Duration::from_millis(20)).is_none());
        peer.write_all(b"hello").unwrap();
        let done = receive.wait();
        assert_eq!((done.status, done.info), (STATUS_SUCCESS, 5));
        assert_eq!(done.irql, DISPATCH_LEVEL);
        assert_eq!(&buf.data[..5], b"hello");

        // Send completes with the byte count; the peer reads it.
        socket.send_all(b"world!");
        let mut got = [0u8; 6];
        peer.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"world!");

        // Graceful disconnect: the peer sees EOF and can still send.
        assert_eq!(socket.disconnect(0), STATUS_SUCCESS);
        let mut rest = Vec::new();
        peer.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());
        peer.write_all(b"after").unwrap();
        assert_eq!(socket.receive_exact(5), b"after");
        // Sending after the graceful disconnect fails.
        let mut late = Buf::from_vec(b"x".to_vec());
        assert_eq!(socket.send_start(&mut late, 0).wait().status, STATUS_INVALID_CONNECTION);

        // The peer closes: a receive completes with 0 bytes (graceful disconnect by the peer).
        peer.shutdown(Shutdown::Write).unwrap();
        let mut buf = Buf::zeroed(16);
        let done = socket.receive_start(&mut buf, 0).wait();
        assert_eq!((done.status, done.info), (STATUS_SUCCESS, 0));
        socket.close();
        listener.close();
    });
}

#[test]
fn socket_connect_to_a_host_listener() {
    clean_session(|client| {
        let server = TcpListener::bind(v4(0)).unwrap();
        let socket = client.socket_connect(server.local_addr().unwrap()).unwrap();
        let (mut peer, from) = server.accept().unwrap();
        assert_eq!(socket.connection_local_address().unwrap(), from);
        assert_eq!(socket.remote_address().unwrap(), server.local_addr().unwrap());
        socket.send_all(b"ping");
        let mut got = [0u8; 4];
        peer.read_exact(&mut got).unwrap();
        peer.write_all(b"pong").unwrap();
        assert_eq!(socket.receive_exact(4), b"pong");
        socket.close();
    });
}

#[test]
fn bind_and_connect_between_two_wsk_sockets() {
    clean_session(|client| {
        let (listener, local) = client.listener(v4(0));
        let connection = client.socket(AF_INET, SOCK_STREAM, IPPROTO_TCP, WSK_FLAG_CONNECTION_SOCKET).unwrap();
        // Connect before bind: WSK requires a bound socket.
        assert_eq!(connection.connect_start(local).wait().status, STATUS_INVALID_DEVICE_STATE);
        assert_eq!(connection.bind(v4(0)), STATUS_SUCCESS);
        assert_eq!(connection.bind(v4(0)), STATUS_INVALID_DEVICE_STATE, "bound twice");
        let mut addresses = Box::new([SOCKADDR_STORAGE::zeroed(); 2]);
        let accept = listener.accept_start(&mut addresses);
        assert_eq!(connection.connect_start(local).wait().status, STATUS_SUCCESS);
        assert_eq!(connection.connect_start(local).wait().status, STATUS_CONNECTION_ACTIVE);
        let done = accept.wait();
        assert_eq!(done.status, STATUS_SUCCESS);
        let accepted = Sock(done.info as *mut WSK_SOCKET);
        assert_eq!(address(&addresses[1]).unwrap(), connection.connection_local_address().unwrap());

        let payload = pattern(100_000, 7);
        let mut out = Buf::from_vec(payload.clone());
        let send = connection.send_start(&mut out, 0);
        let received = accepted.receive_exact(payload.len());
        assert_eq!(send.wait().info, payload.len());
        assert_eq!(received, payload);

        // Both directions disconnected gracefully, then closed.
        assert_eq!(connection.disconnect(0), STATUS_SUCCESS);
        let mut buf = Buf::zeroed(8);
        assert_eq!(accepted.receive_start(&mut buf, 0).wait().info, 0);
        assert_eq!(accepted.disconnect(0), STATUS_SUCCESS);
        let mut buf = Buf::zeroed(8);
        assert_eq!(connection.receive_start(&mut buf, 0).wait().info, 0);
        connection.close();
        accepted.close();
        listener.close();
    });
}

#[test]
fn ipv6_loopback() {
    clean_session(|client| {
        let (listener, local) = client.listener(v6(0));
        assert!(local.is_ipv6());
        let socket = client.socket_connect(local).unwrap();
        let (accepted, remote) = listener.accept();
        assert_eq!(remote, socket.connection_local_address().unwrap());
        socket.send_all(b"six");
        assert_eq!(accepted.receive_exact(3), b"six");
        // IPV6_V6ONLY is on by default, as on Windows.
        assert_eq!(listener.get_option(IPPROTO_IPV6, IPV6_V6ONLY), Ok(1));
        socket.close();
        accepted.close();
        listener.close();
    });
}

#[test]
fn connect_refused() {
    clean_session(|client| {
        let port = free_port();
        assert_eq!(client.socket_connect(v4(port)).err(), Some(STATUS_CONNECTION_REFUSED));
        let connection = client.socket(AF_INET, SOCK_STREAM, IPPROTO_TCP, WSK_FLAG_CONNECTION_SOCKET).unwrap();
        assert_eq!(connection.bind(v4(0)), STATUS_SUCCESS);
        assert_eq!(connection.connect_start(v4(port)).wait().status, STATUS_CONNECTION_REFUSED);
        connection.close();
        // The failed WskSocketConnect left no socket behind: deregistration does not wait and the
        // report is clean.
    });
}

#[test]
fn address_in_use() {
    clean_session(|client| {
        let (first, local) = client.listener(v4(0));
        let second = client.socket(AF_INET, SOCK_STREAM, IPPROTO_TCP, WSK_FLAG_LISTEN_SOCKET).unwrap();
        assert_eq!(second.bind(local), STATUS_ADDRESS_ALREADY_EXISTS);
        let host = TcpListener::bind(v4(0)).unwrap();
        let third = client.socket(AF_INET, SOCK_STREAM, IPPROTO_TCP, WSK_FLAG_LISTEN_SOCKET).unwrap();
        assert_eq!(third.bind(host.local_addr().unwrap()), STATUS_ADDRESS_ALREADY_EXISTS);
        // An address that is not local.
        let fourth = client.socket(AF_INET, SOCK_STREAM, IPPROTO_TCP, WSK_FLAG_LISTEN_SOCKET).unwrap();
        assert_eq!(fourth.bind("192.0.2.1:0".parse().unwrap()), STATUS_INVALID_ADDRESS_COMPONENT);
        for socket in [first, second, third, fourth] {
            socket.close();
        }
    });
}

#[test]
fn peer_reset_in_the_middle_of_a_receive() {
    clean_session(|client| {
        let (listener, socket, peer) = accepted_pair(client);
        let mut buf = Buf::zeroed(1024);
        let receive = socket.receive_start(&mut buf, WSK_FLAG_WAITALL);
        (&peer).write_all(b"partial").unwrap();
        assert!(receive.wait_for(Duration::from_millis(20)).is_none(), "WAITALL waits for the whole buffer");
        socket2::SockRef::from(&peer).set_linger(Some(Duration::ZERO)).unwrap();
        drop(peer);
        let done = receive.wait();
        assert_eq!(done.status, STATUS_CONNECTION_RESET);
        // The reset sticks: later calls fail the same way.
        let mut again = Buf::zeroed(8);
        assert_eq!(socket.receive_start(&mut again, 0).wait().status, STATUS_CONNECTION_RESET);
        let mut out = Buf::from_vec(b"x".to_vec());
        assert_eq!(socket.send_start(&mut out, 0).wait().status, STATUS_CONNECTION_RESET);
        socket.close();
        listener.close();
    });
}

#[test]
fn zero_length_send_and_receive_complete_at_once() {
    clean_session(|client| {
        let (listener, socket, mut peer) = accepted_pair(client);
        let mut empty = Buf::zeroed(0);
        let done = socket.send_start(&mut empty, 0).wait();
        assert_eq!((done.status, done.info), (STATUS_SUCCESS, 0));
        let done = socket.receive_start(&mut empty, 0).wait();
        assert_eq!((done.status, done.info), (STATUS_SUCCESS, 0));
        // A WSK_BUF with no MDL and no length is fine too.
        let req = Req::new();
        let mut none = WSK_BUF { Mdl: std::ptr::null_mut(), Offset: 0, Length: 0 };
        let returned = unsafe { (socket.connection().WskReceive.unwrap())(socket.0, &raw mut none, 0, req.irp) };
        assert_eq!(returned, STATUS_SUCCESS);
        assert_eq!(req.wait().info, 0);
        // Nothing was consumed.
        peer.write_all(b"z").unwrap();
        assert_eq!(socket.receive_exact(1), b"z");
        socket.close();
        listener.close();
    });
}

#[test]
fn sixteen_mebibytes_each_way() {
    const SIZE: usize = 16 << 20;
    clean_session(|client| {
        let (listener, socket, peer) = accepted_pair(client);
        let payload = pattern(SIZE, 3);

        // WSK -> host: the send completes once every byte is handed to the host socket.
        let mut reader = peer.try_clone().unwrap();
        let reading = std::thread::spawn(move || {
            let mut got = vec![0u8; SIZE];
            reader.read_exact(&mut got).unwrap();
            got
        });
        let mut out = Buf::from_vec(payload.clone());
        let done = socket.send_start(&mut out, 0).wait();
        assert_eq!((done.status, done.info), (STATUS_SUCCESS, SIZE));
        assert!(reading.join().unwrap() == payload, "the host received the 16 MiB intact");

        // host -> WSK with WSK_FLAG_WAITALL: one receive for the whole buffer.
        let mut writer = peer.try_clone().unwrap();
        let to_send = payload.clone();
        let writing = std::thread::spawn(move || writer.write_all(&to_send).unwrap());
        let got = socket.receive_exact(SIZE);
        writing.join().unwrap();
        assert!(got == payload, "WSK received the 16 MiB intact");
        drop(peer);
        socket.close();
        listener.close();
    });
}

#[test]
fn buffers_spanning_an_mdl_chain_with_an_offset() {
    clean_session(|client| {
        let (listener, socket, mut peer) = accepted_pair(client);
        // Three MDLs of 10, 20 and 30 bytes; WSK_BUF at offset 15 for 30 bytes: 15 from the second
        // MDL and 15 from the third.
        let mut parts: Vec<Buf> =
            [10usize, 20, 30].iter().enumerate().map(|(i, &n)| Buf::pattern(n, i as u8 * 50)).collect();
        unsafe {
            (*parts[0].mdl).Next = parts[1].mdl;
            (*parts[1].mdl).Next = parts[2].mdl;
        }
        let mut expected = parts[1].data[5..].to_vec();
        expected.extend_from_slice(&parts[2].data[..15]);
        parts[0].wsk = WSK_BUF { Mdl: parts[0].mdl, Offset: 15, Length: 30 };
        let done = socket.send_start(&mut parts[0], 0).wait();
        assert_eq!(done.info, 30);
        let mut got = vec![0u8; 30];
        peer.read_exact(&mut got).unwrap();
        assert_eq!(got, expected);

        // Receive scattered across the same chain.
        let incoming = pattern(30, 99);
        peer.write_all(&incoming).unwrap();
        let done = socket.receive_start(&mut parts[0], WSK_FLAG_WAITALL).wait();
        assert_eq!(done.info, 30);
        let mut scattered = parts[1].data[5..].to_vec();
        scattered.extend_from_slice(&parts[2].data[..15]);
        assert_eq!(scattered, incoming);
        unsafe {
            (*parts[0].mdl).Next = std::ptr::null_mut();
            (*parts[1].mdl).Next = std::ptr::null_mut();
        }
        socket.close();
        listener.close();
    });
}

#[test]
fn abortive_disconnect_resets_the_peer() {
    clean_session(|client| {
        let (listener, socket, mut peer) = accepted_pair(client);
        let mut buf = Buf::zeroed(8);
        let pending = socket.receive_start(&mut buf, 0);
        assert_eq!(socket.disconnect(WSK_FLAG_ABORTIVE), STATUS_SUCCESS);
        assert_eq!(pending.wait().status, STATUS_CONNECTION_ABORTED);
        let mut byte = [0u8; 1];
        let error = peer.read(&mut byte).expect_err("the peer sees a reset");
        assert_eq!(error.kind(), std::io::ErrorKind::ConnectionReset);
        let mut out = Buf::from_vec(b"x".to_vec());
        assert_eq!(socket.send_start(&mut out, 0).wait().status, STATUS_CONNECTION_ABORTED);
        socket.close();
        listener.close();
    });
}

#[test]
fn close_resets_a_connection_not_disconnected_both_ways() {
    clean_session(|client| {
        let (listener, socket, mut peer) = accepted_pair(client);
        socket.close();
        let mut byte = [0u8; 1];
        let error = peer.read(&mut byte).expect_err("close without disconnect is abortive");
        assert_eq!(error.kind(), std::io::ErrorKind::ConnectionReset);

        // Disconnected both ways: close is graceful (the peer sees EOF, not a reset).
        let peer2 = TcpStream::connect(listener.local_address().unwrap()).unwrap();
        let (socket2, _) = listener.accept();
        peer2.shutdown(Shutdown::Write).unwrap();
        let mut buf = Buf::zeroed(4);
        assert_eq!(socket2.receive_start(&mut buf, 0).wait().info, 0);
        socket2.send_all(b"last");
        assert_eq!(socket2.disconnect(0), STATUS_SUCCESS);
        socket2.close();
        let mut rest = Vec::new();
        (&peer2).read_to_end(&mut rest).unwrap();
        assert_eq!(rest, b"last");
        listener.close();
    });
}

#[test]
fn many_sends_queue_in_order() {
    clean_session(|client| {
        let (listener, socket, peer) = accepted_pair(client);
        // Enough data to fill the socket buffers, so that sends queue behind each other.
        let chunks: Vec<Vec<u8>> = (0..32).map(|i| pattern(256 * 1024, i as u8)).collect();
        let mut bufs: Vec<Buf> = chunks.iter().map(|c| Buf::from_vec(c.clone())).collect();
        let sends: Vec<Req> = bufs.iter_mut().map(|b| socket.send_start(b, 0)).collect();
        let mut reader = peer.try_clone().unwrap();
        let total: usize = chunks.iter().map(Vec::len).sum();
        let got = std::thread::spawn(move || {
            let mut got = vec![0u8; total];
            reader.read_exact(&mut got).unwrap();
            got
        })
        .join()
        .unwrap();
        for send in &sends {
            assert_eq!(send.wait().status, STATUS_SUCCESS);
        }
        assert!(got == chunks.concat(), "bytes arrive in submission order");
        drop(sends);
        socket.close();
        listener.close();
    });
}

#[test]
fn transfers_issued_while_connecting_wait_for_the_connect() {
    clean_session(|client| {
        let (listener, local) = client.listener(v4(0));
        let socket = client.socket(AF_INET, SOCK_STREAM, IPPROTO_TCP, WSK_FLAG_CONNECTION_SOCKET).unwrap();
        assert_eq!(socket.bind(v4(0)), STATUS_SUCCESS);
        let connect = socket.connect_start(local);
        let mut out = Buf::from_vec(b"early".to_vec());
        let send = socket.send_start(&mut out, 0);
        let mut incoming = Buf::zeroed(5);
        let receive = socket.receive_start(&mut incoming, WSK_FLAG_WAITALL);
        assert_eq!(connect.wait().status, STATUS_SUCCESS);
        let (accepted, _) = listener.accept();
        assert_eq!(accepted.receive_exact(5), b"early");
        assert_eq!(send.wait().info, 5);
        accepted.send_all(b"reply");
        assert_eq!(receive.wait().info, 5);
        assert_eq!(incoming.data, b"reply");
        for s in [socket, accepted, listener] {
            s.close();
        }
    });
}

#[test]
fn a_receive_behind_a_refused_connect_fails() {
    clean_session(|client| {
        let socket = client.socket(AF_INET, SOCK_STREAM, IPPROTO_TCP, WSK_FLAG_CONNECTION_SOCKET).unwrap();
        assert_eq!(socket.bind(v4(0)), STATUS_SUCCESS);
        let connect = socket.connect_start(v4(free_port()));
        let mut buf = Buf::zeroed(4);
        let receive = socket.receive_start(&mut buf, 0);
        assert_eq!(connect.wait().status, STATUS_CONNECTION_REFUSED);
        assert_eq!(receive.wait().status, STATUS_INVALID_CONNECTION);
        socket.close();
    });
}
