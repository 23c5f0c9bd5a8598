//! The sweep both sweep binaries run (see `sweep.rs`).

use std::io::Write as _;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::Duration;

use stress_driver::scenario::{OUTCOME, PORT, STEP, STEPS, scenario_entry};
use wsk_emulator::{FaultPlan, Kernel, VerifierReport};

const RUN_LIMIT: Duration = Duration::from_secs(60);

/// The name of the step the last run ended at (after a failure: the step that failed).
fn last_step() -> &'static str {
    STEPS.get(STEP.load(Ordering::Acquire)).copied().unwrap_or("unknown")
}

/// One run with `plan`; returns the scenario outcome and the report. Aborts the process if a
/// run hangs (a hang is a failure, and the driver cannot be unloaded from a stuck state).
fn run(plan: FaultPlan) -> (i32, VerifierReport) {
    let (tx, rx) = mpsc::channel();
    let watchdog = std::thread::spawn(move || {
        if rx.recv_timeout(RUN_LIMIT).is_err() {
            // Straight to the process's stderr: the test harness captures `eprintln!` of the
            // test's threads, and that capture is lost when the process aborts.
            let _ = writeln!(
                std::io::stderr(),
                "sweep: a run with {plan:?} did not finish within {RUN_LIMIT:?}; it was at step `{}`",
                last_step()
            );
            std::process::abort();
        }
    });
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    PORT.store(port, Ordering::Relaxed);
    OUTCOME.store(i32::MIN, Ordering::Relaxed);
    STEP.store(usize::MAX, Ordering::Relaxed);
    let driver = Kernel::builder()
        .verifier(true)
        .capture_sites(false)
        .fault_injection(plan)
        .load("scenario", scenario_entry)
        .expect("the scenario's DriverEntry always returns success");
    let report = driver.unload();
    let _ = tx.send(());
    watchdog.join().unwrap();
    (OUTCOME.load(Ordering::Acquire), report)
}

/// The sweep; `mappings`: whether the scenario must meet mapping fault points.
pub fn sweep(mappings: bool) {
    let (outcome, clean) = run(FaultPlan::None);
    assert_eq!(outcome, 0, "the scenario succeeds without faults; it failed at `{}`:\n{clean}", last_step());
    assert_eq!(last_step(), "done", "a successful run ends at the last step");
    clean.assert_clean();
    let allocations = clean.faults.counted;
    assert!(allocations > 10, "the scenario allocates ({allocations})");
    assert!(clean.faults.provider_calls > 0, "provider calls are fault points ({:?})", clean.faults);
    assert_eq!(clean.faults.mappings > 0, mappings, "mapping fault points ({:?})", clean.faults);
    let (mut no_memory, mut other, mut absent) = (0, Vec::new(), 0);
    for k in 1..=allocations {
        let (outcome, report) = run(FaultPlan::FailNth(k));
        assert!(report.is_clean(), "failing allocation {k} of {allocations}:\n{report}");
        if report.faults.injected == 0 {
            // This run met fewer fault points than the clean one (a provider call completed
            // inside the call in one run and later in another, which changes what is
            // allocated): fault point `k` did not occur, so nothing was failed.
            assert!(report.faults.counted < k, "allocation {k} occurred but was not failed ({:?})", report.faults);
            absent += 1;
            continue;
        }
        assert_eq!(report.faults.injected, 1, "allocation {k} was failed exactly once");
        assert_ne!(outcome, i32::MIN, "failing allocation {k}: the scenario did not report an outcome");
        match outcome {
            0 => {}
            wsk_sys::STATUS_INSUFFICIENT_RESOURCES => no_memory += 1,
            status => other.push((k, status, last_step())),
        }
    }
    println!(
        "sweep: {allocations} runs ({} provider calls, {} mappings); {no_memory} ended with STATUS_INSUFFICIENT_RESOURCES, {} with another error \
         ({other:x?}), {absent} met fewer fault points than the clean run, the rest succeeded; all clean",
        clean.faults.provider_calls,
        clean.faults.mappings,
        other.len(),
    );
    assert!(no_memory > 0, "a failed allocation must surface as STATUS_INSUFFICIENT_RESOURCES somewhere");
    assert!(absent * 10 <= allocations, "{absent} of {allocations} fault points did not occur in their run");
}
