//! The servers under test and how each is started, measured and stopped: the echo driver and
//! the blocking baseline in `echo-driver` on the emulator, `echo.sys` under Wine, and a tokio
//! echo server in this process.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::TAG;
use super::placement::{Placement, Probe, pin, threads_named};
use super::report::ServerRun;
use crate::util::{self, Context, Result, bail};
use crate::wine::{self, WinePrefix};
use crate::{drivers, echo_client};

/// How long a server may take to accept its first connection.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// How long `echo-driver` may take to unload after SIGINT.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// Thread name of the tokio server's workers (at most 15 bytes: `/proc` cuts names there).
pub(super) const TOKIO_THREAD: &str = "echo-tokio";

/// Set to a comma-separated list of server names (`emulator,twin,irp,wine,tokio,blocking`) to
/// run only those.
pub const SERVERS_ENV: &str = "WSK_BENCH_SERVERS";

/// The servers, in table order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    Emulator,
    /// A second `echo-driver` exactly like (a), measured alongside: the ratio of (a) to its
    /// twin is what the machine's noise alone does to a ratio of two equal servers in this
    /// run, the yardstick for the other ratios.
    EmulatorTwin,
    /// The echo driver receiving with IRPs (`--irp-receive`).
    EmulatorIrp,
    Wine,
    Tokio,
    Blocking,
}

impl Server {
    pub const ALL: [Server; 6] =
        [Server::Emulator, Server::EmulatorTwin, Server::EmulatorIrp, Server::Wine, Server::Tokio, Server::Blocking];

    /// The name `WSK_BENCH_SERVERS` uses for the server.
    pub fn name(self) -> &'static str {
        match self {
            Server::Emulator => "emulator",
            Server::EmulatorTwin => "twin",
            Server::EmulatorIrp => "irp",
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
                None => {
                    let known: Vec<&str> = Self::ALL.iter().map(|s| s.name()).collect();
                    bail!("{SERVERS_ENV}: unknown server `{name}` (known: {})", known.join(", "))
                }
            }
        }
        chosen.sort_by_key(|s| Self::ALL.iter().position(|a| a == s));
        Ok(chosen)
    }

    /// The table's name for the server; tokio's says how many worker threads it has.
    pub fn label(self, tokio_workers: usize) -> String {
        match self {
            Server::Emulator => "(a) echo driver, emulator".to_owned(),
            Server::EmulatorTwin => "(a') echo driver, emulator, (a)'s twin".to_owned(),
            Server::EmulatorIrp => "(e) echo driver, IRP receive, emulator".to_owned(),
            Server::Wine => "(b) echo.sys, Wine".to_owned(),
            Server::Tokio => {
                format!("(c) tokio, multi_thread, {tokio_workers} worker{}", if tokio_workers == 1 { "" } else { "s" })
            }
            Server::Blocking => "(d) blocking, thread per connection, emulator".to_owned(),
        }
    }

    pub(super) fn short(self) -> &'static str {
        match self {
            Server::Emulator => "(a)",
            Server::EmulatorTwin => "(a')",
            Server::EmulatorIrp => "(e)",
            Server::Wine => "(b)",
            Server::Tokio => "(c)",
            Server::Blocking => "(d)",
        }
    }
}

/// What every server run shares.
pub(super) struct Setup {
    /// `echo-driver`, built in release mode.
    pub(super) binary: PathBuf,
    /// `echo.sys`, or why (b) is skipped.
    pub(super) sys: std::result::Result<PathBuf, String>,
    pub(super) placement: Option<Placement>,
    pub(super) tokio_workers: usize,
    /// Whether the emulator servers run with the verifier on ([`VERIFIER_ENV`]).
    pub(super) verifier: bool,
}

/// Set to `on` to run the emulator servers with the verifier on (its checks cost the
/// server CPU per operation that no production driver pays: guarded indication blocks, the
/// IRQL sections' `getrusage` calls, the IRP and pool tables); unset or `off`: off.
pub const VERIFIER_ENV: &str = "WSK_BENCH_VERIFIER";

/// Whether [`VERIFIER_ENV`] asks for the verifier.
pub fn verifier_wanted() -> Result<bool> {
    parse_verifier(std::env::var(VERIFIER_ENV).ok().as_deref())
}

/// [`VERIFIER_ENV`]'s value (`None`: unset) as whether the verifier is on.
fn parse_verifier(value: Option<&str>) -> Result<bool> {
    match value.map(str::trim) {
        None | Some("" | "off" | "0") => Ok(false),
        Some("on" | "1") => Ok(true),
        Some(other) => bail!("{VERIFIER_ENV}: `{other}` is neither `on` nor `off`"),
    }
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

pub(super) fn localhost(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

fn log_dir() -> Result<PathBuf> {
    let dir = util::target_dir().join("bench");
    util::create_dir_all(&dir)?;
    Ok(dir)
}

/// A server that is up, ready for the client, and how to stop it.
pub(super) struct Started {
    pub(super) run: ServerRun,
    /// Where it listens (`None`: skipped, see `run.skipped`).
    pub(super) addr: Option<SocketAddr>,
    pub(super) probe: Probe,
    stop: Stop,
}

/// How a started server is stopped.
enum Stop {
    Nothing,
    Emulator { child: Child, log: PathBuf },
    Wine(Box<WinePrefix>),
    Tokio { runtime: tokio::runtime::Runtime, accept: tokio::task::JoinHandle<()> },
}

/// Starts `server`.
pub(super) fn start(setup: &Setup, server: Server) -> Result<Started> {
    match server {
        Server::Emulator | Server::EmulatorTwin | Server::EmulatorIrp | Server::Blocking => {
            start_emulator(setup, server)
        }
        Server::Wine => start_wine(setup),
        Server::Tokio => start_tokio(setup),
    }
}

impl Started {
    /// Stops the server and returns its results with what its stop reported.
    pub(super) fn stop(self) -> Result<ServerRun> {
        let mut run = self.run;
        match self.stop {
            Stop::Nothing => {}
            Stop::Emulator { child, log } => stop_emulator(child, &log, &mut run)?,
            Stop::Wine(prefix) => stop_wine(*prefix, &mut run)?,
            Stop::Tokio { runtime, accept } => {
                accept.abort();
                runtime.shutdown_timeout(Duration::from_secs(5));
            }
        }
        Ok(run)
    }
}

/// (a), (a'), (e) and (d): `echo-driver` on the emulator (`--irp-receive` for (e), `--blocking` for
/// (d)), stopped with SIGINT so that it unloads the driver and prints its verifier report.
fn start_emulator(setup: &Setup, server: Server) -> Result<Started> {
    let blocking = server == Server::Blocking;
    let run = ServerRun::new(server, setup);
    let binary = &setup.binary;
    let port = echo_client::free_port()?;
    let log = log_dir()?.join(match server {
        Server::Blocking => "echo-driver-blocking.log",
        Server::EmulatorIrp => "echo-driver-irp.log",
        Server::EmulatorTwin => "echo-driver-twin.log",
        _ => "echo-driver.log",
    });
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
    if server == Server::EmulatorIrp {
        cmd.arg("--irp-receive");
    }
    if !setup.verifier {
        cmd.arg("--no-verifier");
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
    let probe = Probe::Processes(vec![child.id()]);
    Ok(Started { run, addr: Some(addr), probe, stop: Stop::Emulator { child, log } })
}

fn stop_emulator(mut child: Child, log: &Path, run: &mut ServerRun) -> Result<()> {
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
    let text = util::read_to_string(log).unwrap_or_default();
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
    Ok(())
}

/// (b): `echo.sys` under Wine.
fn start_wine(setup: &Setup) -> Result<Started> {
    let mut run = ServerRun::new(Server::Wine, setup);
    let sys = match &setup.sys {
        Ok(sys) => sys,
        Err(reason) => {
            println!("{TAG}: (b) SKIPPED: {reason}");
            run.skipped = Some(reason.clone());
            return Ok(Started { run, addr: None, probe: Probe::Processes(Vec::new()), stop: Stop::Nothing });
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
    Ok(Started { run, addr: Some(addr), probe: Probe::Processes(pids), stop: Stop::Wine(Box::new(prefix)) })
}

fn stop_wine(mut prefix: WinePrefix, run: &mut ServerRun) -> Result<()> {
    prefix.stop(drivers::ECHO.name)?;
    prefix.end_session()?;
    let messages = prefix.debug_log()?;
    match messages.iter().rev().find(|m| m.contains("DriverUnload done")) {
        Some(line) if wine::count_of(line, wine::ECHO_CLEAN_UNLOAD) == Some(0) => {
            run.notes.push(format!("DbgPrint: {line}"));
        }
        Some(line) => run.failures.push(format!("unload left sockets open: {line}")),
        None => run
            .failures
            .push(format!("no `DriverUnload done` in the driver's output ({})", prefix.debug_log_path().display())),
    }
    Ok(())
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
fn start_tokio(setup: &Setup) -> Result<Started> {
    let run = ServerRun::new(Server::Tokio, setup);
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
    Ok(Started { run, addr: Some(addr), probe, stop: Stop::Tokio { runtime, accept } })
}

pub(super) async fn tokio_accept_loop(listener: tokio::net::TcpListener) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_verifier_is_off_unless_asked_for() {
        assert!(!parse_verifier(None).unwrap());
        assert!(!parse_verifier(Some("off")).unwrap());
        assert!(!parse_verifier(Some("")).unwrap());
        assert!(parse_verifier(Some("on")).unwrap());
        assert!(parse_verifier(Some(" 1 ")).unwrap());
        assert!(parse_verifier(Some("yes")).is_err());
    }

    #[test]
    fn servers_are_selected_by_name() {
        assert_eq!(Server::selected(None).unwrap(), Server::ALL.to_vec());
        assert_eq!(Server::selected(Some(" ")).unwrap(), Server::ALL.to_vec());
        assert_eq!(Server::selected(Some("tokio, wine")).unwrap(), vec![Server::Wine, Server::Tokio]);
        assert_eq!(Server::selected(Some("tokio,irp")).unwrap(), vec![Server::EmulatorIrp, Server::Tokio]);
        assert_eq!(
            Server::selected(Some("irp,twin,emulator")).unwrap(),
            vec![Server::Emulator, Server::EmulatorTwin, Server::EmulatorIrp]
        );
        assert!(Server::selected(Some("win")).is_err());
    }
}
