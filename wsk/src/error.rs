//! The library's error type: an NTSTATUS, or one of the library's own conditions, or an
//! executor error it came from; and [`ErrorKind`], its classification.

use core::fmt;

use wsk_executor::{BlockOnError, JoinError, SpawnError, StartError};
use wsk_sys::{NTSTATUS, status_name};

/// Result alias used across the crate.
pub type Result<T, E = Error> = core::result::Result<T, E>;

/// Every failure the library reports. Kernel results are never unwrapped: a failing
/// routine surfaces here with its NTSTATUS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// A kernel or WSK routine failed with this status.
    Status(NTSTATUS),
    /// The operation was cancelled (its IRP completed with `STATUS_CANCELLED`), for example
    /// because the socket was closed while it was pending. A receive or an accept the
    /// provider cancelled on its own, the socket open, is issued again instead (see
    /// [`TcpStream::recv`](crate::TcpStream::recv)): from those, `Cancelled` means the close.
    Cancelled,
    /// The socket's close has begun; no new call is accepted (WSK close contract rule 4).
    Closed,
    /// The deadline of a timed call (`recv_timeout`, `accept_timeout`, ...) passed: its IRP
    /// was cancelled and has completed, and what the call was given is handed back.
    TimedOut,
    /// An allocation (pool, IRP or MDL) failed.
    NoMemory,
    /// The call was made above the IRQL its contract allows.
    WrongIrql {
        /// Highest IRQL the routine accepts.
        max: u8,
        /// IRQL of the caller.
        current: u8,
    },
    /// The argument cannot be used (length too large for an MDL, bad address family, ...).
    InvalidInput(&'static str),
    /// The WSK provider is not available yet (or any more).
    NotReady,
    /// The executor did not spawn a task.
    Spawn(SpawnError),
    /// The executor could not be created.
    Start(StartError),
    /// `block_on` did not run its future.
    BlockOn(BlockOnError),
    /// A task ended without an output to give.
    Join(JoinError),
}

/// What kind of failure an [`Error`] is, for code that reacts to a class of failures rather
/// than to one status (as `std::io::ErrorKind` is for `std::io::Error`). See [`Error::kind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The operation was cancelled: its IRP completed with `STATUS_CANCELLED` (for example
    /// because the socket was closed while it was pending), or its task was cancelled.
    Cancelled,
    /// The socket's close has begun on this side ([`Error::Closed`]).
    Closed,
    /// The peer refused the connection (`STATUS_CONNECTION_REFUSED`).
    ConnectionRefused,
    /// The peer reset the connection (`STATUS_CONNECTION_RESET`).
    ConnectionReset,
    /// The connection was aborted on this side (`STATUS_CONNECTION_ABORTED`,
    /// `STATUS_LOCAL_DISCONNECT`).
    ConnectionAborted,
    /// The socket is not connected (any more): `STATUS_CONNECTION_DISCONNECTED`,
    /// `STATUS_INVALID_CONNECTION`.
    NotConnected,
    /// The address is in use (`STATUS_SHARING_VIOLATION`, `STATUS_ADDRESS_ALREADY_EXISTS`).
    AddrInUse,
    /// The request timed out (`STATUS_IO_TIMEOUT`, or the deadline of a timed call:
    /// [`Error::TimedOut`]).
    TimedOut,
    /// The provider lacks the routine or the request (`STATUS_NOT_IMPLEMENTED`,
    /// `STATUS_NOT_SUPPORTED`).
    Unsupported,
    /// `STATUS_ACCESS_DENIED`.
    PermissionDenied,
    /// Memory (pool, IRP, MDL, a task) ran short: `STATUS_INSUFFICIENT_RESOURCES`,
    /// `STATUS_NO_MEMORY`, an executor that found no memory. Often worth a retry later.
    ResourceShortage,
    /// An argument cannot be used ([`Error::InvalidInput`]).
    InvalidInput,
    /// Called above the IRQL the routine allows.
    WrongIrql,
    /// The WSK provider or the executor is not available (yet, or any more): not captured,
    /// or the executor is shutting down.
    NotReady,
    /// Any other failure.
    Other,
}

impl Error {
    /// Maps a failed status to an error. `STATUS_CANCELLED` becomes [`Error::Cancelled`]
    /// and `STATUS_INSUFFICIENT_RESOURCES`/`STATUS_NO_MEMORY` become [`Error::NoMemory`].
    ///
    /// Any IRQL.
    pub fn from_status(status: NTSTATUS) -> Self {
        match status {
            wsk_sys::STATUS_CANCELLED => Error::Cancelled,
            wsk_sys::STATUS_INSUFFICIENT_RESOURCES | wsk_sys::STATUS_NO_MEMORY => Error::NoMemory,
            wsk_sys::STATUS_DEVICE_NOT_READY => Error::NotReady,
            other => Error::Status(other),
        }
    }

    /// The NTSTATUS a driver would return for this error.
    ///
    /// Any IRQL.
    pub fn to_status(self) -> NTSTATUS {
        match self {
            Error::Status(s) => s,
            Error::Cancelled => wsk_sys::STATUS_CANCELLED,
            Error::Closed => wsk_sys::STATUS_FILE_CLOSED,
            Error::TimedOut => wsk_sys::STATUS_IO_TIMEOUT,
            Error::NoMemory => wsk_sys::STATUS_INSUFFICIENT_RESOURCES,
            Error::WrongIrql { .. } => wsk_sys::STATUS_INVALID_DEVICE_STATE,
            Error::InvalidInput(_) => wsk_sys::STATUS_INVALID_PARAMETER,
            Error::NotReady | Error::Spawn(SpawnError::ShuttingDown) => wsk_sys::STATUS_DEVICE_NOT_READY,
            Error::Spawn(SpawnError::NoMemory)
            | Error::Start(StartError::NoMemory)
            | Error::BlockOn(BlockOnError::NoMemory) => wsk_sys::STATUS_INSUFFICIENT_RESOURCES,
            Error::Start(StartError::NotPassive) | Error::BlockOn(BlockOnError::NotPassive) => {
                wsk_sys::STATUS_INVALID_DEVICE_STATE
            }
            Error::Join(e) if e.is_cancelled() => wsk_sys::STATUS_CANCELLED,
            Error::Join(_) => wsk_sys::STATUS_INVALID_DEVICE_STATE,
        }
    }

    /// The class of this failure.
    ///
    /// Any IRQL.
    pub fn kind(&self) -> ErrorKind {
        match *self {
            Error::Status(status) => status_kind(status),
            Error::Cancelled => ErrorKind::Cancelled,
            Error::Closed => ErrorKind::Closed,
            Error::TimedOut => ErrorKind::TimedOut,
            Error::NoMemory
            | Error::Spawn(SpawnError::NoMemory)
            | Error::Start(StartError::NoMemory)
            | Error::BlockOn(BlockOnError::NoMemory) => ErrorKind::ResourceShortage,
            Error::WrongIrql { .. }
            | Error::Start(StartError::NotPassive)
            | Error::BlockOn(BlockOnError::NotPassive) => ErrorKind::WrongIrql,
            Error::InvalidInput(_) => ErrorKind::InvalidInput,
            Error::NotReady | Error::Spawn(SpawnError::ShuttingDown) => ErrorKind::NotReady,
            Error::Join(e) if e.is_cancelled() => ErrorKind::Cancelled,
            Error::Join(_) => ErrorKind::Other,
        }
    }

    /// Whether the operation was cancelled ([`ErrorKind::Cancelled`]), typically because the
    /// socket was closed while it was pending.
    ///
    /// Any IRQL.
    pub fn is_cancelled(&self) -> bool {
        self.kind() == ErrorKind::Cancelled
    }

    /// Whether the request timed out ([`ErrorKind::TimedOut`]).
    ///
    /// Any IRQL.
    pub fn is_timeout(&self) -> bool {
        self.kind() == ErrorKind::TimedOut
    }

    /// Whether the peer reset the connection ([`ErrorKind::ConnectionReset`]).
    ///
    /// Any IRQL.
    pub fn is_connection_reset(&self) -> bool {
        self.kind() == ErrorKind::ConnectionReset
    }

    /// Whether the connection is gone: reset by the peer, aborted on this side, or no longer
    /// connected ([`ErrorKind::ConnectionReset`], [`ErrorKind::ConnectionAborted`],
    /// [`ErrorKind::NotConnected`]).
    ///
    /// Any IRQL.
    pub fn is_disconnected(&self) -> bool {
        matches!(self.kind(), ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::NotConnected)
    }

    /// Whether the socket's close has begun on this side ([`ErrorKind::Closed`]).
    ///
    /// Any IRQL.
    pub fn is_closed(&self) -> bool {
        self.kind() == ErrorKind::Closed
    }

    /// Whether memory ran short ([`ErrorKind::ResourceShortage`]).
    ///
    /// Any IRQL.
    pub fn is_resource_shortage(&self) -> bool {
        self.kind() == ErrorKind::ResourceShortage
    }
}

/// The class of a failed status.
fn status_kind(status: NTSTATUS) -> ErrorKind {
    match status {
        wsk_sys::STATUS_CANCELLED => ErrorKind::Cancelled,
        wsk_sys::STATUS_INSUFFICIENT_RESOURCES | wsk_sys::STATUS_NO_MEMORY => ErrorKind::ResourceShortage,
        wsk_sys::STATUS_DEVICE_NOT_READY => ErrorKind::NotReady,
        wsk_sys::STATUS_CONNECTION_REFUSED => ErrorKind::ConnectionRefused,
        wsk_sys::STATUS_CONNECTION_RESET => ErrorKind::ConnectionReset,
        wsk_sys::STATUS_CONNECTION_ABORTED | wsk_sys::STATUS_LOCAL_DISCONNECT => ErrorKind::ConnectionAborted,
        wsk_sys::STATUS_CONNECTION_DISCONNECTED | wsk_sys::STATUS_INVALID_CONNECTION => ErrorKind::NotConnected,
        wsk_sys::STATUS_SHARING_VIOLATION | wsk_sys::STATUS_ADDRESS_ALREADY_EXISTS => ErrorKind::AddrInUse,
        wsk_sys::STATUS_IO_TIMEOUT => ErrorKind::TimedOut,
        wsk_sys::STATUS_NOT_IMPLEMENTED | wsk_sys::STATUS_NOT_SUPPORTED => ErrorKind::Unsupported,
        wsk_sys::STATUS_ACCESS_DENIED => ErrorKind::PermissionDenied,
        _ => ErrorKind::Other,
    }
}

impl From<SpawnError> for Error {
    fn from(e: SpawnError) -> Self {
        Error::Spawn(e)
    }
}

impl From<StartError> for Error {
    fn from(e: StartError) -> Self {
        Error::Start(e)
    }
}

impl From<BlockOnError> for Error {
    fn from(e: BlockOnError) -> Self {
        Error::BlockOn(e)
    }
}

impl From<JoinError> for Error {
    fn from(e: JoinError) -> Self {
        Error::Join(e)
    }
}

/// Converts a status to `Ok(())` for success codes (`NT_SUCCESS`) and an [`Error`] otherwise.
///
/// Any IRQL.
pub fn check(status: NTSTATUS) -> Result<()> {
    if wsk_sys::NT_SUCCESS(status) { Ok(()) } else { Err(Error::from_status(status)) }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::Status(s) => match status_name(s) {
                Some(name) => write!(f, "{name} (0x{:08X})", s as u32),
                None => write!(f, "NTSTATUS 0x{:08X}", s as u32),
            },
            Error::Cancelled => f.write_str("operation cancelled (STATUS_CANCELLED)"),
            Error::Closed => f.write_str("socket is closing or closed"),
            Error::TimedOut => f.write_str("deadline passed; the operation was cancelled"),
            Error::NoMemory => f.write_str("out of memory (STATUS_INSUFFICIENT_RESOURCES)"),
            Error::WrongIrql { max, current } => {
                write!(f, "called at IRQL {current}, above the allowed maximum {max}")
            }
            Error::InvalidInput(what) => write!(f, "invalid input: {what}"),
            Error::NotReady => f.write_str("WSK provider not ready (STATUS_DEVICE_NOT_READY)"),
            Error::Spawn(e) => write!(f, "task not spawned: {e}"),
            Error::Start(e) => write!(f, "executor not created: {e}"),
            Error::BlockOn(e) => write!(f, "block_on did not run: {e}"),
            Error::Join(e) => write!(f, "task ended without output: {e}"),
        }
    }
}

impl core::error::Error for Error {}

/// Fails with [`Error::WrongIrql`] when the caller runs above `max`.
///
/// Any IRQL.
pub fn require_irql(max: u8) -> Result<()> {
    let current = wsk_sys::KeGetCurrentIrql();
    if current > max { Err(Error::WrongIrql { max, current }) } else { Ok(()) }
}

#[cfg(test)]
mod tests {
    use std::string::ToString;

    use wsk_executor::{BlockOnError, SpawnError, StartError};

    use super::{Error, ErrorKind};

    #[test]
    fn executor_errors_convert_keeping_their_cause() {
        let cases: [(Error, &str, i32); 6] = [
            (
                SpawnError::NoMemory.into(),
                "task not spawned: no memory for the task",
                wsk_sys::STATUS_INSUFFICIENT_RESOURCES,
            ),
            (
                SpawnError::ShuttingDown.into(),
                "task not spawned: the executor is shutting down",
                wsk_sys::STATUS_DEVICE_NOT_READY,
            ),
            (
                StartError::NotPassive.into(),
                "executor not created: executor created above PASSIVE_LEVEL",
                wsk_sys::STATUS_INVALID_DEVICE_STATE,
            ),
            (
                StartError::NoMemory.into(),
                "executor not created: no memory for the executor or its work item",
                wsk_sys::STATUS_INSUFFICIENT_RESOURCES,
            ),
            (
                BlockOnError::NotPassive.into(),
                "block_on did not run: block_on called above PASSIVE_LEVEL",
                wsk_sys::STATUS_INVALID_DEVICE_STATE,
            ),
            (
                BlockOnError::NoMemory.into(),
                "block_on did not run: no memory for block_on's event",
                wsk_sys::STATUS_INSUFFICIENT_RESOURCES,
            ),
        ];
        for (error, text, status) in cases {
            assert_eq!(error.to_string(), text);
            assert_eq!(error.to_status(), status, "{error}");
        }
        assert_eq!(Error::from(SpawnError::NoMemory), Error::Spawn(SpawnError::NoMemory));
        assert_eq!(Error::from(StartError::NotPassive), Error::Start(StartError::NotPassive));
        assert_eq!(Error::from(BlockOnError::NoMemory), Error::BlockOn(BlockOnError::NoMemory));
    }

    #[test]
    fn statuses_are_classified() {
        let cases = [
            (wsk_sys::STATUS_CANCELLED, ErrorKind::Cancelled),
            (wsk_sys::STATUS_INSUFFICIENT_RESOURCES, ErrorKind::ResourceShortage),
            (wsk_sys::STATUS_NO_MEMORY, ErrorKind::ResourceShortage),
            (wsk_sys::STATUS_DEVICE_NOT_READY, ErrorKind::NotReady),
            (wsk_sys::STATUS_CONNECTION_REFUSED, ErrorKind::ConnectionRefused),
            (wsk_sys::STATUS_CONNECTION_RESET, ErrorKind::ConnectionReset),
            (wsk_sys::STATUS_CONNECTION_ABORTED, ErrorKind::ConnectionAborted),
            (wsk_sys::STATUS_LOCAL_DISCONNECT, ErrorKind::ConnectionAborted),
            (wsk_sys::STATUS_CONNECTION_DISCONNECTED, ErrorKind::NotConnected),
            (wsk_sys::STATUS_INVALID_CONNECTION, ErrorKind::NotConnected),
            (wsk_sys::STATUS_SHARING_VIOLATION, ErrorKind::AddrInUse),
            (wsk_sys::STATUS_ADDRESS_ALREADY_EXISTS, ErrorKind::AddrInUse),
            (wsk_sys::STATUS_IO_TIMEOUT, ErrorKind::TimedOut),
            (wsk_sys::STATUS_NOT_IMPLEMENTED, ErrorKind::Unsupported),
            (wsk_sys::STATUS_NOT_SUPPORTED, ErrorKind::Unsupported),
            (wsk_sys::STATUS_ACCESS_DENIED, ErrorKind::PermissionDenied),
            (wsk_sys::STATUS_UNSUCCESSFUL, ErrorKind::Other),
        ];
        for (status, kind) in cases {
            // Both through `from_status` and as a raw status (which `from_status` may not give).
            assert_eq!(Error::from_status(status).kind(), kind, "0x{:08X}", status as u32);
            assert_eq!(Error::Status(status).kind(), kind, "0x{:08X}", status as u32);
        }
    }

    #[test]
    fn library_conditions_are_classified() {
        assert_eq!(Error::Cancelled.kind(), ErrorKind::Cancelled);
        assert_eq!(Error::Closed.kind(), ErrorKind::Closed);
        assert_eq!(Error::NoMemory.kind(), ErrorKind::ResourceShortage);
        assert_eq!(Error::WrongIrql { max: 0, current: 2 }.kind(), ErrorKind::WrongIrql);
        assert_eq!(Error::InvalidInput("x").kind(), ErrorKind::InvalidInput);
        assert_eq!(Error::NotReady.kind(), ErrorKind::NotReady);
        assert_eq!(Error::from(SpawnError::NoMemory).kind(), ErrorKind::ResourceShortage);
        assert_eq!(Error::from(SpawnError::ShuttingDown).kind(), ErrorKind::NotReady);
        assert_eq!(Error::from(StartError::NoMemory).kind(), ErrorKind::ResourceShortage);
        assert_eq!(Error::from(StartError::NotPassive).kind(), ErrorKind::WrongIrql);
        assert_eq!(Error::from(BlockOnError::NoMemory).kind(), ErrorKind::ResourceShortage);
        assert_eq!(Error::from(BlockOnError::NotPassive).kind(), ErrorKind::WrongIrql);
    }

    #[test]
    fn a_passed_deadline_is_a_timeout() {
        assert_eq!(Error::TimedOut.kind(), ErrorKind::TimedOut);
        assert!(Error::TimedOut.is_timeout());
        assert!(!Error::TimedOut.is_cancelled());
        assert_eq!(Error::TimedOut.to_status(), wsk_sys::STATUS_IO_TIMEOUT);
        assert_eq!(Error::TimedOut.to_string(), "deadline passed; the operation was cancelled");
    }

    #[test]
    fn helpers_answer_for_their_kinds_only() {
        let reset = Error::from_status(wsk_sys::STATUS_CONNECTION_RESET);
        let aborted = Error::from_status(wsk_sys::STATUS_CONNECTION_ABORTED);
        let not_connected = Error::from_status(wsk_sys::STATUS_CONNECTION_DISCONNECTED);
        let timeout = Error::from_status(wsk_sys::STATUS_IO_TIMEOUT);
        let refused = Error::from_status(wsk_sys::STATUS_CONNECTION_REFUSED);
        let all = [Error::Cancelled, Error::Closed, Error::NoMemory, reset, aborted, not_connected, timeout, refused];
        let count = |f: fn(&Error) -> bool| all.iter().filter(|e| f(e)).count();
        assert!(Error::Cancelled.is_cancelled());
        assert_eq!(count(Error::is_cancelled), 1);
        assert!(Error::Closed.is_closed());
        assert_eq!(count(Error::is_closed), 1);
        assert!(Error::NoMemory.is_resource_shortage());
        assert!(Error::from(SpawnError::NoMemory).is_resource_shortage());
        assert_eq!(count(Error::is_resource_shortage), 1);
        assert!(timeout.is_timeout());
        assert_eq!(count(Error::is_timeout), 1);
        assert!(reset.is_connection_reset());
        assert_eq!(count(Error::is_connection_reset), 1);
        assert!(reset.is_disconnected() && aborted.is_disconnected() && not_connected.is_disconnected());
        assert_eq!(count(Error::is_disconnected), 3, "refused, closed and the rest are not disconnections");
    }
}
