//! Decision headers shared by the doors that answer without a JSON body.

use std::cell::RefCell;

use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::error::ApiError;
use crate::decision::{Decision, Source};

/// `value` as a JSON response, serialized once into a buffer sized for a
/// decision (no regrowth on the hot path).
pub fn json<T: Serialize>(value: &T) -> Response {
    let mut buf = Vec::with_capacity(512);
    match serde_json::to_writer(&mut buf, value) {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            buf,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "a response could not be serialized");
            ApiError::internal().into_response()
        }
    }
}

/// `X-Fraudgate-Decision`, `-Source`, `-Reason`, `-Id`, `-Tags`
/// (comma-separated; tag characters are validated, so always header-safe).
pub fn decision_headers(h: &mut HeaderMap, d: &Decision) {
    h.insert(
        HeaderName::from_static("x-fraudgate-decision"),
        HeaderValue::from_static(d.action.as_str()),
    );
    h.insert(
        HeaderName::from_static("x-fraudgate-source"),
        HeaderValue::from_static(d.source.as_str()),
    );
    h.insert(
        HeaderName::from_static("x-fraudgate-reason"),
        HeaderValue::from_static(d.ruling.reason.as_str()),
    );
    if let Ok(v) = HeaderValue::from_bytes(&d.id.hyphenated()) {
        h.insert(HeaderName::from_static("x-fraudgate-id"), v);
    }
    let tags = if d.tags.is_clean() {
        Ok(HeaderValue::from_static(""))
    } else {
        let mut tags = String::new();
        for (i, t) in d.tags.iter().enumerate() {
            if i > 0 {
                tags.push(',');
            }
            tags.push_str(t);
        }
        HeaderValue::from_str(&tags)
    };
    if let Ok(v) = tags {
        h.insert(HeaderName::from_static("x-fraudgate-tags"), v);
    }
}

thread_local! {
    /// The last TTL's `X-Accel-Expires` and `Cache-Control` values: hits
    /// within a second share them (a clone is a reference count).
    static TTL_HEADERS: RefCell<Option<(u64, HeaderValue, HeaderValue)>> =
        const { RefCell::new(None) };
}

/// `X-Accel-Expires: secs` and `Cache-Control: private, max-age=secs`.
fn ttl_headers(secs: u64) -> Option<(HeaderValue, HeaderValue)> {
    TTL_HEADERS.with_borrow_mut(|last| {
        if let Some((s, a, c)) = last.as_ref().filter(|(s, ..)| *s == secs) {
            debug_assert_eq!(*s, secs);
            return Some((a.clone(), c.clone()));
        }
        let a = HeaderValue::from_str(&secs.to_string()).ok()?;
        let c = HeaderValue::from_str(&format!("private, max-age={secs}")).ok()?;
        *last = Some((secs, a.clone(), c.clone()));
        Some((a, c))
    })
}

/// Lets a cache in front (nginx `proxy_cache` on the auth subrequest)
/// keep the answer as long as fraudgate keeps the verdict; fallback and
/// local answers are not cached there.
pub fn cache_headers(h: &mut HeaderMap, d: &Decision) {
    let secs = d.cache_ttl.as_secs();
    if secs > 0 && matches!(d.source, Source::Upstream | Source::Cache) {
        if let Some((expires, control)) = ttl_headers(secs) {
            h.insert(HeaderName::from_static("x-accel-expires"), expires);
            h.insert(header::CACHE_CONTROL, control);
        }
    } else {
        h.insert(
            HeaderName::from_static("x-accel-expires"),
            HeaderValue::from_static("0"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}
