//! Starts the real application on a random port against a mock RT.
#![allow(dead_code)]

use std::future::Future;
use std::time::{Duration, Instant};

use fraudgate::config::{Config, Secret};
use fraudgate::startup::Application;
use serde_json::Value;
use tokio::sync::oneshot;

pub use crate::mock_rt::{MockRt, Reply};

pub const UPSTREAM_KEY: &str = "UPSTREAM-KEY-7f3a9c";
pub const UA: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36";

pub struct TestApp {
    pub base: String,
    pub port: u16,
    /// `server.admin_listen`'s base URL, when set.
    pub admin_base: Option<String>,
    /// `doors.grpc.listen`'s address, when set.
    pub grpc_addr: Option<std::net::SocketAddr>,
    pub mock: MockRt,
    pub http: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    pub stopped: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

/// A config pointing at `mock`, on a random port, with an upstream key.
pub fn test_config(mock: &MockRt) -> Config {
    let mut c = Config::default();
    c.server.listen = "127.0.0.1:0".parse().unwrap();
    c.upstream.url = mock.url();
    c.upstream.key = Secret::new(UPSTREAM_KEY);
    // Tests that stop an app do not wait for load balancers; the drain
    // tests set their own delay.
    c.server.drain_delay_ms = 0;
    // Each app records into a directory of its own.
    c.decision_log.path = temp_dir("log").display().to_string();
    c
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(tweak: impl FnOnce(&mut Config)) -> TestApp {
    spawn_app_on(MockRt::start().await, tweak).await
}

/// An app against a given mock (several apps can share one).
pub async fn spawn_app_on(mock: MockRt, tweak: impl FnOnce(&mut Config)) -> TestApp {
    let mut config = test_config(&mock);
    tweak(&mut config);
    let app = Application::build(config).await.expect("app builds");
    let port = app.port();
    let admin_base = app.admin_addr().map(|a| format!("http://{a}"));
    let grpc_addr = app.grpc_addr();
    let (tx, rx) = oneshot::channel();
    let stopped = tokio::spawn(app.run_until_stopped(async {
        let _ = rx.await;
    }));
    TestApp {
        base: format!("http://127.0.0.1:{port}"),
        port,
        admin_base,
        grpc_addr,
        mock,
        http: http(),
        shutdown: Some(tx),
        stopped: Some(stopped),
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Triggers graceful shutdown.
    pub fn shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    pub async fn get(&self, path_and_query: &str) -> reqwest::Response {
        self.http
            .get(self.url(path_and_query))
            .send()
            .await
            .expect("request sent")
    }

    pub async fn post_json(&self, path: &str, body: &str) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .expect("request sent")
    }

    /// GET /v1/check for `ip` with the standard UA; returns (status, json).
    pub async fn check_ip(&self, ip: &str) -> (u16, Value) {
        self.check(&query(ip, &[])).await
    }

    pub async fn check(&self, query: &str) -> (u16, Value) {
        let r = self.get(&format!("/v1/check?{query}")).await;
        let status = r.status().as_u16();
        (status, json(r).await)
    }

    pub async fn metrics(&self) -> String {
        self.get("/metrics").await.text().await.unwrap()
    }
}

/// An RT drop-in query: [`query`] with RT's mandatory `at`.
pub fn rt_query(ip: &str, extra: &[(&str, &str)]) -> String {
    let mut with_at = vec![("at", "1544054769")];
    with_at.extend_from_slice(extra);
    query(ip, &with_at)
}

/// A /v1/check query for `ip` with the mandatory fields plus `extra`.
pub fn query(ip: &str, extra: &[(&str, &str)]) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    q.append_pair("event_type", "click")
        .append_pair("ip", ip)
        .append_pair("ua", UA)
        .append_pair("affiliate_id", "6251")
        .append_pair("offer_id", "34713");
    for (k, v) in extra {
        q.append_pair(k, v);
    }
    q.finish()
}

pub async fn json(r: reqwest::Response) -> Value {
    let bytes = r.bytes().await.expect("body");
    serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)))
}

/// Polls `f` until it returns Some, or panics after `within`.
pub async fn eventually<T, F, Fut>(within: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let end = Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < end, "condition not met within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Value of a Prometheus sample line `name{labels} value` whose labels
/// include every `k="v"` in `labels`; 0 when absent.
pub fn sample(metrics: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.starts_with(name) && matches!(l.as_bytes().get(name.len()), Some(b'{') | Some(b' '))
        })
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A fresh directory under the system temp dir (removed by the OS).
pub fn temp_dir(tag: &str) -> std::path::PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let d = std::env::temp_dir().join(format!(
        "fraudgate-test-{}-{tag}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Writes `text` to `path` so that its mtime and size change visibly.
pub fn write_file(path: &std::path::Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// /v1/check query for `ip` with a given UA.
pub fn query_ua(ip: &str, ua: &str) -> String {
    query(ip, &[]).replace(
        &form_urlencoded::byte_serialize(UA.as_bytes()).collect::<String>(),
        &form_urlencoded::byte_serialize(ua.as_bytes()).collect::<String>(),
    )
}

pub const ADMIN_KEY: &str = "ADMIN-KEY-93be1f";
pub const CLIENT_KEY: &str = "CLIENT-KEY-d41d8c0b2f";

impl TestApp {
    pub async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, self.url(path))
            .bearer_auth(ADMIN_KEY);
        if let Some(b) = body {
            req = req.json_body(&b);
        }
        let r = req.send().await.unwrap();
        let s = r.status().as_u16();
        (s, json(r).await)
    }
}

pub trait JsonBody {
    fn json_body(self, v: &serde_json::Value) -> Self;
}

impl JsonBody for reqwest::RequestBuilder {
    fn json_body(self, v: &serde_json::Value) -> Self {
        self.header("content-type", "application/json")
            .body(v.to_string())
    }
}

/// An HTTP client for tests that presents a browser User-Agent (an empty
/// UA is a crawler to fraudgate); a request's own header overrides it.
pub fn http() -> reqwest::Client {
    fraudgate::upstream::install_crypto_provider();
    reqwest::Client::builder()
        .no_proxy()
        .user_agent(UA)
        .build()
        .unwrap()
}

/// An external tool on PATH, or in /usr/sbin or /sbin where Debian puts
/// servers (nginx, clickhouse-server) off a normal user's PATH.
/// `.ci/run` sets FRAUDGATE_REQUIRE_TOOLS=1 so a missing tool fails there
/// instead of skipping.
pub fn tool(name: &str) -> Option<std::path::PathBuf> {
    let paths = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&paths)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(name))
        .find(|p| p.is_file());
    if found.is_none() {
        assert!(
            std::env::var_os("FRAUDGATE_REQUIRE_TOOLS").is_none(),
            "{name} is required (FRAUDGATE_REQUIRE_TOOLS is set) but not on PATH"
        );
        skipped(&format!("{name} is not installed"));
    }
    found
}

/// Says on the terminal that a test skipped its real-tool part, and why.
/// Written to stderr directly: libtest captures `eprintln!`, and shows it
/// only for failures, so a skip would pass unseen.
pub fn skipped(why: &str) {
    use std::io::Write as _;
    let test = std::thread::current().name().unwrap_or("a test").to_owned();
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: {why} (FRAUDGATE_REQUIRE_TOOLS=1 makes this a failure)"
    );
}

/// A browser-like client that does not follow redirects (for /click).
pub fn no_redirects() -> reqwest::Client {
    fraudgate::upstream::install_crypto_provider();
    reqwest::Client::builder()
        .no_proxy()
        .user_agent(UA)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A port nothing listens on now (for servers the tests start themselves).
/// A port for a server a test starts itself (ClickHouse, Redis, nginx),
/// from below the kernel's ephemeral range (32768 and up), so no `bind(0)`
/// of another test can take it while that server is stopped and started
/// again on it; each port is handed out once per process.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let _ = NEXT.compare_exchange(
        0,
        20_000 + (std::process::id() % 1000) as u16 * 10,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    loop {
        let port = NEXT.fetch_add(1, Ordering::Relaxed);
        assert!(port < 32_768, "out of test ports");
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// How many decisions the SQLite store under `dir` holds (read as the
/// Data API reads it).
pub fn stored_decisions(dir: &std::path::Path) -> usize {
    let q = fraudgate::query::Query::from_params(
        fraudgate::query::Events::All,
        "field=id&page_size=1000000",
        false,
    )
    .unwrap();
    let mut n = 0;
    fraudgate::query::exec::sqlite::run(dir, &q, Duration::from_secs(5), &mut |_, _| {
        n += 1;
        true
    })
    .unwrap();
    n
}
