//! Request body and header helpers shared by the doors.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};

use super::error::ApiError;

/// Header a caller uses to lower its time budget (milliseconds).
pub const DEADLINE_HEADER: &str = "x-fraudgate-deadline-ms";

/// A JSON request body: content type checked, size limit mapped to 413.
pub fn json_body(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Bytes, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim();
    let is_json = mime.eq_ignore_ascii_case("application/json")
        || (mime.len() > 5 && mime[mime.len() - 5..].eq_ignore_ascii_case("+json"));
    if !is_json {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Content-Type must be application/json",
        )
        .with_field("Content-Type"));
    }
    body.map_err(|rej| {
        if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large("body", "request body exceeds server.max_body_bytes")
        } else {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_body",
                "could not read request body",
            )
            .with_field("body")
        }
    })
}

/// The request's time budget: the door's default, lowered (never raised)
/// by `X-Fraudgate-Deadline-Ms`.
pub fn budget(headers: &HeaderMap, default: Duration) -> Result<Duration, ApiError> {
    let Some(v) = headers.get(DEADLINE_HEADER) else {
        return Ok(default);
    };
    let ms: u64 = v
        .to_str()
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_header",
                "must be a whole number of milliseconds",
            )
            .with_field("X-Fraudgate-Deadline-Ms")
        })?;
    Ok(default.min(Duration::from_millis(ms)))
}
