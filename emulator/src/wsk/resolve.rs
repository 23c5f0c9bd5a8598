//! `WskGetAddressInfo` / `WskFreeAddressInfo`: name resolution with the host resolver; and
//! `WskGetNameInfo`: address to name ([`name_info`]).
//!
//! Numeric hosts (and a missing host) resolve at once; names ("localhost", ...) resolve on a
//! helper thread with the host's `getaddrinfo`, the IRP pending (and cancelable, unless the
//! `wine-uncancelable-irps` quirk is on) meanwhile, after [`set_resolution_delay`]'s delay if
//! one is set. Services are port numbers or a few well-known names. The result is an
//! `ADDRINFOEXW` chain in Windows' layout (`AF_INET6` = 23) allocated by the provider; the
//! client frees it with `WskFreeAddressInfo`, and a chain still allocated at unload is reported
//! as a leak.

// Building and freeing `ADDRINFOEXW` chains and completing IRPs go through raw pointers the
// provider owns; several unsafe operations per block keep each step's reasoning together.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use wsk_sys::{
    ADDRINFOEXW, AI_CANONNAME, AI_NUMERICHOST, AI_PASSIVE, DEVICE_OBJECT, DRIVER_CANCEL, IRP, IoReleaseCancelSpinLock,
    IoSetCancelRoutine, NS_ALL, NS_DNS, NTSTATUS, SOCKADDR, SOCKADDR_STORAGE, STATUS_CANCELLED,
    STATUS_INVALID_PARAMETER, STATUS_NOT_FOUND, STATUS_NOT_SUPPORTED, STATUS_PENDING, STATUS_SUCCESS, UNICODE_STRING,
};

use super::addr::{self, Family};
use super::model::{Irp, Out};
use crate::irp::provider;
use crate::sync::lock;
use crate::verifier::{Leak, LeakKind, Rule, bugcheck};

/// One element of a chain: the `ADDRINFOEXW` first (its address is the element's), then the
/// storage its pointers refer to.
#[repr(C)]
struct Node {
    info: ADDRINFOEXW,
    address: SOCKADDR_STORAGE,
    name: Vec<u16>,
}

/// Chains handed out and not yet freed: head address -> session.
static CHAINS: Mutex<BTreeMap<usize, u64>> = Mutex::new(BTreeMap::new());

/// A resolution running on a helper thread.
struct Pending {
    result: Out<*mut ADDRINFOEXW>,
    session: u64,
    /// Whether the IRP has a cancel routine (the `wine-uncancelable-irps` quirk is off).
    cancelable: bool,
}

/// How long a name's resolution takes at least, in microseconds ([`set_resolution_delay`]).
static DELAY_US: AtomicU64 = AtomicU64::new(0);

/// Makes every later resolution of a name (not of a numeric host) take at least `delay`
/// before the host resolver is asked, its IRP pending meanwhile: so that a test can act while
/// a resolution is pending. Process-wide; `Duration::ZERO` (the default) turns it off.
pub fn set_resolution_delay(delay: Duration) {
    DELAY_US.store(u64::try_from(delay.as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
}

/// Pending resolutions by IRP address.
static PENDING: Mutex<BTreeMap<usize, Pending>> = Mutex::new(BTreeMap::new());

/// What to resolve.
#[derive(Debug, Clone)]
pub(crate) struct Query {
    node: Option<String>,
    port: u16,
    family: Option<Family>,
    socket_type: i32,
    protocol: i32,
    flags: i32,
}

/// Well-known services (a few of `%SystemRoot%\system32\drivers\etc\services`).
const SERVICES: &[(&str, u16)] = &[
    ("echo", 7),
    ("discard", 9),
    ("daytime", 13),
    ("ftp", 21),
    ("ssh", 22),
    ("telnet", 23),
    ("smtp", 25),
    ("domain", 53),
    ("http", 80),
    ("pop3", 110),
    ("ntp", 123),
    ("imap", 143),
    ("https", 443),
];

/// The text of a counted string, `None` for a null or empty one.
///
/// # Safety
/// `text` must be null or point to a valid `UNICODE_STRING`.
#[expect(
    clippy::multiple_unsafe_ops_per_block,
    reason = "a read of one UNICODE_STRING and a slice of its buffer under the caller's contract"
)]
unsafe fn text(text: *const UNICODE_STRING) -> Result<Option<String>, NTSTATUS> {
    if text.is_null() {
        return Ok(None);
    }
    // SAFETY: the caller guarantees a valid string; its buffer holds `Length` bytes.
    let units = unsafe {
        let string = &*text;
        if string.Buffer.is_null() || string.Length == 0 {
            return Ok(None);
        }
        std::slice::from_raw_parts(string.Buffer, usize::from(string.Length) / 2)
    };
    String::from_utf16(units).map(Some).map_err(|_| STATUS_INVALID_PARAMETER)
}

/// Reads the call's parameters.
///
/// # Safety
/// The pointers must be null or valid, as `WskGetAddressInfo` requires.
#[expect(clippy::multiple_unsafe_ops_per_block, reason = "the two strings of one query under one forwarded contract")]
pub(crate) unsafe fn query(
    node: *const UNICODE_STRING,
    service: *const UNICODE_STRING,
    namespace: u32,
    provider_guid: *const wsk_sys::GUID,
    hints: *const ADDRINFOEXW,
) -> Result<Query, NTSTATUS> {
    if namespace != NS_ALL && namespace != NS_DNS {
        return Err(STATUS_NOT_SUPPORTED);
    }
    if !provider_guid.is_null() {
        return Err(STATUS_NOT_SUPPORTED);
    }
    // SAFETY: forwarded contract.
    let (node, service) = unsafe { (text(node)?, text(service)?) };
    if node.is_none() && service.is_none() {
        return Err(STATUS_INVALID_PARAMETER);
    }
    let port = match service {
        None => 0,
        Some(service) => match service.parse::<u16>() {
            Ok(port) => port,
            Err(_) => SERVICES
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(&service))
                .map(|&(_, port)| port)
                .ok_or(STATUS_NOT_FOUND)?,
        },
    };
    let (family, socket_type, protocol, flags) = if hints.is_null() {
        (None, 0, 0, 0)
    } else {
        // SAFETY: a non-null hints pointer refers to a valid ADDRINFOEXW (caller's contract).
        let hints = unsafe { &*hints };
        let family = match hints.ai_family {
            0 => None,
            value => Some(u16::try_from(value).ok().and_then(Family::from_wsk).ok_or(STATUS_INVALID_PARAMETER)?),
        };
        (family, hints.ai_socktype, hints.ai_protocol, hints.ai_flags)
    };
    Ok(Query { node, port, family, socket_type, protocol, flags })
}

impl Query {
    /// The addresses when no name lookup is needed, `None` when one is.
    fn immediate(&self) -> Option<Result<Vec<SocketAddr>, NTSTATUS>> {
        let Some(node) = &self.node else {
            let (v4, v6) = if self.flags & AI_PASSIVE != 0 {
                (IpAddr::V4(Ipv4Addr::UNSPECIFIED), IpAddr::V6(Ipv6Addr::UNSPECIFIED))
            } else {
                (IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V6(Ipv6Addr::LOCALHOST))
            };
            let all = vec![SocketAddr::new(v6, self.port), SocketAddr::new(v4, self.port)];
            return Some(self.filter(all));
        };
        match node.parse::<IpAddr>() {
            Ok(ip) => Some(self.filter(vec![SocketAddr::new(ip, self.port)])),
            Err(_) if self.flags & AI_NUMERICHOST != 0 => Some(Err(STATUS_NOT_FOUND)),
            Err(_) => None,
        }
    }

    /// Resolves a name with the host resolver (blocking).
    fn lookup(&self) -> Result<Vec<SocketAddr>, NTSTATUS> {
        let node = self.node.as_deref().unwrap_or("localhost");
        let found = (node, self.port).to_socket_addrs().map_err(|_| STATUS_NOT_FOUND)?;
        let mut unique: Vec<SocketAddr> = Vec::new();
        for address in found {
            if !unique.contains(&address) {
                unique.push(address);
            }
        }
        self.filter(unique)
    }

    fn filter(&self, addresses: Vec<SocketAddr>) -> Result<Vec<SocketAddr>, NTSTATUS> {
        let kept: Vec<SocketAddr> =
            addresses.into_iter().filter(|a| self.family.is_none_or(|f| Family::of(a) == f)).collect();
        if kept.is_empty() { Err(STATUS_NOT_FOUND) } else { Ok(kept) }
    }

    /// Builds the `ADDRINFOEXW` chain for `addresses` and records it.
    #[expect(
        clippy::multiple_unsafe_ops_per_block,
        reason = "writes of one freshly boxed node's self-referencing fields"
    )]
    fn chain(&self, addresses: &[SocketAddr]) -> *mut ADDRINFOEXW {
        let mut next: *mut ADDRINFOEXW = std::ptr::null_mut();
        for (index, address) in addresses.iter().enumerate().rev() {
            let name: Vec<u16> = match (&self.node, index == 0 && self.flags & AI_CANONNAME != 0) {
                (Some(node), true) => node.encode_utf16().chain(Some(0)).collect(),
                _ => Vec::new(),
            };
            let node = Box::into_raw(Box::new(Node {
                info: ADDRINFOEXW {
                    ai_flags: 0,
                    ai_family: i32::from(Family::of(address).wsk()),
                    ai_socktype: self.socket_type,
                    ai_protocol: self.protocol,
                    ai_addrlen: if address.is_ipv4() { 16 } else { 28 },
                    ai_canonname: std::ptr::null_mut(),
                    ai_addr: std::ptr::null_mut(),
                    ai_blob: std::ptr::null_mut(),
                    ai_bufferlen: 0,
                    ai_provider: std::ptr::null_mut(),
                    ai_next: next,
                },
                address: SOCKADDR_STORAGE::zeroed(),
                name,
            }));
            // SAFETY: `node` is a fresh, exclusively owned allocation; its pointers refer to
            // its own fields, which stay in place (the box is never moved).
            unsafe {
                let storage = (&raw mut (*node).address).cast::<SOCKADDR>();
                addr::write(storage, address);
                (*node).info.ai_addr = storage;
                if !(*node).name.is_empty() {
                    (*node).info.ai_canonname = (*node).name.as_mut_ptr();
                }
            }
            next = node.cast();
        }
        lock(&CHAINS).insert(next as usize, crate::kernel::session());
        next
    }
}

/// Frees a chain built by [`Query::chain`].
///
/// # Safety
/// `head` must be a chain built by `Query::chain`, no longer used.
unsafe fn free_chain(head: *mut ADDRINFOEXW) {
    let mut node = head.cast::<Node>();
    while !node.is_null() {
        // SAFETY: every element was allocated by `Query::chain` with `Box::into_raw`.
        let boxed = unsafe { Box::from_raw(node) };
        node = boxed.info.ai_next.cast();
        drop(boxed);
    }
}

/// `WskFreeAddressInfo`: frees a chain `WskGetAddressInfo` returned; anything else is a
/// verifier violation (and is not touched).
pub(crate) fn free(head: *mut ADDRINFOEXW) {
    if head.is_null() {
        return;
    }
    if lock(&CHAINS).remove(&(head as usize)).is_none() {
        if crate::kernel::verifier() {
            bugcheck(
                Rule::WskBadAddressInfo,
                format!("WskFreeAddressInfo({head:p}): not a chain returned by WskGetAddressInfo (or freed already)"),
            );
        }
        return;
    }
    // SAFETY: a recorded chain, removed from the record above (so freed once).
    unsafe { free_chain(head) };
}

/// Completes the resolution of an accepted IRP: writes the chain to `result` on success.
///
/// # Safety
/// The provider owns `irp` (cancel routine cleared) and `result` is valid.
unsafe fn finish(
    irp: *mut IRP,
    query: &Query,
    outcome: Result<Vec<SocketAddr>, NTSTATUS>,
    result: Out<*mut ADDRINFOEXW>,
) -> NTSTATUS {
    let status = match outcome {
        Ok(addresses) => {
            let head = query.chain(&addresses);
            // SAFETY: the client keeps `Result` valid until the IRP completes.
            unsafe { result.0.write(head) };
            STATUS_SUCCESS
        }
        Err(status) => status,
    };
    // SAFETY: the provider owns the IRP and completes it once.
    unsafe { provider::complete(irp, status, 0) };
    status
}

/// Runs `WskGetAddressInfo` on an accepted IRP.
///
/// # Safety
/// The provider accepted `irp`; `result` is valid until the IRP completes.
#[expect(
    clippy::multiple_unsafe_ops_per_block,
    reason = "arming or taking back the cancel routine and reading `Cancel` are one ordered step on one owned IRP"
)]
pub(crate) unsafe fn resolve(irp: *mut IRP, query: Query, result: *mut *mut ADDRINFOEXW) -> NTSTATUS {
    let result = Out(result);
    if let Some(outcome) = query.immediate() {
        // SAFETY: forwarded contract.
        return unsafe { finish(irp, &query, outcome, result) };
    }
    // SAFETY: the provider owns the IRP; it is marked pending before it becomes cancelable.
    unsafe { provider::mark_pending(irp) };
    let cancelable = !crate::quirks::get().wine_uncancelable_irps;
    lock(&PENDING).insert(irp as usize, Pending { result, session: crate::kernel::session(), cancelable });
    // SAFETY: as above; the routine is exchanged atomically, `Cancel` read after it.
    let cancelled_now = cancelable
        && unsafe {
            IoSetCancelRoutine(irp, Some(cancel_routine as DRIVER_CANCEL));
            std::sync::atomic::AtomicU8::from_ptr(&raw mut (*irp).Cancel).load(Ordering::Acquire) != 0
                && IoSetCancelRoutine(irp, None).is_some()
        };
    if cancelled_now {
        lock(&PENDING).remove(&(irp as usize));
        // SAFETY: the provider owns the IRP (it took the cancel routine back).
        unsafe { provider::complete(irp, STATUS_CANCELLED, 0) };
        return STATUS_PENDING;
    }
    let pending = Irp(irp);
    let delay = Duration::from_micros(DELAY_US.load(Ordering::Relaxed));
    let spawned = std::thread::Builder::new().name("wsk-emu-resolver".to_owned()).spawn(move || {
        let irp = pending;
        std::thread::sleep(delay);
        let outcome = query.lookup();
        let Some(entry) = lock(&PENDING).remove(&(irp.0 as usize)) else { return };
        // SAFETY: the entry was still recorded, so the IRP is live and not completed; the
        // provider owns it if it has no cancel routine or takes it back (else the cancel
        // routine completes it).
        unsafe {
            if !entry.cancelable || IoSetCancelRoutine(irp.0, None).is_some() {
                finish(irp.0, &query, outcome, entry.result);
            }
        }
    });
    if spawned.is_err() {
        // SAFETY: as in the thread: the provider owns the IRP without a cancel routine, or if
        // it takes the routine back.
        unsafe {
            if let Some(entry) = lock(&PENDING).remove(&(irp as usize))
                && (!entry.cancelable || IoSetCancelRoutine(irp, None).is_some())
            {
                provider::complete(irp, wsk_sys::STATUS_INSUFFICIENT_RESOURCES, 0);
            }
        }
    }
    STATUS_PENDING
}

/// Cancel routine of a pending resolution.
unsafe extern "system" fn cancel_routine(_device: *mut DEVICE_OBJECT, irp: *mut IRP) {
    // SAFETY: the IRP is ours (we won the exchange of the cancel routine), so it is live.
    let irql = unsafe { (*irp).CancelIrql };
    // SAFETY: IoCancelIrp holds the cancel spin lock for us and stored the IRQL to return to.
    unsafe { IoReleaseCancelSpinLock(irql) };
    lock(&PENDING).remove(&(irp as usize));
    // SAFETY: as above: the provider owns the IRP and completes it once.
    unsafe { provider::complete(irp, STATUS_CANCELLED, 0) };
}

/// Chains of `session` not freed, as leaks, and WSK_ADDRESS_INFO_LEAKED_AT_UNLOAD if any.
pub(crate) fn leaks(session: u64) -> Vec<Leak> {
    let leaks: Vec<Leak> = lock(&CHAINS)
        .iter()
        .filter(|(_, s)| **s == session)
        .map(|(&head, _)| Leak::new(LeakKind::WskAddressInfo, 0, 0, head, "ADDRINFOEXW chain".to_owned()))
        .collect();
    if !leaks.is_empty() {
        bugcheck(
            Rule::WskAddressInfoLeak,
            format!("the driver unloaded with {} ADDRINFOEXW chain(s) not freed with WskFreeAddressInfo", leaks.len()),
        );
    }
    leaks
}

/// Frees the chains of `session` and abandons its pending resolutions (after unload).
pub(crate) fn teardown(session: u64) {
    let heads: Vec<usize> = {
        let mut chains = lock(&CHAINS);
        let heads: Vec<usize> = chains.iter().filter(|(_, s)| **s == session).map(|(&h, _)| h).collect();
        for head in &heads {
            chains.remove(head);
        }
        heads
    };
    for head in heads {
        // SAFETY: a recorded chain of the unloaded driver, removed from the record.
        unsafe { free_chain(head as *mut ADDRINFOEXW) };
    }
    let abandoned: Vec<usize> = {
        let mut pending = lock(&PENDING);
        let irps: Vec<usize> = pending.iter().filter(|(_, p)| p.session == session).map(|(&i, _)| i).collect();
        for irp in &irps {
            pending.remove(irp);
        }
        irps
    };
    for irp in abandoned {
        // SAFETY: the IRP was pending (never completed); taking the routine back keeps a late
        // IoCancelIrp from completing it into the unloaded driver.
        unsafe { IoSetCancelRoutine(irp as *mut IRP, None) };
    }
}

/// The host's name for `ip` in the hosts file (`/etc/hosts`): the first name of the first
/// line that lists the address.
fn host_name(ip: IpAddr) -> Option<String> {
    let hosts = std::fs::read_to_string("/etc/hosts").ok()?;
    hosts.lines().find_map(|line| {
        let line = line.split('#').next().unwrap_or_default();
        let mut words = line.split_whitespace();
        let address: IpAddr = words.next()?.parse().ok()?;
        if address == ip { words.next().map(str::to_owned) } else { None }
    })
}

/// Writes `text` and a terminating NUL to the buffer of `string`, and its length (without the
/// NUL) to `Length`; `STATUS_BUFFER_TOO_SMALL` when the buffer cannot hold both.
///
/// # Safety
/// `string` is a valid `UNICODE_STRING` whose buffer holds `MaximumLength` writable bytes.
unsafe fn write_text(string: *mut UNICODE_STRING, text: &str) -> Result<(), NTSTATUS> {
    let units: Vec<u16> = text.encode_utf16().chain(Some(0)).collect();
    // SAFETY: the caller's contract.
    let string = unsafe { &mut *string };
    if units.len() * 2 > usize::from(string.MaximumLength) {
        return Err(wsk_sys::STATUS_BUFFER_TOO_SMALL);
    }
    // SAFETY: the buffer holds `MaximumLength` bytes, checked to fit the units.
    unsafe { std::ptr::copy_nonoverlapping(units.as_ptr(), string.Buffer, units.len()) };
    string.Length = ((units.len() - 1) * 2) as u16;
    Ok(())
}

/// Whether `string` is null or a buffer the provider can write (non-null, room for a NUL).
///
/// # Safety
/// `string` is null or a valid `UNICODE_STRING`.
unsafe fn writable(string: *const UNICODE_STRING) -> bool {
    if string.is_null() {
        return true;
    }
    // SAFETY: the caller's contract: a non-null pointer refers to a valid string.
    let string = unsafe { &*string };
    !string.Buffer.is_null() && string.MaximumLength >= 2
}

/// `WskGetNameInfo`, done inside the call: the host's name from the hosts file (its numeric
/// form with `NI_NUMERICHOST`, or when it has none; `STATUS_NOT_FOUND` then with
/// `NI_NAMEREQD`; the part before the first dot with `NI_NOFQDN`), and the port's well-known
/// service name (its number with `NI_NUMERICSERV`, or when it has none; `NI_DGRAM` changes
/// nothing, the table's services use the same port for both). Refused with
/// `STATUS_INVALID_PARAMETER`: no address, a length shorter than its family's or longer than
/// `SOCKADDR_STORAGE`, an unknown family, no name asked for, a null buffer or one without
/// room for a NUL, unknown flags; a name longer than its buffer is `STATUS_BUFFER_TOO_SMALL`.
///
/// # Safety
/// `address` is null or readable for `length` bytes; `node` and `service` are null or valid
/// strings whose buffers are writable for `MaximumLength` bytes.
pub(crate) unsafe fn name_info(
    address: *const SOCKADDR,
    length: u32,
    node: *mut UNICODE_STRING,
    service: *mut UNICODE_STRING,
    flags: u32,
) -> Result<(), NTSTATUS> {
    use wsk_sys::{NI_DGRAM, NI_NAMEREQD, NI_NOFQDN, NI_NUMERICHOST, NI_NUMERICSERV};
    let known = NI_NOFQDN | NI_NUMERICHOST | NI_NAMEREQD | NI_NUMERICSERV | NI_DGRAM;
    let length = usize::try_from(length).map_err(|_| STATUS_INVALID_PARAMETER)?;
    if address.is_null()
        || length > size_of::<SOCKADDR_STORAGE>()
        || flags & !known != 0
        || (node.is_null() && service.is_null())
    {
        return Err(STATUS_INVALID_PARAMETER);
    }
    // SAFETY: the caller's contract.
    let node_ok = unsafe { writable(node) };
    // SAFETY: as above.
    let service_ok = unsafe { writable(service) };
    if !node_ok || !service_ok {
        return Err(STATUS_INVALID_PARAMETER);
    }
    let mut storage = SOCKADDR_STORAGE::zeroed();
    // SAFETY: `address` is readable for `length` bytes, at most the storage's size.
    unsafe { std::ptr::copy_nonoverlapping(address.cast::<u8>(), (&raw mut storage).cast::<u8>(), length) };
    if !wsk_sys::sockaddr_len(storage.ss_family).is_ok_and(|needed| length >= needed) {
        return Err(STATUS_INVALID_PARAMETER);
    }
    // SAFETY: a whole address of a known family was copied.
    let socket_address = unsafe { addr::read((&raw const storage).cast()) }.map_err(|_| STATUS_INVALID_PARAMETER)?;
    let ip = socket_address.ip();
    let host = if flags & NI_NUMERICHOST != 0 {
        ip.to_string()
    } else {
        match host_name(ip) {
            Some(name) if flags & NI_NOFQDN != 0 => name.split('.').next().unwrap_or_default().to_owned(),
            Some(name) => name,
            None if flags & NI_NAMEREQD != 0 => return Err(STATUS_NOT_FOUND),
            None => ip.to_string(),
        }
    };
    let port = socket_address.port();
    let service_name = match SERVICES.iter().find(|&&(_, p)| p == port) {
        Some(&(name, _)) if flags & NI_NUMERICSERV == 0 => name.to_owned(),
        _ => port.to_string(),
    };
    if !node.is_null() {
        // SAFETY: checked writable above (the caller's contract).
        unsafe { write_text(node, &host) }?;
    }
    if !service.is_null() {
        // SAFETY: as above.
        unsafe { write_text(service, &service_name) }?;
    }
    Ok(())
}
