//! The FraudScore RT client: one pooled keep-alive connection pool, a hard
//! per-call deadline, strict response checks, and errors classified by cause.
//!
//! The RT key travels in the query string, so the request URL is a secret:
//! it is never logged, and `reqwest::Error`s are stripped of it
//! (`without_url`) before anything prints them.

use std::time::{Duration, Instant};

use crate::event::{Event, truncate};
use crate::metrics as m;
use crate::secret::Secret;
use crate::verdict::Tags;

mod config;
mod status;

pub use crate::decision::{BadBody, UpstreamError};
pub use crate::transport::install_crypto_provider;

pub use config::UpstreamConfig;
pub use status::{Cause, UpstreamStatus};

/// Largest RT body accepted; RT answers at most ten short tags.
pub const MAX_BODY_BYTES: usize = 4096;

/// Checks the configured RT URL: https, or http to loopback (a local test
/// server) unless explicitly allowed.
pub fn validate_url(url: &str, allow_insecure_http: bool) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
    match parsed.scheme() {
        "https" => Ok(()),
        "http" => {
            let host = parsed.host_str().unwrap_or("");
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let loopback = host == "localhost"
                || host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if loopback || allow_insecure_http {
                Ok(())
            } else {
                Err("plain http sends the RT key in clear; use https, a loopback host, or set upstream.allow_insecure_http = true".into())
            }
        }
        other => Err(format!("unsupported scheme {other:?}")),
    }
}

/// The pooled FraudScore RT client. Cheap to clone.
#[derive(Clone)]
pub struct Upstream {
    client: reqwest::Client,
    base: reqwest::Url,
    key: Secret,
    timeout: Duration,
    retry: bool,
    /// Caps RT calls in flight (late fills and batches included).
    in_flight: std::sync::Arc<tokio::sync::Semaphore>,
    metrics: std::sync::Arc<CallMetrics>,
    status: std::sync::Arc<UpstreamStatus>,
}

/// A failed call: the error, and what happened in words for the status
/// and the log ("HTTP 403", "connection refused"; never the URL).
struct Failure {
    error: UpstreamError,
    detail: std::borrow::Cow<'static, str>,
}

impl From<UpstreamError> for Failure {
    fn from(error: UpstreamError) -> Self {
        let detail = match error {
            UpstreamError::Http(s) => format!("HTTP {s}").into(),
            UpstreamError::BadBody(why) => why.as_str().into(),
            other => other.outcome().into(),
        };
        Failure { error, detail }
    }
}

/// The outcomes an RT call is labelled with (`ok` and the error outcomes
/// a call can end in).
pub const OUTCOMES: [&str; 8] = [
    "ok",
    "key_refused",
    "http_status",
    "http_5xx",
    "timeout",
    "connect_error",
    "bad_body",
    "busy",
];

/// Every outcome's series at 0, so a dashboard sees 0 before the first
/// call (and in the keyless mode, where no call is made).
pub fn register_metrics() {
    for o in OUTCOMES {
        metrics::counter!(m::UPSTREAM_REQUESTS, "outcome" => o).increment(0);
    }
}

/// RT call metrics, registered once per outcome.
struct CallMetrics {
    requests: [metrics::Counter; OUTCOMES.len()],
    durations: [metrics::Histogram; OUTCOMES.len()],
    retries: metrics::Counter,
    unknown_tags: metrics::Counter,
}

impl CallMetrics {
    fn new() -> Self {
        CallMetrics {
            requests: OUTCOMES.map(|o| metrics::counter!(m::UPSTREAM_REQUESTS, "outcome" => o)),
            durations: OUTCOMES.map(|o| metrics::histogram!(m::UPSTREAM_DURATION, "outcome" => o)),
            retries: metrics::counter!(m::UPSTREAM_RETRIES),
            unknown_tags: metrics::counter!(m::UPSTREAM_UNKNOWN_TAGS),
        }
    }

    /// Only outcomes of [`OUTCOMES`] reach here (a call ends in no other).
    fn index(outcome: &str) -> usize {
        let i = OUTCOMES.iter().position(|o| *o == outcome);
        debug_assert!(i.is_some(), "outcome {outcome} is not in OUTCOMES");
        i.unwrap_or(0)
    }
}

/// A retry needs at least this much of the timeout left.
const MIN_RETRY_WINDOW: Duration = Duration::from_millis(10);

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("base", &self.base.as_str())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Upstream {
    pub fn new(c: &UpstreamConfig) -> Result<Self, String> {
        validate_url(&c.url, c.allow_insecure_http)?;
        install_crypto_provider();
        let client = reqwest::Client::builder()
            .http1_only()
            .tcp_nodelay(true)
            .tcp_keepalive(Duration::from_secs(30))
            .pool_max_idle_per_host(c.pool_max_idle)
            .pool_idle_timeout(c.pool_idle_timeout())
            .connect_timeout(c.connect_timeout())
            .timeout(c.timeout())
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(concat!("fraudgate/", env!("CARGO_PKG_VERSION")))
            .https_only(!c.url.starts_with("http://"))
            .build()
            .map_err(|e| format!("cannot build HTTP client: {}", e.without_url()))?;
        // Parsed once: each call appends its query to a copy.
        let base =
            reqwest::Url::parse(&c.url).map_err(|e| format!("upstream.url {:?}: {e}", c.url))?;
        Ok(Upstream {
            client,
            base,
            key: c.key.clone(),
            timeout: c.timeout(),
            retry: c.retry_connect_errors,
            in_flight: std::sync::Arc::new(tokio::sync::Semaphore::new(c.max_in_flight)),
            metrics: std::sync::Arc::new(CallMetrics::new()),
            status: Default::default(),
        })
    }

    /// Whether calls are failing, why and since when.
    pub fn status(&self) -> &std::sync::Arc<UpstreamStatus> {
        &self.status
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Asks RT about one event. Records outcome and duration metrics.
    /// With `upstream.max_in_flight` calls already out, fails at once
    /// (`Busy`) instead of queueing.
    pub async fn check(&self, event: &Event) -> Result<Tags, UpstreamError> {
        let Ok(_permit) = self.in_flight.try_acquire() else {
            self.metrics.requests[CallMetrics::index("busy")].increment(1);
            return Err(UpstreamError::Busy);
        };
        let started = Instant::now();
        let deadline = tokio::time::Instant::from_std(started + self.timeout);
        let attempt = || async {
            tokio::time::timeout_at(deadline, self.fetch(event))
                .await
                .unwrap_or_else(|_| Err(UpstreamError::Timeout.into()))
        };
        let mut result = attempt().await;
        // One retry, for connection errors only (a stale pooled connection,
        // a reset), and only inside the same deadline. Never after a timeout.
        if self.retry
            && result
                .as_ref()
                .is_err_and(|f| f.error == UpstreamError::Connect)
            && started.elapsed() + MIN_RETRY_WINDOW < self.timeout
        {
            self.metrics.retries.increment(1);
            result = attempt().await;
        }
        let outcome = match &result {
            Ok(tags) => {
                if !tags.unknown().is_empty() {
                    self.metrics
                        .unknown_tags
                        .increment(tags.unknown().len() as u64);
                }
                self.status.succeeded();
                "ok"
            }
            Err(f) => {
                tracing::debug!(error = %f.error, detail = %f.detail, "upstream call failed");
                self.status.failed(f.error, &f.detail);
                f.error.outcome()
            }
        };
        let i = CallMetrics::index(outcome);
        self.metrics.requests[i].increment(1);
        self.metrics.durations[i].record(started.elapsed().as_secs_f64());
        result.map_err(|f| f.error)
    }

    async fn fetch(&self, event: &Event) -> Result<Tags, Failure> {
        let mut resp = self
            .client
            .get(self.url_for(event))
            .send()
            .await
            .map_err(classify)?;
        let status = resp.status().as_u16();
        if status != 200 {
            return Err(UpstreamError::Http(status).into());
        }
        if let Some(ct) = resp.headers().get(reqwest::header::CONTENT_TYPE) {
            let ct = ct.as_bytes();
            if !(ct.len() >= 5 && ct[..5].eq_ignore_ascii_case(b"text/")) {
                return Err(UpstreamError::BadBody(BadBody::ContentType).into());
            }
        }
        if resp
            .content_length()
            .is_some_and(|n| n > MAX_BODY_BYTES as u64)
        {
            return Err(UpstreamError::BadBody(BadBody::TooLarge).into());
        }
        let mut body: Vec<u8> = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(classify)? {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(UpstreamError::BadBody(BadBody::TooLarge).into());
            }
            body.extend_from_slice(&chunk);
        }
        let text =
            std::str::from_utf8(&body).map_err(|_| UpstreamError::BadBody(BadBody::NotUtf8))?;
        Ok(Tags::parse(text).map_err(|_| UpstreamError::BadBody(BadBody::NotTags))?)
    }

    /// The RT request URL: the 7 mandatory parameters, then every optional
    /// one the caller gave. Contains the key: never log it.
    pub fn url_for(&self, event: &Event) -> reqwest::Url {
        let mut url = self.base.clone();
        let at = event.at.to_string();
        let mut q = url.query_pairs_mut();
        q.append_pair("event_type", event.event_type.as_str())
            .append_pair("ip", &event.ip.to_string())
            .append_pair("ua", &event.ua)
            .append_pair("key", truncate(self.key.expose(), 255))
            .append_pair("at", at.as_str())
            .append_pair("affiliate_id", &event.affiliate_id)
            .append_pair("offer_id", &event.offer_id);
        for (opt, value) in event.optional().filter(|(o, _)| o.is_rt()) {
            q.append_pair(opt.name(), value);
        }
        drop(q);
        url
    }
}

/// Classifies a transport error. The error itself is dropped here: its
/// Display would print the URL, and with it the key; what is kept is its
/// kind ("connection refused", "DNS lookup failed", ...).
fn classify(e: reqwest::Error) -> Failure {
    let e = e.without_url();
    let error = if e.is_timeout() {
        UpstreamError::Timeout
    } else {
        UpstreamError::Connect
    };
    Failure {
        error,
        detail: crate::transport::describe(&e).into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::event::EventBuilder;

    #[test]
    fn url_has_mandatory_then_optional_parameters() {
        let mut c = Config::default().upstream;
        c.url = "http://127.0.0.1:1/".into();
        c.key = Secret::new("k&y");
        let up = Upstream::new(&c).unwrap();
        let e = EventBuilder::from_query(
            "event_type=click&ip=1.2.3.4&ua=Mozilla%2F5.0%20(X)&affiliate_id=6&offer_id=7&at=100&aff_sub2=a%20b",
        )
        .unwrap()
        .build()
        .unwrap();
        assert_eq!(
            up.url_for(&e).as_str(),
            "http://127.0.0.1:1/?event_type=click&ip=1.2.3.4&ua=Mozilla%2F5.0+%28X%29&key=k%26y&at=100&affiliate_id=6&offer_id=7&aff_sub2=a+b"
        );
    }

    #[test]
    fn a_query_in_the_configured_url_is_kept_before_the_event() {
        let e = EventBuilder::from_query(
            "event_type=click&ip=1.2.3.4&ua=x&affiliate_id=6&offer_id=7&at=100",
        )
        .unwrap()
        .build()
        .unwrap();
        for (base, start) in [
            (
                "http://127.0.0.1:1/rt?v=2",
                "http://127.0.0.1:1/rt?v=2&event_type=click&",
            ),
            (
                "http://127.0.0.1:1/rt?",
                "http://127.0.0.1:1/rt?event_type=click&",
            ),
        ] {
            let mut c = Config::default().upstream;
            c.url = base.into();
            let url = Upstream::new(&c).unwrap().url_for(&e);
            assert!(url.as_str().starts_with(start), "{base}: {url}");
        }
    }

    #[test]
    fn plain_http_only_for_loopback_unless_allowed() {
        assert!(validate_url("https://check.fraudscore.ai/", false).is_ok());
        assert!(validate_url("http://127.0.0.1:9/", false).is_ok());
        assert!(validate_url("http://[::1]:9/", false).is_ok());
        assert!(validate_url("http://localhost:9/", false).is_ok());
        assert!(validate_url("http://check.fraudscore.ai/", false).is_err());
        assert!(validate_url("http://check.fraudscore.ai/", true).is_ok());
        assert!(validate_url("ftp://x/", true).is_err());
        assert!(validate_url("not a url", true).is_err());
    }

    #[test]
    fn debug_does_not_print_the_key() {
        let mut c = Config::default().upstream;
        c.key = Secret::new("topsecret");
        let up = Upstream::new(&c).unwrap();
        assert!(!format!("{up:?}").contains("topsecret"));
    }
}
