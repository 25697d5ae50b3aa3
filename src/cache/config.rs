//! `[cache]`: the verdict cache's section.

use std::time::Duration;

use serde::Deserialize;

use super::KeyPart;
use crate::config_error::ConfigError;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// TTL of clean and flagged verdicts unless overridden.
    pub ttl_s: u64,
    pub ttl_clean_s: Option<u64>,
    pub ttl_flagged_s: Option<u64>,
    /// TTL of a remembered upstream failure.
    pub ttl_error_s: u64,
    /// Serve-stale window past the TTL (refresh in the background).
    pub stale_s: u64,
    /// Serve-stale window past the TTL when the refresh failed.
    pub stale_if_error_s: u64,
    /// Capacity in entries.
    pub max_entries: u64,
    /// Event fields forming the key.
    pub key: Vec<KeyPart>,
}

impl CacheConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_entries == 0 {
            return Err(ConfigError::invalid("cache.max_entries", "must be > 0"));
        }
        if self.key.is_empty() {
            return Err(ConfigError::invalid("cache.key", "needs at least one part"));
        }
        Ok(())
    }

    pub fn ttl_clean(&self) -> Duration {
        Duration::from_secs(self.ttl_clean_s.unwrap_or(self.ttl_s))
    }
    pub fn ttl_flagged(&self) -> Duration {
        Duration::from_secs(self.ttl_flagged_s.unwrap_or(self.ttl_s))
    }
    pub fn ttl_error(&self) -> Duration {
        Duration::from_secs(self.ttl_error_s)
    }
    pub fn stale(&self) -> Duration {
        Duration::from_secs(self.stale_s)
    }
    pub fn stale_if_error(&self) -> Duration {
        Duration::from_secs(self.stale_if_error_s)
    }
}
