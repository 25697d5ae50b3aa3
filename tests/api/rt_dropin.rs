use crate::helpers::*;

#[tokio::test]
async fn the_dropin_answers_like_rt_plain_text_one_tag_a_line() {
    let app = spawn_app().await;
    app.mock
        .on_ip("10.9.0.1", Reply::tags("proxy\r\ndatacenter\r\n"));
    let q = query("10.9.0.1", &[("key", "client-supplied-key")]);
    let r = app.get(&format!("/?{q}")).await;
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    assert_eq!(r.headers()["x-fraudgate-decision"], "block");
    assert_eq!(r.text().await.unwrap(), "datacenter\nproxy");
    let p = app.mock.last_params("10.9.0.1").unwrap();
    let keys: Vec<_> = p
        .iter()
        .filter(|(k, _)| k == "key")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(keys, [UPSTREAM_KEY], "the client's key is never forwarded");
}

#[tokio::test]
async fn a_clean_event_is_an_empty_body() {
    let app = spawn_app().await;
    let r = app
        .get(&format!("/?{}", query("10.9.0.2", &[("key", "k")])))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-fraudgate-decision"], "allow");
    assert_eq!(r.text().await.unwrap(), "");
}

#[tokio::test]
async fn fallback_is_empty_when_failing_open_and_503_when_failing_closed() {
    let app = spawn_app().await;
    app.mock.on_ip("10.9.0.3", Reply::Status(500));
    let r = app.get(&format!("/?{}", query("10.9.0.3", &[]))).await;
    assert_eq!(
        (r.status().as_u16(), r.text().await.unwrap()),
        (200, String::new())
    );

    let app =
        spawn_app_with(|c| c.policy.on_upstream_error = fraudgate::policy::Action::Block).await;
    app.mock.on_ip("10.9.0.3", Reply::Status(500));
    let r = app.get(&format!("/?{}", query("10.9.0.3", &[]))).await;
    assert_eq!(r.status(), 503);
}

#[tokio::test]
async fn bad_dropin_input_is_a_json_400() {
    let app = spawn_app().await;
    let r = app.get("/?event_type=click&ip=1.1.1.1").await;
    assert_eq!(r.status(), 400);
    assert_eq!(json(r).await["field"], "ua");
}
