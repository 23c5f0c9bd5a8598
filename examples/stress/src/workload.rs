//! The stress workload: clients churning connections against the driver's own listener, with
//! content checks, random cancellation, close racing calls from the other half, abortive
//! disconnects, peer resets, sockets dropped without close, and WSK event callbacks (server
//! sides receiving through event streams; clients reading the echo through one while their
//! write half may close under it).

use core::net::SocketAddr;
use core::sync::atomic::{AtomicBool, Ordering};
use core::time::Duration;

use wsk::events::{self, ConnectionEvent, ConnectionEvents, EventConfig, Received};
use wsk::{Error, IoBuf, TcpListener, TcpStream, TcpWriteHalf, Wsk};
use wsk_executor::{Spawner, timeout};

use crate::rng::{Rng, pattern};
use crate::stats::{Op, STATS};

/// Set to stop every worker (deadline, operation budget, or unload).
pub static STOP: AtomicBool = AtomicBool::new(false);

/// Bound on any single operation; exceeding it counts as a hang.
const OP_BOUND: Duration = Duration::from_secs(30);
/// Largest payload of one exchange.
const MAX_PAYLOAD: u64 = 256 * 1024;
const CHUNK: usize = 64 * 1024;

/// The workload's parameters.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// Concurrent client connections (each also has a server side).
    pub clients: u32,
    /// Stop after this many operations (0: no limit).
    pub operations: u64,
    /// Seed of the workers' generators: the same seed picks the same scenarios and sizes.
    pub seed: u64,
    /// Which scenarios run: a mask of `MIX_*` bits.
    pub mix: u32,
}

/// Exchanges of random sizes with content checks, then a graceful disconnect and close.
pub const MIX_EXCHANGE: u32 = 1 << 0;
/// A receive cancelled by dropping it, then more traffic on the same socket.
pub const MIX_CANCEL: u32 = 1 << 1;
/// Close from one half while the other half's receive is pending in another task.
pub const MIX_CLOSE_RACE: u32 = 1 << 2;
/// Abortive disconnect.
pub const MIX_ABORT: u32 = 1 << 3;
/// Socket dropped without close (background close).
pub const MIX_DROP: u32 = 1 << 4;
/// Event callbacks: half of the server sides receive through event streams (retained
/// indications), and clients read the echo through one while their write half may close it
/// (a small retention bound forces the IRP fallback too).
pub const MIX_EVENTS: u32 = 1 << 5;
/// Exchanges whose receives carry a deadline shorter than the round trip (1 to 5 ms): a
/// receive that times out hands its buffer back and is issued again, and no byte may be lost.
/// Where the provider cannot cancel a receive (Wine's netio), the receive returns when the
/// echo arrives instead.
pub const MIX_DEADLINE: u32 = 1 << 6;
/// Every scenario.
pub const MIX_ALL: u32 = 0x7F;

/// Relative weights of the scenarios, in bit order.
const WEIGHTS: [u64; 7] = [50, 15, 15, 10, 10, 20, 15];

/// Picks an enabled scenario bit at random, by weight.
fn pick(rng: &mut Rng, mix: u32) -> u32 {
    let total: u64 = (0..WEIGHTS.len()).filter(|b| mix & (1 << b) != 0).map(|b| WEIGHTS[b]).sum();
    let mut roll = rng.below(total.max(1));
    for (b, weight) in WEIGHTS.iter().enumerate() {
        if mix & (1 << b) == 0 {
            continue;
        }
        if roll < *weight {
            return 1 << b;
        }
        roll -= weight;
    }
    MIX_EXCHANGE
}

/// A registration the tasks may use.
///
/// # Invariants
/// The pointed-to `Wsk` outlives every task holding this handle: the driver shuts its
/// executor down (all tasks gone) before dropping the registration.
#[derive(Clone, Copy)]
pub struct WskRef(*const Wsk);

// SAFETY: `Wsk` is Sync; the invariant keeps it alive.
unsafe impl Send for WskRef {}
// SAFETY: as above.
unsafe impl Sync for WskRef {}

impl WskRef {
    /// # Safety
    /// `wsk` must outlive every task given the handle (see the type's invariant).
    pub unsafe fn new(wsk: &Wsk) -> Self {
        Self(wsk)
    }

    fn get(&self) -> &Wsk {
        // SAFETY: by the type invariant the registration is alive.
        unsafe { &*self.0 }
    }
}

fn stop_if_done(config: &Config) -> bool {
    if config.operations != 0 && STATS.total_ops() >= config.operations {
        STOP.store(true, Ordering::Release);
    }
    STOP.load(Ordering::Acquire)
}

/// Bounds `future` by [`OP_BOUND`]; a timeout counts as a hang and becomes `Cancelled`.
async fn bounded<T>(future: impl Future<Output = Result<T, Error>>) -> Result<T, Error> {
    match timeout(OP_BOUND, future).await {
        Ok(result) => result,
        Err(_) => {
            STATS.hangs.fetch_add(1, Ordering::Relaxed);
            Err(Error::Cancelled)
        }
    }
}

fn record<T>(op: Op, result: &Result<T, Error>) {
    STATS.op(op);
    if let Err(e) = result {
        STATS.failure(*e);
    }
}

/// The server side: accept and echo, sometimes resetting the peer.
pub async fn accept_loop(mut listener: TcpListener, spawner: Spawner, seed: u64, mix: u32) {
    let mut rng = Rng::new(seed ^ 0x00AC_CE97);
    while !STOP.load(Ordering::Acquire) {
        let accepted = listener.accept().await;
        record(Op::Accept, &accepted);
        match accepted {
            Ok((stream, _peer)) => {
                STATS.socket_opened();
                let reset = rng.chance(3);
                let spawned = if mix & MIX_EVENTS != 0 && rng.chance(2) {
                    spawner.spawn(serve_events(stream, reset)).is_ok()
                } else {
                    spawner.spawn(serve(stream, reset)).is_ok()
                };
                if !spawned {
                    STATS.socket_closed();
                }
            }
            Err(Error::Closed) => return,
            Err(_) => wsk_executor::yield_now().await,
        }
    }
}

async fn serve(mut stream: TcpStream, reset: bool) {
    if let Ok(mut buf) = IoBuf::with_capacity(CHUNK) {
        loop {
            let (received, back) = stream.recv(buf).await;
            buf = back;
            record(Op::Receive, &received);
            match received {
                Ok(0) | Err(_) => break,
                Ok(_) if reset => {
                    let aborted = stream.abort().await;
                    record(Op::Abort, &aborted);
                    break;
                }
                Ok(_) => {
                    let (sent, back) = stream.send_all(buf).await;
                    buf = back;
                    record(Op::Send, &sent);
                    if sent.is_err() {
                        break;
                    }
                }
            }
        }
    }
    let closed = stream.close().await;
    record(Op::Close, &closed);
    STATS.socket_closed();
}

/// The next received data of an event stream, counted as a receive; `None` at the end of the
/// stream, at a disconnect, or after an error (counted as a failure). Send-backlog events are
/// skipped.
async fn next_data(events: &mut ConnectionEvents) -> Option<Received> {
    loop {
        match events::next(events).await? {
            Ok(ConnectionEvent::Data(data)) => {
                STATS.op(Op::Receive);
                return Some(data);
            }
            Ok(ConnectionEvent::SendBacklog(_)) => {}
            Ok(ConnectionEvent::Disconnected { .. }) => return None,
            Err(e) => {
                STATS.failure(e);
                return None;
            }
        }
    }
}

/// The server side through receive events: echoes each retained indication (copied into
/// the send buffer while held), resets the connection on the first data if `reset`.
async fn serve_events(stream: TcpStream, reset: bool) {
    let (mut events, mut writer) = match stream.into_events(EventConfig::default()) {
        Ok(parts) => parts,
        Err(refused) => {
            // A provider without event callbacks: the IRP path.
            return serve(refused.socket, reset).await;
        }
    };
    if let Ok(mut buf) = IoBuf::with_capacity(CHUNK) {
        while let Some(data) = next_data(&mut events).await {
            if reset {
                // Abort while the indication is still held: released after.
                let aborted = writer.abort().await;
                record(Op::Abort, &aborted);
                drop(data);
                break;
            }
            let mut failed = false;
            for piece in data.segments() {
                let mut rest = piece;
                while !rest.is_empty() {
                    let taken = buf.extend_from_slice(rest);
                    rest = &rest[taken..];
                    if buf.len() == buf.capacity() {
                        let (sent, back) = writer.send_all(buf).await;
                        buf = back;
                        buf.clear();
                        record(Op::Send, &sent);
                        failed |= sent.is_err();
                    }
                }
            }
            drop(data);
            if !buf.is_empty() {
                let (sent, back) = writer.send_all(buf).await;
                buf = back;
                buf.clear();
                record(Op::Send, &sent);
                failed |= sent.is_err();
            }
            if failed {
                break;
            }
        }
    }
    drop(events);
    let closed = writer.close().await;
    record(Op::Close, &closed);
    STATS.socket_closed();
}

/// One client worker: connect, run a random scenario, repeat until stopped.
pub async fn client(wsk: WskRef, addr: SocketAddr, spawner: Spawner, config: Config, id: u64) {
    let mut rng = Rng::new(config.seed ^ (id << 32));
    let mut stream_id = id << 40;
    STATS.running.fetch_add(1, Ordering::Relaxed);
    while !stop_if_done(&config) {
        let connected = bounded(TcpStream::connect(wsk.get(), addr)).await;
        record(Op::Connect, &connected);
        let Ok(stream) = connected else {
            wsk_executor::yield_now().await;
            continue;
        };
        STATS.socket_opened();
        stream_id += 1;
        match pick(&mut rng, config.mix) {
            MIX_CANCEL => cancel_then_use(stream, &mut rng, stream_id).await,
            MIX_CLOSE_RACE => close_racing_reader(stream, &spawner).await,
            MIX_ABORT => abort(stream).await,
            MIX_DROP => drop_without_close(stream).await,
            MIX_EVENTS => events_exchange(stream, &mut rng, stream_id, &spawner).await,
            MIX_DEADLINE => deadline_exchange(stream, &mut rng, stream_id, &spawner).await,
            _ => exchange_and_close(stream, &mut rng, stream_id, Bounded).await,
        }
        STATS.socket_closed();
    }
    STATS.running.fetch_sub(1, Ordering::Relaxed);
}

/// Fills `out` with the next chunk of stream `stream_id`'s pattern from byte `sent` of `len`;
/// returns its length.
fn fill_pattern(out: &mut IoBuf, stream_id: u64, sent: u64, len: u64) -> usize {
    let n = (len - sent).min(CHUNK as u64) as usize;
    for (i, byte) in out.as_mut_capacity()[..n].iter_mut().enumerate() {
        *byte = pattern(stream_id, sent + i as u64);
    }
    out.set_len(n);
    n
}

/// Sends `len` pattern bytes and checks the echo, receiving with `receive`.
async fn exchange(stream: &mut TcpStream, len: u64, stream_id: u64, receive: impl Receive) -> Result<(), Error> {
    let mut out = IoBuf::with_capacity(CHUNK)?;
    let mut inb = IoBuf::with_capacity(CHUNK)?;
    let mut sent = 0u64;
    let mut checked = 0u64;
    while checked < len {
        if sent < len {
            let n = fill_pattern(&mut out, stream_id, sent, len);
            let (result, back) = stream.send_all(out).await;
            out = back;
            record(Op::Send, &result);
            result?;
            sent += n as u64;
        }
        // Read what is echoed so far (at least one receive per chunk sent).
        while checked < sent {
            let (result, back) = receive.receive(stream, inb).await;
            inb = match back {
                Some(buf) => buf,
                None => IoBuf::with_capacity(CHUNK)?,
            };
            record(Op::Receive, &result);
            let n = result?;
            if n == 0 {
                return Err(Error::Status(wsk_sys::STATUS_CONNECTION_DISCONNECTED));
            }
            for (i, byte) in inb.as_slice().iter().enumerate() {
                if *byte != pattern(stream_id, checked + i as u64) {
                    STATS.data_errors.fetch_add(1, Ordering::Relaxed);
                    return Err(Error::InvalidInput("echoed data differs"));
                }
            }
            checked += n as u64;
            STATS.bytes.fetch_add(n as u64, Ordering::Relaxed);
        }
    }
    Ok(())
}

/// How an exchange receives the echo: [`Bounded`] or [`Timed`].
trait Receive: Copy {
    /// Receives into `buf`; the buffer comes back unless the receive was given up.
    fn receive(
        self,
        stream: &mut TcpStream,
        buf: IoBuf,
    ) -> impl Future<Output = (Result<usize, Error>, Option<IoBuf>)> + Send;
}

/// Receives with [`bounded_recv`].
#[derive(Clone, Copy)]
struct Bounded;

impl Receive for Bounded {
    fn receive(
        self,
        stream: &mut TcpStream,
        buf: IoBuf,
    ) -> impl Future<Output = (Result<usize, Error>, Option<IoBuf>)> + Send {
        bounded_recv(stream, buf)
    }
}

/// Receives with [`timed_recv`] and this deadline.
#[derive(Clone, Copy)]
struct Timed(Duration);

impl Receive for Timed {
    fn receive(
        self,
        stream: &mut TcpStream,
        buf: IoBuf,
    ) -> impl Future<Output = (Result<usize, Error>, Option<IoBuf>)> + Send {
        timed_recv(stream, buf, self.0)
    }
}

/// A receive bounded by [`OP_BOUND`] (past it, a hang).
async fn bounded_recv(stream: &mut TcpStream, buf: IoBuf) -> (Result<usize, Error>, Option<IoBuf>) {
    // Keep the buffer on timeout: the dropped receive hands it to the completion path, so
    // a fresh one is allocated.
    match timeout(OP_BOUND, stream.recv(buf)).await {
        Ok((result, buf)) => (result, Some(buf)),
        Err(_) => {
            STATS.hangs.fetch_add(1, Ordering::Relaxed);
            (Err(Error::Cancelled), None)
        }
    }
}

/// Receives with `deadline`, again with the buffer the deadline handed back until data comes.
/// No timer wraps the whole (the future stays small: a driver's stack is); a hang is counted
/// when the deadlines add up to [`OP_BOUND`]. A provider that cannot cancel (Wine's netio)
/// returns the receive when the echo arrives.
async fn timed_recv(
    stream: &mut TcpStream,
    mut buf: IoBuf,
    deadline: Duration,
) -> (Result<usize, Error>, Option<IoBuf>) {
    let mut waited = Duration::ZERO;
    loop {
        let (result, back) = stream.recv_timeout(buf, deadline).await;
        match result {
            Err(Error::TimedOut) if waited < OP_BOUND => {
                // The buffer came back with the deadline: the same one is used again.
                STATS.op(Op::Timeout);
                waited += deadline;
                buf = back;
            }
            Err(Error::TimedOut) => {
                STATS.hangs.fetch_add(1, Ordering::Relaxed);
                return (Err(Error::Cancelled), Some(back));
            }
            result => return (result, Some(back)),
        }
    }
}

/// [`exchange_and_close`] with receives that carry a deadline of 1 to 5 ms ([`timed_recv`]),
/// in a task of its own: its future stays out of the client's, which a driver's stack must
/// hold once when the client is spawned.
async fn deadline_exchange(stream: TcpStream, rng: &mut Rng, stream_id: u64, spawner: &Spawner) {
    let deadline = Duration::from_millis(1 + rng.below(5));
    let mut task_rng = Rng::new(rng.next_u64());
    let timed = spawner.spawn(async move {
        exchange_and_close(stream, &mut task_rng, stream_id, Timed(deadline)).await;
    });
    match timed {
        Ok(task) => {
            if task.await.is_err() {
                STATS.op(Op::Cancel);
            }
        }
        // The stream went with the future: it is closed in the background.
        Err(_) => STATS.failure(Error::NoMemory),
    }
}

async fn exchange_and_close(mut stream: TcpStream, rng: &mut Rng, stream_id: u64, receive: impl Receive) {
    let rounds = 1 + rng.below(3);
    for _ in 0..rounds {
        let len = 1 + rng.below(MAX_PAYLOAD);
        if exchange(&mut stream, len, stream_id, receive).await.is_err() {
            break;
        }
    }
    let shut = stream.shutdown().await;
    record(Op::Disconnect, &shut);
    let closed = stream.close().await;
    record(Op::Close, &closed);
}

/// Starts a receive that cannot complete, drops it (IoCancelIrp), then uses the socket.
async fn cancel_then_use(mut stream: TcpStream, rng: &mut Rng, stream_id: u64) {
    if let Ok(buf) = IoBuf::with_capacity(16) {
        let wait = Duration::from_millis(1 + rng.below(5));
        let cancelled = timeout(wait, stream.recv(buf)).await;
        STATS.op(Op::Cancel);
        if let Ok((Err(e), _)) = cancelled {
            STATS.failure(e);
        }
    }
    let _ = exchange(&mut stream, 1 + rng.below(4096), stream_id, Bounded).await;
    let closed = stream.close().await;
    record(Op::Close, &closed);
}

/// Closes from the write half while the read half's receive is pending in another task.
async fn close_racing_reader(stream: TcpStream, spawner: &Spawner) {
    let (mut read, write) = stream.into_split();
    let reader = spawner.spawn(async move {
        let Ok(buf) = IoBuf::with_capacity(1024) else { return Ok(0) };
        let (result, _buf) = read.recv(buf).await;
        result
    });
    wsk_executor::yield_now().await;
    let closed = write.close().await;
    record(Op::Close, &closed);
    if let Ok(reader) = reader {
        match reader.await {
            Ok(result) => record(Op::Receive, &result),
            Err(_) => STATS.op(Op::Cancel),
        }
    }
}

async fn abort(mut stream: TcpStream) {
    if let Ok(buf) = IoBuf::copy_from(b"abortive") {
        let (sent, _) = stream.send(buf).await;
        record(Op::Send, &sent);
    }
    let aborted = stream.abort().await;
    record(Op::Abort, &aborted);
    let closed = stream.close().await;
    record(Op::Close, &closed);
}

/// Drops the socket with a send just done: the library closes it in the background.
async fn drop_without_close(mut stream: TcpStream) {
    if let Ok(buf) = IoBuf::copy_from(b"dropped") {
        let (sent, _) = stream.send(buf).await;
        record(Op::Send, &sent);
    }
    drop(stream);
    STATS.op(Op::Close);
}

/// Sends a pattern and reads the echo through an event stream in another task (checking
/// every byte, holding each item while it does); one time in three the write half closes
/// the connection as soon as it has sent, under the reading stream.
async fn events_exchange(stream: TcpStream, rng: &mut Rng, stream_id: u64, spawner: &Spawner) {
    // A small bound: a fast echo overruns it and the stream falls back to IRP receives.
    let config = EventConfig { max_retained_bytes: 16 * 1024, ..EventConfig::default() };
    let (mut events, writer) = match stream.into_events(config) {
        Ok(parts) => parts,
        Err(refused) => return exchange_and_close(refused.socket, rng, stream_id, Bounded).await,
    };
    let len = 1 + rng.below(MAX_PAYLOAD);
    let early_close = rng.chance(3);
    let reader = spawner.spawn(async move {
        let mut checked = 0u64;
        while checked < len {
            let data = match timeout(OP_BOUND, next_data(&mut events)).await {
                Ok(Some(data)) => data,
                Ok(None) => break,
                Err(_) => {
                    STATS.hangs.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            };
            for piece in data.segments() {
                for (i, byte) in piece.iter().enumerate() {
                    if *byte != pattern(stream_id, checked + i as u64) {
                        STATS.data_errors.fetch_add(1, Ordering::Relaxed);
                        return checked;
                    }
                }
                checked += piece.len() as u64;
            }
            STATS.bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
            drop(data);
        }
        checked
    });
    let mut writer = writer;
    let sent = send_pattern(&mut writer, len, stream_id).await;
    if !early_close && sent.is_ok() {
        if let Ok(reader) = reader {
            let _ = reader.await;
        }
        let shut = writer.shutdown().await;
        record(Op::Disconnect, &shut);
        let closed = writer.close().await;
        record(Op::Close, &closed);
    } else {
        // Close under the reading stream: it ends, and the close waits for what it holds.
        let closed = writer.close().await;
        record(Op::Close, &closed);
        if let Ok(reader) = reader {
            let _ = reader.await;
        }
    }
}

/// Sends `len` pattern bytes of stream `stream_id`.
async fn send_pattern(writer: &mut TcpWriteHalf, len: u64, stream_id: u64) -> Result<(), Error> {
    let mut out = IoBuf::with_capacity(CHUNK)?;
    let mut sent = 0u64;
    while sent < len {
        let n = fill_pattern(&mut out, stream_id, sent, len);
        let (result, back) = writer.send_all(out).await;
        out = back;
        record(Op::Send, &result);
        result?;
        sent += n as u64;
    }
    Ok(())
}
