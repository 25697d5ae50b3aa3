//! IPv4 + IPv6 prefix sets with longest-prefix-match labels.
//!
//! Prefixes are flattened at build time into sorted, disjoint segments,
//! each carrying the label of the most specific prefix covering it; IPv4
//! (32-bit keys) and IPv6 (128-bit keys) in separate tables. A 65 536-entry
//! index on a key's top 16 bits narrows a lookup to a handful of segments,
//! then a binary search over just their start keys: no allocation, a few
//! cache lines per lookup. 1M prefixes build in well under a second.

use std::net::IpAddr;

/// A parsed `addr/len` (or bare address) in the 128-bit space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefix {
    pub start: u128,
    pub end: u128,
}

impl Prefix {
    /// Parses `1.2.3.0/24`, `2001:db8::/32`, a bare address, or a range
    /// `first-last` of one family (`1.2.3.4-1.2.3.9`).
    pub fn parse(s: &str) -> Result<Self, String> {
        if let Some((a, b)) = s.split_once('-') {
            let (a, b) = (Self::parse(a)?, Self::parse(b)?);
            let v4 = |p: &Prefix| is_v4(p);
            if a.start != a.end || b.start != b.end || v4(&a) != v4(&b) {
                return Err(format!("a range is two addresses of one family: {s:?}"));
            }
            if a.start > b.start {
                return Err(format!("range ends before it starts: {s:?}"));
            }
            return Ok(Prefix {
                start: a.start,
                end: b.end,
            });
        }
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let ip: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("not an IP address: {addr:?}"))?;
        let (bits, max) = match ip.to_canonical() {
            IpAddr::V4(v4) => (u128::from(v4.to_ipv6_mapped()), 32u32),
            IpAddr::V6(v6) => (u128::from(v6), 128u32),
        };
        let len: u32 = match len {
            Some(l) => l
                .trim()
                .parse()
                .ok()
                .filter(|l| *l <= max)
                .ok_or_else(|| format!("bad prefix length {l:?}"))?,
            None => max,
        };
        let host_bits = max - len;
        let mask = if host_bits == 128 {
            u128::MAX
        } else {
            (1u128 << host_bits) - 1
        };
        Ok(Prefix {
            start: bits & !mask,
            end: bits | mask,
        })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let k = key(ip);
        self.start <= k && k <= self.end
    }
}

/// The address as a point in the 128-bit space (IPv4 mapped).
pub fn key(ip: IpAddr) -> u128 {
    match ip.to_canonical() {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

#[derive(Debug, Clone, Copy)]
struct Segment {
    start: u128,
    end: u128,
    label: u32,
}

/// A key type of one address family.
trait Key: Copy + Ord + std::fmt::Debug {
    /// Top 16 bits, the index bucket.
    fn bucket(self) -> usize;
    /// The first key of bucket `b`.
    fn bucket_start(b: usize) -> Self;
}

impl Key for u32 {
    fn bucket(self) -> usize {
        (self >> 16) as usize
    }
    fn bucket_start(b: usize) -> Self {
        (b as u32) << 16
    }
}

impl Key for u128 {
    fn bucket(self) -> usize {
        (self >> 112) as usize
    }
    fn bucket_start(b: usize) -> Self {
        (b as u128) << 112
    }
}

/// Segments of one family, as parallel arrays (the search only touches
/// `starts`), with the bucket index.
#[derive(Debug, Clone)]
struct Table<K> {
    starts: Vec<K>,
    ends: Vec<K>,
    labels: Vec<u32>,
    /// index[b] = first segment whose start is in bucket b or later;
    /// 65 537 entries, or empty for small tables.
    index: Vec<u32>,
}

impl<K> Default for Table<K> {
    fn default() -> Self {
        Table {
            starts: Vec::new(),
            ends: Vec::new(),
            labels: Vec::new(),
            index: Vec::new(),
        }
    }
}

/// Below this many segments a plain binary search is as fast.
const INDEX_MIN: usize = 4096;

impl<K: Key> Table<K> {
    fn build(segs: impl Iterator<Item = (K, K, u32)>) -> Self {
        let mut t = Table::default();
        for (s, e, l) in segs {
            t.starts.push(s);
            t.ends.push(e);
            t.labels.push(l);
        }
        if t.starts.len() >= INDEX_MIN {
            t.index = (0..=1usize << 16)
                .map(|b| {
                    if b == 1 << 16 {
                        t.starts.len() as u32
                    } else {
                        t.starts.partition_point(|s| *s < K::bucket_start(b)) as u32
                    }
                })
                .collect();
        }
        t
    }

    fn lookup(&self, k: K) -> Option<u32> {
        let (lo, hi) = if self.index.is_empty() {
            (0, self.starts.len())
        } else {
            // The last segment starting at or before k is in this bucket,
            // or is the one just before it.
            let b = k.bucket();
            (
                (self.index[b] as usize).saturating_sub(1),
                self.index[b + 1] as usize,
            )
        };
        let i = lo + self.starts[lo..hi].partition_point(|s| *s <= k);
        let j = i.checked_sub(1)?;
        (k <= self.ends[j]).then(|| self.labels[j])
    }
}

/// An immutable prefix set; `L` is the label type (list entry, range name).
#[derive(Debug, Clone)]
pub struct IpRanges<L> {
    v4: Table<u32>,
    v6: Table<u128>,
    labels: Vec<L>,
    prefixes: usize,
}

impl<L> Default for IpRanges<L> {
    fn default() -> Self {
        IpRanges {
            v4: Table::default(),
            v6: Table::default(),
            labels: Vec::new(),
            prefixes: 0,
        }
    }
}

/// The IPv4-mapped block ::ffff:0:0/96 in the 128-bit space.
const V4_MAPPED_START: u128 = 0xffff_0000_0000;
const V4_MAPPED_END: u128 = 0xffff_ffff_ffff;

pub(crate) fn is_v4(p: &Prefix) -> bool {
    p.start >= V4_MAPPED_START && p.end <= V4_MAPPED_END
}

/// Reaches into the IPv4-mapped block ::ffff:0:0/96.
pub(crate) fn overlaps_v4(p: &Prefix) -> bool {
    p.start <= V4_MAPPED_END && p.end >= V4_MAPPED_START
}

impl<L> IpRanges<L> {
    /// Builds from `(prefix, label)` pairs. Where prefixes overlap, the
    /// most specific (narrowest) wins; among equal prefixes, the later one.
    /// IPv6 prefixes never match IPv4 addresses and vice versa.
    pub fn build(items: Vec<(Prefix, L)>) -> Self {
        let prefixes = items.len();
        let mut labels = Vec::with_capacity(items.len());
        let mut v4: Vec<(u128, u128, u32)> = Vec::new();
        let mut v6: Vec<(u128, u128, u32)> = Vec::new();
        for (p, l) in items {
            let r = (p.start, p.end, labels.len() as u32);
            if is_v4(&p) {
                v4.push(r)
            } else {
                v6.push(r)
            }
            labels.push(l);
        }
        IpRanges {
            v4: Table::build(
                flatten(v4)
                    .into_iter()
                    .map(|s| (s.start as u32, s.end as u32, s.label)),
            ),
            v6: Table::build(
                flatten(v6)
                    .into_iter()
                    // Keep v6 ranges (like ::/0) out of the IPv4-mapped block.
                    .flat_map(clip_out_v4)
                    .map(|s| (s.start, s.end, s.label)),
            ),
            labels,
            prefixes,
        }
    }

    /// The label of the most specific prefix containing `ip`.
    pub fn lookup(&self, ip: IpAddr) -> Option<&L> {
        let label = match ip.to_canonical() {
            IpAddr::V4(v4) => self.v4.lookup(u32::from(v4)),
            IpAddr::V6(v6) => self.v6.lookup(u128::from(v6)),
        }?;
        Some(&self.labels[label as usize])
    }

    /// Prefixes it was built from.
    pub fn len(&self) -> usize {
        self.prefixes
    }

    pub fn is_empty(&self) -> bool {
        self.prefixes == 0
    }
}

/// The parts of a v6 segment outside ::ffff:0:0/96.
fn clip_out_v4(s: Segment) -> impl Iterator<Item = Segment> {
    let below = (s.start < V4_MAPPED_START).then(|| Segment {
        end: s.end.min(V4_MAPPED_START - 1),
        ..s
    });
    let above = (s.end > V4_MAPPED_END).then(|| Segment {
        start: s.start.max(V4_MAPPED_END + 1),
        ..s
    });
    below.into_iter().chain(above)
}

/// Sweeps nested/disjoint ranges into disjoint segments where the most
/// specific range wins.
fn flatten(mut ranges: Vec<(u128, u128, u32)>) -> Vec<Segment> {
    {
        // Start ascending; for equal starts the widest first, so narrower
        // ranges are pushed on top of (and win over) wider ones.
        ranges.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)).then(a.2.cmp(&b.2)));
        let mut segments: Vec<Segment> = Vec::with_capacity(ranges.len());
        let mut emit = |start: u128, end: u128, label: u32| {
            if let Some(last) = segments.last_mut()
                && last.label == label
                && last.end.checked_add(1) == Some(start)
            {
                last.end = end;
                return;
            }
            segments.push(Segment { start, end, label });
        };
        // Stack of open ranges (end, label); `cursor` is the first address
        // not yet emitted. Prefixes nest or are disjoint, never cross.
        let mut stack: Vec<(u128, u32)> = Vec::new();
        let mut cursor: u128 = 0;
        let mut done = false; // cursor ran past u128::MAX
        for (s, e, l) in ranges {
            while let Some(&(top_end, top_label)) = stack.last() {
                if top_end >= s {
                    break;
                }
                if !done && cursor <= top_end {
                    emit(cursor, top_end, top_label);
                }
                (cursor, done) = next(top_end);
                stack.pop();
            }
            if let Some(&(_, top_label)) = stack.last()
                && !done
                && cursor < s
            {
                emit(cursor, s - 1, top_label);
            }
            if stack
                .last()
                .is_some_and(|&(top_end, _)| top_end == e && s <= cursor)
            {
                // Same range again: the later label replaces it.
                stack.pop();
            }
            cursor = s;
            done = false;
            stack.push((e, l));
        }
        while let Some((top_end, top_label)) = stack.pop() {
            if !done && cursor <= top_end {
                emit(cursor, top_end, top_label);
            }
            (cursor, done) = next(top_end);
        }
        segments
    }
}

fn next(end: u128) -> (u128, bool) {
    match end.checked_add(1) {
        Some(n) => (n, false),
        None => (u128::MAX, true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv6Addr;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn build(items: &[(&str, &'static str)]) -> IpRanges<&'static str> {
        IpRanges::build(
            items
                .iter()
                .map(|(p, l)| (Prefix::parse(p).unwrap(), *l))
                .collect(),
        )
    }

    #[test]
    fn parses_v4_v6_and_bare_addresses() {
        let p = Prefix::parse("10.1.2.3/8").unwrap();
        assert!(p.contains(ip("10.255.0.1")) && !p.contains(ip("11.0.0.0")));
        assert!(
            Prefix::parse("2001:db8::/32")
                .unwrap()
                .contains(ip("2001:db8:ffff::1"))
        );
        assert!(
            Prefix::parse("1.2.3.4")
                .unwrap()
                .contains(ip("::ffff:1.2.3.4"))
        );
        assert!(
            Prefix::parse("0.0.0.0/0")
                .unwrap()
                .contains(ip("255.255.255.255"))
        );
        assert!(!Prefix::parse("0.0.0.0/0").unwrap().contains(ip("2001::1")));
        assert!(Prefix::parse("::/0").unwrap().contains(ip("2001::1")));
        for bad in ["10.0.0.0/33", "::/129", "10.0.0/8", "x", "10.0.0.0/-1", ""] {
            assert!(Prefix::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_first_last_ranges_of_one_family() {
        let p = Prefix::parse("3.5.140.0-3.5.143.255").unwrap();
        assert!(p.contains(ip("3.5.140.0")) && p.contains(ip("3.5.143.255")));
        assert!(!p.contains(ip("3.5.139.255")) && !p.contains(ip("3.5.144.0")));
        let v6 = Prefix::parse("2001:db8::5-2001:db8::9").unwrap();
        assert!(v6.contains(ip("2001:db8::7")) && !v6.contains(ip("2001:db8::a")));
        for bad in [
            "1.2.3.9-1.2.3.4",
            "1.2.3.4-2001:db8::1",
            "1.2.3.0/24-1.2.4.0",
            "1.2.3.4-",
            "-1.2.3.4",
        ] {
            assert!(Prefix::parse(bad).is_err(), "{bad}");
        }
        let r = build(&[("10.0.0.0/8", "wide"), ("10.0.0.5-10.0.0.9", "odd")]);
        assert_eq!(r.lookup(ip("10.0.0.7")), Some(&"odd"));
        assert_eq!(r.lookup(ip("10.0.0.10")), Some(&"wide"));
    }

    #[test]
    fn longest_prefix_wins_including_around_nested_ranges() {
        let r = build(&[
            ("10.0.0.0/8", "wide"),
            ("10.1.0.0/16", "mid"),
            ("10.1.2.0/24", "narrow"),
            ("192.168.0.0/16", "other"),
        ]);
        assert_eq!(r.lookup(ip("10.0.0.1")), Some(&"wide"));
        assert_eq!(r.lookup(ip("10.1.0.1")), Some(&"mid"));
        assert_eq!(r.lookup(ip("10.1.2.200")), Some(&"narrow"));
        assert_eq!(r.lookup(ip("10.1.3.0")), Some(&"mid"));
        assert_eq!(r.lookup(ip("10.2.0.0")), Some(&"wide"));
        assert_eq!(r.lookup(ip("10.255.255.255")), Some(&"wide"));
        assert_eq!(r.lookup(ip("11.0.0.0")), None);
        assert_eq!(r.lookup(ip("9.255.255.255")), None);
        assert_eq!(r.lookup(ip("192.168.5.5")), Some(&"other"));
    }

    #[test]
    fn order_of_input_does_not_matter() {
        let a = build(&[("10.1.2.0/24", "narrow"), ("10.0.0.0/8", "wide")]);
        assert_eq!(a.lookup(ip("10.1.2.3")), Some(&"narrow"));
        assert_eq!(a.lookup(ip("10.1.3.3")), Some(&"wide"));
    }

    #[test]
    fn ipv6_and_the_ends_of_the_space() {
        let r = build(&[
            ("::/0", "all6"),
            ("2600:1f00::/24", "aws"),
            ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ff00/120", "top"),
        ]);
        assert_eq!(r.lookup(ip("2600:1f00::5")), Some(&"aws"));
        assert_eq!(r.lookup(ip("2a00::1")), Some(&"all6"));
        assert_eq!(
            r.lookup(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")),
            Some(&"top")
        );
        assert_eq!(r.lookup(ip("::")), Some(&"all6"));
    }

    #[test]
    fn v6_ranges_never_match_v4_addresses() {
        let r = build(&[("::/0", "all6"), ("0.0.0.0/0", "all4")]);
        assert_eq!(r.lookup(ip("1.2.3.4")), Some(&"all4"));
        assert_eq!(r.lookup(ip("::ffff:1.2.3.4")), Some(&"all4"));
        assert_eq!(r.lookup(ip("2001::1")), Some(&"all6"));
        let only6 = build(&[("::/0", "all6")]);
        assert_eq!(only6.lookup(ip("1.2.3.4")), None);
        assert_eq!(only6.lookup(ip("::1")), Some(&"all6"));
        assert_eq!(only6.lookup(ip("ffff::1")), Some(&"all6"));
    }

    #[test]
    fn indexed_v6_lookups_agree_with_a_brute_force_scan() {
        let mut rnd = rng(0x1234_5678_9abc_def1);
        let mut items = Vec::new();
        for i in 0..5000u32 {
            let addr = ((0x2000u128 | (rnd() as u128 & 0xff)) << 112) | ((rnd() as u128) << 48);
            let p =
                Prefix::parse(&format!("{}/{}", Ipv6Addr::from(addr), 20 + rnd() % 45)).unwrap();
            items.push((p, i));
        }
        let r = IpRanges::build(items.clone());
        for _ in 0..3000 {
            let probe = IpAddr::from(Ipv6Addr::from(
                ((0x2000u128 | (rnd() as u128 & 0xff)) << 112) | ((rnd() as u128) << 48),
            ));
            let want = brute_force(&items, probe);
            assert_eq!(r.lookup(probe).copied(), want, "{probe}");
        }
    }

    #[test]
    fn duplicate_prefix_takes_the_later_label() {
        let r = build(&[("10.0.0.0/8", "first"), ("10.0.0.0/8", "second")]);
        assert_eq!(r.lookup(ip("10.9.9.9")), Some(&"second"));
    }

    #[test]
    fn empty_set_matches_nothing() {
        let r: IpRanges<()> = IpRanges::build(vec![]);
        assert!(r.lookup(ip("1.1.1.1")).is_none());
    }

    /// Deterministic pseudo-random numbers (xorshift).
    fn rng(mut x: u64) -> impl FnMut() -> u64 {
        move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        }
    }

    /// The narrowest prefix containing `probe`, the later one on ties.
    fn brute_force(items: &[(Prefix, u32)], probe: IpAddr) -> Option<u32> {
        items
            .iter()
            .filter(|(p, _)| p.contains(probe))
            .min_by(|a, b| {
                (a.0.end - a.0.start)
                    .cmp(&(b.0.end - b.0.start))
                    .then(b.1.cmp(&a.1))
            })
            .map(|(_, l)| *l)
    }

    #[test]
    fn agrees_with_a_brute_force_scan() {
        // Deterministic pseudo-random nested prefixes inside 10.0.0.0/8.
        let mut rnd = rng(0x9e3779b97f4a7c15);
        let mut items = Vec::new();
        // Enough prefixes that the bucket index is used.
        for i in 0..6000u32 {
            let len = 8 + (rnd() % 25) as u32;
            let addr = 0x0a00_0000u32 | (rnd() as u32 & 0x00ff_ffff);
            let p = Prefix::parse(&format!("{}/{len}", std::net::Ipv4Addr::from(addr))).unwrap();
            items.push((p, i));
        }
        let r = IpRanges::build(items.clone());
        for _ in 0..5000 {
            let probe = IpAddr::from(std::net::Ipv4Addr::from(
                0x0a00_0000u32 | (rnd() as u32 & 0x00ff_ffff),
            ));
            // Brute force: narrowest containing prefix, later index on ties.
            let want = brute_force(&items, probe);
            assert_eq!(r.lookup(probe).copied(), want, "{probe}");
        }
    }
}
