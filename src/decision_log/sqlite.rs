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

pub const ROLLUP_SCHEMA: &str = "(ts INTEGER NOT NULL, door TEXT NOT NULL, client TEXT NOT NULL,     event_type TEXT NOT NULL, affiliate_id TEXT NOT NULL, offer_id TEXT NOT NULL,     country_code TEXT NOT NULL, decision TEXT NOT NULL, would_be TEXT NOT NULL,     mode TEXT NOT NULL, tags TEXT NOT NULL, tag_mask INTEGER NOT NULL,     blocked_mask INTEGER NOT NULL, source TEXT NOT NULL, reason TEXT NOT NULL,     rule_mask INTEGER NOT NULL, ivt TEXT NOT NULL, ivt_category TEXT NOT NULL,     n INTEGER NOT NULL, elapsed_sum INTEGER NOT NULL)";

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

pub fn day_table(ts_ms: i64) -> String {
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
pub fn list_days(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare(
        "SELECT name FROM sqlite_master WHERE type = 'view' AND name GLOB 'd_[0-9]*' \
         ORDER BY name",
    )?;
    stmt.query_map([], |r| r.get::<_, String>(0))?.collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use std::path::PathBuf;

    use rusqlite::types::Value;

    use super::*;
    use crate::decision_log::Row;
    use crate::decision_log::record::tests::record;

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
