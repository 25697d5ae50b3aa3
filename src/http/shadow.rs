//! `GET /v1/reports/shadow`: what each rule in shadow mode would have
//! blocked, and the payout at stake (`query::shadow`).

use axum::Json;
use axum::extract::{RawQuery, State};
use serde_json::{Value, json};

use super::AppState;
use super::data::query_error;
use super::error::ApiError;
use super::reports::on_log;
use crate::decision::RuleKind;
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
    let count = p.count;
    let rows = on_log(&state, move |reader, stop| {
        let mut report = Report::new(&p);
        let blocks = |t: &_, o: &str, a: &str| policy.blocks(t, o, a);
        for kind in kinds {
            reader.run(&p.query(kind), stop, &mut |names, values| {
                report.add(kind, names, values, &blocks);
                true
            })?;
        }
        Ok(report.finish(count))
    })
    .await?;
    Ok(Json(
        json!({ "shadow": { "rules": names, "results": rows } }),
    ))
}
