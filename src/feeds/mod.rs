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

/// Per-feed series, registered once.
struct FeedMetrics {
    runs_ok: Counter,
    runs_err: Counter,
    errors: HashMap<&'static str, Counter>,
    rows: Counter,
    pages: Counter,
    added: Counter,
    expired: Counter,
    /// By [`config::Rejection`], in its `ALL` order.
    rejected: [Counter; 3],
    state_skipped: Counter,
    entries: Gauge,
    last_success: Gauge,
    failures: Gauge,
}

const ERROR_KINDS: [&str; 11] = [
    "partial",
    "credentials",
    "forbidden",
    "not_found",
    "bad_request",
    "rate_limited",
    "server",
    "status",
    "timeout",
    "transport",
    "parse",
];

impl FeedMetrics {
    fn new(cfg: &FeedConfig) -> Self {
        let f = cfg.name.clone();
        metrics::gauge!(m::FEED_INTERVAL, "feed" => f.clone()).set(cfg.every.as_secs_f64());
        FeedMetrics {
            runs_ok: metrics::counter!(m::FEED_RUNS, "feed" => f.clone(), "outcome" => "ok"),
            runs_err: metrics::counter!(m::FEED_RUNS, "feed" => f.clone(), "outcome" => "error"),
            errors: ERROR_KINDS
                .iter()
                .map(|k| {
                    let c = metrics::counter!(m::FEED_ERRORS, "feed" => f.clone(), "kind" => *k);
                    c.increment(0);
                    (*k, c)
                })
                .collect(),
            rows: metrics::counter!(m::FEED_ROWS, "feed" => f.clone()),
            pages: metrics::counter!(m::FEED_PAGES, "feed" => f.clone()),
            added: metrics::counter!(m::FEED_ADDED, "feed" => f.clone()),
            expired: metrics::counter!(m::FEED_EXPIRED, "feed" => f.clone()),
            rejected: config::Rejection::ALL.map(|r| {
                metrics::counter!(m::FEED_REJECTED, "feed" => f.clone(), "reason" => r.as_str())
            }),
            state_skipped: metrics::counter!(m::FEED_STATE_SKIPPED, "feed" => f.clone()),
            entries: metrics::gauge!(m::FEED_ENTRIES, "feed" => f.clone()),
            last_success: metrics::gauge!(m::FEED_LAST_SUCCESS, "feed" => f.clone()),
            failures: metrics::gauge!(m::FEED_FAILURES, "feed" => f),
        }
    }

    fn zero(&self) {
        for c in [
            &self.runs_ok,
            &self.runs_err,
            &self.rows,
            &self.pages,
            &self.added,
            &self.expired,
            &self.state_skipped,
        ]
        .into_iter()
        .chain(&self.rejected)
        {
            c.increment(0);
        }
    }

    fn show(&self, s: &FeedState) {
        self.entries.set(s.entries.len() as f64);
        self.last_success.set(s.last_success.unwrap_or(0) as f64);
        self.failures.set(s.consecutive_failures as f64);
    }
}

/// One configured feed and its state.
pub struct Feed {
    cfg: FeedConfig,
    path: PathBuf,
    /// `cfg.columns` resolved for the kind.
    columns: config::Columns,
    http: reqwest::Client,
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
        if let Some(r) = &self.rules {
            if let Err(e) = r.set_feed_entries(&self.cfg.name, entries) {
                tracing::error!(feed = %self.cfg.name, error = %e, "cannot update the feed's list");
            }
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

    /// Drops entries from the feed's list (one kind and value, or all):
    /// an operator's way out of a bad row without editing the source.
    /// They stay out until the source reports them again; with Redis the
    /// clear is shared, so other replicas drop them too.
    pub async fn clear(&self, which: Option<(EntryKind, &str)>) -> Result<u64, ClearError> {
        // Not in the middle of a run: its merge would not see the clear.
        let _run = tokio::time::timeout(Duration::from_secs(10), self.running.lock())
            .await
            .map_err(|_| ClearError::Running(self.cfg.name.clone()))?;
        // The newest entries, ours and the fleet's, so the clear covers
        // what other replicas pulled too.
        self.adopt_shared().await;
        self.adopt_disk().await;
        let now = now_unix();
        let removed = {
            let mut s = self.lock();
            let n = s.clear(which, now, self.cfg.expire_after.as_secs());
            self.metrics.show(&s);
            n
        };
        // The list first: the entries are out whether or not the file
        // can be written.
        self.publish();
        self.save_off_runtime().await?;
        if !self.share_state().await {
            tracing::warn!(feed = %self.cfg.name, "feed clear not shared (Redis unavailable or a newer state there)");
        }
        tracing::info!(feed = %self.cfg.name, removed, all = which.is_none(), "feed entries cleared");
        Ok(removed)
    }

    /// Puts this replica's state in Redis, versioned by the time now (so
    /// a run that began before a clear still shares after it). Remembers
    /// the version, so this replica does not take its own state back.
    async fn share_state(&self) -> bool {
        let Some(f) = &self.fleet else {
            return true;
        };
        let json = serde_json::to_string(&*self.lock()).unwrap_or_default();
        let version = now_unix().max(self.shared_seen.load(Ordering::Relaxed) + 1);
        let ok = f
            .put_feed_state(&self.fleet_name, version, json, self.cfg.expire_after)
            .await;
        if ok {
            self.shared_seen.fetch_max(version, Ordering::Relaxed);
        }
        ok
    }

    /// Takes in what another process (`fraudgate feeds run`) wrote, and
    /// drops expired entries. Blocking file I/O: off the runtime.
    pub fn sync(&self) {
        let now_stamp = Stamp::of(&self.path);
        let changed = {
            let mut st = self.stamp.lock().unwrap_or_else(|p| p.into_inner());
            if *st != now_stamp && now_stamp.is_some() {
                *st = now_stamp;
                true
            } else {
                false
            }
        };
        let mut republish = false;
        if changed {
            match self.load_disk() {
                Some(s) => {
                    tracing::info!(feed = %self.cfg.name, entries = s.entries.len(), "feed state changed on disk: loaded");
                    *self.lock() = s;
                    republish = true;
                }
                None => {
                    tracing::warn!(feed = %self.cfg.name, "feed state changed on disk but cannot be read; keeping the entries held")
                }
            }
        }
        let now = now_unix();
        let expired = {
            let mut s = self.lock();
            if s.next_expiry().is_some_and(|t| t <= now) {
                s.prune(now)
            } else {
                0
            }
        };
        if expired > 0 {
            self.metrics.expired.increment(expired);
            republish = true;
            if let Err(e) = self.save() {
                tracing::warn!(feed = %self.cfg.name, error = %e, "cannot save the feed's state");
            }
        }
        if republish {
            self.metrics.show(&self.lock());
            self.publish();
        }
    }

    /// The state file as far as it is valid, damage told and counted;
    /// `None` when nothing in it is readable (the held entries stay).
    fn load_disk(&self) -> Option<FeedState> {
        self.take_loaded(FeedState::load(&self.path, &|k, v| self.cfg.admit(k, v)))
    }

    fn take_loaded(
        &self,
        loaded: Result<(FeedState, state::Damage), StateError>,
    ) -> Option<FeedState> {
        match loaded {
            Ok((state, damage)) => {
                if !damage.is_empty() {
                    let name = self.path.display().to_string();
                    report_damage(&self.cfg.name, &name, &damage, &self.metrics);
                }
                (!damage.whole).then_some(state)
            }
            Err(e) => {
                tracing::warn!(feed = %self.cfg.name, error = %e, "cannot read the feed's state");
                None
            }
        }
    }

    fn save(&self) -> Result<(), StateError> {
        let snapshot = self.lock().clone();
        snapshot.save(&self.path)?;
        *self.stamp.lock().unwrap_or_else(|p| p.into_inner()) = Stamp::of(&self.path);
        Ok(())
    }

    /// Rows to entries: one per mapped kind the row has a value for.
    fn entries_of(
        &self,
        row: &Row,
        topic: &str,
        expires: u64,
        rejected: &mut u64,
    ) -> Vec<StoredEntry> {
        let kind = self.cfg.kind.as_str();
        let reason = match row
            .reason
            .as_deref()
            .or(row.sub_reason.as_deref())
            .map(slug)
        {
            Some(r) if !r.is_empty() => format!("{kind}:{topic}:{r}"),
            _ => format!("{kind}:{topic}"),
        };
        let mut out = Vec::new();
        let mut push = |k: EntryKind, v: &str| match self.cfg.admit(k, v) {
            Ok(value) => out.push(StoredEntry {
                kind: k,
                value,
                expires,
                reason: reason.clone(),
            }),
            Err(r) => {
                *rejected += 1;
                self.metrics.rejected[r as usize].increment(1);
            }
        };
        for m in &self.cfg.map {
            match m {
                MapTo::Ip => {
                    if let Some(ip) = &row.ip {
                        push(EntryKind::Ip, ip);
                    }
                }
                MapTo::Device => {
                    for d in &row.devices {
                        push(EntryKind::Device, d);
                    }
                }
                MapTo::Affiliate => {
                    if let Some(a) = &row.affiliate {
                        push(EntryKind::Affiliate, a);
                    }
                }
                MapTo::AffiliateSub => {
                    if let (Some(a), Some(s)) = (&row.affiliate, &row.sub) {
                        if !a.contains('/') {
                            push(EntryKind::AffiliateSub, &format!("{a}/{s}"));
                        }
                    }
                }
            }
        }
        out
    }

    /// One pull. Errors keep every entry; they are recorded in the state.
    pub async fn run(
        &self,
        opts: &RunOptions,
        progress: &dyn Progress,
    ) -> Result<RunSummary, RunError> {
        let guard = self
            .running
            .clone()
            .try_lock_owned()
            .map_err(|_| RunError::Running(self.cfg.name.clone()))?;
        self.run_locked(guard, opts, progress).await
    }

    /// A run that already holds the feed's run lock.
    async fn run_locked(
        &self,
        _guard: tokio::sync::OwnedMutexGuard<()>,
        opts: &RunOptions,
        progress: &dyn Progress,
    ) -> Result<RunSummary, RunError> {
        let result = self.run_inner(opts, progress).await;
        self.runs.fetch_add(1, Ordering::Relaxed);
        result
    }

    async fn run_inner(
        &self,
        opts: &RunOptions,
        progress: &dyn Progress,
    ) -> Result<RunSummary, RunError> {
        let now = now_unix();
        let (from, to) = self.window(opts, now)?;
        let explicit = opts.from.is_some() || opts.to.is_some();
        let shared = !opts.dry_run && !explicit;
        let lease = match self.start(opts, shared, from, to, now).await? {
            Start::Pull(lease) => lease,
            Start::FromFleet(summary) => return Ok(summary),
        };
        let mut summary = RunSummary::empty(&self.cfg.name, from, to, opts.dry_run);
        let pulled = match self.pull(from, to, now, progress).await {
            Ok(p) => p,
            Err(error) => {
                if !opts.dry_run {
                    self.adopt_disk().await;
                    self.note_failure(&error, now);
                    let _ = self.save_off_runtime().await;
                }
                return Err(self.source_error(error));
            }
        };
        summary.pages = pulled.stats.pages;
        summary.rows = pulled.stats.rows;
        summary.rows_unused = pulled.unused;
        summary.values_rejected = pulled.rejected;
        summary.windows_split = pulled.stats.splits;
        summary.windows_truncated = pulled.stats.truncated;
        if opts.dry_run {
            return Ok(self.dry_run(pulled.entries, summary));
        }
        // Another process may have written since: merge into the newest.
        self.adopt_disk().await;
        let rows = pulled.stats.rows;
        let covered_from = self.covered_from(from);
        let (merged, expired) = {
            let mut s = self.lock();
            let merged = s.merge_pulled(pulled.entries, covered_from);
            (merged, s.prune(now))
        };
        self.metrics.rows.increment(rows);
        self.metrics.pages.increment(pulled.stats.pages);
        self.metrics.added.increment(merged.added);
        self.metrics.expired.increment(expired);
        if let Some(error) = pulled.stats.partial {
            // What was read is kept; the cursor stays, so the failed
            // reports are read again next time.
            self.note_failure(&error, now);
            self.save_off_runtime().await?;
            self.publish();
            return Err(self.source_error(error));
        }
        {
            let mut s = self.lock();
            if !explicit {
                s.cursor = Some(to);
            }
            s.kind = self.cfg.kind.as_str().to_owned();
            s.version = 1;
            s.last_success = Some(now);
            s.last_attempt = Some(now);
            s.last_error = None;
            s.consecutive_failures = 0;
            s.last_rows = rows;
            s.last_added = merged.added;
            summary.added = merged.added;
            summary.refreshed = merged.refreshed;
            summary.expired = expired;
            summary.entries = s.entries.len();
            self.metrics.runs_ok.increment(1);
            self.metrics.show(&s);
        }
        self.save_off_runtime().await?;
        self.publish();
        if let Some(lease) = lease {
            if !self.share_state().await {
                tracing::warn!(feed = %self.cfg.name, "feed state not shared (Redis unavailable); other replicas pull it themselves");
            }
            lease.release().await;
        }
        Ok(summary)
    }

    /// The run's window: from the cursor (less the source's lookback) or
    /// `window` back, to now; or what the caller asked for.
    fn window(&self, opts: &RunOptions, now: u64) -> Result<(u64, u64), RunError> {
        let window_start = now.saturating_sub(self.cfg.window.as_secs());
        let cursor = self.lock().cursor;
        let from = match opts.from {
            Some(t) => t.as_second().max(0) as u64,
            // Rates over part of a day mislead: the fraud report always
            // covers the whole window.
            None if self.cfg.kind == FeedKind::Fraudshield
                && self.cfg.fraudshield_report() == config::FraudshieldReport::Fraud =>
            {
                window_start
            }
            None => cursor
                .map_or(window_start, |c| c.saturating_sub(self.lookback()))
                .max(window_start),
        };
        let to = match opts.to {
            Some(t) => t.as_second().max(0) as u64,
            None => now,
        };
        if from > to {
            return Err(RunError::Window {
                from: rfc3339(from),
                to: rfc3339(to),
            });
        }
        Ok((from, to))
    }

    /// With a fleet, another replica's recent pull is taken instead of
    /// pulling again, and one replica at a time holds the pull's lease.
    async fn start(
        &self,
        opts: &RunOptions,
        shared: bool,
        from: u64,
        to: u64,
        now: u64,
    ) -> Result<Start, RunError> {
        let (true, Some(fleet)) = (shared, &self.fleet) else {
            return Ok(Start::Pull(None));
        };
        self.adopt_shared().await;
        let recent = self
            .lock()
            .last_success
            .is_some_and(|t| now < t + self.cfg.every.as_secs() / 2);
        if recent && !opts.force {
            return Ok(Start::FromFleet(RunSummary {
                entries: self.lock().entries.len(),
                from_fleet: true,
                ..RunSummary::empty(&self.cfg.name, from, to, false)
            }));
        }
        match fleet.feed_lease(&self.fleet_name, LEASE).await {
            Some(false) => Err(RunError::Running(format!(
                "{} (another replica holds its lease)",
                self.cfg.name
            ))),
            Some(true) => Ok(Start::Pull(Some(Lease {
                fleet: fleet.clone(),
                name: self.fleet_name.clone(),
                held: true,
            }))),
            None => Ok(Start::Pull(None)),
        }
    }

    /// A failed (or partly failed) pull in the state and the metrics.
    fn note_failure(&self, error: &FeedError, now: u64) {
        self.metrics.runs_err.increment(1);
        if let Some(c) = self.metrics.errors.get(error.kind()) {
            c.increment(1);
        }
        let mut s = self.lock();
        s.consecutive_failures += 1;
        s.last_attempt = Some(now);
        s.last_error = Some(error.to_string());
        self.metrics.show(&s);
    }

    fn source_error(&self, error: FeedError) -> RunError {
        RunError::Source {
            feed: self.cfg.name.clone(),
            error,
        }
    }

    /// What a dry run reports: the entries that would be new.
    fn dry_run(&self, pulled: Vec<StoredEntry>, mut summary: RunSummary) -> RunSummary {
        let pulled_count = pulled.len();
        let s = self.lock();
        let known: std::collections::HashSet<(EntryKind, &str)> = s
            .entries
            .iter()
            .map(|e| (e.kind, e.value.as_str()))
            .collect();
        summary.new_entries = pulled
            .into_iter()
            .filter(|e| !known.contains(&(e.kind, e.value.as_str())))
            .collect();
        summary.added = summary.new_entries.len() as u64;
        summary.refreshed = pulled_count as u64 - summary.added;
        summary.entries = s.entries.len();
        summary
    }

    /// Takes the fleet's state of this feed when it is newer than ours
    /// (another replica pulled). True when taken.
    pub async fn adopt_shared(&self) -> bool {
        let Some(fleet) = &self.fleet else {
            return false;
        };
        let ours = self
            .lock()
            .last_success
            .unwrap_or(0)
            .max(self.shared_seen.load(Ordering::Relaxed));
        let version = match fleet.feed_version(&self.fleet_name).await {
            Some(v) if v > ours => v,
            _ => return false,
        };
        let Some((_, json)) = fleet.feed_state(&self.fleet_name).await else {
            return false;
        };
        let (state, damage) = FeedState::parse(json.as_bytes(), &|k, v| self.cfg.admit(k, v));
        if !damage.is_empty() {
            let key = format!("Redis feed state {:?}", self.fleet_name);
            report_damage(&self.cfg.name, &key, &damage, &self.metrics);
        }
        if damage.whole {
            return false;
        }
        self.shared_seen.fetch_max(version, Ordering::Relaxed);
        let now = now_unix();
        {
            let mut s = self.lock();
            s.absorb(state, self.cfg.expire_after.as_secs());
            s.prune(now);
            self.metrics.show(&s);
        }
        let _ = self.save_off_runtime().await;
        self.publish();
        tracing::info!(feed = %self.cfg.name, "took the feed's entries another replica pulled");
        true
    }

    /// Takes the file's state if another process (`feeds run`) wrote it
    /// since this one last read or wrote it, so a save never drops what
    /// that process added.
    async fn adopt_disk(&self) {
        let path = self.path.clone();
        let cfg = self.cfg.clone();
        let Ok((st, loaded)) = tokio::task::spawn_blocking(move || {
            let loaded = FeedState::load(&path, &|k, v| cfg.admit(k, v));
            (Stamp::of(&path), loaded)
        })
        .await
        else {
            return;
        };
        let Some(state) = self.take_loaded(loaded) else {
            return;
        };
        let mut held = self.stamp.lock().unwrap_or_else(|p| p.into_inner());
        if st.is_some() && st != *held {
            *self.lock() = state;
            *held = st;
        }
    }

    async fn save_off_runtime(&self) -> Result<(), StateError> {
        let snapshot = self.lock().clone();
        let path = self.path.clone();
        let saved =
            tokio::task::spawn_blocking(move || snapshot.save(&path).map(|()| Stamp::of(&path)))
                .await
                .unwrap_or_else(|e| {
                    Err(StateError::Write {
                        path: self.path.display().to_string(),
                        message: e.to_string(),
                    })
                });
        match saved {
            Ok(st) => {
                *self.stamp.lock().unwrap_or_else(|p| p.into_inner()) = st;
                Ok(())
            }
            Err(e) => {
                tracing::error!(feed = %self.cfg.name, error = %e, "cannot save the feed's state; entries are held in memory");
                Err(e)
            }
        }
    }

    async fn pull(
        &self,
        from: u64,
        to: u64,
        now: u64,
        progress: &dyn Progress,
    ) -> Result<Pulled, FeedError> {
        let expires = now + self.cfg.expire_after.as_secs();
        let mut p = Pulled::default();
        let mut seen: HashMap<(EntryKind, String), usize> = HashMap::new();
        let ctx = source::Ctx {
            cfg: &self.cfg,
            http: &self.http,
            columns: &self.columns,
            progress,
        };
        let ts = |s: u64| Timestamp::from_second(s as i64).unwrap_or(Timestamp::UNIX_EPOCH);
        let run_timeout = self.cfg.run_timeout;
        let stats = {
            let mut sink = |row: Row, topic: &str| {
                let made = self.entries_of(&row, topic, expires, &mut p.rejected);
                if made.is_empty() {
                    p.unused += 1;
                }
                for e in made {
                    match seen.get(&(e.kind, e.value.clone())) {
                        // The latest row's reason wins within one pull too.
                        Some(&i) => p.entries[i].reason = e.reason,
                        None => {
                            seen.insert((e.kind, e.value.clone()), p.entries.len());
                            p.entries.push(e);
                        }
                    }
                }
            };
            let source = async {
                match self.cfg.kind {
                    FeedKind::Protect360 => {
                        let utc = jiff::tz::TimeZone::UTC;
                        let date = |s: u64| ts(s).to_zoned(utc.clone()).date();
                        protect360::pull(&ctx, date(from), date(to), date(now), &mut sink).await
                    }
                    FeedKind::Fraudshield => {
                        let tz = jiff::tz::TimeZone::get(self.cfg.timezone())
                            .unwrap_or(jiff::tz::TimeZone::UTC);
                        let date = |s: u64| ts(s).to_zoned(tz.clone()).date();
                        fraudshield::pull(&ctx, date(from), date(to), &mut sink).await
                    }
                    FeedKind::FraudscoreData => {
                        fraudscore::pull(&ctx, ts(from), ts(to), &mut sink).await
                    }
                }
            };
            // Every call has its own timeouts; this bounds the whole run
            // (a source trickling bytes, a scroll that never ends).
            tokio::time::timeout(run_timeout, source)
                .await
                .unwrap_or(Err(FeedError::RunTimeout(run_timeout.as_secs())))
        };
        // Whatever a source echoed of the request, no spelling of a
        // secret reaches last_error, the logs or the state file.
        let secrets = self.cfg.secrets();
        let mut stats = stats.map_err(|e| e.redacted(&secrets))?;
        stats.partial = stats.partial.map(|e| e.redacted(&secrets));
        p.stats = stats;
        Ok(p)
    }

    /// Where the rows of a pull from `from` can begin: the start of its
    /// day for the sources asked by date (Protect360 in UTC, Fraudshield
    /// in its time zone), `from` itself for the Data API.
    fn covered_from(&self, from: u64) -> u64 {
        let tz = match self.cfg.kind {
            FeedKind::FraudscoreData => return from,
            FeedKind::Protect360 => jiff::tz::TimeZone::UTC,
            FeedKind::Fraudshield => {
                jiff::tz::TimeZone::get(self.cfg.timezone()).unwrap_or(jiff::tz::TimeZone::UTC)
            }
        };
        Timestamp::from_second(from as i64)
            .ok()
            .and_then(|t| t.to_zoned(tz).start_of_day().ok())
            .map_or(from, |d| d.timestamp().as_second().max(0) as u64)
    }

    /// How far before the cursor a pull starts again, for data a source
    /// adds late: Protect360's post-attribution reports are published
    /// daily (10:00 UTC) for installs of earlier days; the Data API may
    /// record an event a little after it happened.
    fn lookback(&self) -> u64 {
        match self.cfg.kind {
            FeedKind::Protect360
                if self
                    .cfg
                    .topics()
                    .iter()
                    .any(|t| matches!(*t, "detection" | "fraud-post-inapps")) =>
            {
                7 * 86400
            }
            FeedKind::FraudscoreData => 600,
            _ => 0,
        }
    }

    /// When the scheduler runs this feed next, from its state.
    fn plan_next(&self, after_failure: Option<&FeedError>) -> u64 {
        let now = now_unix();
        let every = self.cfg.every.as_secs_f64();
        let next = match after_failure {
            Some(e) => {
                let n = self.lock().consecutive_failures.max(1);
                let backoff = (10.0 * 2f64.powi(n as i32 - 1)).min(every.max(10.0));
                let wait = e
                    .retry_after()
                    .map_or(backoff, |r| backoff.max(r.as_secs_f64()));
                now + wait.ceil() as u64
            }
            None => {
                let r: f64 = rand::random::<f64>() * 2.0 - 1.0;
                now + (every * (1.0 + self.cfg.jitter * r)).max(1.0).round() as u64
            }
        };
        self.next_run.store(next, Ordering::Relaxed);
        next
    }

    /// First run: at once if the last success is older than `every`.
    fn plan_first(&self) -> u64 {
        let now = now_unix();
        let s = self.lock();
        let next = match (s.last_success, s.consecutive_failures) {
            (Some(t), 0) if t + self.cfg.every.as_secs() > now => t + self.cfg.every.as_secs(),
            _ => now,
        };
        drop(s);
        self.next_run.store(next, Ordering::Relaxed);
        next
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

/// Every configured feed.
#[derive(Default)]
pub struct Feeds {
    feeds: Vec<Arc<Feed>>,
}

impl Feeds {
    /// Loads each feed's state and puts its entries in its list.
    pub fn new(
        configs: &[FeedConfig],
        rules: Option<Arc<LocalRules>>,
        fleet: Option<Arc<crate::fleet::Fleet>>,
    ) -> Result<Self, StateError> {
        let feeds = configs
            .iter()
            .map(|c| Feed::new(c.clone(), rules.clone(), fleet.clone()).map(Arc::new))
            .collect::<Result<_, _>>()?;
        Ok(Feeds { feeds })
    }

    pub fn is_empty(&self) -> bool {
        self.feeds.is_empty()
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Feed>> {
        self.feeds.iter().find(|f| f.cfg.name == name)
    }

    pub fn all(&self) -> &[Arc<Feed>] {
        &self.feeds
    }

    pub fn statuses(&self) -> Vec<FeedStatus> {
        self.feeds.iter().map(|f| f.status()).collect()
    }

    /// The scheduler: a task per feed, pulling every `every` (± jitter),
    /// backing off after failures, picking up state other processes
    /// wrote and dropping expired entries once a second.
    pub fn spawn(&self) {
        for feed in &self.feeds {
            let feed = feed.clone();
            tokio::spawn(async move {
                if let Some(f) = &feed.fleet {
                    // Shared pulls need Redis: give it a moment at startup.
                    f.wait_connected(Duration::from_secs(5)).await;
                    feed.adopt_shared().await;
                }
                let mut next = feed.plan_first();
                let mut ticks = 0u64;
                loop {
                    loop {
                        let now = now_unix();
                        if now >= next {
                            break;
                        }
                        tokio::time::sleep(Duration::from_secs((next - now).min(1))).await;
                        let f = feed.clone();
                        let _ = tokio::task::spawn_blocking(move || f.sync()).await;
                        ticks += 1;
                        if ticks % 5 == 0 {
                            feed.adopt_shared().await;
                        }
                        // A run through the admin API re-plans.
                        next = feed.next_run.load(Ordering::Relaxed);
                    }
                    next = match feed.run(&RunOptions::default(), &Quiet).await {
                        Ok(s) => {
                            tracing::info!(feed = %s.feed, rows = s.rows, added = s.added, refreshed = s.refreshed, entries = s.entries, "feed pulled");
                            feed.plan_next(None)
                        }
                        Err(RunError::Running(_)) => feed.plan_next(None),
                        Err(RunError::Source { error, .. }) => {
                            let n = feed.plan_next(Some(&error));
                            tracing::warn!(feed = %feed.cfg.name, error = %error, kind = error.kind(), retry_in_s = n.saturating_sub(now_unix()), "feed pull failed; entries kept");
                            n
                        }
                        Err(e) => {
                            tracing::error!(feed = %feed.cfg.name, error = %e, "feed run failed");
                            feed.plan_next(Some(&FeedError::Parse(e.to_string())))
                        }
                    };
                }
            });
        }
    }

    /// Starts a run now (the admin API); it re-plans the schedule.
    pub fn trigger(&self, name: &str) -> Result<(), TriggerError> {
        let feed = self
            .get(name)
            .ok_or_else(|| TriggerError::Unknown(name.to_owned()))?
            .clone();
        // Taken here, so the feed shows as running from the answer on.
        let guard = feed
            .running
            .clone()
            .try_lock_owned()
            .map_err(|_| TriggerError::Running(name.to_owned()))?;
        tokio::spawn(async move {
            let opts = RunOptions {
                force: true,
                ..RunOptions::default()
            };
            match feed.run_locked(guard, &opts, &Quiet).await {
                Ok(s) => {
                    tracing::info!(feed = %s.feed, rows = s.rows, added = s.added, "feed pulled (admin)");
                    feed.plan_next(None);
                }
                Err(RunError::Source { error, .. }) => {
                    tracing::warn!(feed = %feed.cfg.name, error = %error, "feed pull failed (admin); entries kept");
                    feed.plan_next(Some(&error));
                }
                Err(e) => tracing::warn!(feed = %feed.cfg.name, error = %e, "feed run (admin)"),
            }
        });
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClearError {
    #[error("feed {0:?} is running; try again when the run ends")]
    Running(String),
    #[error(transparent)]
    State(#[from] StateError),
}

#[derive(Debug, thiserror::Error)]
pub enum TriggerError {
    #[error("no feed named {0:?}")]
    Unknown(String),
    #[error("feed {0:?} is running already")]
    Running(String),
}
