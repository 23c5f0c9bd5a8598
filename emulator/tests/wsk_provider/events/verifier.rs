//! The verifier's indication rules, each provoked by a deliberately broken client, and the
//! same operations done right staying silent (with the verifier off too).

use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::ptr;
use std::sync::atomic::Ordering;

use wsk_emulator::{Kernel, Rule};
use wsk_sys::*;

use super::probe::*;
use crate::support::*;

/// One retained data chain of `bytes` bytes on a fresh connection.
fn one_retained(client: &Client, bytes: usize) -> (Sock, Sock, &'static Probe, std::net::TcpStream) {
    let probe = Probe::leaked();
    let (listener, socket, mut peer) = connection(client, probe);
    probe.set_mode(RETAIN);
    assert_eq!(set_events(socket, WSK_EVENT_RECEIVE), STATUS_SUCCESS);
    peer.write_all(&pattern(bytes, 7)).unwrap();
    eventually("a retained chain", || !probe.held.lock().unwrap().is_empty());
    (listener, socket, probe, peer)
}

#[test]
fn releasing_an_indication_twice_is_reported() {
    let report = broken_session(|client| {
        let (listener, socket, probe, _peer) = one_retained(client, 100);
        let head = probe.held.lock().unwrap()[0];
        assert_eq!(release_data(socket, head), STATUS_SUCCESS);
        // BUG: released again.
        assert_eq!(release_data(socket, head), STATUS_INVALID_PARAMETER);
        socket.close();
        listener.close();
    });
    report.assert_first(Rule::WskIndicationReleasedTwice);
    assert!(report.to_string().contains("released already"), "{report}");
}

#[test]
fn releasing_something_never_indicated_is_reported() {
    let report = broken_session(|client| {
        let probe = Probe::leaked();
        let socket = socket_with(client, WSK_FLAG_DATAGRAM_SOCKET, probe.context(), table(&DATAGRAM_EVENTS));
        assert_eq!(socket.bind(v4(0)), STATUS_SUCCESS);
        // BUG: a home-made indication the provider never gave.
        let mut fake = WSK_DATAGRAM_INDICATION {
            Next: ptr::null_mut(),
            Buffer: WSK_BUF { Mdl: ptr::null_mut(), Offset: 0, Length: 0 },
            ControlInfo: ptr::null_mut(),
            ControlInfoLength: 0,
            RemoteAddress: ptr::null_mut(),
        };
        assert_eq!(release_datagrams(socket, (&raw mut fake) as usize), STATUS_INVALID_PARAMETER);
        socket.close();
    });
    report.assert_first(Rule::WskIndicationReleasedTwice);
    assert!(report.to_string().contains("never indicated"), "{report}");
}

#[test]
fn an_indication_held_at_close_is_reported_and_reclaimed() {
    let report = broken_session(|client| {
        let (listener, socket, probe, _peer) = one_retained(client, 1000);
        eventually("all 1000 bytes indicated", || {
            probe.chains.lock().unwrap().iter().map(|&(_, bytes)| bytes).sum::<usize>() == 1000
        });
        let chains = probe.held.lock().unwrap().len();
        // BUG: closed while still holding the indication.
        socket.close();
        listener.close();
        let text = format!("{chains} indication chain(s)");
        let report = wsk_emulator::recorded_bugchecks();
        assert!(report.iter().any(|b| b.message.contains(&text) && b.message.contains("1000 bytes")), "{report:?}");
    });
    report.assert_first(Rule::WskIndicationHeldAtClose);
}

#[test]
fn retaining_and_releasing_in_order_is_silent_with_the_verifier_off_too() {
    for verifier in [true, false] {
        let client = Client::with(Kernel::builder().verifier(verifier));
        {
            let (listener, socket, probe, mut peer) = one_retained(&client, 50_000);
            peer.write_all(b"tail").unwrap();
            eventually("every byte indicated", || {
                probe.chains.lock().unwrap().iter().map(|&(_, bytes)| bytes).sum::<usize>() == 50_004
            });
            let held = std::mem::take(&mut *probe.held.lock().unwrap());
            let mut seen = Vec::new();
            for &head in &held {
                seen.extend(unsafe { data_chain(head as *mut WSK_DATA_INDICATION) }.concat());
            }
            let mut sent = pattern(50_000, 7);
            sent.extend_from_slice(b"tail");
            assert_eq!(seen, sent);
            for head in held {
                assert_eq!(release_data(socket, head), STATUS_SUCCESS);
            }
            // Refused data on recycled memory too.
            probe.set_mode(REFUSE);
            let calls = probe.receive_calls.load(Ordering::SeqCst);
            peer.write_all(b"kept").unwrap();
            eventually("the refusal", || probe.receive_calls.load(Ordering::SeqCst) == calls + 1);
            assert_eq!(socket.receive_exact(4), b"kept");
            socket.close();
            listener.close();
        }
        let report = client.finish();
        report.assert_clean();
    }
}

/// Environment variable selecting a scenario run in a child process.
const SCENARIO: &str = "WSK_EMU_INDICATION_SCENARIO";

/// Runs a scenario that must stop the process (in the child).
fn run_scenario(scenario: &str) {
    let client = Client::new();
    let (_listener, socket, probe, _peer) = one_retained(&client, 20_000);
    let head = probe.held.lock().unwrap()[0] as *mut WSK_DATA_INDICATION;
    let data = unsafe { MmGetSystemAddressForMdlSafe((*head).Buffer.Mdl, NormalPagePriority) }.cast::<u8>();
    assert_eq!(release_data(socket, head as usize), STATUS_SUCCESS);
    match scenario {
        // BUG: reads the data after WskRelease.
        "data" => {
            let byte = unsafe { ptr::read_volatile(data) };
            eprintln!("read {byte} after release");
        }
        // BUG: reads the indication structure after WskRelease.
        "structure" => {
            let length = unsafe { ptr::read_volatile(&raw const (*head).Buffer.Length) };
            eprintln!("read a length of {length} after release");
        }
        other => panic!("unknown scenario {other}"),
    }
}

#[test]
fn touching_a_released_indication_stops_the_machine() {
    if let Ok(scenario) = std::env::var(SCENARIO) {
        run_scenario(&scenario);
        panic!("scenario {scenario} did not stop the process");
    }
    for scenario in ["data", "structure"] {
        let output = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "events::verifier::touching_a_released_indication_stops_the_machine", "--nocapture"])
            .args(["--test-threads", "1"])
            .env(SCENARIO, scenario)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "scenario {scenario}: the child survived:\n{stderr}");
        assert_eq!(output.status.signal(), Some(libc::SIGABRT), "scenario {scenario}:\n{stderr}");
        assert!(
            stderr.contains("*** wsk-emulator: WSK_INDICATION_TOUCHED_AFTER_RELEASE")
                && stderr.contains("after WskRelease released it"),
            "scenario {scenario}:\n{stderr}"
        );
    }
}
