//! Why a decision was rejected, at Fraudshield's two levels: a category
//! (`simple_reason`, also the key of the fraud report's `reasons`) and
//! its detail (`advanced_reason`). A rule that fired gives both: its
//! kind's category (`ctit_short`: "Click injection") and the rule's own
//! reason ("3 s from click to install, under 10 s"). A decision no rule
//! judged (RT's tags, a fallback) keeps fraudgate's `reason` (`tags`,
//! `upstream_timeout`) as the category and its tags as the detail.

use serde_json::{Map, Value};

use super::{Row, count};
use crate::decision::RuleKind;
use crate::query::report::cmp;
use crate::query::{Agg, Expr, Op, Scalar};
use crate::verdict::Tag;

/// Fraudshield's category of a rule kind: what a rejection report
/// groups by, as its "GEO Mismatch" or "IP Pattern".
pub const fn category(kind: RuleKind) -> &'static str {
    match kind {
        RuleKind::AllowList => "Allow list",
        RuleKind::BlockList => "Block list",
        RuleKind::CrawlerUa => "Crawler",
        RuleKind::Datacenter => "Datacenter",
        RuleKind::Cap => "Cap",
        RuleKind::Velocity => "Velocity",
        RuleKind::Prefetch => "Prefetch",
        RuleKind::Proxy => "Proxy",
        RuleKind::VerifiedBot => "Verified bot",
        RuleKind::CtitShort => "Click injection",
        RuleKind::CtitLong => "Click flooding",
        RuleKind::ClickBlocked => "Blocked click",
        RuleKind::Orphan => "Unattributed conversion",
        RuleKind::Duplicate => "Duplicate conversion",
        RuleKind::Mismatch => "Click mismatch",
        RuleKind::ImpToClick => "No impression",
    }
}

/// The kinds that reject: all but the allow list.
fn rejecting() -> impl Iterator<Item = RuleKind> {
    RuleKind::ALL
        .into_iter()
        .filter(|k| *k != RuleKind::AllowList)
}

/// The kind a category (any case) or a kind's own name names.
fn kind_named(text: &str) -> Option<RuleKind> {
    let text = text.trim();
    rejecting().find(|k| k.as_str() == text || category(*k).eq_ignore_ascii_case(text))
}

/// One reason: its category and its detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason {
    pub simple: String,
    pub advanced: String,
}

/// The rules that fired on a row (the allow list aside), in its order:
/// each its kind's category and its reason (else its name).
pub fn fired(row: &Row) -> Vec<Reason> {
    row.get("rules")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|r| {
            let kind =
                rejecting().find(|k| r.get("kind").and_then(Value::as_str) == Some(k.as_str()))?;
            let text = |k: &str| r.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
            let advanced = text("reason").or(text("name")).unwrap_or(kind.as_str());
            Some(Reason {
                simple: category(kind).to_owned(),
                advanced: advanced.to_owned(),
            })
        })
        .collect()
}

/// The row's reason: the first rule's that fired; without one,
/// fraudgate's `reason` and the tags (comma separated; the reason
/// again when there are none).
pub fn first(row: &Row) -> Reason {
    if let Some(r) = fired(row).into_iter().next() {
        return r;
    }
    let text = |k: &str| row.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    let (reason, tags) = (text("reason"), text("tags"));
    Reason {
        advanced: if tags.is_empty() {
            reason.clone()
        } else {
            tags
        },
        simple: reason,
    }
}

fn rejected() -> Expr {
    cmp("would_be", Op::Eq, Scalar::Text("block".into()))
}

/// The rows no rule judged (the allow list aside).
pub fn unruled() -> Expr {
    Expr::And(
        rejecting()
            .map(|k| cmp("rule", Op::Ne, Scalar::Text(k.as_str().into())))
            .collect(),
    )
}

/// The rejected rows of a `simple_reason`: a category (or a rule kind's
/// name) where that rule fired; else fraudgate's `reason` of the rows
/// no rule judged.
pub fn simple_filter(text: &str) -> Expr {
    let which = match kind_named(text) {
        Some(k) => cmp("rule", Op::Eq, Scalar::Text(k.as_str().into())),
        None => Expr::And(vec![
            cmp("reason", Op::Eq, Scalar::Text(text.into())),
            unruled(),
        ]),
    };
    Expr::And(vec![rejected(), which])
}

/// The rejected rows of an `advanced_reason`: one rule kind (or its
/// category) or tag they have (a rule's reason is free text: no filter
/// matches it); `None` when `text` is neither.
pub fn advanced_filter(text: &str) -> Option<Expr> {
    let tag = Tag::from_config_name(text).map(|t| t.config_name());
    let rule = kind_named(text);
    let mut any = Vec::new();
    any.extend(tag.map(|t| cmp("tag", Op::Eq, Scalar::Text(t.into()))));
    any.extend(rule.map(|k| cmp("rule", Op::Eq, Scalar::Text(k.as_str().into()))));
    (!any.is_empty()).then(|| Expr::And(vec![rejected(), Expr::Or(any)]))
}

/// The aggregates [`histogram`] reads: per rule kind, the rejected rows
/// where it fired.
pub fn aggs() -> Vec<Agg> {
    rejecting().map(Agg::BlockedByRule).collect()
}

/// The fraud report's `reasons` of a group: per category, its rejected
/// conversions where that rule fired (a conversion two rules rejected
/// counts under both); zeros left out.
pub fn histogram(row: &Row) -> Map<String, Value> {
    rejecting()
        .filter_map(|k| {
            let n = count(row, &Agg::BlockedByRule(k).name());
            (n > 0).then(|| (category(k).to_owned(), n.into()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn row(v: Value) -> Row {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn a_rule_names_its_category_and_its_reason_first() {
        let r = row(json!({
            "reason": "tags",
            "tags": "attribution",
            "rules": [
                {"kind": "allow_list", "name": "partners"},
                {"kind": "click_blocked", "name": "click_blocked", "reason": "its click was blocked (tags)"},
                {"kind": "mismatch", "name": "mismatch", "reason": "country DE at the click, US at the conversion"},
            ],
        }));
        let fired = fired(&r);
        assert_eq!(fired.len(), 2);
        assert_eq!(
            (fired[1].simple.as_str(), fired[1].advanced.as_str()),
            (
                "Click mismatch",
                "country DE at the click, US at the conversion"
            )
        );
        assert_eq!(first(&r), fired[0].clone());
        assert_eq!(first(&r).simple, "Blocked click");
    }

    #[test]
    fn without_a_rule_the_reason_and_the_tags_answer() {
        let r = row(json!({"reason": "tags", "tags": "proxy,device", "rules": []}));
        assert_eq!(
            first(&r),
            Reason {
                simple: "tags".into(),
                advanced: "proxy,device".into()
            }
        );
        let r = row(json!({"reason": "upstream_timeout", "tags": ""}));
        assert_eq!(first(&r).advanced, "upstream_timeout");
    }

    #[test]
    fn every_rejecting_category_is_its_own_and_names_its_kind() {
        let mut seen: Vec<&str> = rejecting().map(category).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), rejecting().count());
        assert_eq!(kind_named("click injection"), Some(RuleKind::CtitShort));
        assert_eq!(kind_named("ctit_short"), Some(RuleKind::CtitShort));
        assert_eq!(kind_named("Allow list"), None);
        assert!(advanced_filter("geo").is_none());
    }

    #[test]
    fn the_histogram_counts_each_rule_under_its_category() {
        let r = row(
            json!({"blocked_by_rule_ctit_short": 2, "blocked_by_rule_mismatch": 1, "blocked_by_rule_orphan": 0}),
        );
        assert_eq!(
            Value::Object(histogram(&r)),
            json!({"Click injection": 2, "Click mismatch": 1})
        );
    }
}
