//! The ClickHouse store, for when one machine is outgrown: the writer
//! batches inserts over ClickHouse's HTTP interface (`INSERT ... FORMAT
//! RowBinary`, through the reqwest client already in the tree), creates
//! the table if missing (ReplacingMergeTree keyed by the decision id, so
//! a batch the server committed twice reads once with `FINAL` and merges
//! to once; partitioned by UTC day, ordered for the common filters), and
//! drops whole day partitions for retention.
//! Queries are the same query model as SQLite's, in ClickHouse's dialect
//! (`query::clickhouse`), answered as `TabSeparatedWithNamesAndTypes`
//! and streamed row by row.
//!
//! Kept to what Debian's ClickHouse 18.16 and current releases share: no
//! server-side parameters (values are escaped literals), no
//! `DateTime64`, no `LowCardinality`, no TTL.
//!
//! Here: the store's handle, which the read side (`query::exec`) shares
//! (its config, the HTTP client, a driver for blocking code, the server's
//! error answers, quoting); the writer's table in `schema`, its inserts
//! in `write` and `row_binary`, and how inserts reach the table when many
//! replicas write it (a `Buffer` table or `async_insert`) in
//! `insert_path`.

pub mod insert_path;
mod row_binary;
mod schema;
mod write;

use std::future::Future;
use std::time::Duration;

use serde::Deserialize;

use crate::secret::Secret;
pub use insert_path::{InsertMode, InsertPath, ReadPath};
pub use write::Writer;

/// `[decision_log.clickhouse]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClickHouseConfig {
    /// The HTTP interface, e.g. `http://127.0.0.1:8123`.
    pub url: String,
    pub database: String,
    pub table: String,
    pub user: String,
    pub password: Secret,
    /// One insert (or DDL) call's time limit.
    pub timeout_ms: u64,
    /// How batches reach the table: `auto` (by the server's version:
    /// `async` from 21.11, `buffer` before), `direct`, `buffer` or
    /// `async` (see `insert_path`).
    pub insert: InsertMode,
}

impl ClickHouseConfig {
    /// Checks what goes into URLs and SQL as names.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let url = reqwest::Url::parse(&self.url).map_err(|e| {
            (
                "decision_log.clickhouse.url",
                format!("{:?}: {e}", self.url),
            )
        })?;
        if !matches!(url.scheme(), "http" | "https") || url.query().is_some() {
            return Err((
                "decision_log.clickhouse.url",
                "an http(s) URL of the HTTP interface, without a query".into(),
            ));
        }
        for (key, name) in [
            ("decision_log.clickhouse.database", &self.database),
            ("decision_log.clickhouse.table", &self.table),
        ] {
            let ok = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !ok {
                return Err((key, format!("{name:?}: letters, digits and _ only")));
            }
        }
        if self.timeout_ms == 0 {
            return Err(("decision_log.clickhouse.timeout_ms", "must be > 0".into()));
        }
        Ok(())
    }

    pub(crate) fn qualified(&self) -> String {
        format!("{}.{}", self.database, self.table)
    }

    /// The id index beside the table (`<table>_ids`, see `schema`).
    pub(crate) fn ids_table(&self) -> String {
        format!("{}.{}_ids", self.database, self.table)
    }

    fn endpoint(&self, params: &[(&str, &str)]) -> String {
        let mut u = self.url.trim_end_matches('/').to_owned();
        u.push('/');
        let q = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish();
        if !q.is_empty() {
            u.push('?');
            u.push_str(&q);
        }
        u
    }

    pub(crate) fn post(
        &self,
        http: &reqwest::Client,
        params: &[(&str, &str)],
    ) -> reqwest::RequestBuilder {
        // Credentials go in a header, never in the URL (which errors print).
        http.post(self.endpoint(params))
            .basic_auth(&self.user, Some(self.password.expose()))
    }
}

/// The HTTP client for ClickHouse: pooled, plain or TLS.
pub fn client() -> reqwest::Client {
    crate::transport::install_crypto_provider();
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(2))
        // Under ClickHouse's keep_alive_timeout (3 s by default): a pooled
        // connection the server has closed is never reused, so a batch
        // after an idle spell does not fail its first try.
        .pool_idle_timeout(Duration::from_secs(2))
        .tcp_nodelay(true)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("fraudgate/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_default()
}

/// Drives futures from blocking code: on the runtime of the current
/// thread's context (a Data API blocking thread), or on a runtime of its
/// own (the CLI). Each `block_on` returns before the caller's code runs
/// again, so that code may block (a channel send) outside any async
/// context.
pub(crate) enum Driver {
    Handle(tokio::runtime::Handle),
    Own(tokio::runtime::Runtime),
}

impl Driver {
    pub(crate) fn new() -> Result<Self, String> {
        match tokio::runtime::Handle::try_current() {
            Ok(h) => Ok(Driver::Handle(h)),
            Err(_) => tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map(Driver::Own)
                .map_err(|e| e.to_string()),
        }
    }

    pub(crate) fn block_on<F: Future>(&self, f: F) -> F::Output {
        match self {
            Driver::Handle(h) => h.block_on(f),
            Driver::Own(rt) => rt.block_on(f),
        }
    }
}

/// ClickHouse's error code `n` in an answer, in the 18.x (`Code: 60,`) and
/// the current (`Code: 60.`) formats.
pub(crate) fn has_code(text: &str, n: u32) -> bool {
    let tag = format!("Code: {n}");
    text.match_indices(&tag)
        .any(|(i, _)| matches!(text[i + tag.len()..].chars().next(), Some(',' | '.')))
}

/// A ClickHouse error answer, shortened to its first line (the SQL it may
/// echo holds only values the caller gave, never a credential).
pub(crate) fn server_error(status: reqwest::StatusCode, body: &str) -> String {
    let line = body.lines().next().unwrap_or("").trim();
    let line: String = line.chars().take(300).collect();
    format!("ClickHouse answered {status}: {line}")
}

/// A string literal: quoted, with `\` and `'` (and control bytes)
/// escaped, so no value can end the literal.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\0' => out.push_str("\\0"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        let ok = ClickHouseConfig {
            url: "http://127.0.0.1:8123".into(),
            database: "fraudgate".into(),
            table: "decisions".into(),
            user: "default".into(),
            password: Secret::new(""),
            timeout_ms: 1000,
            insert: InsertMode::Auto,
        };
        assert!(ok.validate().is_ok());
        let bad = ClickHouseConfig {
            table: "d; DROP TABLE x".into(),
            ..ok.clone()
        };
        assert_eq!(
            bad.validate().unwrap_err().0,
            "decision_log.clickhouse.table"
        );
        let bad = ClickHouseConfig {
            url: "ftp://x".into(),
            ..ok
        };
        assert_eq!(bad.validate().unwrap_err().0, "decision_log.clickhouse.url");
    }
}
