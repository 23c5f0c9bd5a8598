//! Who owns each IRP, for the I/O verification rules.
//!
//! ```text
//!   IoAllocateIrp / IoInitializeIrp / IoReuseIrp
//!                 |
//!                 v              provider::accept
//!   +-------->  Driver  ----------------------------->  Provider
//!   |             |  IofCompleteRequest (the driver          |
//!   |             |  or a test acting as provider)           | IofCompleteRequest
//!   |             v                                          v
//!   |         Completing  <----------------------------------+
//!   |          |      \  a completion routine returned
//!   |          |       \ STATUS_MORE_PROCESSING_REQUIRED
//!   |          |        +-----------> Returned (the driver owns it again)
//!   |          |                        |   |
//!   |          | walk reached the top   |   +--> provider::accept --> Provider
//!   |          v                        |
//!   |   CompletedToIoManager            +--> IofCompleteRequest with no stack location
//!   |   (only IoFreeIrp / IoReuseIrp         left --> IRP_COMPLETED_TWICE
//!   |    follow, and they are violations)
//!   +---- IoReuseIrp (from Driver or Returned)
//! ```
//!
//! IRPs initialized by the driver in its own memory (`IoInitializeIrp`) are tracked the same
//! way but may not be freed with `IoFreeIrp`.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use wsk_sys::IRP;

use crate::address_map::{AddressMap, Sharded};
use crate::pool::{self, BlockKind};
use crate::sync::lock;

/// Where the IRP's memory came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// `IoAllocateIrp`: the emulator's pool.
    Allocated,
    /// `IoInitializeIrp` in memory the driver owns.
    Initialized,
}

/// Who owns the IRP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IrpState {
    /// The driver (allocated, reused, or not passed down yet).
    Driver,
    /// A provider (lower driver) took it and has not completed it yet.
    Provider,
    /// `IofCompleteRequest` is walking its stack locations.
    Completing,
    /// A completion routine returned `STATUS_MORE_PROCESSING_REQUIRED`: the driver owns it.
    Returned,
    /// Completion reached the I/O manager, which would finish and free the IRP.
    CompletedToIoManager,
}

/// One tracked IRP.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IrpRecord {
    /// Distinguishes successive IRPs at the same address.
    pub id: u64,
    pub origin: Origin,
    pub state: IrpState,
}

/// What an IRP pointer refers to.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Lookup {
    Tracked,
    /// An IRP the emulator allocated and the driver freed.
    Freed,
    /// Memory the emulator knows nothing about.
    Unknown,
}

/// The tracked IRPs by address: a [`Sharded`] address map (every IRP operation looks its
/// IRP up a few times, at up to DISPATCH_LEVEL), and beside it the addresses of the IRPs a
/// driver initialized in its own memory, in order, for the range query that freeing pool
/// needs ([`purge_range`]). An IRP from `IoAllocateIrp` is a pool block of its own, so a
/// freed block holds one only at its start. Lock order: an IRP's shard, then the initialized
/// set, then the pool.
static RECORDS: Sharded<IrpRecord> = Sharded::new();
static INITIALIZED: Mutex<BTreeSet<usize>> = Mutex::new(BTreeSet::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// One IRP's part of the table, locked: the records of its shard.
pub(crate) struct IrpTable<'a> {
    records: MutexGuard<'a, AddressMap<IrpRecord>>,
}

impl IrpTable<'_> {
    pub(crate) fn get(&self, irp: &usize) -> Option<&IrpRecord> {
        self.records.get(irp)
    }

    /// The record, to change its state (its origin stays what [`IrpTable::insert`] recorded).
    pub(crate) fn get_mut(&mut self, irp: &usize) -> Option<&mut IrpRecord> {
        self.records.get_mut(irp)
    }

    /// Tracks `record` at `irp`; the initialized set is touched (and locked) only when the
    /// address's origin changes, not on every `IoReuseIrp`.
    pub(crate) fn insert(&mut self, irp: usize, record: IrpRecord) -> Option<IrpRecord> {
        let previous = self.records.insert(irp, record);
        let was = previous.is_some_and(|p| p.origin == Origin::Initialized);
        let is = record.origin == Origin::Initialized;
        if was != is {
            let mut initialized = lock(&INITIALIZED);
            if is {
                initialized.insert(irp);
            } else {
                initialized.remove(&irp);
            }
        }
        previous
    }

    pub(crate) fn remove(&mut self, irp: &usize) -> Option<IrpRecord> {
        let removed = self.records.remove(irp)?;
        if removed.origin == Origin::Initialized {
            lock(&INITIALIZED).remove(irp);
        }
        Some(removed)
    }
}

/// Runs `f` on the part of the IRP table that holds `irp` (its shard, locked). Lock order:
/// the IRP table before the pool.
pub(crate) fn with_irp<R>(irp: usize, f: impl FnOnce(&mut IrpTable<'_>) -> R) -> R {
    f(&mut IrpTable { records: RECORDS.shard(irp) })
}

/// The IRPs tracked inside `start..end`: the initialized ones there (`initialized`), and an
/// allocated one at `start` if `allocated_at_start`.
fn inside(initialized: &BTreeSet<usize>, allocated_at_start: bool, start: usize, end: usize) -> Vec<usize> {
    let mut found: Vec<usize> = initialized.range(start..end).copied().collect();
    if start < end && allocated_at_start && !found.contains(&start) {
        found.insert(0, start);
    }
    found
}

/// Starts tracking an IRP in the `Driver` state, replacing any earlier record.
pub(crate) fn track(irp: *mut IRP, origin: Origin) -> u64 {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    with_irp(irp as usize, |table| table.insert(irp as usize, IrpRecord { id, origin, state: IrpState::Driver }));
    id
}

/// What `irp` refers to.
pub(crate) fn lookup(irp: *mut IRP) -> Lookup {
    with_irp(irp as usize, |table| match table.get(&(irp as usize)) {
        Some(_) => Lookup::Tracked,
        None if pool::freed_kind(irp as usize) == Some(BlockKind::Irp) => Lookup::Freed,
        None => Lookup::Unknown,
    })
}

/// Whether the IRP is still the one with `id`, in state `state`.
pub(crate) fn is(irp: *mut IRP, id: u64, state: IrpState) -> bool {
    with_irp(irp as usize, |table| table.get(&(irp as usize)).is_some_and(|r| r.id == id && r.state == state))
}

/// Moves the IRP with `id` from `from` to `to`; returns whether it was in `from`.
pub(crate) fn transition(irp: *mut IRP, id: u64, from: IrpState, to: IrpState) -> bool {
    with_irp(irp as usize, |table| match table.get_mut(&(irp as usize)) {
        Some(record) if record.id == id && record.state == from => {
            record.state = to;
            true
        }
        _ => false,
    })
}

/// Stops tracking IRPs initialized inside `address..address + len` (pool being freed).
/// Returns the addresses of those a provider still owned.
pub(crate) fn purge_range(address: usize, len: usize) -> Vec<usize> {
    let end = address.saturating_add(len.max(1));
    let allocated_at_start =
        with_irp(address, |table| table.get(&address).is_some_and(|r| r.origin == Origin::Allocated));
    let candidates = inside(&lock(&INITIALIZED), allocated_at_start, address, end);
    let mut owned = Vec::new();
    for irp in candidates {
        if with_irp(irp, |table| table.remove(&irp)).is_some_and(|r| r.state == IrpState::Provider) {
            owned.push(irp);
        }
    }
    owned
}

/// The state of the IRP at `address`, for leak details.
pub(crate) fn state_of(address: usize) -> Option<IrpState> {
    with_irp(address, |table| table.get(&address).map(|r| r.state))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A freed range holds the initialized IRPs inside it, wherever they sit, and an allocated
    /// IRP only at its start; nothing outside it.
    #[test]
    fn a_range_finds_initialized_irps_inside_and_an_allocated_one_at_its_start() {
        let initialized: BTreeSet<usize> = [0x0f00, 0x1100, 0x1f00, 0x2000].into_iter().collect();
        assert_eq!(inside(&initialized, true, 0x1000, 0x2000), vec![0x1000, 0x1100, 0x1f00]);
        assert_eq!(inside(&initialized, false, 0x1000, 0x2000), vec![0x1100, 0x1f00]);
        assert_eq!(inside(&initialized, false, 0x1100, 0x1200), vec![0x1100]);
        assert_eq!(inside(&initialized, true, 0x1100, 0x1200), vec![0x1100], "not twice");
        assert_eq!(inside(&initialized, false, 0x1001, 0x10ff), Vec::<usize>::new());
    }

    /// Tracking, an origin changing at one address, and forgetting keep the initialized set
    /// in step with the records (addresses no real IRP has, so the tests alongside never meet
    /// them).
    #[test]
    fn the_initialized_set_follows_the_records() {
        let at = 0x10usize;
        let track = |id, origin, state| with_irp(at, |table| table.insert(at, IrpRecord { id, origin, state }));
        track(1, Origin::Initialized, IrpState::Driver);
        assert!(lock(&INITIALIZED).contains(&at));
        track(2, Origin::Allocated, IrpState::Driver);
        assert!(!lock(&INITIALIZED).contains(&at));
        track(3, Origin::Initialized, IrpState::Provider);
        assert_eq!(purge_range(at, 8), vec![at], "owned by a provider when its memory went");
        assert!(!lock(&INITIALIZED).contains(&at) && state_of(at).is_none());
    }
}
