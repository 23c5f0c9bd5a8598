//! A fixed, small scenario for the systematic low-resources sweep: register, listen, connect,
//! accept, exchange, disconnect, close; then the same through event callbacks (accept and
//! receive events) — run inside DriverEntry with `block_on`, then unload.
//! Whatever allocation fails, the scenario must end with an error (or success), never a hang,
//! a leak or a verifier violation.

use core::net::{Ipv4Addr, SocketAddr};
use core::sync::atomic::{AtomicI32, AtomicUsize, Ordering};

use wsk::events::{self, ConnectionEvent, EventConfig};
use wsk::{Error, IoBuf, TcpListener, TcpStream, Wsk};
use wsk_executor::{Executor, IoObject};
use wsk_sys::{DRIVER_OBJECT, NTSTATUS, STATUS_SUCCESS, UNICODE_STRING};

/// The scenario's outcome: 0 for success, else the NTSTATUS of the first error.
pub static OUTCOME: AtomicI32 = AtomicI32::new(i32::MIN);

/// The step the scenario is at, an index into [`STEPS`]: after a failure, the step that failed
/// (the outcome's status alone does not say where, and several steps can fail the same way).
pub static STEP: AtomicUsize = AtomicUsize::new(0);

/// The names of the scenario's steps, in order.
pub const STEPS: &[&str] = &[
    "register",
    "create the executor",
    "bind the listener",
    "connect",
    "accept",
    "send",
    "receive",
    "check the received bytes",
    "shut the client down",
    "close the server end",
    "close the client",
    "enable accept events",
    "connect (events)",
    "take the accepted connection (events)",
    "enable receive events",
    "send (events)",
    "receive (events)",
    "check the received bytes (events)",
    "shut the client down (events)",
    "close the server end (events)",
    "close the client (events)",
    "close the listener",
    "shut the executor down",
    "done",
];

/// The index of step `name` in [`STEPS`]; a name that is not there fails the build.
const fn step_index(name: &str) -> usize {
    let mut i = 0;
    while i < STEPS.len() {
        let (a, b) = (STEPS[i].as_bytes(), name.as_bytes());
        if a.len() == b.len() {
            let mut j = 0;
            while j < a.len() && a[j] == b[j] {
                j += 1;
            }
            if j == a.len() {
                return i;
            }
        }
        i += 1;
    }
    panic!("not a step of STEPS");
}

/// Records that the scenario starts step `$name` (one of [`STEPS`], checked at build time).
macro_rules! step {
    ($name:literal) => {
        STEP.store(const { step_index($name) }, Ordering::Relaxed)
    };
}

/// Port of the scenario's listener (set by the host before loading).
pub static PORT: core::sync::atomic::AtomicU16 = core::sync::atomic::AtomicU16::new(0);

async fn exchange(wsk: &Wsk, addr: SocketAddr) -> Result<(), Error> {
    step!("bind the listener");
    let mut listener = TcpListener::bind(wsk, addr).await?;
    step!("connect");
    let mut client = TcpStream::connect(wsk, addr).await?;
    step!("accept");
    let (mut server, _) = listener.accept().await?;
    step!("send");
    let (sent, _) = client.send_all(IoBuf::copy_from(b"ping")?).await;
    sent?;
    step!("receive");
    let (n, buf) = server.recv(IoBuf::with_capacity(16)?).await;
    let n = n?;
    step!("check the received bytes");
    if n != 4 || buf.as_slice() != b"ping" {
        return Err(Error::InvalidInput("exchanged data differs"));
    }
    step!("shut the client down");
    client.shutdown().await?;
    step!("close the server end");
    server.close().await?;
    step!("close the client");
    client.close().await?;
    // The event path: the next connection arrives through the accept callback and its data
    // through the receive callback.
    step!("enable accept events");
    let mut incoming = listener.into_incoming(EventConfig { accept_backlog: 2, ..EventConfig::default() })?;
    step!("connect (events)");
    let mut client = TcpStream::connect(wsk, addr).await?;
    step!("take the accepted connection (events)");
    let (server, _) = events::next(&mut incoming).await.ok_or(Error::Closed)??;
    step!("enable receive events");
    let (mut server_events, server_writer) = server.into_events(EventConfig::default())?;
    step!("send (events)");
    let (sent, _) = client.send_all(IoBuf::copy_from(b"pong")?).await;
    sent?;
    step!("receive (events)");
    let mut got = [0u8; 4];
    let mut n = 0;
    while n < got.len() {
        match events::next(&mut server_events).await.ok_or(Error::Closed)?? {
            ConnectionEvent::Data(data) => n += data.copy_to_slice(&mut got[n..]),
            ConnectionEvent::Disconnected { .. } => return Err(Error::InvalidInput("disconnected early")),
            ConnectionEvent::SendBacklog(_) => {}
        }
    }
    step!("check the received bytes (events)");
    if &got != b"pong" {
        return Err(Error::InvalidInput("exchanged data differs"));
    }
    drop(server_events);
    step!("shut the client down (events)");
    client.shutdown().await?;
    step!("close the server end (events)");
    server_writer.close().await?;
    step!("close the client (events)");
    client.close().await?;
    step!("close the listener");
    incoming.close().await
}

/// DriverEntry of the scenario driver. IRQL == PASSIVE_LEVEL.
///
/// # Safety
/// Valid arguments from the emulator.
pub unsafe extern "system" fn scenario_entry(driver: *mut DRIVER_OBJECT, _path: *mut UNICODE_STRING) -> NTSTATUS {
    // SAFETY: valid driver object.
    unsafe { (*driver).DriverUnload = Some(scenario_unload) };
    let outcome = (|| -> Result<(), Error> {
        step!("register");
        let wsk = Wsk::register(core::time::Duration::from_secs(1))?;
        step!("create the executor");
        // SAFETY: the driver's own driver object.
        let executor = Executor::new(unsafe { IoObject::from_driver(driver) })?;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, PORT.load(Ordering::Relaxed)));
        let result = wsk_executor::block_on(exchange(&wsk, addr)).map_err(Error::from).and_then(|r| r);
        if result.is_ok() {
            step!("shut the executor down");
        }
        if executor.shutdown().is_err() {
            return Err(Error::WrongIrql { max: wsk_sys::PASSIVE_LEVEL, current: wsk_sys::KeGetCurrentIrql() });
        }
        drop(wsk);
        result
    })();
    if outcome.is_ok() {
        step!("done");
    }
    OUTCOME.store(outcome.map_or_else(Error::to_status, |()| 0), Ordering::Release);
    STATUS_SUCCESS
}

unsafe extern "system" fn scenario_unload(_driver: *mut DRIVER_OBJECT) {}
