//! The hand-off between the hot path and the decision log's writer thread.
//!
//! A channel costs every record several atomic operations on cache lines
//! that all request workers and the writer share, and a wake-up of the
//! writer: measured here, that was half of what logging cost a cache hit.
//! Instead each thread pushes into its own buffer (a shard: a mutex no
//! other request worker takes, so locking it is uncontended) and the
//! writer swaps whole buffers out a few dozen times a second. A buffer is
//! bytes, each record encoded onto its end (`record::encode`), and where
//! each begins, so queueing allocates nothing once the buffers have grown,
//! and the writer moves them into its batch (`batch.rs`), reads them in
//! place and hands them back emptied. Each shard holds `queue / shards`
//! records; a thread whose shard is full uses the others, so the buffers
//! never hold more than `decision_log.queue` and one busy thread can fill
//! all of it. (Besides them, the writer holds the batch it is writing, and
//! the buffers of the last one, emptied, for the shards.) The writer
//! sleeps (parked) while every shard is empty; the first push into an
//! empty shard wakes it.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::thread::Thread;

use tokio::sync::Notify;

use super::lock;
use crate::decision_log::batch::{Batch, Buffer};

/// One thread's buffer, on its own cache lines.
#[repr(align(128))]
struct Shard(Mutex<Buffer>);

pub struct Queue {
    shards: Box<[Shard]>,
    /// Records one shard holds at most.
    cap: usize,
    writer: OnceLock<Thread>,
    /// Signalled after the writer empties the shards (for `on_full = "block"`).
    space: Notify,
    closed: AtomicBool,
    /// The writer thread has ended (or panicked): nothing more is written.
    gone: AtomicBool,
}

/// Which shard this thread pushes into: threads take shards in turn.
fn shard_index(len: usize) -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    INDEX.with(|i| {
        if i.get() == usize::MAX {
            i.set(NEXT.fetch_add(1, Ordering::Relaxed));
        }
        i.get() % len
    })
}

impl Queue {
    /// Room for `total` records across `shards` buffers.
    pub fn new(total: usize, shards: usize) -> Self {
        let shards = shards.clamp(1, total.max(1));
        let cap = (total / shards).max(1);
        Queue {
            shards: (0..shards).map(|_| Shard(Mutex::default())).collect(),
            cap,
            writer: OnceLock::new(),
            space: Notify::new(),
            closed: AtomicBool::new(false),
            gone: AtomicBool::new(false),
        }
    }

    /// Shards for this machine: two per core, so request workers rarely
    /// share one.
    pub fn shards_for_machine() -> usize {
        std::thread::available_parallelism().map_or(4, |n| n.get() * 2)
    }

    /// The thread woken by pushes and close.
    pub fn set_writer(&self, t: Thread) {
        let _ = self.writer.set(t);
    }

    fn wake(&self) {
        if let Some(t) = self.writer.get() {
            t.unpark();
        }
    }

    /// Queues a record (`encode` appends it to the buffer it is given);
    /// false when every shard is full.
    pub fn push(&self, encode: impl Fn(&mut Vec<u8>)) -> bool {
        // Read-mostly: the cache line stays shared, so this is cheap.
        if self.gone.load(Ordering::Relaxed) {
            return false;
        }
        let n = self.shards.len();
        let own = shard_index(n);
        // This thread's shard; only when it is full, the others in turn, so
        // one busy thread can use the whole bound.
        for i in 0..n {
            let mut b = lock(&self.shards[(own + i) % n].0);
            if b.len() >= self.cap {
                continue;
            }
            let first = b.is_empty();
            b.append(&encode);
            drop(b);
            if first {
                self.wake();
            }
            return true;
        }
        false
    }

    /// Queues a record, waiting while every shard is full. False only
    /// once the queue is closed.
    pub async fn push_waiting(&self, encode: impl Fn(&mut Vec<u8>)) -> bool {
        loop {
            let space = self.space.notified();
            tokio::pin!(space);
            // Registered before the attempt: a drain in between still wakes us.
            space.as_mut().enable();
            if self.push(&encode) {
                return true;
            }
            if self.closed.load(Ordering::Acquire) {
                return false;
            }
            space.await;
        }
    }

    /// Moves everything queued onto the end of `batch`: each shard's
    /// buffer as it is, swapped for an empty one the batch kept (so its
    /// capacity is reused).
    pub fn drain_into(&self, batch: &mut Batch) {
        let mut moved = false;
        for s in self.shards.iter() {
            let mut b = lock(&s.0);
            if b.is_empty() {
                continue;
            }
            let taken = std::mem::replace(&mut *b, batch.spare());
            drop(b);
            batch.push(taken);
            moved = true;
        }
        if moved {
            self.space.notify_waiters();
        }
    }

    /// Called by the writer thread as it ends, also by unwinding: waiting
    /// pushes give up (their records counted as dropped) instead of
    /// waiting for a writer that is not there.
    pub fn writer_gone(&self) {
        self.gone.store(true, Ordering::SeqCst);
        self.close();
    }

    /// No more pushes will come: the writer writes what is left and ends.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.space.notify_waiters();
        self.wake();
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Queues record `i` (its id ends in `i`).
    fn push(q: &Queue, i: u128) -> bool {
        let r = crate::decision_log::record::tests::record(1_764_700_000_000, i);
        q.push(|out| r.encode(out))
    }

    /// The last byte of each id in the batch, in order.
    fn ids(b: &Batch) -> Vec<u128> {
        b.records().iter().map(|e| e.id.0 & 0xff).collect()
    }

    #[test]
    fn holds_at_most_its_bound_and_drains_in_push_order() {
        let q = Queue::new(4, 1);
        for i in 0..4 {
            assert!(push(&q, i));
        }
        assert!(!push(&q, 9), "a fifth record is over the bound");
        let mut batch = Batch::default();
        q.drain_into(&mut batch);
        assert_eq!(ids(&batch), [0, 1, 2, 3]);
        assert!(push(&q, 5), "draining makes room");
        q.drain_into(&mut batch);
        assert_eq!(ids(&batch), [0, 1, 2, 3, 5]);
        batch.clear_keeping(8);
        assert!(push(&q, 6));
        // The shard is given a buffer the batch emptied.
        q.drain_into(&mut batch);
        assert!(push(&q, 7), "into the buffer the batch emptied");
        batch.clear_keeping(8);
        q.drain_into(&mut batch);
        assert_eq!(
            ids(&batch),
            [7],
            "a reused buffer holds only the new record"
        );
    }

    #[test]
    fn the_first_record_into_an_empty_buffer_wakes_the_writer() {
        let q = std::sync::Arc::new(Queue::new(4, 1));
        let (tx, rx) = std::sync::mpsc::channel();
        let q2 = q.clone();
        let writer = std::thread::spawn(move || {
            q2.set_writer(std::thread::current());
            tx.send(()).unwrap();
            let mut batch = Batch::default();
            // Parked with no timeout: only a wake-up (or a rare spurious
            // return) brings it back to look.
            while batch.is_empty() {
                std::thread::park();
                q2.drain_into(&mut batch);
            }
            batch.len()
        });
        rx.recv().unwrap();
        assert!(push(&q, 1));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !writer.is_finished() {
            assert!(
                std::time::Instant::now() < deadline,
                "the writer was not woken"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(writer.join().unwrap(), 1);
    }

    #[test]
    fn a_record_whose_encoding_panics_leaves_no_bytes_behind() {
        let q = Queue::new(4, 1);
        assert!(push(&q, 1));
        let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            q.push(|out| {
                out.extend_from_slice(b"half a record");
                panic!("encoding failed");
            })
        }));
        assert!(unwound.is_err());
        assert!(push(&q, 2));
        let mut batch = Batch::default();
        q.drain_into(&mut batch);
        assert_eq!(ids(&batch), [1, 2]);
    }

    #[test]
    fn the_bound_is_split_across_shards_and_one_thread_can_fill_them_all() {
        let q = Queue::new(8, 4);
        assert_eq!(q.cap, 2);
        for i in 0..8 {
            assert!(push(&q, i), "record {i} fits");
        }
        assert!(!push(&q, 8));
        let mut batch = Batch::default();
        q.drain_into(&mut batch);
        let mut ids: Vec<_> = ids(&batch);
        ids.sort();
        assert_eq!(
            ids,
            (0..8).collect::<Vec<_>>(),
            "every record, from all shards"
        );
        assert_eq!(Queue::new(3, 8).shards.len(), 3);
    }

    /// A full one-record queue and a push waiting on it.
    async fn full_with_a_waiter() -> (std::sync::Arc<Queue>, tokio::task::JoinHandle<bool>) {
        let q = std::sync::Arc::new(Queue::new(1, 1));
        assert!(push(&q, 0));
        let q2 = q.clone();
        let r = crate::decision_log::record::tests::record(1_764_700_000_000, 1);
        let waiting = tokio::spawn(async move { q2.push_waiting(|out| r.encode(out)).await });
        tokio::task::yield_now().await;
        (q, waiting)
    }

    #[tokio::test]
    async fn a_waiting_push_resumes_when_the_writer_drains() {
        let (q, waiting) = full_with_a_waiter().await;
        assert!(!waiting.is_finished());
        let mut batch = Batch::default();
        q.drain_into(&mut batch);
        assert!(waiting.await.unwrap());
        q.drain_into(&mut batch);
        assert_eq!(ids(&batch), [0, 1]);
    }

    #[tokio::test]
    async fn a_queue_whose_writer_has_ended_refuses_records() {
        let q = Queue::new(4, 1);
        q.writer_gone();
        assert!(!push(&q, 0), "records are refused (and counted as dropped)");
    }

    #[tokio::test]
    async fn a_waiting_push_gives_up_when_the_queue_closes() {
        let (q, waiting) = full_with_a_waiter().await;
        q.close();
        assert!(!waiting.await.unwrap());
    }
}
