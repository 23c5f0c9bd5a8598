//! `WskControlClient`: static event callbacks (`WSK_SET_STATIC_EVENT_CALLBACKS`) and the
//! transport list (`WSK_TRANSPORT_LIST_QUERY`), against the provider directly.

use std::io::Write;
use std::mem::size_of;
use std::net::UdpSocket;
use std::ptr;
use std::sync::atomic::Ordering;

use wsk_sys::*;

use super::probe::*;
use crate::support::*;

/// `WskControlClient` with raw arguments.
#[expect(clippy::too_many_arguments, reason = "WskControlClient's own parameters")]
fn control_client(
    client: &Client,
    code: ULONG,
    input_size: usize,
    input: PVOID,
    output_size: usize,
    output: PVOID,
    returned: *mut SIZE_T,
    irp: *mut IRP,
) -> NTSTATUS {
    unsafe {
        (client.dispatch().WskControlClient.unwrap())(
            client.provider.Client,
            code,
            input_size,
            input,
            output_size,
            output,
            returned,
            irp,
        )
    }
}

/// `WSK_SET_STATIC_EVENT_CALLBACKS` with `mask` and `npi`, no IRP.
fn set_static_with(client: &Client, mask: ULONG, npi: *const NPIID) -> NTSTATUS {
    let mut control = WSK_EVENT_CALLBACK_CONTROL { NpiId: npi, EventMask: mask };
    control_client(
        client,
        WSK_SET_STATIC_EVENT_CALLBACKS,
        size_of::<WSK_EVENT_CALLBACK_CONTROL>(),
        (&raw mut control).cast(),
        0,
        ptr::null_mut(),
        ptr::null_mut(),
        ptr::null_mut(),
    )
}

fn set_static(client: &Client, mask: ULONG) -> NTSTATUS {
    set_static_with(client, mask, &raw const NPI_WSK_INTERFACE_ID)
}

/// Static callbacks are on from each socket's creation (datagram) or acceptance
/// (connection), for the callbacks its table has; `SO_WSK_EVENT_CALLBACK` cannot enable or
/// disable them; a refused static receive-from stays enabled and the refused datagram is
/// not offered again.
#[test]
fn static_callbacks_are_on_from_creation_and_stay_on() {
    clean_session(|client| {
        assert_eq!(set_static(client, WSK_EVENT_RECEIVE_FROM | WSK_EVENT_RECEIVE | WSK_EVENT_ACCEPT), STATUS_SUCCESS);

        let probe = Probe::leaked();
        let socket = socket_with(client, WSK_FLAG_DATAGRAM_SOCKET, probe.context(), table(&DATAGRAM_EVENTS));
        assert_eq!(socket.bind(v4(0)), STATUS_SUCCESS);
        let local = socket.datagram_local_address().unwrap();
        let peer = UdpSocket::bind(v4(0)).unwrap();
        peer.send_to(b"hello", local).unwrap();
        eventually("a datagram with no SO_WSK_EVENT_CALLBACK", || probe.datagram_calls.load(Ordering::SeqCst) == 1);
        assert_eq!(set_events(socket, WSK_EVENT_RECEIVE_FROM), STATUS_INVALID_DEVICE_STATE, "re-enabled");
        assert_eq!(
            set_events(socket, WSK_EVENT_RECEIVE_FROM | WSK_EVENT_DISABLE),
            STATUS_INVALID_DEVICE_STATE,
            "disabled"
        );
        probe.set_mode(REFUSE);
        peer.send_to(b"refused", local).unwrap();
        eventually("the refused datagram", || probe.datagram_calls.load(Ordering::SeqCst) == 2);
        settle();
        probe.set_mode(ACCEPT_ALL);
        peer.send_to(b"after", local).unwrap();
        eventually("the next datagram, with no re-enable", || probe.datagram_calls.load(Ordering::SeqCst) == 3);
        settle();
        let seen: Vec<Vec<u8>> = probe.datagrams.lock().unwrap().iter().map(|(d, _)| d.clone()).collect();
        assert_eq!(seen, vec![b"hello".to_vec(), b"refused".to_vec(), b"after".to_vec()], "offered once each");
        assert!(probe.problems().is_empty(), "{:?}", probe.problems());
        socket.close();

        // An accepted socket (WskAccept) has its receive callback on at once.
        let probe = Probe::leaked();
        let (listener, socket, mut peer) = connection(client, probe);
        peer.write_all(b"static").unwrap();
        eventually("data with no SO_WSK_EVENT_CALLBACK", || probe.data() == b"static");
        assert_eq!(set_events(socket, WSK_EVENT_RECEIVE), STATUS_INVALID_DEVICE_STATE);
        // The others are not static: enabled as usual.
        assert_eq!(set_events(socket, WSK_EVENT_DISCONNECT), STATUS_SUCCESS);
        assert!(probe.problems().is_empty(), "{:?}", probe.problems());
        socket.close();
        listener.close();
    });
}

/// Microsoft: the client "must" set static callbacks "before it creates any sockets"; the
/// provider refuses them afterwards, a second time, and with a bad request.
#[test]
fn static_callbacks_are_refused_after_a_socket_or_a_first_set() {
    clean_session(|client| {
        assert_eq!(set_static(client, 0), STATUS_INVALID_PARAMETER, "no events");
        assert_eq!(set_static(client, WSK_EVENT_RECEIVE | WSK_EVENT_DISABLE), STATUS_INVALID_PARAMETER, "disable");
        assert_eq!(set_static_with(client, WSK_EVENT_RECEIVE, ptr::null()), STATUS_INVALID_PARAMETER, "no NPI");
        let short = control_client(
            client,
            WSK_SET_STATIC_EVENT_CALLBACKS,
            1,
            ptr::null_mut(),
            0,
            ptr::null_mut(),
            ptr::null_mut(),
            ptr::null_mut(),
        );
        assert_eq!(short, STATUS_INVALID_PARAMETER, "no input");
        let socket = client.socket(AF_INET, SOCK_DGRAM, IPPROTO_UDP, WSK_FLAG_DATAGRAM_SOCKET).unwrap();
        assert_eq!(set_static(client, WSK_EVENT_RECEIVE_FROM), STATUS_INVALID_DEVICE_STATE, "after a socket");
        socket.close();
        assert_eq!(set_static(client, WSK_EVENT_RECEIVE_FROM), STATUS_INVALID_DEVICE_STATE, "after a closed one");
    });
    clean_session(|client| {
        assert_eq!(set_static(client, WSK_EVENT_ACCEPT), STATUS_SUCCESS);
        assert_eq!(set_static(client, WSK_EVENT_RECEIVE), STATUS_INVALID_DEVICE_STATE, "a second time");
        // An IRP given is completed with the status returned.
        let req = Req::new();
        let mut control =
            WSK_EVENT_CALLBACK_CONTROL { NpiId: &raw const NPI_WSK_INTERFACE_ID, EventMask: WSK_EVENT_RECEIVE };
        let returned = control_client(
            client,
            WSK_SET_STATIC_EVENT_CALLBACKS,
            size_of::<WSK_EVENT_CALLBACK_CONTROL>(),
            (&raw mut control).cast(),
            0,
            ptr::null_mut(),
            ptr::null_mut(),
            req.irp,
        );
        assert_eq!(returned, STATUS_INVALID_DEVICE_STATE);
        assert_eq!(req.wait_returned(returned).status, STATUS_INVALID_DEVICE_STATE);
    });
}

/// `WSK_TRANSPORT_LIST_QUERY`: the size needed for no buffer or a short one, then the four
/// transports; other client control codes are not supported.
#[test]
fn the_transport_list_and_unsupported_codes() {
    clean_session(|client| {
        let entry = size_of::<WSK_TRANSPORT>();
        let mut needed: SIZE_T = 0;
        let status = control_client(
            client,
            WSK_TRANSPORT_LIST_QUERY,
            0,
            ptr::null_mut(),
            0,
            ptr::null_mut(),
            &raw mut needed,
            ptr::null_mut(),
        );
        assert_eq!((status, needed), (STATUS_BUFFER_OVERFLOW, 4 * entry));
        let empty = WSK_TRANSPORT {
            Version: 0,
            SocketType: 0,
            Protocol: 0,
            AddressFamily: 0,
            ProviderId: GUID { Data1: 0, Data2: 0, Data3: 0, Data4: [0; 8] },
        };
        let mut list = [empty; 5];
        let mut written: SIZE_T = 0;
        let status = control_client(
            client,
            WSK_TRANSPORT_LIST_QUERY,
            0,
            ptr::null_mut(),
            3 * entry,
            list.as_mut_ptr().cast(),
            &raw mut written,
            ptr::null_mut(),
        );
        assert_eq!((status, written), (STATUS_BUFFER_OVERFLOW, 4 * entry), "three entries are too few");
        assert_eq!(list[0], empty, "nothing written to a short buffer");
        let status = control_client(
            client,
            WSK_TRANSPORT_LIST_QUERY,
            0,
            ptr::null_mut(),
            size_of_val(&list),
            list.as_mut_ptr().cast(),
            &raw mut written,
            ptr::null_mut(),
        );
        assert_eq!((status, written), (STATUS_SUCCESS, 4 * entry));
        let mut kinds: Vec<_> = list[..4].iter().map(|t| (t.SocketType, t.Protocol, t.AddressFamily)).collect();
        kinds.sort_unstable();
        assert_eq!(
            kinds,
            [
                (SOCK_STREAM, IPPROTO_TCP, AF_INET),
                (SOCK_STREAM, IPPROTO_TCP, AF_INET6),
                (SOCK_DGRAM, IPPROTO_UDP, AF_INET),
                (SOCK_DGRAM, IPPROTO_UDP, AF_INET6),
            ]
        );
        assert_eq!(list[4], empty);
        for code in
            [WSK_TRANSPORT_LIST_CHANGE, WSK_CACHE_SD, WSK_RELEASE_SD, WSK_TDI_DEVICENAME_MAPPING, WSK_TDI_BEHAVIOR]
        {
            let status =
                control_client(client, code, 0, ptr::null_mut(), 0, ptr::null_mut(), ptr::null_mut(), ptr::null_mut());
            assert_eq!(status, STATUS_NOT_SUPPORTED, "code {code}");
        }
    });
}
