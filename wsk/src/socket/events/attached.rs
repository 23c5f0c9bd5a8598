//! What every kind's event plumbing shares: the callbacks' entry (the core's view and its
//! state) and exit (the last one out cleans up after a detached stream), and the stream's
//! side of the detach protocol ([`Attached`]); see the module docs of `socket::events`.

use core::mem::ManuallyDrop;
use core::ptr::NonNull;

use super::{
    CallbackExit, Detach, EventBox, EventState, Header, callback_exit, detach_on_drop, early_note, early_take, install,
    stream_detach,
};
use crate::error::Result;
use crate::socket::kind::SocketKind;
use crate::socket::shared::{CoreRef, SocketCore};

/// Runs an event callback of kind `K`: `f` gets the view of the core behind `context` and its
/// installed state. `None` (and `f` does not run) without a context or a state.
///
/// # Safety
/// As [`SocketCore::with_context`]: `context` is the context WSK passes to a callback of
/// `K`'s client dispatch table.
///
/// IRQL <= DISPATCH_LEVEL.
pub(crate) unsafe fn with_state<K: SocketKind, R>(
    context: *mut core::ffi::c_void,
    f: impl FnOnce(&CoreRef<'_, K>, &K::State) -> R,
) -> Option<R> {
    // SAFETY: forwarded contract.
    unsafe { SocketCore::<K>::with_context(context, |core| core.events().map(|state| f(&core, state))) }.flatten()
}

/// As [`with_state`], for an event the stream must learn even when it happened before the
/// stream installed its state: without a state, hands `early` over through the core's early
/// word ([`early_note`]), or, if a stream installed its state meanwhile, runs `f` after all.
/// The event reaches the stream exactly once: through `f` or through [`early_take`].
///
/// # Safety
/// As [`with_state`].
///
/// IRQL <= DISPATCH_LEVEL.
pub(crate) unsafe fn with_state_or_note<K: SocketKind, R>(
    context: *mut core::ffi::c_void,
    early: u32,
    f: impl Fn(&CoreRef<'_, K>, &K::State) -> R,
) -> Option<R> {
    // SAFETY: forwarded contract.
    unsafe {
        SocketCore::<K>::with_context(context, |core| {
            if let Some(state) = core.events() {
                return Some(f(&core, state));
            }
            if !early_note(core.early(), early) {
                return None;
            }
            core.events().map(|state| f(&core, state))
        })
    }
    .flatten()
}

/// Takes the events callbacks handed over before the state was installed on `core` (see
/// [`with_state_or_note`]); once, by the stream, right after the install. Any IRQL.
pub(crate) fn take_early<K: SocketKind>(core: &SocketCore<K>) -> u32 {
    early_take(core.early())
}

/// A callback leaves: when it is the last one out after its stream detached, it runs
/// `clean` (the stream's clean-up, given the core) and drops the owner reference a dropped
/// stream left to it. Returns what `clean` returned (`R::default()` when not cleaning).
pub(crate) fn leave_callback<K: SocketKind, R: Default>(
    core: &CoreRef<'_, K>,
    header: &Header,
    clean: impl FnOnce(&SocketCore<K>) -> R,
) -> R {
    let CallbackExit::Clean { owner_gone } = callback_exit(&header.flags) else { return R::default() };
    let cleaned = clean(core);
    if owner_gone {
        // SAFETY: the dropped stream left its owner reference to the cleaner, which we are
        // (exactly once, by the detach protocol).
        drop(unsafe { core.adopt_owner() });
    }
    cleaned
}

/// An event stream's hold on its socket: an owner reference on the core (which a callback
/// inside takes over when the stream is dropped) and the installed state, attached until
/// [`Attached::detach`] or drop.
///
/// # Invariants
/// `state` is the state installed on the core; `core` is dropped only by `Drop`, and not
/// when a callback took it over.
pub(crate) struct Attached<K: SocketKind> {
    core: ManuallyDrop<SocketCore<K>>,
    state: NonNull<K::State>,
    /// Detached: the stream has ended.
    done: bool,
}

// SAFETY: the state is shared with callbacks through atomics and the ring protocol; the
// stream is used by one task at a time.
unsafe impl<K: SocketKind> Send for Attached<K> {}

impl<K: SocketKind> Attached<K> {
    /// Installs `state` on `core`, takes the stream's call and enables the events of `mask`
    /// (see [`install`]); the stream holds a new owner reference.
    pub(crate) fn install(core: &SocketCore<K>, state: EventBox<K::State>, mask: u32) -> Result<Self> {
        let state = install(core, state, mask)?;
        // INVARIANT: the state just installed on the core.
        Ok(Self { core: ManuallyDrop::new(core.clone_owner()), state, done: false })
    }

    /// The core. Any IRQL.
    pub(crate) fn core(&self) -> &SocketCore<K> {
        &self.core
    }

    /// The installed state. Any IRQL.
    pub(crate) fn state(&self) -> &K::State {
        // SAFETY: the state lives as long as the core, on which the stream holds a reference.
        unsafe { self.state.as_ref() }
    }

    /// The installed state's address (for items that hold their own core reference).
    pub(crate) fn state_ptr(&self) -> NonNull<K::State> {
        self.state
    }

    /// Whether the stream detached (has ended). Any IRQL.
    pub(crate) fn is_done(&self) -> bool {
        self.done
    }

    /// Ends the stream: detaches from the state; cleans up now when no callback is inside,
    /// else the last one out does (see the module docs). Once.
    pub(crate) fn detach(&mut self) {
        if self.done {
            return;
        }
        self.done = true;
        if stream_detach(&self.state().header().flags, false) == Detach::CleanNow {
            self.state().clean(&self.core);
        }
    }
}

impl<K: SocketKind> Drop for Attached<K> {
    fn drop(&mut self) {
        let done = core::mem::replace(&mut self.done, true);
        if detach_on_drop(&self.state().header().flags, done, || self.state().clean(&self.core)) {
            // SAFETY: dropped once, here; no callback took the reference over.
            unsafe { ManuallyDrop::drop(&mut self.core) };
        }
    }
}
