//! Activity counters of the current session, sampled by tests (e.g. to measure allocations
//! per operation) and printed in the verifier report.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($( $(#[$doc:meta])* $field:ident ),* $(,)?) => {
        /// A snapshot of the session's counters.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct Counters {
            $( $(#[$doc])* pub $field: u64, )*
        }

        struct Atomics {
            $( $field: AtomicU64, )*
        }

        static ATOMICS: Atomics = Atomics { $( $field: AtomicU64::new(0), )* };

        /// A snapshot of the current session's counters.
        pub fn counters() -> Counters {
            Counters { $( $field: ATOMICS.$field.load(Ordering::Relaxed), )* }
        }

        pub(crate) fn reset() {
            $( ATOMICS.$field.store(0, Ordering::Relaxed); )*
        }

        /// Increments and updates counters.
        pub(crate) mod bump {
            use super::*;
            $(
                #[inline]
                #[expect(clippy::allow_attributes, reason = "an `expect` would fail for the counters that are bumped")]
                #[allow(dead_code, reason = "a bump function per counter; not every counter is bumped in every build")]
                pub(crate) fn $field(n: u64) {
                    ATOMICS.$field.fetch_add(n, Ordering::Relaxed);
                }
            )*
        }
    };
}

counters! {
    /// `ExAllocatePool*` calls that returned memory.
    pool_allocations,
    /// `ExFreePool*` calls that freed memory.
    pool_frees,
    /// IRPs allocated with `IoAllocateIrp`.
    irp_allocations,
    /// IRPs freed with `IoFreeIrp`.
    irp_frees,
    /// MDLs allocated with `IoAllocateMdl`.
    mdl_allocations,
    /// MDLs freed with `IoFreeMdl`.
    mdl_frees,
    /// Work items allocated with `IoAllocateWorkItem`.
    work_item_allocations,
    /// Work items freed with `IoFreeWorkItem`.
    work_item_frees,
    /// `IoQueueWorkItem` calls that queued.
    work_items_queued,
    /// Work item routines run.
    work_items_run,
    /// `IofCompleteRequest` calls.
    irps_completed,
    /// `IoCancelIrp` calls.
    irps_cancelled,
    /// `KeInsertQueueDpc` calls that queued (timers included).
    dpcs_queued,
    /// DPC routines run.
    dpcs_run,
    /// `KeSetTimerEx` calls.
    timers_set,
    /// Timer expirations.
    timers_fired,
    /// Allocations failed on purpose by fault injection.
    injected_failures,
    /// Bytes of non-paged pool (IRPs, MDLs, work items included) currently allocated.
    live_nonpaged_bytes,
    /// Bytes of paged pool currently allocated.
    live_paged_bytes,
    /// Peak of `live_nonpaged_bytes`.
    peak_nonpaged_bytes,
    /// Peak of `live_paged_bytes`.
    peak_paged_bytes,
    /// Reads of host stream sockets by the provider (for indications and `WskReceive`),
    /// including those that found nothing.
    host_reads,
    /// Bytes a `WskReceiveEvent` callback did not accept, which the provider kept to indicate
    /// again (or to serve to a `WskReceive`).
    refused_bytes,
    /// Of `refused_bytes`, those copied out of their indication block to be kept (the others
    /// stay where they were indicated).
    refused_bytes_copied,
}

impl Counters {
    /// Every allocation the driver made: pool, IRPs, MDLs and work items.
    pub fn allocations(&self) -> u64 {
        self.pool_allocations + self.irp_allocations + self.mdl_allocations + self.work_item_allocations
    }

    /// Every free the driver made.
    pub fn frees(&self) -> u64 {
        self.pool_frees + self.irp_frees + self.mdl_frees + self.work_item_frees
    }
}

impl fmt::Display for Counters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "allocations: pool {}/{} freed, IRPs {}/{}, MDLs {}/{}, work items {}/{}; peak non-paged {} bytes, \
             peak paged {} bytes; {} IRP completions, {} work items run, {} DPCs run, {} timer expirations; \
             {} host stream reads, {} bytes refused by receive callbacks",
            self.pool_allocations,
            self.pool_frees,
            self.irp_allocations,
            self.irp_frees,
            self.mdl_allocations,
            self.mdl_frees,
            self.work_item_allocations,
            self.work_item_frees,
            self.peak_nonpaged_bytes,
            self.peak_paged_bytes,
            self.irps_completed,
            self.work_items_run,
            self.dpcs_run,
            self.timers_fired,
            self.host_reads,
            self.refused_bytes
        )
    }
}

/// Adds `bytes` to the live byte count of a pool and updates its peak.
pub(crate) fn add_live(paged: bool, bytes: u64) {
    let (live, peak) = if paged {
        (&ATOMICS.live_paged_bytes, &ATOMICS.peak_paged_bytes)
    } else {
        (&ATOMICS.live_nonpaged_bytes, &ATOMICS.peak_nonpaged_bytes)
    };
    let now = live.fetch_add(bytes, Ordering::Relaxed) + bytes;
    peak.fetch_max(now, Ordering::Relaxed);
}

/// Removes `bytes` from the live byte count of a pool (saturating: blocks allocated before
/// the session started may be freed during it).
pub(crate) fn sub_live(paged: bool, bytes: u64) {
    let live = if paged { &ATOMICS.live_paged_bytes } else { &ATOMICS.live_nonpaged_bytes };
    let _ = live.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| Some(v.saturating_sub(bytes)));
}
