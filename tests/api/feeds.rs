//! Feeds against in-process mocks of Protect360, Fraudshield and the
//! FraudScore Data API: the real app (and the real binary for the CLI)
//! pulls, then blocks the fed IP, device and affiliate+sub on /v1/check
//! and /click with the feed named as the reason.

use std::time::Duration;

use fraudgate::config::{Config, OfferConfig, Secret};
use fraudgate::feeds::config::{FeedConfig, FraudshieldReport};
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;
use crate::mock_feeds::*;

pub(crate) fn today_minus(days: i64) -> String {
    jiff::Zoned::now()
        .with_time_zone(jiff::tz::TimeZone::UTC)
        .date()
        .checked_sub(jiff::Span::new().days(days))
        .unwrap()
        .to_string()
}

/// A feed table as TOML would give it, for `kind`, against `mock`.
/// A feed on the mock. No request budget unless `extra` sets one: the
/// tests time their runs against the mock's faults.
pub(crate) fn feed(name: &str, kind: &str, mock: &MockFeeds, extra: &str) -> FeedConfig {
    let dir = temp_dir("feed");
    let budget = if extra.contains("calls_per_minute") {
        ""
    } else {
        "calls_per_minute = 0\n"
    };
    let text = format!(
        "name = {name:?}\nkind = {kind:?}\nbase_url = {:?}\nstate_file = {:?}\n{budget}{extra}",
        mock.url(),
        dir.join(format!("{name}.json")).display().to_string()
    );
    toml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

pub(crate) fn p360(mock: &MockFeeds, extra: &str) -> FeedConfig {
    feed(
        "p360",
        "protect360",
        mock,
        &format!("token = {P360_TOKEN:?}\napp_ids = [\"id1234567\"]\n{extra}"),
    )
}

pub(crate) fn with_feeds(c: &mut Config, feeds: Vec<FeedConfig>) {
    c.feeds = feeds;
    c.auth.admin_keys = fraudgate::config::SecretList(vec![Secret::new(ADMIN_KEY)]);
    // /click sees the client through a trusted proxy.
    c.server.trusted_proxies = vec!["127.0.0.1/32".into()];
    c.offers = vec![OfferConfig {
        id: "34713".into(),
        url: "https://adv.example/land?clickid={click_id}".into(),
        fallback_url: Some("https://example.com/sorry".into()),
    }];
}

fn p360_rows(mock: &MockFeeds) {
    mock.with(|s| {
        s.p360 = vec![
            P360Row {
                date: today_minus(1),
                ip: "203.0.113.9".into(),
                idfa: "6D92078A-8246-4BA4-AE5B-76104861E7DC".into(),
                site: "site7".into(),
                reason: "Click Flood".into(),
            },
            P360Row {
                date: today_minus(2),
                ip: "198.51.100.23".into(),
                idfa: "00000000-0000-0000-0000-000000000000".into(),
                site: "site8".into(),
                reason: "Bots".into(),
            },
        ]
    });
}

/// Starts a run through the admin API and waits for it to end. A fresh
/// feed's first scheduled pull (at startup) may be running: then this
/// waits for it and starts one of its own.
pub(crate) async fn run_feed(app: &TestApp, name: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let before = feed_status(app, name).await["runs"].as_u64().unwrap();
        let (s, v) = app
            .admin(Method::POST, &format!("/v1/admin/feeds/{name}/run"), None)
            .await;
        if s == 409 {
            assert!(std::time::Instant::now() < deadline, "{name} stays busy");
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        assert_eq!(s, 202, "{v}");
        return eventually(Duration::from_secs(20), || async {
            let st = feed_status(app, name).await;
            (st["running"] == false && st["runs"].as_u64().unwrap() > before).then_some(st)
        })
        .await;
    }
}

/// A fresh feed is pulled once at startup: waits for that pull to end.
pub(crate) async fn first_run(app: &TestApp, name: &str) -> Value {
    eventually(Duration::from_secs(20), || async {
        let st = feed_status(app, name).await;
        (st["running"] == false && st["runs"].as_u64().unwrap() >= 1).then_some(st)
    })
    .await
}

pub(crate) async fn feed_status(app: &TestApp, name: &str) -> Value {
    let (s, v) = app.admin(Method::GET, "/v1/admin/feeds", None).await;
    assert_eq!(s, 200);
    v["feeds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no feed {name} in {v}"))
}

async fn click_from(app: &TestApp, ip: &str, extra: &str) -> reqwest::Response {
    no_redirects()
        .get(app.url(&format!("/click?offer_id=34713&affiliate_id=6251{extra}")))
        .header("user-agent", UA)
        .header("x-forwarded-for", ip)
        .send()
        .await
        .unwrap()
}

pub(crate) fn block_rule(v: &Value) -> Value {
    v["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["kind"] == "block_list")
        .cloned()
        .unwrap_or(Value::Null)
}

#[tokio::test]
async fn protect360_entries_block_the_fed_ip_and_device_on_check_and_click() {
    let mock = MockFeeds::start().await;
    p360_rows(&mock);
    let cfg = p360(&mock, "");
    let state_file = cfg.state_path();
    let app = spawn_app_with(|c| with_feeds(c, vec![cfg])).await;
    app.mock.set_default(Reply::tags(""));

    let st = first_run(&app, "p360").await;
    assert_eq!(st["last_error"], Value::Null, "{st}");
    assert_eq!(st["consecutive_failures"], 0);
    // 2 IPs + 1 device (the all-zero advertising id is nobody's device).
    assert_eq!(st["entries"], 3, "{st}");
    assert_eq!(st["last_rows"], 2);

    let (_, v) = app.check_ip("203.0.113.9").await;
    assert_eq!(v["decision"], "block", "{v}");
    assert_eq!(
        block_rule(&v),
        json!({"kind": "block_list", "name": "p360", "tag": "blacklist", "reason": "protect360:blocked_clicks_report:click_flood"})
    );
    let (_, v) = app
        .check(&query(
            "192.0.2.200",
            &[("idfa", "6D92078A-8246-4BA4-AE5B-76104861E7DC")],
        ))
        .await;
    assert_eq!(v["decision"], "block", "the fed device: {v}");
    assert_eq!(block_rule(&v)["name"], "p360");
    let (_, v) = app.check_ip("192.0.2.201").await;
    assert_eq!(v["decision"], "allow", "others pass: {v}");
    let (_, v) = app
        .check(&query(
            "192.0.2.202",
            &[("idfa", "00000000-0000-0000-0000-000000000000")],
        ))
        .await;
    assert_eq!(v["decision"], "allow", "the zero id is not blocked: {v}");

    // /click from the fed IP goes to the fallback, others to the offer.
    let r = click_from(&app, "198.51.100.23", "").await;
    assert_eq!(r.headers()["location"], "https://example.com/sorry");
    let r = click_from(
        &app,
        "192.0.2.9",
        "&idfa=6D92078A-8246-4BA4-AE5B-76104861E7DC",
    )
    .await;
    assert_eq!(r.headers()["location"], "https://example.com/sorry");
    let r = click_from(&app, "192.0.2.9", "").await;
    assert!(
        r.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("https://adv.example/land"),
        "a clean click goes to the offer"
    );

    // The request as the document has it.
    let reqs = mock.requests();
    let (path, q) = &reqs[0];
    assert_eq!(
        path,
        "/api/adnets-data/v1/export/blocked_clicks_report/app/id1234567"
    );
    let q = query_of(q);
    assert_eq!(q["to"], vec![today_minus(0)]);
    assert_eq!(
        q["from"],
        vec![today_minus(7)],
        "the default window: 7 days"
    );
    assert!(q["additional_fields"][0].contains("blocked_reason"));

    // The list is visible in the admin API, and refuses hand edits.
    let (_, v) = app
        .admin(Method::GET, "/v1/admin/lists/p360/entries", None)
        .await;
    assert_eq!(v["entries"].as_array().unwrap().len(), 3);
    assert!(
        v["entries"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["source"] == "feed")
    );
    let (s, v) = app
        .admin(
            Method::POST,
            "/v1/admin/lists/p360/entries",
            Some(json!([{"kind": "ip", "value": "10.9.9.9"}])),
        )
        .await;
    assert_eq!((s, v["error"].as_str()), (409, Some("feed_list")), "{v}");

    // Metrics per feed.
    let m = app.metrics().await;
    let f = [("feed", "p360")];
    assert_eq!(sample(&m, "fraudgate_feed_rows_total", &f), 2.0);
    assert_eq!(sample(&m, "fraudgate_feed_entries_added_total", &f), 3.0);
    assert_eq!(sample(&m, "fraudgate_feed_entries", &f), 3.0);
    assert_eq!(sample(&m, "fraudgate_feed_consecutive_failures", &f), 0.0);
    assert_eq!(sample(&m, "fraudgate_feed_interval_seconds", &f), 3600.0);
    assert!(sample(&m, "fraudgate_feed_last_success_timestamp_seconds", &f) > 1.7e9);
    assert_eq!(
        sample(
            &m,
            "fraudgate_feed_runs_total",
            &[("feed", "p360"), ("outcome", "ok")]
        ),
        1.0
    );

    // Persisted: a restart blocks at once, before any pull.
    assert!(state_file.exists());
    let saved: Value = serde_json::from_slice(&std::fs::read(&state_file).unwrap()).unwrap();
    assert_eq!(saved["entries"].as_array().unwrap().len(), 3);
    assert!(saved["cursor"].as_u64().is_some());
    mock.set_fault(Fault::Status(503));
    let cfg = p360(&mock, "");
    let cfg = FeedConfig {
        state_file: state_file.display().to_string(),
        ..cfg
    };
    let again = spawn_app_with(|c| with_feeds(c, vec![cfg])).await;
    again.mock.set_default(Reply::tags(""));
    let (_, v) = again.check_ip("203.0.113.9").await;
    assert_eq!(v["decision"], "block", "after a restart: {v}");
    assert_eq!(
        block_rule(&v)["reason"],
        "protect360:blocked_clicks_report:click_flood"
    );
}

#[tokio::test]
async fn protect360_windows_keep_to_31_days_in_the_last_90_and_split_at_the_row_limit() {
    let mock = MockFeeds::start().await;
    // 20 rows a day on days 1..=40 back: 800 rows; the report cuts at 150.
    mock.with(|s| {
        s.row_limit = 150;
        for d in 1..=40 {
            for i in 0..20 {
                s.p360.push(P360Row {
                    date: today_minus(d),
                    ip: format!("10.{}.{}.{}", d, i, 7),
                    idfa: String::new(),
                    site: "s".into(),
                    reason: "Click Flood".into(),
                });
            }
        }
    });
    let cfg = p360(&mock, "window = \"60d\"\nrow_limit = 150\nmap = [\"ip\"]");
    let app = spawn_app_with(|c| with_feeds(c, vec![cfg])).await;
    let st = first_run(&app, "p360").await;
    assert_eq!(st["last_error"], Value::Null, "{st}");
    assert_eq!(st["entries"], 800, "every row, none lost to the cut: {st}");
    let reqs = mock.requests();
    let today: jiff::civil::Date = today_minus(0).parse().unwrap();
    let mut ok_days = 0;
    for (_, q) in &reqs {
        let q = query_of(q);
        let from: jiff::civil::Date = q["from"][0].parse().unwrap();
        let to: jiff::civil::Date = q["to"][0].parse().unwrap();
        let days = (to - from).get_days() + 1;
        assert!(days <= 31, "{from}..{to}");
        assert!((today - from).get_days() <= 90);
        ok_days += days;
    }
    assert!(reqs.len() > 2, "split: {} calls", reqs.len());
    assert!(ok_days > 61, "halves were fetched again");
    let m = app.metrics().await;
    assert_eq!(
        sample(&m, "fraudgate_feed_rows_total", &[("feed", "p360")]),
        800.0
    );
}

#[tokio::test]
async fn source_errors_are_clear_back_off_and_never_empty_the_list() {
    let mock = MockFeeds::start().await;
    p360_rows(&mock);
    let app = spawn_app_with(|c| with_feeds(c, vec![p360(&mock, "timeout_ms = 400")])).await;
    app.mock.set_default(Reply::tags(""));
    let st = first_run(&app, "p360").await;
    assert_eq!(st["entries"], 3);

    for (fault, says, kind) in [
        (Fault::LoginPage, "HTML login page", "credentials"),
        (Fault::Status(401), "not a valid V2.0 token", "credentials"),
        (Fault::Status(404), "app id", "not_found"),
        (Fault::Status(400), "date range rules", "bad_request"),
        (Fault::RateLimited(7), "Retry-After 7s", "rate_limited"),
        (Fault::Status(502), "server error: HTTP 502", "server"),
        (Fault::Hang, "timed out", "timeout"),
    ] {
        mock.set_fault(fault.clone());
        let st = run_feed(&app, "p360").await;
        let err = st["last_error"]
            .as_str()
            .unwrap_or_else(|| panic!("{fault:?}: {st}"));
        assert!(err.contains(says), "{fault:?}: {err}");
        assert!(!err.contains(P360_TOKEN), "{err}");
        assert_eq!(st["entries"], 3, "{fault:?} kept the entries");
        let (_, v) = app.check_ip("203.0.113.9").await;
        assert_eq!(v["decision"], "block", "{fault:?}: still blocked");
        let m = app.metrics().await;
        assert!(
            sample(
                &m,
                "fraudgate_feed_errors_total",
                &[("feed", "p360"), ("kind", kind)]
            ) >= 1.0,
            "{fault:?} counted as {kind}"
        );
    }
    let st = feed_status(&app, "p360").await;
    assert_eq!(st["consecutive_failures"], 7);
    // Backed off: the next scheduled pull is not now.
    let next: jiff::Timestamp = st["next_run"].as_str().unwrap().parse().unwrap();
    assert!(next > jiff::Timestamp::now(), "{st}");
    let m = app.metrics().await;
    assert_eq!(
        sample(
            &m,
            "fraudgate_feed_consecutive_failures",
            &[("feed", "p360")]
        ),
        7.0
    );
    assert!(!m.contains(P360_TOKEN));
    let (_, all) = app.admin(Method::GET, "/v1/admin/feeds", None).await;
    assert!(!all.to_string().contains(P360_TOKEN));

    // A running feed is not started twice; an unknown one is a 404.
    mock.set_fault(Fault::Hang);
    let (s, _) = app
        .admin(Method::POST, "/v1/admin/feeds/p360/run", None)
        .await;
    assert_eq!(s, 202);
    let (s, v) = app
        .admin(Method::POST, "/v1/admin/feeds/p360/run", None)
        .await;
    assert_eq!((s, v["error"].as_str()), (409, Some("feed_running")), "{v}");
    let (s, v) = app
        .admin(Method::POST, "/v1/admin/feeds/nope/run", None)
        .await;
    assert_eq!((s, v["error"].as_str()), (404, Some("unknown_feed")), "{v}");

    // Back to health: one success resets the failures.
    mock.set_fault(Fault::None);
    let st = eventually(Duration::from_secs(10), || async {
        let st = feed_status(&app, "p360").await;
        (st["running"] == false).then_some(st)
    })
    .await;
    assert!(st["last_error"].is_string());
    let st = run_feed(&app, "p360").await;
    assert_eq!(st["consecutive_failures"], 0, "{st}");
    assert_eq!(st["last_error"], Value::Null);
}

fn fs_conversion(
    aff: &str,
    sub: &str,
    ip: &str,
    device: Option<&str>,
    status: &str,
    reason: &str,
) -> Value {
    json!({
        "affiliate": aff, "sub_id": sub, "product": "Product_1", "partner": null,
        "fingerprint": "2415426325", "request_time": "16:50:55", "type": "conversion",
        "remote_address": ip, "server_ip": "127.0.0.1",
        "http_user_agent": "Mozilla/5.0", "tracker_id": "1", "id": format!("fs_{ip}"),
        "extra_parameters": [{"param_name": "ext", "param_value": "json"}],
        "country_code": "RU", "status": status, "request_date": "2026-11-20",
        "device_id": device, "uuid": null,
        "reason": reason, "advanced_reason": reason,
    })
}

#[tokio::test]
async fn fraudshield_scroll_follows_next_page_id_and_feeds_rejected_conversions_only() {
    let mock = MockFeeds::start().await;
    mock.with(|s| {
        for i in 0..25 {
            let status = if i % 5 == 0 { "approved" } else { "rejected" };
            s.fs_conversions.push(fs_conversion(
                "Affiliate_1",
                &format!("Sub_{i}"),
                &format!("89.178.237.{i}"),
                (i == 1).then_some("ANDROID-ID-77"),
                status,
                "IP Pattern",
            ));
        }
    });
    let cfg = feed(
        "shield",
        "fraudshield",
        &mock,
        &format!(
            "user_id = {FS_USER:?}\napi_token = {FS_TOKEN:?}\ntracker_id = 81\npage_size = 6\ntimezone = \"Europe/Berlin\"\nmap = [\"ip\", \"device\", \"affiliate_sub\"]"
        ),
    );
    let app = spawn_app_with(|c| with_feeds(c, vec![cfg])).await;
    app.mock.set_default(Reply::tags(""));
    let st = first_run(&app, "shield").await;
    assert_eq!(st["last_error"], Value::Null, "{st}");
    // 20 rejected: 20 IPs, 20 affiliate/sub pairs, 1 device.
    assert_eq!(st["entries"], 41, "{st}");
    let reqs = mock.requests();
    // 20 rows in pages of 6: 4 pages with rows, then the empty one.
    assert_eq!(count(&reqs, "/api/v1/reports/conversion_scroll.json"), 5);
    let second = query_of(&reqs[1].1);
    assert_eq!(second["next_page_id"], vec!["c2Nyb2xs6"]);
    assert_eq!(second["timezone"], vec!["Europe/Berlin"]);
    assert_eq!(second["tracker_id"], vec!["81"]);

    let (_, v) = app.check_ip("89.178.237.3").await;
    assert_eq!(v["decision"], "block");
    assert_eq!(
        block_rule(&v)["reason"],
        "fraudshield:conversion:ip_pattern"
    );
    let (_, v) = app.check_ip("89.178.237.5").await;
    assert_eq!(
        v["decision"], "allow",
        "an approved conversion is no fraud: {v}"
    );
    let (_, v) = app
        .check(&query("192.0.2.1", &[("android_id", "ANDROID-ID-77")]))
        .await;
    assert_eq!(v["decision"], "block", "{v}");
    let (_, v) = app
        .check(
            &query("192.0.2.2", &[("aff_sub1", "Sub_7")])
                .replace("affiliate_id=6251", "affiliate_id=Affiliate_1"),
        )
        .await;
    assert_eq!(v["decision"], "block", "affiliate+sub: {v}");
}

/// A scroll that answers the same page for every `next_page_id` is
/// stopped at the first repeat, with an error saying so, not after
/// 100 000 requests.
#[tokio::test]
async fn a_fraudshield_scroll_that_does_not_advance_is_stopped_at_once() {
    let mock = MockFeeds::start().await;
    mock.with(|s| {
        s.fault = Fault::StuckScroll;
        for i in 0..10 {
            s.fs_conversions.push(fs_conversion(
                "Affiliate_1",
                "Sub_1",
                &format!("89.178.238.{i}"),
                None,
                "rejected",
                "IP Pattern",
            ));
        }
    });
    let cfg = feed(
        "shield",
        "fraudshield",
        &mock,
        &format!("user_id = {FS_USER:?}\napi_token = {FS_TOKEN:?}\ntracker_id = 81\npage_size = 4"),
    );
    let app = spawn_app_with(|c| with_feeds(c, vec![cfg])).await;
    let st = first_run(&app, "shield").await;
    let err = st["last_error"].as_str().unwrap_or_else(|| panic!("{st}"));
    assert!(err.contains("does not advance"), "{err}");
    assert_eq!(
        count(&mock.requests(), "/api/v1/reports/conversion_scroll.json"),
        2
    );
}

#[tokio::test]
async fn fraudshield_fraud_report_feeds_affiliate_sub_groups_over_the_rejection_rate() {
    let mock = MockFeeds::start().await;
    mock.with(|s| {
        s.fs_fraud = vec![
            json!({"tracker_id": 81, "affiliate": "6251", "sub_id": "banner-7", "conversion": 84, "approved": 20, "rejected": 64,
                   "reasons": {"GEO Mismatch": 50, "IP Pattern": 14}, "approval_rate": 23.81, "rejection_rate": 76.19, "id": "a"}),
            json!({"tracker_id": 81, "affiliate": "6251", "sub_id": "banner-8", "conversion": 84, "approved": 80, "rejected": 4,
                   "reasons": {"GEO Mismatch": 4}, "approval_rate": 95.24, "rejection_rate": 4.76, "id": "b"}),
        ]
    });
    let cfg = feed(
        "shield-fraud",
        "fraudshield",
        &mock,
        &format!(
            "user_id = {FS_USER:?}\napi_token = {FS_TOKEN:?}\ntracker_id = 81\nreport = \"fraud\"\nmin_rejection_rate = 30\nmap = [\"affiliate_sub\"]"
        ),
    );
    assert_eq!(cfg.report, Some(FraudshieldReport::Fraud));
    let app = spawn_app_with(|c| with_feeds(c, vec![cfg])).await;
    app.mock.set_default(Reply::tags(""));
    let st = first_run(&app, "shield-fraud").await;
    assert_eq!(st["entries"], 1, "{st}");
    let q = query_of(&mock.requests()[0].1);
    assert_eq!(q["group[]"], vec!["affiliate", "sub_id"]);
    assert!(q["search_fields[]"][0].contains("min_rejection_rate"));
    let (_, v) = app
        .check(&query("192.0.2.3", &[("aff_sub1", "banner-7")]))
        .await;
    assert_eq!(v["decision"], "block", "{v}");
    assert_eq!(block_rule(&v)["reason"], "fraudshield:fraud:geo_mismatch");
    let (_, v) = app
        .check(&query("192.0.2.3", &[("aff_sub1", "banner-8")]))
        .await;
    assert_eq!(v["decision"], "allow", "{v}");
}

#[tokio::test]
async fn fraudshield_refuses_bad_credentials_clearly_and_keeps_entries() {
    let mock = MockFeeds::start().await;
    let app = spawn_app_with(|c| {
        with_feeds(
            c,
            vec![feed(
                "shield",
                "fraudshield",
                &mock,
                "user_id = \"4711\"\napi_token = \"WRONG-TOKEN-123\"\ntracker_id = 81\nreport = \"conversion\"",
            )],
        )
    })
    .await;
    let st = first_run(&app, "shield").await;
    let err = st["last_error"].as_str().unwrap();
    assert!(err.contains("refused user_id/api_token"), "{err}");
    assert!(!err.contains("WRONG-TOKEN-123"));
    assert_eq!(st["consecutive_failures"], 1);
}

fn fsd_event(dt: &str, ip: &str, idfa: &str, aff: &str) -> Value {
    json!({"datetime": dt, "ipv4_str": ip, "idfa": idfa, "affiliate_id": aff, "aff_sub1": "x", "offer_id": "34713", "event": "click"})
}

#[tokio::test]
async fn fraudscore_data_pages_until_a_short_page_and_resumes_from_its_cursor() {
    let mock = MockFeeds::start().await;
    let now = jiff::Timestamp::now();
    let dt = |mins: i64| {
        (now - jiff::SignedDuration::from_mins(mins))
            .strftime("%Y-%m-%d %H:%M:%S")
            .to_string()
    };
    mock.with(|s| {
        for i in 0..7 {
            s.fsd_events
                .push(fsd_event(&dt(60 - i), &format!("100.64.0.{i}"), "", "6251"));
        }
    });
    let cfg = feed(
        "fsd",
        "fraudscore_data",
        &mock,
        &format!(
            "channel = {FSD_CHANNEL:?}\nkey = {FSD_KEY:?}\nevent = \"click\"\npage_size = 3\nfilter = '[\"tag\",\"proxy\"]'\nwindow = \"1d\""
        ),
    );
    let state_file = cfg.state_path();
    let app = spawn_app_with(|c| with_feeds(c, vec![cfg.clone()])).await;
    app.mock.set_default(Reply::tags(""));
    let st = first_run(&app, "fsd").await;
    assert_eq!(st["last_error"], Value::Null, "{st}");
    assert_eq!(st["entries"], 7);
    let reqs = mock.requests();
    assert_eq!(reqs.len(), 3, "pages of 3, 3, 1");
    let q = query_of(&reqs[0].1);
    assert_eq!(q["key"], vec![FSD_KEY]);
    assert!(q["field"].contains(&"ipv4_str".to_owned()), "{q:?}");
    let filter: Value = serde_json::from_str(&q["filter"][0]).unwrap();
    assert_eq!(filter[0], "AND");
    assert_eq!(
        filter[3],
        json!(["tag", "proxy"]),
        "the configured filter is kept"
    );
    assert_eq!(query_of(&reqs[2].1)["page"], vec!["3"]);
    let (_, v) = app.check_ip("100.64.0.4").await;
    assert_eq!(v["decision"], "block");
    assert_eq!(block_rule(&v)["reason"], "fraudscore_data:click");

    // A restart resumes from the cursor: the window starts where the
    // last pull ended, not a day back.
    let cursor = st["cursor"].as_str().unwrap().to_owned();
    let again = spawn_app_with(|c| with_feeds(c, vec![cfg])).await;
    let st2 = run_feed(&again, "fsd").await;
    assert_eq!(st2["entries"], 7);
    let last = mock.requests().last().unwrap().1.clone();
    let filter: Value = serde_json::from_str(&query_of(&last)["filter"][0]).unwrap();
    let ge: jiff::Timestamp = format!("{}Z", filter[1][1].as_str().unwrap().replace(' ', "T"))
        .parse()
        .unwrap();
    assert_eq!(
        ge,
        cursor.parse::<jiff::Timestamp>().unwrap() - jiff::SignedDuration::from_mins(10),
        "from the cursor, less the 10 min the Data API may record late"
    );
    assert!(state_file.exists());
}

#[tokio::test]
async fn serve_pulls_on_schedule_and_expires_entries_on_time() {
    let mock = MockFeeds::start().await;
    p360_rows(&mock);
    let cfg = p360(
        &mock,
        "every = \"1s\"\njitter = 0.0\nexpire_after = \"3s\"\nmap = [\"ip\"]",
    );
    let app = spawn_app_with(|c| with_feeds(c, vec![cfg])).await;
    app.mock.set_default(Reply::tags(""));
    // No admin call: the scheduler pulls at startup.
    eventually(Duration::from_secs(15), || async {
        let (_, v) = app.check_ip("203.0.113.9").await;
        (v["decision"] == "block").then_some(())
    })
    .await;
    // A row the source reports later is pulled on the next run.
    mock.with(|s| {
        s.p360.push(P360Row {
            date: today_minus(0),
            ip: "192.0.2.77".into(),
            idfa: String::new(),
            site: "x".into(),
            reason: "Bots".into(),
        })
    });
    eventually(Duration::from_secs(15), || async {
        let (_, v) = app.check_ip("192.0.2.77").await;
        (v["decision"] == "block").then_some(())
    })
    .await;
    // The source stops reporting it (and fails from now on): it expires
    // `expire_after` after it was last seen.
    mock.set_fault(Fault::Status(500));
    eventually(Duration::from_secs(20), || async {
        let (_, v) = app.check_ip("192.0.2.77").await;
        (v["decision"] == "allow").then_some(())
    })
    .await;
    let m = app.metrics().await;
    assert!(
        sample(
            &m,
            "fraudgate_feed_entries_expired_total",
            &[("feed", "p360")]
        ) >= 1.0
    );
    assert!(
        sample(
            &m,
            "fraudgate_feed_runs_total",
            &[("feed", "p360"), ("outcome", "ok")]
        ) >= 2.0
    );
}

/// A config file for the CLI: the mock, a state file of its own.
fn cli_config(mock: &MockFeeds, dir: &std::path::Path, token: &str) -> std::path::PathBuf {
    let path = dir.join("fraudgate.toml");
    std::fs::write(
        &path,
        format!(
            "[[feeds]]\nname = \"p360\"\nkind = \"protect360\"\nbase_url = {:?}\ntoken = {token:?}\napp_ids = [\"id1234567\"]\nstate_file = {:?}\n",
            mock.url(),
            dir.join("p360.json").display().to_string()
        ),
    )
    .unwrap();
    path
}

fn fraudgate(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fraudgate"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Post-attribution topics are read by detection date: the window goes
/// in `detect-from`/`detect-to`, and the install dates reach back 60 days,
/// so an install attributed long ago and detected now is caught.
#[tokio::test]
async fn protect360_detection_is_read_by_detection_date() {
    let mock = MockFeeds::start().await;
    p360_rows(&mock);
    let cfg = p360(&mock, "topics = [\"detection\"]");
    let app = spawn_app_with(|c| with_feeds(c, vec![cfg])).await;
    app.mock.set_default(Reply::tags(""));
    let st = first_run(&app, "p360").await;
    assert_eq!(st["last_error"], Value::Null, "{st}");
    let reqs = mock.requests();
    let q = query_of(&reqs[0].1);
    assert!(reqs[0].0.contains("/export/detection/app/"), "{reqs:?}");
    let (from, to) = (&q["from"][0], &q["to"][0]);
    let (dfrom, dto) = (&q["detect-from"][0], &q["detect-to"][0]);
    assert_eq!(dto, to);
    assert!(
        from < dfrom,
        "install dates reach back before the detection window: {q:?}"
    );
    assert_eq!(from, &today_minus(59), "{q:?}");
    assert!(
        q["additional_fields"][0].contains("detection_date"),
        "{q:?}"
    );
    let (_, v) = app.check_ip("203.0.113.9").await;
    assert_eq!(v["decision"], "block", "{v}");
}

/// When one app's report fails, the next run reads again only what
/// failed: the reports read to the end start where that run ended, not
/// at the cursor's whole window (per-report cursors).
#[tokio::test]
async fn after_a_partial_failure_only_the_failed_reports_are_read_again() {
    let mock = MockFeeds::start().await;
    p360_rows(&mock);
    // 60 days: two windows a report. "id.gone" answers 404.
    let cfg = p360(&mock, "window = \"60d\"");
    let cfg = FeedConfig {
        app_ids: vec!["id1234567".into(), "id.gone".into()],
        ..cfg
    };
    let app = spawn_app_with(|c| with_feeds(c, vec![cfg])).await;
    app.mock.set_default(Reply::tags(""));
    let st = first_run(&app, "p360").await;
    assert!(
        st["last_error"].as_str().unwrap_or("").contains("partly"),
        "{st}"
    );
    let good = "/api/adnets-data/v1/export/blocked_clicks_report/app/id1234567";
    let calls = |reqs: &[(String, String)]| reqs.iter().filter(|(p, _)| p == good).count();
    let first = mock.requests();
    assert_eq!(calls(&first), 2, "the whole 60 days: {first:?}");
    let (_, v) = app.check_ip("203.0.113.9").await;
    assert_eq!(v["decision"], "block", "what was read is kept: {v}");

    run_feed(&app, "p360").await;
    let second: Vec<_> = mock.requests().into_iter().skip(first.len()).collect();
    assert_eq!(
        calls(&second),
        1,
        "only from where the last run ended: {second:?}"
    );
    assert!(
        second.iter().any(|(p, _)| p.ends_with("/app/id.gone")),
        "the failed report is read again: {second:?}"
    );
}

/// A feed's calls are paced by `calls_per_minute` after a burst of 10:
/// a backfill of many report windows is spread out, not fired at once.
#[tokio::test]
async fn a_feed_spreads_its_calls_over_its_request_budget() {
    let mock = MockFeeds::start().await;
    // 4 apps x 3 topics: 12 calls, two past the burst.
    let cfg = feed(
        "p360",
        "protect360",
        &mock,
        &format!(
            "token = {P360_TOKEN:?}\napp_ids = [\"id1234567\", \"com.example.game\", \"id1234567\", \"com.example.game\"]\ntopics = [\"blocked_clicks_report\", \"blocked_installs_report\", \"detection\"]\ncalls_per_minute = 60"
        ),
    );
    let app = spawn_app_with(|c| with_feeds(c, vec![cfg])).await;
    let st = first_run(&app, "p360").await;
    assert_eq!(st["last_error"], Value::Null, "{st}");
    let reqs = mock.request_times();
    assert_eq!(reqs.len(), 12);
    let burst = reqs[9] - reqs[0];
    let paced = reqs[11] - reqs[9];
    // Wide margins for a loaded machine: the burst is well under the 2 s
    // the last two calls are paced by.
    assert!(
        burst < Duration::from_millis(1500),
        "the burst goes at once: {burst:?}"
    );
    assert!(
        paced >= Duration::from_millis(1900),
        "then one call a second: {paced:?}"
    );
}

/// A backfill older than Protect360 keeps (90 days) is refused with the
/// limit named, and no request is sent; it is not clipped silently.
#[tokio::test]
async fn a_protect360_backfill_beyond_90_days_is_refused_naming_the_limit() {
    let mock = MockFeeds::start().await;
    let dir = temp_dir("feed-cli-90");
    let conf = cli_config(&mock, &dir, P360_TOKEN).display().to_string();
    let from = today_minus(120);
    let (code, out, err) = tokio::task::spawn_blocking(move || {
        fraudgate(&["--config", &conf, "feeds", "run", "p360", "--from", &from])
    })
    .await
    .unwrap();
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("Protect360 keeps 90 days"), "{err}");
    assert!(mock.requests().is_empty(), "nothing was asked");
}

#[tokio::test]
async fn cli_runs_a_feed_with_a_summary_dry_run_writes_nothing_and_serve_picks_it_up() {
    let mock = MockFeeds::start().await;
    p360_rows(&mock);
    let dir = temp_dir("feed-cli");
    let conf = cli_config(&mock, &dir, P360_TOKEN);
    let conf_s = conf.display().to_string();
    let state = dir.join("p360.json");

    let (code, out, err) = tokio::task::spawn_blocking({
        let c = conf_s.clone();
        move || fraudgate(&["--config", &c, "feeds", "run", "p360", "--dry-run"])
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("would add 3 entries"), "{out}");
    assert!(
        out.contains("+ ip 203.0.113.9  reason=protect360:blocked_clicks_report:click_flood"),
        "{out}"
    );
    assert!(out.contains("dry run: nothing was written"));
    assert!(!state.exists(), "a dry run writes nothing");

    // serve (in-process) on the same state file, with a long interval:
    // what the CLI adds reaches it without a pull of its own.
    // Its own source is down, so every entry it gets is the CLI's.
    let down = MockFeeds::start().await;
    down.set_fault(Fault::Status(503));
    let cfg = FeedConfig {
        state_file: state.display().to_string(),
        every: Duration::from_secs(86400),
        ..p360(&down, "")
    };
    let app = spawn_app_with(|c| with_feeds(c, vec![cfg])).await;
    app.mock.set_default(Reply::tags(""));
    eventually(Duration::from_secs(10), || async {
        let st = feed_status(&app, "p360").await;
        (st["consecutive_failures"] == 1 && st["running"] == false).then_some(())
    })
    .await;

    let (code, out, err) = tokio::task::spawn_blocking({
        let c = conf_s.clone();
        move || {
            fraudgate(&[
                "--config",
                &c,
                "feeds",
                "run",
                "p360",
                "--from",
                &today_minus(3),
                "--to",
                &today_minus(0),
            ])
        }
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("2 rows in 1 pages; added 3 entries"), "{out}");
    assert!(state.exists());
    let last = query_of(&mock.requests().last().unwrap().1);
    assert_eq!(last["from"], vec![today_minus(3)]);
    eventually(Duration::from_secs(10), || async {
        let (_, v) = app.check_ip("203.0.113.9").await;
        (v["decision"] == "block").then_some(())
    })
    .await;

    let (code, out, _) = tokio::task::spawn_blocking({
        let c = conf_s.clone();
        move || fraudgate(&["--config", &c, "feeds", "list"])
    })
    .await
    .unwrap();
    assert_eq!(code, 0);
    assert!(
        out.contains("p360") && out.contains("protect360") && out.contains("| 3 "),
        "{out}"
    );

    // Bad credentials: exit 2, a clear line, no token, nothing lost.
    let bad = cli_config(&mock, &dir, "NOT-THE-TOKEN-999")
        .display()
        .to_string();
    let run_bad = |extra: &'static [&'static str]| {
        let bad = bad.clone();
        tokio::task::spawn_blocking(move || {
            let mut args = vec!["--config", bad.as_str(), "feeds", "run", "p360"];
            args.extend_from_slice(extra);
            fraudgate(&args)
        })
    };
    let (code, out, err) = run_bad(&[]).await.unwrap();
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("not a valid V2.0 token"), "{err}");
    assert!(err.contains("existing entries are kept"), "{err}");
    assert!(!err.contains("NOT-THE-TOKEN-999") && !out.contains("NOT-THE-TOKEN-999"));
    // A failed dry run says it wrote nothing, not where to look.
    let (code, _, err) = run_bad(&["--dry-run"]).await.unwrap();
    assert_eq!(code, 2);
    assert!(err.contains("a dry run: nothing was written"), "{err}");
    let saved: Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    assert_eq!(saved["entries"].as_array().unwrap().len(), 3);
    assert_eq!(saved["consecutive_failures"], 1);

    let (code, _, err) = tokio::task::spawn_blocking(move || {
        fraudgate(&["--config", &conf_s, "feeds", "run", "nope"])
    })
    .await
    .unwrap();
    assert_eq!(code, 2);
    assert!(
        err.contains("no feed named \"nope\"; configured: p360"),
        "{err}"
    );
}

#[test]
fn feed_config_mistakes_name_the_key() {
    let bad = |extra: &str, key: &str, says: &str| {
        let text = format!("[[feeds]]\nname = \"f\"\n{extra}");
        let dir = temp_dir("feed-conf");
        let path = dir.join("c.toml");
        std::fs::write(&path, &text).unwrap();
        let e = Config::load_from(Some(&path), std::iter::empty())
            .err()
            .unwrap_or_else(|| panic!("accepted: {text}"))
            .to_string();
        assert!(e.contains(key) && e.contains(says), "{text}\n=> {e}");
    };
    bad(
        "kind = \"protect360\"\napp_ids = [\"id1\"]",
        "feeds[0].token",
        "required",
    );
    bad(
        "kind = \"protect360\"\ntoken = \"t\"",
        "feeds[0].app_ids",
        "name the apps",
    );
    bad(
        "kind = \"protect360\"\ntoken = \"t\"\napp_ids = [\"id1\"]\ntopics = [\"clicks\"]",
        "feeds[0].topics",
        "unknown report topic",
    );
    // Both spellings of the in-app topic in Protect360's docs are taken.
    for topic in [
        "blocked_in_app_events_report",
        "blocked_in-app_events_report",
    ] {
        let dir = temp_dir("feed-conf");
        let path = dir.join("c.toml");
        std::fs::write(
            &path,
            format!("[[feeds]]\nname = \"f\"\nkind = \"protect360\"\ntoken = \"t\"\napp_ids = [\"id1\"]\ntopics = [{topic:?}]\nstate_file = {:?}\n", dir.join("s.json").display().to_string()),
        )
        .unwrap();
        Config::load_from(Some(&path), std::iter::empty())
            .unwrap_or_else(|e| panic!("{topic}: {e}"));
    }
    bad(
        "kind = \"protect360\"\ntoken = \"t\"\napp_ids = [\"id1\"]\nwindow = \"120d\"",
        "feeds[0].window",
        "90 days",
    );
    bad(
        "kind = \"protect360\"\ntoken = \"t\"\napp_ids = [\"id1\"]\nevery = \"soon\"",
        "feeds[0].every",
        "not a duration",
    );
    // Credentials in clear only to a loopback host.
    bad(
        "kind = \"protect360\"\ntoken = \"t\"\napp_ids = [\"id1\"]\nbase_url = \"http://feeds.example\"",
        "feeds[0].base_url",
        "feed \"f\": plain http would send its credentials in clear",
    );
    bad(
        "kind = \"protect360\"\ntoken = \"t\"\napp_ids = [\"id1\"]\nmax_prefix = { v4 = 0 }",
        "feeds[0].max_prefix.v4",
        "from 8 to 32",
    );
    bad(
        "kind = \"protect360\"\ntoken = \"t\"\napp_ids = [\"id1\"]\ntracker_id = 3",
        "feeds[0].tracker_id",
        "is a fraudshield setting",
    );
    bad(
        "kind = \"fraudshield\"\nuser_id = \"u\"\napi_token = \"t\"\ntracker_id = 1\ntimezone = \"Mars/Olympus\"",
        "feeds[0].timezone",
        "unknown time zone",
    );
    bad(
        "kind = \"fraudshield\"\nuser_id = \"u\"\napi_token = \"t\"\ntracker_id = 1\nreport = \"fraud\"",
        "feeds[0].map",
        "groups, not events",
    );
    bad(
        "kind = \"fraudscore_data\"\nchannel = \"c\"\nkey = \"k\"",
        "feeds[0].filter",
        "every event's IP would be blocked",
    );
    bad(
        "kind = \"fraudshield\"\nuser_id = \"u\"\napi_token = \"t\"\ntracker_id = 1\nreport = \"fraud\"\nmap = [\"affiliate_sub\"]",
        "feeds[0].min_rejection_rate",
        "every affiliate/sub group",
    );
    bad(
        "kind = \"fraudscore_data\"\nchannel = \"c\"\nkey = \"k\"\nfilter = \"[oops\"",
        "feeds[0].filter",
        "not JSON",
    );
    // A feed named like a configured list.
    let first = Config::default().rules.lists[0].name.clone();
    let dir = temp_dir("feed-conf");
    let path = dir.join("c.toml");
    std::fs::write(
        &path,
        format!("[[feeds]]\nname = {first:?}\nkind = \"fraudscore_data\"\nchannel = \"c\"\nkey = \"k\"\nfilter = '[\"tag\",\"proxy\"]'\n"),
    )
    .unwrap();
    let e = Config::load_from(Some(&path), std::iter::empty())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("feeds[0].name") && e.contains("already a list"),
        "{e}"
    );
}

#[tokio::test]
async fn one_failing_app_does_not_stop_the_others_and_the_cursor_stays() {
    let mock = MockFeeds::start().await;
    p360_rows(&mock);
    // id999 is not an app this account may read: 404 from the mock.
    let cfg = feed(
        "p360",
        "protect360",
        &mock,
        &format!("token = {P360_TOKEN:?}\napp_ids = [\"id999\", \"id1234567\"]"),
    );
    let app = spawn_app_with(|c| with_feeds(c, vec![cfg])).await;
    app.mock.set_default(Reply::tags(""));
    let st = first_run(&app, "p360").await;
    let err = st["last_error"].as_str().unwrap_or_else(|| panic!("{st}"));
    assert!(err.contains("1 of 2 app/topic reports failed"), "{err}");
    assert!(err.contains("id999"), "{err}");
    assert_eq!(st["entries"], 3, "the readable app's entries are in: {st}");
    assert_eq!(st["cursor"], Value::Null, "the cursor stays for the retry");
    assert_eq!(st["consecutive_failures"], 1);
    let (_, v) = app.check_ip("203.0.113.9").await;
    assert_eq!(v["decision"], "block");
    let m = app.metrics().await;
    assert_eq!(
        sample(
            &m,
            "fraudgate_feed_errors_total",
            &[("feed", "p360"), ("kind", "partial")]
        ),
        1.0
    );
}

/// Fraudshield and the Data API carry their secrets in the query string:
/// a transport error (nothing listening) names its kind and the host, never
/// the URL's path or query.
#[tokio::test]
async fn transport_errors_never_show_query_string_secrets() {
    let dead = format!("http://127.0.0.1:{}", free_port());
    let fs: FeedConfig = toml::from_str(&format!(
        "name = \"shield\"\nkind = \"fraudshield\"\nbase_url = {dead:?}\nuser_id = \"4711\"\napi_token = {FS_TOKEN:?}\ntracker_id = 81\nstate_file = {:?}",
        temp_dir("feed").join("s.json").display().to_string()
    ))
    .unwrap();
    let fsd: FeedConfig = toml::from_str(&format!(
        "name = \"fsd\"\nkind = \"fraudscore_data\"\nbase_url = {dead:?}\nchannel = \"c\"\nkey = {FSD_KEY:?}\nfilter = '[\"tag\",\"proxy\"]'\nstate_file = {:?}",
        temp_dir("feed").join("d.json").display().to_string()
    ))
    .unwrap();
    let app = spawn_app_with(|c| with_feeds(c, vec![fs, fsd])).await;
    for name in ["shield", "fsd"] {
        let st = first_run(&app, name).await;
        let err = st["last_error"].as_str().unwrap_or_else(|| panic!("{st}"));
        let host = dead.trim_start_matches("http://");
        assert_eq!(err, format!("transport: connection refused ({host})"));
        assert!(!err.contains(FS_TOKEN) && !err.contains(FSD_KEY), "{err}");
    }
}
