//! `/v1/auth` (any method, any sub-path): the auth service for nginx
//! `auth_request`, Envoy `ext_authz` (HTTP service) and Traefik
//! `ForwardAuth`. Allowed -> 200 with an empty body; blocked -> 403 (or
//! 401); an internal failure -> 500 so the proxy's own failure mode
//! applies. Decision headers let the proxy log or forward the verdict, and
//! `X-Accel-Expires` / `Cache-Control` let a cache sit in front.
//!
//! The event: client IP from the connection (behind trusted proxies, from
//! their headers), UA from `User-Agent`, other fields from the original
//! URL's query: `X-Original-URI` (nginx), `X-Forwarded-Uri` (Traefik), or
//! this request's own path after `/v1/auth` (Envoy's `path_prefix`).

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::body::score_opts;
use super::error::ApiError;
use super::render::{cache_headers, decision_headers};
use crate::decision::Door;
use crate::event::EventBuilder;
use crate::policy::Reason;
use crate::upstream::UpstreamError;

/// Fields an end user's URL must not set: they come from the connection.
pub const CONNECTION_FIELDS: &[&str] = &["ip", "ua", "event_type", "at", "key"];

pub async fn handle(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, ApiError> {
    let door = &state.config.doors.auth;
    let original = original_uri(&headers, &uri);
    let (path, query) = original.split_once('?').unwrap_or((&original, ""));

    let mut b = EventBuilder::new();
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        // Renamed fields: the URL's parameter name -> the RT field.
        let field = door
            .params
            .iter()
            .find(|(_, p)| **p == *name)
            .map(|(f, _)| f.as_str())
            .or_else(|| (!door.params.contains_key(&*name)).then_some(&*name));
        let Some(field) =
            field.filter(|f| crate::event::is_rt_field(f) && !CONNECTION_FIELDS.contains(f))
        else {
            continue; // the application's own parameters
        };
        if let Err(e) = b.set_default(field, &value) {
            tracing::debug!(field, error = %e, "auth: ignoring a bad value in the original URL");
        }
    }
    for (field, value) in &door.defaults {
        b.set_default(field, value)?;
    }
    b.set(
        "ip",
        &state.trusted.client_ip(peer.ip(), &headers).to_string(),
    )?;
    let ua = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    b.set("ua", ua)?;
    let event_type = headers
        .get("x-fraudgate-event-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .unwrap_or_else(|| {
            if door
                .impression_paths
                .iter()
                .any(|p| path.starts_with(p.as_str()))
            {
                "impression".into()
            } else {
                door.event_type.clone()
            }
        });
    b.set("event_type", &event_type)?;
    let event = b.build()?;

    let opts = score_opts(
        &state,
        &headers,
        Door::Auth,
        door.budget_ms,
        door.on_upstream_error,
    )?;
    let d = state.scorer.score_with(&event, &opts).await;
    if d.ruling.reason == Reason::Fallback(UpstreamError::Internal) {
        return Err(ApiError::internal());
    }
    let status = if d.is_block() {
        StatusCode::from_u16(door.blocked_status).unwrap_or(StatusCode::FORBIDDEN)
    } else {
        StatusCode::OK
    };
    let mut resp = status.into_response();
    decision_headers(resp.headers_mut(), &d);
    cache_headers(resp.headers_mut(), &d);
    Ok(resp)
}

fn original_uri(headers: &HeaderMap, uri: &Uri) -> String {
    for name in ["x-original-uri", "x-forwarded-uri"] {
        if let Some(v) = headers.get(name).and_then(|v| v.to_str().ok()) {
            return v.to_owned();
        }
    }
    let own = uri.path_and_query().map_or("/", |p| p.as_str());
    own.strip_prefix("/v1/auth").map_or_else(
        || own.to_owned(),
        |rest| {
            if rest.starts_with('/') || rest.starts_with('?') {
                rest.to_owned()
            } else {
                format!("/{rest}")
            }
        },
    )
}
