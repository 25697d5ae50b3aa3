//! Fraudshield's report API (reference 001) on its own paths: the docs'
//! example requests sent as printed (real dates, a configured tracker and
//! key substituted), answered in the documented shapes and vocabulary.
//!
//! The data is a tracker's real traffic: clicks through `/v1/check`, and
//! their installs (Fraudshield's conversions) and goals (`custom` events)
//! posted back to `/v1/postback` with the click's decision id as
//! `click_id`, each at a set time after its click, so the funnel rules
//! approve or reject it and its click-to-install time is exact.

use std::collections::BTreeMap;
use std::time::Duration;

use fraudgate::config::Secret;
use serde_json::{Value, json};

use crate::decision_log::Store;
use crate::helpers::*;

pub const KEY: &str = "FS-API-TOKEN-5b1e0c7d2a";
pub const USER: &str = "xyz";
const EU_KEY: &str = "CLIENT-EU-KEY-8c4a1f2e";
const US_KEY: &str = "CLIENT-US-KEY-3d9b7e60";

pub async fn app_on(store: Store<'_>) -> TestApp {
    spawn_app_with(|c| {
        store(c);
        c.auth.report_users = BTreeMap::from([(USER.to_owned(), Secret::new(KEY))]);
        c.auth.client_keys = BTreeMap::from([
            ("adserver-eu".to_owned(), Secret::new(EU_KEY)),
            ("adserver-us".to_owned(), Secret::new(US_KEY)),
        ]);
        c.auth.trackers = BTreeMap::from([
            ("adserver-eu".to_owned(), 81),
            ("adserver-us".to_owned(), 698),
        ]);
    })
    .await
}

/// Today in UTC, and a day `offset` away.
pub fn day(offset: i64) -> String {
    let today = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date();
    (today + jiff::Span::new().days(offset)).to_string()
}

/// Tracker 81's decision ids, as [`seed`] sent them.
pub struct Seeded {
    /// Clicks of affiliate A1, sub S1, offer P1, partner ADV1 from DE
    /// (the fourth blocked: datacenter), then two of A2 / S2 / P1 from FR.
    pub clicks: Vec<String>,
    /// Installs of the first, second, fourth and fifth click: approved
    /// (406 s after its click, payout 1.50 USD), rejected (3 s:
    /// `ctit_short`), rejected (its click blocked, and from US:
    /// `click_blocked`, `mismatch`), approved (120 s).
    pub conversions: Vec<String>,
    /// Goals: a `purchase` of the first click (900 s, 20 EUR, the
    /// tracker's status `approved`), a `registration` of the fifth (300 s).
    pub goals: Vec<String>,
}

/// Tracker 81 (adserver-eu): six clicks an hour ago, an impression,
/// four installs and two goals ([`Seeded`]); tracker 698 (adserver-us):
/// two clicks of A1 / S1 / P2, one installed 60 s after it (approved).
pub async fn seed(app: &TestApp) -> Seeded {
    app.mock.on_ip("10.99.0.4", Reply::tags("datacenter"));
    let t = jiff::Timestamp::now().as_second() - 3_600;
    let at = t.to_string();
    let a1 = [
        ("affiliate_id", "A1"),
        ("aff_sub1", "S1"),
        ("offer_id", "P1"),
        ("advertiser_id", "ADV1"),
        ("country_code", "DE"),
        ("at", &at),
    ];
    let a2 = [
        ("affiliate_id", "A2"),
        ("aff_sub1", "S2"),
        ("offer_id", "P1"),
        ("country_code", "FR"),
        ("at", &at),
    ];
    let mut clicks = Vec::new();
    for i in 1..=4 {
        let mut p = a1.to_vec();
        if i == 1 {
            p.push(("affiliate_name", "Alice Media"));
        }
        clicks.push(check_as(app, EU_KEY, "click", &format!("10.99.0.{i}"), &p).await);
    }
    for i in 5..=6 {
        clicks.push(check_as(app, EU_KEY, "click", &format!("10.99.0.{i}"), &a2).await);
    }
    check_as(app, EU_KEY, "impression", "10.99.0.8", &a2).await;
    let us = [
        ("affiliate_id", "A1"),
        ("aff_sub1", "S1"),
        ("offer_id", "P2"),
        ("country_code", "US"),
        ("at", &at),
    ];
    let us_click = check_as(app, US_KEY, "click", "10.99.0.7", &us).await;
    check_as(app, US_KEY, "click", "10.99.0.9", &us).await;

    let paid = [("payout", "1.50"), ("currency", "USD")];
    let mut conversions = Vec::new();
    for (click, after, more, rules) in [
        (0, 406, &paid[..], &[][..]),
        (1, 3, &[][..], &["ctit_short"][..]),
        (
            3,
            600,
            &[("country_code", "US")][..],
            &["click_blocked", "mismatch"][..],
        ),
        (4, 120, &[][..], &[][..]),
    ] {
        let at = t + after;
        let v = postback_as(app, EU_KEY, &clicks[click], "install", at, more).await;
        assert_eq!(kinds(&v), rules, "{v}");
        conversions.push(v["id"].as_str().unwrap().to_owned());
    }
    let mut goals = Vec::new();
    for (click, goal, after, more) in [
        (
            0,
            "purchase",
            900,
            &[
                ("payout", "20"),
                ("currency", "EUR"),
                ("status", "approved"),
            ][..],
        ),
        (4, "registration", 300, &[][..]),
    ] {
        let v = postback_as(app, EU_KEY, &clicks[click], goal, t + after, more).await;
        assert_eq!(v["decision"], "allow", "{v}");
        goals.push(v["id"].as_str().unwrap().to_owned());
    }
    let v = postback_as(app, US_KEY, &us_click, "install", t + 60, &[]).await;
    assert_eq!(v["decision"], "allow", "{v}");

    // Recorded once the global report counts them all.
    let path = format!(
        "/api/v1/reports/global.json?group[]=tracker_id&date_start={}&date_end={}&timezone=UTC&api_token={KEY}",
        day(-1),
        day(1)
    );
    eventually(Duration::from_secs(5), || async {
        let v = json(app.get(&path).await).await;
        let sum = |k: &str| -> Option<i64> {
            Some(
                v["results"]
                    .as_array()?
                    .iter()
                    .filter_map(|r| r[k].as_i64())
                    .sum(),
            )
        };
        (sum("conversion")? == 5 && sum("click")? == 8 && sum("goal")? == 2).then_some(())
    })
    .await;
    Seeded {
        clicks,
        conversions,
        goals,
    }
}

/// Decision ids in the reports' order: newest first, then by id.
pub fn newest_first(ids: &[String]) -> Vec<&str> {
    let ms = |id: &str| {
        fraudgate::decision::DecisionId::parse(id)
            .unwrap()
            .unix_ms()
    };
    let mut v: Vec<&str> = ids.iter().map(String::as_str).collect();
    v.sort_by(|a, b| (ms(b), *b).cmp(&(ms(a), *a)));
    v
}

/// A decision through `/v1/check` as the client of `key`; its id.
async fn check_as(
    app: &TestApp,
    key: &str,
    event_type: &str,
    ip: &str,
    params: &[(&str, &str)],
) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    q.append_pair("event_type", event_type)
        .append_pair("ip", ip)
        .append_pair("ua", UA);
    for (k, v) in params {
        q.append_pair(k, v);
    }
    let r = app
        .http
        .get(app.url(&format!("/v1/check?{}", q.finish())))
        .header("x-api-key", key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    json(r).await["id"].as_str().unwrap().to_owned()
}

/// A conversion of `click` (`event`: `install` or a goal's name) at
/// `at` (Unix seconds) posted back as the client of `key`; its decision.
async fn postback_as(
    app: &TestApp,
    key: &str,
    click: &str,
    event: &str,
    at: i64,
    params: &[(&str, &str)],
) -> Value {
    let mut q = form_urlencoded::Serializer::new(String::new());
    q.append_pair("click_id", click)
        .append_pair("event", event)
        .append_pair("event_time", &at.to_string());
    for (k, v) in params {
        q.append_pair(k, v);
    }
    let r = app
        .http
        .get(app.url(&format!("/v1/postback?{}", q.finish())))
        .header("x-api-key", key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    json(r).await
}

/// The rule kinds of a decision.
fn kinds(v: &Value) -> Vec<&str> {
    v["rules"]
        .as_array()
        .map(|r| r.iter().filter_map(|h| h["kind"].as_str()).collect())
        .unwrap_or_default()
}

/// A GET answered 200 with JSON.
pub async fn ok(app: &TestApp, path: &str) -> Value {
    let r = app.get(path).await;
    let status = r.status();
    let v = json(r).await;
    assert_eq!(status, 200, "{path}: {v}");
    v
}

/// A GET answered `status` with the error naming `field`.
async fn refused(app: &TestApp, path: &str, status: u16, field: &str) {
    let r = app.get(path).await;
    assert_eq!(r.status().as_u16(), status, "{path}");
    let v = json(r).await;
    assert_eq!(v["field"], field, "{path}: {v}");
}

#[tokio::test]
async fn the_docs_example_requests_answer_in_the_documented_shapes() {
    docs_requests_suite(&|_| {}).await;
}

/// Run on SQLite here and on ClickHouse in `clickhouse.rs`.
pub async fn docs_requests_suite(store: Store<'_>) {
    let app = app_on(store).await;
    seed(&app).await;
    let (start, end) = (day(-30), day(0));
    let auth = format!("user_id={USER}&api_token={KEY}");

    // The fraud report, as the docs print its URL. The installs carry
    // their click's affiliate, offer, sub and partner.
    let v = ok(&app, &format!("/api/v1/reports/fraud.json?tracker_id=81&group[]=sub_id&group[]=partner&date_start={start}&date_end={end}&timezone=UTC&{auth}")).await;
    let rows = v["fraud"]["results"]
        .as_array()
        .expect("{\"fraud\":{\"results\":[..]}}");
    assert_eq!(rows.len(), 2, "{v}");
    let s1 = &rows[0];
    assert_eq!(
        (&s1["tracker_id"], &s1["sub_id"], &s1["partner"]),
        (&json!(81), &json!("S1"), &json!("ADV1"))
    );
    assert_eq!(
        (
            &s1["conversion"],
            &s1["approved"],
            &s1["rejected"],
            &s1["goal"]
        ),
        (&json!(3), &json!(1), &json!(2), &json!(1))
    );
    // Per category, the rejected installs where its rule fired: one
    // injected, one of a blocked click that came from another country.
    assert_eq!(
        s1["reasons"],
        json!({"Click injection": 1, "Blocked click": 1, "Click mismatch": 1})
    );
    assert_eq!(
        (
            &s1["approval_rate"],
            &s1["rejection_rate"],
            &s1["goal_rate"]
        ),
        (&json!(33.33), &json!(66.67), &json!(33.33))
    );
    assert_eq!(s1["id"].as_str().map(str::len), Some(13));
    let s2 = &rows[1];
    assert_eq!(
        (
            &s2["sub_id"],
            &s2["conversion"],
            &s2["rejected"],
            &s2["goal"]
        ),
        (&json!("S2"), &json!(1), &json!(0), &json!(1))
    );
    assert_eq!(
        (&s2["reasons"], &s2["rejection_rate"], &s2["goal_rate"]),
        (&json!({}), &json!(0.0), &json!(100.0))
    );
    let keys: Vec<&str> = s1.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "tracker_id",
            "sub_id",
            "partner",
            "conversion",
            "approved",
            "rejected",
            "goal",
            "reasons",
            "approval_rate",
            "rejection_rate",
            "id",
            "goal_rate"
        ]
    );

    // ... with "minimum conversion" and "maximum rejection rate".
    let fraud = |filters: &str| {
        format!(
            "/api/v1/reports/fraud.json?tracker_id=81&group[]=sub_id&group[]=partner&{filters}&date_start={start}&date_end={end}&timezone=UTC&{auth}"
        )
    };
    let subs = |v: &Value| -> Vec<Value> {
        v["fraud"]["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["sub_id"].clone())
            .collect()
    };
    let v = ok(
        &app,
        &fraud("search_fields[]={\"term\":\"min_conversions\",\"query\":2}"),
    )
    .await;
    assert_eq!(subs(&v), [json!("S1")], "{v}");
    let v = ok(&app, &fraud("search_fields[]={\"term\":\"min_conversions\",\"query\":1}&search_fields[]={\"term\":\"max_rejection_rate\",\"query\":30}")).await;
    assert_eq!(subs(&v), [json!("S2")], "{v}");

    // The goal report: the same shape, data sources mandatory.
    let v = ok(&app, &format!("/api/v1/reports/goal.json?tracker_id=81&group[]=affiliate&date_start={start}&date_end={end}&timezone=UTC&{auth}")).await;
    let rows = v["fraud"]["results"].as_array().unwrap();
    assert_eq!(
        rows.iter()
            .map(|r| (
                r["affiliate"].clone(),
                r["conversion"].clone(),
                r["goal"].clone()
            ))
            .collect::<Vec<_>>(),
        [
            (json!("A1"), json!(3), json!(1)),
            (json!("A2"), json!(1), json!(1))
        ]
    );

    // The global report, not wrapped; one row per tracker: clicks,
    // goals and installs counted apart, installs per click.
    let v = ok(&app, &format!("/api/v1/reports/global.json?group[]=tracker_id&date_start={start}&date_end={end}&timezone=UTC&{auth}")).await;
    assert_eq!(
        v.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["results"]
    );
    let want_81 = json!({"tracker_id": 81, "click": 6, "goal": 2, "conversion": 4, "approved": 2,
        "rejected": 2, "": 0, "tracker": "adserver-eu", "conversion_rate": 66.67});
    let want_698 = json!({"tracker_id": 698, "click": 2, "goal": 0, "conversion": 1, "approved": 1,
        "rejected": 0, "": 0, "tracker": "adserver-us", "conversion_rate": 50.0});
    assert_eq!(v["results"], json!([want_81, want_698]));
    // ... filtered to one tracker.
    let v = ok(&app, &format!("/api/v1/reports/global.json?group[]=tracker_id&search_fields[]={{\"term\":\"tracker_id\",\"query\":81}}&date_start={start}&date_end={end}&timezone=UTC&{auth}")).await;
    assert_eq!(v["results"], json!([want_81]));

    // The interval report by week: every week of the range, ISO 8601
    // starts, zeros where nothing happened.
    let v = ok(&app, &format!("/api/v1/reports/interval.json?chart_type=conversion_rate&count=25&page=1&time_interval=week&group[]=tracker_id&date_start={start}&date_end={end}&timezone=UTC&{auth}")).await;
    let weeks = v["results"].as_array().unwrap();
    assert!(
        (5..=6).contains(&weeks.len()),
        "31 days are 5 or 6 weeks: {v}"
    );
    for w in weeks {
        let t = w["intervals"].as_str().unwrap();
        assert!(t.ends_with("T00:00:00+0000") && t.len() == 24, "{t}");
        let date: jiff::civil::Date = t[..10].parse().unwrap();
        assert_eq!(date.weekday(), jiff::civil::Weekday::Monday, "{t}");
    }
    let this_week = weeks.last().unwrap();
    assert_eq!(
        this_week,
        &json!({"intervals": this_week["intervals"], "click": 8, "goal": 2, "conversion": 5,
            "approved": 3, "rejected": 2, "conversion_rate": 62.5, "rejection_rate": 40.0})
    );
    let empty = &weeks[0];
    assert_eq!(
        empty,
        &json!({"intervals": empty["intervals"], "click": 0, "goal": 0, "conversion": 0, "approved": 0,
            "rejected": 0, "conversion_rate": "N/A", "rejection_rate": "N/A"})
    );
}

#[tokio::test]
async fn interval_buckets_are_every_hour_and_day_in_the_timezone_with_empty_ones_present() {
    let app = app_on(&|_| {}).await;
    seed(&app).await;
    let (start, end) = (day(-1), day(1));
    let path = |unit: &str, tz: &str| {
        format!(
            "/api/v1/reports/interval.json?time_interval={unit}&group[0]=tracker_id&group[1]=affiliate&search_fields[0]={{\"term\":\"affiliate\",\"query\":\"A1\"}}&date_start={start}&date_end={end}&timezone={tz}&api_token={KEY}"
        )
    };
    let v = ok(&app, &path("day", "UTC")).await;
    let days = v["results"].as_array().unwrap();
    assert_eq!(days.len(), 3);
    assert_eq!(days[0]["intervals"], format!("{start}T00:00:00+0000"));
    assert_eq!(days[0]["conversion"], 0, "yesterday had none");
    let sum = |key: &str| days.iter().map(|d| d[key].as_i64().unwrap()).sum::<i64>();
    // Affiliate A1: four clicks, three installs (two rejected) and a
    // goal of tracker 81; two clicks and an install of 698.
    assert_eq!(
        (
            sum("click"),
            sum("conversion"),
            sum("rejected"),
            sum("goal")
        ),
        (6, 4, 2, 1)
    );
    assert_eq!(days[1]["conversion_rate"], 66.67);
    let v = ok(&app, &path("hour", "Asia/Kolkata")).await;
    let hours = v["results"].as_array().unwrap();
    assert_eq!(hours.len(), 72);
    assert!(
        hours
            .iter()
            .all(|h| h["intervals"].as_str().unwrap().ends_with(":00:00+0530"))
    );
    assert!(hours.iter().filter(|h| h["conversion"] == 0).count() >= 70);
}

#[tokio::test]
async fn the_goal_data_source_splits_the_goals_by_their_name() {
    let app = app_on(&|_| {}).await;
    let seeded = seed(&app).await;
    // A2's click also reaches a purchase.
    let now = jiff::Timestamp::now().as_second();
    postback_as(&app, EU_KEY, &seeded.clicks[4], "purchase", now, &[]).await;
    let path = |more: &str| {
        format!(
            "/api/v1/reports/goal.json?tracker_id=81&group[]=affiliate&group[]=goal{more}&date_start={}&date_end={}&timezone=UTC&api_token={KEY}",
            day(-1),
            day(1)
        )
    };
    let rows = |v: &Value| -> Vec<Value> {
        v["fraud"]["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                json!([
                    r["affiliate"],
                    r["goal_name"],
                    r["conversion"],
                    r["goal"],
                    r["goal_rate"]
                ])
            })
            .collect()
    };
    // Per goal name, each with its group's conversions.
    let v = eventually(Duration::from_secs(5), || async {
        let v = ok(&app, &path("")).await;
        (v["fraud"]["results"].as_array()?.len() == 3).then_some(v)
    })
    .await;
    assert_eq!(
        rows(&v),
        [
            json!(["A1", "purchase", 3, 1, 33.33]),
            json!(["A2", "purchase", 1, 1, 100.0]),
            json!(["A2", "registration", 1, 1, 100.0])
        ]
    );
    let keys: Vec<&str> = v["fraud"]["results"][0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys[..4],
        ["tracker_id", "affiliate", "goal_name", "conversion"],
        "the name apart from the goals' count"
    );
    // One goal: a group without it keeps its conversions, no goal.
    let v = ok(
        &app,
        &path("&search_fields[]={\"term\":\"goal\",\"query\":\"registration\"}"),
    )
    .await;
    assert_eq!(
        rows(&v),
        [
            json!(["A1", null, 3, 0, 0.0]),
            json!(["A2", "registration", 1, 1, 100.0])
        ]
    );
    let v = ok(
        &app,
        &path("&search_fields[]={\"term\":\"min_goals_reached\",\"query\":50}"),
    )
    .await;
    assert_eq!(rows(&v).len(), 2, "A2's two goals: {v}");
}

/// The `{param_name, param_value}` of `name` in a row's extra parameters.
fn param<'v>(row: &'v Value, name: &str) -> Option<&'v Value> {
    row["extra_parameters"]
        .as_array()?
        .iter()
        .find(|p| p["param_name"] == name)
        .map(|p| &p["param_value"])
}

#[tokio::test]
async fn conversion_pages_carry_the_documented_pagination_and_sources() {
    let app = app_on(&|_| {}).await;
    let seeded = seed(&app).await;
    let all = format!(
        "/api/v1/reports/conversion.json?tracker_id=81&date_start={}&date_end={}&timezone=UTC&api_token={KEY}",
        day(-1),
        day(1)
    );
    let base = format!("{all}&count=3");
    let p1 = ok(&app, &format!("{base}&page=1")).await;
    assert_eq!(
        (
            &p1["total"],
            &p1["per_page"],
            &p1["current_page"],
            &p1["last_page"]
        ),
        (&json!(4), &json!("3"), &json!(1), &json!(2))
    );
    assert_eq!(
        (&p1["from"], &p1["to"], &p1["prev_page_url"]),
        (&json!(1), &json!(3), &Value::Null)
    );
    let next = p1["next_page_url"].as_str().unwrap();
    assert!(
        next.starts_with("/api/v1/reports/conversion.json?") && next.contains("page=2"),
        "{next}"
    );
    assert!(!next.contains(KEY), "the key is not echoed: {next}");
    let p2 = ok(&app, &format!("{next}&api_token={KEY}")).await;
    assert_eq!(
        (&p2["from"], &p2["to"], &p2["next_page_url"]),
        (&json!(4), &json!(4), &Value::Null)
    );
    assert!(p2["prev_page_url"].as_str().unwrap().contains("page=1"));
    let p3 = ok(&app, &format!("{base}&page=3")).await;
    assert_eq!(
        (&p3["from"], &p3["to"], &p3["data"]),
        (&Value::Null, &Value::Null, &json!([]))
    );

    // Newest first, every install of tracker 81 once: no click, no
    // goal, no impression.
    let hits: Vec<&Value> = p1["data"]
        .as_array()
        .unwrap()
        .iter()
        .chain(p2["data"].as_array().unwrap())
        .collect();
    let got: Vec<&str> = hits.iter().map(|h| h["_id"].as_str().unwrap()).collect();
    assert_eq!(got, newest_first(&seeded.conversions));
    let sorts: Vec<i64> = hits
        .iter()
        .map(|h| h["sort"][0].as_i64().unwrap())
        .collect();
    assert!(sorts.windows(2).all(|w| w[0] >= w[1]));

    // The install of the blocked click: every documented field,
    // fraudgate's values where it has them, null where it does not.
    let id = seeded.conversions[2].as_str();
    let hit = hits.iter().find(|h| h["_id"] == id).unwrap();
    assert_eq!(
        (&hit["_type"], &hit["_score"]),
        (&json!("conversion"), &Value::Null)
    );
    assert!(hit["_index"].as_str().unwrap().starts_with("fraudgate-"));
    let s = &hit["_source"];
    assert_eq!(s.as_object().unwrap().len(), 36, "{s}");
    for (k, want) in [
        ("tracker_id", json!(81)),
        ("affiliate", json!("A1")),
        ("sub_id", json!("S1")),
        ("product", json!("P1")),
        ("partner", json!("ADV1")),
        ("type", json!("conversion")),
        ("status", json!("rejected")),
        ("remote_address", json!("10.99.0.4")),
        ("http_user_agent", json!(UA)),
        ("country_code", json!("US")),
        ("id", json!(id)),
        ("fingerprint", Value::Null),
        ("score", Value::Null),
        ("city", Value::Null),
        ("consolidated_affiliate", json!("A1")),
        ("affiliate_label", json!("N/A")),
        ("partner_label", json!("N/A")),
        // Click to install.
        ("session_time", json!("0D, 00:10:00")),
        ("session_time_in_seconds", json!(600)),
        (
            "rejected_reason",
            json!({"rejected_reason_id": null, "simple_reason": "Blocked click",
                "advanced_reason": "its click was blocked (tags)"}),
        ),
    ] {
        assert_eq!(s[k], want, "{k}: {s}");
    }
    assert_eq!(param(s, "click_id"), Some(&json!(seeded.clicks[3])), "{s}");
    assert_eq!(param(s, "ctit"), Some(&json!("600")), "{s}");
    assert_eq!(s["request_time"].as_str().unwrap().len(), 8, "HH:MM:SS");
    assert_eq!(s["request_date"], day(0).as_str());
    // Each rule that fired, as a filter that matched.
    let filters: Vec<(&Value, &Value, &Value)> = s["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                &r["filter_id"]["simple_reason"],
                &r["filter_id"]["advanced_reason"],
                &r["matches"],
            )
        })
        .collect();
    assert_eq!(
        filters,
        [
            (
                &json!("Blocked click"),
                &json!("its click was blocked (tags)"),
                &json!(1)
            ),
            (
                &json!("Click mismatch"),
                &json!("country DE at the click, US at the conversion"),
                &json!(1)
            )
        ]
    );
    // The approved install: its payout among the extra parameters.
    let approved = &hits
        .iter()
        .find(|h| h["_id"] == seeded.conversions[0].as_str())
        .unwrap()["_source"];
    assert_eq!(
        (&approved["status"], &approved["rejected_reason"]),
        (
            &json!("approved"),
            &json!({"rejected_reason_id": "", "simple_reason": "", "advanced_reason": ""})
        )
    );
    assert_eq!(approved["reasons"], json!([]), "no rule fired");
    assert_eq!(
        (
            &approved["session_time"],
            &approved["session_time_in_seconds"]
        ),
        (&json!("0D, 00:06:46"), &json!(406)),
        "as the docs print it"
    );
    assert_eq!(
        (param(approved, "payout"), param(approved, "currency")),
        (Some(&json!("1.50")), Some(&json!("USD")))
    );

    // The documented filters.
    let total = |filter: &'static str| {
        let path = format!("{base}&page=1&search_fields[]={filter}");
        let app = &app;
        async move { ok(app, &path).await["total"].clone() }
    };
    assert_eq!(total(r#"{"term":"status","query":"rejected"}"#).await, 2);
    assert_eq!(total(r#"{"term":"country_code","query":"FR"}"#).await, 1);
    assert_eq!(total(r#"{"term":"sub_id","query":"S1"}"#).await, 3);
    assert_eq!(
        total(r#"{"term":"rejected_reason.advanced_reason","query":"ctit_short"}"#).await,
        1
    );
    assert_eq!(
        total(r#"{"term":"rejected_reason.simple_reason","query":"Click injection"}"#).await,
        1
    );
    assert_eq!(
        total(r#"{"term":"rejected_reason.simple_reason","query":"tags"}"#).await,
        0,
        "every rejected install names its rule"
    );
    assert_eq!(
        total(r#"{"term":"min_score","query":0}"#).await,
        0,
        "no score is kept"
    );
    // With the clicks and the goals: `_type` says which is which.
    let with = |more: &str| {
        let path = format!("{all}&page=1&count=20{more}");
        let app = &app;
        async move { ok(app, &path).await }
    };
    assert_eq!(with("&click=1").await["total"], 10);
    // The datacenter click: RT's tags, no rule.
    let v = with(
        "&click=1&search_fields[]={\"term\":\"rejected_reason.simple_reason\",\"query\":\"tags\"}",
    )
    .await;
    assert_eq!(v["total"], 1, "{v}");
    assert_eq!(
        v["data"][0]["_source"]["rejected_reason"],
        json!({"rejected_reason_id": null, "simple_reason": "tags", "advanced_reason": "datacenter"})
    );
    let v = with("&click=1&goal=1&search_fields[]={\"term\":\"partner\",\"query\":\"ADV1\"}").await;
    // The A1 clicks, and what they converted (credited to their partner).
    assert_eq!(v["total"], 8, "4 clicks, 3 installs, 1 goal: {v}");
    let v = with("&goal=1").await;
    let mut types: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["_type"].as_str().unwrap())
        .collect();
    types.sort_unstable();
    assert_eq!(
        types,
        [
            "conversion",
            "conversion",
            "conversion",
            "conversion",
            "goal",
            "goal"
        ]
    );
}

#[tokio::test]
async fn the_scroll_walks_every_conversion_exactly_once_by_get_and_by_post_form() {
    let app = app_on(&|_| {}).await;
    let seeded = seed(&app).await;
    let params = format!(
        "click=0&count=2&date_end={}&date_start={}&goal=0&page=1&timezone=UTC&tracker_id=81",
        day(1),
        day(-1)
    );
    let want = newest_first(&seeded.conversions);
    // GET, following next_page_url.
    let mut got = Vec::new();
    let mut path = format!("/api/v1/reports/conversion_scroll.json?{params}&user_id={USER}");
    loop {
        let v = ok(&app, &format!("{path}&api_token={KEY}")).await;
        let data = v["data"].as_array().unwrap();
        assert!(data.len() <= 2);
        got.extend(data.iter().map(|d| d["id"].as_str().unwrap().to_owned()));
        for d in data {
            assert_eq!(d.as_object().unwrap().len(), 32, "{d}");
            assert_eq!(d["tracker_id"], "81", "a string, as printed");
            assert_eq!(d["type"], "conversion");
            if d["id"] == seeded.conversions[3].as_str() {
                assert_eq!(
                    (&d["session_time"], &d["session_time_in_seconds"]),
                    (&json!("0D, 00:02:00"), &json!(120))
                );
            }
        }
        match v["next_page_url"].as_str() {
            Some(next) => path = next.to_owned(),
            None => break,
        }
        assert!(got.len() <= 4, "the scroll ends");
    }
    assert_eq!(got, want);
    // POST, as the SDK sends it: the report's parameters in the URL and
    // the form, the user and key in the URL.
    let mut got = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut form = params.clone();
        if let Some(c) = &cursor {
            form.push_str(&format!("&next_page_id={c}"));
        }
        let r = app
            .http
            .post(app.url(&format!(
                "/api/v1/reports/conversion_scroll.json?{form}&user_id={USER}&api_token={KEY}"
            )))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let v = json(r).await;
        got.extend(
            v["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["id"].as_str().unwrap().to_owned()),
        );
        let Some(next) = v["next_page_url"].as_str() else {
            break;
        };
        let id = next.split("next_page_id=").nth(1).unwrap();
        cursor = Some(id.to_owned());
        assert!(got.len() <= 4, "the scroll ends");
    }
    assert_eq!(got, want);
}

#[tokio::test]
async fn an_entry_is_found_by_its_type_and_decision_id() {
    let app = app_on(&|_| {}).await;
    let seeded = seed(&app).await;
    let entry = |kind: &str, id: &str| {
        format!("/api/v1/reports/{kind}/{id}?user_id={USER}&api_token={KEY}")
    };
    let injected = seeded.conversions[1].as_str();
    let v = ok(&app, &entry("conversion", injected)).await;
    let e = v.as_array().expect("an array of one");
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].as_object().unwrap().len(), 33, "{v}");
    assert_eq!(
        (&e[0]["id"], &e[0]["type"], &e[0]["status"]),
        (&json!(injected), &json!("conversion"), &json!("rejected"))
    );
    assert_eq!(
        (&e[0]["reason"], &e[0]["advanced_reason"]),
        (
            &json!("Click injection"),
            &json!("3 s from click to install, under 10 s")
        )
    );
    assert!(e[0]["request_time"].as_str().unwrap().ends_with("+00:00"));
    assert_eq!(
        (&e[0]["session_time"], &e[0]["session_time_in_seconds"]),
        (&json!("00:00:03"), &json!(3)),
        "the entry's form"
    );
    let v = ok(&app, &entry("click", &seeded.clicks[0])).await;
    assert_eq!(v[0]["session_time"], Value::Null, "a click has no CTIT");
    assert_eq!(
        (&v[0]["id"], &v[0]["type"], &v[0]["status"]),
        (
            &json!(seeded.clicks[0]),
            &json!("click"),
            &json!("approved")
        )
    );
    let v = ok(&app, &entry("goal", &seeded.goals[0])).await;
    assert_eq!(
        (&v[0]["type"], &v[0]["affiliate"]),
        (&json!("goal"), &json!("A1"))
    );
    // A goal's own fields among the extra parameters, as the docs print them.
    let e = &v[0];
    assert_eq!(
        ["goal", "payout", "currency", "status", "ctit"].map(|k| param(e, k)),
        [
            Some(&json!("purchase")),
            Some(&json!("20")),
            Some(&json!("EUR")),
            Some(&json!("approved")),
            Some(&json!("900"))
        ]
    );
    // An install is no click, a click no conversion, a goal neither.
    for (kind, id) in [
        ("click", injected),
        ("conversion", seeded.clicks[0].as_str()),
        ("conversion", seeded.goals[0].as_str()),
        ("goal", seeded.conversions[0].as_str()),
    ] {
        refused(&app, &entry(kind, id), 404, "entry_id").await;
    }
    refused(&app, &entry("banner", &seeded.clicks[0]), 404, "entry_type").await;
    refused(
        &app,
        &entry("conversion", "FS_59412b282a0150.92227388"),
        404,
        "entry_id",
    )
    .await;
}

#[tokio::test]
async fn bad_requests_name_the_field_and_user_id_must_match_the_key() {
    let app = app_on(&|_| {}).await;
    let dates = format!("date_start={}&date_end={}&timezone=UTC", day(-1), day(0));
    let fraud = format!("/api/v1/reports/fraud.json?tracker_id=81&{dates}");
    ok(&app, &format!("{fraud}&user_id={USER}&api_token={KEY}")).await;
    ok(&app, &format!("{fraud}&api_token={KEY}")).await;
    refused(
        &app,
        &format!("{fraud}&user_id=someone-else&api_token={KEY}"),
        403,
        "user_id",
    )
    .await;
    refused(
        &app,
        &format!("{fraud}&user_id={USER}&api_token=WRONG-TOKEN-0123456"),
        401,
        "key",
    )
    .await;
    for (path, field) in [
        (format!("/api/v1/reports/fraud.json?{dates}"), "tracker_id"),
        (
            format!("/api/v1/reports/fraud.json?tracker_id=99&{dates}"),
            "tracker_id",
        ),
        (format!("{fraud}&group[]=color"), "group"),
        (
            format!("{fraud}&search_fields[]={{\"term\":\"min_events\",\"query\":1}}"),
            "search_fields",
        ),
        (format!("{fraud}&format=csv"), "format"),
        (
            format!("/api/v1/reports/conversion.json?tracker_id=81&{dates}"),
            "count",
        ),
        (
            format!("/api/v1/reports/global.json?{dates}&group[]=affiliate"),
            "group",
        ),
        (
            format!(
                "/api/v1/reports/interval.json?{dates}&group[]=tracker_id&time_interval=fortnight"
            ),
            "time_interval",
        ),
        (
            format!(
                "/api/v1/reports/conversion_scroll.json?tracker_id=81&count=2&{dates}&next_page_id=bm9wZQ"
            ),
            "next_page_id",
        ),
    ] {
        refused(&app, &format!("{path}&api_token={KEY}"), 400, field).await;
    }
    // The native dialect keeps its own vocabulary.
    let v = ok(&app, &format!("/v1/reports/fraud?key={KEY}")).await;
    assert!(v["fraud"]["results"].is_array());
}
