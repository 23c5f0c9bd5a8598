//! The zero-copy datapath on the emulator's provider with the verifier on: received items sent
//! as WSK indicated them (`send_received`), chained sends (`send_chain`), and no allocation
//! per send or receive in steady state on both receive paths.
//!
//! Each item must go back to WSK exactly once: the verifier stops the run on a second
//! `WskRelease` (`WSK_INDICATION_RELEASED_TWICE`), on a release after close, and on an
//! indication still held when its socket closes (`WSK_INDICATION_HELD_AT_CLOSE`); every test
//! here asserts a clean report.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream as HostStream};
use std::time::Duration;

use futures_lite::StreamExt;
use wsk::events::{ConnectionEvent, ConnectionEvents, EventConfig, Received};
use wsk::send_chain::{Piece, SendChain};
use wsk::{IoBuf, SocketOption, TcpListener, TcpStream, TcpWriteHalf};
use wsk_tests::fixtures::{any_local, bound_listener, pattern};
use wsk_tests::harness::run_clean;

const LIMIT: Duration = Duration::from_secs(60);

async fn accept_events(l: &mut TcpListener, config: EventConfig) -> (ConnectionEvents, TcpWriteHalf) {
    let (stream, _) = l.accept().await.expect("accept");
    stream.into_events(config).expect("enable events")
}

/// The next received item (disconnects and backlog events are not expected here).
async fn next_data(events: &mut ConnectionEvents) -> Received {
    loop {
        match events.next().await.expect("stream ended").expect("event") {
            ConnectionEvent::Data(data) => return data,
            ConnectionEvent::SendBacklog(_) => {}
            other => panic!("unexpected event {other:?}"),
        }
    }
}

/// Echo through `send_received`: 4 MiB written by the host in chunks of varied sizes come
/// back byte-exact, the items sent as WSK indicated them (most of them zero-copy), each
/// released once (the verifier's report is clean).
#[test]
fn echo_from_indications_is_byte_exact() {
    let (zero_copy, total) = run_clean(LIMIT, |env| async move {
        let (mut l, addr) = bound_listener(&env).await;
        let payload = pattern(4 << 20, 11);
        let expected = payload.clone();
        let host = std::thread::spawn(move || {
            let mut s = HostStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            let mut reader = s.try_clone().unwrap();
            let check = std::thread::spawn(move || {
                let mut back = vec![0u8; expected.len()];
                reader.read_exact(&mut back).unwrap();
                assert!(back == expected, "echoed bytes differ");
            });
            let mut at = 0;
            let mut size = 1;
            while at < payload.len() {
                let n = size.min(payload.len() - at);
                s.write_all(&payload[at..at + n]).unwrap();
                at += n;
                size = size * 7 % 100_003 + 1;
            }
            check.join().unwrap();
            s.shutdown(std::net::Shutdown::Write).unwrap();
        });
        let (mut events, mut writer) = accept_events(&mut l, EventConfig::default()).await;
        let (mut zero_copy, mut total) = (0usize, 0usize);
        while let Some(event) = events.next().await {
            match event.expect("event") {
                ConnectionEvent::Data(data) => {
                    total += data.len();
                    if data.is_zero_copy() {
                        zero_copy += data.len();
                    }
                    writer.send_received(data).await.expect("send from indication");
                }
                ConnectionEvent::Disconnected { abortive } => assert!(!abortive),
                ConnectionEvent::SendBacklog(_) => {}
            }
        }
        assert_eq!(events.retained_bytes(), 0, "every item went back to WSK");
        host.join().unwrap();
        writer.shutdown().await.expect("shutdown");
        writer.close().await.expect("close");
        l.close().await.expect("listener close");
        (zero_copy, total)
    });
    assert_eq!(total, 4 << 20);
    assert!(zero_copy > total / 2, "only {zero_copy} of {total} bytes came as WSK's buffers");
}

/// An item sent on another connection: its send is pending (the peer reads nothing and the
/// path is full) when the sending future is dropped. The send is cancelled and the item
/// released once, after the IRP came back: the receiving socket's retained bytes drop to 0
/// and its close resolves (it waits for held items).
#[test]
fn a_cancelled_send_releases_its_item_once() {
    run_clean(LIMIT, |env| async move {
        let (mut l, addr) = bound_listener(&env).await;
        // The sink: a host peer that accepts and never reads until told, with a small
        // receive window.
        let sink = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        sink.set_recv_buffer_size(4096).unwrap();
        sink.bind(&any_local().into()).unwrap();
        sink.listen(1).unwrap();
        let sink: std::net::TcpListener = sink.into();
        let sink_addr = sink.local_addr().unwrap();
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let sink_thread = std::thread::spawn(move || {
            let (mut s, _) = sink.accept().unwrap();
            wait.recv().unwrap();
            // The driver's side closes with data it could not send: a reset is fine.
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest);
        });
        let source = std::thread::spawn(move || {
            let mut s = HostStream::connect(addr).unwrap();
            s.write_all(&pattern(60_000, 5)).unwrap();
            s
        });
        let (mut events, source_writer) = accept_events(&mut l, EventConfig::default()).await;
        let item = next_data(&mut events).await;
        assert!(item.is_zero_copy());
        let mut out = TcpStream::connect(env.wsk, sink_addr).await.expect("connect to the sink");
        // A fixed, small send buffer (no autotuning that would make room later).
        out.set_option(SocketOption::SendBufferSize(4096)).await.expect("SO_SNDBUF");
        // Fill the path to the sink until a send stays pending.
        let mut filled = 0usize;
        loop {
            let mut buf = IoBuf::with_capacity(64 * 1024).unwrap();
            buf.set_len(64 * 1024);
            match wsk_executor::timeout(Duration::from_millis(200), out.send_all(buf)).await {
                Ok((sent, _)) => sent.expect("fill"),
                Err(_) => break,
            }
            filled += 64 * 1024;
            assert!(filled < 512 << 20, "the sink's path never filled");
        }
        let held = events.retained_bytes();
        assert!(held >= item.len(), "the item is retained while held");
        let cancelled = wsk_executor::timeout(Duration::from_millis(200), out.send_received(item)).await;
        assert!(cancelled.is_err(), "the send of the item completed although the path was full");
        // The cancelled IRP comes back, then the item goes back to WSK.
        for _ in 0..2000 {
            if events.retained_bytes() == 0 {
                break;
            }
            wsk_executor::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(events.retained_bytes(), 0, "the cancelled send's item was not released");
        drop(events);
        source_writer.close().await.expect("the source's close (waits for held items)");
        go.send(()).unwrap();
        out.close().await.expect("close");
        l.close().await.expect("listener close");
        drop(source.join().unwrap());
        sink_thread.join().unwrap();
    });
}

/// A chain of buffers (one of them empty, two of them consecutive) and received items, sent
/// on another connection in one `WskSend` (buffers' MDLs and shadow MDLs over the items'
/// pages, linked), arrives in order; the chain comes back with its buffers only, and sending
/// it again sends the same bytes (the links were undone).
#[test]
fn a_chain_of_buffers_and_items_arrives_in_order() {
    run_clean(LIMIT, |env| async move {
        let (mut l, addr) = bound_listener(&env).await;
        let parts: Vec<Vec<u8>> = (0..3u8).map(|i| pattern(3000 + 5000 * usize::from(i), 40 + i)).collect();
        let source_parts = parts.clone();
        let (next, wait) = std::sync::mpsc::channel::<()>();
        let source = std::thread::spawn(move || {
            let mut s = HostStream::connect(addr).unwrap();
            for part in &source_parts {
                s.write_all(part).unwrap();
                // One write per item: wait until the driver took the previous one.
                wait.recv().unwrap();
            }
            s
        });
        let sink = std::net::TcpListener::bind(any_local()).unwrap();
        let sink_addr = sink.local_addr().unwrap();
        let sink_thread = std::thread::spawn(move || {
            let (mut s, _) = sink.accept().unwrap();
            let mut all = Vec::new();
            s.read_to_end(&mut all).unwrap();
            all
        });
        let (mut events, source_writer) = accept_events(&mut l, EventConfig::default()).await;
        let mut items = Vec::new();
        let mut item_bytes = Vec::new();
        for part in &parts {
            let mut got = 0;
            while got < part.len() {
                let item = next_data(&mut events).await;
                let mut bytes = vec![0u8; item.len()];
                item.copy_to_slice(&mut bytes);
                item_bytes.extend_from_slice(&bytes);
                got += item.len();
                items.push(item);
            }
            next.send(()).unwrap();
        }
        assert_eq!(item_bytes, parts.concat());
        let mut out = TcpStream::connect(env.wsk, sink_addr).await.expect("connect to the sink");
        let mut chain = SendChain::new().unwrap();
        let mut expected = Vec::new();
        let mut buffers: Vec<Vec<u8>> = Vec::new();
        let item_count = items.len();
        let mut push_buf = |chain: &mut SendChain, expected: &mut Vec<u8>, bytes: &[u8]| {
            chain.push_buf(IoBuf::copy_from(bytes).unwrap()).unwrap();
            expected.extend_from_slice(bytes);
            buffers.push(bytes.to_vec());
        };
        for (i, item) in items.into_iter().enumerate() {
            push_buf(&mut chain, &mut expected, format!("|{i}|").as_bytes());
            if i == 0 {
                // Two consecutive buffers and an empty one between markers and the item.
                for h in [&b"<head>"[..], b"[", b""] {
                    push_buf(&mut chain, &mut expected, h);
                }
            }
            let mut bytes = vec![0u8; item.len()];
            item.copy_to_slice(&mut bytes);
            expected.extend_from_slice(&bytes);
            chain.push_received(item).unwrap();
        }
        push_buf(&mut chain, &mut expected, b"<tail>");
        assert_eq!(chain.bytes(), expected.len());
        let pieces = chain.len();
        let before = wsk_emulator::counters().irps_completed;
        let (sent, mut chain) = out.send_chain(chain).await;
        sent.expect("chained send");
        let irps = wsk_emulator::counters().irps_completed - before;
        assert_eq!(irps, 1, "the whole chain (buffers and items) goes in one WskSend");
        assert_eq!(events.retained_bytes(), 0, "every item was released when its send completed");
        assert_eq!(chain.len(), pieces - item_count, "the buffers came back, the items did not");
        // The buffers, in order and unchanged; pushed back for a second send.
        let mut back = Vec::new();
        while let Some(piece) = chain.pop() {
            let Piece::Buf(buf) = piece else { panic!("an item came back") };
            back.push(buf);
        }
        back.reverse();
        let back_bytes: Vec<Vec<u8>> = back.iter().map(|buf| buf.as_slice().to_vec()).collect();
        assert_eq!(back_bytes, buffers);
        for buf in back {
            chain.push_buf(buf).unwrap();
        }
        expected.extend_from_slice(&buffers.concat());
        let (sent, chain) = out.send_chain(chain).await;
        sent.expect("second chained send");
        drop(chain);
        drop(events);
        source_writer.close().await.expect("source close");
        out.shutdown().await.expect("shutdown");
        out.close().await.expect("close");
        l.close().await.expect("listener close");
        drop(source.join().unwrap());
        let all = sink_thread.join().unwrap();
        assert!(all == expected, "the sink got {} bytes, expected {}", all.len(), expected.len());
    });
}

/// Rounds measured after the warm-up.
const ROUNDS: usize = 200;
/// Bytes per round: a message that comes as one indication, and one that comes as several
/// (the provider indicates at most 16 KiB per indication), sent over shadow MDLs.
const ROUND_SIZES: [usize; 2] = [1500, 40_000];

/// A host peer that writes `rounds` messages of `size` bytes and reads each one back before
/// the next (ping-pong), checking the bytes.
fn ping_pong(addr: SocketAddr, rounds: usize, size: usize) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut s = HostStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut back = vec![0u8; size];
        for round in 0..rounds {
            let message = pattern(size, round as u8);
            s.write_all(&message).unwrap();
            s.read_exact(&mut back).unwrap();
            assert!(back == message, "round {round} came back different");
        }
        s.shutdown(std::net::Shutdown::Write).unwrap();
    })
}

/// Round trips before the measured ones.
const WARM_UP: usize = 20;

/// Echoes [`WARM_UP`] rounds through the async closure `$echo` (its argument: the rounds to
/// echo), then [`ROUNDS`] more, and waits for the host peer `$host`, which played all of
/// them: the emulator's allocations during the measured rounds. A macro, since a function
/// taking an `AsyncFnMut` cannot promise the `Send` future that `run_clean` needs.
macro_rules! allocations_in_steady_state {
    ($echo:ident, $host:expr) => {{
        $echo(WARM_UP).await;
        let before = wsk_emulator::counters();
        $echo(ROUNDS).await;
        let after = wsk_emulator::counters();
        $host.join().unwrap();
        after.allocations() - before.allocations()
    }};
}

/// Round trips on the event path, each item sent back as received: after a warm-up, no
/// allocation of any kind (pool, IRP, MDL, work item) per receive or send, for items of one
/// indication and of several (one send over the write half's shadow MDLs).
#[test]
fn event_path_echo_allocates_nothing_in_steady_state() {
    for size in ROUND_SIZES {
        let (allocations, several, _) = event_rounds(size, false);
        assert_eq!(allocations, 0, "allocations during {ROUNDS} event-path round trips of {size} bytes");
        if size > 16 * 1024 {
            assert!(several > 0, "no item of several indications at {size} bytes");
        }
    }
}

/// The same round trips on the event path with each round's items gathered into one chain
/// (what `try_next_data` hands out without waiting, as the echo driver does) and sent with
/// one `send_chain`: no allocation per round after the warm-up (each round's chain and its
/// shadow sets come from the library's caches and go back after the send), and some rounds
/// gather more than one item.
#[test]
fn chained_event_echo_allocates_nothing_in_steady_state() {
    // 200,000 bytes are more than one indication chain (64 KiB): the provider indicates a
    // round's message in several chains, often before the task takes the first.
    for size in [1500, 200_000] {
        let (allocations, _, gathered) = event_rounds(size, true);
        assert_eq!(allocations, 0, "allocations during {ROUNDS} chained round trips of {size} bytes");
        if size > 64 * 1024 {
            assert!(gathered > 0, "no round gathered two items at {size} bytes");
        }
    }
}

/// Ping-pong rounds of `size` bytes echoed on the event path, each item with `send_received`,
/// or (`chained`) every item already there gathered into one reused chain and sent with
/// `send_chain`: the allocations of the measured rounds, the items of several indications,
/// and the sends that carried more than one item.
fn event_rounds(size: usize, chained: bool) -> (u64, usize, usize) {
    run_clean(LIMIT, move |env| async move {
        let (mut l, addr) = bound_listener(&env).await;
        let host = ping_pong(addr, WARM_UP + ROUNDS, size);
        let (mut events, mut writer) = accept_events(&mut l, EventConfig::default()).await;
        let (mut several, mut gathered) = (0, 0);
        let mut echo = async |rounds: usize| {
            let mut left = rounds * size;
            while left > 0 {
                let item = next_data(&mut events).await;
                left -= item.len();
                several += usize::from(item.segments().count() > 1);
                if !chained {
                    writer.send_received(item).await.expect("send from indication");
                    continue;
                }
                // A chain per round, from the library's cache and back to it.
                let mut ch = SendChain::new().unwrap();
                let mut next = Some(item);
                while let Some(item) = next.take() {
                    ch.push_received(item).unwrap();
                    if !ch.is_full() {
                        next = events.try_next_data();
                        left -= next.as_ref().map_or(0, Received::len);
                    }
                }
                gathered += usize::from(ch.len() > 1);
                let (sent, back) = writer.send_chain(ch).await;
                sent.expect("chained send");
                assert!(back.is_empty(), "items are released, no buffer was in the chain");
            }
        };
        let allocations = allocations_in_steady_state!(echo, host);
        drop(events);
        writer.close().await.expect("close");
        l.close().await.expect("listener close");
        (allocations, several, gathered)
    })
}

/// The same round trips on the IRP path (`recv` into one buffer, `send_all` of it).
#[test]
fn irp_path_echo_allocates_nothing_in_steady_state() {
    for size in ROUND_SIZES {
        let allocations = run_clean(LIMIT, move |env| async move {
            let (mut l, addr) = bound_listener(&env).await;
            let host = ping_pong(addr, WARM_UP + ROUNDS, size);
            let (mut stream, _) = l.accept().await.expect("accept");
            let mut buf = Some(IoBuf::with_capacity(64 * 1024).unwrap());
            let mut echo = async |rounds: usize| {
                let mut left = rounds * size;
                while left > 0 {
                    let (got, back) = stream.recv(buf.take().unwrap()).await;
                    let n = got.expect("receive");
                    assert!(n > 0, "unexpected end of stream");
                    left -= n;
                    let (sent, back) = stream.send_all(back).await;
                    sent.expect("send");
                    buf = Some(back);
                }
            };
            let allocations = allocations_in_steady_state!(echo, host);
            drop(buf);
            stream.close().await.expect("close");
            l.close().await.expect("listener close");
            allocations
        });
        assert_eq!(allocations, 0, "allocations during {ROUNDS} IRP-path round trips of {size} bytes");
    }
}

/// A chained send that fails (the connection was reset) releases the items it did not send
/// and hands the buffers back; a batch of datagrams refuses a received item (not a datagram)
/// with `InvalidInput`, sends nothing, and leaves the item in the chain, unreleased.
#[test]
fn failed_and_refused_sends_release_or_keep_their_items() {
    run_clean(LIMIT, |env| async move {
        let (mut l, addr) = bound_listener(&env).await;
        let source = std::thread::spawn(move || {
            let mut s = HostStream::connect(addr).unwrap();
            // Two writes apart in time: two items.
            s.write_all(&pattern(5_000, 9)).unwrap();
            std::thread::sleep(Duration::from_millis(200));
            s.write_all(&pattern(5_000, 10)).unwrap();
            s
        });
        let (mut events, source_writer) = accept_events(&mut l, EventConfig::default()).await;
        let first = next_data(&mut events).await;
        let second = next_data(&mut events).await;

        // A batch refuses the item: nothing sent, the chain back as it was.
        let host_udp = std::net::UdpSocket::bind(any_local()).unwrap();
        let mut udp = wsk::UdpSocket::bind(env.wsk, any_local()).await.expect("bind");
        let mut chain = SendChain::new().unwrap();
        chain.push_buf(IoBuf::copy_from(b"datagram").unwrap()).unwrap();
        chain.push_received(first).unwrap();
        let (sent, mut chain) = udp.send_batch_to(chain, host_udp.local_addr().unwrap()).await;
        assert!(matches!(sent, Err(wsk::Error::InvalidInput(_))), "{sent:?}");
        assert_eq!(chain.len(), 2);
        assert!(events.retained_bytes() > 0, "the refused item is still held");

        // A chained send on a reset connection: its items are released all the same.
        let sink = std::net::TcpListener::bind(any_local()).unwrap();
        let sink_addr = sink.local_addr().unwrap();
        let sink_thread = std::thread::spawn(move || drop(sink.accept().unwrap()));
        let mut out = TcpStream::connect(env.wsk, sink_addr).await.expect("connect to the sink");
        out.abort().await.expect("abort");
        chain.push_received(second).unwrap();
        let (sent, chain) = out.send_chain(chain).await;
        assert!(sent.is_err(), "a send on a reset connection succeeded");
        assert_eq!(events.retained_bytes(), 0, "both items went back to WSK");
        assert_eq!(chain.len(), 1, "the buffer came back");
        drop(chain);
        drop(events);
        source_writer.close().await.expect("source close");
        out.close().await.expect("close");
        udp.close().await.expect("udp close");
        l.close().await.expect("listener close");
        drop(source.join().unwrap());
        sink_thread.join().unwrap();
    });
}

/// An item of several indications goes out in one `WskSend` (over the write half's shadow
/// MDLs), not one per indication: a send per indication would meet Nagle's algorithm between
/// the pieces. The item here holds 64 KiB written at once, which the provider indicates as
/// several pieces; its send completes exactly one IRP, and the bytes arrive whole.
#[test]
fn an_item_of_several_indications_is_one_send() {
    run_clean(LIMIT, |env| async move {
        let (mut l, addr) = bound_listener(&env).await;
        let message = pattern(64 * 1024, 21);
        let expected = message.clone();
        let host = std::thread::spawn(move || {
            let mut s = HostStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            s.write_all(&message).unwrap();
            let mut back = vec![0u8; message.len()];
            s.read_exact(&mut back).unwrap();
            back
        });
        let (mut events, mut writer) = accept_events(&mut l, EventConfig::default()).await;
        let mut sends = Vec::new();
        let mut left = expected.len();
        while left > 0 {
            let item = next_data(&mut events).await;
            left -= item.len();
            let pieces = item.segments().count();
            let before = wsk_emulator::counters().irps_completed;
            writer.send_received(item).await.expect("send from indication");
            sends.push((pieces, wsk_emulator::counters().irps_completed - before));
        }
        assert_eq!(host.join().unwrap(), expected);
        assert!(sends.iter().any(|&(pieces, _)| pieces > 1), "no item of several pieces came: {sends:?}");
        for (pieces, irps) in sends {
            assert_eq!(irps, 1, "an item of {pieces} pieces took {irps} sends");
        }
        drop(events);
        writer.close().await.expect("close");
        l.close().await.expect("listener close");
    });
}

/// A chain of items that need more shadow MDLs than one set has (9 items of one piece each,
/// 8 MDLs a set) and buffers goes in one `WskSend` all the same, over several sets; the bytes
/// arrive in order and every item is released.
#[test]
fn a_chain_beyond_one_shadow_set_is_still_one_send() {
    let (items, irps) = chain_of_items(9, |i| 100 + i, 2);
    assert!(items > 8, "the items fit one shadow set ({items})");
    assert_eq!(irps, 1, "sends of the chain");
}

/// A chain whose items need more shadow MDLs than a chain's sets have (11 items of three
/// pieces each, 32 MDLs in all) goes piece by piece instead: runs of buffers as one
/// `WskSend`, items one per indication; the bytes still arrive in order and every item is
/// released.
#[test]
fn a_chain_beyond_the_shadow_mdls_goes_piece_by_piece_in_order() {
    // 33 KiB written at once arrives whole and is indicated in three pieces of at most 16 KiB.
    let (items, irps) = chain_of_items(11, |i| 33 * 1024 + i, 3);
    assert!(items >= 11, "items in the chain ({items})");
    assert!(irps > 1, "sent piece by piece");
}

/// Sends a chain of `writes` received items (the host writes `size(i)` bytes at a time, each
/// taken whole before the next is written) with a buffer of ours after every `buffer_every`-th
/// item, to a host sink; checks the bytes and the releases. Returns the items in the chain and
/// the IRPs its send completed.
fn chain_of_items(writes: usize, size: fn(usize) -> usize, buffer_every: usize) -> (usize, u64) {
    run_clean(LIMIT, move |env| async move {
        let (mut l, addr) = bound_listener(&env).await;
        let (next, wait) = std::sync::mpsc::channel::<()>();
        let source = std::thread::spawn(move || {
            let mut s = HostStream::connect(addr).unwrap();
            for i in 0..writes {
                s.write_all(&pattern(size(i), i as u8)).unwrap();
                wait.recv().unwrap();
            }
            s
        });
        let sink = std::net::TcpListener::bind(any_local()).unwrap();
        let sink_addr = sink.local_addr().unwrap();
        let sink_thread = std::thread::spawn(move || {
            let (mut s, _) = sink.accept().unwrap();
            let mut all = Vec::new();
            s.read_to_end(&mut all).unwrap();
            all
        });
        // Room to hold every item (zero-copy) until the chain is sent.
        let config = EventConfig { max_retained_bytes: 1 << 20, ..EventConfig::default() };
        let (mut events, source_writer) = accept_events(&mut l, config).await;
        let mut chain = SendChain::new().unwrap();
        let (mut expected, mut buffers) = (Vec::new(), 0);
        for i in 0..writes {
            let mut got = 0;
            while got < size(i) {
                let item = next_data(&mut events).await;
                let mut bytes = vec![0u8; item.len()];
                item.copy_to_slice(&mut bytes);
                expected.extend_from_slice(&bytes);
                got += item.len();
                chain.push_received(item).unwrap();
            }
            next.send(()).unwrap();
            if i % buffer_every == 0 {
                chain.push_buf(IoBuf::copy_from(format!("<{i}>").as_bytes()).unwrap()).unwrap();
                expected.extend_from_slice(format!("<{i}>").as_bytes());
                buffers += 1;
            }
        }
        let items = chain.len() - buffers;
        let mut out = TcpStream::connect(env.wsk, sink_addr).await.expect("connect to the sink");
        let before = wsk_emulator::counters().irps_completed;
        let (sent, chain) = out.send_chain(chain).await;
        sent.expect("chained send");
        let irps = wsk_emulator::counters().irps_completed - before;
        assert_eq!(events.retained_bytes(), 0, "every item was released");
        assert_eq!(chain.len(), buffers, "the buffers came back");
        let mut chain = chain;
        while chain.pop().is_some() {}
        // The chain's block and shadow sets go back to the library's caches (the sets when
        // the send completed, or at the latest with the chain), not to the pool: dropping the
        // chain frees nothing.
        let before = wsk_emulator::counters();
        drop(chain);
        let after = wsk_emulator::counters();
        assert_eq!(after.mdl_frees - before.mdl_frees, 0, "MDLs freed with the chain");
        assert_eq!(after.pool_frees - before.pool_frees, 0, "pool blocks freed with the chain");
        drop(events);
        source_writer.close().await.expect("source close");
        out.shutdown().await.expect("shutdown");
        // The sink reads everything up to the FIN before the close (which resets a connection
        // not shut down both ways) can cut it short.
        assert!(sink_thread.join().unwrap() == expected, "bytes out of order");
        out.close().await.expect("close");
        l.close().await.expect("listener close");
        drop(source.join().unwrap());
        (items, irps)
    })
}
