//! UDP: `UdpSocket` over a WSK datagram socket.

// Each unsafe block here is one call into a provider routine whose pointer arguments lead
// into the operation slot (dereferencing `args` to reach them is part of that one call);
// splitting the call across several blocks would not make any single step clearer.
#![allow(clippy::multiple_unsafe_ops_per_block)]

use core::net::SocketAddr;

use wsk_sys::{IPPROTO_UDP, SOCK_DGRAM, WSK_PROVIDER_DATAGRAM_DISPATCH};

use crate::addr;
use crate::buf::IoBuf;
use crate::error::Result;
use crate::op::OpSlot;
use crate::registration::Wsk;
use crate::socket::call::{socket_call, unit, with_buffer};
use crate::socket::create;
use crate::socket::events::{Datagrams, EventConfig};
use crate::socket::kind::Datagram;
use crate::socket::options::{SocketOption, set_option};
use crate::socket::shared::SocketCore;

/// A bound UDP socket. Sending and receiving use separate IRPs.
pub struct UdpSocket {
    core: SocketCore<Datagram>,
    send: OpSlot,
    recv: OpSlot,
    local: SocketAddr,
}

impl UdpSocket {
    /// Creates a datagram socket bound to `addr`. IRQL == PASSIVE_LEVEL (task context).
    pub async fn bind(wsk: &Wsk, addr: SocketAddr) -> Result<UdpSocket> {
        let mut socket =
            UdpSocket { core: SocketCore::new()?, send: OpSlot::new()?, recv: OpSlot::new()?, local: addr };
        create::wsk_socket(wsk, &socket.core, &mut socket.send, addr::family(&addr), SOCK_DGRAM, IPPROTO_UDP).await?;
        create::bind(&socket.core, &mut socket.send, addr, |t: &WSK_PROVIDER_DATAGRAM_DISPATCH| t.WskBind).await?;
        Ok(socket)
    }

    /// The address the socket was bound to, as requested (port 0 stays 0; see
    /// [`UdpSocket::query_local_addr`]).
    ///
    /// Any IRQL.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Asks the provider for the bound address (`WskGetLocalAddress`), e.g. the port chosen
    /// for port 0.
    ///
    /// IRQL == PASSIVE_LEVEL (task context).
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
        addr::from_storage(&self.send.args().addr)
    }

    /// Sends one datagram with `buf`'s valid bytes to `to`.
    ///
    /// IRQL == PASSIVE_LEVEL (task context).
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
                            &mut (*args).wsk_buf,
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

    /// Receives one datagram into `buf` (up to its capacity); returns its length and sender.
    ///
    /// IRQL == PASSIVE_LEVEL (task context).
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
                addr::from_storage(&self.recv.args().addr).map(|from| (n, from))
            }
            Err(e) => Err(e),
        };
        (result, buf)
    }

    /// Sets a socket option through `WskControlSocket`.
    ///
    /// IRQL == PASSIVE_LEVEL (task context).
    pub async fn set_option(&mut self, option: SocketOption) -> Result<()> {
        set_option(&self.core, &mut self.send, option).await
    }

    /// A [`Stream`](futures_core::Stream) of received datagrams delivered by
    /// `WskReceiveFromEvent` (see [`Datagrams`]); the socket keeps sending. Once per socket.
    ///
    /// IRQL <= DISPATCH_LEVEL.
    pub fn datagrams(&self, config: EventConfig) -> Result<Datagrams> {
        Datagrams::enable(self.core.clone_owner(), config)
    }

    /// A handle that closes the socket from another task.
    ///
    /// Any IRQL.
    pub fn closer(&self) -> crate::Closer {
        crate::Closer { core: self.core.clone_owner().into() }
    }

    /// Closes the socket; pending operations resolve `Err(Cancelled)`.
    /// IRQL == PASSIVE_LEVEL (task context).
    pub async fn close(self) -> Result<()> {
        let UdpSocket { core, send, recv, .. } = self;
        drop((send, recv));
        core.close().await
    }
}

/// `WskReceiveFrom` into the slot's WSK_BUF, the sender written to the slot's address (no
/// control data): the `issue` step of a receive-from call.
///
/// # Safety
/// `socket` is a datagram socket whose table is `table`, `irp` an armed IRP, `args` the
/// slot's argument block (valid until the IRP completes).
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
                &mut (*args).wsk_buf,
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
