//! Feeds: fraud that Protect360, Fraudshield and the FraudScore Data API
//! already caught, pulled on a schedule into block lists (one per feed,
//! named for it), so the next click from the same IP, device or
//! affiliate+sub is blocked with the feed as the reason.
//!
//! A run: window from the cursor (or `window` back) to now, rows from the
//! source, entries made per `map`, merged into the feed's state (new ones
//! added, known ones' expiry pushed out), the state saved, the list
//! swapped. A failure keeps every entry and backs off; it never empties a
//! list.

pub mod config;
pub mod fraudscore;
pub mod fraudshield;
pub mod protect360;
pub mod source;
pub mod state;

mod pace;
mod plan;
mod run;
mod schedule;
mod series;
mod store;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use jiff::Timestamp;
use metrics::{Counter, Gauge};
use serde::Serialize;

use crate::event::now_unix;
use crate::metrics as m;
use crate::rules::LocalRules;
use crate::rules::lists::EntryKind;
use crate::rules::sources::Stamp;
pub use config::{FeedConfig, FeedKind, MapTo};
pub use schedule::{Feeds, TriggerError};
use series::FeedMetrics;
pub use source::{FeedError, Progress, Quiet, Row};
use state::{FeedState, StateError, StoredEntry};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("feed {0:?} is already running")]
    Running(String),
    #[error("feed {feed}: {error}")]
    Source { feed: String, error: FeedError },
    #[error(transparent)]
    State(#[from] StateError),
    #[error("the window is empty: from {from} is after to {to}")]
    Window { from: String, to: String },
    #[error(
        "{vendor} keeps {days} days of data: from {from} is before the earliest it answers, {earliest}"
    )]
    BeyondRetention {
        vendor: &'static str,
        days: i64,
        from: String,
        earliest: String,
    },
}

/// What one run may change.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// An explicit window (a backfill): the cursor is left where it is.
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
    /// Pull and report what would be added; change nothing.
    pub dry_run: bool,
    /// Pull even if another replica pulled recently (admin, CLI).
    pub force: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub feed: String,
    pub from: String,
    pub to: String,
    pub pages: u64,
    pub rows: u64,
    /// Rows that made no entry (no usable value for any mapped kind).
    pub rows_unused: u64,
    /// Values a list cannot hold (not an IP, too long).
    pub values_rejected: u64,
    pub added: u64,
    pub refreshed: u64,
    pub expired: u64,
    pub entries: usize,
    /// Protect360 windows split at the row limit / single days cut by it.
    pub windows_split: u64,
    pub windows_truncated: u64,
    pub dry_run: bool,
    /// Not pulled: another replica's recent pull was taken from Redis.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub from_fleet: bool,
    /// Dry run: the entries that would be new.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub new_entries: Vec<StoredEntry>,
}

impl RunSummary {
    fn empty(feed: &str, from: u64, to: u64, dry_run: bool) -> Self {
        RunSummary {
            feed: feed.to_owned(),
            from: rfc3339(from),
            to: rfc3339(to),
            pages: 0,
            rows: 0,
            rows_unused: 0,
            values_rejected: 0,
            added: 0,
            refreshed: 0,
            expired: 0,
            entries: 0,
            windows_split: 0,
            windows_truncated: 0,
            dry_run,
            from_fleet: false,
            new_entries: Vec::new(),
        }
    }
}

/// One configured feed and its state.
pub struct Feed {
    cfg: FeedConfig,
    path: PathBuf,
    /// `cfg.columns` resolved for the kind.
    columns: config::Columns,
    http: reqwest::Client,
    /// `calls_per_minute`, kept across runs.
    pacer: pace::Pacer,
    /// Never held across an await.
    state: Mutex<FeedState>,
    /// The file as last read or written by this process.
    stamp: Mutex<Option<Stamp>>,
    running: Arc<tokio::sync::Mutex<()>>,
    /// Runs finished since this process started.
    runs: AtomicU64,
    /// Unix seconds of the next scheduled run.
    next_run: AtomicU64,
    /// The newest fleet state version this replica took or shared.
    shared_seen: AtomicU64,
    metrics: FeedMetrics,
    rules: Option<Arc<LocalRules>>,
    /// With Redis: one replica pulls at a time, the others take its state.
    fleet: Option<Arc<crate::fleet::Fleet>>,
    /// The feed's name in Redis: its name and a hash of what it pulls, so
    /// a changed feed does not take the old one's state.
    fleet_name: String,
}

/// State of a feed as the admin API and `feeds list` show it.
#[derive(Debug, Clone, Serialize)]
pub struct FeedStatus {
    pub name: String,
    pub kind: FeedKind,
    pub every_s: u64,
    pub state_file: String,
    pub entries: usize,
    pub cursor: Option<String>,
    pub last_success: Option<String>,
    pub last_attempt: Option<String>,
    pub last_error: Option<String>,
    pub consecutive_failures: u32,
    pub last_rows: u64,
    pub last_added: u64,
    pub running: bool,
    /// Runs finished since this process started.
    pub runs: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_run: Option<String>,
}

fn rfc3339(secs: u64) -> String {
    Timestamp::from_second(secs as i64)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// `click_flood` from `Click Flood`: a column name's normalisation,
/// without dots, at most 64 characters.
fn slug(s: &str) -> String {
    source::normalize(&s.replace('.', " "))
        .chars()
        .take(64)
        .collect()
}

/// `<name>:<hash of the source settings>`.
fn fleet_name(c: &FeedConfig) -> String {
    let what = format!(
        "{}|{}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}",
        c.kind.as_str(),
        c.base_url(),
        c.app_ids,
        c.topics(),
        c.tracker_id,
        c.report,
        c.min_rejection_rate,
        c.channel,
        c.event,
        c.filter,
        c.map
    );
    let mut h = crate::hash::StableHash::new();
    h.part(&what);
    format!("{}:{}", c.name, h.hex(6))
}

/// How long a replica may hold a feed's pull lease.
const LEASE: Duration = Duration::from_secs(15 * 60);

impl Feed {
    fn new(
        cfg: FeedConfig,
        rules: Option<Arc<LocalRules>>,
        fleet: Option<Arc<crate::fleet::Fleet>>,
    ) -> Result<Self, StateError> {
        let path = cfg.state_path();
        let metrics = FeedMetrics::new(&cfg);
        let mut state = match FeedState::load(&path, &|k, v| cfg.admit(k, v)) {
            Ok((state, damage)) => {
                if !damage.is_empty() {
                    report_damage(&cfg.name, &path.display().to_string(), &damage, &metrics);
                    if damage.whole {
                        set_aside(&cfg.name, &path);
                    }
                }
                state
            }
            Err(e) => {
                // The gate decides first: the feed starts empty and says so.
                tracing::error!(feed = %cfg.name, error = %e, "cannot read the feed's state; starting it empty");
                FeedState::default()
            }
        };
        if !state.kind.is_empty() && state.kind != cfg.kind.as_str() {
            tracing::warn!(feed = %cfg.name, was = %state.kind, now = cfg.kind.as_str(), "the feed changed kind: its cursor starts afresh (entries kept)");
            state.cursor = None;
        }
        let expired = state.prune(now_unix());
        metrics.zero();
        metrics.expired.increment(expired);
        metrics.show(&state);
        let feed = Feed {
            columns: cfg.columns.resolved(cfg.kind),
            http: source::client(cfg.timeout()),
            pacer: pace::Pacer::new(cfg.calls_per_minute),
            stamp: Mutex::new(Stamp::of(&path)),
            path,
            state: Mutex::new(state),
            running: Arc::new(tokio::sync::Mutex::new(())),
            runs: AtomicU64::new(0),
            next_run: AtomicU64::new(0),
            shared_seen: AtomicU64::new(0),
            metrics,
            rules,
            fleet,
            fleet_name: fleet_name(&cfg),
            cfg,
        };
        feed.publish();
        Ok(feed)
    }

    pub fn name(&self) -> &str {
        &self.cfg.name
    }

    pub fn config(&self) -> &FeedConfig {
        &self.cfg
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FeedState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Swaps the feed's list in the rules to the state's entries.
    fn publish(&self) {
        let entries = self.lock().list_entries();
        if let Some(r) = &self.rules
            && let Err(e) = r.set_feed_entries(&self.cfg.name, entries)
        {
            tracing::error!(feed = %self.cfg.name, error = %e, "cannot update the feed's list");
        }
    }

    pub fn status(&self) -> FeedStatus {
        let s = self.lock();
        let next = self.next_run.load(Ordering::Relaxed);
        FeedStatus {
            name: self.cfg.name.clone(),
            kind: self.cfg.kind,
            every_s: self.cfg.every.as_secs(),
            state_file: self.path.display().to_string(),
            entries: s.entries.len(),
            cursor: s.cursor.map(rfc3339),
            last_success: s.last_success.map(rfc3339),
            last_attempt: s.last_attempt.map(rfc3339),
            last_error: s.last_error.clone(),
            consecutive_failures: s.consecutive_failures,
            last_rows: s.last_rows,
            last_added: s.last_added,
            running: self.running.try_lock().is_err(),
            runs: self.runs.load(Ordering::Relaxed),
            next_run: (next > 0).then(|| rfc3339(next)),
        }
    }
}

/// A WARN naming where the damaged state was read (a file, a Redis key)
/// and what was wrong; the skipped entries counted.
fn report_damage(feed: &str, source: &str, damage: &state::Damage, metrics: &FeedMetrics) {
    metrics.state_skipped.increment(damage.skipped);
    tracing::warn!(feed = %feed, state = %source, skipped = damage.skipped, problem = %damage.describe(), "the feed's stored state is damaged: read as far as it is valid");
}

/// Moves a wholly unreadable state file aside (kept for a look), so the
/// next save does not overwrite it.
fn set_aside(feed: &str, path: &std::path::Path) {
    let aside = path.with_extension(format!("json.damaged-{}", now_unix()));
    match std::fs::rename(path, &aside) {
        Ok(()) => {
            tracing::warn!(feed = %feed, kept = %aside.display(), "the unreadable feed state was moved aside")
        }
        Err(e) => {
            tracing::warn!(feed = %feed, error = %e, "cannot move the unreadable feed state aside")
        }
    }
}

/// How a run begins.
enum Start {
    /// Pull, holding the fleet's lease when there is a fleet.
    Pull(Option<Lease>),
    /// Another replica pulled recently: its state was taken.
    FromFleet(RunSummary),
}

/// A run's hold on the fleet's pull lease: released when the run is
/// done, and on every other way out of it (an error, a `?`) when the
/// guard drops.
struct Lease {
    fleet: Arc<crate::fleet::Fleet>,
    name: String,
    held: bool,
}

impl Lease {
    async fn release(mut self) {
        self.held = false;
        self.fleet.feed_release(&self.name).await;
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if !self.held {
            return;
        }
        let (fleet, name) = (self.fleet.clone(), std::mem::take(&mut self.name));
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move { fleet.feed_release(&name).await });
        }
    }
}

#[derive(Default)]
struct Pulled {
    stats: source::PullStats,
    /// Rows that made no entry, values a list cannot hold.
    unused: u64,
    rejected: u64,
    entries: Vec<StoredEntry>,
}

#[derive(Debug, thiserror::Error)]
pub enum ClearError {
    #[error("feed {0:?} is running; try again when the run ends")]
    Running(String),
    #[error(transparent)]
    State(#[from] StateError),
}
