//! The unload protocol behind [`Service::stop`](crate::service::Service::stop) and
//! [`TcpService::stop`](crate::service::TcpService::stop), and what it reports
//! ([`StopOutcome`]). Drivers that do not use [`service`](crate::service) follow the same
//! steps with [`Executor::shutdown_within`] and [`abort_all_sockets`].
//!
//! # Steps and bound
//!
//! With `deadline` = D:
//!
//! 1. Shut the executor down: spawning is refused, every task is cancelled (its future, and
//!    the sockets it owned, dropped at PASSIVE_LEVEL in the work item; a dropped socket closes
//!    in the background, abortively), and wait at most D for every task to be freed
//!    ([`Executor::shutdown_within`]).
//! 2. Abort every socket of the driver that nobody is closing ([`abort_all_sockets`]): sockets
//!    kept outside tasks, or owned by tasks whose cancellation has not run. Their close cancels
//!    their pending operations, which releases the wakers that kept tasks alive.
//! 3. If tasks were still alive at step 1's deadline, wait at most D more for them. Tasks still
//!    alive then are held by something other than the library's operations (a waker or join
//!    handle the driver keeps): the executor is leaked ([`StalledShutdown::leak`]), counted in
//!    [`StopOutcome::tasks_leaked`], so that unload ends; its memory stays allocated and the
//!    verifier reports it.
//! 4. Wait at most D until every socket's memory is freed ([`wait_for_sockets_closed`]); a
//!    driver that still holds socket handles outside its tasks makes this wait last D (their
//!    sockets are closed, [`StopOutcome::sockets_held`] counts them).
//! 5. Deregister (`WskDeregister` waits until the provider closed every socket).
//!
//! So `stop` returns within about 3 D plus the time the provider takes to complete the
//! `WskCloseSocket` calls of step 2 (WSK documents no bound on a close; every provider the
//! project runs on completes a close after cancelling the socket's IRPs). Steps 1 and 3 end
//! early when the tasks are gone, step 4 when the sockets are.

use core::fmt;
use core::time::Duration;

use wsk_executor::{Executor, StalledShutdown};

use crate::registration::Wsk;
use crate::{abort_all_sockets, live_sockets, log, open_sockets, wait_for_sockets_closed};

/// What the unload protocol did ([`Service::stop`](crate::service::Service::stop)). Its
/// `Display` is one line for DriverUnload's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StopOutcome {
    /// Tasks alive when shutdown began (each was cancelled).
    pub tasks_cancelled: usize,
    /// Tasks not yet freed at the first deadline (before the sockets were aborted).
    pub tasks_alive_at_deadline: usize,
    /// Sockets whose close the protocol began itself ([`abort_all_sockets`]): nobody was
    /// closing them after the tasks were cancelled.
    pub sockets_aborted: usize,
    /// Tasks still alive after the sockets were aborted and a second wait: the executor was
    /// leaked with them (see the module docs). 0 normally.
    pub tasks_leaked: usize,
    /// WSK sockets whose close had not completed at the end ([`open_sockets`]): what
    /// `WskDeregister` then waits for. 0 normally.
    pub sockets_open: usize,
    /// Sockets whose memory was not freed at the end ([`live_sockets`]): closed ones whose
    /// handles the driver still holds outside its tasks, besides the open ones. 0 when the
    /// driver keeps no socket handle of its own.
    pub sockets_held: usize,
}

impl StopOutcome {
    /// Every task was freed and no WSK socket is left open. Any IRQL.
    pub fn is_clean(&self) -> bool {
        self.tasks_leaked == 0 && self.sockets_open == 0
    }
}

impl fmt::Display for StopOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} tasks cancelled, {} alive at the deadline, {} leaked; {} sockets aborted, {} left open, {} held",
            self.tasks_cancelled,
            self.tasks_alive_at_deadline,
            self.tasks_leaked,
            self.sockets_aborted,
            self.sockets_open,
            self.sockets_held
        )
    }
}

/// Runs the protocol of the module docs over a service's parts. Logs the steps that did not go
/// as planned under `name`.
///
/// The registration is taken out of `wsk` only at step 5: until the executor's shutdown is
/// over, a task may still be polled (the run in progress when shutdown begins goes on until
/// it reaches the cancellation), and tasks may hold a reference to the registration where
/// the service keeps it (a driver's `&'static Wsk` into its service's pool block).
///
/// IRQL == PASSIVE_LEVEL to wait; above it the executor is leaked (it cannot be shut down
/// there) and nothing waits.
pub(crate) fn stop(name: &str, executor: Option<Executor>, wsk: &mut Option<Wsk>, deadline: Duration) -> StopOutcome {
    let mut outcome = StopOutcome::default();
    let mut stalled: Option<StalledShutdown> = None;
    if let Some(executor) = executor {
        match executor.shutdown_within(deadline) {
            Ok(report) => {
                outcome.tasks_cancelled = report.cancelled;
                outcome.tasks_alive_at_deadline = report.live_tasks();
                stalled = report.stalled;
            }
            Err(executor) => {
                log!(error, "{}: executor shutdown above PASSIVE_LEVEL; leaking it", name);
                outcome.tasks_leaked = executor.live_tasks();
                core::mem::forget(executor);
            }
        }
    }
    if wsk_sys::KeGetCurrentIrql() == wsk_sys::PASSIVE_LEVEL {
        outcome.sockets_aborted = abort_all_sockets();
    }
    if let Some(stalled) = stalled {
        log!(
            error,
            "{}: {} tasks alive {:?} after shutdown began; sockets aborted, waiting again",
            name,
            stalled.live_tasks(),
            deadline
        );
        if let Err(stalled) = stalled.wait_within(deadline) {
            outcome.tasks_leaked = stalled.leak();
            log!(error, "{}: {} tasks still alive; leaking the executor", name, outcome.tasks_leaked);
        }
    }
    wait_for_sockets_closed(deadline);
    outcome.sockets_open = open_sockets();
    outcome.sockets_held = live_sockets();
    drop(wsk.take());
    outcome
}
