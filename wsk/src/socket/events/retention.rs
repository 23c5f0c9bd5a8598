//! What a receive stream (connection or datagram) holds of WSK's indications: the ring the
//! callback hands them over on, the bytes retained, the bound, and whether a callback refused
//! data because of it. Shared by both kinds; only the `WskRelease` routine differs.
//!
//! # Concurrent callbacks
//!
//! Microsoft documents no serialization of one socket's receive callbacks (`WskReceiveEvent`,
//! `WskReceiveFromEvent`): we assume they may run concurrently and refuse on contention. A
//! callback keeps its list only under the ring's producer claim ([`Ring::try_produce`]),
//! which it holds from the bound check to the push, so the check and the byte count it adds
//! are one producer's step; a callback that finds the claim taken refuses its list, exactly
//! as over the bound, and the stream's usual resume brings the data back. Nothing here waits:
//! callbacks run at DISPATCH_LEVEL. The other fields are written by several parties at once
//! (callbacks, the stream, items dropped on any thread) only with read-modify-write atomics
//! (`retained`) or by setting bits (`refused`), so no count or refusal is lost.

use core::ptr::NonNull;

use wsk_sys::{NTSTATUS, STATUS_DATA_NOT_ACCEPTED, STATUS_PENDING, WSK_SOCKET};

use super::attached::leave_callback;
use super::pieces::{Indication, list_mapped};
use super::ring::Ring;
use super::{EventState, callback_enter};
use crate::budget::{self, Budget};
use crate::loom::{AtomicU32, AtomicUsize, Ordering};
use crate::socket::kind::SocketKind;
use crate::socket::shared::{CoreRef, SocketCore};

/// Indication lists retained at most (ring slots): a slot is 16 bytes of every socket's event
/// state, idle or not, and a list may carry many indications.
const SLOTS: usize = 8;

/// A retained indication list (`WSK_DATA_INDICATION` or `WSK_DATAGRAM_INDICATION` chain).
pub(crate) struct Held<H> {
    pub head: NonNull<H>,
    /// Payload bytes of the whole list (a `WSK_BUF` length is a `SIZE_T`, but what one
    /// callback indicates is far below 4 GiB: the socket's receive window).
    pub bytes: u32,
    /// Entries in the list.
    pub count: u32,
}

// SAFETY: an indication list is provider memory usable from any thread until released.
unsafe impl<H> Send for Held<H> {}

/// A socket kind whose receive callbacks hand over indication lists to retain (connection
/// and datagram sockets).
pub(crate) trait Indicating: SocketKind {
    /// The list entry (`WSK_DATA_INDICATION` or `WSK_DATAGRAM_INDICATION`).
    type Indication: Indication;

    /// The provider's `WskRelease` for the kind's lists.
    fn release_routine(
        table: &Self::Dispatch,
    ) -> Option<unsafe extern "system" fn(*mut WSK_SOCKET, *mut Self::Indication) -> NTSTATUS>;

    /// The retention of the kind's event state.
    fn retention(state: &Self::State) -> &Retention<Self::Indication>;

    /// The stream's cleaner is about to drain the retention (see [`Retention::drain`]): stop
    /// what else the state has in flight. Nothing by default. IRQL <= DISPATCH_LEVEL.
    fn cleaning(_state: &Self::State) {}

    /// Whether a callback that diverted its list (see [`retain_or_divert`]) wakes the stream
    /// after it left. Always by default. IRQL <= DISPATCH_LEVEL.
    fn wake_after_divert(_state: &Self::State) -> bool {
        true
    }
}

/// `WskRelease` of one retained list.
///
/// # Safety
/// A call on `core` is held (the socket is open) and `head` was retained on it and not yet
/// released.
pub(crate) unsafe fn release<K: Indicating>(core: &SocketCore<K>, head: NonNull<K::Indication>) {
    // SAFETY: a call is held (caller); the socket exists, since WSK indicated a list on it.
    let (socket, table) = unsafe { core.dispatch_held() };
    if let Some(release) = K::release_routine(table) {
        // SAFETY: the socket is open and the list retained on it (caller).
        unsafe { release(socket, head.as_ptr()) };
    }
}

/// A receive callback's step with the list `head` WSK indicates: keeps it for the stream
/// (returns `STATUS_PENDING`) when the stream is attached, close has not begun, every buffer
/// maps and the bound allows (see [`Retention::keep`]); else refuses it
/// (`STATUS_DATA_NOT_ACCEPTED`: WSK keeps the data). `measure` gives the list's entries and
/// bytes. The last callback out after the stream detached cleans up, and refuses its own list
/// if it pushed one (see [`Retention::drain`]). IRQL <= DISPATCH_LEVEL; never blocks.
///
/// # Safety
/// `head` is the list WSK indicates to the running callback, valid until released.
pub(crate) unsafe fn retain<K: Indicating>(
    core: &CoreRef<'_, K>,
    state: &K::State,
    head: NonNull<K::Indication>,
    measure: impl FnOnce() -> (usize, usize),
) -> NTSTATUS {
    // SAFETY: forwarded contract.
    unsafe { retain_or_divert(core, state, head, measure, |_, _| None) }
}

/// What a receive callback did with its list: kept it for the stream, or diverted it (see
/// [`retain_or_divert`]).
enum Taken {
    No,
    Kept,
    Diverted(NTSTATUS),
}

/// [`retain`], with a way around the ring: once the callback is in (the stream attached,
/// close not begun) and the list maps, `divert` is offered the list's byte count first; it
/// returns the callback's status if it took the list (a connection's reflection, see
/// `reflect`), `None` to leave it to the ring. A diverted list wakes the stream only when
/// [`Indicating::wake_after_divert`] says so.
///
/// # Safety
/// As [`retain`]; `divert` treats the list as `retain` would (it is WSK's until released).
pub(crate) unsafe fn retain_or_divert<K: Indicating>(
    core: &CoreRef<'_, K>,
    state: &K::State,
    head: NonNull<K::Indication>,
    measure: impl FnOnce() -> (usize, usize),
    divert: impl FnOnce(&CoreRef<'_, K>, u32) -> Option<NTSTATUS>,
) -> NTSTATUS {
    let rx = K::retention(state);
    let taken = if callback_enter(&state.header().flags) && !core.is_closing() {
        let (count, bytes) = measure();
        match (u32::try_from(count), u32::try_from(bytes)) {
            (Ok(count), Ok(bytes)) => {
                // SAFETY: WSK's list, valid until released (caller).
                if !(unsafe { list_mapped(head) } || rx.refuse_unmappable()) {
                    Taken::No
                } else if let Some(status) = divert(core, bytes) {
                    Taken::Diverted(status)
                } else if rx.keep(Held { head, bytes, count }) {
                    Taken::Kept
                } else {
                    Taken::No
                }
            }
            // Beyond what a callback indicates (a receive window): WSK keeps it.
            _ => {
                rx.refuse();
                Taken::No
            }
        }
    } else {
        Taken::No
    };
    let own = matches!(taken, Taken::Kept).then_some(head);
    // When the stream went away while we handed it the list, WSK keeps it.
    let taken_back = leave_callback(core, state.header(), |core| {
        K::cleaning(state);
        rx.drain(core, own)
    });
    // The wake comes after leaving: a stream that found a callback inside (resuming after a
    // refusal, switching to the copy path, ending after the FIN) waits for this wake rather
    // than polling again. The state lives as long as the core, which WSK keeps until its
    // callbacks returned (close contract).
    let (status, wake) = match taken {
        Taken::Diverted(status) => (status, K::wake_after_divert(state)),
        Taken::Kept if !taken_back => (STATUS_PENDING, true),
        Taken::Kept | Taken::No => (STATUS_DATA_NOT_ACCEPTED, true),
    };
    if wake {
        state.header().waker.wake();
    }
    status
}

/// A retained list handed to the user: holds an owner reference and a call on the core
/// (so the socket stays open for the `WskRelease`), released when dropped.
pub(crate) struct Retained<K: Indicating> {
    core: SocketCore<K>,
    state: NonNull<K::State>,
    pub(crate) held: Held<K::Indication>,
}

// SAFETY: the list is provider memory usable from any thread until released; the state is
// shared through atomics.
unsafe impl<K: Indicating> Send for Retained<K> {}

impl<K: Indicating> Retained<K> {
    /// Hands `held` (popped from the state's ring by its stream, which holds a call on
    /// `core`) to the user with a call of its own, or releases it at once if close has begun.
    pub(crate) fn hand_out(core: &SocketCore<K>, state: NonNull<K::State>, held: Held<K::Indication>) -> Option<Self> {
        if core.enter_owned().is_err() {
            // SAFETY: the stream's call is held; the list is retained and ours.
            unsafe { release(core, held.head) };
            // SAFETY: the state lives as long as the core, on which the stream holds a reference.
            K::retention(unsafe { state.as_ref() }).released(held.bytes as usize);
            return None;
        }
        Some(Retained { core: core.clone_owner(), state, held })
    }

    /// Takes the list `held`, which a callback of `core`'s socket keeps outside the ring (its
    /// bytes charged already), with a call and an owner reference of its own; `None`, with
    /// nothing taken and nothing released, if close has begun. IRQL <= DISPATCH_LEVEL.
    pub(crate) fn enter(core: &SocketCore<K>, state: NonNull<K::State>, held: Held<K::Indication>) -> Option<Self> {
        core.enter_owned().ok()?;
        Some(Retained { core: core.clone_owner(), state, held })
    }

    /// Gives the list back to WSK as the callback's accepted data (it returns
    /// `STATUS_SUCCESS` for it): the accounting of a release without `WskRelease`.
    /// IRQL <= DISPATCH_LEVEL.
    pub(crate) fn accept(self) {
        let this = core::mem::ManuallyDrop::new(self);
        give_back_charge::<K>(this.state(), this.held.bytes);
        // SAFETY: `this` is not used or dropped again: its core is moved out once.
        let core = unsafe { core::ptr::read(&raw const this.core) };
        core.leave();
        drop(core);
    }

    /// The socket the list was indicated on.
    pub(crate) fn core(&self) -> &SocketCore<K> {
        &self.core
    }

    /// The socket's event state (live as long as the item).
    pub(crate) fn state_ptr(&self) -> NonNull<K::State> {
        self.state
    }

    fn state(&self) -> &K::State {
        // SAFETY: the state lives as long as the core, on which the item holds a reference.
        unsafe { self.state.as_ref() }
    }

    /// Wakes the socket's stream. IRQL <= DISPATCH_LEVEL.
    pub(crate) fn wake_stream(&self) {
        self.state().header().waker.wake();
    }
}

/// Gives back the charge of `bytes` of a list that left the retention (released, accepted,
/// or never used), and wakes the stream when a refusal waits: it may resume the indications
/// now. IRQL <= DISPATCH_LEVEL.
pub(crate) fn give_back_charge<K: Indicating>(state: &K::State, bytes: u32) {
    if K::retention(state).released(bytes as usize) {
        state.header().waker.wake();
    }
}

impl<K: Indicating> Drop for Retained<K> {
    fn drop(&mut self) {
        // SAFETY: the item holds a call on the core, and the list is retained and ours.
        unsafe { release(&self.core, self.held.head) };
        give_back_charge::<K>(self.state(), self.held.bytes);
        self.core.leave();
    }
}

/// `refused` bit: data was refused; resuming the indications may deliver it without a copy.
const REFUSED: u32 = 1;
/// `refused` bit (with [`REFUSED`]): data was refused because its MDLs could not be mapped;
/// resume with a copy (an IRP receive into the stream's own buffer), or the same data would
/// be refused again. A concurrent refusal of another kind does not clear it.
const UNMAPPABLE: u32 = 2;

/// See the module docs.
pub(crate) struct Retention<H> {
    ring: Ring<Held<H>, SLOTS>,
    /// Bytes retained (in the ring and in items the user holds), charged to `budget` too.
    retained: AtomicUsize,
    max: usize,
    /// The driver-wide budget ([`crate::budget`]).
    budget: &'static Budget,
    /// A callback refused data: WSK indicates no more until the stream resumes it.
    /// 0, or [`REFUSED`] with [`UNMAPPABLE`] set too when refused data could not be mapped.
    refused: AtomicU32,
}

impl<H> Retention<H> {
    /// A retention of at most `max` bytes, charged to the driver-wide budget.
    pub(crate) fn new(max: usize) -> Self {
        Self {
            ring: Ring::new(),
            retained: AtomicUsize::new(0),
            max,
            budget: budget::global(),
            refused: AtomicU32::new(0),
        }
    }

    /// The callback's decision: keeps `held` for the stream (`true`: return `STATUS_PENDING`)
    /// or refuses it (`false`, and the refusal is recorded). Over the bound, or over the
    /// driver-wide budget ([`crate::budget`]), it refuses, but a socket that holds nothing
    /// takes the list whatever either says: a list larger than the bound could never be
    /// delivered without a copy otherwise, and a full budget must not stall a connection that
    /// holds none of it (see [`crate::budget`]).
    /// It also refuses when another callback of the socket is
    /// keeping a list at this moment (see the module docs): never waits.
    /// IRQL <= DISPATCH_LEVEL.
    pub(crate) fn keep(&self, held: Held<H>) -> bool {
        let Some(producer) = self.ring.try_produce() else { return self.refuse() };
        // Only the claim holder adds to `retained`; releases only lower it meanwhile, so the
        // check stays true until the add below.
        let retained = self.retained.load(Ordering::Acquire);
        let bytes = held.bytes as usize;
        if (retained != 0 && retained + bytes > self.max) || !producer.has_room() {
            return self.refuse();
        }
        if !self.budget.try_charge(bytes, retained == 0) {
            return self.refuse();
        }
        self.retained.fetch_add(bytes, Ordering::AcqRel);
        if producer.push(held).is_err() {
            // Not reachable (room checked under the claim, and only the consumer changes it,
            // by making room); refuse rather than retain.
            self.retained.fetch_sub(bytes, Ordering::AcqRel);
            self.budget.release(bytes);
            return self.refuse();
        }
        true
    }

    /// A callback's charge for a list it keeps outside the ring (a reflection, see
    /// `reflect`): only when nothing is retained (so no earlier byte is still with the stream
    /// or its user), under the producer claim like [`Retention::keep`], and whatever the
    /// bound or the budget say, as for the first list of a socket that holds nothing.
    /// `false`: nothing charged, nothing recorded. Give the charge back with
    /// [`Retention::released`]. IRQL <= DISPATCH_LEVEL.
    pub(crate) fn keep_alone(&self, bytes: usize) -> bool {
        let Some(_producer) = self.ring.try_produce() else { return false };
        if self.retained.load(Ordering::Acquire) != 0 {
            return false;
        }
        // Forced: the charge is always taken.
        let _ = self.budget.try_charge(bytes, true);
        self.retained.fetch_add(bytes, Ordering::AcqRel);
        true
    }

    /// Records a refusal the callbacks did not see: one that happened before the state
    /// existed (a preset receive callback without a stream refused data and left a note, see
    /// `connection::on_receive`), or one that stands again because the provider cancelled the
    /// stream's resume or copy on its own. The stream resumes as after any refusal. Any IRQL.
    pub(crate) fn refused_before(&self) {
        let _ = self.refuse();
    }

    /// Records a refusal; returns `false` (not kept).
    fn refuse(&self) -> bool {
        self.refused.fetch_or(REFUSED, Ordering::AcqRel);
        false
    }

    /// The oldest retained list.
    ///
    /// # Safety
    /// Only one thread at a time acts as the consumer (the stream, or its cleaner).
    pub(crate) unsafe fn pop(&self) -> Option<Held<H>> {
        // SAFETY: forwarded contract.
        unsafe { self.ring.pop() }
    }

    /// `bytes` went back to WSK. Returns whether a refusal waits (the stream may resume).
    pub(crate) fn released(&self, bytes: usize) -> bool {
        self.retained.fetch_sub(bytes, Ordering::AcqRel);
        self.budget.release(bytes);
        self.refused()
    }

    /// Bytes retained now. Any IRQL.
    pub(crate) fn retained(&self) -> usize {
        self.retained.load(Ordering::Acquire)
    }

    /// Whether a callback refused data since the stream last resumed. Any IRQL.
    pub(crate) fn refused(&self) -> bool {
        self.refused.load(Ordering::Acquire) != 0
    }

    /// Records a refusal of data whose MDLs could not be mapped (see [`UNMAPPABLE`]);
    /// returns `false` (not kept), for `mapped || rx.refuse_unmappable()`.
    /// IRQL <= DISPATCH_LEVEL.
    pub(crate) fn refuse_unmappable(&self) -> bool {
        self.refused.fetch_or(REFUSED | UNMAPPABLE, Ordering::AcqRel);
        false
    }

    /// Whether the refusal waiting includes one of unmappable data. Any IRQL.
    pub(crate) fn refused_unmappable(&self) -> bool {
        self.refused.load(Ordering::Acquire) & UNMAPPABLE != 0
    }

    /// One datagram of refused unmappable data was copied out: the next refusal decision may
    /// resume the indications again (the refusal itself stays recorded). Any IRQL.
    pub(crate) fn copied_unmappable(&self) {
        self.refused.fetch_and(!UNMAPPABLE, Ordering::AcqRel);
    }

    /// Forgets the refusals recorded, just before the stream resumes the indications. A
    /// refusal recorded after this is answered by a later resume; one recorded before it (by
    /// a callback that raced the stream's check that none is inside) is covered by the
    /// resume that follows, which makes WSK offer everything it kept. Any IRQL.
    pub(crate) fn clear_refused(&self) {
        self.refused.store(0, Ordering::Release);
    }

    /// Drains the ring, releasing every list but `own`, then ends the stream's call on
    /// `core`. Runs once (see the detach protocol), by the stream or by the last callback out.
    ///
    /// `own` is the list the cleaning callback itself pushed and has not returned
    /// `STATUS_PENDING` for yet: WSK does not consider it retained, so it is not released;
    /// the return value says it was found, and the callback then refuses it instead.
    /// The lists of other callbacks are released even if one of them is still on its way
    /// out (it left the library code and returns `STATUS_PENDING` next): the same race as a
    /// consumer on another CPU releasing an item before its callback returned, of which
    /// Microsoft's documentation does not speak.
    pub(crate) fn drain<K: Indicating<Indication = H>>(&self, core: &SocketCore<K>, own: Option<NonNull<H>>) -> bool {
        let mut found = false;
        // SAFETY: the cleaner is the only party left using the ring (detach protocol).
        while let Some(held) = unsafe { self.ring.pop() } {
            if Some(held.head) == own {
                found = true;
            } else {
                // SAFETY: the stream's call is still held, so the socket is open; the list
                // is retained and ours.
                unsafe { release(core, held.head) };
            }
            self.retained.fetch_sub(held.bytes as usize, Ordering::AcqRel);
            self.budget.release(held.bytes as usize);
        }
        core.leave();
        found
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;

    /// Stand-ins for indication lists (only their addresses are used).
    static LISTS: [u8; 2] = [0; 2];

    fn held(i: usize, bytes: u32) -> Held<u8> {
        Held { head: NonNull::from(&LISTS[i]), bytes, count: 1 }
    }

    /// Two receive callbacks of one socket keeping lists at the same time, and the stream
    /// consuming and releasing: each kept list is delivered exactly once and each refused one
    /// never, a refusal is recorded whenever one happened, and `retained` is exact at every
    /// step observed (kept minus released, zero at the end). The bound (15 bytes, lists of 10)
    /// makes the second list refused unless the first was released before it was checked.
    /// Without the producer claim both callbacks can write the same slot: a kept list is lost
    /// (and loom reports the race on the slot).
    #[test]
    fn loom_two_callbacks_one_stream_exact_accounting() {
        loom::model(|| {
            let rx: Arc<Retention<u8>> = Arc::new(Retention::new(15));
            let spawn_callback = |i: usize| {
                let rx = rx.clone();
                loom::thread::spawn(move || rx.keep(held(i, 10)))
            };
            let (a, b) = (spawn_callback(0), spawn_callback(1));
            let mut delivered = [false; 2];
            let mut deliver = |list: Held<u8>| {
                let i = usize::from(list.head == NonNull::from(&LISTS[1]));
                assert!(!delivered[i], "list {i} delivered twice");
                delivered[i] = true;
                list.bytes as usize
            };
            let mut released = 0;
            // SAFETY: this thread is the only consumer.
            if let Some(list) = unsafe { rx.pop() } {
                let bytes = deliver(list);
                rx.released(bytes);
                released += bytes;
            }
            let kept = [a.join().unwrap(), b.join().unwrap()];
            let kept_bytes = 10 * kept.iter().filter(|&&k| k).count();
            assert_eq!(rx.retained(), kept_bytes - released);
            assert_eq!(rx.refused(), kept.contains(&false), "a refusal went unrecorded (or one was invented)");
            // SAFETY: as above.
            while let Some(list) = unsafe { rx.pop() } {
                let bytes = deliver(list);
                rx.released(bytes);
            }
            assert_eq!(delivered, kept, "a kept list was lost, or a refused one delivered");
            assert_eq!(rx.retained(), 0);
        });
    }

    /// A refusal of unmappable data racing a refusal over the bound: the unmappable mark
    /// survives (the stream must copy, or the data would be refused again), whichever order.
    #[test]
    fn loom_unmappable_refusal_survives_a_concurrent_refusal() {
        loom::model(|| {
            let rx: Arc<Retention<u8>> = Arc::new(Retention::new(15));
            // Hold 10 bytes so that the next list of 10 is over the bound.
            assert!(rx.keep(held(0, 10)));
            let other = rx.clone();
            let over_bound = loom::thread::spawn(move || other.keep(held(1, 10)));
            assert!(!rx.refuse_unmappable());
            assert!(!over_bound.join().unwrap());
            assert!(rx.refused() && rx.refused_unmappable());
            rx.copied_unmappable();
            assert!(rx.refused() && !rx.refused_unmappable(), "copying one datagram leaves the refusal");
            // SAFETY: this thread is the only consumer.
            let list = unsafe { rx.pop() }.unwrap();
            rx.released(list.bytes as usize);
        });
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    static LISTS: [u8; 40] = [0; 40];

    fn held(i: usize, bytes: u32) -> Held<u8> {
        Held { head: NonNull::from(&LISTS[i]), bytes, count: 1 }
    }

    /// The bound: a list larger than it is taken when nothing is held; past it the list is
    /// refused and the refusal recorded; releases bring `retained` back exactly.
    #[test]
    fn the_bound_refuses_and_releases_account_exactly() {
        let rx: Retention<u8> = Retention::new(100);
        assert!(rx.keep(held(0, 150)), "an oversized list is taken when nothing is held");
        assert!(!rx.keep(held(1, 1)), "over the bound");
        assert!(rx.refused() && !rx.refused_unmappable());
        // SAFETY: this thread is the only consumer.
        let first = unsafe { rx.pop() }.unwrap();
        assert_eq!((first.head, first.bytes), (NonNull::from(&LISTS[0]), 150));
        assert!(rx.released(first.bytes as usize), "the refusal still waits for the stream");
        assert_eq!(rx.retained(), 0);
        rx.clear_refused();
        assert!(!rx.refused());
        assert!(rx.keep(held(2, 60)) && rx.keep(held(3, 40)), "up to the bound exactly");
        assert_eq!(rx.retained(), 100);
        assert!(!rx.keep(held(4, 1)));
    }

    /// The ring's slots bound what is kept too, whatever the bytes.
    #[test]
    fn a_full_ring_refuses() {
        let rx: Retention<u8> = Retention::new(usize::MAX / 2);
        for i in 0..SLOTS {
            assert!(rx.keep(held(i, 1)));
        }
        assert!(!rx.keep(held(SLOTS, 1)));
        assert!(rx.refused());
        assert_eq!(rx.retained(), SLOTS);
    }

    /// A callback that finds another one keeping a list (the producer claim taken) refuses
    /// its own, and records the refusal, without waiting.
    #[test]
    fn contention_refuses_instead_of_waiting() {
        let rx: Retention<u8> = Retention::new(100);
        let other = rx.ring.try_produce().expect("free");
        assert!(!rx.keep(held(0, 1)), "kept while another callback held the claim");
        assert!(rx.refused());
        assert_eq!(rx.retained(), 0);
        drop(other);
        assert!(rx.keep(held(1, 1)), "the claim is free again");
    }

    /// Unmappable refusals: the mark is kept by a later ordinary refusal, and copying one
    /// datagram out clears only the mark.
    #[test]
    fn the_unmappable_mark_is_sticky_until_copied() {
        let rx: Retention<u8> = Retention::new(1);
        assert!(rx.keep(held(0, 1)));
        assert!(!rx.refuse_unmappable());
        assert!(!rx.keep(held(1, 1)));
        assert!(rx.refused_unmappable(), "an ordinary refusal must not clear the unmappable mark");
        rx.copied_unmappable();
        assert!(rx.refused() && !rx.refused_unmappable());
    }
}
