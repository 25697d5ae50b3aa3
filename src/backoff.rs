//! Exponential backoff: the one way a retry waits longer after each
//! failure in a row (the decision log's writer, a feed's next run).

use std::time::Duration;

/// Waits that start at `min` and double with each failure in a row, up
/// to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub min: Duration,
    pub max: Duration,
}

impl Backoff {
    pub const fn new(min: Duration, max: Duration) -> Self {
        Backoff { min, max }
    }

    /// The wait after the `failures`th failure in a row: `min` after the
    /// first (and for 0), then `min · 2^(failures - 1)`, at most `max`.
    pub fn after(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1);
        1u32.checked_shl(doublings)
            .and_then(|factor| self.min.checked_mul(factor))
            .map_or(self.max, |wait| wait.min(self.max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn doubles_from_min_up_to_max() {
        let b = Backoff::new(MS(100), MS(5000));
        let waits: Vec<u64> = (0..=8).map(|n| b.after(n).as_millis() as u64).collect();
        assert_eq!(waits, [100, 100, 200, 400, 800, 1600, 3200, 5000, 5000]);
    }

    #[test]
    fn a_long_run_of_failures_stays_at_max() {
        let b = Backoff::new(Duration::from_secs(10), Duration::from_secs(3600));
        for n in [13, 31, 32, 33, 64, 65, u32::MAX] {
            assert_eq!(b.after(n), Duration::from_secs(3600), "{n}");
        }
        let huge = Backoff::new(Duration::MAX, Duration::MAX);
        assert_eq!(huge.after(2), Duration::MAX, "no overflow");
    }

    #[test]
    fn a_max_below_min_caps_every_wait() {
        let b = Backoff::new(MS(500), MS(200));
        assert_eq!((b.after(1), b.after(4)), (MS(200), MS(200)));
    }
}
