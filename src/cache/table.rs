//! The verdict cache's storage: a sharded, two-choice, 8-way
//! set-associative hash table with per-entry deadlines and approximate LRU
//! eviction.
//!
//! Why not a general-purpose cache: every cached verdict is a 128-bit key
//! and a small value, and a general cache's per-entry bookkeeping (an
//! allocation per entry, access-order deques, a timer wheel) cost about
//! 585 bytes per key here, so 10 M keys needed 5.5 GiB. A slot here is the
//! key, its deadline, an access tick and the value inline, in one flat
//! array per shard, no allocation per entry: with the verdict cache's
//! packed value one 64-byte slot, aligned to a cache line, so about 80
//! bytes a key at 1.25 slots per entry.
//!
//! - A key hashes to two buckets of [`WAYS`] slots in its shard and lives in
//!   one of them; a lookup compares at most 16 keys in two cache-line runs.
//!   Two choices keep buckets evenly filled, so a table sized 1.25x its
//!   entry limit practically never evicts before it is full.
//! - A full bucket pair gives up an expired slot first, else the least
//!   recently used of its 16 (ticks per shard).
//! - Shards start small and double up to their share of the limit, so an
//!   idle process stays small.
//! - Every operation holds one shard's lock for a few dozen nanoseconds
//!   and never across an await.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Slots per bucket.
pub const WAYS: usize = 8;
/// Buckets a shard starts with.
const INITIAL_BUCKETS: usize = 2;
/// Slots per entry of the limit, at most (1.25: two-choice buckets fill
/// evenly up to about 90%).
const SLACK_NUM: usize = 5;
const SLACK_DEN: usize = 4;

/// One cache line: a probe reads one line per slot (the key and whether
/// the slot is taken).
#[repr(align(64))]
struct Slot<V> {
    key: [u64; 2],
    /// Microseconds on the caller's clock after which the value is dead.
    deadline: u64,
    /// The shard's clock at the last access (LRU among candidates).
    tick: u32,
    value: Option<V>,
}

impl<V> Slot<V> {
    fn empty() -> Self {
        Slot {
            key: [0; 2],
            deadline: 0,
            tick: 0,
            value: None,
        }
    }
}

struct Shard<V> {
    slots: Vec<Slot<V>>,
    len: usize,
    clock: u32,
}

pub struct Table<V> {
    shards: Box<[Mutex<Shard<V>>]>,
    /// Entries in all shards, and at most.
    len: AtomicU64,
    limit: u64,
    /// Slots per shard, at most (a multiple of WAYS).
    max_slots: usize,
}

fn split(key: u128) -> [u64; 2] {
    [key as u64, (key >> 64) as u64]
}

/// `x` mapped onto `0..n` without a division (Lemire's fast range).
fn range(x: u32, n: usize) -> usize {
    ((x as u64 * n as u64) >> 32) as usize
}

impl<V> Table<V> {
    /// A table for at most `max_entries` live entries.
    pub fn new(max_entries: u64) -> Self {
        let max = max_entries.max(1) as usize;
        let shards = (max / 4096).next_power_of_two().clamp(1, 64);
        // Keys spread over the shards unevenly: the limit is the table's,
        // and a shard's slots leave room for its share and then some.
        let share = max.div_ceil(shards);
        let max_slots = (share * SLACK_NUM / SLACK_DEN)
            .div_ceil(WAYS)
            .max(INITIAL_BUCKETS)
            * WAYS;
        Table {
            shards: (0..shards)
                .map(|_| {
                    Mutex::new(Shard {
                        slots: (0..INITIAL_BUCKETS.min(max_slots / WAYS) * WAYS)
                            .map(|_| Slot::empty())
                            .collect(),
                        len: 0,
                        clock: 0,
                    })
                })
                .collect(),
            len: AtomicU64::new(0),
            limit: max as u64,
            max_slots,
        }
    }

    fn counted(&self, added: i64) {
        if added >= 0 {
            self.len.fetch_add(added as u64, Ordering::Relaxed);
        } else {
            self.len.fetch_sub(added.unsigned_abs(), Ordering::Relaxed);
        }
    }

    fn shard(&self, k: &[u64; 2]) -> std::sync::MutexGuard<'_, Shard<V>> {
        // The top bits pick the shard; the buckets use the others.
        let i = (k[1] >> 58) as usize & (self.shards.len() - 1);
        self.shards[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What `read` makes of the live value for `key` and its deadline
    /// (under the shard's lock: keep it short), the value marked as just
    /// used.
    pub fn get<R>(&self, key: u128, now: u64, read: impl FnOnce(&V, u64) -> R) -> Option<R> {
        let k = split(key);
        let mut s = self.shard(&k);
        let i = s.find(&k)?;
        s.clock = s.clock.wrapping_add(1);
        let clock = s.clock;
        let slot = &mut s.slots[i];
        if slot.deadline <= now {
            slot.value = None;
            s.len -= 1;
            self.counted(-1);
            return None;
        }
        slot.tick = clock;
        Some(read(slot.value.as_ref()?, slot.deadline))
    }

    /// Stores `value` for `key` until `deadline`, replacing what was there.
    pub fn insert(&self, key: u128, value: V, deadline: u64, now: u64) {
        let k = split(key);
        let mut s = self.shard(&k);
        s.clock = s.clock.wrapping_add(1);
        let i = match s.find(&k) {
            Some(i) => i,
            None => {
                if s.len >= s.slots.len() * 3 / 4 && s.slots.len() < self.max_slots {
                    let change = s.grow(self.max_slots, now);
                    self.counted(change);
                }
                let full = self.len.load(Ordering::Relaxed) >= self.limit;
                let i = s.place(&k, now, full);
                if s.slots[i].value.is_none() {
                    s.len += 1;
                    self.counted(1);
                }
                i
            }
        };
        let clock = s.clock;
        s.slots[i] = Slot {
            key: k,
            deadline,
            tick: clock,
            value: Some(value),
        };
    }

    pub fn remove(&self, key: u128) {
        let k = split(key);
        let mut s = self.shard(&k);
        if let Some(i) = s.find(&k) {
            s.slots[i].value = None;
            s.len -= 1;
            self.counted(-1);
        }
    }

    /// Drops every entry and gives the memory back.
    pub fn clear(&self) {
        for shard in self.shards.iter() {
            let mut s = shard.lock().unwrap_or_else(|p| p.into_inner());
            let n = (INITIAL_BUCKETS * WAYS).min(self.max_slots);
            s.slots = (0..n).map(|_| Slot::empty()).collect();
            self.counted(-(s.len as i64));
            s.len = 0;
        }
    }

    /// Drops the entries `keep` says no to (one shard locked at a time).
    pub fn retain(&self, keep: impl Fn(&V) -> bool) {
        for shard in self.shards.iter() {
            let mut s = shard.lock().unwrap_or_else(|p| p.into_inner());
            let mut dropped = 0;
            for slot in s.slots.iter_mut() {
                if slot.value.as_ref().is_some_and(|v| !keep(v)) {
                    slot.value = None;
                    dropped += 1;
                }
            }
            s.len -= dropped;
            self.counted(-(dropped as i64));
        }
    }

    /// Entries held (dead ones count until they are reused or read).
    pub fn len(&self) -> u64 {
        self.len.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Slots allocated (for the memory figures).
    pub fn slots(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).slots.len() as u64)
            .sum()
    }
}

/// Bytes a slot takes with values of type `V`.
#[cfg(test)]
pub(super) const fn slot_size<V>() -> usize {
    std::mem::size_of::<Slot<V>>()
}

impl<V> Shard<V> {
    /// The two buckets of `k` (start indexes; equal when the shard has one).
    fn buckets(&self, k: &[u64; 2]) -> [usize; 2] {
        let n = self.slots.len() / WAYS;
        [
            range(k[0] as u32, n) * WAYS,
            range((k[0] >> 32) as u32, n) * WAYS,
        ]
    }

    fn find(&self, k: &[u64; 2]) -> Option<usize> {
        let [a, b] = self.buckets(k);
        let hit = |start: usize| {
            (start..start + WAYS)
                .find(|&i| self.slots[i].value.is_some() && self.slots[i].key == *k)
        };
        hit(a).or_else(|| if a == b { None } else { hit(b) })
    }

    /// A slot for a new key: an empty one in the emptier bucket, or one
    /// freed by moving a resident to its other bucket (unless the shard is
    /// at its limit); else a dead one; else the least recently used of the
    /// two buckets.
    fn place(&mut self, k: &[u64; 2], now: u64, full: bool) -> usize {
        let [a, b] = self.buckets(k);
        let candidates = || (a..a + WAYS).chain((b..b + WAYS).filter(move |_| a != b));
        if !full {
            let empty_in = |t: &Self, start: usize| {
                (start..start + WAYS).find(|&i| t.slots[i].value.is_none())
            };
            let empties = |start: usize| {
                (start..start + WAYS)
                    .filter(|&i| self.slots[i].value.is_none())
                    .count()
            };
            let (first, second) = if empties(b) > empties(a) {
                (b, a)
            } else {
                (a, b)
            };
            if let Some(i) = empty_in(self, first).or_else(|| empty_in(self, second)) {
                return i;
            }
            // Both full: one cuckoo step, a resident to its other bucket.
            for i in candidates() {
                let here = i / WAYS * WAYS;
                let [x, y] = self.buckets(&self.slots[i].key);
                let other = if x == here { y } else { x };
                if other != here
                    && let Some(j) = empty_in(self, other)
                {
                    self.slots.swap(i, j);
                    return i;
                }
            }
        }
        if let Some(i) =
            candidates().find(|&i| self.slots[i].value.is_some() && self.slots[i].deadline <= now)
        {
            return i;
        }
        candidates()
            .filter(|&i| self.slots[i].value.is_some())
            .max_by_key(|&i| self.clock.wrapping_sub(self.slots[i].tick))
            .unwrap_or(a)
    }

    /// Doubles the slots (at most `max_slots`), moving the live entries;
    /// dead ones are left behind. Returns the change in entries.
    fn grow(&mut self, max_slots: usize, now: u64) -> i64 {
        let before = self.len as i64;
        let n = (self.slots.len() * 2).min(max_slots);
        let old = std::mem::replace(&mut self.slots, (0..n).map(|_| Slot::empty()).collect());
        self.len = 0;
        for slot in old {
            if slot.value.is_some() && slot.deadline > now {
                let i = self.place(&slot.key, now, false);
                if self.slots[i].value.is_none() {
                    self.len += 1;
                }
                self.slots[i] = slot;
            }
        }
        self.len as i64 - before
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value alone.
    fn value<V: Clone>(t: &Table<V>, key: u128, now: u64) -> Option<V> {
        t.get(key, now, |v, _| v.clone())
    }

    fn key(i: u64) -> u128 {
        // Spread like the keyed hashes real keys are.
        let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
        x ^= x >> 29;
        let y = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
        (u128::from(y) << 64) | u128::from(x ^ (y >> 31))
    }

    #[test]
    fn stores_replaces_removes_and_expires() {
        let t: Table<u32> = Table::new(1000);
        t.insert(key(1), 10, 100, 0);
        t.insert(key(2), 20, 100, 0);
        assert_eq!(t.get(key(2), 1, |v, d| (*v, d)), Some((20, 100)));
        assert_eq!(
            (value(&t, key(1), 1), value(&t, key(2), 1)),
            (Some(10), Some(20))
        );
        t.insert(key(1), 11, 100, 1);
        assert_eq!(value(&t, key(1), 2), Some(11));
        assert_eq!(t.len(), 2);
        t.remove(key(2));
        assert_eq!((value(&t, key(2), 2), t.len()), (None, 1));
        assert_eq!(value(&t, key(1), 100), None, "dead at its deadline");
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn holds_its_limit_without_early_evictions_and_evicts_lru_beyond() {
        let n = 100_000u64;
        let t: Table<u64> = Table::new(n);
        for i in 0..n {
            t.insert(key(i), i, u64::MAX, 0);
        }
        let kept = (0..n).filter(|&i| value(&t, key(i), 1) == Some(i)).count() as u64;
        assert!(
            kept >= n * 999 / 1000,
            "only {kept} of {n} kept before the limit"
        );
        assert!(
            t.slots() <= n * 5 / 4 + 64 * WAYS as u64,
            "{} slots",
            t.slots()
        );
        // Past the limit: still at most the limit, the newest kept.
        for i in n..2 * n {
            t.insert(key(i), i, u64::MAX, 0);
        }
        assert!(t.len() <= n, "{} entries", t.len());
        let newest = (2 * n - 1000..2 * n)
            .filter(|&i| value(&t, key(i), 1) == Some(i))
            .count();
        assert!(newest >= 990, "{newest} of the last 1000 kept");
    }

    #[test]
    fn a_used_entry_outlives_unused_ones_under_pressure() {
        let t: Table<u64> = Table::new(64);
        t.insert(key(0), 0, u64::MAX, 0);
        for i in 1..10_000 {
            value(&t, key(0), 1);
            t.insert(key(i), i, u64::MAX, 0);
        }
        assert_eq!(value(&t, key(0), 1), Some(0));
    }

    #[test]
    fn dead_entries_are_reused_before_live_ones_are_evicted() {
        let t: Table<u64> = Table::new(1000);
        for i in 0..1000 {
            t.insert(key(i), i, 10, 0);
        }
        for i in 1000..1500 {
            t.insert(key(i), i, u64::MAX, 20);
        }
        let kept = (1000..1500)
            .filter(|&i| value(&t, key(i), 21) == Some(i))
            .count();
        assert_eq!(kept, 500);
        assert!(t.len() <= 1000);
    }

    #[test]
    fn retain_and_clear() {
        let t: Table<u64> = Table::new(1000);
        for i in 0..500 {
            t.insert(key(i), i, u64::MAX, 0);
        }
        t.retain(|v| v % 2 == 0);
        assert_eq!(t.len(), 250);
        assert_eq!(
            (value(&t, key(3), 1), value(&t, key(4), 1)),
            (None, Some(4))
        );
        t.clear();
        assert_eq!((t.len(), value(&t, key(4), 1)), (0, None));
    }
}
