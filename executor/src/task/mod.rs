//! Tasks: one allocation per spawned future, shared by its wakers, its `JoinHandle`, the run
//! queue and the executor's list of owned tasks.
//!
//! # Memory
//!
//! A task is a single allocation from its executor's [`Platform::alloc`](crate::platform::Platform::alloc):
//!
//! ```text
//!   Cell<F, S> (#[repr(C)])
//!   +--------------------------------------------------------------+
//!   | Header   run queue link | state word | vtable | executor     |
//!   |          owned-list links (work item only)                   |
//!   | stage    Running(F) | Finished(Result<F::Output>) | Consumed |
//!   | join     waker of the task awaiting the JoinHandle           |
//!   +--------------------------------------------------------------+
//! ```
//!
//! The future and its output share the `stage` enum. Nothing else is allocated per spawn, and
//! nothing at all per wake or poll.
//!
//! # Lifecycle
//!
//! ```text
//!   spawn ──► SCHEDULED ──pop──► RUNNING ──Ready──────────────► COMPLETE ──last ref──► freed
//!               ▲   ▲              │  │                            ▲
//!               │   │   Pending,   │  │ cancelled (abort/shutdown) │
//!               │   │   woken      │  └─────── drop future ────────┘
//!               │   └──────────────┘
//!               │                  │ Pending, not woken
//!               │    wake/abort    ▼
//!               └─────────────── IDLE
//! ```
//!
//! * Only the work item sets RUNNING, so a task is never polled by two threads at once.
//! * A wake that finds the task IDLE sets SCHEDULED and pushes it; one that finds it RUNNING
//!   sets SCHEDULED and the work item pushes it again after the poll (never lost); one that
//!   finds it SCHEDULED or COMPLETE does nothing. A task is in the run queue at most once.
//! * The future is dropped only in the work item at PASSIVE_LEVEL: when it completes, when it
//!   is cancelled, or at shutdown. The last reference then frees memory only, at any IRQL
//!   <= DISPATCH_LEVEL.
//!
//! # Code
//!
//! * [`cell`]: the allocation and the type-erased vtable every pointer to a task goes through.
//! * [`harness`]: `Harness`, the only code that reaches into a cell, and the vtable functions
//!   on top of it; each access to the stage or the join waker slot names its right from the
//!   table below.
//! * [`state`]: the state word's transitions, each returning what the caller must do.
//! * [`waker`]: the task `Waker`, and `WakerRef`, the waker the work item polls with (it
//!   borrows the queue's reference instead of taking one).
//! * [`schedule`]: `Schedule`, all a task knows of its executor (memory, the run queue,
//!   accounting); the scheduler implements it, so `task/` does not depend on the scheduler.
//! * `join` and [`owned`]: the `JoinHandle` and the work item's list of live tasks.
//!
//! # References
//!
//! A new task holds three: the owned list's (dropped when the task completes), the run
//! queue's (one per queued entry, moved along when rescheduled) and the join handle's. Each
//! `Waker` clone holds one.
//!
//! # Who touches what
//!
//! | field              | who                    | when                                                |
//! |--------------------|------------------------|-----------------------------------------------------|
//! | queue link         | the pusher, then the work item | while the task is in the run queue          |
//! | state              | anyone                 | atomic transitions only ([`state`])                 |
//! | vtable, executor   | anyone, read only      | always                                              |
//! | owned-list links   | work item              | always (the work item is one thread at a time)      |
//! | stage `Running`    | work item              | while it holds RUNNING                              |
//! | stage `Finished`   | work item writes it    | before setting COMPLETE                             |
//! |                    | join handle takes it   | after it saw COMPLETE                               |
//! |                    | work item drops it     | if JOIN_INTEREST was clear at COMPLETE              |
//! |                    | join handle drops it   | when dropped after COMPLETE                         |
//! | join waker slot    | join handle            | while JOIN_WAKER is clear                           |
//! |                    | work item reads it     | while COMPLETE and JOIN_WAKER are set               |
//! |                    | work item drops it     | after clearing JOIN_WAKER if JOIN_INTEREST is clear |

pub(crate) mod cell;
mod harness;
mod join;
pub(crate) mod owned;
mod schedule;
pub(crate) mod state;
pub(crate) mod waker;

pub use join::JoinHandle;

pub(crate) use cell::{Header, RunCtx, allocate};
pub(crate) use join::new_join_handle;
pub(crate) use schedule::Schedule;
