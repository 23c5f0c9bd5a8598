//! Atomics and cells, from `loom` under `--cfg loom` and from `core` otherwise, so the
//! operation and close state machines run unchanged under the loom model checker.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
