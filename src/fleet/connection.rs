//! Every Redis call goes through here: its own timeout, inside the
//! request's budget, and the one breaker that skips Redis for
//! `redis.retry_s` after consecutive failures.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;

use std::sync::Arc;

use super::{Fleet, now_ms};

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
    /// Runs one Redis call under the timeout and the breaker.
    pub(super) async fn call<T, F, Fut>(&self, f: F) -> Result<T, FleetError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        self.call_within(Duration::from_millis(self.cfg.timeout_ms), f)
            .await
    }

    /// Like `call`, with its own limit (feed state is large, off the
    /// request path).
    pub(super) async fn call_within<T, F, Fut>(
        &self,
        limit: Duration,
        f: F,
    ) -> Result<T, FleetError>
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
}
