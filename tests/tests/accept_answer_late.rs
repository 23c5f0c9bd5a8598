//! Connections an accept callback took, with a provider that records the callback's answer
//! late (`wsk_emulator::adversary`'s `accept_answer_delay_us`): until then the accepted socket
//! has no client dispatch table and refuses `SO_WSK_EVENT_CALLBACK`. The library must not
//! depend on that moment: an incoming stream enables the connection events on the listening
//! socket, which WSK turns on for every socket the accept callback takes, when it records
//! the answer. A connection taken at once must become an event stream, and one used with IRP
//! receives must get every byte, in order.
//!
//! The behaviour is process-wide, so these tests live in a test binary of their own.

use std::io::{Read, Write};
use std::net::TcpStream as HostStream;
use std::time::Duration;

use futures_lite::StreamExt;
use wsk::events::{ConnectionEvent, ConnectionEvents, EventConfig, Incoming};
use wsk::{Error, IoBuf, TcpWriteHalf};
use wsk_emulator::adversary::{self, Adversary};
use wsk_tests::fixtures::{bound_listener, pattern};
use wsk_tests::harness::{run, run_clean};

const LIMIT: Duration = Duration::from_secs(60);

/// Long enough that the stream takes the connection inside the window.
fn late_answers() {
    adversary::set(Adversary { accept_answer_delay_us: 50_000, ..Adversary::default() });
}

/// Reads `events` until the peer's graceful disconnect: the bytes, in order. `on_data` sees
/// what came so far after each item.
async fn read_to_disconnect(events: &mut ConnectionEvents, mut on_data: impl FnMut(&[u8])) -> Vec<u8> {
    let mut got = Vec::new();
    loop {
        match events.next().await.expect("the stream ends with the disconnect").expect("event") {
            ConnectionEvent::Data(data) => {
                let mut piece = vec![0; data.len()];
                let n = data.copy_to_slice(&mut piece);
                got.extend_from_slice(&piece[..n]);
                on_data(&got);
            }
            ConnectionEvent::Disconnected { abortive } => {
                assert!(!abortive, "the peer shut down gracefully");
                return got;
            }
            ConnectionEvent::SendBacklog(_) => {}
        }
    }
}

/// Ends the connection gracefully, closes it and the listener.
async fn close_all(events: ConnectionEvents, mut writer: TcpWriteHalf, incoming: Incoming) {
    drop(events);
    writer.shutdown().await.expect("shutdown");
    writer.close().await.expect("close");
    incoming.close().await.expect("listener close");
}

/// The peer writes at once; the connection, taken from the accept stream before WSK recorded
/// the callback's answer, becomes an event stream and sees every byte, then the disconnect.
/// Its receive callback, inherited, cannot be disabled.
#[test]
fn a_connection_taken_before_its_answer_is_recorded_becomes_an_event_stream() {
    late_answers();
    let got = run_clean(LIMIT, |env| async move {
        let (l, addr) = bound_listener(&env).await;
        let mut incoming = l.into_incoming(EventConfig::default()).expect("accept events");
        let host = std::thread::spawn(move || {
            let mut s = HostStream::connect(addr).expect("host connect");
            s.write_all(b"early ").unwrap();
            std::thread::sleep(Duration::from_millis(150));
            s.write_all(b"late").unwrap();
            s.shutdown(std::net::Shutdown::Write).unwrap();
            let mut rest = Vec::new();
            s.read_to_end(&mut rest).expect("a graceful end");
        });
        let (stream, _) = incoming.next().await.expect("a connection").expect("accepted");
        let (mut events, writer) = stream.into_events(EventConfig::default()).expect("events on an accepted socket");
        // Inherited, so turned on at a moment the library cannot see: never disabled.
        assert!(
            matches!(events.disable_receive(), Err(Error::InvalidInput(_))),
            "an inherited receive callback is not disabled"
        );
        let got = read_to_disconnect(&mut events, |_| {}).await;
        close_all(events, writer, incoming).await;
        host.join().unwrap();
        got
    });
    assert_eq!(got, b"early late");
}

/// Data that came while no event stream existed: the inherited receive callback refused it
/// (WSK kept it) and left a note; the event stream made afterwards resumes the indications
/// and hands the data out, then the rest and the disconnect.
#[test]
fn data_refused_before_the_event_stream_existed_reaches_it() {
    late_answers();
    let (got, report) = run(LIMIT, |env| async move {
        let (l, addr) = bound_listener(&env).await;
        let mut incoming = l.into_incoming(EventConfig::default()).expect("accept events");
        let (go_on, wait) = std::sync::mpsc::channel::<()>();
        let host = std::thread::spawn(move || {
            let mut s = HostStream::connect(addr).expect("host connect");
            s.write_all(b"before ").unwrap();
            wait.recv().unwrap();
            s.write_all(b"after").unwrap();
            s.shutdown(std::net::Shutdown::Write).unwrap();
            let mut rest = Vec::new();
            s.read_to_end(&mut rest).expect("a graceful end");
        });
        let (stream, _) = incoming.next().await.expect("a connection").expect("accepted");
        // Past the late answer: the inherited callback is on and has refused what came.
        wsk_executor::sleep(Duration::from_millis(300)).await;
        let (mut events, writer) = stream.into_events(EventConfig::default()).expect("events");
        let got = read_to_disconnect(&mut events, |got| {
            if got == b"before " {
                go_on.send(()).unwrap();
            }
        })
        .await;
        close_all(events, writer, incoming).await;
        host.join().unwrap();
        got
    });
    report.assert_clean();
    assert_eq!(got, b"before after");
    assert!(report.counters.refused_bytes > 0, "the data came before the stream and was refused: {report}");
}

/// A connection from the accept stream used with IRP receives only: the receive callback the
/// socket inherited refuses what it is offered (no event stream), WSK keeps it, and the IRPs
/// get every byte in order.
#[test]
fn a_connection_from_the_accept_stream_receives_with_irps() {
    late_answers();
    const LEN: usize = 256 * 1024;
    let (got, report) = run(LIMIT, |env| async move {
        let (l, addr) = bound_listener(&env).await;
        let mut incoming = l.into_incoming(EventConfig::default()).expect("accept events");
        let host = std::thread::spawn(move || {
            let mut s = HostStream::connect(addr).expect("host connect");
            for chunk in pattern(LEN, 7).chunks(3_001) {
                s.write_all(chunk).expect("host write");
            }
            s.shutdown(std::net::Shutdown::Write).expect("host shutdown");
            let mut rest = Vec::new();
            s.read_to_end(&mut rest).expect("a graceful end");
        });
        let (mut stream, _) = incoming.next().await.expect("a connection").expect("accepted");
        let mut got = Vec::new();
        let mut buf = IoBuf::with_capacity(10_000).expect("buffer");
        loop {
            let (n, back) = stream.recv(buf).await;
            buf = back;
            match n.map_err(|e| format!("{e:?}")).expect("receive") {
                0 => break,
                n => got.extend_from_slice(&buf.as_slice()[..n]),
            }
        }
        stream.shutdown().await.expect("shutdown");
        stream.close().await.expect("close");
        incoming.close().await.expect("listener close");
        assert!(host.join().is_ok(), "the host wrote everything ({} bytes received)", got.len());
        got
    });
    report.assert_clean();
    assert!(got == pattern(LEN, 7), "the bytes received differ from the bytes sent ({} of {LEN})", got.len());
    assert!(report.counters.refused_bytes > 0, "the inherited receive callback was offered data: {report}");
}
