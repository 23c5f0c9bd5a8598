//! The executor on the emulated kernel, verifier on: `block_on` in DriverEntry and its refusal
//! above PASSIVE_LEVEL, `JoinHandle::abort`, shutdown with tasks that will never finish, and
//! 100,000 tasks. Every test ends with DriverUnload shutting the executor down and a clean
//! verifier report (no leak, no violation).
//!
//! Wakes from DPCs and other processors are in `executor_wakes.rs`, the low-resources sweep in
//! `executor_low_resources.rs`.

use std::future::{Future, pending, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};
use std::thread;
use std::time::{Duration, Instant};

use wsk_executor::{
    BlockOnError, Config, Executor, IoObject, JoinHandle, SpawnError, StartError, block_on, sleep, timeout, yield_now,
};
use wsk_sys::{DISPATCH_LEVEL, DRIVER_OBJECT, KIRQL, KeGetCurrentIrql, NTSTATUS, PASSIVE_LEVEL, UNICODE_STRING};
use wsk_tests::{
    EXECUTOR, Watchdog, load, lock, plain_driver_entry, start_executor, unload_clean, wait_until, with_executor,
};

/// Records the IRQL it is dropped at, and that it was dropped.
struct DropProbe {
    dropped: Arc<AtomicUsize>,
    dropped_above_passive: Arc<AtomicUsize>,
}

impl DropProbe {
    fn new(dropped: &Arc<AtomicUsize>, dropped_above_passive: &Arc<AtomicUsize>) -> Self {
        Self { dropped: dropped.clone(), dropped_above_passive: dropped_above_passive.clone() }
    }
}

impl Drop for DropProbe {
    fn drop(&mut self) {
        if KeGetCurrentIrql() != PASSIVE_LEVEL {
            self.dropped_above_passive.fetch_add(1, Ordering::SeqCst);
        }
        self.dropped.fetch_add(1, Ordering::SeqCst);
    }
}

// ---------------------------------------------------------------------------------------------
// block_on from DriverEntry

/// The task's output plus 2, whether the timeout elapsed, and the IRQL `block_on` polled at.
type EntryObservation = (u32, bool, KIRQL);

/// What `block_on_entry` observed, checked by the test (DriverEntry must not panic).
static ENTRY_OUTCOME: std::sync::Mutex<Option<Result<EntryObservation, String>>> = std::sync::Mutex::new(None);

/// DriverEntry that creates the executor, spawns a task that sleeps on a KTIMER and yields,
/// and waits for it with `block_on` (PASSIVE_LEVEL, on the loading thread), together with a
/// `timeout` that must expire before the hour-long sleep it wraps.
unsafe extern "system" fn block_on_entry(driver: *mut DRIVER_OBJECT, _registry: *mut UNICODE_STRING) -> NTSTATUS {
    // SAFETY: DriverEntry's own driver object.
    let status = unsafe { start_executor(driver, Config::new()) };
    if status != 0 {
        *lock(&ENTRY_OUTCOME) = Some(Err(format!("executor not created: 0x{status:08X}")));
        return status;
    }
    let spawned = with_executor(|executor| {
        executor.spawn(async {
            // Long enough that a preemption between creating the sleep and its first poll
            // (which would find the deadline passed and arm no KTIMER) is not plausible.
            sleep(Duration::from_millis(50)).await;
            yield_now().await;
            40u32
        })
    });
    let outcome = match spawned {
        Err(e) => Err(format!("spawn failed: {e}")),
        Ok(handle) => match block_on(async move {
            let from_task = handle.await;
            // The inner sleep's KTIMER is cancelled when the timeout drops it.
            let timed_out = timeout(Duration::from_millis(50), sleep(Duration::from_secs(3600))).await.is_err();
            (from_task, timed_out, KeGetCurrentIrql())
        }) {
            Err(e) => Err(format!("block_on failed: {e}")),
            Ok((Err(e), _, _)) => Err(format!("task failed: {e}")),
            Ok((Ok(value), timed_out, irql)) => Ok((value + 2, timed_out, irql)),
        },
    };
    *lock(&ENTRY_OUTCOME) = Some(outcome);
    // Success either way: the test asserts on the outcome, and unload shuts the executor down.
    0
}

#[test]
fn block_on_runs_in_driver_entry() {
    let _watchdog = Watchdog::test("block_on_runs_in_driver_entry");
    let driver = load("ex-block-on-entry", block_on_entry);
    let outcome = lock(&ENTRY_OUTCOME).take().expect("DriverEntry ran");
    let (value, timed_out, irql) = outcome.unwrap_or_else(|e| panic!("DriverEntry: {e}"));
    assert_eq!(value, 42);
    assert!(timed_out, "timeout(50 ms, sleep(1 h)) must elapse");
    assert_eq!(irql, PASSIVE_LEVEL, "block_on polls on the calling thread");
    let (report, _) = unload_clean(driver);
    assert!(report.counters.timers_fired >= 2, "the sleep and the timeout fired KTIMERs: {}", report.counters);
}

// ---------------------------------------------------------------------------------------------
// block_on and the other PASSIVE_LEVEL-only calls refused above PASSIVE_LEVEL

#[test]
fn passive_only_calls_are_refused_at_dispatch_level() {
    let _watchdog = Watchdog::test("passive_only_calls_are_refused_at_dispatch_level");
    let driver = load("ex-refused-at-dispatch", plain_driver_entry);

    let polled = AtomicBool::new(false);
    let refused = driver.run_at(DISPATCH_LEVEL, || {
        block_on(async {
            polled.store(true, Ordering::SeqCst);
            1
        })
    });
    assert_eq!(refused, Err(BlockOnError::NotPassive));
    assert!(!polled.load(Ordering::SeqCst), "a refused block_on must not poll its future");

    // SAFETY: the loaded driver's object, alive until unload.
    let io = unsafe { IoObject::from_driver(driver.driver_object()) };
    let created = driver.run_at(DISPATCH_LEVEL, || Executor::new(io).map(drop));
    assert_eq!(created, Err(StartError::NotPassive));

    // Shutdown above PASSIVE_LEVEL gives the executor back untouched; it keeps working.
    let executor = lock(&EXECUTOR).take().expect("DriverEntry stored the executor");
    let executor = driver.run_at(DISPATCH_LEVEL, || executor.shutdown()).expect_err("shutdown must be refused");
    let handle = driver.run_at(DISPATCH_LEVEL, || executor.spawn(async { 5u8 })).expect("spawn at DISPATCH_LEVEL");
    *lock(&EXECUTOR) = Some(executor);
    assert_eq!(block_on(handle).expect("PASSIVE_LEVEL again").expect("task output"), 5);

    // Not a single verifier violation: nothing waited at DISPATCH_LEVEL.
    unload_clean(driver);
}

// ---------------------------------------------------------------------------------------------
// JoinHandle::abort

#[test]
fn join_handle_abort() {
    let _watchdog = Watchdog::test("join_handle_abort");
    let driver = load("ex-abort", plain_driver_entry);
    let dropped = Arc::new(AtomicUsize::new(0));
    let dropped_above_passive = Arc::new(AtomicUsize::new(0));

    // An idle task (pending forever, polled once): aborting drops its future in the work item.
    let polled = Arc::new(AtomicBool::new(false));
    let handle = with_executor(|executor| {
        let probe = DropProbe::new(&dropped, &dropped_above_passive);
        let polled = polled.clone();
        executor.spawn(async move {
            let _probe = probe;
            polled.store(true, Ordering::SeqCst);
            pending::<u32>().await
        })
    })
    .unwrap();
    wait_until("the first poll", Duration::from_secs(60), || polled.load(Ordering::SeqCst));
    assert!(!handle.is_finished());
    handle.abort();
    let err = block_on(handle).unwrap().expect_err("aborted");
    assert!(err.is_cancelled(), "{err}");
    assert_eq!(dropped.load(Ordering::SeqCst), 1);

    // Aborted from DISPATCH_LEVEL on another thread, while sleeping on a KTIMER.
    let handle = with_executor(|executor| {
        let probe = DropProbe::new(&dropped, &dropped_above_passive);
        executor.spawn(async move {
            let _probe = probe;
            sleep(Duration::from_secs(3600)).await;
        })
    })
    .unwrap();
    wait_until("the timer to be armed", Duration::from_secs(60), || wsk_executor::kernel::live_timers() == 1);
    thread::scope(|s| {
        s.spawn(|| driver.run_at(DISPATCH_LEVEL, || handle.abort()));
    });
    assert!(block_on(handle).unwrap().unwrap_err().is_cancelled());
    assert_eq!(dropped.load(Ordering::SeqCst), 2);
    assert_eq!(wsk_executor::kernel::live_timers(), 0, "the cancelled sleep released its KTIMER");

    // Aborted before its first poll: spawned and aborted by a task within one poll, so the work
    // item cannot have polled it in between.
    let spawner = with_executor(Executor::spawner);
    let never_polled = Arc::new(AtomicBool::new(false));
    let flag = never_polled.clone();
    let outer = with_executor(|executor| {
        executor.spawn(async move {
            let inner = spawner.spawn(async move { flag.store(true, Ordering::SeqCst) })?;
            inner.abort();
            Ok::<_, SpawnError>(inner.await)
        })
    })
    .unwrap();
    let inner = block_on(outer).unwrap().unwrap().expect("spawned");
    assert!(inner.unwrap_err().is_cancelled());
    assert!(!never_polled.load(Ordering::SeqCst), "an aborted task must never be polled");

    // Aborting a completed task keeps its output.
    let handle = with_executor(|executor| executor.spawn(async { 7u64 })).unwrap();
    wait_until("completion", Duration::from_secs(60), || handle.is_finished());
    handle.abort();
    assert_eq!(block_on(handle).unwrap().unwrap(), 7);

    assert_eq!(dropped_above_passive.load(Ordering::SeqCst), 0, "futures are dropped at PASSIVE_LEVEL");
    unload_clean(driver);
}

// ---------------------------------------------------------------------------------------------
// Shutdown with tasks that never finish

/// A future that stores its own task's waker and never completes: the task references
/// itself until its future is dropped.
struct HoldsOwnWaker {
    waker: Option<Waker>,
}

impl Future for HoldsOwnWaker {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

#[test]
fn shutdown_cancels_tasks_that_never_finish() {
    let _watchdog = Watchdog::test("shutdown_cancels_tasks_that_never_finish");
    let driver = load("ex-shutdown-pending", plain_driver_entry);
    let dropped = Arc::new(AtomicUsize::new(0));
    let dropped_above_passive = Arc::new(AtomicUsize::new(0));
    let started = Arc::new(AtomicUsize::new(0));
    const EACH: usize = 16;

    let mut spawned = 0;
    with_executor(|executor| {
        let new_probe = || DropProbe::new(&dropped, &dropped_above_passive);
        for i in 0..EACH {
            // Sleeping on armed KTIMERs (long and short-but-not-yet).
            let (probe, count) = (new_probe(), started.clone());
            let secs = if i % 2 == 0 { 3600 } else { 60 };
            drop(executor.spawn(async move {
                let _probe = probe;
                count.fetch_add(1, Ordering::SeqCst);
                sleep(Duration::from_secs(secs)).await;
            }));
            // Pending forever without a waker anywhere.
            let (probe, count) = (new_probe(), started.clone());
            drop(executor.spawn(async move {
                let _probe = probe;
                count.fetch_add(1, Ordering::SeqCst);
                pending::<()>().await;
            }));
            // Holding a clone of its own waker.
            let (probe, count) = (new_probe(), started.clone());
            drop(executor.spawn(async move {
                let _probe = probe;
                count.fetch_add(1, Ordering::SeqCst);
                HoldsOwnWaker { waker: None }.await;
            }));
            // Awaiting the JoinHandle of another task that never finishes, under a timeout
            // that will not expire before the unload.
            let (probe, count) = (new_probe(), started.clone());
            let never = executor.spawn(pending::<u8>()).unwrap();
            drop(executor.spawn(async move {
                let _probe = probe;
                count.fetch_add(1, Ordering::SeqCst);
                let _ = timeout(Duration::from_secs(3600), never).await;
            }));
            spawned += 5;
        }
    });
    let waiting = 4 * EACH;
    wait_until("every task's first poll", Duration::from_secs(60), || started.load(Ordering::SeqCst) == waiting);
    // Give the armed timers a moment to be armed by the sleepers still being polled.
    wait_until("every KTIMER armed", Duration::from_secs(60), || wsk_executor::kernel::live_timers() == 2 * EACH);

    let start = Instant::now();
    let (report, record) = unload_clean(driver);
    eprintln!("shutdown of {spawned} pending tasks took {} us (unload {:?})", record.shutdown_micros, start.elapsed());
    assert_eq!(record.live_tasks_before_shutdown, spawned);
    assert_eq!(dropped.load(Ordering::SeqCst), waiting, "every future was dropped");
    assert_eq!(dropped_above_passive.load(Ordering::SeqCst), 0, "futures are dropped at PASSIVE_LEVEL");
    assert_eq!(report.counters.pool_allocations, report.counters.pool_frees, "{}", report.counters);
}

// ---------------------------------------------------------------------------------------------
// 100,000 tasks

#[test]
fn hundred_thousand_tasks_spawned_and_completed() {
    const TASKS: u64 = 100_000;
    let _watchdog = Watchdog::test("hundred_thousand_tasks_spawned_and_completed");
    // Verifier on; allocation backtraces off, or capturing 100,000 of them dominates the run.
    let driver = wsk_tests::builder()
        .capture_sites(false)
        .load("ex-100k", plain_driver_entry)
        .unwrap_or_else(|e| panic!("did not load: {e}"));
    let allocations_before = driver.counters().pool_allocations;
    let start = Instant::now();
    let handles: Vec<JoinHandle<u64>> = with_executor(|executor| {
        (0..TASKS)
            .map(|i| {
                let spawned = if i % 16 == 0 {
                    // Some from DISPATCH_LEVEL, as a completion routine would.
                    driver.run_at(DISPATCH_LEVEL, || {
                        executor.spawn(async move {
                            yield_now().await;
                            i
                        })
                    })
                } else {
                    executor.spawn(async move { i })
                };
                spawned.unwrap_or_else(|e| panic!("spawn {i}: {e}"))
            })
            .collect()
    });
    let spawned_in = start.elapsed();
    let sum = block_on(async move {
        let mut sum = 0;
        for handle in handles {
            sum += handle.await.expect("task output");
        }
        sum
    })
    .unwrap();
    let elapsed = start.elapsed();
    assert_eq!(sum, TASKS * (TASKS - 1) / 2);
    let allocations = driver.counters().pool_allocations - allocations_before;
    eprintln!(
        "{TASKS} tasks spawned in {spawned_in:?}, all completed and joined in {elapsed:?} ({:.0} tasks/s, verifier on); \
         {allocations} pool allocations",
        TASKS as f64 / elapsed.as_secs_f64()
    );
    // One allocation per spawn (header, future and output together), one for block_on's
    // event, none per wake or poll.
    assert_eq!(allocations, TASKS + 1);
    with_executor(|executor| assert_eq!(executor.live_tasks(), 0, "every task freed once joined"));
    unload_clean(driver);
}

// ---------------------------------------------------------------------------------------------
// Detached tasks spawned from a task through a Spawner

#[test]
fn spawner_and_detached_tasks_finish_before_unload() {
    let _watchdog = Watchdog::test("spawner_and_detached_tasks_finish_before_unload");
    let driver = load("ex-detached", plain_driver_entry);
    let finished = Arc::new(AtomicUsize::new(0));
    let spawner = with_executor(Executor::spawner);
    let counter = finished.clone();
    // A task that spawns detached children from inside the executor, each sleeping a little.
    let parent = with_executor(|executor| {
        executor.spawn(async move {
            for i in 0..32u64 {
                let counter = counter.clone();
                drop(spawner.spawn(async move {
                    sleep(Duration::from_millis(i % 4)).await;
                    counter.fetch_add(1, Ordering::SeqCst);
                })?);
            }
            // Let the children run: their timers are KTIMER DPCs on other threads.
            poll_fn(|cx| {
                if counter.load(Ordering::SeqCst) == 32 {
                    Poll::Ready(())
                } else {
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
            })
            .await;
            Ok::<_, SpawnError>(())
        })
    })
    .unwrap();
    block_on(parent).unwrap().unwrap().unwrap();
    assert_eq!(finished.load(Ordering::SeqCst), 32);
    wait_until("every task freed", Duration::from_secs(60), || with_executor(Executor::live_tasks) == 0);
    let (_, record) = unload_clean(driver);
    assert_eq!(record.live_tasks_before_shutdown, 0);
}
