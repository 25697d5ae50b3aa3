//! `fraudgate query` and `fraudgate report`: the Data API and the reports
//! for people at a terminal, read straight from the local store and
//! printed as a table (or JSON lines / CSV with `format=`).
//!
//! ```text
//! fraudgate query click field=datetime,ip,affiliate_id,decision,tags page_size=20
//! fraudgate query all --groups group=affiliate_id field=count,blocked,block_rate sort=block_rate_desc
//! fraudgate report fraud 'group[]=affiliate_id' date_start=2026-11-01 date_end=2026-11-22
//! ```
//!
//! Parameters are the HTTP ones, `name=value` each (values taken as they
//! are: no URL encoding needed).

pub mod feeds;
pub mod rescore;

use comfy_table::{ContentArrangement, Table};
use serde_json::{Map, Value};

use crate::config::Config;
use crate::query::exec::{QueryFailure, Reader};
use crate::query::report::{Kind, shape_row};
use crate::query::{Events, Query, QueryError};

/// Builds the raw query string of `name=value` arguments.
fn raw_query(args: &[String]) -> Result<String, String> {
    let mut q = form_urlencoded::Serializer::new(String::new());
    for a in args {
        let (k, v) = a
            .split_once('=')
            .ok_or_else(|| format!("{a:?}: parameters are name=value"))?;
        q.append_pair(k, v);
    }
    Ok(q.finish())
}

fn format_of(raw: &str) -> &'static str {
    match form_urlencoded::parse(raw.as_bytes()).find(|(k, _)| k == "format") {
        Some((_, v)) if v == "csv" => "csv",
        Some((_, v)) if v == "json" => "json",
        _ => "table",
    }
}

fn bad(e: QueryError) -> String {
    format!("{}: {}", e.field, e.message)
}

/// `fraudgate query <click|impression|all> [--groups] name=value...`
pub fn query(config: &Config, event: &str, groups: bool, params: &[String]) -> Result<(), String> {
    let raw = raw_query(params)?;
    let events = Events::parse(event).map_err(bad)?;
    let q = Query::from_params(events, &raw, groups).map_err(bad)?;
    let rows = collect(config, &q)?;
    print(&q.columns(), rows, format_of(&raw));
    Ok(())
}

/// `fraudgate report <fraud|global|interval> name=value...`
pub fn report(config: &Config, kind: &str, params: &[String]) -> Result<(), String> {
    let kind = Kind::parse(kind).ok_or_else(|| format!("{kind:?}: fraud, global or interval"))?;
    let raw = raw_query(params)?;
    let q = crate::query::report::query(kind, &raw).map_err(bad)?;
    let rows: Vec<Map<String, Value>> = collect(config, &q)?
        .into_iter()
        .map(|r| match shape_row(kind, r) {
            Value::Object(m) => m,
            _ => Map::new(),
        })
        .collect();
    let columns = crate::query::report::columns(&rows);
    print(&columns, rows, format_of(&raw));
    Ok(())
}

fn collect(config: &Config, q: &Query) -> Result<Vec<Map<String, Value>>, String> {
    require_log(&config.decision_log)?;
    let reader = Reader::new(&config.decision_log);
    let (stop, _asker) = reader.stop();
    reader.collect(q, &stop).map_err(|e| match e {
        QueryFailure::Bad(e) => bad(e),
        other => other.to_string(),
    })
}

/// An embedded store that is not there is an error, not zero rows: the
/// CLI was likely run from another directory than `serve`, or with another
/// config.
pub(crate) fn require_log(c: &crate::decision_log::DecisionLogConfig) -> Result<(), String> {
    if c.store != crate::decision_log::Store::Sqlite {
        return Ok(());
    }
    let file = std::path::Path::new(&c.path).join(crate::decision_log::sqlite::FILE);
    if file.is_file() {
        return Ok(());
    }
    let shown = std::path::absolute(&c.path).unwrap_or_else(|_| c.path.clone().into());
    Err(format!(
        "no decision log at {} (decision_log.path = {:?}, relative to the working directory \
         unless set in a --config file); run where serve runs, or pass its --config \
         (or FRAUDGATE_CONFIG)",
        shown.display(),
        c.path
    ))
}

use crate::query::report::cell;

fn print(columns: &[String], rows: Vec<Map<String, Value>>, format: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    // A reader that stops early (`| head`) ends the output quietly, not
    // with a panic.
    let _ = match format {
        "json" => rows
            .into_iter()
            .try_for_each(|r| writeln!(out, "{}", Value::Object(r))),
        "csv" => out.write_all(crate::query::csv::table(columns, &rows).as_bytes()),
        _ => {
            let mut t = Table::new();
            t.set_content_arrangement(ContentArrangement::Dynamic)
                .set_header(columns.iter().map(String::as_str));
            let n = rows.len();
            for r in &rows {
                t.add_row(columns.iter().map(|c| cell(r.get(c))));
            }
            writeln!(out, "{t}")
                .and_then(|()| writeln!(out, "{n} row{}", if n == 1 { "" } else { "s" }))
        }
    };
}
