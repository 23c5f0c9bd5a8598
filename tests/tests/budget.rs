//! The driver-wide budget (`wsk::budget`) with many connections each holding unread data,
//! on the emulator's provider with the verifier on: what the library retains stays within
//! the limit plus a constant, and every byte is delivered once the consumers read.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream as HostStream};
use std::sync::mpsc;
use std::time::Duration;

use futures_lite::StreamExt;
use wsk::events::{ConnectionEvent, ConnectionEvents, EventConfig};
use wsk::{TcpListener, TcpWriteHalf};
use wsk_tests::fixtures::pattern;
use wsk_tests::harness::run_clean;

const LIMIT: Duration = Duration::from_secs(120);

/// Connections, each holding unread data.
const CONNECTIONS: usize = 48;
/// What each peer sends first: retained by its stream and left unread, so that each socket
/// holds something (a socket holding nothing takes its next indication whatever the budget).
const FIRST: usize = 100;
/// What each peer sends then.
const REST: usize = 192 * 1024;
/// The budget of the test: far below what the connections would retain without it
/// (48 x 192 KiB: their per-socket bound is set above that).
const BUDGET: usize = 256 * 1024;
/// Beyond the limit, while the consumers drain one connection after the other: the next
/// indication of the connection being drained, which holds nothing then (at most the
/// emulator's 64 KiB data block).
const SLACK: usize = 64 * 1024;

/// Many connections hold unread data while their peers send more: the callbacks refuse what
/// would exceed the budget (WSK keeps it), the budget's peak stays within the limit plus the
/// first messages and one indication, and once the consumers read, every byte of every
/// connection arrives, in order.
#[test]
fn many_connections_with_unread_data_stay_within_the_budget_and_all_complete() {
    let before = wsk::budget::limit();
    wsk::budget::set_limit(BUDGET);
    let (peak, retained_while_held) = run_clean(LIMIT, |env| async move {
        let mut listener = TcpListener::bind(env.wsk, SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await.expect("bind");
        let addr = listener.query_local_addr().await.expect("local address");
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let go_rx = std::sync::Arc::new(std::sync::Mutex::new(go_rx));
        let peers: Vec<_> = (0..CONNECTIONS)
            .map(|i| {
                let go = go_rx.clone();
                std::thread::spawn(move || {
                    let mut s = HostStream::connect(addr).expect("connect");
                    s.write_all(&pattern(FIRST, i as u8)).expect("first message");
                    go.lock().unwrap().recv().expect("go");
                    s.write_all(&pattern(REST, i as u8 ^ 0x55)).expect("the rest");
                    s.shutdown(std::net::Shutdown::Write).expect("shutdown");
                    let mut nothing = Vec::new();
                    s.read_to_end(&mut nothing).expect("the driver's close");
                })
            })
            .collect();
        let mut streams: Vec<(ConnectionEvents, TcpWriteHalf)> = Vec::new();
        for _ in 0..CONNECTIONS {
            let (stream, _) = listener.accept().await.expect("accept");
            // A per-socket bound above what each peer sends: only the budget holds them back.
            let config = EventConfig { max_retained_bytes: 1 << 20, ..EventConfig::default() };
            streams.push(stream.into_events(config).expect("events"));
        }
        // Every stream holds its first message (retained, unread).
        for _ in 0..2000 {
            if streams.iter().all(|(events, _)| events.retained_bytes() >= FIRST) {
                break;
            }
            wsk_executor::sleep(Duration::from_millis(5)).await;
        }
        assert!(streams.iter().all(|(events, _)| events.retained_bytes() >= FIRST), "a first message was not retained");
        for _ in 0..CONNECTIONS {
            go_tx.send(()).unwrap();
        }
        // The peers send; the streams are not read for a while.
        let mut retained_while_held = 0;
        for _ in 0..60 {
            wsk_executor::sleep(Duration::from_millis(10)).await;
            retained_while_held =
                retained_while_held.max(streams.iter().map(|(e, _)| e.retained_bytes()).sum::<usize>());
        }
        // Now read every connection to its end, one after the other.
        for (i, (mut events, writer)) in streams.into_iter().enumerate() {
            let mut got = Vec::new();
            while let Some(event) = events.next().await {
                match event.expect("event") {
                    ConnectionEvent::Data(data) => {
                        for piece in data.segments() {
                            got.extend_from_slice(piece);
                        }
                    }
                    ConnectionEvent::Disconnected { abortive } => assert!(!abortive),
                    ConnectionEvent::SendBacklog(_) => {}
                }
            }
            // Accepted in any order: the first byte is the peer's seed.
            let seed = got.first().copied().unwrap_or_default();
            let mut expected = pattern(FIRST, seed);
            expected.extend(pattern(REST, seed ^ 0x55));
            assert!(
                got == expected,
                "connection {i}: {} bytes of {} arrived, or out of order",
                got.len(),
                expected.len()
            );
            drop(events);
            let mut writer = writer;
            writer.shutdown().await.expect("disconnect");
            writer.close().await.expect("close");
        }
        listener.close().await.expect("listener close");
        for peer in peers {
            peer.join().unwrap();
        }
        (wsk::budget::peak(), retained_while_held)
    });
    wsk::budget::set_limit(before);
    assert_eq!(wsk::budget::used(), 0, "everything charged was given back");
    assert!(
        peak <= BUDGET + CONNECTIONS * FIRST + SLACK,
        "the budget's peak {peak} exceeds the limit {BUDGET} + {} first messages + {SLACK}",
        CONNECTIONS * FIRST
    );
    // The test means something only if the connections wanted more than the budget.
    assert!(retained_while_held >= BUDGET / 2, "only {retained_while_held} bytes were retained while held");
}
