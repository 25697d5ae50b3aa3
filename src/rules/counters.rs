//! Fixed-window event counters for caps and velocity, bounded in memory.
//!
//! Windows are aligned to multiples of the window length (a 1 h window
//! resets on the hour). Keys are 128-bit keyed hashes already, so the maps
//! use them as they are (no second hash) and are sharded to keep lock hold
//! times to a few nanoseconds and contention low. Each shard holds at most
//! its share of `max_keys`: when full, counters of past windows are
//! dropped; if it is still full, a new key is not tracked (counted as 1, so
//! the rule fails open rather than memory growing). Counts are per instance.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Mutex;

const SHARDS: usize = 64;

/// Uses the low 64 bits of an already-random key as its hash.
#[derive(Default)]
struct PreHashed(u64);

impl Hasher for PreHashed {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes.iter().take(8) {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }
    fn write_u128(&mut self, n: u128) {
        self.0 = n as u64;
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    window: u64,
    count: u64,
}

type Shard = HashMap<u128, Slot, BuildHasherDefault<PreHashed>>;

#[derive(Debug)]
pub struct WindowCounters {
    shards: Box<[Mutex<Shard>]>,
    window_s: u64,
    per_shard: usize,
}

impl WindowCounters {
    pub fn new(window_s: u64, max_keys: u64) -> Self {
        WindowCounters {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            window_s: window_s.max(1),
            per_shard: (max_keys as usize / SHARDS).max(1),
        }
    }

    /// Counts one event for `key` at `now` (Unix seconds); returns the
    /// count in the current window including this one.
    pub fn hit(&self, key: u128, now: u64) -> u64 {
        let window = now / self.window_s;
        // High bits pick the shard; the map hashes on the low bits.
        let shard = &self.shards[(key >> 122) as usize % SHARDS];
        let mut m = shard.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() >= self.per_shard && !m.contains_key(&key) {
            m.retain(|_, s| s.window == window);
            if m.len() >= self.per_shard {
                return 1;
            }
        }
        let slot = m.entry(key).or_insert(Slot { window, count: 0 });
        if slot.window != window {
            *slot = Slot { window, count: 0 };
        }
        slot.count += 1;
        slot.count
    }

    /// Keys currently tracked.
    pub fn tracked(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len() as u64)
            .sum()
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

    #[test]
    fn memory_stays_bounded_and_old_windows_make_room() {
        let c = WindowCounters::new(60, SHARDS as u64 * 4);
        let key = |i: u128| (i << 122) | i; // all in shard 0 .. spread by i
        for i in 0..10_000u128 {
            c.hit(key(i % 64) ^ (i << 64), 0);
        }
        assert!(c.tracked() <= SHARDS as u64 * 4, "tracked {}", c.tracked());
        // A new window: the old counters give way to new keys.
        assert_eq!(c.hit(u128::MAX - 7, 60), 1);
        assert_eq!(c.hit(u128::MAX - 7, 60), 2, "tracked again after the purge");
    }
}
