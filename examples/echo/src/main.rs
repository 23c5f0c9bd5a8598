//! `cargo run -p echo-driver`: the echo driver, unchanged, loaded into the host kernel
//! emulator with the verifier on. Serves until Ctrl-C (or `--seconds N`), then unloads the
//! driver, prints a summary and the verifier report, and exits 0 only if the report is clean.

use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use echo_driver::blocking::{self, ThreadRoutine, blocking_driver_entry};
use echo_driver::driver::{DEFAULT_PORT, driver_entry};
use echo_driver::server::STATS;
use wsk_emulator::Kernel;

const USAGE: &str = "usage: echo-driver [--port N] [--addr IP] [--seconds N] [--quiet] [--irp-receive] [--blocking]
                   [--no-verifier] [--chaos SEED] [--max-connections N] [--max-per-peer N] [--idle-seconds N]

Loads the echo driver into the host kernel emulator (verifier on unless --no-verifier,
as a driver runs without Driver Verifier in production) and serves TCP echo on
ADDR:PORT (default 127.0.0.1:7007) until Ctrl-C, or for N seconds with --seconds.
--addr :: listens dual stack: IPv6 and IPv4 clients, the latter seen as ::ffff:a.b.c.d
(not with --blocking, which serves IPv6 only there).
--quiet hides the driver's per-connection debug lines. The driver receives with WSK event
callbacks (zero copy); --irp-receive makes it receive with IRPs (its ReceiveEvents
parameter 0). --blocking loads the blocking
baseline instead (echo_driver::blocking: a thread per connection, one KEVENT wait per WSK
call), each of its threads a host thread as PsCreateSystemThread would give. --chaos SEED
runs the emulator's adversarial provider (wsk_emulator::adversary), as WSK_EMU_CHAOS=SEED.
--max-connections N serves at most N connections at once (others wait in the listen
backlog); --max-per-peer N refuses a peer address's connections beyond N (conditional
accept): the driver's MaxConnections and MaxPerPeer parameters (0: unlimited, the default;
not with --blocking).
--idle-seconds N closes a connection whose peer sends nothing for N seconds (the driver's
IdleSeconds parameter; 0, the default: never).";

struct Args {
    port: u16,
    addr: String,
    seconds: Option<u64>,
    quiet: bool,
    irp_receive: bool,
    blocking: bool,
    chaos: Option<u64>,
    max_connections: u32,
    max_per_peer: u32,
    idle_seconds: u32,
    verifier: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        port: DEFAULT_PORT,
        addr: "127.0.0.1".to_owned(),
        seconds: None,
        quiet: false,
        irp_receive: false,
        blocking: false,
        chaos: None,
        max_connections: 0,
        max_per_peer: 0,
        idle_seconds: 0,
        verifier: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--port" => args.port = value("--port")?.parse().map_err(|e| format!("--port: {e}"))?,
            "--addr" => args.addr = value("--addr")?,
            "--seconds" => args.seconds = Some(value("--seconds")?.parse().map_err(|e| format!("--seconds: {e}"))?),
            "--quiet" => args.quiet = true,
            "--blocking" => args.blocking = true,
            "--irp-receive" => args.irp_receive = true,
            "--no-verifier" => args.verifier = false,
            "--idle-seconds" => {
                args.idle_seconds = value("--idle-seconds")?.parse().map_err(|e| format!("--idle-seconds: {e}"))?;
            }
            "--chaos" => {
                let v = value("--chaos")?;
                args.chaos =
                    Some(wsk_emulator::adversary::parse_seed(&v).ok_or(format!("--chaos: `{v}` is not a seed"))?);
            }
            "--max-connections" => {
                args.max_connections =
                    value("--max-connections")?.parse().map_err(|e| format!("--max-connections: {e}"))?;
            }
            "--max-per-peer" => {
                args.max_per_peer = value("--max-per-peer")?.parse().map_err(|e| format!("--max-per-peer: {e}"))?;
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    args.addr.parse::<std::net::IpAddr>().map_err(|e| format!("--addr {}: {e}", args.addr))?;
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("echo-driver: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    if let Err(e) = ctrlc::set_handler(move || {
        let _ = stop_tx.send(());
    }) {
        eprintln!("echo-driver: cannot install the Ctrl-C handler: {e}");
        return ExitCode::FAILURE;
    }
    let entry = if args.blocking {
        blocking::set_thread_starter(start_host_thread);
        blocking_driver_entry
    } else {
        driver_entry
    };
    if let Some(seed) = args.chaos {
        wsk_emulator::adversary::set(wsk_emulator::adversary::Adversary::chaos(seed));
    }
    let driver = match Kernel::builder()
        .verifier(args.verifier)
        .echo_debug_output(!args.quiet)
        .param_dword("Port", u32::from(args.port))
        .param_string("Address", &args.addr)
        .param_dword("ReceiveEvents", u32::from(!args.irp_receive))
        .param_dword("MaxConnections", args.max_connections)
        .param_dword("MaxPerPeer", args.max_per_peer)
        .param_dword("IdleSeconds", args.idle_seconds)
        .load("echo", entry)
    {
        Ok(driver) => driver,
        Err(e) => {
            eprintln!("echo-driver: {e}");
            return ExitCode::FAILURE;
        }
    };
    let footprint = wsk_emulator::Footprint::start(|| STATS.open.load(Ordering::Relaxed));
    let started = Instant::now();
    let serving = std::net::SocketAddr::new(args.addr.parse().expect("checked by parse_args"), args.port);
    println!("echo-driver: serving on {serving} (Ctrl-C to stop)");
    match args.seconds {
        Some(s) => {
            let _ = stop_rx.recv_timeout(Duration::from_secs(s));
        }
        None => {
            let _ = stop_rx.recv();
        }
    }
    println!("echo-driver: stopping after {:.1} s; unloading the driver", started.elapsed().as_secs_f64());
    let footprint = footprint.finish();
    let counters = wsk_emulator::counters();
    let report = driver.unload();
    println!(
        "echo-driver: {} connections, {} bytes echoed ({} zero-copy: echoed from WSK's own buffers; {} of them \
         reflected: sent back by the receive callback), {} errors; {} bytes refused by receive callbacks \
         (indicated again), {} host reads",
        STATS.connections.load(Ordering::Relaxed),
        STATS.bytes.load(Ordering::Relaxed),
        STATS.zero_copy_bytes.load(Ordering::Relaxed),
        STATS.reflected_bytes.load(Ordering::Relaxed),
        STATS.errors.load(Ordering::Relaxed),
        counters.refused_bytes,
        counters.host_reads
    );
    println!("echo-driver: {footprint}");
    println!("{report}");
    if report.is_clean() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

/// The blocking driver's thread source on the host: a host thread per routine, standing in
/// for `PsCreateSystemThread`.
///
/// # Safety
/// As [`blocking::StartThread`].
unsafe fn start_host_thread(routine: ThreadRoutine, context: wsk_sys::PVOID) -> bool {
    let context = context as usize;
    std::thread::Builder::new()
        .name("echo-blocking".to_owned())
        // SAFETY: the caller guarantees `context` for `routine`.
        .spawn(move || unsafe { routine(context as wsk_sys::PVOID) })
        .is_ok()
}
