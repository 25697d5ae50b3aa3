//! The decision log: every decision of every door, recorded off the hot
//! path and queryable within a second.
//!
//! The scorer encodes each decision's record (`record`) into a bounded
//! queue and never waits on disk; one writer thread (`writer`) drains the
//! queue in batches (`batch`) into the store: SQLite (`sqlite`) or
//! ClickHouse (`clickhouse`), which keep the same columns (`columns`).
//! This is the write side only: the read side (`query`) reads the stores'
//! layout and handles, and nothing here imports it.

pub mod batch;
pub mod clickhouse;
pub mod columns;
pub mod config;
pub mod ivt;
pub mod record;
pub mod sqlite;
mod writer;

pub use batch::{Batch, Records};
pub use clickhouse::ClickHouseConfig;
pub use columns::Row;
pub use config::{DecisionLogConfig, IpMode, OnFull, Store};
pub use ivt::{Ivt, IvtClass, IvtConfig, IvtMap};
pub use record::Record;
pub use writer::DecisionLog;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("cannot open the decision log at {0}: {1}")]
    Open(String, String),
    #[error("decision log write failed: {0}")]
    Write(String),
    /// The SQLite file is damaged (not a database, malformed, cut short):
    /// it is moved aside and a fresh store opened.
    #[error("decision log store is damaged: {0}")]
    Corrupt(String),
    /// No store is open (it could not be opened; opening is retried
    /// every few seconds): records are dropped and counted meanwhile.
    #[error("decision log store unavailable: {0}")]
    Unavailable(String),
    /// The store refused the batch in a way a retry cannot change (bad
    /// credentials, no rights, a table of another shape): dropped.
    #[error("decision log store refused the batch: {0}")]
    Rejected(String),
}
