//! What a feed keeps between runs and restarts: its entries (with expiry
//! and reason), its cursor and its health. One JSON file per feed, written
//! whole to a temporary file and renamed, so a reader (the other process:
//! `feeds run` beside `serve`) never sees half of one.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::rules::lists::{Entry, EntryKind};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StoredEntry {
    pub kind: EntryKind,
    pub value: String,
    pub expires: u64,
    pub reason: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct FeedState {
    pub version: u32,
    /// The feed's kind when written (a renamed kind starts afresh).
    pub kind: String,
    /// Unix seconds the last successful scheduled pull reached; the next
    /// one starts there.
    pub cursor: Option<u64>,
    pub last_success: Option<u64>,
    pub last_attempt: Option<u64>,
    pub last_error: Option<String>,
    pub consecutive_failures: u32,
    pub last_rows: u64,
    pub last_added: u64,
    pub entries: Vec<StoredEntry>,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read feed state {path}: {message}")]
    Read { path: String, message: String },
    #[error("cannot write feed state {path}: {message}")]
    Write { path: String, message: String },
}

/// Outcome of merging one pull.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Merge {
    /// New (kind, value) pairs.
    pub added: u64,
    /// Already there: expiry pushed out, reason updated.
    pub refreshed: u64,
}

impl FeedState {
    /// A missing file is a fresh feed; an unreadable one is an error (the
    /// entries in it must not be silently dropped).
    pub fn load(path: &Path) -> Result<Self, StateError> {
        let err = |message: String| StateError::Read {
            path: path.display().to_string(),
            message,
        };
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| err(e.to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(FeedState::default()),
            Err(e) => Err(err(e.to_string())),
        }
    }

    pub fn save(&self, path: &Path) -> Result<(), StateError> {
        let err = |message: String| StateError::Write {
            path: path.display().to_string(),
            message,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
        }
        // A name of its own per save: two saves at once (a scheduled one,
        // an admin run) never write into one temporary file.
        static SAVES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = SAVES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = path.with_extension(format!("json.tmp.{}.{n}", std::process::id()));
        let bytes = serde_json::to_vec(self).map_err(|e| err(e.to_string()))?;
        std::fs::write(&tmp, bytes).map_err(|e| err(e.to_string()))?;
        std::fs::rename(&tmp, path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            err(e.to_string())
        })
    }

    /// Adds or refreshes entries (same kind and value: the later expiry
    /// and the new reason win).
    pub fn merge(&mut self, new: impl IntoIterator<Item = StoredEntry>) -> Merge {
        let mut index: HashMap<(EntryKind, String), usize> = self
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| ((e.kind, e.value.clone()), i))
            .collect();
        let mut m = Merge::default();
        for e in new {
            match index.get(&(e.kind, e.value.clone())) {
                Some(&i) => {
                    let old = &mut self.entries[i];
                    old.expires = old.expires.max(e.expires);
                    old.reason = e.reason;
                    m.refreshed += 1;
                }
                None => {
                    index.insert((e.kind, e.value.clone()), self.entries.len());
                    self.entries.push(e);
                    m.added += 1;
                }
            }
        }
        m
    }

    /// Takes in another replica's state of the same feed: its entries
    /// merged with ours (the later expiry wins), the later cursor and
    /// success, its health when it is the newer one.
    pub fn absorb(&mut self, other: FeedState) {
        let newer = other.last_success.unwrap_or(0) >= self.last_success.unwrap_or(0);
        self.merge(other.entries);
        self.cursor = self.cursor.max(other.cursor);
        if newer {
            self.last_success = other.last_success;
            self.last_attempt = other.last_attempt.max(self.last_attempt);
            self.last_error = other.last_error;
            self.consecutive_failures = other.consecutive_failures;
            self.last_rows = other.last_rows;
            self.last_added = other.last_added;
            self.kind = other.kind;
            self.version = other.version;
        }
    }

    /// Drops entries expired at `now`; returns how many.
    pub fn prune(&mut self, now: u64) -> u64 {
        let before = self.entries.len();
        self.entries.retain(|e| now < e.expires);
        (before - self.entries.len()) as u64
    }

    /// The earliest expiry, to know when to prune next.
    pub fn next_expiry(&self) -> Option<u64> {
        self.entries.iter().map(|e| e.expires).min()
    }

    /// The entries as the rules hold them (reasons shared).
    pub fn list_entries(&self) -> Vec<Entry> {
        let mut reasons: HashMap<&str, Arc<str>> = HashMap::new();
        self.entries
            .iter()
            .map(|e| Entry {
                kind: e.kind,
                value: e.value.clone(),
                expires: Some(e.expires),
                reason: Some(
                    reasons
                        .entry(e.reason.as_str())
                        .or_insert_with(|| Arc::from(e.reason.as_str()))
                        .clone(),
                ),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(kind: EntryKind, v: &str, exp: u64, r: &str) -> StoredEntry {
        StoredEntry {
            kind,
            value: v.into(),
            expires: exp,
            reason: r.into(),
        }
    }

    #[test]
    fn merge_refreshes_and_prune_expires() {
        let mut s = FeedState::default();
        let m = s.merge([
            e(EntryKind::Ip, "1.2.3.4", 100, "a"),
            e(EntryKind::Device, "D", 50, "b"),
        ]);
        assert_eq!(
            m,
            Merge {
                added: 2,
                refreshed: 0
            }
        );
        let m = s.merge([
            e(EntryKind::Ip, "1.2.3.4", 200, "c"),
            e(EntryKind::Ip, "5.6.7.8", 80, "d"),
        ]);
        assert_eq!(
            m,
            Merge {
                added: 1,
                refreshed: 1
            }
        );
        assert_eq!(s.entries[0], e(EntryKind::Ip, "1.2.3.4", 200, "c"));
        assert_eq!(s.next_expiry(), Some(50));
        assert_eq!(s.prune(80), 2);
        assert_eq!(s.entries.len(), 1);
    }

    #[test]
    fn saves_whole_and_loads_back() {
        let dir = std::env::temp_dir().join(format!("fg-feed-state-{}", std::process::id()));
        let path = dir.join("f.json");
        let mut s = FeedState {
            cursor: Some(7),
            ..Default::default()
        };
        s.merge([e(EntryKind::Ip, "1.2.3.4", 100, "a")]);
        s.save(&path).unwrap();
        let back = FeedState::load(&path).unwrap();
        assert_eq!(back.cursor, Some(7));
        assert_eq!(back.entries, s.entries);
        assert!(
            FeedState::load(&dir.join("missing.json"))
                .unwrap()
                .entries
                .is_empty()
        );
        std::fs::write(&path, b"{not json").unwrap();
        assert!(FeedState::load(&path).is_err());
        let _ = std::fs::remove_dir_all(dir);
    }
}
