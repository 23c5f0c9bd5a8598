//! The echo benchmark (second half of `cargo xtask bench`): one client, six echo servers, in
//! one run.
//!
//! * (a) the echo driver (`echo_driver::driver`) on the host emulator: `echo-driver --quiet`;
//! * (a') a second, identical `echo-driver`: (a) over (a') is what the machine's noise alone
//!   does to a ratio of two equal servers in this run, the yardstick for the other ratios;
//! * (b) the same driver as `echo.sys` under Wine ([`WinePrefix`](crate::wine::WinePrefix)); skipped without Wine;
//! * (c) a tokio echo server in this process (multi_thread runtime, one worker thread per
//!   server CPU);
//! * (d) the blocking baseline (`echo_driver::blocking`: a thread per connection, one KEVENT
//!   wait per WSK call) on the host emulator: `echo-driver --blocking --quiet`;
//! * (e) the echo driver receiving with IRPs instead of event callbacks: `echo-driver
//!   --irp-receive --quiet`.
//!
//! The client opens N connections (1 and 64), each on its own thread with `TCP_NODELAY`, and
//! plays request/response ping-pong with a fixed message size (1 KiB and 64 KiB): write the
//! message, read the whole echo, check its sequence number and last byte (the whole message
//! once), repeat. After a warm-up of [`WARMUP`], every round trip that completes in the next
//! [`MEASURE`] counts toward the throughput (MB/s = 10^6 bytes of echoed payload per second,
//! each byte counted once) and the latency percentiles; so does, for the latencies only, the
//! round trip each connection has in flight when the window ends, so that a connection the
//! server neglects shows up. The table also gives the longest round trip and the slowest
//! connection's round trips over the mean (fairness). Each cell runs [`REPEATS`] times
//! ([`REPEATS_ENV`] to change it) with fresh connections and the table shows the run with the
//! median throughput. Every server is
//! started first and the repetitions are interleaved (one run of a cell on each server in turn,
//! then the next, each repetition starting one server further on), so that a change of the
//! machine's load falls on every server alike and no server always goes first. The servers keep
//! their default socket options (Nagle on), as the drivers do.
//!
//! Then a streaming client ([`STREAM_BYTES`] through one connection in [`STREAM_WRITE`]
//! writes, a second thread reading the echo; [`STREAM_REPEATS`] runs, the median shown) and the
//! ratios the zero-copy work aims at: the event path (a) and the IRP path (e) against tokio
//! (c), and (a) against (e), for every workload, beside (a) against its twin (a'). The same
//! ratios are then taken per repetition ([`paired`]): their geometric mean with a 95%
//! confidence interval, which says whether this run tells the two servers apart at all.
//!
//! With two CPUs or more (and `taskset`), the client's threads run on the first CPU and the
//! server under test on the others ([`Placement`]): sharing cores, the client's 64 threads and
//! the server's threads disturb each other's scheduling and the figures become noisy.
//!
//! Alongside, `/proc` is sampled at the start and end of the window (in clock ticks of 10 ms):
//! the busy time of the server's and the client's CPUs (with a [`Placement`]: everything that
//! ran there, the loopback network stack's softirq work included; without one, the CPU time of
//! their threads), and the context switches of the server's threads per round trip. The
//! server's threads are the whole `echo-driver` process for (a) and (d), every process of the
//! Wine session (`winedevice.exe`, `wineserver`, ...) for (b), the runtime's worker threads
//! for (c).

mod client;
mod paired;
mod placement;
mod report;
mod servers;

use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

pub use client::{Measurement, percentile};
pub use paired::{PairedRatio, paired_ratio};
pub use placement::{Placement, Usage};
pub use report::{ServerRun, paired, ratios, stream_table, table};
pub use servers::{SERVERS_ENV, Server};

use crate::util::{self, Result, bail};
use crate::{drivers, wine};
use placement::pin;
use report::machine_line;
use servers::Setup;

const TAG: &str = "echo-bench";

/// One client workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Workload {
    pub connections: usize,
    pub size: usize,
}

/// The client workloads, in table order.
pub const WORKLOADS: [Workload; 4] = [
    Workload { connections: 1, size: 1024 },
    Workload { connections: 64, size: 1024 },
    Workload { connections: 1, size: 64 * 1024 },
    Workload { connections: 64, size: 64 * 1024 },
];

/// Set to a comma-separated list of workloads to run only those (no stream): a connection
/// count for 1 KiB messages (for example `8,32,63,64` to find where a server stops serving
/// every connection), or `COUNTxSIZE` with the message size in bytes or `K` KiB (`64x64K`:
/// the 64 x 64 KiB cell alone, to repeat it many times).
pub const CONNECTIONS_ENV: &str = "WSK_BENCH_CONNECTIONS";

/// The workloads of this run: [`WORKLOADS`], or the ones [`CONNECTIONS_ENV`] asks for.
pub fn workloads() -> Result<Vec<Workload>> {
    let Ok(list) = std::env::var(CONNECTIONS_ENV) else { return Ok(WORKLOADS.to_vec()) };
    list.split(',')
        .map(|item| match parse_workload(item.trim()) {
            Some(workload) => Ok(workload),
            None => bail!("{CONNECTIONS_ENV}: `{item}` is neither a connection count nor COUNTxSIZE"),
        })
        .collect()
}

/// `N` (N connections of 1 KiB messages) or `NxSIZE` (`SIZE` in bytes, or KiB with `K`).
fn parse_workload(item: &str) -> Option<Workload> {
    let (count, size) = match item.split_once(['x', 'X']) {
        None => (item, 1024),
        Some((count, size)) => {
            let bytes = match size.strip_suffix(['K', 'k']) {
                Some(kib) => kib.parse::<usize>().ok()?.checked_mul(1024)?,
                None => size.parse::<usize>().ok()?,
            };
            (count, bytes)
        }
    };
    let connections = count.parse::<usize>().ok()?;
    (connections > 0 && size > 0).then_some(Workload { connections, size })
}

/// Round trips before this are not counted.
pub const WARMUP: Duration = Duration::from_millis(500);
/// The measured window.
pub const MEASURE: Duration = Duration::from_millis(1500);
/// Runs per cell (fresh connections each time) unless [`REPEATS_ENV`] says otherwise; the
/// table shows the median by throughput.
pub const REPEATS: usize = 3;
/// Set to a number of runs per cell (1 to 100) instead of [`REPEATS`]: more runs narrow the
/// paired ratios' confidence intervals (`paired`).
pub const REPEATS_ENV: &str = "WSK_BENCH_REPEATS";

/// The runs per cell of this benchmark: [`REPEATS`], or what [`REPEATS_ENV`] asks for.
pub fn repeats() -> Result<usize> {
    let Ok(text) = std::env::var(REPEATS_ENV) else { return Ok(REPEATS) };
    match text.trim().parse::<usize>() {
        Ok(n @ 1..=100) => Ok(n),
        _ => bail!("{REPEATS_ENV}: `{text}` is not a number of runs from 1 to 100"),
    }
}
/// Runs of the streaming client per server, interleaved; the table shows the median. A run
/// takes a tenth of a second or less at loopback speeds, where the connection's start (its
/// windows growing, first touches of memory) and the machine's load swing single runs by up
/// to 1.8x: nine runs cost about a second per server and steady the median.
pub const STREAM_REPEATS: usize = 9;
/// Bytes the streaming client sends through one connection (and reads back).
pub const STREAM_BYTES: usize = 128 << 20;
/// The streaming client's write size.
pub const STREAM_WRITE: usize = 1 << 20;

/// Runs the whole echo benchmark and prints its table. Fails (after printing) if a server
/// that should have run failed.
pub fn run() -> Result<()> {
    let start = Instant::now();
    println!("{TAG}: {}", machine_line());
    let repeats = repeats()?;
    println!(
        "{TAG}: {} workloads per server, {} runs each of {} ms warm-up + {} ms measured",
        workloads()?.len(),
        repeats,
        WARMUP.as_millis(),
        MEASURE.as_millis()
    );
    // Builds first, on every CPU.
    let mut build = Command::new("cargo");
    build.current_dir(util::workspace_root()).args(["build", "--release", "-p", "echo-driver"]);
    util::run_inherit(&mut build)?;
    let binary = util::target_dir().join("release").join("echo-driver");
    // A benchmark without Wine leaves out the Wine server and says why in its row (the test
    // steps, not the benchmark, require Wine).
    let sys = match wine::missing_tools() {
        Some(reason) => Err(reason),
        None => Ok(drivers::build(&drivers::ECHO)?),
    };
    let placement = Placement::detect();
    let tokio_workers = match &placement {
        Some(p) => p.server_cpus,
        None => thread::available_parallelism().map_or(1, std::num::NonZero::get),
    };
    match &placement {
        Some(p) => {
            println!("{TAG}: client threads on CPU {}, servers on CPU {}", p.client, p.server);
            pin(std::process::id(), &p.client, true)?;
        }
        None => println!("{TAG}: client and servers share every CPU (fewer than 2 CPUs, or no taskset)"),
    }
    let verifier = servers::verifier_wanted()?;
    println!(
        "{TAG}: emulator servers run with the verifier {} ({})",
        if verifier { "on" } else { "off" },
        servers::VERIFIER_ENV
    );
    let setup = Setup { binary, sys, placement, tokio_workers, verifier };

    // Every server is started first, then measured interleaved (see `client::measure_interleaved`).
    let mut runs = Vec::new();
    let mut started = Vec::new();
    for server in Server::selected(std::env::var(SERVERS_ENV).ok().as_deref())? {
        println!("{TAG}: starting {} ...", server.label(setup.tokio_workers));
        match servers::start(&setup, server) {
            Ok(up) => started.push(up),
            Err(e) => {
                let mut failed = ServerRun::new(server, &setup);
                failed.failures.push(e.to_string());
                runs.push(failed);
            }
        }
    }
    client::measure_interleaved(&mut started, setup.placement.as_ref(), repeats);
    for up in started {
        let server = up.run.server;
        runs.push(up.stop().unwrap_or_else(|e| {
            let mut failed = ServerRun::new(server, &setup);
            failed.failures.push(e.to_string());
            failed
        }));
    }
    runs.sort_by_key(|r| Server::ALL.iter().position(|&s| s == r.server));

    println!();
    match &setup.placement {
        Some(p) => println!("client on CPU {}, server on CPU {}", p.client, p.server),
        None => println!("client and server share every CPU"),
    }
    println!();
    println!("{}", table(&runs));
    println!("{}", stream_table(&runs));
    println!("{}", ratios(&runs));
    println!("{}", paired(&runs));
    for run in &runs {
        for note in run.notes.iter().chain(&run.failures) {
            println!("{} {note}", run.server.short());
        }
    }
    println!("{TAG}: done in {} s", util::secs(start.elapsed()));
    let failures: Vec<String> =
        runs.iter().flat_map(|r| r.failures.iter().map(move |f| format!("{}: {f}", r.label))).collect();
    if !failures.is_empty() {
        bail!("{TAG}: {} failure(s):\n  {}", failures.len(), failures.join("\n  "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workloads_are_counts_or_count_by_size() {
        let w = |c, s| Some(Workload { connections: c, size: s });
        assert_eq!(parse_workload("64"), w(64, 1024));
        assert_eq!(parse_workload("64x64K"), w(64, 65536));
        assert_eq!(parse_workload("1x512"), w(1, 512));
        assert_eq!(parse_workload("0x1K"), None);
        assert_eq!(parse_workload("8x"), None);
        assert_eq!(parse_workload("many"), None);
    }
}
