//! `GET /v1/reports/shadow`: what each rule in shadow mode would have
//! blocked, and the payout at stake (`query::shadow`).

use axum::Json;
use axum::extract::{RawQuery, State};
use serde_json::{Value, json};

use super::AppState;
use super::data::{Cut, log_off, query_error};
use super::error::ApiError;
use crate::decision::RuleKind;
use crate::query::exec::QueryFailure;
use crate::query::shadow::{Report, parse};

pub async fn report(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let p = parse(raw.as_deref().unwrap_or("")).map_err(query_error)?;
    let policy = state.scorer.policy().clone();
    let kinds: Vec<RuleKind> = RuleKind::ALL
        .into_iter()
        .filter(|k| policy.is_shadow(*k))
        .collect();
    let names: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
    let reader = state.reader.clone().ok_or_else(log_off)?;
    let slot = state.queries.admit().await?;
    let (stop, _asker) = reader.stop();
    let queries = state.queries.clone();
    let count = p.count;
    let rows = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        let mut report = Report::new(&p);
        let blocks = |t: &_, o: &str, a: &str| policy.blocks(t, o, a);
        for kind in kinds {
            let result = reader.run(&p.query(kind), &stop, &mut |names, values| {
                report.add(kind, names, values, &blocks);
                true
            });
            if let Err(e) = result {
                if matches!(e, QueryFailure::Gone) {
                    queries.cut(Cut::ClientGone);
                }
                return Err(e);
            }
        }
        Ok(report.finish(count))
    })
    .await
    .map_err(|_| ApiError::internal())?
    .map_err(|e| state.queries.failure(e))?;
    Ok(Json(
        json!({ "shadow": { "rules": names, "results": rows } }),
    ))
}
