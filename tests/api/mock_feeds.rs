//! In-process mocks of the three feed sources, built from their reference
//! documents (../shared/reference 000, 001, 004), on one random port:
//! - Protect360 `GET /api/adnets-data/v1/export/{topic}/app/{app_id}`:
//!   Bearer token (none: the HTML login page with 200; wrong: 401),
//!   unknown app 404, the date-range rules (400 past 90 days back or over
//!   31 days), CSV with AppsFlyer's raw-data headers, cut at `row_limit`.
//! - Fraudshield `POST conversion_scroll.json` (next_page_id paging),
//!   `GET conversion.json` (page / last_page), `GET fraud.json` (groups);
//!   `user_id` + `api_token`.
//! - FraudScore Data API `GET /{channel}/{event}`: `key`, `field`,
//!   `filter`, `page`, `page_size`, JSON lines.
//!
//! A fault (429 with Retry-After, 500, a hang) can be switched on for all.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

pub const P360_TOKEN: &str = "P360-TOKEN-eyJhbGciOi-0123456789";
pub const FS_USER: &str = "4711";
pub const FS_TOKEN: &str = "FS-API-TOKEN-Ia1u9NIzFGML7Dmx";
pub const FSD_CHANNEL: &str = "chan42";
pub const FSD_KEY: &str = "FSD-USER-KEY-55aa";

/// A Protect360 blocked click.
#[derive(Clone, Debug)]
pub struct P360Row {
    pub date: String,
    pub ip: String,
    pub idfa: String,
    pub site: String,
    pub reason: String,
}

#[derive(Clone, Debug)]
pub enum Fault {
    None,
    Status(u16),
    RateLimited(u64),
    Hang,
    LoginPage,
    /// This status with the request's query string echoed in the body,
    /// as some APIs' error pages do.
    EchoQuery(u16),
    /// 200 and a CSV header, then one quoted field that never ends, sent
    /// as fast as it is read.
    EndlessField,
    /// 200 and a byte every 50 ms, for ever: never idle long enough for
    /// a read timeout.
    Trickle,
    /// The Fraudshield scroll answers its first page for every
    /// `next_page_id`: a scroll that never advances.
    StuckScroll,
}

pub struct FeedState {
    pub fault: Fault,
    pub row_limit: usize,
    pub p360: Vec<P360Row>,
    /// Fraudshield conversions (the scroll report's flat rows).
    pub fs_conversions: Vec<Value>,
    pub fs_fraud: Vec<Value>,
    /// FraudScore Data API events.
    pub fsd_events: Vec<Value>,
    /// Every request: path and raw query.
    pub requests: Vec<(String, String)>,
    /// When each request came.
    pub times: Vec<std::time::Instant>,
}

#[derive(Clone)]
pub struct MockFeeds {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<FeedState>>,
}

impl MockFeeds {
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(FeedState {
            fault: Fault::None,
            row_limit: 200_000,
            p360: Vec::new(),
            fs_conversions: Vec::new(),
            fs_fraud: Vec::new(),
            fsd_events: Vec::new(),
            requests: Vec::new(),
            times: Vec::new(),
        }));
        let app = Router::new()
            .route("/api/adnets-data/v1/export/{topic}/app/{app}", get(p360))
            .route("/api/v1/reports/conversion_scroll.json", post(fs_scroll))
            .route("/api/v1/reports/conversion.json", get(fs_paged))
            .route("/api/v1/reports/fraud.json", get(fs_fraud))
            .route("/{channel}/{event}", get(fsd))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        MockFeeds { addr, state }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn with<T>(&self, f: impl FnOnce(&mut FeedState) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }

    pub fn requests(&self) -> Vec<(String, String)> {
        self.with(|s| s.requests.clone())
    }

    /// When each request came, in order.
    pub fn request_times(&self) -> Vec<std::time::Instant> {
        self.with(|s| s.times.clone())
    }

    pub fn set_fault(&self, f: Fault) {
        self.with(|s| s.fault = f);
    }
}

fn params(q: &Option<String>) -> Vec<(String, String)> {
    form_urlencoded::parse(q.as_deref().unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

fn param<'a>(p: &'a [(String, String)], k: &str) -> Option<&'a str> {
    p.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
}

/// The fault switched on, as a response (or a hang).
async fn fault(state: &Arc<Mutex<FeedState>>, path: &str, q: &Option<String>) -> Option<Response> {
    let f = {
        let mut s = state.lock().unwrap();
        s.requests
            .push((path.to_owned(), q.clone().unwrap_or_default()));
        s.times.push(std::time::Instant::now());
        s.fault.clone()
    };
    match f {
        Fault::None | Fault::StuckScroll => None,
        Fault::Status(code) => Some(
            (
                StatusCode::from_u16(code).unwrap(),
                "{\"error\":\"server trouble\"}",
            )
                .into_response(),
        ),
        Fault::RateLimited(secs) => Some(
            (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, secs.to_string())],
                "Too Many Requests",
            )
                .into_response(),
        ),
        Fault::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            None
        }
        Fault::LoginPage => Some(login_page()),
        Fault::EndlessField => {
            let head = futures_util::stream::once(async {
                Ok::<_, std::io::Error>(axum::body::Bytes::from_static(
                    b"Site ID,IP,Blocked Reason\nsite7,\"",
                ))
            });
            let chunk = axum::body::Bytes::from(vec![b'A'; 64 << 10]);
            let endless = futures_util::stream::repeat_with(move || Ok(chunk.clone()));
            Some(
                (
                    StatusCode::OK,
                    [(header::CONTENT_TYPE, "text/csv")],
                    axum::body::Body::from_stream(futures_util::StreamExt::chain(head, endless)),
                )
                    .into_response(),
            )
        }
        Fault::Trickle => {
            let slow = futures_util::stream::unfold((), |()| async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Some((
                    Ok::<_, std::io::Error>(axum::body::Bytes::from_static(b" ")),
                    (),
                ))
            });
            Some(
                (
                    StatusCode::OK,
                    [(header::CONTENT_TYPE, "application/json")],
                    axum::body::Body::from_stream(slow),
                )
                    .into_response(),
            )
        }
        Fault::EchoQuery(code) => Some(
            (
                StatusCode::from_u16(code).unwrap(),
                format!("bad request: {}", q.as_deref().unwrap_or("")),
            )
                .into_response(),
        ),
    }
}

fn login_page() -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        "<!DOCTYPE html><html><head><title>AppsFlyer - Login</title></head><body><form>...</form></body></html>",
    )
        .into_response()
}

fn day(s: &str) -> Option<jiff::civil::Date> {
    s.parse().ok()
}

async fn p360(
    State(state): State<Arc<Mutex<FeedState>>>,
    Path((topic, app)): Path<(String, String)>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    let path = format!("/api/adnets-data/v1/export/{topic}/app/{app}");
    if let Some(r) = fault(&state, &path, &q).await {
        return r;
    }
    match headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        None => return login_page(),
        Some(a) if a != format!("Bearer {P360_TOKEN}") => {
            return (StatusCode::UNAUTHORIZED, "Unauthorized").into_response();
        }
        _ => {}
    }
    if app != "id1234567" && app != "com.example.game" {
        return (StatusCode::NOT_FOUND, "").into_response();
    }
    let p = params(&q);
    let (Some(from), Some(to)) = (
        param(&p, "from").and_then(day),
        param(&p, "to").and_then(day),
    ) else {
        // The document: a bad date format is an empty CSV with 200.
        return (StatusCode::OK, "").into_response();
    };
    let today = jiff::Zoned::now()
        .with_time_zone(jiff::tz::TimeZone::UTC)
        .date();
    let earliest = today.checked_sub(jiff::Span::new().days(90)).unwrap();
    // Post-attribution topics: install or event dates over up to 60 (90
    // for in-app) days, rows picked by their detection date.
    let detect = (
        param(&p, "detect-from").and_then(day),
        param(&p, "detect-to").and_then(day),
    );
    let max_days = match topic.as_str() {
        "detection" => 60,
        "fraud-post-inapps" => 90,
        _ => 31,
    };
    if from < earliest || (to - from).get_days() + 1 > max_days || to < from {
        return (
            StatusCode::BAD_REQUEST,
            "Bad request: date range limitation",
        )
            .into_response();
    }
    let s = state.lock().unwrap();
    let mut csv = String::from(
        "Attributed Touch Type,Attributed Touch Time,Install Time,Event Time,Event Name,Partner,Media Source,Campaign,Site ID,Sub Site ID,IP,Advertising ID,IDFA,Android ID,Blocked Reason,Blocked Reason Value,Blocked Sub Reason\n",
    );
    let (lo, hi) = match detect {
        (Some(a), Some(b)) => (a, b),
        _ => (from, to),
    };
    let in_window = s.p360.iter().filter(|r| {
        let d = day(&r.date).unwrap();
        lo <= d && d <= hi
    });
    for r in in_window.take(s.row_limit) {
        csv.push_str(&format!(
            "click,{d} 10:00:00,,{d} 10:00:00,,adnet,adnet_int,\"Campaign, the one\",{site},,{ip},,{idfa},,{reason},,\n",
            d = r.date,
            site = r.site,
            ip = r.ip,
            idfa = r.idfa,
            reason = r.reason
        ));
    }
    ([(header::CONTENT_TYPE, "text/csv")], csv).into_response()
}

fn fs_auth(p: &[(String, String)]) -> Option<Response> {
    if param(p, "user_id") != Some(FS_USER) || param(p, "api_token") != Some(FS_TOKEN) {
        return Some(
            (
                StatusCode::UNAUTHORIZED,
                axum::Json(json!({"error": "Unauthenticated."})),
            )
                .into_response(),
        );
    }
    for k in ["tracker_id", "date_start", "date_end", "timezone"] {
        if param(p, k).is_none() {
            return Some(
                (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    axum::Json(json!({"error": format!("{k} is mandatory")})),
                )
                    .into_response(),
            );
        }
    }
    None
}

/// What every Fraudshield call goes through: the fault switched on, then
/// the credentials and mandatory parameters. The parameters, or the answer.
async fn fs_request(
    state: &Arc<Mutex<FeedState>>,
    path: &str,
    q: &Option<String>,
) -> Result<Vec<(String, String)>, Response> {
    if let Some(r) = fault(state, path, q).await {
        return Err(r);
    }
    let p = params(q);
    match fs_auth(&p) {
        Some(r) => Err(r),
        None => Ok(p),
    }
}

fn only_rejected(p: &[(String, String)], rows: &[Value]) -> Vec<Value> {
    let wants_rejected = p.iter().any(|(k, v)| {
        k == "search_fields[]"
            && serde_json::from_str::<Value>(v)
                .is_ok_and(|f| f["term"] == "status" && f["query"] == "rejected")
    });
    rows.iter()
        .filter(|r| !wants_rejected || r["status"] == "rejected")
        .cloned()
        .collect()
}

async fn fs_scroll(State(state): State<Arc<Mutex<FeedState>>>, RawQuery(q): RawQuery) -> Response {
    let p = match fs_request(&state, "/api/v1/reports/conversion_scroll.json", &q).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let count: usize = param(&p, "count")
        .and_then(|c| c.parse().ok())
        .unwrap_or(10);
    // next_page_id is an opaque id: here base64-ish of the offset.
    let stuck = matches!(state.lock().unwrap().fault, Fault::StuckScroll);
    let offset: usize = param(&p, "next_page_id")
        .and_then(|id| id.strip_prefix("c2Nyb2xs"))
        .and_then(|n| n.parse().ok())
        .filter(|_| !stuck)
        .unwrap_or(0);
    let rows = only_rejected(&p, &state.lock().unwrap().fs_conversions);
    let page: Vec<Value> = rows.iter().skip(offset).take(count).cloned().collect();
    let next = offset + page.len();
    axum::Json(json!({
        "next_page_url": format!("https://fraudshield.24metrics.com/api/v1/reports/conversion_scroll.json?api_token=X&click=0&count={count}&page=1&timezone=UTC&tracker_id=1&user_id=1&next_page_id=c2Nyb2xs{next}"),
        "data": page,
    }))
    .into_response()
}

async fn fs_paged(State(state): State<Arc<Mutex<FeedState>>>, RawQuery(q): RawQuery) -> Response {
    let p = match fs_request(&state, "/api/v1/reports/conversion.json", &q).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let count: usize = param(&p, "count")
        .and_then(|c| c.parse().ok())
        .unwrap_or(50);
    let page: usize = param(&p, "page").and_then(|c| c.parse().ok()).unwrap_or(1);
    let rows = only_rejected(&p, &state.lock().unwrap().fs_conversions);
    let last = rows.len().div_ceil(count).max(1);
    let data: Vec<Value> = rows
        .iter()
        .skip((page - 1) * count)
        .take(count)
        .map(|r| json!({"_index": "fraudshield-2026-11-01", "_type": "conversion", "_id": "x", "_source": r}))
        .collect();
    axum::Json(json!({
        "total": rows.len(), "per_page": count.to_string(), "current_page": page,
        "last_page": last, "next_page_url": format!("/?page={}", page + 1),
        "data": data,
    }))
    .into_response()
}

async fn fs_fraud(State(state): State<Arc<Mutex<FeedState>>>, RawQuery(q): RawQuery) -> Response {
    let p = match fs_request(&state, "/api/v1/reports/fraud.json", &q).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let min_rate = p
        .iter()
        .filter(|(k, _)| k == "search_fields[]")
        .filter_map(|(_, v)| serde_json::from_str::<Value>(v).ok())
        .find(|f| f["term"] == "min_rejection_rate")
        .and_then(|f| f["query"].as_f64())
        .unwrap_or(0.0);
    let results: Vec<Value> = state
        .lock()
        .unwrap()
        .fs_fraud
        .iter()
        .filter(|g| g["rejection_rate"].as_f64().unwrap_or(0.0) >= min_rate)
        .cloned()
        .collect();
    axum::Json(json!({"fraud": {"results": results}})).into_response()
}

async fn fsd(
    State(state): State<Arc<Mutex<FeedState>>>,
    Path((channel, event)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> Response {
    let path = format!("/{channel}/{event}");
    if let Some(r) = fault(&state, &path, &q).await {
        return r;
    }
    let p = params(&q);
    if channel != FSD_CHANNEL || param(&p, "key") != Some(FSD_KEY) {
        return (StatusCode::FORBIDDEN, "{\"error\":\"access denied\"}").into_response();
    }
    let Some(filter) = param(&p, "filter").and_then(|f| serde_json::from_str::<Value>(f).ok())
    else {
        return (StatusCode::BAD_REQUEST, "{\"error\":\"bad filter\"}").into_response();
    };
    // The window's lower bound, as the feed sends it.
    let bound = |op: &str| {
        filter
            .as_array()
            .into_iter()
            .flatten()
            .find(|o| o[0] == op)
            .and_then(|o| o[1].as_str())
            .map(str::to_owned)
    };
    let ge = bound("datetime_ge").unwrap_or_default();
    let le = bound("datetime_le").unwrap_or_else(|| "9999".into());
    let page: usize = param(&p, "page").and_then(|c| c.parse().ok()).unwrap_or(1);
    let size: usize = param(&p, "page_size")
        .and_then(|c| c.parse().ok())
        .unwrap_or(100);
    let fields: Vec<&str> = p
        .iter()
        .filter(|(k, _)| k == "field")
        .map(|(_, v)| v.as_str())
        .collect();
    // The fields reference 000 documents; idfa as a channel's own.
    const KNOWN: [&str; 9] = [
        "datetime",
        "date",
        "offer_id",
        "affiliate_id",
        "ipv4_str",
        "ua",
        "offer_name",
        "affiliate_name",
        "idfa",
    ];
    if let Some(f) = fields.iter().find(|f| !KNOWN.contains(f)) {
        return (
            StatusCode::BAD_REQUEST,
            format!("{{\"error\":\"unknown field {f}\"}}"),
        )
            .into_response();
    }
    let s = state.lock().unwrap();
    let rows: Vec<&Value> = s
        .fsd_events
        .iter()
        .filter(|e| e["datetime"].as_str().unwrap_or("") >= ge.as_str())
        .filter(|e| e["datetime"].as_str().unwrap_or("") <= le.as_str())
        .filter(|e| e["event"].as_str().is_none_or(|ev| ev == event))
        .collect();
    let mut body = String::new();
    for r in rows.iter().skip((page - 1) * size).take(size) {
        let mut o = serde_json::Map::new();
        for f in &fields {
            if let Some(v) = r.get(*f) {
                o.insert((*f).to_owned(), v.clone());
            }
        }
        body.push_str(&Value::Object(o).to_string());
        body.push('\n');
    }
    ([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response()
}

/// Counts of requests per path prefix.
pub fn count(requests: &[(String, String)], prefix: &str) -> usize {
    requests
        .iter()
        .filter(|(p, _)| p.starts_with(prefix))
        .count()
}

pub fn query_of(raw: &str) -> HashMap<String, Vec<String>> {
    let mut m: HashMap<String, Vec<String>> = HashMap::new();
    for (k, v) in form_urlencoded::parse(raw.as_bytes()).into_owned() {
        m.entry(k).or_default().push(v);
    }
    m
}
