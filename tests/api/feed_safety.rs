//! A feed must not be able to turn the gate against its traffic: a row
//! naming a whole network, a damaged state file, an echoed key. And an
//! operator can drop what a feed put in its list.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::feeds::{feed, feed_status, first_run, p360, run_feed, today_minus, with_feeds};
use crate::helpers::*;
use crate::mock_feeds::*;

fn row(date: String, ip: &str) -> P360Row {
    P360Row {
        date,
        ip: ip.into(),
        idfa: "00000000-0000-0000-0000-000000000000".into(),
        site: "site7".into(),
        reason: "Bots".into(),
    }
}

fn ips(state: &Value) -> Vec<String> {
    let mut v: Vec<String> = state["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["value"].as_str().unwrap().to_owned())
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn a_feed_row_naming_a_whole_network_is_skipped_and_counted() {
    let mock = MockFeeds::start().await;
    mock.with(|s| {
        s.p360 = [
            "0.0.0.0/0",
            "::/0",
            "203.0.113.0/24",
            "2001:db8::/40",
            "198.51.100.7",
            // IPv4 lives at ::ffff:0:0/96: these cover every IPv4 client.
            "::/80",
            "::ffff:0:0/96",
        ]
        .into_iter()
        .map(|ip| row(today_minus(1), ip))
        .collect()
    });
    let narrow = p360(&mock, "");
    let narrow_file = narrow.state_path();
    let wide = feed(
        "p360wide",
        "protect360",
        &mock,
        &format!(
            "token = {P360_TOKEN:?}\napp_ids = [\"id1234567\"]\nmax_prefix = {{ v4 = 24, v6 = 48 }}"
        ),
    );
    let wide_file = wide.state_path();
    let app = spawn_app_with(|c| with_feeds(c, vec![narrow, wide])).await;
    app.mock.set_default(Reply::tags(""));
    first_run(&app, "p360").await;
    first_run(&app, "p360wide").await;

    // Single addresses only by default; /24 when the config allows it.
    let saved = |p: &std::path::Path| -> Value {
        serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
    };
    assert_eq!(ips(&saved(&narrow_file)), ["198.51.100.7"]);
    assert_eq!(ips(&saved(&wide_file)), ["198.51.100.7", "203.0.113.0/24"]);
    let (_, v) = app.check_ip("192.0.2.1").await;
    assert_eq!(v["decision"], "allow", "other traffic passes: {v}");
    let (_, v) = app.check_ip("203.0.113.77").await;
    assert_eq!(v["decision"], "block", "inside the allowed /24: {v}");
    let (_, v) = app.check_ip("2001:db8::1").await;
    assert_eq!(v["decision"], "allow", "a /40 is wider than /48: {v}");

    let m = app.metrics().await;
    let too_wide = |feed| {
        sample(
            &m,
            "fraudgate_feed_values_rejected_total",
            &[("feed", feed), ("reason", "too_wide")],
        )
    };
    assert_eq!(too_wide("p360"), 5.0);
    assert_eq!(too_wide("p360wide"), 4.0);
    // ::ffff:0:0/96 reads as 0.0.0.0 with a /96: not an IPv4 prefix.
    let invalid = sample(
        &m,
        "fraudgate_feed_values_rejected_total",
        &[("feed", "p360wide"), ("reason", "invalid")],
    );
    assert_eq!(invalid, 1.0);
}

#[tokio::test]
async fn a_damaged_feed_state_is_read_as_far_as_it_is_valid_and_the_gate_starts() {
    let mock = MockFeeds::start().await;
    let partly = p360(&mock, "every = \"1d\"");
    let whole = feed(
        "p360b",
        "protect360",
        &mock,
        &format!("token = {P360_TOKEN:?}\napp_ids = [\"id1234567\"]\nevery = \"1d\""),
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let entry = |v: &str| json!({"kind": "ip", "value": v, "expires": now + 86400, "reason": "x"});
    // Last pulled a moment ago: no pull at startup hides the state read.
    let state = json!({
        "version": 1, "kind": "protect360", "last_success": now, "cursor": now,
        "entries": [entry("203.0.113.9"), entry("0.0.0.0/0"), entry("not-an-ip"), entry("::/0"), {"kind": "ip"}]
    });
    std::fs::create_dir_all(partly.state_path().parent().unwrap()).unwrap();
    std::fs::write(partly.state_path(), state.to_string()).unwrap();
    std::fs::create_dir_all(whole.state_path().parent().unwrap()).unwrap();
    std::fs::write(
        whole.state_path(),
        b"{\"entries\": [{\"kind\": \"ip\", \"val",
    )
    .unwrap();
    let whole_file = whole.state_path();

    let app = spawn_app_with(|c| with_feeds(c, vec![partly, whole])).await;
    app.mock.set_default(Reply::tags(""));

    let (_, v) = app.check_ip("203.0.113.9").await;
    assert_eq!(v["decision"], "block", "the valid entry is kept: {v}");
    let (_, v) = app.check_ip("192.0.2.1").await;
    assert_eq!(v["decision"], "allow", "0.0.0.0/0 was not loaded: {v}");
    assert_eq!(feed_status(&app, "p360").await["entries"], 1);
    let m = app.metrics().await;
    assert_eq!(
        sample(
            &m,
            "fraudgate_feed_state_skipped_total",
            &[("feed", "p360")]
        ),
        4.0
    );
    // The unreadable file is kept aside for a look, not overwritten.
    let dir = whole_file.parent().unwrap();
    let aside: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .contains("p360b.json.damaged-")
        })
        .collect();
    assert_eq!(aside.len(), 1, "moved aside in {}", dir.display());
}

#[tokio::test]
async fn an_operator_clears_feed_entries_until_the_source_reports_them_again() {
    let mock = MockFeeds::start().await;
    mock.with(|s| {
        s.p360 = vec![
            row(today_minus(1), "203.0.113.9"),
            row(today_minus(1), "198.51.100.23"),
        ]
    });
    let cfg = p360(&mock, "");
    let state_file = cfg.state_path();
    let app = spawn_app_with(|c| with_feeds(c, vec![cfg])).await;
    app.mock.set_default(Reply::tags(""));
    assert_eq!(first_run(&app, "p360").await["entries"], 2);
    let (_, v) = app.check_ip("203.0.113.9").await;
    assert_eq!(v["decision"], "block");

    let path = "/v1/admin/feeds/p360/entries";
    let (s, v) = app
        .admin(
            Method::DELETE,
            &format!("{path}?kind=ip&value=203.0.113.9"),
            None,
        )
        .await;
    assert_eq!((s, v["removed"].as_u64()), (200, Some(1)), "{v}");
    let (_, v) = app.check_ip("203.0.113.9").await;
    assert_eq!(v["decision"], "allow", "cleared: {v}");
    let (_, v) = app.check_ip("198.51.100.23").await;
    assert_eq!(v["decision"], "block", "the other entry stays: {v}");

    // Pulls that read the window of the clear again (the cleared row, or
    // another of the same day) leave it out; one of a window that began
    // after the clear brings it back (feeds::state's unit test).
    mock.with(|s| s.p360.push(row(today_minus(0), "203.0.113.9")));
    run_feed(&app, "p360").await;
    let (_, v) = app.check_ip("203.0.113.9").await;
    assert_eq!(v["decision"], "allow", "still cleared: {v}");
    let saved: Value = serde_json::from_slice(&std::fs::read(&state_file).unwrap()).unwrap();
    assert_eq!(saved["cleared"][0]["value"], "203.0.113.9", "{saved}");
    // The same address written another way.
    let (s, v) = app
        .admin(
            Method::DELETE,
            &format!("{path}?kind=ip&value=198.51.100.23/32"),
            None,
        )
        .await;
    assert_eq!((s, v["removed"].as_u64()), (200, Some(1)), "{v}");
    let (_, v) = app.check_ip("198.51.100.23").await;
    assert_eq!(v["decision"], "allow", "{v}");

    // The whole list: nothing is left in it.
    let (s, v) = app.admin(Method::DELETE, path, None).await;
    assert_eq!((s, v["removed"].as_u64()), (200, Some(0)), "{v}");

    // Bad requests name the field.
    let (s, v) = app
        .admin(Method::DELETE, &format!("{path}?kind=ip"), None)
        .await;
    assert_eq!((s, v["field"].as_str()), (400, Some("value")), "{v}");
    let (s, v) = app
        .admin(
            Method::DELETE,
            &format!("{path}?kind=ip&value=not-an-ip"),
            None,
        )
        .await;
    assert_eq!((s, v["field"].as_str()), (400, Some("value")), "{v}");
    let (s, v) = app
        .admin(Method::DELETE, "/v1/admin/feeds/nope/entries", None)
        .await;
    assert_eq!((s, v["error"].as_str()), (404, Some("unknown_feed")), "{v}");
}

#[tokio::test]
async fn a_key_echoed_percent_encoded_by_a_source_is_redacted() {
    let mock = MockFeeds::start().await;
    mock.set_fault(Fault::EchoQuery(400));
    let key = "K3Y/with+plus&amp=";
    let cfg = feed(
        "fsd",
        "fraudscore_data",
        &mock,
        &format!(
            "channel = {FSD_CHANNEL:?}\nkey = {key:?}\nevent = \"click\"\nfilter = '[\"tag\",\"proxy\"]'"
        ),
    );
    let state_file = cfg.state_path();
    let app = spawn_app_with(|c| with_feeds(c, vec![cfg])).await;
    let st = eventually(Duration::from_secs(20), || async {
        let st = feed_status(&app, "fsd").await;
        st["last_error"].is_string().then_some(st)
    })
    .await;
    let err = st["last_error"].as_str().unwrap();
    // The echo arrived (the test can fail) and no spelling of the key did.
    assert!(
        err.contains("channel") || err.contains("[redacted]"),
        "{err}"
    );
    let saved = std::fs::read_to_string(&state_file).unwrap();
    for spelling in [
        key,
        "K3Y%2Fwith%2Bplus%26amp%3D",
        "K3Y%2fwith%2bplus%26amp%3d",
    ] {
        assert!(!err.contains(spelling), "{spelling} in {err}");
        assert!(!saved.contains(spelling), "{spelling} in the state file");
    }
    assert!(err.contains("[redacted]"), "{err}");
}

#[tokio::test]
async fn an_endless_feed_answer_fails_the_run_and_keeps_the_entries() {
    let mock = MockFeeds::start().await;
    mock.with(|s| s.p360 = vec![row(today_minus(1), "203.0.113.9")]);
    let cfg = p360(&mock, "max_row_bytes = 4096\nmax_response_mb = 8");
    let app = spawn_app_with(|c| with_feeds(c, vec![cfg])).await;
    app.mock.set_default(Reply::tags(""));
    assert_eq!(first_run(&app, "p360").await["entries"], 1);

    // One CSV field that never ends: cut at max_row_bytes, not read on.
    mock.set_fault(Fault::EndlessField);
    let st = run_feed(&app, "p360").await;
    let err = st["last_error"].as_str().unwrap_or_default();
    assert!(err.contains("max_row_bytes"), "{st}");
    assert_eq!(st["entries"], 1, "the old entries stay: {st}");
    let (_, v) = app.check_ip("203.0.113.9").await;
    assert_eq!(v["decision"], "block");
    let m = app.metrics().await;
    assert_eq!(
        sample(
            &m,
            "fraudgate_feed_errors_total",
            &[("feed", "p360"), ("kind", "parse")]
        ),
        1.0
    );
}

#[tokio::test]
async fn a_feed_run_is_bounded_by_run_timeout_however_slowly_the_source_answers() {
    let mock = MockFeeds::start().await;
    mock.set_fault(Fault::Trickle);
    let cfg = feed(
        "fsd",
        "fraudscore_data",
        &mock,
        &format!(
            "channel = {FSD_CHANNEL:?}\nkey = {FSD_KEY:?}\nfilter = '[\"tag\",\"proxy\"]'\nrun_timeout = \"2s\"\ntimeout_ms = 60000"
        ),
    );
    let started = std::time::Instant::now();
    let app = spawn_app_with(|c| with_feeds(c, vec![cfg])).await;
    let st = first_run(&app, "fsd").await;
    let err = st["last_error"].as_str().unwrap_or_default();
    assert!(err.contains("run_timeout"), "{st}");
    // Well before the 60 s read timeout could have ended it.
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
}
