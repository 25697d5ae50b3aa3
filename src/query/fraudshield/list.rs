//! `conversion.json` and `conversion_scroll.json`: the conversions of a
//! tracker, newest first (then by decision id, descending). The first
//! pages by `count` and `page` inside Fraudshield's pagination object;
//! the scroll follows `next_page_id`, a seek from the last row handed
//! out, until a page comes back short (`next_page_url` null).

use serde_json::{Value, json};

use super::cursor::Cursor;
use super::source;
use super::terms::{self, CLICK_EVENT_TYPE, GOAL_EVENT_TYPE, conversion_filter, event_type_is};
use super::{Report, Request, Row, Trackers, count, query};
use crate::query::{Agg, Expr, Query, Shape};

pub fn queries(r: &Request) -> Vec<Query> {
    let mut only: Vec<Expr> = which(r).into_iter().collect();
    if let Some(c) = &r.cursor {
        only.push(c.after());
    }
    let only = (!only.is_empty()).then_some(Expr::And(only));
    let mut rows = query(r, only.clone(), Shape::List(terms::fields()), r.count);
    rows.sort = vec![("ts".into(), true), ("id".into(), true)];
    if r.report == Report::Scroll {
        return vec![rows];
    }
    rows.page = r.page;
    let all = Shape::Groups {
        groups: Vec::new(),
        aggs: vec![Agg::Count],
        having: None,
    };
    vec![rows, query(r, only, all, 1)]
}

/// Which decisions: the conversions, and with `click=1` / `goal=1` the
/// clicks and goals too (`None`: every decision, were every decision a
/// conversion).
fn which(r: &Request) -> Option<Expr> {
    let mut any = vec![conversion_filter()?];
    if r.click {
        any.push(event_type_is(CLICK_EVENT_TYPE));
    }
    if r.goal {
        any.push(event_type_is(GOAL_EVENT_TYPE));
    }
    Some(Expr::Or(any))
}

/// The conversion report: a page inside Fraudshield's pagination object
/// (`per_page` as text, `from`/`to` null on an empty page, the next and
/// previous pages' URLs null at the ends).
pub fn conversion(r: &Request, sets: Vec<Vec<Row>>, trackers: &Trackers<'_>) -> Value {
    let mut sets = sets.into_iter();
    let rows = sets.next().unwrap_or_default();
    let total = sets
        .next()
        .and_then(|s| s.into_iter().next())
        .map_or(0, |row| count(&row, "count"))
        .max(0) as u64;
    let last_page = total.div_ceil(r.count).max(1);
    let from = (r.page - 1).saturating_mul(r.count).saturating_add(1);
    let (from, to) = match rows.len() as u64 {
        0 => (Value::Null, Value::Null),
        n => (from.into(), (from + n - 1).into()),
    };
    let page_url = |page: u64| url(r, &[("page", page.to_string())]);
    json!({
        "total": total,
        "per_page": r.count.to_string(),
        "current_page": r.page,
        "last_page": last_page,
        "next_page_url": (r.page < last_page).then(|| page_url(r.page + 1)),
        "prev_page_url": (r.page > 1).then(|| page_url(r.page - 1)),
        "from": from,
        "to": to,
        "data": rows.iter().map(|row| source::hit(row, &r.tz, trackers)).collect::<Vec<_>>(),
    })
}

/// The scroll report: a page of flat rows and the URL of the next (null
/// once a page comes back short: the scroll is done).
pub fn scroll(r: &Request, sets: Vec<Vec<Row>>, trackers: &Trackers<'_>) -> Value {
    let rows = sets.into_iter().next().unwrap_or_default();
    let next = match rows.last() {
        Some(last) if rows.len() as u64 == r.count => {
            let cursor = Cursor {
                ts: last.get("ts").and_then(Value::as_i64).unwrap_or(0),
                id: last
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
            };
            Some(url(r, &[("next_page_id", cursor.encode())]))
        }
        _ => None,
    };
    json!({
        "next_page_url": next,
        "data": rows.iter().map(|row| source::flat(row, &r.tz, trackers)).collect::<Vec<_>>(),
    })
}

/// The report's path with the request's parameters and `more`; the key
/// is left out (it is a secret: add it as `api_token=` or a header).
fn url(r: &Request, more: &[(&str, String)]) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    for (k, v) in &r.echo {
        q.append_pair(k, v);
    }
    for (k, v) in more {
        q.append_pair(k, v);
    }
    format!("{}?{}", r.report.path(), q.finish())
}
