//! The `wsk` sockets on the emulator's WSK provider, verifier on: every operation's success
//! and failure paths, the close contract, cancellation, and scale.

use std::future::Future;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener as HostListener, TcpStream as HostStream};
use std::time::Duration;

use wsk::{Error, IoBuf, SocketOption, TcpListener, TcpSocket, TcpStream, UdpSocket};
use wsk_executor::timeout;
use wsk_sys::{STATUS_CONNECTION_REFUSED, STATUS_CONNECTION_RESET};
use wsk_tests::harness::{Env, run_clean};

mod connected_udp;
mod datagram_flags;
mod deadline;
mod dual_stack;
mod errors;
mod idle;
mod keepalive;
mod local_addr;
mod option_values;
mod tcp_socket;
mod udp_split;

const LIMIT: Duration = Duration::from_secs(60);
/// Bound for "resolves promptly" (generous: this is about hangs, not speed).
const PROMPT: Duration = Duration::from_secs(10);

fn local(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

async fn listener(env: &Env, addr: SocketAddr) -> (TcpListener, SocketAddr) {
    let mut l = TcpListener::bind(env.wsk, addr).await.expect("bind");
    let bound = l.query_local_addr().await.expect("local address");
    (l, bound)
}

async fn echo_once(stream: &mut TcpStream, payload: &[u8]) -> Vec<u8> {
    let (sent, _) = stream.send_all(IoBuf::copy_from(payload).unwrap()).await;
    sent.expect("send_all");
    let mut got = Vec::new();
    let mut buf = IoBuf::with_capacity(64 * 1024).unwrap();
    while got.len() < payload.len() {
        let (n, back) = stream.recv(buf).await;
        buf = back;
        let n = n.expect("recv");
        assert!(n > 0, "unexpected end of stream");
        got.extend_from_slice(buf.as_slice());
    }
    got
}

/// Receives exactly `len` bytes, however the provider splits them: a receive completes with
/// what is there, part of what the peer sent included (TCP is a byte stream). Each receive
/// asks for no more than is still missing, so nothing beyond the `len` bytes is taken.
async fn recv_exact(stream: &mut TcpStream, len: usize) -> Vec<u8> {
    let mut got = Vec::with_capacity(len);
    while got.len() < len {
        let (n, buf) = stream.recv(IoBuf::with_capacity(len - got.len()).unwrap()).await;
        let n = n.expect("recv");
        assert!(n > 0, "end of stream after {} of {len} bytes", got.len());
        assert_eq!(n, buf.len());
        got.extend_from_slice(buf.as_slice());
    }
    got
}

/// Receives until end of stream and returns every byte.
async fn recv_to_end(stream: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = IoBuf::with_capacity(64 * 1024).unwrap();
    loop {
        let (n, back) = stream.recv(buf).await;
        buf = back;
        if n.expect("recv") == 0 {
            return got;
        }
        got.extend_from_slice(buf.as_slice());
    }
}

/// Accepts one connection and echoes it until end of stream, then disconnects and closes.
async fn serve_one(mut l: TcpListener) -> TcpListener {
    let (mut s, _) = l.accept().await.expect("accept");
    let mut buf = IoBuf::with_capacity(64 * 1024).unwrap();
    loop {
        let (n, back) = s.recv(buf).await;
        buf = back;
        if n.expect("server recv") == 0 {
            break;
        }
        let (sent, back) = s.send_all(buf).await;
        buf = back;
        sent.expect("server send");
    }
    s.shutdown().await.expect("server shutdown");
    s.close().await.expect("server close");
    l
}

fn tcp_roundtrip(bind: SocketAddr) {
    run_clean(LIMIT, move |env| async move {
        let (l, addr) = listener(&env, bind).await;
        let server = env.spawner.spawn(serve_one(l)).unwrap();
        let mut c = TcpStream::connect(env.wsk, addr).await.expect("connect");
        assert_eq!(c.peer_addr(), Some(addr));
        let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        assert_eq!(echo_once(&mut c, &payload).await, payload);
        c.shutdown().await.expect("shutdown");
        let (n, _) = c.recv(IoBuf::with_capacity(16).unwrap()).await;
        assert_eq!(n, Ok(0), "end of stream after the server's disconnect");
        c.close().await.expect("close");
        server.await.unwrap().close().await.expect("listener close");
    });
}

#[test]
fn tcp_roundtrip_ipv4() {
    tcp_roundtrip(local(0));
}

#[test]
fn tcp_roundtrip_ipv6() {
    tcp_roundtrip(SocketAddr::from((Ipv6Addr::LOCALHOST, 0)));
}

#[test]
fn connect_through_socket_bind_connect() {
    run_clean(LIMIT, |env| async move {
        let (l, addr) = listener(&env, local(0)).await;
        let server = env.spawner.spawn(serve_one(l)).unwrap();
        let mut c = TcpStream::connect_from(env.wsk, local(0), addr).await.expect("connect_from");
        assert_eq!(echo_once(&mut c, b"hello").await, b"hello");
        assert_eq!(c.query_peer_addr().await, Ok(addr));
        assert!(c.query_local_addr().await.expect("local").port() != 0);
        // Disconnect first: a close alone would abort the connection (WSK close rule 5).
        c.shutdown().await.unwrap();
        assert_eq!(c.recv(IoBuf::with_capacity(8).unwrap()).await.0, Ok(0));
        c.close().await.unwrap();
        server.await.unwrap().close().await.unwrap();
    });
}

#[test]
fn refused_connect_reports_the_status() {
    let port = HostListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let err = run_clean(LIMIT, move |env| async move { TcpStream::connect(env.wsk, local(port)).await.err() });
    assert_eq!(err, Some(Error::Status(STATUS_CONNECTION_REFUSED)));
    assert_eq!(err.unwrap().to_string(), "STATUS_CONNECTION_REFUSED (0xC0000236)");
}

#[test]
fn address_in_use_is_an_error() {
    let host = HostListener::bind("127.0.0.1:0").unwrap();
    let port = host.local_addr().unwrap().port();
    let err = run_clean(LIMIT, move |env| async move {
        TcpListener::bind_with(env.wsk, local(port), &[SocketOption::ExclusiveAddressUse(true)]).await.err()
    });
    drop(host);
    assert!(matches!(err, Some(Error::Status(_))), "{err:?}");
}

#[test]
fn peer_reset_in_the_middle_of_a_receive() {
    let host = HostListener::bind("127.0.0.1:0").unwrap();
    let addr = host.local_addr().unwrap();
    let peer = std::thread::spawn(move || {
        let (s, _) = host.accept().unwrap();
        std::thread::sleep(Duration::from_millis(200));
        socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO)).unwrap();
        drop(s);
    });
    let result = run_clean(LIMIT, move |env| async move {
        let mut c = TcpStream::connect(env.wsk, addr).await.expect("connect");
        let (n, _) = c.recv(IoBuf::with_capacity(1024).unwrap()).await;
        c.close().await.unwrap();
        n
    });
    peer.join().unwrap();
    assert_eq!(result, Err(Error::Status(STATUS_CONNECTION_RESET)));
}

#[test]
fn zero_length_and_16_mib_buffers() {
    let host = HostListener::bind("127.0.0.1:0").unwrap();
    let addr = host.local_addr().unwrap();
    const BIG: usize = 16 * 1024 * 1024;
    let peer = std::thread::spawn(move || {
        let (mut s, _) = host.accept().unwrap();
        let mut all = Vec::new();
        s.read_to_end(&mut all).unwrap();
        s.write_all(&all).unwrap();
        all.len()
    });
    run_clean(LIMIT, move |env| async move {
        let mut c = TcpStream::connect(env.wsk, addr).await.expect("connect");
        let (n, empty) = c.send(IoBuf::with_capacity(0).unwrap()).await;
        assert_eq!(n, Ok(0));
        drop(empty);
        let mut big = IoBuf::with_capacity(BIG).unwrap();
        for (i, b) in big.as_mut_capacity().iter_mut().enumerate() {
            *b = (i % 253) as u8;
        }
        big.set_len(BIG);
        let (sent, big) = c.send_all(big).await;
        sent.expect("16 MiB send_all");
        c.shutdown().await.unwrap();
        let mut back = IoBuf::with_capacity(BIG).unwrap();
        let mut total = 0;
        loop {
            let (n, b) = c.recv(back).await;
            back = b;
            let n = n.expect("recv");
            if n == 0 {
                break;
            }
            assert_eq!(back.as_slice(), &big.as_slice()[total..total + n]);
            total += n;
        }
        assert_eq!(total, BIG);
        c.close().await.unwrap();
    });
    assert_eq!(peer.join().unwrap(), BIG);
}

#[test]
fn invalid_inputs_are_errors_not_crashes() {
    run_clean(LIMIT, |env| async move {
        // Mixed families.
        let mixed = TcpStream::connect_from(env.wsk, local(0), SocketAddr::from((Ipv6Addr::LOCALHOST, 9))).await;
        assert!(matches!(mixed, Err(Error::InvalidInput(_))));
        // An address that is not local cannot be bound.
        let foreign = TcpListener::bind(env.wsk, SocketAddr::from(([192, 0, 2, 1], 0))).await;
        assert!(matches!(foreign, Err(Error::Status(_))), "{:?}", foreign.err());
        // Oversized buffer.
        assert!(matches!(IoBuf::with_capacity(usize::MAX), Err(Error::InvalidInput(_))));
        // Resolution of an empty name.
        assert!(matches!(env.wsk.resolve("", 80).await, Err(Error::InvalidInput(_))));
    });
}

#[test]
fn close_with_pending_receive_resolves_promptly() {
    run_clean(LIMIT, |env| async move {
        let (mut l, addr) = listener(&env, local(0)).await;
        let c = TcpStream::connect(env.wsk, addr).await.expect("connect");
        let (server, _) = l.accept().await.unwrap();
        let (mut read, write) = c.into_split();
        let reader = env.spawner.spawn(async move { read.recv(IoBuf::with_capacity(64).unwrap()).await.0 }).unwrap();
        wsk_executor::sleep(Duration::from_millis(50)).await;
        timeout(PROMPT, write.close()).await.expect("close resolves").expect("close");
        assert_eq!(timeout(PROMPT, reader).await.expect("reader resolves").unwrap(), Err(Error::Cancelled));
        server.close().await.unwrap();
        l.close().await.unwrap();
    });
}

#[test]
fn close_with_pending_accept_resolves_promptly() {
    run_clean(LIMIT, |env| async move {
        let (mut l, _) = listener(&env, local(0)).await;
        let closer = l.closer();
        let acceptor = env.spawner.spawn(async move { l.accept().await.map(|_| ()) }).unwrap();
        wsk_executor::sleep(Duration::from_millis(50)).await;
        timeout(PROMPT, closer.close()).await.expect("close resolves").expect("close");
        assert_eq!(timeout(PROMPT, acceptor).await.expect("accept resolves").unwrap(), Err(Error::Cancelled));
    });
}

#[test]
fn close_with_pending_connect_resolves_promptly() {
    // A listener with a full accept queue: further connects stay pending (SYNs dropped).
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&local(0).into()).unwrap();
    socket.listen(0).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    let fillers: Vec<_> =
        (0..4).filter_map(|_| HostStream::connect_timeout(&addr, Duration::from_millis(300)).ok()).collect();
    run_clean(LIMIT, move |env| async move {
        let mut s = TcpSocket::new_v4(env.wsk).await.expect("socket");
        s.bind(local(0)).await.expect("bind");
        let closer = s.closer();
        let connector = env.spawner.spawn(async move { s.connect(addr).await.map(|_| ()) }).unwrap();
        wsk_executor::sleep(Duration::from_millis(100)).await;
        timeout(PROMPT, closer.close()).await.expect("close resolves").expect("close");
        let result = timeout(PROMPT, connector).await.expect("connect resolves").unwrap();
        assert!(result.is_err(), "a connect to a full backlog cannot succeed before the close: {result:?}");
    });
    drop((fillers, socket));
}

#[test]
fn calls_after_close_began_fail_with_closed() {
    run_clean(LIMIT, |env| async move {
        let (mut l, addr) = listener(&env, local(0)).await;
        let c = TcpStream::connect(env.wsk, addr).await.unwrap();
        let (server, _) = l.accept().await.unwrap();
        let closer = c.closer();
        let (mut read, mut write) = c.into_split();
        closer.close().await.unwrap();
        assert_eq!(read.recv(IoBuf::with_capacity(8).unwrap()).await.0, Err(Error::Closed));
        assert_eq!(write.send(IoBuf::copy_from(b"x").unwrap()).await.0, Err(Error::Closed));
        assert_eq!(write.shutdown().await, Err(Error::Closed));
        drop((read, write));
        server.close().await.unwrap();
        l.close().await.unwrap();
    });
}

#[test]
fn close_racing_calls_from_the_other_half() {
    run_clean(LIMIT, |env| async move {
        let (mut l, addr) = listener(&env, local(0)).await;
        for round in 0..50u64 {
            let c = TcpStream::connect(env.wsk, addr).await.unwrap();
            let (mut server, _) = l.accept().await.unwrap();
            let closer = c.closer();
            let (mut read, mut write) = c.into_split();
            let reader = env
                .spawner
                .spawn(async move {
                    let mut buf = IoBuf::with_capacity(1024).unwrap();
                    loop {
                        let (n, b) = read.recv(buf).await;
                        buf = b;
                        match n {
                            Ok(0) => return Ok(()),
                            Ok(_) => {}
                            Err(e) => return Err(e),
                        }
                    }
                })
                .unwrap();
            let writer = env
                .spawner
                .spawn(async move {
                    let mut buf = IoBuf::copy_from(&[7u8; 512]).unwrap();
                    loop {
                        let (n, b) = write.send(buf).await;
                        buf = b;
                        if let Err(e) = n {
                            return e;
                        }
                        wsk_executor::yield_now().await;
                    }
                })
                .unwrap();
            let echo = env
                .spawner
                .spawn(async move {
                    let mut buf = IoBuf::with_capacity(4096).unwrap();
                    loop {
                        let (n, b) = server.recv(buf).await;
                        buf = b;
                        match n {
                            Ok(n) if n > 0 => {
                                let (r, b) = server.send_all(buf).await;
                                buf = b;
                                if r.is_err() {
                                    break;
                                }
                            }
                            _ => break,
                        }
                    }
                    let _ = server.close().await;
                })
                .unwrap();
            for _ in 0..(round % 5) {
                wsk_executor::yield_now().await;
            }
            timeout(PROMPT, closer.close()).await.expect("close resolves").expect("close");
            let r = timeout(PROMPT, reader).await.expect("reader ends").unwrap();
            assert!(matches!(r, Ok(()) | Err(Error::Cancelled | Error::Closed)), "reader: {r:?}");
            let w = timeout(PROMPT, writer).await.expect("writer ends").unwrap();
            assert!(matches!(w, Error::Cancelled | Error::Closed), "writer: {w:?}");
            timeout(PROMPT, echo).await.expect("peer ends").unwrap();
        }
        l.close().await.unwrap();
    });
}

#[test]
fn dropped_pending_receive_is_cancelled_and_the_socket_stays_usable() {
    run_clean(LIMIT, |env| async move {
        let (mut l, addr) = listener(&env, local(0)).await;
        let mut c = TcpStream::connect(env.wsk, addr).await.unwrap();
        let (mut server, _) = l.accept().await.unwrap();
        for _ in 0..20 {
            let r = timeout(Duration::from_millis(2), c.recv(IoBuf::with_capacity(32).unwrap())).await;
            assert!(r.is_err(), "nothing was sent, the receive must time out");
        }
        let (sent, _) = server.send_all(IoBuf::copy_from(b"after cancel").unwrap()).await;
        sent.unwrap();
        server.shutdown().await.unwrap();
        // Every byte sent after the cancelled receives arrives, once and in order, however
        // many receives it takes.
        assert_eq!(recv_to_end(&mut c).await, b"after cancel");
        c.close().await.unwrap();
        server.close().await.unwrap();
        l.close().await.unwrap();
    });
}

#[test]
fn dropping_sockets_without_close_closes_them_in_the_background() {
    run_clean(LIMIT, |env| async move {
        // Counted while this test's driver is loaded: no other test of the binary runs then
        // (after the run another test's sockets may already count).
        let before = wsk::live_sockets();
        let (mut l, addr) = listener(&env, local(0)).await;
        for _ in 0..20 {
            let c = TcpStream::connect(env.wsk, addr).await.unwrap();
            let (s, _) = l.accept().await.unwrap();
            drop(c);
            drop(s);
        }
        drop(l);
        let closed = timeout(PROMPT, async {
            while wsk::live_sockets() > before {
                wsk_executor::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        assert!(closed.is_ok(), "{} sockets left", wsk::live_sockets() - before);
    });
}

#[test]
fn one_thousand_concurrent_connections() {
    // Fixed-width messages: the server reads exactly one, however the bytes arrive.
    const MSG_LEN: usize = 11;
    fn message(i: usize) -> String {
        format!("client {i:04}")
    }
    raise_fd_limit(8192);
    let served = run_clean(Duration::from_secs(240), |env| async move {
        let (mut l, addr) = listener(&env, local(0)).await;
        let spawner = env.spawner.clone();
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = accepted.clone();
        let server = env
            .spawner
            .spawn(async move {
                let mut handles = Vec::new();
                for _ in 0..1000 {
                    let (mut s, _) = l.accept().await.expect("accept");
                    counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    handles.push(
                        spawner
                            .spawn(async move {
                                let msg = recv_exact(&mut s, MSG_LEN).await;
                                let (sent, _) = s.send_all(IoBuf::copy_from(&msg).unwrap()).await;
                                sent.expect("send");
                                // A close before both ends disconnected resets the connection
                                // and may discard echoed bytes not yet transmitted: disconnect,
                                // and close once the client has disconnected too.
                                s.shutdown().await.expect("shutdown");
                                let (end, _) = s.recv(IoBuf::with_capacity(1).unwrap()).await;
                                assert_eq!(end, Ok(0), "nothing after the message");
                                s.close().await.expect("close");
                                msg.len()
                            })
                            .unwrap(),
                    );
                }
                let mut total = 0;
                for h in handles {
                    total += h.await.unwrap();
                }
                l.close().await.unwrap();
                total
            })
            .unwrap();
        let mut clients = Vec::new();
        for _ in 0..1000 {
            clients.push(TcpStream::connect(env.wsk, addr).await.expect("connect"));
        }
        while accepted.load(std::sync::atomic::Ordering::SeqCst) < 1000 {
            wsk_executor::sleep(Duration::from_millis(5)).await;
        }
        // All 1000 connections are open at once now, both ends (plus the listener).
        assert!(wsk::live_sockets() >= 2001, "{} sockets", wsk::live_sockets());
        for (i, c) in clients.iter_mut().enumerate() {
            let (sent, _) = c.send_all(IoBuf::copy_from(message(i).as_bytes()).unwrap()).await;
            sent.unwrap();
        }
        for (i, mut c) in clients.into_iter().enumerate() {
            assert_eq!(recv_exact(&mut c, MSG_LEN).await, message(i).as_bytes());
            // The server disconnects after its echo; disconnecting too makes the close graceful.
            assert_eq!(c.recv(IoBuf::with_capacity(1).unwrap()).await.0, Ok(0), "end of stream after the echo");
            c.shutdown().await.unwrap();
            c.close().await.unwrap();
        }
        server.await.unwrap()
    });
    assert_eq!(served, 1000 * MSG_LEN);
}

#[test]
fn udp_send_to_and_receive_from() {
    run_clean(LIMIT, |env| async move {
        let mut a = UdpSocket::bind(env.wsk, local(0)).await.expect("bind a");
        let host = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let host_addr = host.local_addr().unwrap();
        let (sent, _) = a.send_to(IoBuf::copy_from(b"datagram").unwrap(), host_addr).await;
        assert_eq!(sent, Ok(8));
        let mut buf = [0u8; 64];
        let (n, from) = host.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"datagram");
        host.send_to(b"reply", from).unwrap();
        let (r, buf) = a.recv_from(IoBuf::with_capacity(64).unwrap()).await;
        let (n, peer) = r.expect("recv_from");
        assert_eq!((n, peer), (5, host_addr));
        assert_eq!(buf.as_slice(), b"reply");
        a.close().await.unwrap();
    });
}

#[test]
fn socket_options() {
    run_clean(LIMIT, |env| async move {
        let (mut l, addr) = listener(&env, local(0)).await;
        let mut c = TcpStream::connect(env.wsk, addr).await.unwrap();
        for option in [
            SocketOption::NoDelay(true),
            SocketOption::KeepAlive(true),
            SocketOption::SendBufferSize(128 * 1024),
            SocketOption::ReceiveBufferSize(128 * 1024),
        ] {
            c.set_option(option).await.unwrap_or_else(|e| panic!("{option:?}: {e}"));
        }
        let (s, _) = l.accept().await.unwrap();
        s.close().await.unwrap();
        c.close().await.unwrap();
        let reuse = TcpListener::bind_with(env.wsk, local(0), &[SocketOption::ReuseAddress(true)]).await;
        reuse.expect("bind with SO_REUSEADDR").close().await.unwrap();
        l.close().await.unwrap();
    });
}

#[test]
fn name_resolution() {
    run_clean(LIMIT, |env| async move {
        let list = env.wsk.resolve("localhost", 7007).await.expect("resolve localhost");
        assert!(list.iter().any(|a| a.ip().is_loopback() && a.port() == 7007), "{list:?}");
        let numeric = env.wsk.resolve("127.0.0.1", 80).await.expect("numeric");
        assert_eq!(numeric.first(), Some(local(80)));
    });
}

fn raise_fd_limit(want: u64) {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit on our own process with a valid out struct.
    let got = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut lim) };
    if got == 0 && lim.rlim_cur < want {
        lim.rlim_cur = want.min(lim.rlim_max);
        // SAFETY: setrlimit with a valid struct, raising the soft limit up to the hard one.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raw const lim) };
    }
}

#[test]
fn accept_completed_after_its_future_was_dropped_closes_the_connection() {
    let addr = run_clean(LIMIT, |env| async move {
        let (mut l, addr) = listener(&env, local(0)).await;
        {
            let mut accept = std::pin::pin!(l.accept());
            // Issue the WskAccept IRP (one poll), then let a connection arrive without
            // polling again: the IRP completes with a new socket nobody collects.
            let first = std::future::poll_fn(|cx| std::task::Poll::Ready(accept.as_mut().poll(cx).is_pending())).await;
            assert!(first, "no connection yet");
            let c = TcpStream::connect(env.wsk, addr).await.expect("connect");
            wsk_executor::sleep(Duration::from_millis(100)).await;
            drop(c);
        }
        // The accepted connection was closed in the background; the listener still works.
        let c = TcpStream::connect(env.wsk, addr).await.expect("second connect");
        let (s, _) = l.accept().await.expect("second accept");
        s.close().await.unwrap();
        c.close().await.unwrap();
        l.close().await.unwrap();
        addr
    });
    assert_ne!(addr.port(), 0);
}

/// (ready at DriverEntry, result of `ready()`, ready afterwards)
type ReadyOutcome = (bool, Result<(), Error>, bool);

static READY_OUTCOME: std::sync::Mutex<Option<ReadyOutcome>> = std::sync::Mutex::new(None);

unsafe extern "system" fn late_provider_entry(
    driver: *mut wsk_sys::DRIVER_OBJECT,
    _path: *mut wsk_sys::UNICODE_STRING,
) -> wsk_sys::NTSTATUS {
    // SAFETY: valid driver object from the emulator.
    unsafe { (*driver).DriverUnload = Some(late_provider_unload) };
    // Set while this driver holds the emulator (loads are serialized), so no other test's
    // registration sees the late provider.
    wsk_emulator::provider_unavailable_for(5);
    let mut wsk = wsk::Wsk::register(Duration::ZERO).expect("registration succeeds without the provider");
    let ready_at_entry = wsk.is_ready();
    // SAFETY: the driver's own driver object.
    let executor = wsk_executor::Executor::new(unsafe { wsk_executor::IoObject::from_driver(driver) }).unwrap();
    let waited = wsk_executor::block_on(wsk.ready(Duration::from_millis(10), 50)).unwrap();
    *READY_OUTCOME.lock().unwrap() = Some((ready_at_entry, waited, wsk.is_ready()));
    assert!(executor.shutdown().is_ok());
    drop(wsk);
    wsk_sys::STATUS_SUCCESS
}

unsafe extern "system" fn late_provider_unload(_driver: *mut wsk_sys::DRIVER_OBJECT) {}

#[test]
fn registration_waits_for_a_late_provider_without_blocking() {
    let driver = wsk_emulator::Kernel::builder().verifier(true).load("late", late_provider_entry).expect("load");
    let report = driver.unload();
    wsk_emulator::provider_unavailable_for(0);
    report.assert_clean();
    assert_eq!(READY_OUTCOME.lock().unwrap().take(), Some((false, Ok(()), true)));
}

/// A connection whose data is already there completes every receive inside the provider
/// call, so the reading task finds each one ready at its first poll. It must still let the
/// executor's other tasks run (the cooperative budget, `wsk_executor::coop`): under Wine's
/// netio, which completes most receives inside the call, one echo connection was served at a
/// time before it.
#[test]
fn a_reader_whose_receives_complete_at_once_lets_other_tasks_run() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
    run_clean(LIMIT, |env| async move {
        const TOTAL: usize = 64 * 1024;
        const PIECE: usize = 64;
        let host = HostListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("host listener");
        let addr = host.local_addr().expect("host address");
        let written = Arc::new(AtomicBool::new(false));
        let w = written.clone();
        let writer = std::thread::spawn(move || {
            let (mut s, _) = host.accept().expect("host accept");
            s.write_all(&[7u8; TOTAL]).expect("host write");
            w.store(true, SeqCst);
            s
        });
        let mut c = TcpStream::connect(env.wsk, addr).await.expect("connect");
        while !written.load(SeqCst) {
            wsk_executor::sleep(Duration::from_millis(1)).await;
        }
        // Loopback: the bytes are in the receive buffer well within this.
        wsk_executor::sleep(Duration::from_millis(50)).await;

        let turns = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (t, s) = (turns.clone(), stop.clone());
        let other = env
            .spawner
            .spawn(async move {
                while !s.load(SeqCst) {
                    t.fetch_add(1, SeqCst);
                    wsk_executor::yield_now().await;
                }
            })
            .expect("spawn");
        wsk_executor::yield_now().await;
        let before = turns.load(SeqCst);
        let (mut got, mut receives) = (0, 0u64);
        let mut buf = IoBuf::with_capacity(PIECE).unwrap();
        while got < TOTAL {
            let (n, back) = c.recv(buf).await;
            buf = back;
            let n = n.expect("recv");
            assert!(n > 0, "unexpected end of stream");
            got += n;
            receives += 1;
        }
        let others = turns.load(SeqCst) - before;
        stop.store(true, SeqCst);
        other.await.expect("other task");
        // 1024 receives at 64 ready operations per poll: the reader yields about 16 times
        // and the other task gets a turn each time. Without the budget it got none (every
        // receive was ready, so the reader never returned Pending).
        assert!(receives >= (TOTAL / PIECE) as u64, "{receives} receives");
        assert!(others >= receives / 64 / 2, "the other task ran {others} times during {receives} receives");
        c.close().await.expect("close");
        drop(writer.join().expect("host writer"));
    });
}
