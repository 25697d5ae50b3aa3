//! The decision log's store fails, deciding goes on: a damaged SQLite
//! file is moved aside and a fresh one takes the decisions, a store that
//! cannot open costs no decision (records dropped and counted, `/readyz`
//! says so), a file deleted under the running service is recreated, and
//! `on_full = "block"` waits a bounded time for a store that is down.

use std::time::Duration;

use fraudgate::decision_log::{OnFull, Store};

use crate::decision_log::rows;
use crate::helpers::*;

/// The files in `dir` whose name starts with `prefix`.
fn named(dir: &std::path::Path, prefix: &str) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix))
        })
        .collect()
}

#[tokio::test]
async fn a_corrupt_store_at_start_is_moved_aside_and_a_fresh_one_takes_decisions() {
    let dir = temp_dir("corrupt");
    // Not a database: a header of random bytes, then more.
    let garbage: Vec<u8> = (0..64 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(dir.join("decisions.sqlite"), &garbage).unwrap();
    let path = dir.display().to_string();
    let app = spawn_app_with(|c| c.decision_log.path = path.clone()).await;
    for i in 0..5 {
        let (status, _) = app.check_ip(&format!("10.130.0.{i}")).await;
        assert_eq!(status, 200);
    }
    rows(&app, "/v1/data/click?field=id", 5).await;
    let aside = named(&dir, "decisions.sqlite.corrupt-");
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(
        std::fs::read(&aside[0]).unwrap(),
        garbage,
        "kept as it was, for forensics"
    );
    let m = app.metrics().await;
    assert_eq!(
        sample(
            &m,
            "fraudgate_log_store_failures_total",
            &[("cause", "corrupt")]
        ),
        1.0
    );
    let ready = json(app.get("/readyz").await).await;
    assert_eq!(ready["decision_log"], "ok", "{ready}");
}

#[tokio::test]
async fn a_store_that_cannot_open_costs_no_decision_and_readyz_says_so() {
    let dir = temp_dir("unopenable");
    // Its parent is a regular file: no directory can be made there (as
    // root too).
    let file = dir.join("a-file");
    std::fs::write(&file, "not a directory").unwrap();
    let path = file.join("decisions").display().to_string();
    let app = spawn_app_with(|c| {
        c.decision_log.path = path.clone();
        c.decision_log.flush_ms = 20;
    })
    .await;
    for i in 0..5 {
        let (status, body) = app.check_ip(&format!("10.131.0.{i}")).await;
        assert_eq!(status, 200, "{body}");
        assert!(body["decision"].is_string(), "{body}");
    }
    let m = eventually(Duration::from_secs(5), || async {
        let m = app.metrics().await;
        (sample(&m, "fraudgate_log_dropped_total", &[]) == 5.0).then_some(m)
    })
    .await;
    assert!(
        sample(
            &m,
            "fraudgate_log_store_failures_total",
            &[("cause", "unavailable")]
        ) >= 1.0,
        "{m}"
    );
    let r = app.get("/readyz").await;
    assert_eq!(r.status(), 200, "the instance still serves");
    let ready = json(r).await;
    let state = ready["decision_log"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(state.starts_with("failing: "), "{ready}");
}

#[tokio::test]
async fn a_store_deleted_under_the_running_service_is_recreated() {
    let dir = temp_dir("deleted");
    let path = dir.display().to_string();
    let app = spawn_app_with(|c| {
        c.decision_log.path = path.clone();
        c.decision_log.flush_ms = 20;
    })
    .await;
    app.check_ip("10.132.0.1").await;
    rows(&app, "/v1/data/click?field=id", 1).await;
    // As `rm decisions.sqlite*` would.
    for f in named(&dir, "decisions.sqlite") {
        std::fs::remove_file(f).unwrap();
    }
    for i in 2..5 {
        app.check_ip(&format!("10.132.0.{i}")).await;
    }
    let v = rows(&app, "/v1/data/click?field=ip&sort=ip_asc", 3).await;
    assert_eq!(v[0]["ip"], "10.132.0.2");
    assert!(dir.join("decisions.sqlite").exists());
    let m = app.metrics().await;
    assert_eq!(
        sample(
            &m,
            "fraudgate_log_store_failures_total",
            &[("cause", "replaced")]
        ),
        1.0
    );
}

#[tokio::test]
async fn on_full_block_waits_a_bounded_time_while_the_store_is_down() {
    // A ClickHouse nobody answers: batches fail and wait, the queue fills.
    let url = format!("http://127.0.0.1:{}", free_port());
    let app = spawn_app_with(|c| {
        c.decision_log.store = Store::Clickhouse;
        c.decision_log.clickhouse.url = url.clone();
        c.decision_log.on_full = OnFull::Block;
        c.decision_log.queue = 2;
        c.decision_log.flush_ms = 10;
        c.decision_log.block_timeout_ms = 200;
    })
    .await;
    // The writer holds a batch it cannot write (and waits to retry it).
    app.check_ip("10.133.1.1").await;
    eventually(Duration::from_secs(10), || async {
        let m = app.metrics().await;
        (sample(&m, "fraudgate_log_write_errors_total", &[]) >= 1.0).then_some(())
    })
    .await;
    for i in 0..8 {
        let (status, _) = tokio::time::timeout(
            Duration::from_secs(5),
            app.check_ip(&format!("10.133.0.{i}")),
        )
        .await
        .unwrap_or_else(|_| panic!("decision {i} waited on the store without limit"));
        assert_eq!(status, 200);
    }
    let m = app.metrics().await;
    assert!(sample(&m, "fraudgate_log_dropped_total", &[]) >= 1.0, "{m}");
}
