//! `GET /v1/reports/funnel`: per source, impressions -> clicks ->
//! conversions, CTIT, rejections and payout (`query::funnel`).

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::AppState;
use super::data::{Cut, log_off, query_error};
use super::error::ApiError;
use crate::query::exec::QueryFailure;
use crate::query::funnel::{MAX_CONVERSIONS, Report, parse};

pub async fn report(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let p = parse(raw.as_deref().unwrap_or("")).map_err(query_error)?;
    let (page, count) = (p.page, p.count);
    let reader = state.reader.clone().ok_or_else(log_off)?;
    let slot = state.queries.admit().await?;
    let (stop, _asker) = reader.stop();
    let queries = state.queries.clone();
    // Both reads on one blocking thread in one slot; dropping the future
    // (the request timed out, its client left) stops them.
    let report = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        let mut report = Report::new(&p);
        let result = reader
            .run(&p.traffic(), &stop, &mut |names, values| {
                report.add_traffic(names, values);
                true
            })
            .and_then(|()| {
                reader.run(&p.conversions(), &stop, &mut |names, values| {
                    report.add_conversion(names, values)
                })
            });
        if matches!(result, Err(QueryFailure::Gone)) {
            queries.cut(Cut::ClientGone);
        }
        result.map(|()| report)
    })
    .await
    .map_err(|_| ApiError::internal())?
    .map_err(|e| state.queries.failure(e))?;
    if report.truncated() {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_conversions",
            format!("the range holds more than {MAX_CONVERSIONS} conversions: ask for fewer days"),
        )
        .with_field("date_start"));
    }
    Ok(Json(
        json!({ "funnel": { "results": report.finish(page, count) } }),
    ))
}
