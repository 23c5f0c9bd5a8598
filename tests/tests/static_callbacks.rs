//! Static event callbacks (`WskControlClient` with `WSK_SET_STATIC_EVENT_CALLBACKS`) and the
//! transport list (`WSK_TRANSPORT_LIST_QUERY`), through the `wsk` library on the emulator's
//! provider with the verifier on: the event streams work on sockets whose callbacks are on
//! from creation, lose nothing indicated before they existed, and never try to enable (or
//! disable) a static callback, which the provider refuses.
//!
//! Each test registers a client of its own (static callbacks are set per client, before its
//! first socket) and closes everything before deregistering it.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream as HostStream};
use std::time::Duration;

use futures_lite::StreamExt;
use wsk::events::{ConnectionEvent, ConnectionEvents, EventConfig};
use wsk::{Error, StaticEvents, TcpListener, TcpStream, Transport, UdpSocket, Wsk};
use wsk_sys::{AF_INET, AF_INET6, IPPROTO_TCP, IPPROTO_UDP, SOCK_DGRAM, SOCK_STREAM};
use wsk_tests::datagrams::PacedSenders;
use wsk_tests::fixtures::{any_local, pattern};
use wsk_tests::harness::run_clean;

const LIMIT: Duration = Duration::from_secs(60);

/// A client of its own with `events` as its static event callbacks.
fn client_with(events: StaticEvents) -> Wsk {
    let mut wsk = Wsk::register(Duration::from_secs(1)).expect("register");
    wsk.set_static_event_callbacks(events).expect("static event callbacks");
    assert_eq!(wsk.static_event_callbacks(), events);
    wsk
}

/// Reads `events` to its end: the bytes, how many came zero-copy, and whether it ended with a
/// graceful disconnect.
async fn drain(events: &mut ConnectionEvents) -> (Vec<u8>, usize, bool) {
    let (mut bytes, mut zero_copy, mut graceful) = (Vec::new(), 0, false);
    loop {
        let event = match wsk_executor::timeout(Duration::from_secs(10), events.next()).await {
            Ok(Some(event)) => event.expect("event"),
            Ok(None) => break,
            Err(_) => panic!("no event within 10 s after {} bytes", bytes.len()),
        };
        match event {
            ConnectionEvent::Data(data) => {
                let at = bytes.len();
                bytes.resize(at + data.len(), 0);
                assert_eq!(data.copy_to_slice(&mut bytes[at..]), data.len());
                if data.is_zero_copy() {
                    zero_copy += data.len();
                }
            }
            ConnectionEvent::Disconnected { abortive } => graceful = !abortive,
            ConnectionEvent::SendBacklog(_) => {}
        }
    }
    (bytes, zero_copy, graceful)
}

/// Every callback static: the listener's stream is installed before its bind, the accepted
/// connection's receive callback is on from acceptance and refuses the 256 KiB the peer sent
/// before the stream existed; the stream, created afterwards, resumes the indications and
/// gets every byte, in order, zero-copy, then the disconnect. `disable_receive` is refused
/// (a static callback cannot be disabled).
#[test]
fn data_indicated_before_the_stream_reaches_it() {
    let (bytes, zero_copy, graceful) = run_clean(LIMIT, |_env| async move {
        let wsk = client_with(StaticEvents::ALL);
        let (mut incoming, addr) =
            TcpListener::bind_incoming(&wsk, any_local(), EventConfig::default()).await.expect("bind incoming");
        let payload = pattern(256 * 1024, 3);
        let (sent_tx, sent_rx) = std::sync::mpsc::channel();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let host = std::thread::spawn(move || {
            let mut s = HostStream::connect(addr).expect("connect");
            s.write_all(&payload).unwrap();
            sent_tx.send(()).unwrap();
            go_rx.recv().unwrap();
            s.shutdown(Shutdown::Write).unwrap();
            let mut rest = Vec::new();
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            let _ = s.read_to_end(&mut rest);
        });
        let (stream, _) = incoming.next().await.expect("a connection").expect("accepted");
        // The peer's data is there (refused by the callback, kept by WSK) before the stream.
        while sent_rx.try_recv().is_err() {
            wsk_executor::sleep(Duration::from_millis(5)).await;
        }
        wsk_executor::sleep(Duration::from_millis(200)).await;
        let (mut events, writer) = stream.into_events(EventConfig::default()).expect("events");
        assert!(matches!(events.disable_receive(), Err(Error::InvalidInput(_))));
        go_tx.send(()).unwrap();
        let out = drain(&mut events).await;
        drop(events);
        writer.close().await.expect("close");
        incoming.close().await.expect("listener close");
        host.join().unwrap();
        drop(wsk);
        out
    });
    assert!(bytes == pattern(256 * 1024, 3), "bytes lost or out of order ({} received)", bytes.len());
    assert!(zero_copy > 0, "nothing came through retained indications");
    assert!(graceful, "the stream did not end with a graceful disconnect");
}

/// A host peer sends `payload` and disconnects (write side) before the stream exists, on a
/// client with every static callback; returns what the stream received and whether it ended
/// with a graceful disconnect.
fn host_finishes_before_the_stream(payload: Vec<u8>) -> (Vec<u8>, bool) {
    run_clean(LIMIT, |_env| async move {
        let wsk = client_with(StaticEvents::ALL);
        let host_listener = std::net::TcpListener::bind(any_local()).unwrap();
        let host_addr = host_listener.local_addr().unwrap();
        let host = std::thread::spawn(move || {
            let (mut s, _) = host_listener.accept().unwrap();
            s.write_all(&payload).unwrap();
            s.shutdown(Shutdown::Write).unwrap();
            let mut rest = Vec::new();
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            let _ = s.read_to_end(&mut rest);
        });
        let stream = TcpStream::connect(&wsk, host_addr).await.expect("connect");
        wsk_executor::sleep(Duration::from_millis(300)).await;
        let (mut events, writer) = stream.into_events(EventConfig::default()).expect("events");
        let (bytes, _, graceful) = drain(&mut events).await;
        drop(events);
        writer.close().await.expect("close");
        host.join().unwrap();
        drop(wsk);
        (bytes, graceful)
    })
}

/// The peer sends and disconnects before the stream exists: the stream gets the data WSK
/// kept, then the disconnect.
#[test]
fn data_and_disconnect_before_the_stream() {
    let (bytes, graceful) = host_finishes_before_the_stream(pattern(100 * 1000, 9));
    assert!(bytes == pattern(100 * 1000, 9), "bytes lost or out of order ({} received)", bytes.len());
    assert!(graceful, "the early disconnect was not reported");
}

/// The peer disconnects, sending nothing, before the stream exists: the static disconnect
/// callback found no stream and recorded the disconnect in the core, where the stream, once
/// created, finds it (WSK indicates a disconnect once).
#[test]
fn a_disconnect_before_the_stream_is_reported() {
    let (bytes, graceful) = host_finishes_before_the_stream(Vec::new());
    assert!(bytes.is_empty());
    assert!(graceful, "the early disconnect was not reported");
}

/// Static receive callbacks only: the connection's disconnect and send-backlog callbacks are
/// enabled by the stream as usual, the receive one is not (the provider would refuse it).
#[test]
fn a_stream_enables_only_the_callbacks_that_are_not_static() {
    let bytes = run_clean(LIMIT, |_env| async move {
        let wsk = client_with(StaticEvents::RECEIVE);
        let mut listener = TcpListener::bind(&wsk, any_local()).await.expect("bind");
        let addr = listener.query_local_addr().await.expect("address");
        let host = std::thread::spawn(move || {
            let mut s = HostStream::connect(addr).unwrap();
            s.write_all(&pattern(10_000, 1)).unwrap();
            s.shutdown(Shutdown::Write).unwrap();
            let mut rest = Vec::new();
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            let _ = s.read_to_end(&mut rest);
        });
        let (stream, _) = listener.accept().await.expect("accept");
        let (mut events, writer) = stream.into_events(EventConfig::default()).expect("events");
        let (bytes, _, graceful) = drain(&mut events).await;
        assert!(graceful);
        drop(events);
        writer.close().await.expect("close");
        listener.close().await.expect("listener close");
        host.join().unwrap();
        drop(wsk);
        bytes
    });
    assert!(bytes == pattern(10_000, 1));
}

/// A static receive-from callback: the stream is installed before the bind, and every
/// datagram of 200 arrives (at most 4 in flight, fewer than the stream's 8 ring slots: the ring
/// never fills, nothing is refused; with 16 in flight a datagram was now and then lost).
/// On the default provider, whose receive-from callbacks of one socket do not overlap: with
/// overlapping ones (the adversarial mode) a callback that finds the ring claimed refuses,
/// and a static callback's refusal loses datagrams (see `wsk::client_control`).
#[test]
fn datagrams_through_a_static_receive_from_callback() {
    let count = run_clean(LIMIT, |_env| async move {
        let wsk = client_with(StaticEvents::RECEIVE_FROM);
        let (mut socket, mut datagrams) =
            UdpSocket::bind_with_datagrams(&wsk, any_local(), EventConfig::default()).await.expect("bind");
        let addr = socket.query_local_addr().await.expect("address");
        let sender = PacedSenders::start(addr, 1, 200, 4, |i| {
            let mut d = pattern(500, i as u8);
            d[..4].copy_from_slice(&i.to_le_bytes());
            d
        });
        let mut seen = [false; 200];
        let mut count = 0;
        while count < 200 {
            let batch = match wsk_executor::timeout(Duration::from_secs(5), datagrams.next()).await {
                Ok(b) => b.unwrap().expect("batch"),
                Err(_) => panic!("no datagram within 5 s: {count} of 200 received"),
            };
            for d in batch.iter() {
                let mut bytes = vec![0u8; d.len()];
                assert_eq!(d.copy_to_slice(&mut bytes), 500);
                let i = u32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize;
                assert!(!seen[i], "datagram {i} twice");
                seen[i] = true;
                count += 1;
            }
            sender.received(batch.len());
        }
        sender.join();
        drop(datagrams);
        socket.close().await.expect("close");
        drop(wsk);
        count
    });
    assert_eq!(count, 200);
}

/// A static receive-from callback that refuses a datagram (past the retention bound) stays
/// enabled, and WSK does not offer the refused datagram again: the stream goes on with the
/// next one without enabling the callback (which the provider would refuse).
#[test]
fn a_refused_datagram_does_not_stop_a_static_callback() {
    let tags = run_clean(LIMIT, |_env| async move {
        let wsk = client_with(StaticEvents::RECEIVE_FROM);
        let config = EventConfig { max_retained_bytes: 1000, ..EventConfig::default() };
        let (mut socket, mut datagrams) =
            UdpSocket::bind_with_datagrams(&wsk, any_local(), config).await.expect("bind");
        let addr = socket.query_local_addr().await.expect("address");
        let host = std::net::UdpSocket::bind(any_local()).unwrap();
        let mut tags = Vec::new();
        let next_tag = async |datagrams: &mut wsk::events::Datagrams| {
            let batch = wsk_executor::timeout(Duration::from_secs(5), datagrams.next())
                .await
                .expect("a datagram within 5 s")
                .unwrap()
                .expect("batch");
            let mut first = [0u8; 1];
            batch.iter().next().expect("one datagram").copy_to_slice(&mut first);
            (first[0], batch)
        };
        host.send_to(&[1u8; 800], addr).unwrap();
        let (tag, held) = next_tag(&mut datagrams).await;
        tags.push(tag);
        // Held: 800 of the 1000 bytes; the next 800 are refused, and dropped.
        host.send_to(&[2u8; 800], addr).unwrap();
        wsk_executor::sleep(Duration::from_millis(200)).await;
        drop(held);
        // The stream meets the refusal: nothing to resume (a stream that enabled the callback
        // again would end here with the provider's refusal), and nothing comes.
        let quiet = wsk_executor::timeout(Duration::from_millis(100), datagrams.next()).await;
        assert!(quiet.is_err(), "the stream yielded {:?}", quiet.map(|b| b.map(|b| b.map(|b| b.len()))));
        host.send_to(&[3u8; 800], addr).unwrap();
        let (tag, batch) = next_tag(&mut datagrams).await;
        tags.push(tag);
        drop(batch);
        drop(datagrams);
        socket.close().await.expect("close");
        drop(wsk);
        tags
    });
    assert_eq!(tags, [1, 3]);
}

/// Microsoft: a client "must" set static callbacks "before it creates any sockets": the
/// provider refuses them afterwards, and the library refuses a second set and an empty one.
#[test]
fn static_callbacks_after_a_socket_are_refused() {
    run_clean(LIMIT, |_env| async move {
        let mut wsk = Wsk::register(Duration::from_secs(1)).expect("register");
        assert!(matches!(wsk.set_static_event_callbacks(StaticEvents::default()), Err(Error::InvalidInput(_))));
        let socket = UdpSocket::bind(&wsk, any_local()).await.expect("bind");
        let refused = wsk.set_static_event_callbacks(StaticEvents::RECEIVE_FROM);
        assert_eq!(refused.unwrap_err(), Error::Status(wsk_sys::STATUS_INVALID_DEVICE_STATE));
        assert_eq!(wsk.static_event_callbacks(), StaticEvents::default());
        // Callbacks enabled as usual, the socket created before works.
        let datagrams = socket.datagrams(EventConfig::default()).expect("events");
        drop(datagrams);
        socket.close().await.expect("close");
        drop(wsk);

        let mut wsk = client_with(StaticEvents::ACCEPT);
        assert!(matches!(wsk.set_static_event_callbacks(StaticEvents::RECEIVE), Err(Error::InvalidInput(_))));
        drop(wsk);
    });
}

/// `WSK_TRANSPORT_LIST_QUERY`: TCP and UDP over IPv4 and IPv6; a buffer too small is told so.
#[test]
fn the_transport_list() {
    let transports = run_clean(LIMIT, |env| async move {
        let count = env.wsk.transport_count().expect("count");
        assert_eq!(count, 4);
        let mut small = [Transport::EMPTY; 2];
        assert_eq!(env.wsk.transports(&mut small).unwrap_err(), Error::Status(wsk_sys::STATUS_BUFFER_OVERFLOW));
        let mut all = [Transport::EMPTY; 6];
        let n = env.wsk.transports(&mut all).expect("transports");
        all[..n].iter().map(|t| (t.socket_type(), t.protocol(), t.address_family())).collect::<Vec<_>>()
    });
    let mut expected = vec![
        (SOCK_STREAM, IPPROTO_TCP, AF_INET),
        (SOCK_STREAM, IPPROTO_TCP, AF_INET6),
        (SOCK_DGRAM, IPPROTO_UDP, AF_INET),
        (SOCK_DGRAM, IPPROTO_UDP, AF_INET6),
    ];
    let mut got = transports;
    got.sort();
    expected.sort();
    assert_eq!(got, expected);
}
