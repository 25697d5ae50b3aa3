//! `/healthz` (process alive), `/readyz` (ready to serve), `/metrics`.

use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;
use crate::metrics as m;

/// Always the same bytes: nothing is built per probe.
pub async fn healthz() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        r#"{"status":"ok"}"#,
    )
        .into_response()
}

/// 200 while serving; 503 once shutdown has begun, so load balancers stop
/// sending traffic while in-flight requests drain. `degraded` (still 200)
/// while RT calls fail or the breaker is not closed: `upstream_error` says
/// why and since when.
pub async fn readyz(State(state): State<AppState>) -> Response {
    let upstream = if state.scorer.upstream_enabled() {
        "enabled"
    } else {
        "disabled"
    };
    let draining = state.draining.load(Ordering::Relaxed);
    let status = if draining {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    // An open breaker leaves the instance ready (local rules and fallback
    // still answer) but degraded.
    let breaker = state.scorer.breaker_state();
    // Failing RT calls leave it ready too, and say why.
    let failing = state.scorer.upstream_status().and_then(|s| s.failing());
    let degraded = breaker.is_some_and(|b| b != crate::breaker::State::Closed) || failing.is_some();
    let body = json!({
        "status": if draining { "draining" } else if degraded { "degraded" } else { "ready" },
        "upstream": upstream,
        "breaker": breaker.map(|b| b.as_str()),
        "upstream_error": failing,
        "mode": state.scorer.policy().mode().as_str(),
        "redis": state.scorer.fleet().map_or("off", |f| f.status()),
        // A failing store leaves the instance ready: decisions go on,
        // their records are dropped and counted.
        "decision_log": state.scorer.log().map_or_else(|| "off".to_owned(), |l| l.status()),
    });
    (status, Json(body)).into_response()
}

pub async fn metrics(State(state): State<AppState>) -> Response {
    let text = state.registry.scope(|| {
        metrics::gauge!(m::CACHE_ENTRIES).set(state.scorer.cache().entry_count() as f64);
        state.scorer.rules().export_gauges();
        state.registry.render()
    });
    let mut resp = text.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}
