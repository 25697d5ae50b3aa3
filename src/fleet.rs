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
//! Keys: `<prefix>v:<gen>:<sha256(key parts)>` verdicts, `<prefix>l:...`
//! locks, `<prefix>ip:<ip>` the verdict keys of an IP (for purges),
//! `<prefix>gen` the purge-all generation, `<prefix>list:<name>` runtime
//! entries, `<prefix>lists:ver`, channel `<prefix>events`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use metrics::{Counter, Gauge};
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};

pub use crate::cache::Purge;
use crate::cache::{KeyPart, VerdictCache};
use crate::config::Secret;
use crate::event::Event;
use crate::metrics as m;
use crate::rules::LocalRules;
use crate::rules::lists::{Entry, EntryKind};
use crate::verdict::Tags;

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
        if self.hash_key.expose().len() < 16 {
            return bad(
                "hash_key",
                "required with redis.url: a shared secret of 16+ characters, the same on every replica (e.g. openssl rand -hex 32); the names of keys holding IPs and UAs are hashed with it",
            );
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

/// What the shared tier said about a key.
pub enum Shared {
    /// Another replica's verdict, this old.
    Hit(Tags, Duration),
    /// Make the RT call and share it with [`Fleet::put`]: this replica
    /// holds the key's lock, or another replica's call did not answer in
    /// time, or Redis is away.
    Call,
}

#[derive(Serialize, Deserialize)]
struct StoredVerdict {
    /// The RT body: tags one a line.
    t: String,
    /// Fetched at, Unix milliseconds.
    at: u64,
}

/// A message between replicas.
#[derive(Serialize, Deserialize, Debug)]
struct Message {
    /// The sender; a replica ignores its own.
    from: u64,
    op: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ua: Option<String>,
}

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

/// The shared verdict, or else the key's lock: a verdict (bulk string),
/// 1 (this caller holds the lock) or 0 (another does).
const GET_OR_LOCK: &str = "local v = redis.call('GET', KEYS[1]) \
    if v then return v end \
    if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end \
    return 0";

/// Stores a verdict and indexes it under its IP (a sorted set by expiry,
/// pruned as it goes, living as long as its longest member), unless the IP
/// was purged after the call began. Always releases the lock.
const PUT: &str = "redis.call('DEL', KEYS[2]) \
    local purged = redis.call('GET', KEYS[4]) \
    if purged and tonumber(purged) >= tonumber(ARGV[3]) then return 0 end \
    redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) \
    local now = tonumber(ARGV[4]) \
    redis.call('ZADD', KEYS[3], now + tonumber(ARGV[2]), KEYS[1]) \
    redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now) \
    if redis.call('PTTL', KEYS[3]) < tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[3], ARGV[2]) end \
    return 1";

/// Deletes an IP's shared verdicts and marks the purge, so a call begun
/// before it cannot share its (older) verdict afterwards.
const PURGE_IP: &str = "for _, k in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do redis.call('DEL', k) end \
    redis.call('DEL', KEYS[1]) \
    redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])";

/// How long a purge marker stands: longer than any RT call.
const PURGE_MARKER_MS: u64 = 60_000;

/// Unix milliseconds (the clock shared verdicts are stamped with).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("redis is being skipped after failures")]
    Skipped,
    #[error("redis: not connected")]
    NotConnected,
    #[error("redis: timed out")]
    Timeout,
    #[error("redis: {0}")]
    Redis(String),
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

    /// A stable key for an event: the same on every replica (the local
    /// cache's keys are keyed per process).
    pub fn verdict_key(&self, e: &Event) -> String {
        let mut h = self.hash.start();
        for part in &*self.key_parts {
            match part {
                KeyPart::Ip => h.part(&e.ip.to_canonical().to_string()),
                KeyPart::Ua => h.part(&e.ua),
                KeyPart::OfferId => h.part(&e.offer_id),
                KeyPart::AffiliateId => h.part(&e.affiliate_id),
                KeyPart::EventType => h.part(e.event_type.as_str()),
            };
        }
        self.key(&format!(
            "v:{}:{}",
            self.generation.load(Ordering::Relaxed),
            h.hex(16)
        ))
    }

    /// Runs one Redis call under the timeout and the breaker.
    async fn call<T, F, Fut>(&self, f: F) -> Result<T, FleetError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        self.call_within(Duration::from_millis(self.cfg.timeout_ms), f)
            .await
    }

    /// Like `call`, with its own limit (feed state is large, off the
    /// request path).
    async fn call_within<T, F, Fut>(&self, limit: Duration, f: F) -> Result<T, FleetError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        if self.skip_until.load(Ordering::Relaxed) > now_ms() {
            self.metrics.skipped.increment(1);
            return Err(FleetError::Skipped);
        }
        let Some(conn) = self.conn.load_full() else {
            return Err(FleetError::NotConnected);
        };
        let r = tokio::time::timeout(limit, f(ConnectionManager::clone(&conn))).await;
        let r = match r {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(FleetError::Redis(e.to_string())),
            Err(_) => Err(FleetError::Timeout),
        };
        match &r {
            Ok(_) => {
                self.failures.store(0, Ordering::Relaxed);
                if !self.healthy.swap(true, Ordering::Relaxed) {
                    self.metrics.up.set(1.0);
                    tracing::info!("Redis answers: sharing with the fleet");
                }
            }
            Err(e) => {
                self.metrics.errors.increment(1);
                let n = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
                if n >= self.cfg.failures_to_skip {
                    self.skip_until
                        .store(now_ms() + self.cfg.retry_s * 1000, Ordering::Relaxed);
                    self.failures.store(0, Ordering::Relaxed);
                    self.metrics.up.set(0.0);
                    if self.healthy.swap(false, Ordering::Relaxed) {
                        tracing::warn!(error = %e, retry_s = self.cfg.retry_s, "Redis failing: working alone (local cache, lists and counters) until it answers again");
                    }
                }
            }
        }
        r
    }

    /// The shared tier for a local miss. At most one round trip when the
    /// verdict is there; otherwise the lock decides who calls RT.
    pub async fn lookup(&self, key: &str, deadline: Instant) -> Shared {
        let lock = self.key(&format!("l:{key}"));
        let lock_ms = self.cfg.lock_ms;
        let k = key.to_owned();
        let origin = self.origin;
        // The verdict, or else the lock, in one round trip (a script: no
        // lock is taken when the verdict is there).
        let r = self
            .call(|mut c| async move {
                redis::cmd("EVAL")
                    .arg(GET_OR_LOCK)
                    .arg(2)
                    .arg(&k)
                    .arg(&lock)
                    .arg(origin)
                    .arg(lock_ms)
                    .query_async::<redis::Value>(&mut c)
                    .await
            })
            .await;
        let (found, leader) = match r {
            Ok(redis::Value::BulkString(b)) => (String::from_utf8(b).ok(), false),
            Ok(redis::Value::Int(n)) => (None, n == 1),
            Ok(_) | Err(_) => return Shared::Call,
        };
        if let Some(hit) = found.and_then(|v| parse(&v)) {
            self.metrics.shared_hits.increment(1);
            return Shared::Hit(hit.0, hit.1);
        }
        self.metrics.shared_misses.increment(1);
        if leader {
            return Shared::Call;
        }
        // Another replica is asking RT: wait for its answer, within this
        // request's budget and the lock's life.
        let until = deadline.min(Instant::now() + Duration::from_millis(self.cfg.lock_ms));
        while Instant::now() + Duration::from_millis(self.cfg.poll_ms) < until {
            tokio::time::sleep(Duration::from_millis(self.cfg.poll_ms)).await;
            let k = key.to_owned();
            match self
                .call(|mut c| async move { c.get::<_, Option<String>>(&k).await })
                .await
            {
                Ok(Some(v)) => {
                    if let Some((tags, age)) = parse(&v) {
                        self.metrics.waited_hits.increment(1);
                        return Shared::Hit(tags, age);
                    }
                }
                Ok(None) => {}
                Err(_) => return Shared::Call,
            }
        }
        self.metrics.wait_timeouts.increment(1);
        Shared::Call
    }

    /// Shares a verdict for `ttl` and releases the lock, unless a purge
    /// of its IP came after its RT call began at `started_ms` (then the
    /// pre-purge verdict must not be served to anyone).
    pub async fn put(&self, key: &str, ip: IpAddr, tags: &Tags, ttl: Duration, started_ms: u64) {
        let mut t = String::new();
        tags.write_rt(&mut t);
        let now = now_ms();
        let Ok(value) = serde_json::to_string(&StoredVerdict { t, at: now }) else {
            return;
        };
        let lock = self.key(&format!("l:{key}"));
        let ip = ip.to_canonical();
        let ip_set = self.ip_key("ip", ip);
        let marker = self.ip_key("purged", ip);
        let ttl_ms = ttl.as_millis().max(1) as u64;
        let k = key.to_owned();
        let _ = self
            .call(|mut c| async move {
                redis::cmd("EVAL")
                    .arg(PUT)
                    .arg(4)
                    .arg(&k)
                    .arg(&lock)
                    .arg(&ip_set)
                    .arg(&marker)
                    .arg(&value)
                    .arg(ttl_ms)
                    .arg(started_ms)
                    .arg(now)
                    .query_async::<i64>(&mut c)
                    .await
            })
            .await;
    }

    /// Releases a lock without a verdict (the call failed): the waiters
    /// stop waiting and call themselves.
    pub async fn unlock(&self, key: &str) {
        let lock = self.key(&format!("l:{key}"));
        let _ = self
            .call(|mut c| async move { c.del::<_, ()>(&lock).await })
            .await;
    }

    /// Purges the shared verdicts and tells every replica. Returns false
    /// when Redis could not be reached (the local purge still happened).
    pub async fn purge(&self, p: &Purge) -> bool {
        let ok = match p {
            Purge::All => {
                let gen_key = self.key("gen");
                match self
                    .call(|mut c| async move { c.incr::<_, _, u64>(&gen_key, 1).await })
                    .await
                {
                    Ok(g) => {
                        self.generation.store(g, Ordering::Relaxed);
                        true
                    }
                    Err(_) => false,
                }
            }
            // Every shared verdict of the IP (all UAs: an IP+UA purge
            // drops a little more than it must in Redis, never less).
            Purge::Ip(ip) | Purge::IpUa(ip, _) => {
                let ip = ip.to_canonical();
                let set = self.ip_key("ip", ip);
                let marker = self.ip_key("purged", ip);
                let now = now_ms();
                self.call(|mut c| async move {
                    redis::cmd("EVAL")
                        .arg(PURGE_IP)
                        .arg(2)
                        .arg(&set)
                        .arg(&marker)
                        .arg(now)
                        .arg(PURGE_MARKER_MS)
                        .query_async::<()>(&mut c)
                        .await
                })
                .await
                .is_ok()
            }
        };
        let msg = match p {
            Purge::All => self.message("purge_all", None, None),
            Purge::Ip(ip) => self.message("purge_ip", Some(ip.to_string()), None),
            Purge::IpUa(ip, ua) => {
                self.message("purge_ip_ua", Some(ip.to_string()), Some(ua.clone()))
            }
        };
        ok && self.publish(msg).await
    }

    fn message(&self, op: &str, ip: Option<String>, ua: Option<String>) -> Message {
        Message {
            from: self.origin,
            op: op.to_owned(),
            ip,
            ua,
        }
    }

    async fn publish(&self, msg: Message) -> bool {
        let Ok(text) = serde_json::to_string(&msg) else {
            return false;
        };
        let channel = self.channel();
        self.call(|mut c| async move { c.publish::<_, _, ()>(&channel, &text).await })
            .await
            .is_ok()
    }

    /// Adds runtime entries of a list in Redis (entry by entry: an edit
    /// another replica made meanwhile stays), bumps the version and tells
    /// every replica.
    pub async fn list_add(&self, list: &str, entries: &[Entry]) -> bool {
        let fields: Vec<(String, String)> = entries
            .iter()
            .filter_map(|e| Some((field(e.kind, &e.value), serde_json::to_string(e).ok()?)))
            .collect();
        let ok = self
            .list_edit(list, move |pipe, key| {
                if !fields.is_empty() {
                    pipe.hset_multiple(key, &fields).ignore();
                }
            })
            .await;
        if !ok {
            self.pending_adds
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((list.to_owned(), entries.to_vec()));
        }
        ok
    }

    /// Removes one runtime entry of a list in Redis.
    pub async fn list_remove(&self, list: &str, kind: EntryKind, value: &str) -> bool {
        let f = field(kind, value);
        let ok = self
            .list_edit(list, move |pipe, key| {
                pipe.hdel(key, &f).ignore();
            })
            .await;
        if !ok {
            self.pending_removes
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((list.to_owned(), kind, value.to_owned()));
        }
        ok
    }

    async fn list_edit(
        &self,
        list: &str,
        edit: impl FnOnce(&mut redis::Pipeline, &str) + Send,
    ) -> bool {
        let key = self.key(&format!("list:{list}"));
        let ver = self.key("lists:ver");
        let names = self.key("lists");
        let list_name = list.to_owned();
        let r = self
            .call(|mut c| async move {
                let mut pipe = redis::pipe();
                pipe.atomic();
                edit(&mut pipe, &key);
                pipe.sadd(&names, &list_name).ignore();
                pipe.incr(&ver, 1);
                pipe.query_async::<(u64,)>(&mut c).await
            })
            .await;
        match r {
            Ok(_) => self.publish(self.message("lists", None, None)).await,
            Err(e) => {
                tracing::warn!(error = %e, list, "list change not shared (Redis unavailable): it holds on this replica only until it is made again");
                false
            }
        }
    }

    /// Every list's runtime entries as Redis has them.
    async fn load_lists(&self) -> Result<(u64, HashMap<String, Vec<Entry>>), FleetError> {
        let names_key = self.key("lists");
        let ver = self.key("lists:ver");
        let prefix = self.key("list:");
        self.call(|mut c| async move {
            let names: Vec<String> = c.smembers(&names_key).await?;
            let v: Option<u64> = c.get(&ver).await?;
            let mut out = HashMap::new();
            for n in names {
                let map: HashMap<String, String> = c.hgetall(format!("{prefix}{n}")).await?;
                let entries = map
                    .values()
                    .filter_map(|v| serde_json::from_str::<Entry>(v).ok())
                    .filter_map(|s| {
                        Entry::new(s.kind, &s.value, s.expires, s.reason.as_deref()).ok()
                    })
                    .collect();
                out.insert(n, entries);
            }
            Ok((v.unwrap_or(0), out))
        })
        .await
    }

    /// Applies Redis's lists to the rules when their version moved.
    async fn sync_lists(&self, rules: &LocalRules, force: bool) {
        let force = self.reseed(rules).await || force;
        match self.load_lists().await {
            Ok((v, lists)) => {
                if !force && v == self.lists_version.load(Ordering::Relaxed) {
                    return;
                }
                for (name, entries) in lists {
                    if let Err(e) = rules.replace_runtime_entries(&name, entries) {
                        tracing::debug!(list = %name, error = %e, "shared list not configured here; skipped");
                    }
                }
                self.lists_version.store(v, Ordering::Relaxed);
            }
            Err(e) => tracing::debug!(error = %e, "cannot load shared lists"),
        }
    }

    /// Before taking Redis's lists: sends the edits made while it was
    /// away, and when Redis lost its data (a new epoch: restarted empty)
    /// seeds it with this replica's entries, so no replica's entries are
    /// replaced by an empty set. True when it wrote anything.
    async fn reseed(&self, rules: &LocalRules) -> bool {
        let key = self.key("epoch");
        let fresh = format!("{:016x}", rand::random::<u64>());
        let Ok(epoch) = self
            .call(|mut c| async move {
                let (e,): (String,) = redis::pipe()
                    .cmd("SET")
                    .arg(&key)
                    .arg(&fresh)
                    .arg("NX")
                    .ignore()
                    .get(&key)
                    .query_async(&mut c)
                    .await?;
                Ok(e)
            })
            .await
        else {
            return false;
        };
        let lost = {
            let mut mine = self.epoch.lock().unwrap_or_else(|p| p.into_inner());
            let lost = mine.as_ref().is_some_and(|m| *m != epoch);
            *mine = Some(epoch);
            lost
        };
        let adds =
            std::mem::take(&mut *self.pending_adds.lock().unwrap_or_else(|p| p.into_inner()));
        let removes = std::mem::take(
            &mut *self
                .pending_removes
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        let mut wrote = false;
        if lost {
            tracing::warn!(
                "Redis lost its data (restarted empty): seeding it with this replica's list entries"
            );
            for l in rules.lists() {
                if l.feed_entries.is_some() || l.runtime_entries == 0 {
                    continue;
                }
                if let Ok(entries) = rules.runtime_entries(&l.name) {
                    wrote |= self.list_add(&l.name, &entries).await;
                }
            }
        } else {
            for (list, entries) in adds {
                wrote |= self.list_add(&list, &entries).await;
            }
        }
        for (list, kind, value) in removes {
            wrote |= self.list_remove(&list, kind, &value).await;
        }
        wrote
    }

    async fn sync_generation(&self) {
        let k = self.key("gen");
        if let Ok(g) = self
            .call(|mut c| async move { c.get::<_, Option<u64>>(&k).await })
            .await
        {
            self.generation.store(g.unwrap_or(0), Ordering::Relaxed);
        }
    }

    /// One connection attempt (`start` retries; the CLI tries once).
    pub async fn connect(&self) -> Result<(), FleetError> {
        let cfg = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_millis(self.cfg.timeout_ms.max(500))))
            .set_response_timeout(Some(Duration::from_millis(self.cfg.timeout_ms.max(100))))
            .set_number_of_retries(1);
        let c = ConnectionManager::new_with_config(self.client.clone(), cfg)
            .await
            .map_err(|e| FleetError::Redis(e.to_string()))?;
        self.conn.store(Some(Arc::new(c)));
        self.healthy.store(true, Ordering::Relaxed);
        self.metrics.up.set(1.0);
        Ok(())
    }

    /// Connects (retrying every second while Redis is away), loads the
    /// shared lists and generation, and follows the channel: purges other
    /// replicas made are applied to `cache`.
    pub fn start(self: &Arc<Self>, rules: Arc<LocalRules>, cache: VerdictCache) {
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                if this.conn.load().is_none() {
                    let cfg = redis::aio::ConnectionManagerConfig::new()
                        .set_connection_timeout(Some(Duration::from_millis(
                            this.cfg.timeout_ms.max(500),
                        )))
                        .set_response_timeout(Some(Duration::from_millis(
                            this.cfg.timeout_ms.max(100),
                        )))
                        .set_number_of_retries(1);
                    match ConnectionManager::new_with_config(this.client.clone(), cfg).await {
                        Ok(c) => {
                            this.conn.store(Some(Arc::new(c)));
                            this.metrics.up.set(1.0);
                            tracing::info!(
                                "Redis connected: verdicts, purges, lists shared with the fleet"
                            );
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "Redis not reachable; working alone and retrying");
                        }
                    }
                }
                if this.conn.load().is_some() {
                    this.sync_generation().await;
                    this.sync_lists(&rules, false).await;
                    // Follow the channel until the subscription drops.
                    this.follow(&rules, &cache).await;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                // The next pass catches up on what the channel missed.
            }
        });
    }

    async fn follow(&self, rules: &Arc<LocalRules>, cache: &VerdictCache) {
        use futures_util::StreamExt;
        let Ok(Ok(mut pubsub)) = tokio::time::timeout(
            Duration::from_millis(self.cfg.timeout_ms.max(500)),
            self.client.get_async_pubsub(),
        )
        .await
        else {
            return;
        };
        if pubsub.subscribe(self.channel()).await.is_err() {
            return;
        }
        // Anything published before the subscription: catch up now.
        self.sync_generation().await;
        self.sync_lists(rules, false).await;
        let mut stream = pubsub.on_message();
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                msg = stream.next() => {
                    let Some(msg) = msg else { return };
                    let Ok(text) = msg.get_payload::<String>() else { continue };
                    let Ok(m) = serde_json::from_str::<Message>(&text) else { continue };
                    if m.from == self.origin {
                        continue;
                    }
                    self.on_message(m, rules, cache).await;
                }
                _ = tick.tick() => {
                    // A missed message (or a restart of Redis) is caught
                    // up from the versions.
                    self.sync_generation().await;
                    self.sync_lists(rules, false).await;
                }
            }
        }
    }

    async fn on_message(&self, m: Message, rules: &LocalRules, cache: &VerdictCache) {
        let ip = m.ip.as_deref().and_then(|i| i.parse::<IpAddr>().ok());
        match (m.op.as_str(), ip) {
            ("purge_all", _) => {
                self.sync_generation().await;
                cache.purge(&Purge::All).await;
            }
            ("purge_ip", Some(ip)) => cache.purge(&Purge::Ip(ip)).await,
            ("purge_ip_ua", Some(ip)) => {
                cache
                    .purge(&Purge::IpUa(ip, m.ua.unwrap_or_default()))
                    .await
            }
            ("lists", _) => self.sync_lists(rules, true).await,
            _ => {}
        }
    }

    /// Counts one event on fleet-wide counters (INCR, expiring with their
    /// window), one round trip for all; `None` when Redis is unavailable
    /// (the caller counts locally).
    pub async fn count(&self, keys: &[(usize, String, u64)]) -> Option<Vec<(usize, u64)>> {
        const INCR: &str = "local n = redis.call('INCR', KEYS[1]) \
            if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end return n";
        let full: Vec<(String, u64)> = keys
            .iter()
            .map(|(_, k, ms)| (self.key(k), ms + 1000))
            .collect();
        let counts: Vec<u64> = self
            .call(|mut c| async move {
                let mut pipe = redis::pipe();
                for (k, ttl) in &full {
                    pipe.cmd("EVAL").arg(INCR).arg(1).arg(k).arg(*ttl);
                }
                pipe.query_async(&mut c).await
            })
            .await
            .ok()?;
        Some(keys.iter().map(|(i, _, _)| *i).zip(counts).collect())
    }

    /// Takes one request from a client's fleet-wide rate limit: GCRA,
    /// the same rule as the local token bucket (`rps` a second, `burst`
    /// at once), kept as one key per client holding its theoretical
    /// arrival time on Redis's clock. Unlike counts per fixed window it
    /// never lets twice the limit through across a window's edge.
    /// `Ok(())`, or the seconds until a request would pass; `None` when
    /// Redis is unavailable (the caller limits locally).
    pub async fn rate_take(&self, client: &str, rps: u32, burst: u32) -> Option<Result<(), u64>> {
        const GCRA: &str = "if redis.replicate_commands then redis.replicate_commands() end \
            local t = redis.call('TIME') \
            local now = tonumber(t[1]) * 1000000 + tonumber(t[2]) \
            local interval = tonumber(ARGV[1]) \
            local tolerance = tonumber(ARGV[2]) \
            local tat = tonumber(redis.call('GET', KEYS[1]) or '0') \
            if tat < now then tat = now end \
            local wait = tat - tolerance - now \
            if wait > 0 then return wait end \
            local next = tat + interval \
            redis.call('SET', KEYS[1], string.format('%d', next), 'PX', math.floor((next - now) / 1000) + 1000) \
            return 0";
        let rps = u64::from(rps.max(1));
        let interval = 1_000_000 / rps;
        let tolerance = interval * u64::from(burst.max(1) - 1);
        let key = self.key(&format!("rl:{client}"));
        let wait_us: u64 = self
            .call(|mut c| async move {
                redis::cmd("EVAL")
                    .arg(GCRA)
                    .arg(1)
                    .arg(&key)
                    .arg(interval)
                    .arg(tolerance)
                    .query_async(&mut c)
                    .await
            })
            .await
            .ok()?;
        Some(if wait_us == 0 {
            Ok(())
        } else {
            Err(wait_us.div_ceil(1_000_000).max(1))
        })
    }

    /// Waits (at most `limit`) for the first connection, so work that
    /// should be shared is not done alone at startup.
    pub async fn wait_connected(&self, limit: Duration) -> bool {
        let end = Instant::now() + limit;
        while self.conn.load().is_none() {
            if Instant::now() >= end {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        true
    }

    /// Takes a feed's pull lease (one replica pulls a feed at a time).
    /// `None`: Redis unavailable (the caller pulls alone).
    pub async fn feed_lease(&self, feed: &str, ttl: Duration) -> Option<bool> {
        let k = self.key(&format!("feed:{feed}:lease"));
        let origin = self.origin;
        let ms = ttl.as_millis().max(1) as u64;
        self.call(|mut c| async move {
            let r: Option<String> = redis::cmd("SET")
                .arg(&k)
                .arg(origin)
                .arg("NX")
                .arg("PX")
                .arg(ms)
                .query_async(&mut c)
                .await?;
            Ok(r.is_some())
        })
        .await
        .ok()
    }

    /// Releases the lease if this replica still holds it.
    pub async fn feed_release(&self, feed: &str) {
        let k = self.key(&format!("feed:{feed}:lease"));
        let origin = self.origin;
        let _ = self
            .call(|mut c| async move {
                redis::cmd("EVAL")
                    .arg("if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0")
                    .arg(1)
                    .arg(&k)
                    .arg(origin.to_string())
                    .query_async::<i64>(&mut c)
                    .await
            })
            .await;
    }

    /// The version (last success, Unix s) of a feed's shared state.
    pub async fn feed_version(&self, feed: &str) -> Option<u64> {
        let k = self.key(&format!("feed:{feed}:ver"));
        self.call(|mut c| async move { c.get::<_, Option<u64>>(&k).await })
            .await
            .ok()
            .flatten()
    }

    /// A feed's shared state (its JSON), with its version.
    pub async fn feed_state(&self, feed: &str) -> Option<(u64, String)> {
        let v = self.key(&format!("feed:{feed}:ver"));
        let k = self.key(&format!("feed:{feed}:state"));
        self.call_within(Duration::from_secs(10), |mut c| async move {
            let (ver, state): (Option<u64>, Option<String>) =
                redis::pipe().get(&v).get(&k).query_async(&mut c).await?;
            Ok(ver.zip(state))
        })
        .await
        .ok()
        .flatten()
    }

    /// Shares a feed's state after a successful pull, unless a newer one
    /// is there; it expires with the entries' lifetime.
    pub async fn put_feed_state(
        &self,
        feed: &str,
        version: u64,
        json: String,
        ttl: Duration,
    ) -> bool {
        let v = self.key(&format!("feed:{feed}:ver"));
        let k = self.key(&format!("feed:{feed}:state"));
        let ms = ttl.as_millis().max(1000) as u64;
        self.call_within(Duration::from_secs(10), |mut c| async move {
            redis::cmd("EVAL")
                .arg("if tonumber(ARGV[1]) <= tonumber(redis.call('GET', KEYS[1]) or '0') then return 0 end \
                      redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3]) \
                      redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3]) return 1")
                .arg(2)
                .arg(&v)
                .arg(&k)
                .arg(version)
                .arg(json)
                .arg(ms)
                .query_async::<i64>(&mut c)
                .await
        })
        .await
        .is_ok_and(|n| n == 1)
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

/// A list entry's field in its Redis hash.
fn field(kind: EntryKind, value: &str) -> String {
    format!("{} {value}", kind.as_str())
}

fn parse(v: &str) -> Option<(Tags, Duration)> {
    let s: StoredVerdict = serde_json::from_str(v).ok()?;
    let tags = Tags::parse(&s.t).ok()?;
    Some((tags, Duration::from_millis(now_ms().saturating_sub(s.at))))
}
