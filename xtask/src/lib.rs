//! Workspace automation behind `cargo xtask`: building the example drivers as `.sys`
//! images, checking those images, running them under Wine, running every test, and running
//! the benchmarks.
//!
//! The modules are public so later tests (for example a TCP end-to-end test under
//! Wine) can reuse [`wine::WinePrefix`] and the driver build.

#![expect(
    missing_docs,
    reason = "an internal build tool, never published: its modules are public for its own \
              binary and tests, not as an API"
)]

pub mod bench;
pub mod drivers;
pub mod echo_bench;
pub mod echo_client;
pub mod emulator_runs;
pub mod flood;
pub mod http_client;
pub mod pe;
pub mod setup;
pub mod test;
pub mod util;
pub mod wine;
