//! `cargo xtask test`: everything CI runs, in order, stopping at the first failure and
//! ending with a summary table.

use std::fmt;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::util::{self, Context, Result, bail};
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
        "test" => {
            // Bounded: a test that hangs (a crashed driver's state wedging the tests after it
            // in its binary, say) fails the step in minutes, not the whole CI run at its limit.
            // The builds are part of it: a few minutes on a fresh machine, the tests about two.
            let mut cmd = Command::new("cargo");
            cmd.current_dir(util::workspace_root()).args(["test", "--workspace"]);
            util::run_inherit_timed(&mut cmd, TEST_STEP_LIMIT).map(|()| Status::Passed)
        }
        // The published crates package and verify against each other (cargo's local registry
        // for workspace members) and pass the registry's checks, short of the upload.
        "package" => {
            // Each run packages the crates again under the same versions, and cargo takes a
            // registry crate of a given version for unchanged: both its unpacked sources and
            // its build artifacts from an earlier run would be reused, and the verify build of
            // `wsk` would compile against an earlier `wsk-sys`. So the step starts from neither.
            forget_unpacked_packages()?;
            let target = util::target_dir().join("package-check");
            if target.exists() {
                std::fs::remove_dir_all(&target).context(|| format!("cannot remove {}", target.display()))?;
            }
            for args in [&["package", "--allow-dirty"][..], &["publish", "--dry-run", "--allow-dirty"][..]] {
                let mut cmd = Command::new("cargo");
                cmd.current_dir(util::workspace_root()).env("CARGO_TARGET_DIR", &target).args(args).args(PUBLISHED);
                util::run_inherit(&mut cmd)?;
            }
            Ok(Status::Passed)
        }
        "echo" => {
            emulator_runs::echo_e2e()?;
            crate::flood::check(10_000)?;
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

/// Removes the sources cargo unpacked from earlier `cargo package` runs' local registries
/// (`$CARGO_HOME/registry/src/-<hash>/wsk-sys-0.1.0`, ...): cargo reuses an unpacked
/// directory of the same name and version instead of unpacking the new `.crate`. Only the
/// local registries' directories (named `-<hash>`) are touched, never crates.io's.
fn forget_unpacked_packages() -> Result<()> {
    let home = match std::env::var_os("CARGO_HOME") {
        Some(home) => std::path::PathBuf::from(home),
        None => match std::env::var_os("HOME") {
            Some(home) => std::path::PathBuf::from(home).join(".cargo"),
            None => return Ok(()),
        },
    };
    let Ok(registries) = std::fs::read_dir(home.join("registry").join("src")) else { return Ok(()) };
    for registry in registries.flatten() {
        if !registry.file_name().to_string_lossy().starts_with('-') {
            continue;
        }
        let Ok(unpacked) = std::fs::read_dir(registry.path()) else { continue };
        for entry in unpacked.flatten() {
            if is_published_unpacked(&entry.file_name().to_string_lossy()) {
                std::fs::remove_dir_all(entry.path())
                    .context(|| format!("cannot remove {}", entry.path().display()))?;
            }
        }
    }
    Ok(())
}

/// Whether `name` is an unpacked `<crate>-<version>` directory of a crate in [`PUBLISHED`].
fn is_published_unpacked(name: &str) -> bool {
    PUBLISHED.iter().filter(|arg| **arg != "-p").any(|krate| {
        name.strip_prefix(krate)
            .and_then(|rest| rest.strip_prefix('-'))
            .is_some_and(|version| version.starts_with(|c: char| c.is_ascii_digit()))
    })
}

/// The crates meant for crates.io, as `-p` arguments.
const PUBLISHED: &[&str] = &["-p", "wsk-sys", "-p", "wsk-executor", "-p", "wsk", "-p", "wsk-emulator"];

/// The time limit of the `test` step (`cargo test --workspace`, builds included).
const TEST_STEP_LIMIT: Duration = Duration::from_secs(25 * 60);

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
    fn only_the_published_crates_unpacked_sources_are_forgotten() {
        assert!(is_published_unpacked("wsk-0.1.0"));
        assert!(is_published_unpacked("wsk-sys-0.1.0"));
        assert!(is_published_unpacked("wsk-emulator-0.2.3"));
        assert!(!is_published_unpacked("wsk-sys"));
        assert!(!is_published_unpacked("wsk-tests-0.1.0"));
        assert!(!is_published_unpacked("wskx-0.1.0"));
        assert!(!is_published_unpacked("tokio-1.0.0"));
    }

    #[test]
    fn flags_are_appended() {
        // An unset variable (this name is never set) yields just the flag.
        assert_eq!(with_flag("XTASK_TEST_UNSET_FLAGS_VAR", "--cfg loom"), "--cfg loom");
    }
}
