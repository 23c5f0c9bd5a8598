//! The echo service: what each connection's task does, and the driver's counters.

use core::net::SocketAddr;
use core::sync::atomic::{AtomicU64, Ordering};

use core::sync::atomic::{AtomicBool, AtomicU32};

use wsk::events::{self, ConnectionEvent, ConnectionEvents, EventConfig};
use wsk::idle::{IdleEvents, IdleRecv, IdleTimeout};
use wsk::service::ConnectionCounters;
use wsk::{Error, SendChain, SocketOption, TcpReadHalf, TcpStream, TcpWriteHalf, buf_pool, log};

/// Bytes per receive.
pub const CHUNK: usize = 64 * 1024;

/// Counters printed at unload (and read by the host binary).
pub struct Stats {
    /// Connections accepted since load.
    pub connections: AtomicU64,
    /// Connections accepted and not yet closed.
    pub open: AtomicU64,
    /// The most connections open when a connection's task started (at most `MaxConnections`).
    pub peak_open: AtomicU64,
    /// Bytes echoed back to peers, over all connections.
    pub bytes: AtomicU64,
    /// Bytes that arrived as WSK's own buffers (receive events) and were echoed from those
    /// buffers as they are: no byte of them was copied, on receipt or for the send.
    pub zero_copy_bytes: AtomicU64,
    /// Of those, bytes the receive callback sent back itself (reflection), without the task.
    pub reflected_bytes: AtomicU64,
    /// Connections served with IRP receives because the provider refused receive events.
    pub events_refused: AtomicU64,
    /// Accepts that failed (low resources included), connections that could not be given a
    /// task, and connections that failed or ended with an error.
    pub errors: AtomicU64,
}

/// Receive with event callbacks (`ReceiveEvents` = 1, the default) or with IRPs (0).
pub static RECEIVE_EVENTS: AtomicBool = AtomicBool::new(true);

/// Seconds a connection may wait for its peer's next data before it is closed (`IdleSeconds`;
/// 0, the default: no limit). See [`serve`].
pub static IDLE_SECONDS: AtomicU32 = AtomicU32::new(0);

/// Connections closed because their peer sent nothing for [`IDLE_SECONDS`].
pub static IDLE_CLOSED: AtomicU64 = AtomicU64::new(0);

/// Accepted connections on which keep-alive was turned on (the provider may refuse it).
pub static KEEP_ALIVE_ON: AtomicU64 = AtomicU64::new(0);

/// The driver's counters.
pub static STATS: Stats = Stats {
    connections: AtomicU64::new(0),
    open: AtomicU64::new(0),
    peak_open: AtomicU64::new(0),
    bytes: AtomicU64::new(0),
    zero_copy_bytes: AtomicU64::new(0),
    reflected_bytes: AtomicU64::new(0),
    events_refused: AtomicU64::new(0),
    errors: AtomicU64::new(0),
};

/// Where the echo service counts its connections ([`STATS`]' `connections`, `open` and
/// `errors`).
pub static COUNTERS: ConnectionCounters =
    ConnectionCounters { accepted: &STATS.connections, open: &STATS.open, errors: &STATS.errors };

/// A connection as the echo task holds it: an event stream, or IRP receives where the
/// provider refused events (or `ReceiveEvents` is 0).
enum Connection {
    Events(ConnectionEvents, TcpWriteHalf),
    Irp(TcpReadHalf, TcpWriteHalf),
}

/// Echoes until the peer finishes sending, then sends what is left (already done: every
/// chunk is echoed before the next receive), disconnects gracefully and closes. Receives
/// with event callbacks where the provider has them, else with IRPs. On the event path the
/// receive callback itself sends the data back whenever the connection holds nothing else
/// ([`EventConfig::reflect`]: no task is woken for it); what arrives while a reflection is
/// in flight reaches the task, which sends it back as below.
///
/// Keep-alive (`SO_KEEPALIVE`, the system's timing) is turned on first, so that a peer that
/// vanished without a FIN or reset is dropped by the transport in the end, and Nagle's
/// algorithm off (`TCP_NODELAY`: a message echoed in several sends is not held back). With
/// [`IDLE_SECONDS`] set, a peer that sends nothing for that long while the connection waits
/// for it (on either receive path, [`wsk::idle`]) has its connection closed without a
/// disconnect, which resets it; it is counted in [`IDLE_CLOSED`], not as an error.
///
/// The stream is turned into its halves before the task's future is built, and the future
/// borrows them where it can: it is what an idle connection's task costs (see
/// BENCHMARKS.md), so it holds no copy of the stream it was given and no buffer while idle.
///
/// IRQL == PASSIVE_LEVEL (the accept loop's task).
pub fn serve(stream: TcpStream, peer: SocketAddr) -> impl Future<Output = ()> + Send + 'static {
    let connection = if RECEIVE_EVENTS.load(Ordering::Relaxed) {
        match stream.into_events(EventConfig { reflect: true, ..EventConfig::default() }) {
            Ok((events, writer)) => Connection::Events(events, writer),
            Err(refused) => {
                STATS.events_refused.fetch_add(1, Ordering::Relaxed);
                log!(info, "echo: {}: receive events refused ({}), using IRPs", peer, refused.error);
                let (reader, writer) = refused.socket.into_split();
                Connection::Irp(reader, writer)
            }
        }
    } else {
        let (reader, writer) = stream.into_split();
        Connection::Irp(reader, writer)
    };
    finish(connection, peer)
}

/// The connection's task: echo, then disconnect and close. An `async` block rather than an
/// `async fn`: the latter keeps its arguments twice in the future (as given and as moved into
/// its body), and the future is most of what an idle connection costs.
#[expect(
    clippy::manual_async_fn,
    reason = "an `async fn` would keep its arguments twice in the future (168 bytes more)"
)]
fn finish(mut connection: Connection, peer: SocketAddr) -> impl Future<Output = ()> + Send + 'static {
    async move {
        STATS.peak_open.fetch_max(STATS.open.load(Ordering::Acquire), Ordering::Relaxed);
        let (Connection::Events(_, writer) | Connection::Irp(_, writer)) = &mut connection;
        match writer.set_option(SocketOption::KeepAlive(true)).await {
            Ok(()) => {
                KEEP_ALIVE_ON.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => log!(info, "echo: {}: keep-alive refused: {}", peer, e),
        }
        // An echo goes out as soon as it is sent. Both paths echo a message in as many sends as
        // it took receives or indications (the IRP path's first buffer is small; an item ends
        // where an indication chain ended); with Nagle's algorithm a piece shorter than a
        // segment (the tail of a 64 KiB item, too) waits for the acknowledgement of what went
        // before, which a peer waiting for its whole message delays (up to 200 ms on Windows).
        if let Err(e) = writer.set_option(SocketOption::NoDelay(true)).await {
            log!(info, "echo: {}: TCP_NODELAY refused: {}", peer, e);
        }
        writer.release_slot();
        let idle = IdleTimeout::from_secs(IDLE_SECONDS.load(Ordering::Relaxed));
        let mut echoed = 0u64;
        let outcome = match &mut connection {
            Connection::Events(events, writer) => {
                let outcome = echo_events(&mut IdleEvents::new(&mut *events, idle), writer, &mut echoed).await;
                // What the receive callback sent straight back (it never reached the task).
                let reflected = events.reflected_bytes();
                echoed += reflected;
                STATS.bytes.fetch_add(reflected, Ordering::Relaxed);
                STATS.zero_copy_bytes.fetch_add(reflected, Ordering::Relaxed);
                STATS.reflected_bytes.fetch_add(reflected, Ordering::Relaxed);
                outcome
            }
            Connection::Irp(reader, writer) => echo(&mut IdleRecv::new(reader, idle), writer, &mut echoed).await,
        };
        let (Connection::Events(_, writer) | Connection::Irp(_, writer)) = &mut connection;
        match outcome {
            Ok(()) => match writer.shutdown().await {
                Ok(()) => {}
                // A provider without WskDisconnect (Wine's netio): close alone ends the
                // connection (abortively where data is unacknowledged).
                Err(Error::Status(wsk_sys::STATUS_NOT_IMPLEMENTED)) => {}
                Err(e) => log!(info, "echo: {}: disconnect failed: {}", peer, e),
            },
            Err(Error::TimedOut) => {
                IDLE_CLOSED.fetch_add(1, Ordering::Relaxed);
                log!(info, "echo: {}: idle for {:?}; closing", peer, idle.limit());
            }
            Err(e) => {
                STATS.errors.fetch_add(1, Ordering::Relaxed);
                log!(info, "echo: {}: {}", peer, e);
            }
        }
        // The receiving side goes first: the close waits until nothing can receive.
        let writer = match connection {
            Connection::Events(events, writer) => {
                drop(events);
                writer
            }
            Connection::Irp(reader, writer) => {
                drop(reader);
                writer
            }
        };
        if let Err(e) = writer.close().await {
            log!(info, "echo: {}: close: {}", peer, e);
        }
        log!(info, "echo: connection from {} closed after {} bytes", peer, echoed);
    }
}

/// Echo with IRP receives. A receive is always posted, so an idle connection holds its
/// buffer: a small one ([`buf_pool::SMALL`]) from the library's buffer pool while the peer
/// sends little, a [`CHUNK`] one after a receive filled the small one, and back to small
/// after two receives in a row that got at most a small buffer's worth (one is not enough: a
/// message of a few `CHUNK`s arrives as large receives and a short tail, and dropping to small
/// at every tail would take each next message in two receives and two sends).
async fn echo(reader: &mut IdleRecv<'_>, writer: &mut TcpWriteHalf, echoed: &mut u64) -> Result<(), Error> {
    let pool = buf_pool::global();
    let mut buf = pool.take(buf_pool::SMALL)?;
    let mut short_receives = 0u8;
    let result = loop {
        let (received, back) = reader.recv(buf).await;
        buf = back;
        let n = match received {
            Ok(0) => break Ok(()),
            Ok(n) => n,
            Err(e) => break Err(e),
        };
        let (sent, back) = writer.send_all(buf).await;
        buf = back;
        writer.release_slot();
        if let Err(e) = sent {
            break Err(e);
        }
        *echoed += n as u64;
        STATS.bytes.fetch_add(n as u64, Ordering::Relaxed);
        short_receives = if n <= buf_pool::SMALL { short_receives.saturating_add(1) } else { 0 };
        let wanted = if n == buf.capacity() {
            CHUNK
        } else if short_receives >= 2 {
            buf_pool::SMALL
        } else {
            buf.capacity()
        };
        if buf_pool::capacity_for(wanted) != buf.capacity() {
            let next = match pool.take(wanted) {
                Ok(next) => next,
                Err(e) => break Err(e),
            };
            pool.give(core::mem::replace(&mut buf, next));
        }
    };
    pool.give(buf);
    result
}

/// Echo with receive events, without copying a byte: each received item is sent back as WSK
/// indicated it (`send_received`) and released to WSK when its send completed, before the
/// next event is taken; the send slot then goes back to the library's cache, so a connection
/// waiting for its peer holds no operation slot. Items that arrived together (what
/// `try_next_data` hands out without waiting) go back in one `WskSend` of a `SendChain`:
/// a busy stream's sends then carry several indications each. The chain comes from the
/// library's cache for that send and goes back after it, so an idle connection holds none.
async fn echo_events(
    events: &mut IdleEvents<&mut ConnectionEvents>,
    writer: &mut TcpWriteHalf,
    echoed: &mut u64,
) -> Result<(), Error> {
    while let Some(event) = events::next(events).await {
        match event? {
            ConnectionEvent::Data(data) => {
                let mut n = data.len() as u64;
                let mut zero_copy = if data.is_zero_copy() { n } else { 0 };
                // Sent back as received: WSK's own buffers go to `WskSend` without a copy, and
                // the item is released to WSK when the send completed (or on its error).
                let sent = match events.get_mut().try_next_data() {
                    None => writer.send_received(data).await,
                    Some(more) => {
                        // From the library's cache, and back to it when dropped below.
                        let mut ch = SendChain::new()?;
                        let mut next = Some(more);
                        // The pushes cannot fail: the chain is empty here (a send hands back
                        // only buffers, and this loop pushes none), and an item is taken only
                        // while the chain has room.
                        let _ = ch.push_received(data);
                        while let Some(item) = next.take() {
                            let len = item.len() as u64;
                            n += len;
                            if item.is_zero_copy() {
                                zero_copy += len;
                            }
                            let _ = ch.push_received(item);
                            if !ch.is_full() {
                                next = events.get_mut().try_next_data();
                            }
                        }
                        let (sent, back) = writer.send_chain(ch).await;
                        drop(back);
                        sent
                    }
                };
                // Idle until the next event: the send slot goes back to the library's cache.
                writer.release_slot();
                sent?;
                STATS.zero_copy_bytes.fetch_add(zero_copy, Ordering::Relaxed);
                *echoed += n;
                STATS.bytes.fetch_add(n, Ordering::Relaxed);
            }
            ConnectionEvent::Disconnected { abortive: false } => break,
            ConnectionEvent::Disconnected { abortive: true } => {
                return Err(Error::Status(wsk_sys::STATUS_CONNECTION_RESET));
            }
            ConnectionEvent::SendBacklog(_) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the future `f` returns.
    fn future_size<A, B, F: Future>(_: &dyn Fn(A, B) -> F) -> usize {
        size_of::<F>()
    }

    /// A connection's task is most of what an idle connection costs (BENCHMARKS.md: 1136
    /// bytes of its future, the task's header, the event state and the socket): its future
    /// must not grow back (it was 1520 bytes with its own copy of the stream and an `async fn`
    /// layer per provider call, 1640 with the send of received items nested `async fn`s deep,
    /// each keeping its arguments twice). The chained send of items that arrived together
    /// took it from 1136 to 1192 bytes.
    #[test]
    fn the_connection_future_stays_small() {
        let size = future_size(&serve);
        assert!(size <= 1200, "the echo task's future grew to {size} bytes");
    }
}
