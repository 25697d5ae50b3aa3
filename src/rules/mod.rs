//! Local detection: crawler UAs, datacenter ranges, block/allow lists, caps
//! and IP velocity. Rules produce RT's tag vocabulary, so policy, metrics
//! and reports treat local and upstream tags alike.
//!
//! Compiled rules live behind an `ArcSwap`: a request loads one snapshot
//! (no lock), a reload or admin edit builds a new snapshot off the hot path
//! and swaps it in whole, so no request sees a half-loaded list.

pub mod config;
pub mod counters;
pub mod crawler;
pub mod limits;
pub mod lists;
pub mod ranges;
pub(crate) mod sources;

use std::sync::Arc;

use arc_swap::ArcSwap;
use metrics::Counter;

pub use crate::decision::{RuleHit, RuleKind};

use crate::event::{Event, now_unix};
use crate::hash::Hasher128;
use crate::metrics as m;
use crate::policy::Action;
use crate::verdict::{Tag, Tags};
pub use config::RulesConfig;
use crawler::{CrawlerMatch, CrawlerMatcher};
use limits::{Cap, Velocity, VelocityHit};
use lists::Compiled;
use ranges::IpRanges;
use sources::RangeRule;
pub use sources::{AdminError, EntrySource, ListSummary, ReloadError};

/// Every rule kind's hit series at 0 from the start.
pub fn register_metrics() {
    for k in RuleKind::ALL {
        metrics::counter!(m::RULE_HITS, "kind" => k.as_str()).increment(0);
    }
}

/// What local rules say about one event.
#[derive(Debug, Clone, Default)]
pub struct LocalVerdict {
    /// An allow-list entry matched: allow, whatever else says.
    pub allowed: Option<RuleHit>,
    /// The declared crawler the IP belongs to (its label), if any: the
    /// policy may allow it (`policy.allow_verified_bots`).
    pub verified_bot: Option<Arc<str>>,
    pub tags: Tags,
    pub hits: Vec<RuleHit>,
}

/// A compiled list in a snapshot.
#[derive(Debug)]
pub(crate) struct ActiveList {
    pub name: Arc<str>,
    pub action: Action,
    pub compiled: Compiled,
}

/// One immutable snapshot of the file- and admin-driven rules.
#[derive(Default)]
pub(crate) struct Snapshot {
    pub crawler: Option<Arc<CrawlerMatcher>>,
    /// Datacenter, proxy and verified-bot ranges, by [`RangeRule`].
    pub ranges: [Option<Arc<IpRanges<Arc<str>>>>; 3],
    pub lists: Vec<Arc<ActiveList>>,
}

impl Snapshot {
    fn range(&self, r: RangeRule, ip: std::net::IpAddr) -> Option<&Arc<str>> {
        self.ranges[r as usize].as_ref()?.lookup(ip)
    }
}

struct HitCounters([Counter; RuleKind::ALL.len()]);

impl HitCounters {
    fn new() -> Self {
        HitCounters(RuleKind::ALL.map(|k| metrics::counter!(m::RULE_HITS, "kind" => k.as_str())))
    }
    fn hit(&self, k: RuleKind) {
        self.0[k as usize].increment(1);
    }
}

/// How the rules run on an event.
#[derive(Clone, Copy)]
enum Run<'a> {
    /// An event now: every rule, counted, with the fleet-wide counts.
    Live(Option<&'a [(usize, u64)]>),
    /// A past event judged again: the rules that look at it alone.
    Again,
}

/// Index of velocity's fleet-wide IP counter in shared counts.
pub const VELOCITY_IP: usize = usize::MAX;
/// Index of velocity's fleet-wide subnet counter.
pub const VELOCITY_NET: usize = usize::MAX - 1;

pub struct LocalRules {
    enabled: bool,
    /// Rule kinds in shadow mode (`policy.shadow_rules`), as bits: they
    /// fire and are recorded, their tags left out of the verdict.
    shadow: u32,
    ask_upstream_on_block: bool,
    reload_interval_s: u64,
    snapshot: ArcSwap<Snapshot>,
    sources: std::sync::Mutex<sources::Sources>,
    caps: Vec<Cap>,
    velocity: Option<Velocity>,
    /// `rules.crawler.flag_prefetch`.
    flag_prefetch: bool,
    hasher: Hasher128,
    hits: HitCounters,
    names: Names,
}

/// Shared names for hits that are not from a named list.
struct Names {
    crawler: Arc<str>,
    empty_ua: Arc<str>,
    /// Reasons of the prefetch rule, by kind of speculation.
    speculation: [Arc<str>; 3],
    ip: Arc<str>,
    subnet: Arc<str>,
    verified: Arc<str>,
}

impl LocalRules {
    /// Loads every configured file. A file that cannot be read stops
    /// startup (naming it); bad lines in a readable file are logged and
    /// skipped.
    pub fn new(c: &RulesConfig) -> Result<Self, ReloadError> {
        Self::with_feeds(c, &[])
    }

    /// Like [`LocalRules::new`], with a block list for each feed named.
    pub fn with_feeds(c: &RulesConfig, feeds: &[String]) -> Result<Self, ReloadError> {
        let mut sources = sources::Sources::new(c, feeds);
        let snapshot = sources.load_all()?;
        Ok(LocalRules {
            shadow: 0,
            enabled: c.enabled,
            ask_upstream_on_block: c.ask_upstream_on_block,
            reload_interval_s: c.reload_interval_s,
            snapshot: ArcSwap::from_pointee(snapshot),
            sources: std::sync::Mutex::new(sources),
            caps: c.caps.iter().map(Cap::new).collect(),
            velocity: c.velocity.enabled.then(|| Velocity::new(&c.velocity)),
            flag_prefetch: c.crawler.enabled && c.crawler.flag_prefetch,
            hasher: Hasher128::new(),
            hits: HitCounters::new(),
            names: Names {
                crawler: "builtin".into(),
                empty_ua: "empty or control-character user agent".into(),
                speculation: [
                    "browser prefetch: a speculative load, nobody clicked or saw it".into(),
                    "browser prerender: a speculative load, nobody clicked or saw it".into(),
                    "link preview: a speculative load, nobody clicked or saw it".into(),
                ],
                ip: "ip".into(),
                subnet: "subnet".into(),
                verified: "from the crawler's published IP ranges".into(),
            },
        })
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    pub fn ask_upstream_on_block(&self) -> bool {
        self.ask_upstream_on_block
    }

    pub fn reload_interval_s(&self) -> u64 {
        self.reload_interval_s
    }

    /// The fleet-wide counters `ev` counts on: (index, key, window in
    /// ms): caps by their index, velocity's IP and subnet as
    /// [`VELOCITY_IP`] and [`VELOCITY_NET`] when `velocity` is shared.
    /// Empty when nothing counts `ev`.
    pub fn shared_counter_keys(
        &self,
        ev: &Event,
        velocity: bool,
        hash: &crate::hash::KeyedHash,
    ) -> Vec<(usize, String, u64)> {
        if !self.enabled {
            return Vec::new();
        }
        let now = now_unix();
        let mut out: Vec<(usize, String, u64)> = self
            .caps
            .iter()
            .enumerate()
            .filter(|(_, c)| c.counts(ev))
            .map(|(i, c)| (i, c.shared_key(ev, now, hash), c.window_s() * 1000))
            .collect();
        if let (true, Some(v)) = (velocity, &self.velocity) {
            let [ip, net] = v.shared_keys(ev.ip, now, hash);
            out.push((VELOCITY_IP, ip, v.window_s() * 1000));
            out.push((VELOCITY_NET, net, v.window_s() * 1000));
        }
        out
    }

    /// Runs every rule on the event. No locks; allocates only on a hit.
    /// `shared_caps`: fleet-wide counts by cap index (and
    /// [`VELOCITY_IP`], [`VELOCITY_NET`]); what has none counts locally.
    pub fn evaluate(&self, ev: &Event, shared_caps: Option<&[(usize, u64)]>) -> LocalVerdict {
        self.run(ev, Run::Live(shared_caps))
    }

    /// The rules on `ev`, as `run` asks.
    fn run(&self, ev: &Event, run: Run<'_>) -> LocalVerdict {
        let mut out = LocalVerdict::default();
        if !self.enabled {
            return out;
        }
        let live = matches!(run, Run::Live(_));
        let now = now_unix();
        let snap = self.snapshot.load();
        if let Some(hit) = self.allow_listed(&snap, ev, now) {
            if live {
                self.hits.hit(RuleKind::AllowList);
            }
            out.allowed = Some(hit);
            return out;
        }
        // First, so that its GIVT category (verified crawler) is the one
        // the decision is recorded with.
        if let Some(bot) = snap.range(RangeRule::VerifiedBot, ev.ip) {
            let reason = Some(self.names.verified.clone());
            let hit = RuleHit::tagged(RuleKind::VerifiedBot, bot, Tag::Crawler, reason);
            out.hits.push(hit);
            out.verified_bot = Some(bot.clone());
        }
        out.hits.extend(self.crawler_ua(&snap, ev));
        if live {
            out.hits.extend(self.prefetch(ev));
        }
        out.hits.extend(Self::ip_ranges(&snap, ev));
        out.hits.extend(Self::block_listed(&snap, ev, now));
        if let Run::Live(shared_caps) = run {
            out.hits.extend(self.velocity(ev, shared_caps, now));
            out.hits.extend(self.caps(ev, shared_caps, now));
            for hit in &out.hits {
                self.hits.hit(hit.kind);
            }
        }
        let mask = out.hits.iter().fold(0u16, |m, h| m | self.deciding_tag(h));
        out.tags = Tags::from_mask(mask);
        out
    }

    /// Puts rule kinds in shadow mode (`policy.shadow_rules` as bits).
    pub fn with_shadow(mut self, mask: u32) -> Self {
        self.shadow = mask;
        self
    }

    /// The tag bit a hit gives the verdict: none from a rule in shadow
    /// mode.
    fn deciding_tag(&self, hit: &RuleHit) -> u16 {
        if self.shadow & (1 << (hit.kind as u32)) != 0 {
            0
        } else {
            hit.tag.map_or(0, Tag::bit)
        }
    }

    /// What today's lists, ranges and crawler patterns say of a past
    /// event (`fraudgate rescore`): the rules that look at the event
    /// alone. Caps and velocity (counts of a moment past) and the
    /// prefetch check (a request's headers) are left out; nothing is
    /// counted, in the metrics or the caps.
    pub fn judge_again(&self, ev: &Event) -> LocalVerdict {
        self.run(ev, Run::Again)
    }

    /// The first allow-list entry `ev` matches.
    fn allow_listed(&self, snap: &Snapshot, ev: &Event, now: u64) -> Option<RuleHit> {
        snap.lists
            .iter()
            .filter(|l| l.action == Action::Allow)
            .find_map(|list| {
                let e = list.compiled.find(ev, now)?;
                Some(RuleHit {
                    kind: RuleKind::AllowList,
                    name: list.name.clone(),
                    tag: None,
                    reason: e.reason.clone(),
                })
            })
    }

    /// A crawler's UA, or an empty or absurd one.
    fn crawler_ua(&self, snap: &Snapshot, ev: &Event) -> Option<RuleHit> {
        let c = snap.crawler.as_ref()?;
        let reason = match c.check(&ev.ua)? {
            CrawlerMatch::Pattern(i) => c.describe(i, &ev.ua),
            CrawlerMatch::EmptyOrAbsurd => self.names.empty_ua.clone(),
        };
        let name = &self.names.crawler;
        Some(RuleHit::tagged(
            RuleKind::CrawlerUa,
            name,
            Tag::Crawler,
            Some(reason),
        ))
    }

    /// A speculative load, tagged crawler (a non-human fetch) so the
    /// policy's crawler action applies; the rule kind says which.
    fn prefetch(&self, ev: &Event) -> Option<RuleHit> {
        let s = ev.speculation.filter(|_| self.flag_prefetch)?;
        let reason = self.names.speculation[s as usize].clone();
        let name = &self.names.crawler;
        Some(RuleHit::tagged(
            RuleKind::Prefetch,
            name,
            Tag::Crawler,
            Some(reason),
        ))
    }

    /// The datacenter and proxy ranges `ev`'s IP is in.
    fn ip_ranges(snap: &Snapshot, ev: &Event) -> impl Iterator<Item = RuleHit> {
        [
            (RangeRule::Datacenter, RuleKind::Datacenter, Tag::Datacenter),
            (RangeRule::Proxy, RuleKind::Proxy, Tag::Proxy),
        ]
        .into_iter()
        .filter_map(move |(range, kind, tag)| {
            let label = snap.range(range, ev.ip)?;
            Some(RuleHit::tagged(kind, label, tag, None))
        })
    }

    /// The first block-list entry `ev` matches.
    fn block_listed(snap: &Snapshot, ev: &Event, now: u64) -> Option<RuleHit> {
        snap.lists
            .iter()
            .filter(|l| l.action == Action::Block)
            .find_map(|list| {
                let e = list.compiled.find(ev, now)?;
                let reason = e.reason.clone();
                Some(RuleHit::tagged(
                    RuleKind::BlockList,
                    &list.name,
                    Tag::Blacklist,
                    reason,
                ))
            })
    }

    /// Too many events from the IP or its subnet: counted fleet-wide when
    /// both shared counts came, else here.
    fn velocity(&self, ev: &Event, shared: Option<&[(usize, u64)]>, now: u64) -> Option<RuleHit> {
        let v = self.velocity.as_ref()?;
        let count = |k| shared?.iter().find(|(i, _)| *i == k).map(|(_, n)| *n);
        let hit = match (count(VELOCITY_IP), count(VELOCITY_NET)) {
            (Some(ip), Some(net)) => v.judge(ip, net),
            _ => v.check(ev.ip, &self.hasher, now),
        }?;
        let name = match hit {
            VelocityHit::Ip => &self.names.ip,
            VelocityHit::Subnet => &self.names.subnet,
        };
        Some(RuleHit::tagged(RuleKind::Velocity, name, Tag::Ip, None))
    }

    /// The caps `ev` goes over: by their fleet-wide count when one came,
    /// else counted here.
    fn caps<'a>(
        &'a self,
        ev: &'a Event,
        shared: Option<&'a [(usize, u64)]>,
        now: u64,
    ) -> impl Iterator<Item = RuleHit> + 'a {
        self.caps.iter().enumerate().filter_map(move |(i, cap)| {
            let over = match shared.and_then(|s| s.iter().find(|(j, _)| *j == i)) {
                Some((_, n)) => *n > cap.limit(),
                None => cap.over(ev, &self.hasher, now),
            };
            over.then(|| RuleHit::tagged(RuleKind::Cap, &cap.name, Tag::Cap, None))
        })
    }

    /// Re-reads changed files (all when `force`), swapping in a new
    /// snapshot if anything changed. Blocking I/O: call off the runtime.
    pub fn reload(&self, force: bool) -> usize {
        let mut sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.snapshot.load_full();
        let (changed, snapshot) = sources.reload(&current, force);
        if changed > 0 {
            self.snapshot.store(Arc::new(snapshot));
        }
        changed
    }

    /// Adds runtime entries to a list; effective for the next request.
    pub fn add_entries(&self, list: &str, entries: Vec<lists::Entry>) -> Result<usize, AdminError> {
        self.edit(|s, snap| s.add(list, entries, snap))
    }

    /// Removes runtime entries of `kind` with `value`; effective for the
    /// next request.
    pub fn remove_entries(
        &self,
        list: &str,
        kind: lists::EntryKind,
        value: &str,
    ) -> Result<usize, AdminError> {
        self.edit(|s, snap| s.remove(list, kind, value, snap))
    }

    /// Replaces a list's runtime entries (as another replica made them).
    pub fn replace_runtime_entries(
        &self,
        list: &str,
        entries: Vec<lists::Entry>,
    ) -> Result<usize, AdminError> {
        self.edit(|s, snap| s.replace_runtime(list, entries, snap))
    }

    /// A list's runtime entries (admin-made), to share them.
    pub fn runtime_entries(&self, list: &str) -> Result<Vec<lists::Entry>, AdminError> {
        self.sources
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .runtime(list)
    }

    /// Replaces the entries of a feed's list; effective for the next request.
    pub fn set_feed_entries(
        &self,
        feed: &str,
        entries: Vec<lists::Entry>,
    ) -> Result<usize, AdminError> {
        self.edit(|s, snap| s.set_feed(feed, entries, snap))
    }

    fn edit(
        &self,
        f: impl FnOnce(&mut sources::Sources, &Snapshot) -> Result<(usize, Snapshot), AdminError>,
    ) -> Result<usize, AdminError> {
        let mut sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.snapshot.load_full();
        let (n, snapshot) = f(&mut sources, &current)?;
        self.snapshot.store(Arc::new(snapshot));
        Ok(n)
    }

    pub fn lists(&self) -> Vec<ListSummary> {
        self.sources
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .summaries()
    }

    pub fn entries(&self, list: &str) -> Result<Vec<(lists::Entry, EntrySource)>, AdminError> {
        self.sources
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entries(list)
    }

    /// Refreshes the size gauges (called on scrape).
    pub fn export_gauges(&self) {
        let snap = self.snapshot.load();
        for l in &snap.lists {
            metrics::gauge!(m::LIST_ENTRIES, "list" => l.name.to_string())
                .set(l.compiled.len() as f64);
        }
        let prefixes =
            |r: RangeRule| snap.ranges[r as usize].as_ref().map_or(0, |d| d.len()) as f64;
        metrics::gauge!(m::DATACENTER_PREFIXES).set(prefixes(RangeRule::Datacenter));
        metrics::gauge!(m::PROXY_PREFIXES).set(prefixes(RangeRule::Proxy));
        metrics::gauge!(m::VERIFIED_BOT_PREFIXES).set(prefixes(RangeRule::VerifiedBot));
        metrics::gauge!(m::CRAWLER_PATTERNS)
            .set(snap.crawler.as_ref().map_or(0, |c| c.len()) as f64);
        metrics::gauge!(m::CAP_COUNTERS)
            .set(self.caps.iter().map(Cap::tracked).sum::<u64>() as f64);
        metrics::gauge!(m::VELOCITY_COUNTERS)
            .set(self.velocity.as_ref().map_or(0, Velocity::tracked) as f64);
    }
}
