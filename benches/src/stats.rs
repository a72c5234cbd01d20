//! Medians and spreads of repeated measurements.

use serde::Serialize;

/// A summary of samples, in milliseconds unless the field name says otherwise.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Summary {
    pub(crate) n: usize,
    pub(crate) median: f64,
    pub(crate) p10: f64,
    pub(crate) p90: f64,
    pub(crate) p99: f64,
    pub(crate) min: f64,
    pub(crate) max: f64,
}

impl Summary {
    /// The summary of `samples` (which must not be empty).
    pub(crate) fn of(samples: &[f64]) -> Summary {
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let at = |q: f64| {
            let index = ((sorted.len() - 1) as f64 * q).round() as usize;
            sorted[index]
        };
        Summary {
            n: sorted.len(),
            median: at(0.5),
            p10: at(0.1),
            p90: at(0.9),
            p99: at(0.99),
            min: sorted[0],
            max: sorted[sorted.len() - 1],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Summary;

    #[test]
    fn quantiles_of_a_known_series() {
        let samples: Vec<f64> = (1..=101).map(f64::from).collect();
        let s = Summary::of(&samples);
        assert_eq!(
            (s.n, s.median, s.p10, s.p90, s.min, s.max),
            (101, 51.0, 11.0, 91.0, 1.0, 101.0)
        );
    }
}
