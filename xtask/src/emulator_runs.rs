//! The host binaries on the emulator, as CI runs them: the echo driver driven by the same
//! end-to-end client as the Wine test, and a bounded stress run (clean, then with injected
//! allocation failures); and the same under the emulator's adversarial provider (`chaos`).
//! Each run must end with a clean verifier report (exit status 0).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::echo_client::{self, ClientConfig};
use crate::http_client;
use crate::util::{self, Result, bail};

const TAG: &str = "emulator";

fn cargo_build_release(package: &str) -> Result<()> {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(util::workspace_root()).args(["build", "--release", "-p", package]);
    util::run_inherit(&mut cmd)
}

fn binary(name: &str) -> std::path::PathBuf {
    util::target_dir().join("release").join(name)
}

/// Starts the host binary of `package` on a free port of 127.0.0.1 (`--port P --quiet
/// --seconds 600`), waits until it listens, runs `client` against it, stops it with SIGINT
/// (as Ctrl-C) and requires exit status 0 (a clean verifier report), then `client`'s result.
fn serve_and_check<T>(
    package: &str,
    extra: &[&str],
    client: impl FnOnce(std::net::SocketAddr) -> Result<T>,
) -> Result<T> {
    cargo_build_release(package)?;
    let port = echo_client::free_port()?;
    println!("{TAG}: {package} {} on 127.0.0.1:{port}", extra.join(" "));
    let mut child = Command::new(binary(package))
        .args(["--port", &port.to_string(), "--quiet", "--seconds", "600"])
        .args(extra)
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .spawn()?;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    // Wait until it listens.
    let start = Instant::now();
    while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            bail!("{TAG}: {package} did not start listening within 60 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let checked = client(addr);
    let status = Command::new("kill").args(["-INT", &child.id().to_string()]).status()?;
    if !status.success() {
        let _ = child.kill();
        bail!("{TAG}: could not signal {package}");
    }
    let exit = child.wait()?;
    let checked = checked?;
    if !exit.success() {
        bail!("{TAG}: {package} exited with {exit} (verifier report above)");
    }
    Ok(checked)
}

/// `echo-driver` on the emulator against the end-to-end client (`serve_and_check`).
pub fn echo_e2e() -> Result<()> {
    echo_e2e_with(&[])
}

/// [`echo_e2e`] with more arguments for `echo-driver` (`--chaos SEED`).
fn echo_e2e_with(extra: &[&str]) -> Result<()> {
    let report = serve_and_check("echo-driver", extra, |addr| {
        echo_client::run(&ClientConfig::standard(addr))
            .map_err(|e| util::Error::msg(format!("{TAG}: echo client failed: {e}")))
    })?;
    println!(
        "{TAG}: client: {} connections, {} bytes echoed and checked, {} resets, in {} s",
        report.connections,
        report.bytes,
        report.resets,
        util::secs(report.elapsed)
    );
    Ok(())
}

/// The status driver on the emulator against `curl` ([`http_client::check`], through
/// `serve_and_check`).
pub fn status_e2e() -> Result<()> {
    serve_and_check("status-driver", &[], http_client::check).map(drop)
}

/// Seeds of the adversarial runs (`WSK_EMU_CHAOS`, `--chaos`): fixed, so a failure is
/// reproduced by the same command.
pub const CHAOS_SEEDS: &[u64] = &[1, 20261204, 0x5eed];

/// The library against the emulator's adversarial provider (`wsk_emulator::adversary`):
/// the chaos test binary under each seed of [`CHAOS_SEEDS`], the echo driver under the first
/// seed against the end-to-end client, and a stress run of `seconds`, clean and then with 5%
/// of allocations, mappings and provider calls failing, under the second.
pub fn chaos(seconds: u64) -> Result<()> {
    for seed in CHAOS_SEEDS {
        println!("{TAG}: chaos tests, WSK_EMU_CHAOS={seed}");
        let mut cmd = Command::new("cargo");
        cmd.current_dir(util::workspace_root()).env("WSK_EMU_CHAOS", seed.to_string()).args([
            "test",
            "-p",
            "wsk-tests",
            "--test",
            "chaos",
        ]);
        util::run_inherit(&mut cmd)?;
    }
    echo_e2e_with(&["--chaos", &CHAOS_SEEDS[0].to_string()])?;
    stress_runs(seconds, &["--chaos", &CHAOS_SEEDS[1].to_string()])
}

/// A bounded stress run: `seconds` clean, then `seconds` with 5% of allocations failing.
pub fn stress(seconds: u64) -> Result<()> {
    stress_runs(seconds, &[])
}

fn stress_runs(seconds: u64, extra: &[&str]) -> Result<()> {
    cargo_build_release("stress-driver")?;
    for (label, low) in [("clean", vec![]), ("low resources 5%", vec!["--low-resources", "5%"])] {
        println!("{TAG}: stress ({label}) {}, 200 sockets for {seconds} s", extra.join(" "));
        let mut cmd = Command::new(binary("stress-driver"));
        cmd.args(["--sockets", "200", "--seconds", &seconds.to_string(), "--seed", "20261124", "--progress", "10"])
            .args(&low)
            .args(extra);
        util::run_inherit(&mut cmd)?;
    }
    Ok(())
}
