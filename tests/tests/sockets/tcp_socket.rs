//! `TcpSocket::new_v4` / `new_v6`: a connection socket of each family binds and connects.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener as HostListener};

use wsk::{Error, TcpSocket};
use wsk_tests::harness::run_clean;

use crate::LIMIT;

#[test]
fn new_v4_and_new_v6_connect_in_their_family() {
    let host_v4 = HostListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let host_v6 = HostListener::bind((Ipv6Addr::LOCALHOST, 0)).unwrap();
    let (to_v4, to_v6) = (host_v4.local_addr().unwrap(), host_v6.local_addr().unwrap());
    run_clean(LIMIT, move |env| async move {
        let mut v4 = TcpSocket::new_v4(env.wsk).await.expect("IPv4 socket");
        v4.bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await.expect("bind IPv4");
        let c = v4.connect(to_v4).await.expect("connect over IPv4");
        assert_eq!(c.peer_addr(), Some(to_v4));
        c.close().await.unwrap();

        let mut v6 = TcpSocket::new_v6(env.wsk).await.expect("IPv6 socket");
        v6.bind(SocketAddr::from((Ipv6Addr::LOCALHOST, 0))).await.expect("bind IPv6");
        let mut c = v6.connect(to_v6).await.expect("connect over IPv6");
        let local = c.query_local_addr().await.expect("local address");
        assert!(local.is_ipv6() && local.port() != 0, "{local}");
        c.close().await.unwrap();

        // The family is the socket's: an IPv4 address does not bind an IPv6 socket.
        let mut v6 = TcpSocket::new_v6(env.wsk).await.expect("IPv6 socket");
        let wrong = v6.bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await;
        assert_eq!(wrong, Err(Error::Status(wsk_sys::STATUS_INVALID_ADDRESS)));
        v6.close().await.unwrap();
    });
    drop((host_v4, host_v6));
}
