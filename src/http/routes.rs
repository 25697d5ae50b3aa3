//! The route table: which paths each surface serves and what guards them.
//!
//! Routes are added through [`Routes`], which keeps the paths it was given:
//! axum cannot list a router's routes, and the request metrics label each
//! request by the route that matched, from this one list.

use std::sync::Arc;

use axum::Router;
use axum::middleware::from_fn_with_state;
use axum::routing::{MethodRouter, any, get, post};

use super::error::ApiError;
use super::{
    AppState, access, admin, batch, check, clawback, click, data, forward_auth, fraudshield,
    funnel, health, openrtb, postback, report_access, reports, rt, shadow, ui,
};
use crate::query::fraudshield::Report;

/// A router and the paths it serves.
#[derive(Default)]
pub struct Routes {
    router: Router<AppState>,
    paths: Vec<&'static str>,
}

impl Routes {
    pub fn route(mut self, path: &'static str, method: MethodRouter<AppState>) -> Self {
        self.router = self.router.route(path, method);
        self.paths.push(path);
        self
    }

    pub fn merge(mut self, other: Routes) -> Self {
        self.router = self.router.merge(other.router);
        self.paths.extend(other.paths);
        self
    }

    /// Applies `f` to the router (a `route_layer` or `layer` for every
    /// route so far); the paths stay.
    pub fn map(mut self, f: impl FnOnce(Router<AppState>) -> Router<AppState>) -> Self {
        self.router = f(self.router);
        self
    }

    pub fn into_parts(self) -> (Router<AppState>, Vec<&'static str>) {
        (self.router, self.paths)
    }
}

/// `/healthz` and `/readyz`: on every surface.
pub(super) fn probes() -> Routes {
    Routes::default()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
}

/// The operator's endpoints: the query side, `/metrics`, `/ui`, admin.
pub(super) fn operator(state: &AppState) -> Routes {
    reports(state)
        .route("/metrics", get(health::metrics))
        .route("/ui", get(ui::index))
        .route("/ui/{file}", get(ui::asset))
        .merge(admin(state))
}

/// The front doors; `access`: the scoring doors' client check (see
/// [`access`]).
pub(super) fn doors(access: Arc<access::Access>) -> Routes {
    scoring(access).merge(browser())
}

/// `/v1/admin/...`: behind admin keys, or a 404 that says how to turn it on.
pub(super) fn admin(state: &AppState) -> Routes {
    let admin_keys = Arc::new(state.config.auth.admin_keys.clone());
    if admin_keys.0.is_empty() {
        // Off: still a 404 (nothing to find), but one that says how to
        // turn it on.
        Routes::default().route(
            "/v1/admin/{*rest}",
            any(|| async {
                ApiError::new(
                    axum::http::StatusCode::NOT_FOUND,
                    "admin_disabled",
                    "the admin API is off: set auth.admin_keys (e.g. FRAUDGATE_AUTH__ADMIN_KEYS=<key>) to turn it on",
                )
            }),
        )
    } else {
        Routes::default()
            .route("/v1/admin/lists", get(admin::lists))
            .route(
                "/v1/admin/lists/{name}/entries",
                get(admin::entries).post(admin::add).delete(admin::remove),
            )
            .route("/v1/admin/cache/purge", post(admin::purge))
            .route("/v1/admin/reload", post(admin::reload))
            .route("/v1/admin/feeds", get(admin::feeds))
            .route("/v1/admin/feeds/{name}/run", post(admin::run_feed))
            .route(
                "/v1/admin/feeds/{name}/entries",
                axum::routing::delete(admin::clear_feed),
            )
            .map(|r| r.route_layer(from_fn_with_state(admin_keys, admin::require_key)))
    }
}

/// The client check of the scoring endpoints: client keys and rate
/// limits (fleet-wide with `redis.share_rate_limits`).
pub(super) fn access(state: &AppState) -> Arc<access::Access> {
    Arc::new(
        access::Access::new(&state.config.auth).with_fleet(
            state
                .scorer
                .fleet()
                .filter(|f| f.share_rate_limits())
                .cloned(),
        ),
    )
}

/// The scoring endpoints API clients call, behind `access`.
pub(super) fn scoring(access: Arc<access::Access>) -> Routes {
    Routes::default()
        .route("/", get(rt::get))
        .route("/v1/check", get(check::get).post(check::post))
        .route("/v1/check/batch", post(batch::post))
        .route("/v1/auth", any(forward_auth::handle))
        .route("/v1/auth/{*rest}", any(forward_auth::handle))
        .route("/v1/openrtb", post(openrtb::handle))
        .route("/v1/postback", get(postback::get).post(postback::post))
        .map(|r| r.route_layer(access::AccessLayer::new(access)))
}

/// The decision log's query side: report keys (or admin keys).
pub(super) fn reports(state: &AppState) -> Routes {
    let report_access = Arc::new(report_access::ReportAccess::new(&state.config.auth));
    let mut routes = Routes::default()
        .route("/v1/data/help", get(data::help))
        .route("/v1/data/{event}", get(data::list))
        .route("/v1/data/{event}/groups", get(data::groups))
        .route("/data/{channel}/help", get(data::help))
        .route("/data/{channel}/{event}", get(data::list))
        .route("/data/{channel}/{event}/groups", get(data::groups))
        .route("/v1/reports/fraud", get(reports::fraud))
        .route("/v1/reports/global", get(reports::global))
        .route("/v1/reports/interval", get(reports::interval))
        .route("/v1/reports/funnel", get(funnel::report))
        .route("/v1/reports/clawback", get(clawback::report))
        .route("/v1/reports/shadow", get(shadow::report))
        .route("/v1/reports/entry/{id}", get(reports::entry))
        .route(
            "/api/v1/reports/{entry_type}/{entry_id}",
            get(fraudshield::entry),
        );
    // Fraudshield's own paths and vocabulary (reference 001: conversion,
    // conversion_scroll, fraud, goal, global and interval `.json`),
    // `api_token` as the key.
    for report in Report::ALL {
        routes = routes.route(report.path(), fraudshield::method(report));
    }
    routes.map(|r| {
        r.route_layer(from_fn_with_state(
            report_access,
            report_access::require_report_key,
        ))
    })
}

/// `/click` and `/imp` sit in ad markup and are public by nature: a key in
/// them would be public too. They are guarded by the local rules and the
/// concurrency limit.
pub(super) fn browser() -> Routes {
    Routes::default()
        .route("/click", get(click::click))
        .route("/imp", get(click::imp))
        .map(|r| r.layer(axum::middleware::map_response(click::never_stored)))
}
