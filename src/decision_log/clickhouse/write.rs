//! The writer's side of the ClickHouse store: a batch in one insert over
//! HTTP (straight into the table, through its Buffer table, or as an
//! async insert: `insert_path`), retention by day partitions.

use std::time::Duration;

use bytes::{Bytes, BytesMut};

use super::insert_path::{self, InsertPath};
use super::row_binary::RowBinary;
use super::{ClickHouseConfig, client, schema, server_error};
use crate::decision_log::ivt::IvtMap;
use crate::decision_log::record::Record;
use crate::decision_log::{IpMode, LogError};

/// The writer's side. Runs on the decision-log thread, with a runtime of
/// its own for the HTTP calls.
pub struct Writer {
    config: ClickHouseConfig,
    http: Option<(tokio::runtime::Runtime, reqwest::Client)>,
    /// The table is known to exist.
    ready: bool,
    /// How inserts go, resolved when the table was opened.
    path: Option<InsertPath>,
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
            path: None,
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

    /// How inserts go: the configured path, or for `auto` the one the
    /// server's version calls for (read each time the table is opened:
    /// at the first batch, and after a failed one).
    fn resolve_path(&mut self) -> Result<InsertPath, LogError> {
        let mode = self.config.insert;
        let version = if mode.needs_version() {
            let answer = self.call(&[], insert_path::VERSION.into())?;
            insert_path::parse_version(&answer)
        } else {
            None
        };
        let path = mode.resolve(version);
        if self.path != Some(path) {
            tracing::info!(insert = path.as_str(), server_version = ?version, "decision log inserts into ClickHouse");
        }
        Ok(path)
    }

    fn ensure_table(&mut self) -> Result<(), LogError> {
        if self.ready {
            return Ok(());
        }
        let path = self.resolve_path()?;
        for statement in schema::create(&self.config) {
            self.call(&[], statement.into())?;
        }
        let rebuffer = self.upgrade()?;
        self.ensure_ids_index()?;
        // After the table and its id index: what the Buffer writes to the
        // table fills the index through the view.
        if path == InsertPath::Buffer || rebuffer {
            self.call(&[], insert_path::buffer(&self.config).into())?;
        }
        self.path = Some(path);
        self.ready = true;
        Ok(())
    }

    /// Adds the columns a table from an earlier release lacks. A Buffer
    /// table whose columns are not the table's (it is about to get a
    /// column, or an earlier release made it) is dropped first, which
    /// writes what it holds to the table; true when one was (it is made
    /// again, with the table's columns, whatever this writer's path:
    /// other replicas may insert through it).
    fn upgrade(&mut self) -> Result<bool, LogError> {
        let answer = self.call(&[], insert_path::columns(&self.config).into())?;
        let (table, buffer) = insert_path::split_columns(&self.config, &answer);
        let missing: Vec<String> = schema::added_columns(&self.config)
            .into_iter()
            .filter(|(name, _)| !table.contains(name))
            .map(|(_, add)| add)
            .collect();
        let stale = buffer.is_some_and(|b| !missing.is_empty() || b != table);
        if stale {
            self.call(&[], insert_path::drop_buffer(&self.config).into())?;
        }
        for add in missing {
            self.call(&[], add.into())?;
        }
        Ok(stale)
    }

    fn ensure_ids_index(&mut self) -> Result<(), LogError> {
        let have = self.call(&[], schema::ids_index_tables(&self.config).into())?;
        let name = self.config.table.clone();
        let has = |suffix: &str| have.lines().any(|l| l.trim() == format!("{name}{suffix}"));
        let [table, view, copy] = schema::ids_index(&self.config);
        // The table, the view, then the copy of the rows from before (a
        // row inserted meanwhile is in the index twice, which the lookup
        // and the merges take). A copy that fails is not retried: a
        // lookup the index misses reads the table itself.
        let fresh = !has("_ids");
        let viewed = has("_ids_mv");
        if fresh {
            self.call(&[], table.into())?;
        }
        if !viewed {
            self.call(&[], view.into())?;
        }
        if fresh && let Err(e) = self.call(&[], copy.into()) {
            tracing::warn!(error = %e, "could not copy the decisions into the id index; lookups by id it misses read the table");
        }
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
        let path = self.path.unwrap_or(InsertPath::Direct);
        let insert = match path {
            InsertPath::Buffer => schema::insert(&insert_path::buffer_table(&self.config)),
            InsertPath::Direct | InsertPath::Async => schema::insert(&self.config.qualified()),
        };
        self.last_len = self.body.len();
        let payload = self.body.split().freeze();
        let mut params = vec![("query", insert.as_str())];
        params.extend_from_slice(path.settings());
        let result = self.call(&params, payload);
        if result.is_err() {
            // The table may have been dropped behind our back.
            self.ready = false;
        }
        result.map(drop)
    }

    /// Closing (shutdown): writes what the Buffer table holds to the
    /// table, so its rows are on disk once the gate has stopped, not only
    /// in the server's memory (a server that stops cleanly writes them
    /// too; one that crashes loses them). Blocking: called on the writer
    /// thread.
    pub fn close(&mut self) {
        if self.ready && self.path == Some(InsertPath::Buffer) {
            let flush = insert_path::flush_buffer(&self.config);
            if let Err(e) = self.call(&[], flush.into()) {
                tracing::warn!(error = %e, "could not flush the ClickHouse Buffer table at close; the server writes it within 10 s");
            }
        }
    }

    /// Drops the day partitions older than the retention (at most once
    /// per day of `now_ms`). Returns the partitions dropped.
    pub fn retention(&mut self, now_ms: i64) -> Result<Vec<String>, LogError> {
        let today = now_ms.div_euclid(86_400_000);
        if self.last_retention == Some(today) || !self.ready {
            return Ok(Vec::new());
        }
        let oldest_kept = today - i64::from(self.retention_days) + 1;
        let list = schema::list_partitions(&self.config);
        let parts = self.call(&[], list.into())?;
        let mut dropped = Vec::new();
        for p in parts.lines().map(str::trim) {
            if p.parse::<i64>().is_ok_and(|day| day < oldest_kept) {
                for drop in schema::drop_partition(&self.config, p) {
                    self.call(&[], drop.into())?;
                }
                dropped.push(p.to_owned());
            }
        }
        self.last_retention = Some(today);
        Ok(dropped)
    }
}
