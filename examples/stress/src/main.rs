//! `cargo run --release -p stress-driver -- --sockets 1000 --seconds 60 --seed N --low-resources 5%`
//!
//! Runs the stress driver on the host kernel emulator with every verifier rule on and, with
//! `--low-resources`, random allocation failures. Prints progress every few seconds and a final
//! table; exits 0 only when the run leaked nothing, the verifier saw no violation, no echoed
//! byte differed and no operation hung (exceeded its bound).

use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use stress_driver::driver::driver_entry;
use stress_driver::stats::{OP_NAMES, STATS};
use wsk_emulator::{FaultPlan, Kernel};

const USAGE: &str = "usage: stress-driver [--sockets N] [--seconds N] [--operations N] [--seed N]
                     [--low-resources P%] [--chaos SEED] [--port N] [--progress SECONDS]

--sockets        concurrent sockets (half client, half server side; default 32)
--seconds        run time; the driver is unloaded at the end, in the middle of its traffic
--operations     stop the workers after N operations (0: no limit)
--low-resources  fail this share of pool/IRP/MDL allocations, mappings and provider calls at
                 random (e.g. 5%)
--chaos          the emulator's adversarial provider, seeded (wsk_emulator::adversary: four
                 provider processors, late and caller-IRQL completions, overlapping
                 callbacks, random indication shapes, unmapped MDLs); as WSK_EMU_CHAOS=SEED";

struct Args {
    sockets: u32,
    seconds: u64,
    operations: u32,
    seed: u32,
    low_resources_ppm: u32,
    port: u16,
    progress: u64,
    chaos: Option<u64>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        sockets: 32,
        seconds: 10,
        operations: 0,
        seed: 1,
        low_resources_ppm: 0,
        port: 0,
        progress: 2,
        chaos: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        let num = |name: &str, v: String| v.parse::<u64>().map_err(|e| format!("{name}: {e}"));
        match arg.as_str() {
            "--sockets" => a.sockets = num("--sockets", value("--sockets")?)?.max(2) as u32,
            "--seconds" => a.seconds = num("--seconds", value("--seconds")?)?,
            "--operations" => a.operations = num("--operations", value("--operations")?)? as u32,
            "--seed" => a.seed = num("--seed", value("--seed")?)? as u32,
            "--port" => a.port = num("--port", value("--port")?)? as u16,
            "--progress" => a.progress = num("--progress", value("--progress")?)?.max(1),
            "--low-resources" => {
                let v = value("--low-resources")?;
                let pct: f64 = v.trim_end_matches('%').parse().map_err(|e| format!("--low-resources: {e}"))?;
                if !(0.0..=100.0).contains(&pct) {
                    return Err("--low-resources must be between 0% and 100%".into());
                }
                a.low_resources_ppm = (pct * 10_000.0) as u32;
            }
            "--chaos" => {
                let v = value("--chaos")?;
                a.chaos = Some(wsk_emulator::adversary::parse_seed(&v).ok_or(format!("--chaos: `{v}` is not a seed"))?);
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    if a.port == 0 {
        a.port =
            std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|x| x.port()).unwrap_or(7008);
    }
    Ok(a)
}

fn progress_line(start: Instant) {
    let ops: Vec<String> =
        OP_NAMES.iter().zip(STATS.ops.iter()).map(|(n, c)| format!("{n} {}", c.load(Ordering::Relaxed))).collect();
    println!(
        "stress: {:>5.1} s  ops {:>8}  open sockets {:>5}  bytes checked {:>11}  [{}]",
        start.elapsed().as_secs_f64(),
        STATS.total_ops(),
        STATS.open_sockets.load(Ordering::Relaxed),
        STATS.bytes.load(Ordering::Relaxed),
        ops.join(", ")
    );
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("stress-driver: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    if let Some(seed) = args.chaos {
        wsk_emulator::adversary::set(wsk_emulator::adversary::Adversary::chaos(seed));
    }
    let chaos = wsk_emulator::adversary::get();
    let driver = match Kernel::builder()
        .verifier(true)
        .capture_sites(false)
        .param_dword("Port", u32::from(args.port))
        .param_dword("Clients", args.sockets / 2)
        .param_dword("Seconds", 0)
        .param_dword("Operations", args.operations)
        .param_dword("Seed", args.seed)
        .load("stress", driver_entry)
    {
        Ok(d) => d,
        Err(e) => {
            eprintln!("stress-driver: {e}");
            return ExitCode::FAILURE;
        }
    };
    if args.low_resources_ppm > 0 {
        driver.set_fault_plan(FaultPlan::Random { seed: u64::from(args.seed), rate_ppm: args.low_resources_ppm });
    }
    println!(
        "stress: {} sockets for {} s, seed {}, low resources {:.2}%, {}",
        args.sockets,
        args.seconds,
        args.seed,
        f64::from(args.low_resources_ppm) / 10_000.0,
        if chaos.any() {
            format!("adversarial provider (seed {}, {} processors)", chaos.seed, chaos.processors)
        } else {
            "kind provider".to_owned()
        }
    );
    let footprint = wsk_emulator::Footprint::start(|| STATS.open_sockets.load(Ordering::Relaxed));
    let start = Instant::now();
    let end = start + Duration::from_secs(args.seconds);
    let mut next = start + Duration::from_secs(args.progress);
    while Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
        if Instant::now() >= next {
            progress_line(start);
            next += Duration::from_secs(args.progress);
        }
        if driver.crashed() {
            break;
        }
    }
    progress_line(start);
    // Injected failures stop at unload: the unload protocol itself must run, and its own
    // failure paths are covered by the systematic sweep.
    driver.set_fault_plan(FaultPlan::None);
    println!("stress: unloading in the middle of traffic");
    let footprint = footprint.finish();
    let report = driver.unload();

    println!("\n{:<24} {:>12}", "operation", "count");
    for (name, count) in OP_NAMES.iter().zip(STATS.ops.iter()) {
        println!("{:<24} {:>12}", name, count.load(Ordering::Relaxed));
    }
    println!("\n{:<24} {:>12}", "failure (NTSTATUS)", "count");
    for (status, count) in STATS.failure_status.iter().zip(STATS.failure_count.iter()) {
        let (s, c) = (status.load(Ordering::Relaxed), count.load(Ordering::Relaxed));
        if c > 0 {
            let name = wsk_sys::status_name(s).map(str::to_owned).unwrap_or_else(|| format!("0x{:08X}", s as u32));
            println!("{name:<24} {c:>12}");
        }
    }
    let other = STATS.failure_other.load(Ordering::Relaxed);
    if other > 0 {
        println!("{:<24} {other:>12}", "(other)");
    }
    let leaks = report.leaks.len();
    let violations = report.bugchecks.len();
    let data_errors = STATS.data_errors.load(Ordering::Relaxed);
    println!();
    println!(
        "{:<24} {:>12}",
        "cancellations",
        STATS.ops[stress_driver::stats::Op::Cancel as usize].load(Ordering::Relaxed)
    );
    println!("{:<24} {:>12}", "peak sockets", STATS.peak_sockets.load(Ordering::Relaxed));
    println!("{:<24} {:>12}", "peak non-paged bytes", report.counters.peak_nonpaged_bytes);
    // Sockets, both ends of a connection counted (see `wsk_emulator::Footprint`).
    println!(
        "{:<24} {:>12}",
        "non-paged per socket",
        footprint.per_connection().map_or("-".to_owned(), |b| b.to_string())
    );
    println!("{:<24} {:>12}", "injected failures", report.faults.injected);
    if chaos.any() {
        println!("{:<24} {:>12}", "adversary decisions", wsk_emulator::adversary::decisions());
        let (mappings, failed) = wsk_emulator::adversary::mapping_stats();
        println!("{:<24} {:>12}", "mappings (failed)", format!("{mappings} ({failed})"));
        println!("{:<24} {:>12}", "provider's own cancels", wsk_emulator::adversary::stats().provider_cancels);
    }
    println!("{:<24} {:>12}", "bytes checked", STATS.bytes.load(Ordering::Relaxed));
    println!("{:<24} {:>12}", "data errors", data_errors);
    let hangs = STATS.hangs.load(Ordering::Relaxed);
    println!("{:<24} {:>12}", "hangs", hangs);
    println!("leaks: {leaks}");
    println!("violations: {violations}");
    if leaks + violations > 0 {
        println!("\n{report}");
    }
    if clean(leaks, violations, data_errors, hangs) { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

/// Whether a run passes: every count is zero.
fn clean(leaks: usize, violations: usize, data_errors: u64, hangs: u64) -> bool {
    leaks == 0 && violations == 0 && data_errors == 0 && hangs == 0
}

#[cfg(test)]
mod tests {
    #[test]
    fn any_count_fails_the_run() {
        assert!(super::clean(0, 0, 0, 0));
        assert!(!super::clean(1, 0, 0, 0));
        assert!(!super::clean(0, 1, 0, 0));
        assert!(!super::clean(0, 0, 1, 0));
        assert!(!super::clean(0, 0, 0, 1), "a hang fails the run");
    }
}
