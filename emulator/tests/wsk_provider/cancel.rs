//! Cancellation (`IoCancelIrp`) of pending IRPs, and `WskCloseSocket` with IRPs pending.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use wsk_sys::*;

use crate::support::*;

/// A host listener whose accept queue is full: a connect to it stays pending (its SYNs are
/// dropped), without any traffic leaving the loopback interface.
struct Stalled {
    _listener: socket2::Socket,
    _fillers: Vec<socket2::Socket>,
    address: SocketAddr,
}

fn stalled_listener() -> Stalled {
    let listener = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    listener.bind(&v4(0).into()).unwrap();
    listener.listen(0).unwrap();
    let address = listener.local_addr().unwrap().as_socket().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..16 {
        let filler = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        let stalled = filler.connect_timeout(&address.into(), Duration::from_millis(300)).is_err();
        fillers.push(filler);
        if stalled {
            return Stalled { _listener: listener, _fillers: fillers, address };
        }
    }
    panic!("could not fill the accept queue of a loopback listener");
}

/// A bound connection socket with a connect pending.
fn pending_connect(client: &Client, stalled: &Stalled) -> (Sock, Req) {
    let socket = client.socket(AF_INET, SOCK_STREAM, IPPROTO_TCP, WSK_FLAG_CONNECTION_SOCKET).unwrap();
    assert_eq!(socket.bind(v4(0)), STATUS_SUCCESS);
    let connect = socket.connect_start(stalled.address);
    assert!(connect.wait_for(Duration::from_millis(50)).is_none(), "the connect pends");
    (socket, connect)
}

#[test]
fn cancel_a_pending_receive_then_receive_again() {
    clean_session(|client| {
        let (listener, socket, mut peer) = connected(client);
        let mut buf = Buf::zeroed(16);
        let receive = socket.receive_start(&mut buf, 0);
        assert!(receive.wait_for(Duration::from_millis(20)).is_none());
        assert!(receive.cancel(), "a cancel routine was set");
        let done = receive.wait();
        assert_eq!((done.status, done.info), (STATUS_CANCELLED, 0));
        // The socket still works, and no data went to the cancelled receive.
        peer.write_all(b"still").unwrap();
        assert_eq!(socket.receive_exact(5), b"still");
        socket.close();
        listener.close();
    });
}

#[test]
fn cancel_a_pending_accept() {
    clean_session(|client| {
        let (listener, local) = client.listener(v4(0));
        let mut addresses = Box::new([SOCKADDR_STORAGE::zeroed(); 2]);
        let accept = listener.accept_start(&mut addresses);
        assert!(accept.wait_for(Duration::from_millis(20)).is_none());
        accept.cancel();
        assert_eq!(accept.wait().status, STATUS_CANCELLED);
        // The next accept gets the next connection.
        let _peer = TcpStream::connect(local).unwrap();
        let (socket, _) = listener.accept();
        socket.close();
        listener.close();
    });
}

#[test]
fn cancel_a_pending_connect() {
    let stalled = stalled_listener();
    clean_session(|client| {
        let (socket, connect) = pending_connect(client, &stalled);
        connect.cancel();
        assert_eq!(connect.wait().status, STATUS_CANCELLED);
        socket.close();
    });
}

#[test]
fn cancel_a_pending_socket_connect_leaves_no_socket() {
    let stalled = stalled_listener();
    clean_session(|client| {
        let connect = client.socket_connect_start(v4(0), stalled.address);
        assert!(connect.wait_for(Duration::from_millis(50)).is_none());
        connect.cancel();
        let done = connect.wait();
        assert_eq!((done.status, done.info), (STATUS_CANCELLED, 0));
    });
}

#[test]
fn a_cancel_before_the_call_is_honoured() {
    clean_session(|client| {
        let (listener, socket, _peer) = connected(client);
        let mut buf = Buf::zeroed(8);
        let req = Req::new();
        // IoCancelIrp on an IRP the driver still owns only sets Irp->Cancel.
        assert!(!req.cancel());
        unsafe { (socket.connection().WskReceive.unwrap())(socket.0, buf.wsk_buf(), 0, req.irp) };
        assert_eq!(req.wait().status, STATUS_CANCELLED);
        drop(req);
        socket.close();
        listener.close();
    });
}

#[test]
fn cancel_racing_data_loses_nothing() {
    clean_session(|client| {
        let (listener, socket, peer) = connected(client);
        const ROUNDS: usize = 200;
        let mut received = Vec::new();
        let mut cancelled = 0;
        for round in 0..ROUNDS {
            let mut buf = Buf::zeroed(1);
            let receive = socket.receive_start(&mut buf, 0);
            let mut writer = peer.try_clone().unwrap();
            let writing = std::thread::spawn(move || writer.write_all(&[round as u8]).unwrap());
            receive.cancel();
            let done = receive.wait();
            match done.status {
                STATUS_CANCELLED => cancelled += 1,
                STATUS_SUCCESS => received.extend_from_slice(&buf.data[..done.info]),
                other => panic!("unexpected status {other:#x}"),
            }
            writing.join().unwrap();
        }
        let rest = socket.receive_exact(ROUNDS - received.len());
        received.extend_from_slice(&rest);
        let expected: Vec<u8> = (0..ROUNDS).map(|r| r as u8).collect();
        assert_eq!(received, expected, "every byte arrived once, in order ({cancelled} receives cancelled)");
        socket.close();
        listener.close();
    });
}

#[test]
fn close_with_a_pending_receive_cancels_it_first() {
    clean_session(|client| {
        let (listener, socket, _peer) = connected(client);
        let mut buf = Buf::zeroed(8);
        let receive = socket.receive_start(&mut buf, 0);
        let close = socket.close_start();
        let closed = close.wait();
        let cancelled = receive.done().expect("the receive completed before the close");
        assert_eq!(cancelled.status, STATUS_CANCELLED);
        assert_eq!(closed.status, STATUS_SUCCESS);
        assert!(cancelled.sequence < closed.sequence, "cancelled IRPs complete before the close IRP");
        listener.close();
    });
}

#[test]
fn close_with_a_pending_accept() {
    clean_session(|client| {
        let (listener, _) = client.listener(v4(0));
        let mut addresses = Box::new([SOCKADDR_STORAGE::zeroed(); 2]);
        let accepts: Vec<Req> = (0..3).map(|_| listener.accept_start(&mut addresses)).collect();
        let closed = listener.close();
        for accept in &accepts {
            let done = accept.done().expect("completed before the close");
            assert_eq!(done.status, STATUS_CANCELLED);
            assert!(done.sequence < closed.sequence);
        }
    });
}

#[test]
fn close_with_a_pending_connect_resolves_promptly() {
    let stalled = stalled_listener();
    clean_session(|client| {
        let (socket, connect) = pending_connect(client, &stalled);
        let closed = socket.close();
        let done = connect.done().expect("the connect completed before the close");
        assert_eq!(done.status, STATUS_CANCELLED);
        assert!(done.sequence < closed.sequence);
    });
}

#[test]
fn close_with_pending_receive_and_send_from_other_threads() {
    clean_session(|client| {
        let (listener, socket, peer) = connected(client);
        // Fill the send path so that a send pends (the peer never reads).
        let mut big = Buf::zeroed(16 << 20);
        let send = socket.send_start(&mut big, 0);
        assert!(send.wait_for(Duration::from_millis(50)).is_none(), "16 MiB to a peer that never reads pends");
        let mut buf = Buf::zeroed(8);
        let receive = socket.receive_start(&mut buf, 0);
        let closed = std::thread::spawn(move || socket.close()).join().unwrap();
        for req in [&send, &receive] {
            let done = req.done().expect("completed before the close");
            assert_eq!(done.status, STATUS_CANCELLED);
            assert!(done.sequence < closed.sequence);
        }
        drop(peer);
        listener.close();
    });
}

#[test]
fn nothing_touches_the_buffer_after_close() {
    clean_session(|client| {
        let (listener, socket, mut peer) = connected(client);
        const TAG: u32 = u32::from_le_bytes(*b"Test");
        // A pool buffer: freed pool is poisoned and checked for writes at unload.
        let data = unsafe { ExAllocatePoolWithTag(NonPagedPoolNx, 4096, TAG) };
        assert!(!data.is_null());
        let mdl = unsafe { IoAllocateMdl(data, 4096, FALSE, FALSE, std::ptr::null_mut()) };
        unsafe { MmBuildMdlForNonPagedPool(mdl) };
        let mut wsk_buf = WSK_BUF { Mdl: mdl, Offset: 0, Length: 4096 };
        let receive = Req::new();
        unsafe { (socket.connection().WskReceive.unwrap())(socket.0, &raw mut wsk_buf, 0, receive.irp) };
        socket.close();
        assert_eq!(receive.done().unwrap().status, STATUS_CANCELLED);
        unsafe {
            IoFreeMdl(mdl);
            ExFreePoolWithTag(data, TAG);
        }
        // Data arriving now has nowhere to go (the connection was reset by the close).
        let _ = peer.write_all(&[0xAB; 4096]);
        std::thread::sleep(Duration::from_millis(20));
        listener.close();
    });
}
