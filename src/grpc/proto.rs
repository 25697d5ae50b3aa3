//! Envoy's ext_authz API, generated at build time from proto/ (build.rs):
//! the types, the `Authorization` server trait and a client (the tests and
//! the bench dial the door with it).

#![allow(clippy::all, clippy::pedantic, missing_docs, rustdoc::all)]

include!(concat!(env!("OUT_DIR"), "/envoy_ext_authz.rs"));

pub use envoy::service::auth::v3 as auth;
