//! The emulator's in-memory connections (addresses of `198.18.0.0/15`, see the emulator's
//! `loopback` module) with the real library and the verifier on: both receive paths echo
//! byte-exact, FIN and reset reach the peer, nobody listening is a refusal, a pending receive
//! can be cancelled.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use futures_lite::StreamExt;
use wsk::events::{ConnectionEvent, EventConfig};
use wsk::{IoBuf, SocketOption, TcpListener, TcpStream};
use wsk_tests::fixtures::pattern;
use wsk_tests::harness::run_clean;

const LIMIT: Duration = Duration::from_secs(60);

fn memory(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::new(198, 18, 0, 1), port))
}

/// Sends `payload` on `client` in pieces of `piece` bytes while reading the echo, then shuts
/// down; returns what came back.
async fn echo_through(client: TcpStream, payload: &[u8], piece: usize) -> Vec<u8> {
    let (mut reader, mut writer) = client.into_split();
    let total = payload.len();
    let back = async {
        let mut back = Vec::with_capacity(total);
        let mut buf = IoBuf::with_capacity(64 * 1024).unwrap();
        while back.len() < total {
            let (got, returned) = reader.recv(buf).await;
            buf = returned;
            assert!(got.expect("receive") > 0, "the echo ended early");
            back.extend_from_slice(buf.as_slice());
        }
        back
    };
    let send = async {
        for chunk in payload.chunks(piece) {
            let buf = IoBuf::copy_from(chunk).unwrap();
            let (sent, _) = writer.send_all(buf).await;
            sent.expect("send");
        }
    };
    let ((), back) = futures_lite::future::zip(send, back).await;
    writer.shutdown().await.expect("shutdown");
    // The peer's FIN, then a close that resets nothing.
    let (end, _) = reader.recv(IoBuf::with_capacity(16).unwrap()).await;
    assert_eq!(end.expect("the peer's FIN"), 0, "bytes after the echo");
    drop(reader);
    writer.close().await.expect("close");
    back
}

/// 1 MiB through an in-memory connection served with IRP receives comes back byte-exact, in
/// pieces larger and smaller than the pipe; the server sees the client's FIN.
#[test]
fn irp_echo_is_byte_exact() {
    let back = run_clean(LIMIT, |env| async move {
        let mut l = TcpListener::bind(env.wsk, memory(7001)).await.expect("bind in memory");
        assert_eq!(l.query_local_addr().await.expect("local address"), memory(7001));
        let payload = pattern(1 << 20, 3);
        let client = TcpStream::connect(env.wsk, memory(7001)).await.expect("connect in memory");
        let (mut server, peer) = l.accept().await.expect("accept");
        assert_eq!(peer.ip(), memory(0).ip());
        let serve = async move {
            let mut buf = IoBuf::with_capacity(64 * 1024).unwrap();
            loop {
                let (got, returned) = server.recv(buf).await;
                buf = returned;
                if got.expect("server receive") == 0 {
                    break;
                }
                let (sent, returned) = server.send_all(buf).await;
                sent.expect("server send");
                buf = returned;
            }
            server.shutdown().await.expect("server shutdown");
            server.close().await.expect("server close");
        };
        let (back, ()) = futures_lite::future::zip(echo_through(client, &payload, 300_000), serve).await;
        l.close().await.expect("listener close");
        (back, payload)
    });
    assert!(back.0 == back.1, "echoed bytes differ");
}

/// The same over receive indications, each item sent back as WSK indicated it
/// (`send_received`): byte-exact, zero-copy, every item released once.
#[test]
fn event_echo_sends_from_indications() {
    let (back, payload, zero_copy) = run_clean(LIMIT, |env| async move {
        let mut l = TcpListener::bind(env.wsk, memory(7002)).await.expect("bind in memory");
        let payload = pattern(1 << 20, 9);
        let client = TcpStream::connect(env.wsk, memory(7002)).await.expect("connect in memory");
        let (server, _) = l.accept().await.expect("accept");
        let (mut events, mut writer) = server.into_events(EventConfig::default()).expect("events");
        let serve = async move {
            let mut zero_copy = 0usize;
            while let Some(event) = events.next().await {
                match event.expect("event") {
                    ConnectionEvent::Data(data) => {
                        if data.is_zero_copy() {
                            zero_copy += data.len();
                        }
                        writer.send_received(data).await.expect("send from indication");
                    }
                    ConnectionEvent::Disconnected { abortive } => assert!(!abortive, "a reset instead of a FIN"),
                    ConnectionEvent::SendBacklog(_) => {}
                }
            }
            assert_eq!(events.retained_bytes(), 0, "every item went back to WSK");
            writer.shutdown().await.expect("server shutdown");
            drop(events);
            writer.close().await.expect("server close");
            zero_copy
        };
        let (back, zero_copy) = futures_lite::future::zip(echo_through(client, &payload, 100_000), serve).await;
        l.close().await.expect("listener close");
        (back, payload, zero_copy)
    });
    assert!(back == payload, "echoed bytes differ");
    assert_eq!(zero_copy, payload.len(), "every byte came as the provider's buffers");
}

/// Nobody listens at the address: the connect is refused at once; a listener's address
/// cannot be taken twice.
#[test]
fn refused_and_address_in_use() {
    run_clean(LIMIT, |env| async move {
        assert!(TcpStream::connect(env.wsk, memory(7003)).await.is_err(), "connected to nobody");
        let l = TcpListener::bind(env.wsk, memory(7004)).await.expect("bind in memory");
        assert!(TcpListener::bind(env.wsk, memory(7004)).await.is_err(), "the address was taken twice");
        l.close().await.expect("listener close");
        // Closed: the address is free again, and connecting to it is refused.
        assert!(TcpStream::connect(env.wsk, memory(7004)).await.is_err(), "connected to a closed listener");
        let again = TcpListener::bind(env.wsk, memory(7004)).await.expect("bind again");
        again.close().await.expect("listener close");
    });
}

/// A peer that closes without disconnecting resets the connection: the other end's pending
/// receive fails, and its send fails after it. (And options that need a host socket fail.)
#[test]
fn close_without_disconnect_resets_the_peer() {
    run_clean(LIMIT, |env| async move {
        let mut l = TcpListener::bind(env.wsk, memory(7005)).await.expect("bind in memory");
        let client = TcpStream::connect(env.wsk, memory(7005)).await.expect("connect in memory");
        let (mut server, _) = l.accept().await.expect("accept");
        // Options that reach a host socket are not emulated in memory.
        assert!(server.set_option(SocketOption::NoDelay(true)).await.is_err(), "TCP_NODELAY in memory");
        let receive = async {
            let (got, _) = server.recv(IoBuf::with_capacity(16).unwrap()).await;
            got
        };
        let close = async {
            wsk_executor::sleep(Duration::from_millis(20)).await;
            client.close().await.expect("client close");
        };
        let (got, ()) = futures_lite::future::zip(receive, close).await;
        assert!(got.is_err(), "the receive saw {got:?} instead of a reset");
        let (sent, _) = server.send_all(IoBuf::copy_from(b"late").unwrap()).await;
        assert!(sent.is_err(), "a send on a reset connection succeeded");
        server.close().await.expect("server close");
        l.close().await.expect("listener close");
    });
}

/// A receive nobody sends to is cancelled by its deadline (the cancel routine takes the queued
/// IRP); the connection carries data afterwards.
#[test]
fn a_pending_receive_is_cancelled_and_the_connection_goes_on() {
    run_clean(LIMIT, |env| async move {
        let mut l = TcpListener::bind(env.wsk, memory(7006)).await.expect("bind in memory");
        let mut client = TcpStream::connect(env.wsk, memory(7006)).await.expect("connect in memory");
        let (mut server, _) = l.accept().await.expect("accept");
        let (got, buf) = server.recv_timeout(IoBuf::with_capacity(64).unwrap(), Duration::from_millis(50)).await;
        assert!(got.is_err(), "a receive with nothing sent completed: {got:?}");
        let (sent, _) = client.send_all(IoBuf::copy_from(b"after").unwrap()).await;
        sent.expect("send after the cancel");
        let (got, buf) = server.recv(buf).await;
        assert_eq!(got.expect("receive after the cancel"), 5);
        assert_eq!(buf.as_slice(), b"after");
        client.close().await.expect("client close");
        server.close().await.expect("server close");
        l.close().await.expect("listener close");
    });
}
