use std::time::Duration;

use crate::helpers::*;

#[tokio::test]
async fn a_repeat_event_is_answered_from_the_cache() {
    let app = spawn_app().await;
    app.mock.on_ip("10.5.0.1", Reply::tags("proxy"));
    let (_, first) = app.check_ip("10.5.0.1").await;
    let (_, second) = app.check_ip("10.5.0.1").await;
    assert_eq!(first["source"], "upstream");
    assert_eq!(second["source"], "cache");
    assert_eq!(second["tags"], serde_json::json!(["proxy"]));
    assert_eq!(second["decision"], "block");
    assert_eq!(app.mock.calls_for("10.5.0.1"), 1);
    let m = app.metrics().await;
    assert_eq!(
        sample(&m, "fraudgate_cache_requests_total", &[("result", "hit")]),
        1.0
    );
    assert_eq!(
        sample(&m, "fraudgate_cache_requests_total", &[("result", "miss")]),
        1.0
    );
}

#[tokio::test]
async fn two_hundred_concurrent_misses_on_one_key_make_exactly_one_upstream_call() {
    let app = spawn_app().await;
    app.mock
        .on_ip("10.5.0.2", Reply::delayed(100, Reply::tags("datacenter")));
    let q = query("10.5.0.2", &[]);
    let futs = (0..200).map(|_| app.check(&q));
    let results = futures_util::future::join_all(futs).await;
    assert!(
        results
            .iter()
            .all(|(s, v)| *s == 200 && v["decision"] == "block")
    );
    assert_eq!(app.mock.calls_for("10.5.0.2"), 1);
    let coalesced = results
        .iter()
        .filter(|(_, v)| v["coalesced"] == true)
        .count();
    assert!(coalesced > 0, "some requests waited on the shared call");
}

#[tokio::test]
async fn an_expired_verdict_makes_a_new_upstream_call() {
    let app = spawn_app_with(|c| {
        c.cache.ttl_s = 1;
        c.cache.stale_s = 0;
        c.cache.stale_if_error_s = 0;
    })
    .await;
    app.mock.on_ip("10.5.0.3", Reply::tags(""));
    app.check_ip("10.5.0.3").await;
    let (_, v) = app.check_ip("10.5.0.3").await;
    assert_eq!(v["source"], "cache");
    // moka's clock is real time: wait past the 1 s TTL.
    eventually(Duration::from_secs(5), || async {
        let (_, v) = app.check_ip("10.5.0.3").await;
        (v["source"] == "upstream").then_some(())
    })
    .await;
    assert_eq!(app.mock.calls_for("10.5.0.3"), 2);
}

#[tokio::test]
async fn flagged_and_clean_verdicts_have_their_own_ttls() {
    let app = spawn_app_with(|c| {
        c.cache.ttl_clean_s = Some(1);
        c.cache.ttl_flagged_s = Some(3600);
        c.cache.stale_s = 0;
        c.cache.stale_if_error_s = 0;
    })
    .await;
    app.mock.on_ip("10.5.0.4", Reply::tags(""));
    app.mock.on_ip("10.5.0.5", Reply::tags("proxy"));
    app.check_ip("10.5.0.4").await;
    app.check_ip("10.5.0.5").await;
    eventually(Duration::from_secs(5), || async {
        let (_, v) = app.check_ip("10.5.0.4").await;
        (v["source"] == "upstream").then_some(())
    })
    .await;
    let (_, v) = app.check_ip("10.5.0.5").await;
    assert_eq!(
        v["source"], "cache",
        "flagged verdict outlives the clean TTL"
    );
}

#[tokio::test]
async fn key_parts_are_configurable() {
    let app = spawn_app_with(|c| {
        c.cache.key = vec![
            fraudgate::cache::KeyPart::Ip,
            fraudgate::cache::KeyPart::OfferId,
        ];
    })
    .await;
    let a = query("10.5.0.6", &[]);
    app.check(&a).await;
    app.check(&a.replace("Chrome", "Firefox")).await;
    assert_eq!(
        app.mock.calls_for("10.5.0.6"),
        1,
        "UA is not part of this key"
    );
    app.check(&a.replace("offer_id=34713", "offer_id=1")).await;
    assert_eq!(app.mock.calls_for("10.5.0.6"), 2, "offer_id is");
}

#[tokio::test]
async fn a_failed_call_is_remembered_briefly_so_the_upstream_is_not_hammered() {
    let app = spawn_app_with(|c| c.cache.ttl_error_s = 2).await;
    app.mock.on_ip("10.5.0.7", Reply::Status(500));
    for _ in 0..5 {
        let (_, v) = app.check_ip("10.5.0.7").await;
        assert_eq!(v["source"], "fallback");
    }
    assert_eq!(app.mock.calls_for("10.5.0.7"), 1);
}

#[tokio::test]
async fn a_deadline_answers_fast_and_the_late_answer_fills_the_cache() {
    let app = spawn_app().await;
    app.mock
        .on_ip("10.5.0.8", Reply::delayed(100, Reply::tags("datacenter")));
    let started = std::time::Instant::now();
    let r = app
        .http
        .get(app.url(&format!("/v1/check?{}", query("10.5.0.8", &[]))))
        .header("x-fraudgate-deadline-ms", "20")
        .send()
        .await
        .unwrap();
    let took = started.elapsed();
    let v = json(r).await;
    assert_eq!(v["source"], "fallback");
    assert_eq!(v["reason"], "deadline");
    assert!(
        took < Duration::from_millis(90),
        "answered in {took:?}, before the upstream's 100 ms"
    );
    // The late answer lands in the cache: poll for it.
    let v = eventually(Duration::from_secs(5), || async {
        let (_, v) = app.check_ip("10.5.0.8").await;
        (v["source"] == "cache").then_some(v)
    })
    .await;
    assert_eq!(v["tags"], serde_json::json!(["datacenter"]));
    assert_eq!(app.mock.calls_for("10.5.0.8"), 1);
    let m = app.metrics().await;
    assert_eq!(sample(&m, "fraudgate_late_fills_total", &[]), 1.0);
    assert_eq!(sample(&m, "fraudgate_deadline_misses_total", &[]), 1.0);
}

#[tokio::test]
async fn the_check_doors_configured_budget_applies() {
    let app = spawn_app_with(|c| c.doors.check.budget_ms = 20).await;
    app.mock
        .on_ip("10.5.0.9", Reply::delayed(150, Reply::tags("proxy")));
    let started = std::time::Instant::now();
    let (_, v) = app.check_ip("10.5.0.9").await;
    assert_eq!(v["reason"], "deadline");
    assert!(started.elapsed() < Duration::from_millis(120));
}
