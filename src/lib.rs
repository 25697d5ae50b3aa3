//! fraudgate: a real-time click and impression fraud gate in front of
//! FraudScore RT.
//!
//! Many front doors, one [`event::Event`], one scoring path
//! ([`score::Scorer`]), one [`decision::Decision`].
// No unsafe code but in `decision_log::sqlite::vtab`: SQLite's virtual
// table interface is an unsafe trait in rusqlite.
#![deny(unsafe_code)]

pub mod backoff;
pub mod breaker;
pub mod cache;
pub mod cli;
pub mod config;
pub mod config_error;
pub mod country;
pub mod decision;
pub mod decision_log;
pub mod event;
pub mod feeds;
pub mod fleet;
pub mod funnel;
pub mod grpc;
pub mod hash;
pub mod http;
pub mod lookup;
pub mod metrics;
pub mod policy;
pub mod query;
pub mod rescore;
pub mod rules;
pub mod score;
pub mod secret;
pub mod startup;
pub mod telemetry;
pub mod template;
pub mod tls;
pub mod transport;
pub mod upstream;
pub mod verdict;

pub use config::Config;
pub use decision::Decision;
pub use event::Event;
pub use startup::Application;
