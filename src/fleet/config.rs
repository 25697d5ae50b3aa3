//! `[redis]`: the section and its checks.

use serde::Deserialize;

use crate::secret::Secret;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://host:6379/0`; empty: no Redis (each process alone).
    pub url: String,
    /// Every key and the channel start with this.
    pub key_prefix: String,
    /// One Redis call's limit.
    pub timeout_ms: u64,
    /// Consecutive failures before Redis is skipped for `retry_s`.
    pub failures_to_skip: u32,
    pub retry_s: u64,
    /// How long the replica making an RT call holds the key's lock.
    pub lock_ms: u64,
    /// How often a replica waiting on another's call looks for its answer.
    pub poll_ms: u64,
    /// Count IP velocity fleet-wide too (one Redis round trip per event,
    /// cache hits included).
    #[serde(default)]
    pub share_velocity: bool,
    /// Count client rate limits fleet-wide (one round trip per request of
    /// a client with a limit).
    #[serde(default)]
    pub share_rate_limits: bool,
    /// The secret the names of shared keys carrying an IP or a UA are
    /// hashed with (HMAC-SHA256), the same on every replica. Required
    /// with `url`: an unkeyed hash of an IPv4 address is reversed in
    /// seconds by anyone who can list the keys.
    #[serde(default)]
    pub hash_key: Secret,
}

impl RedisConfig {
    pub fn enabled(&self) -> bool {
        !self.url.trim().is_empty()
    }

    pub fn validate(&self) -> Result<(), (String, String)> {
        if !self.enabled() {
            return Ok(());
        }
        let bad = |k: &str, m: &str| Err((format!("redis.{k}"), m.to_owned()));
        if let Err(e) = redis::Client::open(self.url.as_str()) {
            // The URL may hold a password: the message names the problem only.
            let _ = e;
            return bad(
                "url",
                "not a Redis URL (redis://[user:password@]host:port[/db])",
            );
        }
        if self.hash_key.expose().is_empty() {
            return bad(
                "hash_key",
                "required with redis.url: a shared secret of 16+ characters, the same on every replica (e.g. openssl rand -hex 32); the names of keys holding IPs and UAs are hashed with it",
            );
        }
        if let Some(why) = self.hash_key.weakness() {
            return bad("hash_key", why);
        }
        if self.timeout_ms == 0 || self.lock_ms == 0 || self.poll_ms == 0 {
            return bad("timeout_ms", "timeout_ms, lock_ms and poll_ms must be > 0");
        }
        if self.failures_to_skip == 0 || self.retry_s == 0 {
            return bad(
                "failures_to_skip",
                "failures_to_skip and retry_s must be > 0",
            );
        }
        Ok(())
    }
}
