use std::time::{Duration, Instant};

use crate::helpers::*;

/// Every upstream failure is a fallback decision, never a clean verdict, and
/// comes back within the upstream timeout (plus a wide margin).
#[tokio::test]
async fn every_upstream_fault_becomes_a_fallback_within_the_timeout() {
    let app = spawn_app_with(|c| c.upstream.timeout_ms = 200).await;
    let cases = [
        ("10.6.0.1", Reply::Status(500), "upstream_http_error"),
        ("10.6.0.2", Reply::Status(404), "upstream_http_error"),
        ("10.6.0.3", Reply::Hang, "upstream_timeout"),
        (
            "10.6.0.4",
            Reply::delayed(1000, Reply::tags("proxy")),
            "upstream_timeout",
        ),
        ("10.6.0.5", Reply::Reset, "upstream_connect_error"),
        ("10.6.0.6", Reply::Garbage, "upstream_bad_body"),
        ("10.6.0.7", Reply::Huge, "upstream_bad_body"),
        ("10.6.0.8", Reply::Html, "upstream_bad_body"),
        (
            "10.6.0.9",
            Reply::Raw("application/json", "{\"ok\":true}".into()),
            "upstream_bad_body",
        ),
    ];
    for (ip, reply, reason) in cases {
        app.mock.on_ip(ip, reply);
        let started = Instant::now();
        let (status, v) = app.check_ip(ip).await;
        let took = started.elapsed();
        assert_eq!(status, 200, "{ip}");
        assert_eq!(v["source"], "fallback", "{ip}: {v}");
        assert_eq!(v["reason"], reason, "{ip}: {v}");
        assert_eq!(v["decision"], "allow", "fail open by default");
        assert!(took < Duration::from_millis(1000), "{ip} took {took:?}");
    }
    let m = app.metrics().await;
    for outcome in [
        "http_5xx",
        "http_status",
        "timeout",
        "connect_error",
        "bad_body",
    ] {
        assert!(
            sample(
                &m,
                "fraudgate_upstream_requests_total",
                &[("outcome", outcome)]
            ) >= 1.0,
            "{outcome}"
        );
    }
}

#[tokio::test]
async fn an_unreachable_upstream_is_a_connect_error() {
    // Bind then drop a listener: nothing listens on that port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let app = spawn_app_with(|c| c.upstream.url = format!("http://127.0.0.1:{port}/")).await;
    let (_, v) = app.check_ip("10.6.1.1").await;
    assert_eq!(v["source"], "fallback");
    assert_eq!(v["reason"], "upstream_connect_error");
}

#[tokio::test]
async fn fail_closed_blocks_on_upstream_errors() {
    let app =
        spawn_app_with(|c| c.policy.on_upstream_error = fraudgate::policy::Action::Block).await;
    app.mock.on_ip("10.6.2.1", Reply::Status(503));
    let (_, v) = app.check_ip("10.6.2.1").await;
    assert_eq!(v["decision"], "block");
    assert_eq!(v["source"], "fallback");
    assert_eq!(v["blocked_by"], serde_json::json!([]));
}
