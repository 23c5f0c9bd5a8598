//! The status service: what each connection's task does, speaking HTTP/1.1 through the
//! stream's `embedded_io_async::{Read, Write}`, and the driver's counters.

use core::net::SocketAddr;
use core::sync::atomic::{AtomicU64, Ordering};

use embedded_io_async::{Read, Write};
use wsk::pool::PoolBox;
use wsk::service::ConnectionCounters;
use wsk::{Error, TcpStream, log};

use crate::http::{self, Counters, MAX_HEAD, Parsed};

/// Counters printed at unload and served by `GET /status`.
pub struct Stats {
    /// Connections accepted since load.
    pub connections: AtomicU64,
    /// Complete request heads received, over all connections.
    pub requests: AtomicU64,
    /// Connections accepted and not yet closed.
    pub open: AtomicU64,
    /// Failed accepts and spawns, and connections that ended with an error.
    pub errors: AtomicU64,
}

/// The driver's counters.
pub static STATS: Stats = Stats {
    connections: AtomicU64::new(0),
    requests: AtomicU64::new(0),
    open: AtomicU64::new(0),
    errors: AtomicU64::new(0),
};

fn counters() -> Counters {
    Counters {
        connections: STATS.connections.load(Ordering::Relaxed),
        requests: STATS.requests.load(Ordering::Relaxed),
        open: STATS.open.load(Ordering::Relaxed),
    }
}

/// Where the status service counts its connections ([`STATS`]' `connections`, `open` and
/// `errors`).
pub static COUNTERS: ConnectionCounters =
    ConnectionCounters { accepted: &STATS.connections, open: &STATS.open, errors: &STATS.errors };

/// Serves requests on one connection until the peer closes it or asks to, then closes it.
pub async fn serve(mut stream: TcpStream, _peer: SocketAddr) {
    if let Err(e) = requests(&mut stream).await {
        STATS.errors.fetch_add(1, Ordering::Relaxed);
        log!(info, "status: connection ended: {}", e);
    }
    match stream.shutdown().await {
        // A provider without WskDisconnect (Wine's netio): close alone ends the connection.
        Ok(()) | Err(Error::Status(wsk_sys::STATUS_NOT_IMPLEMENTED)) => {}
        Err(e) => log!(info, "status: disconnect failed: {}", e),
    }
    if let Err(e) = stream.close().await {
        log!(info, "status: close: {}", e);
    }
}

/// The request loop: read a head, answer it, keep what follows it (a pipelined request).
///
/// The head buffer is pool memory, not part of the future: a task's future is moved through
/// the stack when it is spawned, and kernel stacks are small (a frame above a page would also
/// need a stack probe, `__chkstk`, which a driver image does not link).
async fn requests(stream: &mut TcpStream) -> Result<(), Error> {
    let mut head = PoolBox::try_new([0u8; MAX_HEAD]).map_err(|_| Error::NoMemory)?;
    let mut len = 0;
    loop {
        let request = loop {
            match http::parse(&head[..len]) {
                Parsed::Complete(request) => break request,
                Parsed::Invalid(status) => {
                    stream.write_all(http::reject(status).as_bytes()).await?;
                    return Ok(());
                }
                Parsed::Partial => {}
            }
            let n = stream.read(&mut head[len..]).await?;
            if n == 0 {
                // The peer closed (between requests, or in the middle of a head).
                return Ok(());
            }
            len += n;
        };
        STATS.requests.fetch_add(1, Ordering::Relaxed);
        stream.write_all(http::respond(&request, &counters()).as_bytes()).await?;
        if !request.keep_alive {
            return Ok(());
        }
        head.copy_within(request.head_len..len, 0);
        len -= request.head_len;
    }
}
