//! What a feed keeps between runs and restarts: its entries (with expiry
//! and reason), its cursor and its health. One JSON file per feed, written
//! whole to a temporary file and renamed, so a reader (the other process:
//! `feeds run` beside `serve`) never sees half of one.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::config::Rejection;
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
    /// Entries an operator dropped: an entry the source reported before
    /// `at` stays out (also when another replica's state still has it);
    /// one it reports again after comes back.
    pub cleared: Vec<Cleared>,
    /// Reports (Protect360 `"<topic> <app>"`) read to the end of a run
    /// that partly failed, with that run's end (Unix seconds): the next
    /// run, which starts again at `cursor`, reads them only from there.
    /// Emptied by a run that succeeds whole.
    pub reports_done: std::collections::BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Cleared {
    pub kind: EntryKind,
    pub value: String,
    /// Unix seconds of the clear.
    pub at: u64,
    /// When every entry reported before the clear has expired: the clear
    /// is forgotten then.
    pub until: u64,
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

/// What reading a stored state (a file, a Redis value) had to skip.
#[derive(Debug, Default, PartialEq)]
pub struct Damage {
    /// Entries that did not parse or that the feed would not admit now.
    pub skipped: u64,
    /// Nothing was readable: not JSON, or not a feed state at all.
    pub whole: bool,
    /// What was wrong, the first few things.
    pub problems: Vec<String>,
}

impl Damage {
    const KEEP: usize = 3;

    fn note(&mut self, problem: String) {
        if self.problems.len() < Self::KEEP {
            self.problems.push(problem);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.skipped == 0 && !self.whole && self.problems.is_empty()
    }

    /// One line for a WARN.
    pub fn describe(&self) -> String {
        let mut s = if self.whole {
            "unreadable, read as empty".to_owned()
        } else {
            format!("{} entries skipped", self.skipped)
        };
        if !self.problems.is_empty() {
            s.push_str(": ");
            s.push_str(&self.problems.join("; "));
        }
        s
    }
}

/// The check an entry read back must pass ([`super::FeedConfig::admit`]).
pub type Admit<'a> = &'a dyn Fn(EntryKind, &str) -> Result<String, Rejection>;

impl FeedState {
    /// Reads a stored state as far as it is valid: a field of the wrong
    /// type keeps its default, an entry that does not parse or that the
    /// feed would not admit now (a value too wide for `max_prefix`) is
    /// skipped; what was skipped is told in the [`Damage`]. Never fails:
    /// a damaged state must not stop the gate.
    pub fn parse(bytes: &[u8], admit: Admit<'_>) -> (FeedState, Damage) {
        let mut damage = Damage::default();
        let mut map = match serde_json::from_slice::<serde_json::Value>(bytes) {
            Ok(serde_json::Value::Object(m)) => m,
            Ok(_) => {
                damage.whole = true;
                damage.note("not a JSON object".into());
                return (FeedState::default(), damage);
            }
            Err(e) => {
                damage.whole = true;
                damage.note(format!("not JSON: {e}"));
                return (FeedState::default(), damage);
            }
        };
        let entries = map.remove("entries");
        let mut state = FeedState::default();
        // Field by field: one bad value costs that field only.
        for (k, v) in map {
            let mut one = serde_json::Map::new();
            one.insert(k.clone(), v);
            match serde_json::from_value::<FeedState>(serde_json::Value::Object(one)) {
                Ok(f) => match k.as_str() {
                    "version" => state.version = f.version,
                    "kind" => state.kind = f.kind,
                    "cursor" => state.cursor = f.cursor,
                    "last_success" => state.last_success = f.last_success,
                    "last_attempt" => state.last_attempt = f.last_attempt,
                    "last_error" => state.last_error = f.last_error,
                    "consecutive_failures" => state.consecutive_failures = f.consecutive_failures,
                    "last_rows" => state.last_rows = f.last_rows,
                    "last_added" => state.last_added = f.last_added,
                    "cleared" => state.cleared = f.cleared,
                    "reports_done" => state.reports_done = f.reports_done,
                    _ => {}
                },
                Err(e) => damage.note(format!("{k}: {e}")),
            }
        }
        match entries {
            None | Some(serde_json::Value::Null) => {}
            Some(serde_json::Value::Array(items)) => {
                state.entries.reserve(items.len());
                for (i, item) in items.into_iter().enumerate() {
                    match serde_json::from_value::<StoredEntry>(item) {
                        Ok(mut e) => match admit(e.kind, &e.value) {
                            Ok(v) => {
                                e.value = v;
                                state.entries.push(e);
                            }
                            Err(r) => {
                                damage.skipped += 1;
                                damage.note(format!(
                                    "entries[{i}]: {} {:?} is {}",
                                    e.kind.as_str(),
                                    e.value.chars().take(64).collect::<String>(),
                                    r.as_str()
                                ));
                            }
                        },
                        Err(err) => {
                            damage.skipped += 1;
                            damage.note(format!("entries[{i}]: {err}"));
                        }
                    }
                }
            }
            Some(_) => damage.note("entries: not an array".into()),
        }
        (state, damage)
    }

    /// A missing file is a fresh feed; a damaged one is read as far as it
    /// is valid ([`FeedState::parse`]). Only a file that cannot be read at
    /// all (permissions, I/O) is an error.
    pub fn load(path: &Path, admit: Admit<'_>) -> Result<(Self, Damage), StateError> {
        match std::fs::read(path) {
            Ok(bytes) => Ok(Self::parse(&bytes, admit)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Ok((FeedState::default(), Damage::default()))
            }
            Err(e) => Err(StateError::Read {
                path: path.display().to_string(),
                message: e.to_string(),
            }),
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
        self.merge_entries(new, Some(u64::MAX))
    }

    /// Merges a pull whose rows all happened at or after `covered_from`
    /// (Unix seconds: the start of the window the source was asked for,
    /// at its granularity). A clear made before that is over for the
    /// values the pull reports; a clear made inside the window holds, for
    /// the rows may be the very ones cleared, read again.
    pub fn merge_pulled(
        &mut self,
        new: impl IntoIterator<Item = StoredEntry>,
        covered_from: u64,
    ) -> Merge {
        self.merge_entries(new, Some(covered_from))
    }

    /// `reported_from`: the entries come from the source (a pull) with
    /// rows from then on; `None`: another replica's copies.
    fn merge_entries(
        &mut self,
        new: impl IntoIterator<Item = StoredEntry>,
        reported_from: Option<u64>,
    ) -> Merge {
        let mut index: HashMap<(EntryKind, String), usize> = self
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| ((e.kind, e.value.clone()), i))
            .collect();
        let mut m = Merge::default();
        // Clears by value, for a pull: one lookup an entry.
        let mut cleared: HashMap<(EntryKind, String), u64> = match reported_from {
            Some(_) => self
                .cleared
                .iter()
                .map(|c| ((c.kind, c.value.clone()), c.at))
                .collect(),
            None => HashMap::new(),
        };
        let mut lifted = false;
        for e in new {
            if let Some(from) = reported_from {
                match cleared.get(&(e.kind, e.value.clone())) {
                    // Reported in a window that began after the clear:
                    // the clear is over.
                    Some(&at) if at <= from => {
                        cleared.remove(&(e.kind, e.value.clone()));
                        lifted = true;
                    }
                    // Maybe the very row cleared, read again: stays out.
                    Some(_) => continue,
                    None => {}
                }
            }
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
        if lifted {
            self.cleared
                .retain(|c| cleared.contains_key(&(c.kind, c.value.clone())));
        }
        m
    }

    /// Drops the entries of one kind and value, or all of them, and
    /// remembers the clear; returns how many were dropped.
    pub fn clear(&mut self, which: Option<(EntryKind, &str)>, now: u64, expire_after: u64) -> u64 {
        let before = self.entries.len();
        let mut dropped = Vec::new();
        // An IP as the same range however it is written (case, /32).
        let range = |v: &str| {
            crate::rules::ranges::Prefix::parse(v)
                .ok()
                .map(|p| (p.start, p.end))
        };
        let wanted = which.and_then(|(k, v)| (k == EntryKind::Ip).then(|| range(v)).flatten());
        self.entries.retain(|e| {
            let hit = which.is_none_or(|(k, v)| {
                e.kind == k
                    && match wanted {
                        Some(r) => range(&e.value) == Some(r),
                        None => e.value == v,
                    }
            });
            if hit {
                dropped.push((e.kind, e.value.clone()));
            }
            !hit
        });
        if let Some((k, v)) = which
            && dropped.is_empty()
        {
            dropped.push((k, v.to_owned()));
        }
        for (kind, value) in dropped {
            match self
                .cleared
                .iter_mut()
                .find(|c| c.kind == kind && c.value == value)
            {
                Some(c) => {
                    c.at = c.at.max(now);
                    c.until = c.until.max(now + expire_after);
                }
                None => self.cleared.push(Cleared {
                    kind,
                    value,
                    at: now,
                    until: now + expire_after,
                }),
            }
        }
        (before - self.entries.len()) as u64
    }

    /// Takes in another replica's state of the same feed: its entries
    /// merged with ours (the later expiry wins), the later cursor and
    /// success, its health when it is the newer one. Clears on either
    /// side hold: an entry last reported before its clear stays out
    /// (`expire_after` gives when it was reported).
    pub fn absorb(&mut self, other: FeedState, expire_after: u64) {
        let newer = other.last_success.unwrap_or(0) >= self.last_success.unwrap_or(0);
        for c in other.cleared.iter() {
            match self
                .cleared
                .iter_mut()
                .find(|m| m.kind == c.kind && m.value == c.value)
            {
                Some(m) => {
                    m.at = m.at.max(c.at);
                    m.until = m.until.max(c.until);
                }
                None => self.cleared.push(c.clone()),
            }
        }
        self.merge_entries(other.entries, None);
        if !self.cleared.is_empty() {
            let cleared: HashMap<(EntryKind, &str), u64> = self
                .cleared
                .iter()
                .map(|c| ((c.kind, c.value.as_str()), c.at))
                .collect();
            self.entries.retain(|e| {
                cleared
                    .get(&(e.kind, e.value.as_str()))
                    .is_none_or(|&at| e.expires.saturating_sub(expire_after) > at)
            });
        }
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
        self.cleared.retain(|c| now < c.until);
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
    fn a_clear_holds_across_replicas_until_the_source_reports_again() {
        let expire_after = 1000;
        let mut ours = FeedState::default();
        ours.merge([
            e(EntryKind::Ip, "1.2.3.4", 1100, "a"),
            e(EntryKind::Ip, "5.6.7.8", 1100, "b"),
        ]);
        let theirs = ours.clone();
        assert_eq!(
            ours.clear(Some((EntryKind::Ip, "1.2.3.4")), 200, expire_after),
            1
        );
        // The other replica still has it, reported at 100: it stays out.
        ours.absorb(theirs.clone(), expire_after);
        let held: Vec<&str> = ours.entries.iter().map(|e| e.value.as_str()).collect();
        assert_eq!(held, ["5.6.7.8"]);
        // The clear travels: the other replica drops it too.
        let mut other = theirs;
        other.absorb(ours.clone(), expire_after);
        assert_eq!(other.entries.len(), 1);
        // Read again by a pull whose window began before the clear (the
        // cleared row itself, maybe): stays out.
        ours.merge_pulled([e(EntryKind::Ip, "1.2.3.4", 1300, "c")], 150);
        assert_eq!(ours.entries.len(), 1);
        // Reported by a pull of a window after the clear: back.
        ours.merge_pulled([e(EntryKind::Ip, "1.2.3.4", 1300, "c")], 250);
        assert_eq!(ours.entries.len(), 2);
        assert!(ours.cleared.is_empty());
        // An IP cleared as written differently (/32) is the same entry.
        assert_eq!(
            ours.clear(Some((EntryKind::Ip, "1.2.3.4/32")), 260, expire_after),
            1
        );
        ours.merge_pulled([e(EntryKind::Ip, "1.2.3.4", 1300, "c")], 300);
        // Whole list.
        assert_eq!(ours.clear(None, 400, expire_after), 2);
        assert!(ours.entries.is_empty());
        assert_eq!(ours.cleared.len(), 2);
        // Forgotten once all it could hide has expired.
        ours.prune(1400);
        assert!(ours.cleared.is_empty());
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
        let (back, damage) = FeedState::load(&path, &any).unwrap();
        assert!(damage.is_empty(), "{damage:?}");
        assert_eq!(back.cursor, Some(7));
        assert_eq!(back.entries, s.entries);
        let (fresh, damage) = FeedState::load(&dir.join("missing.json"), &any).unwrap();
        assert!(fresh.entries.is_empty() && damage.is_empty());
        std::fs::write(&path, b"{not json").unwrap();
        let (back, damage) = FeedState::load(&path, &any).unwrap();
        assert!(back.entries.is_empty());
        assert!(damage.whole, "{damage:?}");
        let _ = std::fs::remove_dir_all(dir);
    }

    fn any(k: EntryKind, v: &str) -> Result<String, Rejection> {
        Entry::new(k, v, None, None)
            .map(|e| e.value)
            .map_err(|_| Rejection::Invalid)
    }

    #[test]
    fn a_damaged_state_is_read_as_far_as_it_is_valid() {
        let text = br#"{"version":1,"kind":"protect360","cursor":"yesterday","last_rows":5,
            "entries":[
              {"kind":"ip","value":"1.2.3.4","expires":100,"reason":"a"},
              {"kind":"ip","value":"not-an-ip","expires":100,"reason":"b"},
              {"kind":"ip","value":"0.0.0.0/0","expires":100,"reason":"c"},
              {"kind":"planet","value":"x","expires":100,"reason":"d"},
              17,
              {"kind":"device","value":"D","expires":100,"reason":"e"}
            ]}"#;
        let narrow = |k: EntryKind, v: &str| -> Result<String, Rejection> {
            if v.contains('/') {
                return Err(Rejection::TooWide);
            }
            any(k, v)
        };
        let (s, damage) = FeedState::parse(text, &narrow);
        let kept: Vec<&str> = s.entries.iter().map(|e| e.value.as_str()).collect();
        assert_eq!(kept, ["1.2.3.4", "D"]);
        assert_eq!(damage.skipped, 4);
        assert!(!damage.whole);
        // The bad cursor is dropped, the other fields kept.
        assert_eq!(s.cursor, None);
        assert_eq!((s.version, s.last_rows), (1, 5));
        assert_eq!(s.kind, "protect360");
        let told = damage.describe();
        assert!(
            told.contains("cursor") && told.contains("entries[1]"),
            "{told}"
        );
        for junk in [&b"[1,2]"[..], b"", b"{\"entries\": {\"a\": 1}}"] {
            let (s, _) = FeedState::parse(junk, &any);
            assert!(s.entries.is_empty());
        }
    }
}
