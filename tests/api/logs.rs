//! The real binary, run as a user would, with every log level on: the
//! upstream key and client keys must never appear in its output.

use std::process::Command;
use std::time::Duration;

use crate::binary::*;
use crate::helpers::*;

#[tokio::test]
async fn keys_never_appear_in_logs_even_at_trace_level() {
    let mock = MockRt::start().await;
    let url = mock.url();
    let p = spawn_binary(&[
        ("RUST_LOG", "trace"),
        ("FRAUDGATE_UPSTREAM__URL", &url),
        ("FRAUDGATE_UPSTREAM__KEY", UPSTREAM_KEY),
        ("FRAUDGATE_UPSTREAM__TIMEOUT_MS", "150"),
        ("FRAUDGATE_AUTH__CLIENT_KEYS__ACME", CLIENT_KEY),
        ("FRAUDGATE_AUTH__ADMIN_KEYS", ADMIN_KEY),
    ]);
    let port = listening_port(&p).await;
    let http = http();
    let faults = [
        Reply::tags("proxy"),
        Reply::Status(500),
        Reply::Hang,
        Reply::Reset,
        Reply::Garbage,
        Reply::Huge,
    ];
    for (i, reply) in faults.into_iter().enumerate() {
        let ip = format!("10.11.0.{i}");
        mock.on_ip(&ip, reply);
        let q = rt_query(&ip, &[("key", CLIENT_KEY)]);
        let r = http
            .get(format!("http://127.0.0.1:{port}/?{q}"))
            .send()
            .await
            .unwrap();
        assert!(
            r.status().is_success() || r.status() == 503,
            "{}",
            r.status()
        );
        let check = format!("http://127.0.0.1:{port}/v1/check?{}", query(&ip, &[]));
        let r = http
            .get(&check)
            .header("x-api-key", CLIENT_KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        // A wrong key is refused without being echoed or logged.
        let r = http
            .get(&check)
            .bearer_auth("WRONG-KEY-0123456789")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        assert!(!r.text().await.unwrap().contains("WRONG-KEY"));
    }
    http.get(format!("http://127.0.0.1:{port}/v1/admin/lists"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    // The last request logs a line of its own: once it is in, so is every
    // earlier request's output.
    http.post(format!("http://127.0.0.1:{port}/v1/admin/cache/purge"))
        .bearer_auth(ADMIN_KEY)
        .header("content-type", "application/json")
        .body(r#"{"all":true}"#)
        .send()
        .await
        .unwrap();
    let out = eventually(Duration::from_secs(5), || async {
        let out = p.out.lock().unwrap().clone();
        out.contains("admin: cache purged").then_some(out)
    })
    .await;
    assert!(
        out.contains("upstream call failed"),
        "trace logs were captured:\n{out}"
    );
    assert!(!out.contains(UPSTREAM_KEY), "upstream key leaked:\n{out}");
    assert!(!out.contains(CLIENT_KEY), "client key leaked:\n{out}");
    assert!(!out.contains(ADMIN_KEY), "admin key leaked:\n{out}");
    assert!(!out.contains("WRONG-KEY"), "presented key logged:\n{out}");
    let metrics = metrics_on(port).await;
    assert!(
        metrics.contains(r#"client="acme""#),
        "clients are labelled by name"
    );
    for secret in [UPSTREAM_KEY, CLIENT_KEY, ADMIN_KEY] {
        assert!(!metrics.contains(secret));
    }
}

#[tokio::test]
async fn the_binary_starts_without_any_config_and_warns_the_upstream_is_disabled() {
    let p = spawn_binary(&[]);
    let port = listening_port(&p).await;
    let r = http()
        .get(format!("http://127.0.0.1:{port}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(json(r).await["upstream"], "disabled");
    let out = p.out.lock().unwrap().clone();
    assert!(out.contains("FraudScore RT is disabled"), "{out}");
}

/// Output that is not a terminal (a pipe, a file, a container's captured
/// stdout) carries no ANSI colour codes, in every format.
#[tokio::test]
async fn logs_to_a_pipe_have_no_colour_codes() {
    for format in ["pretty", "compact"] {
        let p = spawn_binary(&[("FRAUDGATE_LOG__FORMAT", format)]);
        let out = eventually(Duration::from_secs(10), || {
            let out = p.out.lock().unwrap().clone();
            async move { out.contains("fraudgate listening").then_some(out) }
        })
        .await;
        assert!(!out.contains('\u{1b}'), "{format}: {out}");
    }
}

#[test]
fn an_unknown_config_key_stops_startup_naming_it() {
    let out = Command::new(env!("CARGO_BIN_EXE_fraudgate"))
        .arg("serve")
        .env("FRAUDGATE_UPSTREAM__TIMEOUTMS", "5")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("timeoutms"), "{err}");
}

#[tokio::test]
async fn sighup_reloads_rule_files() {
    let dir = temp_dir("hup");
    let list = dir.join("block.txt");
    write_file(&list, "# nothing yet\n");
    let config = dir.join("fraudgate.toml");
    std::fs::write(
        &config,
        format!(
            "[rules]\nreload_interval_s = 0\n[[rules.lists]]\nname = \"blocklist\"\naction = \"block\"\nfile = \"{}\"\n",
            list.display()
        ),
    )
    .unwrap();
    let p = spawn_binary_args(&["--config", config.to_str().unwrap()], &[]);
    let port = listening_port(&p).await;
    let url = format!(
        "http://127.0.0.1:{port}/v1/check?{}",
        query("10.40.0.1", &[])
    );
    let v = json(http().get(&url).send().await.unwrap()).await;
    assert_eq!(v["decision"], "allow");
    write_file(&list, "10.40.0.0/16\n");
    // Polling is off: only SIGHUP can pick the change up. (A negative
    // check: this short window is the time it is given to go wrong.)
    tokio::time::sleep(Duration::from_millis(300)).await;
    let v = json(http().get(&url).send().await.unwrap()).await;
    assert_eq!(v["decision"], "allow");
    p.signal("HUP");
    eventually(Duration::from_secs(5), || async {
        let v = json(http().get(&url).send().await.unwrap()).await;
        (v["decision"] == "block").then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_public_address_without_client_keys_refuses_to_start() {
    let out = Command::new(env!("CARGO_BIN_EXE_fraudgate"))
        .arg("serve")
        .env_clear()
        .env("FRAUDGATE_SERVER__LISTEN", "0.0.0.0:0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("auth.allow_anonymous"), "{err}");
}

/// `--help` is per command, `--version` is there, a typo is a usage error
/// (exit 2) with a suggestion, and a bad log level stops startup by name.
#[test]
fn every_command_has_its_own_help() {
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_fraudgate"));
        c.args(args).env_clear().current_dir(std::env::temp_dir());
        for (k, v) in env {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, top, _) = run(&["--help"], &[]);
    assert_eq!(code, Some(0));
    for cmd in ["serve", "check-config", "query", "report", "--version"] {
        assert!(top.contains(cmd), "{cmd} listed: {top}");
    }
    let (_, serve, _) = run(&["serve", "--help"], &[]);
    let (_, query, _) = run(&["query", "--help"], &[]);
    assert!(serve.contains("Usage: fraudgate serve"), "{serve}");
    assert!(
        query.contains("Usage: fraudgate query") && query.contains("--groups"),
        "{query}"
    );
    assert_ne!(serve, query);
    let (code, version, _) = run(&["--version"], &[]);
    assert_eq!(
        (code, version.trim()),
        (Some(0), concat!("fraudgate ", env!("CARGO_PKG_VERSION")))
    );
    let (code, _, err) = run(&["serv"], &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("similar subcommand exists: 'serve'"), "{err}");
    let (code, out, err) = run(&["check-config"], &[("FRAUDGATE_LOG__LEVEL", "inof")]);
    assert_eq!(code, Some(78), "{out}");
    assert!(
        err.contains("FRAUDGATE_LOG__LEVEL") && err.contains("not a level"),
        "{err}"
    );
    let (code, out, _) = run(&["check-config"], &[]);
    assert_eq!(code, Some(0));
    assert_eq!(
        out.trim(),
        "configuration OK (the defaults embedded in the binary)"
    );
}

#[tokio::test]
async fn a_log_file_is_cut_per_line_and_rotated_by_size_whatever_requests_send() {
    let mock = MockRt::start().await;
    mock.set_default(Reply::Garbage);
    let url = mock.url();
    let dir = temp_dir("logfile");
    let file = dir.join("fraudgate.log");
    let file_s = file.display().to_string();
    let p = spawn_binary(&[
        ("RUST_LOG", "trace"),
        ("FRAUDGATE_UPSTREAM__URL", &url),
        ("FRAUDGATE_UPSTREAM__KEY", UPSTREAM_KEY),
        ("FRAUDGATE_LOG__FILE", &file_s),
        ("FRAUDGATE_LOG__MAX_FILE_MB", "1"),
        ("FRAUDGATE_LOG__KEEP_FILES", "2"),
        ("FRAUDGATE_LOG__MAX_LINE_BYTES", "1024"),
    ]);
    // The port, from the file this time.
    let port: u16 = eventually(Duration::from_secs(10), || async {
        let text = std::fs::read_to_string(&file).ok()?;
        text.lines()
            .filter(|l| l.contains("fraudgate listening"))
            .find_map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).ok()?;
                v["addr"].as_str()?.rsplit(':').next()?.parse().ok()
            })
    })
    .await;
    assert!(p.out.lock().unwrap().is_empty(), "stdout stays quiet");
    let http = http();
    let long = "A".repeat(6000);
    // A few hundred bytes of log a request at trace level: requests until
    // two files of 1 MiB are full and a third is begun.
    let count = || std::fs::read_dir(&dir).unwrap().count();
    for batch in 0..200 {
        if count() >= 3 {
            break;
        }
        futures_util::future::join_all((0..80).map(|i| {
            let http = http.clone();
            let long = &long;
            async move {
                let ip = format!("10.12.{batch}.{i}");
                let q = query(&ip, &[("aff_sub1", &long[..200])]);
                let _ = http
                    .get(format!("http://127.0.0.1:{port}/v1/check?{q}"))
                    .header("user-agent", long)
                    .header("x-junk", long)
                    .send()
                    .await
                    .unwrap();
            }
        }))
        .await;
    }
    let files = eventually(Duration::from_secs(10), || async {
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        (names.len() == 3).then_some(names)
    })
    .await;
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        assert!(
            bytes.len() <= (1 << 20) + 1025,
            "{}: {}",
            f.display(),
            bytes.len()
        );
        for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            assert!(line.len() <= 1024, "a {}-byte line", line.len());
            serde_json::from_slice::<serde_json::Value>(line)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(line)));
        }
    }
}

/// A wrong RT key is not silent: the first refusal is logged as a
/// configuration error, /readyz (still 200) says what fails and since
/// when, the metric names the cause, and each other cause is a WARN at most
/// once a minute. A success clears it.
#[tokio::test]
async fn a_refused_key_and_a_failing_rt_are_named_in_logs_readyz_and_metrics() {
    let mock = MockRt::start().await;
    mock.set_default(Reply::Status(403));
    let url = mock.url();
    let p = spawn_binary(&[
        ("FRAUDGATE_UPSTREAM__URL", &url),
        ("FRAUDGATE_UPSTREAM__KEY", UPSTREAM_KEY),
        ("FRAUDGATE_UPSTREAM__BREAKER__ENABLED", "false"),
    ]);
    let port = listening_port(&p).await;
    let http = http();
    let check = |i: usize| {
        let q = query(&format!("10.12.0.{i}"), &[]);
        http.get(format!("http://127.0.0.1:{port}/v1/check?{q}"))
            .send()
    };
    let readyz = || async {
        let r = http
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "failing RT leaves the gate ready");
        json(r).await
    };
    for i in 0..3 {
        let v = json(check(i).await.unwrap()).await;
        assert_eq!(v["source"], "fallback", "{v}");
    }
    let r = readyz().await;
    assert_eq!(r["status"], "degraded", "{r}");
    let e = &r["upstream_error"];
    assert_eq!(e["cause"], "key_refused", "{r}");
    assert_eq!(
        (e["status"].as_u64(), e["failures"].as_u64()),
        (Some(403), Some(3)),
        "{r}"
    );
    assert!(
        e["advice"].as_str().unwrap().contains("upstream.key"),
        "{r}"
    );
    assert!(e["since"].as_str().unwrap().starts_with("20"), "{r}");
    let m = metrics_on(port).await;
    assert_eq!(
        sample(
            &m,
            "fraudgate_upstream_requests_total",
            &[("outcome", "key_refused")]
        ),
        3.0
    );

    mock.set_default(Reply::Status(503));
    for i in 3..6 {
        check(i).await.unwrap();
    }
    assert_eq!(readyz().await["upstream_error"]["cause"], "http_5xx");
    mock.set_default(Reply::tags(""));
    let v = json(check(6).await.unwrap()).await;
    assert_eq!(v["source"], "upstream", "{v}");
    let r = readyz().await;
    assert_eq!(
        (r["status"].as_str(), &r["upstream_error"]),
        (Some("ready"), &serde_json::Value::Null)
    );

    let out = eventually(Duration::from_secs(5), || {
        let out = p.out.lock().unwrap().clone();
        async move { out.contains("FraudScore RT answers again").then_some(out) }
    })
    .await;
    let lines = |needle: &str| {
        out.lines()
            .filter(|l| l.contains(needle) && !l.contains("answers again"))
            .count()
    };
    assert_eq!(
        lines("configuration error: FraudScore RT refused upstream.key"),
        1,
        "{out}"
    );
    assert_eq!(
        lines("\"cause\":\"key_refused\""),
        1,
        "one line for three refusals: {out}"
    );
    assert_eq!(
        lines("\"cause\":\"http_5xx\""),
        1,
        "one WARN a minute per cause: {out}"
    );
    assert!(!out.contains(UPSTREAM_KEY));
}

/// `check-config` refuses everything `serve` would refuse before binding,
/// with the same message: a missing list or ranges file, a log file that
/// cannot be opened.
#[test]
fn check_config_refuses_what_serve_refuses_with_the_same_message() {
    let dir = temp_dir("parity");
    std::fs::write(dir.join("not-a-dir"), "").unwrap();
    let list = dir.join("a.toml");
    std::fs::write(
        &list,
        format!(
            "[[rules.lists]]\nname = \"blocklist\"\naction = \"block\"\nfile = {:?}\n",
            dir.join("missing.txt").display().to_string()
        ),
    )
    .unwrap();
    let proxy = dir.join("nope.txt").display().to_string();
    let log_file = dir.join("not-a-dir/x.log").display().to_string();
    /// Arguments, environment, and the field the message names.
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case; 3] = [
        (
            &["--config", list.to_str().unwrap()],
            &[],
            "rules.lists[0].file",
        ),
        (
            &[],
            &[("FRAUDGATE_RULES__PROXY__FILES", &proxy)],
            "rules.proxy.files[0]",
        ),
        (&[], &[("FRAUDGATE_LOG__FILE", &log_file)], "log.file"),
    ];
    for (args, env, field) in cases {
        let run = |cmd: &str| {
            let out = Command::new(env!("CARGO_BIN_EXE_fraudgate"))
                .arg(cmd)
                .args(args)
                .envs(env.iter().copied())
                .env("FRAUDGATE_SERVER__LISTEN", "127.0.0.1:0")
                .output()
                .unwrap();
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stderr).to_string(),
            )
        };
        let (check, serve) = (run("check-config"), run("serve"));
        assert_eq!(check.0, Some(78), "check-config: {}", check.1);
        assert!(check.1.contains(field), "{field}: {}", check.1);
        assert_eq!(serve, check, "serve refuses it the same way");
    }
}
