//! The status driver's end-to-end check with a real HTTP client: `curl` against a running
//! driver (on the emulator or under Wine).

use std::net::SocketAddr;
use std::process::Command;

use crate::util::{Result, bail};

const TAG: &str = "http-client";

/// Runs `curl` with `args` (a 10 s limit each), returning its standard output.
fn curl(args: &[&str]) -> Result<String> {
    let output = Command::new("curl").args(["-sS", "--max-time", "10"]).args(args).output()?;
    if !output.status.success() {
        bail!(
            "{TAG}: `curl {}` failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// What the checks saw.
#[derive(Debug)]
pub struct Summary {
    /// The `requests` counter `GET /status` reported last.
    pub served: u64,
}

/// The number after `label ` on a line of a `/status` body.
pub fn counter(body: &str, label: &str) -> Option<u64> {
    body.lines().find_map(|l| l.strip_prefix(label)?.strip_prefix(' ')?.trim().parse().ok())
}

/// `GET /`, `HEAD /status`, two requests on one kept-alive connection, 404, 405.
pub fn check(addr: SocketAddr) -> Result<Summary> {
    let base = format!("http://{addr}");
    let root = curl(&["-i", &format!("{base}/")])?;
    if !root.starts_with("HTTP/1.1 200 OK\r\n") || !root.contains("wsk status driver") {
        bail!("{TAG}: GET / answered: {root:?}");
    }
    let head = curl(&["-I", &format!("{base}/status")])?;
    if !head.starts_with("HTTP/1.1 200 OK\r\n") || !head.contains("Content-Length: ") {
        bail!("{TAG}: HEAD /status answered: {head:?}");
    }
    // Two transfers in one curl run: the second must reuse the first's connection.
    let both = curl(&["-w", "\nconnects %{num_connects}\n", &format!("{base}/"), &format!("{base}/status")])?;
    let connects: Vec<u64> = both.lines().filter_map(|l| counter(l, "connects")).collect();
    if connects != [1, 0] {
        bail!(
            "{TAG}: the second request did not reuse the connection (new connections per transfer {connects:?}): {both:?}"
        );
    }
    let served =
        counter(&both, "requests").ok_or_else(|| crate::util::Error::msg(format!("{TAG}: no counters in {both:?}")))?;
    if served < 4 {
        bail!("{TAG}: /status counts {served} requests after 4: {both:?}");
    }
    let missing = curl(&["-o", "/dev/null", "-w", "%{http_code}", &format!("{base}/nope")])?;
    let delete = curl(&["-o", "/dev/null", "-w", "%{http_code}", "-X", "DELETE", &format!("{base}/")])?;
    if missing != "404" || delete != "405" {
        bail!("{TAG}: GET /nope answered {missing}, DELETE / answered {delete} (expected 404 and 405)");
    }
    println!(
        "{TAG}: GET, HEAD, keep-alive, 404 and 405 as expected against {addr}; the driver counted {served} requests"
    );
    Ok(Summary { served })
}

#[cfg(test)]
mod tests {
    #[test]
    fn counters_are_read_from_the_status_body() {
        let body = "connections 3\nrequests 12\nopen 1\n";
        assert_eq!(super::counter(body, "requests"), Some(12));
        assert_eq!(super::counter(body, "connections"), Some(3));
        assert_eq!(super::counter(body, "missing"), None);
        assert_eq!(super::counter("requestsx 5", "requests"), None);
    }
}
