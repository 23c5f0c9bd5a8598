//! Non-paged pool allocation, fallible by construction: the executor's pool module
//! ([`wsk_executor::pool`]), which owns pool allocation and the pool tag table for both
//! crates, under the names the library uses.
//!
//! That module resolves `ExAllocatePool2` at PASSIVE_LEVEL and falls back to
//! `ExAllocatePoolWithTag(NonPagedPoolNx)`; [`allocate`] here zeroes what it returns.

pub use wsk_executor::pool::{
    AnyPoolBox, POOL_ALIGNMENT as POOL_ALIGN, PoolBox, allocate_zeroed as allocate, free, init, tag,
};

/// Pool tag of the library's general allocations ("WskA" in a pool dump): its global
/// allocator and `PoolBox` values with no tag of their own.
pub const TAG: u32 = tag::LIBRARY;
