//! `cargo xtask flood`: many idle connections to the host `echo-driver`, from a process of
//! their own (the emulator's process holds a host socket per connection too, and the fd limit
//! is per process).
//!
//! With `--addr`, the client alone: opens N connections to a running `echo-driver`, echoes
//! one byte on each (every connection is served), holds them idle for `--hold` seconds,
//! then closes them. Without it, the whole measurement: starts `echo-driver` (release, on a
//! free port, verifier on), floods it, stops it (Ctrl-C) while the connections are still
//! held so that its exit figures are those of idle connections, requires its clean exit
//! (verifier report clean) and prints its footprint line (see `wsk_emulator::Footprint`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::echo_client;
use crate::util::{self, Result, bail};

const TAG: &str = "flood";

/// What the client did.
#[derive(Debug, Clone, Copy)]
pub struct FloodReport {
    /// Connections opened and held.
    pub connections: usize,
    /// Time to open them all.
    pub connect_time: Duration,
    /// Connections on which one byte came back.
    pub echoed: usize,
}

/// Opens `n` connections to `addr`, echoes one byte on each, and returns them held.
pub fn open_and_echo(addr: SocketAddr, n: usize) -> Result<(Vec<TcpStream>, FloodReport)> {
    let start = Instant::now();
    let mut held = Vec::with_capacity(n);
    for i in 0..n {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
            .map_err(|e| util::Error::msg(format!("{TAG}: connection {i} of {n}: {e}")))?;
        held.push(stream);
        if (i + 1) % 2000 == 0 {
            println!("{TAG}: {} connections open ({:.1} s)", i + 1, start.elapsed().as_secs_f64());
        }
    }
    let connect_time = start.elapsed();
    for (i, stream) in held.iter_mut().enumerate() {
        stream.write_all(&[i as u8]).map_err(|e| util::Error::msg(format!("{TAG}: send on connection {i}: {e}")))?;
    }
    let mut echoed = 0;
    for (i, stream) in held.iter_mut().enumerate() {
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut byte = [0u8];
        stream.read_exact(&mut byte).map_err(|e| util::Error::msg(format!("{TAG}: echo on connection {i}: {e}")))?;
        if byte[0] != i as u8 {
            bail!("{TAG}: connection {i} echoed {} instead of {}", byte[0], i as u8);
        }
        echoed += 1;
    }
    println!(
        "{TAG}: {n} connections open in {:.1} s, one byte echoed on each; holding them idle",
        connect_time.as_secs_f64()
    );
    Ok((held, FloodReport { connections: n, connect_time, echoed }))
}

/// `cargo xtask flood ARGS`.
pub fn run(args: &[String]) -> Result<()> {
    let mut connections = 2000usize;
    let mut hold = 5u64;
    let mut addr: Option<SocketAddr> = None;
    let mut extra: Vec<String> = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value =
            |name: &str| it.next().cloned().ok_or_else(|| util::Error::msg(format!("{name} needs a value")));
        match arg.as_str() {
            "--connections" => {
                connections = value("--connections")?.parse().map_err(|e| util::Error::msg(format!("{e}")))?;
            }
            "--hold" => hold = value("--hold")?.parse().map_err(|e| util::Error::msg(format!("{e}")))?,
            "--addr" => addr = Some(value("--addr")?.parse().map_err(|e| util::Error::msg(format!("--addr: {e}")))?),
            "--irp-receive" => extra.push(arg.clone()),
            other => bail!(
                "unexpected argument `{other}` for `flood` (--connections N, --hold SECONDS, --addr IP:PORT, --irp-receive)"
            ),
        }
    }
    match addr {
        Some(addr) => {
            let (held, _) = open_and_echo(addr, connections)?;
            std::thread::sleep(Duration::from_secs(hold));
            drop(held);
            println!("{TAG}: closed {connections} connections");
            Ok(())
        }
        None => measure(connections, &extra.iter().map(String::as_str).collect::<Vec<_>>()).map(drop),
    }
}

/// What an idle connection of the default event path may cost (library, driver and task).
pub const PER_IDLE_CONNECTION: u64 = 2048;

/// The CI step: [`measure`] with `connections`, and the driver's figure per connection at
/// most [`PER_IDLE_CONNECTION`] bytes.
pub fn check(connections: usize) -> Result<()> {
    let line = measure(connections, &[])?;
    let Some(per) = per_connection(&line) else { bail!("{TAG}: no per-connection figure in `{line}`") };
    if per > PER_IDLE_CONNECTION {
        bail!("{TAG}: an idle connection costs {per} bytes of non-paged memory, above {PER_IDLE_CONNECTION}");
    }
    Ok(())
}

/// The `N bytes per connection` figure of a footprint line.
fn per_connection(line: &str) -> Option<u64> {
    let before = line.split(" bytes per connection").next()?;
    before.rsplit(' ').next()?.parse().ok()
}

/// Starts the release `echo-driver` (with `extra` arguments), opens `connections` idle
/// connections from this process, stops the driver while they are held, and requires its
/// clean exit. Returns the driver's footprint line.
pub fn measure(connections: usize, extra: &[&str]) -> Result<String> {
    let mut build = Command::new("cargo");
    build.current_dir(util::workspace_root()).args(["build", "--release", "-p", "echo-driver"]);
    util::run_inherit(&mut build)?;
    let port = echo_client::free_port()?;
    println!("{TAG}: echo-driver {} on 127.0.0.1:{port}, {connections} connections", extra.join(" "));
    let mut child = Command::new(util::target_dir().join("release").join("echo-driver"))
        .args(["--port", &port.to_string(), "--quiet", "--seconds", "600"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let start = Instant::now();
    // Wait until it listens (the probe is one connection more, closed at once).
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            bail!("{TAG}: echo-driver did not start listening within 60 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let flooded = open_and_echo(addr, connections);
    // Let the probe's task end and the last echoes' buffers go back before the stop.
    std::thread::sleep(Duration::from_millis(500));
    let signalled = Command::new("kill").args(["-INT", &child.id().to_string()]).status()?;
    if !signalled.success() {
        let _ = child.kill();
        bail!("{TAG}: could not signal echo-driver");
    }
    let output = child.wait_with_output()?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    // The connections are held until the driver has exited.
    let (held, report) = flooded?;
    drop(held);
    print!("{stdout}");
    if !output.status.success() {
        bail!("{TAG}: echo-driver exited with {} (verifier report above)", output.status);
    }
    if report.echoed != connections {
        bail!("{TAG}: {} of {connections} connections echoed", report.echoed);
    }
    let Some(line) = stdout.lines().find(|line| line.contains("per connection")) else {
        bail!("{TAG}: echo-driver printed no footprint line");
    };
    println!("{TAG}: {connections} connections held, all echoed; driver: {}", line.trim_start_matches("echo-driver: "));
    Ok(line.to_owned())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_per_connection_figure_is_read_from_the_footprint_line() {
        let line = "echo-driver: peak non-paged 3882552 bytes, 2288 with no connection, peak 2000 connections: \
                    1940 bytes per connection ((peak - no connection) / peak connections)";
        assert_eq!(super::per_connection(line), Some(1940));
        assert_eq!(super::per_connection("echo-driver: no figure"), None);
    }
}
