//! Process-global state every module shares: the current session (one loaded driver at a
//! time) and the settings it was loaded with.
//!
//! A *session* starts when a driver is loaded and ends when it is unloaded. Every object the
//! driver allocates is stamped with the session id, so that leaks are attributed to the driver
//! that made them. Session 0 means "no driver loaded": routines still work then, but nothing
//! is reported.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

static SESSION: AtomicU64 = AtomicU64::new(0);
static NEXT_SESSION: AtomicU64 = AtomicU64::new(1);
static CRASHED: AtomicBool = AtomicBool::new(false);

static VERIFIER: AtomicBool = AtomicBool::new(true);
static CAPTURE_SITES: AtomicBool = AtomicBool::new(false);
static PANIC_ON_BUGCHECK: AtomicBool = AtomicBool::new(false);
static ECHO_DEBUG_OUTPUT: AtomicBool = AtomicBool::new(false);
static WAIT_LIMIT_MS: AtomicU64 = AtomicU64::new(30_000);

/// Settings a session runs with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    pub verifier: bool,
    pub capture_sites: bool,
    pub panic_on_bugcheck: bool,
    pub echo_debug_output: bool,
    /// Bound on the emulator's own waits for the driver (unload, `WskDeregister`).
    pub wait_limit: Duration,
}

/// The current session id (0: no driver loaded).
#[inline]
pub(crate) fn session() -> u64 {
    SESSION.load(Ordering::Acquire)
}

/// Whether the verifier's checks are on.
#[inline]
pub(crate) fn verifier() -> bool {
    VERIFIER.load(Ordering::Relaxed)
}

/// Whether allocation sites are captured.
#[inline]
pub(crate) fn capture_sites() -> bool {
    CAPTURE_SITES.load(Ordering::Relaxed)
}

pub(crate) fn set_capture_sites(on: bool) {
    CAPTURE_SITES.store(on, Ordering::Relaxed);
}

#[inline]
pub(crate) fn panic_on_bugcheck() -> bool {
    PANIC_ON_BUGCHECK.load(Ordering::Relaxed)
}

#[inline]
pub(crate) fn echo_debug_output() -> bool {
    ECHO_DEBUG_OUTPUT.load(Ordering::Relaxed)
}

/// How long the emulator waits for the driver before it reports a violation (the unload
/// timeout of the session).
pub(crate) fn wait_limit() -> Duration {
    Duration::from_millis(WAIT_LIMIT_MS.load(Ordering::Relaxed))
}

/// Whether the loaded driver has bugchecked (no more work items or DPCs run in it).
#[inline]
pub(crate) fn crashed() -> bool {
    CRASHED.load(Ordering::Acquire)
}

pub(crate) fn set_crashed() {
    CRASHED.store(true, Ordering::Release);
}

/// Starts a new session with `settings` and returns its id.
pub(crate) fn begin_session(settings: Settings) -> u64 {
    VERIFIER.store(settings.verifier, Ordering::Relaxed);
    CAPTURE_SITES.store(settings.capture_sites, Ordering::Relaxed);
    PANIC_ON_BUGCHECK.store(settings.panic_on_bugcheck, Ordering::Relaxed);
    ECHO_DEBUG_OUTPUT.store(settings.echo_debug_output, Ordering::Relaxed);
    WAIT_LIMIT_MS.store(u64::try_from(settings.wait_limit.as_millis()).unwrap_or(u64::MAX), Ordering::Relaxed);
    CRASHED.store(false, Ordering::Release);
    let id = NEXT_SESSION.fetch_add(1, Ordering::Relaxed);
    SESSION.store(id, Ordering::Release);
    id
}

/// Ends the current session; later activity belongs to no driver.
pub(crate) fn end_session() {
    SESSION.store(0, Ordering::Release);
    CAPTURE_SITES.store(false, Ordering::Relaxed);
    PANIC_ON_BUGCHECK.store(false, Ordering::Relaxed);
}
