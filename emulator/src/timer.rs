//! Timers: `KeInitializeTimerEx`, `KeSetTimerEx`, `KeCancelTimer`, `KeReadStateTimer`.
//!
//! Set timers are kept in a table keyed by the `KTIMER` address and a deadline heap served by
//! one timer thread. On expiry the timer is signalled (waking waiters) and its DPC, if any, is
//! queued; a periodic timer is set again `Period` milliseconds later. Resolution is the host's
//! (typically well under a millisecond), not the 15.6 ms clock tick of a default Windows
//! system.

// The emulator reads and writes KTIMER fields through raw pointers the driver passes, several per
// step under one lock; this module allows several unsafe operations per block, each block
// saying why it is sound.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::ops::Bound;
use std::sync::atomic::Ordering;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use wsk_sys::{
    BOOLEAN, DISPATCH_LEVEL, FALSE, KDPC, KTIMER, LARGE_INTEGER, LONG, PVOID, SynchronizationTimer, TIMER_TYPE, TRUE,
};

use crate::counters::bump;
use crate::event::{self, KTIMER_SIZE, TIMER_NOTIFICATION_OBJECT, TIMER_SYNCHRONIZATION_OBJECT};
use crate::irql;
use crate::kernel;
use crate::sync::{lock, wait, wait_for};
use crate::time;
use crate::verifier::{Leak, LeakKind, Rule, bugcheck};

struct Armed {
    id: u64,
    due: Instant,
    period: Duration,
    dpc: usize,
    session: u64,
}

struct TimerState {
    armed: BTreeMap<usize, Armed>,
    /// Timers set since they were initialized or last cancelled, expired or not (Wine's
    /// `Header.Inserted`, which only the `wine-cancel-timer` quirk reports).
    inserted: BTreeSet<usize>,
    deadlines: BinaryHeap<Reverse<(Instant, u64, usize)>>,
    next_id: u64,
}

static TIMERS: Mutex<TimerState> = Mutex::new(TimerState {
    armed: BTreeMap::new(),
    inserted: BTreeSet::new(),
    deadlines: BinaryHeap::new(),
    next_id: 1,
});
static TIMERS_CHANGED: Condvar = Condvar::new();

/// Body of the timer thread: idle (and waiting) at PASSIVE_LEVEL, at DISPATCH_LEVEL while it
/// expires a timer, as the clock interrupt's DPC is.
pub(crate) fn timer_thread_main() {
    crate::threads::set_role(crate::threads::Role::Timer);
    let mut state = lock(&TIMERS);
    loop {
        let Some(&Reverse((due, id, timer))) = state.deadlines.peek() else {
            state = wait(&TIMERS_CHANGED, state);
            continue;
        };
        if state.armed.get(&timer).is_none_or(|armed| armed.id != id || armed.due != due) {
            state.deadlines.pop();
            continue;
        }
        let now = Instant::now();
        if due > now {
            state = wait_for(&TIMERS_CHANGED, state, due - now);
            continue;
        }
        state.deadlines.pop();
        let _dispatch = irql::enter_irql(DISPATCH_LEVEL);
        fire(&mut state, timer, now);
    }
}

/// Expires the timer at `timer` (lock order: timers, then dispatcher, then DPCs).
fn fire(state: &mut TimerState, timer: usize, now: Instant) {
    let Some(armed) = state.armed.get_mut(&timer) else { return };
    let timer_ptr = timer as *mut KTIMER;
    // SAFETY: a set timer is live: freeing its memory cancels it first (`purge_range`), and the
    // timers lock is held.
    unsafe { event::set_signal_state(timer_ptr.cast(), 1) };
    bump::timers_fired(1);
    if armed.dpc != 0 {
        let interrupt_time = time::interrupt_time();
        crate::dpc::insert(
            armed.dpc as *mut KDPC,
            (interrupt_time & 0xFFFF_FFFF) as PVOID,
            (interrupt_time >> 32) as PVOID,
        );
    }
    if armed.period.is_zero() {
        state.armed.remove(&timer);
        return;
    }
    let mut next = armed.due + armed.period;
    if next <= now {
        next = now + armed.period;
    }
    armed.due = next;
    let id = armed.id;
    // SAFETY: as above.
    unsafe { (*timer_ptr).DueTime = time::interrupt_time_at(next) };
    state.deadlines.push(Reverse((next, id, timer)));
}

/// Checks that `timer` was initialized with `KeInitializeTimerEx`.
///
/// # Safety
/// `timer` must be null or point to readable memory of a `KTIMER`.
unsafe fn check_timer(routine: &str, timer: *mut KTIMER) -> bool {
    if timer.is_null() {
        bugcheck(Rule::TimerInvalid, format!("{routine}(NULL)"));
        return false;
    }
    // SAFETY: forwarded contract.
    let object_type = unsafe { (*timer).Header.Type };
    if object_type == TIMER_NOTIFICATION_OBJECT || object_type == TIMER_SYNCHRONIZATION_OBJECT {
        return true;
    }
    bugcheck(
        Rule::TimerInvalid,
        format!("{routine}({timer:p}): object type {object_type} is not a timer (uninitialized or freed?)"),
    );
    false
}

/// Cancels every set timer inside `address..address + len` (memory being freed), reporting
/// each as a violation.
pub(crate) fn purge_range(address: usize, len: usize) {
    let removed: Vec<usize> = {
        let mut state = lock(&TIMERS);
        let inside: Vec<usize> = state
            .armed
            .range((Bound::Included(address), Bound::Excluded(address.saturating_add(len.max(1)))))
            .map(|(&timer, _)| timer)
            .collect();
        for timer in &inside {
            state.armed.remove(timer);
        }
        let end = address.saturating_add(len.max(1));
        state.inserted.retain(|&timer| timer < address || timer >= end);
        inside
    };
    for timer in removed {
        bugcheck(
            Rule::TimerOrDpcInFreedPool,
            format!("pool block 0x{address:x} freed while it holds timer 0x{timer:x}, which is still set"),
        );
    }
}

/// Timers of `session` still set, as leaks.
pub(crate) fn pending(session: u64) -> Vec<Leak> {
    let state = lock(&TIMERS);
    state
        .armed
        .iter()
        .filter(|(_, armed)| armed.session == session)
        .map(|(&timer, armed)| {
            let detail = if armed.period.is_zero() {
                "one-shot".to_owned()
            } else {
                format!("periodic, {} ms", armed.period.as_millis())
            };
            Leak::new(LeakKind::Timer, 0, 0, timer, detail)
        })
        .collect()
}

/// Cancels every timer of `session` (after unload).
pub(crate) fn teardown(session: u64) {
    let mut state = lock(&TIMERS);
    state.armed.retain(|_, armed| armed.session != session);
    // Sessions do not overlap: nothing set by an earlier one is inserted any more.
    state.inserted.clear();
}

/// `KeInitializeTimerEx`. IRQL <= DISPATCH_LEVEL.
///
/// # Safety
/// `Timer` must point to writable, non-paged memory for a `KTIMER`.
#[unsafe(no_mangle)]
#[expect(
    clippy::multiple_unsafe_ops_per_block,
    reason = "field-by-field initialization of one KTIMER the caller handed over"
)]
pub unsafe extern "system" fn KeInitializeTimerEx(Timer: *mut KTIMER, Type: TIMER_TYPE) {
    irql::check_max("KeInitializeTimerEx", DISPATCH_LEVEL);
    if Timer.is_null() {
        bugcheck(Rule::TimerInvalid, "KeInitializeTimerEx(NULL)");
        return;
    }
    let was_set = {
        let mut state = lock(&TIMERS);
        state.inserted.remove(&(Timer as usize));
        state.armed.remove(&(Timer as usize)).is_some()
    };
    if was_set {
        bugcheck(Rule::TimerInvalid, format!("KeInitializeTimerEx({Timer:p}) on a timer that is set"));
    }
    let object_type =
        if Type == SynchronizationTimer { TIMER_SYNCHRONIZATION_OBJECT } else { TIMER_NOTIFICATION_OBJECT };
    // SAFETY: the caller guarantees writable memory for a `KTIMER`.
    unsafe {
        event::initialize_header(Timer.cast(), object_type, KTIMER_SIZE, 0);
        let timer = &mut *Timer;
        timer.DueTime = 0;
        timer.TimerListEntry.Flink = std::ptr::null_mut();
        timer.TimerListEntry.Blink = std::ptr::null_mut();
        timer.Dpc = std::ptr::null_mut();
        timer.Processor = 0;
        timer.Period = 0;
    }
}

/// `KeSetTimerEx`: sets the timer to expire at `DueTime` (negative: relative, positive:
/// absolute, 100 ns units), then every `Period` ms if non-zero, queueing `Dpc` at each
/// expiry. Returns whether the timer was already set. IRQL <= DISPATCH_LEVEL.
///
/// # Safety
/// `Timer` must be an initialized `KTIMER` and `Dpc` null or an initialized `KDPC`, both in
/// memory that stays valid while the timer is set.
#[unsafe(no_mangle)]
#[expect(clippy::multiple_unsafe_ops_per_block, reason = "field writes of one live KTIMER under the timers lock")]
pub unsafe extern "system" fn KeSetTimerEx(
    Timer: *mut KTIMER,
    DueTime: LARGE_INTEGER,
    Period: LONG,
    Dpc: *mut KDPC,
) -> BOOLEAN {
    irql::check_max("KeSetTimerEx", DISPATCH_LEVEL);
    // SAFETY: forwarded contract.
    if !unsafe { check_timer("KeSetTimerEx", Timer) } {
        return FALSE;
    }
    crate::threads::ensure_started();
    let due = time::deadline(DueTime);
    let period = Duration::from_millis(u64::from(Period.max(0).unsigned_abs()));
    let was_set = {
        let mut state = lock(&TIMERS);
        let id = state.next_id;
        state.next_id += 1;
        let was_set = state
            .armed
            .insert(Timer as usize, Armed { id, due, period, dpc: Dpc as usize, session: kernel::session() })
            .is_some();
        state.deadlines.push(Reverse((due, id, Timer as usize)));
        state.inserted.insert(Timer as usize);
        // SAFETY: the caller guarantees a live timer; its fields are written under the timers lock.
        unsafe {
            event::signal_state(Timer.cast()).store(0, Ordering::Release);
            (*Timer).DueTime = time::interrupt_time_at(due);
            (*Timer).Dpc = Dpc;
            (*Timer).Period = Period.max(0).unsigned_abs();
        }
        was_set
    };
    TIMERS_CHANGED.notify_all();
    bump::timers_set(1);
    if was_set { TRUE } else { FALSE }
}

/// `KeCancelTimer`: returns whether the timer was set. A DPC already queued by the timer is
/// not removed. IRQL <= DISPATCH_LEVEL.
///
/// With the `wine-cancel-timer` quirk ([`crate::quirks`]) it answers as Wine's does: TRUE for
/// any timer set since it was initialized or last cancelled, even one that expired and ran its
/// DPC; a DPC the timer queued is removed if it has not started and waited for if it is
/// running (unless the caller is that DPC), so none runs after the call returns.
///
/// # Safety
/// `Timer` must be an initialized `KTIMER`.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn KeCancelTimer(Timer: *mut KTIMER) -> BOOLEAN {
    irql::check_max("KeCancelTimer", DISPATCH_LEVEL);
    let (was_armed, was_inserted) = {
        let mut state = lock(&TIMERS);
        (state.armed.remove(&(Timer as usize)).is_some(), state.inserted.remove(&(Timer as usize)))
    };
    if !crate::quirks::get().wine_cancel_timer {
        return if was_armed { TRUE } else { FALSE };
    }
    // SAFETY: the timer is live and initialized (caller's contract); `Dpc` is written only by
    // `KeSetTimerEx` and `KeInitializeTimerEx`, which the caller does not run concurrently
    // with this cancel.
    let dpc = unsafe { (*Timer).Dpc };
    if !dpc.is_null() {
        crate::dpc::remove_or_wait(dpc);
    }
    if was_inserted { TRUE } else { FALSE }
}

/// `KeReadStateTimer`: whether the timer is signalled. IRQL <= DISPATCH_LEVEL.
///
/// # Safety
/// `Timer` must be an initialized `KTIMER`.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn KeReadStateTimer(Timer: *mut KTIMER) -> BOOLEAN {
    irql::check_max("KeReadStateTimer", DISPATCH_LEVEL);
    // SAFETY: forwarded contract.
    if !unsafe { check_timer("KeReadStateTimer", Timer) } {
        return FALSE;
    }
    // SAFETY: the timer is live (caller's contract).
    let signalled = unsafe { event::signal_state(Timer.cast()) }.load(Ordering::Acquire) > 0;
    if signalled { TRUE } else { FALSE }
}
