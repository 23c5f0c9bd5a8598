//! `embedded-io-async` over the `wsk` sockets on the emulator: `Read`, `BufRead` and `Write`
//! for `TcpStream` and its halves (over their owned buffers), and `BufRead` over the
//! connection event stream (WSK's buffers, no copy).

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpStream as HostStream};
use std::time::Duration;

use embedded_io_async::{BufRead, ErrorKind, Read, Write};
use wsk::events::EventConfig;
use wsk::{Error, IoBuf, TcpListener, TcpStream};
use wsk_executor::timeout;
use wsk_tests::fixtures::pattern;
use wsk_tests::harness::{Env, run_clean};

const LIMIT: Duration = Duration::from_secs(60);

/// A listener in the driver, a host client thread running `client` on its connection, and the
/// accepted stream.
async fn connected<T: Send + 'static>(
    env: &Env,
    client: impl FnOnce(HostStream) -> T + Send + 'static,
) -> (TcpListener, TcpStream, std::thread::JoinHandle<T>) {
    let mut l = TcpListener::bind(env.wsk, SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await.expect("bind");
    let addr = l.query_local_addr().await.expect("local address");
    let host = std::thread::spawn(move || {
        let s = HostStream::connect(addr).expect("host connect");
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        client(s)
    });
    let (stream, _) = l.accept().await.expect("accept");
    (l, stream, host)
}

/// Waits (async) for a host thread that has finished or is about to.
async fn join<T>(handle: std::thread::JoinHandle<T>) -> T {
    while !handle.is_finished() {
        wsk_executor::sleep(Duration::from_millis(2)).await;
    }
    handle.join().expect("host thread")
}

/// `write_all` and `read_exact` through the traits against a host echo: every byte comes
/// back in order, in pieces no larger than the stream's buffer.
#[test]
fn write_all_and_read_exact_round_trip() {
    run_clean(LIMIT, |env| async move {
        const LEN: usize = 100_000;
        let (l, mut stream, host) = connected(&env, |mut s| {
            let mut buf = vec![0u8; LEN];
            s.read_exact(&mut buf).expect("host read");
            s.write_all(&buf).expect("host write");
        })
        .await;
        let sent = pattern(LEN, 3);
        stream.write_all(&sent).await.expect("write_all");
        stream.flush().await.expect("flush");
        let mut back = vec![0u8; LEN];
        stream.read_exact(&mut back).await.expect("read_exact");
        assert_eq!(back, sent);
        // One read never returns more than the buffer holds.
        let mut big = vec![0u8; 3 * wsk::socket::tcp_io::IO_BUFFER_SIZE];
        join(host).await;
        assert_eq!(stream.read(&mut big).await.expect("read at end"), 0, "end of stream after the host closed");
        stream.close().await.expect("close");
        l.close().await.expect("listener close");
    });
}

/// `fill_buf` lends the buffered bytes, `consume` advances; a plain `recv` afterwards returns
/// what the reads left first, so the two can be mixed without losing order; `into_events`
/// refuses while such bytes are left.
#[test]
fn buf_read_then_recv_keeps_order() {
    run_clean(LIMIT, |env| async move {
        let payload = pattern(1000, 9);
        let p = payload.clone();
        let (l, mut stream, host) = connected(&env, move |mut s| {
            s.write_all(&p).expect("host write");
            s
        })
        .await;
        let mut got = Vec::new();
        while got.len() < 10 {
            let piece = stream.fill_buf().await.expect("fill_buf");
            assert!(!piece.is_empty(), "data before the end");
            let take = piece.len().min(10 - got.len());
            got.extend_from_slice(&piece[..take]);
            stream.consume(take);
        }
        let refused = stream.into_events(EventConfig::default()).err().expect("refused with unread bytes");
        assert!(matches!(refused.error, Error::InvalidInput(_)), "{:?}", refused.error);
        let mut stream = refused.socket;
        let mut buf = IoBuf::with_capacity(64 * 1024).unwrap();
        while got.len() < payload.len() {
            let (n, back) = stream.recv(buf).await;
            buf = back;
            assert!(n.expect("recv") > 0, "unexpected end of stream");
            got.extend_from_slice(buf.as_slice());
        }
        assert_eq!(got, payload, "every byte once, in order");
        drop(join(host).await);
        stream.close().await.expect("close");
        l.close().await.expect("listener close");
    });
}

/// A read dropped while it waits loses nothing: what arrives afterwards reaches the next
/// read, in order.
#[test]
fn a_dropped_read_loses_no_byte() {
    run_clean(LIMIT, |env| async move {
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let payload = pattern(5000, 1);
        let p = payload.clone();
        let (l, stream, host) = connected(&env, move |mut s| {
            go_rx.recv().expect("go");
            s.write_all(&p).expect("host write");
            s
        })
        .await;
        let (read_half, write_half) = stream.into_split();
        let mut reader = read_half;
        let mut buf = [0u8; 64];
        assert!(timeout(Duration::from_millis(20), reader.read(&mut buf)).await.is_err(), "no data yet");
        go_tx.send(()).unwrap();
        let mut got = Vec::new();
        while got.len() < payload.len() {
            let n = timeout(Duration::from_secs(10), reader.read(&mut buf)).await.expect("in time").expect("read");
            assert!(n > 0, "unexpected end of stream");
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, payload);
        drop(join(host).await);
        drop(reader);
        write_half.close().await.expect("close");
        l.close().await.expect("listener close");
    });
}

/// Errors carry an `embedded-io` kind: a reset peer is `ConnectionReset`.
#[test]
fn a_reset_is_connection_reset() {
    run_clean(LIMIT, |env| async move {
        let (l, mut stream, host) = connected(&env, |s| {
            socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO)).unwrap();
            drop(s);
        })
        .await;
        join(host).await;
        let mut buf = [0u8; 16];
        let err = stream.read(&mut buf).await.expect_err("reset");
        assert_eq!(embedded_io_async::Error::kind(&err), ErrorKind::ConnectionReset, "{err:?}");
        stream.close().await.expect("close");
        l.close().await.expect("listener close");
    });
}

/// The event stream as `BufRead`: `fill_buf` lends the indication WSK delivered (it is still
/// retained while the slice is in hand: no copy was made), the bytes come in order, and the
/// host's graceful close is the end of the stream.
#[test]
fn event_reader_lends_wsk_buffers() {
    run_clean(LIMIT, |env| async move {
        const LEN: usize = 300_000;
        let payload = pattern(LEN, 5);
        let p = payload.clone();
        let (l, stream, host) = connected(&env, move |mut s| {
            s.write_all(&p).expect("host write");
        })
        .await;
        let Ok((events, writer)) = stream.into_events(EventConfig::default()) else { panic!("events refused") };
        let mut reader = events.into_reader();
        let mut got = Vec::with_capacity(LEN);
        let mut lent_while_retained = 0;
        loop {
            let piece = reader.fill_buf().await.expect("fill_buf");
            if piece.is_empty() {
                break;
            }
            let n = piece.len();
            got.extend_from_slice(piece);
            if reader.events().retained_bytes() >= n {
                lent_while_retained += 1;
            }
            reader.consume(n);
        }
        assert_eq!(got, payload, "every byte, in order, then the end");
        assert!(lent_while_retained > 0, "fill_buf lent retained indications");
        let mut buf = [0u8; 8];
        assert_eq!(reader.read(&mut buf).await.expect("read after the end"), 0);
        join(host).await;
        drop(reader);
        writer.close().await.expect("close");
        l.close().await.expect("listener close");
    });
}
