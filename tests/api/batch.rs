use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn batch_results_keep_order_and_bad_items_fail_alone() {
    let app = spawn_app().await;
    app.mock.on_ip("10.8.0.2", Reply::tags("proxy"));
    let ev = |ip: &str| json!({"event_type": "click", "ip": ip, "ua": UA, "affiliate_id": "1", "offer_id": "2"});
    let body = json!([
        ev("10.8.0.1"),
        ev("10.8.0.2"),
        {"event_type": "click", "ip": "bogus", "ua": UA, "affiliate_id": "1", "offer_id": "2"},
        "not an object",
        ev("10.8.0.1"),
        {"event_type": "click", "ip": "10.8.0.3", "ua": UA, "affiliate_id": "1"},
    ]);
    let r = app.post_json("/v1/check/batch", &body.to_string()).await;
    assert_eq!(r.status(), 200);
    let v = json(r).await;
    let items = v.as_array().unwrap();
    assert_eq!(items.len(), 6);
    assert_eq!(items[0]["decision"], "allow");
    assert_eq!(items[1]["decision"], "block");
    assert_eq!(items[2]["error"], "invalid_field");
    assert_eq!(items[2]["field"], "ip");
    assert_eq!(items[3]["field"], "body");
    assert_eq!(items[4]["decision"], "allow");
    assert_eq!(items[5]["error"], "missing_field");
    assert_eq!(items[5]["field"], "offer_id");
    assert_eq!(
        app.mock.calls_for("10.8.0.1"),
        1,
        "same key in one batch is coalesced"
    );
}

#[tokio::test]
async fn a_batch_over_the_limit_is_413() {
    let app = spawn_app_with(|c| c.server.max_batch = 3).await;
    let ev = json!({"event_type": "click", "ip": "1.1.1.1", "ua": UA, "affiliate_id": "1", "offer_id": "2"});
    let body = json!([ev, ev, ev, ev]);
    let r = app.post_json("/v1/check/batch", &body.to_string()).await;
    assert_eq!(r.status(), 413);
    assert_eq!(json(r).await["error"], "payload_too_large");
    assert_eq!(app.mock.calls(), 0);
}

#[tokio::test]
async fn a_batch_that_is_not_an_array_is_400() {
    let app = spawn_app().await;
    let r = app
        .post_json("/v1/check/batch", "{\"ip\": \"1.1.1.1\"}")
        .await;
    assert_eq!(r.status(), 400);
    assert_eq!(json(r).await["field"], "body");
}
