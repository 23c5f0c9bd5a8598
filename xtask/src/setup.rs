//! `cargo xtask setup`, also the first step of `cargo xtask test`: makes sure the machine has
//! what the test steps need, installing what it can, and otherwise failing with the list of
//! what is missing and the command that installs it. It never lets a step skip for want of a
//! tool.
//!
//! | need | used by | installed with |
//! |---|---|---|
//! | Rust target `x86_64-pc-windows-msvc` | clippy (driver build), drivers, wine | `rustup target add` |
//! | nightly toolchain with `miri` and `rust-src`, Miri's sysroot | miri | `rustup toolchain install`, `cargo +nightly miri setup` |
//! | `clang`, mingw-w64 and Wine headers | test (`sys/tests/layout/`) | apt: `clang mingw-w64-x86-64-dev libwine-dev` |
//! | `wine`, `wineserver` | wine | apt: `wine wine64` |
//! | `curl` | echo, wine (the status driver's HTTP check) | apt: `curl` |
//!
//! Rust pieces are installed whenever `rustup` is on `PATH`. System packages are installed
//! only on a machine with `apt-get` (Debian and its derivatives), as root or through `sudo`
//! without a password; anywhere else the step fails and prints the packages and the command.

use std::path::Path;
use std::process::Command;

use crate::util::{self, Result, bail};

/// The Windows target the drivers are built for.
pub const WINDOWS_TARGET: &str = "x86_64-pc-windows-msvc";

/// Debian packages the layout check needs (clang and the headers it compiles against).
const LAYOUT_PACKAGES: &[&str] = &["clang", "mingw-w64-x86-64-dev", "libwine-dev"];
/// Debian packages that provide `wine` (the launcher) and `wineserver` (with the 64-bit Wine).
const WINE_PACKAGES: &[&str] = &["wine", "wine64"];

/// One thing a step needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    /// The Windows target of the active toolchain.
    WindowsTarget,
    /// Nightly with Miri.
    Miri,
    /// A file or program a Debian package provides.
    Package { what: String, package: &'static str },
}

impl Need {
    fn describe(&self) -> String {
        match self {
            Self::WindowsTarget => format!("Rust target {WINDOWS_TARGET}"),
            Self::Miri => "nightly toolchain with miri and rust-src".to_owned(),
            Self::Package { what, package } => format!("{what} (Debian package {package})"),
        }
    }
}

/// What this machine offers for installing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Host {
    pub rustup: bool,
    /// Running as root.
    pub root: bool,
    /// Not root, but `sudo` works without a password.
    pub sudo: bool,
    pub apt: bool,
}

/// What to do about the missing needs.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Commands to run, in order (program and arguments).
    pub run: Vec<Vec<String>>,
    /// Needs nothing here can install, each with the command that would.
    pub manual: Vec<String>,
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| (*s).to_owned()).collect()
}

/// Decides how to satisfy `missing` on `host`.
pub fn plan(missing: &[Need], host: Host) -> Plan {
    let mut plan = Plan::default();
    let mut packages: Vec<&'static str> = Vec::new();
    for need in missing {
        let rustup_args = match need {
            Need::WindowsTarget => Some(strings(&["rustup", "target", "add", WINDOWS_TARGET])),
            Need::Miri => Some(strings(&[
                "rustup",
                "toolchain",
                "install",
                "nightly",
                "--profile",
                "minimal",
                "--component",
                "miri,rust-src",
            ])),
            Need::Package { package, .. } => {
                if !packages.contains(package) {
                    packages.push(package);
                }
                None
            }
        };
        if let Some(args) = rustup_args {
            if host.rustup {
                plan.run.push(args);
            } else {
                plan.manual.push(format!("{}: install rustup, then `{}`", need.describe(), args.join(" ")));
            }
        }
    }
    if !packages.is_empty() {
        if (host.root || host.sudo) && host.apt {
            let sudo: &[&str] = if host.root { &[] } else { &["sudo", "-n"] };
            plan.run.push(strings(&[sudo, &["apt-get", "update", "-q"]].concat()));
            let mut install = strings(&[sudo, &["apt-get", "install", "-y", "-q"]].concat());
            install.extend(packages.iter().map(|p| (*p).to_owned()));
            plan.run.push(install);
        } else {
            let what: Vec<String> =
                missing.iter().filter(|n| matches!(n, Need::Package { .. })).map(Need::describe).collect();
            let sudo = if host.root { "" } else { "sudo " };
            plan.manual.push(format!(
                "{}: on Debian or Ubuntu `{sudo}apt-get install -y {}`; elsewhere the same tools from the system's packages",
                what.join(", "),
                packages.join(" ")
            ));
        }
    }
    plan
}

/// What the steps other than `skips` need, as far as this machine lacks it.
pub fn missing(skips: &[String]) -> Vec<Need> {
    let runs = |step: &str| !skips.iter().any(|s| s == step);
    let mut missing = Vec::new();
    if (runs("clippy") || runs("drivers") || runs("wine")) && !has_windows_target() {
        missing.push(Need::WindowsTarget);
    }
    if runs("miri") && !has_miri() {
        missing.push(Need::Miri);
    }
    if runs("test") {
        if util::find_in_path("clang").is_none() {
            missing.push(Need::Package { what: "clang".to_owned(), package: "clang" });
        }
        for (file, package) in [
            ("/usr/x86_64-w64-mingw32/include/ddk/ntddk.h", LAYOUT_PACKAGES[1]),
            ("/usr/include/wine/wine/windows/ddk/wsk.h", LAYOUT_PACKAGES[2]),
        ] {
            if !Path::new(file).exists() {
                missing.push(Need::Package { what: file.to_owned(), package });
            }
        }
    }
    if (runs("echo") || runs("wine")) && util::find_in_path("curl").is_none() {
        missing.push(Need::Package { what: "`curl`".to_owned(), package: "curl" });
    }
    if runs("wine") {
        for (tool, package) in [("wine", WINE_PACKAGES[0]), ("wineserver", WINE_PACKAGES[1])] {
            if util::find_in_path(tool).is_none() {
                missing.push(Need::Package { what: format!("`{tool}`"), package });
            }
        }
    }
    missing
}

/// Installs what the steps other than `skips` need, or fails saying what is missing.
pub fn run(skips: &[String]) -> Result<()> {
    let missing = missing(skips);
    let root = is_root();
    let host = Host {
        rustup: util::find_in_path("rustup").is_some(),
        root,
        sudo: !root && Command::new("sudo").args(["-n", "true"]).output().is_ok_and(|out| out.status.success()),
        apt: util::find_in_path("apt-get").is_some(),
    };
    let plan = plan(&missing, host);
    if missing.is_empty() {
        println!("setup: everything the steps need is installed");
    }
    for need in &missing {
        println!("setup: missing {}", need.describe());
    }
    if !plan.manual.is_empty() {
        bail!("setup: cannot install on this machine:\n  {}", plan.manual.join("\n  "));
    }
    for args in &plan.run {
        let mut cmd = Command::new(&args[0]);
        cmd.args(&args[1..]);
        if args.iter().any(|a| a == "apt-get") {
            cmd.env("DEBIAN_FRONTEND", "noninteractive");
        }
        println!("setup: $ {}", args.join(" "));
        util::run_inherit(&mut cmd)?;
    }
    if !skips.iter().any(|s| s == "miri") {
        // Idempotent, and quick once the sysroot is built.
        let mut cmd = Command::new("cargo");
        cmd.env_remove("RUSTUP_TOOLCHAIN").args(["+nightly", "miri", "setup"]);
        println!("setup: $ cargo +nightly miri setup");
        util::run_inherit(&mut cmd)?;
    }
    let left = self::missing(skips);
    if !left.is_empty() {
        let what: Vec<String> = left.iter().map(Need::describe).collect();
        bail!("setup: still missing after installing: {}", what.join(", "));
    }
    Ok(())
}

/// Whether the active toolchain has the Windows target's standard library.
fn has_windows_target() -> bool {
    let output = Command::new("rustc").current_dir(util::workspace_root()).args(["--print", "sysroot"]).output();
    match output {
        Ok(out) if out.status.success() => {
            let sysroot = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            Path::new(&sysroot).join("lib/rustlib").join(WINDOWS_TARGET).join("lib").is_dir()
        }
        _ => false,
    }
}

/// Whether `cargo +nightly miri` runs.
fn has_miri() -> bool {
    Command::new("cargo")
        .env_remove("RUSTUP_TOOLCHAIN")
        .args(["+nightly", "miri", "--version"])
        .output()
        .is_ok_and(|out| out.status.success())
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT_DEBIAN: Host = Host { rustup: true, root: true, sudo: false, apt: true };
    const USER: Host = Host { rustup: true, root: false, sudo: false, apt: true };

    fn package(what: &str, package: &'static str) -> Need {
        Need::Package { what: what.to_owned(), package }
    }

    #[test]
    fn nothing_missing_runs_nothing() {
        assert_eq!(plan(&[], ROOT_DEBIAN), Plan::default());
    }

    #[test]
    fn rust_pieces_come_from_rustup() {
        let p = plan(&[Need::WindowsTarget, Need::Miri], ROOT_DEBIAN);
        assert_eq!(p.run[0].join(" "), "rustup target add x86_64-pc-windows-msvc");
        assert_eq!(p.run[1].join(" "), "rustup toolchain install nightly --profile minimal --component miri,rust-src");
        assert!(p.manual.is_empty());
    }

    #[test]
    fn packages_are_installed_once_each_by_root_with_apt() {
        let missing = [package("`wine`", "wine64"), package("`wineserver`", "wine64"), package("clang", "clang")];
        let p = plan(&missing, ROOT_DEBIAN);
        assert_eq!(p.run.len(), 2);
        assert_eq!(p.run[0].join(" "), "apt-get update -q");
        assert_eq!(p.run[1].join(" "), "apt-get install -y -q wine64 clang");
        assert!(p.manual.is_empty());
    }

    #[test]
    fn without_root_or_apt_it_names_what_is_missing_and_the_command() {
        let missing = [package("`wine`", "wine64")];
        let user = plan(&missing, USER);
        assert!(user.run.is_empty());
        assert_eq!(user.manual.len(), 1);
        assert!(user.manual[0].contains("`wine` (Debian package wine64)"), "{}", user.manual[0]);
        assert!(user.manual[0].contains("`sudo apt-get install -y wine64`"), "{}", user.manual[0]);
        let no_apt = plan(&missing, Host { apt: false, ..ROOT_DEBIAN });
        assert!(no_apt.run.is_empty() && no_apt.manual.len() == 1);
    }

    #[test]
    fn a_user_with_passwordless_sudo_installs_through_it() {
        let p = plan(&[package("clang", "clang")], Host { sudo: true, ..USER });
        assert_eq!(p.run[0].join(" "), "sudo -n apt-get update -q");
        assert_eq!(p.run[1].join(" "), "sudo -n apt-get install -y -q clang");
    }

    #[test]
    fn without_rustup_the_rust_pieces_are_manual() {
        let p = plan(&[Need::WindowsTarget], Host { rustup: false, ..ROOT_DEBIAN });
        assert!(p.run.is_empty());
        assert!(p.manual[0].contains("rustup target add x86_64-pc-windows-msvc"), "{}", p.manual[0]);
    }
}
