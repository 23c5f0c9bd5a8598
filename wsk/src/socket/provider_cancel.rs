//! A wait the provider cancelled on its own.
//!
//! A receive or an accept waits for the peer. It completes with `STATUS_CANCELLED` when the
//! library cancelled its IRP: its future was dropped (nobody sees that completion), its
//! deadline passed (the result is then [`Error::TimedOut`]), or the socket is being closed
//! (`WskCloseSocket` cancels what is pending). A `STATUS_CANCELLED` with none of these is the
//! provider's own doing. Microsoft documents no promise that a provider cancels only on
//! request, and one does: Wine's netio issues a receive or an accept as an overlapped Winsock
//! call, which Wine cancels when the thread that issued it exits, and `winedevice.exe` runs
//! work items on thread-pool threads that exit when idle (`cargo xtask wine-test`, its idle
//! gap: without this module an echo connection idle for 7 seconds was closed).
//!
//! Such a completion carries nothing: the emulator and Wine complete it with no data and no
//! connection, and the library assumes every provider does (Windows documents no receive or
//! accept that both delivers and is cancelled). The wait is issued again after [`BACKOFF`] (a
//! provider that cancelled every wait at once would otherwise keep the work item busy), within
//! what is left of the caller's deadline.

use core::time::Duration;

use wsk_executor::platform::Platform;
use wsk_executor::{Kernel, Sleep};

use crate::error::{Error, Result};

/// How long a wait the provider cancelled waits before it is issued again.
pub(crate) const BACKOFF: Duration = Duration::from_millis(10);

/// Whether a wait completed with `result` was cancelled by the provider: `STATUS_CANCELLED`
/// with no deadline passed (that is [`Error::TimedOut`]) and its socket not `closing`. Any
/// IRQL.
pub(crate) fn cancelled_by_provider<T>(result: &Result<T>, closing: bool) -> bool {
    matches!(result, Err(Error::Cancelled)) && !closing
}

/// After one attempt of a wait (`what`: "a receive", "an accept", ...): when the provider
/// cancelled it ([`cancelled_by_provider`]), logs that and returns the [`BACKOFF`] to await
/// before the caller issues the wait again; `None` when `result` is the caller's to return.
/// Any IRQL (the sleep is awaited in task context).
pub(crate) fn wait_again<T>(result: &Result<T>, closing: bool, what: &str) -> Option<Sleep> {
    if !cancelled_by_provider(result, closing) {
        return None;
    }
    crate::log!(info, "wsk: the provider cancelled {}; waiting again", what);
    Some(wsk_executor::sleep(BACKOFF))
}

/// The caller's deadline across the attempts of one wait, on `KeQueryInterruptTime`'s clock.
pub(crate) struct Deadline {
    /// When the wait must end; `None`: no deadline.
    end: Option<u64>,
}

impl Deadline {
    /// Counts `deadline` from now. Any IRQL.
    pub(crate) fn new(deadline: Option<Duration>) -> Self {
        let end = deadline
            .map(|after| Kernel::now_nanos().saturating_add(u64::try_from(after.as_nanos()).unwrap_or(u64::MAX)));
        Self { end }
    }

    /// The deadline of the next attempt: `Ok(None)` without one, `Err(Error::TimedOut)` when
    /// it has passed. Any IRQL.
    pub(crate) fn remaining(&self) -> Result<Option<Duration>> {
        match self.end {
            None => Ok(None),
            Some(end) => match end.checked_sub(Kernel::now_nanos()) {
                Some(left) if left > 0 => Ok(Some(Duration::from_nanos(left))),
                _ => Err(Error::TimedOut),
            },
        }
    }
}

// `Deadline` reads the kernel's clock: its tests run on the emulator
// (`tests/tests/provider_cancel.rs`, the deadline test).
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_cancel_outside_a_close_is_the_providers() {
        assert!(cancelled_by_provider::<usize>(&Err(Error::Cancelled), false));
        assert!(!cancelled_by_provider::<usize>(&Err(Error::Cancelled), true));
        assert!(!cancelled_by_provider::<usize>(&Err(Error::TimedOut), false));
        assert!(!cancelled_by_provider(&Ok(0usize), false));
    }
}
