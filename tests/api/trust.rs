//! Who may set which header: a browser must not lower the time budget or
//! pick the event type of the browser-facing doors; a trusted proxy may.

use fraudgate::config::OfferConfig;
use serde_json::Value;

use crate::helpers::*;

fn offer(c: &mut fraudgate::Config) {
    c.offers = vec![OfferConfig {
        id: "1".into(),
        url: "https://adv.example/land?c={click_id}".into(),
        fallback_url: Some("https://adv.example/sorry".into()),
    }];
}

fn headers_of(r: &reqwest::Response) -> (String, String) {
    let h = |n: &str| {
        r.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    (h("x-fraudgate-source"), h("x-fraudgate-decision"))
}

#[tokio::test]
async fn a_browser_cannot_skip_rt_with_a_zero_deadline_on_click_imp_or_auth() {
    let app = spawn_app_with(offer).await;
    let client = no_redirects();
    for path in [
        "/click?offer_id=1&affiliate_id=2",
        "/imp?offer_id=1&affiliate_id=2",
        "/v1/auth?offer_id=1&affiliate_id=2",
    ] {
        // RT flags this visitor, a little slowly; a new UA per door makes
        // each one miss the cache.
        app.mock
            .on_ip("127.0.0.1", Reply::delayed(30, Reply::tags("datacenter")));
        let r = client
            .get(app.url(path))
            .header("user-agent", format!("{UA} {path}"))
            .header("x-fraudgate-deadline-ms", "0")
            .send()
            .await
            .unwrap();
        assert_eq!(
            headers_of(&r),
            ("upstream".into(), "block".into()),
            "{path}: the header from an untrusted peer is ignored"
        );
    }
}

#[tokio::test]
async fn a_trusted_proxy_may_lower_the_budget_and_name_the_event_type() {
    let app = spawn_app_with(|c| {
        offer(c);
        c.server.trusted_proxies = vec!["127.0.0.1/32".into()];
    })
    .await;
    app.mock.on_ip(
        "198.51.100.20",
        Reply::delayed(300, Reply::tags("datacenter")),
    );
    let r = app
        .http
        .get(app.url("/v1/auth?offer_id=1&affiliate_id=2"))
        .header("x-forwarded-for", "198.51.100.20")
        .header("x-fraudgate-deadline-ms", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(
        headers_of(&r).0,
        "fallback",
        "honoured from a trusted proxy"
    );
    assert_eq!(r.headers()["x-fraudgate-reason"], "deadline");

    app.mock.on_ip("198.51.100.21", Reply::tags(""));
    app.http
        .get(app.url("/v1/auth?offer_id=1&affiliate_id=2"))
        .header("x-forwarded-for", "198.51.100.21")
        .header("x-fraudgate-event-type", "impression")
        .send()
        .await
        .unwrap();
    let p = app.mock.last_params("198.51.100.21").unwrap();
    assert!(p.contains(&("event_type".into(), "impression".into())));
    // A bad value from a trusted proxy is a clear 400, not a guess.
    let r = app
        .http
        .get(app.url("/v1/auth?offer_id=1&affiliate_id=2"))
        .header("x-fraudgate-event-type", "install")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = json(r).await;
    assert_eq!(v["field"], "X-Fraudgate-Event-Type");
}

#[tokio::test]
async fn an_untrusted_caller_cannot_name_the_event_type_on_auth() {
    let app = spawn_app().await;
    app.mock.on_ip("127.0.0.1", Reply::tags(""));
    app.http
        .get(app.url("/v1/auth"))
        .header("x-fraudgate-event-type", "impression")
        .send()
        .await
        .unwrap();
    let p = app.mock.last_params("127.0.0.1").unwrap();
    assert!(p.contains(&("event_type".into(), "click".into())), "{p:?}");
}

#[tokio::test]
async fn the_api_doors_still_let_the_ad_server_lower_its_own_budget() {
    let app = spawn_app().await;
    app.mock
        .on_ip("10.90.0.1", Reply::delayed(300, Reply::tags("proxy")));
    let r = app
        .http
        .get(app.url(&format!("/v1/check?{}", query("10.90.0.1", &[]))))
        .header("x-fraudgate-deadline-ms", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(json(r).await["reason"], "deadline");
}

#[tokio::test]
async fn only_the_configured_client_ip_header_is_believed() {
    // nginx sets X-Real-IP; the visitor's own X-Forwarded-For passes through.
    let app = spawn_app_with(|c| {
        c.server.trusted_proxies = vec!["127.0.0.1/32".into()];
        c.server.client_ip_header = "X-Real-IP".into();
    })
    .await;
    app.mock.set_default(Reply::tags(""));
    app.http
        .get(app.url("/v1/auth?offer_id=1&affiliate_id=2"))
        .header("x-forwarded-for", "6.6.6.6")
        .header("x-real-ip", "198.51.100.30")
        .send()
        .await
        .unwrap();
    assert_eq!(app.mock.calls_for("198.51.100.30"), 1);
    assert_eq!(app.mock.calls_for("6.6.6.6"), 0, "the spoofed header lost");
}

#[tokio::test]
async fn a_bad_client_ip_header_stops_startup_naming_the_key() {
    let text = "[server]\nclient_ip_header = \"not a header\"\n";
    let dir = temp_dir("iphdr");
    let f = dir.join("c.toml");
    std::fs::write(&f, text).unwrap();
    let err = fraudgate::config::Config::load(Some(&f))
        .unwrap_err()
        .to_string();
    assert!(err.contains("server.client_ip_header"), "{err}");
}

#[tokio::test]
async fn auth_behind_a_local_proxy_with_no_trusted_proxies_warns_once() {
    let p = crate::binary::spawn_binary(&[]);
    let port = crate::binary::listening_port(&p).await;
    for _ in 0..3 {
        http()
            .get(format!("http://127.0.0.1:{port}/v1/auth?offer_id=1"))
            .header("x-forwarded-for", "198.51.100.40")
            .send()
            .await
            .unwrap();
    }
    let out = eventually(std::time::Duration::from_secs(5), || async {
        let out = p.out.lock().unwrap().clone();
        out.contains("trusted_proxies is empty").then_some(out)
    })
    .await;
    assert_eq!(out.matches("trusted_proxies is empty").count(), 1, "{out}");
}
