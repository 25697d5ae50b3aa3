//! The IP-range rules (datacenter, proxy, verified bots): their config
//! sections, their shipped ranges and the range file format.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, LazyLock};

use crate::rules::config::{RangesConfig, RulesConfig};
use crate::rules::crawler::BadLine;
use crate::rules::ranges::Prefix;

/// The IP-range rules, in [`Snapshot::ranges`] order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RangeRule {
    Datacenter,
    Proxy,
    VerifiedBot,
}

impl RangeRule {
    pub const ALL: [RangeRule; 3] = [
        RangeRule::Datacenter,
        RangeRule::Proxy,
        RangeRule::VerifiedBot,
    ];

    /// The config section under `rules.`.
    pub const fn key(self) -> &'static str {
        match self {
            RangeRule::Datacenter => "datacenter",
            RangeRule::Proxy => "proxy",
            RangeRule::VerifiedBot => "verified_bots",
        }
    }

    pub(super) fn config(self, c: &RulesConfig) -> &RangesConfig {
        match self {
            RangeRule::Datacenter => &c.datacenter,
            RangeRule::Proxy => &c.proxy,
            RangeRule::VerifiedBot => &c.verified_bots,
        }
    }

    /// The shipped ranges (scripts/update-ip-ranges.sh), parsed once.
    pub(super) fn builtin(self) -> Arc<Ranges> {
        static PARSED: LazyLock<[Arc<Ranges>; 3]> = LazyLock::new(|| {
            [
                include_str!("../ranges/datacenter.txt"),
                include_str!("../ranges/proxy.txt"),
                include_str!("../ranges/verified_bots.txt"),
            ]
            .map(|text| {
                let (r, _, bad) = parse_ranges(text, Path::new("builtin"));
                debug_assert!(bad.is_empty(), "{bad:?}");
                Arc::new(r)
            })
        });
        PARSED[self as usize].clone()
    }
}

/// Prefixes of one range file with their labels.
pub(super) type Ranges = Vec<(Prefix, Arc<str>)>;

pub(super) fn parse_ranges(text: &str, path: &Path) -> (Ranges, usize, Vec<BadLine>) {
    let default: Arc<str> = path
        .file_stem()
        .map_or("datacenter".into(), |s| s.to_string_lossy().into());
    let mut labels: HashMap<&str, Arc<str>> = HashMap::new();
    let mut out = Vec::new();
    let mut bad = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        // The label is the rest of the line ("Amazon AWS").
        let (cidr, label) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        match Prefix::parse(cidr) {
            Ok(p) => {
                let label = match label.trim() {
                    "" => default.clone(),
                    l => labels.entry(l).or_insert_with(|| Arc::from(l)).clone(),
                };
                out.push((p, label));
            }
            Err(message) => bad.push(BadLine {
                line: i + 1,
                message,
            }),
        }
    }
    let n = out.len();
    (out, n, bad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::ranges::IpRanges;

    /// The shipped files parse whole, and never cover addresses no
    /// provider owns (a feed once carried the documentation prefixes).
    #[test]
    fn builtin_ranges_parse_and_leave_special_purpose_addresses_alone() {
        let special = [
            "10.0.0.1",
            "172.16.5.5",
            "192.168.1.1",
            "127.0.0.1",
            "100.64.0.1",
            "169.254.1.1",
            "192.0.2.1",
            "198.51.100.7",
            "203.0.113.9",
            "::1",
            "2001:db8::7",
            "fc00::1",
            "fe80::1",
        ];
        for (r, min, text) in [
            (
                RangeRule::Datacenter,
                10_000,
                include_str!("../ranges/datacenter.txt"),
            ),
            (RangeRule::Proxy, 1_000, include_str!("../ranges/proxy.txt")),
            (
                RangeRule::VerifiedBot,
                1_000,
                include_str!("../ranges/verified_bots.txt"),
            ),
        ] {
            let (_, n, bad) = parse_ranges(text, Path::new("builtin"));
            assert!(bad.is_empty(), "{r:?}: {bad:?}");
            let ranges = r.builtin();
            assert_eq!(ranges.len(), n);
            assert!(n >= min, "{r:?}: only {n} ranges");
            let table = IpRanges::build(ranges.to_vec());
            for ip in special {
                assert_eq!(table.lookup(ip.parse().unwrap()), None, "{r:?} covers {ip}");
            }
        }
    }
}
