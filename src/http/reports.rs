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
use jiff::tz::TimeZone;
use serde_json::{Map, Value, json};

use super::AppState;
use super::data::{Cut, Format, log_off, query_error};
use super::error::ApiError;
use crate::query::exec::{QueryFailure, Reader, Stop};
use crate::query::params::time_zone;
use crate::query::report::{Kind, shape_row};
use crate::query::{Events, Expr, FIELDS, Op, Query, QueryError, Scalar, Shape};

async fn report(state: AppState, kind: Kind, raw: String) -> Result<Response, ApiError> {
    let format = Format::from_query(&raw)?;
    let q = crate::query::report::query(kind, &raw).map_err(query_error)?;
    let rows = collect(&state, q).await?;
    let shaped: Vec<Map<String, Value>> = rows
        .into_iter()
        .filter_map(|r| match shape_row(kind, r) {
            Value::Object(m) => Some(m),
            _ => None,
        })
        .collect();
    if format == Format::Csv {
        // The same names as the JSON (events, intervals, reasons).
        let columns = crate::query::report::columns(&shaped);
        return Ok(csv(crate::query::csv::table(&columns, &shaped)));
    }
    let results: Vec<Value> = shaped.into_iter().map(Value::Object).collect();
    let body = match kind {
        Kind::Fraud => json!({ "fraud": { "results": results } }),
        Kind::Global => json!({ "global": { "results": results } }),
        Kind::Interval => json!({ "results": results }),
    };
    Ok(Json(body).into_response())
}

fn csv(body: String) -> Response {
    let mut resp = body.into_response();
    resp.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static(Format::Csv.content_type()),
    );
    resp
}

/// Runs a (small, paged) query on a blocking thread, within one of the
/// query slots and `query_timeout_ms`, and collects its rows. Dropping
/// the future (the request timed out or its client left) stops the run.
pub(super) async fn collect(
    state: &AppState,
    q: Query,
) -> Result<Vec<Map<String, Value>>, ApiError> {
    Ok(collect_all(state, vec![q]).await?.pop().unwrap_or_default())
}

/// Runs small queries one after the other in one slot and on one thread,
/// within one `query_timeout_ms`, and collects each one's rows.
pub(super) async fn collect_all(
    state: &AppState,
    qs: Vec<Query>,
) -> Result<Vec<Vec<Map<String, Value>>>, ApiError> {
    on_log(state, move |reader, stop| {
        qs.iter().map(|q| reader.collect(q, stop)).collect()
    })
    .await
}

/// Runs `work` on the decision log: on a blocking thread, within one of
/// the query slots and `query_timeout_ms`. Dropping the future (the
/// request timed out or its client left) stops the run; its failures
/// are answered and counted as every query's.
pub(super) async fn on_log<T: Send + 'static>(
    state: &AppState,
    work: impl FnOnce(&Reader, &Stop) -> Result<T, QueryFailure> + Send + 'static,
) -> Result<T, ApiError> {
    let reader = state.reader.clone().ok_or_else(log_off)?;
    let slot = state.queries.admit().await?;
    let (stop, _asker) = reader.stop();
    let queries = state.queries.clone();
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        let result = work(&reader, &stop);
        if matches!(result, Err(QueryFailure::Gone)) {
            queries.cut(Cut::ClientGone);
        }
        result
    })
    .await
    .map_err(|_| ApiError::internal())?
    .map_err(|e| state.queries.failure(e))
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
    let format = Format::from_query(&raw)?;
    let tz = entry_timezone(&raw)?;
    let not_found = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_entry",
            "no decision with this id in the log (it may be past retention)",
        )
        .with_field("id")
    };
    // The id is a UUIDv7: its time finds the row (a seek on the time key).
    let ms = crate::decision::DecisionId::parse(&id)
        .ok_or_else(not_found)?
        .unix_ms() as i64;
    let Some(row) = collect(&state, entry_query(id, ms, tz))
        .await?
        .into_iter()
        .next()
    else {
        return Err(not_found());
    };
    Ok(match format {
        Format::Csv => {
            let columns: Vec<String> = FIELDS.iter().map(|f| f.name.to_owned()).collect();
            csv(crate::query::csv::table(&columns, &[row]))
        }
        Format::Ndjson => Json(Value::Object(row)).into_response(),
    })
}

/// An entry's only parameter besides the key and the format: `timezone`,
/// given at most once (UTC when absent).
fn entry_timezone(raw: &str) -> Result<TimeZone, ApiError> {
    let mut tz = None;
    for (k, v) in form_urlencoded::parse(raw.as_bytes()) {
        match &*k {
            "timezone" if tz.is_some() => {
                return Err(query_error(QueryError::new(
                    "timezone",
                    "timezone: give it once",
                )));
            }
            "timezone" => tz = Some(time_zone(&v, "timezone").map_err(query_error)?),
            "key" | "format" => {}
            other => {
                return Err(query_error(QueryError::new(
                    other.to_owned(),
                    format!("unknown parameter {other:?}: an entry takes timezone and format"),
                )));
            }
        }
    }
    Ok(tz.unwrap_or(TimeZone::UTC))
}

/// Every field of the decision `id`, recorded at `ms`.
pub(super) fn entry_query(id: String, ms: i64, tz: TimeZone) -> Query {
    Query {
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
    }
}
