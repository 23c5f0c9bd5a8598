//! Debug output: the sink behind `DbgPrint` / `DbgPrintEx` (defined in C, `csrc/dbgprint.c`,
//! because they are C-variadic) and the log tests read.
//!
//! Every message is kept (up to [`MAX_LINES`], oldest dropped first) whatever its component
//! and level; the Windows default filter (which shows only `DPFLTR_ERROR_LEVEL` messages of
//! `DbgPrintEx`) is not applied. Messages are echoed to stderr when the driver was loaded with
//! `echo_debug_output(true)` or the environment variable `WSK_EMU_DBGPRINT` is set.

use std::collections::VecDeque;
use std::ffi::c_char;
use std::io::Write;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use wsk_sys::PASSIVE_LEVEL;

use crate::irql::{current_irql, irql_name};
use crate::kernel;
use crate::sync::{lock, wait_until};
use crate::verifier::{Rule, bugcheck};

/// Messages kept at most.
pub const MAX_LINES: usize = 100_000;

/// One `DbgPrint` / `DbgPrintEx` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebugMessage {
    /// `ComponentId` and `Level` of `DbgPrintEx`; `None` for `DbgPrint`.
    pub filter: Option<(u32, u32)>,
    /// The formatted text, without a trailing newline.
    pub text: String,
}

static LOG: Mutex<VecDeque<DebugMessage>> = Mutex::new(VecDeque::new());
static LOGGED: Condvar = Condvar::new();

/// Receives each formatted message from the C shim.
///
/// # Safety
/// `message` must point to `length` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wsk_emu_dbgprint_sink(
    component: u32,
    level: u32,
    is_ex: i32,
    unicode: i32,
    message: *const c_char,
    length: usize,
) {
    let bytes = if message.is_null() || length == 0 {
        &[][..]
    } else {
        // SAFETY: the shim passes its own buffer and the number of bytes it formatted.
        unsafe { std::slice::from_raw_parts(message.cast::<u8>(), length) }
    };
    let text = String::from_utf8_lossy(bytes).into_owned();
    let irql = current_irql();
    if unicode != 0 && irql > PASSIVE_LEVEL && kernel::verifier() {
        bugcheck(
            Rule::DbgPrintUnicodeAbovePassive,
            format!("DbgPrint with a Unicode format at {} ({irql}): {}", irql_name(irql), text.trim_end()),
        );
    }
    if kernel::echo_debug_output() || std::env::var_os("WSK_EMU_DBGPRINT").is_some() {
        let _ = std::io::stderr().write_all(bytes);
    }
    let entry = DebugMessage {
        filter: (is_ex != 0).then_some((component, level)),
        text: text.strip_suffix('\n').unwrap_or(&text).to_owned(),
    };
    let mut log = lock(&LOG);
    if log.len() == MAX_LINES {
        log.pop_front();
    }
    log.push_back(entry);
    LOGGED.notify_all();
}

/// Every debug message since the current driver was loaded.
pub fn debug_messages() -> Vec<DebugMessage> {
    lock(&LOG).iter().cloned().collect()
}

/// The text of every debug message since the current driver was loaded.
pub fn debug_log() -> Vec<String> {
    lock(&LOG).iter().map(|m| m.text.clone()).collect()
}

/// Waits until a debug message containing `needle` is logged (or was already), for at most
/// `timeout`. Returns the message.
pub fn wait_for_debug_message(needle: &str, timeout: Duration) -> Option<String> {
    let deadline = Instant::now() + timeout;
    let mut log = lock(&LOG);
    loop {
        if let Some(found) = log.iter().find(|m| m.text.contains(needle)) {
            return Some(found.text.clone());
        }
        if Instant::now() >= deadline {
            return None;
        }
        log = wait_until(&LOGGED, log, Some(deadline));
    }
}

pub(crate) fn clear() {
    lock(&LOG).clear();
}
