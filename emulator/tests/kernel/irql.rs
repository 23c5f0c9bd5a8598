//! IRQL tracking and the documented-maximum rule.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Instant;

use wsk_emulator::{Rule, current_irql, with_irql};
use wsk_sys::*;

use crate::common::{PATIENCE, attach, unicode};

#[test]
fn irql_is_per_thread_and_scoped() {
    let driver = attach();
    assert_eq!(KeGetCurrentIrql(), PASSIVE_LEVEL);
    let thread = with_irql(DISPATCH_LEVEL, || {
        assert_eq!(KeGetCurrentIrql(), DISPATCH_LEVEL);
        assert_eq!(current_irql(), DISPATCH_LEVEL);
        // Joining would block at DISPATCH_LEVEL: wait for the other thread's answer by spinning.
        let other = Arc::new(AtomicU8::new(0xFF));
        let thread = {
            let other = other.clone();
            std::thread::spawn(move || other.store(KeGetCurrentIrql(), Ordering::Release))
        };
        let deadline = Instant::now() + PATIENCE;
        while other.load(Ordering::Acquire) == 0xFF {
            assert!(Instant::now() < deadline, "the other thread did not answer");
            std::thread::yield_now();
        }
        assert_eq!(other.load(Ordering::Acquire), PASSIVE_LEVEL, "IRQL is per thread");
        driver.run_at(APC_LEVEL, || assert_eq!(KeGetCurrentIrql(), APC_LEVEL));
        assert_eq!(KeGetCurrentIrql(), DISPATCH_LEVEL);
        thread
    });
    assert_eq!(KeGetCurrentIrql(), PASSIVE_LEVEL);
    thread.join().unwrap();
    driver.unload().assert_clean();
}

#[test]
fn dispatch_level_routines_are_fine_at_dispatch() {
    let driver = attach();
    with_irql(DISPATCH_LEVEL, || unsafe {
        let irp = IoAllocateIrp(1, FALSE);
        IoFreeIrp(irp);
        let block = ExAllocatePoolWithTag(NonPagedPoolNx, 8, 1);
        ExFreePool(block);
        let mut string = UNICODE_STRING::empty();
        RtlInitUnicodeString(&raw mut string, [0x41u16, 0].as_ptr());
        assert_eq!(string.Length, 2);
        assert_eq!(string.MaximumLength, 4);
    });
    driver.unload().assert_clean();
}

#[test]
fn passive_only_routines_above_passive_are_reported() {
    let driver = attach();
    with_irql(APC_LEVEL, || unsafe {
        let mut name = unicode("ExAllocatePool2");
        MmGetSystemRoutineAddress(&raw mut name);
    });
    let report = driver.unload();
    let first = report.assert_first(Rule::IrqlTooHigh);
    assert_eq!(first.code, 0xD1);
    assert!(first.message.contains("MmGetSystemRoutineAddress called at APC_LEVEL"), "{report}");

    let driver = attach();
    with_irql(DISPATCH_LEVEL, || unsafe { KeFlushQueuedDpcs() });
    driver.unload().assert_first(Rule::IrqlTooHigh);
}

#[test]
fn dispatch_routines_above_dispatch_are_reported() {
    let driver = attach();
    with_irql(HIGH_LEVEL, || unsafe {
        let irp = IoAllocateIrp(1, FALSE);
        IoFreeIrp(irp);
    });
    driver.unload().assert_first(Rule::IrqlTooHigh);
}

unsafe extern "system" fn raise_and_return(_device: *mut DEVICE_OBJECT, _context: PVOID) {
    // Broken: acquires the cancel spin lock (raising to DISPATCH_LEVEL) and never releases it.
    let mut irql = 0;
    unsafe { IoAcquireCancelSpinLock(&raw mut irql) };
}

#[test]
fn callback_returning_at_another_irql_is_reported() {
    let driver = attach();
    unsafe {
        let item = IoAllocateWorkItem(driver.driver_object().cast());
        IoQueueWorkItem(item, raise_and_return, DelayedWorkQueue, std::ptr::null_mut());
        assert!(driver.wait_idle(PATIENCE));
        IoFreeWorkItem(item);
    }
    let report = driver.unload();
    report.assert_first(Rule::SpinLockHeldOnReturn);
    report.assert_violation(Rule::IrqlNotRestored);
}
