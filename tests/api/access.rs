//! Client keys and per-client rate limits on the scoring endpoints.

use fraudgate::config::{RateLimit, Secret};
use serde_json::json;

use crate::helpers::*;

const OTHER_KEY: &str = "OTHER-CLIENT-KEY-55aa66bb";

async fn keyed_app(rate: Option<RateLimit>) -> TestApp {
    spawn_app_with(|c| {
        c.auth
            .client_keys
            .insert("acme".into(), Secret::new(CLIENT_KEY));
        c.auth
            .client_keys
            .insert("globex".into(), Secret::new(OTHER_KEY));
        if let Some(r) = rate {
            c.auth.rate_limits.insert("acme".into(), r);
        }
    })
    .await
}

#[tokio::test]
async fn with_client_keys_every_scoring_endpoint_needs_one() {
    let app = keyed_app(None).await;
    let q = query("10.80.0.1", &[]);
    for (method, path) in [
        ("GET", format!("/v1/check?{q}")),
        ("GET", format!("/?{q}")),
        ("POST", "/v1/check/batch".to_string()),
        ("POST", "/v1/openrtb".to_string()),
        ("GET", "/v1/auth".to_string()),
    ] {
        let req = app
            .http
            .request(method.parse().unwrap(), app.url(&path))
            .header("content-type", "application/json")
            .body("[]");
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 401, "{method} {path}");
        assert_eq!(r.headers()["www-authenticate"], "Bearer");
        let v = json(r).await;
        assert_eq!(
            (v["error"].as_str(), v["field"].as_str()),
            (Some("unauthorized"), Some("key"))
        );
    }
    let r = app
        .http
        .get(app.url(&format!("/v1/check?{q}")))
        .header("x-api-key", "WRONG-0123456789abcdef")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(app.mock.calls(), 0);

    let r = app
        .http
        .get(app.url(&format!("/v1/check?{q}")))
        .header("x-api-key", CLIENT_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = app
        .http
        .get(app.url(&format!("/v1/check?{q}")))
        .bearer_auth(OTHER_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = app
        .get(&format!(
            "/?{}",
            rt_query("10.80.0.1", &[("key", CLIENT_KEY)])
        ))
        .await;
    assert_eq!(r.status(), 200, "the RT drop-in takes key= like RT");
    // Probes, metrics and the public tracker doors need no key.
    assert_eq!(app.get("/healthz").await.status(), 200);
    assert_eq!(app.get("/metrics").await.status(), 200);
    assert_eq!(
        app.get("/imp?offer_id=1&affiliate_id=2").await.status(),
        200
    );

    let m = app.metrics().await;
    assert!(
        sample(
            &m,
            "fraudgate_client_requests_total",
            &[("client", "acme"), ("outcome", "ok")]
        ) >= 2.0
    );
    assert!(
        sample(
            &m,
            "fraudgate_client_requests_total",
            &[("client", "globex")]
        ) >= 1.0
    );
    assert!(
        sample(
            &m,
            "fraudgate_auth_failures_total",
            &[("reason", "missing")]
        ) >= 5.0
    );
    assert!(
        sample(
            &m,
            "fraudgate_auth_failures_total",
            &[("reason", "invalid")]
        ) >= 1.0
    );
    assert!(!m.contains(CLIENT_KEY) && !m.contains(OTHER_KEY));
}

#[tokio::test]
async fn a_client_over_its_rate_gets_429_with_retry_after_others_are_unaffected() {
    let app = keyed_app(Some(RateLimit { rps: 1, burst: 2 })).await;
    let q = query("10.81.0.1", &[]);
    let get = |key: &'static str| {
        app.http
            .get(app.url(&format!("/v1/check?{q}")))
            .header("x-api-key", key)
            .send()
    };
    assert_eq!(get(CLIENT_KEY).await.unwrap().status(), 200);
    assert_eq!(get(CLIENT_KEY).await.unwrap().status(), 200);
    let r = get(CLIENT_KEY).await.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(
        json(r).await,
        json!({"error": "rate_limited", "message": "request rate over this client's limit"})
    );
    assert_eq!(
        get(OTHER_KEY).await.unwrap().status(),
        200,
        "globex has no limit"
    );
    let m = app.metrics().await;
    assert!(
        sample(
            &m,
            "fraudgate_client_requests_total",
            &[("client", "acme"), ("outcome", "rate_limited")]
        ) >= 1.0
    );
}

/// Client, admin and report keys, and the Redis hash key, follow one
/// strength rule: `check-config` and `serve` refuse a weak one, naming the
/// key's field, never the key.
#[test]
fn every_kind_of_key_has_the_same_strength_rule() {
    let weak = "short-key";
    for (var, field) in [
        (
            "FRAUDGATE_AUTH__CLIENT_KEYS__ADSERVER",
            "auth.client_keys.adserver",
        ),
        ("FRAUDGATE_AUTH__ADMIN_KEYS", "auth.admin_keys[0]"),
        ("FRAUDGATE_AUTH__REPORT_KEYS", "auth.report_keys[0]"),
    ] {
        for cmd in ["check-config", "serve"] {
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_fraudgate"))
                .arg(cmd)
                .env("FRAUDGATE_SERVER__LISTEN", "127.0.0.1:0")
                .env(var, weak)
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stderr).to_string()
                + &String::from_utf8_lossy(&out.stdout);
            assert!(
                !out.status.success(),
                "{cmd} accepted a weak {field}: {text}"
            );
            assert!(
                text.contains(field) && text.contains("16 characters"),
                "{cmd}: {text}"
            );
            assert!(!text.contains(weak), "{cmd} printed the key: {text}");
        }
    }
}
