//! The Data API over the decision log, in the FraudScore Data API dialect:
//! `GET /v1/data/{event}` (event: click, impression, all) and
//! `GET /v1/data/{event}/groups`. Answers JSON lines
//! (`application/x-ndjson`), or CSV with `format=csv`, streamed from a
//! blocking thread through a bounded channel: a million-row page never
//! sits whole in memory.

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use metrics::Counter;
use serde_json::Value;
use tokio::sync::mpsc;

use super::AppState;
use super::error::ApiError;
use crate::log::QueryFailure;
use crate::metrics as m;
use crate::query::csv_field;
use crate::query::{Events, Query, QueryError};

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Ndjson,
    Csv,
}

impl Format {
    pub fn from_query(raw: &str) -> Result<Self, ApiError> {
        match form_urlencoded::parse(raw.as_bytes()).find(|(k, _)| k == "format") {
            None => Ok(Format::Ndjson),
            Some((_, v)) if v == "json" || v == "ndjson" => Ok(Format::Ndjson),
            Some((_, v)) if v == "csv" => Ok(Format::Csv),
            Some(_) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_query",
                "format: use json or csv",
            )
            .with_field("format")),
        }
    }
}

pub fn query_error(e: QueryError) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", e.message).with_field(e.field)
}

/// Query outcome counters, registered once.
pub struct QueryCounters {
    ok: Counter,
    bad: Counter,
    timeout: Counter,
    error: Counter,
}

impl QueryCounters {
    pub fn new() -> Self {
        let c = |o: &'static str| metrics::counter!(m::QUERIES, "outcome" => o);
        QueryCounters {
            ok: c("ok"),
            bad: c("bad_request"),
            timeout: c("timeout"),
            error: c("error"),
        }
    }

    pub fn failure(&self, f: QueryFailure) -> ApiError {
        match f {
            QueryFailure::Bad(e) => {
                self.bad.increment(1);
                query_error(e)
            }
            QueryFailure::Timeout => {
                self.timeout.increment(1);
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "query_timeout",
                    "the query ran past decision_log.query_timeout_ms; narrow the filter or the page",
                )
            }
            QueryFailure::Store(e) => {
                self.error.increment(1);
                tracing::warn!(error = %e, "decision log query failed");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    "the decision log could not answer",
                )
            }
        }
    }
}

impl Default for QueryCounters {
    fn default() -> Self {
        Self::new()
    }
}

pub async fn list(
    State(state): State<AppState>,
    Path(event): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    data(state, &event, raw.unwrap_or_default(), false).await
}

pub async fn groups(
    State(state): State<AppState>,
    Path(event): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    data(state, &event, raw.unwrap_or_default(), true).await
}

async fn data(
    state: AppState,
    event: &str,
    raw: String,
    groups: bool,
) -> Result<Response, ApiError> {
    let events = Events::parse(event).map_err(query_error)?;
    let format = Format::from_query(&raw)?;
    let q = Query::from_params(events, &raw, groups).map_err(|e| {
        state.queries.bad.increment(1);
        query_error(e)
    })?;
    stream(&state, q, format).await
}

/// Bytes buffered before a chunk goes out.
const CHUNK: usize = 64 * 1024;

/// Runs `q` and streams its rows as JSON lines or CSV.
pub async fn stream(state: &AppState, q: Query, format: Format) -> Result<Response, ApiError> {
    let reader = state.scorer.log().ok_or_else(log_off)?.reader().clone();
    // Chunks, then `None` when the query ran to its end: a channel that
    // closes without it (the task failed) cuts the body short rather than
    // passing for a complete answer.
    let (tx, mut rx) = mpsc::channel::<Result<Option<Bytes>, QueryFailure>>(4);
    tokio::task::spawn_blocking(move || {
        let mut buf = Vec::with_capacity(CHUNK);
        let mut header = format == Format::Csv;
        let result = reader.run(&q, &mut |names, row| {
            if header {
                write_csv_header(&mut buf, names);
                header = false;
            }
            match format {
                Format::Ndjson => write_json_row(&mut buf, names, &row),
                Format::Csv => write_csv_row(&mut buf, &row),
            }
            if buf.len() >= CHUNK {
                let chunk = Bytes::from(std::mem::replace(&mut buf, Vec::with_capacity(CHUNK)));
                // The client went away: stop reading.
                return tx.blocking_send(Ok(Some(chunk))).is_ok();
            }
            true
        });
        match result {
            Ok(()) => {
                if header {
                    // No rows: a CSV still gets its header.
                    write_csv_header(&mut buf, &q.columns());
                }
                if !buf.is_empty() {
                    let _ = tx.blocking_send(Ok(Some(Bytes::from(buf))));
                }
                let _ = tx.blocking_send(Ok(None));
            }
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
            }
        }
    });
    let first = match rx.recv().await {
        Some(Err(e)) => return Err(state.queries.failure(e)),
        Some(Ok(chunk)) => chunk,
        None => {
            return Err(state
                .queries
                .failure(QueryFailure::Store("the query task ended early".into())));
        }
    };
    state.queries.ok.increment(1);
    let done = first.is_none();
    let rest = futures_util::stream::unfold((rx, done), |(mut rx, done)| async move {
        if done {
            return None;
        }
        match rx.recv().await {
            Some(Ok(Some(chunk))) => Some((Ok::<_, std::io::Error>(chunk), (rx, false))),
            Some(Ok(None)) => None,
            Some(Err(e)) => {
                // Headers are sent: all that is left is to cut the body short.
                tracing::warn!(error = %e, "decision log query failed mid-stream");
                Some((Err(std::io::Error::other(e.to_string())), (rx, true)))
            }
            None => {
                tracing::warn!("decision log query ended early mid-stream");
                Some((
                    Err(std::io::Error::other("the query task ended early")),
                    (rx, true),
                ))
            }
        }
    });
    let body = futures_util::stream::iter(first.map(Ok)).chain(rest);
    let mut resp = Body::from_stream(body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(match format {
            Format::Ndjson => "application/x-ndjson",
            Format::Csv => "text/csv; charset=utf-8",
        }),
    );
    Ok(resp)
}

use futures_util::StreamExt;

/// The answer when `decision_log.enabled = false`.
pub fn log_off() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "decision_log_disabled",
        "the decision log is off: set decision_log.enabled = true",
    )
}

fn write_json_row(buf: &mut Vec<u8>, names: &[String], row: &[Value]) {
    buf.push(b'{');
    for (i, (name, v)) in names.iter().zip(row).enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        let _ = serde_json::to_writer(&mut *buf, name);
        buf.push(b':');
        let _ = serde_json::to_writer(&mut *buf, v);
    }
    buf.extend_from_slice(b"}\n");
}

fn write_csv_header(buf: &mut Vec<u8>, names: &[String]) {
    for (i, n) in names.iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        csv_field(buf, n);
    }
    buf.extend_from_slice(b"\r\n");
}

fn write_csv_row(buf: &mut Vec<u8>, row: &[Value]) {
    for (i, v) in row.iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        match v {
            Value::Null => {}
            Value::String(t) => csv_field(buf, t),
            // Numbers as they are; JSON fields (rules, extra) as JSON text.
            Value::Number(n) => buf.extend_from_slice(n.to_string().as_bytes()),
            other => csv_field(buf, &other.to_string()),
        }
    }
    buf.extend_from_slice(b"\r\n");
}
