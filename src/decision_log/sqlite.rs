//! The embedded store: one SQLite database under `decision_log.path`
//! (WAL, `synchronous = NORMAL`), one compact day per UTC day, read
//! through its view `d_YYYYMMDD` (`compact`). Retention drops whole days,
//! never rows; queries read the day views through a UNION ALL (a list in
//! time order: one day after the other), on their own read-only connection
//! in one read transaction (one snapshot of every day), with a time limit.
//!
//! One database with a table per day rather than a file per day: SQLite
//! attaches at most 10 databases to one connection in its default build,
//! so a query over a 30-day retention could not see every day at once.
//!
//! **Rollups.** SQLite has no hash aggregation: a grouped query over 10 M
//! rows spends most of its time sorting them. So each day has a rollup
//! (`r_YYYYMMDD`), created with it, that the writer keeps in the same
//! transaction: one row per UTC hour and combination of the
//! [`ROLLUP_DIMS`] (who, what, which decision and why), with the event
//! count and the sum of `elapsed_us`. A grouped query that names only
//! those fields (and date bounds on whole hours) reads the rollup instead
//! (`query::sqlite`); any other query reads the rows.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use rusqlite::Connection;

use super::batch::{Batch, Records};
use super::compact;
use super::ivt::IvtMap;
use super::record::{Record, utf8};
use super::{IpMode, LogError};

/// A compact day's rollup sums of one batch: (hour, context, affiliate
/// and offer pair) -> (decisions, their elapsed_us, one record's index).
type HourSums = HashMap<(i64, u32, i64), (i64, i64, u32), foldhash::fast::RandomState>;

pub const FILE: &str = "decisions.sqlite";

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

const ROLLUP_SCHEMA: &str = "(ts INTEGER NOT NULL, door TEXT NOT NULL, client TEXT NOT NULL,     event_type TEXT NOT NULL, affiliate_id TEXT NOT NULL, offer_id TEXT NOT NULL,     country_code TEXT NOT NULL, decision TEXT NOT NULL, would_be TEXT NOT NULL,     mode TEXT NOT NULL, tags TEXT NOT NULL, tag_mask INTEGER NOT NULL,     blocked_mask INTEGER NOT NULL, source TEXT NOT NULL, reason TEXT NOT NULL,     rule_mask INTEGER NOT NULL, ivt TEXT NOT NULL, ivt_category TEXT NOT NULL,     n INTEGER NOT NULL, elapsed_sum INTEGER NOT NULL)";

/// The rollup of a day.
pub fn rollup_table(day_table: &str) -> String {
    format!("r_{}", &day_table[2..])
}

/// One rollup row's key: the hour and the dimensions of a row.
#[derive(PartialEq, Eq, Hash)]
struct RollupKey<'a> {
    hour: i64,
    text: [&'a str; 14],
    masks: [i64; 3],
}

/// The writer's side: owns the one write connection.
pub struct Writer {
    conn: Connection,
    /// The days the store holds (their views, `d_YYYYMMDD`).
    days: HashSet<String>,
    /// The dictionaries of the compact days being written (two at most:
    /// today and, around midnight, yesterday).
    dicts: HashMap<String, compact::Dictionaries>,
    ivt: IvtMap,
    ip: IpMode,
    retention_days: u32,
    last_retention: Option<i64>,
    salt: Option<[u8; 32]>,
}

fn day_table(ts_ms: i64) -> String {
    let days = ts_ms.div_euclid(86_400_000);
    let d = jiff::civil::date(1970, 1, 1) + jiff::Span::new().days(days);
    format!("d_{}", d.strftime("%Y%m%d"))
}

/// The WAL is truncated to at most this after each checkpoint. (Without a
/// limit it keeps the size of its largest run between checkpoints, about
/// 40 MB at `wal_autocheckpoint = 10000`: on a volume that was full and
/// had room freed, that file would take the room back at once.)
pub const WAL_LIMIT_BYTES: i64 = 4 << 20;

/// A damaged file (not a database, malformed, cut short) rather than a
/// volume that refuses: moving it aside and starting afresh helps.
fn is_corrupt(e: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode::{DatabaseCorrupt, NotADatabase};
    // SQLITE_IOERR_SHORT_READ: the file ends inside a page it says it has.
    const SHORT_READ: std::ffi::c_int = 522;
    matches!(e.sqlite_error_code(), Some(DatabaseCorrupt | NotADatabase))
        || matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.extended_code == SHORT_READ)
}

/// A failed statement of the writer, classified: a damaged store is
/// [`LogError::Corrupt`], anything else a write error to retry.
pub(super) fn write_error(e: rusqlite::Error) -> LogError {
    if is_corrupt(&e) {
        LogError::Corrupt(e.to_string())
    } else {
        LogError::Write(e.to_string())
    }
}

fn open_rw(path: &Path) -> Result<Connection, LogError> {
    std::fs::create_dir_all(path)
        .map_err(|e| LogError::Open(path.display().to_string(), e.to_string()))?;
    let file = path.join(FILE);
    let open_err = |e: rusqlite::Error| {
        if is_corrupt(&e) {
            LogError::Corrupt(format!("{}: {e}", file.display()))
        } else {
            LogError::Open(file.display().to_string(), e.to_string())
        }
    };
    let conn = Connection::open(&file).map_err(open_err)?;
    conn.execute_batch(&format!(
        "PRAGMA auto_vacuum = INCREMENTAL; PRAGMA journal_mode = WAL; \
         PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000; \
         PRAGMA wal_autocheckpoint = 10000; PRAGMA journal_size_limit = {WAL_LIMIT_BYTES};"
    ))
    .map_err(open_err)?;
    Ok(conn)
}

impl Writer {
    pub fn open(
        path: &Path,
        ivt: IvtMap,
        ip: IpMode,
        retention_days: u32,
    ) -> Result<Self, LogError> {
        let conn = open_rw(path)?;
        // A day's writing uses about ten statements (four row INSERTs, the
        // dictionaries', the rollup's); a batch across midnight twice
        // that. (The default of 16 would prepare the largest again.)
        conn.set_prepared_statement_cache_capacity(32);
        let mut w = Writer {
            conn,
            days: HashSet::new(),
            dicts: HashMap::new(),
            ivt,
            ip,
            retention_days,
            last_retention: None,
            salt: None,
        };
        w.read_days()?;
        Ok(w)
    }

    /// The secret for `ip = "hashed"`.
    pub fn set_salt(&mut self, salt: Option<[u8; 32]>) {
        self.salt = salt;
    }

    /// [`Writer::write_records`] of records built whole (tests, benches,
    /// tools: the writer thread hands over the queue's bytes).
    pub fn write(&mut self, batch: &[Record]) -> Result<(), LogError> {
        self.write_records(Batch::of(batch).records())
    }

    /// Writes a batch in one transaction (its records in runs of one UTC
    /// day each, one day's tables and statements at a time).
    pub fn write_records(&mut self, batch: Records<'_>) -> Result<(), LogError> {
        let result = self.write_once(batch);
        if result.is_err() {
            // The transaction rolled back: tables it created and ids its
            // dictionaries learnt are gone. Forget them, so the retry
            // creates and looks up again (not "no such table" forever).
            self.dicts.clear();
            // (If this fails too, the next write fails and tries again.)
            let _ = self.read_days();
            // Give the WAL's room back now (a full volume): a checkpoint
            // that truncates it, not one at the next 10 000 pages.
            let _ = self
                .conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
        }
        result
    }

    /// Which days the store holds.
    fn read_days(&mut self) -> Result<(), LogError> {
        self.days = list_days(&self.conn)
            .map_err(write_error)?
            .into_iter()
            .collect();
        Ok(())
    }

    fn write_once(&mut self, batch: Records<'_>) -> Result<(), LogError> {
        let err = write_error;
        let tx = self.conn.transaction().map_err(err)?;
        let mut rest = batch;
        while !rest.is_empty() {
            let day = rest.get(0).ts_ms().div_euclid(86_400_000);
            let n = rest
                .iter()
                .position(|r| r.ts_ms().div_euclid(86_400_000) != day)
                .unwrap_or(rest.len());
            let (run, next) = rest.split_at(n);
            Self::insert_day(
                &tx,
                &mut self.days,
                &mut self.dicts,
                (&self.ivt, self.ip, self.salt.as_ref()),
                day,
                run,
            )?;
            rest = next;
        }
        tx.commit().map_err(err)
    }

    fn insert_day(
        tx: &rusqlite::Transaction<'_>,
        days: &mut HashSet<String>,
        dicts: &mut HashMap<String, compact::Dictionaries>,
        (ivt, ip, salt): (&IvtMap, IpMode, Option<&[u8; 32]>),
        day: i64,
        records: Records<'_>,
    ) -> Result<(), LogError> {
        let err = write_error;
        let table = day_table(day * 86_400_000);
        if !days.contains(&table) {
            // A new day, with its rollup from the start. (Its compact
            // tables and view are created below, on its first write.)
            let rollup = rollup_table(&table);
            let dims = ROLLUP_DIMS.join(", ");
            tx.execute_batch(&format!(
                "CREATE TABLE IF NOT EXISTS \"{rollup}\" {ROLLUP_SCHEMA}; \
                 CREATE UNIQUE INDEX IF NOT EXISTS \"{rollup}_key\" ON \"{rollup}\" (ts, {dims});"
            ))
            .map_err(err)?;
            days.insert(table.clone());
        }
        if !dicts.contains_key(&table) {
            // First written by this process.
            compact::create(tx, &table).map_err(err)?;
            // Keep the newest day's dictionaries and this one's.
            let newest = dicts.keys().max().cloned();
            dicts.retain(|k, _| Some(k) == newest.as_ref());
            dicts.insert(table.clone(), compact::Dictionaries::default());
        }
        let d = dicts.get_mut(&table).expect("inserted above");
        compact::insert(tx, &table, d, records, ivt, ip, salt)?;
        let mut sums = HourSums::default();
        for s in d.written() {
            let hour = s.ms().div_euclid(3_600_000) * 3_600_000;
            let e = sums
                .entry((hour, s.context, s.who))
                .or_insert((0, 0, s.record));
            e.0 += 1;
            e.1 += s.elapsed_us;
        }
        let keyed = sums.into_iter().map(|((hour, ci, _), (n, elapsed, ri))| {
            let c = d.context(ci);
            let e = records.get(ri as usize);
            let (aff, offer) = (utf8(e.affiliate_id), utf8(e.offer_id));
            let t = &c.text;
            let key = RollupKey {
                hour,
                text: [
                    c.door,
                    c.client(),
                    c.event_type,
                    aff,
                    offer,
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
            };
            (key, (n, elapsed))
        });
        Self::roll_up(tx, &rollup_table(&table), keyed)
    }

    /// Adds counts to the day's rollup: one upsert per distinct hour and
    /// dimensions in the batch.
    fn roll_up<'a>(
        tx: &rusqlite::Transaction<'_>,
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

    /// Drops the days older than the retention (at most once per day of
    /// `now_ms`). Returns the days dropped.
    pub fn retention(&mut self, now_ms: i64) -> Result<Vec<String>, LogError> {
        let today = now_ms.div_euclid(86_400_000);
        if self.last_retention == Some(today) {
            return Ok(Vec::new());
        }
        let oldest_kept = day_table((today - i64::from(self.retention_days) + 1) * 86_400_000);
        let err = write_error;
        let mut dropped = Vec::new();
        for t in list_days(&self.conn).map_err(err)? {
            if t < oldest_kept {
                let mut drop = format!("DROP VIEW \"{t}\";");
                for part in compact::Parts::of(&t).all() {
                    drop.push_str(&format!(" DROP TABLE IF EXISTS \"{part}\";"));
                }
                self.conn
                    .execute_batch(&format!(
                        "{drop} DROP TABLE IF EXISTS \"{}\"",
                        rollup_table(&t)
                    ))
                    .map_err(err)?;
                self.days.remove(&t);
                self.dicts.remove(&t);
                dropped.push(t);
            }
        }
        if !dropped.is_empty() {
            // Give the freed pages back to the file system.
            self.conn
                .execute_batch("PRAGMA incremental_vacuum;")
                .map_err(err)?;
        }
        self.last_retention = Some(today);
        Ok(dropped)
    }
}

/// The days the store holds: their views (`d_YYYYMMDD`), oldest first.
pub(crate) fn list_days(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare(
        "SELECT name FROM sqlite_master WHERE type = 'view' AND name GLOB 'd_[0-9]*' \
         ORDER BY name",
    )?;
    stmt.query_map([], |r| r.get::<_, String>(0))?.collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use rusqlite::types::Value;

    use super::*;
    use crate::decision_log::Row;
    use crate::decision_log::record::tests::record;
    use crate::query::Query;
    use crate::query::exec::sqlite::{run, run_with};
    use crate::query::sqlite::build;

    /// Every row a statement selects, as values.
    fn select(conn: &Connection, sql: &str) -> Vec<Vec<Value>> {
        let mut stmt = conn.prepare(sql).unwrap();
        let n = stmt.column_count();
        stmt.query_map([], |r| (0..n).map(|i| r.get(i)).collect())
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    /// A text value's text.
    fn text(v: &Value) -> Option<&str> {
        match v {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }

    /// An empty directory for one test's store.
    fn fresh_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "fraudgate-sqlite-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    /// Tables and views in the store.
    fn schema_objects(conn: &Connection) -> i64 {
        conn.query_row(
            "SELECT count(*) FROM sqlite_master WHERE type IN ('table', 'view')",
            [],
            |r| r.get(0),
        )
        .unwrap()
    }

    /// The first column of what the list query `raw` answers.
    fn first_column(dir: &Path, raw: &str) -> Vec<serde_json::Value> {
        let q = Query::from_params(crate::query::Events::All, raw, false).unwrap();
        let mut got = Vec::new();
        run(dir, &q, Duration::from_secs(5), &mut |_, mut v| {
            got.push(v.swap_remove(0));
            true
        })
        .unwrap();
        got
    }

    /// [`first_column`] as text.
    fn texts(dir: &Path, raw: &str) -> Vec<String> {
        first_column(dir, raw)
            .into_iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    }

    fn count(dir: &Path, raw: &str) -> usize {
        let q = Query::from_params(crate::query::Events::All, raw, false).unwrap();
        let mut n = 0;
        run(dir, &q, Duration::from_secs(5), &mut |_, _| {
            n += 1;
            true
        })
        .unwrap();
        n
    }

    /// The WAL is kept small, and a file that is not a database is told
    /// apart from a volume that refuses it.
    #[test]
    fn the_wal_is_bounded_and_a_damaged_file_is_called_corrupt() {
        let dir = fresh_dir("wal");
        let ivt = IvtMap::new(&crate::Config::default().ivt).unwrap();
        let w = Writer::open(&dir, ivt.clone(), IpMode::Full, 1).unwrap();
        let limit: i64 = w
            .conn
            .query_row("PRAGMA journal_size_limit", [], |r| r.get(0))
            .unwrap();
        assert_eq!(limit, WAL_LIMIT_BYTES);
        drop(w);
        std::fs::write(dir.join(FILE), vec![0x5a; 8192]).unwrap();
        let _ = std::fs::remove_file(dir.join(format!("{FILE}-wal")));
        let _ = std::fs::remove_file(dir.join(format!("{FILE}-shm")));
        let opened = Writer::open(&dir, ivt, IpMode::Full, 1);
        assert!(
            matches!(opened, Err(LogError::Corrupt(_))),
            "not a database"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn batches_span_days_and_retention_drops_whole_days() {
        let dir = fresh_dir("test");
        let ivt = IvtMap::new(&crate::Config::default().ivt).unwrap();
        let mut w = Writer::open(&dir, ivt, IpMode::Full, 2).unwrap();
        let day = 86_400_000i64;
        let today = 20_000 * day;
        // One batch over three days: 40 rows 10 days ago (a 32-row insert
        // and 8 single ones), 30 yesterday, 30 today.
        let batch: Vec<Record> = (0..100u128)
            .map(|i| {
                let ms = match i {
                    0..40 => today - 10 * day,
                    40..70 => today - day,
                    _ => today + 1000,
                };
                record(ms, i)
            })
            .collect();
        w.write(&batch).unwrap();
        assert_eq!(count(&dir, "field=id&page_size=1000"), 100);
        let dropped = w.retention(today + 5000).unwrap();
        assert_eq!(
            dropped,
            [day_table(today - 10 * day)],
            "only the day past 2 days"
        );
        assert_eq!(count(&dir, "field=id&page_size=1000"), 60);
        assert!(w.retention(today + 6000).unwrap().is_empty(), "once a day");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Rows of every kind over three days and many hours, for the
    /// rollup comparison.
    fn varied(i: u128, ms: i64) -> Record {
        let cc = ["DE", "US", ""][i as usize % 3];
        let mut q = format!(
            "event_type={}&ip=10.0.{}.{}&ua=x&affiliate_id=a{}&offer_id=o{}",
            if i % 5 == 0 { "impression" } else { "click" },
            i % 7,
            i % 200,
            i % 4,
            i % 3
        );
        if !cc.is_empty() {
            q.push_str(&format!("&country_code={cc}"));
        }
        let event = crate::event::EventBuilder::from_query(&q)
            .unwrap()
            .build()
            .unwrap();
        let flagged = i % 4 == 0;
        let tags = if flagged {
            crate::verdict::Tags::parse("datacenter\nip").unwrap()
        } else {
            crate::verdict::Tags::clean()
        };
        let block = if flagged {
            crate::policy::Action::Block
        } else {
            crate::policy::Action::Allow
        };
        Record {
            client: (i % 6 == 0).then(|| "partner".into()),
            decision: block,
            would_be: block,
            blocked_by: if flagged {
                crate::verdict::Tags::parse("datacenter").unwrap()
            } else {
                crate::verdict::Tags::clean()
            },
            tags,
            reason: if flagged { "tags" } else { "clean" },
            elapsed_us: (i * 37 % 1000) as u64,
            event: (&event).into(),
            ..record(ms, i)
        }
    }

    /// Every grouped query the rollups take answers exactly what the rows
    /// answer; those they cannot answer (per-IP, sub-hour bounds, a zone
    /// off by half an hour) read the rows.
    #[test]
    fn rollups_answer_exactly_what_the_rows_answer() {
        let dir = fresh_dir("rollup");
        let ivt = IvtMap::new(&crate::Config::default().ivt).unwrap();
        let mut w = Writer::open(&dir, ivt, IpMode::Full, 30).unwrap();
        let start = 1_790_000_000_000i64; // 2026-09-21
        // Two batches, so rollup rows are added to, not only inserted.
        let batch = |from: u128, to: u128| -> Vec<Record> {
            (from..to)
                // 150 instants 20 minutes apart (over two days); rows 300
                // apart share their instant and every dimension, so the
                // rollup rows count several events each.
                .map(|i| varied(i, start + (i % 150) as i64 * 1_200_000 + (i % 7) as i64))
                .collect()
        };
        w.write(&batch(0, 700)).unwrap();
        w.write(&batch(700, 1500)).unwrap();
        let f = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let rolled = [
            "group=affiliate_id&field=count,blocked,allowed,block_rate,avg_elapsed_us,uniq_offer_id,any_door,tag_datacenter,blocked_by_datacenter,ivt_givt,ivt_none&sort=affiliate_id_asc".to_owned(),
            "group=date,hour&field=count,blocked&sort=date_asc&sort=hour_asc&tz=Europe/Berlin&page_size=1000".to_owned(),
            "group=country_code,client&field=count&sort=country_code_asc&sort=client_asc".to_owned(),
            "group=ivt,ivt_category,tags&field=count,avg_elapsed_us&sort=ivt_asc&sort=tags_asc".to_owned(),
            format!("group=offer_id&field=count,block_rate&sort=offer_id_desc&filter={}", f(r#"["AND",["affiliate_id_in",["a1","a2"]],["date_ge","2026-09-22"],["NOT",["tag","ip"]]]"#)),
            format!("group=week,month&field=count&sort=week_asc&having={}", f(r#"["count_gt",10]"#)),
            format!("group=door&field=count&filter={}", f(r#"["datetime_lt","2026-09-23 05:00:00"]"#)),
            "group=event_type&field=count,blocked&page_size=1&page=2&sort=count_desc".to_owned(),
        ];
        let raw_only = [
            "group=ip&field=count&sort=ip_asc&page_size=5".to_owned(),
            "group=affiliate_id&field=uniq_ip&sort=affiliate_id_asc".to_owned(),
            format!(
                "group=door&field=count&filter={}",
                f(r#"["datetime_ge","2026-09-22 10:30:00"]"#)
            ),
            "group=date&field=count&sort=date_asc&tz=Asia/Kolkata".to_owned(),
            "field=id&page_size=3".to_owned(),
        ];
        let answer = |raw: &str, rollups: bool| {
            let groups = !raw.starts_with("field=id");
            let q = Query::from_params(crate::query::Events::All, raw, groups).unwrap();
            let mut out = Vec::new();
            run_with(&dir, &q, Duration::from_secs(5), rollups, &mut |_, v| {
                out.push(v);
                true
            })
            .unwrap();
            (q, out)
        };
        let conn = Connection::open(dir.join(FILE)).unwrap();
        let tables = list_days(&conn).unwrap();
        assert!(tables.len() >= 3, "{tables:?}");
        for (raw, uses) in rolled
            .iter()
            .map(|r| (r, true))
            .chain(raw_only.iter().map(|r| (r, false)))
        {
            let (q, fast) = answer(raw, true);
            let (_, slow) = answer(raw, false);
            assert!(!slow.is_empty(), "{raw}: no rows to compare");
            assert_eq!(fast, slow, "{raw}");
            let sql = build(&q, &tables, true).unwrap().text;
            assert_eq!(sql.contains("\"r_"), uses, "{raw}: {sql}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The ids the view writes out of a compact day's integer key are
    /// the ids recorded, whatever their bits, and each finds its row.
    #[test]
    fn ids_read_back_as_recorded() {
        let dir = fresh_dir("ids");
        let ivt = IvtMap::new(&crate::Config::default().ivt).unwrap();
        let mut w = Writer::open(&dir, ivt, IpMode::Full, 1).unwrap();
        let ms = 20_000 * 86_400_000i64 + 1234;
        let low_bits = [
            0u128,
            1,
            (1 << 80) - 1,
            0x7abc_8def_0123_4567_89ab,
            0xffff << 64,
        ];
        let batch: Vec<Record> = low_bits
            .iter()
            .map(|&b| {
                let mut r = record(ms, 0);
                r.id = crate::decision::DecisionId(((ms as u128) << 80) | b);
                r
            })
            .collect();
        w.write(&batch).unwrap();
        let mut got = texts(&dir, "field=id&page_size=10");
        let mut want: Vec<String> = batch.iter().map(|r| r.id.to_string()).collect();
        got.sort();
        want.sort();
        assert_eq!(got, want);
        for id in &want {
            let f = format!("field=id&filter=%5B%22id%22%2C%22{id}%22%5D");
            assert_eq!(count(&dir, &f), 1, "{id}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Rows with no aff_sub or extra go in through a narrower statement, a
    /// chunk with any through the wide one, the remainder one row at a
    /// time: every row reads back with exactly its own values.
    #[test]
    fn rows_read_back_with_their_own_values_whatever_their_chunk() {
        let dir = fresh_dir("subs");
        let ivt = IvtMap::new(&crate::Config::default().ivt).unwrap();
        let mut w = Writer::open(&dir, ivt, IpMode::Full, 1).unwrap();
        let ms = 20_000 * 86_400_000i64 + 1234;
        // Chunks of 64: 0 narrow; 1..=4 one wide row each, alone and for
        // one reason (first, last or inside its chunk); 5 all wide; then
        // the remainder, one row at a time, mixed.
        let optional = |i: u128| match i {
            64 => "&aff_sub1=first".to_owned(),
            191 => "&aff_sub4=last".to_owned(),
            200 => "&aff_sub5=inside".to_owned(),
            300 => "&browser=only-extra".to_owned(),
            320..384 => format!("&aff_sub1=s{i}&aff_sub5=t{i}&device_os=o{i}"),
            391 => "&refer=r391".to_owned(),
            384.. if i % 2 == 0 => format!("&aff_sub2=s{i}"),
            _ => String::new(),
        };
        let batch: Vec<Record> = (0..392u128)
            .map(|i| {
                let event = crate::event::EventBuilder::from_query(&format!(
                    "event_type=click&ip=10.0.{}.{}&ua=x&affiliate_id=a&offer_id=o{}",
                    i / 256,
                    i % 256,
                    optional(i)
                ))
                .unwrap()
                .build()
                .unwrap();
                let block = i % 3 == 0;
                Record {
                    event: (&event).into(),
                    decision: if block {
                        crate::policy::Action::Block
                    } else {
                        crate::policy::Action::Allow
                    },
                    elapsed_us: i as u64 * 7,
                    ..record(ms, i)
                }
            })
            .collect();
        w.write(&batch).unwrap();
        let conn = Connection::open(dir.join(FILE)).unwrap();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT ip, elapsed_us, decision, aff_sub1, aff_sub2, aff_sub3, aff_sub4, \
                 aff_sub5, extra FROM \"{}\" ORDER BY id",
                day_table(ms)
            ))
            .unwrap();
        type Row = (String, i64, String, [Option<String>; 6]);
        let got: Vec<Row> = stmt
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    [3, 4, 5, 6, 7, 8].map(|c| r.get::<_, Option<String>>(c).unwrap()),
                ))
            })
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let want: Vec<Row> = batch
            .iter()
            .map(|r| {
                let [a, b, c, d, e] = crate::decision_log::columns::AFF_SUBS
                    .map(|o| r.event.get(o).map(str::to_owned));
                (
                    r.event.ip.to_string(),
                    r.elapsed_us as i64,
                    r.decision.as_str().to_owned(),
                    [
                        a,
                        b,
                        c,
                        d,
                        e,
                        crate::decision_log::columns::extra(r.event.optional()),
                    ],
                )
            })
            .collect();
        assert_eq!(got.len(), batch.len());
        assert_eq!(got, want);
        // (The cases above are what the expected rows hold.)
        assert_eq!(got[64].3[0].as_deref(), Some("first"));
        assert_eq!(got[191].3[3].as_deref(), Some("last"));
        assert_eq!(got[200].3[4].as_deref(), Some("inside"));
        assert_eq!(
            got[300].3[5].as_deref(),
            Some(r#"{"browser":"only-extra"}"#)
        );
        assert_eq!(got[391].3[5].as_deref(), Some(r#"{"refer":"r391"}"#));
        assert!(got[0].3.iter().all(Option::is_none));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The writer looks contexts up by their encoded bytes: records that
    /// differ from one another in any one part of their context each get
    /// their own context row, records that share one share its row, and
    /// every row reads back its own context.
    #[test]
    fn each_context_is_stored_once_and_read_back_as_its_own() {
        use crate::decision::{Door, Source};
        use crate::policy::{Action, Mode};
        use crate::rules::{RuleHit, RuleKind};
        use crate::verdict::{Tag, Tags};
        let dir = fresh_dir("contexts");
        let ivt = IvtMap::new(&crate::Config::default().ivt).unwrap();
        let mut w = Writer::open(&dir, ivt.clone(), IpMode::Full, 1).unwrap();
        let ms = 20_000 * 86_400_000i64 + 99;
        let base = record(ms, 0);
        let hit = |name: &str, reason: Option<&str>| RuleHit {
            kind: RuleKind::Datacenter,
            name: name.into(),
            tag: Some(Tag::Datacenter),
            reason: reason.map(Into::into),
        };
        let with_event = |q: &str| -> crate::decision_log::record::LoggedEvent {
            let e = crate::event::EventBuilder::from_query(&format!(
                "ip=10.0.0.1&ua=x&affiliate_id=a0&offer_id=o&{q}"
            ))
            .unwrap()
            .build()
            .unwrap();
            (&e).into()
        };
        let variants: Vec<Record> = vec![
            base.clone(),
            Record {
                door: Door::Auth,
                ..base.clone()
            },
            Record {
                client: Some("a".into()),
                ..base.clone()
            },
            Record {
                client: Some("b".into()),
                ..base.clone()
            },
            Record {
                event: with_event("event_type=impression"),
                ..base.clone()
            },
            Record {
                event: with_event("event_type=click&country_code=DE"),
                ..base.clone()
            },
            Record {
                event: with_event("event_type=click&country_code=US"),
                ..base.clone()
            },
            Record {
                decision: Action::Block,
                ..base.clone()
            },
            Record {
                would_be: Action::Block,
                ..base.clone()
            },
            Record {
                mode: Mode::Shadow,
                ..base.clone()
            },
            Record {
                tags: Tags::from_known(&[Tag::Proxy]),
                ..base.clone()
            },
            Record {
                tags: Tags::parse("weird").unwrap(),
                ..base.clone()
            },
            Record {
                tags: Tags::parse("weirder").unwrap(),
                ..base.clone()
            },
            Record {
                blocked_by: Tags::from_known(&[Tag::Proxy]),
                ..base.clone()
            },
            Record {
                source: Source::Upstream,
                ..base.clone()
            },
            Record {
                reason: "tags",
                ..base.clone()
            },
            Record {
                rules: vec![hit("aws", None)],
                ..base.clone()
            },
            Record {
                rules: vec![hit("gcp", None)],
                ..base.clone()
            },
            Record {
                rules: vec![hit("aws", Some("r1"))],
                ..base.clone()
            },
            Record {
                rules: vec![hit("aws", Some("r2"))],
                ..base.clone()
            },
            Record {
                rules: vec![hit("aws", None), hit("gcp", None)],
                ..base.clone()
            },
            Record {
                rules: vec![RuleHit {
                    kind: RuleKind::BlockList,
                    ..hit("aws", None)
                }],
                ..base.clone()
            },
            Record {
                rules: vec![RuleHit {
                    tag: None,
                    ..hit("aws", None)
                }],
                ..base.clone()
            },
        ];
        // Each twice, in two batches (the second finds them all known),
        // under ids in variant order.
        let batch = |from: u128| -> Vec<Record> {
            variants
                .iter()
                .enumerate()
                .map(|(i, v)| Record {
                    id: record(ms, from + i as u128).id,
                    ..v.clone()
                })
                .collect()
        };
        w.write(&batch(0)).unwrap();
        w.write(&batch(100)).unwrap();
        let conn = Connection::open(dir.join(FILE)).unwrap();
        let table = day_table(ms);
        let contexts: i64 = conn
            .query_row(
                &format!(
                    "SELECT count(*) FROM \"{}\"",
                    compact::Parts::of(&table).contexts
                ),
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(contexts, variants.len() as i64);
        let cols = "door, client, event_type, country_code, decision, would_be, mode, tags, \
            tag_mask, blocked_mask, source, reason, rules, rule_mask, ivt, ivt_category";
        let got = select(
            &conn,
            &format!("SELECT {cols} FROM \"{table}\" ORDER BY id"),
        );
        let t = |s: &str| Value::from(s.to_owned());
        let want: Vec<Vec<Value>> = batch(0)
            .iter()
            .chain(&batch(100))
            .map(|r| {
                let w = Row::new(r, &ivt, IpMode::Full, None);
                vec![
                    t(w.door),
                    w.client.into(),
                    t(w.event_type),
                    w.country_code.into(),
                    t(w.decision),
                    t(w.would_be),
                    t(w.mode),
                    w.tags.into(),
                    w.tag_mask.into(),
                    w.blocked_mask.into(),
                    t(w.source),
                    t(w.reason),
                    w.rules.into(),
                    w.rule_mask.into(),
                    t(w.ivt),
                    w.ivt_category.into(),
                ]
            })
            .collect();
        assert_eq!(got.len(), 2 * variants.len());
        assert_eq!(got, want);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The writer thread's batches: several buffers (one a queue shard's)
    /// whose records interleave in time and cross a UTC midnight, with
    /// empty and non-ASCII text. Every row reads back as its own record,
    /// on its own day.
    #[test]
    fn records_from_several_buffers_read_back_as_their_own_across_midnight() {
        let dir = fresh_dir("buffers");
        let ivt = IvtMap::new(&crate::Config::default().ivt).unwrap();
        let mut w = Writer::open(&dir, ivt.clone(), IpMode::Full, 30).unwrap();
        let midnight = 20_001 * 86_400_000i64;
        let texts = ["", "Mözilla/5.0 ✓", "x", "af-ü", "日本"];
        let one = |i: u128| -> Record {
            let t = |k: usize| texts[(i as usize + k) % texts.len()];
            let mut q = form_urlencoded::Serializer::new(String::new());
            q.append_pair("event_type", "click")
                .append_pair("ip", &format!("2001:db8::{i:x}"))
                .append_pair("ua", t(0))
                // (Required: never empty.)
                .append_pair("affiliate_id", &format!("{}{i}", t(1)))
                .append_pair("offer_id", &format!("{}-", t(2)));
            if i % 3 == 0 {
                q.append_pair("aff_sub1", t(3)).append_pair("browser", t(4));
            }
            let e = crate::event::EventBuilder::from_query(&q.finish())
                .unwrap()
                .build()
                .unwrap();
            // Two records a millisecond, either side of midnight.
            let ms = midnight - 10 + (i as i64 / 2);
            Record {
                event: (&e).into(),
                client: (i % 4 == 0).then(|| "ç-client".into()),
                ..record(ms, i)
            }
        };
        let all: Vec<Record> = (0..40).map(one).collect();
        // Three buffers, each in reverse time order: interleaved.
        let mut batch = Batch::default();
        for part in 0..3 {
            let mut bytes = Vec::new();
            let mine: Vec<&Record> = all.iter().rev().filter(|r| r.id.0 % 3 == part).collect();
            for r in &mine {
                r.encode(&mut bytes);
            }
            batch.push(bytes, mine.len());
        }
        w.write_records(batch.records()).unwrap();
        let conn = Connection::open(dir.join(FILE)).unwrap();
        let (before, after) = (day_table(midnight - 1), day_table(midnight));
        assert_ne!(before, after);
        let cols = "id, ts, ip, ua, affiliate_id, offer_id, client, aff_sub1, extra";
        let read = |table: &str| {
            select(
                &conn,
                &format!("SELECT {cols} FROM \"{table}\" ORDER BY id"),
            )
        };
        let want = |on_day: &dyn Fn(i64) -> bool| -> Vec<Vec<Value>> {
            let mut rows: Vec<Row> = all
                .iter()
                .filter(|r| on_day(r.ts_ms()))
                .map(|r| Row::new(r, &ivt, IpMode::Full, None))
                .collect();
            rows.sort_by(|a, b| a.id.cmp(&b.id));
            rows.into_iter()
                .map(|w| {
                    vec![
                        w.id.into(),
                        w.ts.into(),
                        w.ip.into(),
                        w.ua.into(),
                        w.affiliate_id.into(),
                        w.offer_id.into(),
                        w.client.into(),
                        w.aff_sub[0].clone().into(),
                        w.extra.into(),
                    ]
                })
                .collect()
        };
        let (got_before, got_after) = (read(&before), read(&after));
        assert_eq!((got_before.len(), got_after.len()), (20, 20));
        assert_eq!(got_before, want(&|ms| ms < midnight));
        assert_eq!(got_after, want(&|ms| ms >= midnight));
        let mut all_got = got_before.iter().chain(&got_after);
        let non_ascii = |v: &Value| text(v).is_some_and(|s| !s.is_ascii());
        assert!(
            all_got.clone().any(|g| text(&g[3]) == Some("")),
            "an empty UA"
        );
        assert!(
            all_got
                .clone()
                .any(|g| text(&g[3]) == Some("日本") && text(&g[5]) == Some("Mözilla/5.0 ✓-"))
        );
        assert!(
            all_got.any(|g| non_ascii(&g[7]) && non_ascii(&g[8])),
            "a non-ASCII aff_sub1 and extra"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Reopened within a day (a restart), the writer keeps the day's view
    /// and numbers a millisecond's new decisions after those stored;
    /// retention drops the whole day: view, rows, dictionaries and rollup.
    #[test]
    fn a_restart_within_the_day_continues_its_keys_and_retention_drops_it_all() {
        let dir = fresh_dir("restart");
        let day = 86_400_000i64;
        let today = 20_000 * day;
        let ivt = IvtMap::new(&crate::Config::default().ivt).unwrap();
        let mut w = Writer::open(&dir, ivt.clone(), IpMode::Full, 1).unwrap();
        let batch: Vec<Record> = (0..70u128).map(|i| varied(i, today + 5)).collect();
        w.write(&batch).unwrap();
        drop(w);
        let mut w = Writer::open(&dir, ivt, IpMode::Full, 1).unwrap();
        // A new decision of the same millisecond: its key follows the 70
        // there (read from the store after the restart).
        w.write(&[varied(70, today + 5)]).unwrap();
        assert_eq!(count(&dir, "field=id&page_size=1000"), 71);
        assert_eq!(w.retention(today + 2 * day).unwrap(), [day_table(today)]);
        let conn = Connection::open(dir.join(FILE)).unwrap();
        assert_eq!(
            schema_objects(&conn),
            0,
            "every rows' table, dictionaries, view and rollup dropped"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Records that reach the writer after later ones were written (a
    /// batch's first milliseconds can be the last ones of the batch
    /// before) get keys after those already in their millisecond: all are
    /// kept, each at its own time.
    #[test]
    fn late_records_are_kept_at_their_own_time() {
        let dir = fresh_dir("late");
        let ivt = IvtMap::new(&crate::Config::default().ivt).unwrap();
        let mut w = Writer::open(&dir, ivt, IpMode::Full, 1).unwrap();
        let ms = 20_000 * 86_400_000i64 + 1000;
        let first: Vec<Record> = (0..5).map(|i| record(ms + i as i64 % 2 * 10, i)).collect();
        w.write(&first).unwrap();
        // Before, between and at the milliseconds written: ms, ms + 5, ms + 10.
        let late: Vec<Record> = (5..14)
            .map(|i| record(ms + [0, 5, 10][i as usize % 3], i))
            .collect();
        w.write(&late).unwrap();
        let times = |raw: &str| -> Vec<i64> {
            first_column(&dir, raw)
                .iter()
                .map(|v| v.as_i64().unwrap() - ms)
                .collect()
        };
        let mut want: Vec<i64> = first.iter().chain(&late).map(|r| r.ts_ms() - ms).collect();
        want.sort();
        assert_eq!(times("field=ts&page_size=100&sort=ts_asc"), want);
        want.reverse();
        assert_eq!(
            times("field=ts&page_size=100"),
            want,
            "newest first by default"
        );
        assert_eq!(
            times(&format!(
                "field=ts&page_size=100&filter=%5B%22ts%22%2C{}%5D",
                ms + 5
            )),
            [5, 5, 5]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A list in time order is read one day at a time; its pages run
    /// across days as one list.
    #[test]
    fn pages_in_time_order_run_across_days() {
        let dir = fresh_dir("pages");
        let day = 86_400_000i64;
        let today = 20_000 * day;
        let ivt = IvtMap::new(&crate::Config::default().ivt).unwrap();
        let mut w = Writer::open(&dir, ivt, IpMode::Full, 30).unwrap();
        // Three records on each of three days, each millisecond its own.
        let batch: Vec<Record> = (0..9u128)
            .map(|i| record(today - (i as i64 % 3) * day + i as i64, i))
            .collect();
        w.write(&batch).unwrap();
        let mut all: Vec<i64> = batch.iter().map(Record::ts_ms).collect();
        all.sort();
        let page = |raw: &str| -> Vec<i64> {
            first_column(&dir, raw)
                .iter()
                .map(|v| v.as_i64().unwrap())
                .collect()
        };
        let mut asc = Vec::new();
        let mut desc = Vec::new();
        for p in 1..=3 {
            asc.extend(page(&format!("field=ts&sort=ts_asc&page_size=4&page={p}")));
            desc.extend(page(&format!("field=ts&page_size=4&page={p}")));
        }
        assert_eq!(asc, all);
        all.reverse();
        assert_eq!(desc, all);
        assert_eq!(page("field=ts&page_size=4&page=4"), Vec::<i64>::new());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A sort key after `ts` orders the rows of one millisecond (the time
    /// key, finer than `ts`, is used for `ts` only as the last key).
    #[test]
    fn a_key_after_ts_orders_rows_of_one_millisecond() {
        let dir = fresh_dir("ts-then");
        let ivt = IvtMap::new(&crate::Config::default().ivt).unwrap();
        let mut w = Writer::open(&dir, ivt, IpMode::Full, 1).unwrap();
        let ms = 20_000 * 86_400_000i64 + 5;
        // Written (and so keyed) in the reverse of their IPs' order.
        let batch: Vec<Record> = (0..3u128)
            .map(|i| {
                let mut r = record(ms, i);
                r.event.ip = format!("10.0.0.{}", 3 - i).parse().unwrap();
                r
            })
            .collect();
        w.write(&batch).unwrap();
        for (sort, want) in [
            ("ts_asc,ip_asc", ["10.0.0.1", "10.0.0.2", "10.0.0.3"]),
            ("ts_desc,ip_desc", ["10.0.0.3", "10.0.0.2", "10.0.0.1"]),
        ] {
            let got = texts(&dir, &format!("field=ip,ts&sort={sort}"));
            assert_eq!(got, want, "{sort}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// IPs read back as `store_ip` writes them out (IPv4 is formatted by
    /// hand on the write path).
    #[test]
    fn ips_read_back_as_stored() {
        let ips = [
            "0.0.0.0",
            "255.255.255.255",
            "10.9.100.1",
            "192.168.0.99",
            "2001:db8::7",
        ];
        for mode in [IpMode::Full, IpMode::Truncated, IpMode::Hashed] {
            let dir = fresh_dir(&format!("ips-{mode:?}"));
            let ivt = IvtMap::new(&crate::Config::default().ivt).unwrap();
            let mut w = Writer::open(&dir, ivt, mode, 1).unwrap();
            let salt = [3u8; 32];
            w.set_salt(Some(salt));
            let ms = 20_000 * 86_400_000i64 + 77;
            let batch: Vec<Record> = ips
                .iter()
                .enumerate()
                .map(|(i, ip)| {
                    let mut r = record(ms + i as i64, i as u128);
                    r.event.ip = ip.parse().unwrap();
                    r
                })
                .collect();
            w.write(&batch).unwrap();
            let got = texts(&dir, "field=ip&page_size=10&sort=ts_asc&field=ts");
            let want: Vec<String> = ips
                .iter()
                .map(|ip| {
                    crate::decision_log::columns::store_ip(ip.parse().unwrap(), mode, Some(&salt))
                })
                .collect();
            assert_eq!(got, want, "{mode:?}");
            // An equality filter on the text finds the row.
            let f = format!(
                "field=id&filter=%5B%22ip%22%2C%22{}%22%5D",
                want[2].replace(':', "%3A")
            );
            assert_eq!(count(&dir, &f), 1, "{mode:?}");
            let _ = std::fs::remove_dir_all(&dir);
        }
    }

    /// A write that fails after creating a day's tables rolls them back;
    /// the retry creates them again instead of failing until a restart.
    #[test]
    fn a_failed_write_is_retried_from_what_the_store_holds() {
        let dir = fresh_dir("retry");
        let ivt = IvtMap::new(&crate::Config::default().ivt).unwrap();
        let mut w = Writer::open(&dir, ivt, IpMode::Full, 1).unwrap();
        let ms = 20_000 * 86_400_000i64;
        let r = rollup_table(&day_table(ms));
        // The day's rollup rows fail once, inside the writer's transaction.
        w.conn
            .execute_batch(&format!(
                "CREATE TABLE fail_once (n INTEGER); INSERT INTO fail_once VALUES (1); \
                 CREATE TABLE \"{r}\" {ROLLUP_SCHEMA}; \
                 CREATE TRIGGER boom BEFORE INSERT ON \"{r}\" \
                 WHEN (SELECT count(*) FROM fail_once) > 0 \
                 BEGIN SELECT RAISE(ABORT, 'injected'); END;"
            ))
            .unwrap();
        let batch: Vec<Record> = (0..5u128).map(|i| record(ms, i)).collect();
        assert!(w.write(&batch).is_err());
        w.conn.execute_batch("DELETE FROM fail_once").unwrap();
        w.write(&batch).unwrap();
        assert_eq!(count(&dir, "field=id&page_size=100"), 5);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A day's view has a decision's columns in table order, then the
    /// time key.
    #[test]
    fn a_day_view_has_the_columns_in_order() {
        let dir = fresh_dir("columns");
        let ivt = IvtMap::new(&crate::Config::default().ivt).unwrap();
        let mut w = Writer::open(&dir, ivt, IpMode::Full, 1).unwrap();
        let ms = 20_000 * 86_400_000i64;
        w.write(&[record(ms, 0)]).unwrap();
        let conn = Connection::open(dir.join(FILE)).unwrap();
        let sql = format!("SELECT name FROM pragma_table_info('{}')", day_table(ms));
        let names: Vec<Value> = select(&conn, &sql).into_iter().flatten().collect();
        let want: Vec<Value> = crate::decision_log::columns::NAMES
            .iter()
            .chain(&["_k"])
            .map(|n| Value::from(n.to_string()))
            .collect();
        assert_eq!(names, want);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn day_tables_are_named_by_utc_day() {
        assert_eq!(day_table(0), "d_19700101");
        assert_eq!(day_table(1_774_747_800_000), "d_20260329");
        assert!(day_table(1_774_747_800_000) > day_table(1_774_647_800_000));
    }
}
