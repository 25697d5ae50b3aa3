//! The RT client's health as an operator sees it: whether calls are
//! failing, why, and since when. Fail-open keeps decisions flowing when RT
//! fails; this makes sure it never fails silently.
//!
//! Each failure cause is logged at WARN at most once a minute, naming what
//! to check; a refused key is a configuration error, logged at ERROR the
//! first time. A success after failures is logged once at INFO. The hot
//! path (a success while healthy) reads one atomic.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::UpstreamError;

/// Why RT calls fail, as an operator tells causes apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// 401 or 403: the key is wrong, expired or not allowed.
    KeyRefused,
    /// Another status (4xx, 3xx): the request or the URL is wrong.
    HttpStatus,
    /// 5xx: RT itself is failing.
    Http5xx,
    Timeout,
    /// DNS, refused, reset, TLS: the detail says which.
    Connect,
    /// An answer that is not an RT tag list.
    BadBody,
}

impl Cause {
    const ALL: [Cause; 6] = [
        Cause::KeyRefused,
        Cause::HttpStatus,
        Cause::Http5xx,
        Cause::Timeout,
        Cause::Connect,
        Cause::BadBody,
    ];

    /// The cause of a failed call, if it is RT's (not fraudgate's own
    /// limits or deadlines).
    pub fn of(e: UpstreamError) -> Option<Cause> {
        Some(match e {
            UpstreamError::Http(401 | 403) => Cause::KeyRefused,
            UpstreamError::Http(500..=599) => Cause::Http5xx,
            UpstreamError::Http(_) => Cause::HttpStatus,
            UpstreamError::Timeout => Cause::Timeout,
            UpstreamError::Connect => Cause::Connect,
            UpstreamError::BadBody(_) => Cause::BadBody,
            _ => return None,
        })
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Cause::KeyRefused => "key_refused",
            Cause::HttpStatus => "http_status",
            Cause::Http5xx => "http_5xx",
            Cause::Timeout => "timeout",
            Cause::Connect => "connect_error",
            Cause::BadBody => "bad_body",
        }
    }

    /// What the operator should check.
    const fn advice(self) -> &'static str {
        match self {
            Cause::KeyRefused => {
                "check upstream.key (FRAUDGATE_UPSTREAM__KEY): FraudScore refused it"
            }
            Cause::HttpStatus => "check upstream.url: RT rejected the request",
            Cause::Http5xx => "FraudScore RT is failing; nothing to change here",
            Cause::Timeout => {
                "RT did not answer within upstream.timeout_ms: check the network path to RT, or raise the timeout"
            }
            Cause::Connect => "check upstream.url, DNS and outbound firewall rules",
            Cause::BadBody => "check that upstream.url points at FraudScore RT",
        }
    }

    fn index(self) -> usize {
        Cause::ALL.iter().position(|c| *c == self).unwrap_or(0)
    }
}

impl Serialize for Cause {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// The last failure, while calls are failing.
#[derive(Debug, Clone, Serialize)]
pub struct Failing {
    pub cause: Cause,
    /// The HTTP status, for the HTTP causes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// What went wrong: "HTTP 403", "connection refused", ...
    pub detail: String,
    /// What to check.
    pub advice: &'static str,
    /// When the calls began to fail (RFC 3339, UTC).
    pub since: String,
    /// Failed calls since then.
    pub failures: u64,
}

/// Shared by every clone of the RT client.
pub struct UpstreamStatus {
    failing: AtomicBool,
    last: Mutex<Option<Failing>>,
    /// Milliseconds after `epoch` of the last WARN per cause (0: never).
    warned: [AtomicU64; Cause::ALL.len()],
    epoch: Instant,
    key_error_logged: AtomicBool,
}

/// At most one WARN per cause in this time.
const WARN_EVERY: Duration = Duration::from_secs(60);

impl Default for UpstreamStatus {
    fn default() -> Self {
        UpstreamStatus {
            failing: AtomicBool::new(false),
            last: Mutex::new(None),
            warned: Default::default(),
            epoch: Instant::now(),
            key_error_logged: AtomicBool::new(false),
        }
    }
}

impl UpstreamStatus {
    /// The last failure while calls are failing; None when the last call
    /// succeeded (or none was made).
    pub fn failing(&self) -> Option<Failing> {
        if !self.failing.load(Ordering::Relaxed) {
            return None;
        }
        self.lock().clone()
    }

    pub(super) fn succeeded(&self) {
        if !self.failing.load(Ordering::Relaxed) {
            return;
        }
        // The flag changes under the lock, with what it flags.
        let was = {
            let mut last = self.lock();
            self.failing.store(false, Ordering::Relaxed);
            last.take()
        };
        if let Some(f) = was {
            tracing::info!(
                cause = f.cause.as_str(),
                failures = f.failures,
                since = %f.since,
                "FraudScore RT answers again"
            );
        }
    }

    /// Records a failed call: `detail` says what happened ("HTTP 403",
    /// "connection refused"); it never holds the key.
    pub(super) fn failed(&self, error: UpstreamError, detail: &str) {
        let Some(cause) = Cause::of(error) else {
            return;
        };
        let status = match error {
            UpstreamError::Http(s) => Some(s),
            _ => None,
        };
        {
            let mut last = self.lock();
            match last.as_mut() {
                Some(f) if f.cause == cause && f.status == status => f.failures += 1,
                Some(f) => {
                    let since = std::mem::take(&mut f.since);
                    *f = failing(cause, status, detail, since, f.failures + 1);
                }
                None => {
                    let now = jiff::Timestamp::now().to_string();
                    *last = Some(failing(cause, status, detail, now, 1));
                }
            }
            self.failing.store(true, Ordering::Relaxed);
        }
        self.report(cause, detail);
    }

    /// The log line for a failure: ERROR for the first refused key, then
    /// WARN at most once a minute per cause.
    fn report(&self, cause: Cause, detail: &str) {
        if cause == Cause::KeyRefused && !self.key_error_logged.swap(true, Ordering::Relaxed) {
            tracing::error!(
                cause = cause.as_str(),
                detail,
                "configuration error: FraudScore RT refused upstream.key; every event gets the \
                 on_upstream_error fallback until it is fixed"
            );
            self.mark_warned(cause);
            return;
        }
        let now = self.epoch.elapsed().as_millis() as u64 + 1;
        let slot = &self.warned[cause.index()];
        let last = slot.load(Ordering::Relaxed);
        if last != 0 && now.saturating_sub(last) < WARN_EVERY.as_millis() as u64 {
            return;
        }
        if slot
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            tracing::warn!(
                cause = cause.as_str(),
                detail,
                advice = cause.advice(),
                "FraudScore RT calls are failing; decisions use the on_upstream_error fallback"
            );
        }
    }

    fn mark_warned(&self, cause: Cause) {
        let now = self.epoch.elapsed().as_millis() as u64 + 1;
        self.warned[cause.index()].store(now, Ordering::Relaxed);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Failing>> {
        self.last.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn failing(
    cause: Cause,
    status: Option<u16>,
    detail: &str,
    since: String,
    failures: u64,
) -> Failing {
    Failing {
        cause,
        status,
        detail: detail.to_owned(),
        advice: cause.advice(),
        since,
        failures,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_told_apart_counted_and_cleared_by_a_success() {
        let s = UpstreamStatus::default();
        assert!(s.failing().is_none());
        s.failed(UpstreamError::Http(403), "HTTP 403");
        s.failed(UpstreamError::Http(403), "HTTP 403");
        let f = s.failing().unwrap();
        assert_eq!(
            (f.cause, f.status, f.failures),
            (Cause::KeyRefused, Some(403), 2)
        );
        assert!(f.advice.contains("upstream.key"));
        let since = f.since.clone();
        s.failed(UpstreamError::Connect, "connection refused");
        let f = s.failing().unwrap();
        assert_eq!((f.cause, f.status, f.failures), (Cause::Connect, None, 3));
        assert_eq!(f.detail, "connection refused");
        assert_eq!(f.since, since, "failing since the first failure");
        // fraudgate's own limits are not RT failing.
        s.failed(UpstreamError::Busy, "busy");
        assert_eq!(s.failing().unwrap().cause, Cause::Connect);
        s.succeeded();
        assert!(s.failing().is_none());
    }

    #[test]
    fn a_cause_is_named_as_the_metric_outcome_of_its_error() {
        for e in [
            UpstreamError::Http(403),
            UpstreamError::Http(404),
            UpstreamError::Http(503),
            UpstreamError::Timeout,
            UpstreamError::Connect,
            UpstreamError::BadBody(crate::upstream::BadBody::NotTags),
        ] {
            assert_eq!(Cause::of(e).unwrap().as_str(), e.outcome(), "{e:?}");
        }
    }

    #[test]
    fn http_statuses_map_to_their_cause() {
        assert_eq!(Cause::of(UpstreamError::Http(401)), Some(Cause::KeyRefused));
        assert_eq!(Cause::of(UpstreamError::Http(404)), Some(Cause::HttpStatus));
        assert_eq!(Cause::of(UpstreamError::Http(502)), Some(Cause::Http5xx));
        assert_eq!(Cause::of(UpstreamError::Http(302)), Some(Cause::HttpStatus));
        assert_eq!(Cause::of(UpstreamError::Deadline), None);
    }
}
