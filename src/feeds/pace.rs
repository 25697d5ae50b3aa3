//! A feed's request budget: at most `calls_per_minute` calls to its
//! source, after a burst of [`BURST`] (a small pull is not slowed; a
//! backfill of hundreds of report windows is spread out instead of
//! hitting the source's rate limit). A GCRA: one instant kept, under a
//! lock held for a few instructions, never across the wait.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Calls that may go at once before the budget paces them.
pub const BURST: u32 = 10;

pub struct Pacer {
    /// Time between calls; zero: no budget.
    every: Duration,
    /// The theoretical arrival time of the next call.
    tat: Mutex<Option<Instant>>,
}

impl Pacer {
    /// `per_minute` calls a minute; 0: unlimited.
    pub fn new(per_minute: u32) -> Self {
        Pacer {
            every: if per_minute == 0 {
                Duration::ZERO
            } else {
                Duration::from_secs(60) / per_minute
            },
            tat: Mutex::new(None),
        }
    }

    /// Waits until the next call is within the budget, and takes it.
    pub async fn wait(&self) {
        if self.every.is_zero() {
            return;
        }
        let at = {
            let mut tat = self.tat.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let t = tat.map_or(now, |t| t.max(now));
            let slack = self.every * (BURST - 1);
            let at = t.checked_sub(slack).filter(|at| *at > now).unwrap_or(now);
            *tat = Some(t + self.every);
            at
        };
        tokio::time::sleep_until(at).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_burst_goes_at_once_then_calls_are_spaced() {
        let p = Pacer::new(60);
        let start = Instant::now();
        for _ in 0..BURST {
            p.wait().await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO, "the burst is not slowed");
        p.wait().await;
        p.wait().await;
        assert_eq!(start.elapsed(), Duration::from_secs(2), "then one a second");
    }

    #[tokio::test(start_paused = true)]
    async fn zero_is_unlimited() {
        let p = Pacer::new(0);
        let start = Instant::now();
        for _ in 0..1000 {
            p.wait().await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}
