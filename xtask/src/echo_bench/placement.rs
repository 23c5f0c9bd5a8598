//! Where the client and the server under test run, and what `/proc` says they used: CPU
//! placement with `taskset`, and samples of threads' CPU time and context switches and of
//! CPUs' busy time.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::util::{self, Context, Result, bail};

/// Linux's `USER_HZ`: the unit of the CPU times in `/proc/<pid>/task/<tid>/stat`.
const CLOCK_TICKS_PER_SEC: u64 = 100;

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
    pub(super) fn detect() -> Option<Placement> {
        util::find_in_path("taskset")?;
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let allowed = status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:"))?;
        Placement::split(allowed)
    }
}

/// `taskset -p -c <cpus> <id>`: moves a thread (`all_threads`: every thread of a process) to
/// `cpus`. Threads it creates later inherit the setting.
pub(super) fn pin(id: u32, cpus: &str, all_threads: bool) -> Result<()> {
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
    pub(super) fn since(self, before: Usage) -> Usage {
        Usage { cpu: self.cpu.saturating_sub(before.cpu), switches: self.switches.saturating_sub(before.switches) }
    }
}

/// Which threads belong to the server under test.
pub(super) enum Probe {
    /// Every thread of these processes.
    Processes(Vec<u32>),
    /// The threads of a process whose name starts with a prefix.
    Threads { pid: u32, prefix: &'static str },
}

impl Probe {
    pub(super) fn sample(&self) -> Option<Usage> {
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

/// Time the CPUs `ids` spent busy (user, system, interrupts and softirqs; not the time the
/// hypervisor stole) since boot.
pub(super) fn cores_busy(ids: &[u32]) -> Option<Duration> {
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
pub(super) struct Snapshot {
    pub(super) server_threads: Option<Usage>,
    pub(super) client_threads: Option<Usage>,
    pub(super) server_cores: Option<Duration>,
    pub(super) client_cores: Option<Duration>,
}

impl Snapshot {
    pub(super) fn take(server: &Probe, client: &Probe, placement: Option<&Placement>) -> Snapshot {
        Snapshot {
            server_threads: server.sample(),
            client_threads: client.sample(),
            server_cores: placement.and_then(|p| cores_busy(&p.server_ids)),
            client_cores: placement.and_then(|p| cores_busy(&p.client_ids)),
        }
    }
}

/// The threads of `pid` whose name starts with `prefix`.
pub(super) fn threads_named(pid: u32, prefix: &str) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Vec::new() };
    tasks
        .flatten()
        .filter(|task| std::fs::read_to_string(task.path().join("comm")).is_ok_and(|c| c.starts_with(prefix)))
        .filter_map(|task| task.file_name().to_str().and_then(|s| s.parse().ok()))
        .collect()
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
    fn thread_usage_reads_this_thread() {
        let usage = thread_usage(Path::new("/proc/thread-self"));
        assert!(usage.is_some(), "/proc/thread-self/stat and status must parse");
    }
}
