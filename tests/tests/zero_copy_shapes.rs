//! Sending received items as WSK indicated them, against the emulator's adversarial shapes
//! (`wsk_emulator::adversary`'s `random_shapes`): indications of random pieces, with
//! `Buffer.Offset` inside the first MDL and MDL chains inside one indication, and sends the
//! provider completes with part of their bytes. A resend must start at the MDL holding the
//! next byte (`WSK_BUF::Offset` lies within the first MDL), and no byte may be lost or doubled.
//!
//! The behaviours are process-wide, so this test lives in a test binary of its own.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream as HostStream};
use std::time::Duration;

use futures_lite::StreamExt;
use wsk::events::{ConnectionEvent, EventConfig};
use wsk::send_chain::SendChain;
use wsk::{IoBuf, TcpListener};
use wsk_emulator::adversary::{self, Adversary};
use wsk_tests::harness::run_clean;

/// 2 MiB echoed from indications of random shapes with short sends, items sent alternately
/// alone and in a chain between two of our buffers: byte-exact.
#[test]
fn items_of_random_shapes_echo_byte_exact_through_short_sends() {
    adversary::set(Adversary { random_shapes: true, seed: 0x5eed_0015, ..Adversary::default() });
    const LEN: usize = 2 << 20;
    let payload: Vec<u8> = (0..LEN).map(|i| (i % 253) as u8).collect();
    let (expected, got) = run_clean(Duration::from_secs(120), move |env| async move {
        let mut l = TcpListener::bind(env.wsk, SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await.expect("bind");
        let addr = l.query_local_addr().await.expect("local address");
        let host = std::thread::spawn(move || {
            let mut s = HostStream::connect(addr).expect("host connect");
            s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
            let mut reader = s.try_clone().unwrap();
            let reading = std::thread::spawn(move || {
                let mut back = Vec::new();
                reader.read_to_end(&mut back).unwrap();
                back
            });
            for chunk in payload.chunks(7_777) {
                s.write_all(chunk).expect("host write");
            }
            s.shutdown(std::net::Shutdown::Write).unwrap();
            (payload, reading.join().unwrap())
        });
        let (stream, _) = l.accept().await.expect("accept");
        let (mut events, mut writer) = stream.into_events(EventConfig::default()).expect("events");
        let mut chain = SendChain::new().unwrap();
        let mut expected_markers = 0usize;
        let mut alone = true;
        while let Some(event) = events.next().await {
            match event.expect("event") {
                ConnectionEvent::Data(data) => {
                    if alone {
                        writer.send_received(data).await.expect("send from indication");
                    } else {
                        // Empty buffers around the item: nothing of theirs is sent.
                        chain.push_buf(IoBuf::with_capacity(16).unwrap()).unwrap();
                        chain.push_received(data).unwrap();
                        chain.push_buf(IoBuf::with_capacity(16).unwrap()).unwrap();
                        let (sent, back) = writer.send_chain(chain).await;
                        sent.expect("chained send");
                        chain = back;
                        expected_markers += 2;
                        assert_eq!(chain.len(), 2, "the two buffers came back");
                        while chain.pop().is_some() {}
                    }
                    alone = !alone;
                }
                ConnectionEvent::Disconnected { abortive } => assert!(!abortive),
                ConnectionEvent::SendBacklog(_) => {}
            }
        }
        assert!(expected_markers > 0, "no item went through a chain");
        writer.shutdown().await.expect("shutdown");
        drop(events);
        writer.close().await.expect("close");
        l.close().await.expect("listener close");
        host.join().unwrap()
    });
    assert_eq!(got.len(), expected.len());
    assert!(got == expected, "echoed bytes differ");
}
