//! [`FraudGateLayer`]: fraudgate inside your own axum / tower service.
//!
//! Each request is scored before it reaches the inner service: client IP
//! from the connection (`ConnectInfo`, behind trusted proxies from their
//! headers), UA from `User-Agent`, other event fields from the query (RT
//! names) or a custom extractor. Allowed requests reach the inner service
//! with the [`Decision`] in their extensions; blocked ones get the
//! configured blocked response (default: 403 with the decision as JSON).
//!
//! ```no_run
//! # async fn demo(config: fraudgate::Config) {
//! use axum::{Extension, Router, routing::get};
//! use fraudgate::{Decision, http::layer::FraudGateLayer, score::Scorer};
//!
//! let scorer = Scorer::new(&config).unwrap();
//! let app: Router = Router::new()
//!     .route("/go", get(|Extension(d): Extension<Decision>| async move { format!("click {}", d.id) }))
//!     .layer(FraudGateLayer::new(scorer));
//! # }
//! ```

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::request::Parts;
use axum::http::{Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::future::BoxFuture;
use tower::{Layer, Service};

use crate::decision::{Decision, Door};
use crate::event::{Connection, EventBuilder, EventType, FieldError};
use crate::http::client_ip::TrustedProxies;
use crate::http::error::ApiError;
use crate::policy::Action;
use crate::score::{ScoreOpts, Scorer};

/// Builds the event fields a request carries (IP, UA and event type are
/// filled in afterwards when the extractor leaves them unset).
pub type Extractor = Arc<dyn Fn(&Parts) -> Result<EventBuilder, FieldError> + Send + Sync>;
/// The answer to a blocked request.
pub type BlockedResponse = Arc<dyn Fn(&Decision) -> Response + Send + Sync>;

/// The default extractor: RT fields from the query string, the way every
/// browser-facing door reads them (see [`crate::event::Connection`]): the
/// app's own parameters are left alone, and `ip`, `ua`, `event_type`,
/// `at`, `key` in the query are ignored (they come from the connection).
pub fn query_extractor(parts: &Parts) -> Result<EventBuilder, FieldError> {
    Ok(EventBuilder::from_browser_query(
        parts.uri.query().unwrap_or(""),
        &BTreeMap::new(),
    ))
}

fn default_blocked(d: &Decision) -> Response {
    let mut resp = (StatusCode::FORBIDDEN, Json(d)).into_response();
    crate::http::render::decision_headers(resp.headers_mut(), d);
    resp
}

#[derive(Clone)]
pub struct FraudGateLayer {
    scorer: Scorer,
    trusted: Arc<TrustedProxies>,
    extract: Extractor,
    blocked: BlockedResponse,
    budget: Option<Duration>,
    on_error: Option<Action>,
    event_type: EventType,
}

impl FraudGateLayer {
    pub fn new(scorer: Scorer) -> Self {
        FraudGateLayer {
            scorer,
            trusted: Arc::new(TrustedProxies::default()),
            extract: Arc::new(query_extractor),
            blocked: Arc::new(default_blocked),
            budget: None,
            on_error: None,
            event_type: EventType::Click,
        }
    }

    /// Proxies whose forwarding headers are believed.
    pub fn trusted_proxies(mut self, t: TrustedProxies) -> Self {
        self.trusted = Arc::new(t);
        self
    }

    pub fn extractor(
        mut self,
        f: impl Fn(&Parts) -> Result<EventBuilder, FieldError> + Send + Sync + 'static,
    ) -> Self {
        self.extract = Arc::new(f);
        self
    }

    pub fn blocked_response(
        mut self,
        f: impl Fn(&Decision) -> Response + Send + Sync + 'static,
    ) -> Self {
        self.blocked = Arc::new(f);
        self
    }

    /// Time budget per request (default: the scorer's).
    pub fn budget(mut self, d: Duration) -> Self {
        self.budget = Some(d);
        self
    }

    pub fn on_upstream_error(mut self, a: Action) -> Self {
        self.on_error = Some(a);
        self
    }

    /// Event type when the extractor sets none (default click).
    pub fn impressions(mut self) -> Self {
        self.event_type = EventType::Impression;
        self
    }

    fn event(&self, parts: &Parts) -> Result<crate::event::Event, ApiError> {
        let b = (self.extract)(parts)?;
        // A custom extractor may take the IP from elsewhere (its own
        // header, a session); otherwise it is the connection's.
        let ip = match b.ip() {
            Some(ip) => ip,
            None => {
                let peer = parts
                    .extensions
                    .get::<ConnectInfo<SocketAddr>>()
                    .map(|c| c.0.ip())
                    .ok_or_else(|| {
                        tracing::error!("FraudGateLayer needs ConnectInfo<SocketAddr> (into_make_service_with_connect_info)");
                        ApiError::internal()
                    })?;
                self.trusted.client_ip(peer, &parts.headers)
            }
        };
        let ua = parts
            .headers
            .get(header::USER_AGENT)
            .map_or(std::borrow::Cow::Borrowed(""), crate::event::header_text);
        Ok(b.connection_defaults(Connection {
            ip,
            ua,
            event_type: self.event_type,
            speculation: crate::event::Speculation::from_headers(&parts.headers),
        })
        .build()?)
    }
}

impl<S> Layer<S> for FraudGateLayer {
    type Service = FraudGateService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        FraudGateService {
            inner,
            gate: self.clone(),
        }
    }
}

#[derive(Clone)]
pub struct FraudGateService<S> {
    inner: S,
    gate: FraudGateLayer,
}

impl<S> Service<Request<Body>> for FraudGateService<S>
where
    S: Service<Request<Body>, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        // The ready clone is the one to call; leave a fresh clone behind.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let gate = self.gate.clone();
        Box::pin(async move {
            let (mut parts, body) = req.into_parts();
            let event = match gate.event(&parts) {
                Ok(e) => e,
                Err(e) => return Ok(e.into_response()),
            };
            let opts = ScoreOpts {
                door: Door::Layer,
                budget: gate.budget.unwrap_or_else(|| gate.scorer.default_budget()),
                on_error: gate.on_error,
                client: None,
            };
            let d = gate.scorer.score(&event, &opts).await;
            if d.is_block() {
                return Ok((gate.blocked)(&d));
            }
            parts.extensions.insert(d);
            inner.call(Request::from_parts(parts, body)).await
        })
    }
}
