//! What the writer takes from the queue: records as the hot path encoded
//! them, back to back in the queue's own buffers, and where each
//! begins. The embedded store reads them in place ([`Encoded`]) and
//! builds a [`Record`] only for a context it has not seen; ClickHouse
//! takes them decoded ([`Records::decode`]).

use super::record::{Encoded, Record};

#[derive(Default)]
pub struct Batch {
    /// The queue's buffers, as they were taken (not copied).
    bufs: Vec<Vec<u8>>,
    /// Each record's buffer and where in it the record begins.
    starts: Vec<(usize, usize)>,
    /// Emptied buffers, for the queue's shards to fill next.
    free: Vec<Vec<u8>>,
}

impl Batch {
    /// Encodes records (tests, benches, tools; the writer is handed bytes).
    pub fn of(records: &[Record]) -> Self {
        let mut b = Batch::default();
        let mut bytes = Vec::new();
        for r in records {
            r.encode(&mut bytes);
        }
        b.push(bytes, records.len());
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
    pub fn spare(&mut self) -> Vec<u8> {
        self.free.pop().unwrap_or_default()
    }

    /// Appends a buffer of `records` records encoded back to back.
    pub fn push(&mut self, bytes: Vec<u8>, records: usize) {
        self.starts.reserve(records);
        let buf = self.bufs.len();
        let mut at = 0;
        for _ in 0..records {
            self.starts.push((buf, at));
            let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
            at += 4 + len as usize;
        }
        debug_assert_eq!(at, bytes.len(), "encoder and batch disagree");
        self.bufs.push(bytes);
    }

    /// Empties the batch. The buffers it took are kept for
    /// [`Batch::spare`] (as many as it took: the next batch takes about as
    /// many, and the shards never grow a fresh one), each cut back to four
    /// times what this batch's buffers held on average: an outage's
    /// backlog is given back, so what is kept stays within a few times
    /// the usual batch. `starts` keeps room for `records`.
    pub fn clear_keeping(&mut self, records: usize) {
        let held: usize = self.bufs.iter().map(Vec::len).sum();
        let limit = 4 * (held / self.bufs.len().max(1)).max(1024);
        // (Buffers kept from before and not taken since are surplus.)
        self.free.clear();
        for mut b in self.bufs.drain(..) {
            b.clear();
            b.shrink_to(limit);
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
    bufs: &'a [Vec<u8>],
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
        Encoded::read(&mut &self.bufs[b][at..])
    }

    pub fn iter(&self) -> impl Iterator<Item = Encoded<'a>> + use<'a> {
        let bufs = self.bufs;
        self.starts
            .iter()
            .map(move |(b, at)| Encoded::read(&mut &bufs[*b][*at..]))
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
        let mut more = Vec::new();
        for r in &want[2..] {
            r.encode(&mut more);
        }
        b.push(more, 3);
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
        assert!(spare.is_empty() && spare.capacity() > 0, "kept for reuse");
        b.push(spare, 0);
        assert!(b.is_empty());
        // A reused buffer holds only what is pushed in it anew.
        let mut again = b.spare();
        want[4].encode(&mut again);
        b.push(again, 1);
        assert_eq!(b.records().get(0).id, want[4].id);
    }

    /// Emptied buffers are kept for the queue's shards, as many as the
    /// batch took, none grown far past what the batch's buffers held.
    #[test]
    fn kept_buffers_are_bounded_in_number_and_size() {
        let one = {
            let mut v = Vec::new();
            record(1).encode(&mut v);
            v
        };
        let mut b = Batch::default();
        // An outage's backlog: one buffer of 20 000 records.
        let mut backlog = Vec::new();
        for _ in 0..20_000 {
            backlog.extend_from_slice(&one);
        }
        b.push(backlog, 20_000);
        b.clear_keeping(10);
        let big = b.spare();
        assert!(
            big.capacity() >= 20_000 * one.len(),
            "the backlog's own batch keeps it"
        );
        // Then a usual batch: that buffer with one record, and three more.
        let mut small = big;
        small.extend_from_slice(&one);
        b.push(small, 1);
        for _ in 0..3 {
            b.push(one.clone(), 1);
        }
        b.clear_keeping(10);
        let kept: Vec<Vec<u8>> = std::iter::from_fn(|| Some(b.spare()))
            .take_while(|v| v.capacity() > 0)
            .collect();
        assert_eq!(kept.len(), 4, "as many as the batch took");
        assert!(
            kept.iter()
                .all(|v| v.is_empty() && v.capacity() <= 4 * 1024.max(one.len())),
            "{:?}",
            kept.iter().map(Vec::capacity).collect::<Vec<_>>()
        );
        assert_eq!(b.spare().capacity(), 0, "then fresh ones");
    }
}
