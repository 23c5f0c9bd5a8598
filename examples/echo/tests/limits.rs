//! The echo driver's `MaxConnections` and `MaxPerPeer` parameters on the emulator: with
//! `MaxConnections` = 1 a second client waits (never served at the same time, the driver's
//! `peak_open` counter says so) and is served once the first closed; with `MaxPerPeer` = 1 a
//! second connection from the same address is refused while the first is open and served
//! after it closed. The verifier's report stays clean.

#![cfg(not(windows))]

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::time::Duration;

use echo_driver::server::STATS;
use wsk_emulator::LoadedDriver;

fn load(max_connections: u32, max_per_peer: u32) -> (LoadedDriver, SocketAddr) {
    common::load(&[("MaxConnections", max_connections), ("MaxPerPeer", max_per_peer)])
}

use common::{LIMIT, connect};

fn echo(client: &mut TcpStream, text: &[u8]) {
    client.write_all(text).unwrap();
    let mut back = vec![0u8; text.len()];
    client.read_exact(&mut back).unwrap();
    assert_eq!(back, text);
}

fn finish(mut client: TcpStream) {
    client.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).unwrap();
}

fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + LIMIT;
    while !condition() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn max_connections_one_serves_the_second_client_after_the_first() {
    let _serial = common::serial();
    let before = STATS.connections.load(Ordering::Relaxed);
    STATS.peak_open.store(0, Ordering::Relaxed);
    let (driver, addr) = load(1, 0);
    let mut first = connect(addr);
    echo(&mut first, b"first");
    let mut second = connect(addr);
    second.write_all(b"second").unwrap();
    // The first is served again while the second waits in the backlog.
    echo(&mut first, b"again");
    assert_eq!(STATS.connections.load(Ordering::Relaxed) - before, 1, "the second was accepted");
    finish(first);
    let mut back = [0u8; 6];
    second.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"second");
    finish(second);
    wait_until("both connections closed", || STATS.open.load(Ordering::Relaxed) == 0);
    assert_eq!(STATS.connections.load(Ordering::Relaxed) - before, 2);
    assert_eq!(STATS.peak_open.load(Ordering::Relaxed), 1, "two connections were open at once");
    driver.unload().assert_clean();
}

#[test]
fn max_per_peer_one_refuses_a_second_connection_while_the_first_is_open() {
    let _serial = common::serial();
    let before = STATS.connections.load(Ordering::Relaxed);
    let (driver, addr) = load(0, 1);
    let mut first = connect(addr);
    echo(&mut first, b"first");
    let mut refused = connect(addr);
    let _ = refused.write_all(b"refused");
    let mut byte = [0u8; 1];
    assert!(matches!(refused.read(&mut byte), Ok(0) | Err(_)), "the second connection was served");
    finish(first);
    wait_until("the first connection closed", || STATS.open.load(Ordering::Relaxed) == 0);
    let mut third = connect(addr);
    echo(&mut third, b"third");
    finish(third);
    wait_until("the third connection closed", || STATS.open.load(Ordering::Relaxed) == 0);
    assert_eq!(STATS.connections.load(Ordering::Relaxed) - before, 2, "the refused one was never accepted");
    driver.unload().assert_clean();
}
