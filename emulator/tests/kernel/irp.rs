//! IRP routines, the completion walk, cancellation, and the I/O verification rules.

use std::mem::size_of;
use std::ptr;
use std::sync::atomic::{AtomicI32, AtomicU8, AtomicU32, AtomicUsize, Ordering};

use wsk_emulator::{LeakKind, Rule, provider, with_irql};
use wsk_sys::*;

use crate::common::{PATIENCE, TAG, attach, eventually, submitted_irp};

/// What a completion routine saw.
struct Probe {
    calls: AtomicU32,
    irql: AtomicU8,
    device: AtomicUsize,
    pending_returned: AtomicU8,
    status: AtomicI32,
    returns: AtomicI32,
}

impl Probe {
    fn new(returns: NTSTATUS) -> Self {
        Self {
            calls: AtomicU32::new(0),
            irql: AtomicU8::new(0xFF),
            device: AtomicUsize::new(usize::MAX),
            pending_returned: AtomicU8::new(0xFF),
            status: AtomicI32::new(0),
            returns: AtomicI32::new(returns),
        }
    }

    fn context(&self) -> PVOID {
        ptr::from_ref::<Probe>(self).cast_mut().cast()
    }

    fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }
}

unsafe extern "system" fn probe_routine(device: *mut DEVICE_OBJECT, irp: *mut IRP, context: PVOID) -> NTSTATUS {
    let probe = unsafe { &*context.cast::<Probe>() };
    probe.irql.store(KeGetCurrentIrql(), Ordering::SeqCst);
    probe.device.store(device as usize, Ordering::SeqCst);
    probe.pending_returned.store(unsafe { (*irp).PendingReturned }, Ordering::SeqCst);
    probe.status.store(unsafe { (*irp).IoStatus.Status }, Ordering::SeqCst);
    probe.calls.fetch_add(1, Ordering::SeqCst);
    probe.returns.load(Ordering::SeqCst)
}

fn set_probe(irp: *mut IRP, probe: &Probe, success: bool, error: bool, cancel: bool) {
    unsafe { IoSetCompletionRoutine(irp, Some(probe_routine), probe.context(), success, error, cancel) };
}

/// A one-location IRP whose completion `probe` records (on every outcome), taken by the
/// provider.
unsafe fn probed_irp(probe: &Probe) -> *mut IRP {
    unsafe { submitted_irp(probe_routine, probe.context()) }
}

#[test]
fn allocate_irp_has_the_kernel_layout() {
    let driver = attach();
    unsafe {
        let irp = IoAllocateIrp(3, FALSE);
        assert!(!irp.is_null());
        assert_eq!((*irp).Type, IO_TYPE_IRP);
        assert_eq!(usize::from((*irp).Size), IoSizeOfIrp(3));
        assert_eq!((*irp).StackCount, 3);
        assert_eq!((*irp).CurrentLocation, 4);
        let first = irp.cast::<u8>().add(size_of::<IRP>()).cast::<IO_STACK_LOCATION>();
        assert_eq!(IoGetCurrentIrpStackLocation(irp), first.add(3), "one past the last location");
        assert_eq!(IoGetNextIrpStackLocation(irp), first.add(2));
        assert!((*irp).MdlAddress.is_null() && (*irp).CancelRoutine.is_none() && (*irp).Cancel == 0);
        IoFreeIrp(irp);
        assert!(IoAllocateIrp(-1, FALSE).is_null());
        assert_eq!(driver.counters().irp_allocations, 1);
        assert_eq!(driver.counters().irp_frees, 1);
    }
    driver.unload().assert_clean();
}

#[test]
fn provider_completion_runs_the_routine_at_dispatch_and_returns_the_irp() {
    let driver = attach();
    let probe = Probe::new(STATUS_MORE_PROCESSING_REQUIRED);
    unsafe {
        let irp = probed_irp(&probe);
        assert_eq!((*irp).CurrentLocation, 1);
        provider::complete(irp, STATUS_SUCCESS, 42);
        assert_eq!(probe.calls(), 1);
        assert_eq!(probe.irql.load(Ordering::SeqCst), DISPATCH_LEVEL);
        assert_eq!(probe.device.load(Ordering::SeqCst), 0, "no stack location of the driver's own");
        assert_eq!(probe.pending_returned.load(Ordering::SeqCst), 0);
        assert_eq!((*irp).IoStatus.Information, 42);
        assert_eq!(KeGetCurrentIrql(), PASSIVE_LEVEL, "the completer's IRQL is restored");
        // Reuse for a second request.
        IoReuseIrp(irp, STATUS_NOT_SUPPORTED);
        assert_eq!((*irp).CurrentLocation, 2);
        assert_eq!((*irp).IoStatus.Status, STATUS_NOT_SUPPORTED);
        set_probe(irp, &probe, true, true, true);
        provider::accept(irp).unwrap();
        provider::complete(irp, STATUS_CONNECTION_RESET, 0);
        assert_eq!(probe.calls(), 2);
        assert_eq!(probe.status.load(Ordering::SeqCst), STATUS_CONNECTION_RESET);
        IoFreeIrp(irp);
    }
    driver.unload().assert_clean();
}

struct Completion {
    event: KEVENT,
    probe: Probe,
}

unsafe extern "system" fn signal_routine(device: *mut DEVICE_OBJECT, irp: *mut IRP, context: PVOID) -> NTSTATUS {
    let completion = context.cast::<Completion>();
    let status = unsafe { probe_routine(device, irp, (&raw mut (*completion).probe).cast()) };
    unsafe { KeSetEvent(&raw mut (*completion).event, IO_NO_INCREMENT, FALSE) };
    status
}

#[test]
fn pending_irp_completed_from_another_thread() {
    let driver = attach();
    let mut completion = Box::new(Completion {
        event: unsafe { std::mem::zeroed() },
        probe: Probe::new(STATUS_MORE_PROCESSING_REQUIRED),
    });
    unsafe {
        KeInitializeEvent(&raw mut completion.event, NotificationEvent, FALSE);
        let irp = submitted_irp(signal_routine, (&raw mut *completion).cast());
        provider::mark_pending(irp);
        let irp_address = irp as usize;
        let completer = std::thread::spawn(move || provider::complete(irp_address as *mut IRP, STATUS_SUCCESS, 7));
        let mut timeout = -(PATIENCE.as_nanos() as i64 / 100);
        let status =
            KeWaitForSingleObject((&raw mut completion.event).cast(), Executive, KernelMode, FALSE, &raw mut timeout);
        assert_eq!(status, STATUS_SUCCESS);
        completer.join().unwrap();
        assert_eq!(
            completion.probe.pending_returned.load(Ordering::SeqCst),
            1,
            "SL_PENDING_RETURNED becomes PendingReturned"
        );
        assert_eq!(completion.probe.irql.load(Ordering::SeqCst), DISPATCH_LEVEL);
        assert_eq!((*irp).IoStatus.Information, 7);
        IoFreeIrp(irp);
    }
    driver.unload().assert_clean();
}

/// A two-location IRP: the driver's own location (top) holds a catch-all routine returning
/// STATUS_MORE_PROCESSING_REQUIRED, the provider's location holds `inner`'s routine.
unsafe fn layered_irp(
    outer: &Probe,
    inner: Option<(&Probe, bool, bool, bool)>,
    device: *mut DEVICE_OBJECT,
) -> *mut IRP {
    unsafe {
        let irp = IoAllocateIrp(2, FALSE);
        set_probe(irp, outer, true, true, true);
        IoSetNextIrpStackLocation(irp);
        (*IoGetCurrentIrpStackLocation(irp)).DeviceObject = device;
        if let Some((probe, success, error, cancel)) = inner {
            set_probe(irp, probe, success, error, cancel);
        }
        irp
    }
}

#[test]
fn invoke_flags_select_which_routines_run() {
    let driver = attach();
    let device = 0x1234_5670usize as *mut DEVICE_OBJECT;
    // (success, error, cancel), final status, Irp->Cancel, should the inner routine run?
    type Flags = (bool, bool, bool);
    let cases: [(Flags, NTSTATUS, bool, bool); 7] = [
        ((true, false, false), STATUS_SUCCESS, false, true),
        ((true, false, false), STATUS_UNSUCCESSFUL, false, false),
        ((false, true, false), STATUS_UNSUCCESSFUL, false, true),
        ((false, true, false), STATUS_SUCCESS, false, false),
        ((false, false, true), STATUS_CANCELLED, true, true),
        ((false, false, true), STATUS_CANCELLED, false, false),
        ((false, false, true), STATUS_UNSUCCESSFUL, true, false),
    ];
    for ((success, error, cancel), status, cancelled, invoked) in cases {
        let outer = Probe::new(STATUS_MORE_PROCESSING_REQUIRED);
        let inner = Probe::new(STATUS_SUCCESS);
        unsafe {
            let irp = layered_irp(&outer, Some((&inner, success, error, cancel)), device);
            (*irp).Cancel = u8::from(cancelled);
            provider::accept(irp).unwrap();
            provider::complete(irp, status, 0);
            assert_eq!(
                inner.calls(),
                u32::from(invoked),
                "flags {success}/{error}/{cancel}, status {status:x}, cancel {cancelled}"
            );
            if invoked {
                assert_eq!(
                    inner.device.load(Ordering::SeqCst),
                    device as usize,
                    "the routine gets its own location's device"
                );
            }
            assert_eq!(outer.calls(), 1, "the walk goes on to the top");
            assert_eq!(outer.device.load(Ordering::SeqCst), 0);
            IoFreeIrp(irp);
        }
    }
    driver.unload().assert_clean();
}

#[test]
fn walk_stops_at_more_processing_required() {
    let driver = attach();
    let outer = Probe::new(STATUS_MORE_PROCESSING_REQUIRED);
    let inner = Probe::new(STATUS_MORE_PROCESSING_REQUIRED);
    unsafe {
        let irp = layered_irp(&outer, Some((&inner, true, true, true)), ptr::null_mut());
        provider::accept(irp).unwrap();
        provider::complete(irp, STATUS_SUCCESS, 0);
        assert_eq!(inner.calls(), 1);
        assert_eq!(outer.calls(), 0, "the walk stopped");
        IoFreeIrp(irp);
    }
    driver.unload().assert_clean();
}

#[test]
fn pending_returned_propagates_through_locations_without_routine() {
    let driver = attach();
    let outer = Probe::new(STATUS_MORE_PROCESSING_REQUIRED);
    unsafe {
        let irp = layered_irp(&outer, None, ptr::null_mut());
        provider::accept(irp).unwrap();
        provider::mark_pending(irp);
        provider::complete(irp, STATUS_SUCCESS, 0);
        assert_eq!(outer.calls(), 1);
        assert_eq!(outer.pending_returned.load(Ordering::SeqCst), 1);
        IoFreeIrp(irp);
    }
    driver.unload().assert_clean();
}

#[test]
fn a_test_can_play_the_provider_with_raw_kernel_calls() {
    // As Wine's provider does: step the stack location back and call IoCompleteRequest.
    let driver = attach();
    let probe = Probe::new(STATUS_MORE_PROCESSING_REQUIRED);
    unsafe {
        let irp = IoAllocateIrp(1, FALSE);
        set_probe(irp, &probe, true, true, true);
        IoSetNextIrpStackLocation(irp);
        (*irp).IoStatus.Status = STATUS_SUCCESS;
        IoCompleteRequest(irp, IO_NO_INCREMENT as CCHAR);
        assert_eq!(probe.calls(), 1);
        IoReuseIrp(irp, STATUS_SUCCESS);
        IoFreeIrp(irp);
    }
    driver.unload().assert_clean();
}

#[test]
fn completion_reaching_the_io_manager_sets_user_iosb_and_event() {
    let driver = attach();
    unsafe {
        let size = IoSizeOfIrp(1);
        let memory = ExAllocatePoolWithTag(NonPagedPoolNx, size, TAG).cast::<IRP>();
        IoInitializeIrp(memory, size as USHORT, 1);
        assert_eq!((*memory).CurrentLocation, 2);
        let mut iosb = IO_STATUS_BLOCK { Status: STATUS_PENDING, Information: 0 };
        let mut event: KEVENT = std::mem::zeroed();
        KeInitializeEvent(&raw mut event, NotificationEvent, FALSE);
        (*memory).UserIosb = &raw mut iosb;
        (*memory).UserEvent = &raw mut event;
        IoSetNextIrpStackLocation(memory);
        (*memory).IoStatus = IO_STATUS_BLOCK { Status: STATUS_SUCCESS, Information: 9 };
        IofCompleteRequest(memory, 0);
        assert_eq!(iosb.Status, STATUS_SUCCESS);
        assert_eq!(iosb.Information, 9);
        assert_eq!(KeReadStateEvent(&raw mut event), 1);
        ExFreePool(memory.cast());
    }
    driver.unload().assert_clean();
}

struct CancelProbe {
    calls: AtomicU32,
    irql: AtomicU8,
    cancel_irql: AtomicU8,
}

static CANCEL_PROBE: CancelProbe =
    CancelProbe { calls: AtomicU32::new(0), irql: AtomicU8::new(0), cancel_irql: AtomicU8::new(0) };

unsafe extern "system" fn cancel_routine(_device: *mut DEVICE_OBJECT, irp: *mut IRP) {
    CANCEL_PROBE.calls.fetch_add(1, Ordering::SeqCst);
    CANCEL_PROBE.irql.store(KeGetCurrentIrql(), Ordering::SeqCst);
    let cancel_irql = unsafe { (*irp).CancelIrql };
    CANCEL_PROBE.cancel_irql.store(cancel_irql, Ordering::SeqCst);
    unsafe { IoReleaseCancelSpinLock(cancel_irql) };
    unsafe { provider::complete(irp, STATUS_CANCELLED, 0) };
}

#[test]
fn cancel_calls_the_cancel_routine_under_the_cancel_lock() {
    let driver = attach();
    let probe = Probe::new(STATUS_MORE_PROCESSING_REQUIRED);
    unsafe {
        let irp = IoAllocateIrp(1, FALSE);
        set_probe(irp, &probe, false, false, true);
        provider::accept(irp).unwrap();
        provider::mark_pending(irp);
        assert!(IoSetCancelRoutine(irp, Some(cancel_routine)).is_none());
        assert_eq!(IoCancelIrp(irp), TRUE);
        assert_eq!(CANCEL_PROBE.calls.load(Ordering::SeqCst), 1);
        assert_eq!(CANCEL_PROBE.irql.load(Ordering::SeqCst), DISPATCH_LEVEL);
        assert_eq!(CANCEL_PROBE.cancel_irql.load(Ordering::SeqCst), PASSIVE_LEVEL);
        assert_eq!(KeGetCurrentIrql(), PASSIVE_LEVEL);
        assert_eq!(probe.calls(), 1, "SL_INVOKE_ON_CANCEL with Cancel set and STATUS_CANCELLED");
        assert_eq!(probe.pending_returned.load(Ordering::SeqCst), 1);
        // A cancel routine taken back by the provider is not called.
        IoReuseIrp(irp, STATUS_SUCCESS);
        assert_eq!((*irp).Cancel, 0, "reuse clears Cancel");
        set_probe(irp, &probe, true, true, true);
        provider::accept(irp).unwrap();
        IoSetCancelRoutine(irp, Some(cancel_routine));
        assert!(IoSetCancelRoutine(irp, None).is_some());
        assert_eq!(IoCancelIrp(irp), FALSE);
        assert_eq!((*irp).Cancel, 1);
        assert_eq!(CANCEL_PROBE.calls.load(Ordering::SeqCst), 1);
        provider::complete(irp, STATUS_CANCELLED, 0);
        IoFreeIrp(irp);
    }
    driver.unload().assert_clean();
}

#[test]
fn cancel_spin_lock_excludes_and_raises_irql() {
    let driver = attach();
    static INSIDE: AtomicU32 = AtomicU32::new(0);
    static OVERLAPS: AtomicU32 = AtomicU32::new(0);
    let threads: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(|| {
                for _ in 0..200 {
                    let mut irql = 0xFF;
                    unsafe { IoAcquireCancelSpinLock(&raw mut irql) };
                    assert_eq!(irql, PASSIVE_LEVEL);
                    assert_eq!(KeGetCurrentIrql(), DISPATCH_LEVEL);
                    if INSIDE.fetch_add(1, Ordering::SeqCst) != 0 {
                        OVERLAPS.fetch_add(1, Ordering::SeqCst);
                    }
                    std::hint::spin_loop();
                    INSIDE.fetch_sub(1, Ordering::SeqCst);
                    unsafe { IoReleaseCancelSpinLock(irql) };
                    assert_eq!(KeGetCurrentIrql(), PASSIVE_LEVEL);
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(OVERLAPS.load(Ordering::SeqCst), 0);
    driver.unload().assert_clean();
}

#[test]
fn cancel_spin_lock_misuse_is_reported() {
    let driver = attach();
    unsafe { IoReleaseCancelSpinLock(PASSIVE_LEVEL) };
    driver.unload().assert_first(Rule::SpinLockNotOwned);

    let driver = attach();
    let mut first = 0;
    let mut second = 0;
    unsafe {
        IoAcquireCancelSpinLock(&raw mut first);
        IoAcquireCancelSpinLock(&raw mut second);
        IoReleaseCancelSpinLock(second);
        IoReleaseCancelSpinLock(first);
    }
    driver.unload().assert_first(Rule::SpinLockRecursion);
    assert_eq!(KeGetCurrentIrql(), PASSIVE_LEVEL);
}

#[test]
fn irp_freed_twice() {
    let driver = attach();
    unsafe {
        let irp = IoAllocateIrp(1, FALSE);
        IoFreeIrp(irp);
        IoFreeIrp(irp);
    }
    let report = driver.unload();
    let first = report.assert_first(Rule::IrpDoubleFree);
    assert_eq!(first.code, 0xC9);
}

#[test]
fn irp_freed_while_the_provider_owns_it() {
    let driver = attach();
    let probe = Probe::new(STATUS_MORE_PROCESSING_REQUIRED);
    unsafe {
        let irp = probed_irp(&probe);
        IoFreeIrp(irp); // refused: the provider still owns it
        provider::complete(irp, STATUS_SUCCESS, 0); // the IRP is still valid
        assert_eq!(probe.calls(), 1);
    }
    driver.unload().assert_first(Rule::IrpFreedWhileOwnedByProvider);
}

#[test]
fn irp_reused_while_the_provider_owns_it() {
    let driver = attach();
    unsafe {
        let irp = IoAllocateIrp(1, FALSE);
        provider::accept(irp).unwrap();
        IoReuseIrp(irp, STATUS_SUCCESS);
    }
    driver.unload().assert_first(Rule::IrpReusedWhileOwnedByProvider);

    let driver = attach();
    unsafe {
        let irp = IoAllocateIrp(2, FALSE);
        provider::accept(irp).unwrap();
        assert!(provider::accept(irp).is_err(), "submitted twice");
    }
    driver.unload().assert_first(Rule::IrpReusedWhileOwnedByProvider);
}

#[test]
fn irp_completed_twice() {
    let driver = attach();
    let probe = Probe::new(STATUS_MORE_PROCESSING_REQUIRED);
    unsafe {
        let irp = probed_irp(&probe);
        provider::complete(irp, STATUS_SUCCESS, 0);
        IofCompleteRequest(irp, 0);
        assert_eq!(probe.calls(), 1);
    }
    let report = driver.unload();
    let first = report.assert_first(Rule::IrpCompletedTwice);
    assert_eq!(first.code, 0x44);

    let driver = attach();
    unsafe {
        let irp = probed_irp(&probe);
        provider::complete(irp, STATUS_SUCCESS, 0);
        provider::complete(irp, STATUS_SUCCESS, 0);
    }
    driver.unload().assert_first(Rule::IrpCompletedTwice);
}

#[test]
fn irp_completed_with_status_pending() {
    let driver = attach();
    unsafe {
        let irp = IoAllocateIrp(1, FALSE);
        provider::accept(irp).unwrap();
        provider::complete(irp, STATUS_PENDING, 0);
    }
    driver.unload().assert_first(Rule::IrpCompletedWithPending);
}

#[test]
fn irp_completed_with_a_cancel_routine_set() {
    let driver = attach();
    let probe = Probe::new(STATUS_MORE_PROCESSING_REQUIRED);
    unsafe {
        let irp = probed_irp(&probe);
        IoSetCancelRoutine(irp, Some(cancel_routine));
        provider::complete(irp, STATUS_SUCCESS, 0);
    }
    let report = driver.unload();
    let first = report.assert_first(Rule::IrpCompletedWithCancelRoutine);
    assert_eq!(first.code, 0x48);
}

#[test]
fn completion_routine_not_returning_more_processing_then_driver_frees() {
    let driver = attach();
    let probe = Probe::new(STATUS_SUCCESS); // broken: should be STATUS_MORE_PROCESSING_REQUIRED
    unsafe {
        let irp = probed_irp(&probe);
        provider::complete(irp, STATUS_SUCCESS, 0);
        assert_eq!(probe.calls(), 1);
        assert!(driver.bugchecks().is_empty(), "not a violation until the driver frees or reuses the IRP");
        IoFreeIrp(irp);
    }
    let report = driver.unload();
    let first = report.assert_first(Rule::CompletionRoutineDidNotReturnMoreProcessing);
    assert_eq!(first.code, 0xC9);
}

unsafe extern "system" fn free_and_return_success(
    _device: *mut DEVICE_OBJECT,
    irp: *mut IRP,
    _context: PVOID,
) -> NTSTATUS {
    unsafe { IoFreeIrp(irp) };
    STATUS_SUCCESS
}

unsafe extern "system" fn free_and_return_more_processing(
    _device: *mut DEVICE_OBJECT,
    irp: *mut IRP,
    _context: PVOID,
) -> NTSTATUS {
    unsafe { IoFreeIrp(irp) };
    STATUS_MORE_PROCESSING_REQUIRED
}

#[test]
fn completion_routine_may_free_the_irp_only_with_more_processing_required() {
    let driver = attach();
    unsafe {
        let irp = submitted_irp(free_and_return_more_processing, ptr::null_mut());
        provider::complete(irp, STATUS_SUCCESS, 0);
    }
    driver.unload().assert_clean();

    let driver = attach();
    unsafe {
        let irp = submitted_irp(free_and_return_success, ptr::null_mut());
        provider::complete(irp, STATUS_SUCCESS, 0);
    }
    driver.unload().assert_first(Rule::CompletionRoutineDidNotReturnMoreProcessing);
}

#[test]
fn irp_without_a_stack_location_for_the_provider() {
    let driver = attach();
    unsafe {
        let irp = IoAllocateIrp(0, FALSE);
        assert!(!irp.is_null());
        assert!(provider::accept(irp).is_err());
        IoFreeIrp(irp);
    }
    let report = driver.unload();
    let first = report.assert_first(Rule::IrpNoStackLocation);
    assert_eq!(first.code, 0x35);
}

#[test]
fn initialize_irp_checks_the_packet_size() {
    let driver = attach();
    unsafe {
        let memory = ExAllocatePoolWithTag(NonPagedPoolNx, IoSizeOfIrp(1), TAG).cast::<IRP>();
        IoInitializeIrp(memory, IoSizeOfIrp(1) as USHORT, 2);
        ExFreePool(memory.cast());
    }
    driver.unload().assert_first(Rule::IrpInitializeTooSmall);
}

#[test]
fn irp_from_initialize_cannot_be_freed_with_io_free_irp() {
    let driver = attach();
    unsafe {
        let memory = ExAllocatePoolWithTag(NonPagedPoolNx, IoSizeOfIrp(1), TAG).cast::<IRP>();
        IoInitializeIrp(memory, IoSizeOfIrp(1) as USHORT, 1);
        IoFreeIrp(memory);
    }
    driver.unload().assert_first(Rule::IrpBadPointer);
}

#[test]
fn irp_used_after_free() {
    let driver = attach();
    unsafe {
        let irp = IoAllocateIrp(1, FALSE);
        IoFreeIrp(irp);
        assert_eq!(IoCancelIrp(irp), FALSE);
    }
    driver.unload().assert_first(Rule::IrpUseAfterFree);
}

#[test]
fn irp_leaked_at_unload() {
    let driver = attach();
    let irp = unsafe { IoAllocateIrp(2, FALSE) };
    unsafe { provider::accept(irp).unwrap() };
    let report = driver.unload();
    report.assert_first(Rule::IrpLeak);
    let leak = report.leaks_of(LeakKind::Irp).next().unwrap();
    assert_eq!(leak.address, irp as usize);
    assert_eq!(leak.tag_text(), "Irp ");
    assert!(leak.detail.contains("still owned by the provider"), "{report}");
}

#[test]
fn completion_from_dispatch_level_caller() {
    let driver = attach();
    let probe = Probe::new(STATUS_MORE_PROCESSING_REQUIRED);
    unsafe {
        let irp = probed_irp(&probe);
        with_irql(DISPATCH_LEVEL, || provider::complete(irp, STATUS_SUCCESS, 0));
        assert!(eventually(|| probe.calls() == 1));
        with_irql(DISPATCH_LEVEL, || IoFreeIrp(irp));
    }
    driver.unload().assert_clean();
}

#[test]
fn set_completion_routine_ex_installs_the_routine() {
    let driver = attach();
    let probe = Probe::new(STATUS_MORE_PROCESSING_REQUIRED);
    unsafe {
        let irp = IoAllocateIrp(1, FALSE);
        let status = IoSetCompletionRoutineEx(
            driver.driver_object().cast(),
            irp,
            probe_routine,
            probe.context(),
            TRUE,
            FALSE,
            FALSE,
        );
        assert_eq!(status, STATUS_SUCCESS);
        assert_eq!((*IoGetNextIrpStackLocation(irp)).Control, SL_INVOKE_ON_SUCCESS);
        provider::accept(irp).unwrap();
        provider::complete(irp, STATUS_SUCCESS, 0);
        assert_eq!(probe.calls(), 1);
        IoFreeIrp(irp);
    }
    driver.unload().assert_clean();
}

#[test]
fn pool_holding_an_irp_the_provider_owns_is_freed() {
    let driver = attach();
    unsafe {
        let memory = ExAllocatePoolWithTag(NonPagedPoolNx, IoSizeOfIrp(2), TAG).cast::<IRP>();
        IoInitializeIrp(memory, IoSizeOfIrp(2) as USHORT, 2);
        provider::accept(memory).unwrap();
        ExFreePool(memory.cast());
    }
    driver.unload().assert_first(Rule::IrpFreedWhileOwnedByProvider);

    // Pool reused for a new IRP after a clean free is not confused with the old one.
    let driver = attach();
    unsafe {
        let memory = ExAllocatePoolWithTag(NonPagedPoolNx, IoSizeOfIrp(1), TAG).cast::<IRP>();
        IoInitializeIrp(memory, IoSizeOfIrp(1) as USHORT, 1);
        ExFreePool(memory.cast());
    }
    driver.unload().assert_clean();
}
