//! `cargo xtask <command>`; see `cargo xtask help`.

use std::path::PathBuf;
use std::process::ExitCode;

use xtask::util::{Result, bail};
use xtask::{bench, drivers, flood, setup, test, wine};

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  drivers [NAME...]            build the example drivers (echo, stress, wskstatus) into
                               target/drivers/NAME.sys and check each image
  check-image FILE [--map MAP] run the driver image checks on any .sys file
  wine-test [--stress-seconds N]
                               echo.sys under Wine against the end-to-end client,
                               then stress.sys with every scenario for N seconds
                               (default 20); checks their DbgPrint output (fails
                               without Wine; `cargo xtask setup` installs it)
  setup [--skip STEP]...       install what the test steps need (Rust target, nightly
                               Miri; as root on Debian: clang, mingw-w64 and Wine
                               headers, Wine), or fail naming what is missing and
                               the command that installs it
  test [--skip STEP]...        run everything CI runs, in order, and summarize;
                               steps: setup, fmt, clippy, doc, test, package, echo,
                               stress, chaos, drivers, wine, loom, miri
  bench                        run the benchmarks (executor vs tokio and smol,
                               sockets figures, echo servers) and print their tables
  flood [--connections N] [--hold S] [--addr IP:PORT] [--irp-receive]
                               N idle connections (default 2000) from this process to
                               the host echo-driver: started here, stopped while they
                               are held, its footprint line printed (peak non-paged
                               bytes per connection); or, with --addr, to a running
                               one, held for S seconds
  help                         show this text";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> Result<()> {
    let Some((command, rest)) = args.split_first() else {
        bail!("no command given\n\n{USAGE}");
    };
    match command.as_str() {
        "drivers" => drivers::build_all(&drivers::select(rest)?).map(drop),
        "check-image" => check_image(rest),
        "wine-test" => wine::smoke_test(parse_stress_seconds(rest)?),
        "setup" => setup::run(&parse_skips(rest)?),
        "test" => test::run(&parse_skips(rest)?),
        "bench" => {
            no_arguments(command, rest)?;
            bench::run()
        }
        "flood" => flood::run(rest),
        "help" | "-h" | "--help" => {
            println!("{USAGE}");
            Ok(())
        }
        other => bail!("unknown command `{other}`\n\n{USAGE}"),
    }
}

/// `--stress-seconds N` (or none: the default run).
fn parse_stress_seconds(args: &[String]) -> Result<std::time::Duration> {
    match args {
        [] => Ok(wine::STRESS_WINE_DEFAULT_RUN),
        [flag, n] if flag == "--stress-seconds" => match n.parse::<u64>() {
            Ok(secs) if secs > 0 => Ok(std::time::Duration::from_secs(secs)),
            _ => bail!("--stress-seconds takes a whole number of seconds above 0, got `{n}`"),
        },
        [other, ..] => bail!("`wine-test` takes only --stress-seconds N, got `{other}`"),
    }
}

fn no_arguments(command: &str, rest: &[String]) -> Result<()> {
    if let Some(extra) = rest.first() {
        bail!("`{command}` takes no arguments, got `{extra}`");
    }
    Ok(())
}

/// `--skip a --skip b`, `--skip=a,b` and `--skip a,b` all work.
fn parse_skips(args: &[String]) -> Result<Vec<String>> {
    let mut skips = Vec::new();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let value = match arg.strip_prefix("--skip=") {
            Some(value) => value.to_owned(),
            None if arg == "--skip" => match iter.next() {
                Some(value) => value.clone(),
                None => bail!("--skip needs a step name"),
            },
            None => bail!("unexpected argument `{arg}` for `test`\n\n{USAGE}"),
        };
        skips.extend(value.split(',').filter(|s| !s.is_empty()).map(str::to_owned));
    }
    test::validate_skips(&skips)?;
    Ok(skips)
}

fn check_image(args: &[String]) -> Result<()> {
    let mut file = None;
    let mut map = None;
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if arg == "--map" {
            match iter.next() {
                Some(path) => map = Some(PathBuf::from(path)),
                None => bail!("--map needs a file"),
            }
        } else if file.is_none() {
            file = Some(PathBuf::from(arg));
        } else {
            bail!("unexpected argument `{arg}` for `check-image`");
        }
    }
    let Some(file) = file else {
        bail!("check-image needs a file");
    };
    let summary = drivers::check_image_file(&file, map.as_deref(), false)?;
    println!("{}: all driver image checks passed ({summary})", file.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn skip_forms() {
        let skips = parse_skips(&strings(&["--skip", "wine", "--skip=loom,miri"])).unwrap();
        assert_eq!(skips, ["wine", "loom", "miri"]);
        assert!(parse_skips(&strings(&["--skip"])).is_err());
        assert!(parse_skips(&strings(&["--skip", "bogus"])).is_err());
        assert!(parse_skips(&strings(&["wine"])).is_err());
    }

    #[test]
    fn unknown_command_fails() {
        assert!(run(&strings(&["benchmark"])).is_err());
        assert!(run(&strings(&["bench", "extra"])).is_err());
        assert!(run(&[]).is_err());
        assert!(run(&strings(&["wine-test", "extra"])).is_err());
    }

    #[test]
    fn stress_seconds_forms() {
        assert_eq!(parse_stress_seconds(&[]).unwrap(), wine::STRESS_WINE_DEFAULT_RUN);
        assert_eq!(parse_stress_seconds(&strings(&["--stress-seconds", "300"])).unwrap().as_secs(), 300);
        assert!(parse_stress_seconds(&strings(&["--stress-seconds", "0"])).is_err());
        assert!(parse_stress_seconds(&strings(&["--stress-seconds"])).is_err());
    }
}
