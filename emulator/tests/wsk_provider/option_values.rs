//! WskControlSocket with values other than 4-byte integers and the options that read back:
//! `SO_LINGER`, `SO_BROADCAST`, TTL and hops, multicast membership, `IPV6_V6ONLY` for a dual
//! stack listener, and the fixed remote address of a datagram socket
//! (`SIO_WSK_SET_REMOTE_ADDRESS`).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream as HostStream, UdpSocket as HostUdp};
use std::ptr;
use std::time::Duration;

use wsk_sys::*;

use crate::support::*;

/// `WskControlSocket` with an IRP; returns the status and the `Information` (bytes returned).
fn control(
    socket: Sock,
    kind: WSK_CONTROL_SOCKET_TYPE,
    level: ULONG,
    code: ULONG,
    input: &mut [u8],
    output: &mut [u8],
) -> (NTSTATUS, usize) {
    let req = Req::new();
    let pointer = |bytes: &mut [u8]| if bytes.is_empty() { ptr::null_mut() } else { bytes.as_mut_ptr().cast() };
    let returned = unsafe {
        (socket.basic().WskControlSocket.unwrap())(
            socket.0,
            kind,
            code,
            level,
            input.len(),
            pointer(input),
            output.len(),
            pointer(output),
            ptr::null_mut(),
            req.irp,
        )
    };
    let done = req.wait();
    assert_eq!(returned, done.status);
    (done.status, done.info)
}

fn datagram(client: &Client, at: SocketAddr) -> (Sock, SocketAddr) {
    let family = if at.is_ipv4() { AF_INET } else { AF_INET6 };
    let socket = client.socket(family, SOCK_DGRAM, IPPROTO_UDP, WSK_FLAG_DATAGRAM_SOCKET).unwrap();
    assert_eq!(socket.bind(at), STATUS_SUCCESS);
    let local = socket.datagram_local_address().unwrap();
    (socket, local)
}

fn send_to_start(socket: Sock, buf: &mut Buf, to: Option<&mut SOCKADDR_STORAGE>) -> Req {
    let req = Req::new();
    let to = to.map_or(ptr::null_mut(), sa);
    unsafe { (socket.datagram().WskSendTo.unwrap())(socket.0, buf.wsk_buf(), 0, to, 0, ptr::null_mut(), req.irp) };
    req
}

fn receive_from_start(socket: Sock, buf: &mut Buf, from: &mut Box<SOCKADDR_STORAGE>) -> Req {
    socket.receive_from_with(buf, sa(from), ptr::null_mut(), ptr::null_mut(), ptr::null_mut())
}

fn set_remote(socket: Sock, remote: Option<SocketAddr>) -> NTSTATUS {
    let (mut input, len) = match remote {
        Some(remote) => {
            let len = if remote.is_ipv4() { size_of::<SOCKADDR_IN>() } else { size_of::<SOCKADDR_IN6>() };
            (storage(remote), len)
        }
        None => (SOCKADDR_STORAGE::zeroed(), 0),
    };
    let bytes = unsafe { std::slice::from_raw_parts_mut((&raw mut input).cast::<u8>(), len) };
    control(socket, WskIoctl, 0, SIO_WSK_SET_REMOTE_ADDRESS, bytes, &mut []).0
}

#[test]
fn linger_is_a_linger_structure_and_reads_back() {
    clean_session(|client| {
        let (listener, at) = client.listener(v4(0));
        let socket = client.socket_connect(at).unwrap();
        let (accepted, _) = listener.accept();
        let mut value = [0u8; 4];
        assert_eq!(control(socket, WskGetOption, SOL_SOCKET, SO_LINGER, &mut [], &mut value), (STATUS_SUCCESS, 4));
        assert_eq!(value, [0; 4], "lingering is off at creation");
        let mut linger = [0u8; 4];
        linger[..2].copy_from_slice(&1u16.to_ne_bytes());
        linger[2..].copy_from_slice(&9u16.to_ne_bytes());
        assert_eq!(control(socket, WskSetOption, SOL_SOCKET, SO_LINGER, &mut linger, &mut []).0, STATUS_SUCCESS);
        assert_eq!(control(socket, WskGetOption, SOL_SOCKET, SO_LINGER, &mut [], &mut value), (STATUS_SUCCESS, 4));
        assert_eq!(value, linger);
        // A short value, a short output buffer.
        assert_eq!(
            control(socket, WskSetOption, SOL_SOCKET, SO_LINGER, &mut [1, 0], &mut []).0,
            STATUS_INVALID_PARAMETER
        );
        assert_eq!(
            control(socket, WskGetOption, SOL_SOCKET, SO_LINGER, &mut [], &mut [0; 2]).0,
            STATUS_BUFFER_TOO_SMALL
        );
        // Not an option of a datagram socket.
        let (udp, _) = datagram(client, v4(0));
        assert_eq!(control(udp, WskSetOption, SOL_SOCKET, SO_LINGER, &mut linger, &mut []).0, STATUS_NOT_SUPPORTED);
        for s in [socket, accepted, listener, udp] {
            s.close();
        }
    });
}

#[test]
fn broadcast_ttl_and_hops_read_back() {
    clean_session(|client| {
        let (v4_socket, _) = datagram(client, v4(0));
        assert_eq!(v4_socket.get_option(SOL_SOCKET, SO_BROADCAST), Ok(0));
        assert_eq!(v4_socket.set_option(SOL_SOCKET, SO_BROADCAST, 1), STATUS_SUCCESS);
        assert_eq!(v4_socket.get_option(SOL_SOCKET, SO_BROADCAST), Ok(1));
        for (code, value) in [(IP_TTL, 17), (IP_MULTICAST_TTL, 3)] {
            assert_eq!(v4_socket.set_option(IPPROTO_IP, code, value), STATUS_SUCCESS);
            assert_eq!(v4_socket.get_option(IPPROTO_IP, code), Ok(value));
        }
        // IPv6 options on an IPv4 socket.
        assert_eq!(v4_socket.set_option(IPPROTO_IPV6, IPV6_UNICAST_HOPS, 5), STATUS_NOT_SUPPORTED);
        assert_eq!(v4_socket.get_option(IPPROTO_IPV6, IPV6_V6ONLY), Err(STATUS_NOT_SUPPORTED));

        let (v6_socket, _) = datagram(client, v6(0));
        for (code, value) in [(IPV6_UNICAST_HOPS, 21), (IPV6_MULTICAST_HOPS, 4)] {
            assert_eq!(v6_socket.set_option(IPPROTO_IPV6, code, value), STATUS_SUCCESS);
            assert_eq!(v6_socket.get_option(IPPROTO_IPV6, code), Ok(value));
        }
        assert_eq!(v6_socket.set_option(IPPROTO_IP, IP_TTL, 5), STATUS_NOT_SUPPORTED);

        // Datagram-only options on a connection socket.
        let (listener, at) = client.listener(v4(0));
        let socket = client.socket_connect(at).unwrap();
        let (accepted, _) = listener.accept();
        assert_eq!(socket.set_option(SOL_SOCKET, SO_BROADCAST, 1), STATUS_NOT_SUPPORTED);
        assert_eq!(socket.set_option(IPPROTO_IP, IP_MULTICAST_TTL, 1), STATUS_NOT_SUPPORTED);
        assert_eq!(socket.set_option(IPPROTO_IP, IP_TTL, 9), STATUS_SUCCESS);
        assert_eq!(socket.get_option(IPPROTO_IP, IP_TTL), Ok(9));
        for s in [v4_socket, v6_socket, socket, accepted, listener] {
            s.close();
        }
    });
}

#[test]
fn multicast_membership_joins_delivers_and_leaves() {
    clean_session(|client| {
        let (socket, local) = datagram(client, SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)));
        let group = Ipv4Addr::new(239, 255, 17, 3);
        let mut mreq = [0u8; 8];
        mreq[..4].copy_from_slice(&group.octets());
        mreq[4..].copy_from_slice(&Ipv4Addr::LOCALHOST.octets());
        assert_eq!(control(socket, WskSetOption, IPPROTO_IP, IP_ADD_MEMBERSHIP, &mut mreq, &mut []).0, STATUS_SUCCESS);
        // Set only; a short IP_MREQ is refused.
        assert_eq!(socket.get_option(IPPROTO_IP, IP_ADD_MEMBERSHIP), Err(STATUS_NOT_SUPPORTED));
        assert_eq!(
            control(socket, WskSetOption, IPPROTO_IP, IP_ADD_MEMBERSHIP, &mut mreq[..4], &mut []).0,
            STATUS_INVALID_PARAMETER
        );

        // A host sender on the loopback interface reaches the group's member.
        let sender = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
        sender.set_multicast_if_v4(&Ipv4Addr::LOCALHOST).unwrap();
        let mut incoming = Buf::zeroed(16);
        let mut from = Box::new(SOCKADDR_STORAGE::zeroed());
        let receive = receive_from_start(socket, &mut incoming, &mut from);
        sender.send_to(b"group", &SocketAddr::from((group, local.port())).into()).unwrap();
        let done = receive.wait();
        assert_eq!((done.status, done.info), (STATUS_SUCCESS, 5));
        assert_eq!(&incoming.data[..5], b"group");
        drop(receive);

        assert_eq!(control(socket, WskSetOption, IPPROTO_IP, IP_DROP_MEMBERSHIP, &mut mreq, &mut []).0, STATUS_SUCCESS);
        // Leaving again: the host has no such membership.
        assert_ne!(control(socket, WskSetOption, IPPROTO_IP, IP_DROP_MEMBERSHIP, &mut mreq, &mut []).0, STATUS_SUCCESS);

        // IPv6: a 20-byte IPV6_MREQ on the loopback interface.
        let (v6_socket, _) = datagram(client, v6(0));
        let mut mreq6 = [0u8; 20];
        mreq6[..16].copy_from_slice(&Ipv6Addr::new(0xff01, 0, 0, 0, 0, 0, 1, 3).octets());
        mreq6[16..].copy_from_slice(&1u32.to_ne_bytes());
        assert_eq!(
            control(v6_socket, WskSetOption, IPPROTO_IPV6, IPV6_ADD_MEMBERSHIP, &mut mreq6, &mut []).0,
            STATUS_SUCCESS
        );
        assert_eq!(
            control(v6_socket, WskSetOption, IPPROTO_IPV6, IPV6_DROP_MEMBERSHIP, &mut mreq6, &mut []).0,
            STATUS_SUCCESS
        );
        assert_eq!(
            control(v6_socket, WskSetOption, IPPROTO_IPV6, IPV6_ADD_MEMBERSHIP, &mut mreq6[..16], &mut []).0,
            STATUS_INVALID_PARAMETER
        );
        socket.close();
        v6_socket.close();
    });
}

#[test]
fn a_dual_stack_listener_accepts_ipv4_peers_as_mapped_addresses() {
    clean_session(|client| {
        let listener = client.socket(AF_INET6, SOCK_STREAM, IPPROTO_TCP, WSK_FLAG_LISTEN_SOCKET).unwrap();
        assert_eq!(listener.get_option(IPPROTO_IPV6, IPV6_V6ONLY), Ok(1), "Windows' default");
        assert_eq!(listener.set_option(IPPROTO_IPV6, IPV6_V6ONLY, 0), STATUS_SUCCESS);
        assert_eq!(listener.get_option(IPPROTO_IPV6, IPV6_V6ONLY), Ok(0));
        assert_eq!(listener.bind(SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0))), STATUS_SUCCESS);
        // After bind the option is fixed.
        assert_eq!(listener.set_option(IPPROTO_IPV6, IPV6_V6ONLY, 1), STATUS_INVALID_DEVICE_STATE);
        let port = listener.local_address().unwrap().port();
        let host = HostStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
        let (accepted, peer) = listener.accept();
        let SocketAddr::V6(peer) = peer else { panic!("an IPv6 listener reports IPv6 peers: {peer}") };
        assert_eq!(peer.ip().to_ipv4_mapped(), Some(Ipv4Addr::LOCALHOST));
        assert_eq!(peer.port(), host.local_addr().unwrap().port());
        drop(host);
        accepted.close();
        listener.close();
    });
}

#[test]
fn fixed_remote_address_sends_there_and_receives_only_from_there() {
    clean_session(|client| {
        // Before bind, on a stream socket, with a foreign family or a short input.
        let unbound = client.socket(AF_INET, SOCK_DGRAM, IPPROTO_UDP, WSK_FLAG_DATAGRAM_SOCKET).unwrap();
        assert_eq!(set_remote(unbound, Some(v4(9))), STATUS_INVALID_DEVICE_STATE);
        unbound.close();
        let (listener, _) = client.listener(v4(0));
        assert_eq!(set_remote(listener, Some(v4(9))), STATUS_NOT_SUPPORTED);
        listener.close();
        let (socket, local) = datagram(client, v4(0));
        assert_eq!(set_remote(socket, Some(v6(9))), STATUS_INVALID_ADDRESS);
        let mut short = storage(v4(9));
        let bytes = unsafe { std::slice::from_raw_parts_mut((&raw mut short).cast::<u8>(), 8) };
        assert_eq!(
            control(socket, WskIoctl, 0, SIO_WSK_SET_REMOTE_ADDRESS, bytes, &mut []).0,
            STATUS_INVALID_PARAMETER
        );
        // Without a fixed remote address, a send-to needs one.
        let mut out = Buf::from_vec(b"nowhere".to_vec());
        assert_eq!(send_to_start(socket, &mut out, None).wait().status, STATUS_INVALID_PARAMETER);

        let peer = HostUdp::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let other = HostUdp::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        peer.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let peer_address = peer.local_addr().unwrap();
        assert_eq!(set_remote(socket, Some(peer_address)), STATUS_SUCCESS);

        let mut out = Buf::from_vec(b"fixed".to_vec());
        let done = send_to_start(socket, &mut out, None).wait();
        assert_eq!((done.status, done.info), (STATUS_SUCCESS, 5));
        let mut got = [0u8; 16];
        let (n, from) = peer.recv_from(&mut got).unwrap();
        assert_eq!((&got[..n], from), (&b"fixed"[..], local));

        // The other peer's datagram, sent first, is not accepted; the fixed peer's is.
        other.send_to(b"other", local).unwrap();
        peer.send_to(b"peer", local).unwrap();
        let mut incoming = Buf::zeroed(16);
        let mut from = Box::new(SOCKADDR_STORAGE::zeroed());
        let done = receive_from_start(socket, &mut incoming, &mut from).wait();
        assert_eq!((done.status, done.info), (STATUS_SUCCESS, 4));
        assert_eq!(&incoming.data[..4], b"peer");
        assert_eq!(address(&from), Some(peer_address));

        // Cleared: datagrams from anyone are accepted again.
        assert_eq!(set_remote(socket, None), STATUS_SUCCESS);
        other.send_to(b"again", local).unwrap();
        let done = receive_from_start(socket, &mut incoming, &mut from).wait();
        assert_eq!((done.status, done.info), (STATUS_SUCCESS, 5));
        assert_eq!(address(&from), Some(other.local_addr().unwrap()));
        // Other IOCTLs are not emulated.
        assert_eq!(control(socket, WskIoctl, 0, SIO_WSK_SET_SENDTO_ADDRESS, &mut [], &mut []).0, STATUS_NOT_SUPPORTED);
        socket.close();
    });
}
