//! Getting a verdict for an event: cache, then one coalesced, breaker-gated
//! upstream call under the caller's time budget.
//!
//! - A miss runs the upstream call in its own task: when the budget runs
//!   out first the caller gets `Deadline` at once while the call finishes
//!   (bounded by the upstream timeout) and fills the cache ("late fill").
//! - Concurrent misses for a key share one call (`VerdictCache::get_or_fetch`).
//! - A stale verdict (past its TTL, inside the stale window) is served at
//!   once while exactly one background refresh runs; a failed refresh keeps
//!   it servable for `stale_if_error_s`.
//! - While the breaker is open no call is made: `BreakerOpen` at once.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use metrics::Counter;
use tokio::task::JoinError;
use tokio::time::error::Elapsed;

use crate::breaker::{Breaker, Permit};
use crate::cache::{CacheKey, Cached, Freshness, VerdictCache};
use crate::decision::Source;
use crate::event::Event;
use crate::fleet::Fleet;
use crate::metrics as m;
use crate::upstream::{Upstream, UpstreamError};
use crate::verdict::Tags;

/// Where a miss gets its verdict: FraudScore RT ([`Upstream`]) in
/// service; the tests answer in-process, on paused time.
pub trait Origin: Send + Sync + 'static {
    fn check<'a>(&'a self, event: &'a Event) -> BoxFuture<'a, Result<Tags, UpstreamError>>;

    /// Whether its calls are failing, and why, when it keeps track.
    fn status(&self) -> Option<Arc<crate::upstream::UpstreamStatus>> {
        None
    }
}

impl Origin for Upstream {
    fn check<'a>(&'a self, event: &'a Event) -> BoxFuture<'a, Result<Tags, UpstreamError>> {
        Box::pin(Upstream::check(self, event))
    }

    fn status(&self) -> Option<Arc<crate::upstream::UpstreamStatus>> {
        Some(Upstream::status(self).clone())
    }
}

/// What the lookup found.
#[derive(Debug)]
pub struct Lookup {
    pub outcome: Result<Tags, UpstreamError>,
    pub source: Source,
    /// Waited on another request's upstream call.
    pub coalesced: bool,
    /// How long the verdict stays fresh in the cache (zero if not cached).
    pub cache_ttl: Duration,
    /// Served past its TTL while a refresh runs.
    pub stale: bool,
}

impl Lookup {
    /// The one constructor: an answer of this request's own, not cached,
    /// not stale. The cache's answers set those fields on top of it.
    pub fn new(outcome: Result<Tags, UpstreamError>, source: Source) -> Self {
        Lookup {
            outcome,
            source,
            coalesced: false,
            cache_ttl: Duration::ZERO,
            stale: false,
        }
    }

    /// Local rules' tags, no upstream asked.
    pub fn local(tags: Tags) -> Self {
        Self::new(Ok(tags), Source::Local)
    }

    /// No verdict: the policy's fail mode decides.
    pub fn fallback(e: UpstreamError) -> Self {
        Self::new(Err(e), Source::Fallback)
    }
}

struct Counters {
    hits: Counter,
    misses: Counter,
    coalesced: Counter,
    deadline: Counter,
    late_fills: Counter,
    stale: Counter,
    refresh_ok: Counter,
    refresh_err: Counter,
}

/// Cheap to clone.
#[derive(Clone)]
pub struct Fetcher {
    /// The shared tier (Redis), when configured.
    fleet: Option<Arc<Fleet>>,
    origin: Arc<dyn Origin>,
    cache: VerdictCache,
    breaker: Arc<Breaker>,
    c: Arc<Counters>,
}

impl Fetcher {
    pub fn new(
        origin: Arc<dyn Origin>,
        cache: VerdictCache,
        breaker: Breaker,
        fleet: Option<Arc<Fleet>>,
    ) -> Self {
        Fetcher {
            fleet,
            origin,
            cache,
            breaker: Arc::new(breaker),
            c: Arc::new(Counters {
                hits: metrics::counter!(m::CACHE_REQUESTS, "result" => "hit"),
                misses: metrics::counter!(m::CACHE_REQUESTS, "result" => "miss"),
                coalesced: metrics::counter!(m::COALESCED),
                deadline: metrics::counter!(m::DEADLINE_MISSES),
                late_fills: metrics::counter!(m::LATE_FILLS),
                stale: metrics::counter!(m::STALE_SERVED),
                refresh_ok: metrics::counter!(m::REFRESHES, "outcome" => "ok"),
                refresh_err: metrics::counter!(m::REFRESHES, "outcome" => "error"),
            }),
        }
    }

    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }

    /// The verdict for `event` within `budget`: the cache's, else the
    /// one call for it (the breaker permitting).
    pub async fn lookup(&self, event: &Event, budget: Duration) -> Lookup {
        let key = self.cache.key(event);
        if let Some(found) = self.cached(key, event).await {
            return found;
        }
        self.c.misses.increment(1);
        let Some(permit) = self.breaker.try_acquire() else {
            return Lookup::fallback(UpstreamError::BreakerOpen);
        };
        // A task of its own: when the budget runs out first, the call goes
        // on and fills the cache late.
        let fill = self
            .clone()
            .fill(key, event.clone(), permit, Instant::now() + budget);
        let filled = tokio::time::timeout(budget, tokio::spawn(fill)).await;
        self.answer(event, filled)
    }

    /// The cached verdict for `key`: fresh, or stale with one refresh
    /// started. `None` on a miss; an expired entry is dropped.
    async fn cached(&self, key: CacheKey, event: &Event) -> Option<Lookup> {
        let hit = self.cache.get(&key).await?;
        match self.cache.freshness(&hit) {
            Freshness::Fresh => {
                self.c.hits.increment(1);
                let ttl = self.cache.ttl_of(&hit).saturating_sub(hit.age());
                let source = if hit.outcome.is_ok() {
                    Source::Cache
                } else {
                    Source::Fallback
                };
                Some(Lookup {
                    cache_ttl: ttl,
                    ..Lookup::new(self.cache.outcome_for(&hit, event), source)
                })
            }
            Freshness::Stale => {
                self.c.hits.increment(1);
                self.c.stale.increment(1);
                let outcome = self.cache.outcome_for(&hit, event);
                if self.cache.begin_refresh(key) {
                    self.spawn_refresh(key, event.clone(), hit);
                }
                Some(Lookup {
                    stale: true,
                    ..Lookup::new(outcome, Source::Cache)
                })
            }
            // Kept for the stale windows but not servable any more.
            Freshness::Expired => {
                self.cache.invalidate(&key).await;
                None
            }
        }
    }

    /// Fills `key`: joins the call in flight for it, or makes one with
    /// `permit`. The value, and true when this request's call made it.
    async fn fill(
        self,
        key: CacheKey,
        event: Event,
        permit: Permit,
        deadline: Instant,
    ) -> (Cached, bool) {
        // Twice at most: a call joined that began before a purge covering
        // it is not served; one of our own follows.
        let mut joined_purged = false;
        loop {
            let generation = self.cache.generation();
            let fetch = self.fetch(&event, permit, generation, deadline);
            let (cached, fresh) = self.cache.get_or_fetch(key, fetch).await;
            if fresh {
                return (cached, true);
            }
            if !joined_purged && self.cache.purged(&cached) {
                joined_purged = true;
                self.cache.invalidate(&key).await;
                continue;
            }
            // Another request's call answered; ours was not made.
            self.breaker.release(permit);
            return (cached, false);
        }
    }

    /// One call for `event`: the shared tier first (another replica's
    /// verdict, or its answer while it asks RT), else the upstream. The
    /// value to cache, of the purge `generation` taken before it began.
    async fn fetch(
        &self,
        event: &Event,
        permit: Permit,
        generation: u64,
        deadline: Instant,
    ) -> Cached {
        let shared = self
            .fleet
            .as_ref()
            .map(|f| (f, f.verdict_key(event), crate::fleet::now_ms()));
        if let Some((fleet, key, _)) = &shared
            && let crate::fleet::Shared::Hit(tags, age) = fleet.lookup(key, deadline).await
        {
            self.breaker.release(permit);
            return self.cache.value_from_fleet(event, tags, generation, age);
        }
        let outcome = self.origin.check(event).await;
        settle(&self.breaker, permit, &outcome);
        if Instant::now() > deadline {
            self.c.late_fills.increment(1);
        }
        let value = self.cache.value(event, outcome, generation);
        if let Some((fleet, key, started_ms)) = shared {
            self.share(fleet.clone(), key, started_ms, event.ip, &value);
        }
        value
    }

    /// Hands the upstream's verdict to the other replicas, or lets go of
    /// the shared tier's lock after a failure; off the caller's path.
    fn share(&self, fleet: Arc<Fleet>, key: String, started_ms: u64, ip: IpAddr, value: &Cached) {
        let verdict = match &value.outcome {
            Ok(tags) => Some((tags.clone(), self.cache.ttl_of(value))),
            Err(_) => None,
        };
        tokio::spawn(async move {
            match verdict {
                Some((tags, ttl)) => fleet.put(&key, ip, &tags, ttl, started_ms).await,
                None => fleet.unlock(&key).await,
            }
        });
    }

    /// The caller's answer: the filled value, or `Deadline` when the
    /// budget ran out first.
    fn answer(
        &self,
        event: &Event,
        filled: Result<Result<(Cached, bool), JoinError>, Elapsed>,
    ) -> Lookup {
        match filled {
            Ok(Ok((cached, fresh))) => {
                if !fresh {
                    self.c.coalesced.increment(1);
                }
                let ttl = self.cache.ttl_of(&cached);
                let source = if cached.from_fleet {
                    Source::Cache
                } else if cached.outcome.is_ok() {
                    Source::Upstream
                } else {
                    Source::Fallback
                };
                Lookup {
                    coalesced: !fresh,
                    cache_ttl: ttl,
                    ..Lookup::new(self.cache.outcome_for(&cached, event), source)
                }
            }
            Ok(Err(join)) => {
                tracing::error!(panic = join.is_panic(), "upstream task failed");
                Lookup::fallback(UpstreamError::Internal)
            }
            Err(_) => {
                self.c.deadline.increment(1);
                Lookup::fallback(UpstreamError::Deadline)
            }
        }
    }

    /// Refreshes a stale verdict in the background. On failure the old
    /// verdict stays, marked so it may be served for `stale_if_error_s`.
    fn spawn_refresh(&self, key: CacheKey, event: Event, old: Cached) {
        let this = self.clone();
        let generation = self.cache.generation();
        tokio::spawn(async move {
            let outcome = match this.breaker.try_acquire() {
                None => Err(UpstreamError::BreakerOpen),
                Some(permit) => {
                    let o = this.origin.check(&event).await;
                    settle(&this.breaker, permit, &o);
                    o
                }
            };
            match outcome {
                Ok(tags) => {
                    this.c.refresh_ok.increment(1);
                    this.cache
                        .insert(key, this.cache.value(&event, Ok(tags), generation))
                        .await;
                }
                Err(e) => {
                    this.c.refresh_err.increment(1);
                    tracing::debug!(error = %e, "refresh of a stale verdict failed; serving it stale");
                    this.cache.insert(key, old.with_refresh_failed()).await;
                }
            }
            this.cache.end_refresh(key);
        });
    }
}
/// The outcome of a call made with `permit`. fraudgate's own
/// back-pressure (`Busy`) is not the upstream failing: the permit is just
/// handed back.
fn settle<T>(breaker: &Breaker, permit: Permit, outcome: &Result<T, UpstreamError>) {
    match outcome {
        Err(UpstreamError::Busy) => breaker.release(permit),
        o => breaker.record(permit, o.is_ok()),
    }
}

#[cfg(test)]
pub(crate) mod fake_origin;
#[cfg(test)]
mod tests;
