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
    let seeded = seed(&app).await;
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
    // Tracker 81's four installs, each once, by pages and by the scroll
    // alike; its clicks and goals are not conversions.
    let want = newest_first(&seeded.conversions);
    assert_eq!(v["conversion_total"], 4);
    assert_eq!(v["conversion_ids"], json!(want));
    assert_eq!(v["scroll_ids"], json!(want));
    let fraud = v["fraud"].as_array().unwrap();
    assert_eq!(fraud.len(), 2, "A1/S1 and A2/S2: {fraud:?}");
    assert_eq!(
        (
            &fraud[0]["affiliate"],
            &fraud[0]["conversion"],
            &fraud[0]["rejected"],
            &fraud[0]["goal"]
        ),
        (&json!("A1"), &json!(3), &json!(2), &json!(1))
    );
    assert_eq!(
        fraud[0]["reasons"],
        json!({"Click injection": 1, "Blocked click": 1, "Click mismatch": 1})
    );
    let goal = v["goal"].as_array().unwrap();
    assert_eq!(
        goal.iter()
            .map(|r| (
                r["product"].clone(),
                r["affiliate"].clone(),
                r["rejected"].clone()
            ))
            .collect::<Vec<_>>(),
        [
            (json!("P1"), json!("A1"), json!(2)),
            (json!("P1"), json!("A2"), json!(0))
        ],
        "most rejected first"
    );
    let global = v["global"].as_array().unwrap();
    assert!(
        global
            .iter()
            .all(|r| r["tracker_id"] == 81 && r["tracker"] == "adserver-eu")
    );
    let sum = |rows: &[Value], k: &str| rows.iter().map(|r| r[k].as_i64().unwrap()).sum::<i64>();
    assert_eq!(
        (
            sum(global, "click"),
            sum(global, "conversion"),
            sum(global, "goal")
        ),
        (6, 4, 2)
    );
    let interval = v["interval"].as_array().unwrap();
    assert_eq!(
        (sum(interval, "click"), sum(interval, "conversion")),
        (8, 5)
    );
    assert!(
        interval
            .iter()
            .all(|r| r["conversion_rate"] == "N/A" || r["conversion_rate"].as_f64() <= Some(100.0)),
        "{interval:?}"
    );
    assert_eq!(
        (&v["entry"]["id"], &v["entry"]["type"]),
        (&json!(want[0]), &json!("conversion"))
    );
}
