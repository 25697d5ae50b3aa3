//! The query side of the decision log, whichever the store: a [`Reader`]
//! runs a [`Query`] and hands over rows as JSON values in column order.
//! Blocking: the Data API calls it from a blocking thread, the CLI from
//! its own.

pub mod clickhouse;
pub mod sqlite;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use crate::decision_log::clickhouse::{ClickHouseConfig, ReadPath};
use crate::decision_log::{DecisionLogConfig, Store};
use crate::query::{Kind, Query, QueryError};

/// Why a query did not answer.
#[derive(Debug, thiserror::Error)]
pub enum QueryFailure {
    #[error(transparent)]
    Bad(#[from] QueryError),
    #[error("the query ran past decision_log.query_timeout_ms")]
    Timeout,
    /// Whoever asked for the answer is gone (the [`Asker`] was dropped).
    #[error("the query's requester is gone")]
    Gone,
    #[error("store error: {0}")]
    Store(String),
}

/// When a query run stops short: at its deadline, `query_timeout_ms`
/// after it began, the time its rows wait for the client included; or as
/// soon as whoever asked for it is gone (its [`Asker`] dropped: the
/// request ended, timed out or lost its client). The store checks it
/// while it works (SQLite's progress handler, the wait for ClickHouse),
/// and so does whoever hands the rows on.
#[derive(Clone, Debug)]
pub struct Stop {
    deadline: Instant,
    gone: Arc<Gone>,
}

#[derive(Debug, Default)]
struct Gone {
    flag: AtomicBool,
    notify: tokio::sync::Notify,
}

/// Held by whoever waits for a query's answer: dropping it stops the run.
#[derive(Debug)]
pub struct Asker(Arc<Gone>);

impl Drop for Asker {
    fn drop(&mut self) {
        self.0.flag.store(true, Ordering::Release);
        self.0.notify.notify_waiters();
    }
}

impl Stop {
    /// A run that may take `timeout` from now, and the handle that ends it.
    pub fn new(timeout: Duration) -> (Stop, Asker) {
        let gone = Arc::new(Gone::default());
        let deadline = Instant::now()
            .checked_add(timeout)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400 * 365));
        (
            Stop {
                deadline,
                gone: gone.clone(),
            },
            Asker(gone),
        )
    }

    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Time left before the deadline.
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// Why the run must stop now, if it must: `Gone` first (nobody waits
    /// for the answer), then `Timeout`.
    pub fn check(&self) -> Result<(), QueryFailure> {
        if self.gone.flag.load(Ordering::Acquire) {
            Err(QueryFailure::Gone)
        } else if Instant::now() >= self.deadline {
            Err(QueryFailure::Timeout)
        } else {
            Ok(())
        }
    }

    /// Resolves when the run must stop, with the reason. Needs a Tokio
    /// runtime with timers.
    pub async fn stopped(&self) -> QueryFailure {
        let gone = async {
            let notified = self.gone.notify.notified();
            tokio::pin!(notified);
            // Registered before the flag is read: a drop in between is
            // not missed.
            notified.as_mut().enable();
            if !self.gone.flag.load(Ordering::Acquire) {
                notified.await;
            }
        };
        tokio::select! {
            () = gone => QueryFailure::Gone,
            () = tokio::time::sleep_until(self.deadline.into()) => {
                self.check().err().unwrap_or(QueryFailure::Timeout)
            }
        }
    }
}

/// A text column's value as JSON; the JSON-text fields (`extra`,
/// `rules`) as the JSON they hold.
pub fn text_value(name: &str, s: &str) -> Value {
    let json = crate::query::field(name).is_some_and(|f| f.kind == Kind::Json);
    match json.then(|| serde_json::from_str(s).ok()).flatten() {
        Some(v) => v,
        None => Value::String(s.to_owned()),
    }
}

/// Reads the store a config names.
#[derive(Clone)]
pub enum Reader {
    Sqlite {
        path: PathBuf,
        timeout: Duration,
    },
    ClickHouse {
        http: reqwest::Client,
        config: ClickHouseConfig,
        /// Whether the writers insert through the Buffer table (which
        /// reads then go through), found at the first query.
        path: ReadPath,
        timeout: Duration,
    },
}

impl Reader {
    pub fn new(c: &DecisionLogConfig) -> Self {
        let timeout = Duration::from_millis(c.query_timeout_ms);
        match c.store {
            Store::Sqlite => Reader::Sqlite {
                path: PathBuf::from(&c.path),
                timeout,
            },
            Store::Clickhouse => Reader::ClickHouse {
                http: crate::decision_log::clickhouse::client(),
                config: c.clickhouse.clone(),
                path: ReadPath::default(),
                timeout,
            },
        }
    }

    /// The limits of one run starting now (`query_timeout_ms`).
    pub fn stop(&self) -> (Stop, Asker) {
        let (Reader::Sqlite { timeout, .. } | Reader::ClickHouse { timeout, .. }) = self;
        Stop::new(*timeout)
    }

    /// Runs `q` until `stop`, handing every row (values in column order)
    /// to `each`, which may stop it by returning false. Blocking.
    pub fn run(
        &self,
        q: &Query,
        stop: &Stop,
        each: &mut dyn FnMut(&[String], Vec<Value>) -> bool,
    ) -> Result<(), QueryFailure> {
        match self {
            Reader::Sqlite { path, .. } => sqlite::run_until(path, q, stop, true, each),
            Reader::ClickHouse {
                http, config, path, ..
            } => clickhouse::run((http, config, path), q, stop, each),
        }
    }

    /// Runs a small, paged query (reports, an entry, the CLI) and
    /// collects its rows. Blocking.
    pub fn collect(&self, q: &Query, stop: &Stop) -> Result<Vec<Map<String, Value>>, QueryFailure> {
        let mut rows = Vec::new();
        self.run(q, stop, &mut |names, values| {
            rows.push(names.iter().cloned().zip(values).collect());
            true
        })?;
        Ok(rows)
    }
}
