//! Rolling deploys: SIGTERM first turns /readyz to 503 while the listener
//! keeps accepting for `server.drain_delay_ms`, then in-flight requests
//! finish. Nothing a load balancer sends meanwhile fails.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::binary::*;
use crate::helpers::*;

#[tokio::test]
async fn draining_answers_readyz_503_and_still_serves_new_connections() {
    let mut app = spawn_app_with(|c| c.server.drain_delay_ms = 1500).await;
    app.shutdown();
    // /readyz turns 503 at once...
    eventually(Duration::from_secs(5), || async {
        let r = crate::helpers::http()
            .get(app.url("/readyz"))
            .send()
            .await
            .ok()?;
        (r.status() == 503).then_some(())
    })
    .await;
    // ...while a new connection is still served, told to close after.
    let r = crate::helpers::http()
        .get(app.url(&format!("/v1/check?{}", query("10.11.0.1", &[]))))
        .send()
        .await
        .expect("accepted during the drain delay");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["connection"], "close");
    let stopped = app.stopped.take().unwrap();
    tokio::time::timeout(Duration::from_secs(10), stopped)
        .await
        .expect("stops after the drain delay")
        .unwrap()
        .unwrap();
    assert!(
        crate::helpers::http()
            .get(app.url("/healthz"))
            .send()
            .await
            .is_err(),
        "no longer accepting"
    );
}

#[tokio::test]
async fn sigterm_under_load_fails_no_request() {
    let mock = MockRt::start().await;
    // Requests stay in flight a while, so some straddle the signal.
    mock.set_default(Reply::delayed(30, Reply::tags("")));
    let p = spawn_binary(&[
        ("FRAUDGATE_UPSTREAM__URL", &mock.url()),
        ("FRAUDGATE_UPSTREAM__KEY", UPSTREAM_KEY),
        ("FRAUDGATE_SERVER__DRAIN_DELAY_MS", "1500"),
        ("FRAUDGATE_LOG__LEVEL", "info"),
    ]);
    let port = listening_port(&p).await;
    let base = format!("http://127.0.0.1:{port}");

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let (stop, ok, failed, base) = (stop.clone(), ok.clone(), failed.clone(), base.clone());
            tokio::spawn(async move {
                let client = crate::helpers::http();
                let mut i = 0u32;
                while !stop.load(Ordering::SeqCst) {
                    i += 1;
                    let ip = format!("10.{}.{}.{}", 100 + w, (i >> 8) & 255, i & 255);
                    let url = format!("{base}/v1/check?{}", query(&ip, &[]));
                    match client.get(&url).send().await {
                        Ok(r) if r.status() == 200 => {
                            ok.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok(r) => failed
                            .lock()
                            .unwrap()
                            .push(format!("status {}", r.status())),
                        Err(e) => failed.lock().unwrap().push(format!("error {e}")),
                    }
                }
            })
        })
        .collect();
    // A load balancer: polls /readyz and stops sending 200 ms after it
    // reads 503 (endpoint removal is not instant).
    let lb = {
        let (stop, base) = (stop.clone(), base.clone());
        tokio::spawn(async move {
            let client = crate::helpers::http();
            loop {
                let r = client.get(format!("{base}/readyz")).send().await;
                if matches!(&r, Ok(r) if r.status() == 503) {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    stop.store(true, Ordering::SeqCst);
                    return Instant::now();
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    eventually(Duration::from_secs(10), || async {
        (ok.load(Ordering::SeqCst) >= 200).then_some(())
    })
    .await;
    let before_signal = ok.load(Ordering::SeqCst);
    p.signal("TERM");
    let stopped_sending = tokio::time::timeout(Duration::from_secs(10), lb)
        .await
        .expect("readyz turned 503")
        .unwrap();
    for w in workers {
        w.await.unwrap();
    }
    let failed = failed.lock().unwrap().clone();
    assert!(failed.is_empty(), "failed requests: {failed:?}");
    assert!(
        ok.load(Ordering::SeqCst) > before_signal,
        "requests were served after SIGTERM"
    );
    // The process exits on its own after the drain.
    let mut child = p;
    let exited = child.exited().await;
    assert!(exited.success(), "exit status {exited}");
    assert!(stopped_sending.elapsed() < Duration::from_secs(10));
    let out = child.out.lock().unwrap().clone();
    assert!(out.contains("still accepting"), "{out}");
    // The load balancer read a 503 from /readyz: an answer the service
    // meant, not a failure to log a WARN for (at info, a WARN would show).
    assert!(!out.contains("response failed"), "{out}");
}

/// The real binary, stopped by SIGINT: every decision it made is in the
/// store, and the store is closed (SQLite checkpoints its WAL into the
/// file and removes it), so what is left is one file to copy.
#[tokio::test]
async fn a_stopped_binary_leaves_its_decisions_in_one_closed_store() {
    let mock = MockRt::start().await;
    let dir = temp_dir("closed-store");
    let path = dir.display().to_string();
    let p = spawn_binary(&[
        ("FRAUDGATE_UPSTREAM__URL", &mock.url()),
        ("FRAUDGATE_UPSTREAM__KEY", UPSTREAM_KEY),
        ("FRAUDGATE_SERVER__DRAIN_DELAY_MS", "0"),
        ("FRAUDGATE_DECISION_LOG__PATH", &path),
    ]);
    let port = listening_port(&p).await;
    let client = crate::helpers::http();
    for i in 0..20 {
        let url = format!(
            "http://127.0.0.1:{port}/v1/check?{}",
            query(&format!("10.120.0.{i}"), &[])
        );
        assert_eq!(client.get(&url).send().await.unwrap().status(), 200);
    }
    p.signal("INT");
    let mut child = p;
    let exited = child.exited().await;
    assert!(exited.success(), "exit status {exited}");
    assert!(dir.join("decisions.sqlite").exists());
    assert!(
        !dir.join("decisions.sqlite-wal").exists(),
        "the writer closed the store before the process ended"
    );
    assert_eq!(stored_decisions(&dir), 20);
}

/// SIGINT (a terminal's Ctrl-C) as soon as /readyz answers: the handler is
/// in place before the server answers anything, so the process drains and
/// exits instead of running on (or dying undrained).
#[tokio::test]
async fn sigint_as_soon_as_ready_stops_the_process() {
    let p = spawn_binary(&[
        ("FRAUDGATE_SERVER__DRAIN_DELAY_MS", "0"),
        ("FRAUDGATE_DECISION_LOG__ENABLED", "false"),
    ]);
    let port = listening_port(&p).await;
    eventually(Duration::from_secs(10), || async {
        let r = crate::helpers::http()
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
            .ok()?;
        (r.status() == 200).then_some(())
    })
    .await;
    p.signal("INT");
    let mut child = p;
    let exited = child.exited().await;
    assert!(exited.success(), "exit status {exited}");
}

/// The documented bound: after SIGTERM the process serves for
/// `drain_delay_ms`, then gives in-flight requests and the decision log
/// `shutdown_timeout_ms` together, and exits. A request that never ends
/// holds it to the whole bound, and no longer.
#[tokio::test]
async fn sigterm_exits_within_drain_delay_plus_shutdown_timeout() {
    let mock = MockRt::start().await;
    mock.set_default(Reply::Hang);
    let p = spawn_binary(&[
        ("FRAUDGATE_UPSTREAM__URL", &mock.url()),
        ("FRAUDGATE_UPSTREAM__KEY", UPSTREAM_KEY),
        ("FRAUDGATE_UPSTREAM__TIMEOUT_MS", "60000"),
        ("FRAUDGATE_SERVER__REQUEST_TIMEOUT_MS", "60000"),
        ("FRAUDGATE_SERVER__DRAIN_DELAY_MS", "500"),
        ("FRAUDGATE_SERVER__SHUTDOWN_TIMEOUT_MS", "1500"),
    ]);
    let port = listening_port(&p).await;
    let hung = tokio::spawn(
        crate::helpers::http()
            .get(format!(
                "http://127.0.0.1:{port}/v1/check?{}",
                query("10.77.0.1", &[])
            ))
            .send(),
    );
    eventually(Duration::from_secs(5), || async {
        (mock.calls() >= 1).then_some(())
    })
    .await;
    let signalled = Instant::now();
    p.signal("TERM");
    let mut child = p;
    let status = child.exited().await;
    let took = signalled.elapsed();
    assert!(status.success(), "exit status {status}");
    assert!(
        took >= Duration::from_millis(1900),
        "exited after {took:?}, before drain (0.5 s) + shutdown timeout (1.5 s)"
    );
    assert!(
        took < Duration::from_millis(2000 + 3000),
        "exited after {took:?}: the bound is 2 s (plus a wide margin)"
    );
    let out = child.out.lock().unwrap().clone();
    assert!(out.contains("shutdown timeout over"), "{out}");
    hung.abort();
}
