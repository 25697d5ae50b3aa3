//! 24metrics Fraudshield's report paths (reference 001), for clients
//! written against Fraudshield (its PHP SDK among them): thin doors over
//! the mapping in `query::fraudshield`, which builds the queries and
//! shapes their rows.
//!
//! - `GET /api/v1/reports/conversion.json`: a page of conversions in
//!   Fraudshield's pagination object;
//! - `GET|POST /api/v1/reports/conversion_scroll.json`: the same, by
//!   `next_page_id` (the POST as a form, as the SDK sends it);
//! - `GET /api/v1/reports/{fraud,goal,global,interval}.json`;
//! - `GET /api/v1/reports/{entry_type}/{entry_id}`: one decision.
//!
//! `api_token` is a report key (checked by the access layer); `user_id`,
//! when given, must be the key's user if `auth.report_users` names one.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get};
use axum::{Extension, Json};
use serde_json::json;

use super::AppState;
use super::data::query_error;
use super::error::ApiError;
use super::report_access::ReportUser;
use super::reports::{collect_all, entry_query};
use crate::query::QueryError;
use crate::query::fraudshield::{self, Report, Request, Trackers, source, terms};
use crate::query::params::{time_zone, unknown_parameter};

/// The key's user, when `auth.report_users` gives it one.
type User = Option<Extension<ReportUser>>;

async fn answer(
    state: AppState,
    user: User,
    report: Report,
    pairs: Result<Vec<(String, String)>, QueryError>,
) -> Result<Response, ApiError> {
    let trackers = Trackers::new(&state.config.auth.trackers);
    let r = Request::parse(report, &pairs.map_err(query_error)?, &trackers).map_err(query_error)?;
    check_user(r.user_id.as_deref(), user)?;
    let queries = fraudshield::queries(&r).map_err(query_error)?;
    let rows = collect_all(&state, queries).await?;
    let body = fraudshield::render(&r, rows, &trackers).map_err(query_error)?;
    Ok(Json(body).into_response())
}

/// `user_id` must name the user of the key it came with, when the key
/// has one; the key itself is never echoed.
fn check_user(given: Option<&str>, user: User) -> Result<(), ApiError> {
    match (given, user) {
        (Some(given), Some(Extension(ReportUser(owner)))) if given != &*owner => {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "user_id is not the user of this api_token",
            )
            .with_field("user_id"))
        }
        _ => Ok(()),
    }
}

fn query_pairs(raw: Option<String>) -> Result<Vec<(String, String)>, QueryError> {
    fraudshield::pairs(raw.as_deref().unwrap_or(""), None)
}

/// The route of a report: GET with its parameters in the URL; the
/// scroll also as a POST form.
pub fn method(report: Report) -> MethodRouter<AppState> {
    let get = get(
        move |State(state): State<AppState>, user: User, RawQuery(raw): RawQuery| async move {
            answer(state, user, report, query_pairs(raw)).await
        },
    );
    match report {
        Report::Scroll => get.post(scroll_form),
        _ => get,
    }
}

/// The scroll as the PHP SDK sends it: a POST form, its parameters in
/// the URL too.
async fn scroll_form(
    State(state): State<AppState>,
    user: User,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    if !form && !body.is_empty() {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the parameters as application/x-www-form-urlencoded (or in the URL)",
        )
        .with_field("content-type"));
    }
    let pairs = fraudshield::pairs(raw.as_deref().unwrap_or(""), Some(&body));
    answer(state, user, Report::Scroll, pairs).await
}

/// One decision in the entry form, as a one-element array; 404 naming
/// `entry_type` or `entry_id` when there is no such entry.
pub async fn entry(
    State(state): State<AppState>,
    user: User,
    Path((entry_type, entry_id)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let mut tz = None;
    let mut user_id = None;
    for (k, v) in query_pairs(raw).map_err(query_error)? {
        match k.as_str() {
            "api_token" | "key" => {}
            "user_id" => user_id = Some(v),
            "timezone" => tz = Some(time_zone(&v, "timezone").map_err(query_error)?),
            other => return Err(query_error(unknown_parameter(other))),
        }
    }
    check_user(user_id.as_deref(), user)?;
    let not_found = |field: &'static str, message: &'static str| {
        ApiError::new(StatusCode::NOT_FOUND, "unknown_entry", message).with_field(field)
    };
    if terms::is_entry(&entry_type, "").is_none() {
        return Err(not_found(
            "entry_type",
            "entry types are conversion, click and goal",
        ));
    }
    let no_entry = || {
        not_found(
            "entry_id",
            "no entry of this type with this id in the log (it may be past retention)",
        )
    };
    // The id is a UUIDv7: its time finds the row.
    let ms = crate::decision::DecisionId::parse(&entry_id)
        .ok_or_else(no_entry)?
        .unix_ms() as i64;
    let tz = tz.unwrap_or(jiff::tz::TimeZone::UTC);
    let row = collect_all(&state, vec![entry_query(entry_id, ms, tz.clone())])
        .await?
        .pop()
        .and_then(|rows| rows.into_iter().next())
        .ok_or_else(no_entry)?;
    let event_type = row.get("event_type").and_then(|v| v.as_str()).unwrap_or("");
    if terms::is_entry(&entry_type, event_type) != Some(true) {
        return Err(no_entry());
    }
    let trackers = Trackers::new(&state.config.auth.trackers);
    Ok(Json(json!([source::entry(&row, &tz, &trackers)])).into_response())
}
