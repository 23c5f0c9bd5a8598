//! `Sleep` and `Timeout` over the test platform's timers.

use core::future::Future;
use core::time::Duration;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use super::platform::{TestPlatform, TimerThreads, fail_next_allocs};
use super::util::{DropFlag, pending_forever};
use crate::time::{Elapsed, Sleep, Timeout};
use crate::{Config, Executor, block_on_with};

fn block_on<F: Future>(f: F) -> F::Output {
    block_on_with::<TestPlatform, F>(f).unwrap()
}

fn sleep(d: Duration) -> Sleep<TestPlatform> {
    Sleep::new(d)
}

fn timeout<F: Future>(d: Duration, f: F) -> Timeout<F, TestPlatform> {
    Timeout::new(d, f)
}

fn now() -> std::time::Instant {
    std::time::Instant::now()
}

#[test]
fn sleep_waits_at_least_its_duration() {
    let _timers = TimerThreads;
    let start = now();
    block_on(sleep(Duration::from_millis(10)));
    assert!(start.elapsed() >= Duration::from_millis(10));
}

#[test]
fn zero_sleep_is_immediate_and_allocates_nothing() {
    let _timers = TimerThreads;
    fail_next_allocs(1);
    let mut s = sleep(Duration::ZERO);
    let (_, waker) = super::util::CountWaker::new();
    assert!(super::util::poll_with(&mut s, &waker).is_ready());
    assert!(s.is_elapsed());
    fail_next_allocs(0);
}

#[test]
fn sleep_retries_when_memory_is_short() {
    let _timers = TimerThreads;
    block_on(async {
        let s = sleep(Duration::from_millis(2));
        fail_next_allocs(1);
        s.await;
    });
}

#[test]
fn dropping_an_armed_sleep_cancels_it() {
    let _timers = TimerThreads;
    let mut s = sleep(Duration::from_secs(3600));
    let (count, waker) = super::util::CountWaker::new();
    assert!(super::util::poll_with(&mut s, &waker).is_pending());
    drop(s);
    assert_eq!(count.count(), 0);
    // The timer's memory and its waker reference are gone.
    assert_eq!(Arc::strong_count(&count), 2);
}

#[test]
fn timeout_elapses_and_drops_the_future() {
    let _timers = TimerThreads;
    let dropped = Arc::new(AtomicUsize::new(0));
    let flag = DropFlag(dropped.clone());
    let r = block_on(timeout(Duration::from_millis(5), async move {
        let _flag = flag;
        pending_forever().await;
    }));
    assert_eq!(r, Err(Elapsed));
    assert_eq!(dropped.load(SeqCst), 1);
}

#[test]
fn timeout_passes_the_output_through() {
    let _timers = TimerThreads;
    let r = block_on(timeout(Duration::from_secs(3600), async { 5 }));
    assert_eq!(r, Ok(5));
    let r = block_on(timeout(Duration::from_secs(3600), sleep(Duration::from_millis(1))));
    assert_eq!(r, Ok(()));
}

#[test]
fn tasks_sleep_without_blocking_the_work_item() {
    let _timers = TimerThreads;
    let exec = Executor::with_platform(TestPlatform::threaded(), Config::new()).unwrap();
    let order = Arc::new(std::sync::Mutex::new(std::vec::Vec::new()));
    let o1 = order.clone();
    // Spawned first and sleeping far longer than the test runs: it must not hold up the other.
    let slow = exec
        .spawn(async move {
            Sleep::<TestPlatform>::new(Duration::from_secs(600)).await;
            o1.lock().unwrap().push("slow");
        })
        .unwrap();
    let o2 = order.clone();
    let fast = exec
        .spawn(async move {
            Sleep::<TestPlatform>::new(Duration::from_millis(1)).await;
            o2.lock().unwrap().push("fast");
        })
        .unwrap();
    block_on(fast).unwrap();
    assert_eq!(*order.lock().unwrap(), ["fast"]);
    slow.abort();
    assert!(block_on(slow).unwrap_err().is_cancelled());
    exec.shutdown().unwrap();
}

#[test]
fn shutdown_cancels_sleeping_tasks() {
    let _timers = TimerThreads;
    let exec = Executor::with_platform(TestPlatform::threaded(), Config::new()).unwrap();
    let dropped = Arc::new(AtomicUsize::new(0));
    for _ in 0..4 {
        let flag = DropFlag(dropped.clone());
        drop(exec.spawn(async move {
            let _flag = flag;
            Sleep::<TestPlatform>::new(Duration::from_secs(3600)).await;
        }));
    }
    // Let them arm their timers.
    std::thread::sleep(Duration::from_millis(10));
    exec.shutdown().unwrap();
    assert_eq!(dropped.load(SeqCst), 4);
}

#[test]
fn timer_fired_by_hand_wakes_and_frees() {
    let _timers = TimerThreads;
    use super::platform::{fire, timer_slot};
    use crate::time::timer::TimerRef;
    let (count, waker) = super::util::CountWaker::new();
    let t = TimerRef::<TestPlatform>::start(Duration::from_secs(3600), &waker).unwrap();
    // SAFETY: the timer is alive while `t` is.
    let slot = unsafe { timer_slot(t.raw_timer()) };
    assert!(!t.is_fired());
    fire(&slot);
    assert!(t.is_fired());
    assert_eq!(count.count(), 1);
    fire(&slot);
    assert_eq!(count.count(), 1, "fires once");
    drop(t);
    assert_eq!(Arc::strong_count(&count), 2);
}
