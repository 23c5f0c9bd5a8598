//! Operation slots ([`crate::op`]): arming is refused on a busy slot, an armed slot that is
//! not submitted stays idle and hands back what it was given, and an IRP no provider routine
//! took completes as not implemented. The test plays the provider ([`super::kernel`]).

extern crate std;

use core::cell::Cell;
use core::pin::pin;
use core::task::{Context, Poll, Waker};

use wsk_sys::{IRP, STATUS_NOT_IMPLEMENTED, STATUS_PENDING, STATUS_SUCCESS};

use super::kernel::{live_blocks, provider_complete};
use crate::IoBuf;
use crate::buf::BUF_TAG;
use crate::op::{Completion, OpSlot};
use crate::socket::events::Received;

/// Polls the slot's detached operation once.
fn poll_once(slot: &mut OpSlot) -> Poll<Completion> {
    slot.poll_submitted(&mut Context::from_waker(Waker::noop()))
}

#[test]
fn arming_a_busy_slot_is_refused() {
    let mut slot = OpSlot::new().unwrap();
    let taken = Cell::new(core::ptr::null_mut::<IRP>());
    let mut armed = slot.arm().expect("a new slot is idle");
    armed.hold_buffer(Some(IoBuf::copy_from(b"data").unwrap()));
    // SAFETY: the stand-in provider keeps the IRP and completes it below.
    let in_flight = unsafe {
        armed.submit(|irp, _| {
            taken.set(irp);
            Some(STATUS_PENDING)
        })
    };
    in_flight.detach();
    assert!(slot.arm().is_err(), "a slot whose IRP the provider holds is not armed again");
    assert!(slot.args().is_none(), "nor is its argument block handed out");
    assert!(poll_once(&mut slot).is_pending());

    // SAFETY: the provider took the IRP above and has not completed it.
    unsafe { provider_complete(taken.get(), STATUS_SUCCESS, 4) };
    let Poll::Ready(done) = poll_once(&mut slot) else { panic!("the completed operation is ready") };
    assert_eq!(done.result(), Ok(4));
    assert_eq!(done.buffer.expect("buffer handed back").as_slice(), b"data");
    assert!(slot.args().is_some(), "collected: idle again");
    assert!(slot.arm().is_ok());
}

#[test]
fn an_armed_slot_dropped_unsubmitted_stays_idle_and_drops_what_it_held() {
    let mut slot = OpSlot::new().unwrap();
    let before = live_blocks(BUF_TAG);
    let mut armed = slot.arm().unwrap();
    armed.hold_buffer(Some(IoBuf::copy_from(b"data").unwrap()));
    armed.args().0.option = [7; 20];
    assert_eq!(live_blocks(BUF_TAG), before + 1);
    drop(armed);
    assert_eq!(live_blocks(BUF_TAG), before, "the buffer the guard held is freed");
    assert_eq!(slot.args().expect("idle").option, [7; 20]);
    assert!(poll_once(&mut slot).is_pending(), "nothing was submitted");
    assert!(slot.arm().is_ok(), "the slot is idle");
}

#[test]
fn a_withdrawn_arming_hands_back_what_it_held() {
    let mut slot = OpSlot::new().unwrap();
    let mut armed = slot.arm().unwrap();
    armed.hold_buffer(Some(IoBuf::copy_from(b"data").unwrap()));
    let done = armed.withdraw();
    assert_eq!(done.status, STATUS_NOT_IMPLEMENTED, "not taken");
    assert_eq!(done.buffer.expect("buffer handed back").as_slice(), b"data");
    assert!(slot.arm().is_ok(), "the slot is idle");
}

/// A missing routine (`None`) and a stub that returns `STATUS_NOT_IMPLEMENTED` without taking
/// the IRP both complete it as not implemented, with the buffer handed back.
#[test]
fn an_irp_no_routine_took_completes_as_not_implemented() {
    let mut slot = OpSlot::new().unwrap();
    for stub in [None, Some(STATUS_NOT_IMPLEMENTED)] {
        let mut armed = slot.arm().unwrap();
        armed.hold_buffer(Some(IoBuf::copy_from(b"data").unwrap()));
        // SAFETY: the IRP is passed nowhere.
        let in_flight = unsafe { armed.submit(|_, _| stub) };
        let done = match pin!(in_flight).poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(done) => done,
            Poll::Pending => panic!("completed inside submit"),
        };
        assert_eq!(done.status, STATUS_NOT_IMPLEMENTED);
        assert_eq!(done.buffer.expect("buffer handed back").as_slice(), b"data");
        assert!(slot.args().is_some(), "idle again");
    }
}

/// A received item held by a pending operation (a send of it) outlives the drop of the
/// operation's future: it is dropped (for an indication: released to WSK) once, when the
/// cancelled IRP came back, not before. A collected operation hands the item back.
#[test]
fn a_held_item_is_dropped_only_after_the_abandoned_irp_completed() {
    let mut slot = OpSlot::new().unwrap();
    let before = live_blocks(BUF_TAG);
    let taken = Cell::new(core::ptr::null_mut::<IRP>());
    let mut armed = slot.arm().unwrap();
    armed.hold_item(Some(Received::from_buffer(IoBuf::copy_from(b"item").unwrap())));
    // SAFETY: the stand-in provider keeps the IRP and completes it below.
    let in_flight = unsafe {
        armed.submit(|irp, _| {
            taken.set(irp);
            Some(STATUS_PENDING)
        })
    };
    drop(in_flight);
    assert_eq!(live_blocks(BUF_TAG), before + 1, "the item stays while the provider holds the IRP");
    // SAFETY: the provider took the IRP above and has not completed it.
    unsafe { provider_complete(taken.get(), wsk_sys::STATUS_CANCELLED, 0) };
    assert_eq!(live_blocks(BUF_TAG), before, "dropped when the IRP came back");

    let mut armed = slot.arm().expect("idle again");
    armed.hold_item(Some(Received::from_buffer(IoBuf::copy_from(b"back").unwrap())));
    // SAFETY: as above.
    let in_flight = unsafe {
        armed.submit(|irp, _| {
            taken.set(irp);
            Some(STATUS_PENDING)
        })
    };
    in_flight.detach();
    // SAFETY: as above.
    unsafe { provider_complete(taken.get(), STATUS_SUCCESS, 4) };
    let Poll::Ready(done) = poll_once(&mut slot) else { panic!("the completed operation is ready") };
    let item = done.item.expect("the item handed back");
    assert_eq!(item.len(), 4);
    assert_eq!(live_blocks(BUF_TAG), before + 1);
    drop(item);
    assert_eq!(live_blocks(BUF_TAG), before);
}

/// A pending operation whose future is dropped is cancelled; when its IRP completes, the
/// slot is idle again and the buffer freed.
#[test]
fn a_dropped_operation_is_finalized_by_its_completion() {
    let mut slot = OpSlot::new().unwrap();
    let before = live_blocks(BUF_TAG);
    let taken = Cell::new(core::ptr::null_mut::<IRP>());
    let mut armed = slot.arm().unwrap();
    armed.hold_buffer(Some(IoBuf::copy_from(b"data").unwrap()));
    // SAFETY: the stand-in provider keeps the IRP and completes it below.
    let in_flight = unsafe {
        armed.submit(|irp, _| {
            taken.set(irp);
            Some(STATUS_PENDING)
        })
    };
    drop(in_flight);
    assert!(slot.arm().is_err(), "still in flight after the cancel request");
    // SAFETY: the provider took the IRP above and has not completed it.
    unsafe { provider_complete(taken.get(), wsk_sys::STATUS_CANCELLED, 0) };
    assert_eq!(live_blocks(BUF_TAG), before, "the completion freed the buffer");
    assert!(slot.arm().is_ok(), "and left the slot idle");
}
