//! The decision log on a real ClickHouse server (Debian's
//! `clickhouse-server`, started here from a temporary config on random
//! ports; `.ci/run` installs it): the same query suite as SQLite passes,
//! both stores answer the same queries identically, a server that is down
//! costs no decision (batches wait and are retried), and retention drops
//! whole day partitions.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use fraudgate::config::Config;
use fraudgate::decision_log::Store;

use crate::decision_log::{self, lines, rows};
use crate::helpers::*;

pub struct ClickHouse {
    child: Option<Child>,
    dir: std::path::PathBuf,
    http_port: u16,
    tcp_port: u16,
}

impl Drop for ClickHouse {
    fn drop(&mut self) {
        self.stop();
    }
}

impl ClickHouse {
    /// A server on random ports with its data in a temporary directory,
    /// not yet started.
    pub fn new() -> Option<ClickHouse> {
        tool("clickhouse-server")?;
        let dir = temp_dir("clickhouse");
        Some(ClickHouse {
            child: None,
            dir,
            http_port: free_port(),
            tcp_port: free_port(),
        })
    }

    pub fn started() -> Option<ClickHouse> {
        let mut ch = Self::new()?;
        ch.start();
        Some(ch)
    }

    pub fn start(&mut self) {
        let dir = self.dir.display().to_string();
        write_file(
            &self.dir.join("config.xml"),
            &format!(
                r#"<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><console>1</console></logger>
  <http_port>{http}</http_port>
  <tcp_port>{tcp}</tcp_port>
  <listen_host>127.0.0.1</listen_host>
  <path>{dir}/data/</path>
  <tmp_path>{dir}/tmp/</tmp_path>
  <users_config>{dir}/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>5368709</mark_cache_size>
  <timezone>UTC</timezone>
</yandex>
"#,
                http = self.http_port,
                tcp = self.tcp_port
            ),
        );
        write_file(
            &self.dir.join("users.xml"),
            r#"<?xml version="1.0"?>
<yandex>
  <profiles><default></default></profiles>
  <users>
    <default>
      <password></password>
      <networks><ip>127.0.0.1</ip></networks>
      <profile>default</profile>
      <quota>default</quota>
    </default>
  </users>
  <quotas><default></default></quotas>
</yandex>
"#,
        );
        let log = std::fs::File::create(self.dir.join("server.log")).unwrap();
        let child = Command::new(tool("clickhouse-server").unwrap())
            .arg(format!("--config-file={}/config.xml", self.dir.display()))
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("clickhouse-server starts");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if self.ping() {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "clickhouse-server did not start: {}",
                std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `GET /ping` answers `Ok.` once the server takes queries.
    fn ping(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.http_port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let mut answer = String::new();
        s.write_all(b"GET /ping HTTP/1.0\r\n\r\n").is_ok()
            && s.read_to_string(&mut answer).is_ok()
            && answer.ends_with("Ok.\n")
    }

    /// Stops the server as its service manager does (SIGTERM), and waits
    /// for it to end.
    pub fn stop_cleanly(&mut self) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        self.signal_pid(c.id(), "TERM");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while c.try_wait().unwrap().is_none() {
            if std::time::Instant::now() > deadline {
                let _ = c.kill();
                panic!("clickhouse-server did not stop within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // (A frozen server dies of SIGKILL all the same.)
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends the server a signal (`STOP` freezes it, `CONT` resumes it).
    pub fn signal(&self, name: &str) {
        self.signal_pid(self.child.as_ref().expect("started").id(), name);
    }

    fn signal_pid(&self, pid: u32, name: &str) {
        let pid = pid.to_string();
        let ok = Command::new("kill")
            .args([format!("-{name}"), pid])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{name}");
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// A config tweak: this server, a database of the app's own.
    pub fn store(&self) -> impl Fn(&mut Config) + Sync + use<> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let url = self.url();
        move |c: &mut Config| {
            c.decision_log.store = Store::Clickhouse;
            c.decision_log.clickhouse.url = url.clone();
            c.decision_log.clickhouse.database = format!(
                "fg_test_{}_{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            );
        }
    }

    /// Runs a statement on the server (test setup and checks).
    pub async fn sql(&self, sql: &str) -> String {
        let r = http()
            .post(format!("{}/", self.url()))
            .body(sql.to_owned())
            .send()
            .await
            .unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        assert!(status.is_success(), "{sql}: {text}");
        text
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    no_clickhouse,
    ignore = "clickhouse-server is not installed (Debian: clickhouse-server)"
)]
async fn clickhouse_passes_the_same_query_suite_as_sqlite() {
    let Some(ch) = ClickHouse::started() else {
        return;
    };
    let store = ch.store();
    decision_log::every_door_suite(&store).await;
    decision_log::data_api_suite(&store).await;
    decision_log::injection_suite(&store).await;
    decision_log::reports_suite(&store).await;
    decision_log::hashed_ip_suite(&store).await;
    crate::data_api_compat::docs_requests_suite(&store).await;
    crate::data_api_compat::event_time_suite(&store).await;
    crate::postback::funnel_suite(&store).await;
    crate::fraudshield::docs_requests_suite(&store).await;
}

/// The same decisions sent to a SQLite app and a ClickHouse app.
async fn seed(app: &TestApp) {
    app.mock.on_ip("10.98.0.1", Reply::tags("datacenter"));
    app.mock.on_ip("10.98.0.2", Reply::tags("proxy\ndevice"));
    app.mock.on_ip("10.98.0.3", Reply::tags("crawler"));
    let mut n = 0;
    for i in 0..40u32 {
        let ip = format!("10.98.0.{}", 1 + i % 7);
        let aff = format!("{}", 100 + i % 4);
        let sub = format!("s{}", i % 3);
        let country = ["DE", "US", "FR"][(i % 3) as usize];
        let mut extra = vec![("aff_sub1", sub.as_str()), ("country_code", country)];
        if i % 5 == 0 {
            extra.push(("aff_sub2", "it's \"quoted\", with\ttab"));
        }
        // Values with LIKE's special characters, for the _like queries.
        extra.push((
            "aff_sub3",
            [r"50%_off", "50x_off", "500off", r"C:\N\dir", "a5"][(i % 5) as usize],
        ));
        let q = query(&ip, &extra).replace("affiliate_id=6251", &format!("affiliate_id={aff}"));
        let ua = if i % 6 == 0 { "curl/8.5.0" } else { UA };
        let q = q.replace(&format!("ua={}", form(UA)), &format!("ua={}", form(ua)));
        app.check(&q).await;
        n += 1;
    }
    rows(app, "/v1/data/click?field=id&page_size=100", n).await;
}

fn form(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    no_clickhouse,
    ignore = "clickhouse-server is not installed (Debian: clickhouse-server)"
)]
async fn both_stores_answer_every_query_alike() {
    let Some(ch) = ClickHouse::started() else {
        return;
    };
    let store = ch.store();
    let on_ch = spawn_app_with(&store).await;
    let on_sqlite = spawn_app().await;
    seed(&on_ch).await;
    seed(&on_sqlite).await;
    let f = |s: &str| form(s);
    let queries = [
        "/v1/data/click?field=ip,ua,affiliate_id,aff_sub1,aff_sub2,country_code,decision,tags,reason,rules,ivt,ivt_category&sort=ip_asc&sort=affiliate_id_asc&sort=aff_sub1_asc&sort=country_code_asc&page_size=100".to_owned(),
        "/v1/data/click?field=ip,aff_sub2&sort=aff_sub2_desc&sort=ip_asc&page=2&page_size=7".to_owned(),
        format!("/v1/data/click?field=ip,affiliate_id&sort=ip_asc&sort=affiliate_id_asc&filter={}", f(r#"["AND", ["affiliate_id_in", ["100", "101"]], ["NOT", ["tag", "datacenter"]], ["ua_like", "Mozilla%"]]"#)),
        format!("/v1/data/click?field=ip&sort=ip_asc&filter={}", f(r#"["OR", ["aff_sub2", "it's \"quoted\", with\ttab"], ["rule", "crawler_ua"]]"#)),
        format!("/v1/data/click?field=ip&sort=ip_asc&filter={}", f(r#"["AND", ["elapsed_us_ge", 0], ["ip_ne", "10.98.0.1"], ["country_code_lt", "FR"]]"#)),
        "/v1/data/all/groups?group=affiliate_id&field=count,blocked,allowed,block_rate,uniq_ip,uniq_aff_sub2,any_country_code,tag_proxy,tag_datacenter,blocked_by_proxy,rule_crawler_ua,blocked_by_rule_crawler_ua,ivt_givt,ivt_sivt,ivt_none&sort=affiliate_id_asc".to_owned(),
        "/v1/data/click/groups?group=country_code,aff_sub1&field=count,block_rate&sort=count_desc&sort=country_code_asc&sort=aff_sub1_asc".to_owned(),
        format!("/v1/data/click/groups?group=ivt,ivt_category&field=count&sort=ivt_asc&sort=ivt_category_asc&having={}", f(r#"["count_gt", 1]"#)),
        "/v1/data/click/groups?group=date,hour,week,month,year&field=count&tz=Asia%2FKolkata".to_owned(),
        "/v1/data/click/groups?group=aff_sub2&field=count,uniq_ip&sort=aff_sub2_asc".to_owned(),
        "/v1/data/click?field=ip,affiliate_id&sort=ip_asc&sort=affiliate_id_asc&page_size=5&format=csv".to_owned(),
        "/v1/data/click/groups?group=aff_sub2&field=count&sort=aff_sub2_asc&format=csv".to_owned(),
        "/v1/reports/fraud?group[]=affiliate_id&group[]=country_code".to_owned(),
        "/v1/reports/global?group[]=aff_sub1".to_owned(),
        "/v1/reports/interval?time_interval=day&timezone=America%2FNew_York&group[]=affiliate_id".to_owned(),
        format!("/v1/reports/fraud?group[]=affiliate_id&search_fields[]={}", f(r#"{"term":"min_block_rate","query":30}"#)),
    ];
    // `_like` means the same on both stores: % and _ wildcards, a
    // backslash escaping %, _ or itself.
    let like = |pattern: &str| {
        format!(
            "/v1/data/click?field=ip,aff_sub3&sort=ip_asc&sort=aff_sub3_asc&filter={}",
            f(&serde_json::json!(["aff_sub3_like", pattern]).to_string())
        )
    };
    let queries: Vec<String> = queries
        .into_iter()
        .chain([r"50\%%", r"%\_off", r"%\\N%", "50_off", r"C:\\N\\%", "%5%"].map(like))
        .collect();
    for path in &queries {
        let a = on_sqlite.get(path).await;
        let b = on_ch.get(path).await;
        assert_eq!(
            (a.status().as_u16(), b.status().as_u16()),
            (200, 200),
            "{path}"
        );
        let (a, b) = (a.text().await.unwrap(), b.text().await.unwrap());
        assert!(a.len() > 20, "{path}: the query selects something: {a}");
        assert_eq!(a, b, "{path}: SQLite (left) and ClickHouse (right) differ");
    }
    // A backslash before anything else is refused alike (ClickHouse
    // answered `\N` with 503 and read `\d` as any digit).
    for pattern in [r"\N", r"a\d", "x\\"] {
        let path = like(pattern);
        let (a, b) = (on_sqlite.get(&path).await, on_ch.get(&path).await);
        assert_eq!(
            (a.status().as_u16(), b.status().as_u16()),
            (400, 400),
            "{path}"
        );
        let (a, b) = (json(a).await, json(b).await);
        assert_eq!(
            (&a["field"], &a["error"]),
            (&"filter".into(), &"invalid_query".into()),
            "{a}"
        );
        assert_eq!(a, b);
    }
    // The same decision found by id on both, with every field.
    let id_of = |v: &serde_json::Value| v["id"].as_str().unwrap().to_owned();
    let one = lines(&on_ch, "/v1/data/click?field=id&page_size=1").await;
    let e = json(
        on_ch
            .get(&format!("/v1/reports/entry/{}", id_of(&one[0])))
            .await,
    )
    .await;
    assert_eq!(e["id"], one[0]["id"]);
    assert!(e["ua"].is_string() && e["rules"].is_array(), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    no_clickhouse,
    ignore = "clickhouse-server is not installed (Debian: clickhouse-server)"
)]
async fn a_clickhouse_that_is_down_costs_no_decision_and_is_caught_up() {
    let Some(mut ch) = ClickHouse::new() else {
        return;
    };
    let store = ch.store();
    let app = spawn_app_with(&store).await;
    for i in 0..20 {
        let (status, _) = app.check_ip(&format!("10.99.0.{i}")).await;
        assert_eq!(status, 200, "deciding never waits on the store");
    }
    // The writer fails and retries; nothing is lost or dropped.
    eventually(Duration::from_secs(10), || async {
        let m = app.metrics().await;
        (sample(&m, "fraudgate_log_write_errors_total", &[]) >= 2.0).then_some(())
    })
    .await;
    let r = app.get("/v1/data/click?field=ip").await;
    assert_eq!(r.status(), 503);
    assert_eq!(json(r).await["error"], "store_unavailable");
    ch.start();
    let v = rows(&app, "/v1/data/click?field=ip&page_size=100", 20).await;
    assert_eq!(v.len(), 20);
    // (The rows can be read a moment before the writer counts them.)
    let m = eventually(Duration::from_secs(10), || async {
        let m = app.metrics().await;
        (sample(&m, "fraudgate_log_written_total", &[]) == 20.0).then_some(m)
    })
    .await;
    assert_eq!(sample(&m, "fraudgate_log_dropped_total", &[]), 0.0);
    // The table is the documented one.
    let ddl = ch
        .sql("SELECT engine, partition_key, sorting_key FROM system.tables WHERE name = 'decisions' FORMAT TabSeparated")
        .await;
    assert!(ddl.contains("MergeTree"), "{ddl}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    no_clickhouse,
    ignore = "clickhouse-server is not installed (Debian: clickhouse-server)"
)]
async fn retention_drops_whole_day_partitions() {
    let Some(ch) = ClickHouse::started() else {
        return;
    };
    let mut config = Config::default();
    (ch.store())(&mut config);
    // (Counts the table's own rows: no Buffer in front.)
    config.decision_log.clickhouse.insert = fraudgate::decision_log::clickhouse::InsertMode::Direct;
    let c = config.decision_log.clickhouse.clone();
    let ivt = fraudgate::decision_log::IvtMap::new(&config.ivt).unwrap();
    let day = 86_400_000i64;
    let today = jiff::Timestamp::now().as_millisecond();
    let batch: Vec<_> = [today - 10 * day, today - 3 * day, today - day, today]
        .into_iter()
        .enumerate()
        .map(|(i, ms)| record(ms, i as u128))
        .collect();
    let mut w = tokio::task::spawn_blocking(move || {
        let mut w = fraudgate::decision_log::clickhouse::Writer::new(
            c,
            ivt,
            fraudgate::decision_log::IpMode::Full,
            2,
        );
        w.write(&batch).unwrap();
        w
    })
    .await
    .unwrap();
    let table = format!(
        "{}.{}",
        config.decision_log.clickhouse.database, config.decision_log.clickhouse.table
    );
    assert_eq!(
        ch.sql(&format!("SELECT count() FROM {table}")).await.trim(),
        "4"
    );
    let dropped = tokio::task::spawn_blocking(move || {
        let d = w.retention(today).unwrap();
        (d, w.retention(today).unwrap())
    })
    .await
    .unwrap();
    assert_eq!(dropped.0.len(), 2, "the days past 2: {:?}", dropped.0);
    assert!(dropped.1.is_empty(), "once a day");
    assert_eq!(
        ch.sql(&format!("SELECT count() FROM {table}")).await.trim(),
        "2",
        "yesterday and today are kept"
    );
}

pub fn record(ms: i64, i: u128) -> fraudgate::decision_log::Record {
    let event = fraudgate::event::EventBuilder::from_query(&format!(
        "event_type=click&ip=10.0.{}.{}&ua=x&affiliate_id=a&offer_id=o",
        (i / 256) % 256,
        i % 256
    ))
    .unwrap()
    .build()
    .unwrap();
    fraudgate::decision_log::Record {
        id: fraudgate::decision::DecisionId(((ms as u128) << 80) | (0x7 << 76) | i),
        door: fraudgate::decision::Door::Check,
        client: None,
        event: (&event).into(),
        decision: fraudgate::policy::Action::Allow,
        would_be: fraudgate::policy::Action::Allow,
        mode: fraudgate::policy::Mode::Enforce,
        tags: fraudgate::verdict::Tags::clean(),
        blocked_by: fraudgate::verdict::Tags::clean(),
        source: fraudgate::decision::Source::Cache,
        reason: "clean",
        rules: Vec::new(),
        elapsed_us: 1,
    }
}

/// `fraudgate query` and `report` at a terminal read the ClickHouse store
/// the config names, as the server does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    no_clickhouse,
    ignore = "clickhouse-server is not installed (Debian: clickhouse-server)"
)]
async fn the_cli_reads_the_clickhouse_store() {
    let Some(ch) = ClickHouse::started() else {
        return;
    };
    let mut config = Config::default();
    (ch.store())(&mut config);
    let database = config.decision_log.clickhouse.database.clone();
    let app = spawn_app_with(|c| {
        c.decision_log.store = Store::Clickhouse;
        c.decision_log.clickhouse.url = ch.url();
        c.decision_log.clickhouse.database = database.clone();
    })
    .await;
    app.mock.on_ip("10.98.9.1", Reply::tags("datacenter"));
    app.check_ip("10.98.9.1").await;
    app.check_ip("10.98.9.2").await;
    rows(&app, "/v1/data/click?field=id", 2).await;
    let url = ch.url();
    let cli = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_fraudgate"))
            .args(args)
            .env("FRAUDGATE_DECISION_LOG__STORE", "clickhouse")
            .env("FRAUDGATE_DECISION_LOG__CLICKHOUSE__URL", &url)
            .env("FRAUDGATE_DECISION_LOG__CLICKHOUSE__DATABASE", &database)
            .current_dir(std::env::temp_dir())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = tokio::task::block_in_place(|| {
        cli(&[
            "query",
            "click",
            "field=ip,decision",
            "sort=ip_asc",
            "format=csv",
        ])
    });
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, "ip,decision\r\n10.98.9.1,block\r\n10.98.9.2,allow\r\n");
    let (code, out, err) =
        tokio::task::block_in_place(|| cli(&["report", "fraud", "group[]=affiliate_id"]));
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("6251") && out.contains("50.0"), "{out}");
}

/// `rows` decisions written straight to `ch` (a second ago), and an app
/// reading them there, tweaked by `tweak`.
async fn app_on_rows(ch: &ClickHouse, rows: u128, tweak: impl FnOnce(&mut Config)) -> TestApp {
    let mut config = Config::default();
    (ch.store())(&mut config);
    let c = config.decision_log.clickhouse.clone();
    let ivt = fraudgate::decision_log::IvtMap::new(&config.ivt).unwrap();
    let now = jiff::Timestamp::now().as_millisecond();
    tokio::task::spawn_blocking(move || {
        let batch: Vec<_> = (0..rows).map(|i| record(now - 1000, i)).collect();
        let mut w = fraudgate::decision_log::clickhouse::Writer::new(
            c,
            ivt,
            fraudgate::decision_log::IpMode::Full,
            30,
        );
        w.write(&batch).unwrap();
    })
    .await
    .unwrap();
    let database = config.decision_log.clickhouse.database.clone();
    spawn_app_with(|c| {
        c.decision_log.store = Store::Clickhouse;
        c.decision_log.clickhouse.url = ch.url();
        c.decision_log.clickhouse.database = database.clone();
        tweak(c);
    })
    .await
}

/// An answer of many chunks streams whole (rows reach the HTTP body from a
/// blocking thread, outside the runtime that reads ClickHouse).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    no_clickhouse,
    ignore = "clickhouse-server is not installed (Debian: clickhouse-server)"
)]
async fn a_large_answer_streams_whole() {
    let Some(ch) = ClickHouse::started() else {
        return;
    };
    let app = app_on_rows(&ch, 5000, |_| {}).await;
    for path in [
        "/v1/data/all?field=id,ip,ua,affiliate_id,offer_id,rules&page_size=10000",
        "/v1/data/all?field=id&sort=id_asc&page_size=10000&format=csv",
    ] {
        let r = app.get(path).await;
        assert_eq!(r.status(), 200);
        let body = r.text().await.unwrap();
        assert!(
            body.len() > 150_000,
            "{path}: many chunks ({} bytes)",
            body.len()
        );
        let lines = body.lines().count();
        assert!(lines == 5000 || lines == 5001, "{path}: {lines} lines");
    }
}

/// A server frozen (SIGSTOP) while it has a batch: the insert times out
/// and is sent again, and the server, resumed, commits every copy it was
/// sent. The table collapses them by decision id: the documented query
/// (`FINAL`) reads each decision once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    no_clickhouse,
    ignore = "clickhouse-server is not installed (Debian: clickhouse-server)"
)]
async fn a_frozen_clickhouse_stores_no_decision_twice() {
    let Some(ch) = ClickHouse::started() else {
        return;
    };
    let mut config = Config::default();
    (ch.store())(&mut config);
    let database = config.decision_log.clickhouse.database.clone();
    let app = spawn_app_with(|c| {
        c.decision_log.store = Store::Clickhouse;
        c.decision_log.clickhouse = config.decision_log.clickhouse.clone();
        c.decision_log.clickhouse.timeout_ms = 500;
        c.decision_log.flush_ms = 20;
    })
    .await;
    app.check_ip("10.134.0.1").await;
    rows(&app, "/v1/data/click?field=id", 1).await;
    ch.signal("STOP");
    for i in 2..32 {
        let (status, _) = app.check_ip(&format!("10.134.0.{i}")).await;
        assert_eq!(status, 200);
    }
    // Sent, timed out and sent again while the server stood still.
    eventually(Duration::from_secs(10), || async {
        let m = app.metrics().await;
        (sample(&m, "fraudgate_log_write_errors_total", &[]) >= 3.0).then_some(())
    })
    .await;
    ch.signal("CONT");
    eventually(Duration::from_secs(20), || async {
        let m = app.metrics().await;
        (sample(&m, "fraudgate_log_written_total", &[]) == 31.0).then_some(())
    })
    .await;
    let table = format!("{database}.decisions");
    // The server may still be committing the copies it was sent.
    let stored = |sql: String| {
        let ch = &ch;
        async move { ch.sql(&sql).await.trim().to_owned() }
    };
    // (The rows wait in the Buffer table in front of it: flushed here
    // as the writer's close does.)
    let flush = format!("OPTIMIZE TABLE {table}_buffer");
    eventually(Duration::from_secs(10), || {
        let q = format!("SELECT uniqExact(id) FROM {table} FORMAT TabSeparated");
        let (stored, flush) = (&stored, flush.clone());
        async move {
            stored(flush).await;
            (stored(q).await.parse::<u64>().ok()? >= 31).then_some(())
        }
    })
    .await;
    stored(flush).await;
    let raw = stored(format!("SELECT count() FROM {table} FORMAT TabSeparated")).await;
    eprintln!("rows stored before merges: {raw}");
    let exact = stored(format!(
        "SELECT count(), uniqExact(id) FROM {table} FINAL FORMAT TabSeparated"
    ))
    .await;
    assert_eq!(exact, "31\t31", "decisions read by the documented query");
}

/// SIGTERM while ClickHouse is frozen mid-insert: the binary ends within
/// server.shutdown_timeout_ms (plus a margin for the process itself), and
/// says how many records it could not write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    no_clickhouse,
    ignore = "clickhouse-server is not installed (Debian: clickhouse-server)"
)]
async fn sigterm_ends_within_the_shutdown_timeout_while_clickhouse_hangs() {
    let Some(ch) = ClickHouse::started() else {
        return;
    };
    let mut c = Config::default();
    (ch.store())(&mut c);
    let mock = MockRt::start().await;
    let url = ch.url();
    let p = crate::binary::spawn_binary(&[
        ("FRAUDGATE_UPSTREAM__URL", &mock.url()),
        ("FRAUDGATE_UPSTREAM__KEY", UPSTREAM_KEY),
        ("FRAUDGATE_SERVER__DRAIN_DELAY_MS", "0"),
        ("FRAUDGATE_SERVER__SHUTDOWN_TIMEOUT_MS", "2000"),
        ("FRAUDGATE_DECISION_LOG__STORE", "clickhouse"),
        ("FRAUDGATE_DECISION_LOG__FLUSH_MS", "20"),
        ("FRAUDGATE_DECISION_LOG__CLICKHOUSE__URL", &url),
        (
            "FRAUDGATE_DECISION_LOG__CLICKHOUSE__DATABASE",
            &c.decision_log.clickhouse.database,
        ),
        ("FRAUDGATE_DECISION_LOG__CLICKHOUSE__TIMEOUT_MS", "20000"),
    ]);
    let port = crate::binary::listening_port(&p).await;
    let client = http();
    let base = format!("http://127.0.0.1:{port}");
    let check = |i: u32| {
        let url = format!("{base}/v1/check?{}", query(&format!("10.135.0.{i}"), &[]));
        let client = client.clone();
        async move { client.get(url).send().await.unwrap().status() }
    };
    assert_eq!(check(0).await, 200);
    eventually(Duration::from_secs(10), || async {
        let m = client
            .get(format!("{base}/metrics"))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        (sample(&m, "fraudgate_log_written_total", &[]) == 1.0).then_some(())
    })
    .await;
    ch.signal("STOP");
    for i in 1..11 {
        assert_eq!(check(i).await, 200);
    }
    // (Arranging, not asserting: the writer has taken the batch and sent it.)
    tokio::time::sleep(Duration::from_millis(300)).await;
    let asked = std::time::Instant::now();
    p.signal("TERM");
    let mut p = p;
    let exited = p.exited().await;
    let took = asked.elapsed();
    ch.signal("CONT");
    assert!(exited.success(), "exit status {exited}");
    assert!(
        took < Duration::from_millis(2000 + 1500),
        "SIGTERM took {took:?} with shutdown_timeout_ms = 2000"
    );
    let out = p.out.lock().unwrap().clone();
    let line = out
        .lines()
        .find(|l| l.contains("did not take the last records"))
        .unwrap_or_else(|| panic!("the loss is logged: {out}"));
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["dropped"], 10, "{line}");
}

/// A client that stops reading its answer is cut off within
/// query_timeout_ms, and the server-side query it held is gone with it
/// (the connection closed and the query killed by its id), instead of
/// waiting on a full socket for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    no_clickhouse,
    ignore = "clickhouse-server is not installed (Debian: clickhouse-server)"
)]
async fn a_reader_that_stops_reading_releases_the_clickhouse_query() {
    let Some(ch) = ClickHouse::started() else {
        return;
    };
    let app = app_on_rows(&ch, 300_000, |c| c.decision_log.query_timeout_ms = 2000).await;
    // fraudgate's queries, known by the constant column each one ends with.
    let running = || async {
        ch.sql(
            "SELECT count() FROM system.processes \
             WHERE query LIKE '%__end%' AND query NOT LIKE '%system.processes%'",
        )
        .await
        .trim()
        .to_owned()
    };
    let path =
        "/v1/data/all?field=id,ip,ua,affiliate_id,offer_id,datetime,decision&page_size=1000000";
    let reader = crate::query_limits::stalled_reader(app.port, path).await;
    assert_eq!(running().await, "1", "the stalled answer holds its query");
    eventually(Duration::from_secs(8), || async {
        let m = app.metrics().await;
        let cut = sample(
            &m,
            "fraudgate_query_cuts_total",
            &[("reason", "slow_reader")],
        );
        (cut == 1.0 && running().await == "0").then_some(())
    })
    .await;
    drop(reader);
}

/// A table made by a release before the event time (no `at`) gets the
/// column when the gate starts: its rows read their decision's second,
/// new rows their own event time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    no_clickhouse,
    ignore = "clickhouse-server is not installed (Debian: clickhouse-server)"
)]
async fn a_table_from_before_the_event_time_is_upgraded() {
    let Some(ch) = ClickHouse::started() else {
        return;
    };
    let store = ch.store();
    let mut probe = Config::default();
    store(&mut probe);
    let table = format!("{}.decisions", probe.decision_log.clickhouse.database);
    ch.sql(&format!(
        "CREATE DATABASE IF NOT EXISTS {}",
        probe.decision_log.clickhouse.database
    ))
    .await;
    // The earlier release's table, with one of its rows.
    ch.sql(&table_before_event_time(&table)).await;
    let old_ms = jiff::Timestamp::now().as_millisecond() - 5_000;
    ch.sql(&format!(
        "INSERT INTO {table} (id, ts, event_type, ip, decision, would_be, rules) \
         VALUES ('old', {old_ms}, 'click', '10.96.0.1', 'allow', 'allow', '[]')"
    ))
    .await;
    // (Each use of `store` names a new database: this one's, again.)
    let database = probe.decision_log.clickhouse.database.clone();
    let app = spawn_app_with(move |c: &mut Config| {
        store(c);
        c.decision_log.clickhouse.database = database.clone();
    })
    .await;
    let r = app
        .get(&format!(
            "/?{}&key=k",
            query("10.96.0.2", &[("at", "1717243200")])
        ))
        .await;
    assert_eq!(r.status(), 200);
    // (Until the writer's first batch has added `at`, a read of it is a
    // 503: the table is the earlier one.)
    let v = eventually(Duration::from_secs(5), || async {
        let r = app.get("/v1/data/click?field=ip,at,ts&sort=ip_asc").await;
        if r.status() != 200 {
            return None;
        }
        let v: Vec<serde_json::Value> = r
            .text()
            .await
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (v.len() == 2).then_some(v)
    })
    .await;
    assert_eq!(v[0]["ip"], "10.96.0.1");
    assert_eq!(v[0]["at"].as_i64(), Some(old_ms.div_euclid(1000)), "{v:?}");
    assert_eq!(v[1]["at"], 1_717_243_200, "{v:?}");
    // The id index was made and the earlier rows copied in: an entry is
    // found through it.
    assert_eq!(
        ch.sql(&format!("SELECT count() FROM {table}_ids WHERE id = 'old'"))
            .await
            .trim(),
        "1"
    );
    let id = json(
        app.get("/v1/data/click?field=id&filter=%5B%22ip%22%2C%2210.96.0.2%22%5D")
            .await,
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let entry = json(app.get(&format!("/v1/reports/entry/{id}")).await).await;
    assert_eq!(entry["ip"], "10.96.0.2", "{entry}");
}

/// The funnel's acceptance replay (`funnel_replay.rs`) on the binary
/// with the ClickHouse store: the joins through the id index.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    no_clickhouse,
    ignore = "clickhouse-server is not installed (Debian: clickhouse-server)"
)]
async fn the_funnel_replay_finds_every_planted_case_on_clickhouse() {
    let Some(ch) = ClickHouse::started() else {
        return;
    };
    let url = ch.url();
    let database = format!("fg_replay_{}", std::process::id());
    let Some(v) = crate::funnel_replay::replay(&[
        ("FRAUDGATE_DECISION_LOG__STORE", "clickhouse"),
        ("FRAUDGATE_DECISION_LOG__CLICKHOUSE__URL", &url),
        ("FRAUDGATE_DECISION_LOG__CLICKHOUSE__DATABASE", &database),
    ])
    .await
    else {
        return;
    };
    assert_eq!(
        (&v["found"], &v["planted"]),
        (&10.into(), &10.into()),
        "{v}"
    );
    assert_eq!(v["false_positives"], 0, "{v}");
}

/// The table as a release before the event time (`at`) made it.
pub fn table_before_event_time(table: &str) -> String {
    format!(
        "CREATE TABLE {table} (id String, ts Int64, door String, client Nullable(String), \
     event_type String, ip String, ua String, affiliate_id String, offer_id String, \
     aff_sub1 Nullable(String), aff_sub2 Nullable(String), aff_sub3 Nullable(String), \
     aff_sub4 Nullable(String), aff_sub5 Nullable(String), country_code Nullable(String), \
     extra Nullable(String), decision String, would_be String, mode String, tags String, \
     tag_mask Int64, blocked_mask Int64, source String, reason String, rules String, \
     rule_mask Int64, ivt String, ivt_category String, elapsed_us Int64) \
     ENGINE = ReplacingMergeTree PARTITION BY intDiv(ts, 86400000) \
     ORDER BY (event_type, affiliate_id, offer_id, ts, id)"
    )
}
