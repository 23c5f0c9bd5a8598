//! Calls with a deadline (`recv_timeout`, `recv_from_timeout`, `accept_timeout`,
//! `connect_timeout`): at the deadline the IRP is cancelled and its completion awaited, so the
//! caller gets `TimedOut` with its buffer back; data that arrives first (or wins the race
//! with the cancel) is returned; the socket stays usable; and a timed call allocates nothing.

use std::io::Write;
use std::net::{TcpListener as HostListener, TcpStream as HostStream};
use std::time::{Duration, Instant};

use wsk::{Error, IoBuf, TcpSocket, TcpStream, UdpSocket};
use wsk_tests::harness::run_clean;

use crate::{LIMIT, PROMPT, listener, local};

/// The deadline of the calls that are meant to time out.
const SHORT: Duration = Duration::from_millis(50);

/// Where the buffer's memory is: the same buffer comes back when this does.
fn address(buf: &mut IoBuf) -> usize {
    buf.as_mut_capacity().as_ptr().addr()
}

#[test]
fn recv_timeout_without_data_times_out_with_the_same_buffer() {
    run_clean(LIMIT, |env| async move {
        let (mut l, addr) = listener(&env, local(0)).await;
        let mut c = TcpStream::connect(env.wsk, addr).await.expect("connect");
        let (server, _) = l.accept().await.expect("accept");
        let mut buf = IoBuf::with_capacity(100).unwrap();
        let at = address(&mut buf);
        let start = Instant::now();
        let (r, mut back) = c.recv_timeout(buf, SHORT).await;
        let took = start.elapsed();
        assert_eq!(r, Err(Error::TimedOut));
        assert!(r.unwrap_err().is_timeout());
        assert_eq!(back.capacity(), 100);
        assert_eq!(address(&mut back), at, "the caller's own buffer comes back");
        assert!(took >= SHORT, "not before the deadline: {took:?}");
        assert!(took < PROMPT, "promptly after it: {took:?}");
        server.close().await.unwrap();
        c.close().await.unwrap();
        l.close().await.unwrap();
    });
}

#[test]
fn data_there_before_the_deadline_is_returned() {
    run_clean(LIMIT, |env| async move {
        let (mut l, addr) = listener(&env, local(0)).await;
        let mut c = TcpStream::connect(env.wsk, addr).await.expect("connect");
        let (mut server, _) = l.accept().await.expect("accept");
        server.send_all(IoBuf::copy_from(b"hello").unwrap()).await.0.expect("send");
        let start = Instant::now();
        let mut got = Vec::new();
        let mut buf = IoBuf::with_capacity(64).unwrap();
        while got.len() < 5 {
            let (r, back) = c.recv_timeout(buf, LIMIT).await;
            buf = back;
            assert!(r.expect("data before the deadline") > 0);
            got.extend_from_slice(buf.as_slice());
        }
        assert_eq!(got, b"hello");
        assert!(start.elapsed() < PROMPT);
        server.close().await.unwrap();
        c.close().await.unwrap();
        l.close().await.unwrap();
    });
}

/// Timeouts between pieces of data, and short deadlines racing data that arrives: every byte
/// reaches a later receive, in order, and the connection keeps working.
#[test]
fn the_stream_stays_usable_after_timeouts_and_loses_no_byte() {
    let host = HostListener::bind("127.0.0.1:0").unwrap();
    let addr = host.local_addr().unwrap();
    const PIECES: usize = 40;
    let payload: Vec<u8> = (0..PIECES * 100).map(|i| (i % 251) as u8).collect();
    let sent = payload.clone();
    let peer = std::thread::spawn(move || {
        let (mut s, _) = host.accept().unwrap();
        // Nothing at first: the client's first receives time out.
        std::thread::sleep(Duration::from_millis(200));
        for piece in sent.chunks(100) {
            s.write_all(piece).unwrap();
            // About the client's deadline: some receives time out, some get the data, some
            // race the cancel.
            std::thread::sleep(Duration::from_millis(2));
        }
        s
    });
    let (got, timeouts) = run_clean(LIMIT, move |env| async move {
        let mut c = TcpStream::connect(env.wsk, addr).await.expect("connect");
        let mut timeouts = 0;
        for _ in 0..3 {
            let (r, _) = c.recv_timeout(IoBuf::with_capacity(64).unwrap(), Duration::from_millis(10)).await;
            assert_eq!(r, Err(Error::TimedOut), "nothing was sent yet");
            timeouts += 1;
        }
        let mut got = Vec::new();
        let mut buf = IoBuf::with_capacity(64).unwrap();
        let start = Instant::now();
        while got.len() < PIECES * 100 {
            assert!(start.elapsed() < LIMIT / 2, "stuck after {} bytes", got.len());
            let (r, back) = c.recv_timeout(buf, Duration::from_millis(2)).await;
            buf = back;
            match r {
                Ok(n) => {
                    assert!(n > 0, "unexpected end of stream");
                    got.extend_from_slice(buf.as_slice());
                }
                Err(Error::TimedOut) => timeouts += 1,
                Err(e) => panic!("recv_timeout: {e}"),
            }
        }
        // And a plain receive afterwards still works.
        let (r, _) = c.recv_timeout(IoBuf::with_capacity(8).unwrap(), SHORT).await;
        assert_eq!(r, Err(Error::TimedOut), "nothing more was sent");
        c.close().await.unwrap();
        (got, timeouts)
    });
    drop(peer.join().unwrap());
    assert_eq!(got, payload, "every byte, in order");
    assert!(timeouts >= 3, "{timeouts} timeouts");
}

#[test]
fn recv_from_timeout_on_udp() {
    run_clean(LIMIT, |env| async move {
        let mut a = UdpSocket::bind(env.wsk, local(0)).await.expect("bind");
        let mut peer = UdpSocket::bind(env.wsk, local(0)).await.expect("bind peer");
        let mut buf = IoBuf::with_capacity(64).unwrap();
        let at = address(&mut buf);
        let start = Instant::now();
        let (r, mut back) = a.recv_from_timeout(buf, SHORT).await;
        assert_eq!(r, Err(Error::TimedOut));
        assert!(start.elapsed() >= SHORT && start.elapsed() < PROMPT, "{:?}", start.elapsed());
        assert_eq!(address(&mut back), at, "the same buffer");
        peer.send_to(IoBuf::copy_from(b"datagram").unwrap(), a.local_addr()).await.0.expect("send_to");
        let (r, back) = a.recv_from_timeout(back, LIMIT).await;
        assert_eq!(r, Ok((8, peer.local_addr())));
        assert_eq!(back.as_slice(), b"datagram");
        // The receive half has it too.
        let (mut recv, send) = a.into_split();
        let (r, _) = recv.recv_from_timeout(IoBuf::with_capacity(8).unwrap(), SHORT).await;
        assert_eq!(r, Err(Error::TimedOut));
        recv.reunite(send).expect("reunite").close().await.unwrap();
        peer.close().await.unwrap();
    });
}

#[test]
fn accept_timeout_times_out_then_accepts() {
    run_clean(LIMIT, |env| async move {
        let (mut l, addr) = listener(&env, local(0)).await;
        let start = Instant::now();
        assert_eq!(l.accept_timeout(SHORT).await.err(), Some(Error::TimedOut));
        assert!(start.elapsed() >= SHORT && start.elapsed() < PROMPT, "{:?}", start.elapsed());
        // Again: the connection's reserved resources stayed with the listener.
        assert_eq!(l.accept_timeout(SHORT).await.err(), Some(Error::TimedOut));
        let mut c = TcpStream::connect(env.wsk, addr).await.expect("connect");
        let (mut s, peer) = l.accept_timeout(LIMIT).await.expect("accept within the deadline");
        assert_eq!(Some(peer), c.query_local_addr().await.ok());
        s.send_all(IoBuf::copy_from(b"x").unwrap()).await.0.unwrap();
        let (r, _) = c.recv_timeout(IoBuf::with_capacity(8).unwrap(), LIMIT).await;
        assert_eq!(r, Ok(1));
        s.close().await.unwrap();
        c.close().await.unwrap();
        l.close().await.unwrap();
    });
}

/// The unanswered address: a host listener whose accept queue is full (backlog 0, filled by
/// connections nobody accepts), so the kernel drops further SYNs and a connect stays pending
/// (as `close_with_pending_connect_resolves_promptly` uses).
#[test]
fn connect_timeout_to_an_unanswered_address() {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&local(0).into()).unwrap();
    socket.listen(0).unwrap();
    let full = socket.local_addr().unwrap().as_socket().unwrap();
    let fillers: Vec<_> =
        (0..4).filter_map(|_| HostStream::connect_timeout(&full, Duration::from_millis(300)).ok()).collect();
    run_clean(LIMIT, move |env| async move {
        let mut s = TcpSocket::new_v4(env.wsk).await.expect("socket");
        s.bind(local(0)).await.expect("bind");
        let start = Instant::now();
        assert_eq!(s.connect_timeout(full, SHORT).await.err(), Some(Error::TimedOut));
        assert!(start.elapsed() >= SHORT && start.elapsed() < PROMPT, "{:?}", start.elapsed());
        let start = Instant::now();
        assert_eq!(TcpStream::connect_timeout(env.wsk, full, SHORT).await.err(), Some(Error::TimedOut));
        assert!(start.elapsed() >= SHORT && start.elapsed() < PROMPT, "{:?}", start.elapsed());
        // A listener that answers: connected within the deadline.
        let (mut l, addr) = listener(&env, local(0)).await;
        let c = TcpStream::connect_timeout(env.wsk, addr, LIMIT).await.expect("connect within the deadline");
        let (s, _) = l.accept().await.unwrap();
        s.close().await.unwrap();
        c.close().await.unwrap();
        l.close().await.unwrap();
    });
    drop((fillers, socket));
}

/// After a warm-up, timed receives (timing out, and getting data) allocate nothing: the timer
/// lives in the receive slot.
#[test]
fn timed_receives_allocate_nothing_in_steady_state() {
    run_clean(LIMIT, |env| async move {
        let (mut l, addr) = listener(&env, local(0)).await;
        let mut c = TcpStream::connect(env.wsk, addr).await.expect("connect");
        let (mut server, _) = l.accept().await.expect("accept");
        let mut buf = IoBuf::with_capacity(64).unwrap();
        let mut data = IoBuf::copy_from(b"ping").unwrap();
        let mut udp = UdpSocket::bind(env.wsk, local(0)).await.expect("bind");
        let mut dgram = IoBuf::with_capacity(64).unwrap();
        let mut round = async |buf: IoBuf, data: IoBuf, dgram: IoBuf| {
            let (r, buf) = c.recv_timeout(buf, Duration::from_millis(1)).await;
            assert_eq!(r, Err(Error::TimedOut));
            let (r, data) = server.send(data).await;
            r.expect("send");
            let (mut got, mut buf) = (0, buf);
            while got < 4 {
                let (r, back) = c.recv_timeout(buf, LIMIT).await;
                buf = back;
                let n = r.expect("data");
                assert!(n > 0, "unexpected end of stream");
                got += n;
            }
            let (r, dgram) = udp.recv_from_timeout(dgram, Duration::from_millis(1)).await;
            assert_eq!(r, Err(Error::TimedOut));
            assert!(l.accept_timeout(Duration::from_millis(1)).await.is_err());
            (buf, data, dgram)
        };
        // Warm-up: the write half's slot, the listener's reserved connection parts.
        (buf, data, dgram) = round(buf, data, dgram).await;
        let before = wsk_emulator::counters();
        const ROUNDS: u64 = 50;
        for _ in 0..ROUNDS {
            (buf, data, dgram) = round(buf, data, dgram).await;
        }
        let after = wsk_emulator::counters();
        assert_eq!(after.allocations() - before.allocations(), 0, "allocations during {ROUNDS} rounds");
        assert!(after.timers_fired - before.timers_fired >= 3 * ROUNDS, "the deadlines expired");
        drop((buf, data, dgram));
        udp.close().await.unwrap();
        server.close().await.unwrap();
        c.close().await.unwrap();
        l.close().await.unwrap();
    });
}
