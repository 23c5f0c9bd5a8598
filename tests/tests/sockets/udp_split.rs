//! `UdpSocket::into_split`: a receive half and a send half used from different tasks, the
//! close contract across the halves, and `reunite`.

use std::net::SocketAddr;
use std::time::Duration;

use wsk::{Error, IoBuf, UdpRecvHalf, UdpReuniteError, UdpSocket};
use wsk_executor::timeout;
use wsk_tests::harness::run_clean;

use crate::{LIMIT, PROMPT, local};

const ROUNDS: usize = 50;

/// One task sends on the send half while another receives on the receive half, each with a
/// call pending while the other runs: the peer echoes every datagram back.
#[test]
fn the_halves_send_and_receive_concurrently_from_two_tasks() {
    run_clean(LIMIT, |env| async move {
        let socket = UdpSocket::bind(env.wsk, local(0)).await.expect("bind");
        let mut peer = UdpSocket::bind(env.wsk, local(0)).await.expect("bind peer");
        let (addr, peer_addr) = (socket.local_addr(), peer.local_addr());
        let (mut recv, mut send) = socket.into_split();
        let receiver = env
            .spawner
            .spawn(async move {
                let mut got = Vec::new();
                while got.len() < ROUNDS {
                    let (r, buf) = recv.recv_from(IoBuf::with_capacity(64).unwrap()).await;
                    let (_, from) = r.expect("recv_from on the receive half");
                    assert_eq!(from, peer_addr);
                    got.push(buf.as_slice().to_vec());
                }
                (recv, got)
            })
            .unwrap();
        // The receive is pending before anything is sent.
        wsk_executor::sleep(Duration::from_millis(20)).await;
        let sender = env
            .spawner
            .spawn(async move {
                for i in 0..ROUNDS {
                    let payload = format!("datagram {i}");
                    let (sent, _) = send.send_to(IoBuf::copy_from(payload.as_bytes()).unwrap(), peer_addr).await;
                    assert_eq!(sent, Ok(payload.len()), "send_to on the send half");
                }
                send
            })
            .unwrap();
        for _ in 0..ROUNDS {
            let (r, buf) = peer.recv_from(IoBuf::with_capacity(64).unwrap()).await;
            assert_eq!(r.expect("peer recv_from").1, addr);
            peer.send_to(buf, addr).await.0.expect("echo");
        }
        let send = timeout(PROMPT, sender).await.expect("sender finishes").unwrap();
        let (recv, got) = timeout(PROMPT, receiver).await.expect("receiver finishes").unwrap();
        let mut got: Vec<String> = got.into_iter().map(|d| String::from_utf8(d).unwrap()).collect();
        let mut want: Vec<String> = (0..ROUNDS).map(|i| format!("datagram {i}")).collect();
        // Datagrams may be reordered; none is lost on loopback.
        got.sort();
        want.sort();
        assert_eq!(got, want);
        recv.reunite(send).expect("reunite").close().await.unwrap();
        peer.close().await.unwrap();
    });
}

#[test]
fn reunited_halves_are_the_socket_again() {
    run_clean(LIMIT, |env| async move {
        let socket = UdpSocket::bind(env.wsk, local(0)).await.expect("bind");
        let mut peer = UdpSocket::bind(env.wsk, local(0)).await.expect("bind peer");
        let addr = socket.local_addr();
        let (recv, send) = socket.into_split();
        let mut socket = send.reunite(recv).expect("halves of one socket reunite");
        assert_eq!(socket.local_addr(), addr);
        peer.send_to(IoBuf::copy_from(b"ping").unwrap(), addr).await.0.unwrap();
        let (r, buf) = socket.recv_from(IoBuf::with_capacity(8).unwrap()).await;
        assert_eq!(r, Ok((4, peer.local_addr())));
        socket.send_to(buf, peer.local_addr()).await.0.unwrap();
        let (r, buf) = peer.recv_from(IoBuf::with_capacity(8).unwrap()).await;
        assert_eq!((r, buf.as_slice()), (Ok((4, addr)), &b"ping"[..]));
        socket.close().await.unwrap();
        peer.close().await.unwrap();
    });
}

#[test]
fn halves_of_different_sockets_do_not_reunite_and_come_back() {
    run_clean(LIMIT, |env| async move {
        let a = UdpSocket::bind(env.wsk, local(0)).await.expect("bind a");
        let b = UdpSocket::bind(env.wsk, local(0)).await.expect("bind b");
        let (a_addr, b_addr) = (a.local_addr(), b.local_addr());
        let (a_recv, a_send) = a.into_split();
        let (b_recv, b_send) = b.into_split();
        let error = a_recv.reunite(b_send).err().expect("mismatched halves are refused");
        assert_eq!(error.to_string(), "the halves belong to different sockets");
        let UdpReuniteError(a_recv, b_send) = error;
        assert_eq!((a_recv.local_addr(), b_send.local_addr()), (a_addr, b_addr), "handed back as given");
        let UdpReuniteError(b_recv, a_send) = a_send.reunite(b_recv).err().expect("refused from the send half too");
        assert_eq!((b_recv.local_addr(), a_send.local_addr()), (b_addr, a_addr));
        // The halves handed back make their sockets whole again.
        let mut a = a_recv.reunite(a_send).expect("a reunites");
        let mut b = b_send.reunite(b_recv).expect("b reunites");
        a.send_to(IoBuf::copy_from(b"a to b").unwrap(), b_addr).await.0.unwrap();
        let (r, _) = b.recv_from(IoBuf::with_capacity(8).unwrap()).await;
        assert_eq!(r, Ok((6, a_addr)));
        a.close().await.unwrap();
        b.close().await.unwrap();
    });
}

/// Closing the send half cancels the receive half's pending receive; the receive half's
/// later calls fail with `Closed`.
#[test]
fn closing_one_half_cancels_the_other_halfs_pending_receive() {
    run_clean(LIMIT, |env| async move {
        let socket = UdpSocket::bind(env.wsk, local(0)).await.expect("bind");
        let (mut recv, send) = socket.into_split();
        let receiver = env
            .spawner
            .spawn(async move {
                let (r, _) = recv.recv_from(IoBuf::with_capacity(8).unwrap()).await;
                (r, recv)
            })
            .unwrap();
        wsk_executor::sleep(Duration::from_millis(50)).await;
        timeout(PROMPT, send.close()).await.expect("close resolves").expect("close");
        let (r, mut recv) = timeout(PROMPT, receiver).await.expect("the receive resolves").unwrap();
        assert_eq!(r, Err(Error::Cancelled));
        assert_eq!(recv.recv_from(IoBuf::with_capacity(8).unwrap()).await.0, Err(Error::Closed));
        drop(recv);
    });
}

/// Closing the receive half closes the socket for the send half too.
#[test]
fn closing_the_receive_half_closes_the_send_half() {
    run_clean(LIMIT, |env| async move {
        let socket = UdpSocket::bind(env.wsk, local(0)).await.expect("bind");
        let (recv, mut send) = socket.into_split();
        recv.close().await.expect("close");
        let (sent, _) = send.send_to(IoBuf::copy_from(b"x").unwrap(), local(9)).await;
        assert_eq!(sent, Err(Error::Closed));
        drop(send);
    });
}

/// One half keeps the socket open; dropping the second closes it in the background.
#[test]
fn dropping_both_halves_closes_the_socket_in_the_background() {
    run_clean(LIMIT, |env| async move {
        let before = wsk::live_sockets();
        let socket = UdpSocket::bind(env.wsk, local(0)).await.expect("bind");
        let peer = std::net::UdpSocket::bind(local(0)).unwrap();
        assert_eq!(wsk::live_sockets(), before + 1);
        let (recv, mut send) = socket.into_split();
        drop(recv);
        wsk_executor::sleep(Duration::from_millis(20)).await;
        assert_eq!(wsk::live_sockets(), before + 1, "the send half keeps the socket");
        let (sent, _) = send.send_to(IoBuf::copy_from(b"still open").unwrap(), peer.local_addr().unwrap()).await;
        assert_eq!(sent, Ok(10));
        drop(send);
        let closed = timeout(PROMPT, async {
            while wsk::live_sockets() > before {
                wsk_executor::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        assert!(closed.is_ok(), "{} sockets left", wsk::live_sockets() - before);
    });
}

/// A receive half alone keeps receiving.
#[test]
fn a_receive_half_receives_after_its_send_half_is_dropped() {
    run_clean(LIMIT, |env| async move {
        let socket = UdpSocket::bind(env.wsk, local(0)).await.expect("bind");
        let addr: SocketAddr = socket.local_addr();
        let (mut recv, send): (UdpRecvHalf, _) = socket.into_split();
        drop(send);
        let peer = std::net::UdpSocket::bind(local(0)).unwrap();
        peer.send_to(b"hello", addr).unwrap();
        let (r, buf) = recv.recv_from(IoBuf::with_capacity(8).unwrap()).await;
        assert_eq!((r, buf.as_slice()), (Ok((5, peer.local_addr().unwrap())), &b"hello"[..]));
        recv.close().await.unwrap();
    });
}
