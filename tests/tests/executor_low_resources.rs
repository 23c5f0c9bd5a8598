//! Low resources simulation: a small executor scenario (create the executor in DriverEntry,
//! spawn a few tasks that sleep on KTIMERs and yield, leave two tasks pending, shut down at
//! unload) run once per allocation it makes, failing exactly that allocation. Every run must
//! end cleanly: the failure surfaces as the documented error (or is absorbed where documented:
//! a sleep retries its timer), the unload finds no leak and the verifier no violation.

use std::sync::Arc;
use std::time::Duration;

use wsk_emulator::FaultPlan;
use wsk_executor::{BlockOnError, SpawnError, block_on, sleep, yield_now};
use wsk_sys::STATUS_INSUFFICIENT_RESOURCES;
use wsk_tests::{Mailbox, Watchdog, plain_driver_entry, take_unload_record, with_executor};

/// Tasks the scenario awaits.
const TASKS: u64 = 4;

/// How one run of the scenario ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// DriverEntry could not create the executor and failed the load.
    LoadFailed,
    /// `block_on` had no memory for its event; nothing ran on the test thread.
    BlockOnNoMemory,
    /// Spawns that failed for lack of memory (by index), every other task gave its output.
    SpawnsFailed(Vec<usize>),
    /// No error surfaced: every task gave its output.
    AllCompleted,
}

/// Runs the scenario on a loaded driver: spawns `TASKS` gated tasks and two that never finish,
/// opens the gates, joins the gated tasks. Returns the outcome.
fn exercise() -> Outcome {
    let spawner = with_executor(wsk_executor::Executor::spawner);
    let joined = block_on(async move {
        let mut gates = Vec::new();
        let mut handles = Vec::new();
        for i in 0..TASKS {
            // The gate holds every task back until all spawns are done, so no task's timer
            // allocation comes between two spawns: each spawn's allocation has the same index
            // in every run.
            let gate = Arc::new(Mailbox::new());
            let task_gate = gate.clone();
            let spawned = spawner.spawn(async move {
                task_gate.at_least(1).await;
                sleep(Duration::from_millis(1 + i % 2)).await;
                yield_now().await;
                i * 10
            });
            gates.push(gate);
            handles.push(spawned);
        }
        // Left pending at unload: one without a waker anywhere, one on an armed KTIMER.
        let lingering = [
            spawner.spawn(std::future::pending::<u64>()).map(drop),
            spawner
                .spawn(async {
                    sleep(Duration::from_secs(3600)).await;
                    0
                })
                .map(drop),
        ];
        for gate in &gates {
            gate.post(1);
        }
        let mut results = Vec::new();
        for handle in handles {
            results.push(match handle {
                Ok(handle) => Ok(handle.await),
                Err(e) => Err(e),
            });
        }
        (results, lingering)
    });
    let (results, lingering) = match joined {
        Err(BlockOnError::NoMemory) => return Outcome::BlockOnNoMemory,
        Err(e) => panic!("block_on at PASSIVE_LEVEL: {e}"),
        Ok(joined) => joined,
    };
    let mut failed = Vec::new();
    for (i, result) in results.into_iter().enumerate() {
        match result {
            Ok(Ok(value)) => assert_eq!(value, i as u64 * 10, "task {i}"),
            Ok(Err(e)) => panic!("task {i} did not complete: {e}"),
            Err(SpawnError::NoMemory) => failed.push(i),
            Err(e) => panic!("spawn {i}: {e}"),
        }
    }
    for (j, spawned) in lingering.into_iter().enumerate() {
        match spawned {
            Ok(()) => {}
            Err(SpawnError::NoMemory) => failed.push(TASKS as usize + j),
            Err(e) => panic!("lingering spawn {j}: {e}"),
        }
    }
    if failed.is_empty() { Outcome::AllCompleted } else { Outcome::SpawnsFailed(failed) }
}

/// Loads, runs and unloads once under `plan`; asserts a clean end. Returns the outcome and the
/// number of allocations the driver attempted.
fn run_once(name: &str, plan: FaultPlan) -> (Outcome, u64, u64) {
    let _watchdog = Watchdog::new(&format!("{name} under {plan:?}"), Duration::from_secs(120));
    let loaded = wsk_tests::builder().capture_sites(false).fault_injection(plan).load(name, plain_driver_entry);
    let driver = match loaded {
        Ok(driver) => driver,
        Err(e) => {
            assert_eq!(e.status(), STATUS_INSUFFICIENT_RESOURCES, "{plan:?}: {e}");
            assert!(e.report().is_clean(), "{plan:?}: failed load left something behind:\n{}", e.report());
            return (Outcome::LoadFailed, e.report().faults.counted, e.report().faults.injected);
        }
    };
    let outcome = exercise();
    let report = driver.unload();
    assert!(report.is_clean(), "{plan:?} ({outcome:?}):\n{report}");
    assert!(report.unload_called, "{plan:?}: DriverUnload was not called");
    let record = take_unload_record(name).expect("DriverUnload ran");
    assert!(record.shutdown_ok, "{plan:?}: {record:?}");
    assert_eq!(record.live_timers_after_shutdown, 0, "{plan:?}: executor timers left after shutdown");
    (outcome, report.faults.counted, report.faults.injected)
}

#[test]
fn every_single_allocation_failure_ends_cleanly() {
    let _watchdog = Watchdog::test("every_single_allocation_failure_ends_cleanly");
    let (clean, allocations, injected) = run_once("ex-lowres", FaultPlan::None);
    assert_eq!(clean, Outcome::AllCompleted);
    assert_eq!(injected, 0);
    eprintln!("the scenario makes {allocations} allocations; failing each in turn");

    let mut load_failed = 0;
    let mut block_on_failed = 0;
    let mut spawns_failed = 0;
    let mut absorbed = 0;
    for k in 1..=allocations + 2 {
        let (outcome, counted, injected) = run_once("ex-lowres", FaultPlan::FailNth(k));
        eprintln!("fail allocation {k}: {outcome:?} ({counted} allocations)");
        if k > counted {
            assert_eq!(outcome, Outcome::AllCompleted, "allocation {k} was never made");
            continue;
        }
        assert_eq!(injected, 1, "allocation {k}");
        match outcome {
            Outcome::LoadFailed => load_failed += 1,
            Outcome::BlockOnNoMemory => block_on_failed += 1,
            Outcome::SpawnsFailed(failed) => {
                assert_eq!(failed.len(), 1, "one failed allocation fails one spawn: {failed:?}");
                spawns_failed += 1;
            }
            // A sleep whose timer could not be allocated retries at its next poll.
            Outcome::AllCompleted => absorbed += 1,
        }
    }
    eprintln!(
        "{load_failed} failed loads, {block_on_failed} failed block_on, {spawns_failed} failed spawns, \
         {absorbed} absorbed (timer retries)"
    );
    assert!(load_failed >= 1 && block_on_failed >= 1 && spawns_failed >= 1 && absorbed >= 1);
    assert_eq!(load_failed + block_on_failed + spawns_failed + absorbed, allocations);
}

#[test]
fn random_allocation_failures_end_cleanly() {
    let _watchdog = Watchdog::test("random_allocation_failures_end_cleanly");
    for seed in 1..=24 {
        let (outcome, counted, injected) = run_once("ex-lowres-random", FaultPlan::Random { seed, rate_ppm: 150_000 });
        eprintln!("seed {seed}: {outcome:?} ({injected} of {counted} allocations failed)");
    }
}
