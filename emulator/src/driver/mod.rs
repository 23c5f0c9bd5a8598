//! Driver lifecycle: load a driver (call its DriverEntry with a `DRIVER_OBJECT` and its
//! registry path), run it, unload it (call DriverUnload, wait for its work items and DPCs,
//! check what it left behind) and produce a [`VerifierReport`].
//!
//! One driver is loaded at a time per process: [`KernelBuilder::load`] waits until the
//! previous [`LoadedDriver`] is unloaded (so tests that load drivers serialize).

mod builder;
mod objects;

use std::fmt;
use std::thread;
use std::time::{Duration, Instant};

use wsk_sys::{DRIVER_OBJECT, KIRQL, PASSIVE_LEVEL, UNICODE_STRING};

pub use builder::{Kernel, KernelBuilder, LoadError};
use objects::{DriverObjects, release_slot};

use crate::counters::{self, Counters};
use crate::fault::{self, FaultPlan, FaultStats};
use crate::irp::state::{self as irp_state, IrpState};
use crate::irql::{self, with_irql};
use crate::kernel;
use crate::registry::{self, RegistryValue};
use crate::verifier::{self, Bugcheck, Leak, LeakKind, Rule, VerifierReport, bugcheck, tag_text};
use crate::{debug, dpc, pool, timer, workitem, wsk};

/// How long unload waits for the work items and DPCs of a driver that crashed.
const CRASHED_UNLOAD_WAIT: Duration = Duration::from_secs(2);

/// A loaded driver. Unload it with [`LoadedDriver::unload`] to get the verifier's report;
/// dropping it unloads too and prints the report to stderr unless it is clean.
pub struct LoadedDriver {
    objects: *mut DriverObjects,
    session: u64,
    name: String,
    unload_timeout: Duration,
    finished: bool,
}

// SAFETY: the driver object block is only reached through raw pointers handed to driver code
// (which is multi-threaded by nature) and freed once, by whichever thread unloads.
unsafe impl Send for LoadedDriver {}
// SAFETY: `&LoadedDriver` only exposes raw pointers and session queries backed by locks.
unsafe impl Sync for LoadedDriver {}

impl fmt::Debug for LoadedDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedDriver").field("name", &self.name).field("session", &self.session).finish()
    }
}

impl LoadedDriver {
    /// The driver's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The driver's `DRIVER_OBJECT`.
    pub fn driver_object(&self) -> *mut DRIVER_OBJECT {
        // SAFETY: the block lives until the driver is unloaded, which consumes `self`.
        unsafe { &raw mut (*self.objects).driver }
    }

    /// The registry path passed to DriverEntry.
    pub fn registry_path(&self) -> *mut UNICODE_STRING {
        // SAFETY: as above.
        unsafe { &raw mut (*self.objects).registry_path }
    }

    /// Runs `f` on the calling thread at `irql` "inside" the kernel (as driver code).
    pub fn run_at<R>(&self, irql: KIRQL, f: impl FnOnce() -> R) -> R {
        with_irql(irql, f)
    }

    /// Violations so far.
    pub fn bugchecks(&self) -> Vec<Bugcheck> {
        verifier::recorded_bugchecks()
    }

    /// Whether a violation stopped the driver.
    pub fn crashed(&self) -> bool {
        kernel::crashed()
    }

    /// The session's counters now.
    pub fn counters(&self) -> Counters {
        counters::counters()
    }

    /// Fault injection statistics so far.
    pub fn fault_stats(&self) -> FaultStats {
        fault::stats()
    }

    /// Replaces the fault injection plan (allocation counting goes on).
    pub fn set_fault_plan(&self, plan: FaultPlan) {
        fault::set_plan(plan);
    }

    /// The current fault injection plan.
    pub fn fault_plan(&self) -> FaultPlan {
        fault::plan()
    }

    /// Turns allocation site capture on or off for the rest of the session.
    pub fn set_capture_sites(&self, on: bool) {
        kernel::set_capture_sites(on);
    }

    /// Sets a value of the `Parameters` key while the driver runs.
    pub fn set_param(&self, name: &str, value: RegistryValue) {
        registry::set_parameter(name, value);
    }

    /// Debug messages so far.
    pub fn debug_log(&self) -> Vec<String> {
        debug::debug_log()
    }

    /// Waits (at most `timeout`) for a debug message containing `needle`.
    pub fn wait_for_debug_message(&self, needle: &str, timeout: Duration) -> Option<String> {
        debug::wait_for_debug_message(needle, timeout)
    }

    /// Waits (at most `timeout`) until none of the driver's work items or DPCs is queued or
    /// running. Returns whether that happened.
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if workitem::wait_idle(self.session, deadline)
                && dpc::wait_not_running(self.session, deadline)
                && dpc::idle(self.session)
                && workitem::outstanding(self.session) == 0
            {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(1));
        }
    }

    /// Unloads the driver: calls DriverUnload at PASSIVE_LEVEL (unless the driver crashed),
    /// waits for its queued and running work items and running DPCs, checks for leaks and
    /// returns the report.
    pub fn unload(mut self) -> VerifierReport {
        self.finished = true;
        self.shutdown(true)
    }

    fn shutdown(&mut self, call_unload: bool) -> VerifierReport {
        let session = self.session;
        let crashed_before_unload = kernel::crashed();
        let mut unload_called = false;
        if call_unload && !crashed_before_unload {
            // SAFETY: the driver object block is live; DriverUnload was stored by the driver.
            let unload = unsafe { (*self.objects).driver.DriverUnload };
            if let Some(unload) = unload {
                let driver = self.driver_object();
                // SAFETY: DriverUnload runs once, at PASSIVE_LEVEL, as its contract says.
                with_irql(PASSIVE_LEVEL, || unsafe { unload(driver) });
                unload_called = true;
                crate::irp::check_cancel_lock_released("DriverUnload");
                irql::check_restored("DriverUnload", PASSIVE_LEVEL);
            }
        }
        // A crashed driver's work may never finish (a thread stopped in KeBugCheckEx): wait
        // briefly only.
        let wait = if kernel::crashed() { self.unload_timeout.min(CRASHED_UNLOAD_WAIT) } else { self.unload_timeout };
        let deadline = Instant::now() + wait;
        let work_idle = workitem::wait_idle(session, deadline);
        dpc::wait_not_running(session, deadline);
        let verifier_on = kernel::verifier();
        let mut leaks = Vec::new();
        if verifier_on && !crashed_before_unload {
            if !work_idle {
                bugcheck(
                    Rule::WorkItemPendingAtUnload,
                    format!(
                        "{} work item(s) still queued or running {} s after DriverUnload",
                        workitem::outstanding(session),
                        self.unload_timeout.as_secs()
                    ),
                );
            }
            leaks = collect_leaks(session);
        }
        timer::teardown(session);
        dpc::teardown(session);
        workitem::teardown(session);
        registry::teardown(session);
        wsk::teardown(session);
        let report = VerifierReport {
            driver: self.name.clone(),
            bugchecks: verifier::recorded_bugchecks(),
            leaks,
            counters: counters::counters(),
            faults: fault::stats(),
            crashed_before_unload,
            unload_called,
            verifier: verifier_on,
        };
        kernel::end_session();
        if work_idle {
            // SAFETY: the block came from `Box::into_raw` and nothing runs driver code that
            // could still use it (work items drained); freed exactly once.
            drop(unsafe { Box::from_raw(self.objects) });
        }
        self.objects = std::ptr::null_mut();
        release_slot();
        report
    }
}

/// Checks what the driver left behind, recording one violation per kind of leak.
fn collect_leaks(session: u64) -> Vec<Leak> {
    let timers = timer::pending(session);
    let dpcs = dpc::pending(session);
    pool::check_quarantine(session);
    let mut blocks = pool::leaks(session);
    for leak in blocks.iter_mut().filter(|l| l.kind == LeakKind::Irp) {
        if irp_state::state_of(leak.address) == Some(IrpState::Provider) {
            leak.detail.push_str(", still owned by the provider");
        } else if irp_state::state_of(leak.address) == Some(IrpState::CompletedToIoManager) {
            leak.detail.push_str(", completed to the I/O manager");
        }
    }
    let handles = registry::leaks(session);
    let registrations = wsk::leaks(session);
    let mut leaks = Vec::new();
    leaks.extend(timers);
    leaks.extend(dpcs);
    leaks.extend(blocks);
    leaks.extend(handles);
    leaks.extend(registrations);
    let kinds = [
        (LeakKind::Pool, Rule::PoolLeak, "pool allocation(s)"),
        (LeakKind::Irp, Rule::IrpLeak, "IRP(s)"),
        (LeakKind::Mdl, Rule::MdlLeak, "MDL(s)"),
        (LeakKind::WorkItem, Rule::WorkItemLeak, "work item(s)"),
        (LeakKind::Timer, Rule::TimerPendingAtUnload, "timer(s) still set"),
        (LeakKind::Dpc, Rule::DpcPendingAtUnload, "DPC(s) still queued or running"),
        (LeakKind::Handle, Rule::HandleLeak, "handle(s) still open"),
        (LeakKind::WskRegistration, Rule::WskRegistrationLeak, "WSK registration(s) not deregistered"),
    ];
    for (kind, rule, what) in kinds {
        let of_kind: Vec<&Leak> = leaks.iter().filter(|l| l.kind == kind).collect();
        if of_kind.is_empty() {
            continue;
        }
        let bytes: usize = of_kind.iter().map(|l| l.size).sum();
        let mut tags: Vec<String> = of_kind.iter().filter(|l| l.tag != 0).map(|l| tag_text(l.tag)).collect();
        tags.sort();
        tags.dedup();
        let mut message = format!("the driver unloaded with {} {what}", of_kind.len());
        if bytes != 0 {
            message.push_str(&format!(", {bytes} bytes"));
        }
        if !tags.is_empty() {
            message.push_str(&format!(" (tags {})", tags.join(", ")));
        }
        bugcheck(rule, message);
    }
    leaks
}

impl Drop for LoadedDriver {
    fn drop(&mut self) {
        if !self.finished {
            self.finished = true;
            let report = self.shutdown(true);
            if !report.is_clean() {
                eprintln!("wsk-emulator: driver `{}` dropped without unload:\n{report}", self.name);
            }
        }
    }
}
