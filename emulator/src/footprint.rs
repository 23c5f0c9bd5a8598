//! What a driver's connections cost in non-paged pool, from the session's counters: the
//! figure the host binaries print at exit.
//!
//! A [`Footprint`] is started once the driver is loaded and listening (no connection yet): it
//! records the live non-paged bytes then (the *baseline*) and, on a thread of its own, samples
//! the driver's count of open connections every 10 ms, keeping its maximum. At the end,
//!
//! ```text
//! per connection = (peak non-paged bytes - baseline) / peak open connections
//! ```
//!
//! The peak of non-paged bytes is the counters' exact peak over the session; the peak number
//! of connections is sampled, so a peak shorter than the sampling period is missed and the
//! figure errs high, never low. For held connections (a flood of idle clients) both peaks are
//! reached together, and the figure is what one idle connection costs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::counters::counters;

/// How often the open connections are sampled.
const PERIOD: Duration = Duration::from_millis(10);

/// Samples a driver's open connections against the pool counters (see the module docs).
pub struct Footprint {
    baseline: u64,
    peak_open: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    sampler: Option<JoinHandle<()>>,
}

/// The figures of a [`Footprint`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FootprintFigures {
    /// Live non-paged bytes when sampling began (the driver loaded, no connection).
    pub baseline: u64,
    /// The session's peak of live non-paged bytes.
    pub peak: u64,
    /// The most connections seen open at once.
    pub peak_connections: u64,
}

impl FootprintFigures {
    /// `(peak - baseline) / peak_connections` bytes, or `None` without any connection.
    pub fn per_connection(&self) -> Option<u64> {
        (self.peak_connections != 0).then(|| self.peak.saturating_sub(self.baseline) / self.peak_connections)
    }
}

impl std::fmt::Display for FootprintFigures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "peak non-paged {} bytes, {} with no connection, peak {} connections",
            self.peak, self.baseline, self.peak_connections
        )?;
        match self.per_connection() {
            Some(per) => write!(f, ": {per} bytes per connection ((peak - no connection) / peak connections)"),
            None => Ok(()),
        }
    }
}

impl Footprint {
    /// Starts sampling `open` (the driver's count of open connections). Call it with the
    /// driver loaded and no connection open: the live non-paged bytes now are the baseline.
    pub fn start(open: fn() -> u64) -> Self {
        let baseline = counters().live_nonpaged_bytes;
        let peak_open = Arc::new(AtomicU64::new(open()));
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = {
            let (peak_open, stop) = (peak_open.clone(), stop.clone());
            std::thread::Builder::new()
                .name("footprint".to_owned())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        peak_open.fetch_max(open(), Ordering::Relaxed);
                        std::thread::sleep(PERIOD);
                    }
                })
                .ok()
        };
        Self { baseline, peak_open, stop, sampler }
    }

    /// The most connections seen open at once so far.
    pub fn peak_connections(&self) -> u64 {
        self.peak_open.load(Ordering::Relaxed)
    }

    /// Stops sampling; the figures with the session's peak now (call before unloading: the
    /// session's counters end with it).
    pub fn finish(mut self) -> FootprintFigures {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(sampler) = self.sampler.take() {
            let _ = sampler.join();
        }
        FootprintFigures {
            baseline: self.baseline,
            peak: counters().peak_nonpaged_bytes,
            peak_connections: self.peak_open.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Footprint {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_connection_is_peak_less_baseline_over_connections() {
        let figures = FootprintFigures { baseline: 1000, peak: 21_000, peak_connections: 10 };
        assert_eq!(figures.per_connection(), Some(2000));
        assert_eq!(FootprintFigures { peak_connections: 0, ..figures }.per_connection(), None);
        assert!(figures.to_string().contains("2000 bytes per connection"));
    }
}
