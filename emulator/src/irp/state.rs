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
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use wsk_sys::IRP;

use crate::address_map::{self, AddressMap};
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

/// The tracked IRPs by address.
///
/// Every IRP operation looks its IRP up here, a few times (take, complete, reuse): an
/// [`AddressMap`]. The range query that freeing pool needs
/// ([`purge_range`]) only concerns IRPs a driver initialized in its own memory, kept in an
/// ordered set beside the map; an IRP from `IoAllocateIrp` is a pool block of its own, so a
/// freed block holds one only at its start.
pub(crate) struct IrpTable {
    records: AddressMap<IrpRecord>,
    /// Addresses of the tracked IRPs of [`Origin::Initialized`].
    initialized: BTreeSet<usize>,
}

impl IrpTable {
    const fn new() -> Self {
        IrpTable { records: address_map::new(), initialized: BTreeSet::new() }
    }

    pub(crate) fn get(&self, irp: &usize) -> Option<&IrpRecord> {
        self.records.get(irp)
    }

    /// The record, to change its state (its origin stays what [`IrpTable::insert`] recorded).
    pub(crate) fn get_mut(&mut self, irp: &usize) -> Option<&mut IrpRecord> {
        self.records.get_mut(irp)
    }

    pub(crate) fn insert(&mut self, irp: usize, record: IrpRecord) -> Option<IrpRecord> {
        if record.origin == Origin::Initialized {
            self.initialized.insert(irp);
        } else {
            self.initialized.remove(&irp);
        }
        self.records.insert(irp, record)
    }

    pub(crate) fn remove(&mut self, irp: &usize) -> Option<IrpRecord> {
        self.initialized.remove(irp);
        self.records.remove(irp)
    }

    /// The tracked IRPs inside `start..end`: the initialized ones there, and an allocated one
    /// at `start` (see the type's doc).
    fn inside(&self, start: usize, end: usize) -> Vec<usize> {
        let mut found: Vec<usize> = self.initialized.range(start..end).copied().collect();
        if start < end && !found.contains(&start) && self.records.contains_key(&start) {
            found.insert(0, start);
        }
        found
    }
}

static IRPS: Mutex<IrpTable> = Mutex::new(IrpTable::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Runs `f` on the IRP table. Lock order: the IRP table before the pool.
pub(crate) fn with_table<R>(f: impl FnOnce(&mut IrpTable) -> R) -> R {
    f(&mut lock(&IRPS))
}

/// Starts tracking an IRP in the `Driver` state, replacing any earlier record.
pub(crate) fn track(irp: *mut IRP, origin: Origin) -> u64 {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    with_table(|table| table.insert(irp as usize, IrpRecord { id, origin, state: IrpState::Driver }));
    id
}

/// What `irp` refers to.
pub(crate) fn lookup(irp: *mut IRP) -> Lookup {
    with_table(|table| match table.get(&(irp as usize)) {
        Some(_) => Lookup::Tracked,
        None if pool::freed_kind(irp as usize) == Some(BlockKind::Irp) => Lookup::Freed,
        None => Lookup::Unknown,
    })
}

/// Whether the IRP is still the one with `id`, in state `state`.
pub(crate) fn is(irp: *mut IRP, id: u64, state: IrpState) -> bool {
    with_table(|table| table.get(&(irp as usize)).is_some_and(|r| r.id == id && r.state == state))
}

/// Moves the IRP with `id` from `from` to `to`; returns whether it was in `from`.
pub(crate) fn transition(irp: *mut IRP, id: u64, from: IrpState, to: IrpState) -> bool {
    with_table(|table| match table.get_mut(&(irp as usize)) {
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
    with_table(|table| {
        let mut owned = Vec::new();
        for irp in table.inside(address, address.saturating_add(len.max(1))) {
            if table.remove(&irp).is_some_and(|r| r.state == IrpState::Provider) {
                owned.push(irp);
            }
        }
        owned
    })
}

/// The state of the IRP at `address`, for leak details.
pub(crate) fn state_of(address: usize) -> Option<IrpState> {
    with_table(|table| table.get(&address).map(|r| r.state))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(origin: Origin, state: IrpState) -> IrpRecord {
        IrpRecord { id: 1, origin, state }
    }

    /// A freed range holds the initialized IRPs inside it, wherever they sit, and an allocated
    /// IRP only at its start; nothing outside it, and nothing after a removal.
    #[test]
    fn a_range_finds_initialized_irps_inside_and_an_allocated_one_at_its_start() {
        let mut table = IrpTable::new();
        table.insert(0x1000, record(Origin::Allocated, IrpState::Provider));
        table.insert(0x1100, record(Origin::Initialized, IrpState::Driver));
        table.insert(0x1f00, record(Origin::Initialized, IrpState::Provider));
        table.insert(0x2000, record(Origin::Initialized, IrpState::Provider));
        table.insert(0x0f00, record(Origin::Initialized, IrpState::Provider));
        assert_eq!(table.inside(0x1000, 0x2000), vec![0x1000, 0x1100, 0x1f00]);
        assert_eq!(table.inside(0x1100, 0x1200), vec![0x1100]);
        assert_eq!(table.inside(0x1001, 0x10ff), Vec::<usize>::new());
        table.remove(&0x1100);
        assert_eq!(table.inside(0x1000, 0x2000), vec![0x1000, 0x1f00]);
        // An address reused by an allocated IRP leaves the initialized set.
        table.insert(0x1f00, record(Origin::Allocated, IrpState::Driver));
        assert_eq!(table.inside(0x1001, 0x2000), Vec::<usize>::new());
    }
}
