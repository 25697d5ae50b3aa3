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

use futures_util::StreamExt;
use metrics::{Counter, Gauge};
use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use super::AppState;
use super::error::ApiError;
use crate::metrics as m;
use crate::query::csv;
use crate::query::exec::{Asker, QueryFailure, Reader, Stop};
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

/// `GET /v1/data/{event}`, and the FraudScore Data API's own form
/// `/data/{channel}/{event}` (reference 000), so its clients only change
/// the host (and add `/data`). The channel is the caller's: fraudgate
/// keeps one log.
pub async fn list(
    State(state): State<AppState>,
    Path(path): Path<Vec<(String, String)>>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    data(state, event_of(&path), raw.unwrap_or_default(), false).await
}

/// The `{event}` of a Data API path.
fn event_of(path: &[(String, String)]) -> &str {
    path.iter()
        .find(|(k, _)| k == "event")
        .map_or("", |(_, v)| v.as_str())
}

/// `GET /data/{channel}/help` (and `/v1/data/help`): what this instance
/// answers: events, fields, aggregates, filter operators, limits.
pub async fn help() -> axum::Json<serde_json::Value> {
    use crate::query::{DATA_API_FIELDS, FIELDS, FUNNEL_FIELDS, filter::Op};
    axum::Json(serde_json::json!({
        "events": ["click", "impression", "all", "install", "custom"],
        "fields": FIELDS
            .iter()
            .chain(DATA_API_FIELDS)
            .chain(FUNNEL_FIELDS)
            .map(|f| f.name)
            .collect::<Vec<_>>(),
        "aggregates": crate::query::AGGREGATES,
        "filter": {
            "operators": ["AND", "OR", "NOT"],
            "operand_suffixes": Op::suffixes(),
        },
        "parameters": ["key", "field", "group", "filter", "having", "sort", "page", "page_size", "tz", "format"],
        "page_size_max": crate::query::MAX_PAGE_SIZE,
    }))
}

/// `GET /v1/data/{event}/groups` and `/data/{channel}/{event}/groups`.
pub async fn groups(
    State(state): State<AppState>,
    Path(path): Path<Vec<(String, String)>>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    data(state, event_of(&path), raw.unwrap_or_default(), true).await
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

/// One item of an answer's body, from its blocking thread: a chunk,
/// `None` when the query ran to its end, or why it failed.
type Item = Result<Option<Bytes>, QueryFailure>;

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
    let (tx, mut rx) = mpsc::channel::<Item>(4);
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        let send = |item| hand_over(&rt, &tx, item, &stop);
        if let Err(c) = produce(&reader, &q, format, &stop, &send) {
            queries.cut(c);
        }
    });
    let first = first_chunk(&state.queries, &mut rx).await?;
    state.queries.ok.increment(1);
    let done = first.is_none();
    let body = futures_util::stream::iter(first.map(Ok)).chain(rest(rx, done, asker));
    let mut resp = Body::from_stream(body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    Ok(resp)
}

/// The blocking half of [`stream`]: runs `q`, writes its rows in
/// `format` and hands them to `send` a chunk at a time; what cut the
/// answer short, if anything did.
fn produce(
    reader: &Reader,
    q: &Query,
    format: Format,
    stop: &Stop,
    send: &dyn Fn(Item) -> Result<(), Cut>,
) -> Result<(), Cut> {
    let mut out = Chunks {
        format,
        buf: Vec::with_capacity(CHUNK),
        header: format == Format::Csv,
        begun: false,
        send,
    };
    let mut cut = None;
    let result = reader.run(q, stop, &mut |names, row| match out.row(names, &row) {
        Ok(()) => true,
        Err(c) => {
            cut = Some(c);
            false
        }
    });
    match (cut, result) {
        (Some(c), _) => Err(c),
        (None, Ok(())) => out.finish(q),
        (None, Err(QueryFailure::Gone)) => Err(Cut::ClientGone),
        (None, Err(e)) => out.fail(e),
    }
}

/// An answer's body as it is written: rows gathered into chunks of about
/// [`CHUNK`] bytes, each handed over when full.
struct Chunks<'a> {
    format: Format,
    buf: Vec<u8>,
    /// A CSV whose header is still to be written.
    header: bool,
    /// Whether a chunk went out: the answer is a 200 from then on, and
    /// stopping it is a cut.
    begun: bool,
    send: &'a dyn Fn(Item) -> Result<(), Cut>,
}

impl Chunks<'_> {
    fn row(&mut self, names: &[String], row: &[Value]) -> Result<(), Cut> {
        if self.header {
            csv::header(&mut self.buf, names);
            self.header = false;
        }
        match self.format {
            Format::Ndjson => write_json_row(&mut self.buf, names, row),
            Format::Csv => csv::row(&mut self.buf, row),
        }
        if self.buf.len() >= CHUNK {
            let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
            (self.send)(Ok(Some(chunk)))?;
            self.begun = true;
        }
        Ok(())
    }

    /// The query ran to its end: the rows left, then the end.
    fn finish(mut self, q: &Query) -> Result<(), Cut> {
        if self.header {
            // No rows: a CSV still gets its header.
            csv::header(&mut self.buf, &q.columns());
        }
        if !self.buf.is_empty() {
            (self.send)(Ok(Some(Bytes::from(self.buf))))?;
        }
        (self.send)(Ok(None))
    }

    /// The query failed: the failure goes after what went out. Only an
    /// answer that had begun is cut; before that, the failure is its
    /// status.
    fn fail(self, e: QueryFailure) -> Result<(), Cut> {
        let timeout = matches!(e, QueryFailure::Timeout);
        match (self.send)(Err(e)) {
            Ok(()) if self.begun && timeout => Err(Cut::Timeout),
            Ok(()) => Ok(()),
            Err(c) if self.begun => Err(c),
            // Its 503 was never read: nothing was cut.
            Err(_) => Ok(()),
        }
    }
}

/// The answer's first item: a failure before any chunk went out is the
/// answer (its status), not a body cut short.
async fn first_chunk(
    queries: &Queries,
    rx: &mut mpsc::Receiver<Item>,
) -> Result<Option<Bytes>, ApiError> {
    match rx.recv().await {
        Some(Err(e)) => Err(queries.failure(e)),
        Some(Ok(chunk)) => Ok(chunk),
        None => Err(queries.failure(QueryFailure::Store("the query task ended early".into()))),
    }
}

/// The body after its first item (`done` when that was the end): the
/// chunks as they come, cut short when the query fails or its task ends
/// early. It holds the `asker`: dropping the body stops the run.
fn rest(
    rx: mpsc::Receiver<Item>,
    done: bool,
    asker: Asker,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    futures_util::stream::unfold((rx, done, asker), |(mut rx, done, asker)| async move {
        if done {
            return None;
        }
        match rx.recv().await {
            Some(Ok(Some(chunk))) => Some((Ok(chunk), (rx, false, asker))),
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
    })
}

/// Hands `item` to the answer's body from the blocking thread, waiting
/// no longer than the run may last: instead of `blocking_send`, which
/// waits for a client that stopped reading for ever.
fn hand_over(
    rt: &tokio::runtime::Handle,
    tx: &mpsc::Sender<Item>,
    item: Item,
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
