//! Shared verdicts: one RT call per key for the fleet (a short lock, the
//! others polling for its answer), purges by IP and of everything.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use redis::AsyncCommands;

use super::{Fleet, Purge, now_ms};
use crate::cache::KeyPart;
use crate::event::Event;
use crate::verdict::Tags;

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

impl Fleet {
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

    pub(super) async fn sync_generation(&self) {
        let k = self.key("gen");
        if let Ok(g) = self
            .call(|mut c| async move { c.get::<_, Option<u64>>(&k).await })
            .await
        {
            self.generation.store(g.unwrap_or(0), Ordering::Relaxed);
        }
    }
}

fn parse(v: &str) -> Option<(Tags, Duration)> {
    let s: StoredVerdict = serde_json::from_str(v).ok()?;
    let tags = Tags::parse(&s.t).ok()?;
    Some((tags, Duration::from_millis(now_ms().saturating_sub(s.at))))
}
