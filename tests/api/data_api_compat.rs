//! The FraudScore Data API's own requests (reference 000), sent as its
//! docs write them, host aside: `/{channel}/{event}[/groups]` under
//! `/data`, `key` a report key, its field names, `install`/`custom`.

use serde_json::{Value, json};

use crate::decision_log::{Store, lines, rows};
use crate::helpers::*;

const KEY: &str = "USER-KEY-0123456789";

/// The docs' filter: 2024-01-01 to 2024-06-01 and offer id1 or id2.
const DOC_FILTER: &str = "%5B%22AND%22%2C+%5B%22date_ge%22%2C+%222024-01-01%22%5D%2C+%5B%22date_le%22%2C+%222024-06-01%22%5D%2C+%5B%22OR%22%2C+%5B%22offer_id%22%2C+%22id1%22%5D%2C+%5B%22offer_id%22%2C+%22id2%22%5D%5D%5D";

async fn app() -> TestApp {
    app_on(&|_| {}).await
}

async fn app_on(store: Store<'_>) -> TestApp {
    spawn_app_with(|c| {
        store(c);
        c.auth.report_keys =
            fraudgate::config::SecretList(vec![fraudgate::config::Secret::new(KEY)]);
    })
    .await
}

#[tokio::test]
async fn the_docs_requests_answer_as_documented() {
    docs_requests_suite(&|_| {}).await;
}

/// Run on SQLite here and on ClickHouse in `clickhouse.rs`.
pub async fn docs_requests_suite(store: Store<'_>) {
    let app = app_on(store).await;
    let q = query("10.98.0.1", &[("offer_name", "Mobile App (iOS)")]);
    app.check(&q).await;
    // events_list.py, as its docs print the URL (install: none recorded).
    let list = format!(
        "/data/channel_id/install?key={KEY}&field=datetime&field=offer_id&field=affiliate_id&field=ipv4_str&field=ua&filter={DOC_FILTER}&sort=offer_id_asc&sort=datetime_desc&page=1&page_size=100&tz=UTC"
    );
    assert_eq!(lines(&app, &list).await, Vec::<Value>::new());
    // events_grouping.py.
    let groups = format!(
        "/data/channel_id/install/groups?key={KEY}&group=date&group=ipv4_str&field=any_offer_name&field=any_affiliate_name&filter={DOC_FILTER}&having=%5B%22count_ge%22%2C+%2210%22%5D&sort=any_offer_name_asc&sort=any_affiliate_name_desc&page=1&page_size=100&tz=UTC"
    );
    assert_eq!(lines(&app, &groups).await, Vec::<Value>::new());

    // The same requests for clicks, today: the documented columns.
    let v = rows(
        &app,
        &format!(
            "/data/channel_id/click?key={KEY}&field=datetime&field=offer_id&field=affiliate_id&field=ipv4_str&field=ua&field=offer_name&field=affiliate_name"
        ),
        1,
    )
    .await;
    let row = &v[0];
    assert_eq!(row["ipv4_str"], "10.98.0.1");
    assert_eq!(
        (&row["offer_id"], &row["affiliate_id"]),
        (&json!("34713"), &json!("6251"))
    );
    assert_eq!(row["offer_name"], "Mobile App (iOS)");
    assert_eq!(row["affiliate_name"], "", "empty when unknown");
    assert_eq!(row["ua"], UA);
    let v = lines(
        &app,
        &format!(
            "/data/channel_id/click/groups?key={KEY}&group=date&group=ipv4_str&field=any_offer_name&field=any_affiliate_name&having=%5B%22count_ge%22%2C+%221%22%5D&sort=any_offer_name_asc"
        ),
    )
    .await;
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(v[0]["ipv4_str"], "10.98.0.1");
    assert_eq!(v[0]["any_offer_name"], "Mobile App (iOS)");
    assert_eq!(v[0]["any_affiliate_name"], "");
}

#[tokio::test]
async fn datetime_is_the_event_time_and_decided_at_the_decision_time() {
    event_time_suite(&|_| {}).await;
}

/// `datetime` is RT's `at` (the event's time), `decided_at` the gate's;
/// `datetime_*` bounds select by the event's time. Run on SQLite here and
/// on ClickHouse in `clickhouse.rs`.
pub async fn event_time_suite(store: Store<'_>) {
    let app = app_on(store).await;
    // 2024-06-01 12:00:00 UTC and a second later: posted late.
    for (ip, at) in [("10.97.0.1", "1717243200"), ("10.97.0.2", "1717243201")] {
        let r = app
            .get(&format!("/?{}&key=k", query(ip, &[("at", at)])))
            .await;
        assert_eq!(r.status(), 200, "{:?}", r.text().await);
    }
    // A click with no `at`: its event time is its decision's.
    app.check(&query("10.97.0.3", &[])).await;
    let v = rows(
        &app,
        &format!("/data/c/click?key={KEY}&field=ip,datetime,decided_at,at,ts&sort=ip_asc&tz=Europe%2FBerlin"),
        3,
    )
    .await;
    assert_eq!(v[0]["datetime"], "2024-06-01 14:00:00", "{v:?}");
    assert_eq!(v[0]["at"], 1_717_243_200);
    assert_eq!(v[1]["datetime"], "2024-06-01 14:00:01");
    let berlin = jiff::tz::TimeZone::get("Europe/Berlin").unwrap();
    for row in &v {
        // The decision's second, in the query's zone: now.
        let decided: jiff::civil::DateTime = row["decided_at"]
            .as_str()
            .unwrap()
            .replace(' ', "T")
            .parse()
            .unwrap();
        let decided = berlin.to_zoned(decided).unwrap().timestamp().as_second();
        assert_eq!(
            decided,
            row["ts"].as_i64().unwrap().div_euclid(1000),
            "{row:?}"
        );
        assert!(
            (decided - jiff::Timestamp::now().as_second()).abs() < 600,
            "{row:?}"
        );
    }
    assert_eq!(
        v[2]["at"].as_i64(),
        Some(v[2]["ts"].as_i64().unwrap() / 1000)
    );
    // Selecting by the event's time.
    let filter = form_urlencoded::byte_serialize(
        br#"["AND",["datetime_ge","2024-06-01 14:00:01"],["datetime_le","2024-06-01 14:00:01"]]"#,
    )
    .collect::<String>();
    let v = rows(
        &app,
        &format!("/data/c/click?key={KEY}&field=ip&tz=Europe%2FBerlin&filter={filter}"),
        1,
    )
    .await;
    assert_eq!(v[0]["ip"], "10.97.0.2");
    let v = rows(
        &app,
        &format!("/data/c/click?key={KEY}&field=ip,datetime&sort=datetime_desc&sort=ip_asc"),
        3,
    )
    .await;
    let order: Vec<&str> = v.iter().map(|r| r["ip"].as_str().unwrap()).collect();
    assert_eq!(order, ["10.97.0.3", "10.97.0.2", "10.97.0.1"]);
}

#[tokio::test]
async fn help_lists_what_this_instance_answers_and_needs_the_key() {
    let app = app().await;
    assert_eq!(app.get("/data/channel_id/help").await.status(), 401);
    let r = app.get(&format!("/data/channel_id/help?key={KEY}")).await;
    assert_eq!(r.status(), 200);
    let v = json(r).await;
    let fields: Vec<&str> = v["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    for f in [
        "datetime",
        "offer_id",
        "affiliate_id",
        "ipv4_str",
        "ua",
        "offer_name",
        "affiliate_name",
    ] {
        assert!(fields.contains(&f), "{f} in {fields:?}");
    }
    assert!(v["events"].as_array().unwrap().contains(&json!("install")));
    assert!(
        v["aggregates"]
            .as_array()
            .unwrap()
            .contains(&json!("any_<field>"))
    );
    assert_eq!(v["page_size_max"], 1_000_000);
}
