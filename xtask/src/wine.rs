//! `cargo xtask wine-test`: loads the real echo driver image into Wine's kernel
//! emulation and checks what it prints.
//!
//! Wine writes `DbgPrint` output on its `debugstr` channel to the stderr of the first
//! process of a prefix session (the one that brings up wineserver and the service
//! manager, which later hosts the driver). [`WinePrefix::start`] therefore ends any
//! running session and makes the service start that first process, with its stderr
//! going to the debug log. The log is complete once the session has ended
//! ([`WinePrefix::end_session`]).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::util::{self, Context, Result, bail};
use crate::{drivers, echo_client};

const TAG: &str = "wine-test";

/// `DbgPrint` markers the echo driver prints during one start/stop cycle, in order.
pub const ECHO_SMOKE_MARKERS: &[&str] =
    &["DriverEntry", "WskRegister ok", "WskCaptureProviderNPI ok", "listening on", "DriverUnload done"];

/// The count the echo driver's last line must give as 0 after the end-to-end run: nothing
/// left open.
pub const ECHO_CLEAN_UNLOAD: &str = "sockets open";

const WINEBOOT_TIMEOUT: Duration = Duration::from_secs(300);
const COMMAND_TIMEOUT: Duration = Duration::from_secs(90);
const SERVER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long to let the session wind down (driver unload, service exit) on its own.
const WIND_DOWN_TIMEOUT: Duration = Duration::from_secs(20);

/// How long the idle-gap check leaves the driver without traffic. Wine's thread pool ends a
/// worker thread idle for a few seconds, and with it cancels the overlapped receive or accept
/// that thread issued: the library must issue it again (`wsk::socket::provider_cancel`), and
/// the echo driver must neither close the idle connection nor stop accepting.
const IDLE_GAP: Duration = Duration::from_secs(7);
/// Idle gaps, each after a burst of [`BURST`] connections at once.
const IDLE_ROUNDS: usize = 2;
const BURST: usize = 16;

/// What the library logs when the provider cancelled a receive or an accept nobody asked to
/// cancel, before it issues it again (counted, printed, not required: whether it happens is
/// Wine's scheduling).
const PROVIDER_CANCELLED: &str = "wsk: the provider cancelled";

/// Why Wine cannot be used here, if it cannot.
pub fn missing_tools() -> Option<String> {
    let missing: Vec<&str> =
        ["wine", "wineserver"].into_iter().filter(|tool| util::find_in_path(tool).is_none()).collect();
    (!missing.is_empty()).then(|| format!("{} not found on PATH", missing.join(" and ")))
}

/// The Wine test: build the echo driver, install it with a chosen port, start it, run the
/// end-to-end echo client against it, stop it, and check that it printed
/// [`ECHO_SMOKE_MARKERS`] in order and unloaded with every socket closed.
/// Without Wine it fails (`cargo xtask setup` installs it).
pub fn smoke_test(stress_run: Duration) -> Result<()> {
    if let Some(reason) = missing_tools() {
        bail!("{TAG}: Wine is needed and unusable: {reason} (`cargo xtask setup` installs it)");
    }
    let start = Instant::now();
    let sys = drivers::build(&drivers::ECHO)?;
    let mut prefix = WinePrefix::new(drivers::ECHO.name)?;
    prefix.install_driver(&sys, drivers::ECHO.name)?;
    let port = echo_client::free_port()?;
    prefix.set_param_dword(drivers::ECHO.name, "Port", u32::from(port))?;
    prefix.start(drivers::ECHO.name)?;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let idle = idle_gap(addr);
    if let Err(e) = &idle {
        eprintln!("{TAG}: after an idle gap: FAILED: {e}");
    }
    println!("{TAG}: echo client against {addr} (50 connections, 1 B to 1 MiB, resets) ...");
    let client = echo_client::run(&echo_client::ClientConfig::standard(addr));
    match &client {
        Ok(report) => println!(
            "{TAG}: client: {} connections, {} bytes echoed and checked, {} resets, in {} s",
            report.connections,
            report.bytes,
            report.resets,
            util::secs(report.elapsed)
        ),
        Err(e) => eprintln!("{TAG}: client FAILED: {e}"),
    }
    prefix.stop(drivers::ECHO.name)?;
    prefix.end_session()?;
    let crashes = prefix.crash_lines()?;
    if let Some(first) = crashes.first() {
        bail!("{TAG}: a Wine process crashed while echo.sys ran ({} lines like): {first}", crashes.len());
    }
    let messages = prefix.debug_log()?;
    let per_connection = messages.iter().filter(|m| m.contains("connection from")).count();
    for message in messages.iter().filter(|m| !m.contains("connection from")) {
        println!("{TAG}: DbgPrint: {message}");
    }
    println!("{TAG}: ({per_connection} per-connection lines not shown; see {})", prefix.debug_log_path().display());
    if let Err(missing) = check_markers(&messages, ECHO_SMOKE_MARKERS) {
        bail!(
            "{TAG}: echo driver output lacks {missing} (expected in order: {:?}; full log: {})",
            ECHO_SMOKE_MARKERS,
            prefix.debug_log_path().display()
        );
    }
    if let Err(e) = client {
        bail!("{TAG}: echo client failed against the driver under Wine: {e}");
    }
    let cancelled = messages.iter().filter(|m| m.contains(PROVIDER_CANCELLED)).count();
    println!("{TAG}: receives and accepts the provider cancelled on its own (issued again): {cancelled}");
    if let Err(e) = idle {
        bail!("{TAG}: the driver stopped serving after {} s without a connection: {e}", IDLE_GAP.as_secs());
    }
    let unload = messages.iter().rev().find(|m| m.contains("DriverUnload done"));
    if unload.is_none_or(|m| count_of(m, ECHO_CLEAN_UNLOAD) != Some(0)) {
        bail!("{TAG}: the driver did not report `0 {ECHO_CLEAN_UNLOAD}` at unload (last unload line: {unload:?})");
    }
    status_under_wine(&mut prefix)?;
    stress_under_wine(&mut prefix, stress_run)?;
    println!("{TAG}: passed in {} s", util::secs(start.elapsed()));
    Ok(())
}

/// A connection echoes; a burst of connections at once grows Wine's thread pool; the driver
/// is then left without traffic for [`IDLE_GAP`], in which the pool ends its extra threads;
/// then both a new connection and the first one must echo. Twice.
fn idle_gap(addr: std::net::SocketAddr) -> Result<()> {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    fn echo_once(stream: &mut TcpStream, what: &[u8]) -> std::io::Result<()> {
        stream.write_all(what)?;
        let mut back = vec![0u8; what.len()];
        stream.read_exact(&mut back)?;
        if back != what {
            return Err(std::io::Error::other(format!("echoed {back:?} for {what:?}")));
        }
        Ok(())
    }
    let connect = move || -> std::io::Result<TcpStream> {
        let stream = TcpStream::connect_timeout(&addr, SERVER_TIMEOUT)?;
        stream.set_read_timeout(Some(SERVER_TIMEOUT))?;
        Ok(stream)
    };
    let mut idle = connect().context(|| "connecting".to_owned())?;
    echo_once(&mut idle, b"before the gap").context(|| "first echo".to_owned())?;
    for round in 1..=IDLE_ROUNDS {
        let burst: Vec<_> = (0..BURST)
            .map(|_| {
                std::thread::spawn(move || -> std::io::Result<()> {
                    let mut stream = connect()?;
                    echo_once(&mut stream, &[0x5a; 4096])
                })
            })
            .collect();
        for one in burst {
            one.join()
                .map_err(|_| util::Error::msg("a burst connection panicked".to_owned()))?
                .context(|| format!("a burst connection (round {round})"))?;
        }
        println!(
            "{TAG}: idle gap {round}/{IDLE_ROUNDS}: {BURST} connections echoed; {} s without traffic ...",
            IDLE_GAP.as_secs()
        );
        std::thread::sleep(IDLE_GAP);
        let mut new = connect().context(|| format!("connecting after gap {round}"))?;
        echo_once(&mut new, b"a new connection").context(|| format!("a new connection after gap {round}"))?;
        echo_once(&mut idle, b"after the gap").context(|| format!("the idle connection after gap {round}"))?;
    }
    println!("{TAG}: after each gap a new connection and the idle one echoed");
    Ok(())
}

/// The status driver (`wskstatus.sys`: HTTP/1.1 over `embedded-io-async` and `httparse`)
/// under Wine against `curl`; its DriverEntry must have resolved `localhost` with an IPv4 hint
/// and a bound of one address to `127.0.0.1`, and its unload line must report no socket open.
fn status_under_wine(prefix: &mut WinePrefix) -> Result<()> {
    let sys = drivers::build(&drivers::STATUS)?;
    prefix.install_driver(&sys, drivers::STATUS.name)?;
    let port = echo_client::free_port()?;
    prefix.set_param_dword(drivers::STATUS.name, "Port", u32::from(port))?;
    let mark = prefix.log_mark()?;
    prefix.start(drivers::STATUS.name)?;
    let checked = crate::http_client::check(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
    prefix.stop(drivers::STATUS.name)?;
    prefix.end_session()?;
    if let Some((first, module)) = prefix.crash_since(mark)? {
        bail!("{TAG}: a Wine process crashed while wskstatus.sys ran (in {module:?}): {first}");
    }
    checked?;
    let messages = prefix.debug_log()?;
    // DriverEntry resolved "localhost" with an IPv4 hint and a bound of one address.
    let resolved = messages.iter().find(|m| m.starts_with("status: localhost is") || m.contains("resolve localhost"));
    println!("{TAG}: DbgPrint: {}", resolved.map_or("(no resolution line)", String::as_str));
    let expected = format!("status: localhost is 127.0.0.1:{port} (1 address)");
    if resolved.is_none_or(|m| *m != expected) {
        bail!("{TAG}: wskstatus.sys did not resolve localhost (IPv4 hint, one address) to 127.0.0.1: {resolved:?}");
    }
    let done = messages.iter().rev().find(|m| m.starts_with("status: DriverUnload done"));
    println!("{TAG}: DbgPrint: {}", done.map_or("(no unload line)", String::as_str));
    if done.is_none_or(|m| count_of(m, "sockets open") != Some(0)) {
        bail!("{TAG}: wskstatus.sys did not report `0 sockets open` at unload: {done:?}");
    }
    Ok(())
}

/// How long stress.sys runs under Wine in `cargo xtask test` (and by default in
/// `cargo xtask wine-test`) before it is stopped in the middle of its traffic.
pub const STRESS_WINE_DEFAULT_RUN: Duration = Duration::from_secs(20);

/// Concurrent stress clients under Wine.
const STRESS_WINE_CLIENTS: u32 = 16;

/// Runs of stress.sys that a crash inside one of Wine's own modules may end before one counts.
const STRESS_WINE_ATTEMPTS: usize = 3;

/// stress.sys under Wine with every scenario (its default mix), [`STRESS_WINE_CLIENTS`]
/// clients for `run`, stopped mid-traffic; its unload line must report data moved and no data
/// error, no hang and no socket left open.
///
/// A crash inside one of Wine's modules (not in `stress.sys`) is Wine's: its netio frees a
/// socket that a thread-pool callback still uses when the socket is closed while a receive is
/// pending (see `docs/architecture.md`, "Wine's netio use after free at close"), about one run
/// in five. Such a run is reported and repeated in a fresh session, at most
/// [`STRESS_WINE_ATTEMPTS`] runs in all. A crash in `stress.sys`, or one that cannot be placed
/// in a module, fails at once.
fn stress_under_wine(prefix: &mut WinePrefix, run: Duration) -> Result<()> {
    let sys = drivers::build(&drivers::STRESS)?;
    prefix.install_driver(&sys, drivers::STRESS.name)?;
    let port = echo_client::free_port()?;
    prefix.set_param_dword(drivers::STRESS.name, "Port", u32::from(port))?;
    prefix.set_param_dword(drivers::STRESS.name, "Clients", STRESS_WINE_CLIENTS)?;
    prefix.set_param_dword(drivers::STRESS.name, "Seconds", 0)?;
    for attempt in 1..=STRESS_WINE_ATTEMPTS {
        let mark = prefix.log_mark()?;
        match stress_once(prefix, run, mark)? {
            None => return Ok(()),
            Some(wine_crash) => {
                println!(
                    "{TAG}: stress.sys run {attempt} of {STRESS_WINE_ATTEMPTS} ended by a crash in Wine: {wine_crash}"
                );
            }
        }
    }
    bail!("{TAG}: every one of {STRESS_WINE_ATTEMPTS} stress.sys runs ended by a crash in Wine")
}

/// One run of [`stress_under_wine`]: `Some(description)` when a Wine module crashed.
fn stress_once(prefix: &mut WinePrefix, run: Duration, mark: usize) -> Result<Option<String>> {
    prefix.start(drivers::STRESS.name)?;
    println!("{TAG}: stress.sys running for {} s, {STRESS_WINE_CLIENTS} clients, every scenario ...", run.as_secs());
    std::thread::sleep(run);
    let stopped = prefix.stop(drivers::STRESS.name);
    prefix.end_session()?;
    if let Some((first, module)) = prefix.crash_since(mark)? {
        return match module {
            Some(module) if !is_our_image(&module) => Ok(Some(format!("{first} [in {module}]"))),
            placed => bail!("{TAG}: a Wine process crashed while stress.sys ran (in {placed:?}): {first}"),
        };
    }
    stopped?;
    let messages = prefix.debug_log()?;
    let stress: Vec<&String> = messages.iter().filter(|m| m.starts_with("stress:")).collect();
    for message in &stress {
        println!("{TAG}: DbgPrint: {message}");
    }
    let Some(done) = stress.iter().rev().find(|m| m.contains("DriverUnload done")) else {
        bail!("{TAG}: stress.sys did not complete its unload (log: {})", prefix.debug_log_path().display());
    };
    for counted in ["data errors", "hangs", "sockets open"] {
        if count_of(done, counted) != Some(0) {
            bail!("{TAG}: stress.sys unload line does not say `0 {counted}`: {done}");
        }
    }
    if count_of(done, "bytes checked").is_none_or(|bytes| bytes == 0) {
        bail!("{TAG}: stress.sys moved no data under Wine: {done}");
    }
    Ok(None)
}

/// Whether `module` is one of this repository's driver images.
fn is_our_image(module: &str) -> bool {
    drivers::ALL.iter().any(|d| module.eq_ignore_ascii_case(&format!("{}.sys", d.name)))
}

/// The module a crash line's faulting address lies in: the one loaded (`+loaddll` lines in
/// `log`) at the highest base at or below it. `None` when the line has no address or no
/// module was loaded below it.
pub fn crash_module(log: &str, crash_line: &str) -> Option<String> {
    let hex = |s: &str| u64::from_str_radix(s.trim(), 16).ok();
    let (_, after) = crash_line.split_once(" at address ")?;
    let address = hex(after.split_whitespace().next()?)?;
    log.lines()
        .filter_map(|line| {
            let (_, loaded) = line.split_once("build_module Loaded L\"")?;
            let (path, rest) = loaded.split_once('"')?;
            let base = hex(rest.trim_start().strip_prefix("at ")?.split(':').next()?)?;
            let name = path.rsplit('\\').next()?.to_owned();
            Some((base, name))
        })
        .filter(|&(base, _)| base <= address)
        .max_by_key(|&(base, _)| base)
        .map(|(_, name)| name)
}

/// Whether a Wine log line reports a crash of a process.
pub fn is_crash_line(line: &str) -> bool {
    line.contains("Unhandled page fault") || line.contains("Unhandled exception")
}

/// The number written just before `label` in `message` (`"..., 12 hangs, ..."` gives 12 for
/// `hangs`); `None` if the label is missing or no number precedes it.
pub fn count_of(message: &str, label: &str) -> Option<u64> {
    let at = message.find(&format!(" {label}"))?;
    let before = &message[..at];
    let digits = before.rsplit(|c: char| !c.is_ascii_digit()).next()?;
    digits.parse().ok()
}

/// Checks that each marker occurs in some message after the one holding the previous
/// marker. On failure, names the first marker not found.
pub fn check_markers(messages: &[String], markers: &[&str]) -> Result<(), String> {
    let mut rest = messages;
    for marker in markers {
        match rest.iter().position(|m| m.contains(marker)) {
            Some(i) => rest = &rest[i + 1..],
            None => return Err(format!("`{marker}`")),
        }
    }
    Ok(())
}

/// The message of one `debugstr` line, without Wine's prefix and DbgPrint's
/// component/level pair: `0114:warn:debugstr:vDbgPrintExWithPrefix 00000000:00000001: text`
/// becomes `text`.
pub fn debugstr_message(line: &str) -> Option<&str> {
    let (_, rest) = line.split_once(":debugstr:")?;
    let (_function, message) = rest.split_once(' ')?;
    let message = match message.split_once(": ") {
        Some((ids, text)) if is_component_level(ids) => text,
        _ => message,
    };
    Some(message.trim_end())
}

fn is_component_level(ids: &str) -> bool {
    ids.split_once(':')
        .is_some_and(|(a, b)| [a, b].iter().all(|id| id.len() == 8 && id.chars().all(|c| c.is_ascii_hexdigit())))
}

/// A fresh Wine prefix under `<target>/wine/prefix-<name>`, with logs of every command
/// in `<target>/wine/logs-<name>`. The prefix's wineserver is killed on drop.
pub struct WinePrefix {
    dir: PathBuf,
    logs: PathBuf,
    debug_log: PathBuf,
    /// Commands run so far, to number the log files.
    commands: u32,
    /// Whether a session started by [`WinePrefix::start`] is running.
    in_session: bool,
    /// A user process kept alive during a session: Wine ends its system processes (the
    /// service manager and `winedevice.exe`, which hosts the driver) a few seconds after the
    /// last user process exits, which would unload the driver in the middle of a test.
    keeper: Option<std::process::Child>,
}

impl WinePrefix {
    /// Deletes any previous prefix of this name and creates a new one.
    pub fn new(name: &str) -> Result<Self> {
        let root = util::target_dir().join("wine");
        let mut prefix = Self {
            dir: root.join(format!("prefix-{name}")),
            logs: root.join(format!("logs-{name}")),
            debug_log: root.join(format!("logs-{name}")).join("debug.log"),
            commands: 0,
            in_session: false,
            keeper: None,
        };
        util::remove_dir_all_if_exists(&prefix.logs)?;
        util::create_dir_all(&prefix.logs)?;
        if prefix.dir.exists() {
            prefix.kill_server()?;
            util::remove_dir_all_if_exists(&prefix.dir)?;
        }
        util::create_dir_all(&root)?;
        let start = Instant::now();
        println!("{TAG}: creating prefix {} ...", prefix.dir.display());
        prefix.wine("wineboot", &["wineboot", "-i"], WINEBOOT_TIMEOUT)?;
        // wineboot leaves processes running; the next session must start from scratch.
        prefix.kill_server()?;
        println!("{TAG}: prefix ready in {} s", util::secs(start.elapsed()));
        Ok(prefix)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where `DbgPrint` output of the sessions goes.
    pub fn debug_log_path(&self) -> &Path {
        &self.debug_log
    }

    /// Copies `sys` to `C:\windows\system32\drivers\<service>.sys` and creates a
    /// demand-start kernel service for it.
    pub fn install_driver(&mut self, sys: &Path, service: &str) -> Result<()> {
        let file = format!("{service}.sys");
        let drivers_dir = self.dir.join("drive_c/windows/system32/drivers");
        util::copy(sys, &drivers_dir.join(&file))?;
        let bin_path = format!(r"C:\windows\system32\drivers\{file}");
        println!("{TAG}: installing service {service} ({bin_path})");
        self.wine(
            &format!("sc-create-{service}"),
            &["sc", "create", service, "binPath=", &bin_path, "type=", "kernel", "start=", "demand"],
            COMMAND_TIMEOUT,
        )
    }

    /// Sets `HKLM\System\CurrentControlSet\Services\<service>\Parameters\<name>`.
    pub fn set_param_dword(&mut self, service: &str, name: &str, value: u32) -> Result<()> {
        let key = format!(r"HKLM\System\CurrentControlSet\Services\{service}\Parameters");
        println!("{TAG}: {key}\\{name} = {value}");
        self.wine(
            &format!("reg-{service}-{name}"),
            &["reg", "add", &key, "/v", name, "/t", "REG_DWORD", "/d", &value.to_string(), "/f"],
            COMMAND_TIMEOUT,
        )
    }

    /// Starts a service. Outside a session this first ends every Wine process of the
    /// prefix, so the service start becomes the session's first process and the
    /// driver's `DbgPrint` output lands in the debug log.
    pub fn start(&mut self, service: &str) -> Result<()> {
        let start = Instant::now();
        println!("{TAG}: starting {service} ...");
        let label = format!("start-{service}");
        let args = ["net", "start", service];
        if self.in_session {
            self.wine(&label, &args, COMMAND_TIMEOUT)?;
        } else {
            self.kill_server()?;
            let mut cmd = self.command("wine");
            cmd.env("WINEDEBUG", "fixme-all,warn+debugstr,+loaddll").args(args);
            self.in_session = true;
            let debug_log = self.debug_log.clone();
            self.run(&label, &mut cmd, &debug_log, COMMAND_TIMEOUT)?;
            self.start_keeper()?;
        }
        println!("{TAG}: {service} started in {} s", util::secs(start.elapsed()));
        Ok(())
    }

    /// Stops a service (the driver's unload routine runs). Fails if the session's keeper
    /// process is gone: Wine may then have ended the driver's host on its own, and what the
    /// run measured is not what it meant to.
    pub fn stop(&mut self, service: &str) -> Result<()> {
        self.check_keeper()?;
        let start = Instant::now();
        println!("{TAG}: stopping {service} ...");
        self.wine(&format!("stop-{service}"), &["net", "stop", service], COMMAND_TIMEOUT)?;
        println!("{TAG}: {service} stopped in {} s", util::secs(start.elapsed()));
        Ok(())
    }

    /// Starts `wine cmd` reading a pipe that stays open until [`WinePrefix::end_session`].
    fn start_keeper(&mut self) -> Result<()> {
        let log = self.next_log("keeper");
        let out = std::fs::File::create(&log)?;
        let mut cmd = self.command("wine");
        cmd.arg("cmd").stdin(std::process::Stdio::piped()).stdout(out.try_clone()?).stderr(out);
        self.keeper = Some(cmd.spawn()?);
        Ok(())
    }

    /// Fails if the keeper started with the session has exited.
    fn check_keeper(&mut self) -> Result<()> {
        let Some(keeper) = self.keeper.as_mut() else { return Ok(()) };
        match keeper.try_wait()? {
            None => Ok(()),
            Some(status) => bail!(
                "{TAG}: the session's keeper (`wine cmd`) exited ({status}) while a driver was loaded; Wine ends its \
                 system processes soon after the last user process"
            ),
        }
    }

    fn stop_keeper(&mut self) {
        if let Some(mut keeper) = self.keeper.take() {
            drop(keeper.stdin.take());
            let _ = keeper.kill();
            let _ = keeper.wait();
        }
    }

    /// Lets the session's processes exit on their own for a while, then kills what is
    /// left. Afterwards the debug log is complete.
    pub fn end_session(&mut self) -> Result<()> {
        self.stop_keeper();
        if self.in_session {
            let start = Instant::now();
            println!("{TAG}: waiting for the session to end ...");
            let log = self.next_log("wineserver-wait");
            let mut wait = self.command("wineserver");
            wait.arg("-w");
            // A timeout only means something lingered; the kill below ends it.
            if let Err(e) = util::run_timed(&mut wait, &log, WIND_DOWN_TIMEOUT) {
                println!("{TAG}: note: {e}");
            }
            self.in_session = false;
            println!("{TAG}: session ended in {} s", util::secs(start.elapsed()));
        }
        self.kill_server()
    }

    /// The debug log's current length, to read what a later run adds ([`log_since`](Self::log_since)).
    pub fn log_mark(&self) -> Result<usize> {
        Ok(if self.debug_log.exists() { util::read(&self.debug_log)?.len() } else { 0 })
    }

    /// The debug log written after [`log_mark`](Self::log_mark) returned `mark`.
    pub fn log_since(&self, mark: usize) -> Result<String> {
        if !self.debug_log.exists() {
            return Ok(String::new());
        }
        let bytes = util::read(&self.debug_log)?;
        Ok(String::from_utf8_lossy(bytes.get(mark..).unwrap_or_default()).into_owned())
    }

    /// The first crash logged after `mark` ([`log_mark`](Self::log_mark)), with the module its
    /// address falls in ([`crash_module`]).
    pub fn crash_since(&self, mark: usize) -> Result<Option<(String, Option<String>)>> {
        let log = self.log_since(mark)?;
        Ok(log.lines().find(|l| is_crash_line(l)).map(|first| (first.to_owned(), crash_module(&log, first))))
    }

    /// Lines of the session log that say a Wine process crashed (an unhandled page fault or
    /// exception in the driver's host is how a use after free in the driver shows under Wine).
    pub fn crash_lines(&self) -> Result<Vec<String>> {
        if !self.debug_log.exists() {
            return Ok(Vec::new());
        }
        let bytes = util::read(&self.debug_log)?;
        let text = String::from_utf8_lossy(&bytes);
        Ok(text.lines().filter(|l| is_crash_line(l)).map(str::to_owned).collect())
    }

    /// The `DbgPrint` messages logged so far, oldest first.
    pub fn debug_log(&self) -> Result<Vec<String>> {
        if !self.debug_log.exists() {
            return Ok(Vec::new());
        }
        let bytes = util::read(&self.debug_log)?;
        let text = String::from_utf8_lossy(&bytes);
        Ok(text.lines().filter_map(debugstr_message).map(str::to_owned).collect())
    }

    /// A command bound to this prefix, headless and quiet unless told otherwise.
    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("WINEPREFIX", &self.dir)
            .env("WINEDEBUG", "-all")
            // No Mono or Gecko installers: there is no network and no one to click.
            .env("WINEDLLOVERRIDES", "mscoree,mshtml=")
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY");
        cmd
    }

    /// Runs `wine <args>` and requires success.
    fn wine(&mut self, label: &str, args: &[&str], timeout: Duration) -> Result<()> {
        let log = self.next_log(label);
        let mut cmd = self.command("wine");
        cmd.args(args);
        self.run(label, &mut cmd, &log, timeout)
    }

    fn run(&mut self, label: &str, cmd: &mut Command, log: &Path, timeout: Duration) -> Result<()> {
        let line = util::display_command(cmd);
        let done = util::run_timed(cmd, log, timeout)?;
        if !done.status.success() {
            bail!(
                "{TAG}: {label}: `{line}` failed with {} after {} s; last output ({}):\n{}",
                done.status,
                util::secs(done.elapsed),
                log.display(),
                util::tail(log, 25)
            );
        }
        Ok(())
    }

    /// Kills every process of this prefix. Succeeds when no server was running.
    fn kill_server(&mut self) -> Result<()> {
        let log = self.next_log("wineserver-kill");
        let mut cmd = self.command("wineserver");
        cmd.arg("-k");
        // Exit status 1 only means there was no server to kill.
        util::run_timed(&mut cmd, &log, SERVER_TIMEOUT).map(drop)
    }

    fn next_log(&mut self, label: &str) -> PathBuf {
        self.commands += 1;
        self.logs.join(format!("{:02}-{label}.log", self.commands))
    }
}

impl Drop for WinePrefix {
    fn drop(&mut self) {
        self.stop_keeper();
        if let Err(e) = self.kill_server() {
            eprintln!("{TAG}: cleaning up {}: {e}", self.dir.display());
        }
    }
}

#[cfg(test)]
mod tests {
    /// Lines as Wine 8.0 writes them (from a stress.sys run that crashed in netio).
    const LOADS: &str = "0120:trace:loaddll:build_module Loaded L\"C:\\windows\\system32\\ntoskrnl.exe\" at 000000031CA90000: builtin\n\
        0120:trace:loaddll:build_module Loaded L\"C:\\windows\\system32\\drivers\\NETIO.SYS\" at 00000001D8260000: builtin\n\
        0120:trace:loaddll:build_module Loaded L\"C:\\windows\\system32\\drivers\\stress.sys\" at 0000000180000000: native\n";

    #[test]
    fn a_crash_is_placed_in_the_module_below_its_address() {
        let netio = "wine: Unhandled page fault on read access to 0000000000000000 at address 00000001D8264490 (thread 0140), starting debugger...";
        assert_eq!(crash_module(LOADS, netio).as_deref(), Some("NETIO.SYS"));
        assert!(!is_our_image("NETIO.SYS"));
        let ours = "wine: Unhandled page fault on write access to 0000000000000038 at address 0000000180001234 (thread 0138), starting debugger...";
        assert_eq!(crash_module(LOADS, ours).as_deref(), Some("stress.sys"));
        assert!(is_our_image("stress.sys") && is_our_image("ECHO.SYS"));
        let below_every_module =
            "wine: Unhandled page fault on read access to 0 at address 0000000000401000 (thread 0140)";
        assert_eq!(crash_module(LOADS, below_every_module), None);
        assert_eq!(crash_module(LOADS, "wine: Unhandled exception 0xc0000005 in thread 0140"), None);
    }

    use super::*;

    fn owned(lines: &[&str]) -> Vec<String> {
        lines.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn extracts_dbgprint_text() {
        let line = "0114:warn:debugstr:vDbgPrintExWithPrefix 00000000:00000001: echo: DriverEntry 42";
        assert_eq!(debugstr_message(line), Some("echo: DriverEntry 42"));
        let plain = "0030:warn:debugstr:OutputDebugStringA \"hi\"\n";
        assert_eq!(debugstr_message(plain), Some("\"hi\""));
        assert_eq!(debugstr_message("0044:err:winediag:nodrv_CreateWindow x"), None);
        assert_eq!(debugstr_message("The echo service is starting."), None);
    }

    #[test]
    fn markers_must_appear_in_order() {
        let log = owned(&[
            "echo: DriverEntry",
            "echo: WskRegister ok",
            "echo: WskCaptureProviderNPI ok",
            "echo: listening on 127.0.0.1:7007",
            "echo: DriverUnload done",
        ]);
        assert_eq!(check_markers(&log, ECHO_SMOKE_MARKERS), Ok(()));

        let reordered = owned(&["echo: WskRegister ok", "echo: DriverEntry"]);
        assert_eq!(check_markers(&reordered, &["DriverEntry", "WskRegister ok"]), Err("`WskRegister ok`".to_owned()));
        let missing_unload = &log[..4];
        assert_eq!(check_markers(missing_unload, ECHO_SMOKE_MARKERS), Err("`DriverUnload done`".to_owned()));
    }

    #[test]
    fn crash_lines_are_recognized() {
        assert!(is_crash_line(
            "wine: Unhandled page fault on read access to FFFFFFFFFFFFFFFF at address 0000000180012345"
        ));
        assert!(is_crash_line("wine: Unhandled exception 0xc0000005 in thread 12c"));
        assert!(!is_crash_line("0084:fixme:hid:handle_IRP_MN_QUERY_ID Unhandled type 00000005"));
    }

    #[test]
    fn counts_are_read_whole() {
        let line = "stress: DriverUnload done: 539952201 bytes checked, 410 data errors, 0 hangs, 0 sockets open";
        assert_eq!(count_of(line, "data errors"), Some(410));
        assert_eq!(count_of(line, "hangs"), Some(0));
        assert_eq!(count_of(line, "sockets open"), Some(0));
        assert_eq!(count_of(line, "bytes checked"), Some(539_952_201));
        assert_eq!(count_of("echo: 10 sockets open", "sockets open"), Some(10));
        assert_eq!(count_of("echo: no sockets open", "sockets open"), None);
        assert_eq!(count_of("echo: done", "sockets open"), None);
    }

    #[test]
    fn each_marker_needs_its_own_line() {
        let log = owned(&["DriverEntry and WskRegister ok in one line"]);
        assert!(check_markers(&log, &["DriverEntry", "WskRegister ok"]).is_err());
    }
}
