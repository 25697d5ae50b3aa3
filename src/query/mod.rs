//! The query model of the Data API and the reports: which rows (event
//! type, filter expression), which columns (fields, or groups with
//! aggregates and a `having`), in which order, which page, in which time
//! zone. Parsed and validated once (the Data API's parameters in
//! [`params`], the reports' in [`report`]); each store translates it to
//! its own SQL ([`sql`]) with every value a bound parameter.

pub mod clickhouse;
pub mod csv;
pub mod exec;
pub mod filter;
pub mod fraudshield;
pub mod funnel;
pub mod params;
pub mod range;
pub mod report;
pub mod shadow;
pub mod sql;
pub mod sqlite;

use std::borrow::Cow;

use jiff::tz::TimeZone;

use crate::decision::RuleKind;
use crate::verdict::Tag;
pub use filter::{Expr, Op, Scalar};

/// A bad query: 400 `{error, field, message}` naming the parameter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct QueryError {
    pub field: Cow<'static, str>,
    pub message: String,
}

impl QueryError {
    pub fn new(field: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        QueryError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// What a field is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Int,
    /// JSON text, output as JSON.
    Json,
    /// A calendar bucket, in the query's time zone, of the time column
    /// the field reads (`ts`, the decision's; `at`, the event's).
    Time(TimeUnit),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeUnit {
    Datetime,
    Date,
    Hour,
    Week,
    Month,
    Year,
}

impl TimeUnit {
    pub const fn as_str(self) -> &'static str {
        match self {
            TimeUnit::Datetime => "datetime",
            TimeUnit::Date => "date",
            TimeUnit::Hour => "hour",
            TimeUnit::Week => "week",
            TimeUnit::Month => "month",
            TimeUnit::Year => "year",
        }
    }
}

/// A field of the decision log: its name in the API and where it is read.
#[derive(Debug, PartialEq, Eq)]
pub struct Field {
    pub name: &'static str,
    pub kind: Kind,
    pub column: Column,
}

/// Where a field is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    /// A column of its own (for time buckets: the time column they are
    /// computed from).
    Own(&'static str),
    /// A member of the `extra` JSON object (an RT optional field with no
    /// column): its text, empty when absent.
    Extra(&'static str),
}

const fn f(name: &'static str, kind: Kind) -> Field {
    Field {
        name,
        kind,
        column: Column::Own(name),
    }
}

/// A calendar bucket of a time column.
const fn time(name: &'static str, unit: TimeUnit, of: &'static str) -> Field {
    Field {
        name,
        kind: Kind::Time(unit),
        column: Column::Own(of),
    }
}

/// A name the FraudScore Data API documents for a field fraudgate keeps
/// under another name.
const fn alias(name: &'static str, of: &'static str) -> Field {
    Field {
        name,
        kind: Kind::Text,
        column: Column::Own(of),
    }
}

/// An RT optional field kept in `extra`.
const fn extra(name: &'static str) -> Field {
    Field {
        name,
        kind: Kind::Text,
        column: Column::Extra(name),
    }
}

/// Every field a query can name. Columns share the name, but for the
/// time buckets: `datetime` is the event's time (`at`, Unix seconds: RT's
/// `at`, or the decision's second when the caller gave none), the others
/// buckets of the decision's (`ts`, Unix milliseconds: the log's key, so
/// `date_*` bounds seek), with `decided_at` its second.
pub const FIELDS: &[Field] = &[
    f("id", Kind::Text),
    f("ts", Kind::Int),
    f("at", Kind::Int),
    time("datetime", TimeUnit::Datetime, "at"),
    time("decided_at", TimeUnit::Datetime, "ts"),
    time("date", TimeUnit::Date, "ts"),
    time("hour", TimeUnit::Hour, "ts"),
    time("week", TimeUnit::Week, "ts"),
    time("month", TimeUnit::Month, "ts"),
    time("year", TimeUnit::Year, "ts"),
    f("door", Kind::Text),
    f("client", Kind::Text),
    f("event_type", Kind::Text),
    f("ip", Kind::Text),
    f("ua", Kind::Text),
    f("affiliate_id", Kind::Text),
    f("offer_id", Kind::Text),
    f("aff_sub1", Kind::Text),
    f("aff_sub2", Kind::Text),
    f("aff_sub3", Kind::Text),
    f("aff_sub4", Kind::Text),
    f("aff_sub5", Kind::Text),
    f("country_code", Kind::Text),
    f("extra", Kind::Json),
    f("decision", Kind::Text),
    f("would_be", Kind::Text),
    f("mode", Kind::Text),
    f("tags", Kind::Text),
    f("source", Kind::Text),
    f("reason", Kind::Text),
    f("rules", Kind::Json),
    f("ivt", Kind::Text),
    f("ivt_category", Kind::Text),
    f("elapsed_us", Kind::Int),
];

/// The FraudScore Data API's names (reference 000) for data fraudgate
/// keeps under its own names, and the RT fields in `extra` the compatible
/// surfaces read (`advertiser_id`: Fraudshield's partner): asked for by
/// these names, answered under them. Not part of an entry's full record
/// (`FIELDS` is).
pub const DATA_API_FIELDS: &[Field] = &[
    alias("ipv4_str", "ip"),
    extra("offer_name"),
    extra("affiliate_name"),
    extra("advertiser_id"),
];

/// Fields of `extra` the funnel reads and answers: the device's, and a
/// conversion's (`/v1/postback`). Not part of an entry's full record
/// (`extra` holds them there).
pub const FUNNEL_FIELDS: &[Field] = &[
    extra("idfa"),
    extra("android_id"),
    extra("device_os"),
    extra("click_id"),
    extra("goal"),
    extra("payout"),
    extra("currency"),
    extra("ctit"),
    extra("status"),
    extra("imp_id"),
];

/// The fields a list query returns when it names none.
pub const DEFAULT_FIELDS: &[&str] = &[
    "id",
    "datetime",
    "door",
    "event_type",
    "ip",
    "ua",
    "affiliate_id",
    "offer_id",
    "aff_sub1",
    "country_code",
    "decision",
    "tags",
    "source",
    "reason",
    "ivt",
];

pub fn field(name: &str) -> Option<&'static Field> {
    FIELDS
        .iter()
        .chain(DATA_API_FIELDS)
        .chain(FUNNEL_FIELDS)
        .find(|f| f.name == name)
}

fn field_or_err(name: &str, param: &'static str) -> Result<&'static Field, QueryError> {
    field(name).ok_or_else(|| {
        QueryError::new(
            param,
            format!(
                "unknown field {name:?}; known: {}",
                FIELDS.iter().map(|f| f.name).collect::<Vec<_>>().join(", ")
            ),
        )
    })
}

/// An aggregate of a groups query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Agg {
    Count,
    Blocked,
    Allowed,
    /// Percent of events blocked, two decimals.
    BlockRate,
    Any(&'static Field),
    Uniq(&'static Field),
    /// Events carrying this tag.
    Tag(Tag),
    /// Events blocked by this tag.
    BlockedByTag(Tag),
    /// Events where this rule kind fired.
    Rule(RuleKind),
    /// Events blocked where this rule kind fired.
    BlockedByRule(RuleKind),
    /// Events of this MRC class (`ivt_givt`, `ivt_sivt`).
    Ivt(crate::decision_log::IvtClass),
    AvgElapsedUs,
}

/// Every aggregate a query can name, as `help` and errors list them.
pub const AGGREGATES: &[&str] = &[
    "count",
    "blocked",
    "allowed",
    "block_rate",
    "avg_elapsed_us",
    "ivt_givt",
    "ivt_sivt",
    "ivt_none",
    "any_<field>",
    "uniq_<field>",
    "tag_<tag>",
    "blocked_by_<tag>",
    "rule_<kind>",
    "blocked_by_rule_<kind>",
];

impl Agg {
    pub fn name(&self) -> String {
        match self {
            Agg::Count => "count".into(),
            Agg::Blocked => "blocked".into(),
            Agg::Allowed => "allowed".into(),
            Agg::BlockRate => "block_rate".into(),
            Agg::Any(f) => format!("any_{}", f.name),
            Agg::Uniq(f) => format!("uniq_{}", f.name),
            Agg::Tag(t) => format!("tag_{}", t.config_name()),
            Agg::BlockedByTag(t) => format!("blocked_by_{}", t.config_name()),
            Agg::Rule(k) => format!("rule_{}", k.as_str()),
            Agg::BlockedByRule(k) => format!("blocked_by_rule_{}", k.as_str()),
            Agg::Ivt(c) => format!("ivt_{}", c.as_str()),
            Agg::AvgElapsedUs => "avg_elapsed_us".into(),
        }
    }

    pub fn parse(name: &str) -> Result<Agg, QueryError> {
        let bad = || {
            QueryError::new(
                "field",
                format!("unknown aggregate {name:?}; use {}", AGGREGATES.join(", ")),
            )
        };
        Ok(match name {
            "count" => Agg::Count,
            "blocked" => Agg::Blocked,
            "allowed" => Agg::Allowed,
            "block_rate" => Agg::BlockRate,
            "avg_elapsed_us" => Agg::AvgElapsedUs,
            "ivt_givt" => Agg::Ivt(crate::decision_log::IvtClass::Givt),
            "ivt_sivt" => Agg::Ivt(crate::decision_log::IvtClass::Sivt),
            "ivt_none" => Agg::Ivt(crate::decision_log::IvtClass::None),
            _ => {
                let rule = |k: &str| RuleKind::ALL.into_iter().find(|r| r.as_str() == k);
                if let Some(f) = name.strip_prefix("any_") {
                    Agg::Any(field(f).ok_or_else(bad)?)
                } else if let Some(f) = name.strip_prefix("uniq_") {
                    Agg::Uniq(field(f).ok_or_else(bad)?)
                } else if let Some(k) = name.strip_prefix("blocked_by_rule_") {
                    Agg::BlockedByRule(rule(k).ok_or_else(bad)?)
                } else if let Some(t) = name.strip_prefix("blocked_by_") {
                    Agg::BlockedByTag(Tag::from_config_name(t).ok_or_else(bad)?)
                } else if let Some(t) = name.strip_prefix("tag_") {
                    Agg::Tag(Tag::from_config_name(t).ok_or_else(bad)?)
                } else if let Some(k) = name.strip_prefix("rule_") {
                    Agg::Rule(rule(k).ok_or_else(bad)?)
                } else {
                    return Err(bad());
                }
            }
        })
    }
}

/// Which events: `click`, `impression`, the conversions `install` and
/// `custom` (posted back to `/v1/postback`), or `all` (the path segment).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Events {
    Click,
    Impression,
    Install,
    Custom,
    All,
}

impl Events {
    pub fn parse(s: &str) -> Result<Self, QueryError> {
        match s {
            "click" => Ok(Events::Click),
            "impression" => Ok(Events::Impression),
            "all" => Ok(Events::All),
            "install" => Ok(Events::Install),
            "custom" => Ok(Events::Custom),
            _ => Err(QueryError::new(
                "event",
                format!("{s:?}: use click, impression, all, install or custom"),
            )),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Shape {
    List(Vec<&'static Field>),
    Groups {
        groups: Vec<&'static Field>,
        aggs: Vec<Agg>,
        having: Option<Expr>,
    },
}

/// One validated query.
#[derive(Debug, Clone)]
pub struct Query {
    pub events: Events,
    pub shape: Shape,
    pub filter: Option<Expr>,
    /// Output column name, descending.
    pub sort: Vec<(String, bool)>,
    pub page: u64,
    pub page_size: u64,
    pub tz: TimeZone,
}

/// Largest page a query may ask for.
pub const MAX_PAGE_SIZE: u64 = 1_000_000;

impl Query {
    /// The output column names, in order.
    pub fn columns(&self) -> Vec<String> {
        match &self.shape {
            Shape::List(fields) => fields.iter().map(|f| f.name.to_owned()).collect(),
            Shape::Groups { groups, aggs, .. } => groups
                .iter()
                .map(|f| f.name.to_owned())
                .chain(aggs.iter().map(Agg::name))
                .collect(),
        }
    }
}

/// Unix milliseconds of the start of `date` (YYYY-MM-DD) in `tz`, or of
/// `datetime` (YYYY-MM-DD HH:MM:SS).
pub fn local_ms(text: &str, tz: &TimeZone, param: &'static str) -> Result<i64, QueryError> {
    let t = text.trim();
    let dt: jiff::civil::DateTime = if t.len() == 10 {
        t.parse::<jiff::civil::Date>()
            .map(|d| d.to_datetime(jiff::civil::Time::midnight()))
    } else {
        t.replacen(' ', "T", 1).parse::<jiff::civil::DateTime>()
    }
    .map_err(|_| {
        QueryError::new(
            param,
            format!("{t:?}: use YYYY-MM-DD or YYYY-MM-DD HH:MM:SS"),
        )
    })?;
    let z = tz
        .to_zoned(dt)
        .map_err(|e| QueryError::new(param, format!("{t:?}: {e}")))?;
    Ok(z.timestamp().as_millisecond())
}

/// The calendar bucket of `ts_ms` in `tz`.
pub fn bucket(ts_ms: i64, unit: TimeUnit, tz: &TimeZone) -> String {
    let Ok(ts) = jiff::Timestamp::from_millisecond(ts_ms) else {
        return String::new();
    };
    let z = ts.to_zoned(tz.clone());
    match unit {
        TimeUnit::Datetime => z.strftime("%Y-%m-%d %H:%M:%S").to_string(),
        TimeUnit::Date => z.strftime("%Y-%m-%d").to_string(),
        TimeUnit::Hour => z.strftime("%Y-%m-%d %H:00").to_string(),
        TimeUnit::Week => {
            let monday =
                z.date() - jiff::Span::new().days(i64::from(z.weekday().to_monday_zero_offset()));
            monday.strftime("%Y-%m-%d").to_string()
        }
        TimeUnit::Month => z.strftime("%Y-%m").to_string(),
        TimeUnit::Year => z.strftime("%Y").to_string(),
    }
}

#[cfg(test)]
mod tests;
