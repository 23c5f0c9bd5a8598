//! Batches of datagrams (`UdpSocket::send_batch_to`): one `WskSendMessages` where the provider
//! has it, one `WskSendTo` per datagram where it does not (the emulator's `no-send-messages`
//! quirk: a null routine in the datagram table). Either way every datagram arrives whole, in
//! order, and the chain comes back unchanged.
//!
//! The quirk is process-wide, so this test lives in a test binary of its own, and its two
//! runs are one test.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket as HostUdp};
use std::time::Duration;

use wsk::send_chain::{Piece, SendChain};
use wsk::{IoBuf, UdpSocket};
use wsk_emulator::quirks::{self, Quirks};
use wsk_tests::harness::run_clean;

const DATAGRAMS: usize = 7;

fn datagram(i: usize) -> Vec<u8> {
    // Sizes from 0 (an empty datagram) up.
    (0..i * 300).map(|j| (i * 7 + j) as u8).collect()
}

/// Sends one batch of [`DATAGRAMS`] to a host socket; returns the IRPs the driver's send
/// completed, after checking every datagram and the chain that came back.
fn batch_round() -> u64 {
    let host = HostUdp::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    host.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let to = host.local_addr().unwrap();
    let irps = run_clean(Duration::from_secs(60), move |env| async move {
        let mut udp = UdpSocket::bind(env.wsk, SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await.expect("bind");
        let mut chain = SendChain::new().unwrap();
        for i in 0..DATAGRAMS {
            let bytes = datagram(i);
            let mut buf = IoBuf::with_capacity(bytes.len() + 64).unwrap();
            buf.extend_from_slice(&bytes);
            chain.push_buf(buf).unwrap();
        }
        let total: usize = (0..DATAGRAMS).map(|i| datagram(i).len()).sum();
        let before = wsk_emulator::counters().irps_completed;
        let (sent, mut chain) = udp.send_batch_to(chain, to).await;
        let irps = wsk_emulator::counters().irps_completed - before;
        assert_eq!(sent.expect("batch"), total);
        assert_eq!(chain.len(), DATAGRAMS);
        for i in (0..DATAGRAMS).rev() {
            match chain.pop() {
                Some(Piece::Buf(buf)) => assert_eq!(buf.as_slice(), datagram(i)),
                other => panic!("piece {i}: {other:?}"),
            }
        }
        udp.close().await.expect("close");
        irps
    });
    let mut got = vec![0u8; 4096];
    for i in 0..DATAGRAMS {
        let (n, _) = host.recv_from(&mut got).expect("datagram");
        assert_eq!(&got[..n], datagram(i), "datagram {i}");
    }
    irps
}

#[test]
fn a_batch_is_one_send_messages_or_one_send_to_per_datagram() {
    quirks::set(Quirks::default());
    assert_eq!(batch_round(), 1, "one WskSendMessages IRP for the whole batch");
    quirks::set(Quirks { no_send_messages: true, ..Quirks::default() });
    // The null routine is found at the call: its IRP completes as not taken
    // (`STATUS_NOT_IMPLEMENTED`), then each datagram goes with a WskSendTo of its own.
    assert_eq!(batch_round() as usize, 1 + DATAGRAMS, "one WskSendTo IRP per datagram without WskSendMessages");
    quirks::set(Quirks::default());
}
