//! Admission control on the emulator with its verifier: a conditional-accept listener
//! (`TcpListener::bind_conditional`) whose admission rejects a peer before a socket exists,
//! and `wsk::service::TcpService` with `Limits`: `max_connections` (k served at once, the
//! others served in order as served ones close, none lost) and `per_peer` (a second
//! connection from one address refused while the first is open, accepted after it closed).
//! Concurrency is measured with the driver's counters, never with timing.

use std::io::{Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener as HostListener, TcpStream as HostStream};
use std::sync::atomic::{AtomicU8, AtomicU16, AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use wsk::pool::PoolBox;
use wsk::service::{self, ConnectionCounters, Limits, TcpService};
use wsk::{
    Admission, DriverGlobal, Error, Inspection, IoBuf, PeerLimit, PerPeerLimit, TcpListener, TcpStream, Verdict,
};
use wsk_emulator::LoadedDriver;
use wsk_sys::{DRIVER_OBJECT, NTSTATUS, UNICODE_STRING};
use wsk_tests::harness::run_clean;
use wsk_tests::{Watchdog, builder, lock, wait_until};

/// One test at a time: the driver's counters, limits and slots are statics.
static SERIAL: Mutex<()> = Mutex::new(());

static PORT: AtomicU16 = AtomicU16::new(0);
static MAX_CONNECTIONS: AtomicU32 = AtomicU32::new(0);
/// Whether the service gets the per-peer limit.
static PER_PEER_ON: AtomicU8 = AtomicU8::new(0);
static ACCEPTED: AtomicU64 = AtomicU64::new(0);
static OPEN: AtomicU64 = AtomicU64::new(0);
static ERRORS: AtomicU64 = AtomicU64::new(0);
/// Handlers running now, and the most that ever ran at once.
static SERVING: AtomicU64 = AtomicU64::new(0);
static PEAK_SERVING: AtomicU64 = AtomicU64::new(0);
/// What `stop` returned at unload: 0 not called, 1 every socket closed, 2 not.
static STOPPED: AtomicU8 = AtomicU8::new(0);

static COUNTERS: ConnectionCounters = ConnectionCounters { accepted: &ACCEPTED, open: &OPEN, errors: &ERRORS };
static SERVICE: DriverGlobal<TcpService> = DriverGlobal::new();

/// The per-peer table, counting the requests its inspection rejected; `lenient` makes the
/// inspection admit everything, as when a burst passes it before any is counted.
struct CountingLimit {
    table: PerPeerLimit<64>,
    rejected: AtomicU64,
    lenient: AtomicU8,
}

impl Admission for CountingLimit {
    fn inspect(&self, peer: SocketAddr) -> Verdict {
        if self.lenient.load(Ordering::Relaxed) != 0 {
            return Verdict::Accept;
        }
        let verdict = self.table.inspect(peer);
        if verdict == Verdict::Reject {
            self.rejected.fetch_add(1, Ordering::Relaxed);
        }
        verdict
    }
}

impl PeerLimit for CountingLimit {
    fn try_acquire(&self, peer: IpAddr) -> bool {
        self.table.try_acquire(peer)
    }

    fn release(&self, peer: IpAddr) {
        self.table.release(peer);
    }
}

static PER_PEER: CountingLimit =
    CountingLimit { table: PerPeerLimit::new(0), rejected: AtomicU64::new(0), lenient: AtomicU8::new(0) };

const CLOSE_WAIT: Duration = Duration::from_secs(10);
const LIMIT: Duration = Duration::from_secs(30);

/// Echoes until the peer finishes sending, counting itself in [`SERVING`] meanwhile.
async fn serve(mut stream: TcpStream, _peer: SocketAddr) {
    let now = SERVING.fetch_add(1, Ordering::AcqRel) + 1;
    PEAK_SERVING.fetch_max(now, Ordering::AcqRel);
    if let Ok(mut buf) = IoBuf::with_capacity(256) {
        loop {
            let (received, back) = stream.recv(buf).await;
            buf = back;
            match received {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let (sent, back) = stream.send_all(buf).await;
                    buf = back;
                    if sent.is_err() {
                        break;
                    }
                    buf.clear();
                }
            }
        }
    }
    let _ = stream.shutdown().await;
    let _ = stream.close().await;
    SERVING.fetch_sub(1, Ordering::AcqRel);
}

/// # Safety
/// Called as DriverEntry by the emulator.
unsafe extern "system" fn driver_entry(driver: *mut DRIVER_OBJECT, _path: *mut UNICODE_STRING) -> NTSTATUS {
    let start = || {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, PORT.load(Ordering::Relaxed)));
        let per_peer: Option<&'static dyn PeerLimit> =
            if PER_PEER_ON.load(Ordering::Relaxed) != 0 { Some(&PER_PEER) } else { None };
        let limits = Limits { max_connections: MAX_CONNECTIONS.load(Ordering::Relaxed), per_peer };
        // SAFETY: DriverEntry's own driver object.
        let service =
            unsafe { TcpService::start_limited(driver, "admission-test", addr, &[], COUNTERS, limits, serve)? };
        let service = PoolBox::try_new(service).map_err(|mut service| service.stop_with(Error::NoMemory))?;
        assert!(SERVICE.set(service), "no service of an earlier load");
        Ok(())
    };
    // SAFETY: the emulator passes DriverEntry's own driver object.
    unsafe { service::driver_entry(driver, "admission-test", driver_unload, start) }
}

/// # Safety
/// Called once as DriverUnload by the emulator.
unsafe extern "system" fn driver_unload(_driver: *mut DRIVER_OBJECT) {
    if let Some(mut service) = SERVICE.take() {
        let outcome = service.stop(CLOSE_WAIT);
        STOPPED.store(if outcome.is_clean() { 1 } else { 2 }, Ordering::Relaxed);
    }
}

fn free_port() -> u16 {
    HostListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap().local_addr().unwrap().port()
}

struct Run {
    _serial: MutexGuard<'static, ()>,
    _watchdog: Watchdog,
    port: u16,
    driver: LoadedDriver,
}

/// Loads the service with `max_connections` and a per-peer limit of `per_peer` (0: none).
fn load(name: &str, max_connections: u32, per_peer: u32) -> Run {
    let serial = lock(&SERIAL);
    let watchdog = Watchdog::test(name);
    let port = free_port();
    PORT.store(port, Ordering::Relaxed);
    MAX_CONNECTIONS.store(max_connections, Ordering::Relaxed);
    PER_PEER_ON.store(u8::from(per_peer != 0), Ordering::Relaxed);
    PER_PEER.table.set_limit(per_peer);
    PER_PEER.rejected.store(0, Ordering::Relaxed);
    PER_PEER.lenient.store(0, Ordering::Relaxed);
    for counter in [&ACCEPTED, &OPEN, &ERRORS, &SERVING, &PEAK_SERVING] {
        counter.store(0, Ordering::Relaxed);
    }
    STOPPED.store(0, Ordering::Relaxed);
    let driver = builder().load(name, driver_entry).expect("the driver loads");
    Run { _serial: serial, _watchdog: watchdog, port, driver }
}

fn unload(driver: LoadedDriver) {
    let report = driver.unload();
    report.assert_clean();
    report.assert_unloaded();
    assert_eq!(STOPPED.load(Ordering::Relaxed), 1, "stop reported a socket still open");
    assert_eq!(wsk::live_sockets(), 0);
}

fn connect(port: u16) -> HostStream {
    let client = HostStream::connect((Ipv4Addr::LOCALHOST, port)).expect("connect to the service");
    client.set_read_timeout(Some(LIMIT)).unwrap();
    client
}

/// Sends `byte` and reads it back (blocks until the connection is served).
fn echo(client: &mut HostStream, byte: u8) {
    client.write_all(&[byte]).unwrap();
    let mut back = [0u8; 1];
    client.read_exact(&mut back).unwrap_or_else(|e| panic!("echo of {byte}: {e}"));
    assert_eq!(back[0], byte);
}

/// Ends a served client: its write side, then the echo's end of stream.
fn finish(mut client: HostStream) {
    client.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
}

/// A refused connection: it reads end of stream or a reset, never an echo.
fn assert_refused(mut client: HostStream) {
    let _ = client.write_all(b"?");
    let mut byte = [0u8; 1];
    match client.read(&mut byte) {
        Ok(0) | Err(_) => {}
        Ok(_) => panic!("a refused connection was served"),
    }
}

/// `max_connections` = 3, 7 clients: 3 are served at once, the 4 others wait in the listen
/// backlog and are served in order as served ones close; none is lost and never more than 3
/// handlers run at once.
#[test]
fn max_connections_serves_k_at_once_and_the_others_as_served_ones_close() {
    const K: usize = 3;
    const N: usize = 4;
    let run = load("admission-max", K as u32, 0);
    // Connected one after the other, so the backlog holds them in this order.
    let mut clients: Vec<HostStream> = (0..K + N).map(|_| connect(run.port)).collect();
    for (i, client) in clients.iter_mut().enumerate().take(K) {
        echo(client, i as u8);
    }
    wait_until("k handlers running", LIMIT, || SERVING.load(Ordering::Acquire) == K as u64);
    // The others wait: their bytes are sent, not echoed, and not accepted.
    for (i, client) in clients.iter_mut().enumerate().skip(K) {
        client.write_all(&[i as u8]).unwrap();
    }
    assert_eq!(ACCEPTED.load(Ordering::Acquire), K as u64, "a connection beyond the limit was accepted");
    let mut served = clients.drain(..K).collect::<Vec<_>>();
    let mut waiting = clients;
    let mut next = K;
    while let Some(done) = (!served.is_empty()).then(|| served.remove(0)) {
        finish(done);
        if !waiting.is_empty() {
            let mut client = waiting.remove(0);
            let mut back = [0u8; 1];
            client.read_exact(&mut back).unwrap_or_else(|e| panic!("client {next} was never served: {e}"));
            assert_eq!(usize::from(back[0]), next, "served out of order");
            next += 1;
            served.push(client);
        }
        assert!(PEAK_SERVING.load(Ordering::Acquire) <= K as u64, "more than {K} connections served at once");
    }
    wait_until("every handler ended", LIMIT, || SERVING.load(Ordering::Acquire) == 0);
    assert_eq!(ACCEPTED.load(Ordering::Acquire), (K + N) as u64, "every client was served");
    assert_eq!(PEAK_SERVING.load(Ordering::Acquire), K as u64);
    assert_eq!(ERRORS.load(Ordering::Acquire), 0);
    unload(run.driver);
}

/// `per_peer` = 1 from 127.0.0.1: the second connection is refused by the inspection (before a
/// socket exists) while the first is open; after the first closed, a new one is served.
#[test]
fn per_peer_limit_refuses_a_second_connection_while_the_first_is_open() {
    let run = load("admission-per-peer", 0, 1);
    let mut first = connect(run.port);
    echo(&mut first, 1);
    let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
    assert_eq!(PER_PEER.table.count(loopback), 1);
    let second = connect(run.port);
    assert_refused(second);
    assert_eq!(PER_PEER.rejected.load(Ordering::Acquire), 1, "refused by the inspection");
    assert_eq!(ACCEPTED.load(Ordering::Acquire), 1);
    finish(first);
    wait_until("the first connection's count released", LIMIT, || PER_PEER.table.count(loopback) == 0);
    let mut third = connect(run.port);
    echo(&mut third, 3);
    finish(third);
    wait_until("every handler ended", LIMIT, || SERVING.load(Ordering::Acquire) == 0);
    assert_eq!(ACCEPTED.load(Ordering::Acquire), 2);
    assert_eq!(PER_PEER.rejected.load(Ordering::Acquire), 1);
    assert_eq!(PER_PEER.table.count(loopback), 0);
    unload(run.driver);
}

/// A connection beyond the per-peer limit that passed the inspection (a burst, here forced
/// by a lenient inspection) is closed by the accept loop when it counts it: never served, never
/// counted as accepted. The count of a connection still open at unload is released when its
/// task is dropped.
#[test]
fn the_accept_loop_cuts_a_burst_past_the_inspection_and_unload_releases_the_counts() {
    let run = load("admission-burst", 0, 1);
    PER_PEER.lenient.store(1, Ordering::Relaxed);
    let mut first = connect(run.port);
    echo(&mut first, 1);
    let second = connect(run.port);
    assert_refused(second);
    assert_eq!(PER_PEER.rejected.load(Ordering::Acquire), 0, "the inspection admitted it");
    assert_eq!(ACCEPTED.load(Ordering::Acquire), 1, "counted as accepted");
    assert_eq!(PEAK_SERVING.load(Ordering::Acquire), 1, "served");
    let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
    assert_eq!(PER_PEER.table.count(loopback), 1);
    unload(run.driver);
    assert_eq!(PER_PEER.table.count(loopback), 0, "the open connection's count outlived its task");
    drop(first);
}

/// Rejects every request: counts them.
struct RejectAll(AtomicU64);

impl Admission for RejectAll {
    fn inspect(&self, _peer: SocketAddr) -> Verdict {
        self.0.fetch_add(1, Ordering::Relaxed);
        Verdict::Reject
    }
}

static REJECT_ALL: RejectAll = RejectAll(AtomicU64::new(0));

/// A conditional listener whose admission rejects: the peer is refused and the accept never
/// gets the connection (it times out).
#[test]
fn a_conditional_listener_never_accepts_what_its_admission_rejects() {
    let _serial = lock(&SERIAL);
    let rejected = run_clean(LIMIT, |env| async move {
        let mut listener =
            TcpListener::bind_conditional(env.wsk, SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), &[], &REJECT_ALL)
                .await
                .expect("bind");
        let at = listener.local_addr();
        let peer = std::thread::spawn(move || {
            let client = HostStream::connect(at).expect("the host connects");
            client.set_read_timeout(Some(LIMIT)).unwrap();
            assert_refused(client);
        });
        while REJECT_ALL.0.load(Ordering::Relaxed) == 0 {
            wsk_executor::sleep(Duration::from_millis(5)).await;
        }
        let accepted = listener.accept_timeout(Duration::from_millis(100)).await;
        assert!(matches!(accepted, Err(Error::TimedOut)), "{:?}", accepted.map(|(_, peer)| peer));
        peer.join().unwrap();
        listener.close().await.expect("close");
        REJECT_ALL.0.load(Ordering::Relaxed)
    });
    assert_eq!(rejected, 1);
}

/// Pends every request and keeps the handles in a fixed place of its own (taken without
/// waiting: a contended place rejects the request, by dropping its handle).
struct PendAll {
    held: Mutex<[Option<Inspection>; 8]>,
    pended: AtomicU64,
}

impl Admission for PendAll {
    fn inspect(&self, _peer: SocketAddr) -> Verdict {
        Verdict::Pend
    }

    fn pends(&self) -> bool {
        true
    }

    fn pended(&self, inspection: Inspection) {
        self.pended.fetch_add(1, Ordering::Relaxed);
        let Ok(mut held) = self.held.try_lock() else { return };
        if let Some(free) = held.iter_mut().find(|place| place.is_none()) {
            *free = Some(inspection);
        }
    }
}

static PEND_ALL: PendAll = PendAll { held: Mutex::new([const { None }; 8]), pended: AtomicU64::new(0) };

/// The next pended inspection the admission holds (waits in 5 ms steps, in the task).
async fn next_pended() -> Inspection {
    loop {
        if let Some(inspection) = lock(&PEND_ALL.held).iter_mut().find_map(Option::take) {
            return inspection;
        }
        wsk_executor::sleep(Duration::from_millis(5)).await;
    }
}

/// A host client on its own thread: connects, then runs `then` with the connection.
fn client(at: SocketAddr, then: impl FnOnce(HostStream) + Send + 'static) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let client = HostStream::connect(at).expect("the host connects");
        client.set_read_timeout(Some(LIMIT)).unwrap();
        then(client);
    })
}

/// Pended inspections decided later from a task, with the verifier on: one accepted (its
/// connection is accepted and served), one rejected (the peer is refused), one dropped (as
/// rejected), one whose peer leaves before the decision (the abort is seen; accepting it
/// afterwards is harmless and accepts nothing), and two still held when the listener is
/// closed (the close rejects them and does not wait for the handles; their decisions then
/// do nothing). No `WSK_INSPECTION_PENDING_AT_CLOSE`, nothing else reported.
#[test]
fn pended_inspections_are_decided_later_by_their_handles() {
    let _serial = lock(&SERIAL);
    let pended = run_clean(LIMIT, |env| async move {
        let mut listener =
            TcpListener::bind_conditional(env.wsk, SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), &[], &PEND_ALL)
                .await
                .expect("bind");
        let at = listener.local_addr();

        // Accepted later: served.
        let served = client(at, |mut client| {
            echo(&mut client, 7);
            finish(client);
        });
        let inspection = next_pended().await;
        assert_eq!(inspection.peer().ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));
        wsk_executor::sleep(Duration::from_millis(20)).await;
        assert!(listener.accept_timeout(Duration::from_millis(50)).await.is_err(), "accepted before the decision");
        inspection.accept().expect("WskInspectComplete");
        let (stream, _) = listener.accept().await.expect("the accepted request reaches the accept");
        serve(stream, at).await;
        served.join().unwrap();

        // Rejected later, and dropped: refused, never accepted.
        let rejected = client(at, assert_refused);
        next_pended().await.reject().expect("WskInspectComplete");
        rejected.join().unwrap();
        let dropped = client(at, assert_refused);
        drop(next_pended().await);
        dropped.join().unwrap();
        assert!(matches!(listener.accept_timeout(Duration::from_millis(100)).await, Err(Error::TimedOut)));

        // The peer leaves before the decision: the abort is seen, the completion harmless.
        let (left_tx, left_rx) = std::sync::mpsc::channel::<()>();
        let leaving = client(at, move |client| {
            left_rx.recv().unwrap();
            drop(client);
        });
        let inspection = next_pended().await;
        left_tx.send(()).unwrap();
        leaving.join().unwrap();
        while !inspection.is_aborted() {
            wsk_executor::sleep(Duration::from_millis(5)).await;
        }
        inspection.accept().expect("completing an aborted request");
        assert!(matches!(listener.accept_timeout(Duration::from_millis(100)).await, Err(Error::TimedOut)));

        // Closed with two handles held: the close rejects them, and ends.
        let held = [client(at, assert_refused), client(at, assert_refused)];
        let (first, second) = (next_pended().await, next_pended().await);
        listener.close().await.expect("close");
        assert!(first.is_closed() && second.is_closed());
        assert!(matches!(first.accept(), Err(Error::Closed)));
        drop(second);
        for peer in held {
            peer.join().unwrap();
        }
        PEND_ALL.pended.load(Ordering::Relaxed)
    });
    assert_eq!(pended, 6);
}
