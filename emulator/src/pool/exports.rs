//! The pool routines drivers call: `ExAllocatePool2`, `ExAllocatePoolWithTag`, `ExFreePool`,
//! `ExFreePoolWithTag`, with their IRQL and argument rules.

use std::ptr;

use wsk_sys::{
    APC_LEVEL, DISPATCH_LEVEL, POOL_FLAG_NON_PAGED, POOL_FLAG_PAGED, POOL_FLAG_UNINITIALIZED, POOL_FLAGS, POOL_TYPE,
    PVOID, SIZE_T, ULONG,
};

use super::{BlockKind, FreeError, Request, allocate, free};
use crate::irql::{self, current_irql};
use crate::kernel;
use crate::verifier::{Rule, bugcheck, tag_text};

/// `POOL_FLAG_NON_PAGED_EXECUTE`.
const POOL_FLAG_NON_PAGED_EXECUTE: POOL_FLAGS = 0x80;
/// `PROTECTED_POOL`: ignored when comparing tags.
const PROTECTED_POOL: u32 = 0x8000_0000;

/// Whether a `POOL_TYPE` is paged, or `None` when drivers may not use it.
fn pool_type_is_paged(pool_type: POOL_TYPE) -> Option<bool> {
    // Base types: NonPagedPool 0, PagedPool 1; modifiers: CacheAligned 4, Session 32, Nx 512.
    match pool_type & !(4 | 32 | 512) {
        0 => Some(false),
        1 => Some(true),
        _ => None,
    }
}

/// IRQL rules of an allocation: at most DISPATCH_LEVEL, APC_LEVEL for paged pool.
fn check_allocation_irql(routine: &str, paged: bool) {
    if !kernel::verifier() {
        return;
    }
    let irql = current_irql();
    if paged && irql == DISPATCH_LEVEL {
        bugcheck(Rule::PoolPagedAtDispatch, format!("{routine} allocated paged pool at DISPATCH_LEVEL"));
    } else {
        irql::check_max(routine, if paged { APC_LEVEL } else { DISPATCH_LEVEL });
    }
}

fn check_request(routine: &str, size: usize, tag: u32) {
    if !kernel::verifier() {
        return;
    }
    if size == 0 {
        bugcheck(Rule::PoolZeroSize, format!("{routine} asked for 0 bytes (tag '{}')", tag_text(tag)));
    }
    if tag == 0 {
        bugcheck(Rule::PoolZeroTag, format!("{routine} asked for {size} bytes with tag 0"));
    }
}

/// `ExAllocatePoolWithTag`: uninitialized memory of `PoolType`. IRQL <= DISPATCH_LEVEL
/// (paged pool: <= APC_LEVEL). Returns null when out of memory (or failed on purpose).
///
/// # Safety
/// Callable with any arguments; the returned block must be freed with `ExFreePool*`.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn ExAllocatePoolWithTag(PoolType: POOL_TYPE, NumberOfBytes: SIZE_T, Tag: ULONG) -> PVOID {
    let Some(paged) = pool_type_is_paged(PoolType) else {
        bugcheck(Rule::PoolBadType, format!("ExAllocatePoolWithTag with pool type {PoolType}"));
        return ptr::null_mut();
    };
    check_allocation_irql("ExAllocatePoolWithTag", paged);
    check_request("ExAllocatePoolWithTag", NumberOfBytes, Tag);
    allocate(Request { kind: BlockKind::Pool, size: NumberOfBytes, tag: Tag, paged, zeroed: false }).cast()
}

/// `ExAllocatePool2` (Windows 10 2004+; reached through `MmGetSystemRoutineAddress`): zeroed
/// memory unless `POOL_FLAG_UNINITIALIZED`. Exactly one of `POOL_FLAG_NON_PAGED`,
/// `POOL_FLAG_NON_PAGED_EXECUTE` and `POOL_FLAG_PAGED` is required. IRQL <= DISPATCH_LEVEL
/// (paged pool: <= APC_LEVEL). `POOL_FLAG_RAISE_ON_FAILURE` is ignored (null is returned).
///
/// # Safety
/// Callable with any arguments; the returned block must be freed with `ExFreePool*`.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn ExAllocatePool2(Flags: POOL_FLAGS, NumberOfBytes: SIZE_T, Tag: ULONG) -> PVOID {
    let types = [POOL_FLAG_NON_PAGED, POOL_FLAG_NON_PAGED_EXECUTE, POOL_FLAG_PAGED];
    if types.iter().filter(|&&t| Flags & t != 0).count() != 1 {
        bugcheck(
            Rule::PoolBadType,
            format!("ExAllocatePool2 with flags 0x{Flags:x}: exactly one pool type flag needed"),
        );
        return ptr::null_mut();
    }
    let paged = Flags & POOL_FLAG_PAGED != 0;
    check_allocation_irql("ExAllocatePool2", paged);
    check_request("ExAllocatePool2", NumberOfBytes, Tag);
    let zeroed = Flags & POOL_FLAG_UNINITIALIZED == 0;
    allocate(Request { kind: BlockKind::Pool, size: NumberOfBytes, tag: Tag, paged, zeroed }).cast()
}

fn free_pool(routine: &str, block: PVOID, expected_tag: Option<u32>) {
    match free(block.cast(), BlockKind::Pool) {
        Ok(freed) => {
            if kernel::verifier() {
                let irql = current_irql();
                if freed.paged && irql == DISPATCH_LEVEL {
                    bugcheck(Rule::PoolPagedAtDispatch, format!("{routine} freed paged pool at DISPATCH_LEVEL"));
                } else {
                    irql::check_max(routine, if freed.paged { APC_LEVEL } else { DISPATCH_LEVEL });
                }
            }
            if freed.overrun {
                bugcheck(
                    Rule::PoolOverrun,
                    format!(
                        "{routine}: the bytes after pool block {block:p} (tag '{}', {} bytes) were overwritten",
                        tag_text(freed.tag),
                        freed.size
                    ),
                );
            }
            if let Some(tag) = expected_tag
                && (tag & !PROTECTED_POOL) != (freed.tag & !PROTECTED_POOL)
            {
                bugcheck(
                    Rule::PoolTagMismatch,
                    format!(
                        "{routine}({block:p}, '{}') on a block allocated with tag '{}'",
                        tag_text(tag),
                        tag_text(freed.tag)
                    ),
                );
            }
            for irp in crate::irp::state::purge_range(block as usize, freed.size) {
                bugcheck(
                    Rule::IrpFreedWhileOwnedByProvider,
                    format!("{routine}({block:p}) frees IRP 0x{irp:x}, which a provider still owns"),
                );
            }
            crate::timer::purge_range(block as usize, freed.size);
            crate::dpc::purge_range(block as usize, freed.size);
        }
        Err(error) => report_free_error(routine, block, error),
    }
}

fn report_free_error(routine: &str, block: PVOID, error: FreeError) {
    match error {
        FreeError::Null => bugcheck(Rule::PoolFreeBadAddress, format!("{routine}(NULL)")),
        FreeError::NotAllocated(None) => bugcheck(
            Rule::PoolFreeBadAddress,
            format!("{routine}({block:p}): no pool allocation starts at this address"),
        ),
        FreeError::NotAllocated(Some((base, kind))) => bugcheck(
            Rule::PoolFreeBadAddress,
            format!("{routine}({block:p}): the address is inside {} at 0x{base:x}, not at its start", kind.describe()),
        ),
        FreeError::AlreadyFreed { kind, tag, size } => bugcheck(
            Rule::PoolDoubleFree,
            format!("{routine}({block:p}): {} (tag '{}', {size} bytes) already freed", kind.describe(), tag_text(tag)),
        ),
        FreeError::WrongKind(kind) => bugcheck(
            Rule::PoolFreeWrongRoutine,
            format!("{routine}({block:p}) on {}; free it with its own routine", kind.describe()),
        ),
    }
}

/// `ExFreePoolWithTag`. IRQL <= DISPATCH_LEVEL (paged pool: <= APC_LEVEL).
///
/// # Safety
/// `P` must be a block from `ExAllocatePool*` not freed yet (the verifier reports it otherwise).
#[unsafe(no_mangle)]
pub unsafe extern "system" fn ExFreePoolWithTag(P: PVOID, Tag: ULONG) {
    free_pool("ExFreePoolWithTag", P, Some(Tag));
}

/// `ExFreePool`. IRQL <= DISPATCH_LEVEL (paged pool: <= APC_LEVEL).
///
/// # Safety
/// `P` must be a block from `ExAllocatePool*` not freed yet (the verifier reports it otherwise).
#[unsafe(no_mangle)]
pub unsafe extern "system" fn ExFreePool(P: PVOID) {
    free_pool("ExFreePool", P, None);
}
