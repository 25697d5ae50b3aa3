//! A feed's state on disk and in the fleet: loading what others wrote,
//! saving off the runtime, sharing through Redis, an operator's clear.

use super::*;

impl Feed {
    /// Drops entries from the feed's list (one kind and value, or all):
    /// an operator's way out of a bad row without editing the source.
    /// They stay out until the source reports them again; with Redis the
    /// clear is shared, so other replicas drop them too.
    pub async fn clear(&self, which: Option<(EntryKind, &str)>) -> Result<u64, ClearError> {
        // Not in the middle of a run: its merge would not see the clear.
        let _run = tokio::time::timeout(Duration::from_secs(10), self.running.lock())
            .await
            .map_err(|_| ClearError::Running(self.cfg.name.clone()))?;
        // The newest entries, ours and the fleet's, so the clear covers
        // what other replicas pulled too.
        self.adopt_shared().await;
        self.adopt_disk().await;
        let now = now_unix();
        let removed = {
            let mut s = self.lock();
            let n = s.clear(which, now, self.cfg.expire_after.as_secs());
            self.metrics.show(&s);
            n
        };
        // The list first: the entries are out whether or not the file
        // can be written.
        self.publish();
        self.save_off_runtime().await?;
        if !self.share_state().await {
            tracing::warn!(feed = %self.cfg.name, "feed clear not shared (Redis unavailable or a newer state there)");
        }
        tracing::info!(feed = %self.cfg.name, removed, all = which.is_none(), "feed entries cleared");
        Ok(removed)
    }

    /// Puts this replica's state in Redis, versioned by the time now (so
    /// a run that began before a clear still shares after it). Remembers
    /// the version, so this replica does not take its own state back.
    pub(super) async fn share_state(&self) -> bool {
        let Some(f) = &self.fleet else {
            return true;
        };
        let json = serde_json::to_string(&*self.lock()).unwrap_or_default();
        let version = now_unix().max(self.shared_seen.load(Ordering::Relaxed) + 1);
        let ok = f
            .put_feed_state(&self.fleet_name, version, json, self.cfg.expire_after)
            .await;
        if ok {
            self.shared_seen.fetch_max(version, Ordering::Relaxed);
        }
        ok
    }

    /// Takes in what another process (`fraudgate feeds run`) wrote, and
    /// drops expired entries. Blocking file I/O: off the runtime.
    pub fn sync(&self) {
        let now_stamp = Stamp::of(&self.path);
        let changed = {
            let mut st = self.stamp.lock().unwrap_or_else(|p| p.into_inner());
            if *st != now_stamp && now_stamp.is_some() {
                *st = now_stamp;
                true
            } else {
                false
            }
        };
        let mut republish = false;
        if changed {
            match self.load_disk() {
                Some(s) => {
                    tracing::info!(feed = %self.cfg.name, entries = s.entries.len(), "feed state changed on disk: loaded");
                    *self.lock() = s;
                    republish = true;
                }
                None => {
                    tracing::warn!(feed = %self.cfg.name, "feed state changed on disk but cannot be read; keeping the entries held")
                }
            }
        }
        let now = now_unix();
        let expired = {
            let mut s = self.lock();
            if s.next_expiry().is_some_and(|t| t <= now) {
                s.prune(now)
            } else {
                0
            }
        };
        if expired > 0 {
            self.metrics.expired.increment(expired);
            republish = true;
            if let Err(e) = self.save() {
                tracing::warn!(feed = %self.cfg.name, error = %e, "cannot save the feed's state");
            }
        }
        if republish {
            self.metrics.show(&self.lock());
            self.publish();
        }
    }

    /// The state file as far as it is valid, damage told and counted;
    /// `None` when nothing in it is readable (the held entries stay).
    pub(super) fn load_disk(&self) -> Option<FeedState> {
        self.take_loaded(FeedState::load(&self.path, &|k, v| self.cfg.admit(k, v)))
    }

    pub(super) fn take_loaded(
        &self,
        loaded: Result<(FeedState, state::Damage), StateError>,
    ) -> Option<FeedState> {
        match loaded {
            Ok((state, damage)) => {
                if !damage.is_empty() {
                    let name = self.path.display().to_string();
                    report_damage(&self.cfg.name, &name, &damage, &self.metrics);
                }
                (!damage.whole).then_some(state)
            }
            Err(e) => {
                tracing::warn!(feed = %self.cfg.name, error = %e, "cannot read the feed's state");
                None
            }
        }
    }

    pub(super) fn save(&self) -> Result<(), StateError> {
        let snapshot = self.lock().clone();
        snapshot.save(&self.path)?;
        *self.stamp.lock().unwrap_or_else(|p| p.into_inner()) = Stamp::of(&self.path);
        Ok(())
    }

    /// Takes the fleet's state of this feed when it is newer than ours
    /// (another replica pulled). True when taken.
    pub async fn adopt_shared(&self) -> bool {
        let Some(fleet) = &self.fleet else {
            return false;
        };
        let ours = self
            .lock()
            .last_success
            .unwrap_or(0)
            .max(self.shared_seen.load(Ordering::Relaxed));
        let version = match fleet.feed_version(&self.fleet_name).await {
            Some(v) if v > ours => v,
            _ => return false,
        };
        let Some((_, json)) = fleet.feed_state(&self.fleet_name).await else {
            return false;
        };
        let (state, damage) = FeedState::parse(json.as_bytes(), &|k, v| self.cfg.admit(k, v));
        if !damage.is_empty() {
            let key = format!("Redis feed state {:?}", self.fleet_name);
            report_damage(&self.cfg.name, &key, &damage, &self.metrics);
        }
        if damage.whole {
            return false;
        }
        self.shared_seen.fetch_max(version, Ordering::Relaxed);
        let now = now_unix();
        {
            let mut s = self.lock();
            s.absorb(state, self.cfg.expire_after.as_secs());
            s.prune(now);
            self.metrics.show(&s);
        }
        let _ = self.save_off_runtime().await;
        self.publish();
        tracing::info!(feed = %self.cfg.name, "took the feed's entries another replica pulled");
        true
    }

    /// Takes the file's state if another process (`feeds run`) wrote it
    /// since this one last read or wrote it, so a save never drops what
    /// that process added.
    pub(super) async fn adopt_disk(&self) {
        let path = self.path.clone();
        let cfg = self.cfg.clone();
        let Ok((st, loaded)) = tokio::task::spawn_blocking(move || {
            let loaded = FeedState::load(&path, &|k, v| cfg.admit(k, v));
            (Stamp::of(&path), loaded)
        })
        .await
        else {
            return;
        };
        let Some(state) = self.take_loaded(loaded) else {
            return;
        };
        let mut held = self.stamp.lock().unwrap_or_else(|p| p.into_inner());
        if st.is_some() && st != *held {
            *self.lock() = state;
            *held = st;
        }
    }

    pub(super) async fn save_off_runtime(&self) -> Result<(), StateError> {
        let snapshot = self.lock().clone();
        let path = self.path.clone();
        let saved =
            tokio::task::spawn_blocking(move || snapshot.save(&path).map(|()| Stamp::of(&path)))
                .await
                .unwrap_or_else(|e| {
                    Err(StateError::Write {
                        path: self.path.display().to_string(),
                        message: e.to_string(),
                    })
                });
        match saved {
            Ok(st) => {
                *self.stamp.lock().unwrap_or_else(|p| p.into_inner()) = st;
                Ok(())
            }
            Err(e) => {
                tracing::error!(feed = %self.cfg.name, error = %e, "cannot save the feed's state; entries are held in memory");
                Err(e)
            }
        }
    }
}
