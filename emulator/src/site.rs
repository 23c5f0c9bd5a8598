//! Allocation and violation sites: an unresolved backtrace captured cheaply, resolved (symbols,
//! file and line) only when a leak or a bugcheck is reported.

use std::backtrace::Backtrace;
use std::fmt;
use std::sync::OnceLock;

/// Where something happened: the first frames of driver code (emulator, `wsk_sys` and
/// standard library frames are skipped).
pub struct Site {
    backtrace: Backtrace,
    resolved: OnceLock<String>,
}

/// Frames that belong to the emulator, the ABI crate or the standard library, not to the
/// code under test.
const SKIPPED_PREFIXES: &[&str] = &[
    "std::",
    "core::",
    "alloc::",
    "wsk_emulator::",
    "wsk_sys::",
    "backtrace::",
    "__rust",
    "rust_begin_unwind",
    "<alloc::",
    "<core::",
    "<std::",
    "<wsk_emulator::",
    "<fn(",
    "<F as ",
    "test::",
];

/// How many driver frames a summary shows.
const SUMMARY_FRAMES: usize = 3;

impl Site {
    /// Captures the current call stack (not yet resolved).
    ///
    /// Host work ([`crate::irql::host_work`]): the capture takes the standard library's
    /// backtrace lock and the unwinder's lock on the list of loaded objects, both of which
    /// sleep when another thread holds them, which says nothing of the driver. (An allocation
    /// at DISPATCH_LEVEL, legal, was once reported as blocking in the kernel tests, whose
    /// threads capture at the same time: `dispatch_level_routines_are_fine_at_dispatch`, 3.4 ms
    /// off the CPU after one voluntary switch. A wait on these locks is one way that happens;
    /// a page fault waiting for the address space lock is another, still counted.)
    pub(crate) fn capture() -> Self {
        Self { backtrace: crate::irql::host_work(Backtrace::force_capture), resolved: OnceLock::new() }
    }

    /// The first driver frames, one per line, as `symbol (file:line)`.
    pub fn summary(&self) -> &str {
        self.resolved.get_or_init(|| summarize(&self.backtrace.to_string()))
    }

    /// The whole backtrace, resolved.
    pub fn backtrace(&self) -> &Backtrace {
        &self.backtrace
    }
}

impl Site {
    /// Writes the summary as `<first>` then indented `called from` lines.
    pub(crate) fn write_lines(&self, f: &mut fmt::Formatter<'_>, first: &str) -> fmt::Result {
        for (index, line) in self.summary().lines().enumerate() {
            let label = if index == 0 { first } else { "called from" };
            write!(f, "\n      {label} {line}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Site {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.summary())
    }
}

impl fmt::Debug for Site {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Site").field(&self.summary()).finish()
    }
}

/// One frame of std's backtrace text: `N: symbol` optionally followed by `at file:line:col`.
struct Frame {
    symbol: String,
    location: Option<String>,
}

fn parse_frames(text: &str) -> Vec<Frame> {
    let mut frames: Vec<Frame> = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if let Some(location) = trimmed.strip_prefix("at ") {
            if let Some(frame) = frames.last_mut() {
                frame.location.get_or_insert_with(|| location.to_owned());
            }
            continue;
        }
        if let Some((index, symbol)) = trimmed.split_once(": ")
            && index.chars().all(|c| c.is_ascii_digit())
        {
            frames.push(Frame { symbol: symbol.to_owned(), location: None });
        }
    }
    frames
}

fn is_driver_frame(frame: &Frame) -> bool {
    let symbol = frame.symbol.as_str();
    !SKIPPED_PREFIXES.iter().any(|prefix| symbol.starts_with(prefix))
        && !crate::rtl::is_export_name(symbol)
        && !symbol.starts_with("<unknown>")
}

fn summarize(text: &str) -> String {
    let frames = parse_frames(text);
    let mut lines: Vec<String> = frames
        .iter()
        .filter(|frame| is_driver_frame(frame))
        .take(SUMMARY_FRAMES)
        .map(|frame| match &frame.location {
            Some(location) => format!("{} ({location})", frame.symbol),
            None => frame.symbol.clone(),
        })
        .collect();
    if lines.is_empty() {
        lines.push("<no driver frame; run with debug info to resolve sites>".to_owned());
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_skips_emulator_and_std_frames() {
        let text = "   0: std::backtrace::Backtrace::force_capture\n             at /rustc/library/std/src/backtrace.rs:1\n   1: wsk_emulator::pool::allocate\n   2: ExAllocatePoolWithTag\n   3: my_driver::start\n             at ./src/lib.rs:10:5\n   4: my_driver::entry\n";
        assert_eq!(summarize(text), "my_driver::start (./src/lib.rs:10:5)\nmy_driver::entry");
    }
}
