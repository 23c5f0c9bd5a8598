//! Fault injection: Driver Verifier's "low resources simulation".
//!
//! Counted, while a driver is loaded: the allocations the driver asks for, pool
//! (`ExAllocatePool2`, `ExAllocatePoolWithTag`), IRPs (`IoAllocateIrp`), MDLs
//! (`IoAllocateMdl`) and work items (`IoAllocateWorkItem`); system-space mappings
//! (`MmMapLockedPagesSpecifyCache`, and so `MmGetSystemAddressForMdlSafe` of an unmapped
//! MDL), which fail with NULL; and the WSK provider's own resources behind each call that
//! takes an IRP (every socket routine but `WskCloseSocket`, and `WskSocket`,
//! `WskSocketConnect`, `WskGetAddressInfo`), which a failing provider completes with
//! `STATUS_INSUFFICIENT_RESOURCES`, as a real one does when its pool runs out. Microsoft's
//! documentation lets every such call fail; close alone is documented to always succeed. Each gets an index (1, 2, 3, ...) in the
//! order the calls reach the emulator; a plan decides from the index alone whether it fails,
//! so a run is deterministic for a seed as long as the driver allocates in the same order.

use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::sync::lock;

/// Which allocations fail on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FaultPlan {
    /// None.
    #[default]
    None,
    /// Each allocation fails with probability `rate_ppm` / 1,000,000, decided by a hash of
    /// `seed` and the allocation's index.
    Random {
        /// Seed of the hash; the same seed fails the same indices.
        seed: u64,
        /// Failure rate in parts per million (0 never fails, 1,000,000 always fails).
        rate_ppm: u32,
    },
    /// Exactly the `n`-th allocation fails (counting from 1). A sweep runs a scenario with
    /// `FailNth(1)`, `FailNth(2)`, ... up to the number of allocations a clean run made.
    FailNth(u64),
    /// Every allocation from the `n`-th on fails (counting from 1).
    FailFrom(u64),
}

/// Which allocation routine an allocation came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllocationKind {
    /// Pool memory: `ExAllocatePool2` or `ExAllocatePoolWithTag`.
    Pool,
    /// An IRP from `IoAllocateIrp`.
    Irp,
    /// An MDL from `IoAllocateMdl`.
    Mdl,
    /// A work item from `IoAllocateWorkItem`.
    WorkItem,
    /// `MmMapLockedPagesSpecifyCache`.
    Mapping,
    /// A WSK provider routine's own allocation.
    ProviderCall,
}

/// What fault injection did in a session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultStats {
    /// Driver allocations counted (attempted), failed or not.
    pub counted: u64,
    /// Allocations failed on purpose.
    pub injected: u64,
    /// Of `counted`: system-space mappings (`MmMapLockedPagesSpecifyCache`).
    pub mappings: u64,
    /// Of `counted`: WSK provider calls.
    pub provider_calls: u64,
}

static PLAN: Mutex<FaultPlan> = Mutex::new(FaultPlan::None);
/// Whether `PLAN` is other than `FaultPlan::None` (read without the lock on every counted
/// allocation; written under it).
static PLANNED: AtomicBool = AtomicBool::new(false);
static COUNTED: AtomicU64 = AtomicU64::new(0);
static MAPPINGS: AtomicU64 = AtomicU64::new(0);
static PROVIDER_CALLS: AtomicU64 = AtomicU64::new(0);
static INJECTED: AtomicU64 = AtomicU64::new(0);

/// SplitMix64 finalizer: a well-mixed 64-bit hash of `x`.
pub(crate) fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

impl FaultPlan {
    /// Whether the allocation with index `n` (from 1) fails under this plan.
    pub fn fails(&self, n: u64) -> bool {
        match *self {
            FaultPlan::None => false,
            FaultPlan::Random { seed, rate_ppm } => mix(seed ^ mix(n)) % 1_000_000 < u64::from(rate_ppm),
            FaultPlan::FailNth(k) => n == k,
            FaultPlan::FailFrom(k) => n >= k,
        }
    }
}

/// Counts one driver allocation and decides whether it fails.
pub(crate) fn should_fail(kind: AllocationKind) -> bool {
    if crate::kernel::session() == 0 {
        return false;
    }
    match kind {
        AllocationKind::Mapping => drop(MAPPINGS.fetch_add(1, Ordering::Relaxed)),
        AllocationKind::ProviderCall => drop(PROVIDER_CALLS.fetch_add(1, Ordering::Relaxed)),
        _ => {}
    }
    let n = COUNTED.fetch_add(1, Ordering::Relaxed) + 1;
    if !PLANNED.load(Ordering::Acquire) {
        return false;
    }
    let plan = *lock(&PLAN);
    if plan.fails(n) {
        INJECTED.fetch_add(1, Ordering::Relaxed);
        crate::counters::bump::injected_failures(1);
        true
    } else {
        false
    }
}

/// Replaces the plan (counting goes on).
pub(crate) fn set_plan(plan: FaultPlan) {
    let mut current = lock(&PLAN);
    *current = plan;
    PLANNED.store(!matches!(plan, FaultPlan::None), Ordering::Release);
}

/// The current plan.
pub(crate) fn plan() -> FaultPlan {
    *lock(&PLAN)
}

/// Statistics since the session started.
pub(crate) fn stats() -> FaultStats {
    FaultStats {
        counted: COUNTED.load(Ordering::Relaxed),
        injected: INJECTED.load(Ordering::Relaxed),
        mappings: MAPPINGS.load(Ordering::Relaxed),
        provider_calls: PROVIDER_CALLS.load(Ordering::Relaxed),
    }
}

/// Starts a session's counting with `plan`.
pub(crate) fn reset(plan: FaultPlan) {
    set_plan(plan);
    COUNTED.store(0, Ordering::Relaxed);
    INJECTED.store(0, Ordering::Relaxed);
    MAPPINGS.store(0, Ordering::Relaxed);
    PROVIDER_CALLS.store(0, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_plan_is_deterministic_and_near_its_rate() {
        let plan = FaultPlan::Random { seed: 42, rate_ppm: 100_000 };
        let first: Vec<bool> = (1..=10_000).map(|n| plan.fails(n)).collect();
        let second: Vec<bool> = (1..=10_000).map(|n| plan.fails(n)).collect();
        assert_eq!(first, second);
        let failures = first.iter().filter(|&&f| f).count();
        assert!((800..1200).contains(&failures), "{failures} failures for a 10% rate");
        let other = FaultPlan::Random { seed: 43, rate_ppm: 100_000 };
        assert_ne!(first, (1..=10_000).map(|n| other.fails(n)).collect::<Vec<_>>());
    }

    #[test]
    fn nth_and_from_plans() {
        assert!(!FaultPlan::FailNth(3).fails(2));
        assert!(FaultPlan::FailNth(3).fails(3));
        assert!(!FaultPlan::FailNth(3).fails(4));
        assert!(FaultPlan::FailFrom(3).fails(4));
        assert!(!FaultPlan::None.fails(1));
        assert!(FaultPlan::Random { seed: 1, rate_ppm: 1_000_000 }.fails(7));
        assert!(!FaultPlan::Random { seed: 1, rate_ppm: 0 }.fails(7));
    }
}
