//! Waits the provider cancels on its own (`wsk_emulator::cancel_pending_receives` and
//! `cancel_pending_accepts`): a receive or an accept completes with `STATUS_CANCELLED` and
//! nothing in it, although neither the driver nor a close cancelled it, as Wine's netio does
//! when the thread that issued it exits. The library issues it again: the caller's wait goes
//! on and gets what arrives afterwards (an event stream's own copying receive too); a
//! deadline still ends it.
//!
//! The cancellation reaches every pending wait of the process, so these tests live in a test
//! binary of their own.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream as HostStream, UdpSocket as HostUdp};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use futures_lite::StreamExt;
use wsk::events::{ConnectionEvent, EventConfig};
use wsk::{Error, IoBuf, UdpSocket};
use wsk_tests::fixtures::bound_listener;
use wsk_tests::harness::run_clean;
use wsk_tests::wait_until;

const LIMIT: Duration = Duration::from_secs(60);

/// A host thread that waits until `cancel` has cancelled at least `times` waits (one at a
/// time: each after the library issued the wait again), then runs `then`. Returns how many
/// it cancelled.
fn cancel_then(times: usize, cancel: fn() -> usize, then: impl FnOnce() + Send + 'static) -> JoinHandle<usize> {
    std::thread::spawn(move || {
        let mut cancelled = 0;
        while cancelled < times {
            let once = cancel();
            if once == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
            cancelled += once;
        }
        then();
        cancelled
    })
}

/// A host peer that connects to `addr`, and when cued (a send on the returned channel) sends
/// "after the cancels", finishes sending and reads to the end.
fn peer_sending_on_cue(addr: SocketAddr) -> (std::sync::mpsc::Sender<()>, JoinHandle<()>) {
    let (go, wait) = std::sync::mpsc::channel::<()>();
    let peer = std::thread::spawn(move || {
        let mut s = HostStream::connect(addr).expect("host connect");
        wait.recv().unwrap();
        s.write_all(b"after the cancels").unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).expect("a graceful end");
    });
    (go, peer)
}

/// A receive pending on an idle connection is cancelled by the provider three times in a row;
/// the `recv` that issued it returns the bytes the peer sends afterwards, then the end.
#[test]
fn a_receive_the_provider_cancelled_waits_on() {
    let (got, cancelled) = run_clean(LIMIT, |env| async move {
        let (mut listener, addr) = bound_listener(&env).await;
        let (go, peer) = peer_sending_on_cue(addr);
        let (mut stream, _) = listener.accept().await.expect("accepted");
        let canceller = cancel_then(3, wsk_emulator::cancel_pending_receives, move || go.send(()).unwrap());
        let mut got = Vec::new();
        let mut buf = IoBuf::with_capacity(256).unwrap();
        loop {
            let (result, back) = stream.recv(buf).await;
            buf = back;
            match result.expect("a receive the provider cancelled is not an error") {
                0 => break,
                _ => got.extend_from_slice(buf.as_slice()),
            }
        }
        let cancelled = canceller.join().unwrap();
        stream.shutdown().await.expect("shutdown");
        stream.close().await.expect("close");
        listener.close().await.expect("listener close");
        peer.join().unwrap();
        (got, cancelled)
    });
    assert_eq!(got, b"after the cancels");
    assert!(cancelled >= 3, "the provider cancelled {cancelled} receives");
}

/// An accept the provider cancelled twice returns the connection that arrives afterwards.
#[test]
fn an_accept_the_provider_cancelled_waits_on() {
    let cancelled = run_clean(LIMIT, |env| async move {
        let (mut listener, addr) = bound_listener(&env).await;
        let canceller = cancel_then(2, wsk_emulator::cancel_pending_accepts, move || {
            let mut s = HostStream::connect(addr).expect("host connect");
            s.write_all(b"x").unwrap();
        });
        let (stream, _) = listener.accept().await.expect("an accept the provider cancelled is not an error");
        let cancelled = canceller.join().unwrap();
        stream.close().await.expect("close");
        listener.close().await.expect("listener close");
        cancelled
    });
    assert!(cancelled >= 2, "the provider cancelled {cancelled} accepts");
}

/// A datagram receive the provider cancelled twice returns the datagram sent afterwards.
#[test]
fn a_receive_from_the_provider_cancelled_waits_on() {
    let (got, cancelled) = run_clean(LIMIT, |env| async move {
        let mut udp = UdpSocket::bind(env.wsk, SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await.expect("bind");
        let to = udp.query_local_addr().await.expect("local address");
        let canceller = cancel_then(2, wsk_emulator::cancel_pending_receives, move || {
            let host = HostUdp::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
            host.send_to(b"one datagram", to).unwrap();
        });
        let (result, buf) = udp.recv_from(IoBuf::with_capacity(256).unwrap()).await;
        result.expect("a receive the provider cancelled is not an error");
        let cancelled = canceller.join().unwrap();
        udp.close().await.expect("close");
        (buf.as_slice().to_vec(), cancelled)
    });
    assert_eq!(got, b"one datagram");
    assert!(cancelled >= 2, "the provider cancelled {cancelled} receives");
}

/// A provider that cancels every receive as soon as it is pending does not make a timed
/// receive wait past its deadline, nor end it with `Cancelled`: it ends with `TimedOut`.
#[test]
fn a_deadline_still_ends_a_receive_the_provider_keeps_cancelling() {
    let stop = Arc::new(AtomicBool::new(false));
    let cancelled = Arc::new(AtomicUsize::new(0));
    let (s, c) = (stop.clone(), cancelled.clone());
    let canceller = std::thread::spawn(move || {
        while !s.load(Ordering::Relaxed) {
            c.fetch_add(wsk_emulator::cancel_pending_receives(), Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(1));
        }
    });
    let result = run_clean(LIMIT, |env| async move {
        let (mut listener, addr) = bound_listener(&env).await;
        let peer = HostStream::connect(addr).expect("host connect");
        let (mut stream, _) = listener.accept().await.expect("accepted");
        let (result, _) = stream.recv_timeout(IoBuf::with_capacity(64).unwrap(), Duration::from_millis(200)).await;
        drop(peer);
        stream.close().await.expect("close");
        listener.close().await.expect("listener close");
        result.map_err(|e| format!("{e:?}"))
    });
    wait_until("a receive cancelled", LIMIT, || cancelled.load(Ordering::Relaxed) > 0);
    stop.store(true, Ordering::Relaxed);
    canceller.join().unwrap();
    assert_eq!(result, Err(format!("{:?}", Error::TimedOut)));
}

/// An event stream on its copy path (receive events disabled) waits in its own copying
/// receive; the provider cancels it twice; the stream goes on and hands out the bytes the
/// peer sends afterwards, then the disconnect.
#[test]
fn an_event_streams_receive_the_provider_cancelled_waits_on() {
    let (got, cancelled) = run_clean(LIMIT, |env| async move {
        let (mut listener, addr) = bound_listener(&env).await;
        let (go, peer) = peer_sending_on_cue(addr);
        let (stream, _) = listener.accept().await.expect("accepted");
        let (mut events, mut writer) = stream.into_events(EventConfig::default()).expect("events");
        events.disable_receive().expect("receive events off: the stream copies with IRP receives");
        let canceller = cancel_then(2, wsk_emulator::cancel_pending_receives, move || go.send(()).unwrap());
        let mut got = Vec::new();
        loop {
            match events.next().await.expect("the stream ends with the disconnect") {
                Ok(ConnectionEvent::Data(data)) => {
                    let mut piece = vec![0; data.len()];
                    let n = data.copy_to_slice(&mut piece);
                    got.extend_from_slice(&piece[..n]);
                }
                Ok(ConnectionEvent::Disconnected { abortive }) => {
                    assert!(!abortive, "the peer shut down gracefully");
                    break;
                }
                Ok(ConnectionEvent::SendBacklog(_)) => {}
                Err(e) => panic!("a receive the provider cancelled is not an error: {e:?}"),
            }
        }
        let cancelled = canceller.join().unwrap();
        drop(events);
        writer.shutdown().await.expect("shutdown");
        writer.close().await.expect("close");
        listener.close().await.expect("listener close");
        peer.join().unwrap();
        (got, cancelled)
    });
    assert_eq!(got, b"after the cancels");
    assert!(cancelled >= 2, "the provider cancelled {cancelled} receives");
}
