//! The query side of the decision log, whichever the store: a [`Reader`]
//! runs a [`Query`] and hands over rows as JSON values in column order.
//! Blocking: the Data API calls it from a blocking thread, the CLI from
//! its own.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Map, Value};

use super::clickhouse::ClickHouseConfig;
use super::{DecisionLogConfig, Store};
use crate::query::{Kind, Query, QueryError};

/// Why a query did not answer.
#[derive(Debug, thiserror::Error)]
pub enum QueryFailure {
    #[error(transparent)]
    Bad(#[from] QueryError),
    #[error("the query ran past decision_log.query_timeout_ms")]
    Timeout,
    #[error("store error: {0}")]
    Store(String),
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
                http: super::clickhouse::client(),
                config: c.clickhouse.clone(),
                timeout,
            },
        }
    }

    /// Runs `q`, handing every row (values in column order) to `each`,
    /// which may stop it by returning false. Blocking.
    pub fn run(
        &self,
        q: &Query,
        each: &mut dyn FnMut(&[String], Vec<Value>) -> bool,
    ) -> Result<(), QueryFailure> {
        match self {
            Reader::Sqlite { path, timeout } => super::sqlite::run(path, q, *timeout, each),
            Reader::ClickHouse {
                http,
                config,
                timeout,
            } => super::clickhouse::run(http, config, q, *timeout, each),
        }
    }

    /// Runs a small, paged query (reports, an entry, the CLI) and
    /// collects its rows. Blocking.
    pub fn collect(&self, q: &Query) -> Result<Vec<Map<String, Value>>, QueryFailure> {
        let mut rows = Vec::new();
        self.run(q, &mut |names, values| {
            rows.push(names.iter().cloned().zip(values).collect());
            true
        })?;
        Ok(rows)
    }
}
