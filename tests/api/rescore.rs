//! `fraudgate rescore`: past decisions against today's lists, and the
//! clawback of conversions whose click would be blocked today, on the
//! real binary reading a real store.

use serde_json::Value;

use crate::decision_log::rows;
use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rescore_finds_what_todays_lists_would_block_and_the_clawback() {
    let dir = temp_dir("rescore");
    let list = dir.join("block.txt");
    write_file(&list, "# empty at the time\n");
    let log = dir.join("log");
    let config = dir.join("fraudgate.toml");
    write_file(
        &config,
        &format!(
            "[decision_log]\npath = \"{}\"\n\n[[rules.lists]]\nname = \"blocklist\"\naction = \"block\"\nfile = \"{}\"\n",
            log.display(),
            list.display()
        ),
    );
    let app = spawn_app_with(|c| {
        c.decision_log.path = log.display().to_string();
        c.rules.lists[0].file = list.display().to_string();
        c.rules.reload_interval_s = 1;
    })
    .await;
    // Two clicks ten minutes ago and an install each, both approved.
    let at = (jiff::Timestamp::now().as_second() - 600).to_string();
    let mut clicks = Vec::new();
    for ip in ["10.94.0.1", "10.94.0.2"] {
        let (status, v) = app
            .check(&query(ip, &[("at", &at), ("aff_sub1", "s9")]))
            .await;
        assert_eq!(
            (status, v["decision"].as_str()),
            (200, Some("allow")),
            "{v}"
        );
        clicks.push(v["id"].as_str().unwrap().to_owned());
    }
    for id in &clicks {
        let r = app
            .get(&format!(
                "/v1/postback?click_id={id}&event=install&payout=4.20&currency=USD"
            ))
            .await;
        let v = json(r).await;
        assert_eq!(v["decision"], "allow", "{v}");
    }
    rows(&app, "/v1/data/all?field=id&page_size=10", 4).await;
    // Since then, the first click's IP was listed.
    write_file(&list, "ip 10.94.0.1 reason=found in a botnet report\n");
    let today = jiff::Zoned::now()
        .with_time_zone(jiff::tz::TimeZone::UTC)
        .date()
        .to_string();
    let yesterday = jiff::Zoned::now()
        .with_time_zone(jiff::tz::TimeZone::UTC)
        .date()
        .yesterday()
        .unwrap()
        .to_string();
    let out = tokio::task::block_in_place(|| {
        std::process::Command::new(env!("CARGO_BIN_EXE_fraudgate"))
            .args([
                "--config",
                config.to_str().unwrap(),
                "rescore",
                "--from",
                &yesterday,
                "--to",
                &today,
            ])
            .output()
            .unwrap()
    });
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "{stderr}");
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let changes: Vec<&Value> = lines.iter().filter(|l| l["type"] == "change").collect();
    let clawbacks: Vec<&Value> = lines.iter().filter(|l| l["type"] == "clawback").collect();
    // The click, and its conversion (whose IP is the click's), would be
    // blocked today; the other click and conversion stand.
    assert_eq!(changes.len(), 2, "{stdout}");
    let click = changes
        .iter()
        .find(|c| c["id"] == clicks[0].as_str())
        .expect("the click");
    assert_eq!(
        (&click["was"], &click["now"]),
        (&"allow".into(), &"block".into())
    );
    assert_eq!(click["rules_now"][0]["kind"], "block_list");
    assert_eq!(click["rules_now"][0]["reason"], "found in a botnet report");
    assert_eq!(clawbacks.len(), 1, "{stdout}");
    let c = clawbacks[0];
    assert_eq!(c["click_id"], clicks[0].as_str());
    assert_eq!(
        (&c["payout"], &c["currency"], &c["aff_sub1"]),
        (&4.2.into(), &"USD".into(), &"s9".into())
    );
    assert_eq!(c["because"]["id"], clicks[0].as_str());
    assert!(stderr.contains("1 to claw back"), "{stderr}");
    assert!(stderr.contains("4.20"), "{stderr}");
    // The running gate answers the same clawback once it has read the
    // list again (its reload interval).
    let v = eventually(std::time::Duration::from_secs(15), || async {
        let v = json(app.get("/v1/reports/clawback").await).await;
        (v["clawback"]["clawbacks"] == 1).then_some(v)
    })
    .await;
    let c = &v["clawback"];
    assert_eq!(c["conversions_approved"], 2, "{v}");
    assert_eq!(c["results"][0]["click_id"], clicks[0].as_str(), "{v}");
    assert_eq!(
        c["by_affiliate"],
        serde_json::json!([{"affiliate_id": "6251", "currency": "USD", "conversions": 1, "payout": 4.2}])
    );
    let r = app.get("/v1/reports/clawback?date_start=2026-13-01").await;
    assert_eq!(r.status(), 400);
    assert_eq!(json(r).await["field"], "date_start");
    // History is not rewritten.
    let v = rows(&app, "/v1/data/all?field=decision&page_size=10", 4).await;
    assert!(v.iter().all(|r| r["decision"] == "allow"), "{v:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
