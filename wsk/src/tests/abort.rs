//! `abort_all_sockets` over the socket registry: a created socket nobody closes gets exactly one
//! `WskCloseSocket`, after which calls on it fail with `Closed`; a second abort, a socket that
//! was never created and cores created and freed around the walk are left alone. The test plays
//! a provider whose close completes at once ([`super::kernel`]), so that Miri checks the
//! registry's list and the close's reference counting.

extern crate std;

use core::ffi::c_void;
use core::sync::atomic::{AtomicUsize, Ordering};

use wsk_sys::{IRP, NTSTATUS, STATUS_SUCCESS, WSK_PROVIDER_BASIC_DISPATCH, WSK_SOCKET};

use super::kernel::provider_complete;
use crate::Error;
use crate::abort_all_sockets;
use crate::socket::kind::Connection;
use crate::socket::shared::SocketCore;

/// A stand-in provider socket: the `WSK_SOCKET` first, then how many closes it got.
#[repr(C)]
struct FakeSocket {
    socket: WSK_SOCKET,
    closes: AtomicUsize,
}

/// `WskCloseSocket`: counts the close and completes it at once.
///
/// # Safety
/// `socket` is the `socket` field of a live [`FakeSocket`]; `irp` is the caller's close IRP.
unsafe extern "system" fn close(socket: *mut WSK_SOCKET, irp: *mut IRP) -> NTSTATUS {
    // SAFETY: `FakeSocket` is `repr(C)` with the socket first (caller).
    let fake = unsafe { &*socket.cast::<FakeSocket>() };
    fake.closes.fetch_add(1, Ordering::SeqCst);
    // SAFETY: the IRP was handed to this provider routine and is not completed yet.
    unsafe { provider_complete(irp, STATUS_SUCCESS, 0) };
    STATUS_SUCCESS
}

static DISPATCH: WSK_PROVIDER_BASIC_DISPATCH =
    WSK_PROVIDER_BASIC_DISPATCH { WskControlSocket: None, WskCloseSocket: Some(close) };

#[test]
fn abort_closes_an_open_socket_once_and_leaves_the_rest() {
    let mut fake = std::boxed::Box::new(FakeSocket {
        socket: WSK_SOCKET { Dispatch: (&raw const DISPATCH).cast::<c_void>() },
        closes: AtomicUsize::new(0),
    });
    let before = SocketCore::<Connection>::new().unwrap();
    let open = SocketCore::<Connection>::new().unwrap();
    let freed = SocketCore::<Connection>::new().unwrap();
    let never_created = SocketCore::<Connection>::new().unwrap();
    // SAFETY: a stand-in socket of the connection kind, whose context is this core; it
    // outlives the core (dropped at the end of the test, after the core).
    unsafe { open.set_socket(&raw mut fake.socket) };
    // A core freed from the middle of the list before the walk.
    drop(freed);
    assert!(abort_all_sockets() >= 1, "the open socket was aborted");
    assert_eq!(fake.closes.load(Ordering::SeqCst), 1, "exactly one WskCloseSocket");
    assert!(open.is_closing());
    assert!(matches!(open.enter().err(), Some(Error::Closed)), "no call after the abort");
    assert!(!never_created.is_closing(), "a socket that was never created is not touched");
    assert!(!before.is_closing());
    // Nothing left to abort here: the close was issued once.
    abort_all_sockets();
    assert_eq!(fake.closes.load(Ordering::SeqCst), 1, "a second abort issues no second close");
    // The owner lets go after the close completed: the core is freed (Miri reports a leak
    // or a double free otherwise).
    drop(open);
    drop(never_created);
    drop(before);
}
