//! Calls with a deadline on the emulated kernel with Wine's quirks on
//! (`wsk_emulator::quirks`): `KeCancelTimer` answers TRUE for a timer that expired, and the
//! provider cannot cancel its IRPs. A timed receive then returns the data that arrives after
//! its deadline (`Ok`), every timer's reference is released once, and the calls allocate
//! nothing. The quirks are process-wide, so these tests live in a test binary of their own.

use std::io::Write;
use std::net::TcpListener as HostListener;
use std::sync::Once;
use std::time::{Duration, Instant};

use wsk::{IoBuf, TcpStream};
use wsk_emulator::quirks::{self, Quirks};
use wsk_tests::harness::run_clean;

const LIMIT: Duration = Duration::from_secs(60);

fn wine_kernel() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| quirks::set(Quirks::wine()));
}

/// The receive cannot be cancelled: its deadline passes (the timer's DPC runs and its cancel
/// has no effect), and the call returns the data that arrives later, as documented.
#[test]
fn a_receive_that_cannot_be_cancelled_returns_the_data_that_arrives_after_its_deadline() {
    wine_kernel();
    run_clean(LIMIT, |env| async move {
        let mut l = wsk::TcpListener::bind(env.wsk, "127.0.0.1:0".parse().unwrap()).await.expect("bind");
        let addr = l.query_local_addr().await.expect("local address");
        let mut c = TcpStream::connect(env.wsk, addr).await.expect("connect");
        let (mut server, _) = l.accept().await.expect("accept");
        let sender = env
            .spawner
            .spawn(async move {
                wsk_executor::sleep(Duration::from_millis(200)).await;
                server.send_all(IoBuf::copy_from(b"late").unwrap()).await.0.expect("send");
                server
            })
            .unwrap();
        let fired = wsk_emulator::counters().timers_fired;
        let start = Instant::now();
        let (r, buf) = c.recv_timeout(IoBuf::with_capacity(16).unwrap(), Duration::from_millis(10)).await;
        let took = start.elapsed();
        assert!(r.expect("the data, not a timeout") > 0);
        assert!(b"late".starts_with(buf.as_slice()), "{:?}", buf.as_slice());
        assert!(took >= Duration::from_millis(150), "returned with the data, after the deadline: {took:?}");
        assert!(wsk_emulator::counters().timers_fired > fired, "the deadline expired meanwhile");
        let server = sender.await.unwrap();
        server.close().await.unwrap();
        c.close().await.unwrap();
        l.close().await.unwrap();
    });
}

/// Timed receives whose deadlines pass before each byte arrives (the expired timer is then
/// "cancelled" with Wine's TRUE): no allocation after the warm-up, every byte in order, and a
/// clean unload (a reference released twice would free the slot under its owner).
#[test]
fn timed_receives_under_wine_allocate_nothing_and_lose_nothing() {
    wine_kernel();
    const BYTES: usize = 40;
    let host = HostListener::bind("127.0.0.1:0").unwrap();
    let addr = host.local_addr().unwrap();
    let peer = std::thread::spawn(move || {
        let (mut s, _) = host.accept().unwrap();
        for i in 0..BYTES {
            std::thread::sleep(Duration::from_millis(5));
            s.write_all(&[i as u8]).unwrap();
        }
        s
    });
    let (got, allocations, fired) = run_clean(LIMIT, move |env| async move {
        let mut c = TcpStream::connect(env.wsk, addr).await.expect("connect");
        let mut got = Vec::new();
        let mut buf = IoBuf::with_capacity(64).unwrap();
        // Warm-up: the first timed receive initializes the slot's timer.
        let (r, back) = c.recv_timeout(buf, Duration::from_millis(1)).await;
        buf = back;
        r.expect("the first byte");
        got.extend_from_slice(buf.as_slice());
        let before = wsk_emulator::counters();
        while got.len() < BYTES {
            let (r, back) = c.recv_timeout(buf, Duration::from_millis(1)).await;
            buf = back;
            assert!(r.expect("under Wine the receive returns data") > 0);
            got.extend_from_slice(buf.as_slice());
        }
        let after = wsk_emulator::counters();
        c.close().await.unwrap();
        (got, after.allocations() - before.allocations(), after.timers_fired - before.timers_fired)
    });
    drop(peer.join().unwrap());
    assert_eq!(got, (0..BYTES as u8).collect::<Vec<u8>>(), "every byte, in order");
    assert_eq!(allocations, 0, "timed receives allocate nothing");
    assert!(fired > 0, "deadlines expired before the bytes arrived");
}

/// An accept that cannot be cancelled: its deadline passes, and the call returns the
/// connection that arrives later (`Ok`), as documented.
#[test]
fn an_accept_that_cannot_be_cancelled_returns_the_connection_that_arrives_after_its_deadline() {
    wine_kernel();
    run_clean(LIMIT, |env| async move {
        let mut l = wsk::TcpListener::bind(env.wsk, "127.0.0.1:0".parse().unwrap()).await.expect("bind");
        let addr = l.query_local_addr().await.expect("local address");
        let wsk = env.wsk;
        let connector = env
            .spawner
            .spawn(async move {
                wsk_executor::sleep(Duration::from_millis(200)).await;
                TcpStream::connect(wsk, addr).await.expect("connect")
            })
            .unwrap();
        let start = Instant::now();
        let (s, _) = l.accept_timeout(Duration::from_millis(10)).await.expect("the connection, not a timeout");
        assert!(start.elapsed() >= Duration::from_millis(150), "after the deadline: {:?}", start.elapsed());
        let c = connector.await.unwrap();
        s.close().await.unwrap();
        c.close().await.unwrap();
        l.close().await.unwrap();
    });
}
