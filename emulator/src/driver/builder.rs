//! Loading a driver: [`Kernel::builder`], the settings of a session, DriverEntry.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use wsk_sys::{DRIVER_INITIALIZE, NT_SUCCESS, NTSTATUS, PASSIVE_LEVEL};

use super::LoadedDriver;
use super::objects::{DriverObjects, acquire_slot};
use crate::fault::{self, FaultPlan};
use crate::irql::{self, with_irql};
use crate::kernel::{self, Settings};
use crate::registry::{self, RegistryValue};
use crate::verifier::{self, VerifierReport};
use crate::{counters, debug, threads};

/// Entry point to the emulated kernel.
#[derive(Debug)]
pub struct Kernel;

impl Kernel {
    /// Settings for loading a driver: verifier on, site capture on (unless the environment
    /// variable `WSK_EMU_SITES=0`), no fault injection, no registry parameters.
    pub fn builder() -> KernelBuilder {
        KernelBuilder::default()
    }
}

/// How to load a driver.
#[derive(Debug, Clone)]
pub struct KernelBuilder {
    verifier: bool,
    capture_sites: bool,
    panic_on_bugcheck: bool,
    echo_debug_output: bool,
    fault: FaultPlan,
    parameters: BTreeMap<String, RegistryValue>,
    unload_timeout: Duration,
}

impl Default for KernelBuilder {
    fn default() -> Self {
        Self {
            verifier: true,
            capture_sites: std::env::var("WSK_EMU_SITES").map_or(true, |v| v != "0"),
            panic_on_bugcheck: false,
            echo_debug_output: false,
            fault: FaultPlan::None,
            parameters: BTreeMap::new(),
            unload_timeout: Duration::from_secs(30),
        }
    }
}

impl KernelBuilder {
    /// Turns the verifier's checks on (default) or off. Off: no IRQL checks, no special pool
    /// (fill, guard bytes, quarantine), no leak check at unload; misuse that would corrupt the
    /// host (double frees) is still refused and reported.
    pub fn verifier(mut self, on: bool) -> Self {
        self.verifier = on;
        self
    }

    /// Captures a backtrace at every allocation (default on), resolved when a leak or a
    /// violation is reported.
    pub fn capture_sites(mut self, on: bool) -> Self {
        self.capture_sites = on;
        self
    }

    /// Panics at the first violation (handy under a debugger). A panic inside an emulated
    /// routine aborts the process, as a real bugcheck stops the machine.
    pub fn panic_on_bugcheck(mut self, on: bool) -> Self {
        self.panic_on_bugcheck = on;
        self
    }

    /// Echoes `DbgPrint` output to stderr (also enabled by the `WSK_EMU_DBGPRINT` variable).
    pub fn echo_debug_output(mut self, on: bool) -> Self {
        self.echo_debug_output = on;
        self
    }

    /// Fails driver allocations on purpose (Driver Verifier's low resources simulation).
    pub fn fault_injection(mut self, plan: FaultPlan) -> Self {
        self.fault = plan;
        self
    }

    /// Sets a value of the driver's `Parameters` registry key.
    pub fn param(mut self, name: &str, value: RegistryValue) -> Self {
        self.parameters.insert(name.to_owned(), value);
        self
    }

    /// Sets a `REG_DWORD` parameter.
    pub fn param_dword(self, name: &str, value: u32) -> Self {
        self.param(name, RegistryValue::Dword(value))
    }

    /// Sets a `REG_QWORD` parameter.
    pub fn param_qword(self, name: &str, value: u64) -> Self {
        self.param(name, RegistryValue::Qword(value))
    }

    /// Sets a `REG_SZ` parameter.
    pub fn param_string(self, name: &str, value: &str) -> Self {
        self.param(name, RegistryValue::String(value.to_owned()))
    }

    /// Sets a `REG_MULTI_SZ` parameter.
    pub fn param_multi_string(self, name: &str, values: &[&str]) -> Self {
        self.param(name, RegistryValue::MultiString(values.iter().map(|v| (*v).to_owned()).collect()))
    }

    /// Sets a `REG_BINARY` parameter.
    pub fn param_binary(self, name: &str, value: &[u8]) -> Self {
        self.param(name, RegistryValue::Binary(value.to_vec()))
    }

    /// How long unload waits for the driver's work items and DPCs, and `WskDeregister` for
    /// captured NPIs (default 30 s), before reporting them as pending.
    pub fn unload_timeout(mut self, timeout: Duration) -> Self {
        self.unload_timeout = timeout;
        self
    }

    /// Loads driver `name`: calls `entry` (its DriverEntry) at PASSIVE_LEVEL on the calling
    /// thread with a new `DRIVER_OBJECT` and the registry path
    /// `\Registry\Machine\System\CurrentControlSet\Services\<name>`.
    ///
    /// Waits while another driver is loaded in this process. If DriverEntry fails, the driver
    /// is checked for leaks as at unload (DriverUnload is not called) and the error carries
    /// the report.
    ///
    /// # Panics
    /// If the calling thread already holds a loaded driver (that would deadlock).
    pub fn load(self, name: &str, entry: DRIVER_INITIALIZE) -> Result<LoadedDriver, LoadError> {
        let mut driver = self.start(name);
        let (object, registry_path) = (driver.driver_object(), driver.registry_path());
        // SAFETY: both pointers are into the live driver object block created by `start`;
        // DriverEntry runs at PASSIVE_LEVEL as its contract says.
        let status = with_irql(PASSIVE_LEVEL, || unsafe { entry(object, registry_path) });
        crate::irp::check_cancel_lock_released("DriverEntry");
        irql::check_restored("DriverEntry", PASSIVE_LEVEL);
        if NT_SUCCESS(status) {
            Ok(driver)
        } else {
            driver.finished = true;
            let report = driver.shutdown(false);
            Err(LoadError::EntryFailed { status, report: Box::new(report) })
        }
    }

    /// Starts a session for driver `name` without a DriverEntry: the test body is the driver.
    /// Unload calls the `DriverUnload` the test stored in [`LoadedDriver::driver_object`], if any.
    ///
    /// # Panics
    /// If the calling thread already holds a loaded driver.
    pub fn attach(self, name: &str) -> LoadedDriver {
        self.start(name)
    }

    fn start(self, name: &str) -> LoadedDriver {
        acquire_slot();
        threads::ensure_started();
        let session = kernel::begin_session(Settings {
            verifier: self.verifier,
            capture_sites: self.capture_sites,
            panic_on_bugcheck: self.panic_on_bugcheck,
            echo_debug_output: self.echo_debug_output,
            wait_limit: self.unload_timeout,
        });
        verifier::clear_bugchecks();
        debug::clear();
        counters::reset();
        fault::reset(self.fault);
        registry::configure(name, &self.parameters);
        LoadedDriver {
            objects: DriverObjects::create(name),
            session,
            name: name.to_owned(),
            unload_timeout: self.unload_timeout,
            finished: false,
        }
    }
}

/// Why a driver did not load.
#[derive(Debug)]
pub enum LoadError {
    /// DriverEntry returned an error status.
    EntryFailed {
        /// The failure status DriverEntry returned.
        status: NTSTATUS,
        /// What the verifier found after the failed DriverEntry.
        report: Box<VerifierReport>,
    },
}

impl LoadError {
    /// The verifier report of the failed load.
    pub fn report(&self) -> &VerifierReport {
        match self {
            LoadError::EntryFailed { report, .. } => report,
        }
    }

    /// DriverEntry's status.
    pub fn status(&self) -> NTSTATUS {
        match self {
            LoadError::EntryFailed { status, .. } => *status,
        }
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::EntryFailed { status, report } => {
                write!(f, "DriverEntry failed with 0x{:08X}\n{report}", *status as u32)
            }
        }
    }
}

impl std::error::Error for LoadError {}
