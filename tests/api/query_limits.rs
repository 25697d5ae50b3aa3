//! The read side's limits: an answer gets `decision_log.query_timeout_ms`
//! in all, sending included, so a client that stops reading is cut off
//! and releases its thread and read transaction; at most
//! `decision_log.max_queries` run at once, the rest get 503 `busy`.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::clickhouse::record;
use crate::helpers::*;

/// `n` decisions of the last second written straight into the SQLite
/// store under `dir`: many megabytes of answer, more than the sockets
/// and the answer's channel can hold.
pub async fn seed_sqlite(dir: &std::path::Path, n: u128) {
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || {
        let config = fraudgate::config::Config::default();
        let ivt = fraudgate::decision_log::IvtMap::new(&config.ivt).unwrap();
        let mut w = fraudgate::decision_log::sqlite::Writer::open(
            &dir,
            ivt,
            fraudgate::decision_log::IpMode::Full,
            30,
        )
        .unwrap();
        let now = jiff::Timestamp::now().as_millisecond();
        let batch: Vec<_> = (0..n).map(|i| record(now - 1000, i)).collect();
        w.write(&batch).unwrap();
    })
    .await
    .unwrap();
}

/// A client that asks for `path`, sees its answer begin, and never reads
/// again, with a receive buffer of a few kilobytes.
pub async fn stalled_reader(port: u16, path: &str) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut s = socket.connect(([127, 0, 0, 1], port).into()).await.unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: {UA}\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut head = [0u8; 12];
    s.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200", "the answer has begun");
    s
}

/// `PRAGMA wal_checkpoint(TRUNCATE)` on the store under `dir`, without
/// waiting: 0 when it could reset the WAL (no reader holds a snapshot in
/// it), 1 when a read transaction is in the way.
fn checkpoint_busy(dir: &std::path::Path) -> i64 {
    let conn = rusqlite::Connection::open(dir.join(fraudgate::decision_log::sqlite::FILE)).unwrap();
    conn.busy_timeout(Duration::ZERO).unwrap();
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
        .unwrap_or(1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_stops_reading_is_cut_and_releases_its_slot_and_snapshot() {
    // Arrange: a store with an answer of some 10 MB, two query slots.
    let dir = temp_dir("stalled");
    seed_sqlite(&dir, 60_000).await;
    let app = spawn_app_with(|c| {
        c.decision_log.path = dir.display().to_string();
        c.decision_log.query_timeout_ms = 2000;
        c.decision_log.max_queries = 2;
    })
    .await;
    // A decision written by the app: the WAL holds frames, so a reader's
    // snapshot is one a checkpoint has to wait for.
    app.check_ip("10.97.0.1").await;
    crate::decision_log::rows(
        &app,
        "/v1/data/click?field=id&filter=%5B%22ip%22%2C%2210.97.0.1%22%5D",
        1,
    )
    .await;

    // Act: two clients that stop reading their answers.
    let path =
        "/v1/data/all?field=id,ip,ua,affiliate_id,offer_id,datetime,decision&page_size=1000000";
    let started = std::time::Instant::now();
    let a = stalled_reader(app.port, path).await;
    let b = stalled_reader(app.port, path).await;

    // Assert: every slot is taken, so a third query waits briefly and is
    // refused; their snapshots hold the WAL.
    let r = app.get("/v1/data/all?field=id&page_size=1").await;
    assert_eq!(r.status(), 503);
    let body = json(r).await;
    assert_eq!(body["error"], "busy", "{body}");
    assert_eq!(
        checkpoint_busy(&dir),
        1,
        "the stalled readers hold their snapshots"
    );
    // Both are cut within query_timeout_ms and a margin, counted, and their
    // threads, slots and read transactions released.
    let m = eventually(Duration::from_secs(8), || async {
        let m = app.metrics().await;
        let cut = sample(
            &m,
            "fraudgate_query_cuts_total",
            &[("reason", "slow_reader")],
        );
        (cut == 2.0 && sample(&m, "fraudgate_queries_running", &[]) == 0.0).then_some(m)
    })
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(2 + 6),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        sample(&m, "fraudgate_queries_total", &[("outcome", "busy")]),
        1.0
    );
    eventually(Duration::from_secs(3), || async {
        (checkpoint_busy(&dir) == 0).then_some(())
    })
    .await;
    let r = app.get("/v1/data/all?field=id&page_size=1").await;
    assert_eq!(r.status(), 200, "the slots are free again");
    drop((a, b));
}

/// A report is collected whole before it is answered: its page is capped
/// (a larger `count` is a 400 naming it), and a report whose request is
/// gone (here: server.request_timeout_ms answered 503 first) stops its
/// query instead of running on to query_timeout_ms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_is_capped_and_stops_when_its_request_is_gone() {
    let dir = temp_dir("report");
    seed_sqlite(&dir, 100_000).await;
    let app = spawn_app_with(|c| {
        c.decision_log.path = dir.display().to_string();
        c.decision_log.query_timeout_ms = 60_000;
        c.server.request_timeout_ms = 50;
    })
    .await;
    let r = app.get("/v1/reports/global?count=10001").await;
    assert_eq!(r.status(), 400);
    assert_eq!(json(r).await["field"], "count");
    // Asia/Kolkata is not a whole hour off UTC: no rollup answers, every
    // row is read.
    let r = app
        .get("/v1/reports/fraud?group[]=affiliate_id&group[]=offer_id&timezone=Asia%2FKolkata&count=10000")
        .await;
    assert_eq!(r.status(), 503);
    assert_eq!(json(r).await["error"], "timeout");
    eventually(Duration::from_secs(2), || async {
        let m = app.metrics().await;
        let cut = sample(
            &m,
            "fraudgate_query_cuts_total",
            &[("reason", "client_gone")],
        );
        (cut == 1.0 && sample(&m, "fraudgate_queries_running", &[]) == 0.0).then_some(())
    })
    .await;
}
