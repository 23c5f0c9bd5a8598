//! Integration tests of the emulated kernel. Every routine is called through `wsk_sys`'s
//! declarations, as driver code does; the emulator's `#[no_mangle]` definitions resolve them.

// Test code calls many kernel routines per block and documents the contract once per test.
#![allow(clippy::undocumented_unsafe_blocks, clippy::multiple_unsafe_ops_per_block, non_snake_case)]

mod common;

mod debug;
mod driver;
mod event;
mod fault;
mod irp;
mod irql;
mod mdl;
mod perf;
mod pool;
mod registry;
mod rundown;
mod timer_dpc;
mod workitem;
mod wsk;
