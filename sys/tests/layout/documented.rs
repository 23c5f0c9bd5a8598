//! The types neither header set declares, checked against `documented.h`: transcribed from
//! Microsoft's documentation, on mingw-w64 base types.

use wsk_sys::*;

use crate::table::{Table, constants, layout_table};

/// The WSK types only Microsoft's documentation declares.
pub(crate) fn table() -> Table {
    let mut table = layout_table! {
        WSK_EVENT_CALLBACK_CONTROL in Documented as "WSK_EVENT_CALLBACK_CONTROL" {
            NpiId => "NpiId";
            EventMask => "EventMask";
        }
        WSK_TRANSPORT in Documented as "WSK_TRANSPORT" {
            Version => "Version";
            SocketType => "SocketType";
            Protocol => "Protocol";
            AddressFamily => "AddressFamily";
            ProviderId => "ProviderId";
        }
        WSK_CLIENT_DATAGRAM_DISPATCH in Documented as "WSK_CLIENT_DATAGRAM_DISPATCH" {
            WskReceiveFromEvent => "WskReceiveFromEvent";
        }
        WSK_CLIENT_STREAM_DISPATCH in Documented as "WSK_CLIENT_STREAM_DISPATCH" {
            Listen => "Listen";
            Connect => "Connect";
        }
    };
    // The WSK_INSPECT_ACTION values (Wine's header lacks two) and the keep-alive option names
    // (`ws2ipdef.h`), which the installed headers lack.
    table.constants = constants!(
        Documented: WskInspectReject,
        WskInspectAccept,
        WskInspectPend,
        WskInspectMax,
        TCP_KEEPALIVE,
        TCP_KEEPIDLE,
        TCP_KEEPCNT,
        TCP_KEEPINTVL
    );
    table
}
