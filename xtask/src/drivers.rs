//! `cargo xtask drivers`: builds the example drivers as `.sys` images with rust-lld (no
//! WDK), stamps the PE checksum and checks each image.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::pe::checks::{self, ENTRY_SYMBOL};
use crate::pe::linkmap::LinkMap;
use crate::pe::{self, Image};
use crate::util::{self, Context, Result, bail};

pub const TARGET: &str = "x86_64-pc-windows-msvc";

/// A driver package and the image it becomes.
#[derive(Debug, Clone, Copy)]
pub struct Driver {
    /// Short name: the image is `<name>.sys` and the service name under Wine.
    pub name: &'static str,
    /// Cargo package.
    pub package: &'static str,
    /// Library crate name (`-` replaced by `_`), the stem of the linked file.
    pub crate_name: &'static str,
}

pub const ECHO: Driver = Driver { name: "echo", package: "echo-driver", crate_name: "echo_driver" };

pub const STRESS: Driver = Driver { name: "stress", package: "stress-driver", crate_name: "stress_driver" };

/// The HTTP status driver. Its service is not called `http`: Wine has an `http.sys` of its own.
pub const STATUS: Driver = Driver { name: "wskstatus", package: "status-driver", crate_name: "status_driver" };

pub const ALL: &[Driver] = &[ECHO, STRESS, STATUS];

/// Linker arguments that make a kernel driver out of a `cdylib`.
const LINK_ARGS: &[&str] = &[
    "/DRIVER",
    "/NODEFAULTLIB",
    "/SUBSYSTEM:NATIVE",
    "/ENTRY:DriverEntry",
    "/RELEASE",
    // lld-link replaces the R/W/E bits with exactly the letters given, so each
    // section names all of its access bits plus P (not pageable).
    "/SECTION:.text,PRE",
    "/SECTION:.rdata,PR",
    "/SECTION:.data,PRW",
    "/SECTION:.pdata,PR",
];

/// The package's directory relative to the workspace root.
fn package_dir(driver: &Driver) -> &'static str {
    match driver.name {
        "echo" => "examples/echo",
        _ => "examples/stress",
    }
}

/// Where the finished images go: `<target>/drivers`.
pub fn output_dir() -> PathBuf {
    util::target_dir().join("drivers")
}

/// The finished image of `driver`.
pub fn image_path(driver: &Driver) -> PathBuf {
    output_dir().join(format!("{}.sys", driver.name))
}

/// Looks drivers up by short name; no names means all of them.
pub fn select(names: &[String]) -> Result<Vec<Driver>> {
    if names.is_empty() {
        return Ok(ALL.to_vec());
    }
    names
        .iter()
        .map(|name| match ALL.iter().find(|d| d.name == name) {
            Some(driver) => Ok(*driver),
            None => {
                let known: Vec<_> = ALL.iter().map(|d| d.name).collect();
                bail!("unknown driver `{name}`; known: {}", known.join(", "))
            }
        })
        .collect()
}

/// Builds, stamps and checks each driver; returns the image paths.
pub fn build_all(drivers: &[Driver]) -> Result<Vec<PathBuf>> {
    drivers.iter().map(build).collect()
}

/// Builds one driver into `<target>/drivers/<name>.sys` and checks the image.
pub fn build(driver: &Driver) -> Result<PathBuf> {
    let start = Instant::now();
    println!("drivers: building {} ({TARGET})", driver.package);
    let release_dir = util::target_dir().join(TARGET).join("release");
    // The map sits beside the linked file: both are rewritten by every link and
    // both survive a build that had nothing to relink.
    let map_path = release_dir.join(format!("{}.map", driver.crate_name));
    util::run_inherit(&mut link_command(driver, &map_path))?;

    let out_dir = output_dir();
    util::create_dir_all(&out_dir)?;
    let linked = release_dir.join(format!("{}.dll", driver.crate_name));
    let sys = image_path(driver);
    let mut bytes = util::read(&linked)?;
    let checksum = pe::stamp_checksum(&mut bytes).context(|| format!("{}", linked.display()))?;
    util::write(&sys, &bytes)?;
    let map_copy = out_dir.join(format!("{}.map", driver.name));
    util::copy(&map_path, &map_copy)?;
    let pdb = release_dir.join(format!("{}.pdb", driver.crate_name));
    if pdb.is_file() {
        // Keep the PDB's own name: the image's debug record refers to it by that name.
        util::copy(&pdb, &out_dir.join(pdb.file_name().unwrap_or_default()))?;
    }

    // The installation file sits next to the package's manifest as `<name>.inf`.
    let inf = util::workspace_root().join(package_dir(driver)).join(format!("{}.inf", driver.name));
    if inf.is_file() {
        util::copy(&inf, &out_dir.join(format!("{}.inf", driver.name)))?;
    }

    // Every driver here runs the executor: its work item routine must be there for the
    // `work-item-tail-jump` rule to have checked it.
    let summary = check_image_file(&sys, Some(&map_copy), true)?;
    println!(
        "drivers: {} ok ({} bytes, checksum {checksum:#010x}, {summary}) in {} s",
        sys.display(),
        bytes.len(),
        util::secs(start.elapsed())
    );
    Ok(sys)
}

/// The build of one image. Without the package's default features: those are for its host
/// binary (the echo driver's blocking baseline), not for the image.
fn link_command(driver: &Driver, map_path: &Path) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(util::workspace_root()).args([
        "rustc",
        "--release",
        "--package",
        driver.package,
        "--lib",
        "--no-default-features",
        "--crate-type",
        "cdylib",
        "--target",
        TARGET,
        "--",
        "-C",
        "linker=rust-lld",
        "-C",
        "linker-flavor=lld-link",
    ]);
    for arg in LINK_ARGS {
        cmd.arg("-C").arg(format!("link-arg={arg}"));
    }
    cmd.arg("-C").arg(format!("link-arg=/MAP:{}", map_path.display()));
    cmd
}

/// Runs every driver image check on a file (with its link map, if given).
///
/// Returns a one-line description of the image, or an error naming the file and
/// each broken rule. With `needs_work_item_routine`, a link map without the executor's work
/// item routine is an error too.
pub fn check_image_file(path: &Path, map_path: Option<&Path>, needs_work_item_routine: bool) -> Result<String> {
    let bytes = util::read(path)?;
    let map = match map_path {
        Some(map_path) => Some(
            LinkMap::parse(&util::read_to_string(map_path)?).context(|| format!("link map {}", map_path.display()))?,
        ),
        None => None,
    };
    let has_routine = map.as_ref().is_some_and(|m| m.symbols_named(checks::WORK_ITEM_ROUTINE).next().is_some());
    if needs_work_item_routine && !has_routine {
        bail!(
            "{}: no link map naming {} (the executor's work item routine)",
            path.display(),
            checks::WORK_ITEM_ROUTINE
        );
    }
    let violations = checks::check_driver_image(&bytes, map.as_ref());
    if !violations.is_empty() {
        let list: Vec<String> = violations.iter().map(|v| format!("  {v}")).collect();
        bail!("{} fails {} driver image check(s):\n{}", path.display(), violations.len(), list.join("\n"));
    }
    describe(&bytes, map.is_some(), has_routine)
}

fn describe(bytes: &[u8], with_map: bool, routine: bool) -> Result<String> {
    let image = Image::parse(bytes).context(|| "re-reading checked image".to_owned())?;
    let dlls = image.imported_dlls().context(|| "re-reading imports".to_owned())?;
    let mut imports = Vec::new();
    for (i, dll) in dlls.iter().enumerate() {
        let count = image.imported_functions(i).context(|| format!("re-reading imports from {dll}"))?.len();
        imports.push(format!("{dll}: {count}"));
    }
    let source = if with_map { "link map" } else { "exports" };
    Ok(format!(
        "entry {ENTRY_SYMBOL} at {:#x} per {source}, imports {}{}",
        image.entry_point,
        imports.join(", "),
        if routine { ", the executor's work item routine jumps to KeSetEvent" } else { "" }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn select_by_name() {
        let all = select(&[]).unwrap();
        assert_eq!(all.len(), 3);
        let echo = select(&["echo".to_owned()]).unwrap();
        assert_eq!(echo[0].package, "echo-driver");
        let err = select(&["nope".to_owned()]).unwrap_err().to_string();
        assert!(err.contains("echo, stress, wskstatus"), "{err}");
    }

    #[test]
    fn link_command_marks_sections_and_writes_map() {
        let cmd = link_command(&ECHO, Path::new("/t/echo_driver.map"));
        let line = util::display_command(&cmd);
        for needle in [
            "rustc --release --package echo-driver --lib --no-default-features --crate-type cdylib",
            "--target x86_64-pc-windows-msvc",
            "link-arg=/ENTRY:DriverEntry",
            "link-arg=/SECTION:.data,PRW",
            "link-arg=/MAP:/t/echo_driver.map",
        ] {
            assert!(line.contains(needle), "{needle} missing from {line}");
        }
    }
}
