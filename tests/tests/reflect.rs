//! Reflection ([`EventConfig::reflect`]) on the emulator's provider with the verifier on: a
//! connection's receive callback sends what it receives straight back, without the task.
//!
//! * Ping-pong rounds are all reflected once the stream waits for data: no item reaches the
//!   task, the task is not even polled (the callback does not wake it), every byte comes
//!   back, and nothing is allocated per round.
//! * A stream dropped while a reflection waits on a peer that does not read cancels it: the
//!   socket's close completes, the list goes back to WSK (the verifier checks it), nothing
//!   leaks.
//!
//! Order under the adversary (short sends, random shapes, moved completions) is tested in
//! `chaos.rs`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream as HostStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_lite::StreamExt;
use wsk::events::{ConnectionEvent, ConnectionEvents, EventConfig};
use wsk::{SocketOption, TcpListener, TcpWriteHalf};
use wsk_tests::fixtures::{bound_listener, pattern};
use wsk_tests::harness::run_clean;

const LIMIT: Duration = Duration::from_secs(60);

/// The default configuration with reflection on.
async fn accept_reflecting(l: &mut TcpListener) -> (ConnectionEvents, TcpWriteHalf) {
    let (stream, _) = l.accept().await.expect("accept");
    stream.into_events(EventConfig { reflect: true, ..EventConfig::default() }).expect("enable events")
}

/// What the host peer saw of a measured phase: the emulator's counters, the items the task
/// had received and the times the task was polled, when the warm-up's echoes were back and
/// when the last one was.
struct Phase {
    before: (wsk_emulator::Counters, usize, usize),
    after: (wsk_emulator::Counters, usize, usize),
}

/// A host peer that writes [`WARM_UP`] + [`ROUNDS`] messages of `size` bytes and reads each
/// one back before the next, checking the bytes; it snapshots the counters, `items` and
/// `polls` after the warm-up and at the end.
fn ping_pong(
    addr: SocketAddr,
    size: usize,
    items: Arc<AtomicUsize>,
    polls: Arc<AtomicUsize>,
) -> std::thread::JoinHandle<Phase> {
    std::thread::spawn(move || {
        let mut s = HostStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut back = vec![0u8; size];
        let snapshot = || (wsk_emulator::counters(), items.load(Ordering::SeqCst), polls.load(Ordering::SeqCst));
        let mut before = None;
        for round in 0..WARM_UP + ROUNDS {
            if round == WARM_UP {
                before = Some(snapshot());
            }
            let message = pattern(size, round as u8);
            s.write_all(&message).unwrap();
            s.read_exact(&mut back).unwrap();
            assert!(back == message, "round {round} came back different");
        }
        let after = snapshot();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        Phase { before: before.expect("rounds after the warm-up"), after }
    })
}

/// Rounds before the measured ones: the first message may reach the stream before it waits
/// for data (then the task sends it), and the first reflection fills the reflector cache.
const WARM_UP: usize = 20;
const ROUNDS: usize = 200;

/// Ping-pong of 1,500-byte messages (one indication) and of 40,000-byte ones (several
/// indications: one send over the reflector's shadow MDLs): after the warm-up, every byte
/// comes back without any item reaching the task, the task's loop is not polled once (the
/// receive callback does not wake a task that waits for data), and the emulator records no
/// allocation of any kind (pool, IRP, MDL, work item) in the measured rounds. Without
/// reflection each round is an item (the task's send); with the callback's wake, a poll.
#[test]
fn reflected_ping_pong_reaches_no_task_and_allocates_nothing() {
    for size in [1500usize, 40_000] {
        let (phase, reflected) = run_clean(LIMIT, move |env| async move {
            let (mut l, addr) = bound_listener(&env).await;
            let items = Arc::new(AtomicUsize::new(0));
            let polls = Arc::new(AtomicUsize::new(0));
            let host = ping_pong(addr, size, items.clone(), polls.clone());
            let (mut events, mut writer) = accept_reflecting(&mut l).await;
            // The task's part: items that reach it go back with `send_received`, until the
            // peer's end; each poll of this loop is counted.
            {
                let mut serve = std::pin::pin!(async {
                    while let Some(event) = events.next().await {
                        match event.expect("event") {
                            ConnectionEvent::Data(data) => {
                                items.fetch_add(1, Ordering::SeqCst);
                                writer.send_received(data).await.expect("send");
                                writer.release_slot();
                            }
                            ConnectionEvent::Disconnected { abortive } => {
                                assert!(!abortive, "a graceful end");
                                break;
                            }
                            ConnectionEvent::SendBacklog(_) => {}
                        }
                    }
                });
                std::future::poll_fn(|cx| {
                    polls.fetch_add(1, Ordering::SeqCst);
                    serve.as_mut().poll(cx)
                })
                .await;
            }
            let phase = host.join().unwrap();
            let reflected = events.reflected_bytes();
            drop(events);
            writer.close().await.expect("close");
            l.close().await.expect("listener close");
            (phase, reflected)
        });
        let items = phase.after.1 - phase.before.1;
        let polls = phase.after.2 - phase.before.2;
        let allocations = phase.after.0.allocations() - phase.before.0.allocations();
        assert_eq!(items, 0, "{size} bytes: items reached the task after the warm-up");
        assert_eq!(polls, 0, "{size} bytes: the task was polled during reflected rounds");
        assert!(
            reflected >= (ROUNDS * size) as u64,
            "{size} bytes: {reflected} bytes reflected, fewer than the measured rounds'"
        );
        assert_eq!(allocations, 0, "{size} bytes: allocations during reflected rounds");
    }
}

/// A peer that sends and never reads, with a tiny receive window, against a small send
/// buffer: the first reflection that does not fit waits on the peer for good. Dropping the
/// stream then cancels it: the list goes back to WSK, and the socket's close (which waits for
/// every list to be released) completes. Without the cancel the close would wait for the peer
/// forever.
#[test]
fn dropping_the_stream_cancels_a_reflection_that_waits_on_the_peer() {
    run_clean(LIMIT, |env| async move {
        let (mut l, addr) = bound_listener(&env).await;
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let host = std::thread::spawn(move || {
            let peer = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            peer.set_recv_buffer_size(1).unwrap();
            peer.connect(&addr.into()).unwrap();
            let mut s: HostStream = peer.into();
            // Small echoes first, until the task says one was reflected (the first only fills
            // the library's cache of reflectors).
            let mut back = [0u8; 100];
            while go_rx.try_recv().is_err() {
                s.write_all(&[5; 100]).unwrap();
                s.read_exact(&mut back).unwrap();
                assert_eq!(back, [5; 100]);
            }
            s.write_all(&pattern(256 * 1024, 7)).unwrap();
            // Held open, unread, until the test is done with it.
            let _ = stop_rx.recv_timeout(LIMIT);
        });
        let (mut events, mut writer) = accept_reflecting(&mut l).await;
        writer.set_option(SocketOption::SendBufferSize(4096)).await.expect("SO_SNDBUF");
        writer.release_slot();
        // Echo what reaches the task, and let the stream wait for data, until a message was
        // reflected; then the peer writes its big message.
        let nap = |ms| async move {
            wsk_executor::sleep(Duration::from_millis(ms)).await;
            None
        };
        while events.reflected_bytes() == 0 {
            match futures_lite::future::or(async { Some(events.next().await) }, nap(20)).await {
                None | Some(Some(Ok(ConnectionEvent::SendBacklog(_)))) => {}
                Some(Some(Ok(ConnectionEvent::Data(data)))) => {
                    writer.send_received(data).await.expect("echo");
                    writer.release_slot();
                }
                Some(other) => panic!("before the peer wrote: {other:?}"),
            }
        }
        go_tx.send(()).unwrap();
        // The stream waits for data again (reflections start only then).
        assert!(futures_lite::future::or(async { Some(events.next().await) }, nap(20)).await.is_none());
        let mut waited = 0;
        while !events.reflection_in_flight() {
            assert!(
                waited < 20_000,
                "no reflection came to wait on the peer ({} reflected, {} retained)",
                events.reflected_bytes(),
                events.retained_bytes()
            );
            wsk_executor::sleep(Duration::from_millis(20)).await;
            waited += 20;
        }
        // It waits for good: the peer does not read.
        wsk_executor::sleep(Duration::from_millis(200)).await;
        assert!(events.reflection_in_flight(), "the reflection still waits on the peer");
        assert!(events.retained_bytes() > 0, "the reflection in flight holds its list");
        drop(events);
        let closed = async { Some(writer.close().await) };
        let late = async {
            wsk_executor::sleep(Duration::from_secs(10)).await;
            None
        };
        let outcome = futures_lite::future::or(closed, late).await;
        assert!(matches!(outcome, Some(Ok(()))), "the close after the stream's drop: {outcome:?}");
        stop_tx.send(()).unwrap();
        host.join().unwrap();
        l.close().await.expect("listener close");
    });
}
