//! The writer: the hot path's handle on the log, and the one thread that
//! writes what it queues.
//!
//! The scorer encodes each decision's record into a bounded queue
//! (per-thread buffers, `queue.rs`) and never waits on disk: when the
//! queue is full the record is dropped and counted
//! (`fraudgate_log_dropped_total`), or, with `decision_log.on_full =
//! "block"`, the request waits for room (at most `block_timeout_ms`). One
//! writer thread (`thread.rs`) drains the queue in batches (one
//! transaction each) into the store (`sink.rs`); shutdown writes what is
//! queued and closes the store. A crash loses at most the batch being
//! written, and SQLite's WAL never leaves the store corrupt.

mod queue;
mod sink;
mod thread;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use metrics::Counter;

use crate::decision::{Decision, Door};
use crate::decision_log::{Batch, DecisionLogConfig, IvtMap, LogError, OnFull, record};
use crate::event::Event;
use crate::metrics as m;
use queue::Queue;
use sink::{Health, Sink};
use thread::Writer;

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

/// Locks `m` even if a holder panicked: what the writer's locks guard
/// (counts, flags, buffers) is never left half-changed.
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

impl DecisionLog {
    /// Opens the store and starts the writer thread. A store that cannot
    /// open does not stop it (see [`sink`]): only a thread that cannot
    /// start is an error.
    pub fn start(c: &DecisionLogConfig, ivt: IvtMap) -> Result<Self, LogError> {
        let health = Arc::new(Health::default());
        let sink = Sink::start(c, ivt, health.clone());
        let queue = Arc::new(Queue::new(c.queue.max(1), Queue::shards_for_machine()));
        let closing = Arc::new(AtomicBool::new(false));
        let account = Arc::new(Mutex::new(Account::default()));
        let (ended_tx, ended) = tokio::sync::oneshot::channel::<()>();
        let writer = Writer::new(
            c,
            sink,
            queue.clone(),
            (closing.clone(), account.clone()),
            ended_tx,
        );
        std::thread::Builder::new()
            .name("decision-log".into())
            .spawn(move || writer.run())
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
