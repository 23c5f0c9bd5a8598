//! Admission control: deciding per peer, before a socket exists, whether a listener takes a
//! connection (conditional accept), and a ready-made per-address limit.
//!
//! A listener bound with [`TcpListener::bind_conditional`](crate::TcpListener::bind_conditional)
//! has `SO_CONDITIONAL_ACCEPT` on (set before the bind, as Microsoft documents). WSK then calls
//! the listener's `WskInspectEvent` for each connection request, with the peer's address,
//! before any accept IRP or `WskAcceptEvent` gets it; the library's callback asks the
//! listener's [`Admission`] and answers `WskInspectAccept` or `WskInspectReject`. A rejected
//! request never becomes a socket: it costs the driver no memory at all.
//!
//! The decision runs inside WSK's callback, at IRQL <= DISPATCH_LEVEL (assume DISPATCH_LEVEL):
//! it must not block, not wait, not allocate (non-paged pool allocation at DISPATCH_LEVEL is
//! allowed by the kernel but can fail; paged pool is forbidden) and not touch pageable code or
//! data. [`PerPeerLimit`] satisfies that: a fixed table of atomic words, allocated with it
//! (a driver keeps it in a `static`), read with loads only during the inspection.
//!
//! An admission that cannot decide at once (it waits for a lookup, a reputation check, a
//! quota from elsewhere) answers [`Verdict::Pend`]; the library then answers
//! `WskInspectPend` and hands it an owned [`Inspection`] through [`Admission::pended`], whose
//! `accept()` / `reject()` (or drop) later calls `WskInspectComplete`, exactly once, from
//! any thread at IRQL <= DISPATCH_LEVEL. Only an admission whose [`Admission::pends`] says so
//! may pend: its listener reserves, at bind, a table of
//! [`MAX_PENDED`](crate::socket::inspection::MAX_PENDED) pended inspections (each with the
//! IRP of its `WskInspectComplete`), so pending allocates nothing; a request pended with the
//! table full is rejected. `WskAbortEvent` (the peer left a pended request) marks its
//! handle ([`Inspection::is_aborted`]); the library's callback returns `STATUS_SUCCESS`, as
//! Microsoft documents it must. Closing the listener rejects the inspections still pended
//! rather than wait for their handles. See [`crate::socket::inspection`] for the protocol.

use core::net::{IpAddr, SocketAddr};

use crate::loom::{AtomicU32, AtomicU64, Ordering};
pub use crate::socket::inspection::Inspection;

/// What an [`Admission`] decides for a connection request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verdict {
    /// The connection goes on to the listener's accept (`WskInspectAccept`).
    Accept,
    /// The connection is refused before a socket exists (`WskInspectReject`): the peer's
    /// connection is reset or never established.
    Reject,
    /// Undecided (`WskInspectPend`): the admission gets the request's [`Inspection`] through
    /// [`Admission::pended`] and decides later. Rejected at once when the admission does not
    /// pend ([`Admission::pends`]) or its listener has [`MAX_PENDED`] pended already.
    ///
    /// [`MAX_PENDED`]: crate::socket::inspection::MAX_PENDED
    Pend,
}

/// Decides, for each connection request of a conditional-accept listener, whether the
/// listener takes it.
pub trait Admission: Sync {
    /// The decision for a connection request from `peer`, made inside WSK's
    /// `WskInspectEvent`. IRQL <= DISPATCH_LEVEL: must not block or wait, must not allocate
    /// (never from paged pool), must not touch pageable code or data.
    fn inspect(&self, peer: SocketAddr) -> Verdict;

    /// Whether [`inspect`](Self::inspect) may answer [`Verdict::Pend`]: a listener bound
    /// with this admission then reserves its table of pended inspections. Read once, at
    /// bind. The default: `false`. Any IRQL.
    fn pends(&self) -> bool {
        false
    }

    /// Takes the handle of a request [`inspect`](Self::inspect) pended, still inside WSK's
    /// `WskInspectEvent` (IRQL <= DISPATCH_LEVEL, the same rules as `inspect`: keep it in a
    /// place of the admission's own, allocated beforehand, and wake whoever decides). A
    /// handle decided or dropped here, or before the callback returned, is answered by the
    /// callback itself. The default drops it: the request is rejected.
    fn pended(&self, inspection: Inspection) {
        drop(inspection);
    }
}

/// A per-address admission table for a limit shared by the admission check and the accept
/// loop: [`Admission`] for the inspection, `try_acquire` / `release` for the connections
/// actually served. [`PerPeerLimit`] implements it.
pub trait PeerLimit: Admission {
    /// Counts one more connection from `peer`'s address; `false` (nothing counted) when the
    /// address is at its limit, when the table has no room for a new address, or when another
    /// thread is acquiring at the same moment. IRQL <= DISPATCH_LEVEL.
    fn try_acquire(&self, peer: IpAddr) -> bool;

    /// Counts one connection from `peer`'s address less (one that `try_acquire` counted).
    /// IRQL <= DISPATCH_LEVEL.
    fn release(&self, peer: IpAddr);
}

/// Slots of the table a peer's address may occupy, from its home slot on.
const PROBES: usize = 8;
/// The low bits of a slot word: the count.
const COUNT_BITS: u32 = 16;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;

/// At most `limit` connections at once from one IP address, in a table of `N` slots.
///
/// The table is `N` atomic words (8 bytes each), allocated with the value: a driver keeps it
/// in a `static`, so nothing is allocated when connections arrive. Each word holds an
/// address's 48-bit tag and its count of connections; an address may occupy one of
/// [`PROBES`](self) slots from its home slot. An IPv4 address's tag is exact; an IPv6
/// address's is a 48-bit hash, so two IPv6 addresses with the same hash share a count (they
/// are limited together, never beyond the limit). IPv4-mapped IPv6 addresses count as their
/// IPv4 address. When every slot an address may use is taken by other addresses, a new
/// address is refused: size `N` for the number of distinct peers expected at once, with room
/// to spare.
///
/// Counting ([`PeerLimit::try_acquire`]) has one acquirer at a time (a claim word; a second
/// acquirer at the same moment is refused rather than made to wait); releases and inspections
/// run concurrently with it from any thread. The inspection only reads: a burst of requests
/// from one address can all pass the inspection before any of them is counted, so the
/// acquirer (the accept loop) refuses those beyond the limit when it counts them.
///
/// Limit 0 means unlimited: nothing is counted, every request is admitted.
pub struct PerPeerLimit<const N: usize> {
    limit: AtomicU32,
    acquiring: AtomicU32,
    slots: [AtomicU64; N],
}

impl<const N: usize> PerPeerLimit<N> {
    /// A table with `limit` connections per address (0: unlimited). Any IRQL.
    #[cfg(not(loom))]
    pub const fn new(limit: u32) -> Self {
        assert!(N > 0, "a PerPeerLimit needs at least one slot");
        Self { limit: AtomicU32::new(limit), acquiring: AtomicU32::new(0), slots: [const { AtomicU64::new(0) }; N] }
    }

    /// A table with `limit` connections per address (0: unlimited).
    #[cfg(loom)]
    pub fn new(limit: u32) -> Self {
        assert!(N > 0, "a PerPeerLimit needs at least one slot");
        Self {
            limit: AtomicU32::new(limit),
            acquiring: AtomicU32::new(0),
            slots: core::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// Sets the limit (0: unlimited); connections counted already stay counted. Any IRQL.
    pub fn set_limit(&self, limit: u32) {
        self.limit.store(limit.min(COUNT_MASK as u32), Ordering::Relaxed);
    }

    /// The limit (0: unlimited). Any IRQL.
    pub fn limit(&self) -> u32 {
        self.limit.load(Ordering::Relaxed)
    }

    /// Connections counted for `peer`'s address now. IRQL <= DISPATCH_LEVEL.
    pub fn count(&self, peer: IpAddr) -> u32 {
        let tag = tag_of(peer);
        self.probe(tag)
            .map(|slot| slot.load(Ordering::Acquire))
            .filter(|&word| word >> COUNT_BITS == tag)
            .map(|word| (word & COUNT_MASK) as u32)
            .sum()
    }

    /// The slots `tag` may occupy, from its home slot on.
    fn probe(&self, tag: u64) -> impl Iterator<Item = &AtomicU64> {
        let home = (tag % N as u64) as usize;
        (0..PROBES.min(N)).map(move |step| &self.slots[(home + step) % N])
    }

    /// [`PeerLimit::try_acquire`] under the acquirer's claim.
    fn acquire_claimed(&self, tag: u64, limit: u32) -> bool {
        for slot in self.probe(tag) {
            let mut word = slot.load(Ordering::Acquire);
            // Releases may change the word under us: retry on it until it is not ours.
            while word >> COUNT_BITS == tag && word & COUNT_MASK != 0 {
                let count = (word & COUNT_MASK) as u32;
                if count >= limit || u64::from(count) == COUNT_MASK {
                    return false;
                }
                match slot.compare_exchange(word, word + 1, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => return true,
                    Err(now) => word = now,
                }
            }
        }
        // Not counted yet: a free slot of its probe sequence. Only the acquirer fills slots,
        // so no other slot can get this tag meanwhile.
        self.probe(tag)
            .any(|slot| slot.compare_exchange(0, (tag << COUNT_BITS) | 1, Ordering::AcqRel, Ordering::Acquire).is_ok())
    }
}

impl<const N: usize> Admission for PerPeerLimit<N> {
    /// Rejects a request from an address at its limit. Loads only. IRQL <= DISPATCH_LEVEL.
    fn inspect(&self, peer: SocketAddr) -> Verdict {
        let limit = self.limit();
        if limit != 0 && self.count(peer.ip()) >= limit { Verdict::Reject } else { Verdict::Accept }
    }
}

impl<const N: usize> PeerLimit for PerPeerLimit<N> {
    fn try_acquire(&self, peer: IpAddr) -> bool {
        let limit = self.limit();
        if limit == 0 {
            return true;
        }
        if self.acquiring.swap(1, Ordering::Acquire) != 0 {
            return false;
        }
        let acquired = self.acquire_claimed(tag_of(peer), limit);
        self.acquiring.store(0, Ordering::Release);
        acquired
    }

    fn release(&self, peer: IpAddr) {
        let tag = tag_of(peer);
        for slot in self.probe(tag) {
            let mut word = slot.load(Ordering::Acquire);
            while word >> COUNT_BITS == tag && word & COUNT_MASK != 0 {
                // The last connection of the address frees the slot.
                let next = if word & COUNT_MASK == 1 { 0 } else { word - 1 };
                match slot.compare_exchange(word, next, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => return,
                    Err(now) => word = now,
                }
            }
        }
        // Not counted (acquired while the limit was 0): nothing to release.
    }
}

/// The 48-bit tag of an address, never 0: an IPv4 address itself (bit 32 set), an IPv6
/// address a hash of it (bit 47 set).
fn tag_of(peer: IpAddr) -> u64 {
    match peer.to_canonical() {
        IpAddr::V4(v4) => (1 << 32) | u64::from(u32::from(v4)),
        IpAddr::V6(v6) => {
            // FNV-1a over the 16 bytes.
            let hash = v6.octets().iter().fold(0xcbf2_9ce4_8422_2325u64, |hash, &byte| {
                (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
            });
            (1 << 47) | (hash & ((1 << 47) - 1))
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use core::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    fn v4(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
    }

    fn at(ip: IpAddr) -> SocketAddr {
        SocketAddr::new(ip, 5000)
    }

    #[test]
    fn each_address_is_limited_on_its_own_and_released_slots_are_reused() {
        let table: PerPeerLimit<16> = PerPeerLimit::new(2);
        assert!(table.try_acquire(v4(1)));
        assert_eq!(table.inspect(at(v4(1))), Verdict::Accept);
        assert!(table.try_acquire(v4(1)));
        assert_eq!(table.count(v4(1)), 2);
        assert_eq!(table.inspect(at(v4(1))), Verdict::Reject, "at its limit");
        assert!(!table.try_acquire(v4(1)), "at its limit");
        assert_eq!(table.inspect(at(v4(2))), Verdict::Accept, "another address has its own count");
        assert!(table.try_acquire(v4(2)));
        table.release(v4(1));
        assert_eq!(table.count(v4(1)), 1);
        assert!(table.try_acquire(v4(1)));
        table.release(v4(1));
        table.release(v4(1));
        table.release(v4(2));
        assert_eq!(table.count(v4(1)) + table.count(v4(2)), 0);
        assert!(table.slots.iter().all(|slot| slot.load(Ordering::Relaxed) == 0), "every slot is free again");
    }

    #[test]
    fn a_mapped_ipv6_address_counts_as_its_ipv4_address_and_ipv6_addresses_count_apart() {
        let table: PerPeerLimit<16> = PerPeerLimit::new(1);
        assert!(table.try_acquire(v4(7)));
        let mapped = IpAddr::V6(Ipv4Addr::new(10, 0, 0, 7).to_ipv6_mapped());
        assert!(!table.try_acquire(mapped));
        let (a, b) = (IpAddr::V6(Ipv6Addr::LOCALHOST), IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1)));
        assert!(table.try_acquire(a));
        assert!(table.try_acquire(b));
        assert!(!table.try_acquire(a));
    }

    #[test]
    fn a_full_neighbourhood_refuses_new_addresses_and_limit_zero_counts_nothing() {
        let table: PerPeerLimit<4> = PerPeerLimit::new(1);
        for last in 1..=4 {
            assert!(table.try_acquire(v4(last)), "slot for address {last}");
        }
        assert!(!table.try_acquire(v4(5)), "no room for a fifth address");
        table.release(v4(3));
        assert!(table.try_acquire(v4(5)), "a freed slot is taken");
        let unlimited: PerPeerLimit<1> = PerPeerLimit::new(0);
        for _ in 0..10 {
            assert!(unlimited.try_acquire(v4(1)));
        }
        assert_eq!(unlimited.count(v4(1)), 0);
        assert_eq!(unlimited.inspect(at(v4(1))), Verdict::Accept);
        unlimited.release(v4(1));
    }

    #[test]
    fn a_second_acquirer_at_the_same_moment_is_refused() {
        let table: PerPeerLimit<4> = PerPeerLimit::new(3);
        table.acquiring.store(1, Ordering::Relaxed);
        assert!(!table.try_acquire(v4(1)));
        table.acquiring.store(0, Ordering::Relaxed);
        assert!(table.try_acquire(v4(1)));
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use core::net::Ipv4Addr;

    use loom::sync::Arc;

    use super::*;

    /// The acquirer and a release of the same address race: the count ends right (one left)
    /// and the address is never in two slots.
    #[test]
    fn loom_acquire_and_release_of_one_address() {
        loom::model(|| {
            let table: Arc<PerPeerLimit<2>> = Arc::new(PerPeerLimit::new(2));
            let peer = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
            assert!(table.try_acquire(peer));
            let releaser = {
                let table = table.clone();
                loom::thread::spawn(move || table.release(peer))
            };
            assert!(table.try_acquire(peer));
            releaser.join().unwrap();
            assert_eq!(table.count(peer), 1);
            let used = table.slots.iter().filter(|slot| slot.load(Ordering::Relaxed) != 0).count();
            assert_eq!(used, 1);
        });
    }
}
