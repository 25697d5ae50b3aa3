//! Compact day tables: what repeats across decisions is stored once.
//!
//! Of a decision's 29 columns, 17 describe its context (door, client,
//! event type, country, decision, would-be decision, mode, tags, rules,
//! source, reason, IVT class...) and take few distinct values in a day; the
//! UA and the (affiliate_id, offer_id) pair take few more. A compact day
//! keeps each distinct context once in `c_YYYYMMDD`, each UA once in
//! `u_YYYYMMDD` and each affiliate and offer pair once in `w_YYYYMMDD`; its
//! rows (`g_YYYYMMDD`) hold their ids: 14 narrow columns, mostly integers,
//! instead of 29. The view `d_YYYYMMDD` joins them back under a
//! decision's columns and names, so a query reads every day alike.
//!
//! **The row key.** A row's rowid is its time key `k`: the millisecond
//! shifted left by [`SEQ_BITS`], plus its place among the decisions of
//! that millisecond. Rows so go in at the end of the table's tree (but for
//! a record that reaches the writer after later ones), with no index to
//! keep: the view's `ts` is `k >> 21`, and the query builder puts a bound
//! on `k` (the view's `_k`) beside each bound on `ts`, so a time range, or
//! an entry looked up by its id and time, is a range of rowids (a filter on
//! the id alone reads the whole day).
//!
//! No unique key stops one decision being stored twice: the writer never
//! writes a record again once its transaction committed (a failed one is
//! rolled back before the retry), and the rollup would count it twice too.
//!
//! This is the store's one layout: days written by releases before it
//! are not read (docs/decision-log.md).
//!
//! The writer keeps the day's dictionaries in memory (bounded: past
//! [`MAX_UAS`], [`MAX_WHOS`] or [`MAX_CONTEXTS`] entries they are emptied
//! and refilled from the store), so a row costs three hash lookups; a
//! context, UA or pair first seen is upserted in the same transaction as
//! the rows that use it.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};

// foldhash (already in the tree through hashbrown): a per-process seeded
// hash several times cheaper than SipHash on a 120-byte UA; the maps are
// bounded, so a crafted flood of colliding keys cannot grow them.
use foldhash::fast::RandomState;
use std::sync::Arc;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Statement, ToSql, Transaction};

use super::batch::Records;
use super::columns::{self, AFF_SUBS, StackStr, ip_text};
use super::ivt::IvtMap;
use super::record::{Record, utf8};
use super::{IpMode, LogError};
use crate::event::Opt;

/// Entries a day's in-memory dictionaries hold at most (each is also in
/// the store: emptying them costs lookups, never correctness).
pub const MAX_UAS: usize = 200_000;
pub const MAX_WHOS: usize = 200_000;
pub const MAX_CONTEXTS: usize = 50_000;

/// Bits of a row key below its millisecond: 2 097 152 decisions a
/// millisecond at most.
pub const SEQ_BITS: u32 = 21;
const SEQ_MASK: i64 = (1 << SEQ_BITS) - 1;
/// The last millisecond a key holds (2^42 - 1: in the year 2109).
const MAX_MS: i64 = (1 << 42) - 1;

/// The smallest time key of millisecond `ms` (clamped to what keys hold).
pub fn key_floor(ms: i64) -> i64 {
    ms.clamp(-MAX_MS - 1, MAX_MS) << SEQ_BITS
}

/// The largest time key of millisecond `ms` (clamped to what keys hold).
pub fn key_ceil(ms: i64) -> i64 {
    key_floor(ms) | SEQ_MASK
}

/// Rows per multi-row INSERT (14 parameters each, 8 without aff_subs or
/// extra).
const ROWS_PER_INSERT: usize = 64;
/// The columns [`Fact::bind`] binds, in its order: all of them, and those
/// of a row with no aff_sub or extra.
const WIDE_COLUMNS: &str = "k, id_mid, id_low, ip, ua, who, aff_sub1, aff_sub2, aff_sub3, \
    aff_sub4, aff_sub5, extra, ctx, elapsed_us";
const NARROW_COLUMNS: &str = "k, id_mid, id_low, ip, ua, who, ctx, elapsed_us";

/// The rows of a compact day (`g_YYYYMMDD`). `k` is the time key (see the
/// module's notes); `id_mid` and `id_low` the rest of the decision id (its
/// bits below the millisecond: 16 and 64). `who` is the row's (affiliate_id, offer_id) in `w_YYYYMMDD`.
const ROWS: &str = "(k INTEGER PRIMARY KEY, id_mid INTEGER NOT NULL, id_low INTEGER NOT NULL, \
    ip TEXT NOT NULL, ua INTEGER NOT NULL, who INTEGER NOT NULL, aff_sub1 TEXT, aff_sub2 TEXT, \
    aff_sub3 TEXT, aff_sub4 TEXT, aff_sub5 TEXT, extra TEXT, ctx INTEGER NOT NULL, \
    elapsed_us INTEGER NOT NULL)";

/// The decision id, hyphenated as `DecisionId`'s Display, from its parts
/// (`ms` the SQL of its millisecond).
fn id_text(ms: &str) -> String {
    format!(
        "printf('%08x-%04x-%04x-%04x-%012x', {ms} >> 16, {ms} & 65535, f.id_mid, \
         (f.id_low >> 48) & 65535, f.id_low & 281474976710655)"
    )
}

/// A context's columns; `client` and `country_code` are `''` for none (a
/// unique key treats NULLs as distinct), read back as NULL by the view.
const CONTEXT_COLUMNS: &str = "door, client, event_type, country_code, decision, would_be, \
    mode, tags, tag_mask, blocked_mask, source, reason, rules, rule_mask, ivt, ivt_category";

const CONTEXTS: &str = "(id INTEGER PRIMARY KEY, door TEXT NOT NULL, client TEXT NOT NULL, \
    event_type TEXT NOT NULL, country_code TEXT NOT NULL, decision TEXT NOT NULL, \
    would_be TEXT NOT NULL, mode TEXT NOT NULL, tags TEXT NOT NULL, tag_mask INTEGER NOT NULL, \
    blocked_mask INTEGER NOT NULL, source TEXT NOT NULL, reason TEXT NOT NULL, \
    rules TEXT NOT NULL, rule_mask INTEGER NOT NULL, ivt TEXT NOT NULL, \
    ivt_category TEXT NOT NULL)";

const WHOS: &str = "(id INTEGER PRIMARY KEY, affiliate_id TEXT NOT NULL, \
    offer_id TEXT NOT NULL, UNIQUE (affiliate_id, offer_id))";

/// The view's select list between the id and time and the time key `_k`:
/// a decision's columns, in the order of the query side's empty source
/// (`query::sqlite`), so `SELECT *` of the days lines up in a UNION.
const VIEW_COLUMNS: &str = "c.door AS door, NULLIF(c.client, '') AS client, \
    c.event_type AS event_type, f.ip AS ip, u.ua AS ua, w.affiliate_id AS affiliate_id, \
    w.offer_id AS offer_id, f.aff_sub1 AS aff_sub1, f.aff_sub2 AS aff_sub2, \
    f.aff_sub3 AS aff_sub3, f.aff_sub4 AS aff_sub4, f.aff_sub5 AS aff_sub5, \
    NULLIF(c.country_code, '') AS country_code, f.extra AS extra, c.decision AS decision, \
    c.would_be AS would_be, c.mode AS mode, c.tags AS tags, c.tag_mask AS tag_mask, \
    c.blocked_mask AS blocked_mask, c.source AS source, c.reason AS reason, c.rules AS rules, \
    c.rule_mask AS rule_mask, c.ivt AS ivt, c.ivt_category AS ivt_category, \
    f.elapsed_us AS elapsed_us";

/// The tables behind the compact day `d_YYYYMMDD`.
pub struct Parts {
    /// Rows (`g_`).
    pub rows: String,
    /// (affiliate_id, offer_id) pairs (`w_`).
    pub whos: String,
    pub contexts: String,
    pub uas: String,
}

impl Parts {
    pub fn of(day_table: &str) -> Self {
        let d = &day_table[2..];
        Parts {
            rows: format!("g_{d}"),
            whos: format!("w_{d}"),
            contexts: format!("c_{d}"),
            uas: format!("u_{d}"),
        }
    }

    /// Every table, for dropping the day.
    pub fn all(&self) -> [&str; 4] {
        [&self.rows, &self.whos, &self.contexts, &self.uas]
    }
}

/// Creates a compact day's tables and its view if missing: a decision's
/// columns and names and the time key `_k`, over the rows.
pub fn create(tx: &Transaction<'_>, day_table: &str) -> rusqlite::Result<()> {
    let p = Parts::of(day_table);
    let ms = format!("(f.k >> {SEQ_BITS})");
    tx.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS \"{g}\" {ROWS}; \
         CREATE TABLE IF NOT EXISTS \"{w}\" {WHOS}; \
         CREATE TABLE IF NOT EXISTS \"{c}\" {CONTEXTS}; \
         CREATE UNIQUE INDEX IF NOT EXISTS \"{c}_key\" ON \"{c}\" ({CONTEXT_COLUMNS}); \
         CREATE TABLE IF NOT EXISTS \"{u}\" (id INTEGER PRIMARY KEY, ua TEXT NOT NULL UNIQUE); \
         CREATE VIEW IF NOT EXISTS \"{day_table}\" AS SELECT {id} AS id, {ms} AS ts, \
         {VIEW_COLUMNS}, f.k AS _k FROM \"{g}\" AS f \
         CROSS JOIN \"{c}\" AS c ON c.id = f.ctx CROSS JOIN \"{u}\" AS u ON u.id = f.ua \
         CROSS JOIN \"{w}\" AS w ON w.id = f.who;",
        id = id_text(&ms),
        g = p.rows,
        w = p.whos,
        c = p.contexts,
        u = p.uas,
    ))
}

/// One decision context: what a row shares with many others.
pub struct Context {
    pub door: &'static str,
    client: Option<Arc<str>>,
    pub event_type: &'static str,
    country: Option<Box<str>>,
    pub decision: &'static str,
    pub would_be: &'static str,
    pub mode: &'static str,
    pub source: &'static str,
    pub reason: &'static str,
    /// Its columns as stored (worked out once per context).
    pub text: ContextText,
}

/// A context's derived columns.
pub struct ContextText {
    pub tags: String,
    pub tag_mask: i64,
    pub blocked_mask: i64,
    pub rules: String,
    pub rule_mask: i64,
    pub ivt: &'static str,
    pub ivt_category: String,
}

impl Context {
    fn of(r: &Record, ivt: &IvtMap) -> Self {
        let class = ivt.classify(&r.rules, &r.tags);
        Context {
            door: r.door.as_str(),
            client: r.client.clone(),
            event_type: r.event.event_type.as_str(),
            country: r.event.get(Opt::CountryCode).map(Into::into),
            decision: r.decision.as_str(),
            would_be: r.would_be.as_str(),
            mode: r.mode.as_str(),
            source: r.source.as_str(),
            reason: r.reason,
            text: ContextText {
                tags: r.tags.iter().collect::<Vec<_>>().join(","),
                tag_mask: i64::from(r.tags.known_mask()),
                blocked_mask: i64::from(r.blocked_by.known_mask()),
                rules: serde_json::to_string(&r.rules).unwrap_or_else(|_| "[]".into()),
                rule_mask: columns::rule_mask(&r.rules),
                ivt: class.class.as_str(),
                ivt_category: class.category.into(),
            },
        }
    }

    /// `''` for none, as stored.
    pub fn client(&self) -> &str {
        self.client.as_deref().unwrap_or("")
    }

    /// `''` for none, as stored.
    pub fn country(&self) -> &str {
        self.country.as_deref().unwrap_or("")
    }
}

/// An (affiliate_id, offer_id) pair's id, and the pair.
type Who = (i64, Box<[u8]>, Box<[u8]>);

/// A compact day's dictionaries as the writer holds them, and the last
/// time key written.
#[derive(Default)]
pub struct Dictionaries {
    state: RandomState,
    /// A UA's bytes -> its id.
    uas: HashMap<Box<[u8]>, i64, RandomState>,
    /// Hash of (affiliate_id, offer_id) -> the pair and its id. (Two
    /// pairs with one hash: the second is looked up in the store each
    /// time, never mistaken for the first.)
    whos: HashMap<u64, Who, RandomState>,
    /// A context's encoded bytes (`record::Encoded::context`) -> its
    /// index in `contexts`. (Two encodings of one context, should there
    /// be such, are two keys for the one row the store's unique key
    /// keeps.)
    by_bytes: HashMap<Box<[u8]>, u32, RandomState>,
    /// Each context with its id in the store.
    contexts: Vec<(i64, Context)>,
    /// The largest `k` in the day's rows (None: not read yet).
    last_key: Option<i64>,
    /// The last batch's records in batch order, the order to write them
    /// in, and their keys (kept for their allocations).
    slots: Vec<Slot>,
    order: Vec<Order>,
    keys: Vec<i64>,
}

impl Dictionaries {
    /// Empties the dictionaries once they outgrow their bound (between
    /// batches only: a batch's indexes stay valid while it is written).
    fn bound(&mut self) {
        if self.uas.len() > MAX_UAS {
            self.uas = HashMap::default();
        }
        if self.whos.len() > MAX_WHOS {
            self.whos = HashMap::default();
        }
        if self.contexts.len() > MAX_CONTEXTS {
            self.by_bytes = HashMap::default();
            self.contexts = Vec::new();
        }
    }

    pub fn context(&self, i: u32) -> &Context {
        &self.contexts[i as usize].1
    }

    /// The records of the batch [`insert`] last wrote, in batch order
    /// (after an error: of the batch that failed).
    pub fn written(&self) -> &[Slot] {
        &self.slots
    }
}

/// One row of `g_YYYYMMDD`, borrowing what it can from its record.
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
            ctx: dicts.contexts[s.context as usize].0,
            elapsed_us: s.elapsed_us,
        };
        // (Optional values are never empty: the event drops those.)
        debug_assert_eq!(f.is_wide(), s.wide, "a row's optional fields");
        f
    }

    /// Whether the row has a value for a column of the wide statement
    /// only (an aff_sub or extra).
    fn is_wide(&self) -> bool {
        self.extra.is_some() || self.aff_sub.iter().any(Option::is_some)
    }

    /// Binds the row's values from parameter `at + 1` on: those of
    /// `WIDE_COLUMNS`, or of `NARROW_COLUMNS` (no aff_sub or extra) when
    /// `!wide`.
    /// Each value through its own type's binding, inlined (through
    /// `&dyn ToSql` each value was an indirect call whose result went
    /// through memory: measured, the largest single cost of binding).
    fn bind(
        &self,
        stmt: &mut Statement<'_>,
        at: &mut usize,
        k: i64,
        wide: bool,
    ) -> rusqlite::Result<()> {
        fn put<T: ToSql>(stmt: &mut Statement<'_>, at: &mut usize, v: T) -> rusqlite::Result<()> {
            *at += 1;
            stmt.raw_bind_parameter(*at, v)
        }
        put(stmt, at, k)?;
        put(stmt, at, self.id_mid)?;
        put(stmt, at, self.id_low)?;
        put(stmt, at, &self.ip)?;
        put(stmt, at, self.ua)?;
        put(stmt, at, self.who)?;
        if wide {
            for sub in self.aff_sub {
                put(stmt, at, sub)?;
            }
            put(stmt, at, self.extra.as_deref())?;
        }
        put(stmt, at, self.ctx)?;
        put(stmt, at, self.elapsed_us)
    }
}

/// A record's place in time order: its id (the top 64 bits, its
/// millisecond then `id_mid`; the low 64, `id_low`), and its slot.
#[derive(Clone, Copy, Debug)]
pub struct Order {
    high: u64,
    low: u64,
    slot: u32,
}

impl Order {
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
    ua: i64,
    /// Its (affiliate_id, offer_id) pair's id.
    pub who: i64,
    pub elapsed_us: i64,
    ip: std::net::IpAddr,
    /// Whether the record has optional fields stored in the row (any but
    /// country_code, which is its context's).
    wide: bool,
}

impl Slot {
    /// The decision's Unix milliseconds.
    pub fn ms(&self) -> i64 {
        self.ms
    }
}

impl<const N: usize> ToSql for StackStr<N> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(ValueRef::Text(
            self.as_str().as_bytes(),
        )))
    }
}

/// Text the encoding holds (UTF-8), bound as TEXT as it is.
#[derive(Clone, Copy)]
struct Text<'a>(&'a [u8]);

impl ToSql for Text<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        debug_assert!(std::str::from_utf8(self.0).is_ok(), "not text");
        Ok(ToSqlOutput::Borrowed(ValueRef::Text(self.0)))
    }
}

/// Whether an optional field is stored in the row (an aff_sub column or
/// `extra`): all but country_code, which is its context's.
fn in_row(o: Opt) -> bool {
    o != Opt::CountryCode
}

/// The id of a UA in the day's dictionary, upserted when first seen.
fn ua_id(
    tx: &Transaction<'_>,
    p: &Parts,
    dicts: &mut Dictionaries,
    ua: &[u8],
) -> rusqlite::Result<i64> {
    if let Some(id) = dicts.uas.get(ua) {
        return Ok(*id);
    }
    let id: i64 = tx
        .prepare_cached(&format!(
            "INSERT INTO \"{}\" (ua) VALUES (?) \
             ON CONFLICT (ua) DO UPDATE SET ua = excluded.ua RETURNING id",
            p.uas
        ))?
        // (Checked once, as it is first stored.)
        .query_row([utf8(ua)], |row| row.get(0))?;
    dicts.uas.insert(ua.into(), id);
    Ok(id)
}

/// The id of an (affiliate_id, offer_id) pair, upserted when first seen.
fn who_id(
    tx: &Transaction<'_>,
    p: &Parts,
    dicts: &mut Dictionaries,
    affiliate_id: &[u8],
    offer_id: &[u8],
) -> rusqlite::Result<i64> {
    let mut h = dicts.state.build_hasher();
    affiliate_id.hash(&mut h);
    offer_id.hash(&mut h);
    let hash = h.finish();
    let known = dicts.whos.get(&hash);
    if let Some((id, a, o)) = known {
        if **a == *affiliate_id && **o == *offer_id {
            return Ok(*id);
        }
    }
    let taken = known.is_some();
    let id: i64 = tx
        .prepare_cached(&format!(
            "INSERT INTO \"{}\" (affiliate_id, offer_id) VALUES (?, ?) \
             ON CONFLICT (affiliate_id, offer_id) DO UPDATE SET affiliate_id = \
             excluded.affiliate_id RETURNING id",
            p.whos
        ))?
        .query_row([utf8(affiliate_id), utf8(offer_id)], |row| row.get(0))?;
    if !taken {
        dicts
            .whos
            .insert(hash, (id, affiliate_id.into(), offer_id.into()));
    }
    Ok(id)
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
    let err = super::sqlite::write_error;
    let mut last = match dicts.last_key {
        Some(k) => k,
        None => tx
            .query_row(
                &format!("SELECT coalesce(max(k), -1) FROM \"{}\"", p.rows),
                [],
                |r| r.get(0),
            )
            .map_err(err)?,
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
                    let max: Option<i64> = tx
                        .prepare_cached(&format!(
                            "SELECT max(k) FROM \"{}\" WHERE k BETWEEN ? AND ?",
                            p.rows
                        ))
                        .and_then(|mut s| s.query_row([floor, key_ceil(ms)], |r| r.get(0)))
                        .map_err(err)?;
                    max.map_or(floor, |m| m + 1)
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
    let err = super::sqlite::write_error;
    slots.clear();
    slots.reserve(rows.len());
    order.clear();
    order.reserve(rows.len());
    // Dictionary ids in batch order, then rows in time order: two tight
    // loops (measured: resolving each record as its row is bound, one
    // pass in time order, was slower: 405 000 against 461 000 decisions/s
    // in the load example, median of five pairs).
    for (i, e) in rows.iter().enumerate() {
        let ua = ua_id(tx, p, dicts, e.ua).map_err(err)?;
        let who = who_id(tx, p, dicts, e.affiliate_id, e.offer_id).map_err(err)?;
        let ci = match dicts.by_bytes.get(e.context) {
            Some(i) => *i,
            None => {
                // A context first seen: the record built whole, once.
                let c = Context::of(&e.decode(&mut None), ivt);
                let t = &c.text;
                let id: i64 = tx
                    .prepare_cached(&format!(
                        "INSERT INTO \"{}\" ({CONTEXT_COLUMNS}) \
                         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
                         ON CONFLICT ({CONTEXT_COLUMNS}) DO UPDATE SET door = excluded.door \
                         RETURNING id",
                        p.contexts
                    ))
                    .and_then(|mut s| {
                        s.query_row(
                            rusqlite::params![
                                c.door,
                                c.client(),
                                c.event_type,
                                c.country(),
                                c.decision,
                                c.would_be,
                                c.mode,
                                t.tags,
                                t.tag_mask,
                                t.blocked_mask,
                                c.source,
                                c.reason,
                                t.rules,
                                t.rule_mask,
                                t.ivt,
                                t.ivt_category,
                            ],
                            |row| row.get(0),
                        )
                    })
                    .map_err(err)?;
                let i = dicts.contexts.len() as u32;
                dicts.contexts.push((id, c));
                dicts.by_bytes.insert(e.context.into(), i);
                i
            }
        };
        order.push(Order {
            high: (e.id.0 >> 64) as u64,
            low: e.id.0 as u64,
            slot: i as u32,
        });
        slots.push(Slot {
            ms: e.ts_ms(),
            record: i as u32,
            context: ci,
            ua,
            who,
            elapsed_us: e.elapsed_us as i64,
            ip: e.ip,
            wide: e.optional().any(|(o, _)| in_row(o)),
        });
    }
    // In time order, so keys can be numbered and rows go in at the end of
    // the table's tree (a batch's records come from several threads).
    // The order is sorted, not the slots: fewer than half the bytes to move.
    order.sort_unstable_by_key(|o| (o.high, o.low));
    keys.clear();
    assign_keys(tx, p, dicts, order.iter().map(Order::ms), keys)?;
    write_rows(tx, p, dicts, rows, (slots, order, keys), (ip_mode, salt)).map_err(err)
}

/// The rows of `slots` in `order` (keyed by `keys`), 64 to a statement.
/// A chunk none of whose rows has an aff_sub or extra goes through a
/// statement without those columns (six fewer values bound and stored a
/// row, the columns NULL all the same); a chunk with any goes through the
/// wide one.
fn write_rows(
    tx: &Transaction<'_>,
    p: &Parts,
    dicts: &Dictionaries,
    rows: Records<'_>,
    (slots, order, keys): (&[Slot], &[Order], &[i64]),
    ip: (IpMode, Option<&[u8; 32]>),
) -> rusqlite::Result<()> {
    let insert = |n: usize, wide: bool| {
        let columns = if wide { WIDE_COLUMNS } else { NARROW_COLUMNS };
        let width = columns.split(',').count();
        let one = format!("({})", vec!["?"; width].join(", "));
        format!(
            "INSERT INTO \"{}\" ({columns}) VALUES {}",
            p.rows,
            vec![one; n].join(", ")
        )
    };
    let fact = |o: &Order| Fact::of(o, &slots[o.slot as usize], rows, dicts, ip);
    // [rows in the statement == 1][wide], each prepared when first needed.
    let mut stmts: [[Option<rusqlite::CachedStatement<'_>>; 2]; 2] = Default::default();
    let mut facts = Vec::with_capacity(ROWS_PER_INSERT);
    for (chunk, ks) in order
        .chunks(ROWS_PER_INSERT)
        .zip(keys.chunks(ROWS_PER_INSERT))
    {
        facts.clear();
        facts.extend(chunk.iter().map(fact));
        // A full chunk in one statement; the last, shorter one a row at a
        // time (one statement per row count would be prepared and cached
        // for each of 63 counts).
        let n = if chunk.len() == ROWS_PER_INSERT {
            ROWS_PER_INSERT
        } else {
            1
        };
        for (rows, ks) in facts.chunks(n).zip(ks.chunks(n)) {
            let wide = rows.iter().any(Fact::is_wide);
            let stmt = match &mut stmts[usize::from(n == 1)][usize::from(wide)] {
                Some(s) => s,
                none => none.insert(tx.prepare_cached(&insert(n, wide))?),
            };
            let mut at = 0;
            for (f, k) in rows.iter().zip(ks) {
                f.bind(stmt, &mut at, *k, wide)?;
            }
            // Every parameter is bound afresh for each execution: raw
            // binding has no count check of its own, and one left out
            // would keep the previous execution's value.
            if at != stmt.parameter_count() {
                return Err(rusqlite::Error::InvalidParameterCount(
                    at,
                    stmt.parameter_count(),
                ));
            }
            stmt.raw_execute()?;
        }
    }
    Ok(())
}
