//! The library's error type: an NTSTATUS, or one of the library's own conditions.

use core::fmt;

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
    /// because the socket was closed while it was pending.
    Cancelled,
    /// The socket's close has begun; no new call is accepted (WSK close contract rule 4).
    Closed,
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
            Error::NoMemory => wsk_sys::STATUS_INSUFFICIENT_RESOURCES,
            Error::WrongIrql { .. } => wsk_sys::STATUS_INVALID_DEVICE_STATE,
            Error::InvalidInput(_) => wsk_sys::STATUS_INVALID_PARAMETER,
            Error::NotReady => wsk_sys::STATUS_DEVICE_NOT_READY,
        }
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
            Error::NoMemory => f.write_str("out of memory (STATUS_INSUFFICIENT_RESOURCES)"),
            Error::WrongIrql { max, current } => {
                write!(f, "called at IRQL {current}, above the allowed maximum {max}")
            }
            Error::InvalidInput(what) => write!(f, "invalid input: {what}"),
            Error::NotReady => f.write_str("WSK provider not ready (STATUS_DEVICE_NOT_READY)"),
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
