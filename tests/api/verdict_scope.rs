//! Verdicts applied only to the traffic they belong to: local blocks that
//! stand through upstream trouble, offer-scoped tags, purges that win over
//! late fills and refreshes.

use std::time::Duration;

use fraudgate::config::{Secret, SecretList};
use reqwest::Method;
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn a_local_block_stands_when_the_upstream_fails_or_the_deadline_runs_out() {
    let app = spawn_app_with(|c| {
        c.rules.ask_upstream_on_block = true;
        c.upstream.breaker.consecutive_failures = 1000;
    })
    .await;
    // A crawler UA while RT answers 500.
    app.mock.on_ip("10.80.0.1", Reply::Status(500));
    let (_, v) = app.check(&query_ua("10.80.0.1", "curl/8.0")).await;
    assert_eq!(
        (v["decision"].as_str(), v["source"].as_str()),
        (Some("block"), Some("local")),
        "{v}"
    );
    assert_eq!(v["tags"], json!(["crawler"]));
    assert_eq!(
        app.mock.calls_for("10.80.0.1"),
        1,
        "RT was asked, as configured"
    );

    // A crawler UA with a zero budget: no time for RT at all.
    app.mock
        .on_ip("10.80.0.2", Reply::delayed(200, Reply::tags("")));
    let r = app
        .http
        .get(app.url(&format!("/v1/check?{}", query_ua("10.80.0.2", "curl/8.0"))))
        .header("x-fraudgate-deadline-ms", "0")
        .send()
        .await
        .unwrap();
    let v = json(r).await;
    assert_eq!(
        (v["decision"].as_str(), v["source"].as_str()),
        (Some("block"), Some("local")),
        "{v}"
    );

    // A tag the policy allows is no block: the fail mode still decides.
    app.mock.on_ip("10.80.0.3", Reply::Status(500));
    let (_, v) = app.check_ip("10.80.0.3").await;
    assert_eq!(
        (v["decision"].as_str(), v["source"].as_str()),
        (Some("allow"), Some("fallback"))
    );
}

#[tokio::test]
async fn a_local_block_stands_while_the_breaker_is_open() {
    let app = spawn_app_with(|c| {
        c.rules.ask_upstream_on_block = true;
        c.upstream.breaker.consecutive_failures = 2;
        c.cache.ttl_error_s = 0;
    })
    .await;
    app.mock.set_default(Reply::Status(500));
    app.check_ip("10.81.0.1").await;
    app.check_ip("10.81.0.2").await;
    let (_, v) = app.check_ip("10.81.0.3").await;
    assert_eq!(v["reason"], "upstream_breaker_open");
    let (_, v) = app
        .check(&query_ua("10.81.0.4", "python-requests/2.31"))
        .await;
    assert_eq!(
        (v["decision"].as_str(), v["source"].as_str()),
        (Some("block"), Some("local")),
        "{v}"
    );
}

#[tokio::test]
async fn an_offer_scoped_tag_is_served_only_to_its_offer_affiliate_and_event_type() {
    let app = spawn_app().await;
    app.mock.on_ip("10.82.0.1", Reply::tags("cap\nproxy"));
    // The fetch: offer 34713, affiliate 6251, click.
    let (_, v) = app.check_ip("10.82.0.1").await;
    assert_eq!(v["tags"], json!(["proxy", "cap"]));
    // Same scope, from the cache: both tags.
    let (_, v) = app.check_ip("10.82.0.1").await;
    assert_eq!(
        (v["source"].as_str(), &v["tags"]),
        (Some("cache"), &json!(["proxy", "cap"]))
    );
    // Another offer, another affiliate, an impression: the ip+ua tag only.
    for extra in [
        query("10.82.0.1", &[]).replace("offer_id=34713", "offer_id=1"),
        query("10.82.0.1", &[]).replace("affiliate_id=6251", "affiliate_id=2"),
        query("10.82.0.1", &[]).replace("event_type=click", "event_type=impression"),
    ] {
        let (_, v) = app.check(&extra).await;
        assert_eq!(
            (v["source"].as_str(), &v["tags"]),
            (Some("cache"), &json!(["proxy"])),
            "{extra}"
        );
    }
    assert_eq!(app.mock.calls_for("10.82.0.1"), 1, "ip+ua stays the key");

    // A cap alone: another offer is served clean, and allowed.
    app.mock.on_ip("10.82.0.2", Reply::tags("attribution"));
    let (_, v) = app.check_ip("10.82.0.2").await;
    assert_eq!(v["decision"], "block");
    let (_, v) = app
        .check(&query("10.82.0.2", &[]).replace("offer_id=34713", "offer_id=1"))
        .await;
    assert_eq!(
        (v["decision"].as_str(), &v["tags"]),
        (Some("allow"), &json!([]))
    );
}

async fn admin_app(tweak: impl FnOnce(&mut fraudgate::Config)) -> TestApp {
    spawn_app_with(|c| {
        c.auth.admin_keys = SecretList(vec![Secret::new(ADMIN_KEY)]);
        tweak(c);
    })
    .await
}

#[tokio::test]
async fn a_late_fill_that_started_before_a_purge_is_not_served_after_it() {
    let app = admin_app(|c| c.upstream.timeout_ms = 3000).await;
    app.mock
        .on_ip("10.83.0.1", Reply::delayed(400, Reply::tags("proxy")));
    let r = app
        .http
        .get(app.url(&format!("/v1/check?{}", query("10.83.0.1", &[]))))
        .header("x-fraudgate-deadline-ms", "20")
        .send()
        .await
        .unwrap();
    assert_eq!(json(r).await["reason"], "deadline");
    // The RT call is under way; the verdict is purged meanwhile.
    let (s, _) = app
        .admin(
            Method::POST,
            "/v1/admin/cache/purge",
            Some(json!({"ip": "10.83.0.1"})),
        )
        .await;
    assert_eq!(s, 200);
    app.mock.on_ip("10.83.0.1", Reply::tags(""));
    eventually(Duration::from_secs(5), || async {
        let m = app.metrics().await;
        (sample(&m, "fraudgate_late_fills_total", &[]) == 1.0).then_some(())
    })
    .await;
    let (_, v) = app.check_ip("10.83.0.1").await;
    assert_eq!(
        (v["source"].as_str(), v["decision"].as_str()),
        (Some("upstream"), Some("allow")),
        "the pre-purge verdict is not served: {v}"
    );
    assert_eq!(app.mock.calls_for("10.83.0.1"), 2);
}

#[tokio::test]
async fn a_refresh_that_started_before_a_purge_is_not_served_after_it() {
    let app = admin_app(|c| {
        c.cache.ttl_s = 1;
        c.cache.stale_s = 60;
        c.upstream.timeout_ms = 3000;
    })
    .await;
    app.mock.on_ip("10.84.0.1", Reply::tags(""));
    app.check_ip("10.84.0.1").await;
    // The refresh will be slow and bring "proxy".
    app.mock
        .on_ip("10.84.0.1", Reply::delayed(500, Reply::tags("proxy")));
    eventually(Duration::from_secs(5), || async {
        let (_, v) = app.check_ip("10.84.0.1").await;
        (v["stale"] == true).then_some(())
    })
    .await;
    let (s, _) = app
        .admin(
            Method::POST,
            "/v1/admin/cache/purge",
            Some(json!({"all": true})),
        )
        .await;
    assert_eq!(s, 200);
    app.mock.on_ip("10.84.0.1", Reply::tags("datacenter"));
    eventually(Duration::from_secs(5), || async {
        let m = app.metrics().await;
        (sample(&m, "fraudgate_refreshes_total", &[("outcome", "ok")]) == 1.0).then_some(())
    })
    .await;
    let (_, v) = app.check_ip("10.84.0.1").await;
    assert_eq!(
        (v["source"].as_str(), &v["tags"]),
        (Some("upstream"), &json!(["datacenter"])),
        "the refresh begun before the purge does not land: {v}"
    );
}

#[tokio::test]
async fn a_purge_of_one_ip_leaves_older_verdicts_of_other_ips_served() {
    let app = admin_app(|_| {}).await;
    app.mock.on_ip("10.85.0.1", Reply::tags("proxy"));
    app.check_ip("10.85.0.1").await;
    app.check_ip("10.85.0.2").await;
    app.admin(
        Method::POST,
        "/v1/admin/cache/purge",
        Some(json!({"ip": "10.85.0.2"})),
    )
    .await;
    let (_, v) = app.check_ip("10.85.0.1").await;
    assert_eq!(v["source"], "cache");
    let (_, v) = app.check_ip("10.85.0.2").await;
    assert_eq!(v["source"], "upstream");
}

#[tokio::test]
async fn a_request_joining_a_call_begun_before_a_purge_is_not_served_its_verdict() {
    let app = admin_app(|c| c.upstream.timeout_ms = 3000).await;
    app.mock
        .on_ip("10.86.0.1", Reply::delayed(500, Reply::tags("proxy")));
    // A: the call that will be purged under it.
    let first = {
        let (http, url) = (
            app.http.clone(),
            app.url(&format!("/v1/check?{}", query("10.86.0.1", &[]))),
        );
        tokio::spawn(async move { http.get(url).send().await })
    };
    eventually(Duration::from_secs(5), || async {
        (app.mock.calls_for("10.86.0.1") == 1).then_some(())
    })
    .await;
    let (s, _) = app
        .admin(
            Method::POST,
            "/v1/admin/cache/purge",
            Some(json!({"ip": "10.86.0.1"})),
        )
        .await;
    assert_eq!(s, 200);
    app.mock.on_ip("10.86.0.1", Reply::tags(""));
    // B arrives after the purge, while A's call is still out.
    let (_, v) = app.check_ip("10.86.0.1").await;
    assert_eq!(
        v["tags"],
        json!([]),
        "B is not served the pre-purge verdict: {v}"
    );
    assert_eq!(v["source"], "upstream");
    assert_eq!(app.mock.calls_for("10.86.0.1"), 2);
    first.await.unwrap().unwrap();
}
