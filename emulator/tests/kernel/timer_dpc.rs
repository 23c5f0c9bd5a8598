//! Timers and DPCs.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use wsk_emulator::{DPC_THREADS, Kernel, LeakKind, LoadedDriver, Rule};
use wsk_sys::*;

use crate::common::{PATIENCE, TAG, attach, eventually};

/// What a DPC routine saw.
struct DpcProbe {
    runs: AtomicU32,
    irql: AtomicU32,
    argument1: AtomicUsize,
    on_dpc_thread: AtomicBool,
}

impl DpcProbe {
    fn new() -> &'static DpcProbe {
        Box::leak(Box::new(DpcProbe {
            runs: AtomicU32::new(0),
            irql: AtomicU32::new(99),
            argument1: AtomicUsize::new(0),
            on_dpc_thread: AtomicBool::new(false),
        }))
    }

    fn context(&'static self) -> PVOID {
        std::ptr::from_ref::<DpcProbe>(self).cast_mut().cast()
    }

    fn runs(&self) -> u32 {
        self.runs.load(Ordering::SeqCst)
    }
}

unsafe extern "system" fn probe_dpc(_dpc: *mut KDPC, context: PVOID, argument1: PVOID, _argument2: PVOID) {
    let probe = unsafe { &*context.cast::<DpcProbe>() };
    probe.irql.store(u32::from(KeGetCurrentIrql()), Ordering::SeqCst);
    probe.argument1.store(argument1 as usize, Ordering::SeqCst);
    let on_dpc_thread = std::thread::current().name().is_some_and(|n| n.starts_with("wsk-emu-dpc"));
    probe.on_dpc_thread.store(on_dpc_thread, Ordering::SeqCst);
    probe.runs.fetch_add(1, Ordering::SeqCst);
}

fn new_dpc(probe: &'static DpcProbe) -> *mut KDPC {
    let dpc = Box::leak(Box::new(unsafe { std::mem::zeroed::<KDPC>() }));
    unsafe { KeInitializeDpc(dpc, probe_dpc, probe.context()) };
    dpc
}

fn new_timer(kind: TIMER_TYPE) -> *mut KTIMER {
    let timer = Box::leak(Box::new(unsafe { std::mem::zeroed::<KTIMER>() }));
    unsafe { KeInitializeTimerEx(timer, kind) };
    timer
}

/// Holds DPC routines until opened, to keep both DPC threads busy.
struct DpcGate {
    entered: AtomicU32,
    open: AtomicBool,
}

unsafe extern "system" fn gate_dpc(_dpc: *mut KDPC, context: PVOID, _a1: PVOID, _a2: PVOID) {
    let gate = unsafe { &*context.cast::<DpcGate>() };
    gate.entered.fetch_add(1, Ordering::SeqCst);
    // A DPC may not sleep: spin (yielding, as a spin lock does) with a bound.
    let deadline = std::time::Instant::now() + PATIENCE;
    while !gate.open.load(Ordering::SeqCst) {
        assert!(std::time::Instant::now() < deadline, "the DPC gate was not opened within {PATIENCE:?}");
        std::thread::yield_now();
    }
}

impl DpcGate {
    /// Occupies every DPC thread.
    fn occupy() -> &'static DpcGate {
        let gate: &'static DpcGate =
            Box::leak(Box::new(DpcGate { entered: AtomicU32::new(0), open: AtomicBool::new(false) }));
        for _ in 0..DPC_THREADS {
            let dpc = Box::leak(Box::new(unsafe { std::mem::zeroed::<KDPC>() }));
            unsafe {
                KeInitializeDpc(dpc, gate_dpc, std::ptr::from_ref::<DpcGate>(gate).cast_mut().cast());
                assert_eq!(KeInsertQueueDpc(dpc, std::ptr::null_mut(), std::ptr::null_mut()), TRUE);
            }
        }
        assert!(eventually(|| gate.entered.load(Ordering::SeqCst) == DPC_THREADS as u32));
        gate
    }

    fn open(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

fn wait_on(object: PVOID, timeout_100ns: i64) -> NTSTATUS {
    let mut timeout = timeout_100ns;
    unsafe { KeWaitForSingleObject(object, Executive, KernelMode, FALSE, &raw mut timeout) }
}

fn patience_100ns() -> i64 {
    -(PATIENCE.as_nanos() as i64 / 100)
}

#[test]
fn dpc_runs_once_per_queueing_at_dispatch_on_a_dpc_thread() {
    let driver = attach();
    let probe = DpcProbe::new();
    let dpc = new_dpc(probe);
    unsafe {
        assert_eq!((*dpc).Type, 0x13);
        assert_eq!((*dpc).Importance, 1);
        assert_eq!(KeInsertQueueDpc(dpc, 0x55 as PVOID, std::ptr::null_mut()), TRUE);
        assert!(eventually(|| probe.runs() == 1));
        assert_eq!(probe.irql.load(Ordering::SeqCst), u32::from(DISPATCH_LEVEL));
        assert_eq!(probe.argument1.load(Ordering::SeqCst), 0x55);
        assert!(probe.on_dpc_thread.load(Ordering::SeqCst));
        assert!((*dpc).DpcData.is_null(), "dequeued");
    }
    driver.unload().assert_clean();
}

#[test]
fn dpc_is_queued_at_most_once_and_can_be_removed_and_flushed() {
    let driver = attach();
    let gate = DpcGate::occupy();
    let probe = DpcProbe::new();
    let dpc = new_dpc(probe);
    unsafe {
        assert_eq!(KeInsertQueueDpc(dpc, std::ptr::null_mut(), std::ptr::null_mut()), TRUE);
        assert_eq!(KeInsertQueueDpc(dpc, std::ptr::null_mut(), std::ptr::null_mut()), FALSE, "already queued");
        assert_eq!(KeRemoveQueueDpc(dpc), TRUE);
        assert_eq!(KeRemoveQueueDpc(dpc), FALSE);
        assert_eq!(KeInsertQueueDpc(dpc, std::ptr::null_mut(), std::ptr::null_mut()), TRUE);
        gate.open();
        KeFlushQueuedDpcs();
        assert_eq!(probe.runs(), 1, "flushed: the queued DPC ran, once");
    }
    driver.unload().assert_clean();
}

#[test]
fn one_shot_timer_signals_and_queues_its_dpc() {
    let driver = attach();
    let probe = DpcProbe::new();
    let dpc = new_dpc(probe);
    let timer = new_timer(NotificationTimer);
    unsafe {
        assert_eq!((*timer).Header.Type, 8);
        assert_eq!(KeReadStateTimer(timer), FALSE);
        assert_eq!(KeSetTimerEx(timer, -10_000, 0, dpc), FALSE, "was not set");
        assert_eq!(wait_on(timer.cast(), patience_100ns()), STATUS_SUCCESS);
        assert_eq!(KeReadStateTimer(timer), TRUE, "notification timers stay signalled");
        assert!(eventually(|| probe.runs() == 1));
        assert_eq!(KeCancelTimer(timer), FALSE, "expired one-shot timers are not set");
        assert_eq!(driver.counters().timers_fired, 1);
    }
    driver.unload().assert_clean();
}

#[test]
fn timer_can_be_reset_and_cancelled_before_it_fires() {
    let driver = attach();
    let probe = DpcProbe::new();
    let dpc = new_dpc(probe);
    let timer = new_timer(NotificationTimer);
    unsafe {
        assert_eq!(KeSetTimerEx(timer, -600_000_000, 0, dpc), FALSE);
        assert_eq!(KeSetTimerEx(timer, -600_000_000, 0, dpc), TRUE, "was set");
        assert_eq!(KeCancelTimer(timer), TRUE);
        assert_eq!(KeCancelTimer(timer), FALSE);
        assert_eq!(KeReadStateTimer(timer), FALSE);
    }
    assert_eq!(probe.runs(), 0);
    driver.unload().assert_clean();
}

#[test]
fn periodic_timer_fires_repeatedly_until_cancelled() {
    let driver = attach();
    let probe = DpcProbe::new();
    let dpc = new_dpc(probe);
    let timer = new_timer(SynchronizationTimer);
    unsafe {
        KeSetTimerEx(timer, -10_000, 1, dpc);
        assert!(eventually(|| probe.runs() >= 3));
        assert_eq!(KeCancelTimer(timer), TRUE);
        KeFlushQueuedDpcs();
    }
    let runs = probe.runs();
    assert!(runs >= 3);
    driver.unload().assert_clean();
}

#[test]
fn synchronization_timer_resets_on_a_satisfied_wait() {
    let driver = attach();
    let timer = new_timer(SynchronizationTimer);
    unsafe {
        KeSetTimerEx(timer, -10_000, 0, std::ptr::null_mut());
        assert_eq!(wait_on(timer.cast(), patience_100ns()), STATUS_SUCCESS);
        assert_eq!(wait_on(timer.cast(), 0), STATUS_TIMEOUT, "auto-reset");
    }
    driver.unload().assert_clean();
}

#[test]
fn absolute_due_time_is_a_system_time() {
    let driver = attach();
    let timer = new_timer(NotificationTimer);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let system_time = 116_444_736_000_000_000 + (now.as_nanos() / 100) as i64;
    unsafe {
        KeSetTimerEx(timer, system_time + 20_000, 0, std::ptr::null_mut());
        assert_eq!(wait_on(timer.cast(), patience_100ns()), STATUS_SUCCESS);
    }
    driver.unload().assert_clean();
}

#[test]
fn timer_pending_at_unload() {
    let driver = attach();
    let timer = new_timer(NotificationTimer);
    unsafe { KeSetTimerEx(timer, -600_000_000, 0, std::ptr::null_mut()) };
    let report = driver.unload();
    let first = report.assert_first(Rule::TimerPendingAtUnload);
    assert_eq!(first.code, 0xCE);
    assert_eq!(report.leaks_of(LeakKind::Timer).next().unwrap().address, timer as usize);
    // Torn down with the session: it never fires into a later driver.
    assert_eq!(unsafe { KeCancelTimer(timer) }, FALSE);
}

fn short_unload() -> LoadedDriver {
    Kernel::builder().unload_timeout(Duration::from_millis(50)).attach("dpcs")
}

#[test]
fn dpc_pending_at_unload() {
    let driver = short_unload();
    let gate = DpcGate::occupy();
    let probe = DpcProbe::new();
    let dpc = new_dpc(probe);
    unsafe { KeInsertQueueDpc(dpc, std::ptr::null_mut(), std::ptr::null_mut()) };
    let report = driver.unload();
    gate.open();
    report.assert_first(Rule::DpcPendingAtUnload);
    assert!(report.leaks_of(LeakKind::Dpc).any(|leak| leak.address == dpc as usize && leak.detail == "queued"));
    assert!(report.leaks_of(LeakKind::Dpc).any(|leak| leak.detail == "running"));
    // Dequeued with the session.
    assert_eq!(unsafe { KeRemoveQueueDpc(dpc) }, FALSE);
    assert_eq!(probe.runs(), 0);
}

#[test]
fn timer_in_freed_pool() {
    let driver = attach();
    unsafe {
        let timer = ExAllocatePoolWithTag(NonPagedPoolNx, size_of::<KTIMER>(), TAG).cast::<KTIMER>();
        KeInitializeTimerEx(timer, NotificationTimer);
        KeSetTimerEx(timer, -600_000_000, 0, std::ptr::null_mut());
        ExFreePool(timer.cast());
        assert_eq!(KeCancelTimer(timer), FALSE, "the freed timer was cancelled");
    }
    let report = driver.unload();
    let first = report.assert_first(Rule::TimerOrDpcInFreedPool);
    assert_eq!(first.code, 0xC7);
}

#[test]
fn dpc_in_freed_pool() {
    let driver = attach();
    let gate = DpcGate::occupy();
    let probe = DpcProbe::new();
    unsafe {
        let dpc = ExAllocatePoolWithTag(NonPagedPoolNx, size_of::<KDPC>(), TAG).cast::<KDPC>();
        KeInitializeDpc(dpc, probe_dpc, probe.context());
        KeInsertQueueDpc(dpc, std::ptr::null_mut(), std::ptr::null_mut());
        ExFreePool(dpc.cast());
    }
    gate.open();
    let report = driver.unload();
    report.assert_first(Rule::TimerOrDpcInFreedPool);
    assert_eq!(probe.runs(), 0);
}

#[test]
fn uninitialized_timer_and_dpc_are_reported() {
    let driver = attach();
    let timer = Box::leak(Box::new(unsafe { std::mem::zeroed::<KTIMER>() }));
    assert_eq!(unsafe { KeSetTimerEx(timer, -1, 0, std::ptr::null_mut()) }, FALSE);
    driver.unload().assert_first(Rule::TimerInvalid);

    let driver = attach();
    let dpc = Box::leak(Box::new(unsafe { std::mem::zeroed::<KDPC>() }));
    assert_eq!(unsafe { KeInsertQueueDpc(dpc, std::ptr::null_mut(), std::ptr::null_mut()) }, FALSE);
    driver.unload().assert_first(Rule::DpcInvalid);

    let driver = attach();
    let timer = new_timer(NotificationTimer);
    unsafe {
        KeSetTimerEx(timer, -600_000_000, 0, std::ptr::null_mut());
        KeInitializeTimerEx(timer, NotificationTimer);
    }
    driver.unload().assert_first(Rule::TimerInvalid);
}

#[test]
fn crashed_driver_gets_no_more_dpcs() {
    let driver = attach();
    let gate = DpcGate::occupy();
    let probe = DpcProbe::new();
    let dpc = new_dpc(probe);
    unsafe {
        KeInsertQueueDpc(dpc, std::ptr::null_mut(), std::ptr::null_mut());
        ExFreePool(std::ptr::null_mut()); // crash
    }
    gate.open();
    assert!(driver.wait_idle(PATIENCE));
    assert_eq!(probe.runs(), 0);
    assert!(driver.unload().crashed_before_unload);
}

static IRQL_BUG_RUNS: AtomicU32 = AtomicU32::new(0);

unsafe extern "system" fn dpc_lowering_irql(_dpc: *mut KDPC, _context: PVOID, _a1: PVOID, _a2: PVOID) {
    let mut irql = 0;
    unsafe { IoAcquireCancelSpinLock(&raw mut irql) };
    IRQL_BUG_RUNS.fetch_add(1, Ordering::SeqCst);
    // Broken: returns holding the cancel spin lock.
}

#[test]
fn dpc_returning_with_the_cancel_lock_held() {
    let driver = attach();
    let dpc = Box::leak(Box::new(unsafe { std::mem::zeroed::<KDPC>() }));
    unsafe {
        KeInitializeDpc(dpc, dpc_lowering_irql, std::ptr::null_mut());
        KeInsertQueueDpc(dpc, std::ptr::null_mut(), std::ptr::null_mut());
    }
    assert!(eventually(|| IRQL_BUG_RUNS.load(Ordering::SeqCst) == 1));
    assert!(driver.wait_idle(PATIENCE));
    driver.unload().assert_first(Rule::SpinLockHeldOnReturn);
}
