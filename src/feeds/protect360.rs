//! AppsFlyer Protect360 adnet reporting API (reference 004):
//! `GET /api/adnets-data/v1/export/{report_topic}/app/{app_id}?from=&to=`,
//! `Authorization: Bearer <V2.0 token>`, CSV in UTC.
//!
//! Limits kept: a window is at most 31 days inside the last 90; a report
//! is cut at 200K rows, so a window answering that many is split in two
//! and fetched again (a single day that still hits it is kept and said).
//! An HTML login page with status 200 means no valid token: an error,
//! never zero rows.

use std::io::Read;

use bytes::Bytes;
use jiff::civil::Date;
use tokio::sync::mpsc;

use super::config::{P360_LOOKBACK_DAYS, P360_MAX_DAYS};
use super::source::{self, Ctx, FeedError, PullStats, Row};

/// The post-attribution topics: fraud detected after the install or
/// event was attributed, read by detection date.
fn post_attribution(topic: &str) -> bool {
    matches!(topic, "detection" | "fraud-post-inapps")
}

/// The dates one report call asks for. A blocked-traffic topic is read by
/// its own dates, `[from, to]`. A post-attribution topic is read by
/// detection date (`detect-from`/`detect-to` = `[from, to]`), with the
/// install or event dates reaching back as far as the API allows (60
/// days for installs, 90 for in-app events, never before the 90-day
/// horizon): an install attributed weeks ago and detected today is caught.
fn request_dates(topic: &str, from: Date, to: Date, today: Date) -> Vec<(&'static str, String)> {
    if !post_attribution(topic) {
        return vec![("from", from.to_string()), ("to", to.to_string())];
    }
    let span = if topic == "detection" { 60 } else { 90 };
    let horizon = today
        .checked_sub(jiff::Span::new().days(P360_LOOKBACK_DAYS))
        .unwrap_or(from);
    let earliest = to
        .checked_sub(jiff::Span::new().days(span - 1))
        .unwrap_or(from)
        .max(horizon)
        .min(from);
    vec![
        ("from", earliest.to_string()),
        ("to", to.to_string()),
        ("detect-from", from.to_string()),
        ("detect-to", to.to_string()),
    ]
}

/// `additional_fields` asked per topic: the reasons and the device ids
/// not in the default columns.
fn additional_fields(topic: &str) -> &'static str {
    match topic {
        "detection" | "fraud-post-inapps" => {
            "fraud_reason,fraud_sub_reason,detection_date,oaid,amazon_aid"
        }
        _ => {
            "blocked_reason,blocked_reason_value,blocked_reason_rule,blocked_sub_reason,oaid,amazon_aid"
        }
    }
}

/// Splits `[from, to]` (inclusive days) into windows of at most 31 days,
/// after clipping it to the last 90 days before `today`.
pub fn windows(from: Date, to: Date, today: Date) -> Vec<(Date, Date)> {
    let earliest = today
        .checked_sub(jiff::Span::new().days(P360_LOOKBACK_DAYS))
        .unwrap_or(from);
    let from = from.max(earliest);
    let to = to.min(today);
    let mut out = Vec::new();
    let mut start = from;
    while start <= to {
        let end = start
            .checked_add(jiff::Span::new().days(P360_MAX_DAYS - 1))
            .unwrap_or(to)
            .min(to);
        out.push((start, end));
        match end.tomorrow() {
            Ok(d) => start = d,
            Err(_) => break,
        }
    }
    out
}

fn days(from: Date, to: Date) -> i64 {
    (to - from).get_days() as i64 + 1
}

/// Pulls every app and topic over `[from, to]`; each row goes to `out`
/// with its topic.
pub async fn pull(
    ctx: &Ctx<'_>,
    from: Date,
    to: Date,
    today: Date,
    out: &mut (dyn FnMut(Row, &str) + Send),
) -> Result<PullStats, FeedError> {
    let mut stats = PullStats::default();
    let limit = ctx.cfg.row_limit();
    let mut failed: Vec<(String, FeedError)> = Vec::new();
    for app in &ctx.cfg.app_ids {
        'topic: for topic in ctx.cfg.topics() {
            let report = format!("{topic} {app}");
            // Read to the end by a run that partly failed: only from the
            // day that run ended (whole UTC days).
            let start = ctx
                .reports_done
                .get(&report)
                .and_then(|t| jiff::Timestamp::from_second(*t as i64).ok())
                .map_or(from, |t| {
                    from.max(t.to_zoned(jiff::tz::TimeZone::UTC).date())
                });
            let mut todo = windows(start, to, today);
            todo.reverse();
            while let Some((a, b)) = todo.pop() {
                // One app or topic failing (access revoked for one app)
                // does not stop the others.
                let rows = match fetch(ctx, app, topic, &request_dates(topic, a, b, today)).await {
                    Ok(r) => r,
                    Err(e) => {
                        ctx.progress
                            .note(&format!("{topic} {app} {a}..{b} failed: {e}"));
                        failed.push((format!("{topic} {app}"), e));
                        continue 'topic;
                    }
                };
                stats.pages += 1;
                ctx.progress
                    .page(&format!("{topic} {app} {a}..{b}"), rows.len() as u64);
                if rows.len() >= limit && days(a, b) > 1 {
                    // Cut at the row limit: fetch the halves instead.
                    let half = days(a, b) / 2;
                    let mid = a
                        .checked_add(jiff::Span::new().days(half - 1))
                        .map_err(|e| FeedError::Parse(e.to_string()))?;
                    let next = mid
                        .tomorrow()
                        .map_err(|e| FeedError::Parse(e.to_string()))?;
                    ctx.progress.note(&format!(
                        "{topic} {app} {a}..{b} answered {} rows (the report limit): split into {a}..{mid} and {next}..{b}",
                        rows.len()
                    ));
                    stats.splits += 1;
                    todo.push((next, b));
                    todo.push((a, mid));
                    continue;
                }
                if rows.len() >= limit {
                    ctx.progress.note(&format!(
                        "{topic} {app} {a} answered {} rows, the report limit, for a single day: rows past it are not in the report",
                        rows.len()
                    ));
                    stats.truncated += 1;
                }
                stats.rows += rows.len() as u64;
                for r in rows {
                    out(r, topic);
                }
            }
            stats.done.push(report);
        }
    }
    let calls = ctx.cfg.app_ids.len() * ctx.cfg.topics().len();
    match failed.len() {
        0 => Ok(stats),
        // Nothing succeeded: the error itself.
        n if n == calls => Err(failed.remove(0).1),
        n => {
            let (what, e) = failed.remove(0);
            stats.partial = Some(FeedError::Partial(format!(
                "{n} of {calls} app/topic reports failed (first: {what}: {e}); the others were read"
            )));
            Ok(stats)
        }
    }
}

/// One report call, parsed as it streams (the CSV is read on a blocking
/// thread from the chunks the runtime receives; only the few columns an
/// entry needs are kept).
async fn fetch(
    ctx: &Ctx<'_>,
    app: &str,
    topic: &str,
    dates: &[(&'static str, String)],
) -> Result<Vec<Row>, FeedError> {
    let mut url = source::endpoint(
        ctx.cfg.base_url(),
        &["api", "adnets-data", "v1", "export", topic, "app", app],
    )?;
    url.query_pairs_mut()
        .extend_pairs(dates)
        .append_pair("additional_fields", additional_fields(topic));
    let token = ctx.cfg.token.as_ref().map(|t| t.expose()).unwrap_or("");
    ctx.pacer.wait().await;
    let resp = ctx
        .http
        .get(url)
        .bearer_auth(token)
        .header(reqwest::header::ACCEPT, "text/csv, application/json")
        .send()
        .await
        .map_err(FeedError::from_reqwest)?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let mut resp = resp;
    if !status.is_success() {
        let body = source::read_body(resp, 64 << 10).await.unwrap_or_default();
        return Err(match source::check_status(status, &headers, &body, "Protect360") {
            Err(FeedError::Credentials(_)) => FeedError::Credentials(
                "Protect360 refused the token (HTTP 401): it is not a valid V2.0 token; get the current one from the AppsFlyer dashboard's tokens page".into(),
            ),
            Err(FeedError::NotFound(_)) => FeedError::NotFound(format!(
                "Protect360 answered 404 for app {app:?}: the app id is wrong (iOS ids start with \"id\") or the advertiser has not given this account Protect360 access"
            )),
            Err(FeedError::BadRequest(m)) => FeedError::BadRequest(format!(
                "{m} (Protect360's date range rules: at most 31 days, inside the last 90)"
            )),
            Err(e) => e,
            Ok(()) => FeedError::Status(status.as_u16()),
        });
    }
    let content_type = headers
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let first = resp.chunk().await.map_err(FeedError::from_reqwest)?;
    if let Some(f) = &first
        && source::looks_like_html(content_type.as_deref(), f)
    {
        return Err(FeedError::Credentials(
            "Protect360 answered 200 with its HTML login page: no valid Bearer token was sent (an error, not zero rows)".into(),
        ));
    }
    let Some(first) = first else {
        // An empty CSV: no blocked traffic in the window.
        return Ok(Vec::new());
    };
    // Bounded: the parser sets the pace, memory stays at a few chunks.
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    let columns = ctx.columns.clone();
    let max_row = ctx.cfg.max_row_bytes;
    let max_rows = ctx.cfg.row_limit();
    let parse = tokio::task::spawn_blocking(move || {
        parse_csv(ChannelReader::new(rx, max_row), &columns, max_row, max_rows)
    });
    let limit = ctx.cfg.max_response_bytes();
    let mut received = first.len();
    let mut ok = tx.send(first).await.is_ok();
    while ok {
        match resp.chunk().await {
            Ok(Some(c)) => {
                received += c.len();
                if received > limit {
                    drop(tx);
                    let _ = parse.await;
                    return Err(source::too_large(limit));
                }
                ok = tx.send(c).await.is_ok()
            }
            Ok(None) => break,
            Err(e) => {
                drop(tx);
                let _ = parse.await;
                return Err(FeedError::from_reqwest(e));
            }
        }
    }
    drop(tx);
    parse
        .await
        .map_err(|e| FeedError::Parse(format!("CSV reader stopped: {e}")))?
}

/// Rows past `max_rows` (Protect360 cuts a report at `row_limit`) are an
/// error: a report of tiny rows under `max_response_mb` could otherwise
/// hold millions of them.
fn parse_csv(
    reader: impl Read,
    columns: &super::config::Columns,
    max_row: usize,
    max_rows: usize,
) -> Result<Vec<Row>, FeedError> {
    let mut csv = csv::ReaderBuilder::new()
        .flexible(true)
        .has_headers(true)
        .from_reader(reader);
    let headers = csv
        .headers()
        .map_err(|e| FeedError::Parse(format!("CSV header: {e}")))?
        .clone();
    let index = source::header_index(&headers);
    if !columns
        .ip
        .iter()
        .chain(&columns.device)
        .any(|c| index.contains_key(c))
        && !columns.affiliate.iter().any(|c| index.contains_key(c))
    {
        return Err(FeedError::Parse(format!(
            "the CSV has none of the columns the feed reads (ip {:?}, device {:?}, affiliate {:?}); its header starts {:?}",
            columns.ip,
            columns.device,
            columns.affiliate,
            headers.iter().take(8).collect::<Vec<_>>()
        )));
    }
    let mut out = Vec::new();
    let mut record = csv::StringRecord::new();
    loop {
        match csv.read_record(&mut record) {
            Ok(true) => {
                if out.len() >= max_rows {
                    return Err(FeedError::Parse(format!(
                        "more than {max_rows} rows in one report (row_limit): not Protect360's cut report"
                    )));
                }
                out.push(columns.row(|name| index.get(name).and_then(|&i| record.get(i))));
            }
            Ok(false) => break,
            Err(e) if is_row_too_long(&e) => return Err(source::row_too_long(max_row)),
            Err(e) => return Err(FeedError::Parse(format!("CSV: {e}"))),
        }
    }
    Ok(out)
}

/// `Read` over chunks sent from the runtime.
struct ChannelReader {
    rx: mpsc::Receiver<Bytes>,
    current: Bytes,
    /// Bytes read since the last record's end: one row's length.
    since_newline: usize,
    in_quotes: bool,
    max_row: usize,
}

impl ChannelReader {
    fn new(rx: mpsc::Receiver<Bytes>, max_row: usize) -> Self {
        ChannelReader {
            rx,
            current: Bytes::new(),
            since_newline: 0,
            in_quotes: false,
            max_row,
        }
    }
}

/// The reader's error for a line past `max_row_bytes`: the CSV parser
/// would otherwise grow one endless field without limit.
#[derive(Debug)]
struct RowTooLong;

impl std::fmt::Display for RowTooLong {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("row too long")
    }
}

impl std::error::Error for RowTooLong {}

fn is_row_too_long(e: &csv::Error) -> bool {
    match e.kind() {
        csv::ErrorKind::Io(io) => io.get_ref().is_some_and(|inner| inner.is::<RowTooLong>()),
        _ => false,
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(b) => self.current = b,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        let _ = self.current.split_to(n);
        // A record ends at a newline outside quotes: a quoted field full
        // of newlines is one long row, not many short ones.
        for &b in &buf[..n] {
            if b == b'"' {
                self.in_quotes = !self.in_quotes;
            } else if b == b'\n' && !self.in_quotes {
                self.since_newline = 0;
                continue;
            }
            self.since_newline += 1;
        }
        if self.since_newline > self.max_row {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                RowTooLong,
            ));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    #[test]
    fn post_attribution_topics_are_read_by_detection_date() {
        let today = date(2026, 11, 22);
        let (a, b) = (date(2026, 11, 15), date(2026, 11, 22));
        let d = request_dates("blocked_clicks_report", a, b, today);
        assert_eq!(
            d,
            [("from", "2026-11-15".into()), ("to", "2026-11-22".into())]
        );
        let d = request_dates("detection", a, b, today);
        assert_eq!(
            d,
            [
                ("from", "2026-09-24".into()),
                ("to", "2026-11-22".into()),
                ("detect-from", "2026-11-15".into()),
                ("detect-to", "2026-11-22".into()),
            ],
            "installs: 60 days back from the window's end"
        );
        // In-app events: 90 days ending on the window's last day.
        let d = request_dates("fraud-post-inapps", a, b, today);
        assert_eq!(d[0], ("from", "2026-08-25".into()));
        assert_eq!(d[2], ("detect-from", "2026-11-15".into()));
    }

    #[test]
    fn windows_are_at_most_31_days_inside_the_last_90() {
        let today = date(2026, 11, 22);
        let w = windows(date(2026, 1, 1), today, today);
        assert_eq!(
            w.first().unwrap().0,
            date(2026, 8, 24),
            "clipped to 90 days back"
        );
        assert_eq!(w.last().unwrap().1, today);
        for (a, b) in &w {
            assert!(days(*a, *b) <= 31, "{a}..{b}");
        }
        for pair in w.windows(2) {
            assert_eq!(
                pair[0].1.tomorrow().unwrap(),
                pair[1].0,
                "no gap, no overlap"
            );
        }
        assert_eq!(w.iter().map(|(a, b)| days(*a, *b)).sum::<i64>(), 91);
        assert_eq!(windows(today, today, today), vec![(today, today)]);
        assert!(windows(date(2026, 11, 23), today, today).is_empty());
    }

    #[test]
    fn csv_rows_keep_the_columns_entries_need() {
        let cols = super::super::config::Columns::default()
            .resolved(super::super::config::FeedKind::Protect360);
        let text = "\u{feff}Attributed Touch Time,IP,Advertising ID,IDFA,Site ID,Sub Site ID,Blocked Reason,Blocked Sub Reason\n\
                    2026-11-20 10:00:00,203.0.113.9,,ABCD-1,site7,sub\"x,Click Flood,\n\
                    \"2026-11-20 11:00:00\",\"198.51.100.1\",00000000-0000-0000-0000-000000000000,,site8,,\"Bots, Blocked\",ctit\n";
        let rows = parse_csv(text.as_bytes(), &cols, 1 << 20, 100).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].ip.as_deref(), Some("203.0.113.9"));
        assert_eq!(rows[0].devices, vec!["ABCD-1"]);
        assert_eq!(rows[0].affiliate.as_deref(), Some("site7"));
        assert_eq!(rows[0].reason.as_deref(), Some("Click Flood"));
        assert_eq!(
            rows[1].devices,
            Vec::<String>::new(),
            "the zero id is no device"
        );
        assert_eq!(rows[1].reason.as_deref(), Some("Bots, Blocked"));
        assert_eq!(rows[1].sub, None);
        let bad = parse_csv("a,b\n1,2\n".as_bytes(), &cols, 1 << 20, 100).unwrap_err();
        assert!(bad.to_string().contains("none of the columns"), "{bad}");
    }
}
