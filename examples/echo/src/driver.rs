//! DriverEntry and DriverUnload of the echo driver: a [`TcpService`] serving each connection
//! with [`server::serve`].

use core::net::{IpAddr, SocketAddr};
use core::sync::atomic::Ordering;
use core::time::Duration;

use wsk::parameters::Parameters;
use wsk::pool::PoolBox;
use wsk::service::{self, Limits, TcpService};
use wsk::{DriverGlobal, Error, PeerLimit, PerPeerLimit, SocketOption, log};
use wsk_sys::{DRIVER_OBJECT, NTSTATUS, UNICODE_STRING};

use crate::server::{self, STATS};

/// Port used when the service key sets none.
pub const DEFAULT_PORT: u16 = 7007;
/// The deadline of each wait of DriverUnload's protocol ([`TcpService::stop`]).
const CLOSE_WAIT: Duration = Duration::from_secs(10);

/// Peer addresses the `MaxPerPeer` table holds at once (8 bytes each, in the image): a new
/// address finding no room is refused.
pub const PEER_SLOTS: usize = 1024;

/// The per-address connection counts behind `MaxPerPeer`.
static PER_PEER: PerPeerLimit<PEER_SLOTS> = PerPeerLimit::new(0);

/// Reads `MaxConnections` (connections served at once) and `MaxPerPeer` (connections at once
/// from one address), REG_DWORDs where 0 or absent means unlimited, as the service's
/// [`Limits`] (see there for what happens when one is reached).
///
/// # Safety
/// `registry_path` is DriverEntry's argument.
unsafe fn limits(registry_path: *mut UNICODE_STRING) -> Result<Limits, Error> {
    // SAFETY: forwarded contract.
    let Some(params) = (unsafe { Parameters::open(registry_path)? }) else { return Ok(Limits::NONE) };
    let max_per_peer = params.dword("MaxPerPeer")?.unwrap_or(0);
    PER_PEER.set_limit(max_per_peer);
    let per_peer: Option<&'static dyn PeerLimit> = (max_per_peer != 0).then_some(&PER_PEER);
    Ok(Limits { max_connections: params.dword("MaxConnections")?.unwrap_or(0), per_peer })
}

/// The registration, the executor and the accept task, between DriverEntry and DriverUnload.
static SERVICE: DriverGlobal<TcpService> = DriverGlobal::new();

/// Reads `ReceiveEvents` (REG_DWORD; 0: receive with IRPs, otherwise with event callbacks
/// where the provider has them; default 1).
///
/// # Safety
/// `registry_path` is DriverEntry's argument.
unsafe fn receive_events(registry_path: *mut UNICODE_STRING) -> Result<bool, Error> {
    // SAFETY: forwarded contract.
    let params = unsafe { Parameters::open(registry_path)? };
    Ok(match params {
        Some(params) => params.dword("ReceiveEvents")?.is_none_or(|v| v != 0),
        None => true,
    })
}

/// Reads `IdleSeconds` (REG_DWORD; seconds a connection may wait for its peer's next data
/// before it is closed; 0 or absent: no limit).
///
/// # Safety
/// `registry_path` is DriverEntry's argument.
unsafe fn idle_seconds(registry_path: *mut UNICODE_STRING) -> Result<u32, Error> {
    // SAFETY: forwarded contract.
    let params = unsafe { Parameters::open(registry_path)? };
    Ok(match params {
        Some(params) => params.dword("IdleSeconds")?.unwrap_or(0),
        None => 0,
    })
}

/// The options the listener is bound with: on `::` (`Address` = `::`) `IPV6_V6ONLY` off, so
/// that one socket serves IPv4 and IPv6 clients (IPv4 peers are logged as IPv4-mapped
/// addresses, `::ffff:a.b.c.d`); on any other address none (an IPv6 address other than `::`
/// serves IPv6 only, Windows' default).
///
/// Any IRQL.
pub fn listen_options(addr: &SocketAddr) -> &'static [SocketOption] {
    const DUAL_STACK: [SocketOption; 1] = [SocketOption::V6Only(false)];
    match addr.ip() {
        IpAddr::V6(ip) if ip.is_unspecified() => &DUAL_STACK,
        _ => &[],
    }
}

/// DriverEntry. IRQL == PASSIVE_LEVEL.
///
/// # Safety
/// `driver_object` and `registry_path` are the valid arguments the I/O manager (or the
/// emulator) passes.
pub unsafe extern "system" fn driver_entry(
    driver_object: *mut DRIVER_OBJECT,
    registry_path: *mut UNICODE_STRING,
) -> NTSTATUS {
    // SAFETY: forwarded contract.
    let start_driver = || unsafe { start(driver_object, registry_path) };
    // SAFETY: forwarded contract.
    unsafe { service::driver_entry(driver_object, "echo", driver_unload, start_driver) }
}

/// # Safety
/// As [`driver_entry`].
unsafe fn start(driver_object: *mut DRIVER_OBJECT, registry_path: *mut UNICODE_STRING) -> Result<(), Error> {
    SERVICE.ensure_empty()?;
    // SAFETY: forwarded contract.
    let addr = unsafe { wsk::parameters::listen_address(registry_path, DEFAULT_PORT)? };
    // SAFETY: forwarded contract.
    let events = unsafe { receive_events(registry_path)? };
    server::RECEIVE_EVENTS.store(events, Ordering::Relaxed);
    // SAFETY: forwarded contract.
    let limits = unsafe { limits(registry_path)? };
    let options = listen_options(&addr);
    // SAFETY: forwarded contract.
    let idle = unsafe { idle_seconds(registry_path)? };
    server::IDLE_SECONDS.store(idle, Ordering::Relaxed);
    // SAFETY: DriverEntry's own driver object (forwarded contract).
    let service = unsafe {
        TcpService::start_limited(driver_object, "echo", addr, options, server::COUNTERS, limits, server::serve)?
    };
    let service = PoolBox::try_new(service).map_err(|mut service| service.stop_with(Error::NoMemory))?;
    // Empty: checked at the top.
    let _ = SERVICE.set(service);
    Ok(())
}

/// DriverUnload. IRQL == PASSIVE_LEVEL.
///
/// # Safety
/// Called once by the I/O manager after a successful DriverEntry.
pub unsafe extern "system" fn driver_unload(_driver_object: *mut DRIVER_OBJECT) {
    log!(always, "echo: DriverUnload");
    if let Some(mut service) = SERVICE.take() {
        let outcome = service.stop(CLOSE_WAIT);
        log!(always, "echo: stop: {}", outcome);
    }
    let open = wsk::live_sockets();
    log!(
        always,
        "echo: DriverUnload done: {} connections, {} bytes echoed, {} sockets open",
        STATS.connections.load(Ordering::Relaxed),
        STATS.bytes.load(Ordering::Relaxed),
        open
    );
}

#[cfg(all(test, not(windows)))]
mod tests {
    extern crate std;

    use std::io::{Read, Write};
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener as HostListener, TcpStream as HostStream};
    use std::time::Duration;

    use wsk_emulator::Kernel;

    use super::{driver_entry, listen_options};
    use crate::server::STATS;

    fn echo(addr: SocketAddr) {
        let mut client = HostStream::connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        client.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        client.write_all(b"both stacks").unwrap();
        client.shutdown(std::net::Shutdown::Write).unwrap();
        let mut back = std::vec::Vec::new();
        client.read_to_end(&mut back).unwrap();
        assert_eq!(back, b"both stacks", "echo over {addr}");
    }

    #[test]
    fn only_the_unspecified_ipv6_address_listens_dual_stack() {
        let dual = listen_options(&SocketAddr::from((Ipv6Addr::UNSPECIFIED, 7)));
        assert_eq!(dual, [wsk::SocketOption::V6Only(false)]);
        assert!(listen_options(&SocketAddr::from((Ipv6Addr::LOCALHOST, 7))).is_empty());
        assert!(listen_options(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, 7))).is_empty());
    }

    /// `Address` = `::`: the driver serves an IPv4 and an IPv6 client on one listener.
    #[test]
    fn the_driver_on_the_unspecified_ipv6_address_serves_ipv4_and_ipv6_clients() {
        let port = HostListener::bind((Ipv6Addr::UNSPECIFIED, 0)).unwrap().local_addr().unwrap().port();
        let driver = Kernel::builder()
            .verifier(true)
            .param_dword("Port", u32::from(port))
            .param_string("Address", "::")
            .load("echo", driver_entry)
            .expect("the driver loads");
        echo(SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
        echo(SocketAddr::from((Ipv6Addr::LOCALHOST, port)));
        let report = driver.unload();
        report.assert_clean();
        assert_eq!(STATS.connections.load(core::sync::atomic::Ordering::Relaxed), 2);
    }
}
