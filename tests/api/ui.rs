//! The report page in a real browser: Debian's headless Chromium loads each
//! view of `/ui` from a running fraudgate with logged decisions, and the
//! test reads the DOM the page built (`--dump-dom` after its requests) and
//! saves screenshots at 1280x800 and at a phone's width under
//! `target/ui-screenshots/` for review.

use std::path::PathBuf;
use std::process::Command;

use fraudgate::config::{Secret, SecretList};
use regex::Regex;

use crate::decision_log::rows;
use crate::helpers::*;

/// Headless Chromium as this machine runs it (no sandbox as root, no
/// background traffic), with a profile of its own.
fn chromium(bin: &PathBuf, profile: &std::path::Path) -> Command {
    let mut c = Command::new(bin);
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--virtual-time-budget=10000",
    ])
    .arg(format!("--user-data-dir={}", profile.display()));
    c
}

/// The DOM after the page's scripts ran.
fn dom(bin: &PathBuf, profile: &std::path::Path, url: &str) -> String {
    let out = chromium(bin, profile)
        .arg("--dump-dom")
        .arg(url)
        .output()
        .expect("chromium runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn screenshot(bin: &PathBuf, profile: &std::path::Path, url: &str, size: &str, name: &str) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/ui-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(name);
    let _ = std::fs::remove_file(&file);
    let out = chromium(bin, profile)
        .arg(format!("--window-size={size}"))
        .arg(format!("--screenshot={}", file.display()))
        .arg(url)
        .output()
        .unwrap();
    assert!(
        file.metadata().is_ok_and(|m| m.len() > 5_000),
        "screenshot {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The text of the element with this id (tags stripped, spaces folded).
fn text_of(dom: &str, id: &str) -> String {
    let at = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("#{id} in the page"));
    let open = dom[..at].rfind('<').unwrap();
    let name: String = dom[open + 1..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect();
    // The matching close tag: same-name tags nest.
    let tag = Regex::new(&format!("<(/?){name}[\\s>]")).unwrap();
    let mut depth = 0;
    let mut end = dom.len();
    for m in tag.captures_iter(&dom[open..]) {
        if m[1].is_empty() {
            depth += 1;
        } else {
            depth -= 1;
            if depth == 0 {
                end = open + m.get(0).unwrap().start();
                break;
            }
        }
    }
    let inner = &dom[open..end];
    let inner = &inner[inner.find('>').unwrap() + 1..];
    let tags = Regex::new("<[^>]+>").unwrap();
    let text = tags.replace_all(inner, " ");
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn ready(dom: &str, view: &str) -> bool {
    dom.contains(&format!("data-ready=\"{view}\""))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(no_chromium, ignore = "chromium is not installed (Debian: chromium)")]
async fn the_report_page_shows_block_rates_by_affiliate_and_why() {
    let Some(bin) = tool("chromium") else { return };
    let profile = temp_dir("chromium");
    let app = spawn_app().await;
    app.mock.on_ip("10.60.0.1", Reply::tags("datacenter"));
    app.mock.on_ip("10.60.0.2", Reply::tags("datacenter"));
    app.mock.on_ip("10.60.0.3", Reply::tags("proxy"));
    for (ip, aff) in [
        ("10.60.0.1", "aff-bad"),
        ("10.60.0.2", "aff-bad"),
        ("10.60.0.3", "aff-bad"),
        ("10.60.0.4", "aff-bad"),
        ("10.60.0.5", "aff-good"),
        ("10.60.0.6", "aff-good"),
    ] {
        app.check(&query(ip, &[]).replace("affiliate_id=6251", &format!("affiliate_id={aff}")))
            .await;
    }
    app.check(&query_ua("10.60.0.7", "python-requests/2.31"))
        .await;
    let logged = rows(&app, "/v1/data/all?field=id,ip&page_size=100", 7).await;
    let ui = |hash: &str| app.url(&format!("/ui#{hash}"));
    let bin = &bin;
    let profile = profile.as_path();
    let run = |url: String| tokio::task::block_in_place(|| dom(bin, profile, &url));

    // Overview: the totals of the range, a point per interval and door.
    let d = run(ui("overview"));
    assert!(ready(&d, "overview"), "{d}");
    assert_eq!(text_of(&d, "kpi-events"), "7 events");
    assert_eq!(text_of(&d, "kpi-blocked"), "4 blocked");
    assert_eq!(text_of(&d, "kpi-rate"), "57.14% block rate");
    assert_eq!(
        text_of(&d, "kpi-rt"),
        "6 RT calls",
        "the crawler was answered locally"
    );
    assert!(d.contains("<circle"), "the interval chart has points");
    assert!(
        text_of(&d, "sources").contains("upstream 6"),
        "{}",
        text_of(&d, "sources")
    );

    // Top affiliates with the reasons that blocked them.
    let d = run(ui("top"));
    assert!(ready(&d, "top"));
    let top = text_of(&d, "top-table");
    let bad = top.find("aff-bad").expect("aff-bad listed");
    let good = top.find("aff-good").expect("aff-good listed");
    assert!(bad < good, "most blocked first: {top}");
    assert!(
        top.contains("aff-bad 4 3 75.00% 2 / 1"),
        "events, blocked, rate, GIVT/SIVT: {top}"
    );
    assert!(top.contains("datacenter 2"), "{top}");
    assert!(top.contains("proxy 1"), "{top}");
    let d = run(ui("top?by=offer_id"));
    assert!(text_of(&d, "top-table").starts_with("offer_id"), "by offer");

    // A search, then one decision with every field and the rule that fired.
    let d = run(ui("search?ip=10.60.0.3"));
    assert!(ready(&d, "search"));
    let found = text_of(&d, "search-results");
    assert!(
        found.contains("10.60.0.3") && found.contains("aff-bad"),
        "{found}"
    );
    assert!(
        !found.contains("10.60.0.4"),
        "only the IP asked for: {found}"
    );
    let id = logged
        .iter()
        .find(|r| r["ip"] == "10.60.0.7")
        .and_then(|r| r["id"].as_str())
        .unwrap();
    let d = run(ui(&format!("search?id={id}")));
    let entry = text_of(&d, "entry-table");
    assert!(entry.contains(id), "{entry}");
    assert!(
        entry.contains("crawler_ua (builtin, tag crawler): user agent looks like a bot"),
        "the rule that fired: {entry}"
    );

    // Live blocks, and the lists view without an admin key.
    let d = run(ui("tail"));
    let tail = text_of(&d, "tail-table");
    assert!(
        tail.contains("10.60.0.1") && !tail.contains("10.60.0.5"),
        "{tail}"
    );
    let d = run(ui("lists"));
    assert!(text_of(&d, "lists-note").contains("auth.admin_keys"));

    for (hash, size, name) in [
        ("overview", "1280,800", "overview-1280x800.png"),
        ("top", "1280,800", "top-1280x800.png"),
        ("top", "390,844", "top-phone.png"),
        ("search?ip=10.60.0.3", "390,844", "search-phone.png"),
    ] {
        let url = ui(hash);
        tokio::task::block_in_place(|| screenshot(bin, profile, &url, size, name));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(no_chromium, ignore = "chromium is not installed (Debian: chromium)")]
async fn with_report_keys_the_page_asks_for_one_and_shows_nothing() {
    let Some(bin) = tool("chromium") else { return };
    // Report keys, or admin keys alone (which lock the query side too).
    for (i, admin_only) in [false, true].into_iter().enumerate() {
        let profile = temp_dir("chromium-locked");
        let app = spawn_app_with(|c| {
            let key = SecretList(vec![Secret::new("REPORT-KEY-ui-0001")]);
            if admin_only {
                c.auth.admin_keys = key;
            } else {
                c.auth.report_keys = key;
            }
        })
        .await;
        let ip = format!("10.61.0.{}", i + 1);
        app.check_ip(&ip).await;
        let url = app.url("/ui#top");
        let d = tokio::task::block_in_place(|| dom(&bin, &profile, &url));
        assert!(
            d.contains("<section id=\"login\" class=\"card\">"),
            "admin keys only: {admin_only}; the login form is shown: {d}"
        );
        assert!(!d.contains(&ip), "no data without a key");
    }
    let app = spawn_app().await;
    // The page itself is public and locked down.
    let r = app.get("/ui").await;
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(no_chromium, ignore = "chromium is not installed (Debian: chromium)")]
async fn the_funnel_view_shows_each_source_from_click_to_conversion() {
    let Some(bin) = tool("chromium") else { return };
    let profile = temp_dir("chromium-funnel");
    let app = spawn_app().await;
    // Three clicks of one sub; an install ten minutes after one, and an
    // injected one 2 s after another.
    let at = (jiff::Timestamp::now().as_second() - 600).to_string();
    let mut ids = Vec::new();
    for ip in ["10.61.0.1", "10.61.0.2", "10.61.0.3"] {
        let (_, v) = app
            .check(&query(ip, &[("at", &at), ("aff_sub1", "web")]))
            .await;
        ids.push(v["id"].as_str().unwrap().to_owned());
    }
    let injected = jiff::Timestamp::now().as_second() - 598;
    for q in [
        format!("click_id={}&event=install&payout=2&currency=USD", ids[0]),
        format!(
            "click_id={}&event=install&payout=3&currency=USD&event_time={injected}",
            ids[1]
        ),
    ] {
        assert_eq!(app.get(&format!("/v1/postback?{q}")).await.status(), 200);
    }
    rows(&app, "/v1/data/all?field=id&page_size=10", 5).await;
    let url = app.url("/ui#funnel");
    let d = tokio::task::block_in_place(|| dom(&bin, &profile, &url));
    assert!(ready(&d, "funnel"), "{d}");
    let t = text_of(&d, "funnel-table");
    assert!(
        t.contains("6251 / web 0 3 2 66.67% 0 1 (50.00%) ctit_short 1"),
        "impressions, clicks, conversions, CR, goals, rejected, why: {t}"
    );
    assert!(t.contains("median 301 s"), "{t}");
    assert!(
        t.contains("2.00 USD / 3.00 USD"),
        "payout approved / at risk: {t}"
    );
    assert!(d.contains("<rect"), "the CTIT histogram is drawn");
    assert_eq!(
        text_of(&d, "clawback-table"),
        "affiliate currency conversions payout None of the 1 approved conversions: today's lists block none of their clicks."
    );
    let url = app.url("/ui#funnel");
    tokio::task::block_in_place(|| {
        screenshot(&bin, &profile, &url, "1280,800", "funnel-1280x800.png")
    });
}
