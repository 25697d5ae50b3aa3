//! The store's layout: one database ([`FILE`]) and, for each UTC day, a
//! compact day read through its view `d_YYYYMMDD` and a rollup
//! `r_YYYYMMDD`. What the read side (`query`) reads is named here.
//!
//! Of a decision's 29 columns, 17 describe its context (door, client,
//! event type, country, decision, would-be decision, mode, tags, rules,
//! source, reason, IVT class...) and take few distinct values in a day; the
//! UA and the (affiliate_id, offer_id) pair take few more. A compact day
//! keeps each distinct context once in `c_YYYYMMDD`, each UA once in
//! `u_YYYYMMDD` and each affiliate and offer pair once in `w_YYYYMMDD`; its
//! rows hold their ids: 14 narrow columns, mostly integers, instead of 29,
//! packed a thousand to a block in `b_YYYYMMDD` (`block`) and read back as
//! a table through `fg_rows` (`vtab`). The view `d_YYYYMMDD` joins them
//! back under a decision's columns and names, so a query reads every day
//! alike.
//!
//! **The row key.** A row's key is its time key `k`: the millisecond
//! shifted left by [`SEQ_BITS`], plus its place among the decisions of
//! that millisecond. A block's rowid is its first row's key, and blocks
//! never overlap, so the view's `ts` is `k >> 21`, and the query builder
//! puts a bound on `k` (the view's `_k`) beside each bound on `ts`: a time
//! range, or an entry looked up by its id and time, reads the blocks of
//! that range of keys only (a filter on the id alone reads the whole day).
//!
//! No unique key stops one decision being stored twice: the writer never
//! writes a record again once its transaction committed (a failed one is
//! rolled back before the retry), and the rollup would count it twice too.
//!
//! This is the store's one layout for what the writer writes: a day a
//! release before blocks wrote (one SQLite row a decision, in
//! `g_YYYYMMDD`) is read through its view as it is, and converted when
//! the writer adds to it ([`convert_day`]); days of earlier layouts are
//! not read (docs/decision-log.md).

use rusqlite::{Connection, Transaction};

use super::write_error;
use crate::decision_log::LogError;

use super::block::{BLOCK_ROWS, Encoder, Row};
use super::rows::Blocks;

pub const FILE: &str = "decisions.sqlite";

/// The view of the UTC day of `ts_ms`.
pub fn day_table(ts_ms: i64) -> String {
    let days = ts_ms.div_euclid(86_400_000);
    let d = jiff::civil::date(1970, 1, 1) + jiff::Span::new().days(days);
    format!("d_{}", d.strftime("%Y%m%d"))
}

/// The rollup of a day.
pub fn rollup_table(day_table: &str) -> String {
    format!("r_{}", &day_table[2..])
}

/// The days the store holds: their views (`d_YYYYMMDD`), oldest first.
pub fn list_days(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare(
        "SELECT name FROM sqlite_master WHERE type = 'view' AND name GLOB 'd_[0-9]*' \
         ORDER BY name",
    )?;
    stmt.query_map([], |r| r.get::<_, String>(0))?.collect()
}

/// The columns a rollup row is keyed by, besides its hour (`ts`). The
/// nullable ones (`client`, `country_code`) are stored as `''` for NULL
/// (a unique key treats NULLs as distinct) and read back as NULL.
pub const ROLLUP_DIMS: [&str; 17] = [
    "door",
    "client",
    "event_type",
    "affiliate_id",
    "offer_id",
    "country_code",
    "decision",
    "would_be",
    "mode",
    "tags",
    "tag_mask",
    "blocked_mask",
    "source",
    "reason",
    "rule_mask",
    "ivt",
    "ivt_category",
];

/// A rollup's columns: the hour, the dimensions, the decisions counted
/// and the sum of their `elapsed_us`.
pub const ROLLUP_SCHEMA: &str = "(ts INTEGER NOT NULL, door TEXT NOT NULL, client TEXT NOT NULL,     event_type TEXT NOT NULL, affiliate_id TEXT NOT NULL, offer_id TEXT NOT NULL,     country_code TEXT NOT NULL, decision TEXT NOT NULL, would_be TEXT NOT NULL,     mode TEXT NOT NULL, tags TEXT NOT NULL, tag_mask INTEGER NOT NULL,     blocked_mask INTEGER NOT NULL, source TEXT NOT NULL, reason TEXT NOT NULL,     rule_mask INTEGER NOT NULL, ivt TEXT NOT NULL, ivt_category TEXT NOT NULL,     n INTEGER NOT NULL, elapsed_sum INTEGER NOT NULL)";

/// Creates a day's rollup and its unique key if missing.
pub fn create_rollup(tx: &Transaction<'_>, day_table: &str) -> rusqlite::Result<()> {
    let rollup = rollup_table(day_table);
    let dims = ROLLUP_DIMS.join(", ");
    tx.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS \"{rollup}\" {ROLLUP_SCHEMA}; \
         CREATE UNIQUE INDEX IF NOT EXISTS \"{rollup}_key\" ON \"{rollup}\" (ts, {dims});"
    ))
}

/// Bits of a row key below its millisecond: 2 097 152 decisions a
/// millisecond at most.
pub const SEQ_BITS: u32 = 21;
pub(super) const SEQ_MASK: i64 = (1 << SEQ_BITS) - 1;
/// The last millisecond a key holds (2^42 - 1: in the year 2109).
pub(super) const MAX_MS: i64 = (1 << 42) - 1;

/// The smallest time key of millisecond `ms` (clamped to what keys hold).
pub fn key_floor(ms: i64) -> i64 {
    ms.clamp(-MAX_MS - 1, MAX_MS) << SEQ_BITS
}

/// The largest time key of millisecond `ms` (clamped to what keys hold).
pub fn key_ceil(ms: i64) -> i64 {
    key_floor(ms) | SEQ_MASK
}

/// A compact day's blocks (`b_YYYYMMDD`): each keyed by its first row's
/// time key (see the module's notes). A row's columns, as `fg_rows` reads
/// them: `k` the time key; `id_mid` and `id_low` the rest of the decision
/// id (its bits below the millisecond: 16 and 64); `ua`, `who` (the
/// affiliate_id and offer_id pair) and `ctx` ids in the day's
/// dictionaries; `age` how many seconds the event's time (RT's `at`) is
/// before the decision's second (0 for most).
const BLOCKS: &str = "(k INTEGER PRIMARY KEY, data BLOB NOT NULL)";

/// The rows of a day written before blocks (`g_YYYYMMDD`), one SQLite row
/// a decision, before `age` (tests: such a store is made with it).
#[cfg(test)]
pub(super) const OLD_ROWS: &str = "(k INTEGER PRIMARY KEY, id_mid INTEGER NOT NULL, \
    id_low INTEGER NOT NULL, ip TEXT NOT NULL, ua INTEGER NOT NULL, who INTEGER NOT NULL, \
    aff_sub1 TEXT, aff_sub2 TEXT, aff_sub3 TEXT, aff_sub4 TEXT, aff_sub5 TEXT, extra TEXT, \
    ctx INTEGER NOT NULL, elapsed_us INTEGER NOT NULL)";

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
pub(super) const CONTEXT_COLUMNS: &str = "door, client, event_type, country_code, decision, would_be, \
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
    /// Blocks of rows (`b_`).
    pub blocks: String,
    /// Rows one a decision, of a day written before blocks (`g_`).
    pub old_rows: String,
    /// Such rows set aside, when the day had blocks too (`x_`).
    pub set_aside: String,
    /// (affiliate_id, offer_id) pairs (`w_`).
    pub whos: String,
    pub contexts: String,
    pub uas: String,
}

impl Parts {
    pub fn of(day_table: &str) -> Self {
        let d = &day_table[2..];
        Parts {
            blocks: format!("b_{d}"),
            old_rows: format!("g_{d}"),
            set_aside: format!("x_{d}"),
            whos: format!("w_{d}"),
            contexts: format!("c_{d}"),
            uas: format!("u_{d}"),
        }
    }

    /// Every table, for dropping the day.
    pub fn all(&self) -> [&str; 6] {
        [
            &self.blocks,
            &self.old_rows,
            &self.set_aside,
            &self.whos,
            &self.contexts,
            &self.uas,
        ]
    }
}

/// Creates a compact day's tables and its view if missing.
pub fn create_day(tx: &Transaction<'_>, day_table: &str) -> rusqlite::Result<()> {
    let p = Parts::of(day_table);
    tx.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS \"{b}\" {BLOCKS}; \
         CREATE TABLE IF NOT EXISTS \"{w}\" {WHOS}; \
         CREATE TABLE IF NOT EXISTS \"{c}\" {CONTEXTS}; \
         CREATE UNIQUE INDEX IF NOT EXISTS \"{c}_key\" ON \"{c}\" ({CONTEXT_COLUMNS}); \
         CREATE TABLE IF NOT EXISTS \"{u}\" (id INTEGER PRIMARY KEY, ua TEXT NOT NULL UNIQUE); \
         {view}",
        b = p.blocks,
        w = p.whos,
        c = p.contexts,
        u = p.uas,
        view = view(day_table, &p),
    ))
}

/// The statement creating a day's view if missing: a decision's columns
/// and names, the event time `at` and the time key `_k`, over the rows of
/// its blocks.
fn view(day_table: &str, p: &Parts) -> String {
    view_over(day_table, p, &format!("fg_rows('{}')", p.blocks))
}

/// The view of a day written before blocks, over its rows in
/// `g_YYYYMMDD` (read as it is until the writer writes the day again).
pub(super) fn old_view(day_table: &str, p: &Parts) -> String {
    view_over(day_table, p, &format!("\"{}\"", p.old_rows))
}

/// A day's view over `rows` (a table or `fg_rows`) and its dictionaries.
fn view_over(day_table: &str, p: &Parts, rows: &str) -> String {
    let ms = format!("(f.k >> {SEQ_BITS})");
    format!(
        "CREATE VIEW IF NOT EXISTS \"{day_table}\" AS SELECT {id} AS id, {ms} AS ts, \
         {VIEW_COLUMNS}, ({ms} / 1000) - f.age AS at, f.k AS _k FROM {rows} AS f \
         CROSS JOIN \"{c}\" AS c ON c.id = f.ctx CROSS JOIN \"{u}\" AS u ON u.id = f.ua \
         CROSS JOIN \"{w}\" AS w ON w.id = f.who;",
        id = id_text(&ms),
        w = p.whos,
        c = p.contexts,
        u = p.uas,
    )
}

/// The columns of a table, none if it does not exist.
fn columns(conn: &Connection, table: &str) -> rusqlite::Result<Vec<String>> {
    conn.prepare_cached("SELECT name FROM pragma_table_info(?1)")?
        .query_map([table], |r| r.get(0))?
        .collect()
}

/// Brings the days a release before the event time wrote up to date:
/// their rows get `age` (0: their event time reads as their decision's
/// second, which is what those releases recorded) and their view `at`.
/// (Their rows stay one SQLite row a decision, read through the view,
/// until the writer writes such a day again: [`convert_day`].)
pub fn upgrade_days(conn: &mut Connection) -> rusqlite::Result<()> {
    for day in list_days(conn)? {
        let p = Parts::of(&day);
        let cols = columns(conn, &p.old_rows)?;
        if cols.is_empty() || cols.iter().any(|c| c == "age") {
            continue;
        }
        let tx = conn.transaction()?;
        tx.execute_batch(&format!(
            "ALTER TABLE \"{g}\" ADD COLUMN age INTEGER NOT NULL DEFAULT 0; \
             DROP VIEW \"{day}\"; {view}",
            g = p.old_rows,
            view = old_view(&day, &p),
        ))?;
        tx.commit()?;
    }
    Ok(())
}

/// Converts a day a release before blocks wrote (its rows in
/// `g_YYYYMMDD`, one a decision) to blocks, before the writer adds to it:
/// the day of an upgrade. False when the day has no such rows.
///
/// A day with rows in both layouts (a release before blocks wrote it
/// after this one had: a rollback and a roll forward the same day) keeps
/// its blocks; the other rows are set aside in `x_YYYYMMDD` with a
/// warning (the two releases numbered their keys apart, so they may
/// collide), kept in the file until retention drops the day.
pub(super) fn convert_day(tx: &Transaction<'_>, day: &str) -> Result<bool, LogError> {
    let err = write_error;
    let p = Parts::of(day);
    if columns(tx, &p.old_rows).map_err(err)?.is_empty() {
        return Ok(false);
    }
    let blocks_too = !columns(tx, &p.blocks).map_err(err)?.is_empty()
        && tx
            .query_row(
                &format!("SELECT count(*) > 0 FROM \"{}\"", p.blocks),
                [],
                |r| r.get::<_, bool>(0),
            )
            .map_err(err)?;
    if blocks_too {
        let n: i64 = tx
            .query_row(
                &format!("SELECT count(*) FROM \"{}\"", p.old_rows),
                [],
                |r| r.get(0),
            )
            .map_err(err)?;
        tracing::warn!(
            %day,
            rows = n,
            set_aside = %p.set_aside,
            "decision log: a release before blocks wrote to a day this one had written; \
             its rows are set aside, not read"
        );
        tx.execute_batch(&format!(
            "DROP TABLE IF EXISTS \"{x}\"; ALTER TABLE \"{g}\" RENAME TO \"{x}\"; \
             DROP VIEW IF EXISTS \"{day}\"; {view}",
            g = p.old_rows,
            x = p.set_aside,
            view = view(day, &p),
        ))
        .map_err(err)?;
        return Ok(false);
    }
    tx.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS \"{b}\" {BLOCKS};",
        b = p.blocks
    ))
    .map_err(err)?;
    // (`age` is there: `upgrade_days` added it when the store opened.)
    let mut rows = tx
        .prepare(&format!(
            "SELECT k, id_mid, id_low, ip, ua, who, aff_sub1, aff_sub2, aff_sub3, aff_sub4, \
             aff_sub5, extra, ctx, elapsed_us, age FROM \"{g}\" ORDER BY k",
            g = p.old_rows
        ))
        .map_err(err)?;
    let mut blocks = Blocks::of(tx, &p).map_err(err)?;
    let mut enc = Encoder::default();
    let mut rows = rows.query([]).map_err(err)?;
    while let Some(r) = rows.next().map_err(err)? {
        let text = |i: usize| r.get_ref(i).and_then(|v| Ok(v.as_bytes_or_null()?));
        let row = (|| {
            Ok::<_, rusqlite::Error>(Row {
                k: r.get(0)?,
                id_mid: r.get(1)?,
                id_low: r.get(2)?,
                ip: text(3)?.unwrap_or_default(),
                ua: r.get(4)?,
                who: r.get(5)?,
                aff_sub: [text(6)?, text(7)?, text(8)?, text(9)?, text(10)?],
                extra: text(11)?,
                ctx: r.get(12)?,
                elapsed_us: r.get(13)?,
                age: r.get(14)?,
            })
        })()
        .map_err(err)?;
        enc.push(&row);
        if enc.rows() == BLOCK_ROWS {
            blocks.flush(&mut enc)?;
        }
    }
    blocks.flush(&mut enc)?;
    drop(blocks);
    drop(rows);
    tx.execute_batch(&format!(
        "DROP VIEW IF EXISTS \"{day}\"; DROP TABLE \"{g}\"; {view}",
        g = p.old_rows,
        view = view(day, &p),
    ))
    .map_err(err)?;
    Ok(true)
}
