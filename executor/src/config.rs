//! Executor settings.

use core::time::Duration;

/// How much work one run of the executor's work item may do before it re-queues itself and
/// gives the system worker thread back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    pub(crate) max_polls: u32,
    pub(crate) max_run_nanos: u64,
    pub(crate) ready_per_poll: u32,
}

impl Config {
    /// 1024 polls or 2 ms per run, whichever comes first. The count amortizes the cost of
    /// re-queueing the work item (a thread hand-over); the time bounds how long a run keeps a
    /// system worker thread. Within one poll a task may find 32 operations ready (see
    /// [`coop`](crate::coop)). (All of `Config` works at any IRQL.)
    pub const fn new() -> Self {
        Self { max_polls: 1024, max_run_nanos: 2_000_000, ready_per_poll: 32 }
    }

    /// At most `ready` operations found ready in one poll of a task (at least 1): the next
    /// one reports `Pending` and the task goes to the back of the run queue (see
    /// [`coop`](crate::coop)). A task whose I/O keeps completing inside the provider call (data
    /// already there, as a busy connection often has) would otherwise never give the other
    /// tasks a turn.
    pub const fn max_ready_per_poll(mut self, ready: u32) -> Self {
        self.ready_per_poll = if ready == 0 { 1 } else { ready };
        self
    }

    /// At most `polls` task polls per run (at least 1).
    pub const fn max_polls_per_run(mut self, polls: u32) -> Self {
        self.max_polls = if polls == 0 { 1 } else { polls };
        self
    }

    /// Stop polling once a run has lasted `time` (checked after each poll).
    pub const fn max_time_per_run(mut self, time: Duration) -> Self {
        let nanos = time.as_nanos();
        self.max_run_nanos = if nanos > u64::MAX as u128 { u64::MAX } else { nanos as u64 };
        self
    }
}

impl Default for Config {
    fn default() -> Self {
        Self::new()
    }
}
