//! `POST /v1/check/batch`: a JSON array of events -> an array of results in
//! the same order. A bad item gets `{"error", "field", "message"}` in its
//! slot; the others are still scored. Items are scored concurrently under
//! one time budget.

use axum::Extension;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use futures_util::future::join_all;
use serde::Serialize;

use super::AppState;
use super::access::ClientName;
use super::body::{api_opts, json_body};
use super::error::ApiError;
use crate::decision::{Decision, Door};
use crate::event::{EventBuilder, FieldError};

#[derive(Serialize)]
#[serde(untagged)]
pub enum Item {
    Decision(Decision),
    Error(ApiError),
}

pub async fn post(
    State(state): State<AppState>,
    client: Option<Extension<ClientName>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Vec<Item>>, ApiError> {
    let body = json_body(&headers, body, state.config.server.max_json_depth)?;
    let items: Vec<serde_json::Value> = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_field",
            format!(
                "body must be a JSON array of events: line {} column {}",
                e.line(),
                e.column()
            ),
        )
        .with_field("body")
    })?;
    let max = state.config.server.max_batch;
    if items.len() > max {
        return Err(ApiError::too_large(
            "body",
            format!(
                "batch has {} events; server.max_batch is {max}",
                items.len()
            ),
        ));
    }
    let opts = api_opts(&state, &headers, Door::Batch)?.with_client(client.map(|c| c.0.0));
    let events: Vec<Result<_, FieldError>> = items
        .iter()
        .map(|v| EventBuilder::from_json_value(v).and_then(EventBuilder::build))
        .collect();
    drop(items);
    let scorer = &state.scorer;
    let opts = &opts;
    let results = join_all(events.into_iter().map(|e| async move {
        match e {
            Ok(event) => Item::Decision(scorer.score(&event, opts).await),
            Err(err) => Item::Error(err.into()),
        }
    }))
    .await;
    Ok(Json(results))
}
