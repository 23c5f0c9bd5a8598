//! A fixed, small scenario for the systematic low-resources sweep: register, listen, connect,
//! accept, exchange, disconnect, close; then the same through event callbacks (accept and
//! receive events) — run inside DriverEntry with `block_on`, then unload.
//! Whatever allocation fails, the scenario must end with an error (or success), never a hang,
//! a leak or a verifier violation.

use core::net::{Ipv4Addr, SocketAddr};
use core::sync::atomic::{AtomicI32, Ordering};

use wsk::events::{self, ConnectionEvent, EventConfig};
use wsk::{Error, IoBuf, TcpListener, TcpStream, Wsk};
use wsk_executor::{Executor, IoObject};
use wsk_sys::{DRIVER_OBJECT, NTSTATUS, STATUS_SUCCESS, UNICODE_STRING};

/// The scenario's outcome: 0 for success, else the NTSTATUS of the first error.
pub static OUTCOME: AtomicI32 = AtomicI32::new(i32::MIN);

/// Port of the scenario's listener (set by the host before loading).
pub static PORT: core::sync::atomic::AtomicU16 = core::sync::atomic::AtomicU16::new(0);

async fn exchange(wsk: &Wsk, addr: SocketAddr) -> Result<(), Error> {
    let mut listener = TcpListener::bind(wsk, addr).await?;
    let mut client = TcpStream::connect(wsk, addr).await?;
    let (mut server, _) = listener.accept().await?;
    let (sent, _) = client.send_all(IoBuf::copy_from(b"ping")?).await;
    sent?;
    let (n, buf) = server.recv(IoBuf::with_capacity(16)?).await;
    if n? != 4 || buf.as_slice() != b"ping" {
        return Err(Error::InvalidInput("exchanged data differs"));
    }
    client.shutdown().await?;
    server.close().await?;
    client.close().await?;
    // The event path: the next connection arrives through the accept callback and its data
    // through the receive callback.
    let mut incoming = listener.into_incoming(EventConfig { accept_backlog: 2, ..EventConfig::default() })?;
    let mut client = TcpStream::connect(wsk, addr).await?;
    let (server, _) = events::next(&mut incoming).await.ok_or(Error::Closed)??;
    let (mut server_events, server_writer) = server.into_events(EventConfig::default())?;
    let (sent, _) = client.send_all(IoBuf::copy_from(b"pong")?).await;
    sent?;
    let mut got = [0u8; 4];
    let mut n = 0;
    while n < got.len() {
        match events::next(&mut server_events).await.ok_or(Error::Closed)?? {
            ConnectionEvent::Data(data) => n += data.copy_to_slice(&mut got[n..]),
            ConnectionEvent::Disconnected { .. } => return Err(Error::InvalidInput("disconnected early")),
            ConnectionEvent::SendBacklog(_) => {}
        }
    }
    if &got != b"pong" {
        return Err(Error::InvalidInput("exchanged data differs"));
    }
    drop(server_events);
    client.shutdown().await?;
    server_writer.close().await?;
    client.close().await?;
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
        let wsk = Wsk::register(core::time::Duration::from_secs(1))?;
        // SAFETY: the driver's own driver object.
        let executor = Executor::new(unsafe { IoObject::from_driver(driver) })?;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, PORT.load(Ordering::Relaxed)));
        let result = wsk_executor::block_on(exchange(&wsk, addr)).map_err(Error::from).and_then(|r| r);
        if executor.shutdown().is_err() {
            return Err(Error::WrongIrql { max: wsk_sys::PASSIVE_LEVEL, current: wsk_sys::KeGetCurrentIrql() });
        }
        drop(wsk);
        result
    })();
    OUTCOME.store(outcome.map_or_else(Error::to_status, |()| 0), Ordering::Release);
    STATUS_SUCCESS
}

unsafe extern "system" fn scenario_unload(_driver: *mut DRIVER_OBJECT) {}
