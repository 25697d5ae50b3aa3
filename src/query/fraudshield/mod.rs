//! 24metrics Fraudshield's reports (reference 001) as a mapping onto the
//! one query model: each request becomes a few [`Query`] values (the
//! conversions, the clicks, the goals of the same rows), run by the same
//! reader as every other query, and their rows are reshaped into
//! Fraudshield's answers. A conversion is an install and a goal a
//! `custom` event (a goal's name), both as trackers post them back to
//! `/v1/postback`; a click is a click. What each Fraudshield name reads
//! is one table, [`terms::TERMS`]; what a conversion is, one constant,
//! [`terms::CONVERSION_EVENT_TYPES`].
//!
//! - [`params`]: the request, checked; [`search`]: `search_fields[]`;
//!   [`trackers`]: `tracker_id` as fraudgate's clients; [`reasons`]: why
//!   a decision was rejected, as a category and its detail.
//! - [`summary`]: `fraud.json`, `goal.json`, `global.json` (their rows'
//!   [`order`]);
//!   [`interval`]: `interval.json`; [`list`]: `conversion.json` and
//!   `conversion_scroll.json` (its [`cursor`]); [`source`]: one decision
//!   in each of Fraudshield's forms (also the entry report's).

pub mod cursor;
pub mod interval;
pub mod list;
pub mod order;
pub mod params;
pub mod reasons;
pub mod search;
pub mod source;
pub mod summary;
pub mod terms;
pub mod trackers;

use serde_json::{Map, Value};

pub use params::{Report, Request};
pub use trackers::Trackers;

use super::{Events, Expr, Query, QueryError, Shape};

/// A row as the reader hands it over.
pub type Row = Map<String, Value>;

/// The queries a request runs, in the order [`render`] takes their rows.
pub fn queries(r: &Request) -> Result<Vec<Query>, QueryError> {
    match r.report {
        Report::Conversion | Report::Scroll => Ok(list::queries(r)),
        Report::Interval => interval::queries(r),
        Report::Fraud | Report::Goal | Report::Global => Ok(summary::queries(r)),
    }
}

/// The answer to `r` from the rows of its [`queries`].
pub fn render(
    r: &Request,
    rows: Vec<Vec<Row>>,
    trackers: &Trackers<'_>,
) -> Result<Value, QueryError> {
    match r.report {
        Report::Conversion => Ok(list::conversion(r, rows, trackers)),
        Report::Scroll => Ok(list::scroll(r, rows, trackers)),
        Report::Interval => interval::render(r, rows),
        Report::Fraud | Report::Goal | Report::Global => summary::render(r, rows, trackers),
    }
}

/// A request's parameters: the query string's and, for a POST form, the
/// body's. The PHP SDK sends a scroll's parameters in both, so a name in
/// both must carry the same values (else a 400 naming it).
pub fn pairs(query: &str, form: Option<&[u8]>) -> Result<Vec<(String, String)>, QueryError> {
    fn decode(b: &[u8]) -> Vec<(String, String)> {
        form_urlencoded::parse(b)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }
    fn values<'a>(list: &'a [(String, String)], k: &str) -> Vec<&'a str> {
        list.iter()
            .filter(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
            .collect()
    }
    let mut all = decode(query.as_bytes());
    let Some(body) = form else {
        return Ok(all);
    };
    let body = decode(body);
    let in_url = |k: &str| all.iter().any(|(n, _)| n == k);
    for (k, _) in &body {
        if in_url(k) && values(&all, k) != values(&body, k) {
            return Err(QueryError::new(
                k.clone(),
                format!("{k} differs between the URL and the form"),
            ));
        }
    }
    let only_body: Vec<_> = body.into_iter().filter(|(k, _)| !in_url(k)).collect();
    all.extend(only_body);
    Ok(all)
}

/// A query over the request's rows, narrowed further by `only`.
fn query(r: &Request, only: Option<Expr>, shape: Shape, size: u64) -> Query {
    let mut filter = r.rows.clone();
    filter.extend(only);
    Query {
        events: Events::All,
        shape,
        filter: Some(Expr::And(filter)),
        sort: Vec::new(),
        page: 1,
        page_size: size,
        tz: r.tz.clone(),
    }
}

/// `100 * part / whole`, two decimals; `"N/A"` over nothing, as
/// Fraudshield answers a rate with a zero denominator.
fn rate(part: i64, whole: i64) -> Value {
    if whole == 0 {
        return "N/A".into();
    }
    let r = (10_000.0 * part as f64 / whole as f64).round() / 100.0;
    serde_json::Number::from_f64(r).map_or(Value::Null, Value::Number)
}

/// A count column of a row (0 when absent).
fn count(row: &Row, name: &str) -> i64 {
    row.get(name).and_then(Value::as_i64).unwrap_or(0)
}

#[cfg(test)]
mod tests;
