//! `block_on` behaviour.

use core::task::Poll;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

use super::platform::{TestPlatform, fail_next_allocs, set_raised_irql};
use super::util::{DropFlag, Gate};
use crate::{BlockOnError, block_on_with, yield_now};

fn block_on<F: Future>(f: F) -> Result<F::Output, BlockOnError> {
    block_on_with::<TestPlatform, F>(f)
}

#[test]
fn ready_future() {
    assert_eq!(block_on(async { 3 }), Ok(3));
}

#[test]
fn borrows_from_the_stack() {
    let mut v = 1;
    block_on(async {
        yield_now().await;
        v += 1;
    })
    .unwrap();
    assert_eq!(v, 2);
}

#[test]
fn woken_from_another_thread() {
    let gate = Gate::new();
    let open = gate.opener();
    let t = std::thread::spawn(move || {
        std::thread::sleep(core::time::Duration::from_millis(5));
        open();
    });
    block_on(gate).unwrap();
    t.join().unwrap();
}

#[test]
fn refuses_above_passive() {
    let dropped = Arc::new(AtomicUsize::new(0));
    let flag = DropFlag(dropped.clone());
    set_raised_irql(true);
    let r = block_on(async move { drop(flag) });
    set_raised_irql(false);
    assert_eq!(r, Err(BlockOnError::NotPassive));
    assert_eq!(dropped.load(SeqCst), 1);
}

#[test]
fn no_memory_is_an_error() {
    fail_next_allocs(1);
    assert_eq!(block_on(async {}), Err(BlockOnError::NoMemory));
}

#[test]
fn waker_may_outlive_the_call() {
    let stash: Arc<Mutex<Option<core::task::Waker>>> = Arc::default();
    let s = stash.clone();
    block_on(core::future::poll_fn(move |cx| {
        *s.lock().unwrap() = Some(cx.waker().clone());
        Poll::Ready(())
    }))
    .unwrap();
    let w = stash.lock().unwrap().take().unwrap();
    // The event is still allocated: waking sets it, dropping frees it.
    w.wake_by_ref();
    w.wake();
}

#[test]
fn wake_before_wait_is_not_lost() {
    let mut first = true;
    block_on(core::future::poll_fn(|cx| {
        if first {
            first = false;
            cx.waker().wake_by_ref();
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    }))
    .unwrap();
}
