//! Dispatcher objects, timers and DPCs (`KEVENT`, `KTIMER`, `KDPC`).
//!
//! Binds the dispatcher-object, timer and DPC section of `wdm.h` (`DISPATCHER_HEADER`,
//! `KEVENT`, `KTIMER`, `KDPC`, `EVENT_TYPE`, `TIMER_TYPE`, `KWAIT_REASON`, `LARGE_INTEGER`)
//! under its C names.

use core::ffi::c_void;

use crate::basic::*;

/// Common header of every dispatcher object. Only `Type`, `Size` and `SignalState` carry
/// meaning for drivers; the kernel owns the rest. The byte at offset 1 (`Signalling` /
/// timer control flags) and offset 3 are unions in C; they are kept as plain bytes.
#[repr(C)]
#[derive(Debug)]
pub struct DISPATCHER_HEADER {
    pub Type: UCHAR,
    pub Signalling: UCHAR,
    pub Size: UCHAR,
    pub Reserved1: UCHAR,
    pub SignalState: LONG,
    pub WaitListHead: LIST_ENTRY,
}

/// Event object. Initialize with `KeInitializeEvent`; must be in non-paged memory when
/// waited on or signalled at DISPATCH_LEVEL.
#[repr(C)]
#[derive(Debug)]
pub struct KEVENT {
    pub Header: DISPATCHER_HEADER,
}

/// Timer object. Initialize with `KeInitializeTimerEx`.
#[repr(C)]
#[derive(Debug)]
pub struct KTIMER {
    pub Header: DISPATCHER_HEADER,
    pub DueTime: ULARGE_INTEGER,
    pub TimerListEntry: LIST_ENTRY,
    pub Dpc: *mut KDPC,
    pub Processor: ULONG,
    pub Period: ULONG,
}

/// Deferred procedure call object. Initialize with `KeInitializeDpc`.
#[repr(C)]
#[derive(Debug)]
pub struct KDPC {
    pub Type: UCHAR,
    pub Importance: UCHAR,
    pub Number: USHORT,
    pub DpcListEntry: LIST_ENTRY,
    pub DeferredRoutine: Option<KDEFERRED_ROUTINE>,
    pub DeferredContext: PVOID,
    pub SystemArgument1: PVOID,
    pub SystemArgument2: PVOID,
    pub DpcData: PVOID,
}

/// A DPC routine; runs at DISPATCH_LEVEL.
pub type KDEFERRED_ROUTINE =
    unsafe extern "system" fn(Dpc: *mut KDPC, DeferredContext: PVOID, SystemArgument1: PVOID, SystemArgument2: PVOID);

/// `EVENT_TYPE`.
pub type EVENT_TYPE = i32;
pub const NotificationEvent: EVENT_TYPE = 0;
pub const SynchronizationEvent: EVENT_TYPE = 1;

/// `TIMER_TYPE`.
pub type TIMER_TYPE = i32;
pub const NotificationTimer: TIMER_TYPE = 0;
pub const SynchronizationTimer: TIMER_TYPE = 1;

/// `KWAIT_REASON` (only the value drivers pass).
pub type KWAIT_REASON = i32;
pub const Executive: KWAIT_REASON = 0;

/// Priority increment passed to `KeSetEvent`.
pub const IO_NO_INCREMENT: KPRIORITY = 0;
pub const IO_NETWORK_INCREMENT: KPRIORITY = 2;

/// Opaque pointer target for `KeWaitForSingleObject`.
pub type PVOID_OBJECT = *mut c_void;

/// Relative timeouts are negative multiples of 100 ns.
pub const fn relative_timeout_100ns(hundred_ns: i64) -> LARGE_INTEGER {
    -hundred_ns
}
