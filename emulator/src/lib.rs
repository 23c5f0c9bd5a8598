//! A user-mode Windows kernel for host tests.
//!
//! `wsk-emulator` defines, in user mode, every kernel routine the `wsk-sys` crate declares, so
//! that unchanged driver code (the `wsk` library, the executor, the example drivers) runs in
//! host tests and host binaries on any OS, in CI, in seconds. It also checks what it runs, with
//! a verifier modelled on Driver Verifier's standard checks, and can fail allocations on
//! purpose to prove every failure path.
//!
//! # Using it
//!
//! Link the crate into the test or binary (any use does; `use wsk_emulator as _;` is enough
//! for the `#[no_mangle]` routines to resolve `wsk_sys`'s declarations), then load the driver:
//!
//! ```no_run
//! use wsk_emulator::{FaultPlan, Kernel};
//! # unsafe extern "system" fn driver_entry(
//! #     _: *mut wsk_sys::DRIVER_OBJECT,
//! #     _: *mut wsk_sys::UNICODE_STRING,
//! # ) -> wsk_sys::NTSTATUS { 0 }
//! let driver = Kernel::builder()
//!     .verifier(true)
//!     .fault_injection(FaultPlan::None)
//!     .param_dword("Port", 7007)
//!     .param_string("Address", "127.0.0.1")
//!     .load("echo", driver_entry)
//!     .expect("DriverEntry failed");
//! // ... exercise the driver ...
//! let report = driver.unload();
//! assert!(report.is_clean(), "{report}");
//! ```
//!
//! [`Kernel::builder`] configures a load; [`KernelBuilder::load`] calls DriverEntry;
//! [`KernelBuilder::attach`] starts a driver session without one (the test body is the
//! driver); [`LoadedDriver::unload`] calls DriverUnload and returns the [`VerifierReport`].
//! [`with_irql`] runs a closure at a given IRQL (e.g. "from a DPC"); [`assert_may_block`]
//! guards test scaffolding that may block against being called from one; [`counters`] samples
//! allocation counters (allocations per operation); [`debug_log`] reads `DbgPrint` output;
//! [`provider`] lets a test (and the emulated WSK subsystem) act as the lower driver an IRP
//! is passed to.
//!
//! The emulator installs the process's global allocator (the system allocator, each call
//! marked as the emulator's own host work so that its lock waits at DISPATCH_LEVEL are not
//! reported as the driver blocking; see `irql`): a binary that links the emulator cannot
//! install another.
//!
//! Environment variables: `WSK_EMU_DBGPRINT` (any value) echoes `DbgPrint` output to stderr;
//! `WSK_EMU_SITES=0` turns allocation site capture off by default (it costs a backtrace per
//! allocation: a few microseconds); `WSK_EMU_QUIRKS=wine` (or a list of quirk names) makes the
//! kernel answer as Wine's does where Wine differs from Windows in a way that found a defect
//! (see [`quirks`]).
//!
//! Threads: system worker threads are named `wsk-emu-worker-N`, DPC threads `wsk-emu-dpc-N`,
//! the timer thread `wsk-emu-timer-N`; host threads (tests, the thread that loads the driver)
//! run driver code at whatever IRQL [`with_irql`] sets, PASSIVE_LEVEL by default.
//!
//! # What is emulated, and how faithfully
//!
//! | Area | Routines | Fidelity |
//! | --- | --- | --- |
//! | Pool | `ExAllocatePool2`, `ExAllocatePoolWithTag`, `ExFreePool`, `ExFreePoolWithTag`, `MmGetSystemRoutineAddress` | Tags, paged / non-paged types, 16-byte alignment (page alignment from one page up), `ExAllocatePool2` zeroing and flag rules. Special pool with the verifier on: fill of fresh memory, guard bytes checked at free, poisoned and quarantined freed memory. Paged pool is never paged out. |
//! | IRPs | `IoAllocateIrp`, `IoInitializeIrp`, `IoReuseIrp`, `IoFreeIrp`, `IoCancelIrp`, `IofCompleteRequest`, `IoSetCompletionRoutineEx`, `IoAcquireCancelSpinLock`, `IoReleaseCancelSpinLock` | Real layout and stack-location arithmetic; the real completion walk (`SL_INVOKE_*`, `PendingReturned` propagation, stop at `STATUS_MORE_PROCESSING_REQUIRED`); `UserIosb`/`UserEvent` set when completion reaches the I/O manager; cancel routines called under a global cancel spin lock with `CancelIrql` set. No thread IRPs, APCs, `IoCallDriver` or device stacks. |
//! | MDLs | `IoAllocateMdl`, `IoFreeMdl`, `MmBuildMdlForNonPagedPool`, `MmMapLockedPagesSpecifyCache` (so `MmGetSystemAddressForMdlSafe`), `MmUnmapLockedPages`, `IoBuildPartialMdl` | Real header fields and chaining to an IRP; a partial MDL shares a mapped source's mapping, one mapped on its own is marked `MDL_PARTIAL_HAS_BEEN_MAPPED`. No page tables: "page frame numbers" are virtual page numbers and the system address is the buffer itself. |
//! | Work items | `IoAllocateWorkItem`, `IoQueueWorkItem`, `IoFreeWorkItem` | Four system worker threads at PASSIVE_LEVEL; queue types are not distinguished. The driver is referenced while a work item is queued or running: unload waits for it. |
//! | Events and waits | `KeInitializeEvent`, `KeSetEvent`, `KeClearEvent`, `KeResetEvent`, `KeReadStateEvent`, `KeWaitForSingleObject`, `KeDelayExecutionThread` | Notification and synchronization (auto-reset) events and timers; signal state kept in `DISPATCHER_HEADER.SignalState`. No alerts, APCs or wait priority boosts. |
//! | Timers and DPCs | `KeInitializeTimerEx`, `KeSetTimerEx`, `KeCancelTimer`, `KeReadStateTimer`, `KeInitializeDpc`, `KeInsertQueueDpc`, `KeRemoveQueueDpc`, `KeFlushQueuedDpcs`, `KeQueryInterruptTime` | One timer thread with the host's resolution (finer than Windows' default 15.6 ms tick); two DPC threads (two emulated processors) at DISPATCH_LEVEL serving one FIFO (no per-processor queues, importance or targeted DPCs). |
//! | Rundown | `ExInitializeRundownProtection`, `ExReInitializeRundownProtection`, `ExAcquireRundownProtection`, `ExReleaseRundownProtection`, `ExWaitForRundownProtectionRelease`, `ExRundownCompleted` | The `EX_RUNDOWN_REF` word in place with the kernel's encoding (active bit, count in units of 2). |
//! | Registry | `ZwOpenKey`, `ZwQueryValueKey` (`KeyValuePartialInformation`), `ZwClose` | Only the driver's service key and its `Parameters` subkey, with values set by the host; real status codes for short buffers and missing values. |
//! | Bugcheck | `KeBugCheckEx` | Recorded with the driver's code; a system thread calling it stops for good (a fresh one replaces it); on a host thread the process aborts. |
//! | Version | `RtlIsNtDdiVersionAvailable` | The emulated kernel is Windows 10: TRUE for every `NTDDI_*` before Windows 11's numbering. |
//! | Strings, debug output | `RtlInitUnicodeString`, `DbgPrint`, `DbgPrintEx` | Windows printf dialect (`%wZ`, `%ws`, `%S`, `%I64x`, 32-bit `%ld`), 512-byte truncation; every message is logged (no component filtering). |
//! | IRQL | `KeGetCurrentIrql` (through `WskEmuGetCurrentIrql`) | Per thread: PASSIVE_LEVEL for DriverEntry, DriverUnload, work items and test threads; DISPATCH_LEVEL for DPCs, completion routines, event callbacks, timer expiry and under the cancel spin lock. The emulator's own locks spin at DISPATCH_LEVEL instead of sleeping. |
//! | WSK | `WskRegister`, `WskDeregister`, `WskCaptureProviderNPI`, `WskReleaseProviderNPI`; provider routines `WskSocket`, `WskSocketConnect`, `WskControlClient`, `WskGetAddressInfo`, `WskFreeAddressInfo`; listen, connection, datagram and basic socket tables (`WskBind`, `WskAccept`, `WskConnect`, `WskSend`, `WskReceive`, `WskDisconnect`, `WskSendTo`, `WskSendMessages`, `WskReceiveFrom`, `WskGetLocalAddress`, `WskGetRemoteAddress`, `WskControlSocket`, `WskCloseSocket`) | Over real nonblocking host sockets driven by one `mio` I/O thread (`wsk-emu-net`) that completes pending IRPs at DISPATCH_LEVEL; IRPs are cancelable (`IoCancelIrp`), `WskCloseSocket` cancels pending IRPs before it completes and resets connections not disconnected both ways; `WskDeregister` waits for sockets to close. Event callbacks (`SO_WSK_EVENT_CALLBACK`: accept, receive, disconnect, send backlog, receive-from; `WskRelease`) run on the I/O thread at DISPATCH_LEVEL (receive callbacks a zero-length `WskReceive` resumes: on the caller's thread, before it returns). The adversarial mode ([`adversary`], `WSK_EMU_CHAOS=SEED`) moves both onto four processor threads and adds late and caller-IRQL completions, overlapping datagram and accept callbacks, random indication shapes, partial receives and short sends. No `WskGetNameInfo`, IOCTLs or stream sockets yet: see the `wsk` module docs for every difference. |
//!
//! # The verifier
//!
//! On by default ([`KernelBuilder::verifier`]). Each check is a [`Rule`]; a violation is a
//! [`Bugcheck`] with a stop code in the spirit of Driver Verifier's (0xC4
//! `DRIVER_VERIFIER_DETECTED_VIOLATION`, 0xC9 `DRIVER_VERIFIER_IOMANAGER_VIOLATION`, 0xD1
//! `DRIVER_IRQL_NOT_LESS_OR_EQUAL`, 0x44 `MULTIPLE_IRP_COMPLETE_REQUESTS`, 0xC7
//! `TIMER_OR_DPC_INVALID`, 0xB8 `ATTEMPTED_SWITCH_FROM_DPC`, 0xCE, 0xE4, 0xC1, 0xC2, 0x93, 0x35,
//! 0x48). The first violation
//! stops the driver: no further work items or DPCs are dispatched into it and DriverUnload is
//! not called; the offending call does nothing harmful (a double free is refused) and returns,
//! so that tests can assert on the report.
//!
//! * Pool tracking: every allocation is checked at unload (tag, size, pool type and allocation
//!   site of each leak); special pool catches overruns, double frees and writes after free.
//! * IRQL checking: every routine's documented maximum IRQL, paged pool at DISPATCH_LEVEL,
//!   `KeWaitForSingleObject` waits that could block at DISPATCH_LEVEL, a thread that blocks (a
//!   host lock, a condition variable, a sleep) while at DISPATCH_LEVEL or above, and
//!   [`assert_may_block`] there (`BLOCKED_AT_DISPATCH_LEVEL`, stop code 0xB8
//!   `ATTEMPTED_SWITCH_FROM_DPC`), callbacks that return at another IRQL or holding the cancel
//!   spin lock, Unicode `DbgPrint` formats above PASSIVE_LEVEL.
//! * I/O verification: IRPs freed twice, freed or reused while a provider owns them, completed
//!   twice, completed with `STATUS_PENDING` or a cancel routine set, leaked; completion that
//!   reached the I/O manager for a driver-allocated IRP the driver then frees or reuses; work
//!   items queued twice or freed while queued; timers and DPCs pending at unload or in freed
//!   pool; MDLs over paged or freed pool; handles and WSK registrations leaked.
//!
//! Fault injection ([`FaultPlan`]) fails pool, IRP, MDL and work item allocations at random
//! (deterministic for a seed) or systematically (exactly the N-th, or every one from the N-th).
//!
//! # What differs from the real kernel
//!
//! * There are no page tables, no paging and no memory protection for pool: a use after free
//!   of quarantined pool reads poison instead of faulting, and is caught only where the
//!   emulator checks (frees, MDLs, quarantine poison, dispatcher object types). WSK
//!   indications given back are the exception: with the verifier on they are page-protected
//!   and a touch faults.
//! * One driver at a time per process; the kernel state is process-global.
//! * IRQL does not mask anything: there is no preemption by IRQL, and a DPC runs concurrently
//!   with PASSIVE_LEVEL code of the "same processor". Blocking at DISPATCH_LEVEL is not
//!   prevented but detected after the fact (the thread switched out voluntarily and was off the
//!   CPU for at least [`BLOCKED_THRESHOLD`]; shorter blocks go unseen), on Linux hosts only.
//!   Touching pageable code or data above APC_LEVEL cannot be detected at all.
//! * Timers have the host's resolution; DPCs run on two threads in FIFO order; work items on
//!   four threads.
//! * Completion routines always run at DISPATCH_LEVEL (the real kernel runs them at the
//!   completer's IRQL, which is at most DISPATCH_LEVEL).
//! * `IoSetCompletionRoutineEx` allocates nothing and cannot fail.
//! * `POOL_FLAG_RAISE_ON_FAILURE` returns null instead of raising; structured exceptions do not
//!   exist.
//! * Stop codes and their first parameters follow Driver Verifier where a matching check exists;
//!   the rule name is the reliable identifier.

#![expect(non_snake_case, reason = "the emulated kernel routines keep their Windows names and parameter names")]

pub mod adversary;
mod counters;
mod crash;
mod debug;
mod dpc;
mod driver;
mod event;
mod fault;
mod footprint;
mod host_heap;
mod irp;
mod irql;
mod kernel;
mod mdl;
mod pool;
pub mod quirks;
mod registry;
mod rtl;
mod rundown;
mod site;
mod spinlock;
mod sync;
mod threads;
mod time;
mod timer;
mod verifier;
mod workitem;
mod wsk;
pub use wsk::{cancel_pending_accepts, cancel_pending_receives, provider_unavailable_for, set_resolution_delay};

pub use counters::{Counters, counters};
pub use debug::{DebugMessage, debug_log, debug_messages, wait_for_debug_message};
pub use driver::{Kernel, KernelBuilder, LoadError, LoadedDriver};
pub use fault::{AllocationKind, FaultPlan, FaultStats};
pub use footprint::{Footprint, FootprintFigures};
pub use irp::provider;
pub use irql::{BLOCKED_THRESHOLD, assert_may_block, current_irql, irql_name, with_irql};
pub use pool::{FREED_BYTE, FRESH_BYTE, GUARD_BYTE, GUARD_BYTES};
pub use registry::{RegistryValue, SERVICES_KEY, service_key_path};
pub use rtl::EXPORTS;
pub use site::Site;
pub use threads::{DPC_THREADS, WORKER_THREADS};
pub use verifier::{Bugcheck, Leak, LeakKind, Rule, VerifierReport, codes, recorded_bugchecks, tag_text};

/// Every routine the emulator exports, callable from Rust without going through `wsk_sys`'s
/// declarations (which resolve to the same symbols).
pub mod exports {
    pub use crate::crash::KeBugCheckEx;
    pub use crate::dpc::{KeFlushQueuedDpcs, KeInitializeDpc, KeInsertQueueDpc, KeRemoveQueueDpc};
    pub use crate::event::{
        KeClearEvent, KeDelayExecutionThread, KeInitializeEvent, KeReadStateEvent, KeResetEvent, KeSetEvent,
        KeWaitForSingleObject,
    };
    pub use crate::irp::{
        IoAcquireCancelSpinLock, IoAllocateIrp, IoCancelIrp, IoFreeIrp, IoInitializeIrp, IoReleaseCancelSpinLock,
        IoReuseIrp, IoSetCompletionRoutineEx, IofCompleteRequest,
    };
    pub use crate::irql::WskEmuGetCurrentIrql;
    pub use crate::mdl::{
        IoAllocateMdl, IoBuildPartialMdl, IoFreeMdl, MmBuildMdlForNonPagedPool, MmMapLockedPagesSpecifyCache,
        MmUnmapLockedPages,
    };
    pub use crate::pool::{ExAllocatePool2, ExAllocatePoolWithTag, ExFreePool, ExFreePoolWithTag};
    pub use crate::registry::{ZwClose, ZwOpenKey, ZwQueryValueKey};
    pub use crate::rtl::{
        KeQueryInterruptTime, MmGetSystemRoutineAddress, RtlInitUnicodeString, RtlIsNtDdiVersionAvailable,
    };
    pub use crate::rundown::{
        ExAcquireRundownProtection, ExInitializeRundownProtection, ExReInitializeRundownProtection,
        ExReleaseRundownProtection, ExRundownCompleted, ExWaitForRundownProtectionRelease,
    };
    pub use crate::spinlock::{KeAcquireSpinLockRaiseToDpc, KeReleaseSpinLock};
    pub use crate::timer::{KeCancelTimer, KeInitializeTimerEx, KeReadStateTimer, KeSetTimerEx};
    pub use crate::workitem::{IoAllocateWorkItem, IoFreeWorkItem, IoQueueWorkItem};
    pub use crate::wsk::{WskCaptureProviderNPI, WskDeregister, WskRegister, WskReleaseProviderNPI};
    /// Defined in C (`csrc/dbgprint.c`): C-variadic.
    pub use wsk_sys::{DbgPrint, DbgPrintEx};
}
