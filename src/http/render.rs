//! Decision headers shared by the doors that answer without a JSON body.

use axum::http::{HeaderMap, HeaderName, HeaderValue, header};

use crate::decision::{Decision, Source};

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
    if let Ok(v) = HeaderValue::from_str(&d.id.to_string()) {
        h.insert(HeaderName::from_static("x-fraudgate-id"), v);
    }
    let mut tags = String::new();
    for (i, t) in d.tags.iter().enumerate() {
        if i > 0 {
            tags.push(',');
        }
        tags.push_str(t);
    }
    if let Ok(v) = HeaderValue::from_str(&tags) {
        h.insert(HeaderName::from_static("x-fraudgate-tags"), v);
    }
}

/// Lets a cache in front (nginx `proxy_cache` on the auth subrequest)
/// keep the answer as long as fraudgate keeps the verdict; fallback and
/// local answers are not cached there.
pub fn cache_headers(h: &mut HeaderMap, d: &Decision) {
    let secs = d.cache_ttl.as_secs();
    if secs > 0 && matches!(d.source, Source::Upstream | Source::Cache) {
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            h.insert(HeaderName::from_static("x-accel-expires"), v);
        }
        if let Ok(v) = HeaderValue::from_str(&format!("private, max-age={secs}")) {
            h.insert(header::CACHE_CONTROL, v);
        }
    } else {
        h.insert(
            HeaderName::from_static("x-accel-expires"),
            HeaderValue::from_static("0"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}
