//! Paired ratios: how sure one run of the benchmark is of a ratio between two servers.
//!
//! The repetitions of a cell are interleaved (one run on each server in turn, see
//! `client::measure_interleaved`), so repetition `i` of two servers ran within seconds of each
//! other: a change of the machine's load falls on both. Each repetition gives one ratio; the
//! logarithms of those ratios are taken as samples of a normal distribution, and the result is
//! their geometric mean with a 95% confidence interval (Student's t, `n - 1` degrees of
//! freedom). An interval that holds 1.0 means the run does not tell the two servers apart;
//! more repetitions (`WSK_BENCH_REPEATS`) narrow it.

/// A ratio's geometric mean over `pairs` repetitions and its 95% confidence interval (none
/// with a single pair).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PairedRatio {
    pub mean: f64,
    pub interval: Option<(f64, f64)>,
    pub pairs: usize,
}

/// The two-sided 95% quantile of Student's t distribution for 1 to 30 degrees of freedom;
/// above 30, the normal distribution's 1.96 (the table's last entry, 2.042, is within 4% of it).
const T_975: [f64; 30] = [
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131, 2.120,
    2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
];

fn t_975(degrees: usize) -> f64 {
    T_975.get(degrees.wrapping_sub(1)).copied().unwrap_or(1.96)
}

/// The paired ratio `ours[i] / peer[i]` over the repetitions both have (rates, higher is
/// better); `None` without a pair or with a rate that is not positive.
pub fn paired_ratio(ours: &[f64], peer: &[f64]) -> Option<PairedRatio> {
    let logs: Vec<f64> = ours
        .iter()
        .zip(peer)
        .map(|(&a, &b)| if a > 0.0 && b > 0.0 { Some((a / b).ln()) } else { None })
        .collect::<Option<_>>()?;
    let n = logs.len();
    if n == 0 {
        return None;
    }
    let mean = logs.iter().sum::<f64>() / n as f64;
    let interval = (n > 1).then(|| {
        let variance = logs.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        let half = t_975(n - 1) * (variance / n as f64).sqrt();
        ((mean - half).exp(), (mean + half).exp())
    });
    Some(PairedRatio { mean: mean.exp(), interval, pairs: n })
}

impl std::fmt::Display for PairedRatio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.interval {
            Some((low, high)) => write!(f, "{:.2} [{low:.2}-{high:.2}]", self.mean),
            None => write!(f, "{:.2}", self.mean),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_ratios_have_no_spread() {
        let r = paired_ratio(&[2.0, 4.0, 8.0], &[1.0, 2.0, 4.0]).unwrap();
        assert!((r.mean - 2.0).abs() < 1e-12);
        let (low, high) = r.interval.unwrap();
        assert!((low - 2.0).abs() < 1e-12 && (high - 2.0).abs() < 1e-12);
        assert_eq!(r.pairs, 3);
    }

    /// Ratios 0.5 and 2: geometric mean 1; logs -ln 2 and ln 2, standard deviation
    /// ln 2 * sqrt(2), standard error ln 2, t(1) = 12.706.
    #[test]
    fn two_pairs_use_t_with_one_degree_of_freedom() {
        let r = paired_ratio(&[1.0, 4.0], &[2.0, 2.0]).unwrap();
        assert!((r.mean - 1.0).abs() < 1e-12);
        let (low, high) = r.interval.unwrap();
        let half = 12.706 * std::f64::consts::LN_2;
        assert!((low - (-half).exp()).abs() < 1e-9, "{low}");
        assert!((high - half.exp()).abs() < 1e-6, "{high}");
        assert_eq!(format!("{r}"), format!("1.00 [{:.2}-{:.2}]", (-half).exp(), half.exp()));
    }

    /// Pairs follow the repetition order: the same rates sorted differently give another
    /// answer (a drift that both servers share cancels out only when paired).
    #[test]
    fn pairs_are_taken_in_repetition_order() {
        let ours = [10.0, 20.0, 40.0];
        let peer = [11.0, 22.0, 43.0];
        let paired = paired_ratio(&ours, &peer).unwrap();
        let (low, high) = paired.interval.unwrap();
        assert!(high < 1.0, "every repetition favours the peer: {low}-{high}");
        let shuffled = paired_ratio(&ours, &[43.0, 11.0, 22.0]).unwrap();
        assert!(shuffled.interval.unwrap().1 > 1.0);
    }

    #[test]
    fn one_pair_has_no_interval_and_no_pair_no_ratio() {
        let r = paired_ratio(&[3.0], &[2.0]).unwrap();
        assert_eq!(r.interval, None);
        assert_eq!(format!("{r}"), "1.50");
        assert_eq!(paired_ratio(&[], &[]), None);
        assert_eq!(paired_ratio(&[1.0], &[0.0]), None);
    }

    #[test]
    fn t_quantiles_fall_towards_the_normal() {
        assert_eq!(t_975(1), 12.706);
        assert_eq!(t_975(30), 2.042);
        assert_eq!(t_975(31), 1.96);
        assert!(T_975.windows(2).all(|w| w[0] > w[1]));
    }
}
