//! The writer thread: takes what the queue holds into a batch, lets it
//! collect for up to `flush_ms`, writes it a transaction per `batch_max`
//! records (a failure retried with backoff), then applies the retention.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use metrics::Counter;

use super::queue::Queue;
use super::sink::Sink;
use super::{Account, lock};
use crate::backoff::Backoff;
use crate::decision_log::{Batch, DecisionLogConfig, LogError, Records};
use crate::metrics as m;

/// Waits between attempts at a batch that failed (ClickHouse down, disk
/// full): doubling from 100 ms up to 5 s.
const BACKOFF: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));

/// What the writer thread owns.
pub(super) struct Writer {
    queue: Arc<Queue>,
    /// (Declared before `ended`: fields drop in order, so the store is
    /// closed before `ended` goes, also when the thread panics.)
    sink: Sink,
    /// Shutdown has begun: a batch that fails is not retried again.
    closing: Arc<AtomicBool>,
    account: Arc<Mutex<Account>>,
    /// Most records in one transaction.
    batch_max: usize,
    /// How long a batch collects at most.
    flush: Duration,
    /// Between looks at the queue while a batch collects.
    poll: Duration,
    written: Counter,
    errors: Counter,
    dropped: Counter,
    /// Dropped once the store is closed: `DecisionLog::close` stops
    /// waiting.
    ended: tokio::sync::oneshot::Sender<()>,
}

/// However the thread ends (a panic too), nobody waits on it.
struct Gone(Arc<Queue>);

impl Drop for Gone {
    fn drop(&mut self) {
        self.0.writer_gone();
    }
}

impl Writer {
    pub(super) fn new(
        c: &DecisionLogConfig,
        sink: Sink,
        queue: Arc<Queue>,
        (closing, account): (Arc<AtomicBool>, Arc<Mutex<Account>>),
        ended: tokio::sync::oneshot::Sender<()>,
    ) -> Self {
        let flush = Duration::from_millis(c.flush_ms);
        Writer {
            queue,
            sink,
            closing,
            account,
            batch_max: c.batch_max.max(1),
            flush,
            // A few dozen wake-ups a second at any rate (each would
            // preempt a request worker on a busy machine), well within
            // flush_ms.
            poll: (flush / 8).clamp(Duration::from_millis(2), Duration::from_millis(25)),
            written: metrics::counter!(m::LOG_WRITTEN),
            errors: metrics::counter!(m::LOG_ERRORS),
            dropped: metrics::counter!(m::LOG_DROPPED),
            ended,
        }
    }

    /// The thread: batches until the queue is closed and empty, or
    /// shutdown gives the writer up; then closes the store.
    pub(super) fn run(mut self) {
        self.queue.set_writer(std::thread::current());
        let gone = Gone(self.queue.clone());
        let mut batch = Batch::default();
        while self.collect(&mut batch) && self.write(&batch) {
            // Its buffers go back to the queue's shards as they are
            // drained next (an outage's backlog is given back); room for
            // twice the usual batch's places.
            batch.clear_keeping(2 * self.batch_max);
            if let Err(e) = self.sink.retention(crate::event::now_unix() as i64 * 1000) {
                tracing::warn!(error = %e, "decision log retention failed");
            }
        }
        // The store is closed (SQLite checkpoints its WAL into the file),
        // and pushes refused, before close() hears that the thread ended.
        let Writer { sink, ended, .. } = self;
        drop(sink);
        drop(gone);
        drop(ended);
    }

    /// Takes what is queued into `batch`, sleeping (parked) while there is
    /// nothing, then lets it collect for up to `flush_ms`: one commit per
    /// batch, not per handful of records (each commit writes whole pages).
    /// False when the writer is done: the queue closed and empty, or
    /// shutdown has given the writer up.
    fn collect(&self, batch: &mut Batch) -> bool {
        loop {
            // Read before draining: once closed, nothing more is pushed,
            // so an empty drain after it is the end.
            let closed = self.queue.is_closed();
            if !self.drain(batch) {
                return false;
            }
            if !batch.is_empty() {
                break;
            }
            if closed {
                return false;
            }
            std::thread::park_timeout(Duration::from_secs(1));
        }
        let until = Instant::now() + self.flush;
        while batch.len() < self.batch_max && !self.queue.is_closed() {
            let now = Instant::now();
            if now >= until {
                break;
            }
            std::thread::sleep(self.poll.min(until - now));
            if !self.drain(batch) {
                return false;
            }
        }
        true
    }

    /// Takes what is queued into the batch, accounted; false once
    /// shutdown has given the writer up.
    fn drain(&self, batch: &mut Batch) -> bool {
        let mut a = lock(&self.account);
        if a.abandoned {
            return false;
        }
        self.queue.drain_into(batch);
        a.in_hand = batch.len() as u64;
        true
    }

    /// Counts a chunk written or dropped (unless shutdown has counted it
    /// already).
    fn settle(&self, n: usize, counter: &Counter) {
        let mut a = lock(&self.account);
        if !a.abandoned {
            a.in_hand = a.in_hand.saturating_sub(n as u64);
            counter.increment(n as u64);
        }
    }

    /// Writes the batch, at most `batch_max` records a transaction (a
    /// drain can bring more: it takes whole buffers). False once shutdown
    /// has given the writer up.
    fn write(&mut self, batch: &Batch) -> bool {
        let batch_max = self.batch_max;
        batch
            .records()
            .chunks(batch_max)
            .all(|chunk| self.write_chunk(chunk))
    }

    /// Writes one transaction's records. A failure is retried with backoff
    /// while the queue holds what comes next (beyond its bound, records
    /// are dropped and counted on the hot path); once shutdown has begun
    /// it is given up, as is a chunk the store refuses or one with no
    /// store open. False once shutdown has given the writer up.
    fn write_chunk(&mut self, chunk: Records<'_>) -> bool {
        let mut failures = 0;
        loop {
            if lock(&self.account).abandoned {
                return false;
            }
            let e = match self.sink.write(chunk) {
                Ok(()) => {
                    self.settle(chunk.len(), &self.written);
                    return true;
                }
                Err(e) => e,
            };
            if let LogError::Unavailable(_) = e {
                // (Said once, when the store went away.)
                self.settle(chunk.len(), &self.dropped);
                return true;
            }
            self.errors.increment(1);
            if let LogError::Rejected(_) = e {
                tracing::error!(error = %e, records = chunk.len(), "decision log batch dropped: the store refuses it");
                self.settle(chunk.len(), &self.dropped);
                return true;
            } else if self.closing.load(Ordering::Acquire) {
                tracing::warn!(error = %e, records = chunk.len(), "decision log batch lost at shutdown");
                self.settle(chunk.len(), &self.dropped);
                return true;
            }
            failures += 1;
            let wait = BACKOFF.after(failures);
            tracing::warn!(error = %e, records = chunk.len(), retry_in_ms = wait.as_millis() as u64, "decision log write failed; retrying");
            std::thread::sleep(wait);
        }
    }
}
