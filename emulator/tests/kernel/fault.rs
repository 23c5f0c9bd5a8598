//! Fault injection: random and systematic allocation failures.

use std::ptr;

use wsk_emulator::{FaultPlan, Kernel, LoadedDriver, VerifierReport};
use wsk_sys::*;

use crate::common::TAG;

/// A scenario with several allocations that handles every failure by unwinding what it did.
fn scenario() -> bool {
    unsafe {
        let buffer = ExAllocatePoolWithTag(NonPagedPoolNx, 256, TAG);
        if buffer.is_null() {
            return false;
        }
        let irp = IoAllocateIrp(1, FALSE);
        if irp.is_null() {
            ExFreePool(buffer);
            return false;
        }
        let mdl = IoAllocateMdl(buffer, 256, FALSE, FALSE, ptr::null_mut());
        if mdl.is_null() {
            IoFreeIrp(irp);
            ExFreePool(buffer);
            return false;
        }
        MmBuildMdlForNonPagedPool(mdl);
        IoFreeMdl(mdl);
        IoFreeIrp(irp);
        ExFreePool(buffer);
        true
    }
}

fn run(plan: FaultPlan) -> (bool, VerifierReport) {
    let driver: LoadedDriver = Kernel::builder().fault_injection(plan).attach("faulty");
    let succeeded = scenario();
    (succeeded, driver.unload())
}

#[test]
fn fail_every_allocation_in_turn() {
    let (succeeded, clean_run) = run(FaultPlan::None);
    assert!(succeeded);
    let allocations = clean_run.faults.counted;
    assert_eq!(allocations, 3, "pool, IRP and MDL are counted");
    for n in 1..=allocations {
        let (succeeded, report) = run(FaultPlan::FailNth(n));
        assert!(!succeeded, "allocation {n} failed");
        assert_eq!(report.faults.injected, 1);
        assert_eq!(report.counters.injected_failures, 1);
        report.assert_clean();
    }
    let (succeeded, report) = run(FaultPlan::FailNth(allocations + 1));
    assert!(succeeded);
    assert_eq!(report.faults.injected, 0);
}

#[test]
fn random_failures_are_deterministic_for_a_seed() {
    let outcomes =
        |seed: u64| -> Vec<bool> { (0..50).map(|_| run_many(FaultPlan::Random { seed, rate_ppm: 200_000 })).collect() };
    fn run_many(plan: FaultPlan) -> bool {
        run(plan).0
    }
    // Each run restarts counting, so every run with the same plan fails the same allocations.
    let first = outcomes(7);
    assert!(first.iter().all(|&ok| ok == first[0]));

    let driver = Kernel::builder().fault_injection(FaultPlan::Random { seed: 7, rate_ppm: 200_000 }).attach("faulty");
    let pattern: Vec<bool> =
        (0..200).map(|_| unsafe { ExAllocatePoolWithTag(NonPagedPoolNx, 8, TAG) }.is_null()).collect();
    let stats = driver.fault_stats();
    assert_eq!(stats.counted, 200);
    let failures = pattern.iter().filter(|&&failed| failed).count() as u64;
    assert_eq!(stats.injected, failures);
    assert!((10..=80).contains(&failures), "about 20% of 200: {failures}");
    drop(driver);

    let driver = Kernel::builder()
        .fault_injection(FaultPlan::Random { seed: 7, rate_ppm: 200_000 })
        .verifier(false)
        .attach("faulty");
    let again: Vec<bool> =
        (0..200).map(|_| unsafe { ExAllocatePoolWithTag(NonPagedPoolNx, 8, TAG) }.is_null()).collect();
    assert_eq!(pattern, again);
    drop(driver);
}

#[test]
fn plan_can_change_while_loaded_and_work_items_count() {
    let driver = Kernel::builder().attach("faulty");
    unsafe {
        let item = IoAllocateWorkItem(driver.driver_object().cast());
        assert!(!item.is_null());
        IoFreeWorkItem(item);
        driver.set_fault_plan(FaultPlan::FailFrom(2));
        assert!(IoAllocateWorkItem(driver.driver_object().cast()).is_null());
        assert!(IoAllocateIrp(1, FALSE).is_null());
        driver.set_fault_plan(FaultPlan::None);
        let irp = IoAllocateIrp(1, FALSE);
        assert!(!irp.is_null());
        IoFreeIrp(irp);
    }
    assert_eq!(driver.fault_stats().counted, 4);
    assert_eq!(driver.fault_stats().injected, 2);
    driver.unload().assert_clean();
}
