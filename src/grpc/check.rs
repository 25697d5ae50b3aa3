//! `Authorization/Check`: a CheckRequest becomes the event `/v1/auth`
//! would build for the same request, scored the same way; the decision
//! comes back as an OkResponse or a DeniedResponse carrying the same
//! `X-Fraudgate-*` headers.
//!
//! Client IP: the CheckRequest's source address (Envoy's downstream
//! peer); when the caller (Envoy, the gRPC peer) is a trusted proxy, its
//! `X-Forwarded-For` (`server.client_ip_header`) is walked past trusted
//! hops from there, as the HTTP doors do. A Check without a usable source
//! address, or with a bad `X-Fraudgate-Event-Type`, is INVALID_ARGUMENT:
//! a proxy's misconfiguration, so Envoy's own `failure_mode_allow`
//! decides, as it does when the scorer fails inside (INTERNAL) or the
//! door is full with `server.shed_response = "503"` (UNAVAILABLE).

use std::net::IpAddr;
use std::sync::Arc;

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use tokio::sync::Semaphore;
use tonic::{Request, Response, Status};

use super::proto::auth::{
    CheckRequest, CheckResponse, DeniedHttpResponse, OkHttpResponse, attribute_context,
    check_response,
};
use super::proto::envoy::config::core::v3 as core;
use super::proto::envoy::r#type::v3::HttpStatus;
use super::proto::google::rpc;
use crate::config::ShedResponse;
use crate::decision::{Decision, Door as DoorLabel};
use crate::http::AppState;
use crate::http::body::{browser_opts, connection};
use crate::http::error::ApiError;
use crate::http::forward_auth::{auth_event, blocked_status, failed_inside};
use crate::http::render::decision_headers;
use crate::metrics as m;
use crate::policy::Action;

/// google.rpc.Code values of a CheckResponse's status.
const OK: i32 = 0;
const PERMISSION_DENIED: i32 = 7;

/// Headers also told to the visitor (on its response): the verdict and
/// the id to quote when asking about it. The rest go to the upstream.
const TO_VISITOR: [&str; 2] = ["x-fraudgate-decision", "x-fraudgate-id"];

pub struct Door {
    state: AppState,
    /// In-flight Checks, at most `server.max_concurrency`: past it a
    /// Check is shed at once instead of queueing.
    permits: Arc<Semaphore>,
    ok: metrics::Counter,
    denied: metrics::Counter,
    invalid: metrics::Counter,
    error: metrics::Counter,
    shed: metrics::Counter,
}

impl Door {
    /// Call inside the app's metrics registry scope.
    pub fn new(state: AppState) -> Self {
        let outcome = |o: &'static str| metrics::counter!(m::GRPC_CHECKS, "outcome" => o);
        Door {
            permits: Arc::new(Semaphore::new(state.config.server.max_concurrency)),
            ok: outcome("ok"),
            denied: outcome("denied"),
            invalid: outcome("invalid_argument"),
            error: outcome("error"),
            shed: metrics::counter!(m::SHED),
            state,
        }
    }

    async fn check(&self, req: Request<CheckRequest>) -> Result<CheckResponse, Status> {
        let state = &self.state;
        let door = &state.config.doors.grpc;
        let Ok(_permit) = self.permits.try_acquire() else {
            self.shed.increment(1);
            return self.shed();
        };
        let peer = req.remote_addr().map(|a| a.ip().to_canonical());
        let timeout = req
            .metadata()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(super::deadline::parse);
        let trusted = peer.is_some_and(|p| state.trusted.is_trusted(p));
        let http = req.into_inner().attributes.unwrap_or_default();
        let source = source_ip(&http).ok_or_else(|| {
            Status::invalid_argument(
                "attributes.source.address.socket_address.address: not an IP address",
            )
        })?;
        let request = http.request.and_then(|r| r.http).unwrap_or_default();
        let headers = header_map(&request);
        let original = if request.path.is_empty() {
            "/"
        } else {
            &request.path
        };
        // The Check's headers are the visitor's own (Envoy forwards them),
        // so no X-Fraudgate-* header in them is believed: the event type
        // comes from the path, the deadline from grpc-timeout.
        let event = auth_event(state, false, &headers, original, |t| {
            let mut conn = connection(state, source, &headers, t);
            if !trusted {
                // An untrusted caller's forwarding header is not believed.
                conn.ip = source;
            }
            conn
        })
        .map_err(invalid)?;
        let unknown = IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);
        let mut opts = browser_opts(
            state,
            peer.unwrap_or(unknown),
            &axum::http::HeaderMap::new(),
            DoorLabel::Grpc,
            door.budget_ms,
            door.on_upstream_error,
        )
        .map_err(invalid)?;
        if let Some(t) = timeout {
            // The fail-mode answer must reach Envoy before its own
            // timeout (the same instant as grpc-timeout) fires.
            // (A margin that would swallow the timeout leaves half of it.)
            let room = t.saturating_sub(door.timeout_margin()).max(t / 2);
            opts.budget = opts.budget.min(room);
        }
        let d = state.scorer.score(&event, &opts).await;
        if failed_inside(&d) {
            self.error.increment(1);
            return Err(Status::internal("fraudgate failed to decide"));
        }
        Ok(self.render(&d))
    }

    fn render(&self, d: &Decision) -> CheckResponse {
        let mut h = HeaderMap::new();
        decision_headers(&mut h, d);
        if d.is_block() {
            self.denied.increment(1);
            denied(
                self.blocked(),
                options(&h, |_| true),
                &self.state.config.doors.grpc.denied_body,
            )
        } else {
            self.ok.increment(1);
            allowed(
                options(&h, |_| true),
                options(&h, |n| TO_VISITOR.contains(&n)),
            )
        }
    }

    fn blocked(&self) -> i32 {
        i32::from(blocked_status(&self.state.config.doors.auth).as_u16())
    }

    /// What a shed Check gets: UNAVAILABLE (Envoy's failure mode decides),
    /// or with `shed_response = "fallback"` the door's fail mode, unscored.
    fn shed(&self) -> Result<CheckResponse, Status> {
        let state = &self.state;
        if state.config.server.shed_response != ShedResponse::Fallback {
            return Err(Status::unavailable(
                "fraudgate is at server.max_concurrency",
            ));
        }
        let action = (state.config.doors.grpc.on_upstream_error.action())
            .unwrap_or(state.config.policy.on_upstream_error);
        let decision = vec![option("x-fraudgate-decision", action.as_str())];
        Ok(match action {
            Action::Allow => allowed(decision.clone(), decision),
            Action::Block => denied(self.blocked(), decision, ""),
        })
    }
}

#[tonic::async_trait]
impl super::proto::auth::authorization_server::Authorization for Door {
    async fn check(&self, req: Request<CheckRequest>) -> Result<Response<CheckResponse>, Status> {
        let answer = Door::check(self, req).await;
        if let Err(s) = &answer
            && s.code() == tonic::Code::InvalidArgument
        {
            self.invalid.increment(1);
        }
        answer.map(Response::new)
    }
}

fn invalid(e: ApiError) -> Status {
    let msg = match &e.field {
        Some(f) => format!("{}: {}: {}", e.error, f, e.message),
        None => format!("{}: {}", e.error, e.message),
    };
    if e.status == StatusCode::INTERNAL_SERVER_ERROR {
        return Status::internal(msg);
    }
    Status::invalid_argument(msg)
}

/// The downstream peer Envoy saw.
fn source_ip(attrs: &super::proto::auth::AttributeContext) -> Option<IpAddr> {
    let addr = attrs.source.as_ref()?.address.as_ref()?.address.as_ref()?;
    match addr {
        core::address::Address::SocketAddress(s) => {
            s.address.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
        }
        _ => None,
    }
}

/// The visitor's request headers: Envoy's lowercase `headers` map, or
/// `header_map` (newer Envoy with `encode_raw_headers`). A name or value
/// no HTTP header could carry is skipped.
fn header_map(req: &attribute_context::HttpRequest) -> HeaderMap {
    let mut h = HeaderMap::with_capacity(req.headers.len());
    let raw = req
        .header_map
        .iter()
        .flat_map(|m| m.headers.iter())
        .map(|v| {
            let value = if v.raw_value.is_empty() {
                v.value.as_bytes()
            } else {
                &v.raw_value[..]
            };
            (v.key.as_str(), value)
        });
    let pairs = req.headers.iter().map(|(k, v)| (k.as_str(), v.as_bytes()));
    for (k, v) in pairs.chain(raw) {
        if k.starts_with(':') {
            continue;
        }
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_bytes(v),
        ) {
            h.append(k, v);
        }
    }
    h
}

fn option(key: &str, value: &str) -> core::HeaderValueOption {
    core::HeaderValueOption {
        header: Some(core::HeaderValue {
            key: key.to_owned(),
            value: value.to_owned(),
            ..Default::default()
        }),
        // A visitor's own X-Fraudgate-* header must not survive.
        append_action: core::header_value_option::HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
        ..Default::default()
    }
}

fn options(h: &HeaderMap, keep: impl Fn(&str) -> bool) -> Vec<core::HeaderValueOption> {
    h.iter()
        .filter(|(k, _)| keep(k.as_str()))
        .filter_map(|(k, v)| Some(option(k.as_str(), v.to_str().ok()?)))
        .collect()
}

fn allowed(
    upstream: Vec<core::HeaderValueOption>,
    visitor: Vec<core::HeaderValueOption>,
) -> CheckResponse {
    CheckResponse {
        status: Some(rpc::Status {
            code: OK,
            ..Default::default()
        }),
        http_response: Some(check_response::HttpResponse::OkResponse(OkHttpResponse {
            headers: upstream,
            response_headers_to_add: visitor,
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn denied(status: i32, headers: Vec<core::HeaderValueOption>, body: &str) -> CheckResponse {
    CheckResponse {
        status: Some(rpc::Status {
            code: PERMISSION_DENIED,
            message: "blocked by fraudgate".to_owned(),
            ..Default::default()
        }),
        http_response: Some(check_response::HttpResponse::DeniedResponse(
            DeniedHttpResponse {
                status: Some(HttpStatus { code: status }),
                headers,
                body: body.to_owned(),
            },
        )),
        ..Default::default()
    }
}
