//! Fixed-window event counters for caps and velocity, bounded in memory
//! and O(1) per event.
//!
//! Windows are aligned to multiples of the window length (a 1 h window
//! resets on the hour). Keys are 128-bit keyed hashes already, so the maps
//! use them as they are (no second hash) and are sharded to keep lock hold
//! times to a few nanoseconds and contention low.
//!
//! Each shard counts up to its share of `max_keys` keys exactly. When a
//! shard is full (a distributed attack: many IPs at once), further keys
//! are counted in the shard's count-min sketch (conservative update, four
//! rows): still O(1), still bounded, and a count there may be
//! overestimated but never under-counted, so a rule errs toward flagging
//! instead of failing open. A new window starts every shard afresh. Counts
//! are per instance.

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

/// A count-min sketch with conservative update over random 128-bit keys.
#[derive(Debug)]
struct CountMin {
    rows: [Box<[u32]>; 4],
    mask: usize,
}

impl CountMin {
    fn new(width: usize) -> Self {
        let width = width.next_power_of_two();
        CountMin {
            rows: std::array::from_fn(|_| vec![0; width].into_boxed_slice()),
            mask: width - 1,
        }
    }

    /// Counts one event for `key`; returns its estimated count.
    fn add(&mut self, key: u128) -> u64 {
        // Four independent 32-bit slices of a uniformly random key.
        let idx = |row: usize| (key >> (32 * row)) as u32 as usize & self.mask;
        let min = (0..4).map(|r| self.rows[r][idx(r)]).min().unwrap_or(0);
        let next = min.saturating_add(1);
        for r in 0..4 {
            let cell = &mut self.rows[r][idx(r)];
            if *cell < next {
                *cell = next;
            }
        }
        u64::from(next)
    }
}

#[derive(Debug, Default)]
struct Shard {
    window: u64,
    exact: HashMap<u128, u64, BuildHasherDefault<PreHashed>>,
    /// Keys past the exact capacity, this window (allocated on first need).
    overflow: Option<Box<CountMin>>,
}

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

    pub fn window_s(&self) -> u64 {
        self.window_s
    }

    /// Counts one event for `key` at `now` (Unix seconds); returns the
    /// count in the current window including this one.
    pub fn hit(&self, key: u128, now: u64) -> u64 {
        let window = now / self.window_s;
        // High bits pick the shard; the map hashes on the low bits.
        let shard = &self.shards[(key >> 122) as usize % SHARDS];
        let mut s = shard.lock().unwrap_or_else(|p| p.into_inner());
        if window > s.window {
            // Every counter belongs to a past window: start afresh.
            s.window = window;
            s.exact.clear();
            s.overflow = None;
        }
        if let Some(count) = s.exact.get_mut(&key) {
            *count += 1;
            return *count;
        }
        if s.exact.len() < self.per_shard {
            s.exact.insert(key, 1);
            return 1;
        }
        let width = self.per_shard.clamp(1024, 1 << 16);
        s.overflow
            .get_or_insert_with(|| Box::new(CountMin::new(width)))
            .add(key)
    }

    /// Keys counted exactly right now.
    pub fn tracked(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).exact.len() as u64)
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
    fn past_capacity_keys_are_still_counted_never_under() {
        let c = WindowCounters::new(60, SHARDS as u64 * 4);
        // Spread over every shard, far past each one's capacity of 4.
        let key = |i: u128| i.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835) >> 6;
        for i in 0..10_000u128 {
            c.hit(key(i), 0);
        }
        assert!(c.tracked() <= SHARDS as u64 * 4, "tracked {}", c.tracked());
        // A key first seen while its shard is full is counted all the same.
        let late = key(1 << 40);
        let counts: Vec<u64> = (0..5).map(|_| c.hit(late, 0)).collect();
        for (i, n) in counts.iter().enumerate() {
            assert!(*n > i as u64, "count {n} for event {}", i + 1);
        }
        // A new window starts afresh: exact again.
        assert_eq!(c.hit(late, 60), 1);
        assert_eq!(c.hit(late, 60), 2);
    }

    #[test]
    fn count_min_never_undercounts_and_is_tight_when_sparse() {
        let mut cm = CountMin::new(1024);
        let k = 0x1234_5678_9abc_def0_0fed_cba9_8765_4321u128;
        for i in 1..=100 {
            assert_eq!(cm.add(k), i);
        }
        let other = 0xdead_beef_0000_1111_2222_3333_4444_5555u128;
        assert_eq!(cm.add(other), 1);
    }
}
