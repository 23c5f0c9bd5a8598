//! Executor throughput against tokio's current_thread runtime and async-executor (smol's), in
//! one run: `cargo xtask bench` (= `cargo bench -p wsk-tests --bench executor`).
//!
//! Workloads, identical for every runtime:
//!
//! * **spawn-and-complete**: a task spawns N tasks (each returns a number) and awaits every
//!   join handle in order. Reported as tasks per second.
//! * **ping-pong**: two tasks hand a turn counter back and forth, each waking the other
//!   through an [`AtomicWaker`] (the same type, `wsk_executor::AtomicWaker`, for every
//!   runtime). Reported as round trips (two wakes and two polls) per second.
//!
//! `wsk-executor` runs twice: on the emulated kernel (its real backend: a system work item
//! queued with `IoQueueWorkItem`, served by the emulator's worker threads; verifier and
//! allocation backtraces off), and on a minimal std platform (one thread per executor standing
//! in for the work item, std's allocator), which shows what the executor itself costs without
//! the emulator.
//!
//! Each measurement is repeated and the median reported. Without `--bench` (as under
//! `cargo test --benches`) it runs a tiny version once, as a smoke test.

use std::alloc::Layout;
use std::future::{Future, poll_fn};
use std::hint::black_box;
use std::pin::pin;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};
use std::thread;
use std::time::{Duration, Instant};

use wsk_executor::platform::{Platform, TimerCallback};
use wsk_executor::{AtomicWaker, Config, Executor, IoObject, JoinHandle};
use wsk_sys::{DRIVER_OBJECT, NTSTATUS, STATUS_INSUFFICIENT_RESOURCES, STATUS_SUCCESS, UNICODE_STRING};

/// Sizes and repetitions.
#[derive(Clone, Copy)]
struct Plan {
    spawn_tasks: u64,
    round_trips: u64,
    repetitions: usize,
}

const FULL: Plan = Plan { spawn_tasks: 100_000, round_trips: 200_000, repetitions: 7 };
const SMOKE: Plan = Plan { spawn_tasks: 1_000, round_trips: 1_000, repetitions: 1 };

// ---------------------------------------------------------------------------------------------
// The workloads

/// The shared state of a ping-pong: whose turn it is, and each player's waker.
struct Table {
    turn: AtomicU64,
    wakers: [AtomicWaker; 2],
}

impl Table {
    fn new() -> Arc<Self> {
        Arc::new(Self { turn: AtomicU64::new(0), wakers: [AtomicWaker::new(), AtomicWaker::new()] })
    }
}

/// One player: waits for its turn, passes it on and wakes the other player, `rounds` times.
/// Player 0 plays on even turns, player 1 on odd ones.
async fn player(table: Arc<Table>, side: usize, rounds: u64) -> u64 {
    for round in 0..rounds {
        let mine = 2 * round + side as u64;
        poll_fn(|cx| {
            if table.turn.load(Ordering::Acquire) == mine {
                return Poll::Ready(());
            }
            table.wakers[side].register(cx.waker());
            if table.turn.load(Ordering::Acquire) == mine { Poll::Ready(()) } else { Poll::Pending }
        })
        .await;
        table.turn.store(mine + 1, Ordering::Release);
        table.wakers[1 - side].wake();
    }
    rounds
}

/// The body of a spawned task in spawn-and-complete.
async fn leaf(i: u64) -> u64 {
    black_box(i)
}

fn expected_sum(n: u64) -> u64 {
    n * (n - 1) / 2
}

// ---------------------------------------------------------------------------------------------
// Runtimes

/// One runtime under test: runs each workload once and returns the elapsed time.
trait Runtime {
    fn spawn_and_complete(&mut self, tasks: u64) -> Duration;
    fn ping_pong(&mut self, round_trips: u64) -> Duration;
}

/// `wsk-executor` over any platform; the bench thread waits for join handles with
/// [`wait_std`].
struct Ours<P: Platform> {
    executor: Option<Executor<P>>,
}

impl<P: Platform> Ours<P> {
    fn executor(&self) -> &Executor<P> {
        self.executor.as_ref().expect("executor present until the end")
    }
}

impl<P: Platform> Runtime for Ours<P> {
    fn spawn_and_complete(&mut self, tasks: u64) -> Duration {
        let spawner = self.executor().spawner();
        let start = Instant::now();
        let main = self
            .executor()
            .spawn(async move {
                let handles: Vec<JoinHandle<u64>> =
                    (0..tasks).map(|i| spawner.spawn(leaf(i)).expect("spawn")).collect();
                let mut sum = 0;
                for handle in handles {
                    sum += handle.await.expect("task output");
                }
                sum
            })
            .expect("spawn");
        let sum = wait_std(main).expect("main task");
        let elapsed = start.elapsed();
        assert_eq!(sum, expected_sum(tasks));
        elapsed
    }

    fn ping_pong(&mut self, round_trips: u64) -> Duration {
        let table = Table::new();
        let start = Instant::now();
        let a = self.executor().spawn(player(table.clone(), 0, round_trips)).expect("spawn");
        let b = self.executor().spawn(player(table, 1, round_trips)).expect("spawn");
        let played = wait_std(a).expect("player 0") + wait_std(b).expect("player 1");
        let elapsed = start.elapsed();
        assert_eq!(played, 2 * round_trips);
        elapsed
    }
}

impl<P: Platform> Drop for Ours<P> {
    fn drop(&mut self) {
        if let Some(executor) = self.executor.take() {
            executor.shutdown().expect("shut down at PASSIVE_LEVEL");
        }
    }
}

/// Waits on the bench thread for `future` (a join handle), parking between polls. The same
/// waiting for every `wsk-executor` platform, so the emulator's `block_on` (a KEVENT wait) is
/// not part of the comparison.
fn wait_std<F: Future>(future: F) -> F::Output {
    struct Unparker(thread::Thread);
    impl std::task::Wake for Unparker {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unparker(thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        thread::park();
    }
}

struct Tokio {
    runtime: tokio::runtime::Runtime,
}

impl Tokio {
    fn new() -> Self {
        Self { runtime: tokio::runtime::Builder::new_current_thread().build().expect("tokio runtime") }
    }
}

impl Runtime for Tokio {
    fn spawn_and_complete(&mut self, tasks: u64) -> Duration {
        let start = Instant::now();
        let sum = self.runtime.block_on(async move {
            tokio::spawn(async move {
                let handles: Vec<tokio::task::JoinHandle<u64>> = (0..tasks).map(|i| tokio::spawn(leaf(i))).collect();
                let mut sum = 0;
                for handle in handles {
                    sum += handle.await.expect("task output");
                }
                sum
            })
            .await
            .expect("main task")
        });
        let elapsed = start.elapsed();
        assert_eq!(sum, expected_sum(tasks));
        elapsed
    }

    fn ping_pong(&mut self, round_trips: u64) -> Duration {
        let table = Table::new();
        let start = Instant::now();
        let played = self.runtime.block_on(async move {
            let a = tokio::spawn(player(table.clone(), 0, round_trips));
            let b = tokio::spawn(player(table, 1, round_trips));
            a.await.expect("player 0") + b.await.expect("player 1")
        });
        let elapsed = start.elapsed();
        assert_eq!(played, 2 * round_trips);
        elapsed
    }
}

struct Smol {
    executor: Arc<async_executor::Executor<'static>>,
}

impl Runtime for Smol {
    fn spawn_and_complete(&mut self, tasks: u64) -> Duration {
        let executor = self.executor.clone();
        let start = Instant::now();
        let main = self.executor.spawn(async move {
            let handles: Vec<async_executor::Task<u64>> = (0..tasks).map(|i| executor.spawn(leaf(i))).collect();
            let mut sum = 0;
            for handle in handles {
                sum += handle.await;
            }
            sum
        });
        let sum = futures_lite::future::block_on(self.executor.run(main));
        let elapsed = start.elapsed();
        assert_eq!(sum, expected_sum(tasks));
        elapsed
    }

    fn ping_pong(&mut self, round_trips: u64) -> Duration {
        let table = Table::new();
        let start = Instant::now();
        let a = self.executor.spawn(player(table.clone(), 0, round_trips));
        let b = self.executor.spawn(player(table, 1, round_trips));
        let played = futures_lite::future::block_on(self.executor.run(async { a.await + b.await }));
        let elapsed = start.elapsed();
        assert_eq!(played, 2 * round_trips);
        elapsed
    }
}

// ---------------------------------------------------------------------------------------------
// wsk-executor on the emulated kernel

/// The benchmark driver's executor.
static DRIVER_EXECUTOR: Mutex<Option<Executor>> = Mutex::new(None);
/// The poll budget per work item run the benchmark driver configures.
static DRIVER_POLLS_PER_RUN: AtomicU32 = AtomicU32::new(DEFAULT_POLLS_PER_RUN);
/// `Config::new()`'s poll budget.
const DEFAULT_POLLS_PER_RUN: u32 = 1024;

/// DriverEntry: creates the executor for the driver object, with the configured budget.
unsafe extern "system" fn bench_driver_entry(driver: *mut DRIVER_OBJECT, _registry: *mut UNICODE_STRING) -> NTSTATUS {
    // SAFETY: DriverEntry's own driver object.
    let io = unsafe { IoObject::from_driver(driver) };
    let config = Config::new().max_polls_per_run(DRIVER_POLLS_PER_RUN.load(Ordering::Relaxed));
    match Executor::with_config(io, config) {
        Ok(executor) => {
            *DRIVER_EXECUTOR.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(executor);
            STATUS_SUCCESS
        }
        Err(_) => STATUS_INSUFFICIENT_RESOURCES,
    }
}

/// Loads the benchmark driver (verifier and allocation backtraces off) with `polls_per_run`
/// and runs `f` with its executor; shuts the executor down and unloads afterwards.
fn with_emulator(polls_per_run: u32, f: impl FnOnce(&mut dyn Runtime)) {
    DRIVER_POLLS_PER_RUN.store(polls_per_run, Ordering::Relaxed);
    let driver = wsk_emulator::Kernel::builder()
        .verifier(false)
        .capture_sites(false)
        .load("executor-bench", bench_driver_entry)
        .unwrap_or_else(|e| panic!("benchmark driver did not load: {e}"));
    let executor =
        DRIVER_EXECUTOR.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take().expect("executor created");
    if polls_per_run == DEFAULT_POLLS_PER_RUN {
        print_kernel_primitive_costs();
    }
    let mut ours = Ours { executor: Some(executor) };
    f(&mut ours);
    drop(ours);
    let report = driver.unload();
    report.assert_no_violations();
}

/// Prints what the kernel routines on the executor's hot paths cost in the emulator: the clock
/// it reads (after the first poll of a run and every 16 polls), and the pool allocation and free of every spawn.
fn print_kernel_primitive_costs() {
    const CALLS: u32 = 200_000;
    let per_call = |start: Instant| start.elapsed().as_nanos() as f64 / f64::from(CALLS);
    let start = Instant::now();
    for _ in 0..CALLS {
        // SAFETY: no preconditions; any IRQL.
        black_box(unsafe { wsk_sys::KeQueryInterruptTime() });
    }
    let clock = per_call(start);
    let start = Instant::now();
    for _ in 0..CALLS {
        black_box(Instant::now());
    }
    let host_clock = per_call(start);
    let tag = wsk_executor::kernel::POOL_TAG;
    let start = Instant::now();
    for _ in 0..CALLS {
        let block = wsk_executor::kernel::pool::allocate(128, tag).expect("pool");
        // SAFETY: just allocated with this tag, not used afterwards.
        unsafe { wsk_executor::kernel::pool::free(black_box(block), tag) };
    }
    let pool = per_call(start);
    println!(
        "emulated kernel routines (verifier off): KeQueryInterruptTime {clock:.0} ns (host Instant::now {host_clock:.0} \
         ns), 128-byte pool allocation + free {pool:.0} ns"
    );
}

// ---------------------------------------------------------------------------------------------
// wsk-executor on a minimal std platform

/// What the runner thread of one [`StdThread`] executor waits for.
struct RunnerState {
    /// The executor context of a requested run not yet started.
    pending: Option<NonNull<()>>,
    stop: bool,
}

// SAFETY: the context is the executor's, which may be run from any thread (the platform
// contract); it is only handed to `run`.
unsafe impl Send for RunnerState {}

struct Runner {
    state: Mutex<RunnerState>,
    wake: Condvar,
}

/// One thread per executor performs its runs, as the system worker thread performs a work
/// item's. No timers: the benchmark does not sleep.
///
/// `FREE_CLOCK`: the clock the executor reads after every poll (for its time budget) is a
/// constant instead of `Instant::now()`, to show what those reads cost. Nothing in these
/// workloads comes near the 2 ms time budget, so the scheduling is the same.
struct StdThread<const FREE_CLOCK: bool> {
    runner: Arc<Runner>,
    thread: Mutex<Option<thread::JoinHandle<()>>>,
}

/// An auto-reset event.
struct StdEvent {
    set: Mutex<bool>,
    cond: Condvar,
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

impl<const FREE_CLOCK: bool> StdThread<FREE_CLOCK> {
    fn new() -> Self {
        let runner =
            Arc::new(Runner { state: Mutex::new(RunnerState { pending: None, stop: false }), wake: Condvar::new() });
        let serving = runner.clone();
        let thread = thread::Builder::new()
            .name("std-work-item".to_owned())
            .spawn(move || {
                loop {
                    let context = {
                        let mut state = serving.state.lock().expect("runner lock");
                        loop {
                            if let Some(context) = state.pending.take() {
                                break context;
                            }
                            if state.stop {
                                return;
                            }
                            state = serving.wake.wait(state).expect("runner lock");
                        }
                    };
                    // SAFETY: the executor requested this run with this context, once.
                    if let Some(event) = unsafe { wsk_executor::platform::run::<Self>(context) } {
                        // SAFETY: the shutdown waiter's event, handed over by the last run.
                        unsafe { <Self as Platform>::event_set(event.as_ptr()) };
                    }
                }
            })
            .expect("runner thread");
        Self { runner, thread: Mutex::new(Some(thread)) }
    }
}

// SAFETY: std's allocator; `request_run` hands the context to the runner thread, which calls
// `run` once per request, later, on itself (where blocking is allowed); events are auto-reset
// and keep a set that no one waited for; there are no timers (their functions panic before
// touching anything).
unsafe impl<const FREE_CLOCK: bool> Platform for StdThread<FREE_CLOCK> {
    type Event = StdEvent;
    type Timer = ();

    fn alloc(layout: Layout) -> Option<NonNull<u8>> {
        // SAFETY: every layout the executor allocates has a non-zero size.
        NonNull::new(unsafe { std::alloc::alloc(layout) })
    }

    unsafe fn dealloc(ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: allocated by `alloc` with this layout (caller).
        unsafe { std::alloc::dealloc(ptr.as_ptr(), layout) };
    }

    fn can_block() -> bool {
        true
    }

    fn now_nanos() -> u64 {
        if FREE_CLOCK {
            return 0;
        }
        u64::try_from(epoch().elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    unsafe fn event_init(event: *mut StdEvent) {
        // SAFETY: valid for writes (caller).
        unsafe { event.write(StdEvent { set: Mutex::new(false), cond: Condvar::new() }) };
    }

    unsafe fn event_set(event: *const StdEvent) {
        // SAFETY: initialized and not dropped (caller).
        let event = unsafe { &*event };
        *event.set.lock().expect("event lock") = true;
        event.cond.notify_one();
    }

    unsafe fn event_wait(event: *const StdEvent) {
        // SAFETY: initialized and not dropped (caller).
        let event = unsafe { &*event };
        let mut set = event.set.lock().expect("event lock");
        while !*set {
            set = event.cond.wait(set).expect("event lock");
        }
        *set = false;
    }

    unsafe fn event_wait_timeout(event: *const StdEvent, timeout: Duration) -> bool {
        // SAFETY: initialized and not dropped (caller).
        let event = unsafe { &*event };
        let set = event.set.lock().expect("event lock");
        let (mut set, _) = event.cond.wait_timeout_while(set, timeout, |set| !*set).expect("event lock");
        std::mem::replace(&mut *set, false)
    }

    unsafe fn event_drop(event: *mut StdEvent) {
        // SAFETY: initialized, no longer used (caller).
        unsafe { std::ptr::drop_in_place(event) };
    }

    unsafe fn timer_init(_timer: *mut (), _callback: TimerCallback, _context: NonNull<()>) {
        panic!("the benchmark uses no timers");
    }

    unsafe fn timer_arm(_timer: *const (), _after: Duration) {
        panic!("the benchmark uses no timers");
    }

    unsafe fn timer_cancel(_timer: *const ()) -> bool {
        panic!("the benchmark uses no timers");
    }

    unsafe fn timer_drop(_timer: *mut ()) {
        panic!("the benchmark uses no timers");
    }

    unsafe fn request_run(platform: NonNull<Self>, context: NonNull<()>) {
        // Keep the runner alive ourselves: the run may free `platform` before we return.
        // SAFETY: valid when the call begins (caller).
        let runner = unsafe { platform.as_ref() }.runner.clone();
        let mut state = runner.state.lock().expect("runner lock");
        debug_assert!(state.pending.is_none(), "a run requested while one is pending");
        state.pending = Some(context);
        drop(state);
        runner.wake.notify_one();
    }

    unsafe fn shutdown(&self) {
        self.runner.state.lock().expect("runner lock").stop = true;
        self.runner.wake.notify_one();
        if let Some(thread) = self.thread.lock().expect("thread lock").take() {
            thread.join().expect("runner thread");
        }
    }
}

fn with_std_thread<const FREE_CLOCK: bool>(f: impl FnOnce(&mut dyn Runtime)) {
    let executor = Executor::with_platform(StdThread::<FREE_CLOCK>::new(), Config::new()).expect("executor");
    f(&mut Ours { executor: Some(executor) });
}

// ---------------------------------------------------------------------------------------------
// Measuring and reporting

/// One measured configuration.
struct Row {
    name: &'static str,
    /// Shown for where the time goes, not part of the comparison.
    diagnostic: bool,
    /// [spawn-and-complete, ping-pong] operations per second.
    rates: [f64; 2],
}

/// Median operations per second of `repetitions` runs of `op` (after one warm-up run).
fn median_rate(repetitions: usize, ops: u64, mut op: impl FnMut() -> Duration) -> f64 {
    op();
    let mut rates: Vec<f64> = (0..repetitions).map(|_| ops as f64 / op().as_secs_f64()).collect();
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

/// [spawn-and-complete rate, ping-pong rate] of one runtime.
fn measure(plan: Plan, runtime: &mut dyn Runtime) -> [f64; 2] {
    let spawn = median_rate(plan.repetitions, plan.spawn_tasks, || runtime.spawn_and_complete(plan.spawn_tasks));
    let ping = median_rate(plan.repetitions, plan.round_trips, || runtime.ping_pong(plan.round_trips));
    [spawn, ping]
}

fn human(rate: f64) -> String {
    if rate >= 1e6 { format!("{:.2} M/s", rate / 1e6) } else { format!("{:.0} k/s", rate / 1e3) }
}

fn main() {
    let full = std::env::args().any(|arg| arg == "--bench");
    let plan = if full { FULL } else { SMOKE };

    let mut rows = Vec::new();
    let mut rates = [0.0; 2];
    with_emulator(DEFAULT_POLLS_PER_RUN, |runtime| rates = measure(plan, runtime));
    rows.push(Row { name: "wsk-executor, emulator work item", diagnostic: false, rates });
    with_std_thread::<false>(|runtime| rates = measure(plan, runtime));
    rows.push(Row { name: "wsk-executor, std thread", diagnostic: false, rates });
    rows.push(Row { name: "tokio current_thread", diagnostic: false, rates: measure(plan, &mut Tokio::new()) });
    let smol = &mut Smol { executor: Arc::new(async_executor::Executor::new()) };
    rows.push(Row { name: "async-executor", diagnostic: false, rates: measure(plan, smol) });
    with_emulator(64, |runtime| rates = measure(plan, runtime));
    rows.push(Row { name: "(diagnostic) emulator, 64 polls per run", diagnostic: true, rates });
    with_std_thread::<true>(|runtime| rates = measure(plan, runtime));
    rows.push(Row { name: "(diagnostic) std thread, free clock reads", diagnostic: true, rates });

    if !full {
        println!("\n(smoke run without --bench: the sizes are too small for these figures to mean anything)");
    }
    println!(
        "\nExecutor throughput: median of {} runs after a warm-up; spawn-and-complete = {} tasks spawned by a \
         task and joined, ping-pong = {} round trips between two tasks\n",
        plan.repetitions, plan.spawn_tasks, plan.round_trips
    );
    println!("| runtime | spawn-and-complete | ns per task | ping-pong | ns per round trip |");
    println!("|---|---:|---:|---:|---:|");
    for row in &rows {
        let [spawn, ping] = row.rates;
        println!("| {} | {} | {:.0} | {} | {:.0} |", row.name, human(spawn), 1e9 / spawn, human(ping), 1e9 / ping);
    }
    println!("\n| ours / peer (throughput, higher is better) | spawn-and-complete | ping-pong |");
    println!("|---|---:|---:|");
    let peers: Vec<&Row> = rows.iter().filter(|r| !r.diagnostic && !r.name.starts_with("wsk-executor")).collect();
    for ours in rows.iter().filter(|r| r.name.starts_with("wsk-executor") || r.diagnostic) {
        for peer in &peers {
            println!(
                "| {} / {} | {:.2} | {:.2} |",
                ours.name,
                peer.name,
                ours.rates[0] / peer.rates[0],
                ours.rates[1] / peer.rates[1]
            );
        }
    }
}
