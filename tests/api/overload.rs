//! Overload and hostile clients: shedding, slow headers, size limits.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::*;

#[tokio::test]
async fn a_burst_past_the_concurrency_limit_is_shed_at_once_and_probes_still_answer() {
    let app = spawn_app_with(|c| {
        c.server.max_concurrency = 4;
        c.upstream.timeout_ms = 2000;
    })
    .await;
    app.mock.set_default(Reply::delayed(400, Reply::tags("")));
    let started = Instant::now();
    let burst = (0..20).map(|i| {
        let (http, url) = (
            app.http.clone(),
            app.url(&format!(
                "/v1/check?{}",
                query(&format!("10.60.0.{i}"), &[])
            )),
        );
        async move {
            let r = http.get(url).send().await.unwrap();
            let retry = r.headers().get("retry-after").cloned();
            (r.status().as_u16(), retry, Instant::now())
        }
    });
    // Probes while the limit is full (the upstream is holding requests).
    let probe = async {
        eventually(Duration::from_secs(5), || async {
            (app.mock.calls() >= 4).then_some(())
        })
        .await;
        (
            app.get("/healthz").await.status().as_u16(),
            app.get("/metrics").await.status().as_u16(),
        )
    };
    let (results, probes) = tokio::join!(futures_util::future::join_all(burst), probe);
    let shed: Vec<_> = results.iter().filter(|(s, _, _)| *s == 503).collect();
    let ok = results.iter().filter(|(s, _, _)| *s == 200).count();
    assert!(ok >= 4, "the first requests are served ({ok})");
    assert!(!shed.is_empty(), "the rest are shed");
    assert!(
        shed.iter().all(|(_, retry, _)| retry.is_some()),
        "shed answers carry Retry-After"
    );
    assert!(
        shed.iter()
            .all(|(_, _, at)| at.duration_since(started) < Duration::from_millis(350)),
        "shed at once, not after queueing behind the 400 ms upstream"
    );
    assert_eq!(probes, (200, 200), "health and metrics are never shed");
    let m = app.metrics().await;
    assert_eq!(sample(&m, "fraudgate_shed_total", &[]), shed.len() as f64);
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_cut_off() {
    let app = spawn_app_with(|c| c.server.header_read_timeout_ms = 300).await;
    let mut sock = tokio::net::TcpStream::connect(("127.0.0.1", app.port))
        .await
        .unwrap();
    sock.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), sock.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "connection closed by the server");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "closed after {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn oversized_uris_headers_and_nesting_are_refused_with_4xx() {
    let app = spawn_app_with(|c| c.server.max_uri_bytes = 1024).await;
    let r = app
        .get(&format!(
            "/v1/check?{}&aff_sub1={}",
            query("10.61.0.1", &[]),
            "a".repeat(2000)
        ))
        .await;
    assert_eq!(r.status(), 414);
    assert_eq!(json(r).await["error"], "uri_too_long");

    let r = app
        .http
        .get(app.url("/healthz"))
        .header("x-big", "b".repeat(32 * 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 431);

    let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
    let r = app.post_json("/v1/check/batch", &deep).await;
    assert_eq!(r.status(), 400);
    assert_eq!(json(r).await["error"], "too_deep");
    assert_eq!(app.mock.calls(), 0);
}

#[tokio::test]
async fn with_fallback_shedding_auth_answers_by_its_fail_mode_instead_of_503() {
    let app = spawn_app_with(|c| {
        c.server.max_concurrency = 2;
        c.server.shed_response = fraudgate::config::ShedResponse::Fallback;
        c.upstream.timeout_ms = 2000;
    })
    .await;
    app.mock.set_default(Reply::delayed(400, Reply::tags("")));
    let burst = (0..10).map(|i| {
        let http = app.http.clone();
        let url = app.url("/v1/auth");
        async move {
            let r = http
                .get(url)
                .header("x-original-uri", format!("/p?offer_id={i}"))
                .send()
                .await
                .unwrap();
            (
                r.status().as_u16(),
                r.headers()
                    .get("x-fraudgate-reason")
                    .map(|v| v.to_str().unwrap().to_owned()),
            )
        }
    });
    let results = futures_util::future::join_all(burst).await;
    assert!(
        results.iter().all(|(s, _)| *s == 200),
        "fail open: {results:?}"
    );
    assert!(
        results
            .iter()
            .any(|(_, r)| r.as_deref() == Some("overloaded")),
        "some were shed: {results:?}"
    );
    // Other routes still get 503 when shed.
    let app = &app;
    let burst = (0..10).map(|i| async move { app.check_ip(&format!("10.62.0.{i}")).await });
    let results = futures_util::future::join_all(burst).await;
    assert!(results.iter().any(|(s, _)| *s == 503));
}

#[tokio::test]
async fn upstream_calls_in_flight_are_capped_and_the_excess_fails_fast() {
    let app = spawn_app_with(|c| {
        c.upstream.max_in_flight = 2;
        c.upstream.timeout_ms = 2000;
    })
    .await;
    app.mock.set_default(Reply::delayed(400, Reply::tags("")));
    let app = &app;
    let started = Instant::now();
    let results = futures_util::future::join_all((0..6).map(|i| async move {
        let (_, v) = app.check_ip(&format!("10.63.0.{i}")).await;
        (
            v["reason"].as_str().unwrap_or("").to_owned(),
            Instant::now(),
        )
    }))
    .await;
    let busy: Vec<_> = results
        .iter()
        .filter(|(r, _)| r == "upstream_busy")
        .collect();
    assert_eq!(busy.len(), 4, "{results:?}");
    assert!(
        busy.iter()
            .all(|(_, at)| at.duration_since(started) < Duration::from_millis(300)),
        "failed fast"
    );
    assert!(app.mock.calls() <= 2);
    // Not remembered as the key's error, and no breaker damage: the next try goes upstream.
    let r = json(app.get("/readyz").await).await;
    assert_eq!(r["breaker"], "closed");
    // Once the calls in flight are done, the busy key goes upstream.
    let ip = format!("10.63.0.{}", busy_ip(&results));
    let v = eventually(Duration::from_secs(5), || async {
        let (_, v) = app.check_ip(&ip).await;
        (v["reason"] != "upstream_busy").then_some(v)
    })
    .await;
    assert_eq!(v["source"], "upstream");
    assert_eq!(app.mock.calls_for(&ip), 1);
}

fn busy_ip(results: &[(String, Instant)]) -> usize {
    results
        .iter()
        .position(|(r, _)| r == "upstream_busy")
        .unwrap()
}
