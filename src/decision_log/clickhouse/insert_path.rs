//! How a batch reaches the table when many replicas write it: the server's
//! own remedy for many small inserts, chosen by its version.
//!
//! Each insert into a MergeTree makes a part on disk, which background
//! merges then fold together. Twenty replicas each flushing every 500 ms
//! make 40 parts a second, more than merges keep up with on a small
//! server: parts pile up until inserts are delayed (150 active parts in a
//! partition) and then refused ("too many parts", 300). ClickHouse
//! gathers small inserts itself, in one of two ways:
//!
//! - `async_insert` (21.11 on): the INSERT carries `async_insert=1` and
//!   `wait_for_async_insert=1` (the server answers once the gathered rows
//!   are written, so a failure still reaches the writer, which retries).
//! - A `Buffer` table (every release) in front of the table,
//!   `<table>_buffer`, made by the writer with the table: inserts go to
//!   its memory, and each of its [`BUFFER_LAYERS`] layers writes its rows
//!   to the table in one part every few seconds ([`buffer`] has the
//!   thresholds). Reads go through it too (it reads the table plus what
//!   it holds), so a decision is found as soon as it is inserted.
//!
//! `decision_log.clickhouse.insert` picks one (`auto`: by the version the
//! writer reads once when it opens the table).

use std::sync::{Arc, OnceLock};

use serde::Deserialize;

use super::{ClickHouseConfig, quote};

/// `decision_log.clickhouse.insert`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InsertMode {
    /// `async` on a server that has it (21.11 on), `buffer` before.
    Auto,
    /// Each batch straight into the table: a part per batch.
    Direct,
    /// Through the `Buffer` table `<table>_buffer`.
    Buffer,
    /// `async_insert=1, wait_for_async_insert=1` on every INSERT.
    Async,
}

/// The way inserts go, once resolved for a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertPath {
    Direct,
    Buffer,
    Async,
}

/// The first release with `async_insert`.
pub const ASYNC_SINCE: (u32, u32) = (21, 11);

/// `SELECT version()`'s answer (`18.16.1`, `23.8.2.7`) as (major, minor).
pub fn parse_version(text: &str) -> Option<(u32, u32)> {
    let mut parts = text.trim().split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

impl InsertMode {
    /// The path for a server answering `version` to `SELECT version()`
    /// (None: unreadable, taken as a server without `async_insert`).
    pub fn resolve(self, version: Option<(u32, u32)>) -> InsertPath {
        match self {
            InsertMode::Direct => InsertPath::Direct,
            InsertMode::Buffer => InsertPath::Buffer,
            InsertMode::Async => InsertPath::Async,
            InsertMode::Auto => match version {
                Some(v) if v >= ASYNC_SINCE => InsertPath::Async,
                _ => InsertPath::Buffer,
            },
        }
    }

    /// Whether the path depends on the server's version.
    pub fn needs_version(self) -> bool {
        self == InsertMode::Auto
    }
}

impl InsertPath {
    /// The settings an INSERT carries (as URL parameters).
    pub fn settings(self) -> &'static [(&'static str, &'static str)] {
        match self {
            InsertPath::Async => &[("async_insert", "1"), ("wait_for_async_insert", "1")],
            InsertPath::Direct | InsertPath::Buffer => &[],
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            InsertPath::Direct => "direct",
            InsertPath::Buffer => "buffer",
            InsertPath::Async => "async",
        }
    }
}

/// The read side's path, resolved once per reader (the version asked at
/// its first query) and shared by its clones.
#[derive(Debug, Clone, Default)]
pub struct ReadPath(Arc<OnceLock<InsertPath>>);

impl ReadPath {
    pub fn get(&self) -> Option<InsertPath> {
        self.0.get().copied()
    }

    pub fn set(&self, path: InsertPath) {
        let _ = self.0.set(path);
    }
}

/// The statement that reads the server's version.
pub const VERSION: &str = "SELECT version() FORMAT TabSeparated";

/// Layers of the Buffer table: an insert takes the first layer not being
/// written, so a few let replicas insert at once (and one layer's flush
/// does not hold the others); each layer flushes as one part.
pub const BUFFER_LAYERS: u32 = 4;
/// A layer flushes once all of these hold (seconds, rows, bytes)...
pub const BUFFER_MIN: (u32, u32, u32) = (5, 10_000, 10_000_000);
/// ...or as soon as one of these does: a row waits at most 10 s to reach
/// the table (and the id index), and the buffer holds at most
/// `BUFFER_LAYERS` x 64 MB.
pub const BUFFER_MAX: (u32, u32, u32) = (10, 1_000_000, 64_000_000);

/// `<database>.<table>_buffer`.
pub fn buffer_table(c: &ClickHouseConfig) -> String {
    format!("{}.{}_buffer", c.database, c.table)
}

/// The Buffer table in front of the table, with its columns.
pub fn buffer(c: &ClickHouseConfig) -> String {
    let (min_s, min_rows, min_bytes) = BUFFER_MIN;
    let (max_s, max_rows, max_bytes) = BUFFER_MAX;
    format!(
        "CREATE TABLE IF NOT EXISTS {} AS {} ENGINE = Buffer({}, {}, {BUFFER_LAYERS}, \
         {min_s}, {max_s}, {min_rows}, {max_rows}, {min_bytes}, {max_bytes})",
        buffer_table(c),
        c.qualified(),
        c.database,
        c.table
    )
}

/// Drops the Buffer table; ClickHouse writes what it holds to the table
/// first.
pub fn drop_buffer(c: &ClickHouseConfig) -> String {
    format!("DROP TABLE IF EXISTS {}", buffer_table(c))
}

/// Writes what the Buffer table holds to the table now (`OPTIMIZE` of a
/// Buffer flushes it).
pub fn flush_buffer(c: &ClickHouseConfig) -> String {
    format!("OPTIMIZE TABLE {}", buffer_table(c))
}

/// The columns of the table and of its Buffer, `table\tname` a line, in
/// column order.
pub fn columns(c: &ClickHouseConfig) -> String {
    format!(
        "SELECT table, name FROM system.columns WHERE database = {} AND table IN ({}, {}) \
         FORMAT TabSeparated",
        quote(&c.database),
        quote(&c.table),
        quote(&format!("{}_buffer", c.table))
    )
}

/// From [`columns`]' answer: the table's column names and the Buffer's
/// (None when there is no Buffer table).
pub fn split_columns<'a>(
    c: &ClickHouseConfig,
    answer: &'a str,
) -> (Vec<&'a str>, Option<Vec<&'a str>>) {
    let buffer_name = format!("{}_buffer", c.table);
    let (mut table, mut buffer) = (Vec::new(), None::<Vec<&str>>);
    for line in answer.lines() {
        let Some((t, name)) = line.split_once('\t') else {
            continue;
        };
        if t == c.table {
            table.push(name);
        } else if t == buffer_name {
            buffer.get_or_insert_with(Vec::new).push(name);
        }
    }
    (table, buffer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_takes_async_insert_from_21_11_and_a_buffer_before() {
        let auto = |v: &str| InsertMode::Auto.resolve(parse_version(v));
        assert_eq!(auto("18.16.1"), InsertPath::Buffer);
        assert_eq!(auto("21.10.6.2"), InsertPath::Buffer);
        assert_eq!(auto("21.11.2.2"), InsertPath::Async);
        assert_eq!(auto("23.8.2.7\n"), InsertPath::Async);
        assert_eq!(auto("24.3.1.2672"), InsertPath::Async);
        // An answer that is no version: what every release has.
        assert_eq!(auto("Ok."), InsertPath::Buffer);
        assert_eq!(auto(""), InsertPath::Buffer);
    }

    #[test]
    fn an_operator_choice_overrides_the_version() {
        for v in [Some((18, 16)), Some((24, 3)), None] {
            assert_eq!(InsertMode::Direct.resolve(v), InsertPath::Direct);
            assert_eq!(InsertMode::Buffer.resolve(v), InsertPath::Buffer);
            assert_eq!(InsertMode::Async.resolve(v), InsertPath::Async);
        }
    }

    #[test]
    fn only_async_inserts_carry_settings() {
        assert_eq!(
            InsertPath::Async.settings(),
            &[("async_insert", "1"), ("wait_for_async_insert", "1")]
        );
        assert!(InsertPath::Buffer.settings().is_empty());
        assert!(InsertPath::Direct.settings().is_empty());
    }

    #[test]
    fn the_columns_of_the_table_and_its_buffer_are_told_apart() {
        let c = ClickHouseConfig {
            url: "http://127.0.0.1:8123".into(),
            database: "fg".into(),
            table: "decisions".into(),
            user: "default".into(),
            password: crate::secret::Secret::new(""),
            timeout_ms: 1000,
            insert: InsertMode::Auto,
        };
        let (t, b) = split_columns(&c, "decisions\tid\ndecisions\tat\ndecisions_buffer\tid\n");
        assert_eq!((t, b), (vec!["id", "at"], Some(vec!["id"])));
        let (t, b) = split_columns(&c, "decisions\tid\n");
        assert_eq!((t, b), (vec!["id"], None));
        assert!(buffer(&c).contains("ENGINE = Buffer(fg, decisions, 4, 5, 10, 10000"));
    }
}
