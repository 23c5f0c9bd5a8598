//! `wsk::service::TcpService` in a driver on the emulator: its connection counters, its unload
//! protocol with a connection still open (the handler's task is cancelled, its socket closes,
//! `stop` reports every socket closed, the verifier finds nothing), and DriverEntry's failure
//! path when the listener cannot bind.

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener as HostListener, TcpStream as HostStream};
use std::sync::atomic::{AtomicU8, AtomicU16, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use wsk::pool::PoolBox;
use wsk::service::{self, ConnectionCounters, TcpService};
use wsk::{DriverGlobal, Error, IoBuf, TcpStream};
use wsk_emulator::{LoadError, LoadedDriver};
use wsk_sys::{DRIVER_OBJECT, NTSTATUS, UNICODE_STRING};
use wsk_tests::{Watchdog, builder, lock, wait_until};

/// One test at a time: the driver's counters and slots are statics.
static SERIAL: Mutex<()> = Mutex::new(());

static PORT: AtomicU16 = AtomicU16::new(0);
static ACCEPTED: AtomicU64 = AtomicU64::new(0);
static OPEN: AtomicU64 = AtomicU64::new(0);
static ERRORS: AtomicU64 = AtomicU64::new(0);
/// Bytes the handlers received, over all connections.
static RECEIVED: AtomicU64 = AtomicU64::new(0);
/// What `stop` returned at unload: 0 not called, 1 every socket closed, 2 not.
static STOPPED: AtomicU8 = AtomicU8::new(0);

static COUNTERS: ConnectionCounters = ConnectionCounters { accepted: &ACCEPTED, open: &OPEN, errors: &ERRORS };
static SERVICE: DriverGlobal<TcpService> = DriverGlobal::new();

const CLOSE_WAIT: Duration = Duration::from_secs(10);
const LIMIT: Duration = Duration::from_secs(30);

fn reset(port: u16) {
    PORT.store(port, Ordering::Relaxed);
    for counter in [&ACCEPTED, &OPEN, &ERRORS, &RECEIVED] {
        counter.store(0, Ordering::Relaxed);
    }
    STOPPED.store(0, Ordering::Relaxed);
}

/// Receives until the peer finishes sending, then disconnects gracefully and closes.
async fn serve(mut stream: TcpStream, _peer: SocketAddr) {
    let Ok(mut buf) = IoBuf::with_capacity(4096) else { return };
    loop {
        let (received, back) = stream.recv(buf).await;
        buf = back;
        match received {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                RECEIVED.fetch_add(n as u64, Ordering::Relaxed);
                buf.clear();
            }
        }
    }
    let _ = stream.shutdown().await;
    let _ = stream.close().await;
}

/// # Safety
/// Called as DriverEntry by the emulator.
unsafe extern "system" fn driver_entry(driver: *mut DRIVER_OBJECT, _path: *mut UNICODE_STRING) -> NTSTATUS {
    let start = || {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, PORT.load(Ordering::Relaxed)));
        // SAFETY: DriverEntry's own driver object.
        let service = unsafe { TcpService::start(driver, "service-test", addr, &[], COUNTERS, serve)? };
        let service = PoolBox::try_new(service).map_err(|mut service| service.stop_with(Error::NoMemory))?;
        assert!(SERVICE.set(service), "no service of an earlier load");
        Ok(())
    };
    // SAFETY: the emulator passes DriverEntry's own driver object.
    unsafe { service::driver_entry(driver, "service-test", driver_unload, start) }
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

/// One test's driver: serialized with the other tests, under a watchdog, on a free port.
struct Run {
    _serial: MutexGuard<'static, ()>,
    _watchdog: Watchdog,
    port: u16,
    driver: LoadedDriver,
}

fn load(name: &str) -> Run {
    let serial = lock(&SERIAL);
    let watchdog = Watchdog::test(name);
    let port = free_port();
    reset(port);
    let driver = builder().load(name, driver_entry).expect("the driver loads");
    Run { _serial: serial, _watchdog: watchdog, port, driver }
}

/// Unloads: a clean report, DriverUnload called, `stop` reported every socket closed.
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

/// Unload with a connection open: the handler's task is cancelled at shutdown, its socket
/// closes in the background, `stop` waits for it and reports every socket closed; the client
/// sees its connection end; the cancelled connection stays counted open.
#[test]
fn stop_with_a_connection_open_closes_every_socket() {
    let run = load("service-open");
    let mut client = connect(run.port);
    client.write_all(b"held open").unwrap();
    wait_until("the handler received the bytes", LIMIT, || RECEIVED.load(Ordering::Relaxed) == 9);
    assert_eq!((ACCEPTED.load(Ordering::Relaxed), OPEN.load(Ordering::Relaxed)), (1, 1));

    unload(run.driver);
    let mut rest = Vec::new();
    // The driver's side is gone: the read ends (end of stream or reset), it does not time out.
    if let Err(e) = client.read_to_end(&mut rest) {
        assert!(
            !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
            "the connection outlived the driver: {e}"
        );
    }
    assert_eq!(OPEN.load(Ordering::Relaxed), 1, "a handler cancelled at unload stays counted open");
    assert_eq!(ERRORS.load(Ordering::Relaxed), 0);
}

/// A handler that returns is no longer counted open; connections are counted as accepted.
#[test]
fn a_finished_connection_is_no_longer_open() {
    let run = load("service-finished");
    for _ in 0..3 {
        let mut client = connect(run.port);
        client.write_all(b"done").unwrap();
        client.shutdown(std::net::Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).expect("the handler closes the connection");
    }
    wait_until("every handler returned", LIMIT, || OPEN.load(Ordering::Relaxed) == 0);
    assert_eq!(ACCEPTED.load(Ordering::Relaxed), 3);
    assert_eq!(RECEIVED.load(Ordering::Relaxed), 12);
    unload(run.driver);
    assert_eq!(ERRORS.load(Ordering::Relaxed), 0);
}

/// A provider that ends a pending accept with `STATUS_CANCELLED` on its own, the listener
/// still open (Wine's netio did: `wsk_emulator::cancel_pending_accepts`): the accept is
/// issued again (`TcpListener::accept`), so the service goes on and counts no error; only its
/// own close ends the loop. Without that, the second client is refused (the loop ended and
/// closed the listener).
#[test]
fn an_accept_the_provider_cancelled_does_not_end_the_service() {
    let run = load("service-provider-cancel");
    let served = |run: &Run| {
        let mut client = connect(run.port);
        client.write_all(b"done").unwrap();
        client.shutdown(std::net::Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).expect("the handler closes the connection");
    };
    served(&run);
    wait_until("the provider cancelled a pending accept", LIMIT, || wsk_emulator::cancel_pending_accepts() > 0);
    served(&run);
    wait_until("every handler returned", LIMIT, || OPEN.load(Ordering::Relaxed) == 0);
    assert_eq!(ACCEPTED.load(Ordering::Relaxed), 2);
    assert_eq!(ERRORS.load(Ordering::Relaxed), 0, "the provider's cancellation is not a failed accept");
    unload(run.driver);
}

/// A listener that cannot bind (the port is taken): DriverEntry fails with the bind's error
/// and leaves nothing behind (the service stopped its executor and deregistered).
#[test]
fn a_failed_bind_fails_driver_entry_cleanly() {
    let _serial = lock(&SERIAL);
    let _watchdog = Watchdog::test("a_failed_bind_fails_driver_entry_cleanly");
    let taken = HostListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    reset(taken.local_addr().unwrap().port());
    let Err(LoadError::EntryFailed { status, report }) = builder().load("service-taken", driver_entry) else {
        panic!("DriverEntry succeeded on a port in use");
    };
    assert!(status < 0, "a failure status: {status:#x}");
    report.assert_clean();
    assert_eq!(STOPPED.load(Ordering::Relaxed), 0, "no DriverUnload after a failed DriverEntry");
    assert_eq!(wsk::live_sockets(), 0);
    drop(taken);
}
