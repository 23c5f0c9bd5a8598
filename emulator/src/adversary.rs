//! Adversarial provider behaviour: what a WSK provider may do that the emulator's default
//! provider never does, so that the library's handling of it is proven in host tests.
//!
//! Process-wide and off by default, like [`quirks`](crate::quirks); set it with [`set`] before
//! a driver is loaded. One behaviour so far, the first piece of a wider adversarial mode:
//!
//! * `unmapped_indications`: receive indications describe locked pages that are not mapped
//!   into system space (`MDL_PAGES_LOCKED`, neither `MDL_SOURCE_IS_NONPAGED_POOL` nor
//!   `MDL_MAPPED_TO_SYSTEM_VA`), so `MmGetSystemAddressForMdlSafe` has to call
//!   `MmMapLockedPagesSpecifyCache`. Microsoft documents no promise that a provider's
//!   indication MDLs are mapped, so the worst case is assumed.
//! * `mapping_failure_ppm`: `MmMapLockedPagesSpecifyCache` then fails (returns NULL, as it does
//!   when system PTEs run out) for this many calls per million, decided by a hash of the
//!   call's index: a run is reproducible as long as the calls come in the same order. A
//!   mapping that succeeded stays (the MDL is marked mapped), as on Windows.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::sync::lock;

/// The adversarial behaviours in force. See the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Adversary {
    /// Indication MDLs are not mapped into system space.
    pub unmapped_indications: bool,
    /// `MmMapLockedPagesSpecifyCache` fails this many times per million calls.
    pub mapping_failure_ppm: u32,
}

static ADVERSARY: Mutex<Adversary> = Mutex::new(Adversary { unmapped_indications: false, mapping_failure_ppm: 0 });
static MAPPINGS: AtomicU64 = AtomicU64::new(0);
static MAPPINGS_FAILED: AtomicU64 = AtomicU64::new(0);

/// Sets the behaviours for the whole process (call it before a driver is loaded).
pub fn set(adversary: Adversary) {
    *lock(&ADVERSARY) = adversary;
}

/// The behaviours in force.
pub fn get() -> Adversary {
    *lock(&ADVERSARY)
}

/// Mapping calls counted, and how many of them failed on purpose.
pub fn mapping_stats() -> (u64, u64) {
    (MAPPINGS.load(Ordering::Relaxed), MAPPINGS_FAILED.load(Ordering::Relaxed))
}

/// Counts one `MmMapLockedPagesSpecifyCache` call; whether it fails on purpose.
pub(crate) fn mapping_fails() -> bool {
    let rate = get().mapping_failure_ppm;
    let n = MAPPINGS.fetch_add(1, Ordering::Relaxed) + 1;
    let fails = rate > 0 && crate::fault::FaultPlan::Random { seed: 0x4D41_5050, rate_ppm: rate }.fails(n);
    if fails {
        MAPPINGS_FAILED.fetch_add(1, Ordering::Relaxed);
    }
    fails
}
