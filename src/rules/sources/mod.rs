//! Where rules come from: pattern, range and list files (re-read when their
//! mtime or size changes) and runtime list entries (admin API). Builds new
//! snapshots, reusing the compiled parts that did not change.
//!
//! A file that cannot be read, or that is suddenly empty when it had
//! entries (a truncated write), keeps its previous contents
//! ([`file_state`]). Bad lines are logged with their numbers and skipped;
//! the good ones load.

mod file_state;
mod range_rule;

use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

use super::config::RulesConfig;
use super::crawler::{BUILTIN_PATTERNS, BadLine, CrawlerMatcher};
use super::lists::{Compiled, Entry, EntryKind};
use super::ranges::{IpRanges, Prefix};
use super::{ActiveList, Snapshot};
use crate::event::now_unix;
use crate::policy::Action;
use file_state::FileState;
pub(crate) use file_state::Stamp;
pub(crate) use range_rule::RangeRule;
use range_rule::{Ranges, parse_ranges};

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("config key {key}: cannot read {path}: {message}")]
    Read {
        key: String,
        path: String,
        message: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("no list named {0:?}")]
    UnknownList(String),
    #[error("no runtime entry {kind} {value:?} in list {list:?}")]
    NotFound {
        list: String,
        kind: &'static str,
        value: String,
    },
    #[error("entry {kind} {value:?} comes from the list's file; edit the file instead")]
    InFile { kind: &'static str, value: String },
    #[error(
        "list {0:?} is filled by the feed of that name; its entries come from the source (drop them with DELETE /v1/admin/feeds/{0}/entries)"
    )]
    FeedList(String),
}

/// Where an entry came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EntrySource {
    File,
    Runtime,
    Feed,
}

#[derive(Debug, Clone, Serialize)]
pub struct ListSummary {
    pub name: String,
    pub action: Action,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    pub file_entries: usize,
    pub runtime_entries: usize,
    /// Set on a list a feed fills: its entries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub feed_entries: Option<usize>,
}

struct CrawlerSource {
    builtin: bool,
    flag_empty: bool,
    extra: Option<FileState<String>>,
}

struct ListSource {
    name: Arc<str>,
    action: Action,
    file: Option<FileState<Vec<Entry>>>,
    /// Admin entries, or a feed's entries when `feed`.
    runtime: Vec<Entry>,
    feed: bool,
}

/// One IP-range rule: its built-in ranges (parsed once per process) and
/// its files.
struct RangeSource {
    builtin: Option<Arc<Ranges>>,
    files: Vec<FileState<Ranges>>,
}

pub(crate) struct Sources {
    crawler: Option<CrawlerSource>,
    /// By [`RangeRule`].
    ranges: [Option<RangeSource>; 3],
    lists: Vec<ListSource>,
}

fn parse_patterns(text: &str, _: &Path) -> (String, usize, Vec<BadLine>) {
    let (m, bad) = CrawlerMatcher::build(&[text], false);
    (text.to_owned(), m.len(), bad)
}

fn parse_list(text: &str, _: &Path) -> (Vec<Entry>, usize, Vec<BadLine>) {
    let mut out = Vec::new();
    let mut bad = Vec::new();
    for (i, line) in text.lines().enumerate() {
        match Entry::parse_line(line) {
            Ok(Some(e)) => out.push(e),
            Ok(None) => {}
            Err(message) => bad.push(BadLine {
                line: i + 1,
                message,
            }),
        }
    }
    let n = out.len();
    (out, n, bad)
}

impl Sources {
    /// `feeds`: names of the feeds, a block list each.
    pub fn new(c: &RulesConfig, feeds: &[String]) -> Self {
        let file = |key: String, path: &str| (!path.is_empty()).then(|| (key, path.to_owned()));
        Sources {
            crawler: c.crawler.enabled.then(|| CrawlerSource {
                builtin: c.crawler.builtin,
                flag_empty: c.crawler.flag_empty_ua,
                extra: file(
                    "rules.crawler.extra_patterns_file".into(),
                    &c.crawler.extra_patterns_file,
                )
                .map(|(k, p)| FileState::new(k, p, String::new(), "crawler")),
            }),
            ranges: RangeRule::ALL.map(|r| {
                let rc = r.config(c);
                rc.enabled.then(|| RangeSource {
                    builtin: rc.builtin.then(|| r.builtin()),
                    files: rc
                        .files
                        .iter()
                        .enumerate()
                        .map(|(i, p)| {
                            FileState::new(
                                format!("rules.{}.files[{i}]", r.key()),
                                p.clone(),
                                Vec::new(),
                                r.key(),
                            )
                        })
                        .collect(),
                })
            }),
            lists: c
                .lists
                .iter()
                .enumerate()
                .map(|(i, l)| ListSource {
                    name: l.name.as_str().into(),
                    action: l.action,
                    file: file(format!("rules.lists[{i}].file"), &l.file)
                        .map(|(k, p)| FileState::new(k, p, Vec::new(), "list")),
                    runtime: Vec::new(),
                    feed: false,
                })
                .chain(feeds.iter().map(|f| ListSource {
                    name: f.as_str().into(),
                    action: Action::Block,
                    file: None,
                    runtime: Vec::new(),
                    feed: true,
                }))
                .collect(),
        }
    }

    /// Startup: every configured file must be readable.
    pub fn load_all(&mut self) -> Result<Snapshot, ReloadError> {
        if let Some(f) = self.crawler.as_mut().and_then(|c| c.extra.as_mut()) {
            f.refresh(true, parse_patterns)?;
        }
        for f in self.ranges.iter_mut().flatten().flat_map(|r| &mut r.files) {
            f.refresh(true, parse_ranges)?;
        }
        for f in self.lists.iter_mut().filter_map(|l| l.file.as_mut()) {
            f.refresh(true, parse_list)?;
        }
        let n = self.lists.len();
        Ok(self.build(&Snapshot::default(), true, [true; 3], &vec![true; n]))
    }

    /// Re-reads changed files; returns how many changed and the snapshot
    /// to swap in (parts that did not change are shared with `current`).
    pub fn reload(&mut self, current: &Snapshot, force: bool) -> (usize, Snapshot) {
        let crawler = self
            .crawler
            .as_mut()
            .and_then(|c| c.extra.as_mut())
            .is_some_and(|f| f.refresh_or_keep(force, parse_patterns));
        let ranges = self.ranges.each_mut().map(|r| {
            r.as_mut().is_some_and(|r| {
                r.files
                    .iter_mut()
                    .fold(false, |any, f| f.refresh_or_keep(force, parse_ranges) | any)
            })
        });
        let lists: Vec<bool> = self
            .lists
            .iter_mut()
            .map(|l| {
                // Expired runtime entries go at every reload.
                let now = now_unix();
                let before = l.runtime.len();
                l.runtime.retain(|e| e.live(now));
                let file = l
                    .file
                    .as_mut()
                    .is_some_and(|f| f.refresh_or_keep(force, parse_list));
                file || before != l.runtime.len()
            })
            .collect();
        let changed = crawler as usize
            + ranges.iter().filter(|c| **c).count()
            + lists.iter().filter(|c| **c).count();
        (changed, self.build(current, crawler, ranges, &lists))
    }

    fn build(
        &self,
        current: &Snapshot,
        crawler: bool,
        ranges: [bool; 3],
        lists: &[bool],
    ) -> Snapshot {
        let crawler = match (&self.crawler, crawler) {
            (None, _) => None,
            (Some(c), true) => {
                let extra = c.extra.as_ref().map(|f| f.data.clone());
                let mut texts: Vec<&str> = Vec::new();
                if c.builtin {
                    texts.push(BUILTIN_PATTERNS);
                }
                if let Some(e) = &extra {
                    texts.push(e);
                }
                Some(Arc::new(CrawlerMatcher::build(&texts, c.flag_empty).0))
            }
            (Some(_), false) => current.crawler.clone(),
        };
        let ranges = RangeRule::ALL.map(|r| match (&self.ranges[r as usize], ranges[r as usize]) {
            (None, _) => None,
            (Some(src), true) => {
                // Files after the built-in ranges: on an equal prefix the
                // operator's label wins.
                let all: Vec<(Prefix, Arc<str>)> = src
                    .builtin
                    .iter()
                    .map(|b| &**b)
                    .chain(src.files.iter().map(|f| &*f.data))
                    .flat_map(|v| v.iter().cloned())
                    .collect();
                Some(Arc::new(IpRanges::build(all)))
            }
            (Some(_), false) => current.ranges[r as usize].clone(),
        });
        let now = now_unix();
        let lists = self
            .lists
            .iter()
            .enumerate()
            .map(|(i, l)| match current.lists.get(i) {
                Some(existing) if !lists[i] => existing.clone(),
                _ => Arc::new(self.compile(l, now)),
            })
            .collect();
        Snapshot {
            crawler,
            ranges,
            lists,
        }
    }

    fn compile(&self, l: &ListSource, now: u64) -> ActiveList {
        let mut entries: Vec<Entry> = l.file.as_ref().map(|f| f.data.to_vec()).unwrap_or_default();
        entries.extend(l.runtime.iter().cloned());
        ActiveList {
            name: l.name.clone(),
            action: l.action,
            compiled: Compiled::build(entries, now),
        }
    }

    fn index(&self, list: &str) -> Result<usize, AdminError> {
        self.lists
            .iter()
            .position(|l| &*l.name == list)
            .ok_or_else(|| AdminError::UnknownList(list.to_owned()))
    }

    fn rebuild_one(&self, i: usize, current: &Snapshot) -> Snapshot {
        let mut flags = vec![false; self.lists.len()];
        flags[i] = true;
        self.build(current, false, [false; 3], &flags)
    }

    /// An admin edit: refused on a feed's list.
    fn editable(&self, list: &str) -> Result<usize, AdminError> {
        let i = self.index(list)?;
        if self.lists[i].feed {
            return Err(AdminError::FeedList(list.to_owned()));
        }
        Ok(i)
    }

    /// Replaces a list's runtime entries (the fleet's copy from Redis).
    pub fn replace_runtime(
        &mut self,
        list: &str,
        entries: Vec<Entry>,
        current: &Snapshot,
    ) -> Result<(usize, Snapshot), AdminError> {
        let i = self.editable(list)?;
        Ok(self.replace(i, entries, current))
    }

    fn replace(&mut self, i: usize, entries: Vec<Entry>, current: &Snapshot) -> (usize, Snapshot) {
        let n = entries.len();
        self.lists[i].runtime = entries;
        (n, self.rebuild_one(i, current))
    }

    /// A list's runtime entries.
    pub fn runtime(&self, list: &str) -> Result<Vec<Entry>, AdminError> {
        Ok(self.lists[self.editable(list)?].runtime.clone())
    }

    /// Replaces a feed's entries.
    pub fn set_feed(
        &mut self,
        list: &str,
        entries: Vec<Entry>,
        current: &Snapshot,
    ) -> Result<(usize, Snapshot), AdminError> {
        let i = self.index(list)?;
        Ok(self.replace(i, entries, current))
    }

    pub fn add(
        &mut self,
        list: &str,
        entries: Vec<Entry>,
        current: &Snapshot,
    ) -> Result<(usize, Snapshot), AdminError> {
        let i = self.editable(list)?;
        let n = entries.len();
        let rt = &mut self.lists[i].runtime;
        for e in entries {
            // Same kind and value: the new entry (expiry, reason) replaces it.
            rt.retain(|x| !(x.kind == e.kind && x.value == e.value));
            rt.push(e);
        }
        Ok((n, self.rebuild_one(i, current)))
    }

    pub fn remove(
        &mut self,
        list: &str,
        kind: EntryKind,
        value: &str,
        current: &Snapshot,
    ) -> Result<(usize, Snapshot), AdminError> {
        let i = self.editable(list)?;
        let l = &mut self.lists[i];
        let before = l.runtime.len();
        l.runtime.retain(|x| !(x.kind == kind && x.value == value));
        let removed = before - l.runtime.len();
        if removed == 0 {
            let in_file = l
                .file
                .as_ref()
                .is_some_and(|f| f.data.iter().any(|x| x.kind == kind && x.value == value));
            return Err(if in_file {
                AdminError::InFile {
                    kind: kind.as_str(),
                    value: value.to_owned(),
                }
            } else {
                AdminError::NotFound {
                    list: list.to_owned(),
                    kind: kind.as_str(),
                    value: value.to_owned(),
                }
            });
        }
        Ok((removed, self.rebuild_one(i, current)))
    }

    pub fn summaries(&self) -> Vec<ListSummary> {
        self.lists
            .iter()
            .map(|l| ListSummary {
                name: l.name.to_string(),
                action: l.action,
                file: l.file.as_ref().map(|f| f.path.clone()),
                file_entries: l.file.as_ref().map_or(0, |f| f.count),
                runtime_entries: if l.feed { 0 } else { l.runtime.len() },
                feed_entries: l.feed.then_some(l.runtime.len()),
            })
            .collect()
    }

    pub fn entries(&self, list: &str) -> Result<Vec<(Entry, EntrySource)>, AdminError> {
        let l = &self.lists[self.index(list)?];
        let file = l
            .file
            .iter()
            .flat_map(|f| f.data.iter().cloned().map(|e| (e, EntrySource::File)));
        let src = if l.feed {
            EntrySource::Feed
        } else {
            EntrySource::Runtime
        };
        let runtime = l.runtime.iter().cloned().map(move |e| (e, src));
        Ok(file.chain(runtime).collect())
    }
}
