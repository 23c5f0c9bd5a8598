//! Debug output through `DbgPrintEx`, formatted in Rust without allocating.

use core::fmt::{self, Write};

/// `DPFLTR_IHVDRIVER_ID`: the component id for third-party drivers.
pub const DPFLTR_IHVDRIVER_ID: u32 = 77;
/// Shown by default on Windows.
pub const DPFLTR_ERROR_LEVEL: u32 = 0;
/// Shown when the debug filter for the component allows it.
pub const DPFLTR_INFO_LEVEL: u32 = 3;

/// A fixed buffer for one line; longer messages are cut (and end with `...`).
struct LineBuffer {
    bytes: [u8; 256],
    len: usize,
    truncated: bool,
}

impl Write for LineBuffer {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &b in s.as_bytes() {
            // Keep one byte for the terminating NUL; '%' is passed through "%s" so it is safe.
            if self.len + 1 >= self.bytes.len() {
                self.truncated = true;
                return Ok(());
            }
            self.bytes[self.len] = if b == 0 { b'?' } else { b };
            self.len += 1;
        }
        Ok(())
    }
}

/// Prints one line at `level` (one of the `DPFLTR_*_LEVEL` values). Callable at any IRQL
/// <= DISPATCH_LEVEL (the format is ANSI only). Used by [`crate::log!`].
pub fn print(level: u32, args: fmt::Arguments<'_>) {
    let mut line = LineBuffer { bytes: [0; 256], len: 0, truncated: false };
    let _ = line.write_fmt(args);
    if line.truncated {
        let at = line.len.saturating_sub(3);
        line.bytes[at..at + 3].copy_from_slice(b"...");
    }
    let end = line.len.min(line.bytes.len() - 2);
    line.bytes[end] = b'\n';
    line.bytes[end + 1] = 0;
    // SAFETY: both strings are NUL-terminated; "%s" consumes exactly one `char *` argument.
    unsafe {
        wsk_sys::DbgPrintEx(DPFLTR_IHVDRIVER_ID, level, c"%s".as_ptr(), line.bytes.as_ptr());
    }
}

/// `log!(info, "...", args)` / `log!(error, "...")` / `log!(always, "...")`: formatted debug
/// output via `DbgPrintEx`. `error` and `always` print at `DPFLTR_ERROR_LEVEL`, which Windows
/// shows without a debug filter; `info` at `DPFLTR_INFO_LEVEL`.
#[macro_export]
macro_rules! log {
    (error, $($arg:tt)*) => {
        $crate::log::print($crate::log::DPFLTR_ERROR_LEVEL, format_args!($($arg)*))
    };
    (always, $($arg:tt)*) => {
        $crate::log::print($crate::log::DPFLTR_ERROR_LEVEL, format_args!($($arg)*))
    };
    (info, $($arg:tt)*) => {
        $crate::log::print($crate::log::DPFLTR_INFO_LEVEL, format_args!($($arg)*))
    };
}
