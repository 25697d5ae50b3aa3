//! `fg_rows('b_YYYYMMDD')`: a compact day's rows, read out of its blocks
//! (`block`) as a table, so a day's view (`schema`) and every query read
//! them like rows of SQLite's own.
//!
//! Bounds on the time key `k` (what the query side puts beside each time
//! bound) pick the blocks: the one holding the lower bound, then the
//! blocks after it up to the upper bound, each found by its rowid. Rows
//! come out in key order, ascending or descending as the query asks, so
//! "the newest N" reads the newest blocks only. Blocks never overlap: the
//! writer merges a row that comes late into the block of its keys.
//!
//! Every connection that reads the store registers the table
//! ([`register`]); it reads the blocks through the connection's own
//! handle, in the caller's transaction, with statements it prepares once
//! per connection (each cursor shares the table's `Connection`, an `Rc`:
//! no cursor borrows the table, which rusqlite hands out as `&mut`).
//!
//! The one module with unsafe code: rusqlite's `VTab` and `VTabCursor`
//! are unsafe traits (the structs must start with SQLite's base struct and
//! be `repr(C)`, as these do), and the blocks are read through a
//! `Connection` made from the caller's handle.
#![allow(unsafe_code)]

use std::borrow::Cow;
use std::ffi::{CStr, c_int};

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::vtab::{
    Context, Filters, IndexConstraintOp, IndexInfo, Module, VTab, VTabConfig, VTabConnection,
    VTabCursor, sqlite3_vtab, sqlite3_vtab_cursor,
};
use std::rc::Rc;

use rusqlite::Connection;

use super::block::{self, Row, Span};

const NAME: &CStr = c"fg_rows";

/// The columns, in [`Row`]'s order, and the hidden argument: the table of
/// blocks to read.
const SCHEMA: &CStr = c"CREATE TABLE x(k INTEGER, id_mid INTEGER, id_low INTEGER, ip TEXT, \
    ua INTEGER, who INTEGER, aff_sub1 TEXT, aff_sub2 TEXT, aff_sub3 TEXT, aff_sub4 TEXT, \
    aff_sub5 TEXT, extra TEXT, ctx INTEGER, elapsed_us INTEGER, age INTEGER, tbl HIDDEN)";
const K: c_int = 0;
const TBL: c_int = 15;
/// What SQLite calls the rowid column, which is `k` here.
const ROWID: c_int = -1;

// The plan's flags (idx_num); its arguments come in this order: the
// table, then `k =` or the lower bound, then the upper bound.
const HAS_TABLE: c_int = 1;
const EQ: c_int = 2;
const LOWER: c_int = 4;
const LOWER_EXCLUSIVE: c_int = 8;
const UPPER: c_int = 16;
const UPPER_EXCLUSIVE: c_int = 32;
const DESC: c_int = 64;

/// Makes `fg_rows` readable on `conn`.
pub fn register(conn: &Connection) -> rusqlite::Result<()> {
    const MODULE: Module<RowsTab> = Module::eponymous_only_module();
    conn.create_module(NAME, &MODULE, None)
}

/// Whether `name` is a table of blocks (`b_` and eight digits): the only
/// names read, so an argument cannot reach other SQL.
fn is_block_table(name: &str) -> bool {
    name.len() == 10 && name.starts_with("b_") && name[2..].bytes().all(|b| b.is_ascii_digit())
}

#[repr(C)]
struct RowsTab {
    base: sqlite3_vtab,
    /// The connection the table was opened on (not owned: it is the
    /// caller's), to read the blocks through.
    conn: Rc<Connection>,
}

unsafe impl<'vtab> VTab<'vtab> for RowsTab {
    type Aux = ();
    type Cursor = RowsCursor;

    fn connect(
        db: &mut VTabConnection,
        _aux: Option<&()>,
        _module: &[u8],
        _database: &[u8],
        _table: &[u8],
        _args: &[&[u8]],
    ) -> rusqlite::Result<(Cow<'static, CStr>, Self)> {
        // Safe to use in views and queries of any schema: it reads only.
        db.config(VTabConfig::Innocuous)?;
        // SAFETY: the handle is the live connection being set up; a
        // connection from `from_handle` does not close it, and the table is
        // disconnected before the connection closes.
        let conn = unsafe { Connection::from_handle(db.handle())? };
        // Two statements a day read, and a query over the whole retention
        // reads them all: room for 128 days (`retention_days` is 30 by
        // default; past the room, a day's statements are prepared again).
        // (Finalized when SQLite disconnects the table, before it closes
        // the connection.)
        conn.set_prepared_statement_cache_capacity(256);
        Ok((
            Cow::Borrowed(SCHEMA),
            RowsTab {
                base: sqlite3_vtab::default(),
                conn: Rc::new(conn),
            },
        ))
    }

    fn best_index(&self, info: &mut IndexInfo) -> rusqlite::Result<bool> {
        let (mut table, mut eq, mut lower, mut upper) = (None, None, None, None);
        for (i, c) in info.constraints().enumerate() {
            let op = c.operator();
            match c.column() {
                TBL if op == IndexConstraintOp::SQLITE_INDEX_CONSTRAINT_EQ => {
                    if !c.is_usable() {
                        // Not this plan: one where the table is known.
                        return Ok(false);
                    }
                    table = Some(i);
                }
                K | ROWID if c.is_usable() => match op {
                    IndexConstraintOp::SQLITE_INDEX_CONSTRAINT_EQ => eq = eq.or(Some(i)),
                    IndexConstraintOp::SQLITE_INDEX_CONSTRAINT_GT => {
                        lower = lower.or(Some((i, LOWER_EXCLUSIVE)));
                    }
                    IndexConstraintOp::SQLITE_INDEX_CONSTRAINT_GE => lower = lower.or(Some((i, 0))),
                    IndexConstraintOp::SQLITE_INDEX_CONSTRAINT_LT => {
                        upper = upper.or(Some((i, UPPER_EXCLUSIVE)));
                    }
                    IndexConstraintOp::SQLITE_INDEX_CONSTRAINT_LE => upper = upper.or(Some((i, 0))),
                    _ => {}
                },
                _ => {}
            }
        }
        let mut plan = 0;
        let mut argv = 0;
        // (Bounds are not omitted: SQLite checks them again, so a bound
        // that is not an integer, left unused, still filters.)
        let mut using = |info: &mut IndexInfo, i: usize, omit: bool| {
            argv += 1;
            let mut u = info.constraint_usage(i);
            u.set_argv_index(argv);
            u.set_omit(omit);
        };
        let mut rows = 10_000_000f64;
        if let Some(i) = table {
            using(info, i, true);
            plan |= HAS_TABLE;
        } else {
            rows = f64::MAX / 4.0;
        }
        if let Some(i) = eq {
            using(info, i, false);
            plan |= EQ;
            rows = rows.min(1.0);
        } else {
            if let Some((i, flag)) = lower {
                using(info, i, false);
                plan |= LOWER | flag;
                rows /= 4.0;
            }
            if let Some((i, flag)) = upper {
                using(info, i, false);
                plan |= UPPER | flag;
                rows /= 4.0;
            }
        }
        // Key order (the key is unique: what follows it cannot reorder).
        if let Some(first) = info.order_bys().next()
            && matches!(first.column(), K | ROWID)
        {
            if first.is_order_by_desc() {
                plan |= DESC;
            }
            info.set_order_by_consumed(true);
        }
        info.set_idx_num(plan);
        info.set_estimated_cost(rows);
        info.set_estimated_rows(rows as i64);
        Ok(true)
    }

    fn open(&'vtab mut self) -> rusqlite::Result<RowsCursor> {
        Ok(RowsCursor {
            base: sqlite3_vtab_cursor::default(),
            conn: Rc::clone(&self.conn),
            table: String::new(),
            at_or_before: String::new(),
            after: String::new(),
            data: Vec::new(),
            rows: Vec::new(),
            at: 0,
            lower: i64::MIN,
            upper: i64::MAX,
            desc: false,
            next_block: None,
            done: true,
        })
    }
}

#[repr(C)]
struct RowsCursor {
    base: sqlite3_vtab_cursor,
    conn: Rc<Connection>,
    /// The table of blocks read, and its statements' SQL: the block at or
    /// before a key, and the first block from a key up to another.
    table: String,
    at_or_before: String,
    after: String,
    /// The current block and its rows.
    data: Vec<u8>,
    rows: Vec<Row<Span>>,
    /// The current row's index in `rows`.
    at: usize,
    /// The keys asked for (inclusive).
    lower: i64,
    upper: i64,
    desc: bool,
    /// Where the next block is looked for: from this key up (ascending) or
    /// at or below it (descending); None once there is none.
    next_block: Option<i64>,
    done: bool,
}

/// A bound's key, inclusive; None when it is not an integer (then the
/// bound is not used here, and SQLite applies it), or when nothing can
/// pass it (`Some(None)`).
fn bound(args: &Filters<'_>, i: usize, exclusive: bool, up: bool) -> Option<Option<i64>> {
    let v = args.get::<rusqlite::types::Value>(i).ok()?;
    let rusqlite::types::Value::Integer(k) = v else {
        return None;
    };
    Some(match (exclusive, up) {
        (false, _) => Some(k),
        (true, false) => k.checked_add(1),
        (true, true) => k.checked_sub(1),
    })
}

impl RowsCursor {
    /// Loads the next block that may hold keys in range, with `at` on its
    /// first row in range; `done` when there is none.
    fn load_next(&mut self) -> rusqlite::Result<()> {
        loop {
            let Some(key) = self.next_block else {
                self.done = true;
                return Ok(());
            };
            let mut stmt = self.conn.prepare_cached(if self.desc {
                &self.at_or_before
            } else {
                &self.after
            })?;
            let mut found = if self.desc {
                stmt.query([key])?
            } else {
                stmt.query([key, self.upper])?
            };
            let Some(r) = found.next()? else {
                self.done = true;
                return Ok(());
            };
            let first: i64 = r.get(0)?;
            self.data.clear();
            self.data.extend_from_slice(r.get_ref(1)?.as_blob()?);
            drop(found);
            drop(stmt);
            block::decode(first, &self.data, &mut self.rows)
                .map_err(|e| rusqlite::Error::ModuleError(e.to_string()))?;
            self.next_block = if self.desc {
                first.checked_sub(1)
            } else {
                first.checked_add(1)
            };
            let (lo, hi) = (self.lower, self.upper);
            if self.desc {
                // The last row at or below the upper bound.
                let n = self.rows.partition_point(|r| r.k <= hi);
                match n.checked_sub(1) {
                    Some(i) if self.rows[i].k >= lo => {
                        self.at = i;
                        return Ok(());
                    }
                    // Every row below the lower bound: so are the blocks before.
                    Some(_) => self.next_block = None,
                    None => {}
                }
            } else {
                let i = self.rows.partition_point(|r| r.k < lo);
                match self.rows.get(i) {
                    Some(r) if r.k <= hi => {
                        self.at = i;
                        return Ok(());
                    }
                    // Past the upper bound: so are the blocks after.
                    Some(_) => self.next_block = None,
                    None => {}
                }
            }
        }
    }

    /// The current row. (An error, not a panic, if SQLite asks past the
    /// end: a panic cannot unwind through SQLite's C frames, it would
    /// abort the process.)
    fn row(&self) -> rusqlite::Result<&Row<Span>> {
        self.rows
            .get(self.at)
            .filter(|_| !self.done)
            .ok_or_else(|| rusqlite::Error::ModuleError("fg_rows has no current row".into()))
    }
}

unsafe impl VTabCursor for RowsCursor {
    fn filter(&mut self, plan: c_int, _: Option<&str>, args: &Filters<'_>) -> rusqlite::Result<()> {
        if plan & HAS_TABLE == 0 {
            return Err(rusqlite::Error::ModuleError(
                "fg_rows needs a table of blocks: fg_rows('b_YYYYMMDD')".into(),
            ));
        }
        let table: String = args.get(0).unwrap_or_default();
        if !is_block_table(&table) {
            return Err(rusqlite::Error::ModuleError(format!(
                "fg_rows reads a table of blocks (b_YYYYMMDD), not {table:?}"
            )));
        }
        if table != self.table {
            self.at_or_before =
                format!("SELECT k, data FROM \"{table}\" WHERE k <= ?1 ORDER BY k DESC LIMIT 1");
            self.after = format!(
                "SELECT k, data FROM \"{table}\" WHERE k >= ?1 AND k <= ?2 ORDER BY k LIMIT 1"
            );
            self.table = table;
        }
        let (mut lower, mut upper) = (Some(i64::MIN), Some(i64::MAX));
        let mut arg = 1;
        if plan & EQ != 0 {
            if let Some(k) = bound(args, arg, false, false) {
                (lower, upper) = (k, k);
            }
        } else {
            if plan & LOWER != 0 {
                lower = bound(args, arg, plan & LOWER_EXCLUSIVE != 0, false).unwrap_or(lower);
                arg += 1;
            }
            if plan & UPPER != 0 {
                upper = bound(args, arg, plan & UPPER_EXCLUSIVE != 0, true).unwrap_or(upper);
            }
        }
        self.rows.clear();
        self.desc = plan & DESC != 0;
        let (Some(lo), Some(hi)) = (lower, upper) else {
            self.done = true;
            return Ok(());
        };
        (self.lower, self.upper) = (lo, hi);
        self.done = lo > hi;
        if self.done {
            return Ok(());
        }
        if self.desc {
            self.next_block = Some(hi);
        } else {
            // The block holding the lower bound, if one does; else the first
            // block after it.
            let holding: Option<i64> = self
                .conn
                .prepare_cached(&self.at_or_before)?
                .query_row([lo], |r| r.get(0))
                .map(Some)
                .or_else(|e| match e {
                    rusqlite::Error::QueryReturnedNoRows => Ok(None),
                    e => Err(e),
                })?;
            self.next_block = Some(holding.unwrap_or(lo));
        }
        self.load_next()
    }

    fn next(&mut self) -> rusqlite::Result<()> {
        let more = if self.desc {
            self.at.checked_sub(1)
        } else {
            Some(self.at + 1).filter(|&i| i < self.rows.len())
        };
        match more {
            Some(i) => {
                let k = self.rows[i].k;
                if (self.desc && k < self.lower) || (!self.desc && k > self.upper) {
                    self.done = true;
                } else {
                    self.at = i;
                }
                Ok(())
            }
            None => self.load_next(),
        }
    }

    fn eof(&self) -> bool {
        self.done
    }

    fn column(&self, ctx: &mut Context, i: c_int) -> rusqlite::Result<()> {
        let r = self.row()?;
        let text = |s: Option<Span>| match s {
            Some(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.bytes(&self.data))),
            None => ToSqlOutput::Borrowed(ValueRef::Null),
        };
        match i {
            0 => ctx.set_result(r.k),
            1 => ctx.set_result(r.id_mid),
            2 => ctx.set_result(r.id_low),
            3 => ctx.set_result(text(Some(r.ip))),
            4 => ctx.set_result(r.ua),
            5 => ctx.set_result(r.who),
            6..=10 => ctx.set_result(text(r.aff_sub[i as usize - 6])),
            11 => ctx.set_result(text(r.extra)),
            12 => ctx.set_result(r.ctx),
            13 => ctx.set_result(r.elapsed_us),
            14 => ctx.set_result(r.age),
            _ => ctx.set_result(self.table.as_str()),
        }
    }

    fn rowid(&self) -> rusqlite::Result<i64> {
        Ok(self.row()?.k)
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    use super::super::block::{Encoder, Row};
    use super::register;

    fn row(k: i64) -> Row<&'static [u8]> {
        Row {
            k,
            id_mid: k % 7,
            id_low: -k,
            ip: b"10.0.0.1",
            ua: 1,
            who: 2,
            aff_sub: [None, None, Some(b"s3"), None, None],
            extra: None,
            ctx: 3,
            elapsed_us: 40,
            age: 0,
        }
    }

    /// A store with blocks of keys `blocks` in `b_20260101`.
    fn store(blocks: &[&[i64]]) -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        register(&conn).unwrap();
        conn.execute_batch("CREATE TABLE b_20260101 (k INTEGER PRIMARY KEY, data BLOB NOT NULL)")
            .unwrap();
        let mut enc = Encoder::default();
        for keys in blocks {
            for &k in *keys {
                enc.push(&row(k));
            }
            let (first, data) = enc.take().unwrap();
            conn.execute(
                "INSERT INTO b_20260101 VALUES (?1, ?2)",
                rusqlite::params![first, data],
            )
            .unwrap();
        }
        conn
    }

    fn keys(conn: &Connection, filter: &str) -> Vec<i64> {
        let sql = format!("SELECT k FROM fg_rows('b_20260101') {filter}");
        let mut stmt = conn.prepare(&sql).unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    #[test]
    fn bounds_and_order_read_the_rows_asked_for() {
        let conn = store(&[&[1, 2, 3], &[10, 11], &[20, 25, 30]]);
        let all = vec![1, 2, 3, 10, 11, 20, 25, 30];
        assert_eq!(keys(&conn, ""), all);
        assert_eq!(keys(&conn, "ORDER BY k"), all);
        let mut rev = all.clone();
        rev.reverse();
        assert_eq!(keys(&conn, "ORDER BY k DESC"), rev);
        // Bounds inside blocks, between them and past the ends.
        let cases: [(&str, &[i64]); 12] = [
            ("WHERE k >= 2 AND k <= 20", &[2, 3, 10, 11, 20]),
            ("WHERE k > 3 AND k < 25", &[10, 11, 20]),
            ("WHERE k >= 4 AND k <= 9", &[]),
            ("WHERE k >= 12", &[20, 25, 30]),
            ("WHERE k <= 10", &[1, 2, 3, 10]),
            ("WHERE k = 11", &[11]),
            ("WHERE k = 12", &[]),
            ("WHERE k > 30", &[]),
            ("WHERE k < 1", &[]),
            ("WHERE k >= 9223372036854775807", &[]),
            ("WHERE k > 2.5 AND k < 10.5", &[3, 10]),
            ("WHERE rowid BETWEEN 3 AND 10", &[3, 10]),
        ];
        for (filter, want) in cases {
            assert_eq!(keys(&conn, filter), want, "{filter}");
            let mut rev = want.to_vec();
            rev.reverse();
            assert_eq!(
                keys(&conn, &format!("{filter} ORDER BY k DESC")),
                rev,
                "{filter} DESC"
            );
        }
        assert_eq!(
            keys(&conn, "WHERE k >= 2 ORDER BY k DESC LIMIT 2"),
            [30, 25]
        );
        // The table's statements are gone before the connection closes
        // (else SQLite would refuse to close it, busy).
        conn.close().map_err(|(_, e)| e).unwrap();
    }

    #[test]
    fn every_column_reads_back() {
        use rusqlite::types::Value::{Integer, Null, Text};
        let conn = store(&[&[5]]);
        let got: Vec<rusqlite::types::Value> = conn
            .query_row(
                "SELECT k, id_mid, id_low, ip, ua, who, aff_sub1, aff_sub2, aff_sub3, aff_sub4, \
                 aff_sub5, extra, ctx, elapsed_us, age, tbl FROM fg_rows('b_20260101')",
                [],
                |r| (0..16).map(|i| r.get(i)).collect(),
            )
            .unwrap();
        assert_eq!(
            got,
            [
                Integer(5),
                Integer(5),
                Integer(-5),
                Text("10.0.0.1".into()),
                Integer(1),
                Integer(2),
                Null,
                Null,
                Text("s3".into()),
                Null,
                Null,
                Null,
                Integer(3),
                Integer(40),
                Integer(0),
                Text("b_20260101".into()),
            ]
        );
    }

    #[test]
    fn a_table_that_is_not_one_of_blocks_or_a_damaged_block_is_an_error() {
        let conn = store(&[&[1, 2]]);
        for bad in [
            "SELECT k FROM fg_rows('sqlite_master')",
            "SELECT k FROM fg_rows('b_2026\"; DROP TABLE x; --')",
            "SELECT k FROM fg_rows",
        ] {
            let e = conn
                .prepare(bad)
                .and_then(|mut s| {
                    s.query_map([], |r| r.get::<_, i64>(0))?
                        .collect::<Result<Vec<_>, _>>()
                })
                .unwrap_err();
            assert!(e.to_string().contains("fg_rows"), "{bad}: {e}");
        }
        conn.execute("UPDATE b_20260101 SET data = x'0102'", [])
            .unwrap();
        let e = conn
            .query_row("SELECT count(*) FROM fg_rows('b_20260101')", [], |r| {
                r.get::<_, i64>(0)
            })
            .unwrap_err();
        assert!(e.to_string().contains("damaged"), "{e}");
    }
}
