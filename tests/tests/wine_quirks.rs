//! The library on the emulated kernel with Wine's quirks on (`wsk_emulator::quirks`): defects
//! that only Wine showed, reproduced here so that their fixes stay proven.
//!
//! * `KeCancelTimer` answers TRUE for a timer that already expired and ran its DPC. A timeout
//!   whose timer fired and which is then dropped must release the timer's memory exactly once
//!   (it released it twice, a write after free, before the executor's timer read the flag its
//!   DPC sets).
//!
//! The quirks are process-wide, so these tests live in a test binary of their own.

use std::future::pending;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Once};
use std::time::Duration;

use wsk_emulator::quirks::{self, Quirks};
use wsk_executor::{sleep, timeout};
use wsk_tests::{Watchdog, load, plain_driver_entry, unload_clean, wait_until, with_executor};

fn wine_kernel() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| quirks::set(Quirks::wine()));
}

/// Timeouts that fire and are then dropped (the DPC ran, then `KeCancelTimer` says TRUE), and
/// sleeps cancelled before they expire (TRUE with the DPC never run), many times: every
/// timer's memory is freed once, no timer is left, the verifier sees no write after free.
#[test]
fn expired_timer_cancelled_under_wine_is_released_once() {
    wine_kernel();
    let _watchdog = Watchdog::test("expired_timer_cancelled_under_wine_is_released_once");
    let driver = load("wine-timer-cancel", plain_driver_entry);
    const ROUNDS: u64 = 200;
    let expired = Arc::new(AtomicU64::new(0));
    let cancelled_early = Arc::new(AtomicU64::new(0));
    let (e, c) = (expired.clone(), cancelled_early.clone());
    let task = with_executor(|executor| {
        executor.spawn(async move {
            for round in 0..ROUNDS {
                // Fires: the DPC runs and releases its reference; the drop then cancels.
                if timeout(Duration::from_micros(200), pending::<()>()).await.is_err() {
                    e.fetch_add(1, Ordering::SeqCst);
                }
                // Cancelled before expiry: the inner hour-long sleep is dropped when the
                // short timeout around it fires.
                if round % 4 == 0
                    && timeout(Duration::from_micros(100), sleep(Duration::from_secs(3600))).await.is_err()
                {
                    c.fetch_add(1, Ordering::SeqCst);
                }
            }
        })
    })
    .expect("spawn");
    wait_until("the rounds to finish", Duration::from_secs(60), || task.is_finished());
    drop(task);
    assert_eq!(expired.load(Ordering::SeqCst), ROUNDS, "every pending() timeout expires");
    assert_eq!(cancelled_early.load(Ordering::SeqCst), ROUNDS / 4);
    wait_until("every timer released", Duration::from_secs(60), || wsk_executor::kernel::live_timers() == 0);
    let (report, _) = unload_clean(driver);
    assert!(report.counters.timers_fired >= ROUNDS, "the timeouts fired KTIMERs: {}", report.counters);
}

/// The quirk itself: a timer that expired is reported as cancelled (TRUE), as Wine's
/// `KeCancelTimer` reports it; cancelling it again says FALSE.
#[test]
fn quirk_reports_an_expired_timer_as_cancelled() {
    wine_kernel();
    let _watchdog = Watchdog::test("quirk_reports_an_expired_timer_as_cancelled");
    let driver = wsk_tests::builder().attach("wine-timer-answer");
    let timer = Box::into_raw(Box::new(zeroed_timer()));
    // SAFETY: `timer` is a live, writable KTIMER until it is freed below, after the cancel.
    unsafe { wsk_sys::KeInitializeTimerEx(timer, wsk_sys::NotificationTimer) };
    // SAFETY: as above; 1 ms relative, no DPC.
    unsafe { wsk_sys::KeSetTimerEx(timer, -10_000, 0, std::ptr::null_mut()) };
    // SAFETY: as above.
    wait_until("the timer to expire", Duration::from_secs(60), || unsafe { wsk_sys::KeReadStateTimer(timer) } != 0);
    // SAFETY: as above.
    assert_ne!(unsafe { wsk_sys::KeCancelTimer(timer) }, 0, "Wine answers TRUE for an expired timer");
    // SAFETY: as above.
    assert_eq!(unsafe { wsk_sys::KeCancelTimer(timer) }, 0, "and FALSE once it was cancelled");
    // SAFETY: allocated by `Box::into_raw` above; no longer set.
    drop(unsafe { Box::from_raw(timer) });
    let report = driver.unload();
    report.assert_clean();
}

fn zeroed_timer() -> wsk_sys::KTIMER {
    // SAFETY: all-zero is a valid KTIMER image; it is initialized with `KeInitializeTimerEx`.
    unsafe { std::mem::zeroed() }
}

/// Under Wine a dropped receive is not cancelled (its IRP has no cancel routine): it stays
/// pending and takes the next bytes that arrive. Those bytes must reach the next `recv` in
/// order; before receives kept such data, the stream silently lost them (the stress driver's
/// cancellation scenario counted them as data errors under Wine).
#[test]
fn data_taken_by_a_dropped_receive_reaches_the_next_receive() {
    wine_kernel();
    wsk_tests::harness::run_clean(Duration::from_secs(60), |env| async move {
        let mut l = wsk::TcpListener::bind(env.wsk, "127.0.0.1:0".parse().unwrap()).await.expect("bind");
        let addr = l.query_local_addr().await.expect("local address");
        let mut c = wsk::TcpStream::connect(env.wsk, addr).await.expect("connect");
        let (mut server, _) = l.accept().await.expect("accept");
        let r = timeout(Duration::from_millis(5), c.recv(wsk::IoBuf::with_capacity(16).unwrap())).await;
        assert!(r.is_err(), "nothing was sent: the receive times out and is dropped");
        let payload: Vec<u8> = (0..64u8).collect();
        let (sent, _) = server.send_all(wsk::IoBuf::copy_from(&payload).unwrap()).await;
        sent.expect("send");
        let mut got = Vec::new();
        let mut buf = wsk::IoBuf::with_capacity(1024).unwrap();
        while got.len() < payload.len() {
            let (n, back) = timeout(Duration::from_secs(10), c.recv(buf)).await.expect("receive in time");
            buf = back;
            assert!(n.expect("recv") > 0, "unexpected end of stream");
            got.extend_from_slice(buf.as_slice());
        }
        assert_eq!(got, payload, "every byte, in order");
        c.close().await.expect("close");
        server.close().await.expect("server close");
        l.close().await.expect("listener close");
    });
}
