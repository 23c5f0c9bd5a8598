//! Options read back: every option the library sets is read back with `get_option`
//! (`WskGetOption`) and has the value set, on connection, listen and datagram sockets;
//! multicast membership (set only) joins and leaves a group on the loopback interface.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use wsk::{Error, IoBuf, OptionName, SocketOption, TcpListener, TcpSocket, UdpSocket};
use wsk_executor::timeout;
use wsk_sys::STATUS_NOT_SUPPORTED;
use wsk_tests::harness::run_clean;

use crate::{LIMIT, PROMPT, local};

#[test]
fn connection_socket_options_read_back_as_set() {
    run_clean(LIMIT, |env| async move {
        let mut socket = TcpSocket::new_v4(env.wsk).await.expect("socket");
        // Defaults first: lingering and keep-alive are off.
        assert_eq!(socket.get_option(OptionName::Linger).await, Ok(SocketOption::Linger(None)));
        assert_eq!(socket.get_option(OptionName::KeepAlive).await, Ok(SocketOption::KeepAlive(false)));
        let options = [
            SocketOption::KeepAlive(true),
            SocketOption::NoDelay(true),
            SocketOption::SendBufferSize(96 * 1024),
            SocketOption::ReceiveBufferSize(96 * 1024),
            SocketOption::Linger(Some(3)),
            SocketOption::Linger(Some(0)),
            SocketOption::Linger(None),
            SocketOption::Ttl(40),
            SocketOption::KeepAlive(false),
        ];
        for option in options {
            socket.set_option(option).await.unwrap_or_else(|e| panic!("set {option:?}: {e:?}"));
            let name = option.name().expect("a readable option");
            assert_eq!(socket.get_option(name).await, Ok(option), "{name:?} reads back as set");
        }
        socket.close().await.unwrap();
    });
}

#[test]
fn a_connected_stream_and_a_listener_read_options_back() {
    run_clean(LIMIT, |env| async move {
        let mut listener =
            TcpListener::bind_with(env.wsk, local(0), &[SocketOption::ReuseAddress(true)]).await.expect("bind");
        assert_eq!(listener.get_option(OptionName::ReuseAddress).await, Ok(SocketOption::ReuseAddress(true)));
        let at = listener.local_addr();
        let connect = env.spawner.spawn(async move { wsk::TcpStream::connect(env.wsk, at).await }).unwrap();
        let (mut accepted, _) = timeout(PROMPT, listener.accept()).await.expect("accept in time").expect("accept");
        let mut stream = connect.await.unwrap().expect("connect");
        stream.set_option(SocketOption::NoDelay(true)).await.expect("set");
        assert_eq!(stream.get_option(OptionName::NoDelay).await, Ok(SocketOption::NoDelay(true)));
        accepted.set_option(SocketOption::Linger(Some(5))).await.expect("set");
        assert_eq!(accepted.get_option(OptionName::Linger).await, Ok(SocketOption::Linger(Some(5))));
        let (_, mut write) = accepted.into_split();
        assert_eq!(write.get_option(OptionName::Linger).await, Ok(SocketOption::Linger(Some(5))));
        write.close().await.unwrap();
        stream.close().await.unwrap();
        listener.close().await.unwrap();
    });
}

#[test]
fn datagram_socket_options_read_back_as_set() {
    run_clean(LIMIT, |env| async move {
        let mut v4 = UdpSocket::bind(env.wsk, local(0)).await.expect("bind");
        assert_eq!(v4.get_option(OptionName::Broadcast).await, Ok(SocketOption::Broadcast(false)));
        for option in [
            SocketOption::Broadcast(true),
            SocketOption::Ttl(20),
            SocketOption::MulticastTtl(4),
            SocketOption::ReceiveBufferSize(128 * 1024),
            SocketOption::Broadcast(false),
        ] {
            v4.set_option(option).await.expect("set");
            assert_eq!(v4.get_option(option.name().unwrap()).await, Ok(option));
        }
        // A stream option on a datagram socket, an IPv6 option on an IPv4 socket.
        let not_supported = Err(Error::Status(STATUS_NOT_SUPPORTED));
        assert_eq!(v4.get_option(OptionName::NoDelay).await, not_supported);
        assert_eq!(v4.set_option(SocketOption::UnicastHops(3)).await, Err(Error::Status(STATUS_NOT_SUPPORTED)));

        let mut v6 = UdpSocket::bind(env.wsk, SocketAddr::from((Ipv6Addr::LOCALHOST, 0))).await.expect("bind v6");
        assert_eq!(v6.get_option(OptionName::V6Only).await, Ok(SocketOption::V6Only(true)), "Windows' default");
        for option in [SocketOption::UnicastHops(30), SocketOption::MulticastHops(6)] {
            v6.set_option(option).await.expect("set");
            assert_eq!(v6.get_option(option.name().unwrap()).await, Ok(option));
        }
        v4.close().await.unwrap();
        v6.close().await.unwrap();
    });
}

/// Joins 239.255.17.4 on the loopback interface; a host sender whose multicast interface is
/// the loopback reaches the member (multicast delivery on the loopback works on Linux hosts).
/// After leaving, leaving again fails (the membership is gone). IPv6: join and leave
/// ff01::1:4 on the loopback interface (interface-local scope), without delivery.
#[test]
fn multicast_membership_joins_receives_and_leaves() {
    let group = Ipv4Addr::new(239, 255, 17, 4);
    let loopback_index = {
        // SAFETY: a NUL-terminated name.
        let index = unsafe { libc::if_nametoindex(c"lo".as_ptr()) };
        assert_ne!(index, 0, "the host has a loopback interface named lo");
        index
    };
    run_clean(LIMIT, move |env| async move {
        let mut socket = UdpSocket::bind(env.wsk, SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))).await.expect("bind");
        let port = socket.local_addr().port();
        let join = SocketOption::JoinMulticastV4 { group, interface: Ipv4Addr::LOCALHOST };
        socket.set_option(join).await.expect("join");
        let sender = std::thread::spawn(move || {
            let host = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
            host.set_multicast_if_v4(&Ipv4Addr::LOCALHOST).unwrap();
            host.send_to(b"to the group", &SocketAddr::from((group, port)).into()).unwrap();
        });
        let (got, buf) = timeout(PROMPT, socket.recv_from(IoBuf::with_capacity(64).unwrap())).await.expect("delivered");
        got.expect("recv_from");
        assert_eq!(buf.as_slice(), b"to the group");
        sender.join().unwrap();
        let leave = SocketOption::LeaveMulticastV4 { group, interface: Ipv4Addr::LOCALHOST };
        socket.set_option(leave).await.expect("leave");
        assert!(socket.set_option(leave).await.is_err(), "leaving a group not joined fails");

        let mut v6 = UdpSocket::bind(env.wsk, SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0))).await.expect("bind v6");
        let group6 = Ipv6Addr::new(0xff01, 0, 0, 0, 0, 0, 1, 4);
        v6.set_option(SocketOption::JoinMulticastV6 { group: group6, interface: loopback_index }).await.expect("join");
        v6.set_option(SocketOption::LeaveMulticastV6 { group: group6, interface: loopback_index })
            .await
            .expect("leave");
        socket.close().await.unwrap();
        v6.close().await.unwrap();
    });
}
