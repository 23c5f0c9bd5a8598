//! Datagram sockets: WskSendTo, WskReceiveFrom, with WSK and host peers.

use std::net::{SocketAddr, UdpSocket};
use std::ptr;
use std::time::Duration;

use wsk_sys::*;

use crate::support::*;

fn datagram(client: &Client, at: SocketAddr) -> (Sock, SocketAddr) {
    let family = if at.is_ipv4() { AF_INET } else { AF_INET6 };
    let socket = client.socket(family, SOCK_DGRAM, IPPROTO_UDP, WSK_FLAG_DATAGRAM_SOCKET).unwrap();
    assert_eq!(socket.bind(at), STATUS_SUCCESS);
    let local = socket.datagram_local_address().unwrap();
    (socket, local)
}

fn send_to_start(socket: Sock, buf: &mut Buf, to: SocketAddr, address: &mut SOCKADDR_STORAGE) -> Req {
    *address = storage(to);
    let req = Req::new();
    unsafe {
        (socket.datagram().WskSendTo.unwrap())(socket.0, buf.wsk_buf(), 0, sa(address), 0, ptr::null_mut(), req.irp)
    };
    req
}

/// Out-parameters of a receive-from, kept in place until it completes: the sender, and a
/// control buffer of `control_length` bytes (at most 64) going in.
struct From {
    address: SOCKADDR_STORAGE,
    control_length: ULONG,
    control: [u64; 8],
    control_flags: ULONG,
}

fn receive_from_start(socket: Sock, buf: &mut Buf, from: &mut Box<From>) -> Req {
    socket.receive_from_with(
        buf,
        sa(&mut from.address),
        &raw mut from.control_length,
        from.control.as_mut_ptr().cast(),
        &raw mut from.control_flags,
    )
}

fn new_from() -> Box<From> {
    Box::new(From { address: SOCKADDR_STORAGE::zeroed(), control_length: 64, control: [!0; 8], control_flags: 99 })
}

impl From {
    /// The control messages written, as (level, type, data), read in Windows' x64 layout
    /// (16-byte `CMSGHDR`, data right after it, next header 8-aligned).
    fn messages(&self) -> Vec<(i32, i32, Vec<u8>)> {
        let bytes: Vec<u8> = self.control.iter().flat_map(|word| word.to_ne_bytes()).collect();
        let bytes = &bytes[..self.control_length as usize];
        let mut at = 0;
        let mut out = Vec::new();
        while at + 16 <= bytes.len() {
            let len = usize::from_ne_bytes(bytes[at..at + 8].try_into().unwrap());
            let level = i32::from_ne_bytes(bytes[at + 8..at + 12].try_into().unwrap());
            let kind = i32::from_ne_bytes(bytes[at + 12..at + 16].try_into().unwrap());
            out.push((level, kind, bytes[at + 16..at + len].to_vec()));
            at += len.next_multiple_of(8);
        }
        out
    }
}

#[test]
fn send_to_and_receive_from_between_wsk_sockets() {
    clean_session(|client| {
        let (a, a_address) = datagram(client, v4(0));
        let (b, b_address) = datagram(client, v4(0));
        let mut incoming = Buf::zeroed(64);
        let mut from = new_from();
        let receive = receive_from_start(b, &mut incoming, &mut from);
        assert!(receive.wait_for(Duration::from_millis(20)).is_none(), "receive-from pends");
        let mut out = Buf::from_vec(b"datagram".to_vec());
        let mut to = SOCKADDR_STORAGE::zeroed();
        let done = send_to_start(a, &mut out, b_address, &mut to).wait();
        assert_eq!((done.status, done.info), (STATUS_SUCCESS, 8));
        let done = receive.wait();
        assert_eq!((done.status, done.info), (STATUS_SUCCESS, 8));
        assert_eq!(done.irql, DISPATCH_LEVEL);
        assert_eq!(&incoming.data[..8], b"datagram");
        assert_eq!(address(&from.address), Some(a_address), "sender address out-parameter");
        assert_eq!((from.control_length, from.control_flags), (0, 0));
        drop(receive);
        a.close();
        b.close();
    });
}

#[test]
fn host_peers_truncation_and_zero_length() {
    clean_session(|client| {
        let (socket, local) = datagram(client, v4(0));
        let host = UdpSocket::bind(v4(0)).unwrap();
        // A datagram larger than the buffer is truncated (MSG_TRUNC in the control flags).
        host.send_to(&pattern(100, 1), local).unwrap();
        let mut small = Buf::zeroed(10);
        let mut from = new_from();
        let done = receive_from_start(socket, &mut small, &mut from).wait();
        assert_eq!((done.status, done.info), (STATUS_SUCCESS, 10));
        assert_eq!(small.data, pattern(100, 1)[..10]);
        assert_eq!(from.control_flags, MSG_TRUNC);
        assert_eq!(from.control_length, 0, "no control information");
        assert_eq!(address(&from.address), Some(host.local_addr().unwrap()));

        // An empty datagram is sent and received as such.
        let mut empty = Buf::zeroed(0);
        let mut to = SOCKADDR_STORAGE::zeroed();
        let done = send_to_start(socket, &mut empty, host.local_addr().unwrap(), &mut to).wait();
        assert_eq!((done.status, done.info), (STATUS_SUCCESS, 0));
        let mut got = [0u8; 8];
        assert_eq!(host.recv_from(&mut got).unwrap().0, 0);
        // A receive with a zero-length buffer completes at once.
        let done = receive_from_start(socket, &mut empty, &mut from).wait();
        assert_eq!((done.status, done.info), (STATUS_SUCCESS, 0));

        // WSK -> host, with an MDL chain.
        let mut first = Buf::pattern(5, 10);
        let second = Buf::pattern(7, 20);
        unsafe { (*first.mdl).Next = second.mdl };
        first.wsk.Length = 12;
        let done = send_to_start(socket, &mut first, host.local_addr().unwrap(), &mut to).wait();
        assert_eq!(done.info, 12);
        let mut got = [0u8; 32];
        let (n, sender) = host.recv_from(&mut got).unwrap();
        assert_eq!(sender, local);
        assert_eq!(got[..n], [first.data.clone(), second.data.clone()].concat()[..]);
        unsafe { (*first.mdl).Next = ptr::null_mut() };
        socket.close();
    });
}

/// `IP_PKTINFO` on: each datagram comes with an `IN_PKTINFO` control message (the address it
/// was sent to, the interface), `ControlLength` its length; off: none.
#[test]
fn packet_info_comes_as_control_information() {
    clean_session(|client| {
        let (socket, local) = datagram(client, v4(0));
        assert_eq!(socket.get_option(IPPROTO_IP, IP_PKTINFO), Ok(0));
        assert_eq!(socket.set_option(IPPROTO_IP, IP_PKTINFO, 1), STATUS_SUCCESS);
        assert_eq!(socket.get_option(IPPROTO_IP, IP_PKTINFO), Ok(1), "read back");
        assert_eq!(socket.set_option(IPPROTO_IPV6, IPV6_PKTINFO, 1), STATUS_NOT_SUPPORTED, "not on IPv4");
        let host = UdpSocket::bind(v4(0)).unwrap();
        host.send_to(b"info", local).unwrap();
        let mut buf = Buf::zeroed(16);
        let mut from = new_from();
        let done = receive_from_start(socket, &mut buf, &mut from).wait();
        assert_eq!((done.status, done.info), (STATUS_SUCCESS, 4));
        assert_eq!((from.control_length, from.control_flags), (24, 0), "one 24-byte message");
        let messages = from.messages();
        assert_eq!(messages.len(), 1);
        let (level, kind, data) = &messages[0];
        assert_eq!((*level, *kind as u32, data.len()), (0, IP_PKTINFO, 8));
        assert_eq!(data[..4], [127, 0, 0, 1], "the destination address");
        assert_ne!(u32::from_ne_bytes(data[4..].try_into().unwrap()), 0, "the loopback interface's index");

        // Control information larger than the buffer: MSG_CTRUNC, nothing written.
        host.send_to(b"tight", local).unwrap();
        let mut from = new_from();
        from.control_length = 16;
        let done = receive_from_start(socket, &mut buf, &mut from).wait();
        assert_eq!(done.info, 5);
        assert_eq!((from.control_length, from.control_flags), (0, MSG_CTRUNC));

        // Off again: no control information.
        assert_eq!(socket.set_option(IPPROTO_IP, IP_PKTINFO, 0), STATUS_SUCCESS);
        host.send_to(b"none", local).unwrap();
        let mut from = new_from();
        receive_from_start(socket, &mut buf, &mut from).wait();
        assert_eq!((from.control_length, from.control_flags), (0, 0));
        socket.close();
    });
}

/// `IPV6_PKTINFO` on an IPv6 socket: an `IN6_PKTINFO` message, with truncation of the datagram
/// reported beside it.
#[test]
fn ipv6_packet_info_and_truncation_together() {
    clean_session(|client| {
        let (socket, local) = datagram(client, v6(0));
        assert_eq!(socket.set_option(IPPROTO_IP, IP_PKTINFO, 1), STATUS_NOT_SUPPORTED, "not on IPv6");
        assert_eq!(socket.set_option(IPPROTO_IPV6, IPV6_PKTINFO, 1), STATUS_SUCCESS);
        assert_eq!(socket.get_option(IPPROTO_IPV6, IPV6_PKTINFO), Ok(1));
        let host = UdpSocket::bind(v6(0)).unwrap();
        host.send_to(&pattern(40, 3), local).unwrap();
        let mut buf = Buf::zeroed(8);
        let mut from = new_from();
        let done = receive_from_start(socket, &mut buf, &mut from).wait();
        assert_eq!(done.info, 8);
        assert_eq!(buf.data, pattern(40, 3)[..8]);
        assert_eq!((from.control_length, from.control_flags), (36, MSG_TRUNC));
        let messages = from.messages();
        let (level, kind, data) = &messages[0];
        assert_eq!((*level as u32, *kind as u32, data.len()), (IPPROTO_IPV6, IPV6_PKTINFO, 20));
        assert_eq!(data[..16], std::net::Ipv6Addr::LOCALHOST.octets());
        socket.close();
    });
}

/// Without `ControlLength` there is no control information (`ControlInfo` is ignored), but the
/// flags are still written.
#[test]
fn no_control_length_means_no_control_information() {
    clean_session(|client| {
        let (socket, local) = datagram(client, v4(0));
        assert_eq!(socket.set_option(IPPROTO_IP, IP_PKTINFO, 1), STATUS_SUCCESS);
        let host = UdpSocket::bind(v4(0)).unwrap();
        host.send_to(&pattern(30, 1), local).unwrap();
        let mut buf = Buf::zeroed(10);
        let mut control = [!0u64; 8];
        let mut flags: ULONG = 99;
        let mut remote = SOCKADDR_STORAGE::zeroed();
        let req = socket.receive_from_with(
            &mut buf,
            sa(&mut remote),
            ptr::null_mut(),
            control.as_mut_ptr().cast(),
            &raw mut flags,
        );
        assert_eq!(req.wait().info, 10);
        assert_eq!(flags, MSG_TRUNC);
        assert_eq!(control, [!0u64; 8], "ControlInfo untouched");
        drop(req);
        socket.close();
    });
}

#[test]
fn ipv6_datagrams() {
    clean_session(|client| {
        let (a, a_address) = datagram(client, v6(0));
        let host = UdpSocket::bind(v6(0)).unwrap();
        let mut out = Buf::from_vec(b"v6".to_vec());
        let mut to = SOCKADDR_STORAGE::zeroed();
        assert_eq!(send_to_start(a, &mut out, host.local_addr().unwrap(), &mut to).wait().info, 2);
        let mut got = [0u8; 4];
        let (n, sender) = host.recv_from(&mut got).unwrap();
        assert_eq!((&got[..n], sender), (&b"v6"[..], a_address));
        // An IPv4 destination on an IPv6 socket is refused.
        let done = send_to_start(a, &mut out, v4(9), &mut to).wait();
        assert_eq!(done.status, STATUS_INVALID_ADDRESS);
        a.close();
    });
}

/// `WskSendMessages`: each buffer of the list is one datagram to the one address, in order;
/// `Information` is the bytes of all of them.
#[test]
fn send_messages_sends_each_buffer_as_a_datagram() {
    clean_session(|client| {
        let host = UdpSocket::bind("127.0.0.1:0").unwrap();
        host.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let socket = client.socket(AF_INET, SOCK_DGRAM, IPPROTO_UDP, WSK_FLAG_DATAGRAM_SOCKET).unwrap();
        assert_eq!(socket.bind(v4(0)), STATUS_SUCCESS);
        let (mut one, mut two) = (Buf::from_vec(b"first".to_vec()), Buf::from_vec(b"second!".to_vec()));
        // SAFETY: the buffers' WSK_BUFs stay valid until the request completes below.
        let (first, second) = unsafe { (*one.wsk_buf(), *two.wsk_buf()) };
        let mut last = WSK_BUF_LIST { Next: ptr::null_mut(), Buffer: second };
        let mut list = WSK_BUF_LIST { Next: &raw mut last, Buffer: first };
        let mut to = storage(host.local_addr().unwrap());
        let req = Req::new();
        unsafe {
            (socket.datagram().WskSendMessages.unwrap())(
                socket.0,
                &raw mut list,
                0,
                sa(&mut to),
                0,
                ptr::null_mut(),
                req.irp,
            )
        };
        let done = req.wait();
        assert_eq!((done.status, done.info), (STATUS_SUCCESS, 12));
        let mut got = [0u8; 16];
        for expected in [&b"first"[..], b"second!"] {
            let (n, _) = host.recv_from(&mut got).unwrap();
            assert_eq!(&got[..n], expected);
        }
        socket.close();
    });
}

#[test]
fn unbound_and_bad_destinations() {
    clean_session(|client| {
        let socket = client.socket(AF_INET, SOCK_DGRAM, IPPROTO_UDP, WSK_FLAG_DATAGRAM_SOCKET).unwrap();
        let mut out = Buf::from_vec(b"x".to_vec());
        let mut to = SOCKADDR_STORAGE::zeroed();
        // WSK requires a bound datagram socket.
        assert_eq!(send_to_start(socket, &mut out, v4(9), &mut to).wait().status, STATUS_INVALID_DEVICE_STATE);
        let mut from = new_from();
        let mut buf = Buf::zeroed(4);
        assert_eq!(receive_from_start(socket, &mut buf, &mut from).wait().status, STATUS_INVALID_DEVICE_STATE);
        assert_eq!(socket.bind(v4(0)), STATUS_SUCCESS);
        // Port 0 / unspecified destinations.
        assert_eq!(send_to_start(socket, &mut out, v4(0), &mut to).wait().status, STATUS_INVALID_ADDRESS_COMPONENT);
        // No destination (SIO_WSK_SET_SENDTO_ADDRESS is not emulated).
        let req = Req::new();
        unsafe {
            (socket.datagram().WskSendTo.unwrap())(
                socket.0,
                out.wsk_buf(),
                0,
                ptr::null_mut(),
                0,
                ptr::null_mut(),
                req.irp,
            )
        };
        assert_eq!(req.wait().status, STATUS_INVALID_PARAMETER);
        drop(req);
        // WskSendMessages takes its destination as WskSendTo does: none is refused the same
        // way, and with one, a null buffer list is an invalid parameter.
        to = storage(v4(9));
        for remote in [ptr::null_mut(), sa(&mut to)] {
            let req = Req::new();
            unsafe {
                (socket.datagram().WskSendMessages.unwrap())(
                    socket.0,
                    ptr::null_mut(),
                    0,
                    remote,
                    0,
                    ptr::null_mut(),
                    req.irp,
                )
            };
            assert_eq!(req.wait().status, STATUS_INVALID_PARAMETER);
            drop(req);
        }
        socket.close();
    });
}

#[test]
fn close_cancels_a_pending_receive_from() {
    clean_session(|client| {
        let (socket, _) = datagram(client, v4(0));
        let mut buf = Buf::zeroed(16);
        let mut from = new_from();
        let receive = receive_from_start(socket, &mut buf, &mut from);
        let closed = socket.close();
        let done = receive.done().expect("completed before the close");
        assert_eq!(done.status, STATUS_CANCELLED);
        assert!(done.sequence < closed.sequence);
    });
}
