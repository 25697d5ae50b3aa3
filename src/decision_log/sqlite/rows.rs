//! A compact day's rows, written into its blocks (`block`) in key order.
//!
//! A batch's rows go in as runs: each run into the block whose keys it
//! falls among (the last block at or below its first key), merged with
//! that block's rows and written again, in blocks of at most
//! [`BLOCK_ROWS`] (split evenly when another block follows). Most
//! batches are one run after the day's last block, merged with it while it
//! has room; a record that reached the writer after later ones were
//! written goes into the block of its keys, so blocks never overlap.

use rusqlite::{CachedStatement, Transaction};

use super::block::{self, BLOCK_ROWS, Encoder, Row, Span};
use super::compact::{Order, Slot};
use super::dictionary::Dictionaries;
use super::schema::Parts;
use super::write_error;
use crate::decision_log::batch::Records;
use crate::decision_log::columns::{self, AFF_SUBS, StackStr, ip_text};
use crate::decision_log::record::utf8;
use crate::decision_log::{IpMode, LogError};
use crate::event::Opt;

/// One row of a compact day, borrowing what it can from its record.
struct Fact<'a> {
    id_mid: i64,
    id_low: i64,
    ip: StackStr<48>,
    ua: i64,
    who: i64,
    aff_sub: [Option<Text<'a>>; 5],
    extra: Option<String>,
    ctx: i64,
    elapsed_us: i64,
    age: i64,
}

impl<'a> Fact<'a> {
    /// The row of a record (its place in time order and its slot); the
    /// record is read again only when it has optional fields to store
    /// (most have none: the slot holds the rest).
    fn of(
        o: &Order,
        s: &Slot,
        rows: Records<'a>,
        dicts: &Dictionaries,
        (ip_mode, salt): (IpMode, Option<&[u8; 32]>),
    ) -> Self {
        let (aff_sub, extra) = if s.wide {
            let e = rows.get(s.record as usize);
            (
                AFF_SUBS.map(|o| e.get(o).map(Text)),
                columns::extra(e.optional().map(|(o, v)| (o, utf8(v)))),
            )
        } else {
            ([None; 5], None)
        };
        let f = Fact {
            id_mid: (o.high & 0xffff) as i64,
            id_low: o.low as i64,
            ip: ip_text(s.ip, ip_mode, salt),
            ua: s.ua,
            who: s.who,
            aff_sub,
            extra,
            ctx: dicts.context_id(s.context),
            elapsed_us: s.elapsed_us,
            age: s.age,
        };
        // (Optional values are never empty: the event drops those.)
        debug_assert_eq!(
            f.extra.is_some() || f.aff_sub.iter().any(Option::is_some),
            s.wide,
            "a row's optional fields"
        );
        f
    }

    /// The row, under its time key `k`.
    fn row(&self, k: i64) -> Row<&[u8]> {
        Row {
            k,
            id_mid: self.id_mid,
            id_low: self.id_low,
            ip: self.ip.as_str().as_bytes(),
            ua: self.ua,
            who: self.who,
            aff_sub: self.aff_sub.map(|s| s.map(|t| t.0)),
            extra: self.extra.as_deref().map(str::as_bytes),
            ctx: self.ctx,
            elapsed_us: self.elapsed_us,
            age: self.age,
        }
    }
}

/// Text the encoding holds (UTF-8).
#[derive(Clone, Copy)]
struct Text<'a>(&'a [u8]);

/// Whether an optional field is stored in the row (an aff_sub column or
/// `extra`): all but country_code, which is its context's.
pub(super) fn in_row(o: Opt) -> bool {
    o != Opt::CountryCode
}

/// The block statements of a day.
pub(super) struct Blocks<'t> {
    /// The last block at or below a key: its key and data.
    at_or_before: CachedStatement<'t>,
    /// The key of the first block above a key.
    above: CachedStatement<'t>,
    delete: CachedStatement<'t>,
    insert: CachedStatement<'t>,
}

impl<'t> Blocks<'t> {
    pub(super) fn of(tx: &'t Transaction<'_>, p: &Parts) -> rusqlite::Result<Self> {
        let b = &p.blocks;
        Ok(Blocks {
            at_or_before: tx.prepare_cached(&format!(
                "SELECT k, data FROM \"{b}\" WHERE k <= ?1 ORDER BY k DESC LIMIT 1"
            ))?,
            above: tx.prepare_cached(&format!(
                "SELECT k FROM \"{b}\" WHERE k > ?1 ORDER BY k LIMIT 1"
            ))?,
            delete: tx.prepare_cached(&format!("DELETE FROM \"{b}\" WHERE k = ?1"))?,
            insert: tx.prepare_cached(&format!("INSERT INTO \"{b}\" (k, data) VALUES (?1, ?2)"))?,
        })
    }

    /// The last block at or below `key`, decoded into `rows` (its data in
    /// `data`): its key, or None when there is none.
    fn at_or_before(
        &mut self,
        key: i64,
        data: &mut Vec<u8>,
        rows: &mut Vec<Row<Span>>,
    ) -> Result<Option<i64>, LogError> {
        rows.clear();
        let mut found = self.at_or_before.query([key]).map_err(write_error)?;
        let Some(r) = found.next().map_err(write_error)? else {
            return Ok(None);
        };
        let first: i64 = r.get(0).map_err(write_error)?;
        let blob = r
            .get_ref(1)
            .and_then(|v| Ok(v.as_blob()?))
            .map_err(write_error)?;
        data.clear();
        data.extend_from_slice(blob);
        block::decode(first, data, rows).map_err(|e| LogError::Corrupt(e.to_string()))?;
        Ok(Some(first))
    }

    fn above(&mut self, key: i64) -> Result<Option<i64>, LogError> {
        let mut found = self.above.query([key]).map_err(write_error)?;
        found
            .next()
            .map_err(write_error)?
            .map(|r| r.get(0))
            .transpose()
            .map_err(write_error)
    }

    /// Writes the block `enc` holds, if it holds rows, then gives the
    /// request threads of the core a chance (`write::give_way`).
    pub(super) fn flush(&mut self, enc: &mut Encoder) -> Result<(), LogError> {
        if let Some((first, data)) = enc.take() {
            self.insert
                .execute(rusqlite::params![first, data])
                .map_err(write_error)?;
            super::write::give_way();
        }
        Ok(())
    }
}

/// The largest key at or below `key` in a day's blocks, if any.
pub(super) fn last_key_at_or_below(
    tx: &Transaction<'_>,
    p: &Parts,
    key: i64,
) -> Result<Option<i64>, LogError> {
    let (mut data, mut rows) = (Vec::new(), Vec::new());
    Blocks::of(tx, p)
        .map_err(write_error)?
        .at_or_before(key, &mut data, &mut rows)?;
    Ok(rows.iter().map(|r| r.k).take_while(|&k| k <= key).last())
}

/// The rows of `slots` in `order` (keyed by `keys`, ascending), written
/// into the day's blocks.
pub(super) fn write_rows(
    tx: &Transaction<'_>,
    p: &Parts,
    dicts: &Dictionaries,
    rows: Records<'_>,
    (slots, order, keys): (&[Slot], &[Order], &[i64]),
    ip: (IpMode, Option<&[u8; 32]>),
) -> Result<(), LogError> {
    let mut blocks = Blocks::of(tx, p).map_err(write_error)?;
    let fact = |i: usize| {
        let o = &order[i];
        Fact::of(o, &slots[o.slot as usize], rows, dicts, ip)
    };
    let mut enc = Encoder::default();
    let (mut data, mut old) = (Vec::new(), Vec::new());
    let mut i = 0;
    while i < keys.len() {
        // The block the run goes into, and where the next block begins.
        let holding = blocks.at_or_before(keys[i], &mut data, &mut old)?;
        let next = blocks.above(holding.unwrap_or(keys[i]))?;
        let end = i + keys[i..].partition_point(|&k| next.is_none_or(|n| k < n));
        // A full block the run comes after stays as it is.
        if old.len() >= BLOCK_ROWS && old.last().is_some_and(|r| r.k < keys[i]) {
            old.clear();
        } else if let Some(first) = holding {
            blocks.delete.execute([first]).map_err(write_error)?;
        }
        // Rows going in before another block split evenly over as few
        // blocks as hold them: a late row in a full block makes two
        // half-full ones with room for the next late rows, not a full one
        // and one of a single row. After the last block they fill blocks
        // (the last one fills with the next batches).
        let total = old.len() + (end - i);
        let per_block = match next {
            Some(_) => total.div_ceil(total.div_ceil(BLOCK_ROWS)),
            None => BLOCK_ROWS,
        };
        // The block's rows and the run's, merged in key order.
        let mut olds = old.iter().map(|r| r.resolve(&data)).peekable();
        let mut news = (i..end).peekable();
        loop {
            let old_first = match (olds.peek(), news.peek()) {
                (Some(o), Some(&n)) => o.k < keys[n],
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            if old_first {
                enc.push(&olds.next().expect("peeked"));
            } else {
                let n = news.next().expect("peeked");
                enc.push(&fact(n).row(keys[n]));
            }
            if enc.rows() == per_block {
                blocks.flush(&mut enc)?;
            }
        }
        blocks.flush(&mut enc)?;
        i = end;
    }
    Ok(())
}
