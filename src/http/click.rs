//! `GET /click` (redirect tracker, like FraudScore SafeClick) and `GET /imp`
//! (impression pixel).
//!
//! `/click?offer_id=..&affiliate_id=..&aff_sub1=..` scores the click (client
//! IP and UA from the connection) and answers 302 to the configured offer
//! URL when allowed; when blocked, 302 to the offer's `fallback_url`, else
//! `doors.click.blocked_status` (403 or 204). Redirect targets only ever
//! come from config; request values fill macros URL-encoded, so no request
//! can choose where it is sent (no open redirect).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::body::{browser_opts, connection};
use super::error::ApiError;
use super::render::decision_headers;
use crate::config::{ImpResponse, OfferConfig};
use crate::decision::{Decision, Door};
use crate::event::{Event, EventBuilder, EventType, Opt};

/// The macros an offer URL may use.
pub const MACROS: &[&str] = &[
    "click_id",
    "offer_id",
    "affiliate_id",
    "aff_sub1",
    "aff_sub2",
    "aff_sub3",
    "aff_sub4",
    "aff_sub5",
    "ip",
];

/// Offers by id.
pub type Offers = HashMap<String, OfferConfig>;

/// Checks a template at startup: known macros only, and an absolute
/// http(s) URL with a host once filled.
pub fn check_template(t: &str) -> Result<(), String> {
    let filled = fill(t, |_| Some("x".into()))?;
    let url = reqwest::Url::parse(&filled).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err("must be an absolute http(s) URL".into());
    }
    Ok(())
}

/// Replaces `{name}` with `value(name)`, URL-encoded.
fn fill(t: &str, value: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(t.len() + 64);
    let mut rest = t;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let close = after.find('}').ok_or("unclosed {")?;
        let name = &after[..close];
        if !MACROS.contains(&name) {
            return Err(format!(
                "unknown macro {{{name}}}; known: {}",
                MACROS.join(", ")
            ));
        }
        out.extend(form_urlencoded::byte_serialize(
            value(name).unwrap_or_default().as_bytes(),
        ));
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn render(t: &str, ev: &Event, d: &Decision) -> String {
    fill(t, |name| match name {
        "click_id" => Some(d.id.to_string()),
        "offer_id" => Some(ev.offer_id.clone()),
        "affiliate_id" => Some(ev.affiliate_id.clone()),
        "ip" => Some(ev.ip.to_string()),
        "aff_sub1" => ev.get(Opt::AffSub1).map(str::to_owned),
        "aff_sub2" => ev.get(Opt::AffSub2).map(str::to_owned),
        "aff_sub3" => ev.get(Opt::AffSub3).map(str::to_owned),
        "aff_sub4" => ev.get(Opt::AffSub4).map(str::to_owned),
        "aff_sub5" => ev.get(Opt::AffSub5).map(str::to_owned),
        _ => None,
    })
    .unwrap_or_default() // templates were checked at startup
}

/// The event of `/click` or `/imp` (see [`crate::event::Connection`] for
/// what comes from where).
fn browser_event(
    state: &AppState,
    peer: SocketAddr,
    headers: &HeaderMap,
    query: &str,
    event_type: EventType,
) -> Result<Event, ApiError> {
    let conn = connection(state, peer.ip(), headers, event_type);
    Ok(EventBuilder::from_browser_query(query, &BTreeMap::new())
        .connection(conn)
        .build()?)
}

fn no_store(resp: &mut Response, d: &Decision) {
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    decision_headers(resp.headers_mut(), d);
}

pub async fn click(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let query = query.unwrap_or_default();
    let offer_id = form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "offer_id")
        .map(|(_, v)| v.into_owned())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "missing_field",
                "offer_id is required",
            )
            .with_field("offer_id")
        })?;
    let offer = state.offers.get(&offer_id).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_offer",
            "no offer with this id is configured",
        )
        .with_field("offer_id")
    })?;
    let event = browser_event(&state, peer, &headers, &query, EventType::Click)?;
    let door = &state.config.doors.click;
    let opts = browser_opts(
        &state,
        peer.ip(),
        &headers,
        Door::Click,
        door.budget_ms,
        door.on_upstream_error,
    )?;
    let d = state.scorer.score_with(&event, &opts).await;
    let target = match (d.is_block(), &offer.fallback_url) {
        (false, _) => Some(render(&offer.url, &event, &d)),
        (true, Some(fallback)) => Some(render(fallback, &event, &d)),
        (true, None) => None,
    };
    let mut resp = match target.and_then(|t| HeaderValue::from_str(&t).ok()) {
        Some(location) => {
            let mut r = StatusCode::FOUND.into_response();
            r.headers_mut().insert(header::LOCATION, location);
            r
        }
        None => StatusCode::from_u16(door.blocked_status)
            .unwrap_or(StatusCode::FORBIDDEN)
            .into_response(),
    };
    no_store(&mut resp, &d);
    Ok(resp)
}

/// A 1x1 transparent GIF.
pub const PIXEL: &[u8] = &[
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xff, 0xff, 0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b,
];

/// Records an impression; the page gets its pixel whatever the decision.
pub async fn imp(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let event = browser_event(
        &state,
        peer,
        &headers,
        &query.unwrap_or_default(),
        EventType::Impression,
    )?;
    let door = &state.config.doors.imp;
    let opts = browser_opts(
        &state,
        peer.ip(),
        &headers,
        Door::Imp,
        door.budget_ms,
        door.on_upstream_error,
    )?;
    let d = state.scorer.score_with(&event, &opts).await;
    let mut resp = match door.response {
        ImpResponse::Gif => ([(header::CONTENT_TYPE, "image/gif")], PIXEL).into_response(),
        ImpResponse::NoContent => StatusCode::NO_CONTENT.into_response(),
    };
    no_store(&mut resp, &d);
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_are_checked() {
        assert!(check_template("https://adv.example/l?c={click_id}&s={aff_sub1}").is_ok());
        assert!(check_template("https://{aff_sub1}.example/").is_ok());
        assert!(check_template("https://adv.example/?x={nope}").is_err());
        assert!(check_template("https://adv.example/?x={click_id").is_err());
        assert!(check_template("/relative").is_err());
        assert!(check_template("javascript:alert(1)").is_err());
    }

    #[test]
    fn macro_values_are_url_encoded() {
        let out = fill("https://a.example/?s={aff_sub1}", |_| {
            Some("x&y=https://evil.example/".into())
        })
        .unwrap();
        assert_eq!(
            out,
            "https://a.example/?s=x%26y%3Dhttps%3A%2F%2Fevil.example%2F"
        );
    }
}
