//! Integration tests of the emulated kernel. Every routine is called through `wsk_sys`'s
//! declarations, as driver code does; the emulator's `#[no_mangle]` definitions resolve them.

#![expect(
    clippy::undocumented_unsafe_blocks,
    clippy::multiple_unsafe_ops_per_block,
    reason = "test code calls several kernel routines per block and states their contract once per test"
)]

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
