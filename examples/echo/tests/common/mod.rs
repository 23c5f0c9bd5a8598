//! What the echo driver's emulator tests share: one driver at a time, loaded on a free port
//! with the verifier on, and clients that give up after [`LIMIT`].

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use echo_driver::driver::driver_entry;
use wsk_emulator::{Kernel, LoadedDriver};

/// How long a client waits for an echo.
pub const LIMIT: Duration = Duration::from_secs(30);

/// One driver at a time: its counters are statics.
static SERIAL: Mutex<()> = Mutex::new(());

/// Holds the test binary's driver slot until dropped (a test that panicked left it usable).
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Loads the echo driver with the verifier on, listening on a free port of 127.0.0.1, with
/// the registry parameters `params` besides `Port`; its address.
pub fn load(params: &[(&str, u32)]) -> (LoadedDriver, SocketAddr) {
    let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap().local_addr().unwrap().port();
    let builder = Kernel::builder().verifier(true).param_dword("Port", u32::from(port));
    let builder = params.iter().fold(builder, |builder, &(name, value)| builder.param_dword(name, value));
    let driver = builder.load("echo", driver_entry).expect("the driver loads");
    (driver, SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
}

/// A client of `addr` whose reads time out after [`LIMIT`].
pub fn connect(addr: SocketAddr) -> TcpStream {
    let client = TcpStream::connect(addr).unwrap();
    client.set_read_timeout(Some(LIMIT)).unwrap();
    client
}
