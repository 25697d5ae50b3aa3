//! A conversion as a tracker posts it back (the S2S postback convention:
//! `click_id`, `event`, `payout`, `currency`, `event_time`, the device's
//! `ip`, `ua` and ids, `status`), parsed and checked once: a bad value is
//! a 400 naming its field, a parameter not listed here too.

use std::net::IpAddr;

use crate::event::{ErrorCode, EventType, FieldError, Opt, truncate};

/// The parameters a postback takes, besides the client `key`.
pub const PARAMETERS: &[&str] = &[
    "click_id",
    "event",
    "payout",
    "currency",
    "event_time",
    "ip",
    "ua",
    "idfa",
    "android_id",
    "country_code",
    "device_os",
    "status",
];

/// Longest goal name.
const MAX_GOAL: usize = 64;

/// A checked postback.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Postback {
    /// As given (a fraudgate decision id when the tracker passed it on).
    pub click_id: Option<String>,
    /// `install`, or a goal's name (a `custom` event).
    pub goal: Option<String>,
    pub payout: Option<String>,
    pub currency: Option<String>,
    /// The conversion's own time (Unix seconds), when the tracker posts
    /// it late.
    pub event_time: Option<u64>,
    pub ip: Option<IpAddr>,
    pub ua: Option<String>,
    /// `idfa`, `android_id`, `country_code`, `device_os`, `status` as given.
    pub fields: Vec<(Opt, String)>,
    pub(super) event_seen: bool,
}

impl Postback {
    /// From `name=value` pairs (a query string or a form).
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (std::borrow::Cow<'a, str>, std::borrow::Cow<'a, str>)>,
    ) -> Result<Self, FieldError> {
        let mut p = Postback::default();
        for (k, v) in pairs {
            p.set(&k, &v)?;
        }
        p.finish()
    }

    /// From a JSON object whose members are the parameters (strings or
    /// numbers; `null` is absent).
    pub fn from_json(body: &[u8]) -> Result<Self, FieldError> {
        let map: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(body)
            .map_err(|e| {
                FieldError::new(
                    ErrorCode::InvalidField,
                    "body",
                    format!("not a JSON object of postback parameters: {e}"),
                )
            })?;
        let mut p = Postback::default();
        for (k, v) in &map {
            let text = match v {
                serde_json::Value::Null => continue,
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Number(n) => n.to_string(),
                _ => {
                    return Err(FieldError::new(
                        ErrorCode::InvalidField,
                        truncate(k, 64).to_owned(),
                        "must be a string or a number",
                    ));
                }
            };
            p.set(k, &text)?;
        }
        p.finish()
    }

    /// The event type the conversion is recorded as.
    pub fn event_type(&self) -> EventType {
        match self.goal {
            None => EventType::Install,
            Some(_) => EventType::Custom,
        }
    }

    /// The event's name: `install` or the goal's.
    pub fn event_name(&self) -> &str {
        self.goal.as_deref().unwrap_or("install")
    }

    fn set(&mut self, name: &str, value: &str) -> Result<(), FieldError> {
        let value = value.trim();
        let repeated = || {
            FieldError::new(
                ErrorCode::DuplicateField,
                truncate(name, 64).to_owned(),
                "given more than once",
            )
        };
        let once = |slot_set: bool| if slot_set { Err(repeated()) } else { Ok(()) };
        match name {
            // The client key: checked by the access layer.
            "key" => {}
            "click_id" => {
                once(self.click_id.is_some())?;
                self.click_id = (!value.is_empty()).then(|| truncate(value, 64).to_owned());
            }
            "event" => {
                once(self.event_seen)?;
                self.event_seen = true;
                self.goal = goal(value)?;
            }
            "payout" => {
                once(self.payout.is_some())?;
                self.payout = Some(payout(value)?);
            }
            "currency" => {
                once(self.currency.is_some())?;
                self.currency = Some(currency(value)?);
            }
            "event_time" => {
                once(self.event_time.is_some())?;
                self.event_time = Some(event_time(value)?);
            }
            "ip" => {
                once(self.ip.is_some())?;
                self.ip = Some(
                    value
                        .parse::<IpAddr>()
                        .map(|ip| ip.to_canonical())
                        .map_err(|_| FieldError::invalid("ip", "not an IPv4 or IPv6 address"))?,
                );
            }
            "ua" => {
                once(self.ua.is_some())?;
                self.ua = Some(value.to_owned());
            }
            "idfa" | "android_id" | "country_code" | "device_os" | "status" => {
                let opt = Opt::ALL
                    .into_iter()
                    .find(|o| o.name() == name)
                    .unwrap_or(Opt::Status);
                once(self.fields.iter().any(|(o, _)| *o == opt))?;
                if opt == Opt::CountryCode
                    && !(value.len() == 2 && value.bytes().all(|b| b.is_ascii_alphabetic()))
                {
                    return Err(FieldError::invalid(
                        "country_code",
                        "an ISO 3166-1 alpha-2 code (DE, US)",
                    ));
                }
                let v = if opt == Opt::CountryCode {
                    value.to_ascii_uppercase()
                } else {
                    value.to_owned()
                };
                if !v.is_empty() {
                    self.fields.push((opt, v));
                }
            }
            other => {
                return Err(FieldError::new(
                    ErrorCode::UnknownField,
                    truncate(other, 64).to_owned(),
                    format!("not a postback parameter ({})", PARAMETERS.join(", ")),
                ));
            }
        }
        Ok(())
    }

    fn finish(self) -> Result<Self, FieldError> {
        if !self.event_seen {
            return Err(FieldError::missing("event"));
        }
        Ok(self)
    }
}

/// `install` (None) or a goal's name: letters, digits, `_`, `-`, `.`.
fn goal(v: &str) -> Result<Option<String>, FieldError> {
    if v.is_empty() {
        return Err(FieldError::missing("event"));
    }
    if v.eq_ignore_ascii_case("install") {
        return Ok(None);
    }
    if v.len() > MAX_GOAL
        || !v
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        return Err(FieldError::invalid(
            "event",
            "install, or a goal's name: up to 64 letters, digits, _ - .",
        ));
    }
    Ok(Some(v.to_owned()))
}

/// A non-negative decimal amount, kept as the tracker wrote it (trimmed).
fn payout(v: &str) -> Result<String, FieldError> {
    let ok = !v.is_empty()
        && v.len() <= 32
        && v.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && v.bytes().filter(|b| *b == b'.').count() <= 1
        && v.parse::<f64>().is_ok_and(f64::is_finite);
    if !ok {
        return Err(FieldError::invalid(
            "payout",
            "a non-negative decimal amount (12.50)",
        ));
    }
    Ok(v.to_owned())
}

/// An ISO 4217 code, upper-cased.
fn currency(v: &str) -> Result<String, FieldError> {
    if v.len() != 3 || !v.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(FieldError::invalid(
            "currency",
            "an ISO 4217 code (USD, EUR)",
        ));
    }
    Ok(v.to_ascii_uppercase())
}

/// Unix seconds, or an RFC 3339 / ISO 8601 time with its offset.
fn event_time(v: &str) -> Result<u64, FieldError> {
    let bad = || {
        FieldError::invalid(
            "event_time",
            "Unix seconds, or an ISO 8601 time with its offset (2026-12-06T10:00:00Z)",
        )
    };
    let seconds = match v.parse::<u64>() {
        Ok(s) => s,
        Err(_) => {
            let t: jiff::Timestamp = v.parse().map_err(|_| bad())?;
            u64::try_from(t.as_second()).map_err(|_| bad())?
        }
    };
    crate::event::check_event_time(seconds).map_err(|m| FieldError::invalid("event_time", m))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(q: &str) -> Result<Postback, FieldError> {
        Postback::from_pairs(form_urlencoded::parse(q.as_bytes()))
    }

    #[test]
    fn a_tracker_postback_reads_as_given() {
        let p = parse(
            "click_id=abc&event=purchase&payout=12.50&currency=eur&event_time=2026-12-06T10:00:00Z&ip=10.0.0.1&country_code=de&status=approved&key=k",
        )
        .unwrap();
        assert_eq!(p.click_id.as_deref(), Some("abc"));
        assert_eq!(p.event_type(), EventType::Custom);
        assert_eq!(p.event_name(), "purchase");
        assert_eq!(p.payout.as_deref(), Some("12.50"));
        assert_eq!(p.currency.as_deref(), Some("EUR"));
        assert_eq!(p.event_time, Some(1_796_551_200));
        assert!(p.fields.contains(&(Opt::CountryCode, "DE".into())));
        assert_eq!(
            parse("event=INSTALL").unwrap().event_type(),
            EventType::Install
        );
    }

    #[test]
    fn bad_values_name_their_field() {
        for (q, field, code) in [
            ("click_id=a", "event", ErrorCode::MissingField),
            ("event=", "event", ErrorCode::MissingField),
            ("event=buy now", "event", ErrorCode::InvalidField),
            ("event=install&payout=-1", "payout", ErrorCode::InvalidField),
            (
                "event=install&payout=1e9",
                "payout",
                ErrorCode::InvalidField,
            ),
            (
                "event=install&currency=EURO",
                "currency",
                ErrorCode::InvalidField,
            ),
            (
                "event=install&event_time=yesterday",
                "event_time",
                ErrorCode::InvalidField,
            ),
            (
                "event=install&event_time=99999999999999",
                "event_time",
                ErrorCode::InvalidField,
            ),
            (
                "event=install&event_time=12",
                "event_time",
                ErrorCode::InvalidField,
            ),
            ("event=install&ip=300.1.1.1", "ip", ErrorCode::InvalidField),
            (
                "event=install&country_code=DEU",
                "country_code",
                ErrorCode::InvalidField,
            ),
            (
                "event=install&event=install",
                "event",
                ErrorCode::DuplicateField,
            ),
            ("event=install&aff_id=7", "aff_id", ErrorCode::UnknownField),
        ] {
            let e = parse(q).unwrap_err();
            assert_eq!((e.field.as_ref(), e.code), (field, code), "{q}");
        }
    }

    #[test]
    fn a_json_postback_reads_like_a_form() {
        let p =
            Postback::from_json(br#"{"click_id":"abc","event":"install","payout":3,"ua":null}"#)
                .unwrap();
        assert_eq!(p.payout.as_deref(), Some("3"));
        assert_eq!(p.ua, None);
        let e = Postback::from_json(br#"{"event":"install","payout":[1]}"#).unwrap_err();
        assert_eq!(e.field, "payout");
    }
}
