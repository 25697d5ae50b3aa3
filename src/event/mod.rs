//! The event an ad server sends, parsed and validated once.
//!
//! Field names and length limits are FraudScore RT's: every value is cut to
//! the documented length at a char boundary (255; `refer` 1024;
//! `country_code` 2), never rejected for length. Every front door builds an
//! [`Event`] through [`EventBuilder`], so all doors validate alike.

use std::borrow::Cow;
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

mod browser;
mod fields;
mod json;

pub use browser::{CONNECTION_FIELDS, Connection, Speculation, header_text};
pub use fields::{EventType, Opt};
use json::{BuilderVisitor, json_error};

/// RT's limit for every string field it does not list otherwise.
pub const DEFAULT_MAX_LEN: usize = 255;

/// A validated click or impression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub event_type: EventType,
    /// Canonical form: IPv4-mapped IPv6 addresses become IPv4.
    pub ip: IpAddr,
    /// May be empty (an empty UA is itself a signal); never absent.
    pub ua: String,
    /// Unix seconds; now when the caller gave none.
    pub at: u64,
    pub affiliate_id: String,
    pub offer_id: String,
    optional: Vec<(Opt, String)>,
    /// A browser-facing request the browser marked as speculative
    /// (prefetch, prerender, link preview): nobody has clicked or seen it.
    pub speculation: Option<Speculation>,
}

impl Event {
    /// The value of an optional field, if the caller gave it.
    pub fn get(&self, opt: Opt) -> Option<&str> {
        self.optional
            .iter()
            .find(|(o, _)| *o == opt)
            .map(|(_, v)| v.as_str())
    }

    /// Optional fields in the order given.
    pub fn optional(&self) -> impl Iterator<Item = (Opt, &str)> {
        self.optional.iter().map(|(o, v)| (*o, v.as_str()))
    }

    /// A conversion posted back (`/v1/postback`), with the optional fields
    /// given (RT's and the conversion's; empty values left out), each cut
    /// to its length as on every door.
    pub fn conversion<'a>(
        event_type: EventType,
        ip: IpAddr,
        ua: &str,
        at: u64,
        [affiliate_id, offer_id]: [&str; 2],
        fields: impl IntoIterator<Item = (Opt, &'a str)>,
    ) -> Event {
        let mut e = Event {
            event_type,
            ip,
            ua: truncate(ua, DEFAULT_MAX_LEN).to_owned(),
            at,
            affiliate_id: truncate(affiliate_id, DEFAULT_MAX_LEN).to_owned(),
            offer_id: truncate(offer_id, DEFAULT_MAX_LEN).to_owned(),
            optional: Vec::new(),
            speculation: None,
        };
        for (o, v) in fields {
            if !v.is_empty() {
                e.set(o, v);
            }
        }
        e
    }

    /// Sets or replaces an optional field (cut to its length).
    pub fn set(&mut self, opt: Opt, value: &str) {
        let v = truncate(value, opt.max_len()).to_owned();
        match self.optional.iter_mut().find(|(o, _)| *o == opt) {
            Some(slot) => slot.1 = v,
            None => self.optional.push((opt, v)),
        }
    }
}

/// What was wrong with the caller's input. `field` names the parameter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct FieldError {
    pub code: ErrorCode,
    pub field: Cow<'static, str>,
    pub message: Cow<'static, str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    MissingField,
    InvalidField,
    UnknownField,
    DuplicateField,
}

impl ErrorCode {
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::MissingField => "missing_field",
            ErrorCode::InvalidField => "invalid_field",
            ErrorCode::UnknownField => "unknown_field",
            ErrorCode::DuplicateField => "duplicate_field",
        }
    }
}

impl FieldError {
    pub fn new(
        code: ErrorCode,
        field: impl Into<Cow<'static, str>>,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        FieldError {
            code,
            field: field.into(),
            message: message.into(),
        }
    }
    pub fn missing(field: &'static str) -> Self {
        Self::new(
            ErrorCode::MissingField,
            field,
            format!("{field} is required"),
        )
    }
    pub fn invalid(field: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidField, field, message)
    }
}

/// Where a parameter goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    EventType,
    Ip,
    Ua,
    At,
    AffiliateId,
    OfferId,
    Key,
    Opt(Opt),
}

impl Field {
    fn lookup(name: &str) -> Option<Field> {
        Some(match name {
            "event_type" => Field::EventType,
            "ip" => Field::Ip,
            "ua" => Field::Ua,
            "at" => Field::At,
            "affiliate_id" => Field::AffiliateId,
            "offer_id" => Field::OfferId,
            "key" => Field::Key,
            _ => Field::Opt(
                Opt::ALL
                    .into_iter()
                    .find(|o| o.is_event_field() && o.name() == name)?,
            ),
        })
    }
}

/// True for the RT event fields (mandatory and optional, not `key`).
pub fn is_rt_field(name: &str) -> bool {
    name != "key" && Field::lookup(name).is_some()
}

/// Collects parameters one by one, then [`EventBuilder::build`]s an Event.
#[derive(Debug, Default)]
pub struct EventBuilder {
    event_type: Option<EventType>,
    ip: Option<IpAddr>,
    ua: Option<String>,
    at: Option<u64>,
    affiliate_id: Option<String>,
    offer_id: Option<String>,
    optional: Vec<(Opt, String)>,
    speculation: Option<Speculation>,
    /// Fixed-size record of which fields were seen, for duplicate checks.
    seen: u64,
}

impl EventBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets one parameter by its RT name. Unknown names, duplicates and
    /// unparsable values are errors naming the field.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), FieldError> {
        let Some(field) = Field::lookup(name) else {
            return Err(FieldError::new(
                ErrorCode::UnknownField,
                truncate(name, 64).to_owned(),
                "not a FraudScore RT parameter",
            ));
        };
        let bit = seen_bit(field);
        if self.seen & bit != 0 {
            return Err(FieldError::new(
                ErrorCode::DuplicateField,
                truncate(name, 64).to_owned(),
                "given more than once",
            ));
        }
        self.seen |= bit;
        match field {
            Field::EventType => {
                self.event_type = Some(match value {
                    "click" => EventType::Click,
                    "impression" => EventType::Impression,
                    _ => {
                        return Err(FieldError::invalid(
                            "event_type",
                            "must be \"click\" or \"impression\"",
                        ));
                    }
                })
            }
            Field::Ip => self.ip = Some(parse_ip(value)?),
            Field::Ua => self.ua = Some(truncate(value, DEFAULT_MAX_LEN).to_owned()),
            Field::At => self.at = Some(parse_at(value)?),
            Field::AffiliateId => self.affiliate_id = Some(non_empty("affiliate_id", value)?),
            Field::OfferId => self.offer_id = Some(non_empty("offer_id", value)?),
            // RT's own key parameter: accepted (the drop-in contract has
            // it; client access reads it from the query), never stored.
            Field::Key => {}
            Field::Opt(o) => {
                if !value.is_empty() {
                    self.optional
                        .push((o, truncate(value, o.max_len()).to_owned()));
                }
            }
        }
        Ok(())
    }

    /// Sets a field, replacing a value set before: a repeated parameter's
    /// last value wins.
    fn replace(&mut self, field: Field, name: &str, value: &str) -> Result<(), FieldError> {
        let bit = seen_bit(field);
        // Only a repeat has anything to replace (the usual query has none).
        if self.seen & bit != 0 {
            self.seen &= !bit;
            if let Field::Opt(o) = field {
                self.optional.retain(|(x, _)| *x != o);
            }
        }
        self.set(name, value)
    }

    /// The RT drop-in's reading of a query string. What RT documents is
    /// checked as on every door (and `at` is mandatory, as RT has it:
    /// [`EventBuilder::build_with_at`]). A
    /// parameter RT does not document (a cache buster, a tracker's own
    /// field) is ignored and counted in the second value; a repeated one
    /// takes its last value, as PHP reads a query string.
    pub fn from_rt_query(query: &str) -> Result<(Self, u64), FieldError> {
        let mut b = EventBuilder::new();
        let mut ignored = 0;
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            match Field::lookup(&k) {
                Some(field) => b.replace(field, &k, &v)?,
                None => ignored += 1,
            }
        }
        Ok((b, ignored))
    }

    /// [`EventBuilder::build`] with `at` mandatory, as RT has it (checked
    /// after the other mandatory fields).
    pub fn build_with_at(self) -> Result<Event, FieldError> {
        let has_at = self.at.is_some();
        let event = self.build()?;
        if !has_at {
            return Err(FieldError::missing("at"));
        }
        Ok(event)
    }

    /// Sets a field only if it is not set yet.
    pub fn set_default(&mut self, name: &str, value: &str) -> Result<(), FieldError> {
        match self.set(name, value) {
            Err(e) if e.code == ErrorCode::DuplicateField => Ok(()),
            other => other,
        }
    }

    /// The IP, if set.
    pub fn ip(&self) -> Option<IpAddr> {
        self.ip
    }

    /// Whether a field has been set.
    pub fn is_set(&self, name: &str) -> bool {
        match name {
            "event_type" => self.event_type.is_some(),
            "ip" => self.ip.is_some(),
            "ua" => self.ua.is_some(),
            "at" => self.at.is_some(),
            "affiliate_id" => self.affiliate_id.is_some(),
            "offer_id" => self.offer_id.is_some(),
            _ => self.optional.iter().any(|(o, _)| o.name() == name),
        }
    }

    /// Checks the mandatory fields and builds the Event. `at` defaults to now.
    pub fn build(self) -> Result<Event, FieldError> {
        Ok(Event {
            event_type: self
                .event_type
                .ok_or_else(|| FieldError::missing("event_type"))?,
            ip: self.ip.ok_or_else(|| FieldError::missing("ip"))?,
            ua: self.ua.ok_or_else(|| FieldError::missing("ua"))?,
            affiliate_id: self
                .affiliate_id
                .ok_or_else(|| FieldError::missing("affiliate_id"))?,
            offer_id: self
                .offer_id
                .ok_or_else(|| FieldError::missing("offer_id"))?,
            at: self.at.unwrap_or_else(now_unix),
            optional: self.optional,
            speculation: self.speculation,
        })
    }

    /// Parses an URL query string (`a=1&b=2`, percent-decoded).
    pub fn from_query(query: &str) -> Result<Self, FieldError> {
        let mut b = EventBuilder::new();
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            b.set(&k, &v)?;
        }
        Ok(b)
    }

    /// Parses a JSON object whose members are RT parameters. Values may be
    /// strings or numbers (ids and `at` are often numeric); `null` means
    /// absent.
    pub fn from_json(body: &[u8]) -> Result<Self, FieldError> {
        let mut de = serde_json::Deserializer::from_slice(body);
        let b =
            serde::Deserializer::deserialize_any(&mut de, BuilderVisitor).map_err(json_error)?;
        de.end().map_err(json_error)?;
        b
    }

    /// Parses one already-decoded JSON value (a batch item).
    pub fn from_json_value(value: &serde_json::Value) -> Result<Self, FieldError> {
        serde::Deserializer::deserialize_any(value, BuilderVisitor).map_err(json_error)?
    }
}

/// A field's bit in [`EventBuilder`]'s record of fields seen.
fn seen_bit(field: Field) -> u64 {
    1u64 << match field {
        Field::EventType => 0,
        Field::Ip => 1,
        Field::Ua => 2,
        Field::At => 3,
        Field::AffiliateId => 4,
        Field::OfferId => 5,
        Field::Key => 6,
        Field::Opt(o) => 7 + o as u32,
    }
}

fn parse_ip(value: &str) -> Result<IpAddr, FieldError> {
    value
        .trim()
        .parse::<IpAddr>()
        .map(|ip| ip.to_canonical())
        .map_err(|_| FieldError::invalid("ip", "not an IPv4 or IPv6 address"))
}

fn parse_at(value: &str) -> Result<u64, FieldError> {
    // Any number, as RT takes it (and it is forwarded as given); the log
    // keeps it only when it is a plausible time ([`recorded_time`]).
    value
        .trim()
        .parse::<u64>()
        .map_err(|_| FieldError::invalid("at", "must be a Unix timestamp in seconds"))
}

/// The event time the decision log keeps for RT's `at`: as given when it
/// is a plausible time ([`check_event_time`]), else the decision's second
/// (`at=1` from a load test, a clock at 0), so time arithmetic downstream
/// never meets an absurd value.
pub fn recorded_time(at: u64, decided_s: u64) -> u64 {
    match check_event_time(at) {
        Ok(at) => at,
        Err(_) => decided_s,
    }
}

/// The earliest event time taken: 2000-01-01.
pub const EARLIEST_EVENT_TIME: u64 = 946_684_800;
/// How far ahead of this gate's clock an event time may be (a caller's
/// clock that runs ahead).
pub const MAX_CLOCK_AHEAD_S: u64 = 86_400;

/// An event's time, checked: from 2000 to a day past now (a time outside
/// that is a caller's bug, and would break time arithmetic downstream).
pub fn check_event_time(at: u64) -> Result<u64, &'static str> {
    if at < EARLIEST_EVENT_TIME || at > now_unix() + MAX_CLOCK_AHEAD_S {
        return Err("a Unix time in seconds from 2000-01-01 to a day past now");
    }
    Ok(at)
}

fn non_empty(field: &'static str, value: &str) -> Result<String, FieldError> {
    if value.trim().is_empty() {
        return Err(FieldError::missing(field));
    }
    Ok(truncate(value, DEFAULT_MAX_LEN).to_owned())
}

/// Cuts `s` to at most `max` characters, at a char boundary.
pub fn truncate(s: &str, max: usize) -> &str {
    // Fast path: byte length bounds char count.
    if s.len() <= max {
        return s;
    }
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str =
        "event_type=click&ip=217.12.13.43&ua=Mozilla%2F5.0&affiliate_id=6251&offer_id=34713";

    #[test]
    fn query_with_mandatory_fields_builds() {
        let e = EventBuilder::from_query(BASE).unwrap().build().unwrap();
        assert_eq!(e.event_type, EventType::Click);
        assert_eq!(e.ip.to_string(), "217.12.13.43");
        assert_eq!(e.ua, "Mozilla/5.0");
        assert!(e.at > 1_700_000_000, "at defaults to now");
    }

    #[test]
    fn ipv6_and_mapped_ipv4_parse() {
        let q = BASE.replace("217.12.13.43", "2001%3Adb8%3A%3A1");
        let e = EventBuilder::from_query(&q).unwrap().build().unwrap();
        assert_eq!(e.ip.to_string(), "2001:db8::1");
        let q = BASE.replace("217.12.13.43", "%3A%3Affff%3A1.2.3.4");
        let e = EventBuilder::from_query(&q).unwrap().build().unwrap();
        assert_eq!(e.ip.to_string(), "1.2.3.4");
    }

    #[test]
    fn each_missing_mandatory_field_is_named() {
        for f in ["event_type", "ip", "ua", "affiliate_id", "offer_id"] {
            let q: Vec<_> = BASE
                .split('&')
                .filter(|p| !p.starts_with(&format!("{f}=")))
                .collect();
            let err = EventBuilder::from_query(&q.join("&"))
                .unwrap()
                .build()
                .unwrap_err();
            assert_eq!((err.code, &*err.field), (ErrorCode::MissingField, f));
        }
    }

    #[test]
    fn bad_values_are_named() {
        for (q, field) in [
            ("ip=1.2.3", "ip"),
            ("event_type=install", "event_type"),
            ("at=yesterday", "at"),
            ("offer_id=", "offer_id"),
        ] {
            let err = EventBuilder::from_query(q).unwrap_err();
            assert_eq!(&*err.field, field, "{q}");
        }
        let err = EventBuilder::from_query("click_id=5").unwrap_err();
        assert_eq!(
            (err.code, &*err.field),
            (ErrorCode::UnknownField, "click_id")
        );
        let err = EventBuilder::from_query("ip=1.1.1.1&ip=2.2.2.2").unwrap_err();
        assert_eq!((err.code, &*err.field), (ErrorCode::DuplicateField, "ip"));
    }

    #[test]
    fn long_values_are_cut_at_char_boundaries_not_rejected() {
        let long = "é".repeat(300);
        let mut b = EventBuilder::from_query(BASE).unwrap();
        b.set("refer", &"r".repeat(2000)).unwrap();
        b.set("country_code", "USA").unwrap();
        b.set("aff_sub1", &long).unwrap();
        let e = b.build().unwrap();
        assert_eq!(e.get(Opt::Refer).unwrap().len(), 1024);
        assert_eq!(e.get(Opt::CountryCode), Some("US"));
        assert_eq!(e.get(Opt::AffSub1).unwrap().chars().count(), 255);
    }

    #[test]
    fn json_accepts_numbers_and_null_and_names_bad_members() {
        let body = br#"{"event_type":"impression","ip":"::1","ua":"","affiliate_id":6251,"offer_id":"7","at":1544054769,"source":null}"#;
        let e = EventBuilder::from_json(body).unwrap().build().unwrap();
        assert_eq!(e.affiliate_id, "6251");
        assert_eq!(e.at, 1544054769);
        assert_eq!(e.ua, "");

        let err = EventBuilder::from_json(br#"{"ip":"1.1.1.1","bogus":1}"#).unwrap_err();
        assert_eq!(&*err.field, "bogus");
        let err = EventBuilder::from_json(br#"{"ip":["1.1.1.1"]}"#).unwrap_err();
        assert_eq!((err.code, &*err.field), (ErrorCode::InvalidField, "ip"));
        let err = EventBuilder::from_json(br#"{"ip":"#).unwrap_err();
        assert_eq!(&*err.field, "body");
        let err = EventBuilder::from_json(br#"[1,2]"#).unwrap_err();
        assert_eq!(&*err.field, "body");
        let err = EventBuilder::from_json(br#"{"ip":"1.1.1.1"} trailing"#).unwrap_err();
        assert_eq!(&*err.field, "body");
    }

    #[test]
    fn the_log_keeps_an_event_time_from_2000_to_a_day_ahead() {
        let decided = 1_796_551_200;
        for (at, kept) in [
            (1_544_054_769, 1_544_054_769),
            (946_684_800, 946_684_800),
            (946_684_799, decided),
            (1, decided),
            (99_999_999_999, decided),
            (u64::MAX, decided),
        ] {
            assert_eq!(recorded_time(at, decided), kept, "{at}");
        }
    }

    #[test]
    fn truncate_counts_chars() {
        assert_eq!(truncate("abc", 2), "ab");
        assert_eq!(truncate("ééé", 2), "éé");
        assert_eq!(truncate("ab", 5), "ab");
    }
}
