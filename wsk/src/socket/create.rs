//! Socket creation through the provider-level `WskSocket` and `WskSocketConnect`.

// Each unsafe block here is one call into a provider routine whose pointer arguments lead
// into the operation slot (dereferencing `args` to reach them is part of that one call);
// splitting the call across several blocks would not make any single step clearer.
#![allow(clippy::multiple_unsafe_ops_per_block)]

use core::net::SocketAddr;

use wsk_sys::{SOCKADDR_STORAGE, WSK_SOCKET};

use crate::addr;
use crate::buf::IoBuf;
use crate::error::{Error, Result};
use crate::op::{OpSlot, SocketOwner};
use crate::registration::Wsk;
use crate::socket::call::{complete_not_implemented, socket_call, unit};
use crate::socket::kind::{Connection, SocketKind};
use crate::socket::shared::SocketCore;

/// Creates a socket of `core`'s kind with `WskSocket` using `slot`'s IRP and records it in
/// `core`. The core is the socket's context and the library's event table for the kind its
/// client dispatch, so events can be enabled later.
/// IRQL == PASSIVE_LEVEL (task context).
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
    // A second owner rides with the IRP: if this future is dropped and the creation succeeds
    // anyway, the new socket is closed in the background instead of leaking.
    let owner = SocketOwner { core: core.clone_owner().into(), slot: None };
    let (irp, _args) = slot.arm_with_owner(None, Some(owner));
    match dispatch.WskSocket {
        // SAFETY: valid client and armed IRP; the context (the core) and the static client
        // dispatch table outlive the socket.
        Some(create) => {
            // SAFETY: see above.
            let status = unsafe {
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
            };
            if status == wsk_sys::STATUS_NOT_IMPLEMENTED && !slot.is_complete() {
                complete_not_implemented(irp);
            }
        }
        None => complete_not_implemented(irp),
    }
    let done = slot.submitted().await;
    let socket = done.result()? as *mut WSK_SOCKET;
    if socket.is_null() {
        return Err(Error::Status(wsk_sys::STATUS_UNSUCCESSFUL));
    }
    // SAFETY: WSK created a socket of kind `K` (`K::FLAGS`) with this core as its context and
    // `K`'s client dispatch table.
    unsafe { core.set_socket(socket) };
    Ok(())
}

/// Creates, binds and connects a connection socket with `WskSocketConnect`. Returns
/// `Err(Error::Status(STATUS_NOT_IMPLEMENTED))` where the provider lacks it.
pub(crate) async fn wsk_socket_connect(
    wsk: &Wsk,
    core: &SocketCore<Connection>,
    slot: &mut OpSlot,
    local: SocketAddr,
    remote: SocketAddr,
) -> Result<()> {
    slot.idle().await;
    let (client, dispatch) = wsk.provider()?;
    let Some(connect) = dispatch.WskSocketConnect else {
        return Err(Error::Status(wsk_sys::STATUS_NOT_IMPLEMENTED));
    };
    // Both addresses stay valid until the IRP completes: the remote one in the slot, the
    // local one in a small pool buffer the slot owns meanwhile.
    let mut local_block = IoBuf::with_capacity(core::mem::size_of::<SOCKADDR_STORAGE>())?;
    let local_ptr = local_block.as_mut_capacity().as_mut_ptr().cast::<SOCKADDR_STORAGE>();
    // SAFETY: pool memory, 16-byte aligned, of SOCKADDR_STORAGE's size.
    unsafe { local_ptr.write(addr::to_storage(&local)) };
    slot.args().addr = addr::to_storage(&remote);
    let owner = SocketOwner { core: core.clone_owner().into(), slot: None };
    let (irp, args) = slot.arm_with_owner(Some(local_block), Some(owner));
    // SAFETY: valid client, addresses and armed IRP; `args` and the local address block live
    // in the slot until the IRP completes.
    let status = unsafe {
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
    };
    if status == wsk_sys::STATUS_NOT_IMPLEMENTED && !slot.is_complete() {
        // A stub that did not take the IRP (see `socket_call`).
        complete_not_implemented(irp);
    }
    let done = slot.submitted().await;
    let socket = done.result()? as *mut WSK_SOCKET;
    if socket.is_null() {
        return Err(Error::Status(wsk_sys::STATUS_UNSUCCESSFUL));
    }
    // SAFETY: WSK created a connection socket with this core as its context and the
    // connection client dispatch table.
    unsafe { core.set_socket(socket) };
    Ok(())
}

/// `WskBind` on a socket of any kind: `pick` takes the routine out of the kind's dispatch
/// table.
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
