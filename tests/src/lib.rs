//! Workspace-level integration tests and benchmarks.
//!
//! The tests (`tests/`) load small drivers built on the workspace's crates into the emulated
//! kernel with its verifier on and check their results and the verifier's report at unload.
//! The benchmarks (`benches/`, run with `cargo xtask bench`) compare the executor with other
//! async runtimes. This library holds [`harness`], which runs an async body inside a test driver
//! (WSK registration and an executor) on the emulated kernel.

pub mod harness;
