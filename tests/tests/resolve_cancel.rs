//! A resolution dropped while pending is cancelled: the provider completes it at once
//! (`STATUS_CANCELLED`), and the next resolution collects it, long before the lookup itself
//! would have ended. The resolution delay that keeps it pending is process-wide, so this test
//! has a binary of its own.

use std::time::Duration;

use wsk_executor::timeout;
use wsk_tests::harness::run_clean;

const LIMIT: Duration = Duration::from_secs(60);
/// Far longer than the test takes when the cancel works.
const DELAY: Duration = Duration::from_secs(5);

#[test]
fn a_dropped_resolution_is_cancelled() {
    wsk_emulator::set_resolution_delay(DELAY);
    run_clean(LIMIT, |env| async move {
        let dropped = timeout(Duration::from_millis(20), env.wsk.resolve("localhost", 80)).await;
        assert!(dropped.is_err(), "the resolution was still pending: {dropped:?}");
        let before = wsk_emulator::counters().irp_frees;
        let next = env.wsk.resolve("127.0.0.1", 80).await.expect("numeric");
        assert_eq!(next.len(), 1);
        // Its own IRP, and the cancelled one (completed at its cancel, not after the delay).
        assert_eq!(wsk_emulator::counters().irp_frees - before, 2);
    });
}
