//! The report: each server's results and notes, the machine line, and the Markdown table.

use std::process::Command;
use std::thread;
use std::time::Duration;

use super::client::{Measurement, StreamMeasurement};
use super::paired::paired_ratio;
use super::servers::{Server, Setup};
use super::{STREAM_BYTES, STREAM_WRITE, WORKLOADS, Workload, workloads};

/// One server's results: a measurement (or the reason there is none) per workload, and notes.
#[derive(Debug, Clone)]
pub struct ServerRun {
    pub server: Server,
    pub label: String,
    pub cells: Vec<(Workload, Result<Measurement, String>)>,
    /// The streaming client's figure (`None`: not run).
    pub stream: Option<Result<StreamMeasurement, String>>,
    /// Why the server was not run at all (Wine missing).
    pub skipped: Option<String>,
    pub notes: Vec<String>,
    /// Failures that make the benchmark fail (after the table is printed).
    pub failures: Vec<String>,
}

impl ServerRun {
    pub(super) fn new(server: Server, setup: &Setup) -> Self {
        let label = server.label(setup.tokio_workers);
        Self { server, label, cells: Vec::new(), stream: None, skipped: None, notes: Vec::new(), failures: Vec::new() }
    }

    pub(super) fn measurement(&self, workload: Workload) -> Option<&Measurement> {
        self.cells.iter().find(|(w, _)| *w == workload).and_then(|(_, m)| m.as_ref().ok())
    }
}

/// The streaming client's results as a Markdown table, with the ratio against tokio (c).
pub fn stream_table(runs: &[ServerRun]) -> String {
    let rate = |server: Server| {
        runs.iter()
            .find(|r| r.server == server)
            .and_then(|r| r.stream.as_ref()?.as_ref().ok())
            .map(StreamMeasurement::mb_per_sec)
    };
    let tokio = rate(Server::Tokio);
    let mut out = format!(
        "| server | stream {} MiB, {} KiB writes: MB/s (median) | runs in order (MB/s) | MB/s vs tokio |\n|---|---:|---|---:|\n",
        STREAM_BYTES >> 20,
        STREAM_WRITE >> 10
    );
    for run in runs {
        match &run.stream {
            Some(Ok(s)) => {
                let ratio = tokio.map_or("n/a".to_owned(), |t| format!("{:.2}", s.mb_per_sec() / t));
                let each = s.rates.iter().map(|r| format!("{r:.0}")).collect::<Vec<_>>().join(" / ");
                out.push_str(&format!("| {} | {:.0} | {each} | {ratio} |\n", run.label, s.mb_per_sec()));
            }
            Some(Err(e)) => out.push_str(&format!("| {} | FAILED: {e} | | |\n", run.label)),
            None => out.push_str(&format!("| {} | not run | | |\n", run.label)),
        }
    }
    out
}

/// The pairs of servers whose ratios the zero-copy datapath aims at, beside the noise yardstick.
const RATIO_PAIRS: [(Server, Server, &str); 4] = [
    (Server::Emulator, Server::Tokio, "event path (a) / tokio (c)"),
    (Server::EmulatorIrp, Server::Tokio, "IRP path (e) / tokio (c)"),
    (Server::Emulator, Server::EmulatorIrp, "event path (a) / IRP path (e)"),
    (Server::Emulator, Server::EmulatorTwin, "noise: (a) / its twin (a')"),
];

/// The throughput ratios of [`ratios`] taken per repetition (`super::paired`): each cell's
/// geometric mean over the repetitions with its 95% confidence interval, and the number of
/// pairs. An interval that holds 1.0 means this run does not tell the two servers apart.
pub fn paired(runs: &[ServerRun]) -> String {
    let find = |server: Server| runs.iter().find(|r| r.server == server);
    let mut out = String::from("| workload (paired runs: geometric mean [95% interval]) |");
    for (_, _, name) in RATIO_PAIRS {
        out.push_str(&format!(" {name} |"));
    }
    out.push_str(" pairs |\n|---|");
    out.push_str(&"---:|".repeat(RATIO_PAIRS.len() + 1));
    out.push('\n');
    let row = |label: String, rates: &dyn Fn(Server) -> Option<Vec<f64>>| {
        let mut line = format!("| {label} |");
        let mut pairs = 0;
        for (ours, peer, _) in RATIO_PAIRS {
            match rates(ours).zip(rates(peer)).and_then(|(a, b)| paired_ratio(&a, &b)) {
                Some(r) => {
                    pairs = pairs.max(r.pairs);
                    line.push_str(&format!(" {r} |"));
                }
                None => line.push_str(" n/a |"),
            }
        }
        line.push_str(&format!(" {pairs} |\n"));
        line
    };
    for workload in workloads().unwrap_or_else(|_| WORKLOADS.to_vec()) {
        let rates = |server| find(server)?.measurement(workload).map(|m| m.rates.clone());
        out.push_str(&row(format!("{} x {}", workload.connections, size_label(workload.size)), &rates));
    }
    let rates = |server| Some(find(server)?.stream.as_ref()?.as_ref().ok()?.rates.clone());
    out.push_str(&row(format!("stream {} MiB, {} KiB writes", STREAM_BYTES >> 20, STREAM_WRITE >> 10), &rates));
    out
}

/// The ratios of throughput (higher is better for the first server) the zero-copy datapath
/// aims at, for every workload and the stream: the event path (a) and the IRP path (e) against
/// tokio (c), (a) against (e), and (a) against its twin (a'), two equal servers (how far the
/// machine's noise alone moves a ratio in this run); then the same pairs' ratios of the
/// server's own threads' CPU time per byte (lower is better for the first server), which a
/// machine shared with other work disturbs less than throughput.
pub fn ratios(runs: &[ServerRun]) -> String {
    let find = |server: Server| runs.iter().find(|r| r.server == server);
    let pairs = RATIO_PAIRS;
    let mut out = String::from("| workload |");
    for (_, _, name) in pairs {
        out.push_str(&format!(" {name} |"));
    }
    for (_, _, name) in pairs {
        out.push_str(&format!(" CPU per byte, {name} |"));
    }
    out.push_str("\n|---|");
    out.push_str(&"---:|".repeat(2 * pairs.len()));
    out.push('\n');
    let format = |ratio: Option<f64>| ratio.map_or("n/a".to_owned(), |r| format!("{r:.2}"));
    for workload in workloads().unwrap_or_else(|_| WORKLOADS.to_vec()) {
        out.push_str(&format!("| {} x {} |", workload.connections, size_label(workload.size)));
        for (ours, peer, _) in pairs {
            let rate = |server| find(server).and_then(|r| r.measurement(workload)).map(|m| m.mb_per_sec(workload.size));
            let ratio = rate(ours).zip(rate(peer)).map(|(a, b)| a / b);
            out.push_str(&format!(" {} |", format(ratio)));
        }
        for (ours, peer, _) in pairs {
            // The server's own threads' CPU time per round trip (the same bytes each).
            let cpu = |server| {
                let m = find(server)?.measurement(workload)?;
                Some(m.server?.cpu.as_secs_f64() / m.round_trips.max(1) as f64)
            };
            let ratio = cpu(ours).zip(cpu(peer)).map(|(a, b)| a / b);
            out.push_str(&format!(" {} |", format(ratio)));
        }
        out.push('\n');
    }
    out.push_str(&format!("| stream {} MiB, {} KiB writes |", STREAM_BYTES >> 20, STREAM_WRITE >> 10));
    for (ours, peer, _) in pairs {
        let rate = |server| find(server)?.stream.as_ref()?.as_ref().ok().map(StreamMeasurement::mb_per_sec);
        let ratio = rate(ours).zip(rate(peer)).map(|(a, b)| a / b);
        out.push_str(&format!(" {} |", format(ratio)));
    }
    for (ours, peer, _) in pairs {
        let cpu = |server| find(server)?.stream.as_ref()?.as_ref().ok()?.server_cpu.map(|c| c.as_secs_f64());
        let ratio = cpu(ours).zip(cpu(peer)).map(|(a, b)| a / b);
        out.push_str(&format!(" {} |", format(ratio)));
    }
    out.push('\n');
    out
}

/// `nproc`, the CPU model and the compiler, for the record.
pub(super) fn machine_line() -> String {
    let cpus = thread::available_parallelism().map_or(0, std::num::NonZero::get);
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

pub(super) fn size_label(size: usize) -> String {
    if size >= 1024 && size.is_multiple_of(1024) { format!("{} KiB", size / 1024) } else { format!("{size} B") }
}

pub(super) fn micros(d: Duration) -> String {
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
    use std::path::PathBuf;

    use super::*;
    use crate::echo_bench::placement::Usage;

    /// A setup with no driver built, no placement and `tokio_workers` tokio workers.
    fn setup(tokio_workers: usize) -> Setup {
        Setup { binary: PathBuf::new(), sys: Err("none".to_owned()), placement: None, tokio_workers, verifier: false }
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
        let setup = setup(2);
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
    fn stream_figures_and_ratios() {
        let setup = setup(1);
        let stream = |seconds: f64| StreamMeasurement {
            elapsed: Duration::from_secs_f64(seconds),
            server_cpu: Some(Duration::from_secs_f64(seconds / 2.0)),
            rates: vec![],
        };
        let mut events = ServerRun::new(Server::Emulator, &setup);
        events.stream = Some(Ok(stream(0.4)));
        let mut irp = ServerRun::new(Server::EmulatorIrp, &setup);
        irp.stream = Some(Ok(stream(0.2)));
        let mut tokio = ServerRun::new(Server::Tokio, &setup);
        tokio.stream = Some(Ok(stream(0.1)));
        let runs = [events, irp, tokio];
        let text = stream_table(&runs);
        assert!(text.contains("| (a) echo driver, emulator | 336 |  | 0.25 |"), "{text}");
        let text = ratios(&runs);
        // No ping-pong cells: n/a; the stream: 0.25, 0.50 and 0.50.
        assert!(text.contains("| 1 x 1 KiB | n/a | n/a | n/a | n/a | n/a | n/a | n/a | n/a |"), "{text}");
        assert!(text.contains("writes | 0.25 | 0.50 | 0.50 | n/a | 4.00 | 2.00 | 2.00 | n/a |"), "{text}");
        assert!(text.contains("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n"), "{text}");
    }

    /// The paired table pairs repetition `i` of one server with repetition `i` of the other.
    #[test]
    fn paired_table_pairs_repetitions() {
        let setup = setup(1);
        let cell = |rates: Vec<f64>| Measurement {
            round_trips: 1,
            fewest: 1,
            starved: 0,
            window: Duration::from_secs(1),
            p50: Duration::ZERO,
            p99: Duration::ZERO,
            max: Duration::ZERO,
            rates,
            client: None,
            server_cores: None,
            client_cores: None,
            server: None,
        };
        let workload = WORKLOADS[0];
        let mut events = ServerRun::new(Server::Emulator, &setup);
        events.cells.push((workload, Ok(cell(vec![20.0, 40.0, 10.0]))));
        let mut irp = ServerRun::new(Server::EmulatorIrp, &setup);
        irp.cells.push((workload, Ok(cell(vec![10.0, 20.0, 5.0]))));
        let text = paired(&[events, irp]);
        assert!(text.contains("| 1 x 1 KiB | n/a | n/a | 2.00 [2.00-2.00] | n/a | 3 |"), "{text}");
        assert!(text.contains("| stream 128 MiB, 1024 KiB writes | n/a | n/a | n/a | n/a | 0 |"), "{text}");
    }
}
