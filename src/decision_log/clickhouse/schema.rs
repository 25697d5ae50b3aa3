//! The table and the statements the writer sends: created if missing,
//! one insert a batch, retention by day partitions.

use super::{ClickHouseConfig, quote};
use crate::decision_log::columns;

const DDL_COLUMNS: &str = "id String, ts Int64, door String, client Nullable(String), \
    event_type String, ip String, ua String, affiliate_id String, offer_id String, \
    aff_sub1 Nullable(String), aff_sub2 Nullable(String), aff_sub3 Nullable(String), \
    aff_sub4 Nullable(String), aff_sub5 Nullable(String), country_code Nullable(String), \
    extra Nullable(String), decision String, would_be String, mode String, tags String, \
    tag_mask Int64, blocked_mask Int64, source String, reason String, rules String, \
    rule_mask Int64, ivt String, ivt_category String, elapsed_us Int64, at Int64";

/// The statements that create the database and the table if missing.
pub(super) fn create(c: &ClickHouseConfig) -> [String; 2] {
    let db = format!("CREATE DATABASE IF NOT EXISTS {}", c.database);
    // Partitions are UTC days (dropped whole for retention); the sort
    // key serves the common filters and groups: event type, affiliate,
    // offer, then time, and ends in the id. ReplacingMergeTree: an
    // insert that timed out may still be committed by the server (one
    // that froze and resumed) after the writer sent it again, and the
    // rows of one decision are identical, so merges keep one of them
    // and `FINAL` reads one (18.16 has no insert deduplication for a
    // table that is not replicated; see docs/decision-log.md).
    let table = format!(
        "CREATE TABLE IF NOT EXISTS {} ({DDL_COLUMNS}) ENGINE = ReplacingMergeTree \
         PARTITION BY intDiv(ts, 86400000) \
         ORDER BY (event_type, affiliate_id, offer_id, ts, id)",
        c.qualified()
    );
    [db, table]
}

/// The id index: the table's sort key starts with the event type,
/// affiliate and offer, so a decision looked up by its id alone (an
/// entry, a conversion's click) read a whole day's partition. Beside it,
/// a narrow table ordered by (ts, id) and filled by a materialized view
/// on every insert gives those three for an id in one seek; the read side
/// then seeks the table on its whole key (`query::exec::clickhouse`). A
/// table from before the index is copied into it once.
pub(super) fn ids_index(c: &ClickHouseConfig) -> [String; 3] {
    let ids = c.ids_table();
    [
        format!(
            "CREATE TABLE IF NOT EXISTS {ids} (ts Int64, id String, event_type String, \
             affiliate_id String, offer_id String) ENGINE = ReplacingMergeTree \
             PARTITION BY intDiv(ts, 86400000) ORDER BY (ts, id)"
        ),
        format!(
            "CREATE MATERIALIZED VIEW IF NOT EXISTS {ids}_mv TO {ids} AS SELECT ts, id, \
             event_type, affiliate_id, offer_id FROM {}",
            c.qualified()
        ),
        format!(
            "INSERT INTO {ids} SELECT ts, id, event_type, affiliate_id, offer_id FROM {}",
            c.qualified()
        ),
    ]
}

/// The id index's tables that exist (`<table>_ids`, `<table>_ids_mv`),
/// a name a line.
pub(super) fn ids_index_tables(c: &ClickHouseConfig) -> String {
    format!(
        "SELECT name FROM system.tables WHERE database = {} AND name IN ({}, {}) \
         FORMAT TabSeparated",
        quote(&c.database),
        quote(&format!("{}_ids", c.table)),
        quote(&format!("{}_ids_mv", c.table))
    )
}

/// Columns added since the first release, each with the statement that
/// adds it to a table made before (18.16 has no `ADD COLUMN IF NOT
/// EXISTS`: the writer asks `insert_path::columns` first). `at`, the event's time:
/// earlier rows read their decision's second.
pub(super) fn added_columns(c: &ClickHouseConfig) -> [(&'static str, String); 1] {
    [(
        "at",
        format!(
            "ALTER TABLE {} ADD COLUMN at Int64 DEFAULT intDiv(ts, 1000)",
            c.qualified()
        ),
    )]
}

/// A batch's insert into `target` (the table or its Buffer): the columns
/// in table order, as `RowBinary` rows carry them.
pub(super) fn insert(target: &str) -> String {
    format!(
        "INSERT INTO {target} ({}) FORMAT RowBinary",
        columns::NAMES.join(", ")
    )
}

/// The table's active partitions (UTC days since the epoch), a line each.
pub(super) fn list_partitions(c: &ClickHouseConfig) -> String {
    format!(
        "SELECT DISTINCT partition FROM system.parts WHERE database = {} AND table = {} \
         AND active FORMAT TabSeparated",
        quote(&c.database),
        quote(&c.table)
    )
}

/// Drops a day from the table and from its id index.
pub(super) fn drop_partition(c: &ClickHouseConfig, partition: &str) -> [String; 2] {
    [
        format!("ALTER TABLE {} DROP PARTITION {partition}", c.qualified()),
        format!("ALTER TABLE {} DROP PARTITION {partition}", c.ids_table()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_the_columns_in_order() {
        let names: Vec<&str> = DDL_COLUMNS
            .split(", ")
            .map(|c| c.split_whitespace().next().unwrap())
            .collect();
        assert_eq!(names, columns::NAMES);
    }
}
