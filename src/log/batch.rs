//! What the writer takes from the queue: records as the hot path encoded
//! them, back to back in one buffer, and where each begins. The stores
//! read them in place ([`Encoded`]); the writer never builds a
//! [`Record`] per decision for the embedded store.

use super::record::{Encoded, Record};

#[derive(Default)]
pub struct Batch {
    bytes: Vec<u8>,
    starts: Vec<usize>,
}

impl Batch {
    /// Encodes records (tests, benches, tools; the writer is handed bytes).
    pub fn of(records: &[Record]) -> Self {
        let mut b = Batch::default();
        let mut bytes = Vec::new();
        for r in records {
            r.encode(&mut bytes);
        }
        b.extend(&bytes, records.len());
        b
    }

    pub fn len(&self) -> usize {
        self.starts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    /// Appends `records` records encoded back to back in `bytes`.
    pub fn extend(&mut self, bytes: &[u8], records: usize) {
        self.starts.reserve(records);
        let base = self.bytes.len();
        let mut at = 0;
        for _ in 0..records {
            self.starts.push(base + at);
            let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
            at += len as usize;
        }
        debug_assert_eq!(at, bytes.len(), "encoder and batch disagree");
        self.bytes.extend_from_slice(&bytes[..at]);
    }

    /// Empties the batch, keeping room for about `records` records (of
    /// this batch's mean size): what the usual batch needs stays
    /// allocated, an outage's backlog is given back.
    pub fn clear_keeping(&mut self, records: usize) {
        let mean = self.bytes.len().checked_div(self.starts.len()).unwrap_or(0);
        self.bytes.clear();
        self.starts.clear();
        self.bytes.shrink_to(records.saturating_mul(mean));
        self.starts.shrink_to(records);
    }

    pub fn records(&self) -> Records<'_> {
        Records {
            bytes: &self.bytes,
            starts: &self.starts,
        }
    }
}

/// Some records of a [`Batch`], in its order.
#[derive(Clone, Copy)]
pub struct Records<'a> {
    bytes: &'a [u8],
    starts: &'a [usize],
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
        Encoded::read(&mut &self.bytes[self.starts[i]..])
    }

    pub fn iter(&self) -> impl Iterator<Item = Encoded<'a>> + use<'a> {
        let bytes = self.bytes;
        self.starts
            .iter()
            .map(move |s| Encoded::read(&mut &bytes[*s..]))
    }

    /// The first `n` records, and the rest.
    pub fn split_at(&self, n: usize) -> (Records<'a>, Records<'a>) {
        let (a, b) = self.starts.split_at(n);
        let part = |starts| Records {
            bytes: self.bytes,
            starts,
        };
        (part(a), part(b))
    }

    /// Runs of at most `n` records.
    pub fn chunks(&self, n: usize) -> impl Iterator<Item = Records<'a>> + use<'a> {
        let bytes = self.bytes;
        self.starts
            .chunks(n)
            .map(move |starts| Records { bytes, starts })
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
        crate::log::sqlite::tests::record(1_764_700_000_000, i)
    }

    #[test]
    fn records_read_back_in_order_whole_and_in_runs() {
        let want: Vec<Record> = (0..5).map(record).collect();
        let mut b = Batch::of(&want[..2]);
        let mut more = Vec::new();
        for r in &want[2..] {
            r.encode(&mut more);
        }
        b.extend(&more, 3);
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
        b.extend(&more[..0], 0);
        assert!(b.is_empty());
    }
}
