//! The library against the emulator's whole adversarial mode (`wsk_emulator::adversary`,
//! `Adversary::chaos`): four provider processors completing IRPs and calling callbacks in
//! any order, late completions and completions at the caller's IRQL, overlapping callbacks
//! of datagram and listening sockets, random indication shapes, partial receives and short
//! sends, unmapped indication MDLs with failing mappings, pending receives and accepts the
//! provider cancels on its own.
//!
//! The seed is `WSK_EMU_CHAOS` when set (so `WSK_EMU_CHAOS=N cargo test --test chaos`
//! reproduces a seed's decisions), 1 otherwise. Every test checks the bytes end to end and,
//! through `adversary::stats`, that the behaviour it is about was met.
//!
//! The behaviours are process-wide, so these tests live in a test binary of their own.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream as HostStream};
use std::sync::Once;
use std::time::Duration;

use futures_lite::StreamExt;
use wsk::events::{ConnectionEvent, EventConfig};
use wsk::{IoBuf, SocketOption, TcpListener, UdpSocket};
use wsk_emulator::adversary::{self, Adversary};
use wsk_tests::datagrams::PacedSenders;
use wsk_tests::fixtures::{any_local, pattern};
use wsk_tests::harness::run_clean;

const LIMIT: Duration = Duration::from_secs(120);

fn chaos() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let adversary = match Adversary::from_env() {
            Ok(Some(adversary)) => adversary,
            Ok(None) => Adversary::chaos(1),
            Err(message) => panic!("{message}"),
        };
        adversary::set(adversary);
        println!("chaos: seed {} ({} processors)", adversary.seed, adversary.processors);
    });
}

/// A host client that writes `payload` and reads it back whole (TCP gives no message
/// boundaries, so it reads until it has every byte).
fn host_echo_client(addr: SocketAddr, payload: Vec<u8>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut s = HostStream::connect(addr).expect("host connect");
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut reader = s.try_clone().unwrap();
        let expected = payload.clone();
        let check = std::thread::spawn(move || {
            let mut back = vec![0u8; expected.len()];
            reader.read_exact(&mut back).expect("echo back");
            assert!(back == expected, "echoed bytes differ");
        });
        for chunk in payload.chunks(7_000) {
            s.write_all(chunk).expect("host write");
        }
        check.join().unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
    })
}

/// Waits for every server task, then (without blocking the work item) for every host client,
/// and closes the listener.
async fn finish(
    servers: Vec<wsk_executor::JoinHandle<()>>,
    hosts: Vec<std::thread::JoinHandle<()>>,
    listener: TcpListener,
) {
    for server in servers {
        server.await.unwrap();
    }
    while hosts.iter().any(|h| !h.is_finished()) {
        wsk_executor::sleep(Duration::from_millis(5)).await;
    }
    for host in hosts {
        host.join().expect("host client");
    }
    listener.close().await.expect("listener close");
}

/// Echo of 16 connections, half through receive events, half through IRP receives: every
/// byte comes back in order although indications come in random shapes from four
/// processors, receives complete partially and sends short.
#[test]
fn echo_over_both_receive_paths_keeps_every_byte_in_order() {
    chaos();
    let before = adversary::stats();
    run_clean(LIMIT, |env| async move {
        const CONNECTIONS: usize = 16;
        let mut l = TcpListener::bind(env.wsk, any_local()).await.expect("bind");
        let addr = l.query_local_addr().await.expect("local address");
        let hosts: Vec<_> = (0..CONNECTIONS).map(|i| host_echo_client(addr, pattern(256 * 1024, i as u8))).collect();
        let mut servers = Vec::new();
        for i in 0..CONNECTIONS {
            let (stream, _) = l.accept().await.expect("accept");
            let server = if i % 2 == 0 {
                env.spawner.spawn(async move {
                    let Ok((mut events, mut writer)) = stream.into_events(EventConfig::default()) else {
                        panic!("events refused")
                    };
                    while let Some(event) = events.next().await {
                        match event.expect("event") {
                            ConnectionEvent::Data(data) => {
                                let mut buf = IoBuf::with_capacity(data.len()).expect("buffer");
                                for segment in data.segments() {
                                    assert_eq!(buf.extend_from_slice(segment), segment.len(), "room");
                                }
                                assert_eq!(buf.len(), data.len(), "segments hold every byte");
                                drop(data);
                                let (sent, _) = writer.send_all(buf).await;
                                sent.expect("send");
                            }
                            ConnectionEvent::Disconnected { .. } => break,
                            ConnectionEvent::SendBacklog(_) => {}
                        }
                    }
                    drop(events);
                    writer.close().await.expect("close");
                })
            } else {
                env.spawner.spawn(async move {
                    let mut stream = stream;
                    loop {
                        let (n, buf) = stream.recv(IoBuf::with_capacity(16 * 1024).expect("buffer")).await;
                        if n.expect("recv") == 0 {
                            break;
                        }
                        let (sent, _) = stream.send_all(buf).await;
                        sent.expect("send");
                    }
                    stream.close().await.expect("close");
                })
            };
            servers.push(server.unwrap());
        }
        finish(servers, hosts, l).await;
    });
    let after = adversary::stats();
    println!("echo: {before:?} -> {after:?}");
    assert!(after.shaped_chains > before.shaped_chains, "no indication came in a random shape");
    assert!(after.partial_receives > before.partial_receives, "no receive completed partially");
    assert!(after.short_sends > before.short_sends, "no send completed short");
    assert!(after.moved_completions > before.moved_completions, "no completion moved to another processor");
    assert!(after.late_completions > before.late_completions, "no completion was made late");
    assert!(after.caller_irql_completions > before.caller_irql_completions, "no completion ran at PASSIVE_LEVEL");
}

/// Ping-pong on 16 connections with IRP receives, 300 rounds each: every receive waits for
/// the peer, so the provider's own cancellations (`provider_cancel_ppm`) meet hundreds of
/// pending receives; each is issued again by the library and every message comes back.
#[test]
fn ping_pong_receives_outlast_the_providers_own_cancels() {
    chaos();
    const CONNECTIONS: usize = 16;
    const ROUNDS: usize = 300;
    let before = adversary::stats();
    run_clean(LIMIT, |env| async move {
        let mut l = TcpListener::bind(env.wsk, any_local()).await.expect("bind");
        let addr = l.query_local_addr().await.expect("local address");
        let hosts: Vec<_> = (0..CONNECTIONS)
            .map(|i| {
                std::thread::spawn(move || {
                    let mut s = HostStream::connect(addr).expect("host connect");
                    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
                    s.set_nodelay(true).unwrap();
                    for round in 0..ROUNDS {
                        let message = pattern(100, (i * ROUNDS + round) as u8);
                        s.write_all(&message).expect("host write");
                        let mut back = vec![0u8; message.len()];
                        s.read_exact(&mut back).expect("echo back");
                        assert!(back == message, "connection {i}, round {round}: echoed bytes differ");
                    }
                    s.shutdown(std::net::Shutdown::Write).unwrap();
                    let mut rest = Vec::new();
                    let _ = s.read_to_end(&mut rest);
                })
            })
            .collect();
        let mut servers = Vec::new();
        for _ in 0..CONNECTIONS {
            let (mut stream, _) = l.accept().await.expect("an accept the provider cancelled is issued again");
            servers.push(
                env.spawner
                    .spawn(async move {
                        // Each echo goes out at once (no wait for an acknowledgement).
                        stream.set_option(SocketOption::NoDelay(true)).await.expect("TCP_NODELAY");
                        loop {
                            let (n, buf) = stream.recv(IoBuf::with_capacity(4096).expect("buffer")).await;
                            if n.expect("a receive the provider cancelled is issued again") == 0 {
                                break;
                            }
                            let (sent, _) = stream.send_all(buf).await;
                            sent.expect("send");
                        }
                        stream.close().await.expect("close");
                    })
                    .unwrap(),
            );
        }
        finish(servers, hosts, l).await;
    });
    let after = adversary::stats();
    println!("ping-pong: {before:?} -> {after:?}");
    assert!(
        after.provider_cancels > before.provider_cancels,
        "no pending receive or accept was cancelled by the provider"
    );
}

/// 1,500 datagrams from three host senders through a datagram event stream whose
/// receive-from callbacks overlap on several processors: each datagram arrives at most
/// once and intact (a callback that met another one at the stream's ring refuses its
/// datagrams, which the provider then indicates again), and all of them arrive.
/// Datagram `id` of the overlapping-callbacks test: 200 to 899 bytes of `pattern`, the id in
/// its first four bytes.
/// A host client that writes messages of varied sizes (1 byte to 40,000) and reads each one
/// back whole before the next, checking every byte (request and response: what reflection
/// serves).
fn host_ping_pong_client(addr: SocketAddr, seed: u8, rounds: usize) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut s = HostStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(LIMIT)).unwrap();
        for round in 0..rounds {
            let size = 1 + (round * 7919 + usize::from(seed) * 104_729) % 40_000;
            let message = pattern(size, seed.wrapping_add(round as u8));
            s.write_all(&message).expect("write");
            let mut back = vec![0u8; size];
            s.read_exact(&mut back).expect("echo back");
            assert!(back == message, "round {round} of client {seed}: echoed bytes differ");
        }
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        assert!(rest.is_empty(), "client {seed}: bytes after the last echo");
    })
}

/// Echo with reflection on (`EventConfig::reflect`, the echo driver's default) under the
/// adversary: half the clients ping-pong (their messages go back from the receive callback),
/// half stream (reflection gives way to the task's sends); the task sends back what reaches
/// it. Every byte comes back in order although sends complete short (a reflection sends the
/// rest from its completion routine while the stream holds its later items back) and
/// completions move between processors; some bytes were reflected, and the verifier's report
/// is clean.
#[test]
fn echo_with_reflection_keeps_every_byte_in_order() {
    chaos();
    let before = adversary::stats();
    let reflected = run_clean(LIMIT, |env| async move {
        const CONNECTIONS: usize = 8;
        let mut l = TcpListener::bind(env.wsk, any_local()).await.expect("bind");
        let addr = l.query_local_addr().await.expect("local address");
        let hosts: Vec<_> = (0..CONNECTIONS)
            .map(|i| {
                if i % 2 == 0 {
                    host_ping_pong_client(addr, i as u8, 60)
                } else {
                    host_echo_client(addr, pattern(256 * 1024, i as u8))
                }
            })
            .collect();
        let mut servers = Vec::new();
        for _ in 0..CONNECTIONS {
            let (stream, _) = l.accept().await.expect("accept");
            let server = env.spawner.spawn(async move {
                let config = EventConfig { reflect: true, ..EventConfig::default() };
                let Ok((mut events, mut writer)) = stream.into_events(config) else { panic!("events refused") };
                while let Some(event) = events.next().await {
                    match event.expect("event") {
                        ConnectionEvent::Data(data) => {
                            writer.send_received(data).await.expect("send");
                            writer.release_slot();
                        }
                        ConnectionEvent::Disconnected { .. } => break,
                        ConnectionEvent::SendBacklog(_) => {}
                    }
                }
                let reflected = events.reflected_bytes();
                drop(events);
                writer.close().await.expect("close");
                reflected
            });
            servers.push(server.unwrap());
        }
        let mut reflected = 0;
        for server in servers {
            reflected += server.await.unwrap();
        }
        while hosts.iter().any(|h| !h.is_finished()) {
            wsk_executor::sleep(Duration::from_millis(5)).await;
        }
        for host in hosts {
            host.join().expect("host client");
        }
        l.close().await.expect("listener close");
        reflected
    });
    let after = adversary::stats();
    println!("reflection: {reflected} bytes reflected; {before:?} -> {after:?}");
    assert!(reflected > 0, "nothing was reflected");
    assert!(after.short_sends > before.short_sends, "no send completed short");
    assert!(after.moved_completions > before.moved_completions, "no completion moved to another processor");
}

fn numbered_datagram(id: u32) -> Vec<u8> {
    let mut d = pattern(200 + (id as usize % 700), id as u8);
    d[..4].copy_from_slice(&id.to_le_bytes());
    d
}

#[test]
fn datagrams_with_overlapping_callbacks_arrive_once_and_intact() {
    chaos();
    let before = adversary::stats();
    run_clean(LIMIT, |env| async move {
        const SENDERS: u32 = 3;
        const EACH: u32 = 500;
        // Datagrams in flight at most: the host socket's buffer holds them all, so UDP drops
        // none however far the provider falls behind on a loaded machine.
        const WINDOW: usize = 64;
        let mut socket = UdpSocket::bind(env.wsk, any_local()).await.expect("bind");
        let addr = socket.query_local_addr().await.expect("address");
        let mut datagrams = socket.datagrams(EventConfig::default()).expect("events");
        let senders = PacedSenders::start(addr, SENDERS, EACH, WINDOW, numbered_datagram);
        let total = (SENDERS * EACH) as usize;
        let mut seen = vec![false; total];
        let mut count = 0;
        while count < total {
            let batch = match wsk_executor::timeout(Duration::from_secs(10), datagrams.next()).await {
                Ok(batch) => batch.expect("stream ended").expect("batch"),
                Err(_) => panic!("no datagram within 10 s: {count} of {total} arrived"),
            };
            for d in batch.iter() {
                let mut bytes = vec![0u8; d.len()];
                assert_eq!(d.copy_to_slice(&mut bytes), d.len());
                let id = u32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize;
                let expected = pattern(200 + (id % 700), id as u8);
                assert_eq!(bytes.len(), expected.len(), "datagram {id} has its length");
                assert_eq!(&bytes[4..], &expected[4..], "datagram {id} is intact");
                assert!(!seen[id], "datagram {id} arrived twice");
                seen[id] = true;
                count += 1;
            }
            senders.received(batch.len());
        }
        senders.join();
        drop(datagrams);
        socket.close().await.expect("close");
    });
    let after = adversary::stats();
    assert!(after.overlapping_callbacks > before.overlapping_callbacks, "no two callbacks overlapped");
}

/// 300 host connections from three threads to a listener whose accept callbacks overlap:
/// each connection is either served (the driver writes its tag, the host reads it) or
/// refused (the host sees the connection end), never both, never lost; at the end nothing
/// is left open (the harness checks leaks). Whether two callbacks overlap in a round is up to
/// the host's scheduler (on a loaded 2-CPU machine a round of 300 sometimes had none), so
/// rounds are repeated, each checked whole, until one had an overlap (at most 8).
#[test]
fn accepts_with_overlapping_callbacks_lose_no_connection() {
    chaos();
    let before = adversary::stats();
    for _ in 0..8 {
        accept_round();
        if adversary::stats().overlapping_callbacks > before.overlapping_callbacks {
            break;
        }
    }
    let after = adversary::stats();
    assert!(after.overlapping_callbacks > before.overlapping_callbacks, "no two callbacks overlapped in 8 rounds");
}

/// One round of [`accepts_with_overlapping_callbacks_lose_no_connection`].
fn accept_round() {
    let (served, refused) = run_clean(LIMIT, |env| async move {
        const EACH: usize = 100;
        let l = TcpListener::bind(env.wsk, any_local()).await.expect("bind");
        let mut l = l;
        let addr = l.query_local_addr().await.expect("local address");
        let config = EventConfig { accept_backlog: 64, ..EventConfig::default() };
        let mut incoming = l.into_incoming(config).expect("accept events");
        let hosts: Vec<_> = (0..3)
            .map(|_| {
                std::thread::spawn(move || {
                    let mut served = 0;
                    for _ in 0..EACH {
                        let mut s = HostStream::connect(addr).expect("host connect");
                        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                        let mut got = Vec::new();
                        let _ = s.read_to_end(&mut got);
                        if got == b"served" {
                            served += 1;
                        } else {
                            assert!(got.is_empty(), "a connection got {got:?}");
                        }
                    }
                    served
                })
            })
            .collect();
        let mut served_here = 0;
        let total = 3 * EACH;
        while served_here + incoming.refused() < total {
            let accepted = match wsk_executor::timeout(Duration::from_secs(10), incoming.next()).await {
                Ok(accepted) => accepted.expect("stream ended"),
                Err(_) => panic!("no connection within 10 s: {served_here} served, {} refused", incoming.refused()),
            };
            let (mut stream, _) = accepted.expect("accepted");
            let (sent, _) = stream.send_all(IoBuf::copy_from(b"served").unwrap()).await;
            sent.expect("send");
            stream.shutdown().await.expect("shutdown");
            stream.close().await.expect("close");
            served_here += 1;
        }
        while hosts.iter().any(|h| !h.is_finished()) {
            wsk_executor::sleep(Duration::from_millis(5)).await;
        }
        let served_there: usize = hosts.into_iter().map(|h| h.join().expect("host")).sum();
        assert_eq!(served_there, served_here, "the hosts saw as many served connections as the driver");
        let refused = incoming.refused();
        incoming.close().await.expect("listener close");
        (served_here, refused)
    });
    assert_eq!(served + refused, 300, "{served} served + {refused} refused");
    assert!(served > 0);
}
