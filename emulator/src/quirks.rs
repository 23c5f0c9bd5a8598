//! Quirks: behaviours of a kernel other than Windows that the emulator can take on, so that a
//! defect seen only there can be reproduced, and its fix proven, in a host test.
//!
//! Each quirk is process-wide (the emulated kernel is process-global) and off by default. A
//! test or binary turns quirks on with [`set`] before it loads a driver, or through the
//! environment variable `WSK_EMU_QUIRKS`, a comma-separated list of quirk names
//! ([`Quirks::NAMES`]; `wine` turns on every quirk that models Wine), read once, at the first
//! query.
//!
//! | name | what the emulator then does | where it comes from |
//! | --- | --- | --- |
//! | `wine-cancel-timer` | `KeCancelTimer` returns TRUE for every timer set since it was initialized or last cancelled, expired or not; before it returns it removes the timer's DPC if it is queued and waits for it if it is running | Wine's `ntoskrnl.exe`: the answer is `Header.Inserted`, which expiry never clears; the DPC runs on a thread-pool timer callback, which `KeCancelTimer` cancels or waits for |
//! | `wine-uncancelable-irps` | the WSK provider gives its pending IRPs no cancel routine, so `IoCancelIrp` returns FALSE and the IRP completes only when the operation does (data arrives) or the socket is closed | Wine's `netio.sys`: pending operations are overlapped host socket calls; nothing cancels them but `WskCloseSocket` |
//! | `no-send-messages` | datagram sockets get a provider dispatch table whose `WskSendMessages` is null | a provider without batched datagram sends (`WskSendMessages` came with Windows 8) |

use std::sync::atomic::{AtomicU8, Ordering};

/// Quirks the emulator can take on. See the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Quirks {
    /// `KeCancelTimer` answers as Wine's does (`wine-cancel-timer`).
    pub wine_cancel_timer: bool,
    /// WSK IRPs cannot be cancelled, as under Wine's netio (`wine-uncancelable-irps`).
    pub wine_uncancelable_irps: bool,
    /// The datagram dispatch table has no `WskSendMessages` (`no-send-messages`).
    pub no_send_messages: bool,
}

impl Quirks {
    /// The names `WSK_EMU_QUIRKS` accepts, besides `wine` (all of them).
    pub const NAMES: &'static [&'static str] = &["wine-cancel-timer", "wine-uncancelable-irps", "no-send-messages"];

    /// Every quirk that models Wine.
    pub const fn wine() -> Self {
        Self { wine_cancel_timer: true, wine_uncancelable_irps: true, no_send_messages: false }
    }

    /// Parses a `WSK_EMU_QUIRKS` value. Unknown names are an error naming them.
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut quirks = Self::default();
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match name {
                "wine" => quirks = Self::wine(),
                "wine-cancel-timer" => quirks.wine_cancel_timer = true,
                "wine-uncancelable-irps" => quirks.wine_uncancelable_irps = true,
                "no-send-messages" => quirks.no_send_messages = true,
                other => {
                    return Err(format!("unknown quirk `{other}` (known: wine, {})", Self::NAMES.join(", ")));
                }
            }
        }
        Ok(quirks)
    }

    const fn bits(self) -> u8 {
        INITIALIZED
            | (self.wine_cancel_timer as u8)
            | ((self.wine_uncancelable_irps as u8) << 1)
            | ((self.no_send_messages as u8) << 2)
    }

    const fn from_bits(bits: u8) -> Self {
        Self {
            wine_cancel_timer: bits & 1 != 0,
            wine_uncancelable_irps: bits & 2 != 0,
            no_send_messages: bits & 4 != 0,
        }
    }
}

/// Set once the quirks were decided (from the environment or by [`set`]).
const INITIALIZED: u8 = 0x80;

static QUIRKS: AtomicU8 = AtomicU8::new(0);

/// Turns quirks on or off for the whole process, overriding `WSK_EMU_QUIRKS`. Call it before a
/// driver is loaded: changing a quirk under a running driver changes the kernel under it.
pub fn set(quirks: Quirks) {
    QUIRKS.store(quirks.bits(), Ordering::Release);
}

/// The quirks in force. The first call without an earlier [`set`] reads `WSK_EMU_QUIRKS`; an
/// unknown name there panics with the list of known names (a typo must not silently test
/// the friendly kernel).
pub fn get() -> Quirks {
    let bits = QUIRKS.load(Ordering::Acquire);
    if bits & INITIALIZED != 0 {
        return Quirks::from_bits(bits);
    }
    let quirks = match std::env::var("WSK_EMU_QUIRKS") {
        Ok(list) => Quirks::parse(&list).unwrap_or_else(|e| panic!("WSK_EMU_QUIRKS: {e}")),
        Err(_) => Quirks::default(),
    };
    // Another thread may have called `set` meanwhile: its choice wins.
    match QUIRKS.compare_exchange(0, quirks.bits(), Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => quirks,
        Err(current) => Quirks::from_bits(current),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_rejects_unknown_ones() {
        assert_eq!(Quirks::parse(""), Ok(Quirks::default()));
        assert_eq!(Quirks::parse("wine"), Ok(Quirks::wine()));
        assert_eq!(Quirks::parse("no-send-messages"), Ok(Quirks { no_send_messages: true, ..Quirks::default() }));
        assert_eq!(Quirks::parse(" wine-cancel-timer "), Ok(Quirks { wine_cancel_timer: true, ..Quirks::default() }));
        let err = Quirks::parse("wine-cancel-timer,wine-cancle").unwrap_err();
        assert!(err.contains("wine-cancle") && err.contains("wine-uncancelable-irps"), "{err}");
    }

    #[test]
    fn bits_round_trip() {
        for quirks in [
            Quirks::default(),
            Quirks::wine(),
            Quirks { wine_uncancelable_irps: true, ..Quirks::default() },
            Quirks { no_send_messages: true, ..Quirks::default() },
        ] {
            assert_eq!(Quirks::from_bits(quirks.bits()), quirks);
        }
    }
}
