//! Loom models of the concurrent parts: run queue, task state machine, queued flag, join
//! handle, abort, wake vs poll, wake vs shutdown, timers and `AtomicWaker`.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p wsk-executor --release --lib loom`.
//! `LOOM_MAX_PREEMPTIONS` overrides the default preemption bound of 3.

use core::future::Future;
use core::pin::Pin;
use core::ptr::NonNull;
use core::task::{Context, Poll, Waker};
use core::time::Duration;
use std::boxed::Box;
use std::sync::Arc as StdArc;
use std::task::Wake;
use std::vec::Vec;

use loom::sync::{Arc, Mutex};
use loom::thread;

use super::platform::{Driver, TestPlatform, fire, timer_slot};
use crate::atomic_waker::AtomicWaker;
use crate::loom::{AtomicUsize, Ordering::SeqCst};
use crate::queue::{Link, RunQueue};
use crate::run_state::{Finish, Notify, RunState};
use crate::time::timer::TimerRef;
use crate::{Config, Executor, JoinHandle, SpawnError};

type Exec = Executor<TestPlatform>;

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(3);
    }
    let iterations = StdArc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = iterations.clone();
    builder.check(move || {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        f();
    });
    std::eprintln!(
        "{}: {} executions (preemption bound {:?})",
        std::thread::current().name().unwrap_or("model"),
        iterations.load(std::sync::atomic::Ordering::Relaxed),
        builder.preemption_bound,
    );
}

fn manual(config: Config) -> (Exec, Driver) {
    let (p, driver) = TestPlatform::manual();
    (Executor::with_platform(p, config).unwrap(), driver)
}

/// A waker counting its wakes (loom-tracked counter).
struct CountWaker(AtomicUsize);

impl Wake for CountWaker {
    fn wake(self: StdArc<Self>) {
        self.0.fetch_add(1, SeqCst);
    }
}

fn count_waker() -> (StdArc<CountWaker>, Waker) {
    let w = StdArc::new(CountWaker(AtomicUsize::new(0)));
    (w.clone(), Waker::from(w))
}

fn poll_with<F: Future + Unpin>(f: &mut F, waker: &Waker) -> Poll<F::Output> {
    Pin::new(f).poll(&mut Context::from_waker(waker))
}

/// Counts drops.
struct DropFlag(Arc<AtomicUsize>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.fetch_add(1, SeqCst);
    }
}

/// Pending until `open` is set; keeps its latest waker in `slot`.
struct Gate {
    open: Arc<AtomicUsize>,
    slot: Arc<Mutex<Option<Waker>>>,
    polls: Arc<AtomicUsize>,
}

impl Gate {
    fn new() -> Self {
        Self {
            open: Arc::new(AtomicUsize::new(0)),
            slot: Arc::new(Mutex::new(None)),
            polls: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn handles(&self) -> (Arc<AtomicUsize>, Arc<Mutex<Option<Waker>>>, Arc<AtomicUsize>) {
        (self.open.clone(), self.slot.clone(), self.polls.clone())
    }
}

impl Future for Gate {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.polls.fetch_add(1, SeqCst);
        *self.slot.lock().unwrap() = Some(cx.waker().clone());
        if self.open.load(SeqCst) != 0 { Poll::Ready(()) } else { Poll::Pending }
    }
}

/// Opens a gate and wakes its task by value.
fn open_gate(open: &AtomicUsize, slot: &Mutex<Option<Waker>>) {
    open.store(1, SeqCst);
    let w = slot.lock().unwrap().take();
    if let Some(w) = w {
        w.wake();
    }
}

/// A queue node that can move to a model thread.
struct SendPtr(NonNull<Link>);

// SAFETY: test-only; the nodes are shared through the queue's protocol.
unsafe impl Send for SendPtr {}

/// Two nodes for a queue model, freed by [`check_and_free`].
fn queue_nodes() -> Vec<NonNull<Link>> {
    (0..2).map(|_| NonNull::from(Box::leak(Box::new(Link::new())))).collect()
}

/// Pushes `node` on a new thread, then runs `after` there.
fn push_on_thread(
    q: &Arc<RunQueue>,
    node: NonNull<Link>,
    after: impl FnOnce() + Send + 'static,
) -> thread::JoinHandle<()> {
    let (q, node) = (q.clone(), SendPtr(node));
    thread::spawn(move || {
        let node = node;
        // SAFETY: each node is pushed once and outlives the queue's use.
        unsafe { q.push(node.0) };
        after();
    })
}

/// Pops everything the consumer can take now into `got`.
fn pop_all(q: &RunQueue, got: &mut Vec<NonNull<Link>>) {
    // SAFETY: the model's main thread is the only consumer.
    while let Some(n) = unsafe { q.pop() } {
        got.push(n);
    }
}

/// After every producer finished: pops the rest, checks that each node came out exactly once,
/// and frees the nodes.
fn check_and_free(q: &RunQueue, mut got: Vec<NonNull<Link>>, nodes: Vec<NonNull<Link>>) {
    pop_all(q, &mut got);
    got.sort();
    let mut want = nodes.clone();
    want.sort();
    assert_eq!(got, want);
    for n in nodes {
        // SAFETY: leaked by `queue_nodes`, no longer queued.
        drop(unsafe { Box::from_raw(n.as_ptr()) });
    }
}

#[test]
fn loom_run_queue_two_producers_one_consumer() {
    model(|| {
        let q = Arc::new(RunQueue::new());
        let nodes = queue_nodes();
        let producers: Vec<_> = nodes.iter().map(|n| push_on_thread(&q, *n, || {})).collect();
        let mut got = Vec::new();
        // SAFETY: this thread is the only consumer.
        if let Some(n) = unsafe { q.pop() } {
            got.push(n);
        }
        for p in producers {
            p.join().unwrap();
        }
        check_and_free(&q, got, nodes);
    });
}

/// A push that completed before the consumer looks is seen by it, even while another push
/// is still in progress (its producer preempted in the middle of it, as a waker running at
/// PASSIVE_LEVEL can be).
#[test]
fn loom_run_queue_completed_push_is_seen() {
    model(|| {
        let q = Arc::new(RunQueue::new());
        let nodes = queue_nodes();
        let done = Arc::new(AtomicUsize::new(0));
        let slow = push_on_thread(&q, nodes[0], || {});
        let done2 = done.clone();
        let fast = push_on_thread(&q, nodes[1], move || done2.store(1, SeqCst));
        let fast_done = done.load(SeqCst) == 1;
        let mut got = Vec::new();
        pop_all(&q, &mut got);
        if fast_done {
            assert!(got.contains(&nodes[1]), "a completed push is hidden from the consumer");
        }
        slow.join().unwrap();
        fast.join().unwrap();
        check_and_free(&q, got, nodes);
    });
}

/// The run protocol alone: two producers push (a counter stands for the queue) and notify
/// while a run is under way. A run that ends idle has seen every push whose `notify` did not
/// ask for a new run, and at most one new run is asked for.
#[test]
fn loom_run_state_never_strands_a_push() {
    model(|| {
        let state = Arc::new(RunState::new());
        let pushed = Arc::new(AtomicUsize::new(0));
        // The run under way was requested before the producers start.
        assert_eq!(state.notify(), Notify::Queue);
        let producers: Vec<_> = (0..2)
            .map(|_| {
                let (state, pushed) = (state.clone(), pushed.clone());
                thread::spawn(move || {
                    pushed.fetch_add(1, SeqCst);
                    state.notify() == Notify::Queue
                })
            })
            .collect();
        // One run: passes until `finish` says idle; each pass "pops" what was pushed.
        let run = |state: &RunState| loop {
            state.begin_pass();
            let seen = pushed.load(SeqCst);
            if state.finish() == Finish::Idle {
                break seen;
            }
        };
        let seen = run(&state);
        let queued = producers.into_iter().map(|p| p.join().unwrap()).filter(|&q| q).count();
        assert!(queued <= 1, "the work item was queued twice");
        if queued == 0 {
            assert_eq!(seen, 2, "a push was stranded: no run sees it");
        } else {
            assert_eq!(run(&state), 2);
        }
        assert_eq!(state.notify(), Notify::Queue, "the run left QUEUED set");
    });
}

/// The task is scheduled (run pending) when another thread opens its gate and wakes it, so
/// the wake lands before, during or after the poll that stores the new waker.
fn wake_vs_poll(by_value: bool) {
    model(move || {
        let (exec, driver) = manual(Config::new());
        let gate = Gate::new();
        let (open, slot, polls) = gate.handles();
        let h = exec.spawn(gate).unwrap();
        assert!(driver.run_pending());
        assert_eq!(polls.load(SeqCst), 1);
        // Schedule a second poll.
        let w = slot.lock().unwrap().clone().unwrap();
        w.wake();
        let waker_thread = thread::spawn(move || {
            open.store(1, SeqCst);
            let w = slot.lock().unwrap().take();
            if let Some(w) = w {
                if by_value {
                    w.wake();
                } else {
                    w.wake_by_ref();
                }
            }
        });
        assert!(driver.run_pending());
        waker_thread.join().unwrap();
        driver.run_until_idle();
        assert!(h.is_finished(), "the wake was lost");
        drop(h);
        exec.shutdown_driven(|| {
            driver.run_until_idle();
        });
    });
}

#[test]
fn loom_wake_by_value_vs_poll_is_never_lost() {
    wake_vs_poll(true);
}

#[test]
fn loom_wake_by_ref_vs_poll_is_never_lost() {
    wake_vs_poll(false);
}

#[test]
fn loom_queued_flag_two_wakers_two_runners() {
    model(|| {
        let (exec, driver) = manual(Config::new());
        let (g1, g2) = (Gate::new(), Gate::new());
        let (o1, s1, p1) = g1.handles();
        let (o2, s2, p2) = g2.handles();
        let h1 = exec.spawn(g1).unwrap();
        let h2 = exec.spawn(g2).unwrap();
        driver.run_until_idle();
        let t1 = thread::spawn(move || open_gate(&o1, &s1));
        let t2 = thread::spawn(move || open_gate(&o2, &s2));
        // Two threads competing to perform requested runs: the platform asserts the work
        // item is never queued twice; loom's cells catch two concurrent runs.
        let d = driver.clone();
        let runner = thread::spawn(move || {
            d.run_pending();
        });
        driver.run_pending();
        t1.join().unwrap();
        t2.join().unwrap();
        runner.join().unwrap();
        driver.run_until_idle();
        assert!(h1.is_finished() && h2.is_finished());
        assert_eq!(p1.load(SeqCst), 2);
        assert_eq!(p2.load(SeqCst), 2);
        drop((h1, h2));
        exec.shutdown_driven(|| {
            driver.run_until_idle();
        });
    });
}

#[test]
fn loom_join_handle_poll_vs_completion() {
    model(|| {
        let (exec, driver) = manual(Config::new());
        let dropped = Arc::new(AtomicUsize::new(0));
        let flag = DropFlag(dropped.clone());
        let mut h = exec.spawn(async move { flag }).unwrap();
        let d = driver.clone();
        let runner = thread::spawn(move || {
            d.run_pending();
        });
        let (count, waker) = count_waker();
        let first = poll_with(&mut h, &waker);
        runner.join().unwrap();
        let output = match first {
            Poll::Ready(out) => out,
            Poll::Pending => {
                assert_eq!(count.0.load(SeqCst), 1, "join waker not woken");
                match poll_with(&mut h, &waker) {
                    Poll::Ready(out) => out,
                    Poll::Pending => panic!("complete task still pending"),
                }
            }
        };
        assert!(output.is_ok());
        drop(output);
        drop(h);
        assert_eq!(dropped.load(SeqCst), 1);
        drop(waker);
        assert_eq!(StdArc::strong_count(&count), 1, "join waker leaked");
        exec.shutdown_driven(|| {
            driver.run_until_idle();
        });
    });
}

#[test]
fn loom_join_handle_drop_vs_completion() {
    model(|| {
        let (exec, driver) = manual(Config::new());
        let dropped = Arc::new(AtomicUsize::new(0));
        let flag = DropFlag(dropped.clone());
        let mut h = exec.spawn(async move { flag }).unwrap();
        let (count, waker) = count_waker();
        // Register a join waker first, then race the drop with the completion.
        assert!(poll_with(&mut h, &waker).is_pending());
        let d = driver.clone();
        let runner = thread::spawn(move || {
            d.run_pending();
        });
        drop(h);
        runner.join().unwrap();
        driver.run_until_idle();
        assert_eq!(dropped.load(SeqCst), 1, "output dropped once");
        drop(waker);
        assert_eq!(StdArc::strong_count(&count), 1, "join waker leaked");
        exec.shutdown_driven(|| {
            driver.run_until_idle();
        });
    });
}

#[test]
fn loom_abort_vs_wake_vs_run() {
    model(|| {
        let (exec, driver) = manual(Config::new());
        let dropped = Arc::new(AtomicUsize::new(0));
        let flag = DropFlag(dropped.clone());
        let gate = Gate::new();
        let (open, slot, _polls) = gate.handles();
        let h: JoinHandle<()> = exec
            .spawn(async move {
                let _flag = flag;
                gate.await;
                core::future::pending::<()>().await;
            })
            .unwrap();
        driver.run_until_idle();
        let h = Arc::new(h);
        let h2 = h.clone();
        let aborter = thread::spawn(move || h2.abort());
        let waker = thread::spawn(move || open_gate(&open, &slot));
        driver.run_pending();
        aborter.join().unwrap();
        waker.join().unwrap();
        driver.run_until_idle();
        assert_eq!(dropped.load(SeqCst), 1, "future dropped exactly once");
        let mut h = Arc::try_unwrap(h).ok().unwrap();
        let (_, w) = count_waker();
        match poll_with(&mut h, &w) {
            Poll::Ready(Err(e)) => assert!(e.is_cancelled()),
            other => panic!("unexpected {other:?}"),
        }
        drop(h);
        exec.shutdown_driven(|| {
            driver.run_until_idle();
        });
    });
}

#[test]
fn loom_last_reference_races() {
    // The waker (by value), the join handle and the run each hold a reference; whichever
    // drops the last frees the task exactly once (loom's allocator catches a leak or a
    // double free).
    model(|| {
        let (exec, driver) = manual(Config::new());
        let gate = Gate::new();
        let (open, slot, _polls) = gate.handles();
        let h = exec.spawn(gate).unwrap();
        driver.run_until_idle();
        open.store(1, SeqCst);
        let w = slot.lock().unwrap().take().unwrap();
        let waker = thread::spawn(move || w.wake());
        let joiner = thread::spawn(move || drop(h));
        driver.run_pending();
        waker.join().unwrap();
        joiner.join().unwrap();
        driver.run_until_idle();
        // The gate stored a waker at its last poll.
        drop(slot.lock().unwrap().take());
        assert_eq!(exec.live_tasks(), 0);
        exec.shutdown_driven(|| {
            driver.run_until_idle();
        });
    });
}

#[test]
fn loom_wake_vs_shutdown() {
    model(|| {
        let (exec, driver) = manual(Config::new());
        let dropped = Arc::new(AtomicUsize::new(0));
        let flag = DropFlag(dropped.clone());
        let gate = Gate::new();
        let (open, slot, _polls) = gate.handles();
        drop(exec.spawn(async move {
            let _flag = flag;
            gate.await;
        }));
        driver.run_until_idle();
        // From now on a worker thread performs the runs.
        driver.spawn_worker();
        let waker = thread::spawn(move || open_gate(&open, &slot));
        exec.shutdown().unwrap();
        assert_eq!(dropped.load(SeqCst), 1);
        waker.join().unwrap();
    });
}

/// Shutdown with a deadline racing the last waker's drop on another thread: the timed wait
/// may expire before or after the release; either the shutdown finished within it, or it is
/// stalled and a second wait sees the release (the event is set once and kept).
#[test]
fn loom_shutdown_deadline_vs_last_waker() {
    model(|| {
        let (exec, driver) = manual(Config::new());
        let gate = Gate::new();
        let (_open, slot, _polls) = gate.handles();
        drop(exec.spawn(gate));
        driver.run_until_idle();
        let waker = slot.lock().unwrap().take().expect("polled");
        driver.spawn_worker();
        let holder = thread::spawn(move || drop(waker));
        let report = exec.shutdown_within(Duration::from_millis(1)).unwrap();
        assert_eq!(report.cancelled, 1);
        if let Some(stalled) = report.stalled {
            holder.join().unwrap();
            stalled.wait().unwrap();
        } else {
            holder.join().unwrap();
        }
    });
}

#[test]
fn loom_spawn_vs_shutdown() {
    model(|| {
        let (exec, driver) = manual(Config::new());
        driver.spawn_worker();
        let spawner = exec.spawner();
        let dropped = Arc::new(AtomicUsize::new(0));
        let flag = DropFlag(dropped.clone());
        let t = thread::spawn(move || {
            let r = spawner.spawn(async move {
                let _flag = flag;
            });
            match r {
                Ok(h) => drop(h),
                Err(e) => assert_eq!(e, SpawnError::ShuttingDown),
            }
        });
        exec.shutdown().unwrap();
        t.join().unwrap();
        assert_eq!(dropped.load(SeqCst), 1);
    });
}

#[test]
fn loom_timer_fire_vs_cancel() {
    model(|| {
        let (count, waker) = count_waker();
        let t = TimerRef::<TestPlatform>::start(Duration::from_secs(1), &waker).unwrap();
        // SAFETY: the timer is alive while `t` is.
        let slot = unsafe { timer_slot(t.raw_timer()) };
        let firer = thread::spawn(move || fire(&slot));
        drop(t);
        firer.join().unwrap();
        assert!(count.0.load(SeqCst) <= 1);
        drop(waker);
        assert_eq!(StdArc::strong_count(&count), 1, "timer's waker leaked");
    });
}

#[test]
fn loom_timer_fire_vs_register() {
    model(|| {
        let (_, w1) = count_waker();
        let (c2, w2) = count_waker();
        let t = TimerRef::<TestPlatform>::start(Duration::from_secs(1), &w1).unwrap();
        // SAFETY: the timer is alive while `t` is.
        let slot = unsafe { timer_slot(t.raw_timer()) };
        let firer = thread::spawn(move || fire(&slot));
        t.register(&w2);
        let seen = t.is_fired();
        firer.join().unwrap();
        assert!(t.is_fired());
        assert!(seen || c2.0.load(SeqCst) == 1, "expiry lost");
        drop(t);
    });
}

#[test]
fn loom_atomic_waker_register_vs_wake() {
    model(|| {
        let aw = Arc::new(AtomicWaker::new());
        let flag = Arc::new(AtomicUsize::new(0));
        let (c1, w1) = count_waker();
        aw.register(&w1);
        let (aw2, flag2) = (aw.clone(), flag.clone());
        let waker = thread::spawn(move || {
            flag2.store(1, SeqCst);
            aw2.wake();
        });
        let (c2, w2) = count_waker();
        aw.register(&w2);
        let seen = flag.load(SeqCst) == 1;
        waker.join().unwrap();
        // A wake racing a register may wake both the old and the new waker, never one twice.
        assert!(c1.0.load(SeqCst) <= 1 && c2.0.load(SeqCst) <= 1);
        assert!(seen || c2.0.load(SeqCst) == 1, "wake lost");
    });
}

#[test]
fn loom_block_on_woken_from_another_thread() {
    model(|| {
        let gate = Gate::new();
        let (open, slot, _polls) = gate.handles();
        let t = thread::spawn(move || open_gate(&open, &slot));
        crate::block_on_with::<TestPlatform, _>(gate).unwrap();
        t.join().unwrap();
    });
}
