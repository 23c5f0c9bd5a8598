//! Address to name: `WskGetNameInfo`.

use core::net::SocketAddr;

use wsk_sys::{NI_DGRAM, NI_NAMEREQD, NI_NOFQDN, NI_NUMERICHOST, NI_NUMERICSERV, SOCKADDR_STORAGE, UNICODE_STRING};

use crate::addr;
use crate::error::{Error, Result};
use crate::op::{Busy, OpSlot};
use crate::pool::tag::REQUEST;
use crate::pool::{AnyPoolBox, PoolBox};
use crate::registration::Wsk;

/// Longest host name [`Wsk::name_of`] returns, in characters (a DNS name has at most 253).
pub const MAX_HOST: usize = 255;

/// Longest service name [`Wsk::name_of`] returns, in characters.
pub const MAX_SERVICE: usize = wsk_sys::NI_MAXSERV - 1;

/// How [`Wsk::name_of`] answers (`WskGetNameInfo`'s `NI_*` flags); combine with `|`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NameFlags(u32);

impl NameFlags {
    /// A name for the host and the service, their numeric forms where there is none.
    pub const NONE: Self = Self(0);
    /// The numeric form of the address, no reverse lookup (`NI_NUMERICHOST`).
    pub const NUMERIC_HOST: Self = Self(NI_NUMERICHOST);
    /// A host without a name is an error, not its numeric form (`NI_NAMEREQD`).
    pub const NAME_REQUIRED: Self = Self(NI_NAMEREQD);
    /// The port's number, not its service name (`NI_NUMERICSERV`).
    pub const NUMERIC_SERVICE: Self = Self(NI_NUMERICSERV);
    /// The service is a datagram service (`NI_DGRAM`).
    pub const DATAGRAM: Self = Self(NI_DGRAM);
    /// The host's relative name, without its domain (`NI_NOFQDN`).
    pub const NO_FQDN: Self = Self(NI_NOFQDN);

    /// The `NI_*` bits.
    ///
    /// Any IRQL.
    pub const fn bits(self) -> u32 {
        self.0
    }
}

impl core::ops::BitOr for NameFlags {
    type Output = Self;

    fn bitor(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }
}

/// UTF-16 text a provider returned; displays as a string (invalid units as U+FFFD).
#[derive(Clone, Copy)]
pub struct Utf16Text<'a>(&'a [u16]);

impl Utf16Text<'_> {
    /// The UTF-16 units.
    ///
    /// Any IRQL.
    pub fn as_utf16(&self) -> &[u16] {
        self.0
    }

    /// Whether the text is `text`.
    ///
    /// Any IRQL.
    pub fn eq_str(&self, text: &str) -> bool {
        self.0.iter().copied().eq(text.encode_utf16())
    }
}

impl core::fmt::Display for Utf16Text<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for c in char::decode_utf16(self.0.iter().copied()) {
            core::fmt::Write::write_char(f, c.unwrap_or(char::REPLACEMENT_CHARACTER))?;
        }
        Ok(())
    }
}

impl core::fmt::Debug for Utf16Text<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "\"{self}\"")
    }
}

/// The host and service names of an address ([`Wsk::name_of`]).
#[derive(Clone, Copy)]
pub struct NameInfo {
    host: [u16; MAX_HOST],
    host_len: usize,
    service: [u16; MAX_SERVICE],
    service_len: usize,
}

impl NameInfo {
    /// The host's name (or its numeric form).
    ///
    /// Any IRQL.
    pub fn host(&self) -> Utf16Text<'_> {
        Utf16Text(&self.host[..self.host_len])
    }

    /// The service's name (or the port's number).
    ///
    /// Any IRQL.
    pub fn service(&self) -> Utf16Text<'_> {
        Utf16Text(&self.service[..self.service_len])
    }
}

impl core::fmt::Debug for NameInfo {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("NameInfo").field("host", &self.host()).field("service", &self.service()).finish()
    }
}

/// The request block, in pool and held by the operation slot until the IRP completes: the
/// address the provider reads and the fixed-size name buffers it writes.
#[repr(C)]
struct Request {
    address: SOCKADDR_STORAGE,
    node: UNICODE_STRING,
    service: UNICODE_STRING,
    /// The host name and its terminating NUL.
    host: [u16; MAX_HOST + 1],
    /// The service name and its terminating NUL.
    service_name: [u16; MAX_SERVICE + 1],
}

// SAFETY: the string pointers lead into the block itself, which has one owner at a time (the
// task, or the slot while the IRP is in flight).
unsafe impl Send for Request {}

/// The text a provider wrote to `string`, whose buffer is `buffer`: `Length` bytes, cut at a NUL.
fn written(string: &UNICODE_STRING, buffer: &[u16]) -> usize {
    let len = (usize::from(string.Length) / 2).min(buffer.len());
    buffer[..len].iter().position(|&u| u == 0).unwrap_or(len)
}

impl Wsk {
    /// The host and service names of `address` (`WskGetNameInfo`), as `flags` asks: by
    /// default the host's name, or its numeric form when it has none, and the port's service
    /// name, or its number. With [`NameFlags::NAME_REQUIRED`] a host without a name is an
    /// error (the provider's status, e.g. `STATUS_NOT_FOUND`).
    ///
    /// Dropping the future while the request is pending cancels it.
    ///
    /// IRQL == PASSIVE_LEVEL (task context).
    #[expect(
        clippy::multiple_unsafe_ops_per_block,
        reason = "the provider call is one unsafe step: the routine and the request fields its pointers lead to"
    )]
    pub async fn name_of(&self, address: SocketAddr, flags: NameFlags) -> Result<NameInfo> {
        let (client, dispatch) = self.provider()?;
        let get = dispatch.WskGetNameInfo;
        let mut slot = OpSlot::new()?;
        let request = Request {
            address: addr::to_storage(&address),
            node: UNICODE_STRING { Length: 0, MaximumLength: 0, Buffer: core::ptr::null_mut() },
            service: UNICODE_STRING { Length: 0, MaximumLength: 0, Buffer: core::ptr::null_mut() },
            host: [0; MAX_HOST + 1],
            service_name: [0; MAX_SERVICE + 1],
        };
        let mut block = PoolBox::<Request, REQUEST>::try_new_tagged(request).map_err(|_| Error::NoMemory)?;
        // The string pointers set below point into the same pool block, which does not move.
        let r = &mut *block;
        r.node = UNICODE_STRING { Length: 0, MaximumLength: (r.host.len() * 2) as u16, Buffer: r.host.as_mut_ptr() };
        r.service = UNICODE_STRING {
            Length: 0,
            MaximumLength: (r.service_name.len() * 2) as u16,
            Buffer: r.service_name.as_mut_ptr(),
        };
        let length =
            wsk_sys::sockaddr_len(addr::family(&address)).map_err(|_| Error::InvalidInput("address family"))?;

        // (The slot is new, hence idle: no await between building the request and issuing it.)
        let mut armed = slot.arm().map_err(Busy::error)?;
        let req = block.as_ptr();
        armed.hold_block(block);
        // SAFETY: `req` points into the pool block now owned by the slot until the IRP
        // completes; the address and both buffers stay valid for the whole request, and the
        // IRP goes to `WskGetNameInfo` only.
        let in_flight = unsafe {
            armed.submit(move |irp, _| {
                get.map(|get| {
                    get(
                        client,
                        (&raw mut (*req).address).cast(),
                        length as u32,
                        &raw mut (*req).node,
                        &raw mut (*req).service,
                        flags.bits(),
                        core::ptr::null_mut(),
                        core::ptr::null_mut(),
                        irp,
                    )
                })
            })
        };
        let done = in_flight.await;
        done.result()?;
        let Some(Ok(block)) = done.block.map(AnyPoolBox::downcast::<Request, REQUEST>) else {
            return Err(Error::NoMemory);
        };
        let mut info = NameInfo { host: [0; MAX_HOST], host_len: 0, service: [0; MAX_SERVICE], service_len: 0 };
        info.host_len = written(&block.node, &block.host[..MAX_HOST]);
        info.host[..info.host_len].copy_from_slice(&block.host[..info.host_len]);
        info.service_len = written(&block.service, &block.service_name[..MAX_SERVICE]);
        info.service[..info.service_len].copy_from_slice(&block.service_name[..info.service_len]);
        Ok(info)
    }
}
