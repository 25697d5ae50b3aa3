//! Running a query on ClickHouse: the statement over HTTP with the
//! query's id (killed when the reader goes), rows read as they come.

use std::time::Duration;

use serde_json::Value;

use super::{QueryFailure, Stop, text_value};
use crate::decision_log::clickhouse::quote;
use crate::decision_log::clickhouse::{ClickHouseConfig, Driver, has_code, server_error};
use crate::query::Query;
use crate::query::sql::HIDDEN;

fn col_type(t: &str) -> (ColType, bool) {
    let (inner, nullable) = match t
        .strip_prefix("Nullable(")
        .and_then(|s| s.strip_suffix(')'))
    {
        Some(i) => (i, true),
        None => (t, false),
    };
    let kind = if inner.starts_with("Int") || inner.starts_with("UInt") {
        ColType::Int
    } else if inner.starts_with("Float") {
        ColType::Float
    } else {
        ColType::Text
    };
    (kind, nullable)
}

/// A TabSeparated field with its escapes undone.
fn unescape(field: &[u8]) -> String {
    let mut out = Vec::with_capacity(field.len());
    let mut it = field.iter().copied();
    while let Some(b) = it.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match it.next() {
            Some(b'n') => out.push(b'\n'),
            Some(b't') => out.push(b'\t'),
            Some(b'r') => out.push(b'\r'),
            Some(b'0') => out.push(0),
            Some(b'b') => out.push(8),
            Some(b'f') => out.push(12),
            Some(b'a') => out.push(7),
            Some(b'v') => out.push(11),
            Some(other) => out.push(other),
            None => out.push(b'\\'),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn value(name: &str, raw: &[u8], (kind, nullable): (ColType, bool)) -> Value {
    if nullable && raw == b"\\N" {
        return Value::Null;
    }
    let text = unescape(raw);
    match kind {
        ColType::Int => text
            .parse::<i64>()
            .map(Value::from)
            .or_else(|_| text.parse::<u64>().map(Value::from))
            .unwrap_or(Value::String(text)),
        // NaN (an average over no rows) is null, as in SQLite.
        ColType::Float => match text.parse::<f64>() {
            Ok(f) if f.is_finite() => Value::from(f),
            _ => Value::Null,
        },
        ColType::Text => text_value(name, &text),
    }
}

/// The columns of an empty source: the answer before the first batch has
/// created the table.
const EMPTY: &str = "(SELECT '' AS id, toInt64(0) AS ts, '' AS door, \
    CAST(NULL AS Nullable(String)) AS client, '' AS event_type, '' AS ip, '' AS ua, \
    '' AS affiliate_id, '' AS offer_id, CAST(NULL AS Nullable(String)) AS aff_sub1, \
    CAST(NULL AS Nullable(String)) AS aff_sub2, CAST(NULL AS Nullable(String)) AS aff_sub3, \
    CAST(NULL AS Nullable(String)) AS aff_sub4, CAST(NULL AS Nullable(String)) AS aff_sub5, \
    CAST(NULL AS Nullable(String)) AS country_code, CAST(NULL AS Nullable(String)) AS extra, \
    '' AS decision, '' AS would_be, '' AS mode, '' AS tags, toInt64(0) AS tag_mask, \
    toInt64(0) AS blocked_mask, '' AS source, '' AS reason, '' AS rules, toInt64(0) AS rule_mask, \
    '' AS ivt, '' AS ivt_category, toInt64(0) AS elapsed_us FROM system.one WHERE 0)";

/// ClickHouse's codes for an unknown table and an unknown database.
fn missing_table(text: &str) -> bool {
    has_code(text, 60) || has_code(text, 81)
}

/// Runs `q` on the server until `stop` and hands every row to `each`.
/// Blocking.
pub fn run(
    http: &reqwest::Client,
    config: &ClickHouseConfig,
    q: &Query,
    stop: &Stop,
    each: &mut dyn FnMut(&[String], Vec<Value>) -> bool,
) -> Result<(), QueryFailure> {
    let driver = Driver::new().map_err(QueryFailure::Store)?;
    let on = |source: &str, each: &mut dyn FnMut(&[String], Vec<Value>) -> bool| {
        // A query id of our own: a run that ends before the server's
        // answer does can name the query to cancel.
        let id = format!("fraudgate-{:032x}", rand::random::<u128>());
        let result = run_on(&driver, http, config, q, stop, source, &id, each);
        if matches!(
            result,
            Ok(false) | Err(QueryFailure::Timeout | QueryFailure::Gone)
        ) {
            // Stopped short (a failure, the deadline, the asker gone, or
            // `each` done): closing the connection cancels a query that
            // is sending, but not one still aggregating, so it is killed
            // by id too. Best effort, briefly: the server's own
            // max_execution_time bounds it anyway.
            kill(&driver, http, config, &id);
        }
        result.map(|_| ())
    };
    match on(&config.qualified(), each) {
        Err(QueryFailure::Store(e)) if missing_table(&e) => on(EMPTY, each),
        other => other,
    }
}

/// `KILL QUERY` of the run `id`, without waiting for it to end.
fn kill(driver: &Driver, http: &reqwest::Client, config: &ClickHouseConfig, id: &str) {
    let req = config
        .post(http, &[])
        .timeout(Duration::from_secs(2))
        .body(format!("KILL QUERY WHERE query_id = {} ASYNC", quote(id)));
    match driver.block_on(async { req.send().await }) {
        Ok(r) if r.status().is_success() => {}
        Ok(r) => tracing::warn!(status = %r.status(), "ClickHouse refused to kill a stopped query"),
        Err(e) => {
            tracing::warn!(error = %e.without_url(), "could not kill a stopped ClickHouse query")
        }
    }
}

/// One run; true when the server's answer was read to its end.
#[allow(clippy::too_many_arguments)]
fn run_on(
    driver: &Driver,
    http: &reqwest::Client,
    config: &ClickHouseConfig,
    q: &Query,
    stop: &Stop,
    source: &str,
    id: &str,
    each: &mut dyn FnMut(&[String], Vec<Value>) -> bool,
) -> Result<bool, QueryFailure> {
    stop.check()?;
    let sql = crate::query::clickhouse::build(q, source)?;
    // A constant last column: a row must end with it, so an error the
    // server writes after the rows began can never pass for a row.
    let sql = sql.replacen(" FROM ", &format!(", 1 AS \"{END}\" FROM "), 1);
    let sql = format!("{sql} FORMAT TabSeparatedWithNamesAndTypes");
    let left = stop.remaining();
    let secs = left.as_secs_f64().ceil().max(1.0).to_string();
    // readonly = 2: no writes, but settings (the time limit) may be set.
    let req = config
        .post(
            http,
            &[
                ("readonly", "2"),
                ("max_execution_time", secs.as_str()),
                ("query_id", id),
            ],
        )
        .timeout(left + Duration::from_secs(2))
        .body(sql);
    let store = |e: reqwest::Error| {
        if e.is_timeout() {
            QueryFailure::Timeout
        } else {
            QueryFailure::Store(e.without_url().to_string())
        }
    };
    let failure = |text: &str| {
        if has_code(text, 159) {
            QueryFailure::Timeout
        } else {
            QueryFailure::Store(text.to_owned())
        }
    };
    // Futures are made inside the runtime (reqwest arms timers when
    // made); each wait also ends when `stop` says so.
    let mut resp = driver
        .block_on(async { until(stop, req.send()).await })?
        .map_err(store)?;
    let status = resp.status();
    if !status.is_success() {
        let body = driver
            .block_on(async { until(stop, resp.text()).await })?
            .map_err(store)?;
        return Err(failure(&server_error(status, &body)));
    }
    let mut names: Vec<String> = Vec::new();
    let mut shown: Vec<String> = Vec::new();
    let mut types: Vec<(ColType, bool)> = Vec::new();
    let mut header = 0;
    let mut buf: Vec<u8> = Vec::new();
    // One chunk at a time inside the runtime; the rows are handed to
    // `each` outside it (it may block on a full channel).
    while let Some(chunk) = driver
        .block_on(async { until(stop, resp.chunk()).await })?
        .map_err(store)?
    {
        buf.extend_from_slice(&chunk);
        let mut start = 0;
        while let Some(n) = buf[start..].iter().position(|b| *b == b'\n') {
            let line = &buf[start..start + n];
            start += n + 1;
            let fields: Vec<&[u8]> = line.split(|b| *b == b'\t').collect();
            match header {
                0 => {
                    names = fields.iter().map(|f| unescape(f)).collect();
                    shown = names
                        .iter()
                        .filter(|n| *n != HIDDEN && *n != END)
                        .cloned()
                        .collect();
                    header = 1;
                }
                1 => {
                    types = fields.iter().map(|f| col_type(&unescape(f))).collect();
                    header = 2;
                }
                _ => {
                    if fields.len() != names.len() || fields.last() != Some(&&b"1"[..]) {
                        // An error the server wrote after the rows began.
                        return Err(failure(&String::from_utf8_lossy(line)));
                    }
                    let row = fields
                        .iter()
                        .zip(&names)
                        .zip(&types)
                        .filter(|((_, n), _)| *n != HIDDEN && *n != END)
                        .map(|((f, n), t)| value(n, f, *t))
                        .collect();
                    if !each(&shown, row) {
                        return Ok(false);
                    }
                }
            }
        }
        buf.drain(..start);
    }
    if !buf.is_empty() || header < 2 {
        return Err(failure(&String::from_utf8_lossy(&buf)));
    }
    Ok(true)
}

/// `f`, or the reason `stop` gives first.
async fn until<F: Future>(stop: &Stop, f: F) -> Result<F::Output, QueryFailure> {
    tokio::select! {
        r = f => Ok(r),
        e = stop.stopped() => Err(e),
    }
}

/// The constant last column of every query (see [`run_on`]).
const END: &str = "__end";

/// One column's type in a `...WithNamesAndTypes` answer.
#[derive(Debug, Clone, Copy, PartialEq)]
enum ColType {
    Int,
    Float,
    Text,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tab_separated_values_are_typed_and_unescaped() {
        assert_eq!(unescape(br"a\tb\\c\'d\n"), "a\tb\\c'd\n");
        let s = (ColType::Text, true);
        assert_eq!(value("ip", br"\N", s), Value::Null);
        assert_eq!(value("count", b"42", col_type("UInt64")), 42);
        assert_eq!(value("block_rate", b"50", col_type("Float64")), 50.0);
        assert_eq!(
            value("avg_elapsed_us", b"nan", col_type("Float64")),
            Value::Null
        );
        assert_eq!(
            value("rules", br#"[{"kind":"crawler_ua"}]"#, col_type("String")),
            serde_json::json!([{"kind": "crawler_ua"}])
        );
        assert_eq!(col_type("Nullable(UInt64)"), (ColType::Int, true));
    }
}
