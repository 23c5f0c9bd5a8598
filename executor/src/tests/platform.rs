//! A `Platform` for the core's tests: std (or loom) memory, threads, mutexes and condvars.
//!
//! * Runs: [`Driver`] (the test calls `run_pending` itself) or a worker thread per executor.
//!   Both assert that a run is never requested while one is pending.
//! * Timers: armed timers fire from a helper thread after their duration (std), or only
//!   when a test calls [`fire`] (loom).
//! * IRQL: a thread-local flag makes `can_block()` false to test refusals (std).
//! * Memory: loom's tracked allocator under loom (leaks fail the model); std's otherwise,
//!   with per-thread failure injection.

use core::alloc::Layout;
use core::ptr::NonNull;
use core::time::Duration;

use crate::loom::{AtomicPtr, AtomicUsize, Ordering::AcqRel, Ordering::Acquire, Ordering::Release};
use crate::platform::{Platform, TimerCallback};

#[cfg(loom)]
use loom::sync::{Arc, Condvar, Mutex};
#[cfg(not(loom))]
use std::sync::{Arc, Condvar, Mutex};

#[cfg(not(loom))]
std::thread_local! {
    static FAIL_ALLOCS: core::cell::Cell<usize> = const { core::cell::Cell::new(0) };
    static RAISED_IRQL: core::cell::Cell<bool> = const { core::cell::Cell::new(false) };
    static ALLOCS: core::cell::Cell<usize> = const { core::cell::Cell::new(0) };
}

/// Allocations made on this thread so far.
#[cfg(not(loom))]
pub(crate) fn allocs_on_this_thread() -> usize {
    ALLOCS.with(core::cell::Cell::get)
}

/// Makes the next `n` allocations on this thread fail.
#[cfg(not(loom))]
pub(crate) fn fail_next_allocs(n: usize) {
    FAIL_ALLOCS.with(|c| c.set(n));
}

/// Pretends this thread runs above PASSIVE_LEVEL (`true`) or at it (`false`).
#[cfg(not(loom))]
pub(crate) fn set_raised_irql(raised: bool) {
    RAISED_IRQL.with(|c| c.set(raised));
}

/// A raw pointer that may cross threads in tests.
#[derive(Clone, Copy)]
struct SendPtr(*mut ());
// SAFETY: test-only; the pointee's sharing is what the code under test synchronizes.
unsafe impl Send for SendPtr {}
// SAFETY: as above.
unsafe impl Sync for SendPtr {}

const IDLE: usize = 0;
const PENDING: usize = 1;

/// The test side of a manually driven executor.
#[derive(Clone)]
pub(crate) struct Driver {
    state: Arc<RunState>,
}

struct RunState {
    /// PENDING while a run is requested and not started.
    pending: AtomicUsize,
    context: AtomicPtr<()>,
    requests: AtomicUsize,
    shut_down: AtomicUsize,
    /// The worker thread, if any, sleeps here until a request or shutdown.
    lock: Mutex<()>,
    cond: Condvar,
    worker: Mutex<Option<Worker>>,
}

#[cfg(not(loom))]
type Worker = std::thread::JoinHandle<()>;
#[cfg(loom)]
type Worker = loom::thread::JoinHandle<()>;

impl Driver {
    /// Runs the executor once if a run was requested. `true` if it ran.
    pub(crate) fn run_pending(&self) -> bool {
        match self.run_pending_unset() {
            None => false,
            Some(event) => {
                if let Some(event) = event {
                    // SAFETY: the run handed over the shutdown waiter's event; nothing else
                    // of the executor is touched.
                    unsafe { TestPlatform::event_set(event.as_ptr()) };
                }
                true
            }
        }
    }

    /// Runs the executor once if a run was requested, without setting the event the run hands
    /// back (`None`: no run was requested; `Some(None)`: it ran and handed back nothing).
    pub(crate) fn run_pending_unset(&self) -> Option<Option<NonNull<TestEvent>>> {
        if self.state.pending.swap(IDLE, AcqRel) != PENDING {
            return None;
        }
        let context = self.state.context.load(Acquire);
        // SAFETY: the executor requested this run with this context.
        Some(unsafe { crate::platform::run::<TestPlatform>(NonNull::new(context).unwrap()) })
    }

    /// Runs until no run is requested; returns how many runs that took.
    pub(crate) fn run_until_idle(&self) -> usize {
        let mut n = 0;
        while self.run_pending() {
            n += 1;
        }
        n
    }

    /// Whether a run is requested.
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn is_pending(&self) -> bool {
        self.state.pending.load(Acquire) == PENDING
    }

    /// How many runs were requested so far.
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn requests(&self) -> usize {
        self.state.requests.load(Acquire)
    }

    /// From now on a worker thread performs the runs (until the executor shuts down).
    pub(crate) fn spawn_worker(&self) {
        let driver = self.clone();
        let worker = spawn_thread(move || {
            loop {
                if driver.run_pending() {
                    continue;
                }
                let state = &driver.state;
                let mut guard = state.lock.lock().unwrap();
                loop {
                    if state.pending.load(Acquire) == PENDING {
                        break;
                    }
                    if state.shut_down.load(Acquire) != 0 {
                        return;
                    }
                    guard = state.cond.wait(guard).unwrap();
                }
            }
        });
        *self.state.worker.lock().unwrap() = Some(worker);
    }
}

/// The platform value inside an executor.
pub(crate) struct TestPlatform {
    state: Arc<RunState>,
}

impl TestPlatform {
    /// A platform whose runs the test performs with the returned [`Driver`].
    pub(crate) fn manual() -> (Self, Driver) {
        let state = Arc::new(RunState {
            pending: AtomicUsize::new(IDLE),
            context: AtomicPtr::new(core::ptr::null_mut()),
            requests: AtomicUsize::new(0),
            shut_down: AtomicUsize::new(0),
            lock: Mutex::new(()),
            cond: Condvar::new(),
            worker: Mutex::new(None),
        });
        (Self { state: state.clone() }, Driver { state })
    }

    /// A platform with a worker thread performing the runs.
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn threaded() -> Self {
        let (platform, driver) = Self::manual();
        driver.spawn_worker();
        platform
    }

    fn poke(state: &RunState) {
        let _guard = state.lock.lock().unwrap();
        state.cond.notify_all();
    }
}

#[cfg(not(loom))]
fn spawn_thread(f: impl FnOnce() + Send + 'static) -> Worker {
    std::thread::spawn(f)
}
#[cfg(loom)]
fn spawn_thread(f: impl FnOnce() + Send + 'static) -> Worker {
    loom::thread::spawn(f)
}

/// Auto-reset event.
pub(crate) struct TestEvent {
    inner: Arc<(Mutex<bool>, Condvar)>,
}

/// One-shot timer.
pub(crate) struct TestTimer {
    slot: Arc<TimerSlot>,
}

const ARMED: usize = 1;
const CANCELLED: usize = 2;
const FIRED: usize = 3;

/// What the "kernel" side of a test timer keeps: it outlives the timer's memory.
pub(crate) struct TimerSlot {
    state: AtomicUsize,
    callback: TimerCallback,
    context: SendPtr,
    lock: Mutex<()>,
    cond: Condvar,
}

/// The kernel side of the timer at `timer`, to fire it by hand.
///
/// # Safety
///
/// `timer` is initialized and alive.
pub(crate) unsafe fn timer_slot(timer: *const TestTimer) -> Arc<TimerSlot> {
    // SAFETY: forwarded contract.
    unsafe { (*timer).slot.clone() }
}

/// Threads that fire armed timers, with their timers.
#[cfg(not(loom))]
static TIMER_THREADS: Mutex<std::vec::Vec<(Arc<TimerSlot>, std::thread::JoinHandle<()>)>> =
    Mutex::new(std::vec::Vec::new());

/// Joins the timer threads whose timers fired or were cancelled (they are about to exit).
/// Tests that arm timers call it at their end, so no thread outlives the test run.
#[cfg(not(loom))]
pub(crate) fn join_timer_threads() {
    let done: std::vec::Vec<_> = {
        let mut all = TIMER_THREADS.lock().unwrap();
        let (done, armed) =
            core::mem::take(&mut *all).into_iter().partition(|(slot, _)| slot.state.load(Acquire) != ARMED);
        *all = armed;
        done
    };
    for (_, thread) in done {
        thread.join().unwrap();
    }
}

/// Joins finished timer threads when dropped (at the end of a test).
#[cfg(not(loom))]
pub(crate) struct TimerThreads;

#[cfg(not(loom))]
impl Drop for TimerThreads {
    fn drop(&mut self) {
        join_timer_threads();
    }
}

/// Expires the timer: runs the callback unless cancelled or fired already.
pub(crate) fn fire(slot: &TimerSlot) {
    if slot.state.compare_exchange(ARMED, FIRED, AcqRel, Acquire).is_ok() {
        // Let a timer thread still waiting for this timer go.
        #[cfg(not(loom))]
        {
            let _guard = slot.lock.lock().unwrap();
            slot.cond.notify_all();
        }
        // SAFETY: armed and not cancelled: the callback's context is alive (its armed
        // reference), and this is its one call.
        unsafe { (slot.callback)(NonNull::new(slot.context.0).unwrap()) };
    }
}

// SAFETY: memory from the global (or loom's) allocator; `request_run` leads to one
// `run` later on a thread that can block; events are sticky auto-reset; timers call back at
// most once and never after a successful cancel.
unsafe impl Platform for TestPlatform {
    type Event = TestEvent;
    type Timer = TestTimer;

    fn alloc(layout: Layout) -> Option<NonNull<u8>> {
        #[cfg(not(loom))]
        {
            let fail = FAIL_ALLOCS.with(|c| {
                let n = c.get();
                if n > 0 {
                    c.set(n - 1);
                }
                n > 0
            });
            if fail {
                return None;
            }
            ALLOCS.with(|c| c.set(c.get() + 1));
            // SAFETY: no type of ours has size 0.
            NonNull::new(unsafe { std::alloc::alloc(layout) })
        }
        #[cfg(loom)]
        {
            // SAFETY: as above.
            NonNull::new(unsafe { loom::alloc::alloc(layout) })
        }
    }

    unsafe fn dealloc(ptr: NonNull<u8>, layout: Layout) {
        #[cfg(not(loom))]
        // SAFETY: forwarded contract.
        unsafe {
            std::alloc::dealloc(ptr.as_ptr(), layout);
        };
        #[cfg(loom)]
        // SAFETY: forwarded contract.
        unsafe {
            loom::alloc::dealloc(ptr.as_ptr(), layout)
        };
    }

    fn can_block() -> bool {
        #[cfg(not(loom))]
        {
            !RAISED_IRQL.with(core::cell::Cell::get)
        }
        #[cfg(loom)]
        {
            true
        }
    }

    fn now_nanos() -> u64 {
        #[cfg(not(loom))]
        {
            static BASE: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
            let base = *BASE.get_or_init(std::time::Instant::now);
            u64::try_from(base.elapsed().as_nanos()).unwrap_or(u64::MAX)
        }
        #[cfg(loom)]
        {
            0
        }
    }

    unsafe fn event_init(event: *mut TestEvent) {
        let value = TestEvent { inner: Arc::new((Mutex::new(false), Condvar::new())) };
        // SAFETY: valid for writes (caller).
        unsafe { event.write(value) };
    }

    unsafe fn event_set(event: *const TestEvent) {
        // Hold our own reference: the waiter may free the event once it sees the flag.
        // SAFETY: initialized (caller).
        let inner = unsafe { (*event).inner.clone() };
        *inner.0.lock().unwrap() = true;
        inner.1.notify_all();
    }

    unsafe fn event_wait(event: *const TestEvent) {
        #[cfg(not(loom))]
        if std::thread::panicking() {
            // A failed test unwinding into a shutdown that nobody drives would hang.
            std::eprintln!("waiting while panicking: aborting");
            std::process::abort();
        }
        // SAFETY: initialized (caller).
        let inner = unsafe { &(*event).inner };
        let mut set = inner.0.lock().unwrap();
        while !*set {
            set = inner.1.wait(set).unwrap();
        }
        *set = false;
    }

    unsafe fn event_wait_timeout(event: *const TestEvent, timeout: Duration) -> bool {
        // SAFETY: initialized (caller).
        let inner = unsafe { &(*event).inner };
        let mut set = inner.0.lock().unwrap();
        #[cfg(not(loom))]
        {
            let deadline = std::time::Instant::now() + timeout;
            while !*set {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    return false;
                }
                set = inner.1.wait_timeout(set, left).unwrap().0;
            }
        }
        // Loom has no time: the timeout may expire at once, before any set, which is the
        // case a model of the deadline path needs.
        #[cfg(loom)]
        {
            let _ = timeout;
            if !*set {
                return false;
            }
        }
        *set = false;
        true
    }

    unsafe fn event_drop(event: *mut TestEvent) {
        // SAFETY: initialized, unused from now on (caller).
        unsafe { event.drop_in_place() };
    }

    unsafe fn timer_init(timer: *mut TestTimer, callback: TimerCallback, context: NonNull<()>) {
        let slot = Arc::new(TimerSlot {
            state: AtomicUsize::new(IDLE),
            callback,
            context: SendPtr(context.as_ptr()),
            lock: Mutex::new(()),
            cond: Condvar::new(),
        });
        // SAFETY: valid for writes (caller).
        unsafe { timer.write(TestTimer { slot }) };
    }

    unsafe fn timer_arm(timer: *const TestTimer, after: Duration) {
        // SAFETY: initialized (caller).
        let slot = unsafe { timer_slot(timer) };
        assert_eq!(slot.state.swap(ARMED, AcqRel), IDLE, "timer armed twice");
        #[cfg(not(loom))]
        {
            let s = slot.clone();
            let thread = std::thread::spawn(move || {
                let guard = s.lock.lock().unwrap();
                let (guard, _) = s.cond.wait_timeout_while(guard, after, |()| s.state.load(Acquire) == ARMED).unwrap();
                drop(guard);
                fire(&s);
            });
            TIMER_THREADS.lock().unwrap().push((slot, thread));
        }
        #[cfg(loom)]
        let _ = after;
    }

    unsafe fn timer_cancel(timer: *const TestTimer) -> bool {
        // SAFETY: initialized (caller).
        let slot = unsafe { timer_slot(timer) };
        let cancelled = slot.state.compare_exchange(ARMED, CANCELLED, AcqRel, Acquire).is_ok();
        if cancelled {
            let _guard = slot.lock.lock().unwrap();
            slot.cond.notify_all();
        }
        cancelled
    }

    unsafe fn timer_drop(timer: *mut TestTimer) {
        // SAFETY: initialized, no longer armed (caller).
        unsafe { timer.drop_in_place() };
    }

    unsafe fn request_run(platform: NonNull<Self>, context: NonNull<()>) {
        // Take our own reference first: the run may free `platform` before we return.
        // SAFETY: valid when the call begins (caller).
        let state = unsafe { platform.as_ref() }.state.clone();
        assert_eq!(state.shut_down.load(Acquire), 0, "run requested after shutdown");
        state.context.store(context.as_ptr(), Release);
        state.requests.fetch_add(1, AcqRel);
        assert_eq!(state.pending.swap(PENDING, AcqRel), IDLE, "work item queued twice");
        TestPlatform::poke(&state);
    }

    unsafe fn shutdown(&self) {
        assert_eq!(self.state.pending.load(Acquire), IDLE, "shutdown with a run pending");
        self.state.shut_down.store(1, Release);
        TestPlatform::poke(&self.state);
        let worker = self.state.worker.lock().unwrap().take();
        if let Some(worker) = worker {
            worker.join().unwrap();
        }
    }
}
