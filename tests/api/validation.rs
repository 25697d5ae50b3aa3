use crate::helpers::*;

async fn expect_error(r: reqwest::Response, status: u16, code: &str, field: &str) {
    assert_eq!(r.status().as_u16(), status);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let v = json(r).await;
    assert_eq!(v["error"], code, "{v}");
    assert_eq!(v["field"], field, "{v}");
    assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()));
}

#[tokio::test]
async fn each_missing_mandatory_field_is_a_400_naming_it() {
    let app = spawn_app().await;
    let full = query("10.7.0.1", &[]);
    for field in ["event_type", "ip", "ua", "affiliate_id", "offer_id"] {
        let q: Vec<_> = full
            .split('&')
            .filter(|p| !p.starts_with(&format!("{field}=")))
            .collect();
        let r = app.get(&format!("/v1/check?{}", q.join("&"))).await;
        expect_error(r, 400, "missing_field", field).await;
    }
    assert_eq!(app.mock.calls(), 0);
}

#[tokio::test]
async fn bad_values_are_400s_naming_the_field() {
    let app = spawn_app().await;
    for (bad, code, field) in [
        (query("10.7.0.1.5", &[]), "invalid_field", "ip"),
        (query("not-an-ip", &[]), "invalid_field", "ip"),
        (
            query("10.7.0.1", &[]).replace("click", "install"),
            "invalid_field",
            "event_type",
        ),
        (
            query("10.7.0.1", &[("at", "yesterday")]),
            "invalid_field",
            "at",
        ),
        (
            query("10.7.0.1", &[("click_id", "5")]),
            "unknown_field",
            "click_id",
        ),
        (
            query("10.7.0.1", &[("ip", "10.7.0.2")]),
            "duplicate_field",
            "ip",
        ),
    ] {
        let r = app.get(&format!("/v1/check?{bad}")).await;
        expect_error(r, 400, code, field).await;
    }
}

#[tokio::test]
async fn ipv6_addresses_are_accepted() {
    let app = spawn_app().await;
    let (status, v) = app.check_ip("2001:db8:4001:82a::200e").await;
    assert_eq!(status, 200, "{v}");
    assert!(app.mock.last_params("2001:db8:4001:82a::200e").is_some());
}

#[tokio::test]
async fn json_body_errors_are_400s_or_415() {
    let app = spawn_app().await;
    expect_error(
        app.post_json("/v1/check", "{\"ip\": ").await,
        400,
        "invalid_field",
        "body",
    )
    .await;
    expect_error(
        app.post_json("/v1/check", "[]").await,
        400,
        "invalid_field",
        "body",
    )
    .await;
    expect_error(
        app.post_json(
            "/v1/check",
            r#"{"event_type":"click","ip":"1.1.1.1","ua":"x","affiliate_id":"1"}"#,
        )
        .await,
        400,
        "missing_field",
        "offer_id",
    )
    .await;
    expect_error(
        app.post_json("/v1/check", r#"{"ip": true}"#).await,
        400,
        "invalid_field",
        "ip",
    )
    .await;
    let r = app
        .http
        .post(app.url("/v1/check"))
        .header("content-type", "text/plain")
        .body("event_type=click")
        .send()
        .await
        .unwrap();
    expect_error(r, 415, "unsupported_media_type", "Content-Type").await;
    let r = app
        .http
        .post(app.url("/v1/check"))
        .body("{}")
        .send()
        .await
        .unwrap();
    expect_error(r, 415, "unsupported_media_type", "Content-Type").await;
}

#[tokio::test]
async fn an_oversized_body_is_413() {
    let app = spawn_app_with(|c| c.server.max_body_bytes = 1024).await;
    let big = format!("{{\"ua\": \"{}\"}}", "a".repeat(4096));
    expect_error(
        app.post_json("/v1/check", &big).await,
        413,
        "payload_too_large",
        "body",
    )
    .await;
}

#[tokio::test]
async fn a_bad_deadline_header_is_a_400() {
    let app = spawn_app().await;
    let r = app
        .http
        .get(app.url(&format!("/v1/check?{}", query("10.7.0.3", &[]))))
        .header("x-fraudgate-deadline-ms", "soon")
        .send()
        .await
        .unwrap();
    expect_error(r, 400, "invalid_header", "X-Fraudgate-Deadline-Ms").await;
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json() {
    let app = spawn_app().await;
    let r = app.get("/nope").await;
    assert_eq!(r.status(), 404);
    assert_eq!(json(r).await["error"], "not_found");
    let r = app.http.delete(app.url("/v1/check")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(json(r).await["error"], "method_not_allowed");
}
