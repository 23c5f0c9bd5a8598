//! `cargo xtask bench`: the executor benchmarks (`tests/benches/executor.rs`), built in release
//! mode, comparing `wsk-executor` with tokio's current_thread runtime and async-executor; then
//! the echo benchmark ([`crate::echo_bench`]): the echo driver on the emulator and under Wine,
//! a tokio echo server and the blocking baseline, driven by one client.
//!
//! In between, the sockets figures (`tests/benches/figures.rs`): allocations per send and
//! receive, non-paged bytes per idle connection; and receive throughput with event callbacks
//! against IRP receives (`tests/benches/events.rs`); and the library's and executor's own cost
//! per operation and per byte on the emulator's in-memory connections against tokio over
//! `tokio::io::duplex` (`tests/benches/cost.rs`).
//!
//! `WSK_BENCH=executor`, `figures`, `events`, `cost` or `echo` runs only that part. The echo
//! benchmark always runs in a release build of this tool (`cargo run --release -p xtask --
//! bench`, started from a dev build), because its tokio server is part of this process.

use std::process::Command;

use crate::echo_bench;
use crate::util::{self, Result, bail};

/// Selects the parts to run (unset: both).
pub const ONLY_ENV: &str = "WSK_BENCH";

/// Runs the executor benchmark (`cargo bench -p wsk-tests --bench executor`, which prints its
/// tables straight to the terminal), then the echo benchmark.
pub fn run() -> Result<()> {
    let only = std::env::var(ONLY_ENV).unwrap_or_default();
    let (executor, figures, events, cost, echo) = match only.as_str() {
        "" => (true, true, true, true, true),
        "executor" => (true, false, false, false, false),
        "figures" => (false, true, false, false, false),
        "events" => (false, false, true, false, false),
        "cost" => (false, false, false, true, false),
        "echo" => (false, false, false, false, true),
        other => bail!("{ONLY_ENV}={other}: expected `executor`, `figures`, `events`, `cost` or `echo`"),
    };
    for (on, bench) in [(executor, "executor"), (figures, "figures"), (events, "events"), (cost, "cost")] {
        if on {
            let mut cmd = Command::new("cargo");
            cmd.current_dir(util::workspace_root()).args(["bench", "-p", "wsk-tests", "--bench", bench]);
            util::run_inherit(&mut cmd)?;
        }
    }
    if echo {
        if cfg!(debug_assertions) {
            // The echo benchmark's tokio server runs in this process: built without
            // optimizations (`cargo xtask` is a dev build) it would be a handicapped peer. The
            // benchmark runs in a release build of this tool instead.
            let mut cmd = Command::new("cargo");
            cmd.current_dir(util::workspace_root())
                .args(["run", "--release", "-p", "xtask", "--", "bench"])
                .env(ONLY_ENV, "echo");
            util::run_inherit(&mut cmd)?;
        } else {
            echo_bench::run()?;
        }
    }
    Ok(())
}
