//! What a receive stream (connection or datagram) holds of WSK's indications: the ring the
//! callback hands them over on, the bytes retained, the bound, and whether a callback refused
//! data because of it. Shared by both kinds; only the `WskRelease` routine differs.

use core::ptr::NonNull;

use super::ring::Ring;
use crate::loom::{AtomicU32, AtomicUsize, Ordering};
use crate::socket::core::SocketCore;

/// Indication lists retained at most (ring slots).
const SLOTS: usize = 32;

/// A retained indication list (`WSK_DATA_INDICATION` or `WSK_DATAGRAM_INDICATION` chain).
pub(crate) struct Held<H> {
    pub head: NonNull<H>,
    /// Payload bytes of the whole list.
    pub bytes: usize,
    /// Entries in the list.
    pub count: usize,
}

// SAFETY: an indication list is provider memory usable from any thread until released.
unsafe impl<H> Send for Held<H> {}

/// `WskRelease` of one retained list, for the list's kind of socket.
///
/// # Safety (of a value of this type, when called)
/// A call on the core is held (the socket is open) and the list was retained on it and not
/// yet released.
pub(crate) type Release<H> = unsafe fn(&SocketCore, NonNull<H>);

/// `refused`: data was refused; resuming the indications may deliver it without a copy.
const REFUSED: u32 = 1;
/// `refused`: data was refused because its MDLs could not be mapped; resume with a copy
/// (an IRP receive into the stream's own buffer), or the same data would be refused again.
const UNMAPPABLE: u32 = 2;

/// See the module docs.
pub(crate) struct Retention<H> {
    ring: Ring<Held<H>, SLOTS>,
    /// Bytes retained (in the ring and in items the user holds).
    retained: AtomicUsize,
    max: usize,
    /// A callback refused data: WSK indicates no more until the stream resumes it.
    /// [`REFUSED`], or [`UNMAPPABLE`] when the refused data could not be mapped.
    refused: AtomicU32,
}

impl<H> Retention<H> {
    pub(crate) fn new(max: usize) -> Self {
        Self { ring: Ring::new(), retained: AtomicUsize::new(0), max, refused: AtomicU32::new(0) }
    }

    /// The callback's decision: keeps `held` for the stream (`true`: return `STATUS_PENDING`)
    /// or refuses it (`false`, and the refusal is recorded). Over the bound it refuses, but a
    /// list larger than the bound is taken when nothing is held, or it could never be
    /// delivered without a copy. Called by one callback at a time (WSK calls a socket's
    /// receive callback serially). IRQL <= DISPATCH_LEVEL.
    pub(crate) fn keep(&self, held: Held<H>) -> bool {
        let retained = self.retained.load(Ordering::Acquire);
        if (retained != 0 && retained + held.bytes > self.max) || !self.ring.has_room() {
            self.refused.store(REFUSED, Ordering::Release);
            return false;
        }
        let bytes = held.bytes;
        self.retained.fetch_add(bytes, Ordering::AcqRel);
        // SAFETY: one producer (see above).
        if unsafe { self.ring.push(held) }.is_err() {
            // Not reachable (room checked by the only producer); refuse rather than retain.
            self.retained.fetch_sub(bytes, Ordering::AcqRel);
            self.refused.store(REFUSED, Ordering::Release);
            return false;
        }
        true
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

    /// The stream resumes indications.
    /// Records a refusal of data whose MDLs could not be mapped (see [`UNMAPPABLE`]);
    /// returns `false` (not kept), for `mapped || rx.refuse_unmappable()`.
    /// IRQL <= DISPATCH_LEVEL.
    pub(crate) fn refuse_unmappable(&self) -> bool {
        self.refused.store(UNMAPPABLE, Ordering::Release);
        false
    }

    /// Whether the refusal waiting is one of unmappable data. Any IRQL.
    pub(crate) fn refused_unmappable(&self) -> bool {
        self.refused.load(Ordering::Acquire) == UNMAPPABLE
    }

    /// One datagram of refused unmappable data was copied out: the next refusal decision may
    /// resume the indications again. Any IRQL.
    pub(crate) fn copied_unmappable(&self) {
        let _ = self.refused.compare_exchange(UNMAPPABLE, REFUSED, Ordering::AcqRel, Ordering::Acquire);
    }

    pub(crate) fn clear_refused(&self) {
        self.refused.store(0, Ordering::Release);
    }

    /// Drains the ring, releasing every list but `own`, then ends the stream's call on
    /// `core`. Runs once (see the detach protocol), by the stream or by the last callback out.
    ///
    /// `own` is the list the cleaning callback itself pushed and has not returned
    /// `STATUS_PENDING` for yet: WSK does not consider it retained, so it is not released;
    /// the return value says it was found, and the callback then refuses it instead.
    pub(crate) fn drain(&self, core: &SocketCore, own: Option<NonNull<H>>, release: Release<H>) -> bool {
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
            self.retained.fetch_sub(held.bytes, Ordering::AcqRel);
        }
        core.leave();
        found
    }
}
