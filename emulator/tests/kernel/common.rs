//! Helpers shared by the tests.

use std::time::{Duration, Instant};

use wsk_emulator::{Kernel, LoadedDriver, provider};
use wsk_sys::{FALSE, IO_COMPLETION_ROUTINE, IRP, IoAllocateIrp, IoSetCompletionRoutine, PVOID};

/// A pool tag.
pub const TAG: u32 = u32::from_le_bytes(*b"Test");

/// A bound on waits that only exists to turn a hang into a failure.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A driver session whose "driver code" is the test body.
pub fn attach() -> LoadedDriver {
    Kernel::builder().attach("test")
}

/// Polls `condition` until it holds or [`PATIENCE`] runs out.
pub fn eventually(mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    condition()
}

/// A `UNICODE_STRING` over a leaked UTF-16 copy of `text`.
pub fn unicode(text: &str) -> wsk_sys::UNICODE_STRING {
    let units: &'static mut [u16] = text.encode_utf16().collect::<Vec<u16>>().leak();
    wsk_sys::UNICODE_STRING {
        Length: (units.len() * 2) as u16,
        MaximumLength: (units.len() * 2) as u16,
        Buffer: units.as_mut_ptr(),
    }
}

/// A fresh one-location IRP with `routine` (given `context`) set for success, error and
/// cancel, as a driver prepares one before a call.
///
/// # Safety
///
/// `context` is what `routine` expects and lives until the IRP completed.
pub unsafe fn armed_irp(routine: IO_COMPLETION_ROUTINE, context: PVOID) -> *mut IRP {
    unsafe {
        let irp = IoAllocateIrp(1, FALSE);
        assert!(!irp.is_null());
        IoSetCompletionRoutine(irp, Some(routine), context, true, true, true);
        irp
    }
}

/// [`armed_irp`], handed to the provider (`provider::accept`) as a WSK routine takes it: the
/// test plays the provider and completes it with `provider::complete`.
///
/// # Safety
///
/// As [`armed_irp`].
pub unsafe fn submitted_irp(routine: IO_COMPLETION_ROUTINE, context: PVOID) -> *mut IRP {
    unsafe {
        let irp = armed_irp(routine, context);
        provider::accept(irp).unwrap();
        irp
    }
}
