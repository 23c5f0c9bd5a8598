//! Name resolution through `WskGetAddressInfo` (with hints and a bound on the results) and
//! `WskGetNameInfo` ([`name`]).

pub(crate) mod abandoned;
pub mod name;

use core::net::SocketAddr;

use wsk_sys::{ADDRINFOEXW, AI_NUMERICHOST, AI_PASSIVE, NS_ALL, UNICODE_STRING};

use crate::addr;
use crate::error::{Error, Result};
use crate::op::{Busy, OpSlot};
use crate::pool::tag::REQUEST;
use crate::pool::{AnyPoolBox, PoolBox};
use crate::registration::Wsk;
use abandoned::{Abandoned, Grave};

pub use name::{NameFlags, NameInfo, Utf16Text};

/// Most addresses a resolution returns (the largest bound [`Resolve::max`] takes).
pub const MAX_ADDRS: usize = 16;

/// Longest host name accepted (characters).
pub const MAX_NAME: usize = 255;

/// The addresses a name resolved to, in the provider's order (at most the query's bound).
#[derive(Debug, Clone, Copy)]
pub struct AddrList {
    addrs: [Option<SocketAddr>; MAX_ADDRS],
    len: usize,
}

impl AddrList {
    /// The addresses.
    ///
    /// Any IRQL.
    pub fn iter(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.addrs[..self.len].iter().flatten().copied()
    }

    /// How many there are.
    ///
    /// Any IRQL.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    ///
    /// Any IRQL.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The first address, if any.
    ///
    /// Any IRQL.
    pub fn first(&self) -> Option<SocketAddr> {
        self.iter().next()
    }
}

/// The address family a resolution asks for (`ai_family` of the hints).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Either (`AF_UNSPEC`).
    Any,
    /// IPv4 only (`AF_INET`).
    V4,
    /// IPv6 only (`AF_INET6`).
    V6,
}

/// The kind of socket the addresses are for (`ai_socktype` and `ai_protocol` of the hints).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketType {
    /// Any (0).
    Any,
    /// TCP (`SOCK_STREAM`, `IPPROTO_TCP`).
    Stream,
    /// UDP (`SOCK_DGRAM`, `IPPROTO_UDP`).
    Datagram,
}

/// A resolution to run with [`Wsk::resolve_with`]: the host, the port, the hints and the
/// bound on the number of addresses returned.
///
/// ```ignore
/// let query = Resolve::new("localhost").port(80).family(Family::V4).max(1);
/// let list = wsk.resolve_with(&query).await?;
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Resolve<'a> {
    host: Option<&'a str>,
    port: u16,
    family: Family,
    socket_type: SocketType,
    flags: i32,
    max: usize,
}

impl<'a> Resolve<'a> {
    /// Resolves `host` (a name or a numeric address) for port 0, any family, any socket
    /// type, up to [`MAX_ADDRS`] addresses.
    ///
    /// Any IRQL.
    pub const fn new(host: &'a str) -> Self {
        Self { host: Some(host), port: 0, family: Family::Any, socket_type: SocketType::Any, flags: 0, max: MAX_ADDRS }
    }

    /// Resolves no host: the provider answers with the loopback addresses, or with the
    /// wildcard ones (to bind to) with [`Resolve::passive`].
    ///
    /// Any IRQL.
    pub const fn no_host() -> Self {
        Self { host: None, ..Self::new("") }
    }

    /// Without a host, the wildcard addresses (`AI_PASSIVE`).
    ///
    /// Any IRQL.
    #[must_use]
    pub const fn passive(mut self) -> Self {
        self.flags |= AI_PASSIVE;
        self
    }

    /// The port the addresses carry.
    ///
    /// Any IRQL.
    #[must_use]
    pub const fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Only addresses of `family` (the provider filters them).
    ///
    /// Any IRQL.
    #[must_use]
    pub const fn family(mut self, family: Family) -> Self {
        self.family = family;
        self
    }

    /// Addresses for sockets of `socket_type`.
    ///
    /// Any IRQL.
    #[must_use]
    pub const fn socket_type(mut self, socket_type: SocketType) -> Self {
        self.socket_type = socket_type;
        self
    }

    /// The host must be a numeric address (`AI_NUMERICHOST`): a name is not looked up and
    /// the resolution fails.
    ///
    /// Any IRQL.
    #[must_use]
    pub const fn numeric_host(mut self) -> Self {
        self.flags |= AI_NUMERICHOST;
        self
    }

    /// Returns at most `max` addresses (1 to [`MAX_ADDRS`]; other values are clamped), the
    /// provider's first ones.
    ///
    /// Any IRQL.
    #[must_use]
    pub const fn max(mut self, max: usize) -> Self {
        self.max = if max == 0 {
            1
        } else if max > MAX_ADDRS {
            MAX_ADDRS
        } else {
            max
        };
        self
    }

    /// The hints block passed to `WskGetAddressInfo`.
    fn hints(&self) -> ADDRINFOEXW {
        let family = match self.family {
            Family::Any => wsk_sys::AF_UNSPEC,
            Family::V4 => wsk_sys::AF_INET,
            Family::V6 => wsk_sys::AF_INET6,
        };
        let (socket_type, protocol) = match self.socket_type {
            SocketType::Any => (0, 0),
            SocketType::Stream => (wsk_sys::SOCK_STREAM, wsk_sys::IPPROTO_TCP),
            SocketType::Datagram => (wsk_sys::SOCK_DGRAM, wsk_sys::IPPROTO_UDP),
        };
        ADDRINFOEXW {
            ai_flags: self.flags,
            ai_family: i32::from(family),
            ai_socktype: i32::from(socket_type),
            ai_protocol: protocol as i32,
            ai_addrlen: 0,
            ai_canonname: core::ptr::null_mut(),
            ai_addr: core::ptr::null_mut(),
            ai_blob: core::ptr::null_mut(),
            ai_bufferlen: 0,
            ai_provider: core::ptr::null_mut(),
            ai_next: core::ptr::null_mut(),
        }
    }
}

/// The request block, kept in pool (a [`PoolBox`] the operation slot holds) until the IRP
/// completes: the provider reads the names and hints and writes the result pointer through it.
#[repr(C)]
struct Request {
    node: UNICODE_STRING,
    service: UNICODE_STRING,
    hints: ADDRINFOEXW,
    result: *mut ADDRINFOEXW,
    name: [u16; MAX_NAME],
    port: [u16; 6],
}

// SAFETY: the pointers lead into the block itself and, once the request completed, to the
// provider's result list, which the owner of the block frees; the block has one owner at a
// time (the resolving task, or the slot while the IRP is in flight).
unsafe impl Send for Request {}

impl Request {
    const EMPTY_STRING: UNICODE_STRING = UNICODE_STRING { Length: 0, MaximumLength: 0, Buffer: core::ptr::null_mut() };

    /// An empty request: no names, no result.
    const fn new(hints: ADDRINFOEXW) -> Self {
        Self {
            node: Self::EMPTY_STRING,
            service: Self::EMPTY_STRING,
            hints,
            result: core::ptr::null_mut(),
            name: [0; MAX_NAME],
            port: [0; 6],
        }
    }
}

/// A resolution's slot while its IRP is in flight: dropped before the completion was
/// collected (the future was dropped), it cancels the IRP and hands the slot to the
/// registration, which collects it and frees its result list at PASSIVE_LEVEL.
struct Pending<'w> {
    abandoned: &'w Abandoned,
    slot: Option<OpSlot>,
    node: Option<PoolBox<Grave, REQUEST>>,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if let (Some(slot), Some(node)) = (self.slot.take(), self.node.take()) {
            slot.cancel();
            self.abandoned.push(node, slot);
        }
    }
}

/// Writes the decimal digits of `port` to `out`; returns how many.
fn port_digits(port: u16, out: &mut [u16; 6]) -> usize {
    let mut digits = [0u16; 6];
    let mut n = 0;
    let mut p = port;
    loop {
        digits[n] = u16::from(b'0' + (p % 10) as u8);
        n += 1;
        p /= 10;
        if p == 0 {
            break;
        }
    }
    for i in 0..n {
        out[i] = digits[n - 1 - i];
    }
    n
}

impl Wsk {
    /// Resolves `host` (a name or a numeric address) for `port` with `WskGetAddressInfo`:
    /// [`Wsk::resolve_with`] of `Resolve::new(host).port(port)`.
    ///
    /// IRQL == PASSIVE_LEVEL (task context).
    pub async fn resolve(&self, host: &str, port: u16) -> Result<AddrList> {
        self.resolve_with(&Resolve::new(host).port(port)).await
    }

    /// Resolves `query` with `WskGetAddressInfo`: its hints go to the provider, and at most
    /// its bound of addresses come back. No address is `Err(Status(STATUS_NOT_FOUND))`.
    ///
    /// Dropping the future while the request is pending cancels it and hands the operation to
    /// the registration: when the provider completes it (successfully regardless, perhaps), the
    /// next resolution through this registration, or at the latest the registration's drop,
    /// which waits for it, frees its result list at PASSIVE_LEVEL and its IRP.
    ///
    /// IRQL == PASSIVE_LEVEL (task context).
    #[expect(
        clippy::multiple_unsafe_ops_per_block,
        reason = "the provider call is one unsafe step: the routine and the request fields its pointers lead to"
    )]
    pub async fn resolve_with(&self, query: &Resolve<'_>) -> Result<AddrList> {
        if let Some(host) = query.host
            && (host.is_empty() || host.len() > MAX_NAME || !host.is_ascii())
        {
            return Err(Error::InvalidInput("host name must be 1 to 255 ASCII characters"));
        }
        let (get, free) = {
            let (client, dispatch) = self.provider()?;
            let free = dispatch.WskFreeAddressInfo;
            self.abandoned().drain(client, free);
            (dispatch.WskGetAddressInfo, free)
        };
        let node = Abandoned::node()?;
        let mut slot = OpSlot::new()?;
        let mut block =
            PoolBox::<Request, REQUEST>::try_new_tagged(Request::new(query.hints())).map_err(|_| Error::NoMemory)?;
        // The string pointers set below point into the same pool block, which does not move.
        let r = &mut *block;
        let host = query.host.unwrap_or_default();
        for (w, b) in r.name.iter_mut().zip(host.bytes()) {
            *w = u16::from(b);
        }
        let n = port_digits(query.port, &mut r.port);
        r.node = UNICODE_STRING {
            Length: (host.len() * 2) as u16,
            MaximumLength: (host.len() * 2) as u16,
            Buffer: r.name.as_mut_ptr(),
        };
        let has_host = query.host.is_some();
        r.service =
            UNICODE_STRING { Length: (n * 2) as u16, MaximumLength: (n * 2) as u16, Buffer: r.port.as_mut_ptr() };

        // (The slot is new, hence idle: no await between building the request and issuing it.)
        let mut armed = slot.arm().map_err(Busy::error)?;
        let req = block.as_ptr();
        armed.hold_block(block);
        let (client, _) = self.provider()?;
        // SAFETY: `req` points into the pool block now owned by the slot until the IRP completes;
        // the strings, the hints and the result pointer stay valid for the whole request, and
        // the IRP goes to `WskGetAddressInfo` only.
        let in_flight = unsafe {
            armed.submit(move |irp, _| {
                get.map(|get| {
                    get(
                        client,
                        if has_host { &raw mut (*req).node } else { core::ptr::null_mut() },
                        &raw mut (*req).service,
                        NS_ALL,
                        core::ptr::null_mut(),
                        &raw mut (*req).hints,
                        &raw mut (*req).result,
                        core::ptr::null_mut(),
                        core::ptr::null_mut(),
                        irp,
                    )
                })
            })
        };
        in_flight.detach();
        let mut pending = Pending { abandoned: self.abandoned(), slot: Some(slot), node: Some(node) };
        let done = core::future::poll_fn(|cx| match pending.slot.as_mut() {
            Some(slot) => slot.poll_submitted(cx),
            None => core::task::Poll::Pending,
        })
        .await;
        // Collected: the slot is idle and goes with the guard.
        drop(pending.slot.take());
        let status = done.result();
        let block = done.block.map(AnyPoolBox::downcast::<Request, REQUEST>);
        let Some(Ok(mut block)) = block else { return Err(Error::NoMemory) };
        status?;
        // The request completed: the provider wrote the result pointer. From here on this task
        // owns the list (the block no longer queues it).
        let head = core::mem::replace(&mut block.result, core::ptr::null_mut());
        drop(block);
        let list = read_list(head, query.max);
        let (client, _) = self.provider()?;
        if let (Some(free), false) = (free, head.is_null()) {
            // SAFETY: the list came from this client's WskGetAddressInfo and is freed once, at
            // PASSIVE_LEVEL.
            unsafe { free(client, head) };
        }
        if list.is_empty() { Err(Error::Status(wsk_sys::STATUS_NOT_FOUND)) } else { Ok(list) }
    }
}

/// The addresses of a provider's result list, at most `max` of them.
fn read_list(head: *mut ADDRINFOEXW, max: usize) -> AddrList {
    let mut list = AddrList { addrs: [None; MAX_ADDRS], len: 0 };
    let max = max.min(MAX_ADDRS);
    let mut node = head;
    while !node.is_null() && list.len < max {
        // SAFETY: a list returned by WskGetAddressInfo, valid until WskFreeAddressInfo.
        let info = unsafe { &*node };
        if !info.ai_addr.is_null() {
            let mut storage = wsk_sys::SOCKADDR_STORAGE::zeroed();
            let len = info.ai_addrlen.min(size_of::<wsk_sys::SOCKADDR_STORAGE>());
            // SAFETY: `ai_addr` points to `ai_addrlen` readable bytes; copying at most the
            // storage's size.
            unsafe {
                core::ptr::copy_nonoverlapping(info.ai_addr.cast::<u8>(), (&raw mut storage).cast::<u8>(), len);
            };
            if let Ok(a) = addr::from_storage(&storage) {
                list.addrs[list.len] = Some(a);
                list.len += 1;
            }
        }
        node = info.ai_next;
    }
    list
}
