//! Request metrics, the request deadline, and log spans that never carry
//! the query string (it can hold client keys).

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use metrics::{Counter, Histogram};

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use crate::metrics as m;

/// Status labels: the codes fraudgate answers, then a class for the rest.
const STATUSES: &[&str] = &[
    "200", "204", "302", "400", "401", "403", "404", "405", "408", "413", "414", "415", "429",
    "431", "500", "502", "503", "504", "1xx", "2xx", "3xx", "4xx", "5xx",
];
const CODES: [u16; 18] = [
    200, 204, 302, 400, 401, 403, 404, 405, 408, 413, 414, 415, 429, 431, 500, 502, 503, 504,
];

/// Index of a status code's label in [`STATUSES`].
fn status_index(code: u16) -> usize {
    CODES.iter().position(|c| *c == code).unwrap_or_else(|| {
        CODES.len()
            + match code {
                100..=199 => 0,
                200..=299 => 1,
                300..=399 => 2,
                400..=499 => 3,
                _ => 4,
            }
    })
}

/// Request metrics of one application: a duration histogram per route,
/// registered up front, and a request counter per route and status,
/// registered on first use (most pairs never occur) and kept.
pub struct Observe {
    registry: crate::metrics::Registry,
    /// The router's route paths (see [`super::routes::Routes`]); a
    /// request that matched none is labelled "unmatched".
    routes: Box<[&'static str]>,
    durations: Box<[Histogram]>,
    requests: Box<[OnceLock<Counter>]>,
}

impl Observe {
    pub fn new(registry: crate::metrics::Registry, routes: Vec<&'static str>) -> Self {
        let routes = routes.into_boxed_slice();
        let durations = registry.scope(|| {
            routes
                .iter()
                .copied()
                .chain(["unmatched"])
                .map(|route| metrics::histogram!(m::HTTP_DURATION, "route" => route))
                .collect()
        });
        Observe {
            registry,
            durations,
            requests: (0..(routes.len() + 1) * STATUSES.len())
                .map(|_| OnceLock::new())
                .collect(),
            routes,
        }
    }

    /// Index of the request's route in `routes`; `routes.len()` for
    /// "unmatched".
    fn route_index(&self, req: &Request) -> usize {
        req.extensions()
            .get::<MatchedPath>()
            .and_then(|p| self.routes.iter().position(|r| *r == p.as_str()))
            .unwrap_or(self.routes.len())
    }

    fn count(&self, route: usize, code: u16) {
        let status = status_index(code);
        self.requests[route * STATUSES.len() + status]
            .get_or_init(|| {
                let route = self.routes.get(route).copied().unwrap_or("unmatched");
                self.registry.scope(|| {
                    metrics::counter!(m::HTTP_REQUESTS, "route" => route, "status" => STATUSES[status])
                })
            })
            .increment(1);
    }
}

/// Counts requests by route and status and times them.
pub async fn track(State(obs): State<Arc<Observe>>, req: Request, next: Next) -> Response {
    let route = obs.route_index(&req);
    let started = Instant::now();
    let resp = next.run(req).await;
    obs.count(route, resp.status().as_u16());
    obs.durations[route].record(started.elapsed().as_secs_f64());
    resp
}

/// Hard limit for any one request: 503 JSON with `Retry-After`.
pub async fn deadline(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => ApiError::timeout().into_response(),
    }
}

/// Log span for a request: method and route only (the matched route's
/// path pattern, never the request's own path).
pub fn span(req: &Request) -> tracing::Span {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str);
    tracing::debug_span!("request", method = %req.method(), route = route)
}
