//! One run of a feed: its window, the fleet's lease, the pull, and what
//! it changes in the state.

use super::*;

impl Feed {
    /// Rows to entries: one per mapped kind the row has a value for.
    pub(super) fn entries_of(
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
                    if let (Some(a), Some(s)) = (&row.affiliate, &row.sub)
                        && !a.contains('/')
                    {
                        push(EntryKind::AffiliateSub, &format!("{a}/{s}"));
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
    pub(super) async fn run_locked(
        &self,
        _guard: tokio::sync::OwnedMutexGuard<()>,
        opts: &RunOptions,
        progress: &dyn Progress,
    ) -> Result<RunSummary, RunError> {
        let result = self.run_inner(opts, progress).await;
        self.runs.fetch_add(1, Ordering::Relaxed);
        result
    }

    pub(super) async fn run_inner(
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
        // A scheduled run resumes the reports an earlier partial run read
        // to the end; a backfill reads its whole window.
        let resume = !explicit;
        let pulled = match self.pull(from, to, now, resume, progress).await {
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
            // reports are read again next time, and the reports read to
            // the end only from where this run ended.
            if !explicit {
                let mut s = self.lock();
                for report in pulled.stats.done {
                    s.reports_done.insert(report, to);
                }
            }
            self.note_failure(&error, now);
            self.save_off_runtime().await?;
            self.publish();
            return Err(self.source_error(error));
        }
        {
            let mut s = self.lock();
            if !explicit {
                s.cursor = Some(to);
                s.reports_done.clear();
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
    pub(super) fn window(&self, opts: &RunOptions, now: u64) -> Result<(u64, u64), RunError> {
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
        // A backfill older than the source keeps is refused, not clipped
        // silently (Protect360 answers the last 90 days).
        if opts.from.is_some() && self.cfg.kind == FeedKind::Protect360 {
            let days = config::P360_LOOKBACK_DAYS;
            let earliest = now.saturating_sub(days as u64 * 86_400);
            if from < earliest - earliest % 86_400 {
                return Err(RunError::BeyondRetention {
                    vendor: "Protect360",
                    days,
                    from: rfc3339(from),
                    earliest: rfc3339(earliest - earliest % 86_400),
                });
            }
        }
        Ok((from, to))
    }

    /// With a fleet, another replica's recent pull is taken instead of
    /// pulling again, and one replica at a time holds the pull's lease.
    pub(super) async fn start(
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
    pub(super) fn note_failure(&self, error: &FeedError, now: u64) {
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

    pub(super) fn source_error(&self, error: FeedError) -> RunError {
        RunError::Source {
            feed: self.cfg.name.clone(),
            error,
        }
    }

    /// What a dry run reports: the entries that would be new.
    pub(super) fn dry_run(&self, pulled: Vec<StoredEntry>, mut summary: RunSummary) -> RunSummary {
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

    pub(super) async fn pull(
        &self,
        from: u64,
        to: u64,
        now: u64,
        resume: bool,
        progress: &dyn Progress,
    ) -> Result<Pulled, FeedError> {
        let expires = now + self.cfg.expire_after.as_secs();
        let mut p = Pulled::default();
        let mut seen: HashMap<(EntryKind, String), usize> = HashMap::new();
        let reports_done = if resume {
            self.lock().reports_done.clone()
        } else {
            Default::default()
        };
        let ctx = source::Ctx {
            cfg: &self.cfg,
            http: &self.http,
            pacer: &self.pacer,
            reports_done: &reports_done,
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
    pub(super) fn covered_from(&self, from: u64) -> u64 {
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
    pub(super) fn lookback(&self) -> u64 {
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
}
