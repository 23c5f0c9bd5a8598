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
//! # The emulator's host work is not the caller's
//!
//! Kernel routines a driver may call at DISPATCH_LEVEL (`ExFreePoolWithTag`, `IoFreeMdl`,
//! `WskSend`, ...) are implemented over the host: its heap, whose allocator takes a lock
//! that sleeps when contended (a block freed on another thread than the one that allocated
//! it goes back to that thread's arena, under the arena's lock), its socket and memory-map
//! system calls. On Windows these routines never sleep at DISPATCH_LEVEL; here they may, for
//! reasons that say nothing of the driver. So the emulator runs such work in [`host_work`]:
//! inside a watched section it measures the voluntary switches and the time off the CPU the
//! work took, and the check at the end of the section leaves them out. Every host heap
//! operation of the process goes through it (the emulator's global allocator,
//! `crate::host_heap`, which the pool allocates from), as do the provider's host socket
//! calls and its indication blocks' memory-map calls. Host work never calls driver code, so nothing a
//! driver does is excused. This was found by the echo flood test under CPU contention: a
//! receive callback that sends (`WskSend` at DISPATCH_LEVEL, legal) freed a block the task
//! thread had allocated, slept on the host allocator's arena lock, waited more than 2 ms for
//! a CPU after it, and was reported as blocked.
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

/// What a DISPATCH section recorded when it started, and the host work it excused since.
#[derive(Clone, Copy)]
struct Section {
    /// Whether the section is watched (the verifier was on and the usage could be read).
    start: Option<(Instant, Usage)>,
    /// Whether a blocking violation was reported in this section already.
    reported: bool,
    /// Voluntary switches inside [`host_work`] during the section.
    excused_switches: i64,
    /// Time off the CPU inside [`host_work`] that switched voluntarily, during the section.
    excused_off_cpu: Duration,
}

/// A section not watched (the state between sections).
const UNWATCHED: Section =
    Section { start: None, reported: false, excused_switches: 0, excused_off_cpu: Duration::ZERO };

thread_local! {
    static IRQL: Cell<KIRQL> = const { Cell::new(PASSIVE_LEVEL) };
    static SECTION: Cell<Section> = const { Cell::new(UNWATCHED) };
    /// The thread is inside [`host_work`] (nested host work is measured once, by the outer).
    static IN_HOST_WORK: Cell<bool> = const { Cell::new(false) };
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
    SECTION.with(|section| section.set(Section { start, ..UNWATCHED }));
}

fn end_section() {
    let Section { start, reported, excused_switches, excused_off_cpu } =
        SECTION.with(|section| section.replace(UNWATCHED));
    let Some((started, at_start)) = start else { return };
    if reported || std::thread::panicking() {
        return;
    }
    let Some(at_end) = usage::current() else { return };
    let switches = at_end.voluntary_switches - at_start.voluntary_switches - excused_switches;
    if switches <= 0 {
        return;
    }
    let wall = started.elapsed();
    let cpu = usage::exact_cpu_time().unwrap_or(at_end.cpu).saturating_sub(at_start.cpu);
    let off_cpu = wall.saturating_sub(cpu).saturating_sub(excused_off_cpu);
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

/// Runs `work`, the emulator's own use of the host inside a kernel routine (a host heap
/// operation, a host socket or memory-map system call; never driver code): inside a watched
/// DISPATCH section, a voluntary switch during it and the time it was off the CPU are left
/// out of the section's check (see the module docs). Outside one it only runs `work`.
///
/// Inside a watched section it costs two `getrusage` calls, and a clock read when the work
/// slept.
#[inline]
pub(crate) fn host_work<R>(work: impl FnOnce() -> R) -> R {
    // `try_with`: the host heap is used during thread teardown too, after the thread's
    // locals are gone (these have no destructor, so they stay usable, but be safe).
    let watched = SECTION.try_with(|section| section.get().start.is_some()).unwrap_or(false)
        && !IN_HOST_WORK.try_with(Cell::get).unwrap_or(true);
    if !watched {
        return work();
    }
    IN_HOST_WORK.with(|inside| inside.set(true));
    let before = usage::current();
    let started = Instant::now();
    let result = work();
    if let Some(before) = before
        && let Some(after) = usage::current()
    {
        let switches = after.voluntary_switches - before.voluntary_switches;
        if switches > 0 {
            // The usage read first may lag the true CPU time, which makes the time off the
            // CPU look shorter: less is excused, never more.
            let cpu = usage::exact_cpu_time().unwrap_or(after.cpu).saturating_sub(before.cpu);
            let off_cpu = started.elapsed().saturating_sub(cpu);
            SECTION.with(|section| {
                let mut current = section.get();
                current.excused_switches += switches;
                current.excused_off_cpu += off_cpu;
                section.set(current);
            });
        }
    }
    IN_HOST_WORK.with(|inside| inside.set(false));
    result
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

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use crate::{Bugcheck, Rule, recorded_bugchecks};

    /// Longer than the detector's threshold, so that a sleep this long is reported unless it
    /// is excused.
    const SLEEP: Duration = Duration::from_millis(20);

    /// The violations recorded from the calling thread, each test running on a thread of its
    /// own (no kernel is attached: the verifier is on outside sessions, and attaching would
    /// clear what other unit tests of the crate record meanwhile).
    fn this_threads() -> Vec<Bugcheck> {
        let name = std::thread::current().name().unwrap_or("<unnamed>").to_owned();
        recorded_bugchecks().into_iter().filter(|bugcheck| bugcheck.thread == name).collect()
    }

    /// The emulator's host work that sleeps inside a DISPATCH section (its allocator's lock,
    /// a host system call) is not reported: the routine that did it may be called there, and
    /// on Windows it would not sleep. Without the excuse the section is reported.
    #[test]
    fn host_work_that_sleeps_at_dispatch_is_not_reported() {
        with_irql(DISPATCH_LEVEL, || host_work(|| std::thread::sleep(SLEEP)));
        let ours = this_threads();
        assert!(ours.is_empty(), "host work was reported: {ours:?}");
    }

    /// Only the host work is excused: the caller's own sleep in the same section (before or
    /// after the host work) is still reported, with its own time off the CPU, and a sleep
    /// nested in host work is excused once.
    #[test]
    fn the_callers_own_sleep_next_to_host_work_is_still_reported() {
        for caller_first in [false, true] {
            with_irql(DISPATCH_LEVEL, || {
                if caller_first {
                    std::thread::sleep(SLEEP);
                }
                host_work(|| host_work(|| std::thread::sleep(SLEEP)));
                if !caller_first {
                    std::thread::sleep(SLEEP);
                }
            });
        }
        let ours = this_threads();
        assert_eq!(ours.len(), 2, "one report per section: {ours:?}");
        for report in ours {
            assert_eq!(report.rule, Rule::BlockedAtDispatch, "{report:?}");
            let off = report
                .message
                .split("off the CPU for ")
                .nth(1)
                .and_then(|rest| rest.split(' ').next())
                .and_then(|micros| micros.parse::<u128>().ok())
                .unwrap_or_else(|| panic!("no off-CPU time in: {}", report.message));
            // The caller's 20 ms, not the 40 ms of the section: the host work's are left out.
            assert!(off >= BLOCKED_THRESHOLD.as_micros() && off < 2 * SLEEP.as_micros(), "off the CPU for {off} us");
        }
    }
}
