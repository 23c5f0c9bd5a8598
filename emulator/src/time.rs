//! Clocks: interrupt time (100 ns units since the emulated boot) and system time (100 ns
//! units since 1601-01-01), and conversion of kernel timeouts to host deadlines.

use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use wsk_sys::LARGE_INTEGER;

static BOOT: OnceLock<Instant> = OnceLock::new();

/// 100 ns intervals between 1601-01-01 and 1970-01-01.
const UNIX_EPOCH_AS_FILETIME: u64 = 116_444_736_000_000_000;

fn boot() -> Instant {
    *BOOT.get_or_init(Instant::now)
}

/// Interrupt time: 100 ns units since the emulator started.
pub(crate) fn interrupt_time() -> u64 {
    let elapsed = Instant::now().duration_since(boot());
    u64::try_from(elapsed.as_nanos() / 100).unwrap_or(u64::MAX)
}

/// System time: 100 ns units since 1601-01-01 (UTC).
pub(crate) fn system_time() -> u64 {
    let since_unix = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    UNIX_EPOCH_AS_FILETIME + u64::try_from(since_unix.as_nanos() / 100).unwrap_or(u64::MAX / 2)
}

/// A duration of `units` × 100 ns.
pub(crate) fn from_100ns(units: u64) -> Duration {
    Duration::from_nanos(units.saturating_mul(100))
}

/// The host deadline of a kernel due time: negative is relative (100 ns units), positive is
/// an absolute system time, zero is now.
pub(crate) fn deadline(due: LARGE_INTEGER) -> Instant {
    let now = Instant::now();
    if due < 0 {
        now + from_100ns(due.unsigned_abs())
    } else {
        let target = u64::try_from(due).unwrap_or(0);
        now + from_100ns(target.saturating_sub(system_time()))
    }
}

/// Interrupt time at `instant` (for `KTIMER.DueTime`).
pub(crate) fn interrupt_time_at(instant: Instant) -> u64 {
    let elapsed = instant.saturating_duration_since(boot());
    u64::try_from(elapsed.as_nanos() / 100).unwrap_or(u64::MAX)
}
