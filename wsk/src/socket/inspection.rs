//! Pended inspections: a connection request whose [`Admission`](crate::Admission) answered
//! [`Verdict::Pend`](crate::Verdict::Pend), decided later through an owned [`Inspection`]
//! handle with `WskInspectComplete`.
//!
//! # Where a pended inspection lives
//!
//! `WskInspectEvent` runs at DISPATCH_LEVEL, where the library does not allocate, and the
//! `WSK_INSPECT_ID` WSK passes is valid only during the call. So a listener whose admission
//! pends ([`Admission::pends`](crate::Admission::pends)) gets, at bind, a table of
//! [`MAX_PENDED`] slots, each with the copied inspect ID and its own IRP for
//! `WskInspectComplete` (which completes asynchronously, with an IRP, as Microsoft
//! documents it). The callback takes a free slot, copies the ID into it, and hands the
//! driver an [`Inspection`] by value through [`Admission::pended`](crate::Admission::pended):
//! the driver keeps it wherever it likes (its own preallocated place, a task) and decides
//! from any thread. The slot, not the handle, is what the listener and WSK's `WskAbortEvent`
//! can find: the handle moves freely, so nothing may point into it. When every slot is taken
//! the request is rejected.
//!
//! # The close contract
//!
//! A slot in use holds a call on the listener's core (`SocketCore::enter_owned`), so
//! `WskCloseSocket` cannot be issued while an inspection is pended or its
//! `WskInspectComplete` is in flight: the call is left when that IRP completes. The
//! listener's close (by `close()`, by a [`Closer`](crate::Closer), or by dropping the last
//! handle) does not wait for the driver: it marks every slot closed, and completes each
//! pended inspection that no handle has decided yet with `WskInspectReject` itself; a handle
//! decided after that does nothing and reports [`Error::Closed`]. So the verifier's
//! `WSK_INSPECTION_PENDING_AT_CLOSE` cannot fire for a driver that keeps or drops its
//! handles, and a close never hangs on a handle.
//!
//! # Slot state (one atomic word)
//!
//! ```text
//!  bits 0-1  phase   FREE, INSIDE (WskInspectEvent still runs), PENDED (the callback
//!                    returned WskInspectPend), CLAIMED (one party completes it now)
//!  bit 2     ABORTED WskAbortEvent named this inspection
//!  bit 3     CLOSED  the listener's close began (never cleared; no new inspection)
//!  bits 4-5  the decision a handle made while the callback still ran (accept, reject)
//!  bits 8..  generation: which inspection of the slot a handle belongs to
//! ```
//!
//! Every transition is a compare-exchange on that one word, so the callback's return, the
//! handle's decision, the close and the abort are totally ordered. Microsoft documents none
//! of these orders, so each may race each other: the worst is assumed.
//!
//! * A handle decided while its `WskInspectEvent` still runs (the admission handed it to
//!   another CPU that was quick): calling `WskInspectComplete` before the callback returned
//!   `WskInspectPend` is nowhere documented, so the decision is recorded in the slot and the
//!   callback answers it itself (`WskInspectAccept` / `WskInspectReject`), with no
//!   `WskInspectComplete` at all. What no client can close is the instant between the
//!   callback's last step on the slot and its return to WSK: a handle decided on another CPU
//!   in that instant calls `WskInspectComplete` just before WSK sees `WskInspectPend` (the
//!   emulator's provider accepts that order and applies the decision when the callback
//!   returns).
//! * `WskAbortEvent` (the peer left): Microsoft documents that `WskInspectComplete` of an
//!   aborted request is allowed and establishes no connection, even with `WskInspectAccept`.
//!   So the abort only marks the slot ([`Inspection::is_aborted`]); the decision still goes
//!   to WSK (which frees whatever it keeps for the request), whether it came before, during
//!   or after the abort. An abort for an ID no slot holds (a request the admission accepted
//!   at once, as Microsoft documents it may be called for too) is ignored.

use core::ffi::c_void;
use core::net::SocketAddr;
use core::ptr::NonNull;

use wsk_sys::{
    DEVICE_OBJECT, IRP, NTSTATUS, STATUS_MORE_PROCESSING_REQUIRED, STATUS_NOT_IMPLEMENTED, STATUS_PENDING,
    STATUS_UNSUCCESSFUL, WSK_INSPECT_ACTION, WSK_INSPECT_ID, WskInspectAccept, WskInspectReject,
};

use crate::error::{Error, Result};
use crate::loom::{AtomicPtr, AtomicU32, AtomicUsize, Ordering, RaceCell};
use crate::pool::PoolBox;
use crate::socket::kind::Listen;
use crate::socket::shared::{SOCKET_TAG, SocketCore};

/// Pended inspections a listener holds at once (the slots of its table); a request pended
/// beyond them is rejected.
pub const MAX_PENDED: usize = 16;

const PHASE: u32 = 0b11;
const FREE: u32 = 0;
const INSIDE: u32 = 1;
const PENDED: u32 = 2;
const CLAIMED: u32 = 3;
const ABORTED: u32 = 1 << 2;
const CLOSED: u32 = 1 << 3;
const DECIDED_SHIFT: u32 = 4;
const DECIDED: u32 = 0b11 << DECIDED_SHIFT;
const DECIDED_ACCEPT: u32 = 1 << DECIDED_SHIFT;
const DECIDED_REJECT: u32 = 2 << DECIDED_SHIFT;
const GEN_SHIFT: u32 = 8;
const GEN_ONE: u32 = 1 << GEN_SHIFT;

fn gen_of(state: u32) -> u32 {
    state >> GEN_SHIFT
}

/// The WSK action of a decision.
fn action_of(accept: bool) -> WSK_INSPECT_ACTION {
    if accept { WskInspectAccept } else { WskInspectReject }
}

/// The callback takes a free slot: a new generation, in phase INSIDE. `None` when the slot is
/// in use or the listener closing.
pub(crate) fn slot_claim(state: &AtomicU32) -> Option<u32> {
    let now = state.load(Ordering::Acquire);
    if now & PHASE != FREE || now & CLOSED != 0 {
        return None;
    }
    let next = (now & !((1 << GEN_SHIFT) - 1)).wrapping_add(GEN_ONE) | INSIDE;
    state.compare_exchange(now, next, Ordering::AcqRel, Ordering::Acquire).ok().map(|_| gen_of(next))
}

/// The callback gives a slot it claimed back unused (the inspection was not pended).
pub(crate) fn slot_abandon(state: &AtomicU32) {
    // Only the callback changes an INSIDE slot's phase; the others only add flags.
    state.fetch_and(!(PHASE | DECIDED | ABORTED), Ordering::AcqRel);
}

/// What the callback answers WSK once the admission has the handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Finish {
    /// `WskInspectPend`: the slot is PENDED, its handle (or the close) completes it.
    Pend,
    /// Decided already (by the handle meanwhile, or rejected because the close began): this
    /// action; the slot is free again and its call must be left.
    Answer(WSK_INSPECT_ACTION),
}

/// The callback's last step on the slot it filled.
pub(crate) fn slot_finish(state: &AtomicU32) -> Finish {
    let mut now = state.load(Ordering::Acquire);
    loop {
        let (next, finish) = if now & CLOSED != 0 {
            (now & !(PHASE | DECIDED | ABORTED), Finish::Answer(WskInspectReject))
        } else if now & DECIDED != 0 {
            let accept = now & DECIDED == DECIDED_ACCEPT;
            (now & !(PHASE | DECIDED | ABORTED), Finish::Answer(action_of(accept)))
        } else {
            ((now & !PHASE) | PENDED, Finish::Pend)
        };
        match state.compare_exchange(now, next, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return finish,
            Err(actual) => now = actual,
        }
    }
}

/// What a handle's decision did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decide {
    /// Recorded for the callback still running, which answers it.
    Recorded,
    /// The handle claimed the pended slot: it issues `WskInspectComplete`.
    Claimed,
    /// The listener's close completed the inspection already (or began before the callback
    /// returned): nothing to do.
    Gone,
}

/// A handle of generation `generation` decides.
pub(crate) fn slot_decide(state: &AtomicU32, generation: u32, accept: bool) -> Decide {
    let mut now = state.load(Ordering::Acquire);
    loop {
        if gen_of(now) != generation {
            return Decide::Gone;
        }
        let (next, decide) = match now & PHASE {
            INSIDE if now & CLOSED == 0 => {
                (now | if accept { DECIDED_ACCEPT } else { DECIDED_REJECT }, Decide::Recorded)
            }
            PENDED => ((now & !PHASE) | CLAIMED, Decide::Claimed),
            _ => return Decide::Gone,
        };
        match state.compare_exchange(now, next, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return decide,
            Err(actual) => now = actual,
        }
    }
}

/// The listener's close marks the slot closed, and claims it when it is pended (it then
/// issues `WskInspectReject`). Returns whether it claimed it.
pub(crate) fn slot_close(state: &AtomicU32) -> bool {
    let mut now = state.load(Ordering::Acquire);
    loop {
        let claim = now & PHASE == PENDED;
        let next = if claim { (now & !PHASE) | CLAIMED | CLOSED } else { now | CLOSED };
        if next == now {
            return false;
        }
        match state.compare_exchange(now, next, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return claim,
            Err(actual) => now = actual,
        }
    }
}

/// `WskInspectComplete` of a claimed slot completed: the slot is free again.
pub(crate) fn slot_release(state: &AtomicU32) {
    state.fetch_and(!(PHASE | DECIDED | ABORTED), Ordering::AcqRel);
}

/// `WskAbortEvent` for the inspection of generation `generation`: marks it while it is pended or
/// being completed. Not while its callback runs: its copied ID may not be written yet (and
/// Microsoft documents the abort only for a request whose callback returned).
pub(crate) fn slot_abort(state: &AtomicU32, generation: u32) -> bool {
    let mut now = state.load(Ordering::Acquire);
    while gen_of(now) == generation && matches!(now & PHASE, PENDED | CLAIMED) {
        match state.compare_exchange(now, now | ABORTED, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return true,
            Err(actual) => now = actual,
        }
    }
    false
}

/// One pended inspection's place.
struct Slot {
    state: AtomicU32,
    /// The copied `WSK_INSPECT_ID` (its fields), for `WskAbortEvent` and the completion.
    key: AtomicUsize,
    serial: AtomicU32,
    /// The ID as passed to `WskInspectComplete`: written by the party that claimed the slot,
    /// read by the provider during the call.
    id: RaceCell<WSK_INSPECT_ID>,
    /// The listener core's context: set before the table is shared.
    core: AtomicPtr<c_void>,
    /// The IRP of this slot's `WskInspectComplete`; ours whenever the slot is not CLAIMED.
    irp: NonNull<IRP>,
}

/// The pended-inspection table of a conditional-accept listener: freed with the last of the
/// listener's core and the [`Inspection`] handles (each holds a reference).
///
/// # Invariants
/// Every slot's IRP came from `IoAllocateIrp` with one stack location and is freed with the
/// table. A slot in phase INSIDE, PENDED or CLAIMED holds a call on the listener's core.
pub(crate) struct Inspections {
    refs: AtomicU32,
    slots: [Slot; MAX_PENDED],
}

// SAFETY: the shared fields are atomics; a slot's `id` and IRP are used only by the party that
// claimed it (the state word's protocol), and the provider during the call.
unsafe impl Sync for Inspections {}
// SAFETY: as above; the IRPs may be used and freed from any thread.
unsafe impl Send for Inspections {}

type TableBox = PoolBox<Inspections, SOCKET_TAG>;

impl Inspections {
    /// A table with its IRPs; one reference, the core's. IRQL <= DISPATCH_LEVEL.
    pub(crate) fn new() -> Result<NonNull<Inspections>> {
        let mut irps = [None::<NonNull<IRP>>; MAX_PENDED];
        for irp in &mut irps {
            // SAFETY: plain IRP allocation.
            *irp = NonNull::new(unsafe { wsk_sys::IoAllocateIrp(1, 0) });
        }
        let free_all = |irps: &[Option<NonNull<IRP>>]| {
            for irp in irps.iter().flatten() {
                // SAFETY: allocated above, never used.
                unsafe { wsk_sys::IoFreeIrp(irp.as_ptr()) };
            }
        };
        if irps.iter().any(Option::is_none) {
            free_all(&irps);
            return Err(Error::NoMemory);
        }
        let slots = core::array::from_fn(|at| Slot {
            state: AtomicU32::new(0),
            key: AtomicUsize::new(0),
            serial: AtomicU32::new(0),
            id: RaceCell::new(WSK_INSPECT_ID { Key: 0, SerialNumber: 0 }),
            core: AtomicPtr::new(core::ptr::null_mut()),
            irp: irps[at].unwrap_or(NonNull::dangling()),
        });
        match TableBox::try_new_tagged(Inspections { refs: AtomicU32::new(1), slots }) {
            // INVARIANT: every IRP allocated above, one per slot.
            Ok(table) => Ok(TableBox::into_raw(table)),
            Err(_) => {
                free_all(&irps);
                Err(Error::NoMemory)
            }
        }
    }

    /// Records the listener core's context in every slot; before the table is shared.
    pub(crate) fn attach(&self, context: *mut c_void) {
        for slot in &self.slots {
            slot.core.store(context, Ordering::Release);
        }
    }

    /// Drops one reference; the last frees the IRPs and the table. IRQL <= DISPATCH_LEVEL.
    ///
    /// # Safety
    /// The caller owns one reference to the live table and does not use it afterwards.
    pub(crate) unsafe fn release(table: NonNull<Inspections>) {
        // SAFETY: the caller's reference keeps the table live until the decrement.
        if unsafe { table.as_ref() }.refs.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        // SAFETY: that was the last reference; the table came from `TableBox::into_raw`.
        let table = unsafe { TableBox::from_raw_tagged(table) };
        for slot in &table.slots {
            // SAFETY: no reference is left, so no slot is claimed: every IRP is ours (invariant).
            unsafe { wsk_sys::IoFreeIrp(slot.irp.as_ptr()) };
        }
    }

    /// The listener's close began (`CLOSING` is set on its core): marks every slot closed
    /// and completes each pended inspection with `WskInspectReject`. Handles decided later do
    /// nothing. Idempotent. IRQL <= DISPATCH_LEVEL.
    pub(crate) fn close(&self) {
        for slot in &self.slots {
            if slot_close(&slot.state) {
                // Claimed: the slot's call is still held; the completion leaves it. A failure
                // has nothing left to tell: the IRP's completion frees the slot either way.
                let _ = slot.complete(WskInspectReject);
            }
        }
    }

    /// `WskAbortEvent` for `id`: marks the inspection that holds it, if any.
    /// IRQL <= DISPATCH_LEVEL.
    pub(crate) fn abort(&self, id: WSK_INSPECT_ID) {
        for slot in &self.slots {
            let generation = gen_of(slot.state.load(Ordering::Acquire));
            if slot.key.load(Ordering::Acquire) == id.Key
                && slot.serial.load(Ordering::Acquire) == id.SerialNumber
                && slot_abort(&slot.state, generation)
            {
                return;
            }
        }
    }

    /// The callback pends the request `id` from `peer` on `core` (`WskInspectEvent`, with its
    /// admission's `Verdict::Pend`): hands the admission its handle, and returns what the
    /// callback answers. IRQL <= DISPATCH_LEVEL; allocates nothing.
    ///
    /// # Safety
    /// `this` is the live table of `core` (the core holds a reference for its life).
    pub(crate) unsafe fn pend(
        this: NonNull<Inspections>,
        core: &SocketCore<Listen>,
        id: WSK_INSPECT_ID,
        peer: SocketAddr,
        hand_over: impl FnOnce(Inspection),
    ) -> WSK_INSPECT_ACTION {
        // SAFETY: live while the core is (caller), which the running callback keeps live.
        let table = unsafe { this.as_ref() };
        let Some((index, generation)) = table
            .slots
            .iter()
            .enumerate()
            .find_map(|(at, slot)| slot_claim(&slot.state).map(|generation| (at, generation)))
        else {
            return WskInspectReject;
        };
        let slot = &table.slots[index];
        // INVARIANT: the slot in use holds a call, or is given back at once.
        if core.enter_owned().is_err() {
            slot_abandon(&slot.state);
            return WskInspectReject;
        }
        slot.key.store(id.Key, Ordering::Release);
        slot.serial.store(id.SerialNumber, Ordering::Release);
        table.refs.fetch_add(1, Ordering::Relaxed);
        // INVARIANT: the reference just taken belongs to the handle.
        hand_over(Inspection { table: this, index, generation, peer });
        match slot_finish(&slot.state) {
            Finish::Pend => wsk_sys::WskInspectPend,
            Finish::Answer(action) => {
                core.leave();
                action
            }
        }
    }
}

impl Slot {
    /// Issues `WskInspectComplete` for the slot this party claimed; its IRP's completion
    /// frees the slot and leaves the slot's call. IRQL <= DISPATCH_LEVEL.
    fn complete(&self, action: WSK_INSPECT_ACTION) -> Result<()> {
        let id =
            WSK_INSPECT_ID { Key: self.key.load(Ordering::Acquire), SerialNumber: self.serial.load(Ordering::Acquire) };
        let id_ptr = self.id.with_mut(|cell| cell);
        // SAFETY: the slot is claimed by us: nothing else touches its ID or its IRP, and the
        // provider's use of both ended with the previous completion.
        unsafe { id_ptr.write(id) };
        let irp = self.irp.as_ptr();
        // SAFETY: our IRP (claimed slot), not in flight.
        unsafe { wsk_sys::IoReuseIrp(irp, STATUS_UNSUCCESSFUL) };
        let context = core::ptr::from_ref(self).cast_mut().cast::<c_void>();
        // SAFETY: as above; the routine runs once when the provider completes the IRP.
        unsafe { wsk_sys::IoSetCompletionRoutine(irp, Some(complete_done), context, true, true, true) };
        let core = self.core.load(Ordering::Acquire);
        let call = |core: crate::socket::shared::CoreRef<'_, Listen>| {
            // SAFETY: the slot's call is held (invariant) and the socket exists (the callback
            // that filled the slot ran on it).
            let (socket, table) = unsafe { core.dispatch_held() };
            let Some(complete) = table.WskInspectComplete else {
                // Nothing in flight: free the slot and leave its call here.
                slot_release(&self.state);
                core.leave();
                return STATUS_NOT_IMPLEMENTED;
            };
            // SAFETY: the listen socket is open (its call is held); the ID lives in the slot
            // and the IRP is ours until its completion, which frees the slot. Nothing here
            // touches the slot or the core after the call: its completion may have freed both.
            unsafe { complete(socket, id_ptr, action, irp) }
        };
        // SAFETY: the context of the listener's core, kept live by the slot's call.
        let status = unsafe { SocketCore::<Listen>::with_context(core, call) }.unwrap_or(STATUS_UNSUCCESSFUL);
        if status == STATUS_PENDING { Ok(()) } else { crate::error::check(status) }
    }
}

/// Completion routine of a slot's `WskInspectComplete` IRP: frees the slot, then leaves its
/// call (which may let the listener's close proceed, and free the table). IRQL <=
/// DISPATCH_LEVEL.
unsafe extern "system" fn complete_done(_device: *mut DEVICE_OBJECT, _irp: *mut IRP, context: *mut c_void) -> NTSTATUS {
    let Some(slot) = NonNull::new(context.cast::<Slot>()) else { return STATUS_MORE_PROCESSING_REQUIRED };
    // SAFETY: the slot's call keeps the core, so its table, live until it is left below.
    let slot = unsafe { slot.as_ref() };
    let core = slot.core.load(Ordering::Acquire);
    // The slot (and its IRP) may be claimed again from here on: the I/O manager does not
    // touch an IRP whose completion routine returns STATUS_MORE_PROCESSING_REQUIRED.
    slot_release(&slot.state);
    // SAFETY: the context of the listener's core, live while the call is held; the slot is
    // not touched after the call is left.
    unsafe { SocketCore::<Listen>::with_context(core, |core| core.leave()) };
    STATUS_MORE_PROCESSING_REQUIRED
}

/// A connection request its listener's [`Admission`](crate::Admission) pended
/// ([`Verdict::Pend`](crate::Verdict::Pend)): the driver decides it later, from any thread,
/// with [`accept`](Self::accept) or [`reject`](Self::reject) (each consumes the handle, so
/// `WskInspectComplete` is called at most once); dropping it rejects.
///
/// While the handle exists the listening socket's `WskCloseSocket` is not issued. The
/// listener's close does not wait for it: it rejects the request itself, and the handle's
/// decision then does nothing ([`Error::Closed`]). See [`crate::socket::inspection`].
///
/// # Invariants
/// `table` is live and this handle holds one reference on it; `index` is a slot of it and
/// `generation` the generation the handle was made for.
pub struct Inspection {
    table: NonNull<Inspections>,
    index: usize,
    generation: u32,
    peer: SocketAddr,
}

// SAFETY: the table is shared through atomics (its `Sync`); the handle may move to any thread.
unsafe impl Send for Inspection {}
// SAFETY: `&Inspection` only reads.
unsafe impl Sync for Inspection {}

impl Inspection {
    fn slot(&self) -> &Slot {
        // SAFETY: live while this handle holds its reference (invariant).
        &unsafe { self.table.as_ref() }.slots[self.index]
    }

    /// The peer that asks to connect. Any IRQL.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Whether WSK reported that the request was dropped (`WskAbortEvent`: the peer left).
    /// Completing it is still allowed and establishes nothing. Any IRQL.
    pub fn is_aborted(&self) -> bool {
        let state = self.slot().state.load(Ordering::Acquire);
        gen_of(state) == self.generation && state & ABORTED != 0
    }

    /// Whether the listener's close has begun: the request was (or is being) rejected by the
    /// listener, and a decision of this handle does nothing. Any IRQL.
    pub fn is_closed(&self) -> bool {
        let state = self.slot().state.load(Ordering::Acquire);
        gen_of(state) != self.generation || state & CLOSED != 0
    }

    /// Lets the connection go on to the listener's accept (`WskInspectAccept`). `Ok` when
    /// the decision went to WSK (or to the inspection's callback, still running); an aborted
    /// request is not established regardless. [`Error::Closed`] when the listener's close
    /// rejected it first; a failure of `WskInspectComplete` as its status.
    /// IRQL <= DISPATCH_LEVEL.
    pub fn accept(self) -> Result<()> {
        let this = core::mem::ManuallyDrop::new(self);
        let done = this.decide(true);
        // SAFETY: the handle's reference, released once (the handle is not dropped).
        unsafe { Inspections::release(this.table) };
        done
    }

    /// Refuses the connection (`WskInspectReject`). As [`accept`](Self::accept) otherwise.
    /// IRQL <= DISPATCH_LEVEL.
    pub fn reject(self) -> Result<()> {
        let this = core::mem::ManuallyDrop::new(self);
        let done = this.decide(false);
        // SAFETY: the handle's reference, released once (the handle is not dropped).
        unsafe { Inspections::release(this.table) };
        done
    }

    fn decide(&self, accept: bool) -> Result<()> {
        let slot = self.slot();
        // An aborted request is completed as any other: Microsoft documents that
        // `WskInspectComplete` of an aborted request establishes nothing, even to accept, and
        // the provider may keep the request's state until it is completed.
        match slot_decide(&slot.state, self.generation, accept) {
            Decide::Recorded => Ok(()),
            Decide::Claimed => slot.complete(action_of(accept)),
            Decide::Gone => Err(Error::Closed),
        }
    }
}

impl Drop for Inspection {
    /// Rejects the request (unless the listener's close did). IRQL <= DISPATCH_LEVEL.
    fn drop(&mut self) {
        let _ = self.decide(false);
        // SAFETY: the handle's reference, released once.
        unsafe { Inspections::release(self.table) };
    }
}

impl core::fmt::Debug for Inspection {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Inspection").field("peer", &self.peer).field("aborted", &self.is_aborted()).finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use core::net::Ipv4Addr;
    use std::cell::{Cell, RefCell};
    use std::vec::Vec;

    use wsk_sys::{
        STATUS_SUCCESS, WSK_CLIENT_LISTEN_DISPATCH, WSK_PROVIDER_BASIC_DISPATCH, WSK_PROVIDER_LISTEN_DISPATCH,
        WSK_SOCKET, WskInspectPend,
    };

    use super::*;
    use crate::socket::admission::{Admission, Verdict};

    std::thread_local! {
        /// `WskInspectComplete` calls seen by the stand-in provider: (serial, action).
        static COMPLETED: RefCell<Vec<(u32, WSK_INSPECT_ACTION)>> = const { RefCell::new(Vec::new()) };
        /// IRPs the stand-in keeps pending (completed by the test) while set.
        static HOLD: Cell<bool> = const { Cell::new(false) };
        static HELD: RefCell<Vec<*mut IRP>> = const { RefCell::new(Vec::new()) };
        /// Handles the test admission stored (its own place).
        static STORED: RefCell<Vec<Inspection>> = const { RefCell::new(Vec::new()) };
        /// What the test admission does with a handle inside the callback.
        static INSIDE_DECISION: Cell<Option<bool>> = const { Cell::new(None) };
    }

    /// Completes `irp` with `status`, as a provider does.
    fn finish(irp: *mut IRP, status: NTSTATUS) {
        // SAFETY: an IRP the client passed us, not completed yet.
        unsafe { (*irp).IoStatus.Status = status };
        // SAFETY: as above; its completion routine is in the next location.
        unsafe { wsk_sys::IoSetNextIrpStackLocation(irp) };
        // SAFETY: as above.
        unsafe { wsk_sys::IoCompleteRequest(irp, 0) };
    }

    unsafe extern "system" fn inspect_complete(
        _socket: *mut WSK_SOCKET,
        id: *mut WSK_INSPECT_ID,
        action: WSK_INSPECT_ACTION,
        irp: *mut IRP,
    ) -> NTSTATUS {
        // SAFETY: the client's copy of the ID, valid during the call.
        let serial = unsafe { (*id).SerialNumber };
        COMPLETED.with_borrow_mut(|seen| seen.push((serial, action)));
        if HOLD.get() {
            HELD.with_borrow_mut(|held| held.push(irp));
            return STATUS_PENDING;
        }
        finish(irp, STATUS_SUCCESS);
        STATUS_SUCCESS
    }

    unsafe extern "system" fn close_socket(_socket: *mut WSK_SOCKET, irp: *mut IRP) -> NTSTATUS {
        finish(irp, STATUS_SUCCESS);
        STATUS_SUCCESS
    }

    static PROVIDER: WSK_PROVIDER_LISTEN_DISPATCH = WSK_PROVIDER_LISTEN_DISPATCH {
        Basic: WSK_PROVIDER_BASIC_DISPATCH { WskControlSocket: None, WskCloseSocket: Some(close_socket) },
        WskBind: None,
        WskAccept: None,
        WskInspectComplete: Some(inspect_complete),
        WskGetLocalAddress: None,
    };

    /// Pends every request; inside the callback, decides at once when the test says so,
    /// otherwise keeps the handle.
    struct Pending;

    impl Admission for Pending {
        fn inspect(&self, _peer: SocketAddr) -> Verdict {
            Verdict::Pend
        }

        fn pends(&self) -> bool {
            true
        }

        fn pended(&self, inspection: Inspection) {
            match INSIDE_DECISION.get() {
                Some(true) => inspection.accept().unwrap(),
                Some(false) => drop(inspection),
                None => STORED.with_borrow_mut(|stored| stored.push(inspection)),
            }
        }
    }

    static PENDING: Pending = Pending;

    /// Pends, but says it does not: its listener has no table.
    struct Undeclared;

    impl Admission for Undeclared {
        fn inspect(&self, _peer: SocketAddr) -> Verdict {
            Verdict::Pend
        }
    }

    static UNDECLARED: Undeclared = Undeclared;

    /// The stand-in provider's listen socket: the provider only reads its table pointer.
    struct ProviderSocket(core::cell::UnsafeCell<WSK_SOCKET>);

    // SAFETY: never written after its initialization.
    unsafe impl Sync for ProviderSocket {}

    static SOCKET: ProviderSocket =
        ProviderSocket(core::cell::UnsafeCell::new(WSK_SOCKET { Dispatch: (&raw const PROVIDER).cast() }));

    /// A listen core on the stand-in provider's socket.
    fn listener(admission: &'static dyn Admission) -> SocketCore<Listen> {
        let core = SocketCore::<Listen>::new_admitting(Some(admission)).unwrap();
        // SAFETY: a listen socket whose context is this core (the tests call its callbacks
        // with it).
        unsafe { core.set_socket(SOCKET.0.get()) };
        core
    }

    static CLIENT: &WSK_CLIENT_LISTEN_DISPATCH = &crate::socket::events::LISTEN_DISPATCH;

    /// `WskInspectEvent` for request `serial` from port `port`.
    fn inspect(core: &SocketCore<Listen>, serial: u32) -> WSK_INSPECT_ACTION {
        let peer = SocketAddr::from((Ipv4Addr::LOCALHOST, 5000));
        let mut storage = crate::addr::to_storage(&peer);
        let mut id = WSK_INSPECT_ID { Key: 7, SerialNumber: serial };
        let on_inspect = CLIENT.WskInspectEvent.unwrap();
        // SAFETY: the context of a live listen core; the address and ID live across the call.
        unsafe {
            on_inspect(core.context(), core::ptr::null_mut(), crate::addr::as_sockaddr(&mut storage), &raw mut id)
        }
    }

    fn abort(core: &SocketCore<Listen>, serial: u32) {
        let mut id = WSK_INSPECT_ID { Key: 7, SerialNumber: serial };
        let on_abort = CLIENT.WskAbortEvent.unwrap();
        // SAFETY: the context of a live listen core; the ID lives across the call.
        assert_eq!(unsafe { on_abort(core.context(), &raw mut id) }, STATUS_SUCCESS);
    }

    fn take() -> Inspection {
        STORED.with_borrow_mut(|stored| stored.remove(0))
    }

    fn completed() -> Vec<(u32, WSK_INSPECT_ACTION)> {
        COMPLETED.with_borrow_mut(core::mem::take)
    }

    /// Closes the core; `true` when the close completed at once (no call was held).
    fn closes_at_once(core: &SocketCore<Listen>) -> bool {
        let mut close = core::pin::pin!(core.close());
        let mut cx = core::task::Context::from_waker(std::task::Waker::noop());
        close.as_mut().poll(&mut cx).is_ready()
    }

    /// A pended request is completed once, with the decision and the copied ID, by the handle
    /// (accepted later, rejected later, or dropped: rejected); each slot's call is left when
    /// its completion IRP completes, and the slots are used again.
    #[test]
    fn a_pended_request_is_completed_once_by_its_handle() {
        let core = listener(&PENDING);
        for serial in 1..=3 {
            assert_eq!(inspect(&core, serial), WskInspectPend);
        }
        assert!(completed().is_empty(), "nothing completed before a decision");
        let first = take();
        assert_eq!(first.peer(), SocketAddr::from((Ipv4Addr::LOCALHOST, 5000)));
        assert!(!first.is_aborted() && !first.is_closed());
        first.accept().unwrap();
        take().reject().unwrap();
        drop(take());
        assert_eq!(completed(), [(1, WskInspectAccept), (2, WskInspectReject), (3, WskInspectReject)]);
        // SAFETY: the core's own table.
        let table = unsafe { core.inspections().unwrap().as_ref() };
        assert!(table.slots.iter().all(|slot| slot.state.load(Ordering::Acquire) & PHASE == FREE));
        assert_eq!(table.refs.load(Ordering::Acquire), 1, "a handle's reference outlived it");
        // Every slot can pend again, and one request beyond them is rejected.
        for serial in 10..10 + MAX_PENDED as u32 {
            assert_eq!(inspect(&core, serial), WskInspectPend);
        }
        assert_eq!(inspect(&core, 99), WskInspectReject, "table full");
        STORED.with_borrow_mut(core::mem::take);
        assert_eq!(completed().len(), MAX_PENDED);
        assert!(closes_at_once(&core), "a completed inspection still holds its call");
    }

    /// A handle decided inside the callback is answered by the callback, with no
    /// `WskInspectComplete`; an admission that does not declare it pends has no table, and
    /// its pended request is rejected.
    #[test]
    fn a_decision_inside_the_callback_is_its_answer() {
        let core = listener(&PENDING);
        INSIDE_DECISION.set(Some(true));
        assert_eq!(inspect(&core, 1), WskInspectAccept);
        INSIDE_DECISION.set(Some(false));
        assert_eq!(inspect(&core, 2), WskInspectReject);
        INSIDE_DECISION.set(None);
        assert!(completed().is_empty());
        let plain = listener(&UNDECLARED);
        assert!(plain.inspections().is_none());
        assert_eq!(inspect(&plain, 1), WskInspectReject);
    }

    /// `WskAbortEvent` marks the pended inspection with that ID (and no other); completing it
    /// afterwards still reaches WSK, once.
    #[test]
    fn an_abort_marks_its_inspection_and_the_completion_still_goes_to_wsk() {
        let core = listener(&PENDING);
        assert_eq!(inspect(&core, 1), WskInspectPend);
        assert_eq!(inspect(&core, 2), WskInspectPend);
        abort(&core, 2);
        abort(&core, 42);
        let (first, second) = (take(), take());
        assert!(!first.is_aborted());
        assert!(second.is_aborted());
        second.accept().unwrap();
        first.accept().unwrap();
        assert_eq!(completed(), [(2, WskInspectAccept), (1, WskInspectAccept)]);
    }

    /// The close rejects what is pended, once; the handles then do nothing and say so. Their
    /// completions, pending at WSK, hold the close until they complete.
    #[test]
    fn the_close_rejects_pended_inspections_and_waits_for_their_completions() {
        let core = listener(&PENDING);
        assert_eq!(inspect(&core, 1), WskInspectPend);
        assert_eq!(inspect(&core, 2), WskInspectPend);
        let held_by_driver = take();
        HOLD.set(true);
        let mut close = core::pin::pin!(core.close());
        let mut cx = core::task::Context::from_waker(std::task::Waker::noop());
        assert!(close.as_mut().poll(&mut cx).is_pending(), "closed with completions in flight");
        HOLD.set(false);
        assert_eq!(completed(), [(1, WskInspectReject), (2, WskInspectReject)]);
        assert!(held_by_driver.is_closed());
        assert_eq!(held_by_driver.accept(), Err(Error::Closed));
        drop(take());
        assert!(completed().is_empty(), "completed twice");
        // A request after the close began is rejected at once.
        assert_eq!(inspect(&core, 3), WskInspectReject);
        for irp in HELD.with_borrow_mut(core::mem::take) {
            finish(irp, STATUS_SUCCESS);
        }
        assert!(close.as_mut().poll(&mut cx).is_ready());
    }

    /// The last owner dropped with inspections pended: they are rejected and the background
    /// close follows (Miri reports a leak or a use after free otherwise).
    #[test]
    fn dropping_the_listener_rejects_pended_inspections() {
        let core = listener(&PENDING);
        assert_eq!(inspect(&core, 1), WskInspectPend);
        let kept = take();
        drop(core);
        assert_eq!(completed(), [(1, WskInspectReject)]);
        assert!(kept.is_closed());
        assert_eq!(kept.reject(), Err(Error::Closed));
    }

    /// The state word's transitions, one by one.
    #[test]
    fn the_slot_protocol() {
        let state = AtomicU32::new(0);
        let generation = slot_claim(&state).unwrap();
        assert_eq!(slot_claim(&state), None, "in use");
        assert_eq!(slot_decide(&state, generation, true), Decide::Recorded);
        assert_eq!(slot_finish(&state), Finish::Answer(WskInspectAccept));
        let again = slot_claim(&state).unwrap();
        assert_ne!(again, generation);
        assert_eq!(slot_finish(&state), Finish::Pend);
        assert!(!slot_abort(&state, generation), "an older generation");
        assert!(slot_abort(&state, again));
        assert_eq!(slot_decide(&state, generation, true), Decide::Gone);
        assert_eq!(slot_decide(&state, again, false), Decide::Claimed);
        assert!(!slot_close(&state), "claimed by the handle");
        slot_release(&state);
        assert_eq!(slot_claim(&state), None, "closed");
        let closing = AtomicU32::new(0);
        let inside = slot_claim(&closing).unwrap();
        assert!(!slot_close(&closing));
        assert_eq!(slot_decide(&closing, inside, true), Decide::Gone);
        assert_eq!(slot_finish(&closing), Finish::Answer(WskInspectReject));
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use loom::sync::Arc;

    use super::*;

    /// The callback's return, the handle's decision and the listener's close race on one
    /// slot: a request the callback pended is completed exactly once (by the handle or by
    /// the close), and one the callback answered itself is never completed.
    #[test]
    fn loom_pended_inspection_is_completed_exactly_once() {
        loom::model(|| {
            let state = Arc::new(AtomicU32::new(0));
            let generation = slot_claim(&state).unwrap();
            let callback = {
                let state = state.clone();
                loom::thread::spawn(move || slot_finish(&state))
            };
            let handle = {
                let state = state.clone();
                loom::thread::spawn(move || slot_decide(&state, generation, true))
            };
            let closed = slot_close(&state);
            let finish = callback.join().unwrap();
            let decide = handle.join().unwrap();
            let completions = usize::from(closed) + usize::from(decide == Decide::Claimed);
            match finish {
                Finish::Pend => assert_eq!(completions, 1, "a pended request completed {completions} times"),
                Finish::Answer(_) => assert_eq!(completions, 0, "a request answered by its callback was completed"),
            }
            if decide == Decide::Recorded {
                assert!(matches!(finish, Finish::Answer(_)), "a recorded decision was lost");
            }
            assert_eq!(slot_claim(&state), None, "a closed slot was taken again");
        });
    }

    /// The close races the callback's return while the driver keeps its handle undecided:
    /// a request left pended is always claimed by the close (so the close never waits for
    /// the driver), and one the close came too early for is answered by the callback.
    #[test]
    fn loom_the_close_never_leaves_a_held_handle_pended() {
        loom::model(|| {
            let state = Arc::new(AtomicU32::new(0));
            let generation = slot_claim(&state).unwrap();
            let callback = {
                let state = state.clone();
                loom::thread::spawn(move || slot_finish(&state))
            };
            let closed = slot_close(&state);
            match callback.join().unwrap() {
                Finish::Pend => assert!(closed, "a pended request the close did not claim"),
                Finish::Answer(action) => {
                    assert!(!closed);
                    assert_eq!(action, WskInspectReject);
                }
            }
            assert_eq!(slot_decide(&state, generation, true), Decide::Gone, "the held handle still decides");
        });
    }
}
