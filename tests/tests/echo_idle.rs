//! The echo driver's `IdleSeconds` on both receive paths: a client that sends nothing has its
//! connection closed after the limit; a client that keeps sending (more often than the limit)
//! is served on and closes normally. Every accepted connection gets keep-alive. On the event
//! path the active client's bytes go back from the receive callback (reflection), never
//! reaching the task: the idle limit counts them as activity all the same.

use std::io::{ErrorKind, Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener as HostListener, TcpStream as HostStream};
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::Duration;

use echo_driver::server::{IDLE_CLOSED, KEEP_ALIVE_ON, STATS};
use wsk_tests::{Watchdog, builder, lock, wait_until};

/// One driver at a time (its counters are statics).
static SERIAL: Mutex<()> = Mutex::new(());

const IDLE_SECONDS: u32 = 1;
/// Bound on every wait (a hang detector, not a speed check).
const LIMIT: Duration = Duration::from_secs(30);

fn run(events: bool) {
    let what = format!("echo IdleSeconds ({})", if events { "events" } else { "IRPs" });
    let _serial = lock(&SERIAL);
    let _watchdog = Watchdog::test(&what);
    let port = HostListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap().local_addr().unwrap().port();
    let (idle_before, keep_before, errors_before) = (
        IDLE_CLOSED.load(Ordering::Relaxed),
        KEEP_ALIVE_ON.load(Ordering::Relaxed),
        STATS.errors.load(Ordering::Relaxed),
    );
    let driver = builder()
        .param_dword("Port", u32::from(port))
        .param_dword("ReceiveEvents", u32::from(events))
        .param_dword("IdleSeconds", IDLE_SECONDS)
        .load("echo", echo_driver::driver::driver_entry)
        .expect("the echo driver loads");
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));

    let mut idle = HostStream::connect(addr).unwrap();
    let mut active = HostStream::connect(addr).unwrap();
    active.set_read_timeout(Some(LIMIT)).unwrap();
    // The active client sends a byte every quarter of the limit for three limits, and gets
    // each back; the idle one sends nothing.
    let step = Duration::from_millis(u64::from(IDLE_SECONDS) * 250);
    for i in 0..12u8 {
        active.write_all(&[i]).unwrap();
        let mut back = [0u8; 1];
        active.read_exact(&mut back).unwrap_or_else(|e| panic!("{what}: the active client lost its echo: {e}"));
        assert_eq!(back, [i]);
        std::thread::sleep(step);
    }
    // By now (3 limits) the idle client's connection was closed: a read ends, it does not
    // time out.
    idle.set_read_timeout(Some(LIMIT)).unwrap();
    let mut rest = Vec::new();
    match idle.read_to_end(&mut rest) {
        Ok(_) => {}
        Err(e) => assert!(
            !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
            "{what}: the idle connection stayed open: {e}"
        ),
    }
    assert!(rest.is_empty(), "{what}: nothing was sent on the idle connection");
    wait_until("the idle connection was counted", LIMIT, || IDLE_CLOSED.load(Ordering::Relaxed) == idle_before + 1);
    // The active client finishes normally: its connection is closed gracefully.
    active.shutdown(std::net::Shutdown::Write).unwrap();
    let mut tail = Vec::new();
    active.read_to_end(&mut tail).expect("a graceful end of the active connection");
    assert!(tail.is_empty());
    wait_until("both handlers returned", LIMIT, || STATS.open.load(Ordering::Relaxed) == 0);
    assert_eq!(IDLE_CLOSED.load(Ordering::Relaxed), idle_before + 1, "{what}: only the idle connection timed out");
    assert_eq!(STATS.errors.load(Ordering::Relaxed), errors_before, "{what}: an idle timeout is not an error");
    assert_eq!(KEEP_ALIVE_ON.load(Ordering::Relaxed), keep_before + 2, "{what}: keep-alive on every connection");
    let report = driver.unload();
    report.assert_clean();
}

#[test]
fn an_idle_client_is_disconnected_and_an_active_one_is_not_with_events() {
    run(true);
}

#[test]
fn an_idle_client_is_disconnected_and_an_active_one_is_not_with_irps() {
    run(false);
}
