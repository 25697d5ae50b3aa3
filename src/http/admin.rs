//! `/v1/admin/*`: runtime list entries, cache purges, forced reloads.
//! Enabled only when `auth.admin_keys` is set; every call needs
//! `Authorization: Bearer <admin key>`. Edits take effect on the very next
//! request: lists are swapped atomically and purges are checked on every
//! cache read.

use std::net::IpAddr;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::body::json_body;
use super::error::ApiError;
use crate::config::SecretList;
use crate::event::now_unix;
use crate::metrics as m;
use crate::rules::lists::{Entry, EntryKind, parse_time};
use crate::rules::{AdminError, EntrySource};

/// Bearer-key check for every admin route.
pub async fn require_key(
    State(keys): State<std::sync::Arc<SecretList>>,
    req: Request,
    next: Next,
) -> Response {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
    let ok = presented.is_some_and(|p| keys.0.iter().fold(false, |acc, k| acc | k.matches(p)));
    if ok {
        return next.run(req).await;
    }
    let mut resp = ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "admin API needs Authorization: Bearer <admin key>",
    )
    .with_field("Authorization")
    .into_response();
    resp.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    resp
}

impl From<AdminError> for ApiError {
    fn from(e: AdminError) -> Self {
        let (status, code) = match e {
            AdminError::UnknownList(_) => (StatusCode::NOT_FOUND, "unknown_list"),
            AdminError::NotFound { .. } => (StatusCode::NOT_FOUND, "not_found"),
            AdminError::InFile { .. } => (StatusCode::CONFLICT, "entry_in_file"),
            AdminError::FeedList(_) => (StatusCode::CONFLICT, "feed_list"),
        };
        ApiError::new(status, code, e.to_string())
    }
}

fn list_name(p: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    p.map(|Path(n)| n).map_err(|_| {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_field", "bad list name").with_field("name")
    })
}

pub async fn lists(State(state): State<AppState>) -> Json<Value> {
    Json(json!({ "lists": state.scorer.rules().lists() }))
}

pub async fn entries(
    State(state): State<AppState>,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let name = list_name(name)?;
    let now = now_unix();
    let entries: Vec<Value> = state
        .scorer
        .rules()
        .entries(&name)?
        .into_iter()
        .map(|(e, src)| {
            let mut v = serde_json::to_value(&e).unwrap_or_default();
            v["source"] = json!(match src {
                EntrySource::File => "file",
                EntrySource::Runtime => "runtime",
                EntrySource::Feed => "feed",
            });
            v["live"] = json!(e.live(now));
            v
        })
        .collect();
    Ok(Json(json!({ "list": name, "entries": entries })))
}

/// A time as Unix seconds or RFC 3339.
#[derive(Deserialize)]
#[serde(untagged)]
enum When {
    Unix(u64),
    Text(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewEntry {
    kind: EntryKind,
    value: String,
    expires: Option<When>,
    /// Expire this many seconds from now (instead of `expires`).
    ttl_s: Option<u64>,
    reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(NewEntry),
    Many(Vec<NewEntry>),
}

fn bad_body(message: impl Into<std::borrow::Cow<'static, str>>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_field", message).with_field("body")
}

pub async fn add(
    State(state): State<AppState>,
    name: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let name = list_name(name)?;
    let body = json_body(&headers, body, state.config.server.max_json_depth)?;
    let parsed: OneOrMany = serde_json::from_slice(&body).map_err(|_| {
        bad_body("expected an entry {kind, value, expires?, ttl_s?, reason?} or an array of them; kind is ip, ua, device, affiliate, offer or affiliate_sub")
    })?;
    let items = match parsed {
        OneOrMany::One(e) => vec![e],
        OneOrMany::Many(v) => v,
    };
    let now = now_unix();
    let mut entries = Vec::with_capacity(items.len());
    for (i, e) in items.into_iter().enumerate() {
        let expires = match (e.expires, e.ttl_s) {
            (Some(_), Some(_)) => {
                return Err(bad_body(format!(
                    "entry {i}: give expires or ttl_s, not both"
                )));
            }
            (Some(When::Unix(t)), None) => Some(t),
            (Some(When::Text(t)), None) => Some(parse_time(&t).ok_or_else(|| {
                bad_body(format!(
                    "entry {i}: expires is not Unix seconds or RFC 3339 UTC"
                ))
            })?),
            (None, Some(ttl)) => Some(now.saturating_add(ttl)),
            (None, None) => None,
        };
        let entry = Entry::new(e.kind, &e.value, expires, e.reason.as_deref())
            .map_err(|m| bad_body(format!("entry {i}: {m}")))?;
        entries.push(entry);
    }
    let shared = state.scorer.fleet().map(|_| entries.clone());
    let added = state.scorer.rules().add_entries(&name, entries)?;
    let mut body = json!({ "list": name, "added": added });
    if let (Some(fleet), Some(entries)) = (state.scorer.fleet(), shared)
        && !fleet.list_add(&name, &entries).await
    {
        body["fleet"] = json!(UNSHARED);
    }
    tracing::info!(list = %name, added, "admin: list entries added");
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

pub async fn remove(
    State(state): State<AppState>,
    name: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let name = list_name(name)?;
    let (kind, value) = kind_and_value(query.as_deref())?;
    let kind = kind.ok_or_else(|| missing("kind"))?;
    let value = value.ok_or_else(|| missing("value"))?;
    let removed = state
        .scorer
        .rules()
        .remove_entries(&name, kind, value.trim())?;
    let mut body = json!({ "list": name, "removed": removed });
    if let Some(fleet) = state.scorer.fleet()
        && !fleet.list_remove(&name, kind, value.trim()).await
    {
        body["fleet"] = json!(UNSHARED);
    }
    tracing::info!(list = %name, removed, "admin: list entries removed");
    Ok(Json(body))
}

/// What a list edit answers while Redis is away.
const UNSHARED: &str =
    "redis unavailable: done on this replica; sent to the others when Redis is back";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Purge {
    ip: Option<String>,
    ua: Option<String>,
    #[serde(default)]
    all: bool,
}

pub async fn purge(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let body = json_body(&headers, body, state.config.server.max_json_depth)?;
    let p: Purge = serde_json::from_slice(&body)
        .map_err(|_| bad_body("expected {\"ip\": ..., \"ua\"?: ...} or {\"all\": true}"))?;
    let purge = match (p.all, p.ip, p.ua) {
        (true, None, None) => crate::cache::Purge::All,
        (false, Some(ip), ua) => {
            let ip: IpAddr = ip.trim().parse().map_err(|_| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_field",
                    "not an IP address",
                )
                .with_field("ip")
            })?;
            match ua {
                Some(ua) => crate::cache::Purge::IpUa(ip, ua),
                None => crate::cache::Purge::Ip(ip),
            }
        }
        _ => return Err(bad_body("give ip (and optionally ua), or all: true alone")),
    };
    state.scorer.cache().purge(&purge).await;
    let scope = purge.scope();
    state
        .registry
        .scope(|| metrics::counter!(m::CACHE_PURGES, "scope" => scope))
        .increment(1);
    let fleet = match state.scorer.fleet() {
        Some(f) if f.purge(&purge).await => "shared",
        Some(_) => "local_only",
        None => "local",
    };
    tracing::info!(scope, fleet, "admin: cache purged");
    if fleet == "local_only" {
        return Ok(Json(
            json!({ "purged": scope, "fleet": "redis unavailable: purged on this replica only" }),
        ));
    }
    Ok(Json(json!({ "purged": scope })))
}

/// Rule and list files are re-read; the config file is not: when it
/// changed since startup, the answer is 409 naming the sections that need
/// a restart (the rule files are reloaded all the same).
pub async fn reload(State(state): State<AppState>) -> Result<Response, ApiError> {
    let (changed, restart) = reload_files(&state)
        .await
        .map_err(|_| ApiError::internal())?;
    Ok(match restart {
        None => Json(json!({ "reloaded": changed })).into_response(),
        Some((sections, message)) => {
            let body = json!({
                "error": "restart_needed",
                "message": message,
                "restart_needed": sections,
                "reloaded": changed,
            });
            (StatusCode::CONFLICT, Json(body)).into_response()
        }
    })
}

/// What a reload (this endpoint, or SIGHUP) does: re-reads the rule and
/// list files on the blocking pool, and tells with a WARN when the config
/// file changed since startup. The files changed, and the restart note.
pub async fn reload_files(
    state: &AppState,
) -> Result<(usize, Option<(Vec<String>, String)>), tokio::task::JoinError> {
    let rules = state.scorer.rules().clone();
    let file = state.config.file.clone();
    let (changed, restart) = tokio::task::spawn_blocking(move || {
        (rules.reload(true), file.and_then(|f| f.restart_needed()))
    })
    .await?;
    if let Some((sections, message)) = &restart {
        tracing::warn!(sections = ?sections, "{message}");
    }
    Ok((changed, restart))
}

/// `GET /v1/admin/feeds`: each feed's state.
pub async fn feeds(State(state): State<AppState>) -> Json<Value> {
    Json(json!({ "feeds": state.feeds.statuses() }))
}

/// `DELETE /v1/admin/feeds/{name}/entries[?kind=..&value=..]`: drops one
/// entry, or the whole list, of a feed; it stays out until the source
/// reports it again.
pub async fn clear_feed(
    State(state): State<AppState>,
    name: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let name = name.map(|Path(n)| n).map_err(|_| {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_field", "bad feed name").with_field("name")
    })?;
    let (kind, value) = kind_and_value(query.as_deref())?;
    let which = match (kind, value) {
        (None, None) => None,
        (Some(k), Some(v)) => Some((k, v)),
        (Some(_), None) => return Err(missing("value")),
        (None, Some(_)) => return Err(missing("kind")),
    };
    let feed = state.feeds.get(&name).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_feed",
            format!("no feed named {name:?}"),
        )
        .with_field("name")
    })?;
    if let Some((k, v)) = &which {
        Entry::new(*k, v, None, None).map_err(|m| {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_field", m).with_field("value")
        })?;
    }
    let removed = feed
        .clear(which.as_ref().map(|(k, v)| (*k, v.trim())))
        .await
        .map_err(|e| match e {
            crate::feeds::ClearError::Running(_) => {
                ApiError::new(StatusCode::CONFLICT, "feed_running", e.to_string())
            }
            crate::feeds::ClearError::State(e) => {
                tracing::error!(feed = %name, error = %e, "feed clear not saved");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "state_not_saved",
                    "the entries are out of the list, but the feed's state file could not be written (they may come back at a restart); see the log",
                )
            }
        })?;
    Ok(Json(json!({ "feed": name, "removed": removed })))
}

fn missing(f: &'static str) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "missing_field",
        format!("{f} is required"),
    )
    .with_field(f)
}

/// `kind` and `value` from a query string; anything else is a 400.
fn kind_and_value(query: Option<&str>) -> Result<(Option<EntryKind>, Option<String>), ApiError> {
    let mut kind = None;
    let mut value = None;
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match &*k {
            "kind" => kind = Some(v.into_owned()),
            "value" => value = Some(v.into_owned()),
            other => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "unknown_field",
                    "expected kind and value",
                )
                .with_field(other.to_owned()));
            }
        }
    }
    let kind = match kind {
        None => None,
        Some(k) => Some(serde_json::from_value(Value::String(k)).map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_field",
                "ip, ua, device, affiliate, offer or affiliate_sub",
            )
            .with_field("kind")
        })?),
    };
    Ok((kind, value))
}

/// `POST /v1/admin/feeds/{name}/run`: pulls now; 202 at once, progress in
/// `GET /v1/admin/feeds`.
pub async fn run_feed(
    State(state): State<AppState>,
    name: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let name = name.map(|Path(n)| n).map_err(|_| {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_field", "bad feed name").with_field("name")
    })?;
    match state.feeds.trigger(&name) {
        Ok(()) => Ok((
            StatusCode::ACCEPTED,
            Json(json!({ "feed": name, "status": "started" })),
        )
            .into_response()),
        Err(e @ crate::feeds::TriggerError::Unknown(_)) => {
            Err(
                ApiError::new(StatusCode::NOT_FOUND, "unknown_feed", e.to_string())
                    .with_field("name"),
            )
        }
        Err(e @ crate::feeds::TriggerError::Running(_)) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "feed_running",
            e.to_string(),
        )),
    }
}
