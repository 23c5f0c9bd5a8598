//! The Windows kernel backend.
//!
//! | need                  | kernel object                                                   |
//! |-----------------------|-----------------------------------------------------------------|
//! | task and timer memory | nonpaged pool, tag `WskE` ([`pool`])                            |
//! | running the executor  | one `IO_WORKITEM` on the `DelayedWorkQueue`                     |
//! | waiting (`block_on`, shutdown) | `KEVENT` (`SynchronizationEvent`)                      |
//! | timers                | `KTIMER` + `KDPC`; `KeFlushQueuedDpcs` at shutdown              |
//! | time budget           | `KeQueryInterruptTime`                                          |
//! | IRQL checks           | `KeGetCurrentIrql`: wrong IRQL is an error, never a bugcheck    |
//!
//! It calls only `wsk_sys` routines: on Windows the real kernel exports, on other hosts the
//! emulator's.

mod event;
pub mod pool;
mod timer;

use core::ffi::c_void;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicPtr, Ordering};
use core::time::Duration;

use wsk_sys::{
    DEVICE_OBJECT, DRIVER_OBJECT, DelayedWorkQueue, IO_WORKITEM, IoAllocateWorkItem, IoFreeWorkItem, IoQueueWorkItem,
    KEVENT, KIRQL, KeFlushQueuedDpcs, KeGetCurrentIrql, KeQueryInterruptTime, PASSIVE_LEVEL,
};

use crate::config::Config;
use crate::error::StartError;
use crate::executor::Executor;
use crate::platform::{Platform, TimerCallback};

pub use event::Event;
pub use timer::{Timer, live_timers};

/// Pool tag of the executor's allocations (tasks, timers, executor state).
pub const POOL_TAG: u32 = pool::tag::EXECUTOR;

/// The current IRQL. Any IRQL.
pub fn current_irql() -> KIRQL {
    KeGetCurrentIrql()
}

/// The object a work item is allocated for: the driver object or one of its device objects.
/// While the work item is queued or running, Windows' I/O manager keeps it referenced, so the
/// driver cannot unload under it (Wine does not; the work item routine does not need it: see
/// there).
#[derive(Debug, Clone, Copy)]
pub struct IoObject(*mut DEVICE_OBJECT);

impl IoObject {
    /// A device object of the driver.
    ///
    /// # Safety
    ///
    /// `device` is a valid device object that outlives every executor created for it.
    pub unsafe fn from_device(device: *mut DEVICE_OBJECT) -> Self {
        Self(device)
    }

    /// The driver object (`IoAllocateWorkItem` accepts it in place of a device object).
    ///
    /// # Safety
    ///
    /// `driver` is the driver's valid driver object.
    pub unsafe fn from_driver(driver: *mut DRIVER_OBJECT) -> Self {
        Self(driver.cast())
    }
}

/// The kernel platform: one `IO_WORKITEM` per executor.
///
/// # Invariants
///
/// `item` is the work item from `IoAllocateWorkItem` until [`Platform::shutdown`] or drop
/// frees it, then null.
pub struct Kernel {
    item: AtomicPtr<IO_WORKITEM>,
}

impl Kernel {
    /// Allocates the work item. IRQL <= DISPATCH_LEVEL.
    pub fn new(io_object: IoObject) -> Result<Self, StartError> {
        // SAFETY: `IoObject` holds a valid driver or device object (its constructors' contract).
        let item = unsafe { IoAllocateWorkItem(io_object.0) };
        if item.is_null() {
            return Err(StartError::NoMemory);
        }
        Ok(Self { item: AtomicPtr::new(item) })
    }

    fn free_item(&self) {
        let item = self.item.swap(ptr::null_mut(), Ordering::AcqRel);
        if !item.is_null() {
            // SAFETY: allocated by `IoAllocateWorkItem`; not queued (the executor's runs are
            // over, or it never ran); freed once thanks to the swap.
            unsafe { IoFreeWorkItem(item) };
        }
    }
}

impl Drop for Kernel {
    fn drop(&mut self) {
        self.free_item();
    }
}

impl core::fmt::Debug for Kernel {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Kernel").field("item", &self.item.load(Ordering::Relaxed)).finish()
    }
}

/// The work item's body: one run. Returns the `KEVENT` the routine must set as its very last
/// act (the shutdown waiter's, when this run released the executor), or null.
///
/// # Safety
///
/// Called only by the work item routine, with the context `request_run` queued.
unsafe extern "system" fn work_item_body(_io_object: *mut DEVICE_OBJECT, context: *mut c_void) -> *mut KEVENT {
    let Some(context) = NonNull::new(context.cast::<()>()) else {
        return ptr::null_mut();
    };
    // SAFETY: `request_run` queued this routine with the executor's context, once per request.
    match unsafe { crate::platform::run::<Kernel>(context) } {
        Some(event) => event::raw(event.as_ptr()),
        None => ptr::null_mut(),
    }
}

// The work item routine. PASSIVE_LEVEL, in a system worker thread.
//
// Once the last run sets the shutdown event, DriverUnload may return and the driver image be
// unloaded, so the routine must not execute one more instruction of the driver after
// `KeSetEvent`. Windows keeps the image while an `IoQueueWorkItem` routine runs (the work item
// holds a reference on its I/O object); Wine does not (winedevice unloads the image as soon as
// DriverUnload returns: seen as an execute fault at the return address after `KeSetEvent` in
// `run`, in the Wine step of `cargo xtask test`). So the routine calls the body, then jumps
// (does not call) to `KeSetEvent(event, IO_NO_INCREMENT, FALSE)`, which returns straight to the
// routine's caller in the kernel. Each exit is an epilogue the x64 unwinder recognises (`add
// rsp` then `ret` or an indirect `jmp`), described by the SEH directives.
#[cfg(all(target_os = "windows", target_arch = "x86_64"))]
core::arch::global_asm!(
    ".text",
    ".globl wsk_executor_work_item_routine",
    ".p2align 4",
    ".def wsk_executor_work_item_routine",
    ".scl 2",
    ".type 32",
    ".endef",
    ".seh_proc wsk_executor_work_item_routine",
    "wsk_executor_work_item_routine:",
    "sub rsp, 40",
    ".seh_stackalloc 40",
    ".seh_endprologue",
    "call {body}",
    "test rax, rax",
    "jz 2f",
    "mov rcx, rax",
    "xor edx, edx",
    "xor r8d, r8d",
    "add rsp, 40",
    "jmp qword ptr [rip + __imp_KeSetEvent]",
    "2:",
    "add rsp, 40",
    "ret",
    ".seh_endproc",
    body = sym work_item_body,
);

#[cfg(all(target_os = "windows", target_arch = "x86_64"))]
unsafe extern "system" {
    /// The routine above.
    #[link_name = "wsk_executor_work_item_routine"]
    fn work_item_routine(io_object: *mut DEVICE_OBJECT, context: *mut c_void);
}

/// The work item routine on hosts where the kernel is the emulator, in the same process: the
/// same body, then the set (nothing is unloaded under it there).
#[cfg(not(all(target_os = "windows", target_arch = "x86_64")))]
unsafe extern "system" fn work_item_routine(io_object: *mut DEVICE_OBJECT, context: *mut c_void) {
    // SAFETY: forwarded contract (queued by `request_run`).
    let event = unsafe { work_item_body(io_object, context) };
    if !event.is_null() {
        // SAFETY: the shutdown waiter's initialized event (`Event` is the `KEVENT` itself); the
        // run touches nothing afterwards.
        unsafe { event::set(event.cast::<Event>()) };
    }
}

// SAFETY: pool memory as requested or `None`; `request_run` queues the work item whose
// routine calls `run` once at PASSIVE_LEVEL; KEVENTs are SynchronizationEvents (auto-reset,
// sticky); KeCancelTimer's TRUE means the DPC will not run; shutdown flushes queued DPCs.
unsafe impl Platform for Kernel {
    type Event = Event;
    type Timer = Timer;

    fn alloc(layout: core::alloc::Layout) -> Option<NonNull<u8>> {
        pool::allocate_layout(layout, POOL_TAG)
    }

    unsafe fn dealloc(ptr: NonNull<u8>, layout: core::alloc::Layout) {
        // SAFETY: forwarded contract.
        unsafe { pool::free_layout(ptr, layout, POOL_TAG) };
    }

    fn can_block() -> bool {
        KeGetCurrentIrql() == PASSIVE_LEVEL
    }

    fn now_nanos() -> u64 {
        // SAFETY: no preconditions; any IRQL.
        let ticks = unsafe { KeQueryInterruptTime() };
        ticks.saturating_mul(100)
    }

    unsafe fn event_init(event: *mut Event) {
        // SAFETY: forwarded contract.
        unsafe { event::init(event) };
    }

    unsafe fn event_set(event: *const Event) {
        // SAFETY: forwarded contract.
        unsafe { event::set(event) };
    }

    unsafe fn event_wait(event: *const Event) {
        // SAFETY: forwarded contract (only called where `can_block()`).
        unsafe { event::wait(event) };
    }

    unsafe fn event_wait_timeout(event: *const Event, timeout: Duration) -> bool {
        // SAFETY: forwarded contract (only called where `can_block()`).
        unsafe { event::wait_timeout(event, timeout) }
    }

    unsafe fn event_drop(_event: *mut Event) {}

    unsafe fn timer_init(timer: *mut Timer, callback: TimerCallback, context: NonNull<()>) {
        // SAFETY: forwarded contract.
        unsafe { timer::init(timer, callback, context) };
    }

    unsafe fn timer_arm(timer: *const Timer, after: Duration) {
        // SAFETY: forwarded contract.
        unsafe { timer::arm(timer, after) };
    }

    unsafe fn timer_cancel(timer: *const Timer) -> bool {
        // SAFETY: forwarded contract.
        unsafe { timer::cancel(timer) }
    }

    unsafe fn timer_drop(timer: *mut Timer) {
        // SAFETY: forwarded contract.
        unsafe { timer::drop(timer) };
    }

    unsafe fn request_run(platform: NonNull<Self>, context: NonNull<()>) {
        // Read the work item before queueing: the run may free `platform` before we return.
        // SAFETY: valid when the call begins (caller).
        let item = unsafe { platform.as_ref() }.item.load(Ordering::Acquire);
        // SAFETY: the work item is allocated and not queued (the executor's QUEUED flag);
        // the routine gets the executor's context.
        unsafe { IoQueueWorkItem(item, work_item_routine, DelayedWorkQueue, context.as_ptr().cast()) };
    }

    unsafe fn shutdown(&self) {
        // Timer DPCs that a cancelled task's timers left queued finish before we return.
        // SAFETY: PASSIVE_LEVEL (caller).
        unsafe { KeFlushQueuedDpcs() };
        self.free_item();
    }
}

impl Executor<Kernel> {
    /// Creates an executor whose work item is allocated for `io_object`. PASSIVE_LEVEL
    /// (`DriverEntry`, `AddDevice`).
    ///
    /// Errors: [`StartError::NotPassive`] above PASSIVE_LEVEL, [`StartError::NoMemory`] if the
    /// work item or the executor's state cannot be allocated.
    pub fn new(io_object: IoObject) -> Result<Self, StartError> {
        Self::with_config(io_object, Config::new())
    }

    /// [`new`](Self::new) with a custom run budget. PASSIVE_LEVEL.
    pub fn with_config(io_object: IoObject, config: Config) -> Result<Self, StartError> {
        if KeGetCurrentIrql() != PASSIVE_LEVEL {
            return Err(StartError::NotPassive);
        }
        pool::init();
        Self::with_platform(Kernel::new(io_object)?, config)
    }
}

#[cfg(test)]
mod tests {
    use super::timer::relative_due_time;
    use core::time::Duration;

    #[test]
    fn due_time_rounds_up_and_is_relative() {
        assert_eq!(relative_due_time(Duration::from_millis(1)), -10_000);
        assert_eq!(relative_due_time(Duration::from_nanos(1)), -1);
        assert_eq!(relative_due_time(Duration::ZERO), 0);
        assert_eq!(relative_due_time(Duration::MAX), -i64::MAX);
    }

    #[test]
    fn pool_tag_reads_in_memory_order() {
        assert_eq!(super::POOL_TAG.to_le_bytes(), *b"WskE");
    }
}
