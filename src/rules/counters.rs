//! Fixed-window event counters for caps and velocity, bounded in memory.
//!
//! Windows are aligned to multiples of the window length (a 1 h window
//! resets on the hour). Counters live in a moka cache with a capacity and
//! an idle expiry of one window, so memory stays bounded however many
//! distinct keys arrive. Counts are per instance.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use moka::sync::Cache;

#[derive(Debug)]
struct Window {
    index: AtomicU64,
    count: AtomicU64,
}

#[derive(Debug, Clone)]
pub struct WindowCounters {
    cache: Cache<u128, Arc<Window>>,
    window_s: u64,
}

impl WindowCounters {
    pub fn new(window_s: u64, max_keys: u64) -> Self {
        let window_s = window_s.max(1);
        WindowCounters {
            cache: Cache::builder()
                .max_capacity(max_keys)
                .time_to_idle(Duration::from_secs(window_s))
                .build(),
            window_s,
        }
    }

    /// Counts one event for `key` at `now` (Unix seconds); returns the
    /// count in the current window including this one.
    pub fn hit(&self, key: u128, now: u64) -> u64 {
        let index = now / self.window_s;
        let w = self.cache.get_with(key, || {
            Arc::new(Window {
                index: AtomicU64::new(index),
                count: AtomicU64::new(0),
            })
        });
        let seen = w.index.load(Ordering::Acquire);
        if seen != index
            && w.index
                .compare_exchange(seen, index, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            w.count.store(0, Ordering::Release);
        }
        w.count.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Keys currently tracked (approximate).
    pub fn tracked(&self) -> u64 {
        self.cache.entry_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_within_a_window_and_resets_on_the_next() {
        let c = WindowCounters::new(60, 100);
        assert_eq!(c.hit(1, 120), 1);
        assert_eq!(c.hit(1, 150), 2);
        assert_eq!(c.hit(2, 150), 1);
        assert_eq!(c.hit(1, 179), 3);
        assert_eq!(c.hit(1, 180), 1, "new window");
    }
}
