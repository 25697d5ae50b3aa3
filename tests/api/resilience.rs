//! Upstream faults: circuit breaker, stale-while-revalidate, retry.

use std::time::Duration;

use fraudgate::breaker::BreakerConfig;
use serde_json::json;

use crate::helpers::*;

fn breaker(consecutive: u32, open_s: u64, probes: u32) -> BreakerConfig {
    BreakerConfig {
        enabled: true,
        consecutive_failures: consecutive,
        failure_ratio: 1.0,
        min_calls: 1_000_000,
        window_s: 60,
        open_s,
        half_open_probes: probes,
    }
}

#[tokio::test]
async fn the_breaker_opens_answers_fallbacks_without_calls_then_probes_and_closes() {
    let app = spawn_app_with(|c| {
        c.upstream.breaker = breaker(3, 1, 2);
        c.cache.ttl_error_s = 0;
    })
    .await;
    app.mock.set_default(Reply::Status(500));
    for i in 0..3 {
        app.check_ip(&format!("10.70.0.{i}")).await;
    }
    assert_eq!(app.mock.calls(), 3);
    let (_, v) = app.check_ip("10.70.1.1").await;
    assert_eq!(
        (v["source"].as_str(), v["reason"].as_str()),
        (Some("fallback"), Some("upstream_breaker_open"))
    );
    assert_eq!(app.mock.calls(), 3, "open: no upstream call");
    let r = json(app.get("/readyz").await).await;
    assert_eq!(
        (r["status"].as_str(), r["breaker"].as_str()),
        (Some("degraded"), Some("open"))
    );
    let m = app.metrics().await;
    assert_eq!(sample(&m, "fraudgate_breaker_state", &[]), 2.0);

    // After open_s: half-open, two probes succeed, closed again.
    app.mock.set_default(Reply::tags(""));
    eventually(Duration::from_secs(5), || async {
        let r = json(app.get("/readyz").await).await;
        (r["breaker"] == "half_open").then_some(())
    })
    .await;
    for i in 0..2 {
        let (_, v) = app.check_ip(&format!("10.70.2.{i}")).await;
        assert_eq!(v["source"], "upstream");
    }
    let r = json(app.get("/readyz").await).await;
    assert_eq!(
        (r["status"].as_str(), r["breaker"].as_str()),
        (Some("ready"), Some("closed"))
    );
    let (_, v) = app.check_ip("10.70.3.1").await;
    assert_eq!(v["source"], "upstream");
}

#[tokio::test]
async fn a_failed_probe_reopens_the_breaker() {
    let app = spawn_app_with(|c| {
        c.upstream.breaker = breaker(2, 1, 1);
        c.cache.ttl_error_s = 0;
    })
    .await;
    app.mock.set_default(Reply::Reset);
    app.check_ip("10.71.0.1").await;
    app.check_ip("10.71.0.2").await;
    eventually(Duration::from_secs(5), || async {
        let r = json(app.get("/readyz").await).await;
        (r["breaker"] == "half_open").then_some(())
    })
    .await;
    let before = app.mock.calls();
    let (_, v) = app.check_ip("10.71.0.3").await;
    assert_eq!(
        v["reason"], "upstream_connect_error",
        "the probe went upstream and failed"
    );
    assert!(app.mock.calls() > before);
    let (_, v) = app.check_ip("10.71.0.4").await;
    assert_eq!(v["reason"], "upstream_breaker_open");
}

#[tokio::test]
async fn a_stale_verdict_is_served_at_once_and_refreshed_exactly_once() {
    let app = spawn_app_with(|c| {
        c.cache.ttl_s = 1;
        c.cache.stale_s = 30;
        c.upstream.timeout_ms = 3000;
    })
    .await;
    app.mock.on_ip("10.72.0.1", Reply::tags("proxy"));
    app.check_ip("10.72.0.1").await;
    // The refresh will be slow: every request meanwhile gets the stale verdict.
    app.mock
        .on_ip("10.72.0.1", Reply::delayed(1000, Reply::tags("datacenter")));
    // The first stale answer starts the one refresh.
    eventually(Duration::from_secs(5), || async {
        let (_, v) = app.check_ip("10.72.0.1").await;
        (v["stale"] == true).then_some(())
    })
    .await;
    let results = futures_util::future::join_all((0..20).map(|_| app.check_ip("10.72.0.1"))).await;
    for (_, v) in &results {
        assert_eq!(
            (v["source"].as_str(), v["stale"].as_bool()),
            (Some("cache"), Some(true))
        );
        assert_eq!(v["tags"], json!(["proxy"]));
    }
    eventually(Duration::from_secs(5), || async {
        let (_, v) = app.check_ip("10.72.0.1").await;
        (v["tags"] == json!(["datacenter"]) && v["stale"].is_null()).then_some(())
    })
    .await;
    assert_eq!(app.mock.calls_for("10.72.0.1"), 2, "one fetch, one refresh");
}

#[tokio::test]
async fn when_the_refresh_fails_the_stale_verdict_is_served_until_stale_if_error() {
    let app = spawn_app_with(|c| {
        c.cache.ttl_s = 1;
        c.cache.stale_s = 1;
        c.cache.stale_if_error_s = 30;
    })
    .await;
    app.mock.on_ip("10.73.0.1", Reply::tags("crawler"));
    let fetched = std::time::Instant::now();
    app.check_ip("10.73.0.1").await;
    app.mock.on_ip("10.73.0.1", Reply::Status(500));
    // The first stale answer triggers a refresh, which fails.
    eventually(Duration::from_secs(5), || async {
        let (_, v) = app.check_ip("10.73.0.1").await;
        (v["stale"] == true).then_some(())
    })
    .await;
    eventually(Duration::from_secs(5), || async {
        let m = app.metrics().await;
        (sample(&m, "fraudgate_refreshes_total", &[("outcome", "error")]) == 1.0).then_some(())
    })
    .await;
    // Past ttl + stale_s (2 s after the fetch), but the refresh failed:
    // still served. (Waiting for a point in time, not for a task.)
    tokio::time::sleep_until((fetched + Duration::from_millis(2300)).into()).await;
    let (_, v) = app.check_ip("10.73.0.1").await;
    assert_eq!(
        (v["source"].as_str(), v["stale"].as_bool()),
        (Some("cache"), Some(true)),
        "{v}"
    );
    assert_eq!(v["decision"], "block");
}

#[tokio::test]
async fn a_reset_connection_is_retried_once_a_timeout_never() {
    let app = spawn_app_with(|c| c.upstream.timeout_ms = 300).await;
    app.mock.on_ip("10.74.0.1", Reply::Reset);
    app.check_ip("10.74.0.1").await;
    assert_eq!(
        app.mock.calls_for("10.74.0.1"),
        2,
        "one retry on a connection error"
    );
    app.mock.on_ip("10.74.0.2", Reply::Hang);
    app.check_ip("10.74.0.2").await;
    assert_eq!(
        app.mock.calls_for("10.74.0.2"),
        1,
        "no retry after a timeout"
    );
    let m = app.metrics().await;
    assert_eq!(sample(&m, "fraudgate_upstream_retries_total", &[]), 1.0);
}
