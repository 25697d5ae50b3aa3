//! Block and allow lists: IPs/CIDRs, UA substrings, device ids, affiliate
//! ids, offer ids and affiliate+aff_sub1 pairs; entries may expire and carry
//! a reason.
//!
//! File format, one entry a line (`#` starts a comment line):
//!
//! ```text
//! 203.0.113.0/24                          # a bare IP or CIDR is an ip entry
//! ip 198.51.100.7 expires=2026-12-31T00:00:00Z reason=chargeback ring
//! ua HeadlessChrome
//! device 6D92078A-8246-4BA4-AE5B-76104861E7DC
//! affiliate 6251
//! offer 34713 expires=1798675200
//! affiliate_sub 6251/banner-7            # affiliate_id/aff_sub1
//! ```

use std::collections::HashMap;
use std::sync::Arc;

use regex::bytes::{RegexSet, RegexSetBuilder};
use serde::{Deserialize, Serialize};

use super::ranges::{IpRanges, Prefix};
use crate::event::{Event, Opt};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    Ip,
    Ua,
    Device,
    Affiliate,
    Offer,
    AffiliateSub,
}

impl EntryKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            EntryKind::Ip => "ip",
            EntryKind::Ua => "ua",
            EntryKind::Device => "device",
            EntryKind::Affiliate => "affiliate",
            EntryKind::Offer => "offer",
            EntryKind::AffiliateSub => "affiliate_sub",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "ip" | "cidr" => EntryKind::Ip,
            "ua" => EntryKind::Ua,
            "device" | "idfa" | "android_id" => EntryKind::Device,
            "affiliate" | "affiliate_id" => EntryKind::Affiliate,
            "offer" | "offer_id" => EntryKind::Offer,
            "affiliate_sub" => EntryKind::AffiliateSub,
            _ => return None,
        })
    }
}

/// One list entry. Read back (as Redis keeps them) through
/// [`Entry::new`], which validates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub kind: EntryKind,
    /// Canonical value (CIDR as written, ids as given).
    pub value: String,
    /// Unix seconds after which the entry no longer matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Arc<str>>,
}

impl Entry {
    /// Validates and canonicalises an entry.
    pub fn new(
        kind: EntryKind,
        value: &str,
        expires: Option<u64>,
        reason: Option<&str>,
    ) -> Result<Self, String> {
        let value = value.trim();
        if value.is_empty() {
            return Err("empty value".into());
        }
        let value = match kind {
            EntryKind::Ip => {
                Prefix::parse(value)?;
                value.to_owned()
            }
            EntryKind::AffiliateSub => {
                let (a, s) = value
                    .split_once('/')
                    .ok_or("affiliate_sub is affiliate_id/aff_sub1")?;
                if a.is_empty() || s.is_empty() {
                    return Err("affiliate_sub is affiliate_id/aff_sub1".into());
                }
                value.to_owned()
            }
            _ => value.to_owned(),
        };
        Ok(Entry {
            kind,
            value,
            expires,
            reason: reason
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .map(Arc::from),
        })
    }

    pub fn live(&self, now: u64) -> bool {
        self.expires.is_none_or(|e| now < e)
    }

    /// Parses one file line; `Ok(None)` for blanks and comments.
    pub fn parse_line(line: &str) -> Result<Option<Self>, String> {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return Ok(None);
        }
        let mut words = line.splitn(2, char::is_whitespace);
        let first = words.next().unwrap_or("");
        let rest = words.next().unwrap_or("").trim();
        let (kind, rest) = match EntryKind::parse(first) {
            Some(k) => (k, rest),
            // A bare IP/CIDR line (public range lists look like this).
            None if Prefix::parse(first).is_ok() => (EntryKind::Ip, line),
            None => return Err(format!("unknown entry kind {first:?}")),
        };
        let (value, mut attrs) = match rest.split_once(char::is_whitespace) {
            Some((v, a)) => (v, a.trim()),
            None => (rest, ""),
        };
        let mut expires = None;
        let mut reason = None;
        while !attrs.is_empty() {
            if let Some(r) = attrs.strip_prefix("reason=") {
                reason = Some(r);
                break;
            } else if let Some(e) = attrs.strip_prefix("expires=") {
                let (v, more) = e.split_once(char::is_whitespace).unwrap_or((e, ""));
                expires = Some(parse_time(v).ok_or_else(|| format!("bad expires {v:?}"))?);
                attrs = more.trim();
            } else if attrs.starts_with('#') {
                break;
            } else {
                return Err(format!("unexpected {attrs:?}"));
            }
        }
        Entry::new(kind, value, expires, reason).map(Some)
    }
}

/// Unix seconds, or RFC 3339 UTC (`2026-12-31T00:00:00Z`).
pub fn parse_time(s: &str) -> Option<u64> {
    if let Ok(n) = s.parse::<u64>() {
        return Some(n);
    }
    let s = s.strip_suffix('Z').or_else(|| s.strip_suffix("+00:00"))?;
    let (date, time) = s.split_once(['T', ' '])?;
    let mut d = date.splitn(3, '-').map(|x| x.parse::<i64>().ok());
    let (y, mo, da) = (d.next()??, d.next()??, d.next()??);
    let time = time.split('.').next()?;
    let mut t = time.splitn(3, ':').map(|x| x.parse::<i64>().ok());
    let (h, mi, se) = (t.next()??, t.next()??, t.next()??);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&da) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + da - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    u64::try_from(days * 86400 + h * 3600 + mi * 60 + se).ok()
}

/// A compiled list: each kind in a structure built for its lookups.
/// Entries are indexed; matching checks expiry, so an expired entry stops
/// matching at once, before any rebuild drops it.
#[derive(Debug, Default)]
pub struct Compiled {
    entries: Vec<Entry>,
    ips: IpRanges<u32>,
    ua: Option<(RegexSet, Vec<u32>)>,
    /// Exact-match kinds, one map each: device, affiliate, offer, affiliate_sub.
    exact: [HashMap<Box<str>, u32>; 4],
}

fn exact_slot(k: EntryKind) -> usize {
    match k {
        EntryKind::Device => 0,
        EntryKind::Affiliate => 1,
        EntryKind::Offer => 2,
        _ => 3,
    }
}

impl Compiled {
    pub fn build(entries: Vec<Entry>, now: u64) -> Self {
        let entries: Vec<Entry> = entries.into_iter().filter(|e| e.live(now)).collect();
        let mut prefixes = Vec::new();
        let mut ua_pats = Vec::new();
        let mut ua_idx = Vec::new();
        let mut exact: [HashMap<Box<str>, u32>; 4] = Default::default();
        for (i, e) in entries.iter().enumerate() {
            let i = i as u32;
            match e.kind {
                // Entries are validated where they are read (files, the
                // admin API, Redis, feeds); one that slipped through is
                // skipped, never a panic on data from outside.
                EntryKind::Ip => match Prefix::parse(&e.value) {
                    Ok(p) => prefixes.push((p, i)),
                    Err(err) => tracing::warn!(error = %err, "list entry skipped"),
                },
                EntryKind::Ua => {
                    ua_pats.push(regex::escape(&e.value));
                    ua_idx.push(i);
                }
                k => {
                    exact[exact_slot(k)].insert(e.value.as_str().into(), i);
                }
            }
        }
        let ua = if ua_pats.is_empty() {
            None
        } else {
            match RegexSetBuilder::new(&ua_pats)
                .case_insensitive(true)
                .unicode(false)
                .size_limit(1 << 26)
                .build()
            {
                Ok(set) => Some((set, ua_idx)),
                // Escaped literals always compile; only a list too large
                // for the size limit fails, and it must not stop the gate.
                Err(err) => {
                    tracing::error!(error = %err, patterns = ua_pats.len(), "the list's ua entries are too many to compile; they do not match");
                    None
                }
            }
        };
        Compiled {
            ips: IpRanges::build(prefixes),
            ua,
            exact,
            entries,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The first live entry matching the event. Empty structures are
    /// skipped without hashing anything (most lists are small or empty).
    pub fn find(&self, ev: &Event, now: u64) -> Option<&Entry> {
        if self.entries.is_empty() {
            return None;
        }
        let live = |i: &u32| Some(&self.entries[*i as usize]).filter(|e| e.live(now));
        if let Some(e) = (!self.ips.is_empty())
            .then(|| self.ips.lookup(ev.ip))
            .flatten()
            .and_then(live)
        {
            return Some(e);
        }
        let probe = |k: EntryKind, v: &str| {
            let map = &self.exact[exact_slot(k)];
            if map.is_empty() {
                None
            } else {
                map.get(v).and_then(live)
            }
        };
        if let Some(e) = probe(EntryKind::Affiliate, &ev.affiliate_id)
            .or_else(|| probe(EntryKind::Offer, &ev.offer_id))
        {
            return Some(e);
        }
        if !self.exact[exact_slot(EntryKind::Device)].is_empty() {
            for opt in [Opt::Idfa, Opt::AndroidId] {
                if let Some(e) = ev.get(opt).and_then(|d| probe(EntryKind::Device, d)) {
                    return Some(e);
                }
            }
        }
        if !self.exact[exact_slot(EntryKind::AffiliateSub)].is_empty()
            && let Some(sub) = ev.get(Opt::AffSub1)
        {
            let pair = format!("{}/{sub}", ev.affiliate_id);
            if let Some(e) = probe(EntryKind::AffiliateSub, &pair) {
                return Some(e);
            }
        }
        if let Some((set, idx)) = &self.ua {
            return set
                .matches(ev.ua.as_bytes())
                .into_iter()
                .find_map(|m| live(&idx[m]));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventBuilder;

    fn ev(extra: &str) -> Event {
        EventBuilder::from_query(&format!(
            "event_type=click&ip=203.0.113.9&ua=Mozilla%2F5.0%20HeadlessChrome&affiliate_id=6251&offer_id=34713{extra}"
        ))
        .unwrap()
        .build()
        .unwrap()
    }

    fn list(text: &str) -> Compiled {
        let entries = text
            .lines()
            .filter_map(|l| Entry::parse_line(l).unwrap())
            .collect();
        Compiled::build(entries, 1000)
    }

    #[test]
    fn lines_parse_with_kinds_expiry_and_reason() {
        let e = Entry::parse_line(
            "ip 198.51.100.7 expires=2026-12-31T00:00:00Z reason=chargeback ring",
        )
        .unwrap()
        .unwrap();
        assert_eq!(e.kind, EntryKind::Ip);
        assert_eq!(e.expires, Some(1798675200));
        assert_eq!(e.reason.as_deref(), Some("chargeback ring"));
        let e = Entry::parse_line("10.0.0.0/8").unwrap().unwrap();
        assert_eq!((e.kind, e.value.as_str()), (EntryKind::Ip, "10.0.0.0/8"));
        assert_eq!(Entry::parse_line("# c").unwrap(), None);
        assert_eq!(Entry::parse_line("   ").unwrap(), None);
        for bad in [
            "bogus 1",
            "ip 10.0.0.0/99",
            "affiliate_sub 6251",
            "offer 1 expires=never",
            "offer 1 junk",
        ] {
            assert!(Entry::parse_line(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rfc3339_and_unix_times() {
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_time("2000-03-01T00:00:00Z"), Some(951868800));
        assert_eq!(parse_time("2026-12-31T23:59:59.5Z"), Some(1798761599));
        assert_eq!(parse_time("1798675200"), Some(1798675200));
        assert_eq!(parse_time("2026-13-01T00:00:00Z"), None);
        assert_eq!(parse_time("2026-12-01"), None);
    }

    #[test]
    fn each_kind_matches_its_field() {
        let cases = [
            ("203.0.113.0/24", ""),
            ("ua headlesschrome", ""),
            ("device 6D92078A", "&idfa=6D92078A"),
            ("device AID1", "&android_id=AID1"),
            ("affiliate 6251", ""),
            ("offer 34713", ""),
            ("affiliate_sub 6251/banner", "&aff_sub1=banner"),
        ];
        for (line, extra) in cases {
            let l = list(line);
            assert!(l.find(&ev(extra), 0).is_some(), "{line}");
        }
        let l = list("affiliate_sub 6251/banner\noffer 1\naffiliate 2\n198.51.100.0/24\nua curl");
        assert!(l.find(&ev("&aff_sub1=other"), 0).is_none());
    }

    #[test]
    fn an_unparsable_ip_entry_is_skipped_not_a_panic() {
        let bad = Entry {
            kind: EntryKind::Ip,
            value: "not-an-ip".into(),
            expires: None,
            reason: None,
        };
        let good = Entry::new(EntryKind::Ip, "203.0.113.9", None, None).unwrap();
        let c = Compiled::build(vec![bad, good], 0);
        assert!(c.find(&ev(""), 0).is_some());
    }

    #[test]
    fn expired_entries_stop_matching_without_a_rebuild() {
        let l = list("offer 34713 expires=2000");
        assert!(l.find(&ev(""), 1999).is_some());
        assert!(l.find(&ev(""), 2000).is_none());
        // Already expired at build time: dropped.
        assert!(list("offer 34713 expires=999").is_empty());
    }
}
