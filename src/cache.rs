//! Verdict cache: compact 128-bit keys, per-outcome TTLs, coalescing of
//! concurrent misses for one key into one upstream call (moka `entry` API:
//! one init future per key, other callers wait for its value), and
//! stale-while-revalidate: a verdict is kept past its TTL for the stale
//! windows and served marked stale while one background refresh runs.

use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::future::Cache;
use serde::Deserialize;

use crate::config::CacheConfig;
use crate::event::Event;
use crate::hash::Hasher128;
use crate::upstream::UpstreamError;
use crate::verdict::Tags;

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

    /// How long the cache keeps it: verdicts also for the stale windows.
    fn lifetime(&self, v: &Cached) -> Duration {
        match &v.outcome {
            Ok(_) => self.for_value(v) + self.stale.max(self.stale_if_error),
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

/// The verdict cache. Cheap to clone (shared inside).
#[derive(Clone)]
pub struct VerdictCache {
    inner: Cache<CacheKey, Cached>,
    keyer: Arc<Keyer>,
    ttls: Ttls,
    /// Keys with a background refresh in flight (one per key).
    refreshing: moka::sync::Cache<CacheKey, ()>,
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
        }
    }

    /// Where `v` stands: fresh, servable stale, or expired.
    pub fn freshness(&self, v: &Cached) -> Freshness {
        let age = v.fetched_at.elapsed();
        let ttl = self.ttls.for_value(v);
        if age < ttl {
            return Freshness::Fresh;
        }
        let window = if v.refresh_failed {
            self.ttls.stale.max(self.ttls.stale_if_error)
        } else {
            self.ttls.stale
        };
        if v.outcome.is_ok() && age < ttl + window {
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

    /// A value for `e` fetched now.
    pub fn value(&self, e: &Event, outcome: Result<Tags, UpstreamError>) -> Cached {
        Cached {
            outcome,
            fetched_at: Instant::now(),
            refresh_failed: false,
            ip: e.ip,
            ua_hash: self.keyer.ua_hash(&e.ua),
        }
    }

    pub async fn get(&self, key: &CacheKey) -> Option<Cached> {
        self.inner.get(key).await
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

    /// Time this value lives in the cache from when it was fetched.
    pub fn ttl_of(&self, v: &Cached) -> Duration {
        self.ttls.for_value(v)
    }

    /// Drops every verdict for `ip` (any UA). Effective for the very next
    /// lookup: moka checks registered predicates on every read.
    pub fn purge_ip(&self, ip: IpAddr) {
        let ip = ip.to_canonical();
        self.inner
            .invalidate_entries_if(move |_, v| v.ip == ip)
            .expect("invalidation closures are enabled");
    }

    /// Drops the verdicts for one IP+UA.
    pub async fn purge_ip_ua(&self, ip: IpAddr, ua: &str) {
        let ip = ip.to_canonical();
        if let Some(key) = self.keyer.key_ip_ua(ip, ua) {
            self.inner.invalidate(&key).await;
        } else {
            let ua_hash = self.keyer.ua_hash(ua);
            self.inner
                .invalidate_entries_if(move |_, v| v.ip == ip && v.ua_hash == ua_hash)
                .expect("invalidation closures are enabled");
        }
    }

    pub fn purge_all(&self) {
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
    fn parts_do_not_run_into_each_other() {
        let k = Keyer::new(&[KeyPart::Ua, KeyPart::OfferId]);
        let a = ev("event_type=click&ip=1.1.1.1&ua=ab&offer_id=c&affiliate_id=1");
        let b = ev("event_type=click&ip=1.1.1.1&ua=a&offer_id=bc&affiliate_id=1");
        assert_ne!(k.key(&a), k.key(&b));
    }
}
