//! Unit tests of the crate's unsafe code that needs no kernel, or only the few routines
//! [`kernel`] stands in for, so that they also run under Miri (`cargo +nightly miri test -p
//! wsk --lib`). Tests of private items live next to them (`socket::events::*`).

mod abort;
mod addr;
mod deadline;
pub(crate) mod kernel;
pub(crate) mod ktimer;
mod memory;
mod op;
