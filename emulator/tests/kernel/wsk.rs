//! The WSK provider: registration, NPI capture, and a routine left unimplemented.

use std::ptr;
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};

use wsk_emulator::{LeakKind, Rule, with_irql};
use wsk_sys::*;

use crate::common::{armed_irp, attach};

static CLIENT_DISPATCH: WSK_CLIENT_DISPATCH =
    WSK_CLIENT_DISPATCH { Version: MAKE_WSK_VERSION(1, 0), Reserved: 0, WskClientEvent: None };

fn client_npi() -> WSK_CLIENT_NPI {
    WSK_CLIENT_NPI { ClientContext: ptr::null_mut(), Dispatch: &raw const CLIENT_DISPATCH }
}

/// A registration block registered with [`client_npi`] (boxed: it must not move while
/// registered; the provider copies the NPI).
fn registered() -> Box<WSK_REGISTRATION> {
    let mut registration = Box::new(WSK_REGISTRATION::zeroed());
    let mut npi = client_npi();
    assert_eq!(unsafe { WskRegister(&raw mut npi, &raw mut *registration) }, STATUS_SUCCESS);
    registration
}

static COMPLETIONS: AtomicU32 = AtomicU32::new(0);
static STATUS: AtomicI32 = AtomicI32::new(0);

unsafe extern "system" fn on_complete(_device: *mut DEVICE_OBJECT, irp: *mut IRP, _context: PVOID) -> NTSTATUS {
    STATUS.store(unsafe { (*irp).IoStatus.Status }, Ordering::SeqCst);
    COMPLETIONS.fetch_add(1, Ordering::SeqCst);
    STATUS_MORE_PROCESSING_REQUIRED
}

#[test]
fn register_capture_call_release_deregister() {
    let driver = attach();
    let mut registration = registered();
    unsafe {
        let mut provider = WSK_PROVIDER_NPI::zeroed();
        assert_eq!(WskCaptureProviderNPI(&raw mut *registration, WSK_INFINITE_WAIT, &raw mut provider), STATUS_SUCCESS);
        assert!(!provider.Dispatch.is_null());
        let dispatch = &*provider.Dispatch;
        assert_eq!(dispatch.Version, MAKE_WSK_VERSION(1, 0));

        let irp = armed_irp(on_complete, ptr::null_mut());
        let before = COMPLETIONS.load(Ordering::SeqCst);
        // A provider routine through the captured table: WskGetNameInfo without an address,
        // refused and completed (sockets and names are tested in tests/wsk_provider).
        let status = (dispatch.WskGetNameInfo.unwrap())(
            provider.Client,
            ptr::null_mut(),
            0,
            ptr::null_mut(),
            ptr::null_mut(),
            0,
            ptr::null_mut(),
            ptr::null_mut(),
            irp,
        );
        assert_eq!(status, STATUS_INVALID_PARAMETER);
        assert_eq!(COMPLETIONS.load(Ordering::SeqCst), before + 1, "the IRP was completed");
        assert_eq!(STATUS.load(Ordering::SeqCst), STATUS_INVALID_PARAMETER);
        IoFreeIrp(irp);

        with_irql(DISPATCH_LEVEL, || WskReleaseProviderNPI(&raw mut *registration));
        WskDeregister(&raw mut *registration);
    }
    driver.unload().assert_clean();
}

#[test]
fn capture_with_no_wait_at_dispatch() {
    let driver = attach();
    let mut registration = registered();
    unsafe {
        let mut provider = WSK_PROVIDER_NPI::zeroed();
        let status =
            with_irql(DISPATCH_LEVEL, || WskCaptureProviderNPI(&raw mut *registration, WSK_NO_WAIT, &raw mut provider));
        assert_eq!(status, STATUS_SUCCESS);
        WskReleaseProviderNPI(&raw mut *registration);
        WskDeregister(&raw mut *registration);
    }
    driver.unload().assert_clean();
}

#[test]
fn deregister_waits_for_captured_npis() {
    let driver = attach();
    let mut registration = registered();
    unsafe {
        let mut provider = WSK_PROVIDER_NPI::zeroed();
        WskCaptureProviderNPI(&raw mut *registration, WSK_INFINITE_WAIT, &raw mut provider);
    }
    let address = (&raw mut *registration) as usize;
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(5));
        unsafe { WskReleaseProviderNPI(address as *mut WSK_REGISTRATION) };
    });
    unsafe { WskDeregister(&raw mut *registration) };
    releaser.join().unwrap();
    driver.unload().assert_clean();
}

#[test]
fn registration_leaked_at_unload() {
    let driver = attach();
    let _registration = registered();
    let report = driver.unload();
    report.assert_first(Rule::WskRegistrationLeak);
    report.assert_leaks(LeakKind::WskRegistration, 1);
}

#[test]
fn unregistered_block_is_reported() {
    let driver = attach();
    let mut registration = WSK_REGISTRATION::zeroed();
    let mut provider = WSK_PROVIDER_NPI::zeroed();
    let status = unsafe { WskCaptureProviderNPI(&raw mut registration, WSK_NO_WAIT, &raw mut provider) };
    assert_eq!(status, STATUS_INVALID_PARAMETER);
    driver.unload().assert_first(Rule::WskBadRegistration);
}

#[test]
fn unsupported_client_version_is_refused() {
    let driver = attach();
    static OLD: WSK_CLIENT_DISPATCH =
        WSK_CLIENT_DISPATCH { Version: MAKE_WSK_VERSION(2, 0), Reserved: 0, WskClientEvent: None };
    let mut npi = WSK_CLIENT_NPI { ClientContext: ptr::null_mut(), Dispatch: &raw const OLD };
    let mut registration = WSK_REGISTRATION::zeroed();
    assert_eq!(unsafe { WskRegister(&raw mut npi, &raw mut registration) }, STATUS_NOT_SUPPORTED);
    driver.unload().assert_clean();
}

#[test]
fn deregister_with_an_npi_never_released() {
    let driver = wsk_emulator::Kernel::builder().unload_timeout(std::time::Duration::from_millis(20)).attach("wsk");
    let mut registration = registered();
    unsafe {
        let mut provider = WSK_PROVIDER_NPI::zeroed();
        WskCaptureProviderNPI(&raw mut *registration, WSK_INFINITE_WAIT, &raw mut provider);
        WskDeregister(&raw mut *registration);
    }
    driver.unload().assert_first(Rule::WskDeregisterWithCapturedNpi);
}

#[test]
fn release_without_capture_is_reported() {
    let driver = attach();
    let mut registration = registered();
    unsafe {
        WskReleaseProviderNPI(&raw mut *registration);
        WskDeregister(&raw mut *registration);
    }
    driver.unload().assert_first(Rule::WskBadRegistration);
}
