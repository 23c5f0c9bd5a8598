//! WSK event callbacks through the `wsk` event streams, on the emulator's provider with the
//! verifier on: zero-copy delivery, backpressure, disconnects, accept and datagram events,
//! and the close contract with callbacks held mid-flight.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream as HostStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use futures_lite::StreamExt;
use wsk::events::{ConnectionEvent, ConnectionEvents, EventConfig};
use wsk::{IoBuf, SocketOption, TcpListener, TcpStream, TcpWriteHalf, UdpSocket};
use wsk_tests::datagrams::PacedSenders;
use wsk_tests::fixtures::{any_local, bound_listener, pattern};
use wsk_tests::harness::{Env, run_clean};

const LIMIT: Duration = Duration::from_secs(60);

/// A host client connecting from a std thread (returns its stream through the handle).
fn host_connect(addr: SocketAddr) -> std::thread::JoinHandle<HostStream> {
    std::thread::spawn(move || {
        let s = HostStream::connect(addr).expect("host connect");
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s
    })
}

/// Accepts one connection with an IRP and turns it into an event stream.
async fn accept_events(l: &mut TcpListener, config: EventConfig) -> (ConnectionEvents, TcpWriteHalf) {
    let (stream, _) = l.accept().await.expect("accept");
    stream.into_events(config).expect("enable events")
}

/// Closes `writer` in a task of its own; the flag is set when the close resolved.
fn close_in_task(env: &Env, writer: TcpWriteHalf) -> (wsk_executor::JoinHandle<()>, Arc<AtomicBool>) {
    let closed = Arc::new(AtomicBool::new(false));
    let flag = closed.clone();
    let closer = env
        .spawner
        .spawn(async move {
            writer.close().await.expect("close");
            flag.store(true, Ordering::SeqCst);
        })
        .unwrap();
    (closer, closed)
}

/// Waits (polling, async) until `flag` is set.
async fn until(flag: &AtomicBool) {
    for _ in 0..2000 {
        if flag.load(Ordering::SeqCst) {
            return;
        }
        wsk_executor::sleep(Duration::from_millis(5)).await;
    }
    panic!("condition not reached within 10 s");
}

/// `try_next_data` takes what the stream already holds, in order and without waiting, and
/// leaves the end of the stream (the peer's FIN, indicated after the data) to the stream's
/// next poll. The host writes 300,000 bytes and its FIN; the test lets them all arrive (the
/// callbacks retain them, nothing is polled) before it takes anything.
#[test]
fn try_next_data_takes_what_is_there_and_leaves_the_end_to_the_stream() {
    run_clean(LIMIT, |env| async move {
        const BYTES: usize = 300_000;
        let (mut l, addr) = bound_listener(&env).await;
        let host = std::thread::spawn(move || {
            let mut s = HostStream::connect(addr).unwrap();
            s.write_all(&pattern(BYTES, 3)).unwrap();
            s.shutdown(std::net::Shutdown::Write).unwrap();
            s
        });
        let (stream, _) = l.accept().await.expect("accept");
        let config = EventConfig { max_retained_bytes: 1 << 20, ..EventConfig::default() };
        let (mut events, writer) = stream.into_events(config).expect("enable events");
        for _ in 0..2000 {
            if events.retained_bytes() == BYTES {
                break;
            }
            wsk_executor::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(events.retained_bytes(), BYTES, "every byte indicated and retained");
        let (mut got, mut items) = (Vec::new(), 0);
        let take = |item: wsk::events::Received, got: &mut Vec<u8>| {
            let mut bytes = vec![0u8; item.len()];
            item.copy_to_slice(&mut bytes);
            got.extend_from_slice(&bytes);
        };
        match events.next().await.expect("an event").expect("no error") {
            ConnectionEvent::Data(item) => take(item, &mut got),
            other => panic!("data first, not {other:?}"),
        }
        while let Some(item) = events.try_next_data() {
            take(item, &mut got);
            items += 1;
        }
        assert!(items > 0, "the rest was there: more items");
        assert!(got == pattern(BYTES, 3), "the bytes, in order");
        assert!(events.try_next_data().is_none(), "nothing more to take");
        match events.next().await.expect("the FIN is still there").expect("no error") {
            ConnectionEvent::Disconnected { abortive } => assert!(!abortive),
            other => panic!("the FIN, not {other:?}"),
        }
        assert!(events.next().await.is_none(), "the stream ended");
        drop(events);
        writer.close().await.expect("close");
        l.close().await.expect("listener close");
        drop(host.join().unwrap());
    });
}

/// Echo over event streams: the driver's side receives with `WskReceiveEvent` (zero copy),
/// the host sends 4 MiB and reads it back.
#[test]
fn receive_events_echo_zero_copy() {
    let (zero_copy, copied) = run_clean(LIMIT, |env| async move {
        let (mut l, addr) = bound_listener(&env).await;
        let payload = pattern(4 << 20, 7);
        let expected = payload.clone();
        let host = std::thread::spawn(move || {
            let mut s = HostStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            let mut reader = s.try_clone().unwrap();
            let check = std::thread::spawn(move || {
                let mut back = vec![0u8; expected.len()];
                reader.read_exact(&mut back).unwrap();
                assert!(back == expected, "echoed bytes differ");
            });
            s.write_all(&payload).unwrap();
            check.join().unwrap();
            s.shutdown(std::net::Shutdown::Write).unwrap();
            let mut rest = Vec::new();
            s.read_to_end(&mut rest).unwrap();
            assert!(rest.is_empty());
        });
        let (mut events, mut writer) = accept_events(&mut l, EventConfig::default()).await;
        let (mut zero_copy, mut copied) = (0usize, 0usize);
        let mut out = IoBuf::with_capacity(128 * 1024).unwrap();
        while let Some(event) = events.next().await {
            match event.expect("event") {
                ConnectionEvent::Data(data) => {
                    if data.is_zero_copy() {
                        zero_copy += data.len();
                    } else {
                        copied += data.len();
                    }
                    out.clear();
                    assert_eq!(data.copy_into(&mut out), data.len());
                    drop(data);
                    let (sent, back) = writer.send_all(out).await;
                    out = back;
                    sent.expect("send");
                }
                ConnectionEvent::Disconnected { abortive } => assert!(!abortive),
                ConnectionEvent::SendBacklog(_) => {}
            }
        }
        writer.shutdown().await.expect("shutdown");
        writer.close().await.expect("close");
        l.close().await.expect("listener close");
        host.join().unwrap();
        (zero_copy, copied)
    });
    assert_eq!(zero_copy + copied, 4 << 20);
    assert!(zero_copy > 0, "no data came through retained indications");
}

/// A slow consumer holding what it received: retention stays within the bound, WSK buffers
/// the rest, the stream drains it with IRP receives, and every byte arrives in order.
#[test]
fn backpressure_keeps_order_and_bound() {
    let (held_max, copied) = run_clean(LIMIT, |env| async move {
        let (mut l, addr) = bound_listener(&env).await;
        let payload = pattern(2 << 20, 3);
        let expected = payload.clone();
        let host = std::thread::spawn(move || {
            let mut s = HostStream::connect(addr).unwrap();
            s.write_all(&payload).unwrap();
            s.shutdown(std::net::Shutdown::Write).unwrap();
            s
        });
        let config = EventConfig { max_retained_bytes: 32 * 1024, ..EventConfig::default() };
        let (mut events, writer) = accept_events(&mut l, config).await;
        let mut got = Vec::new();
        let mut held = Vec::new();
        let (mut held_max, mut copied) = (0usize, 0usize);
        while let Some(event) = events.next().await {
            if let ConnectionEvent::Data(data) = event.expect("event") {
                let mut bytes = vec![0u8; data.len()];
                assert_eq!(data.copy_to_slice(&mut bytes), data.len());
                got.extend_from_slice(&bytes);
                if !data.is_zero_copy() {
                    copied += data.len();
                }
                // Hold up to 8 items before letting go: a consumer that lags.
                held.push(data);
                if held.len() == 8 {
                    wsk_executor::sleep(Duration::from_millis(2)).await;
                    held.clear();
                }
                held_max = held_max.max(events.retained_bytes());
            }
        }
        drop(held);
        assert!(got == expected, "bytes differ or out of order ({} of {})", got.len(), expected.len());
        drop(events);
        writer.close().await.expect("close");
        l.close().await.expect("listener close");
        drop(host.join().unwrap());
        (held_max, copied)
    });
    // The bound, or one indication (at most 64 KiB from this provider) taken while nothing
    // else was held.
    assert!(held_max <= 64 * 1024, "retained {held_max} bytes: over the 32 KiB bound and more than one indication");
    assert!(copied > 0, "backpressure never engaged (no IRP-received data)");
}

/// Graceful and abortive disconnects arrive as events and end the stream.
#[test]
fn disconnect_events() {
    run_clean(LIMIT, |env| async move {
        let (mut l, addr) = bound_listener(&env).await;
        for abortive in [false, true] {
            let host = host_connect(addr);
            let (mut events, writer) = accept_events(&mut l, EventConfig::default()).await;
            let s = host.join().unwrap();
            if abortive {
                socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO)).unwrap();
            } else {
                s.shutdown(std::net::Shutdown::Write).unwrap();
            }
            drop(s);
            let mut seen = None;
            while let Some(event) = events.next().await {
                match event.expect("event") {
                    ConnectionEvent::Disconnected { abortive } => seen = Some(abortive),
                    ConnectionEvent::Data(d) => panic!("unexpected data: {d:?}"),
                    ConnectionEvent::SendBacklog(_) => {}
                }
            }
            assert_eq!(seen, Some(abortive), "disconnect event");
            drop(events);
            writer.close().await.expect("close");
        }
        l.close().await.expect("listener close");
    });
}

/// `close().await` waits for every retained indication the user still holds.
#[test]
fn close_waits_for_held_indication() {
    run_clean(LIMIT, |env| async move {
        let (mut l, addr) = bound_listener(&env).await;
        let host = host_connect(addr);
        let (mut events, writer) = accept_events(&mut l, EventConfig::default()).await;
        let mut s = host.join().unwrap();
        s.write_all(b"hold me").unwrap();
        let data = loop {
            if let ConnectionEvent::Data(d) = events.next().await.unwrap().unwrap() {
                break d;
            }
        };
        assert!(data.is_zero_copy());
        let (closer, closed) = close_in_task(&env, writer);
        // The stream ends once close begins; the held item keeps the close waiting.
        while let Some(event) = events.next().await {
            match event.expect("event") {
                ConnectionEvent::SendBacklog(_) => {}
                other => panic!("unexpected event while closing: {other:?}"),
            }
        }
        wsk_executor::sleep(Duration::from_millis(300)).await;
        assert!(!closed.load(Ordering::SeqCst), "close resolved while an indication was held");
        let mut bytes = [0u8; 7];
        data.copy_to_slice(&mut bytes);
        assert_eq!(&bytes, b"hold me");
        drop(data);
        closer.await.unwrap();
        assert!(closed.load(Ordering::SeqCst));
        drop(events);
        l.close().await.expect("listener close");
    });
}

/// A waker that holds the thread calling `wake` (an event callback, at DISPATCH_LEVEL) once
/// armed, until released: holds a callback mid-flight. It spins, as code at DISPATCH_LEVEL
/// must (sleeping there is a `BLOCKED_AT_DISPATCH_LEVEL` violation), for at most
/// [`GATE_LIMIT`], then panics.
struct Gate {
    armed: AtomicBool,
    entered: AtomicBool,
    released: AtomicBool,
    /// Sockets still allocated when the held callback was let go (the core it uses).
    live_at_release: AtomicUsize,
}

/// How long a [`Gate`] holds a callback at most.
const GATE_LIMIT: Duration = Duration::from_secs(20);

impl Gate {
    fn new() -> Arc<Gate> {
        Arc::new(Gate {
            armed: AtomicBool::new(false),
            entered: AtomicBool::new(false),
            released: AtomicBool::new(false),
            live_at_release: AtomicUsize::new(usize::MAX),
        })
    }

    fn release(&self) {
        self.released.store(true, Ordering::Release);
    }
}

impl Wake for Gate {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.armed.swap(false, Ordering::SeqCst) {
            return;
        }
        self.entered.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + GATE_LIMIT;
        let mut spins = 0u32;
        while !self.released.load(Ordering::Acquire) {
            assert!(Instant::now() < deadline, "the gate held a callback for {GATE_LIMIT:?} without being released");
            // Spin, then yield the processor between looks (a yield does not sleep).
            spins += 1;
            if spins < 64 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        self.live_at_release.store(wsk::live_sockets(), Ordering::SeqCst);
    }
}

/// Registers `gate` as the stream's waker (one poll) after the send-backlog event arrived.
async fn register_gate(events: &mut ConnectionEvents, gate: &Arc<Gate>) {
    match events.next().await.unwrap().unwrap() {
        ConnectionEvent::SendBacklog(_) => {}
        other => panic!("unexpected event {other:?}"),
    }
    let waker = Waker::from(gate.clone());
    let mut cx = Context::from_waker(&waker);
    assert!(matches!(std::pin::Pin::new(&mut *events).poll_next(&mut cx), Poll::Pending));
}

/// A disconnect callback held mid-flight when close is issued: the provider must not
/// complete the close before the callback returns, and the socket's memory the callback
/// uses is still there when it is let go.
#[test]
fn close_waits_for_disconnect_callback_in_flight() {
    run_clean(LIMIT, |env| async move {
        let (mut l, addr) = bound_listener(&env).await;
        let host = host_connect(addr);
        let (mut events, writer) = accept_events(&mut l, EventConfig::default()).await;
        let s = host.join().unwrap();
        let gate = Gate::new();
        register_gate(&mut events, &gate).await;
        // The stream goes (no callback inside: it cleans up at once); the registered waker
        // stays with the socket's event state and is what the next callback wakes.
        drop(events);
        gate.armed.store(true, Ordering::SeqCst);
        s.shutdown(std::net::Shutdown::Write).unwrap();
        until(&gate.entered).await;
        let (closer, closed) = close_in_task(&env, writer);
        wsk_executor::sleep(Duration::from_millis(300)).await;
        assert!(!closed.load(Ordering::SeqCst), "close completed while a callback was in flight");
        gate.release();
        closer.await.unwrap();
        assert!(closed.load(Ordering::SeqCst));
        assert!(gate.live_at_release.load(Ordering::SeqCst) >= 2, "socket memory freed under the callback");
        drop(s);
        l.close().await.expect("listener close");
    });
}

/// A receive callback held mid-flight (it retained data and is waking the stream) while
/// the stream is dropped and close is issued: the callback takes over the stream's
/// clean-up (it releases what it retained), and close waits for it.
#[test]
fn close_waits_for_receive_callback_in_flight() {
    run_clean(LIMIT, |env| async move {
        let (mut l, addr) = bound_listener(&env).await;
        let host = host_connect(addr);
        let (mut events, writer) = accept_events(&mut l, EventConfig::default()).await;
        let mut s = host.join().unwrap();
        let gate = Gate::new();
        register_gate(&mut events, &gate).await;
        gate.armed.store(true, Ordering::SeqCst);
        s.write_all(b"in flight").unwrap();
        until(&gate.entered).await;
        // Dropped while the callback is inside: the callback cleans up when it leaves.
        drop(events);
        let (closer, closed) = close_in_task(&env, writer);
        wsk_executor::sleep(Duration::from_millis(300)).await;
        assert!(!closed.load(Ordering::SeqCst), "close resolved while a callback was in flight");
        gate.release();
        closer.await.unwrap();
        assert!(gate.live_at_release.load(Ordering::SeqCst) >= 2, "socket memory freed under the callback");
        drop(s);
        l.close().await.expect("listener close");
    });
}

/// Disabling the receive callback switches the stream to IRP receives (copies); enabling
/// it again brings zero copy back.
#[test]
fn disable_and_enable_receive() {
    run_clean(LIMIT, |env| async move {
        let (mut l, addr) = bound_listener(&env).await;
        let host = host_connect(addr);
        let (mut events, writer) = accept_events(&mut l, EventConfig::default()).await;
        let mut s = host.join().unwrap();
        let next_data = async |events: &mut ConnectionEvents| loop {
            if let ConnectionEvent::Data(d) = events.next().await.unwrap().unwrap() {
                return d;
            }
        };
        s.write_all(b"one").unwrap();
        assert!(next_data(&mut events).await.is_zero_copy());
        events.disable_receive().expect("disable");
        s.write_all(b"two").unwrap();
        let d = next_data(&mut events).await;
        assert!(!d.is_zero_copy(), "data after disable came through a callback");
        let mut b = [0u8; 3];
        d.copy_to_slice(&mut b);
        assert_eq!(&b, b"two");
        drop(d);
        events.enable_receive().expect("enable");
        s.write_all(b"three").unwrap();
        // A receive IRP may be pending from before the enable; it takes precedence once.
        let mut got = Vec::new();
        while got.len() < 5 {
            let d = next_data(&mut events).await;
            let mut b = vec![0u8; d.len()];
            d.copy_to_slice(&mut b);
            got.extend_from_slice(&b);
        }
        assert_eq!(got, b"three");
        // Past that, data comes through the callback again.
        s.write_all(b"four").unwrap();
        let d = next_data(&mut events).await;
        assert!(d.is_zero_copy(), "data after enabling again did not come through a callback");
        drop(d);
        drop(events);
        writer.close().await.expect("close");
        drop(s);
        l.close().await.expect("listener close");
    });
}

/// Accept events: connections come as streams; with a backlog of 2 and a stream that does
/// not poll, further connections are refused (and closed by WSK, not leaked).
#[test]
fn incoming_connections_and_refusal() {
    let refused = run_clean(LIMIT, |env| async move {
        let (l, addr) = bound_listener(&env).await;
        let config = EventConfig { accept_backlog: 2, ..EventConfig::default() };
        let mut incoming = l.into_incoming(config).expect("accept events");
        let hosts: Vec<_> = (0..6).map(|_| host_connect(addr)).collect();
        let hosts: Vec<HostStream> = hosts.into_iter().map(|h| h.join().unwrap()).collect();
        // Let the callbacks run without the stream restocking.
        wsk_executor::sleep(Duration::from_millis(300)).await;
        let mut served = 0;
        for _ in 0..2 {
            let (mut stream, peer) = incoming.next().await.unwrap().expect("accepted");
            assert!(peer.ip().is_loopback());
            let (sent, _) = stream.send_all(IoBuf::copy_from(b"hi").unwrap()).await;
            sent.expect("send");
            stream.close().await.expect("close");
            served += 1;
        }
        let refused = incoming.refused();
        incoming.close().await.expect("listener close");
        drop(hosts);
        assert_eq!(served, 2);
        refused
    });
    assert!(refused >= 1, "no connection was refused with a backlog of 2 and 6 clients");
}

/// Datagram events: batches held without copying, then released; with a small bound the
/// callback refuses and the stream re-enables it; every datagram arrives.
#[test]
fn datagram_events() {
    run_clean(LIMIT, |env| async move {
        let socket = UdpSocket::bind(env.wsk, any_local()).await.expect("bind");
        let mut socket = socket;
        let addr = socket.query_local_addr().await.expect("address");
        let config = EventConfig { max_retained_bytes: 8 * 1024, ..EventConfig::default() };
        let mut datagrams = socket.datagrams(config).expect("events");
        // At most 64 datagrams in flight, so that UDP on a loaded machine drops none.
        let sender = PacedSenders::start(addr, 1, 200, 64, |i| {
            let mut d = pattern(1000, i as u8);
            d[..4].copy_from_slice(&i.to_le_bytes());
            d
        });
        let mut seen = [false; 200];
        let mut count = 0;
        let mut held = Vec::new();
        while count < 200 {
            let batch = match wsk_executor::timeout(Duration::from_secs(5), datagrams.next()).await {
                Ok(b) => b.unwrap().expect("batch"),
                Err(_) => panic!(
                    "no datagram batch within 5 s: {count} of 200 received, {} bytes retained, {} batches held",
                    datagrams.retained_bytes(),
                    held.len()
                ),
            };
            for d in batch.iter() {
                let mut bytes = vec![0u8; d.len()];
                assert_eq!(d.copy_to_slice(&mut bytes), 1000);
                let i = u32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize;
                assert_eq!(&bytes[4..], &pattern(1000, i as u8)[4..]);
                assert!(!seen[i], "datagram {i} twice");
                seen[i] = true;
                count += 1;
                assert!(d.remote_addr().is_some());
            }
            sender.received(batch.len());
            held.push(batch);
            if held.len() == 4 {
                wsk_executor::sleep(Duration::from_millis(5)).await;
                held.clear();
            }
            // The 8 KiB bound, or one list taken alone (at most 16 datagrams of 1000 bytes from
            // this provider), whichever is larger.
            assert!(datagrams.retained_bytes() <= 16 * 1000);
        }
        drop(held);
        let from = sender.join();
        assert!(from[0].ip().is_loopback());
        drop(datagrams);
        socket.close().await.expect("close");
    });
}

/// The next batch of `datagrams`, within 5 s.
async fn next_batch(datagrams: &mut wsk::events::Datagrams) -> wsk::events::DatagramBatch {
    wsk_executor::timeout(Duration::from_secs(5), datagrams.next())
        .await
        .expect("a datagram batch within 5 s")
        .expect("stream open")
        .expect("batch")
}

/// The copy path (`WskReceiveFrom` into a fallback buffer, taken while the consumer holds
/// retained datagrams and the callback refused more) reports truncation: a 2,000-byte datagram
/// into the 500-byte fallback buffer is truncated to its first 500 bytes; a 500-byte one is
/// whole. Indicated datagrams are never truncated. With `IP_PKTINFO` on, indicated and copied
/// datagrams alike carry their packet information.
#[test]
fn datagram_copy_path_reports_truncation() {
    run_clean(LIMIT, |env| async move {
        let mut socket = UdpSocket::bind(env.wsk, any_local()).await.expect("bind");
        let addr = socket.query_local_addr().await.expect("address");
        socket.set_option(SocketOption::PacketInfo(true)).await.expect("IP_PKTINFO");
        let packet_info = |view: &wsk::events::DatagramView<'_>| {
            let info = view.control_messages().find_map(|message| message.packet_info());
            info.map(|info| info.destination)
        };
        let config = EventConfig { max_retained_bytes: 1000, fallback_receive_size: 500, ..EventConfig::default() };
        let mut datagrams = socket.datagrams(config).expect("events");
        let peer = std::net::UdpSocket::bind(any_local()).unwrap();
        // Retained (zero copy, whole) and held: the next ones are over the 1,000-byte bound.
        peer.send_to(&pattern(800, 1), addr).unwrap();
        let held = next_batch(&mut datagrams).await;
        assert!(held.is_zero_copy());
        {
            let view = held.iter().next().unwrap();
            assert!(!view.is_truncated(), "an indicated datagram is whole");
            assert_eq!(view.len(), 800);
            assert_eq!(packet_info(&view), Some(addr.ip()), "the indication's control information");
        }
        let big = pattern(2000, 2);
        let exact = pattern(500, 3);
        peer.send_to(&big, addr).unwrap();
        peer.send_to(&exact, addr).unwrap();
        let mut got = Vec::new();
        while got.len() < 2 {
            let batch = next_batch(&mut datagrams).await;
            for view in batch.iter() {
                let mut bytes = vec![0u8; view.len()];
                view.copy_to_slice(&mut bytes);
                got.push((batch.is_zero_copy(), view.is_truncated(), bytes));
                assert_eq!(packet_info(&view), Some(addr.ip()), "indicated or copied, with its control information");
                assert!(!view.control_truncated());
            }
        }
        let (zero_copy, truncated, bytes) = &got[0];
        assert!(!zero_copy, "refused over the bound while one is held: copied");
        assert!(truncated, "2,000 bytes into the 500-byte fallback buffer");
        assert_eq!(bytes[..], big[..500]);
        let (_, truncated, bytes) = &got[1];
        assert!(!truncated, "500 bytes fit (copied or, once resumed, indicated)");
        assert_eq!(bytes, &exact);
        drop(held);
        drop(datagrams);
        socket.close().await.expect("close");
    });
}

/// A stream can be built from a connected client too (`WskSocketConnect` path).
#[test]
fn client_connection_events() {
    run_clean(LIMIT, |env| async move {
        let host = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let addr = host.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = host.accept().unwrap();
            s.write_all(&pattern(100_000, 9)).unwrap();
        });
        let stream = TcpStream::connect(env.wsk, addr).await.expect("connect");
        let (mut events, writer) = stream.into_events(EventConfig::default()).expect("events");
        let mut got = Vec::new();
        while let Some(event) = events.next().await {
            if let ConnectionEvent::Data(d) = event.unwrap() {
                let mut b = vec![0u8; d.len()];
                d.copy_to_slice(&mut b);
                got.extend_from_slice(&b);
            }
        }
        assert!(got == pattern(100_000, 9));
        server.join().unwrap();
        drop(events);
        writer.close().await.expect("close");
    });
}
