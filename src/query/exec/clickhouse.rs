//! Running a query on ClickHouse: the statement over HTTP with the
//! query's id (killed when the reader goes), rows read as they come.

use std::time::Duration;

use serde_json::Value;

use super::{QueryFailure, Stop, text_value};
use crate::decision_log::clickhouse::insert_path::{self, InsertPath, ReadPath};
use crate::decision_log::clickhouse::quote;
use crate::decision_log::clickhouse::{ClickHouseConfig, Driver, has_code, server_error};
use crate::query::sql::HIDDEN;
use crate::query::{Expr, Op, Query, Scalar, Shape, field};

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
    '' AS ivt, '' AS ivt_category, toInt64(0) AS elapsed_us, toInt64(0) AS at \
    FROM system.one WHERE 0)";

/// ClickHouse's codes for an unknown table and an unknown database.
fn missing_table(text: &str) -> bool {
    has_code(text, 60) || has_code(text, 81)
}

/// Runs `q` on the server until `stop` and hands every row to `each`.
/// Blocking.
pub fn run(
    (http, config, path): (&reqwest::Client, &ClickHouseConfig, &ReadPath),
    q: &Query,
    stop: &Stop,
    each: &mut dyn FnMut(&[String], Vec<Value>) -> bool,
) -> Result<(), QueryFailure> {
    let driver = Driver::new().map_err(QueryFailure::Store)?;
    let server = Server {
        driver: &driver,
        http,
        config,
    };
    let keyed;
    let q = match by_id(q) {
        Some(lookup) => match server.key_of(&lookup, stop)? {
            Some(Some(key)) => {
                keyed = with_key(q, key);
                &keyed
            }
            // Not in the index: a decision of a table whose copy into
            // the index did not finish, or none (an unknown id). The
            // plain query answers either (a read of the id's day).
            Some(None) | None => q,
        },
        None => q,
    };
    // Through the Buffer table when the writers insert through it (it
    // reads the table and the rows it holds); the table when there is no
    // Buffer (yet); no rows when there is no table (yet).
    let table = config.qualified();
    let buffer = insert_path::buffer_table(config);
    let sources: &[&str] = match server.path(path, stop)? {
        InsertPath::Buffer => &[&buffer, &table, EMPTY],
        InsertPath::Direct | InsertPath::Async => &[&table, EMPTY],
    };
    let mut result = Ok(());
    for source in sources {
        result = server.run(q, stop, source, each);
        match &result {
            Err(QueryFailure::Store(e)) if missing_table(e) => continue,
            _ => break,
        }
    }
    result
}

/// A decision looked up by its id and millisecond (`ts = .. AND id =
/// ..`, as entries and the funnel ask): the query of its key in the id
/// index.
fn by_id(q: &Query) -> Option<Query> {
    let Some(Expr::And(ops)) = &q.filter else {
        return None;
    };
    let is = |e: &Expr, name: &str| matches!(e, Expr::Cmp { name: n, op: Op::Eq, values } if n == name && values.len() == 1);
    if !matches!(q.shape, Shape::List(_))
        || ops.len() != 2
        || !is(&ops[0], "ts")
        || !is(&ops[1], "id")
    {
        return None;
    }
    Some(Query {
        shape: Shape::List(
            ["event_type", "affiliate_id", "offer_id"]
                .iter()
                .filter_map(|n| field(n))
                .collect(),
        ),
        page: 1,
        page_size: 1,
        sort: Vec::new(),
        ..q.clone()
    })
}

/// `q` with the decision's whole sort key: one seek on the table.
fn with_key(q: &Query, key: [String; 3]) -> Query {
    let mut q = q.clone();
    if let Some(Expr::And(ops)) = &mut q.filter {
        for (name, value) in ["event_type", "affiliate_id", "offer_id"].iter().zip(key) {
            ops.insert(
                0,
                Expr::Cmp {
                    name: (*name).into(),
                    op: Op::Eq,
                    values: vec![Scalar::Text(value)],
                },
            );
        }
    }
    q
}

/// The server a run talks to, and how it waits for it.
struct Server<'a> {
    driver: &'a Driver,
    http: &'a reqwest::Client,
    config: &'a ClickHouseConfig,
}

impl Server<'_> {
    /// How the writers insert: the configured path, or for `auto` the one
    /// the server's version calls for (asked once per reader).
    fn path(&self, path: &ReadPath, stop: &Stop) -> Result<InsertPath, QueryFailure> {
        let mode = self.config.insert;
        if let Some(p) = path.get() {
            return Ok(p);
        }
        if !mode.needs_version() {
            return Ok(mode.resolve(None));
        }
        let id = format!("fraudgate-{:032x}", rand::random::<u128>());
        let resp = self.send(insert_path::VERSION.into(), stop, &id)?;
        let text = self.wait(stop, || resp.text())?.map_err(transport)?;
        let p = mode.resolve(insert_path::parse_version(&text));
        path.set(p);
        Ok(p)
    }

    /// The (event type, affiliate, offer) of the decision `lookup` names,
    /// from the id index: `Some(None)` when no decision has the id, None
    /// when there is no index to ask.
    fn key_of(
        &self,
        lookup: &Query,
        stop: &Stop,
    ) -> Result<Option<Option<[String; 3]>>, QueryFailure> {
        let mut key = None;
        let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        let found = self.run(lookup, stop, &self.config.ids_table(), &mut |_, row| {
            if let [t, a, o] = row.as_slice() {
                key = Some([text(t), text(a), text(o)]);
            }
            // (One row: read to the end, nothing to cancel.)
            true
        });
        match found {
            Ok(()) => Ok(Some(key)),
            Err(QueryFailure::Store(e)) if missing_table(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// One run over `source`, killed on the server if it stops short.
    fn run(
        &self,
        q: &Query,
        stop: &Stop,
        source: &str,
        each: &mut dyn FnMut(&[String], Vec<Value>) -> bool,
    ) -> Result<(), QueryFailure> {
        // A query id of our own: a run that ends before the server's
        // answer does can name the query to cancel.
        let id = format!("fraudgate-{:032x}", rand::random::<u128>());
        let result = self.run_on(q, stop, source, &id, each);
        if matches!(
            result,
            Ok(false) | Err(QueryFailure::Timeout | QueryFailure::Gone)
        ) {
            // Stopped short (a failure, the deadline, the asker gone, or
            // `each` done): closing the connection cancels a query that
            // is sending, but not one still aggregating, so it is killed
            // by id too. Best effort, briefly: the server's own
            // max_execution_time bounds it anyway.
            self.kill(&id);
        }
        result.map(|_| ())
    }

    /// `KILL QUERY` of the run `id`, without waiting for it to end.
    fn kill(&self, id: &str) {
        let req = self
            .config
            .post(self.http, &[])
            .timeout(Duration::from_secs(2))
            .body(format!("KILL QUERY WHERE query_id = {} ASYNC", quote(id)));
        match self.driver.block_on(async { req.send().await }) {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => {
                tracing::warn!(status = %r.status(), "ClickHouse refused to kill a stopped query")
            }
            Err(e) => {
                tracing::warn!(error = %e.without_url(), "could not kill a stopped ClickHouse query")
            }
        }
    }

    /// One run; true when the server's answer was read to its end.
    fn run_on(
        &self,
        q: &Query,
        stop: &Stop,
        source: &str,
        id: &str,
        each: &mut dyn FnMut(&[String], Vec<Value>) -> bool,
    ) -> Result<bool, QueryFailure> {
        stop.check()?;
        let mut resp = self.send(statement(q, source)?, stop, id)?;
        let mut answer = Answer::default();
        let mut buf: Vec<u8> = Vec::new();
        // One chunk at a time inside the runtime; the rows are handed to
        // `each` outside it (it may block on a full channel).
        while let Some(chunk) = self.wait(stop, || resp.chunk())?.map_err(transport)? {
            buf.extend_from_slice(&chunk);
            let mut start = 0;
            while let Some(n) = buf[start..].iter().position(|b| *b == b'\n') {
                let line = &buf[start..start + n];
                start += n + 1;
                if let Some(row) = answer.read(line)?
                    && !each(&answer.shown, row)
                {
                    return Ok(false);
                }
            }
            buf.drain(..start);
        }
        if !buf.is_empty() || !answer.has_header() {
            return Err(server_failure(&String::from_utf8_lossy(&buf)));
        }
        Ok(true)
    }

    /// Sends `sql` as the query `id`, limited to the time `stop` leaves;
    /// the response once its status says the rows follow.
    fn send(&self, sql: String, stop: &Stop, id: &str) -> Result<reqwest::Response, QueryFailure> {
        let left = stop.remaining();
        let secs = left.as_secs_f64().ceil().max(1.0).to_string();
        // readonly = 2: no writes, but settings (the time limit) may be set.
        let req = self
            .config
            .post(
                self.http,
                &[
                    ("readonly", "2"),
                    ("max_execution_time", secs.as_str()),
                    ("query_id", id),
                ],
            )
            .timeout(left + Duration::from_secs(2))
            .body(sql);
        let resp = self.wait(stop, || req.send())?.map_err(transport)?;
        let status = resp.status();
        if !status.is_success() {
            let body = self.wait(stop, || resp.text())?.map_err(transport)?;
            return Err(server_failure(&server_error(status, &body)));
        }
        Ok(resp)
    }

    /// The future `make` makes, driven to its end, or the reason `stop`
    /// gives first. The future is made inside the runtime: reqwest arms
    /// its timers when it makes one.
    fn wait<F: Future>(
        &self,
        stop: &Stop,
        make: impl FnOnce() -> F,
    ) -> Result<F::Output, QueryFailure> {
        self.driver.block_on(async { until(stop, make()).await })
    }
}

/// The statement of `q` over `source`, as TabSeparatedWithNamesAndTypes
/// with a constant last column: a row must end with it, so an error the
/// server writes after the rows began can never pass for a row.
fn statement(q: &Query, source: &str) -> Result<String, QueryFailure> {
    let sql = crate::query::clickhouse::build(q, source)?;
    let sql = sql.replacen(" FROM ", &format!(", 1 AS \"{END}\" FROM "), 1);
    Ok(format!("{sql} FORMAT TabSeparatedWithNamesAndTypes"))
}

/// A transport failure: past the request's deadline, or the store's.
fn transport(e: reqwest::Error) -> QueryFailure {
    if e.is_timeout() {
        QueryFailure::Timeout
    } else {
        QueryFailure::Store(e.without_url().to_string())
    }
}

/// An error the server answered: its time limit, or the store's.
fn server_failure(text: &str) -> QueryFailure {
    if has_code(text, 159) {
        QueryFailure::Timeout
    } else {
        QueryFailure::Store(text.to_owned())
    }
}

/// A `TabSeparatedWithNamesAndTypes` answer, read a line at a time: the
/// names, the types, then the rows.
#[derive(Default)]
struct Answer {
    names: Vec<String>,
    /// The names handed on: all but the hidden and the end column.
    shown: Vec<String>,
    types: Vec<(ColType, bool)>,
    /// Header lines read so far.
    header: u8,
}

impl Answer {
    fn has_header(&self) -> bool {
        self.header == 2
    }

    /// Reads one line: a row's shown values, once the header is read.
    fn read(&mut self, line: &[u8]) -> Result<Option<Vec<Value>>, QueryFailure> {
        let fields: Vec<&[u8]> = line.split(|b| *b == b'\t').collect();
        match self.header {
            0 => {
                self.names = fields.iter().map(|f| unescape(f)).collect();
                self.shown = self.names.iter().filter(|n| shown(n)).cloned().collect();
                self.header = 1;
                Ok(None)
            }
            1 => {
                self.types = fields.iter().map(|f| col_type(&unescape(f))).collect();
                self.header = 2;
                Ok(None)
            }
            _ => {
                if fields.len() != self.names.len() || fields.last() != Some(&&b"1"[..]) {
                    // An error the server wrote after the rows began.
                    return Err(server_failure(&String::from_utf8_lossy(line)));
                }
                Ok(Some(
                    fields
                        .iter()
                        .zip(&self.names)
                        .zip(&self.types)
                        .filter(|((_, n), _)| shown(n))
                        .map(|((f, n), t)| value(n, f, *t))
                        .collect(),
                ))
            }
        }
    }
}

/// Whether a column is handed on: not the hidden sort column, not the
/// end column.
fn shown(name: &str) -> bool {
    name != HIDDEN && name != END
}

/// `f`, or the reason `stop` gives first.
async fn until<F: Future>(stop: &Stop, f: F) -> Result<F::Output, QueryFailure> {
    tokio::select! {
        r = f => Ok(r),
        e = stop.stopped() => Err(e),
    }
}

/// The constant last column of every query (see [`statement`]).
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
