//! `GET /click` (redirect tracker, like FraudScore SafeClick) and `GET /imp`
//! (impression pixel).
//!
//! `/click?offer_id=..&affiliate_id=..&aff_sub1=..` scores the click (client
//! IP and UA from the connection) and answers 302 to the configured offer
//! URL when allowed; when blocked, 302 to the offer's `fallback_url`, else
//! `doors.click.blocked_status` (403 or 204). Redirect targets only ever
//! come from config and macros stand only in their path, query or
//! fragment ([`crate::template`]); request values fill them percent-encoded,
//! so no request can choose where it is sent (no open redirect).

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
use crate::template::{Macro, UrlTemplate};

/// A configured offer with its templates parsed.
#[derive(Debug, Clone)]
pub struct Offer {
    url: UrlTemplate,
    fallback: Option<UrlTemplate>,
}

impl Offer {
    /// `c` must have passed config validation (templates parse).
    pub fn new(c: &OfferConfig) -> Option<Self> {
        Some(Offer {
            url: UrlTemplate::parse(&c.url).ok()?,
            fallback: match &c.fallback_url {
                Some(f) => Some(UrlTemplate::parse(f).ok()?),
                None => None,
            },
        })
    }
}

/// Offers by id.
pub type Offers = HashMap<String, Offer>;

fn render(t: &UrlTemplate, ev: &Event, d: &Decision) -> String {
    let click_id = d.id.to_string();
    let ip = ev.ip.to_string();
    t.render(|m| match m {
        Macro::ClickId => Some(&click_id),
        Macro::OfferId => Some(&ev.offer_id),
        Macro::AffiliateId => Some(&ev.affiliate_id),
        Macro::Ip => Some(&ip),
        Macro::AffSub1 => ev.get(Opt::AffSub1),
        Macro::AffSub2 => ev.get(Opt::AffSub2),
        Macro::AffSub3 => ev.get(Opt::AffSub3),
        Macro::AffSub4 => ev.get(Opt::AffSub4),
        Macro::AffSub5 => ev.get(Opt::AffSub5),
    })
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

/// Every answer of `/click` and `/imp`, errors too, is never stored: a
/// cached redirect would skip scoring, a cached 400 or 404 would answer a
/// later, valid click. (A layer on both routes.)
pub async fn never_stored(mut resp: Response) -> Response {
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

pub async fn click(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let query = query.unwrap_or_default();
    let event = browser_event(&state, peer, &headers, &query, EventType::Click)?;
    let offer = state.offers.get(&event.offer_id).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_offer",
            "no offer with this id is configured",
        )
        .with_field("offer_id")
    })?;
    let door = &state.config.doors.click;
    let opts = browser_opts(
        &state,
        peer.ip(),
        &headers,
        Door::Click,
        door.budget_ms,
        door.on_upstream_error,
    )?;
    let d = state.scorer.score(&event, &opts).await;
    if d.is_block() && event.speculation.is_some() {
        return Ok(speculative(&d));
    }
    let target = match (d.is_block(), &offer.fallback) {
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
    decision_headers(resp.headers_mut(), &d);
    Ok(resp)
}

/// The answer to a blocked speculative load (prefetch, prerender, link
/// preview): 503, never stored. Browsers discard a prefetch that did not
/// succeed, so nothing is redirected or shown ahead of time, and a real
/// click that follows comes back here as a request of its own.
fn speculative(d: &crate::decision::Decision) -> Response {
    let mut resp = StatusCode::SERVICE_UNAVAILABLE.into_response();
    decision_headers(resp.headers_mut(), d);
    resp
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
    let d = state.scorer.score(&event, &opts).await;
    if d.is_block() && event.speculation.is_some() {
        return Ok(speculative(&d));
    }
    let mut resp = match door.response {
        ImpResponse::Gif => ([(header::CONTENT_TYPE, "image/gif")], PIXEL).into_response(),
        ImpResponse::NoContent => StatusCode::NO_CONTENT.into_response(),
    };
    decision_headers(resp.headers_mut(), &d);
    Ok(resp)
}
