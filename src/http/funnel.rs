//! `GET /v1/reports/funnel`: per source, impressions -> clicks ->
//! conversions, CTIT, rejections and payout (`query::funnel`).

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::AppState;
use super::data::query_error;
use super::error::ApiError;
use super::reports::on_log;
use crate::query::funnel::{MAX_CONVERSIONS, Report, parse};

pub async fn report(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let p = parse(raw.as_deref().unwrap_or("")).map_err(query_error)?;
    let (page, count) = (p.page, p.count);
    // Both reads on one blocking thread in one slot.
    let report = on_log(&state, move |reader, stop| {
        let mut report = Report::new(&p);
        reader.run(&p.traffic(), stop, &mut |names, values| {
            report.add_traffic(names, values);
            true
        })?;
        reader.run(&p.conversions(), stop, &mut |names, values| {
            report.add_conversion(names, values)
        })?;
        Ok(report)
    })
    .await?;
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
