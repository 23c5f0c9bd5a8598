//! Pool routines and the pool verifier rules.

use std::ptr;

use wsk_emulator::{FREED_BYTE, FRESH_BYTE, LeakKind, Rule, with_irql};
use wsk_sys::*;

use crate::common::{TAG, attach, unicode};

type AllocatePool2 = PFN_EX_ALLOCATE_POOL2;

fn pool2() -> AllocatePool2 {
    let mut name = unicode("ExAllocatePool2");
    let address = unsafe { MmGetSystemRoutineAddress(&raw mut name) };
    assert!(!address.is_null());
    unsafe { core::mem::transmute::<PVOID, AllocatePool2>(address) }
}

#[test]
fn allocate_and_free_with_tags_and_types() {
    let driver = attach();
    unsafe {
        let a = ExAllocatePoolWithTag(NonPagedPoolNx, 100, TAG).cast::<u8>();
        let b = ExAllocatePoolWithTag(PagedPool, 5000, TAG).cast::<u8>();
        let c = ExAllocatePoolWithTag(NonPagedPool, 16, TAG).cast::<u8>();
        assert!(!a.is_null() && !b.is_null() && !c.is_null());
        assert_eq!(a as usize % 16, 0);
        assert_eq!(b as usize % PAGE_SIZE, 0, "allocations of a page or more are page aligned");
        // Fresh special-pool memory is filled, never zero by luck.
        assert!(std::slice::from_raw_parts(a, 100).iter().all(|&x| x == FRESH_BYTE));
        ptr::write_bytes(a, 7, 100);
        let counters = driver.counters();
        assert_eq!(counters.pool_allocations, 3);
        assert_eq!(counters.live_nonpaged_bytes, 116);
        assert_eq!(counters.live_paged_bytes, 5000);
        ExFreePoolWithTag(a.cast(), TAG);
        ExFreePool(b.cast());
        ExFreePoolWithTag(c.cast(), TAG | 0x8000_0000); // PROTECTED_POOL is ignored
        let counters = driver.counters();
        assert_eq!(counters.pool_frees, 3);
        assert_eq!(counters.live_nonpaged_bytes, 0);
        assert_eq!(counters.peak_nonpaged_bytes, 116);
        assert_eq!(counters.peak_paged_bytes, 5000);
    }
    driver.unload().assert_clean();
}

#[test]
fn allocate_pool2_zeroes_unless_uninitialized() {
    let driver = attach();
    let allocate = pool2();
    unsafe {
        let zeroed = allocate(POOL_FLAG_NON_PAGED, 64, TAG).cast::<u8>();
        assert!(std::slice::from_raw_parts(zeroed, 64).iter().all(|&x| x == 0));
        let raw = allocate(POOL_FLAG_NON_PAGED | POOL_FLAG_UNINITIALIZED, 64, TAG).cast::<u8>();
        assert!(std::slice::from_raw_parts(raw, 64).iter().all(|&x| x == FRESH_BYTE));
        let paged = allocate(POOL_FLAG_PAGED, 10, TAG);
        assert!(!paged.is_null());
        ExFreePool(zeroed.cast());
        ExFreePool(raw.cast());
        ExFreePool(paged);
    }
    driver.unload().assert_clean();
}

#[test]
fn system_routine_address_resolves_exports_only() {
    let driver = attach();
    unsafe {
        let mut name = unicode("KeSetEvent");
        assert_eq!(MmGetSystemRoutineAddress(&raw mut name) as usize, KeSetEvent as *const () as usize);
        let mut name = unicode("DbgPrint");
        assert!(!MmGetSystemRoutineAddress(&raw mut name).is_null());
        let mut name = unicode("NoSuchRoutine");
        assert!(MmGetSystemRoutineAddress(&raw mut name).is_null());
    }
    driver.unload().assert_clean();
}

#[test]
fn freed_memory_is_poisoned_and_not_reused_at_once() {
    let driver = attach();
    unsafe {
        let a = ExAllocatePoolWithTag(NonPagedPoolNx, 32, TAG).cast::<u8>();
        ExFreePool(a.cast());
        // Quarantined: still mapped (in the host), filled with poison.
        assert!(std::slice::from_raw_parts(a, 32).iter().all(|&x| x == FREED_BYTE));
        let b = ExAllocatePoolWithTag(NonPagedPoolNx, 32, TAG).cast::<u8>();
        assert_ne!(a, b, "freed memory is not handed out again at once");
        ExFreePool(b.cast());
    }
    driver.unload().assert_clean();
}

#[test]
fn leak_is_reported_with_tag_size_and_site() {
    let driver = attach();
    let leaked = unsafe { ExAllocatePoolWithTag(NonPagedPoolNx, 48, u32::from_le_bytes(*b"Leak")) };
    assert!(!leaked.is_null());
    let report = driver.unload();
    report.assert_first(Rule::PoolLeak);
    let leaks = report.assert_leaks(LeakKind::Pool, 1);
    assert_eq!(leaks[0].tag_text(), "Leak");
    assert_eq!(leaks[0].size, 48);
    assert_eq!(leaks[0].address, leaked as usize);
    let site = leaks[0].site().expect("site captured").summary();
    assert!(site.contains("leak_is_reported_with_tag_size_and_site"), "site: {site}");
    assert!(report.to_string().contains("tag 'Leak' 48 bytes"), "{report}");
}

#[test]
fn double_free_is_refused_and_reported() {
    let driver = attach();
    unsafe {
        let a = ExAllocatePoolWithTag(NonPagedPoolNx, 8, TAG);
        ExFreePool(a);
        ExFreePool(a);
    }
    let report = driver.unload();
    let first = report.assert_first(Rule::PoolDoubleFree);
    assert_eq!(first.code, 0xC2);
    assert!(report.crashed_before_unload);
}

#[test]
fn free_of_unknown_or_interior_address_is_reported() {
    let driver = attach();
    let mut local = [0u8; 16];
    unsafe { ExFreePool(local.as_mut_ptr().cast()) };
    let report = driver.unload();
    report.assert_first(Rule::PoolFreeBadAddress);

    let driver = attach();
    unsafe {
        let a = ExAllocatePoolWithTag(NonPagedPoolNx, 64, TAG).cast::<u8>();
        ExFreePool(a.add(8).cast());
        ExFreePool(a.cast());
    }
    let report = driver.unload();
    let first = report.assert_first(Rule::PoolFreeBadAddress);
    assert!(first.message.contains("inside a pool block"), "{report}");
    // Leaks are not checked after a crash.
    report.assert_no_leaks();
}

#[test]
fn tag_mismatch_is_reported() {
    let driver = attach();
    unsafe {
        let a = ExAllocatePoolWithTag(NonPagedPoolNx, 8, TAG);
        ExFreePoolWithTag(a, u32::from_le_bytes(*b"Othr"));
    }
    let report = driver.unload();
    let first = report.assert_first(Rule::PoolTagMismatch);
    assert!(first.message.contains("'Othr'"));
}

#[test]
fn buffer_overrun_is_caught_at_free() {
    let driver = attach();
    unsafe {
        let a = ExAllocatePoolWithTag(NonPagedPoolNx, 10, TAG).cast::<u8>();
        *a.add(10) = 0; // one past the end
        ExFreePool(a.cast());
    }
    driver.unload().assert_first(Rule::PoolOverrun);
}

#[test]
fn write_after_free_is_caught() {
    let driver = attach();
    unsafe {
        let a = ExAllocatePoolWithTag(NonPagedPoolNx, 24, TAG).cast::<u8>();
        ExFreePool(a.cast());
        *a.add(3) = 1; // use after free
    }
    driver.unload().assert_first(Rule::PoolWriteAfterFree);
}

#[test]
fn paged_pool_at_dispatch_level_is_reported() {
    let driver = attach();
    let block = with_irql(DISPATCH_LEVEL, || unsafe { ExAllocatePoolWithTag(PagedPool, 8, TAG) });
    assert!(!block.is_null(), "the call still succeeds");
    unsafe { ExFreePool(block) };
    let report = driver.unload();
    let first = report.assert_first(Rule::PoolPagedAtDispatch);
    assert_eq!(first.code, 0xC4);
    assert_eq!(first.parameter1, 0x01);

    let driver = attach();
    let block = unsafe { ExAllocatePoolWithTag(PagedPool, 8, TAG) };
    with_irql(DISPATCH_LEVEL, || unsafe { ExFreePool(block) });
    driver.unload().assert_first(Rule::PoolPagedAtDispatch);
}

#[test]
fn non_paged_pool_above_dispatch_level_is_reported() {
    let driver = attach();
    let block = with_irql(HIGH_LEVEL, || unsafe { ExAllocatePoolWithTag(NonPagedPoolNx, 8, TAG) });
    unsafe { ExFreePool(block) };
    driver.unload().assert_first(Rule::IrqlTooHigh);
}

#[test]
fn zero_size_zero_tag_and_bad_types_are_reported() {
    let driver = attach();
    let block = unsafe { ExAllocatePoolWithTag(NonPagedPoolNx, 0, TAG) };
    unsafe { ExFreePool(block) };
    driver.unload().assert_first(Rule::PoolZeroSize);

    let driver = attach();
    let block = unsafe { ExAllocatePoolWithTag(NonPagedPoolNx, 8, 0) };
    unsafe { ExFreePool(block) };
    driver.unload().assert_first(Rule::PoolZeroTag);

    let driver = attach();
    assert!(unsafe { ExAllocatePoolWithTag(2, 8, TAG) }.is_null(), "must-succeed pool is refused");
    driver.unload().assert_first(Rule::PoolBadType);

    let driver = attach();
    let allocate = pool2();
    assert!(unsafe { allocate(POOL_FLAG_NON_PAGED | POOL_FLAG_PAGED, 8, TAG) }.is_null());
    driver.unload().assert_first(Rule::PoolBadType);
}

#[test]
fn freeing_an_irp_with_ex_free_pool_is_reported() {
    let driver = attach();
    unsafe {
        let irp = IoAllocateIrp(1, FALSE);
        ExFreePool(irp.cast());
        IoFreeIrp(irp);
    }
    driver.unload().assert_first(Rule::PoolFreeWrongRoutine);
}

#[test]
fn verifier_off_skips_special_pool_and_leak_checks() {
    let driver = wsk_emulator::Kernel::builder().verifier(false).attach("quiet");
    unsafe {
        let a = ExAllocatePoolWithTag(NonPagedPoolNx, 8, TAG);
        assert!(!a.is_null());
        let leaked = with_irql(DISPATCH_LEVEL, || ExAllocatePoolWithTag(PagedPool, 8, TAG));
        assert!(!leaked.is_null());
        ExFreePool(a);
    }
    let report = driver.unload();
    assert!(!report.verifier);
    report.assert_clean();
}
