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
    // These five, the cache headers and a content type: room made once
    // instead of the map growing midway.
    h.reserve(8);
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

/// Slots of the per-thread TTL header cache: a hit's remaining TTL in
/// seconds picks one (`secs % TTL_SLOTS`), so every TTL up to this many
/// seconds has a slot of its own.
const TTL_SLOTS: usize = 512;

type TtlSlot = Option<(u64, HeaderValue, HeaderValue)>;

thread_local! {
    /// `X-Accel-Expires` and `Cache-Control` values by TTL, kept per
    /// thread: a hit whose TTL was rendered before takes a clone (a
    /// reference count) instead of formatting and allocating two values.
    static TTL_HEADERS: RefCell<Box<[TtlSlot]>> =
        RefCell::new(vec![None; TTL_SLOTS].into_boxed_slice());
}

/// `X-Accel-Expires: secs` and `Cache-Control: private, max-age=secs`.
fn ttl_headers(secs: u64) -> Option<(HeaderValue, HeaderValue)> {
    TTL_HEADERS.with_borrow_mut(|slots| {
        let slot = &mut slots[(secs % TTL_SLOTS as u64) as usize];
        if let Some((_, a, c)) = slot.as_ref().filter(|(s, ..)| *s == secs) {
            return Some((a.clone(), c.clone()));
        }
        let a = HeaderValue::from_str(&secs.to_string()).ok()?;
        let c = HeaderValue::from_str(&format!("private, max-age={secs}")).ok()?;
        *slot = Some((secs, a.clone(), c.clone()));
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
