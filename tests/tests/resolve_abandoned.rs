//! A resolution dropped while pending that the provider completes successfully anyway: its
//! `ADDRINFOEXW` list goes back to the provider (`WskFreeAddressInfo` at PASSIVE_LEVEL), and
//! the verifier finds no list left at unload.
//!
//! The provider must not honour the cancel, and the resolution must still be pending when the
//! future is dropped: the `wine-uncancelable-irps` quirk (no cancel routine on the resolution's
//! IRP) and a resolution delay, both process-wide, so this test has a binary of its own.

use std::time::Duration;

use wsk_emulator::quirks::{self, Quirks};
use wsk_executor::{sleep, timeout};
use wsk_tests::harness::run_clean;

const LIMIT: Duration = Duration::from_secs(60);
const DELAY: Duration = Duration::from_millis(300);

#[test]
fn abandoned_resolutions_return_their_lists() {
    quirks::set(Quirks { wine_uncancelable_irps: true, ..Quirks::default() });
    wsk_emulator::set_resolution_delay(DELAY);
    run_clean(LIMIT, |env| async move {
        // Given up while pending; it completes with a list after the delay, and the next
        // resolution collects it and frees the list.
        let dropped = timeout(Duration::from_millis(20), env.wsk.resolve("localhost", 80)).await;
        assert!(dropped.is_err(), "the resolution was still pending: {dropped:?}");
        sleep(DELAY * 2).await;
        let before = wsk_emulator::counters().irp_frees;
        let next = env.wsk.resolve("127.0.0.1", 80).await.expect("numeric");
        assert_eq!(next.len(), 1);
        // Its own IRP, and the one of the resolution given up, collected.
        assert_eq!(wsk_emulator::counters().irp_frees - before, 2);
        // Given up again, and the driver unloads before it completes: the registration's
        // drop waits for it and frees its list, IRP and slot before deregistering.
        let dropped = timeout(Duration::from_millis(20), env.wsk.resolve("localhost", 80)).await;
        assert!(dropped.is_err(), "the resolution was still pending: {dropped:?}");
    });
}
