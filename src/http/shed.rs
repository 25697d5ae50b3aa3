//! The answer to a request shed by the concurrency limit.
//!
//! `server.shed_response = "503"`: 503 + `Retry-After` for every route.
//! `"fallback"`: doors whose callers cannot retry answer as if the upstream
//! had failed, without scoring: `/v1/auth` by its fail mode (an nginx
//! `auth_request` would turn a 503 into a 500 for the end user), `/imp`
//! with its pixel; every other route still gets 503.

use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::click::PIXEL;
use super::error::ApiError;
use crate::config::{Config, ImpResponse, ShedResponse};
use crate::metrics as m;
use crate::policy::Action;

pub struct Shed {
    mode: ShedResponse,
    auth: Action,
    auth_blocked: StatusCode,
    imp: ImpResponse,
    shed: metrics::Counter,
}

impl Shed {
    pub fn new(c: &Config, policy_on_error: Action) -> Self {
        Shed {
            mode: c.server.shed_response,
            auth: c
                .doors
                .auth
                .on_upstream_error
                .action()
                .unwrap_or(policy_on_error),
            auth_blocked: StatusCode::from_u16(c.doors.auth.blocked_status)
                .unwrap_or(StatusCode::FORBIDDEN),
            imp: c.doors.imp.response,
            shed: metrics::counter!(m::SHED),
        }
    }

    pub fn respond(&self, path: &str) -> Response {
        self.shed.increment(1);
        if self.mode == ShedResponse::Fallback {
            if path == "/v1/auth" || path.starts_with("/v1/auth/") {
                return match self.auth {
                    Action::Allow => fallback(StatusCode::OK, Action::Allow, None),
                    Action::Block => fallback(self.auth_blocked, Action::Block, None),
                };
            }
            if path == "/imp" {
                return match self.imp {
                    ImpResponse::Gif => fallback(StatusCode::OK, Action::Allow, Some(PIXEL)),
                    ImpResponse::NoContent => fallback(StatusCode::NO_CONTENT, Action::Allow, None),
                };
            }
        }
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "too many requests in flight; retry shortly",
        )
        .into_response()
    }
}

/// A door's answer without scoring, marked as an overload fallback.
fn fallback(status: StatusCode, action: Action, body: Option<&'static [u8]>) -> Response {
    let mut r = match body {
        Some(b) => (status, [(header::CONTENT_TYPE, "image/gif")], b).into_response(),
        None => status.into_response(),
    };
    let h = r.headers_mut();
    h.insert(
        HeaderName::from_static("x-fraudgate-decision"),
        HeaderValue::from_static(action.as_str()),
    );
    h.insert(
        HeaderName::from_static("x-fraudgate-source"),
        HeaderValue::from_static("fallback"),
    );
    h.insert(
        HeaderName::from_static("x-fraudgate-reason"),
        HeaderValue::from_static("overloaded"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}
