//! Fraudshield's vocabulary on fraudgate's log: the one table of what each
//! Fraudshield name reads (docs/queries.md prints the same table), and
//! what a conversion, a click and a goal are. Filters, groups and every
//! answer's fields go through here.

use serde_json::Value;

use super::trackers::Trackers;
use super::{Row, reasons};
use crate::query::report::cmp;
use crate::query::{Column, Expr, Field, Op, QueryError, Scalar, field};

/// The event types a Fraudshield "conversion" is: installs, as trackers
/// post them back to `/v1/postback` (`event=install`, docs/conversions.md);
/// `None` would make every judged event one, whatever its type.
pub const CONVERSION_EVENT_TYPES: Option<&[&str]> = Some(&["install"]);

/// A Fraudshield "click": a decision on an event of this type.
pub const CLICK_EVENT_TYPE: &str = "click";

/// A Fraudshield "goal": a decision on an event of this type, a goal
/// posted back to `/v1/postback` by its name (`event=purchase`), kept in
/// the field `goal`.
pub const GOAL_EVENT_TYPE: &str = "custom";

/// The rows that are conversions; `None`: every row.
pub fn conversion_filter() -> Option<Expr> {
    CONVERSION_EVENT_TYPES.map(|types| crate::query::filter::one_of("event_type", types))
}

/// Whether a decision on an event of this type is a conversion.
pub fn is_conversion(event_type: &str) -> bool {
    CONVERSION_EVENT_TYPES.is_none_or(|types| types.contains(&event_type))
}

/// What Fraudshield calls a decision on an event of this type (`type`,
/// `_type`); another type (an impression) keeps its own name.
pub fn kind_of(event_type: &str) -> &str {
    if is_conversion(event_type) {
        "conversion"
    } else if event_type == CLICK_EVENT_TYPE {
        "click"
    } else if event_type == GOAL_EVENT_TYPE {
        "goal"
    } else {
        event_type
    }
}

/// Whether a decision on an event of `event_type` is an entry of
/// Fraudshield's `entry_type` (`conversion`, `click`, `goal`); `None`
/// for another entry type.
pub fn is_entry(entry_type: &str, event_type: &str) -> Option<bool> {
    match entry_type {
        "conversion" => Some(is_conversion(event_type)),
        "click" => Some(event_type == CLICK_EVENT_TYPE),
        "goal" => Some(event_type == GOAL_EVENT_TYPE),
        _ => None,
    }
}

/// The rows of one event type.
pub fn event_type_is(event_type: &str) -> Expr {
    cmp("event_type", Op::Eq, Scalar::Text(event_type.into()))
}

/// Where a Fraudshield name reads from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reads {
    /// A field of the query model; empty text answers null.
    Field(&'static str),
    /// RT fields kept in the `extra` object: the first one given.
    Extra(&'static [&'static str]),
    /// An RT name field in `extra`, `"N/A"` when absent (Fraudshield's
    /// label when none is set).
    Label(&'static str),
    /// The client that sent the decision, as its tracker id
    /// (`auth.trackers`).
    Tracker,
    /// The policy's decision (the would-be one in shadow mode): allow is
    /// `approved`, block is `rejected`.
    Status,
    /// Why, as a category ([`reasons::first`]): the first rule that
    /// fired, as Fraudshield names such a filter ("Click injection");
    /// else fraudgate's `reason`. As a filter, the rejected rows of that
    /// category.
    Reason,
    /// Why, in detail: that rule's own reason; else the tags. As a
    /// filter, the rejected rows with that rule kind or tag.
    Detail,
    /// A field of whole seconds (kept as text in `extra`) as a number;
    /// null when the row has none.
    Seconds(&'static str),
    /// The same as a duration, `"0D, 00:06:46"` ([`duration`]).
    Duration(&'static str),
    /// Not recorded by fraudgate: answered null, and a filter on it
    /// matches no row.
    Nothing,
}

/// One Fraudshield name and what it reads.
#[derive(Debug)]
pub struct Term {
    pub name: &'static str,
    pub reads: Reads,
}

const fn term(name: &'static str, reads: Reads) -> Term {
    Term { name, reads }
}

/// Every Fraudshield name of a decision and what it reads in the log.
pub const TERMS: &[Term] = &[
    term("tracker_id", Reads::Tracker),
    term("affiliate", Reads::Field("affiliate_id")),
    term("consolidated_affiliate", Reads::Field("affiliate_id")),
    term("sub_id", Reads::Field("aff_sub1")),
    term("product", Reads::Field("offer_id")),
    // RT's advertiser: whose product (offer) it is.
    term("partner", Reads::Field("advertiser_id")),
    term("country_code", Reads::Field("country_code")),
    term("remote_address", Reads::Field("ip")),
    term("http_user_agent", Reads::Field("ua")),
    term("id", Reads::Field("id")),
    term("status", Reads::Status),
    term("rejected_reason.simple_reason", Reads::Reason),
    term("rejected_reason.advanced_reason", Reads::Detail),
    term("http_referer", Reads::Extra(&["refer"])),
    term("os", Reads::Extra(&["device_os"])),
    term("browser", Reads::Extra(&["browser"])),
    term("device", Reads::Extra(&["device_model"])),
    term("device_id", Reads::Extra(&["idfa", "android_id"])),
    term("affiliate_label", Reads::Label("affiliate_name")),
    term("product_label", Reads::Label("offer_name")),
    term("partner_label", Reads::Label("advertiser_name")),
    // A goal's name (`event=purchase`); conversions and clicks have none.
    term("goal", Reads::Field("goal")),
    term("http_click_referer", Reads::Nothing),
    term("score", Reads::Nothing),
    term("fingerprint", Reads::Nothing),
    // Fraudshield's session time is from the click to the conversion:
    // the CTIT a conversion records (its goals' too).
    term("session_time", Reads::Duration("ctit")),
    term("session_time_in_seconds", Reads::Seconds("ctit")),
    term("server_ip", Reads::Nothing),
    term("isp", Reads::Nothing),
    term("host", Reads::Nothing),
    term("city", Reads::Nothing),
    term("uuid", Reads::Nothing),
    term("risk", Reads::Nothing),
];

/// What a Fraudshield name reads.
pub fn reads(name: &str) -> Reads {
    TERMS
        .iter()
        .find(|t| t.name == name)
        .map_or(Reads::Nothing, |t| t.reads)
}

/// The query model's fields a decision's answer needs (for a list).
pub fn fields() -> Vec<&'static Field> {
    let own = [
        "id",
        "ts",
        "client",
        "event_type",
        "extra",
        "would_be",
        "tags",
        "rules",
        "reason",
    ];
    let read = TERMS.iter().filter_map(|t| match t.reads {
        Reads::Field(f) => Some(f),
        _ => None,
    });
    let mut out: Vec<&'static Field> = Vec::new();
    for f in own.into_iter().chain(read).filter_map(field) {
        if !out.iter().any(|o| o.name == f.name) {
            out.push(f);
        }
    }
    out
}

/// The field a data source groups by; `None` for one fraudgate has no
/// values of, which splits nothing.
pub fn group_field(name: &str) -> Option<&'static Field> {
    match reads(name) {
        Reads::Field(f) => field(f),
        Reads::Tracker => field("client"),
        _ => None,
    }
}

/// The rows a search term `name = value` keeps.
pub fn filter(name: &str, value: &Scalar, trackers: &Trackers<'_>) -> Result<Expr, QueryError> {
    let text = match value {
        Scalar::Text(t) => t.clone(),
        Scalar::Int(i) => i.to_string(),
        Scalar::Real(r) => r.to_string(),
    };
    let bad = |m: String| QueryError::new("search_fields", format!("{name}: {m}"));
    Ok(match reads(name) {
        Reads::Field(f) => cmp(f, Op::Eq, Scalar::Text(text)),
        Reads::Tracker => {
            let id = text
                .trim()
                .parse()
                .map_err(|_| bad(format!("{text:?} is not a tracker id")))?;
            trackers.filter(id, "search_fields")?
        }
        Reads::Status => {
            let decision = match text.as_str() {
                "approved" => "allow",
                "rejected" => "block",
                other => return Err(bad(format!("{other:?}: use approved or rejected"))),
            };
            cmp("would_be", Op::Eq, Scalar::Text(decision.into()))
        }
        Reads::Reason => reasons::simple_filter(&text),
        Reads::Detail => reasons::advanced_filter(&text)
            .ok_or_else(|| bad(format!("{text:?} is neither a tag nor a rule kind")))?,
        Reads::Nothing => nothing(),
        Reads::Extra(_) | Reads::Label(_) | Reads::Seconds(_) | Reads::Duration(_) => {
            return Err(bad("not a filter".into()));
        }
    })
}

/// No row: a filter on what fraudgate does not record (every decision
/// has a time after 1970).
fn nothing() -> Expr {
    cmp("ts", Op::Lt, Scalar::Int(0))
}

/// A name's value in a row of the log (a list row, an entry, a group).
pub fn read(row: &Row, name: &str, trackers: &Trackers<'_>) -> Value {
    match reads(name) {
        Reads::Field(f) => text_or_null(row.get(f).or_else(|| extra_of(row, f))),
        Reads::Extra(keys) => keys
            .iter()
            .map(|k| text_or_null(extra(row, k)))
            .find(|v| !v.is_null())
            .unwrap_or(Value::Null),
        Reads::Label(k) => match text_or_null(extra(row, k)) {
            Value::Null => "N/A".into(),
            v => v,
        },
        Reads::Tracker => row
            .get("client")
            .and_then(Value::as_str)
            .and_then(|c| trackers.id_of(c))
            .map_or(Value::Null, Value::from),
        Reads::Status => match row.get("would_be").and_then(Value::as_str) {
            Some("block") => "rejected".into(),
            Some(_) => "approved".into(),
            None => Value::Null,
        },
        Reads::Reason => reasons::first(row).simple.into(),
        Reads::Detail => reasons::first(row).advanced.into(),
        Reads::Seconds(f) => seconds(row, f).map_or(Value::Null, Value::from),
        Reads::Duration(f) => seconds(row, f).map_or(Value::Null, |s| duration(s, true).into()),
        Reads::Nothing => Value::Null,
    }
}

/// A member of the row's `extra` object.
fn extra<'r>(row: &'r Row, key: &str) -> Option<&'r Value> {
    row.get("extra").and_then(|e| e.get(key))
}

/// A field kept in `extra` (e.g. `advertiser_id`) when the row has no
/// column of that name (an entry carries `extra` whole).
fn extra_of<'r>(row: &'r Row, name: &str) -> Option<&'r Value> {
    match field(name)?.column {
        Column::Extra(key) => extra(row, key),
        Column::Own(_) => None,
    }
}

fn text_or_null(v: Option<&Value>) -> Value {
    match v {
        Some(Value::String(s)) if s.is_empty() => Value::Null,
        Some(v) => v.clone(),
        None => Value::Null,
    }
}

/// A field of whole seconds, from its column or `extra`.
fn seconds(row: &Row, name: &str) -> Option<i64> {
    match row.get(name).or_else(|| extra_of(row, name))? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// `secs` as Fraudshield prints a session time: with the days as the
/// conversion report does (`"0D, 00:06:46"`), or without as the entry
/// report does (`"00:00:00"`; hours past 24 then, `"26:03:04"`).
pub fn duration(secs: i64, days: bool) -> String {
    let sign = if secs < 0 { "-" } else { "" };
    let t = secs.unsigned_abs();
    let (m, s) = (t / 60 % 60, t % 60);
    if days {
        format!("{sign}{}D, {:02}:{m:02}:{s:02}", t / 86_400, t / 3_600 % 24)
    } else {
        format!("{sign}{:02}:{m:02}:{s:02}", t / 3_600)
    }
}
