//! Shared state for a fleet of fraudgates on one Redis (`[redis] url`;
//! off by default: one process needs nothing).
//!
//! - **Verdicts, two tiers.** A local-cache miss asks Redis; a Redis miss
//!   takes a short lock (`SET NX PX`) and makes the one RT call, the other
//!   replicas missing the same key poll Redis for its answer within their
//!   budget (and call RT themselves only if it does not come). A local hit
//!   never touches Redis.
//! - **Purges and admin list edits** are written to Redis and published;
//!   every replica applies them within a second. A replica that lost its
//!   subscription catches up on reconnect from a version counter. Runtime
//!   list entries live in Redis, so they survive restarts.
//! - **Redis down or slow never fails a request**: every call has its own
//!   timeout (`redis.timeout_ms`, inside the request's budget) and a
//!   breaker skips Redis for `redis.retry_s` after consecutive failures;
//!   each replica then works alone, as without Redis.
//!
//! Keys (names built from events are HMACs under `redis.hash_key`):
//! `<prefix>v:<gen>:<h(key parts)>` verdicts, `<prefix>l:...` locks,
//! `<prefix>ip:<h(ip)>` the verdict keys of an IP (for purges),
//! `<prefix>gen` the purge-all generation, `<prefix>list:<name>` runtime
//! entries, `<prefix>lists:ver`, channel `<prefix>events`.
//!
//! One file per shared concern: [`connection`] (calls under the timeout
//! and the breaker), [`verdicts`], [`lists`], [`sync`] (messages between
//! replicas), [`counters`] (caps, velocity, rate limits), [`feeds`]
//! (pull leases and shared feed state); the section in [`config`].

mod config;
mod connection;
mod counters;
mod feeds;
mod lists;
mod sync;
mod verdicts;

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use arc_swap::ArcSwapOption;
use metrics::{Counter, Gauge};
use redis::aio::ConnectionManager;

use crate::cache::KeyPart;
pub use crate::cache::Purge;
use crate::metrics as m;
use crate::rules::lists::{Entry, EntryKind};
pub use config::RedisConfig;
pub use connection::FleetError;
pub use verdicts::Shared;

struct FleetMetrics {
    up: Gauge,
    errors: Counter,
    skipped: Counter,
    shared_hits: Counter,
    shared_misses: Counter,
    waited_hits: Counter,
    wait_timeouts: Counter,
}

pub struct Fleet {
    cfg: RedisConfig,
    client: redis::Client,
    conn: ArcSwapOption<ConnectionManager>,
    key_parts: Box<[KeyPart]>,
    /// `hash_key`'s HMAC: shared key names never hold an IP or UA.
    hash: crate::hash::KeyedHash,
    origin: u64,
    /// The purge-all generation, mirrored from Redis.
    generation: AtomicU64,
    failures: AtomicU32,
    /// Unix ms until which Redis is skipped.
    skip_until: AtomicU64,
    /// The last list version this replica loaded.
    lists_version: AtomicU64,
    /// The last call answered (and Redis is not being skipped).
    healthy: AtomicBool,
    /// Redis's data epoch this replica synced with: a new one means Redis
    /// lost its data (restarted empty) and the replicas seed it again.
    epoch: std::sync::Mutex<Option<String>>,
    /// List edits that could not reach Redis, to send when it is back.
    pending_adds: std::sync::Mutex<Vec<(String, Vec<Entry>)>>,
    pending_removes: std::sync::Mutex<Vec<(String, EntryKind, String)>>,
    metrics: FleetMetrics,
}

/// Unix milliseconds (the clock shared verdicts are stamped with).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Fleet {
    /// `None` when `[redis] url` is empty. Call inside the app's metrics
    /// scope; [`Fleet::start`] connects.
    pub fn new(cfg: &RedisConfig, key_parts: &[KeyPart]) -> Option<Arc<Self>> {
        if !cfg.enabled() {
            return None;
        }
        let client = redis::Client::open(cfg.url.as_str()).ok()?;
        let up = metrics::gauge!(m::REDIS_UP);
        up.set(0.0);
        metrics::gauge!(m::REDIS_ENABLED).set(1.0);
        Some(Arc::new(Fleet {
            cfg: cfg.clone(),
            client,
            conn: ArcSwapOption::empty(),
            key_parts: key_parts.into(),
            hash: crate::hash::KeyedHash::new(cfg.hash_key.expose().as_bytes()),
            origin: rand::random(),
            generation: AtomicU64::new(0),
            failures: AtomicU32::new(0),
            skip_until: AtomicU64::new(0),
            lists_version: AtomicU64::new(0),
            healthy: AtomicBool::new(false),
            epoch: std::sync::Mutex::new(None),
            pending_adds: std::sync::Mutex::new(Vec::new()),
            pending_removes: std::sync::Mutex::new(Vec::new()),
            metrics: FleetMetrics {
                up,
                errors: metrics::counter!(m::REDIS_ERRORS),
                skipped: metrics::counter!(m::REDIS_SKIPPED),
                shared_hits: metrics::counter!(m::REDIS_VERDICTS, "result" => "hit"),
                shared_misses: metrics::counter!(m::REDIS_VERDICTS, "result" => "miss"),
                waited_hits: metrics::counter!(m::REDIS_VERDICTS, "result" => "waited"),
                wait_timeouts: metrics::counter!(m::REDIS_VERDICTS, "result" => "wait_timeout"),
            },
        }))
    }

    /// Registers this module's series at 0 (Redis off included).
    pub fn register_metrics() {
        metrics::gauge!(m::REDIS_UP).set(0.0);
        metrics::gauge!(m::REDIS_ENABLED).set(0.0);
        metrics::counter!(m::REDIS_ERRORS).increment(0);
        metrics::counter!(m::REDIS_SKIPPED).increment(0);
        for r in ["hit", "miss", "waited", "wait_timeout"] {
            metrics::counter!(m::REDIS_VERDICTS, "result" => r).increment(0);
        }
    }

    fn key(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.cfg.key_prefix)
    }

    /// `<prefix><kind>:<keyed hash of the IP>`.
    fn ip_key(&self, kind: &str, ip: IpAddr) -> String {
        let ip = ip.to_canonical().to_string();
        self.key(&format!("{kind}:{}", self.hash.hex_of(&ip, 16)))
    }

    /// The keyed hash for counter names (caps, velocity).
    pub fn hasher(&self) -> &crate::hash::KeyedHash {
        &self.hash
    }

    fn channel(&self) -> String {
        self.key("events")
    }

    pub fn share_velocity(&self) -> bool {
        self.cfg.share_velocity
    }

    pub fn share_rate_limits(&self) -> bool {
        self.cfg.share_rate_limits
    }

    /// For `/readyz`: `connecting` (never connected yet), `up`, or
    /// `down` (calls failing).
    pub fn status(&self) -> &'static str {
        if self.conn.load().is_none() {
            "connecting"
        } else if self.healthy.load(Ordering::Relaxed) {
            "up"
        } else {
            "down"
        }
    }
}
