//! One typed configuration: embedded defaults, then a TOML file, then
//! `FRAUDGATE_<SECTION>__<KEY>` environment overrides; validated once.
//!
//! The embedded `config/fraudgate.toml` is the single source of defaults: a
//! user file only carries what it changes and is merged over it.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::cache::KeyPart;
use crate::policy::{Action, Mode};
pub use crate::rules::limits::{CapConfig, VelocityConfig};

/// The documented defaults, compiled in.
pub const DEFAULT_TOML: &str = include_str!("../config/fraudgate.toml");

/// Environment variable prefix for overrides.
pub const ENV_PREFIX: &str = "FRAUDGATE_";
/// Environment variable naming the config file (same as `--config`).
pub const ENV_CONFIG_PATH: &str = "FRAUDGATE_CONFIG";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub upstream: UpstreamConfig,
    pub cache: CacheConfig,
    pub policy: PolicyConfig,
    pub doors: DoorsConfig,
    /// Offers of the /click redirect tracker.
    #[serde(default)]
    pub offers: Vec<OfferConfig>,
    pub rules: RulesConfig,
    pub auth: AuthConfig,
    pub log: LogConfig,
}

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
    pub event_type: String,
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
pub struct RulesConfig {
    pub enabled: bool,
    pub ask_upstream_on_block: bool,
    pub reload_interval_s: u64,
    pub caps: Vec<CapConfig>,
    pub crawler: CrawlerConfig,
    pub datacenter: DatacenterConfig,
    pub velocity: VelocityConfig,
    pub lists: Vec<ListConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrawlerConfig {
    pub enabled: bool,
    pub builtin: bool,
    /// Empty: none.
    pub extra_patterns_file: String,
    pub flag_empty_ua: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatacenterConfig {
    pub enabled: bool,
    pub files: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListConfig {
    pub name: String,
    pub action: Action,
    /// Empty: runtime-only list.
    #[serde(default)]
    pub file: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Bearer keys for the admin API; empty disables it.
    pub admin_keys: SecretList,
    /// Serve on a non-loopback address without client keys.
    pub allow_anonymous: bool,
    pub rate_limit_rps: u32,
    pub rate_limit_burst: u32,
    /// Client name -> key.
    pub client_keys: BTreeMap<String, Secret>,
    /// Client name -> rate limit override.
    pub rate_limits: BTreeMap<String, RateLimit>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub rps: u32,
    pub burst: u32,
}

/// Secrets given as a TOML array or a comma-separated string (env form).
#[derive(Debug, Clone, Default)]
pub struct SecretList(pub Vec<Secret>);

impl<'de> Deserialize<'de> for SecretList {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            List(Vec<Secret>),
            One(Secret),
        }
        Ok(SecretList(match Form::deserialize(d)? {
            Form::List(v) => v.into_iter().filter(|s| !s.expose().is_empty()).collect(),
            Form::One(s) => s
                .expose()
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(Secret::new)
                .collect(),
        }))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address the HTTP server binds.
    pub listen: SocketAddr,
    /// Bounded drain period after a shutdown signal.
    pub shutdown_grace_s: u64,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// Most events in one batch.
    pub max_batch: usize,
    /// Hard limit for any one request.
    pub request_timeout_ms: u64,
    /// Proxies whose forwarding headers are believed.
    pub trusted_proxies: Vec<String>,
    /// Requests served at once before shedding.
    pub max_concurrency: usize,
    pub header_read_timeout_ms: u64,
    pub max_header_bytes: usize,
    pub max_uri_bytes: usize,
    pub max_json_depth: usize,
    /// What a shed request gets.
    pub shed_response: ShedResponse,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum ShedResponse {
    #[serde(rename = "503")]
    Unavailable,
    #[serde(rename = "fallback")]
    Fallback,
}

impl ServerConfig {
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_s)
    }
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_millis(self.header_read_timeout_ms)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// FraudScore RT endpoint.
    pub url: String,
    /// FraudScore RT key; empty disables the upstream.
    pub key: Secret,
    /// Deadline of one RT call.
    pub timeout_ms: u64,
    /// TCP connect timeout.
    pub connect_timeout_ms: u64,
    /// Idle keep-alive connections kept per host.
    pub pool_max_idle: usize,
    /// Idle connection lifetime.
    pub pool_idle_timeout_s: u64,
    /// Allow `http://` to a non-loopback host.
    pub allow_insecure_http: bool,
    /// Retry a connection error once, inside the timeout.
    pub retry_connect_errors: bool,
    pub breaker: crate::breaker::BreakerConfig,
}

impl UpstreamConfig {
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }
    pub fn pool_idle_timeout(&self) -> Duration {
        Duration::from_secs(self.pool_idle_timeout_s)
    }
    /// The upstream is used only when a key is configured.
    pub fn enabled(&self) -> bool {
        !self.key.expose().is_empty()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// TTL of clean and flagged verdicts unless overridden.
    pub ttl_s: u64,
    pub ttl_clean_s: Option<u64>,
    pub ttl_flagged_s: Option<u64>,
    /// TTL of a remembered upstream failure.
    pub ttl_error_s: u64,
    /// Serve-stale window past the TTL (refresh in the background).
    pub stale_s: u64,
    /// Serve-stale window past the TTL when the refresh failed.
    pub stale_if_error_s: u64,
    /// Capacity in entries.
    pub max_entries: u64,
    /// Event fields forming the key.
    pub key: Vec<KeyPart>,
}

impl CacheConfig {
    pub fn ttl_clean(&self) -> Duration {
        Duration::from_secs(self.ttl_clean_s.unwrap_or(self.ttl_s))
    }
    pub fn ttl_flagged(&self) -> Duration {
        Duration::from_secs(self.ttl_flagged_s.unwrap_or(self.ttl_s))
    }
    pub fn ttl_error(&self) -> Duration {
        Duration::from_secs(self.ttl_error_s)
    }
    pub fn stale(&self) -> Duration {
        Duration::from_secs(self.stale_s)
    }
    pub fn stale_if_error(&self) -> Duration {
        Duration::from_secs(self.stale_if_error_s)
    }
}

/// Tag name (config spelling) -> action. Validated when the policy is built.
pub type TagActionTable = BTreeMap<String, Action>;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    pub mode: Mode,
    pub on_upstream_error: Action,
    pub unknown_tag: Action,
    pub tags: TagActionTable,
    pub offers: BTreeMap<String, TagActionTable>,
    pub affiliates: BTreeMap<String, TagActionTable>,
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
}

/// A secret string: Debug and Display print `[redacted]`. Accepts any TOML
/// scalar so an all-digit key given through the environment still loads.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The secret itself; call only where it must go on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Compares in time independent of where the strings differ.
    pub fn matches(&self, candidate: &[u8]) -> bool {
        let a = self.0.as_bytes();
        let mut diff = (a.len() ^ candidate.len()) as u8 | u8::from(a.len() != candidate.len());
        for (i, b) in candidate.iter().enumerate() {
            diff |= a.get(i).copied().unwrap_or(0) ^ b;
        }
        diff == 0 && !a.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Secret;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E>(self, v: &str) -> Result<Secret, E> {
                Ok(Secret(v.to_owned()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// Why the configuration could not be loaded. Always names the key or file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
    #[error("config key {key}: {message}")]
    Invalid { key: String, message: String },
}

impl ConfigError {
    pub fn invalid(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.into(),
            message: message.into(),
        }
    }
}

impl Default for Config {
    /// The embedded defaults (no file, no environment).
    fn default() -> Self {
        Config::load_from(None, std::iter::empty()).expect("embedded default config is valid")
    }
}

impl Config {
    /// Loads the file at `path` (if any) over the defaults, then the
    /// `FRAUDGATE_*` variables of this process.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_from(path, std::env::vars())
    }

    /// Like [`Config::load`] with an explicit environment, so tests never
    /// touch the process environment.
    pub fn load_from(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut root: toml::Table =
            DEFAULT_TOML
                .parse()
                .map_err(|e: toml::de::Error| ConfigError::Parse {
                    path: "<embedded defaults>".into(),
                    message: e.to_string(),
                })?;
        if let Some(path) = path {
            let shown = path.display().to_string();
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: shown.clone(),
                source,
            })?;
            let user: toml::Table =
                text.parse()
                    .map_err(|e: toml::de::Error| ConfigError::Parse {
                        path: shown.clone(),
                        message: e.to_string(),
                    })?;
            merge(&mut root, user);
        }
        let mut env: Vec<_> = env
            .into_iter()
            // Only FRAUDGATE_<SECTION>__<KEY> forms are config keys; others
            // (Kubernetes injects FRAUDGATE_PORT for a Service named
            // fraudgate) are not ours to reject.
            .filter(|(k, _)| k.starts_with(ENV_PREFIX) && k[ENV_PREFIX.len()..].contains("__"))
            .collect();
        env.sort();
        for (var, raw) in env {
            apply_env(&mut root, &var, &raw)?;
        }
        let config: Config =
            serde_path_to_error::deserialize(toml::Value::Table(root)).map_err(|e| {
                let key = e.path().to_string();
                ConfigError::invalid(key, e.into_inner().message().to_owned())
            })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let u = &self.upstream;
        if u.timeout_ms == 0 {
            return Err(ConfigError::invalid("upstream.timeout_ms", "must be > 0"));
        }
        if u.connect_timeout_ms == 0 {
            return Err(ConfigError::invalid(
                "upstream.connect_timeout_ms",
                "must be > 0",
            ));
        }
        crate::upstream::validate_url(&u.url, u.allow_insecure_http)
            .map_err(|m| ConfigError::invalid("upstream.url", m))?;
        let b = &u.breaker;
        if b.consecutive_failures == 0
            || b.half_open_probes == 0
            || b.window_s == 0
            || !(0.0..=1.0).contains(&b.failure_ratio)
        {
            return Err(ConfigError::invalid(
                "upstream.breaker",
                "consecutive_failures, half_open_probes, window_s > 0 and failure_ratio in 0..=1",
            ));
        }
        if self.cache.max_entries == 0 {
            return Err(ConfigError::invalid("cache.max_entries", "must be > 0"));
        }
        if self.cache.key.is_empty() {
            return Err(ConfigError::invalid("cache.key", "needs at least one part"));
        }
        if self.server.max_batch == 0 {
            return Err(ConfigError::invalid("server.max_batch", "must be > 0"));
        }
        if self.server.max_header_bytes < 8192 {
            return Err(ConfigError::invalid(
                "server.max_header_bytes",
                "must be at least 8192",
            ));
        }
        if self.server.max_concurrency == 0
            || self.server.header_read_timeout_ms == 0
            || self.server.max_json_depth == 0
        {
            return Err(ConfigError::invalid(
                "server",
                "max_concurrency, header_read_timeout_ms and max_json_depth must be > 0",
            ));
        }
        if self.server.request_timeout_ms == 0 {
            return Err(ConfigError::invalid(
                "server.request_timeout_ms",
                "must be > 0",
            ));
        }
        tracing_subscriber::EnvFilter::try_new(&self.log.level)
            .map_err(|e| ConfigError::invalid("log.level", e.to_string()))?;
        crate::policy::Policy::from_config(&self.policy)?;
        let mut names = std::collections::HashSet::new();
        for (i, l) in self.rules.lists.iter().enumerate() {
            if l.name.is_empty()
                || !l
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(ConfigError::invalid(
                    format!("rules.lists[{i}].name"),
                    "use letters, digits, - and _",
                ));
            }
            if !names.insert(l.name.as_str()) {
                return Err(ConfigError::invalid(
                    format!("rules.lists[{i}].name"),
                    format!("duplicate list name {:?}", l.name),
                ));
            }
        }
        for (i, c) in self.rules.caps.iter().enumerate() {
            if c.by.is_empty() || c.window_s == 0 {
                return Err(ConfigError::invalid(
                    format!("rules.caps[{i}]"),
                    "needs a non-empty `by` and window_s > 0",
                ));
            }
        }
        for (i, p) in self.server.trusted_proxies.iter().enumerate() {
            crate::rules::ranges::Prefix::parse(p)
                .map_err(|m| ConfigError::invalid(format!("server.trusted_proxies[{i}]"), m))?;
        }
        let a = &self.auth;
        if !self.server.listen.ip().is_loopback() && a.client_keys.is_empty() && !a.allow_anonymous
        {
            return Err(ConfigError::invalid(
                "auth.allow_anonymous",
                format!(
                    "server.listen = {} is reachable from other hosts but no auth.client_keys are set; \
                     set client keys (FRAUDGATE_AUTH__CLIENT_KEYS__<NAME>=<key>) or auth.allow_anonymous = true",
                    self.server.listen
                ),
            ));
        }
        for (name, key) in &a.client_keys {
            if key.expose().len() < 16 {
                return Err(ConfigError::invalid(
                    format!("auth.client_keys.{name}"),
                    "use at least 16 characters",
                ));
            }
        }
        for name in a.rate_limits.keys() {
            if !a.client_keys.contains_key(name) {
                return Err(ConfigError::invalid(
                    format!("auth.rate_limits.{name}"),
                    "no client key with this name",
                ));
            }
        }
        let d = &self.doors;
        if ![401, 403].contains(&d.auth.blocked_status) {
            return Err(ConfigError::invalid(
                "doors.auth.blocked_status",
                "must be 401 or 403",
            ));
        }
        if !["click", "impression"].contains(&d.auth.event_type.as_str()) {
            return Err(ConfigError::invalid(
                "doors.auth.event_type",
                "must be click or impression",
            ));
        }
        for (table, key) in [
            (&d.auth.params, "doors.auth.params"),
            (&d.auth.defaults, "doors.auth.defaults"),
        ] {
            for k in table.keys() {
                if !crate::event::is_rt_field(k) {
                    return Err(ConfigError::invalid(
                        format!("{key}.{k}"),
                        "not a FraudScore RT event field",
                    ));
                }
            }
        }
        if ![403, 204].contains(&d.click.blocked_status) {
            return Err(ConfigError::invalid(
                "doors.click.blocked_status",
                "must be 403 or 204",
            ));
        }
        if ![200, 204].contains(&d.openrtb.allow_status) {
            return Err(ConfigError::invalid(
                "doors.openrtb.allow_status",
                "must be 200 or 204",
            ));
        }
        for k in d.openrtb.fields.keys() {
            if k != "ifa" && !crate::event::is_rt_field(k) {
                return Err(ConfigError::invalid(
                    format!("doors.openrtb.fields.{k}"),
                    "not a FraudScore RT event field (or ifa)",
                ));
            }
        }
        let mut ids = std::collections::HashSet::new();
        for (i, o) in self.offers.iter().enumerate() {
            if !ids.insert(o.id.as_str()) {
                return Err(ConfigError::invalid(
                    format!("offers[{i}].id"),
                    format!("duplicate offer id {:?}", o.id),
                ));
            }
            crate::http::click::check_template(&o.url)
                .map_err(|m| ConfigError::invalid(format!("offers[{i}].url"), m))?;
            if let Some(f) = &o.fallback_url {
                crate::http::click::check_template(f)
                    .map_err(|m| ConfigError::invalid(format!("offers[{i}].fallback_url"), m))?;
            }
        }
        if self.rules.velocity.window_s == 0 {
            return Err(ConfigError::invalid(
                "rules.velocity.window_s",
                "must be > 0",
            ));
        }
        Ok(())
    }
}

/// Deep-merges `over` into `base`: tables merge, everything else replaces.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// Sets one `FRAUDGATE_A__B__C=value` override. The value is read as a TOML
/// value when it is one (`250`, `true`, `["ip","ua"]`), else as a string.
fn apply_env(root: &mut toml::Table, var: &str, raw: &str) -> Result<(), ConfigError> {
    let err = |message: &str| ConfigError::Env {
        var: var.to_owned(),
        message: message.to_owned(),
    };
    let rest = &var[ENV_PREFIX.len()..];
    let path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
    if path.iter().any(String::is_empty) {
        return Err(err("not a config key: expected FRAUDGATE_<SECTION>__<KEY>"));
    }
    let value = match format!("v = {raw}").parse::<toml::Table>() {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(raw.to_owned())),
        Err(_) => toml::Value::String(raw.to_owned()),
    };
    let (last, parents) = path.split_last().expect("len >= 2");
    let mut table = root;
    for (i, seg) in parents.iter().enumerate() {
        let entry = table
            .entry(seg.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        table = match entry {
            toml::Value::Table(t) => t,
            _ => {
                return Err(err(&format!(
                    "{} is a value, not a section",
                    path[..=i].join(".")
                )));
            }
        };
    }
    table.insert(last.clone(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn embedded_defaults_load() {
        let c = Config::default();
        assert_eq!(c.server.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(c.upstream.timeout_ms, 250);
        assert!(!c.upstream.enabled());
        assert_eq!(c.cache.ttl_clean(), Duration::from_secs(300));
        assert_eq!(c.policy.on_upstream_error, Action::Allow);
    }

    #[test]
    fn env_overrides_typed_values_and_nested_tables() {
        let c = Config::load_from(
            None,
            env(&[
                ("FRAUDGATE_SERVER__LISTEN", "0.0.0.0:9000"),
                ("FRAUDGATE_AUTH__ALLOW_ANONYMOUS", "true"),
                ("FRAUDGATE_UPSTREAM__TIMEOUT_MS", "120"),
                ("FRAUDGATE_UPSTREAM__KEY", "123456"),
                ("FRAUDGATE_CACHE__TTL_FLAGGED_S", "3600"),
                ("FRAUDGATE_POLICY__TAGS__PROXY", "allow"),
                ("FRAUDGATE_POLICY__ON_UPSTREAM_ERROR", "block"),
                ("FRAUDGATE_CONFIG", "ignored.toml"),
                ("OTHER", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(c.server.listen.port(), 9000);
        assert_eq!(c.upstream.timeout_ms, 120);
        assert_eq!(c.upstream.key.expose(), "123456");
        assert_eq!(c.cache.ttl_flagged(), Duration::from_secs(3600));
        assert_eq!(c.cache.ttl_clean(), Duration::from_secs(300));
        assert_eq!(c.policy.tags["proxy"], Action::Allow);
        assert_eq!(c.policy.on_upstream_error, Action::Block);
    }

    #[test]
    fn unknown_env_key_names_the_key() {
        let e = Config::load_from(None, env(&[("FRAUDGATE_UPSTREAM__TIMEOUT", "5")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("upstream") && e.contains("timeout"), "{e}");
        let e = Config::load_from(None, env(&[("FRAUDGATE_NOPE__", "5")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("FRAUDGATE_NOPE__"), "{e}");
        // Not our form: ignored (Kubernetes service variables look like this).
        Config::load_from(None, env(&[("FRAUDGATE_PORT", "tcp://10.0.0.1:80")])).unwrap();
    }

    #[test]
    fn invalid_values_name_the_key() {
        for (var, val, key) in [
            (
                "FRAUDGATE_UPSTREAM__TIMEOUT_MS",
                "soon",
                "upstream.timeout_ms",
            ),
            ("FRAUDGATE_SERVER__LISTEN", "nowhere", "server.listen"),
            ("FRAUDGATE_POLICY__MODE", "maybe", "policy.mode"),
            (
                "FRAUDGATE_POLICY__TAGS__BOGUS",
                "block",
                "policy.tags.bogus",
            ),
            ("FRAUDGATE_CACHE__KEY", "[\"ip\",\"cookie\"]", "cache.key"),
            (
                "FRAUDGATE_UPSTREAM__URL",
                "http://example.com/",
                "upstream.url",
            ),
            ("FRAUDGATE_UPSTREAM__TIMEOUT_MS", "0", "upstream.timeout_ms"),
        ] {
            let e = Config::load_from(None, env(&[(var, val)]))
                .unwrap_err()
                .to_string();
            assert!(e.contains(key), "{var}={val}: {e}");
        }
    }

    #[test]
    fn file_merges_over_defaults_and_rejects_unknown_keys() {
        let dir = std::env::temp_dir().join(format!("fg-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.toml");
        std::fs::write(
            &good,
            "[cache]\nttl_s = 60\n[policy.offers.\"42\"]\nproxy = \"allow\"\n",
        )
        .unwrap();
        let c = Config::load_from(Some(&good), vec![]).unwrap();
        assert_eq!(c.cache.ttl_s, 60);
        assert_eq!(c.cache.ttl_error_s, 5);
        assert_eq!(c.policy.offers["42"]["proxy"], Action::Allow);

        let bad = dir.join("bad.toml");
        std::fs::write(&bad, "[cache]\nttl = 60\n").unwrap();
        let e = Config::load_from(Some(&bad), vec![])
            .unwrap_err()
            .to_string();
        assert!(e.contains("cache") && e.contains("ttl"), "{e}");
    }

    #[test]
    fn admin_keys_accept_a_comma_separated_env_value() {
        let c = Config::load_from(None, env(&[("FRAUDGATE_AUTH__ADMIN_KEYS", "k1, k2,")])).unwrap();
        let keys: Vec<_> = c
            .auth
            .admin_keys
            .0
            .iter()
            .map(|k| k.expose().to_owned())
            .collect();
        assert_eq!(keys, ["k1", "k2"]);
        assert!(Config::default().auth.admin_keys.0.is_empty());
    }

    #[test]
    fn a_public_listen_address_needs_client_keys_or_an_explicit_opt_in() {
        let e = Config::load_from(None, env(&[("FRAUDGATE_SERVER__LISTEN", "0.0.0.0:8080")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("auth.allow_anonymous"), "{e}");
        Config::load_from(
            None,
            env(&[
                ("FRAUDGATE_SERVER__LISTEN", "0.0.0.0:8080"),
                ("FRAUDGATE_AUTH__ALLOW_ANONYMOUS", "true"),
            ]),
        )
        .unwrap();
        let c = Config::load_from(
            None,
            env(&[
                ("FRAUDGATE_SERVER__LISTEN", "[::]:8080"),
                ("FRAUDGATE_AUTH__CLIENT_KEYS__ACME", "0123456789abcdef0123"),
            ]),
        )
        .unwrap();
        assert_eq!(c.auth.client_keys["acme"].expose(), "0123456789abcdef0123");
        let e = Config::load_from(None, env(&[("FRAUDGATE_AUTH__CLIENT_KEYS__ACME", "short")]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("auth.client_keys.acme") && !e.contains("short"),
            "{e}"
        );
    }

    #[test]
    fn secret_matching() {
        let s = Secret::new("abc");
        assert!(s.matches(b"abc"));
        assert!(!s.matches(b"abd") && !s.matches(b"ab") && !s.matches(b"abcd") && !s.matches(b""));
        assert!(!Secret::new("").matches(b""));
    }

    #[test]
    fn secret_never_prints() {
        let c = Config::load_from(None, env(&[("FRAUDGATE_UPSTREAM__KEY", "s3cr3t-key")])).unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("s3cr3t-key"));
        assert!(dbg.contains("[redacted]"));
    }
}
