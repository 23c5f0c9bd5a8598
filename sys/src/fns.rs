//! Declarations of every kernel routine the project calls.
//!
//! Binds, under their C names, the exported routines of `wdm.h` (I/O manager, memory manager,
//! executive pool, kernel dispatcher, timers, DPCs, work items, registry), `ntddk.h`
//! (`KeQueryInterruptTime` and the like) and `wsk.h` (`WskRegister` ...
//! `WskReleaseProviderNPI`); each one's contract is Microsoft's page for that name.
//!
//! On Windows targets they are imported from `ntoskrnl.exe` and `NETIO.SYS` through
//! `raw-dylib` (no import library needed). On other targets the same symbols are defined by
//! the host kernel emulator (`wsk-emulator`), linked into host binaries and tests.
//!
//! Each routine's highest IRQL is noted as Microsoft documents it; the emulator's verifier
//! checks those limits.

use core::ffi::c_char;
#[cfg(windows)]
use core::ffi::c_void;

use crate::basic::*;
use crate::irp::{IO_COMPLETION_ROUTINE, IRP};
use crate::ke::*;
use crate::mdl::MDL;
use crate::object::*;
use crate::registry::OBJECT_ATTRIBUTES;
use crate::wsk::{WSK_CLIENT_NPI, WSK_PROVIDER_NPI, WSK_REGISTRATION};

/// `POOL_TYPE` values for `ExAllocatePoolWithTag`.
pub type POOL_TYPE = i32;
pub const NonPagedPool: POOL_TYPE = 0;
pub const PagedPool: POOL_TYPE = 1;
pub const NonPagedPoolNx: POOL_TYPE = 512;

/// `POOL_FLAGS` for `ExAllocatePool2`.
pub const POOL_FLAG_UNINITIALIZED: POOL_FLAGS = 0x0000_0000_0000_0002;
pub const POOL_FLAG_NON_PAGED: POOL_FLAGS = 0x0000_0000_0000_0040;
pub const POOL_FLAG_PAGED: POOL_FLAGS = 0x0000_0000_0000_0100;

/// `ExAllocatePool2` (Windows 10 2004+). Not imported: resolve it with
/// `MmGetSystemRoutineAddress` and fall back to `ExAllocatePoolWithTag`. IRQL <= DISPATCH_LEVEL
/// (PASSIVE/APC for paged pool).
pub type PFN_EX_ALLOCATE_POOL2 =
    unsafe extern "system" fn(Flags: POOL_FLAGS, NumberOfBytes: SIZE_T, Tag: ULONG) -> PVOID;

#[cfg_attr(windows, link(name = "ntoskrnl.exe", kind = "raw-dylib", modifiers = "+verbatim"))]
unsafe extern "system" {
    // ---- pool (IRQL <= DISPATCH_LEVEL; paged pool: <= APC_LEVEL) ----
    pub fn ExAllocatePoolWithTag(PoolType: POOL_TYPE, NumberOfBytes: SIZE_T, Tag: ULONG) -> PVOID;
    pub fn ExFreePoolWithTag(P: PVOID, Tag: ULONG);
    pub fn ExFreePool(P: PVOID);
    /// IRQL == PASSIVE_LEVEL.
    pub fn MmGetSystemRoutineAddress(SystemRoutineName: *mut UNICODE_STRING) -> PVOID;

    // ---- IRPs (IRQL <= DISPATCH_LEVEL) ----
    pub fn IoAllocateIrp(StackSize: CCHAR, ChargeQuota: BOOLEAN) -> *mut IRP;
    pub fn IoInitializeIrp(Irp: *mut IRP, PacketSize: USHORT, StackSize: CCHAR);
    pub fn IoReuseIrp(Irp: *mut IRP, Iostatus: NTSTATUS);
    pub fn IoFreeIrp(Irp: *mut IRP);
    pub fn IoCancelIrp(Irp: *mut IRP) -> BOOLEAN;
    pub fn IofCompleteRequest(Irp: *mut IRP, PriorityBoost: CCHAR);
    pub fn IoAcquireCancelSpinLock(Irql: *mut KIRQL);
    pub fn IoReleaseCancelSpinLock(Irql: KIRQL);

    // ---- spin locks (x64 exports; `KeAcquireSpinLock` is a macro over the first) ----
    /// IRQL <= DISPATCH_LEVEL; returns at DISPATCH_LEVEL with the previous IRQL.
    pub fn KeAcquireSpinLockRaiseToDpc(SpinLock: *mut KSPIN_LOCK) -> KIRQL;
    /// IRQL == DISPATCH_LEVEL; lowers to `NewIrql`.
    pub fn KeReleaseSpinLock(SpinLock: *mut KSPIN_LOCK, NewIrql: KIRQL);
    pub fn IoSetCompletionRoutineEx(
        DeviceObject: *mut DEVICE_OBJECT,
        Irp: *mut IRP,
        CompletionRoutine: IO_COMPLETION_ROUTINE,
        Context: PVOID,
        InvokeOnSuccess: BOOLEAN,
        InvokeOnError: BOOLEAN,
        InvokeOnCancel: BOOLEAN,
    ) -> NTSTATUS;

    // ---- MDLs (IRQL <= DISPATCH_LEVEL) ----
    pub fn IoAllocateMdl(
        VirtualAddress: PVOID,
        Length: ULONG,
        SecondaryBuffer: BOOLEAN,
        ChargeQuota: BOOLEAN,
        Irp: *mut IRP,
    ) -> *mut MDL;
    pub fn IoFreeMdl(Mdl: *mut MDL);
    pub fn MmBuildMdlForNonPagedPool(MemoryDescriptorList: *mut MDL);
    pub fn MmMapLockedPagesSpecifyCache(
        MemoryDescriptorList: *mut MDL,
        AccessMode: KPROCESSOR_MODE,
        CacheType: i32,
        RequestedAddress: PVOID,
        BugCheckOnFailure: ULONG,
        Priority: ULONG,
    ) -> PVOID;
    pub fn MmUnmapLockedPages(BaseAddress: PVOID, MemoryDescriptorList: *mut MDL);
    /// `TargetMdl` (allocated by the caller, large enough for the pages) describes `Length`
    /// bytes at `VirtualAddress` inside the buffer `SourceMdl` describes (locked pages).
    pub fn IoBuildPartialMdl(SourceMdl: *mut MDL, TargetMdl: *mut MDL, VirtualAddress: PVOID, Length: ULONG);

    // ---- work items: allocate/queue/free at IRQL <= DISPATCH_LEVEL; routine at PASSIVE ----
    pub fn IoAllocateWorkItem(DeviceObject: *mut DEVICE_OBJECT) -> PIO_WORKITEM;
    pub fn IoQueueWorkItem(
        IoWorkItem: PIO_WORKITEM,
        WorkerRoutine: IO_WORKITEM_ROUTINE,
        QueueType: WORK_QUEUE_TYPE,
        Context: PVOID,
    );
    pub fn IoFreeWorkItem(IoWorkItem: PIO_WORKITEM);

    // ---- events (set/clear at <= DISPATCH_LEVEL; wait with timeout != 0 at <= APC_LEVEL) ----
    pub fn KeInitializeEvent(Event: *mut KEVENT, Type: EVENT_TYPE, State: BOOLEAN);
    pub fn KeSetEvent(Event: *mut KEVENT, Increment: KPRIORITY, Wait: BOOLEAN) -> LONG;
    pub fn KeClearEvent(Event: *mut KEVENT);
    pub fn KeResetEvent(Event: *mut KEVENT) -> LONG;
    pub fn KeReadStateEvent(Event: *mut KEVENT) -> LONG;
    pub fn KeWaitForSingleObject(
        Object: PVOID,
        WaitReason: KWAIT_REASON,
        WaitMode: KPROCESSOR_MODE,
        Alertable: BOOLEAN,
        Timeout: *mut LARGE_INTEGER,
    ) -> NTSTATUS;
    /// IRQL <= APC_LEVEL.
    pub fn KeDelayExecutionThread(
        WaitMode: KPROCESSOR_MODE,
        Alertable: BOOLEAN,
        Interval: *mut LARGE_INTEGER,
    ) -> NTSTATUS;

    // ---- timers and DPCs (IRQL <= DISPATCH_LEVEL; KeFlushQueuedDpcs at PASSIVE) ----
    pub fn KeInitializeTimerEx(Timer: *mut KTIMER, Type: TIMER_TYPE);
    pub fn KeSetTimerEx(Timer: *mut KTIMER, DueTime: LARGE_INTEGER, Period: LONG, Dpc: *mut KDPC) -> BOOLEAN;
    pub fn KeCancelTimer(Timer: *mut KTIMER) -> BOOLEAN;
    pub fn KeReadStateTimer(Timer: *mut KTIMER) -> BOOLEAN;
    pub fn KeInitializeDpc(Dpc: *mut KDPC, DeferredRoutine: KDEFERRED_ROUTINE, DeferredContext: PVOID);
    pub fn KeInsertQueueDpc(Dpc: *mut KDPC, SystemArgument1: PVOID, SystemArgument2: PVOID) -> BOOLEAN;
    pub fn KeRemoveQueueDpc(Dpc: *mut KDPC) -> BOOLEAN;
    pub fn KeFlushQueuedDpcs();
    /// Interrupt time in 100 ns units since boot. Any IRQL.
    pub fn KeQueryInterruptTime() -> ULONGLONG;

    // ---- rundown protection (acquire/release at <= DISPATCH_LEVEL; wait at < DISPATCH) ----
    pub fn ExInitializeRundownProtection(RunRef: *mut EX_RUNDOWN_REF);
    pub fn ExReInitializeRundownProtection(RunRef: *mut EX_RUNDOWN_REF);
    pub fn ExAcquireRundownProtection(RunRef: *mut EX_RUNDOWN_REF) -> BOOLEAN;
    pub fn ExReleaseRundownProtection(RunRef: *mut EX_RUNDOWN_REF);
    pub fn ExWaitForRundownProtectionRelease(RunRef: *mut EX_RUNDOWN_REF);
    pub fn ExRundownCompleted(RunRef: *mut EX_RUNDOWN_REF);

    // ---- registry (PASSIVE_LEVEL) ----
    pub fn ZwOpenKey(
        KeyHandle: *mut HANDLE,
        DesiredAccess: ACCESS_MASK,
        ObjectAttributes: *mut OBJECT_ATTRIBUTES,
    ) -> NTSTATUS;
    pub fn ZwQueryValueKey(
        KeyHandle: HANDLE,
        ValueName: *mut UNICODE_STRING,
        KeyValueInformationClass: i32,
        KeyValueInformation: PVOID,
        Length: ULONG,
        ResultLength: *mut ULONG,
    ) -> NTSTATUS;
    pub fn ZwClose(Handle: HANDLE) -> NTSTATUS;

    // ---- bugcheck (any IRQL) ----
    /// Stops the system. Drivers call it only for unrecoverable internal errors.
    pub fn KeBugCheckEx(
        BugCheckCode: ULONG,
        BugCheckParameter1: ULONG_PTR,
        BugCheckParameter2: ULONG_PTR,
        BugCheckParameter3: ULONG_PTR,
        BugCheckParameter4: ULONG_PTR,
    ) -> !;

    // ---- strings ----
    pub fn RtlInitUnicodeString(DestinationString: *mut UNICODE_STRING, SourceString: *const WCHAR);

    // ---- version ----
    /// Whether the running Windows is at least the DDI version `Version` (`NTDDI_*`);
    /// exported by the kernel since Windows Vista. IRQL == PASSIVE_LEVEL.
    pub fn RtlIsNtDdiVersionAvailable(Version: ULONG) -> BOOLEAN;
}

/// `NTDDI_WIN8`: Windows 8, for [`RtlIsNtDdiVersionAvailable`].
pub const NTDDI_WIN8: ULONG = 0x0602_0000;

#[cfg_attr(windows, link(name = "ntoskrnl.exe", kind = "raw-dylib", modifiers = "+verbatim"))]
unsafe extern "C" {
    /// Debug output (any IRQL; at DISPATCH_LEVEL and above only for non-Unicode formats).
    /// The host emulator follows the Windows printf dialect (`l` is 32 bits, `%wZ`, `%ws`).
    pub fn DbgPrint(Format: *const c_char, ...) -> ULONG;
    pub fn DbgPrintEx(ComponentId: ULONG, Level: ULONG, Format: *const c_char, ...) -> ULONG;
}

#[cfg_attr(windows, link(name = "NETIO.SYS", kind = "raw-dylib", modifiers = "+verbatim"))]
unsafe extern "system" {
    /// IRQL == PASSIVE_LEVEL.
    pub fn WskRegister(WskClientNpi: *mut WSK_CLIENT_NPI, WskRegistration: *mut WSK_REGISTRATION) -> NTSTATUS;
    /// IRQL == PASSIVE_LEVEL. Waits until every captured NPI is released and every socket closed.
    pub fn WskDeregister(WskRegistration: *mut WSK_REGISTRATION);
    /// IRQL == PASSIVE_LEVEL unless `WaitTimeout` is `WSK_NO_WAIT` (then <= DISPATCH_LEVEL).
    pub fn WskCaptureProviderNPI(
        WskRegistration: *mut WSK_REGISTRATION,
        WaitTimeout: ULONG,
        WskProviderNpi: *mut WSK_PROVIDER_NPI,
    ) -> NTSTATUS;
    /// IRQL <= DISPATCH_LEVEL.
    pub fn WskReleaseProviderNPI(WskRegistration: *mut WSK_REGISTRATION);
}

// C runtime routines the compiler may emit calls to. In a driver they come from
// `ntoskrnl.exe`'s exports; on the host, from the C library.
#[cfg(windows)]
#[link(name = "ntoskrnl.exe", kind = "raw-dylib", modifiers = "+verbatim")]
unsafe extern "C" {
    pub fn memcpy(dest: *mut c_void, src: *const c_void, n: usize) -> *mut c_void;
    pub fn memmove(dest: *mut c_void, src: *const c_void, n: usize) -> *mut c_void;
    pub fn memset(dest: *mut c_void, c: i32, n: usize) -> *mut c_void;
    pub fn memcmp(a: *const c_void, b: *const c_void, n: usize) -> i32;
}

/// The current processor's IRQL. Callable at any IRQL.
///
/// On x64 Windows this is the `KeGetCurrentIrql` intrinsic (reads CR8). On the host it asks
/// the emulator, which tracks an IRQL per emulated thread.
#[cfg(all(windows, target_arch = "x86_64"))]
#[inline]
pub fn KeGetCurrentIrql() -> KIRQL {
    let irql: u64;
    // SAFETY: reading CR8 has no side effects; kernel-mode code may always execute it.
    unsafe {
        core::arch::asm!("mov {}, cr8", out(reg) irql, options(nomem, nostack, preserves_flags));
    }
    irql as KIRQL
}

#[cfg(not(windows))]
unsafe extern "system" {
    /// Emulator export behind [`KeGetCurrentIrql`] on the host.
    fn WskEmuGetCurrentIrql() -> KIRQL;
}

/// The current emulated thread's IRQL (host build). Callable at any IRQL.
#[cfg(not(windows))]
#[inline]
pub fn KeGetCurrentIrql() -> KIRQL {
    // SAFETY: the emulator's export takes no arguments and only reads thread-local state.
    unsafe { WskEmuGetCurrentIrql() }
}

/// `IoCompleteRequest` (a macro over `IofCompleteRequest`).
///
/// # Safety
/// `irp` must be a live IRP owned by the caller, not yet completed. IRQL <= DISPATCH_LEVEL.
#[inline]
pub unsafe fn IoCompleteRequest(irp: *mut IRP, boost: CCHAR) {
    // SAFETY: forwarded contract.
    unsafe { IofCompleteRequest(irp, boost) }
}
