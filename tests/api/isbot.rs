//! The differential test against npm `isbot` (the most used bot-UA
//! detector; node from Debian, the package pinned in tests/npm and
//! installed by `.ci/run` with `npm ci`): on every corpus in tests/data,
//! each UA isbot flags and fraudgate's crawler rule does not, and the
//! reverse, must be listed with a reason in tests/data/isbot-exceptions.txt;
//! an exception that no longer differs must be removed.

use std::collections::BTreeMap;
use std::path::PathBuf;

use fraudgate::rules::crawler::CrawlerMatcher;

/// Each corpus and whether its UAs are bots (recall) or people (false
/// positives). Regenerate them with scripts/update-ua-corpus.sh.
const CORPORA: [(&str, bool); 4] = [
    ("crawler_uas.txt", true),
    ("browser_uas.txt", false),
    ("dd_bots.txt", true),
    ("dd_browsers.txt", false),
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `fraudgate|isbot <TAB> UA <TAB> reason` lines.
fn exceptions() -> BTreeMap<String, (String, String)> {
    let text = std::fs::read_to_string(root().join("tests/data/isbot-exceptions.txt")).unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let mut f = l.splitn(3, '\t');
            let who = f.next().unwrap().to_owned();
            let ua = f.next().expect("a UA").to_owned();
            let why = f.next().expect("a reason").to_owned();
            assert!(who == "fraudgate" || who == "isbot", "{l}");
            assert!(why.trim().len() > 10, "a real reason: {l}");
            (ua, (who, why))
        })
        .collect()
}

/// `npm ci` in tests/npm (isbot, pinned by its lock file), as `.ci/run`
/// does, so the README's one test command runs this comparison too.
fn install_isbot() {
    let Some(npm) = crate::helpers::tool("npm") else {
        return;
    };
    let status = std::process::Command::new(npm)
        .args(["ci", "--no-audit", "--no-fund", "--silent"])
        .current_dir(root().join("tests/npm"))
        .status();
    if !status.is_ok_and(|s| s.success()) {
        crate::helpers::skipped("npm ci in tests/npm failed");
    }
}

#[test]
#[cfg_attr(no_node, ignore = "node is not installed (Debian: nodejs npm)")]
fn fraudgate_and_isbot_agree_on_every_corpus_or_the_difference_is_reviewed() {
    let node = crate::helpers::tool("node");
    let module = root().join("tests/npm/node_modules/isbot");
    if node.is_some() && !module.exists() {
        install_isbot();
    }
    if node.is_none() || !module.exists() {
        assert!(
            std::env::var_os("FRAUDGATE_REQUIRE_TOOLS").is_none(),
            "node and tests/npm/node_modules/isbot are needed (Debian: nodejs npm; then npm ci in tests/npm)"
        );
        if node.is_some() {
            crate::helpers::skipped(
                "npm isbot is not installed (Debian: npm; npm ci in tests/npm)",
            );
        }
        return;
    }
    let files: Vec<PathBuf> = CORPORA
        .iter()
        .map(|(c, _)| root().join("tests/data").join(c))
        .collect();
    let out = std::process::Command::new(node.unwrap())
        .arg(root().join("tests/npm/verdicts.js"))
        .args(&files)
        .output()
        .expect("node runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let theirs: Vec<bool> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l == "1")
        .collect();
    let m = CrawlerMatcher::builtin();
    let mut uas = Vec::new();
    for f in &files {
        for l in std::fs::read_to_string(f).unwrap().lines() {
            if !l.starts_with('#') && !l.trim().is_empty() {
                uas.push(l.to_owned());
            }
        }
    }
    assert_eq!(uas.len(), theirs.len(), "one verdict per UA");
    let listed = exceptions();
    let mut unexplained = Vec::new();
    let mut seen = Vec::new();
    let mut counts: Vec<(&str, bool, [usize; 3])> = Vec::new();
    let mut i = 0;
    for ((c, bots), f) in CORPORA.iter().zip(&files) {
        let n = std::fs::read_to_string(f)
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .count();
        counts.push((c, *bots, [0, 0, n]));
        let e = &mut counts.last_mut().unwrap().2;
        for _ in 0..n {
            let (ua, isbot) = (&uas[i], theirs[i]);
            let ours = m.check(ua).is_some();
            e[0] += usize::from(ours);
            e[1] += usize::from(isbot);
            if ours != isbot {
                let who = if ours { "fraudgate" } else { "isbot" };
                match listed.get(ua) {
                    Some((w, _)) if w == who => seen.push(ua.clone()),
                    _ => unexplained.push(format!("{who}\t{ua}")),
                }
            }
            i += 1;
        }
    }
    // docs/detection.md's table: recall on bot corpora, false positives on
    // people's; fraudgate must be at least as good as isbot on each.
    for (c, bots, [ours, isbot, n]) in &counts {
        let pct = |k: &usize| 100.0 * *k as f64 / *n as f64;
        let what = if *bots { "recall" } else { "false positives" };
        println!(
            "{c} ({n}): {what} fraudgate {ours} ({:.2}%), isbot {isbot} ({:.2}%)",
            pct(ours),
            pct(isbot)
        );
        let worse = if *bots { ours < isbot } else { ours > isbot };
        assert!(!worse, "fraudgate does worse than isbot on {c}");
    }
    let stale: Vec<&String> = listed.keys().filter(|ua| !seen.contains(ua)).collect();
    assert!(
        unexplained.is_empty(),
        "flagged by one only, not in tests/data/isbot-exceptions.txt (fix the rule or list it with a reason):\n{}",
        unexplained.join("\n")
    );
    assert!(
        stale.is_empty(),
        "exceptions that no longer differ: {stale:#?}"
    );
}
