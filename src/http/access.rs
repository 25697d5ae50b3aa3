//! Client access for the scoring endpoints: named client keys and a
//! token-bucket rate limit per client.
//!
//! With `auth.client_keys` set, a request must present a key
//! (`X-Api-Key`, `Authorization: Bearer`, or `key=` in the query of the
//! RT drop-in and of `/v1/postback`, whose callers are URL templates)
//! -> 401 JSON otherwise. Keys are compared in constant time and
//! never logged; metrics name clients, never keys. Over its rate, a client
//! gets 429 with `Retry-After`.

use std::borrow::Cow;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::future::{BoxFuture, Either};
use metrics::Counter;
use tower::{Layer, Service};

use super::error::ApiError;
use crate::config::{AuthConfig, RateLimit, Secret};
use crate::metrics as m;

/// The client a request was authenticated as (request extension).
#[derive(Debug, Clone)]
pub struct ClientName(pub Arc<str>);

/// The name of the client a request authenticated as, when a route sits
/// behind [`AccessLayer`].
pub fn client_name<B>(req: &axum::http::Request<B>) -> Option<Arc<str>> {
    req.extensions().get::<ClientName>().map(|c| c.0.clone())
}

#[derive(Debug)]
struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(l: RateLimit) -> Option<Mutex<Self>> {
        (l.rps > 0).then(|| {
            let burst = f64::from(l.burst.max(l.rps));
            Mutex::new(Bucket {
                rate: f64::from(l.rps),
                burst,
                tokens: burst,
                last: Instant::now(),
            })
        })
    }

    /// Takes a token, or says how many seconds until one is there.
    fn take(&mut self) -> Result<(), u64> {
        let now = Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - self.tokens) / self.rate).ceil().max(1.0) as u64)
        }
    }
}

/// A configured client, or the anonymous caller when no keys are set.
/// Its counters are registered once: no label work per request.
struct Client {
    name: Arc<str>,
    key: Option<Secret>,
    bucket: Option<Mutex<Bucket>>,
    /// The limit as configured, for the fleet-wide GCRA.
    rps: u32,
    burst: u32,
    ok: Counter,
    limited: Counter,
}

impl Client {
    /// A token from the local bucket (none configured: always one).
    fn take_local(&self) -> Result<(), u64> {
        self.bucket.as_ref().map_or(Ok(()), |b| {
            b.lock().unwrap_or_else(|p| p.into_inner()).take()
        })
    }

    /// A local token, counted: the client's name, or the refusal.
    fn admit_local(&self) -> Result<&Arc<str>, Refusal> {
        self.settle(self.take_local()).map(|()| &self.name)
    }

    /// Counts the outcome of a take; over the limit, the refusal.
    fn settle(&self, taken: Result<(), u64>) -> Result<(), Refusal> {
        match taken {
            Ok(()) => {
                self.ok.increment(1);
                Ok(())
            }
            Err(retry_after) => {
                self.limited.increment(1);
                Err(Refusal::RateLimited { retry_after })
            }
        }
    }

    fn new(name: &str, key: Option<Secret>, limit: RateLimit) -> Self {
        let counter = |outcome: &'static str| metrics::counter!(m::CLIENT_REQUESTS, "client" => name.to_owned(), "outcome" => outcome);
        Client {
            name: name.into(),
            key,
            bucket: Bucket::new(limit),
            rps: limit.rps,
            burst: limit.burst.max(limit.rps),
            ok: counter("ok"),
            limited: counter("rate_limited"),
        }
    }
}

/// Shared by every request; built once from config.
pub struct Access {
    clients: Vec<Client>,
    anonymous: Client,
    /// Refusals by reason: a missing key, an invalid one.
    missing: Counter,
    invalid: Counter,
    /// `redis.share_rate_limits`: limits counted fleet-wide.
    fleet: Option<Arc<crate::fleet::Fleet>>,
}

impl Access {
    pub fn new(c: &AuthConfig) -> Self {
        let default = RateLimit {
            rps: c.rate_limit_rps,
            burst: c.rate_limit_burst,
        };
        let clients = c
            .client_keys
            .iter()
            .map(|(name, key)| {
                let limit = *c.rate_limits.get(name).unwrap_or(&default);
                Client::new(name, Some(key.clone()), limit)
            })
            .collect();
        Access {
            clients,
            anonymous: Client::new("anonymous", None, default),
            missing: metrics::counter!(m::AUTH_FAILURES, "reason" => "missing"),
            invalid: metrics::counter!(m::AUTH_FAILURES, "reason" => "invalid"),
            fleet: None,
        }
    }

    /// Applies rate limits on Redis (per client, GCRA), the local token
    /// bucket standing in while Redis is away.
    pub fn with_fleet(mut self, fleet: Option<Arc<crate::fleet::Fleet>>) -> Self {
        self.fleet = fleet;
        self
    }

    pub fn required(&self) -> bool {
        !self.clients.is_empty()
    }

    /// The index of the client whose key this is. Every key is
    /// compared, in constant time, whatever matches.
    fn find(&self, presented: &[u8]) -> Option<usize> {
        self.clients.iter().enumerate().fold(None, |found, (i, c)| {
            if c.key.as_ref().is_some_and(|k| k.matches(presented)) {
                Some(i)
            } else {
                found
            }
        })
    }
}

/// The key a request presents, borrowed where it can be: `X-Api-Key`,
/// `Authorization: Bearer`, or a query parameter named in `query_names`
/// (the RT drop-in and the Data API carry theirs as `key=`, Fraudshield's
/// reports as `api_token=`, as the systems they copy do).
pub(crate) fn presented_key<'r>(req: &'r Request, query_names: &[&str]) -> Option<Cow<'r, [u8]>> {
    const X_API_KEY: header::HeaderName = header::HeaderName::from_static("x-api-key");
    let h = req.headers();
    if let Some(k) = h.get(X_API_KEY) {
        return Some(Cow::Borrowed(k.as_bytes()));
    }
    if let Some(k) = h
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
    {
        return Some(Cow::Borrowed(k));
    }
    if query_names.is_empty() {
        return None;
    }
    let q = req.uri().query().unwrap_or("");
    form_urlencoded::parse(q.as_bytes())
        .find(|(k, _)| query_names.contains(&&**k))
        .map(|(_, v)| Cow::Owned(v.into_owned().into_bytes()))
}

/// Why a request is refused at the door.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No client key, or one no client has: 401.
    Unauthorized,
    /// Over the client's rate: 429 with `Retry-After` (seconds).
    RateLimited { retry_after: u64 },
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::Unauthorized => {
                let mut resp = ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "a client key is required: X-Api-Key, Authorization: Bearer, or key= for the RT drop-in and /v1/postback",
                )
                .with_field("key")
                .into_response();
                resp.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                resp
            }
            Refusal::RateLimited { retry_after } => {
                let mut resp = ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    "request rate over this client's limit",
                )
                .into_response();
                if let Ok(v) = HeaderValue::from_str(&retry_after.to_string()) {
                    resp.headers_mut().insert(header::RETRY_AFTER, v);
                }
                resp
            }
        }
    }
}

/// The route layer in front of the scoring endpoints: identifies the
/// client, applies its rate limit, and hands the request on with its
/// [`ClientName`]. Without Redis the whole check is synchronous and the
/// inner route is called directly (no boxing); a fleet-wide rate limit
/// awaits Redis in a boxed future.
#[derive(Clone)]
pub struct AccessLayer(Arc<Access>);

impl AccessLayer {
    pub fn new(access: Arc<Access>) -> Self {
        AccessLayer(access)
    }
}

impl<S> Layer<S> for AccessLayer {
    type Service = AccessService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AccessService {
            inner,
            access: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct AccessService<S> {
    inner: S,
    access: Arc<Access>,
}

type Answer = Result<Response, Infallible>;

impl<S> Service<Request> for AccessService<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<Ready<Answer>, Either<S::Future, BoxFuture<'static, Answer>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        let access = &*self.access;
        let Some(client) = access.identify(&req) else {
            return Either::Left(ready(Ok(Refusal::Unauthorized.into_response())));
        };
        let c = access.client(client);
        if c.bucket.is_some() && access.fleet.is_some() {
            // Fleet-wide limit: one Redis round trip.
            let access = self.access.clone();
            let ready_inner = self.inner.clone();
            let mut inner = std::mem::replace(&mut self.inner, ready_inner);
            return Either::Right(Either::Right(Box::pin(async move {
                let c = access.client(client);
                if let Some(refused) = access.admit(c).await {
                    return Ok(refused);
                }
                req.extensions_mut().insert(ClientName(c.name.clone()));
                inner.call(req).await
            })));
        }
        match c.admit_local() {
            Ok(name) => {
                req.extensions_mut().insert(ClientName(name.clone()));
                Either::Right(Either::Left(self.inner.call(req)))
            }
            Err(refused) => Either::Left(ready(Ok(refused.into_response()))),
        }
    }
}

impl Access {
    /// Whether every check is synchronous (no fleet-wide rate limit).
    pub(super) fn is_local(&self) -> bool {
        self.fleet.is_none()
    }

    /// The whole check where it [`is_local`](Self::is_local): the client
    /// the request authenticates as, or the 401 or 429 to answer.
    pub(super) fn admit_local(&self, req: &Request) -> Result<&Arc<str>, Refusal> {
        let client = self.identify(req).ok_or(Refusal::Unauthorized)?;
        self.client(client).admit_local()
    }

    /// The client a request authenticates as (`Some(None)`: anonymous,
    /// when no keys are configured); `None`: refused (counted), a 401.
    fn identify(&self, req: &Request) -> Option<Option<usize>> {
        if !self.required() {
            return Some(None);
        }
        // The RT drop-in carries its key in the query, as RT does; a
        // tracker's postback URL template, likewise.
        let names: &[&str] = if matches!(req.uri().path(), "/" | "/v1/postback") {
            &["key"]
        } else {
            &[]
        };
        let presented = presented_key(req, names);
        if let Some(i) = presented.as_deref().and_then(|k| self.find(k)) {
            return Some(Some(i));
        }
        if presented.is_some() {
            self.invalid.increment(1);
        } else {
            self.missing.increment(1);
        }
        None
    }

    fn client(&self, i: Option<usize>) -> &Client {
        i.map_or(&self.anonymous, |i| &self.clients[i])
    }

    /// The client's rate limit on Redis, its local bucket standing in
    /// while Redis is away; the 429 to answer when over it.
    async fn admit(&self, c: &Client) -> Option<Response> {
        let shared = match &self.fleet {
            Some(f) => f.rate_take(&c.name, c.rps, c.burst).await,
            None => None,
        };
        c.settle(shared.unwrap_or_else(|| c.take_local()))
            .err()
            .map(IntoResponse::into_response)
    }
}
