//! Cost of pool allocation (printed, never asserted: timing depends on the machine).

use std::time::Instant;

use wsk_emulator::Kernel;
use wsk_sys::*;

use crate::common::TAG;

fn measure(capture_sites: bool, pairs: u32) -> f64 {
    let driver = Kernel::builder().capture_sites(capture_sites).attach("perf");
    let start = Instant::now();
    for _ in 0..pairs {
        unsafe {
            let block = ExAllocatePoolWithTag(NonPagedPoolNx, 64, TAG);
            assert!(!block.is_null());
            ExFreePoolWithTag(block, TAG);
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let report = driver.unload();
    report.assert_clean();
    assert_eq!(report.counters.pool_allocations, u64::from(pairs));
    elapsed
}

#[test]
fn pool_alloc_free_pairs() {
    let pairs = std::env::var("WSK_EMU_PERF_PAIRS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let off = measure(false, pairs);
    let on = measure(true, pairs);
    eprintln!(
        "{pairs} ExAllocatePoolWithTag/ExFreePoolWithTag pairs: {:.3} s without site capture ({:.2} us/pair), \
         {:.3} s with site capture ({:.2} us/pair)",
        off,
        off * 1e6 / f64::from(pairs),
        on,
        on * 1e6 / f64::from(pairs)
    );
}
