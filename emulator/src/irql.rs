//! Per-thread IRQL.
//!
//! Every thread that runs emulated kernel code has an IRQL, kept in thread-local storage:
//! PASSIVE_LEVEL by default (DriverEntry, DriverUnload, work items, test threads),
//! DISPATCH_LEVEL in DPC threads and while completion routines run. The IRQL is *advisory*:
//! nothing stops code at DISPATCH_LEVEL from blocking on a host lock; the verifier checks each
//! routine's documented maximum instead.

use std::cell::Cell;

use wsk_sys::{APC_LEVEL, DISPATCH_LEVEL, HIGH_LEVEL, KIRQL, PASSIVE_LEVEL};

use crate::verifier::{Rule, bugcheck};

thread_local! {
    static IRQL: Cell<KIRQL> = const { Cell::new(PASSIVE_LEVEL) };
}

/// The current thread's IRQL.
#[inline]
pub fn current_irql() -> KIRQL {
    IRQL.with(Cell::get)
}

/// Sets the current thread's IRQL and returns the previous one.
#[inline]
pub(crate) fn set_irql(irql: KIRQL) -> KIRQL {
    IRQL.with(|cell| cell.replace(irql))
}

/// Restores the IRQL it saved when dropped.
#[must_use = "the IRQL is restored when the guard is dropped"]
pub(crate) struct IrqlGuard {
    previous: KIRQL,
}

impl Drop for IrqlGuard {
    fn drop(&mut self) {
        set_irql(self.previous);
    }
}

/// Sets the current thread's IRQL to `irql` until the guard is dropped.
pub(crate) fn enter_irql(irql: KIRQL) -> IrqlGuard {
    IrqlGuard { previous: set_irql(irql) }
}

/// Runs `f` on the current thread at `irql`, then restores the previous IRQL.
///
/// Use it in tests to call driver code "from" a DPC or completion routine context, e.g.
/// `with_irql(DISPATCH_LEVEL, || ...)`.
pub fn with_irql<R>(irql: KIRQL, f: impl FnOnce() -> R) -> R {
    let _guard = enter_irql(irql);
    f()
}

/// The symbolic name of an IRQL.
pub fn irql_name(irql: KIRQL) -> &'static str {
    match irql {
        PASSIVE_LEVEL => "PASSIVE_LEVEL",
        APC_LEVEL => "APC_LEVEL",
        DISPATCH_LEVEL => "DISPATCH_LEVEL",
        HIGH_LEVEL => "HIGH_LEVEL",
        _ => "DIRQL",
    }
}

/// Checks that `routine` is called at or below its documented maximum IRQL; records an
/// IRQL violation otherwise. Returns whether the call is allowed.
pub(crate) fn check_max(routine: &str, max: KIRQL) -> bool {
    let irql = current_irql();
    if irql <= max || !crate::kernel::verifier() {
        return true;
    }
    bugcheck(
        Rule::IrqlTooHigh,
        format!(
            "{routine} called at {} ({irql}); its documented maximum is {} ({max})",
            irql_name(irql),
            irql_name(max)
        ),
    );
    false
}

/// Checks that a callback returned at the IRQL it was called at; records a violation and
/// repairs the IRQL otherwise.
pub(crate) fn check_restored(what: &str, expected: KIRQL) {
    let irql = current_irql();
    if irql != expected {
        set_irql(expected);
        bugcheck(
            Rule::IrqlNotRestored,
            format!(
                "{what} returned at {} ({irql}) but was called at {} ({expected})",
                irql_name(irql),
                irql_name(expected)
            ),
        );
    }
}

/// Emulator export behind `wsk_sys::KeGetCurrentIrql` on the host. Any IRQL.
#[unsafe(no_mangle)]
pub extern "system" fn WskEmuGetCurrentIrql() -> KIRQL {
    current_irql()
}
