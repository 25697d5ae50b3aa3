//! The query model as SQL, for any store: the statement's shape lives
//! here once, and a [`Dialect`] supplies what differs (how a value goes
//! in, time buckets, aggregates, the row source). Names come only from
//! the field catalogue; every value the caller gave goes through
//! [`Dialect::value`]: a bound parameter in SQLite, a literal escaped by
//! the client in ClickHouse (which has no server-side parameters in the
//! releases fraudgate supports).

use super::{
    Agg, Column, Events, Expr, Field, Kind, Op, Query, QueryError, Scalar, Shape, TimeUnit,
    local_ms,
};
use crate::decision::RuleKind;
use crate::verdict::Tag;

/// A value of the caller's, typed for the column it is compared with.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Int(i64),
    Real(f64),
    Text(String),
}

/// What differs between stores.
pub trait Dialect {
    /// Hands a caller's value to the statement; returns the SQL that
    /// stands for it.
    fn value(&mut self, v: Value) -> String;
    /// The calendar bucket of a time column in the query's zone, as the
    /// text `query::bucket` gives: `ts` (the decision's, Unix ms) or `at`
    /// (the event's, Unix seconds).
    fn time(&self, column: &str, unit: TimeUnit) -> String;
    /// Rows where `cond` (SQL) holds.
    fn count_if(&self, cond: &str) -> String;
    /// `100 * blocked / count`, two decimals, 0 over no rows.
    fn block_rate(&self) -> String;
    /// Distinct non-null values of `col`, 0 over no rows.
    fn uniq(&self, col: &str) -> String;
    /// `col & bit != 0`.
    fn has_bit(&self, col: &str, bit: u64) -> String;
    /// The text of member `key` (a fixed field name, never a caller's
    /// value) of the `extra` JSON column; empty when absent.
    fn extra_text(&self, key: &str) -> String;
    /// Sorting, with NULLs last (ClickHouse's order).
    fn order(&self, name: &str, desc: bool) -> String;
    /// `sql LIKE pattern`, where `pattern` (SQL standing for a caller's
    /// value) is in the form `filter::like_pattern` checked: a backslash
    /// escapes `%`, `_` and itself. ClickHouse reads that form natively.
    fn like(&self, sql: &str, pattern: &str) -> String {
        format!("({sql} LIKE {pattern})")
    }
    /// A column that orders rows by `ts` (and, within one `ts`, in an
    /// order of its own) and that the store can seek on, when it has one
    /// besides `ts` (SQLite's compact days keep no index on `ts`: their
    /// blocks are found by a time key).
    fn time_key(&self) -> Option<&'static str> {
        None
    }
    /// The bound on [`Dialect::time_key`] that `ts <op> ms` implies,
    /// put beside it so the store seeks.
    fn time_key_bound(&self, _op: Op, _ms: i64) -> Option<String> {
        None
    }
    /// Events counted.
    fn count(&self) -> String {
        "count(*)".into()
    }
    /// Mean `elapsed_us`, one decimal.
    fn avg_elapsed(&self) -> String {
        "round(avg(elapsed_us), 1)".into()
    }
}

/// The SQL expression of a field.
pub fn column(d: &impl Dialect, f: &Field) -> String {
    match (f.kind, f.column) {
        (Kind::Time(u), Column::Own(c)) => d.time(c, u),
        (_, Column::Own(c)) => c.to_owned(),
        (_, Column::Extra(key)) => d.extra_text(key),
    }
}

pub fn agg_sql(d: &impl Dialect, a: &Agg) -> String {
    match a {
        Agg::Count => d.count(),
        Agg::Blocked => d.count_if("would_be = 'block'"),
        Agg::Allowed => d.count_if("would_be = 'allow'"),
        Agg::BlockRate => d.block_rate(),
        Agg::Any(f) => format!("min({})", column(d, f)),
        Agg::Uniq(f) => d.uniq(&column(d, f)),
        Agg::Tag(t) => d.count_if(&d.has_bit("tag_mask", u64::from(t.bit()))),
        Agg::BlockedByTag(t) => d.count_if(&d.has_bit("blocked_mask", u64::from(t.bit()))),
        Agg::Rule(k) => d.count_if(&d.has_bit("rule_mask", 1u64 << (*k as u32))),
        Agg::BlockedByRule(k) => d.count_if(&format!(
            "{} AND would_be = 'block'",
            d.has_bit("rule_mask", 1u64 << (*k as u32))
        )),
        Agg::Ivt(c) => d.count_if(&format!("ivt = '{}'", c.as_str())),
        Agg::AvgElapsedUs => d.avg_elapsed(),
    }
}

/// A caller's value for a column: numeric columns take numbers only, so
/// both stores compare the same way (and a typo is a 400, not an empty
/// answer).
fn typed(v: &Scalar, numeric: bool, name: &str, param: &'static str) -> Result<Value, QueryError> {
    Ok(match (v, numeric) {
        (Scalar::Int(i), true) => Value::Int(*i),
        (Scalar::Real(r), true) => Value::Real(*r),
        (Scalar::Text(t), true) => {
            let t = t.trim();
            match (t.parse::<i64>(), t.parse::<f64>()) {
                (Ok(i), _) => Value::Int(i),
                (_, Ok(r)) if r.is_finite() => Value::Real(r),
                _ => {
                    return Err(QueryError::new(
                        param,
                        format!("{name} compares with numbers, not {t:?}"),
                    ));
                }
            }
        }
        (v, false) => Value::Text(text_of(v)),
    })
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
    d: &mut impl Dialect,
    e: &Expr,
    q: &Query,
    scope: &Scope<'_>,
    out: &mut String,
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
                expr_sql(d, o, q, scope, out)?;
            }
            out.push(')');
        }
        Expr::Not(inner) => {
            out.push_str("(NOT ");
            expr_sql(d, inner, q, scope, out)?;
            out.push(')');
        }
        Expr::Cmp { name, op, values } => {
            if let Scope::Rows = scope
                && let Some(sql) = special(d, name, *op, &values[0], q, param)?
            {
                out.push_str(&sql);
                return Ok(());
            }
            let (sql, numeric) = resolve(d, name, scope, param)?;
            if *op == Op::In {
                out.push_str(&format!("({sql} IN ("));
                for (i, v) in values.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    let v = typed(v, numeric, name, param)?;
                    out.push_str(&d.value(v));
                }
                out.push_str("))");
            } else if *op == Op::Like {
                if numeric {
                    return Err(QueryError::new(
                        param,
                        format!("{name}_like: {name} is a number; _like matches text"),
                    ));
                }
                let v = d.value(Value::Text(text_of(&values[0])));
                out.push_str(&d.like(&sql, &v));
            } else {
                let v = typed(&values[0], numeric, name, param)?;
                let key = match (&v, scope) {
                    (Value::Int(ms), Scope::Rows) if name == "ts" => d.time_key_bound(*op, *ms),
                    _ => None,
                };
                let v = d.value(v);
                match key {
                    Some(k) => out.push_str(&format!("({sql} {} {v} AND {k})", op.sql())),
                    None => out.push_str(&format!("({sql} {} {v})", op.sql())),
                }
            }
        }
    }
    Ok(())
}

/// `ts <op> ms` (a time computed here, not caller text), with the bound
/// on the store's time key it implies.
fn ts_cmp(d: &impl Dialect, op: Op, ms: i64) -> String {
    match d.time_key_bound(op, ms) {
        Some(k) => format!("(ts {} {ms} AND {k})", op.sql()),
        None => format!("(ts {} {ms})", op.sql()),
    }
}

/// Comparisons with a form of their own: `date_*` bounds in the query's
/// zone become bounds on `ts` (the decision's time: integers computed
/// here, not caller text), `datetime_*` bounds on `at` (the event's), and
/// `tag` / `rule` test a bit of their masks.
fn special(
    d: &impl Dialect,
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
        if name == "datetime" {
            // The event's time, in whole seconds: [start, next) as above.
            // An event time is at most a day past its decision's (checked
            // on the way in), so a lower bound on it bounds the decision's
            // time too, and the store seeks (an upper one does not: an
            // event may be posted late).
            let ahead = i64::try_from(crate::event::MAX_CLOCK_AHEAD_S).unwrap_or(0) * 1000;
            let seek = |ms: i64| ts_cmp(d, Op::Ge, ms.saturating_sub(ahead));
            let (s, n) = (start.div_euclid(1000), next.div_euclid(1000));
            return Ok(Some(match op {
                Op::Ge => format!("(at >= {s} AND {})", seek(start)),
                Op::Gt => format!("(at >= {n} AND {})", seek(next)),
                Op::Le => format!("(at < {n})"),
                _ => format!("(at < {s})"),
            }));
        }
        return Ok(Some(match op {
            Op::Ge => ts_cmp(d, Op::Ge, start),
            Op::Gt => ts_cmp(d, Op::Ge, next),
            Op::Le => ts_cmp(d, Op::Lt, next),
            _ => ts_cmp(d, Op::Lt, start),
        }));
    }
    if name == "tag" || name == "rule" {
        let v = text_of(value);
        let (col, bit) = if name == "tag" {
            let t = Tag::from_config_name(&v)
                .or_else(|| Tag::from_wire(&v))
                .ok_or_else(|| QueryError::new(param, format!("unknown tag {v:?}")))?;
            ("tag_mask", u64::from(t.bit()))
        } else {
            let k = RuleKind::ALL
                .into_iter()
                .find(|k| k.as_str() == v)
                .ok_or_else(|| QueryError::new(param, format!("unknown rule kind {v:?}")))?;
            ("rule_mask", 1u64 << (k as u32))
        };
        let has = d.has_bit(col, bit);
        return match op {
            Op::Eq => Ok(Some(format!("({has})"))),
            Op::Ne => Ok(Some(format!("(NOT {has})"))),
            _ => Err(QueryError::new(
                param,
                format!("{name} supports equality and _ne only"),
            )),
        };
    }
    Ok(None)
}

/// Whether a pre-aggregated source with one row per UTC hour and
/// combination of `dims` (a count `n` and a sum `elapsed_sum` each) gives
/// `q` exactly the answer the rows give: a grouped query whose groups,
/// `any_`/`uniq_` fields and filter name only those dimensions, calendar
/// buckets (not `datetime`) in a zone whose offsets are whole hours, and
/// `date`/`datetime` bounds that fall on whole hours.
pub fn rollup_answers(q: &Query, dims: &[&str]) -> bool {
    let Shape::Groups {
        groups,
        aggs,
        having,
    } = &q.shape
    else {
        return false;
    };
    let hourly_zone = whole_hour_zone(&q.tz);
    let field_ok = |f: &Field| match f.kind {
        Kind::Time(u) => u != TimeUnit::Datetime && hourly_zone,
        _ => matches!(f.column, Column::Own(c) if dims.contains(&c)),
    };
    let agg_ok = |a: &Agg| match a {
        Agg::Any(f) | Agg::Uniq(f) => field_ok(f),
        _ => true,
    };
    groups.iter().all(|f| field_ok(f))
        && aggs.iter().all(agg_ok)
        // A `having` may name aggregates that are not fields.
        && having
            .as_ref()
            .is_none_or(|h| having_rolls_up(h, groups, &agg_ok))
        && q.filter
            .as_ref()
            .is_none_or(|e| expr_rolls_up(e, q, &field_ok))
}

/// Whether every aggregate a `having` names can be computed from rollups.
fn having_rolls_up(e: &Expr, groups: &[&'static Field], agg_ok: &dyn Fn(&Agg) -> bool) -> bool {
    match e {
        Expr::And(ops) | Expr::Or(ops) => ops.iter().all(|o| having_rolls_up(o, groups, agg_ok)),
        Expr::Not(inner) => having_rolls_up(inner, groups, agg_ok),
        Expr::Cmp { name, .. } => {
            groups.iter().any(|f| f.name == name) || Agg::parse(name).is_ok_and(|a| agg_ok(&a))
        }
    }
}

fn expr_rolls_up(e: &Expr, q: &Query, field_ok: &dyn Fn(&Field) -> bool) -> bool {
    match e {
        Expr::And(ops) | Expr::Or(ops) => ops.iter().all(|o| expr_rolls_up(o, q, field_ok)),
        Expr::Not(inner) => expr_rolls_up(inner, q, field_ok),
        Expr::Cmp { name, op, values } => {
            if name == "tag" || name == "rule" {
                return true;
            }
            if name == "datetime" {
                // The event's time: the rollups keep the decision's.
                return false;
            }
            if name == "date" && matches!(op, Op::Ge | Op::Gt | Op::Le | Op::Lt) {
                // The bounds `special` puts on ts: both on whole hours.
                let v = text_of(&values[0]);
                let Ok(start) = local_ms(&v, &q.tz, "filter") else {
                    return false;
                };
                let on_hour = |ms: i64| ms.rem_euclid(3_600_000) == 0;
                return on_hour(start) && whole_hour_zone(&q.tz);
            }
            super::field(name).is_some_and(field_ok)
        }
    }
}

/// True when `tz` is a whole number of hours off UTC at every instant of
/// the last 400 days and the next 30 (the span a decision log holds), so
/// its calendar buckets start on UTC hours.
fn whole_hour_zone(tz: &jiff::tz::TimeZone) -> bool {
    let now = jiff::Timestamp::now();
    (-400i64..=30).step_by(5).all(|days| {
        let t = now
            .checked_add(jiff::SignedDuration::from_hours(24 * days))
            .unwrap_or(now);
        tz.to_offset(t).seconds() % 3600 == 0
    })
}

/// The SQL of an operand name, and whether it compares as a number.
fn resolve(
    d: &impl Dialect,
    name: &str,
    scope: &Scope<'_>,
    param: &'static str,
) -> Result<(String, bool), QueryError> {
    match scope {
        Scope::Rows => {
            let f = super::field(name).ok_or_else(|| {
                QueryError::new(param, format!("unknown field {name:?} in the expression"))
            })?;
            Ok((column(d, f), f.kind == Kind::Int))
        }
        Scope::Having(groups) => {
            if let Some(f) = groups.iter().find(|f| f.name == name) {
                return Ok((column(d, f), f.kind == Kind::Int));
            }
            let a = Agg::parse(name).map_err(|_| {
                QueryError::new(
                    param,
                    format!("{name:?} is neither a group nor an aggregate"),
                )
            })?;
            Ok((agg_sql(d, &a), !matches!(a, Agg::Any(_))))
        }
    }
}

/// The whole statement for `q` over `source` (a table, or a subquery in
/// parentheses).
pub fn build(q: &Query, d: &mut impl Dialect, source: &str) -> Result<String, QueryError> {
    let from = format!("FROM {source}{}", where_clause(q, d)?);
    let mut text = match &q.shape {
        Shape::List(fields) => select_list(q, d, fields, &from),
        Shape::Groups {
            groups,
            aggs,
            having,
        } => select_groups(q, d, groups, aggs, having.as_ref(), &from)?,
    };
    text.push_str(&order_by(q, d));
    text.push_str(&limit(q, d));
    Ok(text)
}

/// ` WHERE` the event type and the filter, or nothing.
fn where_clause(q: &Query, d: &mut impl Dialect) -> Result<String, QueryError> {
    let mut wheres = Vec::new();
    match q.events {
        Events::Click => wheres.push("event_type = 'click'".to_owned()),
        Events::Impression => wheres.push("event_type = 'impression'".to_owned()),
        Events::Install => wheres.push("event_type = 'install'".to_owned()),
        Events::Custom => wheres.push("event_type = 'custom'".to_owned()),
        Events::All => {}
    }
    if let Some(f) = &q.filter {
        let mut s = String::new();
        expr_sql(d, f, q, &Scope::Rows, &mut s)?;
        wheres.push(s);
    }
    Ok(if wheres.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", wheres.join(" AND "))
    })
}

/// A list's `SELECT`: its fields, and the time column it is ordered by
/// when it names no sort.
fn select_list(q: &Query, d: &impl Dialect, fields: &[&'static Field], from: &str) -> String {
    let mut cols: Vec<String> = fields
        .iter()
        .map(|f| format!("{} AS \"{}\"", column(d, f), f.name))
        .collect();
    if q.sort.is_empty() {
        // A list sorted by a field it does not return still
        // sorts by time.
        cols.push(format!("{} AS \"{HIDDEN}\"", d.time_key().unwrap_or("ts")));
    }
    format!("SELECT {} {from}", cols.join(", "))
}

/// A groups query's `SELECT`: its groups and aggregates, `GROUP BY` and
/// `HAVING`.
fn select_groups(
    q: &Query,
    d: &mut impl Dialect,
    groups: &[&'static Field],
    aggs: &[Agg],
    having: Option<&Expr>,
    from: &str,
) -> Result<String, QueryError> {
    let gcols: Vec<String> = groups.iter().map(|f| column(d, f)).collect();
    let mut cols: Vec<String> = groups
        .iter()
        .map(|f| format!("{} AS \"{}\"", column(d, f), f.name))
        .collect();
    cols.extend(
        aggs.iter()
            .map(|a| format!("{} AS \"{}\"", agg_sql(d, a), a.name())),
    );
    let mut t = format!("SELECT {} {from}", cols.join(", "));
    if !gcols.is_empty() {
        t.push_str(" GROUP BY ");
        t.push_str(&gcols.join(", "));
    }
    if let Some(h) = having {
        let mut s = String::new();
        expr_sql(d, h, q, &Scope::Having(groups), &mut s)?;
        t.push_str(" HAVING ");
        t.push_str(&s);
    }
    Ok(t)
}

/// ` ORDER BY` the sort, newest first for a list that names none; or
/// nothing (groups without a sort).
fn order_by(q: &Query, d: &impl Dialect) -> String {
    let list = matches!(q.shape, Shape::List(_));
    if q.sort.is_empty() {
        return if list {
            format!(" ORDER BY \"{HIDDEN}\" DESC")
        } else {
            String::new()
        };
    }
    let last = q.sort.len() - 1;
    let order: Vec<String> = q
        .sort
        .iter()
        .enumerate()
        .map(|(i, (n, desc))| match d.time_key() {
            // Rows in time order: the time key's order (never NULL).
            // Only as the last key: it breaks ties of one `ts` itself,
            // which would leave a key after it unused.
            Some(k) if list && n == "ts" && i == last => {
                format!("{k} {}", if *desc { "DESC" } else { "ASC" })
            }
            _ => d.order(n, *desc),
        })
        .collect();
    format!(" ORDER BY {}", order.join(", "))
}

/// ` LIMIT .. OFFSET ..` of the page.
fn limit(q: &Query, d: &mut impl Dialect) -> String {
    let offset = (q.page - 1)
        .saturating_mul(q.page_size)
        .min(i64::MAX as u64);
    let limit = d.value(Value::Int(q.page_size as i64));
    let offset = d.value(Value::Int(offset as i64));
    format!(" LIMIT {limit} OFFSET {offset}")
}

/// The columns a list query adds for its default order; never output.
pub const HIDDEN: &str = "__ts";
