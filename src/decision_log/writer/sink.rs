//! The writer thread's store, kept usable whatever its volume does.
//!
//! Deciding comes first: a store that cannot open never stops the gate.
//! The writer starts without one, drops and counts what comes
//! (`fraudgate_log_dropped_total`), says so in `/readyz` and tries to open
//! it again every few seconds. A damaged SQLite file (not a database,
//! malformed, cut short) is moved aside (`decisions.sqlite.corrupt-<unix
//! time>`, kept for forensics) and a fresh store opened. A file deleted or
//! replaced under the running service (its path no longer names the file
//! the writer has open: one `stat` a batch) is noticed before the next
//! batch and a fresh store opened, instead of writing on to a file nobody
//! can read.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use metrics::Counter;

use super::lock;
use crate::decision_log::{
    DecisionLogConfig, IpMode, IvtMap, LogError, Records, Store, clickhouse, sqlite,
};
use crate::metrics as m;

/// Between attempts to open a store that would not open.
pub const REOPEN_EVERY: Duration = Duration::from_secs(5);

/// What went wrong with the store itself: the `cause` label of
/// `fraudgate_log_store_failures_total`.
#[derive(Debug, Clone, Copy)]
pub enum Failure {
    /// A damaged SQLite file, moved aside.
    Corrupt,
    /// An attempt to open the store failed.
    Unavailable,
    /// The SQLite file was deleted or replaced under the writer.
    Replaced,
}

impl Failure {
    pub const ALL: [Failure; 3] = [Failure::Corrupt, Failure::Unavailable, Failure::Replaced];

    pub fn as_str(self) -> &'static str {
        match self {
            Failure::Corrupt => "corrupt",
            Failure::Unavailable => "unavailable",
            Failure::Replaced => "replaced",
        }
    }
}

/// The store's state as `/readyz` tells it: set by the writer thread.
#[derive(Default)]
pub struct Health {
    failing: AtomicBool,
    cause: Mutex<String>,
}

impl Health {
    fn ok(&self) {
        if self.failing.swap(false, Ordering::AcqRel) {
            tracing::info!("decision log store is written again");
        }
    }

    /// `/readyz` answers anyone who reaches the port: it tells what kind
    /// of failure, never the store's text (paths, server messages); the
    /// ERROR log line has the detail.
    fn failing(&self, cause: &LogError) {
        let kind = match cause {
            LogError::Open(..) => "cannot open the store",
            LogError::Write(_) => "writes fail",
            LogError::Corrupt(_) => "the store was damaged",
            LogError::Unavailable(_) => "no store open",
            LogError::Rejected(_) => "the store refuses batches",
        };
        *lock(&self.cause) = format!("{kind} (see the log)");
        self.failing.store(true, Ordering::Release);
    }

    fn is_failing(&self) -> bool {
        self.failing.load(Ordering::Acquire)
    }

    /// `ok`, or `failing: <cause>`.
    pub fn status(&self) -> String {
        if self.is_failing() {
            let cause = lock(&self.cause);
            format!("failing: {cause}")
        } else {
            "ok".into()
        }
    }
}

enum Open {
    Sqlite {
        writer: Box<sqlite::Writer>,
        /// (device, inode) of the file when it was opened.
        file: Option<(u64, u64)>,
    },
    ClickHouse(Box<clickhouse::Writer>),
}

/// Where the writer thread writes, or that nothing is open.
pub struct Sink {
    config: DecisionLogConfig,
    ivt: IvtMap,
    open: Option<Open>,
    /// When to try again to open a store that would not open.
    retry_at: Instant,
    health: Arc<Health>,
    failures: [Counter; 3],
}

impl Sink {
    /// Opens the configured store, or starts without one: never fails.
    pub fn start(config: &DecisionLogConfig, ivt: IvtMap, health: Arc<Health>) -> Self {
        let mut s = Sink {
            config: config.clone(),
            ivt,
            open: None,
            retry_at: Instant::now(),
            health,
            failures: Failure::ALL
                .map(|f| metrics::counter!(m::LOG_STORE_FAILURES, "cause" => f.as_str())),
        };
        s.reopen();
        s
    }

    fn path(&self) -> PathBuf {
        PathBuf::from(&self.config.path)
    }

    fn count(&self, f: Failure) {
        self.failures[f as usize].increment(1);
    }

    /// Closes what is open and opens the store; a damaged SQLite file is
    /// moved aside and a fresh one opened.
    fn reopen(&mut self) {
        // Closed first: SQLite's close removes its WAL by name, which
        // must not be the new store's.
        self.open = None;
        let opened = match self.try_open() {
            Err(LogError::Corrupt(cause)) => {
                self.damaged(&cause);
                self.try_open()
            }
            other => other,
        };
        match opened {
            Ok(o) => {
                self.open = Some(o);
                self.health.ok();
            }
            Err(e) => {
                self.count(Failure::Unavailable);
                if self.health.is_failing() {
                    tracing::warn!(error = %e, retry_in_s = REOPEN_EVERY.as_secs(), "decision log store still cannot open");
                } else {
                    tracing::error!(error = %e, retry_in_s = REOPEN_EVERY.as_secs(), "decision log store cannot open: decisions go on, their records are dropped and counted until it opens");
                }
                self.health.failing(&e);
                self.retry_at = Instant::now() + REOPEN_EVERY;
            }
        }
    }

    /// A damaged SQLite file (nothing open on it): counted, moved aside.
    fn damaged(&self, cause: &str) {
        self.count(Failure::Corrupt);
        let aside = move_aside(&self.path());
        tracing::error!(error = %cause, moved_to = ?aside, "decision log store is damaged: moved aside, opening a fresh one");
    }

    fn try_open(&self) -> Result<Open, LogError> {
        let c = &self.config;
        let path = self.path();
        let salt = if c.ip == IpMode::Hashed {
            Some(if c.ip_salt.expose().is_empty() {
                salt_file(&path)?
            } else {
                let d = ring::digest::digest(&ring::digest::SHA256, c.ip_salt.expose().as_bytes());
                <[u8; 32]>::try_from(d.as_ref()).unwrap_or_default()
            })
        } else {
            None
        };
        let days = c.retention_days.max(1);
        Ok(match c.store {
            Store::Sqlite => {
                let mut w = sqlite::Writer::open(&path, self.ivt.clone(), c.ip, days)?;
                w.set_salt(salt);
                Open::Sqlite {
                    file: identity(&path).ok(),
                    writer: Box::new(w),
                }
            }
            Store::Clickhouse => {
                let mut w =
                    clickhouse::Writer::new(c.clickhouse.clone(), self.ivt.clone(), c.ip, days);
                w.set_salt(salt);
                Open::ClickHouse(Box::new(w))
            }
        })
    }

    /// Writes a batch in one transaction. [`LogError::Unavailable`] while
    /// no store is open.
    pub fn write(&mut self, batch: Records<'_>) -> Result<(), LogError> {
        if self.open.is_none() && Instant::now() >= self.retry_at {
            self.reopen();
        }
        self.check_file();
        let result = match &mut self.open {
            None => return Err(LogError::Unavailable(self.health.status())),
            Some(Open::Sqlite { writer, .. }) => writer.write_records(batch),
            Some(Open::ClickHouse(w)) => w.write(&batch.decode()),
        };
        match &result {
            Ok(()) => self.health.ok(),
            Err(LogError::Corrupt(cause)) => {
                self.open = None;
                self.damaged(cause);
                // The batch is retried on the fresh store.
                self.reopen();
            }
            Err(e) => self.health.failing(e),
        }
        result
    }

    /// Notices a SQLite file deleted or replaced under the writer (one
    /// `stat`), and opens a fresh store at its path.
    fn check_file(&mut self) {
        let Some(Open::Sqlite {
            file: Some(was), ..
        }) = &self.open
        else {
            return;
        };
        let replaced = match identity(&self.path()) {
            Ok(now) => now != *was,
            Err(e) => e.kind() == ErrorKind::NotFound,
        };
        if replaced {
            self.count(Failure::Replaced);
            tracing::error!(
                path = %self.path().join(sqlite::FILE).display(),
                "decision log store was deleted or replaced under the running service: \
                 opening a fresh one (what was written to the old file is not in it)"
            );
            self.reopen();
        }
    }

    pub fn retention(&mut self, now_ms: i64) -> Result<Vec<String>, LogError> {
        match &mut self.open {
            None => Ok(Vec::new()),
            Some(Open::Sqlite { writer, .. }) => writer.retention(now_ms),
            Some(Open::ClickHouse(w)) => w.retention(now_ms),
        }
    }
}

impl Drop for Sink {
    /// The writer thread ends: what a ClickHouse Buffer table holds is
    /// written to the table (SQLite's connection checkpoints as it
    /// closes).
    fn drop(&mut self) {
        if let Some(Open::ClickHouse(w)) = &mut self.open {
            w.close();
        }
    }
}

/// (device, inode) of the SQLite file under `dir`.
fn identity(dir: &Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(dir.join(sqlite::FILE))?;
    Ok((m.dev(), m.ino()))
}

fn with_suffix(p: &Path, suffix: &str) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(suffix);
    s.into()
}

/// Moves a damaged store's file aside, with its WAL and shared memory:
/// `decisions.sqlite.corrupt-<unix time>` (kept for forensics; removing it
/// is the operator's call). The new name, if the file was moved.
fn move_aside(dir: &Path) -> Option<PathBuf> {
    let t = crate::event::now_unix();
    let file = dir.join(sqlite::FILE);
    let mut aside = dir.join(format!("{}.corrupt-{t}", sqlite::FILE));
    let mut n = 1;
    while aside.exists() {
        aside = dir.join(format!("{}.corrupt-{t}-{n}", sqlite::FILE));
        n += 1;
    }
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::rename(with_suffix(&file, suffix), with_suffix(&aside, suffix));
    }
    match std::fs::rename(&file, &aside) {
        Ok(()) => Some(aside),
        Err(e) => {
            tracing::error!(error = %e, "cannot move the damaged decision log store aside");
            None
        }
    }
}

/// The store's secret salt for hashed IPs, created once.
fn salt_file(dir: &Path) -> Result<[u8; 32], LogError> {
    let err = |e: std::io::Error| LogError::Open(dir.display().to_string(), e.to_string());
    std::fs::create_dir_all(dir).map_err(err)?;
    let file = dir.join("ip-salt");
    if let Ok(bytes) = std::fs::read(&file)
        && let Ok(s) = <[u8; 32]>::try_from(bytes.as_slice())
    {
        return Ok(s);
    }
    use rand::Rng;
    let s: [u8; 32] = rand::rng().random();
    std::fs::write(&file, s).map_err(err)?;
    Ok(s)
}
