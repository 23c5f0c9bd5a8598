//! `cargo run -p status-driver`: the status driver, unchanged, loaded into the host kernel
//! emulator with the verifier on. Serves until Ctrl-C (or `--seconds N`), then unloads the
//! driver, prints the verifier report, and exits 0 only if the report is clean.

use std::process::ExitCode;
use std::sync::mpsc;
use std::time::Duration;

use status_driver::driver::{DEFAULT_PORT, driver_entry};
use wsk_emulator::Kernel;

const USAGE: &str = "usage: status-driver [--port N] [--seconds N] [--quiet]

Loads the status driver into the host kernel emulator (verifier on) and serves HTTP/1.1 on
127.0.0.1:PORT (default 8080: GET / and GET /status) until Ctrl-C, or for N seconds.";

fn parse_args() -> Result<(u16, Option<u64>, bool), String> {
    let (mut port, mut seconds, mut quiet) = (DEFAULT_PORT, None, false);
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--port" => port = value("--port")?.parse().map_err(|e| format!("--port: {e}"))?,
            "--seconds" => seconds = Some(value("--seconds")?.parse().map_err(|e| format!("--seconds: {e}"))?),
            "--quiet" => quiet = true,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok((port, seconds, quiet))
}

fn main() -> ExitCode {
    let (port, seconds, quiet) = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("status-driver: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    if let Err(e) = ctrlc::set_handler(move || {
        let _ = stop_tx.send(());
    }) {
        eprintln!("status-driver: cannot install the Ctrl-C handler: {e}");
        return ExitCode::FAILURE;
    }
    let driver = match Kernel::builder()
        .verifier(true)
        .echo_debug_output(!quiet)
        .param_dword("Port", u32::from(port))
        .load("status", driver_entry)
    {
        Ok(driver) => driver,
        Err(e) => {
            eprintln!("status-driver: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("status-driver: serving http://127.0.0.1:{port}/ (Ctrl-C to stop)");
    let _ = match seconds {
        Some(s) => stop_rx.recv_timeout(Duration::from_secs(s)).ok(),
        None => stop_rx.recv().ok(),
    };
    let report = driver.unload();
    println!("{report}");
    if report.is_clean() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
