//! UDP: `UdpSocket` over a WSK datagram socket.

mod batch;

use core::net::SocketAddr;
use core::time::Duration;

use wsk_sys::{IPPROTO_UDP, MSG_CTRUNC, MSG_TRUNC, SOCK_DGRAM, WSK_PROVIDER_DATAGRAM_DISPATCH};

use crate::addr;
use crate::buf::IoBuf;
use crate::error::Result;
use crate::op::{Busy, OpArgs, OpSlot};
use crate::registration::Wsk;
use crate::socket::call::{socket_call, socket_call_within, with_buffer};
use crate::socket::control::{CONTROL_CAPACITY, ControlBuf, ControlMessages, RecvMeta};
use crate::socket::create;
use crate::socket::events::{Datagrams, EventConfig};
use crate::socket::kind::Datagram;
use crate::socket::options::{OptionName, SocketOption, get_option, set_option, set_remote_address};
use crate::socket::provider_cancel::{self, Deadline};
use crate::socket::shared::SocketCore;

/// A bound UDP socket. Sending and receiving use separate IRPs, and
/// [`into_split`](UdpSocket::into_split) gives each to a half of its own.
pub struct UdpSocket {
    recv: UdpRecvHalf,
    send: UdpSendHalf,
}

/// The receiving side of a [`UdpSocket`] (see [`UdpSocket::into_split`]).
pub struct UdpRecvHalf {
    core: SocketCore<Datagram>,
    recv: OpSlot,
    local: SocketAddr,
}

/// The sending side of a [`UdpSocket`] (see [`UdpSocket::into_split`]); also carries options
/// and the address query.
pub struct UdpSendHalf {
    core: SocketCore<Datagram>,
    send: OpSlot,
    local: SocketAddr,
}

/// [`UdpRecvHalf::reunite`] was given halves of two different sockets: here they are back.
pub struct UdpReuniteError(pub UdpRecvHalf, pub UdpSendHalf);

impl core::fmt::Debug for UdpReuniteError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_tuple("UdpReuniteError").finish_non_exhaustive()
    }
}

impl core::fmt::Display for UdpReuniteError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("the halves belong to different sockets")
    }
}

impl core::error::Error for UdpReuniteError {}

impl UdpSocket {
    /// Creates a datagram socket bound to `addr`. IRQL == PASSIVE_LEVEL (task context).
    pub async fn bind(wsk: &Wsk, addr: SocketAddr) -> Result<UdpSocket> {
        let mut socket = UdpSendHalf { core: SocketCore::new()?, send: OpSlot::new()?, local: addr };
        let recv = OpSlot::new()?;
        create::wsk_socket(wsk, &socket.core, &mut socket.send, addr::family(&addr), SOCK_DGRAM, IPPROTO_UDP).await?;
        create::bind(&socket.core, &mut socket.send, addr, |t: &WSK_PROVIDER_DATAGRAM_DISPATCH| t.WskBind).await?;
        let queried = socket.query_local_addr().await;
        socket.local = crate::socket::tcp::bound_addr(queried, addr)?;
        let recv = UdpRecvHalf { core: socket.core.clone_owner(), recv, local: socket.local };
        Ok(UdpSocket { recv, send: socket })
    }

    /// A datagram socket bound to `addr` with its [`Datagrams`] stream. With a static
    /// receive-from callback ([`Wsk::set_static_event_callbacks`]) the stream is installed
    /// between creation and bind, so no datagram arrives before it (one that did would be
    /// refused and dropped, see [`crate::client_control`]); otherwise as
    /// [`UdpSocket::bind`] then [`UdpSocket::datagrams`].
    /// IRQL == PASSIVE_LEVEL (task context).
    pub async fn bind_with_datagrams(
        wsk: &Wsk,
        addr: SocketAddr,
        config: EventConfig,
    ) -> Result<(UdpSocket, Datagrams)> {
        if wsk.static_event_mask() & wsk_sys::WSK_EVENT_RECEIVE_FROM == 0 {
            let socket = Self::bind(wsk, addr).await?;
            let datagrams = socket.datagrams(config)?;
            return Ok((socket, datagrams));
        }
        let mut socket = UdpSendHalf { core: SocketCore::new()?, send: OpSlot::new()?, local: addr };
        let recv = OpSlot::new()?;
        create::wsk_socket(wsk, &socket.core, &mut socket.send, addr::family(&addr), SOCK_DGRAM, IPPROTO_UDP).await?;
        let datagrams = Datagrams::enable(socket.core.clone_owner(), config)?;
        create::bind(&socket.core, &mut socket.send, addr, |t: &WSK_PROVIDER_DATAGRAM_DISPATCH| t.WskBind).await?;
        let queried = socket.query_local_addr().await;
        socket.local = crate::socket::tcp::bound_addr(queried, addr)?;
        let recv = UdpRecvHalf { core: socket.core.clone_owner(), recv, local: socket.local };
        Ok((UdpSocket { recv, send: socket }, datagrams))
    }

    /// The address the socket is bound to, as the provider reported it after the bind (so a
    /// bind to port 0 gives the port chosen). Where the provider cannot report it (Wine's
    /// netio answers `WskGetLocalAddress` with `STATUS_NOT_IMPLEMENTED`), the address given
    /// to `bind`.
    ///
    /// Any IRQL.
    pub fn local_addr(&self) -> SocketAddr {
        self.send.local
    }

    /// Asks the provider for the bound address (`WskGetLocalAddress`);
    /// [`local_addr`](Self::local_addr) has it without a call.
    ///
    /// IRQL == PASSIVE_LEVEL (task context).
    pub async fn query_local_addr(&mut self) -> Result<SocketAddr> {
        self.send.query_local_addr().await
    }

    /// Sends one datagram with `buf`'s valid bytes to `to`.
    ///
    /// IRQL == PASSIVE_LEVEL (task context).
    pub async fn send_to(&mut self, buf: IoBuf, to: SocketAddr) -> (Result<usize>, IoBuf) {
        self.send.send_to(buf, to).await
    }

    /// Receives one datagram into `buf` (up to its capacity); returns its length and sender.
    /// A receive the provider cancelled on its own (neither a drop, a deadline nor the close
    /// cancelled it) is issued again 10 ms later, as [`TcpStream::recv`](crate::TcpStream::recv)
    /// says.
    ///
    /// IRQL == PASSIVE_LEVEL (task context).
    pub async fn recv_from(&mut self, buf: IoBuf) -> (Result<(usize, SocketAddr)>, IoBuf) {
        self.recv.recv_from(buf).await
    }

    /// Receives one datagram into `buf` (up to its capacity), as [`recv_from`](Self::recv_from)
    /// does, and reports what else came with it: whether it was truncated to fit the buffer
    /// (`MSG_TRUNC`; the buffer then holds its first bytes and the rest is lost) and its control
    /// messages (for example the packet information `IP_PKTINFO` asks for), read from
    /// `WskReceiveFrom`'s control flags and control buffer, which live in the operation slot
    /// (up to [`CONTROL_CAPACITY`] bytes; more is reported as
    /// [`ControlMessages::is_truncated`]).
    ///
    /// IRQL == PASSIVE_LEVEL (task context).
    pub async fn recv_msg(&mut self, buf: IoBuf) -> (Result<RecvMeta>, IoBuf) {
        self.recv.recv_msg(buf).await
    }

    /// [`recv_from`](Self::recv_from) for at most `timeout`. When the deadline passes first,
    /// the receive's IRP is cancelled and, once it has completed, `Err(Error::TimedOut)`
    /// comes back with `buf`: the same buffer, the caller's again. A datagram that arrived
    /// while the cancel was under way is returned (`Ok`), never dropped.
    ///
    /// A provider that cannot cancel a receive (Wine's netio) completes it only when a
    /// datagram arrives or the socket is closed: the call then returns after the deadline,
    /// with that datagram (`Ok`). The timer lives in the socket's receive slot: the call
    /// allocates nothing.
    ///
    /// IRQL == PASSIVE_LEVEL (task context).
    pub async fn recv_from_timeout(&mut self, buf: IoBuf, timeout: Duration) -> (Result<(usize, SocketAddr)>, IoBuf) {
        self.recv.recv_from_timeout(buf, timeout).await
    }

    /// Sets a socket option through `WskControlSocket`.
    ///
    /// IRQL == PASSIVE_LEVEL (task context).
    pub async fn set_option(&mut self, option: SocketOption) -> Result<()> {
        self.send.set_option(option).await
    }

    /// A [`Stream`](futures_core::Stream) of received datagrams delivered by
    /// `WskReceiveFromEvent` (see [`Datagrams`]); the socket keeps sending. Once per socket.
    ///
    /// IRQL <= DISPATCH_LEVEL.
    pub fn datagrams(&self, config: EventConfig) -> Result<Datagrams> {
        self.recv.datagrams(config)
    }

    /// A handle that closes the socket from another task.
    ///
    /// Any IRQL.
    pub fn closer(&self) -> crate::Closer {
        crate::Closer { core: self.send.core.clone_owner().into() }
    }

    /// Splits into halves usable from different tasks: a receive and a send may then run
    /// concurrently. As with [`TcpStream::into_split`](crate::TcpStream::into_split), either
    /// half may close the socket; the other half's pending operations then resolve
    /// `Err(Cancelled)` and its later calls fail with [`Error::Closed`](crate::Error::Closed).
    /// One half keeps the socket open; dropping both closes it in the background.
    /// [`UdpRecvHalf::reunite`] puts them back together.
    ///
    /// Any IRQL.
    pub fn into_split(self) -> (UdpRecvHalf, UdpSendHalf) {
        (self.recv, self.send)
    }

    /// Closes the socket; pending operations resolve `Err(Cancelled)`.
    /// IRQL == PASSIVE_LEVEL (task context).
    pub async fn close(self) -> Result<()> {
        let UdpSocket { recv, send } = self;
        drop(recv);
        send.close().await
    }
}

impl UdpRecvHalf {
    /// The socket's bound address (see [`UdpSocket::local_addr`]).
    ///
    /// Any IRQL.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Puts the halves of one socket back together; halves of different sockets are handed
    /// back in the error.
    ///
    /// Any IRQL.
    pub fn reunite(self, send: UdpSendHalf) -> core::result::Result<UdpSocket, UdpReuniteError> {
        if self.core.context() == send.core.context() {
            Ok(UdpSocket { recv: self, send })
        } else {
            Err(UdpReuniteError(self, send))
        }
    }

    /// Closes the whole socket (see [`UdpSocket::close`]).
    ///
    /// IRQL == PASSIVE_LEVEL (task context).
    pub async fn close(self) -> Result<()> {
        let UdpRecvHalf { core, recv, .. } = self;
        drop(recv);
        core.close().await
    }
}

impl UdpSendHalf {
    /// The socket's bound address (see [`UdpSocket::local_addr`]).
    ///
    /// Any IRQL.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// See [`UdpRecvHalf::reunite`].
    ///
    /// Any IRQL.
    pub fn reunite(self, recv: UdpRecvHalf) -> core::result::Result<UdpSocket, UdpReuniteError> {
        recv.reunite(self)
    }

    /// Closes the whole socket (see [`UdpSocket::close`]).
    ///
    /// IRQL == PASSIVE_LEVEL (task context).
    pub async fn close(self) -> Result<()> {
        let UdpSendHalf { core, send, .. } = self;
        drop(send);
        core.close().await
    }
}

impl UdpSendHalf {
    /// See [`UdpSocket::query_local_addr`].
    ///
    /// IRQL == PASSIVE_LEVEL (task context).
    pub async fn query_local_addr(&mut self) -> Result<SocketAddr> {
        create::local_addr(&self.core, &mut self.send).await
    }

    /// See [`UdpSocket::send_to`].
    ///
    /// IRQL == PASSIVE_LEVEL (task context).
    pub async fn send_to(&mut self, buf: IoBuf, to: SocketAddr) -> (Result<usize>, IoBuf) {
        self.send_datagram(buf, Some(to)).await
    }

    /// `WskSendTo` of `buf`'s valid bytes to `to`, or without an address (to the socket's
    /// fixed remote address, [`UdpSocket::connect`]).
    #[expect(
        clippy::multiple_unsafe_ops_per_block,
        reason = "one provider call: reaching its arguments in the slot's argument block is part of it"
    )]
    async fn send_datagram(&mut self, buf: IoBuf, to: Option<SocketAddr>) -> (Result<usize>, IoBuf) {
        // SAFETY: datagram dispatch table; WSK_BUF and address in the slot, buffer owned by
        // the slot until completion.
        let done = unsafe {
            socket_call(
                &self.core,
                &mut self.send,
                Some(buf),
                |args, buf| {
                    let buf = buf.expect("send buffer");
                    args.wsk_buf = buf.wsk_buf(0, buf.len());
                    if let Some(to) = to {
                        args.addr = addr::to_storage(&to);
                    }
                },
                |s, table, irp, args| {
                    let remote =
                        if to.is_some() { addr::as_sockaddr(&mut (*args).addr) } else { core::ptr::null_mut() };
                    table
                        .WskSendTo
                        .map(|send_to| send_to(s, &raw mut (*args).wsk_buf, 0, remote, 0, core::ptr::null_mut(), irp))
                },
            )
        }
        .await;
        with_buffer(done)
    }
}

impl UdpRecvHalf {
    /// See [`UdpSocket::recv_from`].
    ///
    /// IRQL == PASSIVE_LEVEL (task context).
    pub async fn recv_from(&mut self, buf: IoBuf) -> (Result<(usize, SocketAddr)>, IoBuf) {
        let (result, buf) = self.recv_msg(buf).await;
        (result.map(|meta| (meta.len, meta.from)), buf)
    }

    /// See [`UdpSocket::recv_msg`].
    ///
    /// IRQL == PASSIVE_LEVEL (task context).
    pub async fn recv_msg(&mut self, buf: IoBuf) -> (Result<RecvMeta>, IoBuf) {
        self.recv_msg_within(buf, None).await
    }

    /// See [`UdpSocket::recv_from_timeout`].
    ///
    /// IRQL == PASSIVE_LEVEL (task context).
    pub async fn recv_from_timeout(&mut self, buf: IoBuf, timeout: Duration) -> (Result<(usize, SocketAddr)>, IoBuf) {
        let (result, buf) = self.recv_msg_within(buf, Some(timeout)).await;
        (result.map(|meta| (meta.len, meta.from)), buf)
    }

    /// The one receive-from: [`recv_msg`](Self::recv_msg), with a deadline when `timeout` is
    /// given (see [`UdpSocket::recv_from_timeout`]).
    #[expect(
        clippy::multiple_unsafe_ops_per_block,
        reason = "one provider call: reaching its arguments in the slot's argument block is part of it"
    )]
    async fn recv_msg_within(&mut self, mut buf: IoBuf, timeout: Option<Duration>) -> (Result<RecvMeta>, IoBuf) {
        let deadline = Deadline::new(timeout);
        loop {
            let within = match deadline.remaining() {
                Ok(within) => within,
                Err(e) => return (Err(e), buf),
            };
            // SAFETY: datagram dispatch table; WSK_BUF, address and control fields in the
            // slot, buffer owned by the slot until completion.
            let done = unsafe {
                socket_call_within(
                    &self.core,
                    &mut self.recv,
                    Some(buf),
                    within,
                    |args, buf| prepare_receive_from(args, buf.expect("receive buffer")),
                    |socket, table, irp, args| receive_from_call(socket, table, irp, args),
                )
            }
            .await;
            let (result, mut back) = with_buffer(done);
            if let Some(backoff) = provider_cancel::wait_again(&result, self.core.is_closing(), "a receive-from") {
                // Nothing was received (see `provider_cancel`).
                buf = back;
                backoff.await;
                continue;
            }
            let result = match result {
                Ok(n) => {
                    back.set_len(n);
                    received(&self.recv, n)
                }
                Err(e) => Err(e),
            };
            return (result, back);
        }
    }

    /// See [`UdpSocket::datagrams`].
    ///
    /// IRQL <= DISPATCH_LEVEL.
    pub fn datagrams(&self, config: EventConfig) -> Result<Datagrams> {
        Datagrams::enable(self.core.clone_owner(), config)
    }
}

impl UdpSendHalf {
    /// See [`UdpSocket::set_option`].
    ///
    /// IRQL == PASSIVE_LEVEL (task context).
    pub async fn set_option(&mut self, option: SocketOption) -> Result<()> {
        set_option(&self.core, &mut self.send, option).await
    }
}

/// Fills the argument block for [`receive_from_call`] into `buf` (up to its capacity): the
/// control buffer offered whole, cleared, and the flags cleared.
pub(crate) fn prepare_receive_from(args: &mut OpArgs, buf: &IoBuf) {
    args.wsk_buf = buf.wsk_buf(0, buf.capacity());
    args.control = ControlBuf::new();
    args.control_length = CONTROL_CAPACITY as u32;
    args.control_flags = 0;
}

/// What the receive-from collected on `slot` brought besides its `len` payload bytes: the
/// sender, the truncation flag and the control messages, read from the argument block.
pub(crate) fn received(slot: &OpSlot, len: usize) -> Result<RecvMeta> {
    let args = slot.args().ok_or(Busy.error())?;
    let from = addr::from_storage(&args.addr)?;
    let (truncated, control) = truncation_and_control(args);
    Ok(RecvMeta { len, from, truncated, control })
}

/// Whether the datagram a receive-from brought was truncated (`MSG_TRUNC`), and its control
/// messages, from the argument block the provider wrote.
pub(crate) fn truncation_and_control(args: &OpArgs) -> (bool, ControlMessages) {
    let flags = args.control_flags;
    let control = ControlMessages::new(args.control, args.control_length as usize, flags & MSG_CTRUNC != 0);
    (flags & MSG_TRUNC != 0, control)
}

/// `WskReceiveFrom` into the slot's WSK_BUF, the sender written to the slot's address, the
/// control flags and control messages to the slot's control fields (see
/// [`prepare_receive_from`]): the `issue` step of a receive-from call.
///
/// # Safety
/// `socket` is a datagram socket whose table is `table`, `irp` an armed IRP, `args` the
/// slot's argument block (valid until the IRP completes).
#[expect(
    clippy::multiple_unsafe_ops_per_block,
    reason = "one provider call: reaching its arguments in the slot's argument block is part of it"
)]
pub(crate) unsafe fn receive_from_call(
    socket: *mut wsk_sys::WSK_SOCKET,
    table: &WSK_PROVIDER_DATAGRAM_DISPATCH,
    irp: *mut wsk_sys::IRP,
    args: *mut OpArgs,
) -> Option<wsk_sys::NTSTATUS> {
    table.WskReceiveFrom.map(|receive_from| {
        // SAFETY: guaranteed by the caller.
        unsafe {
            receive_from(
                socket,
                &raw mut (*args).wsk_buf,
                0,
                addr::as_sockaddr(&mut (*args).addr),
                &raw mut (*args).control_length,
                (&raw mut (*args).control).cast::<wsk_sys::CMSGHDR>(),
                &raw mut (*args).control_flags,
                irp,
            )
        }
    })
}

/// Option read-back and connected UDP: a fixed remote address (`SIO_WSK_SET_REMOTE_ADDRESS`),
/// then [`send`](UdpSocket::send) and [`recv`](UdpSocket::recv) without an address.
impl UdpSocket {
    /// Reads an option back through `WskControlSocket` (`WskGetOption`).
    ///
    /// IRQL == PASSIVE_LEVEL (task context).
    pub async fn get_option(&mut self, name: OptionName) -> Result<SocketOption> {
        self.send.get_option(name).await
    }

    /// Fixes the remote address (`WskIoctl` with `SIO_WSK_SET_REMOTE_ADDRESS`; the socket is
    /// bound, as the provider requires): [`send`](Self::send) goes to `peer`, and only
    /// datagrams from `peer` are received. [`send_to`](Self::send_to) still sends anywhere,
    /// but replies from elsewhere are not accepted.
    ///
    /// IRQL == PASSIVE_LEVEL (task context).
    pub async fn connect(&mut self, peer: SocketAddr) -> Result<()> {
        self.send.connect(peer).await
    }

    /// Clears the remote address set by [`connect`](Self::connect): datagrams from any
    /// sender are received again.
    ///
    /// IRQL == PASSIVE_LEVEL (task context).
    pub async fn disconnect(&mut self) -> Result<()> {
        self.send.disconnect().await
    }

    /// Sends one datagram with `buf`'s valid bytes to the address set by
    /// [`connect`](Self::connect) (`WskSendTo` without a remote address).
    ///
    /// IRQL == PASSIVE_LEVEL (task context).
    pub async fn send(&mut self, buf: IoBuf) -> (Result<usize>, IoBuf) {
        self.send.send(buf).await
    }

    /// Receives one datagram into `buf` (up to its capacity) and returns its length: on a
    /// socket with a remote address set by [`connect`](Self::connect), a datagram from it.
    ///
    /// IRQL == PASSIVE_LEVEL (task context).
    pub async fn recv(&mut self, buf: IoBuf) -> (Result<usize>, IoBuf) {
        self.recv.recv(buf).await
    }
}

impl UdpSendHalf {
    /// See [`UdpSocket::get_option`].
    ///
    /// IRQL == PASSIVE_LEVEL (task context).
    pub async fn get_option(&mut self, name: OptionName) -> Result<SocketOption> {
        get_option(&self.core, &mut self.send, name).await
    }

    /// See [`UdpSocket::connect`].
    ///
    /// IRQL == PASSIVE_LEVEL (task context).
    pub async fn connect(&mut self, peer: SocketAddr) -> Result<()> {
        set_remote_address(&self.core, &mut self.send, Some(peer)).await
    }

    /// See [`UdpSocket::disconnect`].
    ///
    /// IRQL == PASSIVE_LEVEL (task context).
    pub async fn disconnect(&mut self) -> Result<()> {
        set_remote_address(&self.core, &mut self.send, None).await
    }

    /// See [`UdpSocket::send`].
    ///
    /// IRQL == PASSIVE_LEVEL (task context).
    pub async fn send(&mut self, buf: IoBuf) -> (Result<usize>, IoBuf) {
        self.send_datagram(buf, None).await
    }
}

impl UdpRecvHalf {
    /// See [`UdpSocket::recv`].
    ///
    /// IRQL == PASSIVE_LEVEL (task context).
    pub async fn recv(&mut self, buf: IoBuf) -> (Result<usize>, IoBuf) {
        let (result, buf) = self.recv_from(buf).await;
        (result.map(|(n, _)| n), buf)
    }
}
