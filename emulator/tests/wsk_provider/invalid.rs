//! Bad arguments get an error status (the IRP completed with it), never a crash.

use std::net::TcpStream;
use std::ptr;

use wsk_sys::*;

use crate::support::*;

#[test]
fn socket_creation_arguments() {
    clean_session(|client| {
        let cases: &[(ADDRESS_FAMILY, USHORT, ULONG, ULONG, NTSTATUS)] = &[
            (AF_UNSPEC, SOCK_STREAM, IPPROTO_TCP, WSK_FLAG_LISTEN_SOCKET, STATUS_INVALID_PARAMETER),
            (10, SOCK_STREAM, IPPROTO_TCP, WSK_FLAG_LISTEN_SOCKET, STATUS_INVALID_PARAMETER), // Linux's AF_INET6
            (AF_INET, SOCK_DGRAM, IPPROTO_UDP, WSK_FLAG_LISTEN_SOCKET, STATUS_INVALID_PARAMETER),
            (AF_INET, SOCK_STREAM, IPPROTO_TCP, WSK_FLAG_DATAGRAM_SOCKET, STATUS_INVALID_PARAMETER),
            (AF_INET, SOCK_STREAM, IPPROTO_UDP, WSK_FLAG_CONNECTION_SOCKET, STATUS_INVALID_PARAMETER),
            (AF_INET, 3, 0, WSK_FLAG_CONNECTION_SOCKET, STATUS_INVALID_PARAMETER),
            (
                AF_INET,
                SOCK_STREAM,
                IPPROTO_TCP,
                WSK_FLAG_LISTEN_SOCKET | WSK_FLAG_CONNECTION_SOCKET,
                STATUS_INVALID_PARAMETER,
            ),
            (AF_INET, SOCK_STREAM, IPPROTO_TCP, WSK_FLAG_STREAM_SOCKET, STATUS_NOT_SUPPORTED),
        ];
        for &(family, socket_type, protocol, flags, expected) in cases {
            assert_eq!(
                client.socket(family, socket_type, protocol, flags).err(),
                Some(expected),
                "WskSocket({family}, {socket_type}, {protocol}, {flags:#x})"
            );
        }
        // Protocol 0 picks the default of the type.
        let socket = client.socket(AF_INET, SOCK_STREAM, 0, WSK_FLAG_CONNECTION_SOCKET).unwrap();
        socket.close();
        // No IRP at all: refused without a crash.
        let status = client.listen_socket_call(ptr::null_mut());
        assert_eq!(status, STATUS_INVALID_PARAMETER);
    });
}

#[test]
fn bad_addresses() {
    clean_session(|client| {
        let socket = client.socket(AF_INET, SOCK_STREAM, IPPROTO_TCP, WSK_FLAG_CONNECTION_SOCKET).unwrap();
        let bind = socket.connection().WskBind.unwrap();
        // A null address.
        let req = Req::new();
        unsafe { bind(socket.0, ptr::null_mut(), 0, req.irp) };
        assert_eq!(req.wait().status, STATUS_INVALID_PARAMETER);
        drop(req);
        // An unknown family.
        let mut address = storage(v4(0));
        address.ss_family = 1;
        let req = Req::new();
        unsafe { bind(socket.0, sa(&mut address), 0, req.irp) };
        assert_eq!(req.wait().status, STATUS_INVALID_ADDRESS);
        drop(req);
        // Another family than the socket's.
        assert_eq!(socket.bind(v6(0)), STATUS_INVALID_ADDRESS);
        assert_eq!(socket.bind(v4(0)), STATUS_SUCCESS);
        // Remote addresses Windows refuses: port 0, the unspecified address.
        assert_eq!(socket.connect_start(v4(0)).wait().status, STATUS_INVALID_ADDRESS_COMPONENT);
        assert_eq!(socket.connect_start("0.0.0.0:80".parse().unwrap()).wait().status, STATUS_INVALID_ADDRESS_COMPONENT);
        assert_eq!(socket.connect_start(v6(80)).wait().status, STATUS_INVALID_ADDRESS);
        // Addresses of an unconnected socket.
        assert_eq!(socket.remote_address().err(), Some(STATUS_INVALID_CONNECTION));
        let req = Req::new();
        unsafe { (socket.connection().WskGetLocalAddress.unwrap())(socket.0, ptr::null_mut(), req.irp) };
        assert_eq!(req.wait().status, STATUS_INVALID_PARAMETER);
        drop(req);
        socket.close();

        // WskSocketConnect: mixed families, bad remote.
        assert_eq!(client.socket_connect_start(v6(0), v4(80)).wait().status, STATUS_INVALID_ADDRESS);
        assert_eq!(client.socket_connect_start(v4(0), v4(0)).wait().status, STATUS_INVALID_ADDRESS_COMPONENT);

        // A listen socket not yet bound has no local address and accepts nothing.
        let listener = client.socket(AF_INET, SOCK_STREAM, IPPROTO_TCP, WSK_FLAG_LISTEN_SOCKET).unwrap();
        assert_eq!(listener.local_address().err(), Some(STATUS_INVALID_DEVICE_STATE));
        let mut addresses = Box::new([SOCKADDR_STORAGE::zeroed(); 2]);
        assert_eq!(listener.accept_start(&mut addresses).wait().status, STATUS_INVALID_DEVICE_STATE);
        listener.close();
    });
}

#[test]
fn bad_buffers_and_flags() {
    clean_session(|client| {
        let (listener, local) = client.listener(v4(0));
        let _peer = TcpStream::connect(local).unwrap();
        let (socket, _) = listener.accept();
        let send = socket.connection().WskSend.unwrap();
        let receive = socket.connection().WskReceive.unwrap();
        // A null WSK_BUF pointer.
        for routine in [send, receive] {
            let req = Req::new();
            unsafe { routine(socket.0, ptr::null_mut(), 0, req.irp) };
            assert_eq!(req.wait().status, STATUS_INVALID_PARAMETER);
        }
        // A length without an MDL.
        let mut no_mdl = WSK_BUF { Mdl: ptr::null_mut(), Offset: 0, Length: 10 };
        for routine in [send, receive] {
            let req = Req::new();
            unsafe { routine(socket.0, &raw mut no_mdl, 0, req.irp) };
            assert_eq!(req.wait().status, STATUS_INVALID_PARAMETER);
        }
        // Out-of-band data is not emulated.
        let mut buf = Buf::zeroed(4);
        assert_eq!(socket.send_start(&mut buf, WSK_FLAG_OOB).wait().status, STATUS_NOT_SUPPORTED);
        assert_eq!(socket.receive_start(&mut buf, WSK_FLAG_OOB).wait().status, STATUS_NOT_SUPPORTED);
        // Disconnect of a socket that is not connected.
        let lone = client.socket(AF_INET, SOCK_STREAM, IPPROTO_TCP, WSK_FLAG_CONNECTION_SOCKET).unwrap();
        assert_eq!(lone.disconnect(0), STATUS_INVALID_CONNECTION);
        assert_eq!(lone.disconnect(WSK_FLAG_ABORTIVE), STATUS_INVALID_CONNECTION);
        let mut buf = Buf::zeroed(4);
        assert_eq!(lone.receive_start(&mut buf, 0).wait().status, STATUS_INVALID_CONNECTION);
        assert_eq!(lone.send_start(&mut buf, 0).wait().status, STATUS_INVALID_CONNECTION);
        // WskInspectComplete without an inspect ID, and on a listener without conditional
        // accept (`SO_CONDITIONAL_ACCEPT` off).
        let req = Req::new();
        unsafe {
            (listener.listen_table().WskInspectComplete.unwrap())(
                listener.0,
                ptr::null_mut(),
                WskInspectAccept,
                req.irp,
            )
        };
        assert_eq!(req.wait().status, STATUS_INVALID_PARAMETER);
        drop(req);
        let req = Req::new();
        let mut id = WSK_INSPECT_ID { Key: listener.0 as usize, SerialNumber: 1 };
        unsafe {
            (listener.listen_table().WskInspectComplete.unwrap())(listener.0, &raw mut id, WskInspectAccept, req.irp)
        };
        assert_eq!(req.wait().status, STATUS_INVALID_DEVICE_STATE);
        drop(req);
        // WskConnectEx with data: not emulated.
        let req = Req::new();
        let mut remote = storage(local);
        let mut data = Buf::zeroed(4);
        unsafe { (lone.connection().WskConnectEx.unwrap())(lone.0, sa(&mut remote), data.wsk_buf(), 0, req.irp) };
        assert_eq!(req.wait().status, STATUS_NOT_SUPPORTED);
        drop(req);
        // WskConnectEx without data is a connect.
        assert_eq!(lone.bind(v4(0)), STATUS_SUCCESS);
        let req = Req::new();
        unsafe { (lone.connection().WskConnectEx.unwrap())(lone.0, sa(&mut remote), ptr::null_mut(), 0, req.irp) };
        assert_eq!(req.wait().status, STATUS_SUCCESS);
        drop(req);
        let (accepted, _) = listener.accept();
        for s in [lone, accepted, socket, listener] {
            s.close();
        }
        // WskCloseSocket without an IRP is refused before anything else.
        let status = unsafe { (listener.basic().WskCloseSocket.unwrap())(listener.0, ptr::null_mut()) };
        assert_eq!(status, STATUS_INVALID_PARAMETER);
    });
}
