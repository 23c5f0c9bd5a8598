//! What a datagram receive reports besides the payload: truncation (`MSG_TRUNC`) and control
//! messages (`IP_PKTINFO` / `IPV6_PKTINFO` packet information), through `UdpSocket::recv_msg`.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use wsk::socket::control::RecvMeta;
use wsk::{IoBuf, SocketOption, UdpSocket};
use wsk_tests::harness::run_clean;

use crate::{LIMIT, local};

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(13).wrapping_add(seed)).collect()
}

/// Sends `payload` from `peer` to `to` and receives it on `socket` with `recv_msg` into a
/// buffer of `capacity` bytes.
async fn round(peer: &mut UdpSocket, socket: &mut UdpSocket, payload: &[u8], capacity: usize) -> (RecvMeta, Vec<u8>) {
    let to = socket.local_addr();
    peer.send_to(IoBuf::copy_from(payload).unwrap(), to).await.0.expect("send_to");
    let (meta, buf) = socket.recv_msg(IoBuf::with_capacity(capacity).unwrap()).await;
    let meta = meta.expect("recv_msg");
    assert_eq!(meta.len, buf.len(), "the buffer holds what the length says");
    (meta, buf.as_slice().to_vec())
}

/// A 2,000-byte datagram into a 500-byte buffer: truncated, the buffer holds its first 500
/// bytes; an exact fit and a smaller one are not truncated; `recv_from` still gives the length
/// in the buffer.
#[test]
fn a_datagram_larger_than_the_buffer_is_reported_truncated() {
    run_clean(LIMIT, |env| async move {
        let mut socket = UdpSocket::bind(env.wsk, local(0)).await.expect("bind");
        let mut peer = UdpSocket::bind(env.wsk, local(0)).await.expect("bind peer");
        let big = pattern(2000, 1);
        let (meta, got) = round(&mut peer, &mut socket, &big, 500).await;
        assert!(meta.truncated, "2,000 bytes into 500");
        assert_eq!((meta.len, meta.from), (500, peer.local_addr()));
        assert_eq!(got, big[..500]);
        assert!(meta.control.is_empty(), "no control information asked for");

        let exact = pattern(500, 2);
        let (meta, got) = round(&mut peer, &mut socket, &exact, 500).await;
        assert!(!meta.truncated, "an exact fit is whole");
        assert_eq!(got, exact);

        let (meta, got) = round(&mut peer, &mut socket, b"small", 500).await;
        assert!(!meta.truncated);
        assert_eq!(got, b"small");

        // The tokio-shaped call on a truncated datagram: the length in the buffer.
        peer.send_to(IoBuf::copy_from(&big).unwrap(), socket.local_addr()).await.0.unwrap();
        let (r, buf) = socket.recv_from(IoBuf::with_capacity(500).unwrap()).await;
        assert_eq!(r, Ok((500, peer.local_addr())));
        assert_eq!(buf.as_slice(), &big[..500]);
        socket.close().await.unwrap();
        peer.close().await.unwrap();
    });
}

/// With `IP_PKTINFO` on, each datagram comes with its packet information (the address it was
/// sent to, the arrival interface); off, with none.
#[test]
fn packet_info_comes_with_each_datagram_when_asked_for() {
    run_clean(LIMIT, |env| async move {
        let mut socket = UdpSocket::bind(env.wsk, local(0)).await.expect("bind");
        let mut peer = UdpSocket::bind(env.wsk, local(0)).await.expect("bind peer");
        let (meta, _) = round(&mut peer, &mut socket, b"before", 64).await;
        assert_eq!(meta.control.packet_info(), None, "off by default");
        socket.set_option(SocketOption::PacketInfo(true)).await.expect("IP_PKTINFO");
        let (meta, got) = round(&mut peer, &mut socket, b"with info", 64).await;
        assert_eq!(got, b"with info");
        let info = meta.control.packet_info().expect("packet information");
        assert_eq!(info.destination, IpAddr::from([127, 0, 0, 1]));
        assert_ne!(info.interface, 0, "the loopback interface's index");
        assert_eq!(meta.control.iter().count(), 1);
        assert!(!meta.control.is_truncated() && !meta.truncated);
        // With a truncated payload, both are reported.
        let (meta, _) = round(&mut peer, &mut socket, &pattern(100, 3), 10).await;
        assert!(meta.truncated);
        assert!(meta.control.packet_info().is_some());
        socket.set_option(SocketOption::PacketInfo(false)).await.expect("IP_PKTINFO off");
        let (meta, _) = round(&mut peer, &mut socket, b"after", 64).await;
        assert!(meta.control.is_empty(), "off again");
        socket.close().await.unwrap();
        peer.close().await.unwrap();
    });
}

/// `IPV6_PKTINFO` on an IPv6 socket: the destination is `::1`.
#[test]
fn ipv6_packet_info() {
    run_clean(LIMIT, |env| async move {
        let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, 0));
        let mut socket = UdpSocket::bind(env.wsk, v6).await.expect("bind");
        let mut peer = UdpSocket::bind(env.wsk, v6).await.expect("bind peer");
        assert!(socket.set_option(SocketOption::PacketInfo(true)).await.is_err(), "IP_PKTINFO is for IPv4");
        socket.set_option(SocketOption::PacketInfoV6(true)).await.expect("IPV6_PKTINFO");
        let (meta, _) = round(&mut peer, &mut socket, b"v6", 64).await;
        let info = meta.control.packet_info().expect("packet information");
        assert_eq!(info.destination, IpAddr::V6(Ipv6Addr::LOCALHOST));
        assert_eq!(meta.from, peer.local_addr());
        socket.close().await.unwrap();
        peer.close().await.unwrap();
    });
}
