//! `fraudgate feeds list` and `fraudgate feeds run NAME`: the feeds at a
//! terminal, with a progress bar (pages and rows) and a summary.
//!
//! A run from the CLI writes the feed's state file; a `serve` using the
//! same file picks the new entries up within a second.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use comfy_table::Table;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use jiff::Timestamp;

use crate::config::Config;
use crate::feeds::{Feeds, Progress, RunOptions, RunSummary};

pub fn list(config: &Config) -> Result<(), String> {
    if config.feeds.is_empty() {
        println!("no feeds configured: add [[feeds]] tables to the config (see docs/feeds.md)");
        return Ok(());
    }
    let feeds = Feeds::new(&config.feeds, None, None).map_err(|e| e.to_string())?;
    let mut t = Table::new();
    t.set_header([
        "name",
        "kind",
        "every",
        "entries",
        "cursor",
        "last success",
        "failures",
        "last error",
    ]);
    for s in feeds.statuses() {
        t.add_row([
            s.name,
            s.kind.as_str().to_owned(),
            humantime::format_duration(Duration::from_secs(s.every_s)).to_string(),
            s.entries.to_string(),
            s.cursor.unwrap_or_else(|| "-".into()),
            s.last_success.unwrap_or_else(|| "never".into()),
            s.consecutive_failures.to_string(),
            s.last_error
                .map(|e| {
                    if e.chars().count() > 60 {
                        format!("{}...", e.chars().take(57).collect::<String>())
                    } else {
                        e
                    }
                })
                .unwrap_or_default(),
        ]);
    }
    println!("{t}");
    Ok(())
}

/// A date (`2026-11-01`, the day's start in UTC; for `to`, its end) or
/// an RFC 3339 time.
pub fn parse_time(s: &str, end_of_day: bool) -> Result<Timestamp, String> {
    if let Ok(t) = s.parse::<Timestamp>() {
        return Ok(t);
    }
    let d: jiff::civil::Date = s
        .parse()
        .map_err(|_| format!("{s:?} is not a date (YYYY-MM-DD) or an RFC 3339 time"))?;
    let dt = if end_of_day {
        d.at(23, 59, 59, 0)
    } else {
        d.at(0, 0, 0, 0)
    };
    dt.to_zoned(jiff::tz::TimeZone::UTC)
        .map(|z| z.timestamp())
        .map_err(|e| e.to_string())
}

struct Bar {
    bar: ProgressBar,
    pages: AtomicU64,
}

impl Progress for Bar {
    fn page(&self, label: &str, rows: u64) {
        self.bar.inc(rows);
        let pages = self.pages.fetch_add(1, Ordering::Relaxed) + 1;
        self.bar
            .set_message(format!("{pages} pages, last: {label} ({rows} rows)"));
    }
    fn note(&self, message: &str) {
        self.bar.println(format!("  {message}"));
    }
}

pub fn run(
    config: &Config,
    name: &str,
    from: Option<&str>,
    to: Option<&str>,
    dry_run: bool,
) -> Result<(), String> {
    let opts = RunOptions {
        from: from.map(|f| parse_time(f, false)).transpose()?,
        to: to.map(|t| parse_time(t, true)).transpose()?,
        dry_run,
        force: true,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))?;
    // With Redis: the run takes the feed's lease and shares what it pulls,
    // as a replica's scheduled run does.
    let fleet = crate::fleet::Fleet::new(&config.redis, &config.cache.key);
    if let Some(f) = &fleet
        && let Err(e) = runtime.block_on(f.connect())
    {
        eprintln!("fraudgate feeds run: Redis not reachable ({e}); pulling without sharing");
    }
    let feeds = Feeds::new(&config.feeds, None, fleet).map_err(|e| e.to_string())?;
    let Some(feed) = feeds.get(name) else {
        let known: Vec<&str> = config.feeds.iter().map(|f| f.name.as_str()).collect();
        return Err(if known.is_empty() {
            format!(
                "no feed named {name:?}: no feeds are configured (pass the config file with --config PATH or FRAUDGATE_CONFIG)"
            )
        } else {
            format!("no feed named {name:?}; configured: {}", known.join(", "))
        });
    };
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed_precise} {pos} rows  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    bar.set_message(format!("pulling {name} ({})", feed.config().kind.as_str()));
    let progress = Bar {
        bar,
        pages: AtomicU64::new(0),
    };
    let result = runtime.block_on(feed.run(&opts, &progress));
    progress.bar.finish_and_clear();
    let s = result.map_err(|e| {
        if dry_run {
            format!("{e}\n(a dry run: nothing was written)")
        } else {
            format!(
                "{e}\n(existing entries are kept; `fraudgate feeds list` shows the feed's state)"
            )
        }
    })?;
    print_summary(&s);
    Ok(())
}

fn print_summary(s: &RunSummary) {
    if s.from_fleet {
        println!(
            "feed {}: another replica pulled it recently; took its {} entries from Redis",
            s.feed, s.entries
        );
        return;
    }
    let (add, refresh) = if s.dry_run {
        ("would add", "would refresh (already listed)")
    } else {
        ("added", "refreshed")
    };
    println!(
        "feed {}: {} .. {}: {} rows in {} pages; {add} {} entries, {refresh} {}, expired {}; {} entries in the list",
        s.feed, s.from, s.to, s.rows, s.pages, s.added, s.refreshed, s.expired, s.entries
    );
    if s.rows_unused > 0 || s.values_rejected > 0 {
        println!(
            "  {} rows had no value to block, {} values were not valid for their list kind",
            s.rows_unused, s.values_rejected
        );
    }
    if s.windows_split > 0 || s.windows_truncated > 0 {
        println!(
            "  {} windows split at the source's row limit, {} single days cut by it",
            s.windows_split, s.windows_truncated
        );
    }
    if s.dry_run {
        for e in &s.new_entries {
            println!("  + {} {}  reason={}", e.kind.as_str(), e.value, e.reason);
        }
        println!("dry run: nothing was written");
    }
}
