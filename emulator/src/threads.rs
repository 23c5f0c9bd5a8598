//! The emulated system threads, started once per process on first use:
//!
//! * [`WORKER_THREADS`] system worker threads run work items at PASSIVE_LEVEL;
//! * [`DPC_THREADS`] DPC threads (one per emulated processor) run DPCs at DISPATCH_LEVEL;
//! * one timer thread expires timers and queues their DPCs.
//!
//! A system thread that calls `KeBugCheckEx` stops for good; a fresh thread takes its place
//! so that later drivers in the process get the same number of threads.

use std::cell::Cell;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;

/// System worker threads.
pub const WORKER_THREADS: usize = 4;
/// Emulated processors, each with a DPC thread.
pub const DPC_THREADS: usize = 2;

/// What an emulator thread is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// A thread of the host program (a test, DriverEntry's caller).
    Host,
    Worker,
    Dpc,
    Timer,
}

thread_local! {
    static ROLE: Cell<Role> = const { Cell::new(Role::Host) };
}

static STARTED: OnceLock<()> = OnceLock::new();
static SPAWNED: AtomicUsize = AtomicUsize::new(0);

/// The current thread's role.
pub(crate) fn role() -> Role {
    ROLE.with(Cell::get)
}

pub(crate) fn set_role(role: Role) {
    ROLE.with(|cell| cell.set(role));
}

/// Starts the system threads if they are not running yet.
pub(crate) fn ensure_started() {
    STARTED.get_or_init(|| {
        for _ in 0..WORKER_THREADS {
            start(Role::Worker);
        }
        for _ in 0..DPC_THREADS {
            start(Role::Dpc);
        }
        start(Role::Timer);
    });
}

/// Makes the calling thread one that does not preempt the thread that wakes it
/// (`SCHED_BATCH`; its share of the CPU among normal threads is unchanged). The work item
/// threads and the provider's I/O thread are such threads: the I/O thread readies tasks from
/// completion routines and callbacks (at emulated DISPATCH_LEVEL, where Windows lets nothing
/// preempt it on its processor) and a worker's sends make the I/O thread's sockets ready;
/// with the host's wake-up preemption the workers were preempted about 5 times per 100 round
/// trips of a 64-connection echo (0.1 times without), each hand-over carrying little work.
/// Without it the woken thread runs when the waker sleeps or its time slice ends, with every
/// task readied meanwhile (BENCHMARKS.md, "Hand-overs").
pub(crate) fn no_wakeup_preemption() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: `param` is a valid `sched_param`; pid 0 is the calling thread.
        let _ = unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &raw const param) };
    }
}

/// Starts one system thread of `role`.
pub(crate) fn start(role: Role) {
    let index = SPAWNED.fetch_add(1, Ordering::Relaxed);
    let (name, main): (String, fn()) = match role {
        Role::Worker => (format!("wsk-emu-worker-{index}"), crate::workitem::worker_main),
        Role::Dpc => (format!("wsk-emu-dpc-{index}"), crate::dpc::dpc_thread_main),
        Role::Timer | Role::Host => (format!("wsk-emu-timer-{index}"), crate::timer::timer_thread_main),
    };
    thread::Builder::new()
        .name(name.clone())
        .spawn(main)
        .unwrap_or_else(|error| panic!("wsk-emulator: cannot start system thread {name}: {error}"));
}
