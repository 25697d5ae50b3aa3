//! The shadow report (`GET /v1/reports/shadow`): for each rule kind in
//! shadow mode (`policy.shadow_rules`), the decisions it fired on that the
//! policy would have blocked had it decided, per group (affiliate by
//! default): events by type and the payout of the conversions among them.
//! What switching the rule on would cost and save, before doing it.

use std::collections::BTreeMap;

use jiff::tz::TimeZone;
use serde_json::{Map, Value, json};

use super::filter::cmp;
use super::range::{self, Takes};
use super::{Events, Expr, Field, Op, Query, QueryError, Scalar, Shape, field};
use crate::decision::RuleKind;
use crate::verdict::{Tag, Tags};

#[derive(Debug, Clone)]
pub struct Params {
    groups: Vec<&'static Field>,
    filters: Vec<Expr>,
    tz: TimeZone,
    pub count: usize,
}

/// `date_start`, `date_end`, `timezone`, `group[]` (up to 3; default
/// `affiliate_id`), `count` (rows, 100).
pub fn parse(raw: &str) -> Result<Params, QueryError> {
    let r = range::parse(
        raw,
        &Takes {
            groups: Some(&["affiliate_id"]),
            page: false,
        },
    )?;
    Ok(Params {
        filters: r.filters()?,
        groups: r.groups,
        tz: r.tz,
        count: usize::try_from(r.count).unwrap_or(usize::MAX),
    })
}

impl Params {
    /// The decisions of the range where `kind` fired and the policy
    /// allowed.
    pub fn query(&self, kind: RuleKind) -> Query {
        let mut fields = self.groups.clone();
        fields.extend(
            [
                "event_type",
                "offer_id",
                "affiliate_id",
                "tags",
                "rules",
                "payout",
                "currency",
            ]
            .iter()
            .filter_map(|n| field(n)),
        );
        let mut filter = self.filters.clone();
        filter.push(cmp("rule", Op::Eq, Scalar::Text(kind.as_str().into())));
        filter.push(cmp("would_be", Op::Eq, Scalar::Text("allow".into())));
        Query {
            events: Events::All,
            shape: Shape::List(fields),
            filter: Some(Expr::And(filter)),
            sort: Vec::new(),
            page: 1,
            page_size: super::MAX_PAGE_SIZE,
            tz: self.tz.clone(),
        }
    }
}

#[derive(Default)]
struct Impact {
    events: BTreeMap<String, u64>,
    payout: BTreeMap<String, f64>,
}

/// A row's rule and its group values as JSON text.
type RowKey = (&'static str, String);

/// The report, a rule kind at a time.
pub struct Report {
    groups: Vec<&'static str>,
    /// (rule, group values as JSON text) -> (group values, sums).
    rows: BTreeMap<RowKey, (Vec<Value>, Impact)>,
}

impl Report {
    pub fn new(p: &Params) -> Self {
        Report {
            groups: p.groups.iter().map(|f| f.name).collect(),
            rows: BTreeMap::new(),
        }
    }

    /// A row of [`Params::query`] for `kind`: counted when `blocks` says
    /// the policy blocks its tags with the rule's own.
    pub fn add(
        &mut self,
        kind: RuleKind,
        names: &[String],
        values: Vec<Value>,
        blocks: &dyn Fn(&Tags, &str, &str) -> bool,
    ) {
        let get = |n: &str| {
            names
                .iter()
                .position(|x| x == n)
                .and_then(|i| values.get(i))
        };
        let text = |n: &str| get(n).and_then(Value::as_str).unwrap_or("").to_owned();
        let tag = get("rules").and_then(Value::as_array).and_then(|hits| {
            hits.iter()
                .find(|h| h["kind"] == kind.as_str())
                .and_then(|h| h["tag"].as_str())
                .and_then(|t| Tag::ALL.into_iter().find(|x| x.as_str() == t))
        });
        let recorded = crate::decision_log::columns::read_tags(&text("tags"));
        let tags = match tag {
            Some(t) => recorded.merge(&Tags::from_mask(t.bit())),
            None => recorded,
        };
        if !blocks(&tags, &text("offer_id"), &text("affiliate_id")) {
            return;
        }
        let key: Vec<Value> = self
            .groups
            .iter()
            .map(|g| get(g).cloned().unwrap_or(Value::Null))
            .collect();
        let text_key = Value::Array(key.clone()).to_string();
        let (_, impact) = self
            .rows
            .entry((kind.as_str(), text_key))
            .or_insert_with(|| (key, Impact::default()));
        *impact.events.entry(text("event_type")).or_default() += 1;
        if let Ok(p) = text("payout").parse::<f64>() {
            let currency = Some(text("currency")).filter(|c| !c.is_empty());
            *impact
                .payout
                .entry(currency.unwrap_or_else(|| "unknown".into()))
                .or_default() += p;
        }
    }

    /// Most events first, at most `count` rows.
    pub fn finish(self, count: usize) -> Vec<Value> {
        let groups = self.groups;
        let total = |i: &Impact| i.events.values().sum::<u64>();
        let mut rows: Vec<_> = self.rows.into_iter().collect();
        rows.sort_by_key(|(_, (_, impact))| std::cmp::Reverse(total(impact)));
        rows.into_iter()
            .take(count)
            .map(|((rule, _), (key, impact))| {
                let mut row = Map::new();
                row.insert("rule".into(), json!(rule));
                for (g, v) in groups.iter().zip(key) {
                    row.insert((*g).to_owned(), v);
                }
                row.insert("events".into(), json!(total(&impact)));
                row.insert("by_event_type".into(), json!(impact.events));
                let payout: Map<String, Value> = impact
                    .payout
                    .into_iter()
                    .map(|(c, p)| (c, json!((p * 100.0).round() / 100.0)))
                    .collect();
                row.insert("payout".into(), Value::Object(payout));
                Value::Object(row)
            })
            .collect()
    }
}
