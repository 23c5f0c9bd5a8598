//! MDL routines and rules.

use std::ptr;

use wsk_emulator::{LeakKind, Rule};
use wsk_sys::*;

use crate::common::{TAG, attach};

#[test]
fn mdl_describes_a_non_paged_buffer() {
    let driver = attach();
    unsafe {
        let buffer = ExAllocatePoolWithTag(NonPagedPoolNx, 3 * PAGE_SIZE, TAG).cast::<u8>();
        let va = buffer.add(100);
        let mdl = IoAllocateMdl(va.cast(), (2 * PAGE_SIZE) as ULONG, FALSE, FALSE, ptr::null_mut());
        assert!(!mdl.is_null());
        assert_eq!((*mdl).StartVa as usize, va as usize & !(PAGE_SIZE - 1));
        assert_eq!((*mdl).ByteOffset as usize, va as usize & (PAGE_SIZE - 1));
        assert_eq!(MmGetMdlByteCount(mdl) as usize, 2 * PAGE_SIZE);
        assert_eq!(MmGetMdlVirtualAddress(mdl), va.cast());
        assert_eq!((*mdl).Size as usize, size_of::<MDL>() + 3 * 8, "three pages spanned");
        MmBuildMdlForNonPagedPool(mdl);
        assert_ne!((*mdl).MdlFlags & MDL_SOURCE_IS_NONPAGED_POOL, 0);
        let frames = mdl.add(1).cast::<u64>();
        assert_eq!(*frames, (va as usize / PAGE_SIZE) as u64);
        assert_eq!(*frames.add(2), (va as usize / PAGE_SIZE + 2) as u64);
        assert_eq!(MmGetSystemAddressForMdlSafe(mdl, NormalPagePriority), va.cast());
        IoFreeMdl(mdl);
        ExFreePool(buffer.cast());
        assert_eq!(driver.counters().mdl_allocations, 1);
    }
    driver.unload().assert_clean();
}

#[test]
fn mdl_over_host_memory_is_accepted_and_mapped() {
    let driver = attach();
    let mut buffer = vec![0u8; 10_000];
    unsafe {
        let mdl = IoAllocateMdl(buffer.as_mut_ptr().cast(), 10_000, FALSE, FALSE, ptr::null_mut());
        MmBuildMdlForNonPagedPool(mdl);
        assert_eq!(MmGetSystemAddressForMdlSafe(mdl, NormalPagePriority), buffer.as_mut_ptr().cast());
        IoFreeMdl(mdl);
    }
    driver.unload().assert_clean();
}

#[test]
fn mdls_chain_on_an_irp() {
    let driver = attach();
    let mut buffer = [0u8; 64];
    unsafe {
        let irp = IoAllocateIrp(1, FALSE);
        let first = IoAllocateMdl(buffer.as_mut_ptr().cast(), 32, FALSE, FALSE, irp);
        let second = IoAllocateMdl(buffer.as_mut_ptr().add(32).cast(), 32, TRUE, FALSE, irp);
        assert_eq!((*irp).MdlAddress, first);
        assert_eq!((*first).Next, second);
        IoFreeMdl(second);
        IoFreeMdl(first);
        IoFreeIrp(irp);
    }
    driver.unload().assert_clean();
}

#[test]
fn mapping_an_mdl_without_locked_pages_is_reported() {
    let driver = attach();
    let mut buffer = [0u8; 64];
    unsafe {
        let mdl = IoAllocateMdl(buffer.as_mut_ptr().cast(), 64, FALSE, FALSE, ptr::null_mut());
        assert!(MmGetSystemAddressForMdlSafe(mdl, NormalPagePriority).is_null());
        IoFreeMdl(mdl);
    }
    driver.unload().assert_first(Rule::MdlNotLocked);
}

#[test]
fn mdl_freed_twice() {
    let driver = attach();
    let mut buffer = [0u8; 8];
    unsafe {
        let mdl = IoAllocateMdl(buffer.as_mut_ptr().cast(), 8, FALSE, FALSE, ptr::null_mut());
        IoFreeMdl(mdl);
        IoFreeMdl(mdl);
    }
    driver.unload().assert_first(Rule::MdlDoubleFree);
}

#[test]
fn mdl_for_paged_pool() {
    let driver = attach();
    unsafe {
        let buffer = ExAllocatePoolWithTag(PagedPool, 64, TAG);
        let mdl = IoAllocateMdl(buffer, 64, FALSE, FALSE, ptr::null_mut());
        MmBuildMdlForNonPagedPool(mdl);
        IoFreeMdl(mdl);
        ExFreePool(buffer);
    }
    driver.unload().assert_first(Rule::MdlForPagedPool);
}

#[test]
fn mdl_for_freed_pool() {
    let driver = attach();
    unsafe {
        let buffer = ExAllocatePoolWithTag(NonPagedPoolNx, 64, TAG);
        ExFreePool(buffer);
        let mdl = IoAllocateMdl(buffer, 64, FALSE, FALSE, ptr::null_mut());
        MmBuildMdlForNonPagedPool(mdl);
        IoFreeMdl(mdl);
    }
    let report = driver.unload();
    let first = report.assert_first(Rule::MdlForFreedPool);
    assert_eq!(first.code, 0xCC);
}

#[test]
fn mdl_beyond_its_allocation() {
    let driver = attach();
    unsafe {
        let buffer = ExAllocatePoolWithTag(NonPagedPoolNx, 64, TAG);
        let mdl = IoAllocateMdl(buffer, 65, FALSE, FALSE, ptr::null_mut());
        MmBuildMdlForNonPagedPool(mdl);
        IoFreeMdl(mdl);
        ExFreePool(buffer);
    }
    driver.unload().assert_first(Rule::MdlBeyondAllocation);
}

#[test]
fn mdl_leaked_at_unload() {
    let driver = attach();
    let mut buffer = [0u8; 8];
    let mdl = unsafe { IoAllocateMdl(buffer.as_mut_ptr().cast(), 8, FALSE, FALSE, ptr::null_mut()) };
    let report = driver.unload();
    report.assert_first(Rule::MdlLeak);
    assert_eq!(report.leaks_of(LeakKind::Mdl).next().unwrap().address, mdl as usize);
}

#[test]
fn mapping_locked_pages_returns_the_buffer() {
    let driver = attach();
    let mut buffer = [0u8; 64];
    unsafe {
        let mdl = IoAllocateMdl(buffer.as_mut_ptr().add(8).cast(), 32, FALSE, FALSE, ptr::null_mut());
        (*mdl).MdlFlags |= MDL_PAGES_LOCKED; // as MmProbeAndLockPages would
        let va = MmGetSystemAddressForMdlSafe(mdl, NormalPagePriority | MdlMappingNoExecute);
        assert_eq!(va, buffer.as_mut_ptr().add(8).cast());
        assert_ne!((*mdl).MdlFlags & MDL_MAPPED_TO_SYSTEM_VA, 0);
        assert_eq!((*mdl).MappedSystemVa, va);
        assert!(
            MmMapLockedPagesSpecifyCache(mdl, UserMode, MmCached, ptr::null_mut(), 0, 0).is_null(),
            "user mappings are not emulated"
        );
        IoFreeMdl(mdl);
    }
    driver.unload().assert_clean();
}

#[test]
fn mdl_routines_on_something_that_is_not_an_mdl() {
    let driver = attach();
    unsafe {
        let block = ExAllocatePoolWithTag(NonPagedPoolNx, 64, TAG);
        IoFreeMdl(block.cast());
        ExFreePool(block);
    }
    driver.unload().assert_first(Rule::MdlBadPointer);

    let driver = attach();
    let mut buffer = [0u8; 8];
    unsafe {
        let mdl = IoAllocateMdl(buffer.as_mut_ptr().cast(), 8, FALSE, FALSE, ptr::null_mut());
        IoFreeMdl(mdl);
        MmBuildMdlForNonPagedPool(mdl);
    }
    driver.unload().assert_first(Rule::MdlBadPointer);
}
