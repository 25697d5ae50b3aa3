use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::*;

fn bid_request(ip: &str) -> Value {
    json!({
        "id": "req-1",
        "imp": [{"id": "1", "banner": {"w": 300, "h": 250}}],
        "site": {"id": "site-42", "domain": "news.example", "page": "https://news.example/a", "publisher": {"id": "pub-7"}},
        "device": {
            "ip": ip, "ua": UA, "ifa": "6D92078A-8246-4BA4-AE5B-76104861E7DC",
            "os": "iOS", "osv": "17.1", "make": "Apple", "model": "iPhone", "language": "en",
            "geo": {"country": "USA"}
        },
        "tmax": 120
    })
}

async fn post(app: &TestApp, body: &Value) -> (u16, Value) {
    let r = app.post_json("/v1/openrtb", &body.to_string()).await;
    let s = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        s,
        if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap()
        },
    )
}

#[tokio::test]
async fn a_site_bid_request_maps_to_rt_fields() {
    let app = spawn_app().await;
    let (s, v) = post(&app, &bid_request("203.0.113.10")).await;
    assert_eq!(s, 200);
    assert_eq!(v["id"], "req-1");
    assert_eq!(v["decision"], "allow");
    let p = app.mock.last_params("203.0.113.10").unwrap();
    let get = |k: &str| p.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    assert_eq!(get("event_type").as_deref(), Some("impression"));
    assert_eq!(get("offer_id").as_deref(), Some("site-42"));
    assert_eq!(get("affiliate_id").as_deref(), Some("pub-7"));
    assert_eq!(get("refer").as_deref(), Some("https://news.example/a"));
    assert_eq!(
        get("idfa").as_deref(),
        Some("6D92078A-8246-4BA4-AE5B-76104861E7DC")
    );
    assert_eq!(get("android_id"), None);
    assert_eq!(get("device_os").as_deref(), Some("iOS"));
    assert_eq!(get("device_os_version").as_deref(), Some("17.1"));
    assert_eq!(get("device_brand").as_deref(), Some("Apple"));
    assert_eq!(get("device_model").as_deref(), Some("iPhone"));
    assert_eq!(get("device_locale").as_deref(), Some("en"));
    assert_eq!(get("country_code").as_deref(), Some("US"));
}

#[tokio::test]
async fn an_app_bid_request_with_ipv6_and_android() {
    let app = spawn_app().await;
    let req = json!({
        "id": "r2",
        "app": {"bundle": "com.example.game", "publisher": {"id": "dev-9"}},
        "device": {"ipv6": "2001:db8::77", "ua": UA, "ifa": "AID-1", "os": "Android", "geo": {"country": "DEU"}}
    });
    let (s, _) = post(&app, &req).await;
    assert_eq!(s, 200);
    let p = app.mock.last_params("2001:db8::77").unwrap();
    assert!(p.contains(&("offer_id".into(), "com.example.game".into())));
    assert!(p.contains(&("affiliate_id".into(), "dev-9".into())));
    assert!(p.contains(&("android_id".into(), "AID-1".into())));
    assert!(p.contains(&("country_code".into(), "DE".into())));
}

#[tokio::test]
async fn blocked_requests_carry_openrtb_no_bid_reasons() {
    let app = spawn_app().await;
    app.mock.on_ip("203.0.113.20", Reply::tags("datacenter"));
    app.mock.on_ip("203.0.113.21", Reply::tags("proxy"));
    app.mock.on_ip("203.0.113.22", Reply::tags("device"));
    for (ip, nbr) in [
        ("203.0.113.20", 5),
        ("203.0.113.21", 5),
        ("203.0.113.22", 4),
    ] {
        let (s, v) = post(&app, &bid_request(ip)).await;
        assert_eq!(s, 200);
        assert_eq!(
            (v["decision"].as_str(), v["nbr"].as_u64()),
            (Some("block"), Some(nbr)),
            "{ip}: {v}"
        );
        assert_eq!(v["id"], "req-1");
    }
    let mut crawler = bid_request("203.0.113.23");
    crawler["device"]["ua"] =
        json!("Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)");
    let (_, v) = post(&app, &crawler).await;
    assert_eq!(v["nbr"], 3);
}

#[tokio::test]
async fn bad_bid_requests_are_400s_naming_the_field() {
    let app = spawn_app().await;
    let mut no_ip = bid_request("1.1.1.1");
    no_ip["device"].as_object_mut().unwrap().remove("ip");
    let (s, v) = post(&app, &no_ip).await;
    assert_eq!((s, v["field"].as_str()), (400, Some("device.ip")));
    let (s, v) = post(&app, &bid_request("1.1.1")).await;
    assert_eq!((s, v["field"].as_str()), (400, Some("device.ip")));
    let mut no_id = bid_request("1.1.1.1");
    no_id.as_object_mut().unwrap().remove("id");
    let (s, v) = post(&app, &no_id).await;
    assert_eq!((s, v["field"].as_str()), (400, Some("id")));
    let (s, v) = post(&app, &json!([1])).await;
    assert_eq!((s, v["field"].as_str()), (400, Some("body")));
}

#[tokio::test]
async fn allow_can_be_204() {
    let app = spawn_app_with(|c| c.doors.openrtb.allow_status = 204).await;
    let (s, _) = post(&app, &bid_request("203.0.113.30")).await;
    assert_eq!(s, 204);
}

/// Upstream 100 ms, pre-bid budget 20 ms: the answer comes at once with
/// the fallback, RT is called once, and 200 ms later the key is a cache hit
/// with RT's tags.
#[tokio::test]
async fn the_prebid_deadline_answers_fast_and_fills_the_cache_late() {
    let app = spawn_app().await;
    app.mock.on_ip(
        "203.0.113.40",
        Reply::delayed(100, Reply::tags("datacenter")),
    );
    let started = Instant::now();
    let r = app
        .post_json("/v1/openrtb", &bid_request("203.0.113.40").to_string())
        .await;
    let took = started.elapsed();
    assert_eq!(r.headers()["x-fraudgate-source"], "fallback");
    assert_eq!(r.headers()["x-fraudgate-reason"], "deadline");
    assert_eq!(json(r).await["decision"], "allow");
    assert!(took < Duration::from_millis(90), "answered in {took:?}");
    // The late answer fills the cache: poll for it.
    let r = eventually(Duration::from_secs(5), || async {
        let r = app
            .post_json("/v1/openrtb", &bid_request("203.0.113.40").to_string())
            .await;
        (r.headers()["x-fraudgate-source"] == "cache").then_some(r)
    })
    .await;
    let v = json(r).await;
    assert_eq!(
        (v["decision"].as_str(), v["nbr"].as_u64()),
        (Some("block"), Some(5))
    );
    assert_eq!(app.mock.calls_for("203.0.113.40"), 1);
}

#[tokio::test]
async fn tmax_lowers_the_budget() {
    let app = spawn_app_with(|c| c.doors.openrtb.budget_ms = 500).await;
    app.mock
        .on_ip("203.0.113.41", Reply::delayed(150, Reply::tags("")));
    let mut req = bid_request("203.0.113.41");
    req["tmax"] = json!(40); // - 10 ms margin = 30 ms
    let started = Instant::now();
    let r = app.post_json("/v1/openrtb", &req.to_string()).await;
    assert_eq!(r.headers()["x-fraudgate-reason"], "deadline");
    assert!(started.elapsed() < Duration::from_millis(120));
}
