//! IP intelligence that works out of the box: the shipped datacenter,
//! proxy (Tor, VPN exits) and verified-bot ranges (src/rules/ranges/, from
//! iporigin's dataset), and the policy that lets verified search engines
//! through while still recording them as crawlers.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::*;

const GOOGLEBOT_UA: &str =
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
const GPTBOT_UA: &str = "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; +https://openai.com/gptbot)";

/// (rule kind, rule name) of each rule that fired.
fn rules(v: &Value) -> Vec<(String, String)> {
    v["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["kind"].as_str().unwrap().to_owned(),
                r["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn pair(kind: &str, name: &str) -> (String, String) {
    (kind.to_owned(), name.to_owned())
}

#[tokio::test]
async fn the_default_config_blocks_cloud_ranges_and_tor_exits_without_rt() {
    let app = spawn_app().await;
    for (ip, tag, rule) in [
        ("1.178.1.7", "datacenter", pair("datacenter", "Amazon AWS")),
        (
            "1.178.9.200",
            "datacenter",
            pair("datacenter", "Amazon AWS"),
        ),
        ("2.26.97.42", "proxy", pair("proxy", "Tor")),
        ("23.144.160.67", "proxy", pair("proxy", "Mullvad")),
    ] {
        let (status, v) = app.check_ip(ip).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(
            (v["decision"].as_str(), v["source"].as_str()),
            (Some("block"), Some("local")),
            "{ip}: {v}"
        );
        assert_eq!(v["tags"], json!([tag]), "{ip}");
        assert_eq!(rules(&v), [rule], "{ip}");
    }
    assert_eq!(app.mock.calls(), 0, "decided locally");
    // Residential-looking and documentation addresses are asked about.
    let (_, v) = app.check_ip("203.0.113.9").await;
    assert_eq!(v["source"], "upstream", "{v}");
    assert_eq!(app.mock.calls(), 1);
}

#[tokio::test]
async fn a_verified_search_engine_is_allowed_but_recorded_as_a_crawler() {
    let app = spawn_app().await;
    let (_, v) = app.check(&query_ua("66.249.66.1", GOOGLEBOT_UA)).await;
    assert_eq!(
        (
            v["decision"].as_str(),
            v["reason"].as_str(),
            v["source"].as_str()
        ),
        (Some("allow"), Some("verified_bot"), Some("local")),
        "{v}"
    );
    assert_eq!(v["tags"], json!(["crawler"]));
    let fired = rules(&v);
    assert_eq!(fired[0], pair("verified_bot", "Googlebot"), "{v}");
    assert!(fired.contains(&pair("crawler_ua", "builtin")), "{v}");
    assert_eq!(app.mock.calls(), 0);

    // The same UA from elsewhere is an impostor: an ordinary crawler.
    let (_, v) = app.check(&query_ua("203.0.113.50", GOOGLEBOT_UA)).await;
    assert_eq!(
        (v["decision"].as_str(), v["reason"].as_str()),
        (Some("block"), Some("tags"))
    );
    assert_eq!(rules(&v), [pair("crawler_ua", "builtin")]);

    // A verified bot the policy does not list is a crawler like any other.
    let (_, v) = app.check(&query_ua("4.151.71.180", GPTBOT_UA)).await;
    assert_eq!(v["decision"], "block", "{v}");
    assert_eq!(rules(&v)[0], pair("verified_bot", "GPTBot"));

    // The record says GIVT, verified crawler: allowed, never billable.
    let (_, allowed) = app.check(&query_ua("66.249.66.2", GOOGLEBOT_UA)).await;
    let id = allowed["id"].as_str().unwrap().to_owned();
    let e: Value = eventually(Duration::from_secs(3), || async {
        let r = app.get(&format!("/v1/reports/entry/{id}")).await;
        (r.status() == 200).then_some(json(r).await)
    })
    .await;
    assert_eq!(
        (
            e["decision"].as_str(),
            e["reason"].as_str(),
            e["ivt"].as_str(),
            e["ivt_category"].as_str()
        ),
        (
            Some("allow"),
            Some("verified_bot"),
            Some("givt"),
            Some("verified_crawler")
        ),
        "{e}"
    );
}

#[tokio::test]
async fn the_policy_chooses_which_verified_bots_pass() {
    let none = spawn_app_with(|c| c.policy.allow_verified_bots = vec![]).await;
    let (_, v) = none.check(&query_ua("66.249.66.1", GOOGLEBOT_UA)).await;
    assert_eq!(v["decision"], "block", "{v}");
    assert_eq!(rules(&v)[0], pair("verified_bot", "Googlebot"));

    let all = spawn_app_with(|c| c.policy.allow_verified_bots = vec!["*".into()]).await;
    let (_, v) = all.check(&query_ua("4.151.71.180", GPTBOT_UA)).await;
    assert_eq!(
        (v["decision"].as_str(), v["reason"].as_str()),
        (Some("allow"), Some("verified_bot")),
        "{v}"
    );
}

#[tokio::test]
async fn builtin_ranges_can_be_turned_off_and_files_add_to_them() {
    let dir = temp_dir("intel");
    let f = dir.join("mine.txt");
    write_file(
        &f,
        "# ranges with spaces in their labels, and first-last spans\n\
         198.51.100.10-198.51.100.19 Example Hosting Ltd\n\
         1.178.1.0/24 Our Own Label\n",
    );
    let app = spawn_app_with(|c| {
        c.rules.proxy.builtin = false;
        c.rules.datacenter.files = vec![f.display().to_string()];
    })
    .await;
    let (_, v) = app.check_ip("2.26.97.42").await;
    assert_eq!(v["source"], "upstream", "built-in Tor list off: {v}");
    let (_, v) = app.check_ip("198.51.100.15").await;
    assert_eq!(rules(&v), [pair("datacenter", "Example Hosting Ltd")]);
    let (_, v) = app.check_ip("198.51.100.20").await;
    assert_eq!(v["source"], "upstream", "past the span's end: {v}");
    // On an equal range the operator's file wins over the shipped label.
    let (_, v) = app.check_ip("1.178.1.7").await;
    assert_eq!(rules(&v), [pair("datacenter", "Our Own Label")]);
    let m = app.metrics().await;
    assert_eq!(sample(&m, "fraudgate_proxy_prefixes", &[]), 0.0);
    assert!(sample(&m, "fraudgate_datacenter_prefixes", &[]) > 10_000.0);
    assert!(sample(&m, "fraudgate_verified_bot_prefixes", &[]) > 1_000.0);
}
