//! The decision log: every door's decisions recorded, queryable through
//! the Data API and the reports within a second; bad queries are 400s
//! naming the part; values never reach SQL as text.

use std::time::Duration;

use fraudgate::config::{Config, OfferConfig, Secret, SecretList};
use serde_json::{Value, json};

use crate::helpers::*;

const REPORT_KEY: &str = "REPORT-KEY-4d1c9e";

/// Points an app's decision log at a store. The suites below run against
/// every store: SQLite here, ClickHouse in `clickhouse.rs`.
pub type Store<'a> = &'a (dyn Fn(&mut Config) + Sync);

/// The default store: SQLite in the test's own directory.
fn sqlite(_: &mut Config) {}

/// JSON lines of a Data API answer.
pub async fn lines(app: &TestApp, path: &str) -> Vec<Value> {
    let r = app.get(path).await;
    let status = r.status();
    if status != 200 {
        panic!("{path}: {status} {}", r.text().await.unwrap_or_default());
    }
    assert_eq!(r.headers()["content-type"], "application/x-ndjson");
    r.text()
        .await
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Polls until the Data API returns `n` rows for `path`.
pub async fn rows(app: &TestApp, path: &str, n: usize) -> Vec<Value> {
    eventually(Duration::from_secs(3), || async {
        let v = lines(app, path).await;
        (v.len() == n).then_some(v)
    })
    .await
}

#[tokio::test]
async fn every_door_records_its_decisions_queryable_within_a_second() {
    every_door_suite(&sqlite).await;
}

pub async fn every_door_suite(store: Store<'_>) {
    let app = spawn_app_with(|c| {
        store(c);
        c.offers = vec![OfferConfig {
            id: "34713".into(),
            url: "https://adv.example/l?c={click_id}".into(),
            fallback_url: None,
        }];
    })
    .await;
    app.mock.on_ip("10.95.0.1", Reply::tags("proxy"));
    let (_, check) = app
        .check(&query(
            "10.95.0.1",
            &[
                ("aff_sub1", "banner-7"),
                ("country_code", "DE"),
                ("source", "feed"),
            ],
        ))
        .await;
    app.post_json(
        "/v1/check/batch",
        &json!([{"event_type": "impression", "ip": "10.95.0.2", "ua": UA, "affiliate_id": "6251", "offer_id": "34713"}]).to_string(),
    )
    .await;
    app.get(&format!("/?{}", rt_query("10.95.0.3", &[]))).await;
    app.get("/v1/auth?offer_id=34713&affiliate_id=6251").await;
    no_redirects()
        .get(app.url("/click?offer_id=34713&affiliate_id=6251"))
        .send()
        .await
        .unwrap();
    app.get("/imp?offer_id=34713&affiliate_id=6251").await;
    app.post_json(
        "/v1/openrtb",
        &json!({"id": "r1", "imp": [{"id": "1"}], "site": {"id": "s", "publisher": {"id": "p"}},
                "device": {"ip": "10.95.0.4", "ua": UA}})
        .to_string(),
    )
    .await;
    let all = rows(
        &app,
        "/v1/data/all?field=door&sort=door_asc&page_size=50",
        7,
    )
    .await;
    let doors: Vec<&str> = all.iter().map(|r| r["door"].as_str().unwrap()).collect();
    assert_eq!(
        doors,
        ["auth", "batch", "check", "click", "imp", "openrtb", "rt"]
    );

    // The check decision, with every field recorded.
    let id = check["id"].as_str().unwrap();
    let e: Value = json(app.get(&format!("/v1/reports/entry/{id}")).await).await;
    assert_eq!(e["id"], id, "{e}");
    // As CSV: a header of every field, then the decision.
    let r = app.get(&format!("/v1/reports/entry/{id}?format=csv")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/csv; charset=utf-8");
    let text = r.text().await.unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].starts_with("id,ts,"), "{text}");
    assert!(lines[1].starts_with(&format!("{id},")), "{text}");
    assert!(lines[1].contains("10.95.0.1"), "{text}");
    assert_eq!(e["ip"], "10.95.0.1");
    assert_eq!(e["ua"], UA);
    assert_eq!(e["aff_sub1"], "banner-7");
    assert_eq!(e["country_code"], "DE");
    assert_eq!(
        e["extra"],
        json!({"source": "feed"}),
        "other RT fields are kept"
    );
    assert_eq!(
        (e["decision"].as_str(), e["would_be"].as_str()),
        (Some("block"), Some("block"))
    );
    assert_eq!(e["tags"], "proxy");
    assert_eq!(
        (e["ivt"].as_str(), e["ivt_category"].as_str()),
        (Some("sivt"), Some("invalid_proxy"))
    );
    assert_eq!(e["source"], "upstream");
    assert!(e["elapsed_us"].as_i64().unwrap() > 0);
    // (The rows can be read a moment before the writer counts them.)
    let m = eventually(Duration::from_secs(3), || async {
        let m = app.metrics().await;
        (sample(&m, "fraudgate_log_written_total", &[]) == 7.0).then_some(m)
    })
    .await;
    assert_eq!(sample(&m, "fraudgate_log_dropped_total", &[]), 0.0);
}

#[tokio::test]
async fn the_client_name_is_recorded_not_its_key() {
    let app = spawn_app_with(|c| {
        c.auth
            .client_keys
            .insert("acme".into(), Secret::new(CLIENT_KEY));
    })
    .await;
    app.http
        .get(app.url(&format!("/v1/check?{}", query("10.95.1.1", &[]))))
        .header("x-api-key", CLIENT_KEY)
        .send()
        .await
        .unwrap();
    let v = rows(&app, "/v1/data/click?field=client,ip", 1).await;
    assert_eq!(v[0]["client"], "acme");
    let text = app
        .get("/v1/data/click?field=id,client,ip,ua,extra,rules")
        .await
        .text()
        .await
        .unwrap();
    assert!(!text.contains(CLIENT_KEY));
}

pub async fn seeded(store: Store<'_>) -> TestApp {
    let app = spawn_app_with(store).await;
    app.mock.on_ip("10.96.0.1", Reply::tags("datacenter"));
    app.mock.on_ip("10.96.0.2", Reply::tags("proxy"));
    for (ip, aff) in [
        ("10.96.0.1", "1"),
        ("10.96.0.2", "1"),
        ("10.96.0.3", "2"),
        ("10.96.0.4", "2"),
        ("10.96.0.5", "2"),
    ] {
        app.check(&query(ip, &[]).replace("affiliate_id=6251", &format!("affiliate_id={aff}")))
            .await;
    }
    rows(&app, "/v1/data/click?field=id", 5).await;
    app
}

fn q(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn the_data_api_filters_sorts_pages_and_groups() {
    data_api_suite(&sqlite).await;
}

pub async fn data_api_suite(store: Store<'_>) {
    let app = seeded(store).await;
    let v = lines(
        &app,
        &format!(
            "/v1/data/click?field=ip&filter={}&sort=ip_asc",
            q(r#"["AND", ["affiliate_id", "2"], ["ip_ne", "10.96.0.4"]]"#)
        ),
    )
    .await;
    assert_eq!(v, [json!({"ip": "10.96.0.3"}), json!({"ip": "10.96.0.5"})]);
    let v = lines(
        &app,
        "/v1/data/click?field=ip&sort=ip_desc&page=2&page_size=2",
    )
    .await;
    assert_eq!(v, [json!({"ip": "10.96.0.3"}), json!({"ip": "10.96.0.2"})]);
    let v = lines(
        &app,
        &format!(
            "/v1/data/click?field=ip&filter={}&sort=ip_asc",
            q(r#"["OR", ["tag", "proxy"], ["ip_in", ["10.96.0.5"]]]"#)
        ),
    )
    .await;
    assert_eq!(v, [json!({"ip": "10.96.0.2"}), json!({"ip": "10.96.0.5"})]);
    let v = lines(
        &app,
        &format!(
            "/v1/data/click?field=ip&filter={}",
            q(r#"["NOT", ["ip_like", "10.96.0.%"]]"#)
        ),
    )
    .await;
    assert!(v.is_empty());
    assert!(
        lines(&app, "/v1/data/impression?field=ip").await.is_empty(),
        "clicks only"
    );

    let v = lines(
        &app,
        &format!(
            "/v1/data/all/groups?group=affiliate_id&field=count,blocked,block_rate,uniq_ip,tag_datacenter,ivt_givt,ivt_sivt&sort=affiliate_id_asc&having={}",
            q(r#"["count_ge", 1]"#)
        ),
    )
    .await;
    assert_eq!(
        v,
        [
            json!({"affiliate_id": "1", "count": 2, "blocked": 2, "block_rate": 100.0, "uniq_ip": 2, "tag_datacenter": 1, "ivt_givt": 1, "ivt_sivt": 1}),
            json!({"affiliate_id": "2", "count": 3, "blocked": 0, "block_rate": 0.0, "uniq_ip": 3, "tag_datacenter": 0, "ivt_givt": 0, "ivt_sivt": 0}),
        ]
    );
    let v = lines(
        &app,
        &format!(
            "/v1/data/all/groups?group=affiliate_id&having={}",
            q(r#"["block_rate_gt", 50]"#)
        ),
    )
    .await;
    assert_eq!(v, [json!({"affiliate_id": "1", "count": 2})]);
    // A `having` on an aggregate not asked for in `field` (ip is not a
    // rollup dimension: the rows answer it, as when it is asked for).
    let v = lines(
        &app,
        &format!(
            "/v1/data/all/groups?group=affiliate_id&field=count&having={}",
            q(r#"["uniq_ip_gt", 2]"#)
        ),
    )
    .await;
    assert_eq!(v, [json!({"affiliate_id": "2", "count": 3})]);
    let v = lines(
        &app,
        "/v1/data/all/groups?group=ivt&group=ivt_category&field=count&sort=ivt_asc",
    )
    .await;
    assert_eq!(
        v[0],
        json!({"ivt": "givt", "ivt_category": "data_center", "count": 1})
    );

    // Dates in the query's zone; today is in range, yesterday is not.
    let tz = "Pacific/Kiritimati"; // UTC+14: its date is often not UTC's
    let today = jiff::Zoned::now()
        .with_time_zone(jiff::tz::TimeZone::get(tz).unwrap())
        .date();
    let f = format!(r#"["AND", ["date_ge", "{today}"], ["date_le", "{today}"]]"#);
    let v = lines(
        &app,
        &format!(
            "/v1/data/click/groups?group=date&tz={}&filter={}",
            q(tz),
            q(&f)
        ),
    )
    .await;
    assert_eq!(v, [json!({"date": today.to_string(), "count": 5})]);
    let f = format!(r#"["date_le", "{}"]"#, today.yesterday().unwrap());
    assert!(
        lines(
            &app,
            &format!("/v1/data/click?tz={}&filter={}", q(tz), q(&f))
        )
        .await
        .is_empty()
    );

    // CSV.
    let r = app
        .get("/v1/data/click?field=ip,affiliate_id&sort=ip_asc&page_size=1&format=csv")
        .await;
    assert_eq!(r.headers()["content-type"], "text/csv; charset=utf-8");
    assert_eq!(
        r.text().await.unwrap(),
        "ip,affiliate_id\r\n10.96.0.1,1\r\n"
    );
}

#[tokio::test]
async fn bad_queries_are_400s_naming_the_part() {
    let app = spawn_app().await;
    for (path, field, needle) in [
        ("/v1/data/click?field=nope", "field", "unknown field"),
        (
            "/v1/data/click?filter=%5B%22AND%22%2C",
            "filter",
            "bad JSON at position",
        ),
        (
            "/v1/data/click?filter=%5B%22ip_between%22%2C1%5D",
            "filter",
            "unknown field",
        ),
        (
            "/v1/data/click?page_size=1000001",
            "page_size",
            "out of range",
        ),
        (
            "/v1/data/click?tz=Mars%2FOlympus",
            "tz",
            "unknown time zone",
        ),
        ("/v1/data/click?sort=ua", "sort", "_asc"),
        ("/v1/data/click?color=red", "color", "unknown parameter"),
        ("/v1/data/click?page=1&page=2", "page", "more than once"),
        (
            "/v1/data/click?filter=%5B%22XOR%22%2C%5B%22ip%22%2C1%5D%5D",
            "filter",
            "unknown operator",
        ),
        (
            "/v1/data/conversion",
            "event",
            "click, impression, all, install or custom",
        ),
        ("/v1/data/click/groups?field=count", "group", "at least one"),
        (
            "/v1/data/click/groups?group=ip&field=median_x",
            "field",
            "unknown aggregate",
        ),
        (
            "/v1/data/click/groups?group=ip&having=%5B%22nope_gt%22%2C1%5D",
            "having",
            "neither",
        ),
        ("/v1/data/click?format=xml", "format", "json or csv"),
        ("/v1/reports/fraud?group[]=ua", "group", "group by one of"),
        (
            "/v1/reports/fraud?date_start=yesterday",
            "date_start",
            "yyyy-mm-dd",
        ),
        ("/v1/reports/interval", "time_interval", "required"),
        (
            "/v1/reports/fraud?search_fields[]=%7B%22term%22%3A%22x%22%2C%22query%22%3A1%7D",
            "search_fields",
            "unknown term",
        ),
        (
            "/v1/reports/fraud?search_fields[]=%7B%22term%22%3A%22min_events%22%2C%22query%22%3A%22x%22%7D",
            "search_fields",
            "min_events: query is a number",
        ),
        (
            "/v1/reports/global?date_start=2026-12-05&date_end=2026-12-01",
            "date_end",
            "before date_start",
        ),
        (
            "/v1/reports/entry/0190d5c0-0000-7000-8000-000000000000?bogus=1",
            "bogus",
            "unknown parameter",
        ),
        (
            "/v1/reports/entry/0190d5c0-0000-7000-8000-000000000000?format=xml",
            "format",
            "json or csv",
        ),
    ] {
        let r = app.get(path).await;
        assert_eq!(r.status(), 400, "{path}");
        let v = json(r).await;
        assert_eq!(v["field"], field, "{path}: {v}");
        assert!(
            v["message"].as_str().unwrap().contains(needle),
            "{path}: {v}"
        );
    }
    let r = app.get("/v1/reports/entry/nope").await;
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn values_never_reach_sql_as_text() {
    injection_suite(&sqlite).await;
}

pub async fn injection_suite(store: Store<'_>) {
    let app = seeded(store).await;
    let evil = [
        "' OR '1'='1",
        "1; DROP TABLE x; --",
        "\" OR 1=1 --",
        "') UNION SELECT sqlite_version(), 1 --",
        // A backslash may not escape the closing quote (ClickHouse reads
        // backslash escapes in literals).
        "\\' OR 1=1 --",
        "\\') UNION ALL SELECT version() --",
    ];
    for e in evil {
        for filter in [
            json!(["affiliate_id", e]),
            json!(["ip_in", [e, "x"]]),
            // A literal backslash in a _like pattern is written `\\`.
            json!(["ua_like", e.replace('\\', "\\\\")]),
        ] {
            let v = lines(
                &app,
                &format!("/v1/data/click?field=ip&filter={}", q(&filter.to_string())),
            )
            .await;
            assert!(v.is_empty(), "{filter}: {v:?}");
        }
        if e.contains('\\') {
            // A lone one escapes nothing it may: refused, not passed on.
            let path = format!(
                "/v1/data/click?field=ip&filter={}",
                q(&json!(["ua_like", e]).to_string())
            );
            assert_eq!(app.get(&path).await.status(), 400, "{path}");
        }
        // Names are never free text: refused, not interpolated.
        for path in [
            format!("/v1/data/click?field={}", q(e)),
            format!("/v1/data/click?sort={}_asc", q(e)),
            format!("/v1/data/click/groups?group={}", q(e)),
            format!("/v1/data/click?tz={}", q(e)),
            format!("/v1/data/click?filter={}", q(&json!([e, 1]).to_string())),
            // A number column compares with numbers only.
            format!(
                "/v1/data/click?filter={}",
                q(&json!(["elapsed_us_gt", e]).to_string())
            ),
            format!("/v1/reports/fraud?timezone={}", q(e)),
            format!("/v1/reports/entry/{}", q(e)),
        ] {
            let s = app.get(&path).await.status().as_u16();
            assert!(s == 400 || s == 404, "{path}: {s}");
        }
    }
    assert_eq!(
        rows(&app, "/v1/data/click?field=id", 5).await.len(),
        5,
        "the data is intact"
    );
}

#[tokio::test]
async fn the_fraud_global_and_interval_reports_speak_fraudshield() {
    reports_suite(&sqlite).await;
}

pub async fn reports_suite(store: Store<'_>) {
    let app = seeded(store).await;
    let v: Value = json(app.get("/v1/reports/fraud?group[]=affiliate_id").await).await;
    let results = v["fraud"]["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    let one = &results[0];
    assert_eq!(one["affiliate_id"], "1", "most blocked first");
    assert_eq!(
        (
            one["events"].as_i64(),
            one["blocked"].as_i64(),
            one["allowed"].as_i64()
        ),
        (Some(2), Some(2), Some(0))
    );
    assert_eq!(one["block_rate"], 100.0);
    assert_eq!(one["reasons"], json!({"datacenter": 1, "proxy": 1}));
    assert_eq!(
        (one["ivt_givt"].as_i64(), one["ivt_sivt"].as_i64()),
        (Some(1), Some(1))
    );
    let f = q(r#"{"term":"min_block_rate","query":50}"#);
    let v: Value = json(
        app.get(&format!(
            "/v1/reports/fraud?group[]=affiliate_id&search_fields[]={f}"
        ))
        .await,
    )
    .await;
    assert_eq!(v["fraud"]["results"].as_array().unwrap().len(), 1);
    let f = q(r#"{"term":"affiliate_id","query":"2"}"#);
    let v: Value = json(
        app.get(&format!("/v1/reports/global?search_fields[]={f}"))
            .await,
    )
    .await;
    assert_eq!(v["global"]["results"][0]["events"], 3);

    let v: Value = json(
        app.get("/v1/reports/interval?time_interval=day&timezone=UTC")
            .await,
    )
    .await;
    let r = &v["results"][0];
    assert_eq!(
        (r["events"].as_i64(), r["blocked"].as_i64()),
        (Some(5), Some(2))
    );
    assert_eq!(
        r["intervals"],
        jiff::Zoned::now()
            .with_time_zone(jiff::tz::TimeZone::UTC)
            .date()
            .to_string()
    );
    let csv = app
        .get("/v1/reports/fraud?group[]=affiliate_id&format=csv")
        .await
        .text()
        .await
        .unwrap();
    // CSV carries the JSON's names.
    assert!(
        csv.starts_with(
            "affiliate_id,events,allowed,blocked,block_rate,ivt_givt,ivt_sivt,reasons\r\n"
        ),
        "{csv}"
    );
    // An empty range is zeros, not nulls.
    let v: Value = json(
        app.get("/v1/reports/global?date_start=2020-01-01&date_end=2020-01-01")
            .await,
    )
    .await;
    assert_eq!(v["global"]["results"][0]["blocked"], 0, "{v}");
    assert_eq!(v["global"]["results"][0]["block_rate"], 0.0, "{v}");
}

#[tokio::test]
async fn report_keys_guard_the_query_side() {
    let app = spawn_app_with(|c| {
        c.auth.report_keys = SecretList(vec![Secret::new(REPORT_KEY)]);
        c.auth.admin_keys = SecretList(vec![Secret::new(ADMIN_KEY)]);
    })
    .await;
    assert_eq!(app.get("/v1/data/click").await.status(), 401);
    assert_eq!(app.get("/v1/reports/fraud?key=WRONG").await.status(), 401);
    assert_eq!(
        app.get(&format!("/v1/data/click?key={REPORT_KEY}"))
            .await
            .status(),
        200
    );
    let r = app
        .http
        .get(app.url("/v1/reports/fraud"))
        .header("x-api-key", REPORT_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = app
        .http
        .get(app.url("/v1/data/all/groups?group=ip"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // An admin key in a URL would end up in access logs: headers only.
    assert_eq!(
        app.get(&format!("/v1/data/click?key={ADMIN_KEY}"))
            .await
            .status(),
        401
    );
}

/// A GET of the Data API with these headers (the client sets Host from
/// the URL unless one is given).
async fn data_with(app: &TestApp, headers: &[(&str, &str)]) -> u16 {
    let mut r = app.http.get(app.url("/v1/data/click?field=ip"));
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn without_report_keys_only_a_local_request_reads_the_log() {
    let app = spawn_app().await;
    assert_eq!(data_with(&app, &[]).await, 200, "a local request");
    assert_eq!(data_with(&app, &[("host", "localhost")]).await, 200);
    // Through a proxy on the same host: the peer is loopback, the client
    // is not.
    for h in [
        "x-forwarded-for",
        "x-real-ip",
        "forwarded",
        "x-forwarded-host",
    ] {
        assert_eq!(data_with(&app, &[(h, "203.0.113.9")]).await, 401, "{h}");
    }
    // DNS rebinding: a page of evil.example whose name now points here.
    let r = app
        .http
        .get(app.url("/v1/reports/fraud"))
        .header("host", format!("evil.example:{}", app.port))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert!(v["message"].as_str().unwrap().contains("report key"), "{v}");
    for h in ["via", "x-forwarded-proto"] {
        assert_eq!(data_with(&app, &[(h, "1.1 nginx")]).await, 401, "{h}");
    }
}

#[tokio::test]
async fn local_reports_off_closes_the_keyless_query_side_to_everyone() {
    let app = spawn_app_with(|c| c.auth.local_reports = false).await;
    assert_eq!(data_with(&app, &[]).await, 401);
    assert_eq!(data_with(&app, &[("host", "localhost")]).await, 401);
}

#[tokio::test]
async fn hashed_ips_are_stored_and_groupable_but_not_readable() {
    hashed_ip_suite(&sqlite).await;
}

pub async fn hashed_ip_suite(store: Store<'_>) {
    let app = spawn_app_with(|c| {
        store(c);
        c.decision_log.ip = fraudgate::decision_log::IpMode::Hashed;
    })
    .await;
    app.check_ip("10.97.0.1").await;
    app.check_ip("10.97.0.1").await;
    let v = rows(&app, "/v1/data/click/groups?group=ip", 1).await;
    let ip = v[0]["ip"].as_str().unwrap();
    assert_eq!(ip.len(), 32);
    assert!(!ip.contains("10.97"));
    assert_eq!(v[0]["count"], 2);
}

#[tokio::test]
async fn shutdown_flushes_the_queue_and_the_store_reopens_intact() {
    let dir = temp_dir("flush");
    let path = dir.display().to_string();
    let mut app = spawn_app_with(|c| c.decision_log.path = path.clone()).await;
    let app_ref = &app;
    futures_util::future::join_all((0..50).map(|i| async move {
        app_ref.check_ip(&format!("10.98.0.{i}")).await;
    }))
    .await;
    app.shutdown();
    tokio::time::timeout(Duration::from_secs(10), app.stopped.take().unwrap())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    // Every decision is on disk when run_until_stopped returns.
    assert_eq!(stored_decisions(&dir), 50);
}

#[tokio::test]
async fn the_cli_reads_the_same_store_as_a_table_csv_or_json() {
    let dir = temp_dir("cli");
    let path = dir.display().to_string();
    let app = spawn_app_with(|c| c.decision_log.path = path.clone()).await;
    app.mock.on_ip("10.99.0.1", Reply::tags("datacenter"));
    app.check_ip("10.99.0.1").await;
    app.check_ip("10.99.0.2").await;
    rows(&app, "/v1/data/click?field=id", 2).await;
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_fraudgate"))
            .args(args)
            .env("FRAUDGATE_DECISION_LOG__PATH", &path)
            .current_dir(std::env::temp_dir())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, _) = cli(&[
        "query",
        "click",
        "field=ip,decision",
        "sort=ip_asc",
        "format=csv",
    ]);
    assert_eq!(code, Some(0));
    assert_eq!(out, "ip,decision\r\n10.99.0.1,block\r\n10.99.0.2,allow\r\n");
    let (code, out, _) = cli(&["report", "fraud", "group[]=affiliate_id"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("| affiliate_id") && out.contains("6251") && out.contains("50.0"),
        "{out}"
    );
    assert!(out.contains("1 row"), "{out}");
    let (code, out, _) = cli(&[
        "query",
        "all",
        "--groups",
        "group=ivt",
        "field=count",
        "format=json",
        "sort=ivt_asc",
    ]);
    assert_eq!(code, Some(0));
    assert_eq!(
        out,
        "{\"ivt\":\"givt\",\"count\":1}\n{\"ivt\":\"none\",\"count\":1}\n"
    );
    let (code, _, err) = cli(&["query", "click", "field=nope"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("unknown field \"nope\""), "{err}");
    // A reader that has gone (`| head`): no panic, a clean exit.
    for format in ["format=json", "format=csv", "format=table"] {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_fraudgate"))
            .args(["query", "click", "field=ip", format])
            .env("FRAUDGATE_DECISION_LOG__PATH", &path)
            .current_dir(std::env::temp_dir())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{format}: {err}");
        assert!(!err.contains("panicked"), "{format}: {err}");
    }
}
