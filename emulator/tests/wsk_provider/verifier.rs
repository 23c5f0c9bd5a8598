//! The verifier's WSK rules, each provoked by deliberately broken client code.

use std::io::Write;
use std::net::TcpStream;
use std::ptr;
use std::sync::Arc;
use std::time::Duration;

use wsk_emulator::{Kernel, LeakKind, Rule, with_irql};
use wsk_sys::*;

use crate::support::*;

#[test]
fn a_call_after_close_is_reported() {
    let report = broken_session(|client| {
        let socket = client.socket(AF_INET, SOCK_STREAM, IPPROTO_TCP, WSK_FLAG_CONNECTION_SOCKET).unwrap();
        socket.close();
        // BUG: the socket is used after WskCloseSocket.
        let mut value = 1u32;
        let status = unsafe {
            (socket.basic().WskControlSocket.unwrap())(
                socket.0,
                WskSetOption,
                SO_KEEPALIVE,
                SOL_SOCKET,
                4,
                (&raw mut value).cast(),
                0,
                ptr::null_mut(),
                ptr::null_mut(),
                ptr::null_mut(),
            )
        };
        assert_eq!(status, STATUS_INVALID_HANDLE);
        // With an IRP, the IRP is completed with the error (nothing hangs).
        let mut buf = Buf::zeroed(4);
        assert_eq!(socket.send_start(&mut buf, 0).wait().status, STATUS_INVALID_HANDLE);
    });
    report.assert_first(Rule::WskSocketUsedAfterClose);
}

#[test]
fn closing_twice_is_reported() {
    let report = broken_session(|client| {
        let socket = client.socket(AF_INET, SOCK_DGRAM, IPPROTO_UDP, WSK_FLAG_DATAGRAM_SOCKET).unwrap();
        socket.close();
        assert_eq!(socket.close_start().wait().status, STATUS_INVALID_HANDLE);
    });
    report.assert_first(Rule::WskSocketUsedAfterClose);
}

#[test]
fn close_while_another_call_is_executing_is_reported() {
    let report = broken_session(|client| {
        let (listener, local) = client.listener(v4(0));
        let mut peer = TcpStream::connect(local).unwrap();
        let (socket, _) = listener.accept();
        // Two bytes in one segment: once the first is received, the second is waiting, so the
        // next receive completes inline, inside the WskReceive call.
        peer.write_all(b"ab").unwrap();
        assert_eq!(socket.receive_exact(1), b"a");

        // The completion routine runs at DISPATCH_LEVEL: it waits by spinning.
        let inside = Arc::new(Rendezvous::new());
        let closed = Arc::new(Rendezvous::new());
        let receiver = {
            let (inside, closed) = (Arc::clone(&inside), Arc::clone(&closed));
            std::thread::spawn(move || {
                let mut buf = Buf::zeroed(1);
                let req = Req::new();
                *req.slot.hook.lock().unwrap() = Some(Box::new(move |_irp| {
                    // Still inside WskReceive (inline completion): let the other thread close.
                    inside.wait();
                    closed.wait();
                }));
                let returned =
                    unsafe { (socket.connection().WskReceive.unwrap())(socket.0, buf.wsk_buf(), 0, req.irp) };
                assert_eq!(returned, STATUS_SUCCESS, "completed inline");
                assert_eq!(req.wait().info, 1);
            })
        };
        inside.wait();
        // BUG: WskCloseSocket while the receive call is still executing on another thread.
        let close = socket.close_start();
        closed.wait();
        receiver.join().unwrap();
        close.wait();
        listener.close();
    });
    report.assert_first(Rule::WskCloseWithCallInProgress);
}

#[test]
fn an_irp_without_a_stack_location_is_reported() {
    let report = broken_session(|client| {
        // BUG: an IRP with no stack location for the provider.
        let irp = unsafe { IoAllocateIrp(0, FALSE) };
        let status = client.listen_socket_call(irp);
        assert_eq!(status, STATUS_INVALID_PARAMETER, "refused, not completed");
        unsafe { IoFreeIrp(irp) };
    });
    report.assert_first(Rule::IrpNoStackLocation);
}

#[test]
fn a_used_up_stack_location_is_reported_by_socket_routines_too() {
    let report = broken_session(|client| {
        let socket = client.socket(AF_INET, SOCK_DGRAM, IPPROTO_UDP, WSK_FLAG_DATAGRAM_SOCKET).unwrap();
        let req = Req::new();
        // BUG: the client stepped into the location meant for the provider.
        unsafe { IoSetNextIrpStackLocation(req.irp) };
        let mut address = storage(v4(0));
        let status = unsafe { (socket.datagram().WskBind.unwrap())(socket.0, sa(&mut address), 0, req.irp) };
        assert_eq!(status, STATUS_INVALID_PARAMETER);
        assert!(req.done().is_none());
        unsafe { IoFreeIrp(req.irp) };
        std::mem::forget(req);
        socket.close();
    });
    report.assert_first(Rule::IrpNoStackLocation);
}

/// The provider checks every MDL of a `WSK_BUF` against freed pool (with the verifier on,
/// freed MDLs stay in the quarantine), however cheap that check is while nothing is freed.
#[test]
fn a_wsk_buf_over_a_freed_mdl_is_reported() {
    let report = broken_session(|client| {
        let (listener, socket, _peer) = connected(client);
        let mut buf = Buf::zeroed(100);
        let freed = unsafe { IoAllocateMdl(buf.data.as_mut_ptr().cast(), 100, FALSE, FALSE, ptr::null_mut()) };
        assert!(!freed.is_null());
        unsafe { MmBuildMdlForNonPagedPool(freed) };
        // BUG: the MDL is freed before the send that names it.
        unsafe { IoFreeMdl(freed) };
        buf.wsk = WSK_BUF { Mdl: freed, Offset: 0, Length: 100 };
        assert_eq!(socket.send_start(&mut buf, 0).wait().status, STATUS_INVALID_PARAMETER);
        socket.close();
        listener.close();
    });
    report.assert_first(Rule::MdlBadPointer);
}

#[test]
fn a_wsk_buf_longer_than_its_mdl_is_reported() {
    let report = broken_session(|client| {
        let (listener, socket, _peer) = connected(client);
        let mut buf = Buf::zeroed(100);
        // BUG: 50 + 100 bytes from an MDL of 100.
        buf.wsk = WSK_BUF { Mdl: buf.mdl, Offset: 50, Length: 100 };
        assert_eq!(socket.send_start(&mut buf, 0).wait().status, STATUS_INVALID_PARAMETER);
        socket.close();
        listener.close();
    });
    report.assert_first(Rule::WskBufferBeyondMdl);
}

#[test]
fn a_control_length_without_a_control_buffer_is_reported() {
    let report = broken_session(|client| {
        let socket = client.socket(AF_INET, SOCK_DGRAM, IPPROTO_UDP, WSK_FLAG_DATAGRAM_SOCKET).unwrap();
        assert_eq!(socket.bind(v4(0)), STATUS_SUCCESS);
        let mut buf = Buf::zeroed(16);
        // BUG: a 64-byte control buffer announced, none given.
        let mut control_length: ULONG = 64;
        let req = socket.receive_from_with(
            &mut buf,
            ptr::null_mut(),
            &raw mut control_length,
            ptr::null_mut(),
            ptr::null_mut(),
        );
        assert_eq!(req.wait().status, STATUS_INVALID_PARAMETER);
        drop(req);
        socket.close();
    });
    report.assert_first(Rule::WskControlInfoMissing);
}

#[test]
fn something_that_is_no_socket_is_reported() {
    let report = broken_session(|client| {
        let (listener, _) = client.listener(v4(0));
        // BUG: a home-made WSK_SOCKET with the provider's dispatch table.
        let mut fake = WSK_SOCKET { Dispatch: unsafe { (*listener.0).Dispatch } };
        let fake = Sock(&raw mut fake);
        let mut addresses = Box::new([SOCKADDR_STORAGE::zeroed(); 2]);
        assert_eq!(fake.accept_start(&mut addresses).wait().status, STATUS_INVALID_PARAMETER);
        listener.close();
    });
    report.assert_first(Rule::WskInvalidSocket);
}

#[test]
fn a_routine_of_another_socket_kind_is_reported() {
    let report = broken_session(|client| {
        let connection = client.socket(AF_INET, SOCK_STREAM, IPPROTO_TCP, WSK_FLAG_CONNECTION_SOCKET).unwrap();
        let (listener, _) = client.listener(v4(0));
        // BUG: WskSend (connection table) on a listen socket.
        let mut buf = Buf::zeroed(4);
        let req = Req::new();
        unsafe { (connection.connection().WskSend.unwrap())(listener.0, buf.wsk_buf(), 0, req.irp) };
        assert_eq!(req.wait().status, STATUS_INVALID_PARAMETER);
        drop(req);
        connection.close();
        listener.close();
    });
    report.assert_first(Rule::WskInvalidSocket);
}

#[test]
fn a_socket_never_closed_is_a_leak() {
    let report = broken_session(|client| {
        let (_listener, local) = client.listener(v4(0));
        assert!(local.port() != 0);
    });
    report.assert_violation(Rule::WskSocketLeak);
    let leaks = report.assert_leaks(LeakKind::WskSocket, 1);
    assert!(leaks[0].detail.contains("listen socket"), "{report}");
}

#[test]
fn deregister_waits_for_sockets_to_close() {
    let mut client = Client::new();
    let socket = client.socket(AF_INET, SOCK_STREAM, IPPROTO_TCP, WSK_FLAG_CONNECTION_SOCKET).unwrap();
    let close = Req::new();
    // The close's completion routine takes its time (spinning, as code at DISPATCH_LEVEL may):
    // a close is complete only when its routine has returned.
    *close.slot.hook.lock().unwrap() = Some(Box::new(|_| {
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_millis(50) {
            std::hint::spin_loop();
        }
    }));
    let irp = close.irp as usize;
    let closer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(30));
        socket.close_with(irp as *mut IRP)
    });
    client.deregister();
    let done = close.done().expect("WskDeregister returned before the close IRP's completion routine did");
    assert_eq!(done.status, STATUS_SUCCESS);
    closer.join().unwrap();
    drop(close);
    client.unload().assert_clean();
}

#[test]
fn deregister_giving_up_on_open_sockets_is_reported() {
    let mut client = Client::with(Kernel::builder().unload_timeout(Duration::from_millis(200)));
    let socket = client.socket(AF_INET, SOCK_DGRAM, IPPROTO_UDP, WSK_FLAG_DATAGRAM_SOCKET).unwrap();
    client.deregister();
    let _ = socket;
    let report = client.unload();
    report.assert_first(Rule::WskDeregisterWithOpenSockets);
}

#[test]
fn get_address_info_above_passive_level_is_reported() {
    let report = broken_session(|client| {
        let req = Req::new();
        let mut result: *mut ADDRINFOEXW = ptr::null_mut();
        with_irql(DISPATCH_LEVEL, || unsafe {
            (client.dispatch().WskGetAddressInfo.unwrap())(
                client.provider.Client,
                ptr::null_mut(),
                ptr::null_mut(),
                NS_ALL,
                ptr::null_mut(),
                ptr::null_mut(),
                &raw mut result,
                ptr::null_mut(),
                ptr::null_mut(),
                req.irp,
            )
        });
        req.wait();
    });
    report.assert_first(Rule::IrqlTooHigh);
}
