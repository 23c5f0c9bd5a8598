//! A driver loaded again in the same process after a load that crashed. Windows would have
//! rebooted; a host test process goes on, with the driver's and the library's statics as the
//! crashed load left them (its DriverUnload never ran: its service is still installed, its
//! sockets still listed). The new load's DriverEntry fails at once, before it uses any of it:
//! it neither hangs (dropping the old service waits for tasks of the crashed load, whose work
//! items no longer run: a flood test's crash once hung every later test of its binary) nor
//! faults on the old sockets.

#![cfg(not(windows))]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener as HostListener, TcpStream};
use std::sync::mpsc;
use std::time::Duration;

use echo_driver::driver::driver_entry;
use wsk_emulator::{Kernel, LoadError, LoadedDriver, assert_may_block, with_irql};
use wsk_sys::DISPATCH_LEVEL;

/// Loads the echo driver on a free port, on another thread, failing if DriverEntry does not
/// return within a minute (a hang, not a slow run).
fn load() -> (Result<LoadedDriver, LoadError>, SocketAddr) {
    let port = HostListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap().local_addr().unwrap().port();
    let (done, loaded) = mpsc::channel();
    std::thread::spawn(move || {
        let driver = Kernel::builder()
            .verifier(true)
            .echo_debug_output(false)
            .param_dword("Port", u32::from(port))
            .load("echo", driver_entry);
        let _ = done.send(driver);
    });
    let driver = loaded.recv_timeout(Duration::from_secs(60)).expect("DriverEntry did not return within 60 s");
    (driver, SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
}

#[test]
fn a_load_after_a_crashed_load_fails_at_once() {
    let (crashed, addr) = load();
    let crashed = crashed.expect("the first load");
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    stream.write_all(b"once").unwrap();
    let mut back = [0u8; 4];
    stream.read_exact(&mut back).expect("echo");
    // The crash: a violation the verifier turns into a bugcheck; the driver is then dropped
    // without DriverUnload, as when a test panics on a crashed driver.
    with_irql(DISPATCH_LEVEL, || assert_may_block("a crash on purpose"));
    assert!(crashed.crashed());
    drop(crashed);
    let (again, _) = load();
    let Err(LoadError::EntryFailed { status, .. }) = again else {
        panic!("a load on the crashed load's state started")
    };
    assert_eq!(status, wsk_sys::STATUS_INVALID_PARAMETER, "DriverEntry's status");
    let logged = wsk_emulator::debug_messages();
    assert!(
        logged.iter().any(|m| m.text.contains("an earlier load never unloaded (it crashed)")),
        "DriverEntry says why it failed"
    );
}
