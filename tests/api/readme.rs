//! The documented examples, run as a newcomer runs them: every `curl` in a
//! ```sh block of the files in [`DOCS`], in that order (the README, then
//! the pages its admin, feed and query examples moved to; the admin and
//! query examples depend on the door examples before them), goes to the
//! real binary started on the embedded defaults (plus the README's
//! `[[offers]]` block, which its `/click` example needs), and to a second
//! one configured as the docs go on to do: an RT key, in front of a mock RT
//! that answers `datacenter` and `ip` for every IP, and the admin key the
//! admin examples use (which also locks the Data API, as documented).
//! Under a command,
//! `# => ` lines show what the defaults answer and `# rt => ` lines what
//! the configured one answers:
//! each is checked (JSON: the fields shown, ids and timings as any value;
//! `HTTP/1.1 ...` the status line; other text, a line of the answer, a
//! UUID standing for any UUID). No command may fail or answer 5xx.
//! `FG_README_DUMP=1 cargo test --test api readme -- --nocapture` prints
//! every answer (to write a new `# => ` line from).

use crate::binary::{listening_port, spawn_binary_args};
use crate::helpers::*;

const ADMIN_KEY: &str = "my-admin-key-0001";

/// The files whose examples run, in order: the README's door examples make
/// the decisions that the admin, feed and query examples after them see.
const DOCS: &[&str] = &[
    "README.md",
    "docs/admin.md",
    "docs/feeds.md",
    "docs/queries.md",
    "docs/conversions.md",
];

struct Example {
    /// File and line of the command, for messages.
    line: String,
    /// Variable assignments of the block before it (`UA=...`).
    prelude: Vec<String>,
    command: String,
    plain: Vec<String>,
    rt: Vec<String>,
}

fn examples(file: &str, text: &str) -> Vec<Example> {
    let mut out: Vec<Example> = Vec::new();
    let mut in_sh = false;
    let mut prelude = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((i, line)) = lines.next() {
        let t = line.trim();
        if t.starts_with("```") {
            in_sh = !in_sh && t == "```sh";
            prelude.clear();
            continue;
        }
        if !in_sh {
            continue;
        }
        if let Some(e) = t.strip_prefix("# => ") {
            if let Some(last) = out.last_mut() {
                last.plain.push(e.to_owned());
            }
        } else if let Some(e) = t.strip_prefix("# rt => ") {
            if let Some(last) = out.last_mut() {
                last.rt.push(e.to_owned());
            }
        } else if t.starts_with("curl ") {
            // Joined over `\` line ends and quotes left open.
            let mut command = t.to_owned();
            let open = |c: &str| c.matches('\'').count() % 2 == 1;
            while command.ends_with('\\') || open(&command) {
                let quoted = open(&command);
                if !quoted {
                    command.pop();
                }
                let Some((_, next)) = lines.next() else { break };
                command.push(if quoted { '\n' } else { ' ' });
                command.push_str(next.trim());
            }
            out.push(Example {
                line: format!("{file}:{}", i + 1),
                prelude: prelude.clone(),
                command,
                plain: Vec::new(),
                rt: Vec::new(),
            });
        } else if t.split_once('=').is_some_and(|(k, _)| {
            !k.is_empty() && k.chars().all(|c| c.is_ascii_uppercase() || c == '_')
        }) {
            prelude.push(t.to_owned());
        }
    }
    out
}

/// The README's `[[offers]]` block.
fn offers(readme: &str) -> String {
    let start = readme
        .find("```toml\n[[offers]]")
        .expect("an [[offers]] example");
    let body = &readme[start + "```toml\n".len()..];
    body[..body.find("```").unwrap()].to_owned()
}

/// Runs one command against `port`; returns (status, answer).
fn run(e: &Example, port: u16) -> (u16, String) {
    let host = format!("127.0.0.1:{port}");
    let here = |c: &str| {
        c.replace("http://127.0.0.1:8080", &format!("http://{host}"))
            .replace("localhost:8080", &host)
    };
    let command = here(&e.command);
    // The status after the answer; a trailing `# comment` stays a comment.
    let (command, _) = command.split_once(" # ").unwrap_or((&command, ""));
    let script = format!(
        "{}\n{command} -w '\\n%{{http_code}}'",
        here(&e.prelude.join("\n"))
    );
    let out = std::process::Command::new("sh")
        .args(["-c", &script])
        .output()
        .expect("sh runs");
    assert!(
        out.status.success(),
        "{}: {script}\n{}",
        e.line,
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    (status.trim().parse().unwrap_or(0), body.to_owned())
}

/// Values the docs cannot know: ids, times.
fn any_value(key: &str, v: &serde_json::Value) -> bool {
    matches!(key, "id" | "decision_id" | "elapsed_us" | "datetime" | "ts") || v == "..."
}

fn json_subset(
    key: &str,
    shown: &serde_json::Value,
    got: &serde_json::Value,
) -> Result<(), String> {
    use serde_json::Value;
    if any_value(key, shown) {
        return if got.is_null() {
            Err(format!("{key}: missing"))
        } else {
            Ok(())
        };
    }
    match (shown, got) {
        (Value::Object(s), Value::Object(g)) => {
            for (k, v) in s {
                json_subset(k, v, g.get(k).unwrap_or(&Value::Null))?;
            }
            Ok(())
        }
        (Value::Array(s), Value::Array(g)) if s.len() == g.len() => s
            .iter()
            .zip(g)
            .try_for_each(|(s, g)| json_subset(key, s, g)),
        _ if shown == got => Ok(()),
        _ => Err(format!(
            "{key}: the docs show {shown}, the server answers {got}"
        )),
    }
}

fn check(e: &Example, shown: &str, status: u16, answer: &str) -> Result<(), String> {
    if shown.starts_with('{') || shown.starts_with('[') {
        let shown: serde_json::Value =
            serde_json::from_str(shown).map_err(|err| format!("docs JSON: {err}"))?;
        let first = answer.lines().next().unwrap_or("");
        let got: serde_json::Value = serde_json::from_str(answer)
            .or_else(|_| serde_json::from_str(first))
            .map_err(|err| format!("the answer is not JSON ({err}): {answer}"))?;
        return json_subset("", &shown, &got);
    }
    if shown.starts_with("HTTP/") {
        let code = shown.split_whitespace().nth(1).unwrap_or("");
        return (code == status.to_string())
            .then_some(())
            .ok_or_else(|| format!("the docs show {shown}, the server answers {status}"));
    }
    // A line of the answer (headers with curl -i), any UUID for a UUID.
    let uuid =
        regex::Regex::new("[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}").unwrap();
    let pattern = uuid
        .split(shown)
        .map(regex::escape)
        .collect::<Vec<_>>()
        .join("[0-9a-f-]{36}");
    let re = regex::RegexBuilder::new(&format!("^{pattern}\\s*$"))
        .case_insensitive(true)
        .build()
        .unwrap();
    let _ = e;
    answer
        .lines()
        .any(|l| re.is_match(l))
        .then_some(())
        .ok_or_else(|| format!("the docs show {shown:?}; the answer was:\n{answer}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(no_curl, ignore = "curl is not installed (Debian: curl)")]
async fn every_readme_example_answers_what_the_readme_shows() {
    if tool("curl").is_none() {
        return;
    }
    let read = |file: &str| {
        std::fs::read_to_string(format!("{}/{file}", env!("CARGO_MANIFEST_DIR")))
            .unwrap_or_else(|e| panic!("{file}: {e}"))
    };
    let readme = read("README.md");
    let examples: Vec<Example> = DOCS
        .iter()
        .flat_map(|file| examples(file, &read(file)))
        .collect();
    assert!(examples.len() >= 20, "the documented examples are found");
    assert!(
        std::env::var_os("FG_README_DUMP").is_some()
            || examples.iter().filter(|e| !e.plain.is_empty()).count() >= 8,
        "the docs show answers to check"
    );
    let dir = temp_dir("readme");
    let config = dir.join("offers.toml");
    write_file(&config, &offers(&readme));
    let config = config.display().to_string();
    let log = |name: &str| dir.join(name).display().to_string();
    let (plain_log, rt_log) = (log("plain"), log("rt"));
    let plain = spawn_binary_args(
        &["--config", &config],
        &[("FRAUDGATE_DECISION_LOG__PATH", &plain_log)],
    );
    let mock = MockRt::start().await;
    mock.set_default(Reply::tags("datacenter\nip"));
    let url = mock.url();
    let rt = spawn_binary_args(
        &["--config", &config],
        &[
            ("FRAUDGATE_AUTH__ADMIN_KEYS", ADMIN_KEY),
            ("FRAUDGATE_DECISION_LOG__PATH", &rt_log),
            ("FRAUDGATE_UPSTREAM__URL", &url),
            ("FRAUDGATE_UPSTREAM__ALLOW_INSECURE_HTTP", "true"),
            ("FRAUDGATE_UPSTREAM__KEY", "readme-rt-key"),
        ],
    );
    let (plain_port, rt_port) = (listening_port(&plain).await, listening_port(&rt).await);
    let mut failures = Vec::new();
    for e in &examples {
        for (port, shown, which) in [(plain_port, &e.plain, "defaults"), (rt_port, &e.rt, "rt")] {
            let (mut status, mut answer) = tokio::task::block_in_place(|| run(e, port));
            // The decision log is queryable within its flush interval
            // (200 ms), longer on a loaded machine: a query answering
            // without the rows just written is asked again for a while.
            if e.command.contains("/v1/data") || e.command.contains("/v1/reports") {
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
                while shown.iter().any(|s| check(e, s, status, &answer).is_err())
                    && std::time::Instant::now() < deadline
                {
                    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                    (status, answer) = tokio::task::block_in_place(|| run(e, port));
                }
            }
            if std::env::var_os("FG_README_DUMP").is_some() {
                eprintln!("=== {} {which} {status}\n{answer}", e.line);
            }
            if status == 0 || status >= 500 {
                failures.push(format!("{} ({which}): status {status}: {answer}", e.line));
            }
            for s in shown {
                if let Err(why) = check(e, s, status, &answer) {
                    failures.push(format!("{} ({which}): {why}", e.line));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
