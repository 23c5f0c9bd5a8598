//! `KeBugCheckEx`: a driver stopping the system on purpose.
//!
//! The bugcheck is recorded (with the driver's code and first parameter) and the driver is
//! marked crashed. The routine never returns: a system thread (work item, DPC) that calls it
//! stops for good and a fresh thread replaces it; on a host thread (a test, the thread that
//! called DriverEntry) the process aborts after printing the bugcheck, as the machine would
//! stop.

use wsk_sys::{ULONG, ULONG_PTR};

use crate::threads::{self, Role};
use crate::verifier::{Rule, bugcheck_with_code};

/// `KeBugCheckEx`. Any IRQL. Never returns.
///
/// # Safety
/// None: the parameters are plain integers.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn KeBugCheckEx(
    BugCheckCode: ULONG,
    BugCheckParameter1: ULONG_PTR,
    BugCheckParameter2: ULONG_PTR,
    BugCheckParameter3: ULONG_PTR,
    BugCheckParameter4: ULONG_PTR,
) -> ! {
    bugcheck_with_code(
        Rule::DriverBugCheck,
        BugCheckCode,
        BugCheckParameter1 as u64,
        format!(
            "the driver called KeBugCheckEx(0x{BugCheckCode:08X}, 0x{BugCheckParameter1:X}, 0x{BugCheckParameter2:X}, \
             0x{BugCheckParameter3:X}, 0x{BugCheckParameter4:X})"
        ),
    );
    let role = threads::role();
    match role {
        Role::Worker | Role::Dpc | Role::Timer => {
            threads::start(role);
            loop {
                std::thread::park();
            }
        }
        Role::Host => {
            eprintln!("*** wsk-emulator: KeBugCheckEx on a host thread: stopping the process");
            std::process::abort();
        }
    }
}
