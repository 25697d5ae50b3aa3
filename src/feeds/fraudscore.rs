//! FraudScore Data API (reference 000): `GET {base}/{CHANNEL}/{event}`
//! with `key`, `field` (repeated), `filter` (a JSON expression), `sort`,
//! `page`, `page_size` (at most 1 000 000), `tz`; JSON lines, read as they
//! stream. Pages until a short page.
//!
//! The feed's `filter` is ANDed with the time window
//! (`datetime_ge` / `datetime_le`, in UTC).

use jiff::Timestamp;
use serde_json::Value;

use super::source::{self, Ctx, FeedError, PullStats, Row};

const DEFAULT_PAGE_SIZE: u64 = 10_000;

fn datetime(t: Timestamp) -> String {
    t.strftime("%Y-%m-%d %H:%M:%S").to_string()
}

/// The filter sent: the window ANDed with the configured expression.
pub fn filter(configured: Option<&str>, from: Timestamp, to: Timestamp) -> String {
    let mut and = vec![
        Value::from("AND"),
        serde_json::json!(["datetime_ge", datetime(from)]),
        serde_json::json!(["datetime_le", datetime(to)]),
    ];
    if let Some(f) = configured.and_then(|f| serde_json::from_str::<Value>(f).ok()) {
        and.push(f);
    }
    Value::Array(and).to_string()
}

/// Pulls the window page by page until a short page; each row goes to
/// `out` with the event it came from.
pub async fn pull(
    ctx: &Ctx<'_>,
    from: Timestamp,
    to: Timestamp,
    out: &mut (dyn FnMut(Row, &str) + Send),
) -> Result<PullStats, FeedError> {
    let c = ctx.cfg;
    let event = c.event.as_deref().unwrap_or("click");
    let url = source::endpoint(c.base_url(), &[c.channel.as_deref().unwrap_or(""), event])?;
    let fields: Vec<String> = if c.fields.is_empty() {
        ctx.columns.all().into_iter().map(str::to_owned).collect()
    } else {
        c.fields.clone()
    };
    let page_size = c.page_size.unwrap_or(DEFAULT_PAGE_SIZE);
    let filter = filter(c.filter.as_deref(), from, to);
    let mut stats = PullStats::default();
    let mut page = 1u64;
    loop {
        let mut q: Vec<(&str, String)> = vec![(
            "key",
            c.key
                .as_ref()
                .map(|k| k.expose().to_owned())
                .unwrap_or_default(),
        )];
        q.extend(fields.iter().map(|f| ("field", f.clone())));
        q.extend([
            ("filter", filter.clone()),
            ("sort", "datetime_asc".to_owned()),
            ("page", page.to_string()),
            ("page_size", page_size.to_string()),
            ("tz", "UTC".to_owned()),
        ]);
        let resp = fetch_page(ctx, url.clone(), &q).await?;
        let rows = read_lines(ctx, resp, page, &mut |row| out(row, event)).await?;
        stats.pages += 1;
        stats.rows += rows;
        ctx.progress.page(&format!("{event} page {page}"), rows);
        if rows < page_size {
            break;
        }
        page += 1;
    }
    Ok(stats)
}

/// One page's request; a refusal or an error status becomes its
/// [`FeedError`].
async fn fetch_page(
    ctx: &Ctx<'_>,
    url: reqwest::Url,
    q: &[(&str, String)],
) -> Result<reqwest::Response, FeedError> {
    ctx.pacer.wait().await;
    let resp = ctx
        .http
        .get(url)
        .query(q)
        .send()
        .await
        .map_err(FeedError::from_reqwest)?;
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let headers = resp.headers().clone();
    let body = source::read_body(resp, 64 << 10).await.unwrap_or_default();
    source::check_status(status, &headers, &body, "the FraudScore Data API").map_err(|e| match e {
        FeedError::Credentials(_) | FeedError::Forbidden(_) => FeedError::Credentials(format!(
            "the FraudScore Data API refused the key (HTTP {}): check channel and key (its API Documentation page shows both)",
            status.as_u16()
        )),
        other => other,
    })?;
    Err(FeedError::Status(status.as_u16()))
}

/// Reads a page's JSON lines as they stream, within the feed's size
/// limits; each object goes to `out` as a row. The number of rows.
async fn read_lines(
    ctx: &Ctx<'_>,
    mut resp: reqwest::Response,
    page: u64,
    out: &mut (dyn FnMut(Row) + Send),
) -> Result<u64, FeedError> {
    let c = ctx.cfg;
    let limit = c.max_response_bytes();
    let ct = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut buf: Vec<u8> = Vec::new();
    let (mut rows, mut line_no, mut received) = (0u64, 0u64, 0usize);
    loop {
        let chunk = resp.chunk().await.map_err(FeedError::from_reqwest)?;
        let done = chunk.is_none();
        if let Some(chunk) = &chunk {
            if received == 0 && source::looks_like_html(ct.as_deref(), chunk) {
                return Err(FeedError::Credentials(
                    "the FraudScore Data API answered an HTML page instead of JSON lines: the key was not accepted".into(),
                ));
            }
            received += chunk.len();
            if received > limit {
                return Err(source::too_large(limit));
            }
            buf.extend_from_slice(chunk);
        } else if !buf.is_empty() {
            buf.push(b'\n');
        }
        let mut start = 0;
        while let Some(nl) = buf[start..].iter().position(|b| *b == b'\n') {
            let line = buf[start..start + nl].trim_ascii();
            start += nl + 1;
            line_no += 1;
            if line.is_empty() {
                continue;
            }
            let v = json_object(line, line_no, page)?;
            rows += 1;
            let flat = source::flatten(&v);
            out(ctx.columns.row(|n| flat.get(n).map(String::as_str)));
        }
        buf.drain(..start);
        if buf.len() > c.max_row_bytes {
            return Err(source::row_too_long(c.max_row_bytes));
        }
        if done {
            return Ok(rows);
        }
    }
}

/// A line of a page as a JSON object, or a parse error naming it.
fn json_object(line: &[u8], line_no: u64, page: u64) -> Result<Value, FeedError> {
    let v: Value = serde_json::from_slice(line).map_err(|e| {
        FeedError::Parse(format!(
            "line {line_no} of page {page} is not JSON ({e}): {}",
            source::snippet(line)
        ))
    })?;
    if !v.is_object() {
        return Err(FeedError::Parse(format!(
            "line {line_no} of page {page} is not a JSON object"
        )));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_is_anded_with_the_configured_filter() {
        let from: Timestamp = "2026-11-20T00:00:00Z".parse().unwrap();
        let to: Timestamp = "2026-11-21T12:30:00Z".parse().unwrap();
        assert_eq!(
            filter(
                Some(r#"["OR",["tag","proxy"],["tag","blacklist"]]"#),
                from,
                to
            ),
            r#"["AND",["datetime_ge","2026-11-20 00:00:00"],["datetime_le","2026-11-21 12:30:00"],["OR",["tag","proxy"],["tag","blacklist"]]]"#
        );
    }
}
