//! A feed's series, registered once.

use super::*;

/// Per-feed series, registered once.
pub(super) struct FeedMetrics {
    pub(super) runs_ok: Counter,
    pub(super) runs_err: Counter,
    pub(super) errors: HashMap<&'static str, Counter>,
    pub(super) rows: Counter,
    pub(super) pages: Counter,
    pub(super) added: Counter,
    pub(super) expired: Counter,
    /// By [`config::Rejection`], in its `ALL` order.
    pub(super) rejected: [Counter; 3],
    pub(super) state_skipped: Counter,
    pub(super) entries: Gauge,
    pub(super) last_success: Gauge,
    pub(super) failures: Gauge,
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
    pub(super) fn new(cfg: &FeedConfig) -> Self {
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

    pub(super) fn zero(&self) {
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

    pub(super) fn show(&self, s: &FeedState) {
        self.entries.set(s.entries.len() as f64);
        self.last_success.set(s.last_success.unwrap_or(0) as f64);
        self.failures.set(s.consecutive_failures as f64);
    }
}
