//! Runtime list entries kept in Redis: shared by every replica and kept
//! across restarts; seeded again when Redis restarts empty.

use std::collections::HashMap;

use std::sync::atomic::Ordering;

use redis::AsyncCommands;

use super::{Fleet, FleetError};
use crate::rules::LocalRules;
use crate::rules::lists::{Entry, EntryKind};

impl Fleet {
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

    pub(super) async fn list_edit(
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
    pub(super) async fn load_lists(
        &self,
    ) -> Result<(u64, HashMap<String, Vec<Entry>>), FleetError> {
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
    pub(super) async fn sync_lists(&self, rules: &LocalRules, force: bool) {
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
    pub(super) async fn reseed(&self, rules: &LocalRules) -> bool {
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
}

/// A list entry's field in its Redis hash.
fn field(kind: EntryKind, value: &str) -> String {
    format!("{} {value}", kind.as_str())
}
