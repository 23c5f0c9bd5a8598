//! WSK client registration: `WskRegister`, `WskCaptureProviderNPI`, and their release.
//!
//! ```text
//!  register() ──> Registered ──capture ok──> Captured ──drop──> ReleaseProviderNPI
//!                     │                                          + WskDeregister
//!                     └──provider not ready──> retry with try_capture() / ready().await
//! ```

use core::time::Duration;

use wsk_sys::{
    MAKE_WSK_VERSION, NT_SUCCESS, PASSIVE_LEVEL, PWSK_CLIENT, STATUS_DEVICE_NOT_READY, WSK_CLIENT_DISPATCH,
    WSK_CLIENT_NPI, WSK_INFINITE_WAIT, WSK_NO_WAIT, WSK_PROVIDER_DISPATCH, WSK_PROVIDER_NPI, WSK_REGISTRATION,
};

use crate::error::{Error, Result, require_irql};
use crate::pool::{self, PoolBox};
use crate::resolve::abandoned::Abandoned;

/// WSK 1.0 client dispatch: no client-level event callback.
static CLIENT_DISPATCH: WSK_CLIENT_DISPATCH =
    WSK_CLIENT_DISPATCH { Version: MAKE_WSK_VERSION(1, 0), Reserved: 0, WskClientEvent: None };

/// Registration state in non-paged pool (WSK keeps pointers to it until deregistration).
struct Registration {
    client_npi: WSK_CLIENT_NPI,
    block: WSK_REGISTRATION,
    provider: WSK_PROVIDER_NPI,
    captured: bool,
    /// Resolutions given up while pending, collected at PASSIVE_LEVEL.
    abandoned: Abandoned,
    /// The static event callbacks set (`WSK_EVENT_*` bits, 0: none; see
    /// [`crate::client_control`]).
    static_events: u32,
}

/// A registered WSK client. Sockets are created through it; it must outlive them (dropping
/// it deregisters, which waits until every socket is closed).
///
/// Drop at PASSIVE_LEVEL (DriverUnload or a task): `WskDeregister` requires it. Dropped at a
/// higher IRQL, the registration is leaked with an error message rather than bugchecking.
pub struct Wsk {
    reg: PoolBox<Registration>,
}

// SAFETY: the registration block and provider NPI are designed for use from any thread;
// mutation happens only through `&mut self` (capture) or in `Drop`.
unsafe impl Send for Wsk {}
// SAFETY: shared access only reads the captured provider NPI.
unsafe impl Sync for Wsk {}

impl Wsk {
    /// Registers as a WSK client and captures the provider NPI, waiting at most `wait` for
    /// the provider (`Duration::ZERO` = do not wait; the wait is counted in whole
    /// milliseconds, rounded up, and a wait of `u32::MAX` milliseconds or more waits without
    /// limit). If the provider is not ready in time the registration still succeeds: call
    /// [`Wsk::try_capture`] later (for example from a task after a sleep).
    ///
    /// IRQL == PASSIVE_LEVEL.
    pub fn register(wait: Duration) -> Result<Self> {
        require_irql(PASSIVE_LEVEL)?;
        let wait_ms = wait_millis(wait);
        pool::init();
        let reg = Registration {
            client_npi: WSK_CLIENT_NPI { ClientContext: core::ptr::null_mut(), Dispatch: &raw const CLIENT_DISPATCH },
            block: WSK_REGISTRATION::zeroed(),
            provider: WSK_PROVIDER_NPI::zeroed(),
            captured: false,
            abandoned: Abandoned::new(),
            static_events: 0,
        };
        let mut reg = PoolBox::try_new(reg).map_err(|_| Error::NoMemory)?;
        let r = &mut *reg;
        // SAFETY: both blocks live in pool memory that stays in place until `drop`, which
        // deregisters; PASSIVE_LEVEL was checked.
        let status = unsafe { wsk_sys::WskRegister(&raw mut r.client_npi, &raw mut r.block) };
        if !NT_SUCCESS(status) {
            crate::log!(error, "wsk: WskRegister failed: {}", Error::from_status(status));
            // Not registered: only the allocation is undone (dropped here, no Wsk exists).
            return Err(Error::from_status(status));
        }
        let mut wsk = Wsk { reg };
        match wsk.capture(wait_ms) {
            Ok(()) | Err(Error::NotReady) => Ok(wsk),
            Err(e) => Err(e),
        }
    }

    fn capture(&mut self, wait_ms: u32) -> Result<()> {
        if self.reg.captured {
            return Ok(());
        }
        let r = &mut *self.reg;
        // SAFETY: the block was registered and stays in place; with a non-zero wait the
        // caller is at PASSIVE_LEVEL (checked by the public entry points).
        let status = unsafe { wsk_sys::WskCaptureProviderNPI(&raw mut r.block, wait_ms, &raw mut r.provider) };
        if NT_SUCCESS(status) {
            r.captured = true;
            Ok(())
        } else if status == STATUS_DEVICE_NOT_READY {
            Err(Error::NotReady)
        } else {
            Err(Error::from_status(status))
        }
    }

    /// Tries again to capture the provider NPI without waiting. IRQL <= DISPATCH_LEVEL.
    pub fn try_capture(&mut self) -> Result<()> {
        require_irql(wsk_sys::DISPATCH_LEVEL)?;
        self.capture(WSK_NO_WAIT)
    }

    /// Waits, without blocking a thread, until the provider NPI is captured: retries
    /// [`Wsk::try_capture`] every `interval` (a `KTIMER` sleep) up to `attempts` times. For
    /// drivers that start before the network stack: register in DriverEntry with a short
    /// wait, then `wsk.ready(..).await` in a task. IRQL == PASSIVE_LEVEL (task context).
    pub async fn ready(&mut self, interval: Duration, attempts: u32) -> Result<()> {
        for _ in 0..attempts {
            match self.try_capture() {
                Err(Error::NotReady) => wsk_executor::sleep(interval).await,
                other => return other,
            }
        }
        self.try_capture()
    }

    /// Whether the provider NPI has been captured.
    ///
    /// Any IRQL.
    pub fn is_ready(&self) -> bool {
        self.reg.captured
    }

    /// The captured provider: its client handle and dispatch table.
    pub(crate) fn provider(&self) -> Result<(PWSK_CLIENT, &WSK_PROVIDER_DISPATCH)> {
        if !self.reg.captured || self.reg.provider.Dispatch.is_null() {
            return Err(Error::NotReady);
        }
        // SAFETY: a captured provider NPI's dispatch table stays valid until it is released
        // in `drop`, which cannot run while `self` is borrowed.
        let dispatch = unsafe { &*self.reg.provider.Dispatch };
        Ok((self.reg.provider.Client, dispatch))
    }

    /// The resolutions given up while pending, collected before deregistration.
    pub(crate) fn abandoned(&self) -> &Abandoned {
        &self.reg.abandoned
    }
}

impl Wsk {
    /// The static event callbacks set on this client (`WSK_EVENT_*` bits, 0: none). Any IRQL.
    pub(crate) fn static_event_mask(&self) -> u32 {
        self.reg.static_events
    }

    /// Records the static event callbacks the provider accepted. Any IRQL.
    pub(crate) fn record_static_events(&mut self, mask: u32) {
        self.reg.static_events = mask;
    }
}

/// `wait` as `WskCaptureProviderNPI`'s wait in milliseconds: rounded up (a non-zero wait
/// never becomes [`WSK_NO_WAIT`]), [`WSK_INFINITE_WAIT`] from `u32::MAX` milliseconds on.
fn wait_millis(wait: Duration) -> u32 {
    let millis = wait.as_nanos().div_ceil(1_000_000);
    u32::try_from(millis).unwrap_or(WSK_INFINITE_WAIT)
}

impl Drop for Wsk {
    fn drop(&mut self) {
        if wsk_sys::KeGetCurrentIrql() != PASSIVE_LEVEL {
            crate::log!(error, "wsk: Wsk dropped above PASSIVE_LEVEL; registration leaked");
            return;
        }
        if let Ok((client, dispatch)) = self.provider() {
            // Resolutions given up while pending complete and return their lists before the
            // provider NPI goes.
            self.reg.abandoned.wait_idle(client, dispatch.WskFreeAddressInfo);
        }
        let r = &mut *self.reg;
        if r.captured {
            // SAFETY: exactly one release for the successful capture.
            unsafe { wsk_sys::WskReleaseProviderNPI(&raw mut r.block) };
            r.captured = false;
        }
        // SAFETY: the block was registered by `register`; PASSIVE_LEVEL was checked.
        unsafe { wsk_sys::WskDeregister(&raw mut r.block) };
        // No socket is left to borrow from the buffer pool or the slot cache: free what they
        // keep.
        crate::buf_pool::global().drain();
        crate::op::cache::drain();
        crate::shadow::drain();
        crate::send_chain::drain();
        crate::socket::events::drain_reflectors();
    }
}

#[cfg(test)]
mod tests {
    use core::time::Duration;

    use super::wait_millis;

    #[test]
    fn waits_convert_to_whole_milliseconds_rounded_up() {
        assert_eq!(wait_millis(Duration::ZERO), wsk_sys::WSK_NO_WAIT);
        assert_eq!(wait_millis(Duration::from_nanos(1)), 1);
        assert_eq!(wait_millis(Duration::from_millis(1000)), 1000);
        assert_eq!(wait_millis(Duration::from_micros(1500)), 2);
        assert_eq!(wait_millis(Duration::from_millis(u64::from(u32::MAX) - 1)), u32::MAX - 1);
        assert_eq!(wait_millis(Duration::from_millis(u64::from(u32::MAX))), wsk_sys::WSK_INFINITE_WAIT);
        assert_eq!(wait_millis(Duration::MAX), wsk_sys::WSK_INFINITE_WAIT);
    }
}
