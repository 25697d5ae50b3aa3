//! Fraudshield's filters, `search_fields[]={"term":..,"query":..}`: the
//! terms each report documents, each narrowing the rows (a field equals
//! the query), the goals (their name), the conversion groups (their
//! count or rejection rate), or the merged rows (their goal rate).

use serde_json::Value;

use super::params::Report;
use super::terms;
use super::trackers::Trackers;
use crate::query::report::{cmp, search_query};
use crate::query::{Expr, Op, QueryError, Scalar};

/// What one search term narrows.
#[derive(Debug, Clone, PartialEq)]
pub enum Search {
    /// The rows every query of the report reads.
    Rows(Expr),
    /// The goals counted (by their name: conversions and clicks have
    /// none).
    Goals(Expr),
    /// The conversion groups (a `having` on their count or block rate).
    Groups(Expr),
    /// The goal rate (goals per 100 conversions) of the merged rows:
    /// at least (`true`) or at most this.
    GoalRate(bool, f64),
}

/// The conversion report's terms (reference 001, "here is the list of
/// the availible filters").
const CONVERSION_TERMS: &[&str] = &[
    "http_click_referer",
    "country_code",
    "remote_address",
    "product",
    "affiliate",
    "partner",
    "sub_id",
    "status",
    "rejected_reason.simple_reason",
    "rejected_reason.advanced_reason",
    "min_score",
    "max_score",
];

/// The fraud and goal reports' own terms; their data sources besides.
const FRAUD_TERMS: &[&str] = &[
    "min_conversions",
    "min_rejection_rate",
    "max_rejection_rate",
    "min_goals_reached",
    "max_goals_reached",
];

fn bad(message: String) -> QueryError {
    QueryError::new("search_fields", message)
}

/// One `search_fields[]` value of `report`, whose data sources are
/// `groups`: a data source's term filters only when it is among them,
/// as the docs say ("add data sources in order to filter by them").
pub fn parse(
    v: &str,
    report: Report,
    groups: &[&str],
    trackers: &Trackers<'_>,
) -> Result<Search, QueryError> {
    let sf: Value = serde_json::from_str(v)
        .map_err(|e| bad(format!("bad JSON at position {}: {e}", e.column())))?;
    let term = sf["term"]
        .as_str()
        .ok_or_else(|| bad("each is {\"term\": <name>, \"query\": <value>}".into()))?;
    let query = search_query(term, &sf["query"])?;
    let own: &[&str] = match report {
        Report::Conversion | Report::Scroll => CONVERSION_TERMS,
        Report::Fraud | Report::Goal => FRAUD_TERMS,
        Report::Global | Report::Interval => &["tracker_id"],
    };
    if !own.contains(&term) && !groups.contains(&term) {
        let sources = report.sources();
        let hint = if sources.contains(&term) {
            format!("{term} filters once it is a data source: add group[]={term}")
        } else {
            let mut known = own.to_vec();
            for s in sources {
                if !known.contains(s) {
                    known.push(s);
                }
            }
            format!("use {}", known.join(", "))
        };
        return Err(bad(format!(
            "unknown term {term:?} for this report: {hint}"
        )));
    }
    let number = || number(term, &query);
    Ok(match term {
        "min_conversions" => Search::Groups(cmp("count", Op::Ge, Scalar::Real(number()?))),
        "min_rejection_rate" => Search::Groups(cmp("block_rate", Op::Ge, Scalar::Real(number()?))),
        "max_rejection_rate" => Search::Groups(cmp("block_rate", Op::Le, Scalar::Real(number()?))),
        "min_goals_reached" => Search::GoalRate(true, number()?),
        "max_goals_reached" => Search::GoalRate(false, number()?),
        // fraudgate keeps no score: no row has one.
        "min_score" | "max_score" => {
            number()?;
            Search::Rows(terms::filter("score", &query, trackers)?)
        }
        "goal" => Search::Goals(terms::filter(term, &query, trackers)?),
        _ => Search::Rows(terms::filter(term, &query, trackers)?),
    })
}

/// A term's numeric query: a JSON number or a numeric string (the SDK's
/// `json_encode` keeps whichever PHP type the caller used).
fn number(term: &str, query: &Scalar) -> Result<f64, QueryError> {
    let n = match query {
        Scalar::Int(i) => *i as f64,
        Scalar::Real(r) => *r,
        Scalar::Text(t) => t.trim().parse().unwrap_or(f64::NAN),
    };
    if n.is_finite() {
        Ok(n)
    } else {
        Err(bad(format!("{term}: query is a number")))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn search(v: &str, report: Report, groups: &[&str]) -> Result<Search, QueryError> {
        let map = BTreeMap::from([("adserver-eu".to_owned(), 81)]);
        parse(v, report, groups, &Trackers::new(&map))
    }

    #[test]
    fn the_docs_terms_narrow_rows_groups_or_the_goal_rate() {
        assert_eq!(
            search(
                r#"{"term":"min_conversions","query":50}"#,
                Report::Fraud,
                &[]
            )
            .unwrap(),
            Search::Groups(cmp("count", Op::Ge, Scalar::Real(50.0)))
        );
        assert_eq!(
            search(
                r#"{"term":"max_rejection_rate","query":"30"}"#,
                Report::Goal,
                &[]
            )
            .unwrap(),
            Search::Groups(cmp("block_rate", Op::Le, Scalar::Real(30.0)))
        );
        assert_eq!(
            search(
                r#"{"term":"min_goals_reached","query":10}"#,
                Report::Fraud,
                &[]
            )
            .unwrap(),
            Search::GoalRate(true, 10.0)
        );
        assert_eq!(
            search(
                r#"{"term":"country_code","query":"FR"}"#,
                Report::Conversion,
                &[]
            )
            .unwrap(),
            Search::Rows(cmp("country_code", Op::Eq, Scalar::Text("FR".into())))
        );
        assert_eq!(
            search(
                r#"{"term":"status","query":"rejected"}"#,
                Report::Scroll,
                &[]
            )
            .unwrap(),
            Search::Rows(cmp("would_be", Op::Eq, Scalar::Text("block".into())))
        );
        assert_eq!(
            search(
                r#"{"term":"tracker_id","query":81}"#,
                Report::Global,
                &["tracker_id"]
            )
            .unwrap(),
            Search::Rows(cmp("client", Op::Eq, Scalar::Text("adserver-eu".into())))
        );
        assert_eq!(
            search(
                r#"{"term":"sub_id","query":500}"#,
                Report::Fraud,
                &["sub_id"]
            )
            .unwrap(),
            Search::Rows(cmp("aff_sub1", Op::Eq, Scalar::Text("500".into())))
        );
        assert_eq!(
            search(
                r#"{"term":"goal","query":"purchase"}"#,
                Report::Goal,
                &["goal"]
            )
            .unwrap(),
            Search::Goals(cmp("goal", Op::Eq, Scalar::Text("purchase".into())))
        );
    }

    #[test]
    fn a_term_the_report_does_not_document_is_named() {
        for (v, report, groups) in [
            (r#"{"term":"min_events","query":1}"#, Report::Fraud, &[][..]),
            (r#"{"term":"sub_id","query":1}"#, Report::Fraud, &[][..]),
            (
                r#"{"term":"min_conversions","query":1}"#,
                Report::Conversion,
                &[][..],
            ),
            (
                r#"{"term":"min_conversions","query":"many"}"#,
                Report::Fraud,
                &[][..],
            ),
            (
                r#"{"term":"status","query":"maybe"}"#,
                Report::Conversion,
                &[][..],
            ),
            (
                r#"{"term":"tracker_id","query":82}"#,
                Report::Interval,
                &["tracker_id"][..],
            ),
            (
                r#"{"term":"rejected_reason.advanced_reason","query":"x"}"#,
                Report::Conversion,
                &[][..],
            ),
            (r#"{"query":1}"#, Report::Fraud, &[][..]),
            ("{", Report::Fraud, &[][..]),
        ] {
            let e = search(v, report, groups).unwrap_err();
            assert_eq!(e.field, "search_fields", "{v}: {e}");
        }
        let e = search(r#"{"term":"sub_id","query":1}"#, Report::Fraud, &[]).unwrap_err();
        assert!(e.message.contains("group[]=sub_id"), "{e}");
    }
}
