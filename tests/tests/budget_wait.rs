//! A connection stream's copy path (a fallback IRP receive) waits for the driver-wide budget
//! (`wsk::budget`) instead of failing, and goes on when another connection gives budget back.
//! On the emulator's provider with the verifier on.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream as HostStream};
use std::time::Duration;

use futures_lite::StreamExt;
use futures_lite::future;
use wsk::TcpListener;
use wsk::events::{ConnectionEvent, ConnectionEvents, EventConfig};
use wsk_tests::fixtures::pattern;
use wsk_tests::harness::run_clean;

const LIMIT: Duration = Duration::from_secs(60);

/// The budget of the test.
const BUDGET: usize = 20 * 1024;
/// What the other connection holds: with the waiting stream's first item, the 16 KiB
/// fallback buffer no longer fits the budget.
const OTHER: usize = 10 * 1024;
/// The waiting stream's per-socket bound: its peer's second message is refused (WSK keeps
/// it) while the consumer holds the first, so the next item comes through the copy path.
const BOUND: usize = 1000;

/// The next data item of `events`.
async fn next_data(events: &mut ConnectionEvents) -> wsk::events::Received {
    loop {
        match events.next().await.expect("an event").expect("no error") {
            ConnectionEvent::Data(data) => return data,
            ConnectionEvent::SendBacklog(_) => {}
            ConnectionEvent::Disconnected { .. } => panic!("disconnected before the data"),
        }
    }
}

#[test]
fn a_fallback_receive_waits_for_budget_and_goes_on_when_it_is_given_back() {
    let before = wsk::budget::limit();
    wsk::budget::set_limit(BUDGET);
    let (waited, copied) = run_clean(LIMIT, |env| async move {
        let mut listener = TcpListener::bind(env.wsk, SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await.expect("bind");
        let addr = listener.query_local_addr().await.expect("local address");
        // The other connection: its peer sends OTHER bytes, which its stream retains.
        let other_peer = std::thread::spawn(move || {
            let mut s = HostStream::connect(addr).unwrap();
            s.write_all(&pattern(OTHER, 1)).unwrap();
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest);
        });
        let (stream, _) = listener.accept().await.expect("accept");
        let (mut other, mut other_writer) = stream.into_events(EventConfig::default()).expect("events");
        let mut held = Vec::new();
        let mut held_bytes = 0;
        while held_bytes < OTHER {
            let data = next_data(&mut other).await;
            held_bytes += data.len();
            held.push(data);
        }
        // The waiting connection: two messages, the second refused over its bound.
        let (first, second) = (pattern(BOUND, 2), pattern(4000, 3));
        let (f, s2) = (first.clone(), second.clone());
        let peer = std::thread::spawn(move || {
            let mut s = HostStream::connect(addr).unwrap();
            s.write_all(&f).unwrap();
            std::thread::sleep(Duration::from_millis(100));
            s.write_all(&s2).unwrap();
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest);
        });
        let (stream, _) = listener.accept().await.expect("accept");
        let config = EventConfig { max_retained_bytes: BOUND, ..EventConfig::default() };
        let (mut events, mut writer) = stream.into_events(config).expect("events");
        let item = next_data(&mut events).await;
        assert_eq!(item.len(), BOUND);
        // Let the second message arrive (and be refused over the bound).
        wsk_executor::sleep(Duration::from_millis(300)).await;
        // Holding the first item and asking for more: the copy path, whose 16 KiB buffer does
        // not fit the budget the other connection holds. The stream waits, without error.
        let early = future::or(async { Some(next_data(&mut events).await) }, async {
            wsk_executor::sleep(Duration::from_millis(300)).await;
            None
        })
        .await;
        let waited = early.is_none();
        assert!(wsk::budget::used() <= BUDGET, "the budget is exceeded");
        // The other connection gives its budget back: the waiting stream goes on.
        drop(held);
        let mut rest = Vec::new();
        let mut copied = false;
        if let Some(data) = early {
            copied |= !data.is_zero_copy();
            for piece in data.segments() {
                rest.extend_from_slice(piece);
            }
        }
        while rest.len() < second.len() {
            let data = next_data(&mut events).await;
            copied |= !data.is_zero_copy();
            for piece in data.segments() {
                rest.extend_from_slice(piece);
            }
        }
        assert!(rest == second, "the second message arrived wrong");
        drop(item);
        drop(events);
        drop(other);
        writer.shutdown().await.expect("disconnect");
        writer.close().await.expect("close");
        other_writer.shutdown().await.expect("disconnect");
        other_writer.close().await.expect("close");
        listener.close().await.expect("listener close");
        peer.join().unwrap();
        other_peer.join().unwrap();
        (waited, copied)
    });
    wsk::budget::set_limit(before);
    assert!(waited, "the copy path did not wait for the budget");
    assert!(copied, "the second message did not come through the copy path");
    assert_eq!(wsk::budget::used(), 0, "everything charged was given back");
}
