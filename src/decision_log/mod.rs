//! The decision log: every decision of every door, recorded off the hot
//! path and queryable within a second.
//!
//! The scorer encodes each decision's record into a bounded queue (per-thread buffers,
//! `queue.rs`) and never waits on disk: when the queue is full the record
//! is dropped and counted (`fraudgate_log_dropped_total`), or, with
//! `decision_log.on_full = "block"`, the request waits for room (at most
//! `block_timeout_ms`). One writer thread drains the
//! queue in batches (one transaction each) into the store; shutdown
//! writes what is queued and closes the store. A crash loses at most the batch being written,
//! and SQLite's WAL never leaves the store corrupt.

pub mod batch;
pub mod clickhouse;
pub mod columns;
pub mod config;
pub mod ivt;
mod queue;
pub mod record;
pub mod sink;
pub mod sqlite;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use metrics::Counter;

use crate::backoff::Backoff;
use crate::decision::{Decision, Door};
use crate::event::Event;
use crate::metrics as m;
pub use batch::{Batch, Records};
pub use clickhouse::ClickHouseConfig;
pub use columns::Row;
pub use config::{DecisionLogConfig, IpMode, OnFull, Store};
pub use ivt::{Ivt, IvtClass, IvtConfig, IvtMap};
use queue::Queue;
pub use record::Record;
use sink::{Health, Sink};

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("cannot open the decision log at {0}: {1}")]
    Open(String, String),
    #[error("decision log write failed: {0}")]
    Write(String),
    /// The SQLite file is damaged (not a database, malformed, cut short):
    /// it is moved aside and a fresh store opened.
    #[error("decision log store is damaged: {0}")]
    Corrupt(String),
    /// No store is open (it could not be opened; opening is retried
    /// every few seconds): records are dropped and counted meanwhile.
    #[error("decision log store unavailable: {0}")]
    Unavailable(String),
    /// The store refused the batch in a way a retry cannot change (bad
    /// credentials, no rights, a table of another shape): dropped.
    #[error("decision log store refused the batch: {0}")]
    Rejected(String),
}

/// The hot path's handle: cheap to clone.
#[derive(Clone)]
pub struct DecisionLog {
    inner: Arc<Inner>,
}

struct Inner {
    queue: Arc<Queue>,
    on_full: OnFull,
    /// `on_full = "block"`: the longest a request waits for room.
    block_timeout: Duration,
    dropped: Counter,
    health: Arc<Health>,
    /// Shutdown has begun: a batch that fails is not retried again.
    closing: Arc<AtomicBool>,
    account: Arc<Mutex<Account>>,
    /// Resolves when the writer thread has ended (its sender dropped),
    /// its store closed. Awaited by [`DecisionLog::close`].
    ended: Mutex<Option<tokio::sync::oneshot::Receiver<()>>>,
}

/// The records the writer holds, for shutdown's account: what a writer
/// given up at the shutdown deadline still held is counted as dropped
/// once, by whoever settles it first (under this lock).
#[derive(Default)]
struct Account {
    in_hand: u64,
    /// Shutdown gave up waiting: the writer counts nothing more.
    abandoned: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Drop for Inner {
    /// The last handle is gone: the writer writes what is queued and ends.
    fn drop(&mut self) {
        // As at shutdown: what fails from now on is given up, not retried.
        self.closing.store(true, Ordering::Release);
        self.queue.close();
    }
}

/// Waits between attempts at a batch that failed (ClickHouse down, disk
/// full): doubling from 100 ms up to 5 s.
const BACKOFF: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));

impl DecisionLog {
    /// Opens the store and starts the writer thread. A store that cannot
    /// open does not stop it (see [`sink`]): only a thread that cannot
    /// start is an error.
    pub fn start(c: &DecisionLogConfig, ivt: IvtMap) -> Result<Self, LogError> {
        let health = Arc::new(Health::default());
        let mut writer = Sink::start(c, ivt, health.clone());
        let queue = Arc::new(Queue::new(c.queue.max(1), Queue::shards_for_machine()));
        let q = queue.clone();
        let written = metrics::counter!(m::LOG_WRITTEN);
        let errors = metrics::counter!(m::LOG_ERRORS);
        let dropped = metrics::counter!(m::LOG_DROPPED);
        let closing = Arc::new(AtomicBool::new(false));
        let closing_w = closing.clone();
        let account = Arc::new(Mutex::new(Account::default()));
        let account_w = account.clone();
        let (ended_tx, ended) = tokio::sync::oneshot::channel::<()>();
        let batch_max = c.batch_max.max(1);
        let flush = Duration::from_millis(c.flush_ms);
        // Between looks at the queue while a batch collects: a few dozen
        // wake-ups a second at any rate (each would preempt a request
        // worker on a busy machine), well within flush_ms.
        let poll = (flush / 8).clamp(Duration::from_millis(2), Duration::from_millis(25));
        std::thread::Builder::new()
            .name("decision-log".into())
            .spawn(move || {
                // Dropped last (after the store is closed): close() stops
                // waiting.
                let _ended = ended_tx;
                q.set_writer(std::thread::current());
                // However the thread ends (a panic too), nobody waits on it.
                struct Gone(Arc<Queue>);
                impl Drop for Gone {
                    fn drop(&mut self) {
                        self.0.writer_gone();
                    }
                }
                let _gone = Gone(q.clone());
                let mut batch = Batch::default();
                // Takes what is queued into the batch, accounted; false
                // once shutdown has given the writer up.
                let drain = |batch: &mut Batch| {
                    let mut a = lock(&account_w);
                    if a.abandoned {
                        return false;
                    }
                    q.drain_into(batch);
                    a.in_hand = batch.len() as u64;
                    true
                };
                // Counts a chunk written or dropped (unless shutdown has
                // counted it already).
                let settle = |n: usize, counter: &Counter| {
                    let mut a = lock(&account_w);
                    if !a.abandoned {
                        a.in_hand = a.in_hand.saturating_sub(n as u64);
                        counter.increment(n as u64);
                    }
                };
                'run: loop {
                    // Read before draining: once closed, nothing more is
                    // pushed, so an empty drain after it is the end.
                    let closed = q.is_closed();
                    if !drain(&mut batch) {
                        break;
                    }
                    if batch.is_empty() {
                        if closed {
                            break;
                        }
                        std::thread::park_timeout(Duration::from_secs(1));
                        continue;
                    }
                    // Collect for up to flush_ms: one commit per batch, not
                    // per handful of records (each commit writes whole pages).
                    let until = std::time::Instant::now() + flush;
                    while batch.len() < batch_max && !q.is_closed() {
                        let now = std::time::Instant::now();
                        if now >= until {
                            break;
                        }
                        std::thread::sleep(poll.min(until - now));
                        if !drain(&mut batch) {
                            break 'run;
                        }
                    }
                    // A failed batch is retried with backoff while the
                    // queue holds what comes next (beyond its bound,
                    // records are dropped and counted on the hot path);
                    // once shutdown has begun it is given up.
                    // At most batch_max records a transaction (a drain can
                    // bring more: it takes whole buffers).
                    for chunk in batch.records().chunks(batch_max) {
                        let mut failures = 0;
                        loop {
                            if lock(&account_w).abandoned {
                                break 'run;
                            }
                            let e = match writer.write(chunk) {
                                Ok(()) => {
                                    settle(chunk.len(), &written);
                                    break;
                                }
                                Err(e) => e,
                            };
                            if let LogError::Unavailable(_) = e {
                                // (Said once, when the store went away.)
                                settle(chunk.len(), &dropped);
                                break;
                            }
                            errors.increment(1);
                            if let LogError::Rejected(_) = e {
                                tracing::error!(error = %e, records = chunk.len(), "decision log batch dropped: the store refuses it");
                                settle(chunk.len(), &dropped);
                                break;
                            } else if closing_w.load(Ordering::Acquire) {
                                tracing::warn!(error = %e, records = chunk.len(), "decision log batch lost at shutdown");
                                settle(chunk.len(), &dropped);
                                break;
                            }
                            failures += 1;
                            let wait = BACKOFF.after(failures);
                            tracing::warn!(error = %e, records = chunk.len(), retry_in_ms = wait.as_millis() as u64, "decision log write failed; retrying");
                            std::thread::sleep(wait);
                        }
                    }
                    // Its buffers go back to the queue's shards as they
                    // are drained next (an outage's backlog is given
                    // back); room for twice the usual batch's places.
                    batch.clear_keeping(2 * batch_max);
                    if let Err(e) = writer.retention(crate::event::now_unix() as i64 * 1000) {
                        tracing::warn!(error = %e, "decision log retention failed");
                    }
                }
                // The store is closed (SQLite checkpoints its WAL into the
                // file) before close() hears that the thread has ended.
                drop(writer);
            })
            .map_err(|e| LogError::Open(c.path.clone(), e.to_string()))?;
        Ok(DecisionLog {
            inner: Arc::new(Inner {
                queue,
                on_full: c.on_full,
                block_timeout: Duration::from_millis(c.block_timeout_ms),
                dropped: metrics::counter!(m::LOG_DROPPED),
                health,
                closing,
                account,
                ended: Mutex::new(Some(ended)),
            }),
        })
    }

    /// Queues the record of a decision; never waits on disk. With
    /// `on_full = "block"` waits for room, at most
    /// `decision_log.block_timeout_ms`.
    pub async fn record(&self, event: &Event, d: &Decision, door: Door, client: Option<&str>) {
        let encode = |out: &mut Vec<u8>| record::encode(event, d, door, client, out);
        let queued = self.inner.queue.push(encode)
            || match self.inner.on_full {
                OnFull::Drop => false,
                // (No timer armed unless the queue is full.)
                OnFull::Block => tokio::time::timeout(
                    self.inner.block_timeout,
                    self.inner.queue.push_waiting(encode),
                )
                .await
                .unwrap_or(false),
            };
        if !queued {
            self.inner.dropped.increment(1);
        }
    }

    /// Shutdown: writes everything queued within `within`, then ends the
    /// writer, which closes the store (SQLite then checkpoints its WAL
    /// into the file and removes it: a stopped store is one file).
    /// Whatever is not written by then (a store that hangs) is counted as
    /// dropped and left behind: this returns within `within` whatever the
    /// store does. Records offered after this are dropped and counted.
    pub async fn close(&self, within: Duration) {
        self.inner.closing.store(true, Ordering::Release);
        self.inner.queue.close();
        let ended = lock(&self.inner.ended).take();
        let Some(ended) = ended else {
            return;
        };
        // (Awaited, not joined on a blocking thread: the runtime would
        // wait for that thread as it shuts down.)
        if tokio::time::timeout(within, ended).await.is_ok() {
            return;
        }
        let lost = {
            let mut a = lock(&self.inner.account);
            a.abandoned = true;
            // Nothing more is queued; what is, is counted here.
            self.inner.queue.writer_gone();
            let mut left = Batch::default();
            self.inner.queue.drain_into(&mut left);
            std::mem::take(&mut a.in_hand) + left.len() as u64
        };
        self.inner.dropped.increment(lost);
        tracing::error!(
            dropped = lost,
            timeout_ms = within.as_millis() as u64,
            "decision log store did not take the last records within the shutdown timeout: dropped"
        );
    }

    /// The store's state for `/readyz`: `ok`, or `failing: <cause>`.
    pub fn status(&self) -> String {
        self.inner.health.status()
    }
}

/// The store's secret salt for hashed IPs, created once.
fn salt(dir: &Path) -> Result<[u8; 32], LogError> {
    let err = |e: std::io::Error| LogError::Open(dir.display().to_string(), e.to_string());
    std::fs::create_dir_all(dir).map_err(err)?;
    let file = dir.join("ip-salt");
    if let Ok(bytes) = std::fs::read(&file) {
        if let Ok(s) = <[u8; 32]>::try_from(bytes.as_slice()) {
            return Ok(s);
        }
    }
    use rand::Rng;
    let s: [u8; 32] = rand::rng().random();
    std::fs::write(&file, s).map_err(err)?;
    Ok(s)
}
