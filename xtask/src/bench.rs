//! `cargo xtask bench`: the executor benchmarks (`tests/benches/executor.rs`), built in release
//! mode, comparing `wsk-executor` with tokio's current_thread runtime and async-executor.

use std::process::Command;

use crate::util::{self, Result};

/// Runs `cargo bench -p wsk-tests --bench executor`; the benchmark prints its tables straight
/// to the terminal.
pub fn run() -> Result<()> {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(util::workspace_root()).args(["bench", "-p", "wsk-tests", "--bench", "executor"]);
    util::run_inherit(&mut cmd)
}
