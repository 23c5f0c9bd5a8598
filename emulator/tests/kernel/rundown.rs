//! Rundown protection.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wsk_emulator::{Rule, with_irql};
use wsk_sys::*;

use crate::common::{attach, eventually};

struct RunRef(Box<EX_RUNDOWN_REF>);

// SAFETY: an EX_RUNDOWN_REF is made to be used from any thread.
unsafe impl Send for RunRef {}
unsafe impl Sync for RunRef {}

impl RunRef {
    fn new() -> Arc<RunRef> {
        let mut run_ref = Box::new(EX_RUNDOWN_REF { Count: 0xDEAD });
        unsafe { ExInitializeRundownProtection(&raw mut *run_ref) };
        Arc::new(RunRef(run_ref))
    }

    fn ptr(&self) -> *mut EX_RUNDOWN_REF {
        (&raw const *self.0).cast_mut()
    }
}

#[test]
fn acquire_release_and_rundown() {
    let driver = attach();
    let run_ref = RunRef::new();
    unsafe {
        assert_eq!((*run_ref.ptr()).Count, 0);
        assert_eq!(ExAcquireRundownProtection(run_ref.ptr()), TRUE);
        assert_eq!(with_irql(DISPATCH_LEVEL, || ExAcquireRundownProtection(run_ref.ptr())), TRUE);
        assert_eq!((*run_ref.ptr()).Count, 4, "references count in units of 2");
        ExReleaseRundownProtection(run_ref.ptr());
        ExReleaseRundownProtection(run_ref.ptr());
        ExWaitForRundownProtectionRelease(run_ref.ptr());
        assert_eq!(ExAcquireRundownProtection(run_ref.ptr()), FALSE, "run down");
        ExRundownCompleted(run_ref.ptr());
        assert_eq!(ExAcquireRundownProtection(run_ref.ptr()), FALSE);
        ExReInitializeRundownProtection(run_ref.ptr());
        assert_eq!(ExAcquireRundownProtection(run_ref.ptr()), TRUE);
        ExReleaseRundownProtection(run_ref.ptr());
    }
    driver.unload().assert_clean();
}

#[test]
fn wait_blocks_until_the_last_release() {
    let driver = attach();
    let run_ref = RunRef::new();
    assert_eq!(unsafe { ExAcquireRundownProtection(run_ref.ptr()) }, TRUE);
    let done = Arc::new(AtomicBool::new(false));
    let waiter = {
        let (run_ref, done) = (Arc::clone(&run_ref), Arc::clone(&done));
        std::thread::spawn(move || {
            unsafe { ExWaitForRundownProtectionRelease(run_ref.ptr()) };
            done.store(true, Ordering::SeqCst);
        })
    };
    let rundown_started = eventually(|| unsafe {
        if ExAcquireRundownProtection(run_ref.ptr()) == TRUE {
            ExReleaseRundownProtection(run_ref.ptr());
            false
        } else {
            true
        }
    });
    assert!(rundown_started);
    std::thread::sleep(Duration::from_millis(5));
    assert!(!done.load(Ordering::SeqCst), "a reference is still held");
    with_irql(DISPATCH_LEVEL, || unsafe { ExReleaseRundownProtection(run_ref.ptr()) });
    waiter.join().unwrap();
    assert!(done.load(Ordering::SeqCst));
    driver.unload().assert_clean();
}

#[test]
fn release_without_acquire_is_reported() {
    let driver = attach();
    let run_ref = RunRef::new();
    unsafe { ExReleaseRundownProtection(run_ref.ptr()) };
    driver.unload().assert_first(Rule::RundownReleaseWithoutAcquire);
}

#[test]
fn waiting_for_rundown_at_dispatch_is_reported() {
    let driver = attach();
    let run_ref = RunRef::new();
    with_irql(DISPATCH_LEVEL, || unsafe { ExWaitForRundownProtectionRelease(run_ref.ptr()) });
    driver.unload().assert_first(Rule::IrqlTooHigh);
}
