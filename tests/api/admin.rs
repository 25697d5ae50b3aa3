//! The admin API: auth, runtime list edits, cache purges.

use std::time::Duration;

use fraudgate::config::{Secret, SecretList};
use reqwest::Method;
use serde_json::json;

use crate::helpers::*;

async fn admin_app() -> TestApp {
    spawn_app_with(|c| c.auth.admin_keys = SecretList(vec![Secret::new(ADMIN_KEY)])).await
}

#[tokio::test]
async fn admin_needs_the_right_bearer_key() {
    let app = admin_app().await;
    let r = app
        .http
        .get(app.url("/v1/admin/lists"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    assert_eq!(json(r).await["error"], "unauthorized");
    let r = app
        .http
        .get(app.url("/v1/admin/lists"))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let body = r.text().await.unwrap();
    assert!(!body.contains(ADMIN_KEY));
    let (s, v) = app.admin(Method::GET, "/v1/admin/lists", None).await;
    assert_eq!(s, 200);
    assert_eq!(v["lists"][0]["name"], "blocklist");
    assert_eq!(v["lists"][1]["name"], "allowlist");
}

#[tokio::test]
async fn admin_is_off_without_admin_keys() {
    let app = spawn_app().await;
    let r = app
        .http
        .get(app.url("/v1/admin/lists"))
        .bearer_auth("anything")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let v = json(r).await;
    assert_eq!(v["error"], "admin_disabled");
    assert!(
        v["message"].as_str().unwrap().contains("auth.admin_keys"),
        "says how to turn it on: {v}"
    );
}

#[tokio::test]
async fn adding_and_removing_an_entry_takes_effect_on_the_next_request() {
    let app = admin_app().await;
    app.mock.on_ip("10.30.0.1", Reply::tags(""));
    let (_, v) = app.check_ip("10.30.0.1").await;
    assert_eq!(v["decision"], "allow");
    let (s, v) = app
        .admin(
            Method::POST,
            "/v1/admin/lists/blocklist/entries",
            Some(json!({"kind": "ip", "value": "10.30.0.1", "reason": "manual ban"})),
        )
        .await;
    assert_eq!((s, v["added"].as_u64()), (201, Some(1)));
    let (_, v) = app.check_ip("10.30.0.1").await;
    assert_eq!(v["decision"], "block");
    assert_eq!(v["rules"][0]["reason"], "manual ban");
    let (s, v) = app
        .admin(
            Method::DELETE,
            "/v1/admin/lists/blocklist/entries?kind=ip&value=10.30.0.1",
            None,
        )
        .await;
    assert_eq!((s, v["removed"].as_u64()), (200, Some(1)));
    let (_, v) = app.check_ip("10.30.0.1").await;
    assert_eq!(
        v["decision"], "allow",
        "the ban does not linger in any cache"
    );
    let (s, v) = app
        .admin(
            Method::DELETE,
            "/v1/admin/lists/blocklist/entries?kind=ip&value=10.30.0.1",
            None,
        )
        .await;
    assert_eq!((s, v["error"].as_str()), (404, Some("not_found")));
}

#[tokio::test]
async fn entries_can_expire() {
    let app = admin_app().await;
    let (s, _) = app
        .admin(
            Method::POST,
            "/v1/admin/lists/blocklist/entries",
            Some(json!([{"kind": "offer", "value": "555", "ttl_s": 1}])),
        )
        .await;
    assert_eq!(s, 201);
    let q = query("10.31.0.1", &[]).replace("offer_id=34713", "offer_id=555");
    let (_, v) = app.check(&q).await;
    assert_eq!(v["decision"], "block");
    eventually(Duration::from_secs(5), || async {
        let (_, v) = app.check(&q).await;
        (v["decision"] == "allow").then_some(())
    })
    .await;
    let (_, v) = app
        .admin(Method::GET, "/v1/admin/lists/blocklist/entries", None)
        .await;
    assert!(
        v["entries"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["live"] == false)
    );
}

#[tokio::test]
async fn bad_admin_input_is_a_4xx_naming_the_problem() {
    let app = admin_app().await;
    let (s, v) = app
        .admin(
            Method::POST,
            "/v1/admin/lists/nope/entries",
            Some(json!({"kind": "ip", "value": "1.1.1.1"})),
        )
        .await;
    assert_eq!((s, v["error"].as_str()), (404, Some("unknown_list")));
    let (s, v) = app
        .admin(
            Method::POST,
            "/v1/admin/lists/blocklist/entries",
            Some(json!({"kind": "ip", "value": "1.1.1.1/99"})),
        )
        .await;
    assert_eq!((s, v["field"].as_str()), (400, Some("body")));
    let (s, _) = app
        .admin(
            Method::POST,
            "/v1/admin/lists/blocklist/entries",
            Some(json!({"kind": "planet", "value": "x"})),
        )
        .await;
    assert_eq!(s, 400);
    let (s, v) = app
        .admin(
            Method::DELETE,
            "/v1/admin/lists/blocklist/entries?value=1",
            None,
        )
        .await;
    assert_eq!((s, v["field"].as_str()), (400, Some("kind")));
    let (s, v) = app
        .admin(
            Method::POST,
            "/v1/admin/cache/purge",
            Some(json!({"ip": "nope"})),
        )
        .await;
    assert_eq!((s, v["field"].as_str()), (400, Some("ip")));
    let (s, _) = app
        .admin(Method::POST, "/v1/admin/cache/purge", Some(json!({})))
        .await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn purging_makes_the_next_request_ask_rt_again() {
    let app = admin_app().await;
    app.mock.on_ip("10.32.0.1", Reply::tags("proxy"));
    app.mock.on_ip("10.32.0.2", Reply::tags("proxy"));
    let q1 = query("10.32.0.1", &[]);
    let q1_other_ua = query_ua(
        "10.32.0.1",
        "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
    );
    app.check(&q1).await;
    app.check(&q1_other_ua).await;
    app.check_ip("10.32.0.2").await;
    assert_eq!(app.mock.calls_for("10.32.0.1"), 2);

    // ip + ua: only that pair.
    let (s, _) = app
        .admin(
            Method::POST,
            "/v1/admin/cache/purge",
            Some(json!({"ip": "10.32.0.1", "ua": UA})),
        )
        .await;
    assert_eq!(s, 200);
    let (_, v) = app.check(&q1).await;
    assert_eq!(v["source"], "upstream");
    let (_, v) = app.check(&q1_other_ua).await;
    assert_eq!(v["source"], "cache");

    // ip: every UA.
    app.admin(
        Method::POST,
        "/v1/admin/cache/purge",
        Some(json!({"ip": "10.32.0.1"})),
    )
    .await;
    let (_, v) = app.check(&q1_other_ua).await;
    assert_eq!(v["source"], "upstream");
    let (_, v) = app.check_ip("10.32.0.2").await;
    assert_eq!(v["source"], "cache", "other IPs stay cached");

    // all.
    app.admin(
        Method::POST,
        "/v1/admin/cache/purge",
        Some(json!({"all": true})),
    )
    .await;
    let (_, v) = app.check_ip("10.32.0.2").await;
    assert_eq!(v["source"], "upstream");
    assert_eq!(app.mock.calls_for("10.32.0.1"), 4);
    assert_eq!(app.mock.calls_for("10.32.0.2"), 2);
}

/// Request metrics label a request by the route that matched, admin routes
/// included; only a path no route matches is "unmatched".
#[tokio::test]
async fn admin_requests_are_counted_under_their_route() {
    let app = admin_app().await;
    let (s, _) = app.admin(Method::GET, "/v1/admin/lists", None).await;
    assert_eq!(s, 200);
    let (s, _) = app
        .admin(Method::POST, "/v1/admin/cache/purge", Some(json!({})))
        .await;
    assert!(s < 500, "purge answered {s}");
    assert_eq!(app.get("/no/such/path").await.status(), 404);
    let m = app.metrics().await;
    assert_eq!(
        sample(
            &m,
            "fraudgate_http_requests_total",
            &[("route", "/v1/admin/lists"), ("status", "200")]
        ),
        1.0
    );
    assert_eq!(
        sample(
            &m,
            "fraudgate_http_requests_total",
            &[("route", "/v1/admin/cache/purge")]
        ),
        1.0
    );
    assert_eq!(
        sample(
            &m,
            "fraudgate_http_requests_total",
            &[("route", "unmatched"), ("status", "404")]
        ),
        1.0
    );
}
