//! What every source shares: the row a source yields, column lookup, the
//! HTTP client and how answers become errors.

use std::collections::HashMap;
use std::time::Duration;

use reqwest::StatusCode;

use super::config::{Columns, FeedConfig, FeedKind};

/// One source row, reduced to what list entries are made of.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Row {
    pub ip: Option<String>,
    pub devices: Vec<String>,
    pub affiliate: Option<String>,
    pub sub: Option<String>,
    pub reason: Option<String>,
    pub sub_reason: Option<String>,
}

/// Why a pull failed. Messages name the source and what to do; they never
/// carry a URL (the credentials are in some sources' query strings).
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error("{0}")]
    Credentials(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("rate limited (HTTP 429){}", .retry_after.map(|d| format!("; Retry-After {}s", d.as_secs())).unwrap_or_default())]
    RateLimited { retry_after: Option<Duration> },
    #[error("server error: HTTP {0}")]
    Server(u16),
    #[error("unexpected HTTP {0}")]
    Status(u16),
    #[error("timed out: no answer within timeout_ms")]
    Timeout,
    #[error("transport: {0}")]
    Transport(String),
    #[error("unreadable answer: {0}")]
    Parse(String),
    #[error("partly failed: {0}")]
    Partial(String),
    #[error("the run passed run_timeout ({0}s) and was stopped; entries kept")]
    RunTimeout(u64),
}

/// `base_url` with `segments` appended to its path.
pub fn endpoint(base_url: &str, segments: &[&str]) -> Result<reqwest::Url, FeedError> {
    let mut url = reqwest::Url::parse(base_url)
        .map_err(|e| FeedError::Transport(format!("base_url: {e}")))?;
    url.path_segments_mut()
        .map_err(|_| FeedError::Transport("base_url cannot have a path".into()))?
        .pop_if_empty()
        .extend(segments);
    Ok(url)
}

impl FeedError {
    /// A closed label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            FeedError::Credentials(_) => "credentials",
            FeedError::Forbidden(_) => "forbidden",
            FeedError::NotFound(_) => "not_found",
            FeedError::BadRequest(_) => "bad_request",
            FeedError::RateLimited { .. } => "rate_limited",
            FeedError::Server(_) => "server",
            FeedError::Status(_) => "status",
            FeedError::Timeout | FeedError::RunTimeout(_) => "timeout",
            FeedError::Transport(_) => "transport",
            FeedError::Parse(_) => "parse",
            FeedError::Partial(_) => "partial",
        }
    }

    /// The same error with every spelling of the feed's secrets removed
    /// from its text: a source may echo the request (its URL, with a key
    /// percent-encoded) in an error body.
    pub fn redacted(self, secrets: &[String]) -> Self {
        let r = |t: String| crate::secret::redact(&t, secrets);
        match self {
            FeedError::Credentials(t) => FeedError::Credentials(r(t)),
            FeedError::Forbidden(t) => FeedError::Forbidden(r(t)),
            FeedError::NotFound(t) => FeedError::NotFound(r(t)),
            FeedError::BadRequest(t) => FeedError::BadRequest(r(t)),
            FeedError::Transport(t) => FeedError::Transport(r(t)),
            FeedError::Parse(t) => FeedError::Parse(r(t)),
            FeedError::Partial(t) => FeedError::Partial(r(t)),
            other => other,
        }
    }

    /// The source asked for a pause.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            FeedError::RateLimited { retry_after } => *retry_after,
            _ => None,
        }
    }

    pub fn from_reqwest(e: reqwest::Error) -> Self {
        // Display of a reqwest::Error prints the URL, whose query can hold
        // the key: only its host and the error's kind are kept.
        let host = crate::transport::host_of(&e);
        let e = e.without_url();
        if e.is_timeout() {
            return FeedError::Timeout;
        }
        let what = crate::transport::describe(&e);
        FeedError::Transport(match host {
            Some(h) => format!("{what} ({h})"),
            None => what.to_owned(),
        })
    }
}

/// What a pull read.
#[derive(Debug, Default)]
pub struct PullStats {
    /// Calls made (pages, report windows).
    pub pages: u64,
    pub rows: u64,
    /// Protect360: windows split at the row limit, single days cut by it.
    pub splits: u64,
    pub truncated: u64,
    /// Some reports failed, the others were read.
    pub partial: Option<FeedError>,
    /// The reports read to the end (Protect360 `"<topic> <app>"`).
    pub done: Vec<String>,
}

/// Called as a pull goes, for progress bars and logs.
pub trait Progress: Send + Sync {
    /// One page (a call) answered with `rows` rows.
    fn page(&self, label: &str, rows: u64);
    /// Something worth saying (a window split, a cut report).
    fn note(&self, message: &str);
}

/// Progress nobody watches.
pub struct Quiet;
impl Progress for Quiet {
    fn page(&self, _: &str, _: u64) {}
    fn note(&self, message: &str) {
        tracing::info!("{message}");
    }
}

/// The HTTP client of every feed: rustls, pooled, no redirects (a
/// redirect to a login page must not pass for data), idle-read timeout
/// (a hung connection ends).
pub fn client(timeout: Duration) -> reqwest::Client {
    crate::transport::install_crypto_provider();
    reqwest::Client::builder()
        .connect_timeout(timeout)
        .read_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("fraudgate/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_default()
}

/// Column names compared as `advertising_id`: lowercase, runs of anything
/// but letters, digits and `.` become one `_`.
pub fn normalize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.trim().chars() {
        if c.is_alphanumeric() || c == '.' {
            out.extend(c.to_lowercase());
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    out.trim_matches('_').to_owned()
}

fn pick(given: &[String], default: &[&str]) -> Vec<String> {
    if given.is_empty() {
        default.iter().map(|s| normalize(s)).collect()
    } else {
        given.iter().map(|s| normalize(s)).collect()
    }
}

impl Columns {
    /// The columns a feed reads: these, or the kind's defaults where
    /// empty, normalised.
    pub fn resolved(&self, kind: FeedKind) -> Self {
        let c = self;
        // Protect360: AppsFlyer raw-data headers; Fraudshield: the report
        // JSON keys; FraudScore: Data API field names.
        type Names = &'static [&'static str];
        let (ip, device, affiliate, sub, reason, sub_reason): (
            Names,
            Names,
            Names,
            Names,
            Names,
            Names,
        ) = match kind {
            FeedKind::Protect360 => (
                &["IP"],
                &[
                    "Advertising ID",
                    "IDFA",
                    "Android ID",
                    "OAID",
                    "Amazon Fire ID",
                ],
                &["Site ID"],
                &["Sub Site ID"],
                &["Blocked Reason", "Fraud Reason"],
                &["Blocked Sub Reason", "Fraud Sub Reason"],
            ),
            FeedKind::Fraudshield => (
                &["remote_address"],
                &["device_id", "uuid"],
                &["affiliate"],
                &["sub_id"],
                &["reason", "rejected_reason.simple_reason"],
                &["advanced_reason", "rejected_reason.advanced_reason"],
            ),
            // Only fields the Data API documents (reference 000) are
            // asked for by default; device ids and subs, where a channel
            // has them, are named in the feed's `columns`.
            FeedKind::FraudscoreData => (&["ipv4_str"], &[], &["affiliate_id"], &[], &[], &[]),
        };
        Columns {
            ip: pick(&c.ip, ip),
            device: pick(&c.device, device),
            affiliate: pick(&c.affiliate, affiliate),
            sub: pick(&c.sub, sub),
            reason: pick(&c.reason, reason),
            sub_reason: pick(&c.sub_reason, sub_reason),
        }
    }

    /// Every column name read (for a Data API `field` list).
    pub fn all(&self) -> Vec<&str> {
        let mut v: Vec<&str> = [
            &self.ip,
            &self.device,
            &self.affiliate,
            &self.sub,
            &self.reason,
            &self.sub_reason,
        ]
        .into_iter()
        .flatten()
        .map(String::as_str)
        .collect();
        v.dedup();
        v
    }

    /// Builds a row; `get` answers a normalised column name.
    pub fn row<'a>(&self, get: impl Fn(&str) -> Option<&'a str>) -> Row {
        let first = |names: &[String]| {
            names
                .iter()
                .filter_map(|n| get(n))
                .map(str::trim)
                .find(|v| present(v))
                .map(str::to_owned)
        };
        let mut devices: Vec<String> = Vec::new();
        for n in &self.device {
            if let Some(v) = get(n).map(str::trim).filter(|v| present(v) && !zero_id(v))
                && !devices.iter().any(|d| d == v)
            {
                devices.push(v.to_owned());
            }
        }
        Row {
            ip: first(&self.ip),
            devices,
            affiliate: first(&self.affiliate),
            sub: first(&self.sub),
            reason: first(&self.reason),
            sub_reason: first(&self.sub_reason),
        }
    }
}

/// Header positions of a CSV answer, by normalised name.
pub fn header_index(headers: &csv::StringRecord) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for (i, h) in headers.iter().enumerate() {
        m.entry(normalize(h.trim_start_matches('\u{feff}')))
            .or_insert(i);
    }
    m
}

/// Flattens a JSON object into normalised `a.b` keys with text values
/// (numbers as written, arrays joined with commas, nulls left out).
pub fn flatten(v: &serde_json::Value) -> HashMap<String, String> {
    fn walk(prefix: &str, v: &serde_json::Value, out: &mut HashMap<String, String>) {
        use serde_json::Value as V;
        match v {
            V::Object(m) => {
                for (k, v) in m {
                    let key = if prefix.is_empty() {
                        normalize(k)
                    } else {
                        format!("{prefix}.{}", normalize(k))
                    };
                    walk(&key, v, out);
                }
            }
            V::Null => {}
            V::String(s) => {
                out.insert(prefix.to_owned(), s.clone());
            }
            V::Array(a) => {
                let parts: Vec<String> = a
                    .iter()
                    .filter_map(|x| match x {
                        V::String(s) => Some(s.clone()),
                        V::Null | V::Object(_) | V::Array(_) => None,
                        other => Some(other.to_string()),
                    })
                    .collect();
                if !parts.is_empty() {
                    out.insert(prefix.to_owned(), parts.join(","));
                }
            }
            other => {
                out.insert(prefix.to_owned(), other.to_string());
            }
        }
    }
    let mut out = HashMap::new();
    walk("", v, &mut out);
    out
}

/// Not a value: empty or a placeholder reports use.
fn present(v: &str) -> bool {
    !v.is_empty()
        && !matches!(
            v.to_ascii_lowercase().as_str(),
            "null" | "none" | "n/a" | "na" | "-" | "unknown"
        )
}

/// The all-zero advertising id of a device with tracking limited: shared
/// by millions of devices, never a device to block.
fn zero_id(v: &str) -> bool {
    v.bytes().all(|b| b == b'0' || b == b'-')
}

/// The first bytes of an answer, one line. (Secrets are taken out of
/// every error a pull returns: [`FeedError::redacted`].)
pub fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(300)]);
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    one_line.trim().to_owned()
}

/// An HTML page where data was expected (a login page served with 200).
pub fn looks_like_html(content_type: Option<&str>, body_start: &[u8]) -> bool {
    if content_type.is_some_and(|c| c.to_ascii_lowercase().contains("text/html")) {
        return true;
    }
    let start = body_start
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .map_or(&body_start[..0], |i| &body_start[i..]);
    let head: Vec<u8> = start.iter().take(15).map(u8::to_ascii_lowercase).collect();
    head.starts_with(b"<!doctype") || head.starts_with(b"<html")
}

/// `Retry-After` in seconds (the HTTP-date form is read as 60 s).
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    Some(Duration::from_secs(
        v.trim().parse().unwrap_or(60).min(3600),
    ))
}

/// The common status handling; `what` names the source for messages.
pub fn check_status(
    status: StatusCode,
    headers: &reqwest::header::HeaderMap,
    body: &[u8],
    what: &str,
) -> Result<(), FeedError> {
    let s = status.as_u16();
    match s {
        200..=299 => Ok(()),
        400 => Err(FeedError::BadRequest(format!(
            "{what} refused the request (HTTP 400): {}",
            snippet(body)
        ))),
        401 => Err(FeedError::Credentials(format!(
            "{what} refused the credentials (HTTP 401): check the token/key in the feed's config"
        ))),
        403 => Err(FeedError::Forbidden(format!(
            "{what} says these credentials may not read this (HTTP 403)"
        ))),
        404 => Err(FeedError::NotFound(format!(
            "{what} answered 404: the endpoint or id is wrong, or the account is not permitted"
        ))),
        429 => Err(FeedError::RateLimited {
            retry_after: retry_after(headers),
        }),
        500..=599 => Err(FeedError::Server(s)),
        _ => Err(FeedError::Status(s)),
    }
}

/// Reads a whole (JSON) answer, at most `limit` bytes.
pub async fn read_body(resp: reqwest::Response, limit: usize) -> Result<Vec<u8>, FeedError> {
    let mut resp = resp;
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(FeedError::from_reqwest)? {
        if out.len() + chunk.len() > limit {
            return Err(too_large(limit));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// An answer past `max_response_mb`.
pub fn too_large(limit: usize) -> FeedError {
    FeedError::Parse(format!(
        "answer larger than {} MiB (max_response_mb); lower page_size or narrow the window",
        (limit >> 20).max(1)
    ))
}

/// A row past `max_row_bytes`.
pub fn row_too_long(limit: usize) -> FeedError {
    FeedError::Parse(format!(
        "a row longer than {limit} bytes (max_row_bytes): the answer is not the expected data"
    ))
}

/// `config` for sources that need it.
pub struct Ctx<'a> {
    pub cfg: &'a FeedConfig,
    pub http: &'a reqwest::Client,
    /// The feed's request budget: every call waits on it first.
    pub pacer: &'a super::pace::Pacer,
    /// Reports an earlier, partly failed run read through a time (see
    /// `FeedState::reports_done`).
    pub reports_done: &'a std::collections::BTreeMap<String, u64>,
    /// Resolved ([`Columns::resolved`]).
    pub columns: &'a Columns,
    pub progress: &'a dyn Progress,
}
