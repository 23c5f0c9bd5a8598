//! WSK client registration: `WskRegister`, `WskDeregister`, the count of provider NPI
//! captures (`WskCaptureProviderNPI` itself is in `dispatch`, with the table it hands out) and
//! `WskReleaseProviderNPI`, and each client's open sockets.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use wsk_sys::{
    DISPATCH_LEVEL, MAKE_WSK_VERSION, NTSTATUS, PASSIVE_LEVEL, STATUS_DEVICE_NOT_READY, STATUS_INVALID_DEVICE_STATE,
    STATUS_INVALID_PARAMETER, STATUS_NOT_SUPPORTED, STATUS_SUCCESS, WSK_CLIENT_NPI, WSK_REGISTRATION,
};

use crate::event;
use crate::irql;
use crate::kernel;
use crate::sync::lock;
use crate::verifier::{Leak, LeakKind, Rule, bugcheck};

/// `ReservedRegistrationState` of a block `WskRegister` initialized.
const REGISTERED: u64 = 0x5753_4B45_4D55_5247; // "WSKEMURG"
/// WSK major version the provider speaks.
const WSK_MAJOR_VERSION: u16 = 1;

struct Registration {
    captures: usize,
    /// Sockets created through this client and not yet closed.
    sockets: usize,
    /// A socket was ever created through this client (`WSK_SET_STATIC_EVENT_CALLBACKS` is
    /// refused from then on).
    created_any: bool,
    /// The static event callbacks (`WSK_SET_STATIC_EVENT_CALLBACKS`), 0 when none were set.
    static_events: u32,
    deregistering: bool,
    session: u64,
}

static REGISTRATIONS: Mutex<BTreeMap<usize, Registration>> = Mutex::new(BTreeMap::new());

/// Checks that `registration` is a block `WskRegister` initialized.
fn check(routine: &str, registration: *mut WSK_REGISTRATION) -> bool {
    if !registration.is_null() && lock(&REGISTRATIONS).contains_key(&(registration as usize)) {
        return true;
    }
    bugcheck(
        Rule::WskBadRegistration,
        format!("{routine}({registration:p}): not a registration block initialized by WskRegister"),
    );
    false
}

/// Checks that `client` (a `PWSK_CLIENT`: the registration block) is registered; records a
/// violation otherwise.
pub(crate) fn check_client(routine: &str, client: *mut std::ffi::c_void) -> bool {
    check(routine, client.cast())
}

/// Counts a socket created through `client`. Fails if the registration is gone.
pub(crate) fn socket_opened(client: usize) -> Result<(), NTSTATUS> {
    match lock(&REGISTRATIONS).get_mut(&client) {
        Some(registration) => {
            registration.sockets += 1;
            registration.created_any = true;
            Ok(())
        }
        None => Err(STATUS_INVALID_PARAMETER),
    }
}

/// `WSK_SET_STATIC_EVENT_CALLBACKS`: records `events` as `client`'s static event callbacks.
/// Microsoft: the client "must do so before it creates any sockets", and callbacks so enabled
/// "cannot be disabled or re-enabled later": refused with `STATUS_INVALID_DEVICE_STATE` once a
/// socket was created or static callbacks were set (the status is the emulator's choice; the
/// documentation names none).
pub(crate) fn set_static_events(client: usize, events: u32) -> Result<(), NTSTATUS> {
    let mut registrations = lock(&REGISTRATIONS);
    let Some(registration) = registrations.get_mut(&client) else { return Err(STATUS_INVALID_PARAMETER) };
    if registration.created_any || registration.static_events != 0 {
        return Err(STATUS_INVALID_DEVICE_STATE);
    }
    registration.static_events = events;
    Ok(())
}

/// `client`'s static event callbacks (0: none).
pub(crate) fn static_events(client: usize) -> u32 {
    lock(&REGISTRATIONS).get(&client).map_or(0, |registration| registration.static_events)
}

/// A socket created through `client` is closed.
pub(crate) fn socket_closed(client: usize) {
    if let Some(registration) = lock(&REGISTRATIONS).get_mut(&client) {
        registration.sockets = registration.sockets.saturating_sub(1);
    }
    event::notify_changed();
}

/// Registrations of `session` still active, as leaks.
pub(crate) fn leaks(session: u64) -> Vec<Leak> {
    lock(&REGISTRATIONS)
        .iter()
        .filter(|(_, r)| r.session == session)
        .map(|(&address, r)| {
            Leak::new(LeakKind::WskRegistration, 0, 0, address, format!("{} captured NPI(s)", r.captures))
        })
        .collect()
}

/// Forgets every registration of `session` (after unload).
pub(crate) fn teardown(session: u64) {
    lock(&REGISTRATIONS).retain(|_, r| r.session != session);
}

/// `WskRegister`: registers a WSK client. IRQL == PASSIVE_LEVEL.
///
/// # Safety
/// `WskClientNpi` must point to a valid client NPI whose dispatch table stays valid, and
/// `WskRegistration` to a block that stays in place until `WskDeregister`.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn WskRegister(
    WskClientNpi: *mut WSK_CLIENT_NPI,
    WskRegistration: *mut WSK_REGISTRATION,
) -> NTSTATUS {
    irql::check_max("WskRegister", PASSIVE_LEVEL);
    if WskClientNpi.is_null() || WskRegistration.is_null() {
        return STATUS_INVALID_PARAMETER;
    }
    // SAFETY: the caller guarantees a valid client NPI.
    let dispatch = unsafe { (*WskClientNpi).Dispatch };
    if dispatch.is_null() {
        return STATUS_INVALID_PARAMETER;
    }
    // SAFETY: the caller guarantees the client dispatch table is valid.
    let version = unsafe { (*dispatch).Version };
    if version >> 8 != WSK_MAJOR_VERSION || version < MAKE_WSK_VERSION(1, 0) {
        return STATUS_NOT_SUPPORTED;
    }
    let mut registrations = lock(&REGISTRATIONS);
    if registrations.contains_key(&(WskRegistration as usize)) {
        return STATUS_INVALID_DEVICE_STATE;
    }
    registrations.insert(
        WskRegistration as usize,
        Registration {
            captures: 0,
            sockets: 0,
            created_any: false,
            static_events: 0,
            deregistering: false,
            session: kernel::session(),
        },
    );
    // SAFETY: the caller guarantees the registration block is writable.
    unsafe {
        WskRegistration.write(WSK_REGISTRATION {
            ReservedRegistrationState: REGISTERED,
            ReservedRegistrationContext: std::ptr::null_mut(),
            ReservedRegistrationLock: 0,
        });
    }
    STATUS_SUCCESS
}

/// Captures still to answer `STATUS_DEVICE_NOT_READY`.
static UNAVAILABLE_CAPTURES: AtomicU32 = AtomicU32::new(0);

/// Makes the next `captures` calls of `WskCaptureProviderNPI` fail with
/// `STATUS_DEVICE_NOT_READY`, as when a driver starts before the network stack.
pub fn provider_unavailable_for(captures: u32) {
    UNAVAILABLE_CAPTURES.store(captures, Ordering::Release);
}

/// `WskCaptureProviderNPI`'s bookkeeping: counts a capture by `registration` (checked with
/// [`check_client`]), or refuses it while the registration goes away or the provider is
/// unavailable (`STATUS_DEVICE_NOT_READY`).
pub(crate) fn count_capture(registration: *mut WSK_REGISTRATION) -> Result<(), NTSTATUS> {
    let mut registrations = lock(&REGISTRATIONS);
    let Some(registration) = registrations.get_mut(&(registration as usize)) else {
        return Err(STATUS_INVALID_PARAMETER);
    };
    if registration.deregistering {
        return Err(STATUS_DEVICE_NOT_READY);
    }
    // A provider that comes up after the client (see `provider_unavailable_for`).
    if UNAVAILABLE_CAPTURES.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1)).is_ok() {
        return Err(STATUS_DEVICE_NOT_READY);
    }
    registration.captures += 1;
    Ok(())
}

/// `WskReleaseProviderNPI`. IRQL <= DISPATCH_LEVEL.
///
/// # Safety
/// `WskRegistration` must be registered, with an NPI captured.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn WskReleaseProviderNPI(WskRegistration: *mut WSK_REGISTRATION) {
    irql::check_max("WskReleaseProviderNPI", DISPATCH_LEVEL);
    if !check("WskReleaseProviderNPI", WskRegistration) {
        return;
    }
    let released = {
        let mut registrations = lock(&REGISTRATIONS);
        match registrations.get_mut(&(WskRegistration as usize)) {
            Some(registration) if registration.captures > 0 => {
                registration.captures -= 1;
                true
            }
            _ => false,
        }
    };
    if released {
        event::notify_changed();
    } else {
        bugcheck(
            Rule::WskBadRegistration,
            format!("WskReleaseProviderNPI({WskRegistration:p}) with no provider NPI captured"),
        );
    }
}

/// `WskDeregister`: waits until every captured provider NPI is released and every socket
/// created through the client is closed, then ends the registration. IRQL == PASSIVE_LEVEL. (The real routine waits forever; the emulator reports
/// a violation after the session's wait limit, [`KernelBuilder::unload_timeout`].)
///
/// [`KernelBuilder::unload_timeout`]: crate::KernelBuilder::unload_timeout
///
/// # Safety
/// `WskRegistration` must be registered.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn WskDeregister(WskRegistration: *mut WSK_REGISTRATION) {
    irql::check_max("WskDeregister", PASSIVE_LEVEL);
    if !check("WskDeregister", WskRegistration) {
        return;
    }
    let key = WskRegistration as usize;
    if let Some(registration) = lock(&REGISTRATIONS).get_mut(&key) {
        registration.deregistering = true;
    }
    let released = event::wait_for_condition(
        || lock(&REGISTRATIONS).get(&key).is_none_or(|r| r.captures == 0 && r.sockets == 0),
        Some(Instant::now() + kernel::wait_limit()),
    );
    if !released {
        let (captures, sockets) = lock(&REGISTRATIONS).get(&key).map_or((0, 0), |r| (r.captures, r.sockets));
        if captures > 0 {
            bugcheck(
                Rule::WskDeregisterWithCapturedNpi,
                format!("WskDeregister({WskRegistration:p}) gave up waiting for captured provider NPIs to be released"),
            );
        }
        if sockets > 0 {
            bugcheck(
                Rule::WskDeregisterWithOpenSockets,
                format!("WskDeregister({WskRegistration:p}) gave up waiting for {sockets} socket(s) to be closed"),
            );
        }
    }
    lock(&REGISTRATIONS).remove(&key);
    // SAFETY: the caller guarantees the registration block is writable.
    unsafe { (*WskRegistration).ReservedRegistrationState = 0 };
}
