//! An event stream's own receives under a provider that leaves every receive pending and
//! cancels half of them on its own, and half of the zero-length ones inside their call
//! (`wsk_emulator::adversary`: `late_completion_ppm`, `provider_cancel_ppm`). A stream whose
//! consumer holds what it was given gets its data refused; it resumes the indications with a
//! zero-length receive when the consumer holds nothing, and copies with IRP receives while it
//! holds some. Either receive may be cancelled by the provider, and the stream must issue it
//! again: every byte arrives, in order, and the stream ends with the disconnect, not an
//! error. (The consumer drops what it holds after every second item, so both happen.)
//!
//! The behaviours are process-wide, so this test lives in a test binary of its own.

use std::io::{Read, Write};
use std::net::TcpStream as HostStream;
use std::time::Duration;

use futures_lite::StreamExt;
use wsk::events::{ConnectionEvent, EventConfig};
use wsk_emulator::adversary::{self, Adversary};
use wsk_tests::fixtures::{bound_listener, pattern};
use wsk_tests::harness::run_clean;

const LIMIT: Duration = Duration::from_secs(120);
const TOTAL: usize = 2 * 1024 * 1024;

#[test]
fn an_event_stream_outlasts_the_providers_own_cancels_of_its_receives() {
    adversary::set(Adversary {
        seed: 15,
        processors: 2,
        late_completion_ppm: 1_000_000,
        provider_cancel_ppm: 500_000,
        ..Adversary::default()
    });
    let before = adversary::stats();
    let refused_before = wsk_emulator::counters().refused_bytes;
    let got = run_clean(LIMIT, |env| async move {
        let (mut listener, addr) = bound_listener(&env).await;
        let peer = std::thread::spawn(move || {
            let mut s = HostStream::connect(addr).expect("host connect");
            for chunk in pattern(TOTAL, 3).chunks(1024) {
                s.write_all(chunk).unwrap();
            }
            s.shutdown(std::net::Shutdown::Write).unwrap();
            let mut rest = Vec::new();
            s.read_to_end(&mut rest).expect("a graceful end");
        });
        let (stream, _) = listener.accept().await.expect("accepted");
        // Little room: data is refused while the consumer holds two items.
        let config = EventConfig { max_retained_bytes: 4096, ..EventConfig::default() };
        let (mut events, mut writer) = stream.into_events(config).expect("events");
        let mut got = Vec::new();
        let mut held = std::collections::VecDeque::new();
        let mut items = 0usize;
        loop {
            match events.next().await.expect("the stream ends with the disconnect") {
                Ok(ConnectionEvent::Data(data)) => {
                    let mut piece = vec![0; data.len()];
                    let n = data.copy_to_slice(&mut piece);
                    got.extend_from_slice(&piece[..n]);
                    held.push_back(data);
                    items += 1;
                    if items.is_multiple_of(2) {
                        // Nothing held: a refusal is answered by a zero-length resume.
                        held.clear();
                    } else if held.len() > 2 {
                        // Some held: a refusal is answered by a copying receive.
                        held.pop_front();
                    }
                }
                Ok(ConnectionEvent::Disconnected { abortive }) => {
                    assert!(!abortive, "the peer shut down gracefully");
                    break;
                }
                Ok(ConnectionEvent::SendBacklog(_)) => {}
                Err(e) => panic!("a receive the provider cancelled is not an error: {e:?}"),
            }
        }
        drop(held);
        drop(events);
        writer.shutdown().await.expect("shutdown");
        writer.close().await.expect("close");
        listener.close().await.expect("listener close");
        peer.join().unwrap();
        got
    });
    let after = adversary::stats();
    let refused = wsk_emulator::counters().refused_bytes - refused_before;
    println!("{before:?} -> {after:?}; {refused} bytes refused");
    assert!(got == pattern(TOTAL, 3), "{} bytes, not the {TOTAL} sent in order", got.len());
    assert!(after.provider_cancels > before.provider_cancels, "the provider cancelled none of the stream's receives");
}
