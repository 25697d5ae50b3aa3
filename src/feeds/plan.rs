//! When a feed runs next: its interval with jitter, backoff after a
//! failure.

use super::*;
use crate::backoff::Backoff;

impl Feed {
    /// When the scheduler runs this feed next, from its state.
    pub(super) fn plan_next(&self, after_failure: Option<&FeedError>) -> u64 {
        let now = now_unix();
        let every = self.cfg.every.as_secs_f64();
        let next = match after_failure {
            Some(e) => {
                let ten = Duration::from_secs(10);
                let failures = self.lock().consecutive_failures;
                let backoff = Backoff::new(ten, self.cfg.every.max(ten))
                    .after(failures)
                    .as_secs_f64();
                let wait = e
                    .retry_after()
                    .map_or(backoff, |r| backoff.max(r.as_secs_f64()));
                now + wait.ceil() as u64
            }
            None => {
                let r: f64 = rand::random::<f64>() * 2.0 - 1.0;
                now + (every * (1.0 + self.cfg.jitter * r)).max(1.0).round() as u64
            }
        };
        self.next_run.store(next, Ordering::Relaxed);
        next
    }

    /// First run: at once if the last success is older than `every`.
    pub(super) fn plan_first(&self) -> u64 {
        let now = now_unix();
        let s = self.lock();
        let next = match (s.last_success, s.consecutive_failures) {
            (Some(t), 0) if t + self.cfg.every.as_secs() > now => t + self.cfg.every.as_secs(),
            _ => now,
        };
        drop(s);
        self.next_run.store(next, Ordering::Relaxed);
        next
    }
}
