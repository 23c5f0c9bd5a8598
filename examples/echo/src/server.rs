//! The echo service: what each connection's task does, and the driver's counters.

use core::net::SocketAddr;
use core::sync::atomic::{AtomicU64, Ordering};

use core::sync::atomic::AtomicBool;

use wsk::events::{self, ConnectionEvent, ConnectionEvents, EventConfig};
use wsk::service::ConnectionCounters;
use wsk::{Error, IoBuf, TcpReadHalf, TcpStream, TcpWriteHalf, log};

/// Bytes per receive.
pub const CHUNK: usize = 64 * 1024;

/// Counters printed at unload (and read by the host binary).
pub struct Stats {
    /// Connections accepted since load.
    pub connections: AtomicU64,
    /// Connections accepted and not yet closed.
    pub open: AtomicU64,
    /// Bytes echoed back to peers, over all connections.
    pub bytes: AtomicU64,
    /// Bytes that arrived as WSK's own buffers (receive events) and were echoed from those
    /// buffers as they are: no byte of them was copied, on receipt or for the send.
    pub zero_copy_bytes: AtomicU64,
    /// Connections served with IRP receives because the provider refused receive events.
    pub events_refused: AtomicU64,
    /// Accepts that failed (low resources included), connections that could not be given a
    /// task, and connections that failed or ended with an error.
    pub errors: AtomicU64,
}

/// Receive with event callbacks (`ReceiveEvents` = 1, the default) or with IRPs (0).
pub static RECEIVE_EVENTS: AtomicBool = AtomicBool::new(true);

/// The driver's counters.
pub static STATS: Stats = Stats {
    connections: AtomicU64::new(0),
    open: AtomicU64::new(0),
    bytes: AtomicU64::new(0),
    zero_copy_bytes: AtomicU64::new(0),
    events_refused: AtomicU64::new(0),
    errors: AtomicU64::new(0),
};

/// Where the echo service counts its connections ([`STATS`]' `connections`, `open` and
/// `errors`).
pub static COUNTERS: ConnectionCounters =
    ConnectionCounters { accepted: &STATS.connections, open: &STATS.open, errors: &STATS.errors };

/// Echoes until the peer finishes sending, then sends what is left (already done: every
/// chunk is echoed before the next receive), disconnects gracefully and closes. Receives
/// with event callbacks where the provider has them, else with IRPs.
pub async fn serve(stream: TcpStream, peer: SocketAddr) {
    let mut echoed = 0u64;
    let (outcome, mut writer) = if RECEIVE_EVENTS.load(Ordering::Relaxed) {
        match stream.into_events(EventConfig::default()) {
            Ok((events, mut writer)) => (echo_events(events, &mut writer, &mut echoed).await, writer),
            Err(refused) => {
                STATS.events_refused.fetch_add(1, Ordering::Relaxed);
                log!(info, "echo: {}: receive events refused ({}), using IRPs", peer, refused.error);
                let (mut reader, mut writer) = refused.socket.into_split();
                (echo(&mut reader, &mut writer, &mut echoed).await, writer)
            }
        }
    } else {
        let (mut reader, mut writer) = stream.into_split();
        (echo(&mut reader, &mut writer, &mut echoed).await, writer)
    };
    match outcome {
        Ok(()) => match writer.shutdown().await {
            Ok(()) => {}
            // A provider without WskDisconnect (Wine's netio): close alone ends the
            // connection (abortively where data is unacknowledged).
            Err(Error::Status(wsk_sys::STATUS_NOT_IMPLEMENTED)) => {}
            Err(e) => log!(info, "echo: {}: disconnect failed: {}", peer, e),
        },
        Err(e) => {
            STATS.errors.fetch_add(1, Ordering::Relaxed);
            log!(info, "echo: {}: {}", peer, e);
        }
    }
    if let Err(e) = writer.close().await {
        log!(info, "echo: {}: close: {}", peer, e);
    }
    log!(info, "echo: connection from {} closed after {} bytes", peer, echoed);
}

/// Echo with IRP receives.
async fn echo(reader: &mut TcpReadHalf, writer: &mut TcpWriteHalf, echoed: &mut u64) -> Result<(), Error> {
    let mut buf = IoBuf::with_capacity(CHUNK)?;
    loop {
        let (received, back) = reader.recv(buf).await;
        buf = back;
        let n = received?;
        if n == 0 {
            return Ok(());
        }
        let (sent, back) = writer.send_all(buf).await;
        buf = back;
        sent?;
        *echoed += n as u64;
        STATS.bytes.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// Echo with receive events, without copying a byte: each received item is sent back as WSK
/// indicated it (`send_received`) and released to WSK when its send completed, before the
/// next event is taken.
async fn echo_events(mut events: ConnectionEvents, writer: &mut TcpWriteHalf, echoed: &mut u64) -> Result<(), Error> {
    while let Some(event) = events::next(&mut events).await {
        match event? {
            ConnectionEvent::Data(data) => {
                let n = data.len() as u64;
                let zero_copy = data.is_zero_copy();
                // Sent back as received: WSK's own buffers go to `WskSend` without a copy, and
                // the item is released to WSK when the send completed (or on its error).
                writer.send_received(data).await?;
                if zero_copy {
                    STATS.zero_copy_bytes.fetch_add(n, Ordering::Relaxed);
                }
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
