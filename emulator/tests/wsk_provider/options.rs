//! WskControlSocket (options with and without an IRP) and WskControlClient.

use std::ptr;

use wsk_sys::*;

use crate::support::*;

#[test]
fn set_and_get_options_with_an_irp() {
    clean_session(|client| {
        let listener = client.socket(AF_INET, SOCK_STREAM, IPPROTO_TCP, WSK_FLAG_LISTEN_SOCKET).unwrap();
        assert_eq!(listener.get_option(SOL_SOCKET, SO_REUSEADDR), Ok(0));
        assert_eq!(listener.set_option(SOL_SOCKET, SO_EXCLUSIVEADDRUSE, 1), STATUS_SUCCESS);
        assert_eq!(listener.get_option(SOL_SOCKET, SO_EXCLUSIVEADDRUSE), Ok(1));
        // Windows refuses SO_REUSEADDR together with SO_EXCLUSIVEADDRUSE.
        assert_eq!(listener.set_option(SOL_SOCKET, SO_REUSEADDR, 1), STATUS_INVALID_PARAMETER);
        assert_eq!(listener.set_option(SOL_SOCKET, SO_EXCLUSIVEADDRUSE, 0), STATUS_SUCCESS);
        assert_eq!(listener.set_option(SOL_SOCKET, SO_REUSEADDR, 1), STATUS_SUCCESS);
        assert_eq!(listener.get_option(SOL_SOCKET, SO_REUSEADDR), Ok(1));
        assert_eq!(listener.bind(v4(0)), STATUS_SUCCESS);
        let local = listener.local_address().unwrap();

        let socket = client.socket_connect(local).unwrap();
        let (accepted, _) = listener.accept();
        for (level, code) in [(SOL_SOCKET, SO_KEEPALIVE), (IPPROTO_TCP, TCP_NODELAY)] {
            assert_eq!(socket.get_option(level, code), Ok(0));
            assert_eq!(socket.set_option(level, code, 1), STATUS_SUCCESS);
            assert_eq!(socket.get_option(level, code), Ok(1));
        }
        for code in [SO_SNDBUF, SO_RCVBUF] {
            assert!(socket.get_option(SOL_SOCKET, code).unwrap() > 0);
            assert_eq!(socket.set_option(SOL_SOCKET, code, 65536), STATUS_SUCCESS);
            assert_eq!(socket.get_option(SOL_SOCKET, code), Ok(65536));
        }
        // SO_WSK_EVENT_CALLBACK takes a WSK_EVENT_CALLBACK_CONTROL (see `events`), not a
        // 4-byte value; unknown options are not supported.
        assert_eq!(socket.set_option(SOL_SOCKET, SO_WSK_EVENT_CALLBACK, 0), STATUS_INVALID_PARAMETER);
        assert_eq!(socket.get_option(SOL_SOCKET, SO_WSK_EVENT_CALLBACK), Err(STATUS_NOT_SUPPORTED));
        assert_eq!(socket.set_option(SOL_SOCKET, 0x7777, 1), STATUS_NOT_SUPPORTED);
        assert_eq!(socket.get_option(0x1234, 1), Err(STATUS_NOT_SUPPORTED));
        // Still usable.
        socket.send_all(b"opt");
        assert_eq!(accepted.receive_exact(3), b"opt");
        for s in [socket, accepted, listener] {
            s.close();
        }
    });
}

#[test]
fn options_without_an_irp_return_the_status_directly() {
    clean_session(|client| {
        let socket = client.socket(AF_INET, SOCK_DGRAM, IPPROTO_UDP, WSK_FLAG_DATAGRAM_SOCKET).unwrap();
        let control = socket.basic().WskControlSocket.unwrap();
        let mut value = 262_144u32;
        let status = unsafe {
            control(
                socket.0,
                WskSetOption,
                SO_RCVBUF,
                SOL_SOCKET,
                4,
                (&raw mut value).cast(),
                0,
                ptr::null_mut(),
                ptr::null_mut(),
                ptr::null_mut(),
            )
        };
        assert_eq!(status, STATUS_SUCCESS);
        let mut out = 0u32;
        let mut returned: SIZE_T = 0;
        let status = unsafe {
            control(
                socket.0,
                WskGetOption,
                SO_RCVBUF,
                SOL_SOCKET,
                0,
                ptr::null_mut(),
                4,
                (&raw mut out).cast(),
                &raw mut returned,
                ptr::null_mut(),
            )
        };
        assert_eq!((status, out, returned), (STATUS_SUCCESS, 262_144, 4));
        // Too small an output buffer.
        let mut tiny = 0u16;
        let status = unsafe {
            control(
                socket.0,
                WskGetOption,
                SO_RCVBUF,
                SOL_SOCKET,
                0,
                ptr::null_mut(),
                2,
                (&raw mut tiny).cast(),
                &raw mut returned,
                ptr::null_mut(),
            )
        };
        assert_eq!(status, STATUS_BUFFER_TOO_SMALL);
        // No input for a set.
        let status = unsafe {
            control(
                socket.0,
                WskSetOption,
                SO_RCVBUF,
                SOL_SOCKET,
                0,
                ptr::null_mut(),
                0,
                ptr::null_mut(),
                ptr::null_mut(),
                ptr::null_mut(),
            )
        };
        assert_eq!(status, STATUS_INVALID_PARAMETER);
        // TCP_NODELAY is not an option of a datagram socket; IOCTLs are not emulated.
        assert_eq!(socket.set_option(IPPROTO_TCP, TCP_NODELAY, 1), STATUS_NOT_SUPPORTED);
        let status = unsafe {
            control(
                socket.0,
                WskIoctl,
                SIO_WSK_QUERY_RECEIVE_BACKLOG,
                0,
                0,
                ptr::null_mut(),
                0,
                ptr::null_mut(),
                ptr::null_mut(),
                ptr::null_mut(),
            )
        };
        assert_eq!(status, STATUS_NOT_SUPPORTED);
        let status = unsafe {
            control(socket.0, 77, 0, 0, 0, ptr::null_mut(), 0, ptr::null_mut(), ptr::null_mut(), ptr::null_mut())
        };
        assert_eq!(status, STATUS_INVALID_PARAMETER);
        socket.close();
    });
}

#[test]
fn basic_sockets_take_options_and_close() {
    clean_session(|client| {
        let socket = client.socket(AF_INET6, SOCK_STREAM, IPPROTO_TCP, WSK_FLAG_BASIC_SOCKET).unwrap();
        assert_eq!(socket.get_option(IPPROTO_IPV6, IPV6_V6ONLY), Ok(1));
        assert_eq!(socket.set_option(IPPROTO_IPV6, IPV6_V6ONLY, 0), STATUS_SUCCESS);
        assert_eq!(socket.get_option(IPPROTO_IPV6, IPV6_V6ONLY), Ok(0));
        socket.close();
    });
}

#[test]
fn control_client_is_not_supported_with_or_without_an_irp() {
    clean_session(|client| {
        let control = client.dispatch().WskControlClient.unwrap();
        let status = unsafe {
            control(
                client.provider.Client,
                WSK_CACHE_SD,
                0,
                ptr::null_mut(),
                0,
                ptr::null_mut(),
                ptr::null_mut(),
                ptr::null_mut(),
            )
        };
        assert_eq!(status, STATUS_NOT_SUPPORTED);
        let req = Req::new();
        let returned = unsafe {
            control(client.provider.Client, 0x1234, 0, ptr::null_mut(), 0, ptr::null_mut(), ptr::null_mut(), req.irp)
        };
        assert_eq!(returned, STATUS_NOT_SUPPORTED);
        assert_eq!(req.wait().status, STATUS_NOT_SUPPORTED);
    });
}
