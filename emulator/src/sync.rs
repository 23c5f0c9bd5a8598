//! Lock helpers: the emulator never gives up on a poisoned lock (a panicking test must not
//! wedge every later test in the process), never sleeps on a lock at DISPATCH_LEVEL, and
//! reports a condition variable wait entered at DISPATCH_LEVEL.

use std::panic::Location;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::{Duration, Instant};

use wsk_sys::DISPATCH_LEVEL;

use crate::irql::{self, current_irql};

/// How many times [`lock`] spins at DISPATCH_LEVEL before it starts yielding the CPU.
const SPINS_BEFORE_YIELD: u32 = 64;

/// Locks `mutex`, ignoring poison.
///
/// Below DISPATCH_LEVEL it blocks as `Mutex::lock` does. At DISPATCH_LEVEL or above it spins
/// as a spin lock does, so that the thread never sleeps: `try_lock` in a loop with
/// `spin_loop` hints, then yielding the CPU between attempts (a yield is an involuntary
/// switch, which the blocking detector does not count, and lets a preempted holder run).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    if current_irql() < DISPATCH_LEVEL {
        return mutex.lock().unwrap_or_else(PoisonError::into_inner);
    }
    spin_lock(mutex)
}

fn spin_lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    let mut spins = 0u32;
    loop {
        match mutex.try_lock() {
            Ok(guard) => return guard,
            Err(TryLockError::Poisoned(poison)) => return poison.into_inner(),
            Err(TryLockError::WouldBlock) => {}
        }
        if spins < SPINS_BEFORE_YIELD {
            spins += 1;
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
}

/// Waits on `condvar` until notified (or spuriously woken), ignoring poison.
///
/// A wait at DISPATCH_LEVEL or above is a violation ([`Rule::BlockedAtDispatch`], naming the
/// caller); it is reported, then waits as asked.
///
/// [`Rule::BlockedAtDispatch`]: crate::Rule::BlockedAtDispatch
#[track_caller]
pub(crate) fn wait<'a, T>(condvar: &Condvar, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
    check_wait(Location::caller());
    condvar.wait(guard).unwrap_or_else(PoisonError::into_inner)
}

/// Waits on `condvar` for at most `timeout`, ignoring poison. Reported at DISPATCH_LEVEL as
/// [`wait`] is.
#[track_caller]
pub(crate) fn wait_for<'a, T>(condvar: &Condvar, guard: MutexGuard<'a, T>, timeout: Duration) -> MutexGuard<'a, T> {
    check_wait(Location::caller());
    match condvar.wait_timeout(guard, timeout) {
        Ok((guard, _)) => guard,
        Err(poison) => poison.into_inner().0,
    }
}

/// Waits on `condvar` until `deadline` (or forever if `None`), ignoring poison. Returns the
/// guard; the caller re-checks its condition. Reported at DISPATCH_LEVEL as [`wait`] is.
#[track_caller]
pub(crate) fn wait_until<'a, T>(
    condvar: &Condvar,
    guard: MutexGuard<'a, T>,
    deadline: Option<Instant>,
) -> MutexGuard<'a, T> {
    match deadline {
        None => wait(condvar, guard),
        Some(deadline) => {
            let timeout = deadline.saturating_duration_since(Instant::now());
            wait_for(condvar, guard, timeout)
        }
    }
}

#[inline]
fn check_wait(location: &Location<'_>) {
    if current_irql() >= DISPATCH_LEVEL {
        irql::report_wait(location);
    }
}

/// Waits, without sleeping, until `done(&mut guard)` holds: drops the lock, spins and yields
/// as [`lock`] does at DISPATCH_LEVEL, and locks again before each check. For the few waits
/// the emulator makes on a caller's behalf that the caller may make at DISPATCH_LEVEL.
pub(crate) fn spin_until<'a, T>(
    mutex: &'a Mutex<T>,
    mut guard: MutexGuard<'a, T>,
    mut done: impl FnMut(&mut T) -> bool,
) -> MutexGuard<'a, T> {
    let mut spins = 0u32;
    while !done(&mut guard) {
        drop(guard);
        if spins < SPINS_BEFORE_YIELD {
            spins += 1;
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
        guard = lock(mutex);
    }
    guard
}

#[cfg(test)]
mod tests {
    use std::mem::MaybeUninit;
    use std::sync::{Arc, Barrier, Condvar, Mutex};
    use std::time::Duration;

    use wsk_sys::DISPATCH_LEVEL;

    use super::{lock, wait_for};
    use crate::verifier::{Rule, recorded_bugchecks};

    fn voluntary_switches() -> i64 {
        let mut usage = MaybeUninit::<libc::rusage>::uninit();
        // SAFETY: `getrusage` writes a whole `rusage` through the pointer.
        assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_THREAD, usage.as_mut_ptr()) }, 0);
        // SAFETY: initialized by the successful call.
        unsafe { usage.assume_init() }.ru_nvcsw
    }

    #[test]
    fn lock_at_dispatch_spins_instead_of_sleeping() {
        let mutex = Arc::new(Mutex::new(0u32));
        let held = Arc::new(Barrier::new(2));
        let holder = {
            let (mutex, held) = (mutex.clone(), held.clone());
            std::thread::spawn(move || {
                let mut guard = mutex.lock().unwrap();
                held.wait();
                std::thread::sleep(Duration::from_millis(50));
                *guard += 1;
            })
        };
        held.wait();
        let dispatch = crate::irql::enter_irql(DISPATCH_LEVEL);
        let before = voluntary_switches();
        let value = {
            let mut guard = lock(&mutex);
            *guard += 1;
            *guard
        };
        let slept = voluntary_switches() - before;
        drop(dispatch);
        holder.join().unwrap();
        assert_eq!(value, 2, "the lock was taken after the holder let it go");
        assert_eq!(slept, 0, "the thread slept on the lock at DISPATCH_LEVEL");
    }

    #[test]
    fn a_condvar_wait_at_dispatch_is_reported_when_entered() {
        let mutex = Mutex::new(());
        let condvar = Condvar::new();
        // 1 ms: too short for the after-the-fact detector, so only the wait's own check can
        // report it.
        let line = line!() + 2;
        crate::irql::with_irql(DISPATCH_LEVEL, || {
            drop(wait_for(&condvar, lock(&mutex), Duration::from_millis(1)));
        });
        let location = format!("{}:{line}:", file!());
        let reports: Vec<_> = recorded_bugchecks()
            .into_iter()
            .filter(|b| b.rule == Rule::BlockedAtDispatch && b.message.contains(&location))
            .collect();
        assert_eq!(reports.len(), 1, "expected one report naming {location}: {reports:?}");
        assert!(reports[0].message.contains("an emulator wait"), "{reports:?}");
    }
}
