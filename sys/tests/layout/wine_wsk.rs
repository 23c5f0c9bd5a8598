//! The types checked against Wine's `ddk/wsk.h` (mingw-w64 has none; prelude `wine_wsk.h`).

use wsk_sys::*;

use crate::table::{Table, constants, layout_table};

/// The WSK types Wine's header declares.
pub(crate) fn table() -> Table {
    let mut table = layout_table! {
        WSK_SOCKET in WineWsk as "WSK_SOCKET" {
            Dispatch => "Dispatch";
        }
        WSK_BUF in WineWsk as "WSK_BUF" {
            Mdl => "Mdl";
            Offset => "Offset";
            Length => "Length";
        }
        WSK_BUF_LIST in WineWsk as "WSK_BUF_LIST" {
            Next => "Next";
            Buffer => "Buffer";
        }
        WSK_DATA_INDICATION in WineWsk as "WSK_DATA_INDICATION" {
            Next => "Next";
            Buffer => "Buffer";
        }
        WSK_DATAGRAM_INDICATION in WineWsk as "WSK_DATAGRAM_INDICATION" {
            Next => "Next";
            Buffer => "Buffer";
            ControlInfo => "ControlInfo";
            ControlInfoLength => "ControlInfoLength";
            RemoteAddress => "RemoteAddress";
        }
        WSK_INSPECT_ID in WineWsk as "WSK_INSPECT_ID" {
            Key => "Key";
            SerialNumber => "SerialNumber";
        }
        WSK_CLIENT_DISPATCH in WineWsk as "WSK_CLIENT_DISPATCH" {
            Version => "Version";
            Reserved => "Reserved";
            WskClientEvent => "WskClientEvent";
        }
        WSK_CLIENT_LISTEN_DISPATCH in WineWsk as "WSK_CLIENT_LISTEN_DISPATCH" {
            WskAcceptEvent => "WskAcceptEvent";
            WskInspectEvent => "WskInspectEvent";
            WskAbortEvent => "WskAbortEvent";
        }
        WSK_CLIENT_CONNECTION_DISPATCH in WineWsk as "WSK_CLIENT_CONNECTION_DISPATCH" {
            WskReceiveEvent => "WskReceiveEvent";
            WskDisconnectEvent => "WskDisconnectEvent";
            WskSendBacklogEvent => "WskSendBacklogEvent";
        }
        WSK_CLIENT_NPI in WineWsk as "WSK_CLIENT_NPI" {
            ClientContext => "ClientContext";
            Dispatch => "Dispatch";
        }
        WSK_REGISTRATION in WineWsk as "WSK_REGISTRATION" {
            ReservedRegistrationState => "ReservedRegistrationState";
            ReservedRegistrationContext => "ReservedRegistrationContext";
            ReservedRegistrationLock => "ReservedRegistrationLock";
        }
        WSK_PROVIDER_DISPATCH in WineWsk as "WSK_PROVIDER_DISPATCH" {
            Version => "Version";
            Reserved => "Reserved";
            WskSocket => "WskSocket";
            WskSocketConnect => "WskSocketConnect";
            WskControlClient => "WskControlClient";
            WskGetAddressInfo => "WskGetAddressInfo";
            WskFreeAddressInfo => "WskFreeAddressInfo";
            WskGetNameInfo => "WskGetNameInfo";
        }
        WSK_PROVIDER_NPI in WineWsk as "WSK_PROVIDER_NPI" {
            Client => "Client";
            Dispatch => "Dispatch";
        }
        WSK_PROVIDER_BASIC_DISPATCH in WineWsk as "WSK_PROVIDER_BASIC_DISPATCH" {
            WskControlSocket => "WskControlSocket";
            WskCloseSocket => "WskCloseSocket";
        }
        WSK_PROVIDER_LISTEN_DISPATCH in WineWsk as "WSK_PROVIDER_LISTEN_DISPATCH" {
            Basic => "Basic";
            WskBind => "WskBind";
            WskAccept => "WskAccept";
            WskInspectComplete => "WskInspectComplete";
            WskGetLocalAddress => "WskGetLocalAddress";
        }
        WSK_PROVIDER_DATAGRAM_DISPATCH in WineWsk as "WSK_PROVIDER_DATAGRAM_DISPATCH" {
            Basic => "Basic";
            WskBind => "WskBind";
            WskSendTo => "WskSendTo";
            WskReceiveFrom => "WskReceiveFrom";
            WskRelease => "WskRelease";
            WskGetLocalAddress => "WskGetLocalAddress";
            WskSendMessages => "WskSendMessages";
        }
        WSK_PROVIDER_CONNECTION_DISPATCH in WineWsk as "WSK_PROVIDER_CONNECTION_DISPATCH" {
            Basic => "Basic";
            WskBind => "WskBind";
            WskConnect => "WskConnect";
            WskGetLocalAddress => "WskGetLocalAddress";
            WskGetRemoteAddress => "WskGetRemoteAddress";
            WskSend => "WskSend";
            WskReceive => "WskReceive";
            WskDisconnect => "WskDisconnect";
            WskRelease => "WskRelease";
            WskConnectEx => "WskConnectEx";
            WskSendEx => "WskSendEx";
            WskReceiveEx => "WskReceiveEx";
        }
        WSK_PROVIDER_STREAM_DISPATCH in WineWsk as "WSK_PROVIDER_STREAM_DISPATCH" {
            Basic => "Basic";
            WskBind => "WskBind";
            WskAccept => "WskAccept";
            WskConnect => "WskConnect";
            WskListen => "WskListen";
            WskSend => "WskSend";
            WskReceive => "WskReceive";
            WskDisconnect => "WskDisconnect";
            WskRelease => "WskRelease";
            WskGetLocalAddress => "WskGetLocalAddress";
            WskGetRemoteAddress => "WskGetRemoteAddress";
            WskConnectEx => "WskConnectEx";
            WskSendEx => "WskSendEx";
            WskReceiveEx => "WskReceiveEx";
        }
    };
    // Wine's `WSK_INSPECT_ACTION` has the first two values only (`documented.h` has all four).
    table.constants = constants!(WineWsk: WskInspectReject, WskInspectAccept);
    table
}
