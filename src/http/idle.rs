//! When an HTTP/2 connection has gone idle: how many of its requests are
//! in flight and when the last one ended. An idle HTTP/1 connection is
//! closed by hyper's header read timeout; HTTP/2 has no such cut-off, and
//! a client that answers PINGs could otherwise hold a connection (a file
//! descriptor, its buffers) for as long as it likes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// One HTTP/2 connection's requests: how many are in flight, when the
/// last ended.
pub struct Activity {
    /// When the connection started; `last` counts from it.
    base: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds from `base` to when the last request ended (0: none
    /// has yet, the connection counts as idle from its start).
    last: AtomicU64,
}

/// A request in flight; dropped when it ends (also when it is cancelled).
pub struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        // (The time first: seen with the count at zero, it is this end's.)
        self.0.last.store(self.0.since_base(), Ordering::Release);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Activity {
    pub fn new() -> Arc<Self> {
        Arc::new(Activity {
            base: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last: AtomicU64::new(0),
        })
    }

    fn since_base(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Counts a request until the guard is dropped.
    pub fn busy(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        Busy(self.clone())
    }

    /// Resolves once no request has been in flight for `timeout` (never,
    /// should that be past what the clock can tell).
    pub async fn expired(&self, timeout: Duration) {
        loop {
            let last = self.last.load(Ordering::Acquire);
            let Some(until) = self
                .base
                .checked_add(Duration::from_millis(last))
                .and_then(|t| t.checked_add(timeout))
            else {
                return std::future::pending().await;
            };
            tokio::time::sleep_until(until).await;
            if self.in_flight.load(Ordering::Acquire) > 0 {
                // Busy now: not idle before `timeout` from now at least.
                tokio::time::sleep(timeout).await;
                continue;
            }
            if self.last.load(Ordering::Acquire) == last {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_connection_is_idle_a_timeout_after_its_last_request() {
        let t = Duration::from_secs(10);
        let idle = Activity::new();
        let started = Instant::now();
        idle.expired(t).await;
        assert_eq!(started.elapsed(), t, "idle from its start");

        let idle = Activity::new();
        let watch = {
            let idle = idle.clone();
            tokio::spawn(async move { idle.expired(t).await })
        };
        tokio::time::sleep(Duration::from_secs(4)).await;
        let busy = idle.busy();
        // In flight past the first deadline: not idle.
        tokio::time::sleep(Duration::from_secs(20)).await;
        assert!(!watch.is_finished(), "a request is in flight");
        drop(busy);
        let ended = Instant::now();
        watch.await.unwrap();
        assert_eq!(ended.elapsed(), t, "idle a timeout after the request ended");
    }

    #[tokio::test(start_paused = true)]
    async fn requests_that_keep_coming_keep_it_open() {
        let t = Duration::from_secs(10);
        let idle = Activity::new();
        let watch = {
            let idle = idle.clone();
            tokio::spawn(async move { idle.expired(t).await })
        };
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_secs(6)).await;
            drop(idle.busy());
        }
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert!(!watch.is_finished(), "a request every 6 s");
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(watch.is_finished(), "then nothing for 11 s");
    }
}
