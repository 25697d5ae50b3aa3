//! One decision in Fraudshield's three forms, each with the fields and
//! order reference 001 prints: a hit of the conversion report
//! (`_source` inside), a row of the scroll report (flat), and the entry
//! report's object. The values come through [`terms::read`]; what
//! fraudgate does not record is null (`"N/A"` for the labels).

use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde_json::{Map, Value, json};

use super::reasons::{self, Reason};
use super::terms::{self, kind_of};
use super::{Row, Trackers};

/// Which of Fraudshield's forms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    Hit,
    Flat,
    Entry,
}

const HIT: &[&str] = &[
    "tracker_id",
    "affiliate",
    "sub_id",
    "product",
    "partner",
    "fingerprint",
    "request_time",
    "session_time",
    "session_time_in_seconds",
    "type",
    "status",
    "http_user_agent",
    "os",
    "browser",
    "device",
    "http_referer",
    "http_click_referer",
    "score",
    "server_ip",
    "id",
    "rejected_reason",
    "isp",
    "host",
    "country_code",
    "city",
    "reasons",
    "extra_parameters",
    "remote_address",
    "uuid",
    "device_id",
    "request_date",
    "risk",
    "consolidated_affiliate",
    "affiliate_label",
    "partner_label",
    "product_label",
];

const FLAT: &[&str] = &[
    "affiliate",
    "sub_id",
    "product",
    "partner",
    "fingerprint",
    "request_time",
    "session_time_in_seconds",
    "type",
    "remote_address",
    "server_ip",
    "http_user_agent",
    "http_referer",
    "http_click_referer",
    "tracker_id",
    "id",
    "extra_parameters",
    "country_code",
    "city",
    "os",
    "isp",
    "browser",
    "device",
    "status",
    "request_date",
    "session_time",
    "risk",
    "consolidated_affiliate",
    "reason",
    "advanced_reason",
    "affiliate_label",
    "partner_label",
    "product_label",
];

const ENTRY: &[&str] = &[
    "tracker_id",
    "affiliate",
    "sub_id",
    "product",
    "partner",
    "request_time",
    "session_time",
    "session_time_in_seconds",
    "type",
    "status",
    "http_user_agent",
    "os",
    "browser",
    "device",
    "http_referer",
    "http_click_referer",
    "server_ip",
    "id",
    "isp",
    "host",
    "country_code",
    "city",
    "extra_parameters",
    "remote_address",
    "uuid",
    "device_id",
    "risk",
    "reason",
    "advanced_reason",
    "rejected_reason",
    "affiliate_label",
    "partner_label",
    "product_label",
];

/// A hit of the conversion report: `{_index, _type, _id, _score,
/// _source, sort}` (`_index` names the decision's UTC day).
pub fn hit(row: &Row, tz: &TimeZone, trackers: &Trackers<'_>) -> Value {
    let d = Decision { row, tz, trackers };
    let ts = d.ts();
    let day = ts.strftime("%Y-%m-%d");
    json!({
        "_index": format!("fraudgate-{day}"),
        "_type": d.kind(),
        "_id": d.read("id"),
        "_score": null,
        "_source": d.object(HIT, Form::Hit),
        "sort": [ts.as_millisecond()],
    })
}

/// A row of the scroll report.
pub fn flat(row: &Row, tz: &TimeZone, trackers: &Trackers<'_>) -> Value {
    Value::Object(Decision { row, tz, trackers }.object(FLAT, Form::Flat))
}

/// The entry report's object.
pub fn entry(row: &Row, tz: &TimeZone, trackers: &Trackers<'_>) -> Value {
    Value::Object(Decision { row, tz, trackers }.object(ENTRY, Form::Entry))
}

struct Decision<'a> {
    row: &'a Row,
    tz: &'a TimeZone,
    trackers: &'a Trackers<'a>,
}

impl Decision<'_> {
    fn object(&self, names: &[&str], form: Form) -> Map<String, Value> {
        names
            .iter()
            .map(|n| ((*n).to_owned(), self.value(n, form)))
            .collect()
    }

    fn read(&self, name: &str) -> Value {
        terms::read(self.row, name, self.trackers)
    }

    fn ts(&self) -> Timestamp {
        let ms = self.row.get("ts").and_then(Value::as_i64).unwrap_or(0);
        Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    fn kind(&self) -> String {
        kind_of(
            self.row
                .get("event_type")
                .and_then(Value::as_str)
                .unwrap_or(""),
        )
        .to_owned()
    }

    fn rejected(&self) -> bool {
        self.read("status") == "rejected"
    }

    /// What rejected it, `""` when approved (as the docs print).
    fn why(&self, name: &str) -> Value {
        if self.rejected() {
            self.read(name)
        } else {
            "".into()
        }
    }

    fn value(&self, name: &str, form: Form) -> Value {
        let local = || self.ts().to_zoned(self.tz.clone());
        match (name, form) {
            ("request_time", Form::Entry) => {
                local().strftime("%Y-%m-%dT%H:%M:%S%:z").to_string().into()
            }
            ("request_time", _) => local().strftime("%H:%M:%S").to_string().into(),
            ("request_date", _) => local().strftime("%Y-%m-%d").to_string().into(),
            ("session_time", Form::Entry) => match self.read("session_time_in_seconds").as_i64() {
                Some(s) => terms::duration(s, false).into(),
                None => Value::Null,
            },
            ("type", _) => self.kind().into(),
            // The scroll prints it as text.
            ("tracker_id", Form::Flat) => match self.read(name) {
                Value::Number(n) => n.to_string().into(),
                v => v,
            },
            ("reason", _) => self.why("rejected_reason.simple_reason"),
            ("advanced_reason", _) => self.why("rejected_reason.advanced_reason"),
            ("rejected_reason", Form::Entry) => self.why("rejected_reason.simple_reason"),
            ("rejected_reason", _) => self.rejected_reason(),
            ("reasons", _) => self.reasons(),
            ("extra_parameters", _) => self.extra_parameters(),
            _ => self.read(name),
        }
    }

    /// `{rejected_reason_id, simple_reason, advanced_reason}` of the
    /// first reason; all `""` when approved, as printed.
    fn rejected_reason(&self) -> Value {
        if !self.rejected() {
            return json!({"rejected_reason_id": "", "simple_reason": "", "advanced_reason": ""});
        }
        filter_id(&reasons::first(self.row))
    }

    /// Every rule that fired, whatever the status, as one of
    /// Fraudshield's filters that matched (fraudgate keeps no priority,
    /// limit, ratio or weight: null); a rejection no rule judged as one
    /// filter of its reason.
    fn reasons(&self) -> Value {
        let mut fired = reasons::fired(self.row);
        if fired.is_empty() && self.rejected() {
            fired.push(reasons::first(self.row));
        }
        fired
            .iter()
            .map(|r| {
                json!({
                    "filter_id": filter_id(r),
                    "priority": null,
                    "matches": 1,
                    "limit": null,
                    "ratio": null,
                    "weight": null,
                    "weighted_ratio": null,
                })
            })
            .collect()
    }

    /// The RT fields the caller sent that have no column (`extra`).
    fn extra_parameters(&self) -> Value {
        let params: Vec<Value> = self
            .row
            .get("extra")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .map(|(k, v)| json!({"param_name": k, "param_value": v}))
            .collect();
        Value::Array(params)
    }
}

/// A reason as Fraudshield's `filter_id`: fraudgate numbers no
/// reasons (a null id).
fn filter_id(r: &Reason) -> Value {
    json!({
        "rejected_reason_id": null,
        "simple_reason": r.simple,
        "advanced_reason": r.advanced,
    })
}
