//! Maps keyed by the address of a kernel object (an IRP, a socket header): the emulator's
//! per-call lookups of what a pointer from the driver refers to.
//!
//! Every WSK call and every IRP operation looks its pointers up, a few times per operation,
//! from the driver's threads and the provider's: a hash map makes a lookup one hash and a
//! probe instead of a walk down a tree, and with a hash of one multiplication instead of
//! SipHash's rounds. Addresses are distinct, aligned and come from the emulator's own
//! allocator, not from an adversary choosing keys to collide, so a keyed hash buys nothing.
//!
//! A table the provider fills at DISPATCH_LEVEL is a [`Sharded`] one: [`SHARDS`] hash maps,
//! each behind its own lock. A hash map grows by doubling, moving every entry into one new
//! allocation; one map of 100,000 socket headers (closed sockets stay in the table) would do
//! that in one step of milliseconds with an allocation of megabytes, which can sleep (the
//! host's memory map lock), and a thread at DISPATCH_LEVEL must not. Sharded, a step moves a
//! few hundred entries into tens of kilobytes, from the allocator's heap.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Mutex, MutexGuard};

use crate::sync::lock;

/// A map from object addresses to `V`.
pub(crate) type AddressMap<V> = HashMap<usize, V, BuildHasherDefault<AddressHasher>>;

/// An empty [`AddressMap`], usable in a `static`.
pub(crate) const fn new<V>() -> AddressMap<V> {
    HashMap::with_hasher(BuildHasherDefault::new())
}

/// Shards of a [`Sharded`] map.
pub(crate) const SHARDS: usize = 256;

/// An address map split into [`SHARDS`] maps, each behind its own lock (see the module
/// documentation); an address always falls in the same shard.
pub(crate) struct Sharded<V> {
    shards: [Mutex<AddressMap<V>>; SHARDS],
}

impl<V> Sharded<V> {
    /// An empty map, usable in a `static`.
    pub(crate) const fn new() -> Self {
        Sharded { shards: [const { Mutex::new(new()) }; SHARDS] }
    }

    /// The shard of `address`, locked (as [`lock`] locks: spinning at DISPATCH_LEVEL).
    pub(crate) fn shard(&self, address: usize) -> MutexGuard<'_, AddressMap<V>> {
        lock(&self.shards[shard_of(address)])
    }

    /// Every shard in turn, locked one at a time.
    pub(crate) fn each_shard(&self, mut f: impl FnMut(&mut AddressMap<V>)) {
        for shard in &self.shards {
            f(&mut lock(shard));
        }
    }
}

/// The shard of `address`: bits of its hash that the shard's own map does not use (its
/// buckets take the low bits, its control bytes the top seven).
fn shard_of(address: usize) -> usize {
    let mut hasher = AddressHasher::default();
    hasher.write_usize(address);
    (hasher.finish() >> 40) as usize % SHARDS
}

/// The hasher of [`AddressMap`]: one 64 x 64 -> 128-bit multiplication folded to 64 bits, so
/// that the low bits the buckets use depend on every bit of the address (aligned addresses
/// have none of their own there).
#[derive(Default)]
pub(crate) struct AddressHasher(u64);

impl Hasher for AddressHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.write_u64(u64::from(byte));
        }
    }

    fn write_usize(&mut self, value: usize) {
        self.write_u64(value as u64);
    }

    fn write_u64(&mut self, value: u64) {
        const MULTIPLIER: u128 = 0x9e37_79b9_7f4a_7c15;
        let product = u128::from(value ^ self.0) * MULTIPLIER;
        self.0 = (product as u64) ^ ((product >> 64) as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Aligned addresses spread over the low bits the buckets use: 4096 objects 0x100 apart
    /// take more than half of the 4096 values of the low 12 bits (a random hash takes about
    /// 63%; the addresses themselves, 16).
    #[test]
    fn aligned_addresses_spread_over_the_low_bits() {
        let mut low = std::collections::HashSet::new();
        for i in 0..4096usize {
            let mut hasher = AddressHasher::default();
            hasher.write_usize(0x7f00_0000_0000 + i * 0x100);
            low.insert(hasher.finish() & 0xfff);
        }
        assert!(low.len() > 2048, "only {} of 4096 low-bit values", low.len());
    }

    /// Aligned addresses fill every shard, none of them far beyond its share.
    #[test]
    fn addresses_spread_over_the_shards() {
        let mut counts = [0usize; SHARDS];
        for i in 0..(SHARDS * 64) {
            counts[shard_of(0x7f00_0000_0000 + i * 0x40)] += 1;
        }
        assert!(counts.iter().all(|&n| n > 0 && n < 3 * 64), "{counts:?}");
        let sharded: Sharded<u32> = Sharded::new();
        sharded.shard(0x1000).insert(0x1000, 7);
        assert_eq!(sharded.shard(0x1000).get(&0x1000), Some(&7));
        let mut seen = 0;
        sharded.each_shard(|shard| seen += shard.len());
        assert_eq!(seen, 1);
    }

    #[test]
    fn a_map_finds_what_it_holds() {
        let mut map: AddressMap<u32> = new();
        for i in 0..1000usize {
            map.insert(0x1000 + i * 16, i as u32);
        }
        assert!((0..1000usize).all(|i| map.get(&(0x1000 + i * 16)) == Some(&(i as u32))));
        assert_eq!(map.get(&0x1008), None);
    }
}
