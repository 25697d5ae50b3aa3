//! Running a query on the SQLite store: a fresh read-only connection per
//! query, the days (and their rollups where they answer), rows
//! streamed to the caller until it or the query's [`Stop`] ends it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::functions::FunctionFlags;
use rusqlite::{Connection, OpenFlags, params_from_iter};

use super::{QueryFailure, Stop};
use crate::decision_log::sqlite::{FILE, list_days};
use crate::query::sql::HIDDEN;
use crate::query::sqlite::build;
use crate::query::{Query, TimeUnit, bucket};

/// Runs `q` on a fresh read-only connection and hands every row (its
/// values in column order) to `each`, which may stop it by returning
/// false. Blocking: call it from a blocking thread.
pub fn run(
    path: &Path,
    q: &Query,
    timeout: Duration,
    each: &mut dyn FnMut(&[String], Vec<serde_json::Value>) -> bool,
) -> Result<(), QueryFailure> {
    run_with(path, q, timeout, true, each)
}

/// [`run`], reading the rollups where they answer `q` only if `rollups`
/// (false: always the rows, to compare the two).
pub fn run_with(
    path: &Path,
    q: &Query,
    timeout: Duration,
    rollups: bool,
    each: &mut dyn FnMut(&[String], Vec<serde_json::Value>) -> bool,
) -> Result<(), QueryFailure> {
    let (stop, _asker) = Stop::new(timeout);
    run_until(path, q, &stop, rollups, each)
}

/// [`run_with`] until `stop`: its deadline or its asker gone ends the
/// statement (the progress handler) and the read transaction with it.
pub fn run_until(
    path: &Path,
    q: &Query,
    stop: &Stop,
    rollups: bool,
    each: &mut dyn FnMut(&[String], Vec<serde_json::Value>) -> bool,
) -> Result<(), QueryFailure> {
    let (mut conn, days) = open(path)?;
    prepare(&mut conn, q, stop).map_err(store)?;
    // (No day yet: the one statement over an empty relation, which still
    // checks the query.)
    if let Some(desc) = time_ordered_list(q).filter(|_| !days.is_empty()) {
        return run_by_day(&conn, q, days, desc, stop, rollups, each);
    }
    let sql = build(q, &days, rollups)?;
    stream(&conn, &sql, stop, &mut 0, each).map(|_| ())
}

fn store(e: rusqlite::Error) -> QueryFailure {
    QueryFailure::Store(e.to_string())
}

/// A read-only connection to the store and its days, in one snapshot
/// (or an empty database when the store has no file yet).
fn open(path: &Path) -> Result<(Connection, Vec<String>), QueryFailure> {
    let file: PathBuf = path.join(FILE);
    if !file.exists() {
        return Ok((Connection::open_in_memory().map_err(store)?, Vec::new()));
    }
    let conn = Connection::open_with_flags(
        &file,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(store)?;
    crate::decision_log::sqlite::register(&conn).map_err(store)?;
    // One snapshot for the day list and every statement after it (a
    // time-ordered list runs one per day): retention or a view rebuilt
    // by the writer in between cannot change what the query sees.
    conn.execute_batch("BEGIN").map_err(store)?;
    let days = list_days(&conn).map_err(store)?;
    Ok((conn, days))
}

/// Sets the connection up for `q`: `_like` case-sensitive, the time
/// buckets in its zone (`fg_time`), and `stop` checked as it works.
fn prepare(conn: &mut Connection, q: &Query, stop: &Stop) -> rusqlite::Result<()> {
    // `_like` matches case-sensitively, as in ClickHouse.
    conn.execute_batch("PRAGMA case_sensitive_like = ON;")?;
    let tz = q.tz.clone();
    conn.create_scalar_function(
        "fg_time",
        2,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        move |ctx| {
            let ts: i64 = ctx.get(0)?;
            let unit: String = ctx.get(1)?;
            let unit = match unit.as_str() {
                "datetime" => TimeUnit::Datetime,
                "date" => TimeUnit::Date,
                "hour" => TimeUnit::Hour,
                "week" => TimeUnit::Week,
                "month" => TimeUnit::Month,
                _ => TimeUnit::Year,
            };
            Ok(bucket(ts, unit, &tz))
        },
    )?;
    let check = stop.clone();
    conn.progress_handler(10_000, Some(move || check.check().is_err()))
}

/// A list in time order over `days`: days hold disjoint times, so the
/// rows in time order are each day's in time order, one day after the
/// other. One day at a time, each read in its own time order (its rows'
/// key), not all days merged on one order.
fn run_by_day(
    conn: &Connection,
    q: &Query,
    mut days: Vec<String>,
    desc: bool,
    stop: &Stop,
    rollups: bool,
    each: &mut dyn FnMut(&[String], Vec<serde_json::Value>) -> bool,
) -> Result<(), QueryFailure> {
    let mut skip = (q.page - 1).saturating_mul(q.page_size);
    let mut left = q.page_size;
    if desc {
        days.reverse();
    }
    for day in days {
        if left == 0 {
            break;
        }
        let mut dq = q.clone();
        dq.page = 1;
        dq.page_size = skip.saturating_add(left);
        let sql = build(&dq, std::slice::from_ref(&day), rollups)?;
        let done = stream(conn, &sql, stop, &mut skip, &mut |names, values| {
            left -= 1;
            each(names, values) && left > 0
        })?;
        if done {
            break;
        }
    }
    Ok(())
}

/// For a list in time order (newest first unless sorted by `ts`
/// ascending): whether it is descending.
fn time_ordered_list(q: &Query) -> Option<bool> {
    if !matches!(q.shape, crate::query::Shape::List(_)) {
        return None;
    }
    match q.sort.as_slice() {
        [] => Some(true),
        [(name, desc)] if name == "ts" => Some(*desc),
        _ => None,
    }
}

/// Runs one statement, passing over its first `skip` rows (counted down)
/// and handing each other row to `each`; true when `each` stopped it.
fn stream(
    conn: &Connection,
    sql: &crate::query::sqlite::Sql,
    stop: &Stop,
    skip: &mut u64,
    each: &mut dyn FnMut(&[String], Vec<serde_json::Value>) -> bool,
) -> Result<bool, QueryFailure> {
    let mut stmt = conn.prepare(&sql.text).map_err(store)?;
    let names: Vec<String> = stmt.column_names().map(str::to_owned).collect();
    let shown: Vec<String> = names.iter().filter(|n| *n != HIDDEN).cloned().collect();
    let mut rows = stmt
        .query(params_from_iter(sql.params.iter()))
        .map_err(|e| stop.check().err().unwrap_or_else(|| store(e)))?;
    loop {
        match rows.next() {
            Ok(Some(_)) if *skip > 0 => *skip -= 1,
            Ok(Some(row)) => {
                let values = shown
                    .iter()
                    .enumerate()
                    .map(|(i, n)| json_value(n, row, i))
                    .collect();
                if !each(&shown, values) {
                    return Ok(true);
                }
            }
            Ok(None) => return Ok(false),
            Err(e) => return Err(stop.check().err().unwrap_or_else(|| store(e))),
        }
    }
}

/// A column's value as JSON; the JSON-text fields (`extra`, `rules`) as
/// the JSON they hold.
fn json_value(name: &str, row: &rusqlite::Row<'_>, i: usize) -> serde_json::Value {
    use rusqlite::types::ValueRef;
    use serde_json::Value;
    match row.get_ref(i) {
        Ok(ValueRef::Integer(x)) => Value::from(x),
        Ok(ValueRef::Real(x)) => Value::from(x),
        Ok(ValueRef::Text(t)) => super::text_value(name, &String::from_utf8_lossy(t)),
        _ => Value::Null,
    }
}
