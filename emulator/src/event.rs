//! The dispatcher: events (`KeInitializeEvent`, `KeSetEvent`, `KeClearEvent`, `KeResetEvent`,
//! `KeReadStateEvent`), `KeWaitForSingleObject` (events and timers) and
//! `KeDelayExecutionThread`.
//!
//! The signal state lives in the object itself (`DISPATCHER_HEADER.SignalState`), changed
//! atomically under one global dispatcher lock; waiters sleep on one global condition variable
//! that every state change notifies. A satisfied wait on a synchronization event or timer
//! resets it (auto-reset), so exactly one waiter wins each `KeSetEvent`.

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Instant;

use wsk_sys::{
    APC_LEVEL, BOOLEAN, DISPATCH_LEVEL, DISPATCHER_HEADER, EVENT_TYPE, KEVENT, KPRIORITY, KPROCESSOR_MODE, KTIMER,
    KWAIT_REASON, LARGE_INTEGER, LIST_ENTRY, LONG, NTSTATUS, PVOID, STATUS_INVALID_PARAMETER, STATUS_SUCCESS,
    STATUS_TIMEOUT, SynchronizationEvent,
};

use crate::irql::{self, current_irql};
use crate::sync::{lock, wait_until};
use crate::time;
use crate::verifier::{Rule, bugcheck};

/// `DISPATCHER_HEADER.Type` values.
pub(crate) const EVENT_NOTIFICATION_OBJECT: u8 = 0;
pub(crate) const EVENT_SYNCHRONIZATION_OBJECT: u8 = 1;
pub(crate) const TIMER_NOTIFICATION_OBJECT: u8 = 8;
pub(crate) const TIMER_SYNCHRONIZATION_OBJECT: u8 = 9;

static DISPATCHER: Mutex<()> = Mutex::new(());
static STATE_CHANGED: Condvar = Condvar::new();

/// The signal state word of a dispatcher object.
///
/// # Safety
/// `header` must point to a live dispatcher object that stays live while the reference is used.
pub(crate) unsafe fn signal_state<'a>(header: *mut DISPATCHER_HEADER) -> &'a AtomicI32 {
    // SAFETY: the object is live (caller's contract); only a place is computed.
    let field = unsafe { &raw mut (*header).SignalState };
    // SAFETY: `SignalState` is an aligned `LONG` of a live object (caller's contract), and all
    // emulator accesses to it are atomic.
    unsafe { AtomicI32::from_ptr(field) }
}

/// Sets the signal state of `header` to `value` and wakes the waiters; returns the previous
/// state.
///
/// # Safety
/// As [`signal_state`].
pub(crate) unsafe fn set_signal_state(header: *mut DISPATCHER_HEADER, value: i32) -> i32 {
    let _dispatcher = lock(&DISPATCHER);
    // SAFETY: forwarded contract.
    let previous = unsafe { signal_state(header) }.swap(value, Ordering::AcqRel);
    STATE_CHANGED.notify_all();
    previous
}

/// Wakes every waiter so that it re-checks its condition (after a change made outside
/// [`set_signal_state`], e.g. a rundown release).
pub(crate) fn notify_changed() {
    let _dispatcher = lock(&DISPATCHER);
    STATE_CHANGED.notify_all();
}

/// Waits until `ready()` holds (checked under the dispatcher lock) or `deadline` passes.
/// Returns whether it holds.
pub(crate) fn wait_for_condition(mut ready: impl FnMut() -> bool, deadline: Option<Instant>) -> bool {
    let mut guard = lock(&DISPATCHER);
    loop {
        if ready() {
            return true;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return false;
        }
        guard = wait_until(&STATE_CHANGED, guard, deadline);
    }
}

/// Initializes a dispatcher header.
///
/// # Safety
/// `header` must point to writable memory for a dispatcher object of `size_bytes`.
pub(crate) unsafe fn initialize_header(header: *mut DISPATCHER_HEADER, object_type: u8, size_bytes: usize, state: i32) {
    // SAFETY: the caller guarantees writable memory; the fields are plain data.
    let header = unsafe { &mut *header };
    header.Type = object_type;
    header.Signalling = 0;
    header.Size = (size_bytes / 4) as u8;
    header.Reserved1 = 0;
    header.SignalState = state;
    let list: *mut LIST_ENTRY = &raw mut header.WaitListHead;
    header.WaitListHead = LIST_ENTRY { Flink: list, Blink: list };
}

/// The object type of a dispatcher object.
///
/// # Safety
/// `header` must point to readable memory of at least a dispatcher header.
unsafe fn object_type(header: *mut DISPATCHER_HEADER) -> u8 {
    // SAFETY: forwarded contract.
    unsafe { (*header).Type }
}

/// Checks that `event` is an initialized event; records a violation otherwise.
///
/// # Safety
/// `event` must point to readable memory of a `KEVENT`.
unsafe fn check_event(routine: &str, event: *mut KEVENT) -> bool {
    if event.is_null() {
        bugcheck(Rule::InvalidDispatcherObject, format!("{routine}(NULL)"));
        return false;
    }
    // SAFETY: forwarded contract.
    let object_type = unsafe { object_type(event.cast()) };
    if object_type == EVENT_NOTIFICATION_OBJECT || object_type == EVENT_SYNCHRONIZATION_OBJECT {
        return true;
    }
    bugcheck(
        Rule::InvalidDispatcherObject,
        format!("{routine}({event:p}): object type {object_type} is not an event (uninitialized or freed?)"),
    );
    false
}

/// `KeInitializeEvent`. Any IRQL.
///
/// # Safety
/// `Event` must point to writable, non-paged memory for a `KEVENT`.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn KeInitializeEvent(Event: *mut KEVENT, Type: EVENT_TYPE, State: BOOLEAN) {
    let object_type =
        if Type == SynchronizationEvent { EVENT_SYNCHRONIZATION_OBJECT } else { EVENT_NOTIFICATION_OBJECT };
    // SAFETY: forwarded contract.
    unsafe {
        initialize_header(Event.cast(), object_type, size_of::<KEVENT>(), i32::from(State != 0));
    }
}

/// `KeSetEvent`: signals the event; returns its previous state. IRQL <= DISPATCH_LEVEL.
///
/// # Safety
/// `Event` must point to an initialized `KEVENT`.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn KeSetEvent(Event: *mut KEVENT, _Increment: KPRIORITY, _Wait: BOOLEAN) -> LONG {
    irql::check_max("KeSetEvent", DISPATCH_LEVEL);
    // SAFETY: forwarded contract.
    if !unsafe { check_event("KeSetEvent", Event) } {
        return 0;
    }
    // SAFETY: the event is live (caller's contract).
    unsafe { set_signal_state(Event.cast(), 1) }
}

/// `KeResetEvent`: clears the event; returns its previous state. IRQL <= DISPATCH_LEVEL.
///
/// # Safety
/// `Event` must point to an initialized `KEVENT`.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn KeResetEvent(Event: *mut KEVENT) -> LONG {
    irql::check_max("KeResetEvent", DISPATCH_LEVEL);
    // SAFETY: forwarded contract.
    if !unsafe { check_event("KeResetEvent", Event) } {
        return 0;
    }
    // SAFETY: the event is live (caller's contract).
    unsafe { signal_state(Event.cast()) }.swap(0, Ordering::AcqRel)
}

/// `KeClearEvent`. IRQL <= DISPATCH_LEVEL.
///
/// # Safety
/// `Event` must point to an initialized `KEVENT`.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn KeClearEvent(Event: *mut KEVENT) {
    irql::check_max("KeClearEvent", DISPATCH_LEVEL);
    // SAFETY: forwarded contract.
    if unsafe { check_event("KeClearEvent", Event) } {
        // SAFETY: the event is live (caller's contract).
        unsafe { signal_state(Event.cast()) }.store(0, Ordering::Release);
    }
}

/// `KeReadStateEvent`. IRQL <= DISPATCH_LEVEL.
///
/// # Safety
/// `Event` must point to an initialized `KEVENT`.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn KeReadStateEvent(Event: *mut KEVENT) -> LONG {
    irql::check_max("KeReadStateEvent", DISPATCH_LEVEL);
    // SAFETY: forwarded contract.
    if !unsafe { check_event("KeReadStateEvent", Event) } {
        return 0;
    }
    // SAFETY: the event is live (caller's contract).
    unsafe { signal_state(Event.cast()) }.load(Ordering::Acquire)
}

/// `KeWaitForSingleObject` on an event or a timer. `Timeout`: null waits forever, 0 polls,
/// negative is relative and positive absolute (100 ns units). Returns `STATUS_SUCCESS` or
/// `STATUS_TIMEOUT`. IRQL <= APC_LEVEL, or DISPATCH_LEVEL with a zero timeout.
///
/// A violation (a wait that could block at DISPATCH_LEVEL) is reported and the wait becomes a
/// poll. Alertable waits are never alerted (no APCs are emulated).
///
/// # Safety
/// `Object` must point to an initialized `KEVENT` or `KTIMER`; `Timeout` null or readable.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn KeWaitForSingleObject(
    Object: PVOID,
    _WaitReason: KWAIT_REASON,
    _WaitMode: KPROCESSOR_MODE,
    _Alertable: BOOLEAN,
    Timeout: *mut LARGE_INTEGER,
) -> NTSTATUS {
    let header = Object.cast::<DISPATCHER_HEADER>();
    if header.is_null() {
        bugcheck(Rule::InvalidDispatcherObject, "KeWaitForSingleObject(NULL)");
        return STATUS_INVALID_PARAMETER;
    }
    // SAFETY: the caller guarantees `Timeout` is null or readable.
    let timeout = if Timeout.is_null() { None } else { Some(unsafe { *Timeout }) };
    let mut poll = timeout == Some(0);
    let irql = current_irql();
    if irql > DISPATCH_LEVEL {
        irql::check_max("KeWaitForSingleObject", DISPATCH_LEVEL);
        poll = true;
    } else if irql == DISPATCH_LEVEL && !poll {
        let wait = match timeout {
            None => "an infinite wait".to_owned(),
            Some(t) => format!("a wait with timeout {t}"),
        };
        bugcheck(Rule::WaitAtDispatch, format!("KeWaitForSingleObject({Object:p}): {wait} at DISPATCH_LEVEL"));
        poll = true;
    }
    // SAFETY: the caller guarantees an object header.
    let object_type = unsafe { object_type(header) };
    let auto_reset = match object_type {
        EVENT_SYNCHRONIZATION_OBJECT | TIMER_SYNCHRONIZATION_OBJECT => true,
        EVENT_NOTIFICATION_OBJECT | TIMER_NOTIFICATION_OBJECT => false,
        other => {
            bugcheck(
                Rule::InvalidDispatcherObject,
                format!("KeWaitForSingleObject({Object:p}): object type {other} is not an event or timer"),
            );
            return STATUS_INVALID_PARAMETER;
        }
    };
    let deadline = match timeout {
        _ if poll => Some(Instant::now()),
        None => None,
        Some(due) => Some(time::deadline(due)),
    };
    // SAFETY: the object stays live during the wait (caller's contract).
    let state = unsafe { signal_state(header) };
    let satisfied = wait_for_condition(
        || {
            if state.load(Ordering::Acquire) > 0 {
                if auto_reset {
                    state.store(0, Ordering::Release);
                }
                true
            } else {
                false
            }
        },
        deadline,
    );
    if satisfied { STATUS_SUCCESS } else { STATUS_TIMEOUT }
}

/// `KeDelayExecutionThread`: sleeps for `Interval` (negative: relative, positive: absolute,
/// 100 ns units). Never alerted. IRQL <= APC_LEVEL.
///
/// # Safety
/// `Interval` must be readable.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn KeDelayExecutionThread(
    _WaitMode: KPROCESSOR_MODE,
    _Alertable: BOOLEAN,
    Interval: *mut LARGE_INTEGER,
) -> NTSTATUS {
    if !irql::check_max("KeDelayExecutionThread", APC_LEVEL) {
        return STATUS_SUCCESS;
    }
    if Interval.is_null() {
        return STATUS_INVALID_PARAMETER;
    }
    // SAFETY: the caller guarantees `Interval` is readable.
    let deadline = time::deadline(unsafe { *Interval });
    let now = Instant::now();
    if deadline > now {
        std::thread::sleep(deadline - now);
    }
    STATUS_SUCCESS
}

/// The size of a `KTIMER`, for its header.
pub(crate) const KTIMER_SIZE: usize = size_of::<KTIMER>();
