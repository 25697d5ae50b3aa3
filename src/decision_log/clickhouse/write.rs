//! The writer's side of the ClickHouse store: a batch in one insert over
//! HTTP, retention by day partitions.

use std::time::Duration;

use bytes::{Bytes, BytesMut};

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
        for statement in schema::create(&self.config) {
            self.call(&[], statement.into())?;
        }
        let have = self.call(&[], schema::columns(&self.config).into())?;
        for (name, add) in schema::added_columns(&self.config) {
            if !have.lines().any(|l| l == name) {
                self.call(&[], add.into())?;
            }
        }
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
        if fresh {
            if let Err(e) = self.call(&[], copy.into()) {
                tracing::warn!(error = %e, "could not copy the decisions into the id index; lookups by id it misses read the table");
            }
        }
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
        let insert = schema::insert(&self.config);
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
