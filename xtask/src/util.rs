//! Errors, paths, file helpers and running child processes with timeouts.

use std::ffi::OsStr;
use std::fmt;
use std::fs::File;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// A human-readable error: what failed and why, ready to print.
#[derive(Debug)]
pub struct Error(String);

impl Error {
    pub fn msg(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Self(e.to_string())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Returns early with an [`Error`] built from a format string.
#[macro_export]
macro_rules! bail {
    ($($arg:tt)*) => {
        return Err($crate::util::Error::msg(format!($($arg)*)))
    };
}
pub use crate::bail;

/// Adds a description of what was being done to any displayable error.
pub trait Context<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T, E: fmt::Display> Context<T> for Result<T, E> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::msg(format!("{}: {e}", what())))
    }
}

/// The workspace root (the directory holding the workspace `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}

/// Cargo's target directory: `$CARGO_TARGET_DIR` if set, else `<root>/target`.
pub fn target_dir() -> PathBuf {
    let root = workspace_root();
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => root.join(dir),
        _ => root.join("target"),
    }
}

/// Finds an executable on `PATH`.
pub fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|candidate| candidate.is_file())
}

pub fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).context(|| format!("reading {}", path.display()))
}

pub fn read_to_string(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).context(|| format!("reading {}", path.display()))
}

pub fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).context(|| format!("writing {}", path.display()))
}

pub fn create_dir_all(path: &Path) -> Result<()> {
    std::fs::create_dir_all(path).context(|| format!("creating directory {}", path.display()))
}

pub fn remove_dir_all_if_exists(path: &Path) -> Result<()> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => bail!("removing {}: {e}", path.display()),
    }
}

pub fn copy(from: &Path, to: &Path) -> Result<()> {
    std::fs::copy(from, to).map(drop).context(|| format!("copying {} to {}", from.display(), to.display()))
}

/// Seconds with one decimal, for progress lines and summaries.
pub fn secs(elapsed: Duration) -> String {
    format!("{:.1}", elapsed.as_secs_f64())
}

/// Renders a command as a shell-like line, including variables set on it.
pub fn display_command(cmd: &Command) -> String {
    let mut parts = Vec::new();
    for (key, value) in cmd.get_envs() {
        if let Some(value) = value {
            parts.push(format!("{}={}", key.to_string_lossy(), quote(value)));
        }
    }
    parts.push(quote(cmd.get_program()));
    parts.extend(cmd.get_args().map(quote));
    parts.join(" ")
}

fn quote(word: &OsStr) -> String {
    let word = word.to_string_lossy();
    let plain = !word.is_empty() && word.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=+,@%".contains(c));
    if plain { word.into_owned() } else { format!("'{}'", word.replace('\'', r"'\''")) }
}

/// Runs a command with inherited stdio and no time limit; fails on a non-zero exit.
pub fn run_inherit(cmd: &mut Command) -> Result<()> {
    let line = display_command(cmd);
    println!("$ {line}");
    let status = cmd.status().context(|| format!("starting `{line}`"))?;
    if !status.success() {
        bail!("`{line}` failed with {status}");
    }
    Ok(())
}

/// [`run_inherit`] with a hard time limit: the command runs in its own process group, and
/// on timeout the whole group is killed and an error returned, so that a test that hangs
/// fails the step instead of holding the run until CI's own limit.
pub fn run_inherit_timed(cmd: &mut Command, timeout: Duration) -> Result<()> {
    let line = display_command(cmd);
    println!("$ {line}");
    let start = Instant::now();
    let mut child = cmd.process_group(0).spawn().context(|| format!("starting `{line}`"))?;
    let Some(status) = wait_or_kill(&mut child, &line, start, timeout)? else {
        bail!("`{line}` did not finish within {} s and was killed (a test hangs?)", timeout.as_secs());
    };
    if !status.success() {
        bail!("`{line}` failed with {status}");
    }
    Ok(())
}

/// Waits for `child` (the leader of its own process group, started at `start`) until
/// `timeout` has passed since `start`: its status, or `None` once the whole group was killed.
fn wait_or_kill(child: &mut Child, line: &str, start: Instant, timeout: Duration) -> Result<Option<ExitStatus>> {
    loop {
        if let Some(status) = child.try_wait().context(|| format!("waiting for `{line}`"))? {
            return Ok(Some(status));
        }
        if start.elapsed() >= timeout {
            kill_group(child);
            return Ok(None);
        }
        thread::sleep(Duration::from_millis(25));
    }
}

/// What a command run by [`run_timed`] did.
pub struct Finished {
    pub status: ExitStatus,
    pub elapsed: Duration,
}

/// Runs a command with a hard time limit, stdin closed and stdout and stderr appended
/// to `log`.
///
/// The command runs in its own process group; on timeout the whole group is killed
/// (children included) and an error is returned. A non-zero exit is *not* an error
/// here: callers decide what the status means.
pub fn run_timed(cmd: &mut Command, log: &Path, timeout: Duration) -> Result<Finished> {
    let line = display_command(cmd);
    let out =
        File::options().create(true).append(true).open(log).context(|| format!("opening log {}", log.display()))?;
    let err = out.try_clone().context(|| format!("opening log {}", log.display()))?;
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .context(|| format!("starting `{line}`"))?;
    match wait_or_kill(&mut child, &line, start, timeout)? {
        Some(status) => Ok(Finished { status, elapsed: start.elapsed() }),
        None => {
            bail!("`{line}` did not finish within {} s and was killed (output: {})", timeout.as_secs(), log.display())
        }
    }
}

/// Kills a child started by [`run_timed`] together with its process group.
fn kill_group(child: &mut Child) {
    // The child is the leader of its own group, so its pid is the group id.
    let group = format!("-{}", child.id());
    let killed = Command::new("kill")
        .args(["-s", "KILL", "--", &group])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !killed {
        // Best effort: at least the direct child must not outlive the time limit.
        let _ = child.kill();
    }
    let _ = child.wait();
}

/// The last `max_lines` lines of a text file, for error messages.
pub fn tail(path: &Path, max_lines: usize) -> String {
    let mut text = String::new();
    if let Ok(mut file) = File::open(path) {
        let mut bytes = Vec::new();
        if file.read_to_end(&mut bytes).is_ok() {
            text = String::from_utf8_lossy(&bytes).into_owned();
        }
    }
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(max_lines);
    lines[start..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_quotes_only_when_needed() {
        let mut cmd = Command::new("wine");
        cmd.env("WINEPREFIX", "/tmp/p x").args(["sc", "create", "echo", "binPath=", r"C:\windows\echo.sys"]);
        assert_eq!(display_command(&cmd), r"WINEPREFIX='/tmp/p x' wine sc create echo binPath= 'C:\windows\echo.sys'");
    }

    #[test]
    fn timed_run_reports_status_and_captures_output() {
        let dir = std::env::temp_dir().join(format!("xtask-util-{}", std::process::id()));
        create_dir_all(&dir).unwrap();
        let log = dir.join("ok.log");
        let done =
            run_timed(Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]), &log, Duration::from_secs(30))
                .unwrap();
        assert_eq!(done.status.code(), Some(3));
        let text = read_to_string(&log).unwrap();
        assert!(text.contains("out") && text.contains("err"), "{text}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn timed_run_kills_the_whole_group_on_timeout() {
        let dir = std::env::temp_dir().join(format!("xtask-util-to-{}", std::process::id()));
        create_dir_all(&dir).unwrap();
        let log = dir.join("slow.log");
        let marker = dir.join("grandchild-survived");
        // A grandchild that would create `marker` if it outlived the time limit.
        let script = format!("(sleep 1; touch '{}') & wait", marker.display());
        let start = Instant::now();
        let result = run_timed(Command::new("sh").args(["-c", &script]), &log, Duration::from_millis(200));
        let err = result.err().expect("must time out").to_string();
        assert!(err.contains("did not finish"), "{err}");
        assert!(start.elapsed() < Duration::from_secs(1));
        thread::sleep(Duration::from_millis(1500));
        assert!(!marker.exists(), "the grandchild was not killed");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn inherited_timed_run_kills_the_whole_group_on_timeout_and_reports_failures() {
        let dir = std::env::temp_dir().join(format!("xtask-util-inherit-{}", std::process::id()));
        create_dir_all(&dir).unwrap();
        let marker = dir.join("grandchild-survived");
        let script = format!("(sleep 1; touch '{}') & wait", marker.display());
        let start = Instant::now();
        let err = run_inherit_timed(Command::new("sh").args(["-c", &script]), Duration::from_millis(200))
            .expect_err("must time out")
            .to_string();
        assert!(err.contains("did not finish"), "{err}");
        assert!(start.elapsed() < Duration::from_secs(1));
        thread::sleep(Duration::from_millis(1500));
        assert!(!marker.exists(), "the grandchild was not killed");
        let failed = run_inherit_timed(Command::new("sh").args(["-c", "exit 3"]), Duration::from_secs(30));
        assert!(failed.expect_err("a failure").to_string().contains("failed"));
        assert!(run_inherit_timed(&mut Command::new("true"), Duration::from_secs(30)).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn tail_keeps_last_lines() {
        let dir = std::env::temp_dir().join(format!("xtask-util-tail-{}", std::process::id()));
        create_dir_all(&dir).unwrap();
        let file = dir.join("t.txt");
        write(&file, b"a\nb\nc\nd\n").unwrap();
        assert_eq!(tail(&file, 2), "c\nd");
        assert_eq!(tail(&dir.join("missing"), 2), "");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
