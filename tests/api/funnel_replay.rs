//! The acceptance check of the funnel from outside: the release-style
//! binary started as a user starts it, a synthetic funnel with planted
//! fraud replayed by a client in another language
//! (tests/clients/funnel_replay.py): each planted case is found with its
//! rule, no clean one. On SQLite here, on ClickHouse in `clickhouse.rs`.

use std::path::PathBuf;

use serde_json::Value;

use crate::binary::{listening_port, spawn_binary};
use crate::helpers::*;

const REPORT_KEY: &str = "replay-report-key-0123456789";

/// Runs the replay against the binary with `env` besides the funnel's
/// settings; returns its summary.
pub async fn replay(env: &[(&str, &str)]) -> Option<Value> {
    let python = tool("python3")?;
    let log = temp_dir("funnel-replay");
    let log = log.display().to_string();
    let mut all = vec![
        ("FRAUDGATE_FUNNEL__FLOOD_CLICKS_PER_CONVERSION", "20"),
        ("FRAUDGATE_FUNNEL__IMPRESSION_OFFERS", "imp-offer"),
        ("FRAUDGATE_AUTH__REPORT_KEYS", REPORT_KEY),
        ("FRAUDGATE_DECISION_LOG__PATH", log.as_str()),
    ];
    all.extend_from_slice(env);
    let gate = spawn_binary(&all);
    let port = listening_port(&gate).await;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients/funnel_replay.py");
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .arg(script)
            .args([format!("http://127.0.0.1:{port}").as_str(), REPORT_KEY])
            .output()
            .expect("python3 runs")
    })
    .await
    .unwrap();
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "the replay printed no summary: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            gate.out.lock().unwrap()
        )
    });
    assert!(out.status.success(), "{summary}");
    Some(summary)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(no_python3, ignore = "python3 is not installed (Debian: python3)")]
async fn a_synthetic_funnel_s_planted_fraud_is_found_and_no_clean_case() {
    let Some(v) = replay(&[]).await else { return };
    assert_eq!(v["planted"], 10, "{v}");
    assert_eq!(v["found"], 10, "{v}");
    assert_eq!(v["clean"], 21, "{v}");
    assert_eq!(v["false_positives"], 0, "{v}");
}
