//! Compact day tables: what repeats across decisions is stored once.
//!
//! Of a decision's 29 columns, 17 describe its context (door, client,
//! event type, country, decision, would-be decision, mode, tags, rules,
//! source, reason, IVT class...) and take few distinct values in a day; the
//! UA takes few more. A compact day keeps each distinct context once in
//! `c_YYYYMMDD` and each UA once in `u_YYYYMMDD`; its rows (`f_YYYYMMDD`)
//! hold their ids: 15 narrow columns instead of 29, about a third of the
//! bytes and a quarter of the insert cost (measured: 0.6 against 2.3 us a
//! row). The rows are clustered by time on the decision id cut into three
//! integers, so they need no index of their own. The view `d_YYYYMMDD`
//! joins them back under the columns and names of a plain day table, so
//! every query reads either kind of day alike. A day begun by the first
//! compact release keeps its rows in `e_YYYYMMDD` (a text id and a `ts`
//! index); its view reads both rows' tables.
//!
//! The writer keeps the day's dictionaries in memory (bounded: past
//! [`MAX_UAS`] or [`MAX_CONTEXTS`] entries they are emptied and refilled
//! from the store), so a row costs two hash lookups; a context or UA first
//! seen is upserted in the same transaction as the rows that use it.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::{BuildHasher, Hash, Hasher};

// foldhash (already in the tree through hashbrown): a per-process seeded
// hash several times cheaper than SipHash on a 120-byte UA; the maps are
// bounded, so a crafted flood of colliding keys cannot grow them.
use foldhash::fast::RandomState;
use std::sync::Arc;

use rusqlite::{OptionalExtension, ToSql, Transaction, params_from_iter};

use super::ivt::IvtMap;
use super::record::Record;
use super::{IpMode, LogError, store_ip};
use crate::event::Opt;
use crate::rules::RuleHit;
use crate::verdict::Tags;

/// Entries a day's in-memory dictionaries hold at most (each is also in
/// the store: emptying them costs lookups, never correctness).
pub const MAX_UAS: usize = 200_000;
pub const MAX_CONTEXTS: usize = 50_000;

/// Rows per multi-row INSERT (15 parameters each).
const ROWS_PER_INSERT: usize = 64;
const FACT_COLUMNS: usize = 15;

/// The rows of a compact day (`f_YYYYMMDD`), clustered by time: the key
/// is the decision id cut into integers (`ts` its top 48 bits, the
/// millisecond; `id_mid` the next 16; `id_low` the last 64), so a time
/// range or one id is a seek on the key, with no index of its own, and
/// no id is formatted or copied as text on the write path (the view
/// writes it out). Measured on the load example: 1.32 us a row with a
/// text id and a `ts` index, 0.9 with this.
const FACTS: &str = "(ts INTEGER NOT NULL, id_mid INTEGER NOT NULL, id_low INTEGER NOT NULL, \
    ip TEXT NOT NULL, ua INTEGER NOT NULL, affiliate_id TEXT NOT NULL, offer_id TEXT NOT NULL, \
    aff_sub1 TEXT, aff_sub2 TEXT, aff_sub3 TEXT, aff_sub4 TEXT, aff_sub5 TEXT, extra TEXT, \
    ctx INTEGER NOT NULL, elapsed_us INTEGER NOT NULL, \
    PRIMARY KEY (ts, id_mid, id_low)) WITHOUT ROWID";

/// The decision id, hyphenated as `DecisionId`'s Display, from its parts.
const ID_TEXT: &str = "printf('%08x-%04x-%04x-%04x-%012x', f.ts >> 16, f.ts & 65535, f.id_mid, \
    (f.id_low >> 48) & 65535, f.id_low & 281474976710655)";

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

/// The view's select list: a plain day table's columns, in its order
/// (`sqlite::COLUMNS`), so `SELECT *` of either kind lines up in a UNION.
/// (after the id and the time, which each kind of row table has in its own form).
const VIEW_COLUMNS: &str = "c.door AS door, \
    NULLIF(c.client, '') AS client, c.event_type AS event_type, f.ip AS ip, u.ua AS ua, \
    f.affiliate_id AS affiliate_id, f.offer_id AS offer_id, f.aff_sub1 AS aff_sub1, \
    f.aff_sub2 AS aff_sub2, f.aff_sub3 AS aff_sub3, f.aff_sub4 AS aff_sub4, \
    f.aff_sub5 AS aff_sub5, NULLIF(c.country_code, '') AS country_code, f.extra AS extra, \
    c.decision AS decision, c.would_be AS would_be, c.mode AS mode, c.tags AS tags, \
    c.tag_mask AS tag_mask, c.blocked_mask AS blocked_mask, c.source AS source, \
    c.reason AS reason, c.rules AS rules, c.rule_mask AS rule_mask, c.ivt AS ivt, \
    c.ivt_category AS ivt_category, f.elapsed_us AS elapsed_us";

/// The tables behind the compact day `d_YYYYMMDD`: rows, contexts, UAs,
/// and the rows' table of the first compact days (`e_YYYYMMDD`, a text id
/// and a `ts` index), which only days begun by that release have.
pub fn parts(day_table: &str) -> [String; 4] {
    let d = &day_table[2..];
    [
        format!("f_{d}"),
        format!("c_{d}"),
        format!("u_{d}"),
        format!("e_{d}"),
    ]
}

/// The select of the view over one rows' table: `id_ts` is its id and
/// time columns (as `f`).
fn view_select(rows: &str, id_ts: &str, c: &str, u: &str) -> String {
    format!(
        "SELECT {id_ts}, {VIEW_COLUMNS} FROM \"{rows}\" AS f \
         CROSS JOIN \"{c}\" AS c ON c.id = f.ctx CROSS JOIN \"{u}\" AS u ON u.id = f.ua"
    )
}

/// Creates a compact day's tables if missing, and its view: the columns
/// and names of a plain day table, over the rows (and those of an `e_`
/// table, when the day was begun by the first compact release).
pub fn create(tx: &Transaction<'_>, day_table: &str) -> rusqlite::Result<()> {
    let [f, c, u, e] = parts(day_table);
    tx.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS \"{f}\" {FACTS}; \
         CREATE TABLE IF NOT EXISTS \"{c}\" {CONTEXTS}; \
         CREATE UNIQUE INDEX IF NOT EXISTS \"{c}_key\" ON \"{c}\" ({CONTEXT_COLUMNS}); \
         CREATE TABLE IF NOT EXISTS \"{u}\" (id INTEGER PRIMARY KEY, ua TEXT NOT NULL UNIQUE);"
    ))?;
    let mut view = view_select(&f, &format!("{ID_TEXT} AS id, f.ts AS ts"), &c, &u);
    let has_e: bool = tx.query_row(
        "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = ?",
        [&e],
        |r| r.get(0),
    )?;
    if has_e {
        view.push_str(" UNION ALL ");
        view.push_str(&view_select(&e, "f.id AS id, f.ts AS ts", &c, &u));
    }
    let current: Option<String> = tx
        .query_row(
            "SELECT sql FROM sqlite_master WHERE type = 'view' AND name = ?",
            [day_table],
            |r| r.get(0),
        )
        .optional()?;
    let wanted = format!("CREATE VIEW \"{day_table}\" AS {view}");
    if current.as_deref() != Some(wanted.as_str()) {
        tx.execute_batch(&format!("DROP VIEW IF EXISTS \"{day_table}\"; {wanted};"))?;
    }
    Ok(())
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
    tags: Tags,
    blocked_by: Tags,
    pub source: &'static str,
    pub reason: &'static str,
    rules: Vec<RuleHit>,
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
            tags: r.tags.clone(),
            blocked_by: r.blocked_by.clone(),
            source: r.source.as_str(),
            reason: r.reason,
            rules: r.rules.clone(),
            text: ContextText {
                tags: r.tags.iter().collect::<Vec<_>>().join(","),
                tag_mask: i64::from(r.tags.known_mask()),
                blocked_mask: i64::from(r.blocked_by.known_mask()),
                rules: serde_json::to_string(&r.rules).unwrap_or_else(|_| "[]".into()),
                rule_mask: super::rule_mask(&r.rules),
                ivt: class.class.as_str(),
                ivt_category: class.category.into(),
            },
        }
    }

    fn matches(&self, r: &Record) -> bool {
        self.door == r.door.as_str()
            && self.client.as_deref() == r.client.as_deref()
            && self.event_type == r.event.event_type.as_str()
            && self.country.as_deref() == r.event.get(Opt::CountryCode)
            && self.decision == r.decision.as_str()
            && self.would_be == r.would_be.as_str()
            && self.mode == r.mode.as_str()
            && self.tags == r.tags
            && self.blocked_by == r.blocked_by
            && self.source == r.source.as_str()
            && self.reason == r.reason
            && self.rules == r.rules
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

/// Hashes the context of a record without building it.
fn context_hash(state: &RandomState, r: &Record) -> u64 {
    let mut h = state.build_hasher();
    r.door.as_str().hash(&mut h);
    r.client.as_deref().hash(&mut h);
    r.event.event_type.as_str().hash(&mut h);
    r.event.get(Opt::CountryCode).hash(&mut h);
    r.decision.as_str().hash(&mut h);
    r.would_be.as_str().hash(&mut h);
    r.mode.as_str().hash(&mut h);
    for t in [&r.tags, &r.blocked_by] {
        t.known_mask().hash(&mut h);
        t.unknown().hash(&mut h);
    }
    r.source.as_str().hash(&mut h);
    r.reason.hash(&mut h);
    for hit in &r.rules {
        (hit.kind as u32).hash(&mut h);
        hit.name.hash(&mut h);
        hit.tag.map(|t| t.as_str()).hash(&mut h);
        hit.reason.hash(&mut h);
    }
    h.finish()
}

/// A compact day's dictionaries as the writer holds them.
#[derive(Default)]
pub struct Dictionaries {
    state: RandomState,
    uas: HashMap<Box<str>, i64, RandomState>,
    /// Context hash -> indexes into `contexts`.
    by_hash: HashMap<u64, Vec<u32>, RandomState>,
    /// Each context with its id in the store.
    contexts: Vec<(i64, Context)>,
}

impl Dictionaries {
    /// Empties the dictionaries once they outgrow their bound (between
    /// batches only: a batch's indexes stay valid while it is written).
    fn bound(&mut self) {
        if self.uas.len() > MAX_UAS {
            self.uas = HashMap::default();
        }
        if self.contexts.len() > MAX_CONTEXTS {
            self.by_hash = HashMap::default();
            self.contexts = Vec::new();
        }
    }

    pub fn context(&self, i: u32) -> &Context {
        &self.contexts[i as usize].1
    }
}

/// Text buffers on the stack for a row's formatted columns.
struct StackStr<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> StackStr<N> {
    fn new() -> Self {
        StackStr {
            buf: [0; N],
            len: 0,
        }
    }

    fn as_str(&self) -> &str {
        // Only whole `&str`s are ever written in.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

impl<const N: usize> std::fmt::Write for StackStr<N> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        if end > N {
            return Err(std::fmt::Error);
        }
        self.buf[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// An IPv4 address in dotted decimal, without the formatting machinery
/// (measured: a tenth of a row's cost through `Display`).
fn ipv4_text(ip: std::net::Ipv4Addr, out: &mut StackStr<48>) {
    for (i, octet) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            out.buf[out.len] = b'.';
            out.len += 1;
        }
        if octet >= 100 {
            out.buf[out.len] = b'0' + octet / 100;
            out.len += 1;
        }
        if octet >= 10 {
            out.buf[out.len] = b'0' + octet / 10 % 10;
            out.len += 1;
        }
        out.buf[out.len] = b'0' + octet % 10;
        out.len += 1;
    }
}

/// One row of `f_YYYYMMDD`, borrowing what it can from its record.
struct Fact<'a> {
    ts: i64,
    id_mid: i64,
    id_low: i64,
    ip: StackStr<48>,
    ua: i64,
    affiliate_id: &'a str,
    offer_id: &'a str,
    aff_sub: [Option<&'a str>; 5],
    extra: Option<String>,
    ctx: i64,
    elapsed_us: i64,
}

impl Fact<'_> {
    fn params(&self) -> [&dyn ToSql; FACT_COLUMNS] {
        [
            &self.ts,
            &self.id_mid,
            &self.id_low,
            &self.ip,
            &self.ua,
            &self.affiliate_id,
            &self.offer_id,
            &self.aff_sub[0],
            &self.aff_sub[1],
            &self.aff_sub[2],
            &self.aff_sub[3],
            &self.aff_sub[4],
            &self.extra,
            &self.ctx,
            &self.elapsed_us,
        ]
    }

    fn key(&self) -> (i64, i64, i64) {
        (self.ts, self.id_mid, self.id_low)
    }
}

impl<const N: usize> ToSql for StackStr<N> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(rusqlite::types::ToSqlOutput::Borrowed(
            rusqlite::types::ValueRef::Text(self.as_str().as_bytes()),
        ))
    }
}

const SUBS: [Opt; 5] = [
    Opt::AffSub1,
    Opt::AffSub2,
    Opt::AffSub3,
    Opt::AffSub4,
    Opt::AffSub5,
];

/// The optional fields with no column of their own, as a JSON object.
pub fn extra(r: &Record) -> Option<String> {
    let mut rest = r
        .event
        .optional()
        .filter(|(o, _)| !SUBS.contains(o) && *o != Opt::CountryCode)
        .peekable();
    rest.peek()?;
    let map: serde_json::Map<String, serde_json::Value> =
        rest.map(|(o, v)| (o.name().to_owned(), v.into())).collect();
    Some(serde_json::Value::Object(map).to_string())
}

/// Where each record of a batch points in the day's dictionaries.
pub struct Resolved {
    /// Per record: its context's index in [`Dictionaries`].
    pub contexts: Vec<u32>,
}

/// Writes one day's records into its compact tables; returns each
/// record's context (for the rollup).
pub fn insert(
    tx: &Transaction<'_>,
    day_table: &str,
    dicts: &mut Dictionaries,
    rows: &[Record],
    ivt: &IvtMap,
    ip_mode: IpMode,
    salt: Option<&[u8; 32]>,
) -> Result<Resolved, LogError> {
    let err = |e: rusqlite::Error| LogError::Write(e.to_string());
    let [f_table, c_table, u_table, _] = parts(day_table);
    dicts.bound();
    let mut contexts = Vec::with_capacity(rows.len());
    let mut facts = Vec::with_capacity(rows.len());
    for r in rows {
        let ua = match dicts.uas.get(r.event.ua()) {
            Some(id) => *id,
            None => {
                let id: i64 = tx
                    .prepare_cached(&format!(
                        "INSERT INTO \"{u_table}\" (ua) VALUES (?) \
                         ON CONFLICT (ua) DO UPDATE SET ua = excluded.ua RETURNING id"
                    ))
                    .and_then(|mut s| s.query_row([r.event.ua()], |row| row.get(0)))
                    .map_err(err)?;
                dicts.uas.insert(r.event.ua().into(), id);
                id
            }
        };
        let hash = context_hash(&dicts.state, r);
        let found = dicts.by_hash.get(&hash).and_then(|ix| {
            ix.iter()
                .copied()
                .find(|i| dicts.contexts[*i as usize].1.matches(r))
        });
        let ci = match found {
            Some(i) => i,
            None => {
                let c = Context::of(r, ivt);
                let t = &c.text;
                let id: i64 = tx
                    .prepare_cached(&format!(
                        "INSERT INTO \"{c_table}\" ({CONTEXT_COLUMNS}) \
                         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
                         ON CONFLICT ({CONTEXT_COLUMNS}) DO UPDATE SET door = excluded.door \
                         RETURNING id"
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
                dicts.by_hash.entry(hash).or_default().push(i);
                i
            }
        };
        contexts.push(ci);
        let e = &r.event;
        let mut ip = StackStr::new();
        let _ = match (ip_mode, e.ip) {
            (IpMode::Full, std::net::IpAddr::V4(v4)) => {
                ipv4_text(v4, &mut ip);
                Ok(())
            }
            (IpMode::Full, v6) => write!(ip, "{v6}"),
            _ => ip.write_str(&store_ip(e.ip, ip_mode, salt)),
        };
        facts.push(Fact {
            ts: r.ts_ms(),
            // The id's bits below the millisecond, as stored (`ID_TEXT`).
            id_mid: ((r.id.0 >> 64) & 0xffff) as i64,
            id_low: r.id.0 as u64 as i64,
            ip,
            ua,
            affiliate_id: e.affiliate_id(),
            offer_id: e.offer_id(),
            aff_sub: SUBS.map(|o| e.get(o)),
            extra: extra(r),
            ctx: dicts.contexts[ci as usize].0,
            elapsed_us: r.elapsed_us as i64,
        });
    }
    // In key order, so rows go in at the end of the table's tree, not
    // between rows (a batch's records come from several threads).
    // (References sorted: a row is ten times the size of its key.)
    let mut facts: Vec<&Fact<'_>> = facts.iter().collect();
    facts.sort_unstable_by_key(|f| f.key());
    let insert = |n: usize| {
        let one = format!("({})", vec!["?"; FACT_COLUMNS].join(", "));
        // A second write of one decision (an id is 74 random bits a
        // millisecond: never two decisions) keeps the first.
        format!(
            "INSERT INTO \"{f_table}\" (ts, id_mid, id_low, ip, ua, affiliate_id, offer_id, \
             aff_sub1, aff_sub2, aff_sub3, aff_sub4, aff_sub5, extra, ctx, elapsed_us) \
             VALUES {} ON CONFLICT DO NOTHING",
            vec![one; n].join(", ")
        )
    };
    let mut chunks = facts.chunks_exact(ROWS_PER_INSERT);
    if chunks.len() > 0 {
        let mut stmt = tx.prepare_cached(&insert(ROWS_PER_INSERT)).map_err(err)?;
        for chunk in &mut chunks {
            let params: Vec<[&dyn ToSql; FACT_COLUMNS]> =
                chunk.iter().map(|f| f.params()).collect();
            stmt.execute(params_from_iter(params.iter().flatten()))
                .map_err(err)?;
        }
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut stmt = tx.prepare_cached(&insert(1)).map_err(err)?;
        for f in rest {
            stmt.execute(params_from_iter(f.params())).map_err(err)?;
        }
    }
    Ok(Resolved { contexts })
}

/// A compact day as the first compact release made it (rows in `e_`,
/// a text id and a `ts` index), with one decision of `ts` whose id is
/// `id`: what an upgrade finds.
#[cfg(test)]
pub(crate) fn create_first_release_day(
    conn: &rusqlite::Connection,
    day_table: &str,
    id: &str,
    ts: i64,
) -> rusqlite::Result<()> {
    let [_, c, u, e] = parts(day_table);
    conn.execute_batch(&format!(
        "CREATE TABLE \"{e}\" (id TEXT NOT NULL, ts INTEGER NOT NULL, ip TEXT NOT NULL, \
         ua INTEGER NOT NULL, affiliate_id TEXT NOT NULL, offer_id TEXT NOT NULL, aff_sub1 TEXT, \
         aff_sub2 TEXT, aff_sub3 TEXT, aff_sub4 TEXT, aff_sub5 TEXT, extra TEXT, \
         ctx INTEGER NOT NULL, elapsed_us INTEGER NOT NULL); \
         CREATE INDEX \"{e}_ts\" ON \"{e}\" (ts); \
         CREATE TABLE \"{c}\" {CONTEXTS}; \
         CREATE UNIQUE INDEX \"{c}_key\" ON \"{c}\" ({CONTEXT_COLUMNS}); \
         CREATE TABLE \"{u}\" (id INTEGER PRIMARY KEY, ua TEXT NOT NULL UNIQUE); \
         CREATE VIEW \"{day_table}\" AS {};",
        view_select(&e, "f.id AS id, f.ts AS ts", &c, &u)
    ))?;
    conn.execute(
        &format!(
            "INSERT INTO \"{c}\" ({CONTEXT_COLUMNS}) VALUES ('check', '', 'click', '', 'allow', \
             'allow', 'enforce', '', 0, 0, 'cache', 'clean', '[]', 0, '', '')"
        ),
        [],
    )?;
    conn.execute(&format!("INSERT INTO \"{u}\" (ua) VALUES ('old-ua')"), [])?;
    conn.execute(
        &format!(
            "INSERT INTO \"{e}\" VALUES (?, ?, '10.1.1.1', 1, 'a-old', 'o', NULL, NULL, NULL, \
             NULL, NULL, NULL, 1, 7)"
        ),
        rusqlite::params![id, ts],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_text_is_the_display() {
        for ip in ["0.0.0.0", "255.255.255.255", "10.9.100.1", "192.168.0.99"] {
            let mut out = StackStr::new();
            ipv4_text(ip.parse().unwrap(), &mut out);
            assert_eq!(out.as_str(), ip);
        }
    }
}
