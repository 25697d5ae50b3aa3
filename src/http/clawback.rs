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
use crate::query::range::{self, Takes};
use crate::rescore::{RescoreError, Rescorer, Summary};

/// `date_start`, `date_end` (days in `timezone`; today when absent),
/// `timezone`, `count` (rows, 100; at most 10 000) -> the range in Unix
/// ms and the row count.
fn parse(raw: &str) -> Result<((i64, i64), usize), QueryError> {
    let r = range::parse(
        raw,
        &Takes {
            groups: None,
            page: false,
        },
    )?;
    Ok((r.millis()?, usize::try_from(r.count).unwrap_or(usize::MAX)))
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
