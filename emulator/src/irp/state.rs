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

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use wsk_sys::IRP;

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

static IRPS: Mutex<BTreeMap<usize, IrpRecord>> = Mutex::new(BTreeMap::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Runs `f` on the IRP table. Lock order: the IRP table before the pool.
pub(crate) fn with_table<R>(f: impl FnOnce(&mut BTreeMap<usize, IrpRecord>) -> R) -> R {
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
        let inside: Vec<(usize, IrpState)> =
            table.range(address..address.saturating_add(len.max(1))).map(|(&irp, r)| (irp, r.state)).collect();
        for (irp, _) in &inside {
            table.remove(irp);
        }
        inside.into_iter().filter(|(_, state)| *state == IrpState::Provider).map(|(irp, _)| irp).collect()
    })
}

/// The state of the IRP at `address`, for leak details.
pub(crate) fn state_of(address: usize) -> Option<IrpState> {
    with_table(|table| table.get(&address).map(|r| r.state))
}
