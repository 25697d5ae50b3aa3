//! Request metrics, the request deadline, and log spans that never carry
//! the query string (it can hold client keys).

use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use crate::metrics as m;

/// Every route the router serves; anything else is labelled "unmatched".
pub const ROUTES: &[&str] = &[
    "/",
    "/v1/check",
    "/v1/check/batch",
    "/v1/auth",
    "/v1/auth/{*rest}",
    "/click",
    "/imp",
    "/v1/openrtb",
    "/healthz",
    "/readyz",
    "/metrics",
];

pub fn route_label(req: &Request) -> &'static str {
    req.extensions()
        .get::<MatchedPath>()
        .and_then(|p| ROUTES.iter().find(|r| **r == p.as_str()).copied())
        .unwrap_or("unmatched")
}

#[allow(clippy::match_overlapping_arm)] // specific codes first, classes as fallback
fn status_label(code: u16) -> &'static str {
    match code {
        200 => "200",
        204 => "204",
        302 => "302",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        408 => "408",
        413 => "413",
        414 => "414",
        415 => "415",
        429 => "429",
        431 => "431",
        500 => "500",
        502 => "502",
        503 => "503",
        504 => "504",
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// Counts requests by route and status and times them.
pub async fn track(req: Request, next: Next) -> Response {
    let route = route_label(&req);
    let started = Instant::now();
    let resp = next.run(req).await;
    metrics::counter!(m::HTTP_REQUESTS, "route" => route, "status" => status_label(resp.status().as_u16()))
        .increment(1);
    metrics::histogram!(m::HTTP_DURATION, "route" => route).record(started.elapsed().as_secs_f64());
    resp
}

/// Hard limit for any one request: 503 JSON with `Retry-After`.
pub async fn deadline(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => ApiError::timeout().into_response(),
    }
}

/// Log span for a request: method and route only.
pub fn span(req: &Request) -> tracing::Span {
    tracing::debug_span!("request", method = %req.method(), route = route_label(req))
}
