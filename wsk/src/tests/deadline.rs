//! Deadlines of timed operations ([`crate::op`]'s `deadline`): the slot's timer cancels the
//! IRP at expiry, the buffer comes back with `TimedOut`, data that won the race is returned,
//! and the slot is neither re-armed nor freed while the timer is set or its DPC queued. The
//! test plays the provider ([`super::kernel`]) and the clock ([`super::ktimer`]).

extern crate std;

use core::cell::Cell;
use core::task::{Context, Poll, Waker};

use wsk_sys::{IRP, STATUS_CANCELLED, STATUS_CONNECTION_RESET, STATUS_PENDING, STATUS_SUCCESS};

use super::kernel::{live_blocks, provider_complete};
use super::ktimer::{expire, is_set, last_set, queued_dpcs, run_dpcs, wine_cancel};
use crate::IoBuf;
use crate::buf::BUF_TAG;
use crate::error::Error;
use crate::op::{Completion, OP_TAG, OpArgs, OpSlot};

const DEADLINE: core::time::Duration = core::time::Duration::from_millis(5);

fn poll_once(slot: &mut OpSlot) -> Poll<Completion> {
    slot.poll_submitted(&mut Context::from_waker(Waker::noop()))
}

fn collect(slot: &mut OpSlot) -> Completion {
    match poll_once(slot) {
        Poll::Ready(done) => done,
        Poll::Pending => panic!("the operation has completed"),
    }
}

/// Submits a timed operation holding a buffer over `data`, which the stand-in provider keeps
/// pending; returns the IRP and the buffer's address.
fn submit_timed(slot: &mut OpSlot, data: &[u8]) -> (*mut IRP, *const u8) {
    let taken = Cell::new(core::ptr::null_mut::<IRP>());
    let mut armed = slot.arm().expect("idle");
    let buf = IoBuf::copy_from(data).unwrap();
    let at = buf.as_slice().as_ptr();
    armed.hold_buffer(Some(buf));
    // SAFETY: the stand-in provider keeps the IRP; the test completes it.
    let in_flight = unsafe {
        armed.submit_with_deadline(DEADLINE, |irp, _| {
            taken.set(irp);
            Some(STATUS_PENDING)
        })
    };
    in_flight.detach();
    (taken.get(), at)
}

/// Whether the IRP was cancelled (`Irp->Cancel`).
fn cancel_requested(irp: *mut IRP) -> bool {
    // SAFETY: the slot's IRP, live while the slot is.
    unsafe { (*irp).Cancel != 0 }
}

#[test]
fn an_operation_completed_in_time_disarms_its_timer() {
    let before = live_blocks(OP_TAG);
    let mut slot = OpSlot::new().unwrap();
    let (irp, _) = submit_timed(&mut slot, b"data");
    let timer = last_set();
    // SAFETY: the slot's timer, live with the slot.
    assert!(unsafe { is_set(timer) }, "the deadline is set while the IRP is pending");
    // SAFETY: the provider took the IRP and has not completed it.
    unsafe { provider_complete(irp, STATUS_SUCCESS, 4) };
    let done = collect(&mut slot);
    assert!(!done.timed_out);
    assert_eq!(done.result(), Ok(4));
    // SAFETY: as above.
    assert!(!unsafe { is_set(timer) }, "collected: the timer is cancelled");
    assert_eq!(queued_dpcs(), 0);
    assert!(!cancel_requested(irp));
    assert!(slot.arm().is_ok(), "idle again at once: the cancel won");
    drop(slot);
    assert_eq!(live_blocks(OP_TAG), before, "the timer's reference was released: the slot is freed");
}

#[test]
fn an_expired_deadline_cancels_the_irp_and_hands_the_buffer_back() {
    let mut slot = OpSlot::new().unwrap();
    let (irp, at) = submit_timed(&mut slot, b"data");
    // SAFETY: the slot's timer is set.
    unsafe { expire(last_set()) };
    run_dpcs();
    assert!(cancel_requested(irp), "the DPC cancelled the pending IRP");
    assert!(slot.arm().is_err(), "the IRP is still the provider's");
    assert!(poll_once(&mut slot).is_pending(), "the result waits for the completion");
    // SAFETY: the provider took the IRP and has not completed it.
    unsafe { provider_complete(irp, STATUS_CANCELLED, 0) };
    let done = collect(&mut slot);
    assert!(done.timed_out);
    assert_eq!(done.result(), Err(Error::TimedOut));
    let buf = done.buffer.expect("the buffer comes back");
    assert_eq!(buf.as_slice().as_ptr(), at, "the same buffer");
    assert!(slot.arm().is_ok(), "idle again");
}

#[test]
fn data_that_won_the_race_with_the_cancel_is_returned() {
    let mut slot = OpSlot::new().unwrap();
    let (irp, _) = submit_timed(&mut slot, b"data");
    // SAFETY: the slot's timer is set.
    unsafe { expire(last_set()) };
    run_dpcs();
    // SAFETY: the provider took the IRP and has not completed it.
    unsafe { provider_complete(irp, STATUS_SUCCESS, 3) };
    let done = collect(&mut slot);
    assert!(done.timed_out, "the deadline passed");
    assert_eq!(done.result(), Ok(3), "but the data is returned");
}

/// Only a cancel is a timeout: another failure after the deadline passed is reported as it is.
#[test]
fn another_failure_after_the_deadline_keeps_its_status() {
    let mut slot = OpSlot::new().unwrap();
    let (irp, _) = submit_timed(&mut slot, b"data");
    // SAFETY: the slot's timer is set.
    unsafe { expire(last_set()) };
    run_dpcs();
    // SAFETY: the provider took the IRP and has not completed it.
    unsafe { provider_complete(irp, STATUS_CONNECTION_RESET, 0) };
    let done = collect(&mut slot);
    assert!(done.timed_out);
    assert_eq!(done.result(), Err(Error::Status(STATUS_CONNECTION_RESET)));
}

/// The IRP completes, then the timer expires before the owner collects: its DPC is queued
/// when the owner cancels the timer (FALSE). The slot is not armed again until the DPC ran,
/// and the DPC leaves the completed IRP alone.
#[test]
fn a_dpc_queued_at_collection_keeps_the_slot_until_it_ran() {
    let mut slot = OpSlot::new().unwrap();
    let (irp, _) = submit_timed(&mut slot, b"data");
    // SAFETY: the provider took the IRP and has not completed it.
    unsafe { provider_complete(irp, STATUS_SUCCESS, 4) };
    // SAFETY: the slot's timer is set.
    unsafe { expire(last_set()) };
    let done = collect(&mut slot);
    assert!(!done.timed_out, "the DPC has not run: the result is the provider's");
    assert_eq!(done.result(), Ok(4));
    assert!(slot.arm().is_err(), "the DPC may still touch the IRP: not idle");
    assert!(slot.poll_idle(&mut Context::from_waker(Waker::noop())).is_pending());
    run_dpcs();
    assert!(!cancel_requested(irp), "the DPC cancels only an IRP in flight");
    assert!(slot.arm().is_ok(), "idle once the DPC ran");
}

#[test]
fn a_slot_dropped_with_its_dpc_queued_is_freed_by_the_dpc() {
    let before = live_blocks(OP_TAG);
    let mut slot = OpSlot::new().unwrap();
    let (irp, _) = submit_timed(&mut slot, b"data");
    // SAFETY: the provider took the IRP and has not completed it.
    unsafe { provider_complete(irp, STATUS_SUCCESS, 4) };
    // SAFETY: the slot's timer is set.
    unsafe { expire(last_set()) };
    drop(collect(&mut slot));
    drop(slot);
    assert_eq!(live_blocks(OP_TAG), before + 1, "the queued DPC holds the slot");
    run_dpcs();
    assert_eq!(live_blocks(OP_TAG), before, "the DPC released the last reference");
}

/// A timed operation whose future is dropped: the timer is cancelled with the IRP, and the
/// completion finalizes the slot as for any dropped operation.
#[test]
fn an_abandoned_timed_operation_disarms_its_timer() {
    let bufs = live_blocks(BUF_TAG);
    let mut slot = OpSlot::new().unwrap();
    let taken = Cell::new(core::ptr::null_mut::<IRP>());
    let mut armed = slot.arm().unwrap();
    armed.hold_buffer(Some(IoBuf::copy_from(b"data").unwrap()));
    // SAFETY: the stand-in provider keeps the IRP; the test completes it.
    let in_flight = unsafe {
        armed.submit_with_deadline(DEADLINE, |irp, _| {
            taken.set(irp);
            Some(STATUS_PENDING)
        })
    };
    drop(in_flight);
    // SAFETY: the slot's timer, live with the slot.
    assert!(!unsafe { is_set(last_set()) }, "the timer is cancelled with the operation");
    assert!(cancel_requested(taken.get()));
    // SAFETY: the provider took the IRP and has not completed it.
    unsafe { provider_complete(taken.get(), STATUS_CANCELLED, 0) };
    assert_eq!(live_blocks(BUF_TAG), bufs, "the completion freed the buffer");
    assert!(slot.arm().is_ok(), "and left the slot idle");
}

#[test]
fn an_operation_completed_inside_the_call_sets_no_timer() {
    let mut slot = OpSlot::new().unwrap();
    let mut armed = slot.arm().unwrap();
    armed.hold_buffer(Some(IoBuf::copy_from(b"data").unwrap()));
    let complete_at_once = |irp: *mut IRP, _: *mut OpArgs| {
        // SAFETY: the IRP was handed to this provider and is not completed yet.
        unsafe { provider_complete(irp, STATUS_SUCCESS, 2) };
        Some(STATUS_SUCCESS)
    };
    // SAFETY: the stand-in provider completes the IRP inside the call.
    let in_flight = unsafe { armed.submit_with_deadline(DEADLINE, complete_at_once) };
    in_flight.detach();
    assert!(last_set().is_null(), "no timer was set");
    assert_eq!(collect(&mut slot).result(), Ok(2));
}

/// Under Wine's `KeCancelTimer` (TRUE for a timer that expired, a queued DPC removed): the
/// same slot through an expiry, a cancel that removes a queued DPC, and a cancel before
/// expiry; the timer's reference is released exactly once each time.
#[test]
fn under_wine_cancel_each_arming_is_released_once() {
    wine_cancel();
    let before = live_blocks(OP_TAG);
    let mut slot = OpSlot::new().unwrap();
    // Expired, DPC run, then completed: nothing left to cancel.
    let (irp, _) = submit_timed(&mut slot, b"one");
    // SAFETY: the slot's timer is set.
    unsafe { expire(last_set()) };
    run_dpcs();
    // SAFETY: the provider took the IRP and has not completed it.
    unsafe { provider_complete(irp, STATUS_CANCELLED, 0) };
    assert_eq!(collect(&mut slot).result(), Err(Error::TimedOut));
    // Completed, expired with the DPC queued: the cancel removes it (TRUE, DPC not run).
    let (irp, _) = submit_timed(&mut slot, b"two");
    // SAFETY: as above.
    unsafe { provider_complete(irp, STATUS_SUCCESS, 3) };
    // SAFETY: the slot's timer is set.
    unsafe { expire(last_set()) };
    assert_eq!(collect(&mut slot).result(), Ok(3));
    assert_eq!(queued_dpcs(), 0, "Wine's cancel removed the queued DPC");
    assert!(slot.arm().is_ok(), "idle: the cancel released the timer's reference");
    // Completed before expiry.
    let (irp, _) = submit_timed(&mut slot, b"three");
    // SAFETY: as above.
    unsafe { provider_complete(irp, STATUS_SUCCESS, 5) };
    assert_eq!(collect(&mut slot).result(), Ok(5));
    drop(slot);
    assert_eq!(live_blocks(OP_TAG), before, "freed: every arming's reference released once");
}
