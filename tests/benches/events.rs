//! Receive throughput: event callbacks (`WskReceiveEvent`, retained indications released
//! without copying) against IRP-based receive (`WskReceive` into a 64 KiB buffer), on the
//! emulator's WSK provider in one run (`cargo bench -p wsk-tests --bench events`, also run
//! by `cargo xtask bench`).
//!
//! A host thread connects over loopback and writes `MIB` MiB as fast as it can, then shuts
//! down; the driver accepts with an IRP and drains the connection either way until the end
//! of the stream. Timed from the accept to the end in the driver. Modes alternate round by
//! round so that machine noise hits both alike; the table gives medians and the ratio.
//! The verifier is off (as in a benchmark build): indications come from recycled blocks.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpStream as HostStream};
use std::time::{Duration, Instant};

use futures_lite::StreamExt;
use wsk::events::{ConnectionEvent, EventConfig};
use wsk::{IoBuf, TcpListener};
use wsk_emulator::{Kernel, counters};
use wsk_tests::harness::run_with;

const MIB: usize = 256;
const ROUNDS: usize = 7;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Irp,
    Events,
}

struct Sample {
    mode: Mode,
    seconds: f64,
    allocations: u64,
    zero_copy_share: f64,
}

fn host_writer(addr: SocketAddr) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut s = HostStream::connect(addr).expect("connect");
        let chunk = vec![0xa5u8; 256 * 1024];
        for _ in 0..(MIB * 1024 * 1024 / chunk.len()) {
            s.write_all(&chunk).expect("write");
        }
        s.shutdown(std::net::Shutdown::Write).expect("shutdown");
        // Wait for the driver to close its side.
        let mut sink = [0u8; 16];
        let _ = std::io::Read::read(&mut s, &mut sink);
    })
}

fn main() {
    let kernel = Kernel::builder().verifier(false).capture_sites(false);
    let (samples, report) = run_with(kernel, Duration::from_secs(600), |env| async move {
        let mut l = TcpListener::bind(env.wsk, SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await.unwrap();
        let addr = l.query_local_addr().await.unwrap();
        let mut samples = Vec::new();
        for round in 0..ROUNDS * 2 {
            let mode = if round % 2 == 0 { Mode::Irp } else { Mode::Events };
            let host = host_writer(addr);
            let (stream, _) = l.accept().await.unwrap();
            let start = Instant::now();
            let before = counters().allocations();
            let (mut total, mut zero_copy) = (0usize, 0usize);
            match mode {
                Mode::Irp => {
                    let mut stream = stream;
                    let mut buf = IoBuf::with_capacity(64 * 1024).unwrap();
                    loop {
                        let (n, back) = stream.recv(buf).await;
                        buf = back;
                        match n.unwrap() {
                            0 => break,
                            n => total += n,
                        }
                    }
                    stream.close().await.unwrap();
                }
                Mode::Events => {
                    let (mut events, writer) = stream.into_events(EventConfig::default()).unwrap();
                    while let Some(event) = events.next().await {
                        if let ConnectionEvent::Data(data) = event.unwrap() {
                            total += data.len();
                            if data.is_zero_copy() {
                                zero_copy += data.len();
                            }
                        }
                    }
                    drop(events);
                    writer.close().await.unwrap();
                }
            }
            let seconds = start.elapsed().as_secs_f64();
            let allocations = counters().allocations() - before;
            host.join().unwrap();
            assert_eq!(total, MIB * 1024 * 1024, "{mode:?}: bytes received");
            let zero_copy_share = zero_copy as f64 / total as f64;
            samples.push(Sample { mode, seconds, allocations, zero_copy_share });
            eprintln!(
                "round {:>2}/{}: {:<6} {:>8.1} MB/s",
                round + 1,
                ROUNDS * 2,
                format!("{mode:?}"),
                (MIB * 1024 * 1024) as f64 / seconds / 1e6
            );
        }
        l.close().await.unwrap();
        samples
    });
    report.assert_clean();
    let median = |mode: Mode| {
        let mut v: Vec<f64> = samples.iter().filter(|s| s.mode == mode).map(|s| s.seconds).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let per_mib = |mode: Mode| {
        let s: Vec<&Sample> = samples.iter().filter(|s| s.mode == mode).collect();
        s.iter().map(|s| s.allocations as f64).sum::<f64>() / s.len() as f64 / MIB as f64
    };
    let share = |mode: Mode| {
        let s: Vec<&Sample> = samples.iter().filter(|s| s.mode == mode).collect();
        s.iter().map(|s| s.zero_copy_share).sum::<f64>() / s.len() as f64
    };
    let bytes = (MIB * 1024 * 1024) as f64;
    let (irp, events) = (median(Mode::Irp), median(Mode::Events));
    println!();
    println!("Receive throughput, {MIB} MiB per connection, {ROUNDS} rounds each (medians)");
    println!();
    println!("| receive path | MB/s | pool/IRP/MDL allocations per MiB | bytes delivered zero-copy |");
    println!("|---|---:|---:|---:|");
    println!("| IRP: `WskReceive` into a 64 KiB buffer | {:.0} | {:.2} | - |", bytes / irp / 1e6, per_mib(Mode::Irp));
    println!(
        "| events: `WskReceiveEvent`, retained and released | {:.0} | {:.2} | {:.1}% |",
        bytes / events / 1e6,
        per_mib(Mode::Events),
        share(Mode::Events) * 100.0
    );
    println!();
    println!("events / IRP (throughput, higher is better): {:.2}", irp / events);
}
