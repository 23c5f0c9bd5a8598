//! The echo benchmark (second half of `cargo xtask bench`): one client, four echo servers, in
//! one run.
//!
//! * (a) the echo driver (`echo_driver::driver`) on the host emulator: `echo-driver --quiet`;
//! * (b) the same driver as `echo.sys` under Wine ([`WinePrefix`]); skipped without Wine;
//! * (c) a tokio echo server in this process (multi_thread runtime, one worker thread per
//!   server CPU);
//! * (d) the blocking baseline (`echo_driver::blocking`: a thread per connection, one KEVENT
//!   wait per WSK call) on the host emulator: `echo-driver --blocking --quiet`.
//!
//! The client opens N connections (1 and 64), each on its own thread with `TCP_NODELAY`, and
//! plays request/response ping-pong with a fixed message size (1 KiB and 64 KiB): write the
//! message, read the whole echo, check its sequence number and last byte (the whole message
//! once), repeat. After a warm-up of [`WARMUP`], every round trip that completes in the next
//! [`MEASURE`] counts toward the throughput (MB/s = 10^6 bytes of echoed payload per second,
//! each byte counted once) and the latency percentiles; so does, for the latencies only, the
//! round trip each connection has in flight when the window ends, so that a connection the
//! server neglects shows up. The table also gives the longest round trip and the slowest
//! connection's round trips over the mean (fairness). Each cell runs [`REPEATS`] times with
//! fresh connections and the table shows the run with the median throughput. The servers keep
//! their default socket options (Nagle on), as the drivers do.
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

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use crate::util::{self, Context, Result, bail};
use crate::wine::{self, WinePrefix};
use crate::{drivers, echo_client};

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

/// Set to a comma-separated list of connection counts to run only 1 KiB workloads with those
/// counts (for example `8,32,63,64` to find where a server stops serving every connection).
pub const CONNECTIONS_ENV: &str = "WSK_BENCH_CONNECTIONS";

/// The workloads of this run: [`WORKLOADS`], or the ones [`CONNECTIONS_ENV`] asks for.
pub fn workloads() -> Result<Vec<Workload>> {
    let Ok(list) = std::env::var(CONNECTIONS_ENV) else { return Ok(WORKLOADS.to_vec()) };
    list.split(',')
        .map(|n| match n.trim().parse::<usize>() {
            Ok(connections) if connections > 0 => Ok(Workload { connections, size: 1024 }),
            _ => bail!("{CONNECTIONS_ENV}: `{n}` is not a connection count"),
        })
        .collect()
}

/// Round trips before this are not counted.
pub const WARMUP: Duration = Duration::from_millis(500);
/// The measured window.
pub const MEASURE: Duration = Duration::from_millis(1500);
/// Runs per cell (fresh connections each time); the table shows the median by throughput.
pub const REPEATS: usize = 3;
/// A read or write that takes longer fails the cell (a stalled server).
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a server may take to accept its first connection.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long `echo-driver` may take to unload after SIGINT.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Linux's `USER_HZ`: the unit of the CPU times in `/proc/<pid>/task/<tid>/stat`.
const CLOCK_TICKS_PER_SEC: u64 = 100;
/// Thread name of the tokio server's workers (at most 15 bytes: `/proc` cuts names there).
const TOKIO_THREAD: &str = "echo-tokio";
/// Thread name prefix of the client's connections.
const CLIENT_THREAD: &str = "bench-client";

/// Set to a comma-separated list of server names (`emulator,wine,tokio,blocking`) to run only
/// those.
pub const SERVERS_ENV: &str = "WSK_BENCH_SERVERS";

/// The servers, in table order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    Emulator,
    Wine,
    Tokio,
    Blocking,
}

impl Server {
    pub const ALL: [Server; 4] = [Server::Emulator, Server::Wine, Server::Tokio, Server::Blocking];

    /// The name `WSK_BENCH_SERVERS` uses for the server.
    pub fn name(self) -> &'static str {
        match self {
            Server::Emulator => "emulator",
            Server::Wine => "wine",
            Server::Tokio => "tokio",
            Server::Blocking => "blocking",
        }
    }

    /// The servers `WSK_BENCH_SERVERS` selects (a comma-separated list of [`Server::name`]s;
    /// unset or empty: all of them, in table order).
    pub fn selected(list: Option<&str>) -> Result<Vec<Server>> {
        let Some(list) = list.filter(|l| !l.trim().is_empty()) else { return Ok(Self::ALL.to_vec()) };
        let mut chosen = Vec::new();
        for name in list.split(',').map(str::trim) {
            match Self::ALL.into_iter().find(|s| s.name() == name) {
                Some(server) if !chosen.contains(&server) => chosen.push(server),
                Some(_) => {}
                None => bail!("{SERVERS_ENV}: unknown server `{name}` (known: emulator, wine, tokio, blocking)"),
            }
        }
        chosen.sort_by_key(|s| Self::ALL.iter().position(|a| a == s));
        Ok(chosen)
    }

    /// The table's name for the server; tokio's says how many worker threads it has.
    pub fn label(self, tokio_workers: usize) -> String {
        match self {
            Server::Emulator => "(a) echo driver, emulator".to_owned(),
            Server::Wine => "(b) echo.sys, Wine".to_owned(),
            Server::Tokio => {
                format!("(c) tokio, multi_thread, {tokio_workers} worker{}", if tokio_workers == 1 { "" } else { "s" })
            }
            Server::Blocking => "(d) blocking, thread per connection, emulator".to_owned(),
        }
    }

    fn short(self) -> &'static str {
        match self {
            Server::Emulator => "(a)",
            Server::Wine => "(b)",
            Server::Tokio => "(c)",
            Server::Blocking => "(d)",
        }
    }
}

/// Where the client and the servers run. With two or more CPUs (and `taskset`), the client's
/// threads get the first CPU this process may use and each server the others, so that the
/// client and the server do not compete for a core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// CPU list (`taskset -c` syntax) of the client.
    pub client: String,
    /// CPU list of the server.
    pub server: String,
    /// How many CPUs the server has.
    pub server_cpus: usize,
    pub client_ids: Vec<u32>,
    pub server_ids: Vec<u32>,
}

impl Placement {
    /// Splits the CPUs in `allowed` (a `Cpus_allowed_list` such as `0-3,6`) into the first
    /// one for the client and the rest for the server. `None` with fewer than two CPUs.
    pub fn split(allowed: &str) -> Option<Placement> {
        let mut cpus = Vec::new();
        for part in allowed.trim().split(',').filter(|p| !p.is_empty()) {
            match part.split_once('-') {
                Some((a, b)) => cpus.extend(a.trim().parse::<u32>().ok()?..=b.trim().parse::<u32>().ok()?),
                None => cpus.push(part.trim().parse::<u32>().ok()?),
            }
        }
        let (client, server) = cpus.split_first()?;
        if server.is_empty() {
            return None;
        }
        let server_list: Vec<String> = server.iter().map(u32::to_string).collect();
        Some(Placement {
            client: client.to_string(),
            server: server_list.join(","),
            server_cpus: server.len(),
            client_ids: vec![*client],
            server_ids: server.to_vec(),
        })
    }

    /// The placement for this process, if `taskset` exists and there are two CPUs or more.
    fn detect() -> Option<Placement> {
        util::find_in_path("taskset")?;
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let allowed = status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:"))?;
        Placement::split(allowed)
    }
}

/// `taskset -p -c <cpus> <id>`: moves a thread (`all_threads`: every thread of a process) to
/// `cpus`. Threads it creates later inherit the setting.
fn pin(id: u32, cpus: &str, all_threads: bool) -> Result<()> {
    let mut cmd = Command::new("taskset");
    if all_threads {
        cmd.arg("-a");
    }
    cmd.args(["-p", "-c", cpus, &id.to_string()]).stdout(Stdio::null());
    let status = cmd.status().context(|| format!("running `{}`", util::display_command(&cmd)))?;
    if !status.success() {
        bail!("`{}` failed with {status}", util::display_command(&cmd));
    }
    Ok(())
}

/// CPU time and context switches of a set of threads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub cpu: Duration,
    pub switches: u64,
}

impl Usage {
    fn since(self, before: Usage) -> Usage {
        Usage { cpu: self.cpu.saturating_sub(before.cpu), switches: self.switches.saturating_sub(before.switches) }
    }
}

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
    /// Round trips per second of every repetition of the cell, this one included, ascending.
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

/// One server's results: a measurement (or the reason there is none) per workload, and notes.
#[derive(Debug, Clone)]
pub struct ServerRun {
    pub server: Server,
    pub label: String,
    pub cells: Vec<(Workload, std::result::Result<Measurement, String>)>,
    /// Why the server was not run at all (Wine missing).
    pub skipped: Option<String>,
    pub notes: Vec<String>,
    /// Failures that make the benchmark fail (after the table is printed).
    pub failures: Vec<String>,
}

impl ServerRun {
    fn new(server: Server, setup: &Setup) -> Self {
        let label = server.label(setup.tokio_workers);
        Self { server, label, cells: Vec::new(), skipped: None, notes: Vec::new(), failures: Vec::new() }
    }

    fn measurement(&self, workload: Workload) -> Option<&Measurement> {
        self.cells.iter().find(|(w, _)| *w == workload).and_then(|(_, m)| m.as_ref().ok())
    }
}

/// Which threads belong to the server under test.
enum Probe {
    /// Every thread of these processes.
    Processes(Vec<u32>),
    /// The threads of a process whose name starts with a prefix.
    Threads { pid: u32, prefix: &'static str },
}

impl Probe {
    fn sample(&self) -> Option<Usage> {
        let mut total = Usage::default();
        let mut found = false;
        let (pids, prefix): (&[u32], Option<&str>) = match self {
            Probe::Processes(pids) => (pids, None),
            Probe::Threads { pid, prefix } => (std::slice::from_ref(pid), Some(prefix)),
        };
        for pid in pids {
            let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { continue };
            for task in tasks.flatten() {
                let dir = task.path();
                if let Some(prefix) = prefix {
                    let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
                    if !comm.starts_with(prefix) {
                        continue;
                    }
                }
                if let Some(usage) = thread_usage(&dir) {
                    total.cpu += usage.cpu;
                    total.switches += usage.switches;
                    found = true;
                }
            }
        }
        found.then_some(total)
    }
}

/// CPU time (user + system) and context switches (voluntary + involuntary) of one thread.
fn thread_usage(task_dir: &Path) -> Option<Usage> {
    let stat = std::fs::read_to_string(task_dir.join("stat")).ok()?;
    // Fields after the command name (which may contain spaces) start with field 3, `state`;
    // utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let status = std::fs::read_to_string(task_dir.join("status")).ok()?;
    let mut switches = 0;
    for line in status.lines() {
        if let Some(value) =
            line.strip_prefix("voluntary_ctxt_switches:").or_else(|| line.strip_prefix("nonvoluntary_ctxt_switches:"))
        {
            switches += value.trim().parse::<u64>().ok()?;
        }
    }
    Some(Usage { cpu: Duration::from_millis(ticks * 1000 / CLOCK_TICKS_PER_SEC), switches })
}

/// What every server run shares.
struct Setup {
    /// `echo-driver`, built in release mode.
    binary: PathBuf,
    /// `echo.sys`, or why (b) is skipped.
    sys: std::result::Result<PathBuf, String>,
    placement: Option<Placement>,
    tokio_workers: usize,
}

/// Time the CPUs `ids` spent busy (user, system, interrupts and softirqs; not the time the
/// hypervisor stole) since boot.
fn cores_busy(ids: &[u32]) -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let mut ticks = 0;
    for id in ids {
        let name = format!("cpu{id}");
        let line = stat.lines().find(|l| l.split_whitespace().next() == Some(name.as_str()))?;
        let fields: Vec<u64> = line.split_whitespace().skip(1).filter_map(|f| f.parse().ok()).collect();
        // user nice system idle iowait irq softirq steal ...
        ticks += [0, 1, 2, 5, 6].iter().filter_map(|&i| fields.get(i)).sum::<u64>();
    }
    Some(Duration::from_millis(ticks * 1000 / CLOCK_TICKS_PER_SEC))
}

/// Everything sampled at the start and at the end of the measured window.
#[derive(Debug, Clone, Copy)]
struct Snapshot {
    server_threads: Option<Usage>,
    client_threads: Option<Usage>,
    server_cores: Option<Duration>,
    client_cores: Option<Duration>,
}

impl Snapshot {
    fn take(server: &Probe, client: &Probe, placement: Option<&Placement>) -> Snapshot {
        Snapshot {
            server_threads: server.sample(),
            client_threads: client.sample(),
            server_cores: placement.and_then(|p| cores_busy(&p.server_ids)),
            client_cores: placement.and_then(|p| cores_busy(&p.client_ids)),
        }
    }
}

/// Runs the whole echo benchmark and prints its table. Fails (after printing) if a server
/// that should have run failed.
pub fn run() -> Result<()> {
    let start = Instant::now();
    println!("{TAG}: {}", machine_line());
    println!(
        "{TAG}: {} workloads per server, {} runs each of {} ms warm-up + {} ms measured",
        workloads()?.len(),
        REPEATS,
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
        None => thread::available_parallelism().map_or(1, |n| n.get()),
    };
    match &placement {
        Some(p) => {
            println!("{TAG}: client threads on CPU {}, servers on CPU {}", p.client, p.server);
            pin(std::process::id(), &p.client, true)?;
        }
        None => println!("{TAG}: client and servers share every CPU (fewer than 2 CPUs, or no taskset)"),
    }
    let setup = Setup { binary, sys, placement, tokio_workers };

    let mut runs = Vec::new();
    for server in Server::selected(std::env::var(SERVERS_ENV).ok().as_deref())? {
        println!("{TAG}: {} ...", server.label(setup.tokio_workers));
        let run = match server {
            Server::Emulator => run_emulator(&setup, false),
            Server::Wine => run_wine(&setup),
            Server::Tokio => run_tokio(&setup),
            Server::Blocking => run_emulator(&setup, true),
        };
        let run = run.unwrap_or_else(|e| {
            let mut failed = ServerRun::new(server, &setup);
            failed.failures.push(e.to_string());
            failed
        });
        runs.push(run);
    }

    println!();
    match &setup.placement {
        Some(p) => println!("client on CPU {}, server on CPU {}", p.client, p.server),
        None => println!("client and server share every CPU"),
    }
    println!();
    println!("{}", table(&runs));
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

/// `nproc`, the CPU model and the compiler, for the record.
fn machine_line() -> String {
    let cpus = thread::available_parallelism().map_or(0, |n| n.get());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, m)| m.trim().to_owned()))
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let rustc = Command::new("rustc")
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    format!("{cpus} CPUs ({model}), {rustc}, {}", load_average())
}

/// The 1-minute load average before the benchmark starts, to show whether something else
/// was running.
fn load_average() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    format!("load average {}", text.split_whitespace().next().unwrap_or("unknown"))
}

/// Measures every workload against `addr`.
fn measure_all(server: Server, addr: SocketAddr, probe: &Probe, placement: Option<&Placement>, run: &mut ServerRun) {
    for workload in workloads().unwrap_or_else(|_| WORKLOADS.to_vec()) {
        let cell = measure_median(addr, workload, probe, placement);
        match &cell {
            Ok(m) => println!(
                "{TAG}: {} {} x {}: {:.0} round trips/s (runs: {}), {:.1} MB/s, p50 {} us, p99 {} us, max {:.1} ms, slowest connection {:.2} of the mean, {} with none",
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
                println!(
                    "{TAG}: {} {} x {}: FAILED: {e}",
                    server.short(),
                    workload.connections,
                    size_label(workload.size)
                );
                run.failures.push(format!("{} x {}: {e}", workload.connections, size_label(workload.size)));
            }
        }
        run.cells.push((workload, cell));
    }
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

/// [`REPEATS`] runs of a cell; the one with the median throughput, with every run's rate.
fn measure_median(
    addr: SocketAddr,
    workload: Workload,
    probe: &Probe,
    placement: Option<&Placement>,
) -> std::result::Result<Measurement, String> {
    let mut runs = Vec::with_capacity(REPEATS);
    for _ in 0..REPEATS {
        runs.push(measure(addr, workload, probe, placement, WARMUP, MEASURE)?);
    }
    runs.sort_by_key(|m| m.round_trips);
    let rates: Vec<f64> = runs.iter().map(Measurement::round_trips_per_sec).collect();
    let mut median = runs.swap_remove(REPEATS / 2);
    median.rates = rates;
    Ok(median)
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

/// Waits until `addr` accepts a connection (or `child`, if given, exits).
fn wait_ready(addr: SocketAddr, mut child: Option<&mut Child>) -> Result<()> {
    let start = Instant::now();
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if let Some(child) = child.as_deref_mut()
            && let Some(status) = child.try_wait()?
        {
            bail!("the server exited with {status} before accepting connections");
        }
        if start.elapsed() > READY_TIMEOUT {
            bail!("{addr} accepted no connection within {} s", READY_TIMEOUT.as_secs());
        }
        thread::sleep(Duration::from_millis(50));
    }
}

fn localhost(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

fn log_dir() -> Result<PathBuf> {
    let dir = util::target_dir().join("bench");
    util::create_dir_all(&dir)?;
    Ok(dir)
}

/// (a) and (d): `echo-driver` on the emulator, stopped with SIGINT so that it unloads the
/// driver and prints its verifier report.
fn run_emulator(setup: &Setup, blocking: bool) -> Result<ServerRun> {
    let server = if blocking { Server::Blocking } else { Server::Emulator };
    let mut run = ServerRun::new(server, setup);
    let binary = &setup.binary;
    let port = echo_client::free_port()?;
    let log = log_dir()?.join(if blocking { "echo-driver-blocking.log" } else { "echo-driver.log" });
    let out = std::fs::File::create(&log).context(|| format!("creating {}", log.display()))?;
    let err = out.try_clone()?;
    let mut cmd = match &setup.placement {
        Some(p) => {
            let mut cmd = Command::new("taskset");
            cmd.args(["-c", &p.server]).arg(binary);
            cmd
        }
        None => Command::new(binary),
    };
    cmd.args(["--port", &port.to_string(), "--seconds", "3600", "--quiet"]);
    if blocking {
        cmd.arg("--blocking");
    }
    println!("$ {}", util::display_command(&cmd));
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .context(|| format!("starting {}", binary.display()))?;
    let addr = localhost(port);
    if let Err(e) = wait_ready(addr, Some(&mut child)) {
        let _ = child.kill();
        let _ = child.wait();
        bail!("{e}; log: {}\n{}", log.display(), util::tail(&log, 20));
    }
    measure_all(server, addr, &Probe::Processes(vec![child.id()]), setup.placement.as_ref(), &mut run);
    // SIGINT: the binary unloads the driver and prints its counters and verifier report.
    let pid = child.id().to_string();
    let signalled = Command::new("kill").args(["-s", "INT", &pid]).status().is_ok_and(|s| s.success());
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if !signalled || start.elapsed() > STOP_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(50));
    };
    let text = util::read_to_string(&log).unwrap_or_default();
    for line in text.lines().filter(|l| l.contains("bytes echoed") || l.starts_with("Verifier report")) {
        run.notes.push(line.trim().to_owned());
    }
    match status {
        Some(status) if status.success() => {}
        Some(status) => run
            .failures
            .push(format!("echo-driver exited with {status} (verifier report not clean?); log: {}", log.display())),
        None => run.failures.push(format!(
            "echo-driver did not stop within {} s of SIGINT and was killed; log: {}",
            STOP_TIMEOUT.as_secs(),
            log.display()
        )),
    }
    Ok(run)
}

/// (b): `echo.sys` under Wine.
fn run_wine(setup: &Setup) -> Result<ServerRun> {
    let mut run = ServerRun::new(Server::Wine, setup);
    let sys = match &setup.sys {
        Ok(sys) => sys,
        Err(reason) => {
            println!("{TAG}: (b) SKIPPED: {reason}");
            run.skipped = Some(reason.clone());
            return Ok(run);
        }
    };
    let mut prefix = WinePrefix::new("echo-bench")?;
    prefix.install_driver(sys, drivers::ECHO.name)?;
    let port = echo_client::free_port()?;
    prefix.set_param_dword(drivers::ECHO.name, "Port", u32::from(port))?;
    prefix.start(drivers::ECHO.name)?;
    let addr = localhost(port);
    wait_ready(addr, None)?;
    let (pids, complete) = wine_processes(prefix.dir());
    if !complete {
        run.notes
            .push("winedevice.exe or wineserver not found in /proc: CPU figures and placement incomplete".to_owned());
    }
    if let Some(p) = &setup.placement {
        for pid in &pids {
            pin(*pid, &p.server, true)?;
        }
    }
    measure_all(Server::Wine, addr, &Probe::Processes(pids), setup.placement.as_ref(), &mut run);
    prefix.stop(drivers::ECHO.name)?;
    prefix.end_session()?;
    let messages = prefix.debug_log()?;
    match messages.iter().rev().find(|m| m.contains("DriverUnload done")) {
        Some(line) if wine::count_of(line, wine::ECHO_CLEAN_UNLOAD) == Some(0) => {
            run.notes.push(format!("DbgPrint: {line}"))
        }
        Some(line) => run.failures.push(format!("unload left sockets open: {line}")),
        None => run
            .failures
            .push(format!("no `DriverUnload done` in the driver's output ({})", prefix.debug_log_path().display())),
    }
    Ok(run)
}

/// Every process of the Wine session in `prefix` (those with its `WINEPREFIX`): the driver's
/// host `winedevice.exe`, `wineserver` (`wineserver64` on 64-bit Debian), the service manager
/// and the rest of the session. Returns their ids and whether a driver host and a server are
/// among them.
fn wine_processes(prefix: &Path) -> (Vec<u32>, bool) {
    let wanted = format!("WINEPREFIX={}", prefix.display());
    let Ok(entries) = std::fs::read_dir("/proc") else { return (Vec::new(), false) };
    let mut pids = Vec::new();
    let (mut host, mut server) = (false, false);
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        if pid == std::process::id() {
            continue;
        }
        let environ = std::fs::read(entry.path().join("environ")).unwrap_or_default();
        if !environ.split(|&b| b == 0).any(|var| var == wanted.as_bytes()) {
            continue;
        }
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        host |= comm.trim() == "winedevice.exe";
        server |= comm.starts_with("wineserver");
        pids.push(pid);
    }
    (pids, host && server)
}

/// (c): a tokio echo server in this process, on its own runtime.
fn run_tokio(setup: &Setup) -> Result<ServerRun> {
    let mut run = ServerRun::new(Server::Tokio, setup);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(setup.tokio_workers)
        .thread_name(TOKIO_THREAD)
        .enable_io()
        .build()
        .context(|| "building the tokio runtime".to_owned())?;
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(localhost(0)))
        .context(|| "binding the tokio server".to_owned())?;
    let addr = listener.local_addr()?;
    println!("{TAG}: tokio echo server on {addr}");
    let accept = runtime.spawn(tokio_accept_loop(listener));
    wait_ready(addr, None)?;
    if let Some(p) = &setup.placement {
        // A new thread sets its own name once it runs: wait for every worker to show it.
        let mut workers = threads_named(std::process::id(), TOKIO_THREAD);
        let start = Instant::now();
        while workers.len() < setup.tokio_workers && start.elapsed() < READY_TIMEOUT {
            thread::sleep(Duration::from_millis(10));
            workers = threads_named(std::process::id(), TOKIO_THREAD);
        }
        if workers.len() != setup.tokio_workers {
            bail!("found {} `{TOKIO_THREAD}` threads, expected {}", workers.len(), setup.tokio_workers);
        }
        for tid in workers {
            pin(tid, &p.server, false)?;
        }
    }
    let probe = Probe::Threads { pid: std::process::id(), prefix: TOKIO_THREAD };
    measure_all(Server::Tokio, addr, &probe, setup.placement.as_ref(), &mut run);
    accept.abort();
    runtime.shutdown_timeout(Duration::from_secs(5));
    Ok(run)
}

/// The threads of `pid` whose name starts with `prefix`.
fn threads_named(pid: u32, prefix: &str) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Vec::new() };
    tasks
        .flatten()
        .filter(|task| std::fs::read_to_string(task.path().join("comm")).is_ok_and(|c| c.starts_with(prefix)))
        .filter_map(|task| task.file_name().to_str().and_then(|s| s.parse().ok()))
        .collect()
}

async fn tokio_accept_loop(listener: tokio::net::TcpListener) {
    loop {
        if let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(tokio_echo(stream));
        }
    }
}

/// The same service as the driver: receive up to 64 KiB, send it all back, until end of
/// stream; then shut the sending side down.
async fn tokio_echo(mut stream: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if stream.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
    let _ = stream.shutdown().await;
}

fn size_label(size: usize) -> String {
    if size >= 1024 && size.is_multiple_of(1024) { format!("{} KiB", size / 1024) } else { format!("{size} B") }
}

fn micros(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us >= 100.0 { format!("{us:.0}") } else { format!("{us:.1}") }
}

/// The results as a Markdown table, with ratios against tokio (c) for the same workload.
pub fn table(runs: &[ServerRun]) -> String {
    let tokio = runs.iter().find(|r| r.server == Server::Tokio);
    let mut out = String::new();
    out.push_str(
        "| server | conns | message | round trips/s | MB/s | p50 us | p99 us | max ms | slowest conn / mean | server CPU % | server CPU us/rt | server ctx sw/rt | client CPU % | MB/s vs tokio | p50 vs tokio |\n",
    );
    out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for workload in workloads().unwrap_or_else(|_| WORKLOADS.to_vec()) {
        let reference = tokio.and_then(|t| t.measurement(workload));
        for run in runs {
            let lead = format!("| {} | {} | {} |", run.label, workload.connections, size_label(workload.size));
            if let Some(reason) = &run.skipped {
                out.push_str(&format!("{lead} skipped: {reason} | | | | | | | | | | | |\n"));
                continue;
            }
            match run.cells.iter().find(|(w, _)| *w == workload).map(|(_, m)| m) {
                Some(Ok(m)) => {
                    let busy = m.server_cpu_percent().map_or("n/a".to_owned(), |c| format!("{c:.0}"));
                    let cpu = m.cpu_per_round_trip().map_or("n/a".to_owned(), micros);
                    let switches = m.switches_per_round_trip().map_or("n/a".to_owned(), |s| format!("{s:.1}"));
                    let client = m.client_cpu_percent().map_or("n/a".to_owned(), |c| format!("{c:.0}"));
                    let (throughput, latency) = match reference {
                        Some(r) => (
                            format!("{:.2}", m.mb_per_sec(workload.size) / r.mb_per_sec(workload.size)),
                            format!("{:.2}", m.p50.as_secs_f64() / r.p50.as_secs_f64()),
                        ),
                        None => ("n/a".to_owned(), "n/a".to_owned()),
                    };
                    out.push_str(&format!(
                        "{lead} {:.0} | {:.1} | {} | {} | {:.1} | {:.2} | {busy} | {cpu} | {switches} | {client} | {throughput} | {latency} |\n",
                        m.round_trips_per_sec(),
                        m.mb_per_sec(workload.size),
                        micros(m.p50),
                        micros(m.p99),
                        m.max.as_secs_f64() * 1e3,
                        m.fairness(workload.connections),
                    ));
                }
                Some(Err(e)) => out.push_str(&format!("{lead} FAILED: {e} | | | | | | | | | | | |\n")),
                None => out.push_str(&format!("{lead} FAILED (server did not run) | | | | | | | | | | | |\n")),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_splits_the_allowed_cpus() {
        let p = Placement::split("0-1\n").unwrap();
        assert_eq!((p.client_ids.as_slice(), p.server_ids.as_slice()), (&[0][..], &[1][..]));
        assert_eq!((p.client.as_str(), p.server.as_str(), p.server_cpus), ("0", "1", 1));
        let p = Placement::split("2,4-6").unwrap();
        assert_eq!((p.client.as_str(), p.server.as_str(), p.server_cpus), ("2", "4,5,6", 3));
        assert_eq!(Placement::split("3"), None);
        assert_eq!(Placement::split("x"), None);
    }

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&samples, 50.0), 50);
        assert_eq!(percentile(&samples, 99.0), 99);
        assert_eq!(percentile(&[7], 99.0), 7);
        assert_eq!(percentile(&[], 50.0), 0);
    }

    #[test]
    fn thread_usage_reads_this_thread() {
        let usage = thread_usage(Path::new("/proc/thread-self"));
        assert!(usage.is_some(), "/proc/thread-self/stat and status must parse");
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

    #[test]
    fn table_marks_skips_and_ratios() {
        let m = Measurement {
            round_trips: 2000,
            fewest: 2000,
            starved: 0,
            window: Duration::from_secs(2),
            p50: Duration::from_micros(20),
            p99: Duration::from_micros(40),
            max: Duration::from_micros(1500),
            rates: Vec::new(),
            client: Some(Usage { cpu: Duration::from_millis(1500), switches: 0 }),
            server_cores: None,
            client_cores: None,
            server: Some(Usage { cpu: Duration::from_millis(20), switches: 4000 }),
        };
        let setup = Setup { binary: PathBuf::new(), sys: Err("none".to_owned()), placement: None, tokio_workers: 2 };
        let mut tokio = ServerRun::new(Server::Tokio, &setup);
        let mut wine = ServerRun::new(Server::Wine, &setup);
        wine.skipped = Some("wine not found on PATH".to_owned());
        for w in WORKLOADS {
            tokio.cells.push((w, Ok(m.clone())));
        }
        let text = table(&[wine, tokio]);
        assert!(text.contains("skipped: wine not found on PATH"), "{text}");
        assert!(
            text.contains("| 1000 | 1.0 | 20.0 | 40.0 | 1.5 | 1.00 | 1 | 10.0 | 2.0 | 75 | 1.00 | 1.00 |"),
            "{text}"
        );
    }

    #[test]
    fn servers_are_selected_by_name() {
        assert_eq!(Server::selected(None).unwrap(), Server::ALL.to_vec());
        assert_eq!(Server::selected(Some(" ")).unwrap(), Server::ALL.to_vec());
        assert_eq!(Server::selected(Some("tokio, wine")).unwrap(), vec![Server::Wine, Server::Tokio]);
        assert!(Server::selected(Some("win")).is_err());
    }
}
