//! Socket creation through the provider-level `WskSocket` and `WskSocketConnect`.

use core::net::SocketAddr;

use wsk_sys::{SOCKADDR_STORAGE, WSK_SOCKET};

use crate::addr;
use crate::error::{Error, Result};
use crate::op::{Busy, Completion, OpSlot, SocketOwner};
use crate::pool::PoolBox;
use crate::pool::tag::REQUEST;
use crate::registration::Wsk;
use crate::socket::call::{socket_call, unit};
use crate::socket::kind::{Connection, SocketKind};
use crate::socket::shared::SocketCore;

/// Creates a socket of `core`'s kind with `WskSocket` using `slot`'s IRP and records it in
/// `core`. The core is the socket's context and the library's event table for the kind its
/// client dispatch, so events can be enabled later.
/// IRQL == PASSIVE_LEVEL (task context).
#[expect(
    clippy::multiple_unsafe_ops_per_block,
    reason = "the provider call is one unsafe step: the routine and the argument-block fields its pointers lead to"
)]
pub(crate) async fn wsk_socket<K: SocketKind>(
    wsk: &Wsk,
    core: &SocketCore<K>,
    slot: &mut OpSlot,
    family: u16,
    socket_type: u16,
    protocol: u32,
) -> Result<()> {
    slot.idle().await;
    let (client, dispatch) = wsk.provider()?;
    // WSK may call the socket's static event callbacks as soon as it exists.
    core.set_static_events(wsk.static_event_mask());
    let mut armed = slot.arm().map_err(Busy::error)?;
    // A second owner rides with the IRP: if this future is dropped and the creation succeeds
    // anyway, the new socket is closed in the background instead of leaking.
    armed.hold_owner(Some(SocketOwner { core: core.clone_owner().into(), slot: None }));
    let create = dispatch.WskSocket;
    // SAFETY: valid client; the IRP goes to `WskSocket` only; the context (the core) and the
    // static client dispatch table outlive the socket.
    let in_flight = unsafe {
        armed.submit(move |irp, _| {
            create.map(|create| {
                create(
                    client,
                    family,
                    socket_type,
                    protocol,
                    K::FLAGS,
                    core.context(),
                    K::client_ptr(),
                    core::ptr::null_mut(),
                    core::ptr::null_mut(),
                    core::ptr::null_mut(),
                    irp,
                )
            })
        })
    };
    let socket = created(in_flight.await)?;
    // SAFETY: WSK created a socket of kind `K` (`K::FLAGS`) with this core as its context and
    // `K`'s client dispatch table.
    unsafe { core.set_socket(socket) };
    Ok(())
}

/// Creates, binds and connects a connection socket with `WskSocketConnect`. Returns
/// `Err(Error::Status(STATUS_NOT_IMPLEMENTED))` where the provider lacks it.
#[expect(
    clippy::multiple_unsafe_ops_per_block,
    reason = "the provider call is one unsafe step: the routine and the argument-block fields its pointers lead to"
)]
pub(crate) async fn wsk_socket_connect(
    wsk: &Wsk,
    core: &SocketCore<Connection>,
    slot: &mut OpSlot,
    local: SocketAddr,
    remote: SocketAddr,
) -> Result<()> {
    slot.idle().await;
    let (client, dispatch) = wsk.provider()?;
    // WSK may call the socket's static event callbacks as soon as it exists.
    core.set_static_events(wsk.static_event_mask());
    let connect = dispatch.WskSocketConnect;
    // Both addresses stay valid until the IRP completes: the remote one in the slot, the
    // local one in a small pool buffer the slot owns meanwhile.
    let local_block =
        PoolBox::<SOCKADDR_STORAGE, REQUEST>::try_new_tagged(addr::to_storage(&local)).map_err(|_| Error::NoMemory)?;
    let local_ptr = local_block.as_ptr();
    let mut armed = slot.arm().map_err(Busy::error)?;
    armed.args().0.addr = addr::to_storage(&remote);
    armed.hold_block(local_block);
    armed.hold_owner(Some(SocketOwner { core: core.clone_owner().into(), slot: None }));
    // SAFETY: valid client, addresses and IRP, which goes to `WskSocketConnect` only; `args`
    // and the local address block live in the slot until the IRP completes.
    let in_flight = unsafe {
        armed.submit(move |irp, args| {
            connect.map(|connect| {
                connect(
                    client,
                    wsk_sys::SOCK_STREAM,
                    wsk_sys::IPPROTO_TCP,
                    local_ptr.cast(),
                    addr::as_sockaddr(&mut (*args).addr),
                    0,
                    core.context(),
                    Connection::client(),
                    core::ptr::null_mut(),
                    core::ptr::null_mut(),
                    core::ptr::null_mut(),
                    irp,
                )
            })
        })
    };
    let socket = created(in_flight.await)?;
    // SAFETY: WSK created a connection socket (`WskSocketConnect`) with this core as its
    // context and the connection client dispatch table.
    unsafe { core.set_socket(socket) };
    Ok(())
}

/// The socket a creation call returned in `Information`.
fn created(done: Completion) -> Result<*mut WSK_SOCKET> {
    let socket = done.result()? as *mut WSK_SOCKET;
    if socket.is_null() {
        return Err(Error::Status(wsk_sys::STATUS_UNSUCCESSFUL));
    }
    Ok(socket)
}

/// `WskBind` on a socket of any kind: `pick` takes the routine out of the kind's dispatch
/// table.
#[expect(
    clippy::multiple_unsafe_ops_per_block,
    reason = "the provider call is one unsafe step: the routine and the argument-block fields its pointers lead to"
)]
pub(crate) async fn bind<K: SocketKind>(
    core: &SocketCore<K>,
    slot: &mut OpSlot,
    local: SocketAddr,
    pick: impl FnOnce(&K::Dispatch) -> Option<wsk_sys::PFN_WSK_BIND>,
) -> Result<()> {
    // SAFETY: the address lives in the slot until the IRP completes.
    let done = unsafe {
        socket_call(
            core,
            slot,
            None,
            |args, _| args.addr = addr::to_storage(&local),
            |socket, table, irp, args| {
                pick(table).map(|bind| bind(socket, addr::as_sockaddr(&mut (*args).addr), 0, irp))
            },
        )
    }
    .await;
    unit(done)
}

/// `WskGetLocalAddress` on a socket of any kind: the address the provider bound it to.
///
/// IRQL == PASSIVE_LEVEL (task context).
#[expect(
    clippy::multiple_unsafe_ops_per_block,
    reason = "one provider call: reaching its arguments in the slot's argument block is part of it"
)]
pub(crate) async fn local_addr<K: SocketKind>(core: &SocketCore<K>, slot: &mut OpSlot) -> Result<SocketAddr> {
    // SAFETY: the address buffer lives in the slot until the IRP completes.
    let done = unsafe {
        socket_call(
            core,
            slot,
            None,
            |_, _| {},
            |socket, table, irp, args| {
                K::get_local_address(table).map(|get| get(socket, addr::as_sockaddr(&mut (*args).addr), irp))
            },
        )
    }
    .await;
    unit(done)?;
    slot.result_addr()
}
