//! Adversarial provider behaviour: what a WSK provider may do that the emulator's default
//! provider never does, so that the library's handling of it is proven in host tests.
//!
//! Process-wide and off by default, like [`quirks`](crate::quirks). Turn it on with [`set`]
//! before a driver is loaded, or for a whole process with the environment variable
//! `WSK_EMU_CHAOS=SEED` (read on first use; [`Adversary::chaos`] of that seed; `set` replaces
//! it). The behaviours, each a field of [`Adversary`]:
//!
//! * `unmapped_indications`: receive indications describe locked pages that are not mapped
//!   into system space (`MDL_PAGES_LOCKED`, neither `MDL_SOURCE_IS_NONPAGED_POOL` nor
//!   `MDL_MAPPED_TO_SYSTEM_VA`), so `MmGetSystemAddressForMdlSafe` has to call
//!   `MmMapLockedPagesSpecifyCache`. Microsoft documents no promise that a provider's
//!   indication MDLs are mapped, so the worst case is assumed.
//! * `mapping_failure_ppm`: `MmMapLockedPagesSpecifyCache` then fails (returns NULL, as it does
//!   when system PTEs run out) for this many calls per million. A mapping that succeeded stays
//!   (the MDL is marked mapped), as on Windows.
//! * `processors`: completions and event callbacks run on this many provider threads
//!   (`wsk-emu-cpuN`, the "processors") instead of the one I/O thread: each readiness event,
//!   delivery pass and late completion goes to a processor chosen at random, so one socket's
//!   completions and callbacks run on any of them, in any order between sockets and between
//!   operations of one socket (the provider module `wsk::processors` says what stays serialized and why).
//! * `late_completion_ppm`, `max_delay_us`: an operation that could complete inside its
//!   dispatch call is, this many times per million, left pending and completed later by a
//!   processor, after a random delay of up to `max_delay_us` (which also delays the
//!   processors' other work at random).
//! * `caller_irql_completions`: an IRP completed inside its dispatch call runs its completion
//!   routine on the caller's thread *at the caller's IRQL* (PASSIVE_LEVEL from a task), as
//!   `IoCompleteRequest` does on Windows, instead of at DISPATCH_LEVEL.
//! * `concurrent_callbacks`: receive-from callbacks of one datagram socket and accept
//!   callbacks of one listening socket may run at the same time on several processors.
//!   Microsoft documents no serialization of them (see `wsk::deliver`).
//! * `random_shapes`: receive indications come as chains of random pieces (from 1 byte up,
//!   up to about 30 of them), with `Buffer.Offset` inside the first MDL and MDL chains inside
//!   one indication; a receive IRP or an indication takes only part of what is there; a send
//!   IRP may complete with part of its bytes sent (`Information` < length: Microsoft's
//!   `WskSend` documentation reports the bytes sent and promises no whole send).
//! * `accept_answer_delay_us`: the provider records an accept callback's answer (the accepted
//!   socket's `AcceptSocketContext` and `AcceptSocketDispatch`, and with them the connection
//!   events the socket inherits from the listening socket) this many microseconds after the
//!   callback returned, not at once. Until then the socket has no client dispatch table: a
//!   `WskControlSocket` enabling its event callbacks is refused (`STATUS_INVALID_PARAMETER`,
//!   as for a table without the callback). Microsoft documents no moment at which the
//!   answer takes effect, so a client cannot know when it may enable events on a socket an
//!   accept callback took; a provider preempted between the callback's return and its
//!   bookkeeping opens that window on Windows too.
//! * `provider_cancel_ppm`: a receive (`WskReceive`, `WskReceiveFrom`) or an accept left
//!   pending is, this many times per million, completed with `STATUS_CANCELLED` and nothing
//!   in it, although neither the client nor a close cancelled it; the socket stays open. Half
//!   of them inside the call that left them pending, half by a processor after a random delay
//!   of up to `max_delay_us` (unless they completed first); pending ones only with
//!   processors. A zero-length `WskReceive` (which resumes indications after refused data) is
//!   cancelled inside its call as often, with or without processors, and then resumes
//!   nothing. Wine's netio cancels pending calls when the thread that issued them exits (see
//!   `wsk_emulator::cancel_pending_receives`), and Microsoft documents no promise that a
//!   provider cancels only on request.
//!
//! Randomness comes from one generator: a hash of the seed and of a process-wide decision counter,
//! so the sequence of decisions is the seed's; which thread meets which decision depends on
//! the host's scheduling, as on a real multiprocessor, so a multi-processor run is seeded but
//! not replayable step by step.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use crate::sync::lock;

/// The adversarial behaviours in force. See the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Adversary {
    /// Indication MDLs are not mapped into system space.
    pub unmapped_indications: bool,
    /// `MmMapLockedPagesSpecifyCache` fails this many times per million calls.
    pub mapping_failure_ppm: u32,
    /// The seed of every random decision.
    pub seed: u64,
    /// Provider threads that complete IRPs and call event callbacks (0: the I/O thread alone).
    pub processors: usize,
    /// Immediate completions deferred to a processor, per million.
    pub late_completion_ppm: u32,
    /// The longest random delay of a processor's work, in microseconds.
    pub max_delay_us: u32,
    /// Immediate completions run their completion routines at the caller's IRQL.
    pub caller_irql_completions: bool,
    /// Callbacks of one datagram or listening socket may overlap.
    pub concurrent_callbacks: bool,
    /// Random indication shapes, partial receives and short sends.
    pub random_shapes: bool,
    /// Microseconds between an accept callback's return and the provider's recording of its
    /// answer (0: at once).
    pub accept_answer_delay_us: u32,
    /// Pending receives and accepts the provider cancels on its own, per million.
    pub provider_cancel_ppm: u32,
}

impl Adversary {
    /// Every behaviour at once, seeded: what `WSK_EMU_CHAOS=SEED` turns on.
    pub fn chaos(seed: u64) -> Self {
        Self {
            unmapped_indications: true,
            mapping_failure_ppm: 20_000,
            seed,
            processors: 4,
            late_completion_ppm: 250_000,
            max_delay_us: 300,
            caller_irql_completions: true,
            concurrent_callbacks: true,
            random_shapes: true,
            accept_answer_delay_us: 200,
            provider_cancel_ppm: 20_000,
        }
    }

    /// The behaviours `WSK_EMU_CHAOS` asks for: `None` when it is unset or empty. A value that
    /// is not a decimal or `0x` hexadecimal seed is an error (no silent fallback).
    pub fn from_env() -> Result<Option<Self>, String> {
        match std::env::var("WSK_EMU_CHAOS") {
            Ok(value) if !value.trim().is_empty() => parse_seed(value.trim())
                .map(|seed| Some(Self::chaos(seed)))
                .ok_or_else(|| format!("WSK_EMU_CHAOS={value:?} is not a seed (a decimal or 0x-hexadecimal number)")),
            _ => Ok(None),
        }
    }

    /// Whether any behaviour is on.
    pub fn any(&self) -> bool {
        *self != Self { seed: self.seed, ..Self::default() }
    }
}

/// Parses a seed: decimal, or hexadecimal with `0x`.
pub fn parse_seed(text: &str) -> Option<u64> {
    match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

/// `None` until first use, when `WSK_EMU_CHAOS` is read.
static ADVERSARY: Mutex<Option<Adversary>> = Mutex::new(None);
static MAPPINGS: AtomicU64 = AtomicU64::new(0);
static MAPPINGS_FAILED: AtomicU64 = AtomicU64::new(0);
static DECISIONS: AtomicU64 = AtomicU64::new(0);

/// [`ADVERSARY`] in short, for the provider's hot paths: not read yet, all off, or some on.
static STATE: AtomicU8 = AtomicU8::new(UNREAD);
const UNREAD: u8 = 0;
const OFF: u8 = 1;
const ON: u8 = 2;

fn publish(adversary: Adversary) {
    STATE.store(if adversary.any() { ON } else { OFF }, Ordering::Release);
}

/// Sets the behaviours for the whole process (call it before a driver is loaded).
pub fn set(adversary: Adversary) {
    let mut slot = lock(&ADVERSARY);
    *slot = Some(adversary);
    publish(adversary);
}

/// The behaviours in force.
///
/// # Panics
/// If `WSK_EMU_CHAOS` holds something that is not a seed.
pub fn get() -> Adversary {
    if STATE.load(Ordering::Acquire) == OFF {
        return Adversary::default();
    }
    let mut slot = lock(&ADVERSARY);
    let adversary = *slot.get_or_insert_with(|| match Adversary::from_env() {
        Ok(chaos) => chaos.unwrap_or_default(),
        Err(message) => panic!("wsk-emulator: {message}"),
    });
    publish(adversary);
    adversary
}

/// Mapping calls counted, and how many of them failed on purpose.
pub fn mapping_stats() -> (u64, u64) {
    (MAPPINGS.load(Ordering::Relaxed), MAPPINGS_FAILED.load(Ordering::Relaxed))
}

/// Random decisions taken so far (a test can see that the adversary was consulted).
pub fn decisions() -> u64 {
    DECISIONS.load(Ordering::Relaxed)
}

/// What the adversary did, process-wide (so a test can show that a behaviour was met).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Callbacks started while another callback of the same socket ran.
    pub overlapping_callbacks: u64,
    /// Operations left pending that could have completed inside their call.
    pub late_completions: u64,
    /// Completions handed to another processor.
    pub moved_completions: u64,
    /// Completions run inside the call at the caller's IRQL below DISPATCH_LEVEL.
    pub caller_irql_completions: u64,
    /// Data indication chains built in random shapes.
    pub shaped_chains: u64,
    /// Receive IRPs completed with part of what they could take.
    pub partial_receives: u64,
    /// Send IRPs completed with part of their bytes sent.
    pub short_sends: u64,
    /// Pending receives and accepts the provider cancelled on its own.
    pub provider_cancels: u64,
}

/// The counters behind [`Stats`].
#[derive(Clone, Copy)]
pub(crate) enum Event {
    OverlappingCallback,
    LateCompletion,
    MovedCompletion,
    CallerIrqlCompletion,
    ShapedChain,
    PartialReceive,
    ShortSend,
    ProviderCancel,
}

static EVENTS: [AtomicU64; 8] = [const { AtomicU64::new(0) }; 8];

/// Counts one adversarial event.
pub(crate) fn count(event: Event) {
    EVENTS[event as usize].fetch_add(1, Ordering::Relaxed);
}

/// What the adversary did so far in this process.
pub fn stats() -> Stats {
    let get = |event: Event| EVENTS[event as usize].load(Ordering::Relaxed);
    Stats {
        overlapping_callbacks: get(Event::OverlappingCallback),
        late_completions: get(Event::LateCompletion),
        moved_completions: get(Event::MovedCompletion),
        caller_irql_completions: get(Event::CallerIrqlCompletion),
        shaped_chains: get(Event::ShapedChain),
        partial_receives: get(Event::PartialReceive),
        short_sends: get(Event::ShortSend),
        provider_cancels: get(Event::ProviderCancel),
    }
}

/// Counts one `MmMapLockedPagesSpecifyCache` call; whether it fails on purpose.
pub(crate) fn mapping_fails() -> bool {
    let rate = get().mapping_failure_ppm;
    let n = MAPPINGS.fetch_add(1, Ordering::Relaxed) + 1;
    let fails = rate > 0 && crate::fault::FaultPlan::Random { seed: 0x4D41_5050, rate_ppm: rate }.fails(n);
    if fails {
        MAPPINGS_FAILED.fetch_add(1, Ordering::Relaxed);
    }
    fails
}

/// Waits out [`Adversary::accept_answer_delay_us`] (the provider's own time, on its thread,
/// between an accept callback's return and the recording of its answer).
pub(crate) fn delay_accept_answer() {
    if STATE.load(Ordering::Acquire) == OFF {
        return;
    }
    let delay = get().accept_answer_delay_us;
    if delay > 0 {
        // The provider's time, not the driver's: excused if it falls in a watched
        // DISPATCH_LEVEL section (an in-memory connection settles on the caller's thread).
        crate::irql::host_work(|| std::thread::sleep(std::time::Duration::from_micros(u64::from(delay))));
    }
}

/// Whether the provider cancels, on its own and at once, a receive it would complete inside
/// its call (a zero-length `WskReceive`): `provider_cancel_ppm` times per million, counted.
pub(crate) fn cancels_at_once() -> bool {
    let cancels = chance(get().provider_cancel_ppm);
    if cancels {
        count(Event::ProviderCancel);
    }
    cancels
}

/// The next random number of the seed's sequence.
pub(crate) fn roll() -> u64 {
    let n = DECISIONS.fetch_add(1, Ordering::Relaxed) + 1;
    crate::fault::mix(get().seed ^ crate::fault::mix(n))
}

/// `true` this many times per million (no decision is taken for a rate of 0).
pub(crate) fn chance(ppm: u32) -> bool {
    ppm > 0 && roll() % 1_000_000 < u64::from(ppm)
}

/// A random number in `1..=max` (`max` >= 1).
pub(crate) fn up_to(max: usize) -> usize {
    1 + (roll() % max.max(1) as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_parse_in_decimal_and_hex_and_nothing_else() {
        assert_eq!(parse_seed("42"), Some(42));
        assert_eq!(parse_seed("0x2a"), Some(42));
        assert_eq!(parse_seed("forty-two"), None);
        assert_eq!(parse_seed(""), None);
    }

    #[test]
    fn chaos_turns_every_behaviour_on_and_default_none() {
        let chaos = Adversary::chaos(7);
        assert!(chaos.any());
        assert!(chaos.processors >= 4 && chaos.random_shapes && chaos.concurrent_callbacks);
        assert!(!Adversary { seed: 9, ..Adversary::default() }.any());
    }

    #[test]
    fn up_to_stays_in_range() {
        for max in [1, 2, 17] {
            for _ in 0..200 {
                assert!((1..=max).contains(&up_to(max)));
            }
        }
    }
}
