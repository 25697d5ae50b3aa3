use crate::helpers::*;

#[tokio::test]
async fn the_dropin_answers_like_rt_plain_text_one_tag_a_line() {
    let app = spawn_app().await;
    app.mock
        .on_ip("10.9.0.1", Reply::tags("proxy\r\ndatacenter\r\n"));
    let q = rt_query("10.9.0.1", &[("key", "client-supplied-key")]);
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
        .get(&format!("/?{}", rt_query("10.9.0.2", &[("key", "k")])))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-fraudgate-decision"], "allow");
    assert_eq!(r.text().await.unwrap(), "");
}

#[tokio::test]
async fn fallback_is_empty_when_failing_open_and_503_when_failing_closed() {
    let app = spawn_app().await;
    app.mock.on_ip("10.9.0.3", Reply::Status(500));
    let r = app.get(&format!("/?{}", rt_query("10.9.0.3", &[]))).await;
    assert_eq!(
        (r.status().as_u16(), r.text().await.unwrap()),
        (200, String::new())
    );

    let app =
        spawn_app_with(|c| c.policy.on_upstream_error = fraudgate::policy::Action::Block).await;
    app.mock.on_ip("10.9.0.3", Reply::Status(500));
    let r = app.get(&format!("/?{}", rt_query("10.9.0.3", &[]))).await;
    assert_eq!(r.status(), 503);
}

#[tokio::test]
async fn bad_dropin_input_is_a_json_400() {
    let app = spawn_app().await;
    let r = app.get("/?event_type=click&ip=1.1.1.1").await;
    assert_eq!(r.status(), 400);
    assert_eq!(json(r).await["field"], "ua");
}

/// RT's `at` is mandatory on the drop-in, as RT documents it; a parameter
/// RT does not document (a cache buster, a tracker's own field) is ignored
/// and counted, never a 400 and never part of the cache key; a repeated
/// parameter takes its last value.
#[tokio::test]
async fn the_dropin_reads_the_query_as_rt_does() {
    let app = spawn_app().await;
    let r = app.get(&format!("/?{}", query("10.9.1.1", &[]))).await;
    assert_eq!(r.status(), 400);
    assert_eq!(json(r).await["field"], "at");

    app.mock.on_ip("10.9.1.2", Reply::tags("proxy"));
    let q = rt_query(
        "10.9.1.2",
        &[("cb", "1733450000123"), ("my_click_ref", "x")],
    );
    let r = app.get(&format!("/?{q}")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "proxy");
    let q = rt_query("10.9.1.2", &[("cb", "1733450000999")]);
    let r = app.get(&format!("/?{q}")).await;
    assert_eq!(
        r.headers()["x-fraudgate-source"],
        "cache",
        "cache busters are not in the key"
    );
    assert_eq!(app.mock.calls_for("10.9.1.2"), 1);
    let p = app.mock.last_params("10.9.1.2").unwrap();
    assert!(
        !p.iter().any(|(k, _)| k == "cb" || k == "my_click_ref"),
        "never forwarded: {p:?}"
    );
    let m = app.metrics().await;
    assert_eq!(sample(&m, "fraudgate_rt_ignored_params_total", &[]), 3.0);

    // Repeated: the last value wins (a template's default, then the value).
    app.mock.on_ip("10.9.1.4", Reply::tags("datacenter"));
    let q = format!("{}&ip=10.9.1.4", rt_query("10.9.1.3", &[]));
    let r = app.get(&format!("/?{q}")).await;
    assert_eq!(r.text().await.unwrap(), "datacenter");
    assert_eq!(app.mock.calls_for("10.9.1.3"), 0);
}
