//! The emulated WSK provider over real loopback sockets, called the way driver code calls it:
//! through `wsk_sys` types and the dispatch tables the provider hands out, with the verifier
//! on. Waits are bounded (they turn a hang into a failure); no test asserts on timing.

#![expect(
    clippy::undocumented_unsafe_blocks,
    clippy::multiple_unsafe_ops_per_block,
    reason = "test code calls several kernel routines per block and states their contract once per test"
)]

mod support;

mod cancel;
mod events;
mod invalid;
mod loopback;
mod name_info;
mod option_values;
mod options;
mod resolve;
mod scale;
mod tcp;
mod udp;
mod verifier;
