//! Requests that race a callback in flight on another thread: the client's consumer may
//! release the chain the callback is retaining before the callback returned, and may resume
//! indications (a zero-length `WskReceive`) before the refusing callback's answer arrived.
//! Microsoft's documentation does not speak of either; the provider takes the release as
//! effective when the callback retains the chain (a violation if it does not), and applies
//! the resume after the callback's answer.

use std::io::Write;
use std::sync::atomic::Ordering;

use wsk_emulator::Rule;
use wsk_sys::*;

use super::probe::*;
use crate::support::*;

/// A connection whose receive callback is held at a gate while handling `bytes`; returns the
/// gate (entered already) and the head of the chain being handled.
fn held_callback(client: &Client, mode: u32) -> (Sock, Sock, &'static Probe, std::sync::Arc<Gate>, usize) {
    let probe = Probe::leaked();
    let (listener, socket, mut peer) = connection(client, probe);
    probe.set_mode(mode);
    let gate = Gate::new();
    *probe.gate.lock().unwrap() = Some(gate.clone());
    assert_eq!(set_events(socket, WSK_EVENT_RECEIVE), STATUS_SUCCESS);
    peer.write_all(&pattern(3000, 5)).unwrap();
    gate.entered.wait();
    let head = probe.current_head.load(Ordering::SeqCst);
    assert_ne!(head, 0);
    std::mem::forget(peer);
    (listener, socket, probe, gate, head)
}

#[test]
fn a_release_during_the_callback_takes_effect_when_it_retains() {
    clean_session(|client| {
        let (listener, socket, probe, gate, head) = held_callback(client, RETAIN);
        // The consumer on another CPU was quicker than the callback's return.
        assert_eq!(release_data(socket, head), STATUS_SUCCESS);
        gate.release.wait();
        eventually("the callback returned", || probe.returned.load(Ordering::SeqCst));
        settle();
        // Released once: the close finds nothing held, and a second release is refused.
        socket.close();
        listener.close();
    });
}

#[test]
fn a_release_during_a_callback_that_does_not_retain_is_reported() {
    let report = broken_session(|client| {
        let (listener, socket, probe, gate, head) = held_callback(client, ACCEPT_ALL);
        assert_eq!(release_data(socket, head), STATUS_SUCCESS);
        // BUG: the callback then says it consumed the data (not retained).
        gate.release.wait();
        eventually("the callback returned", || probe.returned.load(Ordering::SeqCst));
        settle();
        socket.close();
        listener.close();
    });
    report.assert_first(Rule::WskIndicationReleasedTwice);
    assert!(report.to_string().contains("while its callback ran"), "{report}");
}

#[test]
fn a_zero_length_receive_during_a_refusing_callback_resumes_after_its_answer() {
    clean_session(|client| {
        let (listener, socket, probe, gate, _) = held_callback(client, REFUSE);
        // Resume requested while the refusal is still on its way.
        let mut empty = WSK_BUF { Mdl: std::ptr::null_mut(), Offset: 0, Length: 0 };
        let req = Req::new();
        let status = unsafe { (socket.connection().WskReceive.unwrap())(socket.0, &raw mut empty, 0, req.irp) };
        assert_eq!(status, STATUS_SUCCESS);
        assert_eq!(req.wait().status, STATUS_SUCCESS);
        // A hook answers for the held call (the mode is read after the gate): it refuses,
        // once; later calls accept everything.
        let mut refused = false;
        *probe.hook.lock().unwrap() = Some(Box::new(move |_| {
            let first = !refused;
            refused = true;
            if first { Some(STATUS_DATA_NOT_ACCEPTED) } else { None }
        }));
        probe.set_mode(ACCEPT_ALL);
        gate.release.wait();
        // The refused bytes come again, after the refusal: the resume was not lost.
        eventually("the refused data indicated again", || probe.data().len() == 3000);
        assert_eq!(probe.data(), pattern(3000, 5));
        assert!(probe.problems().is_empty(), "{:?}", probe.problems());
        socket.close();
        listener.close();
    });
}
