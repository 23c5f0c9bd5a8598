//! The verifier: rules, bugchecks, leaks and the report produced at unload.
//!
//! A violation is a *bugcheck*: it is recorded with a stop code in the spirit of Driver
//! Verifier's (0xC4 DRIVER_VERIFIER_DETECTED_VIOLATION, 0xC9 DRIVER_VERIFIER_IOMANAGER_VIOLATION,
//! 0xD1 DRIVER_IRQL_NOT_LESS_OR_EQUAL, ...) and a [`Rule`] naming the check, printed to stderr,
//! and the driver is marked crashed: no further work items or DPCs are dispatched into it.
//! The offending call does nothing harmful (a double free is refused) and returns, so that a
//! test can assert on the [`VerifierReport`].

use std::fmt;
use std::sync::{Arc, Mutex};

mod assertions;
mod rules;

pub use rules::{Rule, codes};

use crate::counters::Counters;
use crate::fault::FaultStats;
use crate::site::Site;
use crate::sync::lock;

/// One recorded violation.
#[derive(Clone)]
pub struct Bugcheck {
    /// The rule that fired.
    pub rule: Rule,
    /// Stop code (see [`codes`]).
    pub code: u32,
    /// First bugcheck parameter.
    pub parameter1: u64,
    /// What happened, naming the routine and the object.
    pub message: String,
    /// The emulated thread it happened on.
    pub thread: String,
    site: Option<Arc<Site>>,
}

impl Bugcheck {
    /// Where the violation happened (resolved on first call), if sites are captured.
    pub fn site(&self) -> Option<&Site> {
        self.site.as_deref()
    }
}

impl fmt::Display for Bugcheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "BUGCHECK 0x{:08X} {} (0x{:X}) [{}] on thread `{}`: {}",
            self.code,
            codes::name(self.code),
            self.parameter1,
            self.rule.name(),
            self.thread,
            self.message
        )?;
        match &self.site {
            Some(site) => site.write_lines(f, "at"),
            None => Ok(()),
        }
    }
}

impl fmt::Debug for Bugcheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// What kind of object leaked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LeakKind {
    /// A pool allocation never freed with `ExFreePool`/`ExFreePoolWithTag`.
    Pool,
    /// An IRP from `IoAllocateIrp` never freed with `IoFreeIrp`.
    Irp,
    /// An MDL from `IoAllocateMdl` never freed with `IoFreeMdl`.
    Mdl,
    /// A work item from `IoAllocateWorkItem` never freed with `IoFreeWorkItem`.
    WorkItem,
    /// A kernel timer still set at unload.
    Timer,
    /// A DPC still queued or running at unload.
    Dpc,
    /// A registry key handle never closed with `ZwClose`.
    Handle,
    /// A WSK registration never released with `WskDeregister`.
    WskRegistration,
    /// A WSK socket never closed with `WskCloseSocket`.
    WskSocket,
    /// An address-info chain from `WskGetAddressInfo` never freed with `WskFreeAddressInfo`.
    WskAddressInfo,
}

impl fmt::Display for LeakKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LeakKind::Pool => "pool",
            LeakKind::Irp => "IRP",
            LeakKind::Mdl => "MDL",
            LeakKind::WorkItem => "work item",
            LeakKind::Timer => "timer",
            LeakKind::Dpc => "DPC",
            LeakKind::Handle => "handle",
            LeakKind::WskRegistration => "WSK registration",
            LeakKind::WskSocket => "WSK socket",
            LeakKind::WskAddressInfo => "WSK address info",
        })
    }
}

/// An object the driver still owned at unload.
#[derive(Clone)]
pub struct Leak {
    /// What kind of object leaked.
    pub kind: LeakKind,
    /// Pool tag (0 when the object has none).
    pub tag: u32,
    /// Size in bytes (0 when not meaningful).
    pub size: usize,
    /// Address of the object.
    pub address: usize,
    /// Extra detail (pool type, key path, ...).
    pub detail: String,
    site: Option<Arc<Site>>,
}

impl Leak {
    pub(crate) fn new(kind: LeakKind, tag: u32, size: usize, address: usize, detail: String) -> Self {
        Self { kind, tag, size, address, detail, site: None }
    }

    pub(crate) fn with_site(mut self, site: Option<Arc<Site>>) -> Self {
        self.site = site;
        self
    }

    /// Where the object was allocated, if sites are captured.
    pub fn site(&self) -> Option<&Site> {
        self.site.as_deref()
    }

    /// The pool tag as text (`Echo`), as the debugger's `!poolused` shows it.
    pub fn tag_text(&self) -> String {
        tag_text(self.tag)
    }
}

/// A pool tag as text: its four bytes in memory order, non-printable bytes as `.`.
pub fn tag_text(tag: u32) -> String {
    tag.to_le_bytes().iter().map(|&b| if (0x20..0x7F).contains(&b) { b as char } else { '.' }).collect()
}

impl fmt::Display for Leak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at 0x{:x}", self.kind, self.address)?;
        if self.tag != 0 {
            write!(f, " tag '{}'", self.tag_text())?;
        }
        if self.size != 0 {
            write!(f, " {} bytes", self.size)?;
        }
        if !self.detail.is_empty() {
            write!(f, " ({})", self.detail)?;
        }
        match &self.site {
            Some(site) => site.write_lines(f, "allocated at"),
            None => Ok(()),
        }
    }
}

impl fmt::Debug for Leak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// What the verifier found for one driver session, produced at unload.
#[derive(Debug, Clone)]
pub struct VerifierReport {
    /// The driver's name.
    pub driver: String,
    /// Every violation, in order. The first one crashed the driver.
    pub bugchecks: Vec<Bugcheck>,
    /// Objects the driver still owned after unload.
    pub leaks: Vec<Leak>,
    /// Allocation and activity counters of the session.
    pub counters: Counters,
    /// Fault injection statistics.
    pub faults: FaultStats,
    /// Whether the driver bugchecked before unload (then DriverUnload was not called).
    pub crashed_before_unload: bool,
    /// Whether DriverUnload was called.
    pub unload_called: bool,
    /// Whether the verifier's checks were on.
    pub verifier: bool,
}

impl VerifierReport {
    /// No violation and no leak.
    pub fn is_clean(&self) -> bool {
        self.bugchecks.is_empty() && self.leaks.is_empty()
    }

    /// Whether `rule` fired.
    pub fn has(&self, rule: Rule) -> bool {
        self.bugchecks.iter().any(|b| b.rule == rule)
    }

    /// The first violation (the one that "crashed the machine").
    pub fn first_bugcheck(&self) -> Option<&Bugcheck> {
        self.bugchecks.first()
    }

    /// Leaks of one kind.
    pub fn leaks_of(&self, kind: LeakKind) -> impl Iterator<Item = &Leak> {
        self.leaks.iter().filter(move |leak| leak.kind == kind)
    }
}

impl fmt::Display for VerifierReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.is_clean() {
            "clean".to_owned()
        } else {
            format!("{} violation(s), {} leak(s)", self.bugchecks.len(), self.leaks.len())
        };
        writeln!(f, "Verifier report for driver `{}`: {verdict}", self.driver)?;
        if !self.verifier {
            writeln!(f, "  (verifier checks were off)")?;
        }
        if self.crashed_before_unload {
            writeln!(f, "  the driver crashed before unload: DriverUnload was not called, leaks not checked")?;
        }
        writeln!(f, "  {}", self.counters)?;
        if self.faults.injected != 0 || self.faults.counted != 0 {
            writeln!(
                f,
                "  fault injection: {} allocation(s) counted, {} failed on purpose",
                self.faults.counted, self.faults.injected
            )?;
        }
        if !self.bugchecks.is_empty() {
            writeln!(f, "  violations:")?;
            for bugcheck in &self.bugchecks {
                writeln!(f, "    {bugcheck}")?;
            }
        }
        if !self.leaks.is_empty() {
            writeln!(f, "  leaks:")?;
            for leak in &self.leaks {
                writeln!(f, "    {leak}")?;
            }
        }
        Ok(())
    }
}

/// Recorded violations of the current session.
static BUGCHECKS: Mutex<Vec<Bugcheck>> = Mutex::new(Vec::new());

/// More violations than this are counted but not kept.
const MAX_RECORDED: usize = 256;

/// Records a violation of `rule`: prints it, marks the driver crashed and keeps it for the
/// report. Takes no lock but its own, so it may be called with any emulator lock held.
pub(crate) fn bugcheck(rule: Rule, message: impl Into<String>) {
    bugcheck_with_code(rule, rule.code(), rule.parameter1(), message);
}

/// Records a violation of `rule` reported with another stop code (`KeBugCheckEx`).
pub(crate) fn bugcheck_with_code(rule: Rule, code: u32, parameter1: u64, message: impl Into<String>) {
    let capture = crate::kernel::capture_sites();
    let bugcheck = Bugcheck {
        rule,
        code,
        parameter1,
        message: message.into(),
        thread: std::thread::current().name().unwrap_or("<unnamed>").to_owned(),
        site: capture.then(|| Arc::new(Site::capture())),
    };
    eprintln!("*** wsk-emulator: {bugcheck}");
    crate::kernel::set_crashed();
    {
        let mut recorded = lock(&BUGCHECKS);
        if recorded.len() < MAX_RECORDED {
            recorded.push(bugcheck.clone());
        }
    }
    if crate::kernel::panic_on_bugcheck() {
        panic!("{bugcheck}");
    }
}

/// The violations recorded since the current driver was loaded.
pub fn recorded_bugchecks() -> Vec<Bugcheck> {
    lock(&BUGCHECKS).clone()
}

pub(crate) fn clear_bugchecks() {
    lock(&BUGCHECKS).clear();
}
