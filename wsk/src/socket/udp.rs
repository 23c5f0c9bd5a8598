//! UDP: `UdpSocket` over a WSK datagram socket.

use core::net::SocketAddr;
use core::time::Duration;

use wsk_sys::{IPPROTO_UDP, SOCK_DGRAM, WSK_PROVIDER_DATAGRAM_DISPATCH};

use crate::addr;
use crate::buf::IoBuf;
use crate::error::Result;
use crate::op::OpSlot;
use crate::registration::Wsk;
use crate::socket::call::{socket_call, socket_call_within, unit, with_buffer};
use crate::socket::create;
use crate::socket::events::{Datagrams, EventConfig};
use crate::socket::kind::Datagram;
use crate::socket::options::{SocketOption, set_option};
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

    /// The address the socket is bound to, as the provider reported it after the bind (so a
    /// bind to port 0 gives the port chosen). Where the provider cannot report it (Wine's
    /// netio answers `WskGetLocalAddress` with `STATUS_NOT_IMPLEMENTED`), the address given
    /// to `bind`.
    ///
    /// Any IRQL.
    pub fn local_addr(&self) -> SocketAddr {
        self.send.local
    }

    /// Asks the provider for the bound address (`WskGetLocalAddress`); [`local_addr`]
    /// (Self::local_addr) has it without a call.
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
    ///
    /// IRQL == PASSIVE_LEVEL (task context).
    pub async fn recv_from(&mut self, buf: IoBuf) -> (Result<(usize, SocketAddr)>, IoBuf) {
        self.recv.recv_from(buf).await
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
    #[expect(
        clippy::multiple_unsafe_ops_per_block,
        reason = "one provider call: reaching its arguments in the slot's argument block is part of it"
    )]
    pub async fn query_local_addr(&mut self) -> Result<SocketAddr> {
        // SAFETY: datagram dispatch table; the address buffer lives in the slot.
        let done = unsafe {
            socket_call(
                &self.core,
                &mut self.send,
                None,
                |_, _| {},
                |s, table, irp, args| {
                    table.WskGetLocalAddress.map(|get| get(s, addr::as_sockaddr(&mut (*args).addr), irp))
                },
            )
        }
        .await;
        unit(done)?;
        self.send.result_addr()
    }

    /// See [`UdpSocket::send_to`].
    ///
    /// IRQL == PASSIVE_LEVEL (task context).
    #[expect(
        clippy::multiple_unsafe_ops_per_block,
        reason = "one provider call: reaching its arguments in the slot's argument block is part of it"
    )]
    pub async fn send_to(&mut self, buf: IoBuf, to: SocketAddr) -> (Result<usize>, IoBuf) {
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
                    args.addr = addr::to_storage(&to);
                },
                |s, table, irp, args| {
                    table.WskSendTo.map(|send_to| {
                        send_to(
                            s,
                            &raw mut (*args).wsk_buf,
                            0,
                            addr::as_sockaddr(&mut (*args).addr),
                            0,
                            core::ptr::null_mut(),
                            irp,
                        )
                    })
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
    #[expect(
        clippy::multiple_unsafe_ops_per_block,
        reason = "one provider call: reaching its arguments in the slot's argument block is part of it"
    )]
    pub async fn recv_from(&mut self, buf: IoBuf) -> (Result<(usize, SocketAddr)>, IoBuf) {
        // SAFETY: datagram dispatch table; WSK_BUF, address and control fields in the slot.
        let done = unsafe {
            socket_call(
                &self.core,
                &mut self.recv,
                Some(buf),
                |args, buf| {
                    let buf = buf.expect("receive buffer");
                    args.wsk_buf = buf.wsk_buf(0, buf.capacity());
                },
                |socket, table, irp, args| receive_from_call(socket, table, irp, args),
            )
        }
        .await;
        let (result, mut buf) = with_buffer(done);
        let result = match result {
            Ok(n) => {
                buf.set_len(n);
                self.recv.result_addr().map(|from| (n, from))
            }
            Err(e) => Err(e),
        };
        (result, buf)
    }

    /// See [`UdpSocket::recv_from_timeout`].
    ///
    /// IRQL == PASSIVE_LEVEL (task context).
    #[expect(
        clippy::multiple_unsafe_ops_per_block,
        reason = "one provider call: reaching its arguments in the slot's argument block is part of it"
    )]
    pub async fn recv_from_timeout(&mut self, buf: IoBuf, timeout: Duration) -> (Result<(usize, SocketAddr)>, IoBuf) {
        // SAFETY: datagram dispatch table; WSK_BUF and address in the slot, buffer owned by the
        // slot until completion.
        let done = unsafe {
            socket_call_within(
                &self.core,
                &mut self.recv,
                Some(buf),
                Some(timeout),
                |args, buf| {
                    let buf = buf.expect("receive buffer");
                    args.wsk_buf = buf.wsk_buf(0, buf.capacity());
                },
                |socket, table, irp, args| receive_from_call(socket, table, irp, args),
            )
        }
        .await;
        let (result, mut buf) = with_buffer(done);
        let result = result.and_then(|n| {
            buf.set_len(n);
            self.recv.result_addr().map(|from| (n, from))
        });
        (result, buf)
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

/// `WskReceiveFrom` into the slot's WSK_BUF, the sender written to the slot's address (no
/// control data): the `issue` step of a receive-from call.
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
    args: *mut crate::op::OpArgs,
) -> Option<wsk_sys::NTSTATUS> {
    table.WskReceiveFrom.map(|receive_from| {
        // SAFETY: guaranteed by the caller.
        unsafe {
            receive_from(
                socket,
                &raw mut (*args).wsk_buf,
                0,
                addr::as_sockaddr(&mut (*args).addr),
                core::ptr::null_mut(),
                core::ptr::null_mut(),
                core::ptr::null_mut(),
                irp,
            )
        }
    })
}
