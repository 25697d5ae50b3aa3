//! The embedded store: one SQLite database under `decision_log.path`
//! (WAL, `synchronous = NORMAL`), one compact day per UTC day, read
//! through its view `d_YYYYMMDD` (`schema`, written by `compact`). Retention drops whole days,
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

mod block;
mod compact;
mod dictionary;
mod rollup;
mod rows;
pub mod schema;
#[cfg(test)]
mod tests;
mod vtab;
mod write;

use super::LogError;
pub use schema::{
    FILE, ROLLUP_DIMS, ROLLUP_SCHEMA, SEQ_BITS, day_table, key_ceil, key_floor, list_days,
    rollup_table,
};
pub use vtab::register;
pub use write::{WAL_LIMIT_BYTES, Writer};

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
