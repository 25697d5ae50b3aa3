//! The click (or impression) a conversion is credited to, read from the
//! decision log by its id: the id is a UUIDv7, so its millisecond bounds
//! the read to one time key (SQLite: the block holding it; ClickHouse: a range
//! of its sort key's time) and the lookup costs the same at any volume.

use jiff::tz::TimeZone;
use serde_json::{Map, Value};

use crate::decision::DecisionId;
use crate::event::Opt;
use crate::query::filter::cmp;
use crate::query::{Agg, Events, Expr, Op, Query, Scalar, Shape, field};

/// What the funnel needs of a click.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Click {
    pub id: String,
    /// `click` or `impression`.
    pub event_type: String,
    /// The event's time (Unix seconds).
    pub at: i64,
    /// The policy blocked it (shadow mode: would have).
    pub blocked: bool,
    pub reason: String,
    pub affiliate_id: String,
    pub offer_id: String,
    pub aff_sub: [Option<String>; 5],
    pub country_code: Option<String>,
    pub ip: String,
    pub ua: String,
    pub idfa: Option<String>,
    pub android_id: Option<String>,
    pub device_os: Option<String>,
    /// Whose traffic and offer it is, as the click named them (RT's
    /// advertiser, manager, name and source fields): the conversion is
    /// theirs too.
    pub owners: Vec<(Opt, String)>,
    /// The impression it follows (its decision id), when it named one.
    pub imp_id: Option<String>,
}

/// The RT fields a conversion takes from its click.
pub const OWNER_FIELDS: [Opt; 8] = [
    Opt::AdvertiserId,
    Opt::AdvertiserName,
    Opt::AdvertiserManagerId,
    Opt::AdvertiserManagerName,
    Opt::AffiliateName,
    Opt::AffiliateManagerId,
    Opt::AffiliateManagerName,
    Opt::OfferName,
];

/// The columns read.
const COLUMNS: [&str; 20] = [
    "id",
    "event_type",
    "at",
    "would_be",
    "reason",
    "affiliate_id",
    "offer_id",
    "aff_sub1",
    "aff_sub2",
    "aff_sub3",
    "aff_sub4",
    "aff_sub5",
    "country_code",
    "ip",
    "ua",
    "idfa",
    "android_id",
    "device_os",
    "extra",
    "imp_id",
];

/// The query of the decision `id` (None: not a decision id).
pub fn query(id: &str) -> Option<Query> {
    by_id(id, &COLUMNS)
}

/// The query of `fields` of the decision `id`: its millisecond (in the
/// id) and the id, one seek on the log's time key (None: not a decision
/// id).
pub fn by_id(id: &str, fields: &[&str]) -> Option<Query> {
    let ms = DecisionId::parse(id)?.unix_ms() as i64;
    let fields = fields.iter().filter_map(|n| field(n)).collect();
    Some(Query {
        events: Events::All,
        shape: Shape::List(fields),
        filter: Some(Expr::And(vec![
            cmp("ts", Op::Eq, Scalar::Int(ms)),
            cmp("id", Op::Eq, Scalar::Text(id.to_ascii_lowercase())),
        ])),
        sort: Vec::new(),
        page: 1,
        page_size: 1,
        tz: TimeZone::UTC,
    })
}

/// The click of a row [`query`] read (None: a conversion's own id, which
/// credits nothing).
pub fn from_row(row: &Map<String, Value>) -> Option<Click> {
    let text = |n: &str| match row.get(n) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    };
    let opt = |n: &str| Some(text(n)).filter(|s| !s.is_empty());
    let event_type = text("event_type");
    if event_type != "click" && event_type != "impression" {
        return None;
    }
    Some(Click {
        id: text("id"),
        at: row.get("at").and_then(Value::as_i64).unwrap_or(0),
        blocked: text("would_be") == "block",
        reason: text("reason"),
        affiliate_id: text("affiliate_id"),
        offer_id: text("offer_id"),
        aff_sub: ["aff_sub1", "aff_sub2", "aff_sub3", "aff_sub4", "aff_sub5"].map(opt),
        country_code: opt("country_code"),
        ip: text("ip"),
        ua: text("ua"),
        idfa: opt("idfa"),
        android_id: opt("android_id"),
        device_os: opt("device_os"),
        owners: owners(row.get("extra")),
        imp_id: opt("imp_id"),
        event_type,
    })
}

/// The owner fields in a row's `extra` (JSON text, or the object).
fn owners(extra: Option<&Value>) -> Vec<(Opt, String)> {
    let parsed;
    let map = match extra {
        Some(Value::Object(m)) => m,
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(Value::Object(m)) => {
                parsed = m;
                &parsed
            }
            _ => return Vec::new(),
        },
        _ => return Vec::new(),
    };
    OWNER_FIELDS
        .iter()
        .filter_map(|o| Some((*o, map.get(o.name())?.as_str()?.to_owned())))
        .collect()
}

/// Clicks and conversions of a source (affiliate and first sub) since
/// `since_ms`: a grouped count by event type.
pub fn source_query(affiliate_id: &str, aff_sub1: Option<&str>, since_ms: i64) -> Query {
    let mut filter = vec![
        cmp("ts", Op::Ge, Scalar::Int(since_ms)),
        cmp(
            "affiliate_id",
            Op::Eq,
            Scalar::Text(affiliate_id.to_owned()),
        ),
    ];
    if let Some(sub) = aff_sub1 {
        filter.push(cmp("aff_sub1", Op::Eq, Scalar::Text(sub.to_owned())));
    }
    Query {
        events: Events::All,
        shape: Shape::Groups {
            groups: field("event_type").into_iter().collect(),
            aggs: vec![Agg::Count],
            having: None,
        },
        filter: Some(Expr::And(filter)),
        sort: Vec::new(),
        page: 1,
        page_size: 10,
        tz: TimeZone::UTC,
    }
}

/// (clicks, conversions) from the rows of [`source_query`].
pub fn source_counts(rows: &[Map<String, Value>]) -> (u64, u64) {
    let mut clicks = 0;
    let mut conversions = 0;
    for r in rows {
        let n = r.get("count").and_then(Value::as_u64).unwrap_or(0);
        match r.get("event_type").and_then(Value::as_str) {
            Some("click") => clicks += n,
            Some("install" | "custom") => conversions += n,
            _ => {}
        }
    }
    (clicks, conversions)
}
