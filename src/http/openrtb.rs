//! `POST /v1/openrtb`: pre-bid check of an OpenRTB 2.5/2.6 BidRequest.
//!
//! The BidRequest is mapped to an event through configurable paths
//! (`doors.openrtb.fields`, defaults below), scored within the door's
//! budget (default 20 ms; lowered by `tmax` minus `tmax_margin_ms`), and
//! answered in bidder terms: allowed -> 200 `{"id", "decision": "allow",
//! ...}` (or 204); blocked -> 200 `{"id", "nbr": N, "decision": "block",
//! "tags": [...]}` with OpenRTB no-bid reason codes: 3 known web spider
//! (`crawler`), 5 cloud, data center or proxy IP (`datacenter`, `proxy`),
//! 4 suspected non-human traffic (any other blocking tag), 1 technical
//! error (blocked by the fallback policy, no tags).
//!
//! | RT field | BidRequest (first non-empty) |
//! |---|---|
//! | ip | device.ip, device.ipv6 |
//! | ua | device.ua |
//! | offer_id | site.id, app.bundle |
//! | affiliate_id | site.publisher.id, app.publisher.id |
//! | refer | site.page, site.domain |
//! | device_os / _version / brand / model / locale | device.os / osv / make / model / language |
//! | country_code | device.geo.country (alpha-3 -> alpha-2) |
//! | idfa or android_id | device.ifa, by device.os |

use std::time::Duration;

use axum::Extension;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::AppState;
use super::access::ClientName;
use super::body::{json_body, score_opts};
use super::error::ApiError;
use super::render::decision_headers;
use crate::config::OpenRtbDoor;
use crate::decision::{Decision, Door};
use crate::event::{EventBuilder, FieldError};
use crate::policy::Mode;
use crate::verdict::Tag;

/// OpenRTB 2.x no-bid reason codes used here.
pub mod nbr {
    pub const TECHNICAL_ERROR: u8 = 1;
    pub const WEB_SPIDER: u8 = 3;
    pub const NON_HUMAN: u8 = 4;
    pub const CLOUD_DC_PROXY: u8 = 5;
}

/// The no-bid reason for a blocking decision.
pub fn no_bid_reason(d: &Decision) -> u8 {
    let b = &d.ruling.blocked_by;
    if b.contains(Tag::Crawler) {
        nbr::WEB_SPIDER
    } else if b.contains(Tag::Datacenter) || b.contains(Tag::Proxy) {
        nbr::CLOUD_DC_PROXY
    } else if b.is_clean() {
        nbr::TECHNICAL_ERROR
    } else {
        nbr::NON_HUMAN
    }
}

/// Follows a dotted path (`device.geo.country`) to a non-empty scalar.
fn lookup<'a>(root: &'a Value, path: &str) -> Option<std::borrow::Cow<'a, str>> {
    let mut v = root;
    for seg in path.split('.') {
        v = v.get(seg)?;
    }
    match v {
        Value::String(s) if !s.trim().is_empty() => Some(std::borrow::Cow::Borrowed(s.as_str())),
        Value::Number(n) => Some(std::borrow::Cow::Owned(n.to_string())),
        _ => None,
    }
}

fn bad(field: &'static str, message: &'static str) -> ApiError {
    ApiError::from(FieldError::new(
        crate::event::ErrorCode::InvalidField,
        field,
        message,
    ))
}

/// A BidRequest mapped to an event.
#[derive(Debug)]
pub struct Mapped {
    pub id: String,
    pub event: crate::event::Event,
    pub tmax: Option<u64>,
}

/// Maps a BidRequest (already parsed JSON) to an event through the door's
/// configured paths. Pure, so it can be fuzzed.
pub fn map_bid_request(req: &Value, door: &OpenRtbDoor) -> Result<Mapped, ApiError> {
    if !req.is_object() {
        return Err(bad("body", "a BidRequest is a JSON object"));
    }
    let id = match req.get("id") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => {
            return Err(ApiError::from(FieldError::new(
                crate::event::ErrorCode::MissingField,
                "id",
                "BidRequest.id is required",
            )));
        }
    };
    let get = |field: &str| {
        door.fields
            .get(field)
            .and_then(|paths| paths.iter().find_map(|p| lookup(req, p)))
    };
    let mut b = EventBuilder::new();
    b.set("event_type", "impression")?;
    let ip = get("ip").ok_or_else(|| {
        ApiError::from(FieldError::new(
            crate::event::ErrorCode::MissingField,
            "device.ip",
            "device.ip or device.ipv6 is required",
        ))
    })?;
    b.set("ip", &ip)
        .map_err(|_| bad("device.ip", "not an IPv4 or IPv6 address"))?;
    b.set("ua", &get("ua").unwrap_or_default())?;
    for field in door
        .fields
        .keys()
        .filter(|f| !matches!(f.as_str(), "ip" | "ua" | "ifa" | "country_code"))
    {
        if let Some(v) = get(field) {
            b.set(field, &v)?;
        }
    }
    if let Some(cc) = get("country_code").and_then(|c| crate::country::alpha2(&c)) {
        b.set("country_code", cc)?;
    }
    if let Some(ifa) = get("ifa") {
        let os = get("device_os").unwrap_or_default().to_ascii_lowercase();
        if os.contains("ios") || os.contains("ipados") {
            b.set_default("idfa", &ifa)?;
        } else if os.contains("android") {
            b.set_default("android_id", &ifa)?;
        }
    }
    // A BidRequest without an inventory id is still scored.
    b.set_default("offer_id", "unknown")?;
    b.set_default("affiliate_id", "unknown")?;
    Ok(Mapped {
        id,
        event: b.build()?,
        tmax: req.get("tmax").and_then(Value::as_u64),
    })
}

pub async fn handle(
    State(state): State<AppState>,
    client: Option<Extension<ClientName>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = json_body(&headers, body, state.config.server.max_json_depth)?;
    let req: Value =
        serde_json::from_slice(&body).map_err(|_| bad("body", "not a JSON BidRequest"))?;
    let door = &state.config.doors.openrtb;
    let Mapped { id, event, tmax } = map_bid_request(&req, door)?;
    let mut opts = score_opts(
        &state,
        &headers,
        Door::OpenRtb,
        door.budget_ms,
        door.on_upstream_error,
    )?
    .with_client(client.map(|c| c.0.0));
    if let Some(tmax) = tmax {
        let from_tmax = Duration::from_millis(tmax.saturating_sub(door.tmax_margin_ms).max(1));
        opts.budget = opts.budget.min(from_tmax);
    }
    let d = state.scorer.score(&event, &opts).await;
    let mut resp = if d.is_block() {
        Json(json!({
            "id": id,
            "nbr": no_bid_reason(&d),
            "decision": "block",
            "tags": d.tags,
            "blocked_by": d.ruling.blocked_by,
            "source": d.source.as_str(),
            "decision_id": d.id,
        }))
        .into_response()
    } else if door.allow_status == 204 {
        StatusCode::NO_CONTENT.into_response()
    } else {
        let mut body = json!({
            "id": id,
            "decision": "allow",
            "tags": d.tags,
            "source": d.source.as_str(),
            "decision_id": d.id,
        });
        if d.mode == Mode::Shadow {
            body["would_be"] = json!(d.ruling.action.as_str());
        }
        Json(body).into_response()
    };
    decision_headers(resp.headers_mut(), &d);
    Ok(resp)
}
