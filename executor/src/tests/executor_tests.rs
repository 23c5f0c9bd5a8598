//! Executor, task and join handle behaviour (std threads).

use core::task::Poll;
use std::string::ToString;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::vec::Vec;

use super::platform::{TestPlatform, fail_next_allocs, set_raised_irql};
use super::util::{CountWaker, DropFlag, Gate, pending_forever, poll_with};
use crate::{Config, Executor, SpawnError, block_on_with, yield_now};

type Exec = Executor<TestPlatform>;

/// A time budget that never runs out, for tests that count runs.
const HOUR: core::time::Duration = core::time::Duration::from_secs(3600);

fn manual(config: Config) -> (Exec, super::platform::Driver) {
    let (p, driver) = TestPlatform::manual();
    (Executor::with_platform(p, config).unwrap(), driver)
}

/// Shuts down a manually driven executor, driving it from another thread meanwhile.
fn finish(exec: Exec, driver: &super::platform::Driver) {
    let stop = Arc::new(AtomicBool::new(false));
    let (d, s) = (driver.clone(), stop.clone());
    let t = std::thread::spawn(move || {
        while !s.load(SeqCst) {
            if !d.run_pending() {
                std::thread::yield_now();
            }
        }
    });
    exec.shutdown().unwrap();
    stop.store(true, SeqCst);
    t.join().unwrap();
}

fn threaded() -> Exec {
    Executor::with_platform(TestPlatform::threaded(), Config::new()).unwrap()
}

fn block_on<F: Future>(f: F) -> F::Output {
    block_on_with::<TestPlatform, F>(f).unwrap()
}

#[test]
fn spawn_runs_in_work_item_and_joins() {
    let (exec, driver) = manual(Config::new().max_time_per_run(HOUR));
    let mut handle = exec.spawn(async { 40 + 2 }).unwrap();
    let (count, waker) = CountWaker::new();
    assert!(poll_with(&mut handle, &waker).is_pending());
    assert!(driver.is_pending());
    assert_eq!(exec.live_tasks(), 1);
    assert_eq!(driver.run_until_idle(), 1);
    assert_eq!(count.count(), 1, "join waker woken on completion");
    assert!(handle.is_finished());
    assert_eq!(poll_with(&mut handle, &waker), Poll::Ready(Ok(42)));
    // Polling again is an error, not a crash.
    let again = poll_with(&mut handle, &waker);
    assert!(matches!(again, Poll::Ready(Err(e)) if e.is_output_taken()));
    drop(handle);
    assert_eq!(exec.live_tasks(), 0);
    exec.shutdown_driven(|| {
        driver.run_until_idle();
    });
}

#[test]
fn one_allocation_per_spawn_none_per_wake_or_poll() {
    use super::platform::allocs_on_this_thread;
    let (exec, driver) = manual(Config::new().max_time_per_run(HOUR));
    let before = allocs_on_this_thread();
    let h = exec
        .spawn(async {
            for _ in 0..10 {
                yield_now().await;
            }
        })
        .unwrap();
    assert_eq!(allocs_on_this_thread() - before, 1);
    let (_, waker) = CountWaker::new();
    let mut h = h;
    assert!(poll_with(&mut h, &waker).is_pending());
    driver.run_until_idle();
    assert!(poll_with(&mut h, &waker).is_ready());
    assert_eq!(allocs_on_this_thread() - before, 1, "wakes and polls allocated");
    drop(h);
    finish(exec, &driver);
}

#[test]
fn work_item_queued_once_for_many_wakes() {
    let (exec, driver) = manual(Config::new().max_time_per_run(HOUR));
    let handles: Vec<_> = (0..10).map(|i| exec.spawn(async move { i }).unwrap()).collect();
    assert_eq!(driver.requests(), 1);
    assert_eq!(driver.run_until_idle(), 1);
    for (i, h) in handles.into_iter().enumerate() {
        assert_eq!(block_on(h).unwrap(), i);
    }
    finish(exec, &driver);
}

#[test]
fn poll_budget_requeues_the_work_item() {
    let (exec, driver) = manual(Config::new().max_polls_per_run(4).max_time_per_run(HOUR));
    let done = Arc::new(AtomicUsize::new(0));
    for _ in 0..10 {
        let done = done.clone();
        exec.spawn(async move {
            done.fetch_add(1, SeqCst);
        })
        .unwrap();
    }
    assert!(driver.run_pending());
    assert_eq!(done.load(SeqCst), 4);
    assert!(driver.is_pending(), "re-queued itself");
    assert!(driver.run_pending());
    assert_eq!(done.load(SeqCst), 8);
    assert!(driver.run_pending());
    assert_eq!(done.load(SeqCst), 10);
    assert!(!driver.is_pending());
    assert_eq!(exec.live_tasks(), 0);
    finish(exec, &driver);
}

#[test]
fn time_budget_requeues_the_work_item() {
    let (exec, driver) = manual(Config::new().max_time_per_run(core::time::Duration::ZERO));
    for _ in 0..3 {
        exec.spawn(async {}).unwrap();
    }
    assert_eq!(driver.run_until_idle(), 3, "one poll per run");
    finish(exec, &driver);
}

#[test]
fn budget_with_a_self_waking_task_gives_the_thread_back() {
    let (exec, driver) = manual(Config::new().max_polls_per_run(8).max_time_per_run(HOUR));
    let h = exec
        .spawn(async {
            for _ in 0..20 {
                yield_now().await;
            }
            7
        })
        .unwrap();
    assert_eq!(driver.run_until_idle(), 3);
    assert_eq!(block_on(h).unwrap(), 7);
    finish(exec, &driver);
}

#[test]
fn yield_now_lets_queued_tasks_run() {
    let (exec, driver) = manual(Config::new().max_time_per_run(HOUR));
    let log = Arc::new(Mutex::new(Vec::new()));
    let l1 = log.clone();
    exec.spawn(async move {
        l1.lock().unwrap().push("a1");
        yield_now().await;
        l1.lock().unwrap().push("a2");
    })
    .unwrap();
    let l2 = log.clone();
    exec.spawn(async move {
        l2.lock().unwrap().push("b");
    })
    .unwrap();
    driver.run_until_idle();
    assert_eq!(*log.lock().unwrap(), ["a1", "b", "a2"]);
    finish(exec, &driver);
}

/// A leaf future that is ready at once and spends budget, as an IRP completed inside the
/// provider call does.
struct AlwaysReady;

impl Future for AlwaysReady {
    type Output = ();
    fn poll(self: core::pin::Pin<&mut Self>, cx: &mut core::task::Context<'_>) -> Poll<()> {
        crate::coop::poll_proceed(cx)
    }
}

#[test]
fn a_task_whose_operations_are_always_ready_lets_queued_tasks_run() {
    let (exec, driver) = manual(Config::new().max_time_per_run(HOUR).max_ready_per_poll(4));
    let log = Arc::new(Mutex::new(Vec::new()));
    let l1 = log.clone();
    exec.spawn(async move {
        for i in 0..10 {
            AlwaysReady.await;
            l1.lock().unwrap().push(std::format!("a{i}"));
        }
    })
    .unwrap();
    let l2 = log.clone();
    exec.spawn(async move {
        l2.lock().unwrap().push("b".to_string());
    })
    .unwrap();
    driver.run_until_idle();
    // Four ready operations per poll: the fifth reports Pending and `b` runs in between.
    let log = log.lock().unwrap().join(" ");
    assert_eq!(log, "a0 a1 a2 a3 b a4 a5 a6 a7 a8 a9");
    finish(exec, &driver);
}

#[test]
fn the_budget_is_refilled_at_every_poll_and_absent_outside_the_executor() {
    let (exec, driver) = manual(Config::new().max_time_per_run(HOUR).max_ready_per_poll(3));
    /// Counts the polls of the future it wraps.
    struct Counted<F>(core::pin::Pin<std::boxed::Box<F>>, Arc<AtomicUsize>);
    impl<F: Future> Future for Counted<F> {
        type Output = F::Output;
        fn poll(mut self: core::pin::Pin<&mut Self>, cx: &mut core::task::Context<'_>) -> Poll<F::Output> {
            self.1.fetch_add(1, SeqCst);
            self.0.as_mut().poll(cx)
        }
    }
    let polls = Arc::new(AtomicUsize::new(0));
    let work = async {
        for _ in 0..30 {
            AlwaysReady.await;
        }
    };
    let h = exec.spawn(Counted(std::boxed::Box::pin(work), polls.clone())).unwrap();
    driver.run_until_idle();
    assert!(h.is_finished());
    // 30 ready operations at 3 per poll, the budget full again at each: ten polls (the tenth
    // ends with the last operation).
    assert_eq!(polls.load(SeqCst), 10);
    // A foreign waker has no budget: 1000 ready operations in one poll.
    block_on(async {
        for _ in 0..1000 {
            AlwaysReady.await;
        }
    });
    drop(h);
    finish(exec, &driver);
}

#[test]
fn a_high_importance_task_runs_before_queued_normal_tasks_and_never_twice_while_they_wait() {
    use crate::Importance;
    let (exec, driver) = manual(Config::new().max_time_per_run(HOUR));
    let log = Arc::new(Mutex::new(Vec::new()));
    for name in ["n1", "n2", "n3"] {
        let l = log.clone();
        exec.spawn(async move { l.lock().unwrap().push(name.to_string()) }).unwrap();
    }
    let l = log.clone();
    exec.spawn_with(Importance::High, async move {
        for i in 0..5 {
            l.lock().unwrap().push(std::format!("h{i}"));
            yield_now().await;
        }
    })
    .unwrap();
    driver.run_until_idle();
    // Spawned last, polled first; then one normal task between its polls while any waits.
    assert_eq!(log.lock().unwrap().join(" "), "h0 n1 h1 n2 h2 n3 h3 h4");
    finish(exec, &driver);
}

#[test]
fn wake_from_another_thread() {
    let exec = threaded();
    let gate = Gate::new();
    let open = gate.opener();
    let h = exec
        .spawn(async move {
            gate.await;
            5
        })
        .unwrap();
    std::thread::spawn(open);
    assert_eq!(block_on(h).unwrap(), 5);
    exec.shutdown().unwrap();
}

#[test]
fn wakes_racing_with_polls_are_never_lost() {
    let exec = threaded();
    let rounds = if cfg!(miri) { 20 } else { 2000 };
    let counter = Arc::new(AtomicUsize::new(0));
    // A task that waits for `rounds` notifications, each sent by another thread right after
    // the task stored its waker: the wake races with the end of the poll.
    struct Ping {
        seen: usize,
        counter: Arc<AtomicUsize>,
        slot: Arc<Mutex<Option<core::task::Waker>>>,
    }
    let slot: Arc<Mutex<Option<core::task::Waker>>> = Arc::default();
    impl Future for Ping {
        type Output = usize;
        fn poll(mut self: core::pin::Pin<&mut Self>, cx: &mut core::task::Context<'_>) -> Poll<usize> {
            let now = self.counter.load(SeqCst);
            if now >= 1_000_000 {
                return Poll::Ready(self.seen);
            }
            if now > self.seen {
                self.seen = now;
            }
            *self.slot.lock().unwrap() = Some(cx.waker().clone());
            Poll::Pending
        }
    }
    let h = exec.spawn(Ping { seen: 0, counter: counter.clone(), slot: slot.clone() }).unwrap();
    let pinger = std::thread::spawn(move || {
        for i in 1..=rounds {
            let w = loop {
                if let Some(w) = slot.lock().unwrap().take() {
                    break w;
                }
                std::thread::yield_now();
            };
            counter.store(if i == rounds { 1_000_000 } else { i }, SeqCst);
            if i % 2 == 0 {
                w.wake();
            } else {
                w.wake_by_ref();
            }
        }
    });
    block_on(h).unwrap();
    pinger.join().unwrap();
    exec.shutdown().unwrap();
}

#[test]
fn many_tasks_many_wakers() {
    let exec = threaded();
    let n = if cfg!(miri) { 4 } else { 64 };
    let mut handles = Vec::new();
    let mut openers = Vec::new();
    for i in 0..n {
        let gate = Gate::new();
        openers.push(gate.opener());
        handles.push(
            exec.spawn(async move {
                gate.await;
                yield_now().await;
                i
            })
            .unwrap(),
        );
    }
    let threads: Vec<_> = openers.into_iter().map(std::thread::spawn).collect();
    for (i, h) in handles.into_iter().enumerate() {
        assert_eq!(block_on(h).unwrap(), i);
    }
    for t in threads {
        t.join().unwrap();
    }
    exec.shutdown().unwrap();
}

#[test]
fn task_awaits_another_tasks_join_handle() {
    let exec = threaded();
    let gate = Gate::new();
    let open = gate.opener();
    let inner = exec
        .spawn(async move {
            gate.await;
            "inner"
        })
        .unwrap();
    let outer = exec.spawn(async move { inner.await.unwrap() }).unwrap();
    std::thread::sleep(core::time::Duration::from_millis(5));
    open();
    assert_eq!(block_on(outer).unwrap(), "inner");
    exec.shutdown().unwrap();
}

#[test]
fn spawner_spawns_from_tasks() {
    let exec = threaded();
    let spawner = exec.spawner();
    let h = exec
        .spawn(async move {
            let child = spawner.spawn(async { 3 }).unwrap();
            child.await.unwrap() * 2
        })
        .unwrap();
    assert_eq!(block_on(h).unwrap(), 6);
    exec.shutdown().unwrap();
}

#[test]
fn abort_idle_task_drops_future_in_work_item() {
    let (exec, driver) = manual(Config::new().max_time_per_run(HOUR));
    let dropped = Arc::new(AtomicUsize::new(0));
    let flag = DropFlag(dropped.clone());
    let mut h = exec
        .spawn(async move {
            let _flag = flag;
            pending_forever().await;
        })
        .unwrap();
    driver.run_until_idle();
    assert_eq!(dropped.load(SeqCst), 0);
    h.abort();
    assert_eq!(dropped.load(SeqCst), 0, "not dropped by abort itself");
    assert!(driver.is_pending());
    driver.run_until_idle();
    assert_eq!(dropped.load(SeqCst), 1);
    let (_, waker) = CountWaker::new();
    assert!(matches!(poll_with(&mut h, &waker), Poll::Ready(Err(e)) if e.is_cancelled()));
    drop(h);
    assert_eq!(exec.live_tasks(), 0);
    finish(exec, &driver);
}

#[test]
fn abort_before_first_poll() {
    let (exec, driver) = manual(Config::new().max_time_per_run(HOUR));
    let polled = Arc::new(AtomicBool::new(false));
    let p = polled.clone();
    let h = exec.spawn(async move { p.store(true, SeqCst) }).unwrap();
    h.abort();
    h.abort();
    driver.run_until_idle();
    assert!(!polled.load(SeqCst));
    assert!(block_on(h).unwrap_err().is_cancelled());
    finish(exec, &driver);
}

#[test]
fn abort_completed_task_keeps_output() {
    let (exec, driver) = manual(Config::new().max_time_per_run(HOUR));
    let h = exec.spawn(async { 1 }).unwrap();
    driver.run_until_idle();
    h.abort();
    assert!(!driver.is_pending());
    assert_eq!(block_on(h).unwrap(), 1);
    finish(exec, &driver);
}

#[test]
fn detached_task_runs_and_its_output_is_dropped_in_work_item() {
    let (exec, driver) = manual(Config::new().max_time_per_run(HOUR));
    let dropped = Arc::new(AtomicUsize::new(0));
    let d = dropped.clone();
    drop(exec.spawn(async move { DropFlag(d) }).unwrap());
    assert_eq!(exec.live_tasks(), 1);
    driver.run_until_idle();
    assert_eq!(dropped.load(SeqCst), 1);
    assert_eq!(exec.live_tasks(), 0);
    finish(exec, &driver);
}

#[test]
fn join_handle_dropped_after_completion_drops_output() {
    let (exec, driver) = manual(Config::new().max_time_per_run(HOUR));
    let dropped = Arc::new(AtomicUsize::new(0));
    let d = dropped.clone();
    let h = exec.spawn(async move { DropFlag(d) }).unwrap();
    driver.run_until_idle();
    assert_eq!(dropped.load(SeqCst), 0);
    drop(h);
    assert_eq!(dropped.load(SeqCst), 1);
    finish(exec, &driver);
}

#[test]
fn join_waker_replaced_and_dropped() {
    let (exec, driver) = manual(Config::new().max_time_per_run(HOUR));
    let gate = Gate::new();
    let open = gate.opener();
    let mut h = exec.spawn(gate).unwrap();
    let (c1, w1) = CountWaker::new();
    let (c2, w2) = CountWaker::new();
    assert!(poll_with(&mut h, &w1).is_pending());
    assert!(poll_with(&mut h, &w1).is_pending());
    assert!(poll_with(&mut h, &w2).is_pending());
    driver.run_until_idle();
    open();
    driver.run_until_idle();
    assert_eq!((c1.count(), c2.count()), (0, 1));
    drop(h);
    // Only our own references to the wakers remain.
    assert_eq!(Arc::strong_count(&c1), 2);
    assert_eq!(Arc::strong_count(&c2), 2);
    finish(exec, &driver);
}

#[test]
fn spawn_without_memory_fails_cleanly() {
    let (exec, driver) = manual(Config::new().max_time_per_run(HOUR));
    let dropped = Arc::new(AtomicUsize::new(0));
    let flag = DropFlag(dropped.clone());
    fail_next_allocs(1);
    let err = exec.spawn(async move { drop(flag) }).unwrap_err();
    assert_eq!(err, SpawnError::NoMemory);
    assert_eq!(dropped.load(SeqCst), 1, "future dropped");
    assert_eq!(exec.live_tasks(), 0);
    assert!(!driver.is_pending());
    // And the executor still works.
    let h = exec.spawn(async { 9 }).unwrap();
    driver.run_until_idle();
    assert_eq!(block_on(h).unwrap(), 9);
    finish(exec, &driver);
}

#[test]
fn executor_creation_without_memory_fails() {
    let (p, _driver) = TestPlatform::manual();
    fail_next_allocs(1);
    assert!(Executor::with_platform(p, Config::new()).is_err());
}

#[test]
fn shutdown_cancels_every_task_and_waits() {
    let exec = threaded();
    let dropped = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::new();
    for _ in 0..8 {
        let flag = DropFlag(dropped.clone());
        handles.push(
            exec.spawn(async move {
                let _flag = flag;
                pending_forever().await;
            })
            .unwrap(),
        );
    }
    // Detached ones too, some never polled.
    for _ in 0..4 {
        let flag = DropFlag(dropped.clone());
        drop(exec.spawn(async move {
            let _flag = flag;
            yield_now().await;
            pending_forever().await;
        }));
    }
    let spawner = exec.spawner();
    // Join handles inside a task go away with it.
    let collector = exec
        .spawn(async move {
            for h in handles {
                let _ = h.await;
            }
        })
        .unwrap();
    drop(collector);
    exec.shutdown().unwrap();
    assert_eq!(dropped.load(SeqCst), 12);
    assert!(spawner.is_shutting_down());
    assert_eq!(spawner.spawn(async {}).unwrap_err(), SpawnError::ShuttingDown);
}

/// The run that releases the executor's last unit does not wake the shutdown waiter itself:
/// it hands the event back to its backend, which sets it as its very last act (the kernel
/// backend with a tail jump into `KeSetEvent`, so that no driver code runs on the worker
/// thread once DriverUnload may return).
#[test]
fn the_last_run_hands_the_shutdown_wake_to_its_backend() {
    let (exec, driver) = manual(Config::new());
    drop(exec.spawn(pending_forever()).unwrap());
    driver.run_until_idle();
    // The cancelling run is requested, not performed: the task keeps the executor.
    let report = exec.shutdown_within(core::time::Duration::from_millis(1)).unwrap();
    let stalled = report.stalled.expect("the task is alive until the run cancels it");
    let event =
        driver.run_pending_unset().expect("the cancelling run was requested").expect("it released the last unit");
    let stalled =
        stalled.wait_within(core::time::Duration::from_millis(20)).expect_err("the run itself woke the waiter");
    // SAFETY: the event the last run handed back; nothing else of the executor is touched.
    unsafe { <TestPlatform as crate::platform::Platform>::event_set(event.as_ptr()) };
    stalled.wait_within(core::time::Duration::from_secs(30)).expect("the backend's set wakes the waiter");
}

#[test]
fn shutdown_waits_for_outstanding_wakers() {
    let exec = threaded();
    let gate = Gate::new();
    let slot = gate.waker.clone();
    drop(exec.spawn(gate).unwrap());
    // Wait until the task has been polled and stored its waker.
    let waker = loop {
        if let Some(w) = slot.lock().unwrap().clone() {
            break w;
        }
        std::thread::yield_now();
    };
    drop(slot);
    let released = Arc::new(AtomicBool::new(false));
    let r = released.clone();
    let holder = std::thread::spawn(move || {
        std::thread::sleep(core::time::Duration::from_millis(20));
        r.store(true, SeqCst);
        // Wake after cancellation: harmless.
        waker.wake();
    });
    exec.shutdown().unwrap();
    assert!(released.load(SeqCst), "shutdown returned while a waker was alive");
    holder.join().unwrap();
}

/// A task kept alive by a waker held outside the executor: `shutdown_within` returns at its
/// deadline with the task counted alive (and the executor kept), and a later wait finishes
/// once the waker is gone. One task only: whether a second one is already freed at a short
/// deadline depends on how far the cancelling run got (under Miri's clock it had not).
#[test]
fn shutdown_within_reports_a_task_kept_alive_and_waits_again() {
    let exec = threaded();
    let gate = Gate::new();
    let slot = gate.waker.clone();
    drop(exec.spawn(gate).unwrap());
    let waker = loop {
        if let Some(w) = slot.lock().unwrap().clone() {
            break w;
        }
        std::thread::yield_now();
    };
    drop(slot);
    let report = exec.shutdown_within(core::time::Duration::from_millis(50)).unwrap();
    assert_eq!(report.cancelled, 1);
    assert_eq!(report.live_tasks(), 1, "the task whose waker is held outside is still alive");
    let stalled = report.stalled.expect("a waker alive at the deadline stalls the shutdown");
    let stalled = stalled.wait_within(core::time::Duration::from_millis(10)).unwrap_err();
    assert_eq!(stalled.live_tasks(), 1);
    drop(waker);
    stalled.wait_within(core::time::Duration::from_secs(30)).expect("the last waker released the task");
}

/// With nothing holding a task, `shutdown_within` finishes the shutdown: nothing stalls.
#[test]
fn shutdown_within_finishes_when_every_task_goes() {
    let exec = threaded();
    let dropped = Arc::new(AtomicUsize::new(0));
    for _ in 0..3 {
        let flag = DropFlag(dropped.clone());
        drop(exec.spawn(async move {
            let _flag = flag;
            pending_forever().await;
        }));
    }
    let report = exec.shutdown_within(core::time::Duration::from_secs(30)).unwrap();
    assert!(report.stalled.is_none(), "{report:?}");
    assert_eq!(report.cancelled, 3);
    assert_eq!(report.live_tasks(), 0);
    assert_eq!(dropped.load(SeqCst), 3);
}

/// Above PASSIVE_LEVEL nothing is shut down and the executor comes back.
#[test]
fn shutdown_within_above_passive_is_refused() {
    let (exec, driver) = manual(Config::new().max_time_per_run(HOUR));
    set_raised_irql(true);
    let exec = exec.shutdown_within(core::time::Duration::from_secs(1)).unwrap_err();
    set_raised_irql(false);
    assert!(!driver.is_pending());
    finish(exec, &driver);
}

/// A stalled shutdown leaked: the memory stays (no wait, no free), and the count of tasks it
/// gave up on is reported.
#[test]
#[cfg_attr(miri, ignore = "leaks the executor on purpose")]
fn a_leaked_stalled_shutdown_reports_its_tasks() {
    let exec = threaded();
    let gate = Gate::new();
    let slot = gate.waker.clone();
    drop(exec.spawn(gate).unwrap());
    let waker = loop {
        if let Some(w) = slot.lock().unwrap().clone() {
            break w;
        }
        std::thread::yield_now();
    };
    drop(slot);
    let report = exec.shutdown_within(core::time::Duration::from_millis(20)).unwrap();
    assert_eq!(report.stalled.expect("stalled").leak(), 1);
    // The waker stays valid: the executor's memory was not freed.
    waker.wake();
}

#[test]
fn shutdown_above_passive_is_refused() {
    let (exec, driver) = manual(Config::new().max_time_per_run(HOUR));
    set_raised_irql(true);
    let exec = exec.shutdown().unwrap_err();
    set_raised_irql(false);
    assert!(!driver.is_pending());
    let h = exec.spawn(async { 1 }).unwrap();
    driver.run_until_idle();
    assert_eq!(block_on(h).unwrap(), 1);
    finish(exec, &driver);
}

#[test]
fn drop_shuts_down() {
    let exec = threaded();
    let dropped = Arc::new(AtomicUsize::new(0));
    let flag = DropFlag(dropped.clone());
    drop(exec.spawn(async move {
        let _flag = flag;
        pending_forever().await;
    }));
    drop(exec);
    assert_eq!(dropped.load(SeqCst), 1);
}

#[test]
fn waker_outliving_its_task_is_harmless() {
    let (exec, driver) = manual(Config::new().max_time_per_run(HOUR));
    let stash: Arc<Mutex<Option<core::task::Waker>>> = Arc::default();
    let s = stash.clone();
    let h = exec
        .spawn(core::future::poll_fn(move |cx| {
            *s.lock().unwrap() = Some(cx.waker().clone());
            Poll::Ready(())
        }))
        .unwrap();
    driver.run_until_idle();
    block_on(h).unwrap();
    assert_eq!(exec.live_tasks(), 1, "the stashed waker keeps the task allocated");
    let w = stash.lock().unwrap().take().unwrap();
    w.wake_by_ref();
    let by_value = w.clone();
    by_value.wake();
    assert!(!driver.is_pending(), "waking a completed task does nothing");
    drop(w);
    assert_eq!(exec.live_tasks(), 0);
    finish(exec, &driver);
}

#[test]
fn tasks_are_polled_on_the_worker_thread_only() {
    let exec = threaded();
    let main = std::thread::current().id();
    let h = exec
        .spawn(async move {
            let mut ids = Vec::new();
            for _ in 0..3 {
                ids.push(std::thread::current().id());
                yield_now().await;
            }
            ids
        })
        .unwrap();
    let ids = block_on(h).unwrap();
    assert!(ids.iter().all(|id| *id != main));
    exec.shutdown().unwrap();
}
