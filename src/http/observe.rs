//! Request metrics, the request deadline, failure logs, and log spans that
//! never carry the query string (it can hold client keys).

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use metrics::{Counter, Histogram};

use axum::extract::{MatchedPath, Request};
use axum::response::{IntoResponse, Response};
use futures_util::future::OptionFuture;
use tower::{Layer, Service};

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
    /// Each route path's index in `routes` (one hash, not a scan of
    /// every route, per request).
    index: HashMap<&'static str, usize, foldhash::fast::RandomState>,
    durations: Box<[Histogram]>,
    requests: Box<[OnceLock<Counter>]>,
}

impl Observe {
    pub fn new(registry: crate::metrics::Registry, routes: Vec<&'static str>) -> Self {
        let routes = routes.into_boxed_slice();
        let mut index = HashMap::with_hasher(foldhash::fast::RandomState::default());
        for (i, r) in routes.iter().enumerate() {
            // The first of a repeated path keeps its index, as a scan would.
            index.entry(*r).or_insert(i);
        }
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
            index,
            routes,
        }
    }

    /// Index of `path` (a route's path pattern) in `routes`.
    pub fn index_of(&self, path: &str) -> Option<usize> {
        self.index.get(path).copied()
    }

    /// The path pattern of the route at `index` ("unmatched" past them).
    pub fn route(&self, index: usize) -> &'static str {
        self.routes.get(index).copied().unwrap_or("unmatched")
    }

    /// Index of the request's route in `routes`; `routes.len()` for
    /// "unmatched".
    fn route_index(&self, req: &Request) -> usize {
        req.extensions()
            .get::<MatchedPath>()
            .and_then(|p| self.index.get(p.as_str()).copied())
            .unwrap_or(self.routes.len())
    }

    fn count(&self, route: usize, code: u16) {
        let status = status_index(code);
        self.requests[route * STATUSES.len() + status]
            .get_or_init(|| {
                let route = self.route(route);
                self.registry.scope(|| {
                    metrics::counter!(m::HTTP_REQUESTS, "route" => route, "status" => STATUSES[status])
                })
            })
            .increment(1);
    }
}

/// The per-request layer every route sits behind: counts requests by
/// route and status, times them, enforces the hard per-request limit
/// (503 JSON with `Retry-After`), logs failures (500 to 502: a WARN each)
/// and gives the request a debug span with method and route only. One
/// concrete future: no boxing, one clock read at the start (the deadline
/// counts from it) and one at the end.
#[derive(Clone)]
pub struct ObserveLayer {
    obs: Arc<Observe>,
    limit: Duration,
}

impl ObserveLayer {
    pub fn new(obs: Observe, limit: Duration) -> Self {
        Self::shared(Arc::new(obs), limit)
    }

    /// A layer over an [`Observe`] that others use too (the hot doors of
    /// [`super::hot`] count into the same metrics).
    pub fn shared(obs: Arc<Observe>, limit: Duration) -> Self {
        ObserveLayer { obs, limit }
    }
}

impl<S> Layer<S> for ObserveLayer {
    type Service = ObserveService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ObserveService {
            inner,
            obs: self.obs.clone(),
            limit: self.limit,
        }
    }
}

#[derive(Clone)]
pub struct ObserveService<S> {
    inner: S,
    obs: Arc<Observe>,
    limit: Duration,
}

impl<S> Service<Request> for ObserveService<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Observed<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let route = self.obs.route_index(&req);
        let span = span(&req);
        let inner = &mut self.inner;
        observe(&self.obs, route, span, self.limit, || inner.call(req))
    }
}

/// Starts observing the request `call` answers: the clock, the deadline
/// `limit` away, the span entered while it runs, a panic in `call` itself
/// (as in its future) a JSON 500. `route`: an index in the routes `obs`
/// was built with.
pub fn observe<F>(
    obs: &Arc<Observe>,
    route: usize,
    span: tracing::Span,
    limit: Duration,
    call: impl FnOnce() -> F,
) -> Observed<F>
where
    F: Future,
{
    let started = Instant::now();
    let start = tokio::time::Instant::from_std(started);
    // (A limit past what the clock can hold: a day is as good as never.)
    let deadline = start
        .checked_add(limit)
        .unwrap_or_else(|| start + Duration::from_secs(86_400));
    let inner = {
        let _entered = span.enter();
        std::panic::catch_unwind(AssertUnwindSafe(call)).ok()
    };
    Observed {
        inner: tokio::time::timeout_at(deadline, OptionFuture::from(inner)),
        obs: obs.clone(),
        route,
        started,
        span,
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`ObserveService`].
    pub struct Observed<F> {
        // None: the call itself panicked.
        #[pin]
        inner: tokio::time::Timeout<OptionFuture<F>>,
        obs: Arc<Observe>,
        route: usize,
        started: Instant,
        span: tracing::Span,
    }
}

impl<F> Future for Observed<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _entered = this.span.enter();
        // A panic anywhere in the handler becomes a JSON 500 instead of a
        // dropped connection (counted and logged like any 500).
        let polled = std::panic::catch_unwind(AssertUnwindSafe(|| this.inner.poll(cx)));
        let resp = match polled {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(Ok(Some(Ok(resp))))) => resp,
            Ok(Poll::Ready(Ok(Some(Err(never))))) => match never {},
            Ok(Poll::Ready(Err(_elapsed))) => ApiError::timeout().into_response(),
            Ok(Poll::Ready(Ok(None))) | Err(_) => {
                // The payload is not echoed: it could hold request data.
                tracing::error!("request handler panicked");
                ApiError::internal().into_response()
            }
        };
        let code = resp.status().as_u16();
        let obs = &**this.obs;
        obs.count(*this.route, code);
        let elapsed = this.started.elapsed();
        obs.durations[*this.route].record(elapsed.as_secs_f64());
        // A 503 is one of this service's own answers (shed, deadline,
        // draining, a query past its limit), counted by
        // fraudgate_http_requests_total: a WARN line for each would flood
        // the log exactly when the service is overloaded.
        let latency_us = elapsed.as_micros() as u64;
        if (500..=502).contains(&code) {
            tracing::warn!(status = code, latency_us, "response failed");
        } else {
            tracing::debug!(status = code, latency_us, "request finished");
        }
        Poll::Ready(Ok(resp))
    }
}

/// Log span for a request: method and route only (the matched route's
/// path pattern, never the request's own path).
pub fn span(req: &Request) -> tracing::Span {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str);
    request_span(req.method(), route)
}

/// The span of a request to `route` (a route's path pattern), for the
/// router's requests and the hot doors' alike.
pub fn request_span(method: &axum::http::Method, route: &str) -> tracing::Span {
    tracing::debug_span!("request", method = %method, route = route)
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::time::Duration;

    use axum::body::Body;
    use axum::extract::Request;
    use axum::http::StatusCode;
    use axum::response::{IntoResponse, Response};
    use tower::{Layer, Service, ServiceExt};

    use super::{Observe, ObserveLayer};

    fn layer(limit: Duration) -> ObserveLayer {
        let registry = crate::metrics::Registry::new();
        ObserveLayer::new(Observe::new(registry, vec!["/x"]), limit)
    }

    async fn answer<S>(svc: S) -> Response
    where
        S: Service<Request, Response = Response, Error = Infallible>,
    {
        let req = Request::new(Body::empty());
        match layer(Duration::from_millis(50))
            .layer(svc)
            .oneshot(req)
            .await
        {
            Ok(r) => r,
            Err(never) => match never {},
        }
    }

    #[tokio::test]
    async fn a_panic_while_answering_is_a_json_500() {
        let svc = tower::service_fn(|_: Request| async {
            if StatusCode::OK.is_success() {
                panic!("boom");
            }
            Ok::<_, Infallible>(StatusCode::OK.into_response())
        });
        let r = answer(svc).await;
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(r.into_body(), 4096).await.unwrap();
        assert!(!String::from_utf8_lossy(&body).contains("boom"));
    }

    #[tokio::test]
    async fn a_panic_in_the_call_itself_is_a_json_500() {
        #[derive(Clone)]
        struct PanicsOnCall;
        impl Service<Request> for PanicsOnCall {
            type Response = Response;
            type Error = Infallible;
            type Future = std::future::Ready<Result<Response, Infallible>>;
            fn poll_ready(
                &mut self,
                _: &mut std::task::Context<'_>,
            ) -> std::task::Poll<Result<(), Infallible>> {
                std::task::Poll::Ready(Ok(()))
            }
            fn call(&mut self, _: Request) -> Self::Future {
                panic!("boom in call")
            }
        }
        let r = answer(PanicsOnCall).await;
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[tokio::test]
    async fn past_the_limit_the_answer_is_a_503() {
        let svc = tower::service_fn(|_: Request| async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Ok::<_, Infallible>(StatusCode::OK.into_response())
        });
        let started = std::time::Instant::now();
        let r = answer(svc).await;
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
