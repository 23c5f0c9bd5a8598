//! Name resolution through `WskGetAddressInfo`.

use core::net::SocketAddr;

use wsk_sys::{ADDRINFOEXW, NS_ALL, UNICODE_STRING};

use crate::addr;
use crate::error::{Error, Result};
use crate::op::{Busy, OpSlot};
use crate::pool::tag::REQUEST;
use crate::pool::{AnyPoolBox, PoolBox};
use crate::registration::Wsk;

/// Most addresses [`Wsk::resolve`] returns.
pub const MAX_ADDRS: usize = 16;

/// Longest host name accepted (characters).
pub const MAX_NAME: usize = 255;

/// The addresses a name resolved to, in the provider's order (at most [`MAX_ADDRS`]).
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

/// The request block, kept in pool (a [`PoolBox`] the operation slot holds) until the IRP
/// completes: the provider reads the names and writes the result pointer through it.
#[repr(C)]
struct Request {
    node: UNICODE_STRING,
    service: UNICODE_STRING,
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
    const fn new() -> Self {
        Self {
            node: Self::EMPTY_STRING,
            service: Self::EMPTY_STRING,
            result: core::ptr::null_mut(),
            name: [0; MAX_NAME],
            port: [0; 6],
        }
    }
}

impl Wsk {
    /// Resolves `host` (a name or a numeric address) for `port` with `WskGetAddressInfo`.
    /// IRQL == PASSIVE_LEVEL (task context).
    ///
    /// Dropping the future while the request is pending cancels it; if the provider completes
    /// it successfully regardless, the result list cannot be returned to it and is leaked
    /// (one small pool allocation of the provider's).
    #[expect(
        clippy::multiple_unsafe_ops_per_block,
        reason = "the provider call is one unsafe step: the routine and the request fields its pointers lead to"
    )]
    pub async fn resolve(&self, host: &str, port: u16) -> Result<AddrList> {
        if host.is_empty() || host.len() > MAX_NAME || !host.is_ascii() {
            return Err(Error::InvalidInput("host name must be 1 to 255 ASCII characters"));
        }
        let mut slot = OpSlot::new()?;
        let mut block = PoolBox::<Request, REQUEST>::try_new_tagged(Request::new()).map_err(|_| Error::NoMemory)?;
        // The string pointers set below point into the same pool block, which does not move.
        let r = &mut *block;
        for (w, b) in r.name.iter_mut().zip(host.bytes()) {
            *w = u16::from(b);
        }
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
            r.port[i] = digits[n - 1 - i];
        }
        r.node = UNICODE_STRING {
            Length: (host.len() * 2) as u16,
            MaximumLength: (host.len() * 2) as u16,
            Buffer: r.name.as_mut_ptr(),
        };
        r.service =
            UNICODE_STRING { Length: (n * 2) as u16, MaximumLength: (n * 2) as u16, Buffer: r.port.as_mut_ptr() };

        // (The slot is new, hence idle: no await between building the request and issuing it.)
        let (client, dispatch) = self.provider()?;
        let (get, free) = (dispatch.WskGetAddressInfo, dispatch.WskFreeAddressInfo);
        let mut armed = slot.arm().map_err(Busy::error)?;
        let req = block.as_ptr();
        armed.hold_block(block);
        // SAFETY: `req` points into the pool block now owned by the slot until the IRP completes;
        // the strings and the result pointer stay valid for the whole request, and the IRP goes
        // to `WskGetAddressInfo` only.
        let in_flight = unsafe {
            armed.submit(move |irp, _| {
                get.map(|get| {
                    get(
                        client,
                        &raw mut (*req).node,
                        &raw mut (*req).service,
                        NS_ALL,
                        core::ptr::null_mut(),
                        core::ptr::null_mut(),
                        &raw mut (*req).result,
                        core::ptr::null_mut(),
                        core::ptr::null_mut(),
                        irp,
                    )
                })
            })
        };
        let done = in_flight.await;
        done.result()?;
        let block = done.block.map(AnyPoolBox::downcast::<Request, REQUEST>);
        let Some(Ok(block)) = block else { return Err(Error::NoMemory) };
        // The request completed: the provider wrote the result pointer.
        let head = block.result;
        let mut list = AddrList { addrs: [None; MAX_ADDRS], len: 0 };
        let mut node = head;
        while !node.is_null() && list.len < MAX_ADDRS {
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
        if let (Some(free), false) = (free, head.is_null()) {
            let (client, _) = self.provider()?;
            // SAFETY: the list came from this client's WskGetAddressInfo and is freed once.
            unsafe { free(client, head) };
        }
        if list.is_empty() { Err(Error::Status(wsk_sys::STATUS_NOT_FOUND)) } else { Ok(list) }
    }
}
