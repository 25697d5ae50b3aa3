//! Feeds across the fleet: one replica pulls a feed at a time (a lease),
//! the others take its state.

use std::time::Duration;

use redis::AsyncCommands;

use super::Fleet;

impl Fleet {
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
}
