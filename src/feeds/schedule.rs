//! Every configured feed, and the scheduler that runs them.

use super::*;

/// Every configured feed.
#[derive(Default)]
pub struct Feeds {
    feeds: Vec<Arc<Feed>>,
}

impl Feeds {
    /// Loads each feed's state and puts its entries in its list.
    pub fn new(
        configs: &[FeedConfig],
        rules: Option<Arc<LocalRules>>,
        fleet: Option<Arc<crate::fleet::Fleet>>,
    ) -> Result<Self, StateError> {
        let feeds = configs
            .iter()
            .map(|c| Feed::new(c.clone(), rules.clone(), fleet.clone()).map(Arc::new))
            .collect::<Result<_, _>>()?;
        Ok(Feeds { feeds })
    }

    pub fn is_empty(&self) -> bool {
        self.feeds.is_empty()
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Feed>> {
        self.feeds.iter().find(|f| f.cfg.name == name)
    }

    pub fn all(&self) -> &[Arc<Feed>] {
        &self.feeds
    }

    pub fn statuses(&self) -> Vec<FeedStatus> {
        self.feeds.iter().map(|f| f.status()).collect()
    }

    /// The scheduler: a task per feed, pulling every `every` (± jitter),
    /// backing off after failures, picking up state other processes
    /// wrote and dropping expired entries once a second.
    pub fn spawn(&self) {
        for feed in &self.feeds {
            let feed = feed.clone();
            tokio::spawn(async move {
                if let Some(f) = &feed.fleet {
                    // Shared pulls need Redis: give it a moment at startup.
                    f.wait_connected(Duration::from_secs(5)).await;
                    feed.adopt_shared().await;
                }
                let mut next = feed.plan_first();
                let mut ticks = 0u64;
                loop {
                    loop {
                        let now = now_unix();
                        if now >= next {
                            break;
                        }
                        tokio::time::sleep(Duration::from_secs((next - now).min(1))).await;
                        let f = feed.clone();
                        let _ = tokio::task::spawn_blocking(move || f.sync()).await;
                        ticks += 1;
                        if ticks.is_multiple_of(5) {
                            feed.adopt_shared().await;
                        }
                        // A run through the admin API re-plans.
                        next = feed.next_run.load(Ordering::Relaxed);
                    }
                    next = match feed.run(&RunOptions::default(), &Quiet).await {
                        Ok(s) => {
                            tracing::info!(feed = %s.feed, rows = s.rows, added = s.added, refreshed = s.refreshed, entries = s.entries, "feed pulled");
                            feed.plan_next(None)
                        }
                        Err(RunError::Running(_)) => feed.plan_next(None),
                        Err(RunError::Source { error, .. }) => {
                            let n = feed.plan_next(Some(&error));
                            tracing::warn!(feed = %feed.cfg.name, error = %error, kind = error.kind(), retry_in_s = n.saturating_sub(now_unix()), "feed pull failed; entries kept");
                            n
                        }
                        Err(e) => {
                            tracing::error!(feed = %feed.cfg.name, error = %e, "feed run failed");
                            feed.plan_next(Some(&FeedError::Parse(e.to_string())))
                        }
                    };
                }
            });
        }
    }

    /// Starts a run now (the admin API); it re-plans the schedule.
    pub fn trigger(&self, name: &str) -> Result<(), TriggerError> {
        let feed = self
            .get(name)
            .ok_or_else(|| TriggerError::Unknown(name.to_owned()))?
            .clone();
        // Taken here, so the feed shows as running from the answer on.
        let guard = feed
            .running
            .clone()
            .try_lock_owned()
            .map_err(|_| TriggerError::Running(name.to_owned()))?;
        tokio::spawn(async move {
            let opts = RunOptions {
                force: true,
                ..RunOptions::default()
            };
            match feed.run_locked(guard, &opts, &Quiet).await {
                Ok(s) => {
                    tracing::info!(feed = %s.feed, rows = s.rows, added = s.added, "feed pulled (admin)");
                    feed.plan_next(None);
                }
                Err(RunError::Source { error, .. }) => {
                    tracing::warn!(feed = %feed.cfg.name, error = %error, "feed pull failed (admin); entries kept");
                    feed.plan_next(Some(&error));
                }
                Err(e) => tracing::warn!(feed = %feed.cfg.name, error = %e, "feed run (admin)"),
            }
        });
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TriggerError {
    #[error("no feed named {0:?}")]
    Unknown(String),
    #[error("feed {0:?} is running already")]
    Running(String),
}
