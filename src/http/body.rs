//! Request body and header helpers shared by the doors.

use std::net::IpAddr;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};

use super::AppState;
use super::error::ApiError;
use crate::config::OnError;
use crate::decision::Door;
use crate::event::{Connection, EventType};
use crate::score::ScoreOpts;

/// Header a caller uses to lower its time budget (milliseconds).
pub const DEADLINE_HEADER: HeaderName = HeaderName::from_static("x-fraudgate-deadline-ms");

/// A JSON request body: content type checked, size limit mapped to 413,
/// nesting limited to `max_depth` (deep nesting costs stack and time in
/// every parser downstream).
pub fn json_body(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    max_depth: usize,
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
    let body = body.map_err(|rej| {
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
    })?;
    if json_depth(&body) > max_depth {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "too_deep",
            "JSON nesting exceeds server.max_json_depth",
        )
        .with_field("body"));
    }
    Ok(body)
}

/// Deepest `[`/`{` nesting in a JSON text, strings skipped.
pub fn json_depth(bytes: &[u8]) -> usize {
    let (mut depth, mut max, mut in_str, mut esc) = (0usize, 0usize, false, false);
    for &b in bytes {
        if in_str {
            match (esc, b) {
                (true, _) => esc = false,
                (false, b'\\') => esc = true,
                (false, b'"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// The request's time budget: the door's default, lowered (never raised)
/// by the `X-Fraudgate-Deadline-Ms` value, when one is honoured.
fn budget(header: Option<&HeaderValue>, default: Duration) -> Result<Duration, ApiError> {
    let Some(v) = header else {
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

/// How an API door scores: its budget (`budget_ms`, 0 = the scorer's
/// default, lowered by `X-Fraudgate-Deadline-Ms`: the caller is the ad
/// server, spending its own time) and its fail mode.
pub fn score_opts(
    state: &AppState,
    headers: &HeaderMap,
    door: Door,
    budget_ms: u64,
    on_error: OnError,
) -> Result<ScoreOpts, ApiError> {
    opts(
        state,
        headers.get(DEADLINE_HEADER),
        door,
        budget_ms,
        on_error,
    )
}

/// How a browser-facing door scores: as [`score_opts`], but
/// `X-Fraudgate-Deadline-Ms` is honoured only from a trusted proxy
/// (`server.trusted_proxies`). From anyone else it is ignored: a bot could
/// otherwise send 0 and get the fail-open fallback without RT being asked.
pub fn browser_opts(
    state: &AppState,
    peer: IpAddr,
    headers: &HeaderMap,
    door: Door,
    budget_ms: u64,
    on_error: OnError,
) -> Result<ScoreOpts, ApiError> {
    let header = headers
        .get(DEADLINE_HEADER)
        .filter(|_| state.trusted.is_trusted(peer.to_canonical()));
    opts(state, header, door, budget_ms, on_error)
}

fn opts(
    state: &AppState,
    deadline: Option<&HeaderValue>,
    door: Door,
    budget_ms: u64,
    on_error: OnError,
) -> Result<ScoreOpts, ApiError> {
    let default = if budget_ms > 0 {
        Duration::from_millis(budget_ms)
    } else {
        state.scorer.default_budget()
    };
    Ok(ScoreOpts {
        door,
        budget: budget(deadline, default)?,
        on_error: on_error.action(),
        client: None,
    })
}

/// What the connection says about a browser-facing request: the client
/// IP (behind trusted proxies, from their header), the `User-Agent`, and
/// the door's event type.
pub fn connection<'a>(
    state: &AppState,
    peer: IpAddr,
    headers: &'a HeaderMap,
    event_type: EventType,
) -> Connection<'a> {
    Connection {
        ip: state.trusted.client_ip(peer, headers),
        ua: headers
            .get(header::USER_AGENT)
            .map_or(std::borrow::Cow::Borrowed(""), crate::event::header_text),
        event_type,
        speculation: crate::event::Speculation::from_headers(headers),
    }
}

/// Options of the API doors that share `doors.check`: /v1/check, the
/// batch and the RT drop-in (the policy's own fail mode).
pub fn api_opts(state: &AppState, headers: &HeaderMap, door: Door) -> Result<ScoreOpts, ApiError> {
    score_opts(
        state,
        headers,
        door,
        state.config.doors.check.budget_ms,
        OnError::Policy,
    )
}

#[cfg(test)]
mod tests {
    use super::json_depth;

    #[test]
    fn depth_counts_brackets_outside_strings() {
        assert_eq!(json_depth(b"{}"), 1);
        assert_eq!(json_depth(br#"{"a":[{"b":"[[[{"}]}"#), 3);
        assert_eq!(json_depth(br#"["\"[[["]"#), 1);
        assert_eq!(json_depth(b"1"), 0);
        assert_eq!(json_depth(&b"[".repeat(100)), 100);
    }
}
