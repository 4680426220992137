//! When to look at an operation again, as pure functions.
//!
//! The Python SDK's curve: the interval depends on the fraction of the timeout already spent,
//! growing logarithmically from `min` to `max`, with a jitter that is widest mid-way. A
//! server's `Retry-After` on the status answer wins when it is longer, up to `max`.

use std::time::Duration;

/// Parameters of the polling curve (from `ContreeConfig`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PollCurve {
    /// Shortest interval.
    pub min: Duration,
    /// Longest interval.
    pub max: Duration,
    /// Steepness (1–2 recommended).
    pub steepness: f64,
}

impl PollCurve {
    /// The interval after `spent` out of `timeout`, for a `jitter_sample` in `[0, 1)`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use contree_core::poll::PollCurve;
    /// let c = PollCurve { min: Duration::from_millis(100), max: Duration::from_secs(10), steepness: 1.75 };
    /// let early = c.interval(Duration::from_secs(1), Duration::from_secs(1000), 0.5);
    /// let late = c.interval(Duration::from_secs(900), Duration::from_secs(1000), 0.5);
    /// assert!(early < late);
    /// assert!(early >= c.min && late <= c.max);
    /// ```
    pub fn interval(&self, spent: Duration, timeout: Duration, jitter_sample: f64) -> Duration {
        let (min, max) = (self.min.as_secs_f64(), self.max.as_secs_f64().max(self.min.as_secs_f64()));
        let progress =
            if timeout.is_zero() { 1.0 } else { (spent.as_secs_f64() / timeout.as_secs_f64()).clamp(0.0, 1.0) };
        let k = if self.steepness > 0.0 { self.steepness } else { 1.0 };
        let mut growth = (1.0 + progress * (k.exp() - 1.0)).ln() / k;
        let spread = 0.1 + 0.4 * (1.0 - 2.0 * (progress - 0.5).abs());
        let unit = (jitter_sample.clamp(0.0, 1.0) * 2.0) - 1.0;
        growth *= 1.0 + unit * spread;
        Duration::from_secs_f64((min + growth * (max - min)).clamp(min, max))
    }

    /// The next sleep: the curve, or the server's hint when longer (capped at `max`), never
    /// past the deadline.
    pub fn next_sleep(
        &self,
        spent: Duration,
        timeout: Duration,
        retry_after: Option<Duration>,
        jitter_sample: f64,
    ) -> Duration {
        let mut d = self.interval(spent, timeout, jitter_sample);
        if let Some(hint) = retry_after {
            d = d.max(hint.min(self.max));
        }
        d.min(timeout.saturating_sub(spent) + self.min)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn curve() -> PollCurve {
        PollCurve { min: Duration::from_millis(100), max: Duration::from_secs(10), steepness: 1.75 }
    }

    #[test]
    fn stays_within_bounds_for_every_jitter() {
        let t = Duration::from_secs(100);
        for i in 0..=100 {
            for j in [0.0, 0.25, 0.5, 0.99] {
                let d = curve().interval(t * i / 100, t, j);
                assert!(d >= curve().min && d <= curve().max, "{i} {j} {d:?}");
            }
        }
    }

    #[test]
    fn grows_with_progress_without_jitter() {
        let t = Duration::from_secs(1000);
        let mut last = Duration::ZERO;
        for secs in [0, 10, 100, 500, 1000] {
            let d = curve().interval(Duration::from_secs(secs), t, 0.5);
            assert!(d >= last, "{secs}");
            last = d;
        }
    }

    #[test]
    fn server_hint_wins_but_is_capped() {
        let c = curve();
        let d = c.next_sleep(Duration::ZERO, Duration::from_secs(1000), Some(Duration::from_secs(3)), 0.5);
        assert_eq!(d, Duration::from_secs(3));
        let d = c.next_sleep(Duration::ZERO, Duration::from_secs(1000), Some(Duration::from_secs(60)), 0.5);
        assert_eq!(d, c.max);
    }

    #[test]
    fn never_sleeps_far_past_the_deadline() {
        let c = curve();
        let d =
            c.next_sleep(Duration::from_millis(999_950), Duration::from_secs(1000), Some(Duration::from_secs(9)), 0.5);
        assert!(d <= Duration::from_millis(150), "{d:?}");
    }
}
