//! The verifier's rules and the stop codes they are reported with.

use std::fmt;

macro_rules! rules {
    ($( $(#[$doc:meta])* $variant:ident = ($code:expr, $param1:expr, $name:literal); )*) => {
        /// A verifier rule. Its [`name`](Rule::name) appears in every message about it.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum Rule {
            $( $(#[$doc])* $variant, )*
        }

        impl Rule {
            /// Every rule.
            pub const ALL: &'static [Rule] = &[$(Rule::$variant,)*];

            /// The rule's name, e.g. `IRP_FREED_TWICE`.
            pub const fn name(self) -> &'static str {
                match self { $(Rule::$variant => $name,)* }
            }

            /// The stop code a violation of this rule is reported with.
            pub const fn code(self) -> u32 {
                match self { $(Rule::$variant => $code,)* }
            }

            /// The first bugcheck parameter (Driver Verifier's subcode where one matches, else 0).
            pub const fn parameter1(self) -> u64 {
                match self { $(Rule::$variant => $param1,)* }
            }
        }
    };
}

/// Stop codes used by the rules.
pub mod codes {
    /// 0x35: an IRP was passed on with no stack location left.
    pub const NO_MORE_IRP_STACK_LOCATIONS: u32 = 0x35;
    /// 0x44: an IRP was completed a second time.
    pub const MULTIPLE_IRP_COMPLETE_REQUESTS: u32 = 0x44;
    /// 0x48: an IRP was completed with a cancel routine still set.
    pub const CANCEL_STATE_IN_COMPLETED_IRP: u32 = 0x48;
    /// 0x93: a handle that is not open was used or closed.
    pub const INVALID_KERNEL_HANDLE: u32 = 0x93;
    /// 0xB8: a thread blocked (switched away) at DISPATCH_LEVEL.
    pub const ATTEMPTED_SWITCH_FROM_DPC: u32 = 0xB8;
    /// 0xC1: special pool found its guard bytes overwritten (overrun, write after free).
    pub const SPECIAL_POOL_DETECTED_MEMORY_CORRUPTION: u32 = 0xC1;
    /// 0xC2: a pool routine was called with bad arguments (type, tag, address, double free).
    pub const BAD_POOL_CALLER: u32 = 0xC2;
    /// 0xC4: the general Driver Verifier violation; parameter 1 names the check.
    pub const DRIVER_VERIFIER_DETECTED_VIOLATION: u32 = 0xC4;
    /// 0xC7: a timer or DPC object is invalid or lives in freed pool.
    pub const TIMER_OR_DPC_INVALID: u32 = 0xC7;
    /// 0xC9: the I/O manager checks (IRP allocation, completion and ownership).
    pub const DRIVER_VERIFIER_IOMANAGER_VIOLATION: u32 = 0xC9;
    /// 0xCC: freed special pool was referenced.
    pub const PAGE_FAULT_IN_FREED_SPECIAL_POOL: u32 = 0xCC;
    /// 0xCE: the driver unloaded with work items, timers or DPCs still pending.
    pub const DRIVER_UNLOADED_WITHOUT_CANCELLING_PENDING_OPERATIONS: u32 = 0xCE;
    /// 0xD1: a routine was called above the highest IRQL it allows, or waited at DISPATCH_LEVEL.
    pub const DRIVER_IRQL_NOT_LESS_OR_EQUAL: u32 = 0xD1;
    /// 0xE4: a work item was misused (bad pointer, queued twice, freed while queued).
    pub const WORKER_INVALID: u32 = 0xE4;
    /// 0xE2: the driver called `KeBugCheckEx` itself.
    pub const MANUALLY_INITIATED_CRASH: u32 = 0xE2;

    /// The symbolic name of a stop code.
    pub const fn name(code: u32) -> &'static str {
        match code {
            NO_MORE_IRP_STACK_LOCATIONS => "NO_MORE_IRP_STACK_LOCATIONS",
            MULTIPLE_IRP_COMPLETE_REQUESTS => "MULTIPLE_IRP_COMPLETE_REQUESTS",
            CANCEL_STATE_IN_COMPLETED_IRP => "CANCEL_STATE_IN_COMPLETED_IRP",
            INVALID_KERNEL_HANDLE => "INVALID_KERNEL_HANDLE",
            ATTEMPTED_SWITCH_FROM_DPC => "ATTEMPTED_SWITCH_FROM_DPC",
            SPECIAL_POOL_DETECTED_MEMORY_CORRUPTION => "SPECIAL_POOL_DETECTED_MEMORY_CORRUPTION",
            BAD_POOL_CALLER => "BAD_POOL_CALLER",
            DRIVER_VERIFIER_DETECTED_VIOLATION => "DRIVER_VERIFIER_DETECTED_VIOLATION",
            TIMER_OR_DPC_INVALID => "TIMER_OR_DPC_INVALID",
            DRIVER_VERIFIER_IOMANAGER_VIOLATION => "DRIVER_VERIFIER_IOMANAGER_VIOLATION",
            PAGE_FAULT_IN_FREED_SPECIAL_POOL => "PAGE_FAULT_IN_FREED_SPECIAL_POOL",
            DRIVER_UNLOADED_WITHOUT_CANCELLING_PENDING_OPERATIONS => {
                "DRIVER_UNLOADED_WITHOUT_CANCELLING_PENDING_OPERATIONS"
            }
            DRIVER_IRQL_NOT_LESS_OR_EQUAL => "DRIVER_IRQL_NOT_LESS_OR_EQUAL",
            WORKER_INVALID => "WORKER_INVALID",
            MANUALLY_INITIATED_CRASH => "MANUALLY_INITIATED_CRASH",
            _ => "UNKNOWN_BUGCHECK",
        }
    }
}

use codes::*;

rules! {
    // ---- pool ----
    /// A pool allocation of zero bytes.
    PoolZeroSize = (DRIVER_VERIFIER_DETECTED_VIOLATION, 0x00, "POOL_ZERO_SIZE_ALLOCATION");
    /// Paged pool allocated or freed above APC_LEVEL.
    PoolPagedAtDispatch = (DRIVER_VERIFIER_DETECTED_VIOLATION, 0x01, "PAGED_POOL_ABOVE_APC_LEVEL");
    /// A pool type or `POOL_FLAGS` combination the routine does not accept.
    PoolBadType = (BAD_POOL_CALLER, 0x99, "POOL_INVALID_TYPE");
    /// A pool allocation with tag 0.
    PoolZeroTag = (BAD_POOL_CALLER, 0x9B, "POOL_ZERO_TAG");
    /// `ExFreePool*` on an address that no pool allocation returned.
    PoolFreeBadAddress = (BAD_POOL_CALLER, 0x46, "POOL_FREE_INVALID_ADDRESS");
    /// `ExFreePool*` on an allocation already freed.
    PoolDoubleFree = (BAD_POOL_CALLER, 0x07, "POOL_FREED_TWICE");
    /// `ExFreePoolWithTag` with a tag other than the allocation's.
    PoolTagMismatch = (BAD_POOL_CALLER, 0x0A, "POOL_TAG_MISMATCH");
    /// `ExFreePool*` on an IRP, MDL or work item (each has its own free routine).
    PoolFreeWrongRoutine = (BAD_POOL_CALLER, 0x48, "POOL_FREE_WRONG_ROUTINE");
    /// Bytes past the end of an allocation were overwritten (checked at free).
    PoolOverrun = (SPECIAL_POOL_DETECTED_MEMORY_CORRUPTION, 0x20, "POOL_BUFFER_OVERRUN");
    /// Freed (poisoned) memory was written to.
    PoolWriteAfterFree = (SPECIAL_POOL_DETECTED_MEMORY_CORRUPTION, 0x30, "POOL_WRITE_AFTER_FREE");
    /// Pool still allocated when the driver unloaded.
    PoolLeak = (DRIVER_VERIFIER_DETECTED_VIOLATION, 0x62, "POOL_LEAKED_AT_UNLOAD");
    // ---- IRQL ----
    /// A routine called above its documented maximum IRQL.
    IrqlTooHigh = (DRIVER_IRQL_NOT_LESS_OR_EQUAL, 0, "IRQL_TOO_HIGH_FOR_ROUTINE");
    /// A wait with a non-zero (or no) timeout at DISPATCH_LEVEL.
    WaitAtDispatch = (DRIVER_IRQL_NOT_LESS_OR_EQUAL, 1, "WAIT_AT_DISPATCH_LEVEL");
    /// A thread blocked (slept on a lock, a condition variable, a timer or I/O) at
    /// DISPATCH_LEVEL or above, or an emulator wait or [`assert_may_block`] was entered there.
    /// Reported with the thread's name and how long it was off the CPU; see the `irql` module
    /// docs for how blocking is told from preemption.
    ///
    /// [`assert_may_block`]: crate::assert_may_block
    BlockedAtDispatch = (ATTEMPTED_SWITCH_FROM_DPC, 0, "BLOCKED_AT_DISPATCH_LEVEL");
    /// A DPC, work item, completion or cancel routine returned at another IRQL than it was called at.
    IrqlNotRestored = (DRIVER_VERIFIER_DETECTED_VIOLATION, 0x32, "IRQL_NOT_RESTORED");
    // ---- IRPs ----
    /// An IRP routine was given something that is not a live IRP.
    IrpBadPointer = (DRIVER_VERIFIER_IOMANAGER_VIOLATION, 0x01, "IRP_INVALID_POINTER");
    /// `IoFreeIrp` on an IRP already freed.
    IrpDoubleFree = (DRIVER_VERIFIER_IOMANAGER_VIOLATION, 0x02, "IRP_FREED_TWICE");
    /// An IRP used (reused, cancelled, passed down) after it was freed.
    IrpUseAfterFree = (DRIVER_VERIFIER_IOMANAGER_VIOLATION, 0x03, "IRP_USED_AFTER_FREE");
    /// `IoFreeIrp` on an IRP a provider (lower driver) still owns.
    IrpFreedWhileOwnedByProvider = (DRIVER_VERIFIER_IOMANAGER_VIOLATION, 0x04, "IRP_FREED_WHILE_OWNED_BY_PROVIDER");
    /// `IoReuseIrp` / `IoInitializeIrp` on, or a second submission of, an IRP a provider owns.
    IrpReusedWhileOwnedByProvider = (DRIVER_VERIFIER_IOMANAGER_VIOLATION, 0x05, "IRP_REUSED_WHILE_OWNED_BY_PROVIDER");
    /// An IRP completed twice.
    IrpCompletedTwice = (MULTIPLE_IRP_COMPLETE_REQUESTS, 0, "IRP_COMPLETED_TWICE");
    /// `IoCompleteRequest` with `STATUS_PENDING`.
    IrpCompletedWithPending = (DRIVER_VERIFIER_IOMANAGER_VIOLATION, 0x06, "IRP_COMPLETED_WITH_STATUS_PENDING");
    /// An IRP completed while a cancel routine was still set.
    IrpCompletedWithCancelRoutine = (CANCEL_STATE_IN_COMPLETED_IRP, 0, "IRP_COMPLETED_WITH_CANCEL_ROUTINE");
    /// A completion routine returned something other than `STATUS_MORE_PROCESSING_REQUIRED`
    /// for a driver-allocated IRP (so the I/O manager finished it) that the driver then freed
    /// or reused.
    CompletionRoutineDidNotReturnMoreProcessing = (DRIVER_VERIFIER_IOMANAGER_VIOLATION, 0x07, "COMPLETION_ROUTINE_DID_NOT_RETURN_MORE_PROCESSING_REQUIRED");
    /// An IRP passed down with no stack location left for the provider.
    IrpNoStackLocation = (NO_MORE_IRP_STACK_LOCATIONS, 0, "IRP_NO_MORE_STACK_LOCATIONS");
    /// `IoInitializeIrp` with a packet too small for its stack locations.
    IrpInitializeTooSmall = (DRIVER_VERIFIER_IOMANAGER_VIOLATION, 0x08, "IRP_INITIALIZE_PACKET_TOO_SMALL");
    /// An IRP still allocated when the driver unloaded.
    IrpLeak = (DRIVER_VERIFIER_IOMANAGER_VIOLATION, 0x09, "IRP_LEAKED_AT_UNLOAD");
    // ---- MDLs ----
    /// `IoFreeMdl` / `MmBuildMdlForNonPagedPool` on something that is not a live MDL.
    MdlBadPointer = (DRIVER_VERIFIER_DETECTED_VIOLATION, 0x70, "MDL_INVALID_POINTER");
    /// `IoFreeMdl` on an MDL already freed.
    MdlDoubleFree = (DRIVER_VERIFIER_DETECTED_VIOLATION, 0x71, "MDL_FREED_TWICE");
    /// `MmBuildMdlForNonPagedPool` over paged pool.
    MdlForPagedPool = (DRIVER_VERIFIER_DETECTED_VIOLATION, 0x72, "MDL_BUILT_FOR_PAGED_POOL");
    /// An MDL built over freed pool.
    MdlForFreedPool = (PAGE_FAULT_IN_FREED_SPECIAL_POOL, 0, "MDL_BUILT_FOR_FREED_POOL");
    /// An MDL reaching past the end of the pool allocation it describes.
    MdlBeyondAllocation = (DRIVER_VERIFIER_DETECTED_VIOLATION, 0x73, "MDL_BEYOND_ALLOCATION");
    /// An MDL mapped (`MmMapLockedPagesSpecifyCache`) that describes no locked or non-paged pages.
    MdlNotLocked = (DRIVER_VERIFIER_DETECTED_VIOLATION, 0x74, "MDL_PAGES_NOT_LOCKED");
    /// `IoBuildPartialMdl` of a range outside the source MDL's buffer, or into a target MDL
    /// too small for its pages.
    MdlPartialOutOfRange = (DRIVER_VERIFIER_DETECTED_VIOLATION, 0x75, "MDL_PARTIAL_OUT_OF_RANGE");
    /// An MDL still allocated when the driver unloaded.
    MdlLeak = (DRIVER_VERIFIER_DETECTED_VIOLATION, 0x62, "MDL_LEAKED_AT_UNLOAD");
    // ---- work items ----
    /// `IoAllocateWorkItem` without a driver or device object.
    WorkItemBadObject = (DRIVER_VERIFIER_DETECTED_VIOLATION, 0x80, "WORK_ITEM_INVALID_OBJECT");
    /// A work item routine given something that is not a live work item.
    WorkItemBadPointer = (WORKER_INVALID, 0x01, "WORK_ITEM_INVALID_POINTER");
    /// `IoQueueWorkItem` on a work item already queued.
    WorkItemQueuedTwice = (WORKER_INVALID, 0x02, "WORK_ITEM_QUEUED_TWICE");
    /// `IoFreeWorkItem` on a queued work item.
    WorkItemFreedWhileQueued = (WORKER_INVALID, 0x03, "WORK_ITEM_FREED_WHILE_QUEUED");
    /// A work item still allocated when the driver unloaded.
    WorkItemLeak = (DRIVER_VERIFIER_DETECTED_VIOLATION, 0x62, "WORK_ITEM_LEAKED_AT_UNLOAD");
    /// A work item still queued or running when the unload wait gave up.
    WorkItemPendingAtUnload = (DRIVER_UNLOADED_WITHOUT_CANCELLING_PENDING_OPERATIONS, 1, "WORK_ITEM_PENDING_AT_UNLOAD");
    // ---- dispatcher objects, timers, DPCs ----
    /// A wait, set or clear on something that is not an initialized event or timer.
    InvalidDispatcherObject = (DRIVER_VERIFIER_DETECTED_VIOLATION, 0x90, "INVALID_DISPATCHER_OBJECT");
    /// A timer routine on a timer not initialized with `KeInitializeTimerEx`, or a timer
    /// re-initialized while set.
    TimerInvalid = (TIMER_OR_DPC_INVALID, 1, "TIMER_INVALID");
    /// A DPC routine on a DPC not initialized with `KeInitializeDpc`.
    DpcInvalid = (TIMER_OR_DPC_INVALID, 2, "DPC_INVALID");
    /// Pool freed while it holds a set timer or a queued DPC.
    TimerOrDpcInFreedPool = (TIMER_OR_DPC_INVALID, 0, "TIMER_OR_DPC_IN_FREED_POOL");
    /// A timer still set when the driver unloaded.
    TimerPendingAtUnload = (DRIVER_UNLOADED_WITHOUT_CANCELLING_PENDING_OPERATIONS, 2, "TIMER_PENDING_AT_UNLOAD");
    /// A DPC still queued or running when the driver unloaded.
    DpcPendingAtUnload = (DRIVER_UNLOADED_WITHOUT_CANCELLING_PENDING_OPERATIONS, 3, "DPC_PENDING_AT_UNLOAD");
    // ---- locks and rundown ----
    /// The cancel spin lock acquired by the thread that already holds it.
    SpinLockRecursion = (DRIVER_VERIFIER_DETECTED_VIOLATION, 0x3A, "SPIN_LOCK_ACQUIRED_RECURSIVELY");
    /// The cancel spin lock released by a thread that does not hold it.
    SpinLockNotOwned = (DRIVER_VERIFIER_DETECTED_VIOLATION, 0x3B, "SPIN_LOCK_RELEASED_BY_NON_OWNER");
    /// A callback returned still holding the cancel spin lock.
    SpinLockHeldOnReturn = (DRIVER_VERIFIER_DETECTED_VIOLATION, 0x3C, "SPIN_LOCK_HELD_ON_RETURN");
    /// `ExReleaseRundownProtection` without a matching acquire.
    RundownReleaseWithoutAcquire = (DRIVER_VERIFIER_DETECTED_VIOLATION, 0xA0, "RUNDOWN_RELEASE_WITHOUT_ACQUIRE");
    // ---- handles and registry ----
    /// `ZwClose` / `ZwQueryValueKey` on a handle that is not open.
    InvalidHandle = (INVALID_KERNEL_HANDLE, 0, "INVALID_KERNEL_HANDLE");
    /// A handle still open when the driver unloaded.
    HandleLeak = (DRIVER_VERIFIER_DETECTED_VIOLATION, 0x63, "HANDLE_LEAKED_AT_UNLOAD");
    // ---- debug output ----
    /// `DbgPrint` with a Unicode format (`%wZ`, `%ws`, `%S`, `%C`, `%wc`) above PASSIVE_LEVEL.
    DbgPrintUnicodeAbovePassive = (DRIVER_VERIFIER_DETECTED_VIOLATION, 0xB0, "DBGPRINT_UNICODE_ABOVE_PASSIVE_LEVEL");
    // ---- bugchecks the driver asks for ----
    /// The driver called `KeBugCheckEx` (the report carries the driver's code and parameter).
    DriverBugCheck = (MANUALLY_INITIATED_CRASH, 0, "DRIVER_CALLED_KEBUGCHECKEX");
    // ---- WSK ----
    /// A WSK routine given a registration block `WskRegister` did not initialize.
    WskBadRegistration = (DRIVER_VERIFIER_DETECTED_VIOLATION, 0xC0, "WSK_INVALID_REGISTRATION");
    /// `WskDeregister` gave up waiting for captured provider NPIs to be released.
    WskDeregisterWithCapturedNpi = (DRIVER_VERIFIER_DETECTED_VIOLATION, 0xC1, "WSK_DEREGISTER_WITH_CAPTURED_NPI");
    /// A WSK registration still active when the driver unloaded.
    WskRegistrationLeak = (DRIVER_VERIFIER_DETECTED_VIOLATION, 0xC2, "WSK_REGISTRATION_LEAKED_AT_UNLOAD");
    /// A socket routine given something that is not a socket the provider created, or a
    /// socket of another kind than the routine's dispatch table.
    WskInvalidSocket = (DRIVER_VERIFIER_DETECTED_VIOLATION, 0xC3, "WSK_INVALID_SOCKET");
    /// A call into a socket after `WskCloseSocket` was issued for it (a second close included).
    WskSocketUsedAfterClose = (DRIVER_VERIFIER_DETECTED_VIOLATION, 0xC4, "WSK_SOCKET_USED_AFTER_CLOSE");
    /// `WskCloseSocket` issued while another call into the same socket was still executing.
    WskCloseWithCallInProgress = (DRIVER_VERIFIER_DETECTED_VIOLATION, 0xC5, "WSK_CLOSE_WITH_CALL_IN_PROGRESS");
    /// A `WSK_BUF` whose `Offset + Length` reaches past the end of its MDL chain.
    WskBufferBeyondMdl = (DRIVER_VERIFIER_DETECTED_VIOLATION, 0xC6, "WSK_BUF_BEYOND_MDL");
    /// A WSK socket still open (never closed) when the driver unloaded.
    WskSocketLeak = (DRIVER_VERIFIER_DETECTED_VIOLATION, 0xC7, "WSK_SOCKET_LEAKED_AT_UNLOAD");
    /// An `ADDRINFOEXW` chain from `WskGetAddressInfo` not freed when the driver unloaded.
    WskAddressInfoLeak = (DRIVER_VERIFIER_DETECTED_VIOLATION, 0xC8, "WSK_ADDRESS_INFO_LEAKED_AT_UNLOAD");
    /// `WskFreeAddressInfo` on something `WskGetAddressInfo` did not return (or freed twice).
    WskBadAddressInfo = (DRIVER_VERIFIER_DETECTED_VIOLATION, 0xC9, "WSK_INVALID_ADDRESS_INFO");
    /// `WskDeregister` gave up waiting for the client's sockets to be closed.
    WskDeregisterWithOpenSockets = (DRIVER_VERIFIER_DETECTED_VIOLATION, 0xCA, "WSK_DEREGISTER_WITH_OPEN_SOCKETS");
    /// `WskRelease` of an indication chain the socket does not hold for the client: released
    /// already, or never indicated on that socket.
    WskIndicationReleasedTwice = (DRIVER_VERIFIER_DETECTED_VIOLATION, 0xCB, "WSK_INDICATION_RELEASED_TWICE");
    /// An indication retained (`STATUS_PENDING` from the callback) and not released when the
    /// socket's close completed.
    WskIndicationHeldAtClose = (DRIVER_VERIFIER_DETECTED_VIOLATION, 0xCC, "WSK_INDICATION_HELD_AT_CLOSE");
    /// The driver read or wrote indication memory (structures, MDLs or data) after giving it
    /// back. Reported from the page fault, which stops the process.
    WskIndicationTouchedAfterRelease = (DRIVER_VERIFIER_DETECTED_VIOLATION, 0xCD, "WSK_INDICATION_TOUCHED_AFTER_RELEASE");
    /// `WskReceiveFrom` given a control buffer size (`*ControlLength` > 0) without a
    /// `ControlInfo` buffer: the provider would write control information through a null pointer.
    WskControlInfoMissing = (DRIVER_VERIFIER_DETECTED_VIOLATION, 0xCE, "WSK_CONTROL_INFO_MISSING");
    /// `WskInspectComplete` with an inspect ID the listening socket has no pended inspection
    /// for: never handed out, completed already, or of another socket. (An inspection the
    /// provider aborted, `WskAbortEvent`, may still be completed once: Microsoft documents it.)
    WskInspectIdUnknown = (DRIVER_VERIFIER_DETECTED_VIOLATION, 0xCF, "WSK_INSPECT_ID_UNKNOWN");
    /// An inspect action that is not one of the documented ones: `WskInspectEvent` returning
    /// anything but `WskInspectAccept`, `WskInspectReject` or `WskInspectPend`, or
    /// `WskInspectComplete` given anything but `WskInspectAccept` or `WskInspectReject`.
    WskInvalidInspectAction = (DRIVER_VERIFIER_DETECTED_VIOLATION, 0xD0, "WSK_INVALID_INSPECT_ACTION");
    /// A conditional-accept listening socket closed while inspections the driver pended were
    /// never completed with `WskInspectComplete` (the provider refuses those connections).
    WskInspectionPendingAtClose = (DRIVER_VERIFIER_DETECTED_VIOLATION, 0xD1, "WSK_INSPECTION_PENDING_AT_CLOSE");
    /// `SO_CONDITIONAL_ACCEPT` set on a listening socket after it was bound: Microsoft
    /// documents that it must be set before.
    WskConditionalAcceptAfterBind = (DRIVER_VERIFIER_DETECTED_VIOLATION, 0xD2, "WSK_CONDITIONAL_ACCEPT_AFTER_BIND");
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
