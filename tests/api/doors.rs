//! /v1/auth, /click, /imp without a proxy in front; client IP rules.

use fraudgate::config::{OfferConfig, OnError};
use reqwest::StatusCode;

use crate::helpers::*;

#[tokio::test]
async fn auth_allows_with_200_and_blocks_with_403_and_headers() {
    let app = spawn_app_with(|c| c.server.trusted_proxies = vec!["127.0.0.1/32".into()]).await;
    app.mock
        .on_ip("198.51.100.66", Reply::tags("datacenter\nip"));
    let r = app
        .http
        .get(app.url("/v1/auth"))
        .header("x-forwarded-for", "198.51.100.66")
        .header(
            "x-original-uri",
            "/landing?offer_id=77&affiliate_id=5&aff_sub1=b&utm_source=x",
        )
        .header("user-agent", UA)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(r.headers()["x-fraudgate-decision"], "block");
    assert_eq!(r.headers()["x-fraudgate-tags"], "datacenter,ip");
    assert_eq!(r.headers()["x-fraudgate-id"].len(), 36);
    assert_eq!(r.headers()["x-accel-expires"], "300");
    assert!(r.text().await.unwrap().is_empty());
    let p = app.mock.last_params("198.51.100.66").unwrap();
    let get = |k: &str| p.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    assert_eq!(
        (get("offer_id"), get("affiliate_id"), get("aff_sub1")),
        (Some("77"), Some("5"), Some("b"))
    );
    assert_eq!(
        get("utm_source"),
        None,
        "the app's own parameters stay with the app"
    );
    assert_eq!(get("ua"), Some(UA));

    let r = app
        .http
        .post(app.url("/v1/auth"))
        .header("x-forwarded-for", "198.51.100.1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-fraudgate-decision"], "allow");
    assert!(r.text().await.unwrap().is_empty());

    // ingress-nginx's auth-url sends the whole original URL.
    app.mock.on_ip("198.51.100.67", Reply::tags(""));
    let r = app
        .http
        .get(app.url("/v1/auth"))
        .header("x-forwarded-for", "198.51.100.67")
        .header(
            "x-original-url",
            "https://shop.example/landing?offer_id=78&affiliate_id=6",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let p = app.mock.last_params("198.51.100.67").unwrap();
    let get = |k: &str| p.iter().find(|(n, _)| n == k).map(|(_, v)| v.to_owned());
    assert_eq!(
        (get("offer_id"), get("affiliate_id")),
        (Some("78".into()), Some("6".into()))
    );
}

#[tokio::test]
async fn a_spoofed_forwarded_for_from_an_untrusted_peer_is_ignored() {
    let app = spawn_app().await; // no trusted proxies
    app.mock.on_ip("127.0.0.1", Reply::tags(""));
    app.mock.on_ip("198.51.100.7", Reply::tags("blacklist"));
    let r = app
        .http
        .get(app.url("/v1/auth"))
        .header("x-forwarded-for", "198.51.100.7")
        .header("x-real-ip", "198.51.100.7")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "scored as the real peer, 127.0.0.1");
    assert_eq!(app.mock.calls_for("198.51.100.7"), 0);
    assert_eq!(app.mock.calls_for("127.0.0.1"), 1);
}

#[tokio::test]
async fn auth_reads_envoy_paths_traefik_headers_renamed_params_and_defaults() {
    let app = spawn_app_with(|c| {
        c.server.trusted_proxies = vec!["127.0.0.1/32".into()];
        c.doors.auth.params.insert("offer_id".into(), "oid".into());
        c.doors
            .auth
            .defaults
            .insert("affiliate_id".into(), "house".into());
        c.doors.auth.impression_paths = vec!["/pixel".into()];
        c.doors.auth.blocked_status = 401;
    })
    .await;
    app.mock.set_default(Reply::tags("proxy"));
    // Envoy ext_authz: original path appended after the path_prefix.
    let r = app
        .http
        .get(app.url("/v1/auth/pixel/a.gif?oid=9"))
        // Envoy (use_remote_address) appends the client to X-Forwarded-For.
        .header("x-forwarded-for", "198.51.100.9")
        .header("x-envoy-external-address", "198.51.100.9")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let p = app.mock.last_params("198.51.100.9").unwrap();
    assert!(p.contains(&("offer_id".into(), "9".into())));
    assert!(p.contains(&("affiliate_id".into(), "house".into())));
    assert!(p.contains(&("event_type".into(), "impression".into())));
    // Traefik ForwardAuth.
    app.http
        .get(app.url("/v1/auth"))
        .header("x-forwarded-uri", "/shop?oid=10&affiliate_id=3")
        .header("x-forwarded-for", "198.51.100.10")
        .header("x-fraudgate-event-type", "click")
        .send()
        .await
        .unwrap();
    let p = app.mock.last_params("198.51.100.10").unwrap();
    assert!(
        p.contains(&("offer_id".into(), "10".into()))
            && p.contains(&("affiliate_id".into(), "3".into()))
    );
    assert!(p.contains(&("event_type".into(), "click".into())));
}

#[tokio::test]
async fn auth_follows_its_own_fail_mode_and_marks_fallbacks_uncacheable() {
    let app = spawn_app_with(|c| c.doors.auth.on_upstream_error = OnError::Block).await;
    app.mock.set_default(Reply::Status(500));
    let r = app.http.get(app.url("/v1/auth")).send().await.unwrap();
    assert_eq!(r.status(), 403, "door override: fail closed");
    assert_eq!(r.headers()["x-fraudgate-source"], "fallback");
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert_eq!(r.headers()["x-accel-expires"], "0");
    // /v1/check keeps the policy's fail-open.
    let (_, v) = app.check_ip("10.50.0.1").await;
    assert_eq!(v["decision"], "allow");
}

fn offers(c: &mut fraudgate::Config) {
    c.offers = vec![
        OfferConfig {
            id: "34713".into(),
            url: "https://adv.example/land?clickid={click_id}&sub={aff_sub1}&aff={affiliate_id}"
                .into(),
            fallback_url: Some("https://example.com/sorry?o={offer_id}".into()),
        },
        OfferConfig {
            id: "2".into(),
            url: "https://adv.example/two".into(),
            fallback_url: None,
        },
    ];
}

#[tokio::test]
async fn click_redirects_to_the_offer_with_macros_filled_and_encoded() {
    let app = spawn_app_with(offers).await;
    let r = no_redirects()
        .get(app.url(
            "/click?offer_id=34713&affiliate_id=6251&aff_sub1=a%20b%26c%3Dhttps%3A%2F%2Fevil.example%2B",
        ))
        .header("user-agent", UA)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    let id = r.headers()["x-fraudgate-id"].to_str().unwrap().to_owned();
    assert_eq!(
        loc,
        format!(
            // RFC 3986: a space is %20 (never +), a + is %2B.
            "https://adv.example/land?clickid={id}&sub=a%20b%26c%3Dhttps%3A%2F%2Fevil.example%2B&aff=6251"
        )
    );
    let p = app.mock.last_params("127.0.0.1").unwrap();
    assert!(p.contains(&("event_type".into(), "click".into())));
}

#[tokio::test]
async fn a_blocked_click_goes_to_the_fallback_or_gets_the_blocked_status() {
    let app = spawn_app_with(|c| {
        offers(c);
        c.doors.click.blocked_status = 204;
    })
    .await;
    let client = no_redirects();
    let r = client
        .get(app.url("/click?offer_id=34713&affiliate_id=1"))
        .header("user-agent", "curl/8")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    assert_eq!(r.headers()["location"], "https://example.com/sorry?o=34713");
    let r = client
        .get(app.url("/click?offer_id=2&affiliate_id=1"))
        .header("user-agent", "curl/8")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert!(r.headers().get("location").is_none());
}

/// The error answers of the browser doors are never stored either: a
/// cached 400 or 404 would answer a later, valid click.
#[tokio::test]
async fn click_and_imp_errors_are_not_stored() {
    let app = spawn_app_with(offers).await;
    let client = no_redirects();
    for (path, status, field) in [
        ("/click?offer_id=34713", 400, "affiliate_id"),
        ("/click?offer_id=99&affiliate_id=1", 404, "offer_id"),
        ("/imp?offer_id=34713", 400, "affiliate_id"),
    ] {
        let r = client.get(app.url(path)).send().await.unwrap();
        assert_eq!(r.status(), status, "{path}");
        assert_eq!(r.headers()["cache-control"], "no-store", "{path}");
        let v = json(r).await;
        assert_eq!(v["field"], field, "{path}: {v}");
    }
}

#[tokio::test]
async fn click_never_redirects_where_the_request_says() {
    let app = spawn_app_with(offers).await;
    let client = no_redirects();
    // Parameters that are not RT fields belong to the link, not to
    // fraudgate: ignored. Connection fields in the query are never
    // believed. Either way the target is the configured offer URL.
    for q in [
        "offer_id=34713&affiliate_id=1&url=https://evil.example",
        "offer_id=34713&affiliate_id=1&redirect=//evil.example",
        "offer_id=34713&affiliate_id=1&ip=1.2.3.4&ua=Googlebot&event_type=impression",
    ] {
        let r = client
            .get(app.url(&format!("/click?{q}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FOUND, "{q}");
        let location = r.headers()["location"].to_str().unwrap();
        assert!(
            location.starts_with("https://adv.example/land?clickid="),
            "{q} -> {location}"
        );
    }
    let p = app.mock.last_params("127.0.0.1").unwrap();
    assert!(p.contains(&("event_type".into(), "click".into())));
    assert_eq!(
        app.mock.calls_for("1.2.3.4"),
        0,
        "the query's ip is not the client"
    );
    for (q, status, field) in [
        (
            "offer_id=https://evil.example&affiliate_id=1",
            404,
            "offer_id",
        ),
        ("offer_id=999&affiliate_id=1", 404, "offer_id"),
        ("affiliate_id=1", 400, "offer_id"),
        ("offer_id=34713", 400, "affiliate_id"),
    ] {
        let r = client
            .get(app.url(&format!("/click?{q}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), status, "{q}");
        assert!(r.headers().get("location").is_none());
        assert_eq!(json(r).await["field"], field, "{q}");
    }
}

#[tokio::test]
async fn imp_answers_a_pixel_or_204_and_records_an_impression() {
    let app = spawn_app().await;
    let r = app
        .http
        .get(app.url("/imp?offer_id=1&affiliate_id=2"))
        .header("user-agent", UA)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/gif");
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert_eq!(&r.bytes().await.unwrap()[..6], b"GIF89a");
    let p = app.mock.last_params("127.0.0.1").unwrap();
    assert!(p.contains(&("event_type".into(), "impression".into())));

    let app =
        spawn_app_with(|c| c.doors.imp.response = fraudgate::config::ImpResponse::NoContent).await;
    let r = app
        .http
        .get(app.url("/imp?offer_id=1&affiliate_id=2"))
        .header("user-agent", "curl/8")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        r.headers()["x-fraudgate-decision"],
        "block",
        "recorded, and the page still gets its answer"
    );
}

#[tokio::test]
async fn metrics_count_decisions_by_door() {
    let app = spawn_app_with(offers).await;
    app.http.get(app.url("/v1/auth")).send().await.unwrap();
    app.http
        .get(app.url("/imp?offer_id=1&affiliate_id=2"))
        .send()
        .await
        .unwrap();
    let m = app.metrics().await;
    assert_eq!(
        sample(&m, "fraudgate_decisions_total", &[("door", "auth")]),
        1.0
    );
    assert_eq!(
        sample(&m, "fraudgate_decisions_total", &[("door", "imp")]),
        1.0
    );
    assert_eq!(
        sample(&m, "fraudgate_decisions_total", &[("door", "check")]),
        0.0
    );
    assert_eq!(
        sample(
            &m,
            "fraudgate_http_requests_total",
            &[("route", "/v1/auth")]
        ),
        1.0
    );
}

#[test]
fn a_macro_in_an_offer_host_is_refused_by_check_config_naming_offer_and_macro() {
    let dir = temp_dir("hostmacro");
    let f = dir.join("fraudgate.toml");
    std::fs::write(
        &f,
        "[[offers]]\nid = \"77\"\nurl = \"https://{aff_sub1}/landing\"\n",
    )
    .unwrap();
    for cmd in ["check-config", "serve"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_fraudgate"))
            .args([cmd, "--config", f.to_str().unwrap()])
            .env("FRAUDGATE_SERVER__LISTEN", "127.0.0.1:0")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{cmd} must refuse it");
        let text = String::from_utf8_lossy(&out.stderr).to_string()
            + &String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("offers[0].url")
                && text.contains("\"77\"")
                && text.contains("{aff_sub1}"),
            "{cmd}: {text}"
        );
    }
}

/// A speculative load (prefetch, prerender, link preview) is nobody's click
/// or view: the `prefetch` rule blocks it locally, /click and /imp answer
/// 503 with no-store (the browser discards it; nothing is redirected ahead
/// of time), /v1/auth answers 403, and the person's real click that follows
/// is scored and redirected as usual.
#[tokio::test]
async fn speculative_loads_are_not_clicks_or_views() {
    let app = spawn_app_with(|c| {
        c.server.trusted_proxies = vec!["127.0.0.1/32".into()];
        c.offers = vec![OfferConfig {
            id: "34713".into(),
            url: "https://adv.example/l?c={click_id}".into(),
            fallback_url: Some("https://example.com/sorry".into()),
        }];
    })
    .await;
    let http = no_redirects();
    let click = app.url("/click?offer_id=34713&affiliate_id=6251");
    for (name, value) in [
        ("sec-purpose", "prefetch"),
        ("sec-purpose", "prefetch;prerender"),
        ("purpose", "prefetch"),
        ("x-moz", "prefetch"),
        ("x-purpose", "preview"),
    ] {
        let r = http
            .get(&click)
            .header("x-forwarded-for", "198.51.100.90")
            .header(name, value)
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::SERVICE_UNAVAILABLE,
            "{name}: {value}"
        );
        assert!(
            r.headers().get("location").is_none(),
            "no redirect ahead of time"
        );
        assert_eq!(r.headers()["cache-control"], "no-store");
        assert_eq!(r.headers()["x-fraudgate-decision"], "block");
    }
    assert_eq!(app.mock.calls_for("198.51.100.90"), 0, "decided locally");
    let r = http
        .get(app.url("/imp?offer_id=34713&affiliate_id=6251"))
        .header("x-forwarded-for", "198.51.100.91")
        .header("sec-purpose", "prefetch")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let r = http
        .get(app.url("/v1/auth"))
        .header("x-forwarded-for", "198.51.100.92")
        .header(
            "x-original-uri",
            "/landing?offer_id=34713&affiliate_id=6251",
        )
        .header("purpose", "prefetch")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // The person's own click afterwards.
    app.mock.on_ip("198.51.100.90", Reply::tags(""));
    let r = http
        .get(&click)
        .header("x-forwarded-for", "198.51.100.90")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    assert!(
        r.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("https://adv.example/l?c=")
    );

    // Recorded as the rule and the MRC's class, not as a person's click.
    let v = crate::decision_log::rows(
        &app,
        "/v1/data/all/groups?group=ivt_category&field=count,rule_prefetch&sort=ivt_category_asc",
        2,
    )
    .await;
    assert_eq!(
        v[1],
        serde_json::json!({"ivt_category": "prefetch", "count": 7, "rule_prefetch": 7}),
        "{v:?}"
    );
}

#[tokio::test]
async fn a_latin1_user_agent_is_a_browser_not_a_crawler_on_every_browser_door() {
    let app = spawn_app_with(|c| {
        c.server.trusted_proxies = vec!["127.0.0.1/32".into()];
        c.offers = vec![OfferConfig {
            id: "34713".into(),
            url: "https://adv.example/land".into(),
            fallback_url: Some("https://example.com/sorry".into()),
        }];
    })
    .await;
    app.mock.set_default(Reply::tags(""));
    let ascii = b"Mozilla/5.0 (Macintosh; U; Intel Mac OS X 10_6_8; de-de) AppleWebKit/534.57.2 (KHTML, like Gecko) Version/5.1 Safari/534.57 U".to_vec();
    let mut latin1 = ascii.clone();
    // The same UA with U as Latin-1 "Ü" (0xDC): not UTF-8, not ASCII.
    *latin1.last_mut().unwrap() = 0xDC;
    for ua in [ascii, latin1] {
        let ua = reqwest::header::HeaderValue::from_bytes(&ua).unwrap();
        let r = app
            .http
            .get(app.url("/v1/auth"))
            .header("x-forwarded-for", "192.0.2.44")
            .header("x-original-uri", "/land?offer_id=34713&affiliate_id=5")
            .header("user-agent", ua.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{ua:?}");
        let r = no_redirects()
            .get(app.url("/click?offer_id=34713&affiliate_id=5"))
            .header("x-forwarded-for", "192.0.2.45")
            .header("user-agent", ua.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.headers()["location"],
            "https://adv.example/land",
            "{ua:?}"
        );
    }
    // Recorded as sent, the byte that is not UTF-8 as U+FFFD.
    let v = eventually(std::time::Duration::from_secs(5), || async {
        let body = app.get("/v1/data/all?field=ua").await.text().await.unwrap();
        body.contains('\u{FFFD}').then_some(body)
    })
    .await;
    assert!(v.contains("Safari/534.57 \u{FFFD}"), "{v}");
}

/// What a response says, ids and timings aside (each decision has its
/// own), and its
/// Content-Length (hyper writes it from the body's exact size when the
/// response has none).
async fn said(r: axum::response::Response) -> (u16, Vec<(String, String)>, String) {
    let status = r.status().as_u16();
    let mut headers: Vec<(String, String)> = r
        .headers()
        .iter()
        .filter(|(k, _)| *k != "x-fraudgate-id" && *k != "content-length")
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("?").to_owned()))
        .collect();
    headers.sort();
    let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
    let mut body = String::from_utf8_lossy(&body).into_owned();
    if let Ok(mut v) = serde_json::from_str::<serde_json::Value>(&body) {
        if let Some(o) = v.as_object_mut() {
            o.remove("id");
            o.remove("elapsed_us");
        }
        body = v.to_string();
    }
    (status, headers, body)
}

#[tokio::test]
async fn the_hot_doors_answer_as_the_router_does() {
    use axum::http::{Method, Request};
    use tower::ServiceExt;
    let mock = MockRt::start().await;
    mock.on_ip("198.51.100.7", Reply::tags("datacenter\nproxy"));
    let mut config = test_config(&mock);
    config.auth.client_keys = [(
        "acme".to_owned(),
        fraudgate::config::Secret::new("acme-key"),
    )]
    .into_iter()
    .collect();
    let app = fraudgate::startup::Application::build(config)
        .await
        .unwrap();
    let state = app.state().clone();
    let service = fraudgate::http::service(state.clone());
    let router = fraudgate::http::router(state);
    let peer: std::net::SocketAddr = "203.0.113.50:40000".parse().unwrap();
    let clean = query("203.0.113.9", &[]);
    let flagged = query("198.51.100.7", &[]);
    let cases: Vec<(Method, String, Option<&str>, Option<&str>)> = vec![
        (Method::GET, "/healthz".into(), None, None),
        (
            Method::GET,
            format!("/v1/check?{clean}"),
            Some("acme-key"),
            None,
        ),
        (
            Method::GET,
            format!("/v1/check?{flagged}"),
            Some("acme-key"),
            None,
        ),
        (
            Method::GET,
            "/v1/check?ip=203.0.113.9".into(),
            Some("acme-key"),
            None,
        ),
        (Method::GET, format!("/v1/check?{clean}"), None, None),
        (
            Method::GET,
            format!("/v1/check?{clean}"),
            Some("wrong"),
            None,
        ),
        (
            Method::GET,
            format!("/?{}&key=acme-key", rt_query("198.51.100.7", &[])),
            None,
            None,
        ),
        (
            Method::GET,
            format!("/?{}", rt_query("203.0.113.9", &[])),
            Some("acme-key"),
            None,
        ),
        (Method::GET, "/?ip=1".into(), Some("acme-key"), None),
        (
            Method::GET,
            "/v1/auth?offer_id=2&affiliate_id=1".into(),
            Some("acme-key"),
            Some(UA),
        ),
        (
            Method::POST,
            "/v1/auth?offer_id=2".into(),
            Some("acme-key"),
            Some("curl/8.0"),
        ),
        (Method::GET, "/v1/auth".into(), None, Some(UA)),
    ];
    for (method, uri, key, ua) in cases {
        let request = || {
            let mut b = Request::builder().method(method.clone()).uri(uri.as_str());
            if let Some(k) = key {
                b = b.header("x-api-key", k);
            }
            if let Some(ua) = ua {
                b = b.header("user-agent", ua);
            }
            b.body(axum::body::Body::empty()).unwrap()
        };
        // Both answers from the cache: a first call fills it.
        let _ = service.call(request(), peer).await.unwrap();
        let hot = said(service.call(request(), peer).await.unwrap()).await;
        let mut routed = request();
        routed
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(peer));
        let routed = said(router.clone().oneshot(routed).await.unwrap()).await;
        assert_eq!(hot, routed, "{method} {uri} key={key:?} ua={ua:?}");
    }
}

#[tokio::test]
async fn both_threading_models_serve_every_door_and_shut_down() {
    for threading in [
        fraudgate::config::Threading::Shared,
        fraudgate::config::Threading::PerCore,
    ] {
        let mut app = spawn_app_with(|c| {
            c.server.threading = threading;
            c.server.worker_threads = 3;
        })
        .await;
        let (status, body) = app.check(&query("203.0.113.9", &[])).await;
        assert_eq!(status, 200, "{threading:?}: {body}");
        assert_eq!(body["decision"], "allow", "{threading:?}");
        let r = app
            .get(&format!("/?{}", rt_query("203.0.113.9", &[])))
            .await;
        assert_eq!(r.status(), StatusCode::OK, "{threading:?}");
        let r = app
            .http
            .get(app.url("/v1/auth?offer_id=2"))
            .header("user-agent", UA)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{threading:?}");
        app.shutdown();
        let stopped = app.stopped.take().unwrap();
        let ended = tokio::time::timeout(std::time::Duration::from_secs(20), stopped)
            .await
            .expect("shut down in time");
        assert!(ended.unwrap().is_ok(), "{threading:?}");
    }
}
