//! Per-thread IRQL, and the check that nothing blocks at DISPATCH_LEVEL.
//!
//! Every thread that runs emulated kernel code has an IRQL, kept in thread-local storage:
//! PASSIVE_LEVEL by default (DriverEntry, DriverUnload, work items, test threads),
//! DISPATCH_LEVEL in DPC threads and while completion routines, event callbacks and cancel
//! routines run. The verifier checks each routine's documented maximum IRQL
//! ([`Rule::IrqlTooHigh`]), and that nothing *blocks* at DISPATCH_LEVEL or above
//! ([`Rule::BlockedAtDispatch`], Windows' `ATTEMPTED_SWITCH_FROM_DPC`): on Windows a thread
//! at DISPATCH_LEVEL cannot be switched out, so a wait there is a bugcheck.
//!
//! # How blocking is detected
//!
//! A *DISPATCH section* starts when a thread's IRQL rises from below DISPATCH_LEVEL to
//! DISPATCH_LEVEL or above, and ends when it drops back below ([`set_irql`] sees every
//! transition: [`with_irql`], completion routines, DPCs, event callbacks, the cancel spin
//! lock). With the verifier on, the section records the thread's voluntary context switch
//! count and CPU time (`getrusage(RUSAGE_THREAD)`) and the time. When it ends, a voluntary
//! context switch during the section means that the thread went to sleep: a futex wait on a
//! contended `Mutex` or a `Condvar`, a sleep, blocking I/O. Preemption and `sched_yield` are
//! involuntary switches, so code that spins (and yields) like a spin lock is never reported.
//!
//! The kernel itself sometimes puts a thread to sleep for a few microseconds that the code
//! did not ask for (a page fault waiting for the address space lock while another thread
//! changes a mapping, a contended allocator or `stderr` lock). So a section is reported only
//! if the thread was also off the CPU for at least [`BLOCKED_THRESHOLD`] (2 ms): the section's
//! wall time minus its CPU time. The CPU time at the start comes with the same `getrusage`
//! call (the kernel's value may lag the true one by up to a scheduler tick, which can only make
//! the off-CPU time look *shorter*); at the end, and only when a voluntary switch happened,
//! `CLOCK_THREAD_CPUTIME_ID` gives the exact value. Off-CPU time so measured also counts the
//! wait for a CPU after the wake-up; `/proc/thread-self/schedstat` would tell that wait apart
//! from sleeping, but reading it costs a system call of its own at both ends of every section
//! (about as much again as `getrusage`) and its run time lags by up to a tick as well, so the
//! threshold is chosen instead: far above the microsecond sleeps, and a rare coincidence
//! (an unasked-for sleep *and* a long wake-up delay) to pass. In the integration test suite no
//! section switched voluntarily except those that blocked on purpose. A section costs one
//! `getrusage` and one clock read when it starts and one `getrusage` when it ends: about
//! 0.7 µs in a release build, 1.1 µs in a debug build, on the machine it was measured on
//! (`tests/irql_blocking.rs` prints the figure). The detector runs only with the verifier on.
//!
//! The emulator's own code does not rely on the after-the-fact check: its locks spin at
//! DISPATCH_LEVEL ([`crate::sync::lock`]), its condition variable waits report a violation
//! as soon as they are entered at DISPATCH_LEVEL, and test scaffolding that may block calls
//! [`assert_may_block`] first. A section reports at most one blocking violation.
//!
//! The detector needs the thread's voluntary context switch count: on a host other than
//! Linux it is off (the rest of the IRQL checks still run).
//!
//! # What is not checked
//!
//! Touching pageable code or data above APC_LEVEL (a page fault at DISPATCH_LEVEL is a
//! bugcheck on Windows) cannot be told on the host: nothing is ever paged out and the
//! emulator does not know which code or data a driver marked pageable. Only paged *pool*
//! allocated or freed at DISPATCH_LEVEL is reported ([`Rule::PoolPagedAtDispatch`]).

use std::cell::Cell;
use std::time::{Duration, Instant};

use wsk_sys::{APC_LEVEL, DISPATCH_LEVEL, HIGH_LEVEL, KIRQL, PASSIVE_LEVEL};

use crate::verifier::{Rule, bugcheck};

/// How long a thread must have been off the CPU during a DISPATCH section, besides having
/// switched out voluntarily, for the section to be reported as blocked.
pub const BLOCKED_THRESHOLD: Duration = Duration::from_millis(2);

/// What a DISPATCH section recorded when it started.
#[derive(Clone, Copy)]
struct Section {
    /// Whether the section is watched (the verifier was on and the usage could be read).
    start: Option<(Instant, Usage)>,
    /// Whether a blocking violation was reported in this section already.
    reported: bool,
}

thread_local! {
    static IRQL: Cell<KIRQL> = const { Cell::new(PASSIVE_LEVEL) };
    static SECTION: Cell<Section> = const { Cell::new(Section { start: None, reported: false }) };
}

/// The current thread's IRQL.
#[inline]
pub fn current_irql() -> KIRQL {
    IRQL.with(Cell::get)
}

/// Sets the current thread's IRQL and returns the previous one. Starts a DISPATCH section
/// when the IRQL rises to DISPATCH_LEVEL, and checks it when the IRQL drops below.
#[inline]
pub(crate) fn set_irql(irql: KIRQL) -> KIRQL {
    let previous = IRQL.with(|cell| cell.replace(irql));
    if previous < DISPATCH_LEVEL && irql >= DISPATCH_LEVEL {
        begin_section();
    } else if previous >= DISPATCH_LEVEL && irql < DISPATCH_LEVEL {
        end_section();
    }
    previous
}

fn begin_section() {
    let start = if crate::kernel::verifier() { usage::current().map(|usage| (Instant::now(), usage)) } else { None };
    SECTION.with(|section| section.set(Section { start, reported: false }));
}

fn end_section() {
    let Section { start, reported } = SECTION.with(|section| section.replace(Section { start: None, reported: false }));
    let Some((started, at_start)) = start else { return };
    if reported || std::thread::panicking() {
        return;
    }
    let Some(at_end) = usage::current() else { return };
    let switches = at_end.voluntary_switches - at_start.voluntary_switches;
    if switches <= 0 {
        return;
    }
    let wall = started.elapsed();
    let cpu = usage::exact_cpu_time().unwrap_or(at_end.cpu).saturating_sub(at_start.cpu);
    let off_cpu = wall.saturating_sub(cpu);
    if off_cpu < BLOCKED_THRESHOLD {
        return;
    }
    bugcheck(
        Rule::BlockedAtDispatch,
        format!(
            "the thread blocked at DISPATCH_LEVEL: {switches} voluntary context switch(es), off the CPU for \
             {} us of a {} us section (a Mutex, Condvar, sleep or blocking call above APC_LEVEL)",
            off_cpu.as_micros(),
            wall.as_micros()
        ),
    );
}

/// Reports that the current thread is about to do something that may block (`what`) at
/// DISPATCH_LEVEL or above; returns whether the IRQL allows blocking. Reports at most once
/// per DISPATCH section.
fn check_may_block(what: &str) -> bool {
    let irql = current_irql();
    if irql < DISPATCH_LEVEL {
        return true;
    }
    if !crate::kernel::verifier() {
        return false;
    }
    let already = SECTION.with(|section| {
        let mut current = section.get();
        let already = current.reported;
        current.reported = true;
        section.set(current);
        already
    });
    if !already {
        bugcheck(Rule::BlockedAtDispatch, format!("{what} at {} ({irql}): it may block", irql_name(irql)));
    }
    false
}

/// Checks that the current thread may block: for test scaffolding (waits, sleeps, host
/// locks) that a callback, completion routine or DPC might call. At DISPATCH_LEVEL or above,
/// with the verifier on, records a [`Rule::BlockedAtDispatch`] violation naming `what` (once
/// per DISPATCH section), which fails the test's verifier report (and panics if the kernel
/// was built with `panic_on_bugcheck`). Returns normally either way: a caller that goes on
/// to block is then also caught by the detector. Any IRQL.
pub fn assert_may_block(what: &str) {
    check_may_block(what);
}

/// Reports an emulator wait (a condition variable) entered at DISPATCH_LEVEL or above.
pub(crate) fn report_wait(location: &std::panic::Location<'_>) {
    check_may_block(&format!("an emulator wait ({location})"));
}

/// The thread's resource usage, as far as the detector needs it.
#[derive(Clone, Copy)]
struct Usage {
    voluntary_switches: i64,
    /// User plus system CPU time (the kernel's value may lag the true one by a tick).
    cpu: Duration,
}

#[cfg(target_os = "linux")]
mod usage {
    use std::mem::MaybeUninit;
    use std::time::Duration;

    use super::Usage;

    fn duration(time: libc::timeval) -> Duration {
        Duration::from_secs(time.tv_sec.max(0) as u64) + Duration::from_micros(time.tv_usec.max(0) as u64)
    }

    /// The calling thread's usage, or `None` if it cannot be read.
    pub(super) fn current() -> Option<Usage> {
        let mut usage = MaybeUninit::<libc::rusage>::uninit();
        // SAFETY: `getrusage` writes a whole `rusage` through the pointer, which is valid for
        // writes of one.
        if unsafe { libc::getrusage(libc::RUSAGE_THREAD, usage.as_mut_ptr()) } != 0 {
            return None;
        }
        // SAFETY: `getrusage` succeeded, so it initialized the value.
        let usage = unsafe { usage.assume_init() };
        Some(Usage { voluntary_switches: usage.ru_nvcsw, cpu: duration(usage.ru_utime) + duration(usage.ru_stime) })
    }

    /// The calling thread's exact CPU time.
    pub(super) fn exact_cpu_time() -> Option<Duration> {
        let mut time = MaybeUninit::<libc::timespec>::uninit();
        // SAFETY: `clock_gettime` writes a `timespec` through the pointer, valid for writes.
        if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, time.as_mut_ptr()) } != 0 {
            return None;
        }
        // SAFETY: the call succeeded, so it initialized the value.
        let time = unsafe { time.assume_init() };
        Some(Duration::new(time.tv_sec.max(0) as u64, time.tv_nsec.clamp(0, 999_999_999) as u32))
    }
}

#[cfg(not(target_os = "linux"))]
mod usage {
    use std::time::Duration;

    use super::Usage;

    /// Not available on this host: the detector is off.
    pub(super) fn current() -> Option<Usage> {
        None
    }

    pub(super) fn exact_cpu_time() -> Option<Duration> {
        None
    }
}

/// Restores the IRQL it saved when dropped.
#[must_use = "the IRQL is restored when the guard is dropped"]
pub(crate) struct IrqlGuard {
    previous: KIRQL,
}

impl Drop for IrqlGuard {
    fn drop(&mut self) {
        set_irql(self.previous);
    }
}

/// Sets the current thread's IRQL to `irql` until the guard is dropped.
pub(crate) fn enter_irql(irql: KIRQL) -> IrqlGuard {
    IrqlGuard { previous: set_irql(irql) }
}

/// Runs `f` on the current thread at `irql`, then restores the previous IRQL.
///
/// Use it in tests to call driver code "from" a DPC or completion routine context, e.g.
/// `with_irql(DISPATCH_LEVEL, || ...)`.
pub fn with_irql<R>(irql: KIRQL, f: impl FnOnce() -> R) -> R {
    let _guard = enter_irql(irql);
    f()
}

/// The symbolic name of an IRQL.
pub fn irql_name(irql: KIRQL) -> &'static str {
    match irql {
        PASSIVE_LEVEL => "PASSIVE_LEVEL",
        APC_LEVEL => "APC_LEVEL",
        DISPATCH_LEVEL => "DISPATCH_LEVEL",
        HIGH_LEVEL => "HIGH_LEVEL",
        _ => "DIRQL",
    }
}

/// Checks that `routine` is called at or below its documented maximum IRQL; records an
/// IRQL violation otherwise. Returns whether the call is allowed.
pub(crate) fn check_max(routine: &str, max: KIRQL) -> bool {
    let irql = current_irql();
    if irql <= max || !crate::kernel::verifier() {
        return true;
    }
    bugcheck(
        Rule::IrqlTooHigh,
        format!(
            "{routine} called at {} ({irql}); its documented maximum is {} ({max})",
            irql_name(irql),
            irql_name(max)
        ),
    );
    false
}

/// Checks that a callback returned at the IRQL it was called at; records a violation and
/// repairs the IRQL otherwise.
pub(crate) fn check_restored(what: &str, expected: KIRQL) {
    let irql = current_irql();
    if irql != expected {
        set_irql(expected);
        bugcheck(
            Rule::IrqlNotRestored,
            format!(
                "{what} returned at {} ({irql}) but was called at {} ({expected})",
                irql_name(irql),
                irql_name(expected)
            ),
        );
    }
}

/// Emulator export behind `wsk_sys::KeGetCurrentIrql` on the host. Any IRQL.
#[unsafe(no_mangle)]
pub extern "system" fn WskEmuGetCurrentIrql() -> KIRQL {
    current_irql()
}
