//! The library against the emulator's adversarial provider behaviours
//! (`wsk_emulator::adversary`): receive indications whose MDLs are not mapped into system space,
//! and mappings that fail. A mapping failure must never turn into fewer bytes: the receive
//! callback maps an indication before it keeps it, refuses one it cannot map, and the stream
//! copies that data out with an IRP receive instead.
//!
//! The behaviours are process-wide, so these tests live in a test binary of their own.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpStream as HostStream};
use std::sync::Once;
use std::time::Duration;

use wsk::TcpListener;
use wsk::events::{self, ConnectionEvent, EventConfig};
use wsk_emulator::adversary::{self, Adversary};
use wsk_tests::harness::run_clean;

fn adversarial_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        adversary::set(Adversary { unmapped_indications: true, mapping_failure_ppm: 300_000, ..Adversary::default() });
    });
}

/// 2 MiB through receive events whose MDLs need mapping, 30% of mappings failing: every byte
/// arrives once and in order; some items came without a copy (mapped), some by the copy path
/// (refused for want of a mapping), and mappings did fail.
#[test]
fn unmappable_indications_are_refused_and_copied_never_shortened() {
    adversarial_provider();
    let (got, zero_copy, copied) = run_clean(Duration::from_secs(120), |env| async move {
        const LEN: usize = 2 << 20;
        let mut l = TcpListener::bind(env.wsk, SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await.expect("bind");
        let addr = l.query_local_addr().await.expect("local address");
        let host = std::thread::spawn(move || {
            let mut s = HostStream::connect(addr).expect("host connect");
            let data: Vec<u8> = (0..LEN).map(|i| (i % 251) as u8).collect();
            for chunk in data.chunks(10_000) {
                s.write_all(chunk).expect("host write");
            }
        });
        let (stream, _) = l.accept().await.expect("accept");
        let Ok((mut events, writer)) = stream.into_events(EventConfig::default()) else { panic!("events refused") };
        let (mut got, mut zero_copy, mut copied) = (Vec::with_capacity(LEN), 0u64, 0u64);
        while let Some(event) = events::next(&mut events).await {
            match event.expect("event") {
                ConnectionEvent::Data(data) => {
                    let before = got.len();
                    for segment in data.segments() {
                        got.extend_from_slice(segment);
                    }
                    assert_eq!(got.len() - before, data.len(), "the segments hold every byte the item counts");
                    if data.is_zero_copy() { zero_copy += 1 } else { copied += 1 }
                }
                ConnectionEvent::Disconnected { .. } => break,
                ConnectionEvent::SendBacklog(_) => {}
            }
        }
        while !host.is_finished() {
            wsk_executor::sleep(Duration::from_millis(2)).await;
        }
        host.join().expect("host");
        drop(events);
        writer.close().await.expect("close");
        l.close().await.expect("listener close");
        (got, zero_copy, copied)
    });
    let expected: Vec<u8> = (0..got.len().max(2 << 20)).map(|i| (i % 251) as u8).collect();
    assert_eq!(got.len(), 2 << 20, "every byte");
    assert!(got == expected, "in order");
    let (mappings, failed) = adversary::mapping_stats();
    assert!(failed > 0, "mappings failed on purpose ({failed} of {mappings})");
    assert!(zero_copy > 0 && copied > 0, "{zero_copy} items without a copy, {copied} copied");
}
