//! Run-time library and system services: `RtlInitUnicodeString`, `MmGetSystemRoutineAddress`,
//! `RtlIsNtDdiVersionAvailable`, `KeQueryInterruptTime`.

use wsk_sys::{BOOLEAN, DISPATCH_LEVEL, PASSIVE_LEVEL, PVOID, ULONG, ULONGLONG, UNICODE_STRING, WCHAR};

use crate::irql;
use crate::time;

/// `RtlInitUnicodeString`: `DestinationString` over the NUL-terminated `SourceString` (or
/// empty when null). Lengths saturate at the largest even `USHORT`. IRQL <= DISPATCH_LEVEL.
///
/// # Safety
/// `DestinationString` must be writable; `SourceString` null or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn RtlInitUnicodeString(DestinationString: *mut UNICODE_STRING, SourceString: *const WCHAR) {
    irql::check_max("RtlInitUnicodeString", DISPATCH_LEVEL);
    let mut length = 0usize;
    if !SourceString.is_null() {
        // SAFETY: the caller guarantees a NUL-terminated string.
        while unsafe { SourceString.wrapping_add(length).read() } != 0 {
            length += 1;
        }
    }
    let bytes = (length * 2).min(0xFFFC);
    let string = if SourceString.is_null() {
        UNICODE_STRING::empty()
    } else {
        UNICODE_STRING { Length: bytes as u16, MaximumLength: bytes as u16 + 2, Buffer: SourceString.cast_mut() }
    };
    // SAFETY: the caller guarantees `DestinationString` is writable.
    unsafe { DestinationString.write(string) };
}

/// `RtlIsNtDdiVersionAvailable`: the emulated kernel is Windows 10 (`NTDDI_WIN10` and its
/// updates), so every version before Windows 11's numbering is available. IRQL ==
/// PASSIVE_LEVEL.
#[unsafe(no_mangle)]
pub extern "system" fn RtlIsNtDdiVersionAvailable(Version: ULONG) -> BOOLEAN {
    irql::check_max("RtlIsNtDdiVersionAvailable", PASSIVE_LEVEL);
    BOOLEAN::from(Version < 0x0B00_0000)
}

/// `KeQueryInterruptTime`: 100 ns units since the emulator started. Any IRQL.
#[unsafe(no_mangle)]
pub extern "system" fn KeQueryInterruptTime() -> ULONGLONG {
    time::interrupt_time()
}

/// The text of a counted UTF-16 string.
///
/// # Safety
/// `string` must be null or point to a `UNICODE_STRING` whose buffer holds `Length` bytes.
pub(crate) unsafe fn unicode_to_string(string: *const UNICODE_STRING) -> Option<String> {
    if string.is_null() {
        return None;
    }
    // SAFETY: forwarded contract.
    let string = unsafe { &*string };
    if string.Buffer.is_null() {
        return Some(String::new());
    }
    // SAFETY: forwarded contract: `Length` bytes of UTF-16 at `Buffer`.
    let units = unsafe { std::slice::from_raw_parts(string.Buffer, usize::from(string.Length) / 2) };
    Some(String::from_utf16_lossy(units))
}

macro_rules! exports {
    ($($name:ident),* $(,)?) => {
        /// Names of every routine the emulator exports (the sys ABI, `ExAllocatePool2`,
        /// `DbgPrint`/`DbgPrintEx` and `WskEmuGetCurrentIrql`).
        pub const EXPORTS: &[&str] = &[$(stringify!($name),)* "DbgPrint", "DbgPrintEx"];

        /// The address of the exported routine `name`.
        fn routine_address(name: &str) -> Option<usize> {
            use crate::exports::*;
            match name {
                $(stringify!($name) => Some($name as *const () as usize),)*
                _ => None,
            }
        }
    };
}

exports! {
    ExAllocatePool2, ExAllocatePoolWithTag, ExFreePoolWithTag, ExFreePool, MmGetSystemRoutineAddress,
    IoAllocateIrp, IoInitializeIrp, IoReuseIrp, IoFreeIrp, IoCancelIrp, IofCompleteRequest,
    IoAcquireCancelSpinLock, IoReleaseCancelSpinLock, IoSetCompletionRoutineEx,
    IoAllocateMdl, IoFreeMdl, MmBuildMdlForNonPagedPool, MmMapLockedPagesSpecifyCache, MmUnmapLockedPages,
    IoBuildPartialMdl,
    IoAllocateWorkItem, IoQueueWorkItem, IoFreeWorkItem,
    KeInitializeEvent, KeSetEvent, KeClearEvent, KeResetEvent, KeReadStateEvent, KeWaitForSingleObject,
    KeDelayExecutionThread,
    KeInitializeTimerEx, KeSetTimerEx, KeCancelTimer, KeReadStateTimer,
    KeInitializeDpc, KeInsertQueueDpc, KeRemoveQueueDpc, KeFlushQueuedDpcs, KeQueryInterruptTime,
    ExInitializeRundownProtection, ExReInitializeRundownProtection, ExAcquireRundownProtection,
    ExReleaseRundownProtection, ExWaitForRundownProtectionRelease, ExRundownCompleted,
    ZwOpenKey, ZwQueryValueKey, ZwClose, RtlInitUnicodeString, RtlIsNtDdiVersionAvailable, KeBugCheckEx,
    WskRegister, WskDeregister, WskCaptureProviderNPI, WskReleaseProviderNPI,
    WskEmuGetCurrentIrql,
}

/// Whether `symbol` names an exported routine (frames to skip in allocation sites).
pub(crate) fn is_export_name(symbol: &str) -> bool {
    EXPORTS.contains(&symbol)
}

/// `MmGetSystemRoutineAddress`: the address of an exported routine by name (every routine the
/// emulator defines, `ExAllocatePool2` included), or null. IRQL == PASSIVE_LEVEL.
///
/// # Safety
/// `SystemRoutineName` must point to a valid `UNICODE_STRING`.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn MmGetSystemRoutineAddress(SystemRoutineName: *mut UNICODE_STRING) -> PVOID {
    irql::check_max("MmGetSystemRoutineAddress", PASSIVE_LEVEL);
    // SAFETY: forwarded contract.
    let Some(name) = (unsafe { unicode_to_string(SystemRoutineName) }) else {
        return std::ptr::null_mut();
    };
    let address = match name.as_str() {
        "DbgPrint" => crate::exports::DbgPrint as *const () as usize,
        "DbgPrintEx" => crate::exports::DbgPrintEx as *const () as usize,
        other => routine_address(other).unwrap_or(0),
    };
    address as PVOID
}
