//! Connected UDP: `UdpSocket::connect` fixes the remote address
//! (`SIO_WSK_SET_REMOTE_ADDRESS`); `send` and `recv` then go without an address, and
//! datagrams from any other peer are not delivered; `disconnect` clears it.

use wsk::{IoBuf, UdpSocket};
use wsk_executor::timeout;
use wsk_sys::STATUS_INVALID_PARAMETER;
use wsk_tests::harness::run_clean;

use crate::{LIMIT, PROMPT, local};

#[test]
fn send_and_recv_without_addresses_and_only_from_the_peer() {
    run_clean(LIMIT, |env| async move {
        let mut socket = UdpSocket::bind(env.wsk, local(0)).await.expect("bind");
        let mut peer = UdpSocket::bind(env.wsk, local(0)).await.expect("bind peer");
        let mut other = UdpSocket::bind(env.wsk, local(0)).await.expect("bind other");
        let (addr, peer_addr) = (socket.local_addr(), peer.local_addr());

        // Not connected: a send without an address has nowhere to go.
        let (unsent, _) = socket.send(IoBuf::copy_from(b"nowhere").unwrap()).await;
        assert_eq!(unsent, Err(wsk::Error::Status(STATUS_INVALID_PARAMETER)));

        socket.connect(peer_addr).await.expect("connect");
        let (sent, _) = socket.send(IoBuf::copy_from(b"hello peer").unwrap()).await;
        assert_eq!(sent, Ok(10));
        let (got, buf) = timeout(PROMPT, peer.recv_from(IoBuf::with_capacity(64).unwrap())).await.expect("in time");
        assert_eq!(got, Ok((10, addr)));
        assert_eq!(buf.as_slice(), b"hello peer");

        // The other peer's datagram goes first and is not delivered; the peer's is.
        other.send_to(IoBuf::copy_from(b"from other").unwrap(), addr).await.0.expect("send_to");
        peer.send_to(IoBuf::copy_from(b"from peer").unwrap(), addr).await.0.expect("send_to");
        let (got, buf) = timeout(PROMPT, socket.recv(IoBuf::with_capacity(64).unwrap())).await.expect("in time");
        assert_eq!(got, Ok(9));
        assert_eq!(buf.as_slice(), b"from peer");

        // Cleared: datagrams from anyone are delivered again.
        socket.disconnect().await.expect("disconnect");
        other.send_to(IoBuf::copy_from(b"again").unwrap(), addr).await.0.expect("send_to");
        let (got, buf) = timeout(PROMPT, socket.recv_from(IoBuf::with_capacity(64).unwrap())).await.expect("in time");
        assert_eq!(got, Ok((5, other.local_addr())));
        assert_eq!(buf.as_slice(), b"again");
        for s in [socket, peer, other] {
            s.close().await.unwrap();
        }
    });
}

/// The halves: the send half connects and sends, the receive half receives from the peer.
#[test]
fn the_halves_of_a_connected_socket_send_and_receive() {
    run_clean(LIMIT, |env| async move {
        let socket = UdpSocket::bind(env.wsk, local(0)).await.expect("bind");
        let mut peer = UdpSocket::bind(env.wsk, local(0)).await.expect("bind peer");
        let addr = socket.local_addr();
        let (mut recv, mut send) = socket.into_split();
        send.connect(peer.local_addr()).await.expect("connect");
        send.send(IoBuf::copy_from(b"ping").unwrap()).await.0.expect("send");
        let (got, buf) = timeout(PROMPT, peer.recv_from(IoBuf::with_capacity(16).unwrap())).await.expect("in time");
        assert_eq!(got, Ok((4, addr)));
        peer.send_to(buf, addr).await.0.expect("echo");
        let (got, buf) = timeout(PROMPT, recv.recv(IoBuf::with_capacity(16).unwrap())).await.expect("in time");
        assert_eq!((got, buf.as_slice()), (Ok(4), &b"ping"[..]));
        send.reunite(recv).expect("same socket").close().await.unwrap();
        peer.close().await.unwrap();
    });
}
