//! `GET` and `POST /v1/postback`: a conversion, posted back by a tracker
//! (query string, form or JSON), joined to its click from the decision
//! log and judged by the funnel rules -> the conversion's decision in
//! `/v1/check`'s JSON form.

use axum::Extension;
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use serde_json::{Map, Value};

use super::AppState;
use super::access::ClientName;
use super::body::{api_opts, json_body};
use super::data::log_off;
use super::error::ApiError;
use crate::decision::{Decision, Door};
use crate::funnel::{LogRead, Postback};
use crate::query::Query;

pub async fn get(
    State(state): State<AppState>,
    client: Option<Extension<ClientName>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Json<Decision>, ApiError> {
    let raw = query.unwrap_or_default();
    let p = Postback::from_pairs(form_urlencoded::parse(raw.as_bytes()))?;
    judge(&state, client, &headers, p).await
}

pub async fn post(
    State(state): State<AppState>,
    client: Option<Extension<ClientName>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Decision>, ApiError> {
    let mime = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let p = if mime == "application/x-www-form-urlencoded" {
        let body = body.map_err(|_| {
            ApiError::too_large("body", "request body exceeds server.max_body_bytes")
        })?;
        Postback::from_pairs(form_urlencoded::parse(&body))?
    } else if mime == "application/json" || mime.ends_with("+json") {
        let body = json_body(&headers, body, state.config.server.max_json_depth)?;
        Postback::from_json(&body)?
    } else {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Content-Type must be application/x-www-form-urlencoded or application/json",
        )
        .with_field("Content-Type"));
    };
    judge(&state, client, &headers, p).await
}

async fn judge(
    state: &AppState,
    client: Option<Extension<ClientName>>,
    headers: &HeaderMap,
    p: Postback,
) -> Result<Json<Decision>, ApiError> {
    if state.reader.is_none() {
        return Err(log_off());
    }
    let opts = api_opts(state, headers, Door::Postback)?.with_client(client.map(|c| c.0.0));
    let now_ms = jiff::Timestamp::now().as_millisecond();
    let judged = state.funnel.judge(&p, &Slots(state), now_ms).await?;
    Ok(Json(
        state
            .scorer
            .judge_conversion(&judged.event, judged.hits, &opts)
            .await,
    ))
}

/// The decision log read through the query side's slots and limits.
struct Slots<'a>(&'a AppState);

impl LogRead for Slots<'_> {
    type Error = ApiError;

    async fn rows(&self, q: Query) -> Result<Vec<Map<String, Value>>, ApiError> {
        super::reports::collect(self.0, q).await
    }
}
