//! Systematic low-resources sweep: the scenario of `stress_driver::scenario` runs once per
//! fault point it meets (the driver's allocations, the provider calls, and the system-space
//! mappings the driver asks for), with exactly that one failing. Every run must end cleanly:
//! the error surfaces, nothing hangs, nothing leaks, the verifier stays silent.
//!
//! The sweep runs twice: with the emulator's kind provider, and with its indication MDLs
//! unmapped (`wsk_emulator::adversary`), so that every mapping the receive callbacks make is
//! a fault point too. The adversary is process-wide, so the second sweep is a test binary of
//! its own (`sweep_unmapped.rs`); both run `sweep_common::sweep`.

mod sweep_common;

#[test]
fn every_single_fault_point_failing_ends_cleanly() {
    sweep_common::sweep(false);
}
