//! A rule file polled for changes, and what was last loaded from it. A
//! file that cannot be read, or that is suddenly empty when it had entries
//! (a truncated write), keeps its previous contents on a reload.

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use metrics::Counter;

use super::ReloadError;
use crate::metrics as m;
use crate::rules::crawler::BadLine;

/// What says a file changed: its mtime and size (files polled for
/// changes: rule files, feed state).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    mtime: Option<SystemTime>,
    len: u64,
}

impl Stamp {
    pub(crate) fn of_meta(meta: &std::fs::Metadata) -> Self {
        Stamp {
            mtime: meta.modified().ok(),
            len: meta.len(),
        }
    }

    /// `None` when the file cannot be read.
    pub(crate) fn of(path: &Path) -> Option<Self> {
        std::fs::metadata(path).ok().map(|m| Self::of_meta(&m))
    }
}

/// A file and what was last loaded from it.
pub(super) struct FileState<T> {
    key: String,
    pub path: String,
    stamp: Option<Stamp>,
    pub data: Arc<T>,
    pub count: usize,
    /// Loads by outcome, registered once with the file.
    loaded_ok: Counter,
    loaded_err: Counter,
}

pub(super) enum Outcome {
    Unchanged,
    Updated,
    Kept,
}

impl<T> FileState<T> {
    pub fn new(key: String, path: String, empty: T, kind: &'static str) -> Self {
        let loads = |outcome: &'static str| metrics::counter!(m::RULE_RELOADS, "source" => kind, "outcome" => outcome);
        FileState {
            key,
            path,
            stamp: None,
            data: Arc::new(empty),
            count: 0,
            loaded_ok: loads("ok"),
            loaded_err: loads("error"),
        }
    }

    /// Re-reads the file if it changed (or `force`). `parse` returns the
    /// data, its entry count and bad lines.
    pub fn refresh(
        &mut self,
        force: bool,
        parse: impl FnOnce(&str, &Path) -> (T, usize, Vec<BadLine>),
    ) -> Result<Outcome, ReloadError> {
        let path = Path::new(&self.path);
        let read_err = |e: std::io::Error| ReloadError::Read {
            key: self.key.clone(),
            path: self.path.clone(),
            message: e.to_string(),
        };
        let meta = std::fs::metadata(path).map_err(read_err)?;
        let stamp = Stamp::of_meta(&meta);
        if !force && self.stamp == Some(stamp) {
            return Ok(Outcome::Unchanged);
        }
        let text = std::fs::read_to_string(path).map_err(read_err)?;
        if text.is_empty() && self.count > 0 {
            tracing::warn!(
                file = %self.path,
                kept = self.count,
                "file is empty; keeping its previous entries (write a comment line to empty a list on purpose)"
            );
            self.stamp = Some(stamp);
            self.loaded_err.increment(1);
            return Ok(Outcome::Kept);
        }
        let (data, count, bad) = parse(&text, path);
        for b in &bad {
            tracing::warn!(file = %self.path, line = b.line, error = %b.message, "skipping bad line");
        }
        tracing::info!(file = %self.path, entries = count, bad_lines = bad.len(), "loaded");
        self.stamp = Some(stamp);
        self.data = Arc::new(data);
        self.count = count;
        self.loaded_ok.increment(1);
        Ok(Outcome::Updated)
    }

    /// Like `refresh`, but a failure keeps the previous data (reloads).
    pub fn refresh_or_keep(
        &mut self,
        force: bool,
        parse: impl FnOnce(&str, &Path) -> (T, usize, Vec<BadLine>),
    ) -> bool {
        match self.refresh(force, parse) {
            Ok(Outcome::Updated) => true,
            Ok(Outcome::Unchanged | Outcome::Kept) => false,
            Err(e) => {
                if self.stamp.is_some() {
                    tracing::warn!(error = %e, kept = self.count, "reload failed; keeping the previous contents");
                    // Retry on the next poll even if the file's stamp is back.
                    self.stamp = None;
                    self.loaded_err.increment(1);
                }
                false
            }
        }
    }
}
