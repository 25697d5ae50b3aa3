//! `GET /v1/check?<RT parameters>` and `POST /v1/check` (JSON object with
//! the same names) -> the decision as JSON.

use std::sync::Arc;

use axum::Extension;
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::response::Response;

use super::access::{ClientName, client_name};
use super::render;

use super::AppState;
use super::body::{api_opts, json_body};
use super::error::ApiError;
use crate::decision::{Decision, Door};
use crate::event::EventBuilder;

/// (The request is borrowed whole: its query and headers are read in
/// place, never copied.)
pub async fn get(State(state): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let client = client_name(&req);
    answer_get(&state, req, client).await
}

/// [`get`] for a request whose client is known (the hot path of
/// [`super::hot`] calls it without the router).
pub(super) async fn answer_get(
    state: &AppState,
    req: Request,
    client: Option<Arc<str>>,
) -> Result<Response, ApiError> {
    let event = EventBuilder::from_query(req.uri().query().unwrap_or(""))?.build()?;
    let opts = api_opts(state, req.headers(), Door::Check)?.with_client(client);
    Ok(render::json(&state.scorer.score(&event, &opts).await))
}

pub async fn post(
    State(state): State<AppState>,
    client: Option<Extension<ClientName>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Decision>, ApiError> {
    let body = json_body(&headers, body, state.config.server.max_json_depth)?;
    let event = EventBuilder::from_json(&body)?.build()?;
    let opts = api_opts(&state, &headers, Door::Check)?.with_client(client.map(|c| c.0.0));
    Ok(Json(state.scorer.score(&event, &opts).await))
}
