use crate::helpers::*;

#[tokio::test]
async fn tags_become_decisions_through_the_default_policy() {
    let app = spawn_app().await;
    for (ip, body, decision) in [
        ("10.0.0.1", "", "allow"),
        ("10.0.0.2", "datacenter", "block"),
        ("10.0.0.3", "proxy\nip", "block"),
        ("10.0.0.4", "ip\nos", "allow"),
        ("10.0.0.5", "crawler", "block"),
        ("10.0.0.6", "brand-new-tag", "allow"),
    ] {
        app.mock.on_ip(ip, Reply::tags(body));
        let (status, v) = app.check_ip(ip).await;
        assert_eq!(status, 200);
        assert_eq!(v["decision"], decision, "{ip} {body:?}: {v}");
        assert_eq!(v["source"], "upstream");
        assert_eq!(v["mode"], "enforce");
        assert_eq!(v["id"].as_str().unwrap().len(), 36, "a hyphenated UUID");
    }
    let (_, v) = app.check_ip("10.0.0.3").await;
    assert_eq!(v["tags"], serde_json::json!(["proxy", "ip"]));
    assert_eq!(v["blocked_by"], serde_json::json!(["proxy"]));
    assert_eq!(v["reason"], "tags");
}

#[tokio::test]
async fn post_json_gives_the_same_decision_as_get() {
    let app = spawn_app().await;
    app.mock.on_ip("2001:db8::7", Reply::tags("blacklist"));
    let body = serde_json::json!({
        "event_type": "impression", "ip": "2001:db8::7", "ua": UA,
        "affiliate_id": 6251, "offer_id": "34713", "at": 1544054769
    });
    let r = app.post_json("/v1/check", &body.to_string()).await;
    assert_eq!(r.status(), 200);
    let v = json(r).await;
    assert_eq!(v["decision"], "block");
    assert_eq!(v["tags"], serde_json::json!(["blacklist"]));
    let params = app.mock.last_params("2001:db8::7").unwrap();
    assert!(params.contains(&("event_type".into(), "impression".into())));
    assert!(params.contains(&("at".into(), "1544054769".into())));
}

#[tokio::test]
async fn crlf_bodies_and_dynamic_blacklist_are_parsed() {
    let app = spawn_app().await;
    app.mock.on_ip(
        "10.1.0.1",
        Reply::tags("Dynamic Blacklist\r\nproxy\r\n\r\n"),
    );
    let (_, v) = app.check_ip("10.1.0.1").await;
    assert_eq!(v["tags"], serde_json::json!(["proxy", "dynamic blacklist"]));
}

#[tokio::test]
async fn all_mandatory_and_given_optional_params_are_forwarded_and_truncated() {
    let app = spawn_app().await;
    let long_refer = format!("http://e1.ru/{}", "x".repeat(2000));
    let long_sub = "ü".repeat(400);
    let q = query(
        "10.2.0.1",
        &[
            ("refer", &long_refer),
            ("country_code", "USA"),
            ("aff_sub1", &long_sub),
            ("advertiser_id", "835"),
            ("idfa", "6D92078A-8246-4BA4-AE5B-76104861E7DC"),
            ("source", "MyTarget"),
            ("at", "1544054769"),
        ],
    );
    let (status, _) = app.check(&q).await;
    assert_eq!(status, 200);
    let p = app.mock.last_params("10.2.0.1").unwrap();
    let get = |k: &str| p.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    assert_eq!(get("key").as_deref(), Some(UPSTREAM_KEY));
    assert_eq!(get("event_type").as_deref(), Some("click"));
    assert_eq!(get("ua").as_deref(), Some(UA));
    assert_eq!(get("affiliate_id").as_deref(), Some("6251"));
    assert_eq!(get("offer_id").as_deref(), Some("34713"));
    assert_eq!(get("at").as_deref(), Some("1544054769"));
    assert_eq!(get("refer").unwrap().chars().count(), 1024);
    assert_eq!(get("country_code").as_deref(), Some("US"));
    assert_eq!(get("aff_sub1").unwrap().chars().count(), 255);
    assert_eq!(get("advertiser_id").as_deref(), Some("835"));
    assert_eq!(get("source").as_deref(), Some("MyTarget"));
    assert!(get("aff_sub2").is_none(), "absent params are not invented");
}

#[tokio::test]
async fn at_defaults_to_now() {
    let app = spawn_app().await;
    app.check_ip("10.2.0.2").await;
    let p = app.mock.last_params("10.2.0.2").unwrap();
    let at: u64 = p
        .iter()
        .find(|(k, _)| k == "at")
        .unwrap()
        .1
        .parse()
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(now.abs_diff(at) < 60, "at={at} now={now}");
}

#[tokio::test]
async fn shadow_mode_answers_allow_and_reports_the_would_be_decision() {
    let app = spawn_app_with(|c| c.policy.mode = fraudgate::policy::Mode::Shadow).await;
    app.mock.on_ip("10.3.0.1", Reply::tags("datacenter"));
    let (_, v) = app.check_ip("10.3.0.1").await;
    assert_eq!(v["decision"], "allow");
    assert_eq!(v["would_be"], "block");
    assert_eq!(v["mode"], "shadow");
    let m = app.metrics().await;
    assert!(
        sample(
            &m,
            "fraudgate_decisions_total",
            &[("decision", "block"), ("mode", "shadow")]
        ) >= 1.0
    );
}

#[tokio::test]
async fn per_offer_override_changes_the_decision() {
    let app = spawn_app_with(|c| {
        let mut t = std::collections::BTreeMap::new();
        t.insert("datacenter".to_string(), fraudgate::policy::Action::Allow);
        c.policy.offers.insert("777".into(), t);
    })
    .await;
    app.mock.on_ip("10.3.0.2", Reply::tags("datacenter"));
    let (_, v) = app
        .check(&query("10.3.0.2", &[]).replace("offer_id=34713", "offer_id=777"))
        .await;
    assert_eq!(v["decision"], "allow");
    let (_, v) = app
        .check(&query("10.3.0.2", &[]).replace("offer_id=34713", "offer_id=778"))
        .await;
    assert_eq!(v["decision"], "block");
}

#[tokio::test]
async fn without_an_upstream_key_decisions_come_from_the_fallback_policy() {
    let app = spawn_app_with(|c| c.upstream.key = Default::default()).await;
    let (status, v) = app.check_ip("10.4.0.1").await;
    assert_eq!(status, 200);
    assert_eq!(v["source"], "fallback");
    assert_eq!(v["reason"], "upstream_disabled");
    assert_eq!(v["decision"], "allow");
    assert_eq!(app.mock.calls(), 0);
    let r = json(app.get("/readyz").await).await;
    assert_eq!(r["upstream"], "disabled");
}
