//! The query model in SQLite's dialect: every caller's value a bound
//! parameter; calendar buckets in the query's time zone from
//! `fg_time(ts, unit)`, a function the store registers per query (jiff,
//! DST-correct).

use rusqlite::types::Value as SqlValue;

use super::sql::{self, Dialect, Value};
use super::{Op, Query, QueryError, TimeUnit};

/// A statement and its parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Sql {
    pub text: String,
    pub params: Vec<SqlValue>,
}

#[derive(Default)]
struct Sqlite {
    params: Vec<SqlValue>,
    /// Reading the rollups: a row stands for `n` events.
    rollup: bool,
    /// Reading the days' rows, whose time key `_k` orders them in time.
    keyed: bool,
}

impl Dialect for Sqlite {
    fn value(&mut self, v: Value) -> String {
        self.params.push(match v {
            Value::Int(i) => SqlValue::Integer(i),
            Value::Real(r) => SqlValue::Real(r),
            Value::Text(t) => SqlValue::Text(t),
        });
        "?".into()
    }

    fn time(&self, column: &str, unit: TimeUnit) -> String {
        let ms = if column == "at" { "at * 1000" } else { column };
        format!("fg_time({ms}, '{}')", unit.as_str())
    }

    fn count_if(&self, cond: &str) -> String {
        // COALESCE: an empty range answers 0, not null.
        if self.rollup {
            format!("COALESCE(SUM(CASE WHEN {cond} THEN n ELSE 0 END), 0)")
        } else {
            format!("COALESCE(SUM({cond}), 0)")
        }
    }

    fn block_rate(&self) -> String {
        if self.rollup {
            "COALESCE(ROUND(100.0 * SUM(CASE WHEN would_be = 'block' THEN n ELSE 0 END) \
             / SUM(n), 2), 0.0)"
                .into()
        } else {
            "COALESCE(ROUND(100.0 * SUM(would_be = 'block') / COUNT(*), 2), 0.0)".into()
        }
    }

    fn count(&self) -> String {
        if self.rollup {
            "COALESCE(SUM(n), 0)".into()
        } else {
            "count(*)".into()
        }
    }

    fn avg_elapsed(&self) -> String {
        if self.rollup {
            "round(1.0 * SUM(elapsed_sum) / SUM(n), 1)".into()
        } else {
            "round(avg(elapsed_us), 1)".into()
        }
    }

    fn uniq(&self, col: &str) -> String {
        format!("COUNT(DISTINCT {col})")
    }

    fn has_bit(&self, col: &str, bit: u64) -> String {
        format!("(({col} & {bit}) != 0)")
    }

    fn extra_text(&self, key: &str) -> String {
        format!("coalesce(json_extract(extra, '$.{key}'), '')")
    }

    fn time_key(&self) -> Option<&'static str> {
        self.keyed.then_some("_k")
    }

    fn time_key_bound(&self, op: Op, ms: i64) -> Option<String> {
        use crate::decision_log::sqlite::{key_ceil, key_floor};
        Some(match op {
            Op::Ge => format!("_k >= {}", key_floor(ms)),
            Op::Gt => format!("_k >= {}", key_floor(ms.saturating_add(1))),
            Op::Le => format!("_k <= {}", key_ceil(ms)),
            Op::Lt => format!("_k <= {}", key_ceil(ms.saturating_sub(1))),
            Op::Eq => format!("_k BETWEEN {} AND {}", key_floor(ms), key_ceil(ms)),
            _ => return None,
        })
    }

    fn like(&self, sql: &str, pattern: &str) -> String {
        // Without ESCAPE a backslash is an ordinary character to SQLite,
        // while ClickHouse reads it as an escape: this makes both agree.
        format!("({sql} LIKE {pattern} ESCAPE '\\')")
    }

    fn order(&self, name: &str, desc: bool) -> String {
        format!(
            "\"{name}\" {} NULLS LAST",
            if desc { "DESC" } else { "ASC" }
        )
    }
}

/// The time key of a rollup row (which has none of its own): what a
/// day's rows store for the same time (`decision_log::sqlite::schema`).
fn key_from_ts() -> String {
    format!("ts << {} AS _k", crate::decision_log::sqlite::SEQ_BITS)
}

/// The whole statement for `q` over the given days (their views,
/// `d_YYYYMMDD`); over their rollups instead when `rollups` and the
/// rollups answer `q` exactly.
pub fn build(q: &Query, days: &[String], rollups: bool) -> Result<Sql, QueryError> {
    use crate::decision_log::sqlite::{ROLLUP_DIMS, rollup_table};
    let rollup = rollups && !days.is_empty() && sql::rollup_answers(q, &ROLLUP_DIMS);
    let source = if rollup {
        let parts: Vec<String> = days
            .iter()
            .map(|t| {
                format!(
                    "SELECT {ROLLUP_COLUMNS}, {} FROM \"{}\"",
                    key_from_ts(),
                    rollup_table(t)
                )
            })
            .collect();
        format!("({})", parts.join(" UNION ALL "))
    } else if days.is_empty() {
        // No data yet: an empty relation with the same columns.
        format!("(SELECT {EMPTY_COLUMNS} FROM (SELECT 1) WHERE 0)")
    } else {
        let parts: Vec<String> = days
            .iter()
            .map(|t| format!("SELECT * FROM \"{t}\""))
            .collect();
        format!("({})", parts.join(" UNION ALL "))
    };
    let mut d = Sqlite {
        rollup,
        keyed: !rollup && !days.is_empty(),
        ..Sqlite::default()
    };
    let text = sql::build(q, &mut d, &source)?;
    Ok(Sql {
        text,
        params: d.params,
    })
}

/// A rollup's columns as the rows' names (NULL stored as '').
const ROLLUP_COLUMNS: &str = "ts, door, NULLIF(client, '') AS client, event_type, affiliate_id, \
    offer_id, NULLIF(country_code, '') AS country_code, decision, would_be, mode, tags, tag_mask, \
    blocked_mask, source, reason, rule_mask, ivt, ivt_category, n, elapsed_sum";

/// The columns of an empty source (a store with no day yet), in the
/// order of a day's view (`decision_log::sqlite::schema`).
const EMPTY_COLUMNS: &str = "'' AS id, 0 AS ts, '' AS door, '' AS client, '' AS event_type, \
    '' AS ip, '' AS ua, '' AS affiliate_id, '' AS offer_id, '' AS aff_sub1, '' AS aff_sub2, \
    '' AS aff_sub3, '' AS aff_sub4, '' AS aff_sub5, '' AS country_code, '' AS extra, \
    '' AS decision, '' AS would_be, '' AS mode, '' AS tags, 0 AS tag_mask, 0 AS blocked_mask, \
    '' AS source, '' AS reason, '' AS rules, 0 AS rule_mask, '' AS ivt, '' AS ivt_category, \
    0 AS elapsed_us, 0 AS at, 0 AS _k";
