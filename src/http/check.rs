//! `GET /v1/check?<RT parameters>` and `POST /v1/check` (JSON object with
//! the same names) -> the decision as JSON.

use axum::Extension;
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{RawQuery, State};

use super::access::ClientName;
use axum::http::HeaderMap;

use super::AppState;
use super::body::{api_opts, json_body};
use super::error::ApiError;
use crate::decision::{Decision, Door};
use crate::event::EventBuilder;

pub async fn get(
    State(state): State<AppState>,
    client: Option<Extension<ClientName>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Json<Decision>, ApiError> {
    let event = EventBuilder::from_query(query.as_deref().unwrap_or(""))?.build()?;
    let opts = api_opts(&state, &headers, Door::Check)?.with_client(client.map(|c| c.0.0));
    Ok(Json(state.scorer.score(&event, &opts).await))
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
