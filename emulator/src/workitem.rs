//! Work items: `IoAllocateWorkItem`, `IoQueueWorkItem`, `IoFreeWorkItem`, run by a pool of
//! system worker threads at PASSIVE_LEVEL.
//!
//! While a work item is queued or running, its driver is referenced: unload waits (boundedly)
//! for it before checking leaks, as the real kernel keeps the driver image loaded until the
//! work item routine has returned. The verifier catches a work item queued while already
//! queued, and one freed while queued. Freeing a work item from its own routine is allowed.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Condvar, Mutex};
use std::time::Instant;

use wsk_sys::{
    CSHORT, DEVICE_OBJECT, DISPATCH_LEVEL, IO_TYPE_DEVICE, IO_TYPE_DRIVER, IO_WORKITEM_ROUTINE, PASSIVE_LEVEL,
    PIO_WORKITEM, PVOID, WORK_QUEUE_TYPE,
};

use crate::counters::bump;
use crate::irql;
use crate::kernel;
use crate::pool::{self, BlockKind, FreeError, Request};
use crate::sync::{lock, wait, wait_until};
use crate::verifier::{Rule, bugcheck};

/// Pool tag of work items (as the real I/O manager's).
pub const WORK_ITEM_TAG: u32 = u32::from_le_bytes(*b"IoWk");
/// Size of an `IO_WORKITEM` on x64.
const WORK_ITEM_SIZE: usize = 0x58;

struct Record {
    id: u64,
    device: usize,
    queued: bool,
    session: u64,
}

struct Job {
    item: usize,
    id: u64,
    routine: IO_WORKITEM_ROUTINE,
    device: usize,
    context: usize,
    session: u64,
}

struct WorkState {
    items: BTreeMap<usize, Record>,
    queue: VecDeque<Job>,
    /// Queued or running jobs per session.
    outstanding: BTreeMap<u64, usize>,
    next_id: u64,
    /// Worker threads waiting on `WORK_READY` (or woken and not yet back under the lock): a
    /// job queued while none waits needs no notification (each one is a system call), since
    /// every worker looks at the queue before it waits.
    waiting: usize,
    /// Threads in [`wait_idle`] (unloads): a work item that retires while none waits needs no
    /// notification, the same saving as `waiting` on the worker side (a notification is a
    /// system call even with nobody to wake; this one came after every work item).
    idle_waiting: usize,
}

impl WorkState {
    /// Counts one job of `session` as done, and wakes [`wait_idle`] if that was its last.
    fn retire(&mut self, session: u64) {
        if let Some(count) = self.outstanding.get_mut(&session) {
            *count -= 1;
            if *count == 0 {
                self.outstanding.remove(&session);
                self.wake_idle_waiters();
            }
        }
    }

    /// Wakes the threads in [`wait_idle`], if there are any.
    fn wake_idle_waiters(&self) {
        if self.idle_waiting > 0 {
            WORK_IDLE.notify_all();
        }
    }
}

static WORK: Mutex<WorkState> = Mutex::new(WorkState {
    items: BTreeMap::new(),
    queue: VecDeque::new(),
    outstanding: BTreeMap::new(),
    next_id: 1,
    waiting: 0,
    idle_waiting: 0,
});
/// Signalled when a job is queued.
static WORK_READY: Condvar = Condvar::new();
/// Signalled when a job retires.
static WORK_IDLE: Condvar = Condvar::new();

/// Body of a system worker thread.
pub(crate) fn worker_main() {
    crate::threads::set_role(crate::threads::Role::Worker);
    crate::threads::no_wakeup_preemption();
    irql::set_irql(PASSIVE_LEVEL);
    loop {
        let (job, live) = {
            let mut state = lock(&WORK);
            let job = loop {
                if let Some(job) = state.queue.pop_front() {
                    break job;
                }
                state.waiting += 1;
                state = wait(&WORK_READY, state);
                state.waiting -= 1;
            };
            if let Some(record) = state.items.get_mut(&job.item).filter(|r| r.id == job.id) {
                record.queued = false;
            }
            let live = job.session == kernel::session() && !kernel::crashed();
            if !live {
                state.retire(job.session);
            }
            (job, live)
        };
        if !live {
            continue;
        }
        // SAFETY: the driver queued `routine` with this device object and context; it runs at
        // PASSIVE_LEVEL in a system thread as its contract says.
        unsafe { (job.routine)(job.device as *mut DEVICE_OBJECT, job.context as PVOID) };
        if job.session == kernel::session() {
            bump::work_items_run(1);
        }
        crate::irp::check_cancel_lock_released("a work item routine");
        irql::check_restored("a work item routine", PASSIVE_LEVEL);
        let mut state = lock(&WORK);
        state.retire(job.session);
    }
}

/// Waits until no work item of `session` is queued or running, or `deadline` passes. Returns
/// whether it is idle.
pub(crate) fn wait_idle(session: u64, deadline: Instant) -> bool {
    let mut state = lock(&WORK);
    loop {
        if !state.outstanding.contains_key(&session) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        state.idle_waiting += 1;
        state = wait_until(&WORK_IDLE, state, Some(deadline));
        state.idle_waiting -= 1;
    }
}

/// Work items of `session` queued or running.
pub(crate) fn outstanding(session: u64) -> usize {
    lock(&WORK).outstanding.get(&session).copied().unwrap_or(0)
}

/// Drops every queued job of `session` (after unload).
pub(crate) fn teardown(session: u64) {
    let mut state = lock(&WORK);
    let before = state.queue.len();
    state.queue.retain(|job| job.session != session);
    let dropped = before - state.queue.len();
    for _ in 0..dropped {
        state.retire(session);
    }
    for record in state.items.values_mut().filter(|r| r.session == session) {
        record.queued = false;
    }
    state.wake_idle_waiters();
}

/// `IoAllocateWorkItem`: a work item for `DeviceObject`, which may be the caller's driver
/// object or one of its device objects. Returns null when out of memory. IRQL <= DISPATCH_LEVEL.
///
/// # Safety
/// `DeviceObject` must be null or point to a live driver or device object.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn IoAllocateWorkItem(DeviceObject: *mut DEVICE_OBJECT) -> PIO_WORKITEM {
    irql::check_max("IoAllocateWorkItem", DISPATCH_LEVEL);
    if DeviceObject.is_null() {
        bugcheck(Rule::WorkItemBadObject, "IoAllocateWorkItem(NULL)");
        return std::ptr::null_mut();
    }
    // SAFETY: the caller guarantees a live driver or device object; both start with the
    // `CSHORT Type` field (read as such: a driver object is not aligned like a device object).
    let object_type = unsafe { DeviceObject.cast::<CSHORT>().read() };
    if object_type != IO_TYPE_DEVICE && object_type != IO_TYPE_DRIVER {
        bugcheck(
            Rule::WorkItemBadObject,
            format!("IoAllocateWorkItem({DeviceObject:p}): object type {object_type} is neither a driver nor a device"),
        );
        return std::ptr::null_mut();
    }
    let item = pool::allocate(Request {
        kind: BlockKind::WorkItem,
        size: WORK_ITEM_SIZE,
        tag: WORK_ITEM_TAG,
        paged: false,
        zeroed: true,
    });
    if item.is_null() {
        return item.cast();
    }
    let mut state = lock(&WORK);
    let id = state.next_id;
    state.next_id += 1;
    state
        .items
        .insert(item as usize, Record { id, device: DeviceObject as usize, queued: false, session: kernel::session() });
    item.cast()
}

fn missing_item(routine: &str, item: PIO_WORKITEM) -> (Rule, String) {
    match pool::freed_kind(item as usize) {
        Some(BlockKind::WorkItem) => {
            (Rule::WorkItemBadPointer, format!("{routine}({item:p}) on a work item already freed"))
        }
        _ => (Rule::WorkItemBadPointer, format!("{routine}({item:p}): not a work item from IoAllocateWorkItem")),
    }
}

/// `IoQueueWorkItem`: runs `WorkerRoutine(DeviceObject, Context)` in a system worker thread at
/// PASSIVE_LEVEL. The work item may be queued again once its routine has started.
/// IRQL <= DISPATCH_LEVEL.
///
/// # Safety
/// `IoWorkItem` must be a live work item not currently queued; `Context` must stay valid until
/// the routine has run.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn IoQueueWorkItem(
    IoWorkItem: PIO_WORKITEM,
    WorkerRoutine: IO_WORKITEM_ROUTINE,
    _QueueType: WORK_QUEUE_TYPE,
    Context: PVOID,
) {
    irql::check_max("IoQueueWorkItem", DISPATCH_LEVEL);
    crate::threads::ensure_started();
    let refusal = {
        let mut guard = lock(&WORK);
        let state = &mut *guard;
        match state.items.get_mut(&(IoWorkItem as usize)) {
            None => Some(missing_item("IoQueueWorkItem", IoWorkItem)),
            Some(record) if record.queued => Some((
                Rule::WorkItemQueuedTwice,
                format!("IoQueueWorkItem({IoWorkItem:p}) while the work item is already queued"),
            )),
            Some(record) => {
                record.queued = true;
                let session = record.session;
                state.queue.push_back(Job {
                    item: IoWorkItem as usize,
                    id: record.id,
                    routine: WorkerRoutine,
                    device: record.device,
                    context: Context as usize,
                    session,
                });
                *state.outstanding.entry(session).or_insert(0) += 1;
                if state.waiting > 0 {
                    WORK_READY.notify_one();
                }
                None
            }
        }
    };
    match refusal {
        Some((rule, message)) => bugcheck(rule, message),
        None => bump::work_items_queued(1),
    }
}

/// `IoFreeWorkItem`. Allowed from the work item's own routine; not while it is queued.
/// IRQL <= DISPATCH_LEVEL.
///
/// # Safety
/// `IoWorkItem` must be a live work item that is not queued.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn IoFreeWorkItem(IoWorkItem: PIO_WORKITEM) {
    irql::check_max("IoFreeWorkItem", DISPATCH_LEVEL);
    let refusal = {
        let mut state = lock(&WORK);
        match state.items.get(&(IoWorkItem as usize)) {
            None => Some(missing_item("IoFreeWorkItem", IoWorkItem)),
            Some(record) if record.queued => Some((
                Rule::WorkItemFreedWhileQueued,
                format!("IoFreeWorkItem({IoWorkItem:p}) while the work item is queued"),
            )),
            Some(_) => {
                state.items.remove(&(IoWorkItem as usize));
                None
            }
        }
    };
    if let Some((rule, message)) = refusal {
        bugcheck(rule, message);
        return;
    }
    if let Err(error) = pool::free(IoWorkItem.cast(), BlockKind::WorkItem) {
        let message = match error {
            FreeError::AlreadyFreed { .. } => format!("IoFreeWorkItem({IoWorkItem:p}) on a work item already freed"),
            other => format!("IoFreeWorkItem({IoWorkItem:p}): {other:?}"),
        };
        bugcheck(Rule::WorkItemBadPointer, message);
    }
}
