//! `wsk::idle`: the idle timeout on both receive paths. An IRP receive ends with `TimedOut` and
//! its buffer after the limit and the half stays usable; an event stream yields one
//! `TimedOut` after the limit without data and then goes on with its items; data arriving more
//! often than the limit never times out; no limit waits as long as it takes.

use std::time::{Duration, Instant};

use wsk::events::{self, ConnectionEvent, EventConfig};
use wsk::idle::{IdleEvents, IdleRecv, IdleTimeout};
use wsk::{Error, IoBuf, TcpStream};
use wsk_executor::timeout;
use wsk_tests::harness::run_clean;

use crate::{LIMIT, PROMPT, listener, local};

const SHORT: Duration = Duration::from_millis(200);

#[test]
fn an_idle_irp_receive_times_out_with_its_buffer_and_the_half_stays_usable() {
    run_clean(LIMIT, |env| async move {
        let (mut l, addr) = listener(&env, local(0)).await;
        let c = TcpStream::connect(env.wsk, addr).await.expect("connect");
        let (mut server, _) = l.accept().await.expect("accept");
        let (mut reader, writer) = c.into_split();
        let mut idle = IdleRecv::new(&mut reader, IdleTimeout::after(SHORT));
        let start = Instant::now();
        let (r, buf) = idle.recv(IoBuf::with_capacity(64).unwrap()).await;
        assert_eq!(r, Err(Error::TimedOut));
        assert!(start.elapsed() >= SHORT, "not before the limit");
        assert_eq!(buf.capacity(), 64, "the buffer comes back");
        server.send_all(IoBuf::copy_from(b"late").unwrap()).await.0.expect("send");
        let (r, buf) = idle.recv(buf).await;
        assert_eq!(r, Ok(4), "the half is usable after an idle timeout");
        assert_eq!(buf.as_slice(), b"late");
        // No limit: the receive waits past any limit (bounded here by the test's own timeout).
        let mut unlimited = IdleRecv::new(&mut reader, IdleTimeout::from_secs(0));
        assert_eq!(IdleTimeout::from_secs(0), IdleTimeout::NONE);
        assert!(timeout(SHORT * 2, unlimited.recv(buf)).await.is_err(), "no limit: still waiting");
        server.close().await.unwrap();
        writer.close().await.unwrap();
        l.close().await.unwrap();
    });
}

#[test]
fn an_idle_event_stream_yields_one_timeout_and_goes_on() {
    run_clean(LIMIT, |env| async move {
        let (mut l, addr) = listener(&env, local(0)).await;
        let c = TcpStream::connect(env.wsk, addr).await.expect("connect");
        let (mut server, _) = l.accept().await.expect("accept");
        let (stream, writer) = c.into_events(EventConfig::default()).expect("events");
        let mut events = IdleEvents::new(stream, IdleTimeout::after(SHORT));
        // Every item counts as activity (the provider's send backlog indication too): the
        // limit counts from the last one.
        let (item, waited) = loop {
            let start = Instant::now();
            match timeout(PROMPT, events::next(&mut events)).await.expect("in time") {
                Some(Ok(ConnectionEvent::SendBacklog(_))) => continue,
                item => break (item, start.elapsed()),
            }
        };
        assert!(matches!(item, Some(Err(Error::TimedOut))), "{item:?}");
        assert!(waited >= SHORT, "not before the limit: {waited:?}");
        server.send_all(IoBuf::copy_from(b"after").unwrap()).await.0.expect("send");
        let mut got = Vec::new();
        while got.len() < 5 {
            match timeout(PROMPT, events::next(&mut events)).await.expect("in time") {
                Some(Ok(ConnectionEvent::Data(data))) => data.segments().for_each(|s| got.extend_from_slice(s)),
                Some(Ok(_)) => {}
                other => panic!("data after the timeout: {other:?}"),
            }
        }
        assert_eq!(got, b"after");
        drop(events);
        server.close().await.unwrap();
        writer.close().await.unwrap();
        l.close().await.unwrap();
    });
}

/// Data every quarter of the limit, for four limits: never idle.
#[test]
fn data_more_often_than_the_limit_never_times_out() {
    run_clean(LIMIT, |env| async move {
        let (mut l, addr) = listener(&env, local(0)).await;
        let c = TcpStream::connect(env.wsk, addr).await.expect("connect");
        let (mut server, _) = l.accept().await.expect("accept");
        let (stream, writer) = c.into_events(EventConfig::default()).expect("events");
        let mut events = IdleEvents::new(stream, IdleTimeout::after(SHORT * 2));
        let sender = env
            .spawner
            .spawn(async move {
                for i in 0..16u8 {
                    wsk_executor::sleep(SHORT / 2).await;
                    server.send_all(IoBuf::copy_from(&[i]).unwrap()).await.0.expect("send");
                }
                server
            })
            .unwrap();
        let mut got = Vec::new();
        while got.len() < 16 {
            match timeout(PROMPT, events::next(&mut events)).await.expect("in time") {
                Some(Ok(ConnectionEvent::Data(data))) => data.segments().for_each(|s| got.extend_from_slice(s)),
                Some(Ok(_)) => {}
                other => panic!("no timeout while data keeps coming: {other:?}"),
            }
        }
        assert_eq!(got, (0..16u8).collect::<Vec<_>>());
        let server = sender.await.unwrap();
        drop(events);
        server.close().await.unwrap();
        writer.close().await.unwrap();
        l.close().await.unwrap();
    });
}
