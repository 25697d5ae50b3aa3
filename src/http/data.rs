//! The Data API over the decision log, in the FraudScore Data API dialect:
//! `GET /v1/data/{event}` (event: click, impression, all) and
//! `GET /v1/data/{event}/groups`. Answers JSON lines
//! (`application/x-ndjson`), or CSV with `format=csv`, streamed from a
//! blocking thread through a bounded channel: a million-row page never
//! sits whole in memory.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use metrics::{Counter, Gauge};
use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use super::AppState;
use super::error::ApiError;
use crate::metrics as m;
use crate::query::csv;
use crate::query::exec::{QueryFailure, Stop};
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

    pub const fn content_type(self) -> &'static str {
        match self {
            Format::Ndjson => "application/x-ndjson",
            Format::Csv => "text/csv; charset=utf-8",
        }
    }
}

pub fn query_error(e: QueryError) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", e.message).with_field(e.field)
}

/// How long a query waits for one of `decision_log.max_queries` slots
/// before it is answered 503 `busy`: a burst is smoothed, a flood is not
/// queued.
pub const ADMIT_WAIT: Duration = Duration::from_millis(500);

/// Why an answer was stopped before it was whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// The store ran past `query_timeout_ms` after the answer began.
    Timeout,
    /// The client did not take the answer within `query_timeout_ms`.
    SlowReader,
    /// The request ended first: the client left, or
    /// `server.request_timeout_ms` answered.
    ClientGone,
}

impl Cut {
    pub const fn as_str(self) -> &'static str {
        match self {
            Cut::Timeout => "timeout",
            Cut::SlowReader => "slow_reader",
            Cut::ClientGone => "client_gone",
        }
    }
}

/// Admission and outcomes of the Data API and report queries, registered
/// once: at most `decision_log.max_queries` run at once, each holding its
/// slot until its blocking work has ended (its thread, its store
/// connection), not only until its answer's headers went out.
pub struct Queries {
    ok: Counter,
    bad: Counter,
    timeout: Counter,
    busy: Counter,
    error: Counter,
    cuts: [Counter; 3],
    running: Gauge,
    slots: Arc<Semaphore>,
}

/// One running query's slot: freed, and the running gauge lowered, when
/// the blocking work holding it ends.
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    running: Gauge,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.running.decrement(1.0);
    }
}

impl Queries {
    pub fn new(max_queries: usize) -> Self {
        let c = |o: &'static str| metrics::counter!(m::QUERIES, "outcome" => o);
        let cut = |c: Cut| metrics::counter!(m::QUERY_CUTS, "reason" => c.as_str());
        Queries {
            ok: c("ok"),
            bad: c("bad_request"),
            timeout: c("timeout"),
            busy: c("busy"),
            error: c("error"),
            cuts: [Cut::Timeout, Cut::SlowReader, Cut::ClientGone].map(cut),
            running: metrics::gauge!(m::QUERIES_RUNNING),
            slots: Arc::new(Semaphore::new(max_queries.max(1))),
        }
    }

    /// A slot, waiting at most [`ADMIT_WAIT`] for one; else 503 `busy`.
    pub async fn admit(&self) -> Result<Slot, ApiError> {
        match tokio::time::timeout(ADMIT_WAIT, self.slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => {
                self.running.increment(1.0);
                Ok(Slot {
                    _permit: permit,
                    running: self.running.clone(),
                })
            }
            _ => {
                self.busy.increment(1);
                Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "busy",
                    "decision_log.max_queries queries are running; retry shortly",
                ))
            }
        }
    }

    pub fn cut(&self, c: Cut) {
        self.cuts[c as usize].increment(1);
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
            QueryFailure::Gone => {
                // Nobody reads this answer; counted as a cut where it
                // stopped.
                ApiError::timeout()
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

/// Runs `q` and streams its rows as JSON lines or CSV, within one of
/// the query slots and `query_timeout_ms` for the whole answer: a client
/// that does not take it in time is cut off, and the thread, the store's
/// read transaction or server-side query with it.
pub async fn stream(state: &AppState, q: Query, format: Format) -> Result<Response, ApiError> {
    let reader = state.reader.clone().ok_or_else(log_off)?;
    let slot = state.queries.admit().await?;
    // The asker goes with the body: a request or body dropped before the
    // end (client gone, request timeout) stops the run.
    let (stop, asker) = reader.stop();
    let queries = state.queries.clone();
    let rt = tokio::runtime::Handle::current();
    // Chunks, then `None` when the query ran to its end: a channel that
    // closes without it (the task failed or was cut) cuts the body short
    // rather than passing for a complete answer.
    let (tx, mut rx) = mpsc::channel::<Result<Option<Bytes>, QueryFailure>>(4);
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        let send = |item| hand_over(&rt, &tx, item, &stop);
        let mut buf = Vec::with_capacity(CHUNK);
        let mut header = format == Format::Csv;
        // Whether a chunk went out: the answer is a 200 from then on, and
        // stopping it is a cut.
        let mut begun = false;
        let mut cut = None;
        let result = reader.run(&q, &stop, &mut |names, row| {
            if header {
                csv::header(&mut buf, names);
                header = false;
            }
            match format {
                Format::Ndjson => write_json_row(&mut buf, names, &row),
                Format::Csv => csv::row(&mut buf, &row),
            }
            if buf.len() >= CHUNK {
                let chunk = Bytes::from(std::mem::replace(&mut buf, Vec::with_capacity(CHUNK)));
                match send(Ok(Some(chunk))) {
                    Ok(()) => begun = true,
                    Err(c) => {
                        cut = Some(c);
                        return false;
                    }
                }
            }
            true
        });
        let outcome = match (cut, result) {
            (Some(c), _) => Err(c),
            (None, Ok(())) => {
                if header {
                    // No rows: a CSV still gets its header.
                    csv::header(&mut buf, &q.columns());
                }
                let rest = if buf.is_empty() {
                    Ok(())
                } else {
                    send(Ok(Some(Bytes::from(buf))))
                };
                rest.and_then(|()| send(Ok(None)))
            }
            (None, Err(QueryFailure::Gone)) => Err(Cut::ClientGone),
            (None, Err(e)) => {
                let timeout = matches!(e, QueryFailure::Timeout);
                match send(Err(e)) {
                    Ok(()) if begun && timeout => Err(Cut::Timeout),
                    Ok(()) => Ok(()),
                    Err(c) if begun => Err(c),
                    // Its 503 was never read: nothing was cut.
                    Err(_) => Ok(()),
                }
            }
        };
        if let Err(c) = outcome {
            queries.cut(c);
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
    let rest =
        futures_util::stream::unfold((rx, done, asker), |(mut rx, done, asker)| async move {
            if done {
                return None;
            }
            match rx.recv().await {
                Some(Ok(Some(chunk))) => Some((Ok::<_, std::io::Error>(chunk), (rx, false, asker))),
                Some(Ok(None)) => None,
                Some(Err(e)) => {
                    // Headers are sent: all that is left is to cut the body short.
                    tracing::warn!(error = %e, "decision log query failed mid-stream");
                    Some((Err(std::io::Error::other(e.to_string())), (rx, true, asker)))
                }
                None => {
                    tracing::warn!("decision log query ended early mid-stream");
                    Some((
                        Err(std::io::Error::other("the query task ended early")),
                        (rx, true, asker),
                    ))
                }
            }
        });
    let body = futures_util::stream::iter(first.map(Ok)).chain(rest);
    let mut resp = Body::from_stream(body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    Ok(resp)
}

/// Hands `item` to the answer's body from the blocking thread, waiting
/// no longer than the run may last: instead of `blocking_send`, which
/// waits for a client that stopped reading for ever.
fn hand_over(
    rt: &tokio::runtime::Handle,
    tx: &mpsc::Sender<Result<Option<Bytes>, QueryFailure>>,
    item: Result<Option<Bytes>, QueryFailure>,
    stop: &Stop,
) -> Result<(), Cut> {
    rt.block_on(async {
        tokio::select! {
            sent = tx.send(item) => sent.map_err(|_| Cut::ClientGone),
            why = stop.stopped() => Err(match why {
                QueryFailure::Timeout => Cut::SlowReader,
                _ => Cut::ClientGone,
            }),
        }
    })
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
