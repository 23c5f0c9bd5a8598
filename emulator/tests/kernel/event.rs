//! Events and waits.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use wsk_emulator::{Rule, with_irql};
use wsk_sys::*;

use crate::common::{PATIENCE, attach};

/// A heap-allocated, shareable kernel event.
struct Event(Box<KEVENT>);

// SAFETY: a KEVENT is a kernel object made to be signalled and waited on from any thread.
unsafe impl Send for Event {}
unsafe impl Sync for Event {}

impl Event {
    fn new(kind: EVENT_TYPE, signalled: bool) -> Arc<Event> {
        let mut event = Box::new(unsafe { std::mem::zeroed::<KEVENT>() });
        unsafe { KeInitializeEvent(&raw mut *event, kind, u8::from(signalled)) };
        Arc::new(Event(event))
    }

    fn ptr(&self) -> *mut KEVENT {
        (&raw const *self.0).cast_mut()
    }

    fn set(&self) -> LONG {
        unsafe { KeSetEvent(self.ptr(), IO_NO_INCREMENT, FALSE) }
    }

    fn wait(&self, timeout_100ns: Option<i64>) -> NTSTATUS {
        let mut timeout = timeout_100ns.unwrap_or(0);
        let timeout_ptr = if timeout_100ns.is_some() { &raw mut timeout } else { std::ptr::null_mut() };
        unsafe { KeWaitForSingleObject(self.ptr().cast(), Executive, KernelMode, FALSE, timeout_ptr) }
    }
}

fn patience() -> Option<i64> {
    Some(-(PATIENCE.as_nanos() as i64 / 100))
}

#[test]
fn initialize_set_clear_reset_read() {
    let driver = attach();
    let event = Event::new(NotificationEvent, false);
    unsafe {
        assert_eq!((*event.ptr()).Header.Type, 0);
        assert_eq!((*event.ptr()).Header.Size, 6);
        assert_eq!(KeReadStateEvent(event.ptr()), 0);
        assert_eq!(event.set(), 0);
        assert_eq!(event.set(), 1, "previous state");
        assert_eq!(KeReadStateEvent(event.ptr()), 1);
        assert_eq!(KeResetEvent(event.ptr()), 1);
        assert_eq!(KeReadStateEvent(event.ptr()), 0);
        event.set();
        KeClearEvent(event.ptr());
        assert_eq!(KeReadStateEvent(event.ptr()), 0);
        let initially_set = Event::new(SynchronizationEvent, true);
        assert_eq!((*initially_set.ptr()).Header.Type, 1);
        assert_eq!(KeReadStateEvent(initially_set.ptr()), 1);
    }
    driver.unload().assert_clean();
}

#[test]
fn waits_poll_time_out_and_succeed() {
    let driver = attach();
    let event = Event::new(NotificationEvent, false);
    assert_eq!(event.wait(Some(0)), STATUS_TIMEOUT, "zero timeout polls");
    assert_eq!(event.wait(Some(-10_000)), STATUS_TIMEOUT, "1 ms relative timeout");
    let absolute = unsafe { KeQueryInterruptTime() } as i64; // far in the past as a system time
    assert_eq!(event.wait(Some(absolute)), STATUS_TIMEOUT, "absolute time in the past");
    event.set();
    assert_eq!(event.wait(Some(0)), STATUS_SUCCESS);
    assert_eq!(event.wait(None), STATUS_SUCCESS, "notification events stay signalled");
    driver.unload().assert_clean();
}

#[test]
fn wait_is_woken_by_another_thread() {
    let driver = attach();
    let event = Event::new(NotificationEvent, false);
    let setter = {
        let event = Arc::clone(&event);
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(5));
            with_irql(DISPATCH_LEVEL, || event.set());
        })
    };
    assert_eq!(event.wait(patience()), STATUS_SUCCESS);
    setter.join().unwrap();
    driver.unload().assert_clean();
}

#[test]
fn synchronization_event_releases_one_waiter_per_set() {
    let driver = attach();
    let event = Event::new(SynchronizationEvent, false);
    let woken = Arc::new(AtomicU32::new(0));
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let (event, woken) = (Arc::clone(&event), Arc::clone(&woken));
            std::thread::spawn(move || {
                assert_eq!(event.wait(patience()), STATUS_SUCCESS);
                woken.fetch_add(1, Ordering::SeqCst);
            })
        })
        .collect();
    for _ in 0..3 {
        event.set();
        // Each set releases exactly one waiter and the event resets.
        while unsafe { KeReadStateEvent(event.ptr()) } != 0 {
            std::thread::yield_now();
        }
    }
    for waiter in waiters {
        waiter.join().unwrap();
    }
    assert_eq!(woken.load(Ordering::SeqCst), 3);
    assert_eq!(unsafe { KeReadStateEvent(event.ptr()) }, 0);
    driver.unload().assert_clean();
}

#[test]
fn delay_execution_sleeps() {
    let driver = attach();
    let mut interval: LARGE_INTEGER = -20_000; // 2 ms
    let start = unsafe { KeQueryInterruptTime() };
    assert_eq!(unsafe { KeDelayExecutionThread(KernelMode, FALSE, &raw mut interval) }, STATUS_SUCCESS);
    assert!(unsafe { KeQueryInterruptTime() } - start >= 20_000);
    driver.unload().assert_clean();
}

#[test]
fn zero_timeout_wait_is_allowed_at_dispatch() {
    let driver = attach();
    let event = Event::new(NotificationEvent, true);
    assert_eq!(with_irql(DISPATCH_LEVEL, || event.wait(Some(0))), STATUS_SUCCESS);
    driver.unload().assert_clean();
}

#[test]
fn blocking_wait_at_dispatch_level_is_reported() {
    let driver = attach();
    let event = Event::new(NotificationEvent, false);
    assert_eq!(with_irql(DISPATCH_LEVEL, || event.wait(Some(-10_000_000))), STATUS_TIMEOUT, "becomes a poll");
    let report = driver.unload();
    let first = report.assert_first(Rule::WaitAtDispatch);
    assert_eq!(first.code, 0xD1);

    let driver = attach();
    assert_eq!(with_irql(DISPATCH_LEVEL, || event.wait(None)), STATUS_TIMEOUT);
    driver.unload().assert_first(Rule::WaitAtDispatch);

    let driver = attach();
    let mut interval: LARGE_INTEGER = -10;
    with_irql(DISPATCH_LEVEL, || unsafe { KeDelayExecutionThread(KernelMode, FALSE, &raw mut interval) });
    driver.unload().assert_first(Rule::IrqlTooHigh);
}

#[test]
fn wait_on_something_that_is_not_an_event() {
    let driver = attach();
    let mut garbage = [0xDDDD_DDDD_DDDD_DDDDu64; 8];
    let status = unsafe {
        KeWaitForSingleObject(garbage.as_mut_ptr().cast(), Executive, KernelMode, FALSE, std::ptr::null_mut())
    };
    assert_eq!(status, STATUS_INVALID_PARAMETER);
    driver.unload().assert_first(Rule::InvalidDispatcherObject);
}
