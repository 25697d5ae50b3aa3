//! A Fraudshield client written against reference 001 in Python
//! (standard library only: tests/clients/fraudshield_client.py), sending
//! its requests as the vendor's PHP SDK does (`http_build_query` arrays,
//! 0/1 booleans, `sorting[rejected]=desc`, the scroll as a POST form),
//! pointed at fraudgate: it reads every documented field of every answer.

use std::path::PathBuf;

use serde_json::{Value, json};

use crate::fraudshield::{KEY, USER, app_on, day, newest_first, seed};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(no_python3, ignore = "python3 is not installed (Debian: python3)")]
async fn a_python_client_written_against_the_docs_reads_every_documented_field() {
    let Some(python) = crate::helpers::tool("python3") else {
        return;
    };
    let app = app_on(&|_| {}).await;
    let ids = seed(&app).await;
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients/fraudshield_client.py");
    let (start, end) = (day(-1), day(1));
    let base = app.base.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .arg(script)
            .args([base.as_str(), USER, KEY, "81", start.as_str(), end.as_str()])
            .output()
            .expect("python3 runs")
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "the client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("the client prints JSON");

    assert_eq!(v["missing"], json!([]), "every documented field is there");
    // Tracker 81's six decisions (every decision is a conversion for
    // now), each once, by pages and by the scroll alike.
    let want = newest_first(&ids[..6]);
    assert_eq!(v["conversion_total"], 6);
    assert_eq!(v["conversion_ids"], json!(want));
    assert_eq!(v["scroll_ids"], json!(want));
    let fraud = v["fraud"].as_array().unwrap();
    assert_eq!(fraud.len(), 2, "A1/S1 and A2/S2: {fraud:?}");
    assert_eq!(
        (&fraud[0]["affiliate"], &fraud[0]["conversion"]),
        (&json!("A1"), &json!(4))
    );
    let goal = v["goal"].as_array().unwrap();
    assert_eq!(goal.len(), 2, "P1/A1 and P1/A2: {goal:?}");
    assert!(
        goal.iter()
            .all(|r| r["product"] == "P1" && r["rejected"] == 1)
    );
    let global = v["global"].as_array().unwrap();
    assert!(
        global
            .iter()
            .all(|r| r["tracker_id"] == 81 && r["tracker"] == "adserver-eu")
    );
    assert_eq!(
        global
            .iter()
            .map(|r| r["conversion"].as_i64().unwrap())
            .sum::<i64>(),
        6
    );
    let interval = v["interval"].as_array().unwrap();
    assert_eq!(
        interval
            .iter()
            .map(|r| r["conversion"].as_i64().unwrap())
            .sum::<i64>(),
        7
    );
    assert_eq!(v["entry"]["id"], json!(want[0]));
}
