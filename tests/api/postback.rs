//! `/v1/postback`: conversions joined to their clicks from the decision
//! log and judged by the funnel rules, on the real app.

use serde_json::{Value, json};

use crate::decision_log::rows;
use crate::helpers::*;

/// A click now (its event time `ago` seconds back), with `extra` fields;
/// its decision.
async fn click(app: &TestApp, ip: &str, ago: i64, extra: &[(&str, &str)]) -> Value {
    let at = (jiff::Timestamp::now().as_second() - ago).to_string();
    let mut fields = vec![("at", at.as_str())];
    fields.extend_from_slice(extra);
    let (status, v) = app.check(&query(ip, &fields)).await;
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
    let old = click(&app, "10.90.0.4", 8 * 86_400, &[]).await;
    for q in [
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
    let c = click(&app, "10.92.0.1", 120, &[("aff_sub1", "s1")]).await;
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
