//! Messages between replicas (purges, list edits), and the task that
//! follows them and catches up after a reconnect.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use redis::AsyncCommands;
use redis::aio::ConnectionManager;

use super::{Fleet, Purge};
use crate::cache::VerdictCache;
use crate::rules::LocalRules;

/// A message between replicas.
#[derive(Serialize, Deserialize, Debug)]
pub(super) struct Message {
    /// The sender; a replica ignores its own.
    from: u64,
    op: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ua: Option<String>,
}

impl Fleet {
    pub(super) fn message(&self, op: &str, ip: Option<String>, ua: Option<String>) -> Message {
        Message {
            from: self.origin,
            op: op.to_owned(),
            ip,
            ua,
        }
    }

    pub(super) async fn publish(&self, msg: Message) -> bool {
        let Ok(text) = serde_json::to_string(&msg) else {
            return false;
        };
        let channel = self.channel();
        self.call(|mut c| async move { c.publish::<_, _, ()>(&channel, &text).await })
            .await
            .is_ok()
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

    pub(super) async fn follow(&self, rules: &Arc<LocalRules>, cache: &VerdictCache) {
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

    pub(super) async fn on_message(&self, m: Message, rules: &LocalRules, cache: &VerdictCache) {
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
}
