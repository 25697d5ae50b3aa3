//! `[upstream]`: the FraudScore RT endpoint, its key and the limits of a
//! call.

use std::time::Duration;

use serde::Deserialize;

use super::validate_url;
use crate::config_error::ConfigError;
use crate::secret::Secret;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// FraudScore RT endpoint.
    pub url: String,
    /// FraudScore RT key; empty disables the upstream.
    pub key: Secret,
    /// Deadline of one RT call.
    pub timeout_ms: u64,
    /// TCP connect timeout.
    pub connect_timeout_ms: u64,
    /// Idle keep-alive connections kept per host.
    pub pool_max_idle: usize,
    /// Idle connection lifetime.
    pub pool_idle_timeout_s: u64,
    /// Allow `http://` to a non-loopback host.
    pub allow_insecure_http: bool,
    /// Retry a connection error once, inside the timeout.
    pub retry_connect_errors: bool,
    /// Most RT calls in flight at once.
    pub max_in_flight: usize,
    pub breaker: crate::breaker::BreakerConfig,
}

impl UpstreamConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let u = self;
        if u.timeout_ms == 0 {
            return Err(ConfigError::invalid("upstream.timeout_ms", "must be > 0"));
        }
        if u.max_in_flight == 0 {
            return Err(ConfigError::invalid(
                "upstream.max_in_flight",
                "must be > 0",
            ));
        }
        if u.connect_timeout_ms == 0 {
            return Err(ConfigError::invalid(
                "upstream.connect_timeout_ms",
                "must be > 0",
            ));
        }
        validate_url(&u.url, u.allow_insecure_http)
            .map_err(|m| ConfigError::invalid("upstream.url", m))?;
        let b = &u.breaker;
        if b.consecutive_failures == 0
            || b.half_open_probes == 0
            || b.window_s == 0
            || !(0.0..=1.0).contains(&b.failure_ratio)
        {
            return Err(ConfigError::invalid(
                "upstream.breaker",
                "consecutive_failures, half_open_probes, window_s > 0 and failure_ratio in 0..=1",
            ));
        }
        Ok(())
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }
    pub fn pool_idle_timeout(&self) -> Duration {
        Duration::from_secs(self.pool_idle_timeout_s)
    }
    /// The upstream is used only when a key is configured.
    pub fn enabled(&self) -> bool {
        !self.key.expose().is_empty()
    }
}
