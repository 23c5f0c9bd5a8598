//! Control operations on the WSK client object (`WskControlClient`): static event callbacks
//! ([`Wsk::set_static_event_callbacks`]) and the list of transports
//! ([`Wsk::transports`]).
//!
//! # Static event callbacks
//!
//! Microsoft documents `WSK_SET_STATIC_EVENT_CALLBACKS` ("WSK Client Control Operations",
//! "Enabling and Disabling Event Callback Functions") as follows, and the library keeps it so:
//!
//! * The client calls `WskControlClient` with a `WSK_EVENT_CALLBACK_CONTROL` naming
//!   `NPI_WSK_INTERFACE_ID` and the event flags, and no IRP.
//! * It "must do so before it creates any sockets" (the emulator refuses it afterwards).
//! * The subsystem then enables, on each new socket, the callbacks of the mask that belong to
//!   the socket's category; they "are always enabled and cannot be disabled or re-enabled
//!   later": the event streams do not send `SO_WSK_EVENT_CALLBACK` for them (only for events
//!   of the stream outside the static set), and
//!   [`ConnectionEvents::disable_receive`](crate::events::ConnectionEvents::disable_receive)
//!   refuses when the receive callback is static.
//! * A static `WskReceiveFromEvent` that refuses datagrams (`STATUS_DATA_NOT_ACCEPTED`) is
//!   not disabled: WSK "will continue calling" it for new datagrams. The refused ones are
//!   not offered again (the page says nothing of keeping them; the emulator drops them). So
//!   with a static receive-from callback every refusal of the datagram stream loses what it
//!   refused: past [`EventConfig::max_retained_bytes`](crate::events::EventConfig), with its
//!   ring full, and when two callbacks of the socket overlap and one finds the ring claimed
//!   (see `socket::events`; the emulator's adversarial mode makes them overlap, and loses
//!   datagrams so). Where a datagram lost to the driver's own backpressure matters, leave
//!   `RECEIVE_FROM` out of the static set: the stream then enables it on the socket, and
//!   WSK keeps what it refuses.
//!
//! Which sockets: the control code's description says "on all sockets", the operation's page
//! "every socket that it creates". Accepted sockets are created by the provider, not the
//! client; the library assumes they may have the callbacks on from acceptance (as the
//! emulator does) and copes with either.
//!
//! # Sockets whose callbacks are on before their stream exists
//!
//! Every socket is created with its core as context and the library's dispatch table for its
//! kind, so WSK calls the library's callbacks from the socket's creation (or acceptance) on.
//! Until an event stream installs its state the callbacks keep nothing:
//!
//! * A receive callback refuses the data (`STATUS_DATA_NOT_ACCEPTED`): WSK keeps it and
//!   indicates nothing more until a `WskReceive`. A stream created on the socket later
//!   ([`TcpStream::into_events`](crate::TcpStream::into_events)) starts as after a refusal:
//!   its first poll issues a zero-length `WskReceive` (Microsoft's documented way to resume),
//!   so the data comes to it, none lost, in order. IRP receives before the stream read the
//!   kept data as usual.
//! * A disconnect (or a failed socket) met before the stream is recorded in the core and
//!   reported by the stream; the data WSK kept before a graceful disconnect is read with IRP
//!   receives first (the stream's copy path).
//! * A listener's accept callback and a datagram socket's receive-from callback can be
//!   called only once the socket is bound. Connections and datagrams indicated between the
//!   bind and the stream are refused: a refused connection is rejected, and refused static
//!   datagrams are dropped (above). To lose none, create the stream before the bind:
//!   [`TcpListener::bind_incoming`](crate::TcpListener::bind_incoming) and
//!   [`UdpSocket::bind_with_datagrams`](crate::UdpSocket::bind_with_datagrams) do (create,
//!   install, then bind).
//! * A listener with a static accept callback refuses connections while it has no stream, so
//!   [`TcpListener::accept`](crate::TcpListener::accept) gets only the connections that
//!   arrive while its `WskAccept` is pending (an accept IRP takes precedence over the
//!   callback): use [`TcpListener::into_incoming`](crate::TcpListener::into_incoming).

use core::ffi::c_void;
use core::ops::BitOr;

use wsk_sys::{
    GUID, NPI_WSK_INTERFACE_ID, SIZE_T, STATUS_BUFFER_OVERFLOW, WSK_EVENT_ACCEPT, WSK_EVENT_CALLBACK_CONTROL,
    WSK_EVENT_DISCONNECT, WSK_EVENT_RECEIVE, WSK_EVENT_RECEIVE_FROM, WSK_EVENT_SEND_BACKLOG,
    WSK_SET_STATIC_EVENT_CALLBACKS, WSK_TRANSPORT, WSK_TRANSPORT_LIST_QUERY,
};

use crate::error::{Error, Result, require_irql};
use crate::registration::Wsk;

/// Event callbacks to enable on every socket of a client (`WSK_SET_STATIC_EVENT_CALLBACKS`).
/// Combine with `|`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StaticEvents(u32);

impl StaticEvents {
    /// `WskAcceptEvent` on listening sockets ([`Incoming`](crate::events::Incoming)).
    pub const ACCEPT: Self = Self(WSK_EVENT_ACCEPT);
    /// `WskReceiveEvent` on connection sockets.
    pub const RECEIVE: Self = Self(WSK_EVENT_RECEIVE);
    /// `WskDisconnectEvent` on connection sockets.
    pub const DISCONNECT: Self = Self(WSK_EVENT_DISCONNECT);
    /// `WskSendBacklogEvent` on connection sockets.
    pub const SEND_BACKLOG: Self = Self(WSK_EVENT_SEND_BACKLOG);
    /// `WskReceiveFromEvent` on datagram sockets ([`Datagrams`](crate::events::Datagrams)).
    pub const RECEIVE_FROM: Self = Self(WSK_EVENT_RECEIVE_FROM);
    /// Every callback the library's event streams use.
    pub const ALL: Self = Self(
        WSK_EVENT_ACCEPT | WSK_EVENT_RECEIVE | WSK_EVENT_DISCONNECT | WSK_EVENT_SEND_BACKLOG | WSK_EVENT_RECEIVE_FROM,
    );

    /// The `WSK_EVENT_*` bits. Any IRQL.
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// Whether every callback of `other` is in `self`. Any IRQL.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
}

impl BitOr for StaticEvents {
    type Output = Self;

    fn bitor(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }
}

/// One transport sockets can be created on (a `WSK_TRANSPORT` of the
/// `WSK_TRANSPORT_LIST_QUERY` list).
#[repr(transparent)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transport(WSK_TRANSPORT);

impl Transport {
    /// An entry to fill ([`Wsk::transports`]).
    pub const EMPTY: Self = Self(WSK_TRANSPORT {
        Version: 0,
        SocketType: 0,
        Protocol: 0,
        AddressFamily: 0,
        ProviderId: GUID { Data1: 0, Data2: 0, Data3: 0, Data4: [0; 8] },
    });

    /// The transport's version (its format is the transport's own). Any IRQL.
    pub fn version(&self) -> u16 {
        self.0.Version
    }

    /// `SOCK_STREAM`, `SOCK_DGRAM` or `SOCK_RAW`. Any IRQL.
    pub fn socket_type(&self) -> u16 {
        self.0.SocketType
    }

    /// The protocol (`IPPROTO_TCP`, `IPPROTO_UDP`, ...). Any IRQL.
    pub fn protocol(&self) -> u32 {
        self.0.Protocol
    }

    /// The address family (`AF_INET`, `AF_INET6`, ...). Any IRQL.
    pub fn address_family(&self) -> u16 {
        self.0.AddressFamily
    }

    /// The transport provider's identifier. Any IRQL.
    pub fn provider_id(&self) -> GUID {
        self.0.ProviderId
    }
}

impl Wsk {
    /// Enables `events` on every socket created through this client from now on
    /// (`WSK_SET_STATIC_EVENT_CALLBACKS`; see the module docs for what that changes). Call it
    /// once, after the provider was captured and before any socket is created through this
    /// client: the provider refuses it afterwards (`&mut self` keeps sockets from being
    /// created meanwhile). Fails with [`Error::NotReady`] before the capture and
    /// [`Error::InvalidInput`] for an empty set or a second call.
    ///
    /// IRQL <= DISPATCH_LEVEL.
    pub fn set_static_event_callbacks(&mut self, events: StaticEvents) -> Result<()> {
        require_irql(wsk_sys::DISPATCH_LEVEL)?;
        if events.bits() == 0 {
            return Err(Error::InvalidInput("no static event callbacks given"));
        }
        if self.static_event_mask() != 0 {
            return Err(Error::InvalidInput("static event callbacks are set once"));
        }
        let mut request =
            WSK_EVENT_CALLBACK_CONTROL { NpiId: &raw const NPI_WSK_INTERFACE_ID, EventMask: events.bits() };
        // SAFETY: the input block lives across the call, which reads it only during the call
        // (no IRP, as Microsoft requires for this code); no output.
        let status = unsafe {
            self.control_client(
                WSK_SET_STATIC_EVENT_CALLBACKS,
                size_of::<WSK_EVENT_CALLBACK_CONTROL>(),
                (&raw mut request).cast::<c_void>(),
                0,
                core::ptr::null_mut(),
                core::ptr::null_mut(),
            )
        }?;
        crate::error::check(status)?;
        self.record_static_events(events.bits());
        Ok(())
    }

    /// The static event callbacks set with [`Wsk::set_static_event_callbacks`] (empty when
    /// none). Any IRQL.
    pub fn static_event_callbacks(&self) -> StaticEvents {
        StaticEvents(self.static_event_mask())
    }

    /// How many transports the provider lists (`WSK_TRANSPORT_LIST_QUERY` with no buffer,
    /// which answers `STATUS_BUFFER_OVERFLOW` and the size needed).
    ///
    /// IRQL <= DISPATCH_LEVEL.
    pub fn transport_count(&self) -> Result<usize> {
        require_irql(wsk_sys::DISPATCH_LEVEL)?;
        let mut needed: SIZE_T = 0;
        // SAFETY: no buffer; `needed` is written during the call only.
        let status = unsafe {
            self.control_client(
                WSK_TRANSPORT_LIST_QUERY,
                0,
                core::ptr::null_mut(),
                0,
                core::ptr::null_mut(),
                &raw mut needed,
            )
        }?;
        if status != STATUS_BUFFER_OVERFLOW {
            crate::error::check(status)?;
        }
        Ok(needed / size_of::<WSK_TRANSPORT>())
    }

    /// Fills `out` with the transports the provider lists (`WSK_TRANSPORT_LIST_QUERY`) and
    /// returns how many it wrote. When `out` is too small for the whole list it fails with
    /// `Error::Status(STATUS_BUFFER_OVERFLOW)`; [`Wsk::transport_count`] tells the size.
    ///
    /// IRQL <= DISPATCH_LEVEL.
    pub fn transports(&self, out: &mut [Transport]) -> Result<usize> {
        require_irql(wsk_sys::DISPATCH_LEVEL)?;
        let mut written: SIZE_T = 0;
        // SAFETY: `out` is writable for its size in bytes during the call (no IRP); any bit
        // pattern is a valid `Transport` (integers only).
        let status = unsafe {
            self.control_client(
                WSK_TRANSPORT_LIST_QUERY,
                0,
                core::ptr::null_mut(),
                size_of_val(out),
                out.as_mut_ptr().cast::<c_void>(),
                &raw mut written,
            )
        }?;
        crate::error::check(status)?;
        Ok((written / size_of::<WSK_TRANSPORT>()).min(out.len()))
    }

    /// `WskControlClient` without an IRP: the provider answers at once. Returns its status.
    ///
    /// # Safety
    /// The buffers are valid for their sizes (input readable, output and `returned` writable)
    /// during the call.
    unsafe fn control_client(
        &self,
        code: u32,
        input_size: SIZE_T,
        input: *mut c_void,
        output_size: SIZE_T,
        output: *mut c_void,
        returned: *mut SIZE_T,
    ) -> Result<wsk_sys::NTSTATUS> {
        let (client, dispatch) = self.provider()?;
        let Some(control) = dispatch.WskControlClient else {
            return Err(Error::Status(wsk_sys::STATUS_NOT_SUPPORTED));
        };
        // SAFETY: a captured client; the buffers as the caller guarantees; no IRP.
        Ok(unsafe { control(client, code, input_size, input, output_size, output, returned, core::ptr::null_mut()) })
    }
}

#[cfg(test)]
mod tests {
    use super::{StaticEvents, Transport};

    #[test]
    fn static_events_combine_into_the_documented_flags() {
        let events = StaticEvents::RECEIVE | StaticEvents::DISCONNECT;
        assert_eq!(events.bits(), wsk_sys::WSK_EVENT_RECEIVE | wsk_sys::WSK_EVENT_DISCONNECT);
        assert!(events.contains(StaticEvents::RECEIVE));
        assert!(!events.contains(StaticEvents::ACCEPT));
        assert!(StaticEvents::ALL.contains(events | StaticEvents::ACCEPT | StaticEvents::RECEIVE_FROM));
        assert_eq!(StaticEvents::default().bits(), 0);
    }

    #[test]
    fn a_transport_is_a_wsk_transport() {
        assert_eq!(size_of::<Transport>(), size_of::<wsk_sys::WSK_TRANSPORT>());
        assert_eq!(align_of::<Transport>(), align_of::<wsk_sys::WSK_TRANSPORT>());
        let entry = Transport(wsk_sys::WSK_TRANSPORT {
            Version: 2,
            SocketType: wsk_sys::SOCK_DGRAM,
            Protocol: wsk_sys::IPPROTO_UDP,
            AddressFamily: wsk_sys::AF_INET6,
            ..Transport::EMPTY.0
        });
        assert_eq!(
            (entry.version(), entry.socket_type(), entry.protocol(), entry.address_family()),
            (2, wsk_sys::SOCK_DGRAM, wsk_sys::IPPROTO_UDP, wsk_sys::AF_INET6)
        );
    }
}
