//! Reflection ([`EventConfig::reflect`](super::EventConfig::reflect)): a connection's received
//! data sent straight back by its receive callback, at DISPATCH_LEVEL, without waking the
//! stream's task.
//!
//! # What the callback does
//!
//! When the stream's task waits for data (its last poll found nothing else to do) and the
//! stream holds nothing (no retained byte: the ring is empty, the user holds no item, and no
//! reflection is in flight; no refusal outstanding; the stream never used its copy path) and
//! the indication list maps, the callback keeps the list (charged to the bound and the budget
//! like any retained list), takes a call and an owner reference on the socket for it (a
//! [`Retained`] item, as the stream would hand out) and issues `WskSend` with the IRP of a
//! [`Reflector`] taken from the library's cache: over the entry's own `WSK_BUF` for a list of
//! one entry, over the reflector's shadow MDLs (`crate::shadow`) for a list of several, in one
//! send as the task's sends of such items go, and entry by entry only when the shadow MDLs do
//! not cover the list. Otherwise the list takes the stream's usual path. Because a reflection needs the stream to hold nothing, what the stream hands out
//! later was indicated after every reflected byte; and the stream hands out nothing while a
//! reflection is in flight (it may send in parts: an entry of the list at a time, or the rest
//! after a short send), so a send of a later item is issued after the whole reflection
//! completed: the bytes go out in the order they arrived, if the stream's user sends only
//! what it received (an echo). Sends of other data interleave with reflections at item
//! boundaries.
//!
//! Microsoft's pages on the WSK event callbacks allow a callback to start other WSK requests
//! (not to wait for them), and `WskSend` takes IRQL <= DISPATCH_LEVEL. What they do not say
//! is whether the send may complete inside that call, before the callback returned: assumed
//! that it may. Then the callback returns `STATUS_SUCCESS` (the data was used during the
//! callback, WSK takes it back on return) and never calls `WskRelease`; releasing a list
//! before the callback that indicated it returned `STATUS_PENDING` is something the pages do
//! not speak of either, and this way it never happens. A send that completes later releases
//! the list from its completion routine (`WskRelease` takes IRQL <= DISPATCH_LEVEL).
//!
//! Reflection stops for good on a connection whose stream had to hold items back behind a
//! reflection that outlived its callback (its send waited on the provider), and on one whose
//! stream used its copy path (WSK held data back after a refusal): data then comes faster than
//! it goes, a stream rather than requests and responses, and the task's own sends, several
//! items in one, do better there (see BENCHMARKS.md). The copy path's items hold no WSK
//! memory, so nothing would tell a reflection that the user still has one to send.
//!
//! A partial completion (fewer bytes than asked, without an error) is answered by a send of
//! the rest from the completion routine, with the same IRP: Microsoft does not say a stream
//! socket's `WskSend` sends everything, so we assume it may not. A completion that moved no
//! byte is an error.
//!
//! # Memory
//!
//! A connection holds no reflector between reflections: an idle connection costs the 32 bytes
//! of its [`Reflecting`] only. Reflectors (an IRP, a shadow MDL set and a small block, about
//! 2 KiB) come from a cache of [`CACHED_REFLECTORS`]; the callback only takes from it (it
//! never allocates). When the cache is empty the list takes the stream's usual path and the
//! stream, woken for it anyway, allocates one reflector into the cache (PASSIVE_LEVEL, in the
//! task), so the cache grows to the reflections in flight at once; a reflector given back to a
//! full cache is freed. The cache is freed when the WSK registration goes.
//!
//! # The per-connection word
//!
//! ```text
//!  BUSY         a reflection is in flight (its reflector in `current`)
//!  IN_CALLBACK  the callback that started it has not seen `WskSend` return yet
//!  DONE         the send completed while IN_CALLBACK: the callback finishes it
//!  CANCEL       the stream detached: no more reflections; the one in flight is cancelled
//!  WAITING      the stream waits for the reflection to end (it is about to report the end)
//!  PARKED       the stream's last poll waits for data only: a reflection does not wake it
//!  NEED         the cache had no reflector: the stream allocates one
//!  ORPHAN       the reflection ended while pinned: the last unpin gives its reflector back
//!  ENABLED      reflection is on for the connection
//!  OFF          no more reflections: the stream had to wait for one that outlived its
//!               callback, or used its copy path
//!  bits 16..    pins: parties about to cancel the IRP of `current` (see below)
//! ```
//!
//! A reflection neither pushes to the ring nor records anything the stream must act on, so
//! it wakes the stream only when the stream asked for it (`WAITING`), when it failed (the
//! stream reports the error), or when the stream's last poll was not simply waiting for data
//! (`PARKED` clear: it may be waiting for this callback to leave). That is the point of it: a
//! request-response exchange costs no hand-over to the task's thread. The callback reads
//! `PARKED` after it left (its count dropped), and a poll clears `PARKED` before it reads the
//! count, each with a `SeqCst` fence between: a callback that still saw `PARKED` set left
//! before the poll looked, so the poll does not wait for it (loom model
//! `loom_a_reflecting_callback_that_leaves_during_a_poll_wakes_it_or_is_seen_gone`).
//!
//! Cancelling touches a reflector the canceller does not own: the reflection may end at any
//! moment and its reflector go back to the cache, to another connection. So a canceller
//! *pins* first (adds to the pin count and looks at `BUSY` in the same step); while pins are
//! held, an ending reflection leaves its reflector in `current` and sets `ORPHAN`, and the
//! last unpin gives it back. Pins are taken only once `CANCEL` is set, and no reflection
//! starts after that, so `current` cannot change under a pin.

use core::cell::UnsafeCell;
use core::ffi::c_void;
use core::ptr::NonNull;

use wsk_sys::{
    DEVICE_OBJECT, IRP, NT_SUCCESS, NTSTATUS, STATUS_CANCELLED, STATUS_CONNECTION_ABORTED,
    STATUS_MORE_PROCESSING_REQUIRED, WSK_BUF, WSK_DATA_INDICATION,
};

use super::connection::{ConnState, Received};
use super::retention::{Held, Retained, give_back_charge};
use crate::error::{Error, Result};
use crate::loom::{AtomicPtr, AtomicU32, AtomicU64, Ordering, fence};
use crate::pool::PoolBox;
use crate::shadow::{ShadowSet, Shadows};
use crate::socket::kind::Connection;
use crate::socket::shared::SocketCore;

const BUSY: u32 = 1 << 0;
const IN_CALLBACK: u32 = 1 << 1;
const DONE: u32 = 1 << 2;
const CANCEL: u32 = 1 << 3;
const WAITING: u32 = 1 << 4;
const PARKED: u32 = 1 << 5;
const NEED: u32 = 1 << 6;
const ORPHAN: u32 = 1 << 7;
/// Reflection is on for the connection.
const ENABLED: u32 = 1 << 8;
/// No more reflections on this connection: the stream had to wait for one that outlived its
/// callback, or used its copy path.
const OFF: u32 = 1 << 9;
const PIN_ONE: u32 = 1 << 16;

/// Reflectors the library's cache keeps at most (about 2 KiB each with their IRP and shadow
/// MDLs).
pub(crate) const CACHED_REFLECTORS: usize = 32;

crate::buf_pool::static_free_cells!(
    /// The reflectors kept.
    fn reflectors() -> Reflector, CACHED_REFLECTORS
);

/// A connection's side of reflection, in its event state (see the module docs).
pub(crate) struct Reflecting {
    word: AtomicU32,
    /// The first failure's status (0: none), reported by the stream.
    failure: AtomicU32,
    /// The reflector of the reflection in flight (valid while BUSY, or while ORPHAN waits for
    /// the last unpin).
    current: AtomicPtr<Reflector>,
    /// Bytes reflected so far.
    bytes: AtomicU64,
    /// Reflections completed (wrapping): the stream's idle-limit activity.
    count: AtomicU32,
}

impl Reflecting {
    /// Reflection on (`enabled`) or off for a new connection stream.
    pub(crate) fn new(enabled: bool) -> Self {
        Self {
            word: AtomicU32::new(if enabled { ENABLED } else { 0 }),
            failure: AtomicU32::new(0),
            current: AtomicPtr::new(core::ptr::null_mut()),
            bytes: AtomicU64::new(0),
            count: AtomicU32::new(0),
        }
    }

    /// Whether reflection is on for the connection (set once, at creation). Any IRQL.
    fn enabled(&self) -> bool {
        self.word.load(Ordering::Relaxed) & ENABLED != 0
    }

    /// Bytes reflected so far. Any IRQL.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Reflections completed so far (wrapping). Any IRQL.
    pub(crate) fn count(&self) -> u32 {
        self.count.load(Ordering::Relaxed)
    }

    /// The first reflection that failed, if one did. Any IRQL.
    pub(crate) fn failure(&self) -> Option<NTSTATUS> {
        match self.failure.load(Ordering::Acquire) {
            0 => None,
            status => Some(status as NTSTATUS),
        }
    }

    /// Whether a reflection may start now (a look before the callback commits any charge).
    /// IRQL <= DISPATCH_LEVEL.
    pub(crate) fn may_start(&self) -> bool {
        self.word.load(Ordering::Acquire) & (ENABLED | BUSY | CANCEL | OFF | PARKED) == ENABLED | PARKED
    }

    /// The stream issues a copying receive: reflection goes off for good. The copied item's
    /// bytes come before anything indicated after it, and nothing tells the stream when the
    /// user is done with it (it holds no WSK memory, and counts in no retention); a stream
    /// that needs the copy path is under backpressure anyway, where reflection does not pay
    /// (see the module docs). Any IRQL.
    pub(crate) fn copy_pending(&self) {
        if self.enabled() {
            self.word.fetch_or(OFF, Ordering::AcqRel);
        }
    }

    /// The stream begins a poll: whatever it waited for, it looks again. If the cache had no
    /// reflector for a callback, one is allocated into it (PASSIVE_LEVEL: the task).
    pub(crate) fn unpark(&self) {
        if !self.enabled() {
            return;
        }
        let word = self.word.fetch_and(!(PARKED | WAITING | NEED), Ordering::SeqCst);
        // Pairs with the fence of `wake_after`: a callback that still saw `PARKED` left
        // before this poll reads the callback count.
        fence(Ordering::SeqCst);
        if word & NEED != 0
            && let Ok(reflector) = Reflector::allocate()
        {
            give(reflector);
        }
    }

    /// The stream's poll ends waiting for data only. Any IRQL.
    pub(crate) fn park(&self) {
        if !self.enabled() {
            return;
        }
        self.word.fetch_or(PARKED, Ordering::SeqCst);
    }

    /// Whether a reflection is in flight. Any IRQL.
    pub(crate) fn busy(&self) -> bool {
        self.word.load(Ordering::Acquire) & BUSY != 0
    }

    /// The stream waits for the reflection in flight to end: `true` if one is in flight (it
    /// wakes the stream when it ends), `false` if none is. Having to wait for one that
    /// outlived its callback (its send waits on the provider) turns reflection off for the
    /// connection: data then comes faster than the sends complete (a stream of data, not
    /// request and response), where the stream's own sends, several items in one, do better
    /// than reflections one indication at a time. One still in its callback is about to end,
    /// and says nothing of the kind.
    ///
    /// Any IRQL.
    pub(crate) fn wait_idle(&self) -> bool {
        let word = self.word.load(Ordering::Acquire);
        if word & (ENABLED | BUSY) != ENABLED | BUSY {
            return false;
        }
        let off = if word & IN_CALLBACK == 0 { OFF } else { 0 };
        self.word.fetch_or(WAITING | off, Ordering::AcqRel) & BUSY != 0
    }

    /// Whether a callback that reflected must wake the stream as it leaves (see the module
    /// docs). Called after the callback left. IRQL <= DISPATCH_LEVEL.
    pub(crate) fn wake_after(&self) -> bool {
        fence(Ordering::SeqCst);
        let word = self.word.load(Ordering::SeqCst);
        word & PARKED == 0 || self.failure().is_some()
    }

    /// No more reflections; cancels the one in flight, if any (its completion releases the
    /// list). By the stream's cleaner, once the stream detached and no callback is inside.
    /// IRQL <= DISPATCH_LEVEL.
    pub(crate) fn cancel(&self) {
        // Every connection stream's clean-up comes here: one without reflection has nothing
        // to cancel, and pays one load.
        if !self.enabled() {
            return;
        }
        self.word.fetch_or(CANCEL, Ordering::SeqCst);
        self.cancel_in_flight();
    }

    /// Cancels the IRP of the reflection in flight, if one is, under a pin (see the module
    /// docs). Only once `CANCEL` is set. IRQL <= DISPATCH_LEVEL.
    fn cancel_in_flight(&self) {
        let cancel = |reflector: NonNull<Reflector>| {
            // SAFETY: pinned while BUSY: the reflector stays out of the cache, and its IRP
            // allocated, until the last unpin.
            let irp = unsafe { reflector.as_ref() }.irp;
            // SAFETY: as above; cancelling one that completed does nothing (and it is not
            // sent again: CANCEL stops that).
            unsafe { wsk_sys::IoCancelIrp(irp.as_ptr()) };
        };
        self.pinned(cancel, give_back);
    }

    /// Runs `touch` on the reflector of the reflection in flight, if one is, under a pin;
    /// `give` gives back a reflector left by a reflection that ended while pinned.
    fn pinned(&self, touch: impl FnOnce(NonNull<Reflector>), give: impl FnOnce(*mut Reflector)) {
        if self.word.fetch_add(PIN_ONE, Ordering::SeqCst) & BUSY != 0
            && let Some(reflector) = NonNull::new(self.current.load(Ordering::Acquire))
        {
            touch(reflector);
        }
        self.unpin(give);
    }

    /// Ends a pin; the last one gives back (`give`) a reflector left by a reflection that
    /// ended meanwhile.
    fn unpin(&self, give: impl FnOnce(*mut Reflector)) {
        let mut word = self.word.load(Ordering::Acquire);
        loop {
            let last = word & !(PIN_ONE - 1) == PIN_ONE;
            let orphan = last && word & ORPHAN != 0;
            let next = (word - PIN_ONE) & if orphan { !ORPHAN } else { !0 };
            match self.word.compare_exchange_weak(word, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    if orphan {
                        give(self.current.swap(core::ptr::null_mut(), Ordering::AcqRel));
                    }
                    return;
                }
                Err(actual) => word = actual,
            }
        }
    }

    /// The reflection ends: clears `BUSY` (and `DONE`, `WAITING`) and gives the reflector
    /// back, or leaves it to the last unpin. Returns the word before.
    fn end(&self) -> u32 {
        self.end_with(give_back)
    }

    /// [`Reflecting::end`], giving back with `give`.
    fn end_with(&self, give: impl FnOnce(*mut Reflector)) -> u32 {
        let mut word = self.word.load(Ordering::Acquire);
        loop {
            let pinned = word >= PIN_ONE;
            let next = (word & !(BUSY | DONE | WAITING)) | if pinned { ORPHAN } else { 0 };
            match self.word.compare_exchange_weak(word, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    if !pinned {
                        give(self.current.swap(core::ptr::null_mut(), Ordering::AcqRel));
                    }
                    return word;
                }
                Err(actual) => word = actual,
            }
        }
    }

    /// The receive callback's attempt to reflect the list `head` of `bytes` bytes, which
    /// [`Retention::keep_alone`](super::retention::Retention::keep_alone) charged already:
    /// `Some(status)` to return from the callback (`STATUS_SUCCESS` if the send completed
    /// inside, `STATUS_PENDING` if it goes on), `None` if it could not start (the charge is
    /// given back; the list takes the usual path).
    ///
    /// # Safety
    /// Called inside the receive callback of `core`'s socket (entered: the stream is
    /// attached), with `head`, the list it indicates, and `state` the socket's event state,
    /// whose `Reflecting` is `self`. IRQL <= DISPATCH_LEVEL.
    pub(crate) unsafe fn start(
        &self,
        core: &SocketCore<Connection>,
        state: &ConnState,
        head: NonNull<WSK_DATA_INDICATION>,
        bytes: u32,
    ) -> Option<NTSTATUS> {
        let Some(reflector) = reflectors().take() else {
            self.word.fetch_or(NEED, Ordering::AcqRel);
            give_back_charge::<Connection>(state, bytes);
            return None;
        };
        let held = Held { head, bytes, count: 1 };
        let Some(item) = Retained::enter(core, NonNull::from(state), held) else {
            give_back(reflector.as_ptr());
            give_back_charge::<Connection>(state, bytes);
            return None;
        };
        let item = Received::from_retained(item);
        // Only a callback sets BUSY, and it is the only one inside that found nothing
        // retained, so BUSY is clear; CANCEL comes only from the cleaner, which runs when no
        // callback is inside.
        self.current.store(reflector.as_ptr(), Ordering::Release);
        self.word.fetch_or(BUSY | IN_CALLBACK, Ordering::AcqRel);
        // SAFETY: a reflector from the cache is ours; BUSY: its cells belong to this
        // reflection.
        let reflector = unsafe { reflector.as_ref() };
        // SAFETY: as above.
        unsafe { reflector.prepare(item, head) };
        // SAFETY: the item holds a call on the socket; the list lives until released.
        unsafe { reflector.send_next(self) };
        if self.word.fetch_and(!IN_CALLBACK, Ordering::AcqRel) & DONE == 0 {
            return Some(wsk_sys::STATUS_PENDING);
        }
        // Completed inside: finished here, without `WskRelease` (see the module docs). The
        // reflector is still ours: DONE left it to us.
        // SAFETY: as above.
        let item = unsafe { reflector.take_item() };
        self.end();
        if let Some(item) = item.and_then(Received::into_retained) {
            item.accept();
        }
        Some(wsk_sys::STATUS_SUCCESS)
    }
}

/// One reflection's means: the IRP and what its `WskSend`s need to stay put.
///
/// # Invariants
/// `irp` is allocated with the reflector and freed with it. `flight` belongs to the
/// reflection that took the reflector from the cache (its callback, then its completion
/// routine) until it gives the reflector back; a `&mut` to it is never held across a
/// provider call (the send may complete inside the call, and its completion routine takes
/// `flight` itself).
pub(crate) struct Reflector {
    irp: NonNull<IRP>,
    flight: UnsafeCell<Flight>,
}

/// What one reflection keeps in its reflector.
struct Flight {
    /// The list as an item (its call and owner reference, and its accounting); dropped
    /// (`WskRelease`) when the send completed after its callback returned.
    item: Option<Received>,
    /// Shadow MDLs over a list of several entries (see `crate::shadow`): the whole list goes
    /// in one `WskSend`, as the stream's own sends of such items do.
    shadows: ShadowSet,
    /// What is sent: the whole list over `shadows` (`entry` null), or the list entry being
    /// sent (when the list has one entry, or more than the shadows cover).
    whole: WSK_BUF,
    entry: *mut WSK_DATA_INDICATION,
    /// Bytes of `whole` or `entry` sent so far.
    sent: usize,
    /// The `WskSend`'s buffer: the rest (the provider reads it while the IRP is in flight).
    part: WSK_BUF,
}

// SAFETY: `flight` is used by one party at a time (see the invariants); the IRP and the
// provider memory are usable from any thread.
unsafe impl Send for Reflector {}
// SAFETY: as above.
unsafe impl Sync for Reflector {}

impl Drop for Reflector {
    fn drop(&mut self) {
        // SAFETY: our IRP; not with the provider (the reflector is not in use).
        unsafe { wsk_sys::IoFreeIrp(self.irp.as_ptr()) };
    }
}

const EMPTY: WSK_BUF = WSK_BUF { Mdl: core::ptr::null_mut(), Offset: 0, Length: 0 };

/// A reflector in non-paged pool (the event state's tag).
type ReflectorBox = PoolBox<Reflector, { super::EVENT_TAG }>;

/// Puts `reflector` in the cache, or frees it when the cache is full. IRQL <= DISPATCH_LEVEL.
fn give(reflector: ReflectorBox) {
    if let Err(refused) = reflectors().give(PoolBox::into_raw(reflector)) {
        // SAFETY: taken out of its `PoolBox` just above, refused by the cells.
        drop(unsafe { ReflectorBox::from_raw_tagged(refused) });
    }
}

/// [`give`] for a reflector out of its box (null: nothing).
fn give_back(reflector: *mut Reflector) {
    if let Some(reflector) = NonNull::new(reflector) {
        // SAFETY: every reflector was boxed by `Reflector::allocate`, and the one given back
        // is out of use.
        give(unsafe { ReflectorBox::from_raw_tagged(reflector) });
    }
}

/// Frees every cached reflector; returns how many. IRQL <= DISPATCH_LEVEL.
pub(crate) fn drain() -> usize {
    let mut freed = 0;
    while let Some(reflector) = reflectors().take() {
        // SAFETY: as in `give_back`.
        drop(unsafe { ReflectorBox::from_raw_tagged(reflector) });
        freed += 1;
    }
    freed
}

/// What [`Reflector::next_part`] found to do.
enum Next {
    /// Send `part` (in `flight`).
    Send,
    /// Nothing is left: the reflection is over.
    Done,
}

impl Reflector {
    /// A reflector with its IRP and its shadow MDLs (about 2 KiB). IRQL <= DISPATCH_LEVEL.
    fn allocate() -> Result<ReflectorBox> {
        // SAFETY: one stack location: the IRP goes to WSK only.
        let irp = NonNull::new(unsafe { wsk_sys::IoAllocateIrp(1, 0) }).ok_or(Error::NoMemory)?;
        let shadows = match Shadows::allocate() {
            Ok(shadows) => shadows,
            Err(e) => {
                // SAFETY: allocated above, never used.
                unsafe { wsk_sys::IoFreeIrp(irp.as_ptr()) };
                return Err(e);
            }
        };
        let flight = Flight { item: None, shadows, whole: EMPTY, entry: core::ptr::null_mut(), sent: 0, part: EMPTY };
        // On failure the reflector is dropped, and its IRP freed with it.
        ReflectorBox::try_new_tagged(Reflector { irp, flight: UnsafeCell::new(flight) }).map_err(|_| Error::NoMemory)
    }

    /// The reflection's cells.
    ///
    /// # Safety
    /// The caller's reflection owns the reflector (see the invariants), and the borrow ends
    /// before any provider call.
    #[expect(clippy::mut_from_ref, reason = "the cell is owned by one reflection at a time (invariants)")]
    unsafe fn flight(&self) -> &mut Flight {
        // SAFETY: forwarded contract.
        unsafe { &mut *self.flight.get() }
    }

    /// Takes `item` (the list `head`) for a reflection: the whole list over shadow MDLs when it
    /// has several entries and they cover it, else entry by entry.
    ///
    /// # Safety
    /// BUSY, taken by the caller's reflection, nothing with the provider.
    unsafe fn prepare(&self, item: Received, head: NonNull<WSK_DATA_INDICATION>) {
        // SAFETY: forwarded contract.
        let flight = unsafe { self.flight() };
        // SAFETY: the list lives until released, which the item does; no send uses the
        // shadow MDLs.
        let several = !unsafe { head.as_ref() }.Next.is_null();
        // SAFETY: as above.
        let whole = if several { unsafe { flight.shadows.cover(&item) } } else { None };
        flight.item = Some(item);
        flight.sent = 0;
        (flight.whole, flight.entry) = match whole {
            Some(whole) => (whole, core::ptr::null_mut()),
            None => (EMPTY, head.as_ptr()),
        };
    }

    /// Takes the item out, the shadow MDLs undone first (they are over its pages).
    ///
    /// # Safety
    /// The caller owns the cells; nothing of the reflection is with the provider.
    unsafe fn take_item(&self) -> Option<Received> {
        // SAFETY: forwarded contract.
        let flight = unsafe { self.flight() };
        flight.shadows.reset();
        flight.item.take()
    }

    /// Finds what is left to send (of `whole`, or from `entry`, at `sent`) and puts it in
    /// `part`.
    ///
    /// # Safety
    /// As [`Reflector::send_next`].
    unsafe fn next_part(&self) -> Next {
        // SAFETY: forwarded contract.
        let flight = unsafe { self.flight() };
        // Skip what was sent and empty entries.
        while !flight.entry.is_null() {
            // SAFETY: entries of the retained list, live until it is released.
            let entry = unsafe { &*flight.entry };
            if flight.sent < entry.Buffer.Length {
                break;
            }
            flight.entry = entry.Next;
            flight.sent = 0;
        }
        let rest = if flight.entry.is_null() {
            flight.whole
        } else {
            // SAFETY: as above.
            unsafe { (*flight.entry).Buffer }
        };
        if flight.sent >= rest.Length {
            return Next::Done;
        }
        // SAFETY: the MDLs (the entry's, or ours over the list) describe at least
        // `Offset + Length` bytes, and `sent < Length`.
        flight.part = unsafe { crate::send_chain::advance(rest, flight.sent) };
        Next::Send
    }

    /// Issues the `WskSend` of what is left of the list; when nothing is, finishes the
    /// reflection.
    ///
    /// # Safety
    /// BUSY, and the caller owns the cells (the callback before the send, or the completion
    /// routine); the item holds a call on the socket; `reflecting` is its connection's.
    unsafe fn send_next(&self, reflecting: &Reflecting) {
        // SAFETY: forwarded contract.
        if let Next::Done = unsafe { self.next_part() } {
            // SAFETY: as the caller's.
            unsafe { self.finish(reflecting, None) };
            return;
        }
        if reflecting.word.load(Ordering::SeqCst) & CANCEL != 0 {
            // SAFETY: as the caller's.
            unsafe { self.finish(reflecting, Some(STATUS_CANCELLED)) };
            return;
        }
        // SAFETY: ours (caller); the borrow ends with this statement.
        let Some(item) = (unsafe { self.flight() }.item.as_ref()).and_then(Received::retained) else {
            // Not reached (a reflection holds its item until it ends); ended as a failure
            // rather than left busy for ever.
            // SAFETY: as the caller's.
            unsafe { self.finish(reflecting, Some(wsk_sys::STATUS_UNSUCCESSFUL)) };
            return;
        };
        // SAFETY: the item holds a call on the socket (caller), so it is open.
        let (socket, table) = unsafe { item.core().dispatch_held() };
        let Some(send) = table.WskSend else {
            // SAFETY: as the caller's.
            unsafe { self.finish(reflecting, Some(wsk_sys::STATUS_NOT_IMPLEMENTED)) };
            return;
        };
        // The send may complete inside the call and end the reflection: its item dropped,
        // maybe the socket's last reference with it (and the event state holding
        // `reflecting`), the reflector back in the cache. An owner reference of our own keeps
        // the socket; the reflector is not touched after the call.
        let keep = item.core().clone_owner();
        let irp = self.irp.as_ptr();
        // SAFETY: BUSY and ours: the IRP is not with the provider; it has one stack location,
        // the next one.
        unsafe { wsk_sys::IoReuseIrp(irp, wsk_sys::STATUS_UNSUCCESSFUL) };
        let context = core::ptr::from_ref(self).cast_mut().cast::<c_void>();
        // SAFETY: as above.
        unsafe { wsk_sys::IoSetCompletionRoutine(irp, Some(complete), context, true, true, true) };
        // SAFETY: `part` stays put until the completion (the reflector is this reflection's
        // until it ends), and no reference to `flight` is held across the call; the memory it
        // describes is the retained list's (or our MDLs over it). A place, not a borrow.
        let part = unsafe { &raw mut (*self.flight.get()).part };
        // SAFETY: as above.
        let _ = unsafe { send(socket, part, 0, irp) };
        // A cancel that came between the reuse (which clears the IRP's cancel flag) and the
        // send is repeated on the IRP now with the provider, under a pin.
        if reflecting.word.load(Ordering::SeqCst) & CANCEL != 0 {
            reflecting.cancel_in_flight();
        }
        // Last: this may be the socket's last reference.
        drop(keep);
    }

    /// Ends the reflection (`failure`: how it failed): inside its callback, leaves the item
    /// to it (DONE); otherwise releases the list, gives the reflector back and wakes the
    /// stream if it must know.
    ///
    /// # Safety
    /// As [`Reflector::send_next`]; nothing of the reflection is with the provider.
    unsafe fn finish(&self, reflecting: &Reflecting, failure: Option<NTSTATUS>) {
        match failure {
            Some(status) => {
                let _ = reflecting.failure.compare_exchange(0, status as u32, Ordering::AcqRel, Ordering::Acquire);
            }
            None => {
                // SAFETY: ours (caller); the borrow ends with this statement.
                let bytes = unsafe { self.flight() }.item.as_ref().map_or(0, Received::len);
                reflecting.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
                reflecting.count.fetch_add(1, Ordering::Relaxed);
            }
        }
        if reflecting.word.fetch_or(DONE, Ordering::AcqRel) & IN_CALLBACK != 0 {
            return;
        }
        // SAFETY: ours (caller); nothing is with the provider.
        let item = unsafe { self.take_item() };
        // The reflector is not touched after this: it may be in the cache already.
        let word = reflecting.end();
        if let Some(item) = item {
            if (word & WAITING != 0 || failure.is_some())
                && let Some(retained) = item.retained()
            {
                retained.wake_stream();
            }
            // Last: this may drop the socket's last reference, and `reflecting` with it.
            drop(item);
        }
    }
}

/// The reflection IRP's completion routine: sends the rest, or finishes. IRQL <=
/// DISPATCH_LEVEL.
unsafe extern "system" fn complete(_device: *mut DEVICE_OBJECT, irp: *mut IRP, context: *mut c_void) -> NTSTATUS {
    let Some(reflector) = NonNull::new(context.cast::<Reflector>()) else {
        return STATUS_MORE_PROCESSING_REQUIRED;
    };
    // SAFETY: the reflection in flight owns the reflector until it ends.
    let reflector = unsafe { reflector.as_ref() };
    // SAFETY: BUSY: the item is there, and holds the socket and its event state; the borrow
    // ends with this statement.
    let state = unsafe { reflector.flight() }.item.as_ref().and_then(Received::retained).map(Retained::state_ptr);
    let Some(state) = state else { return STATUS_MORE_PROCESSING_REQUIRED };
    // SAFETY: the item keeps the state until the reflection ends, and the reference is not
    // used after `finish` (which may drop the item).
    let reflecting = unsafe { &(*state.as_ptr()).reflecting };
    // SAFETY: the provider completed `irp`, which is ours again.
    let io = unsafe { (*irp).IoStatus };
    if !NT_SUCCESS(io.Status) {
        // SAFETY: BUSY; the completion owns the cells now.
        unsafe { reflector.finish(reflecting, Some(io.Status)) };
    } else if io.Information == 0 {
        // No byte moved, and no error: not progress; the connection is reported broken.
        // SAFETY: as above.
        unsafe { reflector.finish(reflecting, Some(STATUS_CONNECTION_ABORTED)) };
    } else {
        // SAFETY: as above; the borrow ends with this statement.
        unsafe { reflector.flight() }.sent += io.Information;
        // SAFETY: as above.
        unsafe { reflector.send_next(reflecting) };
    }
    STATUS_MORE_PROCESSING_REQUIRED
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// Every connection stream carries a `Reflecting`, reflection on or off: it is part of
    /// what an idle connection costs (BENCHMARKS.md), and must stay this small.
    #[test]
    fn a_connection_pays_32_bytes_for_reflection() {
        assert!(size_of::<Reflecting>() <= 32, "{} bytes", size_of::<Reflecting>());
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use crate::loom::AtomicUsize;
    use loom::sync::Arc;

    /// A callback that reflected leaves while the stream polls: either it wakes the stream
    /// (it saw the poll clear `PARKED`) or the poll sees it gone (the callback count it reads
    /// is zero), never neither, which would leave a stream that waits for the callback to
    /// leave (to resume after a refusal, to end after the FIN) without the wake it waits
    /// for. Without the fences of `unpark` and `wake_after` loom finds neither.
    #[test]
    fn loom_a_reflecting_callback_that_leaves_during_a_poll_wakes_it_or_is_seen_gone() {
        loom::model(|| {
            let reflecting = Arc::new(Reflecting::new(true));
            // The previous poll waited for data only; one callback is inside.
            reflecting.park();
            let flags = Arc::new(AtomicU32::new(super::super::CALLBACK_ONE));
            let callback = {
                let (reflecting, flags) = (reflecting.clone(), flags.clone());
                loom::thread::spawn(move || {
                    let _ = super::super::callback_exit(&flags);
                    reflecting.wake_after()
                })
            };
            // The stream's poll: `unpark` first, then (further on) the callback count.
            reflecting.unpark();
            let saw_inside = flags.load(Ordering::Acquire) >= super::super::CALLBACK_ONE;
            let woken = callback.join().unwrap();
            assert!(woken || !saw_inside, "the poll waits for a callback that left without waking it");
        });
    }

    /// A reflection ending while two cancellers (the stream's cleaner, and a send that saw
    /// `CANCEL` after it was issued) pin it: its reflector is given back exactly once, by
    /// whoever is last, and never touched by a canceller after that (it could be another
    /// connection's by then). Without the pins (a canceller reading `current` and cancelling
    /// while the reflection ends and gives the reflector back) loom finds a touch after the
    /// give-back.
    #[test]
    fn loom_a_pinned_reflector_is_given_back_once_and_never_touched_after() {
        // Three threads of compare-and-swap loops: unbounded, the model takes minutes; two
        // preemptions cover the orders that matter (a pin before, between and after the end).
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound = Some(2);
        builder.check(|| {
            let reflecting = Arc::new(Reflecting::new(true));
            let reflector = NonNull::<Reflector>::dangling();
            reflecting.current.store(reflector.as_ptr(), Ordering::Release);
            // In flight, and the stream has detached: cancellers pin only once CANCEL is set.
            reflecting.word.fetch_or(BUSY | CANCEL, Ordering::AcqRel);
            let given = Arc::new(AtomicUsize::new(0));
            let canceller = || {
                let (reflecting, given) = (reflecting.clone(), given.clone());
                loom::thread::spawn(move || {
                    let touch = |touched: NonNull<Reflector>| {
                        assert_eq!(touched, reflector);
                        assert_eq!(given.load(Ordering::SeqCst), 0, "touched after the give-back");
                    };
                    let give = |back: *mut Reflector| {
                        assert_eq!(back, reflector.as_ptr());
                        given.fetch_add(1, Ordering::SeqCst);
                    };
                    reflecting.pinned(touch, give);
                })
            };
            let (a, b) = (canceller(), canceller());
            reflecting.end_with(|back| {
                assert_eq!(back, reflector.as_ptr());
                given.fetch_add(1, Ordering::SeqCst);
            });
            a.join().unwrap();
            b.join().unwrap();
            assert_eq!(given.load(Ordering::SeqCst), 1, "given back once");
            let word = reflecting.word.load(Ordering::SeqCst);
            assert_eq!(word & (BUSY | ORPHAN), 0);
            assert!(word < PIN_ONE, "a pin left");
            assert!(reflecting.current.load(Ordering::SeqCst).is_null());
        });
    }
}
