//! Reports over the decision log in the 24metrics Fraudshield dialect
//! (`date_start`, `date_end`, `timezone`, `group[]`,
//! `search_fields[]={"term":..,"query":..}`, `count`, `page`), with
//! fraudgate's meaning: conversions are events, rejected is blocked.
//! Every report is a [`Query`] over the same store as the Data API.
//!
//! - `GET /v1/reports/fraud`: up to 3 groups; per group events, allowed,
//!   blocked, block_rate, the MRC classes and a reasons histogram (which
//!   tags and rules blocked how much); `min_events`, `min_block_rate`,
//!   `max_block_rate` search terms.
//! - `GET /v1/reports/global`: totals per group (or overall).
//! - `GET /v1/reports/interval`: per `time_interval` (hour, day, week,
//!   month, year in `timezone`, DST-correct), optionally per group.
//! - `GET /v1/reports/entry/{id}`: one decision with everything recorded.
//!
//! `format=csv` answers the flat rows as CSV.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::AppState;
use super::data::{Format, query_error, stream};
use super::error::ApiError;
use crate::log::IvtClass;
use crate::query::{
    Agg, Events, Expr, FIELDS, Op, Query, QueryError, Scalar, Shape, field, number, time_zone,
};
use crate::rules::RuleKind;
use crate::verdict::Tag;

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Fraud,
    Global,
    Interval,
}

struct Params {
    groups: Vec<&'static crate::query::Field>,
    filters: Vec<Expr>,
    having: Vec<Expr>,
    interval: Option<&'static crate::query::Field>,
    page: u64,
    count: u64,
    query: Query,
}

fn bad(field: &'static str, message: impl Into<String>) -> QueryError {
    QueryError::new(field, message)
}

fn parse(kind: Kind, raw: &str) -> Result<Params, QueryError> {
    let mut date_start = None;
    let mut date_end = None;
    let mut tz = jiff::tz::TimeZone::UTC;
    let mut groups = Vec::new();
    let mut filters = Vec::new();
    let mut having = Vec::new();
    let mut interval = None;
    let mut page = 1;
    let mut count = 100;
    for (k, v) in form_urlencoded::parse(raw.as_bytes()) {
        match &*k {
            "date_start" => date_start = Some(v.into_owned()),
            "date_end" => date_end = Some(v.into_owned()),
            "timezone" => tz = time_zone(&v, "timezone")?,
            "group" | "group[]" => {
                let name = v.trim();
                if !GROUPS.contains(&name) {
                    return Err(bad(
                        "group",
                        format!("{name:?}: group by one of {}", GROUPS.join(", ")),
                    ));
                }
                groups.push(field(name).expect("report groups are fields"));
            }
            "search_fields" | "search_fields[]" => {
                let sf: Value = serde_json::from_str(&v).map_err(|e| {
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
                let query = match &sf["query"] {
                    Value::String(s) => Scalar::Text(s.clone()),
                    Value::Number(n) => n
                        .as_i64()
                        .map(Scalar::Int)
                        .or_else(|| n.as_f64().map(Scalar::Real))
                        .ok_or_else(|| bad("search_fields", "query: number out of range"))?,
                    _ => {
                        return Err(bad(
                            "search_fields",
                            format!("{term}: query is a string or a number"),
                        ));
                    }
                };
                let (name, op) = match term {
                    "min_events" => ("count", Op::Ge),
                    "min_block_rate" => ("block_rate", Op::Ge),
                    "max_block_rate" => ("block_rate", Op::Le),
                    t if field(t).is_some() => {
                        filters.push(Expr::Cmp {
                            name: t.to_owned(),
                            op: Op::Eq,
                            values: vec![query],
                        });
                        continue;
                    }
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
                having.push(Expr::Cmp {
                    name: name.to_owned(),
                    op,
                    values: vec![query],
                });
            }
            "time_interval" if kind == Kind::Interval => {
                let unit = match &*v {
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
                interval = field(unit);
            }
            // Fraudshield always sends it; there is one chart type.
            "chart_type" if kind == Kind::Interval => {}
            "count" => count = number(&v, "count", 1, crate::query::MAX_PAGE_SIZE)?,
            "page" => page = number(&v, "page", 1, u64::MAX)?,
            "key" | "format" => {}
            other => return Err(bad("query", format!("unknown parameter {other:?}"))),
        }
    }
    if groups.len() > 3 {
        return Err(bad("group", "at most 3 groups"));
    }
    if kind == Kind::Interval && interval.is_none() {
        return Err(bad(
            "time_interval",
            "time_interval is required (hour, day, week, month, year)",
        ));
    }
    // Dates in the report's zone; today when absent.
    let today = jiff::Zoned::now()
        .with_time_zone(tz.clone())
        .date()
        .to_string();
    let date_start = date_start.unwrap_or_else(|| today.clone());
    let date_end = date_end.unwrap_or(today);
    for (name, d) in [("date_start", &date_start), ("date_end", &date_end)] {
        d.parse::<jiff::civil::Date>()
            .map_err(|_| bad(name, format!("{d:?}: use yyyy-mm-dd")))?;
    }
    filters.push(Expr::Cmp {
        name: "date".into(),
        op: Op::Ge,
        values: vec![Scalar::Text(date_start)],
    });
    filters.push(Expr::Cmp {
        name: "date".into(),
        op: Op::Le,
        values: vec![Scalar::Text(date_end)],
    });
    let query = Query {
        events: Events::All,
        shape: Shape::List(Vec::new()),
        filter: Some(Expr::And(filters.clone())),
        sort: Vec::new(),
        page,
        page_size: count,
        tz,
    };
    Ok(Params {
        groups,
        filters,
        having,
        interval,
        page,
        count,
        query,
    })
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
    let sort = match (kind, p.interval) {
        (Kind::Interval, Some(i)) => vec![(i.name.to_owned(), false)],
        _ => vec![("blocked".to_owned(), true), ("count".to_owned(), true)],
    };
    Query {
        shape: Shape::Groups {
            groups,
            aggs: base_aggs(kind),
            having: (!p.having.is_empty()).then_some(Expr::And(p.having)),
        },
        filter: Some(Expr::And(p.filters)),
        sort,
        page: p.page,
        page_size: p.count,
        ..p.query
    }
}

/// One report row as Fraudshield-style JSON.
fn shape_row(kind: Kind, row: Map<String, Value>) -> Value {
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

async fn report(state: AppState, kind: Kind, raw: String) -> Result<Response, ApiError> {
    let format = Format::from_query(&raw)?;
    let p = parse(kind, &raw).map_err(query_error)?;
    let q = build(kind, p);
    if format == Format::Csv {
        return stream(&state, q, format).await;
    }
    let rows = collect(&state, q).await?;
    let results: Vec<Value> = rows.into_iter().map(|r| shape_row(kind, r)).collect();
    let body = match kind {
        Kind::Fraud => json!({ "fraud": { "results": results } }),
        Kind::Global => json!({ "global": { "results": results } }),
        Kind::Interval => json!({ "results": results }),
    };
    Ok(Json(body).into_response())
}

/// Runs a (small, paged) query and collects its rows.
async fn collect(state: &AppState, q: Query) -> Result<Vec<Map<String, Value>>, ApiError> {
    let log = state
        .scorer
        .log()
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "decision_log_disabled",
                "the decision log is off: set decision_log.enabled = true",
            )
        })?
        .clone();
    let result = tokio::task::spawn_blocking(move || {
        let mut rows = Vec::new();
        crate::log::sqlite::run(log.path(), &q, log.query_timeout(), |names, row| {
            let mut m = Map::new();
            for (i, n) in names.iter().enumerate() {
                let v = match row.get_ref(i) {
                    Ok(rusqlite::types::ValueRef::Integer(x)) => json!(x),
                    Ok(rusqlite::types::ValueRef::Real(x)) => json!(x),
                    Ok(rusqlite::types::ValueRef::Text(t)) => {
                        let s = String::from_utf8_lossy(t).into_owned();
                        if n == "rules" || n == "extra" {
                            serde_json::from_str(&s).unwrap_or(Value::String(s))
                        } else {
                            Value::String(s)
                        }
                    }
                    _ => Value::Null,
                };
                m.insert(n.clone(), v);
            }
            rows.push(m);
            true
        })
        .map(|()| rows)
    })
    .await
    .map_err(|_| ApiError::internal())?;
    result.map_err(|e| state.queries.failure(e))
}

pub async fn fraud(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    report(state, Kind::Fraud, raw.unwrap_or_default()).await
}

pub async fn global(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    report(state, Kind::Global, raw.unwrap_or_default()).await
}

pub async fn interval(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    report(state, Kind::Interval, raw.unwrap_or_default()).await
}

/// One decision with every recorded field.
pub async fn entry(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let raw = raw.unwrap_or_default();
    let tz = form_urlencoded::parse(raw.as_bytes())
        .find(|(k, _)| k == "timezone")
        .map(|(_, v)| time_zone(&v, "timezone"))
        .transpose()
        .map_err(query_error)?
        .unwrap_or(jiff::tz::TimeZone::UTC);
    let not_found = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_entry",
            "no decision with this id in the log (it may be past retention)",
        )
        .with_field("id")
    };
    // The id is a UUIDv7: its time finds the row through the ts index.
    let ms = crate::decision::DecisionId::parse(&id)
        .ok_or_else(not_found)?
        .unix_ms() as i64;
    let q = Query {
        events: Events::All,
        shape: Shape::List(FIELDS.iter().collect()),
        filter: Some(Expr::And(vec![
            Expr::Cmp {
                name: "ts".into(),
                op: Op::Eq,
                values: vec![Scalar::Int(ms)],
            },
            Expr::Cmp {
                name: "id".into(),
                op: Op::Eq,
                values: vec![Scalar::Text(id)],
            },
        ])),
        sort: Vec::new(),
        page: 1,
        page_size: 1,
        tz,
    };
    let mut rows = collect(&state, q).await?;
    match rows.pop() {
        Some(row) => Ok(Json(Value::Object(row)).into_response()),
        None => Err(not_found()),
    }
}
