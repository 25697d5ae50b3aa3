//! The typed sections of [`Config`](super::Config), one struct each.
//! Field docs are in `config/fraudgate.toml`, the embedded defaults.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

pub use crate::cache::CacheConfig;
use crate::policy::Action;
pub use crate::policy::{PolicyConfig, TagActionTable};
pub use crate::rules::config::{CrawlerConfig, ListConfig, RangesConfig, RulesConfig};
pub use crate::rules::limits::{CapConfig, VelocityConfig};
use crate::secret::{Secret, SecretList};
pub use crate::upstream::UpstreamConfig;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address the HTTP server binds.
    pub listen: SocketAddr,
    /// A second listener for the operator's endpoints (`/metrics`,
    /// `/v1/admin`, `/v1/data`, `/v1/reports`, `/ui`); when set, `listen`
    /// carries only the doors and the probes. Unset: `listen` carries all.
    #[serde(default)]
    pub admin_listen: Option<SocketAddr>,
    /// After SIGTERM: /readyz answers 503 and new connections are still
    /// accepted for this long, so load balancers move away first.
    pub drain_delay_ms: u64,
    /// Then: in-flight requests get at most this long to finish.
    pub shutdown_timeout_ms: u64,
    /// Threads answering requests (with `threading = "per_core"`, the
    /// connection threads); 0 = one per core.
    #[serde(default)]
    pub worker_threads: usize,
    /// How those threads share the connections (see [`Threading`]).
    #[serde(default)]
    pub threading: Threading,
    /// With `threading = "per_core"`: how long a busy connection thread
    /// polls without a request before it sleeps (see
    /// [`crate::http::lanes::Idle`]); 0 = sleep at once.
    #[serde(default = "d_idle_spin_us")]
    pub idle_spin_us: u64,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// Most events in one batch.
    pub max_batch: usize,
    /// Hard limit for any one request.
    pub request_timeout_ms: u64,
    /// Proxies whose forwarding headers are believed.
    pub trusted_proxies: Vec<String>,
    /// The header trusted proxies set to the client's IP.
    pub client_ip_header: String,
    /// Requests served at once before shedding.
    pub max_concurrency: usize,
    pub header_read_timeout_ms: u64,
    /// A connection whose peer takes no byte of its answer for this long
    /// is closed (a reader that stopped reading).
    #[serde(default = "d_write_timeout_ms")]
    pub write_timeout_ms: u64,
    pub max_header_bytes: usize,
    pub max_uri_bytes: usize,
    pub max_json_depth: usize,
    /// What a shed request gets.
    pub shed_response: ShedResponse,
    /// TLS on `listen` (absent: plain HTTP).
    #[serde(default)]
    pub tls: Option<super::listen::TlsConfig>,
    /// HTTP/2 limits, and h2c on plain listeners.
    #[serde(default)]
    pub http2: super::listen::Http2Config,
}

/// How the threads answering requests share the connections.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Threading {
    /// Each connection on the public port lives on one thread, with its
    /// own event loop and run queue (as nginx's workers): no work
    /// stealing, no wake-ups of other threads per request. What a request
    /// starts (an upstream call, a refresh) runs on its thread too; an
    /// HTTP/2 connection's streams share its thread. The accept loop,
    /// feeds, reloads, the gRPC door and the operator's port
    /// (`admin_listen`) run on the shared runtime: one thread, or
    /// `worker_threads` when the gRPC door or the operator's port is on.
    #[default]
    PerCore,
    /// One work-stealing runtime for everything: a connection's task may
    /// move to whichever thread is free.
    Shared,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum ShedResponse {
    #[serde(rename = "503")]
    Unavailable,
    #[serde(rename = "fallback")]
    Fallback,
}

impl ServerConfig {
    pub fn drain_delay(&self) -> Duration {
        Duration::from_millis(self.drain_delay_ms)
    }
    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_millis(self.shutdown_timeout_ms)
    }
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_millis(self.header_read_timeout_ms)
    }

    pub fn idle_spin(&self) -> Duration {
        Duration::from_micros(self.idle_spin_us)
    }

    pub fn write_timeout(&self) -> Duration {
        Duration::from_millis(self.write_timeout_ms)
    }

    /// Threads answering requests: `worker_threads`, 0 meaning one per
    /// core.
    pub fn connection_threads(&self) -> usize {
        match self.worker_threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Compact,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
    pub level: String,
    /// Empty: stdout. A path: written there, rotated by size.
    #[serde(default)]
    pub file: String,
    /// `file` is rotated when it passes this size...
    #[serde(default = "d_max_file_mb")]
    pub max_file_mb: usize,
    /// ...keeping this many rotated files (`file.1` the newest).
    #[serde(default = "d_keep_files")]
    pub keep_files: usize,
    /// No log line is longer: what a request sends cannot fill a disk.
    #[serde(default = "d_max_line_bytes")]
    pub max_line_bytes: usize,
}

fn d_max_file_mb() -> usize {
    100
}
fn d_keep_files() -> usize {
    5
}
fn d_max_line_bytes() -> usize {
    4096
}

/// A secret string: Debug and Display print `[redacted]`. Accepts any TOML
/// scalar so an all-digit key given through the environment still loads.
/// A door's override of `policy.on_upstream_error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    Policy,
    Allow,
    Block,
}

impl OnError {
    pub fn action(self) -> Option<Action> {
        match self {
            OnError::Policy => None,
            OnError::Allow => Some(Action::Allow),
            OnError::Block => Some(Action::Block),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DoorsConfig {
    pub check: CheckDoor,
    pub auth: AuthDoor,
    pub click: ClickDoor,
    pub imp: ImpDoor,
    pub openrtb: OpenRtbDoor,
    pub grpc: GrpcDoor,
}

/// The gRPC door: Envoy/Istio `ext_authz` (`envoy.service.auth.v3`) and
/// `grpc.health.v1` on a port of its own. Events are read as `doors.auth`
/// reads them (event type, params, defaults, blocked status).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrpcDoor {
    /// Address the gRPC server binds; unset, the door is off.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// Time budget of a Check (0: the scorer's default), lowered by the
    /// caller's `grpc-timeout`.
    pub budget_ms: u64,
    pub on_upstream_error: OnError,
    /// Body of the denied response Envoy sends the visitor.
    pub denied_body: String,
    /// HTTP/2 streams one connection may have open at once.
    pub max_concurrent_streams: u32,
    /// Largest CheckRequest accepted (larger: RESOURCE_EXHAUSTED).
    pub max_message_bytes: usize,
    /// Taken off the caller's `grpc-timeout`, so the fail-mode answer
    /// arrives before the caller gives up.
    pub timeout_margin_ms: u64,
}

impl GrpcDoor {
    pub fn timeout_margin(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.timeout_margin_ms)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckDoor {
    /// Budget of /v1/check, /v1/check/batch and the RT drop-in.
    pub budget_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthDoor {
    pub budget_ms: u64,
    pub on_upstream_error: OnError,
    pub blocked_status: u16,
    pub event_type: crate::event::EventType,
    pub impression_paths: Vec<String>,
    /// RT field -> query parameter name in the original URL.
    pub params: BTreeMap<String, String>,
    /// RT field -> value when the original URL lacks it.
    pub defaults: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClickDoor {
    pub budget_ms: u64,
    pub on_upstream_error: OnError,
    pub blocked_status: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum ImpResponse {
    #[serde(rename = "gif")]
    Gif,
    #[serde(rename = "204")]
    NoContent,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImpDoor {
    pub budget_ms: u64,
    pub on_upstream_error: OnError,
    pub response: ImpResponse,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenRtbDoor {
    pub budget_ms: u64,
    pub on_upstream_error: OnError,
    pub tmax_margin_ms: u64,
    pub allow_status: u16,
    /// RT field (or "ifa") -> BidRequest paths, first non-empty wins.
    pub fields: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfferConfig {
    pub id: String,
    /// Redirect target template with {macros}.
    pub url: String,
    /// Where a blocked click goes (optional).
    #[serde(default)]
    pub fallback_url: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Bearer keys for the admin API; empty disables it.
    pub admin_keys: SecretList,
    /// Keys for the Data API and reports (admin keys work too).
    pub report_keys: SecretList,
    /// With no report or admin keys: the Data API and reports answer a
    /// local request (loopback peer and Host, no proxy header). Set false
    /// when a proxy on this host may forward without those headers.
    #[serde(default = "d_true")]
    pub local_reports: bool,
    /// Serve on a non-loopback address without client keys.
    pub allow_anonymous: bool,
    pub rate_limit_rps: u32,
    pub rate_limit_burst: u32,
    /// Client name -> key.
    pub client_keys: BTreeMap<String, Secret>,
    /// Client name -> rate limit override.
    pub rate_limits: BTreeMap<String, RateLimit>,
    /// User id -> report key, for Fraudshield's `user_id` + `api_token`:
    /// each is a report key as well, and a request presenting it that
    /// names a `user_id` must name this one (403 otherwise).
    #[serde(default)]
    pub report_users: BTreeMap<String, Secret>,
    /// Client name -> Fraudshield tracker id: a report's `tracker_id`
    /// selects the decisions of that client (`anonymous` when no client
    /// keys are set).
    #[serde(default)]
    pub trackers: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub rps: u32,
    pub burst: u32,
}

fn d_true() -> bool {
    true
}

fn d_idle_spin_us() -> u64 {
    20
}

fn d_write_timeout_ms() -> u64 {
    10_000
}
