//! Integration tests: the real app on a random port against a mock RT.

mod access;
mod admin;
mod batch;
mod binary;
mod cache;
mod check;
mod clickhouse;
mod decision_log;
mod doors;
mod faults;
mod helpers;
mod layer;
mod logs;
mod mock_rt;
mod nginx;
mod openrtb;
mod ops;
mod overload;
mod readme;
mod resilience;
mod rt_dropin;
mod rules;
mod shutdown;
mod trust;
mod validation;
mod verdict_scope;
