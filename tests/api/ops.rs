use std::time::Duration;

use crate::helpers::*;

#[tokio::test]
async fn healthz_and_readyz_answer() {
    let app = spawn_app().await;
    let r = app.get("/healthz").await;
    assert_eq!(r.status(), 200);
    let v = json(app.get("/readyz").await).await;
    assert_eq!(v["status"], "ready");
    assert_eq!(v["upstream"], "enabled");
}

#[tokio::test]
async fn metrics_expose_the_documented_names() {
    let app = spawn_app().await;
    app.mock.on_ip("10.10.0.1", Reply::tags("proxy\nnovel-tag"));
    app.check_ip("10.10.0.1").await;
    app.check_ip("10.10.0.1").await;
    let r = app.get("/metrics").await;
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let m = r.text().await.unwrap();
    for name in [
        "fraudgate_http_requests_total",
        "fraudgate_http_request_duration_seconds_bucket",
        "fraudgate_decisions_total",
        "fraudgate_tags_total",
        "fraudgate_cache_requests_total",
        "fraudgate_cache_entries",
        "fraudgate_upstream_requests_total",
        "fraudgate_upstream_duration_seconds_bucket",
        "fraudgate_upstream_unknown_tags_total",
        "fraudgate_upstream_enabled",
        "fraudgate_build_info",
    ] {
        assert!(m.contains(name), "{name} missing");
    }
    assert_eq!(sample(&m, "fraudgate_tags_total", &[("tag", "proxy")]), 2.0);
    assert_eq!(
        sample(&m, "fraudgate_tags_total", &[("tag", "unknown")]),
        2.0
    );
    assert!(!m.contains("novel-tag"), "free text never becomes a label");
    assert_eq!(
        sample(
            &m,
            "fraudgate_http_requests_total",
            &[("route", "/v1/check"), ("status", "200")]
        ),
        2.0
    );
    assert!(!m.contains(UPSTREAM_KEY));
}

/// Every metric docs/metrics.md lists is on /metrics from the start, at 0 where
/// nothing happened yet, even in the keyless mode (no RT path at all):
/// dashboards and alerts see 0, not "no data". Histograms (no samples yet)
/// and the per-route request counter are the documented exceptions.
#[tokio::test]
async fn every_documented_metric_exists_at_startup_even_without_rt() {
    let table =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/metrics.md")).unwrap();
    let documented: Vec<&str> = table
        .lines()
        .filter_map(|l| l.strip_prefix("| `fraudgate_"))
        .filter_map(|l| l.split('`').next())
        .collect();
    assert!(documented.len() > 30, "the metric table is found");
    let keyless = spawn_app_with(|c| {
        c.upstream.key = fraudgate::config::Secret::new("");
        with_a_feed(c);
    })
    .await;
    let m = keyless.metrics().await;
    assert_eq!(sample(&m, "fraudgate_upstream_enabled", &[]), 0.0);
    for name in documented {
        let name = format!("fraudgate_{name}");
        if name.ends_with("_seconds") || name == "fraudgate_http_requests_total" {
            continue;
        }
        assert!(
            m.lines()
                .any(|l| l.starts_with(&format!("{name} ")) || l.starts_with(&format!("{name}{{"))),
            "{name} is documented but not exported at startup"
        );
    }
    assert_eq!(
        sample(
            &m,
            "fraudgate_upstream_requests_total",
            &[("outcome", "timeout")]
        ),
        0.0
    );
    assert_eq!(sample(&m, "fraudgate_breaker_state", &[]), 0.0);
}

/// Validates the exposition with Prometheus' own checker. `.ci/run`
/// installs promtool and sets FRAUDGATE_REQUIRE_TOOLS=1 so this cannot
/// silently skip in CI.
#[tokio::test]
#[cfg_attr(no_promtool, ignore = "promtool is not installed (Debian: prometheus)")]
async fn metrics_pass_promtool_check_metrics() {
    let Some(promtool) = tool("promtool") else {
        return;
    };
    let app = spawn_app().await;
    app.mock.on_ip("10.10.0.2", Reply::tags("datacenter"));
    app.check_ip("10.10.0.2").await;
    app.get("/nope").await;
    let m = app.metrics().await;
    let mut child = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(m.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool: {text}");
}

#[tokio::test]
async fn shutdown_drains_in_flight_requests_and_refuses_new_ones() {
    let mut app = spawn_app_with(|c| c.upstream.timeout_ms = 2000).await;
    app.mock
        .on_ip("10.10.0.3", Reply::delayed(400, Reply::tags("proxy")));
    let http = app.http.clone();
    let url = app.url(&format!("/v1/check?{}", query("10.10.0.3", &[])));
    let in_flight = tokio::spawn(async move { http.get(url).send().await });
    // In flight once the upstream has it.
    eventually(Duration::from_secs(5), || async {
        (app.mock.calls_for("10.10.0.3") == 1).then_some(())
    })
    .await;
    app.shutdown();
    let resp = in_flight
        .await
        .unwrap()
        .expect("in-flight request completes");
    assert_eq!(resp.status(), 200);
    assert_eq!(json(resp).await["decision"], "block");
    let stopped = app.stopped.take().unwrap();
    tokio::time::timeout(Duration::from_secs(5), stopped)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let fresh = crate::helpers::http().get(app.url("/healthz")).send().await;
    assert!(fresh.is_err(), "no longer accepting");
}

#[tokio::test]
async fn shutdown_gives_up_after_the_shutdown_timeout() {
    let mut app = spawn_app_with(|c| {
        c.upstream.timeout_ms = 10_000;
        c.server.shutdown_timeout_ms = 1000;
    })
    .await;
    app.mock.on_ip("10.10.0.4", Reply::Hang);
    let http = app.http.clone();
    let url = app.url(&format!("/v1/check?{}", query("10.10.0.4", &[])));
    let _stuck = tokio::spawn(async move { http.get(url).send().await });
    eventually(Duration::from_secs(5), || async {
        (app.mock.calls_for("10.10.0.4") == 1).then_some(())
    })
    .await;
    app.shutdown();
    let stopped = app.stopped.take().unwrap();
    tokio::time::timeout(Duration::from_secs(5), stopped)
        .await
        .expect("stopped within the shutdown timeout + margin")
        .unwrap()
        .unwrap();
}

#[test]
#[cfg_attr(no_promtool, ignore = "promtool is not installed (Debian: prometheus)")]
fn shipped_prometheus_rules_pass_promtool() {
    let Some(promtool) = tool("promtool") else {
        return;
    };
    let out = std::process::Command::new(promtool)
        .args([
            "check",
            "rules",
            concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/prometheus/rules.yml"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // The alerts' behaviour: e.g. FraudgateMostlyFallback stays quiet in the
    // keyless mode and fires when RT is configured but failing.
    let out = std::process::Command::new(tool("promtool").unwrap())
        .args([
            "test",
            "rules",
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/deploy/prometheus/rules.test.yml"
            ),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn each_app_has_its_own_metrics() {
    let a = spawn_app().await;
    let b = spawn_app().await;
    a.mock.on_ip("10.10.9.1", Reply::tags("proxy"));
    a.check_ip("10.10.9.1").await;
    let (ma, mb) = (a.metrics().await, b.metrics().await);
    let decisions = |m: &str| sample(m, "fraudgate_decisions_total", &[("door", "check")]);
    assert_eq!(decisions(&ma), 1.0);
    assert_eq!(decisions(&mb), 0.0, "b saw none of a's decisions");
    assert_eq!(
        sample(&mb, "fraudgate_tags_total", &[("tag", "proxy")]),
        0.0
    );
    // Pre-registered series are there at zero, not missing.
    assert!(mb.contains("fraudgate_decisions_total{"));
    assert!(mb.contains("fraudgate_upstream_requests_total{"));
}

/// The shipped Grafana dashboard: every PromQL expression parses (promtool,
/// as recording rules) and names only metrics fraudgate exports.
#[tokio::test]
#[cfg_attr(no_promtool, ignore = "promtool is not installed (Debian: prometheus)")]
async fn the_grafana_dashboard_queries_parse_and_name_real_metrics() {
    let Some(promtool) = tool("promtool") else {
        return;
    };
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/grafana/fraudgate.json");
    let dash: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let exprs: Vec<String> = dash["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().clone())
        .map(|t| {
            t["expr"]
                .as_str()
                .unwrap()
                .replace("$__rate_interval", "5m")
        })
        .collect();
    assert!(exprs.len() >= 20, "{}", exprs.len());
    // JSON is YAML: the expressions as recording rules, for promtool.
    let rules = serde_json::json!({"groups": [{"name": "grafana", "rules": exprs
        .iter()
        .enumerate()
        .map(|(i, e)| serde_json::json!({"record": format!("grafana:panel_{i}"), "expr": e}))
        .collect::<Vec<_>>()}]});
    let file = temp_dir("grafana").join("panels.yml");
    write_file(&file, &rules.to_string());
    let out = std::process::Command::new(promtool)
        .args(["check", "rules", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Traffic that makes every series appear (histograms need a sample);
    // a feed for the per-feed series.
    let app = spawn_app_with(with_a_feed).await;
    app.mock.on_ip("10.12.0.1", Reply::tags("proxy"));
    app.check_ip("10.12.0.1").await;
    app.check_ip("10.12.0.1").await;
    let m = app.metrics().await;
    let name = regex::Regex::new(r"fraudgate_[a-z_]+").unwrap();
    for e in &exprs {
        for n in name.find_iter(e).map(|m| m.as_str()) {
            assert!(
                m.lines()
                    .any(|l| l.starts_with(&format!("{n} ")) || l.starts_with(&format!("{n}{{"))),
                "{n} (in {e}) is not exported"
            );
        }
    }
}

/// A feed (its source unreachable), so the per-feed series exist.
fn with_a_feed(c: &mut fraudgate::Config) {
    let state = temp_dir("feed").join("f.json");
    c.feeds = vec![
        toml::from_str(&format!(
            "name = \"f\"\nkind = \"fraudscore_data\"\nchannel = \"c\"\nkey = \"k\"\nfilter = '[\"tag\",\"proxy\"]'\nbase_url = \"http://127.0.0.1:9\"\nstate_file = {:?}",
            state.display().to_string()
        ))
        .unwrap(),
    ];
}

/// A real scrape: Debian's Prometheus, started on a random port against a
/// running fraudgate with the alert rules loaded, reads fraudgate's series
/// back through its HTTP API.
#[tokio::test]
#[cfg_attr(
    no_promtool,
    ignore = "prometheus is not installed (Debian: prometheus)"
)]
async fn prometheus_scrapes_fraudgate_for_real() {
    let Some(prometheus) = tool("prometheus") else {
        return;
    };
    let app = spawn_app().await;
    app.mock.on_ip("10.13.0.1", Reply::tags("proxy"));
    app.check_ip("10.13.0.1").await;
    let dir = temp_dir("prometheus");
    let rules = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/prometheus/rules.yml");
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nrule_files: [{rules:?}]\nscrape_configs:\n  - job_name: fraudgate\n    static_configs: [{{targets: [\"127.0.0.1:{}\"]}}]\n",
            app.port
        ),
    )
    .unwrap();
    let port = free_port();
    let child = std::process::Command::new(prometheus)
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("prometheus starts");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _guard = Kill(child);
    let api = format!("http://127.0.0.1:{port}/api/v1");
    let client = http();
    let query = |q: &'static str| {
        let client = client.clone();
        let api = api.clone();
        async move {
            let r = client
                .get(format!("{api}/query"))
                .query(&[("query", q)])
                .send()
                .await
                .ok()?;
            let v: serde_json::Value = serde_json::from_slice(&r.bytes().await.ok()?).ok()?;
            let result = v["data"]["result"].as_array()?.clone();
            (!result.is_empty()).then_some(result)
        }
    };
    let up = eventually(Duration::from_secs(30), || query("up{job=\"fraudgate\"}")).await;
    assert_eq!(up[0]["value"][1], "1", "{up:?}");
    let tags = eventually(Duration::from_secs(10), || {
        query("fraudgate_tags_total{tag=\"proxy\"}")
    })
    .await;
    assert_eq!(tags[0]["value"][1], "1", "{tags:?}");
    // The alert rules loaded and evaluate against the real series.
    let r = client.get(format!("{api}/rules")).send().await.unwrap();
    let v: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    let names: Vec<&str> = v["data"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .filter_map(|r| r["name"].as_str())
        .collect();
    for alert in [
        "FraudgateBreakerOpen",
        "FraudgateFeedStale",
        "FraudgateRedisDown",
    ] {
        assert!(names.contains(&alert), "{alert} loaded: {names:?}");
    }
}

#[tokio::test]
async fn an_operator_listener_takes_the_operator_endpoints_off_the_public_port() {
    let app = spawn_app_with(|c| {
        c.server.admin_listen = Some("127.0.0.1:0".parse().unwrap());
        c.auth.admin_keys =
            fraudgate::config::SecretList(vec![fraudgate::config::Secret::new(ADMIN_KEY)]);
    })
    .await;
    app.mock.set_default(Reply::tags(""));
    let admin = app.admin_base.clone().expect("an operator listener");
    let status = |base: String, path: &'static str| {
        let http = app.http.clone();
        async move {
            http.get(format!("{base}{path}"))
                .bearer_auth(ADMIN_KEY)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let operator = [
        "/metrics",
        "/v1/admin/lists",
        "/v1/data/click",
        "/v1/reports/fraud",
        "/ui",
    ];
    for path in operator {
        assert_eq!(status(app.base.clone(), path).await, 404, "public {path}");
        assert_eq!(status(admin.clone(), path).await, 200, "operator {path}");
    }
    // The doors are on the public port only; the probes on both.
    let (s, _) = app.check_ip("192.0.2.1").await;
    assert_eq!(s, 200);
    assert_eq!(
        status(admin.clone(), "/v1/check?event_type=click").await,
        404
    );
    for path in ["/healthz", "/readyz"] {
        assert_eq!(status(app.base.clone(), path).await, 200, "{path}");
        assert_eq!(status(admin.clone(), path).await, 200, "{path}");
    }
}

/// Every label value /metrics shows is named in docs/metrics.md, in its
/// metric's row: a closed set an operator can read before writing an
/// alert. (Open sets: routes, statuses, feed, list and client names, the
/// version, bucket bounds.)
#[tokio::test]
async fn every_label_value_on_metrics_is_documented() {
    let table =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/metrics.md")).unwrap();
    let app = spawn_app_with(with_a_feed).await;
    app.mock
        .on_ip("10.10.9.1", Reply::tags("proxy\ndatacenter"));
    app.mock.on_ip("10.10.9.2", Reply::Status(403));
    app.check_ip("10.10.9.1").await;
    app.check_ip("10.10.9.1").await;
    app.check_ip("10.10.9.2").await;
    let m = app.metrics().await;
    let open = [
        "route", "status", "feed", "list", "client", "version", "le", "quantile",
    ];
    let mut missing = Vec::new();
    for line in m.lines().filter(|l| l.starts_with("fraudgate_")) {
        let Some((name, rest)) = line.split_once('{') else {
            continue;
        };
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .filter(|b| table.contains(&format!("| `{b}`")))
            .unwrap_or(name);
        let row = table
            .lines()
            .find(|l| l.starts_with(&format!("| `{base}`")))
            .unwrap_or_else(|| panic!("{base} is not in docs/metrics.md"));
        let labels = rest.split('}').next().unwrap_or("");
        for pair in labels.split("\",").filter(|p| !p.is_empty()) {
            let (label, value) = pair.split_once("=\"").unwrap();
            let value = value.trim_end_matches('"');
            if open.contains(&label) {
                continue;
            }
            if !row.contains(&format!("`{value}`")) {
                missing.push(format!("{base} {label}={value}"));
            }
        }
    }
    missing.sort();
    missing.dedup();
    assert!(
        missing.is_empty(),
        "undocumented label values: {missing:#?}"
    );
}
