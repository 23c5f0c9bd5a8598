//! The echo service: what each connection's task does, and the driver's counters.

use core::net::SocketAddr;
use core::sync::atomic::{AtomicU64, Ordering};

use core::sync::atomic::{AtomicBool, AtomicU32};

use wsk::events::{self, ConnectionEvent, ConnectionEvents, EventConfig};
use wsk::idle::{IdleEvents, IdleRecv, IdleTimeout};
use wsk::service::ConnectionCounters;
use wsk::{Error, IoBuf, SocketOption, TcpStream, TcpWriteHalf, log};

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
    /// Bytes that arrived as WSK's own buffers (receive events), not copied by an IRP.
    pub zero_copy_bytes: AtomicU64,
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
///
/// Keep-alive (`SO_KEEPALIVE`, the system's timing) is turned on first, so that a peer that
/// vanished without a FIN or reset is dropped by the transport in the end. With
/// [`IDLE_SECONDS`] set, a peer that sends nothing for that long while the connection waits
/// for it (on either receive path, [`wsk::idle`]) has its connection closed without a
/// disconnect, which resets it; it is counted in [`IDLE_CLOSED`], not as an error.
pub async fn serve(mut stream: TcpStream, peer: SocketAddr) {
    STATS.peak_open.fetch_max(STATS.open.load(Ordering::Acquire), Ordering::Relaxed);
    match stream.set_option(SocketOption::KeepAlive(true)).await {
        Ok(()) => {
            KEEP_ALIVE_ON.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) => log!(info, "echo: {}: keep-alive refused: {}", peer, e),
    }
    let idle = IdleTimeout::from_secs(IDLE_SECONDS.load(Ordering::Relaxed));
    let mut echoed = 0u64;
    let (outcome, mut writer) = if RECEIVE_EVENTS.load(Ordering::Relaxed) {
        match stream.into_events(EventConfig::default()) {
            Ok((events, mut writer)) => {
                (echo_events(IdleEvents::new(events, idle), &mut writer, &mut echoed).await, writer)
            }
            Err(refused) => {
                STATS.events_refused.fetch_add(1, Ordering::Relaxed);
                log!(info, "echo: {}: receive events refused ({}), using IRPs", peer, refused.error);
                let (mut reader, mut writer) = refused.socket.into_split();
                (echo(&mut IdleRecv::new(&mut reader, idle), &mut writer, &mut echoed).await, writer)
            }
        }
    } else {
        let (mut reader, mut writer) = stream.into_split();
        (echo(&mut IdleRecv::new(&mut reader, idle), &mut writer, &mut echoed).await, writer)
    };
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
    if let Err(e) = writer.close().await {
        log!(info, "echo: {}: close: {}", peer, e);
    }
    log!(info, "echo: connection from {} closed after {} bytes", peer, echoed);
}

/// Echo with IRP receives.
async fn echo(reader: &mut IdleRecv<'_>, writer: &mut TcpWriteHalf, echoed: &mut u64) -> Result<(), Error> {
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

/// Echo with receive events: each indication is copied into the send buffer (WSK's buffers
/// go back at once) and sent before the next event is taken.
async fn echo_events(
    mut events: IdleEvents<ConnectionEvents>,
    writer: &mut TcpWriteHalf,
    echoed: &mut u64,
) -> Result<(), Error> {
    let mut buf = IoBuf::with_capacity(CHUNK)?;
    while let Some(event) = events::next(&mut events).await {
        match event? {
            ConnectionEvent::Data(data) => {
                let n = data.len() as u64;
                if data.is_zero_copy() {
                    STATS.zero_copy_bytes.fetch_add(n, Ordering::Relaxed);
                }
                let mut pieces = data.segments();
                let mut rest: &[u8] = &[];
                loop {
                    if rest.is_empty() {
                        match pieces.next() {
                            Some(piece) => rest = piece,
                            None => break,
                        }
                    }
                    let taken = buf.extend_from_slice(rest);
                    rest = &rest[taken..];
                    if buf.len() == buf.capacity() {
                        let (sent, back) = writer.send_all(buf).await;
                        buf = back;
                        sent?;
                        buf.clear();
                    }
                }
                drop(data);
                if !buf.is_empty() {
                    let (sent, back) = writer.send_all(buf).await;
                    buf = back;
                    sent?;
                    buf.clear();
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
