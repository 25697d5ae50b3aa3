//! The query model in SQLite's dialect. Every value the caller gave is a
//! bound parameter; names come only from the field catalogue. Calendar
//! buckets in the query's time zone come from `fg_time(ts, unit)`, a
//! function the store registers per query (jiff, DST-correct).

use rusqlite::types::Value as SqlValue;

use super::{Agg, Events, Expr, Field, Kind, Op, Query, QueryError, Scalar, Shape, local_ms};
use crate::rules::RuleKind;
use crate::verdict::Tag;

/// A statement and its parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Sql {
    pub text: String,
    pub params: Vec<SqlValue>,
}

/// The SQL expression of a field.
fn column(f: &Field) -> String {
    match f.kind {
        Kind::Time(u) => format!("fg_time(ts, '{}')", u.as_str()),
        _ => f.name.to_owned(),
    }
}

fn agg_sql(a: &Agg) -> String {
    match a {
        Agg::Count => "COUNT(*)".into(),
        // COALESCE: an empty range answers 0, not null.
        Agg::Blocked => "COALESCE(SUM(would_be = 'block'), 0)".into(),
        Agg::Allowed => "COALESCE(SUM(would_be = 'allow'), 0)".into(),
        Agg::BlockRate => {
            "COALESCE(ROUND(100.0 * SUM(would_be = 'block') / COUNT(*), 2), 0.0)".into()
        }
        Agg::Any(f) => format!("MIN({})", column(f)),
        Agg::Uniq(f) => format!("COUNT(DISTINCT {})", column(f)),
        Agg::Tag(t) => format!("COALESCE(SUM((tag_mask & {}) != 0), 0)", t.bit()),
        Agg::BlockedByTag(t) => format!("COALESCE(SUM((blocked_mask & {}) != 0), 0)", t.bit()),
        Agg::Rule(k) => format!(
            "COALESCE(SUM((rule_mask & {}) != 0), 0)",
            1u32 << (*k as u32)
        ),
        Agg::BlockedByRule(k) => format!(
            "COALESCE(SUM((rule_mask & {}) != 0 AND would_be = 'block'), 0)",
            1u32 << (*k as u32)
        ),
        Agg::Ivt(c) => format!("COALESCE(SUM(ivt = '{}'), 0)", c.as_str()),
        Agg::AvgElapsedUs => "ROUND(AVG(elapsed_us), 1)".into(),
    }
}

fn bind(params: &mut Vec<SqlValue>, v: &Scalar, numeric: bool) -> Result<(), QueryError> {
    // Numeric columns compare as numbers, others as the text given.
    params.push(match (v, numeric) {
        (Scalar::Int(i), true) => SqlValue::Integer(*i),
        (Scalar::Real(r), true) => SqlValue::Real(*r),
        (Scalar::Text(t), true) => match t.trim().parse::<i64>() {
            Ok(i) => SqlValue::Integer(i),
            Err(_) => SqlValue::Text(t.clone()),
        },
        (v, false) => SqlValue::Text(text_of(v)),
    });
    Ok(())
}

/// Where operand names are resolved: row fields for `filter`, output
/// columns (groups and aggregates) for `having`.
enum Scope<'a> {
    Rows,
    Having(&'a [&'static Field]),
}

fn text_of(v: &Scalar) -> String {
    match v {
        Scalar::Text(t) => t.clone(),
        Scalar::Int(i) => i.to_string(),
        Scalar::Real(r) => r.to_string(),
    }
}

fn expr_sql(
    e: &Expr,
    q: &Query,
    scope: &Scope<'_>,
    out: &mut String,
    params: &mut Vec<SqlValue>,
) -> Result<(), QueryError> {
    let param = match scope {
        Scope::Rows => "filter",
        Scope::Having(..) => "having",
    };
    match e {
        Expr::And(ops) | Expr::Or(ops) => {
            let joiner = if matches!(e, Expr::And(_)) {
                " AND "
            } else {
                " OR "
            };
            out.push('(');
            for (i, o) in ops.iter().enumerate() {
                if i > 0 {
                    out.push_str(joiner);
                }
                expr_sql(o, q, scope, out, params)?;
            }
            out.push(')');
        }
        Expr::Not(inner) => {
            out.push_str("(NOT ");
            expr_sql(inner, q, scope, out, params)?;
            out.push(')');
        }
        Expr::Cmp { name, op, values } => {
            if let Scope::Rows = scope {
                if let Some(sql) = special(name, *op, &values[0], q, param)? {
                    out.push_str(&sql);
                    return Ok(());
                }
            }
            let (sql, numeric) = resolve(name, scope, param)?;
            if *op == Op::In {
                out.push_str(&format!("({sql} IN ("));
                for (i, v) in values.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    out.push('?');
                    bind(params, v, numeric)?;
                }
                out.push_str("))");
            } else {
                out.push_str(&format!("({sql} {} ?)", op.sql()));
                bind(params, &values[0], numeric)?;
            }
        }
    }
    Ok(())
}

/// Comparisons with a form of their own: `date_*` / `datetime_*` bounds
/// in the query's zone become bounds on `ts` (integers computed here, not
/// caller text), and `tag` / `rule` test a bit of their masks.
fn special(
    name: &str,
    op: Op,
    value: &Scalar,
    q: &Query,
    param: &'static str,
) -> Result<Option<String>, QueryError> {
    if matches!(name, "date" | "datetime") && matches!(op, Op::Ge | Op::Gt | Op::Le | Op::Lt) {
        let v = text_of(value);
        let start = local_ms(&v, &q.tz, param)?;
        // The named day or second is [start, next).
        let next = if name == "date" {
            let d: jiff::civil::Date = v
                .trim()
                .parse()
                .map_err(|_| QueryError::new(param, format!("{v:?}: use YYYY-MM-DD")))?;
            let d = d
                .tomorrow()
                .map_err(|e| QueryError::new(param, e.to_string()))?;
            local_ms(&d.to_string(), &q.tz, param)?
        } else {
            start + 1000
        };
        return Ok(Some(match op {
            Op::Ge => format!("(ts >= {start})"),
            Op::Gt => format!("(ts >= {next})"),
            Op::Le => format!("(ts < {next})"),
            _ => format!("(ts < {start})"),
        }));
    }
    if name == "tag" || name == "rule" {
        let v = text_of(value);
        let (col, bit) = if name == "tag" {
            let t = Tag::from_config_name(&v)
                .or_else(|| Tag::from_wire(&v))
                .ok_or_else(|| QueryError::new(param, format!("unknown tag {v:?}")))?;
            ("tag_mask", u32::from(t.bit()))
        } else {
            let k = RuleKind::ALL
                .into_iter()
                .find(|k| k.as_str() == v)
                .ok_or_else(|| QueryError::new(param, format!("unknown rule kind {v:?}")))?;
            ("rule_mask", 1u32 << (k as u32))
        };
        let test = match op {
            Op::Eq => "!=",
            Op::Ne => "=",
            _ => {
                return Err(QueryError::new(
                    param,
                    format!("{name} supports equality and _ne only"),
                ));
            }
        };
        return Ok(Some(format!("(({col} & {bit}) {test} 0)")));
    }
    Ok(None)
}

/// The SQL of an operand name, and whether it compares as a number.
fn resolve(
    name: &str,
    scope: &Scope<'_>,
    param: &'static str,
) -> Result<(String, bool), QueryError> {
    match scope {
        Scope::Rows => {
            let f = super::field(name).ok_or_else(|| {
                QueryError::new(param, format!("unknown field {name:?} in the expression"))
            })?;
            Ok((column(f), f.kind == Kind::Int))
        }
        Scope::Having(groups) => {
            if let Some(f) = groups.iter().find(|f| f.name == name) {
                return Ok((column(f), f.kind == Kind::Int));
            }
            let a = Agg::parse(name).map_err(|_| {
                QueryError::new(
                    param,
                    format!("{name:?} is neither a group nor an aggregate"),
                )
            })?;
            Ok((agg_sql(&a), !matches!(a, Agg::Any(_))))
        }
    }
}

/// The whole statement for `q` over the given day tables.
pub fn build(q: &Query, tables: &[String]) -> Result<Sql, QueryError> {
    let mut params = Vec::new();
    let source = if tables.is_empty() {
        // No data yet: an empty relation with the same columns.
        format!("(SELECT {} FROM (SELECT 1) WHERE 0)", EMPTY_COLUMNS)
    } else {
        let parts: Vec<String> = tables
            .iter()
            .map(|t| format!("SELECT * FROM \"{t}\""))
            .collect();
        format!("({})", parts.join(" UNION ALL "))
    };
    let mut wheres = Vec::new();
    match q.events {
        Events::Click => wheres.push("event_type = 'click'".to_owned()),
        Events::Impression => wheres.push("event_type = 'impression'".to_owned()),
        Events::All => {}
    }
    if let Some(f) = &q.filter {
        let mut s = String::new();
        expr_sql(f, q, &Scope::Rows, &mut s, &mut params)?;
        wheres.push(s);
    }
    let where_sql = if wheres.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", wheres.join(" AND "))
    };
    let mut text = match &q.shape {
        Shape::List(fields) => {
            let cols: Vec<String> = fields
                .iter()
                .map(|f| format!("{} AS \"{}\"", column(f), f.name))
                .collect();
            format!("SELECT {} FROM {source} AS e{where_sql}", cols.join(", "))
        }
        Shape::Groups {
            groups,
            aggs,
            having,
        } => {
            let gcols: Vec<String> = groups.iter().map(|f| column(f)).collect();
            let mut cols: Vec<String> = groups
                .iter()
                .map(|f| format!("{} AS \"{}\"", column(f), f.name))
                .collect();
            cols.extend(
                aggs.iter()
                    .map(|a| format!("{} AS \"{}\"", agg_sql(a), a.name())),
            );
            let mut t = format!("SELECT {} FROM {source} AS e{where_sql}", cols.join(", "));
            if !gcols.is_empty() {
                t.push_str(" GROUP BY ");
                t.push_str(&gcols.join(", "));
            }
            if let Some(h) = having {
                let mut s = String::new();
                expr_sql(h, q, &Scope::Having(groups), &mut s, &mut params)?;
                t.push_str(" HAVING ");
                t.push_str(&s);
            }
            t
        }
    };
    let order: Vec<String> = if q.sort.is_empty() {
        match &q.shape {
            Shape::List(_) => vec!["ts DESC".into()],
            Shape::Groups { .. } => vec![],
        }
    } else {
        q.sort
            .iter()
            .map(|(name, desc)| format!("\"{name}\" {}", if *desc { "DESC" } else { "ASC" }))
            .collect()
    };
    if !order.is_empty() {
        // A list sorted by a field it does not return still sorts by ts.
        if matches!(q.shape, Shape::List(_)) && q.sort.is_empty() {
            text = text.replacen(" FROM ", ", ts AS \"__ts\" FROM ", 1);
            text.push_str(" ORDER BY \"__ts\" DESC");
        } else {
            text.push_str(" ORDER BY ");
            text.push_str(&order.join(", "));
        }
    }
    text.push_str(" LIMIT ? OFFSET ?");
    params.push(SqlValue::Integer(q.page_size as i64));
    params.push(SqlValue::Integer(
        ((q.page - 1).saturating_mul(q.page_size)) as i64,
    ));
    Ok(Sql { text, params })
}

/// The columns of an empty source (a store with no day table yet).
const EMPTY_COLUMNS: &str = "'' AS id, 0 AS ts, '' AS door, '' AS client, '' AS event_type, \
    '' AS ip, '' AS ua, '' AS affiliate_id, '' AS offer_id, '' AS aff_sub1, '' AS aff_sub2, \
    '' AS aff_sub3, '' AS aff_sub4, '' AS aff_sub5, '' AS country_code, '' AS extra, \
    '' AS decision, '' AS would_be, '' AS mode, '' AS tags, 0 AS tag_mask, 0 AS blocked_mask, \
    '' AS source, '' AS reason, '' AS rules, 0 AS rule_mask, '' AS ivt, '' AS ivt_category, \
    0 AS elapsed_us";
