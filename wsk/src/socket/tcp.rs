//! TCP: `TcpListener` (WSK listen socket) and `TcpStream` (WSK connection socket), with read
//! and write halves usable from different tasks.
//!
//! Methods that issue a WSK call take `&mut self`: one operation per slot at a time. The
//! halves of a split stream have slots of their own, so a receive and a send (or a close) may
//! run concurrently from different tasks.

use core::net::SocketAddr;
use core::time::Duration;

use wsk_sys::{
    AF_INET, IPPROTO_TCP, SO_CONDITIONAL_ACCEPT, SOCK_STREAM, SOL_SOCKET, WSK_FLAG_ABORTIVE,
    WSK_PROVIDER_CONNECTION_DISPATCH, WSK_PROVIDER_LISTEN_DISPATCH,
};

use crate::addr;
use crate::buf::IoBuf;
use crate::error::{Error, Result};
use crate::op::OpSlot;
use crate::op::SocketOwner;
use crate::registration::Wsk;
use crate::shadow::ShadowSet;
use crate::socket::admission::Admission;
use crate::socket::call::{
    NotIssued, receive_call, socket_call, socket_call_with_owner, socket_call_within, unit, with_buffer,
};
use crate::socket::create;
use crate::socket::events::{ConnectionEvents, EventConfig, Incoming, Refused};
use crate::socket::kind::{Connection, Listen, SocketKind};
use crate::socket::options::{EncodedOption, OptionName, SocketOption, get_option, set_encoded, set_option};
use crate::socket::provider_cancel::{self, Deadline};
use crate::socket::shared::{AnyCore, SocketCore};

/// The address a socket is bound to after a bind to `requested`: the provider's answer to
/// `WskGetLocalAddress` (`queried`), or `requested` where the provider does not implement the
/// routine (Wine's netio). Other failures are errors.
///
/// Any IRQL.
pub(crate) fn bound_addr(queried: Result<SocketAddr>, requested: SocketAddr) -> Result<SocketAddr> {
    match queried {
        Err(Error::Status(wsk_sys::STATUS_NOT_IMPLEMENTED)) => Ok(requested),
        other => other,
    }
}

/// A listening TCP socket.
pub struct TcpListener {
    core: SocketCore<Listen>,
    slot: OpSlot,
    /// Resources of the next accepted connection, reserved before `WskAccept` is issued so an
    /// accepted socket can always be owned (and closed) by the library.
    next: Option<StreamParts>,
    local: SocketAddr,
}

/// What a connection needs before its socket exists: core (with the reserved close IRP) and
/// the receive slot. The send/control slot is created on first use.
struct StreamParts {
    core: SocketCore<Connection>,
    recv: OpSlot,
}

impl StreamParts {
    fn new() -> Result<Self> {
        Ok(Self { core: SocketCore::new()?, recv: crate::op::cache::take()? })
    }
}

impl TcpListener {
    /// Creates a listen socket bound to `addr` (WSK listen sockets listen once bound).
    /// IRQL == PASSIVE_LEVEL (task context).
    pub async fn bind(wsk: &Wsk, addr: SocketAddr) -> Result<TcpListener> {
        Self::bind_with(wsk, addr, &[]).await
    }

    /// Like [`TcpListener::bind`], setting `options` (for example
    /// [`SocketOption::ExclusiveAddressUse`]) between creation and bind.
    /// IRQL == PASSIVE_LEVEL (task context).
    pub async fn bind_with(wsk: &Wsk, addr: SocketAddr, options: &[SocketOption]) -> Result<TcpListener> {
        let core = SocketCore::new()?;
        let mut listener = TcpListener { core, slot: OpSlot::new()?, next: None, local: addr };
        create::wsk_socket(wsk, &listener.core, &mut listener.slot, addr::family(&addr), SOCK_STREAM, IPPROTO_TCP)
            .await?;
        for option in options {
            set_option(&listener.core, &mut listener.slot, *option).await?;
        }
        listener.bind_to(addr).await?;
        let queried = listener.query_local_addr().await;
        listener.local = bound_addr(queried, addr)?;
        Ok(listener)
    }

    /// Like [`TcpListener::bind_with`], with conditional accept: `SO_CONDITIONAL_ACCEPT` is set
    /// before the bind, and WSK asks `admission` about every connection request before it
    /// becomes a socket (see [`crate::socket::admission`]): a rejected request is refused and
    /// never accepted. `admission` decides at IRQL <= DISPATCH_LEVEL, inside WSK's
    /// `WskInspectEvent`; it must outlive the listener, hence `'static` (a driver keeps it in a
    /// `static`, as [`PerPeerLimit`](crate::socket::admission::PerPeerLimit) allows).
    ///
    /// A provider without conditional accept fails the option and so the bind.
    ///
    /// IRQL == PASSIVE_LEVEL (task context).
    pub async fn bind_conditional(
        wsk: &Wsk,
        addr: SocketAddr,
        options: &[SocketOption],
        admission: &'static dyn Admission,
    ) -> Result<TcpListener> {
        let core = SocketCore::new_admitting(Some(admission))?;
        let mut listener = TcpListener { core, slot: OpSlot::new()?, next: None, local: addr };
        create::wsk_socket(wsk, &listener.core, &mut listener.slot, addr::family(&addr), SOCK_STREAM, IPPROTO_TCP)
            .await?;
        let on = EncodedOption::of(SOL_SOCKET, SO_CONDITIONAL_ACCEPT, &1u32.to_ne_bytes());
        set_encoded(&listener.core, &mut listener.slot, on).await?;
        for option in options {
            set_option(&listener.core, &mut listener.slot, *option).await?;
        }
        listener.bind_to(addr).await?;
        let queried = listener.query_local_addr().await;
        listener.local = bound_addr(queried, addr)?;
        Ok(listener)
    }

    /// Reads an option back through `WskControlSocket` (`WskGetOption`), for example
    /// [`OptionName::V6Only`] of a listener made dual stack by
    /// [`bind_with`](Self::bind_with)`(.., &[SocketOption::V6Only(false)])`.
    ///
    /// IRQL == PASSIVE_LEVEL (task context).
    pub async fn get_option(&mut self, name: OptionName) -> Result<SocketOption> {
        get_option(&self.core, &mut self.slot, name).await
    }

    /// A listener bound to `addr` as an [`Incoming`] stream, and the address it is bound to.
    /// With a static accept callback ([`Wsk::set_static_event_callbacks`]) the stream is
    /// installed between creation and bind, so no connection arrives before it (one that did
    /// would be refused, see [`crate::client_control`]); otherwise as [`TcpListener::bind`]
    /// then [`TcpListener::into_incoming`].
    /// IRQL == PASSIVE_LEVEL (task context).
    pub async fn bind_incoming(wsk: &Wsk, addr: SocketAddr, config: EventConfig) -> Result<(Incoming, SocketAddr)> {
        if wsk.static_event_mask() & wsk_sys::WSK_EVENT_ACCEPT == 0 {
            let listener = Self::bind(wsk, addr).await?;
            let local = listener.local;
            return Ok((listener.into_incoming(config)?, local));
        }
        let core = SocketCore::new()?;
        let mut listener = TcpListener { core, slot: OpSlot::new()?, next: None, local: addr };
        create::wsk_socket(wsk, &listener.core, &mut listener.slot, addr::family(&addr), SOCK_STREAM, IPPROTO_TCP)
            .await?;
        let incoming = Incoming::enable(&listener.core, config)?;
        listener.bind_to(addr).await?;
        let queried = listener.query_local_addr().await;
        let local = bound_addr(queried, addr)?;
        Ok((incoming, local))
    }

    async fn bind_to(&mut self, addr: SocketAddr) -> Result<()> {
        create::bind(&self.core, &mut self.slot, addr, |t: &WSK_PROVIDER_LISTEN_DISPATCH| t.WskBind).await
    }

    /// The address the listener is bound to, as the provider reported it after the bind (so
    /// a bind to port 0 gives the port chosen). Where the provider cannot report it (Wine's
    /// netio answers `WskGetLocalAddress` with `STATUS_NOT_IMPLEMENTED`), the address given
    /// to `bind`.
    ///
    /// Any IRQL.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Asks the provider for the bound address (`WskGetLocalAddress`).
    ///
    /// IRQL == PASSIVE_LEVEL (task context).
    pub async fn query_local_addr(&mut self) -> Result<SocketAddr> {
        create::local_addr(&self.core, &mut self.slot).await
    }

    /// Waits for an incoming connection. Cancel-safe: dropping the future cancels the
    /// `WskAccept` IRP; a connection that was accepted regardless is closed in the background
    /// (the IRP carries the new connection's reserved close IRP with it). An accept the
    /// provider completes with `STATUS_CANCELLED` although neither the future's drop nor the
    /// listener's close cancelled it (Wine's netio does, when the thread that issued it exits)
    /// is issued again 10 ms later, so [`Error::Cancelled`] means the listener was closed.
    /// IRQL == PASSIVE_LEVEL (task context).
    pub async fn accept(&mut self) -> Result<(TcpStream, SocketAddr)> {
        self.accept_within(None).await
    }

    /// [`accept`](Self::accept) for at most `timeout`: when the deadline passes first, the
    /// `WskAccept` IRP is cancelled and, once it has completed, `Err(Error::TimedOut)` is
    /// returned; the resources reserved for the connection stay with the listener for the
    /// next accept. A connection accepted while the cancel was under way is returned (`Ok`),
    /// never dropped. A provider that cannot cancel an accept (Wine's netio) completes it only
    /// when a connection arrives or the listener is closed: the call then returns after the
    /// deadline, with that connection. The timer lives in the listener's operation slot: no
    /// allocation per call.
    ///
    /// IRQL == PASSIVE_LEVEL (task context).
    pub async fn accept_timeout(&mut self, timeout: Duration) -> Result<(TcpStream, SocketAddr)> {
        self.accept_within(Some(timeout)).await
    }

    /// [`accept`](Self::accept) with an optional deadline. An accept the provider cancelled on
    /// its own is issued again (see `provider_cancel`), within what is left of the deadline.
    async fn accept_within(&mut self, deadline: Option<Duration>) -> Result<(TcpStream, SocketAddr)> {
        let deadline = Deadline::new(deadline);
        loop {
            let result = self.accept_once(deadline.remaining()?).await;
            match provider_cancel::wait_again(&result, self.core.is_closing(), "an accept") {
                Some(backoff) => backoff.await,
                None => return result,
            }
        }
    }

    /// One `WskAccept`, with an optional deadline.
    #[expect(
        clippy::multiple_unsafe_ops_per_block,
        reason = "one provider call: reaching its arguments in the slot's argument block is part of it"
    )]
    async fn accept_once(&mut self, deadline: Option<Duration>) -> Result<(TcpStream, SocketAddr)> {
        let parts = match self.next.take() {
            Some(parts) => parts,
            None => StreamParts::new()?,
        };
        // The accepted socket may have the client's static event callbacks on at once.
        parts.core.set_static_events(self.core.static_events());
        // As an address: the future must stay `Send`.
        let accept_context = parts.core.context() as usize;
        let owner = SocketOwner { core: parts.core.into(), slot: Some(parts.recv) };
        // SAFETY: listen dispatch table; the remote address buffer lives in the slot.
        let done = unsafe {
            socket_call_with_owner(
                &self.core,
                &mut self.slot,
                None,
                Some(owner),
                deadline,
                |_, _| {},
                |socket, table, irp, args| {
                    table.WskAccept.map(|accept| {
                        accept(
                            socket,
                            0,
                            accept_context as *mut core::ffi::c_void,
                            Connection::client(),
                            core::ptr::null_mut(),
                            addr::as_sockaddr(&mut (*args).addr),
                            irp,
                        )
                    })
                },
            )
        }
        .await;
        let (result, owner) = match done {
            Ok(mut done) => (done.result(), done.socket_owner.take()),
            Err(NotIssued { error, socket_owner, .. }) => (Err(error), socket_owner),
        };
        let parts = match owner.map(|owner| (owner.core.downcast(), owner.slot)) {
            Some((Ok(core), Some(recv))) => StreamParts { core, recv },
            // Not reachable: the owner given above always comes back, a connection core with
            // its slot.
            _ => return Err(Error::NoMemory),
        };
        let accepted = match result {
            Ok(info) => info as *mut wsk_sys::WSK_SOCKET,
            Err(e) => {
                self.next = Some(parts);
                return Err(e);
            }
        };
        if accepted.is_null() {
            self.next = Some(parts);
            return Err(Error::Status(wsk_sys::STATUS_UNSUCCESSFUL));
        }
        // SAFETY: `WskAccept` accepted a connection socket with this core as its context and
        // the connection client dispatch table.
        unsafe { parts.core.set_socket(accepted) };
        let peer = self.slot.result_addr();
        let stream = TcpStream::from_parts(parts, peer.ok());
        // The address came back in a family we do not know: the socket is owned and will be
        // closed by dropping the stream.
        let peer = peer?;
        Ok((stream, peer))
    }

    /// Turns the listener into a [`Stream`](futures_core::Stream) of incoming connections
    /// delivered by `WskAcceptEvent` (see [`Incoming`]): no IRP per accept.
    ///
    /// The connections come with their receive, disconnect and send-backlog callbacks on
    /// (inherited from the listening socket, where the provider allows it), ready for
    /// [`TcpStream::into_events`], which then makes no provider call. A connection served with
    /// IRP receives instead works as well: until it becomes an event stream its receive
    /// callback refuses what WSK offers (WSK keeps the data for the IRPs), one callback per
    /// batch of data; and its receive callback can never be disabled
    /// ([`ConnectionEvents::disable_receive`](crate::events::ConnectionEvents::disable_receive)).
    /// For a service that only ever uses IRPs, [`TcpListener::accept`] avoids both.
    ///
    /// IRQL <= DISPATCH_LEVEL.
    pub fn into_incoming(self, config: EventConfig) -> core::result::Result<Incoming, Refused<TcpListener>> {
        Incoming::enable(&self.core, config).map_err(|error| Refused { error, socket: self })
    }

    /// Whether the listener is being closed ([`TcpListener::close`] or a [`Closer`]). An accept
    /// that resolves [`Error::Cancelled`] was cancelled by such a close: one the provider
    /// cancelled on its own while the listener was open is issued again by
    /// [`accept`](Self::accept) itself.
    ///
    /// Any IRQL.
    pub fn is_closing(&self) -> bool {
        self.core.is_closing()
    }

    /// A handle that closes the listener from another task, cancelling a pending accept.
    ///
    /// Any IRQL.
    pub fn closer(&self) -> Closer {
        Closer { core: self.core.clone_owner().into() }
    }

    /// Closes the listen socket: pending accepts resolve `Err(Cancelled)`; resolves when the
    /// close IRP completes. IRQL == PASSIVE_LEVEL (task context).
    pub async fn close(self) -> Result<()> {
        self.core.close().await
    }
}

/// The receiving side of a connection.
pub struct TcpReadHalf {
    core: SocketCore<Connection>,
    recv: OpSlot,
    /// The `embedded-io-async` reads' buffer (see [`crate::socket::tcp_io`]).
    pub(crate) rx: ReadBuffer,
}

/// The sending side of a connection; also carries disconnect, options and address queries.
pub struct TcpWriteHalf {
    core: SocketCore<Connection>,
    send: Option<OpSlot>,
    peer: Option<SocketAddr>,
    /// The `embedded-io-async` writes' buffer (see [`crate::socket::tcp_io`]).
    #[cfg(feature = "embedded-io")]
    pub(crate) tx: Option<IoBuf>,
    /// The shadow MDLs of sends of received items (see [`crate::shadow`]), from the first one.
    pub(crate) shadow: Option<ShadowSet>,
}

/// Received bytes not yet read: `buf.as_slice()[at..]`.
#[derive(Default)]
pub(crate) struct ReadBuffer {
    pub(crate) buf: Option<IoBuf>,
    pub(crate) at: usize,
}

impl ReadBuffer {
    /// Bytes received into the buffer and not read yet.
    pub(crate) fn unread(&self) -> usize {
        self.buf.as_ref().map_or(0, |buf| buf.len() - self.at)
    }

    /// Marks up to `amt` unread bytes read.
    #[cfg(feature = "embedded-io")]
    pub(crate) fn consume(&mut self, amt: usize) {
        self.at = (self.at + amt).min(self.buf.as_ref().map_or(0, IoBuf::len));
    }

    /// Moves as many unread bytes as fit into `dst` (replacing its contents); returns how many.
    pub(crate) fn take_into(&mut self, dst: &mut IoBuf) -> usize {
        let Some(buf) = self.buf.as_ref() else { return 0 };
        dst.clear();
        let n = dst.extend_from_slice(&buf.as_slice()[self.at..]);
        self.at += n;
        n
    }
}

/// A TCP connection.
pub struct TcpStream {
    read: TcpReadHalf,
    write: TcpWriteHalf,
}

impl TcpStream {
    fn from_parts(parts: StreamParts, peer: Option<SocketAddr>) -> Self {
        let write_core = parts.core.clone_owner();
        TcpStream {
            read: TcpReadHalf { core: parts.core, recv: parts.recv, rx: ReadBuffer::default() },
            write: TcpWriteHalf {
                core: write_core,
                send: None,
                peer,
                #[cfg(feature = "embedded-io")]
                tx: None,
                shadow: None,
            },
        }
    }

    /// A stream for a connection accepted by an accept callback.
    pub(crate) fn from_accepted(core: SocketCore<Connection>, peer: SocketAddr) -> Result<TcpStream> {
        let recv = OpSlot::new()?;
        Ok(Self::from_parts(StreamParts { core, recv }, Some(peer)))
    }

    /// Turns the receiving side into a [`Stream`](futures_core::Stream) of receive,
    /// disconnect and send-backlog events (`WskReceiveEvent`, `WskDisconnectEvent`,
    /// `WskSendBacklogEvent`; see [`ConnectionEvents`]); the write half keeps sending.
    ///
    /// IRQL <= DISPATCH_LEVEL.
    /// Where the provider refuses (no event callbacks: Wine's netio, for one), the stream
    /// comes back unchanged in [`Refused`] and works with IRPs as before.
    #[expect(
        clippy::result_large_err,
        reason = "the refusal hands the whole stream back by value; boxing it could fail for want of memory"
    )]
    pub fn into_events(
        self,
        config: EventConfig,
    ) -> core::result::Result<(ConnectionEvents, TcpWriteHalf), Refused<TcpStream>> {
        let TcpStream { read, write } = self;
        match read.into_events(config) {
            Ok(events) => Ok((events, write)),
            Err(Refused { error, socket: read }) => Err(Refused { error, socket: TcpStream { read, write } }),
        }
    }

    /// Connects to `remote` through `WskSocketConnect` (one provider call creates, binds and
    /// connects), falling back to [`TcpStream::connect_from`] with the wildcard address where
    /// the provider lacks it. IRQL == PASSIVE_LEVEL (task context).
    pub async fn connect(wsk: &Wsk, remote: SocketAddr) -> Result<TcpStream> {
        let local = addr::unspecified_like(&remote);
        let mut parts = StreamParts::new()?;
        match create::wsk_socket_connect(wsk, &parts.core, &mut parts.recv, local, remote).await {
            Ok(()) => Ok(Self::from_parts(parts, Some(remote))),
            Err(Error::Status(wsk_sys::STATUS_NOT_IMPLEMENTED)) => Self::connect_from(wsk, local, remote).await,
            Err(e) => Err(e),
        }
    }

    /// Connects to `remote` for at most `timeout` (see [`TcpSocket::connect_timeout`]),
    /// through `WskSocket`, `WskBind` to the wildcard address and `WskConnect`: the deadline
    /// bounds the connection attempt (`WskConnect`); creating and binding the socket are
    /// local calls.
    ///
    /// IRQL == PASSIVE_LEVEL (task context).
    pub async fn connect_timeout(wsk: &Wsk, remote: SocketAddr, timeout: Duration) -> Result<TcpStream> {
        let mut socket = if remote.is_ipv4() { TcpSocket::new_v4(wsk).await? } else { TcpSocket::new_v6(wsk).await? };
        socket.bind(addr::unspecified_like(&remote)).await?;
        socket.connect_timeout(remote, timeout).await
    }

    /// Connects to `remote` from `local` through `WskSocket` + `WskBind` + `WskConnect`.
    /// IRQL == PASSIVE_LEVEL (task context).
    pub async fn connect_from(wsk: &Wsk, local: SocketAddr, remote: SocketAddr) -> Result<TcpStream> {
        if local.is_ipv4() != remote.is_ipv4() {
            return Err(Error::InvalidInput("local and remote address families differ"));
        }
        let mut socket = if local.is_ipv4() { TcpSocket::new_v4(wsk).await? } else { TcpSocket::new_v6(wsk).await? };
        socket.bind(local).await?;
        socket.connect(remote).await
    }

    /// A handle that closes this connection from another task (see [`Closer`]).
    ///
    /// Any IRQL.
    pub fn closer(&self) -> Closer {
        Closer { core: self.write.core.clone_owner().into() }
    }

    /// Receives into `buf` (up to its capacity); `Ok(0)` means the peer finished sending.
    ///
    /// Dropping a pending receive cancels its IRP (`IoCancelIrp`); the buffer goes with it. If
    /// the IRP completes with data all the same (the cancel lost a race with arriving data, or
    /// the provider cannot cancel, as Wine's netio cannot), that data is kept and the next
    /// `recv` on this stream (or its read half) returns it first: no byte is lost. That next
    /// `recv` waits until the dropped receive's IRP has completed.
    ///
    /// A receive the provider completes with `STATUS_CANCELLED` although neither a drop, a
    /// deadline nor the close cancelled it (Wine's netio does to a receive pending on an idle
    /// connection, when the thread that issued it exits) received nothing: it is issued again
    /// 10 ms later, so [`Error::Cancelled`] means the stream is being closed.
    ///
    /// IRQL == PASSIVE_LEVEL (task context).
    pub async fn recv(&mut self, buf: IoBuf) -> (Result<usize>, IoBuf) {
        self.read.recv(buf).await
    }

    /// [`recv`](Self::recv) for at most `timeout`. When the deadline passes first, the
    /// receive's IRP is cancelled and, once it has completed, `Err(Error::TimedOut)` comes
    /// back with `buf`: the same buffer, the caller's again. If the cancel lost the race and
    /// the IRP completed with data, that data is returned (`Ok`): no byte is lost, and the
    /// stream stays usable after a timeout.
    ///
    /// A provider that cannot cancel a receive (Wine's netio) completes it only when data
    /// arrives or the connection ends or is closed: the call then returns after the deadline,
    /// with that data (`Ok`). The timer lives in the stream's receive slot: the call allocates
    /// nothing. Dropping the future is as dropping a [`recv`](Self::recv) future.
    ///
    /// IRQL == PASSIVE_LEVEL (task context).
    pub async fn recv_timeout(&mut self, buf: IoBuf, timeout: Duration) -> (Result<usize>, IoBuf) {
        self.read.recv_timeout(buf, timeout).await
    }

    /// The receiving half, borrowed.
    #[cfg(feature = "embedded-io")]
    pub(crate) fn read_half(&mut self) -> &mut TcpReadHalf {
        &mut self.read
    }

    /// The sending half, borrowed.
    pub(crate) fn write_half(&mut self) -> &mut TcpWriteHalf {
        &mut self.write
    }

    /// Sends `buf`'s valid bytes; returns how many were sent.
    ///
    /// IRQL == PASSIVE_LEVEL (task context).
    pub async fn send(&mut self, buf: IoBuf) -> (Result<usize>, IoBuf) {
        self.write.send(buf).await
    }

    /// Sends all of `buf`'s valid bytes.
    ///
    /// IRQL == PASSIVE_LEVEL (task context).
    pub async fn send_all(&mut self, buf: IoBuf) -> (Result<()>, IoBuf) {
        self.write.send_all(buf).await
    }

    /// Graceful disconnect of the sending direction (FIN). Receiving continues.
    ///
    /// IRQL == PASSIVE_LEVEL (task context).
    pub async fn shutdown(&mut self) -> Result<()> {
        self.write.shutdown().await
    }

    /// Abortive disconnect (RST).
    ///
    /// IRQL == PASSIVE_LEVEL (task context).
    pub async fn abort(&mut self) -> Result<()> {
        self.write.abort().await
    }

    /// The peer's address, as known from accept or connect.
    ///
    /// Any IRQL.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.write.peer
    }

    /// Asks the provider for the local address (`WskGetLocalAddress`).
    ///
    /// IRQL == PASSIVE_LEVEL (task context).
    pub async fn query_local_addr(&mut self) -> Result<SocketAddr> {
        self.write.query_addr(false).await
    }

    /// Asks the provider for the peer address (`WskGetRemoteAddress`).
    ///
    /// IRQL == PASSIVE_LEVEL (task context).
    pub async fn query_peer_addr(&mut self) -> Result<SocketAddr> {
        self.write.query_addr(true).await
    }

    /// Sets a socket option through `WskControlSocket`.
    ///
    /// IRQL == PASSIVE_LEVEL (task context).
    pub async fn set_option(&mut self, option: SocketOption) -> Result<()> {
        self.write.set_option(option).await
    }

    /// Reads an option back through `WskControlSocket` (`WskGetOption`).
    ///
    /// IRQL == PASSIVE_LEVEL (task context).
    pub async fn get_option(&mut self, name: OptionName) -> Result<SocketOption> {
        self.write.get_option(name).await
    }

    /// Splits into halves usable from different tasks. Either half may close the connection;
    /// the other half's later calls then fail with [`Error::Closed`] and its pending
    /// operations resolve `Err(Cancelled)`.
    ///
    /// Any IRQL.
    pub fn into_split(self) -> (TcpReadHalf, TcpWriteHalf) {
        (self.read, self.write)
    }

    /// Closes the connection (aborting it if it was not disconnected in both directions):
    /// pending operations resolve `Err(Cancelled)`; resolves when the close IRP completes.
    /// IRQL == PASSIVE_LEVEL (task context).
    pub async fn close(self) -> Result<()> {
        let TcpStream { read, write } = self;
        drop(read);
        write.close().await
    }
}

/// A connection socket before it is connected: create, set options, bind, then connect.
/// Its [`Closer`] can abort a pending connect from another task.
pub struct TcpSocket {
    parts: StreamParts,
}

impl TcpSocket {
    /// Creates an IPv4 connection socket (`WskSocket`).
    ///
    /// IRQL == PASSIVE_LEVEL (task context).
    pub async fn new_v4(wsk: &Wsk) -> Result<TcpSocket> {
        Self::new(wsk, AF_INET).await
    }

    /// Creates an IPv6 connection socket (`WskSocket`).
    ///
    /// IRQL == PASSIVE_LEVEL (task context).
    pub async fn new_v6(wsk: &Wsk) -> Result<TcpSocket> {
        Self::new(wsk, wsk_sys::AF_INET6).await
    }

    /// Creates a connection socket of address family `family`.
    async fn new(wsk: &Wsk, family: u16) -> Result<TcpSocket> {
        let mut parts = StreamParts::new()?;
        create::wsk_socket(wsk, &parts.core, &mut parts.recv, family, SOCK_STREAM, IPPROTO_TCP).await?;
        Ok(TcpSocket { parts })
    }

    /// Binds the local address (`WskBind`); required before [`TcpSocket::connect`].
    ///
    /// IRQL == PASSIVE_LEVEL (task context).
    pub async fn bind(&mut self, local: SocketAddr) -> Result<()> {
        let parts = &mut self.parts;
        create::bind(&parts.core, &mut parts.recv, local, |t: &WSK_PROVIDER_CONNECTION_DISPATCH| t.WskBind).await
    }

    /// Sets a socket option through `WskControlSocket`.
    ///
    /// IRQL == PASSIVE_LEVEL (task context).
    pub async fn set_option(&mut self, option: SocketOption) -> Result<()> {
        set_option(&self.parts.core, &mut self.parts.recv, option).await
    }

    /// Reads an option back through `WskControlSocket` (`WskGetOption`).
    ///
    /// IRQL == PASSIVE_LEVEL (task context).
    pub async fn get_option(&mut self, name: OptionName) -> Result<SocketOption> {
        get_option(&self.parts.core, &mut self.parts.recv, name).await
    }

    /// A handle that closes this socket from another task, cancelling a pending connect.
    ///
    /// Any IRQL.
    pub fn closer(&self) -> Closer {
        Closer { core: self.parts.core.clone_owner().into() }
    }

    /// Connects (`WskConnect`). Dropping the future cancels the connect IRP and closes the
    /// socket in the background.
    ///
    /// IRQL == PASSIVE_LEVEL (task context).
    pub async fn connect(self, remote: SocketAddr) -> Result<TcpStream> {
        self.connect_within(remote, None).await
    }

    /// [`connect`](Self::connect) for at most `timeout`: when the deadline passes first, the
    /// `WskConnect` IRP is cancelled and, once it has completed, `Err(Error::TimedOut)` is
    /// returned and the socket closed (a connection attempt that failed leaves a socket that
    /// cannot connect again). A connection established while the cancel was under way is
    /// returned (`Ok`). A provider that cannot cancel a connect (Wine's netio) completes it
    /// only when the attempt ends: the call then returns after the deadline, with its
    /// outcome. The timer lives in the socket's operation slot: no allocation per call.
    ///
    /// IRQL == PASSIVE_LEVEL (task context).
    pub async fn connect_timeout(self, remote: SocketAddr, timeout: Duration) -> Result<TcpStream> {
        self.connect_within(remote, Some(timeout)).await
    }

    /// [`connect`](Self::connect) with an optional deadline.
    #[expect(
        clippy::multiple_unsafe_ops_per_block,
        reason = "one provider call: reaching its arguments in the slot's argument block is part of it"
    )]
    async fn connect_within(mut self, remote: SocketAddr, deadline: Option<Duration>) -> Result<TcpStream> {
        let parts = &mut self.parts;
        // SAFETY: connection dispatch table; the address lives in the slot.
        let connected = unsafe {
            socket_call_within(
                &parts.core,
                &mut parts.recv,
                None,
                deadline,
                |args, _| args.addr = addr::to_storage(&remote),
                |socket, table, irp, args| {
                    table.WskConnect.map(|connect| connect(socket, addr::as_sockaddr(&mut (*args).addr), 0, irp))
                },
            )
        }
        .await;
        unit(connected)?;
        Ok(TcpStream::from_parts(self.parts, Some(remote)))
    }

    /// Closes the socket.
    ///
    /// IRQL == PASSIVE_LEVEL (task context).
    pub async fn close(self) -> Result<()> {
        self.parts.core.close().await
    }
}

/// Closes a socket from another task while its owner may have calls pending: new calls fail
/// with [`Error::Closed`], pending operations resolve `Err(Cancelled)`, and `close` resolves
/// when the close IRP completes. The socket's memory stays until every handle is dropped.
pub struct Closer {
    pub(crate) core: AnyCore,
}

impl Closer {
    /// See [`TcpStream::close`]. IRQL == PASSIVE_LEVEL (task context).
    pub async fn close(self) -> Result<()> {
        self.core.close().await
    }
}

impl TcpReadHalf {
    /// See [`TcpStream::recv`].
    ///
    /// IRQL == PASSIVE_LEVEL (task context).
    pub async fn recv(&mut self, mut buf: IoBuf) -> (Result<usize>, IoBuf) {
        // Bytes an `embedded-io-async` read received and left unread come first.
        if self.rx.unread() > 0 {
            let n = self.rx.take_into(&mut buf);
            return (Ok(n), buf);
        }
        self.recv_unbuffered(buf).await
    }

    /// See [`TcpStream::recv_timeout`].
    ///
    /// IRQL == PASSIVE_LEVEL (task context).
    pub async fn recv_timeout(&mut self, mut buf: IoBuf, timeout: Duration) -> (Result<usize>, IoBuf) {
        // Bytes an `embedded-io-async` read received and left unread come first.
        if self.rx.unread() > 0 {
            let n = self.rx.take_into(&mut buf);
            return (Ok(n), buf);
        }
        self.recv_unbuffered_within(buf, Some(timeout)).await
    }

    /// [`recv`](Self::recv) without the read-ahead buffer.
    pub(crate) async fn recv_unbuffered(&mut self, buf: IoBuf) -> (Result<usize>, IoBuf) {
        self.recv_unbuffered_within(buf, None).await
    }

    /// [`recv_unbuffered`](Self::recv_unbuffered) with an optional deadline.
    #[expect(
        clippy::multiple_unsafe_ops_per_block,
        reason = "one provider call: reaching its arguments in the slot's argument block is part of it"
    )]
    async fn recv_unbuffered_within(&mut self, mut buf: IoBuf, deadline: Option<Duration>) -> (Result<usize>, IoBuf) {
        // A receive dropped earlier may have brought data in anyway: it comes first.
        self.recv.idle().await;
        if let Some(n) = self.recv.take_kept(&mut buf) {
            return (Ok(n), buf);
        }
        let deadline = Deadline::new(deadline);
        loop {
            let within = match deadline.remaining() {
                Ok(within) => within,
                Err(e) => return (Err(e), buf),
            };
            // SAFETY: connection dispatch table; the WSK_BUF lives in the slot and the buffer
            // is owned by the slot until completion.
            let done = unsafe {
                receive_call(
                    &self.core,
                    &mut self.recv,
                    buf,
                    within,
                    |args, buf| {
                        let buf = buf.expect("receive buffer");
                        args.wsk_buf = buf.wsk_buf(0, buf.capacity());
                    },
                    |socket, table, irp, args| {
                        table.WskReceive.map(|recv| recv(socket, &raw mut (*args).wsk_buf, 0, irp))
                    },
                )
            }
            .await;
            let (result, mut back) = with_buffer(done);
            if let Some(backoff) = provider_cancel::wait_again(&result, self.core.is_closing(), "a receive") {
                // Nothing was received (see `provider_cancel`).
                buf = back;
                backoff.await;
                continue;
            }
            return match result {
                Ok(n) => {
                    back.set_len(n);
                    (Ok(n), back)
                }
                Err(e) => (Err(e), back),
            };
        }
    }

    /// See [`TcpStream::into_events`].
    ///
    /// IRQL <= DISPATCH_LEVEL.
    ///
    /// Refused with [`Error::InvalidInput`] while bytes an `embedded-io-async` read received
    /// are left unread (the event stream would skip them).
    pub fn into_events(self, config: EventConfig) -> core::result::Result<ConnectionEvents, Refused<TcpReadHalf>> {
        if self.rx.unread() > 0 {
            return Err(Refused { error: Error::InvalidInput("bytes read ahead are left unread"), socket: self });
        }
        match ConnectionEvents::enable(&self.core, config) {
            Ok(events) => {
                // The stream takes a slot of its own when it needs one: this one goes back to
                // the cache (the next accepted connection's receive slot, for one).
                crate::op::cache::give(self.recv);
                Ok(events)
            }
            Err(error) => Err(Refused { error, socket: self }),
        }
    }

    /// Closes the whole connection (see [`TcpStream::close`]).
    ///
    /// IRQL == PASSIVE_LEVEL (task context).
    pub async fn close(self) -> Result<()> {
        self.core.close().await
    }
}

/// The write half's operation slot, taken from the library's cache (or new) if the half gave
/// its own back. IRQL <= DISPATCH_LEVEL.
fn send_slot(send: &mut Option<OpSlot>) -> Result<&mut OpSlot> {
    match send {
        Some(slot) => Ok(slot),
        None => Ok(send.insert(crate::op::cache::take()?)),
    }
}

impl TcpWriteHalf {
    /// The core and the send/control slot, created on first use.
    /// [`TcpWriteHalf::parts`] and the shadow MDLs, taken out (the caller puts them back).
    pub(crate) fn parts_with_shadows(
        &mut self,
    ) -> Result<(&SocketCore<Connection>, &mut OpSlot, &mut Option<ShadowSet>)> {
        Ok((&self.core, send_slot(&mut self.send)?, &mut self.shadow))
    }

    pub(crate) fn parts(&mut self) -> Result<(&SocketCore<Connection>, &mut OpSlot)> {
        Ok((&self.core, send_slot(&mut self.send)?))
    }

    /// Gives the half's operation slot (its IRP and argument block, about 900 bytes) back to
    /// the library's cache of idle slots, for a connection about to be idle: the next send or
    /// other call takes one again, from the cache (no allocation in steady state) or new. The
    /// shadow MDLs of sends of received items (about 1.5 KiB, see [`TcpWriteHalf::send_received`]) go back
    /// to their cache the same way. A
    /// slot still busy (an abandoned operation's IRP in flight) is dropped instead, and freed
    /// when that IRP completes. IRQL <= DISPATCH_LEVEL.
    pub fn release_slot(&mut self) {
        if let Some(slot) = self.send.take() {
            crate::op::cache::give(slot);
        }
        if let Some(set) = self.shadow.take() {
            crate::shadow::give(set);
        }
    }

    /// See [`TcpStream::send`].
    ///
    /// IRQL == PASSIVE_LEVEL (task context).
    pub async fn send(&mut self, buf: IoBuf) -> (Result<usize>, IoBuf) {
        let len = buf.len();
        self.send_from(buf, 0, len).await
    }

    /// Sends `len` bytes of `buf` starting at `offset`.
    #[expect(
        clippy::multiple_unsafe_ops_per_block,
        reason = "one provider call: reaching its arguments in the slot's argument block is part of it"
    )]
    async fn send_from(&mut self, buf: IoBuf, offset: usize, len: usize) -> (Result<usize>, IoBuf) {
        let (core, slot) = match self.parts() {
            Ok(parts) => parts,
            Err(e) => return (Err(e), buf),
        };
        // SAFETY: connection dispatch table; WSK_BUF in the slot, buffer owned by the slot.
        let done = unsafe {
            socket_call(
                core,
                slot,
                Some(buf),
                |args, buf| args.wsk_buf = buf.expect("send buffer").wsk_buf(offset, len),
                |socket, table, irp, args| table.WskSend.map(|send| send(socket, &raw mut (*args).wsk_buf, 0, irp)),
            )
        }
        .await;
        with_buffer(done)
    }

    /// See [`TcpStream::send_all`].
    ///
    /// IRQL == PASSIVE_LEVEL (task context).
    pub async fn send_all(&mut self, buf: IoBuf) -> (Result<()>, IoBuf) {
        let total = buf.len();
        let mut sent = 0;
        let mut buf = buf;
        while sent < total {
            let (result, back) = self.send_from(buf, sent, total - sent).await;
            buf = back;
            match result {
                Ok(0) => return (Err(Error::Status(wsk_sys::STATUS_CONNECTION_ABORTED)), buf),
                Ok(n) => sent += n,
                Err(e) => return (Err(e), buf),
            }
        }
        (Ok(()), buf)
    }

    #[expect(
        clippy::multiple_unsafe_ops_per_block,
        reason = "one provider call: reaching its arguments in the slot's argument block is part of it"
    )]
    async fn disconnect(&mut self, flags: u32) -> Result<()> {
        let (core, slot) = self.parts()?;
        // SAFETY: connection dispatch table; no buffer is sent with the disconnect.
        let done = unsafe {
            socket_call(
                core,
                slot,
                None,
                |_, _| {},
                |socket, table, irp, _| {
                    table.WskDisconnect.map(|disconnect| disconnect(socket, core::ptr::null_mut(), flags, irp))
                },
            )
        }
        .await;
        unit(done)
    }

    /// See [`TcpStream::shutdown`].
    ///
    /// IRQL == PASSIVE_LEVEL (task context).
    pub async fn shutdown(&mut self) -> Result<()> {
        self.disconnect(0).await
    }

    /// See [`TcpStream::abort`].
    ///
    /// IRQL == PASSIVE_LEVEL (task context).
    pub async fn abort(&mut self) -> Result<()> {
        self.disconnect(WSK_FLAG_ABORTIVE).await
    }

    #[expect(
        clippy::multiple_unsafe_ops_per_block,
        reason = "one provider call: reaching its arguments in the slot's argument block is part of it"
    )]
    async fn query_addr(&mut self, remote: bool) -> Result<SocketAddr> {
        let (core, slot) = self.parts()?;
        // SAFETY: connection dispatch table; the address buffer lives in the slot.
        let done = unsafe {
            socket_call(
                core,
                slot,
                None,
                |_, _| {},
                |socket, table, irp, args| {
                    let out = addr::as_sockaddr(&mut (*args).addr);
                    if remote {
                        table.WskGetRemoteAddress.map(|get| get(socket, out, irp))
                    } else {
                        table.WskGetLocalAddress.map(|get| get(socket, out, irp))
                    }
                },
            )
        }
        .await;
        unit(done)?;
        self.parts()?.1.result_addr()
    }

    /// See [`TcpStream::set_option`].
    ///
    /// IRQL == PASSIVE_LEVEL (task context).
    pub async fn set_option(&mut self, option: SocketOption) -> Result<()> {
        let (core, slot) = self.parts()?;
        set_option(core, slot, option).await
    }

    /// See [`TcpStream::get_option`].
    ///
    /// IRQL == PASSIVE_LEVEL (task context).
    pub async fn get_option(&mut self, name: OptionName) -> Result<SocketOption> {
        let (core, slot) = self.parts()?;
        get_option(core, slot, name).await
    }

    /// The peer's address, as known from accept or connect.
    ///
    /// Any IRQL.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer
    }

    /// Closes the whole connection (see [`TcpStream::close`]).
    ///
    /// IRQL == PASSIVE_LEVEL (task context).
    pub async fn close(self) -> Result<()> {
        self.core.close().await
    }
}

#[cfg(test)]
mod tests {
    use core::net::{Ipv4Addr, SocketAddr};

    use super::bound_addr;
    use crate::error::Error;

    #[test]
    fn the_bound_address_is_the_providers_or_the_requested_one_where_it_has_none() {
        let requested = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let bound = SocketAddr::from((Ipv4Addr::LOCALHOST, 40_000));
        assert_eq!(bound_addr(Ok(bound), requested), Ok(bound));
        let not_implemented = Error::Status(wsk_sys::STATUS_NOT_IMPLEMENTED);
        assert_eq!(bound_addr(Err(not_implemented), requested), Ok(requested));
        assert_eq!(bound_addr(Err(Error::Closed), requested), Err(Error::Closed));
    }
}
