//! What the writer takes from the queue: records as the hot path encoded
//! them, back to back in the queue's own buffers, and where each
//! begins. The embedded store reads them in place ([`Encoded`]) and
//! builds a [`Record`] only for a context it has not seen; ClickHouse
//! takes them decoded ([`Records::decode`]).

use super::record::{Encoded, Record};

/// Records encoded back to back, and where each begins: what a queue
/// shard fills. (The starts are noted as records are appended: reading
/// them back from the bytes cost the writer a cache miss a record, on
/// lines another core had just written.)
#[derive(Default)]
pub struct Buffer {
    bytes: Vec<u8>,
    starts: Vec<usize>,
}

/// Truncates the bytes back to `.1` when dropped (forgotten once the
/// record is whole).
struct Rollback<'a>(&'a mut Vec<u8>, usize);

impl Drop for Rollback<'_> {
    fn drop(&mut self) {
        self.0.truncate(self.1);
    }
}

impl Buffer {
    /// Records encoded into a buffer of their own.
    pub fn of<'a>(records: impl IntoIterator<Item = &'a Record>) -> Self {
        let mut b = Buffer::default();
        for r in records {
            b.append(|out| r.encode(out));
        }
        b
    }

    /// Records held.
    pub fn len(&self) -> usize {
        self.starts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    /// Appends a record (`encode` appends its bytes). Were encoding to
    /// unwind, its partial bytes are cut off and no start is noted for
    /// them: nothing reads them, and they do not sit in the buffer until
    /// the writer takes it.
    pub fn append(&mut self, encode: impl FnOnce(&mut Vec<u8>)) {
        let at = self.bytes.len();
        let rollback = Rollback(&mut self.bytes, at);
        encode(rollback.0);
        std::mem::forget(rollback);
        self.starts.push(at);
    }
}

#[derive(Default)]
pub struct Batch {
    /// The queue's buffers, as they were taken (not copied).
    bufs: Vec<Buffer>,
    /// Each record's buffer and where in it the record begins.
    starts: Vec<(usize, usize)>,
    /// Emptied buffers, for the queue's shards to fill next.
    free: Vec<Buffer>,
}

impl Batch {
    /// Encodes records (tests, benches, tools; the writer is handed bytes).
    pub fn of<'a>(records: impl IntoIterator<Item = &'a Record>) -> Self {
        let mut b = Batch::default();
        b.push(Buffer::of(records));
        b
    }

    pub fn len(&self) -> usize {
        self.starts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    /// An empty buffer for a queue shard (one this batch emptied, when
    /// there is one: its capacity is reused).
    pub fn spare(&mut self) -> Buffer {
        self.free.pop().unwrap_or_default()
    }

    /// Appends a buffer's records.
    pub fn push(&mut self, b: Buffer) {
        let buf = self.bufs.len();
        self.starts.extend(b.starts.iter().map(|&at| (buf, at)));
        self.bufs.push(b);
    }

    /// Empties the batch. The buffers it took are kept for
    /// [`Batch::spare`] (as many as it took: the next batch takes about as
    /// many, and the shards never grow a fresh one), each cut back to four
    /// times what this batch's buffers held on average: an outage's
    /// backlog is given back, so what is kept stays within a few times
    /// the usual batch. `starts` keeps room for `records`.
    pub fn clear_keeping(&mut self, records: usize) {
        let taken = self.bufs.len().max(1);
        let held: usize = self.bufs.iter().map(|b| b.bytes.len()).sum();
        let limit = 4 * (held / taken).max(1024);
        let starts_limit = 4 * (self.starts.len() / taken).max(16);
        // (Buffers kept from before and not taken since are surplus.)
        self.free.clear();
        for mut b in self.bufs.drain(..) {
            b.bytes.clear();
            b.bytes.shrink_to(limit);
            b.starts.clear();
            b.starts.shrink_to(starts_limit);
            self.free.push(b);
        }
        self.starts.clear();
        self.starts.shrink_to(records);
    }

    pub fn records(&self) -> Records<'_> {
        Records {
            bufs: &self.bufs,
            starts: &self.starts,
        }
    }
}

/// Some records of a [`Batch`], in its order.
#[derive(Clone, Copy)]
pub struct Records<'a> {
    bufs: &'a [Buffer],
    starts: &'a [(usize, usize)],
}

impl<'a> Records<'a> {
    pub fn len(&self) -> usize {
        self.starts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    /// The `i`th record, read in place.
    pub fn get(&self, i: usize) -> Encoded<'a> {
        let (b, at) = self.starts[i];
        Encoded::read(&mut &self.bufs[b].bytes[at..])
    }

    pub fn iter(&self) -> impl Iterator<Item = Encoded<'a>> + use<'a> {
        let bufs = self.bufs;
        self.starts
            .iter()
            .map(move |(b, at)| Encoded::read(&mut &bufs[*b].bytes[*at..]))
    }

    /// The first `n` records, and the rest.
    pub fn split_at(&self, n: usize) -> (Records<'a>, Records<'a>) {
        let (a, b) = self.starts.split_at(n);
        let part = |starts| Records {
            bufs: self.bufs,
            starts,
        };
        (part(a), part(b))
    }

    /// Runs of at most `n` records.
    pub fn chunks(&self, n: usize) -> impl Iterator<Item = Records<'a>> + use<'a> {
        let bufs = self.bufs;
        self.starts
            .chunks(n)
            .map(move |starts| Records { bufs, starts })
    }

    /// Every record built whole (one client allocation shared while it
    /// repeats): for the stores that take [`Record`]s.
    pub fn decode(&self) -> Vec<Record> {
        let mut last = None;
        self.iter().map(|e| e.decode(&mut last)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(i: u128) -> Record {
        crate::decision_log::record::tests::record(1_764_700_000_000, i)
    }

    #[test]
    fn records_read_back_in_order_whole_and_in_runs() {
        let want: Vec<Record> = (0..5).map(record).collect();
        let mut b = Batch::of(&want[..2]);
        b.push(Buffer::of(&want[2..]));
        assert_eq!(b.len(), 5);
        let all = b.records();
        let got = all.decode();
        assert_eq!(format!("{got:?}"), format!("{want:?}"));
        assert!(
            all.iter()
                .zip(&want)
                .all(|(e, r)| e.id == r.id && e.ts_ms() == r.ts_ms())
        );
        assert_eq!(all.get(3).id, want[3].id);
        let (head, tail) = all.split_at(2);
        assert_eq!((head.len(), tail.len(), tail.get(0).id), (2, 3, want[2].id));
        let runs: Vec<usize> = all.chunks(2).map(|c| c.len()).collect();
        assert_eq!(runs, [2, 2, 1]);
        assert_eq!(all.chunks(2).nth(2).unwrap().get(0).id, want[4].id);

        b.clear_keeping(1);
        assert!(b.is_empty() && b.records().iter().next().is_none());
        let spare = b.spare();
        assert!(
            spare.is_empty() && spare.bytes.capacity() > 0 && spare.starts.capacity() > 0,
            "kept for reuse"
        );
        b.push(spare);
        assert!(b.is_empty());
        // A reused buffer holds only what is pushed in it anew.
        b.clear_keeping(1);
        let mut again = b.spare();
        assert!(again.bytes.capacity() > 0, "the same buffer again");
        again.append(|out| want[4].encode(out));
        b.push(again);
        assert_eq!(b.len(), 1);
        assert_eq!(b.records().get(0).id, want[4].id);
    }

    #[test]
    fn a_record_whose_encoding_unwinds_leaves_nothing_in_the_buffer() {
        let one = record(1);
        let mut b = Buffer::of([&one]);
        let len = b.bytes.len();
        let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            b.append(|out| {
                out.extend_from_slice(b"half a record");
                panic!("encoding failed");
            })
        }));
        assert!(unwound.is_err());
        assert_eq!((b.len(), b.bytes.len()), (1, len));
        b.append(|out| record(2).encode(out));
        let mut batch = Batch::default();
        batch.push(b);
        let ids: Vec<u128> = batch.records().iter().map(|e| e.id.0 & 0xff).collect();
        assert_eq!(ids, [1, 2]);
    }

    /// Emptied buffers are kept for the queue's shards, as many as the
    /// batch took, none grown far past what the batch's buffers held.
    #[test]
    fn kept_buffers_are_bounded_in_number_and_size() {
        let one = record(1);
        let len = Buffer::of([&one]).bytes.len();
        let mut b = Batch::default();
        // An outage's backlog: one buffer of 20 000 records.
        b.push(Buffer::of(std::iter::repeat_n(&one, 20_000)));
        b.clear_keeping(10);
        let big = b.spare();
        assert!(
            big.bytes.capacity() >= 20_000 * len && big.starts.capacity() >= 20_000,
            "the backlog's own batch keeps it"
        );
        // Then a usual batch: that buffer with one record, and three more.
        let mut small = big;
        small.append(|out| one.encode(out));
        b.push(small);
        for _ in 0..3 {
            b.push(Buffer::of([&one]));
        }
        b.clear_keeping(10);
        let kept: Vec<Buffer> = std::iter::from_fn(|| Some(b.spare()))
            .take_while(|v| v.bytes.capacity() > 0)
            .collect();
        assert_eq!(kept.len(), 4, "as many as the batch took");
        assert!(
            kept.iter().all(|v| v.is_empty()
                && v.bytes.capacity() <= 4 * 1024.max(len)
                && v.starts.capacity() <= 4 * 16),
            "{:?}",
            kept.iter()
                .map(|v| (v.bytes.capacity(), v.starts.capacity()))
                .collect::<Vec<_>>()
        );
        assert_eq!(b.spare().bytes.capacity(), 0, "then fresh ones");
    }
}
