//! Verdict cache: compact 128-bit keys in a flat table ([`table`]: a
//! 64-byte slot, about 80 bytes a key), per-outcome TTLs, coalescing of
//! concurrent misses for one key into one upstream call (one init future
//! per key, other callers wait for its value), and stale-while-revalidate:
//! a verdict is kept past its TTL for the stale windows and served marked
//! stale while one background refresh runs.
//!
//! Two rules keep a verdict on the traffic it belongs to:
//! - **Offer-scoped tags** (`cap`, `attribution`) depend on the offer,
//!   affiliate and event type, not on ip+ua. An entry remembers the scope
//!   it was fetched for; other scopes are served its ip+ua tags only.
//! - **Purges win.** Every value carries the purge generation current when
//!   its fetch started; a value fetched before a purge that covers it is
//!   never served, even if it lands in the cache after the purge (a late
//!   fill, a background refresh).

mod config;
pub mod table;

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use serde::Deserialize;
use tokio::sync::OnceCell;

use crate::event::Event;
use crate::hash::Hasher128;
use crate::upstream::UpstreamError;
use crate::verdict::{Tag, Tags, UnknownTags};
pub use config::CacheConfig;

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

    fn ua_hash(&self, ua: &str) -> u32 {
        self.hasher.hash(ua) as u32
    }

    /// The offer scope of an event: offer, affiliate, event type.
    fn scope(&self, e: &Event) -> u32 {
        self.hasher
            .hash((&e.offer_id, &e.affiliate_id, e.event_type)) as u32
    }
}

/// The cache's clock: microseconds since the first use in the process.
static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

fn micros(t: Instant) -> u64 {
    t.saturating_duration_since(*EPOCH).as_micros() as u64
}

/// A short tag of an IP for purges by IP: a collision only purges an
/// extra entry, never keeps one.
fn ip_tag(ip: IpAddr) -> u32 {
    let bits = match ip.to_canonical() {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    };
    let x = (bits as u64) ^ ((bits >> 64) as u64).rotate_left(29);
    (x.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as u32
}

/// What the cache remembers for a key: a verdict, or a recent failure,
/// plus an IP tag and a UA hash so purges by IP (or IP+UA) can find it.
/// The table holds it packed, as a [`Stored`].
#[derive(Debug, Clone)]
#[cfg_attr(test, derive(PartialEq))]
pub struct Cached {
    pub outcome: Result<Tags, UpstreamError>,
    /// When it was fetched, in [`micros`].
    fetched: u64,
    /// Offer scope of the event it was fetched for (see [`OFFER_SCOPED`]).
    /// 32 bits of a keyed hash (random per process, so not aimable): two
    /// scopes of one ip+ua collide with odds of 2^-32, and a collision
    /// only serves one offer's `cap`/`attribution` tags to another.
    scope: u32,
    /// 32 bits of a keyed hash of the UA: used only to match IP+UA purges
    /// (with the IP tag), where a collision purges an extra entry of the
    /// same IP tag, which is fetched anew: never one kept.
    ua_hash: u32,
    ip: u32,
    /// Purge generation when its fetch started.
    generation: u32,
    /// The last background refresh of this (stale) verdict failed.
    pub refresh_failed: bool,
    /// Another replica's verdict, from Redis.
    pub from_fleet: bool,
}

impl Cached {
    /// How long ago it was fetched.
    pub fn age(&self) -> Duration {
        Duration::from_micros(micros(Instant::now()).saturating_sub(self.fetched))
    }

    /// The same verdict, marked as having failed a refresh (its
    /// fetch time, and so its remaining life, unchanged).
    pub fn with_refresh_failed(self) -> Self {
        Cached {
            refresh_failed: true,
            ..self
        }
    }
}

/// A [`Cached`] as the table holds it: 32 bytes, so that with its key,
/// deadline and access tick a slot is one 64-byte cache line (a test pins
/// both). Two things are left out or taken apart:
/// - the fetch time: the slot's deadline is the fetch time plus a lifetime
///   the value's kind and the TTLs fix, so [`Ttls::fetched`] gives it back
///   exactly;
/// - the [`Tags`]: the known tags' mask goes beside the error in a 4-byte
///   `Result`, the unknown ones (rare) are one thin pointer.
struct Stored {
    /// A verdict's documented tags (their mask), or the failure.
    outcome: Result<u16, UpstreamError>,
    /// A verdict's unknown tags; `None` for a failure.
    unknown: Option<UnknownTags>,
    scope: u32,
    ua_hash: u32,
    ip: u32,
    generation: u32,
    refresh_failed: bool,
    from_fleet: bool,
}

impl Stored {
    fn new(v: Cached) -> Self {
        let (outcome, unknown) = match v.outcome {
            Ok(tags) => {
                let (known, unknown) = tags.into_parts();
                (Ok(known), unknown)
            }
            Err(e) => (Err(e), None),
        };
        Stored {
            outcome,
            unknown,
            scope: v.scope,
            ua_hash: v.ua_hash,
            ip: v.ip,
            generation: v.generation,
            refresh_failed: v.refresh_failed,
            from_fleet: v.from_fleet,
        }
    }

    /// The value again, as fetched at `fetched`.
    fn to_cached(&self, fetched: u64) -> Cached {
        Cached {
            outcome: self
                .outcome
                .map(|known| Tags::from_shared_parts(known, self.unknown.clone())),
            fetched,
            scope: self.scope,
            ua_hash: self.ua_hash,
            ip: self.ip,
            generation: self.generation,
            refresh_failed: self.refresh_failed,
            from_fleet: self.from_fleet,
        }
    }
}

/// The longest the cache keeps a value, in micros (about 292 000 years):
/// a fetch time (micros since the process started) plus this never
/// overflows, so a deadline always gives its fetch time back.
const MAX_LIFE_US: u64 = u64::MAX / 2;

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
    /// [`Ttls::life_us`] of each kind of value ([`Life::kind`]), worked
    /// out once: every hit needs it to rebuild its fetch time.
    life_us: [u64; Life::KINDS],
}

/// What a value's life depends on: whether it is a clean verdict, a
/// flagged one or which failure, and whether a refresh of it failed.
#[derive(Debug, Clone, Copy)]
struct Life {
    /// A verdict (true: clean), or the failure.
    verdict: Result<bool, UpstreamError>,
    refresh_failed: bool,
}

impl Life {
    const KINDS: usize = 6;

    /// The kinds of value that live differently: a clean or flagged
    /// verdict, each with or without a failed refresh; `Busy`; another
    /// failure (a failed refresh does not change a failure's life).
    fn kind(self) -> usize {
        match self.verdict {
            Ok(clean) => usize::from(clean) | usize::from(self.refresh_failed) << 1,
            Err(UpstreamError::Busy) => 4,
            Err(_) => 5,
        }
    }
}

impl Cached {
    fn life(&self) -> Life {
        Life {
            verdict: self.outcome.as_ref().map(Tags::is_clean).map_err(|e| *e),
            refresh_failed: self.refresh_failed,
        }
    }
}

impl Stored {
    fn life(&self) -> Life {
        Life {
            // Clean as `Tags::is_clean` has it: no tag known or unknown.
            verdict: self
                .outcome
                .map(|known| known == 0 && self.unknown.is_none()),
            refresh_failed: self.refresh_failed,
        }
    }
}

impl Ttls {
    fn new(
        clean: Duration,
        flagged: Duration,
        error: Duration,
        stale: Duration,
        stale_if_error: Duration,
    ) -> Self {
        let mut ttls = Ttls {
            clean,
            flagged,
            error,
            stale,
            stale_if_error,
            life_us: [0; Life::KINDS],
        };
        let lives = [
            (Ok(false), false),
            (Ok(true), false),
            (Ok(false), true),
            (Ok(true), true),
            (Err(UpstreamError::Busy), false),
            (Err(UpstreamError::Timeout), false),
        ];
        for (verdict, refresh_failed) in lives {
            let life = Life {
                verdict,
                refresh_failed,
            };
            ttls.life_us[life.kind()] = ttls.micros_of(life);
        }
        ttls
    }

    /// When the cache lets go of `v`, in [`micros`]: after its fetch, even
    /// when it has no life (`Busy`).
    fn deadline(&self, v: &Cached) -> u64 {
        v.fetched.saturating_add(self.life_us(v.life()))
    }

    /// When a value with this life was fetched, from the deadline it was
    /// stored with (the inverse of [`Ttls::deadline`]).
    #[inline]
    fn fetched(&self, life: Life, deadline: u64) -> u64 {
        deadline.saturating_sub(self.life_us(life))
    }

    /// [`Ttls::lifetime`] in micros, at least 1, at most [`MAX_LIFE_US`]
    /// (looked up).
    #[inline]
    fn life_us(&self, life: Life) -> u64 {
        self.life_us[life.kind()]
    }

    /// What [`Ttls::life_us`] looks up, worked out.
    fn micros_of(&self, life: Life) -> u64 {
        let us = self.lifetime(life).as_micros().min(u128::from(MAX_LIFE_US)) as u64;
        us.max(1)
    }

    /// How long the value is fresh.
    fn for_value(&self, life: Life) -> Duration {
        match life.verdict {
            Ok(true) => self.clean,
            Ok(false) => self.flagged,
            // fraudgate's own back-pressure says nothing about the key.
            Err(UpstreamError::Busy) => Duration::ZERO,
            Err(_) => self.error,
        }
    }

    /// The stale window that applies: `stale_s`, widened to
    /// `stale_if_error_s` once a refresh of the value failed.
    fn stale_window(&self, life: Life) -> Duration {
        if life.refresh_failed {
            self.stale.max(self.stale_if_error)
        } else {
            self.stale
        }
    }

    /// How long the cache keeps it: as long as it can be served, no longer
    /// (verdicts for their TTL plus the stale window that applies).
    fn lifetime(&self, life: Life) -> Duration {
        match life.verdict {
            Ok(_) => self.for_value(life) + self.stale_window(life),
            Err(_) => self.for_value(life),
        }
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
    table: Arc<table::Table<Stored>>,
    /// Keys being fetched, each with the one fetch its callers share.
    inflight: Arc<Mutex<HashMap<CacheKey, Arc<OnceCell<Cached>>>>>,
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
    Ip(u32),
    IpUa(u32, u32),
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
        let generation = u64::from(v.generation);
        if generation >= self.current() {
            return false;
        }
        let log = self.log.load();
        if generation < log.floor {
            return true;
        }
        log.entries
            .iter()
            .rev()
            .take_while(|(g, _)| *g > generation)
            .any(|(_, scope)| scope.covers(v))
    }
}

impl VerdictCache {
    pub fn new(c: &CacheConfig) -> Self {
        let ttls = Ttls::new(
            c.ttl_clean(),
            c.ttl_flagged(),
            c.ttl_error(),
            c.stale(),
            c.stale_if_error(),
        );
        VerdictCache {
            table: Arc::new(table::Table::new(c.max_entries)),
            inflight: Arc::default(),
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
        let age = v.age();
        let ttl = self.ttls.for_value(v.life());
        if age < ttl {
            return Freshness::Fresh;
        }
        if v.outcome.is_ok() && age < ttl + self.ttls.stale_window(v.life()) {
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
        self.put(key, v);
    }

    fn put(&self, key: CacheKey, v: Cached) {
        let deadline = self.ttls.deadline(&v);
        self.table
            .insert(key.0, Stored::new(v), deadline, micros(Instant::now()));
    }

    /// The live value for `key` (no allocation: at most a reference count).
    fn live(&self, key: CacheKey) -> Option<Cached> {
        self.table
            .get(key.0, micros(Instant::now()), |s, deadline| {
                s.to_cached(self.ttls.fetched(s.life(), deadline))
            })
    }

    pub async fn invalidate(&self, key: &CacheKey) {
        self.table.remove(key.0);
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
            fetched: micros(Instant::now()),
            refresh_failed: false,
            ip: ip_tag(e.ip),
            ua_hash: self.keyer.ua_hash(&e.ua),
            scope: self.keyer.scope(e),
            generation: generation as u32,
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
        let v = self.value(e, Ok(tags), generation);
        Cached {
            fetched: v.fetched.saturating_sub(age.as_micros() as u64),
            from_fleet: true,
            ..v
        }
    }

    /// The cached value, unless a purge since its fetch covers it.
    pub async fn get(&self, key: &CacheKey) -> Option<Cached> {
        let v = self.live(*key);
        if v.as_ref().is_some_and(|v| self.purges.purged(v)) {
            self.table.remove(key.0);
            return None;
        }
        v
    }

    /// Returns the cached value, or runs `fetch` to fill it. Concurrent
    /// callers for one key share one `fetch`. The flag is true for the
    /// caller whose `fetch` ran.
    pub async fn get_or_fetch(
        &self,
        key: CacheKey,
        fetch: impl Future<Output = Cached>,
    ) -> (Cached, bool) {
        let cell = {
            let mut inflight = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
            // Looked up under the lock: a fetch that just finished has put
            // its value in the table before leaving `inflight`.
            if let Some(v) = self.live(key) {
                return (v, false);
            }
            let cell = inflight.entry(key).or_default();
            // A finished fetch whose caller has not yet taken it out: its
            // value left the table since (invalidated or expired), so it
            // is not joined; a fetch of our own replaces it.
            if cell.initialized() {
                *cell = Arc::default();
            }
            cell.clone()
        };
        let mut ran = false;
        // If the fetching caller is dropped mid-way, a waiting one runs its
        // own fetch (OnceCell hands the initialisation on).
        let v = cell
            .get_or_init(|| async {
                ran = true;
                let v = fetch.await;
                self.put(key, v.clone());
                v
            })
            .await
            .clone();
        if ran {
            let mut inflight = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
            if inflight.get(&key).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
                inflight.remove(&key);
            }
        }
        (v, ran)
    }

    /// True when a purge since `v`'s fetch began covers it: not to be
    /// served (the caller fetches anew).
    pub fn purged(&self, v: &Cached) -> bool {
        self.purges.purged(v)
    }

    /// Time this value lives in the cache from when it was fetched.
    pub fn ttl_of(&self, v: &Cached) -> Duration {
        self.ttls.for_value(v.life())
    }

    /// Drops every verdict for `ip` (any UA). Effective for the very next
    /// lookup: the purge is logged before the table is swept, and a value
    /// it covers is refused on read.
    pub fn purge_ip(&self, ip: IpAddr) {
        let tag = ip_tag(ip);
        self.purges.record(PurgeScope::Ip(tag));
        self.table.retain(|v| v.ip != tag);
    }

    /// Drops the verdicts for one IP+UA.
    pub async fn purge_ip_ua(&self, ip: IpAddr, ua: &str) {
        let ip = ip.to_canonical();
        let (tag, ua_hash) = (ip_tag(ip), self.keyer.ua_hash(ua));
        self.purges.record(PurgeScope::IpUa(tag, ua_hash));
        match self.keyer.key_ip_ua(ip, ua) {
            Some(key) => self.table.remove(key.0),
            None => self
                .table
                .retain(|v| !(v.ip == tag && v.ua_hash == ua_hash)),
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
        self.table.clear();
    }

    /// Entries held.
    pub fn entry_count(&self) -> u64 {
        self.table.len()
    }

    /// Slots allocated for entries (each holds one [`Stored`] inline).
    pub fn slots(&self) -> u64 {
        self.table.slots()
    }
}

#[cfg(test)]
mod tests;
