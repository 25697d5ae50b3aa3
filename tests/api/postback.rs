//! `/v1/postback`: conversions joined to their clicks from the decision
//! log and judged by the funnel rules, on the real app.

use serde_json::{Value, json};

use crate::decision_log::rows;
use crate::helpers::*;

/// A click now (its event time `ago` seconds back), with `extra` fields;
/// its decision.
async fn click(app: &TestApp, ip: &str, ago: i64, extra: &[(&str, &str)]) -> Value {
    click_at(app, ip, jiff::Timestamp::now().as_second() - ago, extra).await
}

/// A click whose event time is `at` (Unix seconds).
async fn click_at(app: &TestApp, ip: &str, at: i64, extra: &[(&str, &str)]) -> Value {
    let at = at.to_string();
    let mut fields = vec![("at", at.as_str())];
    // (`affiliate_id` replaces the standard one.)
    let mut q = query(ip, &[]);
    for (k, v) in extra {
        if *k == "affiliate_id" {
            q = q.replace("affiliate_id=6251", &format!("affiliate_id={v}"));
        } else {
            fields.push((k, v));
        }
    }
    for (k, v) in fields {
        q.push_str(&format!("&{k}={v}"));
    }
    let (status, v) = app.check(&q).await;
    assert_eq!(status, 200, "{v}");
    v
}

async fn postback(app: &TestApp, q: &str) -> (u16, Value) {
    let r = app.get(&format!("/v1/postback?{q}")).await;
    let status = r.status().as_u16();
    (status, json(r).await)
}

/// The rule kinds of a decision.
fn kinds(v: &Value) -> Vec<&str> {
    v["rules"]
        .as_array()
        .map(|r| r.iter().filter_map(|h| h["kind"].as_str()).collect())
        .unwrap_or_default()
}

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

#[tokio::test]
async fn a_conversion_is_judged_on_its_click() {
    let app = spawn_app().await;
    // An honest install ten minutes after its click.
    let c = click(&app, "10.90.0.1", 600, &[("country_code", "DE")]).await;
    let id = c["id"].as_str().unwrap();
    let (status, v) = postback(
        &app,
        &format!("click_id={id}&event=install&payout=1.50&currency=usd&country_code=DE"),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (v["decision"].as_str(), kinds(&v)),
        (Some("allow"), vec![]),
        "{v}"
    );
    assert_ne!(v["id"], c["id"]);

    // The same click converting again for the same event.
    let (_, v) = postback(&app, &format!("click_id={id}&event=install")).await;
    assert_eq!(kinds(&v), ["duplicate"], "{v}");
    assert_eq!(v["decision"], "block");
    assert_eq!(v["tags"], json!(["attribution"]));
    // ...but once for a goal is its own event.
    let (_, v) = postback(&app, &format!("click_id={id}&event=purchase&payout=20")).await;
    assert_eq!(kinds(&v), Vec::<&str>::new(), "{v}");

    // Click injection: an install 3 s after its click.
    let c = click(&app, "10.90.0.2", 0, &[]).await;
    let t = now() + 3;
    let (_, v) = postback(
        &app,
        &format!(
            "click_id={}&event=install&event_time={t}",
            c["id"].as_str().unwrap()
        ),
    )
    .await;
    assert_eq!(kinds(&v), ["ctit_short"], "{v}");
    assert!(
        v["rules"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("under 10 s"),
        "{v}"
    );

    // A conversion of a click the policy blocked, from another country.
    app.mock.on_ip("10.90.0.3", Reply::tags("datacenter"));
    let c = click(&app, "10.90.0.3", 600, &[("country_code", "DE")]).await;
    assert_eq!(c["decision"], "block");
    let (_, v) = postback(
        &app,
        &format!(
            "click_id={}&event=install&country_code=US",
            c["id"].as_str().unwrap()
        ),
    )
    .await;
    assert_eq!(kinds(&v), ["click_blocked", "mismatch"], "{v}");
    assert!(
        v["rules"][1]["reason"]
            .as_str()
            .unwrap()
            .contains("DE at the click, US"),
        "{v}"
    );

    // Orphans: no click id, one that is no decision, one no click has, a
    // click past the 7-day window.
    let unknown = "0190f5e2-0000-7000-8000-000000000000";
    // An id from the far future (forged): looked up once, not waited on.
    let future = "ffffffff-ffff-7fff-bfff-ffffffffffff";
    let old = click(&app, "10.90.0.4", 8 * 86_400, &[]).await;
    for q in [
        format!("click_id={future}&event=install"),
        "event=install".to_owned(),
        "click_id=abc&event=install".to_owned(),
        format!("click_id={unknown}&event=install"),
        format!("click_id={}&event=install", old["id"].as_str().unwrap()),
    ] {
        let (status, v) = postback(&app, &q).await;
        assert_eq!((status, kinds(&v)), (200, vec!["orphan"]), "{q}: {v}");
    }
}

#[tokio::test]
async fn a_slow_conversion_from_a_flooding_source_is_click_flooding() {
    let app = spawn_app_with(|c| {
        c.funnel.ctit_long_s = 3_600;
        c.funnel.flood_clicks_per_conversion = 5;
    })
    .await;
    // Twelve clicks from one affiliate and sub, a day ago.
    let mut ids = Vec::new();
    for i in 0..12 {
        let c = click(
            &app,
            &format!("10.91.0.{i}"),
            86_400,
            &[("aff_sub1", "flood")],
        )
        .await;
        ids.push(c["id"].as_str().unwrap().to_owned());
    }
    rows(&app, "/v1/data/click?field=id&page_size=100", 12).await;
    let (_, v) = postback(&app, &format!("click_id={}&event=install", ids[0])).await;
    assert_eq!(kinds(&v), ["ctit_long"], "{v}");
    assert!(
        v["rules"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("12 clicks for 1 conversions"),
        "{v}"
    );
    // A sub of its own with two clicks is no flood.
    let c = click(&app, "10.91.1.1", 86_400, &[("aff_sub1", "calm")]).await;
    click(&app, "10.91.1.2", 86_400, &[("aff_sub1", "calm")]).await;
    rows(&app, "/v1/data/click?field=id&page_size=100", 14).await;
    let (_, v) = postback(
        &app,
        &format!("click_id={}&event=install", c["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(kinds(&v), Vec::<&str>::new(), "{v}");
}

#[tokio::test]
async fn conversions_are_recorded_and_answer_in_the_data_api() {
    let app = spawn_app().await;
    let c = click(
        &app,
        "10.92.0.1",
        120,
        &[
            ("aff_sub1", "s1"),
            ("advertiser_id", "adv9"),
            ("offer_name", "Game"),
        ],
    )
    .await;
    let id = c["id"].as_str().unwrap();
    // A form POST and a JSON POST, as trackers send them.
    let r = http()
        .post(app.url("/v1/postback"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "click_id={id}&event=install&payout=2.5&currency=EUR"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = app
        .post_json(
            "/v1/postback",
            &json!({"click_id": id, "event": "purchase", "payout": 30, "status": "approved"})
                .to_string(),
        )
        .await;
    assert_eq!(r.status(), 200);
    let v = rows(
        &app,
        "/v1/data/install?field=event_type,door,click_id,payout,currency,ctit,affiliate_id,offer_id,aff_sub1,decision",
        1,
    )
    .await;
    let row = &v[0];
    assert_eq!(row["event_type"], "install");
    assert_eq!(row["door"], "postback");
    assert_eq!(row["click_id"], id);
    assert_eq!(
        (&row["payout"], &row["currency"]),
        (&json!("2.5"), &json!("EUR"))
    );
    // Its click's affiliate, offer and sub; CTIT about two minutes.
    assert_eq!(
        (&row["affiliate_id"], &row["offer_id"], &row["aff_sub1"]),
        (&json!("6251"), &json!("34713"), &json!("s1"))
    );
    let ctit: i64 = row["ctit"].as_str().unwrap().parse().unwrap();
    assert!((115..200).contains(&ctit), "{row}");
    // Whose traffic and offer it is, as the click named them.
    let v = rows(&app, "/v1/data/install?field=advertiser_id,offer_name", 1).await;
    assert_eq!(v[0], json!({"advertiser_id": "adv9", "offer_name": "Game"}));
    let v = rows(&app, "/v1/data/custom?field=goal,payout,status", 1).await;
    assert_eq!(
        v[0],
        json!({"goal": "purchase", "payout": "30", "status": "approved"})
    );
    // The FraudScore Data API's own paths.
    rows(
        &app,
        "/data/c/install?field=datetime,offer_id,affiliate_id,ipv4_str,ua",
        1,
    )
    .await;
}

#[tokio::test]
async fn a_bad_postback_is_a_400_naming_its_field() {
    let app = spawn_app().await;
    for (q, field) in [
        ("click_id=x", "event"),
        ("event=install&payout=abc", "payout"),
        ("event=install&currency=dollars", "currency"),
        ("event=install&event_time=soon", "event_time"),
        ("event=install&sub=1", "sub"),
    ] {
        let (status, v) = postback(&app, q).await;
        assert_eq!(
            (status, v["field"].as_str()),
            (400, Some(field)),
            "{q}: {v}"
        );
    }
    let r = http()
        .post(app.url("/v1/postback"))
        .header("content-type", "text/plain")
        .body("event=install")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    assert_eq!(json(r).await["field"], "Content-Type");
}

#[tokio::test]
async fn the_postback_door_takes_client_keys_like_the_api() {
    let app = spawn_app_with(|c| {
        c.auth.client_keys = [(
            "tracker".to_owned(),
            fraudgate::config::Secret::new("tracker-key-0123456789"),
        )]
        .into_iter()
        .collect();
    })
    .await;
    let (status, _) = postback(&app, "event=install").await;
    assert_eq!(status, 401);
    let (status, v) = postback(&app, "event=install&key=tracker-key-0123456789").await;
    assert_eq!((status, kinds(&v)), (200, vec!["orphan"]), "{v}");
    let v = rows(&app, "/v1/data/install?field=client,door", 1).await;
    assert_eq!(v[0], json!({"client": "tracker", "door": "postback"}));
}

#[tokio::test]
async fn the_funnel_report_sums_each_source() {
    funnel_suite(&|_| {}).await;
}

/// Clicks and conversions of two sources, then the funnel report. Run on
/// SQLite here and on ClickHouse in `clickhouse.rs`.
pub async fn funnel_suite(store: crate::decision_log::Store<'_>) {
    let app = spawn_app_with(|c| store(c)).await;
    // Every time from one reading of the clock: the click-to-install
    // times do not depend on a second passing in between.
    let t0 = now() - 3_600;
    // Source a/s1: 4 clicks, 2 conversions (one injected, 5 s).
    let mut a = Vec::new();
    for i in 0..4 {
        let c = click_at(
            &app,
            &format!("10.93.0.{i}"),
            t0,
            &[("affiliate_id", "a"), ("aff_sub1", "s1")],
        )
        .await;
        a.push(c["id"].as_str().unwrap().to_owned());
    }
    // Source b (no sub): 2 clicks, 1 conversion a day and more later.
    let b_at = t0 + 3_600 - 90_000;
    let b = click_at(&app, "10.93.1.1", b_at, &[("affiliate_id", "b")]).await;
    click_at(&app, "10.93.1.2", b_at, &[("affiliate_id", "b")]).await;
    let b = b["id"].as_str().unwrap();
    for (q, decision) in [
        (
            format!(
                "click_id={}&event=install&payout=2&currency=USD&event_time={}",
                a[0],
                t0 + 600
            ),
            "allow",
        ),
        (
            format!(
                "click_id={}&event=install&payout=3&currency=USD&event_time={}",
                a[1],
                t0 + 5
            ),
            "block",
        ),
        (
            format!("click_id={b}&event=install&payout=1.25&currency=EUR"),
            "allow",
        ),
    ] {
        let (status, v) = postback(&app, &q).await;
        assert_eq!(
            (status, v["decision"].as_str()),
            (200, Some(decision)),
            "{q}: {v}"
        );
    }
    // The join found each click: no orphan among them.
    let v = rows(
        &app,
        "/v1/data/install?field=rules,affiliate_id&page_size=10",
        3,
    )
    .await;
    assert!(
        v.iter().all(|r| !r["rules"].to_string().contains("orphan")),
        "{v:?}"
    );
    let v = eventually(std::time::Duration::from_secs(5), || async {
        let v = json(app.get("/v1/reports/funnel").await).await;
        let results = v["funnel"]["results"].as_array()?.clone();
        (results.len() == 2 && results[0]["conversions"] == 2).then_some(results)
    })
    .await;
    let a = &v[0];
    assert_eq!(
        (&a["affiliate_id"], &a["aff_sub1"]),
        (&json!("a"), &json!("s1")),
        "{v:?}"
    );
    assert_eq!(
        (
            &a["clicks"],
            &a["conversions"],
            &a["cr"],
            &a["approved"],
            &a["rejected"]
        ),
        (&json!(4), &json!(2), &json!(50.0), &json!(1), &json!(1))
    );
    assert_eq!(a["rejections"], json!({"ctit_short": 1}));
    assert_eq!(a["payout_approved"], json!({"USD": 2.0}));
    assert_eq!(a["payout_at_risk"], json!({"USD": 3.0}));
    assert_eq!(a["ctit"]["median_s"], 302.5);
    assert_eq!(a["ctit"]["under_10s"], 50.0);
    assert_eq!(a["ctit"]["buckets"]["<10s"], 1);
    assert_eq!(a["ctit"]["buckets"]["1m-10m"], 0);
    assert_eq!(a["ctit"]["buckets"]["10m-1h"], 1);
    let b = &v[1];
    assert_eq!(
        (&b["affiliate_id"], &b["aff_sub1"]),
        (&json!("b"), &Value::Null)
    );
    assert_eq!(
        (&b["clicks"], &b["conversions"], &b["rejected"]),
        (&json!(2), &json!(1), &json!(0))
    );
    assert_eq!(b["ctit"]["over_24h"], 100.0);
    assert_eq!(b["payout_approved"], json!({"EUR": 1.25}));
    // A bad parameter is named.
    let r = app.get("/v1/reports/funnel?group[]=ua").await;
    assert_eq!(r.status(), 400);
    assert_eq!(json(r).await["field"], "group");
}

#[tokio::test]
async fn a_click_with_no_impression_before_it_is_imp_to_click() {
    let app = spawn_app_with(|c| {
        c.funnel.impression_offers = vec!["34713".into()];
        c.funnel.imp_to_click_min_ms = 60_000;
    })
    .await;
    let (_, imp) = app
        .check(&query("10.95.0.1", &[]).replace("event_type=click", "event_type=impression"))
        .await;
    let imp = imp["id"].as_str().unwrap().to_owned();
    let unknown = "0190f5e2-0000-7000-8000-000000000000";
    for (extra, why) in [
        (
            vec![("imp_id", imp.as_str())],
            "ms after its impression, under 60000 ms",
        ),
        (vec![], "no impression before the click on offer 34713"),
        (vec![("imp_id", unknown)], "is not in the log"),
    ] {
        let c = click(&app, "10.95.0.1", 600, &extra).await;
        let (_, v) = postback(
            &app,
            &format!("click_id={}&event=install", c["id"].as_str().unwrap()),
        )
        .await;
        assert_eq!(kinds(&v), ["imp_to_click"], "{extra:?}: {v}");
        assert!(
            v["rules"][0]["reason"].as_str().unwrap().contains(why),
            "{v}"
        );
    }
    // Every offer records impressions here; a click after its own.
    let app = spawn_app_with(|c| {
        c.funnel.impression_offers = vec!["*".into()];
        c.funnel.imp_to_click_min_ms = 0;
    })
    .await;
    let (_, imp) = app
        .check(&query("10.95.0.2", &[]).replace("event_type=click", "event_type=impression"))
        .await;
    let c = click(
        &app,
        "10.95.0.2",
        600,
        &[("imp_id", imp["id"].as_str().unwrap())],
    )
    .await;
    let (_, v) = postback(
        &app,
        &format!("click_id={}&event=install", c["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(
        kinds(&v),
        Vec::<&str>::new(),
        "a click after its impression: {v}"
    );
}

#[tokio::test]
async fn a_rule_in_shadow_mode_is_recorded_and_its_cost_reported() {
    let dir = temp_dir("shadow-rules");
    let list = dir.join("block.txt");
    write_file(&list, "ip 10.96.1.1 reason=suspect range\n");
    let app = spawn_app_with(|c| {
        c.policy.shadow_rules = vec!["ctit_short".into(), "block_list".into()];
        c.rules.lists[0].file = list.display().to_string();
    })
    .await;
    // A listed IP's click: the rule fires, the click is allowed.
    let listed = click(&app, "10.96.1.1", 600, &[]).await;
    assert_eq!(listed["decision"], "allow", "{listed}");
    assert_eq!(kinds(&listed), ["block_list"]);
    assert_eq!(listed["tags"], json!([]));
    // An injected install: ctit_short fires, the payout is approved.
    let c = click(&app, "10.96.1.2", 0, &[]).await;
    let t = now() + 2;
    let (_, v) = postback(
        &app,
        &format!(
            "click_id={}&event=install&payout=5&currency=USD&event_time={t}",
            c["id"].as_str().unwrap()
        ),
    )
    .await;
    assert_eq!(
        (v["decision"].as_str(), kinds(&v)),
        (Some("allow"), vec!["ctit_short"]),
        "{v}"
    );
    // Recorded as fired, not as invalid traffic.
    let v = rows(&app, "/v1/data/install?field=rules,ivt,decision", 1).await;
    assert_eq!(
        (&v[0]["ivt"], &v[0]["decision"]),
        (&json!("none"), &json!("allow")),
        "{v:?}"
    );
    rows(&app, "/v1/data/all?field=id&page_size=10", 3).await;
    let v = json(app.get("/v1/reports/shadow").await).await;
    assert_eq!(
        v["shadow"]["rules"],
        json!(["block_list", "ctit_short"]),
        "{v}"
    );
    let results = v["shadow"]["results"].as_array().unwrap();
    let of = |rule: &str| {
        results
            .iter()
            .find(|r| r["rule"] == rule)
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(
        of("ctit_short"),
        json!({"rule": "ctit_short", "affiliate_id": "6251", "events": 1,
            "by_event_type": {"install": 1}, "payout": {"USD": 5.0}})
    );
    assert_eq!(
        of("block_list"),
        json!({"rule": "block_list", "affiliate_id": "6251", "events": 1,
            "by_event_type": {"click": 1}, "payout": {}})
    );
    let _ = std::fs::remove_dir_all(&dir);
}
