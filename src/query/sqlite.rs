//! The query model in SQLite's dialect: every caller's value a bound
//! parameter; calendar buckets in the query's time zone from
//! `fg_time(ts, unit)`, a function the store registers per query (jiff,
//! DST-correct).

use rusqlite::types::Value as SqlValue;

use super::sql::{self, Dialect, Value};
use super::{Query, QueryError, TimeUnit};

/// A statement and its parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Sql {
    pub text: String,
    pub params: Vec<SqlValue>,
}

#[derive(Default)]
struct Sqlite {
    params: Vec<SqlValue>,
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

    fn time(&self, unit: TimeUnit) -> String {
        format!("fg_time(ts, '{}')", unit.as_str())
    }

    fn count_if(&self, cond: &str) -> String {
        // COALESCE: an empty range answers 0, not null.
        format!("COALESCE(SUM({cond}), 0)")
    }

    fn block_rate(&self) -> String {
        "COALESCE(ROUND(100.0 * SUM(would_be = 'block') / COUNT(*), 2), 0.0)".into()
    }

    fn uniq(&self, col: &str) -> String {
        format!("COUNT(DISTINCT {col})")
    }

    fn has_bit(&self, col: &str, bit: u64) -> String {
        format!("(({col} & {bit}) != 0)")
    }

    fn order(&self, name: &str, desc: bool) -> String {
        format!(
            "\"{name}\" {} NULLS LAST",
            if desc { "DESC" } else { "ASC" }
        )
    }
}

/// The whole statement for `q` over the given day tables.
pub fn build(q: &Query, tables: &[String]) -> Result<Sql, QueryError> {
    let source = if tables.is_empty() {
        // No data yet: an empty relation with the same columns.
        format!("(SELECT {EMPTY_COLUMNS} FROM (SELECT 1) WHERE 0)")
    } else {
        let parts: Vec<String> = tables
            .iter()
            .map(|t| format!("SELECT * FROM \"{t}\""))
            .collect();
        format!("({})", parts.join(" UNION ALL "))
    };
    let mut d = Sqlite::default();
    let text = sql::build(q, &mut d, &source)?;
    Ok(Sql {
        text,
        params: d.params,
    })
}

/// The columns of an empty source (a store with no day table yet).
const EMPTY_COLUMNS: &str = "'' AS id, 0 AS ts, '' AS door, '' AS client, '' AS event_type, \
    '' AS ip, '' AS ua, '' AS affiliate_id, '' AS offer_id, '' AS aff_sub1, '' AS aff_sub2, \
    '' AS aff_sub3, '' AS aff_sub4, '' AS aff_sub5, '' AS country_code, '' AS extra, \
    '' AS decision, '' AS would_be, '' AS mode, '' AS tags, 0 AS tag_mask, 0 AS blocked_mask, \
    '' AS source, '' AS reason, '' AS rules, 0 AS rule_mask, '' AS ivt, '' AS ivt_category, \
    0 AS elapsed_us";
