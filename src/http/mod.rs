//! The HTTP front doors. Each door parses its input into an [`Event`],
//! calls the one [`Scorer`], and renders the [`Decision`] its own way.
//!
//! [`Event`]: crate::event::Event
//! [`Scorer`]: crate::score::Scorer
//! [`Decision`]: crate::decision::Decision

pub mod access;
pub mod admin;
pub mod batch;
pub mod body;
pub mod check;
pub mod clawback;
pub mod click;
pub mod client_ip;
pub mod conn;
pub mod data;
pub mod error;
pub mod forward_auth;
pub mod fraudshield;
pub mod funnel;
pub mod health;
pub mod hot;
pub mod idle;
pub mod lanes;
pub mod layer;
pub mod observe;
pub mod openrtb;
pub mod postback;
pub mod render;
pub mod report_access;
pub mod reports;
pub mod routes;
pub mod rt;
pub mod shadow;
pub mod shed;
pub mod ui;
pub mod write_timeout;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::response::{IntoResponse, Response};
use tower::ServiceBuilder;

use crate::config::Config;
use crate::score::Scorer;
use error::ApiError;

/// Shared by every handler: one `Arc`, so the clone axum makes per request
/// and per middleware is one atomic increment, not one per field.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What [`AppState`] shares.
pub struct Shared {
    pub scorer: Scorer,
    pub config: Arc<Config>,
    /// This application's own metrics (see [`crate::metrics::Registry`]).
    pub registry: crate::metrics::Registry,
    /// Set when shutdown begins; `/readyz` turns 503.
    pub draining: Arc<AtomicBool>,
    pub trusted: Arc<client_ip::TrustedProxies>,
    pub offers: Arc<click::Offers>,
    /// Data API and report query outcomes.
    pub queries: Arc<data::Queries>,
    /// The untrusted-local-proxy warning was given (once per app).
    pub warned_local_proxy: Arc<AtomicBool>,
    /// The configured feeds and their state.
    pub feeds: Arc<crate::feeds::Feeds>,
    /// The decision log's query side, when the log is on.
    pub reader: Option<crate::query::exec::Reader>,
    /// Conversions joined to their clicks (`/v1/postback`).
    pub funnel: Arc<crate::funnel::Funnel>,
}

impl AppState {
    /// `config` must have passed validation (trusted proxies parse);
    /// `feeds` are built against the scorer's rules (empty: none).
    pub fn new(
        scorer: Scorer,
        config: Config,
        registry: crate::metrics::Registry,
        feeds: Arc<crate::feeds::Feeds>,
    ) -> Self {
        let trusted = client_ip::TrustedProxies::new(
            &config.server.trusted_proxies,
            &config.server.client_ip_header,
        )
        .unwrap_or_default();
        let offers = config
            .offers
            .iter()
            .filter_map(|o| Some((o.id.clone(), click::Offer::new(o)?)))
            .collect();
        let max_queries = config.decision_log.max_queries();
        let queries = Arc::new(registry.scope(|| data::Queries::new(max_queries)));
        let reader = scorer
            .log()
            .map(|_| crate::query::exec::Reader::new(&config.decision_log));
        AppState(Arc::new(Shared {
            funnel: Arc::new(crate::funnel::Funnel::new(
                &config.funnel,
                scorer.fleet().cloned(),
            )),
            reader,
            feeds,
            warned_local_proxy: Arc::new(AtomicBool::new(false)),
            queries,
            scorer,
            config: Arc::new(config),
            registry,
            draining: Arc::new(AtomicBool::new(false)),
            trusted: Arc::new(trusted),
            offers: Arc::new(offers),
        }))
    }
}

/// Which endpoints a listener carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    /// Everything: one listener (no `server.admin_listen`).
    All,
    /// The doors and the probes: the public port when an operator port is
    /// configured.
    Doors,
    /// The operator's endpoints (`/metrics`, `/v1/admin`, the decision
    /// log's query side, `/ui`) and the probes: `server.admin_listen`.
    Operator,
}

/// The whole HTTP surface. Pure: tests can drive it with `oneshot`.
pub fn router(state: AppState) -> Router {
    router_for(state, Surface::All)
}

/// The endpoints of one [`Surface`].
pub fn router_for(state: AppState, surface: Surface) -> Router {
    build(state, surface).0
}

/// The router of a surface, its request metrics and its doors' client
/// check (both shared with the hot doors of [`hot`]).
fn build(
    state: AppState,
    surface: Surface,
) -> (Router, Arc<observe::Observe>, Option<Arc<access::Access>>) {
    let server = &state.config.server;
    let access = (surface != Surface::Operator).then(|| routes::access(&state));
    let mut routes = routes::probes();
    if let Some(access) = &access {
        routes = routes.merge(routes::doors(access.clone()));
    }
    if surface != Surface::Doors {
        routes = routes.merge(routes::operator(&state));
    }
    let (router, paths) = routes.into_parts();
    let obs = Arc::new(observe::Observe::new(state.registry.clone(), paths));
    let stack = ServiceBuilder::new()
        // Requests by route and status and their duration, the hard
        // per-request limit (503 JSON), a panic turned into a JSON 500,
        // failures logged (500 to 502, a WARN each), a debug span with
        // method and route only (the query may carry keys).
        .layer(observe::ObserveLayer::shared(
            obs.clone(),
            server.request_timeout(),
        ))
        // Body size limit for the byte extractors (-> 413 JSON).
        .layer(DefaultBodyLimit::max(server.max_body_bytes));
    let router = router
        .fallback(|| async { ApiError::not_found() })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .layer(stack)
        .with_state(state);
    (router, obs, access)
}

/// Paths never shed or limited: probes and scrapes must answer under load.
const OPS_PATHS: &[&str] = &["/healthz", "/readyz", "/metrics"];

/// The router behind the connection-level limits: a global concurrency
/// limit with load shedding (past `server.max_concurrency` a request is
/// answered at once by [`shed::Shed`], never queued) and the URI length
/// limit. One instance is shared by every connection (behind an `Arc`).
#[derive(Clone)]
pub struct AppService {
    router: Router,
    /// The hot doors, answered without the router.
    hot: hot::Hot,
    /// Permits for requests in flight (`server.max_concurrency`).
    slots: Arc<tokio::sync::Semaphore>,
    shed: Arc<shed::Shed>,
    max_uri: usize,
    draining: Arc<AtomicBool>,
}

pub fn service(state: AppState) -> AppService {
    service_for(state, Surface::All)
}

/// [`service`] for the endpoints of one [`Surface`].
pub fn service_for(state: AppState, surface: Surface) -> AppService {
    let server = &state.config.server;
    let max_uri = server.max_uri_bytes;
    let slots = Arc::new(tokio::sync::Semaphore::new(server.max_concurrency));
    let draining = state.draining.clone();
    let shed = Arc::new(shed::Shed::new(
        &state.config,
        state.scorer.policy().on_upstream_error(),
    ));
    let limit = server.request_timeout();
    let (router, obs, access) = build(state.clone(), surface);
    AppService {
        router,
        hot: hot::Hot::new(state, obs, access, limit),
        slots,
        shed,
        max_uri,
        draining,
    }
}

impl AppService {
    /// Answers one request from `peer` (any body type: hyper's on a
    /// connection, axum's in benches and tests).
    pub async fn call<B>(
        &self,
        req: axum::http::Request<B>,
        peer: std::net::SocketAddr,
    ) -> Result<Response, std::convert::Infallible>
    where
        B: axum::body::HttpBody<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<axum::BoxError>,
    {
        lanes::note_request();
        let req = req.map(axum::body::Body::new);
        let uri_len = req.uri().path_and_query().map_or(0, |p| p.as_str().len())
            + req.uri().authority().map_or(0, |a| a.as_str().len());
        if uri_len > self.max_uri {
            return Ok(ApiError::new(
                axum::http::StatusCode::URI_TOO_LONG,
                "uri_too_long",
                "request URI exceeds server.max_uri_bytes",
            )
            .with_field("uri")
            .into_response());
        }
        // HTTP/2 has no Connection header: its drain is the GOAWAY of
        // `conn`.
        let http1 = req.version() < axum::http::Version::HTTP_2;
        let door = self.hot.door(req.method(), req.uri().path());
        let mut resp = if OPS_PATHS.contains(&req.uri().path()) {
            self.route(door, req, peer).await
        } else {
            // Held until the response is ready, as tower's
            // ConcurrencyLimit holds it.
            match self.slots.try_acquire() {
                Ok(_permit) => self.route(door, req, peer).await,
                Err(_) => Ok(self.shed.respond(req.uri().path())),
            }
        };
        if http1 && self.draining.load(std::sync::atomic::Ordering::Relaxed) {
            // Shutting down: keep-alive clients reconnect, and their load
            // balancer sends them to another replica.
            if let Ok(r) = &mut resp {
                r.headers_mut().insert(
                    axum::http::header::CONNECTION,
                    axum::http::HeaderValue::from_static("close"),
                );
            }
        }
        resp
    }

    /// A hot door's answer, or the router's.
    async fn route(
        &self,
        door: Option<hot::Door>,
        mut req: axum::extract::Request,
        peer: std::net::SocketAddr,
    ) -> Result<Response, std::convert::Infallible> {
        use tower::Service;
        if let Some(door) = door {
            return Ok(self.hot.serve(door, req, peer).await);
        }
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(peer));
        self.router.clone().call(req).await
    }
}
