//! `WskCloseSocket` and callbacks in flight: the close completes only after the callback
//! returned, the callback's context stays valid until then, and no callback starts after the
//! close was issued; a callback may close its own socket.

use std::io::Write;
use std::ptr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use wsk_sys::*;

use super::probe::*;
use crate::support::*;

/// What the test's receive callback finds in its context while the close waits.
const MAGIC: u64 = 0x5753_4B5F_4556_454E;

/// The socket context of the close test: freed by the close IRP's completion routine.
struct Held {
    magic: [u64; 16],
    shared: Arc<Shared>,
}

/// What the callback and the close completion observed (outlives the context).
#[derive(Default)]
struct Shared {
    entered: Option<Rendezvous>,
    release: Option<Rendezvous>,
    calls: AtomicUsize,
    /// The context was intact after the barrier.
    intact_after_barrier: AtomicBool,
    returned: AtomicBool,
    /// `returned` as seen by the close IRP's completion routine.
    close_saw_returned: AtomicBool,
    /// Calls that started after the close was issued.
    close_issued: AtomicBool,
    calls_after_close: AtomicUsize,
}

unsafe extern "system" fn on_receive_held(
    context: PVOID,
    _flags: ULONG,
    _head: *mut WSK_DATA_INDICATION,
    _indicated: SIZE_T,
    _accepted: *mut SIZE_T,
) -> NTSTATUS {
    let held = context.cast::<Held>();
    // Read what is needed before the barrier through the raw pointer each time: the test
    // frees the context only after the close completes, which must be after this returns.
    let shared = unsafe { Arc::clone(&(*held).shared) };
    if shared.close_issued.load(Ordering::SeqCst) {
        shared.calls_after_close.fetch_add(1, Ordering::SeqCst);
    }
    if shared.calls.fetch_add(1, Ordering::SeqCst) == 0 {
        shared.entered.as_ref().unwrap().wait();
        shared.release.as_ref().unwrap().wait();
        let magic = unsafe { ptr::read_volatile(&raw const (*held).magic) };
        shared.intact_after_barrier.store(magic.iter().all(|&m| m == MAGIC), Ordering::SeqCst);
    }
    shared.returned.store(true, Ordering::SeqCst);
    STATUS_SUCCESS
}

static HELD_EVENTS: WSK_CLIENT_CONNECTION_DISPATCH = WSK_CLIENT_CONNECTION_DISPATCH {
    WskReceiveEvent: Some(on_receive_held),
    WskDisconnectEvent: None,
    WskSendBacklogEvent: None,
};

#[test]
fn close_waits_for_a_receive_callback_in_flight() {
    clean_session(|client| {
        let shared = Arc::new(Shared {
            entered: Some(Rendezvous::new()),
            release: Some(Rendezvous::new()),
            ..Shared::default()
        });
        let held = Box::into_raw(Box::new(Held { magic: [MAGIC; 16], shared: shared.clone() }));
        let (listener, local) = client.listener(v4(0));
        let mut peer = std::net::TcpStream::connect(local).unwrap();
        let socket = accept_with(listener, held.cast(), &raw const HELD_EVENTS);
        assert_eq!(set_events(socket, WSK_EVENT_RECEIVE), STATUS_SUCCESS);
        peer.write_all(b"first").unwrap();
        shared.entered.as_ref().unwrap().wait();

        // The callback is blocked inside; close from this thread.
        let close = Req::new();
        {
            let shared = shared.clone();
            let held = held as usize;
            *close.slot.hook.lock().unwrap() = Some(Box::new(move |_irp| {
                shared.close_saw_returned.store(shared.returned.load(Ordering::SeqCst), Ordering::SeqCst);
                // The context goes away with the close: poison it, then free it.
                let held = held as *mut Held;
                unsafe {
                    (*held).magic = [0xDEAD; 16];
                    drop(Box::from_raw(held));
                }
            }));
        }
        shared.close_issued.store(true, Ordering::SeqCst);
        let returned = unsafe { (socket.basic().WskCloseSocket.unwrap())(socket.0, close.irp) };
        assert_eq!(returned, STATUS_PENDING, "the close waits for the callback");
        let _ = peer.write_all(b"second");
        assert!(close.wait_for(Duration::from_millis(200)).is_none(), "the close completed while the callback ran");
        shared.release.as_ref().unwrap().wait();
        let done = close.wait();
        assert_eq!(done.status, STATUS_SUCCESS);
        assert!(shared.close_saw_returned.load(Ordering::SeqCst), "the close completed before the callback returned");
        assert!(shared.intact_after_barrier.load(Ordering::SeqCst), "the context was freed under the callback");
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(shared.calls.load(Ordering::SeqCst), 1);
        assert_eq!(shared.calls_after_close.load(Ordering::SeqCst), 0, "a callback started after the close");
        listener.close();
    });
}

#[test]
fn a_callback_may_close_its_own_socket() {
    clean_session(|client| {
        let probe = Probe::leaked();
        let (listener, socket, mut peer) = connection(client, probe);
        let close = Req::new();
        let close_irp = close.irp as usize;
        let returned_by_close = Arc::new(AtomicUsize::new(0));
        {
            let returned_by_close = returned_by_close.clone();
            *probe.hook.lock().unwrap() = Some(Box::new(move |probe: &Probe| {
                let socket = Sock(probe.socket.load(Ordering::SeqCst) as *mut WSK_SOCKET);
                let status = unsafe { (socket.basic().WskCloseSocket.unwrap())(socket.0, close_irp as *mut IRP) };
                returned_by_close.store(status as u32 as usize, Ordering::SeqCst);
                None
            }));
        }
        let saw_returned = Arc::new(AtomicBool::new(false));
        {
            let saw = saw_returned.clone();
            *close.slot.hook.lock().unwrap() =
                Some(Box::new(move |_| saw.store(probe.returned.load(Ordering::SeqCst), Ordering::SeqCst)));
        }
        assert_eq!(set_events(socket, WSK_EVENT_RECEIVE | WSK_EVENT_DISCONNECT), STATUS_SUCCESS);
        peer.write_all(b"bye").unwrap();
        let done = close.wait();
        assert_eq!(done.status, STATUS_SUCCESS);
        assert_eq!(returned_by_close.load(Ordering::SeqCst), STATUS_PENDING as u32 as usize);
        assert!(saw_returned.load(Ordering::SeqCst), "the close completed after the callback returned");
        let _ = peer.write_all(b"more");
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(probe.receive_calls.load(Ordering::SeqCst), 1);
        assert!(probe.disconnects.lock().unwrap().is_empty());
        assert!(probe.problems().is_empty(), "{:?}", probe.problems());
        listener.close();
    });
}
