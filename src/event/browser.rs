//! The one builder for browser-facing events: `/click`, `/imp`,
//! `/v1/auth` and the tower layer.
//!
//! A browser (or the page URL behind nginx / Envoy / Traefik) cannot be
//! trusted with what the connection knows, so every browser-facing door
//! builds its event the same way:
//! - `ip`, `ua` and `event_type` come from the connection: the client IP
//!   (behind trusted proxies, from their header), the `User-Agent` header
//!   and the door. `ip`, `ua`, `event_type`, `at` and `key` in the query
//!   are ignored, never believed.
//! - Every other RT field is read from the query parameter of its name (or
//!   the configured rename); the first occurrence counts and an empty value
//!   counts as absent.
//! - Parameters that are not RT fields belong to the page and are ignored.
//! - Configured defaults fill what the query lacks; a mandatory field
//!   still missing (`affiliate_id`, `offer_id`) is a 400 naming it.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::{EventBuilder, EventType, is_rt_field};

/// Fields a browser-facing URL must not set: they come from the connection.
pub const CONNECTION_FIELDS: &[&str] = &["ip", "ua", "event_type", "at", "key"];

/// What the connection says about a browser-facing request.
#[derive(Debug, Clone)]
pub struct Connection<'a> {
    pub ip: IpAddr,
    /// Read with [`header_text`]: a browser's non-ASCII UA is kept.
    pub ua: std::borrow::Cow<'a, str>,
    pub event_type: EventType,
    /// The browser fetches this ahead of (or instead of) a person's visit.
    pub speculation: Option<Speculation>,
}

/// A header's text as sent: bytes that are not UTF-8 (a Latin-1 `Ü` in a
/// User-Agent) become U+FFFD instead of the whole value being read as
/// empty, which would make a real browser look like a UA-less bot.
/// Borrowed, without a copy, for the usual ASCII value.
pub fn header_text(v: &axum::http::HeaderValue) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(v.as_bytes())
}

/// A request the browser makes speculatively: nobody has clicked or seen
/// anything yet. The MRC counts pre-fetched and pre-rendered loads as
/// general invalid traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Speculation {
    /// `Sec-Purpose: prefetch`, `Purpose: prefetch` (Chrome's legacy
    /// name), `X-Moz: prefetch` (older Firefox).
    Prefetch,
    /// `Sec-Purpose: prefetch;prerender`.
    Prerender,
    /// `X-Purpose: preview` (Safari's link previews).
    Preview,
}

impl Speculation {
    pub const fn as_str(self) -> &'static str {
        match self {
            Speculation::Prefetch => "prefetch",
            Speculation::Prerender => "prerender",
            Speculation::Preview => "preview",
        }
    }

    /// What the request's headers say, if anything.
    pub fn from_headers(headers: &axum::http::HeaderMap) -> Option<Self> {
        use axum::http::HeaderName;
        // Names made once (a `&str` would be parsed on every lookup).
        const SEC_PURPOSE: HeaderName = HeaderName::from_static("sec-purpose");
        const PURPOSE: HeaderName = HeaderName::from_static("purpose");
        const X_MOZ: HeaderName = HeaderName::from_static("x-moz");
        const X_PURPOSE: HeaderName = HeaderName::from_static("x-purpose");
        let has = |name: HeaderName, token: &str| {
            headers.get_all(name).iter().any(|v| {
                v.to_str().is_ok_and(|v| {
                    v.split([';', ','])
                        .any(|t| t.trim().eq_ignore_ascii_case(token))
                })
            })
        };
        if has(SEC_PURPOSE, "prerender") {
            Some(Speculation::Prerender)
        } else if has(SEC_PURPOSE, "prefetch") || has(PURPOSE, "prefetch") || has(X_MOZ, "prefetch")
        {
            Some(Speculation::Prefetch)
        } else if has(X_PURPOSE, "preview") {
            Some(Speculation::Preview)
        } else {
            None
        }
    }
}

impl EventBuilder {
    /// RT fields from a browser-facing URL's query. `renames` maps an RT
    /// field to the parameter name the page uses for it.
    pub fn from_browser_query(query: &str, renames: &BTreeMap<String, String>) -> Self {
        let mut b = EventBuilder::new();
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            let field = renames
                .iter()
                .find(|(_, p)| **p == *name)
                .map(|(f, _)| f.as_str())
                .or_else(|| (!renames.contains_key(&*name)).then_some(&*name));
            let Some(field) = field.filter(|f| is_rt_field(f) && !CONNECTION_FIELDS.contains(f))
            else {
                continue;
            };
            if value.trim().is_empty() || b.is_set(field) {
                continue;
            }
            // Every non-connection RT field takes any text (cut to its
            // length), so this cannot fail.
            let _ = b.set(field, &value);
        }
        b
    }

    /// Fills what `defaults` (RT field -> value) has and the query lacked.
    pub fn with_defaults(
        mut self,
        defaults: &BTreeMap<String, String>,
    ) -> Result<Self, super::FieldError> {
        for (field, value) in defaults {
            self.set_default(field, value)?;
        }
        Ok(self)
    }

    /// Sets IP, UA and event type from the connection where still unset
    /// (the tower layer: the app's own extractor is trusted code).
    pub fn connection_defaults(mut self, c: Connection<'_>) -> Self {
        self.speculation = c.speculation;
        if self.ip.is_none() {
            self.ip = Some(c.ip.to_canonical());
        }
        if self.ua.is_none() {
            self.ua = Some(super::truncate(&c.ua, super::DEFAULT_MAX_LEN).to_owned());
        }
        if self.event_type.is_none() {
            self.event_type = Some(c.event_type);
        }
        self
    }

    /// Sets IP, UA and event type from the connection, whatever was set.
    pub fn connection(mut self, c: Connection<'_>) -> Self {
        self.speculation = c.speculation;
        self.ip = Some(c.ip.to_canonical());
        self.ua = Some(super::truncate(&c.ua, super::DEFAULT_MAX_LEN).to_owned());
        self.event_type = Some(c.event_type);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speculative_loads_are_recognised_by_every_browser_header() {
        let with = |pairs: &[(&'static str, &'static str)]| {
            let mut h = axum::http::HeaderMap::new();
            for (k, v) in pairs {
                h.append(*k, v.parse().unwrap());
            }
            Speculation::from_headers(&h)
        };
        assert_eq!(
            with(&[("sec-purpose", "prefetch")]),
            Some(Speculation::Prefetch)
        );
        assert_eq!(
            with(&[("sec-purpose", "prefetch;prerender")]),
            Some(Speculation::Prerender)
        );
        assert_eq!(
            with(&[("purpose", "prefetch")]),
            Some(Speculation::Prefetch)
        );
        assert_eq!(with(&[("x-moz", "prefetch")]), Some(Speculation::Prefetch));
        assert_eq!(
            with(&[("x-purpose", "preview")]),
            Some(Speculation::Preview)
        );
        assert_eq!(with(&[("sec-fetch-dest", "document")]), None);
        assert_eq!(
            with(&[("purpose", "prefetcher")]),
            None,
            "whole tokens only"
        );
    }

    fn conn() -> Connection<'static> {
        Connection {
            speculation: None,
            ip: "198.51.100.7".parse().unwrap(),
            ua: "Mozilla/5.0 (X11; Linux x86_64)".into(),
            event_type: EventType::Click,
        }
    }

    #[test]
    fn connection_fields_in_the_query_are_never_believed() {
        let q = "ip=6.6.6.6&ua=good&event_type=impression&at=1&key=k&offer_id=1&affiliate_id=2";
        let e = EventBuilder::from_browser_query(q, &BTreeMap::new())
            .connection(conn())
            .build()
            .unwrap();
        assert_eq!(e.ip.to_string(), "198.51.100.7");
        assert_eq!(e.ua, "Mozilla/5.0 (X11; Linux x86_64)");
        assert_eq!(e.event_type, EventType::Click);
        assert_ne!(e.at, 1);
    }

    #[test]
    fn page_parameters_are_ignored_first_occurrence_wins_renames_apply() {
        let renames = BTreeMap::from([("aff_sub1".to_string(), "sub".to_string())]);
        let q = "utm_source=x&offer_id=1&offer_id=2&affiliate_id=&affiliate_id=7&sub=s1&aff_sub1=direct";
        let e = EventBuilder::from_browser_query(q, &renames)
            .connection(conn())
            .build()
            .unwrap();
        assert_eq!(e.offer_id, "1");
        assert_eq!(e.affiliate_id, "7", "an empty value counts as absent");
        assert_eq!(e.get(super::super::Opt::AffSub1), Some("s1"));
    }

    #[test]
    fn defaults_fill_gaps_and_a_missing_mandatory_field_is_named() {
        let defaults = BTreeMap::from([("affiliate_id".to_string(), "unknown".to_string())]);
        let e = EventBuilder::from_browser_query("offer_id=3", &BTreeMap::new())
            .with_defaults(&defaults)
            .unwrap()
            .connection(conn())
            .build()
            .unwrap();
        assert_eq!(e.affiliate_id, "unknown");
        let err = EventBuilder::from_browser_query("offer_id=3", &BTreeMap::new())
            .connection(conn())
            .build()
            .unwrap_err();
        assert_eq!(&*err.field, "affiliate_id");
    }
}
