//! Verdict cache: compact 128-bit keys, per-outcome TTLs, and coalescing of
//! concurrent misses for one key into one upstream call (moka `entry` API:
//! one init future per key, other callers wait for its value).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::future::Cache;
use serde::Deserialize;

use crate::config::CacheConfig;
use crate::event::Event;
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

/// A 128-bit keyed hash of the configured key parts. Two independently keyed
/// SipHash passes: callers control UA strings, so collisions must not be
/// craftable, and 128 bits make accidental ones negligible at any capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CacheKey(u128);

/// Builds [`CacheKey`]s; the hash keys are random per process.
#[derive(Debug)]
pub struct Keyer {
    parts: Box<[KeyPart]>,
    a: RandomState,
    b: RandomState,
}

/// Feeds the same bytes to both hashers.
struct Twin<H>(H, H);

impl<H: Hasher> Hasher for Twin<H> {
    fn write(&mut self, bytes: &[u8]) {
        self.0.write(bytes);
        self.1.write(bytes);
    }
    fn finish(&self) -> u64 {
        self.0.finish()
    }
}

impl Keyer {
    pub fn new(parts: &[KeyPart]) -> Self {
        Keyer {
            parts: parts.into(),
            a: RandomState::new(),
            b: RandomState::new(),
        }
    }

    pub fn key(&self, e: &Event) -> CacheKey {
        let mut h = Twin(self.a.build_hasher(), self.b.build_hasher());
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
        CacheKey(((h.0.finish() as u128) << 64) | h.1.finish() as u128)
    }
}

/// What the cache remembers for a key: a verdict, or a recent failure.
#[derive(Debug, Clone)]
pub struct Cached {
    pub outcome: Result<Tags, UpstreamError>,
    pub fetched_at: Instant,
}

impl Cached {
    pub fn now(outcome: Result<Tags, UpstreamError>) -> Self {
        Cached {
            outcome,
            fetched_at: Instant::now(),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Ttls {
    clean: Duration,
    flagged: Duration,
    error: Duration,
}

impl Ttls {
    fn for_value(&self, v: &Cached) -> Duration {
        match &v.outcome {
            Ok(t) if t.is_clean() => self.clean,
            Ok(_) => self.flagged,
            Err(_) => self.error,
        }
    }
}

impl Expiry<CacheKey, Cached> for Ttls {
    fn expire_after_create(&self, _: &CacheKey, v: &Cached, _: Instant) -> Option<Duration> {
        Some(self.for_value(v))
    }
    fn expire_after_update(
        &self,
        _: &CacheKey,
        v: &Cached,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(self.for_value(v))
    }
}

/// The verdict cache. Cheap to clone (shared inside).
#[derive(Clone)]
pub struct VerdictCache {
    inner: Cache<CacheKey, Cached>,
    keyer: Arc<Keyer>,
    ttls: Ttls,
}

impl VerdictCache {
    pub fn new(c: &CacheConfig) -> Self {
        let ttls = Ttls {
            clean: c.ttl_clean(),
            flagged: c.ttl_flagged(),
            error: c.ttl_error(),
        };
        VerdictCache {
            inner: Cache::builder()
                .max_capacity(c.max_entries)
                .expire_after(ttls)
                .build(),
            keyer: Arc::new(Keyer::new(&c.key)),
            ttls,
        }
    }

    pub fn key(&self, e: &Event) -> CacheKey {
        self.keyer.key(e)
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

    pub async fn invalidate(&self, key: &CacheKey) {
        self.inner.invalidate(key).await;
    }

    pub fn invalidate_all(&self) {
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
