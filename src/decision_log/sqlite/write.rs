//! The writer's side of the store: the one write connection, a batch in
//! one transaction (a compact day and its rollup per UTC day), and
//! retention by whole days.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use rusqlite::Connection;

use super::dictionary::Dictionaries;
use super::schema::{self, FILE, Parts, day_table, list_days, rollup_table};
use super::{compact, is_corrupt, rollup, write_error};
use crate::decision_log::batch::{Batch, Records};
use crate::decision_log::ivt::IvtMap;
use crate::decision_log::record::Record;
use crate::decision_log::{IpMode, LogError};

/// The writer's side: owns the one write connection.
pub struct Writer {
    pub(super) conn: Connection,
    /// The days the store holds (their views, `d_YYYYMMDD`).
    days: HashSet<String>,
    /// The dictionaries of the compact days being written (two at most:
    /// today and, around midnight, yesterday).
    dicts: HashMap<String, Dictionaries>,
    ivt: IvtMap,
    ip: IpMode,
    retention_days: u32,
    last_retention: Option<i64>,
    salt: Option<[u8; 32]>,
}

/// The WAL is truncated to at most this after each checkpoint. (Without a
/// limit it keeps the size of its largest run between checkpoints, about
/// 40 MB at `wal_autocheckpoint = 10000`: on a volume that was full and
/// had room freed, that file would take the room back at once.)
pub const WAL_LIMIT_BYTES: i64 = 4 << 20;

/// SQLite virtual-machine steps between two chances the writer gives the
/// request threads of its core (a short stretch of inserting, well under
/// the scheduler's slice: docs/performance.md). The rows also give way
/// after each block they write (`rows`).
const STEPS_BETWEEN_YIELDS: i32 = 100_000;

thread_local! {
    /// How often this thread has given way (tests).
    static YIELDS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Offers the core to the scheduler (`sched_yield`): a runnable thread
/// there, a request thread, runs first; then the writer carries on (the
/// statement is never interrupted). A whole batch inserted in one piece
/// kept the request thread sharing its core waiting, and a loaded cache
/// hit's p99 rose with the log on (docs/performance.md). Returns false:
/// the statement carries on.
pub(super) fn give_way() -> bool {
    std::thread::yield_now();
    YIELDS.with(|y| y.set(y.get() + 1));
    false
}

/// How often this thread's writes have given way so far.
#[cfg(test)]
pub(super) fn yields() -> u64 {
    YIELDS.with(std::cell::Cell::get)
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
    super::register(&conn).map_err(open_err)?;
    Ok(conn)
}

impl Writer {
    pub fn open(
        path: &Path,
        ivt: IvtMap,
        ip: IpMode,
        retention_days: u32,
    ) -> Result<Self, LogError> {
        let mut conn = open_rw(path)?;
        schema::upgrade_days(&mut conn).map_err(write_error)?;
        // A day's writing uses about ten statements (four for its blocks,
        // the dictionaries', the rollup's); a batch across midnight twice
        // that. (The default of 16 would prepare the largest again.)
        conn.set_prepared_statement_cache_capacity(32);
        conn.progress_handler(STEPS_BETWEEN_YIELDS, Some(give_way))
            .map_err(write_error)?;
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

    /// Converts the days of `batch` this process has not written yet
    /// that a release before blocks wrote (the day of an upgrade), each
    /// in a transaction of its own before the batch's: a batch that fails
    /// after does not undo it, and the conversion's rows do not ride on
    /// every retry of the batch.
    fn convert_days(&mut self, batch: Records<'_>) -> Result<(), LogError> {
        let err = write_error;
        let mut last = None;
        for r in batch.iter() {
            let day = r.ts_ms().div_euclid(86_400_000);
            if last == Some(day) {
                continue;
            }
            last = Some(day);
            let table = day_table(day * 86_400_000);
            if self.dicts.contains_key(&table) || !self.days.contains(&table) {
                continue;
            }
            let tx = self.conn.transaction().map_err(err)?;
            let converted = schema::convert_day(&tx, &table)?;
            tx.commit().map_err(err)?;
            if converted {
                tracing::info!(day = %table, "decision log: converted a day to blocks of rows");
            }
        }
        Ok(())
    }

    fn write_once(&mut self, batch: Records<'_>) -> Result<(), LogError> {
        let err = write_error;
        self.convert_days(batch)?;
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
        dicts: &mut HashMap<String, Dictionaries>,
        (ivt, ip, salt): (&IvtMap, IpMode, Option<&[u8; 32]>),
        day: i64,
        records: Records<'_>,
    ) -> Result<(), LogError> {
        let err = write_error;
        let table = day_table(day * 86_400_000);
        if !days.contains(&table) {
            // A new day, with its rollup from the start. (Its compact
            // tables and view are created below, on its first write.)
            schema::create_rollup(tx, &table).map_err(err)?;
            days.insert(table.clone());
        }
        if !dicts.contains_key(&table) {
            // First written by this process (a day written before blocks
            // was converted just before: `convert_days`).
            schema::create_day(tx, &table).map_err(err)?;
            // Keep the newest day's dictionaries and this one's.
            let newest = dicts.keys().max().cloned();
            dicts.retain(|k, _| Some(k) == newest.as_ref());
            dicts.insert(table.clone(), Dictionaries::default());
        }
        let d = dicts.get_mut(&table).expect("inserted above");
        compact::insert(tx, &table, d, records, ivt, ip, salt)?;
        rollup::add(tx, &rollup_table(&table), d, records)
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
                for part in Parts::of(&t).all() {
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
