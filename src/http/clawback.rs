//! `GET /v1/reports/clawback`: the approved conversions of a range whose
//! click (or own IP) today's lists and rules would block, with payout,
//! per affiliate and currency (`crate::rescore`, over the running gate's
//! rules). For long ranges, `fraudgate rescore` does the same without the
//! query time limit.

use axum::Json;
use axum::extract::{RawQuery, State};
use serde_json::{Value, json};

use super::AppState;
use super::data::query_error;
use super::error::ApiError;
use super::reports::on_log;
use crate::query::QueryError;
use crate::query::exec::QueryFailure;
use crate::query::params::{number, time_zone, unknown_parameter};
use crate::rescore::{RescoreError, Rescorer, Summary};

/// `date_start`, `date_end` (days in `timezone`; today when absent),
/// `timezone`, `count` (rows, 100; at most 10 000) -> the range in Unix
/// ms and the row count.
fn parse(raw: &str) -> Result<((i64, i64), usize), QueryError> {
    let mut tz = jiff::tz::TimeZone::UTC;
    let (mut start, mut end) = (None, None);
    let mut count = 100;
    for (k, v) in form_urlencoded::parse(raw.as_bytes()) {
        match &*k {
            "date_start" => start = Some(v.into_owned()),
            "date_end" => end = Some(v.into_owned()),
            "timezone" => tz = time_zone(&v, "timezone")?,
            "count" => count = number(&v, "count", 1, crate::query::report::MAX_REPORT_ROWS)?,
            "key" => {}
            other => return Err(unknown_parameter(other)),
        }
    }
    let today = jiff::Zoned::now().with_time_zone(tz.clone()).date();
    let day = |d: Option<String>, field: &'static str| -> Result<jiff::civil::Date, QueryError> {
        match d {
            None => Ok(today),
            Some(d) => d
                .trim()
                .parse()
                .map_err(|_| QueryError::new(field, format!("{d:?}: use YYYY-MM-DD"))),
        }
    };
    let (start, end) = (day(start, "date_start")?, day(end, "date_end")?);
    if end < start {
        return Err(QueryError::new("date_end", "date_end is before date_start"));
    }
    let ms = |d: jiff::civil::Date, field: &'static str| -> Result<i64, QueryError> {
        tz.to_zoned(d.to_datetime(jiff::civil::Time::midnight()))
            .map(|z| z.timestamp().as_millisecond())
            .map_err(|e| QueryError::new(field, e.to_string()))
    };
    let next = end
        .tomorrow()
        .map_err(|e| QueryError::new("date_end", e.to_string()))?;
    Ok((
        (ms(start, "date_start")?, ms(next, "date_end")?),
        usize::try_from(count).unwrap_or(usize::MAX),
    ))
}

pub async fn report(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let (range, count) = parse(raw.as_deref().unwrap_or("")).map_err(query_error)?;
    let rescorer = Rescorer::over(
        state.scorer.rules().clone(),
        state.scorer.policy().clone(),
        state.config.decision_log.ip,
    );
    let (rows, sum) = on_log(&state, move |reader, stop| {
        let mut rows = Vec::new();
        let mut sum = Summary::default();
        let result = rescorer.clawbacks(reader, stop, range, &mut sum, &mut |c| {
            if rows.len() < count {
                rows.push(json!(c));
            }
            true
        });
        match result {
            Err(RescoreError::Failure(f)) => Err(f),
            Err(other) => Err(QueryFailure::Store(other.to_string())),
            Ok(()) => Ok((rows, sum)),
        }
    })
    .await?;
    let by_affiliate: Vec<Value> = sum
        .clawback_by_affiliate
        .iter()
        .flat_map(|(aff, by)| {
            by.iter().map(move |(currency, (n, payout))| {
                json!({"affiliate_id": aff, "currency": currency, "conversions": n,
                    "payout": (payout * 100.0).round() / 100.0})
            })
        })
        .collect();
    Ok(Json(json!({
        "clawback": {
            "conversions_approved": sum.conversions_approved,
            "clawbacks": sum.clawbacks,
            "by_affiliate": by_affiliate,
            "results": rows,
        }
    })))
}
