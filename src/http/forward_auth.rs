//! `/v1/auth` (any method, any sub-path): the auth service for nginx
//! `auth_request`, Envoy `ext_authz` (HTTP service) and Traefik
//! `ForwardAuth`. Allowed -> 200 with an empty body; blocked -> 403 (or
//! 401); an internal failure -> 500 so the proxy's own failure mode
//! applies. Decision headers let the proxy log or forward the verdict, and
//! `X-Accel-Expires` / `Cache-Control` let a cache sit in front.
//!
//! The event: client IP from the connection (behind trusted proxies, from
//! their headers), UA from `User-Agent`, other fields from the original
//! URL's query: `X-Original-URI` (nginx), `X-Original-URL` (ingress-nginx's
//! `auth-url`), `X-Forwarded-Uri` (Traefik), or
//! this request's own path after `/v1/auth` (Envoy's `path_prefix`).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use std::borrow::Cow;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::access::client_name;
use super::body::{browser_opts, connection};
use super::error::ApiError;
use super::render::{cache_headers, decision_headers};
use crate::config::AuthDoor;
use crate::decision::{Decision, Door};
use crate::event::{Connection, Event, EventBuilder, EventType};
use crate::policy::Reason;
use crate::upstream::UpstreamError;

/// Header a trusted proxy uses to name the event type.
pub const EVENT_TYPE_HEADER: HeaderName = HeaderName::from_static("x-fraudgate-event-type");

/// (The request is borrowed whole: its headers and URI are read in
/// place, never copied.)
pub async fn handle(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Result<Response, ApiError> {
    let client = client_name(&req);
    answer(&state, peer, req, client).await
}

/// [`handle`] for a request whose client is known (the hot path of
/// [`super::hot`] calls it without the router).
pub(super) async fn answer(
    state: &AppState,
    peer: SocketAddr,
    req: Request,
    client: Option<Arc<str>>,
) -> Result<Response, ApiError> {
    let door = &state.config.doors.auth;
    let headers = req.headers();
    let original = original_uri(headers, req.uri());
    warn_if_proxy_untrusted(state, peer.ip(), headers);
    let trusted = state.trusted.is_trusted(peer.ip().to_canonical());
    let event = auth_event(state, trusted, headers, &original, |t| {
        connection(state, peer.ip(), headers, t)
    })?;

    let opts = browser_opts(
        state,
        peer.ip(),
        headers,
        Door::Auth,
        door.budget_ms,
        door.on_upstream_error,
    )?
    .with_client(client);
    let d = state.scorer.score(&event, &opts).await;
    if failed_inside(&d) {
        return Err(ApiError::internal());
    }
    let status = if d.is_block() {
        blocked_status(door)
    } else {
        StatusCode::OK
    };
    let mut resp = status.into_response();
    decision_headers(resp.headers_mut(), &d);
    cache_headers(resp.headers_mut(), &d);
    Ok(resp)
}

// ---- Shared with the gRPC door (src/grpc/check.rs): one auth event, one
// reading of the decision, whichever protocol the proxy speaks. ----

/// The event of an auth request for `original` (path and query of the
/// visitor's request): its type from a trusted proxy's
/// `X-Fraudgate-Event-Type`, else by path; its fields from the query and
/// `doors.auth` params and defaults; the rest from `conn`.
pub fn auth_event<'a>(
    state: &AppState,
    trusted_proxy: bool,
    headers: &HeaderMap,
    original: &str,
    conn: impl FnOnce(EventType) -> Connection<'a>,
) -> Result<Event, ApiError> {
    let door = &state.config.doors.auth;
    let (path, query) = original.split_once('?').unwrap_or((original, ""));
    let from_proxy = headers
        .get(EVENT_TYPE_HEADER)
        .filter(|_| trusted_proxy)
        .map(|v| match v.as_bytes() {
            b"click" => Ok(EventType::Click),
            b"impression" => Ok(EventType::Impression),
            _ => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_header",
                "must be \"click\" or \"impression\"",
            )
            .with_field("X-Fraudgate-Event-Type")),
        })
        .transpose()?;
    let event_type = from_proxy.unwrap_or_else(|| {
        if door
            .impression_paths
            .iter()
            .any(|p| path.starts_with(p.as_str()))
        {
            EventType::Impression
        } else {
            door.event_type
        }
    });
    Ok(EventBuilder::from_browser_query(query, &door.params)
        .with_defaults(&door.defaults)?
        .connection(conn(event_type))
        .build()?)
}

/// The scorer failed inside (not the upstream): the proxy's own failure
/// mode should decide, so the door answers an error, not a decision.
pub fn failed_inside(d: &Decision) -> bool {
    d.ruling.reason == Reason::Fallback(UpstreamError::Internal)
}

/// The status of a blocked request (`doors.auth.blocked_status`).
pub fn blocked_status(door: &AuthDoor) -> StatusCode {
    StatusCode::from_u16(door.blocked_status).unwrap_or(StatusCode::FORBIDDEN)
}

// ---- End of the shared part. ----

/// A proxy on this host forwarding visitors while `trusted_proxies` is
/// empty makes every visitor 127.0.0.1: say so, once.
fn warn_if_proxy_untrusted(state: &AppState, peer: IpAddr, headers: &HeaderMap) {
    if peer.to_canonical().is_loopback()
        && state.config.server.trusted_proxies.is_empty()
        && headers.contains_key(state.trusted.header())
        && !state.warned_local_proxy.swap(true, Ordering::Relaxed)
    {
        tracing::warn!(
            header = state.trusted.header(),
            "/v1/auth is called by a proxy on this host but server.trusted_proxies is empty: \
             its forwarding header is ignored and every visitor is scored as 127.0.0.1; \
             set server.trusted_proxies = [\"127.0.0.1/32\"]"
        );
    }
}

/// The visitor's path and query, borrowed from the headers or this
/// request's URI wherever they hold it as it is.
fn original_uri<'r>(headers: &'r HeaderMap, uri: &'r Uri) -> Cow<'r, str> {
    const ORIGINAL_URI: HeaderName = HeaderName::from_static("x-original-uri");
    const FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");
    const ORIGINAL_URL: HeaderName = HeaderName::from_static("x-original-url");
    for name in [ORIGINAL_URI, FORWARDED_URI] {
        if let Some(v) = headers.get(name).and_then(|v| v.to_str().ok()) {
            return Cow::Borrowed(v);
        }
    }
    // ingress-nginx's auth-url sends the whole URL.
    if let Some(v) = headers.get(ORIGINAL_URL).and_then(|v| v.to_str().ok()) {
        let rest = v.split_once("://").map_or(v, |(_, r)| r);
        return Cow::Borrowed(match rest.find(['/', '?']) {
            Some(i) if v.contains("://") => &rest[i..],
            Some(_) | None if v.contains("://") => "/",
            _ => v,
        });
    }
    let own = uri.path_and_query().map_or("/", |p| p.as_str());
    match own.strip_prefix("/v1/auth") {
        None => Cow::Borrowed(own),
        Some("") => Cow::Borrowed("/"),
        Some(rest) if rest.starts_with('/') || rest.starts_with('?') => Cow::Borrowed(rest),
        Some(rest) => Cow::Owned(format!("/{rest}")),
    }
}
