//! Wakes from DISPATCH_LEVEL on other processors while the executor's work item runs: DPCs
//! queued by tasks, a periodic KTIMER's DPC, and host threads acting as completion routines
//! (`run_at(DISPATCH_LEVEL, ..)`). Every handshake needs its wake: a lost one stalls its chain
//! and the watchdog fails the test. The verifier checks every kernel call on the wake path
//! (no wait, no paged memory at DISPATCH_LEVEL) and the unload.

use std::cell::UnsafeCell;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use wsk_executor::{Config, JoinHandle, block_on, yield_now};
use wsk_sys::{
    DISPATCH_LEVEL, DRIVER_OBJECT, KDPC, KTIMER, KeCancelTimer, KeFlushQueuedDpcs, KeGetCurrentIrql, KeInitializeDpc,
    KeInitializeTimerEx, KeInsertQueueDpc, KeSetTimerEx, NTSTATUS, NotificationTimer, PVOID, STATUS_SUCCESS,
    UNICODE_STRING,
};
use wsk_tests::{
    Mailbox, Watchdog, driver_unload, load, plain_driver_entry, start_executor, unload_clean, wait_until, with_executor,
};

/// A `KDPC` in the driver's (nonpaged) static data, with what its routine touches.
struct DpcCell {
    dpc: UnsafeCell<KDPC>,
    mailbox: Mailbox,
    wrong_irql: AtomicBool,
}

// SAFETY: the KDPC is written by `KeInitializeDpc` in DriverEntry before any use and
// afterwards only by the kernel, which synchronizes its own accesses; the rest is atomics.
unsafe impl Sync for DpcCell {}

impl DpcCell {
    const fn new() -> Self {
        // SAFETY: all-zero is a valid KDPC (null pointers, `None` routine); it is initialized
        // with `KeInitializeDpc` before use.
        let dpc = unsafe { std::mem::zeroed::<KDPC>() };
        Self { dpc: UnsafeCell::new(dpc), mailbox: Mailbox::new(), wrong_irql: AtomicBool::new(false) }
    }

    /// Initializes the DPC with this cell as its context. PASSIVE_LEVEL (DriverEntry).
    ///
    /// # Safety
    ///
    /// Not queued, not running.
    unsafe fn init(&'static self, routine: wsk_sys::KDEFERRED_ROUTINE) {
        // SAFETY: static memory, not queued (caller); the context is this static cell.
        unsafe { KeInitializeDpc(self.dpc.get(), routine, ptr::from_ref(self).cast_mut().cast()) };
    }
}

/// The DPC routine of every [`DpcCell`]: posts `SystemArgument1` to the cell's mailbox, which
/// wakes the task waiting for it. DISPATCH_LEVEL, on a DPC thread.
unsafe extern "system" fn post_dpc(_dpc: *mut KDPC, context: PVOID, argument1: PVOID, _argument2: PVOID) {
    // SAFETY: the context given to `KeInitializeDpc` is a static `DpcCell`.
    let cell = unsafe { &*context.cast::<DpcCell>() };
    if KeGetCurrentIrql() != DISPATCH_LEVEL {
        cell.wrong_irql.store(true, Ordering::SeqCst);
    }
    cell.mailbox.post(argument1 as u64);
}

// ---------------------------------------------------------------------------------------------
// DPC chains

const CHAINS: usize = 4;
const CHAIN_ROUNDS: u64 = 5_000;
static CHAIN_DPCS: [DpcCell; CHAINS] = [const { DpcCell::new() }; CHAINS];
static CHAINS_DONE: AtomicU64 = AtomicU64::new(0);

unsafe extern "system" fn chain_entry(driver: *mut DRIVER_OBJECT, _registry: *mut UNICODE_STRING) -> NTSTATUS {
    for cell in &CHAIN_DPCS {
        // SAFETY: nothing is queued before the driver is loaded.
        unsafe { cell.init(post_dpc) };
    }
    // SAFETY: DriverEntry's own driver object.
    unsafe { start_executor(driver, Config::new()) }
}

/// `CHAINS` tasks each queue their DPC and wait for it to post the round number, 5,000 rounds
/// each; the two emulated processors run the DPCs concurrently, and a task that yields in a loop
/// keeps the work item running, so most wakes land while it runs (the path where the work item
/// is already queued and must not be queued again, nor the wake lost).
#[test]
fn dpc_wakes_from_dispatch_level_are_all_observed() {
    let _watchdog = Watchdog::test("dpc_wakes_from_dispatch_level_are_all_observed");
    let driver = load("ex-dpc-chains", chain_entry);
    CHAINS_DONE.store(0, Ordering::SeqCst);
    let start = Instant::now();
    let (chains, busy): (Vec<JoinHandle<Result<u64, u64>>>, JoinHandle<u64>) = with_executor(|executor| {
        let chains = (0..CHAINS)
            .map(|i| {
                executor
                    .spawn(async move {
                        let cell = &CHAIN_DPCS[i];
                        for round in 1..=CHAIN_ROUNDS {
                            // SAFETY: initialized in DriverEntry; static memory.
                            let queued = unsafe { KeInsertQueueDpc(cell.dpc.get(), round as PVOID, ptr::null_mut()) };
                            if queued == 0 {
                                // Still queued from the previous round: the protocol is broken.
                                return Err(round);
                            }
                            cell.mailbox.at_least(round).await;
                        }
                        CHAINS_DONE.fetch_add(1, Ordering::SeqCst);
                        Ok(CHAIN_ROUNDS)
                    })
                    .unwrap()
            })
            .collect();
        let busy = executor
            .spawn(async {
                let mut yields = 0u64;
                while CHAINS_DONE.load(Ordering::SeqCst) < CHAINS as u64 {
                    yield_now().await;
                    yields += 1;
                }
                yields
            })
            .unwrap();
        (chains, busy)
    });
    for (i, chain) in chains.into_iter().enumerate() {
        let rounds = block_on(chain).unwrap().unwrap();
        assert_eq!(rounds, Ok(CHAIN_ROUNDS), "chain {i}");
        assert_eq!(CHAIN_DPCS[i].mailbox.load(), CHAIN_ROUNDS);
        assert!(!CHAIN_DPCS[i].wrong_irql.load(Ordering::SeqCst), "DPC routines run at DISPATCH_LEVEL");
    }
    let yields = block_on(busy).unwrap().unwrap();
    let elapsed = start.elapsed();
    eprintln!("{} DPC round trips in {elapsed:?} while a task yielded {yields} times", CHAINS as u64 * CHAIN_ROUNDS);
    let (report, _) = unload_clean(driver);
    assert!(report.counters.dpcs_run >= CHAINS as u64 * CHAIN_ROUNDS, "{}", report.counters);
}

// ---------------------------------------------------------------------------------------------
// A periodic KTIMER whose DPC wakes a task many times

/// The periodic timer and its DPC.
struct PeriodicTimer {
    timer: UnsafeCell<KTIMER>,
    cell: DpcCell,
}

// SAFETY: as for `DpcCell`: initialized in DriverEntry, then used only through kernel calls.
unsafe impl Sync for PeriodicTimer {}

static PERIODIC: PeriodicTimer = PeriodicTimer {
    // SAFETY: all-zero is a valid KTIMER image; it is initialized with `KeInitializeTimerEx`.
    timer: UnsafeCell::new(unsafe { std::mem::zeroed::<KTIMER>() }),
    cell: DpcCell::new(),
};

/// Counts expirations into the mailbox (the timer's DPC passes no argument). DISPATCH_LEVEL.
unsafe extern "system" fn tick_dpc(_dpc: *mut KDPC, context: PVOID, _argument1: PVOID, _argument2: PVOID) {
    // SAFETY: the context given to `KeInitializeDpc` is the static `DpcCell`.
    let cell = unsafe { &*context.cast::<DpcCell>() };
    if KeGetCurrentIrql() != DISPATCH_LEVEL {
        cell.wrong_irql.store(true, Ordering::SeqCst);
    }
    cell.mailbox.increment();
}

unsafe extern "system" fn periodic_entry(driver: *mut DRIVER_OBJECT, _registry: *mut UNICODE_STRING) -> NTSTATUS {
    // SAFETY: static memory, not in use before the driver is loaded.
    unsafe { KeInitializeTimerEx(PERIODIC.timer.get(), NotificationTimer) };
    // SAFETY: as above.
    unsafe { PERIODIC.cell.init(tick_dpc) };
    // SAFETY: DriverEntry's own driver object.
    let status = unsafe { start_executor(driver, Config::new()) };
    if status == STATUS_SUCCESS {
        // SAFETY: DriverEntry's own driver object; the unload routine below stops the timer
        // before the executor's.
        unsafe { (*driver).DriverUnload = Some(periodic_unload) };
    }
    status
}

/// Stops the timer, waits for its last DPC, then the common unload (executor shutdown).
unsafe extern "system" fn periodic_unload(driver: *mut DRIVER_OBJECT) {
    // SAFETY: initialized in DriverEntry.
    unsafe { KeCancelTimer(PERIODIC.timer.get()) };
    // SAFETY: PASSIVE_LEVEL (DriverUnload).
    unsafe { KeFlushQueuedDpcs() };
    // SAFETY: forwarded from the I/O manager.
    unsafe { driver_unload(driver) };
}

#[test]
fn periodic_timer_dpc_wakes_a_task_many_times() {
    const TICKS: u64 = 200;
    let _watchdog = Watchdog::test("periodic_timer_dpc_wakes_a_task_many_times");
    let driver = load("ex-periodic-timer", periodic_entry);
    let handle = with_executor(|executor| {
        executor.spawn(async {
            // SAFETY: initialized in DriverEntry; static memory. Period 1 ms, first expiry 1 ms.
            unsafe { KeSetTimerEx(PERIODIC.timer.get(), -10_000, 1, PERIODIC.cell.dpc.get()) };
            let mut seen = 0;
            let mut wakes = 0u64;
            while seen < TICKS {
                seen = PERIODIC.cell.mailbox.changed_from(seen).await;
                wakes += 1;
            }
            // SAFETY: initialized; cancelling at PASSIVE_LEVEL is allowed.
            unsafe { KeCancelTimer(PERIODIC.timer.get()) };
            (seen, wakes)
        })
    })
    .unwrap();
    let (seen, wakes) = block_on(handle).unwrap().unwrap();
    eprintln!("periodic timer: {seen} expirations observed in {wakes} wakes");
    assert!(seen >= TICKS && wakes >= 1 && wakes <= seen);
    assert!(!PERIODIC.cell.wrong_irql.load(Ordering::SeqCst), "DPC routines run at DISPATCH_LEVEL");
    let (report, _) = unload_clean(driver);
    assert!(report.counters.timers_fired >= TICKS, "{}", report.counters);
}

// ---------------------------------------------------------------------------------------------
// Wakes from other threads at DISPATCH_LEVEL (as IRP completion routines on other processors)

const WAKERS: usize = 4;
const HANDSHAKES: u64 = 3_000;
static TO_TASK: [Mailbox; WAKERS] = [const { Mailbox::new() }; WAKERS];
static ACKS: [AtomicU64; WAKERS] = [const { AtomicU64::new(0) }; WAKERS];

#[test]
fn wakes_from_other_threads_at_dispatch_level_are_all_observed() {
    let _watchdog = Watchdog::test("wakes_from_other_threads_at_dispatch_level_are_all_observed");
    let driver = load("ex-thread-wakes", plain_driver_entry);
    let start = Instant::now();
    let tasks: Vec<JoinHandle<u64>> = with_executor(|executor| {
        (0..WAKERS)
            .map(|i| {
                executor
                    .spawn(async move {
                        for n in 1..=HANDSHAKES {
                            TO_TASK[i].at_least(n).await;
                            ACKS[i].store(n, Ordering::Release);
                        }
                        HANDSHAKES
                    })
                    .unwrap()
            })
            .collect()
    });
    thread::scope(|s| {
        for i in 0..WAKERS {
            let driver = &driver;
            s.spawn(move || {
                for n in 1..=HANDSHAKES {
                    // A completion routine: record the result, wake the task, at DISPATCH_LEVEL.
                    driver.run_at(DISPATCH_LEVEL, || TO_TASK[i].post(n));
                    wait_until("the task's acknowledgement", Duration::from_secs(120), || {
                        ACKS[i].load(Ordering::Acquire) >= n
                    });
                }
            });
        }
    });
    for task in tasks {
        assert_eq!(block_on(task).unwrap().unwrap(), HANDSHAKES);
    }
    eprintln!("{} cross-thread DISPATCH_LEVEL wake handshakes in {:?}", WAKERS as u64 * HANDSHAKES, start.elapsed());
    unload_clean(driver);
}
