//! The client: connections playing request/response ping-pong against a server, one cell at
//! a time, with the figures of the measured window; the median of [`REPEATS`] runs per cell.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use super::placement::{Placement, Probe, Snapshot, Usage};
use super::report::{ServerRun, micros, size_label};
use super::servers::Started;
use super::{MEASURE, STREAM_BYTES, STREAM_REPEATS, STREAM_WRITE, TAG, WARMUP, WORKLOADS, Workload, workloads};
use crate::echo_client;
use crate::util::{Context, Result, bail};

/// A read or write that takes longer fails the cell (a stalled server).
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Thread name prefix of the client's connections.
const CLIENT_THREAD: &str = "bench-client";

/// What one cell measured.
#[derive(Debug, Clone)]
pub struct Measurement {
    /// Round trips completed in the window, all connections.
    pub round_trips: u64,
    /// Round trips completed by the connection that completed the fewest.
    pub fewest: u64,
    /// Connections that completed no round trip in the window.
    pub starved: usize,
    pub window: Duration,
    pub p50: Duration,
    pub p99: Duration,
    /// The longest round trip (the one in flight at the window's end included).
    pub max: Duration,
    pub server: Option<Usage>,
    /// CPU time and context switches of the client's threads in the window.
    pub client: Option<Usage>,
    /// Busy time of the server's CPUs in the window (with a [`Placement`]): its threads,
    /// and the network stack's interrupt and softirq work on those CPUs.
    pub server_cores: Option<Duration>,
    /// Busy time of the client's CPUs in the window (with a [`Placement`]).
    pub client_cores: Option<Duration>,
    /// Round trips per second of every repetition of the cell, this one included, in
    /// repetition order (to pair with another server's: `paired`).
    pub rates: Vec<f64>,
}

impl Measurement {
    pub fn round_trips_per_sec(&self) -> f64 {
        self.round_trips as f64 / self.window.as_secs_f64()
    }

    /// Echoed payload in 10^6 bytes per second.
    pub fn mb_per_sec(&self, size: usize) -> f64 {
        self.round_trips_per_sec() * size as f64 / 1e6
    }

    /// Fairness: the slowest connection's round trips over the mean (1 = every connection got
    /// the same service; 0 = a connection completed none in the window).
    pub fn fairness(&self, connections: usize) -> f64 {
        self.fewest as f64 * connections as f64 / self.round_trips as f64
    }

    /// Server CPU time in the window: its CPUs' busy time with a [`Placement`], else its
    /// threads' CPU time.
    pub fn server_cpu(&self) -> Option<Duration> {
        self.server_cores.or(self.server.map(|u| u.cpu))
    }

    /// Client CPU time in the window, as [`Measurement::server_cpu`].
    pub fn client_cpu(&self) -> Option<Duration> {
        self.client_cores.or(self.client.map(|u| u.cpu))
    }

    /// Server CPU time per round trip.
    pub fn cpu_per_round_trip(&self) -> Option<Duration> {
        let cpu = self.server_cpu()?;
        (self.round_trips > 0).then(|| cpu / u32::try_from(self.round_trips).unwrap_or(u32::MAX))
    }

    /// The server's CPU use over the window, in percent of one CPU.
    pub fn server_cpu_percent(&self) -> Option<f64> {
        Some(self.server_cpu()?.as_secs_f64() / self.window.as_secs_f64() * 100.0)
    }

    /// The client's CPU use over the window, in percent of one CPU.
    pub fn client_cpu_percent(&self) -> Option<f64> {
        Some(self.client_cpu()?.as_secs_f64() / self.window.as_secs_f64() * 100.0)
    }

    /// Server context switches per round trip.
    pub fn switches_per_round_trip(&self) -> Option<f64> {
        let usage = self.server?;
        (self.round_trips > 0).then(|| usage.switches as f64 / self.round_trips as f64)
    }
}

/// Measures every workload on every started server, interleaved: each repetition of a cell
/// runs once on each server in turn before the next, so that a change of the machine's load
/// falls on every server alike, and each repetition starts one server further on, so that no
/// server always goes first (right after another server's connections closed); the median
/// of the repetitions (`super::repeats`) per server and cell. Then the streaming client ([`STREAM_REPEATS`] runs
/// per server), interleaved the same way.
pub(super) fn measure_interleaved(started: &mut [Started], placement: Option<&Placement>, repeats: usize) {
    for workload in workloads().unwrap_or_else(|_| WORKLOADS.to_vec()) {
        let mut runs: Vec<std::result::Result<Vec<Measurement>, String>> =
            started.iter().map(|_| Ok(Vec::new())).collect();
        for repeat in 0..repeats {
            for at in rotated(started.len(), repeat) {
                let (server, runs) = (&started[at], &mut runs[at]);
                let (Some(addr), Ok(done)) = (server.addr, runs.as_mut()) else { continue };
                match measure(addr, workload, &server.probe, placement, WARMUP, MEASURE) {
                    Ok(m) => done.push(m),
                    Err(e) => *runs = Err(e),
                }
            }
        }
        for (server, runs) in started.iter_mut().zip(runs) {
            if server.addr.is_none() {
                continue;
            }
            let cell = runs.map(median_of);
            report_cell(&mut server.run, workload, &cell);
            server.run.cells.push((workload, cell));
        }
    }
    if std::env::var_os(super::CONNECTIONS_ENV).is_some() {
        return;
    }
    let mut streams: Vec<std::result::Result<Vec<StreamRun>, String>> =
        started.iter().map(|_| Ok(Vec::new())).collect();
    for repeat in 0..STREAM_REPEATS {
        for at in rotated(started.len(), repeat) {
            let (server, runs) = (&started[at], &mut streams[at]);
            let (Some(addr), Ok(done)) = (server.addr, runs.as_mut()) else { continue };
            match stream_once(addr, &server.probe) {
                Ok(run) => done.push(run),
                Err(e) => *runs = Err(e.to_string()),
            }
        }
    }
    for (server, runs) in started.iter_mut().zip(streams) {
        if server.addr.is_none() {
            continue;
        }
        let stream = runs.map(|mut runs| {
            let rates = runs.iter().map(|(d, _)| STREAM_BYTES as f64 / d.as_secs_f64() / 1e6).collect();
            runs.sort_by_key(|&(elapsed, _)| elapsed);
            let (elapsed, server_cpu) = runs[STREAM_REPEATS / 2];
            StreamMeasurement { elapsed, server_cpu, rates }
        });
        let label = server.run.server.short();
        match &stream {
            Ok(s) => println!(
                "{TAG}: {label} stream {} MiB in {} KiB writes: {:.0} MB/s (runs in order: {})",
                STREAM_BYTES >> 20,
                STREAM_WRITE >> 10,
                s.mb_per_sec(),
                s.rates.iter().map(|r| format!("{r:.0}")).collect::<Vec<_>>().join(", ")
            ),
            Err(e) => {
                println!("{TAG}: {label} stream: FAILED: {e}");
                server.run.failures.push(format!("stream: {e}"));
            }
        }
        server.run.stream = Some(stream);
    }
}

/// The indices `0..servers`, starting at `repeat`'s turn: `repeat % servers`, then on, round.
fn rotated(servers: usize, repeat: usize) -> impl Iterator<Item = usize> {
    (0..servers).map(move |i| (i + repeat) % servers)
}

/// The run with the median throughput, with every run's rate in the order of `runs`
/// (repetition order).
fn median_of(mut runs: Vec<Measurement>) -> Measurement {
    let rates = runs.iter().map(Measurement::round_trips_per_sec).collect();
    runs.sort_by_key(|m| m.round_trips);
    let mut median = runs.swap_remove(runs.len() / 2);
    median.rates = rates;
    median
}

/// Prints a cell's figures (or failure) and records a failure.
fn report_cell(run: &mut ServerRun, workload: Workload, cell: &std::result::Result<Measurement, String>) {
    let server = run.server;
    match cell {
        Ok(m) => println!(
            "{TAG}: {} {} x {}: {:.0} round trips/s (runs in order: {}), {:.1} MB/s, p50 {} us, p99 {} us, max {:.1} ms, slowest connection {:.2} of the mean, {} with none",
            server.short(),
            workload.connections,
            size_label(workload.size),
            m.round_trips_per_sec(),
            m.rates.iter().map(|r| format!("{r:.0}")).collect::<Vec<_>>().join(", "),
            m.mb_per_sec(workload.size),
            micros(m.p50),
            micros(m.p99),
            m.max.as_secs_f64() * 1e3,
            m.fairness(workload.connections),
            m.starved
        ),
        Err(e) => {
            println!("{TAG}: {} {} x {}: FAILED: {e}", server.short(), workload.connections, size_label(workload.size));
            run.failures.push(format!("{} x {}: {e}", workload.connections, size_label(workload.size)));
        }
    }
}

/// One run of the streaming client: its time and the server's threads' CPU time meanwhile.
type StreamRun = (Duration, Option<Duration>);

/// What the streaming client measured: the median of [`STREAM_REPEATS`] runs.
#[derive(Debug, Clone)]
pub struct StreamMeasurement {
    /// From the first write to the last byte of the echo read.
    pub elapsed: Duration,
    /// CPU time of the server's threads in that run.
    pub server_cpu: Option<Duration>,
    /// MB/s of every run, in repetition order (to pair with another server's: `paired`).
    pub rates: Vec<f64>,
}

impl StreamMeasurement {
    /// Echoed payload in 10^6 bytes per second.
    pub fn mb_per_sec(&self) -> f64 {
        STREAM_BYTES as f64 / self.elapsed.as_secs_f64() / 1e6
    }
}

/// The byte at `offset` of each write (every write sends the same bytes).
fn stream_byte(offset: usize) -> u8 {
    (offset % 251) as u8
}

/// One connection: a thread writes [`STREAM_BYTES`] in [`STREAM_WRITE`] writes and shuts down,
/// this thread reads the echo until the server's end of stream, checking the first byte of
/// every read against its offset in the write it came from. Returns the time and the CPU time
/// of the server's threads (`probe`) meanwhile.
fn stream_once(addr: SocketAddr, probe: &Probe) -> Result<StreamRun> {
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut reader = stream.try_clone()?;
    let chunk: Vec<u8> = (0..STREAM_WRITE).map(stream_byte).collect();
    let before = probe.sample();
    let start = Instant::now();
    let writer = thread::Builder::new().name(format!("{CLIENT_THREAD}-stream")).spawn(move || -> Result<()> {
        let mut stream = stream;
        for _ in 0..STREAM_BYTES / STREAM_WRITE {
            stream.write_all(&chunk).context(|| "stream write".to_owned())?;
        }
        stream.shutdown(std::net::Shutdown::Write)?;
        Ok(())
    })?;
    let mut buf = vec![0u8; STREAM_WRITE];
    let mut got = 0;
    loop {
        let n = reader.read(&mut buf).context(|| format!("stream read after {got} bytes"))?;
        if n == 0 {
            break;
        }
        if buf[0] != stream_byte(got % STREAM_WRITE) {
            bail!("the echo differs from the stream at byte {got}");
        }
        got += n;
    }
    let elapsed = start.elapsed();
    let server_cpu = before.zip(probe.sample()).map(|(before, after)| after.since(before).cpu);
    match writer.join() {
        Ok(written) => written?,
        Err(_) => bail!("the stream's writer panicked"),
    }
    if got != STREAM_BYTES {
        bail!("{got} bytes came back of {STREAM_BYTES}");
    }
    Ok((elapsed, server_cpu))
}

/// Holds the client threads after their last round trip until the window's last sample is
/// taken: a thread's CPU time leaves `/proc` with it.
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    opened: Condvar,
}

impl Gate {
    fn wait(&self) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        while !*open {
            open = self.opened.wait(open).unwrap_or_else(PoisonError::into_inner);
        }
    }

    fn open(&self) {
        *self.open.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.opened.notify_all();
    }
}

/// Opens its gate when dropped.
struct OpenOnDrop(Arc<Gate>);

impl Drop for OpenOnDrop {
    fn drop(&mut self) {
        self.0.open();
    }
}

/// One cell: connect, ping-pong through `warmup` and the measured `window`, collect.
fn measure(
    addr: SocketAddr,
    workload: Workload,
    probe: &Probe,
    placement: Option<&Placement>,
    warmup: Duration,
    window: Duration,
) -> std::result::Result<Measurement, String> {
    let mut streams = Vec::with_capacity(workload.connections);
    for i in 0..workload.connections {
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT).map_err(|e| format!("connection {i}: {e}"))?;
        let setup = || -> std::io::Result<()> {
            stream.set_nodelay(true)?;
            stream.set_read_timeout(Some(IO_TIMEOUT))?;
            stream.set_write_timeout(Some(IO_TIMEOUT))
        };
        setup().map_err(|e| format!("connection {i}: {e}"))?;
        streams.push(stream);
    }
    let warm_end = Instant::now() + warmup;
    let end = warm_end + window;
    let sampled = Arc::new(Gate::default());
    // However this function returns, the client threads are let go.
    let _release = OpenOnDrop(Arc::clone(&sampled));
    let mut clients = Vec::with_capacity(streams.len());
    for (i, stream) in streams.into_iter().enumerate() {
        let sampled = Arc::clone(&sampled);
        let client = thread::Builder::new()
            .name(format!("{CLIENT_THREAD}-{i}"))
            .spawn(move || {
                let run = ping_pong(stream, workload.size, i as u64, warm_end, end);
                sampled.wait();
                run
            })
            .map_err(|e| format!("client thread: {e}"))?;
        clients.push(client);
    }
    let client_probe = Probe::Threads { pid: std::process::id(), prefix: CLIENT_THREAD };
    sleep_until(warm_end);
    let before = Snapshot::take(probe, &client_probe, placement);
    sleep_until(end);
    let after = Snapshot::take(probe, &client_probe, placement);
    sampled.open();
    let mut latencies = Vec::new();
    let mut per_connection = Vec::with_capacity(workload.connections);
    let mut failures = Vec::new();
    for (i, client) in clients.into_iter().enumerate() {
        match client.join() {
            Ok(Ok(mut run)) => {
                latencies.append(&mut run.latencies);
                per_connection.push(run.completed);
            }
            Ok(Err(e)) => failures.push(format!("connection {i}: {e}")),
            Err(_) => failures.push(format!("connection {i}: client thread panicked")),
        }
    }
    if !failures.is_empty() {
        let shown: Vec<_> = failures.iter().take(3).cloned().collect();
        return Err(format!("{} of {} connections failed: {}", failures.len(), workload.connections, shown.join("; ")));
    }
    let round_trips: u64 = per_connection.iter().sum();
    if round_trips == 0 {
        return Err("no round trip completed in the measured window".to_owned());
    }
    let fewest = per_connection.iter().copied().min().unwrap_or(0);
    let starved = per_connection.iter().filter(|&&n| n == 0).count();
    latencies.sort_unstable();
    let delta = |before: Option<Usage>, after: Option<Usage>| Some(after?.since(before?));
    let server = delta(before.server_threads, after.server_threads);
    let client = delta(before.client_threads, after.client_threads);
    let busy = |before: Option<Duration>, after: Option<Duration>| Some(after?.saturating_sub(before?));
    let server_cores = busy(before.server_cores, after.server_cores);
    let client_cores = busy(before.client_cores, after.client_cores);
    Ok(Measurement {
        round_trips,
        fewest,
        starved,
        window,
        p50: Duration::from_nanos(percentile(&latencies, 50.0)),
        p99: Duration::from_nanos(percentile(&latencies, 99.0)),
        max: Duration::from_nanos(latencies.last().copied().unwrap_or(0)),
        server,
        client,
        server_cores,
        client_cores,
        rates: Vec::new(),
    })
}

/// Nearest-rank percentile of sorted samples.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn sleep_until(deadline: Instant) {
    let now = Instant::now();
    if deadline > now {
        thread::sleep(deadline - now);
    }
}

/// What one connection did in the measured window.
struct ConnectionRun {
    /// Round trips completed in `[warm_end, end)`.
    completed: u64,
    /// Their latencies (ns), and that of the round trip in flight at `end`.
    latencies: Vec<u64>,
}

/// One connection's ping-pong until its first round trip that completes at or after `end`.
///
/// Latencies are those of the round trips completed in `[warm_end, end)` plus the one in flight
/// at `end`: a connection the server neglects through the whole window still contributes its
/// (long) wait, instead of silently contributing nothing.
fn ping_pong(mut stream: TcpStream, size: usize, seed: u64, warm_end: Instant, end: Instant) -> Result<ConnectionRun> {
    let mut message = vec![0u8; size];
    echo_client::Rng::new(seed.wrapping_add(0xbe4c_0001)).fill(&mut message);
    let mut echo = vec![0u8; size];
    let mut latencies = Vec::with_capacity(4096);
    let mut completed = 0;
    let tag = size.min(8);
    for sequence in 0u64.. {
        message[..tag].copy_from_slice(&sequence.to_le_bytes()[..tag]);
        let sent = Instant::now();
        stream.write_all(&message).context(|| format!("write of round trip {sequence}"))?;
        stream.read_exact(&mut echo).context(|| format!("read of round trip {sequence}"))?;
        let done = Instant::now();
        // The whole message is compared once; later only the sequence number and last byte.
        let intact = if sequence == 0 {
            echo == message
        } else {
            echo[..tag] == message[..tag] && echo[size - 1] == message[size - 1]
        };
        if !intact {
            bail!("round trip {sequence}: the echo differs from the message");
        }
        let latency = u64::try_from((done - sent).as_nanos()).unwrap_or(u64::MAX);
        if done >= end {
            latencies.push(latency);
            break;
        }
        if done >= warm_end {
            latencies.push(latency);
            completed += 1;
        }
    }
    Ok(ConnectionRun { completed, latencies })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::echo_bench::placement::cores_busy;
    use crate::echo_bench::servers::{TOKIO_THREAD, localhost, tokio_accept_loop};

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&samples, 50.0), 50);
        assert_eq!(percentile(&samples, 99.0), 99);
        assert_eq!(percentile(&[7], 99.0), 7);
        assert_eq!(percentile(&[], 50.0), 0);
    }

    /// Each repetition starts one server further on, and every server is visited once.
    #[test]
    fn repetitions_rotate_the_first_server() {
        assert_eq!(rotated(4, 0).collect::<Vec<_>>(), [0, 1, 2, 3]);
        assert_eq!(rotated(4, 1).collect::<Vec<_>>(), [1, 2, 3, 0]);
        assert_eq!(rotated(4, 6).collect::<Vec<_>>(), [2, 3, 0, 1]);
        assert_eq!(rotated(0, 3).count(), 0);
    }

    /// The client against the tokio server, briefly: every connection completes round trips
    /// and the probe finds the runtime's threads.
    #[test]
    fn client_measures_the_tokio_server() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(TOKIO_THREAD)
            .enable_io()
            .build()
            .unwrap();
        let listener = runtime.block_on(tokio::net::TcpListener::bind(localhost(0))).unwrap();
        let addr = listener.local_addr().unwrap();
        runtime.spawn(tokio_accept_loop(listener));
        let probe = Probe::Threads { pid: std::process::id(), prefix: TOKIO_THREAD };
        let workload = Workload { connections: 2, size: 1000 };
        // CPU figures per core need two CPUs.
        let placement = cores_busy(&[0, 1]).and_then(|_| Placement::split("0-1"));
        let window = Duration::from_millis(300);
        let m = measure(addr, workload, &probe, placement.as_ref(), Duration::from_millis(50), window).unwrap();
        assert!(m.round_trips > 0);
        assert!(m.p50 <= m.p99);
        assert!(m.server.is_some());
        assert!(m.client.is_some());
        assert_eq!(m.server_cores.is_some(), placement.is_some());
        assert_eq!(m.client_cores.is_some(), placement.is_some());
        runtime.shutdown_timeout(Duration::from_secs(1));
    }
}
