//! A compact day's rows packed into blocks: one SQLite row of
//! `b_YYYYMMDD` (its rowid the block's first time key, its `data` the
//! encoding below) holds up to [`BLOCK_ROWS`] rows in time-key order.
//! The rows are read back through the `fg_rows` table (`vtab`).
//!
//! Why blocks: one SQLite row per decision cost the writer most of its
//! time (a seek from the root, the virtual machine and a record of
//! fifteen values per decision); a block is one insert for a thousand,
//! encoded in a tight loop (docs/performance.md).
//!
//! The layout (integers as LEB128 varints, signed ones zigzagged first):
//!
//! ```text
//! block  version byte (1), then each row:
//! row    key delta from the row before (the first: from the block's key)
//!        flags: bit i (0..5) aff_sub(i+1) present, bit 5 extra present
//!        id_mid, id_low (8 bytes, little-endian), ua, who, ctx,
//!        elapsed_us, age (signed)
//!        ip, then each present aff_sub and extra (length, then UTF-8 bytes)
//! ```
//!
//! A block read from the file is checked as it is decoded: a damaged one
//! is an error ([`Damaged`]), never a panic or text that is not UTF-8.

/// Rows a block holds at most (a point lookup decodes one block).
pub const BLOCK_ROWS: usize = 1024;

const VERSION: u8 = 1;
const EXTRA: u8 = 1 << 5;

/// One row of a compact day: the time key, the rest of the decision id,
/// its ids in the day's dictionaries and what it stores besides. `S` is
/// how its text is held: bytes to encode, or [`Span`]s of a decoded block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Row<S> {
    pub k: i64,
    pub id_mid: i64,
    pub id_low: i64,
    pub ip: S,
    pub ua: i64,
    pub who: i64,
    pub aff_sub: [Option<S>; 5],
    pub extra: Option<S>,
    pub ctx: i64,
    pub elapsed_us: i64,
    pub age: i64,
}

/// Where a decoded row's text lies in its block (checked UTF-8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    start: u32,
    len: u32,
}

impl Span {
    /// The text in `data`, the block it was decoded from.
    pub fn bytes(self, data: &[u8]) -> &[u8] {
        &data[self.start as usize..(self.start + self.len) as usize]
    }
}

impl Row<Span> {
    /// The row with its text borrowed from `data`, its block.
    pub fn resolve(self, data: &[u8]) -> Row<&[u8]> {
        Row {
            k: self.k,
            id_mid: self.id_mid,
            id_low: self.id_low,
            ip: self.ip.bytes(data),
            ua: self.ua,
            who: self.who,
            aff_sub: self.aff_sub.map(|s| s.map(|s| s.bytes(data))),
            extra: self.extra.map(|s| s.bytes(data)),
            ctx: self.ctx,
            elapsed_us: self.elapsed_us,
            age: self.age,
        }
    }
}

/// A block that cannot be decoded: the file was damaged.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("a block of decisions is damaged: {0}")]
pub struct Damaged(pub &'static str);

/// Builds one block at a time.
#[derive(Default)]
pub struct Encoder {
    data: Vec<u8>,
    first: i64,
    last: i64,
    rows: usize,
}

impl Encoder {
    /// Rows in the block being built.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Adds a row; its key must be above the block's last.
    pub fn push(&mut self, r: &Row<&[u8]>) {
        if self.rows == 0 {
            self.data.clear();
            self.data.push(VERSION);
            self.first = r.k;
            self.last = r.k;
        }
        debug_assert!(self.rows == 0 || r.k > self.last, "rows in key order");
        let out = &mut self.data;
        put_u(out, r.k.wrapping_sub(self.last) as u64);
        let mut flags = 0u8;
        for (i, s) in r.aff_sub.iter().enumerate() {
            if s.is_some() {
                flags |= 1 << i;
            }
        }
        if r.extra.is_some() {
            flags |= EXTRA;
        }
        out.push(flags);
        put_i(out, r.id_mid);
        out.extend_from_slice(&r.id_low.to_le_bytes());
        put_i(out, r.ua);
        put_i(out, r.who);
        put_i(out, r.ctx);
        put_i(out, r.elapsed_us);
        put_i(out, r.age);
        put_bytes(out, r.ip);
        for s in r.aff_sub.iter().chain([&r.extra]).flatten() {
            put_bytes(out, s);
        }
        self.last = r.k;
        self.rows += 1;
    }

    /// The block built (its first key and its data), and a fresh start.
    /// None when it has no row.
    pub fn take(&mut self) -> Option<(i64, &[u8])> {
        if self.rows == 0 {
            return None;
        }
        self.rows = 0;
        Some((self.first, &self.data))
    }
}

fn put_u(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_i(out: &mut Vec<u8>, v: i64) {
    put_u(out, ((v << 1) ^ (v >> 63)) as u64);
}

fn put_bytes(out: &mut Vec<u8>, s: &[u8]) {
    put_u(out, s.len() as u64);
    out.extend_from_slice(s);
}

/// Decodes the block `data` whose first key is `first` into `out`
/// (emptied first), its rows in key order.
pub fn decode(first: i64, data: &[u8], out: &mut Vec<Row<Span>>) -> Result<(), Damaged> {
    out.clear();
    let mut r = Reader { data, at: 0 };
    if r.byte()? != VERSION {
        return Err(Damaged("unknown version"));
    }
    let mut k = first;
    while r.at < data.len() {
        let delta = r.u()?;
        if !out.is_empty() && delta == 0 {
            return Err(Damaged("keys out of order"));
        }
        k = i64::try_from(delta)
            .ok()
            .and_then(|d| k.checked_add(d))
            .ok_or(Damaged("key out of range"))?;
        let flags = r.byte()?;
        let id_mid = r.i()?;
        let id_low = i64::from_le_bytes(r.take(8)?.try_into().expect("8 bytes"));
        let (ua, who, ctx, elapsed_us, age) = (r.i()?, r.i()?, r.i()?, r.i()?, r.i()?);
        let ip = r.text()?;
        let mut aff_sub = [None; 5];
        for (i, s) in aff_sub.iter_mut().enumerate() {
            if flags & (1 << i) != 0 {
                *s = Some(r.text()?);
            }
        }
        let extra = if flags & EXTRA != 0 {
            Some(r.text()?)
        } else {
            None
        };
        out.push(Row {
            k,
            id_mid,
            id_low,
            ip,
            ua,
            who,
            aff_sub,
            extra,
            ctx,
            elapsed_us,
            age,
        });
    }
    if out.is_empty() {
        return Err(Damaged("no rows"));
    }
    Ok(())
}

struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], Damaged> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or(Damaged("cut short"))?;
        let s = &self.data[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn byte(&mut self) -> Result<u8, Damaged> {
        Ok(self.take(1)?[0])
    }

    fn u(&mut self) -> Result<u64, Damaged> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(Damaged("a number too long"))
    }

    fn i(&mut self) -> Result<i64, Damaged> {
        let u = self.u()?;
        Ok((u >> 1) as i64 ^ -((u & 1) as i64))
    }

    fn text(&mut self) -> Result<Span, Damaged> {
        let len = usize::try_from(self.u()?).map_err(|_| Damaged("text too long"))?;
        let start = self.at;
        let s = self.take(len)?;
        std::str::from_utf8(s).map_err(|_| Damaged("text that is not UTF-8"))?;
        let start = u32::try_from(start).map_err(|_| Damaged("block too long"))?;
        let len = u32::try_from(len).map_err(|_| Damaged("text too long"))?;
        Ok(Span { start, len })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(k: i64, ip: &'static str) -> Row<&'static [u8]> {
        Row {
            k,
            id_mid: 65535,
            id_low: -7,
            ip: ip.as_bytes(),
            ua: 3,
            who: 1 << 40,
            aff_sub: [
                None,
                Some("s2".as_bytes()),
                None,
                None,
                Some("é5".as_bytes()),
            ],
            extra: Some(br#"{"sub6":"x"}"#),
            ctx: 0,
            elapsed_us: i64::MAX,
            age: -86_400,
        }
    }

    fn encode(rows: &[Row<&[u8]>]) -> (i64, Vec<u8>) {
        let mut e = Encoder::default();
        for r in rows {
            e.push(r);
        }
        let (first, data) = e.take().expect("rows");
        (first, data.to_vec())
    }

    #[test]
    fn rows_come_back_as_they_went_in() {
        let plain = Row {
            aff_sub: [None; 5],
            extra: None,
            age: 0,
            ..row(i64::MAX, "2001:db8::1")
        };
        let rows = [row(-5, "10.0.0.1"), row(7 << 21, ""), plain];
        let (first, data) = encode(&rows);
        assert_eq!(first, -5);
        let mut out = Vec::new();
        decode(first, &data, &mut out).unwrap();
        let back: Vec<_> = out.iter().map(|r| r.resolve(&data)).collect();
        assert_eq!(back, rows);
    }

    #[test]
    fn an_encoder_starts_afresh_after_each_block() {
        let mut e = Encoder::default();
        assert!(e.take().is_none());
        e.push(&row(10, "a"));
        e.push(&row(11, "b"));
        assert_eq!(e.take().map(|(f, _)| f), Some(10));
        e.push(&row(3, "c"));
        assert_eq!(e.rows(), 1);
        let (first, data) = e.take().unwrap();
        let mut out = Vec::new();
        decode(first, data, &mut out).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].resolve(data).ip, b"c");
    }

    #[test]
    fn a_damaged_block_is_an_error_never_a_panic() {
        let (first, data) = encode(&[row(1, "10.0.0.1"), row(2, "10.0.0.2")]);
        let mut out = Vec::new();
        // Cut short anywhere but between the two rows: an error.
        let one_row = encode(&[row(1, "10.0.0.1")]).1.len();
        for cut in 0..data.len() {
            let r = decode(first, &data[..cut], &mut out);
            assert_eq!(r.is_ok(), cut == one_row, "cut at {cut}");
        }
        // Every byte changed in turn: an error or rows, never a panic.
        for i in 0..data.len() {
            for b in [0x00, 0x7f, 0x80, 0xff] {
                let mut d = data.clone();
                d[i] = b;
                let _ = decode(first, &d, &mut out);
            }
        }
        let mut bad = data.clone();
        bad[0] = 9;
        assert_eq!(
            decode(first, &bad, &mut out),
            Err(Damaged("unknown version"))
        );
        assert_eq!(decode(first, &[VERSION], &mut out), Err(Damaged("no rows")));
        // A key past the largest.
        assert_eq!(
            decode(i64::MAX, &data, &mut out),
            Err(Damaged("key out of range"))
        );
    }

    #[test]
    fn text_that_is_not_utf8_is_refused() {
        let mut r = row(1, "x");
        r.ip = &[0xff];
        let (first, data) = encode(&[r]);
        assert_eq!(
            decode(first, &data, &mut Vec::new()),
            Err(Damaged("text that is not UTF-8"))
        );
    }
}
