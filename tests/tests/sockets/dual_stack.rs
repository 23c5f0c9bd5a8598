//! Dual stack: an IPv6 listener on `[::]` with `IPV6_V6ONLY` off accepts IPv4 peers and
//! reports them as IPv4-mapped addresses (`::ffff:a.b.c.d`, as the provider gives them); with
//! the option on (Windows' default) an IPv4 connect is refused.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use wsk::{Error, OptionName, SocketOption, TcpListener, TcpStream};
use wsk_executor::timeout;
use wsk_sys::STATUS_CONNECTION_REFUSED;
use wsk_tests::harness::run_clean;

use crate::{LIMIT, PROMPT, echo_once, local};

fn any_v6() -> SocketAddr {
    SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0))
}

#[test]
fn a_dual_stack_listener_accepts_an_ipv4_client_as_a_mapped_address() {
    run_clean(LIMIT, |env| async move {
        let mut listener =
            TcpListener::bind_with(env.wsk, any_v6(), &[SocketOption::V6Only(false)]).await.expect("bind [::]");
        assert_eq!(listener.get_option(OptionName::V6Only).await, Ok(SocketOption::V6Only(false)));
        let port = listener.local_addr().port();
        let client = env
            .spawner
            .spawn(async move {
                let mut client = TcpStream::connect(env.wsk, local(port)).await.expect("IPv4 connect");
                let local_addr = client.query_local_addr().await.expect("local address");
                assert_eq!(echo_once(&mut client, b"over IPv4").await, b"over IPv4");
                client.close().await.unwrap();
                local_addr
            })
            .unwrap();
        let (mut accepted, peer) = timeout(PROMPT, listener.accept()).await.expect("accept in time").expect("accept");
        let SocketAddr::V6(peer) = peer else { panic!("an IPv6 listener reports IPv6 peers, got {peer}") };
        assert_eq!(peer.ip().to_ipv4_mapped(), Some(Ipv4Addr::LOCALHOST), "{peer}");
        let (n, buf) = accepted.recv(wsk::IoBuf::with_capacity(64).unwrap()).await;
        assert_eq!(n, Ok(9));
        accepted.send_all(buf).await.0.expect("echo");
        let client_addr = timeout(PROMPT, client).await.expect("client finishes").unwrap();
        assert_eq!(peer.port(), client_addr.port());
        accepted.close().await.unwrap();
        listener.close().await.unwrap();
    });
}

#[test]
fn with_v6only_on_an_ipv4_client_is_refused() {
    run_clean(LIMIT, |env| async move {
        let mut listener = TcpListener::bind(env.wsk, any_v6()).await.expect("bind [::]");
        assert_eq!(listener.get_option(OptionName::V6Only).await, Ok(SocketOption::V6Only(true)));
        let port = listener.local_addr().port();
        let refused = TcpStream::connect(env.wsk, local(port)).await.err();
        assert_eq!(refused, Some(Error::Status(STATUS_CONNECTION_REFUSED)));
        // An IPv6 client still gets in.
        let connect = env
            .spawner
            .spawn(async move { TcpStream::connect(env.wsk, SocketAddr::from((Ipv6Addr::LOCALHOST, port))).await })
            .unwrap();
        let (accepted, peer) = timeout(PROMPT, listener.accept()).await.expect("accept in time").expect("accept");
        assert_eq!(peer.ip(), Ipv6Addr::LOCALHOST);
        connect.await.unwrap().expect("IPv6 connect").close().await.unwrap();
        accepted.close().await.unwrap();
        listener.close().await.unwrap();
    });
}
