//! The library's and executor's own cost per operation and per byte: the sockets library on
//! the emulator's in-memory connections (addresses of `198.18.0.0/15`: no host socket, no
//! provider thread; the provider copies each byte once into the peer's pipe and once out of
//! it) against tokio's current-thread runtime over `tokio::io::duplex` doing the same work,
//! in one run (`cargo bench -p wsk-tests --bench cost`, also `WSK_BENCH=cost cargo xtask
//! bench`).
//!
//! Workloads, each between a client task and a server task of the same runtime:
//! * **echo**: the client sends a message of S bytes, the server echoes it, the client reads
//!   it whole; M times. One operation = one round trip.
//! * **stream**: the client writes B bytes in 1 MiB writes while it reads the echo; the
//!   server echoes. Per byte = per byte echoed.
//!
//! The wsk server runs either path: IRP receives into one 64 KiB `IoBuf` and `send_all`, or
//! receive events with each item sent back as WSK indicated it (`send_received`), the items
//! already there gathered into one `send_chain` as the echo driver does. The client
//! always uses IRPs. The tokio server reads into a 64 KiB buffer and `write_all`s it; its
//! duplex has 256 KiB per direction, as the in-memory pipe has.
//!
//! `WSK_COST_WORKLOAD=echo64|echo1k|echo64k|stream` runs one workload only (for a profiler).
//!
//! Measured: wall time and the process's CPU time (every thread: with the emulator, its
//! worker threads run the executor's work items) per operation or per byte, medians over
//! rounds that alternate the runtimes so machine noise hits them alike. The verifier is off.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use futures_lite::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wsk::events::{ConnectionEvent, EventConfig};
use wsk::{IoBuf, TcpListener, TcpStream};
use wsk_emulator::{Kernel, counters};
use wsk_tests::harness::{Env, run_with};

const ROUNDS: usize = 5;
const STREAM_BYTES: usize = 128 << 20;
const WRITE: usize = 1 << 20;
const DUPLEX: usize = 256 * 1024;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Workload {
    Echo { size: usize, count: usize },
    Stream,
}

impl Workload {
    /// The short name `WSK_COST_WORKLOAD` selects it by.
    fn key(self) -> &'static str {
        match self {
            Workload::Echo { size: 64, .. } => "echo64",
            Workload::Echo { size: 1024, .. } => "echo1k",
            Workload::Echo { .. } => "echo64k",
            Workload::Stream => "stream",
        }
    }

    fn name(self) -> String {
        match self {
            Workload::Echo { size, count } => format!("echo {count} x {size} B"),
            Workload::Stream => format!("stream {} MiB, {} KiB writes", STREAM_BYTES >> 20, WRITE >> 10),
        }
    }

    /// Operations (round trips) or bytes echoed.
    fn units(self) -> usize {
        match self {
            Workload::Echo { count, .. } => count,
            Workload::Stream => STREAM_BYTES,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Runtime {
    WskIrp,
    WskEvents,
    Tokio,
}

impl Runtime {
    const ALL: [Runtime; 3] = [Runtime::WskIrp, Runtime::WskEvents, Runtime::Tokio];

    fn name(self) -> &'static str {
        match self {
            Runtime::WskIrp => "wsk, IRP path (in-memory provider)",
            Runtime::WskEvents => "wsk, event path + send from indication (in-memory provider)",
            Runtime::Tokio => "tokio current_thread, io::duplex",
        }
    }
}

#[derive(Clone, Copy, Default)]
struct Sample {
    wall: f64,
    cpu: f64,
    allocations: u64,
}

/// CPU time of the whole process, in seconds.
fn process_cpu() -> f64 {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid clock id and a timespec to write, live for the call.
    let result = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &raw mut now) };
    assert_eq!(result, 0, "clock_gettime");
    now.tv_sec as f64 + now.tv_nsec as f64 * 1e-9
}

fn memory_address(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::new(198, 18, 0, 1), port))
}

// ---------------------------------------------------------------------------------------
// wsk on the in-memory provider

async fn wsk_serve_irp(mut stream: TcpStream) {
    let mut buf = IoBuf::with_capacity(64 * 1024).unwrap();
    loop {
        let (got, back) = stream.recv(buf).await;
        buf = back;
        if got.unwrap() == 0 {
            break;
        }
        let (sent, back) = stream.send_all(buf).await;
        sent.unwrap();
        buf = back;
    }
    stream.shutdown().await.unwrap();
    stream.close().await.unwrap();
}

async fn wsk_serve_events(stream: TcpStream) {
    let (mut events, mut writer) = stream.into_events(EventConfig::default()).unwrap();
    while let Some(event) = events.next().await {
        if let ConnectionEvent::Data(data) = event.unwrap() {
            match events.try_next_data() {
                None => writer.send_received(data).await.unwrap(),
                Some(more) => {
                    // From the library's cache, and back to it when dropped.
                    let mut ch = wsk::SendChain::new().unwrap();
                    ch.push_received(data).unwrap();
                    let mut next = Some(more);
                    while let Some(item) = next.take() {
                        ch.push_received(item).unwrap();
                        if !ch.is_full() {
                            next = events.try_next_data();
                        }
                    }
                    writer.send_chain(ch).await.0.unwrap();
                }
            }
        }
    }
    writer.shutdown().await.unwrap();
    drop(events);
    writer.close().await.unwrap();
}

async fn wsk_client(stream: TcpStream, workload: Workload) {
    let (mut reader, mut writer) = stream.into_split();
    match workload {
        Workload::Echo { size, count } => {
            let mut out = IoBuf::copy_from(&vec![0x5a; size]).unwrap();
            let mut back = IoBuf::with_capacity(size).unwrap();
            for _ in 0..count {
                let (sent, returned) = writer.send_all(out).await;
                sent.unwrap();
                out = returned;
                let mut got = 0;
                while got < size {
                    let (n, returned) = reader.recv(back).await;
                    back = returned;
                    let n = n.unwrap();
                    assert!(n > 0, "the echo ended early");
                    got += n;
                }
            }
        }
        Workload::Stream => {
            let send = async {
                let mut out = IoBuf::copy_from(&vec![0xa5; WRITE]).unwrap();
                for _ in 0..STREAM_BYTES / WRITE {
                    let (sent, returned) = writer.send_all(out).await;
                    sent.unwrap();
                    out = returned;
                }
            };
            let receive = async {
                let mut back = IoBuf::with_capacity(WRITE).unwrap();
                let mut got = 0;
                while got < STREAM_BYTES {
                    let (n, returned) = reader.recv(back).await;
                    back = returned;
                    let n = n.unwrap();
                    assert!(n > 0, "the echo ended early");
                    got += n;
                }
            };
            futures_lite::future::zip(send, receive).await;
        }
    }
    writer.shutdown().await.unwrap();
    let (end, _) = reader.recv(IoBuf::with_capacity(16).unwrap()).await;
    assert_eq!(end.unwrap(), 0);
    drop(reader);
    writer.close().await.unwrap();
}

async fn wsk_round(env: &Env, listener: &mut TcpListener, port: u16, runtime: Runtime, workload: Workload) -> Sample {
    let start = Instant::now();
    let cpu = process_cpu();
    let allocations = counters().allocations();
    let client = TcpStream::connect(env.wsk, memory_address(port)).await.unwrap();
    let (server, _) = listener.accept().await.unwrap();
    let server = match runtime {
        Runtime::WskIrp => env.spawner.spawn(wsk_serve_irp(server)).unwrap(),
        _ => env.spawner.spawn(wsk_serve_events(server)).unwrap(),
    };
    env.spawner.spawn(wsk_client(client, workload)).unwrap().await.expect("client task");
    server.await.expect("server task");
    Sample {
        wall: start.elapsed().as_secs_f64(),
        cpu: process_cpu() - cpu,
        allocations: counters().allocations() - allocations,
    }
}

// ---------------------------------------------------------------------------------------
// tokio over an in-memory duplex

async fn tokio_serve(mut stream: tokio::io::DuplexStream) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = stream.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        stream.write_all(&buf[..n]).await.unwrap();
    }
    stream.shutdown().await.unwrap();
}

async fn tokio_client(stream: tokio::io::DuplexStream, workload: Workload) {
    let (mut reader, mut writer) = tokio::io::split(stream);
    match workload {
        Workload::Echo { size, count } => {
            let out = vec![0x5a; size];
            let mut back = vec![0u8; size];
            for _ in 0..count {
                writer.write_all(&out).await.unwrap();
                reader.read_exact(&mut back).await.unwrap();
            }
        }
        Workload::Stream => {
            let send = async {
                let out = vec![0xa5; WRITE];
                for _ in 0..STREAM_BYTES / WRITE {
                    writer.write_all(&out).await.unwrap();
                }
            };
            let receive = async {
                let mut back = vec![0u8; WRITE];
                let mut got = 0;
                while got < STREAM_BYTES {
                    let n = reader.read(&mut back).await.unwrap();
                    assert!(n > 0, "the echo ended early");
                    got += n;
                }
            };
            futures_lite::future::zip(send, receive).await;
        }
    }
    writer.shutdown().await.unwrap();
    let mut end = [0u8; 16];
    assert_eq!(reader.read(&mut end).await.unwrap(), 0);
}

fn tokio_round(runtime: &tokio::runtime::Runtime, workload: Workload) -> Sample {
    let start = Instant::now();
    let cpu = process_cpu();
    runtime.block_on(async {
        let (client, server) = tokio::io::duplex(DUPLEX);
        let server = tokio::spawn(tokio_serve(server));
        tokio::spawn(tokio_client(client, workload)).await.unwrap();
        server.await.unwrap();
    });
    Sample { wall: start.elapsed().as_secs_f64(), cpu: process_cpu() - cpu, allocations: 0 }
}

// ---------------------------------------------------------------------------------------

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let only = std::env::var("WSK_COST_WORKLOAD").unwrap_or_default();
    let workloads: Vec<Workload> = [
        Workload::Echo { size: 64, count: 100_000 },
        Workload::Echo { size: 1024, count: 100_000 },
        Workload::Echo { size: 64 * 1024, count: 10_000 },
        Workload::Stream,
    ]
    .into_iter()
    .filter(|workload| only.is_empty() || workload.key() == only)
    .collect();
    assert!(!workloads.is_empty(), "WSK_COST_WORKLOAD={only}: expected echo64, echo1k, echo64k or stream");
    let driver_workloads = workloads.clone();
    let tokio = tokio::runtime::Builder::new_current_thread().build().unwrap();
    // samples[workload][runtime]
    let mut samples: Vec<Vec<Vec<Sample>>> = vec![vec![Vec::new(); Runtime::ALL.len()]; workloads.len()];
    let kernel = Kernel::builder().verifier(false).capture_sites(false);
    // The emulator's rounds run in one driver session; tokio's between them, from this
    // thread, as the session's task hands over each round.
    let (to_driver, driver_rounds) = std::sync::mpsc::channel::<Option<(usize, Runtime)>>();
    let (to_main, done_rounds) = std::sync::mpsc::channel::<Sample>();
    let driver = std::thread::spawn(move || {
        let ((), report) = run_with(kernel, Duration::from_secs(3600), move |env| async move {
            let mut listener = TcpListener::bind(env.wsk, memory_address(9000)).await.unwrap();
            // Blocking on the channel would block the executor's work item; poll it instead.
            loop {
                let next = loop {
                    match driver_rounds.try_recv() {
                        Ok(next) => break next,
                        Err(std::sync::mpsc::TryRecvError::Empty) => {
                            wsk_executor::sleep(Duration::from_millis(1)).await;
                        }
                        Err(std::sync::mpsc::TryRecvError::Disconnected) => break None,
                    }
                };
                let Some((workload, runtime)) = next else { break };
                let sample = wsk_round(&env, &mut listener, 9000, runtime, driver_workloads[workload]).await;
                to_main.send(sample).unwrap();
            }
            listener.close().await.unwrap();
        });
        report.assert_clean();
    });
    for round in 0..ROUNDS {
        for (w, &workload) in workloads.iter().enumerate() {
            for (r, &runtime) in Runtime::ALL.iter().enumerate() {
                let sample = match runtime {
                    Runtime::Tokio => tokio_round(&tokio, workload),
                    _ => {
                        to_driver.send(Some((w, runtime))).unwrap();
                        done_rounds.recv().unwrap()
                    }
                };
                eprintln!(
                    "round {}/{ROUNDS} {:<32} {:<60} wall {:>8.1} ms, cpu {:>8.1} ms",
                    round + 1,
                    workload.name(),
                    runtime.name(),
                    sample.wall * 1e3,
                    sample.cpu * 1e3
                );
                samples[w][r].push(sample);
            }
        }
    }
    to_driver.send(None).unwrap();
    driver.join().unwrap();

    println!();
    println!("Library + executor cost against tokio, in-memory peers, medians of {ROUNDS} rounds");
    println!();
    println!(
        "| workload | runtime | wall ns per op | CPU ns per op | wall ns per byte | MB/s | allocations per op | CPU vs tokio | wall vs tokio |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|");
    for (w, &workload) in workloads.iter().enumerate() {
        let units = workload.units() as f64;
        let tokio_wall = median(samples[w][2].iter().map(|s| s.wall).collect());
        let tokio_cpu = median(samples[w][2].iter().map(|s| s.cpu).collect());
        for (r, &runtime) in Runtime::ALL.iter().enumerate() {
            let wall = median(samples[w][r].iter().map(|s| s.wall).collect());
            let cpu = median(samples[w][r].iter().map(|s| s.cpu).collect());
            let allocations = median(samples[w][r].iter().map(|s| s.allocations as f64).collect());
            let (per_op, cpu_per_op, per_byte, rate) = match workload {
                Workload::Echo { size, .. } => (
                    format!("{:.0}", wall / units * 1e9),
                    format!("{:.0}", cpu / units * 1e9),
                    format!("{:.2}", wall / units / size as f64 * 1e9),
                    units * size as f64 / wall / 1e6,
                ),
                Workload::Stream => {
                    ("-".to_owned(), "-".to_owned(), format!("{:.3}", wall / units * 1e9), units / wall / 1e6)
                }
            };
            let allocations = match runtime {
                Runtime::Tokio => "-".to_owned(),
                _ => format!("{:.4}", allocations / units),
            };
            println!(
                "| {} | {} | {per_op} | {cpu_per_op} | {per_byte} | {rate:.0} | {allocations} | {:.2} | {:.2} |",
                workload.name(),
                runtime.name(),
                cpu / tokio_cpu,
                wall / tokio_wall
            );
        }
    }
    println!();
    println!(
        "CPU (wall) vs tokio: the runtime's CPU (wall) time over tokio's for the same workload; lower is better. \
         For the stream, allocations per op are per byte."
    );
}
