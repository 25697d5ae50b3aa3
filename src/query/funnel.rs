//! The funnel report (`GET /v1/reports/funnel`): per source (affiliate and
//! first sub by default), impressions, clicks and conversions, the
//! conversion rate, the click-to-install time's distribution, rejections by
//! reason and the payout approved and at risk. What no attribution anchor
//! gives an ad network about its own sources.
//!
//! Two queries over the same store: the traffic counted by the store
//! (grouped), then the conversions' rows streamed and summed here (a
//! median needs the values; conversions are a small share of events).

use std::collections::BTreeMap;

use jiff::tz::TimeZone;
use serde_json::{Map, Value, json};

use super::filter::one_of;
use super::range::{self, Takes};
use super::{Agg, Events, Expr, Field, Query, QueryError, Shape, field};

/// Most conversions one report reads (it streams them; past this it asks
/// for a shorter range rather than answer from part of them).
pub const MAX_CONVERSIONS: u64 = 5_000_000;

/// The CTIT buckets: upper bounds (seconds, exclusive) and names.
const BUCKETS: [(i64, &str); 7] = [
    // Before its click: a tracker's clock, or the strongest injection.
    (0, "<0s"),
    (10, "<10s"),
    (60, "10s-1m"),
    (600, "1m-10m"),
    (3_600, "10m-1h"),
    (86_400, "1h-24h"),
    (i64::MAX, ">=24h"),
];

/// A funnel report's parameters, checked.
#[derive(Debug, Clone)]
pub struct Params {
    groups: Vec<&'static Field>,
    filters: Vec<Expr>,
    tz: TimeZone,
    pub page: u64,
    pub count: u64,
}

/// `date_start`, `date_end` (days in `timezone`; today when absent),
/// `timezone`, `group[]` (up to 3; default `affiliate_id`, `aff_sub1`),
/// `count` (rows a page, 100) and `page`.
pub fn parse(raw: &str) -> Result<Params, QueryError> {
    let r = range::parse(
        raw,
        &Takes {
            groups: Some(&["affiliate_id", "aff_sub1"]),
            page: true,
        },
    )?;
    Ok(Params {
        filters: r.filters()?,
        groups: r.groups,
        tz: r.tz,
        page: r.page,
        count: r.count,
    })
}

impl Params {
    fn filter(&self, types: &[&str]) -> Option<Expr> {
        let mut all = self.filters.clone();
        all.push(one_of("event_type", types));
        Some(Expr::And(all))
    }

    /// Impressions and clicks per group, counted by the store.
    pub fn traffic(&self) -> Query {
        let mut groups = self.groups.clone();
        groups.extend(field("event_type"));
        Query {
            events: Events::All,
            shape: Shape::Groups {
                groups,
                aggs: vec![Agg::Count],
                having: None,
            },
            filter: self.filter(&["click", "impression"]),
            sort: Vec::new(),
            page: 1,
            page_size: super::MAX_PAGE_SIZE,
            tz: self.tz.clone(),
        }
    }

    /// The conversions, a row each: their groups, CTIT, payout and ruling.
    pub fn conversions(&self) -> Query {
        let mut fields = self.groups.clone();
        if !fields.iter().any(|f| f.name == "event_type") {
            fields.extend(field("event_type"));
        }
        fields.extend(
            ["ctit", "payout", "currency", "would_be", "reason", "rules"]
                .iter()
                .filter_map(|n| field(n)),
        );
        Query {
            events: Events::All,
            shape: Shape::List(fields),
            filter: self.filter(&["install", "custom"]),
            sort: Vec::new(),
            page: 1,
            page_size: MAX_CONVERSIONS + 1,
            tz: self.tz.clone(),
        }
    }
}

/// One group's sums.
#[derive(Default)]
struct Source {
    impressions: u64,
    clicks: u64,
    /// Installs.
    conversions: u64,
    /// Goals (`custom` events).
    goals: u64,
    rejected: u64,
    ctits: Vec<i64>,
    rejections: BTreeMap<String, u64>,
    /// currency -> (approved, at risk)
    payout: BTreeMap<String, (f64, f64)>,
}

/// The report, built from the two queries' rows.
pub struct Report {
    groups: Vec<&'static str>,
    /// The group values as JSON text -> the values and their sums.
    sources: BTreeMap<String, (Vec<Value>, Source)>,
    conversions_read: u64,
}

impl Report {
    pub fn new(p: &Params) -> Self {
        Report {
            groups: p.groups.iter().map(|f| f.name).collect(),
            sources: BTreeMap::new(),
            conversions_read: 0,
        }
    }

    /// The group a row counts in.
    fn source(&mut self, names: &[String], values: &[Value]) -> &mut Source {
        let key = self.key(names, values);
        let text = Value::Array(key.clone()).to_string();
        &mut self
            .sources
            .entry(text)
            .or_insert_with(|| (key, Source::default()))
            .1
    }

    fn key(&self, names: &[String], values: &[Value]) -> Vec<Value> {
        self.groups
            .iter()
            .map(|g| {
                names
                    .iter()
                    .position(|n| n == g)
                    .and_then(|i| values.get(i).cloned())
                    .unwrap_or(Value::Null)
            })
            .collect()
    }

    /// A row of [`Params::traffic`].
    pub fn add_traffic(&mut self, names: &[String], values: Vec<Value>) {
        let get = |n: &str| {
            names
                .iter()
                .position(|x| x == n)
                .and_then(|i| values.get(i))
        };
        let count = get("count").and_then(Value::as_u64).unwrap_or(0);
        let kind = get("event_type").and_then(Value::as_str).unwrap_or("");
        let s = self.source(names, &values);
        match kind {
            "click" => s.clicks += count,
            "impression" => s.impressions += count,
            _ => {}
        }
    }

    /// A row of [`Params::conversions`]; false once past
    /// [`MAX_CONVERSIONS`] (the read stops).
    pub fn add_conversion(&mut self, names: &[String], values: Vec<Value>) -> bool {
        self.conversions_read += 1;
        if self.conversions_read > MAX_CONVERSIONS {
            return false;
        }
        let get = |n: &str| {
            names
                .iter()
                .position(|x| x == n)
                .and_then(|i| values.get(i))
        };
        let text = |n: &str| get(n).and_then(Value::as_str).unwrap_or("").to_owned();
        let rejected = text("would_be") == "block";
        let ctit = text("ctit").parse::<i64>().ok();
        let payout = text("payout").parse::<f64>().ok();
        let currency = text("currency");
        let mut reasons: Vec<String> = get("rules")
            .and_then(Value::as_array)
            .map(|hits| {
                hits.iter()
                    .filter_map(|h| h["kind"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        if rejected && reasons.is_empty() {
            reasons.push(text("reason"));
        }
        let goal = text("event_type") == "custom";
        let s = self.source(names, &values);
        if goal {
            s.goals += 1;
        } else {
            s.conversions += 1;
        }
        s.ctits.extend(ctit);
        if rejected {
            s.rejected += 1;
            for r in reasons {
                *s.rejections.entry(r).or_default() += 1;
            }
        }
        if let Some(p) = payout {
            let e = s.payout.entry(currency).or_default();
            if rejected {
                e.1 += p;
            } else {
                e.0 += p;
            }
        }
        true
    }

    /// Whether the conversions were more than one report reads.
    pub fn truncated(&self) -> bool {
        self.conversions_read > MAX_CONVERSIONS
    }

    /// Page `page` of `count` rows: most conversions first, then most
    /// clicks, then by groups.
    pub fn finish(self, page: u64, count: u64) -> Vec<Value> {
        let groups = self.groups;
        // (In group order already: the map's.)
        let mut rows: Vec<(Vec<Value>, Source)> = self.sources.into_values().collect();
        rows.sort_by(|(_, a), (_, b)| {
            b.conversions
                .cmp(&a.conversions)
                .then(b.clicks.cmp(&a.clicks))
        });
        let skip = usize::try_from((page - 1).saturating_mul(count)).unwrap_or(usize::MAX);
        let take = usize::try_from(count).unwrap_or(usize::MAX);
        rows.into_iter()
            .skip(skip)
            .take(take)
            .map(|(key, mut s)| {
                let mut row = Map::new();
                for (g, v) in groups.iter().zip(key) {
                    row.insert((*g).to_owned(), v);
                }
                let rate = |n: u64, d: u64| {
                    if d == 0 {
                        Value::Null
                    } else {
                        json!((10_000.0 * n as f64 / d as f64).round() / 100.0)
                    }
                };
                row.insert("impressions".into(), json!(s.impressions));
                row.insert("clicks".into(), json!(s.clicks));
                row.insert("conversions".into(), json!(s.conversions));
                row.insert("cr".into(), rate(s.conversions, s.clicks));
                row.insert("goals".into(), json!(s.goals));
                let judged = s.conversions + s.goals;
                row.insert("approved".into(), json!(judged - s.rejected));
                row.insert("rejected".into(), json!(s.rejected));
                row.insert("rejection_rate".into(), rate(s.rejected, judged));
                row.insert("ctit".into(), ctit(&mut s.ctits));
                row.insert("rejections".into(), json!(s.rejections));
                let money = |f: fn(&(f64, f64)) -> f64| -> Map<String, Value> {
                    s.payout
                        .iter()
                        .map(|(c, p)| {
                            let c = if c.is_empty() { "unknown" } else { c.as_str() };
                            (c.to_owned(), json!((f(p) * 100.0).round() / 100.0))
                        })
                        .collect()
                };
                row.insert("payout_approved".into(), Value::Object(money(|p| p.0)));
                row.insert("payout_at_risk".into(), Value::Object(money(|p| p.1)));
                Value::Object(row)
            })
            .collect()
    }
}

/// The distribution of click-to-install times (seconds).
fn ctit(values: &mut [i64]) -> Value {
    if values.is_empty() {
        return json!({"n": 0, "median_s": null, "under_10s": null, "over_24h": null, "buckets": {}});
    }
    values.sort_unstable();
    let n = values.len();
    let median = if n % 2 == 1 {
        values[n / 2] as f64
    } else {
        (values[n / 2 - 1] as f64 + values[n / 2] as f64) / 2.0
    };
    let share = |k: usize| (10_000.0 * k as f64 / n as f64).round() / 100.0;
    let under = values.iter().filter(|v| (0..10).contains(*v)).count();
    let over = values.iter().filter(|v| **v >= 86_400).count();
    let mut buckets = Map::new();
    let mut lower = i64::MIN;
    for (upper, name) in BUCKETS {
        let k = values
            .iter()
            .filter(|v| **v >= lower && **v < upper)
            .count();
        buckets.insert(name.into(), json!(k));
        lower = upper;
    }
    json!({
        "n": n,
        "median_s": median,
        "under_10s": share(under),
        "over_24h": share(over),
        "buckets": buckets,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctit_is_summed_into_buckets_a_median_and_shares() {
        let mut v = vec![3, 5, 700, 90_000];
        let got = ctit(&mut v);
        assert_eq!(got["n"], 4);
        assert_eq!(got["median_s"], 352.5);
        assert_eq!(got["under_10s"], 50.0);
        assert_eq!(got["over_24h"], 25.0);
        assert_eq!(got["buckets"]["<10s"], 2);
        assert_eq!(got["buckets"]["10m-1h"], 1);
        assert_eq!(got["buckets"][">=24h"], 1);
        assert_eq!(ctit(&mut [])["median_s"], Value::Null);
    }

    #[test]
    fn parameters_are_checked_and_default_to_affiliate_and_sub() {
        let p = parse("date_start=2026-12-01&date_end=2026-12-06&timezone=Europe/Berlin").unwrap();
        let names: Vec<&str> = p.groups.iter().map(|f| f.name).collect();
        assert_eq!(names, ["affiliate_id", "aff_sub1"]);
        assert_eq!(
            parse("group[0]=offer_id").unwrap().groups[0].name,
            "offer_id"
        );
        assert_eq!(parse("sort=x").unwrap_err().field, "sort");
        assert_eq!(parse("group[]=ua").unwrap_err().field, "group");
    }
}
