//! DPCs: `KeInitializeDpc`, `KeInsertQueueDpc`, `KeRemoveQueueDpc`, `KeFlushQueuedDpcs`, run
//! by [`DPC_THREADS`](crate::threads::DPC_THREADS) DPC threads (one per emulated processor) at
//! DISPATCH_LEVEL.
//!
//! A DPC is queued at most once: `KeInsertQueueDpc` on a queued DPC returns FALSE. It leaves
//! the queue just before its routine runs, so the routine may queue it again; a DPC runs once
//! per queueing. Queued DPCs are kept in one FIFO served by both threads (the emulator does
//! not model per-processor queues or importance).

// The emulator reads and writes KDPC fields through raw pointers the driver passes, several per
// step under one lock; this module allows several unsafe operations per block, each block
// saying why it is sound.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ops::Bound;
use std::ptr;
use std::sync::{Condvar, Mutex};
use std::time::Instant;

use wsk_sys::{BOOLEAN, DISPATCH_LEVEL, FALSE, KDEFERRED_ROUTINE, KDPC, PASSIVE_LEVEL, PVOID, TRUE};

use crate::counters::bump;
use crate::irql;
use crate::kernel;
use crate::sync::{lock, spin_until, wait, wait_until};
use crate::verifier::{Leak, LeakKind, Rule, bugcheck};

/// `KDPC.Type` of an initialized DPC (`DpcObject`).
const DPC_OBJECT: u8 = 0x13;
/// `KDPC.Importance` given by `KeInitializeDpc` (`MediumImportance`).
const MEDIUM_IMPORTANCE: u8 = 1;
/// Non-null `KDPC.DpcData` of a queued DPC (the real kernel stores the processor's DPC data).
static QUEUED_MARKER: u8 = 0;

struct Queued {
    seq: u64,
    session: u64,
}

struct DpcState {
    queue: VecDeque<usize>,
    queued: BTreeMap<usize, Queued>,
    /// Sequence numbers of DPCs queued or running.
    outstanding: BTreeSet<u64>,
    /// Running DPCs: sequence number to (DPC, session).
    running: BTreeMap<u64, (usize, u64)>,
    next_seq: u64,
}

static DPCS: Mutex<DpcState> = Mutex::new(DpcState {
    queue: VecDeque::new(),
    queued: BTreeMap::new(),
    outstanding: BTreeSet::new(),
    running: BTreeMap::new(),
    next_seq: 1,
});
static DPC_QUEUED: Condvar = Condvar::new();
static DPC_RETIRED: Condvar = Condvar::new();

fn queued_marker() -> PVOID {
    (&raw const QUEUED_MARKER).cast_mut().cast()
}

/// Queues `dpc` (the body of `KeInsertQueueDpc`, also used by timers).
#[expect(
    clippy::multiple_unsafe_ops_per_block,
    reason = "three field writes of one queued KDPC under the DPC lock, one invariant"
)]
pub(crate) fn insert(dpc: *mut KDPC, argument1: PVOID, argument2: PVOID) -> bool {
    if dpc.is_null() {
        bugcheck(Rule::DpcInvalid, "KeInsertQueueDpc(NULL)");
        return false;
    }
    crate::threads::ensure_started();
    let mut state = lock(&DPCS);
    if state.queued.contains_key(&(dpc as usize)) {
        return false;
    }
    // SAFETY: the caller guarantees an initialized, live KDPC; its fields are written under
    // the DPC lock, which every emulator access to them holds.
    let object_type = unsafe { (*dpc).Type };
    if object_type != DPC_OBJECT {
        drop(state);
        bugcheck(
            Rule::DpcInvalid,
            format!("KeInsertQueueDpc({dpc:p}): object type {object_type} is not a DPC (uninitialized or freed?)"),
        );
        return false;
    }
    // SAFETY: as above.
    unsafe {
        (*dpc).SystemArgument1 = argument1;
        (*dpc).SystemArgument2 = argument2;
        (*dpc).DpcData = queued_marker();
    }
    let seq = state.next_seq;
    state.next_seq += 1;
    state.queued.insert(dpc as usize, Queued { seq, session: kernel::session() });
    state.queue.push_back(dpc as usize);
    state.outstanding.insert(seq);
    DPC_QUEUED.notify_one();
    drop(state);
    bump::dpcs_queued(1);
    true
}

/// Body of a DPC thread.
#[expect(
    clippy::multiple_unsafe_ops_per_block,
    reason = "one read of a queued KDPC's fields under the DPC lock, one invariant"
)]
pub(crate) fn dpc_thread_main() {
    crate::threads::set_role(crate::threads::Role::Dpc);
    irql::set_irql(PASSIVE_LEVEL);
    loop {
        let (dpc, seq, session, routine, context, argument1, argument2) = {
            let mut state = lock(&DPCS);
            let dpc = loop {
                if let Some(dpc) = state.queue.pop_front() {
                    break dpc;
                }
                state = wait(&DPC_QUEUED, state);
            };
            let Some(queued) = state.queued.remove(&dpc) else { continue };
            let dpc_ptr = dpc as *mut KDPC;
            // SAFETY: a queued DPC is live (freeing its memory dequeues it first, see
            // `purge_range`), and its fields are accessed under the DPC lock.
            let fields = unsafe {
                (*dpc_ptr).DpcData = ptr::null_mut();
                (
                    (*dpc_ptr).DeferredRoutine,
                    (*dpc_ptr).DeferredContext,
                    (*dpc_ptr).SystemArgument1,
                    (*dpc_ptr).SystemArgument2,
                )
            };
            let live = queued.session == kernel::session() && !kernel::crashed();
            match fields.0 {
                Some(routine) if live => {
                    state.running.insert(queued.seq, (dpc, queued.session));
                    (dpc_ptr, queued.seq, queued.session, routine, fields.1, fields.2, fields.3)
                }
                _ => {
                    state.outstanding.remove(&queued.seq);
                    DPC_RETIRED.notify_all();
                    continue;
                }
            }
        };
        run(dpc, routine, context, argument1, argument2);
        if session == kernel::session() {
            bump::dpcs_run(1);
        }
        let mut state = lock(&DPCS);
        state.running.remove(&seq);
        state.outstanding.remove(&seq);
        DPC_RETIRED.notify_all();
    }
}

thread_local! {
    /// The DPC this DPC thread is running (0: none).
    static CURRENT: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

fn run(dpc: *mut KDPC, routine: KDEFERRED_ROUTINE, context: PVOID, argument1: PVOID, argument2: PVOID) {
    let _dispatch = irql::enter_irql(DISPATCH_LEVEL);
    CURRENT.with(|current| current.set(dpc as usize));
    // SAFETY: the driver queued this DPC with this routine; it runs at DISPATCH_LEVEL on a DPC
    // thread as its contract says.
    unsafe { routine(dpc, context, argument1, argument2) };
    CURRENT.with(|current| current.set(0));
    crate::irp::check_cancel_lock_released("a DPC routine");
    irql::check_restored("a DPC routine", DISPATCH_LEVEL);
}

/// Dequeues every queued DPC inside `address..address + len` (memory being freed), reporting
/// each as a violation.
pub(crate) fn purge_range(address: usize, len: usize) {
    let removed: Vec<usize> = {
        let mut state = lock(&DPCS);
        let inside: Vec<(usize, u64)> = state
            .queued
            .range((Bound::Included(address), Bound::Excluded(address.saturating_add(len.max(1)))))
            .map(|(&dpc, queued)| (dpc, queued.seq))
            .collect();
        for (dpc, seq) in &inside {
            state.queued.remove(dpc);
            state.outstanding.remove(seq);
            state.queue.retain(|queued| queued != dpc);
        }
        DPC_RETIRED.notify_all();
        inside.into_iter().map(|(dpc, _)| dpc).collect()
    };
    for dpc in removed {
        bugcheck(
            Rule::TimerOrDpcInFreedPool,
            format!("pool block 0x{address:x} freed while it holds DPC 0x{dpc:x}, which is still queued"),
        );
    }
}

/// DPCs of `session` queued or running, as leaks.
pub(crate) fn pending(session: u64) -> Vec<Leak> {
    let state = lock(&DPCS);
    let queued = state
        .queued
        .iter()
        .filter(|(_, queued)| queued.session == session)
        .map(|(&dpc, _)| Leak::new(LeakKind::Dpc, 0, 0, dpc, "queued".to_owned()));
    let running = state
        .running
        .values()
        .filter(|(_, s)| *s == session)
        .map(|&(dpc, _)| Leak::new(LeakKind::Dpc, 0, 0, dpc, "running".to_owned()));
    queued.chain(running).collect()
}

/// Waits until no DPC of `session` runs, or `deadline` passes.
pub(crate) fn wait_not_running(session: u64, deadline: Instant) -> bool {
    let mut state = lock(&DPCS);
    loop {
        if !state.running.values().any(|(_, s)| *s == session) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        state = wait_until(&DPC_RETIRED, state, Some(deadline));
    }
}

/// Removes `dpc` from the queue if it is queued, then waits until it no longer runs on any
/// other DPC thread: what Wine's `KeCancelTimer` does with a timer's callback (the
/// `wine-cancel-timer` quirk). It waits, as Wine's does, whatever the caller's IRQL; at
/// DISPATCH_LEVEL (where `KeCancelTimer` may be called) it spins instead of sleeping, as a
/// processor waiting for another one does.
pub(crate) fn remove_or_wait(dpc: *mut KDPC) {
    let mut state = lock(&DPCS);
    // SAFETY: the DPC belongs to a live timer (the caller's KeCancelTimer contract).
    unsafe { dequeue(&mut state, dpc) };
    if CURRENT.with(std::cell::Cell::get) == dpc as usize {
        return;
    }
    let running = |state: &mut DpcState| state.running.values().any(|&(running, _)| running == dpc as usize);
    if irql::current_irql() >= DISPATCH_LEVEL {
        drop(spin_until(&DPCS, state, |state| !running(state)));
        return;
    }
    while running(&mut state) {
        state = wait(&DPC_RETIRED, state);
    }
}

/// Whether no DPC of `session` is queued or running.
pub(crate) fn idle(session: u64) -> bool {
    let state = lock(&DPCS);
    !state.queued.values().any(|q| q.session == session) && !state.running.values().any(|(_, s)| *s == session)
}

/// Dequeues every DPC of `session` (after unload).
pub(crate) fn teardown(session: u64) {
    let mut guard = lock(&DPCS);
    let state = &mut *guard;
    let removed: Vec<(usize, u64)> =
        state.queued.iter().filter(|(_, q)| q.session == session).map(|(&dpc, q)| (dpc, q.seq)).collect();
    for (dpc, seq) in removed {
        state.queued.remove(&dpc);
        state.outstanding.remove(&seq);
        state.queue.retain(|&queued| queued != dpc);
    }
    DPC_RETIRED.notify_all();
}

/// `KeInitializeDpc`. Any IRQL.
///
/// # Safety
/// `Dpc` must point to writable, non-paged memory for a `KDPC`.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn KeInitializeDpc(
    Dpc: *mut KDPC,
    DeferredRoutine: KDEFERRED_ROUTINE,
    DeferredContext: PVOID,
) {
    // SAFETY: the caller guarantees writable memory for a `KDPC`.
    let dpc = unsafe { &mut *Dpc };
    dpc.Type = DPC_OBJECT;
    dpc.Importance = MEDIUM_IMPORTANCE;
    dpc.Number = 0;
    dpc.DpcListEntry.Flink = ptr::null_mut();
    dpc.DpcListEntry.Blink = ptr::null_mut();
    dpc.DeferredRoutine = Some(DeferredRoutine);
    dpc.DeferredContext = DeferredContext;
    dpc.SystemArgument1 = ptr::null_mut();
    dpc.SystemArgument2 = ptr::null_mut();
    dpc.DpcData = ptr::null_mut();
}

/// `KeInsertQueueDpc`: queues the DPC; returns FALSE if it was already queued. Any IRQL.
///
/// # Safety
/// `Dpc` must be an initialized `KDPC` in memory that stays valid until the DPC has run.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn KeInsertQueueDpc(
    Dpc: *mut KDPC,
    SystemArgument1: PVOID,
    SystemArgument2: PVOID,
) -> BOOLEAN {
    if insert(Dpc, SystemArgument1, SystemArgument2) { TRUE } else { FALSE }
}

/// `KeRemoveQueueDpc`: dequeues the DPC; returns whether it was queued. Any IRQL.
///
/// # Safety
/// `Dpc` must be an initialized `KDPC`.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn KeRemoveQueueDpc(Dpc: *mut KDPC) -> BOOLEAN {
    // SAFETY: the DPC is live (caller's contract).
    if unsafe { dequeue(&mut lock(&DPCS), Dpc) } { TRUE } else { FALSE }
}

/// Takes `dpc` out of the queue; whether it was queued.
///
/// # Safety
/// `dpc` is a live, initialized `KDPC`; `state` is the locked DPC state.
unsafe fn dequeue(state: &mut DpcState, dpc: *mut KDPC) -> bool {
    let Some(queued) = state.queued.remove(&(dpc as usize)) else { return false };
    state.outstanding.remove(&queued.seq);
    state.queue.retain(|&other| other != dpc as usize);
    // SAFETY: live (caller's contract); written under the DPC lock the caller holds.
    unsafe { (*dpc).DpcData = ptr::null_mut() };
    DPC_RETIRED.notify_all();
    true
}

/// `KeFlushQueuedDpcs`: returns once every DPC queued before the call has run (or been
/// removed). IRQL == PASSIVE_LEVEL.
///
/// # Safety
/// None beyond the IRQL rule.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn KeFlushQueuedDpcs() {
    if !irql::check_max("KeFlushQueuedDpcs", PASSIVE_LEVEL) {
        return;
    }
    let mut state = lock(&DPCS);
    let last = state.next_seq - 1;
    while state.outstanding.first().is_some_and(|&seq| seq <= last) {
        state = wait(&DPC_RETIRED, state);
    }
}
