//! The sweep of `sweep.rs` with unmapped indication MDLs: the receive callbacks' mappings
//! are fault points too.

mod sweep_common;

#[test]
fn every_single_fault_point_failing_ends_cleanly_with_unmapped_indications() {
    wsk_emulator::adversary::set(wsk_emulator::adversary::Adversary {
        unmapped_indications: true,
        ..wsk_emulator::adversary::Adversary::default()
    });
    sweep_common::sweep(true);
}
