//! Reports over the decision log in the 24metrics Fraudshield dialect
//! (`date_start`, `date_end`, `timezone`, `group[]`,
//! `search_fields[]={"term":..,"query":..}`, `count`, `page`), with
//! fraudgate's meaning: conversions are events, rejected is blocked.
//! Every report is a [`Query`]: the HTTP door and the CLI share this.

use jiff::tz::TimeZone;
use serde_json::{Map, Value};

use super::params::{number, php_array_name, time_zone, unknown_parameter};
use super::{Agg, Events, Expr, FIELDS, Field, Op, Query, QueryError, Scalar, Shape, field};
use crate::decision::RuleKind;
use crate::decision_log::IvtClass;
use crate::verdict::Tag;

impl Kind {
    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "fraud" => Some(Kind::Fraud),
            "global" => Some(Kind::Global),
            "interval" => Some(Kind::Interval),
            _ => None,
        }
    }
}

/// The query of a report from its parameters (a raw query string).
pub fn query(kind: Kind, raw: &str) -> Result<Query, QueryError> {
    Ok(build(kind, parse(kind, raw)?))
}

/// Most rows a report page may ask for (`count`): a report is collected
/// and shaped whole before it is answered, so this bounds its memory
/// (the Data API's `/groups` stream, and take up to 1 000 000 a page).
pub const MAX_REPORT_ROWS: u64 = 10_000;

/// Fields a report may group by.
const GROUPS: &[&str] = &[
    "affiliate_id",
    "offer_id",
    "aff_sub1",
    "aff_sub2",
    "aff_sub3",
    "aff_sub4",
    "aff_sub5",
    "country_code",
    "door",
    "event_type",
    "client",
    "ivt",
    "ivt_category",
];

/// Which report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Fraud,
    Global,
    Interval,
}

/// A report's parameters, checked.
struct Params {
    groups: Vec<&'static Field>,
    /// The search terms on fields, then the date range.
    filters: Vec<Expr>,
    /// The search terms on counts and rates.
    having: Vec<Expr>,
    interval: Option<&'static Field>,
    page: u64,
    count: u64,
    tz: TimeZone,
}

fn bad(field: &'static str, message: impl Into<String>) -> QueryError {
    QueryError::new(field, message)
}

fn parse(kind: Kind, raw: &str) -> Result<Params, QueryError> {
    let mut p = Params {
        groups: Vec::new(),
        filters: Vec::new(),
        having: Vec::new(),
        interval: None,
        page: 1,
        count: 100,
        tz: TimeZone::UTC,
    };
    let (mut date_start, mut date_end) = (None, None);
    for (k, v) in form_urlencoded::parse(raw.as_bytes()) {
        match php_array_name(&k) {
            "date_start" => date_start = Some(v.into_owned()),
            "date_end" => date_end = Some(v.into_owned()),
            "timezone" => p.tz = time_zone(&v, "timezone")?,
            "group" | "group[]" => p.groups.push(group(&v)?),
            "search_fields" | "search_fields[]" => match search_field(&v)? {
                Search::Rows(e) => p.filters.push(e),
                Search::Groups(e) => p.having.push(e),
            },
            "time_interval" if kind == Kind::Interval => p.interval = Some(time_interval(&v)?),
            // Fraudshield always sends it; there is one chart type.
            "chart_type" if kind == Kind::Interval => {}
            "count" => p.count = number(&v, "count", 1, MAX_REPORT_ROWS)?,
            "page" => p.page = number(&v, "page", 1, u64::MAX)?,
            // Fraudshield's own: the key (checked by the access layer),
            // the user (one per gate) and the tracker (every tracker).
            "key" | "format" | "api_token" | "user_id" | "tracker_id" => {}
            other => return Err(unknown_parameter(other)),
        }
    }
    if p.groups.len() > 3 {
        return Err(bad("group", "at most 3 groups"));
    }
    if kind == Kind::Interval && p.interval.is_none() {
        return Err(bad(
            "time_interval",
            "time_interval is required (hour, day, week, month, year)",
        ));
    }
    p.filters.extend(date_range(date_start, date_end, &p.tz)?);
    Ok(p)
}

/// A `group[]` value: one of [`GROUPS`].
pub(crate) fn group(v: &str) -> Result<&'static Field, QueryError> {
    let name = v.trim();
    if !GROUPS.contains(&name) {
        return Err(bad(
            "group",
            format!("{name:?}: group by one of {}", GROUPS.join(", ")),
        ));
    }
    Ok(field(name).expect("report groups are fields"))
}

/// What a search term narrows: the rows (a field equals the query) or
/// the groups (a bound on their count or block rate).
enum Search {
    Rows(Expr),
    Groups(Expr),
}

/// A `search_fields[]` value: `{"term": <name>, "query": <value>}`.
fn search_field(v: &str) -> Result<Search, QueryError> {
    let sf: Value = serde_json::from_str(v).map_err(|e| {
        bad(
            "search_fields",
            format!("bad JSON at position {}: {e}", e.column()),
        )
    })?;
    let term = sf["term"].as_str().ok_or_else(|| {
        bad(
            "search_fields",
            "each is {\"term\": <name>, \"query\": <value>}",
        )
    })?;
    let query = search_query(term, &sf["query"])?;
    let (name, op) = match term {
        "min_events" => ("count", Op::Ge),
        "min_block_rate" => ("block_rate", Op::Ge),
        "max_block_rate" => ("block_rate", Op::Le),
        t if field(t).is_some() => return Ok(Search::Rows(cmp(t, Op::Eq, query))),
        t => {
            return Err(bad(
                "search_fields",
                format!(
                    "unknown term {t:?}: min_events, min_block_rate, max_block_rate or a field ({})",
                    FIELDS.iter().map(|f| f.name).collect::<Vec<_>>().join(", ")
                ),
            ));
        }
    };
    if matches!(query, Scalar::Text(_)) {
        return Err(bad(
            "search_fields",
            format!("{term}: query is a number, not {}", sf["query"]),
        ));
    }
    Ok(Search::Groups(cmp(name, op, query)))
}

/// A search term's query: a string or a number.
pub(crate) fn search_query(term: &str, query: &Value) -> Result<Scalar, QueryError> {
    match query {
        Value::String(s) => Ok(Scalar::Text(s.clone())),
        Value::Number(n) => n
            .as_i64()
            .map(Scalar::Int)
            .or_else(|| n.as_f64().map(Scalar::Real))
            .ok_or_else(|| bad("search_fields", "query: number out of range")),
        _ => Err(bad(
            "search_fields",
            format!("{term}: query is a string or a number"),
        )),
    }
}

pub(crate) use super::filter::cmp;

/// A `time_interval` value: the time bucket an interval report groups by.
pub(crate) fn time_interval(v: &str) -> Result<&'static Field, QueryError> {
    let unit = match v {
        "hour" => "hour",
        "day" => "date",
        "week" => "week",
        "month" => "month",
        "year" => "year",
        other => {
            return Err(bad(
                "time_interval",
                format!("{other:?}: use hour, day, week, month or year"),
            ));
        }
    };
    Ok(field(unit).expect("time buckets are fields"))
}

/// The filters of `date_start..=date_end` (days in `tz`; today when
/// absent).
pub(crate) fn date_range(
    date_start: Option<String>,
    date_end: Option<String>,
    tz: &TimeZone,
) -> Result<[Expr; 2], QueryError> {
    let (start, end) = days(date_start, date_end, tz)?;
    Ok([
        cmp("date", Op::Ge, Scalar::Text(start.to_string())),
        cmp("date", Op::Le, Scalar::Text(end.to_string())),
    ])
}

/// The days `date_start..=date_end` (yyyy-mm-dd; today in `tz` when
/// absent), checked.
pub(crate) fn days(
    date_start: Option<String>,
    date_end: Option<String>,
    tz: &TimeZone,
) -> Result<(jiff::civil::Date, jiff::civil::Date), QueryError> {
    let today = jiff::Zoned::now().with_time_zone(tz.clone()).date();
    let date = |name, d: Option<String>| match d {
        None => Ok(today),
        Some(d) => d
            .parse::<jiff::civil::Date>()
            .map_err(|_| bad(name, format!("{d:?}: use yyyy-mm-dd"))),
    };
    let start = date("date_start", date_start)?;
    let end = date("date_end", date_end)?;
    if end < start {
        return Err(bad(
            "date_end",
            format!("{end} is before date_start {start}"),
        ));
    }
    Ok((start, end))
}

/// The aggregates every report row carries.
fn base_aggs(kind: Kind) -> Vec<Agg> {
    let mut aggs = vec![
        Agg::Count,
        Agg::Allowed,
        Agg::Blocked,
        Agg::BlockRate,
        Agg::Ivt(IvtClass::Givt),
        Agg::Ivt(IvtClass::Sivt),
    ];
    if kind == Kind::Fraud {
        aggs.extend(Tag::ALL.map(Agg::BlockedByTag));
        aggs.extend(
            RuleKind::ALL
                .into_iter()
                .filter(|k| *k != RuleKind::AllowList)
                .map(Agg::BlockedByRule),
        );
    }
    aggs
}

fn build(kind: Kind, p: Params) -> Query {
    let mut groups = Vec::new();
    if let Some(i) = p.interval {
        groups.push(i);
    }
    groups.extend(p.groups.iter().copied());
    let mut sort = match (kind, p.interval) {
        (Kind::Interval, Some(i)) => vec![(i.name.to_owned(), false)],
        _ => vec![("blocked".to_owned(), true), ("count".to_owned(), true)],
    };
    // Ties in group order: pages are stable and every store agrees.
    sort.extend(
        groups
            .iter()
            .filter(|g| !sort.iter().any(|(s, _)| s == g.name))
            .map(|g| (g.name.to_owned(), false))
            .collect::<Vec<_>>(),
    );
    Query {
        events: Events::All,
        shape: Shape::Groups {
            groups,
            aggs: base_aggs(kind),
            having: (!p.having.is_empty()).then_some(Expr::And(p.having)),
        },
        filter: Some(Expr::And(p.filters)),
        sort,
        page: p.page,
        page_size: p.count,
        tz: p.tz,
    }
}

/// One report row as Fraudshield-style JSON.
pub fn shape_row(kind: Kind, row: Map<String, Value>) -> Value {
    let mut out = Map::new();
    let mut reasons = Map::new();
    for (k, v) in row {
        if let Some(tag) = k.strip_prefix("blocked_by_rule_") {
            if v.as_i64().unwrap_or(0) > 0 {
                reasons.insert(format!("rule:{tag}"), v);
            }
        } else if let Some(tag) = k.strip_prefix("blocked_by_") {
            if v.as_i64().unwrap_or(0) > 0 {
                let wire = Tag::from_config_name(tag)
                    .map_or_else(|| tag.to_owned(), |t| t.as_str().to_owned());
                reasons.insert(wire, v);
            }
        } else {
            let name = match k.as_str() {
                "count" => "events".to_owned(),
                "date" | "hour" | "week" | "month" | "year" if kind == Kind::Interval => {
                    "intervals".to_owned()
                }
                _ => k.clone(),
            };
            out.insert(name, v);
        }
    }
    if kind == Kind::Fraud {
        out.insert("reasons".into(), Value::Object(reasons));
    }
    Value::Object(out)
}

/// The columns of shaped report rows, in a stable order: the interval and
/// the groups first, then the counts, then the reasons.
pub fn columns(rows: &[Map<String, Value>]) -> Vec<String> {
    const COUNTS: &[&str] = &[
        "events",
        "allowed",
        "blocked",
        "block_rate",
        "ivt_givt",
        "ivt_sivt",
        "reasons",
    ];
    let has = |c: &str| rows.iter().any(|r| r.contains_key(c));
    std::iter::once("intervals")
        .chain(GROUPS.iter().copied())
        .chain(COUNTS.iter().copied())
        .filter(|c| has(c))
        .map(str::to_owned)
        .collect()
}

/// A cell of a report table: text as it is, anything else as JSON.
pub fn cell(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}
