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

use rusqlite::{Connection, Transaction};

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

/// The rows of a compact day (`g_YYYYMMDD`). `k` is the time key (see the
/// module's notes); `id_mid` and `id_low` the rest of the decision id (its
/// bits below the millisecond: 16 and 64). `who` is the row's (affiliate_id, offer_id) in `w_YYYYMMDD`.
/// `age` is how many seconds the event's time (RT's `at`) is before the
/// decision's second: 0 for most (SQLite stores a 0 in no bytes), so the
/// event time costs a row nothing unless it differs.
const ROWS: &str = "(k INTEGER PRIMARY KEY, id_mid INTEGER NOT NULL, id_low INTEGER NOT NULL, \
    ip TEXT NOT NULL, ua INTEGER NOT NULL, who INTEGER NOT NULL, aff_sub1 TEXT, aff_sub2 TEXT, \
    aff_sub3 TEXT, aff_sub4 TEXT, aff_sub5 TEXT, extra TEXT, ctx INTEGER NOT NULL, \
    elapsed_us INTEGER NOT NULL, age INTEGER NOT NULL DEFAULT 0)";

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

/// Creates a compact day's tables and its view if missing.
pub fn create_day(tx: &Transaction<'_>, day_table: &str) -> rusqlite::Result<()> {
    let p = Parts::of(day_table);
    tx.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS \"{g}\" {ROWS}; \
         CREATE TABLE IF NOT EXISTS \"{w}\" {WHOS}; \
         CREATE TABLE IF NOT EXISTS \"{c}\" {CONTEXTS}; \
         CREATE UNIQUE INDEX IF NOT EXISTS \"{c}_key\" ON \"{c}\" ({CONTEXT_COLUMNS}); \
         CREATE TABLE IF NOT EXISTS \"{u}\" (id INTEGER PRIMARY KEY, ua TEXT NOT NULL UNIQUE); \
         {view}",
        g = p.rows,
        w = p.whos,
        c = p.contexts,
        u = p.uas,
        view = view(day_table, &p),
    ))
}

/// The statement creating a day's view if missing: a decision's columns
/// and names, the event time `at` and the time key `_k`, over the rows.
fn view(day_table: &str, p: &Parts) -> String {
    let ms = format!("(f.k >> {SEQ_BITS})");
    format!(
        "CREATE VIEW IF NOT EXISTS \"{day_table}\" AS SELECT {id} AS id, {ms} AS ts, \
         {VIEW_COLUMNS}, ({ms} / 1000) - f.age AS at, f.k AS _k FROM \"{g}\" AS f \
         CROSS JOIN \"{c}\" AS c ON c.id = f.ctx CROSS JOIN \"{u}\" AS u ON u.id = f.ua \
         CROSS JOIN \"{w}\" AS w ON w.id = f.who;",
        id = id_text(&ms),
        g = p.rows,
        w = p.whos,
        c = p.contexts,
        u = p.uas,
    )
}

/// Brings the days written by a release before the event time up to
/// date: their rows get `age` (0: their event time reads as their
/// decision's second, which is what those releases recorded) and their
/// view `at`. A day already up to date is left as it is.
pub fn upgrade_days(conn: &mut Connection) -> rusqlite::Result<()> {
    for day in list_days(conn)? {
        let p = Parts::of(&day);
        let has_age: bool = conn.query_row(
            "SELECT count(*) > 0 FROM pragma_table_info(?1) WHERE name = 'age'",
            [&p.rows],
            |r| r.get(0),
        )?;
        if has_age {
            continue;
        }
        let tx = conn.transaction()?;
        tx.execute_batch(&format!(
            "ALTER TABLE \"{g}\" ADD COLUMN age INTEGER NOT NULL DEFAULT 0; \
             DROP VIEW \"{day}\"; {view}",
            g = p.rows,
            view = view(&day, &p),
        ))?;
        tx.commit()?;
    }
    Ok(())
}
