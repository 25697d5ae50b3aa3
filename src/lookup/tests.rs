//! The lookup on paused time with an in-process origin: every delay below
//! is tokio's, so these run in milliseconds and their timings are exact.
//!
//! The cache's own clock is std's, which paused time does not move: the
//! stale test sets `ttl_s = 0` to have a verdict past its TTL as soon as it
//! is cached.

use futures_util::future::join_all;
use tokio::time::{Instant, sleep};

use super::fake_origin::{FakeOrigin, click, tags};
use super::*;
use crate::cache::{CacheConfig, Purge};
use crate::config::Config;

/// Enough for every call below that is meant to answer in time.
const BUDGET: Duration = Duration::from_secs(5);
/// How long the origin takes unless a test says otherwise.
const CALL: Duration = Duration::from_millis(50);

fn fetcher(origin: &Arc<FakeOrigin>, cache: impl FnOnce(&mut CacheConfig)) -> Fetcher {
    let mut config = Config::default();
    cache(&mut config.cache);
    let breaker = Breaker::new(&config.upstream.breaker);
    Fetcher::new(
        origin.clone(),
        VerdictCache::new(&config.cache),
        breaker,
        None,
    )
}

fn flagged_ttl() -> Duration {
    Config::default().cache.ttl_flagged()
}

#[tokio::test(start_paused = true)]
async fn a_miss_makes_one_call_and_caches_its_verdict() {
    let origin = FakeOrigin::new(CALL, vec![Ok(tags("proxy"))]);
    let f = fetcher(&origin, |_| {});
    let e = click("203.0.113.7");

    let started = Instant::now();
    let found = f.lookup(&e, BUDGET).await;

    assert_eq!(found.outcome, Ok(tags("proxy")));
    assert_eq!(found.source, Source::Upstream);
    assert!(!found.coalesced && !found.stale);
    assert_eq!(found.cache_ttl, flagged_ttl());
    assert_eq!(started.elapsed(), CALL, "answered when the call answered");
    assert_eq!(origin.calls(), 1);
    let cached = f.cache.get(&f.cache.key(&e)).await.expect("cached");
    assert_eq!(cached.outcome, Ok(tags("proxy")));
}

#[tokio::test(start_paused = true)]
async fn a_hit_is_answered_from_the_cache_without_a_call() {
    let origin = FakeOrigin::new(CALL, vec![Err(UpstreamError::Timeout)]);
    let f = fetcher(&origin, |_| {});
    let e = click("203.0.113.7");
    let value = f.cache.value(&e, Ok(tags("proxy")), f.cache.generation());
    f.cache.insert(f.cache.key(&e), value).await;

    let started = Instant::now();
    let found = f.lookup(&e, BUDGET).await;

    assert_eq!(found.outcome, Ok(tags("proxy")));
    assert_eq!(found.source, Source::Cache);
    assert!(!found.coalesced && !found.stale);
    assert!(found.cache_ttl > Duration::ZERO && found.cache_ttl <= flagged_ttl());
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(origin.calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn concurrent_misses_for_one_key_share_one_call() {
    let origin = FakeOrigin::new(CALL, vec![Ok(tags("proxy")), Ok(tags("crawler"))]);
    let f = fetcher(&origin, |_| {});
    let e = click("203.0.113.7");

    let started = Instant::now();
    let found = join_all((0..10).map(|_| f.lookup(&e, BUDGET))).await;

    assert_eq!(origin.calls(), 1);
    assert_eq!(started.elapsed(), CALL);
    for l in &found {
        assert_eq!(
            (&l.outcome, l.source),
            (&Ok(tags("proxy")), Source::Upstream)
        );
    }
    let coalesced = found.iter().filter(|l| l.coalesced).count();
    assert_eq!(coalesced, 9, "all but the request whose call it was");
}

#[tokio::test(start_paused = true)]
async fn a_stale_verdict_is_served_at_once_while_one_refresh_runs() {
    let origin = FakeOrigin::new(CALL, vec![Ok(tags("proxy")), Ok(tags("crawler"))]);
    let f = fetcher(&origin, |c| {
        (c.ttl_s, c.ttl_clean_s, c.ttl_flagged_s) = (0, None, None);
        c.stale_s = 60;
    });
    let e = click("203.0.113.7");
    assert_eq!(f.lookup(&e, BUDGET).await.source, Source::Upstream);

    let started = Instant::now();
    let stale = [f.lookup(&e, BUDGET).await, f.lookup(&e, BUDGET).await];

    assert_eq!(
        started.elapsed(),
        Duration::ZERO,
        "not kept for the refresh"
    );
    for l in &stale {
        assert_eq!((&l.outcome, l.source), (&Ok(tags("proxy")), Source::Cache));
        assert!(l.stale && !l.coalesced);
        assert_eq!(l.cache_ttl, Duration::ZERO);
    }
    sleep(CALL * 2).await;
    assert_eq!(origin.calls(), 2, "one refresh for both stale hits");
    let refreshed = f.lookup(&e, BUDGET).await;
    assert_eq!(
        refreshed.outcome,
        Ok(tags("crawler")),
        "the refresh's verdict"
    );
    assert!(refreshed.stale);
}

#[tokio::test(start_paused = true)]
async fn a_call_past_the_budget_answers_deadline_at_the_budget_and_fills_late() {
    let call = Duration::from_secs(2);
    let origin = FakeOrigin::new(call, vec![Ok(tags("proxy"))]);
    let f = fetcher(&origin, |_| {});
    let e = click("203.0.113.7");
    let budget = Duration::from_millis(100);

    let started = Instant::now();
    let found = f.lookup(&e, budget).await;

    assert_eq!(started.elapsed(), budget);
    assert_eq!(found.outcome, Err(UpstreamError::Deadline));
    assert_eq!(found.source, Source::Fallback);
    assert_eq!(found.cache_ttl, Duration::ZERO);
    sleep(call).await;
    let late = f.lookup(&e, budget).await;
    assert_eq!(
        (late.outcome, late.source),
        (Ok(tags("proxy")), Source::Cache)
    );
    assert_eq!(origin.calls(), 1, "the late fill answers the next request");
}

/// A fetcher that looked a click up with a call outlasting the budget,
/// was purged with `purge` while the call was out, and has had the call
/// land since. Its origin answers proxy, then crawler.
async fn purged_during_a_late_fill(
    purge: impl FnOnce(&Event) -> Purge,
) -> (Fetcher, Arc<FakeOrigin>, Event) {
    let answers = vec![Ok(tags("proxy")), Ok(tags("crawler"))];
    let origin = FakeOrigin::new(Duration::from_secs(1), answers);
    let f = fetcher(&origin, |_| {});
    let e = click("203.0.113.7");
    let found = f.lookup(&e, Duration::from_millis(100)).await;
    assert_eq!(found.outcome, Err(UpstreamError::Deadline));
    f.cache.purge(&purge(&e)).await;
    sleep(Duration::from_secs(1)).await;
    (f, origin, e)
}

#[tokio::test(start_paused = true)]
async fn a_purge_during_a_fill_keeps_its_late_verdict_out() {
    let (f, origin, e) = purged_during_a_late_fill(|e| Purge::Ip(e.ip)).await;

    let found = f.lookup(&e, BUDGET).await;

    assert_eq!(
        (found.outcome, found.source),
        (Ok(tags("crawler")), Source::Upstream)
    );
    assert_eq!(origin.calls(), 2, "asked anew");
}

#[tokio::test(start_paused = true)]
async fn a_purge_of_another_ip_leaves_the_late_fill_served() {
    let other = "198.51.100.1".parse().unwrap();
    let (f, origin, e) = purged_during_a_late_fill(|_| Purge::Ip(other)).await;

    let found = f.lookup(&e, BUDGET).await;

    assert_eq!(
        (found.outcome, found.source),
        (Ok(tags("proxy")), Source::Cache)
    );
    assert_eq!(origin.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_request_joining_a_call_begun_before_a_purge_makes_its_own() {
    let call = Duration::from_secs(1);
    let origin = FakeOrigin::new(call, vec![Ok(tags("proxy")), Ok(tags("crawler"))]);
    let f = fetcher(&origin, |_| {});
    let e = click("203.0.113.7");
    let first = tokio::spawn({
        let (f, e) = (f.clone(), e.clone());
        async move { f.lookup(&e, BUDGET).await }
    });
    sleep(Duration::from_millis(100)).await;
    f.cache.purge_all();

    let started = Instant::now();
    let joined = f.lookup(&e, BUDGET).await;

    assert_eq!(joined.outcome, Ok(tags("crawler")));
    assert_eq!(joined.source, Source::Upstream);
    assert!(!joined.coalesced, "answered by its own call");
    assert_eq!(started.elapsed(), call - Duration::from_millis(100) + call);
    assert_eq!(origin.calls(), 2);
    first.await.unwrap();
}
