//! Blocking at DISPATCH_LEVEL is a violation (`BLOCKED_AT_DISPATCH_LEVEL`): sleeping, a
//! `Mutex` another thread holds or a `Condvar` inside a DISPATCH section, a completion routine
//! or a DPC is reported; spinning, yielding and being preempted are not. Also prints the
//! detector's cost per DISPATCH section.
//!
//! Quirks are process-wide and one test sets `wine-cancel-timer`, so these tests live in a
//! test binary of their own.

#![expect(
    clippy::undocumented_unsafe_blocks,
    clippy::multiple_unsafe_ops_per_block,
    reason = "test code calls several kernel routines per block and states their contract once per test"
)]

use std::hint::spin_loop;
use std::mem::MaybeUninit;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Barrier, Condvar, Mutex, Once};
use std::thread;
use std::time::{Duration, Instant};

use wsk_emulator::quirks::{self, Quirks};
use wsk_emulator::{BLOCKED_THRESHOLD, Kernel, LoadedDriver, Rule, VerifierReport, provider, with_irql};
use wsk_sys::*;

/// How long a test makes something block or spin: well above the detector's threshold.
const HOLD: Duration = Duration::from_millis(60);
/// A bound on waits that only exists to turn a hang into a failure.
const PATIENCE: Duration = Duration::from_secs(20);

fn attach() -> LoadedDriver {
    Kernel::builder().attach("irql-blocking")
}

/// Asserts that the first violation is a blocked-at-DISPATCH one on `thread` (a prefix of the
/// thread's name) whose message contains `needle`.
fn assert_blocked(report: &VerifierReport, thread: &str, needle: &str) {
    let first = report.assert_first(Rule::BlockedAtDispatch);
    assert_eq!(first.code, 0xB8, "ATTEMPTED_SWITCH_FROM_DPC: {report}");
    assert!(first.thread.starts_with(thread), "reported on `{}`, expected `{thread}`:\n{report}", first.thread);
    assert!(first.message.contains(needle), "expected `{needle}` in the message:\n{report}");
}

fn this_thread() -> String {
    thread::current().name().unwrap_or("<unnamed>").to_owned()
}

/// The off-CPU time a report gives, in microseconds.
fn off_cpu_micros(report: &VerifierReport) -> u128 {
    let message = &report.first_bugcheck().expect("a violation").message;
    let after = message.split("off the CPU for ").nth(1).unwrap_or_else(|| panic!("no off-CPU time in: {message}"));
    after.split(' ').next().and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("no off-CPU time in: {message}"))
}

/// The calling thread's (voluntary, involuntary) context switch counts.
fn context_switches() -> (i64, i64) {
    let mut usage = MaybeUninit::<libc::rusage>::uninit();
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_THREAD, usage.as_mut_ptr()) }, 0);
    let usage = unsafe { usage.assume_init() };
    (usage.ru_nvcsw, usage.ru_nivcsw)
}

/// Spins (never sleeping) until `flag` is set; panics after [`PATIENCE`].
fn spin_until_set(flag: &AtomicBool) {
    let deadline = Instant::now() + PATIENCE;
    while !flag.load(Ordering::Acquire) {
        assert!(Instant::now() < deadline, "flag not set within {PATIENCE:?}");
        spin_loop();
    }
}

/// Sets the flag after [`HOLD`], from another thread.
fn set_later(flag: &Arc<AtomicBool>) -> thread::JoinHandle<()> {
    let flag = flag.clone();
    thread::spawn(move || {
        thread::sleep(HOLD);
        flag.store(true, Ordering::Release);
    })
}

#[test]
fn sleeping_at_dispatch_is_reported_with_the_thread_and_the_time_off_the_cpu() {
    let driver = attach();
    with_irql(DISPATCH_LEVEL, || thread::sleep(HOLD));
    let report = driver.unload();
    assert_blocked(&report, &this_thread(), "voluntary context switch");
    let off = off_cpu_micros(&report);
    assert!(off >= BLOCKED_THRESHOLD.as_micros() && off < PATIENCE.as_micros(), "off the CPU for {off} us:\n{report}");
}

#[test]
fn a_mutex_held_by_another_thread_is_reported_at_dispatch() {
    let driver = attach();
    let mutex = Arc::new(Mutex::new(0u32));
    let held = Arc::new(Barrier::new(2));
    let holder = {
        let (mutex, held) = (mutex.clone(), held.clone());
        thread::spawn(move || {
            let mut guard = mutex.lock().unwrap();
            held.wait();
            thread::sleep(HOLD);
            *guard += 1;
        })
    };
    held.wait();
    with_irql(DISPATCH_LEVEL, || *mutex.lock().unwrap() += 1);
    holder.join().unwrap();
    assert_eq!(*mutex.lock().unwrap(), 2);
    assert_blocked(&driver.unload(), &this_thread(), "off the CPU");
}

struct Gate {
    open: Mutex<bool>,
    opened: Condvar,
    calls: AtomicU32,
}

impl Gate {
    fn new() -> Arc<Gate> {
        Arc::new(Gate { open: Mutex::new(false), opened: Condvar::new(), calls: AtomicU32::new(0) })
    }

    fn open_later(self: &Arc<Self>) -> thread::JoinHandle<()> {
        let gate = self.clone();
        thread::spawn(move || {
            thread::sleep(HOLD);
            *gate.open.lock().unwrap() = true;
            gate.opened.notify_all();
        })
    }

    /// Blocks the calling thread until the gate is open (what a test must not do at DISPATCH).
    fn pass(&self) {
        let mut open = self.open.lock().unwrap();
        while !*open {
            open = self.opened.wait(open).unwrap();
        }
        self.calls.fetch_add(1, Ordering::SeqCst);
    }
}

unsafe extern "system" fn gate_completion(_device: *mut DEVICE_OBJECT, _irp: *mut IRP, context: PVOID) -> NTSTATUS {
    let gate = unsafe { &*context.cast::<Gate>() };
    gate.pass();
    STATUS_MORE_PROCESSING_REQUIRED
}

#[test]
fn a_completion_routine_waiting_on_a_condvar_is_reported() {
    let driver = attach();
    let gate = Gate::new();
    let opener = gate.open_later();
    unsafe {
        let irp = IoAllocateIrp(1, FALSE);
        assert!(!irp.is_null());
        IoSetCompletionRoutine(irp, Some(gate_completion), Arc::as_ptr(&gate).cast_mut().cast(), true, true, true);
        provider::accept(irp).unwrap();
        provider::complete(irp, STATUS_SUCCESS, 0);
        IoFreeIrp(irp);
    }
    opener.join().unwrap();
    assert_eq!(gate.calls.load(Ordering::SeqCst), 1);
    assert_blocked(&driver.unload(), &this_thread(), "off the CPU");
}

unsafe extern "system" fn gate_dpc(_dpc: *mut KDPC, context: PVOID, _argument1: PVOID, _argument2: PVOID) {
    let gate = unsafe { &*context.cast::<Gate>() };
    gate.pass();
}

#[test]
fn a_dpc_that_blocks_is_reported_on_its_dpc_thread() {
    let driver = attach();
    let gate = Gate::new();
    let opener = gate.open_later();
    let mut dpc = Box::new(MaybeUninit::<KDPC>::zeroed());
    unsafe {
        KeInitializeDpc(dpc.as_mut_ptr(), gate_dpc, Arc::as_ptr(&gate).cast_mut().cast());
        assert_eq!(KeInsertQueueDpc(dpc.as_mut_ptr(), ptr::null_mut(), ptr::null_mut()), TRUE);
    }
    opener.join().unwrap();
    assert!(driver.wait_idle(PATIENCE));
    assert_eq!(gate.calls.load(Ordering::SeqCst), 1);
    assert_blocked(&driver.unload(), "wsk-emu-dpc-", "off the CPU");
}

#[test]
fn spinning_and_yielding_at_dispatch_are_not_reported() {
    let driver = attach();
    let flag = Arc::new(AtomicBool::new(false));
    let setter = set_later(&flag);
    with_irql(DISPATCH_LEVEL, || spin_until_set(&flag));
    setter.join().unwrap();
    let flag = Arc::new(AtomicBool::new(false));
    let setter = set_later(&flag);
    with_irql(DISPATCH_LEVEL, || {
        while !flag.load(Ordering::Acquire) {
            thread::yield_now();
        }
    });
    setter.join().unwrap();
    driver.unload().assert_clean();
}

#[test]
fn preemption_at_dispatch_is_not_reported() {
    let driver = attach();
    // More CPU-bound threads than processors, so that the DISPATCH section is preempted.
    let hogs = thread::available_parallelism().map_or(2, usize::from) + 2;
    let stop = Arc::new(AtomicBool::new(false));
    let started = Arc::new(Barrier::new(hogs + 1));
    let threads: Vec<_> = (0..hogs)
        .map(|_| {
            let (stop, started) = (stop.clone(), started.clone());
            thread::spawn(move || {
                started.wait();
                while !stop.load(Ordering::Relaxed) {
                    spin_loop();
                }
            })
        })
        .collect();
    started.wait();
    let (voluntary, involuntary) = with_irql(DISPATCH_LEVEL, || {
        let before = context_switches();
        let start = Instant::now();
        while start.elapsed() < 5 * HOLD {
            spin_loop();
        }
        let after = context_switches();
        (after.0 - before.0, after.1 - before.1)
    });
    stop.store(true, Ordering::Relaxed);
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(voluntary, 0, "the section did not sleep");
    assert!(involuntary > 0, "the section was never preempted: the test shows nothing");
    driver.unload().assert_clean();
}

#[test]
fn assert_may_block_reports_at_dispatch_only() {
    let driver = attach();
    wsk_emulator::assert_may_block("a test helper");
    with_irql(APC_LEVEL, || wsk_emulator::assert_may_block("a test helper at APC_LEVEL"));
    driver.unload().assert_clean();

    let driver = attach();
    with_irql(DISPATCH_LEVEL, || {
        wsk_emulator::assert_may_block("the test's wait helper");
        // One report per section: the sleep that follows is not reported again.
        thread::sleep(HOLD);
    });
    let report = driver.unload();
    assert_blocked(&report, &this_thread(), "the test's wait helper at DISPATCH_LEVEL");
    assert_eq!(report.bugchecks.len(), 1, "{report}");
}

#[test]
fn nothing_is_reported_with_the_verifier_off() {
    let driver = Kernel::builder().verifier(false).attach("irql-blocking-off");
    with_irql(DISPATCH_LEVEL, || thread::sleep(HOLD));
    let report = driver.unload();
    report.assert_no_violations();
}

/// A DPC that spins (legally) until told to stop, so that another thread's `KeCancelTimer`
/// finds it running.
unsafe extern "system" fn spinning_dpc(_dpc: *mut KDPC, context: PVOID, _argument1: PVOID, _argument2: PVOID) {
    let flags = unsafe { &*context.cast::<[AtomicBool; 2]>() };
    flags[0].store(true, Ordering::Release);
    spin_until_set(&flags[1]);
}

#[test]
fn wine_cancel_timer_waits_for_the_dpc_without_blocking_at_dispatch() {
    static QUIRK: Once = Once::new();
    QUIRK.call_once(|| quirks::set(Quirks::parse("wine-cancel-timer").expect("quirk name")));
    let driver = attach();
    // [running, stop]
    let flags = Arc::new([AtomicBool::new(false), AtomicBool::new(false)]);
    let mut timer = Box::new(MaybeUninit::<KTIMER>::zeroed());
    let mut dpc = Box::new(MaybeUninit::<KDPC>::zeroed());
    unsafe {
        KeInitializeDpc(dpc.as_mut_ptr(), spinning_dpc, Arc::as_ptr(&flags).cast_mut().cast());
        KeInitializeTimerEx(timer.as_mut_ptr(), NotificationTimer);
        KeSetTimerEx(timer.as_mut_ptr(), -1, 0, dpc.as_mut_ptr());
    }
    spin_until_set(&flags[0]);
    let stopper = {
        let flags = flags.clone();
        thread::spawn(move || {
            thread::sleep(HOLD);
            flags[1].store(true, Ordering::Release);
        })
    };
    let timer_ptr = timer.as_mut_ptr() as usize;
    let waited = with_irql(DISPATCH_LEVEL, || {
        let start = Instant::now();
        unsafe { KeCancelTimer(timer_ptr as *mut KTIMER) };
        start.elapsed()
    });
    stopper.join().unwrap();
    assert!(driver.wait_idle(PATIENCE));
    assert!(waited >= HOLD / 2, "KeCancelTimer returned after {waited:?}, before the DPC finished");
    driver.unload().assert_clean();
}

/// The detector's cost: a `with_irql(DISPATCH_LEVEL, ..)` section with the verifier on and
/// off (printed, never asserted: timing depends on the machine).
#[test]
fn cost_per_dispatch_section() {
    let sections = std::env::var("WSK_EMU_PERF_SECTIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(200_000u32);
    let mut per_section = [0.0f64; 2];
    for (verifier, slot) in [(false, 0), (true, 1)] {
        let driver = Kernel::builder().verifier(verifier).attach("irql-cost");
        let start = Instant::now();
        for _ in 0..sections {
            with_irql(DISPATCH_LEVEL, spin_loop);
        }
        per_section[slot] = start.elapsed().as_secs_f64() * 1e9 / f64::from(sections);
        let report = driver.unload();
        report.assert_no_violations();
    }
    eprintln!(
        "{sections} DISPATCH sections: {:.0} ns per section with the verifier off, {:.0} ns with it on \
         (the blocking detector costs {:.0} ns per section)",
        per_section[0],
        per_section[1],
        per_section[1] - per_section[0]
    );
}
