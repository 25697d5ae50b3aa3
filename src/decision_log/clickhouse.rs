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

use std::future::Future;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use serde::Deserialize;

#[cfg(test)]
use super::Row;
use super::columns::{self, AFF_SUBS, ip_text};
use super::ivt::IvtMap;
use super::record::Record;
use super::{IpMode, LogError};
use crate::event::Opt;
use crate::secret::Secret;

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
    crate::upstream::install_crypto_provider();
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(2))
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

const DDL_COLUMNS: &str = "id String, ts Int64, door String, client Nullable(String), \
    event_type String, ip String, ua String, affiliate_id String, offer_id String, \
    aff_sub1 Nullable(String), aff_sub2 Nullable(String), aff_sub3 Nullable(String), \
    aff_sub4 Nullable(String), aff_sub5 Nullable(String), country_code Nullable(String), \
    extra Nullable(String), decision String, would_be String, mode String, tags String, \
    tag_mask Int64, blocked_mask Int64, source String, reason String, rules String, \
    rule_mask Int64, ivt String, ivt_category String, elapsed_us Int64";

/// ClickHouse's `RowBinary`: values in column order, no names and no
/// escaping (measured: JSONEachRow was half of the writer's time).
/// `String` is its LEB128 length and bytes, `Nullable` a 1 (NULL) or a 0
/// and the value, `Int64` eight bytes little-endian.
struct RowBinary<'a>(&'a mut BytesMut);

impl RowBinary<'_> {
    fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }

    /// A length as LEB128.
    fn len(&mut self, n: usize) {
        let mut n = n as u64;
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                self.0.put_u8(byte);
                break;
            }
            self.0.put_u8(byte | 0x80);
        }
    }

    fn opt(&mut self, s: Option<&str>) {
        match s {
            None => self.0.put_u8(1),
            Some(s) => {
                self.0.put_u8(0);
                self.str(s);
            }
        }
    }

    fn int(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    /// One decision's row, written from its record as it is: no copy of
    /// its strings, the id, IP, tags and rules formatted into `scratch`
    /// (measured: building a `Row` first was about half of the writer's
    /// time a decision).
    fn record(
        &mut self,
        r: &Record,
        ivt: &IvtMap,
        (ip, salt): (IpMode, Option<&[u8; 32]>),
        scratch: &mut Vec<u8>,
    ) {
        let e = &r.event;
        self.bytes(&r.id.hyphenated());
        self.int(r.ts_ms());
        self.str(r.door.as_str());
        self.opt(r.client.as_deref());
        self.str(e.event_type.as_str());
        self.str(ip_text(e.ip, ip, salt).as_str());
        self.str(e.ua());
        self.str(e.affiliate_id());
        self.str(e.offer_id());
        for sub in AFF_SUBS {
            self.opt(e.get(sub));
        }
        self.opt(e.get(Opt::CountryCode));
        self.opt(columns::extra(r.event.optional()).as_deref());
        self.str(r.decision.as_str());
        self.str(r.would_be.as_str());
        self.str(r.mode.as_str());
        scratch.clear();
        for (i, t) in r.tags.iter().enumerate() {
            if i > 0 {
                scratch.push(b',');
            }
            scratch.extend_from_slice(t.as_bytes());
        }
        self.bytes(scratch);
        self.int(i64::from(r.tags.known_mask()));
        self.int(i64::from(r.blocked_by.known_mask()));
        self.str(r.source.as_str());
        self.str(r.reason);
        scratch.clear();
        if !r.rules.is_empty() && serde_json::to_writer(&mut *scratch, &r.rules).is_err() {
            scratch.clear();
        }
        if scratch.is_empty() {
            // No rule fired (most decisions): no serializer.
            scratch.extend_from_slice(b"[]");
        }
        self.bytes(scratch);
        self.int(columns::rule_mask(&r.rules));
        let class = ivt.classify(&r.rules, &r.tags);
        self.str(class.class.as_str());
        self.str(&class.category);
        self.int(r.elapsed_us as i64);
    }

    /// A `String` from bytes that are UTF-8 (written from `&str`s).
    fn bytes(&mut self, b: &[u8]) {
        self.len(b.len());
        self.0.extend_from_slice(b);
    }

    #[cfg(test)]
    fn row(&mut self, r: &Row) {
        self.str(&r.id);
        self.int(r.ts);
        self.str(r.door);
        self.opt(r.client.as_deref());
        self.str(r.event_type);
        self.str(&r.ip);
        self.str(&r.ua);
        self.str(&r.affiliate_id);
        self.str(&r.offer_id);
        for sub in &r.aff_sub {
            self.opt(sub.as_deref());
        }
        self.opt(r.country_code.as_deref());
        self.opt(r.extra.as_deref());
        self.str(r.decision);
        self.str(r.would_be);
        self.str(r.mode);
        self.str(&r.tags);
        self.int(r.tag_mask);
        self.int(r.blocked_mask);
        self.str(r.source);
        self.str(r.reason);
        self.str(&r.rules);
        self.int(r.rule_mask);
        self.str(r.ivt);
        self.str(&r.ivt_category);
        self.int(r.elapsed_us);
    }
}

/// The writer's side. Runs on the decision-log thread, with a runtime of
/// its own for the HTTP calls.
pub struct Writer {
    config: ClickHouseConfig,
    http: Option<(tokio::runtime::Runtime, reqwest::Client)>,
    /// The table is known to exist.
    ready: bool,
    ivt: IvtMap,
    ip: IpMode,
    salt: Option<[u8; 32]>,
    retention_days: u32,
    last_retention: Option<i64>,
    /// The insert's rows. Kept across batches: once a request has let go
    /// of its payload, the next batch reuses the allocation (measured: a
    /// fresh multi-megabyte buffer each batch, its pages faulted in and
    /// zeroed by the kernel, was a third of the writer's time).
    body: BytesMut,
    /// The last insert's size: what the next one reserves.
    last_len: usize,
}

impl Writer {
    /// Never reaches the server: a ClickHouse that is down at startup
    /// only delays the first batch (which waits and retries).
    pub fn new(config: ClickHouseConfig, ivt: IvtMap, ip: IpMode, retention_days: u32) -> Self {
        Writer {
            config,
            http: None,
            ready: false,
            ivt,
            ip,
            salt: None,
            retention_days,
            last_retention: None,
            body: BytesMut::new(),
            last_len: 0,
        }
    }

    pub fn set_salt(&mut self, salt: Option<[u8; 32]>) {
        self.salt = salt;
    }

    /// One statement in `body` (DDL, ALTER, or a SELECT whose text answer
    /// is returned), or an insert: the statement in `params`, the rows in
    /// `body`.
    fn call(&mut self, params: &[(&str, &str)], body: Bytes) -> Result<String, LogError> {
        if self.http.is_none() {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| LogError::Write(e.to_string()))?;
            self.http = Some((rt, client()));
        }
        let Some((rt, http)) = &self.http else {
            unreachable!("set above")
        };
        let req = self
            .config
            .post(http, params)
            .timeout(Duration::from_millis(self.config.timeout_ms))
            .body(body);
        rt.block_on(async move {
            let resp = req
                .send()
                .await
                .map_err(|e| LogError::Write(e.without_url().to_string()))?;
            let status = resp.status();
            let text = resp
                .text()
                .await
                .map_err(|e| LogError::Write(e.without_url().to_string()))?;
            if status.is_success() {
                Ok(text)
            } else {
                Err(LogError::Write(server_error(status, &text)))
            }
        })
    }

    fn ensure_table(&mut self) -> Result<(), LogError> {
        if self.ready {
            return Ok(());
        }
        let db = format!("CREATE DATABASE IF NOT EXISTS {}", self.config.database);
        self.call(&[], db.into())?;
        // Partitions are UTC days (dropped whole for retention); the sort
        // key serves the common filters and groups: event type, affiliate,
        // offer, then time, and ends in the id. ReplacingMergeTree: an
        // insert that timed out may still be committed by the server (one
        // that froze and resumed) after the writer sent it again, and the
        // rows of one decision are identical, so merges keep one of them
        // and `FINAL` reads one (18.16 has no insert deduplication for a
        // table that is not replicated; see docs/decision-log.md).
        let ddl = format!(
            "CREATE TABLE IF NOT EXISTS {} ({DDL_COLUMNS}) ENGINE = ReplacingMergeTree \
             PARTITION BY intDiv(ts, 86400000) \
             ORDER BY (event_type, affiliate_id, offer_id, ts, id)",
            self.config.qualified()
        );
        self.call(&[], ddl.into())?;
        self.ready = true;
        Ok(())
    }

    /// Inserts a batch in one call. On error nothing is assumed written:
    /// the caller retries the whole batch.
    pub fn write(&mut self, batch: &[Record]) -> Result<(), LogError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.ensure_table()?;
        self.body.clear();
        // (Reclaims the previous batch's buffer when its request is done
        // with it.)
        self.body.reserve(self.last_len);
        let mut scratch = Vec::new();
        for r in batch {
            RowBinary(&mut self.body).record(
                r,
                &self.ivt,
                (self.ip, self.salt.as_ref()),
                &mut scratch,
            );
        }
        // The columns in table order, as `RowBinary` rows carry them.
        let insert = format!(
            "INSERT INTO {} ({}) FORMAT RowBinary",
            self.config.qualified(),
            columns::NAMES.join(", ")
        );
        self.last_len = self.body.len();
        let payload = self.body.split().freeze();
        let result = self.call(&[("query", &insert)], payload);
        if result.is_err() {
            // The table may have been dropped behind our back.
            self.ready = false;
        }
        result.map(drop)
    }

    /// Drops the day partitions older than the retention (at most once
    /// per day of `now_ms`). Returns the partitions dropped.
    pub fn retention(&mut self, now_ms: i64) -> Result<Vec<String>, LogError> {
        let today = now_ms.div_euclid(86_400_000);
        if self.last_retention == Some(today) || !self.ready {
            return Ok(Vec::new());
        }
        let oldest_kept = today - i64::from(self.retention_days) + 1;
        let list = format!(
            "SELECT DISTINCT partition FROM system.parts WHERE database = {} AND table = {} \
             AND active FORMAT TabSeparated",
            quote(&self.config.database),
            quote(&self.config.table)
        );
        let parts = self.call(&[], list.into())?;
        let mut dropped = Vec::new();
        for p in parts.lines().map(str::trim) {
            if p.parse::<i64>().is_ok_and(|day| day < oldest_kept) {
                let alter = format!("ALTER TABLE {} DROP PARTITION {p}", self.config.qualified());
                self.call(&[], alter.into())?;
                dropped.push(p.to_owned());
            }
        }
        self.last_retention = Some(today);
        Ok(dropped)
    }
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
    fn row_binary_values_are_encoded_as_the_format_says() {
        let mut buf = BytesMut::new();
        let mut w = RowBinary(&mut buf);
        w.str("ab");
        w.str(&"x".repeat(300));
        w.opt(None);
        w.opt(Some(""));
        w.int(-2);
        assert_eq!(&buf[..3], [2, b'a', b'b']);
        assert_eq!(&buf[3..5], [0xac, 0x02], "300 as LEB128");
        assert_eq!(buf.len(), 3 + 2 + 300 + 1 + 2 + 8);
        assert_eq!(&buf[305..308], [1, 0, 0], "NULL, then an empty string");
        assert_eq!(&buf[308..], (-2i64).to_le_bytes());
    }

    /// A record written as it is encodes exactly as its `Row` (every
    /// column, whatever the record holds).
    #[test]
    fn a_record_encodes_as_its_row() {
        let ivt = IvtMap::new(&crate::Config::default().ivt).unwrap();
        let salt = [5u8; 32];
        let plain = crate::decision_log::record::tests::record(1_764_700_000_000, 7);
        let mut full = plain.clone();
        full.event = (&crate::event::EventBuilder::from_query(
            "event_type=impression&ip=2001:db8::9&ua=Mozilla%2F5.0%20%C3%A9&affiliate_id=a%22b\
             &offer_id=o&aff_sub1=s1&aff_sub5=&country_code=DE&affiliate_name=x%0Ay&browser=b",
        )
        .unwrap()
        .build()
        .unwrap())
            .into();
        full.client = Some("partner".into());
        full.tags = crate::verdict::Tags::parse("datacenter\nip\ndynamic blacklist").unwrap();
        full.rules = vec![crate::rules::RuleHit {
            kind: crate::rules::RuleKind::CrawlerUa,
            name: "bots".into(),
            tag: None,
            reason: Some("a \"crawler\"".into()),
        }];
        for r in [&plain, &full] {
            for (ip, salt) in [
                (IpMode::Full, None),
                (IpMode::Truncated, None),
                (IpMode::Hashed, Some(&salt)),
            ] {
                let (mut a, mut b) = (BytesMut::new(), BytesMut::new());
                RowBinary(&mut a).record(r, &ivt, (ip, salt), &mut Vec::new());
                RowBinary(&mut b).row(&Row::new(r, &ivt, ip, salt));
                assert_eq!(a, b, "{ip:?} {r:?}");
            }
        }
    }

    #[test]
    fn the_table_has_the_columns_in_order() {
        let names: Vec<&str> = DDL_COLUMNS
            .split(", ")
            .map(|c| c.split_whitespace().next().unwrap())
            .collect();
        assert_eq!(names, columns::NAMES);
    }

    #[test]
    fn names_are_checked() {
        let ok = ClickHouseConfig {
            url: "http://127.0.0.1:8123".into(),
            database: "fraudgate".into(),
            table: "decisions".into(),
            user: "default".into(),
            password: Secret::new(""),
            timeout_ms: 1000,
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
