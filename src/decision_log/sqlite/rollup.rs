//! A day's rollup (`r_YYYYMMDD`): the decisions of each UTC hour and
//! combination of the rollup's dimensions, counted in the same
//! transaction as their rows.

use std::collections::HashMap;

use rusqlite::Transaction;

use super::dictionary::Dictionaries;
use super::schema::ROLLUP_DIMS;
use super::write_error;
use crate::decision_log::LogError;
use crate::decision_log::batch::Records;
use crate::decision_log::record::utf8;

/// A compact day's rollup sums of one batch: (hour, context, affiliate
/// and offer pair) -> (decisions, their elapsed_us, one record's index).
type HourSums = HashMap<(i64, u32, i64), (i64, i64, u32), foldhash::fast::RandomState>;

/// One rollup row's key: the hour and the dimensions of a row.
#[derive(PartialEq, Eq, Hash)]
struct RollupKey<'a> {
    hour: i64,
    text: [&'a str; 14],
    masks: [i64; 3],
}

/// Adds the batch [`compact::insert`](super::compact::insert) last
/// wrote into `dicts` to the day's rollup.
pub(super) fn add(
    tx: &Transaction<'_>,
    rollup: &str,
    dicts: &Dictionaries,
    records: Records<'_>,
) -> Result<(), LogError> {
    let keyed = hour_sums(dicts)
        .into_iter()
        .map(|((hour, context, _), (n, elapsed, record))| {
            (key(dicts, records, hour, context, record), (n, elapsed))
        });
    roll_up(tx, rollup, keyed)
}

/// The batch's decisions and their elapsed_us, summed per hour, context
/// and (affiliate_id, offer_id) pair.
fn hour_sums(dicts: &Dictionaries) -> HourSums {
    let mut sums = HourSums::default();
    for s in dicts.written() {
        let hour = s.ms().div_euclid(3_600_000) * 3_600_000;
        let e = sums
            .entry((hour, s.context, s.who))
            .or_insert((0, 0, s.record));
        e.0 += 1;
        e.1 += s.elapsed_us;
    }
    sums
}

/// The rollup key of an hour's decisions of one context, whose
/// affiliate_id and offer_id are those of the batch's record `record`.
fn key<'a>(
    dicts: &'a Dictionaries,
    records: Records<'a>,
    hour: i64,
    context: u32,
    record: u32,
) -> RollupKey<'a> {
    let c = dicts.context(context);
    let e = records.get(record as usize);
    let t = &c.text;
    RollupKey {
        hour,
        text: [
            c.door,
            c.client(),
            c.event_type,
            utf8(e.affiliate_id),
            utf8(e.offer_id),
            c.country(),
            c.decision,
            c.would_be,
            c.mode,
            &t.tags,
            c.source,
            c.reason,
            t.ivt,
            &t.ivt_category,
        ],
        masks: [t.tag_mask, t.blocked_mask, t.rule_mask],
    }
}

/// Adds counts to the day's rollup: one upsert per distinct hour and
/// dimensions in the batch.
fn roll_up<'a>(
    tx: &Transaction<'_>,
    rollup: &str,
    sums: impl IntoIterator<Item = (RollupKey<'a>, (i64, i64))>,
) -> Result<(), LogError> {
    let err = write_error;
    let mut stmt = tx
        .prepare_cached(&format!(
            "INSERT INTO \"{rollup}\" (ts, door, client, event_type, affiliate_id, offer_id, \
             country_code, decision, would_be, mode, tags, source, reason, ivt, ivt_category, \
             tag_mask, blocked_mask, rule_mask, n, elapsed_sum) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (ts, {}) DO UPDATE SET n = n + excluded.n, \
             elapsed_sum = elapsed_sum + excluded.elapsed_sum",
            ROLLUP_DIMS.join(", ")
        ))
        .map_err(err)?;
    for (k, (n, elapsed)) in sums {
        let mut params: Vec<&dyn rusqlite::ToSql> = Vec::with_capacity(20);
        params.push(&k.hour);
        for t in &k.text {
            params.push(t);
        }
        for m in &k.masks {
            params.push(m);
        }
        params.push(&n);
        params.push(&elapsed);
        stmt.execute(params.as_slice()).map_err(err)?;
    }
    Ok(())
}
