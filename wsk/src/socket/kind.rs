//! Socket kinds as types. WSK has a listening, a connection-oriented and a datagram kind of
//! socket, each with its own provider dispatch table, client (event callback) dispatch table
//! and, in this library, its own event state. A [`SocketCore<K>`](super::shared::SocketCore)
//! carries its kind in its type, so it hands out the right dispatch table without its callers
//! promising which one it is.

use core::ffi::c_void;

use wsk_sys::{
    WSK_CLIENT_CONNECTION_DISPATCH, WSK_CLIENT_DATAGRAM_DISPATCH, WSK_CLIENT_LISTEN_DISPATCH,
    WSK_FLAG_CONNECTION_SOCKET, WSK_FLAG_DATAGRAM_SOCKET, WSK_FLAG_LISTEN_SOCKET, WSK_PROVIDER_BASIC_DISPATCH,
    WSK_PROVIDER_CONNECTION_DISPATCH, WSK_PROVIDER_DATAGRAM_DISPATCH, WSK_PROVIDER_LISTEN_DISPATCH,
};

use crate::socket::events::{self, ConnState, DgramState, EventState, ListenState};

mod sealed {
    /// Keeps [`super::SocketKind`] to the kinds of this module.
    pub trait Sealed {}
}

/// A kind of WSK socket (sealed: [`Listen`], [`Connection`], [`Datagram`]).
pub(crate) trait SocketKind: sealed::Sealed + Sized + 'static {
    /// The provider's dispatch table of a socket of this kind (what `WSK_SOCKET::Dispatch`
    /// points to).
    type Dispatch: 'static;
    /// The library's client dispatch table (event callbacks) sockets of this kind are created
    /// with.
    type Client: 'static;
    /// The event state installed on a core of this kind (`socket::events`).
    type State: EventState<Kind = Self>;
    /// The `WskSocket` flag that creates a socket of this kind.
    const FLAGS: u32;

    /// The client dispatch table, with the core as the socket's context.
    fn client() -> &'static Self::Client;

    /// The client dispatch table as `WskSocket` takes it.
    fn client_ptr() -> *const c_void {
        core::ptr::from_ref(Self::client()).cast()
    }

    /// The basic dispatch table, the first member of every kind's table.
    fn basic(table: &Self::Dispatch) -> &WSK_PROVIDER_BASIC_DISPATCH;

    /// `WskGetLocalAddress`, which every kind's table has.
    fn get_local_address(table: &Self::Dispatch) -> Option<wsk_sys::PFN_WSK_GET_LOCAL_ADDRESS>;
}

/// A listening socket (`WSK_FLAG_LISTEN_SOCKET`).
pub(crate) enum Listen {}

/// A connection-oriented socket (`WSK_FLAG_CONNECTION_SOCKET`), created or accepted.
pub(crate) enum Connection {}

/// A datagram socket (`WSK_FLAG_DATAGRAM_SOCKET`).
pub(crate) enum Datagram {}

/// Implements [`SocketKind`] for `$kind` from its tables, state and creation flag.
macro_rules! socket_kind {
    ($kind:ty, $dispatch:ty, $client:ty, $state:ty, $flags:expr, $table:expr) => {
        impl sealed::Sealed for $kind {}

        impl SocketKind for $kind {
            type Dispatch = $dispatch;
            type Client = $client;
            type State = $state;
            const FLAGS: u32 = $flags;

            fn client() -> &'static Self::Client {
                &$table
            }

            fn basic(table: &Self::Dispatch) -> &WSK_PROVIDER_BASIC_DISPATCH {
                &table.Basic
            }

            fn get_local_address(table: &Self::Dispatch) -> Option<wsk_sys::PFN_WSK_GET_LOCAL_ADDRESS> {
                table.WskGetLocalAddress
            }
        }
    };
}

socket_kind!(
    Listen,
    WSK_PROVIDER_LISTEN_DISPATCH,
    WSK_CLIENT_LISTEN_DISPATCH,
    ListenState,
    WSK_FLAG_LISTEN_SOCKET,
    events::LISTEN_DISPATCH
);
socket_kind!(
    Connection,
    WSK_PROVIDER_CONNECTION_DISPATCH,
    WSK_CLIENT_CONNECTION_DISPATCH,
    ConnState,
    WSK_FLAG_CONNECTION_SOCKET,
    events::CONNECTION_DISPATCH
);
socket_kind!(
    Datagram,
    WSK_PROVIDER_DATAGRAM_DISPATCH,
    WSK_CLIENT_DATAGRAM_DISPATCH,
    DgramState,
    WSK_FLAG_DATAGRAM_SOCKET,
    events::DATAGRAM_DISPATCH
);
