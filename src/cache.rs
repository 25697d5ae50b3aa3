//! Verdict cache: compact 128-bit keys, per-outcome TTLs, coalescing of
//! concurrent misses for one key into one upstream call (moka `entry` API:
//! one init future per key, other callers wait for its value), and
//! stale-while-revalidate: a verdict is kept past its TTL for the stale
//! windows and served marked stale while one background refresh runs.
//!
//! Two rules keep a verdict on the traffic it belongs to:
//! - **Offer-scoped tags** (`cap`, `attribution`) depend on the offer,
//!   affiliate and event type, not on ip+ua. An entry remembers the scope
//!   it was fetched for; other scopes are served its ip+ua tags only.
//! - **Purges win.** Every value carries the purge generation current when
//!   its fetch started; a value fetched before a purge that covers it is
//!   never served, even if it lands in the cache after the purge (a late
//!   fill, a background refresh).

use std::hash::Hash;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use moka::Expiry;
use moka::future::Cache;
use serde::Deserialize;

use crate::config::CacheConfig;
use crate::event::Event;
use crate::hash::Hasher128;
use crate::upstream::UpstreamError;
use crate::verdict::{Tag, Tags};

/// RT tags that depend on the offer, affiliate and event type rather than
/// on the user (ip+ua): RT's caps and attribution checks.
pub const OFFER_SCOPED: u16 = Tag::Cap.bit() | Tag::Attribution.bit();

/// Event fields a cache key can be built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyPart {
    Ip,
    Ua,
    OfferId,
    AffiliateId,
    EventType,
}

/// A 128-bit keyed hash of the configured key parts (see [`Hasher128`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CacheKey(u128);

/// Builds [`CacheKey`]s; the hash keys are random per process.
#[derive(Debug)]
pub struct Keyer {
    parts: Box<[KeyPart]>,
    hasher: Hasher128,
}

impl Keyer {
    pub fn new(parts: &[KeyPart]) -> Self {
        Keyer {
            parts: parts.into(),
            hasher: Hasher128::new(),
        }
    }

    pub fn key(&self, e: &Event) -> CacheKey {
        let mut h = self.hasher.start();
        for part in &*self.parts {
            // Each part is written with its own terminator/length (str and
            // IpAddr Hash impls), so parts cannot run into each other.
            match part {
                KeyPart::Ip => e.ip.hash(&mut h),
                KeyPart::Ua => e.ua.hash(&mut h),
                KeyPart::OfferId => e.offer_id.hash(&mut h),
                KeyPart::AffiliateId => e.affiliate_id.hash(&mut h),
                KeyPart::EventType => e.event_type.hash(&mut h),
            }
        }
        CacheKey(h.finish128())
    }

    /// The key for (ip, ua) when the key is made of exactly those parts, so
    /// an ip+ua purge can compute it instead of scanning.
    fn key_ip_ua(&self, ip: IpAddr, ua: &str) -> Option<CacheKey> {
        let mut h = self.hasher.start();
        for part in &*self.parts {
            match part {
                KeyPart::Ip => ip.hash(&mut h),
                KeyPart::Ua => ua.hash(&mut h),
                _ => return None,
            }
        }
        Some(CacheKey(h.finish128()))
    }

    fn ua_hash(&self, ua: &str) -> u64 {
        self.hasher.hash(ua) as u64
    }

    /// The offer scope of an event: offer, affiliate, event type.
    fn scope(&self, e: &Event) -> u64 {
        self.hasher
            .hash((&e.offer_id, &e.affiliate_id, e.event_type)) as u64
    }
}

/// What the cache remembers for a key: a verdict, or a recent failure,
/// plus the IP and a UA hash so purges by IP (or IP+UA) can find it.
#[derive(Debug, Clone)]
pub struct Cached {
    pub outcome: Result<Tags, UpstreamError>,
    pub fetched_at: Instant,
    /// The last background refresh of this (stale) verdict failed.
    pub refresh_failed: bool,
    ip: IpAddr,
    ua_hash: u64,
    /// Offer scope of the event it was fetched for (see [`OFFER_SCOPED`]).
    scope: u64,
    /// Purge generation when its fetch started.
    generation: u64,
    /// Another replica's verdict, from Redis.
    pub from_fleet: bool,
}

impl Cached {
    /// The same verdict, marked as having failed a refresh (its
    /// `fetched_at`, and so its remaining life, unchanged).
    pub fn with_refresh_failed(self) -> Self {
        Cached {
            refresh_failed: true,
            ..self
        }
    }
}

/// Where a cached value stands in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Within its TTL.
    Fresh,
    /// Past its TTL, within `stale_s` (or `stale_if_error_s` after a failed
    /// refresh): serve it and refresh in the background.
    Stale,
    /// Too old to serve.
    Expired,
}

#[derive(Debug, Clone, Copy)]
struct Ttls {
    clean: Duration,
    flagged: Duration,
    error: Duration,
    stale: Duration,
    stale_if_error: Duration,
}

impl Ttls {
    /// How long the value is fresh.
    fn for_value(&self, v: &Cached) -> Duration {
        match &v.outcome {
            Ok(t) if t.is_clean() => self.clean,
            Ok(_) => self.flagged,
            // fraudgate's own back-pressure says nothing about the key.
            Err(UpstreamError::Busy) => Duration::ZERO,
            Err(_) => self.error,
        }
    }

    /// The stale window that applies to `v`: `stale_s`, widened to
    /// `stale_if_error_s` once a refresh of it failed.
    fn stale_window(&self, v: &Cached) -> Duration {
        if v.refresh_failed {
            self.stale.max(self.stale_if_error)
        } else {
            self.stale
        }
    }

    /// How long the cache keeps it: as long as it can be served, no longer
    /// (verdicts for their TTL plus the stale window that applies).
    fn lifetime(&self, v: &Cached) -> Duration {
        match &v.outcome {
            Ok(_) => self.for_value(v) + self.stale_window(v),
            Err(_) => self.for_value(v),
        }
    }

    /// What is left of the lifetime, counted from when it was fetched (an
    /// update that keeps `fetched_at` does not extend it).
    fn remaining(&self, v: &Cached) -> Option<Duration> {
        Some(self.lifetime(v).saturating_sub(v.fetched_at.elapsed()))
    }
}

impl Expiry<CacheKey, Cached> for Ttls {
    fn expire_after_create(&self, _: &CacheKey, v: &Cached, _: Instant) -> Option<Duration> {
        self.remaining(v)
    }
    fn expire_after_update(
        &self,
        _: &CacheKey,
        v: &Cached,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        self.remaining(v)
    }
}

/// A purge asked for: by the admin API, or by another replica.
#[derive(Debug, Clone)]
pub enum Purge {
    All,
    Ip(IpAddr),
    IpUa(IpAddr, String),
}

impl Purge {
    /// The metric label and the admin API's answer.
    pub fn scope(&self) -> &'static str {
        match self {
            Purge::All => "all",
            Purge::Ip(_) => "ip",
            Purge::IpUa(..) => "ip_ua",
        }
    }
}

/// The verdict cache. Cheap to clone (shared inside).
#[derive(Clone)]
pub struct VerdictCache {
    inner: Cache<CacheKey, Cached>,
    keyer: Arc<Keyer>,
    ttls: Ttls,
    /// Keys with a background refresh in flight (one per key).
    refreshing: moka::sync::Cache<CacheKey, ()>,
    purges: Arc<Purges>,
}

/// What a purge covered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PurgeScope {
    All,
    Ip(IpAddr),
    IpUa(IpAddr, u64),
}

impl PurgeScope {
    fn covers(&self, v: &Cached) -> bool {
        match *self {
            PurgeScope::All => true,
            PurgeScope::Ip(ip) => v.ip == ip,
            PurgeScope::IpUa(ip, ua) => v.ip == ip && v.ua_hash == ua,
        }
    }
}

/// Recent purges, so a value fetched before one of them is not served
/// after it. Readers load one atomic; only values older than the latest
/// purge look at the log.
struct Purges {
    /// Generation of the latest purge (0: none yet).
    generation: AtomicU64,
    log: ArcSwap<PurgeLog>,
    /// Serialises purges (rare, admin-driven).
    write: Mutex<()>,
}

#[derive(Default, Clone)]
struct PurgeLog {
    /// (generation, scope), oldest first, at most [`PURGE_LOG`].
    entries: Vec<(u64, PurgeScope)>,
    /// Purges up to this generation fell off the log: anything fetched
    /// before it counts as purged.
    floor: u64,
}

/// Purges remembered one by one; older ones are covered by the floor.
const PURGE_LOG: usize = 256;

impl Purges {
    fn new() -> Self {
        Purges {
            generation: AtomicU64::new(0),
            log: ArcSwap::from_pointee(PurgeLog::default()),
            write: Mutex::new(()),
        }
    }

    fn current(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    fn record(&self, scope: PurgeScope) {
        let _w = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let generation = self.current() + 1;
        let mut log = PurgeLog::clone(&self.log.load());
        log.entries.push((generation, scope));
        if log.entries.len() > PURGE_LOG {
            let (dropped, _) = log.entries.remove(0);
            log.floor = dropped;
        }
        // The log first, then the generation: a reader that sees the new
        // generation also sees the entry.
        self.log.store(Arc::new(log));
        self.generation.store(generation, Ordering::SeqCst);
    }

    /// True when a purge after `v`'s fetch started covers it.
    fn purged(&self, v: &Cached) -> bool {
        if v.generation >= self.current() {
            return false;
        }
        let log = self.log.load();
        if v.generation < log.floor {
            return true;
        }
        log.entries
            .iter()
            .rev()
            .take_while(|(g, _)| *g > v.generation)
            .any(|(_, scope)| scope.covers(v))
    }
}

impl VerdictCache {
    pub fn new(c: &CacheConfig) -> Self {
        let ttls = Ttls {
            clean: c.ttl_clean(),
            flagged: c.ttl_flagged(),
            error: c.ttl_error(),
            stale: c.stale(),
            stale_if_error: c.stale_if_error(),
        };
        VerdictCache {
            inner: Cache::builder()
                .max_capacity(c.max_entries)
                .expire_after(ttls)
                .support_invalidation_closures()
                .build(),
            keyer: Arc::new(Keyer::new(&c.key)),
            ttls,
            refreshing: moka::sync::Cache::builder()
                .max_capacity(c.max_entries)
                // A refresh is bounded by the upstream timeout; this only
                // guards against a lost end_refresh.
                .time_to_live(Duration::from_secs(60))
                .build(),
            purges: Arc::new(Purges::new()),
        }
    }

    /// The purge generation now: take it before a fetch starts and hand it
    /// to [`VerdictCache::value`].
    pub fn generation(&self) -> u64 {
        self.purges.current()
    }

    /// The outcome `v` holds for `e`: offer-scoped tags only for the
    /// offer, affiliate and event type they were fetched for.
    pub fn outcome_for(&self, v: &Cached, e: &Event) -> Result<Tags, UpstreamError> {
        match &v.outcome {
            Ok(t) if t.known_mask() & OFFER_SCOPED != 0 && self.keyer.scope(e) != v.scope => {
                Ok(t.without(OFFER_SCOPED))
            }
            other => other.clone(),
        }
    }

    /// Where `v` stands: fresh, servable stale, or expired.
    pub fn freshness(&self, v: &Cached) -> Freshness {
        let age = v.fetched_at.elapsed();
        let ttl = self.ttls.for_value(v);
        if age < ttl {
            return Freshness::Fresh;
        }
        if v.outcome.is_ok() && age < ttl + self.ttls.stale_window(v) {
            Freshness::Stale
        } else {
            Freshness::Expired
        }
    }

    /// True for the one caller that should refresh `key` now.
    pub fn begin_refresh(&self, key: CacheKey) -> bool {
        self.refreshing.entry(key).or_insert(()).is_fresh()
    }

    pub fn end_refresh(&self, key: CacheKey) {
        self.refreshing.invalidate(&key);
    }

    pub async fn insert(&self, key: CacheKey, v: Cached) {
        self.inner.insert(key, v).await;
    }

    pub async fn invalidate(&self, key: &CacheKey) {
        self.inner.invalidate(key).await;
    }

    pub fn key(&self, e: &Event) -> CacheKey {
        self.keyer.key(e)
    }

    /// A value for `e` fetched now; `generation` is
    /// [`VerdictCache::generation`] from before the fetch started.
    pub fn value(
        &self,
        e: &Event,
        outcome: Result<Tags, UpstreamError>,
        generation: u64,
    ) -> Cached {
        Cached {
            outcome,
            fetched_at: Instant::now(),
            refresh_failed: false,
            ip: e.ip,
            ua_hash: self.keyer.ua_hash(&e.ua),
            scope: self.keyer.scope(e),
            generation,
            from_fleet: false,
        }
    }

    /// Another replica's verdict, fetched `age` ago.
    pub fn value_from_fleet(
        &self,
        e: &Event,
        tags: Tags,
        generation: u64,
        age: Duration,
    ) -> Cached {
        let now = Instant::now();
        Cached {
            fetched_at: now.checked_sub(age).unwrap_or(now),
            from_fleet: true,
            ..self.value(e, Ok(tags), generation)
        }
    }

    /// The cached value, unless a purge since its fetch covers it.
    pub async fn get(&self, key: &CacheKey) -> Option<Cached> {
        let v = self.inner.get(key).await?;
        if self.purges.purged(&v) {
            self.inner.invalidate(key).await;
            return None;
        }
        Some(v)
    }

    /// Returns the cached value, or runs `fetch` to fill it. Concurrent
    /// callers for one key share one `fetch`. The flag is true for the
    /// caller whose `fetch` ran.
    pub async fn get_or_fetch(
        &self,
        key: CacheKey,
        fetch: impl Future<Output = Cached>,
    ) -> (Cached, bool) {
        let entry = self.inner.entry(key).or_insert_with(fetch).await;
        let fresh = entry.is_fresh();
        (entry.into_value(), fresh)
    }

    /// True when a purge since `v`'s fetch began covers it: not to be
    /// served (the caller fetches anew).
    pub fn purged(&self, v: &Cached) -> bool {
        self.purges.purged(v)
    }

    /// Time this value lives in the cache from when it was fetched.
    pub fn ttl_of(&self, v: &Cached) -> Duration {
        self.ttls.for_value(v)
    }

    /// Drops every verdict for `ip` (any UA). Effective for the very next
    /// lookup: moka checks registered predicates on every read.
    pub fn purge_ip(&self, ip: IpAddr) {
        let ip = ip.to_canonical();
        self.purges.record(PurgeScope::Ip(ip));
        self.inner
            .invalidate_entries_if(move |_, v| v.ip == ip)
            .expect("invalidation closures are enabled");
    }

    /// Drops the verdicts for one IP+UA.
    pub async fn purge_ip_ua(&self, ip: IpAddr, ua: &str) {
        let ip = ip.to_canonical();
        self.purges
            .record(PurgeScope::IpUa(ip, self.keyer.ua_hash(ua)));
        if let Some(key) = self.keyer.key_ip_ua(ip, ua) {
            self.inner.invalidate(&key).await;
        } else {
            let ua_hash = self.keyer.ua_hash(ua);
            self.inner
                .invalidate_entries_if(move |_, v| v.ip == ip && v.ua_hash == ua_hash)
                .expect("invalidation closures are enabled");
        }
    }

    pub async fn purge(&self, p: &Purge) {
        match p {
            Purge::All => self.purge_all(),
            Purge::Ip(ip) => self.purge_ip(*ip),
            Purge::IpUa(ip, ua) => self.purge_ip_ua(*ip, ua).await,
        }
    }

    pub fn purge_all(&self) {
        self.purges.record(PurgeScope::All);
        self.inner.invalidate_all();
    }

    /// Approximate number of entries.
    pub fn entry_count(&self) -> u64 {
        self.inner.entry_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventBuilder;

    fn ev(q: &str) -> Event {
        EventBuilder::from_query(q).unwrap().build().unwrap()
    }

    const A: &str = "event_type=click&ip=1.2.3.4&ua=x&offer_id=1&affiliate_id=2";

    #[test]
    fn default_key_ignores_offer_and_affiliate() {
        let k = Keyer::new(&[KeyPart::Ip, KeyPart::Ua]);
        let b = A
            .replace("offer_id=1", "offer_id=9")
            .replace("click", "impression");
        assert_eq!(k.key(&ev(A)), k.key(&ev(&b)));
        assert_ne!(k.key(&ev(A)), k.key(&ev(&A.replace("ua=x", "ua=y"))));
        assert_ne!(k.key(&ev(A)), k.key(&ev(&A.replace("1.2.3.4", "1.2.3.5"))));
    }

    #[test]
    fn configured_parts_split_keys() {
        let k = Keyer::new(&[
            KeyPart::Ip,
            KeyPart::Ua,
            KeyPart::OfferId,
            KeyPart::EventType,
        ]);
        assert_ne!(
            k.key(&ev(A)),
            k.key(&ev(&A.replace("offer_id=1", "offer_id=9")))
        );
        assert_ne!(k.key(&ev(A)), k.key(&ev(&A.replace("click", "impression"))));
    }

    #[test]
    fn entries_live_only_as_long_as_they_can_be_served() {
        let ttls = Ttls {
            clean: Duration::from_secs(10),
            flagged: Duration::from_secs(20),
            error: Duration::from_secs(3),
            stale: Duration::from_secs(5),
            stale_if_error: Duration::from_secs(600),
        };
        let cache = VerdictCache::new(&crate::Config::default().cache);
        let e = ev(A);
        let clean = cache.value(&e, Ok(Tags::clean()), 0);
        assert_eq!(
            ttls.lifetime(&clean),
            Duration::from_secs(15),
            "ttl + stale_s"
        );
        let flagged = cache.value(&e, Ok(Tags::parse("proxy").unwrap()), 0);
        assert_eq!(ttls.lifetime(&flagged), Duration::from_secs(25));
        assert_eq!(
            ttls.lifetime(&clean.with_refresh_failed()),
            Duration::from_secs(610),
            "stale_if_error_s only once a refresh failed"
        );
        let failed = cache.value(&e, Err(UpstreamError::Timeout), 0);
        assert_eq!(ttls.lifetime(&failed), Duration::from_secs(3));
    }

    #[test]
    fn parts_do_not_run_into_each_other() {
        let k = Keyer::new(&[KeyPart::Ua, KeyPart::OfferId]);
        let a = ev("event_type=click&ip=1.1.1.1&ua=ab&offer_id=c&affiliate_id=1");
        let b = ev("event_type=click&ip=1.1.1.1&ua=a&offer_id=bc&affiliate_id=1");
        assert_ne!(k.key(&a), k.key(&b));
    }
}
