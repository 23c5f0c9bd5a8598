//! The echo service: an accept loop and one task per connection.

use core::net::SocketAddr;
use core::sync::atomic::{AtomicU64, Ordering};

use wsk::{Error, IoBuf, TcpListener, TcpStream, log};
use wsk_executor::Spawner;

/// Bytes per receive.
pub const CHUNK: usize = 64 * 1024;

/// Counters printed at unload (and read by the host binary).
pub struct Stats {
    pub connections: AtomicU64,
    pub open: AtomicU64,
    pub bytes: AtomicU64,
    pub errors: AtomicU64,
}

/// The driver's counters.
pub static STATS: Stats = Stats {
    connections: AtomicU64::new(0),
    open: AtomicU64::new(0),
    bytes: AtomicU64::new(0),
    errors: AtomicU64::new(0),
};

/// Accepts connections until the task is cancelled (at unload), spawning one echo task each.
pub async fn accept_loop(mut listener: TcpListener, spawner: Spawner) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                STATS.connections.fetch_add(1, Ordering::Relaxed);
                STATS.open.fetch_add(1, Ordering::Relaxed);
                log!(info, "echo: connection from {} opened", peer);
                if let Err(e) = spawner.spawn(serve(stream, peer)) {
                    // The stream was dropped with the future: it is closed in the background.
                    STATS.open.fetch_sub(1, Ordering::Relaxed);
                    log!(error, "echo: cannot serve {}: {:?}", peer, e);
                }
            }
            Err(Error::NoMemory) => {
                // Low resources: back off and keep serving.
                STATS.errors.fetch_add(1, Ordering::Relaxed);
                wsk_executor::sleep(core::time::Duration::from_millis(10)).await;
            }
            Err(Error::Closed | Error::Cancelled) => return,
            Err(e) => {
                // A connection that failed between its arrival and the accept (reset by the
                // peer, for example): it concerns that connection only.
                STATS.errors.fetch_add(1, Ordering::Relaxed);
                log!(info, "echo: accept failed: {}", e);
            }
        }
    }
}

/// Echoes until the peer finishes sending, then sends what is left (already done: every
/// chunk is echoed before the next receive), disconnects gracefully and closes.
async fn serve(mut stream: TcpStream, peer: SocketAddr) {
    let mut echoed = 0u64;
    let outcome = echo(&mut stream, &mut echoed).await;
    match outcome {
        Ok(()) => match stream.shutdown().await {
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
    if let Err(e) = stream.close().await {
        log!(info, "echo: {}: close: {}", peer, e);
    }
    STATS.open.fetch_sub(1, Ordering::Relaxed);
    log!(info, "echo: connection from {} closed after {} bytes", peer, echoed);
}

async fn echo(stream: &mut TcpStream, echoed: &mut u64) -> Result<(), Error> {
    let mut buf = IoBuf::with_capacity(CHUNK)?;
    loop {
        let (received, back) = stream.recv(buf).await;
        buf = back;
        let n = received?;
        if n == 0 {
            return Ok(());
        }
        let (sent, back) = stream.send_all(buf).await;
        buf = back;
        sent?;
        *echoed += n as u64;
        STATS.bytes.fetch_add(n as u64, Ordering::Relaxed);
    }
}
