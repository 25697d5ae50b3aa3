//! The decision log at fleet scale on ClickHouse: inserts go through the
//! server's own batching (a `Buffer` table before 21.11, `async_insert`
//! from it), chosen by the server's version. On the real server (Debian's
//! 18.16): buffered decisions are read at once, reach the table and the id
//! index at shutdown, survive a clean server stop, and a Buffer from an
//! earlier release is made again with the table's columns. The async path
//! needs a server from 21.11: a mock server checks what the writer sends.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use fraudgate::config::Config;
use fraudgate::decision_log::clickhouse::{InsertMode, Writer};
use fraudgate::decision_log::{IpMode, IvtMap};

use crate::clickhouse::{ClickHouse, record, table_before_event_time};
use crate::decision_log::rows;
use crate::helpers::*;

/// A writer on `config`'s ClickHouse store, writing `n` decisions of a
/// second ago in one batch on a blocking thread; the writer, not closed.
async fn write_batch(config: &Config, n: u128) -> Writer {
    let c = config.decision_log.clickhouse.clone();
    let ivt = IvtMap::new(&config.ivt).unwrap();
    let now = jiff::Timestamp::now().as_millisecond();
    tokio::task::spawn_blocking(move || {
        let batch: Vec<_> = (0..n).map(|i| record(now - 1000, i)).collect();
        let mut w = Writer::new(c, ivt, IpMode::Full, 30);
        w.write(&batch).unwrap();
        w
    })
    .await
    .unwrap()
}

/// `SELECT count()` of `table`, or of `table` where `filter`.
async fn count(ch: &ClickHouse, table: &str, filter: &str) -> u64 {
    let w = if filter.is_empty() {
        String::new()
    } else {
        format!(" WHERE {filter}")
    };
    let text = ch.sql(&format!("SELECT count() FROM {table}{w}")).await;
    text.trim().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    no_clickhouse,
    ignore = "clickhouse-server is not installed (Debian: clickhouse-server)"
)]
async fn buffered_decisions_are_read_at_once_and_reach_the_table_at_shutdown() {
    let Some(ch) = ClickHouse::started() else {
        return;
    };
    let store = ch.store();
    let mut probe = Config::default();
    store(&mut probe);
    let db = probe.decision_log.clickhouse.database.clone();
    let mut app = spawn_app_with(|c| {
        store(c);
        c.decision_log.clickhouse.database = db.clone();
        c.decision_log.flush_ms = 20;
    })
    .await;
    for i in 0..5 {
        app.check_ip(&format!("10.137.0.{i}")).await;
    }
    let v = rows(&app, "/v1/data/click?field=id,ip&sort=ip_asc", 5).await;
    // 18.16 has no async_insert: `auto` made a Buffer table.
    let engine = ch
        .sql(&format!(
            "SELECT engine FROM system.tables WHERE database = '{db}' \
             AND name = 'decisions_buffer' FORMAT TabSeparated"
        ))
        .await;
    assert_eq!(engine.trim(), "Buffer");
    // The rows are still in its memory (a layer holding under 10 000 rows
    // writes them after 10 s): the answer above read through it.
    let table = format!("{db}.decisions");
    assert!(
        count(&ch, &table, "").await < 5,
        "the table has the rows already"
    );
    // A decision looked up by id (as an entry, or a conversion's click,
    // seconds after it) is found before the id index has it.
    let id = v[2]["id"].as_str().unwrap();
    assert_eq!(count(&ch, &format!("{table}_ids"), "").await, 0);
    let entry = json(app.get(&format!("/v1/reports/entry/{id}")).await).await;
    assert_eq!(entry["ip"], "10.137.0.2", "{entry}");
    // Shutdown: the writer's close writes the buffer to the table, and
    // the view fills the id index from it.
    app.shutdown();
    tokio::time::timeout(Duration::from_secs(10), app.stopped.take().unwrap())
        .await
        .expect("stops")
        .unwrap()
        .unwrap();
    assert_eq!(count(&ch, &table, "").await, 5);
    assert_eq!(count(&ch, &format!("{table}_ids"), "").await, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    no_clickhouse,
    ignore = "clickhouse-server is not installed (Debian: clickhouse-server)"
)]
async fn a_clickhouse_that_stops_cleanly_keeps_what_its_buffer_held() {
    let Some(mut ch) = ClickHouse::started() else {
        return;
    };
    let mut config = Config::default();
    (ch.store())(&mut config);
    config.decision_log.clickhouse.insert = InsertMode::Buffer;
    let table = format!("{}.decisions", config.decision_log.clickhouse.database);
    // (Not closed: as if the gate were still running, or had crashed.)
    let writer = write_batch(&config, 50).await;
    assert_eq!(count(&ch, &table, "").await, 0, "held by the Buffer");
    tokio::task::block_in_place(|| {
        ch.stop_cleanly();
        ch.start();
    });
    assert_eq!(count(&ch, &table, "").await, 50);
    assert_eq!(count(&ch, &format!("{table}_ids"), "").await, 50);
    // (Its runtime is dropped off the test's.)
    tokio::task::spawn_blocking(move || drop(writer))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    no_clickhouse,
    ignore = "clickhouse-server is not installed (Debian: clickhouse-server)"
)]
async fn a_buffer_from_before_a_new_column_is_made_again_with_it() {
    let Some(ch) = ClickHouse::started() else {
        return;
    };
    let mut config = Config::default();
    (ch.store())(&mut config);
    let db = config.decision_log.clickhouse.database.clone();
    let table = format!("{db}.decisions");
    // An earlier release's table and Buffer (without `at`), a row in the
    // Buffer that it would hold for 100 s.
    ch.sql(&format!("CREATE DATABASE {db}")).await;
    ch.sql(&table_before_event_time(&table)).await;
    ch.sql(&format!(
        "CREATE TABLE {table}_buffer AS {table} ENGINE = Buffer({db}, decisions, 1, \
         100, 100, 1000000, 1000000, 100000000, 100000000)"
    ))
    .await;
    ch.sql(&format!(
        "INSERT INTO {table}_buffer (id, ts, event_type, ip, decision, would_be, rules) \
         VALUES ('old', {}, 'click', '10.138.0.1', 'allow', 'allow', '[]')",
        jiff::Timestamp::now().as_millisecond() - 5000
    ))
    .await;
    let mut w = write_batch(&config, 3).await;
    // The old Buffer was dropped (writing its row to the table) before
    // the table got `at`, and made again with the table's columns.
    assert_eq!(count(&ch, &table, "id = 'old'").await, 1);
    let columns = |t: &'static str| {
        let db = db.clone();
        let ch = &ch;
        async move {
            ch.sql(&format!(
                "SELECT name FROM system.columns WHERE database = '{db}' AND table = '{t}' \
                 FORMAT TabSeparated"
            ))
            .await
        }
    };
    let of_table = columns("decisions").await;
    assert!(of_table.lines().any(|l| l == "at"), "{of_table}");
    assert_eq!(columns("decisions_buffer").await, of_table);
    let ddl = ch
        .sql(&format!(
            "SHOW CREATE TABLE {table}_buffer FORMAT TabSeparated"
        ))
        .await;
    assert!(
        ddl.contains("Buffer(") && ddl.contains(", 4, 5, 10, "),
        "{ddl}"
    );
    // The batch went through the new Buffer; closing writes it out.
    assert_eq!(count(&ch, &format!("{table}_buffer"), "").await, 4);
    tokio::task::spawn_blocking(move || w.close())
        .await
        .unwrap();
    assert_eq!(count(&ch, &table, "").await, 4);
}

/// What a mock ClickHouse was sent: each request's URL parameters and
/// body.
type Sent = Arc<Mutex<Vec<(Vec<(String, String)>, String)>>>;

/// A ClickHouse stand-in answering `SELECT version()` with `version` and
/// everything else with 200 and no rows; records what it was sent.
async fn mock_clickhouse(version: &'static str) -> (String, Sent) {
    use axum::extract::{Query, State};
    let sent: Sent = Arc::default();
    let app = axum::Router::new()
        .fallback(
            move |State(sent): State<Sent>,
                  Query(params): Query<Vec<(String, String)>>,
                  body: axum::body::Bytes| async move {
                let text = String::from_utf8_lossy(&body).into_owned();
                let answer = if text.starts_with("SELECT version()") {
                    format!("{version}\n")
                } else {
                    String::new()
                };
                sent.lock().unwrap().push((params, text));
                answer
            },
        )
        .with_state(sent.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, sent)
}

/// The writer's requests to a mock of `version`, with `mode`: one batch
/// written, then the writer closed.
async fn sent_by_writer(
    version: &'static str,
    mode: InsertMode,
) -> Vec<(Vec<(String, String)>, String)> {
    let (url, sent) = mock_clickhouse(version).await;
    let mut config = Config::default();
    config.decision_log.clickhouse.url = url;
    config.decision_log.clickhouse.insert = mode;
    let mut w = write_batch(&config, 2).await;
    tokio::task::spawn_blocking(move || w.close())
        .await
        .unwrap();
    sent.lock().unwrap().clone()
}

/// The INSERT's parameters among what was sent.
fn insert_params(sent: &[(Vec<(String, String)>, String)]) -> Vec<(String, String)> {
    let inserts: Vec<_> = sent
        .iter()
        .filter(|(p, _)| {
            p.iter()
                .any(|(k, v)| k == "query" && v.starts_with("INSERT"))
        })
        .collect();
    assert_eq!(inserts.len(), 1, "{sent:?}");
    inserts[0].0.clone()
}

fn has(params: &[(String, String)], key: &str, value: &str) -> bool {
    params.iter().any(|(k, v)| k == key && v.starts_with(value))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_inserts_asynchronously_from_21_11_and_through_a_buffer_before() {
    let sent = sent_by_writer("23.8.2.7", InsertMode::Auto).await;
    let p = insert_params(&sent);
    assert!(has(&p, "async_insert", "1"), "{p:?}");
    assert!(has(&p, "wait_for_async_insert", "1"), "{p:?}");
    assert!(
        has(&p, "query", "INSERT INTO fraudgate.decisions ("),
        "{p:?}"
    );
    assert!(
        !sent.iter().any(|(_, body)| body.contains("Buffer")),
        "no Buffer table on a server with async_insert"
    );

    let sent = sent_by_writer("18.16.1", InsertMode::Auto).await;
    let p = insert_params(&sent);
    assert!(!has(&p, "async_insert", ""), "{p:?}");
    assert!(
        has(&p, "query", "INSERT INTO fraudgate.decisions_buffer ("),
        "{p:?}"
    );
    let bodies: Vec<&str> = sent.iter().map(|(_, b)| b.as_str()).collect();
    assert!(
        bodies
            .iter()
            .any(|b| b.contains("ENGINE = Buffer(fraudgate, decisions, 4")),
        "{bodies:?}"
    );
    assert_eq!(
        bodies.last(),
        Some(&"OPTIMIZE TABLE fraudgate.decisions_buffer"),
        "the close flushes the Buffer"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_choice_is_kept_whatever_the_version() {
    let sent = sent_by_writer("24.3.1.2672", InsertMode::Direct).await;
    let p = insert_params(&sent);
    assert!(!has(&p, "async_insert", ""), "{p:?}");
    assert!(
        has(&p, "query", "INSERT INTO fraudgate.decisions ("),
        "{p:?}"
    );
    assert!(
        !sent.iter().any(|(_, b)| b.starts_with("SELECT version()")),
        "the version is only asked for auto"
    );
    let sent = sent_by_writer("18.16.1", InsertMode::Async).await;
    assert!(has(&insert_params(&sent), "async_insert", "1"));
}
