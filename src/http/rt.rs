//! `GET /`: a drop-in for the FraudScore RT endpoint. Same query parameters
//! (including `key`), same answer: HTTP 200, `text/plain`, the problem tags
//! one a line, empty when clean; an existing integration only changes host.
//!
//! - shadow mode answers an empty body (the integration is not affected);
//! - when no verdict can be had and `policy.on_upstream_error = "block"`,
//!   it answers 503 so the integration's own failure handling applies;
//!   with `"allow"` it answers an empty body, as a clean RT answer.
//!
//! Headers `X-Fraudgate-Decision`, `-Source`, `-Reason`, `-Id` and `-Tags`
//! carry the decision.
//!
//! The query is read as RT reads it ([`EventBuilder::from_rt_query`]): `at`
//! is mandatory, a parameter RT does not document is ignored (and
//! counted), a repeated one takes its last value.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::access::client_name;
use super::body::api_opts;
use super::error::ApiError;
use super::render::decision_headers;
use crate::decision::{Decision, Door, Source};
use crate::event::EventBuilder;
use crate::policy::{Action, Mode};

pub async fn get(State(state): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let client = client_name(&req);
    answer(&state, req, client).await
}

/// [`get`] for a request whose client is known (the hot path of
/// [`super::hot`] calls it without the router).
pub(super) async fn answer(
    state: &AppState,
    req: Request,
    client: Option<Arc<str>>,
) -> Result<Response, ApiError> {
    // `key` is accepted here as RT accepts it; it is not RT's key and is
    // never forwarded (fraudgate sends its own).
    let (builder, ignored) = EventBuilder::from_rt_query(req.uri().query().unwrap_or(""))?;
    if ignored > 0 {
        // Rare (an integration's own fields): a lookup in this app's
        // registry, not a handle kept for the hot path.
        state
            .registry
            .scope(|| metrics::counter!(crate::metrics::RT_IGNORED_PARAMS))
            .increment(ignored);
    }
    let event = builder.build_with_at()?;
    let opts = api_opts(state, req.headers(), Door::Rt)?.with_client(client);
    let d = state.scorer.score(&event, &opts).await;
    Ok(render(&d))
}

/// Plain text straight from the tags: nothing is built for a clean
/// answer (an empty body).
fn render(d: &Decision) -> Response {
    let unavailable =
        d.source == Source::Fallback && d.ruling.action == Action::Block && d.mode == Mode::Enforce;
    let mut resp = if unavailable {
        StatusCode::SERVICE_UNAVAILABLE.into_response()
    } else if d.mode == Mode::Enforce && !d.tags.is_clean() {
        let mut body = String::new();
        d.tags.write_rt(&mut body);
        body.into_response()
    } else {
        StatusCode::OK.into_response()
    };
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    decision_headers(h, d);
    resp
}
