//! Writing a compact day: what repeats across decisions is stored once
//! (see `schema` for the layout). A batch's records are looked up in the
//! day's dictionaries in batch order, then numbered with their time keys
//! and inserted in time order.

use rusqlite::Transaction;

use super::dictionary::{self, Dictionaries};
use super::rows::{self, write_rows};
use super::schema::{MAX_MS, Parts, SEQ_BITS, SEQ_MASK, key_ceil, key_floor};
use super::write_error;
use crate::decision_log::batch::Records;
use crate::decision_log::ivt::IvtMap;
use crate::decision_log::record::Encoded;
use crate::decision_log::{IpMode, LogError};

/// A record's place in time order: its id (the top 64 bits, its
/// millisecond then `id_mid`; the low 64, `id_low`), and its slot.
#[derive(Clone, Copy, Debug)]
pub struct Order {
    pub(super) high: u64,
    pub(super) low: u64,
    pub(super) slot: u32,
}

impl Order {
    fn of(e: &Encoded<'_>, slot: u32) -> Self {
        Order {
            high: (e.id.0 >> 64) as u64,
            low: e.id.0 as u64,
            slot,
        }
    }

    fn ms(&self) -> i64 {
        (self.high >> 16) as i64
    }
}

/// One record of a batch with its dictionary ids and what its row needs
/// besides: read from the record in one pass in batch order, so the rows,
/// written in time order, do not read the records again (but for one
/// with optional fields). (A row is built from it only when it is bound,
/// 64 at a time: the rows of a whole batch, four times the size, were
/// megabytes allocated and faulted in afresh each batch.)
#[derive(Clone, Copy, Debug)]
pub struct Slot {
    ms: i64,
    /// The record's index in the batch.
    pub record: u32,
    /// Its context's index in [`Dictionaries`].
    pub context: u32,
    pub(super) ua: i64,
    /// Its (affiliate_id, offer_id) pair's id.
    pub who: i64,
    pub elapsed_us: i64,
    /// Seconds from the event's time to the decision's second.
    pub(super) age: i64,
    pub(super) ip: std::net::IpAddr,
    /// Whether the record has optional fields stored in the row (any but
    /// country_code, which is its context's).
    pub(super) wide: bool,
}

impl Slot {
    /// The batch's record `record` with its ids in the day's dictionaries
    /// (a UA, pair or context first seen is upserted).
    fn look_up(
        tx: &Transaction<'_>,
        p: &Parts,
        dicts: &mut Dictionaries,
        e: &Encoded<'_>,
        record: u32,
        ivt: &IvtMap,
    ) -> rusqlite::Result<Self> {
        let ua = dictionary::ua_id(tx, p, dicts, e.ua)?;
        let who = dictionary::who_id(tx, p, dicts, e.affiliate_id, e.offer_id)?;
        let context = dictionary::context_index(tx, p, dicts, e, ivt)?;
        Ok(Slot {
            ms: e.ts_ms(),
            record,
            context,
            ua,
            who,
            elapsed_us: e.elapsed_us as i64,
            age: e
                .ts_ms()
                .div_euclid(1000)
                .saturating_sub(i64::try_from(e.at).unwrap_or(i64::MAX)),
            ip: e.ip,
            wide: e.optional().any(|(o, _)| rows::in_row(o)),
        })
    }

    /// The decision's Unix milliseconds.
    pub fn ms(&self) -> i64 {
        self.ms
    }
}

/// The time keys of rows in `ms` order: each millisecond's continue from
/// the largest key the day holds for it (a record can reach the writer
/// after a later one was written: a batch's first milliseconds may be
/// the last ones of the batch before).
fn assign_keys(
    tx: &Transaction<'_>,
    p: &Parts,
    dicts: &mut Dictionaries,
    ms_sorted: impl Iterator<Item = i64>,
    keys: &mut Vec<i64>,
) -> Result<(), LogError> {
    let mut last = match dicts.last_key {
        Some(k) => k,
        None => rows::last_key_at_or_below(tx, p, i64::MAX)?.unwrap_or(-1),
    };
    // The millisecond being numbered and its next key.
    let mut run: Option<(i64, i64)> = None;
    for ms in ms_sorted {
        if !(0..=MAX_MS).contains(&ms) {
            // (Refused, not retried: a retry would fail alike, forever.)
            return Err(LogError::Rejected(format!(
                "a decision time of {ms} ms is outside what the store keeps"
            )));
        }
        let next = match run {
            Some((m, next)) if m == ms => next,
            _ => {
                let floor = key_floor(ms);
                if floor > last {
                    floor
                } else if last >> SEQ_BITS == ms {
                    last + 1
                } else {
                    rows::last_key_at_or_below(tx, p, key_ceil(ms))?
                        .filter(|&k| k >= floor)
                        .map_or(floor, |m| m + 1)
                }
            }
        };
        if next > key_ceil(ms) {
            return Err(LogError::Rejected(format!(
                "more than {} decisions in the millisecond {ms}",
                SEQ_MASK + 1
            )));
        }
        keys.push(next);
        last = last.max(next);
        run = Some((ms, next + 1));
    }
    dicts.last_key = Some(last);
    Ok(())
}

/// Writes one day's records into its compact tables; where each record
/// points in the dictionaries is then [`Dictionaries::written`] (for the
/// rollup). After an error the dictionaries may hold ids the rolled-back
/// transaction made: the caller discards them (`sqlite::Writer::write_records`).
pub fn insert(
    tx: &Transaction<'_>,
    day_table: &str,
    dicts: &mut Dictionaries,
    rows: Records<'_>,
    ivt: &IvtMap,
    ip_mode: IpMode,
    salt: Option<&[u8; 32]>,
) -> Result<(), LogError> {
    let p = Parts::of(day_table);
    dicts.bound();
    let mut slots = std::mem::take(&mut dicts.slots);
    let mut order = std::mem::take(&mut dicts.order);
    let mut keys = std::mem::take(&mut dicts.keys);
    let written = insert_into(
        tx,
        &p,
        dicts,
        rows,
        ivt,
        (ip_mode, salt),
        (&mut slots, &mut order, &mut keys),
    );
    // (Kept for their allocations, whatever happened.)
    dicts.slots = slots;
    dicts.order = order;
    dicts.keys = keys;
    written
}

fn insert_into(
    tx: &Transaction<'_>,
    p: &Parts,
    dicts: &mut Dictionaries,
    rows: Records<'_>,
    ivt: &IvtMap,
    (ip_mode, salt): (IpMode, Option<&[u8; 32]>),
    (slots, order, keys): (&mut Vec<Slot>, &mut Vec<Order>, &mut Vec<i64>),
) -> Result<(), LogError> {
    let err = write_error;
    slots.clear();
    slots.reserve(rows.len());
    order.clear();
    order.reserve(rows.len());
    // Dictionary ids in batch order, then rows in time order: two tight
    // loops (measured: resolving each record as its row is bound, one
    // pass in time order, was slower: 405 000 against 461 000 decisions/s
    // in the load example, median of five pairs).
    for (i, e) in rows.iter().enumerate() {
        order.push(Order::of(&e, i as u32));
        slots.push(Slot::look_up(tx, p, dicts, &e, i as u32, ivt).map_err(err)?);
    }
    // In time order, so keys can be numbered and rows go in at the end of
    // the table's tree (a batch's records come from several threads).
    // The order is sorted, not the slots: fewer than half the bytes to move.
    order.sort_unstable_by_key(|o| (o.high, o.low));
    keys.clear();
    assign_keys(tx, p, dicts, order.iter().map(Order::ms), keys)?;
    write_rows(tx, p, dicts, rows, (slots, order, keys), (ip_mode, salt))
}
