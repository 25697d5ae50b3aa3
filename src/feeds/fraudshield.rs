//! 24metrics Fraudshield reports API (reference 001), `user_id` +
//! `api_token` in the query, dates in the report's `timezone`:
//! - `POST conversion_scroll.json`: rejected conversions, following
//!   `next_page_id` (taken from `next_page_url`) until a page is empty;
//! - `GET conversion.json`: the same with `count`/`page` up to `last_page`;
//! - `GET fraud.json` grouped by affiliate and sub_id, with
//!   `min_rejection_rate` / `min_conversions` as `search_fields[]`.

use jiff::civil::Date;
use serde_json::{Value, json};

use super::config::FraudshieldReport;
use super::source::{self, Ctx, FeedError, PullStats, Row};

const DEFAULT_COUNT: u64 = 1000;
/// A scroll that never ends is a broken server, not data.
const MAX_PAGES: u64 = 100_000;

fn url(ctx: &Ctx<'_>, report: &str) -> Result<reqwest::Url, FeedError> {
    source::endpoint(
        ctx.cfg.base_url(),
        &["api", "v1", "reports", &format!("{report}.json")],
    )
}

fn common(ctx: &Ctx<'_>, from: Date, to: Date) -> Vec<(&'static str, String)> {
    let c = ctx.cfg;
    vec![
        ("user_id", c.user_id.clone().unwrap_or_default()),
        (
            "api_token",
            c.api_token
                .as_ref()
                .map(|t| t.expose().to_owned())
                .unwrap_or_default(),
        ),
        ("tracker_id", c.tracker_id.unwrap_or_default().to_string()),
        ("date_start", from.to_string()),
        ("date_end", to.to_string()),
        ("timezone", c.timezone().to_owned()),
    ]
}

/// One call; the JSON answer or a clear error.
async fn call(ctx: &Ctx<'_>, req: reqwest::RequestBuilder) -> Result<Value, FeedError> {
    ctx.pacer.wait().await;
    let resp = req.send().await.map_err(FeedError::from_reqwest)?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = source::read_body(resp, ctx.cfg.max_response_bytes()).await?;
    source::check_status(status, &headers, &body, "Fraudshield").map_err(|e| match e {
        FeedError::Credentials(_) | FeedError::Forbidden(_) => FeedError::Credentials(format!(
            "Fraudshield refused user_id/api_token (HTTP {}): check them on its settings page",
            status.as_u16()
        )),
        other => other,
    })?;
    let ct = headers
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    if source::looks_like_html(ct, &body) {
        return Err(FeedError::Credentials(
            "Fraudshield answered 200 with an HTML page instead of JSON: the user_id/api_token were not accepted".into(),
        ));
    }
    let v: Value = serde_json::from_slice(&body).map_err(|e| {
        FeedError::Parse(format!(
            "Fraudshield's answer is not JSON ({e}): {}",
            source::snippet(&body)
        ))
    })?;
    if let Some(err) = v
        .get("error")
        .or_else(|| v.get("message"))
        .filter(|_| v.get("data").is_none() && v.get("fraud").is_none())
    {
        let text = err.to_string();
        return Err(FeedError::BadRequest(format!("Fraudshield: {text}")));
    }
    Ok(v)
}

fn rows_of<'v>(v: &'v Value, what: &str) -> Result<&'v [Value], FeedError> {
    match v.get("data") {
        Some(Value::Array(a)) => Ok(a),
        Some(Value::Null) | None => Err(FeedError::Parse(format!(
            "Fraudshield's {what} answer has no \"data\" array"
        ))),
        Some(_) => Err(FeedError::Parse(format!(
            "Fraudshield's {what} \"data\" is not an array"
        ))),
    }
}

/// One page of a conversion report: counted, shown, its rejected rows
/// handed to `out`. Returns how many rows it had.
fn take_page(
    ctx: &Ctx<'_>,
    v: &Value,
    report: &str,
    stats: &mut PullStats,
    out: &mut (dyn FnMut(Row, &str) + Send),
) -> Result<usize, FeedError> {
    let rows = rows_of(v, report)?;
    stats.pages += 1;
    stats.rows += rows.len() as u64;
    ctx.progress
        .page(&format!("{report} page {}", stats.pages), rows.len() as u64);
    for r in rows {
        if let Some(row) = conversion_row(ctx, r) {
            out(row, "conversion");
        }
    }
    Ok(rows.len())
}

/// A conversion row: the scroll report's rows are flat, the paged
/// report's carry their fields in `_source`. Rows not rejected are not
/// fraud and are skipped (the status filter is also asked of the server).
fn conversion_row(ctx: &Ctx<'_>, v: &Value) -> Option<Row> {
    let src = v.get("_source").unwrap_or(v);
    let flat = source::flatten(src);
    if flat.get("status").is_some_and(|s| s != "rejected") {
        return None;
    }
    Some(ctx.columns.row(|n| flat.get(n).map(String::as_str)))
}

fn status_filter() -> String {
    json!({"term": "status", "query": "rejected"}).to_string()
}

pub async fn pull(
    ctx: &Ctx<'_>,
    from: Date,
    to: Date,
    out: &mut (dyn FnMut(Row, &str) + Send),
) -> Result<PullStats, FeedError> {
    match ctx.cfg.fraudshield_report() {
        FraudshieldReport::ConversionScroll => scroll(ctx, from, to, out).await,
        FraudshieldReport::Conversion => paged(ctx, from, to, out).await,
        FraudshieldReport::Fraud => fraud(ctx, from, to, out).await,
    }
}

async fn scroll(
    ctx: &Ctx<'_>,
    from: Date,
    to: Date,
    out: &mut (dyn FnMut(Row, &str) + Send),
) -> Result<PullStats, FeedError> {
    let mut stats = PullStats::default();
    let endpoint = url(ctx, "conversion_scroll")?;
    let count = ctx.cfg.page_size.unwrap_or(DEFAULT_COUNT).to_string();
    let mut next: Option<String> = None;
    let mut last_page: Option<u64> = None;
    loop {
        let mut q = common(ctx, from, to);
        q.extend([
            ("count", count.clone()),
            ("click", "0".into()),
            ("goal", "0".into()),
            ("search_fields[]", status_filter()),
        ]);
        if let Some(id) = &next {
            q.push(("next_page_id", id.clone()));
        }
        let v = call(ctx, ctx.http.post(endpoint.clone()).query(&q)).await?;
        // A scroll that does not advance answers the same page again:
        // stop at once rather than after MAX_PAGES requests.
        let page = fingerprint(v.get("data"));
        if last_page == Some(page) {
            return Err(FeedError::Parse(format!(
                "conversion_scroll answered page {} again: the scroll does not advance",
                stats.pages
            )));
        }
        last_page = Some(page);
        if take_page(ctx, &v, "conversion_scroll", &mut stats, out)? == 0 {
            break;
        }
        let id = v
            .get("next_page_url")
            .and_then(Value::as_str)
            .and_then(next_page_id);
        // An Elasticsearch scroll id may stay the same from page to
        // page: the end is an empty page (or no next_page_url).
        match id {
            None => break,
            Some(id) => next = Some(id),
        }
        if stats.pages >= MAX_PAGES {
            return Err(FeedError::Parse(format!(
                "conversion_scroll did not end after {MAX_PAGES} pages"
            )));
        }
    }
    Ok(stats)
}

/// A page's rows, hashed: equal pages hash alike.
fn fingerprint(rows: Option<&Value>) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    rows.map(Value::to_string).unwrap_or_default().hash(&mut h);
    h.finish()
}

/// `next_page_id` from a `next_page_url` (absolute or relative).
fn next_page_id(u: &str) -> Option<String> {
    let query = u.split_once('?')?.1;
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "next_page_id")
        .map(|(_, v)| v.into_owned())
        .filter(|v| !v.is_empty())
}

async fn paged(
    ctx: &Ctx<'_>,
    from: Date,
    to: Date,
    out: &mut (dyn FnMut(Row, &str) + Send),
) -> Result<PullStats, FeedError> {
    let mut stats = PullStats::default();
    let endpoint = url(ctx, "conversion")?;
    let count = ctx.cfg.page_size.unwrap_or(DEFAULT_COUNT).to_string();
    let mut page = 1u64;
    loop {
        let mut q = common(ctx, from, to);
        q.extend([
            ("count", count.clone()),
            ("page", page.to_string()),
            ("search_fields[]", status_filter()),
        ]);
        let v = call(ctx, ctx.http.get(endpoint.clone()).query(&q)).await?;
        let rows = take_page(ctx, &v, "conversion", &mut stats, out)?;
        let Some(last) = v.get("last_page").and_then(as_u64) else {
            return Err(FeedError::Parse(
                "Fraudshield's conversion answer has no last_page: cannot tell whether more pages follow".into(),
            ));
        };
        if rows == 0 || page >= last {
            break;
        }
        if page >= MAX_PAGES {
            return Err(FeedError::Parse(format!(
                "conversion report has more than {MAX_PAGES} pages; raise page_size"
            )));
        }
        page += 1;
    }
    Ok(stats)
}

/// Numbers Fraudshield sends as numbers or as text (`"per_page": "50"`).
fn as_u64(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| v.as_str()?.trim().parse().ok())
}

fn as_f64(v: &Value) -> Option<f64> {
    v.as_f64().or_else(|| v.as_str()?.trim().parse().ok())
}

async fn fraud(
    ctx: &Ctx<'_>,
    from: Date,
    to: Date,
    out: &mut (dyn FnMut(Row, &str) + Send),
) -> Result<PullStats, FeedError> {
    let c = ctx.cfg;
    let mut q = common(ctx, from, to);
    q.push(("group[]", "affiliate".into()));
    q.push(("group[]", "sub_id".into()));
    if let Some(r) = c.min_rejection_rate {
        q.push((
            "search_fields[]",
            json!({"term": "min_rejection_rate", "query": r}).to_string(),
        ));
    }
    if let Some(n) = c.min_conversions {
        q.push((
            "search_fields[]",
            json!({"term": "min_conversions", "query": n}).to_string(),
        ));
    }
    let v = call(ctx, ctx.http.get(url(ctx, "fraud")?).query(&q)).await?;
    let results = v
        .pointer("/fraud/results")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            FeedError::Parse("Fraudshield's fraud answer has no fraud.results array".into())
        })?;
    ctx.progress.page("fraud report", results.len() as u64);
    let min_rate = c.min_rejection_rate.unwrap_or(0.0);
    let min_conv = c.min_conversions.unwrap_or(0);
    for g in results {
        // The server filters; the limits are checked again here so a
        // server that ignores search_fields cannot block a clean group.
        let rate = g.get("rejection_rate").and_then(as_f64).unwrap_or(0.0);
        let conv = g.get("conversion").and_then(as_u64).unwrap_or(0);
        if rate < min_rate || conv < min_conv {
            continue;
        }
        let flat = source::flatten(g);
        let mut row = ctx.columns.row(|n| flat.get(n).map(String::as_str));
        // The reason that rejected most, then the rate.
        let top = g.get("reasons").and_then(Value::as_object).and_then(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k, as_u64(v)?)))
                .max_by_key(|(_, n)| *n)
                .map(|(k, _)| k.clone())
        });
        row.reason = top;
        row.sub_reason = Some(format!("rejection_rate {rate}%"));
        out(row, "fraud");
    }
    Ok(PullStats {
        pages: 1,
        rows: results.len() as u64,
        ..PullStats::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_page_id_from_the_documented_url() {
        let u = "https://fraudshield.24metrics.com/api/v1/reports/conversion_scroll.json?api_token=Ia1&click=0&count=10&date_end=2017-08-01&next_page_id=cXVl%3D%3D";
        assert_eq!(next_page_id(u).as_deref(), Some("cXVl=="));
        assert_eq!(next_page_id("/?page=2"), None);
        assert_eq!(as_u64(&json!("50")), Some(50));
    }
}
