//! Host socket errors as the NTSTATUS codes WSK reports for them.

use std::io;

use wsk_sys::{
    NTSTATUS, STATUS_ACCESS_DENIED, STATUS_ADDRESS_ALREADY_EXISTS, STATUS_CONNECTION_ABORTED, STATUS_CONNECTION_ACTIVE,
    STATUS_CONNECTION_REFUSED, STATUS_CONNECTION_RESET, STATUS_HOST_UNREACHABLE, STATUS_INSUFFICIENT_RESOURCES,
    STATUS_INVALID_ADDRESS, STATUS_INVALID_ADDRESS_COMPONENT, STATUS_INVALID_BUFFER_SIZE, STATUS_INVALID_CONNECTION,
    STATUS_INVALID_DEVICE_STATE, STATUS_INVALID_PARAMETER, STATUS_IO_TIMEOUT, STATUS_NETWORK_UNREACHABLE,
    STATUS_NOT_SUPPORTED, STATUS_UNSUCCESSFUL,
};

/// The NTSTATUS for a host socket error (`ECONNREFUSED` -> `STATUS_CONNECTION_REFUSED`, ...).
/// Errors without a WSK counterpart are `STATUS_UNSUCCESSFUL`.
pub(crate) fn from_io(error: &io::Error) -> NTSTATUS {
    let Some(code) = error.raw_os_error() else {
        return match error.kind() {
            io::ErrorKind::InvalidInput => STATUS_INVALID_PARAMETER,
            io::ErrorKind::TimedOut => STATUS_IO_TIMEOUT,
            _ => STATUS_UNSUCCESSFUL,
        };
    };
    match code {
        libc::ECONNREFUSED => STATUS_CONNECTION_REFUSED,
        libc::EADDRINUSE => STATUS_ADDRESS_ALREADY_EXISTS,
        libc::ECONNRESET | libc::EPIPE => STATUS_CONNECTION_RESET,
        libc::ECONNABORTED => STATUS_CONNECTION_ABORTED,
        libc::EADDRNOTAVAIL => STATUS_INVALID_ADDRESS_COMPONENT,
        libc::EAFNOSUPPORT => STATUS_INVALID_ADDRESS,
        libc::ENETUNREACH | libc::ENETDOWN => STATUS_NETWORK_UNREACHABLE,
        libc::EHOSTUNREACH | libc::EHOSTDOWN => STATUS_HOST_UNREACHABLE,
        libc::ETIMEDOUT => STATUS_IO_TIMEOUT,
        libc::ENOTCONN => STATUS_INVALID_CONNECTION,
        libc::EISCONN => STATUS_CONNECTION_ACTIVE,
        libc::EALREADY => STATUS_INVALID_DEVICE_STATE,
        libc::EACCES | libc::EPERM => STATUS_ACCESS_DENIED,
        libc::ENOBUFS | libc::ENOMEM | libc::EMFILE | libc::ENFILE => STATUS_INSUFFICIENT_RESOURCES,
        libc::EMSGSIZE => STATUS_INVALID_BUFFER_SIZE,
        libc::EINVAL => STATUS_INVALID_PARAMETER,
        libc::ENOPROTOOPT | libc::EOPNOTSUPP | libc::EPROTONOSUPPORT => STATUS_NOT_SUPPORTED,
        _ => STATUS_UNSUCCESSFUL,
    }
}

/// Whether the error means "try again when the socket is ready".
pub(crate) fn would_block(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::WouldBlock
}

/// Runs a host call again while it is interrupted by a signal. It is the provider's host
/// work ([`crate::irql::host_work`]): a sleep inside the host's socket call is not the
/// driver's, which may call the routine at DISPATCH_LEVEL.
pub(crate) fn retry<T>(mut call: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    crate::irql::host_work(|| {
        loop {
            match call() {
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                other => return other,
            }
        }
    })
}

/// Whether a nonblocking `connect` is under way.
pub(crate) fn in_progress(error: &io::Error) -> bool {
    error.raw_os_error() == Some(libc::EINPROGRESS) || error.kind() == io::ErrorKind::WouldBlock
}
