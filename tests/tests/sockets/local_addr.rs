//! `local_addr` reports the address the provider bound, the port chosen for port 0 included.

use std::net::{Ipv4Addr, UdpSocket as HostUdp};

use wsk::{IoBuf, TcpListener, TcpStream, UdpSocket};
use wsk_tests::harness::run_clean;

use crate::{LIMIT, local};

#[test]
fn a_listener_bound_to_port_zero_reports_the_port_chosen() {
    run_clean(LIMIT, |env| async move {
        let mut l = TcpListener::bind(env.wsk, local(0)).await.expect("bind");
        let addr = l.local_addr();
        assert_eq!(addr.ip(), Ipv4Addr::LOCALHOST);
        assert_ne!(addr.port(), 0, "the port chosen for port 0");
        assert_eq!(l.query_local_addr().await, Ok(addr), "the provider's answer, cached");
        let c = TcpStream::connect(env.wsk, addr).await.expect("a client connects to local_addr()");
        let (s, peer) = l.accept().await.expect("accept");
        assert_eq!(peer.ip(), Ipv4Addr::LOCALHOST);
        s.close().await.unwrap();
        c.close().await.unwrap();
        l.close().await.unwrap();
    });
}

#[test]
fn a_udp_socket_bound_to_port_zero_reports_the_port_chosen() {
    run_clean(LIMIT, |env| async move {
        let mut socket = UdpSocket::bind(env.wsk, local(0)).await.expect("bind");
        let addr = socket.local_addr();
        assert_eq!(addr.ip(), Ipv4Addr::LOCALHOST);
        assert_ne!(addr.port(), 0, "the port chosen for port 0");
        assert_eq!(socket.query_local_addr().await, Ok(addr));
        let host = HostUdp::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        host.send_to(b"to local_addr", addr).unwrap();
        let (got, buf) = socket.recv_from(IoBuf::with_capacity(64).unwrap()).await;
        assert_eq!(got, Ok((13, host.local_addr().unwrap())));
        assert_eq!(buf.as_slice(), b"to local_addr");
        let (recv, send) = socket.into_split();
        assert_eq!((recv.local_addr(), send.local_addr()), (addr, addr), "both halves know it");
        recv.reunite(send).expect("reunite").close().await.unwrap();
    });
}
