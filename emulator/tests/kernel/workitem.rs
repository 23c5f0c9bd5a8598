//! Work items and their rules.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use wsk_emulator::{Kernel, LeakKind, Rule, WORKER_THREADS};
use wsk_sys::*;

use crate::common::{PATIENCE, attach, eventually};

struct Seen {
    runs: AtomicU32,
    irql: AtomicU32,
    device: AtomicUsize,
    context: AtomicUsize,
}

static SEEN: Seen = Seen {
    runs: AtomicU32::new(0),
    irql: AtomicU32::new(99),
    device: AtomicUsize::new(0),
    context: AtomicUsize::new(0),
};

unsafe extern "system" fn record(device: *mut DEVICE_OBJECT, context: PVOID) {
    SEEN.irql.store(u32::from(KeGetCurrentIrql()), Ordering::SeqCst);
    SEEN.device.store(device as usize, Ordering::SeqCst);
    SEEN.context.store(context as usize, Ordering::SeqCst);
    SEEN.runs.fetch_add(1, Ordering::SeqCst);
}

#[test]
fn work_item_runs_at_passive_with_its_device_and_context() {
    let driver = attach();
    let object = driver.driver_object().cast::<DEVICE_OBJECT>();
    unsafe {
        let item = IoAllocateWorkItem(object);
        assert!(!item.is_null());
        let before = SEEN.runs.load(Ordering::SeqCst);
        IoQueueWorkItem(item, record, DelayedWorkQueue, 0x77 as PVOID);
        assert!(eventually(|| SEEN.runs.load(Ordering::SeqCst) == before + 1));
        assert_eq!(SEEN.irql.load(Ordering::SeqCst), u32::from(PASSIVE_LEVEL));
        assert_eq!(SEEN.device.load(Ordering::SeqCst), object as usize);
        assert_eq!(SEEN.context.load(Ordering::SeqCst), 0x77);
        assert!(driver.wait_idle(PATIENCE));
        // Queue again once it ran.
        IoQueueWorkItem(item, record, DelayedWorkQueue, 0x78 as PVOID);
        assert!(driver.wait_idle(PATIENCE));
        assert_eq!(SEEN.runs.load(Ordering::SeqCst), before + 2);
        IoFreeWorkItem(item);
        assert_eq!(driver.counters().work_items_run, 2);
    }
    driver.unload().assert_clean();
}

static REQUEUES: AtomicU32 = AtomicU32::new(0);

unsafe extern "system" fn requeue_then_free(device: *mut DEVICE_OBJECT, context: PVOID) {
    let item = context as PIO_WORKITEM;
    if REQUEUES.fetch_add(1, Ordering::SeqCst) < 3 {
        unsafe { IoQueueWorkItem(item, requeue_then_free, DelayedWorkQueue, context) };
    } else {
        let _ = device;
        unsafe { IoFreeWorkItem(item) };
    }
}

#[test]
fn work_item_may_requeue_and_free_itself_from_its_routine() {
    let driver = attach();
    unsafe {
        let item = IoAllocateWorkItem(driver.driver_object().cast());
        IoQueueWorkItem(item, requeue_then_free, DelayedWorkQueue, item.cast());
    }
    assert!(driver.wait_idle(PATIENCE));
    assert_eq!(REQUEUES.load(Ordering::SeqCst), 4);
    driver.unload().assert_clean();
}

/// Holds work item routines until released.
pub(crate) struct Gate {
    entered: AtomicU32,
    open: AtomicBool,
}

impl Gate {
    pub(crate) fn new() -> &'static Gate {
        Box::leak(Box::new(Gate { entered: AtomicU32::new(0), open: AtomicBool::new(false) }))
    }

    fn context(&'static self) -> PVOID {
        std::ptr::from_ref::<Gate>(self).cast_mut().cast()
    }

    /// Queues `count` work items that block until the gate opens, and waits until they all run.
    pub(crate) fn occupy(&'static self, driver: &wsk_emulator::LoadedDriver, count: usize) -> Vec<PIO_WORKITEM> {
        let items: Vec<_> = (0..count).map(|_| unsafe { IoAllocateWorkItem(driver.driver_object().cast()) }).collect();
        for &item in &items {
            unsafe { IoQueueWorkItem(item, block_until_open, DelayedWorkQueue, self.context()) };
        }
        assert!(eventually(|| self.entered.load(Ordering::SeqCst) == count as u32));
        items
    }

    pub(crate) fn open(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

unsafe extern "system" fn block_until_open(_device: *mut DEVICE_OBJECT, context: PVOID) {
    let gate = unsafe { &*context.cast::<Gate>() };
    gate.entered.fetch_add(1, Ordering::SeqCst);
    while !gate.open.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn worker_threads_run_work_items_concurrently() {
    let driver = attach();
    let gate = Gate::new();
    let items = gate.occupy(&driver, WORKER_THREADS);
    gate.open();
    assert!(driver.wait_idle(PATIENCE));
    for item in items {
        unsafe { IoFreeWorkItem(item) };
    }
    driver.unload().assert_clean();
}

static SLOW_DONE: AtomicU32 = AtomicU32::new(0);

unsafe extern "system" fn slow_then_free(_device: *mut DEVICE_OBJECT, context: PVOID) {
    std::thread::sleep(Duration::from_millis(50));
    unsafe { IoFreeWorkItem(context as PIO_WORKITEM) };
    SLOW_DONE.fetch_add(1, Ordering::SeqCst);
}

unsafe extern "system" fn unload_leaving_work_queued(driver: *mut DRIVER_OBJECT) {
    let _ = driver;
}

unsafe extern "system" fn entry_queueing_work(driver: *mut DRIVER_OBJECT, _path: *mut UNICODE_STRING) -> NTSTATUS {
    unsafe {
        (*driver).DriverUnload = Some(unload_leaving_work_queued);
        let item = IoAllocateWorkItem(driver.cast());
        IoQueueWorkItem(item, slow_then_free, DelayedWorkQueue, item.cast());
    }
    STATUS_SUCCESS
}

#[test]
fn unload_waits_for_queued_and_running_work_items() {
    let timeout = Duration::from_secs(30);
    let driver = Kernel::builder().unload_timeout(timeout).load("worky", entry_queueing_work).unwrap();
    let started = Instant::now();
    let report = driver.unload();
    assert_eq!(SLOW_DONE.load(Ordering::SeqCst), 1, "the work item ran to completion before the leak check");
    // The unload is woken when the work item retires, not by its deadline (the item takes
    // 50 ms; a missed wake-up would hold the unload for the whole timeout).
    assert!(started.elapsed() < timeout / 2, "the unload waited {:?} for a 50 ms work item", started.elapsed());
    report.assert_clean();
}

#[test]
fn work_item_queued_twice() {
    let driver = attach();
    // Occupy every worker so that the item stays queued.
    let gate = Gate::new();
    let _blockers = gate.occupy(&driver, WORKER_THREADS);
    unsafe {
        let item = IoAllocateWorkItem(driver.driver_object().cast());
        IoQueueWorkItem(item, record, DelayedWorkQueue, std::ptr::null_mut());
        IoQueueWorkItem(item, record, DelayedWorkQueue, std::ptr::null_mut());
    }
    gate.open();
    let report = driver.unload();
    let first = report.assert_first(Rule::WorkItemQueuedTwice);
    assert_eq!(first.code, 0xE4);
}

#[test]
fn work_item_freed_while_queued() {
    let driver = attach();
    let gate = Gate::new();
    let _blockers = gate.occupy(&driver, WORKER_THREADS);
    unsafe {
        let item = IoAllocateWorkItem(driver.driver_object().cast());
        IoQueueWorkItem(item, record, DelayedWorkQueue, std::ptr::null_mut());
        IoFreeWorkItem(item);
    }
    gate.open();
    driver.unload().assert_first(Rule::WorkItemFreedWhileQueued);
}

#[test]
fn crashed_driver_gets_no_more_work_items() {
    let driver = attach();
    let gate = Gate::new();
    let _blockers = gate.occupy(&driver, WORKER_THREADS);
    let before = SEEN.runs.load(Ordering::SeqCst);
    unsafe {
        let item = IoAllocateWorkItem(driver.driver_object().cast());
        IoQueueWorkItem(item, record, DelayedWorkQueue, std::ptr::null_mut());
        ExFreePool(std::ptr::null_mut()); // crash the driver
    }
    gate.open();
    assert!(driver.wait_idle(PATIENCE));
    assert_eq!(SEEN.runs.load(Ordering::SeqCst), before, "the queued work item was dropped");
    let report = driver.unload();
    assert!(report.crashed_before_unload && !report.unload_called);
    report.assert_first(Rule::PoolFreeBadAddress);
}

#[test]
fn work_item_leaked_and_bad_object() {
    let driver = attach();
    let item = unsafe { IoAllocateWorkItem(driver.driver_object().cast()) };
    let report = driver.unload();
    report.assert_first(Rule::WorkItemLeak);
    assert_eq!(report.leaks_of(LeakKind::WorkItem).next().unwrap().address, item as usize);

    let driver = attach();
    let mut not_an_object = [0u64; 8];
    assert!(unsafe { IoAllocateWorkItem(not_an_object.as_mut_ptr().cast()) }.is_null());
    driver.unload().assert_first(Rule::WorkItemBadObject);
}

#[test]
fn work_item_still_running_when_unload_gives_up() {
    let driver = Kernel::builder().unload_timeout(Duration::from_millis(50)).attach("stuck");
    let gate = Gate::new();
    let _item = gate.occupy(&driver, 1);
    let report = driver.unload();
    gate.open();
    report.assert_first(Rule::WorkItemPendingAtUnload);
}

#[test]
fn work_item_freed_twice_or_queued_after_free() {
    let driver = attach();
    unsafe {
        let item = IoAllocateWorkItem(driver.driver_object().cast());
        IoFreeWorkItem(item);
        IoFreeWorkItem(item);
    }
    let report = driver.unload();
    let first = report.assert_first(Rule::WorkItemBadPointer);
    assert!(first.message.contains("already freed"), "{report}");

    let driver = attach();
    unsafe {
        let item = IoAllocateWorkItem(driver.driver_object().cast());
        IoFreeWorkItem(item);
        IoQueueWorkItem(item, record, DelayedWorkQueue, std::ptr::null_mut());
    }
    driver.unload().assert_first(Rule::WorkItemBadPointer);
}

static POLICY: AtomicU32 = AtomicU32::new(u32::MAX);

unsafe extern "system" fn record_policy(_device: *mut DEVICE_OBJECT, _context: PVOID) {
    // SAFETY: no preconditions; pid 0 is the calling thread.
    let policy = unsafe { libc::sched_getscheduler(0) };
    POLICY.store(policy as u32, Ordering::SeqCst);
}

/// The worker threads do not preempt the thread that queues a work item for them (see
/// `threads::no_wakeup_preemption`): they run under `SCHED_BATCH`.
#[cfg(target_os = "linux")]
#[test]
fn work_items_run_on_threads_that_do_not_preempt_their_wakers() {
    let driver = attach();
    unsafe {
        let item = IoAllocateWorkItem(driver.driver_object().cast());
        IoQueueWorkItem(item, record_policy, DelayedWorkQueue, std::ptr::null_mut());
        assert!(driver.wait_idle(PATIENCE));
        IoFreeWorkItem(item);
    }
    assert_eq!(POLICY.load(Ordering::SeqCst), libc::SCHED_BATCH as u32);
    driver.unload().assert_clean();
}
