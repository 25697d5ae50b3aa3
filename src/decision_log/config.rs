//! `[decision_log]`: which store, how records queue, how IPs are kept,
//! and the read side's limits; checked once at startup.

use serde::Deserialize;

use super::ClickHouseConfig;
use crate::config_error::ConfigError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Store {
    /// Embedded: one file, no server.
    Sqlite,
    /// A ClickHouse server, over its HTTP interface.
    Clickhouse,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFull {
    /// Drop the record and count it: the request never waits.
    Drop,
    /// The request waits for room in the queue.
    Block,
}

/// How client IPs are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IpMode {
    Full,
    /// IPv4 /24, IPv6 /48.
    Truncated,
    /// HMAC-SHA256 with a per-store secret salt (stable across restarts).
    Hashed,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionLogConfig {
    pub enabled: bool,
    pub store: Store,
    /// Directory of the SQLite store.
    pub path: String,
    /// Records queued at most (split evenly across the queue's per-thread
    /// buffers).
    pub queue: usize,
    pub on_full: OnFull,
    /// With `on_full = "block"`: the longest a request waits for room
    /// (the store down, the queue full); then its record is dropped and
    /// counted.
    pub block_timeout_ms: u64,
    /// Most records in one write transaction.
    pub batch_max: usize,
    /// A record waits at most this long to be written (a batch collects
    /// for this long unless it fills first): fewer, larger transactions.
    pub flush_ms: u64,
    pub retention_days: u32,
    pub ip: IpMode,
    /// The longest a Data API or report answer may take, sending
    /// included: a client that has not taken it by then is cut off.
    pub query_timeout_ms: u64,
    /// Queries run at once (Data API, reports); the rest wait briefly,
    /// then get 503 `busy`. 0: four per core.
    pub max_queries: usize,
    /// The secret for `ip = "hashed"`. Empty: a random one kept in
    /// `path/ip-salt`. Replicas writing one ClickHouse table share this
    /// so an IP hashes alike on all of them.
    pub ip_salt: crate::secret::Secret,
    pub clickhouse: ClickHouseConfig,
}

impl DecisionLogConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let dl = self;
        if dl.enabled {
            for (key, bad, why) in [
                (
                    "decision_log.path",
                    dl.path.trim().is_empty(),
                    "must be set",
                ),
                ("decision_log.queue", dl.queue == 0, "must be above 0"),
                (
                    "decision_log.block_timeout_ms",
                    dl.block_timeout_ms == 0,
                    "must be above 0",
                ),
                (
                    "decision_log.batch_max",
                    dl.batch_max == 0,
                    "must be above 0",
                ),
            ] {
                if bad {
                    return Err(ConfigError::invalid(key, why));
                }
            }
        }
        if dl.flush_ms > 1000 {
            return Err(ConfigError::invalid(
                "decision_log.flush_ms",
                "at most 1000: decisions are queryable within a second",
            ));
        }
        if dl.store == Store::Clickhouse {
            dl.clickhouse
                .validate()
                .map_err(|(key, m)| ConfigError::invalid(key, m))?;
        }
        if dl.retention_days == 0 || dl.query_timeout_ms == 0 {
            return Err(ConfigError::invalid(
                "decision_log",
                "retention_days and query_timeout_ms must be > 0",
            ));
        }
        // An HMAC secret like the keys: the one strength rule, when set.
        if !dl.ip_salt.expose().is_empty()
            && let Some(why) = dl.ip_salt.weakness()
        {
            return Err(ConfigError::invalid("decision_log.ip_salt", why));
        }
        Ok(())
    }

    /// `max_queries`, with 0 resolved to four per core.
    pub fn max_queries(&self) -> usize {
        match self.max_queries {
            0 => std::thread::available_parallelism().map_or(4, |n| n.get() * 4),
            n => n,
        }
    }
}
