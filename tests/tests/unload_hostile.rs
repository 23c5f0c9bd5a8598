//! DriverUnload with hostile peers still connected: the echo driver (both receive paths) and
//! the stress driver are unloaded while host peers hold connections that never read, never
//! send nor close, or are half open. Each unload must return (a watchdog fails the test with
//! a message after [`UNLOAD_BOUND`]), the driver's last line must report `0 sockets open`, and
//! the verifier report must be clean. A driver that keeps sockets outside its tasks has them
//! aborted by the unload protocol, and one that keeps a task alive has its executor leaked
//! (reported) rather than waited for: unload ends in both. A task polled while its service
//! stops still finds the registration in place. Each test prints how long
//! DriverUnload took (a figure, not a check).

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener as HostListener, TcpStream as HostStream};
use std::sync::Mutex;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use wsk_emulator::{LoadedDriver, VerifierReport};
use wsk_tests::{Watchdog, builder, lock, wait_until};

/// One driver at a time (the emulator loads one per process, and the drivers' counters are
/// statics).
static SERIAL: Mutex<()> = Mutex::new(());

/// How long DriverUnload may take before the test fails: generous, it is a hang detector, not
/// a speed check.
const UNLOAD_BOUND: Duration = Duration::from_secs(60);
/// Bound on the set-up waits.
const LIMIT: Duration = Duration::from_secs(30);

fn free_port() -> u16 {
    HostListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap().local_addr().unwrap().port()
}

/// What a hostile peer does once connected.
#[derive(Clone, Copy, Debug)]
enum Peer {
    /// Sends until its own send buffer is full and never reads: the driver's echo sends
    /// fill the window and stay pending.
    SendsNeverReads,
    /// Connects and then does nothing: no data, no FIN, no reads.
    Silent,
    /// Shuts its write side down (FIN) and then neither reads nor closes.
    HalfOpen,
    /// Sends until blocked, shuts its write side down, then neither reads nor closes: the
    /// driver's disconnect waits behind unsent data.
    FloodsThenHalfCloses,
}

/// Connects one peer to `addr` and makes it behave as `peer`. The socket is returned and
/// kept (never read, never closed) until after the unload.
fn hostile(addr: SocketAddr, peer: Peer) -> HostStream {
    let mut stream = HostStream::connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    match peer {
        Peer::Silent => {}
        Peer::HalfOpen => stream.shutdown(Shutdown::Write).unwrap(),
        Peer::SendsNeverReads | Peer::FloodsThenHalfCloses => {
            flood(&mut stream);
            if matches!(peer, Peer::FloodsThenHalfCloses) {
                stream.shutdown(Shutdown::Write).unwrap();
            }
        }
    }
    stream
}

/// Writes until the socket's send path stays full for a while (the driver stopped taking data
/// because its echo sends are blocked on our full receive window).
fn flood(stream: &mut HostStream) {
    stream.set_write_timeout(Some(Duration::from_millis(300))).unwrap();
    let chunk = vec![0x5a_u8; 64 * 1024];
    let mut total = 0usize;
    loop {
        match stream.write(&chunk) {
            Ok(n) => total += n,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => break,
            Err(e) => panic!("flooding peer: {e} after {total} bytes"),
        }
        assert!(total < 1 << 30, "the driver kept draining 1 GiB from a peer that never reads");
    }
}

/// Unloads `driver` on another thread and fails the test if DriverUnload has not returned
/// within [`UNLOAD_BOUND`].
fn unload_bounded(driver: LoadedDriver, what: &str) -> VerifierReport {
    let (tx, rx) = mpsc::channel();
    let started = std::time::Instant::now();
    let unloading = thread::Builder::new()
        .name(format!("unload {what}"))
        .spawn(move || {
            let _ = tx.send(driver.unload());
        })
        .unwrap();
    match rx.recv_timeout(UNLOAD_BOUND) {
        Ok(report) => {
            unloading.join().unwrap();
            // A figure for the record, not a check: the bound above is the check.
            eprintln!("{what}: DriverUnload returned after {:?}", started.elapsed());
            report
        }
        Err(_) => {
            // The driver is still inside DriverUnload: nothing more can be checked, and the
            // process cannot unload it; fail loudly (the process-wide watchdog ends the run).
            panic!("{what}: DriverUnload did not return within {} s", UNLOAD_BOUND.as_secs())
        }
    }
}

/// The `... sockets open` count in the last line logged by `prefix`'s DriverUnload.
fn sockets_open_at_unload(prefix: &str) -> usize {
    let log = wsk_emulator::debug_log();
    let line = log
        .iter()
        .rev()
        .find(|l| l.starts_with(&format!("{prefix}: DriverUnload done")))
        .unwrap_or_else(|| panic!("no `{prefix}: DriverUnload done` line in the debug log: {log:#?}"));
    let before = line.strip_suffix(" sockets open").unwrap_or_else(|| panic!("unexpected unload line: {line}"));
    let count = before.rsplit(' ').next().unwrap();
    count.parse().unwrap_or_else(|e| panic!("unload line `{line}`: {e}"))
}

fn check(report: &VerifierReport, prefix: &str, what: &str) {
    report.assert_clean();
    report.assert_unloaded();
    // The count DriverUnload logged (`wsk::live_sockets()` at its end), taken while this
    // driver was loaded: after `unload` returns, the next test of the binary may already have
    // loaded a driver with sockets of its own, so the process-wide count is not read here.
    assert_eq!(sockets_open_at_unload(prefix), 0, "{what}: DriverUnload reported sockets open");
}

/// Loads the echo driver (`events`: receive events, else the IRP path), connects `peers`, waits
/// until the driver accepted all of them, unloads and checks.
fn echo_with(events: bool, peers: &[Peer]) {
    let what = format!("echo ({}) with {peers:?}", if events { "events" } else { "IRPs" });
    let _serial = lock(&SERIAL);
    let _watchdog = Watchdog::new(&what, UNLOAD_BOUND + LIMIT * 2);
    let port = free_port();
    let before = echo_driver::server::STATS.connections.load(std::sync::atomic::Ordering::Relaxed);
    let driver = builder()
        .param_dword("Port", u32::from(port))
        .param_dword("ReceiveEvents", u32::from(events))
        .load("echo", echo_driver::driver::driver_entry)
        .expect("the echo driver loads");
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let held: Vec<HostStream> = peers.iter().map(|&p| hostile(addr, p)).collect();
    wait_until("the driver accepted every peer", LIMIT, || {
        echo_driver::server::STATS.connections.load(std::sync::atomic::Ordering::Relaxed) - before == peers.len() as u64
    });
    let report = unload_bounded(driver, &what);
    check(&report, "echo", &what);
    // The peers' connections ended with the driver: a read sees the end or a reset (data the
    // driver echoed first may come before it), never a timeout.
    for mut stream in held {
        stream.set_read_timeout(Some(LIMIT)).unwrap();
        let mut sink = Vec::new();
        if let Err(e) = stream.read_to_end(&mut sink) {
            assert!(
                !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
                "{what}: a connection outlived the driver: {e}"
            );
        }
    }
}

const ALL: [Peer; 4] = [Peer::SendsNeverReads, Peer::Silent, Peer::HalfOpen, Peer::FloodsThenHalfCloses];

#[test]
fn echo_events_unloads_with_a_peer_that_never_reads() {
    echo_with(true, &[Peer::SendsNeverReads]);
}

#[test]
fn echo_irps_unloads_with_a_peer_that_never_reads() {
    echo_with(false, &[Peer::SendsNeverReads]);
}

#[test]
fn echo_events_unloads_with_a_silent_peer() {
    echo_with(true, &[Peer::Silent]);
}

#[test]
fn echo_irps_unloads_with_a_silent_peer() {
    echo_with(false, &[Peer::Silent]);
}

#[test]
fn echo_events_unloads_with_half_open_peers() {
    echo_with(true, &[Peer::HalfOpen, Peer::FloodsThenHalfCloses]);
}

#[test]
fn echo_irps_unloads_with_half_open_peers() {
    echo_with(false, &[Peer::HalfOpen, Peer::FloodsThenHalfCloses]);
}

#[test]
fn echo_events_unloads_with_every_hostile_peer_at_once() {
    echo_with(true, &ALL);
}

#[test]
fn echo_irps_unloads_with_every_hostile_peer_at_once() {
    echo_with(false, &ALL);
}

/// The stress driver under its own load (its clients and servers inside the driver, no time
/// limit) with hostile host peers on its listener too.
#[test]
fn stress_unloads_mid_run_with_hostile_peers() {
    let what = "stress with every hostile peer";
    let _serial = lock(&SERIAL);
    let _watchdog = Watchdog::new(what, UNLOAD_BOUND + LIMIT * 2);
    let port = free_port();
    let driver = builder()
        .param_dword("Port", u32::from(port))
        .param_dword("Clients", 8)
        .param_dword("Seconds", 0)
        .load("stress", stress_driver::driver::driver_entry)
        .expect("the stress driver loads");
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let held: Vec<HostStream> = ALL.iter().map(|&p| hostile(addr, p)).collect();
    // Let the workload run with the peers connected.
    thread::sleep(Duration::from_millis(500));
    let report = unload_bounded(driver, what);
    check(&report, "stress", what);
    drop(held);
}

/// A driver that keeps its connections outside any task: the handler moves each accepted
/// stream into [`KEPT`] and returns, and a task parks forever with its waker in [`PARKED`]
/// when `PARK` is set. Its DriverUnload stops the service with [`KEPT_DEADLINE`], records the
/// outcome, then drops what it kept.
mod keeper {
    use std::net::{Ipv4Addr, SocketAddr};
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
    use std::task::{Poll, Waker};
    use std::time::Duration;

    use wsk::pool::PoolBox;
    use wsk::service::{self, ConnectionCounters, StopOutcome, TcpService};
    use wsk::{DriverGlobal, Error, TcpStream, log};
    use wsk_sys::{DRIVER_OBJECT, NTSTATUS, UNICODE_STRING};
    use wsk_tests::lock;

    pub static PORT: AtomicU16 = AtomicU16::new(0);
    pub static PARK: AtomicBool = AtomicBool::new(false);
    pub static ACCEPTED: AtomicU64 = AtomicU64::new(0);
    static OPEN: AtomicU64 = AtomicU64::new(0);
    static ERRORS: AtomicU64 = AtomicU64::new(0);
    static COUNTERS: ConnectionCounters = ConnectionCounters { accepted: &ACCEPTED, open: &OPEN, errors: &ERRORS };
    static SERVICE: DriverGlobal<TcpService> = DriverGlobal::new();
    /// Streams kept outside any task.
    pub static KEPT: Mutex<Vec<TcpStream>> = Mutex::new(Vec::new());
    /// The waker of the parked task, kept by the driver.
    pub static PARKED: Mutex<Option<Waker>> = Mutex::new(None);
    /// What `stop` returned.
    pub static OUTCOME: Mutex<Option<StopOutcome>> = Mutex::new(None);
    /// The deadline of each wait of the unload protocol.
    pub const KEPT_DEADLINE: Duration = Duration::from_secs(2);

    async fn keep(stream: TcpStream, _peer: SocketAddr) {
        lock(&KEPT).push(stream);
    }

    /// # Safety
    /// Called as DriverEntry by the emulator.
    pub unsafe extern "system" fn driver_entry(driver: *mut DRIVER_OBJECT, _path: *mut UNICODE_STRING) -> NTSTATUS {
        let start = || {
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, PORT.load(Ordering::Relaxed)));
            // SAFETY: DriverEntry's own driver object.
            let service = unsafe { TcpService::start(driver, "keeper", addr, &[], COUNTERS, keep)? };
            let service = PoolBox::try_new(service).map_err(|mut service| service.stop_with(Error::NoMemory))?;
            if PARK.load(Ordering::Relaxed) {
                let parked = std::future::poll_fn(|cx| {
                    *lock(&PARKED) = Some(cx.waker().clone());
                    Poll::<()>::Pending
                });
                drop(service.service().executor()?.spawn(parked)?);
            }
            assert!(SERVICE.set(service), "no service of an earlier load");
            Ok(())
        };
        // SAFETY: the emulator passes DriverEntry's own driver object.
        unsafe { service::driver_entry(driver, "keeper", driver_unload, start) }
    }

    /// # Safety
    /// Called once as DriverUnload by the emulator.
    unsafe extern "system" fn driver_unload(_driver: *mut DRIVER_OBJECT) {
        if let Some(mut service) = SERVICE.take() {
            *lock(&OUTCOME) = Some(service.stop(KEPT_DEADLINE));
        }
        // The driver lets go of what it kept only now, after the protocol.
        lock(&KEPT).clear();
        log!(always, "keeper: DriverUnload done: {} sockets open", wsk::live_sockets());
    }
}

/// Loads the keeper driver, connects `peers`, and waits until it kept every stream.
fn load_keeper(name: &str, park: bool, peers: &[Peer]) -> (LoadedDriver, Vec<HostStream>) {
    let port = free_port();
    keeper::PORT.store(port, std::sync::atomic::Ordering::Relaxed);
    keeper::PARK.store(park, std::sync::atomic::Ordering::Relaxed);
    keeper::ACCEPTED.store(0, std::sync::atomic::Ordering::Relaxed);
    *lock(&keeper::OUTCOME) = None;
    let driver = builder().load(name, keeper::driver_entry).expect("the keeper driver loads");
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let held: Vec<HostStream> = peers.iter().map(|&p| hostile(addr, p)).collect();
    wait_until("the driver kept every stream", LIMIT, || lock(&keeper::KEPT).len() == peers.len());
    (driver, held)
}

/// Sockets kept outside any task are not closed by cancelling tasks: the protocol aborts
/// them (without it `WskDeregister` would wait for them until the emulator's limit and report
/// `WskDeregisterWithOpenSockets`). Unload returns, nothing leaks, the peers see their
/// connections end.
#[test]
fn sockets_kept_outside_tasks_are_aborted_at_unload() {
    let what = "keeper with streams outside tasks";
    let _serial = lock(&SERIAL);
    let _watchdog = Watchdog::new(what, UNLOAD_BOUND + LIMIT * 2);
    let peers = [Peer::SendsNeverReads, Peer::Silent, Peer::HalfOpen];
    let (driver, held) = load_keeper("keeper", false, &peers);
    let report = unload_bounded(driver, what);
    check(&report, "keeper", what);
    let outcome = lock(&keeper::OUTCOME).take().expect("DriverUnload stopped the service");
    assert_eq!(outcome.sockets_aborted, peers.len(), "{outcome}");
    assert_eq!((outcome.tasks_leaked, outcome.sockets_open), (0, 0), "{outcome}");
    // Closed, but the driver held their handles until after `stop`.
    assert_eq!(outcome.sockets_held, peers.len(), "{outcome}");
    assert!(outcome.is_clean());
    for mut stream in held {
        stream.set_read_timeout(Some(LIMIT)).unwrap();
        let mut sink = Vec::new();
        if let Err(e) = stream.read_to_end(&mut sink) {
            assert!(
                !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
                "{what}: an aborted connection stayed open: {e}"
            );
        }
    }
}

/// A task the driver keeps alive (its waker in a driver global) cannot be freed: the protocol
/// gives up on it after its second wait and leaks the executor rather than waiting forever or
/// freeing memory under the task. Unload still returns within its bound, the sockets are
/// aborted and closed, and the verifier reports the executor's memory and work item as leaked
/// (and nothing else: no socket, no registration, no IRP).
#[test]
fn a_task_kept_alive_by_the_driver_is_leaked_and_unload_still_ends() {
    let what = "keeper with a parked task";
    let _serial = lock(&SERIAL);
    let _watchdog = Watchdog::new(what, UNLOAD_BOUND + LIMIT * 2);
    let (driver, held) = load_keeper("keeper-parked", true, &[Peer::Silent]);
    wait_until("the parked task stored its waker", LIMIT, || lock(&keeper::PARKED).is_some());
    let report = unload_bounded(driver, what);
    report.assert_unloaded();
    // The only violations are the leak reports of the executor's memory and work item.
    for bugcheck in &report.bugchecks {
        assert!(
            matches!(bugcheck.rule, wsk_emulator::Rule::PoolLeak | wsk_emulator::Rule::WorkItemLeak),
            "{what}: unexpected violation: {report}"
        );
    }
    assert_eq!(sockets_open_at_unload("keeper"), 0, "{what}: DriverUnload reported sockets open");
    let outcome = lock(&keeper::OUTCOME).take().expect("DriverUnload stopped the service");
    assert_eq!(outcome.tasks_alive_at_deadline, 1, "{outcome}");
    assert_eq!(outcome.tasks_leaked, 1, "{outcome}");
    assert_eq!((outcome.sockets_aborted, outcome.sockets_open, outcome.sockets_held), (1, 0, 1), "{outcome}");
    assert!(!outcome.is_clean());
    let leaked: Vec<_> = report.leaks.iter().collect();
    assert!(!leaked.is_empty(), "the leaked executor is reported: {report}");
    for leak in &leaked {
        assert!(
            leak.tag == wsk_executor::kernel::POOL_TAG || leak.kind == wsk_emulator::LeakKind::WorkItem,
            "only the executor's memory and work item leak: {leak:?}"
        );
    }
    // The waker outlives the driver's executor memory only because that memory was leaked:
    // dropping it touches leaked (still allocated) memory, never freed memory.
    drop(lock(&keeper::PARKED).take());
    drop(held);
}

/// A driver whose task keeps using the registration where its service keeps it (a
/// `&'static Wsk` into the service's pool block, as the stress driver's clients do) and never
/// waits: it is polled again and again until the unload cancels it.
mod spinner {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::time::Duration;

    use wsk::pool::PoolBox;
    use wsk::service::{self, Service, StopOutcome};
    use wsk::{DriverGlobal, Wsk};
    use wsk_sys::{DRIVER_OBJECT, NTSTATUS, UNICODE_STRING};
    use wsk_tests::lock;

    static SERVICE: DriverGlobal<Service> = DriverGlobal::new();
    /// Polls of the task.
    pub static SPINS: AtomicU64 = AtomicU64::new(0);
    /// Set if a poll found the registration not ready.
    pub static LOST: AtomicBool = AtomicBool::new(false);
    pub static OUTCOME: std::sync::Mutex<Option<StopOutcome>> = std::sync::Mutex::new(None);

    /// # Safety
    /// Called as DriverEntry by the emulator.
    pub unsafe extern "system" fn driver_entry(driver: *mut DRIVER_OBJECT, _path: *mut UNICODE_STRING) -> NTSTATUS {
        let start = || {
            // SAFETY: DriverEntry's own driver object.
            let service = PoolBox::try_new(unsafe { Service::start(driver, "spinner")? })
                .map_err(|mut service| service.stop_with(wsk::Error::NoMemory))?;
            // SAFETY: the registration lives in the service's pool block, which stays in place
            // until DriverUnload's `stop` returns; `stop` takes the registration out only
            // after the executor's shutdown, when this task is gone.
            let wsk: &'static Wsk = unsafe { &*core::ptr::from_ref(service.wsk()?) };
            drop(service.executor()?.spawn(async move {
                loop {
                    if !wsk.is_ready() {
                        LOST.store(true, Ordering::SeqCst);
                    }
                    SPINS.fetch_add(1, Ordering::SeqCst);
                    wsk_executor::yield_now().await;
                }
            })?);
            assert!(SERVICE.set(service), "no service of an earlier load");
            Ok(())
        };
        // SAFETY: the emulator passes DriverEntry's own driver object.
        unsafe { service::driver_entry(driver, "spinner", driver_unload, start) }
    }

    /// # Safety
    /// Called once as DriverUnload by the emulator.
    unsafe extern "system" fn driver_unload(_driver: *mut DRIVER_OBJECT) {
        if let Some(mut service) = SERVICE.take() {
            *lock(&OUTCOME) = Some(service.stop(Duration::from_secs(2)));
        }
        wsk::log!(always, "spinner: DriverUnload done: {} sockets open", wsk::live_sockets());
    }
}

/// The unload protocol keeps the registration where the service holds it until the executor's
/// shutdown is over: a task polled meanwhile (the run in progress goes on until it reaches
/// the cancellation) still finds it. Taking it out first made such a task read a moved-out
/// registration (a crash of the test process, about one stress unload in ten).
#[test]
fn a_task_polled_while_the_service_stops_still_finds_the_registration() {
    let what = "spinner";
    let _serial = lock(&SERIAL);
    let _watchdog = Watchdog::new(what, UNLOAD_BOUND + LIMIT);
    for round in 0..20 {
        spinner::SPINS.store(0, std::sync::atomic::Ordering::SeqCst);
        let driver = builder().load("spinner", spinner::driver_entry).expect("the spinner driver loads");
        wait_until("the task spins", LIMIT, || spinner::SPINS.load(std::sync::atomic::Ordering::SeqCst) > 1000);
        let report = unload_bounded(driver, what);
        check(&report, "spinner", what);
        let outcome = lock(&spinner::OUTCOME).take().expect("DriverUnload stopped the service");
        assert!(outcome.is_clean(), "round {round}: {outcome}");
        assert!(!spinner::LOST.load(std::sync::atomic::Ordering::SeqCst), "round {round}: the registration went first");
    }
}
