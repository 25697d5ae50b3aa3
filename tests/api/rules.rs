//! Local detection end to end: each rule, precedence, merging with RT.

use std::time::Duration;

use fraudgate::policy::Action;
use fraudgate::rules::limits::{CapConfig, CapEvents, CapField};
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn a_crawler_ua_is_blocked_locally_without_an_upstream_call() {
    let app = spawn_app().await;
    let (_, v) = app
        .check(&query_ua("10.20.0.1", "python-requests/2.31.0"))
        .await;
    assert_eq!(v["decision"], "block");
    assert_eq!(v["source"], "local");
    assert_eq!(v["tags"], json!(["crawler"]));
    assert_eq!(v["rules"][0]["kind"], "crawler_ua");
    let reason = v["rules"][0]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("user agent looks like a bot: \"python-requests")
            && reason.contains("(crawler pattern "),
        "the words that matched, not the regex: {reason}"
    );
    assert_eq!(app.mock.calls(), 0);
    let (_, v) = app.check(&query_ua("10.20.0.1", "")).await;
    assert_eq!(
        (v["decision"].as_str(), v["source"].as_str()),
        (Some("block"), Some("local")),
        "empty UA"
    );
}

#[tokio::test]
async fn without_an_rt_key_local_rules_still_decide() {
    let app = spawn_app_with(|c| c.upstream.key = Default::default()).await;
    let (_, v) = app
        .check(&query_ua(
            "10.20.0.2",
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        ))
        .await;
    assert_eq!(
        (v["decision"].as_str(), v["source"].as_str()),
        (Some("block"), Some("local"))
    );
    let (_, v) = app.check_ip("10.20.0.2").await;
    assert_eq!(
        (v["decision"].as_str(), v["source"].as_str()),
        (Some("allow"), Some("fallback"))
    );
}

#[tokio::test]
async fn datacenter_ranges_tag_v4_and_v6_with_their_label() {
    let dir = temp_dir("dc");
    let f = dir.join("cloud.txt");
    write_file(
        &f,
        "# public cloud ranges\n203.0.113.0/24 examplecloud\n2001:db8:1000::/36 examplecloud6\nnot-a-cidr\n",
    );
    let app = spawn_app_with(|c| c.rules.datacenter.files = vec![f.display().to_string()]).await;
    let (_, v) = app.check_ip("203.0.113.77").await;
    assert_eq!(
        (v["source"].as_str(), v["decision"].as_str()),
        (Some("local"), Some("block"))
    );
    assert_eq!(v["rules"][0]["kind"], "datacenter");
    assert_eq!(v["rules"][0]["name"], "examplecloud");
    let (_, v) = app.check_ip("2001:db8:1fff::1").await;
    assert_eq!(v["rules"][0]["name"], "examplecloud6");
    let (_, v) = app.check_ip("2001:db8:2000::1").await;
    assert_eq!(v["source"], "upstream");
}

#[tokio::test]
async fn the_allow_list_wins_over_rules_and_over_rt() {
    let dir = temp_dir("allow");
    let allow = dir.join("allow.txt");
    write_file(
        &allow,
        "ip 10.20.1.0/24 reason=partner QA lab\nua MonitoringPartner\n",
    );
    let app = spawn_app_with(|c| c.rules.lists[1].file = allow.display().to_string()).await;
    app.mock
        .on_ip("10.20.1.5", Reply::tags("datacenter\nproxy"));
    let (_, v) = app.check_ip("10.20.1.5").await;
    assert_eq!(v["decision"], "allow");
    assert_eq!(v["source"], "local");
    assert_eq!(v["reason"], "allow_list");
    assert_eq!(v["rules"][0]["name"], "allowlist");
    assert_eq!(v["rules"][0]["reason"], "partner QA lab");
    assert_eq!(app.mock.calls(), 0, "RT is not asked");
    // Beats the crawler rule too.
    let (_, v) = app
        .check(&query_ua("10.20.2.1", "curl/8 MonitoringPartner"))
        .await;
    assert_eq!(v["decision"], "allow");
}

#[tokio::test]
async fn block_list_file_entries_of_every_kind_block() {
    let dir = temp_dir("block");
    let f = dir.join("block.txt");
    write_file(
        &f,
        "198.51.100.0/24\naffiliate 666 reason=fraud ring\noffer 999\ndevice DEAD-BEEF\naffiliate_sub 6251/spammy\nua EvilToolbar\n",
    );
    let app = spawn_app_with(|c| c.rules.lists[0].file = f.display().to_string()).await;
    for q in [
        query("198.51.100.9", &[]),
        query("10.21.0.1", &[]).replace("affiliate_id=6251", "affiliate_id=666"),
        query("10.21.0.2", &[]).replace("offer_id=34713", "offer_id=999"),
        query("10.21.0.3", &[("idfa", "DEAD-BEEF")]),
        query("10.21.0.4", &[("aff_sub1", "spammy")]),
        query_ua("10.21.0.5", "Mozilla/5.0 (Windows NT 10.0) EvilToolbar/2"),
    ] {
        let (_, v) = app.check(&q).await;
        assert_eq!(v["decision"], "block", "{q}: {v}");
        assert_eq!(v["tags"], json!(["blacklist"]));
        assert_eq!(v["rules"][0]["kind"], "block_list");
    }
    let (_, v) = app
        .check(&query("10.21.0.6", &[("aff_sub1", "fine")]))
        .await;
    assert_eq!(v["decision"], "allow");
}

#[tokio::test]
async fn caps_tag_events_over_the_limit() {
    let app = spawn_app_with(|c| {
        c.rules.caps = vec![CapConfig {
            name: "aff-offer".into(),
            by: vec![CapField::AffiliateId, CapField::OfferId],
            limit: 2,
            window_s: 3600,
            events: CapEvents::Click,
        }]
    })
    .await;
    for i in 0..2 {
        let (_, v) = app.check_ip(&format!("10.22.0.{i}")).await;
        assert_eq!(v["decision"], "allow");
    }
    let (_, v) = app.check_ip("10.22.0.9").await;
    assert_eq!(v["decision"], "block");
    assert_eq!(v["tags"], json!(["cap"]));
    assert_eq!(v["rules"][0]["name"], "aff-offer");
    let (_, v) = app
        .check(&query("10.22.0.10", &[]).replace("offer_id=34713", "offer_id=1"))
        .await;
    assert_eq!(v["decision"], "allow", "another offer has its own counter");
}

#[tokio::test]
async fn ip_velocity_adds_the_ip_tag_to_rt_tags() {
    let app = spawn_app_with(|c| {
        c.rules.velocity.per_ip = 3;
        c.policy.tags.insert("ip".into(), Action::Allow);
    })
    .await;
    app.mock.on_ip("10.23.0.1", Reply::tags("os"));
    for _ in 0..3 {
        let (_, v) = app.check_ip("10.23.0.1").await;
        assert_eq!(v["tags"], json!(["os"]));
    }
    let (_, v) = app.check_ip("10.23.0.1").await;
    assert_eq!(v["tags"], json!(["ip", "os"]), "{v}");
    assert_eq!(v["source"], "cache");
    assert_eq!(v["rules"][0]["kind"], "velocity");
}

#[tokio::test]
async fn ask_upstream_on_block_merges_local_and_rt_tags() {
    let app = spawn_app_with(|c| c.rules.ask_upstream_on_block = true).await;
    app.mock.on_ip("10.24.0.1", Reply::tags("proxy"));
    let (_, v) = app.check(&query_ua("10.24.0.1", "curl/8.0")).await;
    assert_eq!(v["tags"], json!(["proxy", "crawler"]));
    assert_eq!(v["source"], "upstream");
    assert_eq!(app.mock.calls(), 1);
}

#[tokio::test]
async fn a_changed_list_file_is_reloaded_with_no_failed_request_meanwhile() {
    let dir = temp_dir("reload");
    let f = dir.join("block.txt");
    write_file(&f, "# empty for now\n");
    let app = spawn_app_with(|c| {
        c.rules.lists[0].file = f.display().to_string();
        c.rules.reload_interval_s = 1;
    })
    .await;
    // Concurrent load for the whole reload.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for w in 0..4 {
        let (http, base, stop) = (app.http.clone(), app.base.clone(), stop.clone());
        load.push(tokio::spawn(async move {
            let mut n = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let q = query(&format!("10.25.{w}.{}", n % 250), &[]);
                let r = http
                    .get(format!("{base}/v1/check?{q}"))
                    .send()
                    .await
                    .expect("no failed request");
                assert_eq!(r.status(), 200);
                n += 1;
            }
            n
        }));
    }
    let (_, v) = app.check_ip("10.25.9.9").await;
    assert_eq!(v["decision"], "allow");
    write_file(&f, "# now blocking\n10.25.9.0/24 reason=reloaded\n");
    eventually(Duration::from_secs(10), || async {
        let (_, v) = app.check_ip("10.25.9.9").await;
        (v["decision"] == "block").then_some(())
    })
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let total: u32 = futures_util::future::join_all(load)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .sum();
    assert!(total > 0);
    let m = app.metrics().await;
    assert!(
        sample(
            &m,
            "fraudgate_rule_reloads_total",
            &[("source", "list"), ("outcome", "ok")]
        ) >= 2.0
    );
}

#[tokio::test]
async fn a_broken_file_keeps_the_previous_list_and_bad_lines_skip_alone() {
    let dir = temp_dir("broken");
    let f = dir.join("block.txt");
    write_file(&f, "10.26.0.0/24\nthis is not an entry\noffer 4242\n");
    let app = spawn_app_with(|c| {
        c.rules.lists[0].file = f.display().to_string();
        c.rules.reload_interval_s = 1;
    })
    .await;
    let (_, v) = app.check_ip("10.26.0.1").await;
    assert_eq!(v["decision"], "block", "good lines around a bad one load");
    let (_, v) = app
        .check(&query("10.26.1.1", &[]).replace("offer_id=34713", "offer_id=4242"))
        .await;
    assert_eq!(v["decision"], "block");

    // Truncated to nothing (a half-done write): keep the old entries.
    // The reloader must have seen it (one kept-as-error reload), not merely
    // have had time to.
    let reload_errors = || async {
        let m = app.metrics().await;
        sample(&m, "fraudgate_rule_reloads_total", &[("outcome", "error")])
    };
    write_file(&f, "");
    eventually(Duration::from_secs(10), || async {
        (reload_errors().await == 1.0).then_some(())
    })
    .await;
    let (_, v) = app.check_ip("10.26.0.2").await;
    assert_eq!(v["decision"], "block", "empty file keeps the previous list");

    // Gone entirely: keep the old entries.
    std::fs::remove_file(&f).unwrap();
    eventually(Duration::from_secs(10), || async {
        (reload_errors().await == 2.0).then_some(())
    })
    .await;
    let (_, v) = app.check_ip("10.26.0.3").await;
    assert_eq!(
        v["decision"], "block",
        "unreadable file keeps the previous list"
    );
    assert_eq!(reload_errors().await, 2.0);

    // Back with new content: loads.
    write_file(&f, "# cleared on purpose\n");
    eventually(Duration::from_secs(10), || async {
        let (_, v) = app.check_ip("10.26.0.4").await;
        (v["decision"] == "allow").then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_missing_configured_file_stops_startup_naming_the_key() {
    let mut c = fraudgate::Config::default();
    c.server.listen = "127.0.0.1:0".parse().unwrap();
    c.rules.datacenter.files = vec!["/nonexistent/ranges.txt".into()];
    let err = fraudgate::Application::build(c)
        .await
        .err()
        .expect("fails")
        .to_string();
    assert!(
        err.contains("rules.datacenter.files[0]") && err.contains("/nonexistent/ranges.txt"),
        "{err}"
    );
}

#[tokio::test]
async fn an_extra_patterns_file_adds_crawler_patterns_and_skips_bad_lines() {
    let dir = temp_dir("patterns");
    let f = dir.join("extra.txt");
    write_file(&f, "# our own monitors\nacme-uptime-probe\nbroken(\n");
    let app =
        spawn_app_with(|c| c.rules.crawler.extra_patterns_file = f.display().to_string()).await;
    let (_, v) = app
        .check(&query_ua(
            "10.27.0.1",
            "Mozilla/5.0 (X11; Linux x86_64) ACME-Uptime-Probe/3",
        ))
        .await;
    assert_eq!(v["decision"], "block");
    let reason = v["rules"][0]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("user agent looks like a bot: \"ACME-Uptime-Probe\""),
        "{reason}"
    );
    let (_, v) = app.check_ip("10.27.0.2").await;
    assert_eq!(
        v["decision"], "allow",
        "built-in patterns still leave browsers alone"
    );
    let m = app.metrics().await;
    assert!(sample(&m, "fraudgate_crawler_patterns", &[]) > 200.0);
}
