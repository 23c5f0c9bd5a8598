//! `cargo xtask test`: everything CI runs, in order, stopping at the first failure and
//! ending with a summary table.

use std::fmt;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::util::{self, Result, bail};
use crate::{drivers, emulator_runs, setup, wine};

/// The steps, in the order they run.
pub const STEPS: &[&str] =
    &["setup", "fmt", "clippy", "doc", "test", "package", "echo", "stress", "chaos", "drivers", "wine", "loom", "miri"];

/// How a step ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Passed,
    Skipped(String),
    Failed,
    NotRun,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Passed => f.write_str("ok"),
            Self::Skipped(why) => write!(f, "skipped ({why})"),
            Self::Failed => f.write_str("FAILED"),
            Self::NotRun => f.write_str("not run"),
        }
    }
}

pub struct StepResult {
    pub step: &'static str,
    pub status: Status,
    pub elapsed: Option<Duration>,
}

/// Checks `--skip` names against [`STEPS`].
pub fn validate_skips(skips: &[String]) -> Result<()> {
    for skip in skips {
        if !STEPS.contains(&skip.as_str()) {
            bail!("unknown step `{skip}` in --skip; steps: {}", STEPS.join(", "));
        }
    }
    Ok(())
}

/// Runs every step not in `skips`; fails if any step failed.
pub fn run(skips: &[String]) -> Result<()> {
    validate_skips(skips)?;
    let mut results = Vec::new();
    let mut failure = None;
    for &step in STEPS {
        if failure.is_some() {
            results.push(StepResult { step, status: Status::NotRun, elapsed: None });
            continue;
        }
        if skips.iter().any(|s| s == step) {
            println!("==> {step}: skipped (--skip {step})");
            results.push(StepResult { step, status: Status::Skipped(format!("--skip {step}")), elapsed: None });
            continue;
        }
        println!("==> {step}");
        let start = Instant::now();
        let status = match run_step(step, skips) {
            Ok(status) => status,
            Err(e) => {
                eprintln!("==> {step} FAILED: {e}");
                failure = Some(step);
                Status::Failed
            }
        };
        results.push(StepResult { step, status, elapsed: Some(start.elapsed()) });
    }
    println!("\n{}", summary_table(&results));
    match failure {
        Some(step) => bail!("step `{step}` failed (its error is printed above the summary)"),
        None => Ok(()),
    }
}

fn run_step(step: &str, skips: &[String]) -> Result<Status> {
    match step {
        "setup" => setup::run(skips).map(|()| Status::Passed),
        "fmt" => cargo(&["fmt", "--all", "--check"]),
        "clippy" => {
            cargo(&["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"])?;
            // The library without its optional `embedded-io` feature.
            cargo(&["clippy", "-p", "wsk", "--no-default-features", "--", "-D", "warnings"])?;
            // The driver build: the same crates as the kernel sees them.
            cargo(&[
                "clippy",
                "--target",
                "x86_64-pc-windows-msvc",
                "--lib",
                "-p",
                "wsk-sys",
                "-p",
                "wsk-executor",
                "-p",
                "wsk",
                "-p",
                "echo-driver",
                "-p",
                "stress-driver",
                "-p",
                "status-driver",
                "--",
                "-D",
                "warnings",
            ])
        }
        "doc" => doc(),
        "test" => cargo(&["test", "--workspace"]),
        // The published crates package and verify against each other (cargo's local registry
        // for workspace members) and pass the registry's checks, short of the upload.
        "package" => {
            cargo(&[&["package", "--allow-dirty"][..], PUBLISHED].concat())?;
            cargo(&[&["publish", "--dry-run", "--allow-dirty"][..], PUBLISHED].concat())
        }
        "echo" => {
            emulator_runs::echo_e2e()?;
            emulator_runs::status_e2e().map(|()| Status::Passed)
        }
        "stress" => emulator_runs::stress(60).map(|()| Status::Passed),
        "chaos" => emulator_runs::chaos(30).map(|()| Status::Passed),
        "drivers" => drivers::build_all(drivers::ALL).map(|_| Status::Passed),
        "wine" => wine::smoke_test(wine::STRESS_WINE_DEFAULT_RUN).map(|()| Status::Passed),
        "loom" => loom(),
        "miri" => miri(),
        other => bail!("no step named `{other}`"),
    }
}

/// The crates meant for crates.io, as `-p` arguments.
const PUBLISHED: &[&str] = &["-p", "wsk-sys", "-p", "wsk-executor", "-p", "wsk", "-p", "wsk-emulator"];

fn cargo(args: &[&str]) -> Result<Status> {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(util::workspace_root()).args(args);
    util::run_inherit(&mut cmd).map(|()| Status::Passed)
}

/// The API docs, with rustdoc's warnings (the workspace's rustdoc lints: broken intra-doc
/// links and the like) as errors.
fn doc() -> Result<Status> {
    let mut cmd = Command::new("cargo");
    let flags = with_flag("RUSTDOCFLAGS", "-D warnings");
    cmd.current_dir(util::workspace_root()).env("RUSTDOCFLAGS", flags).args(["doc", "--workspace", "--no-deps"]);
    util::run_inherit(&mut cmd).map(|()| Status::Passed)
}

/// Loom models, in their own target directory so `--cfg loom` does not invalidate
/// the normal build.
fn loom() -> Result<Status> {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(util::workspace_root())
        .env("RUSTFLAGS", with_flag("RUSTFLAGS", "--cfg loom"))
        .env("CARGO_TARGET_DIR", util::target_dir().join("loom"))
        .args(["test", "-p", "wsk-executor", "-p", "wsk", "--release", "--lib", "loom"]);
    util::run_inherit(&mut cmd).map(|()| Status::Passed)
}

fn miri() -> Result<Status> {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(util::workspace_root())
        // `+nightly` must reach the rustup proxy, not a toolchain pinned by the caller.
        .env_remove("RUSTUP_TOOLCHAIN")
        .env("MIRIFLAGS", with_flag("MIRIFLAGS", "-Zmiri-strict-provenance"))
        .args(["+nightly", "miri", "test", "-p", "wsk-executor", "-p", "wsk", "--lib"]);
    util::run_inherit(&mut cmd).map(|()| Status::Passed)
}

/// The current value of a flags variable with `flag` appended.
fn with_flag(var: &str, flag: &str) -> String {
    match std::env::var(var) {
        Ok(existing) if !existing.trim().is_empty() => format!("{} {flag}", existing.trim()),
        _ => flag.to_owned(),
    }
}

pub fn summary_table(results: &[StepResult]) -> String {
    let rows: Vec<(String, String, String)> = results
        .iter()
        .map(|r| {
            let secs = r.elapsed.map(util::secs).unwrap_or_else(|| "-".to_owned());
            (r.step.to_owned(), r.status.to_string(), secs)
        })
        .collect();
    let step_w = rows.iter().map(|r| r.0.len()).chain([4]).max().unwrap_or(4);
    let status_w = rows.iter().map(|r| r.1.len()).chain([6]).max().unwrap_or(6);
    let mut out = format!("{:<step_w$}  {:<status_w$}  {:>7}\n", "step", "status", "seconds");
    for (step, status, secs) in rows {
        out.push_str(&format!("{step:<step_w$}  {status:<status_w$}  {secs:>7}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_skip_is_rejected() {
        assert!(validate_skips(&["wine".to_owned(), "doc".to_owned(), "miri".to_owned()]).is_ok());
        let err = validate_skips(&["winne".to_owned()]).unwrap_err().to_string();
        assert!(err.contains("winne") && err.contains("fmt, clippy, doc, test"), "{err}");
    }

    #[test]
    fn table_lists_every_step_with_status() {
        let results = [
            StepResult { step: "fmt", status: Status::Passed, elapsed: Some(Duration::from_millis(1500)) },
            StepResult { step: "wine", status: Status::Skipped("--skip wine".into()), elapsed: None },
            StepResult { step: "miri", status: Status::NotRun, elapsed: None },
        ];
        let table = summary_table(&results);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        assert!(lines[0].starts_with("step") && lines[0].ends_with("seconds"));
        assert!(lines[1].starts_with("fmt") && lines[1].contains("ok") && lines[1].ends_with("1.5"));
        assert!(lines[2].contains("skipped (--skip wine)") && lines[2].ends_with('-'));
        assert!(lines[3].contains("not run"));
    }

    #[test]
    fn flags_are_appended() {
        // An unset variable (this name is never set) yields just the flag.
        assert_eq!(with_flag("XTASK_TEST_UNSET_FLAGS_VAR", "--cfg loom"), "--cfg loom");
    }
}
