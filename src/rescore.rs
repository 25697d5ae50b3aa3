//! `fraudgate rescore`: past decisions against today's lists, ranges and
//! crawler patterns (feeds' lists included), and what would change,
//! without rewriting history. Conversions approved at the time whose click
//! (or own IP) would be blocked today are the clawback: what to claw back
//! from whom.
//!
//! Only the rules that look at the event alone run again (lists, ranges,
//! crawler UAs); RT's tags are those recorded, under today's policy. An
//! IP kept hashed (`decision_log.ip = "hashed"`) cannot be matched again:
//! such rows are skipped and counted.

use std::collections::BTreeMap;
use std::sync::Arc;

use jiff::tz::TimeZone;
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::config::Config;
use crate::decision::{Action, Reason, RuleHit};
use crate::event::{Event, EventBuilder};
use crate::policy::Policy;
use crate::query::exec::{QueryFailure, Reader, Stop};
use crate::query::filter::{cmp, one_of};
use crate::query::{Events, Expr, Op, Query, Scalar, Shape, field};
use crate::rules::LocalRules;

/// What a past decision is read with.
const FIELDS: [&str; 17] = [
    "id",
    "ts",
    "event_type",
    "ip",
    "ua",
    "affiliate_id",
    "offer_id",
    "aff_sub1",
    "aff_sub2",
    "aff_sub3",
    "aff_sub4",
    "aff_sub5",
    "country_code",
    "extra",
    "tags",
    "would_be",
    "reason",
];

/// A conversion's fields besides.
const CONVERSION_FIELDS: [&str; 4] = ["click_id", "goal", "payout", "currency"];

/// Today's rules and policy.
pub struct Rescorer {
    rules: Arc<LocalRules>,
    policy: Policy,
    /// Holds the feeds' lists in `rules` (None: a running gate's rules,
    /// whose feeds keep them).
    _feeds: Option<crate::feeds::Feeds>,
    /// Whether the log keeps IPs whole (`decision_log.ip = "full"`): a
    /// truncated or hashed IP cannot be matched against lists again.
    ip_kept: bool,
}

/// A decision that would go the other way today.
#[derive(Debug, Serialize)]
pub struct Change {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub id: String,
    pub event_type: String,
    pub affiliate_id: String,
    pub aff_sub1: Option<String>,
    pub offer_id: String,
    pub ip: String,
    pub was: &'static str,
    pub now: &'static str,
    pub tags_now: Vec<String>,
    pub rules_now: Vec<RuleHit>,
}

/// A conversion approved then that would not be today.
#[derive(Debug, Serialize)]
pub struct Clawback {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub conversion_id: String,
    pub click_id: Option<String>,
    pub event: String,
    pub affiliate_id: String,
    pub aff_sub1: Option<String>,
    pub offer_id: String,
    pub payout: Option<f64>,
    pub currency: Option<String>,
    /// Why: the click's or the conversion's own change.
    pub because: Change,
}

/// What a run read and found.
#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub decisions: u64,
    /// Not judged again: the IP is not kept.
    pub skipped: u64,
    pub to_block: u64,
    pub to_allow: u64,
    pub conversions_approved: u64,
    pub clawbacks: u64,
    /// (affiliate_id, currency) -> (conversions, payout).
    pub clawback_by_affiliate: BTreeMap<String, BTreeMap<String, (u64, f64)>>,
}

/// A run's failure.
#[derive(Debug, thiserror::Error)]
pub enum RescoreError {
    #[error("{0}")]
    Setup(String),
    #[error("the decision log could not answer: {0}")]
    Failure(QueryFailure),
    #[error("writing the output: {0}")]
    Write(#[from] std::io::Error),
}

impl From<QueryFailure> for RescoreError {
    fn from(f: QueryFailure) -> Self {
        RescoreError::Failure(f)
    }
}

impl Rescorer {
    pub fn new(config: &Config) -> Result<Self, RescoreError> {
        let setup = |e: String| RescoreError::Setup(e);
        let rules = Arc::new(crate::score::rules_of(config).map_err(|e| setup(e.to_string()))?);
        let feeds = crate::feeds::Feeds::new(&config.feeds, Some(rules.clone()), None)
            .map_err(|e| setup(e.to_string()))?;
        Ok(Rescorer {
            rules,
            policy: Policy::from_config(&config.policy).map_err(|e| setup(e.to_string()))?,
            _feeds: Some(feeds),
            ip_kept: config.decision_log.ip == crate::decision_log::IpMode::Full,
        })
    }

    /// Over a running gate's rules (feeds' lists and admin entries as
    /// they are now) and policy.
    pub fn over(rules: Arc<LocalRules>, policy: Policy, ip: crate::decision_log::IpMode) -> Self {
        Rescorer {
            ip_kept: ip == crate::decision_log::IpMode::Full,
            rules,
            policy,
            _feeds: None,
        }
    }

    /// Today's ruling on a past decision: None when it cannot be judged
    /// again (its IP is not kept) or it stands.
    fn judge(&self, row: &Map<String, Value>) -> Result<Option<Change>, ()> {
        let text = |n: &str| match row.get(n) {
            Some(Value::String(s)) => s.as_str(),
            _ => "",
        };
        if !self.ip_kept {
            return Err(());
        }
        let event = event_of(row).ok_or(())?;
        let was = if text("would_be") == "block" {
            Action::Block
        } else {
            Action::Allow
        };
        let local = self.rules.judge_again(&event);
        let recorded = crate::decision_log::columns::read_tags(text("tags"));
        let tags = recorded.merge(&local.tags);
        let now = if local.allowed.is_some()
            || local
                .verified_bot
                .as_deref()
                .is_some_and(|b| self.policy.allows_verified_bot(b))
        {
            Action::Allow
        } else {
            let ruling = self.policy.decide(Ok(&tags), &event);
            // A block of its time that was no ruling on tags (the
            // upstream failed, closed) stands unless today's tags block.
            if ruling.action == Action::Allow && text("reason") != Reason::Tags.as_str() {
                was
            } else {
                ruling.action
            }
        };
        if now == was {
            return Ok(None);
        }
        let mut rules_now = local.hits;
        rules_now.extend(local.allowed);
        Ok(Some(Change {
            kind: "change",
            id: text("id").to_owned(),
            event_type: text("event_type").to_owned(),
            affiliate_id: text("affiliate_id").to_owned(),
            aff_sub1: Some(text("aff_sub1").to_owned()).filter(|s| !s.is_empty()),
            offer_id: text("offer_id").to_owned(),
            ip: text("ip").to_owned(),
            was: was.as_str(),
            now: now.as_str(),
            tags_now: tags.iter().map(str::to_owned).collect(),
            rules_now,
        }))
    }

    /// Judges every decision of `[from_ms, to_ms)` again, writing each
    /// change and each clawback as a JSON line to `out`.
    pub fn run(
        &self,
        reader: &Reader,
        (from_ms, to_ms): (i64, i64),
        out: &mut dyn std::io::Write,
    ) -> Result<Summary, RescoreError> {
        let mut sum = Summary::default();
        let mut failed: Option<std::io::Error> = None;
        // A run over days of decisions: a day's limit, not a query's.
        let (stop, _asker) = Stop::new(std::time::Duration::from_secs(86_400));
        let mut each = |row: Map<String, Value>, sum: &mut Summary| -> bool {
            sum.decisions += 1;
            let change = match self.judge(&row) {
                Err(()) => {
                    sum.skipped += 1;
                    return true;
                }
                Ok(c) => c,
            };
            if let Some(c) = &change {
                if c.now == "block" {
                    sum.to_block += 1;
                } else {
                    sum.to_allow += 1;
                }
                if let Err(e) = writeln!(out, "{}", json!(c)) {
                    failed = Some(e);
                    return false;
                }
            }
            true
        };
        reader.run(
            &range(Events::All, &FIELDS, from_ms, to_ms),
            &stop,
            &mut |n, v| each(zip(n, v), &mut sum),
        )?;
        if let Some(e) = failed.take() {
            return Err(e.into());
        }
        let mut failed = None;
        self.clawbacks(
            reader,
            &stop,
            (from_ms, to_ms),
            &mut sum,
            &mut |c| match writeln!(out, "{}", json!(c)) {
                Ok(()) => true,
                Err(e) => {
                    failed = Some(e);
                    false
                }
            },
        )?;
        match failed {
            Some(e) => Err(e.into()),
            None => Ok(sum),
        }
    }

    /// The approved conversions of `[from_ms, to_ms)` whose click (read
    /// by its id) or own IP would be blocked today, each handed to `each`
    /// (which may stop the read) and summed into `sum`.
    pub fn clawbacks(
        &self,
        reader: &Reader,
        stop: &Stop,
        (from_ms, to_ms): (i64, i64),
        sum: &mut Summary,
        each: &mut dyn FnMut(Clawback) -> bool,
    ) -> Result<(), RescoreError> {
        let mut fields: Vec<&str> = FIELDS.to_vec();
        fields.extend(CONVERSION_FIELDS);
        let mut conversions = range(Events::All, &fields, from_ms, to_ms);
        conversions.filter = Some(Expr::And(vec![
            conversions.filter.take().unwrap_or(Expr::And(Vec::new())),
            one_of("event_type", &["install", "custom"]),
            cmp("would_be", Op::Eq, Scalar::Text("allow".into())),
        ]));
        let mut failed = None;
        reader.run(&conversions, stop, &mut |n, v| {
            let row = zip(n, v);
            sum.conversions_approved += 1;
            match self.clawback(reader, stop, &row) {
                Ok(Some(c)) => {
                    let by = sum
                        .clawback_by_affiliate
                        .entry(c.affiliate_id.clone())
                        .or_default()
                        .entry(c.currency.clone().unwrap_or_else(|| "unknown".into()))
                        .or_default();
                    by.0 += 1;
                    by.1 += c.payout.unwrap_or(0.0);
                    sum.clawbacks += 1;
                    each(c)
                }
                Ok(None) => true,
                Err(e) => {
                    failed = Some(e);
                    false
                }
            }
        })?;
        match failed {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// A conversion to claw back: its click, read by its id, or its own
    /// IP and UA would be blocked today.
    fn clawback(
        &self,
        reader: &Reader,
        stop: &Stop,
        conv: &Map<String, Value>,
    ) -> Result<Option<Clawback>, RescoreError> {
        let text = |n: &str| conv.get(n).and_then(Value::as_str).unwrap_or("").to_owned();
        let opt = |n: &str| Some(text(n)).filter(|s| !s.is_empty());
        let click = match crate::funnel::click::by_id(&text("click_id"), &FIELDS) {
            Some(q) => reader.collect(&q, stop)?.into_iter().next(),
            None => None,
        };
        // The click's change to a block, else the conversion's own.
        let to_block = |row: &Map<String, Value>| {
            self.judge(row)
                .ok()
                .flatten()
                .filter(|c| c.now == Action::Block.as_str())
        };
        let because = click.as_ref().and_then(to_block).or_else(|| to_block(conv));
        Ok(because.map(|because| Clawback {
            kind: "clawback",
            conversion_id: text("id"),
            click_id: opt("click_id"),
            event: opt("goal").unwrap_or_else(|| "install".into()),
            affiliate_id: text("affiliate_id"),
            aff_sub1: opt("aff_sub1"),
            offer_id: text("offer_id"),
            payout: text("payout").parse().ok(),
            currency: opt("currency"),
            because,
        }))
    }
}

fn zip(names: &[String], values: Vec<Value>) -> Map<String, Value> {
    names.iter().cloned().zip(values).collect()
}

/// Every decision of `[from_ms, to_ms)` with `fields`, in time order.
fn range(events: Events, fields: &[&str], from_ms: i64, to_ms: i64) -> Query {
    Query {
        events,
        shape: Shape::List(fields.iter().filter_map(|n| field(n)).collect()),
        filter: Some(Expr::And(vec![
            cmp("ts", Op::Ge, Scalar::Int(from_ms)),
            cmp("ts", Op::Lt, Scalar::Int(to_ms)),
        ])),
        sort: vec![("ts".into(), false)],
        page: 1,
        page_size: crate::query::MAX_PAGE_SIZE * 1000,
        tz: TimeZone::UTC,
    }
}

/// The event a decision was on, as far as the log keeps it (None: its IP
/// is not kept, so the rules cannot look at it again).
fn event_of(row: &Map<String, Value>) -> Option<Event> {
    let text = |n: &str| row.get(n).and_then(Value::as_str).unwrap_or("");
    text("ip").parse::<std::net::IpAddr>().ok()?;
    let mut b = EventBuilder::new();
    let event_type = match text("event_type") {
        "impression" => "impression",
        _ => "click",
    };
    for (k, v) in [
        ("event_type", event_type),
        ("ip", text("ip")),
        ("ua", text("ua")),
        ("affiliate_id", text("affiliate_id")),
        ("offer_id", text("offer_id")),
    ] {
        b.set(k, v).ok()?;
    }
    for k in [
        "aff_sub1",
        "aff_sub2",
        "aff_sub3",
        "aff_sub4",
        "aff_sub5",
        "country_code",
    ] {
        let _ = b.set(k, text(k));
    }
    if let Some(Ok(Value::Object(extra))) = row
        .get("extra")
        .and_then(Value::as_str)
        .map(serde_json::from_str::<Value>)
    {
        for (k, v) in extra {
            if let Some(v) = v.as_str() {
                // (Conversion fields are no RT parameters: left out.)
                let _ = b.set(&k, v);
            }
        }
    }
    b.build().ok()
}
