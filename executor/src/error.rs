//! Error types.

use core::fmt;

/// Why [`Executor::spawn`](crate::Executor::spawn) did not spawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpawnError {
    /// The task could not be allocated. The future was dropped on the calling thread.
    NoMemory,
    /// The executor is shutting down. The future was dropped on the calling thread.
    ShuttingDown,
}

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NoMemory => "no memory for the task",
            Self::ShuttingDown => "the executor is shutting down",
        })
    }
}

impl core::error::Error for SpawnError {}

/// A task ended without an output to give.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct JoinError {
    kind: JoinErrorKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JoinErrorKind {
    Cancelled,
    OutputTaken,
}

impl JoinError {
    pub(crate) const fn cancelled() -> Self {
        Self { kind: JoinErrorKind::Cancelled }
    }

    pub(crate) const fn output_taken() -> Self {
        Self { kind: JoinErrorKind::OutputTaken }
    }

    /// The task was cancelled, by `JoinHandle::abort` or by the executor's shutdown, before
    /// it completed. Its future was dropped. Any IRQL.
    pub fn is_cancelled(&self) -> bool {
        self.kind == JoinErrorKind::Cancelled
    }

    /// The handle was polled again after it had already returned the output. Any IRQL.
    pub fn is_output_taken(&self) -> bool {
        self.kind == JoinErrorKind::OutputTaken
    }
}

impl fmt::Debug for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("JoinError").field(&self.kind).finish()
    }
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.kind {
            JoinErrorKind::Cancelled => "task was cancelled",
            JoinErrorKind::OutputTaken => "task output was already taken",
        })
    }
}

impl core::error::Error for JoinError {}

/// Why [`block_on`](fn@crate::block_on) did not run the future.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockOnError {
    /// Called above PASSIVE_LEVEL, where a thread must not wait.
    NotPassive,
    /// No memory for the waker's event.
    NoMemory,
}

impl fmt::Display for BlockOnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotPassive => "block_on called above PASSIVE_LEVEL",
            Self::NoMemory => "no memory for block_on's event",
        })
    }
}

impl core::error::Error for BlockOnError {}

/// Why an executor could not be created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartError {
    /// Called above PASSIVE_LEVEL.
    NotPassive,
    /// No memory for the executor or its work item.
    NoMemory,
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotPassive => "executor created above PASSIVE_LEVEL",
            Self::NoMemory => "no memory for the executor or its work item",
        })
    }
}

impl core::error::Error for StartError {}
