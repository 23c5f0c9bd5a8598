//! The echo driver's datapath on the emulator's host sockets, on both receive paths (event
//! callbacks and IRP receives):
//!
//! * the provider reads each host socket once per message it indicates or receives: a read
//!   that comes back short marks the socket drained until its next readiness event, instead
//!   of a peek before and a read that would block after (about 4 reads per round trip before);
//! * a message followed at once by the peer's FIN is echoed and the connection ended: the read
//!   that returns the message stops short of the FIN queued behind it, which no later
//!   readiness event announces, so a socket whose read side the host reported closed is read
//!   to the end;
//! * a stream of several MiB through one connection keeps every byte in order;
//! * the provider's I/O thread does not preempt the threads it wakes (`SCHED_BATCH`).

#![cfg(not(windows))]

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};

use common::LIMIT;
use wsk_emulator::LoadedDriver;

fn load(receive_events: bool) -> (LoadedDriver, SocketAddr) {
    common::load(&[("ReceiveEvents", u32::from(receive_events))])
}

fn connect(addr: SocketAddr) -> TcpStream {
    let client = common::connect(addr);
    client.set_nodelay(true).unwrap();
    client
}

fn round_trip(client: &mut TcpStream, message: &[u8], back: &mut [u8]) {
    client.write_all(message).unwrap();
    client.read_exact(back).unwrap();
    assert_eq!(back, message);
}

fn paths() -> [(bool, &'static str); 2] {
    [(true, "event path"), (false, "IRP path")]
}

#[test]
fn the_provider_reads_a_host_socket_once_per_round_trip() {
    let _serial = common::serial();
    const ROUND_TRIPS: u64 = 300;
    for (events, name) in paths() {
        let (driver, addr) = load(events);
        let mut client = connect(addr);
        let message: Vec<u8> = (0..1024u32).map(|i| (i % 251) as u8).collect();
        let mut back = vec![0u8; message.len()];
        for _ in 0..20 {
            round_trip(&mut client, &message, &mut back);
        }
        let before = driver.counters().host_reads;
        for _ in 0..ROUND_TRIPS {
            round_trip(&mut client, &message, &mut back);
        }
        let reads = driver.counters().host_reads - before;
        println!("{name}: {reads} host reads in {ROUND_TRIPS} round trips");
        assert!(reads >= ROUND_TRIPS, "{name}: {reads} host reads: each message is read once at least");
        assert!(
            reads <= ROUND_TRIPS + ROUND_TRIPS / 4,
            "{name}: {reads} host reads in {ROUND_TRIPS} round trips (a peek or a read that would block per message?)"
        );
        client.shutdown(Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());
        driver.unload().assert_clean();
    }
}

#[test]
fn a_message_followed_at_once_by_the_fin_is_echoed_and_ended() {
    let _serial = common::serial();
    for (events, name) in paths() {
        let (driver, addr) = load(events);
        for round in 0..200usize {
            let mut client = connect(addr);
            let message: Vec<u8> = (0..3000 + round).map(|i| (i * 7 + round) as u8).collect();
            client.write_all(&message).unwrap();
            client.shutdown(Shutdown::Write).unwrap();
            let mut back = Vec::new();
            if let Err(e) = client.read_to_end(&mut back) {
                panic!("{name}, round {round}: the echo did not end within {LIMIT:?} ({e}): the FIN was not seen");
            }
            assert_eq!(back, message, "{name}, round {round}");
        }
        driver.unload().assert_clean();
    }
}

#[test]
fn a_stream_through_one_connection_keeps_every_byte_in_order() {
    let _serial = common::serial();
    const TOTAL: usize = 24 << 20;
    const WRITE: usize = 1 << 20;
    for (events, name) in paths() {
        let (driver, addr) = load(events);
        let client = connect(addr);
        let mut reader = client.try_clone().unwrap();
        let check = std::thread::spawn(move || {
            let mut buf = vec![0u8; 256 * 1024];
            let mut at = 0usize;
            loop {
                let n = reader.read(&mut buf).unwrap();
                if n == 0 {
                    return at;
                }
                for (i, &byte) in buf[..n].iter().enumerate() {
                    assert_eq!(byte, ((at + i) % 253) as u8, "byte {} of the echo", at + i);
                }
                at += n;
            }
        });
        let mut writer = client;
        let mut chunk = vec![0u8; WRITE];
        for k in 0..TOTAL / WRITE {
            for (i, byte) in chunk.iter_mut().enumerate() {
                *byte = ((k * WRITE + i) % 253) as u8;
            }
            writer.write_all(&chunk).unwrap();
        }
        writer.shutdown(Shutdown::Write).unwrap();
        let echoed = check.join().unwrap();
        assert_eq!(echoed, TOTAL, "{name}: bytes echoed");
        driver.unload().assert_clean();
    }
}

/// The provider's I/O thread (`wsk-emu-net`) runs under `SCHED_BATCH`: waking a worker
/// from a callback does not switch to it on the spot.
#[cfg(target_os = "linux")]
#[test]
fn the_provider_io_thread_does_not_preempt_the_threads_it_wakes() {
    let _serial = common::serial();
    let (driver, addr) = load(true);
    let mut client = connect(addr);
    round_trip(&mut client, b"wake the I/O thread", &mut [0u8; 19]);
    let mut found = 0;
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let task = task.unwrap();
        let name = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if name.trim() != "wsk-emu-net" {
            continue;
        }
        let tid: libc::pid_t = task.file_name().to_string_lossy().parse().unwrap();
        // SAFETY: no preconditions; a thread of this process.
        let policy = unsafe { libc::sched_getscheduler(tid) };
        assert_eq!(policy, libc::SCHED_BATCH, "the I/O thread's scheduling policy");
        found += 1;
    }
    assert_eq!(found, 1, "one provider I/O thread");
    drop(client);
    driver.unload().assert_clean();
}
